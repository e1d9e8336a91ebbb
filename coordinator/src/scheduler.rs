//! Scheduling state: the executor registry, queued and running task attempts, retries and
//! lost-executor handling. It knows nothing of gRPC or of what tasks do.
//!
//! Invariants kept here:
//! * a task has exactly one current attempt; a report for any other attempt, or from
//!   another epoch, is rejected as stale;
//! * a stage completes once, with every task's output from its accepted attempt, or fails
//!   once with the first fatal cause;
//! * attempts per task are bounded (`max_task_attempts`), and so is the wait of a poll;
//! * a task that could not fetch its exchange input ends its stage at once with
//!   [`StageError::FetchFailed`] (the outputs of the tasks that succeeded kept): the driver
//!   re-runs the lost map tasks and then the rest of the stage;
//! * executors drop the map outputs of every job that is not active (begun and not yet
//!   forgotten) when they next heartbeat.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use silt_common::task::{Task, TaskFailure, TaskOutput, TaskSpec};
use tokio::sync::{Notify, oneshot};
use tokio::time::Instant;
use tracing::{info, warn};

/// Scheduler limits.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// Attempts per task before the job fails (retryable failures and lost executors both count).
    pub max_task_attempts: u32,
    /// An executor silent for this long is declared lost and its tasks are re-queued.
    pub executor_timeout_ms: u64,
    /// Interval executors are told to heartbeat at.
    pub heartbeat_interval_ms: u64,
    /// Upper bound on how long a poll may wait for a task.
    pub max_poll_wait_ms: u64,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            max_task_attempts: 4,
            executor_timeout_ms: 10_000,
            heartbeat_interval_ms: 1_000,
            max_poll_wait_ms: 2_000,
        }
    }
}

/// Identifies one attempt of one task.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AttemptKey {
    pub job_id: String,
    pub stage: u32,
    pub index: u32,
    pub attempt: u32,
}

impl AttemptKey {
    fn of(spec: &TaskSpec) -> Self {
        Self {
            job_id: spec.job_id.clone(),
            stage: spec.stage,
            index: spec.index,
            attempt: spec.attempt,
        }
    }
}

/// Why a stage did not complete.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StageError {
    #[error("task {task} failed: {message}")]
    TaskFailed { task: String, message: String },
    #[error("task {task} failed {attempts} times, last: {message}")]
    AttemptsExhausted {
        task: String,
        attempts: u32,
        message: String,
    },
    #[error("job cancelled")]
    Cancelled,
    /// A task could not fetch map outputs from these shuffle endpoints. `outputs` holds the
    /// outputs of the stage's tasks that had succeeded (by task index).
    #[error("task {task} could not fetch its exchange input from {lost:?}: {message}")]
    FetchFailed {
        task: String,
        message: String,
        lost: Vec<String>,
        outputs: Vec<Option<TaskOutput>>,
    },
}

/// Progress counters of the running stage of a job.
#[derive(Debug, Clone, Default)]
pub struct StageProgress {
    pub total: u32,
    pub succeeded: u32,
    pub running: u32,
    pub retries: u32,
}

#[derive(Debug)]
enum TaskState {
    Queued,
    Running { executor: String },
    Succeeded,
}

#[derive(Debug)]
struct TaskEntry {
    task: Task,
    attempt: u32,
    state: TaskState,
    output: Option<TaskOutput>,
    avoid_executor: Option<String>,
    last_error: Option<String>,
}

struct StageRun {
    epoch: u64,
    snapshot_version: i64,
    tasks: Vec<TaskEntry>,
    remaining: usize,
    retries: u32,
    done: Option<oneshot::Sender<Result<Vec<TaskOutput>, StageError>>>,
    /// Every attempt ever dispatched, for cleanup of superseded attempts' files.
    dispatched: Vec<AttemptKey>,
}

struct ExecutorEntry {
    last_seen: Instant,
    slots: u32,
    /// The executor's memory limit (0: not said).
    memory_limit_bytes: u64,
    /// Where its shuffle endpoint is (for logs: map outputs name it themselves).
    shuffle_address: String,
    /// Attempts handed to this executor and not yet reported, with when they were handed out.
    running: HashMap<AttemptKey, Instant>,
}

