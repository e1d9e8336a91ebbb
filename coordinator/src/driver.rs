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
//!   ([`commit::commit`]);
//! * cleanup, on every path: the job's exchange directory is removed; after a failure (or a
//!   success with superseded attempts) the driver cancels the job's attempts, waits (bounded)
//!   until no executor still runs one, and deletes the job's data files that the commit does
//!   not reference.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use deltalake_core::logstore::LogStoreRef;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use silt_common::cleanup;
use silt_common::table::TableProperties;
use silt_common::task::{Task, TaskOutput};
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

    /// The directory of this job's exchanges under the table root.
    pub fn exchange_location(&self, table_url: &Url) -> Url {
        exchange_dir(table_url, &self.job_id)
    }
}

/// Prefix of every data file name of a job (`part-<job id>`).
pub fn job_file_prefix(job_id: &str) -> String {
    format!("part-{job_id}")
}

pub(crate) fn exchange_dir(table_url: &Url, job_id: &str) -> Url {
    silt_common::storage::join_url(table_url, &format!("_silt_shuffle/{job_id}/"))
        .unwrap_or_else(|_| table_url.clone())
}

/// A stage an operation wants run: a name (for progress and logs) and its tasks.
#[derive(Debug, Clone)]
pub struct StagePlan {
    pub name: String,
    pub tasks: Vec<Task>,
}

impl StagePlan {
    pub fn new(name: &str, tasks: Vec<Task>) -> Self {
        Self {
            name: name.to_string(),
            tasks,
        }
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
}

/// How an operation ends.
pub enum Outcome {
    /// Commit this transaction.
    Commit {
        txn: Box<Txn>,
        target: CommitTarget,
        /// One line for the user, completed by the driver with the committed version.
        summary: String,
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
    let result = drive(ctx, job_id, op, status, started).await;
    // Attempts that are no longer wanted (the failed job's other tasks, superseded attempts)
    // may still be writing: cancel them and wait, bounded, until executors let go of them,
    // so that no file appears after the cleanup below.
    let (needs_file_cleanup, kept) = match &result {
        Ok(d) => (d.any_retry, d.kept.clone()),
        Err(_) => {
            ctx.scheduler.cancel_job(job_id);
            (true, HashSet::new())
        }
    };
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
    cleanup::remove_dir(&exchange_dir(&table_url, job_id)).await;
    if needs_file_cleanup {
        let prefix = format!("{}-", job_file_prefix(job_id));
        cleanup::remove_files_named(&table_url, &prefix, &kept).await;
    }
    result.map(|d| d.outcome)
}

/// What driving an operation produced, before cleanup.
struct Driven {
    outcome: JobOutcome,
    /// Names of the job's files the commit references (kept by the cleanup).
    kept: HashSet<String>,
    /// Whether any task ran more than once (superseded attempts may have left files).
    any_retry: bool,
}

async fn drive(
    ctx: &JobContext,
    job_id: &str,
    mut op: Box<dyn Operation>,
    status: &watch::Sender<JobStatus>,
    started: Instant,
) -> Result<Driven, JobError> {
    let scope = StageScope {
        ctx,
        job_id,
        epoch: ctx.fence.epoch(),
        version: op.read_version(),
        status,
    };
    let mut next_id = 0u32;
    let mut running = FuturesUnordered::new();
    let mut start = |plans: Vec<StagePlan>, running: &mut FuturesUnordered<_>| {
        for plan in plans {
            let id = next_id;
            next_id += 1;
            running.push(run_stage(&scope, id, plan));
        }
    };
    start(op.start()?, &mut running);
    while let Some(result) = running.next().await {
        let plans = op.stage_done(result?)?;
        start(plans, &mut running);
    }
    drop(running);
    let retries = ctx.scheduler.job_retries(job_id);
    status.send_modify(|s| s.task_retries = retries);
    let any_retry = retries > 0;

    let table_url = op.table_url().clone();
    let outcome = op.finish(started.elapsed())?;
    match outcome {
        Outcome::Nothing { summary, metrics } => Ok(Driven {
            outcome: JobOutcome {
                summary,
                metrics,
                ..Default::default()
            },
            kept: HashSet::new(),
            any_retry,
        }),
        Outcome::Rows { summary, result } => Ok(Driven {
            outcome: JobOutcome {
                summary,
                rows: Some(result),
                ..Default::default()
            },
            kept: HashSet::new(),
            any_retry,
        }),
        Outcome::Commit {
            txn,
            target,
            summary,
        } => {
            status.send_modify(|s| {
                s.state = JobState::Committing;
                s.message = "committing".into();
            });
            let kept = txn.kept_file_names();
            let metrics = txn.metrics().clone();
            let request = txn.into_request(&table_url, &target.properties, scope.epoch);
            let committed = commit::commit(
                target.log_store,
                target.read_version,
                request,
                ctx.fence.as_ref(),
            )
            .await?;
            info!(job = job_id, version = committed.version, "committed");
            Ok(Driven {
                outcome: JobOutcome {
                    version: Some(committed.version),
                    metrics,
                    summary: format!("committed version {}: {summary}", committed.version),
                    winning_commits_checked: committed.winning_commits_checked,
                    ..Default::default()
                },
                kept,
                any_retry,
            })
        }
    }
}

/// Where a job's stages run: the job, the epoch and table version its tasks are stamped with,
/// and the status channel progress goes to.
struct StageScope<'a> {
    ctx: &'a JobContext,
    job_id: &'a str,
    epoch: u64,
    version: i64,
    status: &'a watch::Sender<JobStatus>,
}

/// Runs one stage to completion, publishing its progress.
async fn run_stage(
    scope: &StageScope<'_>,
    id: u32,
    plan: StagePlan,
) -> Result<StageResult, JobError> {
    let StageScope {
        ctx,
        job_id,
        epoch,
        version,
        status,
    } = *scope;
    let name = plan.name;
    let n = plan.tasks.len() as u32;
    let started = Instant::now();
    status.send_modify(|s| {
        s.state = JobState::Running;
        s.stage = name.clone();
        s.tasks_total = n;
        s.tasks_succeeded = 0;
        s.message = format!("stage {name}: {n} task(s)");
    });
    let fut = ctx
        .scheduler
        .run_stage(job_id, id, epoch, version, plan.tasks);
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
                if let Err(e) = &r {
                    warn!(job = job_id, stage = %name, "stage failed: {e}");
                }
                return r.map(|outputs| StageResult {
                    id,
                    name: name.clone(),
                    outputs,
                    elapsed: started.elapsed(),
                }).map_err(JobError::from);
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
