//! Deletion vectors written by DELETE, UPDATE and MERGE: random sequences of statements on a
//! table with deletion vectors enabled (silt) and on a plain copy (delta-rs, copy-on-write),
//! the same content after every step, read back by delta-rs (its DataFusion scan, which
//! applies the vectors), polars and DuckDB's Delta extension; vectors merged with earlier ones; files whose rows are
//! all deleted removed; the protocol upgraded by `ALTER TABLE`; copy-on-write on request;
//! Spark's golden tables with deletion vectors operated on; an attempt's vector file that
//! was not committed removed.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::{Value, json};
use silt_common::task::DeletionVector;

use crate::merge::{Rng, random_clauses};
use crate::support::*;

/// DELETE conditions over `Gen`'s columns.
const DELETES: &[&str] = &[
    "id % 7 = 3",
    "k = 2",
    "f > 500",
    "s IS NULL",
    "flag AND f < 0",
    "id BETWEEN 100 AND 180",
    "d >= '1970-01-01' AND k <> 1",
    "id < -1",
];

type Update = (&'static [(&'static str, &'static str)], &'static str);
/// UPDATE assignments and conditions over `Gen`'s columns.
const UPDATES: &[Update] = &[
    (&[("f", "f + 1")], "k = 1"),
    (&[("s", "upper(s)"), ("f", "f * 2")], "id % 3 = 0"),
    (&[("s", "NULL")], "f < 0"),
    (&[("flag", "NOT flag")], "id % 11 = 5"),
    (&[("k", "k + 10")], "id < 150"),
];

/// Where a random DML differential starts, for one layout: a temp dir, a `Gen` source (k in
/// 1..=3) and the paths of silt's table and delta-rs's (neither written yet).
pub(crate) struct DmlPair {
    pub dir: tempfile::TempDir,
    pub src: std::path::PathBuf,
    pub ours: std::path::PathBuf,
    pub theirs: std::path::PathBuf,
}

impl DmlPair {
    /// `name`'s temp dir, with a source of `rows` rows in `files` files.
    pub fn new(name: &str, seed: u64, rows: usize, files: usize) -> Self {
        let dir = tempdir(name);
        let src = Gen::new(seed, rows)
            .files(files)
            .k_domain("1,2,3")
            .write(&dir.path().join("src"));
        let (ours, theirs) = (dir.path().join("silt"), dir.path().join("delta-rs"));
        Self {
            dir,
            src,
            ours,
            theirs,
        }
    }
}

/// Where a random DML step runs: silt on `ours`, delta-rs on `theirs` (a plain copy).
pub(crate) struct RandomDml<'a> {
    pub seed: u64,
    pub step: usize,
    /// Names the step in the log lines.
    pub case: &'a str,
    /// MERGE sources are written here.
    pub dir: &'a Path,
    pub ours: &'a Path,
    pub theirs: &'a Path,
    /// Rows of a MERGE source; its ids start at a random value below `id_span`.
    pub merge_rows: usize,
    pub id_span: usize,
    /// MERGE with `--exchange never|always`, drawn at random.
    pub random_exchange: bool,
}

/// One random DELETE (`DELETES`), UPDATE (`UPDATES`) or MERGE (random clauses, a `Gen`
/// source keyed on `id`) by silt and by delta-rs: (silt's `--json` result, delta-rs's), both
/// of which committed or neither.
pub(crate) fn random_dml_step(r: &mut Rng, at: &RandomDml<'_>) -> (Value, Value) {
    let (got, want) = run_random_dml_step(r, at);
    assert_eq!(
        got["version"].is_i64(),
        want["version"].is_i64(),
        "[{}] both commit or neither: silt {got}, delta-rs {want}",
        at.case
    );
    (got, want)
}

