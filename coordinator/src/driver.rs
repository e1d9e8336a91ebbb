//! The job driver every operation shares.
//!
//! An operation ([`Operation`]) only plans: it says which stages of tasks to run, reacts to
//! their results, and finally fills a transaction ([`Txn`]) or says there is nothing to
//! commit. Everything else is the driver's, the same for every operation:
//! * stage numbering (0, 1, … in the order stages start), scheduling through the
//!   [`crate::scheduler::Scheduler`] (attempts, retries, lost executors), several stages at
//!   once when the operation asks for them, and progress on the job's status channel;
//! * cancellation: a cancelled job's stages end with [`StageError::Cancelled`];
//! * the commit: `LeaderFence::check` before each attempt, conflict checks and retries
//!   ([`commit::commit`]); for work of independent parts, a re-planned commit without the
//!   parts a concurrent removal touched ([`Outcome::Commit`]'s `replan`); interim commits
//!   for operations that commit in batches ([`Operation::interim_commit`]);
//! * lost exchange inputs, as Spark recovers them: when a task cannot fetch map outputs
//!   (their executor is gone), the stage stops; the map tasks whose outputs were on the lost
//!   endpoints run again (new attempts, epoch-checked like any), the unfinished tasks are
//!   pointed at the new outputs and run again, and the outputs of the tasks that had
//!   succeeded are kept (bounded rounds);
//! * cleanup, on every path: executors drop the job's map outputs once the job is forgotten
//!   (told in heartbeat replies); after a failure (or a success with superseded attempts)
//!   the driver cancels the job's attempts, waits (bounded) until no executor still runs
//!   one, and deletes the job's data files that no commit of the job references.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use deltalake_core::logstore::LogStoreRef;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use silt_common::cleanup;
use silt_common::table::TableProperties;
use silt_common::task::{Input, MapOutputRef, Sink, Task, TaskOutput};
use tokio::sync::watch;
use tracing::{info, warn};
use url::Url;

use crate::JobContext;
use crate::commit::{self, CommitError};
use crate::job::{JobOutcome, JobState, JobStatus, QueryResult};
use crate::scheduler::StageError;
use crate::txn::Txn;

