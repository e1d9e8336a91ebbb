//! `silt`: the command-line client and the daemons.
//!
//! * `silt write …`, `silt optimize …` and `silt sql "STATEMENT"` run jobs against
//!   `--coordinator URL`, or,
//!   without it, on an embedded local cluster (an in-process coordinator plus `--executors N`
//!   executors talking gRPC over loopback).
//! * `silt coordinator --listen ADDR` and `silt executor --coordinator URL` run the daemons.

mod compact_service;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Parser, Subcommand};
use silt_common::cluster::Curve;
use silt_common::request::{ExchangeMode, JobRequest, OptimizeRequest, WriteMode, WriteRequest};
use silt_common::task::SourceFormat;
use silt_coordinator::election::{ElectedFence, ElectionConfig, Role, announce, campaign};
use silt_coordinator::fence::{LeaderFence, SoleLeader};
use silt_coordinator::service::Gate;
use silt_coordinator::{Coordinator, CoordinatorConfig};
use silt_executor::ExecutorConfig;
use silt_executor::faults::Faults;
use silt_proto::pb;
use silt_proto::pb::job_service_client::JobServiceClient;
use silt_proto::security::{AuthChannel, Security, SecurityOptions};
use tokio_stream::StreamExt;

#[derive(Parser)]
#[command(
    name = "silt",
    version,
    about = "Distributed compute engine for Delta Lake tables"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write a source (Parquet, CSV, JSON or a Delta table) into a Delta table.
    Write(Box<WriteArgs>),
    /// Run SQL statements (Spark's Delta syntax): DELETE, UPDATE, INSERT, MERGE, OPTIMIZE,
    /// VACUUM, ALTER TABLE … SET TBLPROPERTIES, DESCRIBE HISTORY/DETAIL. Tables are named
    /// delta.`URI`.
    Sql(SqlArgs),
    /// Compact a table's small files, or cluster it along a space-filling curve
    /// (--zorder-by).
    Optimize(OptimizeArgs),
    /// Keep every Delta table under some roots compacted (clustered where a table sets
    /// silt.zorderBy) and vacuumed, on a schedule or once (--once, for a CronJob).
    CompactService(CompactServiceArgs),
    /// Ask the coordinators about a job.
    Job(JobArgs),
    /// Run a coordinator daemon.
    Coordinator(CoordinatorArgs),
    /// Run an executor daemon.
    Executor(ExecutorArgs),
}

#[derive(Args)]
struct JobArgs {
    #[command(subcommand)]
    command: JobCommand,
}

#[derive(Subcommand)]
enum JobCommand {
    /// A job's state, and its result once it ended (as the job's own command prints it).
    /// Exit code 0: succeeded; 1: failed or cancelled; 3: not ended yet.
    Status {
        /// The job's id (as `job … submitted` printed it, or `job_id` in --json output).
        job_id: String,
        #[command(flatten)]
        cluster: ClusterArgs,
    },
    /// Cancel a job that has not started committing: its files are deleted, the table is
    /// left as it was. Exit code 0: cancelled; 1: it had ended or is committing.
    Cancel {
        /// The job's id.
        job_id: String,
        #[command(flatten)]
        cluster: ClusterArgs,
    },
}

#[derive(Args, Clone)]
struct ClusterArgs {
    /// Coordinator to submit to (e.g. http://127.0.0.1:7077), or a comma-separated list of
    /// coordinators: the job goes to their leader. Without it, an embedded local cluster
    /// runs the job.
    #[arg(long)]
    coordinator: Option<String>,
    /// Executors of the embedded local cluster, 1 to 64 (default: number of cores).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=MAX_EMBEDDED_EXECUTORS))]
    executors: Option<u32>,
    /// Memory limit per embedded executor, in bytes (`512m`, `2g` …; at least 8 MiB).
    #[arg(long, default_value = "2g", value_parser = memory_size)]
    executor_memory: u64,
    /// Print the job result as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// No progress on stderr.
    #[arg(long, short)]
    quiet: bool,
    /// Log what the cluster does on stderr (-v: warnings and progress events, -vv: debug);
    /// `SILT_LOG` / `RUST_LOG` (an env-filter) override it. Without either, a failure is
    /// the one `error:` line.
    #[arg(long, short, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Submit the job, print its id and exit: the job runs on without this client (follow
    /// it with `silt job status ID`, stop it with `silt job cancel ID`). Without it, a job
    /// whose client goes away before the commit is cancelled and its files deleted.
    #[arg(long)]
    detach: bool,
    #[command(flatten)]
    security: SecurityArgs,
}

/// Credentials for a cluster's connections (see silt_proto::security). The embedded cluster
/// ignores them: it talks on 127.0.0.1 with a fresh random token of its own.
#[derive(Args, Clone, Default)]
struct SecurityArgs {
    /// This component's TLS certificate (PEM). With --tls-key and --tls-ca, every connection
    /// is mutual TLS: peers without a certificate from that CA are refused.
    #[arg(long, env = "SILT_TLS_CERT")]
    tls_cert: Option<std::path::PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, env = "SILT_TLS_KEY")]
    tls_key: Option<std::path::PathBuf>,
    /// The CA certificate (PEM) that signs the cluster's certificates.
    #[arg(long, env = "SILT_TLS_CA")]
    tls_ca: Option<std::path::PathBuf>,
    /// The name servers' certificates must carry (default: the host of the URL dialled).
    #[arg(long, env = "SILT_TLS_DOMAIN")]
    tls_domain: Option<String>,
    /// A file holding the cluster's bearer token (or give the token itself in SILT_TOKEN;
    /// never on the command line). Calls carry it; servers refuse calls without it.
    #[arg(long, env = "SILT_TOKEN_FILE")]
    token_file: Option<std::path::PathBuf>,
}

impl SecurityArgs {
    fn load(&self) -> Result<Security> {
        let options = SecurityOptions {
            tls_cert: self.tls_cert.clone(),
            tls_key: self.tls_key.clone(),
            tls_ca: self.tls_ca.clone(),
            tls_domain: self.tls_domain.clone(),
            token_file: self.token_file.clone(),
        };
        Ok(Security::load(&options, |k| std::env::var(k).ok())?)
    }
}

