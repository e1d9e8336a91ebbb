//! The silt coordinator: accepts jobs, plans them into tasks, schedules the tasks on
//! executors over gRPC, and makes each job's single Delta commit (fenced by leadership).
//!
//! Code map: [`job`] (requests, lifecycle, job store), [`write`] (the WRITE planner and
//! driver), [`scheduler`] (executors, attempts, retries), [`commit`] (conflict checks and the
//! commit), [`fence`] (leadership), [`cleanup`] (uncommitted files), [`service`] (gRPC: decode,
//! call, map errors — nothing else).

pub mod cleanup;
pub mod commit;
pub mod fence;
pub mod job;
pub mod scheduler;
pub mod service;
pub mod write;

use std::sync::Arc;

use job::{JobOutcome, JobRegistry, JobState, WriteRequest};
use scheduler::{Scheduler, SchedulerConfig};
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

    /// Accepts a write job and starts driving it; returns its id.
    pub fn submit_write(&self, req: WriteRequest) -> String {
        let job_id = new_job_id();
        let status = self.jobs.create(&job_id);
        let ctx = self.ctx.clone();
        let jobs = self.jobs.clone();
        let id = job_id.clone();
        let handle = tokio::spawn(async move {
            info!(job = %id, table = %req.table_uri, source = %req.source_uri, mode = ?req.mode, "write job started");
            // run_write forgets its stages itself: finished on success, cancelled on failure.
            let result = write::run_write(&ctx, &id, req, &status).await;
            let (state, outcome) = match result {
                Ok(o) => (JobState::Succeeded, o),
                Err(e) if e.is_cancelled() => (
                    JobState::Cancelled,
                    JobOutcome {
                        error: "job cancelled; nothing was committed".into(),
                        ..Default::default()
                    },
                ),
                Err(e) => {
                    error!(job = %id, "write job failed: {e}");
                    (
                        JobState::Failed,
                        JobOutcome {
                            error: e.to_string(),
                            ..Default::default()
                        },
                    )
                }
            };
            status.send_modify(|s| {
                s.state = state;
                s.message = if outcome.error.is_empty() {
                    outcome.summary.clone()
                } else {
                    outcome.error.clone()
                };
                s.outcome = Some(outcome);
            });
            jobs.finished(&id);
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

fn new_job_id() -> String {
    let u = uuid::Uuid::new_v4().simple().to_string();
    format!("j{}", &u[..16])
}
