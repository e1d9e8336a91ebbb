//! Sinks: Delta data files of the task's table (in curve order when the task says so), or
//! an exchange.

use std::path::Path;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use silt_common::Result;
use silt_common::exchange::{Partitioner, Router};
use silt_common::expr::Expression;
use silt_common::spill::Budget;
use silt_common::storage::{local_root, store_for};
use silt_common::task::{
    Input, MapOutput, MapOutputRef, Route, Sink, TableSpec, TaskMetrics, TaskOutput, TaskSpec,
};
use silt_common::write::writer::WriterSpec;
use silt_common::write::{DataFileWriter, SortedWriter};

use super::{TaskEnv, parse_url};
use crate::shuffle::ShuffleStore;

/// Per-task resources.
#[derive(Debug, Clone)]
pub struct TaskLimits {
    /// Bytes a task may hold: its writer's buffers, shared with its sort, join or exchange
    /// partitioner where it has one (see [`open`] and [`TaskLimits::merge_share`]).
    pub memory_limit_bytes: usize,
    /// Where the task's sorts and joins spill (the executor's scratch directory).
    pub spill_dir: Option<Arc<Path>>,
}

impl TaskLimits {
    /// The share of the limit each of a MERGE task's two consumers (its join and its
    /// writer) may hold: half, so that together they stay within the task's limit.
    pub fn merge_share(&self) -> usize {
        self.memory_limit_bytes / 2
    }

    /// `bytes` of memory, spilling to the executor's scratch directory.
    pub fn budget(&self, bytes: usize) -> Budget {
        Budget {
            bytes,
            spill_dir: self.spill_dir.clone(),
        }
    }
}

/// An open sink.
pub enum OpenSink {
    Files(Box<DataFileWriter>),
    Changes(Box<ChangeSink>),
    SortedFiles(Box<SortedWriter>),
    Exchange(Box<MapSink>),
    Delete(Box<DeleteSink>),
    Stats(Box<StatsSink>),
    Mark(Box<super::dv::MarkSink>),
    Dv(Box<super::dv::DvSink>),
}

/// Data files and change data files (see `silt_common::change_data`): rows carrying a
/// change type are split between the two.
pub struct ChangeSink {
    data: DataFileWriter,
    changes: DataFileWriter,
}

impl ChangeSink {
    fn open(
        spec: &TaskSpec,
        schema: &SchemaRef,
        files: &silt_common::task::FileSpec,
        memory_limit: usize,
    ) -> Result<Self> {
        use silt_common::change_data::{CHANGE_DATA_DIR, change_schema};
        let table = &spec.task.table;
        let url = parse_url(&table.uri)?;
        let (store, root) = store_for(&url)?;
        let tag = spec.attempt_tag();
        let data = writer_at(
            &url,
            (store.clone(), root.clone()),
            WriterSpec::for_attempt(&table.partition_columns, files, &tag),
            schema.clone(),
            memory_limit / 2,
        )?;
        // Named as the attempt's data files (so that cleanup by name finds them), without
        // checks: deleted rows and rows before an update are recorded as they were.
        let cdc_spec = WriterSpec {
            checks: Vec::new(),
            file_prefix: silt_common::task::attempt_change_data_prefix(&files.file_prefix, &tag),
            ..WriterSpec::for_attempt(&table.partition_columns, files, &tag)
        };
        let changes = writer_at(
            &url,
            (store, root.join(CHANGE_DATA_DIR)),
            cdc_spec,
            change_schema(schema),
            memory_limit / 2,
        )?;
        Ok(Self { data, changes })
    }

    async fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        let (data, changes) = silt_common::change_data::split(batch)?;
        if let Some(d) = data {
            self.data.write(&d).await?;
        }
        if let Some(c) = changes {
            self.changes.write(&c).await?;
        }
        Ok(())
    }

    async fn close(self, metrics: TaskMetrics) -> Result<TaskOutput> {
        let adds = self.data.close().await;
        let cdc = self.changes.close().await;
        let mut out = files_output(adds?, metrics);
        out.cdc_files = cdc?
            .into_iter()
            .map(|mut f| {
                f.path = format!("{}/{}", silt_common::change_data::CHANGE_DATA_DIR, f.path);
                f.stats_json = None;
                f
            })
            .collect();
        Ok(out)
    }

    async fn abort(self) {
        self.data.abort().await;
        self.changes.abort().await;
    }
}

/// Statistics of each input file, from its rows (tagged with the file's ordinal).
pub struct StatsSink {
    files: Vec<silt_common::task::DataFile>,
    first: u32,
    file_columns: Vec<String>,
    collectors: Vec<silt_common::write::stats::StatsCollector>,
}

