//! Streaming a split as Arrow batches with the normalized source schema.

use std::sync::atomic::{AtomicU64, Ordering};

use parquet::arrow::arrow_reader::{
    ArrowPredicateFn, RowFilter, RowSelection, RowSelectionPolicy, RowSelector,
};

use super::*;
use crate::expr::Predicate;
use crate::table::column_mapping;
use crate::task::Keep;

/// How the columns of a split's batches are produced.
pub(super) struct Shape {
    uri: String,
    /// The columns that come from the file (source schema minus partition columns).
    data_schema: SchemaRef,
    /// The batches' schema: the source schema's fields in order, then partition columns
    /// the source schema does not have (as strings).
    out_schema: SchemaRef,
    /// For each output column: `Some(value)` for a partition constant, `None` for data.
    constants: Vec<Option<Option<String>>>,
    /// Decimals come in the narrower type they travel in where the file stores them so
    /// ([`read_split_narrowed`]).
    narrow: bool,
}

impl Shape {
    fn new(split: &SourceSplit, source_schema: &Schema, narrow: bool) -> Result<Shape> {
        let source_schema = normalize_arrow_schema(source_schema)?;
        let partition_value = |name: &str| -> Option<Option<String>> {
            split
                .partition_values
                .get(name)
                .or_else(|| {
                    let lower = name.to_lowercase();
                    split
                        .partition_values
                        .iter()
                        .find(|(k, _)| k.to_lowercase() == lower)
                        .map(|(_, v)| v)
                })
                .cloned()
        };
        let mut out_fields = Vec::new();
        let mut data_fields = Vec::new();
        let mut constants = Vec::new();
        for f in source_schema.fields() {
            out_fields.push(f.as_ref().clone());
            match partition_value(f.name()) {
                Some(v) => constants.push(Some(v)),
                None => {
                    data_fields.push(f.as_ref().clone());
                    constants.push(None);
                }
            }
        }
        for (k, v) in &split.partition_values {
            if find(source_schema.fields(), k).is_none() {
                out_fields.push(Field::new(k, DataType::Utf8, true));
                constants.push(Some(v.clone()));
            }
        }
        let data_schema = Arc::new(Schema::new(data_fields));
        // A column-mapped table's files are renamed to logical names after decoding, by
        // the table's types.
        let narrow = narrow && !column_mapping::is_mapped(&data_schema);
        Ok(Shape {
            uri: split.uri.clone(),
            data_schema,
            out_schema: Arc::new(Schema::new(out_fields)),
            constants,
            narrow,
        })
    }

    /// Conforms a decoded batch to the data columns and adds the partition constants.
    fn finish(&self, batch: RecordBatch) -> Result<RecordBatch> {
        let data = if self.narrow {
            conform_batch_keeping_narrowed(&batch, &self.data_schema)
        } else {
            conform_batch(&batch, &self.data_schema)
        };
        let data = data.map_err(|e| match e {
            Error::DataViolation(m) => Error::DataViolation(format!("{}: {m}", self.uri)),
            Error::SchemaMismatch(m) => corrupt(&self.uri, m),
            other => other,
        })?;
        let rows = data.num_rows();
        let mut data_columns = data.columns().iter();
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.constants.len());
        for (field, constant) in self.out_schema.fields().iter().zip(&self.constants) {
            match constant {
                Some(value) => columns.push(constant_array(field, value.as_deref(), rows)?),
                None => columns.push(
                    data_columns
                        .next()
                        .ok_or_else(|| Error::internal("data columns out of step"))?
                        .clone(),
                ),
            }
        }
        let options = RecordBatchOptions::new().with_row_count(Some(rows));
        let schema = if self.narrow && data.schema().fields() != self.data_schema.fields() {
            crate::schema::with_column_types(&self.out_schema, &columns)
        } else {
            self.out_schema.clone()
        };
        RecordBatch::try_new_with_options(schema, columns, &options)
            .map_err(|e| Error::DataViolation(format!("{}: {e}", self.uri)))
    }
}

