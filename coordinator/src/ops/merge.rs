//! MERGE INTO (copy-on-write), in one of two plans.
//!
//! **Broadcast** (a source small enough for every task to hold, or `--exchange never`): local
//! tasks over the candidate target files each read the whole source, find their files'
//! matches from the columns ON and the conditions read (and duplicate matches), stream the
//! files a clause changes through the join and write them, and report the source rows that
//! matched; then, with NOT MATCHED clauses, insert tasks over the source's splits write the
//! rows no task matched.
//!
//! **Key exchange** (otherwise), in three stages over one exchange:
//!
//! 1. **map**: source rows and the rows of the candidate target files (those the ON
//!    condition's target-only conjuncts do not rule out; tagged with file ordinal and row
//!    position) go into one exchange, keyed by the `target_col = source_col` conjuncts of
//!    `ON` (cast to a common type), so that every match lands in one partition;
//! 2. **discover** (when there are WHEN MATCHED or NOT MATCHED BY SOURCE clauses): each
//!    partition joins its two sides, reports the target files holding a row a clause changes,
//!    and fails on a target row matched by several source rows (as Delta does);
//! 3. **rewrite**: each partition joins again (from the same map outputs) and writes the
//!    rows of the touched files (updated, copied; deleted ones dropped) and the inserted
//!    source rows.
//!
//! Partitions are sized so that a task's two sides fit its share of an executor's memory.
//! Without a key equality every row goes to one partition. The commit removes the touched
//! files and adds what was written; the read set is the candidate files and the ON
//! condition's target-only part, so Delta's conflict rules apply at the table's isolation
//! level.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{ArrayRef, AsArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use deltalake_core::kernel::{MetadataExt, StructType};
use futures::StreamExt;
use roaring::RoaringTreemap;
use serde_json::{Map, Value, json};
use silt_common::expr::Predicate;
use silt_common::merge::{MergeQuery, SOURCE_QUALIFIER, SourceProjection, target_columns_of};
use silt_common::request::{ExchangeMode, MergeAction, MergeClauseKind, MergeRequest};
use silt_common::schema;
use silt_common::source::read_split;
use silt_common::table::identity::{self, IdentityColumn};
use silt_common::table::{ActiveFile, TableSnapshot, column_mapping};
use silt_common::task::{
    Assignment, Input, MapOutputRef, MergeActionSpec, MergeClauseSpec, MergePass, MergeSpec, Route,
    Sink, SourceSplit, TableSpec, Task, TaskMetrics, TaskOutput, Transform,
};
use tracing::info;
use url::Url;

use super::dml::DmlOp;
use super::write::{SourceInfo, list_source_at};
use super::{executor_slots, existing_table, quote_ident};
use crate::JobContext;
use crate::commit::ReadRegion;
use crate::driver::{JobError, Operation, Outcome, PlanContext, StagePlan, StageResult, invalid};
use crate::plan::dv::{self, DV_STAGE, DvCounts};
use crate::plan::merge_prune::{self, KeySummary, Scope};
use crate::plan::{binpack, identity as identity_plan, rewrite};
use crate::txn::Txn;

/// Parquet bytes of the inputs are multiplied by this to estimate their size in memory.
const MEMORY_EXPANSION: u64 = 4;
/// Share of a task slot's memory one join partition may take (its two sides, the hash
/// table and the output batches).
const PARTITION_SHARE: u64 = 8;
/// Slot memory assumed when executors do not say theirs.
const DEFAULT_SLOT_MEMORY: u64 = 1 << 30;
const MAX_PARTITIONS: u64 = 4096;
/// A source whose estimated in-memory size is at most this share of a slot's memory is
/// broadcast (every task over the target's files holds all of it).
const BROADCAST_SHARE: u64 = 8;
/// Sources up to this size have their key columns summarised by the coordinator.
const MAX_SUMMARIZED_SOURCE_BYTES: u64 = 1 << 30;
/// Distinct source key values kept as an `IN` list (beyond: min/max only).
const MAX_KEY_VALUES: usize = 64;
/// Estimated in-memory bytes below which a partition is not worth a task of its own.
const MIN_PARTITION_BYTES: u64 = 16 << 20;

/// Loads the table and the source listing and plans the MERGE.
pub async fn prepare(
    ctx: &JobContext,
    plan_ctx: PlanContext,
    req: MergeRequest,
) -> Result<Box<dyn Operation>, JobError> {
    req.validate()?;
    let (table_url, snapshot) = existing_table(&req.table_uri).await?;
    snapshot.check_writable()?;
    if snapshot.properties.append_only
        && req
            .clauses
            .iter()
            .any(|c| c.kind != MergeClauseKind::NotMatchedByTarget)
    {
        return Err(invalid(
            "the table is append-only (delta.appendOnly = true): MERGE may only insert; nothing was changed",
        ));
    }
    let slots = executor_slots(ctx).await?;
    let source = list_source_at(
        req.source.format,
        &req.source.uri,
        &req.source.version,
        slots,
    )
    .await?;
    // A SELECT's columns are computed: only plain sources are summarised.
    let keys = if req.source.select.is_some() {
        HashMap::new()
    } else {
        source_key_summaries(&req, &snapshot, &source).await?
    };
    let op = plan(
        req,
        table_url,
        snapshot,
        source,
        keys,
        PlanContext { slots, ..plan_ctx },
        ctx.scheduler.slot_memory().unwrap_or(DEFAULT_SLOT_MEMORY),
    )?;
    let insert = MergePass::Insert {
        first_split: 0,
        matched: Vec::new(),
    };
    for pass in [
        MergePass::Discover,
        MergePass::Rewrite { touched: vec![] },
        MergePass::Local,
        insert,
    ] {
        let spec = MergeSpec {
            pass,
            ..op.spec.clone()
        };
        MergeQuery::build(&spec, &op.output_schema)?
            .validate()
            .await?;
    }
    MergeQuery::build_local_rewrite(&op.spec, &op.output_schema)?
        .validate()
        .await?;
    Ok(Box::new(op))
}

/// A sortable key value and its SQL literal.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum KeyValue {
    Int(i64),
    Str(String),
    Date(String),
}

impl KeyValue {
    fn sql(&self) -> String {
        match self {
            KeyValue::Int(v) => v.to_string(),
            KeyValue::Str(v) => format!("'{}'", v.replace('\'', "''")),
            KeyValue::Date(v) => format!("DATE '{v}'"),
        }
    }
}

