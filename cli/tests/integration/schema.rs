//! Schema enforcement, mergeSchema and overwriteSchema.

use serde_json::Value;

use crate::support::*;

fn field_names(info: &Value) -> Vec<String> {
    info["schema"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap().to_string())
        .collect()
}

fn field_type(info: &Value, name: &str) -> Value {
    info["schema"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == name)
        .map(|f| f["type"].clone())
        .unwrap_or(Value::Null)
}

#[test]
fn schema_enforcement_rejects_extra_column_and_type_mismatch() {
    let seed = seed_for("schema_enforcement_rejects_extra_column_and_type_mismatch");
    let dir = tempdir("schema-enf");
    let a = Gen::new(seed, 200).write(&dir.path().join("a"));
    let extra = Gen::new(seed + 1, 50)
        .variant("extra_col")
        .id_start(1000)
        .write(&dir.path().join("extra"));
    let bad = Gen::new(seed + 2, 50)
        .variant("badtype")
        .id_start(2000)
        .write(&dir.path().join("bad"));
    let t = dir.path().join("t");
    assert_eq!(silt_write_ok(&t, &a, &[]), Some(0));
    let before = listing_with_dirs(&t);

    // A source column the table does not have.
    let out = silt_write(&t, &extra, &[]);
    out.assert_error(&["new_col"]);
    assert_same_listing(&before, &listing_with_dirs(&t), "extra source column");

    // A column whose type does not fit (k: integer in the table, string in the source).
    let out = silt_write(&t, &bad, &[]);
    let line = out.assert_error(&["`k`", "string"]);
    assert!(
        line.to_lowercase().contains("int"),
        "the error should name the table type of k (integer): {line}"
    );
    assert_same_listing(&before, &listing_with_dirs(&t), "type mismatch");

    // Also for overwrite (without overwriteSchema).
    let out = silt_write(&t, &bad, &["--mode", "overwrite"]);
    out.assert_error(&["`k`", "string"]);
    assert_same_listing(
        &before,
        &listing_with_dirs(&t),
        "type mismatch on overwrite",
    );
}

#[test]
fn missing_nullable_column_is_filled_with_nulls() {
    let seed = seed_for("missing_nullable_column_is_filled_with_nulls");
    let dir = tempdir("narrow");
    let a = Gen::new(seed, 200).write(&dir.path().join("a"));
    let n = Gen::new(seed + 1, 100)
        .variant("narrow")
        .id_start(1000)
        .write(&dir.path().join("n"));
    let t = dir.path().join("t");
    let e = dir.path().join("e");
    assert_eq!(silt_write_ok(&t, &a, &[]), Some(0));
    assert_eq!(silt_write_ok(&t, &n, &[]), Some(1));
    oracle_write(&e, &a, "parquet", &[]);
    oracle_write(&e, &n, "parquet", &["--schema-mode", "merge"]);
    assert_same_content(&t, &[Expected::Table(&e)], &[]);
    let info = inspect(&t);
    assert_eq!(
        field_names(&info),
        ["id", "k", "s", "d", "ts", "amount", "f", "flag"],
        "schema unchanged"
    );
}

#[test]
fn merge_schema_appends_new_columns() {
    let seed = seed_for("merge_schema_appends_new_columns");
    let dir = tempdir("merge-schema");
    let a = Gen::new(seed, 300).files(2).write(&dir.path().join("a"));
    let x = Gen::new(seed + 1, 150)
        .variant("extra_col")
        .id_start(1000)
        .write(&dir.path().join("x"));
    let t = dir.path().join("t");
    let e = dir.path().join("e");

    assert_eq!(silt_write_ok(&t, &a, &["--partition-by", "k"]), Some(0));
    assert_eq!(silt_write_ok(&t, &x, &["--merge-schema"]), Some(1));
    oracle_write(&e, &a, "parquet", &["--partition-by", "k"]);
    oracle_write(&e, &x, "parquet", &["--schema-mode", "merge"]);
    assert_same_content(&t, &[Expected::Table(&e)], &[]);

    let info = inspect(&t);
    assert_eq!(
        field_names(&info),
        ["id", "k", "s", "d", "ts", "amount", "f", "flag", "new_col"],
        "new column appended at the end"
    );
    assert_eq!(field_type(&info, "new_col"), "long");
    assert_eq!(info["partition_columns"], serde_json::json!(["k"]));
    assert!(
        info["last_commit_actions"]["metaData"].as_u64() == Some(1),
        "the commit carries the new metaData: {}",
        info["last_commit_actions"]
    );

    // Old rows read the new column as null: checked by the comparison above (delta-rs fills
    // nulls the same way); also the next plain append with the new schema works.
    let y = Gen::new(seed + 2, 50)
        .variant("extra_col")
        .id_start(2000)
        .write(&dir.path().join("y"));
    assert_eq!(silt_write_ok(&t, &y, &[]), Some(2));
    oracle_write(&e, &y, "parquet", &[]);
    assert_same_content(&t, &[Expected::Table(&e)], &[]);
}

#[test]
fn overwrite_schema_replaces_schema() {
    let seed = seed_for("overwrite_schema_replaces_schema");
    let dir = tempdir("overwrite-schema");
    let a = Gen::new(seed, 300).write(&dir.path().join("a"));
    let bad = Gen::new(seed + 1, 120)
        .variant("badtype")
        .id_start(1000)
        .write(&dir.path().join("bad"));
    let t = dir.path().join("t");
    let e = dir.path().join("e");

    assert_eq!(silt_write_ok(&t, &a, &[]), Some(0));
    let id_before = inspect(&t);
    assert_eq!(
        silt_write_ok(&t, &bad, &["--mode", "overwrite", "--overwrite-schema"]),
        Some(1)
    );
    oracle_write(&e, &a, "parquet", &[]);
    oracle_write(
        &e,
        &bad,
        "parquet",
        &["--mode", "overwrite", "--schema-mode", "overwrite"],
    );
    assert_same_content(&t, &[Expected::Table(&e)], &[]);
    assert_same_content(&t, &[Expected::Parquet(&bad)], &[]);
    let info = inspect(&t);
    assert_eq!(field_type(&info, "k"), "string", "k is now a string column");
    assert_eq!(info["num_rows"], 120);
    let _ = id_before;

    // Overwrite with a narrower schema drops the column.
    let n = Gen::new(seed + 2, 60)
        .variant("narrow")
        .id_start(3000)
        .write(&dir.path().join("n"));
    assert_eq!(
        silt_write_ok(&t, &n, &["--mode", "overwrite", "--overwrite-schema"]),
        Some(2)
    );
    assert_same_content(&t, &[Expected::Parquet(&n)], &[]);
    assert!(
        !field_names(&inspect(&t)).contains(&"f".to_string()),
        "column f is gone"
    );
}
