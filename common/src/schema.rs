//! Arrow ↔ Delta schemas and schema enforcement, with Delta Spark semantics.
//!
//! * [`normalize_arrow_schema`] maps whatever a source produces (views, dictionaries, unsigned
//!   integers, any timestamp unit) onto the Arrow types that Delta can store, and rejects the
//!   rest with an error naming the column.
//! * [`arrow_to_delta_json`] / [`delta_json_to_arrow`] convert to and from the Delta
//!   `StructType` JSON of `metaData.schemaString` (through deltalake-core's kernel).
//! * [`resolve_write_schema`] decides the schema a write produces: schema enforcement,
//!   `mergeSchema` and `overwriteSchema`.
//! * [`conform_batch`] makes a batch fit a resolved schema (by name, case-insensitively,
//!   with checked casts and NOT NULL checks).
//! * [`constant_array`] turns a Delta partition-value string back into a column.
//!
//! Column names are matched case-insensitively everywhere, like Delta Spark; the table's
//! spelling wins.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BinaryArray, BooleanArray, Float32Array, Float64Array, ListArray, MapArray,
    StringArray, StructArray, new_null_array,
};
use arrow::compute::{CastOptions, cast_with_options};
use arrow::datatypes::{DataType, Field, FieldRef, Fields, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::{RecordBatch, RecordBatchOptions};
use deltalake_core::kernel::StructType;
use deltalake_core::kernel::engine::arrow_conversion::{TryIntoArrow, TryIntoKernel};

use crate::{Error, Result};

/// Field metadata key the Parquet reader uses for field ids; meaningless in a Delta schema
/// without column mapping, so it is dropped by [`normalize_arrow_schema`].
const PARQUET_FIELD_ID_KEY: &str = "PARQUET:field_id";

/// Name Delta (and the kernel) gives the element field of an array.
const LIST_ELEMENT: &str = "element";
/// Names Delta (and the kernel) give the entries, key and value fields of a map.
const MAP_ENTRIES: &str = "key_value";
const MAP_KEY: &str = "key";
const MAP_VALUE: &str = "value";

/// The UTC time zone id used for Delta `timestamp` columns.
const UTC: &str = "UTC";

// ---------------------------------------------------------------------------------------------
// Normalization
// ---------------------------------------------------------------------------------------------

/// Maps a source schema onto Arrow types Delta can represent.
///
/// | source type                                   | normalized                        |
/// |-----------------------------------------------|-----------------------------------|
/// | `Utf8View`, `LargeUtf8`                        | `Utf8`                            |
/// | `BinaryView`, `LargeBinary`, `FixedSizeBinary` | `Binary`                          |
/// | `Dictionary(_, v)`                             | normalized `v`                    |
/// | `UInt8` / `UInt16` / `UInt32`                  | `Int16` / `Int32` / `Int64`       |
/// | `UInt64`                                       | `Int64` (overflow is an error when the data is cast, see [`conform_batch`]) |
/// | `Float16`                                      | `Float32`                         |
/// | `Timestamp(_, Some(_))`                        | `Timestamp(Microsecond, "UTC")` (Delta `timestamp`) |
/// | `Timestamp(_, None)`                           | `Timestamp(Microsecond, None)` (Delta `timestamp_ntz`) |
/// | `Date64`                                       | `Date32`                          |
/// | `Decimal32/64/256(p, s)`, `p <= 38`, `s >= 0`  | `Decimal128(p, s)`                |
/// | `LargeList`, `ListView`, `FixedSizeList`, …    | `List` (element named `element`)  |
/// | `Struct`, `Map`                                | children normalized recursively   |
/// | `Null`                                         | kept (resolved by [`resolve_write_schema`]) |
///
/// Anything else (`Time*`, `Duration`, `Interval`, `Union`, `RunEndEncoded`, negative decimal
/// scales, precision above 38) is an [`Error::SchemaMismatch`] naming the column and its type.
/// Parquet field-id metadata and schema-level metadata are dropped.
pub fn normalize_arrow_schema(schema: &Schema) -> Result<Schema> {
    let fields = schema
        .fields()
        .iter()
        .map(|f| normalize_field(f, f.name()))
        .collect::<Result<Vec<_>>>()?;
    Ok(Schema::new(fields))
}

fn normalize_field(field: &Field, path: &str) -> Result<Field> {
    let data_type = normalize_type(field.data_type(), path)?;
    let mut metadata = field.metadata().clone();
    metadata.remove(PARQUET_FIELD_ID_KEY);
    Ok(Field::new(field.name(), data_type, field.is_nullable()).with_metadata(metadata))
}

fn normalize_type(dt: &DataType, path: &str) -> Result<DataType> {
    use DataType::*;
    let unsupported = || {
        Err(Error::SchemaMismatch(format!(
            "column `{path}` has type {dt} which Delta cannot store"
        )))
    };
    Ok(match dt {
        Null | Boolean | Int8 | Int16 | Int32 | Int64 | Float32 | Float64 | Utf8 | Binary
        | Date32 => dt.clone(),
        Utf8View | LargeUtf8 => Utf8,
        BinaryView | LargeBinary | FixedSizeBinary(_) => Binary,
        Dictionary(_, value) => normalize_type(value, path)?,
        UInt8 => Int16,
        UInt16 => Int32,
        UInt32 | UInt64 => Int64,
        Float16 => Float32,
        Timestamp(_, Some(_)) => Timestamp(TimeUnit::Microsecond, Some(UTC.into())),
        Timestamp(_, None) => Timestamp(TimeUnit::Microsecond, None),
        Date64 => Date32,
        Decimal32(p, s) | Decimal64(p, s) | Decimal128(p, s) | Decimal256(p, s) => {
            if *s < 0 || *p == 0 || *p > 38 || (*s as u8) > *p {
                return unsupported();
            }
            Decimal128(*p, *s)
        }
        List(f) | LargeList(f) | ListView(f) | LargeListView(f) | FixedSizeList(f, _) => {
            let element = normalize_type(f.data_type(), &format!("{path}.element"))?;
            List(Arc::new(Field::new(LIST_ELEMENT, element, f.is_nullable())))
        }
        Struct(fields) => Struct(
            fields
                .iter()
                .map(|f| normalize_field(f, &format!("{path}.{}", f.name())))
                .collect::<Result<Vec<_>>>()?
                .into(),
        ),
        Map(entries, _) => {
            let (key, value) = map_children(entries, path)?;
            map_type(
                normalize_type(key.data_type(), &format!("{path}.key"))?,
                normalize_type(value.data_type(), &format!("{path}.value"))?,
                value.is_nullable(),
            )
        }
        Time32(_) | Time64(_) | Duration(_) | Interval(_) | Union(..) | RunEndEncoded(..) => {
            return unsupported();
        }
    })
}

/// The key and value fields of a map's entries struct.
fn map_children<'a>(entries: &'a FieldRef, path: &str) -> Result<(&'a FieldRef, &'a FieldRef)> {
    match entries.data_type() {
        DataType::Struct(kv) if kv.len() == 2 => Ok((&kv[0], &kv[1])),
        other => Err(Error::SchemaMismatch(format!(
            "column `{path}` is a map whose entries are {other}, not a key/value struct"
        ))),
    }
}

