//! `silt sql`: INSERT onto the write path, table properties, DESCRIBE, several statements
//! from a file, and the bad-input catalogue (one-line errors, table unchanged, non-zero exit).

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::support::*;

fn table_with_data(dir: &Path, seed: u64, extra: &[&str]) -> (PathBuf, PathBuf) {
    let src = Gen::new(seed, 300).files(2).write(&dir.join("src"));
    let t = dir.join("t");
    silt_write_ok(&t, &src, extra);
    (t, src)
}

#[test]
fn bad_statements_fail_with_one_line_and_change_nothing() {
    let seed = seed_for("bad_statements_fail_with_one_line_and_change_nothing");
    let dir = tempdir("sql-bad");
    let (t, _) = table_with_data(dir.path(), seed, &["--partition-by", "k"]);
    let tr = delta_ref(&t);
    let missing = delta_ref(&dir.path().join("nope"));
    let cases: Vec<(String, Vec<&str>)> = vec![
        (
            format!("DELETE FROM {missing} WHERE id = 1"),
            vec!["table not found"],
        ),
        (
            format!("DELETE FROM {tr} WHERE nope = 1"),
            vec!["unknown column `nope`"],
        ),
        (
            format!("UPDATE {tr} SET nope = 1"),
            vec!["unknown column `nope` in SET"],
        ),
        (
            format!("UPDATE {tr} SET id = 'abc' WHERE k = 1"),
            vec!["type mismatch", "`id`", "long"],
        ),
        (
            format!("UPDATE {tr} SET flag = 1"),
            vec!["type mismatch", "`flag`"],
        ),
        (
            format!("UPDATE {tr} SET id = 1, ID = 2"),
            vec!["assigned more than once"],
        ),
        (
            format!("DELETE FROM {tr} WHERE id + 1"),
            vec!["must be a boolean"],
        ),
        (
            format!("UPDATE {tr} SET f = 1 WHERE s"),
            vec!["must be a boolean"],
        ),
        (format!("DELETE FROM {tr} WHERE"), vec!["syntax error"]),
        (format!("DELETE {tr} id = 1"), vec!["syntax error"]),
        (
            format!("MERGE INTO {tr} t USING parquet.`/x` s ON t.id = s.id"),
            vec!["MERGE needs at least one WHEN clause"],
        ),
        (
            "CREATE TABLE x (a INT)".into(),
            vec!["unsupported SQL", "CREATE TABLE x"],
        ),
        (
            format!("SELECT * FROM {tr}"),
            vec!["unsupported SQL", "SELECT"],
        ),
        (
            "DELETE FROM some_table".into(),
            vec!["unknown table `some_table`"],
        ),
        (
            format!("ALTER TABLE {tr} SET TBLPROPERTIES ('delta.nosuchthing' = 'x')"),
            vec!["unknown Delta table property `delta.nosuchthing`"],
        ),
        (
            format!("ALTER TABLE {tr} SET TBLPROPERTIES ('delta.checkpointInterval' = 'abc')"),
            vec!["delta.checkpointInterval", "abc"],
        ),
        (
            format!("ALTER TABLE {tr} UNSET TBLPROPERTIES ('not.set')"),
            vec!["`not.set` is not set"],
        ),
        (
            format!("INSERT INTO {tr} SELECT id FROM parquet.`/x`"),
            vec!["unsupported SQL", "INSERT source"],
        ),
    ];
    let before = listing(&t);
    for (sql, terms) in &cases {
        let out = silt_sql(sql, &[]);
        let line = out.assert_error(terms);
        eprintln!("[bad] {sql}\n      {line}");
        assert_same_listing(
            &before,
            &listing(&t),
            "a failed statement changed the table",
        );
    }
}

