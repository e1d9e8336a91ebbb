//! Liquid-clustered tables (the `clustering` feature, a `delta.clustering` domain), as
//! Databricks writes them (built by hand by the oracle): silt appends, deletes and compacts
//! them keeping the domain as it is and writing statistics of the clustering column in every
//! file it adds — even past the first 32 columns, where statistics stop by default — and
//! refuses ZORDER BY on them, as Delta Spark does.

use std::path::Path;

use serde_json::Value;

use crate::support::*;

/// Whether every file the last commit added has min/max statistics of `column`.
fn adds_have_stats_of(table: &Path, column: &str) -> bool {
    let adds: Vec<Value> = last_commit(table)
        .into_iter()
        .filter_map(|a| a.get("add").cloned())
        .collect();
    !adds.is_empty()
        && adds.iter().all(|a| {
            let stats: Value =
                serde_json::from_str(a["stats"].as_str().unwrap_or("{}")).expect("stats");
            stats["minValues"].get(column).is_some() && stats["maxValues"].get(column).is_some()
        })
}

#[test]
fn clustered_tables_keep_their_domain_and_clustering_statistics() {
    let dir = tempdir("clustered");
    let t = dir.path().join("t");
    let src = dir.path().join("src");
    oracle_ok(&[
        "clustered-table",
        "--table",
        &s(&t),
        "--source",
        &s(&src),
        "--columns",
        "40",
        "--cluster-by",
        "c39",
    ]);
    let original = dir.path().join("original");
    std::fs::create_dir_all(&original).unwrap();
    std::fs::copy(
        t.join("part-00000-clustered.snappy.parquet"),
        original.join("part-0.parquet"),
    )
    .unwrap();
    assert_eq!(silt_write_ok(&t, &src, &[]), Some(1));
    assert!(adds_have_stats_of(&t, "c39"), "{:?}", last_commit(&t));
    assert_same_content(
        &t,
        &[Expected::Parquet(&original), Expected::Parquet(&src)],
        &[],
    );
    let table = delta_ref(&t);
    silt_sql_ok(&format!("DELETE FROM {table} WHERE c1 % 4 = 0"));
    assert!(adds_have_stats_of(&t, "c39"), "{:?}", last_commit(&t));
    let listing = listing_with_dirs(&t);
    silt_sql(&format!("OPTIMIZE {table} ZORDER BY (c1)"), &[])
        .assert_error(&["liquid clustering", "ZORDER BY"]);
    assert_same_listing(&listing, &listing_with_dirs(&t), "refused ZORDER BY");
    silt_sql_ok(&format!("OPTIMIZE {table}"));
    assert!(adds_have_stats_of(&t, "c39"), "{:?}", last_commit(&t));
    // The domain is the table's own: no commit of silt's touched it.
    for c in commit_files(&t).iter().skip(1) {
        let text = std::fs::read_to_string(t.join("_delta_log").join(c)).unwrap();
        assert!(!text.contains("delta.clustering"), "{c}: {text}");
    }
    // Every reader reads it; the rows are the 40 minus the 20 deleted (c1 = start + 2r).
    let rows = oracle_ok(&[
        "expect-filter",
        "--table",
        &s(&t),
        "--predicate-py",
        "col('c1') % 4 == 0",
        "--out",
        &s(&dir.path().join("none.parquet")),
    ])
    .json();
    assert_eq!(rows["matching"], 0, "{rows}");
    assert_eq!(rows["rows"], 20, "{rows}");
}