/// Why a job failed.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    Common(#[from] silt_common::Error),
    /// Bad input found while planning (one line naming what is wrong).
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Stage(#[from] StageError),
    #[error(transparent)]
    Commit(#[from] CommitError),
}

impl JobError {
    pub fn is_cancelled(&self) -> bool {
        matches!(self, JobError::Stage(StageError::Cancelled))
    }

    /// The commit was refused because this coordinator no longer leads.
    pub fn is_fenced(&self) -> bool {
        matches!(self, JobError::Commit(CommitError::Fenced(_)))
    }
}

impl From<deltalake_core::DeltaTableError> for JobError {
    fn from(e: deltalake_core::DeltaTableError) -> Self {
        JobError::Common(e.into())
    }
}

/// Shorthand for [`JobError::Invalid`].
pub fn invalid(msg: impl Into<String>) -> JobError {
    JobError::Invalid(msg.into())
}

/// What an operation knows of the job it plans for.
#[derive(Debug, Clone)]
pub struct PlanContext {
    pub job_id: String,
    /// Task slots of the executors (how many tasks run at once).
    pub slots: u32,
}

impl PlanContext {
    /// Prefix of the data files this job writes; the executor appends the attempt tag.
    /// Cleanup finds the job's files by it.
    pub fn file_prefix(&self) -> String {
        job_file_prefix(&self.job_id)
    }
}

/// Test-only fault injection: `SILT_COORDINATOR_CRASH=<point>` makes the coordinator
/// process die at once (no cleanup, no record of the job's end, as under SIGKILL) when a job
/// reaches `point`: `dispatch` (before its stages run), `fence` (a commit attempt about to
/// pass the fence), `commit` (the fence passed, the commit not written yet), `committed`
/// (the commit written). `stop@<point>` stops the process there instead (SIGSTOP, until a
/// SIGCONT), once.
pub(crate) fn crash_point(point: &str) {
    static STOPPED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    let Ok(wanted) = std::env::var("SILT_COORDINATOR_CRASH") else {
        return;
    };
    if wanted == point {
        eprintln!("SILT_COORDINATOR_CRASH: dying at `{point}`");
        std::process::exit(137);
    }
    if wanted.strip_prefix("stop@") == Some(point)
        && !STOPPED.swap(true, std::sync::atomic::Ordering::SeqCst)
    {
        eprintln!("SILT_COORDINATOR_CRASH: stopping at `{point}`");
        // kill(1) stops the process asynchronously: until the thread the kernel picks for
        // the signal runs, this one may go on (under load, long enough to pass the fence
        // before stopping). It blocks until a second after sending the signal; stopped for
        // longer than that, it goes on at once when resumed.
        let until = std::time::Instant::now() + std::time::Duration::from_secs(1);
        let _ = std::process::Command::new("kill")
            .args(["-STOP", &std::process::id().to_string()])
            .status();
        std::thread::sleep(until.saturating_duration_since(std::time::Instant::now()));
    }
}

/// Prefix of every data file name of a job (`part-<job id>`).
pub fn job_file_prefix(job_id: &str) -> String {
    format!("part-{job_id}")
}

/// A stage an operation wants run: a name (for progress and logs), its tasks, and an
/// optional note for the progress message (e.g. why the plan looks the way it does).
#[derive(Debug, Clone)]
pub struct StagePlan {
    pub name: String,
    pub tasks: Vec<Task>,
    pub note: Option<String>,
}

impl StagePlan {
    pub fn new(name: &str, tasks: Vec<Task>) -> Self {
        Self {
            name: name.to_string(),
            tasks,
            note: None,
        }
    }

    pub fn with_note(mut self, note: String) -> Self {
        self.note = Some(note);
        self
    }
}

/// A finished stage: its outputs in task order, and how long it ran.
#[derive(Debug, Clone)]
pub struct StageResult {
    pub id: u32,
    pub name: String,
    pub outputs: Vec<TaskOutput>,
    pub elapsed: Duration,
}

/// Where and on top of what a transaction commits.
pub struct CommitTarget {
    pub log_store: LogStoreRef,
    /// The version the job read (-1: the table does not exist yet).
    pub read_version: i64,
    /// Properties that govern the commit (isolation level, append-only, checkpoints).
    pub properties: TableProperties,
    /// A column-mapped table's schema: the commit keys partition values and statistics by
    /// its physical names.
    pub column_mapping: Option<arrow::datatypes::SchemaRef>,
    /// Row tracking: the row-id high-water mark at the read version (the commit gives the
    /// files it adds fresh ids past it); `None`: the table does not track rows.
    pub row_id_high_water_mark: Option<i64>,
}

impl CommitTarget {
    /// On top of `snapshot`, with `properties` governing the commit.
    pub fn on(snapshot: &silt_common::table::TableSnapshot, properties: TableProperties) -> Self {
        Self {
            log_store: snapshot.table.log_store(),
            read_version: snapshot.version,
            properties,
            column_mapping: snapshot.column_mapping(),
            row_id_high_water_mark: snapshot.row_id_high_water_mark,
        }
    }
}

/// Rebuilds a commit without the parts that touch the given (decoded) file paths, which a
/// concurrent commit removed; `None` when nothing is left to commit.
pub type Replan =
    Box<dyn FnMut(&HashSet<String>) -> Result<Option<(Box<Txn>, String)>, JobError> + Send>;

/// How an operation ends.
pub enum Outcome {
    /// Commit this transaction.
    Commit {
        txn: Box<Txn>,
        target: CommitTarget,
        /// One line for the user, completed by the driver with the committed version.
        summary: String,
        /// For work made of independent parts (OPTIMIZE's bins): when a concurrent commit
        /// removed files some parts read, the driver commits the rest instead of failing.
        replan: Option<Replan>,
    },
    /// Nothing to commit (e.g. a DELETE matching no row, an idempotent write already done).
    Nothing {
        summary: String,
        metrics: BTreeMap<String, String>,
    },
    /// A query's answer (DESCRIBE); nothing committed.
    Rows {
        summary: String,
        result: QueryResult,
    },
}

impl Outcome {
    /// Commit `txn` on `target`; the whole job fails on a conflict.
    pub fn commit(txn: Txn, target: CommitTarget, summary: String) -> Outcome {
        Outcome::Commit {
            txn: Box::new(txn),
            target,
            summary,
            replan: None,
        }
    }
}

/// A table operation as the driver runs it. Implementations are pure planners: they see
/// stage results and return plans, and do no IO of their own.
pub trait Operation: Send {
    /// The table root (cleanup and exchanges live under it).
    fn table_url(&self) -> &Url;

    /// The table version tasks are planned on (-1: no table yet); stamped on every task.
    fn read_version(&self) -> i64;

    /// The stages to start first (possibly none).
    fn start(&mut self) -> Result<Vec<StagePlan>, JobError>;

    /// A stage finished; returns further stages to start (they run beside any still running).
    fn stage_done(&mut self, result: StageResult) -> Result<Vec<StagePlan>, JobError>;

    /// Every stage finished: the outcome. `elapsed` is the job's time so far.
    fn finish(self: Box<Self>, elapsed: Duration) -> Result<Outcome, JobError>;

    /// Before the first stage and after each finished stage: a commit of the work done so
    /// far, for operations that commit in batches (each durable on its own) or that must
    /// commit before they start (VACUUM START); `since_last_commit` is the time since the
    /// job started (zero before the first stage) or last committed. Later commits must not
    /// repeat what one committed.
    fn interim_commit(&mut self, since_last_commit: Duration) -> Result<Option<Outcome>, JobError> {
        let _ = since_last_commit;
        Ok(None)
    }
}

/// Runs an operation to its outcome, commits it, and cleans up on every path.
pub async fn run(
    ctx: &JobContext,
    job_id: &str,
    op: Box<dyn Operation>,
    status: &watch::Sender<JobStatus>,
    started: Instant,
) -> Result<JobOutcome, JobError> {
    let table_url = op.table_url().clone();
    ctx.scheduler.begin_job(job_id);
    // Every file any commit of the job references (interim commits stand even if the job
    // fails later): never cleaned up.
    let committed = Mutex::new(HashSet::new());
    let result = drive(ctx, job_id, op, status, started, &committed).await;
    // Attempts that are no longer wanted (the failed job's other tasks, superseded attempts)
    // may still be writing: cancel them and wait, bounded, until executors let go of them,
    // so that no file appears after the cleanup below.
    let needs_file_cleanup = match &result {
        Ok(d) => d.any_retry,
        Err(_) => {
            ctx.scheduler.cancel_job(job_id);
            true
        }
    };
    let kept = committed.lock().unwrap_or_else(|p| p.into_inner()).clone();
    if needs_file_cleanup {
        let cfg = ctx.scheduler.config();
        let wait = Duration::from_millis(cfg.executor_timeout_ms + 2 * cfg.heartbeat_interval_ms);
        if !ctx.scheduler.wait_job_idle(job_id, wait).await {
            warn!(
                job = job_id,
                "attempts still running after {wait:?}; files they write later stay unreferenced (VACUUM removes them)"
            );
        }
    }
    ctx.scheduler.forget_job(job_id);
    if needs_file_cleanup {
        let prefix = format!("{}-", job_file_prefix(job_id));
        cleanup::remove_files_named(&table_url, &prefix, &kept).await;
    }
    result.map(|d| d.outcome)
}

/// What driving an operation produced, before cleanup.
struct Driven {
    outcome: JobOutcome,
    /// Whether any task ran more than once (superseded attempts may have left files).
    any_retry: bool,
}

async fn drive(
    ctx: &JobContext,
    job_id: &str,
    mut op: Box<dyn Operation>,
    status: &watch::Sender<JobStatus>,
    started: Instant,
    committed: &Mutex<HashSet<String>>,
) -> Result<Driven, JobError> {
    let scope = StageScope {
        ctx,
        job_id,
        epoch: ctx.fence.epoch(),
        version: op.read_version(),
        status,
        next_id: AtomicU32::new(0),
        map_tasks: Mutex::default(),
        committed,
    };
    let mut running = FuturesUnordered::new();
    let start = |plans: Vec<StagePlan>, running: &mut FuturesUnordered<_>| {
        crash_point("dispatch");
        for plan in plans {
            running.push(run_stage(&scope, scope.new_stage_id(), plan));
        }
    };
    let table_url = op.table_url().clone();
    // Interim commits (batches): what they committed stays whatever happens next.
    let mut committed_so_far = Driven {
        outcome: JobOutcome::default(),
        any_retry: false,
    };
    let mut last_commit = Instant::now();
    // A commit before any stage (VACUUM START).
    if let Some(outcome) = op.interim_commit(Duration::ZERO)? {
        committed_so_far.absorb(conclude(&scope, &table_url, outcome).await?);
        last_commit = Instant::now();
    }
    start(op.start()?, &mut running);
    while let Some(result) = running.next().await {
        let plans = op.stage_done(result?)?;
        start(plans, &mut running);
        if let Some(outcome) = op.interim_commit(last_commit.elapsed())? {
            let done = conclude(&scope, &table_url, outcome).await?;
            committed_so_far.absorb(done);
            last_commit = Instant::now();
        }
    }
    drop(running);
    let retries = ctx.scheduler.job_retries(job_id);
    status.send_modify(|s| s.task_retries = retries);

    let outcome = op.finish(started.elapsed())?;
    let mut done = conclude(&scope, &table_url, outcome).await?;
    if done.outcome.version.is_none() && committed_so_far.outcome.version.is_some() {
        // The last batch had nothing left: the job's result is its last commit.
        done.outcome = committed_so_far.outcome.clone();
    }
    done.any_retry |= retries > 0 || committed_so_far.any_retry;
    Ok(done)
}

impl Driven {
    /// Adds a later commit's result: its outcome is the job's.
    fn absorb(&mut self, later: Driven) {
        self.outcome = later.outcome;
        self.any_retry |= later.any_retry;
    }
}

/// Carries out an outcome: commits (replanning around concurrently removed files when the
/// operation allows it) or reports.
async fn conclude(
    scope: &StageScope<'_>,
    table_url: &Url,
    outcome: Outcome,
) -> Result<Driven, JobError> {
    let (job_id, ctx, status) = (scope.job_id, scope.ctx, scope.status);
    match outcome {
        Outcome::Nothing { summary, metrics } => Ok(Driven {
            outcome: JobOutcome {
                summary,
                metrics,
                ..Default::default()
            },
            any_retry: false,
        }),
        Outcome::Rows { summary, result } => Ok(Driven {
            outcome: JobOutcome {
                summary,
                rows: Some(result),
                ..Default::default()
            },
            any_retry: false,
        }),
        Outcome::Commit {
            mut txn,
            target,
            mut summary,
            mut replan,
        } => {
            // A job cancelled before this point never commits; once committing, it cannot
            // be cancelled (the two are decided under the status lock).
            let mut cancelled = false;
            status.send_if_modified(|s| {
                cancelled = s.cancelled.is_some();
                if !cancelled {
                    s.state = JobState::Committing;
                    s.message = "committing".into();
                }
                !cancelled
            });
            if cancelled {
                return Err(JobError::Stage(StageError::Cancelled));
            }
            let prefix = format!("{}-", job_file_prefix(job_id));
            crate::report::check_written_sample(table_url, txn.adds(), &prefix)
                .await
                .map_err(|why| invalid(format!("the job's files do not hold up: {why}")))?;
            // Parts left out after a conflict wrote files the commit does not reference.
            let mut replanned = false;
            let mut excluded: HashSet<String> = HashSet::new();
            loop {
                let kept = txn.kept_file_names();
                let metrics = txn.metrics().clone();
                let request = txn
                    .into_request(
                        table_url,
                        &target.properties,
                        target.column_mapping.clone(),
                        scope.epoch,
                    )
                    .tracking_rows(target.row_id_high_water_mark);
                let result = commit::commit(
                    target.log_store.clone(),
                    target.read_version,
                    request,
                    ctx.fence.as_ref(),
                )
                .await;
                let committed = match (result, replan.as_mut()) {
                    (Ok(c), _) => c,
                    (Err(CommitError::FilesRemoved { message, paths }), Some(rebuild))
                        if !paths.is_subset(&excluded) =>
                    {
                        excluded.extend(paths);
                        warn!(
                            job = job_id,
                            "{message}; committing the parts that do not touch those files"
                        );
                        match rebuild(&excluded)? {
                            Some((t, s)) => {
                                (txn, summary, replanned) = (t, s, true);
                                continue;
                            }
                            None => {
                                return Err(CommitError::Conflict(format!(
                                    "{message} (every part of this job touched files removed concurrently)"
                                ))
                                .into());
                            }
                        }
                    }
                    (Err(CommitError::AlreadyCommitted { version }), _) => {
                        // This job's run under an earlier leader committed after all: that
                        // commit is the job's; this run's files are not referenced.
                        warn!(job = job_id, version, "the job's earlier run committed");
                        return Ok(Driven {
                            outcome: JobOutcome {
                                version: Some(version),
                                summary: format!(
                                    "committed version {version} (by the job's run before a coordinator failover)"
                                ),
                                ..Default::default()
                            },
                            any_retry: true,
                        });
                    }
                    (Err(e), _) => {
                        if matches!(
                            e,
                            CommitError::Conflict(_) | CommitError::FilesRemoved { .. }
                        ) {
                            ctx.stats
                                .commit_conflicts
                                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        return Err(e.into());
                    }
                };
                crash_point("committed");
                ctx.stats
                    .commits
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                ctx.stats.commit_retries.fetch_add(
                    u64::from(committed.winning_commits_checked),
                    std::sync::atomic::Ordering::Relaxed,
                );
                info!(job = job_id, version = committed.version, "committed");
                scope
                    .committed
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .extend(kept.iter().cloned());
                return Ok(Driven {
                    outcome: JobOutcome {
                        version: Some(committed.version),
                        metrics,
                        summary: format!("committed version {}: {summary}", committed.version),
                        winning_commits_checked: committed.winning_commits_checked,
                        ..Default::default()
                    },
                    any_retry: replanned,
                });
            }
        }
    }
}

/// Where a job's stages run: the job, the epoch and table version its tasks are stamped with,
/// the status channel progress goes to, stage numbering, and the tasks of the stages that
/// produced exchange outputs (to re-run the ones whose outputs get lost).
struct StageScope<'a> {
    ctx: &'a JobContext,
    job_id: &'a str,
    epoch: u64,
    version: i64,
    status: &'a watch::Sender<JobStatus>,
    next_id: AtomicU32,
    map_tasks: Mutex<HashMap<u32, Vec<Task>>>,
    /// Names of the files the job's commits reference so far.
    committed: &'a Mutex<HashSet<String>>,
}

impl StageScope<'_> {
    fn new_stage_id(&self) -> u32 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }
}

