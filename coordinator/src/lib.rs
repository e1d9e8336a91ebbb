//! The silt coordinator: accepts jobs, plans them into tasks, schedules the tasks on
//! executors over gRPC, and makes each job's single Delta commit (fenced by leadership).
//!
//! Code map: [`driver`] (the job lifecycle every operation shares), [`ops`] (one planner per
//! operation: write, delete, update, properties, describe), [`plan`] (pure planning helpers:
//! task sizing, file selection), [`txn`] (the transaction an operation fills), [`commit`]
//! (conflict checks and the commit), [`scheduler`] (executors, attempts, retries), [`fence`]
//! (leadership), [`job`] (lifecycle, job store), [`service`] (gRPC: decode, call, map errors — nothing else).

pub mod commit;
pub mod driver;
pub mod election;
pub mod fence;
pub mod http;
pub mod job;
pub mod journal;
pub mod ops;
pub mod plan;
pub mod report;
pub mod scheduler;
pub mod service;
pub mod turns;
pub mod txn;

#[cfg(test)]
mod fuzz;

use std::sync::Arc;
use std::time::{Duration, Instant};

use driver::PlanContext;
use job::{JobOutcome, JobRegistry, JobState};
use scheduler::{Scheduler, SchedulerConfig};
use silt_common::request::JobRequest;
use tracing::{error, info, warn};

/// Coordinator settings.
#[derive(Debug, Clone)]
pub struct CoordinatorConfig {
    pub scheduler: SchedulerConfig,
    /// How long a job waits for `min_executors` executors before planning with what it has
    /// (and failing if that is none).
    pub executor_wait_ms: u64,
    /// Executors a job waits for before planning. The embedded cluster sets its own size,
    /// so that a job's split into tasks does not depend on how fast executors registered.
    pub min_executors: usize,
    /// Finished jobs remembered for result queries.
    pub max_finished_jobs: usize,
    /// A job bound to its client (not detached) is cancelled when no client has followed
    /// it for this long before its commit.
    pub client_grace_ms: u64,
}

impl Default for CoordinatorConfig {
    fn default() -> Self {
        Self {
            scheduler: SchedulerConfig::default(),
            executor_wait_ms: 30_000,
            min_executors: 1,
            max_finished_jobs: 1_000,
            client_grace_ms: 10_000,
        }
    }
}

/// What job drivers share.
pub struct JobContext {
    pub scheduler: Scheduler,
    pub fence: Arc<dyn fence::LeaderFence>,
    pub executor_wait_ms: u64,
    pub min_executors: usize,
    /// Where jobs are recorded to outlive this coordinator (set when it takes over as an
    /// elected leader; none for a coordinator that leads alone).
    pub journal: std::sync::OnceLock<Arc<dyn journal::JobJournal>>,
    /// Counters for monitoring.
    pub stats: CommitStats,
    /// Until when jobs wait for executors to stop arriving before planning (set on taking
    /// over as leader: the executors of the previous leader come back one by one).
    pub settle_until: std::sync::OnceLock<tokio::time::Instant>,
    /// Jobs on one table that would conflict take turns.
    pub turns: turns::TableTurns,
}

/// Commit counters (see [`http`]).
#[derive(Debug, Default)]
pub struct CommitStats {
    pub commits: std::sync::atomic::AtomicU64,
    /// Winning commits of other writers checked after losing a race for a version.
    pub commit_retries: std::sync::atomic::AtomicU64,
    pub commit_conflicts: std::sync::atomic::AtomicU64,
}

/// Whether a job outlives its client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// Cancelled when no client follows it (see [`CoordinatorConfig::client_grace_ms`]).
    BoundToClient,
    /// Runs to its end whoever follows it (`--detach`; jobs taken over after a failover).
    Detached,
}

/// The coordinator; cheap to clone.
#[derive(Clone)]
pub struct Coordinator {
    pub(crate) ctx: Arc<JobContext>,
    jobs: JobRegistry,
    /// See [`CoordinatorConfig::client_grace_ms`].
    client_grace_ms: u64,
}

