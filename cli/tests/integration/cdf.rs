//! Change data feed (`delta.enableChangeDataFeed`): DELETE, UPDATE, MERGE and replaceWhere
//! record the rows they change inside files in `cdc` files (`_change_data/`), each commit's
//! changes whole; the feed delta-rs reads from silt's table (`load_cdf`) equals, commit by
//! commit, the feed of the same statements run by delta-rs on a copy of the table.

use std::path::Path;

use serde_json::Value;

use crate::dv::{DmlPair, RandomDml, random_dml_step};
use crate::merge::Rng;
use crate::support::*;

/// The change data feed of a table from version `start` on, per version (delta-rs's reader).
/// `comparable`: without pairs of change rows of a row left as it was (see the oracle's
/// `--cancel-unchanged`): delta-rs records an update's before and after images only where
/// they differ (Delta Spark and silt record every updated row), and an update changing no
/// value gets no change data, so readers see its rewritten files' rows deleted and inserted.
fn feed(table: &Path, start: i64, comparable: bool) -> Value {
    let start = start.to_string();
    let mut args = vec![
        "cdf",
        "--table",
        table.to_str().expect("path"),
        "--start",
        &start,
    ];
    if comparable {
        args.push("--cancel-unchanged");
    }
    oracle_ok(&args).json()
}

/// `commitInfo` of one version.
fn commit_info(table: &Path, version: i64) -> Value {
    let text =
        std::fs::read_to_string(table.join("_delta_log").join(format!("{version:020}.json")))
            .expect("commit file");
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find_map(|a| a.get("commitInfo").cloned())
        .expect("commitInfo")
}

/// Every version's change data holds as many rows of each change type as its commit's
/// metrics count (one before and one after image per updated row, as Delta Spark records).
fn assert_feed_matches_metrics(what: &str, table: &Path, feed: &Value) {
    for (v, rows) in feed.as_object().expect("feed") {
        let version: i64 = v.parse().expect("version");
        if version == 0 {
            continue;
        }
        let info = commit_info(table, version);
        let metric = |name: &str| -> Option<usize> {
            info["operationMetrics"][name]
                .as_str()
                .and_then(|n| n.parse().ok())
        };
        let count = |kind: &str| {
            rows.as_array()
                .expect("rows")
                .iter()
                .filter(|r| r["_change_type"] == kind)
                .count()
        };
        let expected: Vec<(&str, Option<usize>)> = match info["operation"].as_str() {
            Some("DELETE") => vec![("delete", metric("numDeletedRows")), ("insert", Some(0))],
            Some("UPDATE") => vec![
                ("update_preimage", metric("numUpdatedRows")),
                ("update_postimage", metric("numUpdatedRows")),
                ("delete", Some(0)),
                ("insert", Some(0)),
            ],
            Some("MERGE") => vec![
                ("update_preimage", metric("numTargetRowsUpdated")),
                ("update_postimage", metric("numTargetRowsUpdated")),
                ("delete", metric("numTargetRowsDeleted")),
                ("insert", metric("numTargetRowsInserted")),
            ],
            _ => Vec::new(),
        };
        for (kind, n) in expected {
            assert_eq!(
                Some(count(kind)),
                n,
                "{what} version {v} ({}): `{kind}` rows against the commit's metrics",
                info["operation"]
            );
        }
    }
}

/// Change data files a commit adds.
fn cdc_actions(commit: &[Value]) -> Vec<&Value> {
    commit.iter().filter_map(|a| a.get("cdc")).collect()
}