#[derive(Args)]
struct WriteArgs {
    /// Table location (local path, file:// or s3:// URL).
    #[arg(long)]
    table: String,
    /// Source file or directory (local path or URL).
    #[arg(long)]
    source: String,
    /// parquet | csv | json | delta
    #[arg(long, default_value = "parquet")]
    format: String,
    /// append | overwrite | error | ignore
    #[arg(long, default_value = "append")]
    mode: String,
    /// Partition columns for a new table, comma separated.
    #[arg(long, value_delimiter = ',')]
    partition_by: Vec<String>,
    /// Partitioned tables: bring each partition's rows together through an exchange
    /// (always), never (every task writes the partitions it sees), or let the planner
    /// decide from a sample of the source (auto).
    #[arg(long, default_value = "auto")]
    exchange: String,
    /// Overwrite only rows matching this SQL predicate (with --mode overwrite).
    #[arg(long)]
    replace_where: Option<String>,
    /// Overwrite only the partitions the new data writes to (with --mode overwrite).
    #[arg(long)]
    dynamic_partition_overwrite: bool,
    /// Add source columns missing from the table schema.
    #[arg(long)]
    merge_schema: bool,
    /// Replace the table schema (with --mode overwrite).
    #[arg(long)]
    overwrite_schema: bool,
    /// Idempotent writes: application id …
    #[arg(long)]
    txn_app_id: Option<String>,
    /// … and its monotonically increasing version.
    #[arg(long)]
    txn_version: Option<i64>,
    /// Target size of data files, in bytes (`128m`, `1g` …).
    #[arg(long, value_parser = file_size)]
    target_file_size: Option<u64>,
    /// Table property for a new table, key=value (repeatable).
    #[arg(long = "property")]
    properties: Vec<String>,
    #[command(flatten)]
    cluster: ClusterArgs,
}

#[derive(Args)]
struct SqlArgs {
    /// The statement(s), `;`-separated.
    #[arg(required_unless_present = "file", conflicts_with = "file")]
    statement: Option<String>,
    /// Read `;`-separated statements from this file.
    #[arg(long, short)]
    file: Option<std::path::PathBuf>,
    /// MERGE: broadcast a small source to the tasks over the target's files or exchange
    /// both sides by key (auto: by the source's size), or force one (never: broadcast,
    /// always: exchange).
    #[arg(long, default_value = "auto")]
    exchange: String,
    /// DELETE, UPDATE, MERGE: rewrite the files holding changed rows even where the table
    /// has deletion vectors enabled (delta.enableDeletionVectors = true).
    #[arg(long)]
    copy_on_write: bool,
    /// VACUUM: allow a retention below the table's delta.deletedFileRetentionDuration
    /// (files that readers of recent versions or running writers need may be deleted).
    #[arg(long)]
    allow_short_retention: bool,
    #[command(flatten)]
    cluster: ClusterArgs,
}

#[derive(Args)]
struct OptimizeArgs {
    /// Table location (local path, file:// or s3:// URL).
    #[arg(long)]
    table: String,
    /// Only partitions matching this SQL predicate over partition columns.
    #[arg(long = "where")]
    predicate: Option<String>,
    /// Bytes per output file (default: the table's delta.targetFileSize, else 1 GiB).
    #[arg(long, value_parser = file_size)]
    target_size: Option<u64>,
    /// Compaction: files below this many bytes are compacted (default: half the target).
    #[arg(long, value_parser = file_size)]
    min_file_size: Option<u64>,
    /// Cluster by these columns (comma separated) instead of compacting.
    #[arg(long, value_delimiter = ',')]
    zorder_by: Vec<String>,
    /// The curve clustering follows: zorder or hilbert.
    #[arg(long, default_value = "zorder")]
    curve: String,
    /// Recluster every file, not only those no run by the same columns and curve wrote.
    #[arg(long)]
    full: bool,
    /// Rewrite every file with a deletion vector without its deleted rows, and no other file
    /// (Spark's REORG TABLE … APPLY (PURGE)).
    #[arg(long, conflicts_with_all = ["zorder_by", "min_file_size"])]
    purge: bool,
    /// Commit in batches: after each batch of tasks, commit what is done once this long
    /// has passed since the last commit (e.g. 0, 30s, 10m, 1h). Default: one commit.
    #[arg(long)]
    max_commit_interval: Option<String>,
    #[command(flatten)]
    cluster: ClusterArgs,
}

#[derive(Args)]
struct CompactServiceArgs {
    /// A location under which Delta tables are found (repeatable).
    #[arg(long = "root", required = true)]
    roots: Vec<String>,
    /// Time between passes (e.g. 30m, 1h).
    #[arg(long, default_value = "1h")]
    interval: String,
    /// Tables maintained at the same time.
    #[arg(long, default_value_t = 2)]
    max_concurrent_tables: usize,
    /// One pass, then exit (for a Kubernetes CronJob).
    #[arg(long)]
    once: bool,
    #[command(flatten)]
    cluster: ClusterArgs,
}

#[derive(Args)]
struct CoordinatorArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:7077")]
    listen: String,
    /// Declare an executor lost after this many milliseconds without a heartbeat.
    #[arg(long, default_value_t = 10_000)]
    executor_timeout_ms: u64,
    /// Attempts per task before the job fails.
    #[arg(long, default_value_t = 4)]
    max_task_attempts: u32,
    /// Cancel a job (not submitted with --detach) when no client has followed it for this
    /// many milliseconds before its commit.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(100..=86_400_000))]
    client_grace_ms: u64,
    /// etcd endpoints (comma-separated `http://HOST:PORT`): campaign for leadership of the
    /// cluster there, serving only while leading. Without it, this coordinator leads alone.
    #[arg(long)]
    etcd: Option<String>,
    /// Coordinators with the same cluster name elect one leader.
    #[arg(long, default_value = "silt")]
    cluster_name: String,
    /// The lease behind leadership: a leader that cannot renew it for this long (paused,
    /// cut off from etcd) is replaced, and can no longer commit.
    #[arg(long, default_value_t = 5_000)]
    lease_ttl_ms: u64,
    /// The URL clients and executors reach this coordinator at (default: the bound address).
    #[arg(long)]
    advertise: Option<String>,
    /// Serve `/healthz`, `/readyz` and Prometheus `/metrics` over HTTP on this address.
    #[arg(long)]
    http_listen: Option<String>,
    #[command(flatten)]
    security: SecurityArgs,
}

