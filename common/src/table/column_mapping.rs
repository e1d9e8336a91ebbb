//! Column mapping (Delta's `columnMapping` feature, `name` and `id` modes).
//!
//! A mapped table's columns have logical names (its schema, SQL, every plan silt makes) and
//! physical names (`delta.columnMapping.physicalName` in each field's metadata, with an id
//! in `delta.columnMapping.id`): Parquet files name their columns physically (with the id as
//! the Parquet field id), and the log keys partition values and statistics physically.
//! silt works in logical names throughout and translates at the storage edges only:
//! reading a data file ([`to_logical_batch`]), writing one ([`physical_schema`],
//! [`to_physical_batch`]), loading the log and committing to it ([`stats_json`],
//! [`partition_values`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{ArrayData, ArrayRef, RecordBatch, RecordBatchOptions, make_array};
use arrow::datatypes::{DataType, Field, FieldRef, Fields, Schema, SchemaRef};
use serde_json::Value;

use crate::{Error, Result};

/// Field metadata key of a column's physical name.
pub const PHYSICAL_NAME: &str = "delta.columnMapping.physicalName";
/// Field metadata key of a column's id.
pub const ID: &str = "delta.columnMapping.id";
/// The Arrow field metadata key the Parquet writer takes a field id from.
const PARQUET_FIELD_ID: &str = "PARQUET:field_id";

/// The physical name of a field of a mapped schema (its name when it has none).
pub fn physical_name(f: &Field) -> &str {
    f.metadata()
        .get(PHYSICAL_NAME)
        .map_or(f.name().as_str(), String::as_str)
}

/// The names a table's partition directories are named by: each partition column's
/// physical name in `schema` (as Delta Spark names them under column mapping), or the
/// column's own name where the schema gives none.
pub fn partition_dir_names(columns: &[String], schema: &Schema) -> Vec<String> {
    columns
        .iter()
        .map(|c| {
            schema
                .field_with_name(c)
                .map_or(c.as_str(), physical_name)
                .to_string()
        })
        .collect()
}

/// Whether a table schema (from its Delta schema) maps its columns.
pub fn is_mapped(schema: &Schema) -> bool {
    schema
        .fields()
        .iter()
        .any(|f| f.metadata().contains_key(PHYSICAL_NAME))
}

/// The table property holding the highest column id given so far.
pub const MAX_COLUMN_ID: &str = "delta.columnMapping.maxColumnId";

/// `schema` with a physical name and an id for every field (nested ones too) that has none:
/// ids count up from `max_id`, physical names are `col-<uuid>` (or, `keep_names`, the
/// logical name: a table upgraded to column mapping keeps reading its files). Returns the
/// schema and the highest id given.
pub fn assign(schema: &Schema, max_id: i64, keep_names: bool) -> (Schema, i64) {
    fn field(f: &Field, next: &mut i64, keep: bool) -> Field {
        let mut metadata = f.metadata().clone();
        if !metadata.contains_key(PHYSICAL_NAME) || !metadata.contains_key(ID) {
            *next += 1;
            let physical = if keep {
                f.name().clone()
            } else {
                format!("col-{}", uuid::Uuid::new_v4())
            };
            metadata.insert(PHYSICAL_NAME.to_string(), physical);
            metadata.insert(ID.to_string(), next.to_string());
        }
        Field::new(
            f.name(),
            data_type(f.data_type(), next, keep),
            f.is_nullable(),
        )
        .with_metadata(metadata)
    }
    fn inner(f: &Field, next: &mut i64, keep: bool) -> Field {
        Field::new(
            f.name(),
            data_type(f.data_type(), next, keep),
            f.is_nullable(),
        )
        .with_metadata(f.metadata().clone())
    }
    fn data_type(t: &DataType, next: &mut i64, keep: bool) -> DataType {
        match t {
            DataType::Struct(fields) => DataType::Struct(
                fields
                    .iter()
                    .map(|f| field(f, next, keep))
                    .collect::<Vec<_>>()
                    .into(),
            ),
            DataType::List(e) => DataType::List(Arc::new(inner(e, next, keep))),
            DataType::LargeList(e) => DataType::LargeList(Arc::new(inner(e, next, keep))),
            // The entries' key and value are not columns: only structs inside them are.
            DataType::Map(e, sorted) => {
                let entries = match e.data_type() {
                    DataType::Struct(kv) => Field::new(
                        e.name(),
                        DataType::Struct(
                            kv.iter()
                                .map(|f| inner(f, next, keep))
                                .collect::<Vec<_>>()
                                .into(),
                        ),
                        e.is_nullable(),
                    ),
                    _ => e.as_ref().clone(),
                };
                DataType::Map(Arc::new(entries), *sorted)
            }
            other => other.clone(),
        }
    }
    let mut next = max_id;
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| field(f, &mut next, keep_names))
        .collect();
    (
        Schema::new_with_metadata(fields, schema.metadata().clone()),
        next,
    )
}

