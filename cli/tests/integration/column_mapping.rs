//! Column-mapped tables (Delta Spark's `name` and `id` modes, `tests/golden`): silt writes
//! their files with physical column names and field ids, keys partition values and
//! statistics physically in the log, and every reader reads the result; a random sequence of
//! operations keeps the content delta-rs and polars read equal to what the same statements
//! give on an unmapped copy.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use crate::support::*;

/// polars refuses column mapping (reader version 2); delta-rs (its DataFusion scan) and
/// DuckDB read it.
const READERS: &[&str] = &["--readers", "deltalake,duckdb"];

/// logical name → (physical name, id) of a table's top-level columns, from its log.
fn mapping(table: &Path) -> BTreeMap<String, (String, i64)> {
    let mut out = BTreeMap::new();
    let mut versions: Vec<_> = std::fs::read_dir(table.join("_delta_log"))
        .expect("log")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.ends_with(".json") && !n.starts_with('_'))
        .collect();
    versions.sort();
    for v in versions {
        let text = std::fs::read_to_string(table.join("_delta_log").join(&v)).expect("commit");
        for line in text.lines() {
            let a: Value = serde_json::from_str(line).expect("json");
            let Some(schema) = a["metaData"]["schemaString"].as_str() else {
                continue;
            };
            let schema: Value = serde_json::from_str(schema).expect("schema");
            out.clear();
            for f in schema["fields"].as_array().expect("fields") {
                let m = &f["metadata"];
                // A version before the table was mapped has no physical names.
                let Some(physical) = m["delta.columnMapping.physicalName"].as_str() else {
                    continue;
                };
                out.insert(
                    f["name"].as_str().expect("name").to_string(),
                    (
                        physical.to_string(),
                        m["delta.columnMapping.id"]
                            .as_i64()
                            .expect("id as a number"),
                    ),
                );
            }
        }
    }
    out
}

/// The files a commit adds name their columns physically (with the ids as Parquet field
/// ids), and the log keys their partition values and statistics physically.
fn assert_physical(table: &Path, partition_columns: &[&str]) {
    let map = mapping(table);
    let physical: BTreeMap<&str, i64> = map.values().map(|(p, id)| (p.as_str(), *id)).collect();
    let adds: Vec<Value> = last_commit(table)
        .into_iter()
        .filter_map(|a| a.get("add").cloned())
        .collect();
    assert!(!adds.is_empty(), "the commit adds files");
    for add in &adds {
        for k in add["partitionValues"]
            .as_object()
            .expect("partitionValues")
            .keys()
        {
            assert!(
                physical.contains_key(k.as_str()),
                "partition value key {k} is physical: {add}"
            );
        }
        let stats: Value =
            serde_json::from_str(add["stats"].as_str().expect("stats")).expect("json");
        for k in stats["minValues"].as_object().expect("minValues").keys() {
            assert!(
                physical.contains_key(k.as_str()),
                "stats key {k} is physical: {stats}"
            );
        }
        let path = pct_decode(add["path"].as_str().expect("path"));
        let out = oracle_ok(&["parquet-columns", "--file", &s(&table.join(&path))]);
        let columns: Vec<Value> = serde_json::from_str(out.stdout.trim()).expect("json");
        let expected_data = map.len() - partition_columns.len();
        assert_eq!(columns.len(), expected_data, "{path}: {columns:?}");
        for c in &columns {
            let name = c["name"].as_str().expect("name");
            let id = physical
                .get(name)
                .unwrap_or_else(|| panic!("{path}: column {name} is not a physical name"));
            assert_eq!(
                c["field_id"].as_i64(),
                Some(*id),
                "{path}: field id of {name}"
            );
        }
    }
}

