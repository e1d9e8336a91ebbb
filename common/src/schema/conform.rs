//! Conforming batches to a schema (checked casts, NOT NULL), and partition values as
//! constant columns.

use super::*;

/// Produces a batch with exactly `target`'s fields.
///
/// Columns are matched by name case-insensitively; each is cast to the target type with
/// overflow checks (a value that does not fit is an [`Error::DataViolation`] naming the
/// column). Nested structs are matched by name too, arrays and maps element-wise. A target
/// column missing from the batch is filled with nulls; a column of the batch that `target`
/// does not have is an [`Error::SchemaMismatch`] (data is never dropped silently). A NOT
/// NULL target column (or nested field) holding nulls is an [`Error::DataViolation`].
///
/// When the batch already has the target's fields, it is returned re-wrapped without copying.
pub fn conform_batch(batch: &RecordBatch, target: &SchemaRef) -> Result<RecordBatch> {
    conform(batch, target, false)
}

/// [`conform_batch`], except that a column already in the narrower type its target type
/// travels in ([`crate::exchange::narrow_type`]: a `Decimal128` of precision up to 18 as a
/// `Decimal32` or `Decimal64` of the same precision and scale) is kept so, and the result's
/// field says so: for rows bound for a data file writer, which takes them narrowed (no
/// widening only to narrow again).
pub fn conform_batch_keeping_narrowed(
    batch: &RecordBatch,
    target: &SchemaRef,
) -> Result<RecordBatch> {
    conform(batch, target, true)
}

fn conform(batch: &RecordBatch, target: &SchemaRef, keep_narrowed: bool) -> Result<RecordBatch> {
    let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    if batch.schema().fields() == target.fields() {
        return Ok(RecordBatch::try_new_with_options(
            target.clone(),
            batch.columns().to_vec(),
            &options,
        )?);
    }
    let batch_schema = batch.schema();
    for f in batch_schema.fields() {
        if find_field(target.fields(), f.name()).is_none() {
            return Err(Error::SchemaMismatch(format!(
                "column `{}` is not in the target schema",
                f.name()
            )));
        }
    }
    let mut narrowed = false;
    let columns = target
        .fields()
        .iter()
        .map(|tf| {
            let array = match batch_schema.index_of(tf.name()).ok().or_else(|| {
                find_field(batch_schema.fields(), tf.name())
                    .and_then(|f| batch_schema.index_of(f.name()).ok())
            }) {
                Some(i) => {
                    let column = batch.column(i);
                    if keep_narrowed
                        && crate::exchange::narrow_type(tf.data_type()).as_ref()
                            == Some(column.data_type())
                    {
                        narrowed = true;
                        Arc::clone(column)
                    } else {
                        cast_array(column, tf.data_type(), tf.name())?
                    }
                }
                None => new_null_array(tf.data_type(), batch.num_rows()),
            };
            check_not_null(tf, &array, tf.name())?;
            Ok(array)
        })
        .collect::<Result<Vec<_>>>()?;
    let schema = if narrowed {
        with_column_types(target, &columns)
    } else {
        target.clone()
    };
    Ok(RecordBatch::try_new_with_options(
        schema, columns, &options,
    )?)
}

/// `schema` with each field typed as the column at its position.
pub(crate) fn with_column_types(schema: &SchemaRef, columns: &[ArrayRef]) -> SchemaRef {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .zip(columns)
        .map(|(f, c)| {
            if f.data_type() == c.data_type() {
                f.as_ref().clone()
            } else {
                f.as_ref().clone().with_data_type(c.data_type().clone())
            }
        })
        .collect();
    Arc::new(Schema::new(fields).with_metadata(schema.metadata().clone()))
}

pub(super) fn check_not_null(field: &Field, array: &ArrayRef, path: &str) -> Result<()> {
    if !field.is_nullable() {
        let nulls = array.logical_null_count();
        if nulls > 0 {
            return Err(Error::DataViolation(format!(
                "column `{path}` is NOT NULL but {nulls} rows are null"
            )));
        }
    }
    Ok(())
}