/// `schema` (a mapped table's columns after a schema change) with the physical names and
/// ids `table` (its schema before) gives the columns it has, nested ones too, matched by
/// name; new columns are left for [`assign`].
pub fn carry_over(table: &Schema, schema: &Schema) -> Schema {
    fn field(f: &Field, old: Option<&Field>) -> Field {
        let mut metadata = f.metadata().clone();
        metadata.remove(PHYSICAL_NAME);
        metadata.remove(ID);
        if let Some(old) = old {
            for key in [PHYSICAL_NAME, ID] {
                if let Some(v) = old.metadata().get(key) {
                    metadata.insert(key.to_string(), v.clone());
                }
            }
        }
        Field::new(
            f.name(),
            data_type(f.data_type(), old.map(|o| o.data_type())),
            f.is_nullable(),
        )
        .with_metadata(metadata)
    }
    fn data_type(t: &DataType, old: Option<&DataType>) -> DataType {
        match t {
            DataType::Struct(fields) => {
                let old_fields = match old {
                    Some(DataType::Struct(o)) => Some(o),
                    _ => None,
                };
                DataType::Struct(
                    fields
                        .iter()
                        .map(|f| {
                            let o = old_fields
                                .and_then(|o| o.iter().find(|x| x.name() == f.name()))
                                .map(|x| x.as_ref());
                            field(f, o)
                        })
                        .collect::<Vec<_>>()
                        .into(),
                )
            }
            DataType::List(e) => DataType::List(Arc::new(inner(e, old))),
            DataType::LargeList(e) => DataType::LargeList(Arc::new(inner(e, old))),
            DataType::Map(e, sorted) => DataType::Map(Arc::new(inner(e, old)), *sorted),
            other => other.clone(),
        }
    }
    fn inner(e: &Field, old: Option<&DataType>) -> Field {
        let old_inner = match old {
            Some(DataType::List(o) | DataType::LargeList(o) | DataType::Map(o, _)) => {
                Some(o.data_type())
            }
            _ => None,
        };
        Field::new(
            e.name(),
            data_type(e.data_type(), old_inner),
            e.is_nullable(),
        )
        .with_metadata(e.metadata().clone())
    }
    Schema::new_with_metadata(
        schema
            .fields()
            .iter()
            .map(|f| {
                let old = table.fields().iter().find(|o| o.name() == f.name());
                field(f, old.map(|o| o.as_ref()))
            })
            .collect::<Vec<_>>(),
        schema.metadata().clone(),
    )
}

/// The `delta.columnMapping.mode` a table configuration names (`name` or `id`), if any.
pub fn mode<'a>(
    configuration: impl IntoIterator<Item = (&'a String, &'a String)>,
) -> Option<String> {
    configuration
        .into_iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("delta.columnMapping.mode"))
        .map(|(_, v)| v.trim().to_ascii_lowercase())
        .filter(|m| m != "none")
}

/// Which way names are translated.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Direction {
    ToLogical,
    ToPhysical,
}

/// The field of `fields` a name in `from`-space names: its logical name (to physical) or its
/// physical name (to logical).
fn counterpart<'a>(fields: &'a Fields, name: &str, dir: Direction) -> Option<&'a FieldRef> {
    fields.iter().find(|f| match dir {
        Direction::ToPhysical => f.name() == name,
        Direction::ToLogical => physical_name(f) == name,
    })
}

/// `f` (a logical field) named physically, with its id as the Parquet field id, nested
/// fields too.
pub fn physical_field(f: &Field) -> Field {
    let mut metadata = std::collections::HashMap::new();
    if let Some(id) = f.metadata().get(ID) {
        metadata.insert(PARQUET_FIELD_ID.to_string(), id.clone());
    }
    Field::new(
        physical_name(f),
        physical_type(f.data_type()),
        f.is_nullable(),
    )
    .with_metadata(metadata)
}

