//! Tables written by Spark / Databricks / delta-rs (`tests/golden`, copied to a
//! temp dir first): silt reads them as a source, appends to and overwrites them, and refuses
//! the ones it cannot write without changing a byte.

use std::path::Path;

use crate::support::*;

#[test]
fn delta_source_from_spark_checkpointed_table() {
    let _ = seed_for("delta_source_from_spark_checkpointed_table");
    let dir = tempdir("delta-src");
    let rel = "delta-kernel-rs-golden/basic-with-inserts-deletes-checkpoint";
    let src = golden(&format!("{rel}/delta"));
    let expected = golden(&format!("{rel}/expected"));
    let t = dir.path().join("t");
    assert_eq!(silt_write_ok(&t, &src, &["--format", "delta"]), Some(0));
    assert_same_content(&t, &[Expected::Parquet(&expected)], &[]);
}

#[test]
fn delta_source_from_partitioned_table() {
    let _ = seed_for("delta_source_from_partitioned_table");
    let dir = tempdir("delta-src-part");
    let src = golden("dat/basic_partitioned/delta");
    let expected = golden("dat/basic_partitioned/expected/latest/table_content.parquet");
    let t = dir.path().join("t");
    assert_eq!(
        silt_write_ok(&t, &src, &["--format", "delta", "--partition-by", "letter"]),
        Some(0)
    );
    assert_same_content(&t, &[Expected::Parquet(&expected)], &[]);
    for d in [
        "letter=a",
        "letter=b",
        "letter=c",
        "letter=e",
        "letter=__HIVE_DEFAULT_PARTITION__",
    ] {
        assert!(
            t.join(d).is_dir(),
            "partition directory {d} missing:\n{}",
            listing_text(&t)
        );
    }
    // A Delta source into an unpartitioned table keeps the partition column as data.
    let u = dir.path().join("u");
    assert_eq!(silt_write_ok(&u, &src, &["--format", "delta"]), Some(0));
    assert_same_content(&u, &[Expected::Parquet(&expected)], &[]);
}

/// A Delta source's column metadata describes its own features (identity columns, type
/// changes): the new table declares none of them, so none is carried over; the new table is
/// one silt (and delta-rs, polars) goes on writing and reading.
#[test]
fn delta_sources_carry_over_no_feature_metadata() {
    let _ = seed_for("delta_sources_carry_over_no_feature_metadata");
    let dir = tempdir("delta-src-features");
    let no_delta_keys = |t: &Path| {
        let schema = inspect(t)["schema"].to_string();
        assert!(
            !schema.contains("\"delta."),
            "no source feature metadata in the new table: {schema}"
        );
    };
    // Identity column, v2 checkpoint with sidecars (read through delta-rs's DataFusion scan).
    let src = golden("delta-rs/checkpoint-v2-table/delta");
    let t = dir.path().join("identity");
    assert_eq!(silt_write_ok(&t, &src, &["--format", "delta"]), Some(0));
    no_delta_keys(&t);
    assert_eq!(silt_write_ok(&t, &src, &["--format", "delta"]), Some(1));
    assert_same_content(&t, &[Expected::Table(&src), Expected::Table(&src)], &[]);

    // Widened types: the new table has the widened types and no `delta.typeChanges`.
    let src = golden("delta-kernel-rs/type-widening/delta");
    let t = dir.path().join("widened");
    assert_eq!(silt_write_ok(&t, &src, &["--format", "delta"]), Some(0));
    no_delta_keys(&t);
    assert_eq!(silt_write_ok(&t, &src, &["--format", "delta"]), Some(1));
    let info = inspect(&t);
    assert_eq!(info["num_rows"], 4, "{info}");
    let types: Vec<String> = info["schema"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| format!("{}:{}", f["name"].as_str().unwrap(), f["type"]))
        .collect();
    assert!(
        types.contains(&"byte_long:\"long\"".to_string()),
        "{types:?}"
    );

    // Variant columns pass through (`variant_columns_pass_through`): carried over as
    // `variant`, with no feature metadata of the source's either.
    let src = golden("delta-kernel-rs/unshredded-variant/delta");
    let t = dir.path().join("variant");
    assert_eq!(silt_write_ok(&t, &src, &["--format", "delta"]), Some(0));
    no_delta_keys(&t);
}

