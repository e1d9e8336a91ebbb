//! Executor runtime: the gRPC side of an executor. Serves its shuffle endpoint, registers
//! (with the protocol version and that endpoint's address), heartbeats with the attempts it
//! runs and the jobs it holds map outputs of, polls for tasks with one loop per slot, runs
//! them, reports outcomes, aborts attempts the coordinator cancels, and drops the map
//! outputs of jobs that ended.
//!
//! Memory: a quarter of the executor's limit is the shuffle store's in-memory budget (map
//! outputs beyond it spill to local disk); the rest is split evenly among the slots.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use silt_common::task::{TaskFailure, TaskSpec};
use silt_proto::pb::executor_service_client::ExecutorServiceClient;
use silt_proto::security::{AuthChannel, Security};
use silt_proto::{leader, pb};
use tracing::{debug, info, warn};

use crate::faults::Faults;
use crate::shuffle::{Fetcher, ShuffleStore, service};
use crate::tasks::{TaskEnv, TaskLimits, cleanup_attempt, run_task};
use crate::workdir::WorkDir;

/// Executor settings.
#[derive(Debug, Clone)]
pub struct ExecutorConfig {
    /// Coordinator URL, e.g. `http://127.0.0.1:7077`, or a comma-separated list of
    /// coordinators: the executor registers with their leader and follows it.
    pub coordinator_url: String,
    /// Tasks run at once.
    pub slots: u32,
    /// Memory budget of the executor, split evenly among slots.
    pub memory_limit_bytes: u64,
    /// Name reported at registration.
    pub host: String,
    /// Fault injection for tests (none in production): see [`crate::faults`].
    pub faults: Faults,
    /// Give up connecting to the coordinator after this long.
    pub connect_timeout_ms: u64,
    /// Where the shuffle endpoint listens (port 0: any free port).
    pub shuffle_listen: SocketAddr,
    /// The `host:port` other executors reach the shuffle endpoint at (default: the bound
    /// address; required when listening on an unspecified address such as 0.0.0.0).
    pub shuffle_advertise: Option<String>,
    /// Where map outputs spill (a fresh directory inside it, deleted at exit); the system
    /// temporary directory by default.
    pub spill_dir: Option<PathBuf>,
    /// Credentials for the coordinator and the other executors, and what the shuffle
    /// endpoint requires of its peers.
    pub security: Security,
}

impl Default for ExecutorConfig {
    fn default() -> Self {
        Self {
            coordinator_url: "http://127.0.0.1:7077".into(),
            slots: 1,
            memory_limit_bytes: 1 << 30,
            host: "localhost".into(),
            faults: Faults::default(),
            connect_timeout_ms: 30_000,
            shuffle_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            shuffle_advertise: None,
            spill_dir: None,
            security: Security::plain(),
        }
    }
}

