//! DELETE and UPDATE through `silt sql`, differential against delta-rs (`deltalake`'s own
//! `delete`/`update` on an identical copy of the table): same content (read by delta-rs AND
//! polars), one commit (none when nothing matches), the same row counts in the metrics, no
//! more files rewritten. Random tables from a logged seed; golden tables written by Spark
//! (checkpoints, partitions, deletion vectors).

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::support::*;

/// A table made once per layout, copied for each case.
struct Base {
    table: PathBuf,
    rows: usize,
    version: i64,
}

/// A random table with nulls in most columns (see `oracle.py gen`), in 4 files per write,
/// written by silt or delta-rs, partitioned by `k` or not.
fn base_table(dir: &Path, seed: u64, partitioned: bool, by_silt: bool) -> Base {
    let rows = 600;
    let src = Gen::new(seed, rows).files(4).write(&dir.join("src"));
    let more = Gen::new(seed + 1, rows)
        .files(2)
        .id_start(rows as i64)
        .write(&dir.join("src2"));
    let table = dir.join("base");
    let part: &[&str] = if partitioned {
        &["--partition-by", "k"]
    } else {
        &[]
    };
    for s in [&src, &more] {
        if by_silt {
            silt_write_ok(&table, s, part);
        } else {
            oracle_write(&table, s, "parquet", part);
        }
    }
    Base {
        table,
        rows: 2 * rows,
        version: 1,
    }
}

/// Runs one statement with silt on a copy and the oracle on another; compares (`readers`:
/// extra `compare` options, e.g. to leave out a reader that cannot read the table).
fn differential(
    dir: &Path,
    base: &Base,
    case: &str,
    sql_tail: &str,
    oracle_call: impl FnOnce(&Path) -> Value,
    readers: &[&str],
) {
    let ours = dir.join(format!("{case}-silt"));
    let theirs = dir.join(format!("{case}-delta-rs"));
    copy_dir(&base.table, &ours);
    copy_dir(&base.table, &theirs);
    let statement = sql_tail.replace("{t}", &delta_ref(&ours));
    let out = silt_sql(&statement, &[]);
    out.assert_ok();
    let got = out.json();
    let want = oracle_call(&theirs);
    eprintln!(
        "[{case}] silt: {}\n[{case}] delta-rs: {want}",
        got["metrics"]
    );
    match want["version"].as_i64() {
        Some(_) => {
            assert_eq!(
                got["version"].as_i64(),
                Some(base.version + 1),
                "[{case}] one commit\n{}",
                out.describe()
            );
        }
        None => {
            assert!(
                got["version"].is_null(),
                "[{case}] nothing matched: no commit\n{}",
                out.describe()
            );
            assert_eq!(commit_files(&ours).len() as i64, base.version + 1);
        }
    }
    let m = &want["metrics"];
    if got["version"].is_i64() {
        for (ours_name, theirs_name) in [
            ("numDeletedRows", "num_deleted_rows"),
            ("numUpdatedRows", "num_updated_rows"),
        ] {
            if let Some(n) = m[theirs_name].as_i64() {
                assert_eq!(metric(&got, ours_name), n, "[{case}] {ours_name}");
            }
        }
        assert!(
            metric(&got, "numRemovedFiles") <= m["num_removed_files"].as_i64().unwrap_or(0),
            "[{case}] silt rewrote more files than delta-rs: {} vs {m}",
            got["metrics"]
        );
        let removed_rows: i64 = metric(&got, "numCopiedRows")
            + got["metrics"]
                .get("numDeletedRows")
                .map(|_| metric(&got, "numDeletedRows"))
                .unwrap_or(0)
            + got["metrics"]
                .get("numUpdatedRows")
                .map(|_| metric(&got, "numUpdatedRows"))
                .unwrap_or(0);
        assert!(
            removed_rows <= base.rows as i64,
            "[{case}] row metrics add up"
        );
    }
    assert_same_content(&ours, &[Expected::Table(&theirs)], readers);
}