#[test]
fn append_and_overwrite_spark_table_with_checkpoint() {
    let _ = seed_for("append_and_overwrite_spark_table_with_checkpoint");
    let dir = tempdir("golden-ckpt");
    let rel = "delta-kernel-rs-golden/basic-with-inserts-deletes-checkpoint";
    let t = golden_copy(rel, dir.path(), "t");
    let expected = golden(&format!("{rel}/expected"));
    let src = dir.path().join("src");
    assert!(copy_parquet_files(&expected, &src) > 0);

    assert_eq!(
        silt_write_ok(&t, &src, &[]),
        Some(14),
        "append after v13 (checkpoint at v10)"
    );
    assert_same_content(
        &t,
        &[Expected::Parquet(&expected), Expected::Parquet(&expected)],
        &[],
    );
    let info = inspect(&t);
    assert_eq!(info["version"], 14);
    assert_eq!(info["commit_info"]["operation"], "WRITE");

    assert_eq!(silt_write_ok(&t, &src, &["--mode", "overwrite"]), Some(15));
    assert_same_content(&t, &[Expected::Parquet(&expected)], &[]);
    let info = inspect(&t);
    assert_eq!(
        info["num_files"].as_u64(),
        Some(info["last_commit_adds"].as_array().unwrap().len() as u64),
        "after an overwrite only the new files are active"
    );

    // A delta source reading the table silt just wrote (own output as input).
    let t2 = dir.path().join("t2");
    assert_eq!(silt_write_ok(&t2, &t, &["--format", "delta"]), Some(0));
    assert_same_content(&t2, &[Expected::Parquet(&expected)], &[]);
}

#[test]
fn append_and_overwrite_spark_partitioned_table() {
    let _ = seed_for("append_and_overwrite_spark_partitioned_table");
    let dir = tempdir("golden-part");
    let t = golden_copy("dat/basic_partitioned", dir.path(), "t");
    let content = golden("dat/basic_partitioned/expected/latest/table_content.parquet");
    let files_before = data_files(&t);

    assert_eq!(silt_write_ok(&t, &content, &[]), Some(2));
    assert_same_content(
        &t,
        &[Expected::Parquet(&content), Expected::Parquet(&content)],
        &[],
    );
    let info = inspect(&t);
    assert_eq!(info["partition_columns"], serde_json::json!(["letter"]));
    for p in info["last_commit_adds"].as_array().unwrap() {
        let d = pct_decode(p.as_str().unwrap());
        assert!(
            d.starts_with("letter="),
            "new file outside a partition directory: {d}"
        );
        assert!(t.join(&d).is_file(), "{d} missing on disk");
    }
    // The Spark-written files are untouched.
    for f in &files_before {
        assert!(t.join(f).is_file(), "{f} disappeared");
    }
    assert!(
        info["last_commit_adds"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p
                .as_str()
                .unwrap()
                .starts_with("letter=__HIVE_DEFAULT_PARTITION__/")),
        "the null row goes to letter=__HIVE_DEFAULT_PARTITION__"
    );

    assert_eq!(
        silt_write_ok(&t, &content, &["--mode", "overwrite"]),
        Some(3)
    );
    assert_same_content(&t, &[Expected::Parquet(&content)], &[]);

    // replaceWhere on the Spark partition column (every row of the content satisfies it).
    assert_eq!(
        silt_write_ok(
            &t,
            &content,
            &[
                "--mode",
                "overwrite",
                "--replace-where",
                "letter = 'a' OR letter IS NULL OR letter IN ('b', 'c', 'e')"
            ]
        ),
        Some(4)
    );
    assert_same_content(&t, &[Expected::Parquet(&content)], &[]);
}

#[test]
fn append_and_overwrite_spark_multi_partitioned_table() {
    let _ = seed_for("append_and_overwrite_spark_multi_partitioned_table");
    let dir = tempdir("golden-multi");
    let t = golden_copy("dat/multi_partitioned", dir.path(), "t");
    let content = golden("dat/multi_partitioned/expected/latest/table_content.parquet");
    // polars cannot read binary partition columns (it fails on the untouched golden table too).
    let readers = ["--readers", "deltalake"];

    assert_eq!(silt_write_ok(&t, &content, &[]), Some(3));
    assert_same_content(
        &t,
        &[Expected::Parquet(&content), Expected::Parquet(&content)],
        &readers,
    );
    let info = inspect(&t);
    for p in info["last_commit_adds"].as_array().unwrap() {
        let d = pct_decode(p.as_str().unwrap());
        assert!(t.join(&d).is_file(), "{d} missing on disk");
        let segs: Vec<&str> = d.split('/').collect();
        assert_eq!(segs.len(), 4, "letter/date/data directories: {d}");
    }
    // The escaped Spark directory `letter=%2F%2520%25f` gets the new file for `/%20%f`.
    assert!(
        info["last_commit_adds"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| pct_decode(p.as_str().unwrap())
                .starts_with("letter=%2F%2520%25f/date=1970-01-01/")),
        "value `/%20%f` must land in letter=%2F%2520%25f: {}",
        info["last_commit_adds"]
    );

    assert_eq!(
        silt_write_ok(&t, &content, &["--mode", "overwrite"]),
        Some(4)
    );
    assert_same_content(&t, &[Expected::Parquet(&content)], &readers);
}

