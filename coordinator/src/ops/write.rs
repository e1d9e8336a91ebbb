//! WRITE: append, overwrite, `replaceWhere`, dynamic partition overwrite, schema
//! enforcement/merge/overwrite, idempotent `txn` writes.
//!
//! Stages: one `write` stage (source → conform → data files), also for partitioned tables
//! whose partitions are few relative to the data per task; otherwise an exchange
//! (`exchange-map`: source → conform → exchange keyed by the partition columns; then
//! `exchange-reduce`: exchange → data files), as [`crate::plan::partitioning`] chooses from a
//! sample of the source's partition columns. A `replaceWhere` on data columns adds a
//! `rewrite` stage beside them (files holding matching rows are rewritten without those
//! rows).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::Duration;

use arrow::datatypes::{Schema, SchemaRef};
use deltalake_core::kernel::{MetadataExt, StructType};
use deltalake_core::protocol::{DeltaOperation, SaveMode};
use serde_json::{Map, Value};
use silt_common::expr::Predicate;
use silt_common::request::{ExchangeMode, WriteMode, WriteRequest};
use silt_common::schema::{self, SchemaOptions};
use silt_common::source;
use silt_common::storage::parse_location;
use silt_common::table::identity::{self, IdentityColumn};
use silt_common::table::row_tracking;
use silt_common::table::{
    ActiveFile, TableProperties, TableSnapshot, TimeTravel, column_mapping, load_table,
};
use silt_common::task::{
    Assignment, ChangeRows, FileSpec, Input, Keep, MapOutputRef, Route, Sink, SourceFormat,
    SourceSplit, TableSpec, Task, TaskOutput, Transform,
};
use tracing::info;
use url::Url;

use super::{executor_slots, quote_ident};
use crate::JobContext;
use crate::commit::ReadRegion;
use crate::driver::{
    CommitTarget, JobError, Operation, Outcome, PlanContext, StagePlan, StageResult, invalid,
};
use crate::plan::partitioning::{self, PartitionChoice, PartitionEstimate};
use crate::plan::{binpack, identity as identity_plan, rewrite};
use crate::txn::Txn;

/// Default target size of written data files.
pub const DEFAULT_TARGET_FILE_SIZE: u64 = 128 << 20;
/// Rows of the source's partition columns read per sampled split.
const SAMPLE_ROWS_PER_SPLIT: usize = 16 * 1024;
/// Splits sampled (spread evenly over the source).
const SAMPLE_SPLITS: usize = 8;

/// The source as listed and inferred (the IO part of planning).
pub struct SourceInfo {
    pub schema: Schema,
    pub splits: Vec<SourceSplit>,
    pub per_task_bytes: u64,
    /// Partitioned tables: how many partitions the rows fall into, as far as known.
    pub partitions: Option<PartitionEstimate>,
}

/// Loads what a write plans on (table snapshot, source listing) and plans it.
pub async fn prepare(
    ctx: &JobContext,
    plan_ctx: PlanContext,
    req: WriteRequest,
) -> Result<Box<dyn Operation>, JobError> {
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
        if let Some(summary) = skip_reason(&req, snap).await? {
            return Ok(Box::new(WriteOp {
                table_url,
                read_version: snap.version,
                state: WriteState::Skipped(summary),
            }));
        }
        snap.check_writable()?;
        if !req.properties.is_empty() {
            return Err(invalid(
                "table properties (--property) can only be set when the table is created",
            ));
        }
    }
    let slots = executor_slots(ctx).await?;
    let plan_ctx = PlanContext { slots, ..plan_ctx };
    let mut source = list_source(&req, slots).await?;
    let partition_columns = match &snapshot {
        Some(s) => s.partition_columns.clone(),
        None => req.partition_by.clone(),
    };
    if !partition_columns.is_empty() && req.exchange == ExchangeMode::Auto {
        source.partitions = match sample_partitions(&source, &partition_columns).await {
            Ok(Some(e)) => Some(e),
            Ok(None) => snapshot.as_ref().and_then(table_partitions),
            Err(e) => {
                // A sample is only a hint; the tasks will report the source's problem.
                info!("partition sample failed: {e}");
                None
            }
        };
    }
    let plan = plan(&req, &table_url, snapshot.as_ref(), source, &plan_ctx)?;
    Ok(Box::new(WriteOp {
        table_url,
        read_version: snapshot.as_ref().map_or(-1, |s| s.version),
        state: WriteState::Planned(Box::new(Planned {
            req,
            snapshot,
            plan,
            ctx: plan_ctx,
            written: Vec::new(),
            rewritten: Vec::new(),
            identity_values: Vec::new(),
        })),
    }))
}