#[derive(Default)]
struct State {
    next_executor: u64,
    executors: HashMap<String, ExecutorEntry>,
    stages: HashMap<(String, u32), StageRun>,
    queue: VecDeque<(String, u32, u32)>,
    /// Re-run attempts per job, kept until the job is forgotten (stages that failed are gone).
    retries: HashMap<String, u32>,
    /// Jobs begun and not yet forgotten: executors keep their map outputs.
    active_jobs: HashSet<String>,
    /// Jobs cancelled and not yet forgotten: their stages end at once, also those that
    /// start after the cancellation (a job cancelled while planning).
    cancelled: HashSet<String>,
}

/// The scheduler; cheap to clone.
#[derive(Clone)]
pub struct Scheduler {
    inner: Arc<Inner>,
}

struct Inner {
    config: SchedulerConfig,
    state: Mutex<State>,
    work: Notify,
    executors_changed: Notify,
    /// Notified whenever attempts stop running (reports, heartbeats, lost executors).
    attempts_ended: Notify,
}

/// What a successful registration gives the executor.
pub struct Registration {
    pub executor_id: String,
    pub heartbeat_interval_ms: u64,
}

/// Outcome of a heartbeat.
pub struct HeartbeatReply {
    pub reregister: bool,
    pub cancel: Vec<AttemptKey>,
    /// Jobs the executor holds map outputs of that are no longer active.
    pub drop_shuffle_jobs: Vec<String>,
}

