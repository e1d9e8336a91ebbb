//! OPTIMIZE (bin-packing compaction) through `silt sql`: the same rows, fewer files, only
//! `dataChange = false` actions, no commit when there is nothing to compact, partition
//! predicates only; checked against delta-rs's `optimize.compact` on a copy.

use serde_json::Value;

use crate::support::*;

#[test]
fn optimize_compacts_small_files_as_delta_rs_does() {
    let seed = seed_for("optimize_compacts_small_files_as_delta_rs_does");
    let dir = tempdir("optimize");
    let t = dir.path().join("t");
    for i in 0..3u64 {
        let src = Gen::new(seed + i, 600)
            .files(3)
            .k_domain("1,2")
            .id_start(i as i64 * 1000)
            .write(&dir.path().join(format!("src{i}")));
        silt_write_ok(
            &t,
            &src,
            &["--partition-by", "k", "--target-file-size", "2048"],
        );
    }
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
    // Z-order is refused clearly for now.
    silt_sql(&format!("OPTIMIZE {} ZORDER BY (id)", delta_ref(&t)), &[]).assert_error(&["ZORDER"]);
}