#[test]
fn delete_matches_delta_rs_on_random_tables() {
    let seed = seed_for("delete_matches_delta_rs_on_random_tables");
    let cases: &[(&str, Option<&str>)] = &[
        ("partition", Some("k = 1")),
        ("data", Some("id < 250")),
        ("nothing", Some("id < -1")),
        ("everything", None),
        ("nulls", Some("s IS NULL")),
        ("null-results", Some("f > 0 AND k <> 2")),
        ("mixed", Some("k = 3 OR (d >= '1970-01-01' AND flag)")),
    ];
    for (partitioned, by_silt) in [(true, true), (false, true), (true, false), (false, false)] {
        let layout = format!(
            "{}-{}",
            if partitioned { "part" } else { "flat" },
            if by_silt { "silt" } else { "delta-rs" }
        );
        let dir = tempdir(&format!("delete-{layout}"));
        let base = base_table(dir.path(), seed, partitioned, by_silt);
        for (case, predicate) in cases {
            let tail = match predicate {
                Some(p) => format!("DELETE FROM {{t}} WHERE {p}"),
                None => "DELETE FROM {t}".to_string(),
            };
            differential(
                dir.path(),
                &base,
                &format!("{layout}-{case}"),
                &tail,
                |t| oracle_dml(t, "delete", *predicate, &[]),
                &[],
            );
        }
    }
}

#[test]
fn update_matches_delta_rs_on_random_tables() {
    let seed = seed_for("update_matches_delta_rs_on_random_tables");
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], Option<&'a str>);
    let cases: &[Case] = &[
        ("partition", &[("f", "f + 1")], Some("k = 1")),
        (
            "data",
            &[("s", "upper(s)"), ("f", "f * 2")],
            Some("id % 3 = 0"),
        ),
        // Rows move to another partition.
        ("partition-column", &[("k", "k + 10")], Some("id < 300")),
        ("everything", &[("flag", "NOT flag")], None),
        ("to-null", &[("s", "NULL")], Some("f < 0")),
        ("nothing", &[("f", "0")], Some("id < -1")),
    ];
    for (partitioned, by_silt) in [(true, true), (false, false)] {
        let layout = format!(
            "{}-{}",
            if partitioned { "part" } else { "flat" },
            if by_silt { "silt" } else { "delta-rs" }
        );
        let dir = tempdir(&format!("update-{layout}"));
        let base = base_table(dir.path(), seed, partitioned, by_silt);
        for (case, sets, predicate) in cases {
            let set_sql = sets
                .iter()
                .map(|(c, e)| format!("{c} = {e}"))
                .collect::<Vec<_>>()
                .join(", ");
            let tail = match predicate {
                Some(p) => format!("UPDATE {{t}} SET {set_sql} WHERE {p}"),
                None => format!("UPDATE {{t}} SET {set_sql}"),
            };
            differential(
                dir.path(),
                &base,
                &format!("{layout}-{case}"),
                &tail,
                |t| oracle_dml(t, "update", *predicate, sets),
                &[],
            );
        }
    }
}