/// The source's values of each key column that `ON` compares with a target column (min,
/// max, and the distinct values while few), read by the coordinator when the source is small
/// enough; they prune the target's files before any executor reads them. Key columns of
/// types without a summary here are left out (they prune nothing).
async fn source_key_summaries(
    req: &MergeRequest,
    snapshot: &TableSnapshot,
    source: &SourceInfo,
) -> Result<HashMap<String, KeySummary>, JobError> {
    let total: u64 = source.splits.iter().map(|s| s.size_bytes).sum();
    if total > MAX_SUMMARIZED_SOURCE_BYTES {
        info!(
            source_bytes = total,
            "source too large to summarise on the coordinator: no source-derived pruning"
        );
        return Ok(HashMap::new());
    }
    let lower = |s: &Schema| -> Vec<String> {
        s.fields().iter().map(|f| f.name().to_lowercase()).collect()
    };
    let (target_cols, source_cols) = (lower(&snapshot.arrow_schema), lower(&source.schema));
    let scope = Scope {
        target_alias: req.target_alias.as_deref(),
        source_alias: req.source_alias.as_deref(),
        target_columns: &target_cols,
        source_columns: &source_cols,
    };
    let mut fields = Vec::new();
    for (_, s) in merge_prune::key_pairs(&req.on, &scope) {
        if let Some(f) = source
            .schema
            .fields()
            .iter()
            .find(|f| f.name().eq_ignore_ascii_case(&s))
            && !fields.iter().any(|x: &Field| x.name() == f.name())
            && summarised(f.data_type())
        {
            fields.push(f.as_ref().clone().with_nullable(true));
        }
    }
    if fields.is_empty() {
        return Ok(HashMap::new());
    }
    let projected: SchemaRef = Arc::new(Schema::new(fields));
    let n = projected.fields().len();
    let mut values: Vec<Option<BTreeSet<KeyValue>>> = vec![Some(BTreeSet::new()); n];
    let mut bounds: Vec<Option<(KeyValue, KeyValue)>> = vec![None; n];
    for split in &source.splits {
        let mut stream = read_split(split, projected.clone(), 64 * 1024).await?;
        while let Some(batch) = stream.next().await {
            let batch = batch?;
            for (c, column) in batch.columns().iter().enumerate() {
                for v in key_values(column)? {
                    bounds[c] = Some(match bounds[c].take() {
                        None => (v.clone(), v.clone()),
                        Some((lo, hi)) => (lo.min(v.clone()), hi.max(v.clone())),
                    });
                    if let Some(set) = &mut values[c] {
                        set.insert(v);
                        if set.len() > MAX_KEY_VALUES {
                            values[c] = None;
                        }
                    }
                }
            }
        }
    }
    Ok(projected
        .fields()
        .iter()
        .enumerate()
        .map(|(c, f)| {
            let (min, max) = match &bounds[c] {
                Some((lo, hi)) => (Some(lo.sql()), Some(hi.sql())),
                None => (None, None),
            };
            let summary = KeySummary {
                min,
                max,
                values: values[c]
                    .as_ref()
                    .map(|set| set.iter().map(KeyValue::sql).collect()),
            };
            (f.name().to_lowercase(), summary)
        })
        .collect())
}

fn summarised(dt: &DataType) -> bool {
    dt.is_integer() || matches!(dt, DataType::Utf8 | DataType::LargeUtf8 | DataType::Date32)
}

/// The non-null values of a key column.
fn key_values(column: &ArrayRef) -> Result<Vec<KeyValue>, JobError> {
    let dt = column.data_type();
    let out = if dt.is_integer() {
        let a = cast(column, &DataType::Int64).map_err(silt_common::Error::from)?;
        a.as_primitive::<Int64Type>()
            .iter()
            .flatten()
            .map(KeyValue::Int)
            .collect()
    } else {
        let a = cast(column, &DataType::Utf8).map_err(silt_common::Error::from)?;
        let date = *dt == DataType::Date32;
        a.as_string::<i32>()
            .iter()
            .flatten()
            .map(|v| {
                if date {
                    KeyValue::Date(v.to_string())
                } else {
                    KeyValue::Str(v.to_string())
                }
            })
            .collect()
    };
    Ok(out)
}

/// Where a MERGE is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Map,
    Discover,
    Rewrite,
    Local,
    Insert,
}

/// A planned MERGE and its progress.
pub struct MergeOp {
    req: MergeRequest,
    table_url: Url,
    snapshot: TableSnapshot,
    ctx: PlanContext,
    /// The table as the rewrite writes it (with new columns under schema evolution).
    output_schema: Schema,
    output_schema_json: String,
    schema_changed: bool,
    spec: MergeSpec,
    /// Target files that may hold a match, by ordinal.
    candidates: Vec<ActiveFile>,
    /// The target-only part of ON, over target columns (the read predicate).
    pruning: Option<Predicate>,
    source_tasks: Vec<Task>,
    target_tasks: Vec<Task>,
    partitions: u32,
    /// Broadcast plan: local tasks over the candidate files (each with the whole source),
    /// then insert tasks over bins of source splits (with their first split's index).
    broadcast: bool,
    local_tasks: Vec<Task>,
    insert_bins: Vec<(u32, Vec<SourceSplit>)>,
    /// The source's schema as read (before its SELECT), Delta JSON.
    raw_source_json: String,
    /// Broadcast: source rows that matched some target row.
    matched: RoaringTreemap,
    step: Step,
    source_outputs: Vec<MapOutputRef>,
    target_outputs: Vec<MapOutputRef>,
    source_rows: u64,
    touched: Vec<u32>,
    rewrite_outputs: Vec<TaskOutput>,
    discover_metrics: TaskMetrics,
    /// Bytes the map tasks' exchange outputs spilled to local disk.
    map_spilled: u64,
    scan_time: Duration,
    rewrite_time: Duration,
    /// Deletion vectors: changed target rows are marked, not their files rewritten.
    marking: bool,
    /// Outputs of the stage writing deletion vectors.
    dv_outputs: Vec<TaskOutput>,
    /// What the rows a task writes go through: conformed to the table, generated columns
    /// computed ([`output_transforms`]).
    output: Vec<Transform>,
    /// Identity columns inserted rows get values for (by the tasks that insert).
    identity: Vec<IdentityColumn>,
    /// Column mapping under schema evolution: the highest column id the new columns took.
    max_column_id: Option<i64>,
}

