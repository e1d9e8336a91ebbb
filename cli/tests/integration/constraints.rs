//! Delta protocol features silt honours when it writes: CHECK constraints (added by delta-rs,
//! `delta.constraints.<name>`) checked on every row silt writes — appends, UPDATE, MERGE —,
//! differential against delta-rs's own enforcement on an identical copy: the same statements
//! succeed or fail, the same content after each (a failure commits nothing).

use std::path::Path;

use serde_json::Value;

use crate::merge::Rng;
use crate::support::*;

fn add_constraint(t: &Path, name: &str, expr: &str) {
    oracle_ok(&[
        "add-constraint",
        "--table",
        &s(t),
        "--name",
        name,
        "--expr",
        expr,
    ]);
}

/// Seeded batches appended by silt and by delta-rs to copies of a table with a CHECK
/// constraint: each batch either passes on both or fails on both; then UPDATE and MERGE on
/// silt's copy, violating or not.
#[test]
fn check_constraints_are_enforced_as_delta_rs_enforces_them() {
    let seed = seed_for("check_constraints_are_enforced_as_delta_rs_enforces_them");
    let dir = tempdir("constraints");
    let mut r = Rng(seed | 1);
    // A first batch without a row the constraint refuses: ids 0..300 (`id >= 0`), `k` in 1..3.
    let base = Gen::new(seed, 300)
        .k_domain("1,2,3")
        .no_null_k()
        .write(&dir.path().join("base"));
    let ours = dir.path().join("silt");
    let theirs = dir.path().join("delta-rs");
    oracle_write(&ours, &base, "parquet", &[]);
    add_constraint(&ours, "k_small", "k < 4 AND id >= 0");
    copy_dir(&ours, &theirs);
    let info = inspect(&ours);
    assert_eq!(
        info["configuration"]["delta.constraints.k_small"], "k < 4 AND id >= 0",
        "{info}"
    );
    let mut failed = 0;
    for step in 0..6u64 {
        // Half the batches carry a `k` of 5 (or a null `k`) somewhere.
        let domain = if r.below(2) == 0 { "1,2,3" } else { "1,2,5" };
        let mut g = Gen::new(seed + 10 + step, 40)
            .k_domain(domain)
            .id_start(1000 + 100 * step as i64);
        if r.below(3) != 0 {
            g = g.no_null_k();
        }
        let src = g.write(&dir.path().join(format!("batch{step}")));
        let silt = silt_write(&ours, &src, &[]);
        let delta_rs = oracle([
            "oracle-write",
            "--table",
            &s(&theirs),
            "--source",
            &s(&src),
            "--mode",
            "append",
        ]);
        eprintln!(
            "[constraints] step {step} (k in {domain}): silt {}, delta-rs {}",
            if silt.ok() { "ok" } else { "refused" },
            if delta_rs.ok() { "ok" } else { "refused" }
        );
        assert_eq!(silt.ok(), delta_rs.ok(), "step {step}: {}", silt.describe());
        if !silt.ok() {
            failed += 1;
            silt.assert_error(&["check constraint `k_small`", "violated", "k = "]);
        }
        assert_same_content(&ours, &[Expected::Table(&theirs)], &[]);
    }
    eprintln!("[constraints] {failed} of 6 batch(es) refused");

    // UPDATE and MERGE check the rows they write.
    let before = commit_files(&ours).len();
    silt_sql(
        &format!("UPDATE {} SET k = k + 10 WHERE id < 5", delta_ref(&ours)),
        &[],
    )
    .assert_error(&["k_small", "violated"]);
    let merge_src = Gen::new(seed + 99, 20)
        .k_domain("7")
        .no_null_k()
        .write(&dir.path().join("merge-src"));
    for exchange in ["never", "always"] {
        silt_sql(
            &format!(
                "MERGE INTO {} t USING parquet.`{}` s ON t.id = s.id WHEN MATCHED THEN UPDATE SET * WHEN NOT MATCHED THEN INSERT *",
                delta_ref(&ours),
                merge_src.display()
            ),
            &["--exchange", exchange],
        )
        .assert_error(&["k_small", "violated"]);
    }
    assert_eq!(commit_files(&ours).len(), before, "nothing committed");
    let r: Value = silt_sql_ok(&format!(
        "UPDATE {} SET k = 3 WHERE id < 5",
        delta_ref(&ours)
    ));
    assert!(r["version"].is_i64(), "{r}");

    // A new table cannot be given a constraint as a property (its protocol would not declare
    // the feature, so other writers would not enforce it).
    let fresh = dir.path().join("fresh");
    silt_write(&fresh, &base, &["--property", "delta.constraints.p=k < 4"])
        .assert_error(&["delta.constraints", "add constraint"]);
    assert!(commit_files(&fresh).is_empty());
}