#[derive(Args)]
struct ExecutorArgs {
    /// Coordinator URL, or a comma-separated list of coordinators: the executor registers
    /// with their leader, and follows it after a failover.
    #[arg(long)]
    coordinator: String,
    /// Tasks run at once, 1 to 256.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=256))]
    slots: u32,
    /// Memory limit in bytes (`512m`, `2g` …; at least 8 MiB).
    #[arg(long, default_value = "2g", value_parser = memory_size)]
    memory_limit: u64,
    /// Name reported to the coordinator.
    #[arg(long)]
    name: Option<String>,
    /// Where this executor serves its exchange (shuffle) outputs to the other executors.
    #[arg(long, default_value = "127.0.0.1:0")]
    shuffle_listen: std::net::SocketAddr,
    /// The HOST:PORT other executors reach the shuffle endpoint at (default: the bound
    /// address; required with an unspecified listen address such as 0.0.0.0).
    #[arg(long)]
    shuffle_advertise: Option<String>,
    /// Directory map outputs, sorts and joins spill to past the memory budget (default: the
    /// system temporary directory); a fresh subdirectory is used and deleted at exit, and
    /// those of executors that were killed are deleted at start.
    #[arg(long)]
    spill_dir: Option<std::path::PathBuf>,
    /// Fault injection for tests: sleep this long before every task.
    #[arg(long, default_value_t = 0, hide = true)]
    task_delay_ms: u64,
    /// Fault injection for tests: `<point>:<selector>:<action>` (see silt_executor::faults);
    /// `;`-separated. Also read from `SILT_FAULTS` (which the embedded cluster uses too).
    #[arg(long, hide = true, env = "SILT_FAULTS")]
    faults: Option<String>,
    #[command(flatten)]
    security: SecurityArgs,
}

fn init_tracing(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SILT_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_env("RUST_LOG"))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(|| RedactedStderr)
        .try_init();
}

/// Standard error with credentials masked in what is written (every log line is one
/// write): third-party logs quote store URLs, user info included.
struct RedactedStderr;