/// The transforms a MERGE's written rows take: conformed to the table, then the table's
/// generated columns computed again from each row — unless a `*` action takes them from a
/// source that has them (the writer then checks them, as every written row's). A clause
/// assigning a generated column by name is refused.
fn output_transforms(
    generated: &[(String, String)],
    req: &MergeRequest,
    source_schema: &Schema,
) -> Result<Vec<Transform>, JobError> {
    let mut out = vec![Transform::Conform];
    if generated.is_empty() {
        return Ok(out);
    }
    let is_generated = |c: &str| generated.iter().any(|(g, _)| g.eq_ignore_ascii_case(c));
    for clause in &req.clauses {
        let named: Vec<&String> = match &clause.action {
            MergeAction::Update(sets) => sets.iter().map(|(c, _)| c).collect(),
            MergeAction::Insert { columns, .. } => columns.iter().collect(),
            _ => Vec::new(),
        };
        if let Some(c) = named.into_iter().find(|c| is_generated(c)) {
            return Err(invalid(format!(
                "`{c}` is a generated column: its value is computed from the other columns and cannot be assigned; nothing was changed"
            )));
        }
    }
    let star = req
        .clauses
        .iter()
        .any(|c| matches!(c.action, MergeAction::UpdateAll | MergeAction::InsertAll));
    let provided = source_schema
        .fields()
        .iter()
        .any(|f| is_generated(f.name()));
    if !(star && provided) {
        out.push(Transform::Derive {
            assignments: generated
                .iter()
                .map(|(column, expr)| Assignment {
                    column: column.clone(),
                    expr: expr.clone(),
                })
                .collect(),
        });
    }
    Ok(out)
}

/// The identity columns a MERGE's inserted rows get generated values for (every one, where
/// it inserts: rows whose value is null get one). Updating one is refused, and so is giving
/// values for a `GENERATED ALWAYS` one (naming it, or `*` from a source that has it).
fn identity_to_generate(
    columns: Vec<IdentityColumn>,
    req: &MergeRequest,
    source_schema: &Schema,
) -> Result<Vec<IdentityColumn>, JobError> {
    let in_source = |c: &str| {
        source_schema
            .fields()
            .iter()
            .any(|f| f.name().eq_ignore_ascii_case(c))
    };
    for c in &columns {
        let is = |name: &String| name.eq_ignore_ascii_case(&c.name);
        for clause in &req.clauses {
            match &clause.action {
                MergeAction::Update(sets) if sets.iter().any(|(n, _)| is(n)) => {
                    return Err(invalid(format!(
                        "`{}` is an identity column: its values cannot be updated; nothing was changed",
                        c.name
                    )));
                }
                MergeAction::UpdateAll if in_source(&c.name) => {
                    return Err(invalid(format!(
                        "`{}` is an identity column: its values cannot be updated (UPDATE SET * from a source that has it); nothing was changed",
                        c.name
                    )));
                }
                MergeAction::Insert { columns, .. }
                    if !c.allow_explicit_insert && columns.iter().any(is) =>
                {
                    return Err(c.values_given().into());
                }
                MergeAction::InsertAll if !c.allow_explicit_insert && in_source(&c.name) => {
                    return Err(c.values_given().into());
                }
                _ => {}
            }
        }
    }
    let inserts = req
        .clauses
        .iter()
        .any(|c| c.kind == MergeClauseKind::NotMatchedByTarget);
    Ok(if inserts { columns } else { Vec::new() })
}