fn run_random_dml_step(r: &mut Rng, at: &RandomDml<'_>) -> (Value, Value) {
    let case = at.case;
    let ours_ref = delta_ref(at.ours);
    match r.below(3) {
        0 => {
            let p = *r.pick(DELETES);
            eprintln!("[{case}] DELETE WHERE {p}");
            let got = silt_sql_ok(&format!("DELETE FROM {ours_ref} WHERE {p}"));
            (got, oracle_dml(at.theirs, "delete", Some(p), &[]))
        }
        1 => {
            let (sets, p) = *r.pick(UPDATES);
            let set_sql = sets
                .iter()
                .map(|(c, e)| format!("{c} = {e}"))
                .collect::<Vec<_>>()
                .join(", ");
            eprintln!("[{case}] UPDATE SET {set_sql} WHERE {p}");
            let got = silt_sql_ok(&format!("UPDATE {ours_ref} SET {set_sql} WHERE {p}"));
            (got, oracle_dml(at.theirs, "update", Some(p), sets))
        }
        _ => {
            let source = Gen::new(at.seed + at.step as u64 + 1, at.merge_rows)
                .k_domain("1,2,3")
                .id_start(r.below(at.id_span) as i64)
                .write(&at.dir.join(format!("merge-src-{}", at.step)));
            let clauses = random_clauses(r);
            let exchange: &[&str] = match at.random_exchange {
                true if r.below(2) == 0 => &["--exchange", "never"],
                true => &["--exchange", "always"],
                false => &[],
            };
            let statement = format!(
                "MERGE INTO {ours_ref} t USING parquet.`{}` s ON t.id = s.id {}",
                source.display(),
                clauses
                    .iter()
                    .map(|c| c.sql())
                    .collect::<Vec<_>>()
                    .join(" ")
            );
            eprintln!("[{case}] {}: {statement}", exchange.join(" "));
            let spec = json!({
                "on": "t.id = s.id",
                "target_alias": "t",
                "source_alias": "s",
                "clauses": clauses.iter().map(|c| c.json()).collect::<Vec<_>>(),
            });
            let want = oracle_ok(&[
                "merge",
                "--table",
                &s(at.theirs),
                "--source",
                &s(&source),
                "--spec",
                &spec.to_string(),
            ])
            .json();
            let out = silt_sql(&statement, exchange);
            out.assert_ok();
            (out.json(), want)
        }
    }
}

/// Every vector file the table's active files reference (file names).
pub(crate) fn referenced_vector_files(t: &Path) -> BTreeSet<String> {
    let info = inspect(t);
    let active: BTreeSet<String> = info["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap().to_string())
        .collect();
    let mut out = BTreeSet::new();
    let mut live: std::collections::BTreeMap<String, Option<String>> = Default::default();
    for c in commit_files(t) {
        let text = std::fs::read_to_string(t.join("_delta_log").join(&c)).unwrap();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let a: Value = serde_json::from_str(line).unwrap();
            if let Some(add) = a.get("add") {
                let dv = add
                    .get("deletionVector")
                    .filter(|d| d.is_object())
                    .and_then(|d| {
                        silt_common::table::dv::file_name(&DeletionVector {
                            storage_type: d["storageType"].as_str()?.to_string(),
                            path_or_inline_dv: d["pathOrInlineDv"].as_str()?.to_string(),
                            offset: None,
                            size_in_bytes: 0,
                            cardinality: 0,
                        })
                    });
                live.insert(add["path"].as_str().unwrap().to_string(), dv);
            } else if let Some(rm) = a.get("remove") {
                let path = rm["path"].as_str().unwrap().to_string();
                // A remove and an add of the same path in one commit: the add (later in the
                // replay here only when it comes after) wins; silt writes removes after adds.
                if !active.contains(&path) {
                    live.remove(&path);
                }
            }
        }
    }
    for (path, dv) in live {
        if active.contains(&path)
            && let Some(name) = dv
        {
            out.insert(name);
        }
    }
    out
}

/// Vector files on disk (file names).
pub(crate) fn vector_files_on_disk(t: &Path) -> BTreeSet<String> {
    listing(t)
        .into_keys()
        .filter_map(|k| {
            let name = k.rsplit('/').next().unwrap_or(&k).to_string();
            (name.starts_with("deletion_vector_") && name.ends_with(".bin")).then_some(name)
        })
        .collect()
}