/// A Delta-shaped Arrow map type (`key_value` entries, non-null keys, unsorted).
fn map_type(key: DataType, value: DataType, value_nullable: bool) -> DataType {
    DataType::Map(
        Arc::new(Field::new(
            MAP_ENTRIES,
            DataType::Struct(
                vec![
                    Field::new(MAP_KEY, key, false),
                    Field::new(MAP_VALUE, value, value_nullable),
                ]
                .into(),
            ),
            false,
        )),
        false,
    )
}

// ---------------------------------------------------------------------------------------------
// Delta JSON
// ---------------------------------------------------------------------------------------------

/// The Delta `StructType` JSON (as in `metaData.schemaString`) of an Arrow schema.
///
/// The schema is normalized first (see [`normalize_arrow_schema`]); `Timestamp(us, "UTC")`
/// becomes `timestamp`, `Timestamp(us, None)` becomes `timestamp_ntz`.
pub fn arrow_to_delta_json(schema: &Schema) -> Result<String> {
    let normalized = normalize_arrow_schema(schema)?;
    let delta: StructType = (&normalized)
        .try_into_kernel()
        .map_err(|e| Error::SchemaMismatch(format!("cannot convert to a Delta schema: {e}")))?;
    serde_json::to_string(&delta)
        .map_err(|e| Error::internal(format!("cannot serialize Delta schema: {e}")))
}

/// The Arrow schema of a Delta `StructType` JSON (`metaData.schemaString`).
///
/// `timestamp` becomes `Timestamp(us, "UTC")`, `timestamp_ntz` `Timestamp(us, None)`,
/// `decimal(p,s)` `Decimal128(p, s)`, arrays `List` with an `element` field, maps `Map` with
/// `key_value` entries.
pub fn delta_json_to_arrow(json: &str) -> Result<SchemaRef> {
    let delta: StructType = serde_json::from_str(json)
        .map_err(|e| Error::invalid(format!("invalid Delta schema JSON: {e}")))?;
    let schema: Schema = (&delta)
        .try_into_arrow()
        .map_err(|e| Error::invalid(format!("cannot convert Delta schema to Arrow: {e}")))?;
    Ok(Arc::new(schema))
}

/// Whether any column (at any depth) is a timestamp without time zone (Delta
/// `timestamp_ntz`, which needs the `timestampNtz` table feature).
pub fn uses_timestamp_ntz(schema: &Schema) -> bool {
    schema.fields().iter().any(|f| type_uses_ntz(f.data_type()))
}

fn type_uses_ntz(dt: &DataType) -> bool {
    match dt {
        DataType::Timestamp(_, None) => true,
        DataType::List(f)
        | DataType::LargeList(f)
        | DataType::ListView(f)
        | DataType::LargeListView(f)
        | DataType::FixedSizeList(f, _)
        | DataType::Map(f, _) => type_uses_ntz(f.data_type()),
        DataType::Struct(fields) => fields.iter().any(|f| type_uses_ntz(f.data_type())),
        DataType::Dictionary(_, v) => type_uses_ntz(v),
        _ => false,
    }
}