/// Plans a MERGE: pure, from the request, the snapshot, the source listing and the cluster's
/// size.
pub fn plan(
    req: MergeRequest,
    table_url: Url,
    snapshot: TableSnapshot,
    source: SourceInfo,
    keys: HashMap<String, KeySummary>,
    ctx: PlanContext,
    slot_memory: u64,
) -> Result<MergeOp, JobError> {
    let target_schema: SchemaRef = snapshot.arrow_schema.clone();
    // The source's rows as read (`raw`), and as the MERGE sees them (after its SELECT).
    let raw_source_json = schema::arrow_to_delta_json(&source.schema)?;
    let source_schema_json = match &req.source.select {
        Some(select) => {
            let raw = schema::delta_json_to_arrow(&raw_source_json)?;
            let projection = SourceProjection::compile(&raw, select)?;
            schema::arrow_to_delta_json(projection.output_schema())?
        }
        None => raw_source_json.clone(),
    };
    let source_schema = schema::delta_json_to_arrow(&source_schema_json)?;
    let generated = snapshot.generated_columns();
    let output = output_transforms(&generated, &req, &source_schema)?;
    let identity_columns = snapshot.identity_columns()?;
    let is_identity = |c: &str| {
        identity_columns
            .iter()
            .any(|i| i.name.eq_ignore_ascii_case(c))
    };
    let identity = identity_to_generate(identity_columns.clone(), &req, &source_schema)?;
    let same = |a: &str, b: &str| a.eq_ignore_ascii_case(b);
    let in_schema = |s: &Schema, c: &str| s.fields().iter().find(|f| same(f.name(), c)).cloned();

    // Schema evolution: `*` actions bring the source's new columns.
    let stars = req
        .clauses
        .iter()
        .any(|c| matches!(c.action, MergeAction::UpdateAll | MergeAction::InsertAll));
    let mut fields: Vec<Field> = target_schema
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    if req.schema_evolution && stars {
        for f in source_schema.fields() {
            if in_schema(&target_schema, f.name()).is_none() {
                fields.push(f.as_ref().clone().with_nullable(true));
            }
        }
    }
    let output_schema = Schema::new(fields);
    let schema_changed = output_schema.fields().len() != target_schema.fields().len();
    // Column mapping: the new columns get physical names and ids above the table's
    // `delta.columnMapping.maxColumnId` (a column-mapped source's own are not the target's).
    let mut max_column_id = None;
    let output_schema = match snapshot.column_mapping() {
        Some(_) if schema_changed => {
            let max = snapshot
                .configuration
                .get(column_mapping::MAX_COLUMN_ID)
                .and_then(|v| v.parse::<i64>().ok())
                .unwrap_or(0);
            let (assigned, max) = column_mapping::assign(
                &column_mapping::carry_over(&target_schema, &output_schema),
                max,
                false,
            );
            max_column_id = Some(max);
            assigned
        }
        _ => output_schema,
    };
    let output_schema_json = match (schema_changed, max_column_id) {
        (false, _) => snapshot.schema_json.clone(),
        (true, Some(_)) => schema::arrow_to_delta_json(&output_schema)?,
        // A column-mapped source's physical names are not the target's.
        (true, None) => {
            schema::arrow_to_delta_json(&schema::without_column_mapping(&output_schema))?
        }
    };

    let clauses = req
        .clauses
        .iter()
        .map(|c| {
            let action = match &c.action {
                MergeAction::Delete => MergeActionSpec::Delete,
                MergeAction::Update(pairs) => {
                    MergeActionSpec::Update(assignments(pairs, &output_schema, "UPDATE")?)
                }
                MergeAction::Insert { columns, values } => {
                    let columns: Vec<String> = if columns.is_empty() {
                        if values.len() != target_schema.fields().len() {
                            return Err(invalid(format!(
                                "INSERT VALUES lists {} value(s) but the table has {} column(s); name the columns",
                                values.len(),
                                target_schema.fields().len()
                            )));
                        }
                        target_schema
                            .fields()
                            .iter()
                            .map(|f| f.name().clone())
                            .collect()
                    } else {
                        columns.clone()
                    };
                    let pairs: Vec<(String, String)> =
                        columns.into_iter().zip(values.iter().cloned()).collect();
                    MergeActionSpec::Insert(assignments(&pairs, &output_schema, "INSERT")?)
                }
                MergeAction::UpdateAll | MergeAction::InsertAll => {
                    let update = matches!(c.action, MergeAction::UpdateAll);
                    let mut list = Vec::new();
                    for f in output_schema.fields() {
                        match in_schema(&source_schema, f.name()) {
                            Some(s) => list.push(Assignment {
                                column: f.name().clone(),
                                expr: format!(
                                    "{SOURCE_QUALIFIER}.`{}`",
                                    s.name().replace('`', "``")
                                ),
                            }),
                            None if req.schema_evolution => {}
                            // Generated columns are computed (`output_transforms`).
                            None if generated.iter().any(|(g, _)| same(g, f.name())) => {}
                            // Identity columns: generated for inserts, kept by updates.
                            None if is_identity(f.name()) => {}
                            None => {
                                return Err(invalid(format!(
                                    "{} needs a source column `{}` (the table has it); list the columns, or use WITH SCHEMA EVOLUTION",
                                    if update { "UPDATE SET *" } else { "INSERT *" },
                                    f.name()
                                )));
                            }
                        }
                    }
                    if update {
                        MergeActionSpec::Update(list)
                    } else {
                        MergeActionSpec::Insert(list)
                    }
                }
            };
            Ok(MergeClauseSpec {
                kind: c.kind,
                condition: c.condition.clone(),
                action,
            })
        })
        .collect::<Result<Vec<_>, JobError>>()?;

    // Insert-only: target rows are only matched against, never written: the columns ON
    // reads are all the join needs of them.
    let insert_only = req
        .clauses
        .iter()
        .all(|c| c.kind == MergeClauseKind::NotMatchedByTarget);
    let mut target_rows_json = if insert_only {
        let wanted = target_columns_of(
            &req.on,
            req.target_alias.as_deref(),
            req.source_alias.as_deref(),
            &target_schema,
            &source_schema,
        )?;
        projected_json(&target_schema, &wanted)?
    } else {
        snapshot.schema_json.clone()
    };
    let mut spec = MergeSpec {
        target_alias: req.target_alias.clone(),
        source_alias: req.source_alias.clone(),
        target_schema_json: target_rows_json.clone(),
        source_schema_json: source_schema_json.clone(),
        source_select: req.source.select.clone(),
        on: req.on.clone(),
        clauses,
        pass: MergePass::Discover,
        record_changes: snapshot.properties.change_data_feed,
    };
    // Names are checked before anything else looks at the condition.
    MergeQuery::build(&spec, &output_schema)?;
    // Marking changed rows in deletion vectors writes no unchanged row: the target's rows
    // need only the columns the join and the changed rows read.
    let marking = dv::enabled(&snapshot, req.copy_on_write);
    if marking && !insert_only {
        let wanted = silt_common::merge::target_columns_marking(&spec, &output_schema)?;
        target_rows_json = projected_json(&target_schema, &wanted)?;
        spec.target_schema_json = target_rows_json.clone();
        MergeQuery::build(&spec, &output_schema)?;
    }

    // Which target files can hold a row the MERGE changes.
    let target_cols: Vec<String> = target_schema
        .fields()
        .iter()
        .map(|f| f.name().to_lowercase())
        .collect();
    let source_cols: Vec<String> = source_schema
        .fields()
        .iter()
        .map(|f| f.name().to_lowercase())
        .collect();
    let scope = Scope {
        target_alias: req.target_alias.as_deref(),
        source_alias: req.source_alias.as_deref(),
        target_columns: &target_cols,
        source_columns: &source_cols,
    };
    let by_source: Vec<Option<String>> = req
        .clauses
        .iter()
        .filter(|c| c.kind == MergeClauseKind::NotMatchedBySource)
        .map(|c| c.condition.clone())
        .collect();
    let pruning = merge_prune::target_predicate(&req.on, &scope, &keys, &by_source)
        .and_then(|p| Predicate::compile(&p, &target_schema).ok());
    let selection = rewrite::select_files(&snapshot, pruning.as_ref())?;
    let candidates: Vec<ActiveFile> = selection
        .whole
        .into_iter()
        .chain(selection.candidates)
        .collect();

    // The exchange: keys of both sides cast to one type; partitions sized to memory.
    let mut target_keys = Vec::new();
    let mut source_keys = Vec::new();
    for (t, s) in merge_prune::key_pairs(&req.on, &scope) {
        let (Some(tf), Some(sf)) = (in_schema(&target_schema, &t), in_schema(&source_schema, &s))
        else {
            continue;
        };
        let Some(cast) = common_key_type(tf.data_type(), sf.data_type()) else {
            continue;
        };
        let key = |name: &str| match &cast {
            Some(ty) => format!("CAST({} AS {ty})", quote_ident(name)),
            None => quote_ident(name),
        };
        target_keys.push(key(tf.name()));
        source_keys.push(key(sf.name()));
    }
    let source_bytes: u64 = source.splits.iter().map(|s| s.size_bytes).sum();
    let target_bytes: u64 = candidates
        .iter()
        .map(|f| u64::try_from(f.file.size_bytes).unwrap_or(0))
        .sum();
    let partitions = if target_keys.is_empty() {
        1
    } else {
        // Enough partitions for each to fit its share of a slot's memory, and for every
        // slot to have work once partitions are worth a task.
        let in_memory = (source_bytes + target_bytes) * MEMORY_EXPANSION;
        let for_memory = in_memory.div_ceil((slot_memory / PARTITION_SHARE).max(1));
        let for_parallelism =
            (u64::from(ctx.slots.max(1)) * 2).min(in_memory.div_ceil(MIN_PARTITION_BYTES));
        for_memory.max(for_parallelism).clamp(1, MAX_PARTITIONS) as u32
    };

    let map_table = |schema_json: &str| TableSpec {
        uri: table_url.to_string(),
        schema_json: schema_json.to_string(),
        partition_columns: Vec::new(),
    };
    let all_splits = source.splits.clone();
    let source_tasks: Vec<Task> =
        binpack::consecutive(source.splits, |s| s.size_bytes, source.per_task_bytes)
            .into_iter()
            .map(|splits| Task {
                table: map_table(&source_schema_json),
                input: Input::Source {
                    splits,
                    schema_json: raw_source_json.clone(),
                },
                transforms: req
                    .source
                    .select
                    .iter()
                    .map(|select| Transform::Select {
                        input_schema_json: raw_source_json.clone(),
                        select: select.clone(),
                    })
                    .collect(),
                sink: Sink::Exchange {
                    route: Route::Hash(source_keys.clone()),
                    partitions,
                },
            })
            .collect();
    // Broadcast: a source small enough for every task to hold goes whole to the tasks over
    // the target's files; no exchange.
    let broadcast = match req.exchange {
        ExchangeMode::Always => false,
        ExchangeMode::Never => true,
        ExchangeMode::Auto => source_bytes * MEMORY_EXPANSION <= slot_memory / BROADCAST_SHARE,
    };
    // Every broadcast task reads and hashes the whole source: as many tasks as slots,
    // balanced (more only past the bytes a task may read), rather than two per slot. The
    // candidates take the tasks' order, so that ordinals follow it.
    let file_bytes = |f: &ActiveFile| u64::try_from(f.file.size_bytes).unwrap_or(0);
    let groups = if broadcast {
        let tasks = target_bytes
            .div_ceil(binpack::MAX_TASK_BYTES)
            .max(u64::from(ctx.slots.max(1)));
        binpack::balanced(candidates, file_bytes, tasks as usize)
    } else {
        let per_task = binpack::task_bytes(target_bytes, ctx.slots);
        binpack::consecutive(candidates, file_bytes, per_task)
    };
    let candidates: Vec<ActiveFile> = groups.iter().flatten().cloned().collect();
    let mut target_tasks = Vec::new();
    let mut ordinal = 0u32;
    for group in groups {
        let group: Vec<_> = group.into_iter().map(|f| f.file).collect();
        let n = group.len() as u32;
        target_tasks.push(Task {
            table: map_table(&target_rows_json),
            input: Input::TableFiles {
                files: group,
                touch: None,
                row_ids: Some(ordinal),
            },
            transforms: Vec::new(),
            sink: Sink::Exchange {
                route: Route::Hash(target_keys.clone()),
                partitions,
            },
        });
        ordinal += n;
    }
    let output_table = TableSpec {
        uri: table_url.to_string(),
        schema_json: output_schema_json.clone(),
        partition_columns: snapshot.partition_columns.clone(),
    };
    let files_out = DmlOp::files_out(&snapshot, &ctx);
    let local_tasks: Vec<Task> = if broadcast {
        target_tasks
            .iter()
            .map(|t| Task {
                table: output_table.clone(),
                input: Input::Merge {
                    target: Box::new(t.input.clone()),
                    source: Box::new(Input::Source {
                        splits: all_splits.clone(),
                        schema_json: raw_source_json.clone(),
                    }),
                    merge: MergeSpec {
                        pass: MergePass::Local,
                        ..spec.clone()
                    },
                },
                transforms: output.clone(),
                sink: rewrite_sink(marking, &files_out),
            })
            .collect()
    } else {
        Vec::new()
    };
    let mut insert_bins = Vec::new();
    let mut first = 0u32;
    for bin in binpack::consecutive(all_splits, |s| s.size_bytes, source.per_task_bytes) {
        let n = bin.len() as u32;
        insert_bins.push((first, bin));
        first += n;
    }
    info!(
        job = %ctx.job_id,
        broadcast,
        candidates = candidates.len(),
        source_tasks = source_tasks.len(),
        target_tasks = target_tasks.len(),
        partitions,
        keys = target_keys.len(),
        "merge planned"
    );
    Ok(MergeOp {
        req,
        table_url,
        snapshot,
        ctx,
        output_schema,
        output_schema_json,
        schema_changed,
        spec,
        candidates,
        pruning,
        source_tasks,
        target_tasks,
        partitions,
        broadcast,
        local_tasks,
        insert_bins,
        raw_source_json,
        matched: RoaringTreemap::new(),
        step: Step::Map,
        source_outputs: Vec::new(),
        target_outputs: Vec::new(),
        source_rows: 0,
        touched: Vec::new(),
        rewrite_outputs: Vec::new(),
        discover_metrics: TaskMetrics::default(),
        map_spilled: 0,
        scan_time: Duration::ZERO,
        rewrite_time: Duration::ZERO,
        marking,
        dv_outputs: Vec::new(),
        output,
        identity,
        max_column_id,
    })
}

