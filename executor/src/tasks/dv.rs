//! Deletion-vector sinks: [`MarkSink`] gathers the table rows a task marks deleted (and
//! writes the rows that replace them), [`DvSink`] turns gathered rows into deletion vectors
//! (or, where the plan found that cheaper, rewrites the files without those rows).

use std::collections::BTreeMap;

use arrow::array::{Array, AsArray};
use arrow::compute::filter_record_batch;
use arrow::datatypes::{SchemaRef, UInt32Type, UInt64Type};
use arrow::record_batch::RecordBatch;
use futures::StreamExt;
use roaring::RoaringTreemap;
use silt_common::merge::{FILE_COL, ROW_COL, WRITE_COL};
use silt_common::table::dv::{self, DvFile};
use silt_common::task::{DataFile, FileRows, Input, TaskMetrics, TaskOutput, TaskSpec};
use silt_common::write::DataFileWriter;
use silt_common::{Error, Result};
use url::Url;

/// Rows marked deleted per file ordinal, and the rows written instead.
pub struct MarkSink {
    marked: BTreeMap<u32, RoaringTreemap>,
    writer: Option<DataFileWriter>,
    /// Table columns, in order: what is written of a row.
    columns: Vec<String>,
}

impl MarkSink {
    pub fn new(writer: Option<DataFileWriter>, columns: Vec<String>) -> Self {
        Self {
            marked: BTreeMap::new(),
            writer,
            columns,
        }
    }

    pub async fn accept(&mut self, batch: &RecordBatch) -> Result<()> {
        let ids = batch
            .column_by_name(FILE_COL)
            .and_then(|c| c.as_primitive_opt::<UInt32Type>())
            .zip(
                batch
                    .column_by_name(ROW_COL)
                    .and_then(|c| c.as_primitive_opt::<UInt64Type>()),
            );
        if let Some((files, rows)) = ids {
            for i in 0..batch.num_rows() {
                if files.is_valid(i) && rows.is_valid(i) {
                    self.marked
                        .entry(files.value(i))
                        .or_default()
                        .insert(rows.value(i));
                }
            }
        } else if batch.num_rows() > 0 {
            return Err(Error::internal(
                "rows marking table rows deleted carry no row ids",
            ));
        }
        let Some(writer) = &mut self.writer else {
            return Ok(());
        };
        let batch = match batch
            .column_by_name(WRITE_COL)
            .and_then(|c| c.as_boolean_opt())
        {
            Some(write) => {
                let write = if write.null_count() > 0 {
                    arrow::compute::prep_null_mask_filter(write)
                } else {
                    write.clone()
                };
                match write.true_count() {
                    0 => return Ok(()),
                    n if n == batch.num_rows() => batch.clone(),
                    _ => filter_record_batch(batch, &write)?,
                }
            }
            None => batch.clone(),
        };
        let keep: Vec<usize> = self
            .columns
            .iter()
            .map(|c| {
                batch
                    .schema()
                    .index_of(c)
                    .map_err(|_| Error::internal(format!("rows to write have no column `{c}`")))
            })
            .collect::<Result<_>>()?;
        writer.write(&batch.project(&keep)?).await
    }

    pub async fn finish(self, mut metrics: TaskMetrics) -> Result<TaskOutput> {
        let adds = match self.writer {
            Some(w) => w.close().await?,
            None => Vec::new(),
        };
        metrics.files_written = adds.len() as u64;
        metrics.rows_written = adds.iter().map(|a| a.num_records.max(0) as u64).sum();
        metrics.bytes_written = adds.iter().map(|a| a.size_bytes.max(0) as u64).sum();
        Ok(TaskOutput {
            adds,
            deleted_rows: self
                .marked
                .iter()
                .map(|(&file, rows)| FileRows {
                    file,
                    rows: dv::serialize_rows(rows),
                })
                .collect(),
            metrics,
            ..Default::default()
        })
    }

    pub async fn abort(self) {
        if let Some(w) = self.writer {
            w.abort().await;
        }
    }
}

/// New deletion vectors for the files of a [`Input::DeletedRows`] input, in one vector file;
/// or, with a writer, the files rewritten without the rows.
pub struct DvSink {
    table_url: Url,
    files: Vec<DataFile>,
    file: DvFile,
    adds: Vec<DataFile>,
    removes: Vec<DataFile>,
    /// Copy-on-write: the table's columns and the writer of the remaining rows.
    rewrite: Option<(SchemaRef, DataFileWriter)>,
    rows_copied: u64,
}