impl StatsSink {
    fn open(
        spec: &TaskSpec,
        schema: &SchemaRef,
        stats: &silt_common::task::StatsSpec,
    ) -> Result<Self> {
        let silt_common::task::Input::TableFiles {
            files,
            row_ids: Some(first),
            ..
        } = &spec.task.input
        else {
            return Err(silt_common::Error::internal(
                "a file-stats sink needs table files tagged with their ordinals",
            ));
        };
        let file_schema =
            silt_common::write::stats::data_file_schema(schema, &spec.task.table.partition_columns);
        let collectors = files
            .iter()
            .map(|_| silt_common::write::stats::StatsCollector::try_new(&file_schema, stats))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            files: files.clone(),
            first: *first,
            file_columns: file_schema
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect(),
            collectors,
        })
    }

    fn update(&mut self, batch: &RecordBatch) -> Result<()> {
        use arrow::array::{Array, AsArray};
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let ordinal = batch
            .column_by_name(silt_common::merge::FILE_COL)
            .and_then(|c| c.as_primitive_opt::<arrow::datatypes::UInt32Type>())
            .filter(|c| !c.is_empty())
            .map(|c| c.value(0))
            .ok_or_else(|| silt_common::Error::internal("rows without their file ordinal"))?;
        let i = ordinal
            .checked_sub(self.first)
            .map(|i| i as usize)
            .filter(|&i| i < self.collectors.len())
            .ok_or_else(|| {
                silt_common::Error::internal(format!("file ordinal {ordinal} out of range"))
            })?;
        let columns =
            self.file_columns
                .iter()
                .map(|c| {
                    batch.schema().index_of(c).map_err(|_| {
                        silt_common::Error::internal(format!("rows lack column `{c}`"))
                    })
                })
                .collect::<Result<Vec<_>>>()?;
        self.collectors[i].update(&batch.project(&columns)?)
    }

    fn finish(self) -> Result<Vec<silt_common::task::DataFile>> {
        self.files
            .into_iter()
            .zip(self.collectors)
            .map(|(mut f, c)| {
                let (n, json) = c.finish()?;
                f.num_records = n;
                f.stats_json = Some(json);
                Ok(f)
            })
            .collect()
    }
}

/// Deletes the objects rows name, under the table root.
pub struct DeleteSink {
    store: std::sync::Arc<dyn object_store::ObjectStore>,
    root: object_store::path::Path,
    deleted: u64,
}