impl Scheduler {
    pub fn new(config: SchedulerConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                config,
                state: Mutex::new(State::default()),
                work: Notify::new(),
                executors_changed: Notify::new(),
                attempts_ended: Notify::new(),
            }),
        }
    }

    pub fn config(&self) -> &SchedulerConfig {
        &self.inner.config
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock means a panic while holding it; the state is still structurally
        // valid (every mutation is a single step), so keep serving.
        self.inner
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers an executor.
    pub fn register(
        &self,
        slots: u32,
        memory_limit_bytes: u64,
        host: &str,
        shuffle_address: &str,
    ) -> Registration {
        let mut st = self.lock();
        st.next_executor += 1;
        let id = format!("exec-{}-{}", st.next_executor, host);
        st.executors.insert(
            id.clone(),
            ExecutorEntry {
                last_seen: Instant::now(),
                slots: slots.max(1),
                memory_limit_bytes,
                shuffle_address: shuffle_address.to_string(),
                running: HashMap::new(),
            },
        );
        drop(st);
        info!(executor = %id, slots, shuffle = shuffle_address, "executor registered");
        self.inner.executors_changed.notify_waiters();
        Registration {
            executor_id: id,
            heartbeat_interval_ms: self.inner.config.heartbeat_interval_ms,
        }
    }

    /// Number of live executors and their total slots.
    pub fn capacity(&self) -> (usize, u32) {
        let st = self.lock();
        (
            st.executors.len(),
            st.executors.values().map(|e| e.slots).sum(),
        )
    }

    /// The smallest memory one task slot has on any live executor (`None`: no executor said).
    pub fn slot_memory(&self) -> Option<u64> {
        let st = self.lock();
        st.executors
            .values()
            .filter(|e| e.memory_limit_bytes > 0)
            .map(|e| e.memory_limit_bytes / u64::from(e.slots.max(1)))
            .min()
    }

    /// Waits until at least `n` executors are registered, or `timeout` passes.
    pub async fn wait_for_executors(&self, n: usize, timeout: Duration) -> usize {
        wait_until(&self.inner.executors_changed, timeout, || {
            self.capacity().0 >= n
        })
        .await;
        self.capacity().0
    }

    /// Waits while executors keep registering: returns once none came for `quiet`, or at
    /// `deadline`. For a new leader, whose executors come back one by one after a failover.
    pub async fn wait_for_executors_to_settle(&self, quiet: Duration, deadline: Instant) {
        loop {
            let now = Instant::now();
            if now >= deadline {
                return;
            }
            let before = self.capacity().0;
            let step = quiet.min(deadline - now);
            let changed = wait_until(&self.inner.executors_changed, step, || {
                self.capacity().0 != before
            })
            .await;
            if !changed {
                return;
            }
        }
    }

    /// Records a heartbeat; tells the executor which attempts to abandon.
    ///
    /// `running` is what the executor still runs. Attempts it no longer reports (abandoned
    /// after a cancel, which sends no report) are forgotten, unless they were handed out too
    /// recently to have reached the executor's books.
    pub fn heartbeat(
        &self,
        executor_id: &str,
        running: Vec<AttemptKey>,
        shuffle_jobs: &[String],
    ) -> HeartbeatReply {
        let mut st = self.lock();
        let grace = Duration::from_millis(self.inner.config.heartbeat_interval_ms * 2);
        let now = Instant::now();
        let drop_shuffle_jobs: Vec<String> = shuffle_jobs
            .iter()
            .filter(|j| !st.active_jobs.contains(*j))
            .cloned()
            .collect();
        let Some(exec) = st.executors.get_mut(executor_id) else {
            return HeartbeatReply {
                reregister: true,
                cancel: running,
                drop_shuffle_jobs,
            };
        };
        exec.last_seen = now;
        let reported: HashSet<&AttemptKey> = running.iter().collect();
        let before = exec.running.len();
        exec.running
            .retain(|k, since| reported.contains(k) || now.duration_since(*since) < grace);
        let ended = exec.running.len() < before;
        let cancel = running
            .iter()
            .filter(|k| !is_current_running(&st, k, executor_id))
            .cloned()
            .collect();
        drop(st);
        if ended {
            self.inner.attempts_ended.notify_waiters();
        }
        HeartbeatReply {
            reregister: false,
            cancel,
            drop_shuffle_jobs,
        }
    }

    /// Marks a job active: executors keep its map outputs until [`Scheduler::forget_job`].
    /// Jobs that began and have not ended.
    /// Task attempts the live executors run.
    pub fn tasks_running(&self) -> usize {
        self.lock()
            .executors
            .values()
            .map(|e| e.running.len())
            .sum()
    }

    pub fn active_jobs(&self) -> Vec<String> {
        self.lock().active_jobs.iter().cloned().collect()
    }

    pub fn begin_job(&self, job_id: &str) {
        self.lock().active_jobs.insert(job_id.to_string());
    }

    /// Attempts of `job_id` that some live executor may still be running (including ones
    /// that are no longer current: cancelled or superseded, not yet acknowledged).
    pub fn job_attempts_in_flight(&self, job_id: &str) -> usize {
        self.lock()
            .executors
            .values()
            .map(|e| e.running.keys().filter(|k| k.job_id == job_id).count())
            .sum()
    }

    /// Waits until no live executor runs an attempt of `job_id`, or `timeout` passes.
    /// Returns whether the job is idle. Used before deleting a job's uncommitted files, so
    /// that a straggling attempt does not write a file after the cleanup.
    pub async fn wait_job_idle(&self, job_id: &str, timeout: Duration) -> bool {
        wait_until(&self.inner.attempts_ended, timeout, || {
            self.job_attempts_in_flight(job_id) == 0
        })
        .await
    }

    /// Hands out the next queued task to `executor_id`, waiting up to `wait`.
    /// `Err(())` when the executor is unknown (it must register again).
    pub async fn poll(&self, executor_id: &str, wait: Duration) -> Result<Option<TaskSpec>, ()> {
        let wait = wait.min(Duration::from_millis(self.inner.config.max_poll_wait_ms));
        let deadline = Instant::now() + wait;
        loop {
            let notified = self.inner.work.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(spec) = self.try_assign(executor_id)? {
                return Ok(Some(spec));
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Ok(None);
            }
        }
    }

    fn try_assign(&self, executor_id: &str) -> Result<Option<TaskSpec>, ()> {
        let mut st = self.lock();
        let live = st.executors.len();
        let Some(exec) = st.executors.get_mut(executor_id) else {
            return Err(());
        };
        exec.last_seen = Instant::now();
        let st = &mut *st;
        // First queued task this executor may take: a retry avoids the executor where the
        // previous attempt failed, unless it is the only one.
        let pos = st.queue.iter().position(|(job, stage, index)| {
            st.stages
                .get(&(job.clone(), *stage))
                .and_then(|s| s.tasks.get(*index as usize))
                .is_some_and(|t| live <= 1 || t.avoid_executor.as_deref() != Some(executor_id))
        });
        let Some(pos) = pos else { return Ok(None) };
        let Some((job_id, stage, index)) = st.queue.remove(pos) else {
            return Ok(None);
        };
        let Some(run) = st.stages.get_mut(&(job_id.clone(), stage)) else {
            return Ok(None);
        };
        let Some(task) = run.tasks.get_mut(index as usize) else {
            return Ok(None);
        };
        task.state = TaskState::Running {
            executor: executor_id.to_string(),
        };
        let spec = TaskSpec {
            job_id,
            stage,
            index,
            attempt: task.attempt,
            epoch: run.epoch,
            snapshot_version: run.snapshot_version,
            task: task.task.clone(),
        };
        let key = AttemptKey::of(&spec);
        run.dispatched.push(key.clone());
        if let Some(exec) = st.executors.get_mut(executor_id) {
            exec.running.insert(key, Instant::now());
        }
        Ok(Some(spec))
    }

    /// Runs one stage to completion: queues its tasks and waits for all of them.
    /// Returns the outputs in task order.
    pub async fn run_stage(
        &self,
        job_id: &str,
        stage: u32,
        epoch: u64,
        snapshot_version: i64,
        tasks: Vec<Task>,
    ) -> Result<Vec<TaskOutput>, StageError> {
        let (tx, rx) = oneshot::channel();
        {
            let mut st = self.lock();
            if st.cancelled.contains(job_id) {
                return Err(StageError::Cancelled);
            }
            if tasks.is_empty() {
                return Ok(Vec::new());
            }
            let n = tasks.len();
            for i in 0..n {
                st.queue.push_back((job_id.to_string(), stage, i as u32));
            }
            st.stages.insert(
                (job_id.to_string(), stage),
                StageRun {
                    epoch,
                    snapshot_version,
                    tasks: tasks
                        .into_iter()
                        .map(|task| TaskEntry {
                            task,
                            attempt: 0,
                            state: TaskState::Queued,
                            output: None,
                            avoid_executor: None,
                            last_error: None,
                        })
                        .collect(),
                    remaining: n,
                    retries: 0,
                    done: Some(tx),
                    dispatched: Vec::new(),
                },
            );
        }
        self.inner.work.notify_waiters();
        rx.await.unwrap_or(Err(StageError::Cancelled))
    }

    /// Attempts dispatched for a stage so far (for cleanup of superseded attempts).
    pub fn dispatched_attempts(&self, job_id: &str, stage: u32) -> Vec<AttemptKey> {
        self.lock()
            .stages
            .get(&(job_id.to_string(), stage))
            .map(|s| s.dispatched.clone())
            .unwrap_or_default()
    }

    /// Attempts of the job that were re-run (after a failure or a lost executor); superseded
    /// attempts may have left files behind.
    pub fn job_retries(&self, job_id: &str) -> u32 {
        self.lock().retries.get(job_id).copied().unwrap_or(0)
    }

    /// Forgets every stage of a finished job; attempts still running get cancelled at the
    /// next heartbeat of their executor.
    pub fn forget_job(&self, job_id: &str) {
        let mut st = self.lock();
        st.stages.retain(|(j, _), _| j != job_id);
        st.queue.retain(|(j, _, _)| j != job_id);
        st.retries.remove(job_id);
        st.active_jobs.remove(job_id);
        st.cancelled.remove(job_id);
    }

    /// Progress of a stage.
    pub fn progress(&self, job_id: &str, stage: u32) -> StageProgress {
        let st = self.lock();
        let Some(run) = st.stages.get(&(job_id.to_string(), stage)) else {
            return StageProgress::default();
        };
        let mut p = StageProgress {
            total: run.tasks.len() as u32,
            retries: run.retries,
            ..Default::default()
        };
        for t in &run.tasks {
            match t.state {
                TaskState::Running { .. } => p.running += 1,
                TaskState::Succeeded => p.succeeded += 1,
                TaskState::Queued => {}
            }
        }
        p
    }

    /// Cancels every stage of a job: waiting `run_stage` calls return `Cancelled`, and so
    /// do later ones until the job is forgotten.
    pub fn cancel_job(&self, job_id: &str) {
        let mut st = self.lock();
        st.cancelled.insert(job_id.to_string());
        let keys: Vec<_> = st
            .stages
            .keys()
            .filter(|(j, _)| j == job_id)
            .cloned()
            .collect();
        for k in keys {
            if let Some(mut run) = st.stages.remove(&k)
                && let Some(done) = run.done.take()
            {
                let _ = done.send(Err(StageError::Cancelled));
            }
        }
        st.queue.retain(|(j, _, _)| j != job_id);
    }

    /// Accepts a task report if it is for the current attempt and epoch; returns whether
    /// it was accepted.
    pub fn report(
        &self,
        executor_id: &str,
        key: &AttemptKey,
        epoch: u64,
        outcome: Result<TaskOutput, TaskFailure>,
    ) -> bool {
        let mut st = self.lock();
        if let Some(exec) = st.executors.get_mut(executor_id) {
            exec.running.remove(key);
            exec.last_seen = Instant::now();
        }
        self.inner.attempts_ended.notify_waiters();
        if !is_current_running(&st, key, executor_id) {
            warn!(?key, "stale task report ignored");
            return false;
        }
        let max_attempts = self.inner.config.max_task_attempts;
        let stage_key = (key.job_id.clone(), key.stage);
        let Some(run) = st.stages.get_mut(&stage_key) else {
            return false;
        };
        if run.epoch != epoch {
            warn!(
                ?key,
                epoch,
                expected = run.epoch,
                "report from another epoch ignored"
            );
            return false;
        }
        let task_name = format!("{}/s{}/t{}", key.job_id, key.stage, key.index);
        let Some(task) = run.tasks.get_mut(key.index as usize) else {
            return false;
        };
        // A report that does not hold up against the task dispatched fails the attempt.
        let outcome = outcome.and_then(|output| {
            let tag = silt_common::task::attempt_tag(key.stage, key.index, key.attempt);
            match crate::report::validate(&task.task, &tag, &output) {
                Ok(()) => Ok(output),
                Err(why) => {
                    warn!(task = %task_name, attempt = key.attempt, executor = %executor_id, "report refused: {why}");
                    Err(TaskFailure {
                        message: format!("report refused: {why}"),
                        retryable: true,
                        lost_map_outputs: Vec::new(),
                    })
                }
            }
        });
        match outcome {
            Ok(output) => {
                task.state = TaskState::Succeeded;
                task.output = Some(output);
                run.remaining -= 1;
                if run.remaining == 0 {
                    let outputs = run
                        .tasks
                        .iter_mut()
                        .map(|t| t.output.take().unwrap_or_default())
                        .collect();
                    if let Some(done) = run.done.take() {
                        let _ = done.send(Ok(outputs));
                    }
                }
            }
            Err(failure) => {
                warn!(task = %task_name, attempt = key.attempt, retryable = failure.retryable, "task failed: {}", failure.message);
                let fatal = if !failure.lost_map_outputs.is_empty() {
                    // Not this task's fault: the stage ends so that the driver can re-run
                    // the lost map tasks; its succeeded outputs are kept.
                    let outputs = run.tasks.iter_mut().map(|t| t.output.take()).collect();
                    *st.retries.entry(key.job_id.clone()).or_default() += 1;
                    Some(StageError::FetchFailed {
                        task: task_name,
                        message: failure.message,
                        lost: failure.lost_map_outputs,
                        outputs,
                    })
                } else if !failure.retryable {
                    Some(StageError::TaskFailed {
                        task: task_name,
                        message: failure.message,
                    })
                } else if task.attempt + 1 >= max_attempts {
                    Some(StageError::AttemptsExhausted {
                        task: task_name,
                        attempts: task.attempt + 1,
                        message: failure.message,
                    })
                } else {
                    task.attempt += 1;
                    task.state = TaskState::Queued;
                    task.avoid_executor = Some(executor_id.to_string());
                    task.last_error = Some(failure.message);
                    run.retries += 1;
                    st.queue
                        .push_back((key.job_id.clone(), key.stage, key.index));
                    *st.retries.entry(key.job_id.clone()).or_default() += 1;
                    None
                };
                if let Some(err) = fatal {
                    fail_stage(&mut st, &stage_key, err);
                }
            }
        }
        drop(st);
        self.inner.work.notify_waiters();
        true
    }

    /// Declares executors silent for longer than the timeout lost and re-queues their
    /// running attempts as new attempts. Returns the ids of lost executors.
    pub fn reap_lost_executors(&self) -> Vec<String> {
        let timeout = Duration::from_millis(self.inner.config.executor_timeout_ms);
        let max_attempts = self.inner.config.max_task_attempts;
        let now = Instant::now();
        let mut st = self.lock();
        let lost: Vec<String> = st
            .executors
            .iter()
            .filter(|(_, e)| now.duration_since(e.last_seen) > timeout)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &lost {
            let Some(exec) = st.executors.remove(id) else {
                continue;
            };
            warn!(executor = %id, tasks = exec.running.len(), shuffle = %exec.shuffle_address, "executor lost");
            for key in exec.running.into_keys() {
                let stage_key = (key.job_id.clone(), key.stage);
                let Some(run) = st.stages.get_mut(&stage_key) else {
                    continue;
                };
                let Some(task) = run.tasks.get_mut(key.index as usize) else {
                    continue;
                };
                let current = task.attempt == key.attempt
                    && matches!(&task.state, TaskState::Running { executor } if executor == id);
                if !current {
                    continue;
                }
                let msg = format!("executor {id} was lost while running the task");
                if task.attempt + 1 >= max_attempts {
                    let err = StageError::AttemptsExhausted {
                        task: format!("{}/s{}/t{}", key.job_id, key.stage, key.index),
                        attempts: task.attempt + 1,
                        message: msg,
                    };
                    fail_stage(&mut st, &stage_key, err);
                } else {
                    task.attempt += 1;
                    task.state = TaskState::Queued;
                    task.last_error = Some(msg);
                    run.retries += 1;
                    st.queue
                        .push_back((key.job_id.clone(), key.stage, key.index));
                    *st.retries.entry(key.job_id.clone()).or_default() += 1;
                }
            }
        }
        drop(st);
        if !lost.is_empty() {
            self.inner.work.notify_waiters();
            self.inner.executors_changed.notify_waiters();
            self.inner.attempts_ended.notify_waiters();
        }
        lost
    }

    /// Runs [`Scheduler::reap_lost_executors`] periodically until the returned handle is aborted.
    pub fn spawn_reaper(&self) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        let period = Duration::from_millis((self.inner.config.executor_timeout_ms / 4).max(50));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            loop {
                tick.tick().await;
                this.reap_lost_executors();
            }
        })
    }
}