pub(super) fn cast_options() -> CastOptions<'static> {
    CastOptions {
        safe: false,
        ..Default::default()
    }
}

/// `array` (`Decimal32` or `Decimal64`) as `to`, a `Decimal128` of the same scale and no
/// smaller precision: a lossless widening, value by value, with no checks to make. `None`
/// for any other pair of types.
pub fn widen_decimal(array: &ArrayRef, to: &DataType) -> Option<ArrayRef> {
    use arrow::array::AsArray;
    use arrow::datatypes::{Decimal32Type, Decimal64Type, Decimal128Type};
    let DataType::Decimal128(to_p, to_s) = *to else {
        return None;
    };
    let wide = match *array.data_type() {
        DataType::Decimal32(p, s) if s == to_s && p <= to_p => array
            .as_primitive::<Decimal32Type>()
            .unary::<_, Decimal128Type>(i128::from),
        DataType::Decimal64(p, s) if s == to_s && p <= to_p => array
            .as_primitive::<Decimal64Type>()
            .unary::<_, Decimal128Type>(i128::from),
        _ => return None,
    };
    wide.with_precision_and_scale(to_p, to_s)
        .ok()
        .map(|a| Arc::new(a) as ArrayRef)
}

/// Casts `array` to `to`, matching struct fields by name (case-insensitively) at every depth.
pub fn cast_array(array: &ArrayRef, to: &DataType, path: &str) -> Result<ArrayRef> {
    let from = array.data_type();
    if from == to {
        return Ok(array.clone());
    }
    if *from == DataType::Null {
        return Ok(new_null_array(to, array.len()));
    }
    if let Some(wide) = widen_decimal(array, to) {
        return Ok(wide);
    }
    if let DataType::Dictionary(_, value) = from {
        let plain = arrow_cast(array, value, path)?;
        return cast_array(&plain, to, path);
    }
    match (from, to) {
        (DataType::Struct(_), DataType::Struct(to_fields)) => {
            let source = array
                .as_any()
                .downcast_ref::<StructArray>()
                .ok_or_else(|| Error::internal(format!("column `{path}`: not a struct array")))?;
            cast_struct(source, to_fields, path).map(|a| Arc::new(a) as ArrayRef)
        }
        (
            DataType::List(_)
            | DataType::LargeList(_)
            | DataType::ListView(_)
            | DataType::LargeListView(_)
            | DataType::FixedSizeList(..),
            DataType::List(to_element),
        ) => {
            let as_list = match from {
                DataType::List(_) => array.clone(),
                _ => {
                    let element = match from {
                        DataType::LargeList(f)
                        | DataType::ListView(f)
                        | DataType::LargeListView(f)
                        | DataType::FixedSizeList(f, _) => f.clone(),
                        _ => return Err(Error::internal("unreachable list type")),
                    };
                    arrow_cast(array, &DataType::List(element), path)?
                }
            };
            let list = as_list
                .as_any()
                .downcast_ref::<ListArray>()
                .ok_or_else(|| Error::internal(format!("column `{path}`: not a list array")))?;
            let element_path = format!("{path}.element");
            let values = cast_array(list.values(), to_element.data_type(), &element_path)?;
            if !to_element.is_nullable() && values.logical_null_count() > 0 {
                return Err(Error::DataViolation(format!(
                    "column `{element_path}` is NOT NULL but {} elements are null",
                    values.logical_null_count()
                )));
            }
            let out = ListArray::try_new(
                to_element.clone(),
                list.offsets().clone(),
                values,
                list.nulls().cloned(),
            )?;
            Ok(Arc::new(out))
        }
        (DataType::Map(..), DataType::Map(to_entries, sorted)) => {
            let map = array
                .as_any()
                .downcast_ref::<MapArray>()
                .ok_or_else(|| Error::internal(format!("column `{path}`: not a map array")))?;
            let DataType::Struct(to_kv) = to_entries.data_type() else {
                return Err(Error::internal(format!(
                    "column `{path}`: bad map type {to}"
                )));
            };
            if to_kv.len() != 2 || map.entries().num_columns() != 2 {
                return Err(Error::internal(format!("column `{path}`: bad map type")));
            }
            let keys = cast_array(map.keys(), to_kv[0].data_type(), &format!("{path}.key"))?;
            let value_path = format!("{path}.value");
            let values = cast_array(map.values(), to_kv[1].data_type(), &value_path)?;
            if !to_kv[1].is_nullable() && values.logical_null_count() > 0 {
                return Err(Error::DataViolation(format!(
                    "column `{value_path}` is NOT NULL but {} values are null",
                    values.logical_null_count()
                )));
            }
            let entries = StructArray::try_new(to_kv.clone(), vec![keys, values], None)?;
            let out = MapArray::try_new(
                to_entries.clone(),
                map.offsets().clone(),
                entries,
                map.nulls().cloned(),
                *sorted,
            )?;
            Ok(Arc::new(out))
        }
        _ => arrow_cast(array, to, path),
    }
}

