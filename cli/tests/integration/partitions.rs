//! Partitioned writes (Hive-style directories, escaping, nulls, dates), replaceWhere and
//! dynamic partition overwrite.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;

use crate::support::*;

/// Partition values of the active files of a table, as a set of `col=value|null` strings.
fn partition_value_set(info: &Value, cols: &[&str]) -> BTreeSet<String> {
    info["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            cols.iter()
                .map(|c| match &f["partitionValues"][*c] {
                    Value::Null => format!("{c}=<null>"),
                    Value::String(v) => format!("{c}={v}"),
                    other => format!("{c}={other}"),
                })
                .collect::<Vec<_>>()
                .join("/")
        })
        .collect()
}

/// Every active file lives under the Hive-style directories of its partition values (escaped
/// as Delta Spark escapes them), its log path is the URL-encoded relative path, and the table
/// directory holds nothing else (no leftover shuffle files).
#[track_caller]
fn check_partition_layout(t: &Path, cols: &[&str]) -> Value {
    let info = inspect(t);
    assert_eq!(
        info["partition_columns"],
        serde_json::json!(cols),
        "partition columns of the table"
    );
    let mut top_dirs = BTreeSet::new();
    for f in info["files"].as_array().unwrap() {
        let path = f["path"].as_str().unwrap();
        let decoded = pct_decode(path);
        let segs: Vec<&str> = decoded.split('/').collect();
        assert_eq!(
            segs.len(),
            cols.len() + 1,
            "file path {decoded:?} should be {} dirs deep",
            cols.len()
        );
        for (i, c) in cols.iter().enumerate() {
            let v = f["partitionValues"][*c].as_str();
            let want = partition_dir_name(c, v);
            assert_eq!(
                segs[i], want,
                "directory of partition value {c}={v:?} (log path {path:?})"
            );
        }
        assert!(
            t.join(&decoded).is_file(),
            "log path {path:?} decodes to {decoded:?}, which does not exist"
        );
        top_dirs.insert(segs[0].to_string());
    }
    let on_disk: BTreeSet<String> = std::fs::read_dir(t)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "_delta_log")
        .filter(|n| {
            !(n.starts_with('_')
                && !n.contains('=')
                && std::fs::read_dir(t.join(n))
                    .map(|mut d| d.next().is_none())
                    .unwrap_or(false))
        })
        .collect();
    assert_eq!(
        on_disk, top_dirs,
        "directories in the table root vs. partitions of active files"
    );
    let leftovers: Vec<String> = listing(t)
        .into_keys()
        .filter(|k| k.starts_with("_silt") || k.contains("/_silt"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "shuffle files left behind: {leftovers:?}"
    );
    info
}

fn partitioned_roundtrip(test: &str, cols: &str, rows: usize) {
    partitioned_roundtrip_with(test, cols, rows, "0,1,2,3", "directly", "base");
}