#[test]
fn append_only_tables_refuse_delete_and_update() {
    let seed = seed_for("append_only_tables_refuse_delete_and_update");
    let dir = tempdir("sql-append-only");
    let (t, _) = table_with_data(dir.path(), seed, &[]);
    let tr = delta_ref(&t);
    let r = silt_sql_ok(&format!(
        "ALTER TABLE {tr} SET TBLPROPERTIES ('delta.appendOnly' = 'true', 'owner' = 'data-eng')"
    ));
    assert_eq!(r["version"], 1);
    let info = last_commit_info(&t);
    assert_eq!(info["operation"], "SET TBLPROPERTIES");
    assert_eq!(
        info["operationParameters"]["properties"],
        r#"{"delta.appendOnly":"true","owner":"data-eng"}"#
    );
    let cfg = &inspect(&t)["configuration"];
    assert_eq!(cfg["delta.appendOnly"], "true");
    assert_eq!(cfg["owner"], "data-eng");
    let before = listing(&t);
    for sql in [
        format!("DELETE FROM {tr} WHERE id < 10"),
        format!("UPDATE {tr} SET f = 0"),
    ] {
        silt_sql(&sql, &[]).assert_error(&["append-only"]);
        assert_same_listing(&before, &listing(&t), "refused DML changed the table");
    }
    silt_sql_ok(&format!(
        "ALTER TABLE {tr} UNSET TBLPROPERTIES ('delta.appendOnly', 'owner')"
    ));
    assert_eq!(last_commit_info(&t)["operation"], "UNSET TBLPROPERTIES");
    assert!(inspect(&t)["configuration"].get("owner").is_none());
    let r = silt_sql_ok(&format!("DELETE FROM {tr} WHERE id < 10"));
    assert_eq!(metric(&r, "numDeletedRows"), 10);
}