/// Waits until `done()` holds, re-checking whenever `changed` is notified, for at most
/// `timeout`. Returns the last answer of `done()`.
async fn wait_until(changed: &Notify, timeout: Duration, done: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        // Registered before the check, so a change between check and wait is not missed.
        let notified = changed.notified();
        if done() {
            return true;
        }
        if tokio::time::timeout_at(deadline, notified).await.is_err() {
            return done();
        }
    }
}

fn is_current_running(st: &State, key: &AttemptKey, executor_id: &str) -> bool {
    st.stages
        .get(&(key.job_id.clone(), key.stage))
        .and_then(|run| run.tasks.get(key.index as usize))
        .is_some_and(|t| {
            t.attempt == key.attempt
                && matches!(&t.state, TaskState::Running { executor } if executor == executor_id)
        })
}

fn fail_stage(st: &mut State, stage_key: &(String, u32), err: StageError) {
    if let Some(run) = st.stages.get_mut(stage_key) {
        // Stop the other attempts: they are no longer current once the stage is gone.
        for t in run.tasks.iter_mut() {
            t.state = TaskState::Succeeded;
        }
        if let Some(done) = run.done.take() {
            let _ = done.send(Err(err));
        }
    }
    st.stages.remove(stage_key);
    st.queue
        .retain(|(j, s, _)| !(j == &stage_key.0 && *s == stage_key.1));
}

