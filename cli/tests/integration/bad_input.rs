//! Bad input: each a one-line `error:` naming the cause, a non-zero exit, the table unchanged.

use serde_json::Value;
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
    let secret_key = "k3y-s3cr3t-wJalrXUtnFEMI";
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
                .env("AWS_SECRET_ACCESS_KEY", secret_key)
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
                !out.stdout.contains(secret_key) && !out.stderr.contains(secret_key),
                "the secret key is printed\n{}",
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

/// One entry of the bad-input catalogue: a `silt` run and the words its error must hold.
struct Case {
    name: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
    terms: Vec<String>,
}

fn case(name: &str, args: &[&str], terms: &[&str]) -> Case {
    Case {
        name: name.to_string(),
        args: args.iter().map(|a| a.to_string()).collect(),
        env: Vec::new(),
        terms: terms.iter().map(|t| t.to_string()).collect(),
    }
}

impl Case {
    fn env(mut self, k: &str, v: &str) -> Case {
        self.env.push((k.to_string(), v.to_string()));
        self
    }
}

/// What every bad input must give: a non-zero exit, exactly one line on stderr, `error: …`,
/// short, naming the terms, without a Debug dump, a backtrace or a log prefix.
fn one_clear_line(name: &str, out: &Out, terms: &[String]) -> Result<(), String> {
    if out.ok() {
        return Err(format!("[{name}] succeeded\n{}", out.describe()));
    }
    let lines: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    if lines.len() != 1 {
        return Err(format!(
            "[{name}] {} lines on stderr\n{}",
            lines.len(),
            out.describe()
        ));
    }
    let line = lines[0];
    if !line.starts_with("error: ") || line.len() > 400 {
        return Err(format!(
            "[{name}] not one short error line ({}): {line}",
            line.len()
        ));
    }
    for bad in [
        "panicked",
        "stack backtrace",
        "RUST_BACKTRACE",
        " { ",
        "Some(",
        "Error {",
        " ERROR ",
        " WARN ",
    ] {
        if line.contains(bad) {
            return Err(format!("[{name}] `{bad}` in: {line}"));
        }
    }
    let lower = line.to_lowercase();
    for t in terms {
        if !lower.contains(&t.to_lowercase()) {
            return Err(format!("[{name}] the error does not name `{t}`: {line}"));
        }
    }
    Ok(())
}

/// Appends a commit file `version` holding `lines` to `table`'s log.
fn append_commit(table: &Path, version: u64, lines: &[&str]) {
    std::fs::write(
        table.join("_delta_log").join(format!("{version:020}.json")),
        lines.join("\n") + "\n",
    )
    .unwrap();
}

