//! MERGE inputs: a task's target and source rows joined by [`MergeQuery`]. Exchange passes
//! (discover, rewrite) read one exchange partition of each side into memory; a broadcast
//! MERGE's local pass reads the whole source, finds its own target files' matches from the
//! columns the conditions read, then streams the files a clause changes through the join;
//! its insert pass writes the source rows no task matched.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use arrow::array::{AsArray, BooleanArray};
use arrow::compute::filter_record_batch;
use arrow::datatypes::{Schema, SchemaRef, UInt64Type};
use arrow::record_batch::RecordBatch;
use futures::{StreamExt, TryStreamExt};
use roaring::RoaringTreemap;
use silt_common::merge::{self, MergeQuery, SourceProjection, TargetRows};
use silt_common::schema::{arrow_to_delta_json, delta_json_to_arrow};
use silt_common::source::read_split;
use silt_common::spill::Budget;
use silt_common::task::{
    DataFile, Input, MapOutputRef, MergePass, MergeSpec, Sink, TaskMetrics, TaskSpec,
};
use silt_common::{Error, Result};
use url::Url;

use super::SOURCE_BATCH_ROWS;
use super::TaskEnv;
use super::inputs::{collect_side, push, table_rows};
use super::sinks::OpenSink;
use super::transforms::Pipeline;

/// What a MERGE task reports besides rows and files.
#[derive(Debug, Default)]
pub struct MergeReport {
    /// Discovery: ordinals of the target files holding a changed row.
    pub touched_files: Vec<u32>,
    /// Broadcast local pass: the source rows that matched (serialized `RoaringTreemap`).
    pub matched_source_rows: Vec<u8>,
}

/// One MERGE input as a task has it.
pub struct MergeTask<'a> {
    pub spec: &'a TaskSpec,
    pub env: &'a TaskEnv,
    pub table_url: &'a Url,
    /// The rows the task writes (the table's schema, evolved).
    pub schema: &'a SchemaRef,
    pub target: &'a Input,
    pub source: &'a Input,
    pub merge: &'a MergeSpec,
}

/// Runs the task's pass; returns the target files it rewrote (broadcast local pass) and
/// what it found.
pub async fn drain(
    t: MergeTask<'_>,
    pipeline: &Pipeline,
    sink: &mut OpenSink,
    metrics: &mut TaskMetrics,
) -> Result<(Vec<DataFile>, MergeReport)> {
    let mut report = MergeReport::default();
    let removes = run(t, pipeline, sink, metrics, &mut report).await?;
    Ok((removes, report))
}

async fn run(
    t: MergeTask<'_>,
    pipeline: &Pipeline,
    sink: &mut OpenSink,
    metrics: &mut TaskMetrics,
    report: &mut MergeReport,
) -> Result<Vec<DataFile>> {
    // The join holds half of the task's memory; the sink's writer the other half.
    let limit = t.env.limits.budget(t.env.limits.merge_share());
    match &t.merge.pass {
        MergePass::Discover | MergePass::Rewrite { .. } => {
            let query = if is_marking(t.spec) {
                MergeQuery::build_marking(t.merge, t.schema, false)?
            } else {
                MergeQuery::build(t.merge, t.schema)?
            };
            let target = collect_side(exchange_side(t.target)?, t.spec, t.env, metrics).await?;
            let source = collect_side(exchange_side(t.source)?, t.spec, t.env, metrics).await?;
            let started = Instant::now();
            let (mut rows, plan) = query
                .execute(TargetRows::Batches(target), source, &limit)
                .await?;
            if let MergePass::Rewrite { touched } = &t.merge.pass {
                let mut out = rows_out(&query, touched, t.spec);
                while let Some(batch) = rows.next().await {
                    let batch = out.rewrite(&batch?, metrics)?;
                    push(batch, pipeline, sink, metrics).await?;
                }
            } else {
                let mut found = query.rows(&[]);
                while let Some(batch) = rows.next().await {
                    found.discover(&batch?)?;
                }
                metrics.scan_ms += started.elapsed().as_millis() as u64;
                report.touched_files = found.touched_files();
            }
            metrics.bytes_spilled += merge::spilled_bytes(&plan);
            Ok(Vec::new())
        }
        MergePass::Local => local(t, pipeline, sink, metrics, report, limit).await,
        MergePass::Insert {
            first_split,
            matched,
        } => {
            let source = read_source(t.source, t.merge, *first_split, None, None, metrics).await?;
            let query = MergeQuery::build(t.merge, t.schema)?;
            let (mut rows, plan) = query
                .execute(TargetRows::Batches(Vec::new()), source, &limit)
                .await?;
            let mut out = query.insert_rows(matched)?;
            while let Some(batch) = rows.next().await {
                let batch = out.rewrite(&batch?, metrics)?;
                push(batch, pipeline, sink, metrics).await?;
            }
            metrics.bytes_spilled += merge::spilled_bytes(&plan);
            Ok(Vec::new())
        }
    }
}

