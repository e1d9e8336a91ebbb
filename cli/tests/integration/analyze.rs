//! ANALYZE TABLE … COMPUTE DELTA STATISTICS: statistics restored on a table written without
//! them, checked against the data (`oracle.py inspect --verify-stats`), file skipping as
//! delta-rs reads the new stats (`oracle.py clustering`), same rows before and after.

use serde_json::Value;

use crate::support::*;

fn files_read(t: &std::path::Path, column: &str) -> f64 {
    let out = oracle_ok(&[
        "clustering",
        "--table",
        &s(t),
        "--columns",
        column,
        "--seed",
        "3",
    ]);
    let v: Value = serde_json::from_str(out.stdout.trim()).unwrap();
    v[column].as_f64().unwrap_or_else(|| panic!("{v}"))
}

#[test]
fn analyze_restores_statistics_and_file_skipping() {
    let seed = seed_for("analyze_restores_statistics_and_file_skipping");
    let dir = tempdir("analyze");
    let t = dir.path().join("t");
    // Four appends of disjoint id ranges, without column statistics.
    for i in 0..4u64 {
        let src = Gen::new(seed + i, 500)
            .files(1)
            .id_start(i as i64 * 1000)
            .write(&dir.path().join(format!("src{i}")));
        let extra: &[&str] = if i == 0 {
            &["--property", "delta.dataSkippingNumIndexedCols=0"]
        } else {
            &[]
        };
        silt_write_ok(&t, &src, extra);
    }
    let original = dir.path().join("original");
    copy_dir(&t, &original);
    let stats_of = |t: &std::path::Path| -> Vec<Value> {
        inspect(t)["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["stats"].clone())
            .collect()
    };
    assert!(
        stats_of(&t)
            .iter()
            .all(|s| s["minValues"].as_object().is_none_or(|m| m.is_empty()))
    );
    assert_eq!(
        files_read(&t, "id"),
        1.0,
        "no statistics: every file is read"
    );
    // Statistics of a column the table does not keep them for would be ignored: refused.
    silt_sql(
        &format!(
            "ANALYZE TABLE {} COMPUTE DELTA STATISTICS FOR COLUMNS id",
            delta_ref(&t)
        ),
        &[],
    )
    .assert_error(&["`id`", "dataSkippingNumIndexedCols"]);
    silt_sql_ok(&format!(
        "ALTER TABLE {} SET TBLPROPERTIES ('delta.dataSkippingNumIndexedCols' = '32')",
        delta_ref(&t)
    ));
    assert_eq!(
        files_read(&t, "id"),
        1.0,
        "settings alone add no statistics"
    );

    // Only `id`: its statistics appear, nothing else's.
    let r = silt_sql_ok(&format!(
        "ANALYZE TABLE {} COMPUTE DELTA STATISTICS FOR COLUMNS id",
        delta_ref(&t)
    ));
    assert_eq!(metric(&r, "numFilesAnalyzed"), 4, "{r}");
    let info = last_commit_info(&t);
    assert_eq!(info["operation"], "COMPUTE STATS");
    for a in last_commit(&t) {
        if let Some(add) = a.get("add") {
            assert_eq!(add["dataChange"], Value::Bool(false), "{a}");
        }
        assert!(a.get("remove").is_none(), "{a}");
    }
    for s in stats_of(&t) {
        assert!(s["minValues"]["id"].is_i64(), "{s}");
        assert!(s["minValues"].get("f").is_none(), "{s}");
    }
    let read = files_read(&t, "id");
    assert!(
        read <= 0.3,
        "a point predicate on id now skips files: {read}"
    );

    // Every column the settings name.
    silt_sql_ok(&format!(
        "ANALYZE TABLE {} COMPUTE DELTA STATISTICS",
        delta_ref(&t)
    ));
    let checked = inspect_with(&t, &["--verify-stats"]);
    assert_eq!(
        checked["stats_problems"],
        serde_json::json!([]),
        "{checked}"
    );
    for s in stats_of(&t) {
        assert!(s["maxValues"]["f"].is_number(), "{s}");
        assert!(s["maxValues"]["id"].is_i64(), "{s}");
    }
    assert_same_content(&t, &[Expected::Table(&original)], &[]);
    silt_sql(
        &format!(
            "ANALYZE TABLE {} COMPUTE DELTA STATISTICS FOR COLUMNS nope",
            delta_ref(&t)
        ),
        &[],
    )
    .assert_error(&["`nope`", "not in the table"]);
}
