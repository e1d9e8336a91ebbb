//! DELETE/UPDATE racing concurrent delta-rs (Python `deltalake`) writers, following Delta's
//! isolation levels. Deterministic: silt's job is paused after its rewrite task wrote its
//! files (a `pause` fault), the other writer commits, then silt's commit loses the race and
//! checks the winning commit. Errors name Delta's exception and the winning version.

use std::path::{Path, PathBuf};

use crate::concurrency::a_loses_the_race;
use crate::support::*;

/// A table of 2 silt writes (ids 0..400 and 1000..1400), unpartitioned or by `k`, with
/// `extra` write options; returns it with the two sources.
fn table(dir: &Path, seed: u64, extra: &[&str]) -> (PathBuf, PathBuf, PathBuf) {
    let a = Gen::new(seed, 400).files(2).write(&dir.join("a"));
    let b = Gen::new(seed + 1, 400)
        .files(2)
        .id_start(1000)
        .write(&dir.join("b"));
    let t = dir.join("t");
    silt_write_ok(&t, &a, extra);
    silt_write_ok(&t, &b, &[]);
    (t, a, b)
}

/// Rows the oracle expects after `DELETE … WHERE <cond>` on `table` as it is now (polars,
/// keeping rows for which the condition is not true).
fn expected_after_delete(dir: &Path, table: &Path, polars_cond: &str, name: &str) -> PathBuf {
    let out = dir.join(format!("{name}.parquet"));
    oracle_ok(&[
        "expect-filter",
        "--table",
        &s(table),
        "--predicate-py",
        polars_cond,
        "--out",
        &s(&out),
    ]);
    out
}

/// delta-rs appends `source` to `table` (a plain append: nothing read).
fn delta_rs_append(table: &Path, source: &Path) -> Out {
    oracle_ok(&[
        "oracle-write",
        "--table",
        &s(table),
        "--source",
        &s(source),
        "--mode",
        "append",
    ])
}

fn silt_sql_process(sql: &str) -> std::process::Command {
    silt_sql_cmd(sql, &[])
}

#[test]
fn blind_append_into_the_deleted_range_by_isolation_level() {
    let seed = seed_for("blind_append_into_the_deleted_range_by_isolation_level");
    for (level, conflict) in [("WriteSerializable", false), ("Serializable", true)] {
        let dir = tempdir(&format!("conflict-append-{level}"));
        let (t, _, _) = table(
            dir.path(),
            seed,
            &["--property", &format!("delta.isolationLevel={level}")],
        );
        // Rows in the deleted range (ids < 200), appended by delta-rs while the DELETE runs.
        let late = Gen::new(seed + 7, 50)
            .id_start(100)
            .write(&dir.path().join("late"));
        let expected = expected_after_delete(dir.path(), &t, "col('id') < 200", "kept");
        let (od, oa) = a_loses_the_race(
            dir.path(),
            silt_sql_process(&format!("DELETE FROM {} WHERE id < 200", delta_ref(&t))),
            || delta_rs_append(&t, &late),
        );
        assert!(oa.ok());
        if conflict {
            // Serializable: the append added rows the DELETE's condition covers.
            od.assert_error(&["ConcurrentAppendException", "version 2"]);
            assert_eq!(commit_files(&t).len(), 3, "the DELETE committed nothing");
            assert_eq!(inspect(&t)["num_rows"], 850);
        } else {
            // WriteSerializable: the blind append is ordered after the DELETE; its rows stay.
            od.assert_ok();
            assert_eq!(od.json()["winning_commits_checked"], 1, "{}", od.describe());
            assert_eq!(od.version(), Some(3));
            assert_same_content(
                &t,
                &[Expected::Parquet(&expected), Expected::Parquet(&late)],
                &[],
            );
        }
    }
}

#[test]
fn append_outside_the_read_range_does_not_conflict_even_when_serializable() {
    let seed = seed_for("append_outside_the_read_range_does_not_conflict_even_when_serializable");
    let dir = tempdir("conflict-append-outside");
    let (t, _, _) = table(
        dir.path(),
        seed,
        &["--property", "delta.isolationLevel=Serializable"],
    );
    // ids 5000.. : the appended file's statistics show no row with id < 200.
    let late = Gen::new(seed + 8, 50)
        .id_start(5000)
        .write(&dir.path().join("late"));
    let expected = expected_after_delete(dir.path(), &t, "col('id') < 200", "kept");
    let (od, oa) = a_loses_the_race(
        dir.path(),
        silt_sql_process(&format!("DELETE FROM {} WHERE id < 200", delta_ref(&t))),
        || delta_rs_append(&t, &late),
    );
    assert!(oa.ok());
    od.assert_ok();
    assert_eq!(od.json()["winning_commits_checked"], 1, "{}", od.describe());
    assert_same_content(
        &t,
        &[Expected::Parquet(&expected), Expected::Parquet(&late)],
        &[],
    );
}