/// The Delta schema JSON of `schema`'s columns named in `wanted`, in schema order.
fn projected_json(schema: &Schema, wanted: &[String]) -> Result<String, JobError> {
    let projected = Schema::new(
        schema
            .fields()
            .iter()
            .filter(|f| wanted.contains(f.name()))
            .map(|f| f.as_ref().clone())
            .collect::<Vec<_>>(),
    );
    Ok(schema::arrow_to_delta_json(&projected)?)
}

/// Where a MERGE's rewrite goes: data files, or (`marking`) rows marked in deletion vectors
/// and the changed and inserted rows written.
fn rewrite_sink(marking: bool, files: &silt_common::task::FileSpec) -> Sink {
    if marking {
        Sink::MarkRows {
            write: Some(files.clone()),
        }
    } else {
        Sink::DataFiles(files.clone())
    }
}

/// `(column, SQL)` pairs as assignments to columns of `schema` (spelled as it spells them);
/// unknown and repeated columns are errors.
fn assignments(
    pairs: &[(String, String)],
    schema: &Schema,
    what: &str,
) -> Result<Vec<Assignment>, JobError> {
    let mut seen = BTreeSet::new();
    pairs
        .iter()
        .map(|(c, e)| {
            let f = schema
                .fields()
                .iter()
                .find(|f| f.name().eq_ignore_ascii_case(c))
                .ok_or_else(|| {
                    invalid(format!(
                        "{what} sets unknown column `{c}` (columns: {})",
                        schema::column_list(schema)
                    ))
                })?;
            if !seen.insert(f.name().to_lowercase()) {
                return Err(invalid(format!("{what} sets column `{c}` twice")));
            }
            Ok(Assignment {
                column: f.name().clone(),
                expr: e.clone(),
            })
        })
        .collect()
}

/// The type both sides of a key equality are hashed as: `Some(None)` when they already agree,
/// `Some(Some(sql type))` to cast both to, `None` when they cannot be hashed alike (the
/// equality then only filters).
fn common_key_type(a: &DataType, b: &DataType) -> Option<Option<&'static str>> {
    use DataType::*;
    let int = |t: &DataType| matches!(t, Int8 | Int16 | Int32 | Int64);
    let float = |t: &DataType| matches!(t, Float32 | Float64);
    let string = |t: &DataType| matches!(t, Utf8 | LargeUtf8 | Utf8View);
    if a == b {
        Some(None)
    } else if int(a) && int(b) {
        Some(Some("BIGINT"))
    } else if (int(a) || float(a)) && (int(b) || float(b)) {
        Some(Some("DOUBLE"))
    } else if string(a) && string(b) {
        Some(Some("VARCHAR"))
    } else {
        None
    }
}

impl MergeOp {
    fn has(&self, kind: MergeClauseKind) -> bool {
        self.req.clauses.iter().any(|c| c.kind == kind)
    }