/// When a write to an existing table does nothing: `ignore` mode, or an idempotent write
/// already applied. `error` mode fails.
async fn skip_reason(req: &WriteRequest, snap: &TableSnapshot) -> Result<Option<String>, JobError> {
    match req.mode {
        WriteMode::ErrorIfExists => {
            return Err(invalid(format!(
                "table already exists at {} (version {}); mode `error` refuses to write",
                req.table_uri, snap.version
            )));
        }
        WriteMode::Ignore => {
            return Ok(Some(format!(
                "table already exists (version {}); mode `ignore`: nothing written",
                snap.version
            )));
        }
        _ => {}
    }
    if let (Some(app), Some(v)) = (&req.txn_app_id, req.txn_version)
        && let Some(done) = snap.txn_version(app).await?
        && done >= v
    {
        return Ok(Some(format!(
            "idempotent write skipped: txn app id `{app}` is already at version {done} (>= {v}); nothing committed"
        )));
    }
    Ok(None)
}

/// Lists the source, infers its schema and splits it into units of work.
async fn list_source(req: &WriteRequest, slots: u32) -> Result<SourceInfo, JobError> {
    list_source_at(req.format, &req.source_uri, &req.source_version, slots).await
}

/// Lists a source given by format, location and (Delta sources) version.
pub async fn list_source_at(
    format: SourceFormat,
    uri: &str,
    version: &TimeTravel,
    slots: u32,
) -> Result<SourceInfo, JobError> {
    let src_url = parse_location(uri)?;
    Ok(match format {
        SourceFormat::Delta => {
            let (schema, splits) = source::delta_source(&src_url, version).await?;
            let total: u64 = splits.iter().map(|s| s.size_bytes).sum();
            SourceInfo {
                schema,
                splits,
                per_task_bytes: binpack::task_bytes(total, slots),
                partitions: None,
            }
        }
        format => {
            let files = source::list_source_files(&src_url, format).await?;
            let schema = source::infer_schema(&files, format).await?;
            let total: u64 = files.iter().map(|f| f.size_bytes).sum();
            let per_task = binpack::task_bytes(total, slots);
            let splits = if format == SourceFormat::Parquet {
                source::plan_parquet_splits(&files, per_task).await?
            } else {
                source::whole_file_splits(&files, format)
            };
            SourceInfo {
                schema,
                splits,
                per_task_bytes: per_task,
                partitions: None,
            }
        }
    })
}

/// Distinct partition values among a sample of the source's rows: the partition columns of
/// the first rows of up to [`SAMPLE_SPLITS`] splits spread over the source. `None` when the
/// source does not have every partition column (static partitions, generated values).
async fn sample_partitions(
    source: &SourceInfo,
    partition_columns: &[String],
) -> silt_common::Result<Option<PartitionEstimate>> {
    let mut fields = Vec::new();
    for c in partition_columns {
        let Some(f) = source
            .schema
            .fields()
            .iter()
            .find(|f| f.name().eq_ignore_ascii_case(c))
        else {
            return Ok(None);
        };
        fields.push(f.as_ref().clone().with_nullable(true));
    }
    let projected: SchemaRef = std::sync::Arc::new(Schema::new(fields));
    let n = source.splits.len();
    if n == 0 {
        return Ok(None);
    }
    let step = n.div_ceil(SAMPLE_SPLITS);
    let converter = arrow::row::RowConverter::new(
        projected
            .fields()
            .iter()
            .map(|f| arrow::row::SortField::new(f.data_type().clone()))
            .collect(),
    )?;
    let mut seen: HashSet<Vec<u8>> = Default::default();
    let mut per_split: Vec<usize> = Vec::new();
    let mut rows = 0u64;
    for split in source.splits.iter().step_by(step.max(1)) {
        let mut stream =
            source::read_split(split, projected.clone(), SAMPLE_ROWS_PER_SPLIT).await?;
        if let Some(batch) = futures::StreamExt::next(&mut stream).await {
            let batch = batch?;
            rows += batch.num_rows() as u64;
            let keys = converter.convert_columns(batch.columns())?;
            let local: HashSet<Vec<u8>> = keys.iter().map(|r| r.as_ref().to_vec()).collect();
            per_split.push(local.len());
            seen.extend(local);
        }
    }
    let distinct = seen.len() as u64;
    let coverage = if distinct == 0 || per_split.is_empty() {
        1.0
    } else {
        per_split.iter().sum::<usize>() as f64 / per_split.len() as f64 / distinct as f64
    };
    Ok(Some(PartitionEstimate {
        distinct,
        rows,
        basis: format!("a {rows}-row sample of {} split(s)", per_split.len()),
        coverage,
    }))
}