impl DvSink {
    pub fn open(
        spec: &TaskSpec,
        table_url: &Url,
        file_prefix: &str,
        rewrite: Option<(SchemaRef, DataFileWriter)>,
    ) -> Result<Self> {
        let Input::DeletedRows { files, .. } = &spec.task.input else {
            return Err(Error::internal(
                "a deletion-vector sink needs rows to delete as its input",
            ));
        };
        Ok(Self {
            table_url: table_url.clone(),
            files: files.clone(),
            file: DvFile::new(&silt_common::task::attempt_vector_dir(
                file_prefix,
                &spec.attempt_tag(),
            )),
            adds: Vec::new(),
            removes: Vec::new(),
            rewrite,
            rows_copied: 0,
        })
    }

    /// Rows of `(file: index in the input, rows: bitmap of live positions)`.
    pub async fn accept(&mut self, batch: &RecordBatch) -> Result<()> {
        let bad = || Error::internal("deleted rows without their `file` and `rows` columns");
        let index = batch
            .column_by_name("file")
            .and_then(|c| c.as_primitive_opt::<UInt32Type>())
            .ok_or_else(bad)?;
        let rows = batch
            .column_by_name("rows")
            .and_then(|c| c.as_binary_opt::<i32>())
            .ok_or_else(bad)?;
        for i in 0..batch.num_rows() {
            let file = self
                .files
                .get(index.value(i) as usize)
                .ok_or_else(|| Error::internal("deleted rows of a file not in the task"))?
                .clone();
            let live = dv::deserialize_rows(rows.value(i))?;
            self.mark(file, &live).await?;
        }
        Ok(())
    }

    /// The file's new vector: its old one and the rows at `live` positions (copy-on-write:
    /// its other live rows written anew).
    async fn mark(&mut self, file: DataFile, live: &RoaringTreemap) -> Result<()> {
        if let Some((schema, writer)) = &mut self.rewrite {
            let mut rows = super::inputs::table_rows(&file, &self.table_url, schema).await?;
            let mut position = 0u64;
            while let Some(batch) = rows.next().await {
                let batch = batch?;
                let n = batch.num_rows() as u64;
                let keep: arrow::array::BooleanArray = (position..position + n)
                    .map(|p| Some(!live.contains(p)))
                    .collect();
                position += n;
                let kept = filter_record_batch(&batch, &keep)?;
                if kept.num_rows() > 0 {
                    self.rows_copied += kept.num_rows() as u64;
                    writer.write(&kept).await?;
                }
            }
            self.removes.push(file);
            return Ok(());
        }
        let old = match &file.deletion_vector {
            Some(v) => dv::load(v, &self.table_url).await?,
            None => RoaringTreemap::new(),
        };
        let all = &old | &dv::live_to_physical(live, &old);
        if file.num_records >= 0 && all.len() >= file.num_records as u64 {
            // No row left: the file is removed.
            self.removes.push(file);
            return Ok(());
        }
        let descriptor = self.file.push(&all)?;
        let mut add = file.clone();
        add.deletion_vector = Some(descriptor);
        add.stats_json = add.stats_json.as_deref().map(loose_bounds);
        self.removes.push(file);
        self.adds.push(add);
        Ok(())
    }

    pub async fn abort(self) {
        if let Some((_, w)) = self.rewrite {
            w.abort().await;
        }
    }

    pub async fn finish(mut self, mut metrics: TaskMetrics) -> Result<TaskOutput> {
        if !self.adds.is_empty() {
            let (_, size) = self.file.write(&self.table_url).await?;
            metrics.bytes_written += size;
        }
        if let Some((_, writer)) = self.rewrite {
            let written = writer.close().await?;
            metrics.files_written += written.len() as u64;
            metrics.rows_written += self.rows_copied;
            metrics.rows_copied += self.rows_copied;
            metrics.bytes_written += written
                .iter()
                .map(|a| a.size_bytes.max(0) as u64)
                .sum::<u64>();
            self.adds.extend(written);
        }
        Ok(TaskOutput {
            adds: self.adds,
            removes: self.removes,
            metrics,
            ..Default::default()
        })
    }
}

/// A file's statistics once some of its rows are deleted: the bounds still hold for the live
/// rows but may no longer be reached (`tightBounds: false`, as Delta Spark writes it).
fn loose_bounds(stats: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(stats) {
        Ok(serde_json::Value::Object(mut m)) => {
            m.insert("tightBounds".into(), serde_json::Value::Bool(false));
            serde_json::Value::Object(m).to_string()
        }
        _ => stats.to_string(),
    }
}
