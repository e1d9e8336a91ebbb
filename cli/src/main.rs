//! `silt`: the command-line client and the daemons.
//!
//! * `silt write …` runs a job against `--coordinator URL`, or, without it, on an embedded
//!   local cluster (an in-process coordinator plus `--executors N` executors talking gRPC
//!   over loopback).
//! * `silt coordinator --listen ADDR` and `silt executor --coordinator URL` run the daemons.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Parser, Subcommand};
use silt_coordinator::fence::SoleLeader;
use silt_coordinator::{Coordinator, CoordinatorConfig};
use silt_executor::ExecutorConfig;
use silt_proto::pb;
use silt_proto::pb::job_service_client::JobServiceClient;
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
    /// Run a coordinator daemon.
    Coordinator(CoordinatorArgs),
    /// Run an executor daemon.
    Executor(ExecutorArgs),
}

#[derive(Args, Clone)]
struct ClusterArgs {
    /// Coordinator to submit to (e.g. http://127.0.0.1:7077). Without it, an embedded local
    /// cluster runs the job.
    #[arg(long)]
    coordinator: Option<String>,
    /// Executors of the embedded local cluster (default: number of cores).
    #[arg(long)]
    executors: Option<u32>,
    /// Memory limit per embedded executor, in bytes.
    #[arg(long, default_value_t = 2 << 30)]
    executor_memory: u64,
    /// Print the job result as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// No progress on stderr.
    #[arg(long, short)]
    quiet: bool,
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
    /// Target size of data files, in bytes.
    #[arg(long)]
    target_file_size: Option<u64>,
    /// Table property for a new table, key=value (repeatable).
    #[arg(long = "property")]
    properties: Vec<String>,
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
}

#[derive(Args)]
struct ExecutorArgs {
    /// Coordinator URL.
    #[arg(long)]
    coordinator: String,
    /// Tasks run at once.
    #[arg(long, default_value_t = 1)]
    slots: u32,
    /// Memory limit in bytes.
    #[arg(long, default_value_t = 2 << 30)]
    memory_limit: u64,
    /// Name reported to the coordinator.
    #[arg(long)]
    name: Option<String>,
    /// Fault injection for tests: sleep this long before every task.
    #[arg(long, default_value_t = 0, hide = true)]
    task_delay_ms: u64,
}

fn init_tracing(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SILT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
}

fn main() {
    let cli = Cli::parse();
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
            init_tracing("warn");
            write(*args).await
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
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let mut config = CoordinatorConfig::default();
    config.scheduler.executor_timeout_ms = args.executor_timeout_ms;
    config.scheduler.max_task_attempts = args.max_task_attempts.max(1);
    let coord = Coordinator::new(config, Arc::new(SoleLeader));
    eprintln!("silt coordinator listening on {}", listener.local_addr()?);
    silt_coordinator::service::serve(coord, listener, shutdown_signal()).await?;
    Ok(())
}

async fn executor(args: ExecutorArgs) -> Result<()> {
    let config = ExecutorConfig {
        coordinator_url: args.coordinator,
        slots: args.slots.max(1),
        memory_limit_bytes: args.memory_limit,
        host: args
            .name
            .unwrap_or_else(|| format!("pid{}", std::process::id())),
        task_delay_ms: args.task_delay_ms,
        ..Default::default()
    };
    silt_executor::run_executor(config, shutdown_signal()).await?;
    Ok(())
}