/// The table's partitions, as an estimate for new rows when the source gave none.
fn table_partitions(snapshot: &TableSnapshot) -> Option<PartitionEstimate> {
    let distinct: HashSet<&BTreeMap<String, Option<String>>> = snapshot
        .files
        .iter()
        .map(|f| &f.file.partition_values)
        .collect();
    (!distinct.is_empty()).then(|| PartitionEstimate {
        distinct: distinct.len() as u64,
        rows: 0,
        basis: "the table's partitions".into(),
        coverage: 1.0,
    })
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
    if !req.static_partitions.is_empty() && req.dynamic_partition_overwrite {
        return Err(invalid(
            "static partition values cannot be combined with a dynamic partition overwrite",
        ));
    }
    if req.source_version != silt_common::table::TimeTravel::Latest
        && req.format != SourceFormat::Delta
    {
        return Err(invalid(
            "a source version can only be read from a Delta source",
        ));
    }
    Ok(())
}

/// What the planner decided.
struct WritePlan {
    schema: SchemaRef,
    schema_json: String,
    schema_changed: bool,
    partition_columns: Vec<String>,
    properties: TableProperties,
    configuration: HashMap<String, String>,
    data_tasks: Vec<Task>,
    /// Partitioned tables: whether (and with how many reducers) rows go through an
    /// exchange; reduce tasks then follow the map tasks in `data_tasks`.
    partitioning: Option<PartitionChoice>,
    files_out: FileSpec,
    replace_where: Option<Predicate>,
    /// Files removed without reading (overwrite, replaceWhere matching whole files).
    removes: Vec<ActiveFile>,
    /// Files read to remove the rows matching replaceWhere.
    rewrites: Vec<Task>,
    rewrite_candidates: Vec<String>,
    /// Identity columns the new rows get generated values for.
    identity: Vec<IdentityColumn>,
}

