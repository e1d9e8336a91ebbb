//! Bad input: each a one-line `error:` naming the cause, a non-zero exit, the table unchanged.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::*;

/// Writes garbage with a `.parquet` name (no valid footer: fails when the schema is read).
pub fn write_garbage_parquet(path: &Path) {
    let mut bytes = b"PAR1".to_vec();
    bytes.extend((0..4096u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8));
    std::fs::write(path, bytes).unwrap();
}

/// Copies a valid Parquet file with its data pages scrambled but its footer intact: the schema
/// and row groups read fine (planning succeeds), reading the data fails (on an executor).
pub fn write_corrupt_pages_parquet(valid: &Path, path: &Path) {
    let mut b = std::fs::read(valid).unwrap();
    let n = b.len();
    for (i, byte) in b.iter_mut().enumerate().take(n / 2).skip(4) {
        *byte = ((i * 7919) % 251) as u8;
    }
    std::fs::write(path, b).unwrap();
}

/// The first `*.parquet` file of a directory.
pub fn first_parquet(dir: &Path) -> PathBuf {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .collect();
    v.sort();
    v.into_iter().next().expect("a parquet file")
}

/// A table with a few hundred rows over several files, and its listing.
fn table_with_data(dir: &Path, seed: u64, extra: &[&str]) -> PathBuf {
    let a = Gen::new(seed, 300).files(2).write(&dir.join("a"));
    let t = dir.join("t");
    assert_eq!(silt_write_ok(&t, &a, extra), Some(0));
    t
}

#[test]
fn missing_source() {
    let seed = seed_for("missing_source");
    let dir = tempdir("bad-missing");
    let t = table_with_data(dir.path(), seed, &[]);
    let before = listing_with_dirs(&t);
    let missing = dir.path().join("no-such-source-dir");
    let out = silt_write(&t, &missing, &[]);
    out.assert_error(&["no-such-source-dir"]);
    assert_same_listing(&before, &listing_with_dirs(&t), "missing source");

    // Same for a new table: nothing is created.
    let t2 = dir.path().join("t2");
    let out = silt_write(&t2, &missing, &[]);
    out.assert_error(&["no-such-source-dir"]);
    assert!(
        !t2.join("_delta_log").exists(),
        "a failed job must not create a table"
    );
    assert!(data_files(&t2).is_empty());

    // An empty source directory is an error too.
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let out = silt_write(&t, &empty, &[]);
    out.assert_error(&[]);
    assert_same_listing(&before, &listing_with_dirs(&t), "empty source");
}

#[test]
fn corrupt_parquet_files() {
    let seed = seed_for("corrupt_parquet_files");
    let dir = tempdir("bad-corrupt");
    let t = table_with_data(dir.path(), seed, &[]);
    let before = listing_with_dirs(&t);

    // Garbage among valid files (unreadable footer).
    let src = Gen::new(seed + 1, 200)
        .files(2)
        .id_start(1000)
        .write(&dir.path().join("garbage"));
    write_garbage_parquet(&src.join("zz-garbage.parquet"));
    let out = silt_write(&t, &src, &[]);
    out.assert_error(&["zz-garbage.parquet"]);
    assert_same_listing(&before, &listing_with_dirs(&t), "garbage parquet");

    // Valid footer, scrambled pages: fails on the executor, must name the file.
    let src2 = Gen::new(seed + 2, 200)
        .files(2)
        .id_start(2000)
        .write(&dir.path().join("pages"));
    write_corrupt_pages_parquet(&first_parquet(&src2), &src2.join("zz-pages.parquet"));
    let out = silt_write(&t, &src2, &[]);
    out.assert_error(&["zz-pages.parquet"]);
    assert_same_listing(&before, &listing_with_dirs(&t), "corrupt pages");

    // The same on a partitioned table (through the exchange), for a new table.
    let t2 = dir.path().join("t2");
    let out = silt_write(&t2, &src2, &["--partition-by", "k"]);
    out.assert_error(&["zz-pages.parquet"]);
    assert!(
        !t2.join("_delta_log").exists(),
        "a failed job must not create a table"
    );
    let left = listing(&t2);
    assert!(
        left.is_empty(),
        "a failed job leaves files behind: {left:?}"
    );
}

