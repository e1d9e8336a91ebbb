//! Writing the Parquet data files of a Delta table, with Delta statistics.
//!
//! [`DataFileWriter`] takes batches in the table's Arrow schema, finds where the rows of
//! each partition are ([`crate::partition::partition_runs`]), and streams each group —
//! gathered just before it is written, without the partition columns — into the open
//! Parquet file of its partition
//! (`<table_root>/<hive dir>/<prefix>-<seq:05>.snappy.parquet`), uploading finished row
//! groups as they are produced (multipart upload through `object_store`, so the same code
//! serves local disks and S3; on a local disk a small file is written straight to its path,
//! see [`DataFileWriter::writing_locally`]). A file is finished when it reaches the target size, when the
//! buffered bytes across open files exceed the memory limit (the largest file is finished
//! first), or on [`DataFileWriter::close`]; each finished file becomes a [`DataFile`] with
//! its `add.path`, partition values, size and stats.
//!
//! Invariants: no file without rows is ever reported; every object the writer started is
//! remembered so [`DataFileWriter::abort`] can delete it; nothing here touches `_delta_log`.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, RecordBatchOptions};
use arrow::datatypes::{DataType, Schema, SchemaRef};
use bytes::Bytes;

use super::{same_types, slice_bytes};
use futures::{StreamExt, TryStreamExt};
use object_store::buffered::BufWriter;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::errors::ParquetError;
use parquet::file::properties::WriterProperties;
use tokio::io::AsyncWriteExt;

use super::stats::StatsCollector;
use crate::partition::{
    PartitionValues, encode_log_path, gather_runs, gather_runs_narrowed, hive_partition_dir,
    partition_runs,
};
use crate::task::{DataFile, FileSpec, StatsSpec};
use crate::{Error, Result};

/// Default bound on bytes buffered across open files.
pub const DEFAULT_MEMORY_LIMIT_BYTES: usize = 256 * 1024 * 1024;

/// Upper bound on rows in a row group: the writer holds a row group's encoded pages until
/// it closes, once per open file and task; 256Ki rows keeps that near 10-20 MiB for wide
/// tables (DuckDB writes ~120Ki-row groups, DataFusion and delta-rs 1Mi).
const MAX_ROW_GROUP_ROWS: usize = 256 * 1024;
/// Upper bound on the (estimated, encoded) bytes of a row group.
const MAX_ROW_GROUP_BYTES: usize = 128 * 1024 * 1024;
/// Bytes an object upload buffers before switching to multipart, and the part size
/// (S3 needs at least 5 MiB per part).
const UPLOAD_BUFFER_BYTES: usize = 10 * 1024 * 1024;
/// Tables on the local file system: files whose bytes are all encoded when they finish and
/// are at most this large are written straight to their paths (see [`FileEncoder::finish`]).
const DIRECT_WRITE_MAX_BYTES: usize = 4 * 1024 * 1024;
/// Parts of one file uploaded concurrently.
const UPLOAD_CONCURRENCY: usize = 4;
/// Files finished concurrently on close (their uploads overlap).
const CLOSE_CONCURRENCY: usize = 8;
/// Files finished while writing go on in the background (their last row group encoded, the
/// footer written, the upload completed) while the writer takes more rows; at most this
/// many at once.
const FINISHING_FILES: usize = 4;
/// Writers with a memory limit under this finish files in place, not in the background: a
/// MERGE's writer at a 16 MiB executor limit peaked ~10 MiB higher with files finishing
/// beside the join that feeds it.
const BACKGROUND_FINISH_MIN_LIMIT: usize = 64 * 1024 * 1024;
/// Batches are fed to a file in slices of at most this many rows, so files roll close to
/// their target size even when batches are large.
const MAX_WRITE_ROWS: usize = 64 * 1024;
/// Partitioned tables: small input batches are gathered up to this many rows before they
/// are split by partition, so that finding and copying each partition's runs works on
/// batches large enough to do it efficiently.
const SPLIT_ROWS: usize = 64 * 1024;
/// Upper bound on the bytes of input gathered before a split.
const MAX_SPLIT_BYTES: usize = 64 * 1024 * 1024;
/// Fixed memory of an open file per column (encoders, dictionary, page buffers), besides
/// its data: the basis of the open-file bound.
const OPEN_FILE_BYTES_PER_COLUMN: usize = 64 * 1024;
/// Bounds on the number of files open at once.
const MIN_OPEN_FILES: usize = 2;
const MAX_OPEN_FILES: usize = 64;

/// Encodes one data file and streams its bytes into an object through `object_store`'s
/// [`BufWriter`]: small files become a single PUT, larger ones a multipart upload. Each
/// row group's bytes are handed over without copying once encoded.
///
/// What `parquet`'s `AsyncArrowWriter` does, except that the last row group and footer are
/// encoded into a buffer reserved at their expected size: grown from empty by doubling, a
/// small file's buffer was reallocated and copied about seven times, into memory not yet in
/// cache (a partitioned write finishes thousands of small files). And a file of a
/// partitioned table may start held (see [`Encoding::Held`]).
struct FileEncoder {
    encoding: Encoding,
    upload: BufWriter,
    /// Leaf columns of the file.
    columns: usize,
    /// Tables on the local file system: the file's path there.
    local_path: Option<std::path::PathBuf>,
}

enum Encoding {
    /// The rows of a file expected to stay small, held as they came until the file
    /// finishes, then encoded whole by [`super::small::encode`]; once they outgrow
    /// [`super::small::MAX_ROWS`] or [`super::small::MAX_BYTES`] they go to the crate's
    /// writer and the file goes on as `Streaming`.
    Held(Held),
    Streaming(Box<ArrowWriter<Vec<u8>>>),
}

struct Held {
    rows: Vec<RecordBatch>,
    count: usize,
    /// Memory of `rows`.
    bytes: usize,
    layout: Arc<super::small::Layout>,
    /// The crate's writer's schema, for a file that outgrows the bounds.
    schema: SchemaRef,
    props: Arc<WriterProperties>,
}

impl Held {
    /// The crate's writer, given the rows held so far.
    fn start_streaming(&mut self) -> Result<ArrowWriter<Vec<u8>>> {
        let mut encoder = streaming_encoder(
            Arc::clone(&self.schema),
            WriterProperties::clone(&self.props),
            self.layout.parquet_schema().clone(),
        )?;
        for batch in std::mem::take(&mut self.rows) {
            encoder.write(&batch).map_err(parquet_error)?;
        }
        Ok(encoder)
    }
}

/// The crate's writer for a file of `schema` (the form its rows come in) with `props`.
fn streaming_encoder(
    schema: SchemaRef,
    props: WriterProperties,
    parquet_schema: parquet::schema::types::SchemaDescriptor,
) -> Result<ArrowWriter<Vec<u8>>> {
    let options = parquet::arrow::arrow_writer::ArrowWriterOptions::new()
        .with_properties(props)
        .with_skip_arrow_metadata(true)
        .with_parquet_schema(parquet_schema);
    ArrowWriter::try_new_with_options(Vec::new(), schema, options).map_err(parquet_error)
}

/// Footer bytes reserved per column, besides a fixed [`FOOTER_BYTES`]: a column chunk's
/// metadata, statistics and page index entries (a 22-column file's footer is about 5 KB).
const FOOTER_BYTES_PER_COLUMN: usize = 256;
/// Footer bytes reserved per file besides [`FOOTER_BYTES_PER_COLUMN`] (its schema and
/// key-value metadata).
const FOOTER_BYTES: usize = 1024;

impl FileEncoder {
    fn new(
        encoding: Encoding,
        upload: BufWriter,
        columns: usize,
        local_path: Option<std::path::PathBuf>,
    ) -> Self {
        Self {
            encoding,
            upload,
            columns,
            local_path,
        }
    }

    /// Encodes `batch` (or holds it); hands over the bytes of a row group it completes.
    async fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        if let Encoding::Held(held) = &mut self.encoding {
            held.count += batch.num_rows();
            held.bytes += super::slice_bytes(batch);
            held.rows.push(batch.clone());
            if held.count <= super::small::MAX_ROWS && held.bytes <= super::small::MAX_BYTES {
                return Ok(());
            }
            self.encoding = Encoding::Streaming(Box::new(held.start_streaming()?));
            return self.hand_over_flushed(0).await;
        }
        let Encoding::Streaming(encoder) = &mut self.encoding else {
            return Err(Error::internal("a file past holding without its encoder"));
        };
        let before = encoder.flushed_row_groups().len();
        encoder.write(batch).map_err(parquet_error)?;
        self.hand_over_flushed(before).await
    }

    /// Hands over the bytes encoded when the writer has flushed more than `before` row
    /// groups.
    async fn hand_over_flushed(&mut self, before: usize) -> Result<()> {
        if let Encoding::Streaming(encoder) = &self.encoding
            && encoder.flushed_row_groups().len() != before
        {
            self.hand_over().await?;
        }
        Ok(())
    }

    /// Encodes the last row group and the footer (a held file: the whole file), and
    /// completes the upload. Returns the file's size.
    ///
    /// On the local file system, a small file whose bytes are all here is written straight
    /// to its path, on this thread: the object store's upload (a staging file renamed into
    /// place, through the blocking pool, after a failed open per new directory) cost a
    /// partitioned load of 1,834 files about 8% of its time. A data file is not read before
    /// its commit names it, so it needs no staging; a failed attempt's files are deleted by
    /// name as before.
    async fn finish(&mut self) -> Result<usize> {
        if let Encoding::Held(held) = &mut self.encoding {
            match super::small::encode(&held.layout, &held.rows, &held.props)
                .map_err(parquet_error)?
            {
                Some(bytes) => {
                    held.rows.clear();
                    return self.finish_whole(bytes).await;
                }
                // Laid out otherwise by the crate's writer: it writes the file.
                None => self.encoding = Encoding::Streaming(Box::new(held.start_streaming()?)),
            }
        }
        let Encoding::Streaming(encoder) = &mut self.encoding else {
            return Err(Error::internal("a held file left unencoded"));
        };
        let expected =
            encoder.in_progress_size() + FOOTER_BYTES + FOOTER_BYTES_PER_COLUMN * self.columns;
        encoder.inner_mut().reserve_exact(expected);
        encoder.finish().map_err(parquet_error)?;
        let size = encoder.bytes_written();
        // All of the file's bytes still here: none was handed to the upload.
        let whole = (encoder.inner().len() == size).then(|| std::mem::take(encoder.inner_mut()));
        match whole {
            Some(bytes) => self.finish_whole(bytes).await,
            None => {
                self.hand_over().await?;
                self.upload.shutdown().await.map_err(io_error)?;
                Ok(size)
            }
        }
    }

    /// Writes a file whose bytes are all here: straight to its local path if small, else
    /// through the upload. Returns its size.
    async fn finish_whole(&mut self, bytes: Vec<u8>) -> Result<usize> {
        let size = bytes.len();
        match &self.local_path {
            Some(path) if size <= DIRECT_WRITE_MAX_BYTES => {
                write_local(path, &bytes).map_err(io_error)?;
                return Ok(size);
            }
            _ => {}
        }
        if !bytes.is_empty() {
            self.upload.put(Bytes::from(bytes)).await?;
        }
        self.upload.shutdown().await.map_err(io_error)?;
        Ok(size)
    }

    async fn hand_over(&mut self) -> Result<()> {
        let Encoding::Streaming(encoder) = &mut self.encoding else {
            return Ok(());
        };
        let bytes = std::mem::take(encoder.inner_mut());
        if bytes.is_empty() {
            return Ok(());
        }
        self.upload
            .put(Bytes::from(bytes))
            .await
            .map_err(Error::from)
    }

    /// Bytes handed over or encoded into the output so far.
    fn bytes_written(&self) -> usize {
        match &self.encoding {
            Encoding::Held(_) => 0,
            Encoding::Streaming(encoder) => encoder.bytes_written(),
        }
    }

    /// Memory of the in-progress row group (see `ArrowWriter::memory_size`) or of the rows
    /// held.
    fn memory_size(&self) -> usize {
        match &self.encoding {
            Encoding::Held(held) => held.bytes,
            Encoding::Streaming(encoder) => encoder.memory_size(),
        }
    }

    /// Expected encoded bytes of the in-progress row group (the rows held: their memory, a
    /// bound).
    fn in_progress_size(&self) -> usize {
        match &self.encoding {
            Encoding::Held(held) => held.bytes,
            Encoding::Streaming(encoder) => encoder.in_progress_size(),
        }
    }

    /// Gives up the upload (best effort).
    async fn abort(mut self) -> object_store::Result<()> {
        self.upload.abort().await
    }
}