/// Plans a write: pure, from the request, the snapshot and the listed source.
fn plan(
    req: &WriteRequest,
    table_url: &Url,
    snapshot: Option<&TableSnapshot>,
    source: SourceInfo,
    ctx: &PlanContext,
) -> Result<WritePlan, JobError> {
    // Schema: enforcement, merge or overwrite.
    let existing = snapshot.filter(|_| !req.overwrite_schema);
    let resolved = schema::resolve_write_schema(
        existing.map(|s| s.arrow_schema.as_ref()),
        &source.schema,
        &SchemaOptions {
            merge_schema: req.merge_schema,
            overwrite_schema: req.overwrite_schema,
        },
    )?;
    // Column mapping: new columns (all of a new mapped table's) get physical names and ids
    // above the table's `delta.columnMapping.maxColumnId`.
    let mut max_column_id = None;
    let (schema_json, schema_changed) = match snapshot {
        Some(s) if same_fields(&s.arrow_schema, &resolved) => (s.schema_json.clone(), false),
        Some(s) if s.column_mapping().is_some() => {
            let max = s
                .configuration
                .get(column_mapping::MAX_COLUMN_ID)
                .and_then(|v| v.parse::<i64>().ok())
                .unwrap_or(0);
            let (assigned, max) = column_mapping::assign(
                &column_mapping::carry_over(&s.arrow_schema, &resolved),
                max,
                false,
            );
            max_column_id = Some(max);
            (schema::arrow_to_delta_json(&assigned)?, true)
        }
        // A column-mapped source's physical names are not the new table's.
        _ => {
            let resolved = schema::without_column_mapping(&resolved);
            let resolved = match (snapshot, column_mapping::mode(&req.properties)) {
                (None, Some(_)) => {
                    let (assigned, max) = column_mapping::assign(&resolved, 0, false);
                    max_column_id = Some(max);
                    assigned
                }
                _ => resolved,
            };
            (schema::arrow_to_delta_json(&resolved)?, true)
        }
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
    let replace_where = match &req.replace_where {
        Some(sql) => Some(Predicate::compile(sql, &schema)?),
        None => None,
    };

    // Table configuration → stats and file size.
    let mut configuration: HashMap<String, String> = match snapshot {
        Some(s) => s.configuration.clone(),
        None => req
            .properties
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    };
    if let Some(max) = max_column_id {
        configuration.insert(column_mapping::MAX_COLUMN_ID.to_string(), max.to_string());
    }
    let mut properties = TableProperties::parse(&configuration)?;
    if let Some(s) = snapshot {
        // As the snapshot has them: covering a clustered table's clustering columns.
        properties.stats = s.properties.stats.clone();
    }
    if snapshot.is_none() && properties.row_tracking {
        // A new table tracking rows: the columns materialized row ids would go in are named
        // (silt writes none, but the protocol asks for the names when row tracking is on).
        for (key, prefix) in [
            (row_tracking::MATERIALIZED_ROW_ID, "_row-id-col-"),
            (
                row_tracking::MATERIALIZED_ROW_COMMIT_VERSION,
                "_row-commit-version-col-",
            ),
        ] {
            configuration
                .entry(key.to_string())
                .or_insert_with(|| format!("{prefix}{}", uuid::Uuid::new_v4()));
        }
    }
    if snapshot.is_none() && !properties.constraints.is_empty() {
        return Err(invalid(
            "delta.constraints.* cannot be set as a property of a new table: CHECK constraints are added by ALTER TABLE … ADD CONSTRAINT (Delta Spark, delta-rs), which silt does not do yet; nothing was written",
        ));
    }
    let mut files_out = FileSpec {
        target_file_size_bytes: req
            .target_file_size_bytes
            .or(properties.target_file_size_bytes)
            .unwrap_or(DEFAULT_TARGET_FILE_SIZE),
        stats: properties.stats.clone(),
        file_prefix: ctx.file_prefix(),
        sort_by: None,
        checks: snapshot.map(|s| s.checks()).unwrap_or_default(),
        iso_timestamp_partitions: snapshot
            .map(|s| s.iso_timestamp_partitions())
            .unwrap_or_default(),
        change_data: false,
    };
    let table = TableSpec {
        uri: table_url.to_string(),
        schema_json: schema_json.clone(),
        partition_columns: partition_columns.clone(),
    };

    // Existing files this write replaces.
    let mut removes = Vec::new();
    let mut rewrites = Vec::new();
    let mut rewrite_candidates = Vec::new();
    if let Some(s) = snapshot
        && req.mode == WriteMode::Overwrite
        && !req.dynamic_partition_overwrite
    {
        let selection = rewrite::select_files(s, replace_where.as_ref())?.recording_changes(s);
        // Rows replaced inside files: the commit records its changes, the new rows too.
        files_out.change_data = s.properties.change_data_feed && !selection.candidates.is_empty();
        removes = selection.whole;
        if let Some(p) = &replace_where {
            rewrite_candidates = selection
                .candidates
                .iter()
                .map(|f| f.file.path.clone())
                .collect();
            rewrites = rewrite::rewrite_tasks(
                &table,
                &selection.candidates,
                Some(p.sql()),
                &rewrite::recording_changes(
                    s,
                    vec![Transform::Filter {
                        predicate: p.sql().to_string(),
                        keep: Keep::NotMatching,
                    }],
                ),
                &files_out,
                ctx.slots,
            );
        }
    }

    // New data: source → conform (→ static partition values) (→ check) → data files or
    // exchange.
    let mut transforms = vec![Transform::Conform];
    if !req.static_partitions.is_empty() {
        transforms.push(Transform::Derive {
            assignments: static_partition_assignments(req, &source.schema, &partition_columns)?,
        });
    }
    // Generated columns the source does not carry are computed (the writer checks the ones
    // it does carry).
    if let Some(s) = snapshot {
        let missing: Vec<Assignment> = s
            .generated_columns()
            .into_iter()
            .filter(|(c, _)| {
                !source
                    .schema
                    .fields()
                    .iter()
                    .any(|f| f.name().eq_ignore_ascii_case(c))
            })
            .map(|(column, expr)| Assignment { column, expr })
            .collect();
        if !missing.is_empty() {
            transforms.push(Transform::Derive {
                assignments: missing,
            });
        }
    }
    if let Some(p) = &req.replace_where {
        transforms.push(Transform::Check {
            predicate: p.clone(),
        });
    }

    let total_bytes: u64 = source.splits.iter().map(|s| s.size_bytes).sum();
    let bins = binpack::consecutive(source.splits, |s| s.size_bytes, source.per_task_bytes);
    let partitioning = (!partition_columns.is_empty()).then(|| {
        partitioning::choose(
            req.exchange,
            bins.len(),
            total_bytes,
            ctx.slots,
            source.partitions.as_ref(),
        )
    });
    let sink = match &partitioning {
        Some(p) if p.exchange => Sink::Exchange {
            route: Route::Hash(partition_columns.iter().map(|c| quote_ident(c)).collect()),
            partitions: p.reducers,
        },
        _ => {
            // Tasks writing the new rows record them as inserted where the commit records
            // its changes (through an exchange: the reducers).
            if files_out.change_data {
                transforms.push(Transform::RecordChanges(ChangeRows::Inserted));
            }
            Sink::DataFiles(files_out.clone())
        }
    };
    let source_schema_json = schema::arrow_to_delta_json(&source.schema)?;
    // Identity columns the source does not carry get generated values.
    let identity = match existing {
        Some(s) => identity_plan::to_generate(s.identity_columns()?, |c| {
            source
                .schema
                .fields()
                .iter()
                .any(|f| f.name().eq_ignore_ascii_case(c))
        })?,
        None => Vec::new(),
    };
    let mut data_tasks: Vec<Task> = bins
        .into_iter()
        .map(|splits| Task {
            table: table.clone(),
            input: Input::Source {
                splits,
                schema_json: source_schema_json.clone(),
            },
            transforms: transforms.clone(),
            sink: sink.clone(),
        })
        .collect();
    identity_plan::generate(&mut data_tasks, &identity)?;
    info!(
        job = %ctx.job_id,
        tasks = data_tasks.len(),
        per_task_bytes = source.per_task_bytes,
        partitioning = partitioning.as_ref().map_or("unpartitioned", |p| p.reason.as_str()),
        removes = removes.len(),
        rewrites = rewrite_candidates.len(),
        "write planned"
    );
    Ok(WritePlan {
        schema,
        schema_json,
        schema_changed,
        partition_columns,
        properties,
        configuration,
        data_tasks,
        partitioning,
        files_out,
        replace_where,
        removes,
        rewrites,
        rewrite_candidates,
        identity,
    })
}

/// A write, driven by [`crate::driver`].
pub struct WriteOp {
    table_url: Url,
    read_version: i64,
    state: WriteState,
}

enum WriteState {
    /// Nothing to do (ignore mode, idempotent write already applied): why.
    Skipped(String),
    Planned(Box<Planned>),
}

struct Planned {
    req: WriteRequest,
    snapshot: Option<TableSnapshot>,
    plan: WritePlan,
    ctx: PlanContext,
    written: Vec<TaskOutput>,
    rewritten: Vec<TaskOutput>,
    /// The last identity values every task generated (map tasks' included).
    identity_values: Vec<BTreeMap<String, i64>>,
}

impl Operation for WriteOp {
    fn table_url(&self) -> &Url {
        &self.table_url
    }

    fn read_version(&self) -> i64 {
        self.read_version
    }

    fn start(&mut self) -> Result<Vec<StagePlan>, JobError> {
        let WriteState::Planned(p) = &self.state else {
            return Ok(Vec::new());
        };
        let plan = &p.plan;
        let data = match &plan.partitioning {
            Some(p) if p.exchange => StagePlan::new("exchange-map", plan.data_tasks.clone())
                .with_note(format!("partitions through an exchange: {}", p.reason)),
            Some(p) => StagePlan::new("write", plan.data_tasks.clone())
                .with_note(format!("partitions written directly: {}", p.reason)),
            None => StagePlan::new("write", plan.data_tasks.clone()),
        };
        let mut stages = vec![data];
        if !plan.rewrites.is_empty() {
            stages.push(StagePlan::new("rewrite", plan.rewrites.clone()));
        }
        Ok(stages)
    }

    fn stage_done(&mut self, result: StageResult) -> Result<Vec<StagePlan>, JobError> {
        let WriteState::Planned(p) = &mut self.state else {
            return Ok(Vec::new());
        };
        p.identity_values.extend(
            result
                .outputs
                .iter()
                .filter(|o| !o.identity_values.is_empty())
                .map(|o| o.identity_values.clone()),
        );
        match result.name.as_str() {
            "exchange-map" => {
                let plan = &p.plan;
                let map_outputs: Vec<MapOutputRef> = result
                    .outputs
                    .iter()
                    .filter_map(|o| o.exchange_output.as_ref().map(|m| m.location.clone()))
                    .collect();
                let table = plan
                    .data_tasks
                    .first()
                    .map(|t| t.table.clone())
                    .ok_or_else(|| invalid("internal: exchange without map tasks"))?;
                let reducers = plan.partitioning.as_ref().map_or(1, |p| p.reducers);
                let reduces = (0..reducers)
                    .map(|r| Task {
                        table: table.clone(),
                        input: Input::Exchange {
                            map_outputs: map_outputs.clone(),
                            partition: r,
                        },
                        transforms: if plan.files_out.change_data {
                            vec![Transform::RecordChanges(ChangeRows::Inserted)]
                        } else {
                            Vec::new()
                        },
                        sink: Sink::DataFiles(plan.files_out.clone()),
                    })
                    .collect();
                Ok(vec![StagePlan::new("exchange-reduce", reduces)])
            }
            "rewrite" => {
                p.rewritten.extend(result.outputs);
                Ok(Vec::new())
            }
            _ => {
                p.written.extend(result.outputs);
                Ok(Vec::new())
            }
        }
    }

    fn finish(self: Box<Self>, elapsed: Duration) -> Result<Outcome, JobError> {
        let planned = match self.state {
            WriteState::Skipped(summary) => {
                return Ok(Outcome::Nothing {
                    summary,
                    metrics: Default::default(),
                });
            }
            WriteState::Planned(p) => p,
        };
        let table_url = self.table_url;
        let Planned {
            req,
            snapshot,
            plan,
            ctx,
            written,
            rewritten,
            identity_values,
        } = *planned;
        let parameters = write_parameters(&req, &plan)?;
        let mut txn = Txn::new(&ctx.job_id, "WRITE", parameters);

        let adds: Vec<_> = written
            .iter()
            .chain(&rewritten)
            .flat_map(|o| &o.adds)
            .collect();
        let rewritten_removes: std::collections::HashSet<&str> = rewritten
            .iter()
            .flat_map(|o| &o.removes)
            .map(|f| f.path.as_str())
            .collect();
        let mut removes: Vec<ActiveFile> = plan.removes.clone();
        let mut region = match (&plan.replace_where, req.mode, &snapshot) {
            (Some(p), _, Some(_)) => ReadRegion::Predicate {
                predicate: p.clone(),
                schema: plan.schema.clone(),
                partition_columns: plan.partition_columns.clone(),
            },
            (None, WriteMode::Overwrite, Some(_)) => ReadRegion::WholeTable,
            _ => ReadRegion::Nothing,
        };
        if req.dynamic_partition_overwrite
            && let Some(s) = &snapshot
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
            region = ReadRegion::Partitions(
                touched
                    .into_iter()
                    .map(|k| k.into_iter().collect())
                    .collect(),
            );
        }
        if let Some(s) = &snapshot {
            removes.extend(
                s.files
                    .iter()
                    .filter(|f| rewritten_removes.contains(f.file.path.as_str()))
                    .cloned(),
            );
        }
        txn.read_region(region);
        txn.read_files(plan.rewrite_candidates.iter().map(String::as_str));

        // Identity values generated: the commit raises the columns' high-water marks.
        let marks = identity::new_high_water_marks(&plan.identity, &identity_values);
        let schema_json = if marks.is_empty() {
            plan.schema_json.clone()
        } else {
            identity::with_high_water_marks(&plan.schema_json, &marks)?
        };
        let struct_type: StructType = serde_json::from_str(&schema_json)
            .map_err(|e| invalid(format!("internal: bad schema json: {e}")))?;
        match &snapshot {
            None => {
                txn.set_protocol(new_protocol(&plan.schema, &plan.configuration)?);
                txn.set_metadata(
                    deltalake_core::kernel::new_metadata(
                        &struct_type,
                        plan.partition_columns.clone(),
                        plan.configuration.clone(),
                    )
                    .map_err(|e| invalid(format!("cannot build table metadata: {e}")))?,
                );
            }
            Some(s) if plan.schema_changed || req.overwrite_schema || !marks.is_empty() => {
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
                    let md = old
                        .with_schema(&struct_type)
                        .map_err(|e| invalid(format!("cannot update table schema: {e}")))?;
                    // Column mapping: the highest id the new columns took.
                    match plan.configuration.get(column_mapping::MAX_COLUMN_ID) {
                        Some(max)
                            if s.configuration.get(column_mapping::MAX_COLUMN_ID) != Some(max) =>
                        {
                            md.add_config_key(
                                column_mapping::MAX_COLUMN_ID.to_string(),
                                max.clone(),
                            )
                            .map_err(|e| invalid(format!("cannot update table schema: {e}")))?
                        }
                        _ => md,
                    }
                };
                txn.set_metadata(md);
            }
            Some(_) => {}
        }
        txn.add_files(adds.iter().copied(), true);
        if plan.files_out.change_data {
            txn.add_change_files(
                "numAddedChangeFiles",
                written.iter().chain(&rewritten).flat_map(|o| &o.cdc_files),
            );
        }
        txn.remove_files(&removes, true);
        if let (Some(app), Some(v)) = (&req.txn_app_id, req.txn_version) {
            txn.set_app_txn(app, v);
        }

        // Metrics, named as Delta Spark names them.
        let rows_added: i64 = adds.iter().map(|a| a.num_records.max(0)).sum();
        let bytes_added: i64 = adds.iter().map(|a| a.size_bytes).sum();
        txn.metric("numFiles", adds.len());
        txn.metric("numOutputRows", rows_added);
        txn.metric("numOutputBytes", bytes_added);
        txn.metric("numAddedFiles", adds.len());
        txn.metric("numRemovedFiles", removes.len());
        txn.metric(
            "numRemovedBytes",
            removes.iter().map(|r| r.file.size_bytes).sum::<i64>(),
        );
        if req.replace_where.is_some() {
            let copied: u64 = rewritten.iter().map(|o| o.metrics.rows_copied).sum();
            let removed_rows: i64 = removes.iter().filter_map(|r| r.file.live_rows()).sum();
            txn.metric("numCopiedRows", copied);
            txn.metric("numDeletedRows", (removed_rows - copied as i64).max(0));
        }
        txn.metric("executionTimeMs", elapsed.as_millis());

        let target = CommitTarget {
            log_store: match &snapshot {
                Some(s) => s.table.log_store(),
                None => silt_common::table::table_builder(&table_url)?
                    .build()
                    .map_err(silt_common::Error::from)?
                    .log_store(),
            },
            read_version: snapshot.as_ref().map_or(-1, |s| s.version),
            properties: plan.properties.clone(),
            // The schema this commit writes (new columns, a new mapped table) names them.
            column_mapping: column_mapping::is_mapped(&plan.schema).then(|| plan.schema.clone()),
            row_id_high_water_mark: match &snapshot {
                Some(s) => s.row_id_high_water_mark,
                None if plan.properties.row_tracking => Some(row_tracking::NO_ROW_IDS),
                None => None,
            },
        };
        let mut summary = format!(
            "{} file(s), {rows_added} row(s), {bytes_added} bytes added; {} file(s) removed",
            adds.len(),
            removes.len()
        );
        if let Some(p) = &plan.partitioning {
            let how = if p.exchange {
                format!("through an exchange to {} reducer(s)", p.reducers)
            } else {
                "directly".to_string()
            };
            summary.push_str(&format!("; partitions written {how} ({})", p.reason));
        }
        Ok(Outcome::commit(txn, target, summary))
    }
}