#[test]
fn column_mapped_tables_are_written_with_physical_names() {
    let _ = seed_for("column_mapped_tables_are_written_with_physical_names");
    let dir = tempdir("cm-physical");
    for (i, rel) in [
        "delta-kernel-rs-golden/table-with-columnmapping-mode-name",
        "delta-kernel-rs-golden/table-with-columnmapping-mode-id",
    ]
    .iter()
    .enumerate()
    {
        let t = golden_copy(rel, dir.path(), &format!("t{i}"));
        let expected = golden(&format!("{rel}/expected"));
        let src = dir.path().join(format!("src{i}"));
        assert!(copy_parquet_files(&expected, &src) > 0);
        assert_eq!(silt_write_ok(&t, &src, &[]), Some(1), "{rel}: append");
        assert_physical(&t, &[]);
        assert_same_content(
            &t,
            &[Expected::Parquet(&expected), Expected::Parquet(&expected)],
            READERS,
        );
        // A rewrite (UPDATE of every row) reads the old files by physical names and writes
        // new ones the same way.
        let r = silt_sql_ok(&format!(
            "UPDATE {} SET IntegerType = IntegerType WHERE ByteType IS NOT NULL OR ByteType IS NULL",
            delta_ref(&t)
        ));
        assert!(metric(&r, "numUpdatedRows") > 0, "{r}");
        assert_physical(&t, &[]);
        assert_same_content(
            &t,
            &[Expected::Parquet(&expected), Expected::Parquet(&expected)],
            READERS,
        );
    }
    // Partitioned (by a timestamp_ntz column): an append keys the partition values
    // physically and names the directories so.
    let rel = "delta-kernel-rs-golden/data-reader-timestamp_ntz-name-mode";
    let t = golden_copy(rel, dir.path(), "part");
    let expected = golden(&format!("{rel}/expected"));
    let src = dir.path().join("src_part");
    assert!(copy_parquet_files(&expected, &src) > 0);
    assert_eq!(silt_write_ok(&t, &src, &[]), Some(2));
    assert_physical(&t, &["tsNtzPartition"]);
    // DuckDB reads this table's timestamp_ntz partition values as nulls, the table as Spark
    // wrote it too: delta-rs's scan is the reader here.
    assert_same_content(
        &t,
        &[Expected::Parquet(&expected), Expected::Parquet(&expected)],
        &["--readers", "deltalake"],
    );
}