/// Streams the rows of `split` in batches of at most `batch_rows` rows.
///
/// Batches have the normalized `source_schema` (columns matched by name
/// case-insensitively and cast; columns a file lacks are null), with `split.partition_values`
/// as constant columns: in place when `source_schema` has the column (typed by it), appended
/// as strings otherwise. Parquet splits read only their row groups and only the needed
/// columns; CSV and JSON files are decoded as they stream in. Undecodable data is an
/// [`Error::CorruptFile`]; values that do not fit the schema (an unsigned 64-bit value above
/// the `long` range, nulls in a NOT NULL column) an [`Error::DataViolation`] naming the file;
/// storage failures stay [`Error::ObjectStore`].
pub async fn read_split(
    split: &SourceSplit,
    source_schema: SchemaRef,
    batch_rows: usize,
) -> Result<BoxStream<'static, Result<RecordBatch>>> {
    Ok(read_split_filtered(split, source_schema, batch_rows, None)
        .await?
        .0)
}

/// [`read_split`], except that decimal columns a Parquet file stores as 32-bit (64-bit)
/// integers come as `Decimal32` (`Decimal64`) where the source schema's type is the
/// `Decimal128` that travels so ([`crate::exchange::narrow_type`]): the stored values as they
/// are, for a data file writer that takes them so (a quarter or half of the bytes to decode,
/// gather and encode). Other columns, and other formats, come as [`read_split`] gives them.
pub async fn read_split_narrowed(
    split: &SourceSplit,
    source_schema: SchemaRef,
    batch_rows: usize,
) -> Result<BoxStream<'static, Result<RecordBatch>>> {
    Ok(read(split, source_schema, batch_rows, None, None, true)
        .await?
        .0)
}

/// Every `stride`-th row of `split` (the first, then every `stride`-th after it): a sample.
/// A Parquet file without a deletion vector decodes only those rows (the reader skips the
/// others without materializing them); anything else is read whole and thinned.
pub async fn read_split_sampled(
    split: &SourceSplit,
    source_schema: SchemaRef,
    batch_rows: usize,
    stride: u64,
) -> Result<BoxStream<'static, Result<RecordBatch>>> {
    if stride <= 1 {
        return read_split(split, source_schema, batch_rows).await;
    }
    let parquet = matches!(split.format, SourceFormat::Parquet | SourceFormat::Delta);
    if parquet && split.deletion_vector.is_none() {
        return Ok(
            read(split, source_schema, batch_rows, None, Some(stride), false)
                .await?
                .0,
        );
    }
    let mut seen = 0u64;
    Ok(read_split(split, source_schema, batch_rows)
        .await?
        .map(move |batch| {
            let batch = batch?;
            let n = batch.num_rows() as u64;
            let first = (stride - seen % stride) % stride;
            seen += n;
            let idx =
                arrow::array::UInt64Array::from_iter_values((first..n).step_by(stride as usize));
            Ok(arrow::compute::take_record_batch(&batch, &idx)?)
        })
        .boxed())
}

/// Rows a Parquet read leaves out while decoding (late materialization): the filter's
/// columns are decoded first, and the other columns only for the rows kept.
#[derive(Clone)]
pub struct RowFilterSpec {
    pub predicate: Predicate,
    pub keep: Keep,
    /// Rows left out so far.
    pub dropped: Arc<AtomicU64>,
}

/// [`read_split`] with an optional row filter. The filter applies only to Parquet splits
/// without a deletion vector whose file has every column the predicate references (and
/// none of them a partition column); the returned flag says whether it was applied (if
/// not, the caller filters the rows itself).
pub async fn read_split_filtered(
    split: &SourceSplit,
    source_schema: SchemaRef,
    batch_rows: usize,
    filter: Option<&RowFilterSpec>,
) -> Result<(BoxStream<'static, Result<RecordBatch>>, bool)> {
    read(split, source_schema, batch_rows, filter, None, false).await
}

/// [`read_split_filtered`], with a Parquet sampling stride (see [`read_parquet`]), and with
/// `narrow`, decimals as [`read_split_narrowed`] reads them.
async fn read(
    split: &SourceSplit,
    source_schema: SchemaRef,
    batch_rows: usize,
    filter: Option<&RowFilterSpec>,
    stride: Option<u64>,
    narrow: bool,
) -> Result<(BoxStream<'static, Result<RecordBatch>>, bool)> {
    let batch_rows = batch_rows.max(1);
    let parquet = matches!(split.format, SourceFormat::Parquet | SourceFormat::Delta);
    let shape = Arc::new(Shape::new(split, &source_schema, narrow && parquet)?);
    let url = parse_url(&split.uri)?;
    let (store, path) = store_for(&url)?;
    let (batches, applied) = match split.format {
        SourceFormat::Parquet | SourceFormat::Delta => {
            read_parquet(split, store, path, &shape, batch_rows, filter, stride).await?
        }
        SourceFormat::Csv => (read_csv(store, path, &shape, batch_rows).await?, false),
        SourceFormat::Json => (read_json(store, path, &shape, batch_rows).await?, false),
    };
    let finish = shape.clone();
    Ok((
        batches
            .map(move |b| b.and_then(|b| finish.finish(b)))
            .boxed(),
        applied,
    ))
}

