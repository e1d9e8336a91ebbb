//! Delta per-file statistics (PROTOCOL.md "Per-file Statistics"): `numRecords`, and
//! `minValues` / `maxValues` / `nullCount` for the indexed columns.
//!
//! Statistics are accumulated batch by batch with arrow's vectorised `min` / `max` kernels
//! (no per-row work beyond the kernels, no per-row allocation) and rendered to JSON once,
//! when the file is finished.
//!
//! What is collected, as Delta Spark does:
//! - columns: `delta.dataSkippingStatsColumns` when set (top-level names, case-insensitive,
//!   unknown names ignored), else the first `delta.dataSkippingNumIndexedCols` leaf columns
//!   (-1: all); a struct consumes as many as it has leaves;
//! - `nullCount` for every collected column except structs (which are skipped entirely);
//! - `minValues` / `maxValues` for integers, floats (a NaN or infinite bound is omitted),
//!   decimals (JSON numbers with their scale, `12.30`), dates (`"YYYY-MM-DD"`), timestamps
//!   (`"2024-01-02T03:04:05.123Z"` in milliseconds: the minimum rounded down and the maximum
//!   rounded up so both stay valid bounds; no `Z` for `timestamp_ntz`), and strings
//!   truncated to `string_prefix_len` characters (a truncated maximum gets U+10FFFF appended
//!   so it stays an upper bound). Booleans, binary, lists and maps: `nullCount` only.
//!   A column with only nulls has no min/max entry.

use std::cmp::Ordering;
use std::fmt::Write as _;

use arrow::array::{Array, ArrayRef, ArrowNumericType, AsArray, RecordBatch};
use arrow::compute::{max, max_string, max_string_view, min, min_string, min_string_view};
use arrow::datatypes::{
    DataType, Date32Type, Date64Type, Decimal32Type, Decimal64Type, Decimal128Type, Decimal256Type,
    Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, Schema, TimeUnit,
    TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
    TimestampSecondType, UInt8Type, UInt16Type, UInt32Type, UInt64Type, i256,
};

use crate::partition::{days_to_date, format_decimal, push_decimal, timestamp_to_datetime};
use crate::task::StatsSpec;
use crate::{Error, Result};

/// The largest Unicode scalar value: appended to a truncated string maximum.
const MAX_CHAR: char = '\u{10FFFF}';

/// Running min/max of one column, by kind of value.
#[derive(Debug)]
enum MinMax {
    /// `nullCount` only (booleans, binary, lists, maps, unsupported types).
    None,
    /// Signed integers and unsigned ones that fit in `i64`.
    Int(Option<(i64, i64)>),
    UInt64(Option<(u64, u64)>),
    /// Compared in IEEE total order (as arrow's kernels do), so a NaN ends up as a bound
    /// and that bound is omitted.
    Float32(Option<(f32, f32)>),
    Float64(Option<(f64, f64)>),
    /// Decimal32/64/128 unscaled values.
    Decimal(Option<(i128, i128)>, i8),
    Decimal256(Option<(i256, i256)>, i8),
    /// Days since the epoch.
    Date(Option<(i64, i64)>),
    /// Raw values in `unit`; `utc` is false for `timestamp_ntz`.
    Timestamp {
        range: Option<(i64, i64)>,
        unit: TimeUnit,
        utc: bool,
    },
    /// The minimum already truncated to the prefix (truncation keeps order, so the minimum
    /// of truncated values is the truncated minimum); the maximum in full.
    Str(Option<(String, String)>),
}

/// One collected column.
#[derive(Debug)]
struct ColumnStats {
    name: String,
    /// Index in the file schema.
    index: usize,
    data_type: DataType,
    null_count: i64,
    min_max: MinMax,
}

/// Accumulates Delta statistics over the batches of one data file.
#[derive(Debug)]
pub struct StatsCollector {
    columns: Vec<ColumnStats>,
    num_fields: usize,
    num_records: i64,
    string_prefix_len: usize,
}

/// Number of leaf columns of a type, as Delta counts them for `dataSkippingNumIndexedCols`.
fn leaf_count(dt: &DataType) -> usize {
    match dt {
        DataType::Struct(fields) => fields.iter().map(|f| leaf_count(f.data_type())).sum(),
        _ => 1,
    }
}

/// Strips one pair of surrounding backticks (`` `a b` `` → `a b`).
fn unquote(name: &str) -> &str {
    name.strip_prefix('`')
        .and_then(|n| n.strip_suffix('`'))
        .unwrap_or(name)
}

/// The schema of a table's data files: the table's columns without its partition columns
/// (matched case-insensitively), in table order.
pub fn data_file_schema(table_schema: &Schema, partition_columns: &[String]) -> Schema {
    Schema::new(
        table_schema
            .fields()
            .iter()
            .filter(|f| {
                !partition_columns
                    .iter()
                    .any(|p| p.eq_ignore_ascii_case(f.name()))
            })
            .cloned()
            .collect::<Vec<_>>(),
    )
}