/// Adds with a deletion vector in the table's last commit.
fn vectors_in_last_commit(t: &Path) -> usize {
    last_commit(t)
        .iter()
        .filter(|a| a["add"]["deletionVector"].is_object())
        .count()
}

/// The same random DELETE / UPDATE / MERGE sequence on a table with deletion vectors (silt)
/// and on a plain copy (delta-rs): identical content after every step.
#[test]
fn random_dml_with_deletion_vectors_matches_delta_rs_copy_on_write() {
    let seed = seed_for("random_dml_with_deletion_vectors_matches_delta_rs_copy_on_write");
    let steps: usize = env_count("SILT_DV_STEPS", 8);
    let mut r = Rng(seed | 1);
    for partitioned in [false, true] {
        let layout = if partitioned { "part" } else { "flat" };
        let DmlPair {
            dir,
            src,
            ours,
            theirs,
        } = DmlPair::new(&format!("dv-{layout}"), seed, 900, 3);
        let mut args = vec!["--property", "delta.enableDeletionVectors=true"];
        if partitioned {
            args.extend(["--partition-by", "k"]);
        }
        silt_write_ok(&ours, &src, &args);
        let part: &[&str] = if partitioned {
            &["--partition-by", "k"]
        } else {
            &[]
        };
        oracle_write(&theirs, &src, "parquet", part);
        let protocol = &last_commit(&ours)[0]["protocol"];
        assert_eq!(protocol["minReaderVersion"], 3, "{protocol}");
        assert!(
            protocol["readerFeatures"]
                .as_array()
                .unwrap()
                .contains(&json!("deletionVectors")),
            "{protocol}"
        );
        let mut marked_steps = 0;
        for step in 0..steps {
            let case = format!("{layout}-{step}");
            let before = commit_files(&ours).len();
            let (got, want) = random_dml_step(
                &mut r,
                &RandomDml {
                    seed,
                    step,
                    case: &case,
                    dir: dir.path(),
                    ours: &ours,
                    theirs: &theirs,
                    // Source ids overlap the table's (0..900) and go past them.
                    merge_rows: 150,
                    id_span: 1000,
                    random_exchange: true,
                },
            );
            eprintln!(
                "[{case}] silt: {}\n[{case}] delta-rs: {want}",
                got["metrics"]
            );
            assert!(
                commit_files(&ours).len() <= before + 1,
                "[{case}] one commit"
            );
            if got["version"].is_i64() {
                let m = &got["metrics"];
                // Nothing is copied (rows stay in their files, marked) unless a file was
                // removed for good: matched whole, or small and left mostly deleted.
                for (copied, removed) in [
                    ("numCopiedRows", "numRemovedFiles"),
                    ("numTargetRowsCopied", "numTargetFilesRemoved"),
                ] {
                    if m.get(copied).is_some() && metric(&got, removed) == 0 {
                        assert_eq!(metric(&got, copied), 0, "[{case}] {copied}: {m}");
                    }
                }
                if vectors_in_last_commit(&ours) > 0 {
                    marked_steps += 1;
                }
            }
            assert_same_content(
                &ours,
                &[Expected::Table(&theirs)],
                &["--readers", "deltalake,polars,duckdb"],
            );
            assert!(
                vector_files_on_disk(&ours).is_superset(&referenced_vector_files(&ours)),
                "[{case}] every referenced vector file exists"
            );
        }
        eprintln!("[dv-{layout}] {marked_steps} of {steps} step(s) wrote deletion vectors");
        if steps >= 6 {
            assert!(
                marked_steps > 0,
                "no step wrote a deletion vector: the test would not see them"
            );
        }
    }
}

