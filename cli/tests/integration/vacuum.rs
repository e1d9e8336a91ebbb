//! VACUUM checked against delta-rs's `vacuum(full=True)` (Delta Spark's semantics) on copies
//! of the same table: the same files deleted, the dry run lists them, every version within
//! the retention still reads, `VACUUM START` / `VACUUM END` commits, the retention check.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::support::*;

/// Data files under a table (the log excluded), relative paths.
fn data_listing(t: &Path) -> BTreeSet<String> {
    listing(t)
        .into_keys()
        .filter(|p| !p.starts_with("_delta_log"))
        .collect()
}

/// Sets a file's modification time `age` in the past.
fn age(path: &Path, age: Duration) {
    let f = std::fs::File::options()
        .write(true)
        .open(path)
        .expect("open to age");
    f.set_modified(SystemTime::now() - age).expect("set mtime");
}

fn versions(t: &Path) -> Value {
    let out = oracle_ok(&["versions", "--table", &s(t)]);
    serde_json::from_str(out.stdout.trim()).expect("versions prints JSON")
}

#[test]
fn vacuum_deletes_what_delta_rs_deletes_and_keeps_versions_readable() {
    let seed = seed_for("vacuum_deletes_what_delta_rs_deletes_and_keeps_versions_readable");
    let dir = tempdir("vacuum");
    let t = dir.path().join("t");
    let a = Gen::new(seed, 600)
        .files(3)
        .k_domain("1,2")
        .write(&dir.path().join("a"));
    let b = Gen::new(seed + 1, 600)
        .files(3)
        .k_domain("1,2")
        .id_start(10_000)
        .write(&dir.path().join("b"));
    silt_write_ok(
        &t,
        &a,
        &["--partition-by", "k", "--target-file-size", "4096"],
    );
    silt_write_ok(&t, &b, &[]);
    silt_sql_ok(&format!("DELETE FROM {} WHERE id % 3 = 0", delta_ref(&t)));
    silt_sql_ok(&format!("OPTIMIZE {}", delta_ref(&t)));
    // Files no commit references: an old one and a recent one (a writer's, still running),
    // and a hidden directory VACUUM must not touch.
    let old_orphan = t.join("k=1").join("part-orphan-old.parquet");
    std::fs::write(&old_orphan, b"not referenced").unwrap();
    age(&old_orphan, Duration::from_secs(10 * 24 * 3600));
    std::fs::write(t.join("k=2").join("part-orphan-new.parquet"), b"recent").unwrap();
    std::fs::create_dir_all(t.join("_scratch")).unwrap();
    let hidden = t.join("_scratch").join("x.parquet");
    std::fs::write(&hidden, b"hidden").unwrap();
    age(&hidden, Duration::from_secs(10 * 24 * 3600));
    let before_versions = versions(&t);
    let theirs = dir.path().join("delta-rs");
    copy_dir(&t, &theirs);
    // copy_dir does not keep modification times: age the copies the same way.
    age(
        &theirs.join("k=1").join("part-orphan-old.parquet"),
        Duration::from_secs(10 * 24 * 3600),
    );
    age(
        &theirs.join("_scratch").join("x.parquet"),
        Duration::from_secs(10 * 24 * 3600),
    );

    // Default retention (7 days): only the old orphan is old enough.
    let dry = silt_sql_ok(&format!("VACUUM {} DRY RUN", delta_ref(&t)));
    let listed: Vec<String> = dry["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["path"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(listed, vec!["k=1/part-orphan-old.parquet"], "{dry}");
    let their_dry = oracle_ok(&["vacuum", "--table", &s(&theirs), "--dry-run"]);
    let their_dry: Value = serde_json::from_str(their_dry.stdout.trim()).unwrap();
    assert_eq!(
        their_dry["files"],
        serde_json::json!(listed),
        "delta-rs's dry run"
    );
    assert!(old_orphan.exists(), "a dry run deletes nothing");
    let version = inspect(&t)["version"].as_i64().unwrap();
    let r = silt_sql_ok(&format!("VACUUM {}", delta_ref(&t)));
    assert_eq!(metric(&r, "numDeletedFiles"), 1, "{r}");
    oracle_ok(&["vacuum", "--table", &s(&theirs)]);
    assert_eq!(data_listing(&t), data_listing(&theirs));
    // VACUUM START and VACUUM END, as Delta writes them.
    let log = t.join("_delta_log");
    let start = std::fs::read_to_string(log.join(format!("{:020}.json", version + 1))).unwrap();
    assert!(start.contains("\"operation\":\"VACUUM START\""), "{start}");
    assert!(start.contains("\"numFilesToDelete\":\"1\""), "{start}");
    let end = last_commit_info(&t);
    assert_eq!(end["operation"], "VACUUM END");
    assert_eq!(end["operationParameters"]["status"], "COMPLETED");
    // Every version still reads, with its rows.
    let after_versions = versions(&t);
    for (v, rows) in before_versions.as_object().unwrap() {
        assert_eq!(&after_versions[v], rows, "version {v} after VACUUM");
    }
    // Nothing left to delete: no commit.
    let again = silt_sql_ok(&format!("VACUUM {}", delta_ref(&t)));
    assert!(again["version"].is_null(), "{again}");

    // A retention below the table's is refused unless asked for.
    silt_sql(&format!("VACUUM {} RETAIN 0 HOURS", delta_ref(&t)), &[]).assert_error(&[
        "RETAIN 0 HOURS",
        "deletedFileRetentionDuration",
        "--allow-short-retention",
    ]);
    let out = silt_sql(
        &format!("VACUUM {} RETAIN 0 HOURS", delta_ref(&t)),
        &["--allow-short-retention"],
    );
    out.assert_ok();
    oracle_ok(&[
        "vacuum",
        "--table",
        &s(&theirs),
        "--retain-hours",
        "0",
        "--no-retention-check",
    ]);
    let ours = data_listing(&t);
    assert_eq!(
        ours,
        data_listing(&theirs),
        "the same files deleted at retention 0"
    );
    assert!(
        ours.contains("_scratch/x.parquet"),
        "hidden paths are never deleted"
    );
    assert!(!ours.contains("k=2/part-orphan-new.parquet"));
    // The current version reads as before; older ones lost their removed files.
    let latest = inspect(&t)["version"].as_i64().unwrap();
    assert_eq!(
        versions(&t)[version.to_string()],
        before_versions[version.to_string()]
    );
    assert!(latest > version);
    assert_same_content(&t, &[Expected::Table(&theirs)], &[]);
}