/// Positions of the columns of `file_schema` whose statistics `spec` asks for.
fn selected(file_schema: &Schema, spec: &StatsSpec) -> Vec<usize> {
    let fields = file_schema.fields();
    match &spec.stats_columns {
        Some(names) => (0..fields.len())
            .filter(|&i| {
                names
                    .iter()
                    .any(|n| unquote(n.trim()).eq_ignore_ascii_case(fields[i].name()))
            })
            .collect(),
        None if spec.num_indexed_cols < 0 => (0..fields.len()).collect(),
        None => {
            let mut budget = spec.num_indexed_cols as usize;
            let mut out = Vec::new();
            for (i, f) in fields.iter().enumerate() {
                if budget == 0 {
                    break;
                }
                out.push(i);
                budget = budget.saturating_sub(leaf_count(f.data_type()));
            }
            out
        }
    }
}

/// `spec`, widened so that files of a table (`schema`, partitioned by `partition_columns`)
/// also get statistics of `columns` (a clustered table's clustering columns): unchanged when
/// it already covers them, else the columns it covers and those, by name.
pub fn covering(
    spec: &StatsSpec,
    schema: &Schema,
    partition_columns: &[String],
    columns: &[String],
) -> StatsSpec {
    let file_schema = data_file_schema(schema, partition_columns);
    let mut names: Vec<String> = selected(&file_schema, spec)
        .into_iter()
        .map(|i| file_schema.field(i).name().clone())
        .collect();
    let missing: Vec<&String> = columns
        .iter()
        .filter(|c| file_schema.index_of(c).is_ok() && !names.contains(c))
        .collect();
    if missing.is_empty() {
        return spec.clone();
    }
    names.extend(missing.into_iter().cloned());
    StatsSpec {
        stats_columns: Some(names),
        ..spec.clone()
    }
}

impl StatsCollector {
    /// A collector for files with schema `file_schema` (the table schema without partition
    /// columns), collecting what `spec` asks for.
    pub fn try_new(file_schema: &Schema, spec: &StatsSpec) -> Result<Self> {
        let fields = file_schema.fields();
        let columns = selected(file_schema, spec)
            .into_iter()
            .filter_map(|i| {
                let f = &fields[i];
                let min_max = match f.data_type() {
                    DataType::Struct(_) => return None,
                    DataType::Int8
                    | DataType::Int16
                    | DataType::Int32
                    | DataType::Int64
                    | DataType::UInt8
                    | DataType::UInt16
                    | DataType::UInt32 => MinMax::Int(None),
                    DataType::UInt64 => MinMax::UInt64(None),
                    DataType::Float32 => MinMax::Float32(None),
                    DataType::Float64 => MinMax::Float64(None),
                    DataType::Decimal32(_, s)
                    | DataType::Decimal64(_, s)
                    | DataType::Decimal128(_, s) => MinMax::Decimal(None, *s),
                    DataType::Decimal256(_, s) => MinMax::Decimal256(None, *s),
                    DataType::Date32 | DataType::Date64 => MinMax::Date(None),
                    DataType::Timestamp(unit, tz) => MinMax::Timestamp {
                        range: None,
                        unit: *unit,
                        utc: tz.is_some(),
                    },
                    DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => MinMax::Str(None),
                    _ => MinMax::None,
                };
                Some(ColumnStats {
                    name: f.name().clone(),
                    index: i,
                    data_type: f.data_type().clone(),
                    null_count: 0,
                    min_max,
                })
            })
            .collect();
        Ok(Self {
            columns,
            num_fields: fields.len(),
            num_records: 0,
            string_prefix_len: spec.string_prefix_len,
        })
    }

    /// Names of the columns this collector records statistics for.
    pub fn columns(&self) -> Vec<String> {
        self.columns.iter().map(|c| c.name.clone()).collect()
    }

    /// Names of the columns this collector records min/max values for.
    pub fn min_max_columns(&self) -> Vec<String> {
        self.columns
            .iter()
            .filter(|c| !matches!(c.min_max, MinMax::None))
            .map(|c| c.name.clone())
            .collect()
    }

    /// Rows seen so far.
    pub fn num_records(&self) -> i64 {
        self.num_records
    }

    /// Adds a batch (with the file schema's columns, in order) to the statistics.
    pub fn update(&mut self, batch: &RecordBatch) -> Result<()> {
        if batch.num_columns() != self.num_fields {
            return Err(Error::SchemaMismatch(format!(
                "statistics expect {} columns, batch has {}",
                self.num_fields,
                batch.num_columns()
            )));
        }
        for col in &self.columns {
            let array = batch.column(col.index);
            // Decimals may come narrowed (as they travel through the exchange).
            let narrowed = || crate::exchange::narrow_type(&col.data_type);
            if array.data_type() != &col.data_type && narrowed().as_ref() != Some(array.data_type())
            {
                return Err(Error::SchemaMismatch(format!(
                    "column `{}` has type {}, expected {}",
                    col.name,
                    array.data_type(),
                    col.data_type
                )));
            }
        }
        let prefix_len = self.string_prefix_len;
        for col in &mut self.columns {
            let array = batch.column(col.index);
            let nulls = array.null_count();
            col.null_count += nulls as i64;
            if nulls == array.len() {
                continue;
            }
            update_min_max(&mut col.min_max, array, prefix_len);
        }
        self.num_records += batch.num_rows() as i64;
        Ok(())
    }