/// The broadcast local pass: discovery over the task's target files (only the columns the
/// conditions read), then the touched files streamed through the join.
async fn local(
    t: MergeTask<'_>,
    pipeline: &Pipeline,
    sink: &mut OpenSink,
    metrics: &mut TaskMetrics,
    report: &mut MergeReport,
    limit: Budget,
) -> Result<Vec<DataFile>> {
    let Input::TableFiles {
        files,
        row_ids: Some(first),
        ..
    } = t.target
    else {
        return Err(Error::internal(
            "a broadcast MERGE's target must be table files with row ids",
        ));
    };
    let started = Instant::now();
    let table = delta_json_to_arrow(&t.merge.target_schema_json)?;
    if is_marking(t.spec) {
        return local_marking(
            t, files, *first, table, pipeline, sink, metrics, report, limit,
        )
        .await;
    }
    // Discovery reads only the columns ON and the conditions read, of both sides.
    let source_schema = delta_json_to_arrow(&t.merge.source_schema_json)?;
    let (target_cols, source_cols) = merge::discovery_columns(t.merge)?;
    let projected = project(&table, &target_cols);
    let source_keys_schema = project(&source_schema, &source_cols);
    let source = read_source(
        t.source,
        t.merge,
        0,
        Some(&source_keys_schema),
        None,
        metrics,
    )
    .await?;
    // The target's condition columns are streamed through the join (built on the source).
    let scanned = Arc::new(AtomicU64::new(0));
    let ordinals = (*first..).zip(files.iter().cloned()).collect();
    let keys = target_stream(
        ordinals,
        t.table_url.clone(),
        projected.clone(),
        scanned.clone(),
    );
    let discover_spec = MergeSpec {
        target_schema_json: arrow_to_delta_json(&projected)?,
        source_schema_json: arrow_to_delta_json(&source_keys_schema)?,
        ..t.merge.clone()
    };
    let query = MergeQuery::build(&discover_spec, t.schema)?;
    let (mut rows, plan) = query.execute(keys, source, &limit).await?;
    let mut found = query.rows(&[]);
    while let Some(batch) = rows.next().await {
        found.discover(&batch?)?;
    }
    metrics.bytes_spilled += merge::spilled_bytes(&plan);
    metrics.rows_read += scanned.load(Ordering::Relaxed);
    report.matched_source_rows = found.matched_source_rows()?;
    let touched = found.touched_files();
    metrics.scan_ms += started.elapsed().as_millis() as u64;
    if touched.is_empty() {
        return Ok(Vec::new());
    }

    let rewritten: Vec<(u32, DataFile)> = touched
        .iter()
        .map(|&o| {
            files
                .get((o - first) as usize)
                .cloned()
                .map(|f| (o, f))
                .ok_or_else(|| Error::internal(format!("touched file {o} is not this task's")))
        })
        .collect::<Result<_>>()?;
    for (_, f) in &rewritten {
        metrics.bytes_read += u64::try_from(f.size_bytes).unwrap_or(0);
    }
    let read = Arc::new(AtomicU64::new(0));
    let stream = target_stream(
        rewritten.clone(),
        t.table_url.clone(),
        Arc::new(table.as_ref().clone()),
        read.clone(),
    );
    // The rewrite joins only the source rows that matched here, read again in full.
    let source = read_source(
        t.source,
        t.merge,
        0,
        None,
        Some(found.matched_sources()),
        &mut TaskMetrics::default(),
    )
    .await?;
    let query = MergeQuery::build_local_rewrite(t.merge, t.schema)?;
    let (mut rows, plan) = query.execute(stream, source, &limit).await?;
    let mut out = rows_out(&query, &touched, t.spec);
    while let Some(batch) = rows.next().await {
        let batch = out.rewrite(&batch?, metrics)?;
        push(batch, pipeline, sink, metrics).await?;
    }
    metrics.bytes_spilled += merge::spilled_bytes(&plan);
    metrics.rows_read += read.load(Ordering::Relaxed);
    metrics.files_touched += rewritten.len() as u64;
    Ok(rewritten.into_iter().map(|(_, f)| f).collect())
}

