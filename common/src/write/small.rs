//! Small data files encoded whole, without the `parquet` crate's column writers.
//!
//! A partitioned write finishes a file per partition, most of them a few thousand rows.
//! The crate's `ArrowWriter` sets up a column writer per column and file (encoders, a
//! dictionary, page buffers, statistics and page index builders): about 2,000 allocations
//! per file, which left a load of 5M rows into 1,834 partitions 1.3–1.4 times as long as
//! the same rows into 4 files. A file whose rows stay within [`MAX_ROWS`] and [`MAX_BYTES`] is
//! instead held as Arrow rows until it finishes and encoded here in one pass, laid out as
//! the crate's writer lays out such a file: one row group and, per column, a dictionary
//! page when the file's properties ask for one and a single data page (format v1, the
//! crate's default), with the same per-column choices (dictionary or plain, Snappy or
//! uncompressed) and the same column chunk statistics. The crate still writes the pages'
//! headers ([`SerializedPageWriter`]) and the footer ([`SerializedFileWriter`]).
//!
//! Only flat columns are encoded here, of these types: integers, dates, timestamps
//! (milli-, micro- and nanoseconds), decimals of up to 18 digits, floats, strings and
//! binaries. A table with a column of any other type (booleans, wider decimals, nested
//! types) has all its files written by the crate's writer ([`Layout::try_new`] says
//! which), as has a file whose dictionary or page would pass the properties' limits (long
//! strings; [`encode`] says so). Deliberately not written for these files: page indexes (a
//! column of one page gains nothing from them) and level histograms.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash};
use std::sync::Arc;

use arrow::array::{Array, ArrayAccessor, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::{
    DataType, Date32Type, Decimal32Type, Decimal64Type, Decimal128Type, Float32Type, Float64Type,
    Int8Type, Int16Type, Int32Type, Int64Type, Schema, TimeUnit, TimestampMicrosecondType,
    TimestampMillisecondType, TimestampNanosecondType,
};
use bytes::Bytes;
use parquet::basic::{
    Compression, ConvertedType, Encoding, EncodingMask, LogicalType, PageType, Type as PhysicalType,
};
use parquet::column::page::{CompressedPage, Page, PageWriter};
use parquet::column::writer::ColumnCloseResult;
use parquet::data_type::ByteArray;
use parquet::errors::{ParquetError, Result};
use parquet::file::metadata::{ColumnChunkMetaData, PageEncodingStats};
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterVersion};
use parquet::file::statistics::{Statistics, ValueStatistics};
use parquet::file::writer::{SerializedFileWriter, SerializedPageWriter, TrackedWrite};
use parquet::schema::types::{ColumnDescPtr, SchemaDescriptor};

use crate::hash::Mix;

/// Rows of a file encoded here at most: the crate's writer starts a second data page past
/// 20,000 rows (its default page row limit), which a file encoded here never has.
pub(super) const MAX_ROWS: usize = 20_000;
/// Bytes of Arrow rows held for a file at most (past them it goes to the crate's writer).
pub(super) const MAX_BYTES: usize = 2 * 1024 * 1024;

/// The physical type a column is encoded as.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Int32,
    Int64,
    Float,
    Double,
    Bytes,
}

/// The columns of a table's files, when every one can be encoded here.
#[derive(Debug)]
pub(super) struct Layout {
    schema: Arc<SchemaDescriptor>,
    kinds: Vec<Kind>,
}