fn physical_type(t: &DataType) -> DataType {
    match t {
        DataType::Struct(fields) => DataType::Struct(
            fields
                .iter()
                .map(|f| physical_field(f))
                .collect::<Vec<_>>()
                .into(),
        ),
        DataType::List(e) => DataType::List(Arc::new(inner_physical(e))),
        DataType::LargeList(e) => DataType::LargeList(Arc::new(inner_physical(e))),
        DataType::Map(e, sorted) => DataType::Map(Arc::new(inner_physical(e)), *sorted),
        other => other.clone(),
    }
}

/// A list element or map entries field: not a mapped column itself, its type may hold some.
fn inner_physical(f: &Field) -> Field {
    Field::new(f.name(), physical_type(f.data_type()), f.is_nullable())
}

/// The schema Parquet files of a table with `schema` (logical) have.
pub fn physical_schema(schema: &Schema) -> Schema {
    Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| physical_field(f))
            .collect::<Vec<_>>(),
    )
}

/// `batch` (logical columns, as `schema` has them) with the physical schema of a data file.
pub fn to_physical_batch(batch: &RecordBatch, physical: &SchemaRef) -> Result<RecordBatch> {
    let columns = batch
        .columns()
        .iter()
        .zip(physical.fields())
        .map(|(c, f)| retype(c, f.data_type()))
        .collect::<Result<Vec<_>>>()?;
    let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    Ok(RecordBatch::try_new_with_options(
        physical.clone(),
        columns,
        &options,
    )?)
}

/// A batch read from a data file of a mapped table (physical names, nested ones too) with
/// the logical names of `logical` (the table's columns); columns the schema does not know
/// keep their names (the caller's conform step leaves them out).
pub fn to_logical_batch(batch: &RecordBatch, logical: &Schema) -> Result<RecordBatch> {
    let mut fields = Vec::with_capacity(batch.num_columns());
    let mut columns = Vec::with_capacity(batch.num_columns());
    for (f, c) in batch.schema().fields().iter().zip(batch.columns()) {
        let field = match counterpart(logical.fields(), f.name(), Direction::ToLogical) {
            Some(l) => Field::new(
                l.name(),
                logical_type(f.data_type(), l.data_type()),
                f.is_nullable(),
            ),
            None => f.as_ref().clone(),
        };
        columns.push(retype(c, field.data_type())?);
        fields.push(field);
    }
    let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    Ok(RecordBatch::try_new_with_options(
        Arc::new(Schema::new(fields)),
        columns,
        &options,
    )?)
}

/// A file's type (physical names) with the logical names of `logical`, matched by name.
fn logical_type(file: &DataType, logical: &DataType) -> DataType {
    match (file, logical) {
        (DataType::Struct(ff), DataType::Struct(lf)) => DataType::Struct(
            ff.iter()
                .map(|f| match counterpart(lf, f.name(), Direction::ToLogical) {
                    Some(l) => Field::new(
                        l.name(),
                        logical_type(f.data_type(), l.data_type()),
                        f.is_nullable(),
                    ),
                    None => f.as_ref().clone(),
                })
                .collect::<Vec<_>>()
                .into(),
        ),
        (DataType::List(fe), DataType::List(le) | DataType::LargeList(le)) => {
            DataType::List(Arc::new(inner_logical(fe, le)))
        }
        (DataType::LargeList(fe), DataType::List(le) | DataType::LargeList(le)) => {
            DataType::LargeList(Arc::new(inner_logical(fe, le)))
        }
        (DataType::Map(fe, sorted), DataType::Map(le, _)) => {
            DataType::Map(Arc::new(inner_logical(fe, le)), *sorted)
        }
        _ => file.clone(),
    }
}

fn inner_logical(file: &Field, logical: &Field) -> Field {
    Field::new(
        file.name(),
        logical_type(file.data_type(), logical.data_type()),
        file.is_nullable(),
    )
}

/// `array` with type `target`: the same data, nested fields renamed (positionally).
fn retype(array: &ArrayRef, target: &DataType) -> Result<ArrayRef> {
    if array.data_type() == target {
        return Ok(array.clone());
    }
    Ok(make_array(retype_data(array.to_data(), target)?))
}