/// The same random DELETE / UPDATE / MERGE sequence, then a replaceWhere, on a table with the
/// change data feed enabled: silt on it, delta-rs on a copy; the same feed for every commit
/// and the same content at the end.
#[test]
fn random_dml_change_data_matches_delta_rs() {
    let seed = seed_for("random_dml_change_data_matches_delta_rs");
    let steps: usize = env_count("SILT_CDF_STEPS", 8);
    let mut r = Rng(seed | 1);
    for partitioned in [false, true] {
        let layout = if partitioned { "part" } else { "flat" };
        let DmlPair {
            dir,
            src,
            ours,
            theirs,
        } = DmlPair::new(&format!("cdf-{layout}"), seed, 600, 2);
        let mut args = vec!["--property", "delta.enableChangeDataFeed=true"];
        if partitioned {
            args.extend(["--partition-by", "k"]);
        }
        silt_write_ok(&ours, &src, &args);
        copy_dir(&ours, &theirs);
        let mut recorded = 0;
        for step in 0..steps {
            let case = format!("{layout}-{step}");
            let (got, _) = random_dml_step(
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
                    random_exchange: true,
                },
            );
            if got["version"].is_i64() {
                let commit = last_commit(&ours);
                let cdc = cdc_actions(&commit);
                recorded += usize::from(!cdc.is_empty());
                for c in cdc {
                    let path = c["path"].as_str().expect("path");
                    assert!(path.starts_with("_change_data/"), "[{case}] {c}");
                    assert_eq!(c["dataChange"], false, "[{case}] {c}");
                    assert!(ours.join(path).is_file(), "[{case}] {path} exists");
                }
            }
        }
        // replaceWhere: new rows (ids from 5000) replace those of k = 2.
        let new_rows = Gen::new(seed + 99, 60)
            .k_domain("1,2,3")
            .id_start(5000)
            .write(&dir.path().join("replace-src"));
        let predicate = "k = 2 OR id >= 5000";
        eprintln!("[{layout}] replaceWhere {predicate}");
        silt_write_ok(
            &ours,
            &new_rows,
            &["--mode", "overwrite", "--replace-where", predicate],
        );
        oracle_ok(&[
            "oracle-write",
            "--table",
            &s(&theirs),
            "--source",
            &s(&new_rows),
            "--mode",
            "overwrite",
            "--predicate",
            predicate,
        ]);
        assert_feed_matches_metrics(&format!("[{layout}]"), &ours, &feed(&ours, 0, false));
        let (got, want) = (feed(&ours, 1, true), feed(&theirs, 1, true));
        let versions = got.as_object().expect("feed").len();
        eprintln!(
            "[{layout}] {versions} version(s) of change data compared, {recorded} DML commit(s) with cdc files"
        );
        for (v, rows) in want.as_object().expect("feed") {
            assert_same_rows(&format!("[{layout}] version {v}"), got.get(v), rows);
        }
        assert_eq!(
            got.as_object().map(|o| o.keys().collect::<Vec<_>>()),
            want.as_object().map(|o| o.keys().collect::<Vec<_>>()),
            "[{layout}] the same versions have change data"
        );
        assert!(recorded > 0, "[{layout}] some commit recorded cdc files");
        assert_same_content(&ours, &[Expected::Table(&theirs)], &[]);
    }
}

/// Two versions' change data rows are the same (a short account of the difference if not).
fn assert_same_rows(what: &str, got: Option<&Value>, want: &Value) {
    let empty = Vec::new();
    let got = got.and_then(Value::as_array).unwrap_or(&empty);
    let want = want.as_array().expect("rows");
    if got == want {
        return;
    }
    let only = |a: &Vec<Value>, b: &Vec<Value>| -> Vec<String> {
        let mut rest = b.clone();
        a.iter()
            .filter(|r| match rest.iter().position(|x| x == *r) {
                Some(i) => {
                    rest.remove(i);
                    false
                }
                None => true,
            })
            .take(4)
            .map(Value::to_string)
            .collect()
    };
    panic!(
        "{what}: {} change row(s) from silt, {} from delta-rs\nonly silt's (first 4): {:#?}\nonly delta-rs's (first 4): {:#?}",
        got.len(),
        want.len(),
        only(got, want),
        only(want, got)
    );
}