/// New columns of a mapped table (schema evolution) get physical names and ids above the
/// table's `delta.columnMapping.maxColumnId`, which the commit raises; a new table created
/// with `delta.columnMapping.mode` has every column mapped (protocol reader 2, writer 5, as
/// Delta Spark writes it). Every file is written by physical names, and the content reads
/// back.
#[test]
fn column_mapped_schemas_grow_with_new_ids() {
    let seed = seed_for("column_mapped_schemas_grow_with_new_ids");
    let dir = tempdir("cm-schema");
    let rel = "delta-kernel-rs-golden/table-with-columnmapping-mode-name";
    let t = golden_copy(rel, dir.path(), "t");
    let expected = golden(&format!("{rel}/expected"));
    let src = Gen::new(seed, 10).write(&dir.path().join("src"));
    let before = mapping(&t);
    assert_eq!(silt_write_ok(&t, &src, &["--merge-schema"]), Some(1));
    let after = mapping(&t);
    let max_id = |t: &Path| -> i64 {
        let info = inspect(t);
        info["configuration"]["delta.columnMapping.maxColumnId"]
            .as_str()
            .and_then(|v| v.parse().ok())
            .expect("maxColumnId")
    };
    assert_eq!(
        max_id(&t),
        24 + (after.len() - before.len()) as i64,
        "{after:?}"
    );
    for (name, (physical, id)) in &after {
        match before.get(name) {
            Some(old) => assert_eq!(old, &(physical.clone(), *id), "{name} kept"),
            None => {
                assert!(physical.starts_with("col-"), "{name}: {physical}");
                assert!(*id > 24, "{name}: id {id}");
            }
        }
    }
    assert_physical(&t, &[]);
    // The old rows have nulls in the new columns; the new rows nulls in the old ones.
    let ids: Vec<i64> = after.values().map(|(_, id)| *id).collect();
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "ids are unique");
    let r = silt_sql_ok(&format!(
        "DELETE FROM {} WHERE id IS NOT NULL",
        delta_ref(&t)
    ));
    assert_eq!(metric(&r, "numDeletedRows"), 10, "{r}");
    let old_columns = before.keys().cloned().collect::<Vec<_>>().join(",");
    let mut compare = vec!["--columns", old_columns.as_str()];
    compare.extend_from_slice(READERS);
    assert_same_content(&t, &[Expected::Parquet(&expected)], &compare);

    // A new mapped table.
    let n = dir.path().join("new");
    assert_eq!(
        silt_write_ok(
            &n,
            &src,
            &[
                "--property",
                "delta.columnMapping.mode=id",
                "--partition-by",
                "k"
            ]
        ),
        Some(0)
    );
    let m = mapping(&n);
    let mut ids: Vec<i64> = m.values().map(|(_, id)| *id).collect();
    ids.sort();
    assert_eq!(ids, (1..=m.len() as i64).collect::<Vec<_>>(), "{m:?}");
    assert_eq!(max_id(&n), m.len() as i64);
    let first = std::fs::read_to_string(n.join("_delta_log/00000000000000000000.json")).unwrap();
    let protocol: Value = first
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find_map(|a| a.get("protocol").cloned())
        .expect("protocol");
    assert_eq!(protocol["minReaderVersion"], 2, "{protocol}");
    assert_eq!(protocol["minWriterVersion"], 5, "{protocol}");
    assert_physical(&n, &["k"]);
    assert!(
        std::fs::read_dir(&n)
            .unwrap()
            .filter_map(|e| e.ok())
            .any(|e| e.file_name().to_string_lossy().starts_with("col-")),
        "partition directories are named physically"
    );
    // DuckDB reads a mapped table's partition columns as nulls (Delta Spark's
    // `data-reader-timestamp_ntz-name-mode` too): delta-rs's scan is the reader here.
    assert_same_content(&n, &[Expected::Parquet(&src)], &["--readers", "deltalake"]);
    assert_eq!(silt_write_ok(&n, &src, &[]), Some(1));
    // (ids 0..9: five rows match whatever the seed.)
    let r = silt_sql_ok(&format!(
        "UPDATE {} SET s = 'x' WHERE id % 2 = 0",
        delta_ref(&n)
    ));
    assert!(metric(&r, "numUpdatedRows") > 0, "{r}");
    assert_physical(&n, &["k"]);
}

/// `ALTER TABLE … SET TBLPROPERTIES ('delta.columnMapping.mode' = 'name')` upgrades a table
/// as Delta Spark does: every column's physical name is its name (the files stay as they
/// are), ids 1..n, the `columnMapping` feature; later columns get `col-…` names. Id mode and
/// changing the mode of a mapped table are refused.
#[test]
fn enabling_column_mapping_keeps_the_files() {
    let seed = seed_for("enabling_column_mapping_keeps_the_files");
    let dir = tempdir("cm-enable");
    let src = Gen::new(seed, 40).write(&dir.path().join("src"));
    let t = dir.path().join("t");
    assert_eq!(silt_write_ok(&t, &src, &["--partition-by", "k"]), Some(0));
    let files_before = data_files(&t);
    silt_sql(
        &format!(
            "ALTER TABLE {} SET TBLPROPERTIES ('delta.columnMapping.mode' = 'id')",
            delta_ref(&t)
        ),
        &[],
    )
    .assert_error(&["id"]);
    silt_sql_ok(&format!(
        "ALTER TABLE {} SET TBLPROPERTIES ('delta.columnMapping.mode' = 'name')",
        delta_ref(&t)
    ));
    let m = mapping(&t);
    for (name, (physical, _)) in &m {
        assert_eq!(
            name, physical,
            "upgraded columns keep their names as physical names"
        );
    }
    let info = inspect(&t);
    let features = info["protocol"]["writerFeatures"].to_string();
    assert!(features.contains("columnMapping"), "{}", info["protocol"]);
    assert_eq!(data_files(&t), files_before, "no file rewritten");
    assert_same_content(&t, &[Expected::Parquet(&src)], READERS);
    let extra = Gen::new(seed + 1, 10)
        .variant("extra_col")
        .write(&dir.path().join("extra"));
    assert_eq!(silt_write_ok(&t, &extra, &["--merge-schema"]), Some(2));
    let grown = mapping(&t);
    let new: Vec<_> = grown.iter().filter(|(k, _)| !m.contains_key(*k)).collect();
    assert!(!new.is_empty(), "a column was added");
    for (name, (physical, id)) in new {
        assert!(physical.starts_with("col-"), "{name}: {physical}");
        assert!(*id > m.len() as i64, "{name}: {id}");
    }
    assert_physical(&t, &["k"]);
    silt_sql(
        &format!(
            "ALTER TABLE {} SET TBLPROPERTIES ('delta.columnMapping.mode' = 'none')",
            delta_ref(&t)
        ),
        &[],
    )
    .assert_error(&["column mapping mode"]);
}