pub(super) fn cast_struct(
    source: &StructArray,
    to_fields: &Fields,
    path: &str,
) -> Result<StructArray> {
    let from_fields = source.fields();
    for f in from_fields {
        if find_field(to_fields, f.name()).is_none() {
            return Err(Error::SchemaMismatch(format!(
                "field `{path}.{}` is not in the target schema",
                f.name()
            )));
        }
    }
    let nulls = source.nulls().cloned();
    let mut children = Vec::with_capacity(to_fields.len());
    for tf in to_fields {
        let child_path = format!("{path}.{}", tf.name());
        let child = match from_fields
            .iter()
            .position(|f| f.name() == tf.name())
            .or_else(|| {
                find_field(from_fields, tf.name())
                    .and_then(|f| from_fields.iter().position(|g| g.name() == f.name()))
            }) {
            Some(i) => cast_array(source.column(i), tf.data_type(), &child_path)?,
            None => new_null_array(tf.data_type(), source.len()),
        };
        if !tf.is_nullable()
            && let Some(child_nulls) = child.logical_nulls()
        {
            // Nulls under a null parent struct are fine.
            let unmasked = match &nulls {
                Some(parent) => (0..child.len())
                    .filter(|&i| child_nulls.is_null(i) && parent.is_valid(i))
                    .count(),
                None => child_nulls.null_count(),
            };
            if unmasked > 0 {
                return Err(Error::DataViolation(format!(
                    "column `{child_path}` is NOT NULL but {unmasked} rows are null"
                )));
            }
        }
        children.push(child);
    }
    Ok(StructArray::try_new_with_length(
        to_fields.clone(),
        children,
        nulls,
        source.len(),
    )?)
}

pub(super) fn arrow_cast(array: &ArrayRef, to: &DataType, path: &str) -> Result<ArrayRef> {
    cast_with_options(array, to, &cast_options()).map_err(|e| {
        Error::DataViolation(format!(
            "column `{path}`: cannot convert {} to {}: {e}",
            type_name(array.data_type()),
            type_name(to)
        ))
    })
}