impl std::io::Write for RedactedStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        std::io::stderr().write_all(silt_common::redact::credentials(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// Client commands (write, sql, optimize, job): the user reads the result and, on failure,
/// one `error:` line; the embedded cluster's log only with `-v` (or an env filter).
fn init_client_tracing(cluster: &ClusterArgs) {
    init_tracing(match cluster.verbose {
        0 => "off",
        1 => "warn,silt_coordinator=info,silt_executor=info",
        _ => "debug",
    });
}

fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => e.exit(), // --help, --version
        Err(e) => {
            eprintln!("error: {}", usage_error(&e.render().to_string()));
            std::process::exit(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start runtime: {e}");
            std::process::exit(2);
        }
    };
    let code = runtime.block_on(async move {
        match run(cli).await {
            Ok(code) => code,
            Err(e) => {
                eprintln!("error: {}", one_line(&format!("{e:#}")));
                1
            }
        }
    });
    // Do not wait for in-flight background work (embedded cluster loops) on exit.
    runtime.shutdown_timeout(Duration::from_millis(200));
    std::process::exit(code);
}

async fn run(cli: Cli) -> Result<i32> {
    match cli.command {
        Command::Write(args) => {
            init_client_tracing(&args.cluster);
            write(*args).await
        }
        Command::Sql(args) => {
            init_client_tracing(&args.cluster);
            sql(args).await
        }
        Command::Optimize(args) => {
            init_client_tracing(&args.cluster);
            optimize(args).await
        }
        Command::CompactService(args) => {
            init_tracing("warn");
            let cfg = compact_service::ServiceConfig {
                roots: args.roots.clone(),
                interval: Duration::from_millis(
                    parse_duration_ms(&args.interval).map_err(|e| anyhow!("--interval: {e}"))?,
                ),
                max_concurrent_tables: args.max_concurrent_tables,
                once: args.once,
            };
            if cfg.max_concurrent_tables == 0 {
                bail!("--max-concurrent-tables must be at least 1");
            }
            if args.cluster.detach {
                bail!("--detach does not apply to the compaction service (it follows its jobs)");
            }
            let session = Session::open(&args.cluster).await?;
            compact_service::run(&session, &cfg).await
        }
        Command::Job(JobArgs { command }) => {
            let (JobCommand::Status { cluster, .. } | JobCommand::Cancel { cluster, .. }) =
                &command;
            init_client_tracing(cluster);
            if cluster.coordinator.is_none() {
                bail!("silt job needs --coordinator (jobs live in coordinators)");
            }
            let session = Session::open(cluster).await?;
            match &command {
                JobCommand::Status { job_id, .. } => session.status(job_id).await,
                JobCommand::Cancel { job_id, .. } => session.cancel(job_id).await,
            }
        }
        Command::Coordinator(args) => {
            init_tracing("info");
            coordinator(args).await.map(|_| 0)
        }
        Command::Executor(args) => {
            init_tracing("info");
            executor(args).await.map(|_| 0)
        }
    }
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

async fn coordinator(args: CoordinatorArgs) -> Result<()> {
    let security = args.security.load()?;
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let mut config = CoordinatorConfig::default();
    config.scheduler.executor_timeout_ms = args.executor_timeout_ms;
    config.scheduler.max_task_attempts = args.max_task_attempts.max(1);
    config.client_grace_ms = args.client_grace_ms;
    let Some(etcd) = &args.etcd else {
        let coord = Coordinator::new(config, Arc::new(SoleLeader));
        serve_probes(&args, &coord, None).await?;
        eprintln!("silt coordinator listening on {}", listener.local_addr()?);
        silt_coordinator::service::serve(coord, listener, shutdown_signal(), Gate::Open, &security)
            .await?;
        return Ok(());
    };
    let endpoints = silt_proto::leader::urls(etcd);
    if endpoints.is_empty() {
        bail!("--etcd names no endpoint");
    }
    if args.lease_ttl_ms == 0 {
        bail!("--lease-ttl-ms must be positive");
    }
    let bound = listener.local_addr()?;
    let advertise = match &args.advertise {
        Some(a) => a.clone(),
        None if bound.ip().is_unspecified() => bail!(
            "listening on {bound}: say which URL clients and executors reach this coordinator at (--advertise http://HOST:PORT)"
        ),
        None => security.url(&bound.to_string())?,
    };
    let fence = Arc::new(ElectedFence::default());
    let coord = Coordinator::new(config, fence.clone());
    let (role, gate) = tokio::sync::watch::channel(Role::Standby { leader: None });
    serve_probes(&args, &coord, Some(gate.clone())).await?;
    let (serving, served) = (security.clone(), coord.clone());
    let mut server = tokio::spawn(async move {
        silt_coordinator::service::serve(
            served,
            listener,
            shutdown_signal(),
            Gate::Leader(gate),
            &serving,
        )
        .await
    });
    eprintln!(
        "silt coordinator listening on {bound}: standby of cluster `{}`, campaigning through etcd {}",
        args.cluster_name,
        endpoints.join(",")
    );
    let election = ElectionConfig {
        endpoints,
        cluster: args.cluster_name.clone(),
        lease_ttl: Duration::from_millis(args.lease_ttl_ms),
        advertise: advertise.clone(),
    };
    let leadership = tokio::select! {
        won = campaign(&election, &role) => won?,
        served = &mut server => return Ok(served??),
    };
    let epoch = leadership.epoch();
    let Some(leadership) = fence.install(leadership) else {
        bail!("leadership installed twice");
    };
    // Jobs in flight under the previous leader are finished before serving.
    let took = coord
        .take_over(Arc::new(leadership.journal()))
        .await
        .with_context(|| format!("taking over as leader of epoch {epoch}"))?;
    announce(&role, epoch);
    eprintln!(
        "silt coordinator {advertise} leads cluster `{}` (epoch {epoch}); jobs taken over: {} run again, {} committed before, {} failed, {} finished remembered",
        args.cluster_name, took.rerun, took.committed, took.failed, took.finished
    );
    let lost = leadership.lost();
    tokio::select! {
        reason = lost => {
            eprintln!(
                "silt coordinator {advertise}: leadership of epoch {epoch} lost ({reason}); stepping down, restarting as a standby"
            );
            // A moment for jobs in flight to meet the fence (it refuses at once now) and say
            // that they are left to the next leader; nothing is served meanwhile.
            tokio::time::sleep(Duration::from_millis(500)).await;
            Err(restart_as_standby(bound))
        }
        served = &mut server => Ok(served??),
    }
}

/// Serves the coordinator's probes and metrics when `--http-listen` asks for them.
async fn serve_probes(
    args: &CoordinatorArgs,
    coord: &Coordinator,
    role: Option<tokio::sync::watch::Receiver<Role>>,
) -> Result<()> {
    let Some(addr) = &args.http_listen else {
        return Ok(());
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} (--http-listen)"))?;
    eprintln!(
        "silt coordinator serving /healthz, /readyz and /metrics on http://{}",
        listener.local_addr()?
    );
    let probe = silt_coordinator::http::Probe {
        coordinator: coord.clone(),
        role,
    };
    tokio::spawn(silt_coordinator::http::serve(
        listener,
        probe,
        shutdown_signal(),
    ));
    Ok(())
}

/// Replaces this process with a fresh coordinator on the same address: nothing of the
/// deposed leader's state (jobs, executors) survives, and it campaigns again as a standby.
/// Returns only if that fails.
fn restart_as_standby(bound: std::net::SocketAddr) -> anyhow::Error {
    use std::os::unix::process::CommandExt;
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => return anyhow!("cannot restart as a standby: {e}"),
    };
    // The same arguments, listening where this process listened (a port picked at bind
    // time stays the address clients and executors know).
    let mut args: Vec<std::ffi::OsString> = Vec::new();
    let mut given = std::env::args_os().skip(1);
    while let Some(a) = given.next() {
        if a == "--listen" {
            given.next();
        } else if !a.to_string_lossy().starts_with("--listen=") {
            args.push(a);
        }
    }
    args.push("--listen".into());
    args.push(bound.to_string().into());
    let err = std::process::Command::new(exe).args(args).exec();
    anyhow!("cannot restart as a standby: {err}")
}

/// Test-only fault injection: the executor's `--faults`, plus a start delay.
fn faults(spec: Option<&str>, task_delay_ms: u64) -> Result<Faults> {
    let mut spec = spec.unwrap_or_default().to_string();
    if task_delay_ms > 0 {
        spec.push_str(&format!(";start:s*/t*/a*:sleep={task_delay_ms}"));
    }
    Faults::parse(&spec).map_err(|e| anyhow!("{e}"))
}

async fn executor(args: ExecutorArgs) -> Result<()> {
    let config = ExecutorConfig {
        coordinator_url: args.coordinator,
        slots: args.slots.max(1),
        memory_limit_bytes: args.memory_limit,
        host: args
            .name
            .unwrap_or_else(|| format!("pid{}", std::process::id())),
        faults: faults(args.faults.as_deref(), args.task_delay_ms)?,
        shuffle_listen: args.shuffle_listen,
        shuffle_advertise: args.shuffle_advertise,
        spill_dir: args.spill_dir,
        security: args.security.load()?,
        ..Default::default()
    };
    silt_executor::run_executor(config, shutdown_signal()).await?;
    Ok(())
}

/// An embedded cluster: coordinator and executors in this process, talking gRPC over loopback.
struct LocalCluster {
    url: String,
    stop: tokio::sync::watch::Sender<bool>,
    security: Security,
    /// The executors' threads (see [`spawn_executor`]).
    executors: Vec<std::thread::JoinHandle<()>>,
}

impl LocalCluster {
    async fn start(executors: u32, executor_memory: u64) -> Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("cannot bind a loopback port for the local cluster")?;
        let url = format!("http://{}", listener.local_addr()?);
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let config = CoordinatorConfig {
            min_executors: executors.max(1) as usize,
            ..Default::default()
        };
        let coord = Coordinator::new(config, Arc::new(SoleLeader));
        // Only this process knows the token: another local user cannot join the cluster,
        // take its tasks or submit to it.
        let security = Security::with_token(&uuid::Uuid::new_v4().simple().to_string())?;
        let mut rx = stop_rx.clone();
        let serving = security.clone();
        tokio::spawn(async move {
            let stop = async move {
                let _ = rx.wait_for(|v| *v).await;
            };
            let _ =
                silt_coordinator::service::serve(coord, listener, stop, Gate::Open, &serving).await;
        });
        // Test-only fault injection reaches embedded executors through the environment.
        let injected = faults(std::env::var("SILT_FAULTS").ok().as_deref(), 0)?;
        // From here on, a failure stops what has started (`Drop`).
        let mut cluster = Self {
            url,
            stop,
            security,
            executors: Vec::new(),
        };
        for i in 0..executors.max(1) {
            let config = ExecutorConfig {
                coordinator_url: cluster.url.clone(),
                slots: 1,
                memory_limit_bytes: executor_memory,
                host: format!("local{i}"),
                faults: injected.clone(),
                security: cluster.security.clone(),
                ..Default::default()
            };
            let mut rx = stop_rx.clone();
            let thread = spawn_executor(i, executors, async move {
                if let Err(e) = silt_executor::run_executor(config, async move {
                    let _ = rx.wait_for(|v| *v).await;
                })
                .await
                {
                    eprintln!("error: local executor {i}: {}", one_line(&e.to_string()));
                }
            })
            .await?;
            cluster.executors.push(thread);
        }
        Ok(cluster)
    }
}

