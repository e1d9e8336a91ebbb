//! Task runners. Each takes a [`TaskSpec`] and returns the files it wrote.
//!
//! Memory: sources are streamed batch by batch; the data file writer bounds what it
//! buffers (`memory_limit_bytes`), closing its largest open file early when over; exchange
//! streams flush every few MiB.

use std::sync::Arc;
use std::time::Instant;

use arrow::array::{Array, ArrayRef, BooleanArray};
use arrow::compute::filter_record_batch;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use futures::StreamExt;
use futures::future::BoxFuture;
use parquet::arrow::ParquetRecordBatchStreamBuilder;
use silt_common::predicate::Predicate;
use silt_common::schema::{conform_batch, constant_array, delta_json_to_arrow};
use silt_common::shuffle::{ShuffleWriter, read_reducer_input};
use silt_common::source::{ObjectReader, read_split};
use silt_common::storage::{join_url, store_for};
use silt_common::task::{
    DataFile, SourceSplit, TaskKind, TaskMetrics, TaskOutput, TaskSpec, WriterSpec,
};
use silt_common::writer::DataFileWriter;
use silt_common::{Error, Result};
use url::Url;

/// Rows per batch read from sources.
const BATCH_ROWS: usize = 64 * 1024;

/// Per-task resources.
#[derive(Debug, Clone)]
pub struct TaskLimits {
    /// Bytes of encoded data a task's writer may buffer.
    pub memory_limit_bytes: usize,
}

/// Runs one task attempt to completion.
pub async fn run_task(spec: &TaskSpec, limits: &TaskLimits) -> Result<TaskOutput> {
    let started = Instant::now();
    let attempt_tag = format!("s{}-t{}-a{}", spec.stage, spec.index, spec.attempt);
    let mut out = match &spec.kind {
        TaskKind::Write {
            splits,
            source_schema_json,
            check_predicate,
            writer,
        } => {
            let writer = attempt_writer(writer, &attempt_tag);
            run_write(
                splits,
                source_schema_json,
                check_predicate.as_deref(),
                &writer,
                limits,
            )
            .await?
        }
        TaskKind::ShuffleMap {
            splits,
            source_schema_json,
            check_predicate,
            writer,
            num_reducers,
            shuffle_uri,
        } => {
            let dir = join_url(&parse_url(shuffle_uri)?, &format!("{attempt_tag}/"))?;
            run_shuffle_map(
                splits,
                source_schema_json,
                check_predicate.as_deref(),
                writer,
                *num_reducers,
                &dir,
            )
            .await?
        }
        TaskKind::ShuffleReduce {
            map_outputs,
            reducer,
            writer,
        } => {
            let writer = attempt_writer(writer, &attempt_tag);
            run_shuffle_reduce(map_outputs, *reducer, &writer, limits).await?
        }
        TaskKind::Rewrite {
            files,
            predicate,
            writer,
        } => {
            let writer = attempt_writer(writer, &attempt_tag);
            run_rewrite(files, predicate, &writer, limits).await?
        }
    };
    out.metrics.elapsed_ms = started.elapsed().as_millis() as u64;
    Ok(out)
}

fn parse_url(s: &str) -> Result<Url> {
    Url::parse(s).map_err(|e| Error::invalid(format!("bad URL `{s}`: {e}")))
}

/// File names are unique per job, stage, task and attempt.
fn attempt_writer(w: &WriterSpec, attempt_tag: &str) -> WriterSpec {
    let mut w = w.clone();
    w.file_prefix = format!("{}-{attempt_tag}", w.file_prefix);
    w
}

fn open_writer(
    spec: &WriterSpec,
    schema: SchemaRef,
    limits: &TaskLimits,
) -> Result<DataFileWriter> {
    let (store, root) = store_for(&parse_url(&spec.table_uri)?)?;
    Ok(DataFileWriter::try_new(store, root, spec.clone(), schema)?
        .with_memory_limit(limits.memory_limit_bytes))
}

/// Where conformed source rows go.
trait BatchSink: Send + Sized {
    fn accept<'a>(&'a mut self, batch: &'a RecordBatch) -> BoxFuture<'a, Result<()>>;
    /// Gives up: deletes whatever the sink wrote.
    fn abort(self) -> BoxFuture<'static, ()>;
}

impl BatchSink for DataFileWriter {
    fn accept<'a>(&'a mut self, batch: &'a RecordBatch) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.write(batch))
    }
    fn abort(self) -> BoxFuture<'static, ()> {
        Box::pin(DataFileWriter::abort(self))
    }
}

impl BatchSink for ShuffleWriter {
    fn accept<'a>(&'a mut self, batch: &'a RecordBatch) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.write(batch))
    }
    fn abort(self) -> BoxFuture<'static, ()> {
        Box::pin(ShuffleWriter::abort(self))
    }
}