/// The row filter of a read, when it can be applied to this file: `None` when the split has
/// a deletion vector (rows must keep their positions) or the file lacks a filter column.
fn parquet_row_filter(
    split: &SourceSplit,
    meta: &ArrowReaderMetadata,
    filter: &RowFilterSpec,
) -> Option<RowFilter> {
    if split.deletion_vector.is_some() {
        return None;
    }
    let file_fields = meta.schema().fields();
    let mut roots = Vec::new();
    for column in filter.predicate.columns() {
        if split
            .partition_values
            .keys()
            .any(|k| k.eq_ignore_ascii_case(&column))
        {
            return None;
        }
        let i = file_fields
            .iter()
            .position(|f| f.name() == &column)
            .or_else(|| {
                file_fields
                    .iter()
                    .position(|f| f.name().eq_ignore_ascii_case(&column))
            })?;
        roots.push(i);
    }
    let mask = ProjectionMask::roots(meta.parquet_schema(), roots);
    let f = filter.clone();
    let predicate = ArrowPredicateFn::new(mask, move |batch: RecordBatch| {
        let matching = f
            .predicate
            .evaluate(&batch)
            .map_err(|e| ArrowError::ComputeError(e.to_string()))?;
        let keep = match f.keep {
            Keep::Matching => matching,
            Keep::NotMatching => arrow::compute::not(&matching)?,
        };
        f.dropped.fetch_add(
            (batch.num_rows() - keep.true_count()) as u64,
            Ordering::Relaxed,
        );
        Ok(keep)
    });
    Some(RowFilter::new(vec![Box::new(predicate)]))
}