/// How long a stopping embedded cluster waits for its executors to end.
const EXECUTOR_STOP_WAIT: Duration = Duration::from_secs(2);

impl Drop for LocalCluster {
    /// Stops the cluster and waits (a bounded time) for the executors' threads to end: an
    /// executor deletes its scratch directory as it ends, which the process's exit would
    /// otherwise cut short.
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        let deadline = std::time::Instant::now() + EXECUTOR_STOP_WAIT;
        while self.executors.iter().any(|t| !t.is_finished())
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// Runs embedded executor `i` of `executors` on a runtime of its own, with its share of the
/// cores as worker threads (at least one), as a separate process would have: a task's rows
/// are then allocated and freed on its executor's threads. On the process's shared runtime
/// the executors' tasks moved between all its threads, and freeing memory another thread
/// allocated made them contend for the allocator's locks: a write of 1,828 partitions
/// switched threads 20,000 times (700 unpartitioned) and took about 30% longer.
async fn spawn_executor(
    i: u32,
    executors: u32,
    run: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<std::thread::JoinHandle<()>> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let workers = (cores / executors.max(1) as usize).max(1);
    let (started, ready) = tokio::sync::oneshot::channel();
    let thread = std::thread::Builder::new()
        .name(format!("silt-executor-{i}"))
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(workers)
                .thread_name(format!("silt-executor-{i}"))
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(e) => {
                    let _ = started.send(Err(e));
                    return;
                }
            };
            let _ = started.send(Ok(()));
            runtime.block_on(run);
            runtime.shutdown_timeout(Duration::from_millis(200));
        })
        .with_context(|| format!("cannot start local executor {i}"))?;
    ready
        .await
        .map_err(|_| anyhow!("local executor {i} ended before it started"))?
        .with_context(|| format!("cannot start the runtime of local executor {i}"))?;
    Ok(thread)
}

/// Executors an embedded cluster runs at most (each is a set of threads in this process).
const MAX_EMBEDDED_EXECUTORS: i64 = 64;

/// A number of bytes: digits, optionally with a binary unit (`k`, `m`, `g`, `t`, with or
/// without `b`/`ib`, any case): `1048576`, `512m`, `2GiB`.
fn parse_bytes(s: &str) -> std::result::Result<u64, String> {
    let t = s.trim().to_ascii_lowercase();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(digits);
    let shift = match unit.trim() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        other => {
            return Err(format!(
                "`{s}`: unknown unit `{other}` (bytes, or with k, m, g or t: `512m`, `2g`)"
            ));
        }
    };
    let n: u64 = n
        .parse()
        .map_err(|_| format!("`{s}` is not a number of bytes (`1048576`, `512m`, `2g`)"))?;
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("`{s}` is too large"))
}

/// A memory limit: at least 8 MiB (an executor's buffers and open files need that much),
/// at most 1 TiB.
fn memory_size(s: &str) -> std::result::Result<u64, String> {
    let n = parse_bytes(s)?;
    if !(8 << 20..=1 << 40).contains(&n) {
        return Err(format!(
            "`{s}` is outside 8m ..= 1t (an executor needs at least 8 MiB)"
        ));
    }
    Ok(n)
}

/// A data file size: at least 1 KiB.
fn file_size(s: &str) -> std::result::Result<u64, String> {
    let n = parse_bytes(s)?;
    if n < 1 << 10 {
        return Err(format!("`{s}` is below 1k: no data file is that small"));
    }
    Ok(n)
}

fn parse_properties(props: &[String]) -> Result<BTreeMap<String, String>> {
    props
        .iter()
        .map(|p| {
            let (k, v) = p
                .split_once('=')
                .ok_or_else(|| anyhow!("--property `{p}` is not key=value"))?;
            if k.trim().is_empty() {
                bail!("--property `{p}` has an empty key");
            }
            Ok((k.trim().to_string(), v.to_string()))
        })
        .collect()
}

async fn write(args: WriteArgs) -> Result<i32> {
    let mut req = WriteRequest::append(&args.table, &args.source);
    req.format = SourceFormat::parse(&args.format).map_err(|e| anyhow!("--format: {e}"))?;
    req.mode = WriteMode::parse(&args.mode).map_err(|e| anyhow!("--mode: {e}"))?;
    req.partition_by = args
        .partition_by
        .iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    req.exchange = ExchangeMode::parse(&args.exchange).map_err(|e| anyhow!("--exchange: {e}"))?;
    req.replace_where = args.replace_where.clone();
    req.dynamic_partition_overwrite = args.dynamic_partition_overwrite;
    req.merge_schema = args.merge_schema;
    req.overwrite_schema = args.overwrite_schema;
    req.txn_app_id = args.txn_app_id.clone();
    req.txn_version = args.txn_version;
    req.target_file_size_bytes = args.target_file_size;
    req.properties = parse_properties(&args.properties)?;
    let session = Session::open(&args.cluster).await?;
    session.run(&JobRequest::Write(req)).await
}

async fn optimize(args: OptimizeArgs) -> Result<i32> {
    let zorder_by: Vec<String> = args
        .zorder_by
        .iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    if zorder_by.is_empty() && (args.full || args.curve != "zorder") {
        bail!("--curve and --full apply to clustering: give --zorder-by");
    }
    if !zorder_by.is_empty() && args.min_file_size.is_some() {
        bail!("--min-file-size applies to compaction, not to --zorder-by");
    }
    let req = OptimizeRequest {
        table_uri: args.table.clone(),
        predicate: args.predicate.clone(),
        target_size: args.target_size,
        min_file_size: args.min_file_size,
        zorder_by,
        curve: Curve::parse(&args.curve).map_err(|e| anyhow!("--curve: {e}"))?,
        full: args.full,
        max_commit_interval_ms: args
            .max_commit_interval
            .as_deref()
            .map(parse_duration_ms)
            .transpose()
            .map_err(|e| anyhow!("--max-commit-interval: {e}"))?,
        purge: args.purge,
    };
    let session = Session::open(&args.cluster).await?;
    session.run(&JobRequest::Optimize(req)).await
}