/// Streams every split into `sink` ([`for_each_source_batch`]) and hands the sink back to be
/// finished; on failure the sink is aborted first.
async fn drain_source_into<S: BatchSink>(
    mut sink: S,
    splits: &[SourceSplit],
    source_schema_json: &str,
    check_predicate: Option<&str>,
    table_schema: &SchemaRef,
    metrics: &mut TaskMetrics,
) -> Result<S> {
    let res = for_each_source_batch(
        splits,
        source_schema_json,
        check_predicate,
        table_schema,
        metrics,
        &mut sink,
    )
    .await;
    match res {
        Ok(()) => Ok(sink),
        Err(e) => {
            sink.abort().await;
            Err(e)
        }
    }
}

/// Reads every split, conforms rows to the table schema and checks the predicate,
/// handing each batch to `sink`.
async fn for_each_source_batch(
    splits: &[SourceSplit],
    source_schema_json: &str,
    check_predicate: Option<&str>,
    table_schema: &SchemaRef,
    metrics: &mut TaskMetrics,
    sink: &mut impl BatchSink,
) -> Result<()> {
    let source_schema = delta_json_to_arrow(source_schema_json)?;
    let predicate = match check_predicate {
        Some(p) => Some(Predicate::compile(p, table_schema)?),
        None => None,
    };
    for split in splits {
        let mut stream = read_split(split, source_schema.clone(), BATCH_ROWS).await?;
        metrics.bytes_read += split.size_bytes;
        while let Some(batch) = stream.next().await {
            let batch = conform_batch(&batch?, table_schema)?;
            metrics.rows_read += batch.num_rows() as u64;
            if let Some(p) = &predicate {
                check_all_match(p, &batch)?;
            }
            sink.accept(&batch).await?;
        }
    }
    Ok(())
}

/// replaceWhere: every new row must satisfy the predicate.
fn check_all_match(p: &Predicate, batch: &RecordBatch) -> Result<()> {
    let mask = p.evaluate(batch)?;
    let bad = (0..mask.len())
        .filter(|&i| !(mask.is_valid(i) && mask.value(i)))
        .count();
    if bad > 0 {
        return Err(Error::DataViolation(format!(
            "{bad} new row(s) do not satisfy the replaceWhere predicate `{}`",
            p.sql()
        )));
    }
    Ok(())
}

async fn run_write(
    splits: &[SourceSplit],
    source_schema_json: &str,
    check_predicate: Option<&str>,
    spec: &WriterSpec,
    limits: &TaskLimits,
) -> Result<TaskOutput> {
    let schema = delta_json_to_arrow(&spec.table_schema_json)?;
    let writer = open_writer(spec, schema.clone(), limits)?;
    let mut metrics = TaskMetrics::default();
    let writer = drain_source_into(
        writer,
        splits,
        source_schema_json,
        check_predicate,
        &schema,
        &mut metrics,
    )
    .await?;
    finish_writer(writer, metrics).await
}

async fn finish_writer(writer: DataFileWriter, mut metrics: TaskMetrics) -> Result<TaskOutput> {
    let adds = writer.close().await?;
    metrics.files_written = adds.len() as u64;
    metrics.rows_written = adds.iter().map(|a| a.num_records.max(0) as u64).sum();
    metrics.bytes_written = adds.iter().map(|a| a.size_bytes.max(0) as u64).sum();
    Ok(TaskOutput {
        adds,
        removes: Vec::new(),
        shuffle_output: None,
        metrics,
    })
}

async fn run_shuffle_map(
    splits: &[SourceSplit],
    source_schema_json: &str,
    check_predicate: Option<&str>,
    spec: &WriterSpec,
    num_reducers: u32,
    dir: &Url,
) -> Result<TaskOutput> {
    let schema = delta_json_to_arrow(&spec.table_schema_json)?;
    let key_columns = spec
        .partition_columns
        .iter()
        .map(|c| {
            schema
                .index_of(c)
                .map_err(|_| Error::internal(format!("partition column `{c}` not in schema")))
        })
        .collect::<Result<Vec<_>>>()?;
    let shuffle = ShuffleWriter::try_new(dir, schema.clone(), key_columns, num_reducers)?;
    let mut metrics = TaskMetrics::default();
    let shuffle = drain_source_into(
        shuffle,
        splits,
        source_schema_json,
        check_predicate,
        &schema,
        &mut metrics,
    )
    .await?;
    let (output, bytes) = shuffle.finish().await?;
    metrics.bytes_written = bytes;
    Ok(TaskOutput {
        adds: Vec::new(),
        removes: Vec::new(),
        shuffle_output: Some(output),
        metrics,
    })
}

async fn run_shuffle_reduce(
    map_outputs: &[String],
    reducer: u32,
    spec: &WriterSpec,
    limits: &TaskLimits,
) -> Result<TaskOutput> {
    let schema = delta_json_to_arrow(&spec.table_schema_json)?;
    let mut writer = open_writer(spec, schema.clone(), limits)?;
    let mut metrics = TaskMetrics::default();
    for out in map_outputs {
        let batches = match read_reducer_input(out, reducer).await {
            Ok(b) => b,
            Err(e) => {
                writer.abort().await;
                return Err(e);
            }
        };
        for b in batches {
            metrics.rows_read += b.num_rows() as u64;
            let b = RecordBatch::try_new(schema.clone(), b.columns().to_vec())?;
            if let Err(e) = writer.write(&b).await {
                writer.abort().await;
                return Err(e);
            }
        }
    }
    finish_writer(writer, metrics).await
}