    /// `numRecords` and the Delta stats JSON
    /// `{"numRecords":N,"minValues":{..},"maxValues":{..},"nullCount":{..}}`.
    pub fn finish(&self) -> Result<(i64, String)> {
        let mut mins = JsonObject::new();
        let mut maxs = JsonObject::new();
        let mut nulls = JsonObject::new();
        // Numbers are written straight into the objects (a partitioned write finishes
        // thousands of small files; a string per bound was most of this).
        let mut digits = String::new();
        for col in &self.columns {
            let _ = write!(nulls.field(&col.name), "{}", col.null_count);
            match &col.min_max {
                MinMax::Int(Some((lo, hi))) => {
                    let _ = write!(mins.field(&col.name), "{lo}");
                    let _ = write!(maxs.field(&col.name), "{hi}");
                }
                MinMax::Decimal(Some((lo, hi)), scale) => {
                    for (object, bound) in [(&mut mins, lo), (&mut maxs, hi)] {
                        digits.clear();
                        let _ = write!(digits, "{bound}");
                        push_decimal(object.field(&col.name), &digits, *scale);
                    }
                }
                other => {
                    let (lo, hi) = bounds_json(other, self.string_prefix_len)?;
                    if let Some(lo) = lo {
                        mins.field(&col.name).push_str(&lo);
                    }
                    if let Some(hi) = hi {
                        maxs.field(&col.name).push_str(&hi);
                    }
                }
            }
        }
        let json = format!(
            "{{\"numRecords\":{},\"minValues\":{},\"maxValues\":{},\"nullCount\":{}}}",
            self.num_records,
            mins.finish(),
            maxs.finish(),
            nulls.finish()
        );
        Ok((self.num_records, json))
    }
}

/// Min and max of the non-null values of a primitive array (at least one is non-null).
fn prim_range<T: ArrowNumericType>(array: &ArrayRef) -> Option<(T::Native, T::Native)> {
    let a = array.as_primitive_opt::<T>()?;
    Some((min(a)?, max(a)?))
}

/// Widens a range with `f`.
fn widen<T: Copy>(acc: &mut Option<(T, T)>, new: Option<(T, T)>, cmp: impl Fn(&T, &T) -> Ordering) {
    if let Some((lo, hi)) = new {
        *acc = Some(match *acc {
            None => (lo, hi),
            Some((a, b)) => (
                if cmp(&lo, &a) == Ordering::Less {
                    lo
                } else {
                    a
                },
                if cmp(&hi, &b) == Ordering::Greater {
                    hi
                } else {
                    b
                },
            ),
        });
    }
}

/// Widens an integer range with the values of a primitive array, as `i64`.
fn widen_int<T: ArrowNumericType>(acc: &mut Option<(i64, i64)>, array: &ArrayRef)
where
    T::Native: Into<i64>,
{
    widen(
        acc,
        prim_range::<T>(array).map(|(a, b)| (a.into(), b.into())),
        Ord::cmp,
    );
}

/// Widens a decimal range with the values of a primitive array, as `i128`.
fn widen_decimal<T: ArrowNumericType>(acc: &mut Option<(i128, i128)>, array: &ArrayRef)
where
    T::Native: Into<i128>,
{
    widen(
        acc,
        prim_range::<T>(array).map(|(a, b)| (a.into(), b.into())),
        Ord::cmp,
    );
}

/// The first `n` characters of `s` (all of it when shorter).
fn char_prefix(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((byte, _)) => &s[..byte],
        None => s,
    }
}