impl Layout {
    /// The layout of files with Arrow schema `arrow` (one top-level field per Parquet
    /// column) and Parquet schema `parquet`, written with `props` (before per-file
    /// choices); `None` when some column, or a property, is not one encoded here.
    pub(super) fn try_new(
        arrow: &Schema,
        parquet: &SchemaDescriptor,
        props: &WriterProperties,
    ) -> Option<Self> {
        if arrow.fields().len() != parquet.num_columns()
            || props.writer_version() != WriterVersion::PARQUET_1_0
        {
            return None;
        }
        let kinds = arrow
            .fields()
            .iter()
            .enumerate()
            .map(|(i, field)| {
                let column = parquet.column(i);
                let path = column.path();
                let flat = column.max_rep_level() == 0
                    && column.max_def_level() <= 1
                    && path.parts().len() == 1;
                if !flat
                    || props.bloom_filter_properties(path).is_some()
                    || !matches!(
                        props.compression(path),
                        Compression::SNAPPY | Compression::UNCOMPRESSED
                    )
                {
                    return None;
                }
                kind(field.data_type(), column.physical_type())
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Self {
            schema: Arc::new(parquet.clone()),
            kinds,
        })
    }

    /// The files' Parquet schema.
    pub(super) fn parquet_schema(&self) -> &SchemaDescriptor {
        &self.schema
    }
}

/// The physical type a column of Arrow type `t` is encoded as here, if it is one encoded
/// here and `physical` is the type the crate's writer gives it.
fn kind(t: &DataType, physical: PhysicalType) -> Option<Kind> {
    use DataType as D;
    let kind = match t {
        D::Int8 | D::Int16 | D::Int32 | D::Date32 | D::Decimal32(_, _) => Kind::Int32,
        D::Int64 | D::Timestamp(TimeUnit::Millisecond, _) => Kind::Int64,
        D::Timestamp(TimeUnit::Microsecond | TimeUnit::Nanosecond, _) => Kind::Int64,
        D::Decimal64(_, _) | D::Decimal128(_, _) => match physical {
            PhysicalType::INT32 => Kind::Int32,
            _ => Kind::Int64,
        },
        D::Float32 => Kind::Float,
        D::Float64 => Kind::Double,
        D::Utf8 | D::LargeUtf8 | D::Utf8View => Kind::Bytes,
        D::Binary | D::LargeBinary | D::BinaryView => Kind::Bytes,
        _ => return None,
    };
    let expected = match kind {
        Kind::Int32 => PhysicalType::INT32,
        Kind::Int64 => PhysicalType::INT64,
        Kind::Float => PhysicalType::FLOAT,
        Kind::Double => PhysicalType::DOUBLE,
        Kind::Bytes => PhysicalType::BYTE_ARRAY,
    };
    (physical == expected).then_some(kind)
}

/// Encodes the rows of one file (`batches`, of the Arrow schema the layout was made for,
/// or it with decimals narrowed) as a whole Parquet file with `props`; `None` when the
/// crate's writer would lay some column out otherwise than in one page (a dictionary or a
/// page past the properties' limits: long strings), for it to write the file.
pub(super) fn encode(
    layout: &Layout,
    batches: &[RecordBatch],
    props: &Arc<WriterProperties>,
) -> Result<Option<Vec<u8>>> {
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    if rows > props.data_page_row_count_limit() {
        return Ok(None);
    }
    let bytes: usize = batches.iter().map(super::slice_bytes).sum();
    // Every column chunk, one after another, then copied once into the file.
    let mut chunks = TrackedWrite::new(Vec::with_capacity(bytes / 2 + 1024));
    let mut scratch = Scratch::default();
    let mut closed = Vec::with_capacity(layout.kinds.len());
    for (i, kind) in layout.kinds.iter().enumerate() {
        let columns: Vec<&ArrayRef> = batches.iter().map(|b| b.column(i)).collect();
        let column = ColumnChunk {
            descr: layout.schema.column(i),
            props,
            rows,
        };
        let close = match kind {
            Kind::Int32 => column.encode::<i32>(&columns, &mut scratch, &mut chunks)?,
            Kind::Int64 => column.encode::<i64>(&columns, &mut scratch, &mut chunks)?,
            Kind::Float => column.encode::<f32>(&columns, &mut scratch, &mut chunks)?,
            Kind::Double => column.encode::<f64>(&columns, &mut scratch, &mut chunks)?,
            Kind::Bytes => column.encode::<&[u8]>(&columns, &mut scratch, &mut chunks)?,
        };
        match close {
            Some(close) => closed.push(close),
            None => return Ok(None),
        }
    }
    let chunks = Bytes::from(chunks.into_inner()?);
    let footer = 1024 + 256 * layout.kinds.len();
    let mut file = SerializedFileWriter::new(
        Vec::with_capacity(chunks.len() + footer),
        layout.schema.root_schema_ptr(),
        Arc::clone(props),
    )?;
    let mut group = file.next_row_group()?;
    for close in closed {
        group.append_column(&chunks, close)?;
    }
    group.close()?;
    file.into_inner().map(Some)
}

/// Buffers reused from column to column of a file.
#[derive(Default)]
struct Scratch {
    /// Definition levels (0: null, 1: a value).
    levels: Vec<u32>,
    /// Dictionary indices of the values.
    indices: Vec<u32>,
    /// A page's bytes before compression.
    page: Vec<u8>,
    snappy: Option<snap::raw::Encoder>,
}

/// A value of a column encoded here, in its physical type (`&[u8]` for byte arrays,
/// borrowed from the rows).
trait Value<'a>: Copy + PartialOrd {
    /// What a dictionary tells values apart by.
    type Key: Hash + Eq;
    fn key(self) -> Self::Key;
    /// Appends the value's PLAIN encoding.
    fn put(self, out: &mut Vec<u8>);
    /// Bytes of the value's PLAIN encoding.
    fn plain_len(self) -> usize;
    /// Whether the value is left out of statistics (NaN).
    fn skipped(self) -> bool {
        false
    }
    /// The column chunk's statistics as the crate writes them, from the bounds of its
    /// values (none: no value, or only NaN) and its null count.
    fn statistics(bounds: Option<(Self, Self)>, nulls: u64, column: &ColumnChunk<'_>)
    -> Statistics;
    /// Appends the values of `array` (one per row, nulls' slots included) in this type.
    fn values(array: &'a dyn Array, out: &mut Vec<Self>) -> Result<()>;
}

/// Fixed-width values' statistics: the bounds as they are (a float's zeros signed), kept
/// also in the deprecated fields for signed types, as the crate does.
fn fixed_statistics<T>(
    bounds: Option<(T, T)>,
    nulls: u64,
    column: &ColumnChunk<'_>,
    signed_zeros: impl Fn(T, T) -> (T, T),
) -> ValueStatistics<T> {
    let bounds = bounds.map(|(lo, hi)| signed_zeros(lo, hi));
    let (min, max) = bounds.map_or((None, None), |(lo, hi)| (Some(lo), Some(hi)));
    ValueStatistics::new(min, max, None, Some(nulls), false)
        .with_backwards_compatible_min_max(column.descr.sort_order().is_signed())
}

impl<'a> Value<'a> for i32 {
    type Key = u32;
    fn key(self) -> u32 {
        self as u32
    }
    fn put(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
    fn plain_len(self) -> usize {
        4
    }
    fn statistics(bounds: Option<(Self, Self)>, nulls: u64, c: &ColumnChunk<'_>) -> Statistics {
        Statistics::Int32(fixed_statistics(bounds, nulls, c, |lo, hi| (lo, hi)))
    }
    fn values(array: &'a dyn Array, out: &mut Vec<Self>) -> Result<()> {
        match array.data_type() {
            DataType::Int8 => extend(out, array.as_primitive::<Int8Type>().values(), i32::from),
            DataType::Int16 => extend(out, array.as_primitive::<Int16Type>().values(), i32::from),
            DataType::Int32 => out.extend_from_slice(array.as_primitive::<Int32Type>().values()),
            DataType::Date32 => out.extend_from_slice(array.as_primitive::<Date32Type>().values()),
            DataType::Decimal32(_, _) => {
                out.extend_from_slice(array.as_primitive::<Decimal32Type>().values())
            }
            // The crate's writer keeps the low bits of a decimal of up to 9 digits.
            DataType::Decimal64(_, _) => {
                extend(out, array.as_primitive::<Decimal64Type>().values(), |v| {
                    v as i32
                })
            }
            DataType::Decimal128(_, _) => {
                extend(out, array.as_primitive::<Decimal128Type>().values(), |v| {
                    v as i32
                })
            }
            other => return Err(unexpected(other, "INT32")),
        }
        Ok(())
    }
}

impl<'a> Value<'a> for i64 {
    type Key = u64;
    fn key(self) -> u64 {
        self as u64
    }
    fn put(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
    fn plain_len(self) -> usize {
        8
    }
    fn statistics(bounds: Option<(Self, Self)>, nulls: u64, c: &ColumnChunk<'_>) -> Statistics {
        Statistics::Int64(fixed_statistics(bounds, nulls, c, |lo, hi| (lo, hi)))
    }
    fn values(array: &'a dyn Array, out: &mut Vec<Self>) -> Result<()> {
        match array.data_type() {
            DataType::Int64 => out.extend_from_slice(array.as_primitive::<Int64Type>().values()),
            DataType::Timestamp(TimeUnit::Millisecond, _) => {
                out.extend_from_slice(array.as_primitive::<TimestampMillisecondType>().values())
            }
            DataType::Timestamp(TimeUnit::Microsecond, _) => {
                out.extend_from_slice(array.as_primitive::<TimestampMicrosecondType>().values())
            }
            DataType::Timestamp(TimeUnit::Nanosecond, _) => {
                out.extend_from_slice(array.as_primitive::<TimestampNanosecondType>().values())
            }
            DataType::Decimal64(_, _) => {
                out.extend_from_slice(array.as_primitive::<Decimal64Type>().values())
            }
            DataType::Decimal128(_, _) => {
                extend(out, array.as_primitive::<Decimal128Type>().values(), |v| {
                    v as i64
                })
            }
            other => return Err(unexpected(other, "INT64")),
        }
        Ok(())
    }
}

/// A float type's `Value`: its bits as dictionary key, NaN left out of statistics, zero
/// bounds signed.
macro_rules! float_value {
    ($t:ty, $bits:ty, $stats:ident, $arrow:ident, $arrow_type:ty, $physical:literal) => {
        impl<'a> Value<'a> for $t {
            type Key = $bits;
            fn key(self) -> $bits {
                self.to_bits()
            }
            fn put(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
            fn plain_len(self) -> usize {
                std::mem::size_of::<$t>()
            }
            fn skipped(self) -> bool {
                self.is_nan()
            }
            fn statistics(
                bounds: Option<(Self, Self)>,
                nulls: u64,
                c: &ColumnChunk<'_>,
            ) -> Statistics {
                let zeros = |lo: $t, hi: $t| {
                    (
                        if lo == 0.0 { -0.0 } else { lo },
                        if hi == 0.0 { 0.0 } else { hi },
                    )
                };
                Statistics::$stats(fixed_statistics(bounds, nulls, c, zeros))
            }
            fn values(array: &'a dyn Array, out: &mut Vec<Self>) -> Result<()> {
                match array.data_type() {
                    DataType::$arrow => {
                        out.extend_from_slice(array.as_primitive::<$arrow_type>().values());
                        Ok(())
                    }
                    other => Err(unexpected(other, $physical)),
                }
            }
        }
    };
}

float_value!(f32, u32, Float, Float32, Float32Type, "FLOAT");
float_value!(f64, u64, Double, Float64, Float64Type, "DOUBLE");

impl<'a> Value<'a> for &'a [u8] {
    type Key = &'a [u8];
    fn key(self) -> &'a [u8] {
        self
    }
    fn put(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&(self.len() as u32).to_le_bytes());
        out.extend_from_slice(self);
    }
    fn plain_len(self) -> usize {
        4 + self.len()
    }
    /// Bounds truncated to the properties' statistics length (a UTF-8 column's at a
    /// character boundary, the maximum incremented to stay an upper bound), as the crate
    /// does.
    fn statistics(bounds: Option<(Self, Self)>, nulls: u64, c: &ColumnChunk<'_>) -> Statistics {
        let signed = c.descr.sort_order().is_signed();
        let Some((min, max)) = bounds else {
            return Statistics::ByteArray(
                ValueStatistics::new(None, None, None, Some(nulls), false)
                    .with_backwards_compatible_min_max(signed),
            );
        };
        let utf8 = c.descr.logical_type_ref() == Some(&LogicalType::String)
            || c.descr.converted_type() == ConvertedType::UTF8;
        let limit = c.props.statistics_truncate_length();
        let (min, min_cut) = truncated(min, limit, utf8, false);
        let (max, max_cut) = truncated(max, limit, utf8, true);
        Statistics::ByteArray(
            ValueStatistics::new(
                Some(ByteArray::from(min)),
                Some(ByteArray::from(max)),
                None,
                Some(nulls),
                signed,
            )
            .with_max_is_exact(!max_cut)
            .with_min_is_exact(!min_cut),
        )
    }
    fn values(array: &'a dyn Array, out: &mut Vec<Self>) -> Result<()> {
        fn all<'b, A: ArrayAccessor<Item = &'b T>, T: AsRef<[u8]> + ?Sized + 'b>(
            array: A,
            out: &mut Vec<&'b [u8]>,
        ) {
            out.extend((0..array.len()).map(|i| array.value(i).as_ref()));
        }
        match array.data_type() {
            DataType::Utf8 => all(array.as_string::<i32>(), out),
            DataType::LargeUtf8 => all(array.as_string::<i64>(), out),
            DataType::Utf8View => all(array.as_string_view(), out),
            DataType::Binary => all(array.as_binary::<i32>(), out),
            DataType::LargeBinary => all(array.as_binary::<i64>(), out),
            DataType::BinaryView => all(array.as_binary_view(), out),
            other => return Err(unexpected(other, "BYTE_ARRAY")),
        }
        Ok(())
    }
}

/// A byte array bound cut to `limit` bytes if longer, as the crate cuts statistics: a UTF-8
/// column's valid UTF-8 at a character boundary, a maximum then incremented (its last
/// character, or byte, that can be) so that it stays an upper bound. Returns the bound and
/// whether it was cut; one that cannot be cut stays whole.
fn truncated(value: &[u8], limit: Option<usize>, utf8: bool, upper: bool) -> (Vec<u8>, bool) {
    let cut =
        limit
            .filter(|l| value.len() > *l)
            .and_then(|l| match (utf8, std::str::from_utf8(value)) {
                (true, Ok(text)) if upper => {
                    let split = (l.saturating_sub(3)..=l).rfind(|x| text.is_char_boundary(*x))?;
                    increment_utf8(text.get(..split)?)
                }
                (true, Ok(text)) => {
                    let split = (1..=l).rfind(|x| text.is_char_boundary(*x))?;
                    Some(value[..split].to_vec())
                }
                _ if upper => increment_bytes(value[..l].to_vec()),
                _ => Some(value[..l].to_vec()),
            });
    match cut {
        Some(cut) => (cut, true),
        None => (value.to_vec(), false),
    }
}

/// `text` with its last character that can be incremented without changing its width
/// incremented (and the characters after it dropped); `None` if none can.
fn increment_utf8(text: &str) -> Option<Vec<u8>> {
    text.char_indices().rev().find_map(|(at, c)| {
        let next = char::from_u32(c as u32 + 1).filter(|n| n.len_utf8() == c.len_utf8())?;
        let mut out = text.as_bytes()[..at + c.len_utf8()].to_vec();
        next.encode_utf8(&mut out[at..]);
        Some(out)
    })
}

/// `bytes` incremented as a big-endian number, from its last byte (bytes that overflow
/// become 0); `None` if every byte overflows.
fn increment_bytes(mut bytes: Vec<u8>) -> Option<Vec<u8>> {
    for b in bytes.iter_mut().rev() {
        let (next, overflow) = b.overflowing_add(1);
        *b = next;
        if !overflow {
            return Some(bytes);
        }
    }
    None
}

fn extend<A: Copy, B>(out: &mut Vec<B>, values: &[A], f: impl Fn(A) -> B) {
    out.extend(values.iter().map(|&v| f(v)));
}

fn unexpected(t: &DataType, physical: &str) -> ParquetError {
    ParquetError::General(format!(
        "a column of type {t} cannot be encoded as {physical} here"
    ))
}

/// One column chunk of a file being encoded.
struct ColumnChunk<'a> {
    descr: ColumnDescPtr,
    props: &'a WriterProperties,
    rows: usize,
}