/// A duration such as `0`, `500ms`, `30s`, `10m`, `2h` in milliseconds.
fn parse_duration_ms(s: &str) -> Result<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| anyhow!("`{s}` is not a duration (e.g. 30s, 10m, 1h)"))?;
    let factor = match unit.trim() {
        "" if n == 0 => 0,
        "ms" => 1,
        "s" => 1_000,
        "m" | "min" => 60_000,
        "h" => 3_600_000,
        _ => bail!("`{s}` is not a duration (e.g. 30s, 10m, 1h)"),
    };
    n.checked_mul(factor)
        .ok_or_else(|| anyhow!("`{s}` is too long"))
}

async fn sql(args: SqlArgs) -> Result<i32> {
    let text = match (&args.statement, &args.file) {
        (Some(s), _) => s.clone(),
        (None, Some(f)) => {
            let size = std::fs::metadata(f)
                .with_context(|| format!("cannot read {}", f.display()))?
                .len();
            if size > silt_common::sql::MAX_SQL_BYTES as u64 {
                bail!(
                    "{} is {size} bytes; SQL text of at most {} (1 MiB) is accepted",
                    f.display(),
                    silt_common::sql::MAX_SQL_BYTES
                );
            }
            std::fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display()))?
        }
        (None, None) => bail!("give a statement or --file"),
    };
    let mut statements = silt_common::sql::parse(&text)?;
    let exchange = ExchangeMode::parse(&args.exchange).map_err(|e| anyhow!("--exchange: {e}"))?;
    for stmt in &mut statements {
        match stmt {
            JobRequest::Merge(m) => {
                m.exchange = exchange;
                m.copy_on_write = args.copy_on_write;
            }
            JobRequest::Delete(d) => d.copy_on_write = args.copy_on_write,
            JobRequest::Update(u) => u.copy_on_write = args.copy_on_write,
            JobRequest::Vacuum(v) => v.enforce_retention = !args.allow_short_retention,
            _ => {}
        }
    }
    if args.cluster.detach && statements.len() > 1 {
        bail!(
            "--detach runs one statement (statements run in order, each after the previous one ended); {} given",
            statements.len()
        );
    }
    let session = Session::open(&args.cluster).await?;
    for stmt in &statements {
        let code = session.run(stmt).await?;
        if code != 0 {
            return Ok(code);
        }
    }
    Ok(0)
}

/// A connection to a coordinator (an embedded one unless `--coordinator` is given), for one
/// or more jobs.
struct Session<'a> {
    /// The coordinators to try, in order.
    urls: Vec<String>,
    cluster: &'a ClusterArgs,
    /// Credentials for the coordinators.
    security: Security,
    _local: Option<LocalCluster>,
}

impl<'a> Session<'a> {
    async fn open(cluster: &'a ClusterArgs) -> Result<Self> {
        let (urls, security, local) = match &cluster.coordinator {
            Some(list) => {
                let urls = silt_proto::leader::urls(list);
                if urls.is_empty() {
                    bail!("--coordinator names no coordinator");
                }
                (urls, cluster.security.load()?, None)
            }
            None => {
                if cluster.detach {
                    bail!(
                        "--detach needs --coordinator: the embedded cluster ends with this process"
                    );
                }
                let n = cluster.executors.unwrap_or_else(|| {
                    std::thread::available_parallelism()
                        .map(|n| n.get() as u32)
                        .unwrap_or(2)
                });
                let local = LocalCluster::start(n, cluster.executor_memory).await?;
                (vec![local.url.clone()], local.security.clone(), Some(local))
            }
        };
        Ok(Self {
            urls,
            cluster,
            security,
            _local: local,
        })
    }

    /// Submits a job and waits for its result, showing its progress on stderr if asked. With
    /// several coordinators, a job whose coordinator goes away is followed to the next
    /// leader (which finishes it, see `Coordinator::take_over`).
    async fn execute(&self, job: &JobRequest, progress: bool) -> Result<pb::JobResult> {
        let quiet = !progress;
        let submit = pb::SubmitJobRequest::from(job);
        let (url, mut client, job_id) = self
            .on_leader(COORDINATOR_WAIT_SECS, |mut c| {
                let submit = submit.clone();
                async move { Ok(c.submit_job(submit).await?.into_inner().job_id) }
            })
            .await?;
        if !quiet {
            eprintln!("job {job_id} submitted to {url}");
        }
        let watch = |mut c: JobClient| {
            let job_id = job_id.clone();
            async move {
                Ok(c.watch_job(pb::WatchJobRequest { job_id })
                    .await?
                    .into_inner())
            }
        };
        let mut events = watch(client.clone())
            .await
            .map_err(|s: tonic::Status| anyhow!("{}", s.message()))?;
        let mut last = String::new();
        let mut last_stage = String::new();
        let mut cancelled = false;
        loop {
            tokio::select! {
                ev = events.next() => {
                    match ev {
                        Some(Ok(ev)) => {
                            if !quiet && ev.stage != last_stage && ev.message.starts_with("stage ") {
                                // A stage starts: say what it is (and why, when the plan says).
                                eprintln!("{}", ev.message);
                                last_stage = ev.stage.clone();
                            }
                            let line = format!("[{}] {} {}/{} tasks{}", state_name(ev.state), ev.stage, ev.tasks_succeeded, ev.tasks_total,
                                if ev.task_retries > 0 { format!(" ({} retried)", ev.task_retries) } else { String::new() });
                            if !quiet && line != last {
                                eprintln!("{line}");
                                last = line;
                            }
                        }
                        Some(Err(s)) if self.urls.len() > 1 => {
                            if !quiet {
                                eprintln!("lost the job's coordinator ({}); following job {job_id} to the leader", s.message());
                            }
                            let (url, c, stream) = self
                                .on_leader(FAILOVER_WAIT_SECS, watch)
                                .await
                                .with_context(|| format!("lost job {job_id}'s progress stream: {}", s.message()))?;
                            if !quiet {
                                eprintln!("following job {job_id} at {url}");
                            }
                            (client, events) = (c, stream);
                        }
                        Some(Err(s)) => bail!("lost the job's progress stream: {}", s.message()),
                        None => break,
                    }
                }
                _ = tokio::signal::ctrl_c(), if !cancelled => {
                    cancelled = true;
                    eprintln!("cancelling job {job_id} …");
                    let _ = client.cancel_job(pb::CancelJobRequest { job_id: job_id.clone() }).await;
                }
            }
        }
        let result = |mut c: JobClient| {
            let job_id = job_id.clone();
            async move {
                Ok(c.get_job_result(pb::GetJobResultRequest { job_id })
                    .await?
                    .into_inner())
            }
        };
        match result(client).await {
            Ok(r) => Ok(r),
            Err(_) if self.urls.len() > 1 => {
                Ok(self.on_leader(FAILOVER_WAIT_SECS, result).await?.2)
            }
            Err(s) => bail!("{}", s.message()),
        }
    }