/// `ALTER TABLE … RENAME COLUMN` / `DROP COLUMN` on a column-mapped table change only the
/// schema (Delta Spark's `RENAME COLUMN` / `DROP COLUMNS` commits): no file is rewritten, the
/// renamed column reads back under its new name, the dropped one is gone, and later writes
/// and DML use the new names. Partition columns, unmapped tables, names taken and columns
/// a CHECK constraint reads are refused with the table unchanged.
#[test]
fn renamed_and_dropped_columns_of_a_mapped_table() {
    let seed = seed_for("renamed_and_dropped_columns_of_a_mapped_table");
    let dir = tempdir("cm-alter");
    let src = Gen::new(seed, 60).write(&dir.path().join("src"));
    let t = dir.path().join("t");
    assert_eq!(silt_write_ok(&t, &src, &["--partition-by", "k"]), Some(0));
    let alter = |sql: &str| format!("ALTER TABLE {} {sql}", delta_ref(&t));
    silt_sql(&alter("RENAME COLUMN s TO label"), &[]).assert_error(&["column mapping"]);
    silt_sql_ok(&alter(
        "SET TBLPROPERTIES ('delta.columnMapping.mode' = 'name')",
    ));
    let files = data_files(&t);
    let before = listing_with_dirs(&t);
    for (sql, words) in [
        ("RENAME COLUMN k TO kk", &["partition column"][..]),
        ("RENAME COLUMN s TO f", &["already has a column `f`"][..]),
        ("RENAME COLUMN nope TO x", &["no column `nope`"][..]),
        ("DROP COLUMN nope", &["no column `nope`"][..]),
    ] {
        silt_sql(&alter(sql), &[]).assert_error(words);
        assert_same_listing(&before, &listing_with_dirs(&t), sql);
    }
    let r = silt_sql_ok(&alter("RENAME COLUMN s TO `the label`"));
    assert_eq!(r["version"], 2, "{r}");
    assert_eq!(last_commit_info(&t)["operation"], "RENAME COLUMN");
    silt_sql_ok(&alter("DROP COLUMNS IF EXISTS (f, nope)"));
    assert_eq!(last_commit_info(&t)["operation"], "DROP COLUMNS");
    assert_eq!(data_files(&t), files, "no file rewritten");
    let expected = dir.path().join("expected/e.parquet");
    oracle_ok(&[
        "project",
        "--source",
        &s(&src),
        "--out",
        &s(&expected),
        "--rename",
        "s=the label",
        "--drop",
        "f",
    ]);
    assert_same_content(
        &t,
        &[Expected::Parquet(&expected)],
        &["--readers", "deltalake"],
    );
    // Later statements use the new names; the dropped column is unknown.
    silt_sql(&format!("UPDATE {} SET f = 1.0", delta_ref(&t)), &[]).assert_error(&["f"]);
    let r = silt_sql_ok(&format!(
        "DELETE FROM {} WHERE `the label` = 'plain'",
        delta_ref(&t)
    ));
    assert!(metric(&r, "numDeletedRows") > 0, "{r}");
    let kept = dir.path().join("expected2/e.parquet");
    oracle_ok(&[
        "project",
        "--source",
        &s(&expected),
        "--out",
        &s(&kept),
        "--exclude",
        "the label=plain",
    ]);
    assert_same_content(&t, &[Expected::Parquet(&kept)], &["--readers", "deltalake"]);
}