impl ColumnChunk<'_> {
    /// Encodes the column's values (`columns`, the file's arrays of it in order) as its
    /// chunk's pages at the end of `out`; `None` (nothing written) when the crate's writer
    /// would not write them as one page (a dictionary or page past the properties' limits).
    fn encode<'a, T: Value<'a>>(
        &self,
        columns: &[&'a ArrayRef],
        scratch: &mut Scratch,
        out: &mut TrackedWrite<Vec<u8>>,
    ) -> Result<Option<ColumnCloseResult>> {
        let path = self.descr.path();
        let nullable = self.descr.max_def_level() > 0;
        // The non-null values, in order, and the rows' definition levels.
        let mut all: Vec<T> = Vec::with_capacity(self.rows);
        let mut values: Vec<T> = Vec::with_capacity(self.rows);
        scratch.levels.clear();
        let mut nulls = 0usize;
        for column in columns {
            all.clear();
            T::values(Arc::as_ref(column), &mut all)?;
            match column.logical_nulls().filter(|n| n.null_count() > 0) {
                Some(valid) => {
                    nulls += valid.null_count();
                    for (value, set) in all.iter().zip(valid.iter()) {
                        scratch.levels.push(u32::from(set));
                        if set {
                            values.push(*value);
                        }
                    }
                }
                None => {
                    scratch.levels.extend(std::iter::repeat_n(1, all.len()));
                    values.extend_from_slice(&all);
                }
            }
        }
        if !nullable && nulls > 0 {
            return Err(ParquetError::General(format!(
                "column {path} is required but has {nulls} null(s)"
            )));
        }

        // The data page: levels, then the values (dictionary indices or plain).
        scratch.page.clear();
        if nullable {
            scratch.page.extend_from_slice(&[0; 4]);
            if nulls == 0 {
                rle_run(1, self.rows, 1, &mut scratch.page);
            } else {
                hybrid(&scratch.levels, 1, &mut scratch.page);
            }
            let len = (scratch.page.len() - 4) as u32;
            scratch.page[..4].copy_from_slice(&len.to_le_bytes());
        }
        let plain_bytes: usize = values.iter().map(|v| v.plain_len()).sum();
        let mut dictionary_page = None;
        let encoding = if self.props.dictionary_enabled(path) {
            let mut dictionary: HashMap<T::Key, u32, BuildHasherDefault<Mix>> =
                HashMap::with_capacity_and_hasher(values.len().min(4096), Default::default());
            scratch.indices.clear();
            let mut entries: Vec<T> = Vec::new();
            for v in &values {
                let next = entries.len() as u32;
                let index = *dictionary.entry(v.key()).or_insert(next);
                if index == next {
                    entries.push(*v);
                }
                scratch.indices.push(index);
            }
            let mut plain = Vec::with_capacity(entries.iter().map(|v| v.plain_len()).sum());
            for v in &entries {
                v.put(&mut plain);
            }
            if plain.len() >= self.props.column_dictionary_page_size_limit(path) {
                return Ok(None);
            }
            let width = bit_width(entries.len().saturating_sub(1) as u64);
            scratch.page.push(width);
            hybrid(&scratch.indices, width, &mut scratch.page);
            dictionary_page = Some((plain, entries.len()));
            Encoding::RLE_DICTIONARY
        } else {
            scratch.page.reserve(plain_bytes);
            for v in &values {
                v.put(&mut scratch.page);
            }
            Encoding::PLAIN
        };
        // The crate starts a new page once a page's estimate reaches the limit (checked
        // every 1,024 rows): far under it, it would not have.
        if scratch.page.len() >= self.props.column_data_page_size_limit(path) / 2 {
            return Ok(None);
        }

        let codec = self.props.compression(path);
        let mut writer = SerializedPageWriter::new(out);
        let mut encodings = EncodingMask::new_from_encodings([Encoding::RLE].iter());
        let mut encoding_stats = Vec::with_capacity(2);
        let mut compressed = 0;
        let mut uncompressed = 0;
        let mut dictionary_offset = None;
        if let Some((plain, entries)) = dictionary_page {
            let page = Page::DictionaryPage {
                buf: compress(codec, &plain, &mut scratch.snappy)?,
                num_values: entries as u32,
                encoding: Encoding::PLAIN,
                is_sorted: false,
            };
            let spec = writer.write_page(CompressedPage::new(page, plain.len()))?;
            (compressed, uncompressed) = (spec.compressed_size, spec.uncompressed_size);
            dictionary_offset = Some(spec.offset as i64);
            encodings.insert(Encoding::PLAIN);
            encoding_stats.push(PageEncodingStats {
                page_type: PageType::DICTIONARY_PAGE,
                encoding: Encoding::PLAIN,
                count: 1,
            });
        }
        let page = Page::DataPage {
            buf: compress(codec, &scratch.page, &mut scratch.snappy)?,
            num_values: self.rows as u32,
            encoding,
            def_level_encoding: Encoding::RLE,
            rep_level_encoding: Encoding::RLE,
            statistics: None,
        };
        let data = writer.write_page(CompressedPage::new(page, scratch.page.len()))?;
        compressed += data.compressed_size;
        uncompressed += data.uncompressed_size;
        encodings.insert(encoding);
        encoding_stats.push(PageEncodingStats {
            page_type: PageType::DATA_PAGE,
            encoding,
            count: 1,
        });

        let mut metadata = ColumnChunkMetaData::builder(Arc::clone(&self.descr))
            .set_compression(codec)
            .set_encodings_mask(encodings)
            .set_page_encoding_stats(encoding_stats)
            .set_total_compressed_size(compressed as i64)
            .set_total_uncompressed_size(uncompressed as i64)
            .set_num_values(self.rows as i64)
            .set_data_page_offset(data.offset as i64)
            .set_dictionary_page_offset(dictionary_offset);
        if self.props.statistics_enabled(path) != EnabledStatistics::None {
            let mut bounds: Option<(T, T)> = None;
            for &v in values.iter().filter(|v| !v.skipped()) {
                bounds = Some(match bounds {
                    None => (v, v),
                    Some((lo, hi)) => (if v < lo { v } else { lo }, if v > hi { v } else { hi }),
                });
            }
            metadata = metadata.set_statistics(T::statistics(bounds, nulls as u64, self));
            if self.descr.physical_type() == PhysicalType::BYTE_ARRAY {
                // The values' bytes without their lengths.
                let bytes = plain_bytes - 4 * values.len();
                metadata = metadata.set_unencoded_byte_array_data_bytes(Some(bytes as i64));
            }
        }
        Ok(Some(ColumnCloseResult {
            bytes_written: compressed as u64,
            rows_written: self.rows as u64,
            metadata: metadata.build()?,
            bloom_filter: None,
            column_index: None,
            offset_index: None,
        }))
    }
}