    /// Submits a job, follows its progress and prints its result. Exit code 0 on success.
    /// With `--detach`, only submits it and prints its id.
    async fn run(&self, job: &JobRequest) -> Result<i32> {
        if self.cluster.detach {
            return self.detach(job).await;
        }
        let result = self.execute(job, !self.cluster.quiet).await?;
        self.report(&result)
    }

    /// Submits a job that runs on without this client; prints its id.
    async fn detach(&self, job: &JobRequest) -> Result<i32> {
        let submit = pb::SubmitJobRequest {
            detach: true,
            ..pb::SubmitJobRequest::from(job)
        };
        let (url, _, job_id) = self
            .on_leader(COORDINATOR_WAIT_SECS, |mut c| {
                let submit = submit.clone();
                async move { Ok(c.submit_job(submit).await?.into_inner().job_id) }
            })
            .await?;
        if self.cluster.json {
            println!(
                "{}",
                serde_json::json!({"job_id": job_id, "state": "queued", "coordinator": url})
            );
        } else {
            println!("{job_id}");
            if !self.cluster.quiet {
                eprintln!(
                    "job {job_id} submitted to {url}, detached: `silt job status {job_id}` follows it"
                );
            }
        }
        Ok(0)
    }

    /// `silt job cancel ID`. Exit code 0 when the job was cancelled.
    async fn cancel(&self, job_id: &str) -> Result<i32> {
        let (_, _, cancelled) = self
            .on_leader(COORDINATOR_WAIT_SECS, |mut c| {
                let job_id = job_id.to_string();
                async move {
                    Ok(c.cancel_job(pb::CancelJobRequest { job_id })
                        .await?
                        .into_inner()
                        .cancelled)
                }
            })
            .await?;
        if cancelled {
            if self.cluster.json {
                println!(
                    "{}",
                    serde_json::json!({"job_id": job_id, "cancelled": true})
                );
            } else if !self.cluster.quiet {
                eprintln!("job {job_id} cancelled; its files are being deleted");
            }
            return Ok(0);
        }
        // Not cancellable: say why (it ended, or it commits).
        let result = self.job_result(job_id).await?;
        bail!(
            "job {job_id} is {}: only a queued or running job can be cancelled",
            state_name(result.state)
        )
    }

    /// What the leading coordinator says about a job.
    async fn job_result(&self, job_id: &str) -> Result<pb::JobResult> {
        let (_, _, result) = self
            .on_leader(COORDINATOR_WAIT_SECS, |mut c| {
                let job_id = job_id.to_string();
                async move {
                    Ok(c.get_job_result(pb::GetJobResultRequest { job_id })
                        .await?
                        .into_inner())
                }
            })
            .await?;
        Ok(result)
    }

    /// `silt job status ID`: asks the leading coordinator about a job; prints it as a job's
    /// result is printed. Exit code 0 succeeded, 1 failed or cancelled, 3 not ended yet.
    async fn status(&self, job_id: &str) -> Result<i32> {
        let result = self.job_result(job_id).await?;
        let ended = matches!(
            pb::JobState::try_from(result.state),
            Ok(pb::JobState::Succeeded | pb::JobState::Failed | pb::JobState::Cancelled)
        );
        if !ended {
            if self.cluster.json {
                println!(
                    "{}",
                    serde_json::json!({"job_id": result.job_id, "state": state_name(result.state)})
                );
            } else {
                println!("job {} is {}", result.job_id, state_name(result.state));
            }
            return Ok(3);
        }
        self.report(&result)
    }

    /// Prints a job's result; exit code 0 when it succeeded.
    fn report(&self, result: &pb::JobResult) -> Result<i32> {
        let cluster = self.cluster;
        let ok = result.state == pb::JobState::Succeeded as i32;
        let rows: Option<serde_json::Value> = result
            .rows_json
            .as_deref()
            .map(serde_json::from_str)
            .transpose()
            .context("malformed query result")?;
        if cluster.json {
            let metrics: BTreeMap<_, _> = result.metrics.iter().collect();
            let mut out = serde_json::json!({
                "job_id": result.job_id,
                "state": state_name(result.state),
                "version": result.version,
                "error": result.error,
                "summary": result.summary,
                "metrics": metrics,
                "winning_commits_checked": result.winning_commits_checked,
                "task_retries": result.task_retries,
            });
            if let Some(r) = &rows {
                out["rows"] = rows_as_objects(r);
            }
            println!("{out}");
        } else if ok {
            match &rows {
                Some(r) => print!("{}", render_table(r)),
                None => println!("{}", result.summary),
            }
        }
        if ok {
            Ok(0)
        } else {
            eprintln!("error: {}", one_line(&result.error));
            Ok(1)
        }
    }
}