/// An embedded cluster: coordinator and executors in this process, talking gRPC over loopback.
struct LocalCluster {
    url: String,
    stop: tokio::sync::watch::Sender<bool>,
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
        let mut rx = stop_rx.clone();
        tokio::spawn(async move {
            let _ = silt_coordinator::service::serve(coord, listener, async move {
                let _ = rx.wait_for(|v| *v).await;
            })
            .await;
        });
        for i in 0..executors.max(1) {
            let config = ExecutorConfig {
                coordinator_url: url.clone(),
                slots: 1,
                memory_limit_bytes: executor_memory,
                host: format!("local{i}"),
                ..Default::default()
            };
            let mut rx = stop_rx.clone();
            tokio::spawn(async move {
                if let Err(e) = silt_executor::run_executor(config, async move {
                    let _ = rx.wait_for(|v| *v).await;
                })
                .await
                {
                    eprintln!("error: local executor {i}: {e}");
                }
            });
        }
        Ok(Self { url, stop })
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
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
    let format = match args.format.to_ascii_lowercase().as_str() {
        "parquet" => pb::SourceFormat::Parquet,
        "csv" => pb::SourceFormat::Csv,
        "json" | "ndjson" => pb::SourceFormat::Json,
        "delta" => pb::SourceFormat::Delta,
        other => bail!("unknown --format `{other}` (expected parquet, csv, json or delta)"),
    };
    let mode = match args.mode.to_ascii_lowercase().as_str() {
        "append" => pb::WriteMode::Append,
        "overwrite" => pb::WriteMode::Overwrite,
        "error" | "errorifexists" => pb::WriteMode::ErrorIfExists,
        "ignore" => pb::WriteMode::Ignore,
        other => bail!("unknown --mode `{other}` (expected append, overwrite, error or ignore)"),
    };
    let job = pb::WriteJob {
        table_uri: args.table.clone(),
        source_uri: args.source.clone(),
        format: format as i32,
        mode: mode as i32,
        partition_by: args
            .partition_by
            .iter()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect(),
        replace_where: args.replace_where.clone(),
        dynamic_partition_overwrite: args.dynamic_partition_overwrite,
        merge_schema: args.merge_schema,
        overwrite_schema: args.overwrite_schema,
        txn_app_id: args.txn_app_id.clone(),
        txn_version: args.txn_version,
        target_file_size_bytes: args.target_file_size,
        properties: parse_properties(&args.properties)?.into_iter().collect(),
    };
    run_job(pb::submit_job_request::Job::Write(job), &args.cluster).await
}

/// Submits a job, follows its progress and prints its result. Exit code 0 on success.
async fn run_job(job: pb::submit_job_request::Job, cluster: &ClusterArgs) -> Result<i32> {
    let (url, _local) = match &cluster.coordinator {
        Some(url) => (url.clone(), None),
        None => {
            let n = cluster.executors.unwrap_or_else(|| {
                std::thread::available_parallelism()
                    .map(|n| n.get() as u32)
                    .unwrap_or(2)
            });
            let local = LocalCluster::start(n, cluster.executor_memory).await?;
            (local.url.clone(), Some(local))
        }
    };
    let mut client = connect_client(&url).await?;
    let job_id = client
        .submit_job(pb::SubmitJobRequest { job: Some(job) })
        .await
        .map_err(|s| anyhow!("{}", s.message()))?
        .into_inner()
        .job_id;
    if !cluster.quiet {
        eprintln!("job {job_id} submitted to {url}");
    }
    let mut events = client
        .watch_job(pb::WatchJobRequest {
            job_id: job_id.clone(),
        })
        .await
        .map_err(|s| anyhow!("{}", s.message()))?
        .into_inner();
    let mut last = String::new();
    let mut cancelled = false;
    loop {
        tokio::select! {
            ev = events.next() => {
                match ev {
                    Some(Ok(ev)) => {
                        let line = format!("[{}] {} {}/{} tasks{}", state_name(ev.state), ev.stage, ev.tasks_succeeded, ev.tasks_total,
                            if ev.task_retries > 0 { format!(" ({} retried)", ev.task_retries) } else { String::new() });
                        if !cluster.quiet && line != last {
                            eprintln!("{line}");
                            last = line;
                        }
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
    let result = client
        .get_job_result(pb::GetJobResultRequest {
            job_id: job_id.clone(),
        })
        .await
        .map_err(|s| anyhow!("{}", s.message()))?
        .into_inner();
    let ok = result.state == pb::JobState::Succeeded as i32;
    if cluster.json {
        let metrics: BTreeMap<_, _> = result.metrics.iter().collect();
        println!(
            "{}",
            serde_json::json!({
                "job_id": result.job_id,
                "state": state_name(result.state),
                "version": result.version,
                "error": result.error,
                "summary": result.summary,
                "metrics": metrics,
            })
        );
    } else if ok {
        println!("{}", result.summary);
    }
    if ok {
        Ok(0)
    } else {
        eprintln!("error: {}", one_line(&result.error));
        Ok(1)
    }
}

/// Errors reach users as one `error: …` line: line breaks inside a message become spaces.
fn one_line(msg: &str) -> String {
    msg.split_whitespace().collect::<Vec<_>>().join(" ")
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

async fn connect_client(url: &str) -> Result<JobServiceClient<tonic::transport::Channel>> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match JobServiceClient::connect(url.to_string()).await {
            Ok(c) => return Ok(c),
            Err(e) if tokio::time::Instant::now() >= deadline => {
                bail!("cannot reach coordinator at {url}: {e}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}