/// Why a job bound to its client is cancelled when the client goes away.
const CLIENT_GONE: &str =
    "its client went away before the commit; submit with --detach to keep a job without its client";

impl Coordinator {
    pub fn new(config: CoordinatorConfig, fence: Arc<dyn fence::LeaderFence>) -> Self {
        let scheduler = Scheduler::new(config.scheduler.clone());
        scheduler.spawn_reaper();
        Self {
            ctx: Arc::new(JobContext {
                scheduler,
                fence,
                executor_wait_ms: config.executor_wait_ms,
                min_executors: config.min_executors.max(1),
                journal: std::sync::OnceLock::new(),
                stats: CommitStats::default(),
                settle_until: std::sync::OnceLock::new(),
                turns: turns::TableTurns::default(),
            }),
            jobs: JobRegistry::new(config.max_finished_jobs),
            client_grace_ms: config.client_grace_ms,
        }
    }

    pub fn scheduler(&self) -> &Scheduler {
        &self.ctx.scheduler
    }

    pub fn jobs(&self) -> &JobRegistry {
        &self.jobs
    }

    /// Accepts a job and starts driving it; returns its id. With a job journal the job is
    /// recorded first, and not accepted when that fails (this coordinator no longer leads,
    /// etcd is unreachable).
    pub async fn submit(
        &self,
        req: JobRequest,
        liveness: Liveness,
    ) -> Result<String, journal::JournalError> {
        let job_id = new_job_id();
        let now = chrono::Utc::now().timestamp_millis();
        let record = journal::JobRecord {
            id: job_id.clone(),
            state: JobState::Queued,
            epoch: self.ctx.fence.epoch(),
            created_ms: now,
            updated_ms: now,
            version: None,
            error: String::new(),
            summary: String::new(),
            runs: 1,
        };
        if let Some(j) = self.ctx.journal.get() {
            j.write(&record, Some(&silt_proto::encode_job_request(&req)))
                .await?;
        }
        self.start(record, job_id.clone(), req, None);
        if liveness == Liveness::BoundToClient {
            self.bind_to_clients(&job_id);
        }
        Ok(job_id)
    }

    /// Drives job `record.id` as run `run_id`; `committed` is the version a run before a
    /// failover committed, if it did (the job then only ends).
    fn start(
        &self,
        record: journal::JobRecord,
        run_id: String,
        req: JobRequest,
        committed: Option<i64>,
    ) {
        let status = self.jobs.create(&record.id);
        let ctx = self.ctx.clone();
        let jobs = self.jobs.clone();
        let job_id = record.id.clone();
        let handle = tokio::spawn(async move {
            let id = record.id.clone();
            let (state, outcome) = match committed {
                Some(version) => (
                    JobState::Succeeded,
                    JobOutcome {
                        version: Some(version),
                        summary: format!(
                            "committed version {version} before a coordinator failover"
                        ),
                        ..Default::default()
                    },
                ),
                None => {
                    let compact_after =
                        ops::auto_compact::triggers(&req).then(|| req.table_uri().to_string());
                    let Some((state, mut outcome)) = execute(&ctx, &run_id, req, &status).await
                    else {
                        // Leadership was lost: the job is the next leader's to finish, and
                        // its clients follow it there.
                        warn!(job = %id, "leadership lost; the job is left to the next leader");
                        return;
                    };
                    if let (JobState::Succeeded, Some(uri), Some(version)) =
                        (state, compact_after, outcome.version)
                        && let Some(line) = auto_compaction(&ctx, &jobs, &uri, version).await
                    {
                        outcome.summary.push_str(&format!("; {line}"));
                    }
                    (state, outcome)
                }
            };
            if let Some(j) = ctx.journal.get() {
                let ended = journal::JobRecord {
                    state,
                    epoch: ctx.fence.epoch(),
                    updated_ms: chrono::Utc::now().timestamp_millis(),
                    version: outcome.version,
                    error: outcome.error.clone(),
                    summary: outcome.summary.clone(),
                    ..record
                };
                if let Err(e) = j.write(&ended, None).await {
                    // The next leader runs it again, or finds its commit.
                    error!(job = %ended.id, "cannot record the job's end: {e}");
                }
            }
            jobs.end(&id, &status, state, outcome);
        });
        self.jobs.set_driver(&job_id, handle.abort_handle());
    }