#[cfg(test)]
mod tests {
    //! The scheduler's state machine, driven directly: reports, heartbeats and lost
    //! executors with time injected (tokio's paused clock), no gRPC.
    use super::*;
    use silt_common::task::{FileSpec, Input, Sink, TableSpec};

    fn task(n: u32) -> Task {
        Task {
            table: TableSpec {
                uri: "file:///t".into(),
                schema_json: "{}".into(),
                partition_columns: vec![],
            },
            input: Input::Exchange {
                map_outputs: vec![],
                partition: n,
            },
            transforms: vec![],
            sink: Sink::DataFiles(FileSpec {
                target_file_size_bytes: 1,
                stats: Default::default(),
                file_prefix: "part-j".into(),
                sort_by: None,
                checks: vec![],
                iso_timestamp_partitions: vec![],
                change_data: false,
            }),
        }
    }

    fn scheduler() -> Scheduler {
        Scheduler::new(SchedulerConfig {
            max_task_attempts: 3,
            executor_timeout_ms: 1_000,
            heartbeat_interval_ms: 100,
            max_poll_wait_ms: 50,
        })
    }

    /// Starts a stage of `n` tasks in the background; its result arrives on the handle.
    fn start_stage(
        s: &Scheduler,
        epoch: u64,
        n: u32,
    ) -> tokio::task::JoinHandle<Result<Vec<TaskOutput>, StageError>> {
        let s = s.clone();
        tokio::spawn(async move {
            s.run_stage("j", 0, epoch, 0, (0..n).map(task).collect())
                .await
        })
    }