/// `INSERT … PARTITION (p = v)`: every new row gets `p = v`; `p` must be a partition column
/// the source does not have.
fn static_partition_assignments(
    req: &WriteRequest,
    source_schema: &Schema,
    partition_columns: &[String],
) -> Result<Vec<silt_common::task::Assignment>, JobError> {
    req.static_partitions
        .iter()
        .map(|(column, literal)| {
            let Some(pc) = partition_columns
                .iter()
                .find(|p| p.eq_ignore_ascii_case(column))
            else {
                return Err(invalid(format!(
                    "PARTITION ({column} = {literal}): `{column}` is not a partition column of the table (partition columns: [{}])",
                    partition_columns.join(", ")
                )));
            };
            if source_schema
                .fields()
                .iter()
                .any(|f| f.name().eq_ignore_ascii_case(column))
            {
                return Err(invalid(format!(
                    "PARTITION ({column} = {literal}): the source already has column `{column}`; select the other columns only"
                )));
            }
            Ok(silt_common::task::Assignment {
                column: pc.clone(),
                expr: literal.clone(),
            })
        })
        .collect()
}

/// `operationParameters` of a WRITE, as Delta (and deltalake-core) write them.
fn write_parameters(req: &WriteRequest, plan: &WritePlan) -> Result<Map<String, Value>, JobError> {
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
    Ok(operation
        .operation_parameters()
        .map_err(|e| invalid(format!("internal: operation parameters: {e}")))?
        .into_iter()
        .collect())
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
                    schema::column_list(schema)
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

/// The protocol of a new table: (1, 2), or table features when its schema or properties
/// need them: reader and writer features (3, 7) for a timestamp without time zone, deletion
/// vectors and type widening; writer-only features (1, 7) for the change data feed and
/// in-commit timestamps (with `appendOnly` listed when the table is append-only).
fn new_protocol(
    schema: &Schema,
    configuration: &HashMap<String, String>,
) -> Result<deltalake_core::kernel::Protocol, JobError> {
    let properties = TableProperties::parse(configuration)?;
    let enabled = |key: &str| {
        configuration
            .iter()
            .any(|(k, v)| k.eq_ignore_ascii_case(key) && v.trim().eq_ignore_ascii_case("true"))
    };
    let mut features = Vec::new();
    if schema::uses_timestamp_ntz(schema) {
        features.push("timestampNtz");
    }
    if schema::uses_variant(schema) {
        features.push("variantType");
    }
    if properties.deletion_vectors {
        features.push("deletionVectors");
    }
    if enabled("delta.enableTypeWidening") {
        features.push("typeWidening");
    }
    let mapped = column_mapping::mode(configuration).is_some();
    let mut writer_only = Vec::new();
    if properties.change_data_feed {
        writer_only.push("changeDataFeed");
    }
    if properties.in_commit_timestamps {
        writer_only.push("inCommitTimestamp");
    }
    if properties.row_tracking {
        writer_only.extend(["domainMetadata", "rowTracking"]);
    }
    if properties.append_only && !(features.is_empty() && writer_only.is_empty()) {
        writer_only.push("appendOnly");
    }
    if mapped && !(features.is_empty() && writer_only.is_empty()) {
        features.push("columnMapping");
    }
    let writers: Vec<&str> = features.iter().chain(&writer_only).copied().collect();
    let json = if writers.is_empty() && mapped {
        // Column mapping alone: the legacy protocol that implies it, as Delta Spark writes.
        serde_json::json!({"minReaderVersion": 2, "minWriterVersion": 5})
    } else if writers.is_empty() {
        serde_json::json!({"minReaderVersion": 1, "minWriterVersion": 2})
    } else if features.is_empty() {
        serde_json::json!({
            "minReaderVersion": 1,
            "minWriterVersion": 7,
            "writerFeatures": writers,
        })
    } else {
        serde_json::json!({
            "minReaderVersion": 3,
            "minWriterVersion": 7,
            "readerFeatures": features,
            "writerFeatures": writers,
        })
    };
    serde_json::from_value(json).map_err(|e| invalid(format!("internal: protocol: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::{DataType, Field};

    fn source(n: usize) -> SourceInfo {
        SourceInfo {
            schema: Schema::new(vec![
                Field::new("id", DataType::Int64, true),
                Field::new("p", DataType::Utf8, true),
            ]),
            splits: (0..n)
                .map(|i| SourceSplit {
                    uri: format!("file:///s/{i}.parquet"),
                    format: SourceFormat::Parquet,
                    row_groups: Vec::new(),
                    partition_values: Default::default(),
                    size_bytes: 100 << 20,
                    deletion_vector: None,
                })
                .collect(),
            per_task_bytes: 200 << 20,
            partitions: None,
        }
    }

    fn ctx() -> PlanContext {
        PlanContext {
            job_id: "j1".into(),
            slots: 2,
        }
    }

    #[test]
    fn new_unpartitioned_table_is_one_write_stage() {
        let req = WriteRequest::append("file:///t", "file:///s");
        let url = Url::parse("file:///t/").unwrap();
        let plan = plan(&req, &url, None, source(5), &ctx()).unwrap();
        assert!(plan.partition_columns.is_empty());
        // 5 splits of 100 MiB at 200 MiB per task: 3 tasks.
        assert_eq!(plan.data_tasks.len(), 3);
        let t = &plan.data_tasks[0];
        assert_eq!(t.transforms, vec![Transform::Conform]);
        assert!(matches!(&t.sink, Sink::DataFiles(f) if f.file_prefix == "part-j1"));
        assert!(plan.removes.is_empty() && plan.rewrites.is_empty());
    }

    #[test]
    fn partitioned_tables_go_through_an_exchange_keyed_by_partition_columns() {
        let mut req = WriteRequest::append("file:///t", "file:///s");
        req.partition_by = vec!["P".into()];
        let url = Url::parse("file:///t/").unwrap();
        let plan = plan(&req, &url, None, source(1), &ctx()).unwrap();
        assert_eq!(plan.partition_columns, vec!["p".to_string()]);
        match &plan.data_tasks[0].sink {
            Sink::Exchange {
                route: Route::Hash(keys),
                partitions,
            } => {
                assert_eq!(keys, &vec!["\"p\"".to_string()]);
                assert_eq!(*partitions, 4);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_options_and_columns_are_refused() {
        let url = Url::parse("file:///t/").unwrap();
        let mut req = WriteRequest::append("file:///t", "file:///s");
        req.partition_by = vec!["nope".into()];
        let e = plan(&req, &url, None, source(1), &ctx()).err().unwrap();
        assert!(
            e.to_string().contains("unknown partition column `nope`"),
            "{e}"
        );
        let mut req = WriteRequest::append("file:///t", "file:///s");
        req.replace_where = Some("id > 1".into());
        let e = validate_options(&req).unwrap_err();
        assert!(e.to_string().contains("requires --mode overwrite"), "{e}");
    }
}