/// A short, Delta-flavoured name of an Arrow type for error messages (`integer`,
/// `decimal(10,2)`, `array<string>`, `struct<a: long>`).
pub fn type_name(dt: &DataType) -> String {
    use DataType::*;
    match dt {
        Null => "void".into(),
        Boolean => "boolean".into(),
        Int8 => "byte".into(),
        Int16 => "short".into(),
        Int32 => "integer".into(),
        Int64 => "long".into(),
        Float32 => "float".into(),
        Float64 => "double".into(),
        Utf8 | LargeUtf8 | Utf8View => "string".into(),
        Binary | LargeBinary | BinaryView => "binary".into(),
        Date32 | Date64 => "date".into(),
        Timestamp(TimeUnit::Microsecond, Some(_)) => "timestamp".into(),
        Timestamp(TimeUnit::Microsecond, None) => "timestamp_ntz".into(),
        Decimal128(p, s) => format!("decimal({p},{s})"),
        List(f) | LargeList(f) | ListView(f) | LargeListView(f) | FixedSizeList(f, _) => {
            format!("array<{}>", type_name(f.data_type()))
        }
        Map(entries, _) => match entries.data_type() {
            Struct(kv) if kv.len() == 2 => format!(
                "map<{}, {}>",
                type_name(kv[0].data_type()),
                type_name(kv[1].data_type())
            ),
            other => format!("map<{other}>"),
        },
        Struct(fields) => format!(
            "struct<{}>",
            fields
                .iter()
                .map(|f| format!("{}: {}", f.name(), type_name(f.data_type())))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => other.to_string(),
    }
}

// ---------------------------------------------------------------------------------------------
// Schema resolution (enforcement, mergeSchema, overwriteSchema)
// ---------------------------------------------------------------------------------------------

/// Write options that change schema handling (Delta's `mergeSchema` / `overwriteSchema`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SchemaOptions {
    /// Add source columns (and nested struct fields) missing from the table.
    pub merge_schema: bool,
    /// Replace the table schema by the source schema (only valid with an overwrite; the
    /// caller checks the mode).
    pub overwrite_schema: bool,
}

/// Decides the schema a write produces.
///
/// * No table yet, or `overwrite_schema`: the normalized source schema. Columns of type
///   `Null` (a source column that is all nulls without a type) are an error unless the table
///   already has the column, whose type is then used.
/// * Otherwise, Delta schema enforcement: columns match by name case-insensitively and the
///   table's spelling and order win. A source column missing from the table is an error
///   unless `merge_schema` (then it is appended, nullable). A table column missing from the
///   source is fine if nullable (it is filled with nulls), an error if NOT NULL. A type
///   difference is allowed only when the source casts safely into the table type: integer
///   widening (byte → short → integer → long), float → double, `Null` into anything, decimal
///   `(p,s)` → `(p',s)` with `p' >= p`; nested structs, arrays and maps are compared
///   recursively (with `merge_schema`, nested struct fields merge the same way).
///
/// All problems are reported together in one [`Error::SchemaMismatch`], one per column as
/// ``"`col`: table type X, source type Y"``.
pub fn resolve_write_schema(
    table: Option<&Schema>,
    source: &Schema,
    opts: &SchemaOptions,
) -> Result<Schema> {
    let source = normalize_arrow_schema(source)?;
    check_duplicates(source.fields(), "")?;
    let table = match table {
        Some(t) if !opts.overwrite_schema => t,
        _ => return resolve_replacement(table, &source),
    };

    let mut problems = Vec::new();
    let fields = merge_fields(
        table.fields(),
        source.fields(),
        "",
        opts.merge_schema,
        &mut problems,
    );
    if !problems.is_empty() {
        // One line: errors reach users as a single `error: …` line.
        let mut msg = format!(
            "the data does not match the table schema: {}",
            problems.join("; ")
        );
        if !opts.merge_schema && problems.iter().any(|p| p.contains("not in the table")) {
            msg.push_str(" (to add the new columns, write with --merge-schema)");
        }
        return Err(Error::SchemaMismatch(msg));
    }
    Ok(Schema::new(fields).with_metadata(table.metadata().clone()))
}

/// Schema of a new table or of an `overwriteSchema` write: the source, with `Null` columns
/// resolved from the old table or rejected.
fn resolve_replacement(table: Option<&Schema>, source: &Schema) -> Result<Schema> {
    let mut problems = Vec::new();
    let fields: Vec<Field> = source
        .fields()
        .iter()
        .map(|f| {
            let old = table.and_then(|t| find_field(t.fields(), f.name()));
            match old {
                Some(old) if f.data_type() == &DataType::Null => {
                    f.as_ref().clone().with_data_type(old.data_type().clone())
                }
                _ => {
                    collect_null_types(f.data_type(), f.name(), &mut problems);
                    f.as_ref().clone()
                }
            }
        })
        .collect();
    if !problems.is_empty() {
        return Err(Error::SchemaMismatch(problems.join("; ")));
    }
    Ok(Schema::new(fields))
}

fn collect_null_types(dt: &DataType, path: &str, problems: &mut Vec<String>) {
    match dt {
        DataType::Null => problems.push(format!(
            "column `{path}` has no type (all nulls); cast it to a type"
        )),
        DataType::List(f) => {
            collect_null_types(f.data_type(), &format!("{path}.element"), problems)
        }
        DataType::Map(entries, _) => {
            if let DataType::Struct(kv) = entries.data_type() {
                for (f, n) in kv.iter().zip(["key", "value"]) {
                    collect_null_types(f.data_type(), &format!("{path}.{n}"), problems);
                }
            }
        }
        DataType::Struct(fields) => {
            for f in fields {
                collect_null_types(f.data_type(), &format!("{path}.{}", f.name()), problems);
            }
        }
        _ => {}
    }
}