impl DeleteSink {
    async fn delete(&mut self, batch: &RecordBatch) -> Result<()> {
        use arrow::array::{Array, AsArray};
        use futures::StreamExt;
        let col = batch
            .column_by_name("path")
            .and_then(|c| c.as_string_opt::<i32>())
            .ok_or_else(|| silt_common::Error::internal("object rows without a `path` column"))?;
        let mut locations = Vec::with_capacity(col.len());
        for p in col.iter().flatten() {
            let rel = object_store::path::Path::parse(p)
                .map_err(|e| silt_common::Error::invalid(format!("bad object path `{p}`: {e}")))?;
            if rel.as_ref().is_empty() || rel.parts().any(|part| part.as_ref() == "..") {
                return Err(silt_common::Error::invalid(format!(
                    "refusing to delete `{p}`: not a file under the table root"
                )));
            }
            let full = rel
                .parts()
                .fold(self.root.clone(), |acc, part| acc.join(part));
            locations.push(Ok(full));
        }
        let mut results = self
            .store
            .delete_stream(futures::stream::iter(locations).boxed());
        while let Some(r) = results.next().await {
            match r {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => self.deleted += 1,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
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

/// A data file writer for the table at `uri`, buffering at most `memory`.
fn table_writer(
    uri: &str,
    spec: WriterSpec,
    schema: SchemaRef,
    memory: usize,
) -> Result<DataFileWriter> {
    let url = parse_url(uri)?;
    let located = store_for(&url)?;
    writer_at(&url, located, spec, schema, memory)
}

/// A data file writer at `root` in `store` (the table at `url`, or a directory of it),
/// buffering at most `memory`; on a local disk its small files go straight to their paths.
fn writer_at(
    url: &url::Url,
    (store, root): (Arc<dyn object_store::ObjectStore>, object_store::path::Path),
    spec: WriterSpec,
    schema: SchemaRef,
    memory: usize,
) -> Result<DataFileWriter> {
    Ok(DataFileWriter::try_new(store, root, spec, schema)?
        .with_memory_limit(memory)
        .writing_locally(local_root(url)))
}

/// Opens the task's sink for this attempt: names of what it writes carry the attempt tag.
pub fn open(spec: &TaskSpec, schema: &SchemaRef, env: &TaskEnv) -> Result<OpenSink> {
    let table: &TableSpec = &spec.task.table;
    let attempt_tag = spec.attempt_tag();
    // What the sink's writers may buffer: a MERGE's join holds the other half.
    let memory = match spec.task.input {
        Input::Merge { .. } => env.limits.merge_share(),
        _ => env.limits.memory_limit_bytes,
    };
    Ok(match &spec.task.sink {
        Sink::DataFiles(files) if files.change_data => {
            OpenSink::Changes(Box::new(ChangeSink::open(spec, schema, files, memory)?))
        }
        Sink::DataFiles(files) => {
            let wspec = WriterSpec::for_attempt(&table.partition_columns, files, &attempt_tag);
            // A sorted task's memory goes to the sort; the writer then buffers little.
            let share = if files.sort_by.is_some() { 4 } else { 1 };
            let writer = table_writer(&table.uri, wspec, schema.clone(), memory / share)?;
            match &files.sort_by {
                Some(curve) => OpenSink::SortedFiles(Box::new(SortedWriter::start(
                    writer,
                    schema,
                    curve,
                    env.limits.budget(memory / 2),
                )?)),
                None => OpenSink::Files(Box::new(writer)),
            }
        }
        Sink::Exchange { route, partitions } => {
            let router = match route {
                Route::Hash(keys) => Router::Hash(
                    keys.iter()
                        .map(|k| Expression::compile(k, schema))
                        .collect::<Result<Vec<_>>>()?,
                ),
                Route::Range(r) => Router::range(r.clone())?,
            };
            let partitioner =
                Partitioner::try_new(schema.clone(), router, *partitions, memory / 2)?;
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
        Sink::FileStats(stats) => OpenSink::Stats(Box::new(StatsSink::open(spec, schema, stats)?)),
        Sink::MarkRows { write } => {
            let writer = match write {
                Some(files) => {
                    let wspec =
                        WriterSpec::for_attempt(&table.partition_columns, files, &attempt_tag);
                    Some(table_writer(&table.uri, wspec, schema.clone(), memory)?)
                }
                None => None,
            };
            let columns = schema.fields().iter().map(|f| f.name().clone()).collect();
            OpenSink::Mark(Box::new(super::dv::MarkSink::new(writer, columns)))
        }
        Sink::DeletionVectors {
            file_prefix,
            rewrite,
        } => {
            let writer = match rewrite {
                Some(files) => {
                    let wspec =
                        WriterSpec::for_attempt(&table.partition_columns, files, &attempt_tag);
                    Some((
                        schema.clone(),
                        table_writer(&table.uri, wspec, schema.clone(), memory)?,
                    ))
                }
                None => None,
            };
            OpenSink::Dv(Box::new(super::dv::DvSink::open(
                spec,
                &parse_url(&table.uri)?,
                file_prefix,
                writer,
            )?))
        }
        Sink::DeleteObjects => {
            let (store, root) = store_for(&parse_url(&table.uri)?)?;
            OpenSink::Delete(Box::new(DeleteSink {
                store,
                root,
                deleted: 0,
            }))
        }
    })
}

impl OpenSink {
    /// Whether the sink takes exchange rows as they travelled (decimals narrowed, see
    /// `silt_common::exchange::narrow_schema`) and conforms them itself.
    pub fn takes_exchange_rows(&self) -> bool {
        matches!(self, OpenSink::SortedFiles(_) | OpenSink::Files(_))
    }

    pub async fn accept(&mut self, batch: &RecordBatch) -> Result<()> {
        match self {
            OpenSink::Files(w) => w.write(batch).await,
            OpenSink::Changes(c) => c.write(batch).await,
            OpenSink::SortedFiles(w) => w.write(batch).await,
            OpenSink::Delete(d) => d.delete(batch).await,
            OpenSink::Stats(s) => s.update(batch),
            OpenSink::Mark(m) => m.accept(batch).await,
            OpenSink::Dv(d) => d.accept(batch).await,
            OpenSink::Exchange(m) => {
                let blocks = m.partitioner.push(batch)?;
                m.put(blocks)
            }
        }
    }

    /// Finishes what was written; the output carries the task's counters.
    pub async fn finish(self, mut metrics: TaskMetrics) -> Result<TaskOutput> {
        match self {
            OpenSink::Files(w) => Ok(files_output(w.close().await?, metrics)),
            OpenSink::Changes(c) => c.close(metrics).await,
            OpenSink::SortedFiles(w) => {
                let (adds, spilled) = w.close().await?;
                metrics.bytes_spilled += spilled;
                Ok(files_output(adds, metrics))
            }
            OpenSink::Mark(m) => m.finish(metrics).await,
            OpenSink::Dv(d) => d.finish(metrics).await,
            OpenSink::Stats(s) => Ok(TaskOutput {
                adds: s.finish()?,
                metrics,
                ..Default::default()
            }),
            OpenSink::Delete(d) => {
                metrics.files_deleted = d.deleted;
                Ok(TaskOutput {
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
            OpenSink::Changes(c) => (*c).abort().await,
            OpenSink::SortedFiles(w) => (*w).abort().await,
            // What was deleted stays deleted: deleting is what the job is for.
            OpenSink::Delete(_) | OpenSink::Stats(_) => {}
            OpenSink::Mark(m) => (*m).abort().await,
            // Its vector file is written only when it finishes.
            OpenSink::Dv(d) => (*d).abort().await,
            OpenSink::Exchange(m) => m.store.remove(&m.job, &m.location.map_id),
        }
    }
}

/// A data-file task's output: its files and their counters.
fn files_output(adds: Vec<silt_common::task::DataFile>, mut metrics: TaskMetrics) -> TaskOutput {
    metrics.files_written = adds.len() as u64;
    metrics.rows_written = adds.iter().map(|a| a.num_records.max(0) as u64).sum();
    metrics.bytes_written = adds.iter().map(|a| a.size_bytes.max(0) as u64).sum();
    TaskOutput {
        adds,
        metrics,
        ..Default::default()
    }
}