/// `{"columns": [...], "rows": [[...]]}` → an array of objects (one per row).
fn rows_as_objects(r: &serde_json::Value) -> serde_json::Value {
    let columns: Vec<&str> = r["columns"]
        .as_array()
        .map(|c| c.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    serde_json::Value::Array(
        r["rows"]
            .as_array()
            .map(|rows| {
                rows.iter()
                    .map(|row| {
                        let mut obj = serde_json::Map::new();
                        for (c, v) in columns.iter().zip(row.as_array().into_iter().flatten()) {
                            obj.insert(c.to_string(), v.clone());
                        }
                        serde_json::Value::Object(obj)
                    })
                    .collect()
            })
            .unwrap_or_default(),
    )
}

/// A query result as a text table: one line per row, columns separated by ` | `, values as
/// JSON (strings without quotes).
fn render_table(r: &serde_json::Value) -> String {
    let columns: Vec<String> = r["columns"]
        .as_array()
        .map(|c| {
            c.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let cell = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "null".to_string(),
        other => other.to_string(),
    };
    let rows: Vec<Vec<String>> = r["rows"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .map(|row| row.as_array().into_iter().flatten().map(cell).collect())
                .collect()
        })
        .unwrap_or_default();
    let widths: Vec<usize> = (0..columns.len())
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .chain(std::iter::once(&columns[i]))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: &[String]| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join(" | ")
            .trim_end()
            .to_string()
    };
    let mut out = line(&columns);
    out.push('\n');
    out.push_str(
        &widths
            .iter()
            .map(|w| "-".repeat(*w))
            .collect::<Vec<_>>()
            .join("-+-"),
    );
    out.push('\n');
    for r in &rows {
        out.push_str(&line(r));
        out.push('\n');
    }
    out
}

/// Errors reach users as one `error: …` line: line breaks inside a message become spaces.
/// A message on one line, any credential in it masked.
/// A command-line error in one line: clap's message and its tip, without the usage and the
/// pointer to --help that follow.
fn usage_error(rendered: &str) -> String {
    let mut parts = Vec::new();
    for line in rendered.lines().map(str::trim) {
        if line.starts_with("Usage:") || line.starts_with("For more information") {
            break;
        }
        if !line.is_empty() {
            parts.push(line.strip_prefix("error: ").unwrap_or(line));
        }
    }
    one_line(&parts.join(" "))
}

fn one_line(msg: &str) -> String {
    let msg = silt_common::redact::without_backtrace(msg);
    silt_common::redact::credentials(&msg.split_whitespace().collect::<Vec<_>>().join(" "))
}

fn state_name(s: i32) -> &'static str {
    match pb::JobState::try_from(s) {
        Ok(pb::JobState::Queued) => "queued",
        Ok(pb::JobState::Running) => "running",
        Ok(pb::JobState::Committing) => "committing",
        Ok(pb::JobState::Succeeded) => "succeeded",
        Ok(pb::JobState::Failed) => "failed",
        Ok(pb::JobState::Cancelled) => "cancelled",
        _ => "unknown",
    }
}

type JobClient = JobServiceClient<AuthChannel>;

impl Session<'_> {
    /// Makes `call` on the leading coordinator, and returns where it went: an unreachable or
    /// unanswering coordinator is passed over, a standby's refusal names the leader to go
    /// to. Gives up after `wait_secs` with the last reason.
    async fn on_leader<T, F, Fut>(&self, wait_secs: u64, call: F) -> Result<(String, JobClient, T)>
    where
        F: Fn(JobClient) -> Fut,
        Fut: std::future::Future<Output = Result<T, tonic::Status>>,
    {
        let mut urls = self.urls.clone();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(wait_secs);
        let mut at = 0;
        loop {
            let url = urls[at].clone();
            // A coordinator that accepts connections but does not answer (paused) is passed
            // over like an unreachable one.
            let attempt = tokio::time::timeout(Duration::from_secs(5), async {
                let client = connect_job_client(&url, &self.security).await?;
                let answer = call(client.clone()).await;
                Ok::<_, String>((client, answer))
            })
            .await;
            let reason = match attempt {
                Ok(Ok((client, Ok(t)))) => return Ok((url, client, t)),
                Ok(Ok((_, Err(s)))) if let Some(why) = silt_proto::security::unanswered(&s) => {
                    let reason = format!("cannot reach coordinator at {url}: {why}");
                    if urls.len() == 1 && !silt_proto::leader::elsewhere(&s) {
                        bail!("{reason}");
                    }
                    at = (at + 1) % urls.len();
                    reason
                }
                Ok(Ok((_, Err(s)))) if silt_proto::leader::elsewhere(&s) => {
                    at = silt_proto::leader::next(&mut urls, at, &s);
                    s.message().to_string()
                }
                Ok(Ok((_, Err(s)))) => bail!("{}", s.message()),
                Ok(Err(e)) => {
                    at = (at + 1) % urls.len();
                    format!("cannot reach coordinator at {url}: {e}")
                }
                Err(_) => {
                    at = (at + 1) % urls.len();
                    format!("coordinator at {url} did not answer")
                }
            };
            if tokio::time::Instant::now() >= deadline {
                bail!("{reason}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A client of a coordinator's job service. HTTP/2 pings find a coordinator that stopped
/// answering (paused, cut off) while a job's progress is awaited.
async fn connect_job_client(url: &str, security: &Security) -> Result<JobClient, String> {
    let channel = security
        .endpoint(url)
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_secs(5))
        .http2_keep_alive_interval(Duration::from_secs(2))
        .keep_alive_timeout(Duration::from_secs(5))
        .keep_alive_while_idle(true)
        .connect()
        .await
        .map_err(|e| silt_proto::security::transport_error(&e))?;
    Ok(JobServiceClient::new(security.authenticate(channel))
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20))
}

/// How long a client following a job looks for the next leader after losing its
/// coordinator: a lease and a takeover.
const FAILOVER_WAIT_SECS: u64 = 60;

/// How long a client looks for a leading coordinator.
const COORDINATOR_WAIT_SECS: u64 = 15;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_binary_units_and_refuse_the_absurd() {
        assert_eq!(parse_bytes("1048576"), Ok(1 << 20));
        assert_eq!(parse_bytes("512m"), Ok(512 << 20));
        assert_eq!(parse_bytes("2GiB"), Ok(2 << 30));
        assert_eq!(parse_bytes(" 3 kb "), Ok(3 << 10));
        assert!(parse_bytes("2x").unwrap_err().contains("unknown unit"));
        assert!(parse_bytes("-1").is_err());
        assert!(
            parse_bytes("99999999999t")
                .unwrap_err()
                .contains("too large")
        );
        assert!(memory_size("0").is_err());
        assert!(memory_size("7m").is_err());
        assert_eq!(memory_size("16m"), Ok(16 << 20));
        assert!(memory_size("2t").is_err());
        assert!(file_size("10").is_err());
    }
}