/// Rounds of re-running lost map tasks one stage may go through before it fails.
const MAX_FETCH_RECOVERIES: u32 = 4;

/// Runs one stage to completion, recovering lost exchange inputs (see the module docs).
async fn run_stage(
    scope: &StageScope<'_>,
    id: u32,
    plan: StagePlan,
) -> Result<StageResult, JobError> {
    let started = Instant::now();
    let StagePlan {
        name,
        mut tasks,
        note,
    } = plan;
    let n = tasks.len();
    let mut outputs: Vec<Option<TaskOutput>> = vec![None; n];
    let mut pending: Vec<usize> = (0..n).collect();
    let mut run_id = id;
    let mut recoveries = 0;
    loop {
        let batch: Vec<Task> = pending.iter().map(|&i| tasks[i].clone()).collect();
        let label = if recoveries == 0 {
            name.clone()
        } else {
            format!("{name} (resumed)")
        };
        match run_tasks(scope, run_id, &label, note.as_deref(), batch).await {
            Ok(outs) => {
                for (&i, o) in pending.iter().zip(outs) {
                    outputs[i] = Some(o);
                }
                break;
            }
            Err(StageError::FetchFailed {
                task,
                message,
                lost,
                outputs: partial,
            }) if recoveries < MAX_FETCH_RECOVERIES => {
                recoveries += 1;
                warn!(job = scope.job_id, stage = %name, %task, ?lost, "exchange input lost ({message}); re-running its map tasks");
                for (&i, o) in pending.iter().zip(partial) {
                    if o.is_some() {
                        outputs[i] = o;
                    }
                }
                pending = (0..n).filter(|&i| outputs[i].is_none()).collect();
                let lost: HashSet<&str> = lost.iter().map(String::as_str).collect();
                let replaced = rerun_lost_maps(scope, &name, &tasks, &pending, &lost).await?;
                for &i in &pending {
                    for map_outputs in tasks[i].input.map_outputs_mut() {
                        for r in map_outputs.iter_mut() {
                            if let Some(new) = replaced.get(&(r.map_stage, r.map_index)) {
                                *r = new.clone();
                            }
                        }
                    }
                }
                run_id = scope.new_stage_id();
            }
            Err(e) => return Err(e.into()),
        }
    }
    if tasks
        .iter()
        .any(|t| matches!(t.sink, Sink::Exchange { .. }))
    {
        scope
            .map_tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, tasks);
    }
    Ok(StageResult {
        id,
        name,
        outputs: outputs.into_iter().map(Option::unwrap_or_default).collect(),
        elapsed: started.elapsed(),
    })
}

