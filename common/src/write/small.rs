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
//! Only flat columns of fixed-width types are encoded here: integers, dates, timestamps
//! (milli-, micro- and nanoseconds), decimals of up to 18 digits, floats. A table with a
//! column of any other type has all its files written by the crate's writer
//! ([`Layout::try_new`] says which). Deliberately not written for these files: page
//! indexes (a column of one page gains nothing from them).

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::{
    DataType, Date32Type, Decimal32Type, Decimal64Type, Decimal128Type, Float32Type, Float64Type,
    Int8Type, Int16Type, Int32Type, Int64Type, Schema, TimeUnit, TimestampMicrosecondType,
    TimestampMillisecondType, TimestampNanosecondType,
};
use bytes::Bytes;
use parquet::basic::{Compression, Encoding, EncodingMask, PageType, Type as PhysicalType};
use parquet::column::page::{CompressedPage, Page, PageWriteSpec, PageWriter};
use parquet::column::writer::ColumnCloseResult;
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
        _ => return None,
    };
    let expected = match kind {
        Kind::Int32 => PhysicalType::INT32,
        Kind::Int64 => PhysicalType::INT64,
        Kind::Float => PhysicalType::FLOAT,
        Kind::Double => PhysicalType::DOUBLE,
    };
    (physical == expected).then_some(kind)
}

/// Encodes the rows of one file (`batches`, of the Arrow schema the layout was made for,
/// or it with decimals narrowed) as a whole Parquet file with `props`.
pub(super) fn encode(
    layout: &Layout,
    batches: &[RecordBatch],
    props: &Arc<WriterProperties>,
) -> Result<Vec<u8>> {
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
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
        closed.push(match kind {
            Kind::Int32 => column.encode::<i32>(&columns, &mut scratch, &mut chunks)?,
            Kind::Int64 => column.encode::<i64>(&columns, &mut scratch, &mut chunks)?,
            Kind::Float => column.encode::<f32>(&columns, &mut scratch, &mut chunks)?,
            Kind::Double => column.encode::<f64>(&columns, &mut scratch, &mut chunks)?,
        });
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
    file.into_inner()
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
    /// The dictionary's values by key.
    dictionary: HashMap<u64, u32, BuildHasherDefault<Mix>>,
    snappy: Option<snap::raw::Encoder>,
}

/// A value of a column encoded here, in its physical type.
trait Value: Copy + PartialOrd {
    /// Appends the value's PLAIN encoding.
    fn put(self, out: &mut Vec<u8>);
    /// The value's dictionary key (its bits).
    fn key(self) -> u64;
    /// Whether the value is left out of statistics (NaN).
    fn skipped(self) -> bool {
        false
    }
    /// Statistics bounds as the crate writes them (a float's zero bounds signed).
    fn bounds(min: Self, max: Self) -> (Self, Self) {
        (min, max)
    }
    fn statistics(stats: ValueStatistics<Self>) -> Statistics;
    /// The values of `array` (one per row, nulls' slots included) in this type.
    fn values(array: &dyn Array, out: &mut Vec<Self>) -> Result<()>;
}

