//! Writes a generated table as Parquet files, one thread per core.
//!
//! A table module describes *what* to generate ([`TableGenerator`]); this module decides
//! *how* it is written: files are claimed by worker threads from a shared counter, each file
//! is streamed batch by batch into an [`ArrowWriter`] (memory per thread is about one batch
//! plus one row group of encoded pages), written to a temporary name and renamed when
//! complete, so a crashed run never leaves a truncated `part-*.parquet` behind.

use std::fs::{self, File};
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::{WriterProperties, WriterPropertiesBuilder};

/// Upper bound on rows per generated batch, so a typo cannot ask for a multi-GB batch.
pub const MAX_BATCH_ROWS: usize = 1 << 20;
/// Upper bound on the number of output files of one run.
pub const MAX_FILES: usize = 1 << 20;

/// A table that can be generated file by file. Implementations must be deterministic: the
/// batches of file `i` depend only on the generator's construction parameters and `i`.
pub trait TableGenerator: Sync {
    /// TPC-DS table name, e.g. `store_sales`.
    fn name(&self) -> &'static str;
    fn schema(&self) -> SchemaRef;
    fn file_count(&self) -> usize;
    fn file_rows(&self, file: usize) -> u64;
    /// The rows of file `file`, in order, in batches of at most `batch_rows` rows.
    fn file_batches(
        &self,
        file: usize,
        batch_rows: usize,
    ) -> Box<dyn Iterator<Item = RecordBatch> + Send + '_>;
    /// Table-specific Parquet settings (e.g. per-column dictionary choices).
    fn configure(&self, props: WriterPropertiesBuilder) -> WriterPropertiesBuilder {
        props
    }
}

/// Splits `total` rows over `files` files as evenly as possible (earlier files get the
/// remainder). Part of the output format: changing it changes which rows land in which file.
pub fn split_rows(total: u64, files: usize) -> Vec<u64> {
    let files_u64 = files as u64;
    (0..files_u64)
        .map(|i| total / files_u64 + u64::from(i < total % files_u64))
        .collect()
}

#[derive(Clone, Debug)]
pub struct WriteOptions {
    pub out: PathBuf,
    pub threads: usize,
    pub batch_rows: usize,
    pub row_group_rows: usize,
    /// Delete existing `part-*.parquet` files in `out` first instead of refusing to run.
    pub overwrite: bool,
}

#[derive(Clone, Debug)]
pub struct WriteReport {
    pub rows: u64,
    pub files: usize,
    pub bytes: u64,
    pub seconds: f64,
}

pub fn file_name(file: usize) -> String {
    format!("part-{file:05}.parquet")
}

fn existing_parts(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut parts = Vec::new();
    for entry in fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("part-")
            && (name.ends_with(".parquet") || name.ends_with(".parquet.tmp"))
        {
            parts.push(entry.path());
        }
    }
    parts.sort();
    Ok(parts)
}

pub fn write_table(table: &dyn TableGenerator, opts: &WriteOptions) -> Result<WriteReport> {
    ensure!(opts.threads > 0, "threads must be at least 1");
    ensure!(
        (1..=MAX_BATCH_ROWS).contains(&opts.batch_rows),
        "batch rows must be in 1..={MAX_BATCH_ROWS}, got {}",
        opts.batch_rows
    );
    ensure!(opts.row_group_rows > 0, "row group rows must be at least 1");
    let files = table.file_count();
    ensure!(
        (1..=MAX_FILES).contains(&files),
        "file count must be in 1..={MAX_FILES}, got {files}"
    );

    fs::create_dir_all(&opts.out).with_context(|| format!("creating {}", opts.out.display()))?;
    let stale = existing_parts(&opts.out)?;
    if !stale.is_empty() {
        if !opts.overwrite {
            bail!(
                "{} already holds {} part file(s) (e.g. {}); pass --overwrite to replace them",
                opts.out.display(),
                stale.len(),
                stale[0].display()
            );
        }
        for path in stale {
            fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
        }
    }

    let props = table
        .configure(
            WriterProperties::builder()
                .set_compression(Compression::SNAPPY)
                .set_max_row_group_row_count(Some(opts.row_group_rows)),
        )
        .build();

    let started = Instant::now();
    let next_file = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let first_error: Mutex<Option<anyhow::Error>> = Mutex::new(None);
    let total_bytes = AtomicUsize::new(0);

    std::thread::scope(|scope| {
        for _ in 0..opts.threads.min(files) {
            scope.spawn(|| {
                loop {
                    if failed.load(Ordering::Relaxed) {
                        return;
                    }
                    let file = next_file.fetch_add(1, Ordering::Relaxed);
                    if file >= files {
                        return;
                    }
                    match write_one_file(table, file, &props, opts) {
                        Ok(bytes) => {
                            total_bytes.fetch_add(bytes as usize, Ordering::Relaxed);
                        }
                        Err(e) => {
                            failed.store(true, Ordering::Relaxed);
                            first_error.lock().unwrap().get_or_insert(e);
                            return;
                        }
                    }
                }
            });
        }
    });

    if let Some(e) = first_error.into_inner().unwrap() {
        return Err(e);
    }
    let rows = (0..files).map(|f| table.file_rows(f)).sum();
    Ok(WriteReport {
        rows,
        files,
        bytes: total_bytes.into_inner() as u64,
        seconds: started.elapsed().as_secs_f64(),
    })
}

fn write_one_file(
    table: &dyn TableGenerator,
    file: usize,
    props: &WriterProperties,
    opts: &WriteOptions,
) -> Result<u64> {
    let final_path = opts.out.join(file_name(file));
    let tmp_path = opts.out.join(format!("{}.tmp", file_name(file)));
    let sink = BufWriter::with_capacity(
        1 << 20,
        File::create(&tmp_path).with_context(|| format!("creating {}", tmp_path.display()))?,
    );
    let mut writer = ArrowWriter::try_new(sink, table.schema(), Some(props.clone()))?;
    let mut rows = 0u64;
    for batch in table.file_batches(file, opts.batch_rows) {
        rows += batch.num_rows() as u64;
        writer
            .write(&batch)
            .with_context(|| format!("writing {}", tmp_path.display()))?;
    }
    ensure!(
        rows == table.file_rows(file),
        "{}: generated {rows} rows for file {file}, planned {}",
        table.name(),
        table.file_rows(file)
    );
    let sink = writer.into_inner()?;
    // Flush; no fsync: a benchmark source only needs to survive this process, not the OS.
    drop(sink.into_inner().map_err(|e| e.into_error())?);
    fs::rename(&tmp_path, &final_path).with_context(|| {
        format!(
            "renaming {} to {}",
            tmp_path.display(),
            final_path.display()
        )
    })?;
    Ok(fs::metadata(&final_path)?.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_is_even_and_complete() {
        assert_eq!(split_rows(10, 3), vec![4, 3, 3]);
        assert_eq!(split_rows(5_000_000, 4).iter().sum::<u64>(), 5_000_000);
        assert_eq!(split_rows(2, 2), vec![1, 1]);
    }
}