/// Re-runs the map tasks whose outputs, referenced by the `pending` tasks, were on a `lost`
/// endpoint. Returns the new outputs by the (stage, index) of the map task they replace.
async fn rerun_lost_maps(
    scope: &StageScope<'_>,
    name: &str,
    tasks: &[Task],
    pending: &[usize],
    lost: &HashSet<&str>,
) -> Result<HashMap<(u32, u32), MapOutputRef>, JobError> {
    let mut inputs: Vec<Input> = pending.iter().map(|&i| tasks[i].input.clone()).collect();
    let wanted: BTreeSet<(u32, u32)> = inputs
        .iter_mut()
        .flat_map(|i| i.map_outputs_mut())
        .flat_map(|m| m.iter())
        .filter(|r| lost.contains(r.address.as_str()))
        .map(|r| (r.map_stage, r.map_index))
        .collect();
    let defs: Vec<Task> = {
        let maps = scope.map_tasks.lock().unwrap_or_else(|p| p.into_inner());
        wanted
            .iter()
            .map(|(stage, index)| {
                maps.get(stage)
                    .and_then(|t| t.get(*index as usize))
                    .cloned()
                    .ok_or_else(|| {
                        invalid(format!(
                            "internal: lost map output of stage {stage} task {index} has no task to re-run"
                        ))
                    })
            })
            .collect::<Result<_, _>>()?
    };
    if defs.is_empty() {
        // The endpoint answered "not found" for outputs it should hold, or the report named
        // an endpoint no pending task reads from: running the same tasks again is all we can do.
        return Ok(HashMap::new());
    }
    let label = format!("{name}: re-run {} lost map task(s)", defs.len());
    info!(job = scope.job_id, stage = %name, maps = defs.len(), "re-running lost map tasks");
    let outs = run_tasks(scope, scope.new_stage_id(), &label, None, defs).await?;
    let mut replaced = HashMap::new();
    for ((stage, index), out) in wanted.into_iter().zip(outs) {
        let mut location = out
            .exchange_output
            .ok_or_else(|| invalid("internal: a re-run map task produced no exchange output"))?
            .location;
        // It stands in for the original map task (so a later loss finds that task again).
        location.map_stage = stage;
        location.map_index = index;
        replaced.insert((stage, index), location);
    }
    Ok(replaced)
}

