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
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    pub(crate) fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// One clause, as both silt's SQL and the oracle's JSON spec.
#[derive(Clone)]
pub(crate) struct Clause {
    kind: &'static str,
    action: &'static str,
    cond: Option<&'static str>,
    set: Vec<(&'static str, &'static str)>,
}

impl Clause {
    pub(crate) fn sql(&self) -> String {
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

    pub(crate) fn json(&self) -> Value {
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
            set: vec![
                ("id", "s.id"),
                ("k", "s.k"),
                ("s", "'new'"),
                ("f", "s.f * 2"),
            ],
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
pub(crate) fn random_clauses(r: &mut Rng) -> Vec<Clause> {
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

/// `WHEN MATCHED THEN UPDATE SET * WHEN NOT MATCHED THEN INSERT *`.
fn upsert_all() -> Vec<Clause> {
    vec![
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
    ]
}

/// A table made once per layout, copied for each case.
struct Base {
    table: PathBuf,
}

fn base_table(dir: &Path, seed: u64, partitioned: bool, by_silt: bool) -> Base {
    let rows = 500;
    let src = Gen::new(seed, rows)
        .files(3)
        .k_domain("1,2,3")
        .write(&dir.join("t-src"));
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

/// Runs one MERGE with silt on a copy and with delta-rs on another; compares. Cases alternate
/// between silt's two plans: the source broadcast (what `auto` picks for these small
/// sources) and the key exchange (`--exchange always`).
fn differential(dir: &Path, base: &Base, case: &str, source: &Path, on: &str, clauses: &[Clause]) {
    differential_with(dir, base, case, source, on, clauses, false)
}

/// [`differential`], with `WITH SCHEMA EVOLUTION` (delta-rs: `merge_schema=True`) when
/// `evolve`.
fn differential_with(
    dir: &Path,
    base: &Base,
    case: &str,
    source: &Path,
    on: &str,
    clauses: &[Clause],
    evolve: bool,
) {
    let exchange = if case.bytes().map(u32::from).sum::<u32>() % 2 == 0 {
        "auto"
    } else {
        "always"
    };
    let ours = dir.join(format!("{case}-silt"));
    let theirs = dir.join(format!("{case}-delta-rs"));
    copy_dir(&base.table, &ours);
    copy_dir(&base.table, &theirs);
    let before = commit_files(&ours).len();
    let statement = format!(
        "MERGE {}INTO {} t USING parquet.`{}` s ON {on} {}",
        if evolve { "WITH SCHEMA EVOLUTION " } else { "" },
        delta_ref(&ours),
        source.display(),
        clauses
            .iter()
            .map(Clause::sql)
            .collect::<Vec<_>>()
            .join(" ")
    );
    eprintln!("[{case}] --exchange {exchange}: {statement}");
    let spec = json!({
        "on": on,
        "target_alias": "t",
        "source_alias": "s",
        "clauses": clauses.iter().map(Clause::json).collect::<Vec<_>>(),
        "merge_schema": evolve,
    });
    let out = silt_sql(&statement, &["--exchange", exchange]);
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
        panic!(
            "[{case}] delta-rs refused the MERGE ({e}); silt: {}",
            out.describe()
        );
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
    let mut upsert = upsert_all();
    upsert.push(Clause {
        kind: "not_matched_by_source",
        action: "delete",
        cond: Some("t.k = 2"),
        set: vec![],
    });
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
        "empty-targets",
        &source,
        "t.id = s.id",
        &upsert,
    );
}

/// `WITH SCHEMA EVOLUTION`: a source with a column the table lacks adds it through
/// `UPDATE SET *` / `INSERT *` (rows without it get null), as delta-rs's `merge_schema` does;
/// without evolution the `*` forms leave the new column out.
#[test]
fn merge_with_schema_evolution_matches_delta_rs() {
    let seed = seed_for("merge_with_schema_evolution_matches_delta_rs");
    let dir = tempdir("merge-evolve");
    let base = base_table(dir.path(), seed, false, true);
    let source = Gen::new(seed + 3, 200)
        .variant("extra_col")
        .k_domain("1,2,3")
        .id_start(400)
        .write(&dir.path().join("source"));
    // Unconditional: delta-rs 1.6.6 gives a matched row that no clause updates the source's
    // value of the new column (Delta Spark and silt copy the row, the new column null).
    let upsert = upsert_all();
    for (case, evolve) in [("evolve", true), ("evolves", true), ("keep", false)] {
        differential_with(
            dir.path(),
            &base,
            case,
            &source,
            "t.id = s.id",
            &upsert,
            evolve,
        );
        let t = dir.path().join(format!("{case}-silt"));
        let cols = inspect(&t)["schema"].to_string();
        assert_eq!(cols.contains("new_col"), evolve, "{case}: {cols}");
    }
}

/// The same MERGE from a Parquet, CSV, JSON and Delta source (the Delta one at an older
/// version through `VERSION AS OF`) gives the same table.
#[test]
fn merge_reads_every_source_format() {
    let seed = seed_for("merge_reads_every_source_format");
    let dir = tempdir("merge-formats");
    let base = base_table(dir.path(), seed, true, true);
    let source = || Gen::new(seed + 5, 150).k_domain("1,2,3").id_start(420);
    let parquet = source().write(&dir.path().join("src-parquet"));
    let csv = source().format("csv").write(&dir.path().join("src-csv"));
    let json = source().format("json").write(&dir.path().join("src-json"));
    // A Delta source whose version 0 holds the rows; version 1 deletes them all.
    let delta = dir.path().join("src-delta");
    silt_write_ok(&delta, &parquet, &[]);
    silt_sql_ok(&format!("DELETE FROM {}", delta_ref(&delta)));
    // CSV and JSON carry fewer types: the clauses touch only columns all formats share.
    let clauses = "WHEN MATCHED THEN UPDATE SET f = s.f, s = s.s \
                   WHEN NOT MATCHED THEN INSERT (id, k, s, f, flag) VALUES (s.id, s.k, s.s, s.f, s.flag)";
    let mut tables = Vec::new();
    for (name, source) in [
        ("parquet", format!("parquet.`{}`", parquet.display())),
        ("csv", format!("csv.`{}`", csv.display())),
        ("json", format!("json.`{}`", json.display())),
        ("delta", format!("{} VERSION AS OF 0", delta_ref(&delta))),
    ] {
        let t = dir.path().join(format!("t-{name}"));
        copy_dir(&base.table, &t);
        let r = silt_sql_ok(&format!(
            "MERGE INTO {} t USING {source} s ON t.id = s.id {clauses}",
            delta_ref(&t)
        ));
        assert_eq!(metric(&r, "numSourceRows"), 150, "{name}: {r}");
        assert_eq!(metric(&r, "numTargetRowsUpdated"), 80, "{name}: {r}");
        assert_eq!(metric(&r, "numTargetRowsInserted"), 70, "{name}: {r}");
        tables.push(t);
    }
    for t in &tables[1..] {
        assert_same_content(t, &[Expected::Table(&tables[0])], &["--loose-types"]);
    }
}

/// An upsert (UPDATE SET * / INSERT *) of about half the rows, with changed values (moving
/// rows to other partitions where the changed column partitions the table) and new keys,
/// into tables Spark wrote: checkpoints, partitions, deletion vectors. The expected content
/// is computed by polars from the table as it was; column mapping is refused clearly.
#[test]
fn merge_into_spark_tables() {
    let seed = seed_for("merge_into_spark_tables");
    let dir = tempdir("merge-golden");
    // (table, key, readers)
    let tables: &[(&str, &str, &[&str])] = &[
        (
            "delta-kernel-rs-golden/basic-with-inserts-deletes-checkpoint",
            "id",
            &[],
        ),
        ("dat/basic_partitioned", "number", &[]),
        (
            "delta-kernel-rs-golden/dv-partitioned-with-checkpoint",
            "col1",
            &["--readers", "polars"],
        ),
        // Column mapping (polars refuses it; the expected file, which polars writes, has
        // large lists inside maps: values are compared).
        (
            "delta-kernel-rs-golden/table-with-columnmapping-mode-name",
            "LongType",
            &["--readers", "deltalake,duckdb", "--no-type-check"],
        ),
    ];
    for (i, (rel, key, readers)) in tables.iter().enumerate() {
        let t = golden_copy(rel, dir.path(), &format!("g{i}"));
        let work = dir.path().join(format!("g{i}-source"));
        oracle_ok(&[
            "upsert-source",
            "--table",
            &s(&t),
            "--key",
            key,
            "--out",
            &s(&work),
            "--seed",
            &seed.to_string(),
        ]);
        let before = commit_files(&t).len();
        let r = silt_sql_ok(&format!(
            "MERGE INTO {} AS t USING parquet.`{}` AS s ON t.{key} = s.{key} \
             WHEN MATCHED THEN UPDATE SET * WHEN NOT MATCHED THEN INSERT *",
            delta_ref(&t),
            work.join("source.parquet").display()
        ));
        assert_eq!(commit_files(&t).len(), before + 1, "{rel}: one commit");
        assert!(metric(&r, "numTargetRowsUpdated") > 0, "{rel}: {r}");
        assert_eq!(metric(&r, "numTargetRowsInserted"), 3, "{rel}: {r}");
        assert_same_content(
            &t,
            &[Expected::Parquet(&work.join("expected.parquet"))],
            readers,
        );
    }
}

/// A target row matched by two source rows fails the MERGE (unless the only matched clause
/// is an unconditional DELETE); every bad input is one line naming the problem; the table
/// is unchanged each time.
#[test]
fn merge_refuses_duplicate_matches_and_bad_input() {
    let seed = seed_for("merge_refuses_duplicate_matches_and_bad_input");
    let dir = tempdir("merge-bad");
    let base = base_table(dir.path(), seed, true, true);
    let t = &base.table;
    let source = Gen::new(seed + 1, 100)
        .k_domain("1,2,3")
        .id_start(450)
        .write(&dir.path().join("source"));
    // The same ids twice: rows 450..549 from two files.
    let dup = dir.path().join("dup");
    copy_dir(&source, &dup);
    std::fs::copy(
        source.join("part-00000.parquet"),
        dup.join("part-99999.parquet"),
    )
    .unwrap();
    let before = listing_with_dirs(t);
    let merge = |src: &Path, tail: &str| {
        silt_sql(
            &format!(
                "MERGE INTO {} t USING parquet.`{}` s {tail}",
                delta_ref(t),
                src.display()
            ),
            &[],
        )
    };
    let cases: &[(&Path, &str, &[&str])] = &[
        (
            &dup,
            "ON t.id = s.id WHEN MATCHED THEN UPDATE SET f = s.f",
            &["more than one source row"],
        ),
        (
            &dup,
            "ON t.id = s.id WHEN MATCHED AND s.f > 0 THEN DELETE",
            &["more than one source row"],
        ),
        (
            &source,
            "ON t.id = s.nope WHEN MATCHED THEN DELETE",
            &["unknown column", "s.nope"],
        ),
        (
            &source,
            "ON t.id = s.id WHEN MATCHED THEN UPDATE SET nope = 1",
            &["unknown column", "nope"],
        ),
        (
            &source,
            "ON id = s.id WHEN MATCHED THEN DELETE",
            &["ambiguous", "id"],
        ),
        (
            &source,
            "ON t.id = s.id WHEN MATCHED THEN UPDATE SET flag = s.d",
            &["invalid MERGE"],
        ),
        (
            &source,
            "ON t.id = s.id WHEN NOT MATCHED THEN INSERT (id) VALUES (t.id)",
            &["t.id", "cannot read"],
        ),
        (
            &dir.path().join("no-such-source"),
            "ON t.id = s.id WHEN MATCHED THEN DELETE",
            &["no-such-source"],
        ),
        (
            &source,
            "ON t.id = s.id WHEN MATCHED THEN UPDATE f = 1",
            &["syntax"],
        ),
        (
            &source,
            "ON t.id = s.id WHEN MATCHED THEN DELETE WHEN MATCHED AND s.f > 0 THEN DELETE",
            &["only the last"],
        ),
    ];
    for (src, tail, terms) in cases {
        let out = merge(src, tail);
        let line = out.assert_error(terms);
        eprintln!("{tail}\n  -> {line}");
        assert_same_listing(&before, &listing_with_dirs(t), tail);
    }
    // Duplicates are fine when the only matched clause is an unconditional DELETE.
    let out = merge(&dup, "ON t.id = s.id WHEN MATCHED THEN DELETE");
    out.assert_ok();
    assert_eq!(metric(&out.json(), "numTargetRowsDeleted"), 50);
}

/// delta-rs's side of a race, and reading a table back as `id -> v`.
const RACE_PY: &str = r#"
import sys, json
import pyarrow as pa
from deltalake import DeltaTable, write_deltalake
op, table, ids = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
def rows(v):
    return pa.table({"id": pa.array(ids, pa.int64()), "v": pa.array([v] * len(ids), pa.int64())})
try:
    if op == "init":
        for i in range(0, len(ids), 50):
            write_deltalake(table, pa.table({"id": pa.array(ids[i:i + 50], pa.int64()),
                                             "v": pa.array([0] * len(ids[i:i + 50]), pa.int64())}),
                            mode="append")
    elif op == "source":
        import pyarrow.parquet as pq
        pq.write_table(rows(100), table)
    elif op == "append":
        write_deltalake(table, rows(1000), mode="append")
    elif op == "delete":
        DeltaTable(table).delete("id IN (" + ", ".join(map(str, ids)) + ")")
    elif op == "merge":
        (DeltaTable(table).merge(rows(0), "t.id = s.id", source_alias="s", target_alias="t")
            .when_matched_update({"v": "t.v + 10"}).execute())
    if op == "state":
        t = DeltaTable(table).to_pyarrow_table().to_pydict()
        print(json.dumps(sorted(zip(t["id"], t["v"]))))
    else:
        print(json.dumps({"ok": True}))
except Exception as e:
    print(json.dumps({"ok": False, "error": str(e).splitlines()[0] if str(e) else repr(e)}))
# deltalake's runtime threads can abort the interpreter's teardown: leave without it.
sys.stdout.flush()
import os
os._exit(0)
"#;

fn race_py_out(op: &str, table: &Path, ids: &[i64]) -> Out {
    let mut cmd = std::process::Command::new(python());
    cmd.args([
        "-c",
        RACE_PY,
        op,
        &s(table),
        &serde_json::to_string(ids).unwrap(),
    ]);
    run(cmd, ORACLE_TIMEOUT)
}

fn race_py(op: &str, table: &Path, ids: &[i64]) -> Value {
    let out = race_py_out(op, table, ids);
    assert!(out.ok(), "race helper {op}\n{}", out.describe());
    serde_json::from_str(out.stdout.trim()).expect("race helper JSON")
}

type State = std::collections::BTreeMap<i64, i64>;

fn state_of(table: &Path) -> State {
    let rows: Vec<(i64, i64)> = serde_json::from_value(race_py("state", table, &[])).unwrap();
    let mut st = State::new();
    for (id, v) in rows {
        assert!(st.insert(id, v).is_none(), "id {id} appears twice");
    }
    st
}

/// The actions of the last two commits, in short (for failure messages).
fn log_tail(t: &Path) -> String {
    let mut files = commit_files(t);
    files.sort();
    files
        .iter()
        .rev()
        .take(2)
        .map(|f| {
            let text = std::fs::read_to_string(t.join("_delta_log").join(f)).unwrap_or_default();
            let short: Vec<String> = text
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .map(|a| {
                    if let Some(x) = a.get("add") {
                        format!("add {}", x["path"])
                    } else if let Some(x) = a.get("remove") {
                        format!("remove {}", x["path"])
                    } else if let Some(x) = a.get("commitInfo") {
                        format!("commitInfo {} read {}", x["operation"], x["readVersion"])
                    } else {
                        a.as_object()
                            .and_then(|o| o.keys().next().cloned())
                            .unwrap_or_default()
                    }
                })
                .collect();
            format!("{f}: {}", short.join(", "))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Where two states differ (for failure messages).
fn state_diff(got: &State, want: &State) -> String {
    let mut out = Vec::new();
    for (id, v) in got {
        if want.get(id) != Some(v) {
            out.push(format!("{id}: got {v}, want {:?}", want.get(id)));
        }
    }
    for (id, v) in want {
        if !got.contains_key(id) {
            out.push(format!("{id}: missing, want {v}"));
        }
    }
    out.truncate(20);
    out.join("; ")
}

/// What one writer's operation does to the table.
#[derive(Clone, Debug)]
enum RaceOp {
    /// silt: WHEN MATCHED THEN UPDATE SET v = t.v + 1 WHEN NOT MATCHED THEN INSERT * (v 100).
    SiltMerge(Vec<i64>),
    Append(Vec<i64>),
    Delete(Vec<i64>),
    /// delta-rs: WHEN MATCHED THEN UPDATE v = t.v + 10.
    Merge(Vec<i64>),
}

fn apply(st: &State, ops: &[&RaceOp]) -> State {
    let mut st = st.clone();
    for op in ops {
        match op {
            RaceOp::SiltMerge(ids) => {
                for id in ids {
                    *st.entry(*id).or_insert(99) += 1;
                }
            }
            RaceOp::Append(ids) => {
                for id in ids {
                    st.insert(*id, 1000);
                }
            }
            RaceOp::Delete(ids) => {
                for id in ids {
                    st.remove(id);
                }
            }
            RaceOp::Merge(ids) => {
                for id in ids {
                    if let Some(v) = st.get_mut(id) {
                        *v += 10;
                    }
                }
            }
        }
    }
    st
}

/// Rounds of a silt MERGE paused mid-job while delta-rs appends, deletes or merges on the
/// same table (so delta-rs always commits first): every round ends in a state some serial
/// order allows (delta-rs then silt; silt then a blind append), or silt fails with Delta's
/// conflict exception and the table is delta-rs's result. No update is lost.
#[test]
fn merge_racing_delta_rs_writers_loses_no_update() {
    const ROUNDS: i64 = 10;
    let seed = seed_for("merge_racing_delta_rs_writers_loses_no_update");
    let mut r = Rng(seed | 1);
    let dir = tempdir("merge-race");
    let t = dir.path().join("t");
    race_py("init", &t, &(0..400).collect::<Vec<_>>());
    let mut conflicts = 0;
    for round in 0..ROUNDS {
        let before = state_of(&t);
        let existing: Vec<i64> = before.keys().copied().collect();
        let sample = |r: &mut Rng, n: usize| -> Vec<i64> {
            let mut v: Vec<i64> = (0..n).map(|_| *r.pick(&existing)).collect();
            v.sort_unstable();
            v.dedup();
            v
        };
        let mut silt_ids = sample(&mut r, 8);
        silt_ids.extend((0..10).map(|i| 100_000 + round * 100 + i));
        let other = match r.below(3) {
            0 => RaceOp::Append((0..20).map(|i| 200_000 + round * 100 + i).collect()),
            1 => RaceOp::Delete(sample(&mut r, 3)),
            _ => RaceOp::Merge(sample(&mut r, 5)),
        };
        let source = dir.path().join(format!("source-{round}.parquet"));
        race_py("source", &source, &silt_ids);
        let statement = format!(
            "MERGE INTO {} t USING parquet.`{}` s ON t.id = s.id \
             WHEN MATCHED THEN UPDATE SET v = t.v + 1 WHEN NOT MATCHED THEN INSERT *",
            delta_ref(&t),
            source.display()
        );
        let mut cmd = std::process::Command::new(silt_bin());
        cmd.args(["sql", &statement, "--json", "-q"]);
        // A gate per round (its marker files must not outlive the round).
        let gate_dir = dir.path().join(format!("gate-{round}"));
        std::fs::create_dir_all(&gate_dir).unwrap();
        let (silt_out, py_out) = crate::concurrency::a_loses_the_race(&gate_dir, cmd, || {
            let (op, ids) = match &other {
                RaceOp::Append(ids) => ("append", ids),
                RaceOp::Delete(ids) => ("delete", ids),
                RaceOp::Merge(ids) => ("merge", ids),
                RaceOp::SiltMerge(_) => unreachable!(),
            };
            race_py_out(op, &t, ids)
        });
        assert!(py_out.ok(), "{}", py_out.describe());
        let v: Value = serde_json::from_str(py_out.stdout.trim()).expect("race helper JSON");
        assert_eq!(v["ok"], true, "round {round}: delta-rs failed: {v}");
        let after = state_of(&t);
        let silt_op = RaceOp::SiltMerge(silt_ids.clone());
        if silt_out.ok() {
            let mut allowed = vec![apply(&before, &[&other, &silt_op])];
            if matches!(other, RaceOp::Append(_)) {
                allowed.push(apply(&before, &[&silt_op, &other]));
            }
            assert!(
                allowed.contains(&after),
                "round {round} ({other:?}): silt's MERGE ({silt_ids:?}) committed but the table matches no serial order: {}\n{}",
                state_diff(&after, &allowed[0]),
                log_tail(&t)
            );
        } else {
            conflicts += 1;
            silt_out.assert_error(&["concurrent"]);
            assert_eq!(
                after,
                apply(&before, &[&other]),
                "round {round}: silt failed, the table must be delta-rs's result"
            );
        }
        eprintln!(
            "[merge-race] round {round}: {} vs silt: {}",
            match other {
                RaceOp::Append(_) => "append",
                RaceOp::Delete(_) => "delete",
                RaceOp::Merge(_) => "merge",
                RaceOp::SiltMerge(_) => "?",
            },
            if silt_out.ok() {
                "committed"
            } else {
                "conflict"
            }
        );
    }
    eprintln!("[merge-race] {conflicts} of {ROUNDS} rounds ended in a conflict");
}

/// `USING (SELECT … WHERE …)`: the same MERGE as delta-rs's on the selected rows (computed
/// by pyarrow), with both of silt's plans.
#[test]
fn merge_from_a_select_matches_delta_rs_on_the_selected_rows() {
    let seed = seed_for("merge_from_a_select_matches_delta_rs_on_the_selected_rows");
    let dir = tempdir("merge-select");
    let base = base_table(dir.path(), seed, true, true);
    let source = Gen::new(seed + 9, 300)
        .k_domain("1,2,3")
        .id_start(350)
        .write(&dir.path().join("source"));
    let selected = dir.path().join("selected.parquet");
    let script = r#"
import sys, pyarrow.dataset as ds, pyarrow.compute as pc, pyarrow.parquet as pq
t = ds.dataset(sys.argv[1], format="parquet").to_table()
t = t.filter(pc.greater(t["f"], 0))
t = t.set_column(t.schema.get_field_index("f"), "f", pc.multiply(t["f"], 2))
pq.write_table(t.select(["id", "k", "s", "f", "flag"]), sys.argv[2])
"#;
    let mut cmd = std::process::Command::new(python());
    cmd.args(["-c", script, &s(&source), &s(&selected)]);
    run(cmd, ORACLE_TIMEOUT).assert_ok();
    let clauses = [
        Clause {
            kind: "matched",
            action: "update",
            cond: None,
            set: vec![("f", "s.f"), ("s", "s.s")],
        },
        Clause {
            kind: "not_matched",
            action: "insert",
            cond: None,
            set: vec![
                ("id", "s.id"),
                ("k", "s.k"),
                ("s", "s.s"),
                ("f", "s.f"),
                ("flag", "s.flag"),
            ],
        },
    ];
    let theirs = dir.path().join("delta-rs");
    copy_dir(&base.table, &theirs);
    let spec = json!({
        "on": "t.id = s.id",
        "target_alias": "t",
        "source_alias": "s",
        "clauses": clauses.iter().map(Clause::json).collect::<Vec<_>>(),
    });
    let out = oracle(&[
        "merge".to_string(),
        "--table".into(),
        s(&theirs),
        "--source".into(),
        s(&selected),
        "--spec".into(),
        spec.to_string(),
    ]);
    assert!(out.ok(), "oracle merge\n{}", out.describe());
    for exchange in ["auto", "always"] {
        let ours = dir.path().join(format!("silt-{exchange}"));
        copy_dir(&base.table, &ours);
        let r = silt_sql(
            &format!(
                "MERGE INTO {} t USING (SELECT id, k, s, f * 2 AS f, flag FROM parquet.`{}` \
                 WHERE f > 0) AS s ON t.id = s.id {}",
                delta_ref(&ours),
                source.display(),
                clauses
                    .iter()
                    .map(Clause::sql)
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
            &["--exchange", exchange],
        );
        r.assert_ok();
        eprintln!("[select {exchange}] {}", r.json()["metrics"]);
        assert_same_content(&ours, &[Expected::Table(&theirs)], &[]);
    }
}