fn retype_data(data: ArrayData, target: &DataType) -> Result<ArrayData> {
    let child_types: Vec<DataType> = match target {
        DataType::Struct(fields) => fields.iter().map(|f| f.data_type().clone()).collect(),
        DataType::List(e) | DataType::LargeList(e) | DataType::Map(e, _) => {
            vec![e.data_type().clone()]
        }
        _ => return Ok(data),
    };
    if child_types.len() != data.child_data().len() {
        return Err(Error::internal(format!(
            "cannot rename the fields of a {} as {target}",
            data.data_type()
        )));
    }
    let children = data
        .child_data()
        .iter()
        .zip(&child_types)
        .map(|(c, t)| retype_data(c.clone(), t))
        .collect::<Result<Vec<_>>>()?;
    Ok(data
        .into_builder()
        .data_type(target.clone())
        .child_data(children)
        .build()?)
}

/// Partition values keyed by `dir`'s names (logical ⇄ physical) for a table with `schema`;
/// keys the schema does not know stay.
pub fn partition_values<V: Clone>(
    values: &BTreeMap<String, V>,
    schema: &Schema,
    dir: Direction,
) -> BTreeMap<String, V> {
    values
        .iter()
        .map(|(k, v)| {
            let key = match counterpart(schema.fields(), k, dir) {
                Some(f) => match dir {
                    Direction::ToLogical => f.name().clone(),
                    Direction::ToPhysical => physical_name(f).to_string(),
                },
                None => k.clone(),
            };
            (key, v.clone())
        })
        .collect()
}

/// A file's statistics JSON (`numRecords`, `minValues`, `maxValues`, `nullCount`) with its
/// column keys translated, nested columns too; a JSON that does not parse is returned as is.
pub fn stats_json(stats: &str, schema: &Schema, dir: Direction) -> String {
    let Ok(mut v) = serde_json::from_str::<Value>(stats) else {
        return stats.to_string();
    };
    if let Value::Object(map) = &mut v {
        for key in ["minValues", "maxValues", "nullCount"] {
            if let Some(values) = map.get_mut(key) {
                rename_keys(values, schema.fields(), dir);
            }
        }
    }
    v.to_string()
}