/// Writes `bytes` as the file at `path`, creating its directory if missing.
fn write_local(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    let file = match std::fs::File::create(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            std::fs::File::create(path)
        }
        other => other,
    };
    std::io::Write::write_all(&mut file?, bytes)
}

/// An upload's I/O error, surfacing the object store error it carries if any (retryable
/// failures are recognised by [`Error::ObjectStore`]).
fn io_error(e: std::io::Error) -> Error {
    parquet_error(ParquetError::External(Box::new(e)))
}

/// Maps a Parquet error, surfacing object store failures (which may be transient and are
/// retryable) as [`Error::ObjectStore`].
fn parquet_error(e: ParquetError) -> Error {
    match e {
        ParquetError::External(inner) => {
            let inner = match inner.downcast::<object_store::Error>() {
                Ok(os) => return Error::ObjectStore(*os),
                Err(other) => other,
            };
            match inner.downcast::<std::io::Error>() {
                Ok(io) => match io.into_inner() {
                    Some(src) => match src.downcast::<object_store::Error>() {
                        Ok(os) => Error::ObjectStore(*os),
                        Err(src) => Error::Parquet(ParquetError::External(src)),
                    },
                    None => Error::Parquet(ParquetError::External(Box::new(
                        std::io::Error::other("I/O error"),
                    ))),
                },
                Err(other) => Error::Parquet(ParquetError::External(other)),
            }
        }
        other => Error::Parquet(other),
    }
}

/// A data file being written.
struct OpenFile {
    writer: FileEncoder,
    /// The form the file's rows are given to its writer in: the file schema, or it with
    /// narrowed decimals when the file's first rows came so (see
    /// [`DataFileWriter::write`]). Under column mapping, the file schema, written with
    /// physical names.
    form: SchemaRef,
    stats: StatsCollector,
    location: Path,
    /// Path relative to the table root, URL-encoded (`add.path`).
    log_path: String,
    partition_values: PartitionValues,
    /// Last estimate of the bytes this file holds in memory.
    buffered: usize,
    /// The split (`DataFileWriter::splits`) that last wrote to this file.
    last_split: u64,
}

impl OpenFile {
    /// Bytes held in memory: the in-progress row group, plus (approximately) what the
    /// upload buffers before and between parts.
    fn estimate_buffered(&self) -> usize {
        self.writer.memory_size() + self.writer.bytes_written().min(UPLOAD_BUFFER_BYTES)
    }

    /// Whether the file has reached `target` bytes (written plus in progress).
    fn is_full(&self, target: u64) -> bool {
        (self.writer.bytes_written() + self.writer.in_progress_size()) as u64 >= target
    }
}

/// What a writer needs besides the table schema.
#[derive(Debug, Clone, PartialEq)]
pub struct WriterSpec {
    /// Partition columns, in table order.
    pub partition_columns: Vec<String>,
    /// Roll to a new file once the current one reaches this many bytes.
    pub target_file_size_bytes: u64,
    pub stats: StatsSpec,
    /// File name prefix, unique per attempt; files are `<prefix>-<n>.<codec>.parquet`.
    pub file_prefix: String,
    /// Conditions every row written must satisfy.
    pub checks: Vec<crate::task::Constraint>,
    /// Timestamp partition columns written in ISO-8601 form.
    pub iso_timestamp_partitions: Vec<String>,
}

impl WriterSpec {
    /// A task's writer: its file spec, with the attempt tag appended to the prefix.
    pub fn for_attempt(partition_columns: &[String], files: &FileSpec, attempt_tag: &str) -> Self {
        Self {
            partition_columns: partition_columns.to_vec(),
            target_file_size_bytes: files.target_file_size_bytes,
            stats: files.stats.clone(),
            file_prefix: crate::task::attempt_data_prefix(&files.file_prefix, attempt_tag),
            checks: files.checks.clone(),
            iso_timestamp_partitions: files.iso_timestamp_partitions.clone(),
        }
    }
}

/// Writes the Parquet data files of one task: one open file per partition, rolled at the
/// target size, with Delta statistics per file.
///
/// After an error from [`DataFileWriter::write`] or [`DataFileWriter::close`] the writer
/// must not be used further except for [`DataFileWriter::abort`] (the task failed).
pub struct DataFileWriter {
    store: Arc<dyn ObjectStore>,
    table_root: Path,
    spec: WriterSpec,
    table_schema: SchemaRef,
    /// The table schema without partition columns: the schema of every file.
    file_schema: SchemaRef,
    /// Positions of the file schema's columns in the table schema.
    data_indices: Vec<usize>,
    /// Every file's properties but for the per-file column choices (see
    /// [`DataFileWriter::file_props`]), with the encoded Arrow schema of the files.
    props: WriterProperties,
    /// The Parquet schema of files written with the file schema (or its physical form).
    parquet_schema: parquet::schema::types::SchemaDescriptor,
    /// File properties made so far, by their (plain, uncompressed) column positions: most
    /// files of a task share a few.
    file_props: HashMap<(Vec<usize>, Vec<usize>), WriterProperties>,
    /// Dictionary verdicts of small files, reused (see [`super::dictionary::Memo`]).
    dictionary: super::dictionary::Memo,
    memory_limit: usize,
    next_seq: u64,
    /// Number of batches split so far (a clock for choosing which file to finish early).
    splits: u64,
    open: HashMap<PartitionValues, OpenFile>,
    /// Sum of `OpenFile::buffered`.
    buffered: usize,
    finished: Vec<DataFile>,
    /// Every object started, for `abort`.
    started: Vec<Path>,
    /// Partitioned tables: input batches not yet split (see [`SPLIT_ROWS`]).
    pending: Vec<RecordBatch>,
    pending_rows: usize,
    /// Memory of `pending` (counted in `buffered`).
    pending_bytes: usize,
    /// Files open at once at most; past it, the least recently written file is finished.
    max_open: usize,
    /// Partitioned tables: rows split by partition as they arrive (a batch of
    /// [`SPLIT_ROWS`] at a time), gathered up to half the memory limit and then written
    /// partition after partition, so that each partition's rows reach its file in as few
    /// pieces as memory allows; at the end each file is finished as soon as its rows are
    /// written, so one file's column writers live at a time. (Writing each split's groups as
    /// they came kept many files open at once and took 6–9% longer by date and by store.)
    grouped: HashMap<PartitionValues, Vec<RecordBatch>>,
    /// Memory of `grouped` (counted in `buffered`).
    grouped_bytes: usize,
    /// The spec's checks, compiled against the table schema.
    checks: Vec<(crate::task::Constraint, crate::expr::Predicate)>,
    /// Column mapping: the schema files are written with (physical names, field ids); the
    /// table schema, for naming partition directories physically.
    physical: Option<(SchemaRef, SchemaRef)>,
    /// Whether files are expected to grow to the target size (unpartitioned tables, input in
    /// order): then a file's first rows are judged for dictionary encoding as a sample of a
    /// row group of that size, else as the file's likely whole.
    full_files: bool,
    /// Which plain columns are written uncompressed, judged once per column.
    codecs: super::codec::Verdicts,
    /// The files' layout for encoding them whole when small ([`super::small`]), if every
    /// column can be.
    small: Option<Arc<super::small::Layout>>,
    /// Tables on the local file system: the directory the store's object paths are relative
    /// to (see [`DataFileWriter::writing_locally`]).
    local_root: Option<std::path::PathBuf>,
    /// Files finishing in the background, each with its buffered bytes (at most
    /// [`FINISHING_FILES`]); their sum is `finishing_bytes`.
    finishing: tokio::task::JoinSet<(usize, Result<Option<DataFile>>)>,
    finishing_bytes: usize,
}

impl std::fmt::Debug for DataFileWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataFileWriter")
            .field("table_root", &self.table_root)
            .field("file_prefix", &self.spec.file_prefix)
            .field("open_files", &self.open.len())
            .field("finished_files", &self.finished.len())
            .field("buffered", &self.buffered)
            .finish()
    }
}