    /// Takes over as an elected leader: from now on jobs are recorded in `journal`, and the
    /// jobs it holds are finished: each one in flight under an earlier leader ends as
    /// succeeded if its commit landed, else runs again (as run `<id>r<epoch>`, with files
    /// of its own); finished ones are remembered for clients asking for them (those older
    /// than [`FINISHED_RETENTION_MS`] are forgotten).
    pub async fn take_over(
        &self,
        journal: Arc<dyn journal::JobJournal>,
    ) -> Result<TakeOver, journal::JournalError> {
        let epoch = self.ctx.fence.epoch();
        let records = journal.load().await?;
        let _ = self.ctx.journal.set(journal.clone());
        // Executors notice the failover within a few heartbeats (see the executor runtime).
        let cfg = self.ctx.scheduler.config();
        let _ = self.ctx.settle_until.set(
            tokio::time::Instant::now()
                + std::time::Duration::from_millis(4 * cfg.heartbeat_interval_ms),
        );
        let now = chrono::Utc::now().timestamp_millis();
        let mut summary = TakeOver::default();
        let mut expired = Vec::new();
        for journal::Kept {
            record,
            request,
            intent,
        } in records
        {
            if record.state.is_terminal() {
                if expired_at(&record, now) {
                    expired.push(record.id);
                } else {
                    self.jobs.restore(
                        &record.id,
                        record.state,
                        JobOutcome {
                            version: record.version,
                            error: record.error,
                            summary: record.summary,
                            ..Default::default()
                        },
                    );
                    summary.finished += 1;
                }
                continue;
            }
            let req = match request
                .as_deref()
                .map(silt_proto::decode_job_request)
                .transpose()
            {
                Ok(Some(req)) => req,
                Ok(None) => {
                    self.fail_record(&journal, record, "its request was not kept".into())
                        .await;
                    summary.failed += 1;
                    continue;
                }
                Err(e) => {
                    self.fail_record(&journal, record, format!("its request is unreadable: {e}"))
                        .await;
                    summary.failed += 1;
                    continue;
                }
            };
            // A job that never recorded a commit intent cannot have committed.
            let committed = match &intent {
                Some(_) => {
                    commit::find_job_commit(req.table_uri(), &record.id, record.created_ms).await
                }
                None => None,
            };
            let record = journal::JobRecord {
                state: JobState::Running,
                epoch,
                updated_ms: now,
                runs: record.runs + 1,
                ..record
            };
            journal.write(&record, None).await?;
            info!(job = %record.id, committed = ?committed, "taking over a job in flight");
            if committed.is_some() {
                summary.committed += 1;
            } else {
                summary.rerun += 1;
            }
            let run = job::rerun_id(&record.id, epoch);
            self.start(record, run, req, committed);
        }
        if !expired.is_empty() {
            journal.remove(&expired).await?;
        }
        // While this leader leads, finished jobs past the retention are forgotten hourly.
        tokio::spawn(async move {
            let mut hourly = tokio::time::interval(std::time::Duration::from_secs(3600));
            hourly.tick().await;
            loop {
                hourly.tick().await;
                if let Err(e) = forget_expired(journal.as_ref()).await {
                    warn!("cannot forget expired jobs in the job journal: {e}");
                }
            }
        });
        Ok(summary)
    }