/// Writes then appends random data partitioned by `cols` once per exchange mode (the
/// planner's choice, which the summary must name as `auto_plan`; never; always), and checks
/// each table against the same writes by delta-rs: content, partition values, layout.
fn partitioned_roundtrip_with(
    test: &str,
    cols: &str,
    rows: usize,
    k_domain: &'static str,
    auto_plan: &str,
    variant: &'static str,
) {
    let seed = seed_for(test);
    let dir = tempdir(test);
    let a = Gen::new(seed, rows)
        .files(3)
        .k_domain(k_domain)
        .variant(variant)
        .write(&dir.path().join("a"));
    let b = Gen::new(seed + 1, rows / 2)
        .files(2)
        .id_start(rows as i64)
        .k_domain(k_domain)
        .variant(variant)
        .write(&dir.path().join("b"));
    let e = dir.path().join("e");
    let col_list: Vec<&str> = cols.split(',').collect();
    oracle_write(&e, &a, "parquet", &["--partition-by", cols]);
    oracle_write(&e, &b, "parquet", &[]);
    let expected = inspect(&e);

    for (mode, plan) in [
        ("auto", auto_plan),
        ("never", "directly"),
        ("always", "through an exchange"),
    ] {
        let t = dir.path().join(format!("t-{mode}"));
        let out = silt_write(&t, &a, &["--partition-by", cols, "--exchange", mode]);
        out.assert_ok();
        let summary = out.json()["summary"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(
            summary.contains(&format!("partitions written {plan}")),
            "--exchange {mode}: expected partitions written {plan}: {summary}"
        );
        // Appending without --partition-by keeps the table's partitioning.
        let out = silt_write(&t, &b, &["--exchange", mode]);
        out.assert_ok();
        assert_eq!(out.version(), Some(1));

        assert_same_content(&t, &[Expected::Table(&e)], &[]);
        let info = check_partition_layout(&t, &col_list);
        assert_eq!(
            partition_value_set(&info, &col_list),
            partition_value_set(&expected, &col_list),
            "--exchange {mode}: partitions written by silt vs. by delta-rs"
        );
        // Partition columns are not stored in the data files' stats, and every file has stats.
        for f in info["files"].as_array().unwrap() {
            assert!(!f["stats"].is_null(), "file without stats: {f}");
            for c in &col_list {
                assert!(
                    f["stats"]["minValues"][*c].is_null(),
                    "partition column {c} in minValues: {f}"
                );
            }
        }
    }
}

#[test]
fn partitioned_by_many_values() {
    // 300 values over 1,500 rows (one task: the planner writes directly; the choice between
    // the two plans for larger inputs is unit-tested in the coordinator).
    let domain: String = (0..300)
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(",");
    partitioned_roundtrip_with(
        "partitioned_by_many_values",
        "k",
        1500,
        Box::leak(domain.into_boxed_str()),
        "directly",
        "base",
    );
}

#[test]
fn partitioned_by_int_k() {
    partitioned_roundtrip("partitioned_by_int_k", "k", 600);
}

#[test]
fn partitioned_by_string_with_escaping_and_nulls() {
    partitioned_roundtrip("partitioned_by_string_with_escaping_and_nulls", "s", 600);
}

#[test]
fn partitioned_by_date() {
    partitioned_roundtrip("partitioned_by_date", "d", 600);
}

/// A table of fixed-width columns only, whose small files silt encodes itself
/// (`write::small`): by date, written directly and through the exchange (decimals arrive
/// narrowed there), read back by delta-rs, polars and DuckDB as delta-rs wrote it.
#[test]
fn partitioned_fixed_width_columns_by_date() {
    partitioned_roundtrip_with(
        "partitioned_fixed_width_columns_by_date",
        "d",
        600,
        "0,1,2,3",
        "directly",
        "fixed",
    );
}

#[test]
fn partitioned_by_two_columns() {
    partitioned_roundtrip("partitioned_by_two_columns", "s,k", 500);
}

#[test]
fn replace_where_on_partition_column() {
    let seed = seed_for("replace_where_on_partition_column");
    let dir = tempdir("rw-part");
    let a = Gen::new(seed, 600).files(3).write(&dir.path().join("a"));
    let b = Gen::new(seed + 1, 150)
        .k_domain("1")
        .no_null_k()
        .id_start(5000)
        .write(&dir.path().join("b"));
    let t = dir.path().join("t");
    let e = dir.path().join("e");

    assert_eq!(silt_write_ok(&t, &a, &["--partition-by", "k"]), Some(0));
    let before = inspect(&t);
    let out = silt_write(&t, &b, &["--mode", "overwrite", "--replace-where", "k = 1"]);
    out.assert_ok();
    assert_eq!(out.version(), Some(1));
    oracle_write(&e, &a, "parquet", &["--partition-by", "k"]);
    oracle_write(
        &e,
        &b,
        "parquet",
        &["--mode", "overwrite", "--predicate", "k = 1"],
    );
    assert_same_content(&t, &[Expected::Table(&e)], &[]);

    let info = check_partition_layout(&t, &["k"]);
    for p in info["last_commit_removes"].as_array().unwrap() {
        assert!(
            pct_decode(p.as_str().unwrap()).starts_with("k=1/"),
            "removed a file outside k = 1: {p}"
        );
    }
    for p in info["last_commit_adds"].as_array().unwrap() {
        assert!(
            pct_decode(p.as_str().unwrap()).starts_with("k=1/"),
            "added a file outside k = 1: {p}"
        );
    }
    let old_k1 = before["files"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["partitionValues"]["k"] == "1")
        .count();
    assert_eq!(
        info["last_commit_removes"].as_array().unwrap().len(),
        old_k1,
        "every old k = 1 file is removed"
    );
    let ci = &info["commit_info"];
    assert_eq!(ci["operation"], "WRITE");
    assert_eq!(ci["operationParameters"]["mode"], "Overwrite");
    assert!(
        ci["operationParameters"]["predicate"]
            .to_string()
            .contains('k'),
        "predicate in commitInfo: {ci}"
    );

    // New rows outside the predicate: the job fails and the table is unchanged.
    let listing_before = listing_with_dirs(&t);
    for (name, spec) in [
        (
            "c",
            Gen::new(seed + 2, 80)
                .k_domain("2")
                .no_null_k()
                .id_start(7000),
        ),
        (
            "c_nulls",
            Gen::new(seed + 3, 80).k_domain("1").id_start(8000),
        ),
    ] {
        let c = spec.write(&dir.path().join(name));
        assert_violation_leaves_table(&t, &c, "k = 1", &listing_before);
    }
    assert_eq!(inspect(&t)["version"], 1);
}

#[test]
fn replace_where_on_data_column_rewrites_partly_matching_files() {
    let seed = seed_for("replace_where_on_data_column_rewrites_partly_matching_files");
    let dir = tempdir("rw-data");
    let a = Gen::new(seed, 600).files(3).write(&dir.path().join("a"));
    let b = Gen::new(seed + 1, 200)
        .id_start(200)
        .write(&dir.path().join("b"));
    let t = dir.path().join("t");
    let e = dir.path().join("e");
    let pred = "id >= 200 AND id < 400";

    assert_eq!(
        silt_write_ok(&t, &a, &["--target-file-size", "16384"]),
        Some(0)
    );
    let before = inspect(&t);
    let out = silt_write(&t, &b, &["--mode", "overwrite", "--replace-where", pred]);
    out.assert_ok();
    assert_eq!(out.version(), Some(1));
    oracle_write(&e, &a, "parquet", &[]);
    oracle_write(
        &e,
        &b,
        "parquet",
        &["--mode", "overwrite", "--predicate", pred],
    );
    assert_same_content(&t, &[Expected::Table(&e)], &[]);

    let info = inspect_with(&t, &["--verify-stats"]);
    assert!(
        info["stats_problems"].as_array().unwrap().is_empty(),
        "{}",
        info["stats_problems"]
    );
    // Ids are shuffled over the files, so every old file matches partly: all are rewritten.
    assert_eq!(
        info["last_commit_removes"].as_array().unwrap().len(),
        before["num_files"].as_u64().unwrap() as usize,
        "files matching partly are removed (and rewritten)"
    );
    assert_eq!(info["num_rows"], 600);
    assert!(
        info["commit_info"]["operationParameters"]["predicate"]
            .to_string()
            .contains("id")
    );

    // A second replaceWhere on another range, this time on a table made of rewritten files.
    let c = Gen::new(seed + 2, 100)
        .id_start(0)
        .write(&dir.path().join("c"));
    let pred2 = "id < 100 OR id IS NULL";
    assert_eq!(
        silt_write_ok(&t, &c, &["--mode", "overwrite", "--replace-where", pred2]),
        Some(2)
    );
    oracle_write(
        &e,
        &c,
        "parquet",
        &["--mode", "overwrite", "--predicate", pred2],
    );
    assert_same_content(&t, &[Expected::Table(&e)], &[]);

    // New rows violating the predicate: failure, table unchanged.
    let listing_before = listing_with_dirs(&t);
    let bad = Gen::new(seed + 3, 100)
        .id_start(900)
        .write(&dir.path().join("bad"));
    assert_violation_leaves_table(&t, &bad, pred, &listing_before);
    assert_eq!(inspect(&t)["version"], 2);
}

#[test]
fn dynamic_partition_overwrite_replaces_only_written_partitions() {
    let seed = seed_for("dynamic_partition_overwrite_replaces_only_written_partitions");
    let dir = tempdir("dpo");
    let a = Gen::new(seed, 600).files(3).write(&dir.path().join("a"));
    // New rows in partitions 1, 2 and null; partitions 0 and 3 stay untouched.
    let b = Gen::new(seed + 1, 200)
        .k_domain("1,2")
        .id_start(10_000)
        .write(&dir.path().join("b"));
    let t = dir.path().join("t");
    let e = dir.path().join("e");
    let expected = dir.path().join("expected.parquet");

    assert_eq!(silt_write_ok(&t, &a, &["--partition-by", "k"]), Some(0));
    let before = inspect(&t);
    oracle_write(&e, &a, "parquet", &["--partition-by", "k"]);
    oracle_ok(&[
        "expect-dpo",
        "--old-table",
        &s(&e),
        "--new-source",
        &s(&b),
        "--partition-by",
        "k",
        "--out",
        &s(&expected),
    ]);

    let out = silt_write(
        &t,
        &b,
        &["--mode", "overwrite", "--dynamic-partition-overwrite"],
    );
    out.assert_ok();
    assert_eq!(out.version(), Some(1));
    assert_same_content(&t, &[Expected::Parquet(&expected)], &[]);

    let info = check_partition_layout(&t, &["k"]);
    let untouched = |f: &Value| matches!(f["partitionValues"]["k"].as_str(), Some("0") | Some("3"));
    let old_untouched: BTreeSet<String> = before["files"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| untouched(f))
        .map(|f| f["path"].as_str().unwrap().to_string())
        .collect();
    let now_untouched: BTreeSet<String> = info["files"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| untouched(f))
        .map(|f| f["path"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        old_untouched, now_untouched,
        "files of partitions 0 and 3 must stay as they are"
    );
    for p in info["last_commit_removes"].as_array().unwrap() {
        let d = pct_decode(p.as_str().unwrap());
        assert!(
            d.starts_with("k=1/")
                || d.starts_with("k=2/")
                || d.starts_with("k=__HIVE_DEFAULT_PARTITION__/"),
            "removed a file of a partition the new data does not write: {d}"
        );
    }

    // On an unpartitioned table the option is refused.
    let u = dir.path().join("u");
    assert_eq!(silt_write_ok(&u, &a, &[]), Some(0));
    let listing_before = listing_with_dirs(&u);
    let out = silt_write(
        &u,
        &b,
        &["--mode", "overwrite", "--dynamic-partition-overwrite"],
    );
    out.assert_error(&["partition"]);
    assert_same_listing(
        &listing_before,
        &listing_with_dirs(&u),
        "dynamic partition overwrite on an unpartitioned table",
    );
}

/// An overwrite with `--replace-where pred` of rows that do not all satisfy it fails with a
/// clear error and leaves the table directory exactly as `before`.
#[track_caller]
fn assert_violation_leaves_table(
    t: &Path,
    source: &Path,
    pred: &str,
    before: &std::collections::BTreeMap<String, Option<u64>>,
) {
    let out = silt_write(t, source, &["--mode", "overwrite", "--replace-where", pred]);
    out.assert_error(&["do not satisfy the replaceWhere predicate"]);
    assert_same_listing(before, &listing_with_dirs(t), "replaceWhere violation");
}