/// The catalogue of bad input: sources, options, URLs, a corrupt log, protocol misuse. Every
/// case exits non-zero with one clear line and leaves every file under the work directory as
/// it was (tables unchanged, nothing written). Runs with `RUST_BACKTRACE=1`.
#[test]
fn catalogue_of_bad_input() {
    let seed = seed_for("catalogue_of_bad_input");
    let dir = tempdir("bad-catalogue");
    let root = dir.path();
    let p = |name: &str| s(&root.join(name));
    let t = table_with_data(root, seed, &["--partition-by", "k"]);
    let tt = s(&t);
    // Sources.
    let garbage = Gen::new(seed + 1, 50).write(&root.join("garbage"));
    write_garbage_parquet(&garbage.join("zz-garbage.parquet"));
    let pages = Gen::new(seed + 2, 200).write(&root.join("pages"));
    write_corrupt_pages_parquet(&first_parquet(&pages), &pages.join("zz-pages.parquet"));
    Gen::new(seed + 3, 50)
        .variant("badtype")
        .write(&root.join("badtype"));
    std::fs::create_dir_all(root.join("csv")).unwrap();
    std::fs::write(root.join("csv/ragged.csv"), "id,k\n1,2\n3,4,5\n6,7\n").unwrap();
    std::fs::create_dir_all(root.join("json")).unwrap();
    std::fs::write(
        root.join("json/bad.json"),
        "{\"id\": 1, \"k\": 1}\n{\"id\": 2, \"k\": 2}\n{\"id\": 3, \"k\": \n{\"id\": 4, \"k\": 4}\n",
    )
    .unwrap();
    std::fs::create_dir_all(root.join("empty")).unwrap();
    std::fs::write(root.join("notes.txt"), "not data").unwrap();
    // Tables with a corrupt log, each a copy of `t` (version 0) plus one more version.
    let corrupt = |name: &str, f: &dyn Fn(&Path)| {
        let c = root.join(name);
        copy_dir(&t, &c);
        f(&c);
        s(&c)
    };
    let truncated = corrupt("t-truncated", &|c| {
        append_commit(
            c,
            1,
            &[r#"{"commitInfo":{"timestamp":1,"operation":"WRITE""#],
        )
    });
    let gap = corrupt("t-gap", &|c| {
        append_commit(
            c,
            2,
            &[r#"{"commitInfo":{"timestamp":1,"operation":"WRITE"}}"#],
        )
    });
    let future = corrupt("t-future", &|c| {
        append_commit(
            c,
            1,
            &[r#"{"protocol":{"minReaderVersion":9,"minWriterVersion":9}}"#],
        )
    });
    let no_checkpoint = corrupt("t-lastcp", &|c| {
        std::fs::write(
            c.join("_delta_log/_last_checkpoint"),
            r#"{"version":0,"size":4}"#,
        )
        .unwrap()
    });
    // The removed file holds the table's smallest id, so `id < 10` must read it (a file the
    // predicate rules out by its statistics is legitimately never opened).
    let missing_file = corrupt("t-missing", &|c| {
        let lowest = last_commit(c)
            .into_iter()
            .filter_map(|a| a.get("add").cloned())
            .filter_map(|add| {
                let stats: Value = serde_json::from_str(add["stats"].as_str()?).ok()?;
                Some((
                    stats["minValues"]["id"].as_i64()?,
                    add["path"].as_str()?.to_string(),
                ))
            })
            .min()
            .expect("the table's files have id statistics");
        assert!(lowest.0 < 10, "no file holds an id below 10: {lowest:?}");
        std::fs::remove_file(c.join(pct_decode(&lowest.1))).unwrap();
    });
    let not_json = corrupt("t-notjson", &|c| {
        append_commit(c, 1, &["\u{0}\u{1}garbage"])
    });
    let unknown_action = corrupt("t-action", &|c| {
        append_commit(c, 1, &[r#"{"add":{"path":5}}"#])
    });

    let a = p("a");
    let del = |table: &str| format!("DELETE FROM delta.`{table}` WHERE id < 10");
    let mut cases: Vec<Case> = vec![
        // Sources.
        case(
            "missing source",
            &["write", "--table", &tt, "--source", &p("nope")],
            &["nope"],
        ),
        case(
            "empty source",
            &["write", "--table", &tt, "--source", &p("empty")],
            &["empty"],
        ),
        case(
            "garbage parquet",
            &["write", "--table", &tt, "--source", &p("garbage")],
            &["zz-garbage.parquet"],
        ),
        case(
            "corrupt pages",
            &["write", "--table", &tt, "--source", &p("pages")],
            &["zz-pages.parquet"],
        ),
        case(
            "a column of another type",
            &["write", "--table", &tt, "--source", &p("badtype")],
            &["k"],
        ),
        case(
            "ragged csv",
            &[
                "write",
                "--table",
                &tt,
                "--source",
                &p("csv"),
                "--format",
                "csv",
            ],
            &["ragged.csv"],
        ),
        case(
            "malformed json",
            &[
                "write",
                "--table",
                &tt,
                "--source",
                &p("json"),
                "--format",
                "json",
            ],
            &["bad.json", "line 3"],
        ),
        case(
            "text as parquet",
            &["write", "--table", &tt, "--source", &p("notes.txt")],
            &["notes.txt"],
        ),
        case(
            "a directory as a delta source",
            &["write", "--table", &tt, "--source", &a, "--format", "delta"],
            &["delta"],
        ),
        case(
            "source scheme",
            &["write", "--table", &tt, "--source", "ftp://host/x.parquet"],
            &["ftp"],
        ),
        case(
            "source bucket",
            &["write", "--table", &tt, "--source", "s3:///x.parquet"],
            &["s3:///x.parquet"],
        ),
        // Options.
        case(
            "no executors",
            &["write", "--table", &tt, "--source", &a, "--executors", "0"],
            &["--executors"],
        ),
        case(
            "too many executors",
            &[
                "write",
                "--table",
                &tt,
                "--source",
                &a,
                "--executors",
                "10000",
            ],
            &["--executors"],
        ),
        case(
            "no memory",
            &[
                "write",
                "--table",
                &tt,
                "--source",
                &a,
                "--executor-memory",
                "0",
            ],
            &["--executor-memory"],
        ),
        case(
            "unknown unit",
            &[
                "write",
                "--table",
                &tt,
                "--source",
                &a,
                "--executor-memory",
                "2q",
            ],
            &["--executor-memory"],
        ),
        case(
            "absurd memory",
            &[
                "write",
                "--table",
                &tt,
                "--source",
                &a,
                "--executor-memory",
                "99999999t",
            ],
            &["--executor-memory"],
        ),
        case(
            "tiny files",
            &[
                "write",
                "--table",
                &tt,
                "--source",
                &a,
                "--target-file-size",
                "0",
            ],
            &["--target-file-size"],
        ),
        case(
            "format",
            &["write", "--table", &tt, "--source", &a, "--format", "avro"],
            &["avro"],
        ),
        case(
            "mode",
            &["write", "--table", &tt, "--source", &a, "--mode", "upsert"],
            &["upsert"],
        ),
        case(
            "exchange",
            &[
                "write",
                "--table",
                &tt,
                "--source",
                &a,
                "--exchange",
                "sometimes",
            ],
            &["sometimes"],
        ),
        case(
            "replaceWhere in append",
            &[
                "write",
                "--table",
                &tt,
                "--source",
                &a,
                "--replace-where",
                "k = 1",
            ],
            &["overwrite"],
        ),
        case(
            "dynamic overwrite in append",
            &[
                "write",
                "--table",
                &tt,
                "--source",
                &a,
                "--dynamic-partition-overwrite",
            ],
            &["overwrite"],
        ),
        case(
            "txn without version",
            &["write", "--table", &tt, "--source", &a, "--txn-app-id", "x"],
            &["txn"],
        ),
        case(
            "property without value",
            &[
                "write",
                "--table",
                &tt,
                "--source",
                &a,
                "--property",
                "novalue",
            ],
            &["novalue"],
        ),
        case(
            "bad property value",
            &[
                "write",
                "--table",
                &p("t-new"),
                "--source",
                &a,
                "--property",
                "delta.appendOnly=maybe",
            ],
            &["delta.appendOnly"],
        ),
        case(
            "unknown partition column",
            &[
                "write",
                "--table",
                &p("t-new"),
                "--source",
                &a,
                "--partition-by",
                "nope",
            ],
            &["nope"],
        ),
        case(
            "other partitioning",
            &[
                "write",
                "--table",
                &tt,
                "--source",
                &a,
                "--partition-by",
                "s",
            ],
            &["s"],
        ),
        case(
            "replaceWhere syntax",
            &[
                "write",
                "--table",
                &tt,
                "--source",
                &a,
                "--mode",
                "overwrite",
                "--replace-where",
                "k = = 1",
            ],
            &["predicate"],
        ),
        case(
            "replaceWhere column",
            &[
                "write",
                "--table",
                &tt,
                "--source",
                &a,
                "--mode",
                "overwrite",
                "--replace-where",
                "nope2 > 1",
            ],
            &["nope2"],
        ),
        case(
            "replaceWhere not boolean",
            &[
                "write",
                "--table",
                &tt,
                "--source",
                &a,
                "--mode",
                "overwrite",
                "--replace-where",
                "id + 1",
            ],
            &["predicate"],
        ),
        case(
            "zorder column",
            &["optimize", "--table", &tt, "--zorder-by", "nope3"],
            &["nope3"],
        ),
        case(
            "zorder by partition column",
            &["optimize", "--table", &tt, "--zorder-by", "k"],
            &["k", "partition"],
        ),
        case(
            "curve",
            &[
                "optimize",
                "--table",
                &tt,
                "--zorder-by",
                "id",
                "--curve",
                "peano",
            ],
            &["peano"],
        ),
        case(
            "min size with zorder",
            &[
                "optimize",
                "--table",
                &tt,
                "--zorder-by",
                "id",
                "--min-file-size",
                "1m",
            ],
            &["--min-file-size"],
        ),
        case(
            "commit interval",
            &["optimize", "--table", &tt, "--max-commit-interval", "5q"],
            &["--max-commit-interval"],
        ),
        case(
            "optimize where",
            &["optimize", "--table", &tt, "--where", "id > 1"],
            &["partition"],
        ),
        case(
            "service interval",
            &["compact-service", "--root", &p("t"), "--interval", "soon"],
            &["--interval"],
        ),
        case(
            "service concurrency",
            &[
                "compact-service",
                "--root",
                &p("t"),
                "--max-concurrent-tables",
                "0",
                "--once",
            ],
            &["--max-concurrent-tables"],
        ),
        case(
            "listen address",
            &["coordinator", "--listen", "nowhere"],
            &["nowhere"],
        ),
        case(
            "client grace",
            &["coordinator", "--client-grace-ms", "0"],
            &["--client-grace-ms"],
        ),
        case(
            "executor slots",
            &[
                "executor",
                "--coordinator",
                "http://127.0.0.1:1",
                "--slots",
                "0",
            ],
            &["--slots"],
        ),
        case(
            "executor memory",
            &[
                "executor",
                "--coordinator",
                "http://127.0.0.1:1",
                "--memory-limit",
                "0",
            ],
            &["--memory-limit"],
        ),
        case(
            "shuffle address",
            &[
                "executor",
                "--coordinator",
                "http://127.0.0.1:1",
                "--shuffle-advertise",
                "nohost",
            ],
            &["nohost"],
        ),
        case(
            "detach without a coordinator",
            &["write", "--table", &tt, "--source", &a, "--detach"],
            &["--detach"],
        ),
        case(
            "job without a coordinator",
            &["job", "status", "j1"],
            &["--coordinator"],
        ),
        case(
            "unknown option",
            &["write", "--table", &tt, "--source", &a, "--frobnicate"],
            &["--frobnicate"],
        ),
        case("missing option", &["write", "--table", &tt], &["--source"]),
        // Credentials.
        case(
            "tls without key",
            &[
                "write",
                "--table",
                &tt,
                "--source",
                &a,
                "--coordinator",
                "https://127.0.0.1:1",
                "--tls-cert",
                &a,
            ],
            &["--tls-key"],
        ),
        case(
            "token file missing",
            &[
                "write",
                "--table",
                &tt,
                "--source",
                &a,
                "--coordinator",
                "http://127.0.0.1:1",
                "--token-file",
                &p("no-token"),
            ],
            &["no-token"],
        ),
        case(
            "token too short",
            &[
                "write",
                "--table",
                &tt,
                "--source",
                &a,
                "--coordinator",
                "http://127.0.0.1:1",
            ],
            &["SILT_TOKEN", "shorter"],
        )
        .env("SILT_TOKEN", "short"),
        case(
            "https without tls",
            &[
                "write",
                "--table",
                &tt,
                "--source",
                &a,
                "--coordinator",
                "https://127.0.0.1:1",
            ],
            &["https", "--tls-ca"],
        ),
        // URLs.
        case(
            "table scheme",
            &["write", "--table", "ftp://host/t", "--source", &a],
            &["ftp"],
        ),
        case(
            "table bucket",
            &["write", "--table", "s3:///t", "--source", &a],
            &["s3:///t"],
        ),
        case(
            "coordinator url",
            &[
                "write",
                "--table",
                &tt,
                "--source",
                &a,
                "--coordinator",
                "not a url",
            ],
            &["not a url"],
        ),
        case(
            "no coordinator there",
            &[
                "write",
                "--table",
                &tt,
                "--source",
                &a,
                "--coordinator",
                "http://127.0.0.1:1",
            ],
            &["127.0.0.1:1"],
        ),
        case(
            "empty coordinator list",
            &[
                "write",
                "--table",
                &tt,
                "--source",
                &a,
                "--coordinator",
                ",",
            ],
            &["--coordinator"],
        ),
        // SQL.
        case("sql syntax", &["sql", "DELEET FROM x"], &["DELEET"]),
        case(
            "sql not a delta table",
            &["sql", "DELETE FROM t WHERE id = 1"],
            &["delta.`"],
        ),
        case(
            "sql missing table",
            &["sql", &del(&p("no-table"))],
            &["no-table"],
        ),
        case(
            "sql unknown column",
            &["sql", &format!("UPDATE delta.`{tt}` SET nope4 = 1")],
            &["nope4"],
        ),
        case(
            "sql merge column",
            &[
                "sql",
                &format!(
                    "MERGE INTO delta.`{tt}` AS t USING delta.`{tt}` AS s ON t.nope5 = s.id WHEN MATCHED THEN DELETE"
                ),
            ],
            &["nope5"],
        ),
        case("sql unsupported", &["sql", "SELECT 1"], &["SELECT"]),
        case(
            "sql vacuum retention",
            &["sql", &format!("VACUUM delta.`{tt}` RETAIN 1 HOURS")],
            &["retention"],
        ),
        case(
            "sql property value",
            &[
                "sql",
                &format!(
                    "ALTER TABLE delta.`{tt}` SET TBLPROPERTIES ('delta.appendOnly' = 'maybe')"
                ),
            ],
            &["delta.appendOnly"],
        ),
        case(
            "sql second statement bad",
            &["sql", &format!("{}; DELETE FROM", del(&tt))],
            &["DELETE"],
        ),
        case(
            "sql file missing",
            &["sql", "--file", &p("no.sql")],
            &["no.sql"],
        ),
        case("sql empty", &["sql", "  ;  "], &["statement"]),
        // A corrupt log: every command names the file or what is wrong with it.
        case(
            "truncated commit",
            &["sql", &del(&truncated)],
            &["00000000000000000001.json"],
        ),
        case(
            "truncated commit (write)",
            &["write", "--table", &truncated, "--source", &a],
            &["00000000000000000001.json"],
        ),
        case(
            "gap in the log",
            &["sql", &del(&gap)],
            &["gap", "00000000000000000002.json"],
        ),
        case("future protocol", &["sql", &del(&future)], &["reader", "9"]),
        case(
            "missing checkpoint",
            &["sql", &del(&no_checkpoint)],
            &["checkpoint"],
        ),
        case(
            "missing data file",
            &["sql", &del(&missing_file)],
            &[".parquet"],
        ),
        case(
            "binary commit",
            &["sql", &del(&not_json)],
            &["00000000000000000001.json"],
        ),
        case(
            "malformed action",
            &["sql", &del(&unknown_action)],
            &["00000000000000000001.json"],
        ),
        case(
            "describe on a corrupt log",
            &["sql", &format!("DESCRIBE HISTORY delta.`{truncated}`")],
            &["00000000000000000001.json"],
        ),
    ];
    for c in &mut cases {
        if matches!(c.args[0].as_str(), "write" | "sql" | "optimize") {
            c.args
                .extend(["-q".to_string(), "--executors".into(), "2".into()]);
            if c.args.iter().any(|a| a == "--coordinator") {
                c.args.truncate(c.args.len() - 2);
            }
        }
    }

    // A port that answers, but not gRPC.
    let http = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let http_url = format!("http://{}", http.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in http.incoming().flatten() {
            let mut stream = stream;
            use std::io::Write;
            let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n");
        }
    });
    cases.push(case(
        "not a coordinator",
        &[
            "write",
            "--table",
            &tt,
            "--source",
            &a,
            "-q",
            "--coordinator",
            &http_url,
        ],
        &[&http_url, "gRPC"],
    ));

    let before = listing_with_dirs(root);
    let n = cases.len();
    let mut failures = Vec::new();
    for c in cases {
        let mut cmd = std::process::Command::new(silt_bin());
        cmd.args(&c.args)
            .env("RUST_BACKTRACE", "1")
            .env_remove("SILT_LOG")
            .env_remove("RUST_LOG");
        for (k, v) in &c.env {
            cmd.env(k, v);
        }
        let out = run(cmd, Duration::from_secs(120));
        if let Err(e) = one_clear_line(&c.name, &out, &c.terms) {
            failures.push(e);
        }
        assert_same_listing(&before, &listing_with_dirs(root), &c.name);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let protocol = protocol_misuse(&t);
    assert_same_listing(&before, &listing_with_dirs(root), "protocol misuse");
    eprintln!("[catalogue] {n} command cases and {protocol} protocol cases");
    assert!(n + protocol >= 60, "{n} + {protocol} cases");
}

/// Calls a coordinator process the wrong way: each call is refused with one clear line, the
/// coordinator keeps serving, the table is unchanged. Returns the number of cases.
fn protocol_misuse(t: &Path) -> usize {
    use silt_proto::pb;
    let mut cmd = std::process::Command::new(silt_bin());
    cmd.args(["coordinator", "--listen", "127.0.0.1:0"]);
    let mut coordinator = Daemon::spawn("coordinator", cmd);
    let addr = coordinator.listening_address(Duration::from_secs(60));
    let url = format!("http://{addr}");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let refusals: Vec<(&str, tonic::Status)> = rt.block_on(async {
        let mut jobs = pb::job_service_client::JobServiceClient::connect(url.clone())
            .await
            .unwrap();
        let mut execs = pb::executor_service_client::ExecutorServiceClient::connect(url.clone())
            .await
            .unwrap();
        let write = |table: &str| pb::SubmitJobRequest {
            job: Some(pb::submit_job_request::Job::Write(pb::WriteJob {
                table_uri: table.to_string(),
                source_uri: s(t),
                format: 99,
                ..Default::default()
            })),
            ..Default::default()
        };
        let mut out = Vec::new();
        let mut push = |what, r: Result<(), tonic::Status>| match r {
            Err(s) => out.push((what, s)),
            Ok(()) => panic!("{what} was taken"),
        };
        push(
            "no job",
            jobs.submit_job(pb::SubmitJobRequest::default())
                .await
                .map(|_| ()),
        );
        push(
            "unknown format",
            jobs.submit_job(write(&s(t))).await.map(|_| ()),
        );
        push(
            "watch an unknown job",
            async {
                jobs.watch_job(pb::WatchJobRequest {
                    job_id: "jx".into(),
                })
                .await
                .map(|_| ())
            }
            .await,
        );
        push(
            "result of an unknown job",
            jobs.get_job_result(pb::GetJobResultRequest {
                job_id: "jx".into(),
            })
            .await
            .map(|_| ()),
        );
        push(
            "report without key",
            execs
                .report_task(pb::TaskReport::default())
                .await
                .map(|_| ()),
        );
        push(
            "report without outcome",
            execs
                .report_task(pb::TaskReport {
                    key: Some(pb::TaskKey::default()),
                    ..Default::default()
                })
                .await
                .map(|_| ()),
        );
        push(
            "old protocol",
            execs
                .register(pb::RegisterRequest {
                    protocol_version: 1,
                    ..Default::default()
                })
                .await
                .map(|_| ()),
        );
        let huge = pb::SubmitJobRequest {
            job: Some(pb::submit_job_request::Job::Delete(pb::DeleteJob {
                table_uri: "x".repeat(65 << 20),
                ..Default::default()
            })),
            ..Default::default()
        };
        push("oversized message", jobs.submit_job(huge).await.map(|_| ()));
        // Not gRPC at all: the connection is dropped, the coordinator serves on.
        {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut raw = tokio::net::TcpStream::connect(&addr).await.unwrap();
            let _ = raw.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await;
            let mut buf = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(5), raw.read_to_end(&mut buf)).await;
        }
        push(
            "after garbage",
            jobs.submit_job(pb::SubmitJobRequest::default())
                .await
                .map(|_| ()),
        );
        out
    });
    for (what, status) in &refusals {
        let msg = status.message();
        assert!(
            !msg.is_empty() && !msg.contains('\n') && msg.len() < 400,
            "[{what}] {:?}: {msg}",
            status.code()
        );
        assert!(status.code() != tonic::Code::Unknown, "[{what}] {status:?}");
    }
    assert!(coordinator.collect().contains("listening on"));
    refusals.len()
}