    fn join_tasks(&self, pass: MergePass) -> Vec<Task> {
        let table = TableSpec {
            uri: self.table_url.to_string(),
            schema_json: self.output_schema_json.clone(),
            partition_columns: self.snapshot.partition_columns.clone(),
        };
        let transforms = match pass {
            MergePass::Discover => Vec::new(),
            _ => self.output.clone(),
        };
        let files = DmlOp::files_out(&self.snapshot, &self.ctx);
        (0..self.partitions)
            .map(|p| Task {
                table: table.clone(),
                input: Input::Merge {
                    target: Box::new(Input::Exchange {
                        map_outputs: self.target_outputs.clone(),
                        partition: p,
                    }),
                    source: Box::new(Input::Exchange {
                        map_outputs: self.source_outputs.clone(),
                        partition: p,
                    }),
                    merge: MergeSpec {
                        pass: pass.clone(),
                        ..self.spec.clone()
                    },
                },
                transforms: transforms.clone(),
                sink: rewrite_sink(
                    self.marking && matches!(pass, MergePass::Rewrite { .. }),
                    &files,
                ),
            })
            .collect()
    }

    /// Deletion vectors: the stage writing the vectors of the rows the rewrite marked.
    fn dv_stage(&self) -> Result<Vec<StagePlan>, JobError> {
        if !self.marking {
            return Ok(Vec::new());
        }
        let files: Vec<_> = self.candidates.iter().map(|f| f.file.clone()).collect();
        dv::stage(
            &DmlOp::table_spec(&self.table_url, &self.snapshot),
            &files,
            dv::gather(&self.rewrite_outputs)?,
            &DmlOp::files_out(&self.snapshot, &self.ctx),
            self.ctx.slots,
        )
    }

    /// Broadcast: the insert stage (when there are NOT MATCHED clauses and source rows).
    fn insert_stage(&mut self) -> Result<Vec<StagePlan>, JobError> {
        if !self.has(MergeClauseKind::NotMatchedByTarget) || self.insert_bins.is_empty() {
            return Ok(Vec::new());
        }
        self.step = Step::Insert;
        let mut matched = Vec::with_capacity(self.matched.serialized_size());
        self.matched
            .serialize_into(&mut matched)
            .map_err(|e| invalid(format!("internal: cannot serialize matched rows: {e}")))?;
        let table = TableSpec {
            uri: self.table_url.to_string(),
            schema_json: self.output_schema_json.clone(),
            partition_columns: self.snapshot.partition_columns.clone(),
        };
        let files = DmlOp::files_out(&self.snapshot, &self.ctx);
        let mut tasks: Vec<Task> = self
            .insert_bins
            .iter()
            .map(|(first, splits)| Task {
                table: table.clone(),
                input: Input::Merge {
                    target: Box::new(Input::TableFiles {
                        files: Vec::new(),
                        touch: None,
                        row_ids: Some(0),
                    }),
                    source: Box::new(Input::Source {
                        splits: splits.clone(),
                        schema_json: self.raw_source_json.clone(),
                    }),
                    merge: MergeSpec {
                        pass: MergePass::Insert {
                            first_split: *first,
                            matched: matched.clone(),
                        },
                        ..self.spec.clone()
                    },
                },
                transforms: self.output.clone(),
                sink: Sink::DataFiles(files.clone()),
            })
            .collect();
        identity_plan::generate(&mut tasks, &self.identity)?;
        Ok(vec![StagePlan::new("insert", tasks).with_note(format!(
            "{} source row(s) matched",
            self.matched.len()
        ))])
    }

    fn rewrite_stage(&mut self) -> Result<Vec<StagePlan>, JobError> {
        if self.touched.is_empty() && !self.has(MergeClauseKind::NotMatchedByTarget) {
            return Ok(Vec::new());
        }
        self.step = Step::Rewrite;
        let mut tasks = self.join_tasks(MergePass::Rewrite {
            touched: self.touched.clone(),
        });
        identity_plan::generate(&mut tasks, &self.identity)?;
        Ok(vec![StagePlan::new("rewrite", tasks).with_note(format!(
            "{} touched file(s), {} partition(s)",
            self.touched.len(),
            self.partitions
        ))])
    }

    /// Delta's `matchedPredicates` (and the like) parameter: a JSON list of
    /// `{"predicate": …, "actionType": …}`.
    fn clause_parameter(&self, kind: MergeClauseKind) -> Value {
        let list: Vec<Value> = self
            .req
            .clauses
            .iter()
            .filter(|c| c.kind == kind)
            .map(|c| {
                let action = match c.action {
                    MergeAction::Update(_) | MergeAction::UpdateAll => "update",
                    MergeAction::Delete => "delete",
                    MergeAction::Insert { .. } | MergeAction::InsertAll => "insert",
                };
                let mut o = Map::new();
                if let Some(p) = &c.condition {
                    o.insert("predicate".into(), json!(p));
                }
                o.insert("actionType".into(), json!(action));
                Value::Object(o)
            })
            .collect();
        Value::String(Value::Array(list).to_string())
    }
}

impl Operation for MergeOp {
    fn table_url(&self) -> &Url {
        &self.table_url
    }

    fn read_version(&self) -> i64 {
        self.snapshot.version
    }

    fn start(&mut self) -> Result<Vec<StagePlan>, JobError> {
        if self.broadcast {
            let changes_target =
                self.has(MergeClauseKind::Matched) || self.has(MergeClauseKind::NotMatchedBySource);
            let needs_matches = changes_target || self.has(MergeClauseKind::NotMatchedByTarget);
            if needs_matches && !self.local_tasks.is_empty() {
                self.step = Step::Local;
                return Ok(vec![
                    StagePlan::new("merge", self.local_tasks.clone()).with_note(format!(
                        "{} candidate target file(s), source broadcast",
                        self.candidates.len()
                    )),
                ]);
            }
            return self.insert_stage();
        }
        let tasks: Vec<Task> = self
            .source_tasks
            .iter()
            .chain(&self.target_tasks)
            .cloned()
            .collect();
        if tasks.is_empty() {
            return Ok(Vec::new());
        }
        Ok(vec![StagePlan::new("map", tasks).with_note(format!(
            "source and {} candidate target file(s) into {} partition(s)",
            self.candidates.len(),
            self.partitions
        ))])
    }