#[test]
fn describe_history_and_detail() {
    let seed = seed_for("describe_history_and_detail");
    let dir = tempdir("sql-describe");
    let (t, _) = table_with_data(dir.path(), seed, &["--partition-by", "k"]);
    let tr = delta_ref(&t);
    silt_sql_ok(&format!("DELETE FROM {tr} WHERE id < 50"));
    silt_sql_ok(&format!("UPDATE {tr} SET f = 1 WHERE id < 100"));
    let h = silt_sql_ok(&format!("DESCRIBE HISTORY {tr}"));
    let rows = h["rows"].as_array().expect("history rows");
    let ops: Vec<(i64, &str)> = rows
        .iter()
        .map(|r| {
            (
                r["version"].as_i64().unwrap(),
                r["operation"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(ops, vec![(2, "UPDATE"), (1, "DELETE"), (0, "WRITE")]);
    assert_eq!(rows[1]["operationMetrics"]["numDeletedRows"], "50");
    assert_eq!(rows[0]["readVersion"], 1);
    assert_eq!(rows[2]["isBlindAppend"], true);
    let h = silt_sql_ok(&format!("DESCRIBE HISTORY {tr} LIMIT 1"));
    assert_eq!(h["rows"].as_array().unwrap().len(), 1);

    let d = silt_sql_ok(&format!("DESCRIBE DETAIL {tr}"));
    let row = &d["rows"][0];
    let facts = inspect(&t);
    assert_eq!(row["format"], "delta");
    assert_eq!(row["partitionColumns"], serde_json::json!(["k"]));
    assert_eq!(row["numFiles"], facts["num_files"]);
    assert_eq!(row["minWriterVersion"], 2);
    assert_eq!(row["version"], 2);
    // The text form is a table with Delta Spark's columns.
    let text = run(
        {
            let mut c = std::process::Command::new(silt_bin());
            c.args(["sql", "-q", &format!("DESCRIBE HISTORY {tr}")]);
            c
        },
        WRITE_TIMEOUT,
    );
    text.assert_ok();
    let header = text.stdout.lines().next().unwrap_or_default();
    for col in [
        "version",
        "timestamp",
        "operation",
        "operationParameters",
        "operationMetrics",
    ] {
        assert!(header.contains(col), "{header}");
    }
}

#[test]
fn insert_statements_map_onto_writes() {
    let seed = seed_for("insert_statements_map_onto_writes");
    let dir = tempdir("sql-insert");
    let (t, src) = table_with_data(dir.path(), seed, &["--partition-by", "k"]);
    let tr = delta_ref(&t);
    let more = Gen::new(seed + 1, 100)
        .id_start(1000)
        .write(&dir.path().join("more"));
    let narrow = Gen::new(seed + 2, 80)
        .id_start(2000)
        .k_domain("1")
        .no_null_k()
        .write(&dir.path().join("narrow"));
    let pq = |p: &Path| format!("parquet.`{}`", s(p));

    // Several statements from a file, in order.
    let script = dir.path().join("script.sql");
    std::fs::write(
        &script,
        format!(
            "INSERT INTO {tr} SELECT * FROM {};\n-- a comment\nDELETE FROM {tr} WHERE id >= 1050;\n",
            pq(&more)
        ),
    )
    .unwrap();
    let out = run(
        {
            let mut c = std::process::Command::new(silt_bin());
            c.args(["sql", "-f", &s(&script), "--json", "-q", "--executors", "2"]);
            c
        },
        WRITE_TIMEOUT,
    );
    out.assert_ok();
    let results: Vec<Value> = out
        .stdout
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(results.len(), 2, "{}", out.describe());
    assert_eq!(results[0]["version"], 1);
    assert_eq!(results[1]["version"], 2);
    assert_eq!(inspect(&t)["num_rows"], 350);

    // Time travel: the table as it was at version 0, into a new table.
    let copy = dir.path().join("copy");
    silt_sql_ok(&format!(
        "INSERT INTO {} SELECT * FROM delta.`{}` VERSION AS OF 0",
        delta_ref(&copy),
        s(&t)
    ));
    assert_same_content(&copy, &[Expected::Parquet(&src)], &[]);

    // TIMESTAMP AS OF: the version committed at or before that instant (version 0's commit
    // timestamp, from DESCRIBE HISTORY, selects version 0 although 2 exist).
    let h = silt_sql_ok(&format!("DESCRIBE HISTORY {tr}"));
    let v0 = h["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["version"] == 0)
        .expect("version 0 in the history");
    let ts = v0["timestamp"].as_str().expect("ISO timestamp").to_string();
    let copy_ts = dir.path().join("copy-ts");
    silt_sql_ok(&format!(
        "INSERT INTO {} SELECT * FROM delta.`{}` TIMESTAMP AS OF '{ts}'",
        delta_ref(&copy_ts),
        s(&t)
    ));
    assert_same_content(&copy_ts, &[Expected::Parquet(&src)], &[]);

    // INSERT INTO … REPLACE WHERE: rows of k = 1 replaced by the new ones.
    let others = dir.path().join("others.parquet");
    oracle_ok(&[
        "expect-filter",
        "--table",
        &s(&t),
        "--predicate-py",
        "col('k') == 1",
        "--out",
        &s(&others),
    ]);
    silt_sql_ok(&format!(
        "INSERT INTO {tr} REPLACE WHERE k = 1 SELECT * FROM {}",
        pq(&narrow)
    ));
    assert_eq!(
        last_commit_info(&t)["operationParameters"]["predicate"],
        "k = 1"
    );
    assert_same_content(
        &t,
        &[Expected::Parquet(&others), Expected::Parquet(&narrow)],
        &[],
    );

    // INSERT OVERWRITE … PARTITION (k = 7): the source has no `k`; its rows go to k=7.
    let no_k = Gen::new(seed + 3, 40)
        .id_start(3000)
        .variant("no_k")
        .write(&dir.path().join("no_k"));
    silt_sql_ok(&format!(
        "INSERT OVERWRITE {tr} PARTITION (k = 7) SELECT * FROM {}",
        pq(&no_k)
    ));
    assert!(t.join("k=7").is_dir(), "{}", listing_text(&t));
    let info = last_commit_info(&t);
    assert_eq!(info["operationParameters"]["predicate"], "\"k\" = 7");
}