/// A failing job whose other stage (the replaceWhere rewrite) wrote files: all are removed.
#[test]
fn failed_job_with_rewrite_stage_leaves_no_files() {
    let seed = seed_for("failed_job_with_rewrite_stage_leaves_no_files");
    let dir = tempdir("bad-rewrite");
    let t = table_with_data(dir.path(), seed, &["--target-file-size", "8192"]);
    let before = listing_with_dirs(&t);
    let src = Gen::new(seed + 1, 300)
        .files(2)
        .id_start(1000)
        .write(&dir.path().join("src"));
    write_corrupt_pages_parquet(&first_parquet(&src), &src.join("zz-pages.parquet"));
    let out = silt_write(
        &t,
        &src,
        &["--mode", "overwrite", "--replace-where", "id >= 100"],
    );
    out.assert_error(&["zz-pages.parquet"]);
    // Give straggling tasks of the failed job time to finish before looking.
    std::thread::sleep(Duration::from_millis(1500));
    assert_same_listing(&before, &listing_with_dirs(&t), "failed replaceWhere job");
}

#[test]
fn unknown_partition_column() {
    let seed = seed_for("unknown_partition_column");
    let dir = tempdir("bad-partcol");
    let a = Gen::new(seed, 100).write(&dir.path().join("a"));
    let t = dir.path().join("t");
    let out = silt_write(&t, &a, &["--partition-by", "no_such_col"]);
    out.assert_error(&["no_such_col"]);
    assert!(
        !t.join("_delta_log").exists(),
        "a failed job must not create a table"
    );
    assert!(
        listing(&t).is_empty(),
        "no files for a failed job: {:?}",
        listing(&t)
    );

    // On an existing table partitioned by k: another partitioning is refused.
    let t2 = dir.path().join("t2");
    assert_eq!(silt_write_ok(&t2, &a, &["--partition-by", "k"]), Some(0));
    let before = listing_with_dirs(&t2);
    for cols in ["no_such_col", "s"] {
        let out = silt_write(&t2, &a, &["--partition-by", cols]);
        out.assert_error(&[cols]);
        assert_same_listing(&before, &listing_with_dirs(&t2), "unknown partition column");
    }
}

#[test]
fn invalid_predicates() {
    let seed = seed_for("invalid_predicates");
    let dir = tempdir("bad-pred");
    let t = table_with_data(dir.path(), seed, &["--partition-by", "k"]);
    let src = Gen::new(seed + 1, 50)
        .k_domain("1")
        .no_null_k()
        .id_start(5000)
        .write(&dir.path().join("src"));
    let before = listing_with_dirs(&t);
    let cases: [(&str, &[&str]); 5] = [
        ("k = = 1", &["predicate"]),
        ("k = 1 AND", &["predicate"]),
        ("no_such_col = 1", &["no_such_col"]),
        ("k = 1 AND nope2 > 3", &["nope2"]),
        ("id + 1", &["predicate"]),
    ];
    for (pred, terms) in cases {
        let out = silt_write(&t, &src, &["--mode", "overwrite", "--replace-where", pred]);
        out.assert_error(terms);
        assert_same_listing(
            &before,
            &listing_with_dirs(&t),
            &format!("predicate {pred:?}"),
        );
    }
}