    async fn poll(s: &Scheduler, exec: &str) -> TaskSpec {
        for _ in 0..100 {
            if let Some(t) = s.poll(exec, Duration::from_millis(10)).await.unwrap() {
                return t;
            }
        }
        panic!("no task for {exec}");
    }

    fn ok() -> Result<TaskOutput, TaskFailure> {
        Ok(TaskOutput::default())
    }

    fn fail(retryable: bool) -> Result<TaskOutput, TaskFailure> {
        Err(TaskFailure {
            message: "boom".into(),
            retryable,
            lost_map_outputs: vec![],
        })
    }

    #[tokio::test(start_paused = true)]
    async fn stale_wrong_executor_and_old_epoch_reports_are_ignored() {
        let s = scheduler();
        let a = s.register(1, 0, "a", "").executor_id;
        let b = s.register(1, 0, "b", "").executor_id;
        let stage = start_stage(&s, 7, 1);
        let t = poll(&s, &a).await;
        let key = AttemptKey::of(&t);
        assert_eq!((t.attempt, t.epoch), (0, 7));
        // From another executor, or another epoch: ignored.
        assert!(!s.report(&b, &key, 7, ok()));
        assert!(!s.report(&a, &key, 6, ok()));
        // The attempt fails (retryable): attempt 1 goes to the other executor.
        assert!(s.report(&a, &key, 7, fail(true)));
        let t1 = poll(&s, &b).await;
        assert_eq!(t1.attempt, 1);
        // A late report of the superseded attempt 0 is stale.
        assert!(!s.report(&a, &key, 7, ok()));
        assert!(s.report(&b, &AttemptKey::of(&t1), 7, ok()));
        assert_eq!(stage.await.unwrap().unwrap().len(), 1);
        assert_eq!(s.job_retries("j"), 1);
        // After the stage, reports for it are stale.
        assert!(!s.report(&b, &AttemptKey::of(&t1), 7, ok()));
    }