/// Tables silt cannot write: refused with a clear error, not one byte changed.
#[test]
fn unsupported_tables_are_refused_unchanged() {
    let seed = seed_for("unsupported_tables_are_refused_unchanged");
    let dir = tempdir("golden-refuse");
    let generic = Gen::new(seed, 20).write(&dir.path().join("generic"));
    // (table, source, any of these words must be on the error line)
    let cases: [(&str, &Path, &[&str]); 2] = [
        (
            "delta-rs/table_with_liquid_clustering",
            &generic,
            &["rowtracking", "liquid", "clustering"],
        ),
        (
            "delta-kernel-rs-golden/deltalog-invalid-protocol-version",
            &generic,
            &["protocol", "version", "99"],
        ),
    ];
    for (i, (rel, src, words)) in cases.iter().enumerate() {
        let t = golden_copy(rel, dir.path(), &format!("t{i}"));
        let before = listing_with_dirs(&t);
        for mode in ["append", "overwrite"] {
            let out = silt_write(&t, src, &["--mode", mode]);
            let line = out.assert_error(&[]);
            let lower = line.to_lowercase();
            assert!(
                words.iter().any(|w| lower.contains(w)),
                "{rel} ({mode}): the refusal should say why (one of {words:?}): {line}"
            );
            assert_same_listing(&before, &listing_with_dirs(&t), &format!("{rel} ({mode})"));
        }
    }
}

/// The golden-table matrix (`tests/python/golden_matrix.py`): every table of the collection
/// through every operation — read as a source, append, overwrite, replaceWhere, DELETE,
/// UPDATE, MERGE, OPTIMIZE — each result read back by delta-rs, polars and DuckDB and
/// compared with the content computed independently. A refusal must be one clear line that
/// leaves the table unchanged, and must be one `tests/golden/refusals.txt` lists (README
/// carries the list): a new refusal, or a listed one that no longer happens, fails the test.
#[test]
fn golden_table_matrix() {
    let _ = seed_for("golden_table_matrix");
    let dir = tempdir("golden-matrix");
    let mut cmd = std::process::Command::new(python());
    cmd.arg(repo_root().join("tests/python/golden_matrix.py"))
        .args(["--golden", &s(&golden(""))])
        .args(["--silt", silt_bin()])
        .args(["--work", &s(dir.path())])
        .args([
            "--refusals",
            &s(&repo_root().join("tests/golden/refusals.txt")),
        ])
        // One table at a time: the suite runs other tests beside this one, some of them
        // timing-sensitive (leases in the HA tests), on a small machine.
        .args(["--jobs", "1"])
        .env("PYTHONDONTWRITEBYTECODE", "1");
    let out = run(cmd, std::time::Duration::from_secs(1800));
    println!("{}", out.stdout);
    assert!(
        out.ok(),
        "the golden matrix has failures\n{}",
        out.describe()
    );
}

/// A new table's properties that turn features on give it the protocol they need: the
/// change data feed, in-commit timestamps and row tracking as writer features (reader 1,
/// writer 7), type widening as a reader-writer feature (3, 7). Appends to such tables follow the features
/// (`commitInfo` first with a growing `inCommitTimestamp`) and every reader reads them;
/// properties whose features silt cannot write are refused before anything is written.
#[test]
fn new_tables_declare_the_features_their_properties_turn_on() {
    let seed = seed_for("new_tables_declare_the_features_their_properties_turn_on");
    let dir = tempdir("golden-new-features");
    let src = Gen::new(seed, 50).write(&dir.path().join("src"));
    // (property, reader version, writer version, reader features, writer features)
    type Case<'a> = (&'a str, i64, i64, &'a [&'a str], &'a [&'a str]);
    let cases: [Case; 4] = [
        ("delta.enableChangeDataFeed", 1, 7, &[], &["changeDataFeed"]),
        (
            "delta.enableInCommitTimestamps",
            1,
            7,
            &[],
            &["inCommitTimestamp"],
        ),
        (
            "delta.enableTypeWidening",
            3,
            7,
            &["typeWidening"],
            &["typeWidening"],
        ),
        (
            "delta.enableRowTracking",
            1,
            7,
            &[],
            &["domainMetadata", "rowTracking"],
        ),
    ];
    for (i, (key, reader, writer, rf, wf)) in cases.iter().enumerate() {
        let t = dir.path().join(format!("t{i}"));
        let prop = format!("{key}=true");
        assert_eq!(silt_write_ok(&t, &src, &["--property", &prop]), Some(0));
        assert_eq!(silt_write_ok(&t, &src, &[]), Some(1), "{key}: append");
        // From the log itself: delta-rs and polars do not read type-widening tables.
        let first = std::fs::read_to_string(t.join("_delta_log/00000000000000000000.json"))
            .expect("first commit");
        let p = &first
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find_map(|a| a.get("protocol").cloned())
            .expect("a protocol action");
        assert_eq!(p["minReaderVersion"], *reader, "{key}: {p}");
        assert_eq!(p["minWriterVersion"], *writer, "{key}: {p}");
        let names = |v: &serde_json::Value| -> Vec<String> {
            v.as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|f| f.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default()
        };
        assert_eq!(names(&p["readerFeatures"]), *rf, "{key}: {p}");
        assert_eq!(names(&p["writerFeatures"]), *wf, "{key}: {p}");
        // Type widening: DuckDB's Delta extension reads it; delta-rs and polars refuse the
        // reader feature.
        let readers: &[&str] = if rf.is_empty() {
            &[]
        } else {
            &["--readers", "duckdb"]
        };
        assert_same_content(
            &t,
            &[Expected::Parquet(&src), Expected::Parquet(&src)],
            readers,
        );
        if *key == "delta.enableInCommitTimestamps" {
            let ict = |v: i64| -> i64 {
                let text = std::fs::read_to_string(t.join(format!("_delta_log/{v:020}.json")))
                    .expect("commit file");
                let first: serde_json::Value =
                    serde_json::from_str(text.lines().next().expect("a line")).expect("json");
                first["commitInfo"]["inCommitTimestamp"]
                    .as_i64()
                    .unwrap_or_else(|| panic!("commitInfo first with its timestamp: {text}"))
            };
            assert!(ict(1) > ict(0), "in-commit timestamps grow");
        }
    }
    for (key, words) in [
        (
            "delta.enableRowTracking=maybe",
            ["delta.enableRowTracking", "maybe"],
        ),
        (
            "delta.columnMapping.mode=names",
            ["none, name or id", "columnMapping.mode"],
        ),
    ] {
        let t = dir.path().join("refused");
        silt_write(&t, &src, &["--property", key]).assert_error(&words);
        assert!(commit_files(&t).is_empty(), "{key}: nothing written");
    }
}

