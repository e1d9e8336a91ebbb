//! MERGE INTO through `silt sql`, differential against delta-rs's merge builder on an
//! identical copy of the table and the same source: random clause lists (every kind, with and
//! without conditions, `*` forms and explicit lists) from a logged seed, simple and composite
//! keys (null keys never match), partitioned and unpartitioned targets written by silt and
//! by delta-rs, empty source and empty target. Same content (read by delta-rs and polars),
//! the same row counts in the metrics, at most one commit.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::support::*;

/// A small deterministic generator (xorshift) for clause lists.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// One clause, as both silt's SQL and the oracle's JSON spec.
#[derive(Clone)]
struct Clause {
    kind: &'static str,
    action: &'static str,
    cond: Option<&'static str>,
    set: Vec<(&'static str, &'static str)>,
}

impl Clause {
    fn sql(&self) -> String {
        let head = match self.kind {
            "matched" => "WHEN MATCHED",
            "not_matched" => "WHEN NOT MATCHED",
            _ => "WHEN NOT MATCHED BY SOURCE",
        };
        let cond = self.cond.map_or(String::new(), |c| format!(" AND {c}"));
        let action = match self.action {
            "update" => format!(
                "UPDATE SET {}",
                self.set
                    .iter()
                    .map(|(c, e)| format!("{c} = {e}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            "update_all" => "UPDATE SET *".into(),
            "delete" => "DELETE".into(),
            "insert" => format!(
                "INSERT ({}) VALUES ({})",
                self.set
                    .iter()
                    .map(|(c, _)| *c)
                    .collect::<Vec<_>>()
                    .join(", "),
                self.set
                    .iter()
                    .map(|(_, e)| *e)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            _ => "INSERT *".into(),
        };
        format!("{head}{cond} THEN {action}")
    }

    fn json(&self) -> Value {
        json!({
            "kind": self.kind,
            "action": self.action,
            "cond": self.cond,
            "set": self.set.iter().map(|(c, e)| (c.to_string(), json!(e))).collect::<serde_json::Map<_, _>>(),
        })
    }
}

const MATCHED_CONDS: &[&str] = &["s.flag", "t.f > s.f", "s.k IS NULL", "t.s = 'b'"];
const INSERT_CONDS: &[&str] = &["s.flag", "s.f > 0", "s.s IS NOT NULL"];
const BY_SOURCE_CONDS: &[&str] = &["t.k = 1", "t.f < -500", "t.flag"];

fn matched_clause(r: &mut Rng, cond: Option<&'static str>) -> Clause {
    match r.below(3) {
        0 => Clause {
            kind: "matched",
            action: "update",
            cond,
            set: vec![("f", "s.f"), ("s", "upper(s.s)")],
        },
        1 => Clause {
            kind: "matched",
            action: "update_all",
            cond,
            set: vec![],
        },
        _ => Clause {
            kind: "matched",
            action: "delete",
            cond,
            set: vec![],
        },
    }
}

fn insert_clause(r: &mut Rng, cond: Option<&'static str>) -> Clause {
    if r.below(2) == 0 {
        Clause {
            kind: "not_matched",
            action: "insert_all",
            cond,
            set: vec![],
        }
    } else {
        Clause {
            kind: "not_matched",
            action: "insert",
            cond,
            set: vec![("id", "s.id"), ("k", "s.k"), ("s", "'new'"), ("f", "s.f * 2")],
        }
    }
}

fn by_source_clause(r: &mut Rng, cond: Option<&'static str>) -> Clause {
    if r.below(2) == 0 {
        Clause {
            kind: "not_matched_by_source",
            action: "update",
            cond,
            set: vec![("f", "0"), ("flag", "NOT t.flag")],
        }
    } else {
        Clause {
            kind: "not_matched_by_source",
            action: "delete",
            cond,
            set: vec![],
        }
    }
}

/// A random legal clause list: up to two clauses of each kind, only the last of a kind
/// possibly without a condition, at least one clause.
fn random_clauses(r: &mut Rng) -> Vec<Clause> {
    loop {
        let mut out = Vec::new();
        type Make = fn(&mut Rng, Option<&'static str>) -> Clause;
        let kinds: [(&[&'static str], Make); 3] = [
            (MATCHED_CONDS, matched_clause),
            (INSERT_CONDS, insert_clause),
            (BY_SOURCE_CONDS, by_source_clause),
        ];
        for (conds, make) in kinds {
            let n = r.below(3);
            for i in 0..n {
                let last = i + 1 == n;
                let cond = if last && r.below(2) == 0 {
                    None
                } else {
                    Some(*r.pick(conds))
                };
                out.push(make(r, cond));
            }
        }
        if !out.is_empty() {
            return out;
        }
    }
}

/// A table made once per layout, copied for each case.
struct Base {
    table: PathBuf,
}

fn base_table(dir: &Path, seed: u64, partitioned: bool, by_silt: bool) -> Base {
    let rows = 500;
    let src = Gen::new(seed, rows).files(3).k_domain("1,2,3").write(&dir.join("t-src"));
    let table = dir.join("base");
    let part: &[&str] = if partitioned {
        &["--partition-by", "k"]
    } else {
        &[]
    };
    if by_silt {
        silt_write_ok(&table, &src, part);
    } else {
        oracle_write(&table, &src, "parquet", part);
    }
    Base { table }
}

/// Runs one MERGE with silt on a copy and with delta-rs on another; compares.
fn differential(dir: &Path, base: &Base, case: &str, source: &Path, on: &str, clauses: &[Clause]) {
    let ours = dir.join(format!("{case}-silt"));
    let theirs = dir.join(format!("{case}-delta-rs"));
    copy_dir(&base.table, &ours);
    copy_dir(&base.table, &theirs);
    let before = commit_files(&ours).len();
    let statement = format!(
        "MERGE INTO {} t USING parquet.`{}` s ON {on} {}",
        delta_ref(&ours),
        source.display(),
        clauses.iter().map(Clause::sql).collect::<Vec<_>>().join(" ")
    );
    eprintln!("[{case}] {statement}");
    let spec = json!({
        "on": on,
        "target_alias": "t",
        "source_alias": "s",
        "clauses": clauses.iter().map(Clause::json).collect::<Vec<_>>(),
    });
    let out = silt_sql(&statement, &[]);
    let oracle_out = oracle(&[
        "merge".to_string(),
        "--table".into(),
        s(&theirs),
        "--source".into(),
        s(source),
        "--spec".into(),
        spec.to_string(),
    ]);
    assert!(oracle_out.ok(), "oracle merge\n{}", oracle_out.describe());
    let want: Value = serde_json::from_str(oracle_out.stdout.trim()).expect("oracle JSON");
    if let Some(e) = want["error"].as_str() {
        panic!("[{case}] delta-rs refused the MERGE ({e}); silt: {}", out.describe());
    }
    out.assert_ok();
    let got = out.json();
    eprintln!(
        "[{case}] silt: {}\n[{case}] delta-rs: {want}",
        got["metrics"]
    );
    let after = commit_files(&ours).len();
    assert!(after <= before + 1, "[{case}] at most one commit");
    if got["version"].is_i64() {
        let m = &want["metrics"];
        for (ours_name, theirs_name) in [
            ("numSourceRows", "num_source_rows"),
            ("numTargetRowsInserted", "num_target_rows_inserted"),
            ("numTargetRowsUpdated", "num_target_rows_updated"),
            ("numTargetRowsDeleted", "num_target_rows_deleted"),
        ] {
            assert_eq!(
                metric(&got, ours_name),
                m[theirs_name].as_i64().unwrap_or(-1),
                "[{case}] {ours_name}: silt {} vs delta-rs {m}",
                got["metrics"]
            );
        }
        assert_eq!(
            metric(&got, "numTargetRowsUpdated"),
            metric(&got, "numTargetRowsMatchedUpdated")
                + metric(&got, "numTargetRowsNotMatchedBySourceUpdated"),
            "[{case}] updated rows add up"
        );
        assert_eq!(
            metric(&got, "numTargetRowsDeleted"),
            metric(&got, "numTargetRowsMatchedDeleted")
                + metric(&got, "numTargetRowsNotMatchedBySourceDeleted"),
            "[{case}] deleted rows add up"
        );
    }
    assert_same_content(&ours, &[Expected::Table(&theirs)], &[]);
}

#[test]
fn merge_matches_delta_rs_on_random_clauses() {
    let seed = seed_for("merge_matches_delta_rs_on_random_clauses");
    let mut r = Rng(seed | 1);
    let keys = ["t.id = s.id", "t.id = s.id AND t.k = s.k"];
    for (layout_i, (partitioned, by_silt)) in [(true, true), (false, false), (true, false)]
        .into_iter()
        .enumerate()
    {
        let layout = format!(
            "{}-{}",
            if partitioned { "part" } else { "flat" },
            if by_silt { "silt" } else { "delta-rs" }
        );
        let dir = tempdir(&format!("merge-{layout}"));
        let base = base_table(dir.path(), seed, partitioned, by_silt);
        // Half the source's ids are in the target, half are new.
        let source = Gen::new(seed + 7 + layout_i as u64, 300)
            .files(2)
            .k_domain("1,2,3")
            .id_start(350)
            .write(&dir.path().join("source"));
        for case in 0..4 {
            let clauses = random_clauses(&mut r);
            let on = *r.pick(&keys);
            differential(
                dir.path(),
                &base,
                &format!("{layout}-{case}"),
                &source,
                on,
                &clauses,
            );
        }
    }
}

#[test]
fn merge_with_an_empty_side_matches_delta_rs() {
    let seed = seed_for("merge_with_an_empty_side_matches_delta_rs");
    let dir = tempdir("merge-empty");
    let base = base_table(dir.path(), seed, true, true);
    let empty_source = Gen::new(seed, 0).write(&dir.path().join("empty-source"));
    let source = Gen::new(seed + 1, 200)
        .k_domain("1,2,3")
        .id_start(400)
        .write(&dir.path().join("source"));
    let upsert = [
        Clause {
            kind: "matched",
            action: "update_all",
            cond: None,
            set: vec![],
        },
        Clause {
            kind: "not_matched",
            action: "insert_all",
            cond: None,
            set: vec![],
        },
        Clause {
            kind: "not_matched_by_source",
            action: "delete",
            cond: Some("t.k = 2"),
            set: vec![],
        },
    ];
    differential(
        dir.path(),
        &base,
        "empty-source",
        &empty_source,
        "t.id = s.id",
        &upsert,
    );
    // An empty target: every row deleted first.
    let empty = Base {
        table: dir.path().join("empty-target"),
    };
    copy_dir(&base.table, &empty.table);
    silt_sql_ok(&format!("DELETE FROM {}", delta_ref(&empty.table)));
    differential(
        dir.path(),
        &empty,
        "empty-target",
        &source,
        "t.id = s.id",
        &upsert,
    );
}