impl Value for i32 {
    fn put(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
    fn key(self) -> u64 {
        u64::from(self as u32)
    }
    fn statistics(stats: ValueStatistics<Self>) -> Statistics {
        Statistics::Int32(stats)
    }
    fn values(array: &dyn Array, out: &mut Vec<Self>) -> Result<()> {
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

impl Value for i64 {
    fn put(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
    fn key(self) -> u64 {
        self as u64
    }
    fn statistics(stats: ValueStatistics<Self>) -> Statistics {
        Statistics::Int64(stats)
    }
    fn values(array: &dyn Array, out: &mut Vec<Self>) -> Result<()> {
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

impl Value for f32 {
    fn put(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
    fn key(self) -> u64 {
        u64::from(self.to_bits())
    }
    fn skipped(self) -> bool {
        self.is_nan()
    }
    fn bounds(min: Self, max: Self) -> (Self, Self) {
        (
            if min == 0.0 { -0.0 } else { min },
            if max == 0.0 { 0.0 } else { max },
        )
    }
    fn statistics(stats: ValueStatistics<Self>) -> Statistics {
        Statistics::Float(stats)
    }
    fn values(array: &dyn Array, out: &mut Vec<Self>) -> Result<()> {
        match array.data_type() {
            DataType::Float32 => {
                out.extend_from_slice(array.as_primitive::<Float32Type>().values());
                Ok(())
            }
            other => Err(unexpected(other, "FLOAT")),
        }
    }
}

impl Value for f64 {
    fn put(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
    fn key(self) -> u64 {
        self.to_bits()
    }
    fn skipped(self) -> bool {
        self.is_nan()
    }
    fn bounds(min: Self, max: Self) -> (Self, Self) {
        (
            if min == 0.0 { -0.0 } else { min },
            if max == 0.0 { 0.0 } else { max },
        )
    }
    fn statistics(stats: ValueStatistics<Self>) -> Statistics {
        Statistics::Double(stats)
    }
    fn values(array: &dyn Array, out: &mut Vec<Self>) -> Result<()> {
        match array.data_type() {
            DataType::Float64 => {
                out.extend_from_slice(array.as_primitive::<Float64Type>().values());
                Ok(())
            }
            other => Err(unexpected(other, "DOUBLE")),
        }
    }
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
    /// chunk's pages at the end of `out`.
    fn encode<T: Value>(
        &self,
        columns: &[&ArrayRef],
        scratch: &mut Scratch,
        out: &mut TrackedWrite<Vec<u8>>,
    ) -> Result<ColumnCloseResult> {
        let path = self.descr.path();
        let nullable = self.descr.max_def_level() > 0;
        // The non-null values, in order, and the rows' definition levels.
        let mut all = Vec::with_capacity(self.rows);
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

        let codec = self.props.compression(path);
        let dictionary = self.props.dictionary_enabled(path);
        let mut writer = SerializedPageWriter::new(out);
        let mut specs: Vec<PageWriteSpec> = Vec::with_capacity(2);

        // The data page: levels, then the values (dictionary indices or plain).
        scratch.page.clear();
        if nullable {
            let start = scratch.page.len();
            scratch.page.extend_from_slice(&[0; 4]);
            if nulls == 0 {
                rle_run(1, self.rows, 1, &mut scratch.page);
            } else {
                hybrid(&scratch.levels, 1, &mut scratch.page);
            }
            let len = (scratch.page.len() - start - 4) as u32;
            scratch.page[start..start + 4].copy_from_slice(&len.to_le_bytes());
        }
        let mut dictionary_page = None;
        let encoding = if dictionary {
            scratch.dictionary.clear();
            scratch.indices.clear();
            let mut entries: Vec<T> = Vec::new();
            for v in &values {
                let next = entries.len() as u32;
                let index = *scratch.dictionary.entry(v.key()).or_insert(next);
                if index == next {
                    entries.push(*v);
                }
                scratch.indices.push(index);
            }
            let width = bit_width(entries.len().saturating_sub(1) as u64);
            scratch.page.push(width);
            hybrid(&scratch.indices, width, &mut scratch.page);
            let mut plain = Vec::with_capacity(entries.len() * std::mem::size_of::<T>());
            for v in &entries {
                v.put(&mut plain);
            }
            dictionary_page = Some((plain, entries.len()));
            Encoding::RLE_DICTIONARY
        } else {
            scratch
                .page
                .reserve(values.len() * std::mem::size_of::<T>());
            for v in &values {
                v.put(&mut scratch.page);
            }
            Encoding::PLAIN
        };

        let mut encodings = EncodingMask::new_from_encodings([Encoding::RLE].iter());
        let mut encoding_stats = Vec::with_capacity(2);
        if let Some((plain, entries)) = dictionary_page {
            let uncompressed = plain.len();
            let page = Page::DictionaryPage {
                buf: compress(codec, &plain, &mut scratch.snappy)?,
                num_values: entries as u32,
                encoding: Encoding::PLAIN,
                is_sorted: false,
            };
            specs.push(writer.write_page(CompressedPage::new(page, uncompressed))?);
            encodings.insert(Encoding::PLAIN);
            encoding_stats.push(PageEncodingStats {
                page_type: PageType::DICTIONARY_PAGE,
                encoding: Encoding::PLAIN,
                count: 1,
            });
        }
        let uncompressed = scratch.page.len();
        let buf = compress(codec, &scratch.page, &mut scratch.snappy)?;
        let page = Page::DataPage {
            buf,
            num_values: self.rows as u32,
            encoding,
            def_level_encoding: Encoding::RLE,
            rep_level_encoding: Encoding::RLE,
            statistics: None,
        };
        let data = writer.write_page(CompressedPage::new(page, uncompressed))?;
        let data_offset = data.offset as i64;
        specs.push(data);
        encodings.insert(encoding);
        encoding_stats.push(PageEncodingStats {
            page_type: PageType::DATA_PAGE,
            encoding,
            count: 1,
        });

        let compressed: usize = specs.iter().map(|s| s.compressed_size).sum();
        let uncompressed: usize = specs.iter().map(|s| s.uncompressed_size).sum();
        let dictionary_offset = (specs.len() > 1).then(|| specs[0].offset as i64);
        let mut metadata = ColumnChunkMetaData::builder(Arc::clone(&self.descr))
            .set_compression(codec)
            .set_encodings_mask(encodings)
            .set_page_encoding_stats(encoding_stats)
            .set_total_compressed_size(compressed as i64)
            .set_total_uncompressed_size(uncompressed as i64)
            .set_num_values(self.rows as i64)
            .set_data_page_offset(data_offset)
            .set_dictionary_page_offset(dictionary_offset);
        if self.props.statistics_enabled(path) != EnabledStatistics::None {
            let mut bounds: Option<(T, T)> = None;
            for &v in values.iter().filter(|v| !v.skipped()) {
                bounds = Some(match bounds {
                    None => (v, v),
                    Some((lo, hi)) => (if v < lo { v } else { lo }, if v > hi { v } else { hi }),
                });
            }
            let bounds = bounds.map(|(lo, hi)| T::bounds(lo, hi));
            let stats = ValueStatistics::new(
                bounds.map(|b| b.0),
                bounds.map(|b| b.1),
                None,
                Some(nulls as u64),
                false,
            )
            .with_backwards_compatible_min_max(self.descr.sort_order().is_signed());
            metadata = metadata.set_statistics(T::statistics(stats));
        }
        Ok(ColumnCloseResult {
            bytes_written: compressed as u64,
            rows_written: self.rows as u64,
            metadata: metadata.build()?,
            bloom_filter: None,
            column_index: None,
            offset_index: None,
        })
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