/// Vectors of one file merge across statements; REORG … APPLY (PURGE) rewrites them away; a
/// file whose rows are all deleted is removed; `--copy-on-write` rewrites; `ALTER TABLE`
/// upgrades a plain table; Delta's vector metrics.
#[test]
fn vectors_merge_files_empty_out_and_copy_on_write_is_a_switch() {
    let seed = seed_for("vectors_merge_files_empty_out_and_copy_on_write_is_a_switch");
    let dir = tempdir("dv-lifecycle");
    let src = Gen::new(seed, 400).files(2).write(&dir.path().join("src"));
    let t = dir.path().join("t");
    // A plain table first: ALTER TABLE enables deletion vectors (protocol upgrade).
    silt_write_ok(&t, &src, &[]);
    let r = silt_sql_ok(&format!(
        "ALTER TABLE {} SET TBLPROPERTIES ('delta.enableDeletionVectors' = 'true')",
        delta_ref(&t)
    ));
    assert_eq!(r["version"], 1, "{r}");
    let protocol = last_commit(&t)
        .into_iter()
        .find_map(|a| a.get("protocol").cloned())
        .expect("the upgrade commits a protocol");
    assert_eq!(protocol["minWriterVersion"], 7, "{protocol}");
    for f in ["appendOnly", "invariants", "deletionVectors"] {
        assert!(
            protocol["writerFeatures"]
                .as_array()
                .unwrap()
                .contains(&json!(f)),
            "{f} listed: {protocol}"
        );
    }
    let files_before = inspect(&t)["num_files"].as_u64().unwrap();

    // Two deletes on the same files: the second vector holds the first one's rows too.
    let r = silt_sql_ok(&format!("DELETE FROM {} WHERE id % 5 = 0", delta_ref(&t)));
    assert_eq!(metric(&r, "numDeletionVectorsAdded") as u64, files_before);
    assert_eq!(metric(&r, "numRemovedFiles"), 0);
    assert_eq!(metric(&r, "numDeletedRows"), 80);
    let r = silt_sql_ok(&format!("DELETE FROM {} WHERE id % 5 = 1", delta_ref(&t)));
    assert_eq!(metric(&r, "numDeletionVectorsUpdated") as u64, files_before);
    assert_eq!(metric(&r, "numDeletedRows"), 80);
    for a in last_commit(&t) {
        if let Some(dv) = a["add"]["deletionVector"].as_object() {
            let rows = a["add"]["stats"]
                .as_str()
                .and_then(|s| serde_json::from_str::<Value>(s).ok())
                .unwrap();
            assert_eq!(rows["tightBounds"], false, "{rows}");
            assert!(dv["cardinality"].as_i64().unwrap() > 0);
        }
    }
    assert_eq!(inspect(&t)["num_rows"], 240, "live rows");

    // A missing vector file is an error naming it; nothing is changed.
    let broken = dir.path().join("broken");
    copy_dir(&t, &broken);
    let referenced = referenced_vector_files(&broken);
    let gone = listing(&broken)
        .into_keys()
        .find(|k| referenced.contains(k.rsplit('/').next().unwrap_or(k)))
        .expect("a referenced vector file");
    std::fs::remove_file(broken.join(&gone)).unwrap();
    let commits = commit_files(&broken).len();
    let e = silt_sql(
        &format!("UPDATE {} SET f = 0 WHERE id % 5 = 3", delta_ref(&broken)),
        &[],
    )
    .assert_error(&["deletion vector file is missing"]);
    let name = gone.rsplit('/').next().unwrap();
    assert!(e.contains(name), "the error names the file: {e}");
    assert_eq!(commit_files(&broken).len(), commits);

    // REORG … APPLY (PURGE): the files are rewritten without their deleted rows; a second
    // run finds nothing to do.
    let r = silt_sql_ok(&format!("REORG TABLE {} APPLY (PURGE)", delta_ref(&t)));
    let info = last_commit_info(&t);
    assert_eq!(info["operation"], "REORG", "{r}");
    assert_eq!(info["operationParameters"]["applyPurge"], true);
    assert_eq!(metric(&r, "numDeletionVectorsRemoved") as u64, files_before);
    let info = inspect(&t);
    assert_eq!(info["num_rows"], 240);
    assert!(
        info["files"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["deletion_vector"].is_null()),
        "no vector left: {info}"
    );
    assert!(
        silt_sql_ok(&format!("REORG TABLE {} APPLY (PURGE)", delta_ref(&t)))["version"].is_null()
    );

    // Copy-on-write on request: files rewritten without their deleted rows.
    let r = silt_sql(
        &format!("UPDATE {} SET f = 0 WHERE id % 5 = 2", delta_ref(&t)),
        &["--copy-on-write"],
    );
    r.assert_ok();
    let r = r.json();
    assert_eq!(metric(&r, "numDeletionVectorsAdded"), 0, "{r}");
    assert!(metric(&r, "numRemovedFiles") > 0, "{r}");
    assert!(metric(&r, "numCopiedRows") > 0, "{r}");
    assert_eq!(vectors_in_last_commit(&t), 0);

    // Small files left mostly deleted are rewritten rather than given a vector: of the ids
    // left (id % 5 in 2, 3, 4), a third stays.
    let r = silt_sql_ok(&format!("DELETE FROM {} WHERE id % 5 <> 4", delta_ref(&t)));
    assert_eq!(metric(&r, "numDeletedRows"), 160, "{r}");
    assert_eq!(metric(&r, "numCopiedRows"), 80, "{r}");
    assert!(metric(&r, "numRemovedFiles") > 0, "{r}");
    assert_eq!(vectors_in_last_commit(&t), 0, "{r}");
    assert_eq!(inspect(&t)["num_rows"], 80);

    // Deleting every remaining row of the table's files removes them.
    let r = silt_sql_ok(&format!("DELETE FROM {} WHERE id >= 0", delta_ref(&t)));
    let info = inspect(&t);
    assert_eq!(info["num_files"], 0, "{r}");
    assert_eq!(info["num_rows"], 0, "{r}");
}