fn rename_keys(v: &mut Value, fields: &Fields, dir: Direction) {
    let Value::Object(map) = v else { return };
    let old = std::mem::take(map);
    for (k, mut child) in old {
        let key = match counterpart(fields, &k, dir) {
            Some(f) => {
                if let DataType::Struct(inner) = f.data_type() {
                    rename_keys(&mut child, inner, dir);
                }
                match dir {
                    Direction::ToLogical => f.name().clone(),
                    Direction::ToPhysical => physical_name(f).to_string(),
                }
            }
            None => k,
        };
        map.insert(key, child);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, Int64Array, StringArray, StructArray};

    fn mapped(name: &str, physical: &str, id: i64, t: DataType) -> Field {
        Field::new(name, t, true).with_metadata(
            [
                (PHYSICAL_NAME.to_string(), physical.to_string()),
                (ID.to_string(), id.to_string()),
            ]
            .into(),
        )
    }

    fn schema() -> Schema {
        let inner = mapped("b", "col-b", 3, DataType::Utf8);
        Schema::new(vec![
            mapped("a", "col-a", 1, DataType::Int64),
            mapped("s", "col-s", 2, DataType::Struct(vec![inner].into())),
        ])
    }

    #[test]
    fn batches_round_trip_through_physical_names() {
        let logical = Arc::new(schema());
        let s = StructArray::from(vec![(
            Arc::new(Field::new("b", DataType::Utf8, true)),
            Arc::new(StringArray::from(vec![Some("x"), None])) as ArrayRef,
        )]);
        let batch = RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("a", DataType::Int64, true),
                Field::new("s", s.data_type().clone(), true),
            ])),
            vec![Arc::new(Int64Array::from(vec![1, 2])), Arc::new(s)],
        )
        .unwrap();
        let physical = Arc::new(physical_schema(&logical));
        let written = to_physical_batch(&batch, &physical).unwrap();
        assert_eq!(written.schema().field(0).name(), "col-a");
        assert_eq!(
            written.schema().field(0).metadata().get(PARQUET_FIELD_ID),
            Some(&"1".to_string())
        );
        let DataType::Struct(inner) = written.schema().field(1).data_type().clone() else {
            panic!("struct")
        };
        assert_eq!(inner[0].name(), "col-b");
        let read = to_logical_batch(&written, &logical).unwrap();
        assert_eq!(read.schema().field(0).name(), "a");
        let DataType::Struct(inner) = read.schema().field(1).data_type().clone() else {
            panic!("struct")
        };
        assert_eq!(inner[0].name(), "b");
        assert_eq!(read.column(0).as_ref(), batch.column(0).as_ref());
    }

    #[test]
    fn carry_over_keeps_nested_physical_names() {
        let table = schema();
        // As a schema merge gives it back: nested metadata lost, a new nested field.
        let plain = Schema::new(vec![
            Field::new("a", DataType::Int64, true),
            Field::new(
                "s",
                DataType::Struct(
                    vec![
                        Field::new("b", DataType::Utf8, true),
                        Field::new("c", DataType::Utf8, true),
                    ]
                    .into(),
                ),
                true,
            ),
        ]);
        let (assigned, max) = assign(&carry_over(&table, &plain), 3, false);
        assert_eq!(max, 4, "only s.c is new");
        let DataType::Struct(inner) = assigned.field(1).data_type().clone() else {
            panic!("struct")
        };
        assert_eq!(physical_name(&inner[0]), "col-b");
        assert_eq!(inner[1].metadata().get(ID), Some(&"4".to_string()));
        assert_eq!(physical_name(assigned.field(1)), "col-s");
    }

    #[test]
    fn assign_gives_new_fields_ids_above_the_maximum() {
        let existing = schema();
        let mut fields: Vec<Field> = existing
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields.push(Field::new(
            "n",
            DataType::Struct(vec![Field::new("x", DataType::Int64, true)].into()),
            true,
        ));
        let (assigned, max) = assign(&Schema::new(fields), 3, false);
        assert_eq!(max, 5, "n and n.x");
        assert_eq!(physical_name(assigned.field(0)), "col-a", "kept");
        let n = assigned.field(2);
        assert_eq!(n.metadata().get(ID), Some(&"4".to_string()));
        assert!(physical_name(n).starts_with("col-"));
        let DataType::Struct(inner) = n.data_type() else {
            panic!("struct")
        };
        assert_eq!(inner[0].metadata().get(ID), Some(&"5".to_string()));
        // A map's key and value are not columns; a struct inside the value has them.
        let entries = Field::new(
            "key_value",
            DataType::Struct(
                vec![
                    Field::new("key", DataType::Utf8, false),
                    Field::new(
                        "value",
                        DataType::Struct(vec![Field::new("v", DataType::Int64, true)].into()),
                        true,
                    ),
                ]
                .into(),
            ),
            false,
        );
        let m = Schema::new(vec![Field::new(
            "m",
            DataType::Map(Arc::new(entries), false),
            true,
        )]);
        assert_eq!(assign(&m, 0, false).1, 2, "m and m.value.v");
        let (kept, _) = assign(
            &Schema::new(vec![Field::new("p q", DataType::Utf8, true)]),
            0,
            true,
        );
        assert_eq!(physical_name(kept.field(0)), "p q");
    }

    #[test]
    fn stats_and_partition_values_translate_both_ways() {
        let s = schema();
        let physical = r#"{"numRecords":2,"minValues":{"col-a":1,"col-s":{"col-b":"x"}},"nullCount":{"col-a":0}}"#;
        let logical = stats_json(physical, &s, Direction::ToLogical);
        let v: Value = serde_json::from_str(&logical).unwrap();
        assert_eq!(v["minValues"]["s"]["b"], "x");
        assert_eq!(v["nullCount"]["a"], 0);
        assert_eq!(v["numRecords"], 2);
        let back: Value =
            serde_json::from_str(&stats_json(&logical, &s, Direction::ToPhysical)).unwrap();
        assert_eq!(back, serde_json::from_str::<Value>(physical).unwrap());
        let pv = BTreeMap::from([("col-a".to_string(), Some("1".to_string()))]);
        let l = partition_values(&pv, &s, Direction::ToLogical);
        assert_eq!(l.get("a"), Some(&Some("1".to_string())));
        assert_eq!(partition_values(&l, &s, Direction::ToPhysical), pv);
    }
}