/// Folds one batch of `array` (not all null) into `acc`.
fn update_min_max(acc: &mut MinMax, array: &ArrayRef, prefix_len: usize) {
    match acc {
        MinMax::None => {}
        MinMax::Int(r) => match array.data_type() {
            DataType::Int8 => widen_int::<Int8Type>(r, array),
            DataType::Int16 => widen_int::<Int16Type>(r, array),
            DataType::Int32 => widen_int::<Int32Type>(r, array),
            DataType::Int64 => widen_int::<Int64Type>(r, array),
            DataType::UInt8 => widen_int::<UInt8Type>(r, array),
            DataType::UInt16 => widen_int::<UInt16Type>(r, array),
            DataType::UInt32 => widen_int::<UInt32Type>(r, array),
            _ => {}
        },
        MinMax::UInt64(r) => widen(r, prim_range::<UInt64Type>(array), Ord::cmp),
        MinMax::Float32(r) => widen(r, prim_range::<Float32Type>(array), f32::total_cmp),
        MinMax::Float64(r) => widen(r, prim_range::<Float64Type>(array), f64::total_cmp),
        MinMax::Decimal(r, _) => match array.data_type() {
            DataType::Decimal32(..) => widen_decimal::<Decimal32Type>(r, array),
            DataType::Decimal64(..) => widen_decimal::<Decimal64Type>(r, array),
            DataType::Decimal128(..) => widen_decimal::<Decimal128Type>(r, array),
            _ => {}
        },
        MinMax::Decimal256(r, _) => widen(r, prim_range::<Decimal256Type>(array), Ord::cmp),
        MinMax::Date(r) => match array.data_type() {
            DataType::Date32 => widen_int::<Date32Type>(r, array),
            DataType::Date64 => widen(
                r,
                prim_range::<Date64Type>(array)
                    .map(|(a, b)| (a.div_euclid(86_400_000), b.div_euclid(86_400_000))),
                Ord::cmp,
            ),
            _ => {}
        },
        MinMax::Timestamp { range, unit, .. } => {
            let new = match unit {
                TimeUnit::Second => prim_range::<TimestampSecondType>(array),
                TimeUnit::Millisecond => prim_range::<TimestampMillisecondType>(array),
                TimeUnit::Microsecond => prim_range::<TimestampMicrosecondType>(array),
                TimeUnit::Nanosecond => prim_range::<TimestampNanosecondType>(array),
            };
            widen(range, new, Ord::cmp);
        }
        MinMax::Str(r) => {
            let (lo, hi) = match array.data_type() {
                DataType::Utf8 => {
                    let a = array.as_string::<i32>();
                    (min_string(a), max_string(a))
                }
                DataType::LargeUtf8 => {
                    let a = array.as_string::<i64>();
                    (min_string(a), max_string(a))
                }
                DataType::Utf8View => {
                    let a = array.as_string_view();
                    (min_string_view(a), max_string_view(a))
                }
                _ => (None, None),
            };
            let (Some(lo), Some(hi)) = (lo, hi) else {
                return;
            };
            let lo = char_prefix(lo, prefix_len);
            match r {
                None => *r = Some((lo.to_string(), hi.to_string())),
                Some((cur_lo, cur_hi)) => {
                    if lo < cur_lo.as_str() {
                        lo.clone_into(cur_lo);
                    }
                    if hi > cur_hi.as_str() {
                        hi.clone_into(cur_hi);
                    }
                }
            }
        }
    }
}

/// Truncates a string maximum so it remains an upper bound: kept whole when it has at most
/// `n` characters, else its first `n` characters followed by U+10FFFF. Characters equal to
/// U+10FFFF right after the prefix are kept too (appending U+10FFFF after them would not be
/// an upper bound otherwise); a string made only of them past the prefix is kept whole.
fn truncate_max(s: &str, n: usize) -> String {
    let mut chars = s.char_indices().skip(n);
    loop {
        match chars.next() {
            None => return s.to_string(),
            Some((_, MAX_CHAR)) => continue,
            Some((byte, _)) => {
                let mut out = String::with_capacity(byte + MAX_CHAR.len_utf8());
                out.push_str(&s[..byte]);
                out.push(MAX_CHAR);
                return out;
            }
        }
    }
}

/// A JSON number for a float bound, or `None` for NaN and infinities (no JSON form; the
/// bound is then omitted, which is always safe).
fn float_json<F: Into<f64> + Copy + std::fmt::Debug>(v: F) -> Option<String> {
    v.into().is_finite().then(|| format!("{v:?}"))
}

/// A timestamp bound in milliseconds (`round_up` for maxima) as a JSON string.
fn timestamp_json(value: i64, unit: TimeUnit, utc: bool, round_up: bool) -> Result<String> {
    let per_ms: i64 = match unit {
        TimeUnit::Second => {
            let ms = value
                .checked_mul(1000)
                .ok_or_else(|| Error::invalid(format!("timestamp {value}s out of range")))?;
            return timestamp_ms_json(ms, utc);
        }
        TimeUnit::Millisecond => 1,
        TimeUnit::Microsecond => 1_000,
        TimeUnit::Nanosecond => 1_000_000,
    };
    let mut ms = value.div_euclid(per_ms);
    if round_up && value.rem_euclid(per_ms) != 0 {
        ms += 1;
    }
    timestamp_ms_json(ms, utc)
}

fn timestamp_ms_json(ms: i64, utc: bool) -> Result<String> {
    let dt = timestamp_to_datetime(ms, TimeUnit::Millisecond)?;
    let fmt = if utc {
        "\"%Y-%m-%dT%H:%M:%S%.3fZ\""
    } else {
        "\"%Y-%m-%dT%H:%M:%S%.3f\""
    };
    Ok(dt.format(fmt).to_string())
}

