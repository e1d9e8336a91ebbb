//! Writes a generated table as Parquet files, one thread per core.
//!
//! A table module describes *what* to generate ([`TableGenerator`]); this module decides
//! *how* it is written: files are claimed by worker threads from a shared counter, each file
//! is streamed batch by batch into an [`ArrowWriter`] (memory per thread is about one batch
//! plus one row group of encoded pages), written to a temporary name and renamed when
//! complete, so a crashed run never leaves a truncated `part-*.parquet` behind.

use std::fs::{self, File};
use std::io::BufWriter;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::{WriterProperties, WriterPropertiesBuilder};

use crate::columns::BatchBuilder;
use crate::error::{Error, Result};

/// Upper bound on rows per generated batch, so a typo cannot ask for a multi-GB batch.
pub const MAX_BATCH_ROWS: usize = 1 << 20;
/// Upper bound on the number of output files of one run.
pub const MAX_FILES: usize = 1 << 20;

/// Batches of generated rows, as a [`TableGenerator`] returns them.
pub type Batches<'a> = Box<dyn Iterator<Item = RecordBatch> + Send + 'a>;

/// A table that can be generated file by file. Implementations must be deterministic: the
/// rows of a range depend only on the generator's construction parameters and the range, so
/// any file split (a [`TableLayout`]) gives the same rows.
pub trait TableGenerator: Sync {
    /// The table's name, schema and file split.
    fn layout(&self) -> &TableLayout;
    /// The rows numbered `rows` (row numbers of the whole table), in order, in batches of at
    /// most `batch_rows` rows.
    fn row_batches(&self, rows: Range<u64>, batch_rows: usize) -> Batches<'_>;
    /// Table-specific Parquet settings (e.g. per-column dictionary choices).
    fn configure(&self, props: WriterPropertiesBuilder) -> WriterPropertiesBuilder {
        props
    }

    // Provided: the layout's properties and the rows of one file.

    /// TPC-DS table name, e.g. `store_sales`.
    fn name(&self) -> &'static str {
        self.layout().name()
    }
    fn schema(&self) -> SchemaRef {
        self.layout().schema().clone()
    }
    fn file_count(&self) -> usize {
        self.layout().file_count()
    }
    fn file_rows(&self, file: usize) -> u64 {
        let rows = self.layout().file_range(file);
        rows.end - rows.start
    }
    /// The rows of file `file`, in order, in batches of at most `batch_rows` rows.
    fn file_batches(&self, file: usize, batch_rows: usize) -> Batches<'_> {
        self.row_batches(self.layout().file_range(file), batch_rows)
    }
}

/// A table whose rows are each generated on their own from their row number (the dimension
/// tables: every row has its own random streams). Implementing it implements
/// [`TableGenerator`].
pub trait RowTable: Sync {
    fn layout(&self) -> &TableLayout;
    /// Appends row `row` (0-based, of the whole table) to `b`.
    fn push_row(&self, b: &mut BatchBuilder, row: u64);
}

impl<T: RowTable> TableGenerator for T {
    fn layout(&self) -> &TableLayout {
        RowTable::layout(self)
    }