    fn stage_done(&mut self, result: StageResult) -> Result<Vec<StagePlan>, JobError> {
        if result.name == DV_STAGE {
            self.rewrite_time += result.elapsed;
            self.dv_outputs.extend(result.outputs);
            return Ok(Vec::new());
        }
        match self.step {
            Step::Map => {
                self.scan_time += result.elapsed;
                let n_source = self.source_tasks.len();
                for (i, o) in result.outputs.iter().enumerate() {
                    self.map_spilled += o.metrics.bytes_spilled;
                    let location = o
                        .exchange_output
                        .as_ref()
                        .ok_or_else(|| invalid("internal: a map task produced no exchange output"))?
                        .location
                        .clone();
                    if i < n_source {
                        self.source_rows += o.metrics.rows_read;
                        self.source_outputs.push(location);
                    } else {
                        self.target_outputs.push(location);
                    }
                }
                let changes_target = self.has(MergeClauseKind::Matched)
                    || self.has(MergeClauseKind::NotMatchedBySource);
                if changes_target && !self.candidates.is_empty() {
                    self.step = Step::Discover;
                    let tasks = self.join_tasks(MergePass::Discover);
                    return Ok(vec![StagePlan::new("discover", tasks)]);
                }
                self.rewrite_stage()
            }
            Step::Discover => {
                self.scan_time += result.elapsed;
                let mut touched = BTreeSet::new();
                for o in &result.outputs {
                    self.discover_metrics.add(&o.metrics);
                    touched.extend(o.touched_files.iter().copied());
                }
                if let Some(&bad) = touched
                    .iter()
                    .find(|&&t| t as usize >= self.candidates.len())
                {
                    return Err(invalid(format!(
                        "internal: a discovery task reported target file {bad} of {}",
                        self.candidates.len()
                    )));
                }
                self.touched = touched.into_iter().collect();
                self.rewrite_stage()
            }
            Step::Rewrite => {
                self.rewrite_time += result.elapsed;
                self.rewrite_outputs.extend(result.outputs);
                self.dv_stage()
            }
            Step::Local => {
                // The tasks' discovery passes count as scanning, the rest as rewriting.
                let scan = Duration::from_millis(
                    result
                        .outputs
                        .iter()
                        .map(|o| o.metrics.scan_ms)
                        .max()
                        .unwrap_or(0),
                )
                .min(result.elapsed);
                self.scan_time += scan;
                self.rewrite_time += result.elapsed - scan;
                for o in &result.outputs {
                    // Each local task read the whole source.
                    self.source_rows = self.source_rows.max(o.metrics.rows_source);
                    if !o.matched_source_rows.is_empty() {
                        let m = RoaringTreemap::deserialize_from(&o.matched_source_rows[..])
                            .map_err(|e| invalid(format!("internal: bad matched rows: {e}")))?;
                        self.matched |= m;
                    }
                }
                self.rewrite_outputs.extend(result.outputs);
                // The vectors are written while the inserts run.
                let mut next = self.dv_stage()?;
                next.extend(self.insert_stage()?);
                Ok(next)
            }
            Step::Insert => {
                self.rewrite_time += result.elapsed;
                self.source_rows = result.outputs.iter().map(|o| o.metrics.rows_source).sum();
                self.rewrite_outputs.extend(result.outputs);
                Ok(Vec::new())
            }
        }
    }