/// Whether the task marks changed rows in deletion vectors (rather than rewriting files).
fn is_marking(spec: &TaskSpec) -> bool {
    matches!(spec.task.sink, Sink::MarkRows { .. })
}

/// The broadcast local pass when changed rows are marked in deletion vectors: no unchanged
/// row is written, so one join of the task's target rows (the columns the coordinator kept)
/// with the whole source does it, checking matches and noting the matched source rows as it
/// goes.
#[allow(clippy::too_many_arguments)]
async fn local_marking(
    t: MergeTask<'_>,
    files: &[DataFile],
    first: u32,
    table: SchemaRef,
    pipeline: &Pipeline,
    sink: &mut OpenSink,
    metrics: &mut TaskMetrics,
    report: &mut MergeReport,
    limit: Budget,
) -> Result<Vec<DataFile>> {
    let source = read_source(t.source, t.merge, 0, None, None, metrics).await?;
    let read = Arc::new(AtomicU64::new(0));
    let all: Vec<(u32, DataFile)> = (first..).zip(files.iter().cloned()).collect();
    let ordinals: Vec<u32> = all.iter().map(|(o, _)| *o).collect();
    let stream = target_stream(all, t.table_url.clone(), table, read.clone());
    let query = MergeQuery::build_marking(t.merge, t.schema, true)?;
    let (mut rows, plan) = query.execute(stream, source, &limit).await?;
    let mut out = query.rows(&ordinals).marking();
    while let Some(batch) = rows.next().await {
        let batch = out.rewrite(&batch?, metrics)?;
        push(batch, pipeline, sink, metrics).await?;
    }
    report.matched_source_rows = out.matched_source_rows()?;
    metrics.bytes_spilled += merge::spilled_bytes(&plan);
    metrics.rows_read += read.load(Ordering::Relaxed);
    for f in files {
        metrics.bytes_read += u64::try_from(f.size_bytes).unwrap_or(0);
    }
    Ok(Vec::new())
}

/// The rewrite's rows of the touched files: marked in deletion vectors when the task's sink
/// marks rows, else written whole.
fn rows_out<'q>(query: &'q MergeQuery, touched: &[u32], spec: &TaskSpec) -> merge::MergeRows<'q> {
    let rows = query.rows(touched);
    if is_marking(spec) {
        rows.marking()
    } else {
        rows
    }
}

