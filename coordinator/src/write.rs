//! The distributed WRITE: plan tasks from the source, run them (directly, or through an
//! exchange for partitioned tables), then make the job's one commit.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{Array, ArrayRef};
use arrow::datatypes::{Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use deltalake_core::kernel::{Action, Add, MetadataExt, StructType, Transaction};
use deltalake_core::protocol::{DeltaOperation, SaveMode};
use serde_json::Value;
use silt_common::predicate::Predicate;
use silt_common::schema::{self, SchemaOptions};
use silt_common::source;
use silt_common::storage::parse_location;
use silt_common::table::{ActiveFile, TableSnapshot, load_table};
use silt_common::task::{
    DataFile, SourceFormat, SourceSplit, StatsSpec, TaskKind, TaskOutput, WriterSpec,
};
use tokio::sync::watch;
use tracing::{info, warn};
use url::Url;

use crate::JobContext;
use crate::cleanup;
use crate::commit::{self, CommitRequest, LogAction, ReadSet};
use crate::job::{JobOutcome, JobState, JobStatus, WriteMode, WriteRequest};
use crate::scheduler::StageError;

/// Smallest and largest amount of source bytes one task reads.
const MIN_TASK_BYTES: u64 = 8 << 20;
const MAX_TASK_BYTES: u64 = 256 << 20;
/// Default target size of written data files.
pub const DEFAULT_TARGET_FILE_SIZE: u64 = 128 << 20;
/// Upper bound on reducers of an exchange.
const MAX_REDUCERS: u32 = 256;

/// Why a job failed.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    Common(#[from] silt_common::Error),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Stage(#[from] StageError),
    #[error(transparent)]
    Commit(#[from] commit::CommitError),
}

impl JobError {
    pub fn is_cancelled(&self) -> bool {
        matches!(self, JobError::Stage(StageError::Cancelled))
    }
}

fn invalid(msg: impl Into<String>) -> JobError {
    JobError::Invalid(msg.into())
}

/// Runs a write job; on any failure after tasks started, deletes the files the job wrote.
pub async fn run_write(
    ctx: &JobContext,
    job_id: &str,
    req: WriteRequest,
    status: &watch::Sender<JobStatus>,
) -> Result<JobOutcome, JobError> {
    let started = Instant::now();
    validate_options(&req)?;
    let table_url = parse_location(&req.table_uri)?;
    if table_url.scheme() == "file"
        && let Ok(p) = table_url.to_file_path()
    {
        std::fs::create_dir_all(&p).map_err(|e| {
            invalid(format!(
                "cannot create table directory {}: {e}",
                p.display()
            ))
        })?;
    }
    let snapshot = load_table(&table_url).await?;
    if let Some(snap) = &snapshot {
        match req.mode {
            WriteMode::ErrorIfExists => {
                return Err(invalid(format!(
                    "table already exists at {} (version {}); mode `error` refuses to write",
                    req.table_uri, snap.version
                )));
            }
            WriteMode::Ignore => {
                return Ok(JobOutcome {
                    version: None,
                    summary: format!(
                        "table already exists (version {}); mode `ignore`: nothing written",
                        snap.version
                    ),
                    ..Default::default()
                });
            }
            _ => {}
        }
        snap.check_writable()?;
        if let (Some(app), Some(v)) = (&req.txn_app_id, req.txn_version)
            && let Some(done) = snap.txn_version(app).await?
            && done >= v
        {
            return Ok(JobOutcome {
                version: None,
                summary: format!(
                    "idempotent write skipped: txn app id `{app}` is already at version {done} (>= {v}); nothing committed"
                ),
                ..Default::default()
            });
        }
        if !req.properties.is_empty() {
            return Err(invalid(
                "table properties (--property) can only be set when the table is created",
            ));
        }
    }

    let plan = plan_write(ctx, job_id, &req, &table_url, snapshot.as_ref()).await?;
    let result = execute_and_commit(
        ctx, job_id, &req, &table_url, snapshot, plan, status, started,
    )
    .await;
    let shuffle = shuffle_dir(&table_url, job_id);
    // Attempts that are no longer wanted (the failed job's other tasks, superseded attempts)
    // may still be writing: cancel them and wait, bounded, until executors let go of them,
    // so that no file appears after the cleanup below.
    let needs_file_cleanup = match &result {
        Ok((_, _, any_retry)) => *any_retry,
        Err(_) => {
            ctx.scheduler.cancel_job(job_id);
            true
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
    cleanup::remove_dir(&shuffle).await;
    match &result {
        Ok((_, kept, true)) => {
            cleanup::remove_job_files(&table_url, job_id, kept).await;
        }
        Ok(_) => {}
        Err(_) => {
            cleanup::remove_job_files(&table_url, job_id, &HashSet::new()).await;
        }
    }
    result.map(|(o, _, _)| o)
}

fn validate_options(req: &WriteRequest) -> Result<(), JobError> {
    let overwrite = req.mode == WriteMode::Overwrite;
    if req.replace_where.is_some() && !overwrite {
        return Err(invalid("--replace-where requires --mode overwrite"));
    }
    if req.dynamic_partition_overwrite && !overwrite {
        return Err(invalid(
            "--dynamic-partition-overwrite requires --mode overwrite",
        ));
    }
    if req.dynamic_partition_overwrite && req.replace_where.is_some() {
        return Err(invalid(
            "--dynamic-partition-overwrite cannot be combined with --replace-where",
        ));
    }
    if req.overwrite_schema && !overwrite {
        return Err(invalid("--overwrite-schema requires --mode overwrite"));
    }
    if req.overwrite_schema && (req.replace_where.is_some() || req.dynamic_partition_overwrite) {
        return Err(invalid(
            "--overwrite-schema cannot be combined with --replace-where or --dynamic-partition-overwrite",
        ));
    }
    if req.txn_app_id.is_some() != req.txn_version.is_some() {
        return Err(invalid(
            "--txn-app-id and --txn-version must be given together",
        ));
    }
    if req.txn_version.is_some_and(|v| v < 0) {
        return Err(invalid("--txn-version must be >= 0"));
    }
    if req.target_file_size_bytes == Some(0) {
        return Err(invalid("--target-file-size must be > 0"));
    }
    Ok(())
}

/// What the planner decided.
struct WritePlan {
    schema: SchemaRef,
    schema_json: String,
    schema_changed: bool,
    partition_columns: Vec<String>,
    writer: WriterSpec,
    source_schema_json: String,
    check_predicate: Option<String>,
    task_groups: Vec<Vec<SourceSplit>>,
    per_task_bytes: u64,
    num_reducers: u32,
    /// Files removed without reading (overwrite, partition-only replaceWhere).
    removes: Vec<ActiveFile>,
    /// Files to rewrite (replaceWhere on data columns).
    rewrites: Vec<ActiveFile>,
    configuration: HashMap<String, String>,
}

async fn plan_write(
    ctx: &JobContext,
    job_id: &str,
    req: &WriteRequest,
    table_url: &Url,
    snapshot: Option<&TableSnapshot>,
) -> Result<WritePlan, JobError> {
    // Source: files, schema, splits.
    let src_url = parse_location(&req.source_uri)?;
    let executors = ctx
        .scheduler
        .wait_for_executors(
            ctx.min_executors,
            Duration::from_millis(ctx.executor_wait_ms),
        )
        .await;
    if executors == 0 {
        return Err(invalid("no executors are registered with the coordinator"));
    }
    let slots = ctx.scheduler.capacity().1.max(1) as u64;
    let (source_schema, splits, per_task_bytes) = match req.format {
        SourceFormat::Delta => {
            let (schema, splits) = source::delta_source(&src_url).await?;
            let total: u64 = splits.iter().map(|s| s.size_bytes).sum();
            (schema, splits, task_bytes(total, slots))
        }
        format => {
            let files = source::list_source_files(&src_url, format).await?;
            let schema = source::infer_schema(&files, format).await?;
            let total: u64 = files.iter().map(|f| f.size_bytes).sum();
            let per_task = task_bytes(total, slots);
            let splits = if format == SourceFormat::Parquet {
                source::plan_parquet_splits(&files, per_task).await?
            } else {
                source::whole_file_splits(&files, format)
            };
            (schema, splits, per_task)
        }
    };

    // Schema: enforcement, merge or overwrite.
    let existing = snapshot.filter(|_| !req.overwrite_schema);
    let resolved = schema::resolve_write_schema(
        existing.map(|s| s.arrow_schema.as_ref()),
        &source_schema,
        &SchemaOptions {
            merge_schema: req.merge_schema,
            overwrite_schema: req.overwrite_schema,
        },
    )?;
    let (schema_json, schema_changed) = match snapshot {
        Some(s) if same_fields(&s.arrow_schema, &resolved) => (s.schema_json.clone(), false),
        _ => (schema::arrow_to_delta_json(&resolved)?, true),
    };
    let schema = schema::delta_json_to_arrow(&schema_json)?;
    if let Some(s) = snapshot
        && schema_changed
        && schema::uses_timestamp_ntz(&schema)
        && !s.writer_features.iter().any(|f| f == "timestampNtz")
    {
        return Err(invalid(
            "the new schema has a timestamp without time zone (timestamp_ntz) column, which needs a table protocol upgrade silt does not perform yet",
        ));
    }

    // Partition columns.
    let partition_columns = match existing {
        Some(s) => {
            if !req.partition_by.is_empty()
                && !eq_ignore_case(&req.partition_by, &s.partition_columns)
            {
                return Err(invalid(format!(
                    "table is partitioned by [{}]; --partition-by [{}] does not match",
                    s.partition_columns.join(", "),
                    req.partition_by.join(", ")
                )));
            }
            s.partition_columns.clone()
        }
        None => resolve_partition_columns(&req.partition_by, &schema)?,
    };
    if req.dynamic_partition_overwrite && partition_columns.is_empty() {
        return Err(invalid(
            "--dynamic-partition-overwrite needs a partitioned table",
        ));
    }

    // Predicate (replaceWhere): must compile against the table schema.
    let predicate = match &req.replace_where {
        Some(sql) => Some(Predicate::compile(sql, &schema)?),
        None => None,
    };

    // Table configuration → stats and file size.
    let configuration: HashMap<String, String> = match snapshot {
        Some(s) => s.configuration.clone(),
        None => req
            .properties
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    };
    let stats = stats_spec(&configuration)?;
    let target_file_size_bytes = match req.target_file_size_bytes {
        Some(v) => v,
        None => match configuration.get("delta.targetFileSize") {
            Some(v) => v.parse().map_err(|_| {
                invalid(format!(
                    "table property delta.targetFileSize = `{v}` is not a number of bytes"
                ))
            })?,
            None => DEFAULT_TARGET_FILE_SIZE,
        },
    };
    let writer = WriterSpec {
        table_uri: table_url.to_string(),
        table_schema_json: schema_json.clone(),
        partition_columns: partition_columns.clone(),
        target_file_size_bytes,
        stats,
        file_prefix: format!("part-{job_id}"),
    };

    // Existing files this write replaces.
    let mut removes = Vec::new();
    let mut rewrites = Vec::new();
    if let Some(s) = snapshot
        && req.mode == WriteMode::Overwrite
        && !req.dynamic_partition_overwrite
    {
        match &predicate {
            None => removes = s.files.clone(),
            Some(p) if p.only_references(&partition_columns) => {
                let hits = partition_matches(p, &schema, &partition_columns, &s.files)?;
                for (f, hit) in s.files.iter().zip(hits) {
                    if hit {
                        removes.push(f.clone());
                    }
                }
            }
            Some(_) => {
                if s.files.iter().any(|f| f.has_deletion_vector) {
                    return Err(JobError::Common(silt_common::Error::Unsupported(
                        "--replace-where on data columns over files with deletion vectors is not supported yet".into(),
                    )));
                }
                rewrites = s.files.clone();
            }
        }
    }

    let task_groups = group_splits(splits, per_task_bytes);
    let num_reducers = (slots as u32 * 2).clamp(1, MAX_REDUCERS);
    info!(
        job = job_id,
        tasks = task_groups.len(),
        per_task_bytes,
        partitioned = !partition_columns.is_empty(),
        removes = removes.len(),
        rewrites = rewrites.len(),
        "write planned"
    );
    Ok(WritePlan {
        schema,
        schema_json,
        schema_changed,
        partition_columns,
        writer,
        source_schema_json: schema::arrow_to_delta_json(&source_schema)?,
        check_predicate: req.replace_where.clone(),
        task_groups,
        per_task_bytes,
        num_reducers,
        removes,
        rewrites,
        configuration,
    })
}

fn task_bytes(total: u64, slots: u64) -> u64 {
    (total / (slots * 2)).clamp(MIN_TASK_BYTES, MAX_TASK_BYTES)
}

fn group_splits(splits: Vec<SourceSplit>, per_task: u64) -> Vec<Vec<SourceSplit>> {
    let mut groups: Vec<Vec<SourceSplit>> = Vec::new();
    let mut acc = 0u64;
    for s in splits {
        if groups.is_empty() || acc + s.size_bytes > per_task && acc > 0 {
            groups.push(Vec::new());
            acc = 0;
        }
        acc += s.size_bytes;
        if let Some(g) = groups.last_mut() {
            g.push(s);
        }
    }
    groups
}

fn same_fields(a: &Schema, b: &Schema) -> bool {
    a.fields().len() == b.fields().len()
        && a.fields().iter().zip(b.fields()).all(|(x, y)| {
            x.name() == y.name()
                && x.data_type() == y.data_type()
                && x.is_nullable() == y.is_nullable()
        })
}

fn eq_ignore_case(a: &[String], b: &[String]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.eq_ignore_ascii_case(y))
}

fn resolve_partition_columns(
    requested: &[String],
    schema: &Schema,
) -> Result<Vec<String>, JobError> {
    let mut out = Vec::new();
    for name in requested {
        let field = schema
            .fields()
            .iter()
            .find(|f| f.name().eq_ignore_ascii_case(name))
            .ok_or_else(|| {
                invalid(format!(
                    "unknown partition column `{name}` (columns: {})",
                    schema
                        .fields()
                        .iter()
                        .map(|f| f.name().as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?;
        if field.data_type().is_nested() {
            return Err(invalid(format!(
                "cannot partition by column `{}` of type {}",
                field.name(),
                field.data_type()
            )));
        }
        if out.contains(field.name()) {
            return Err(invalid(format!("partition column `{name}` given twice")));
        }
        out.push(field.name().clone());
    }
    if !out.is_empty() && out.len() == schema.fields().len() {
        return Err(invalid(
            "cannot partition by every column: at least one data column must remain",
        ));
    }
    Ok(out)
}

fn stats_spec(configuration: &HashMap<String, String>) -> Result<StatsSpec, JobError> {
    let mut spec = StatsSpec::default();
    if let Some(v) = configuration.get("delta.dataSkippingNumIndexedCols") {
        spec.num_indexed_cols = v.trim().parse().map_err(|_| {
            invalid(format!(
                "delta.dataSkippingNumIndexedCols = `{v}` is not an integer"
            ))
        })?;
    }
    if let Some(v) = configuration.get("delta.dataSkippingStatsColumns") {
        spec.stats_columns = Some(
            v.split(',')
                .map(|c| c.trim().trim_matches('`').to_string())
                .filter(|c| !c.is_empty())
                .collect(),
        );
    }
    Ok(spec)
}

/// Evaluates a partition-only predicate on each file's partition values.
fn partition_matches(
    predicate: &Predicate,
    schema: &SchemaRef,
    partition_columns: &[String],
    files: &[ActiveFile],
) -> Result<Vec<bool>, JobError> {
    if files.is_empty() {
        return Ok(Vec::new());
    }
    let mut columns: Vec<ArrayRef> = Vec::new();
    let mut fields = Vec::new();
    for field in schema.fields() {
        let pc = partition_columns
            .iter()
            .find(|c| c.eq_ignore_ascii_case(field.name()));
        let parts: Vec<ArrayRef> = files
            .iter()
            .map(|f| {
                let v = pc.and_then(|c| f.file.partition_values.get(c).cloned().flatten());
                schema::constant_array(field, v.as_deref(), 1)
            })
            .collect::<Result<_, _>>()?;
        let refs: Vec<&dyn arrow::array::Array> = parts.iter().map(|a| a.as_ref()).collect();
        columns.push(arrow::compute::concat(&refs).map_err(silt_common::Error::from)?);
        fields.push(field.as_ref().clone().with_nullable(true));
    }
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
        .map_err(silt_common::Error::from)?;
    let mask = predicate.evaluate(&batch)?;
    Ok((0..mask.len())
        .map(|i| mask.is_valid(i) && mask.value(i))
        .collect())
}

pub(crate) fn shuffle_dir(table_url: &Url, job_id: &str) -> Url {
    silt_common::storage::join_url(table_url, &format!("_silt_shuffle/{job_id}/"))
        .unwrap_or_else(|_| table_url.clone())
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

#[allow(clippy::too_many_arguments)]
async fn execute_and_commit(
    ctx: &JobContext,
    job_id: &str,
    req: &WriteRequest,
    table_url: &Url,
    snapshot: Option<TableSnapshot>,
    plan: WritePlan,
    status: &watch::Sender<JobStatus>,
    started: Instant,
) -> Result<(JobOutcome, HashSet<String>, bool), JobError> {
    let scope = StageScope {
        ctx,
        job_id,
        epoch: ctx.fence.epoch(),
        version: snapshot.as_ref().map_or(-1, |s| s.version),
        status,
    };
    let (written, rewritten) = tokio::try_join!(
        run_data_stages(&scope, table_url, &plan),
        run_rewrite_stage(&scope, &plan)
    )?;
    let stage_ids = [0u32, 1, 2];
    let any_retry = stage_ids.iter().any(|s| {
        ctx.scheduler
            .dispatched_attempts(job_id, *s)
            .iter()
            .any(|a| a.attempt > 0)
    });
    for s in stage_ids {
        ctx.scheduler.finish_stage(job_id, s);
    }

    status.send_modify(|s| {
        s.state = JobState::Committing;
        s.message = "committing".into();
    });
    let assembled = assemble_commit(
        table_url,
        job_id,
        req,
        &plan,
        snapshot.as_ref(),
        &written,
        &rewritten,
        scope.epoch,
        started,
    )?;
    let log_store = match &snapshot {
        Some(s) => s.table.log_store(),
        None => silt_common::table::table_builder(table_url)?
            .build()
            .map_err(silt_common::Error::from)?
            .log_store(),
    };
    let read_version = snapshot.as_ref().map_or(-1, |s| s.version);
    let Assembled {
        request,
        metrics,
        files_added,
        rows_added,
        bytes_added,
        files_removed,
        kept,
    } = assembled;
    let committed = commit::commit(log_store, read_version, request, ctx.fence.as_ref()).await?;
    info!(
        job = job_id,
        version = committed,
        files = files_added,
        rows = rows_added,
        "committed"
    );
    let summary = format!(
        "committed version {committed}: {files_added} file(s), {rows_added} row(s), {bytes_added} bytes added; {files_removed} file(s) removed"
    );
    Ok((
        JobOutcome {
            version: Some(committed),
            error: String::new(),
            metrics,
            summary,
        },
        kept,
        any_retry,
    ))
}

/// The stage(s) producing new data: one write stage, or an exchange (map, reduce) for
/// partitioned tables.
async fn run_data_stages(
    scope: &StageScope<'_>,
    table_url: &Url,
    plan: &WritePlan,
) -> Result<Vec<TaskOutput>, JobError> {
    if plan.partition_columns.is_empty() {
        let tasks = plan
            .task_groups
            .iter()
            .map(|splits| TaskKind::Write {
                splits: splits.clone(),
                source_schema_json: plan.source_schema_json.clone(),
                check_predicate: plan.check_predicate.clone(),
                writer: plan.writer.clone(),
            })
            .collect();
        return run_stage(scope, 0, "write", tasks).await;
    }
    let shuffle = shuffle_dir(table_url, scope.job_id).to_string();
    let maps = plan
        .task_groups
        .iter()
        .map(|splits| TaskKind::ShuffleMap {
            splits: splits.clone(),
            source_schema_json: plan.source_schema_json.clone(),
            check_predicate: plan.check_predicate.clone(),
            writer: plan.writer.clone(),
            num_reducers: plan.num_reducers,
            shuffle_uri: shuffle.clone(),
        })
        .collect();
    let map_out = run_stage(scope, 0, "exchange-map", maps).await?;
    let map_outputs: Vec<String> = map_out
        .iter()
        .filter_map(|o| o.shuffle_output.clone())
        .collect();
    let reduces = (0..plan.num_reducers)
        .map(|r| TaskKind::ShuffleReduce {
            map_outputs: map_outputs.clone(),
            reducer: r,
            writer: plan.writer.clone(),
        })
        .collect();
    let mut out = run_stage(scope, 1, "exchange-reduce", reduces).await?;
    // Map outputs carry read metrics; keep them for the job metrics.
    out.extend(map_out.into_iter().map(|mut o| {
        o.adds.clear();
        o.metrics.rows_written = 0;
        o.metrics.bytes_written = 0;
        o.metrics.files_written = 0;
        o
    }));
    Ok(out)
}

/// replaceWhere on data columns: rewrite the files holding matching rows, keeping the others.
async fn run_rewrite_stage(
    scope: &StageScope<'_>,
    plan: &WritePlan,
) -> Result<Vec<TaskOutput>, JobError> {
    if plan.rewrites.is_empty() {
        return Ok(Vec::new());
    }
    let predicate = plan.check_predicate.clone().unwrap_or_default();
    let mut groups: Vec<Vec<DataFile>> = vec![Vec::new()];
    let mut acc = 0u64;
    for f in &plan.rewrites {
        let size = f.file.size_bytes.max(0) as u64;
        if acc > 0 && acc + size > plan.per_task_bytes {
            groups.push(Vec::new());
            acc = 0;
        }
        acc += size;
        if let Some(g) = groups.last_mut() {
            g.push(f.file.clone());
        }
    }
    let tasks = groups
        .into_iter()
        .map(|files| TaskKind::Rewrite {
            files,
            predicate: predicate.clone(),
            writer: plan.writer.clone(),
        })
        .collect();
    run_stage(scope, 2, "rewrite", tasks).await
}

/// A commit ready to be attempted, and what to report about it.
struct Assembled {
    request: CommitRequest,
    metrics: BTreeMap<String, String>,
    files_added: usize,
    rows_added: i64,
    bytes_added: i64,
    files_removed: usize,
    /// File names of the adds (kept when superseded attempts' files are cleaned up).
    kept: HashSet<String>,
}

/// Builds the job's one commit from the task outputs: adds, removes, metadata/protocol when
/// needed, `txn`, and `commitInfo` metrics named as Delta Spark names them.
#[allow(clippy::too_many_arguments)]
fn assemble_commit(
    table_url: &Url,
    job_id: &str,
    req: &WriteRequest,
    plan: &WritePlan,
    snapshot: Option<&TableSnapshot>,
    written: &[TaskOutput],
    rewritten: &[TaskOutput],
    epoch: u64,
    started: Instant,
) -> Result<Assembled, JobError> {
    let adds: Vec<&DataFile> = written
        .iter()
        .chain(rewritten)
        .flat_map(|o| &o.adds)
        .collect();
    let rewritten_removes: HashSet<&str> = rewritten
        .iter()
        .flat_map(|o| &o.removes)
        .map(|f| f.path.as_str())
        .collect();
    let mut removes: Vec<ActiveFile> = plan.removes.clone();
    let mut read_set = match req.mode {
        WriteMode::Overwrite if snapshot.is_some() => ReadSet::WholeTable,
        _ => ReadSet::Nothing,
    };
    if req.dynamic_partition_overwrite
        && let Some(s) = snapshot
    {
        let touched: BTreeSet<Vec<(String, Option<String>)>> = adds
            .iter()
            .map(|a| a.partition_values.clone().into_iter().collect())
            .collect();
        removes = s
            .files
            .iter()
            .filter(|f| {
                let key: Vec<(String, Option<String>)> = plan
                    .partition_columns
                    .iter()
                    .map(|c| (c.clone(), f.file.partition_values.get(c).cloned().flatten()))
                    .collect();
                touched.contains(&key)
            })
            .cloned()
            .collect();
        read_set = ReadSet::Partitions(
            touched
                .into_iter()
                .map(|k| k.into_iter().collect())
                .collect(),
        );
    }
    if let Some(s) = snapshot {
        removes.extend(
            s.files
                .iter()
                .filter(|f| rewritten_removes.contains(f.file.path.as_str()))
                .cloned(),
        );
    }

    let now_ms = chrono::Utc::now().timestamp_millis();
    let mut actions: Vec<LogAction> = Vec::new();
    let struct_type: StructType = serde_json::from_str(&plan.schema_json)
        .map_err(|e| invalid(format!("internal: bad schema json: {e}")))?;
    let mut changes_metadata = false;
    match snapshot {
        None => {
            actions.push(LogAction::new(Action::Protocol(new_protocol(
                &plan.schema,
            )?)));
            actions.push(LogAction::new(Action::Metadata(
                deltalake_core::kernel::new_metadata(
                    &struct_type,
                    plan.partition_columns.clone(),
                    plan.configuration.clone(),
                )
                .map_err(|e| invalid(format!("cannot build table metadata: {e}")))?,
            )));
        }
        Some(s) if plan.schema_changed || req.overwrite_schema => {
            changes_metadata = true;
            let old = s.state().map_err(JobError::Common)?.metadata().clone();
            let md = if req.overwrite_schema {
                deltalake_core::kernel::new_metadata(
                    &struct_type,
                    plan.partition_columns.clone(),
                    plan.configuration.clone(),
                )
                .and_then(|m| m.with_table_id(old.id().to_string()))
                .map_err(|e| invalid(format!("cannot build table metadata: {e}")))?
            } else {
                old.with_schema(&struct_type)
                    .map_err(|e| invalid(format!("cannot update table schema: {e}")))?
            };
            actions.push(LogAction::new(Action::Metadata(md)));
        }
        Some(_) => {}
    }
    for a in &adds {
        let add = Add {
            path: decode(&a.path),
            partition_values: a.partition_values.clone().into_iter().collect(),
            size: a.size_bytes,
            modification_time: a.modification_time_ms,
            data_change: true,
            stats: a.stats_json.clone(),
            tags: None,
            deletion_vector: None,
            base_row_id: None,
            default_row_commit_version: None,
            clustering_provider: None,
        };
        actions.push(LogAction::with_raw_path(Action::Add(add), a.path.clone()));
    }
    for r in &removes {
        let mut rm = r.remove.clone();
        rm.deletion_timestamp = Some(now_ms);
        // The raw path exactly as the file's `add` has it, so every reader pairs them.
        actions.push(LogAction::with_raw_path(
            Action::Remove(rm),
            r.file.path.clone(),
        ));
    }
    if let (Some(app), Some(v)) = (&req.txn_app_id, req.txn_version) {
        actions.push(LogAction::new(Action::Txn(
            Transaction::new_with_last_update(app, v, Some(now_ms)),
        )));
    }

    // Metrics, named as Delta Spark names them.
    let rows_added: i64 = adds.iter().map(|a| a.num_records.max(0)).sum();
    let bytes_added: i64 = adds.iter().map(|a| a.size_bytes).sum();
    let mut metrics = BTreeMap::new();
    metrics.insert("numFiles".to_string(), adds.len().to_string());
    metrics.insert("numOutputRows".to_string(), rows_added.to_string());
    metrics.insert("numOutputBytes".to_string(), bytes_added.to_string());
    metrics.insert("numAddedFiles".to_string(), adds.len().to_string());
    metrics.insert("numRemovedFiles".to_string(), removes.len().to_string());
    metrics.insert(
        "numRemovedBytes".to_string(),
        removes
            .iter()
            .map(|r| r.file.size_bytes)
            .sum::<i64>()
            .to_string(),
    );
    if req.replace_where.is_some() {
        let copied: u64 = rewritten.iter().map(|o| o.metrics.rows_copied).sum();
        let removed_rows: i64 = removes.iter().map(|r| r.file.num_records.max(0)).sum();
        metrics.insert("numCopiedRows".to_string(), copied.to_string());
        metrics.insert(
            "numDeletedRows".to_string(),
            (removed_rows - copied as i64).max(0).to_string(),
        );
    }
    metrics.insert(
        "executionTimeMs".to_string(),
        started.elapsed().as_millis().to_string(),
    );
    let mut commit_info: serde_json::Map<String, Value> = serde_json::Map::new();
    commit_info.insert(
        "operationMetrics".to_string(),
        Value::Object(
            metrics
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect(),
        ),
    );
    commit_info.insert(
        "engineInfo".to_string(),
        Value::String(format!("silt/{}", env!("CARGO_PKG_VERSION"))),
    );
    commit_info.insert("siltJobId".to_string(), Value::String(job_id.to_string()));
    let operation = DeltaOperation::Write {
        mode: match req.mode {
            WriteMode::Append => SaveMode::Append,
            WriteMode::Overwrite => SaveMode::Overwrite,
            WriteMode::ErrorIfExists => SaveMode::ErrorIfExists,
            WriteMode::Ignore => SaveMode::Ignore,
        },
        partition_by: (!plan.partition_columns.is_empty()).then(|| plan.partition_columns.clone()),
        predicate: req.replace_where.clone(),
    };
    let kept: HashSet<String> = adds
        .iter()
        .filter_map(|a| decode(&a.path).rsplit('/').next().map(str::to_string))
        .collect();
    Ok(Assembled {
        request: CommitRequest {
            table_url: table_url.clone(),
            actions,
            operation,
            commit_info,
            read_set,
            removed_paths: removes.iter().map(|r| r.file.path.clone()).collect(),
            txn_app_id: req.txn_app_id.clone(),
            changes_metadata,
            append_only: table_property_true(&plan.configuration, "delta.appendOnly"),
            checkpoint_interval: checkpoint_interval(&plan.configuration)?,
            epoch,
        },
        metrics,
        files_added: adds.len(),
        rows_added,
        bytes_added,
        files_removed: removes.len(),
        kept,
    })
}

fn table_property_true(configuration: &HashMap<String, String>, key: &str) -> bool {
    configuration
        .get(key)
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

fn checkpoint_interval(configuration: &HashMap<String, String>) -> Result<i64, JobError> {
    match configuration.get("delta.checkpointInterval") {
        None => Ok(commit::DEFAULT_CHECKPOINT_INTERVAL),
        Some(v) => v
            .trim()
            .parse::<i64>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| {
                invalid(format!(
                    "table property delta.checkpointInterval = `{v}` is not a positive integer"
                ))
            }),
    }
}

fn decode(p: &str) -> String {
    percent_encoding::percent_decode_str(p)
        .decode_utf8_lossy()
        .into_owned()
}

fn new_protocol(schema: &Schema) -> Result<deltalake_core::kernel::Protocol, JobError> {
    let json = if schema::uses_timestamp_ntz(schema) {
        serde_json::json!({
            "minReaderVersion": 3,
            "minWriterVersion": 7,
            "readerFeatures": ["timestampNtz"],
            "writerFeatures": ["timestampNtz"],
        })
    } else {
        serde_json::json!({"minReaderVersion": 1, "minWriterVersion": 2})
    };
    serde_json::from_value(json).map_err(|e| invalid(format!("internal: protocol: {e}")))
}

async fn run_stage(
    scope: &StageScope<'_>,
    stage: u32,
    name: &str,
    tasks: Vec<TaskKind>,
) -> Result<Vec<TaskOutput>, JobError> {
    let StageScope {
        ctx,
        job_id,
        epoch,
        version,
        status,
    } = *scope;
    let n = tasks.len() as u32;
    status.send_modify(|s| {
        s.state = JobState::Running;
        s.stage = name.to_string();
        s.tasks_total = n;
        s.tasks_succeeded = 0;
        s.message = format!("stage {name}: {n} task(s)");
    });
    let fut = ctx
        .scheduler
        .run_stage(job_id, stage, epoch, version, tasks);
    tokio::pin!(fut);
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            r = &mut fut => {
                let p = ctx.scheduler.progress(job_id, stage);
                status.send_modify(|s| {
                    s.tasks_succeeded = p.succeeded;
                    s.tasks_running = 0;
                    s.task_retries = s.task_retries.max(p.retries);
                });
                if let Err(e) = &r {
                    warn!(job = job_id, stage = name, "stage failed: {e}");
                }
                return r.map_err(JobError::from);
            }
            _ = tick.tick() => {
                let p = ctx.scheduler.progress(job_id, stage);
                status.send_if_modified(|s| {
                    let changed = s.tasks_succeeded != p.succeeded || s.tasks_running != p.running || s.task_retries != p.retries;
                    if s.stage == name {
                        s.tasks_succeeded = p.succeeded;
                        s.tasks_running = p.running;
                        s.task_retries = p.retries;
                    }
                    changed
                });
            }
        }
    }
}