/// Generated columns (`delta.generationExpression`, a table delta-rs creates): an append
/// without the column gets it computed as delta-rs computes it; a provided value that is not
/// the expression's fails the job naming the column; UPDATE computes the column again from
/// the updated row, MERGE from the updated or inserted one; assigning it directly is refused.
/// Nothing is committed by a failure.
#[test]
fn generated_columns_are_computed_and_checked() {
    let seed = seed_for("generated_columns_are_computed_and_checked");
    let dir = tempdir("generated");
    let src = Gen::new(seed, 300).write(&dir.path().join("src"));
    let ours = dir.path().join("silt");
    let theirs = dir.path().join("delta-rs");
    for t in [&ours, &theirs] {
        oracle_ok(&[
            "generated-table",
            "--table",
            &s(t),
            "--source",
            &s(&src),
            "--column",
            "g",
            "--type",
            "double",
            "--expression",
            "f * 2",
        ]);
    }
    // Both append the same source: silt computes `g` as delta-rs does.
    assert_eq!(silt_write_ok(&ours, &src, &[]), Some(2));
    oracle_write(&theirs, &src, "parquet", &[]);
    assert_same_content(&ours, &[Expected::Table(&theirs)], &[]);
    // A source that carries `g` with other values is refused.
    let bad = dir.path().join("bad");
    oracle_ok(&[
        "project",
        "--source",
        &s(&src),
        "--out",
        &s(&bad.join("b.parquet")),
        "--rename",
        "f=g",
    ]);
    // (`f` renamed to `g`: `g` holds f's values, f is null, so g ≠ f * 2 where f was set.)
    let before = listing_with_dirs(&ours);
    silt_write(&ours, &bad, &[]).assert_error(&["generated column `g`"]);
    assert_same_listing(&before, &listing_with_dirs(&ours), "refused append");
    silt_sql(&format!("UPDATE {} SET g = 1", delta_ref(&ours)), &[])
        .assert_error(&["generated column"]);
    // UPDATE of f: g follows (computing it is not counted as updating more rows).
    let k1 = oracle_ok(&[
        "expect-filter",
        "--table",
        &s(&ours),
        "--predicate-py",
        "col('k') == 1",
        "--out",
        &s(&dir.path().join("k1.parquet")),
    ])
    .json()["matching"]
        .as_i64()
        .expect("matching");
    let r = silt_sql_ok(&format!(
        "UPDATE {} SET f = f + 1 WHERE k = 1",
        delta_ref(&ours)
    ));
    assert!(k1 > 0);
    assert_eq!(metric(&r, "numUpdatedRows"), k1, "{r}");
    // Rows where `g` is not f * 2 (null-safe), counted by polars.
    let violations = |after: &str| -> Value {
        let j = oracle_ok(&[
            "expect-filter",
            "--table",
            &s(&ours),
            "--predicate-py",
            "~((col('g') == col('f') * 2) | (col('g').is_null() & col('f').is_null()))",
            "--out",
            &s(&dir.path().join(format!("violations-{after}.parquet"))),
        ])
        .json();
        assert_eq!(
            j["matching"], 0,
            "every row has g = f * 2 after the {after}: {j}"
        );
        j
    };
    let j = violations("UPDATE");
    assert!(j["rows"].as_i64().unwrap_or(0) > 0, "{j}");

    // MERGE: updated and inserted rows get `g` computed; naming it in a clause is refused.
    let more = Gen::new(seed + 1, 200)
        .id_start(250)
        .write(&dir.path().join("more"));
    silt_sql(
        &format!(
            "MERGE INTO {} t USING parquet.`{}` s ON t.id = s.id WHEN MATCHED THEN UPDATE SET g = 1",
            delta_ref(&ours),
            more.display()
        ),
        &[],
    )
    .assert_error(&["generated column"]);
    let matched = oracle_ok(&[
        "expect-filter",
        "--table",
        &s(&ours),
        "--predicate-py",
        "(col('id') >= 250) & (col('id') < 450)",
        "--out",
        &s(&dir.path().join("matched.parquet")),
    ])
    .json()["matching"]
        .as_i64()
        .expect("matching");
    let r = silt_sql_ok(&format!(
        "MERGE INTO {} t USING parquet.`{}` s ON t.id = s.id \
         WHEN MATCHED THEN UPDATE SET f = s.f + 1 WHEN NOT MATCHED THEN INSERT *",
        delta_ref(&ours),
        more.display()
    ));
    assert!(metric(&r, "numTargetRowsUpdated") > 0, "{r}");
    assert!(metric(&r, "numTargetRowsInserted") > 0, "{r}");
    // Every target row with a source id (250 ..= 449) is updated once, nothing more.
    assert_eq!(metric(&r, "numTargetRowsUpdated"), matched, "{r}");
    violations("MERGE");
}
