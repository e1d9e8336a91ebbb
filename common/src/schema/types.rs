//! Normalizing Arrow schemas to what Delta stores, and Delta `StructType` JSON.

use super::*;

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

pub(super) fn normalize_field(field: &Field, path: &str) -> Result<Field> {
    let data_type = normalize_type(field.data_type(), path)?;
    let mut metadata = field.metadata().clone();
    metadata.remove(PARQUET_FIELD_ID_KEY);
    Ok(Field::new(field.name(), data_type, field.is_nullable()).with_metadata(metadata))
}

pub(super) fn normalize_type(dt: &DataType, path: &str) -> Result<DataType> {
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
pub(super) fn map_children<'a>(
    entries: &'a FieldRef,
    path: &str,
) -> Result<(&'a FieldRef, &'a FieldRef)> {
    match entries.data_type() {
        DataType::Struct(kv) if kv.len() == 2 => Ok((&kv[0], &kv[1])),
        other => Err(Error::SchemaMismatch(format!(
            "column `{path}` is a map whose entries are {other}, not a key/value struct"
        ))),
    }
}

/// A Delta-shaped Arrow map type (`key_value` entries, non-null keys, unsorted).
pub(super) fn map_type(key: DataType, value: DataType, value_nullable: bool) -> DataType {
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

/// The Delta `StructType` JSON (as in `metaData.schemaString`) of an Arrow schema.
///
/// The schema is normalized first (see [`normalize_arrow_schema`]); `Timestamp(us, "UTC")`
/// becomes `timestamp`, `Timestamp(us, None)` becomes `timestamp_ntz`.
pub fn arrow_to_delta_json(schema: &Schema) -> Result<String> {
    let normalized = normalize_arrow_schema(schema)?;
    let delta: StructType = (&normalized)
        .try_into_kernel()
        .map_err(|e| Error::SchemaMismatch(format!("cannot convert to a Delta schema: {e}")))?;
    let mut json = serde_json::to_value(&delta)
        .map_err(|e| Error::internal(format!("cannot serialize Delta schema: {e}")))?;
    restore_typed_metadata(&mut json);
    structs_as_variants(&mut json);
    serde_json::to_string(&json)
        .map_err(|e| Error::internal(format!("cannot serialize Delta schema: {e}")))
}

/// Column metadata keys whose values the protocol types as JSON numbers, booleans or arrays
/// (Arrow field metadata holds every value as a string).
const TYPED_METADATA: &[&str] = &[
    "delta.typeChanges",
    "delta.columnMapping.id",
    "delta.identity.start",
    "delta.identity.step",
    "delta.identity.highWaterMark",
    "delta.identity.allowExplicitInsert",
];

/// Gives the typed metadata values of every field of a Delta schema JSON (nested fields
/// included) their JSON types back: `"[{…}]"` becomes the array, `"5"` the number.
fn restore_typed_metadata(v: &mut serde_json::Value) {
    use serde_json::Value;
    match v {
        Value::Object(map) => {
            if let Some(Value::Object(meta)) = map.get_mut("metadata") {
                for key in TYPED_METADATA {
                    if let Some(value) = meta.get_mut(*key)
                        && let Value::String(s) = value
                        && let Ok(parsed) = serde_json::from_str::<Value>(s)
                        && !parsed.is_string()
                    {
                        *value = parsed;
                    }
                }
            }
            for (k, child) in map.iter_mut() {
                if k != "metadata" {
                    restore_typed_metadata(child);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(restore_typed_metadata),
        _ => {}
    }
}

/// The Arrow schema of a Delta `StructType` JSON (`metaData.schemaString`).
///
/// `timestamp` becomes `Timestamp(us, "UTC")`, `timestamp_ntz` `Timestamp(us, None)`,
/// `decimal(p,s)` `Decimal128(p, s)`, arrays `List` with an `element` field, maps `Map` with
/// `key_value` entries.
pub fn delta_json_to_arrow(json: &str) -> Result<SchemaRef> {
    let delta: StructType = if json.contains("\"variant\"") {
        let mut v: serde_json::Value = serde_json::from_str(json)
            .map_err(|e| Error::invalid(format!("invalid Delta schema JSON: {e}")))?;
        variants_as_structs(&mut v);
        serde_json::from_value(v)
    } else {
        serde_json::from_str(json)
    }
    .map_err(|e| Error::invalid(format!("invalid Delta schema JSON: {e}")))?;
    let schema: Schema = (&delta)
        .try_into_arrow()
        .map_err(|e| Error::invalid(format!("cannot convert Delta schema to Arrow: {e}")))?;
    Ok(Arc::new(schema))
}

/// `schema` without the Delta column metadata (`delta.*` keys: identity, generation
/// expressions, invariants, type changes), at any depth, except a column's physical name and
/// id (the source's files are read by them; see [`without_column_mapping`]); other keys
/// (such as comments) stay.
pub fn without_delta_metadata(schema: &Schema) -> Schema {
    without_metadata(schema, &|k| {
        k.starts_with("delta.") && !k.starts_with("delta.columnMapping.")
    })
}

/// `schema` without column mapping metadata (physical names and ids), at any depth: the
/// schema of a table that does not map its columns.
pub fn without_column_mapping(schema: &Schema) -> Schema {
    without_metadata(schema, &|k| k.starts_with("delta.columnMapping."))
}

fn without_metadata(schema: &Schema, drop: &dyn Fn(&str) -> bool) -> Schema {
    fn field(f: &Field, drop: &dyn Fn(&str) -> bool) -> Field {
        let metadata = f
            .metadata()
            .iter()
            .filter(|(k, _)| !drop(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Field::new(f.name(), data_type(f.data_type(), drop), f.is_nullable())
            .with_metadata(metadata)
    }
    fn data_type(dt: &DataType, drop: &dyn Fn(&str) -> bool) -> DataType {
        match dt {
            DataType::Struct(fields) => DataType::Struct(
                fields
                    .iter()
                    .map(|f| field(f, drop))
                    .collect::<Vec<_>>()
                    .into(),
            ),
            DataType::List(f) => DataType::List(Arc::new(field(f, drop))),
            DataType::Map(f, sorted) => DataType::Map(Arc::new(field(f, drop)), *sorted),
            other => other.clone(),
        }
    }
    Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| field(f, drop))
            .collect::<Vec<_>>(),
    )
}

/// Metadata key marking the two fields (`metadata`, `value`: binary) of the struct an
/// unshredded variant is stored as: Arrow has no variant type, so silt carries a variant
/// column as that struct and gives it its `variant` type back in the Delta schema it writes.
pub const VARIANT_MARK: &str = "silt.variant";

/// A Delta type (schema JSON) with every `variant` in it, at any depth, as the marked struct.
fn variants_as_structs(t: &mut serde_json::Value) {
    use serde_json::{Value, json};
    match t {
        Value::String(s) if s == "variant" => {
            let part = |name: &str| json!({"name": name, "type": "binary", "nullable": false, "metadata": {VARIANT_MARK: "true"}});
            *t = json!({"type": "struct", "fields": [part("metadata"), part("value")]});
        }
        Value::Object(o) => {
            for key in ["type", "elementType", "keyType", "valueType"] {
                if let Some(inner) = o.get_mut(key) {
                    variants_as_structs(inner);
                }
            }
            if let Some(Value::Array(fields)) = o.get_mut("fields") {
                fields.iter_mut().for_each(variants_as_structs);
            }
        }
        _ => {}
    }
}

/// The reverse of [`variants_as_structs`]: every marked struct, at any depth, `variant`.
fn structs_as_variants(t: &mut serde_json::Value) {
    use serde_json::Value;
    let marked = |o: &serde_json::Map<String, Value>| {
        o.get("type") == Some(&Value::from("struct"))
            && o.get("fields").and_then(Value::as_array).is_some_and(|fs| {
                fs.len() == 2 && fs.iter().all(|f| f["metadata"].get(VARIANT_MARK).is_some())
            })
    };
    match t {
        Value::Object(o) if marked(o) => *t = Value::from("variant"),
        Value::Object(o) => {
            for key in ["type", "elementType", "keyType", "valueType"] {
                if let Some(inner) = o.get_mut(key) {
                    structs_as_variants(inner);
                }
            }
            if let Some(Value::Array(fields)) = o.get_mut("fields") {
                fields.iter_mut().for_each(structs_as_variants);
            }
        }
        _ => {}
    }
}

/// Whether any column (at any depth) of an Arrow schema is a variant ([`VARIANT_MARK`]).
pub fn uses_variant(schema: &Schema) -> bool {
    fn in_type(dt: &DataType) -> bool {
        match dt {
            DataType::Struct(fields) => fields
                .iter()
                .any(|f| f.metadata().contains_key(VARIANT_MARK) || in_type(f.data_type())),
            DataType::List(f)
            | DataType::LargeList(f)
            | DataType::ListView(f)
            | DataType::LargeListView(f)
            | DataType::FixedSizeList(f, _)
            | DataType::Map(f, _) => in_type(f.data_type()),
            _ => false,
        }
    }
    schema.fields().iter().any(|f| in_type(f.data_type()))
}

/// Whether any column (at any depth) is a timestamp without time zone (Delta
/// `timestamp_ntz`, which needs the `timestampNtz` table feature).
pub fn uses_timestamp_ntz(schema: &Schema) -> bool {
    schema.fields().iter().any(|f| type_uses_ntz(f.data_type()))
}

pub(super) fn type_uses_ntz(dt: &DataType) -> bool {
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

/// The schema's column names, comma separated, for error messages.
pub fn column_list(schema: &Schema) -> String {
    schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod variant_tests {
    use super::*;

    #[test]
    fn variants_travel_as_marked_structs_and_come_back() {
        let json = r#"{"type":"struct","fields":[{"name":"id","type":"long","nullable":true,"metadata":{}},{"name":"v","type":"variant","nullable":true,"metadata":{}},{"name":"a","type":{"type":"array","elementType":"variant","containsNull":true},"nullable":true,"metadata":{}},{"name":"m","type":{"type":"map","keyType":"string","valueType":"variant","valueContainsNull":true},"nullable":true,"metadata":{}}]}"#;
        let arrow = delta_json_to_arrow(json).unwrap();
        assert!(uses_variant(&arrow));
        let DataType::Struct(parts) = arrow.field(1).data_type() else {
            panic!("{:?}", arrow.field(1))
        };
        assert_eq!(parts[0].name(), "metadata");
        assert_eq!(parts[1].data_type(), &DataType::Binary);
        let back: serde_json::Value =
            serde_json::from_str(&arrow_to_delta_json(&arrow).unwrap()).unwrap();
        let original: serde_json::Value = serde_json::from_str(json).unwrap();
        assert_eq!(back["fields"][1]["type"], "variant");
        assert_eq!(back["fields"][2]["type"], original["fields"][2]["type"]);
        assert_eq!(back["fields"][3]["type"]["valueType"], "variant");
        let plain = r#"{"type":"struct","fields":[{"name":"id","type":"long","nullable":true,"metadata":{}}]}"#;
        assert!(!uses_variant(&delta_json_to_arrow(plain).unwrap()));
    }
}