/// A column of `num_rows` copies of a Delta partition value, typed as `field`.
///
/// `value` is in Delta's partition-value serialization: `None` and the empty string are
/// null; integers, floats (`NaN`, `Infinity`), `true`/`false`, dates `YYYY-MM-DD`, timestamps
/// `YYYY-MM-DD HH:MM:SS[.ffffff]` (UTC for `timestamp`) or ISO-8601 (`…T…Z`), decimals, and
/// strings/binaries as they are. A value that does not parse as the field's type is an
/// [`Error::InvalidInput`] naming the column.
pub fn constant_array(field: &Field, value: Option<&str>, num_rows: usize) -> Result<ArrayRef> {
    let dt = field.data_type();
    let value = match value {
        Some(v) if !v.is_empty() => v,
        _ => return Ok(new_null_array(dt, num_rows)),
    };
    let bad = |reason: String| {
        Error::invalid(format!(
            "partition value `{value}` of column `{}` is not a valid {}{reason}",
            field.name(),
            type_name(dt)
        ))
    };
    let one: ArrayRef = match dt {
        DataType::Utf8 => Arc::new(StringArray::from(vec![value])),
        DataType::Binary => Arc::new(BinaryArray::from(vec![value.as_bytes()])),
        DataType::Boolean => {
            let b = if value.eq_ignore_ascii_case("true") {
                true
            } else if value.eq_ignore_ascii_case("false") {
                false
            } else {
                return Err(bad(String::new()));
            };
            Arc::new(BooleanArray::from(vec![b]))
        }
        DataType::Float32 => Arc::new(Float32Array::from(vec![
            parse_float(value).ok_or_else(|| bad(String::new()))? as f32,
        ])),
        DataType::Float64 => Arc::new(Float64Array::from(vec![
            parse_float(value).ok_or_else(|| bad(String::new()))?,
        ])),
        DataType::Timestamp(_, _) => {
            let micros = parse_timestamp_micros(value).ok_or_else(|| bad(String::new()))?;
            let ts = arrow::array::TimestampMicrosecondArray::from(vec![micros]);
            let ts: ArrayRef = match dt {
                DataType::Timestamp(_, Some(tz)) => Arc::new(ts.with_timezone(tz.clone())),
                _ => Arc::new(ts),
            };
            if ts.data_type() == dt {
                ts
            } else {
                cast_with_options(&ts, dt, &cast_options()).map_err(|e| bad(format!(": {e}")))?
            }
        }
        _ => {
            let s: ArrayRef = Arc::new(StringArray::from(vec![value.trim()]));
            cast_with_options(&s, dt, &cast_options()).map_err(|e| bad(format!(": {e}")))?
        }
    };
    repeat(&one, num_rows)
}

pub(super) fn parse_float(s: &str) -> Option<f64> {
    // Rust accepts `NaN`, `inf`, `Infinity` (any case) and signs, as Spark writes them.
    s.trim().parse::<f64>().ok()
}

/// Parses Delta partition timestamps to microseconds since the epoch (UTC).
pub(super) fn parse_timestamp_micros(s: &str) -> Option<i64> {
    use chrono::{DateTime, NaiveDate, NaiveDateTime};
    let s = s.trim();
    if let Ok(dt) = DateTime::parse_from_rfc3339(s) {
        return Some(dt.timestamp_micros());
    }
    for fmt in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(dt) = NaiveDateTime::parse_from_str(s, fmt) {
            return Some(dt.and_utc().timestamp_micros());
        }
    }
    // `…Z` or `…+hh:mm` with a space separator.
    for fmt in ["%Y-%m-%d %H:%M:%S%.f%#z", "%Y-%m-%d %H:%M:%S%.fZ"] {
        if let Ok(dt) = DateTime::parse_from_str(s, fmt) {
            return Some(dt.timestamp_micros());
        }
        if let Ok(dt) = NaiveDateTime::parse_from_str(s, fmt) {
            return Some(dt.and_utc().timestamp_micros());
        }
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|dt| dt.and_utc().timestamp_micros())
}

/// `num_rows` copies of the single value in `one`.
pub(super) fn repeat(one: &ArrayRef, num_rows: usize) -> Result<ArrayRef> {
    let indices = arrow::array::UInt32Array::from(vec![0u32; num_rows]);
    Ok(arrow::compute::take(one.as_ref(), &indices, None)?)
}
