//! Hive-style partitioning as Delta Spark does it: partition-value serialization
//! (PROTOCOL.md "Partition Value Serialization"), directory escaping
//! (Spark's `ExternalCatalogUtils.escapePathName`), the URL encoding of `add.path`, and
//! grouping the rows of a batch by their partition values.
//!
//! Grouping is columnar: rows are never turned into strings one by one. Runs of equal
//! partition values are found in one vectorised pass (`arrow::compute::partition`); each
//! run's key is looked up once in a hash map over the arrow row format. A batch whose groups
//! are single runs (clustered input, the common case after an exchange) is cut into zero-copy
//! slices; otherwise the rows of each group are gathered (stable: rows keep their input order
//! within a group, which preserves any clustering the data had), fixed-width columns run by
//! run, the rest with one `take`.

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt::Write as _;
use std::hash::BuildHasherDefault;
use std::ops::Range;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, ArrowPrimitiveType, AsArray, BooleanArray, BooleanBufferBuilder,
    PrimitiveArray, RecordBatch, RecordBatchOptions, UInt32Array,
};
use arrow::buffer::{BooleanBuffer, NullBuffer};
use arrow::compute::{cast, partition, take_arrays};
use arrow::datatypes::{
    DataType, Date32Type, Date64Type, Decimal32Type, Decimal64Type, Decimal128Type, Decimal256Type,
    Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, Schema, TimeUnit,
    TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
    TimestampSecondType, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use arrow::row::{Row, RowConverter, SortField};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::{Error, Result};

/// Partition values of a file or group of rows, keyed by partition column; `None` is null.
/// Values are in Delta's partition-value string form ([`partition_value_string`]).
pub type PartitionValues = BTreeMap<String, Option<String>>;

/// The directory name Hive, Spark and Delta use for a null (or empty) partition value.
pub const HIVE_DEFAULT_PARTITION: &str = "__HIVE_DEFAULT_PARTITION__";

/// Escapes a partition column name or value for use in a directory name: every UTF-8 byte
/// outside RFC 3986's unreserved characters (`A-Za-z0-9-._~`) becomes `%XX` (upper-case
/// hex), exactly as delta-rs names its directories. This escapes everything Spark's
/// `escapePathName` escapes and more (spaces, `<>|`, non-ASCII…), which Spark keeps literal.
/// Both are valid Delta tables (readers take partition values from the log, and Hive-style
/// unescaping decodes any `%XX`), but only plain-ASCII, URL-safe object keys are read right
/// by every engine on every store: polars, for one, re-encodes keys through URL parsing on
/// S3 and misses a literal space or `ü`.
pub fn escape_partition_path_value(s: &str) -> String {
    let keep = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~');
    if s.bytes().all(keep) {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for b in s.bytes() {
        if keep(b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Characters kept as is in an `add.path`: RFC 3986 unreserved ones plus `/` and `=`.
const LOG_PATH_KEEP: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/')
    .remove(b'=');

/// The form of a path relative to the table root as stored in `add.path`: every byte except
/// `A-Za-z0-9-._~/=` is percent-encoded (`%` → `%25`, space → `%20`, UTF-8 byte-wise).
/// Delta Spark and delta-rs decode it back to the on-disk name.
pub fn encode_log_path(relative_disk_path: &str) -> String {
    utf8_percent_encode(relative_disk_path, LOG_PATH_KEEP).to_string()
}

/// The relative directory of a partition, `a=1/b=__HIVE_DEFAULT_PARTITION__`, in
/// `partition_columns` order, names and values escaped with
/// [`escape_partition_path_value`]. Null, missing and empty values are written as
/// [`HIVE_DEFAULT_PARTITION`] (as Spark does). Empty for an unpartitioned table.
pub fn hive_partition_dir(
    partition_columns: &[String],
    values: &BTreeMap<String, Option<String>>,
) -> String {
    let mut out = String::new();
    for (i, col) in partition_columns.iter().enumerate() {
        if i > 0 {
            out.push('/');
        }
        out.push_str(&escape_partition_path_value(col));
        out.push('=');
        match values.get(col) {
            Some(Some(v)) if !v.is_empty() => out.push_str(&escape_partition_path_value(v)),
            _ => out.push_str(HIVE_DEFAULT_PARTITION),
        }
    }
    out
}

/// Writes `unscaled` (an integer in decimal digits, optionally with a leading `-`) as a
/// plain decimal number with `scale` fractional digits: `(-1230, 2)` → `-12.30`,
/// `(5, 2)` → `0.05`, `(12, -2)` → `1200`.
pub(crate) fn format_decimal(unscaled: &str, scale: i8) -> String {
    let mut out = String::with_capacity(unscaled.len() + 2);
    push_decimal(&mut out, unscaled, scale);
    out
}

/// Appends [`format_decimal`]'s text to `out`.
pub(crate) fn push_decimal(out: &mut String, unscaled: &str, scale: i8) {
    let (sign, digits) = match unscaled.strip_prefix('-') {
        Some(d) => ("-", d),
        None => ("", unscaled),
    };
    if scale <= 0 {
        if digits == "0" {
            out.push('0');
            return;
        }
        out.push_str(sign);
        out.push_str(digits);
        out.extend(std::iter::repeat_n('0', usize::from(scale.unsigned_abs())));
        return;
    }
    let scale = scale as usize;
    out.push_str(sign);
    if digits.len() > scale {
        let (whole, frac) = digits.split_at(digits.len() - scale);
        out.push_str(whole);
        out.push('.');
        out.push_str(frac);
    } else {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', scale - digits.len()));
        out.push_str(digits);
    }
}

/// Splits a timestamp in `unit` into whole seconds (floored) and nanoseconds.
pub(crate) fn timestamp_parts(value: i64, unit: TimeUnit) -> (i64, u32) {
    let per_sec: i64 = match unit {
        TimeUnit::Second => 1,
        TimeUnit::Millisecond => 1_000,
        TimeUnit::Microsecond => 1_000_000,
        TimeUnit::Nanosecond => 1_000_000_000,
    };
    let secs = value.div_euclid(per_sec);
    let sub = value.rem_euclid(per_sec);
    // `sub < per_sec <= 1e9`, and the factor makes it nanoseconds.
    let nanos = (sub * (1_000_000_000 / per_sec)) as u32;
    (secs, nanos)
}

/// `value` (a timestamp in `unit`) as a UTC date-time, or an error naming it.
pub(crate) fn timestamp_to_datetime(
    value: i64,
    unit: TimeUnit,
) -> Result<chrono::DateTime<chrono::Utc>> {
    let (secs, nanos) = timestamp_parts(value, unit);
    chrono::DateTime::from_timestamp(secs, nanos).ok_or_else(|| {
        Error::invalid(format!(
            "timestamp value {value} ({unit:?}) is out of range"
        ))
    })
}

/// Days since the epoch as a date, or an error naming it.
pub(crate) fn days_to_date(days: i64) -> Result<chrono::NaiveDate> {
    chrono::NaiveDate::from_ymd_opt(1970, 1, 1)
        .and_then(|epoch| epoch.checked_add_signed(chrono::TimeDelta::try_days(days)?))
        .ok_or_else(|| {
            Error::invalid(format!(
                "date value {days} (days since epoch) is out of range"
            ))
        })
}

/// Formats a double the way Delta readers parse it back: shortest round-trip digits, and
/// Java's names for the non-finite values.
fn float_string(v: f64, repr: impl FnOnce() -> String) -> String {
    if v.is_nan() {
        "NaN".to_string()
    } else if v == f64::INFINITY {
        "Infinity".to_string()
    } else if v == f64::NEG_INFINITY {
        "-Infinity".to_string()
    } else {
        repr()
    }
}

/// The Delta partition-value string of `array[row]` (PROTOCOL.md "Partition Value
/// Serialization"): `None` for null; strings as is; integers and booleans in decimal and
/// `true`/`false`; dates `YYYY-MM-DD`; timestamps (with or without zone) as
/// `YYYY-MM-DD HH:MM:SS.ffffff` in UTC; decimals with their scale (`-12.30`); floats in their
/// shortest round-trip form (`1.5`, `1e20`, `NaN`, `Infinity`).
///
/// Binary values are written as their UTF-8 text, as Delta Spark does (delta-rs reads the
/// string's UTF-8 bytes back); bytes that are not valid UTF-8 are refused. Nested types
/// cannot be partition columns. Both give [`Error::InvalidInput`].
pub fn partition_value_string(array: &dyn Array, row: usize) -> Result<Option<String>> {
    if row >= array.len() {
        return Err(Error::internal(format!(
            "partition value row {row} out of bounds ({} rows)",
            array.len()
        )));
    }
    if array.is_null(row) {
        return Ok(None);
    }
    let s = match array.data_type() {
        DataType::Utf8 => array.as_string::<i32>().value(row).to_string(),
        DataType::LargeUtf8 => array.as_string::<i64>().value(row).to_string(),
        DataType::Utf8View => array.as_string_view().value(row).to_string(),
        DataType::Binary => binary_partition_string(array.as_binary::<i32>().value(row))?,
        DataType::LargeBinary => binary_partition_string(array.as_binary::<i64>().value(row))?,
        DataType::BinaryView => binary_partition_string(array.as_binary_view().value(row))?,
        DataType::Boolean => array.as_boolean().value(row).to_string(),
        DataType::Int8 => array.as_primitive::<Int8Type>().value(row).to_string(),
        DataType::Int16 => array.as_primitive::<Int16Type>().value(row).to_string(),
        DataType::Int32 => array.as_primitive::<Int32Type>().value(row).to_string(),
        DataType::Int64 => array.as_primitive::<Int64Type>().value(row).to_string(),
        DataType::UInt8 => array.as_primitive::<UInt8Type>().value(row).to_string(),
        DataType::UInt16 => array.as_primitive::<UInt16Type>().value(row).to_string(),
        DataType::UInt32 => array.as_primitive::<UInt32Type>().value(row).to_string(),
        DataType::UInt64 => array.as_primitive::<UInt64Type>().value(row).to_string(),
        DataType::Float32 => {
            let v = array.as_primitive::<Float32Type>().value(row);
            float_string(f64::from(v), || format!("{v:?}"))
        }
        DataType::Float64 => {
            let v = array.as_primitive::<Float64Type>().value(row);
            float_string(v, || format!("{v:?}"))
        }
        DataType::Date32 => {
            let days = array.as_primitive::<Date32Type>().value(row);
            days_to_date(i64::from(days))?
                .format("%Y-%m-%d")
                .to_string()
        }
        DataType::Date64 => {
            let ms = array.as_primitive::<Date64Type>().value(row);
            timestamp_to_datetime(ms, TimeUnit::Millisecond)?
                .format("%Y-%m-%d")
                .to_string()
        }
        DataType::Timestamp(unit, _) => {
            let v = match unit {
                TimeUnit::Second => array.as_primitive::<TimestampSecondType>().value(row),
                TimeUnit::Millisecond => {
                    array.as_primitive::<TimestampMillisecondType>().value(row)
                }
                TimeUnit::Microsecond => {
                    array.as_primitive::<TimestampMicrosecondType>().value(row)
                }
                TimeUnit::Nanosecond => array.as_primitive::<TimestampNanosecondType>().value(row),
            };
            // Values are UTC instants (with zone) or wall-clock readings (without); both
            // print the stored reading without conversion.
            timestamp_to_datetime(v, *unit)?
                .format("%Y-%m-%d %H:%M:%S%.6f")
                .to_string()
        }
        DataType::Decimal32(_, scale) => format_decimal(
            &array.as_primitive::<Decimal32Type>().value(row).to_string(),
            *scale,
        ),
        DataType::Decimal64(_, scale) => format_decimal(
            &array.as_primitive::<Decimal64Type>().value(row).to_string(),
            *scale,
        ),
        DataType::Decimal128(_, scale) => format_decimal(
            &array
                .as_primitive::<Decimal128Type>()
                .value(row)
                .to_string(),
            *scale,
        ),
        DataType::Decimal256(_, scale) => format_decimal(
            &array
                .as_primitive::<Decimal256Type>()
                .value(row)
                .to_string(),
            *scale,
        ),
        DataType::Dictionary(_, value_type) => {
            // One value: decode just this row.
            let one = cast(&array.slice(row, 1), value_type)?;
            return partition_value_string(one.as_ref(), 0);
        }
        other => {
            return Err(Error::invalid(format!(
                "cannot partition by column of type {other}"
            )));
        }
    };
    Ok(Some(s))
}

/// A timestamp partition value in silt's form (`2024-01-31 12:00:00.000000`, a UTC
/// instant) in the ISO-8601 form recent Delta Spark writes (`2024-01-31T12:00:00.000000Z`).
pub fn iso_utc(v: &str) -> String {
    if v.contains('T') {
        v.to_string()
    } else {
        format!("{}Z", v.replacen(' ', "T", 1))
    }
}

fn binary_partition_string(bytes: &[u8]) -> Result<String> {
    std::str::from_utf8(bytes).map(str::to_string).map_err(|e| {
        Error::invalid(format!(
            "binary partition value is not valid UTF-8 ({e}); Delta stores partition values as text"
        ))
    })
}

/// The partition values of row `row` of `columns`, keyed by `names`.
fn partition_values_at(
    names: &[String],
    columns: &[ArrayRef],
    row: usize,
) -> Result<PartitionValues> {
    names
        .iter()
        .zip(columns)
        .map(|(name, col)| Ok((name.clone(), partition_value_string(col.as_ref(), row)?)))
        .collect()
}

/// Where the rows of each partition of `batch` are: per group of rows with equal values of
/// `partition_columns`, in no particular group order, its partition values (Delta strings,
/// `None` for null) and its runs of consecutive rows, in input order. A batch without rows
/// gives no groups; no partition columns gives one group of every row. Nothing is copied:
/// a writer gathers a group ([`gather_runs`]) just before it encodes it, and only the
/// columns it writes, so a gathered copy of the whole batch never exists (a by-date load
/// peaked about a fifth lower than gathering the batch at once).
///
/// Runs in a few columnar passes and O(rows).
pub fn partition_runs(
    batch: &RecordBatch,
    partition_columns: &[String],
) -> Result<Vec<(PartitionValues, Vec<Range<usize>>)>> {
    let rows = batch.num_rows();
    if rows == 0 {
        return Ok(Vec::new());
    }
    if partition_columns.is_empty() {
        return Ok(vec![(BTreeMap::new(), std::iter::once(0..rows).collect())]);
    }
    let schema = batch.schema();
    let mut key_columns: Vec<ArrayRef> = Vec::with_capacity(partition_columns.len());
    for name in partition_columns {
        let idx = schema.index_of(name).map_err(|_| {
            Error::invalid(format!(
                "partition column `{name}` is not in the data (columns: {})",
                crate::schema::column_list(&schema)
            ))
        })?;
        let col = Arc::clone(batch.column(idx));
        // Refuse unsupported types before doing any work.
        if matches!(
            col.data_type(),
            DataType::FixedSizeBinary(_)
                | DataType::Struct(_)
                | DataType::List(_)
                | DataType::LargeList(_)
                | DataType::ListView(_)
                | DataType::LargeListView(_)
                | DataType::FixedSizeList(_, _)
                | DataType::Map(_, _)
                | DataType::Union(_, _)
                | DataType::Null
        ) {
            return Err(Error::invalid(format!(
                "cannot partition by column `{name}` of type {}",
                col.data_type()
            )));
        }
        key_columns.push(col);
    }

    // Runs of equal values in arrival order: one vectorised pass.
    let runs = partition(&key_columns)?.ranges();
    if runs.len() == 1 {
        let values = partition_values_at(partition_columns, &key_columns, 0)?;
        return Ok(vec![(values, runs)]);
    }
    group_runs(partition_columns, &key_columns, runs)
}

/// The rows of `batch` in `runs` (ranges of its rows, in order) as one batch: a zero-copy
/// slice for one run, gathered otherwise. Fixed-width and boolean columns are copied run by
/// run when runs are long enough for a copy to beat a row-by-row `take` (a table sorted by
/// date with its null dates scattered arrives in runs of about ten rows); other columns,
/// and runs shorter than that, are gathered with `take`.
pub fn gather_runs(batch: &RecordBatch, runs: &[Range<usize>]) -> Result<RecordBatch> {
    gather(batch, runs, false)
}

/// [`gather_runs`], except that `Decimal128` columns copied run by run come narrowed
/// ([`crate::exchange::narrow_type`]) where every gathered value fits: a quarter or half of
/// the bytes to write, and to read again when encoded (their Parquet columns are the same).
pub fn gather_runs_narrowed(batch: &RecordBatch, runs: &[Range<usize>]) -> Result<RecordBatch> {
    gather(batch, runs, true)
}

fn gather(batch: &RecordBatch, runs: &[Range<usize>], narrow: bool) -> Result<RecordBatch> {
    match runs {
        [] => Ok(batch.slice(0, 0)),
        [r] => Ok(batch.slice(r.start, r.end - r.start)),
        _ => {
            let len: usize = runs.iter().map(|r| r.end - r.start).sum();
            let by_runs = len >= MIN_COPIED_RUN_ROWS * runs.len();
            let mut indices: Option<UInt32Array> = None;
            let mut columns = Vec::with_capacity(batch.num_columns());
            let mut fields = Vec::with_capacity(batch.num_columns());
            for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
                let copied = if by_runs {
                    copy_runs(column, runs, len, narrow)
                } else {
                    None
                };
                let gathered = match copied {
                    Some(c) => c,
                    None => {
                        let indices = indices.get_or_insert_with(|| {
                            let mut all: Vec<u32> = Vec::with_capacity(len);
                            for r in runs {
                                all.extend(r.start as u32..r.end as u32);
                            }
                            UInt32Array::from(all)
                        });
                        arrow::compute::take(column.as_ref(), indices, None)?
                    }
                };
                fields.push(if gathered.data_type() == field.data_type() {
                    Arc::clone(field)
                } else {
                    Arc::new(
                        field
                            .as_ref()
                            .clone()
                            .with_data_type(gathered.data_type().clone()),
                    )
                });
                columns.push(gathered);
            }
            let schema = if fields
                .iter()
                .zip(batch.schema().fields())
                .all(|(a, b)| Arc::ptr_eq(a, b))
            {
                batch.schema()
            } else {
                Arc::new(Schema::new_with_metadata(
                    fields,
                    batch.schema().metadata().clone(),
                ))
            };
            Ok(RecordBatch::try_new_with_options(
                schema,
                columns,
                &RecordBatchOptions::new().with_row_count(Some(len)),
            )?)
        }
    }
}

/// Runs at least this long on average are copied run by run ([`gather_runs`]).
const MIN_COPIED_RUN_ROWS: usize = 4;

/// The rows of `column` in `runs` (`len` rows in all), copied run by run, for fixed-width
/// primitive and boolean columns (decimals narrowed if `narrow` and they fit); `None` for
/// other types.
fn copy_runs(
    column: &ArrayRef,
    runs: &[Range<usize>],
    len: usize,
    narrow: bool,
) -> Option<ArrayRef> {
    if narrow && let Some(narrowed) = copy_narrowed_runs(column, runs, len) {
        return Some(narrowed);
    }
    arrow::array::downcast_primitive_array!(
        column => Some(copy_primitive_runs(column, runs, len)),
        DataType::Boolean => {
            let column = column.as_boolean();
            let values = copy_bit_runs(column.values(), runs, len);
            let nulls = copy_null_runs(column.nulls(), runs, len);
            Some(Arc::new(BooleanArray::new(values, nulls)))
        }
        _ => None
    )
}

fn copy_primitive_runs<T: ArrowPrimitiveType>(
    column: &PrimitiveArray<T>,
    runs: &[Range<usize>],
    len: usize,
) -> ArrayRef {
    let values = copy_value_runs(column.values(), runs, len);
    let nulls = copy_null_runs(column.nulls(), runs, len);
    Arc::new(
        PrimitiveArray::<T>::new(values.into(), nulls).with_data_type(column.data_type().clone()),
    )
}

/// A `Decimal128` column's `runs` as the narrower decimal it travels in, if it has one and
/// every value in the runs (valid or not) fits.
fn copy_narrowed_runs(column: &ArrayRef, runs: &[Range<usize>], len: usize) -> Option<ArrayRef> {
    let to = crate::exchange::narrow_type(column.data_type())?;
    let wide = column.as_primitive_opt::<Decimal128Type>()?;
    let nulls = || copy_null_runs(wide.nulls(), runs, len);
    match to {
        DataType::Decimal32(p, s) => {
            let values = copy_narrowing_runs(wide.values(), runs, len, |v| v as i32, i128::from)?;
            let array = PrimitiveArray::<Decimal32Type>::new(values.into(), nulls());
            Some(Arc::new(array.with_precision_and_scale(p, s).ok()?))
        }
        DataType::Decimal64(p, s) => {
            let values = copy_narrowing_runs(wide.values(), runs, len, |v| v as i64, i128::from)?;
            let array = PrimitiveArray::<Decimal64Type>::new(values.into(), nulls());
            Some(Arc::new(array.with_precision_and_scale(p, s).ok()?))
        }
        _ => None,
    }
}

/// Values copied per run in blocks of this many: a run of ten values is two fixed-size
/// copies, not a call to `memcpy` (whose start-up cost is most of a short run's copy).
const COPY_BLOCK: usize = 8;

/// The values of `runs` (`len` in all), in order.
fn copy_value_runs<T: Copy>(values: &[T], runs: &[Range<usize>], len: usize) -> Vec<T> {
    let total: usize = runs.iter().map(|r| r.len()).sum();
    assert_eq!(total, len, "runs hold {total} values, not {len}");
    let mut out: Vec<T> = Vec::with_capacity(len + COPY_BLOCK);
    let src = values.as_ptr();
    let dst = out.as_mut_ptr();
    let mut at = 0;
    for r in runs {
        let run = &values[r.clone()];
        let n = run.len();
        // SAFETY: `run` is within `values`, and `at + n <= len` (the runs hold `len` values
        // together, checked above). A block copy reads at most `COPY_BLOCK - 1` values past
        // the run's end, done only where those are still within `values`, and writes as far
        // past `at + n`, within the capacity of `len + COPY_BLOCK`; later runs overwrite what
        // it wrote there. Every position below `len` is written before `set_len`.
        unsafe {
            if r.start + n.next_multiple_of(COPY_BLOCK) <= values.len() {
                let mut i = 0;
                while i < n {
                    std::ptr::copy_nonoverlapping(
                        src.add(r.start + i),
                        dst.add(at + i),
                        COPY_BLOCK,
                    );
                    i += COPY_BLOCK;
                }
            } else {
                std::ptr::copy_nonoverlapping(run.as_ptr(), dst.add(at), n);
            }
        }
        at += n;
    }
    // SAFETY: positions `0..len` were written above; `T: Copy` needs no drop.
    unsafe { out.set_len(len) };
    out
}

/// The values of `runs` (`len` in all) narrowed by `narrow` (undone by `widen`), or `None`
/// if one does not fit.
fn copy_narrowing_runs<T: Copy + PartialEq, U: Copy>(
    values: &[T],
    runs: &[Range<usize>],
    len: usize,
    narrow: impl Fn(T) -> U,
    widen: impl Fn(U) -> T,
) -> Option<Vec<U>> {
    let mut out: Vec<U> = Vec::with_capacity(len);
    let spare = &mut out.spare_capacity_mut()[..len];
    let mut fits = true;
    let mut at = 0;
    for r in runs {
        let run = &values[r.clone()];
        for (to, &v) in spare[at..at + run.len()].iter_mut().zip(run) {
            let n = narrow(v);
            fits &= widen(n) == v;
            to.write(n);
        }
        at += run.len();
    }
    assert_eq!(at, len, "runs hold {at} values, not {len}");
    // SAFETY: the loop above wrote positions `0..len`; `U: Copy` needs no drop.
    unsafe { out.set_len(len) };
    fits.then_some(out)
}

/// The validity of `runs` of a column, or none where the column has no nulls.
fn copy_null_runs(
    nulls: Option<&NullBuffer>,
    runs: &[Range<usize>],
    len: usize,
) -> Option<NullBuffer> {
    let nulls = nulls.filter(|n| n.null_count() > 0)?;
    Some(NullBuffer::new(copy_bit_runs(nulls.inner(), runs, len))).filter(|n| n.null_count() > 0)
}

fn copy_bit_runs(bits: &BooleanBuffer, runs: &[Range<usize>], len: usize) -> BooleanBuffer {
    let mut out = BooleanBufferBuilder::new(len);
    let offset = bits.offset();
    for r in runs {
        out.append_packed_range(offset + r.start..offset + r.end, bits.values());
    }
    out.finish()
}

/// Groups runs of equal partition values (several runs may share values) using the arrow
/// row format of each run's first row as the key: one hash lookup per run, not per row.
/// Runs of a group keep their input order.
fn group_runs(
    partition_columns: &[String],
    key_columns: &[ArrayRef],
    runs: Vec<Range<usize>>,
) -> Result<Vec<(PartitionValues, Vec<Range<usize>>)>> {
    let starts = UInt32Array::from_iter_values(runs.iter().map(|r| r.start as u32));
    let run_keys = take_arrays(key_columns, &starts, None)?;
    let converter = RowConverter::new(
        run_keys
            .iter()
            .map(|c| SortField::new(c.data_type().clone()))
            .collect(),
    )?;
    let rows = converter.convert_columns(&run_keys)?;

    // Group id per distinct key; each group lists its runs in input order.
    // Hashed once per run, as many as a few thousand per batch: a fast hasher.
    let mut ids: HashMap<Row<'_>, usize, BuildHasherDefault<crate::hash::Mix>> =
        HashMap::with_capacity_and_hasher(runs.len().min(1024), Default::default());
    let mut groups: Vec<(usize, Vec<Range<usize>>)> = Vec::new(); // (first run, runs)
    for (i, run) in runs.into_iter().enumerate() {
        match ids.entry(rows.row(i)) {
            Entry::Occupied(e) => groups[*e.get()].1.push(run),
            Entry::Vacant(e) => {
                e.insert(groups.len());
                groups.push((i, vec![run]));
            }
        }
    }
    groups
        .into_iter()
        .map(|(first_run, g)| {
            Ok((
                partition_values_at(partition_columns, &run_keys, first_run)?,
                g,
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn timestamp_partition_values_in_iso_form() {
        assert_eq!(
            super::iso_utc("1971-07-22 03:06:40.000000"),
            "1971-07-22T03:06:40.000000Z"
        );
        assert_eq!(
            super::iso_utc("1971-07-22T03:06:40.000000Z"),
            "1971-07-22T03:06:40.000000Z"
        );
    }

    use super::*;
    use arrow::array::{
        BinaryArray, BooleanArray, Date32Array, Decimal128Array, DictionaryArray, Float32Array,
        Float64Array, Int8Array, Int32Array, Int64Array, StringArray, StringViewArray,
        TimestampMicrosecondArray, UInt64Array,
    };
    use arrow::datatypes::{Field, Schema};

    /// Each group's partition values and rows (all columns), gathered.
    fn split_by_partition(
        batch: &RecordBatch,
        partition_columns: &[String],
    ) -> Result<Vec<(PartitionValues, RecordBatch)>> {
        partition_runs(batch, partition_columns)?
            .into_iter()
            .map(|(values, runs)| Ok((values, gather_runs(batch, &runs)?)))
            .collect()
    }

    #[test]
    fn escapes_everything_but_unreserved_characters() {
        let cases = [
            ("a/b:c", "a%2Fb%3Ac"),
            ("100%", "100%25"),
            ("plain-1.2_x~", "plain-1.2_x~"),
            ("with space", "with%20space"),
            ("ünï😀", "%C3%BCn%C3%AF%F0%9F%98%80"),
            ("a=b", "a%3Db"),
            ("q?#*", "q%3F%23%2A"),
            ("\"'\\", "%22%27%5C"),
            ("{[]}^", "%7B%5B%5D%7D%5E"),
            ("\u{1}\t\u{1F}\u{7F}", "%01%09%1F%7F"),
            ("", ""),
            ("!@$&()+,;<>|`", "%21%40%24%26%28%29%2B%2C%3B%3C%3E%7C%60"),
        ];
        for (input, want) in cases {
            assert_eq!(escape_partition_path_value(input), want, "input {input:?}");
        }
    }

    #[test]
    fn encodes_log_paths() {
        let dir = escape_partition_path_value("a/b:c 100%");
        assert_eq!(dir, "a%2Fb%3Ac%20100%25");
        assert_eq!(
            encode_log_path(&format!("p={dir}/part-00000.snappy.parquet")),
            "p=a%252Fb%253Ac%2520100%2525/part-00000.snappy.parquet"
        );
        assert_eq!(encode_log_path("x=ü/f-1_2.~"), "x=%C3%BC/f-1_2.~");
        assert_eq!(encode_log_path("a+b/c"), "a%2Bb/c");
    }

    #[test]
    fn builds_hive_dirs() {
        let cols = vec!["a".to_string(), "b:c".to_string(), "d".to_string()];
        let mut values = BTreeMap::new();
        values.insert("a".to_string(), Some("1/2".to_string()));
        values.insert("b:c".to_string(), None);
        values.insert("d".to_string(), Some(String::new()));
        assert_eq!(
            hive_partition_dir(&cols, &values),
            "a=1%2F2/b%3Ac=__HIVE_DEFAULT_PARTITION__/d=__HIVE_DEFAULT_PARTITION__"
        );
        assert_eq!(hive_partition_dir(&[], &values), "");
    }

    fn one(array: &dyn Array, row: usize) -> Option<String> {
        partition_value_string(array, row).unwrap()
    }

    #[test]
    fn serializes_values_of_every_type() {
        assert_eq!(
            one(&StringArray::from(vec![Some("x y"), None]), 0).as_deref(),
            Some("x y")
        );
        assert_eq!(one(&StringArray::from(vec![Some("x y"), None]), 1), None);
        assert_eq!(
            one(&StringViewArray::from(vec!["v"]), 0).as_deref(),
            Some("v")
        );
        assert_eq!(one(&Int8Array::from(vec![-8]), 0).as_deref(), Some("-8"));
        assert_eq!(
            one(&Int64Array::from(vec![i64::MIN]), 0).as_deref(),
            Some("-9223372036854775808")
        );
        assert_eq!(
            one(&UInt64Array::from(vec![u64::MAX]), 0).as_deref(),
            Some("18446744073709551615")
        );
        assert_eq!(
            one(&BooleanArray::from(vec![true, false]), 1).as_deref(),
            Some("false")
        );
        assert_eq!(
            one(&Date32Array::from(vec![19724]), 0).as_deref(),
            Some("2024-01-02")
        );
        assert_eq!(
            one(&Date32Array::from(vec![-1]), 0).as_deref(),
            Some("1969-12-31")
        );
        assert_eq!(
            one(&Date32Array::from(vec![-719162]), 0).as_deref(),
            Some("0001-01-01")
        );

        let ts =
            TimestampMicrosecondArray::from(vec![1_704_164_645_123_456, -1]).with_timezone("UTC");
        assert_eq!(one(&ts, 0).as_deref(), Some("2024-01-02 03:04:05.123456"));
        assert_eq!(one(&ts, 1).as_deref(), Some("1969-12-31 23:59:59.999999"));
        let ts_tz = TimestampMicrosecondArray::from(vec![0]).with_timezone("America/New_York");
        assert_eq!(
            one(&ts_tz, 0).as_deref(),
            Some("1970-01-01 00:00:00.000000")
        );
        let ntz = TimestampMicrosecondArray::from(vec![1_704_164_645_000_001]);
        assert_eq!(one(&ntz, 0).as_deref(), Some("2024-01-02 03:04:05.000001"));

        let dec = Decimal128Array::from(vec![-1230, 5, 0, 123456, -5])
            .with_precision_and_scale(7, 2)
            .unwrap();
        let got: Vec<_> = (0..5).map(|i| one(&dec, i).unwrap()).collect();
        assert_eq!(got, ["-12.30", "0.05", "0.00", "1234.56", "-0.05"]);
        let dec0 = Decimal128Array::from(vec![42])
            .with_precision_and_scale(5, 0)
            .unwrap();
        assert_eq!(one(&dec0, 0).as_deref(), Some("42"));

        let f = Float64Array::from(vec![1.5, 1.0, f64::NAN, f64::NEG_INFINITY, 1e20, -0.1]);
        let got: Vec<_> = (0..6).map(|i| one(&f, i).unwrap()).collect();
        assert_eq!(got, ["1.5", "1.0", "NaN", "-Infinity", "1e20", "-0.1"]);
        for s in &got {
            assert!(
                s.to_ascii_lowercase().parse::<f64>().is_ok() || s == "NaN",
                "{s}"
            );
        }
        assert_eq!(
            one(&Float32Array::from(vec![0.1f32]), 0).as_deref(),
            Some("0.1")
        );

        let dict: DictionaryArray<Int32Type> = vec!["a", "b", "a"].into_iter().collect();
        assert_eq!(one(&dict, 2).as_deref(), Some("a"));

        let bin = BinaryArray::from(vec![b"hello".as_ref(), "😈".as_bytes(), &[0xff, 0xfe]]);
        assert_eq!(one(&bin, 0).as_deref(), Some("hello"));
        assert_eq!(one(&bin, 1).as_deref(), Some("😈"));
        let err = partition_value_string(&bin, 2).unwrap_err();
        assert!(err.to_string().contains("not valid UTF-8"), "{err}");
    }

    #[test]
    fn formats_decimals() {
        assert_eq!(format_decimal("-1230", 2), "-12.30");
        assert_eq!(format_decimal("5", 3), "0.005");
        assert_eq!(format_decimal("-5", 1), "-0.5");
        assert_eq!(format_decimal("12", -2), "1200");
        assert_eq!(format_decimal("0", -2), "0");
    }

    fn batch(p: Vec<Option<i32>>, q: Vec<Option<&str>>) -> RecordBatch {
        let n = p.len() as i64;
        RecordBatch::try_from_iter(vec![
            (
                "id",
                Arc::new(Int64Array::from_iter_values(0..n)) as ArrayRef,
            ),
            ("p", Arc::new(Int32Array::from(p)) as ArrayRef),
            ("q", Arc::new(StringArray::from(q)) as ArrayRef),
        ])
        .unwrap()
    }

    /// Groups as `(p, q) -> ids`, checking every row sits in the right group.
    fn grouped(b: &RecordBatch, cols: &[String]) -> BTreeMap<Vec<Option<String>>, Vec<i64>> {
        let groups = split_by_partition(b, cols).unwrap();
        let mut out = BTreeMap::new();
        let mut total = 0;
        for (values, rows) in groups {
            assert_eq!(rows.num_columns(), b.num_columns());
            total += rows.num_rows();
            let key: Vec<Option<String>> = cols.iter().map(|c| values[c].clone()).collect();
            for r in 0..rows.num_rows() {
                let row_key: Vec<Option<String>> = cols
                    .iter()
                    .map(|c| one(rows.column_by_name(c).unwrap().as_ref(), r))
                    .collect();
                assert_eq!(row_key, key);
            }
            let ids = rows.column(0).as_primitive::<Int64Type>().values().to_vec();
            assert!(out.insert(key, ids).is_none(), "duplicate group");
        }
        assert_eq!(total, b.num_rows());
        out
    }

    #[test]
    fn groups_rows_with_nulls() {
        let cols = vec!["p".to_string(), "q".to_string()];
        // Many runs: the gathering path.
        let mut p = Vec::new();
        let mut q = Vec::new();
        for i in 0..200 {
            p.push(if i % 7 == 0 { None } else { Some(i % 3) });
            q.push(match i % 4 {
                0 => None,
                1 => Some(""),
                2 => Some("x/y"),
                _ => Some("z"),
            });
        }
        let b = batch(p.clone(), q.clone());
        let got = grouped(&b, &cols);
        let mut want: BTreeMap<Vec<Option<String>>, Vec<i64>> = BTreeMap::new();
        for i in 0..200 {
            let key = vec![p[i].map(|v| v.to_string()), q[i].map(str::to_string)];
            want.entry(key).or_default().push(i as i64);
        }
        assert_eq!(got, want);
        assert!(got.contains_key(&vec![None, None]));
        assert!(got.contains_key(&vec![None, Some(String::new())]));
    }

    #[test]
    fn groups_clustered_runs_without_sorting() {
        let cols = vec!["p".to_string()];
        let p = vec![Some(1), Some(1), None, None, Some(1), Some(2)];
        let q = vec![Some("a"); 6];
        let got = grouped(&batch(p, q), &cols);
        assert_eq!(got[&vec![Some("1".to_string())]], vec![0, 1, 4]);
        assert_eq!(got[&vec![None]], vec![2, 3]);
        assert_eq!(got[&vec![Some("2".to_string())]], vec![5]);

        let single = batch(vec![Some(3); 4], vec![None; 4]);
        let groups = split_by_partition(&single, &cols).unwrap();
        assert_eq!(groups.len(), 1);
        assert_eq!(groups[0].1.num_rows(), 4);
    }

    #[test]
    fn unpartitioned_and_errors() {
        let b = batch(vec![Some(1), Some(2)], vec![None, None]);
        let groups = split_by_partition(&b, &[]).unwrap();
        assert_eq!(groups.len(), 1);
        assert!(groups[0].0.is_empty());
        assert_eq!(groups[0].1, b);
        assert!(
            split_by_partition(&b.slice(0, 0), &["p".to_string()])
                .unwrap()
                .is_empty()
        );
        let err = split_by_partition(&b, &["nope".to_string()]).unwrap_err();
        assert!(err.to_string().contains("`nope`"), "{err}");

        let bin = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new("b", DataType::Binary, true)])),
            vec![Arc::new(BinaryArray::from(vec![b"x".as_ref(), b"y", b"x"]))],
        )
        .unwrap();
        let groups = split_by_partition(&bin, &["b".to_string()]).unwrap();
        assert_eq!(groups.len(), 2, "binary values group like strings");

        let nested = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new_list(
                "l",
                Field::new_list_field(DataType::Int32, true),
                true,
            )])),
            vec![Arc::new(arrow::array::ListArray::from_iter_primitive::<
                Int32Type,
                _,
                _,
            >(vec![Some(vec![Some(1)])]))],
        )
        .unwrap();
        let err = split_by_partition(&nested, &["l".to_string()]).unwrap_err();
        assert!(
            err.to_string().contains("cannot partition by column `l`"),
            "{err}"
        );
    }

    /// Gathering runs (copied run by run or taken) gives exactly what one `take` of their
    /// rows gives, for every column type, with and without nulls, on sliced input, for long
    /// runs and short ones. Seeded; the seed is printed.
    #[test]
    fn gathered_runs_equal_a_take_of_their_rows() {
        let mut next = crate::test_rng::xorshift(0x5eed_1a7e);
        let n = 3000;
        let mut values = Vec::with_capacity(n);
        for _ in 0..n {
            values.push(next());
        }
        let maybe = |i: usize, every: u64| (values[i] % every != 0).then_some(values[i]);
        let schema = Arc::new(Schema::new(vec![
            Field::new("i", DataType::Int32, true),
            Field::new("l", DataType::Int64, false),
            Field::new("d", DataType::Decimal128(7, 2), true),
            Field::new("b", DataType::Boolean, true),
            Field::new(
                "t",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                true,
            ),
            Field::new("s", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int32Array::from_iter(
                    (0..n).map(|i| maybe(i, 7).map(|v| v as i32)),
                )),
                Arc::new(Int64Array::from_iter_values(
                    (0..n).map(|i| values[i] as i64),
                )),
                Arc::new(
                    Decimal128Array::from_iter(
                        (0..n).map(|i| maybe(i, 5).map(|v| (v % 9_999_999) as i128)),
                    )
                    .with_precision_and_scale(7, 2)
                    .unwrap(),
                ),
                Arc::new(BooleanArray::from_iter(
                    (0..n).map(|i| maybe(i, 3).map(|v| v % 2 == 0)),
                )),
                Arc::new(
                    TimestampMicrosecondArray::from_iter(
                        (0..n).map(|i| maybe(i, 11).map(|v| v as i64 >> 8)),
                    )
                    .with_timezone("UTC"),
                ),
                Arc::new(StringArray::from_iter(
                    (0..n).map(|i| maybe(i, 4).map(|v| format!("v{}", v % 97))),
                )),
            ],
        )
        .unwrap();
        let take_rows = |b: &RecordBatch, runs: &[Range<usize>]| {
            let idx: Vec<u32> = runs
                .iter()
                .flat_map(|r| r.start as u32..r.end as u32)
                .collect();
            arrow::compute::take_record_batch(b, &UInt32Array::from(idx)).unwrap()
        };
        // Sliced input has offsets in its values and validity.
        for b in [batch.clone(), batch.slice(13, n - 40)] {
            for max_run in [1usize, 3, 12, 200] {
                for _ in 0..20 {
                    let mut runs = Vec::new();
                    let mut at = (next() % 5) as usize;
                    while at < b.num_rows() {
                        let len = 1 + (next() % max_run as u64) as usize;
                        let end = (at + len).min(b.num_rows());
                        runs.push(at..end);
                        at = end + (next() % 4) as usize;
                    }
                    let got = gather_runs(&b, &runs).unwrap();
                    let want = take_rows(&b, &runs);
                    assert_eq!(got, want, "max run {max_run}, {} runs", runs.len());
                    for (g, w) in got.columns().iter().zip(want.columns()) {
                        assert_eq!(g.null_count(), w.null_count());
                        assert_eq!(g.data_type(), w.data_type());
                    }
                }
            }
        }
        // Narrowed: decimals of precision up to 18 come as Decimal32 / Decimal64 with the
        // same values; one holding a value beyond its type's width, and a wider decimal,
        // stay Decimal128.
        let mut big: Vec<Option<i128>> = (0..n)
            .map(|i| maybe(i, 5).map(|v| (v % 1000) as i128))
            .collect();
        big[n / 2] = Some(1 << 40);
        let decimals = RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("d7", DataType::Decimal128(7, 2), true),
                Field::new("d15", DataType::Decimal128(15, 2), true),
                Field::new("d7big", DataType::Decimal128(7, 2), true),
                Field::new("d30", DataType::Decimal128(30, 2), true),
            ])),
            [
                (7, 9_999_999i128),
                (15, 999_999_999_999_999),
                (7, 0),
                (30, 1 << 100),
            ]
            .into_iter()
            .map(|(p, m)| {
                let a = if m == 0 {
                    Decimal128Array::from(big.clone())
                } else {
                    Decimal128Array::from_iter((0..n).map(|i| maybe(i, 5).map(|v| v as i128 % m)))
                };
                Arc::new(a.with_precision_and_scale(p, 2).unwrap()) as ArrayRef
            })
            .collect(),
        )
        .unwrap();
        for max_run in [3usize, 12, 200] {
            let mut runs = Vec::new();
            let mut at = 0;
            while at < n {
                let end = (at + 1 + (next() % max_run as u64) as usize).min(n);
                runs.push(at..end);
                at = end + 1 + (next() % 3) as usize;
            }
            runs.push(n / 2..n / 2 + 1);
            let got = gather_runs_narrowed(&decimals, &runs).unwrap();
            let want = take_rows(&decimals, &runs);
            let types: Vec<DataType> = got
                .columns()
                .iter()
                .map(|c| c.data_type().clone())
                .collect();
            let copied = got.num_rows() >= MIN_COPIED_RUN_ROWS * runs.len();
            assert_eq!(
                copied,
                max_run >= 12,
                "long runs are copied, short ones taken"
            );
            if copied {
                assert_eq!(
                    types,
                    [
                        DataType::Decimal32(7, 2),
                        DataType::Decimal64(15, 2),
                        DataType::Decimal128(7, 2),
                        DataType::Decimal128(30, 2)
                    ],
                    "max run {max_run}"
                );
            }
            for (g, w) in got.columns().iter().zip(want.columns()) {
                assert_eq!(&cast(g, w.data_type()).unwrap(), w, "max run {max_run}");
                assert_eq!(g.null_count(), w.null_count());
            }
            assert_eq!(got.schema().field(0).name(), "d7");
            assert_eq!(got.schema().field(0).data_type(), &types[0]);
        }

        // All valid or all null in the gathered rows: validity matches take's too.
        let runs = [0..3, 7..14, 21..28];
        let got = gather_runs(&batch, &runs).unwrap();
        assert_eq!(got, take_rows(&batch, &runs));
    }
}