#[test]
fn concurrent_delete_of_a_file_this_job_read_fails_it() {
    let seed = seed_for("concurrent_delete_of_a_file_this_job_read_fails_it");
    let dir = tempdir("conflict-delete-read");
    let (t, _, _) = table(dir.path(), seed, &["--partition-by", "k"]);
    let rows_k2 = {
        let out = dir.path().join("k2.parquet");
        let r = oracle_ok(&[
            "expect-filter",
            "--table",
            &s(&t),
            "--predicate-py",
            "col('k') == 2",
            "--keep-matching",
            "--out",
            &s(&out),
        ]);
        serde_json::from_str::<serde_json::Value>(r.stdout.trim()).unwrap()["written"]
            .as_i64()
            .unwrap()
    };
    // The UPDATE reads every file (its condition is an expression statistics cannot decide);
    // meanwhile delta-rs deletes partition k=2 whole: files the UPDATE read, removed with no
    // new file added.
    let (ou, od) = a_loses_the_race(
        dir.path(),
        silt_sql_process(&format!(
            "UPDATE {} SET f = 0 WHERE id + 0 < 300",
            delta_ref(&t)
        )),
        || {
            let out = oracle(&[
                "dml".to_string(),
                "--table".into(),
                s(&t),
                "--op".into(),
                "delete".into(),
                "--predicate".into(),
                "k = 2".into(),
            ]);
            assert!(out.ok(), "{}", out.describe());
            out
        },
    );
    assert!(od.ok());
    let line = ou.assert_error(&["ConcurrentDeleteReadException", "version 2"]);
    assert!(line.contains("nothing was committed"), "{line}");
    assert_eq!(
        commit_files(&t).len(),
        3,
        "only delta-rs's delete committed"
    );
    assert_eq!(inspect(&t)["num_rows"].as_i64(), Some(800 - rows_k2));
    let job = ou.json()["job_id"].as_str().unwrap().to_string();
    let leftovers: Vec<String> = data_files(&t)
        .into_iter()
        .filter(|f| f.contains(&format!("part-{job}-")))
        .collect();
    assert!(
        leftovers.is_empty(),
        "the failed UPDATE left files: {leftovers:?}"
    );
}

#[test]
fn compaction_of_files_only_read_is_retried_safely() {
    let seed = seed_for("compaction_of_files_only_read_is_retried_safely");
    let dir = tempdir("conflict-compaction");
    let (t, _, _) = table(dir.path(), seed, &["--partition-by", "k"]);
    // Expressions keep the partition values and statistics from ruling files out: every file
    // is scanned, only the k=1 files are rewritten. Meanwhile delta-rs compacts partition k=2
    // (dataChange=false): files this job read but does not remove.
    let expected =
        expected_after_delete(dir.path(), &t, "(col('k') == 1) & (col('id') >= 0)", "kept");
    let (od, oc) = a_loses_the_race(
        dir.path(),
        silt_sql_process(&format!(
            "DELETE FROM {} WHERE k + 0 = 1 AND id + 0 >= 0",
            delta_ref(&t)
        )),
        || {
            let out = oracle(&[
                "compact".to_string(),
                "--table".into(),
                s(&t),
                "--partition".into(),
                "k=2".into(),
            ]);
            assert!(out.ok(), "{}", out.describe());
            out
        },
    );
    assert!(oc.ok());
    let compacted: serde_json::Value = serde_json::from_str(oc.stdout.trim()).unwrap();
    assert!(
        compacted["metrics"]["numFilesRemoved"]
            .as_i64()
            .unwrap_or(0)
            >= 2,
        "delta-rs compacted files of k=2: {compacted}"
    );
    od.assert_ok();
    assert_eq!(od.json()["winning_commits_checked"], 1, "{}", od.describe());
    assert_same_content(&t, &[Expected::Parquet(&expected)], &[]);
}

#[test]
fn concurrent_metadata_change_fails_it() {
    let seed = seed_for("concurrent_metadata_change_fails_it");
    let dir = tempdir("conflict-metadata");
    let (t, _, _) = table(dir.path(), seed, &[]);
    let (od, op) = a_loses_the_race(
        dir.path(),
        silt_sql_process(&format!("DELETE FROM {} WHERE id < 50", delta_ref(&t))),
        || {
            let out = oracle(&[
                "set-properties".to_string(),
                "--table".into(),
                s(&t),
                "--prop".into(),
                "team=data".into(),
            ]);
            assert!(out.ok(), "{}", out.describe());
            out
        },
    );
    assert!(op.ok());
    od.assert_error(&["MetadataChangedException", "version 2"]);
    assert_eq!(inspect(&t)["num_rows"], 800);
}