/// Spark's tables with deletion vectors: DELETE and UPDATE add to their vectors; the result
/// read back by delta-rs and polars equals delta-rs's copy-on-write on a copy.
#[test]
fn golden_tables_with_deletion_vectors_take_new_vectors() {
    let _ = seed_for("golden_tables_with_deletion_vectors_take_new_vectors");
    let dir = tempdir("dv-golden");
    // (table, DELETE condition, UPDATE column, expression, condition)
    let cases: &[(&str, &str, &str, &str, &str)] = &[
        (
            "delta-kernel-rs-golden/dv-partitioned-with-checkpoint",
            "col1 % 4 = 1",
            "col2",
            "concat(col2, '!')",
            "col1 > 10",
        ),
        (
            "delta-kernel-rs/table-with-dv-small",
            "value = 2",
            "value",
            "value * 10",
            "value > 5",
        ),
        (
            // Vectors stored under a random prefix (`u` paths with a directory).
            "delta-kernel-rs/with-short-dv",
            "id % 2 = 0",
            "rand",
            "rand * 2",
            "id > 6",
        ),
    ];
    for (rel, delete, column, expr, update) in cases {
        let name = rel.rsplit('/').next().unwrap();
        let ours = golden_copy(rel, dir.path(), &format!("{name}-silt"));
        let theirs = golden_copy(rel, dir.path(), &format!("{name}-delta-rs"));
        let r = silt_sql_ok(&format!("DELETE FROM {} WHERE {delete}", delta_ref(&ours)));
        oracle_dml(&theirs, "delete", Some(delete), &[]);
        eprintln!("[dv-golden] {rel}: {}", r["metrics"]);
        if r["version"].is_i64() && metric(&r, "numRemovedFiles") == 0 {
            assert_eq!(metric(&r, "numCopiedRows"), 0, "{rel}: {r}");
        }
        if rel.ends_with("table-with-dv-small") {
            // One file of 10 rows, 2 deleted by Spark's vector: the new vector holds those
            // and the new row.
            assert_eq!(metric(&r, "numDeletionVectorsUpdated"), 1, "{r}");
            let dv = last_commit(&ours)
                .into_iter()
                .find_map(|a| a["add"]["deletionVector"].as_object().cloned())
                .expect("a vector");
            assert_eq!(dv["cardinality"], 3, "{dv:?}");
        }
        assert_same_content(
            &ours,
            &[Expected::Table(&theirs)],
            &["--readers", "deltalake,polars,duckdb"],
        );
        let r = silt_sql_ok(&format!(
            "UPDATE {} SET {column} = {expr} WHERE {update}",
            delta_ref(&ours)
        ));
        oracle_dml(&theirs, "update", Some(update), &[(column, expr)]);
        eprintln!("[dv-golden] {rel}: {}", r["metrics"]);
        // Tiny files left mostly deleted are rewritten, the others marked.
        assert!(
            metric(&r, "numDeletionVectorsAdded")
                + metric(&r, "numDeletionVectorsUpdated")
                + metric(&r, "numRemovedFiles")
                > 0,
            "{rel}: the update changes files: {r}"
        );
        assert_same_content(
            &ours,
            &[Expected::Table(&theirs)],
            &["--readers", "deltalake,polars,duckdb"],
        );
    }
}