    async fn fail_record(
        &self,
        journal: &Arc<dyn journal::JobJournal>,
        record: journal::JobRecord,
        why: String,
    ) {
        let error = format!("job lost in a coordinator failover: {why}");
        let failed = journal::JobRecord {
            state: JobState::Failed,
            updated_ms: chrono::Utc::now().timestamp_millis(),
            error: error.clone(),
            ..record
        };
        if let Err(e) = journal.write(&failed, None).await {
            error!(job = %failed.id, "cannot record the job's end: {e}");
        }
        self.jobs.restore(
            &failed.id,
            JobState::Failed,
            JobOutcome {
                error,
                ..Default::default()
            },
        );
    }

    /// Cancels a job that has not started committing, for `reason`; its files are deleted
    /// and the table is left as it was. Returns whether it was cancelled.
    pub fn cancel(&self, job_id: &str, reason: &str) -> bool {
        if !self.jobs.cancel(job_id, reason) {
            return false;
        }
        self.ctx.scheduler.cancel_job(job_id);
        // A job taken over from a previous leader runs as `<job>r<epoch>`.
        let epoch = self.ctx.fence.epoch();
        if epoch > 0 {
            self.ctx.scheduler.cancel_job(&job::rerun_id(job_id, epoch));
        }
        true
    }

    /// Binds a job to its clients: when none follows it (see [`JobRegistry::follow`]) for
    /// the configured grace period before it commits, it is cancelled.
    fn bind_to_clients(&self, job_id: &str) {
        let (Some(mut followers), Some(mut status)) =
            (self.jobs.followers(job_id), self.jobs.watch(job_id))
        else {
            return;
        };
        let grace = Duration::from_millis(self.client_grace_ms);
        let (this, id) = (self.clone(), job_id.to_string());
        tokio::spawn(async move {
            let lost = async {
                loop {
                    if followers.wait_for(|n| *n == 0).await.is_err() {
                        return false;
                    }
                    match tokio::time::timeout(grace, followers.wait_for(|n| *n > 0)).await {
                        Err(_) => return true,
                        Ok(Err(_)) => return false,
                        Ok(Ok(_)) => {}
                    }
                }
            };
            tokio::select! {
                lost = lost => {
                    if lost && this.cancel(&id, CLIENT_GONE) {
                        warn!(job = %id, "{CLIENT_GONE}: cancelling the job");
                    }
                }
                _ = status.wait_for(|s| s.state.is_terminal() || s.state == JobState::Committing) => {}
            }
        });
    }
}

/// How long finished jobs are kept in the job journal.
pub const FINISHED_RETENTION_MS: i64 = 24 * 3600 * 1000;

/// Whether a finished job's record is past the retention at `now`.
fn expired_at(record: &journal::JobRecord, now: i64) -> bool {
    record.state.is_terminal() && now - record.updated_ms > FINISHED_RETENTION_MS
}

/// Removes the journal's finished jobs past the retention.
async fn forget_expired(journal: &dyn journal::JobJournal) -> Result<(), journal::JournalError> {
    let now = chrono::Utc::now().timestamp_millis();
    let expired: Vec<String> = journal
        .load()
        .await?
        .into_iter()
        .filter(|k| expired_at(&k.record, now))
        .map(|k| k.record.id)
        .collect();
    if expired.is_empty() {
        return Ok(());
    }
    journal.remove(&expired).await
}

/// What a new leader found in the job journal.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TakeOver {
    /// Jobs in flight whose commit had landed: now succeeded.
    pub committed: usize,
    /// Jobs in flight run again.
    pub rerun: usize,
    /// Jobs in flight that could not be run again (failed).
    pub failed: usize,
    /// Finished jobs remembered.
    pub finished: usize,
}