/// JSON texts of the min and max bounds of a column, where it has them.
fn bounds_json(acc: &MinMax, prefix_len: usize) -> Result<(Option<String>, Option<String>)> {
    Ok(match acc {
        MinMax::None
        | MinMax::Int(None)
        | MinMax::UInt64(None)
        | MinMax::Float32(None)
        | MinMax::Float64(None)
        | MinMax::Decimal(None, _)
        | MinMax::Decimal256(None, _)
        | MinMax::Date(None)
        | MinMax::Timestamp { range: None, .. }
        | MinMax::Str(None) => (None, None),
        MinMax::Int(Some((a, b))) => (Some(a.to_string()), Some(b.to_string())),
        MinMax::UInt64(Some((a, b))) => (Some(a.to_string()), Some(b.to_string())),
        MinMax::Float32(Some((a, b))) => (float_json(*a), float_json(*b)),
        MinMax::Float64(Some((a, b))) => (float_json(*a), float_json(*b)),
        MinMax::Decimal(Some((a, b)), s) => (
            Some(format_decimal(&a.to_string(), *s)),
            Some(format_decimal(&b.to_string(), *s)),
        ),
        MinMax::Decimal256(Some((a, b)), s) => (
            Some(format_decimal(&a.to_string(), *s)),
            Some(format_decimal(&b.to_string(), *s)),
        ),
        MinMax::Date(Some((a, b))) => (
            Some(days_to_date(*a)?.format("\"%Y-%m-%d\"").to_string()),
            Some(days_to_date(*b)?.format("\"%Y-%m-%d\"").to_string()),
        ),
        MinMax::Timestamp {
            range: Some((a, b)),
            unit,
            utc,
        } => (
            Some(timestamp_json(*a, *unit, *utc, false)?),
            Some(timestamp_json(*b, *unit, *utc, true)?),
        ),
        MinMax::Str(Some((a, b))) => {
            let mut lo = String::new();
            push_json_string(&mut lo, a);
            let mut hi = String::new();
            push_json_string(&mut hi, &truncate_max(b, prefix_len));
            (Some(lo), Some(hi))
        }
    })
}