/// A MERGE that marks rows runs without a discovery pass on the broadcast plan: a target row
/// matched by two source rows still fails it (both plans), nothing committed; with the only
/// WHEN MATCHED clause an unconditional DELETE, as Delta allows, it deletes the row once.
#[test]
fn merge_with_vectors_refuses_duplicate_matches() {
    let seed = seed_for("merge_with_vectors_refuses_duplicate_matches");
    let dir = tempdir("dv-dup");
    let src = Gen::new(seed, 300).files(2).write(&dir.path().join("src"));
    let t = dir.path().join("t");
    silt_write_ok(
        &t,
        &src,
        &["--property", "delta.enableDeletionVectors=true"],
    );
    // Source: ids 10..20 twice.
    let dup = dir.path().join("dup");
    for (i, name) in ["a", "b"].iter().enumerate() {
        Gen::new(seed + 1 + i as u64, 10)
            .id_start(10)
            .write(&dup.join(name));
    }
    let flat = dir.path().join("dup-flat");
    std::fs::create_dir_all(&flat).unwrap();
    for name in ["a", "b"] {
        for e in std::fs::read_dir(dup.join(name)).unwrap() {
            let p = e.unwrap().path();
            std::fs::copy(
                &p,
                flat.join(format!(
                    "{name}-{}",
                    p.file_name().unwrap().to_string_lossy()
                )),
            )
            .unwrap();
        }
    }
    let before = commit_files(&t).len();
    for exchange in ["never", "always"] {
        let out = silt_sql(
            &format!(
                "MERGE INTO {} t USING parquet.`{}` s ON t.id = s.id WHEN MATCHED THEN UPDATE SET *",
                delta_ref(&t),
                flat.display()
            ),
            &["--exchange", exchange],
        );
        out.assert_error(&["more than one source row"]);
        assert_eq!(
            commit_files(&t).len(),
            before,
            "nothing committed ({exchange})"
        );
    }
    for (exchange, first) in [("never", true), ("always", false)] {
        let r = silt_sql(
            &format!(
                "MERGE INTO {} t USING parquet.`{}` s ON t.id = s.id WHEN MATCHED THEN DELETE",
                delta_ref(&t),
                flat.display()
            ),
            &["--exchange", exchange],
        );
        r.assert_ok();
        let r = r.json();
        if first {
            // Ids 10..20 deleted once each.
            assert_eq!(metric(&r, "numTargetRowsDeleted"), 10, "{r}");
            assert!(vectors_in_last_commit(&t) > 0, "{r}");
        } else {
            assert!(r["version"].is_null(), "already gone: {r}");
        }
    }
    assert_eq!(inspect(&t)["num_rows"], 290);
}