/// A page's bytes compressed with `codec` (Snappy or none, see [`Layout::try_new`]).
fn compress(
    codec: Compression,
    page: &[u8],
    snappy: &mut Option<snap::raw::Encoder>,
) -> Result<Bytes> {
    match codec {
        Compression::UNCOMPRESSED => Ok(Bytes::copy_from_slice(page)),
        Compression::SNAPPY => {
            let encoder = snappy.get_or_insert_with(snap::raw::Encoder::new);
            let mut out = vec![0; snap::raw::max_compress_len(page.len())];
            let len = encoder
                .compress(page, &mut out)
                .map_err(|e| ParquetError::External(Box::new(e)))?;
            out.truncate(len);
            Ok(Bytes::from(out))
        }
        other => Err(ParquetError::General(format!(
            "codec {other} is not written here"
        ))),
    }
}

/// Bits needed for values up to `max`.
fn bit_width(max: u64) -> u8 {
    (64 - max.leading_zeros()) as u8
}

/// Appends an unsigned LEB128 varint.
fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Appends an RLE run of `count` times `value` (`width` bits) in the RLE/bit-packing
/// hybrid encoding.
fn rle_run(value: u32, count: usize, width: u8, out: &mut Vec<u8>) {
    varint((count as u64) << 1, out);
    let bytes = usize::from(width).div_ceil(8);
    out.extend_from_slice(&value.to_le_bytes()[..bytes]);
}