/// Appends `s` as a JSON string literal.
fn push_json_string(out: &mut String, s: &str) {
    out.reserve(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A JSON object written field by field.
struct JsonObject {
    text: String,
    empty: bool,
}

impl JsonObject {
    fn new() -> Self {
        Self {
            text: String::from("{"),
            empty: true,
        }
    }

    /// Starts a field named `name`; the caller appends its value to the returned text.
    fn field(&mut self, name: &str) -> &mut String {
        if !self.empty {
            self.text.push(',');
        }
        self.empty = false;
        push_json_string(&mut self.text, name);
        self.text.push(':');
        &mut self.text
    }

    fn finish(mut self) -> String {
        self.text.push('}');
        self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use arrow::array::{
        BinaryArray, BooleanArray, Date32Array, Decimal128Array, Float32Array, Float64Array,
        Int8Array, Int32Array, Int64Array, LargeStringArray, ListArray, StringArray,
        StringViewArray, StructArray, TimestampMicrosecondArray, TimestampNanosecondArray,
        UInt64Array,
    };
    use arrow::datatypes::{Field, Int32Type as I32};
    use serde_json::{Value, json};

    fn collect(batches: &[RecordBatch], spec: &StatsSpec) -> Value {
        let mut c = StatsCollector::try_new(&batches[0].schema(), spec).unwrap();
        for b in batches {
            c.update(b).unwrap();
        }
        let (n, text) = c.finish().unwrap();
        let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        assert_eq!(v["numRecords"], json!(n));
        v
    }

    fn batch(cols: Vec<(&str, ArrayRef)>) -> RecordBatch {
        RecordBatch::try_from_iter(cols).unwrap()
    }

    #[test]
    fn every_type_with_nulls_across_batches() {
        let make = |i8s: Vec<Option<i8>>,
                    i64s: Vec<Option<i64>>,
                    u64s: Vec<Option<u64>>,
                    f64s: Vec<Option<f64>>,
                    decs: Vec<Option<i128>>,
                    dates: Vec<Option<i32>>,
                    ts: Vec<Option<i64>>,
                    strs: Vec<Option<&str>>,
                    bools: Vec<Option<bool>>| {
            let n = i8s.len();
            batch(vec![
                ("i8", Arc::new(Int8Array::from(i8s)) as ArrayRef),
                ("i64", Arc::new(Int64Array::from(i64s))),
                ("u64", Arc::new(UInt64Array::from(u64s))),
                ("f64", Arc::new(Float64Array::from(f64s))),
                (
                    "dec",
                    Arc::new(
                        Decimal128Array::from(decs)
                            .with_precision_and_scale(7, 2)
                            .unwrap(),
                    ),
                ),
                ("date", Arc::new(Date32Array::from(dates))),
                (
                    "ts",
                    Arc::new(TimestampMicrosecondArray::from(ts.clone()).with_timezone("UTC")),
                ),
                ("ntz", Arc::new(TimestampMicrosecondArray::from(ts))),
                ("s", Arc::new(StringArray::from(strs))),
                ("b", Arc::new(BooleanArray::from(bools))),
                (
                    "bin",
                    Arc::new(BinaryArray::from_opt_vec(vec![Some(b"x".as_ref()); n])),
                ),
            ])
        };
        let b1 = make(
            vec![Some(-3), None, Some(7)],
            vec![Some(10), Some(-20), None],
            vec![Some(u64::MAX), Some(1), None],
            vec![Some(1.5), None, Some(-0.25)],
            vec![Some(-1230), Some(5), None],
            vec![Some(-1), Some(19724), None],
            vec![
                Some(1_704_164_645_123_456),
                None,
                Some(1_704_164_645_123_000),
            ],
            vec![Some("m"), None, Some("b")],
            vec![Some(true), None, Some(false)],
        );
        let b2 = make(
            vec![None, Some(-100), Some(0)],
            vec![Some(i64::MAX), None, None],
            vec![None, None, Some(0)],
            vec![Some(1e20), Some(f64::NEG_INFINITY), None],
            vec![Some(99999), None, Some(-1231)],
            vec![Some(-719162), None, None],
            vec![Some(-1), None, None],
            vec![Some("zz"), Some("a"), None],
            vec![None, None, None],
        );
        let v = collect(&[b1, b2], &StatsSpec::default());
        assert_eq!(v["numRecords"], json!(6));
        let min = &v["minValues"];
        let max = &v["maxValues"];
        let nulls = &v["nullCount"];
        assert_eq!(min["i8"], json!(-100));
        assert_eq!(max["i8"], json!(7));
        assert_eq!(min["i64"], json!(-20));
        assert_eq!(max["i64"], json!(i64::MAX));
        assert_eq!(min["u64"], json!(0));
        assert_eq!(max["u64"], json!(u64::MAX));
        // -inf has no JSON form: omitted.
        assert!(min.get("f64").is_none());
        assert_eq!(max["f64"], json!(1e20));
        assert_eq!(min["dec"], json!(-12.31));
        assert_eq!(max["dec"], json!(999.99));
        assert_eq!(nulls["f64"], json!(2));
        assert_eq!(min["date"], json!("0001-01-01"));
        assert_eq!(max["date"], json!("2024-01-02"));
        assert_eq!(min["ts"], json!("1969-12-31T23:59:59.999Z"));
        assert_eq!(max["ts"], json!("2024-01-02T03:04:05.124Z"));
        assert_eq!(min["ntz"], json!("1969-12-31T23:59:59.999"));
        assert_eq!(max["ntz"], json!("2024-01-02T03:04:05.124"));
        assert_eq!(nulls["ts"], json!(3));
        assert_eq!(min["s"], json!("a"));
        assert_eq!(max["s"], json!("zz"));
        assert!(min.get("b").is_none() && max.get("b").is_none());
        assert_eq!(nulls["b"], json!(4));
        assert!(min.get("bin").is_none());
        assert_eq!(nulls["bin"], json!(0));
        assert_eq!(nulls["i8"], json!(2));
        assert_eq!(nulls["s"], json!(2));
    }

    #[test]
    fn decimals_are_numbers_with_their_scale() {
        let b = batch(vec![(
            "d",
            Arc::new(
                Decimal128Array::from(vec![Some(5), Some(-1230), Some(1230), None])
                    .with_precision_and_scale(7, 2)
                    .unwrap(),
            ) as ArrayRef,
        )]);
        let mut c = StatsCollector::try_new(&b.schema(), &StatsSpec::default()).unwrap();
        c.update(&b).unwrap();
        let (_, text) = c.finish().unwrap();
        assert!(text.contains("\"minValues\":{\"d\":-12.30}"), "{text}");
        assert!(text.contains("\"maxValues\":{\"d\":12.30}"), "{text}");
        let b = batch(vec![(
            "d",
            Arc::new(
                Decimal128Array::from(vec![5])
                    .with_precision_and_scale(7, 2)
                    .unwrap(),
            ) as ArrayRef,
        )]);
        let mut c = StatsCollector::try_new(&b.schema(), &StatsSpec::default()).unwrap();
        c.update(&b).unwrap();
        let (_, text) = c.finish().unwrap();
        assert!(text.contains("\"minValues\":{\"d\":0.05}"), "{text}");
    }

    #[test]
    fn timestamps_round_outward_to_millis() {
        let b = batch(vec![
            (
                "exact",
                Arc::new(TimestampMicrosecondArray::from(vec![1_000, 5_000]).with_timezone("UTC"))
                    as ArrayRef,
            ),
            (
                "nanos",
                Arc::new(
                    TimestampNanosecondArray::from(vec![1_500_000, 2_000_001]).with_timezone("UTC"),
                ),
            ),
        ]);
        let v = collect(&[b], &StatsSpec::default());
        assert_eq!(v["minValues"]["exact"], json!("1970-01-01T00:00:00.001Z"));
        assert_eq!(v["maxValues"]["exact"], json!("1970-01-01T00:00:00.005Z"));
        assert_eq!(v["minValues"]["nanos"], json!("1970-01-01T00:00:00.001Z"));
        assert_eq!(v["maxValues"]["nanos"], json!("1970-01-01T00:00:00.003Z"));
    }

    #[test]
    fn all_null_columns_have_only_null_counts() {
        let b = batch(vec![
            (
                "i",
                Arc::new(Int32Array::from(vec![None, None, None])) as ArrayRef,
            ),
            ("s", Arc::new(StringArray::from(vec![None::<&str>; 3]))),
        ]);
        let v = collect(&[b.clone(), b], &StatsSpec::default());
        assert_eq!(v["minValues"], json!({}));
        assert_eq!(v["maxValues"], json!({}));
        assert_eq!(v["nullCount"], json!({"i": 6, "s": 6}));
    }

    #[test]
    fn nan_bounds_are_omitted() {
        let b = batch(vec![(
            "f",
            Arc::new(Float64Array::from(vec![1.0, f64::NAN, 3.0])) as ArrayRef,
        )]);
        let v = collect(&[b], &StatsSpec::default());
        assert_eq!(v["minValues"]["f"], json!(1.0));
        assert!(v["maxValues"].get("f").is_none());
        assert_eq!(v["nullCount"]["f"], json!(0));
        // f32 printed in its own shortest form, not widened.
        let text = {
            let b = batch(vec![(
                "g",
                Arc::new(Float32Array::from(vec![0.1f32])) as ArrayRef,
            )]);
            let mut c = StatsCollector::try_new(&b.schema(), &StatsSpec::default()).unwrap();
            c.update(&b).unwrap();
            c.finish().unwrap().1
        };
        assert!(text.contains("\"g\":0.1}"), "{text}");
        let all_nan = batch(vec![(
            "f",
            Arc::new(Float64Array::from(vec![f64::NAN])) as ArrayRef,
        )]);
        let v = collect(&[all_nan], &StatsSpec::default());
        assert_eq!(v["minValues"], json!({}));
        assert_eq!(v["maxValues"], json!({}));
    }

    #[test]
    fn strings_are_truncated_by_chars() {
        let spec = StatsSpec {
            string_prefix_len: 3,
            ..StatsSpec::default()
        };
        let b1 = batch(vec![
            (
                "s",
                Arc::new(StringArray::from(vec!["ééééé", "abc", "abcd"])) as ArrayRef,
            ),
            (
                "l",
                Arc::new(LargeStringArray::from(vec!["b", "zzzz", "c"])),
            ),
        ]);
        let v = collect(&[b1], &spec);
        assert_eq!(v["minValues"]["s"], json!("abc"));
        assert_eq!(v["maxValues"]["s"], json!("ééé\u{10FFFF}"));
        assert_eq!(v["minValues"]["l"], json!("b"));
        assert_eq!(v["maxValues"]["l"], json!("zzz\u{10FFFF}"));

        // Min truncated too; equal-length strings kept whole.
        let b2 = batch(vec![(
            "v",
            Arc::new(StringViewArray::from(vec![
                "日本語テキスト",
                "日本語",
                "日本語テ",
            ])) as ArrayRef,
        )]);
        let v = collect(&[b2], &spec);
        assert_eq!(v["minValues"]["v"], json!("日本語"));
        assert_eq!(v["maxValues"]["v"], json!("日本語\u{10FFFF}"));

        let b3 = batch(vec![(
            "s",
            Arc::new(StringArray::from(vec!["a\"b\\c\n"])) as ArrayRef,
        )]);
        let v = collect(
            &[b3],
            &StatsSpec {
                string_prefix_len: 32,
                ..StatsSpec::default()
            },
        );
        assert_eq!(v["minValues"]["s"], json!("a\"b\\c\n"));
    }

    #[test]
    fn truncated_max_stays_an_upper_bound() {
        assert_eq!(truncate_max("abc", 3), "abc");
        assert_eq!(truncate_max("ab", 3), "ab");
        assert_eq!(truncate_max("abcd", 3), "abc\u{10FFFF}");
        let tricky = "ab\u{10FFFF}\u{10FFFF}c";
        let t = truncate_max(tricky, 2);
        assert_eq!(t, "ab\u{10FFFF}\u{10FFFF}\u{10FFFF}");
        assert!(t.as_str() >= tricky);
        assert_eq!(truncate_max("ab\u{10FFFF}", 2), "ab\u{10FFFF}");
        assert_eq!(char_prefix("ééé", 2), "éé");
        assert_eq!(char_prefix("é", 2), "é");
    }

    #[test]
    fn covering_adds_clustering_columns_past_the_indexed_ones() {
        let spec = StatsSpec {
            num_indexed_cols: 2,
            ..Default::default()
        };
        let schema = five_int_schema();
        // `e` is past the first two: named with the two covered ones.
        let wide = covering(&spec, &schema, &[], &["e".to_string()]);
        assert_eq!(
            wide.stats_columns,
            Some(vec!["a".to_string(), "B".to_string(), "e".to_string()])
        );
        // Already covered, or a partition column (no statistics): unchanged.
        assert_eq!(covering(&spec, &schema, &[], &["B".to_string()]), spec);
        assert_eq!(
            covering(&spec, &schema, &["e".to_string()], &["e".to_string()]),
            spec
        );
    }

    fn five_int_schema() -> Schema {
        Schema::new(
            ["a", "B", "c", "d", "e"]
                .iter()
                .map(|n| Field::new(*n, DataType::Int32, true))
                .collect::<Vec<_>>(),
        )
    }

    fn five_int_batch() -> RecordBatch {
        RecordBatch::try_new(
            Arc::new(five_int_schema()),
            (0..5)
                .map(|i| Arc::new(Int32Array::from(vec![i, i + 1])) as ArrayRef)
                .collect(),
        )
        .unwrap()
    }

    fn keys(v: &Value) -> Vec<String> {
        v.as_object().unwrap().keys().cloned().collect()
    }

    #[test]
    fn selects_columns() {
        let b = five_int_batch();
        let v = collect(
            std::slice::from_ref(&b),
            &StatsSpec {
                num_indexed_cols: 2,
                ..StatsSpec::default()
            },
        );
        assert_eq!(keys(&v["nullCount"]), ["B", "a"]);
        let v = collect(
            std::slice::from_ref(&b),
            &StatsSpec {
                num_indexed_cols: -1,
                ..StatsSpec::default()
            },
        );
        assert_eq!(keys(&v["minValues"]).len(), 5);
        let v = collect(
            std::slice::from_ref(&b),
            &StatsSpec {
                num_indexed_cols: 0,
                ..StatsSpec::default()
            },
        );
        assert_eq!(v["nullCount"], json!({}));
        let v = collect(
            std::slice::from_ref(&b),
            &StatsSpec {
                num_indexed_cols: 1,
                stats_columns: Some(vec!["b".into(), "E".into(), "nope".into()]),
                ..StatsSpec::default()
            },
        );
        assert_eq!(keys(&v["maxValues"]), ["B", "e"]);
        assert_eq!(v["maxValues"]["e"], json!(5));
    }

    #[test]
    fn nested_columns() {
        let inner = StructArray::from(vec![
            (
                Arc::new(Field::new("x", DataType::Int32, true)),
                Arc::new(Int32Array::from(vec![1, 2])) as ArrayRef,
            ),
            (
                Arc::new(Field::new("y", DataType::Int32, true)),
                Arc::new(Int32Array::from(vec![3, 4])) as ArrayRef,
            ),
        ]);
        let list = ListArray::from_iter_primitive::<I32, _, _>(vec![Some(vec![Some(1)]), None]);
        let b = batch(vec![
            ("st", Arc::new(inner) as ArrayRef),
            ("li", Arc::new(list)),
            ("after", Arc::new(Int32Array::from(vec![7, 8]))),
        ]);
        // The struct uses two of three leaves; the list the third.
        let v = collect(
            std::slice::from_ref(&b),
            &StatsSpec {
                num_indexed_cols: 3,
                ..StatsSpec::default()
            },
        );
        assert_eq!(v["nullCount"], json!({"li": 1}));
        assert_eq!(v["minValues"], json!({}));
        let v = collect(std::slice::from_ref(&b), &StatsSpec::default());
        assert_eq!(v["nullCount"], json!({"li": 1, "after": 0}));
        assert_eq!(v["minValues"], json!({"after": 7}));
    }

    #[test]
    fn rejects_mismatched_batches() {
        let b = five_int_batch();
        let mut c = StatsCollector::try_new(&five_int_schema(), &StatsSpec::default()).unwrap();
        assert!(c.update(&b.project(&[0, 1]).unwrap()).is_err());
        let other = batch(
            (0..5)
                .map(|i| {
                    (
                        ["a", "B", "c", "d", "e"][i],
                        Arc::new(Int64Array::from(vec![1i64])) as ArrayRef,
                    )
                })
                .collect(),
        );
        let err = c.update(&other).unwrap_err();
        assert!(
            err.to_string().contains("column `a` has type Int64"),
            "{err}"
        );
        let (n, _) = c.finish().unwrap();
        assert_eq!(n, 0);
    }

    #[test]
    fn no_rows() {
        let c = StatsCollector::try_new(&five_int_schema(), &StatsSpec::default()).unwrap();
        let (n, text) = c.finish().unwrap();
        assert_eq!(n, 0);
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["nullCount"]["a"], json!(0));
        assert_eq!(v["minValues"], json!({}));
    }
}