async fn run_rewrite(
    files: &[DataFile],
    predicate_sql: &str,
    spec: &WriterSpec,
    limits: &TaskLimits,
) -> Result<TaskOutput> {
    let schema = delta_json_to_arrow(&spec.table_schema_json)?;
    let predicate = Predicate::compile(predicate_sql, &schema)?;
    let table_url = parse_url(&spec.table_uri)?;
    let mut writer = open_writer(spec, schema.clone(), limits)?;
    let mut metrics = TaskMetrics::default();
    let mut removes = Vec::new();
    for file in files {
        match rewrite_one(
            file,
            &table_url,
            &schema,
            &spec.partition_columns,
            &predicate,
            &mut writer,
            &mut metrics,
        )
        .await
        {
            Ok(true) => removes.push(file.clone()),
            Ok(false) => {}
            Err(e) => {
                writer.abort().await;
                return Err(e);
            }
        }
    }
    let mut out = finish_writer(writer, metrics).await?;
    out.removes = removes;
    Ok(out)
}

/// Streams a data file's rows as complete table rows (partition values are not stored in
/// the files), conformed to the table schema.
async fn table_rows(
    file: &DataFile,
    table_url: &Url,
    schema: &SchemaRef,
    partition_columns: &[String],
) -> Result<futures::stream::BoxStream<'static, Result<RecordBatch>>> {
    let url = join_url(table_url, &file.path)?;
    let (store, path) = store_for(&url)?;
    let reader = ObjectReader::new(store, path, file.size_bytes.max(0) as u64);
    let path_str = url.to_string();
    let corrupt = move |e: parquet::errors::ParquetError| Error::CorruptFile {
        path: path_str.clone(),
        reason: e.to_string(),
    };
    let stream = ParquetRecordBatchStreamBuilder::new(reader)
        .await
        .map_err(corrupt.clone())?
        .with_batch_size(BATCH_ROWS)
        .build()
        .map_err(corrupt.clone())?;
    let schema = schema.clone();
    let nullable_schema = Arc::new(arrow::datatypes::Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect::<Vec<_>>(),
    ));
    let parts: Vec<(usize, Option<String>)> = schema
        .fields()
        .iter()
        .enumerate()
        .filter(|(_, f)| partition_columns.iter().any(|c| c == f.name()))
        .map(|(i, f)| (i, file.partition_values.get(f.name()).cloned().flatten()))
        .collect();
    Ok(stream
        .map(move |b| {
            let b = b.map_err(corrupt.clone())?;
            let n = b.num_rows();
            let mut cols: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
            for (i, field) in schema.fields().iter().enumerate() {
                if let Some((_, v)) = parts.iter().find(|(pi, _)| *pi == i) {
                    cols.push(constant_array(field, v.as_deref(), n)?);
                } else {
                    match b.column_by_name(field.name()) {
                        Some(c) => cols.push(c.clone()),
                        None => cols.push(arrow::array::new_null_array(field.data_type(), n)),
                    }
                }
            }
            let with_parts = RecordBatch::try_new(nullable_schema.clone(), cols)?;
            conform_batch(&with_parts, &schema)
        })
        .boxed())
}

/// Rows for which the predicate is not true.
fn not_matching(predicate: &Predicate, batch: &RecordBatch) -> Result<BooleanArray> {
    let mask = predicate.evaluate(batch)?;
    Ok((0..mask.len())
        .map(|i| Some(!(mask.is_valid(i) && mask.value(i))))
        .collect())
}

/// Rewrites one file without the rows matching `predicate`. Returns whether any row matched
/// (and so the file must be removed). Files with no matching row are left as they are;
/// the other rows of a partly matching file are written to new files. Two streaming passes
/// keep memory bounded by a batch, not a file.
async fn rewrite_one(
    file: &DataFile,
    table_url: &Url,
    schema: &SchemaRef,
    partition_columns: &[String],
    predicate: &Predicate,
    writer: &mut DataFileWriter,
    metrics: &mut TaskMetrics,
) -> Result<bool> {
    metrics.bytes_read += file.size_bytes.max(0) as u64;
    let mut rows = table_rows(file, table_url, schema, partition_columns).await?;
    let mut any_match = false;
    while let Some(b) = rows.next().await {
        let b = b?;
        metrics.rows_read += b.num_rows() as u64;
        if not_matching(predicate, &b)?.true_count() < b.num_rows() {
            any_match = true;
            break;
        }
    }
    if !any_match {
        return Ok(false);
    }
    let mut rows = table_rows(file, table_url, schema, partition_columns).await?;
    while let Some(b) = rows.next().await {
        let b = b?;
        let kept = filter_record_batch(&b, &not_matching(predicate, &b)?)?;
        metrics.rows_copied += kept.num_rows() as u64;
        if kept.num_rows() > 0 {
            writer.write(&kept).await?;
        }
    }
    Ok(true)
}