#[test]
fn commit_info_as_delta_spark_writes_it() {
    let seed = seed_for("commit_info_as_delta_spark_writes_it");
    let dir = tempdir("dml-commit-info");
    let base = base_table(dir.path(), seed, true, true);
    let t = &base.table;
    let before = commit_files(t).len();
    let r = silt_sql_ok(&format!(
        "DELETE FROM {} WHERE id < 100 AND k = 1",
        delta_ref(t)
    ));
    assert_eq!(commit_files(t).len(), before + 1, "exactly one commit");
    let info = last_commit_info(t);
    assert_eq!(info["operation"], "DELETE");
    assert_eq!(
        info["operationParameters"]["predicate"],
        r#"["id < 100 AND k = 1"]"#
    );
    assert_eq!(info["isolationLevel"], "WriteSerializable");
    assert_eq!(info["isBlindAppend"], false);
    assert_eq!(info["readVersion"], base.version);
    for m in [
        "numRemovedFiles",
        "numAddedFiles",
        "numDeletedRows",
        "numCopiedRows",
        "executionTimeMs",
        "scanTimeMs",
        "rewriteTimeMs",
        "numRemovedBytes",
        "numAddedBytes",
    ] {
        assert!(
            info["operationMetrics"][m].is_string(),
            "DELETE metric {m}: {info}"
        );
        assert_eq!(info["operationMetrics"][m], r["metrics"][m]);
    }
    // Every removed file was active and every add is new.
    let actions = last_commit(t);
    let removes = actions.iter().filter(|a| a.get("remove").is_some()).count() as i64;
    assert_eq!(removes, metric(&r, "numRemovedFiles"));

    let r = silt_sql_ok(&format!("UPDATE {} SET f = 0 WHERE k = 2", delta_ref(t)));
    let info = last_commit_info(t);
    assert_eq!(info["operation"], "UPDATE");
    assert_eq!(info["operationParameters"]["predicate"], r#"["k = 2"]"#);
    for m in [
        "numUpdatedRows",
        "numCopiedRows",
        "numAddedFiles",
        "numRemovedFiles",
    ] {
        assert_eq!(
            info["operationMetrics"][m], r["metrics"][m],
            "UPDATE metric {m}"
        );
    }
    assert!(metric(&r, "numUpdatedRows") > 0);
    // delta-rs reads the result and sees the version.
    assert_eq!(inspect(t)["version"], base.version + 2);
}

#[test]
fn dml_on_spark_tables_with_checkpoints_and_partitions() {
    let _ = seed_for("dml_on_spark_tables_with_checkpoints_and_partitions");
    let dir = tempdir("dml-golden");
    // (table, DELETE condition, UPDATE, compare options)
    let tables: &[(&str, &str, &str, &[&str])] = &[
        (
            "delta-kernel-rs-golden/basic-with-inserts-deletes-checkpoint",
            "id % 7 = 3",
            "SET id = id + 1000 WHERE id < 20",
            &[],
        ),
        (
            "dat/basic_partitioned",
            "letter = 'a' OR number > 4",
            "SET number = number * 10 WHERE letter IS NULL OR letter = 'b'",
            &[],
        ),
        // Partition directories with escapes; a binary partition column, which polars cannot
        // read and delta-rs writes wrongly (as `\u0068…` text): compared without it.
        (
            "dat/multi_partitioned",
            "number < 7",
            "SET number = number + 100 WHERE number < 7",
            &["--readers", "deltalake", "--columns", "letter,date,number"],
        ),
    ];
    for (i, (rel, cond, update, readers)) in tables.iter().enumerate() {
        let version = inspect(&golden(&format!("{rel}/delta")))["version"]
            .as_i64()
            .unwrap();
        let base = Base {
            table: golden_copy(rel, dir.path(), &format!("g{i}")),
            rows: inspect(&golden(&format!("{rel}/delta")))["num_rows"]
                .as_u64()
                .unwrap() as usize,
            version,
        };
        differential(
            dir.path(),
            &base,
            &format!("g{i}-delete"),
            &format!("DELETE FROM {{t}} WHERE {cond}"),
            |t| oracle_dml(t, "delete", Some(cond), &[]),
            readers,
        );
        let (sets, pred) = parse_update(update);
        let sets: Vec<(&str, &str)> = sets.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        differential(
            dir.path(),
            &base,
            &format!("g{i}-update"),
            &format!("UPDATE {{t}} {update}"),
            |t| oracle_dml(t, "update", Some(&pred), &sets),
            readers,
        );
    }
}

#[test]
fn dml_on_spark_paths_written_unencoded() {
    let _ = seed_for("dml_on_spark_paths_written_unencoded");
    let dir = tempdir("dml-emoji");
    // Spark wrote this partition directory's emoji literally in the log (`data=😈`). delta-rs
    // cannot remove such a file (it re-encodes the path), so it is no oracle here: the table
    // is checked directly, read by delta-rs.
    let rel = "dat/multi_partitioned";
    let t = golden_copy(rel, dir.path(), "t");
    let r = silt_sql_ok(&format!(
        "UPDATE {} SET letter = 'moved' WHERE number >= 7",
        delta_ref(&t)
    ));
    assert_eq!(metric(&r, "numUpdatedRows"), 1);
    let removed: Vec<String> = last_commit(&t)
        .iter()
        .filter_map(|a| a["remove"]["path"].as_str().map(str::to_string))
        .collect();
    assert_eq!(removed.len(), 1);
    assert!(
        removed[0].contains("😈"),
        "the remove names the file as its add does: {removed:?}"
    );
    let info = inspect(&t);
    assert_eq!(
        info["num_rows"], 2,
        "the moved row is not duplicated: {info}"
    );
    let r = silt_sql_ok(&format!(
        "DELETE FROM {} WHERE letter = 'moved'",
        delta_ref(&t)
    ));
    assert_eq!(metric(&r, "numDeletedRows"), 1);
    assert_eq!(inspect(&t)["num_rows"], 1);
}

/// `SET a = x, b = y WHERE p` → ([(a, x), (b, y)], p) for the oracle.
fn parse_update(update: &str) -> (Vec<(String, String)>, String) {
    let rest = update.strip_prefix("SET ").expect("SET …");
    let (sets, pred) = rest.split_once(" WHERE ").expect("… WHERE …");
    let sets = sets
        .split(", ")
        .map(|a| {
            let (c, e) = a.split_once(" = ").expect("c = e");
            (c.to_string(), e.to_string())
        })
        .collect();
    (sets, pred.to_string())
}

#[test]
fn dml_on_a_table_with_deletion_vectors() {
    let _ = seed_for("dml_on_a_table_with_deletion_vectors");
    let dir = tempdir("dml-dv");
    let rel = "delta-kernel-rs-golden/dv-partitioned-with-checkpoint";
    // DELETE: rows deleted by a vector stay deleted in what is rewritten; the expected content
    // is the table's (polars: it applies deletion vectors) minus the matching rows.
    let t = golden_copy(rel, dir.path(), "t");
    let expected = dir.path().join("expected.parquet");
    oracle_ok(&[
        "expect-filter",
        "--table",
        &s(&t),
        "--predicate-py",
        "col('col1') % 3 == 0",
        "--out",
        &s(&expected),
    ]);
    // Copy-on-write (the table enables deletion vectors; `dv.rs` covers writing them).
    let r = silt_sql(
        &format!("DELETE FROM {} WHERE col1 % 3 = 0", delta_ref(&t)),
        &["--copy-on-write"],
    );
    r.assert_ok();
    let r = r.json();
    assert!(metric(&r, "numDeletedRows") > 0);
    assert!(metric(&r, "numDeletionVectorsRemoved") > 0, "{r}");
    assert_same_content(
        &t,
        &[Expected::Parquet(&expected)],
        &["--readers", "polars"],
    );
    // Removes carry the deletion vector of the file they retire.
    let with_dv = last_commit(&t)
        .iter()
        .filter(|a| a["remove"]["deletionVector"].is_object())
        .count();
    assert!(
        with_dv > 0,
        "removes of files with deletion vectors keep them"
    );

    // UPDATE against delta-rs, which can rewrite (not read) tables with deletion vectors.
    let ours = golden_copy(rel, dir.path(), "u-silt");
    let theirs = golden_copy(rel, dir.path(), "u-delta-rs");
    silt_sql(
        &format!(
            "UPDATE {} SET col2 = concat(col2, '!') WHERE col1 > 10",
            delta_ref(&ours)
        ),
        &["--copy-on-write"],
    )
    .assert_ok();
    oracle_dml(
        &theirs,
        "update",
        Some("col1 > 10"),
        &[("col2", "concat(col2, '!')")],
    );
    assert_same_content(&ours, &[Expected::Table(&theirs)], &["--readers", "polars"]);
}