impl DataFileWriter {
    /// A writer for the table at `table_root` in `store`.
    ///
    /// `table_schema`: the full Arrow table schema (partition columns included) that
    /// incoming batches already have; files are written with it minus the partition columns
    /// (field nullability and metadata kept).
    pub fn try_new(
        store: Arc<dyn ObjectStore>,
        table_root: Path,
        spec: WriterSpec,
        table_schema: SchemaRef,
    ) -> Result<Self> {
        for p in &spec.partition_columns {
            if table_schema.index_of(p).is_err() {
                return Err(Error::invalid(format!(
                    "partition column `{p}` is not a column of the table"
                )));
            }
        }
        let data_indices: Vec<usize> = table_schema
            .fields()
            .iter()
            .enumerate()
            .filter(|(_, f)| !spec.partition_columns.iter().any(|p| p == f.name()))
            .map(|(i, _)| i)
            .collect();
        if data_indices.is_empty() {
            return Err(Error::invalid(
                "cannot write a table whose columns are all partition columns",
            ));
        }
        let file_schema = Arc::new(Schema::new_with_metadata(
            data_indices
                .iter()
                .map(|&i| Arc::clone(&table_schema.fields()[i]))
                .collect::<Vec<_>>(),
            table_schema.metadata().clone(),
        ));
        if spec.file_prefix.is_empty() || spec.file_prefix.contains('/') {
            return Err(Error::invalid(format!(
                "file prefix `{}` must be non-empty and contain no `/`",
                spec.file_prefix
            )));
        }
        // Validate the stats selection once.
        StatsCollector::try_new(&file_schema, &spec.stats)?;
        let physical = crate::table::column_mapping::is_mapped(&table_schema).then(|| {
            (
                Arc::new(crate::table::column_mapping::physical_schema(&file_schema)),
                Arc::clone(&table_schema),
            )
        });
        let checks = spec
            .checks
            .iter()
            .map(|c| {
                crate::expr::Predicate::compile(&c.expression, &table_schema)
                    .map(|p| (c.clone(), p))
                    .map_err(|e| {
                        Error::invalid(format!(
                            "the table's {} ({}) cannot be checked: {e}",
                            c.name, c.expression
                        ))
                    })
            })
            .collect::<Result<Vec<_>>>()?;
        let mut props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_max_row_group_row_count(Some(MAX_ROW_GROUP_ROWS))
            .set_max_row_group_bytes(Some(row_group_bytes(spec.target_file_size_bytes)));
        for f in file_schema.fields() {
            if never_dictionary(f.data_type()) {
                props = without_dictionary(props, f);
            }
        }
        let mut props = props.build();
        // Every file's writer takes the same Arrow schema (narrowed decimals aside, which
        // are written as the file schema's): its Parquet schema and the encoded Arrow schema
        // in the footer are made once, not per file (a partitioned write opens thousands).
        let writer_schema = physical.as_ref().map_or(&file_schema, |(schema, _)| schema);
        parquet::arrow::add_encoded_arrow_schema_to_metadata(writer_schema, &mut props);
        let parquet_schema = parquet::arrow::ArrowSchemaConverter::new()
            .convert(writer_schema)
            .map_err(parquet_error)?;
        let small =
            super::small::Layout::try_new(writer_schema, &parquet_schema, &props).map(Arc::new);
        Ok(Self {
            store,
            table_root,
            spec,
            table_schema,
            file_schema,
            data_indices,
            props,
            parquet_schema,
            file_props: HashMap::new(),
            dictionary: Default::default(),
            memory_limit: DEFAULT_MEMORY_LIMIT_BYTES,
            next_seq: 0,
            splits: 0,
            open: HashMap::new(),
            buffered: 0,
            finished: Vec::new(),
            started: Vec::new(),
            pending: Vec::new(),
            pending_rows: 0,
            pending_bytes: 0,
            max_open: MAX_OPEN_FILES,
            grouped: HashMap::new(),
            grouped_bytes: 0,
            checks,
            physical,
            full_files: false,
            codecs: Default::default(),
            small,
            local_root: None,
            finishing: tokio::task::JoinSet::new(),
            finishing_bytes: 0,
        }
        .with_memory_limit(DEFAULT_MEMORY_LIMIT_BYTES))
    }

    /// Bound on bytes buffered across open files (default 256 MiB); when exceeded, the
    /// largest open file is closed (finished) early, preferring files the latest batch did
    /// not touch (so input sorted by partition yields one file per partition).
    ///
    /// It also bounds the files open at once: each costs fixed memory per column besides its
    /// data, so a quarter of the limit goes to them ([`DataFileWriter::max_open_files`]). Past
    /// that, the least recently written file is finished, and once a partition comes back
    /// after that, input is gathered by partition (up to half the limit) and written
    /// partition after partition.
    pub fn with_memory_limit(mut self, bytes: usize) -> Self {
        self.memory_limit = bytes;
        // A quarter of the limit for the open files' fixed memory.
        let per_file = OPEN_FILE_BYTES_PER_COLUMN * self.file_schema.fields().len().max(1);
        self.max_open = (bytes / 4 / per_file).clamp(MIN_OPEN_FILES, MAX_OPEN_FILES);
        self
    }

    /// Says that the files written are expected to grow to the target size (rows arrive in
    /// an order that keeps one file filling, as a sorted writer's do); an unpartitioned
    /// table's are expected to anyway.
    pub fn expecting_full_files(mut self) -> Self {
        self.full_files = true;
        self
    }

    /// Says that the store is the local file system with object paths relative to `root`
    /// (`None`: an object store): small files are then written straight to their paths
    /// instead of through the store's upload (see [`FileEncoder::finish`]).
    pub fn writing_locally(mut self, root: Option<std::path::PathBuf>) -> Self {
        self.local_root = root;
        self
    }

    /// Files open at once at most (see [`DataFileWriter::with_memory_limit`]).
    pub fn max_open_files(&self) -> usize {
        self.max_open
    }

    /// The schema data files are written with (the table schema minus partition columns).
    pub fn file_schema(&self) -> &SchemaRef {
        &self.file_schema
    }

