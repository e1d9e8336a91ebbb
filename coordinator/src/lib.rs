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
pub mod job;
pub mod ops;
pub mod plan;
pub mod scheduler;
pub mod service;
pub mod txn;

use std::sync::Arc;
use std::time::Instant;

use driver::PlanContext;
use job::{JobOutcome, JobRegistry, JobState};
use scheduler::{Scheduler, SchedulerConfig};
use silt_common::request::JobRequest;
use tracing::{error, info};

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
}

impl Default for CoordinatorConfig {
    fn default() -> Self {
        Self {
            scheduler: SchedulerConfig::default(),
            executor_wait_ms: 30_000,
            min_executors: 1,
            max_finished_jobs: 1_000,
        }
    }
}

/// What job drivers share.
pub struct JobContext {
    pub scheduler: Scheduler,
    pub fence: Arc<dyn fence::LeaderFence>,
    pub executor_wait_ms: u64,
    pub min_executors: usize,
}

/// The coordinator; cheap to clone.
#[derive(Clone)]
pub struct Coordinator {
    ctx: Arc<JobContext>,
    jobs: JobRegistry,
}

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
            }),
            jobs: JobRegistry::new(config.max_finished_jobs),
        }
    }

    pub fn scheduler(&self) -> &Scheduler {
        &self.ctx.scheduler
    }

    pub fn jobs(&self) -> &JobRegistry {
        &self.jobs
    }

    /// Accepts a job and starts driving it; returns its id.
    pub fn submit(&self, req: JobRequest) -> String {
        let job_id = new_job_id();
        let status = self.jobs.create(&job_id);
        let ctx = self.ctx.clone();
        let jobs = self.jobs.clone();
        let id = job_id.clone();
        let handle = tokio::spawn(async move {
            let compact_after =
                ops::auto_compact::triggers(&req).then(|| req.table_uri().to_string());
            let (state, mut outcome) = execute(&ctx, &id, req, &status).await;
            if let (JobState::Succeeded, Some(uri), Some(version)) =
                (state, compact_after, outcome.version)
                && let Some(line) = auto_compaction(&ctx, &jobs, &uri, version).await
            {
                outcome.summary.push_str(&format!("; {line}"));
            }
            finish(&jobs, &id, &status, state, outcome);
        });
        self.jobs.set_driver(&job_id, handle.abort_handle());
        job_id
    }

    /// Cancels a job that has not started committing. Returns whether it was cancelled.
    pub fn cancel(&self, job_id: &str) -> bool {
        match self.jobs.status(job_id) {
            Some(s) if matches!(s.state, JobState::Queued | JobState::Running) => {
                self.ctx.scheduler.cancel_job(job_id);
                true
            }
            _ => false,
        }
    }
}

/// Prepares and drives a job to its end state and outcome.
async fn execute(
    ctx: &JobContext,
    id: &str,
    req: JobRequest,
    status: &tokio::sync::watch::Sender<job::JobStatus>,
) -> (JobState, JobOutcome) {
    let started = Instant::now();
    info!(job = %id, kind = req.name(), table = %req.table_uri(), "job started");
    let plan_ctx = PlanContext {
        job_id: id.to_string(),
        slots: 1,
    };
    let result = match ops::prepare(ctx, plan_ctx, req).await {
        Ok(op) => driver::run(ctx, id, op, status, started).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(o) => (JobState::Succeeded, o),
        Err(e) if e.is_cancelled() => (
            JobState::Cancelled,
            JobOutcome {
                error: "job cancelled; nothing was committed".into(),
                ..Default::default()
            },
        ),
        Err(e) => {
            error!(job = %id, "job failed: {e}");
            (
                JobState::Failed,
                JobOutcome {
                    error: e.to_string(),
                    ..Default::default()
                },
            )
        }
    }
}

/// Publishes a job's end.
fn finish(
    jobs: &JobRegistry,
    id: &str,
    status: &tokio::sync::watch::Sender<job::JobStatus>,
    state: JobState,
    outcome: JobOutcome,
) {
    status.send_modify(|s| {
        s.state = state;
        s.message = if outcome.error.is_empty() {
            outcome.summary.clone()
        } else {
            outcome.error.clone()
        };
        s.outcome = Some(outcome);
    });
    jobs.finished(id);
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
    let (state, outcome) = execute(ctx, &id, JobRequest::Optimize(req), &status).await;
    let line = match state {
        JobState::Succeeded => format!("auto compaction (job {id}): {}", outcome.summary),
        _ => format!("auto compaction (job {id}) failed: {}", outcome.error),
    };
    finish(jobs, &id, &status, state, outcome);
    Some(line)
}

fn new_job_id() -> String {
    let u = uuid::Uuid::new_v4().simple().to_string();
    format!("j{}", &u[..16])
}
