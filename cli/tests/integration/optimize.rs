//! OPTIMIZE: bin-packing compaction (the same rows, fewer files, only `dataChange = false`
//! actions, no commit when there is nothing to compact, partition predicates only; checked
//! against delta-rs's `optimize.compact` on a copy) and clustering along a Z-order or Hilbert
//! curve (the same rows, files a point predicate reads measured by `oracle.py clustering` and
//! compared with delta-rs's `optimize.z_order` on a copy, incremental runs, bad columns).

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::support::*;

#[test]
fn optimize_compacts_small_files_as_delta_rs_does() {
    let seed = seed_for("optimize_compacts_small_files_as_delta_rs_does");
    let dir = tempdir("optimize");
    let t = small_files_table(dir.path(), 3, "2048", |i| {
        Gen::new(seed + i, 600).k_domain("1,2")
    });
    let before = inspect(&t);
    let files_before = before["num_files"].as_i64().unwrap();
    assert!(
        files_before >= 9,
        "small files to compact: {}",
        before["num_files"]
    );
    let original = dir.path().join("original");
    copy_dir(&t, &original);
    let theirs = dir.path().join("delta-rs");
    copy_dir(&t, &theirs);

    // WHERE must name partition columns only.
    let out = silt_sql(&format!("OPTIMIZE {} WHERE id > 3", delta_ref(&t)), &[]);
    out.assert_error(&["partition columns", "id"]);
    // One partition.
    let r = silt_sql_ok(&format!("OPTIMIZE {} WHERE k = 1", delta_ref(&t)));
    let info = last_commit_info(&t);
    assert_eq!(info["operation"], "OPTIMIZE");
    assert_eq!(info["operationParameters"]["predicate"], r#"["k = 1"]"#);
    assert_eq!(info["isolationLevel"], "SnapshotIsolation");
    let actions = last_commit(&t);
    for a in &actions {
        for kind in ["add", "remove"] {
            if let Some(x) = a.get(kind) {
                assert_eq!(x["dataChange"], Value::Bool(false), "{a}");
                assert!(
                    x["partitionValues"]["k"] == "1",
                    "only partition k=1 touched: {a}"
                );
            }
        }
    }
    assert!(
        metric(&r, "numRemovedFiles") > metric(&r, "numAddedFiles"),
        "{r}"
    );
    // Everything else, then nothing left to do: no commit.
    silt_sql_ok(&format!("OPTIMIZE {}", delta_ref(&t)));
    let version = inspect(&t)["version"].as_i64();
    let again = silt_sql(&format!("OPTIMIZE {}", delta_ref(&t)), &[]);
    again.assert_ok();
    assert!(again.json()["version"].is_null(), "{}", again.describe());
    assert_eq!(inspect(&t)["version"].as_i64(), version);

    // The rows are the table's before, and delta-rs's compaction ends with as many files.
    assert_same_content(&t, &[Expected::Table(&original)], &[]);
    oracle_ok(&["compact", "--table", &s(&theirs)]);
    assert_same_content(&t, &[Expected::Table(&theirs)], &[]);
    let ours = inspect(&t)["num_files"].as_i64().unwrap();
    let delta_rs = inspect(&theirs)["num_files"].as_i64().unwrap();
    eprintln!("[optimize] files: before {files_before}, silt {ours}, delta-rs {delta_rs}");
    assert_eq!(ours, delta_rs, "one file per partition on both sides");
}

/// `silt optimize` with `args` on `table`; returns the `--json` result.
#[track_caller]
fn silt_optimize(table: &Path, args: &[&str]) -> Out {
    run(
        optimize_cmd(table, args),
        std::time::Duration::from_secs(300),
    )
}

#[track_caller]
fn silt_optimize_ok(table: &Path, args: &[&str]) -> Value {
    let out = silt_optimize(table, args);
    out.assert_ok();
    let j = out.json();
    assert_eq!(j["state"], "succeeded", "{}", out.describe());
    j
}

/// `oracle.py clustering`: per column, the fraction of files a random point predicate reads.
fn clustering(table: &Path, columns: &str) -> Value {
    let out = oracle_ok(&[
        "clustering",
        "--table",
        &s(table),
        "--columns",
        columns,
        "--seed",
        "7",
    ]);
    serde_json::from_str(out.stdout.trim()).expect("clustering prints JSON")
}

fn fraction(v: &Value, column: &str) -> f64 {
    v[column]
        .as_f64()
        .unwrap_or_else(|| panic!("no `{column}` in {v}"))
}

/// Checks the latest commit is an OPTIMIZE by `columns` whose adds carry the clustering tags
/// and whose actions are all `dataChange = false`; returns the removed paths.
#[track_caller]
fn assert_clustering_commit(table: &Path, columns: &str, curve: &str) -> Vec<String> {
    let info = last_commit_info(table);
    assert_eq!(info["operation"], "OPTIMIZE");
    assert_eq!(info["operationParameters"]["zOrderBy"], columns, "{info}");
    let mut removed = Vec::new();
    for a in last_commit(table) {
        if let Some(add) = a.get("add") {
            assert_eq!(add["dataChange"], Value::Bool(false), "{a}");
            assert_eq!(add["tags"]["ZCUBE_ZORDER_BY"], columns, "{a}");
            assert_eq!(add["tags"]["ZCUBE_ZORDER_CURVE"], curve, "{a}");
            assert!(add["tags"]["ZCUBE_ID"].is_string(), "{a}");
        }
        if let Some(rm) = a.get("remove") {
            assert_eq!(rm["dataChange"], Value::Bool(false), "{a}");
            removed.push(rm["path"].as_str().unwrap_or_default().to_string());
        }
    }
    removed
}

#[test]
fn zorder_and_hilbert_keep_content_and_cluster_better_than_delta_rs() {
    let seed = seed_for("zorder_and_hilbert_keep_content_and_cluster_better_than_delta_rs");
    let dir = tempdir("zorder");
    let src = Gen::new(seed, 60_000)
        .files(6)
        .variant("long_prefix")
        .write(&dir.path().join("src"));
    let t = dir.path().join("t");
    silt_write_ok(&t, &src, &[]);
    let original = dir.path().join("original");
    copy_dir(&t, &original);
    let theirs = dir.path().join("delta-rs");
    copy_dir(&t, &theirs);
    let before = clustering(&t, "id,f");

    // Z-order by two columns into ~16 files (a 4 x 4 grid at best: a quarter per column).
    let size = (dir_bytes(&t) / 16).to_string();
    let r = silt_optimize_ok(&t, &["--zorder-by", "id,f", "--target-size", &size]);
    assert_clustering_commit(&t, r#"["id","f"]"#, "zorder");
    assert_same_content(&t, &[Expected::Table(&original)], &[]);
    let ours = clustering(&t, "id,f");
    oracle_ok(&[
        "zorder",
        "--table",
        &s(&theirs),
        "--columns",
        "id,f",
        "--target-size",
        &size,
    ]);
    assert_same_content(&theirs, &[Expected::Table(&original)], &[]);
    let delta_rs = clustering(&theirs, "id,f");
    eprintln!(
        "[zorder] files read per point predicate: before {before}, silt {ours}, delta-rs {delta_rs}; silt's own report: {}",
        r["summary"]
    );
    for c in ["id", "f"] {
        assert!(
            fraction(&ours, c) < 0.45 && fraction(&ours, c) < fraction(&before, c),
            "{c}: clustered {ours} vs before {before}"
        );
    }
    // Idempotent: nothing new to cluster, no commit.
    let version = inspect(&t)["version"].as_i64();
    let again = silt_optimize_ok(&t, &["--zorder-by", "id,f", "--target-size", &size]);
    assert!(again["version"].is_null(), "{again}");
    assert_eq!(inspect(&t)["version"].as_i64(), version);

    // Incremental: appended files are clustered among themselves; clustered ones stay.
    let more = Gen::new(seed + 1, 20_000)
        .files(2)
        .id_start(1_000_000)
        .variant("long_prefix")
        .write(&dir.path().join("more"));
    silt_write_ok(&t, &more, &[]);
    let appended: Vec<String> = inspect(&t)["last_commit_adds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_string())
        .collect();
    silt_optimize_ok(&t, &["--zorder-by", "id,f", "--target-size", &size]);
    let mut removed = assert_clustering_commit(&t, r#"["id","f"]"#, "zorder");
    removed.sort();
    let mut appended_sorted = appended.clone();
    appended_sorted.sort();
    assert_eq!(
        removed, appended_sorted,
        "only the appended files are reclustered"
    );
    assert_same_content(
        &t,
        &[Expected::Table(&original), Expected::Parquet(&more)],
        &[],
    );

    // Hilbert, everything (--full): same rows again.
    silt_optimize_ok(
        &t,
        &[
            "--zorder-by",
            "id,f",
            "--curve",
            "hilbert",
            "--full",
            "--target-size",
            &size,
        ],
    );
    assert_clustering_commit(&t, r#"["id","f"]"#, "hilbert");
    assert_same_content(
        &t,
        &[Expected::Table(&original), Expected::Parquet(&more)],
        &[],
    );

    // A string column behind a 20-byte common prefix: silt compares full values; delta-rs's
    // key sees only the first 16 bytes, so its files each span nearly every value.
    let theirs_s = dir.path().join("delta-rs-s");
    copy_dir(&original, &theirs_s);
    let ours_s = dir.path().join("silt-s");
    copy_dir(&original, &ours_s);
    silt_optimize_ok(&ours_s, &["--zorder-by", "s", "--target-size", &size]);
    assert_same_content(&ours_s, &[Expected::Table(&original)], &[]);
    oracle_ok(&[
        "zorder",
        "--table",
        &s(&theirs_s),
        "--columns",
        "s",
        "--target-size",
        &size,
    ]);
    let (q_ours, q_theirs) = (clustering(&ours_s, "s"), clustering(&theirs_s, "s"));
    eprintln!("[zorder] long-prefix strings: silt {q_ours}, delta-rs {q_theirs}");
    assert!(
        fraction(&q_ours, "s") * 2.0 < fraction(&q_theirs, "s"),
        "silt {q_ours} vs delta-rs {q_theirs}"
    );
}

#[test]
fn zorder_and_hilbert_on_a_partitioned_table_cluster_each_partition() {
    let seed = seed_for("zorder_and_hilbert_on_a_partitioned_table_cluster_each_partition");
    let dir = tempdir("cluster-part");
    let src = Gen::new(seed, 40_000)
        .files(4)
        .k_domain("1,2")
        .write(&dir.path().join("src"));
    let written = dir.path().join("written");
    silt_write_ok(
        &written,
        &src,
        &["--partition-by", "k", "--target-file-size", "65536"],
    );
    let before = clustering(&written, "id,ts");
    let size = (dir_bytes(&written) / 36).to_string();
    for curve in ["zorder", "hilbert"] {
        let t = dir.path().join(curve);
        copy_dir(&written, &t);
        let version = inspect(&t)["version"].as_i64().expect("a version");
        // Only partition k = 1 first, then the rest.
        let args = |only_one: bool| {
            let mut args = vec!["--zorder-by", "id,ts", "--curve", curve];
            if only_one {
                args.extend(["--where", "k = 1"]);
            }
            args.extend(["--target-size", size.as_str()]);
            args
        };
        silt_optimize_ok(&t, &args(true));
        for a in last_commit(&t) {
            for kind in ["add", "remove"] {
                if let Some(x) = a.get(kind) {
                    assert_eq!(x["partitionValues"]["k"], "1", "{curve}: {a}");
                }
            }
        }
        assert_eq!(
            last_commit_info(&t)["operationParameters"]["predicate"],
            r#"["k = 1"]"#
        );
        let r = silt_optimize_ok(&t, &args(false));
        assert_clustering_commit(&t, r#"["id","ts"]"#, curve);
        assert_same_content(&t, &[Expected::Table(&written)], &[]);
        // delta-rs reads the version before the clustering, from the same table.
        let at = version.to_string();
        assert_same_content(&t, &[Expected::Table(&t)], &["--expected-version", &at]);
        let after = clustering(&t, "id,ts");
        eprintln!("[{curve}] before {before}, after {after}; {}", r["summary"]);
        for c in ["id", "ts"] {
            assert!(
                fraction(&after, c) < 0.6 * fraction(&before, c),
                "{curve} {c}: {after} vs {before}"
            );
        }
    }
}

#[test]
fn zorder_refuses_bad_columns_clearly() {
    let seed = seed_for("zorder_refuses_bad_columns_clearly");
    let dir = tempdir("zorder-bad");
    let src = Gen::new(seed, 500).write(&dir.path().join("src"));
    let t = dir.path().join("t");
    silt_write_ok(
        &t,
        &src,
        &[
            "--partition-by",
            "k",
            "--property",
            "delta.dataSkippingNumIndexedCols=2",
        ],
    );
    let version = inspect(&t)["version"].as_i64();
    silt_optimize(&t, &["--zorder-by", "k"]).assert_error(&["`k`", "partition column"]);
    silt_optimize(&t, &["--zorder-by", "nope"]).assert_error(&["`nope`", "not in the table"]);
    silt_optimize(&t, &["--zorder-by", "f"]).assert_error(&["`f`", "statistics"]);
    silt_optimize(&t, &["--zorder-by", "id,ID"]).assert_error(&["`id`", "twice"]);
    silt_optimize(&t, &["--zorder-by", "id", "--curve", "peano"]).assert_error(&["peano"]);
    silt_optimize(&t, &["--zorder-by", "id", "--min-file-size", "10"])
        .assert_error(&["--min-file-size"]);
    silt_optimize(&t, &["--zorder-by", "id", "--where", "id > 1"])
        .assert_error(&["partition columns", "id"]);
    silt_sql(&format!("OPTIMIZE {} ZORDER BY (nope)", delta_ref(&t)), &[]).assert_error(&["nope"]);
    assert_eq!(
        inspect(&t)["version"].as_i64(),
        version,
        "nothing committed"
    );
}

/// Bytes of the data files under `dir`.
fn dir_bytes(dir: &Path) -> u64 {
    listing(dir)
        .iter()
        .filter(|(p, _)| p.ends_with(".parquet"))
        .map(|(_, n)| n)
        .sum()
}

fn optimize_cmd(table: &Path, args: &[&str]) -> std::process::Command {
    let mut cmd = std::process::Command::new(silt_bin());
    cmd.args([
        "optimize",
        "--table",
        &s(table),
        "--json",
        "-q",
        "--executors",
        "2",
    ]);
    cmd.args(args);
    cmd
}

/// A table partitioned by k (1, 2, 3) in many small files: three appends of several files.
/// A table partitioned by `k` (`dir/t`) made of `appends` appends of `rows(i)` (three source
/// files each, ids of append `i` from `i * 10,000`) in files of at most `file_size` bytes.
fn small_files_table(
    dir: &Path,
    appends: u64,
    file_size: &str,
    rows: impl Fn(u64) -> Gen,
) -> PathBuf {
    let t = dir.join("t");
    for i in 0..appends {
        let src = rows(i)
            .files(3)
            .id_start(i as i64 * 10_000)
            .write(&dir.join(format!("src{i}")));
        silt_write_ok(
            &t,
            &src,
            &["--partition-by", "k", "--target-file-size", file_size],
        );
    }
    t
}

#[test]
fn optimize_racing_appends_and_a_delete_commits_what_is_unaffected() {
    let seed = seed_for("optimize_racing_appends_and_a_delete_commits_what_is_unaffected");
    let dir = tempdir("optimize-race");
    let table = |d: &Path| {
        small_files_table(d, 3, "4096", |i| {
            Gen::new(seed + i, 900).k_domain("1,2,3").no_null_k()
        })
    };
    let t = table(dir.path());
    let files_before = inspect(&t)["num_files"].as_i64().unwrap();

    // A delta-rs append lands while OPTIMIZE's first task is paused: OPTIMIZE commits on
    // top of it (snapshot isolation) and no row is lost.
    let late = Gen::new(seed + 10, 300)
        .k_domain("1,2,3")
        .no_null_k()
        .id_start(100_000)
        .write(&dir.path().join("late"));
    let original = dir.path().join("original");
    copy_dir(&t, &original);
    let (oo, _) = crate::concurrency::a_loses_the_race(
        dir.path(),
        optimize_cmd(&t, &["--target-size", "1000000"]),
        || {
            oracle_ok(&[
                "oracle-write",
                "--table",
                &s(&t),
                "--source",
                &s(&late),
                "--mode",
                "append",
            ])
        },
    );
    oo.assert_ok();
    assert!(
        oo.json()["winning_commits_checked"].as_u64() >= Some(1),
        "{}",
        oo.describe()
    );
    assert_eq!(last_commit_info(&t)["operation"], "OPTIMIZE");
    assert_same_content(
        &t,
        &[Expected::Table(&original), Expected::Parquet(&late)],
        &[],
    );
    assert!(inspect(&t)["num_files"].as_i64().unwrap() < files_before);

    // A delta-rs DELETE of partition k = 2 lands while OPTIMIZE is paused: OPTIMIZE commits
    // the bins of the other partitions and leaves k = 2 (its files are gone) alone.
    let dir2 = tempdir("optimize-race-delete");
    let t2 = table(dir2.path());
    let (oo, _) = crate::concurrency::a_loses_the_race(
        dir2.path(),
        optimize_cmd(&t2, &["--target-size", "1000000"]),
        || {
            oracle_ok(&[
                "dml",
                "--table",
                &s(&t2),
                "--op",
                "delete",
                "--predicate",
                "k = 2",
            ])
        },
    );
    oo.assert_ok();
    let j = oo.json();
    assert!(j["summary"].as_str().unwrap().contains("left out"), "{j}");
    let actions = last_commit(&t2);
    assert!(
        actions
            .iter()
            .filter_map(|a| a.get("add").or_else(|| a.get("remove")))
            .all(|x| x["partitionValues"]["k"] != "2"),
        "nothing of k = 2 in the OPTIMIZE commit"
    );
    assert!(actions.iter().any(|a| a.get("remove").is_some()));
    let expected = dir2.path().join("expected.parquet");
    oracle_ok(&[
        "expect-filter",
        "--table",
        &s(&original),
        "--predicate-py",
        "col('k') == 2",
        "--out",
        &s(&expected),
    ]);
    assert_same_content(&t2, &[Expected::Parquet(&expected)], &[]);
    // The left-out bins' files were deleted.
    let job = j["job_id"].as_str().unwrap().to_string();
    let referenced: Vec<String> = inspect(&t2)["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| pct_decode(f["path"].as_str().unwrap()))
        .collect();
    for f in data_files(&t2)
        .into_iter()
        .filter(|f| f.contains(&format!("part-{job}-")))
    {
        assert!(
            referenced.iter().any(|r| f.ends_with(r.as_str())),
            "left behind: {f}"
        );
    }

    // Every bin's files removed concurrently: a clear conflict, nothing committed.
    let dir3 = tempdir("optimize-race-delete-all");
    let t3 = table(dir3.path());
    let (oo, _) = crate::concurrency::a_loses_the_race(
        dir3.path(),
        optimize_cmd(&t3, &["--target-size", "1000000"]),
        || {
            oracle_ok(&[
                "dml",
                "--table",
                &s(&t3),
                "--op",
                "delete",
                "--predicate",
                "id >= 0",
            ])
        },
    );
    oo.assert_error(&["ConcurrentDeleteReadException", "nothing was committed"]);
    assert_eq!(last_commit_info(&t3)["operation"], "DELETE");
}

#[test]
fn optimize_commits_in_batches_each_durable() {
    let seed = seed_for("optimize_commits_in_batches_each_durable");
    let dir = tempdir("optimize-batches");
    // 12 partitions of small files: 12 bins, 8 tasks per batch on 2 executors: 2 batches.
    let t = small_files_table(dir.path(), 2, "4096", |i| {
        Gen::new(seed + i, 2400)
            .k_domain("1,2,3,4,5,6,7,8,9,10,11,12")
            .no_null_k()
    });
    let original = dir.path().join("original");
    copy_dir(&t, &original);
    let before = inspect(&t)["version"].as_i64().unwrap();
    let r = silt_optimize_ok(
        &t,
        &["--target-size", "1000000", "--max-commit-interval", "0"],
    );
    let after = inspect(&t)["version"].as_i64().unwrap();
    assert_eq!(after - before, 2, "one commit per batch: {r}");
    for v in before + 1..=after {
        let commit =
            std::fs::read_to_string(t.join("_delta_log").join(format!("{v:020}.json"))).unwrap();
        assert!(commit.contains("\"operation\":\"OPTIMIZE\""), "{commit}");
    }
    assert_same_content(&t, &[Expected::Table(&original)], &[]);
    assert_eq!(r["version"].as_i64(), Some(after));

    // A batch that fails after an earlier one committed: the committed batch stands, with
    // its files; the failed batch leaves nothing behind.
    let t2 = dir.path().join("t2");
    copy_dir(&original, &t2);
    let before = inspect(&t2)["version"].as_i64().unwrap();
    let mut cmd = optimize_cmd(
        &t2,
        &["--target-size", "1000000", "--max-commit-interval", "0"],
    );
    cmd.env("SILT_FAULTS", "start:s1/t*/a*:fatal");
    let out = run(cmd, std::time::Duration::from_secs(300));
    out.assert_error(&["injected"]);
    assert_eq!(
        inspect(&t2)["version"].as_i64(),
        Some(before + 1),
        "batch 1 committed"
    );
    assert_same_content(&t2, &[Expected::Table(&original)], &[]);
    let referenced: Vec<String> = inspect(&t2)["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| pct_decode(f["path"].as_str().unwrap()))
        .collect();
    let job = out.json()["job_id"].as_str().unwrap().to_string();
    for f in data_files(&t2)
        .into_iter()
        .filter(|f| f.contains(&format!("part-{job}-")))
    {
        assert!(
            referenced.iter().any(|r| f.ends_with(r.as_str())),
            "left behind: {f}"
        );
    }
    assert!(
        referenced
            .iter()
            .any(|r| r.contains(&format!("part-{job}-"))),
        "the committed batch's files are kept"
    );

    // Bad durations are refused.
    silt_optimize(&t, &["--max-commit-interval", "soon"])
        .assert_error(&["--max-commit-interval", "soon"]);
}

#[test]
fn auto_compaction_follows_a_stream_of_small_appends() {
    let seed = seed_for("auto_compaction_follows_a_stream_of_small_appends");
    let dir = tempdir("auto-compact");
    let t = dir.path().join("t");
    let mut sources = Vec::new();
    let mut triggered_at = None;
    for i in 0..6u64 {
        let src = Gen::new(seed + i, 200)
            .files(2)
            .k_domain("1,2")
            .no_null_k()
            .id_start(i as i64 * 1000)
            .write(&dir.path().join(format!("src{i}")));
        let mut extra = vec!["--partition-by", "k"];
        if i == 0 {
            extra.extend([
                "--property",
                "delta.autoOptimize.autoCompact=true",
                "--property",
                "silt.autoCompact.minNumFiles=6",
            ]);
        }
        let out = silt_write(&t, &src, &extra);
        out.assert_ok();
        let j = out.json();
        sources.push(src);
        let summary = j["summary"].as_str().unwrap_or_default().to_string();
        if summary.contains("auto compaction") {
            // The write itself committed first; the compaction right after it.
            assert!(summary.contains("auto compaction (job"), "{summary}");
            let info = last_commit_info(&t);
            assert_eq!(info["operation"], "OPTIMIZE", "{summary}");
            assert_eq!(
                inspect(&t)["version"].as_i64(),
                j["version"].as_i64().map(|v| v + 1)
            );
            triggered_at.get_or_insert(i);
        }
    }
    // Two partitions, two files per append each: 6 small files in a partition after the
    // third append.
    assert_eq!(
        triggered_at,
        Some(2),
        "auto compaction after the third append"
    );
    let expected: Vec<Expected> = sources.iter().map(|p| Expected::Parquet(p)).collect();
    assert_same_content(&t, &expected, &[]);
    assert!(inspect(&t)["num_files"].as_i64().unwrap() < 12);
}

/// OPTIMIZE (compaction, then Z-order) of tables Spark wrote: checkpointed, partitioned,
/// with deletion vectors (purged by the rewrite). The rows stay those of the table before,
/// read from its untouched copy (polars reads deletion vectors; delta-rs here does not).
#[test]
fn optimize_spark_tables_keeps_their_content() {
    let _ = seed_for("optimize_spark_tables_keeps_their_content");
    let dir = tempdir("optimize-golden");
    let tables: &[(&str, &str, &[&str])] = &[
        (
            "delta-kernel-rs-golden/basic-with-inserts-deletes-checkpoint",
            "id",
            &[],
        ),
        ("dat/basic_partitioned", "number,a_float", &[]),
        (
            "delta-kernel-rs-golden/dv-partitioned-with-checkpoint",
            "col1,col2",
            &["--readers", "polars"],
        ),
    ];
    for (i, (rel, zorder, readers)) in tables.iter().enumerate() {
        let original = golden(&format!("{rel}/delta"));
        let t = golden_copy(rel, dir.path(), &format!("g{i}"));
        let r = silt_optimize_ok(&t, &["--target-size", "100000000"]);
        if r["version"].is_i64() {
            assert_eq!(last_commit_info(&t)["operation"], "OPTIMIZE", "{rel}");
        }
        assert_same_content(&t, &[Expected::Table(&original)], readers);
        if rel.contains("dv-") {
            assert!(
                metric(&r, "numDeletionVectorsRemoved") > 0,
                "{rel}: DVs purged: {r}"
            );
            assert!(
                last_commit(&t)
                    .iter()
                    .filter_map(|a| a.get("add"))
                    .all(|a| a.get("deletionVector").is_none_or(|d| d.is_null())),
                "{rel}: rewritten files carry no deletion vector"
            );
        }
        silt_optimize_ok(&t, &["--zorder-by", zorder, "--curve", "hilbert"]);
        assert_eq!(last_commit_info(&t)["operation"], "OPTIMIZE", "{rel}");
        assert_same_content(&t, &[Expected::Table(&original)], readers);
        let again = silt_optimize_ok(&t, &["--zorder-by", zorder, "--curve", "hilbert"]);
        assert!(again["version"].is_null(), "{rel}: {again}");
    }
}

/// Thousands of small files in a few partitions: per-partition bins, one task each, every
/// row kept, and delta-rs's compaction of a copy ending with as many files.
#[test]
fn compaction_of_thousands_of_small_files() {
    let seed = seed_for("compaction_of_thousands_of_small_files");
    let dir = tempdir("optimize-thousands");
    let t = dir.path().join("t");
    // About 2,500 files of 16 rows over partitions 1..4 (written by pyarrow, converted by
    // delta-rs: fast to make).
    oracle_ok(&[
        "small-files-table",
        "--out",
        &s(&t),
        "--seed",
        &seed.to_string(),
        "--rows",
        "40000",
        "--rows-per-file",
        "16",
    ]);
    let before = inspect(&t)["num_files"].as_i64().unwrap();
    assert!(before >= 2000, "{before} files");
    let original = dir.path().join("original");
    copy_dir(&t, &original);
    let theirs = dir.path().join("delta-rs");
    copy_dir(&t, &theirs);
    let r = silt_optimize_ok(&t, &[]);
    eprintln!("[thousands] {before} files: {}", r["summary"]);
    assert_eq!(metric(&r, "numRemovedFiles"), before);
    assert_eq!(
        metric(&r, "numAddedFiles"),
        4,
        "one file per partition: {r}"
    );
    assert_same_content(&t, &[Expected::Table(&original)], &[]);
    oracle_ok(&["compact", "--table", &s(&theirs)]);
    assert_eq!(inspect(&theirs)["num_files"].as_i64(), Some(4));
    let again = silt_optimize_ok(&t, &[]);
    assert!(again["version"].is_null(), "{again}");
}
