//! Sinks: Delta data files of the task's table, or an exchange.

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use silt_common::Result;
use silt_common::exchange::ShuffleWriter;
use silt_common::expr::Expression;
use silt_common::storage::{join_url, store_for};
use silt_common::task::{Sink, TableSpec, TaskMetrics, TaskOutput};
use silt_common::write::DataFileWriter;
use silt_common::write::writer::WriterSpec;

use super::parse_url;

/// Per-task resources.
#[derive(Debug, Clone)]
pub struct TaskLimits {
    /// Bytes of encoded data a task's writer may buffer.
    pub memory_limit_bytes: usize,
}

/// An open sink.
pub enum OpenSink {
    Files(Box<DataFileWriter>),
    Exchange(ShuffleWriter),
}

/// Opens the task's sink for this attempt: names of what it writes carry the attempt tag.
pub fn open(
    sink: &Sink,
    table: &TableSpec,
    schema: &SchemaRef,
    attempt_tag: &str,
    limits: &TaskLimits,
) -> Result<OpenSink> {
    Ok(match sink {
        Sink::DataFiles(files) => {
            let (store, root) = store_for(&parse_url(&table.uri)?)?;
            let spec = WriterSpec::for_attempt(&table.partition_columns, files, attempt_tag);
            OpenSink::Files(Box::new(
                DataFileWriter::try_new(store, root, spec, schema.clone())?
                    .with_memory_limit(limits.memory_limit_bytes),
            ))
        }
        Sink::Exchange {
            location,
            keys,
            partitions,
        } => {
            let dir = join_url(&parse_url(location)?, &format!("{attempt_tag}/"))?;
            let keys = keys
                .iter()
                .map(|k| Expression::compile(k, schema))
                .collect::<Result<Vec<_>>>()?;
            OpenSink::Exchange(ShuffleWriter::try_new(
                &dir,
                schema.clone(),
                keys,
                *partitions,
            )?)
        }
    })
}

impl OpenSink {
    pub async fn accept(&mut self, batch: &RecordBatch) -> Result<()> {
        match self {
            OpenSink::Files(w) => w.write(batch).await,
            OpenSink::Exchange(w) => w.write(batch).await,
        }
    }

    /// Finishes what was written; the output carries the task's counters.
    pub async fn finish(self, mut metrics: TaskMetrics) -> Result<TaskOutput> {
        match self {
            OpenSink::Files(w) => {
                let adds = w.close().await?;
                metrics.files_written = adds.len() as u64;
                metrics.rows_written = adds.iter().map(|a| a.num_records.max(0) as u64).sum();
                metrics.bytes_written = adds.iter().map(|a| a.size_bytes.max(0) as u64).sum();
                Ok(TaskOutput {
                    adds,
                    metrics,
                    ..Default::default()
                })
            }
            OpenSink::Exchange(w) => {
                let (location, bytes) = w.finish().await?;
                metrics.bytes_written = bytes;
                Ok(TaskOutput {
                    exchange_output: Some(location),
                    metrics,
                    ..Default::default()
                })
            }
        }
    }

    /// Gives up: deletes whatever the sink wrote (best effort).
    pub async fn abort(self) {
        match self {
            OpenSink::Files(w) => (*w).abort().await,
            OpenSink::Exchange(w) => w.abort().await,
        }
    }
}