/// Rejects names that collide case-insensitively (Delta Spark does too), at every depth.
fn check_duplicates(fields: &Fields, prefix: &str) -> Result<()> {
    let mut seen: HashMap<String, &str> = HashMap::new();
    for f in fields {
        if let Some(prev) = seen.insert(f.name().to_lowercase(), f.name()) {
            return Err(Error::SchemaMismatch(format!(
                "duplicate column `{prefix}{}` (column names are case-insensitive; also `{prefix}{prev}`)",
                f.name()
            )));
        }
        let child_prefix = format!("{prefix}{}.", f.name());
        let mut dt = f.data_type();
        while let DataType::List(e) = dt {
            dt = e.data_type();
        }
        if let DataType::Struct(children) = dt {
            check_duplicates(children, &child_prefix)?;
        }
    }
    Ok(())
}

fn find_field<'a>(fields: &'a Fields, name: &str) -> Option<&'a FieldRef> {
    fields
        .iter()
        .find(|f| f.name() == name)
        .or_else(|| fields.iter().find(|f| f.name().eq_ignore_ascii_case(name)))
        .or_else(|| {
            let lower = name.to_lowercase();
            fields.iter().find(|f| f.name().to_lowercase() == lower)
        })
}

fn join_path(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

/// Merges source fields into table fields (table order, new fields appended), collecting
/// problems instead of stopping at the first.
fn merge_fields(
    table: &Fields,
    source: &Fields,
    prefix: &str,
    merge: bool,
    problems: &mut Vec<String>,
) -> Vec<Field> {
    let mut out = Vec::with_capacity(table.len().max(source.len()));
    for tf in table {
        let path = join_path(prefix, tf.name());
        match find_field(source, tf.name()) {
            Some(sf) => {
                let dt = merge_types(tf.data_type(), sf.data_type(), &path, merge, problems);
                out.push(tf.as_ref().clone().with_data_type(dt));
            }
            None => {
                if !tf.is_nullable() {
                    problems.push(format!(
                        "`{path}`: NOT NULL column of the table is missing from the data"
                    ));
                }
                out.push(tf.as_ref().clone());
            }
        }
    }
    for sf in source {
        if find_field(table, sf.name()).is_some() {
            continue;
        }
        let path = join_path(prefix, sf.name());
        if merge {
            let before = problems.len();
            collect_null_types(sf.data_type(), &path, problems);
            if problems.len() == before {
                out.push(sf.as_ref().clone().with_nullable(true));
            }
        } else {
            problems.push(format!(
                "`{path}`: not in the table (source type {})",
                type_name(sf.data_type())
            ));
        }
    }
    out
}

/// The type a table column keeps when `source` data is written into it, or a problem.
fn merge_types(
    table: &DataType,
    source: &DataType,
    path: &str,
    merge: bool,
    problems: &mut Vec<String>,
) -> DataType {
    use DataType::*;
    if table == source || *source == Null {
        return table.clone();
    }
    let ok = match (table, source) {
        (Int16, Int8) | (Int32, Int8 | Int16) | (Int64, Int8 | Int16 | Int32) => true,
        (Float64, Float32) => true,
        (Decimal128(tp, ts), Decimal128(sp, ss)) => ts == ss && tp >= sp,
        (Struct(tf), Struct(sf)) => {
            let fields = merge_fields(tf, sf, path, merge, problems);
            return Struct(fields.into());
        }
        (List(te), List(se)) => {
            let element = merge_types(
                te.data_type(),
                se.data_type(),
                &format!("{path}.element"),
                merge,
                problems,
            );
            return List(Arc::new(te.as_ref().clone().with_data_type(element)));
        }
        (Map(te, sorted), Map(se, _)) => {
            let (Ok((tk, tv)), Ok((sk, sv))) = (map_children(te, path), map_children(se, path))
            else {
                false_problem(table, source, path, problems);
                return table.clone();
            };
            let key = merge_types(
                tk.data_type(),
                sk.data_type(),
                &format!("{path}.key"),
                merge,
                problems,
            );
            let value = merge_types(
                tv.data_type(),
                sv.data_type(),
                &format!("{path}.value"),
                merge,
                problems,
            );
            let entries = Struct(
                vec![
                    tk.as_ref().clone().with_data_type(key),
                    tv.as_ref().clone().with_data_type(value),
                ]
                .into(),
            );
            return Map(
                Arc::new(te.as_ref().clone().with_data_type(entries)),
                *sorted,
            );
        }
        _ => false,
    };
    if !ok {
        false_problem(table, source, path, problems);
    }
    table.clone()
}

fn false_problem(table: &DataType, source: &DataType, path: &str, problems: &mut Vec<String>) {
    problems.push(format!(
        "`{path}`: table type {}, source type {}",
        type_name(table),
        type_name(source)
    ));
}

// ---------------------------------------------------------------------------------------------
// Conforming batches
// ---------------------------------------------------------------------------------------------

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
    let columns = target
        .fields()
        .iter()
        .map(|tf| {
            let array = match batch_schema.index_of(tf.name()).ok().or_else(|| {
                find_field(batch_schema.fields(), tf.name())
                    .and_then(|f| batch_schema.index_of(f.name()).ok())
            }) {
                Some(i) => cast_array(batch.column(i), tf.data_type(), tf.name())?,
                None => new_null_array(tf.data_type(), batch.num_rows()),
            };
            check_not_null(tf, &array, tf.name())?;
            Ok(array)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(RecordBatch::try_new_with_options(
        target.clone(),
        columns,
        &options,
    )?)
}

fn check_not_null(field: &Field, array: &ArrayRef, path: &str) -> Result<()> {
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

fn cast_options() -> CastOptions<'static> {
    CastOptions {
        safe: false,
        ..Default::default()
    }
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

fn cast_struct(source: &StructArray, to_fields: &Fields, path: &str) -> Result<StructArray> {
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

fn arrow_cast(array: &ArrayRef, to: &DataType, path: &str) -> Result<ArrayRef> {
    cast_with_options(array, to, &cast_options()).map_err(|e| {
        Error::DataViolation(format!(
            "column `{path}`: cannot convert {} to {}: {e}",
            type_name(array.data_type()),
            type_name(to)
        ))
    })
}

// ---------------------------------------------------------------------------------------------
// Partition values
// ---------------------------------------------------------------------------------------------

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

fn parse_float(s: &str) -> Option<f64> {
    // Rust accepts `NaN`, `inf`, `Infinity` (any case) and signs, as Spark writes them.
    s.trim().parse::<f64>().ok()
}

/// Parses Delta partition timestamps to microseconds since the epoch (UTC).
fn parse_timestamp_micros(s: &str) -> Option<i64> {
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
fn repeat(one: &ArrayRef, num_rows: usize) -> Result<ArrayRef> {
    let indices = arrow::array::UInt32Array::from(vec![0u32; num_rows]);
    Ok(arrow::compute::take(one.as_ref(), &indices, None)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{
        AsArray, Date32Array, Decimal128Array, DictionaryArray, Int8Array, Int32Array, Int64Array,
        ListBuilder, StringBuilder, TimestampMicrosecondArray, TimestampNanosecondArray,
        UInt64Array,
    };
    use arrow::datatypes::{Int32Type, IntervalUnit};

    fn f(name: &str, dt: DataType) -> Field {
        Field::new(name, dt, true)
    }

    fn schema(fields: Vec<Field>) -> Schema {
        Schema::new(fields)
    }

    fn opts(merge: bool, overwrite: bool) -> SchemaOptions {
        SchemaOptions {
            merge_schema: merge,
            overwrite_schema: overwrite,
        }
    }

    fn err_msg<T: std::fmt::Debug>(r: Result<T>) -> String {
        match r {
            Ok(v) => panic!("expected an error, got {v:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn normalizes_source_types() {
        let s = schema(vec![
            f("a", DataType::Utf8View),
            f("b", DataType::LargeBinary),
            f(
                "c",
                DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::LargeUtf8)),
            ),
            f("d", DataType::UInt8),
            f("e", DataType::UInt64),
            f("g", DataType::Float16),
            f(
                "h",
                DataType::Timestamp(TimeUnit::Nanosecond, Some("+02:00".into())),
            ),
            f("i", DataType::Timestamp(TimeUnit::Millisecond, None)),
            f("j", DataType::Date64),
            f(
                "k",
                DataType::LargeList(Arc::new(f("item", DataType::UInt16))),
            ),
            f(
                "l",
                DataType::Struct(vec![f("x", DataType::Utf8View)].into()),
            ),
            f("m", DataType::Null),
        ]);
        let n = normalize_arrow_schema(&s).unwrap();
        let types: Vec<DataType> = n.fields().iter().map(|f| f.data_type().clone()).collect();
        assert_eq!(
            types,
            vec![
                DataType::Utf8,
                DataType::Binary,
                DataType::Utf8,
                DataType::Int16,
                DataType::Int64,
                DataType::Float32,
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                DataType::Timestamp(TimeUnit::Microsecond, None),
                DataType::Date32,
                DataType::List(Arc::new(f("element", DataType::Int32))),
                DataType::Struct(vec![f("x", DataType::Utf8)].into()),
                DataType::Null,
            ]
        );
    }

    #[test]
    fn rejects_types_delta_cannot_store() {
        let s = schema(vec![f("t", DataType::Time64(TimeUnit::Nanosecond))]);
        let msg = err_msg(normalize_arrow_schema(&s));
        assert!(msg.contains("column `t`"), "{msg}");
        assert!(msg.contains("Time64"), "{msg}");
        let s = schema(vec![f(
            "s",
            DataType::Struct(vec![f("iv", DataType::Interval(IntervalUnit::DayTime))].into()),
        )]);
        assert!(err_msg(normalize_arrow_schema(&s)).contains("`s.iv`"));
        let s = schema(vec![f("d", DataType::Decimal256(50, 2))]);
        assert!(normalize_arrow_schema(&s).is_err());
    }

    #[test]
    fn delta_json_round_trips() {
        let s = schema(vec![
            Field::new("id", DataType::Int64, false),
            f(
                "ts",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            ),
            f("ntz", DataType::Timestamp(TimeUnit::Microsecond, None)),
            f("dec", DataType::Decimal128(10, 2)),
            f("d", DataType::Date32),
            f(
                "nested",
                DataType::Struct(
                    vec![
                        f("a", DataType::Utf8),
                        f("l", DataType::List(Arc::new(f("element", DataType::Int32)))),
                    ]
                    .into(),
                ),
            ),
            f("m", map_type(DataType::Utf8, DataType::Float64, true)),
        ]);
        let json = arrow_to_delta_json(&s).unwrap();
        assert!(json.contains(r#""type":"timestamp""#), "{json}");
        assert!(json.contains(r#""type":"timestamp_ntz""#), "{json}");
        assert!(json.contains(r#""type":"decimal(10,2)""#), "{json}");
        let back = delta_json_to_arrow(&json).unwrap();
        assert_eq!(back.as_ref(), &s);
        assert!(uses_timestamp_ntz(&s));
        assert!(!uses_timestamp_ntz(&schema(vec![f("a", DataType::Int32)])));
        assert!(delta_json_to_arrow("{not json").is_err());

        // A source schema may hold all-null (untyped) columns; they survive as `void`.
        let with_null = schema(vec![f("n", DataType::Null), f("a", DataType::Int32)]);
        let json = arrow_to_delta_json(&with_null).unwrap();
        assert_eq!(delta_json_to_arrow(&json).unwrap().as_ref(), &with_null);
    }

    #[test]
    fn new_table_takes_source_and_rejects_null_columns() {
        let src = schema(vec![f("a", DataType::Utf8View), f("b", DataType::Int32)]);
        let out = resolve_write_schema(None, &src, &opts(false, false)).unwrap();
        assert_eq!(out.field(0).data_type(), &DataType::Utf8);

        let src = schema(vec![f("a", DataType::Int32), f("n", DataType::Null)]);
        let msg = err_msg(resolve_write_schema(None, &src, &opts(false, false)));
        assert!(msg.contains("column `n` has no type"), "{msg}");

        // overwriteSchema keeps the table's type for an all-null column it already has.
        let table = schema(vec![f("n", DataType::Utf8)]);
        let out = resolve_write_schema(Some(&table), &src, &opts(false, true)).unwrap();
        assert_eq!(out.field(1).data_type(), &DataType::Utf8);
        assert_eq!(out.field(0).name(), "a");
    }

    #[test]
    fn enforcement_matches_case_insensitively_and_keeps_table_order() {
        let table = schema(vec![
            Field::new("Id", DataType::Int64, false),
            f("Name", DataType::Utf8),
            f("score", DataType::Float64),
        ]);
        let src = schema(vec![
            f("name", DataType::LargeUtf8),
            Field::new("ID", DataType::Int32, true),
        ]);
        let out = resolve_write_schema(Some(&table), &src, &opts(false, false)).unwrap();
        assert_eq!(out, table);
    }

    #[test]
    fn enforcement_reports_all_problems() {
        let table = schema(vec![
            f("a", DataType::Int32),
            f("b", DataType::Utf8),
            Field::new("c", DataType::Int64, false),
            f("d", DataType::Decimal128(10, 2)),
        ]);
        let src = schema(vec![
            f("a", DataType::Int64),
            f("b", DataType::Int32),
            f("d", DataType::Decimal128(12, 2)),
            f("extra", DataType::Utf8),
        ]);
        let msg = err_msg(resolve_write_schema(
            Some(&table),
            &src,
            &opts(false, false),
        ));
        assert!(
            msg.contains("`a`: table type integer, source type long"),
            "{msg}"
        );
        assert!(
            msg.contains("`b`: table type string, source type integer"),
            "{msg}"
        );
        assert!(msg.contains("`c`: NOT NULL column"), "{msg}");
        assert!(
            msg.contains("`d`: table type decimal(10,2), source type decimal(12,2)"),
            "{msg}"
        );
        assert!(msg.contains("`extra`: not in the table"), "{msg}");
        assert!(msg.contains("--merge-schema"), "{msg}");
        assert!(!msg.contains('\n'), "one line: {msg}");
    }

    #[test]
    fn enforcement_allows_safe_widening() {
        let table = schema(vec![
            f("a", DataType::Int64),
            f("b", DataType::Float64),
            f("c", DataType::Decimal128(12, 2)),
            f("d", DataType::Utf8),
            f("e", DataType::Int16),
        ]);
        let src = schema(vec![
            f("a", DataType::Int8),
            f("b", DataType::Float32),
            f("c", DataType::Decimal128(10, 2)),
            f("d", DataType::Null),
            f("e", DataType::UInt8),
        ]);
        let out = resolve_write_schema(Some(&table), &src, &opts(false, false)).unwrap();
        assert_eq!(out, table);
    }

    #[test]
    fn merge_schema_appends_columns_and_merges_structs() {
        let table = schema(vec![
            f("a", DataType::Int32),
            f("s", DataType::Struct(vec![f("x", DataType::Int32)].into())),
        ]);
        let src = schema(vec![
            Field::new("new", DataType::Utf8, false),
            f(
                "S",
                DataType::Struct(vec![f("y", DataType::Utf8), f("X", DataType::Int16)].into()),
            ),
            f("a", DataType::Int32),
        ]);
        let msg = err_msg(resolve_write_schema(
            Some(&table),
            &src,
            &opts(false, false),
        ));
        assert!(msg.contains("`s.y`: not in the table"), "{msg}");
        assert!(msg.contains("`new`: not in the table"), "{msg}");

        let out = resolve_write_schema(Some(&table), &src, &opts(true, false)).unwrap();
        let expected = schema(vec![
            f("a", DataType::Int32),
            f(
                "s",
                DataType::Struct(vec![f("x", DataType::Int32), f("y", DataType::Utf8)].into()),
            ),
            f("new", DataType::Utf8),
        ]);
        assert_eq!(out, expected);

        // Type conflicts still fail with mergeSchema.
        let src = schema(vec![f("a", DataType::Utf8)]);
        assert!(resolve_write_schema(Some(&table), &src, &opts(true, false)).is_err());
        // New all-null columns cannot be added.
        let src = schema(vec![f("n", DataType::Null)]);
        let msg = err_msg(resolve_write_schema(Some(&table), &src, &opts(true, false)));
        assert!(msg.contains("has no type"), "{msg}");
    }

    #[test]
    fn duplicate_source_columns_are_rejected() {
        let src = schema(vec![f("a", DataType::Int32), f("A", DataType::Int32)]);
        let msg = err_msg(resolve_write_schema(None, &src, &opts(false, false)));
        assert!(msg.contains("duplicate column"), "{msg}");
    }

    #[test]
    fn conform_fast_path_and_casts() {
        let target: SchemaRef = Arc::new(schema(vec![
            Field::new("id", DataType::Int64, false),
            f("name", DataType::Utf8),
            f("missing", DataType::Float64),
        ]));
        let same = RecordBatch::try_new(
            target.clone(),
            vec![
                Arc::new(Int64Array::from(vec![1, 2])),
                Arc::new(StringArray::from(vec!["a", "b"])),
                Arc::new(Float64Array::from(vec![None, Some(1.0)])),
            ],
        )
        .unwrap();
        let out = conform_batch(&same, &target).unwrap();
        assert!(Arc::ptr_eq(out.column(0), same.column(0)));

        let dict: DictionaryArray<Int32Type> = vec!["x", "y", "x"].into_iter().collect();
        let src = RecordBatch::try_new(
            Arc::new(schema(vec![
                f("NAME", dict.data_type().clone()),
                f("ID", DataType::Int8),
            ])),
            vec![Arc::new(dict), Arc::new(Int8Array::from(vec![1, 2, 3]))],
        )
        .unwrap();
        let out = conform_batch(&src, &target).unwrap();
        assert_eq!(out.schema(), target);
        assert_eq!(
            out.column(0)
                .as_primitive::<arrow::datatypes::Int64Type>()
                .values(),
            &[1, 2, 3]
        );
        assert_eq!(out.column(1).as_string::<i32>().value(2), "x");
        assert_eq!(out.column(2).null_count(), 3);
    }

    #[test]
    fn conform_reports_overflow_and_not_null_violations() {
        let target: SchemaRef = Arc::new(schema(vec![Field::new("v", DataType::Int64, false)]));
        let src = RecordBatch::try_new(
            Arc::new(schema(vec![f("v", DataType::UInt64)])),
            vec![Arc::new(UInt64Array::from(vec![1, u64::MAX]))],
        )
        .unwrap();
        let e = conform_batch(&src, &target).unwrap_err();
        assert!(matches!(e, Error::DataViolation(_)), "{e}");
        assert!(e.to_string().contains("`v`"), "{e}");

        let src = RecordBatch::try_new(
            Arc::new(schema(vec![f("v", DataType::Int32)])),
            vec![Arc::new(Int32Array::from(vec![Some(1), None, None]))],
        )
        .unwrap();
        let e = conform_batch(&src, &target).unwrap_err();
        assert_eq!(
            e.to_string(),
            "data violation: column `v` is NOT NULL but 2 rows are null"
        );

        // A missing NOT NULL column is a violation too.
        let src = RecordBatch::try_new(
            Arc::new(schema(vec![f("other", DataType::Int32)])),
            vec![Arc::new(Int32Array::from(vec![1]))],
        )
        .unwrap();
        let wide: SchemaRef = Arc::new(schema(vec![
            Field::new("v", DataType::Int64, false),
            f("other", DataType::Int32),
        ]));
        assert!(matches!(
            conform_batch(&src, &wide),
            Err(Error::DataViolation(_))
        ));
        // Columns the target does not have are refused.
        assert!(matches!(
            conform_batch(&src, &target),
            Err(Error::SchemaMismatch(_))
        ));
    }

    #[test]
    fn conform_nested_by_name() {
        let src_struct = StructArray::from(vec![
            (
                Arc::new(f("B", DataType::Int32)),
                Arc::new(Int32Array::from(vec![1, 2])) as ArrayRef,
            ),
            (
                Arc::new(f("a", DataType::Utf8View)),
                Arc::new(arrow::array::StringViewArray::from(vec!["x", "y"])) as ArrayRef,
            ),
        ]);
        let mut lb = ListBuilder::new(StringBuilder::new());
        lb.append_value([Some("p"), None]);
        lb.append_null();
        let list = lb.finish();
        let src = RecordBatch::try_new(
            Arc::new(schema(vec![
                f("s", src_struct.data_type().clone()),
                f("l", list.data_type().clone()),
            ])),
            vec![Arc::new(src_struct), Arc::new(list)],
        )
        .unwrap();
        let target_struct = DataType::Struct(
            vec![
                f("a", DataType::Utf8),
                f("b", DataType::Int64),
                f("c", DataType::Boolean),
            ]
            .into(),
        );
        let target: SchemaRef = Arc::new(schema(vec![
            f("s", target_struct),
            f("l", DataType::List(Arc::new(f("element", DataType::Utf8)))),
        ]));
        let out = conform_batch(&src, &target).unwrap();
        let s = out.column(0).as_struct();
        assert_eq!(s.column(0).as_string::<i32>().value(1), "y");
        assert_eq!(
            s.column(1)
                .as_primitive::<arrow::datatypes::Int64Type>()
                .value(0),
            1
        );
        assert_eq!(s.column(2).null_count(), 2);
        let l = out.column(1).as_list::<i32>();
        assert_eq!(l.value(0).len(), 2);
        assert!(l.is_null(1));

        // NOT NULL nested field.
        let target: SchemaRef = Arc::new(schema(vec![f(
            "s",
            DataType::Struct(
                vec![
                    f("a", DataType::Utf8),
                    Field::new("z", DataType::Int32, false),
                ]
                .into(),
            ),
        )]));
        let src2 = out.project(&[0]).unwrap();
        let src2 = RecordBatch::try_new(
            Arc::new(schema(vec![f(
                "s",
                DataType::Struct(vec![f("a", DataType::Utf8)].into()),
            )])),
            vec![Arc::new(StructArray::from(vec![(
                Arc::new(f("a", DataType::Utf8)),
                src2.column(0).as_struct().column(0).clone(),
            )]))],
        )
        .unwrap();
        let e = conform_batch(&src2, &target).unwrap_err();
        assert!(e.to_string().contains("`s.z` is NOT NULL"), "{e}");
    }

    #[test]
    fn conform_timestamps() {
        let target: SchemaRef = Arc::new(schema(vec![f(
            "t",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        )]));
        let ns =
            TimestampNanosecondArray::from(vec![1_500_000_000_123_456_789]).with_timezone("+01:00");
        let src = RecordBatch::try_new(
            Arc::new(schema(vec![f("t", ns.data_type().clone())])),
            vec![Arc::new(ns)],
        )
        .unwrap();
        let out = conform_batch(&src, &target).unwrap();
        let t = out
            .column(0)
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>()
            .unwrap();
        assert_eq!(t.value(0), 1_500_000_000_123_456);
    }

    #[test]
    fn constant_arrays_from_partition_values() {
        let c = constant_array(&f("i", DataType::Int32), Some("42"), 3).unwrap();
        assert_eq!(c.as_primitive::<Int32Type>().values(), &[42, 42, 42]);
        let c = constant_array(&f("s", DataType::Utf8), Some("a b"), 2).unwrap();
        assert_eq!(c.as_string::<i32>().value(1), "a b");
        let c = constant_array(&f("s", DataType::Utf8), None, 2).unwrap();
        assert_eq!(c.null_count(), 2);
        let c = constant_array(&f("s", DataType::Int64), Some(""), 2).unwrap();
        assert_eq!(c.logical_null_count(), 2);
        let c = constant_array(&f("b", DataType::Boolean), Some("true"), 1).unwrap();
        assert!(c.as_boolean().value(0));
        let c = constant_array(&f("x", DataType::Float64), Some("Infinity"), 1).unwrap();
        assert_eq!(
            c.as_primitive::<arrow::datatypes::Float64Type>().value(0),
            f64::INFINITY
        );
        let c = constant_array(&f("x", DataType::Float64), Some("NaN"), 1).unwrap();
        assert!(
            c.as_primitive::<arrow::datatypes::Float64Type>()
                .value(0)
                .is_nan()
        );
        let c = constant_array(&f("d", DataType::Date32), Some("2021-01-02"), 1).unwrap();
        let d = c.as_any().downcast_ref::<Date32Array>().unwrap();
        assert_eq!(d.value(0), 18629);
        let c = constant_array(&f("m", DataType::Decimal128(10, 2)), Some("12.34"), 1).unwrap();
        let m = c.as_any().downcast_ref::<Decimal128Array>().unwrap();
        assert_eq!(m.value(0), 1234);
        let c = constant_array(&f("bin", DataType::Binary), Some("ab"), 1).unwrap();
        assert_eq!(c.as_binary::<i32>().value(0), b"ab");

        let utc = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
        let expected = 1_631_099_471_000_000i64 + 123_456;
        for s in [
            "2021-09-08 11:11:11.123456",
            "2021-09-08T11:11:11.123456Z",
            "2021-09-08T13:11:11.123456+02:00",
        ] {
            let c = constant_array(&f("t", utc.clone()), Some(s), 1).unwrap();
            assert_eq!(c.data_type(), &utc);
            let t = c
                .as_any()
                .downcast_ref::<TimestampMicrosecondArray>()
                .unwrap();
            assert_eq!(t.value(0), expected, "{s}");
        }
        let ntz = DataType::Timestamp(TimeUnit::Microsecond, None);
        let c = constant_array(&f("t", ntz.clone()), Some("2021-09-08 11:11:11"), 1).unwrap();
        assert_eq!(c.data_type(), &ntz);
        let t = c
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>()
            .unwrap();
        assert_eq!(t.value(0), 1_631_099_471_000_000);

        let e = constant_array(&f("i", DataType::Int32), Some("abc"), 1).unwrap_err();
        assert!(e.to_string().contains("column `i`"), "{e}");
        assert!(constant_array(&f("i", DataType::Int8), Some("300"), 1).is_err());
    }
}