/// Runs tasks as one scheduler stage to completion, publishing its progress.
async fn run_tasks(
    scope: &StageScope<'_>,
    id: u32,
    name: &str,
    note: Option<&str>,
    tasks: Vec<Task>,
) -> Result<Vec<TaskOutput>, StageError> {
    let StageScope {
        ctx,
        job_id,
        epoch,
        version,
        status,
        ..
    } = *scope;
    let name = name.to_string();
    let n = tasks.len() as u32;
    status.send_modify(|s| {
        s.state = JobState::Running;
        s.stage = name.clone();
        s.tasks_total = n;
        s.tasks_succeeded = 0;
        s.message = match note {
            Some(note) => format!("stage {name}: {n} task(s); {note}"),
            None => format!("stage {name}: {n} task(s)"),
        };
    });
    let fut = ctx.scheduler.run_stage(job_id, id, epoch, version, tasks);
    tokio::pin!(fut);
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            r = &mut fut => {
                let p = ctx.scheduler.progress(job_id, id);
                let retries = ctx.scheduler.job_retries(job_id);
                status.send_modify(|s| {
                    if s.stage == name {
                        s.tasks_succeeded = p.succeeded;
                        s.tasks_running = 0;
                    }
                    s.task_retries = s.task_retries.max(retries);
                });
                if let Err(e) = &r
                    && !matches!(e, StageError::FetchFailed { .. })
                {
                    warn!(job = job_id, stage = %name, "stage failed: {e}");
                }
                return r;
            }
            _ = tick.tick() => {
                let p = ctx.scheduler.progress(job_id, id);
                let retries = ctx.scheduler.job_retries(job_id);
                status.send_if_modified(|s| {
                    if s.stage != name {
                        return false;
                    }
                    let changed = s.tasks_succeeded != p.succeeded
                        || s.tasks_running != p.running
                        || s.task_retries != retries;
                    s.tasks_succeeded = p.succeeded;
                    s.tasks_running = p.running;
                    s.task_retries = retries;
                    changed
                });
            }
        }
    }
}