/// The same random DELETE / UPDATE / MERGE sequence on a new column-mapped table (silt:
/// every column `col-<uuid>` in its files) and on a plain copy (delta-rs): identical content
/// after every step. Flat in `name` mode; partitioned in `id` mode with deletion vectors.
#[test]
fn random_dml_on_mapped_tables_matches_delta_rs() {
    use crate::dv::{DmlPair, RandomDml, random_dml_step};
    use crate::merge::Rng;
    let seed = seed_for("random_dml_on_mapped_tables_matches_delta_rs");
    let steps: usize = env_count("SILT_CM_STEPS", 6);
    let mut r = Rng(seed | 1);
    for partitioned in [false, true] {
        let layout = if partitioned { "part" } else { "flat" };
        let DmlPair {
            dir,
            src,
            ours,
            theirs,
        } = DmlPair::new(&format!("cm-random-{layout}"), seed, 600, 2);
        let (args, part, readers): (Vec<&str>, &[&str], &[&str]) = if partitioned {
            (
                vec![
                    "--property",
                    "delta.columnMapping.mode=id",
                    "--property",
                    "delta.enableDeletionVectors=true",
                    "--partition-by",
                    "k",
                ],
                &["--partition-by", "k"],
                // DuckDB reads a mapped table's partition columns as nulls.
                &["--readers", "deltalake"],
            )
        } else {
            (
                vec!["--property", "delta.columnMapping.mode=name"],
                &[],
                READERS,
            )
        };
        silt_write_ok(&ours, &src, &args);
        oracle_write(&theirs, &src, "parquet", part);
        for (name, (physical, _)) in mapping(&ours) {
            assert!(physical.starts_with("col-"), "{name}: {physical}");
        }
        for step in 0..steps {
            let case = format!("{layout}-{step}");
            random_dml_step(
                &mut r,
                &RandomDml {
                    seed,
                    step,
                    case: &case,
                    dir: dir.path(),
                    ours: &ours,
                    theirs: &theirs,
                    merge_rows: 120,
                    id_span: 700,
                    random_exchange: false,
                },
            );
            if last_commit(&ours).iter().any(|a| a.get("add").is_some()) {
                assert_physical(&ours, if partitioned { &["k"] } else { &[] });
            }
            assert_same_content(&ours, &[Expected::Table(&theirs)], readers);
        }
    }
}

/// MERGE … WITH SCHEMA EVOLUTION into a column-mapped table: the source's new column gets a
/// `col-…` physical name and the next id, `delta.columnMapping.maxColumnId` follows, the files
/// and the log's statistics name it physically, and the content is what delta-rs's MERGE
/// with `merge_schema` gives on an unmapped copy.
#[test]
fn merge_schema_evolution_maps_the_new_columns() {
    let seed = seed_for("merge_schema_evolution_maps_the_new_columns");
    let dir = tempdir("cm-merge-evolution");
    let src = Gen::new(seed, 300).write(&dir.path().join("src"));
    let ours = dir.path().join("silt");
    let theirs = dir.path().join("delta-rs");
    silt_write_ok(
        &ours,
        &src,
        &["--property", "delta.columnMapping.mode=name"],
    );
    oracle_write(&theirs, &src, "parquet", &[]);
    let before = mapping(&ours);
    let max_before = before.values().map(|(_, id)| *id).max().expect("ids");
    // The source: ids overlapping the table's and past them, with a new column `extra`.
    let more = Gen::new(seed + 1, 100)
        .id_start(250)
        .write(&dir.path().join("more"));
    let with_extra = dir.path().join("with-extra.parquet");
    oracle_ok(&[
        "project",
        "--source",
        &s(&more),
        "--out",
        &s(&with_extra),
        "--rename",
        "flag=extra",
    ]);
    let statement = format!(
        "MERGE WITH SCHEMA EVOLUTION INTO {} t USING parquet.`{}` s ON t.id = s.id \
         WHEN MATCHED THEN UPDATE SET * WHEN NOT MATCHED THEN INSERT *",
        delta_ref(&ours),
        with_extra.display()
    );
    let got = silt_sql_ok(&statement);
    assert!(got["version"].is_i64(), "{got}");
    let spec = serde_json::json!({
        "on": "t.id = s.id",
        "target_alias": "t",
        "source_alias": "s",
        "merge_schema": true,
        "clauses": [
            {"kind": "matched", "action": "update_all"},
            {"kind": "not_matched", "action": "insert_all"},
        ],
    });
    let want = oracle_ok(&[
        "merge",
        "--table",
        &s(&theirs),
        "--source",
        &s(&with_extra),
        "--spec",
        &spec.to_string(),
    ])
    .json();
    assert!(want["version"].is_i64(), "{want}");
    let after = mapping(&ours);
    let (physical, id) = after.get("extra").expect("the new column is mapped");
    assert!(physical.starts_with("col-"), "{physical}");
    assert_eq!(*id, max_before + 1);
    for (name, old) in &before {
        assert_eq!(after.get(name), Some(old), "{name} kept");
    }
    let info = inspect(&ours);
    assert_eq!(
        info["configuration"]["delta.columnMapping.maxColumnId"],
        (max_before + 1).to_string(),
        "{info}"
    );
    assert_physical(&ours, &[]);
    assert_same_content(&ours, &[Expected::Table(&theirs)], READERS);
}