#[test]
fn usage_errors() {
    let seed = seed_for("usage_errors");
    let dir = tempdir("bad-usage");
    let t = table_with_data(dir.path(), seed, &[]);
    let a = dir.path().join("a");
    let before = listing_with_dirs(&t);
    let cases: [(&[&str], &[&str]); 12] = [
        (&["--executors", "0"], &["--executors", "0"]),
        (&["--executors", "10000"], &["--executors", "10000"]),
        (&["--executor-memory", "0"], &["--executor-memory", "8 MiB"]),
        (
            &["--executor-memory", "2q"],
            &["--executor-memory", "unknown unit"],
        ),
        (
            &["--target-file-size", "0"],
            &["--target-file-size", "below 1k"],
        ),
        (&["--format", "avro"], &["avro"]),
        (&["--mode", "upsert"], &["upsert"]),
        (&["--exchange", "sometimes"], &["--exchange", "sometimes"]),
        (&["--replace-where", "id > 1"], &["overwrite"]),
        (&["--dynamic-partition-overwrite"], &["overwrite"]),
        (&["--txn-app-id", "x"], &["txn"]),
        (&["--property", "novalue"], &["novalue"]),
    ];
    for (args, terms) in cases {
        let out = silt_write(&t, &a, args);
        out.assert_error(terms);
        assert_same_listing(&before, &listing_with_dirs(&t), &format!("{args:?}"));
    }
    // SQL text over 1 MiB (in a file: one argument cannot be that long) is refused before
    // it is read.
    let long = format!(
        "DELETE FROM delta.`{}` WHERE id IN ({}0)",
        s(&t),
        "0, ".repeat(400_000)
    );
    let file = dir.path().join("long.sql");
    std::fs::write(&file, &long).unwrap();
    let mut cmd = std::process::Command::new(silt_bin());
    cmd.args(["sql", "--file", &s(&file)]);
    let line = run(cmd, std::time::Duration::from_secs(30)).assert_error(&["long.sql", "1 MiB"]);
    assert!(line.len() < 300, "{line}");
    assert_same_listing(&before, &listing_with_dirs(&t), "overlong SQL");
    // An executor whose shuffle endpoint others could not reach refuses to start.
    let executor: [(&[&str], &[&str]); 2] = [
        (&["--shuffle-advertise", "nohost"], &["nohost", "HOST:PORT"]),
        (&["--shuffle-listen", "0.0.0.0:0"], &["--shuffle-advertise"]),
    ];
    for (args, terms) in executor {
        let mut cmd = std::process::Command::new(silt_bin());
        cmd.args(["executor", "--coordinator", "http://127.0.0.1:1"])
            .args(args);
        run(cmd, std::time::Duration::from_secs(30)).assert_error(terms);
    }
}

/// A password in a store's endpoint URL (`AWS_ENDPOINT_URL=http://user:secret@host`) never
/// appears in anything silt prints — the error line, `--json`, `-vv` logs — when the store
/// fails, for a table or a source on it.
#[test]
fn endpoint_passwords_are_never_printed() {
    let _ = seed_for("endpoint_passwords_are_never_printed");
    let dir = tempdir("bad-redact");
    let src = Gen::new(1, 5).write(&dir.path().join("src"));
    let secret = "s3cr3t-pa55";
    let runs: [&[&str]; 2] = [
        &["write", "--table", "s3://bucket/t", "--source"],
        &[
            "write",
            "--table",
            "TABLE",
            "--source",
            "s3://bucket/src.parquet",
        ],
    ];
    for args in runs {
        for extra in [&["--json"][..], &["-vv"][..]] {
            let mut cmd = std::process::Command::new(silt_bin());
            let args: Vec<String> = args
                .iter()
                .map(|a| match *a {
                    "TABLE" => s(&dir.path().join("t")),
                    a => a.to_string(),
                })
                .collect();
            cmd.args(&args);
            if args.last().map(String::as_str) == Some("--source") {
                cmd.arg(&src);
            }
            cmd.args(["--executors", "1"])
                .args(extra)
                .env(
                    "AWS_ENDPOINT_URL",
                    format!("http://user:{secret}@127.0.0.1:1"),
                )
                .env("AWS_ACCESS_KEY_ID", "key")
                .env("AWS_SECRET_ACCESS_KEY", "unused")
                .env("AWS_REGION", "us-east-1")
                .env("AWS_ALLOW_HTTP", "true");
            let out = run(cmd, std::time::Duration::from_secs(120));
            assert!(!out.ok(), "the store is unreachable: {}", out.describe());
            assert!(
                !out.stdout.contains(secret) && !out.stderr.contains(secret),
                "the password is printed\n{}",
                out.describe()
            );
            assert!(
                out.stderr.contains("user:***@") || out.stdout.contains("user:***@"),
                "the URL is still named, its password masked\n{}",
                out.describe()
            );
        }
    }
}