/// Prepares and drives a job to its end state and outcome; `None` when an elected leader
/// lost its leadership before the job ended (the job's record stays in flight for the next
/// leader).
async fn execute(
    ctx: &JobContext,
    id: &str,
    req: JobRequest,
    status: &tokio::sync::watch::Sender<job::JobStatus>,
) -> Option<(JobState, JobOutcome)> {
    // Held until the job ends (its commit included).
    let _turn = if turns::takes_turn(&req) {
        let predicate = turns::predicate(&req);
        // The table's partition columns are read only when the predicate pins a column.
        let footprint = match turns::footprint(predicate, &|_| true) {
            turns::Footprint::Table => turns::Footprint::Table,
            turns::Footprint::Partitions { .. } => {
                let partitioned: Vec<String> = ops::existing_table(req.table_uri())
                    .await
                    .map(|(_, snapshot)| snapshot.partition_columns)
                    .unwrap_or_default()
                    .iter()
                    .map(|c| c.to_lowercase())
                    .collect();
                turns::footprint(predicate, &|c| partitioned.iter().any(|p| p == c))
            }
        };
        let turn = ctx.turns.join(req.table_uri(), footprint);
        if !turn.is_ready() {
            info!(job = %id, table = %req.table_uri(), "waiting for another job on the table");
            status.send_modify(|s| {
                s.message = "queued: waiting for another job on the same table to end".into();
            });
            turn.ready().await;
        }
        Some(turn)
    } else {
        None
    };
    let started = Instant::now();
    info!(job = %id, kind = req.name(), table = %req.table_uri(), "job started");
    let plan_ctx = PlanContext {
        job_id: id.to_string(),
        slots: 1,
    };
    let table_uri = req.table_uri().to_string();
    let result = match ops::prepare(ctx, plan_ctx, req).await {
        Ok(op) => driver::run(ctx, id, op, status, started).await,
        Err(e) => Err(e),
    };
    if result.is_err()
        && let Ok(url) = silt_common::storage::parse_location(&table_uri)
    {
        silt_common::cleanup::remove_empty_dirs_without_table(&url);
    }
    Some(match result {
        Ok(o) => (JobState::Succeeded, o),
        Err(e) if e.is_cancelled() => {
            let reason = status.borrow().cancelled.clone();
            let reason = reason.as_deref().unwrap_or("at a client's request");
            info!(job = %id, "job cancelled: {reason}");
            (
                JobState::Cancelled,
                JobOutcome {
                    error: format!("job cancelled ({reason}); nothing was committed"),
                    ..Default::default()
                },
            )
        }
        Err(e) if e.is_fenced() && ctx.journal.get().is_some() => return None,
        Err(e) => {
            let error = e.to_string();
            let error =
                silt_common::redact::credentials(silt_common::redact::without_backtrace(&error));
            error!(job = %id, "job failed: {error}");
            (
                JobState::Failed,
                JobOutcome {
                    error,
                    ..Default::default()
                },
            )
        }
    })
}

/// Auto compaction after a commit at `version` (see [`ops::auto_compact`]): runs the
/// OPTIMIZE as a job of its own when the table asks for it; returns a line about what it
/// did, `None` when it had nothing to do. Its failure is reported, never raised.
async fn auto_compaction(
    ctx: &JobContext,
    jobs: &JobRegistry,
    uri: &str,
    version: i64,
) -> Option<String> {
    let req = match ops::auto_compact_request(uri, version).await {
        Ok(Some(req)) => req,
        Ok(None) => return None,
        Err(e) => return Some(format!("auto compaction not checked: {e}")),
    };
    let id = new_job_id();
    let status = jobs.create(&id);
    let (state, outcome) = execute(ctx, &id, JobRequest::Optimize(req), &status)
        .await
        .unwrap_or_else(|| {
            (
                JobState::Failed,
                JobOutcome {
                    error: "leadership lost".into(),
                    ..Default::default()
                },
            )
        });
    let line = match state {
        JobState::Succeeded => format!("auto compaction (job {id}): {}", outcome.summary),
        _ => format!("auto compaction (job {id}) failed: {}", outcome.error),
    };
    jobs.end(&id, &status, state, outcome);
    Some(line)
}

fn new_job_id() -> String {
    let u = uuid::Uuid::new_v4().simple().to_string();
    format!("j{}", &u[..16])
}
