//! Sinks: Delta data files of the task's table, or an exchange.

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use silt_common::Result;
use silt_common::exchange::Partitioner;
use silt_common::expr::Expression;
use silt_common::storage::store_for;
use silt_common::task::{
    MapOutput, MapOutputRef, Sink, TableSpec, TaskMetrics, TaskOutput, TaskSpec,
};
use silt_common::write::DataFileWriter;
use silt_common::write::writer::WriterSpec;

use super::{TaskEnv, parse_url};
use crate::shuffle::ShuffleStore;

/// Per-task resources.
#[derive(Debug, Clone)]
pub struct TaskLimits {
    /// Bytes of encoded data a task's writer may buffer.
    pub memory_limit_bytes: usize,
}

/// An open sink.
pub enum OpenSink {
    Files(Box<DataFileWriter>),
    Exchange(Box<MapSink>),
}

/// A map task's exchange output, kept in this executor's shuffle store.
pub struct MapSink {
    partitioner: Partitioner,
    store: ShuffleStore,
    job: String,
    location: MapOutputRef,
    partition_bytes: Vec<u64>,
    /// Encoded bytes the store spilled to local disk.
    spilled: u64,
}

impl MapSink {
    fn put(&mut self, blocks: Vec<(u32, Vec<u8>)>) -> Result<()> {
        for (p, block) in blocks {
            self.partition_bytes[p as usize] += block.len() as u64;
            self.spilled += self.store.put(&self.job, &self.location.map_id, p, block)?;
        }
        Ok(())
    }
}

/// Opens the task's sink for this attempt: names of what it writes carry the attempt tag.
pub fn open(spec: &TaskSpec, schema: &SchemaRef, env: &TaskEnv) -> Result<OpenSink> {
    let table: &TableSpec = &spec.task.table;
    let attempt_tag = spec.attempt_tag();
    Ok(match &spec.task.sink {
        Sink::DataFiles(files) => {
            let (store, root) = store_for(&parse_url(&table.uri)?)?;
            let wspec = WriterSpec::for_attempt(&table.partition_columns, files, &attempt_tag);
            OpenSink::Files(Box::new(
                DataFileWriter::try_new(store, root, wspec, schema.clone())?
                    .with_memory_limit(env.limits.memory_limit_bytes),
            ))
        }
        Sink::Exchange { keys, partitions } => {
            let keys = keys
                .iter()
                .map(|k| Expression::compile(k, schema))
                .collect::<Result<Vec<_>>>()?;
            let partitioner = Partitioner::try_new(
                schema.clone(),
                keys,
                *partitions,
                env.limits.memory_limit_bytes / 2,
            )?;
            env.shuffle.open(&spec.job_id, &attempt_tag, *partitions);
            OpenSink::Exchange(Box::new(MapSink {
                partitioner,
                store: env.shuffle.clone(),
                job: spec.job_id.clone(),
                location: MapOutputRef {
                    address: env.shuffle_address.clone(),
                    map_id: attempt_tag,
                    map_stage: spec.stage,
                    map_index: spec.index,
                },
                partition_bytes: vec![0; *partitions as usize],
                spilled: 0,
            }))
        }
    })
}

impl OpenSink {
    pub async fn accept(&mut self, batch: &RecordBatch) -> Result<()> {
        match self {
            OpenSink::Files(w) => w.write(batch).await,
            OpenSink::Exchange(m) => {
                let blocks = m.partitioner.push(batch)?;
                m.put(blocks)
            }
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
            OpenSink::Exchange(mut m) => {
                let blocks = m.partitioner.finish()?;
                m.put(blocks)?;
                m.store.complete(&m.job, &m.location.map_id)?;
                metrics.bytes_written = m.partition_bytes.iter().sum();
                metrics.bytes_spilled += m.spilled;
                Ok(TaskOutput {
                    exchange_output: Some(MapOutput {
                        location: m.location,
                        partition_bytes: m.partition_bytes,
                    }),
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
            OpenSink::Exchange(m) => m.store.remove(&m.job, &m.location.map_id),
        }
    }
}