/// RENAME COLUMN and DROP COLUMN of fields nested in struct columns of a column-mapped table
/// (Spark's golden `table-with-columnmapping-mode-name`): only the schema changes — the field
/// keeps its physical name and id, so every reader reads the old values under the new name
/// —; a struct keeps at least one field; sibling names stay distinct.
#[test]
fn nested_fields_are_renamed_and_dropped_in_the_schema_only() {
    let dir = tempdir("cm-nested");
    let rel = "delta-kernel-rs-golden/table-with-columnmapping-mode-name";
    let t = golden_copy(rel, dir.path(), "t");
    let values = |path: &str| -> Value {
        let v = oracle_ok(&["field-values", "--table", &s(&t), "--path", path]).json();
        assert!(
            v.get("deltalake").is_some() && v.get("duckdb").is_some(),
            "{v}"
        );
        v
    };
    let before = values("nested_struct.aa");
    let alter = |what: &str| format!("ALTER TABLE {} {what}", delta_ref(&t));
    silt_sql_ok(&alter("RENAME COLUMN nested_struct.aa TO zz"));
    let renamed = values("nested_struct.zz");
    for reader in ["deltalake", "duckdb"] {
        assert_eq!(renamed[reader], before[reader], "{reader}");
    }
    let listing = listing_with_dirs(&t);
    for (statement, words) in [
        (
            "RENAME COLUMN nested_struct.zz TO ac",
            &["already has a field `ac`"][..],
        ),
        (
            "DROP COLUMN nested_struct.ac.aca",
            &["keeps at least one field"][..],
        ),
        (
            "DROP COLUMN nested_struct.nope",
            &["no field `nested_struct.nope`"][..],
        ),
    ] {
        silt_sql(&alter(statement), &[]).assert_error(words);
    }
    assert_same_listing(&listing, &listing_with_dirs(&t), "refused changes");
    let aca = values("nested_struct.ac.aca");
    silt_sql_ok(&alter("DROP COLUMN nested_struct.zz"));
    let after = values("nested_struct.zz");
    assert!(
        after["deltalake"]
            .as_array()
            .expect("values")
            .iter()
            .all(|v| v == "<missing>" || v.is_null()),
        "no row has the field (a null struct has none either): {after}"
    );
    assert_eq!(
        values("nested_struct.ac.aca"),
        aca,
        "the other field is kept"
    );
    // No data file was written by either change.
    assert!(
        commit_files(&t)
            .iter()
            .skip(1)
            .all(|c| !std::fs::read_to_string(t.join("_delta_log").join(c))
                .unwrap()
                .contains("\"add\"")),
        "schema-only commits"
    );
}
