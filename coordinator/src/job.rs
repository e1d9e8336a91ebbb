//! Jobs: their lifecycle and progress, and the in-memory job store. What clients submit
//! is `silt_common::request::JobRequest`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

/// Lifecycle of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Queued,
    Running,
    Committing,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobState {
    /// Lower-case name (as in the job journal and metrics).
    pub fn name(&self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Committing => "committing",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn is_terminal(&self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
    }
}

/// How a job ended.
#[derive(Debug, Clone, Default)]
pub struct JobOutcome {
    /// The committed version, when the job committed.
    pub version: Option<i64>,
    pub error: String,
    /// Delta operation metrics as written to `commitInfo.operationMetrics`.
    pub metrics: BTreeMap<String, String>,
    pub summary: String,
    /// Queries (DESCRIBE): the answer.
    pub rows: Option<QueryResult>,
    /// Commits by other writers checked after losing a race for a version.
    pub winning_commits_checked: u32,
}

/// The answer of a query: named columns and rows of JSON values.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueryResult {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<serde_json::Value>>,
}

/// A snapshot of a job's status, published on every change.
#[derive(Debug, Clone)]
pub struct JobStatus {
    pub job_id: String,
    pub state: JobState,
    pub stage: String,
    pub tasks_total: u32,
    pub tasks_succeeded: u32,
    pub tasks_running: u32,
    pub task_retries: u32,
    pub message: String,
    pub outcome: Option<JobOutcome>,
    /// Why the job was cancelled, once it is: it then never starts committing.
    pub cancelled: Option<String>,
}

struct JobEntry {
    status: watch::Sender<JobStatus>,
    driver: Option<tokio::task::AbortHandle>,
    /// Clients following the job (its open WatchJob streams).
    followers: watch::Sender<usize>,
}

/// A client following a job; it stops following when this is dropped.
pub struct Follower(watch::Sender<usize>);

impl Drop for Follower {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// The in-memory job store. Bounded: finished jobs beyond `max_finished` are forgotten,
/// oldest first.
#[derive(Clone)]
pub struct JobRegistry {
    inner: Arc<Mutex<Registry>>,
}

#[derive(Default)]
struct Registry {
    jobs: HashMap<String, JobEntry>,
    finished_order: std::collections::VecDeque<String>,
    max_finished: usize,
}

impl JobRegistry {
    pub fn new(max_finished: usize) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Registry {
                max_finished,
                ..Default::default()
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Creates a job in state `Queued` and returns its status channel.
    pub fn create(&self, job_id: &str) -> watch::Sender<JobStatus> {
        let (tx, _rx) = watch::channel(JobStatus {
            job_id: job_id.to_string(),
            state: JobState::Queued,
            stage: String::new(),
            tasks_total: 0,
            tasks_succeeded: 0,
            tasks_running: 0,
            task_retries: 0,
            message: "queued".into(),
            outcome: None,
            cancelled: None,
        });
        self.lock().jobs.insert(
            job_id.to_string(),
            JobEntry {
                status: tx.clone(),
                driver: None,
                followers: watch::channel(0).0,
            },
        );
        tx
    }

    /// Marks a job cancelled for `reason` if it has not started committing (under its
    /// status lock: the driver's move to committing checks the mark under the same lock, so
    /// exactly one of the two happens). Returns whether it was cancelled now.
    pub fn cancel(&self, job_id: &str, reason: &str) -> bool {
        let Some(status) = self.lock().jobs.get(job_id).map(|e| e.status.clone()) else {
            return false;
        };
        let mut cancelled = false;
        status.send_if_modified(|s| {
            cancelled =
                matches!(s.state, JobState::Queued | JobState::Running) && s.cancelled.is_none();
            if cancelled {
                s.cancelled = Some(reason.to_string());
                s.message = format!("cancelling: {reason}");
            }
            cancelled
        });
        cancelled
    }

    /// A client starts following a job (until the returned guard is dropped).
    pub fn follow(&self, job_id: &str) -> Option<Follower> {
        let reg = self.lock();
        let followers = &reg.jobs.get(job_id)?.followers;
        followers.send_modify(|n| *n += 1);
        Some(Follower(followers.clone()))
    }

    /// How many clients follow a job, as it changes.
    pub fn followers(&self, job_id: &str) -> Option<watch::Receiver<usize>> {
        self.lock()
            .jobs
            .get(job_id)
            .map(|e| e.followers.subscribe())
    }

    pub fn set_driver(&self, job_id: &str, handle: tokio::task::AbortHandle) {
        if let Some(e) = self.lock().jobs.get_mut(job_id) {
            e.driver = Some(handle);
        }
    }

    /// Subscribes to a job's status.
    pub fn watch(&self, job_id: &str) -> Option<watch::Receiver<JobStatus>> {
        self.lock().jobs.get(job_id).map(|e| e.status.subscribe())
    }

    pub fn status(&self, job_id: &str) -> Option<JobStatus> {
        self.lock()
            .jobs
            .get(job_id)
            .map(|e| e.status.borrow().clone())
    }

    /// How many jobs are in each state.
    pub fn counts(&self) -> Vec<(JobState, usize)> {
        let mut counts: Vec<(JobState, usize)> = Vec::new();
        for e in self.lock().jobs.values() {
            let state = e.status.borrow().state;
            match counts.iter_mut().find(|(s, _)| *s == state) {
                Some((_, n)) => *n += 1,
                None => counts.push((state, 1)),
            }
        }
        counts
    }

    /// Remembers a job that ended under another coordinator (its outcome from the job
    /// journal), so that clients asking for it get its result.
    pub fn restore(&self, job_id: &str, state: JobState, outcome: JobOutcome) {
        let status = self.create(job_id);
        self.end(job_id, &status, state, outcome);
    }

    /// Publishes a job's end on its status channel, and marks it finished.
    pub fn end(
        &self,
        job_id: &str,
        status: &watch::Sender<JobStatus>,
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
        self.finished(job_id);
    }

    /// Marks a job finished (bookkeeping for the bound on remembered jobs).
    pub fn finished(&self, job_id: &str) {
        let mut reg = self.lock();
        reg.finished_order.push_back(job_id.to_string());
        while reg.finished_order.len() > reg.max_finished {
            if let Some(old) = reg.finished_order.pop_front() {
                reg.jobs.remove(&old);
            }
        }
    }
}

/// The job a run belongs to: a job that a new leader runs again after a failover runs as
/// `<job id>r<epoch>` (so that its files are its own), and its commit names the job.
pub fn public_job_id(run_id: &str) -> &str {
    match run_id.rsplit_once('r') {
        Some((job, epoch))
            if !job.is_empty()
                && !epoch.is_empty()
                && epoch.bytes().all(|b| b.is_ascii_digit()) =>
        {
            job
        }
        _ => run_id,
    }
}

/// The id of a job's run under the leader of `epoch`.
pub fn rerun_id(job_id: &str, epoch: u64) -> String {
    format!("{job_id}r{epoch}")
}

#[cfg(test)]
mod run_id_tests {
    use super::*;

    #[test]
    fn runs_name_their_job() {
        assert_eq!(public_job_id("j0123456789abcdef"), "j0123456789abcdef");
        assert_eq!(
            public_job_id(&rerun_id("j0123456789abcdef", 42)),
            "j0123456789abcdef"
        );
        assert_eq!(public_job_id("jr"), "jr");
        assert_eq!(public_job_id("r5"), "r5");
    }
}