/// The rows of a Parquet split: with `filter`, those it keeps (when it applies: the flag);
/// with `stride`, only every `stride`-th row of the row groups read is decoded (callers
/// pass none for a split with a deletion vector, whose row positions must stay whole).
pub(super) async fn read_parquet(
    split: &SourceSplit,
    store: Arc<dyn ObjectStore>,
    path: Path,
    shape: &Shape,
    batch_rows: usize,
    filter: Option<&RowFilterSpec>,
    stride: Option<u64>,
) -> Result<(BoxStream<'static, Result<RecordBatch>>, bool)> {
    let uri = split.uri.clone();
    let (reader, meta) = parquet_metadata(store, path, &uri, None, shape.narrow).await?;
    // A column-mapped table's files name columns physically: they are read by those names
    // and renamed (no row filter while decoding: it names columns logically).
    let mapped = column_mapping::is_mapped(&shape.data_schema);
    let row_filter = filter
        .filter(|_| !mapped)
        .and_then(|f| parquet_row_filter(split, &meta, f));
    let filtered = row_filter.is_some();
    let num_row_groups = meta.metadata().num_row_groups();
    let projection: Vec<usize> = meta
        .schema()
        .fields()
        .iter()
        .enumerate()
        .filter(|(_, f)| {
            if mapped {
                shape
                    .data_schema
                    .fields()
                    .iter()
                    .any(|d| column_mapping::physical_name(d) == f.name())
            } else {
                find(shape.data_schema.fields(), f.name()).is_some()
            }
        })
        .map(|(i, _)| i)
        .collect();
    let mask = ProjectionMask::roots(meta.parquet_schema(), projection);
    let mut builder = ParquetRecordBatchStreamBuilder::new_with_metadata(reader, meta)
        .with_batch_size(batch_rows)
        .with_projection(mask);
    if !split.row_groups.is_empty() {
        let mut row_groups = Vec::with_capacity(split.row_groups.len());
        for &rg in &split.row_groups {
            let rg = rg as usize;
            if rg >= num_row_groups {
                return Err(corrupt(
                    &uri,
                    format!("row group {rg} does not exist (the file has {num_row_groups})"),
                ));
            }
            row_groups.push(rg);
        }
        builder = builder.with_row_groups(row_groups);
    }
    if let Some(rf) = row_filter {
        builder = builder.with_row_filter(rf);
    }
    // The rows the stream covers, as (first row, row count) ranges of the file, so that a
    // deletion vector's row indexes can be matched to streamed rows.
    let row_ranges: Vec<(u64, u64)> = {
        let groups = builder.metadata().row_groups();
        let mut starts = Vec::with_capacity(groups.len());
        let mut next = 0u64;
        for g in groups {
            let n = u64::try_from(g.num_rows()).unwrap_or(0);
            starts.push((next, n));
            next += n;
        }
        if split.row_groups.is_empty() {
            starts
        } else {
            split
                .row_groups
                .iter()
                .map(|&rg| starts[rg as usize])
                .collect()
        }
    };
    if let Some(stride) = stride {
        // Rows of the row groups read, in order: keep one, skip `stride - 1`.
        let mut selectors = Vec::new();
        let mut left: u64 = row_ranges.iter().map(|r| r.1).sum();
        while left > 0 {
            selectors.push(RowSelector::select(1));
            let skip = (stride - 1).min(left - 1);
            if skip > 0 {
                selectors.push(RowSelector::skip(skip as usize));
            }
            left -= 1 + skip;
        }
        // Skipped, not decoded and masked: arrow's default masks selections this dense,
        // which materializes every string of a column only to drop most of them.
        builder = builder
            .with_row_selection(RowSelection::from(selectors))
            .with_row_selection_policy(RowSelectionPolicy::Selectors);
    }
    let deleted = match &split.deletion_vector {
        // Splits carry resolved (absolute or inline) vectors: see `table::file_split`.
        Some(dv) => Some(crate::table::dv::load(dv, &parse_url(&split.uri)?).await?),
        None => None,
    };
    let stream = builder.build().map_err(|e| parquet_err(&uri, e))?;
    let logical = mapped.then(|| shape.data_schema.clone());
    let stream = stream
        .map(move |r| {
            let batch = r.map_err(|e| parquet_err(&uri, e))?;
            match &logical {
                Some(schema) => column_mapping::to_logical_batch(&batch, schema),
                None => Ok(batch),
            }
        })
        .boxed();
    Ok((
        match deleted {
            Some(deleted) => crate::table::dv::skip_deleted(stream, deleted, row_ranges),
            None => stream,
        },
        filtered,
    ))
}

/// A push decoder of CSV or JSON bytes.
pub(super) trait ChunkDecoder: Send {
    fn decode(&mut self, buf: &[u8]) -> Result<usize, ArrowError>;
    fn flush(&mut self) -> Result<Option<RecordBatch>, ArrowError>;
}

impl ChunkDecoder for arrow::csv::reader::Decoder {
    fn decode(&mut self, buf: &[u8]) -> Result<usize, ArrowError> {
        arrow::csv::reader::Decoder::decode(self, buf)
    }
    fn flush(&mut self) -> Result<Option<RecordBatch>, ArrowError> {
        arrow::csv::reader::Decoder::flush(self)
    }
}

impl ChunkDecoder for arrow::json::reader::Decoder {
    fn decode(&mut self, buf: &[u8]) -> Result<usize, ArrowError> {
        arrow::json::reader::Decoder::decode(self, buf)
    }
    fn flush(&mut self) -> Result<Option<RecordBatch>, ArrowError> {
        arrow::json::reader::Decoder::flush(self)
    }
}

pub(super) struct DecodeState {
    uri: String,
    chunks: BoxStream<'static, object_store::Result<Bytes>>,
    buf: Bytes,
    decoder: Box<dyn ChunkDecoder>,
    eof: bool,
    done: bool,
}

impl DecodeState {
    async fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        loop {
            if self.done {
                return Ok(None);
            }
            if !self.buf.is_empty() {
                let n = self
                    .decoder
                    .decode(&self.buf)
                    .map_err(|e| arrow_err(&self.uri, e))?;
                self.buf.advance(n);
                if self.buf.is_empty() {
                    continue;
                }
                // The decoder is full: hand out a batch.
                match self.decoder.flush().map_err(|e| arrow_err(&self.uri, e))? {
                    Some(batch) => return Ok(Some(batch)),
                    None if n == 0 => {
                        return Err(corrupt(&self.uri, "the decoder made no progress"));
                    }
                    None => continue,
                }
            }
            if self.eof {
                // An empty buffer tells the CSV decoder the input ended (last line without
                // a line break).
                self.decoder
                    .decode(&[])
                    .map_err(|e| arrow_err(&self.uri, e))?;
                let batch = self.decoder.flush().map_err(|e| arrow_err(&self.uri, e))?;
                if batch.is_none() {
                    self.done = true;
                }
                return Ok(batch);
            }
            match self.chunks.next().await {
                Some(chunk) => self.buf = chunk?,
                None => self.eof = true,
            }
        }
    }
}