/// The rows of `files`, tagged with their ordinals and positions, streamed into the join
/// (counting the rows into `read`).
fn target_stream(
    files: Vec<(u32, DataFile)>,
    table_url: Url,
    table: SchemaRef,
    read: Arc<AtomicU64>,
) -> TargetRows {
    let out_schema = merge::target_row_schema(&table);
    let stream = futures::stream::iter(files)
        .then(move |(ordinal, file)| {
            let (url, table) = (table_url.clone(), table.clone());
            async move { table_rows(&file, &url, &table).await.map(|s| (ordinal, s)) }
        })
        .map_ok(move |(ordinal, rows)| {
            let read = read.clone();
            let mut next = 0u64;
            rows.map(move |b| {
                b.and_then(|b| {
                    let n = b.num_rows() as u64;
                    read.fetch_add(n, Ordering::Relaxed);
                    let tagged = merge::tag_rows(&b, ordinal, next);
                    next += n;
                    tagged
                })
            })
        })
        .try_flatten()
        .boxed();
    TargetRows::stream(out_schema, stream)
}

/// `schema`'s fields named in `columns` (nullable), or its first field if none is.
fn project(schema: &Schema, columns: &[String]) -> SchemaRef {
    let mut fields: Vec<_> = schema
        .fields()
        .iter()
        .filter(|f| columns.contains(f.name()))
        .map(|f| f.as_ref().clone().with_nullable(true))
        .collect();
    if fields.is_empty()
        && let Some(f) = schema.fields().first()
    {
        fields.push(f.as_ref().clone().with_nullable(true));
    }
    Arc::new(Schema::new(fields))
}

/// The rows of a source input, tagged with their source row ids (splits numbered from
/// `first_split`): only `columns` of them when given (else the source's schema), only the
/// rows in `keep` when given.
async fn read_source(
    input: &Input,
    spec: &MergeSpec,
    first_split: u32,
    columns: Option<&SchemaRef>,
    keep: Option<&RoaringTreemap>,
    metrics: &mut TaskMetrics,
) -> Result<Vec<RecordBatch>> {
    let Input::Source {
        splits,
        schema_json,
    } = input
    else {
        return Err(Error::internal(format!(
            "a broadcast MERGE's source must be source splits, not {}",
            input.name()
        )));
    };
    // A SELECT reads the source's own columns and keeps `columns` of its output.
    let raw = delta_json_to_arrow(schema_json)?;
    let projection = spec
        .source_select
        .as_ref()
        .map(|s| SourceProjection::compile(&raw, s))
        .transpose()?;
    let schema = match (columns, &projection) {
        (Some(c), None) => c.clone(),
        _ => raw,
    };
    let mut out = Vec::new();
    for (i, split) in splits.iter().enumerate() {
        let mut stream = read_split(split, schema.clone(), SOURCE_BATCH_ROWS).await?;
        metrics.bytes_read += split.size_bytes;
        let mut row = 0u64;
        while let Some(batch) = stream.next().await {
            let batch = batch?;
            let n = batch.num_rows() as u64;
            let mut tagged = merge::tag_source_rows(&batch, first_split + i as u32, row)?;
            row += n;
            if let Some(p) = &projection {
                tagged = p.apply(&tagged)?;
                if let Some(c) = columns {
                    let keep: Vec<usize> = (0..tagged.num_columns())
                        .filter(|&j| {
                            let name = tagged.schema().field(j).name().clone();
                            name == merge::SRC_COL || c.index_of(&name).is_ok()
                        })
                        .collect();
                    tagged = tagged.project(&keep)?;
                }
            }
            metrics.rows_source += tagged.num_rows() as u64;
            if let Some(keep) = keep {
                let ids = tagged
                    .column(tagged.num_columns() - 1)
                    .as_primitive::<UInt64Type>()
                    .iter()
                    .map(|id| Some(id.is_some_and(|id| keep.contains(id))))
                    .collect::<BooleanArray>();
                tagged = filter_record_batch(&tagged, &ids)?;
            }
            if tagged.num_rows() > 0 {
                out.push(tagged);
            }
        }
    }
    Ok(out)
}

/// The exchange partition one side of an exchange pass reads.
fn exchange_side(input: &Input) -> Result<(&[MapOutputRef], u32)> {
    match input {
        Input::Exchange {
            map_outputs,
            partition,
        } => Ok((map_outputs, *partition)),
        other => Err(Error::internal(format!(
            "a MERGE join side must be an exchange, not {}",
            other.name()
        ))),
    }
}