/// Executor failures (only the fatal ones: task failures are reported, not returned).
#[derive(Debug, thiserror::Error)]
pub enum ExecutorError {
    #[error("cannot reach coordinator at {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("coordinator refused registration: {0}")]
    Refused(String),
    #[error("rpc failed: {0}")]
    Rpc(#[from] tonic::Status),
    #[error("shuffle endpoint: {0}")]
    Shuffle(String),
}

type Running = Arc<Mutex<HashMap<pb::TaskKey, tokio::task::AbortHandle>>>;

struct Session {
    client: ExecutorServiceClient<AuthChannel>,
    executor_id: String,
    heartbeat_ms: u64,
}

/// Connects to the leading coordinator among `config.coordinator_url` (a comma-separated
/// list) and registers there. Every coordinator is asked at once (standbys refuse, naming
/// the leader, which is added if new; one that is unreachable or paused does not delay the
/// others); gives up after the connect timeout.
async fn connect_and_register(
    config: &ExecutorConfig,
    shuffle_address: &str,
) -> Result<Session, ExecutorError> {
    use futures::StreamExt;
    let mut urls = leader::urls(&config.coordinator_url);
    if urls.is_empty() {
        return Err(ExecutorError::Connect {
            url: config.coordinator_url.clone(),
            reason: "no coordinator URL".into(),
        });
    }
    let deadline = tokio::time::Instant::now() + Duration::from_millis(config.connect_timeout_ms);
    let mut backoff = Duration::from_millis(50);
    loop {
        let mut attempts: futures::stream::FuturesUnordered<_> = urls
            .iter()
            .map(|url| async move {
                let attempt = tokio::time::timeout(RPC_TIMEOUT, async {
                    let endpoint =
                        config
                            .security
                            .endpoint(url)
                            .map_err(|e| ExecutorError::Connect {
                                url: url.clone(),
                                reason: e.to_string(),
                            })?;
                    let ch = endpoint
                        .connect_timeout(Duration::from_secs(5))
                        .tcp_nodelay(true)
                        .connect()
                        .await
                        .map_err(|e| ExecutorError::Connect {
                            url: url.clone(),
                            reason: silt_proto::security::transport_error(&e),
                        })?;
                    let mut client = ExecutorServiceClient::new(config.security.authenticate(ch))
                        .max_decoding_message_size(256 << 20)
                        .max_encoding_message_size(256 << 20);
                    register(&mut client, config, shuffle_address).await
                })
                .await
                .unwrap_or_else(|_| {
                    Err(ExecutorError::Rpc(tonic::Status::unavailable(
                        "the coordinator did not answer",
                    )))
                });
                (url.clone(), attempt)
            })
            .collect();
        let mut reason = String::new();
        let mut named = Vec::new();
        while let Some((url, attempt)) = attempts.next().await {
            match attempt {
                Ok(session) => {
                    info!(coordinator = %url, "connected to the leading coordinator");
                    return Ok(session);
                }
                Err(ExecutorError::Rpc(status)) => {
                    named.extend(leader::hint(&status));
                    let why = silt_proto::security::unanswered(&status)
                        .unwrap_or_else(|| status.message().to_string());
                    reason = format!("{url}: {why}");
                }
                Err(ExecutorError::Connect { reason: r, .. }) => reason = format!("{url}: {r}"),
                Err(e) => return Err(e),
            }
        }
        drop(attempts);
        for l in named {
            if !urls.contains(&l) {
                urls.push(l);
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(ExecutorError::Connect {
                url: config.coordinator_url.clone(),
                reason,
            });
        }
        debug!("no leading coordinator yet: {reason}");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}

async fn register(
    client: &mut ExecutorServiceClient<AuthChannel>,
    config: &ExecutorConfig,
    shuffle_address: &str,
) -> Result<Session, ExecutorError> {
    let resp = client
        .register(pb::RegisterRequest {
            protocol_version: silt_proto::PROTOCOL_VERSION,
            host: config.host.clone(),
            slots: config.slots,
            memory_limit_bytes: config.memory_limit_bytes,
            shuffle_address: shuffle_address.to_string(),
        })
        .await
        .map_err(|s| match s.code() {
            // A wrong protocol version or missing credentials: asking again will not help.
            tonic::Code::FailedPrecondition
            | tonic::Code::Unauthenticated
            | tonic::Code::PermissionDenied => ExecutorError::Refused(s.message().to_string()),
            _ => ExecutorError::Rpc(s),
        })?
        .into_inner();
    info!(executor = %resp.executor_id, "registered with coordinator");
    Ok(Session {
        client: client.clone(),
        executor_id: resp.executor_id,
        heartbeat_ms: resp.heartbeat_interval_ms.max(50),
    })
}

/// At most this many bytes of map outputs are kept in an executor's memory: the rest is
/// appended to spill files, which the page cache serves back (the memory of the process
/// goes to the work; 32 MiB here measured no faster on a Z-order in `benches/`, and
/// 24 MiB more peak memory).
const SHUFFLE_MEMORY_MAX: u64 = 8 << 20;

/// Runs an executor until `shutdown` resolves or the coordinator becomes unreachable for
/// longer than the connect timeout.
pub async fn run_executor(
    config: ExecutorConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), ExecutorError> {
    // Map outputs beyond a small share of memory go to local spill files (the page cache
    // serves them back), as Spark keeps shuffle output in files: memory stays for the work.
    let shuffle_budget = (config.memory_limit_bytes / 4).min(SHUFFLE_MEMORY_MAX);
    let workdir = WorkDir::create(config.spill_dir.as_deref()).map_err(|e| {
        ExecutorError::Shuffle(format!(
            "cannot create the executor's scratch directory: {e}"
        ))
    })?;
    let store = ShuffleStore::new(shuffle_budget as usize, Some(workdir.path()))
        .map_err(|e| ExecutorError::Shuffle(e.to_string()))?;
    let listener = tokio::net::TcpListener::bind(config.shuffle_listen)
        .await
        .map_err(|e| {
            ExecutorError::Shuffle(format!("cannot listen on {}: {e}", config.shuffle_listen))
        })?;
    let (bound, server) = service::serve(store.clone(), listener, &config.security)
        .map_err(ExecutorError::Shuffle)?;
    let _server = AbortOnDrop(server);
    let shuffle_address = match &config.shuffle_advertise {
        Some(a) => {
            let valid = a.rsplit_once(':').is_some_and(|(host, port)| {
                !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
            });
            if !valid {
                return Err(ExecutorError::Shuffle(format!(
                    "--shuffle-advertise `{a}` is not HOST:PORT"
                )));
            }
            a.clone()
        }
        None if bound.ip().is_unspecified() => {
            return Err(ExecutorError::Shuffle(format!(
                "listening on {bound}: say which address other executors reach it at (--shuffle-advertise HOST:PORT)"
            )));
        }
        None => bound.to_string(),
    };
    info!(address = %shuffle_address, "shuffle endpoint listening");
    let loopback = |host: &str| {
        host == "localhost"
            || host
                .trim_matches(|c| c == '[' || c == ']')
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    };
    let coordinator_host = leader::urls(&config.coordinator_url)
        .first()
        .and_then(|u| url::Url::parse(u).ok())
        .and_then(|u| u.host_str().map(str::to_string));
    let advertised_host = shuffle_address.rsplit_once(':').map_or("", |(h, _)| h);
    if coordinator_host.is_some_and(|h| !loopback(&h)) && loopback(advertised_host) {
        warn!(
            address = %shuffle_address,
            "the coordinator is remote but this executor's shuffle endpoint is only reachable on this host: \
             other executors cannot fetch its map outputs (set --shuffle-listen / --shuffle-advertise)"
        );
    }
    let running: Running = Arc::new(Mutex::new(HashMap::new()));
    let per_slot = (config.memory_limit_bytes - shuffle_budget) / config.slots.max(1) as u64;
    let env = TaskEnv {
        limits: TaskLimits {
            memory_limit_bytes: per_slot as usize,
            spill_dir: Some(crate::workdir::sort_dir(workdir.path()).into()),
        },
        faults: config.faults.clone(),
        fetcher: Fetcher::new(
            store.clone(),
            shuffle_address.clone(),
            config.security.clone(),
        ),
        shuffle: store,
        shuffle_address: shuffle_address.clone(),
    };
    tokio::pin!(shutdown);
    let newest_epoch = Arc::new(std::sync::atomic::AtomicU64::new(0));
    loop {
        let session = connect_and_register(&config, &shuffle_address).await?;
        let id = session.executor_id.clone();
        // One heartbeat loop and `slots` poll loops; all end when the coordinator asks
        // this executor to register again.
        let (rereg_tx, mut rereg_rx) = tokio::sync::watch::channel(false);
        let mut loops = tokio::task::JoinSet::new();
        loops.spawn(heartbeat_loop(
            session.client.clone(),
            id.clone(),
            session.heartbeat_ms,
            running.clone(),
            env.shuffle.clone(),
            rereg_tx.clone(),
        ));
        for _ in 0..config.slots.max(1) {
            loops.spawn(poll_loop(
                session.client.clone(),
                id.clone(),
                running.clone(),
                env.clone(),
                rereg_tx.clone(),
                newest_epoch.clone(),
            ));
        }
        let lost = async {
            let _ = rereg_rx.wait_for(|v| *v).await;
        };
        tokio::select! {
            _ = &mut shutdown => {
                loops.abort_all();
                abort_all(&running);
                return Ok(());
            }
            _ = lost => {}
        }
        // The coordinator declared this executor lost (e.g. after a long pause) and re-ran
        // its attempts elsewhere: abandon them. Their poll loops delete what they wrote, then
        // end (the coordinator tells them to register again); bounded in case it is gone.
        warn!(executor = %id, "coordinator forgot this executor; registering again");
        abort_all(&running);
        let drain = async { while loops.join_next().await.is_some() {} };
        let _ = tokio::time::timeout(Duration::from_secs(30), drain).await;
        loops.abort_all();
    }
}

/// Aborts a spawned task when dropped (the shuffle endpoint ends with the executor).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn abort_all(running: &Running) {
    let mut r = running.lock().unwrap_or_else(|p| p.into_inner());
    for (_, h) in r.drain() {
        h.abort();
    }
}

/// How long a registration or heartbeat waits for the coordinator's answer.
const RPC_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a poll for a task waits on the coordinator for one to come.
const POLL_WAIT_MS: u64 = 1_000;

/// How long a task report waits for the coordinator's answer.
const REPORT_TIMEOUT: Duration = Duration::from_secs(30);

/// Heartbeats failing in a row after which the coordinator counts as gone.
const LOST_HEARTBEATS: u32 = 3;

async fn heartbeat_loop(
    mut client: ExecutorServiceClient<AuthChannel>,
    executor_id: String,
    interval_ms: u64,
    running: Running,
    shuffle: ShuffleStore,
    rereg: tokio::sync::watch::Sender<bool>,
) {
    let mut failures = 0u32;
    loop {
        // After a failed heartbeat the next comes sooner: a coordinator that went away is
        // noticed (and the leader found) in about a second.
        let wait = if failures > 0 {
            Duration::from_millis(interval_ms.min(300))
        } else {
            Duration::from_millis(interval_ms)
        };
        tokio::time::sleep(wait).await;
        let keys: Vec<pb::TaskKey> = running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect();
        let beat = client.heartbeat(pb::HeartbeatRequest {
            executor_id: executor_id.clone(),
            running: keys,
            shuffle_jobs: shuffle.jobs(),
        });
        let answer = tokio::time::timeout(
            RPC_TIMEOUT.min(Duration::from_millis(2 * interval_ms).max(Duration::from_secs(1))),
            beat,
        )
        .await
        .unwrap_or_else(|_| Err(tonic::Status::unavailable("the coordinator did not answer")));
        match answer {
            Ok(resp) => {
                failures = 0;
                let resp = resp.into_inner();
                for job in &resp.drop_shuffle_jobs {
                    shuffle.drop_job(job);
                    info!(job = %job, "dropped the map outputs of an ended job");
                }
                if resp.reregister {
                    let _ = rereg.send(true);
                    return;
                }
                // The attempt stays on the books (and in the next heartbeat) until its poll loop
                // has seen it end and deleted what it wrote.
                let r = running.lock().unwrap_or_else(|p| p.into_inner());
                for key in resp.cancel {
                    if let Some(h) = r.get(&key) {
                        info!(job = %key.job_id, stage = key.stage, task = key.index, attempt = key.attempt, "cancelling task");
                        h.abort();
                    }
                }
            }
            Err(e) => {
                warn!("heartbeat failed: {e}");
                failures += 1;
                // The coordinator is gone or no longer leads (a standby answers for it):
                // find the leader and register there.
                if failures >= LOST_HEARTBEATS || leader::hint(&e).is_some() {
                    let _ = rereg.send(true);
                    return;
                }
            }
        }
    }
}

/// Polls for tasks and runs them. A task of an older leadership epoch than one this
/// executor has already seen comes from a deposed leader: it is not run.
async fn poll_loop(
    mut client: ExecutorServiceClient<AuthChannel>,
    executor_id: String,
    running: Running,
    env: TaskEnv,
    rereg: tokio::sync::watch::Sender<bool>,
    newest_epoch: Arc<std::sync::atomic::AtomicU64>,
) {
    loop {
        if *rereg.borrow() {
            // Registering again (elsewhere, maybe): this session's loop ends.
            return;
        }
        let poll = client.poll_task(pb::PollTaskRequest {
            executor_id: executor_id.clone(),
            wait_ms: POLL_WAIT_MS,
        });
        // Bounded: a paused coordinator must not hold this loop (and the executor's move to
        // another leader) forever.
        let answer = tokio::time::timeout(Duration::from_millis(POLL_WAIT_MS) + RPC_TIMEOUT, poll)
            .await
            .unwrap_or_else(|_| Err(tonic::Status::unavailable("the coordinator did not answer")));
        let resp = match answer {
            Ok(r) => r.into_inner(),
            Err(e) => {
                warn!("poll failed: {e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        if resp.reregister {
            let _ = rereg.send(true);
            return;
        }
        let Some(task) = resp.task else { continue };
        let key = task.key_of();
        let epoch = task.epoch;
        let newest = newest_epoch.fetch_max(epoch, std::sync::atomic::Ordering::SeqCst);
        if epoch < newest {
            warn!(epoch, newest, job = %key.job_id, "task of a deposed leader's epoch refused");
            continue;
        }
        let outcome = match TaskSpec::try_from(task) {
            Ok(spec) => {
                let task_env = env.clone();
                let cancelled_spec = spec.clone();
                let handle = tokio::spawn(async move {
                    info!(task = %spec.display_id(), kind = %spec.task.name(), "task started");
                    let r = run_task(&spec, &task_env).await;
                    match &r {
                        Ok(o) => {
                            info!(task = %spec.display_id(), kind = %spec.task.name(), rows = o.metrics.rows_written, files = o.adds.len(), fetched_remote = o.metrics.bytes_fetched_remote, ms = o.metrics.elapsed_ms, "task succeeded")
                        }
                        Err(e) => warn!(task = %spec.display_id(), "task failed: {e}"),
                    }
                    r
                });
                running
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(key.clone(), handle.abort_handle());
                let joined = handle.await;
                if matches!(&joined, Err(j) if j.is_cancelled()) {
                    // Cancelled mid-way: nothing will report or clean up for this attempt.
                    cleanup_attempt(&cancelled_spec, &env).await;
                }
                running
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&key);
                match joined {
                    Ok(Ok(out)) => pb::task_report::Outcome::Success((&out).into()),
                    Ok(Err(e)) => {
                        let f = TaskFailure::from(&e);
                        pb::task_report::Outcome::Failure(pb::TaskFailure {
                            message: f.message,
                            retryable: f.retryable,
                            lost_map_outputs: f.lost_map_outputs,
                        })
                    }
                    Err(j) if j.is_cancelled() => continue,
                    Err(j) => pb::task_report::Outcome::Failure(pb::TaskFailure {
                        message: format!("task panicked: {j}"),
                        retryable: true,
                        lost_map_outputs: Vec::new(),
                    }),
                }
            }
            Err(e) => pb::task_report::Outcome::Failure(pb::TaskFailure {
                message: e.to_string(),
                retryable: false,
                lost_map_outputs: Vec::new(),
            }),
        };
        let report = pb::TaskReport {
            executor_id: executor_id.clone(),
            key: Some(key),
            epoch,
            outcome: Some(outcome),
        };
        // A lost report would leave the task running forever on the coordinator's books
        // (until this executor is declared lost), so retry a few times.
        for attempt in 0..5u32 {
            if *rereg.borrow() {
                // The coordinator this attempt ran for is gone; nobody will take the report.
                break;
            }
            let sent = tokio::time::timeout(REPORT_TIMEOUT, client.report_task(report.clone()))
                .await
                .unwrap_or_else(|_| {
                    Err(tonic::Status::unavailable("the coordinator did not answer"))
                });
            match sent {
                Ok(_) => break,
                Err(e) => {
                    warn!(attempt, "report failed: {e}");
                    let mut gone = rereg.subscribe();
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(200 << attempt)) => {}
                        _ = gone.wait_for(|v| *v) => {}
                    }
                }
            }
        }
    }
}