    /// Writes the rows of `batch`, which must have the table schema's columns in order
    /// (types must match; nulls are refused in non-nullable columns).
    ///
    /// For a partitioned table, rows are held (and counted in
    /// [`DataFileWriter::buffered_bytes`]): small batches until enough rows are gathered to
    /// split them efficiently, then each partition's rows until half the memory limit is
    /// gathered; [`DataFileWriter::close`] writes what is left.
    pub async fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        let narrowed = self.check_batch(batch)?;
        let widened;
        let batch = if narrowed && self.widens_narrowed(batch) {
            widened = crate::schema::conform_batch(batch, &self.table_schema)?;
            &widened
        } else {
            batch
        };
        self.check_constraints(batch)?;
        let rows = batch.num_rows();
        if rows == 0 {
            return Ok(());
        }
        if self.spec.partition_columns.is_empty() {
            self.write_split(batch).await?;
        } else if self.pending.is_empty() && rows >= SPLIT_ROWS {
            self.take_split(batch).await?;
        } else {
            let bytes = batch.get_array_memory_size();
            self.pending.push(batch.clone());
            self.pending_rows += rows;
            self.pending_bytes += bytes;
            self.buffered += bytes;
            let byte_limit = MAX_SPLIT_BYTES.min(self.memory_limit / 4);
            if self.pending_rows >= SPLIT_ROWS || self.pending_bytes >= byte_limit {
                self.flush_pending().await?;
            }
        }
        self.enforce_memory_limit().await
    }

    /// Splits and writes the gathered input batches.
    async fn flush_pending(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let pending = std::mem::take(&mut self.pending);
        self.buffered -= self.pending_bytes;
        self.pending_rows = 0;
        self.pending_bytes = 0;
        let combined = if pending.len() == 1 {
            pending
                .into_iter()
                .next()
                .ok_or_else(|| Error::internal("no pending batch"))?
        } else if pending.iter().all(|b| b.schema() == pending[0].schema()) {
            arrow::compute::concat_batches(&pending[0].schema(), &pending)?
        } else {
            // Some narrowed decimals, some not: all as the table has them.
            let wide = pending
                .iter()
                .map(|b| crate::schema::conform_batch(b, &self.table_schema))
                .collect::<Result<Vec<_>>>()?;
            arrow::compute::concat_batches(&self.table_schema, &wide)?
        };
        self.take_split(&combined).await
    }

    /// Partitioned tables: splits `batch` by partition and gathers its groups, writing
    /// what is gathered once it reaches half the memory limit.
    async fn take_split(&mut self, batch: &RecordBatch) -> Result<()> {
        self.gather_by_partition(batch)?;
        if self.grouped_bytes >= self.memory_limit / 2 {
            self.flush_grouped(false).await?;
        }
        Ok(())
    }

    /// Splits `batch` by partition and appends each group to its partition's file.
    async fn write_split(&mut self, batch: &RecordBatch) -> Result<()> {
        self.splits += 1;
        for group in self.split(batch)? {
            let (values, data) = group?;
            self.write_partition(values, data).await?;
        }
        Ok(())
    }

    /// `batch`'s rows by partition, with the partition values in the table's form and the
    /// rows in the file schema. Each group's rows are gathered as the iterator reaches it,
    /// from the columns files hold: never a gathered copy of the whole batch.
    fn split(
        &self,
        batch: &RecordBatch,
    ) -> Result<impl Iterator<Item = Result<(PartitionValues, RecordBatch)>> + use<>> {
        let mut groups = partition_runs(batch, &self.spec.partition_columns)?;
        if !self.spec.iso_timestamp_partitions.is_empty() {
            for (values, _) in &mut groups {
                for c in &self.spec.iso_timestamp_partitions {
                    if let Some(Some(v)) = values.get_mut(c) {
                        *v = crate::partition::iso_utc(v);
                    }
                }
            }
        }
        let data = self.file_rows(batch)?;
        // Gathered decimals may come narrowed, which the files' writers take as they are
        // (see `open_file`), except with column mapping.
        let gather = if self.physical.is_none() {
            gather_runs_narrowed
        } else {
            gather_runs
        };
        Ok(groups
            .into_iter()
            .map(move |(values, runs)| Ok((values, gather(&data, &runs)?))))
    }

    /// `rows` with the file schema (partition columns left out).
    fn file_rows(&self, rows: &RecordBatch) -> Result<RecordBatch> {
        let columns: Vec<ArrayRef> = self
            .data_indices
            .iter()
            .map(|&i| Arc::clone(rows.column(i)))
            .collect();
        let schema = if same_types(&columns, &self.file_schema) {
            Arc::clone(&self.file_schema)
        } else {
            // Narrowed decimals: the file schema's fields with the columns' types.
            crate::schema::with_column_types(&self.file_schema, &columns)
        };
        Ok(RecordBatch::try_new_with_options(
            schema,
            columns,
            &RecordBatchOptions::new().with_row_count(Some(rows.num_rows())),
        )?)
    }

    /// Partitioned tables: splits `batch` now and keeps its groups until written.
    fn gather_by_partition(&mut self, batch: &RecordBatch) -> Result<()> {
        for group in self.split(batch)? {
            let (values, data) = group?;
            let bytes = slice_bytes(&data);
            self.grouped_bytes += bytes;
            self.buffered += bytes;
            self.grouped.entry(values).or_default().push(data);
        }
        Ok(())
    }

    /// Partitioned tables: writes the gathered rows partition after partition; the `last`
    /// time (no rows follow), finishing each partition's file once its rows are written.
    async fn flush_grouped(&mut self, last: bool) -> Result<()> {
        if self.grouped.is_empty() {
            return Ok(());
        }
        let grouped = std::mem::take(&mut self.grouped);
        // Partitions whose file is open first (they extend it), the rest in value order.
        let mut order: Vec<(PartitionValues, Vec<RecordBatch>)> = grouped.into_iter().collect();
        order.sort_by(|(a, _), (b, _)| {
            (!self.open.contains_key(a), a).cmp(&(!self.open.contains_key(b), b))
        });
        for (values, batches) in order {
            self.splits += 1;
            for data in batches {
                let bytes = slice_bytes(&data);
                self.write_partition(values.clone(), data).await?;
                self.grouped_bytes -= bytes;
                self.buffered -= bytes;
            }
            if last {
                self.finish_open(&values).await?;
            }
        }
        Ok(())
    }

    /// Bytes currently buffered in memory across open files (estimate).
    pub fn buffered_bytes(&self) -> usize {
        self.buffered
    }

    /// Finishes all open files; returns one [`DataFile`] per file written (sorted by path).
    ///
    /// On failure, the files this writer created are deleted (best effort) before the error
    /// is returned: a failed close leaves nothing behind to clean up.
    pub async fn close(mut self) -> Result<Vec<DataFile>> {
        match self.finish_all().await {
            Ok(()) => {
                let mut files = std::mem::take(&mut self.finished);
                files.sort_by(|a, b| a.path.cmp(&b.path));
                Ok(files)
            }
            Err(e) => {
                self.abort().await;
                Err(e)
            }
        }
    }

    /// Writes gathered input and finishes every open file.
    async fn finish_all(&mut self) -> Result<()> {
        self.flush_pending().await?;
        self.flush_grouped(true).await?;
        self.reap(0).await?;
        let open: Vec<OpenFile> = self.open.drain().map(|(_, f)| f).collect();
        self.buffered = 0;
        let store = &self.store;
        let done: Vec<Option<DataFile>> = futures::stream::iter(open)
            .map(|f| finish_file(store, f))
            .buffer_unordered(CLOSE_CONCURRENCY)
            .try_collect()
            .await?;
        self.finished.extend(done.into_iter().flatten());
        Ok(())
    }

    /// Best effort: deletes every file this writer created or started (failures are
    /// logged with `tracing::warn`).
    pub async fn abort(mut self) {
        // Files finishing in the background complete first (an upload cut off midway could
        // leave a staging object behind); then they are deleted with the rest.
        while self.finishing.join_next().await.is_some() {}
        for (_, f) in self.open.drain() {
            if let Err(e) = f.writer.abort().await {
                tracing::warn!(path = %f.location, error = %e, "cannot abort upload of data file");
            }
        }
        for location in std::mem::take(&mut self.started) {
            match self.store.delete(&location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => {
                    tracing::warn!(path = %location, error = %e, "cannot delete data file of aborted write");
                }
            }
        }
    }

    /// Checks that `batch` has the table schema (types by position, nullability). A
    /// decimal column may come in the narrower type it travels through the exchange in
    /// ([`crate::exchange::narrow_type`]): the Parquet column is the same either way, so
    /// it is written as it is. Returns whether any column came so.
    fn check_batch(&self, batch: &RecordBatch) -> Result<bool> {
        let mut narrowed = false;
        let fields = self.table_schema.fields();
        if batch.num_columns() != fields.len() {
            return Err(Error::SchemaMismatch(format!(
                "batch has {} columns, the table has {} ({})",
                batch.num_columns(),
                fields.len(),
                fields
                    .iter()
                    .map(|f| f.name().as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        for (field, column) in fields.iter().zip(batch.columns()) {
            if column.data_type() != field.data_type() {
                if crate::exchange::narrow_type(field.data_type()).as_ref()
                    != Some(column.data_type())
                {
                    return Err(Error::SchemaMismatch(format!(
                        "column `{}` has type {}, the table expects {}",
                        field.name(),
                        column.data_type(),
                        field.data_type()
                    )));
                }
                narrowed = true;
            }
            if !field.is_nullable() && column.null_count() > 0 {
                return Err(Error::DataViolation(format!(
                    "column `{}` is NOT NULL but {} row(s) are null",
                    field.name(),
                    column.null_count()
                )));
            }
        }
        Ok(narrowed)
    }

    /// Whether rows with narrowed decimals are widened before anything else: when the
    /// table has checks (compiled against its types), column mapping, or a narrowed
    /// partition column (whose values name directories).
    fn widens_narrowed(&self, batch: &RecordBatch) -> bool {
        !self.checks.is_empty()
            || self.physical.is_some()
            || self.spec.partition_columns.iter().any(|p| {
                self.table_schema.index_of(p).map_or(true, |i| {
                    batch.column(i).data_type() != self.table_schema.field(i).data_type()
                })
            })
    }

    /// Checks that the rows of `batch` (of the table's types) hold the table's checks.
    fn check_constraints(&self, batch: &RecordBatch) -> Result<()> {
        for (c, p) in &self.checks {
            let holds = p.evaluate(batch)?;
            if holds.true_count() == batch.num_rows() {
                continue;
            }
            // The first row for which it does not hold, by the columns it reads.
            let row = (0..batch.num_rows())
                .find(|&i| !holds.value(i))
                .unwrap_or(0);
            let values: Vec<String> = p
                .columns()
                .iter()
                .filter_map(|name| {
                    let col = batch.column_by_name(name)?;
                    let value = if col.is_null(row) {
                        "NULL".to_string()
                    } else {
                        arrow::util::display::array_value_to_string(col, row).ok()?
                    };
                    Some(format!("{name} = {value}"))
                })
                .collect();
            return Err(Error::DataViolation(format!(
                "{} ({}) violated by {} row(s), e.g. the row with {}",
                c.name,
                c.expression,
                batch.num_rows() - holds.true_count(),
                values.join(", ")
            )));
        }
        Ok(())
    }

    /// Appends the rows of one partition (already without partition columns).
    async fn write_partition(&mut self, values: PartitionValues, data: RecordBatch) -> Result<()> {
        let target = self.spec.target_file_size_bytes;
        let mut offset = 0;
        while offset < data.num_rows() {
            let len = (data.num_rows() - offset).min(MAX_WRITE_ROWS);
            let chunk = data.slice(offset, len);
            offset += len;
            if !self.open.contains_key(&values) {
                if self.open.len() >= self.max_open {
                    // Too many partitions to keep a file open for each: finish the least
                    // recently written one.
                    let lru = self
                        .open
                        .iter()
                        .min_by_key(|(_, f)| f.last_split)
                        .map(|(k, _)| k.clone());
                    if let Some(k) = lru {
                        self.finish_open(&k).await?;
                    }
                }
                let file = self.open_file(values.clone(), &chunk)?;
                self.open.insert(values.clone(), file);
            }
            let file = self
                .open
                .get_mut(&values)
                .ok_or_else(|| Error::internal("open file vanished"))?;
            file.last_split = self.splits;
            let chunk = in_form(chunk, &file.form)?;
            file.stats.update(&chunk)?;
            match &self.physical {
                Some((schema, _)) => {
                    let chunk = crate::table::column_mapping::to_physical_batch(&chunk, schema)?;
                    file.writer.write(&chunk).await
                }
                None => file.writer.write(&chunk).await,
            }?;
            let now = file.estimate_buffered();
            self.buffered = self.buffered - file.buffered + now;
            file.buffered = now;
            if file.is_full(target) {
                self.finish_open(&values).await?;
            }
        }
        Ok(())
    }

    /// Starts the next file of a partition, whose first rows are `first` (file schema).
    fn open_file(
        &mut self,
        partition_values: PartitionValues,
        first: &RecordBatch,
    ) -> Result<OpenFile> {
        let dir = match &self.physical {
            // Column mapping: directories are named by physical names, as Delta Spark does.
            Some((_, table)) => {
                use crate::table::column_mapping::{
                    Direction, partition_dir_names, partition_values as keyed,
                };
                hive_partition_dir(
                    &partition_dir_names(&self.spec.partition_columns, table),
                    &keyed(&partition_values, table, Direction::ToPhysical),
                )
            }
            None => hive_partition_dir(&self.spec.partition_columns, &partition_values),
        };
        let name = format!(
            "{}-{:05}.snappy.parquet",
            self.spec.file_prefix, self.next_seq
        );
        self.next_seq += 1;
        let relative = if dir.is_empty() {
            name
        } else {
            format!("{dir}/{name}")
        };
        // The raw object path is the escaped name itself (on S3 the key; on local disk the
        // file name), as Spark writes it.
        let root = self.table_root.as_ref();
        let full = if root.is_empty() {
            relative.clone()
        } else {
            format!("{root}/{relative}")
        };
        let location = Path::parse(&full)
            .map_err(|e| Error::invalid(format!("invalid data file path `{full}`: {e}")))?;
        let upload = BufWriter::with_capacity(
            Arc::clone(&self.store),
            location.clone(),
            UPLOAD_BUFFER_BYTES,
        )
        .with_max_concurrency(UPLOAD_CONCURRENCY);
        let props = self.file_props(first);
        // Rows with narrowed decimals come only where there is no column mapping (see
        // `write`).
        let (schema, form) = if same_types(first.columns(), &self.file_schema) {
            let schema = self
                .physical
                .as_ref()
                .map_or(&self.file_schema, |(schema, _)| schema);
            (Arc::clone(schema), Arc::clone(&self.file_schema))
        } else {
            // Narrowed decimals: the writer takes them as they are. Their Parquet columns
            // are those of the table's types (a decimal's physical type follows from its
            // precision alone), so the file schema's Parquet schema serves, and the file's
            // Arrow schema (in the properties) is the table's.
            let form = first.schema();
            (Arc::clone(&form), form)
        };
        let encoding = match self.small_files() {
            Some(layout) => Encoding::Held(Held {
                rows: Vec::new(),
                count: 0,
                bytes: 0,
                layout: Arc::clone(layout),
                schema,
                props: Arc::new(props),
            }),
            None => Encoding::Streaming(Box::new(streaming_encoder(
                schema,
                props,
                self.parquet_schema.clone(),
            )?)),
        };
        // The local store's file for an object: its root joined with the path's parts.
        let local_path = self.local_root.as_ref().map(|root| {
            location
                .parts()
                .fold(root.clone(), |path, part| path.join(part.as_ref()))
        });
        let writer = FileEncoder::new(
            encoding,
            upload,
            self.parquet_schema.num_columns(),
            local_path,
        );
        let stats = StatsCollector::try_new(&self.file_schema, &self.spec.stats)?;
        self.started.push(location.clone());
        Ok(OpenFile {
            writer,
            form,
            stats,
            location,
            log_path: encode_log_path(&relative),
            partition_values,
            buffered: 0,
            last_split: self.splits,
        })
    }

    /// The layout of files encoded whole when they finish ([`super::small`]), when the
    /// files of this write are expected to be small: of a partitioned table, not expected
    /// to fill (see [`DataFileWriter::expecting_full_files`]), with a target size a held
    /// file cannot reach, and columns all encoded there.
    fn small_files(&self) -> Option<&Arc<super::small::Layout>> {
        let small = !self.full_files
            && !self.spec.partition_columns.is_empty()
            && self.spec.target_file_size_bytes > super::small::MAX_BYTES as u64;
        self.small.as_ref().filter(|_| small)
    }

    /// The writer properties of a file whose first rows are `first`: columns that a
    /// dictionary would not make smaller there are written plain
    /// ([`super::dictionary::plain_columns`]).
    fn file_props(&mut self, first: &RecordBatch) -> WriterProperties {
        let rows = first.num_rows();
        let plain = if self.full_files || self.spec.partition_columns.is_empty() {
            // A row group of the target size (a dictionary is per row group), by the
            // rows' in-memory size (larger than encoded: an underestimate of the rows).
            let row_bytes = (slice_bytes(first) / rows.max(1)).max(1);
            let group = row_group_bytes(self.spec.target_file_size_bytes);
            let rows = rows.max((group / row_bytes).min(MAX_ROW_GROUP_ROWS));
            super::dictionary::plain_columns(first, rows)
        } else {
            // Small files of many partitions share verdicts.
            self.dictionary.plain_columns(first, rows)
        };
        // Of the columns written plain (judged so, or never given a dictionary), those
        // Snappy would not shrink are written uncompressed.
        let fields = self.file_schema.fields();
        let unencoded: Vec<usize> = (0..fields.len())
            .filter(|i| plain.contains(i) || never_dictionary(fields[*i].data_type()))
            .collect();
        let uncompressed = self.codecs.incompressible_columns(first, &unencoded);
        if plain.is_empty() && uncompressed.is_empty() {
            return self.props.clone();
        }
        let base = &self.props;
        self.file_props
            .entry((plain, uncompressed))
            .or_insert_with_key(|(plain, uncompressed)| {
                let props = plain
                    .iter()
                    .filter_map(|&i| fields.get(i))
                    .fold(base.clone().into_builder(), without_dictionary);
                uncompressed
                    .iter()
                    .filter_map(|&i| fields.get(i))
                    .fold(props, |props, f| {
                        props.set_column_compression(column_path(f), Compression::UNCOMPRESSED)
                    })
                    .build()
            })
            .clone()
    }

    /// Finishes the open file of a partition, if any, in the background: the writer goes on
    /// encoding rows while the file's last row group, footer and upload complete (a
    /// partitioned write finishes a file per partition; awaiting each upload in turn left
    /// the task idle on I/O). Waits while more than [`FINISHING_FILES`] are finishing, and
    /// until the file is done when the memory limit is under
    /// [`BACKGROUND_FINISH_MIN_LIMIT`]: finishing takes memory the estimate does not see
    /// (compressed pages, the file's bytes until uploaded), and in the background it
    /// overlaps with the memory of whatever produces the rows meanwhile.
    async fn finish_open(&mut self, values: &PartitionValues) -> Result<()> {
        if let Some(file) = self.open.remove(values) {
            let bytes = file.buffered;
            self.buffered -= bytes;
            self.finishing_bytes += bytes;
            let store = Arc::clone(&self.store);
            self.finishing
                .spawn(async move { (bytes, finish_file(&store, file).await) });
            let keep = if self.memory_limit < BACKGROUND_FINISH_MIN_LIMIT {
                0
            } else {
                FINISHING_FILES
            };
            self.reap(keep).await?;
        }
        Ok(())
    }

    /// Takes in the files finished in the background (those done, then waiting until at
    /// most `keep` are still finishing); the first failure among them is returned.
    async fn reap(&mut self, keep: usize) -> Result<()> {
        while let Some(joined) = self.finishing.try_join_next() {
            self.reaped(joined)?;
        }
        while self.finishing.len() > keep {
            let Some(joined) = self.finishing.join_next().await else {
                break;
            };
            self.reaped(joined)?;
        }
        Ok(())
    }

    fn reaped(
        &mut self,
        joined: std::result::Result<(usize, Result<Option<DataFile>>), tokio::task::JoinError>,
    ) -> Result<()> {
        let (bytes, done) =
            joined.map_err(|e| Error::internal(format!("finishing a data file failed: {e}")))?;
        self.finishing_bytes -= bytes;
        if let Some(file) = done? {
            self.finished.push(file);
        }
        Ok(())
    }

    /// Finishes open files, largest first, until the buffered bytes are within the limit.
    ///
    /// Files that the latest batch did not write to are finished first: with input
    /// clustered by partition (sorted upstream) they are complete, so finishing them costs
    /// nothing, while finishing the file being filled would split a partition needlessly.
    async fn enforce_memory_limit(&mut self) -> Result<()> {
        if self.buffered + self.finishing_bytes > self.memory_limit {
            // Files finishing in the background hold their memory until they are done.
            self.reap(0).await?;
        }
        if self.buffered > self.memory_limit {
            // Gathered input is the cheapest memory to give back.
            self.flush_pending().await?;
            self.flush_grouped(false).await?;
        }
        while self.buffered > self.memory_limit {
            let current = self.splits;
            let Some(largest) = self
                .open
                .iter()
                .max_by_key(|(_, f)| (f.last_split < current, f.buffered))
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            tracing::debug!(
                buffered = self.buffered,
                limit = self.memory_limit,
                "memory limit reached: finishing the largest open data file early"
            );
            self.finish_open(&largest).await?;
        }
        Ok(())
    }
}

/// Row-group byte bound for a target file size: never above the file target (so files
/// roll near it) nor above [`MAX_ROW_GROUP_BYTES`].
/// `props` with the column of `field` written without a dictionary.
/// Amounts and measures rarely repeat: a dictionary for them fills up and is abandoned
/// after hashing every value, which costs more than the rest of the encoding.
fn never_dictionary(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Decimal32(_, _)
            | DataType::Decimal64(_, _)
            | DataType::Decimal128(_, _)
            | DataType::Decimal256(_, _)
            | DataType::Float16
            | DataType::Float32
            | DataType::Float64
    )
}

/// The Parquet column path of a top-level field (its physical name under column mapping).
fn column_path(field: &Arc<arrow::datatypes::Field>) -> parquet::schema::types::ColumnPath {
    parquet::schema::types::ColumnPath::from(crate::table::column_mapping::physical_name(field))
}

fn without_dictionary(
    props: parquet::file::properties::WriterPropertiesBuilder,
    field: &Arc<arrow::datatypes::Field>,
) -> parquet::file::properties::WriterPropertiesBuilder {
    props.set_column_dictionary_enabled(column_path(field), false)
}

fn row_group_bytes(target_file_size_bytes: u64) -> usize {
    let target = usize::try_from(target_file_size_bytes).unwrap_or(usize::MAX);
    target.clamp(1, MAX_ROW_GROUP_BYTES)
}

/// `rows` (file schema, decimals narrowed or not) in the form a file's writer takes
/// (`form`): narrowed decimals widened, or wide ones narrowed. A value outside the narrow
/// type's range (necessarily beyond the column's declared precision) cannot be narrowed,
/// and the column's Parquet type could not hold it either: an error naming the column.
fn in_form(rows: RecordBatch, form: &SchemaRef) -> Result<RecordBatch> {
    if same_types(rows.columns(), form) {
        return Ok(rows);
    }
    let columns = rows
        .columns()
        .iter()
        .zip(form.fields())
        .map(|(c, f)| {
            if c.data_type() == f.data_type() {
                return Ok(Arc::clone(c));
            }
            crate::schema::widen_decimal(c, f.data_type())
                .or_else(|| crate::exchange::narrow_decimal(c, f.data_type()))
                .ok_or_else(|| {
                    Error::DataViolation(format!(
                        "column `{}` ({}) holds a value beyond its declared precision",
                        f.name(),
                        c.data_type()
                    ))
                })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(RecordBatch::try_new_with_options(
        Arc::clone(form),
        columns,
        &RecordBatchOptions::new().with_row_count(Some(rows.num_rows())),
    )?)
}

/// Finishes a file: writes the footer, completes the upload, and describes it. A file
/// without rows is deleted instead and gives `None`.
async fn finish_file(store: &Arc<dyn ObjectStore>, mut file: OpenFile) -> Result<Option<DataFile>> {
    let size = file.writer.finish().await?;
    let (num_records, stats_json) = file.stats.finish()?;
    if num_records == 0 {
        match store.delete(&file.location).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        return Ok(None);
    }
    Ok(Some(DataFile {
        path: file.log_path,
        partition_values: file.partition_values,
        size_bytes: i64::try_from(size)
            .map_err(|_| Error::internal(format!("file size {size} overflows i64")))?,
        modification_time_ms: chrono::Utc::now().timestamp_millis(),
        stats_json: Some(stats_json),
        num_records,
        deletion_vector: None,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{
        AsArray, Date32Array, Decimal128Array, Int32Array, Int64Array, StringArray,
        TimestampMicrosecondArray,
    };
    use arrow::datatypes::{DataType, Field, Int32Type, Int64Type, TimeUnit};
    use object_store::local::LocalFileSystem;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use serde_json::Value;
    use std::collections::BTreeMap;

    fn spec(partition_columns: &[&str], target: u64) -> WriterSpec {
        WriterSpec {
            partition_columns: partition_columns.iter().map(|s| s.to_string()).collect(),
            target_file_size_bytes: target,
            stats: StatsSpec::default(),
            file_prefix: "part-job1-s0-t0-a0".into(),
            checks: vec![],
            iso_timestamp_partitions: vec![],
        }
    }

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("p", DataType::Utf8, true),
            Field::new("q", DataType::Int32, true),
            Field::new("s", DataType::Utf8, true),
            Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                true,
            ),
            Field::new("d", DataType::Decimal128(10, 2), true),
            Field::new("day", DataType::Date32, true),
        ]))
    }

    fn rows(
        from: i64,
        n: i64,
        p: impl Fn(i64) -> Option<String>,
        q: impl Fn(i64) -> Option<i32>,
    ) -> RecordBatch {
        let ids: Vec<i64> = (from..from + n).collect();
        RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(Int64Array::from(ids.clone())),
                Arc::new(StringArray::from(
                    ids.iter().map(|&i| p(i)).collect::<Vec<_>>(),
                )),
                Arc::new(Int32Array::from(
                    ids.iter().map(|&i| q(i)).collect::<Vec<_>>(),
                )),
                Arc::new(StringArray::from(
                    ids.iter()
                        .map(|i| format!("row-{i:08}-padding"))
                        .collect::<Vec<_>>(),
                )),
                Arc::new(
                    TimestampMicrosecondArray::from(
                        ids.iter().map(|&i| i * 1_000_123).collect::<Vec<_>>(),
                    )
                    .with_timezone("UTC"),
                ),
                Arc::new(
                    Decimal128Array::from(
                        ids.iter().map(|&i| i as i128 * 7 - 50).collect::<Vec<_>>(),
                    )
                    .with_precision_and_scale(10, 2)
                    .unwrap(),
                ),
                Arc::new(Date32Array::from(
                    ids.iter().map(|&i| (i % 1000) as i32).collect::<Vec<_>>(),
                )),
            ],
        )
        .unwrap()
    }

    fn local_store() -> (tempfile::TempDir, Arc<dyn ObjectStore>) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap());
        (dir, store)
    }

    /// Reads a written file back from disk.
    fn read_back(dir: &tempfile::TempDir, f: &DataFile) -> Vec<RecordBatch> {
        let decoded = percent_encoding::percent_decode_str(&f.path)
            .decode_utf8()
            .unwrap();
        let disk = dir.path().join("tbl").join(decoded.as_ref());
        let file = std::fs::File::open(&disk).unwrap_or_else(|e| panic!("{}: {e}", disk.display()));
        assert_eq!(file.metadata().unwrap().len() as i64, f.size_bytes);
        ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap()
    }

    /// A written file's Parquet metadata, read back from disk.
    fn parquet_metadata(
        dir: &tempfile::TempDir,
        f: &DataFile,
    ) -> Arc<parquet::file::metadata::ParquetMetaData> {
        let decoded = percent_encoding::percent_decode_str(&f.path)
            .decode_utf8()
            .unwrap();
        let file = std::fs::File::open(dir.path().join("tbl").join(decoded.as_ref())).unwrap();
        let reader = parquet::file::reader::SerializedFileReader::new(file).unwrap();
        Arc::new(parquet::file::reader::FileReader::metadata(&reader).clone())
    }

    /// The files under `dir` (directories walked), by path relative to it, with their sizes.
    fn files_under(dir: &std::path::Path) -> BTreeMap<std::path::PathBuf, u64> {
        let mut files = BTreeMap::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let e = e.unwrap();
                if e.file_type().unwrap().is_dir() {
                    stack.push(e.path());
                } else {
                    let name = e.path().strip_prefix(dir).unwrap().to_path_buf();
                    files.insert(name, e.metadata().unwrap().len());
                }
            }
        }
        files
    }

    fn stats(f: &DataFile) -> Value {
        serde_json::from_str(f.stats_json.as_deref().unwrap()).unwrap()
    }

    #[tokio::test]
    async fn unpartitioned_rolls_by_size() {
        let (dir, store) = local_store();
        let mut w = DataFileWriter::try_new(store, Path::from("tbl"), spec(&[], 200_000), schema())
            .unwrap();
        let total = 100_000;
        for start in (0..total).step_by(10_000) {
            w.write(&rows(
                start,
                10_000,
                |i| Some(format!("p{}", i % 3)),
                |i| Some(i as i32),
            ))
            .await
            .unwrap();
        }
        w.write(&rows(0, 0, |_| None, |_| None)).await.unwrap();
        let files = w.close().await.unwrap();
        assert!(files.len() > 2, "{} files", files.len());
        let mut seen = Vec::new();
        for f in &files {
            assert!(f.path.starts_with("part-job1-s0-t0-a0-"), "{}", f.path);
            assert!(f.path.ends_with(".snappy.parquet"));
            assert!(f.partition_values.is_empty());
            assert!(f.num_records > 0);
            let batches = read_back(&dir, f);
            let n: usize = batches.iter().map(|b| b.num_rows()).sum();
            assert_eq!(n as i64, f.num_records);
            let st = stats(f);
            assert_eq!(st["numRecords"], f.num_records);
            let mut ids: Vec<i64> = Vec::new();
            for b in &batches {
                assert_eq!(b.num_columns(), 7);
                assert!(!b.schema().field(0).is_nullable());
                ids.extend(b.column(0).as_primitive::<Int64Type>().values().iter());
                for r in 0..b.num_rows() {
                    let id = b.column(0).as_primitive::<Int64Type>().value(r);
                    assert_eq!(
                        b.column(3).as_string::<i32>().value(r),
                        format!("row-{id:08}-padding")
                    );
                    assert_eq!(b.column(2).as_primitive::<Int32Type>().value(r), id as i32);
                }
            }
            let lo = *ids.iter().min().unwrap();
            let hi = *ids.iter().max().unwrap();
            assert_eq!(st["minValues"]["id"], lo);
            assert_eq!(st["maxValues"]["id"], hi);
            assert_eq!(st["nullCount"]["id"], 0);
            seen.extend(ids);
        }
        seen.sort();
        assert_eq!(seen, (0..total).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn partitioned_with_nulls_and_escaping() {
        let (dir, store) = local_store();
        let mut w = DataFileWriter::try_new(
            store,
            Path::from("tbl"),
            spec(&["p", "q"], 1 << 30),
            schema(),
        )
        .unwrap();
        let p = |i: i64| match i % 4 {
            0 => None,
            1 => Some("a/b:c 100%".to_string()),
            2 => Some(String::new()),
            _ => Some("ü".to_string()),
        };
        let q = |i: i64| {
            if i % 3 == 0 {
                None
            } else {
                Some(((i / 4) % 2) as i32)
            }
        };
        w.write(&rows(0, 1000, p, q)).await.unwrap();
        w.write(&rows(1000, 500, p, q)).await.unwrap();
        let files = w.close().await.unwrap();

        let mut total = 0;
        let mut dirs = std::collections::BTreeSet::new();
        for f in &files {
            let batches = read_back(&dir, f);
            let n: usize = batches.iter().map(|b| b.num_rows()).sum();
            assert_eq!(n as i64, f.num_records);
            total += n;
            // Partition columns are not in the file.
            let file_schema = batches[0].schema();
            assert_eq!(
                file_schema
                    .fields()
                    .iter()
                    .map(|f| f.name().as_str())
                    .collect::<Vec<_>>(),
                ["id", "s", "ts", "d", "day"]
            );
            // Every row belongs to the file's partition.
            for b in &batches {
                for &id in b.column(0).as_primitive::<Int64Type>().values().iter() {
                    assert_eq!(f.partition_values["p"], p(id));
                    assert_eq!(f.partition_values["q"], q(id).map(|v| v.to_string()));
                }
            }
            let st = stats(f);
            assert!(st["minValues"].get("p").is_none());
            assert!(st["minValues"]["ts"].is_string());
            assert!(st["minValues"]["d"].is_number());
            let decoded = percent_encoding::percent_decode_str(&f.path)
                .decode_utf8()
                .unwrap()
                .to_string();
            dirs.insert(decoded.rsplit_once('/').unwrap().0.to_string());
        }
        assert_eq!(total, 1500);
        // null and "" share the default directory but remain distinct partition values.
        assert_eq!(files.len(), 4 * 3);
        let want: std::collections::BTreeSet<String> = [
            "p=__HIVE_DEFAULT_PARTITION__/q=__HIVE_DEFAULT_PARTITION__",
            "p=__HIVE_DEFAULT_PARTITION__/q=0",
            "p=__HIVE_DEFAULT_PARTITION__/q=1",
            "p=a%2Fb%3Ac%20100%25/q=__HIVE_DEFAULT_PARTITION__",
            "p=a%2Fb%3Ac%20100%25/q=0",
            "p=a%2Fb%3Ac%20100%25/q=1",
            "p=%C3%BC/q=__HIVE_DEFAULT_PARTITION__",
            "p=%C3%BC/q=0",
            "p=%C3%BC/q=1",
        ]
        .into_iter()
        .map(String::from)
        .collect();
        assert_eq!(dirs, want);
        // The directory exists on disk under its escaped name.
        assert!(
            dir.path()
                .join("tbl")
                .join("p=a%2Fb%3Ac%20100%25")
                .join("q=1")
                .is_dir()
        );
        assert!(
            files
                .iter()
                .any(|f| f.path.starts_with("p=a%252Fb%253Ac%2520100%2525/q=1/"))
        );
        assert!(
            files
                .iter()
                .any(|f| f.partition_values["p"] == Some(String::new()))
        );
        assert!(files.iter().any(|f| f.partition_values["p"].is_none()));
    }

    #[tokio::test]
    async fn abort_deletes_files() {
        for local in [false, true] {
            abort_deletes_files_written(local).await;
        }
    }

    /// Through the store's upload, or (`local`) straight to local paths.
    async fn abort_deletes_files_written(local: bool) {
        let (dir, store) = local_store();
        let mut w =
            DataFileWriter::try_new(store, Path::from("tbl"), spec(&["p"], 50_000), schema())
                .unwrap()
                .with_memory_limit(2 * 1024 * 1024)
                .writing_locally(local.then(|| dir.path().to_path_buf()));
        // Large enough to be split at once and, past half the limit, written: files fill
        // up and roll.
        w.write(&rows(
            0,
            2 * SPLIT_ROWS as i64 + 10,
            |i| Some(format!("v{}", i % 2)),
            |_| None,
        ))
        .await
        .unwrap();
        // Small: held until more rows arrive.
        w.write(&rows(0, 100, |_| Some("w".into()), |_| None))
            .await
            .unwrap();
        assert_eq!(w.pending_rows, 100);
        // Some files were finished by size (or are finishing in the background), some
        // are still open.
        assert!(w.finished.len() + w.finishing.len() > 0);
        assert!(!w.open.is_empty());
        w.abort().await;
        let left = files_under(dir.path());
        assert!(left.is_empty(), "left behind: {left:?}");
    }

    #[tokio::test]
    async fn files_written_locally_are_the_files_the_store_would_hold() {
        // Every file of a partitioned write with escaped and null partition values, once
        // through the store's upload and once straight to its local path: the same names,
        // bytes and statistics, and nothing else on disk (no staging file left).
        let p = |i: i64| match i % 4 {
            0 => None,
            1 => Some("a/b:c 100%".to_string()),
            2 => Some(String::new()),
            _ => Some("ü".to_string()),
        };
        let q = |i: i64| (i % 3 != 0).then_some(((i / 4) % 2) as i32);
        let mut written = Vec::new();
        for local in [false, true] {
            let (dir, store) = local_store();
            // Written locally, the files reach `dir` only if written straight to their paths:
            // the writer's store is then rooted elsewhere.
            let (_elsewhere, other) = local_store();
            let mut w = DataFileWriter::try_new(
                if local { other } else { store },
                Path::from("tbl"),
                spec(&["p", "q"], 1 << 30),
                schema(),
            )
            .unwrap()
            .writing_locally(local.then(|| dir.path().to_path_buf()));
            w.write(&rows(0, 3000, p, q)).await.unwrap();
            let files = w.close().await.unwrap();
            let on_disk = files_under(dir.path());
            for f in &files {
                assert_eq!(
                    read_back(&dir, f)
                        .iter()
                        .map(|b| b.num_rows())
                        .sum::<usize>() as i64,
                    f.num_records
                );
            }
            let files: Vec<_> = files
                .into_iter()
                .map(|f| (f.path, f.partition_values, f.size_bytes, f.stats_json))
                .collect();
            written.push((files, on_disk));
        }
        assert_eq!(written[0].0.len(), 12, "{:?}", written[0].0);
        assert_eq!(written[0].1.len(), 12, "{:?}", written[0].1);
        assert_eq!(written[0], written[1]);
    }

    #[tokio::test]
    async fn memory_limit_closes_files_early() {
        let (dir, store) = local_store();
        let limit = 2 * 1024 * 1024;
        let mut w =
            DataFileWriter::try_new(store, Path::from("tbl"), spec(&["q"], 1 << 30), schema())
                .unwrap()
                .with_memory_limit(limit);
        let parts = 50;
        for start in (0..200_000).step_by(20_000) {
            w.write(&rows(start, 20_000, |_| None, |i| Some((i % parts) as i32)))
                .await
                .unwrap();
            assert!(
                w.buffered_bytes() <= limit,
                "{} > {limit}",
                w.buffered_bytes()
            );
            // Under so tight a limit files finish in place, none in the background.
            assert_eq!((w.finishing.len(), w.finishing_bytes), (0, 0));
        }
        let files = w.close().await.unwrap();
        // Without the limit there would be one file per partition.
        assert!(files.len() > parts as usize, "{} files", files.len());
        let total: i64 = files.iter().map(|f| f.num_records).sum();
        assert_eq!(total, 200_000);
        for f in files.iter().take(5) {
            let n: usize = read_back(&dir, f).iter().map(|b| b.num_rows()).sum();
            assert_eq!(n as i64, f.num_records);
        }
    }

    #[tokio::test]
    async fn memory_limit_with_sorted_input_keeps_one_file_per_partition() {
        let (_dir, store) = local_store();
        let limit = 2 * 1024 * 1024;
        let mut w =
            DataFileWriter::try_new(store, Path::from("tbl"), spec(&["q"], 1 << 30), schema())
                .unwrap()
                .with_memory_limit(limit);
        // 50 partitions of 4000 rows, in partition order, 5 partitions per batch.
        for start in (0..200_000).step_by(20_000) {
            w.write(&rows(start, 20_000, |_| None, |i| Some((i / 4000) as i32)))
                .await
                .unwrap();
            assert!(w.buffered_bytes() <= limit);
        }
        let files = w.close().await.unwrap();
        assert_eq!(files.len(), 50);
        assert!(files.iter().all(|f| f.num_records == 4000));
    }

    #[tokio::test]
    async fn many_partitions_keep_few_files_open_and_few_files_per_partition() {
        let (dir, store) = local_store();
        let limit = 32 * 1024 * 1024;
        let mut w =
            DataFileWriter::try_new(store, Path::from("tbl"), spec(&["q"], 1 << 30), schema())
                .unwrap()
                .with_memory_limit(limit);
        let cap = w.max_open_files();
        assert!(cap < 50, "cap {cap}");
        // 500 partitions, every batch spread over all of them.
        let parts = 500;
        for start in (0..200_000).step_by(10_000) {
            w.write(&rows(start, 10_000, |_| None, |i| Some((i % parts) as i32)))
                .await
                .unwrap();
            assert!(w.open.len() <= cap, "{} open > {cap}", w.open.len());
            assert!(w.buffered_bytes() <= limit, "{}", w.buffered_bytes());
        }
        let files = w.close().await.unwrap();
        let total: i64 = files.iter().map(|f| f.num_records).sum();
        assert_eq!(total, 200_000);
        // Rows are gathered by partition up to half the limit before they are written:
        // a handful of files per partition, not one per batch.
        let per_partition = files.len() as f64 / parts as f64;
        assert!(
            per_partition <= 4.0,
            "{} files for {parts} partitions",
            files.len()
        );
        for f in files.iter().take(5) {
            let n: usize = read_back(&dir, f).iter().map(|b| b.num_rows()).sum();
            assert_eq!(n as i64, f.num_records);
        }
    }

    #[tokio::test]
    async fn many_partitions_in_partition_order_get_one_file_each() {
        let (_dir, store) = local_store();
        let mut w =
            DataFileWriter::try_new(store, Path::from("tbl"), spec(&["q"], 1 << 30), schema())
                .unwrap()
                .with_memory_limit(32 * 1024 * 1024);
        let cap = w.max_open_files();
        // 400 partitions of 500 rows, in partition order (a source written by date).
        for start in (0..200_000).step_by(10_000) {
            w.write(&rows(start, 10_000, |_| None, |i| Some((i / 500) as i32)))
                .await
                .unwrap();
            assert!(w.open.len() <= cap);
        }
        let files = w.close().await.unwrap();
        assert_eq!(files.len(), 400);
        assert!(files.iter().all(|f| f.num_records == 500));
    }

    /// Writes `batches` with a fresh writer partitioned by `partition_columns`; returns
    /// the files (by path) with their rows and raw bytes.
    async fn write_all(
        partition_columns: &[&str],
        batches: &[RecordBatch],
    ) -> Vec<(DataFile, Vec<RecordBatch>, Vec<u8>)> {
        let (dir, store) = local_store();
        let mut w = DataFileWriter::try_new(
            store,
            Path::from("tbl"),
            spec(partition_columns, 1 << 30),
            schema(),
        )
        .unwrap();
        for b in batches {
            w.write(b).await.unwrap();
        }
        let mut files = w.close().await.unwrap();
        files.sort_by(|a, b| a.partition_values.cmp(&b.partition_values));
        files
            .into_iter()
            .map(|f| {
                let rows = read_back(&dir, &f);
                let decoded = percent_encoding::percent_decode_str(&f.path)
                    .decode_utf8()
                    .unwrap()
                    .to_string();
                let bytes = std::fs::read(dir.path().join("tbl").join(decoded)).unwrap();
                (f, rows, bytes)
            })
            .collect()
    }

    #[tokio::test]
    async fn narrowed_decimals_are_written_as_the_table_has_them() {
        // The same rows as the table has them and as they travel through the exchange
        // (`d`, a Decimal128(10, 2), as a Decimal64).
        let wide: Vec<RecordBatch> = (0..3)
            .map(|k| {
                rows(
                    k * 40,
                    40,
                    |i| Some(format!("p{}", i % 3)),
                    |i| Some(i as i32),
                )
            })
            .collect();
        let narrow: Vec<RecordBatch> = wide
            .iter()
            .map(|b| {
                let block =
                    crate::exchange::encode_block(&schema(), std::slice::from_ref(b)).unwrap();
                crate::exchange::decode_block_narrow(&block)
                    .unwrap()
                    .remove(0)
            })
            .collect();
        assert_eq!(narrow[0].column(5).data_type(), &DataType::Decimal64(10, 2));
        // Mixed: a narrowed batch, then one as the table has it.
        let mixed = vec![narrow[0].clone(), wide[1].clone(), narrow[2].clone()];
        for partitions in [&[][..], &["p"], &["d"]] {
            let expected = write_all(partitions, &wide).await;
            for input in [&narrow, &mixed] {
                let got = write_all(partitions, input).await;
                assert_eq!(got.len(), expected.len(), "{partitions:?}");
                for ((f, rows, bytes), (ef, erows, ebytes)) in got.iter().zip(&expected) {
                    assert_eq!(f.partition_values, ef.partition_values);
                    assert_eq!(f.num_records, ef.num_records);
                    assert_eq!(stats(f), stats(ef), "{partitions:?}");
                    assert_eq!(rows, erows, "{partitions:?}");
                    assert_eq!(
                        rows[0].schema().field(4).data_type(),
                        erows[0].schema().field(4).data_type()
                    );
                    if partitions.is_empty() && std::ptr::eq(input, &narrow) {
                        // The same Parquet file, byte for byte.
                        assert_eq!(bytes, ebytes);
                    }
                }
            }
        }
        // A type that is not the column's narrow form is still refused.
        let (_dir, store) = local_store();
        let mut w = DataFileWriter::try_new(store, Path::from("tbl"), spec(&[], 1 << 30), schema())
            .unwrap();
        let mut columns = wide[0].columns().to_vec();
        columns[5] =
            Arc::new(arrow::compute::cast(&columns[5], &DataType::Decimal64(12, 2)).unwrap());
        let fields: Vec<Field> = schema()
            .fields()
            .iter()
            .zip(&columns)
            .map(|(f, c)| f.as_ref().clone().with_data_type(c.data_type().clone()))
            .collect();
        let bad = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap();
        let err = w.write(&bad).await.unwrap_err().to_string();
        assert!(
            err.contains("column `d` has type Decimal64(12, 2)"),
            "{err}"
        );
    }

    /// Partitions whose rows interleave in runs are gathered run by run, decimals narrowed on
    /// the way: the files hold what writing each partition's rows in one piece gives.
    #[tokio::test]
    async fn partitions_gathered_run_by_run_are_written_as_whole_ones() {
        let n = 3000;
        let part = |i: i64| Some(format!("p{}", (i / 6) % 4));
        let q = |i: i64| (i % 7 != 0).then_some(i as i32);
        let interleaved = rows(0, n, part, q);
        // The same rows, partition after partition (each one run: sliced, not gathered).
        let mut order: Vec<u32> = (0..n as u32).collect();
        order.sort_by_key(|&i| part(i64::from(i)));
        let sorted = arrow::compute::take_record_batch(
            &interleaved,
            &arrow::array::UInt32Array::from(order),
        )
        .unwrap();
        let gathered =
            crate::partition::gather_runs_narrowed(&interleaved, &[0..6, 24..30]).unwrap();
        assert_eq!(gathered.column(5).data_type(), &DataType::Decimal64(10, 2));

        let expected = write_all(&["p"], &[sorted]).await;
        let got = write_all(&["p"], &[interleaved]).await;
        assert_eq!(got.len(), 4);
        assert_eq!(got.len(), expected.len());
        for ((f, rows, _), (ef, erows, _)) in got.iter().zip(&expected) {
            assert_eq!(f.partition_values, ef.partition_values);
            assert_eq!(f.num_records, ef.num_records);
            assert_eq!(stats(f), stats(ef));
            assert_eq!(rows[0].schema(), erows[0].schema());
            let concat = |b: &[RecordBatch]| {
                let batch = arrow::compute::concat_batches(&b[0].schema(), b).unwrap();
                arrow::compute::sort_to_indices(batch.column(0), None, None)
                    .map(|i| arrow::compute::take_record_batch(&batch, &i).unwrap())
                    .unwrap()
            };
            assert_eq!(concat(rows), concat(erows));
        }
    }

    #[tokio::test]
    async fn columns_compression_would_not_shrink_are_written_uncompressed() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("price", DataType::Decimal128(7, 2), true),
            Field::new("ticket", DataType::Int64, false),
        ]));
        let n = 20_000i64;
        let mut state = 0x5eed_u64;
        let prices: Vec<i128> = (0..n)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((state >> 33) % 10_000_000) as i128
            })
            .collect();
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(
                    Decimal128Array::from(prices)
                        .with_precision_and_scale(7, 2)
                        .unwrap(),
                ),
                Arc::new(Int64Array::from_iter_values(
                    (0..n).map(|i| 1_000_000 + i / 3),
                )),
            ],
        )
        .unwrap();
        let (dir, store) = local_store();
        let mut w =
            DataFileWriter::try_new(store, Path::from("tbl"), spec(&[], 1 << 30), schema).unwrap();
        w.write(&batch).await.unwrap();
        let files = w.close().await.unwrap();
        assert_eq!(files.len(), 1);
        let back = read_back(&dir, &files[0]);
        assert_eq!(
            arrow::compute::concat_batches(&back[0].schema(), &back).unwrap(),
            batch
        );
        let disk = dir.path().join("tbl").join(&files[0].path);
        let reader =
            parquet::file::reader::SerializedFileReader::new(std::fs::File::open(disk).unwrap())
                .unwrap();
        let meta = parquet::file::reader::FileReader::metadata(&reader);
        let codecs: Vec<Compression> = meta
            .row_group(0)
            .columns()
            .iter()
            .map(|c| c.compression())
            .collect();
        // Random amounts: nothing for Snappy; a ticket number's runs: kept compressed.
        assert_eq!(codecs, vec![Compression::UNCOMPRESSED, Compression::SNAPPY]);
    }

    #[tokio::test]
    async fn small_partition_files_carry_the_arrow_schema_and_their_column_choices() {
        // 40 partitions of 3,000 rows: unique ids (plain), a value of ten (a dictionary).
        let n = 120_000;
        let batch = rows(
            0,
            n,
            |i| Some(format!("p{}", i / 3_000)),
            |i| Some((i % 10) as i32),
        );
        let (dir, store) = local_store();
        let mut w =
            DataFileWriter::try_new(store, Path::from("tbl"), spec(&["p"], 1 << 30), schema())
                .unwrap();
        w.write(&batch).await.unwrap();
        let files = w.close().await.unwrap();
        assert_eq!(files.len(), 40);
        let mut back = 0;
        for f in &files {
            back += read_back(&dir, f)
                .iter()
                .map(|b| b.num_rows())
                .sum::<usize>();
            let meta = parquet_metadata(&dir, f);
            let kv = meta.file_metadata().key_value_metadata().unwrap();
            assert!(kv.iter().any(|k| k.key == "ARROW:schema"), "{}", f.path);
            let dictionary: Vec<bool> = meta
                .row_group(0)
                .columns()
                .iter()
                .map(|c| c.dictionary_page_offset().is_some())
                .collect();
            // id, q, s, ts, d, day (p is the partition).
            assert_eq!(
                dictionary,
                vec![false, true, false, false, false, true],
                "{}",
                f.path
            );
        }
        assert_eq!(back, n as usize);
    }

    /// A partitioned table whose columns are all encoded by [`super::super::small`]: the
    /// small partitions' files are encoded whole (no page index); the one past
    /// `small::MAX_ROWS` goes on through the crate's writer (which writes one), and so does
    /// the one whose strings would not fit one page; all read back as written.
    #[tokio::test]
    async fn small_files_are_encoded_whole_and_larger_ones_streamed() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("p", DataType::Int32, true),
            Field::new("v", DataType::Float64, true),
            Field::new("d", DataType::Decimal128(10, 2), true),
            Field::new("day", DataType::Date32, true),
            Field::new("s", DataType::Utf8, true),
        ]));
        let big = super::super::small::MAX_ROWS as i64 + 5_000;
        // Partition 0 of `big` rows, then 20 of 500, in batches of 4,000.
        let partition = |i: i64| if i < big { 0 } else { 1 + (i - big) / 500 };
        // Partition 1's strings: about 450 of 1,300 bytes, past half a page's limit.
        let text = |i: i64| match partition(i) {
            1 => format!("{i:01300}"),
            p => format!("p{p}-{}", i % 3),
        };
        let n = big + 20 * 500;
        let batch = |from: i64, len: i64| {
            let ids: Vec<i64> = (from..from + len).collect();
            RecordBatch::try_new(
                Arc::clone(&schema),
                vec![
                    Arc::new(Int64Array::from(ids.clone())),
                    Arc::new(Int32Array::from_iter(
                        ids.iter().map(|&i| Some(partition(i) as i32)),
                    )),
                    Arc::new(arrow::array::Float64Array::from_iter(
                        ids.iter().map(|&i| (i % 7 != 0).then_some(i as f64 / 3.0)),
                    )),
                    Arc::new(
                        Decimal128Array::from_iter(
                            ids.iter()
                                .map(|&i| (i % 5 != 0).then_some(i as i128 * 7 - 50)),
                        )
                        .with_precision_and_scale(10, 2)
                        .unwrap(),
                    ),
                    Arc::new(Date32Array::from_iter(
                        ids.iter().map(|&i| Some((i % 40) as i32)),
                    )),
                    Arc::new(StringArray::from_iter(
                        ids.iter().map(|&i| (i % 11 != 0).then(|| text(i))),
                    )),
                ],
            )
            .unwrap()
        };
        let (dir, store) = local_store();
        let mut w = DataFileWriter::try_new(
            store,
            Path::from("tbl"),
            spec(&["p"], 1 << 30),
            Arc::clone(&schema),
        )
        .unwrap();
        assert!(w.small.is_some());
        for from in (0..n).step_by(4_000) {
            w.write(&batch(from, 4_000.min(n - from))).await.unwrap();
        }
        let files = w.close().await.unwrap();
        assert_eq!(files.len(), 21);
        let mut rows = 0;
        for f in &files {
            let back = read_back(&dir, f);
            let back = arrow::compute::concat_batches(&back[0].schema(), &back).unwrap();
            let ids = back.column(0).as_primitive::<Int64Type>();
            let (first, count) = (ids.value(0), back.num_rows() as i64);
            assert_eq!(f.num_records, count);
            // The rows as written, without the partition column.
            let expected = batch(first, count).project(&[0, 2, 3, 4, 5]).unwrap();
            assert_eq!(back.columns(), expected.columns(), "{}", f.path);
            assert!(
                (first..first + count).all(|i| partition(i) == partition(first)),
                "{}",
                f.path
            );
            rows += count;
            let meta = parquet_metadata(&dir, f);
            let streamed = meta
                .row_group(0)
                .columns()
                .iter()
                .all(|c| c.offset_index_offset().is_some());
            assert_eq!(
                streamed,
                count == big || partition(first) == 1,
                "{} ({count} rows)",
                f.path
            );
        }
        assert_eq!(rows, n);
    }

    #[tokio::test]
    async fn rejects_bad_batches_and_specs() {
        let (_dir, store) = local_store();
        assert!(
            DataFileWriter::try_new(
                Arc::clone(&store),
                Path::from("tbl"),
                spec(&["nope"], 1),
                schema()
            )
            .is_err()
        );
        let only_part = Arc::new(Schema::new(vec![Field::new("p", DataType::Utf8, true)]));
        assert!(
            DataFileWriter::try_new(
                Arc::clone(&store),
                Path::from("tbl"),
                spec(&["p"], 1),
                only_part
            )
            .is_err()
        );
        let mut w = DataFileWriter::try_new(store, Path::from("tbl"), spec(&[], 1 << 20), schema())
            .unwrap();
        let b = rows(0, 10, |_| None, |_| None);
        let err = w.write(&b.project(&[0, 1]).unwrap()).await.unwrap_err();
        assert!(matches!(err, Error::SchemaMismatch(_)), "{err}");
        // A null in the NOT NULL `id` column.
        let mut cols: Vec<ArrayRef> = b.columns().to_vec();
        cols[0] = Arc::new(Int64Array::from(vec![None; 10]));
        let relaxed = Arc::new(Schema::new(
            schema()
                .fields()
                .iter()
                .map(|f| f.as_ref().clone().with_nullable(true))
                .collect::<Vec<_>>(),
        ));
        let bad = RecordBatch::try_new(relaxed, cols).unwrap();
        let err = w.write(&bad).await.unwrap_err();
        assert!(matches!(err, Error::DataViolation(_)), "{err}");
        assert!(err.to_string().contains("`id`"));
        let files = w.close().await.unwrap();
        assert!(files.is_empty());
    }
}