    fn row_batches(&self, rows: Range<u64>, batch_rows: usize) -> Batches<'_> {
        let schema = RowTable::layout(self).schema();
        rows_in_batches(schema, rows, batch_rows, move |b, row| {
            self.push_row(b, row)
        })
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

/// What every generated table has: its name, its schema and the row range of each output
/// file (a [`split_rows`] split).
#[derive(Clone, Debug)]
pub struct TableLayout {
    name: &'static str,
    schema: SchemaRef,
    /// `file_start[i]..file_start[i + 1]` are the rows of file `i`.
    file_start: Vec<u64>,
}

impl TableLayout {
    /// `rows` rows of `schema` in `files` files (at least one).
    pub fn new(name: &'static str, schema: SchemaRef, rows: u64, files: usize) -> Self {
        assert!(files > 0, "at least one file");
        let mut file_start = vec![0];
        let mut end = 0;
        for n in split_rows(rows, files) {
            end += n;
            file_start.push(end);
        }
        TableLayout {
            name,
            schema,
            file_start,
        }
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    pub fn file_count(&self) -> usize {
        self.file_start.len() - 1
    }

    /// The rows of file `file`.
    pub fn file_range(&self, file: usize) -> Range<u64> {
        self.file_start[file]..self.file_start[file + 1]
    }
}

/// Batches of the rows `rows`, each row built by `push(builder, row)`.
pub fn rows_in_batches<'a>(
    schema: &'a SchemaRef,
    rows: Range<u64>,
    batch_rows: usize,
    mut push: impl FnMut(&mut BatchBuilder, u64) + Send + 'a,
) -> Batches<'a> {
    assert!(batch_rows > 0);
    let Range {
        start: mut next,
        end,
    } = rows;
    Box::new(std::iter::from_fn(move || {
        if next >= end {
            return None;
        }
        let n = (batch_rows as u64).min(end - next);
        let mut b = BatchBuilder::new(schema, n as usize);
        for row in next..next + n {
            push(&mut b, row);
        }
        next += n;
        Some(b.finish())
    }))
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
    for entry in fs::read_dir(dir).map_err(Error::io("listing", dir))? {
        let entry = entry.map_err(Error::io("listing", dir))?;
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

fn invalid(msg: String) -> Error {
    Error::InvalidArgument(msg)
}

pub fn write_table(table: &dyn TableGenerator, opts: &WriteOptions) -> Result<WriteReport> {
    if opts.threads == 0 {
        return Err(invalid("threads must be at least 1".into()));
    }
    if !(1..=MAX_BATCH_ROWS).contains(&opts.batch_rows) {
        return Err(invalid(format!(
            "batch rows must be in 1..={MAX_BATCH_ROWS}, got {}",
            opts.batch_rows
        )));
    }
    if opts.row_group_rows == 0 {
        return Err(invalid("row group rows must be at least 1".into()));
    }
    let files = table.file_count();
    if !(1..=MAX_FILES).contains(&files) {
        return Err(invalid(format!(
            "file count must be in 1..={MAX_FILES}, got {files}"
        )));
    }

    fs::create_dir_all(&opts.out).map_err(Error::io("creating", &opts.out))?;
    let stale = existing_parts(&opts.out)?;
    if !stale.is_empty() {
        if !opts.overwrite {
            return Err(Error::OutputExists {
                dir: opts.out.clone(),
                count: stale.len(),
                example: stale[0].clone(),
            });
        }
        for path in stale {
            fs::remove_file(&path).map_err(Error::io("removing", &path))?;
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
    let first_error: Mutex<Option<Error>> = Mutex::new(None);
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
                            if let Ok(mut first) = first_error.lock() {
                                first.get_or_insert(e);
                            }
                            return;
                        }
                    }
                }
            });
        }
    });

    // A poisoned lock means a worker panicked, which `scope` has already propagated.
    if let Some(e) = first_error.into_inner().ok().flatten() {
        return Err(e);
    }
    if failed.load(Ordering::Relaxed) {
        return Err(invalid("a writer thread failed without an error".into()));
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
    let parquet_err = |source| Error::Parquet {
        path: tmp_path.clone(),
        source,
    };
    let sink = BufWriter::with_capacity(
        1 << 20,
        File::create(&tmp_path).map_err(Error::io("creating", &tmp_path))?,
    );
    let mut writer =
        ArrowWriter::try_new(sink, table.schema(), Some(props.clone())).map_err(parquet_err)?;
    let mut rows = 0u64;
    for batch in table.file_batches(file, opts.batch_rows) {
        rows += batch.num_rows() as u64;
        writer.write(&batch).map_err(parquet_err)?;
    }
    if rows != table.file_rows(file) {
        return Err(Error::RowCount {
            table: table.name(),
            file,
            got: rows,
            planned: table.file_rows(file),
        });
    }
    let sink = writer.into_inner().map_err(parquet_err)?;
    // Flush; no fsync: a benchmark source only needs to survive this process, not the OS.
    drop(
        sink.into_inner()
            .map_err(|e| Error::io("writing", &tmp_path)(e.into_error()))?,
    );
    fs::rename(&tmp_path, &final_path).map_err(Error::io("renaming", &tmp_path))?;
    fs::metadata(&final_path)
        .map(|m| m.len())
        .map_err(Error::io("reading metadata of", &final_path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::Schema;
    use std::sync::Arc;

    #[test]
    fn split_is_even_and_complete() {
        assert_eq!(split_rows(10, 3), vec![4, 3, 3]);
        assert_eq!(split_rows(5_000_000, 4).iter().sum::<u64>(), 5_000_000);
        assert_eq!(split_rows(2, 2), vec![1, 1]);
        let layout = TableLayout::new("t", Arc::new(Schema::empty()), 10, 3);
        assert_eq!(layout.file_count(), 3);
        assert_eq!(
            (0..3).map(|f| layout.file_range(f)).collect::<Vec<_>>(),
            vec![0..4, 4..7, 7..10]
        );
    }
}
