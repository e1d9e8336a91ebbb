//! Inputs: source splits, table data files (with an optional touch predicate), exchange
//! partitions. Each streams its rows through the task's pipeline into the sink.

use std::sync::atomic::Ordering;
use std::time::Instant;

use arrow::datatypes::{Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use futures::StreamExt;
use silt_common::Result;
use silt_common::exchange::{decode_block, decode_block_narrow};
use silt_common::expr::Predicate;
use silt_common::merge;
use silt_common::schema::{conform_batch, delta_json_to_arrow};
use silt_common::source::{RowFilterSpec, read_split, read_split_filtered, read_split_narrowed};
use silt_common::table::file_split;
use silt_common::task::{DataFile, Input, MapOutputRef, TaskMetrics, TaskSpec};
use url::Url;

use super::TaskEnv;
use super::merge::MergeReport;
use super::sinks::OpenSink;
use super::transforms::Pipeline;
use super::{SOURCE_BATCH_ROWS, TABLE_BATCH_ROWS};

/// Streams the input's rows through `pipeline` into `sink`. Returns the table files whose
/// rows were read in full (to be removed by the commit) and, for MERGE inputs, what the
/// join found.
pub async fn drain(
    spec: &TaskSpec,
    env: &TaskEnv,
    table_url: &Url,
    schema: &SchemaRef,
    pipeline: &Pipeline,
    sink: &mut OpenSink,
    metrics: &mut TaskMetrics,
) -> Result<(Vec<DataFile>, MergeReport)> {
    match &spec.task.input {
        Input::Source {
            splits,
            schema_json,
        } => {
            let source_schema = delta_json_to_arrow(schema_json)?;
            // A sink that takes decimals narrowed gets them as a Parquet source stores them
            // (32- or 64-bit integers) when conforming is all the rows need.
            let narrowed = pipeline.only_conforms() && sink.takes_exchange_rows();
            for split in splits {
                let mut stream = if narrowed {
                    read_split_narrowed(split, source_schema.clone(), SOURCE_BATCH_ROWS).await?
                } else {
                    read_split(split, source_schema.clone(), SOURCE_BATCH_ROWS).await?
                };
                metrics.bytes_read += split.size_bytes;
                while let Some(batch) = stream.next().await {
                    let batch = batch?;
                    metrics.rows_read += batch.num_rows() as u64;
                    let out = if narrowed {
                        pipeline.apply_keeping_narrowed(batch, metrics)?
                    } else {
                        pipeline.apply(batch, metrics)?
                    };
                    if let Some(out) = out {
                        sink.accept(&out).await?;
                    }
                }
            }
            Ok((Vec::new(), MergeReport::default()))
        }
        Input::TableFiles {
            files,
            touch,
            row_ids,
        } => {
            let touch = touch
                .as_deref()
                .map(|p| Predicate::compile(p, schema))
                .transpose()?;
            let mut read = Vec::new();
            for (ordinal, file) in files.iter().enumerate() {
                let mut next_row = 0u64;
                if let Some(p) = &touch {
                    let started = Instant::now();
                    let hit = any_row_matches(file, table_url, schema, p).await?;
                    metrics.scan_ms += started.elapsed().as_millis() as u64;
                    if !hit {
                        metrics.files_skipped += 1;
                        continue;
                    }
                }
                // A leading filter is applied while decoding where the file allows it.
                // Not when rows carry their positions: those count every live row.
                let filter =
                    pipeline
                        .leading_filter()
                        .filter(|_| row_ids.is_none())
                        .map(|(p, keep)| RowFilterSpec {
                            predicate: p.clone(),
                            keep,
                            dropped: Default::default(),
                        });
                let (mut rows, filtered) =
                    table_rows_filtered(file, table_url, schema, filter.as_ref()).await?;
                let first_step = usize::from(filtered);
                metrics.bytes_read += u64::try_from(file.size_bytes).unwrap_or(0);
                while let Some(batch) = rows.next().await {
                    let mut batch = batch?;
                    metrics.rows_read += batch.num_rows() as u64;
                    if let Some(first) = row_ids {
                        let file_id = first + ordinal as u32;
                        batch = merge::tag_rows(&batch, file_id, next_row)?;
                        next_row += batch.num_rows() as u64;
                    }
                    if let Some(out) = pipeline.apply_from(first_step, batch, metrics)? {
                        sink.accept(&out).await?;
                    }
                }
                if let Some(f) = filter.filter(|_| filtered) {
                    let dropped = f.dropped.load(Ordering::Relaxed);
                    metrics.rows_read += dropped;
                    metrics.rows_deleted += dropped;
                }
                metrics.files_touched += 1;
                read.push(file.clone());
            }
            Ok((read, MergeReport::default()))
        }
        Input::Exchange {
            map_outputs,
            partition,
        } => {
            // A sink that takes rows as they travelled (narrowed decimals) gets them so when
            // no transform needs them conformed first.
            let as_travelled = pipeline.is_empty() && sink.takes_exchange_rows();
            let mut blocks = env.fetcher.partition(&spec.job_id, map_outputs, *partition);
            while let Some(block) = blocks.next().await {
                let (block, remote) = block?;
                for batch in fetched(&block, remote, as_travelled, metrics)? {
                    let batch = if as_travelled {
                        batch
                    } else {
                        conform_batch(&batch, schema)?
                    };
                    push(batch, pipeline, sink, metrics).await?;
                }
            }
            Ok((Vec::new(), MergeReport::default()))
        }
        Input::Merge {
            target,
            source,
            merge: merge_spec,
        } => {
            super::merge::drain(
                super::merge::MergeTask {
                    spec,
                    env,
                    table_url,
                    schema,
                    target,
                    source,
                    merge: merge_spec,
                },
                pipeline,
                sink,
                metrics,
            )
            .await
        }
        Input::DeletedRows { files, rows } => {
            // One row per file: its index in the input and its rows.
            let schema = std::sync::Arc::new(Schema::new(vec![
                arrow::datatypes::Field::new("file", arrow::datatypes::DataType::UInt32, false),
                arrow::datatypes::Field::new("rows", arrow::datatypes::DataType::Binary, false),
            ]));
            for (chunk, start) in rows.chunks(256).zip((0u32..).step_by(256)) {
                let batch = RecordBatch::try_new(
                    schema.clone(),
                    vec![
                        std::sync::Arc::new(arrow::array::UInt32Array::from_iter_values(
                            start..start + chunk.len() as u32,
                        )),
                        std::sync::Arc::new(arrow::array::BinaryArray::from_iter_values(chunk)),
                    ],
                )?;
                metrics.rows_read += batch.num_rows() as u64;
                sink.accept(&batch).await?;
            }
            metrics.files_touched += files.len() as u64;
            Ok((Vec::new(), MergeReport::default()))
        }
        Input::Objects { paths } => {
            // Rows of paths, a bounded number per batch, straight to the sink.
            let schema = std::sync::Arc::new(Schema::new(vec![arrow::datatypes::Field::new(
                "path",
                arrow::datatypes::DataType::Utf8,
                false,
            )]));
            for chunk in paths.chunks(1024) {
                let batch = RecordBatch::try_new(
                    schema.clone(),
                    vec![std::sync::Arc::new(
                        arrow::array::StringArray::from_iter_values(chunk),
                    )],
                )?;
                metrics.rows_read += batch.num_rows() as u64;
                sink.accept(&batch).await?;
            }
            Ok((Vec::new(), MergeReport::default()))
        }
    }
}

/// Fetches one side of a MERGE join (one exchange partition) into memory.
pub(super) async fn collect_side(
    (map_outputs, partition): (&[MapOutputRef], u32),
    spec: &TaskSpec,
    env: &TaskEnv,
    metrics: &mut TaskMetrics,
) -> Result<Vec<RecordBatch>> {
    let mut out = Vec::new();
    let mut blocks = env.fetcher.partition(&spec.job_id, map_outputs, partition);
    while let Some(block) = blocks.next().await {
        let (block, remote) = block?;
        out.extend(fetched(&block, remote, false, metrics)?);
    }
    Ok(out)
}

/// A fetched exchange block's rows (`as_travelled`: with decimals still narrowed), counted
/// into `metrics`.
fn fetched(
    block: &[u8],
    remote: bool,
    as_travelled: bool,
    metrics: &mut TaskMetrics,
) -> Result<Vec<RecordBatch>> {
    metrics.bytes_read += block.len() as u64;
    if remote {
        metrics.bytes_fetched_remote += block.len() as u64;
    }
    let batches = if as_travelled {
        decode_block_narrow(block)?
    } else {
        decode_block(block)?
    };
    metrics.rows_read += batches.iter().map(|b| b.num_rows() as u64).sum::<u64>();
    Ok(batches)
}

pub(super) async fn push(
    batch: RecordBatch,
    pipeline: &Pipeline,
    sink: &mut OpenSink,
    metrics: &mut TaskMetrics,
) -> Result<()> {
    if let Some(out) = pipeline.apply(batch, metrics)? {
        sink.accept(&out).await?;
    }
    Ok(())
}

/// A table data file's live rows (deletion vector applied, partition values filled in) with
/// the columns of `columns` (the table schema or a subset of it), conformed to it.
pub(super) async fn table_rows(
    file: &DataFile,
    table_url: &Url,
    columns: &SchemaRef,
) -> Result<futures::stream::BoxStream<'static, Result<RecordBatch>>> {
    Ok(table_rows_filtered(file, table_url, columns, None).await?.0)
}