/// Appends a bit-packed run of `values` (`width` bits each, padded with zeros to a
/// multiple of 8 values).
fn bit_packed(values: &[u32], width: u8, out: &mut Vec<u8>) {
    let groups = values.len().div_ceil(8);
    varint(((groups as u64) << 1) | 1, out);
    let mut acc: u64 = 0;
    let mut bits = 0u32;
    let width = u32::from(width);
    for i in 0..groups * 8 {
        let v = values.get(i).copied().unwrap_or(0);
        acc |= u64::from(v) << bits;
        bits += width;
        while bits >= 8 {
            out.push(acc as u8);
            acc >>= 8;
            bits -= 8;
        }
    }
    // 8 values of `width` bits are a whole number of bytes: nothing is left over.
}

/// Appends `values` (`width` bits each) in the RLE/bit-packing hybrid encoding: runs of
/// at least 8 repeats as RLE runs, the values between them bit-packed.
fn hybrid(values: &[u32], width: u8, out: &mut Vec<u8>) {
    if width == 0 {
        // Every value is 0.
        if !values.is_empty() {
            rle_run(0, values.len(), 0, out);
        }
        return;
    }
    let mut packed_from = 0;
    let mut i = 0;
    while i < values.len() {
        let v = values[i];
        let mut end = i + 1;
        while end < values.len() && values[end] == v {
            end += 1;
        }
        if end - i >= 8 {
            // A bit-packed run holds a multiple of 8 values (all but the last), so the
            // values before the repeats take the first few of them.
            let pad = (8 - (i - packed_from) % 8) % 8;
            if end - i >= pad + 8 {
                let start = i + pad;
                if start > packed_from {
                    bit_packed(&values[packed_from..start], width, out);
                }
                rle_run(v, end - start, width, out);
                packed_from = end;
            }
        }
        i = end;
    }
    if packed_from < values.len() {
        bit_packed(&values[packed_from..], width, out);
    }
}

#[cfg(test)]
mod tests;