    #[tokio::test(start_paused = true)]
    async fn a_fetch_failure_ends_the_stage_keeping_what_succeeded() {
        let s = scheduler();
        let a = s.register(2, 0, "a", "127.0.0.1:1").executor_id;
        s.begin_job("j");
        let stage = start_stage(&s, 1, 3);
        let t0 = poll(&s, &a).await;
        let t1 = poll(&s, &a).await;
        assert!(s.report(&a, &AttemptKey::of(&t0), 1, ok()));
        let lost = Err(TaskFailure {
            message: "gone".into(),
            retryable: true,
            lost_map_outputs: vec!["127.0.0.1:9".into()],
        });
        assert!(s.report(&a, &AttemptKey::of(&t1), 1, lost));
        match stage.await.unwrap() {
            Err(StageError::FetchFailed { lost, outputs, .. }) => {
                assert_eq!(lost, vec!["127.0.0.1:9".to_string()]);
                let done: Vec<bool> = outputs.iter().map(Option::is_some).collect();
                assert_eq!(done, vec![true, false, false]);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            s.job_retries("j"),
            1,
            "counted, so the job's files get cleaned up"
        );
        // The stage's last task was never handed out and is gone with it.
        assert!(
            s.poll(&a, Duration::from_millis(10))
                .await
                .unwrap()
                .is_none()
        );
        // Map outputs of active jobs stay; of any other job, executors are told to drop.
        let jobs = ["j".to_string(), "old".to_string()];
        assert_eq!(
            s.heartbeat(&a, vec![], &jobs).drop_shuffle_jobs,
            vec!["old"]
        );
        s.forget_job("j");
        assert_eq!(
            s.heartbeat(&a, vec![], &jobs).drop_shuffle_jobs,
            jobs.to_vec()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn attempts_are_bounded_and_bad_input_fails_at_once() {
        let s = scheduler();
        let a = s.register(1, 0, "a", "").executor_id;
        let stage = start_stage(&s, 1, 1);
        for attempt in 0..3 {
            let t = poll(&s, &a).await;
            assert_eq!(t.attempt, attempt);
            assert!(s.report(&a, &AttemptKey::of(&t), 1, fail(true)));
        }
        match stage.await.unwrap() {
            Err(StageError::AttemptsExhausted { attempts, .. }) => assert_eq!(attempts, 3),
            other => panic!("{other:?}"),
        }
        s.forget_job("j");

        let stage = start_stage(&s, 1, 2);
        let t = poll(&s, &a).await;
        assert!(s.report(&a, &AttemptKey::of(&t), 1, fail(false)));
        assert!(matches!(
            stage.await.unwrap(),
            Err(StageError::TaskFailed { .. })
        ));
        assert_eq!(s.job_retries("j"), 0, "non-retryable: no retry");
        // The failed stage's other task is gone from the queue.
        assert!(
            s.poll(&a, Duration::from_millis(10))
                .await
                .unwrap()
                .is_none()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_executor_is_lost_and_its_attempts_rerun() {
        let s = scheduler();
        let a = s.register(1, 0, "a", "").executor_id;
        let b = s.register(1, 0, "b", "").executor_id;
        let stage = start_stage(&s, 1, 1);
        let t = poll(&s, &a).await;
        // `b` heartbeats, `a` stays silent past the timeout.
        for _ in 0..12 {
            tokio::time::advance(Duration::from_millis(100)).await;
            s.heartbeat(&b, vec![], &[]);
        }
        assert_eq!(s.reap_lost_executors(), vec![a.clone()]);
        let t1 = poll(&s, &b).await;
        assert_eq!((t1.index, t1.attempt), (t.index, 1));
        // The lost executor comes back: it must register again, and its report is stale.
        assert!(s.heartbeat(&a, vec![AttemptKey::of(&t)], &[]).reregister);
        assert!(!s.report(&a, &AttemptKey::of(&t), 1, ok()));
        assert!(s.report(&b, &AttemptKey::of(&t1), 1, ok()));
        assert!(stage.await.unwrap().is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn a_job_cancelled_between_stages_starts_no_further_stage() {
        let s = scheduler();
        let a = s.register(1, 0, "a", "").executor_id;
        s.cancel_job("j");
        assert!(matches!(
            start_stage(&s, 1, 1).await.unwrap(),
            Err(StageError::Cancelled)
        ));
        assert!(
            s.poll(&a, Duration::from_millis(10))
                .await
                .unwrap()
                .is_none()
        );
        // Once the job is forgotten, its id is free again.
        s.forget_job("j");
        let stage = start_stage(&s, 1, 1);
        let t = poll(&s, &a).await;
        assert_eq!(t.job_id, "j");
        stage.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn cancelled_attempts_are_waited_for_until_executors_let_go() {
        let s = scheduler();
        let a = s.register(1, 0, "a", "").executor_id;
        let stage = start_stage(&s, 1, 1);
        let t = poll(&s, &a).await;
        let key = AttemptKey::of(&t);
        s.cancel_job("j");
        assert!(matches!(stage.await.unwrap(), Err(StageError::Cancelled)));
        // The executor still runs it: the heartbeat tells it to cancel, the job is not idle.
        let reply = s.heartbeat(&a, vec![key.clone()], &[]);
        assert_eq!(reply.cancel, vec![key.clone()]);
        assert_eq!(s.job_attempts_in_flight("j"), 1);
        assert!(!s.wait_job_idle("j", Duration::from_millis(200)).await);
        // Once the executor no longer reports it (past the grace for fresh hand-outs), idle.
        tokio::time::advance(Duration::from_millis(300)).await;
        s.heartbeat(&a, vec![], &[]);
        assert!(s.wait_job_idle("j", Duration::from_millis(10)).await);
    }
}