/// [`table_rows`], leaving out the rows `filter` drops while decoding where the file allows
/// it (the flag says whether it did).
async fn table_rows_filtered(
    file: &DataFile,
    table_url: &Url,
    columns: &SchemaRef,
    filter: Option<&RowFilterSpec>,
) -> Result<(
    futures::stream::BoxStream<'static, Result<RecordBatch>>,
    bool,
)> {
    let split = file_split(table_url, file)?;
    let (stream, filtered) =
        read_split_filtered(&split, columns.clone(), TABLE_BATCH_ROWS, filter).await?;
    let target = columns.clone();
    // Partition columns outside `columns` come along as constants: leave them out.
    let rows = stream
        .map(move |b| {
            b.and_then(|b| {
                let keep: Vec<usize> = (0..b.num_columns())
                    .filter(|&i| target.index_of(b.schema().field(i).name()).is_ok())
                    .collect();
                conform_batch(&b.project(&keep)?, &target)
            })
        })
        .boxed();
    Ok((rows, filtered))
}

/// Whether some live row of the file satisfies `touch`. Reads only the predicate's columns
/// and stops at the first match.
async fn any_row_matches(
    file: &DataFile,
    table_url: &Url,
    schema: &SchemaRef,
    touch: &Predicate,
) -> Result<bool> {
    let wanted = touch.columns();
    let projected = std::sync::Arc::new(Schema::new(
        schema
            .fields()
            .iter()
            .filter(|f| wanted.contains(f.name()))
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect::<Vec<_>>(),
    ));
    let mut rows = table_rows(file, table_url, &projected).await?;
    while let Some(batch) = rows.next().await {
        let batch = batch?;
        if touch.evaluate(&batch)?.true_count() > 0 {
            return Ok(true);
        }
    }
    Ok(false)
}