/// Variant columns (Spark's unshredded `variant`, at the top level and inside arrays, maps
/// and structs) pass through: a new table written from the golden variant table declares
/// `variantType` (reader and writer) and types its columns `variant` — silt's own marking of
/// the struct it carries them as never reaches the log —, and its rows, appended again and
/// rewritten by a DELETE, are the bytes delta-rs and polars read from the original.
#[test]
fn variant_columns_pass_through() {
    let dir = tempdir("golden-variant");
    let source = golden_copy("delta-kernel-rs/unshredded-variant", dir.path(), "source");
    let t = dir.path().join("t");
    let out = silt_write(&t, &source, &["--format", "delta"]);
    out.assert_ok();
    let first = std::fs::read_to_string(t.join("_delta_log/00000000000000000000.json"))
        .expect("first commit");
    assert!(
        !first.contains(silt_common::schema::VARIANT_MARK),
        "{first}"
    );
    let actions: Vec<serde_json::Value> = first
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let protocol = actions
        .iter()
        .find_map(|a| a.get("protocol"))
        .expect("protocol");
    assert_eq!(protocol["minReaderVersion"], 3, "{protocol}");
    assert_eq!(
        protocol["readerFeatures"],
        serde_json::json!(["variantType"])
    );
    assert_eq!(
        protocol["writerFeatures"],
        serde_json::json!(["variantType"])
    );
    let schema: serde_json::Value = serde_json::from_str(
        actions
            .iter()
            .find_map(|a| a["metaData"]["schemaString"].as_str())
            .expect("schema"),
    )
    .expect("schema json");
    let original: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(source.join("_delta_log/00000000000000000000.json"))
            .expect("golden commit")
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find_map(|a| a["metaData"]["schemaString"].as_str().map(str::to_string))
            .expect("golden schema"),
    )
    .expect("golden schema json");
    let types = |s: &serde_json::Value| -> Vec<serde_json::Value> {
        s["fields"]
            .as_array()
            .expect("fields")
            .iter()
            .map(|f| f["type"].clone())
            .collect()
    };
    assert_eq!(
        types(&schema),
        types(&original),
        "every column typed as Spark typed it"
    );
    // (polars reads maps with large types.)
    let readers = &["--readers", "deltalake,polars", "--no-type-check"];
    assert_same_content(&t, &[Expected::Table(&source)], readers);
    silt_write(&t, &source, &["--format", "delta"]).assert_ok();
    silt_sql_ok(&format!("DELETE FROM {} WHERE id % 2 = 0", delta_ref(&t)));
    let odd = dir.path().join("odd");
    silt_write(&odd, &source, &["--format", "delta"]).assert_ok();
    silt_sql_ok(&format!("DELETE FROM {} WHERE id % 2 = 0", delta_ref(&odd)));
    assert_same_content(&t, &[Expected::Table(&odd), Expected::Table(&odd)], readers);
}
