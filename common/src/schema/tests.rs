use super::*;
use arrow::array::{
    AsArray, Date32Array, Decimal128Array, DictionaryArray, Int8Array, Int32Array, Int64Array,
    ListBuilder, StringBuilder, TimestampMicrosecondArray, TimestampNanosecondArray, UInt64Array,
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

#[test]
fn typed_column_metadata_keeps_its_json_types() {
    // As a table with type widening and an identity column has it (delta-kernel-rs
    // type-widening, Delta Spark identity columns).
    let json = r#"{"type":"struct","fields":[
        {"name":"a","type":"long","nullable":true,"metadata":{"delta.typeChanges":[{"fromType":"byte","toType":"long"}],"comment":"x"}},
        {"name":"s","type":{"type":"struct","fields":[{"name":"i","type":"long","nullable":true,"metadata":{"delta.identity.start":1,"delta.identity.allowExplicitInsert":false,"delta.invariants":"{\"expression\":{\"expression\":\"i > 0\"}}"}}]},"nullable":true,"metadata":{}}]}"#;
    let back = arrow_to_delta_json(&delta_json_to_arrow(json).unwrap()).unwrap();
    let v: serde_json::Value = serde_json::from_str(&back).unwrap();
    let a = &v["fields"][0]["metadata"];
    assert!(a["delta.typeChanges"].is_array(), "{back}");
    assert_eq!(a["comment"], "x");
    let i = &v["fields"][1]["type"]["fields"][0]["metadata"];
    assert_eq!(i["delta.identity.start"], 1, "{back}");
    assert_eq!(i["delta.identity.allowExplicitInsert"], false, "{back}");
    assert!(
        i["delta.invariants"].is_string(),
        "invariants stay a string: {back}"
    );
}

/// Conforming that keeps narrowed decimals keeps a column already in its target type's
/// narrow type (the field says so, its nullability the target's), casts any other (a
/// narrow decimal of another precision is widened), and still refuses nulls in a NOT NULL
/// column.
#[test]
fn conform_keeping_narrowed_keeps_only_the_target_types_narrow_form() {
    use arrow::array::{Decimal32Array, Decimal64Array};
    let target = Arc::new(schema(vec![
        Field::new("a", DataType::Decimal128(7, 2), false),
        f("b", DataType::Decimal128(12, 2)),
        f("c", DataType::Decimal128(15, 3)),
    ]));
    let a: ArrayRef = Arc::new(
        Decimal32Array::from(vec![1, -2, 9_999_999])
            .with_precision_and_scale(7, 2)
            .unwrap(),
    );
    let b: ArrayRef = Arc::new(
        Decimal32Array::from(vec![Some(5), None, Some(-7)])
            .with_precision_and_scale(7, 2)
            .unwrap(),
    );
    let c: ArrayRef = Arc::new(
        Decimal64Array::from(vec![Some(10), Some(20), None])
            .with_precision_and_scale(15, 3)
            .unwrap(),
    );
    let batch = RecordBatch::try_new(
        Arc::new(schema(vec![
            Field::new("A", a.data_type().clone(), false),
            f("b", b.data_type().clone()),
            f("c", c.data_type().clone()),
        ])),
        vec![a.clone(), b, c.clone()],
    )
    .unwrap();
    let out = conform_batch_keeping_narrowed(&batch, &target).unwrap();
    let out_schema = out.schema();
    let types: Vec<(&str, &DataType, bool)> = out_schema
        .fields()
        .iter()
        .map(|f| (f.name().as_str(), f.data_type(), f.is_nullable()))
        .collect();
    assert_eq!(
        types,
        vec![
            ("a", &DataType::Decimal32(7, 2), false),
            ("b", &DataType::Decimal128(12, 2), true),
            ("c", &DataType::Decimal64(15, 3), true),
        ]
    );
    assert_eq!(out.column(0), &a, "kept as it is");
    assert_eq!(out.column(2), &c, "kept as it is");
    assert_eq!(
        out.column(1)
            .as_primitive::<arrow::datatypes::Decimal128Type>(),
        &Decimal128Array::from(vec![Some(5), None, Some(-7)])
            .with_precision_and_scale(12, 2)
            .unwrap()
    );
    // The plain conform widens all of them.
    let wide = conform_batch(&batch, &target).unwrap();
    assert_eq!(wide.schema().fields(), target.fields());

    let nulls: ArrayRef = Arc::new(
        Decimal32Array::from(vec![Some(1), None, Some(3)])
            .with_precision_and_scale(7, 2)
            .unwrap(),
    );
    let bad = RecordBatch::try_new(
        Arc::new(schema(vec![f("a", nulls.data_type().clone())])),
        vec![nulls],
    )
    .unwrap();
    let one = Arc::new(schema(vec![target.field(0).clone()]));
    let e = err_msg(conform_batch_keeping_narrowed(&bad, &one));
    assert!(e.contains("NOT NULL"), "{e}");
}