    fn finish(self: Box<Self>, elapsed: Duration) -> Result<Outcome, JobError> {
        // The vector stage's rewrites count as copies and output rows.
        let m = TaskMetrics::total(
            self.rewrite_outputs
                .iter()
                .chain(&self.dv_outputs)
                .map(|o| &o.metrics),
        );
        let removed: Vec<ActiveFile> = if self.marking {
            // Files marked (removed, most added again with their new vector).
            dv::reported_removed(&self.candidates, &self.dv_outputs)
        } else if self.broadcast {
            dv::reported_removed(&self.candidates, &self.rewrite_outputs)
        } else {
            self.touched
                .iter()
                .map(|&i| self.candidates[i as usize].clone())
                .collect()
        };
        let adds: Vec<_> = self
            .rewrite_outputs
            .iter()
            .chain(&self.dv_outputs)
            .flat_map(|o| &o.adds)
            .cloned()
            .collect();
        let matched_updated = m.rows_updated - m.rows_updated_by_source;
        let matched_deleted = m.rows_deleted - m.rows_deleted_by_source;
        let what = format!(
            "{} row(s) updated, {} deleted, {} inserted",
            m.rows_updated, m.rows_deleted, m.rows_inserted
        );
        if removed.is_empty() && adds.is_empty() && !self.schema_changed {
            return Ok(Outcome::Nothing {
                summary: format!("{what}; nothing to change, nothing committed"),
                metrics: Default::default(),
            });
        }
        let mut params = Map::new();
        params.insert("predicate".into(), json!(self.req.on));
        params.insert(
            "matchedPredicates".into(),
            self.clause_parameter(MergeClauseKind::Matched),
        );
        params.insert(
            "notMatchedPredicates".into(),
            self.clause_parameter(MergeClauseKind::NotMatchedByTarget),
        );
        params.insert(
            "notMatchedBySourcePredicates".into(),
            self.clause_parameter(MergeClauseKind::NotMatchedBySource),
        );
        let mut txn = Txn::new(&self.ctx.job_id, "MERGE", params);
        // Identity values generated: the commit raises the columns' high-water marks.
        let marks = identity::new_high_water_marks(
            &self.identity,
            self.rewrite_outputs.iter().map(|o| &o.identity_values),
        );
        if self.schema_changed || !marks.is_empty() {
            let schema_json = identity::with_high_water_marks(&self.output_schema_json, &marks)?;
            let struct_type: StructType = serde_json::from_str(&schema_json)
                .map_err(|e| invalid(format!("internal: bad schema json: {e}")))?;
            let old = self.snapshot.state()?.metadata().clone();
            let mut md = old
                .with_schema(&struct_type)
                .map_err(|e| invalid(format!("cannot update table schema: {e}")))?;
            if let Some(max) = self.max_column_id {
                md = md
                    .add_config_key(column_mapping::MAX_COLUMN_ID.to_string(), max.to_string())
                    .map_err(|e| invalid(format!("cannot update table schema: {e}")))?;
            }
            txn.set_metadata(md);
        }
        txn.add_files(adds.iter(), true);
        txn.add_change_files(
            "numTargetChangeFilesAdded",
            self.rewrite_outputs.iter().flat_map(|o| &o.cdc_files),
        );
        txn.remove_files(&removed, true);
        txn.read_region(ReadRegion::of_condition(
            self.pruning.as_ref(),
            &self.snapshot,
        ));
        txn.read_files(self.candidates.iter().map(|f| f.file.path.as_str()));

        txn.metric("numSourceRows", self.source_rows);
        txn.metric("numTargetRowsInserted", m.rows_inserted);
        txn.metric("numTargetRowsUpdated", m.rows_updated);
        txn.metric("numTargetRowsMatchedUpdated", matched_updated);
        txn.metric(
            "numTargetRowsNotMatchedBySourceUpdated",
            m.rows_updated_by_source,
        );
        txn.metric("numTargetRowsDeleted", m.rows_deleted);
        txn.metric("numTargetRowsMatchedDeleted", matched_deleted);
        txn.metric(
            "numTargetRowsNotMatchedBySourceDeleted",
            m.rows_deleted_by_source,
        );
        txn.metric("numTargetRowsCopied", m.rows_copied);
        txn.metric("numOutputRows", m.rows_written);
        let add_refs: Vec<_> = adds.iter().collect();
        let (written, gone) = DvCounts::files(&add_refs, &removed);
        txn.metric("numTargetFilesAdded", written.len());
        txn.metric("numTargetFilesRemoved", gone.len());
        txn.metric(
            "numTargetBytesAdded",
            written.iter().map(|a| a.size_bytes.max(0)).sum::<i64>(),
        );
        txn.metric(
            "numTargetBytesRemoved",
            gone.iter().map(|r| r.file.size_bytes.max(0)).sum::<i64>(),
        );
        txn.metric("numTargetChangeFilesAdded", 0);
        DvCounts::of(&add_refs, &removed).record(&mut txn, "Target");
        txn.metric("executionTimeMs", elapsed.as_millis());
        txn.metric("scanTimeMs", self.scan_time.as_millis());
        txn.metric("rewriteTimeMs", self.rewrite_time.as_millis());
        // Not one of Delta's: what the exchange and the joins spilled to executors' disks.
        txn.metric(
            "numBytesSpilled",
            self.map_spilled + m.bytes_spilled + self.discover_metrics.bytes_spilled,
        );
        let plan = if self.broadcast {
            "source broadcast".to_string()
        } else {
            format!("key exchange, {} partition(s)", self.partitions)
        };
        let vectors = self.dv_outputs.iter().map(|o| o.adds.len()).sum();
        let summary = DmlOp::summary(&format!("{what} ({plan})"), removed.len(), vectors, &m);
        Ok(Outcome::commit(
            txn,
            crate::driver::CommitTarget {
                // New mapped columns: the log keys their statistics by their physical names.
                column_mapping: match self.max_column_id {
                    Some(_) => Some(Arc::new(self.output_schema.clone())),
                    None => self.snapshot.column_mapping(),
                },
                ..crate::driver::CommitTarget::on(&self.snapshot, self.snapshot.properties.clone())
            },
            summary,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::rewrite::testing::{snapshot, stats};
    use arrow::datatypes::Field;
    use silt_common::request::{MergeAction, MergeClause, MergeSource};
    use silt_common::table::TimeTravel;
    use silt_common::task::{SourceFormat, SourceSplit};

    fn request(exchange: ExchangeMode) -> MergeRequest {
        MergeRequest {
            table_uri: "file:///planner-test/t/".into(),
            target_alias: Some("t".into()),
            source: MergeSource {
                format: SourceFormat::Parquet,
                uri: "file:///planner-test/s/".into(),
                version: TimeTravel::Latest,
                select: None,
            },
            source_alias: Some("s".into()),
            on: "t.id = s.id".into(),
            clauses: vec![
                MergeClause {
                    kind: MergeClauseKind::Matched,
                    condition: None,
                    action: MergeAction::UpdateAll,
                },
                MergeClause {
                    kind: MergeClauseKind::NotMatchedByTarget,
                    condition: None,
                    action: MergeAction::InsertAll,
                },
            ],
            schema_evolution: false,
            exchange,
            copy_on_write: false,
        }
    }

    fn source(bytes: u64) -> SourceInfo {
        SourceInfo {
            schema: Schema::new(vec![
                Field::new("id", DataType::Int32, true),
                Field::new("s", DataType::Utf8, true),
                Field::new("p", DataType::Int32, true),
            ]),
            splits: vec![SourceSplit {
                uri: "file:///planner-test/s/a.parquet".into(),
                format: SourceFormat::Parquet,
                row_groups: vec![],
                partition_values: Default::default(),
                size_bytes: bytes,
                deletion_vector: None,
            }],
            per_task_bytes: 8 << 20,
            partitions: None,
        }
    }

    /// Target files with ids 0-9, 10-19 and 30-39; source keys 12..=18.
    fn planned(exchange: ExchangeMode, source_bytes: u64) -> MergeOp {
        let s = [stats(10, 0, 9), stats(10, 10, 19), stats(10, 30, 39)];
        let snap = snapshot(&[("1", Some(&s[0])), ("1", Some(&s[1])), ("2", Some(&s[2]))]);
        let keys = HashMap::from([(
            "id".to_string(),
            KeySummary {
                min: Some("12".into()),
                max: Some("18".into()),
                values: None,
            },
        )]);
        let ctx = PlanContext {
            job_id: "j".into(),
            slots: 2,
        };
        let url = Url::parse("file:///planner-test/t/").unwrap();
        plan(
            request(exchange),
            url,
            snap,
            source(source_bytes),
            keys,
            ctx,
            1 << 30,
        )
        .unwrap()
    }

    #[test]
    fn source_keys_prune_the_target_and_a_small_source_is_broadcast() {
        let mut op = planned(ExchangeMode::Auto, 1 << 20);
        assert_eq!(op.candidates.len(), 1, "only the file with ids 10-19");
        assert!(op.broadcast);
        let stages = op.start().unwrap();
        assert_eq!(stages.len(), 1);
        assert_eq!(stages[0].name, "merge");
        let [task] = stages[0].tasks.as_slice() else {
            panic!("one local task: {:?}", stages[0].tasks);
        };
        let Input::Merge {
            target,
            source,
            merge,
        } = &task.input
        else {
            panic!("a merge input");
        };
        assert!(matches!(
            **target,
            Input::TableFiles {
                row_ids: Some(0),
                ..
            }
        ));
        assert!(matches!(**source, Input::Source { .. }));
        assert_eq!(merge.pass, MergePass::Local);
        // Keys of different integer types are hashed as one type.
        assert!(
            matches!(&op.source_tasks[0].sink, Sink::Exchange { route: Route::Hash(keys), .. } if keys[0] == "CAST(\"id\" AS BIGINT)")
        );
    }

    #[test]
    fn a_large_or_forced_source_goes_through_the_key_exchange() {
        for (mode, bytes) in [
            (ExchangeMode::Auto, 512 << 20),
            (ExchangeMode::Always, 1 << 20),
        ] {
            let mut op = planned(mode, bytes);
            assert!(!op.broadcast, "{mode:?} {bytes}");
            let stages = op.start().unwrap();
            assert_eq!(stages[0].name, "map");
            // One source map task and one over the candidate file, both into the exchange.
            assert_eq!(stages[0].tasks.len(), 2);
            assert!(
                stages[0]
                    .tasks
                    .iter()
                    .all(|t| matches!(t.sink, Sink::Exchange { partitions, .. } if partitions == op.partitions))
            );
        }
        // Partitions for memory: 512 MiB of Parquet, ~2 GiB in memory, 128 MiB each.
        assert_eq!(planned(ExchangeMode::Auto, 512 << 20).partitions, 17);
    }
}
