//! Jobs: what clients submit, their lifecycle and progress, and the in-memory job store.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use silt_common::task::SourceFormat;
use tokio::sync::watch;

/// Delta write modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    Append,
    Overwrite,
    ErrorIfExists,
    Ignore,
}

impl WriteMode {
    /// Name as Delta Spark records it in `operationParameters.mode`.
    pub fn delta_name(&self) -> &'static str {
        match self {
            Self::Append => "Append",
            Self::Overwrite => "Overwrite",
            Self::ErrorIfExists => "ErrorIfExists",
            Self::Ignore => "Ignore",
        }
    }
}

/// A distributed write, as submitted.
#[derive(Debug, Clone)]
pub struct WriteRequest {
    pub table_uri: String,
    pub source_uri: String,
    pub format: SourceFormat,
    pub mode: WriteMode,
    pub partition_by: Vec<String>,
    pub replace_where: Option<String>,
    pub dynamic_partition_overwrite: bool,
    pub merge_schema: bool,
    pub overwrite_schema: bool,
    pub txn_app_id: Option<String>,
    pub txn_version: Option<i64>,
    pub target_file_size_bytes: Option<u64>,
    pub properties: BTreeMap<String, String>,
}

/// Lifecycle of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    Queued,
    Running,
    Committing,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobState {
    pub fn is_terminal(&self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
    }
}

/// How a job ended.
#[derive(Debug, Clone, Default)]
pub struct JobOutcome {
    pub version: Option<i64>,
    pub error: String,
    pub metrics: BTreeMap<String, String>,
    pub summary: String,
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
}

struct JobEntry {
    status: watch::Sender<JobStatus>,
    driver: Option<tokio::task::AbortHandle>,
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
        });
        self.lock().jobs.insert(
            job_id.to_string(),
            JobEntry {
                status: tx.clone(),
                driver: None,
            },
        );
        tx
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