pub(super) fn decode_stream(state: DecodeState) -> BoxStream<'static, Result<RecordBatch>> {
    stream::try_unfold(state, |mut state| async move {
        let batch = state.next_batch().await?;
        Ok(batch.map(|b| (b, state)))
    })
    .boxed()
}

pub(super) async fn read_json(
    store: Arc<dyn ObjectStore>,
    path: Path,
    shape: &Shape,
    batch_rows: usize,
) -> Result<BoxStream<'static, Result<RecordBatch>>> {
    let decoder = arrow::json::ReaderBuilder::new(shape.data_schema.clone())
        .with_batch_size(batch_rows)
        .build_decoder()
        .map_err(|e| corrupt(&shape.uri, e))?;
    let chunks = store.get(&path).await?.into_stream();
    let uri = shape.uri.clone();
    let batches = decode_stream(DecodeState {
        uri: uri.clone(),
        chunks,
        buf: Bytes::new(),
        decoder: Box::new(decoder),
        eof: false,
        done: false,
    });
    // A malformed object: say on which line of the file.
    Ok(batches
        .then(move |r| {
            let uri = uri.clone();
            async move {
                match r {
                    Err(Error::CorruptFile { .. }) => match locate_json_error(&uri).await {
                        Some(why) => Err(corrupt(&uri, why)),
                        None => r,
                    },
                    r => r,
                }
            }
        })
        .boxed())
}

pub(super) async fn read_csv(
    store: Arc<dyn ObjectStore>,
    path: Path,
    shape: &Shape,
    batch_rows: usize,
) -> Result<BoxStream<'static, Result<RecordBatch>>> {
    let uri = shape.uri.clone();
    let mut chunks = store.get(&path).await?.into_stream();
    // Read up to the end of the header line to learn this file's column order.
    let mut head: Vec<u8> = Vec::new();
    let mut eof = false;
    while !head.contains(&b'\n') {
        match chunks.next().await {
            Some(chunk) => head.extend_from_slice(&chunk?),
            None => {
                eof = true;
                break;
            }
        }
        if head.len() > CSV_MAX_HEADER_BYTES && !head[..CSV_MAX_HEADER_BYTES].contains(&b'\n') {
            return Err(corrupt(&uri, "no line break in the first MiB (header row)"));
        }
    }
    if head.is_empty() {
        return Ok(stream::empty().boxed());
    }
    let header_end = head
        .iter()
        .position(|b| *b == b'\n')
        .map(|i| i + 1)
        .unwrap_or(head.len());
    let (header, _) = arrow::csv::reader::Format::default()
        .with_header(true)
        .infer_schema(&head[..header_end], Some(0))
        .map_err(|e| corrupt(&uri, e))?;
    // Decode columns the source schema has (by name, case-insensitively) with its types;
    // skip the others.
    let mut file_fields = Vec::with_capacity(header.fields().len());
    let mut projection = Vec::new();
    for (i, h) in header.fields().iter().enumerate() {
        match find(shape.data_schema.fields(), h.name()) {
            Some(f)
                if !projection.iter().any(|&j: &usize| {
                    file_fields
                        .get(j)
                        .is_some_and(|g: &Field| g.name().eq_ignore_ascii_case(f.name()))
                }) =>
            {
                file_fields.push(Field::new(f.name(), f.data_type().clone(), true));
                projection.push(i);
            }
            _ => file_fields.push(Field::new(format!("_skip_{i}"), DataType::Utf8, true)),
        }
    }
    let decoder = arrow::csv::ReaderBuilder::new(Arc::new(Schema::new(file_fields)))
        .with_header(true)
        .with_batch_size(batch_rows)
        .with_projection(projection)
        .build_decoder();
    Ok(decode_stream(DecodeState {
        uri,
        chunks,
        buf: Bytes::from(head),
        decoder: Box::new(decoder),
        eof,
        done: false,
    }))
}
