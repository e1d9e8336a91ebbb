#!/usr/bin/env python3
"""The golden-table matrix: every table of a golden collection (`tests/golden`, laid out as
`../shared/testdata/delta-golden`, with its `manifest.json`) through every silt operation.

For each table, on a fresh copy each time:

  source     `silt write --format delta` of the table into a new table
  append     `silt write --mode append` of the table's content
  overwrite  `silt write --mode overwrite` of half of its rows
  replace    `silt write --mode overwrite --replace-where "c = v"` of half of the rows with c = v
  delete     `DELETE FROM t WHERE c = v`
  update     `UPDATE t SET u = w WHERE c = v`
  merge      `MERGE INTO t USING s ON t.c = s.c WHEN MATCHED THEN DELETE
              WHEN NOT MATCHED THEN INSERT *`; s: one row with c = v and that row with c null
  optimize   `OPTIMIZE t`

`c` is the first partition column, else the first top-level column of a type a literal can
name (integers, strings, dates, booleans, decimals); `v` its most frequent value; `u` another such column
and `w` one of its values from a row where c is not v. The expected result of each operation
is computed here with pyarrow from the table's content: the table's `expected/` content where
the collection has it (Spark's or DAT's), else what DuckDB (then delta-rs, polars) reads; readers that
read the original otherwise are left out of that table's checks (the matrix notes them).

Each result is read back by delta-rs (`to_pyarrow_table`, or its DataFusion scan where that
refuses the table's features), polars and DuckDB's Delta extension -- each reader that reads
the original table correctly -- and compared with the expected content. A refusal must be
clear (non-zero exit, exactly one `error:` line on stderr and nothing else) and leave the
table byte-for-byte unchanged.

Cells: `ok`; `no` (refused clearly; the reason is the error line); `n/a` (the operation does
not apply: a log-only table has no data files, or no column a literal can name); `FAIL`.
`--refusals FILE` lists the refusals expected (`<table> <op> <reason>` per line, `#`
comments): a refusal not listed, or a listed one that no longer happens, is a FAIL too, so the
list (and README, which carries it) stays true. Exit 0 when no cell FAILs.
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import fnmatch
import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import oracle  # noqa: E402

OPS = ["source", "append", "overwrite", "replace", "delete", "update", "merge", "optimize"]
READERS = {
    "deltalake": oracle.read_table_deltalake,
    "polars": oracle.read_table_polars,
    "duckdb": oracle.read_table_duckdb,
}
SILT_TIMEOUT = 300


class Cell:
    def __init__(self, status: str, detail: str = ""):
        self.status = status
        self.detail = detail

    def __repr__(self) -> str:
        return f"{self.status}: {self.detail}" if self.detail else self.status


# --------------------------------------------------------------------------------------------
# content
# --------------------------------------------------------------------------------------------


def expected_content(entry_dir: str) -> pa.Table | None:
    exp = os.path.join(entry_dir, "expected")
    latest = os.path.join(exp, "latest", "table_content.parquet")
    if os.path.isfile(latest):
        return pq.read_table(latest).replace_schema_metadata(None)
    if os.path.isdir(exp) and any(f.endswith(".parquet") for f in os.listdir(exp)):
        return oracle.read_expected_parquet(exp)
    return None


def same_rows(a: pa.Table, b: pa.Table) -> bool:
    try:
        return not oracle.compare_tables("", a, b, list(b.column_names), loose=True, check_types=False)
    except (ValueError, pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return False


def delta_nullable(root: str) -> dict[str, bool]:
    """Top-level nullability as the table's Delta schema declares it (delta-rs reads it)."""
    try:
        from deltalake import DeltaTable

        return {f.name: f.nullable for f in DeltaTable(root).schema().fields}
    except Exception:  # noqa: BLE001 - unknown: assume nullable
        return {}


def generated_identity(root: str) -> list[str]:
    """The table's GENERATED ALWAYS identity columns (values cannot be given: writes leave
    them out and the result's are checked for being distinct and not null)."""
    try:
        from deltalake import DeltaTable

        fields = json.loads(DeltaTable(root).schema().to_json())["fields"]
    except Exception:  # noqa: BLE001 - unknown: none
        return []
    return [
        f["name"]
        for f in fields
        if "delta.identity.start" in f["metadata"]
        and str(f["metadata"].get("delta.identity.allowExplicitInsert")).lower() != "true"
    ]


def readers_of(root: str, base: pa.Table | None) -> tuple[dict[str, pa.Table], list[str]]:
    """What each reader reads of a table, and the readers whose reading agrees with `base`."""
    reads: dict[str, pa.Table] = {}
    for name, read in READERS.items():
        try:
            reads[name] = read(root)
        except Exception:  # noqa: BLE001 - a reader that cannot read the table is left out
            continue
    if base is None:
        return reads, list(reads)
    return reads, [n for n, t in reads.items() if same_rows(t, base)]


# --------------------------------------------------------------------------------------------
# columns and literals
# --------------------------------------------------------------------------------------------


def nameable(t: pa.DataType) -> bool:
    return (
        pa.types.is_integer(t)
        or pa.types.is_string(t)
        or pa.types.is_large_string(t)
        or pa.types.is_date32(t)
        or pa.types.is_boolean(t)
        or pa.types.is_decimal(t)
    )


def literal(v, t: pa.DataType) -> str:
    if pa.types.is_decimal(t):
        return f"CAST('{v}' AS DECIMAL({t.precision}, {t.scale}))"
    if isinstance(v, bool):
        return "TRUE" if v else "FALSE"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, dt.date):
        return f"DATE '{v.isoformat()}'"
    return "'" + str(v).replace("'", "''") + "'"


def ident(name: str) -> str:
    return name if name.isidentifier() and name.isascii() else "`" + name.replace("`", "``") + "`"


def most_frequent(col: pa.ChunkedArray):
    counts = collections.Counter(v for v in col.to_pylist() if v is not None)
    if not counts:
        return None
    return sorted(counts.items(), key=lambda kv: (-kv[1], repr(kv[0])))[0][0]


def choose(base: pa.Table, partition_cols: list[str]) -> dict | None:
    """The predicate column `c`, its value `v`, and the updated column `u` with value `w`."""
    names = base.column_names
    lower = {n.lower(): n for n in names}
    candidates = [lower[p.lower()] for p in partition_cols if p.lower() in lower]
    candidates += [n for n in names if n not in candidates]
    c = v = None
    for n in candidates:
        if nameable(base.schema.field(n).type):
            v = most_frequent(base.column(n))
            if v is not None:
                c = n
                break
    if c is None:
        return None
    mask = pc.fill_null(pc.equal(base.column(c), pa.scalar(v, base.schema.field(c).type)), False)
    parts = {p.lower() for p in partition_cols}
    others = [n for n in names if n != c and n.lower() not in parts and nameable(base.schema.field(n).type)]
    u = others[0] if others else c
    rest = base.filter(pc.invert(mask)).column(u).to_pylist()
    pool = [x for x in rest if x is not None] or [x for x in base.column(u).to_pylist() if x is not None]
    w = pool[0] if pool else None
    return {"c": c, "v": v, "mask": mask, "u": u, "w": w}


# --------------------------------------------------------------------------------------------
# running silt
# --------------------------------------------------------------------------------------------


def listing(root: str) -> dict[str, int | None]:
    out: dict[str, int | None] = {}
    for d, dirs, files in os.walk(root):
        rel = os.path.relpath(d, root)
        out[rel + "/"] = None
        for f in files:
            p = os.path.join(d, f)
            out[os.path.relpath(p, root)] = os.path.getsize(p)
    return out


def run_silt(silt: str, args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [silt, *args, "--json", "-q", "--executors", "2"],
        capture_output=True,
        text=True,
        timeout=SILT_TIMEOUT,
        env={**os.environ, "RUST_BACKTRACE": "0"},
    )


def refusal(proc: subprocess.CompletedProcess, before: dict, after: dict) -> Cell:
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    if proc.returncode == 0:
        return Cell("FAIL", "succeeded but a refusal was expected")
    if len(lines) != 1 or not lines[0].startswith("error:"):
        return Cell("FAIL", f"exit {proc.returncode}, not one `error:` line: {proc.stderr.strip()[:600]}")
    if before != after:
        changed = sorted(set(before.items()) ^ set(after.items()))[:6]
        return Cell("FAIL", f"refused but the table changed: {changed} ({lines[0]})")
    return Cell("no", lines[0])


def check_result(table: str, expected: pa.Table, readers: list[str], generated: list[str] = ()) -> Cell:
    """`generated`: identity columns whose values the write generated: distinct and not
    null, left out of the comparison."""
    problems = []
    expected = expected.drop_columns([c for c in generated if c in expected.column_names])
    for r in readers:
        try:
            actual = READERS[r](table)
        except Exception as ex:  # noqa: BLE001 - a reader failing on silt's output is a failure
            problems.append(f"[{r}] cannot read: {type(ex).__name__}: {str(ex)[:300]}")
            continue
        for c in generated:
            if c not in actual.column_names:
                problems.append(f"[{r}] identity column `{c}` missing")
                continue
            values = actual.column(c)
            if values.null_count or len(pc.unique(values)) != len(values):
                problems.append(f"[{r}] identity column `{c}` has nulls or repeated values")
            actual = actual.drop_columns([c])
        extra = sorted(set(actual.column_names) - set(expected.column_names))
        if extra:
            problems.append(f"[{r}] unexpected columns {extra}")
        try:
            problems += oracle.compare_tables(r, actual, expected, list(expected.column_names), True, False)
        except (ValueError, pa.ArrowInvalid, pa.ArrowNotImplementedError) as ex:
            problems.append(f"[{r}] {ex}")
    if problems:
        return Cell("FAIL", "\n".join(problems)[:2000])
    return Cell("ok", ",".join(readers))


def tracks_rows(table: str) -> bool:
    """Whether a table's protocol has the `rowTracking` writer feature."""
    log = os.path.join(table, "_delta_log")
    features: list = []
    for name in sorted(n for n in os.listdir(log) if n.endswith(".json")):
        with open(os.path.join(log, name), encoding="utf-8") as f:
            for line in f:
                if '"protocol"' in line:
                    features = json.loads(line).get("protocol", {}).get("writerFeatures") or []
    return "rowTracking" in features


def records_changes(table: str) -> bool:
    """Whether a table has the change data feed enabled."""
    from deltalake import DeltaTable

    conf = DeltaTable(table).metadata().configuration
    return (conf.get("delta.enableChangeDataFeed") or "").lower() == "true"


def check_feed(table: str, since: int, want: dict[str, int]) -> tuple[str | None, str]:
    """The change data of the table's latest commit, as delta-rs reads it (`cdc` files where
    the commit has them, else derived from whole files added and removed), counted by change
    type against `want`: (a problem or None, what was checked)."""
    from deltalake import DeltaTable

    delta = DeltaTable(table)
    v = delta.version()
    if v == since:
        return None, "no commit"
    with open(os.path.join(table, "_delta_log", f"{v:020}.json"), encoding="utf-8") as f:
        actions = [json.loads(line) for line in f if line.strip()]
    if not any("cdc" in a for a in actions) and any(
        (a.get("remove") or {}).get("deletionVector") and a["remove"].get("dataChange") for a in actions
    ):
        # delta-rs derives a removed file's deletes from all its rows, its deletion vector
        # ignored (the remove carries it, as the protocol says).
        return None, "change data not checked: delta-rs ignores removed files' deletion vectors"
    try:
        feed = pa.table(delta.load_cdf(starting_version=v, ending_version=v).read_all())
    except Exception as ex:  # noqa: BLE001 - a feed delta-rs cannot read is a failure
        return f"[deltalake] cannot read the change data of version {v}: {type(ex).__name__}: {str(ex)[:300]}"
    got = collections.Counter(
        t.decode() if isinstance(t, bytes) else t for t in feed.column("_change_type").to_pylist()
    )
    want = {k: n for k, n in want.items() if n}
    if dict(got) != want:
        return f"[deltalake] change data of version {v}: {dict(got)}, expected {want}", ""
    return None, "change data checked"


# --------------------------------------------------------------------------------------------
# one table
# --------------------------------------------------------------------------------------------


def half(t: pa.Table) -> pa.Table:
    return t.slice(0, max(1, t.num_rows // 2)) if t.num_rows else t


def write_parquet(t: pa.Table, path: str) -> str:
    os.makedirs(path, exist_ok=True)
    pq.write_table(t, os.path.join(path, "part-0.parquet"))
    return path


notes: dict[str, str] = {}


def run_table(golden: str, entry: dict, silt: str, work: str) -> dict[str, Cell]:
    rel = entry["path"]
    root = os.path.join(golden, rel, "delta")
    tags = set(entry.get("tags") or [])
    wd = os.path.join(work, rel.replace("/", "__"))
    shutil.rmtree(wd, ignore_errors=True)
    os.makedirs(wd)
    cells: dict[str, Cell] = {}

    def fresh(op: str) -> str:
        t = os.path.join(wd, op)
        shutil.copytree(root, t, symlinks=False)
        return t

    def refused_or_fail(op: str, args: list[str], t: str) -> Cell:
        before = listing(t)
        proc = run_silt(silt, args)
        return refusal(proc, before, listing(t))

    def sql(t: str, stmt: str) -> list[str]:
        return ["sql", stmt.replace("{t}", f"delta.`{t}`")]

    if "negative" in tags and (entry.get("error") or "").startswith("no _delta_log"):
        # Not a table: reading it fails, writing creates a new table at the location.
        src = write_parquet(pa.table({"x": [1, 2]}), os.path.join(wd, "gen"))
        for op in OPS:
            t = fresh(op)
            if op == "source":
                out = os.path.join(wd, "source_out")
                cells[op] = refused_or_fail(op, ["write", "--table", out, "--source", t, "--format", "delta"], t)
            elif op in ("append", "overwrite"):
                extra = [] if op == "append" else ["--mode", "overwrite"]
                proc = run_silt(silt, ["write", "--table", t, "--source", src, *extra])
                if proc.returncode != 0:
                    cells[op] = Cell("FAIL", f"creating a table failed: {proc.stderr.strip()[:300]}")
                else:
                    cells[op] = check_result(t, pa.table({"x": [1, 2]}), list(READERS))
            elif op == "replace":
                cells[op] = Cell("n/a", "no table to replace rows in")
            else:
                stmt = {"delete": "DELETE FROM {t}", "update": "UPDATE {t} SET x = 1", "optimize": "OPTIMIZE {t}",
                        "merge": f"MERGE INTO {{t}} a USING parquet.`{src}` b ON a.x = b.x WHEN MATCHED THEN DELETE"}[op]
                cells[op] = refused_or_fail(op, sql(t, stmt), t)
        return cells

    if "negative" in tags:
        gen = write_parquet(pa.table({"x": [1]}), os.path.join(wd, "gen"))
        for op in OPS:
            t = fresh(op)
            if op == "source":
                out = os.path.join(wd, "source_out")
                cells[op] = refused_or_fail(op, ["write", "--table", out, "--source", t, "--format", "delta"], t)
                if os.path.exists(os.path.join(out, "_delta_log")):
                    cells[op] = Cell("FAIL", "a table was created from a negative source")
            elif op in ("append", "overwrite", "replace"):
                extra = {"append": [], "overwrite": ["--mode", "overwrite"], "replace": ["--mode", "overwrite", "--replace-where", "x = 1"]}[op]
                cells[op] = refused_or_fail(op, ["write", "--table", t, "--source", gen, *extra], t)
            else:
                stmt = {
                    "delete": "DELETE FROM {t} WHERE x = 1",
                    "update": "UPDATE {t} SET x = 2 WHERE x = 1",
                    "merge": f"MERGE INTO {{t}} a USING parquet.`{gen}` b ON a.x = b.x WHEN MATCHED THEN DELETE",
                    "optimize": "OPTIMIZE {t}",
                }[op]
                cells[op] = refused_or_fail(op, sql(t, stmt), t)
        return cells

    base = expected_content(os.path.join(golden, rel))
    reads, good = readers_of(root, base)
    if base is not None and not good and len(reads) >= 2:
        first = next(iter(reads.values()))
        if all(same_rows(t, first) for t in reads.values()):
            # Every reader reads the same and it is not `expected/` (Spark wrote timestamp
            # partition values in its session time zone): the readers' content is the base.
            notes[rel] = f"expected/ differs from what every reader ({', '.join(reads)}) reads; their content is the base"
            base, good = first, list(reads)
    if base is None:
        # DuckDB's extension (delta-kernel-rs) first: delta-rs reads a column-mapped
        # partitioned table's data columns as nulls (`delta-rs/table_with_column_mapping`).
        for r in ("duckdb", "deltalake", "polars"):
            if r in reads:
                base = reads[r]
                good = [n for n, t in reads.items() if same_rows(t, base)]
                disagree = sorted(set(reads) - set(good))
                if disagree:
                    notes[rel] = f"no expected/; {', '.join(disagree)} read(s) otherwise than {r}, whose content is the base"
                break
    if base is None or "log-only" in tags:
        why = "log only: the table's data files are not in the collection" if "log-only" in tags else "no reader reads it"
        for op in OPS:
            cells[op] = Cell("n/a", why)
        # The source read fails clearly naming the missing file, or (no live file is
        # missing) succeeds with the content.
        t = fresh("source")
        out = os.path.join(wd, "source_out")
        before = listing(t)
        proc = run_silt(silt, ["write", "--table", out, "--source", t, "--format", "delta"])
        if proc.returncode != 0:
            cells["source"] = refusal(proc, before, listing(t))
        elif base is not None:
            cells["source"] = check_result(out, base, good or list(READERS))
        else:
            cells["source"] = Cell("FAIL", "read a table whose data files are absent")
        return cells
    if not good:
        good = list(reads)
    # The content as the table's schema types it (expected files may type a column wider).
    typed = base
    if "deltalake" in reads:
        try:
            typed = oracle.normalise(base, list(reads["deltalake"].column_names), False).cast(
                oracle.normalise(reads["deltalake"], list(reads["deltalake"].column_names), False).schema
            )
        except (ValueError, pa.ArrowInvalid, pa.ArrowNotImplementedError):
            typed = base
    base = typed
    # GENERATED ALWAYS identity columns: values cannot be given, so sources leave them out.
    identity = generated_identity(root)

    def without_identity(t: pa.Table) -> pa.Table:
        return t.drop_columns([c for c in identity if c in t.column_names])

    content_src = write_parquet(without_identity(base), os.path.join(wd, "content"))
    pick = choose(without_identity(base), entry.get("partition_columns") or [])

    def outcome(
        op: str, args: list[str], t: str, expected: pa.Table | None, changes: dict[str, int] | None = None
    ) -> Cell:
        """Runs the operation; checks the table's content and, on a table recording its
        change data, the change rows of its commit (`changes`: count per change type)."""
        recording = changes is not None and os.path.isdir(os.path.join(t, "_delta_log")) and records_changes(t)
        if recording:
            from deltalake import DeltaTable

            version = DeltaTable(t).version()
        before = listing(t)
        proc = run_silt(silt, args)
        if proc.returncode != 0:
            return refusal(proc, before, listing(t))
        if expected is None:
            return Cell("ok", "unverified")
        generated = identity if op in ("append", "overwrite", "replace", "merge") else []
        cell = check_result(t, expected, good, generated)
        if cell.status == "ok" and tracks_rows(t):
            # Row tracking: the log after the operation keeps the protocol's writer rules.
            problems = oracle.row_tracking_check(t)["problems"]
            if problems:
                return Cell("FAIL", f"row tracking: {problems}")
            cell = Cell("ok", f"{cell.detail} (row ids checked)")
        if cell.status == "ok" and recording:
            problem, checked = check_feed(t, version, changes or {})
            if problem:
                return Cell("FAIL", problem)
            cell = Cell("ok", f"{cell.detail} ({checked})")
        return cell

    # source
    t = fresh("source")
    out = os.path.join(wd, "source_out")
    cells["source"] = outcome("source", ["write", "--table", out, "--source", t, "--format", "delta"], out, base)
    if cells["source"].status == "no":
        shutil.rmtree(out, ignore_errors=True)
    # append
    t = fresh("append")
    cells["append"] = outcome(
        "append", ["write", "--table", t, "--source", content_src], t, pa.concat_tables([base, base]), {"insert": base.num_rows}
    )
    # overwrite
    t = fresh("overwrite")
    h = half(base)
    src = write_parquet(without_identity(h), os.path.join(wd, "half"))
    cells["overwrite"] = outcome(
        "overwrite",
        ["write", "--table", t, "--source", src, "--mode", "overwrite"],
        t,
        h,
        {"delete": base.num_rows, "insert": h.num_rows},
    )
    if pick is None:
        for op in ("replace", "delete", "update", "merge"):
            cells[op] = Cell("n/a", "no non-null value of a column a literal can name")
    else:
        c, v, mask, u, w = pick["c"], pick["v"], pick["mask"], pick["u"], pick["w"]
        ctype = base.schema.field(c).type
        pred = f"{ident(c)} = {literal(v, ctype)}"
        keep = base.filter(pc.invert(mask))
        matching = base.filter(mask)
        # replace
        t = fresh("replace")
        h = half(matching)
        src = write_parquet(without_identity(h), os.path.join(wd, "replace_src"))
        cells["replace"] = outcome(
            "replace",
            ["write", "--table", t, "--source", src, "--mode", "overwrite", "--replace-where", pred],
            t,
            pa.concat_tables([keep, h]),
            {"delete": matching.num_rows, "insert": h.num_rows},
        )
        # delete
        t = fresh("delete")
        cells["delete"] = outcome(
            "delete", sql(t, f"DELETE FROM {{t}} WHERE {pred}"), t, keep, {"delete": matching.num_rows}
        )
        # update
        t = fresh("update")
        if w is None:
            cells["update"] = Cell("n/a", f"no value to set `{u}` to")
        else:
            utype = base.schema.field(u).type
            col = pc.if_else(mask, pa.scalar(w, utype), base.column(u))
            updated = base.set_column(base.column_names.index(u), base.schema.field(u), col)
            cells["update"] = outcome(
                "update",
                sql(t, f"UPDATE {{t}} SET {ident(u)} = {literal(w, utype)} WHERE {pred}"),
                t,
                updated,
                {"update_preimage": matching.num_rows, "update_postimage": matching.num_rows},
            )
        # merge
        t = fresh("merge")
        row = matching.slice(0, 1)
        nullable = delta_nullable(root).get(c, True)
        parts = [row]
        if nullable:
            parts.append(row.set_column(base.column_names.index(c), base.schema.field(c), pa.nulls(1, ctype)))
        source = pa.concat_tables(parts)
        src = write_parquet(without_identity(source), os.path.join(wd, "merge_src"))
        stmt = (
            f"MERGE INTO {{t}} a USING parquet.`{src}` b ON a.{ident(c)} = b.{ident(c)} "
            "WHEN MATCHED THEN DELETE WHEN NOT MATCHED THEN INSERT *"
        )
        expected = pa.concat_tables([keep, *parts[1:]])
        cells["merge"] = outcome(
            "merge", sql(t, stmt), t, expected, {"delete": matching.num_rows, "insert": len(parts) - 1}
        )
    # optimize
    t = fresh("optimize")
    cells["optimize"] = outcome("optimize", sql(t, "OPTIMIZE {t}"), t, base, {})
    return cells


# --------------------------------------------------------------------------------------------
# driver
# --------------------------------------------------------------------------------------------


def load_refusals(path: str | None) -> dict[tuple[str, str], str]:
    out: dict[tuple[str, str], str] = {}
    if not path:
        return out
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            table, op, reason = (line.split(None, 2) + ["", ""])[:3]
            out[(table, op)] = reason
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--golden", required=True, help="the golden collection (with manifest.json)")
    ap.add_argument("--silt", required=True, help="the silt binary")
    ap.add_argument("--work", required=True, help="a scratch directory")
    ap.add_argument("--refusals", default=None, help="the refusals expected")
    ap.add_argument("--only", default="*", help="glob over table paths")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--json-out", default=None, help="write every cell as JSON here")
    args = ap.parse_args(argv)

    with open(os.path.join(args.golden, "manifest.json"), encoding="utf-8") as f:
        entries = [e for e in json.load(f) if fnmatch.fnmatch(e["path"], args.only)]
    expected_refusals = load_refusals(args.refusals)
    start = time.monotonic()

    def one(entry: dict) -> tuple[str, dict[str, Cell]]:
        try:
            return entry["path"], run_table(args.golden, entry, args.silt, args.work)
        except Exception as ex:  # noqa: BLE001 - a driver failure fails every cell of the table
            return entry["path"], {op: Cell("FAIL", f"driver: {type(ex).__name__}: {ex}") for op in OPS}

    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        results = dict(pool.map(one, entries))

    # Refusals against the list.
    for path, cells in results.items():
        for op, cell in cells.items():
            listed = (path, op) in expected_refusals
            if cell.status == "no" and not listed and args.refusals:
                cell.status, cell.detail = "FAIL", f"refused, and not in the refusal list: {cell.detail}"
            elif listed and cell.status in ("ok", "n/a"):
                cell.status, cell.detail = "FAIL", f"listed as refused but now {cell.status}: {cell.detail}"
    for (path, op) in expected_refusals:
        if path not in results and fnmatch.fnmatch(path, args.only):
            print(f"refusal list names a table not in the collection: {path}", file=sys.stderr)
            return 1

    width = max(len(p) for p in results) if results else 10
    print(f"{'table':<{width}}  " + " ".join(f"{op:>9}" for op in OPS))
    for path in sorted(results):
        print(f"{path:<{width}}  " + " ".join(f"{results[path][op].status:>9}" for op in OPS))
    totals = collections.Counter(c.status for cells in results.values() for c in cells.values())
    tables_all_ok = sum(1 for cells in results.values() if all(c.status == "ok" for c in cells.values()))
    print(
        f"\n{len(results)} tables x {len(OPS)} operations: "
        + ", ".join(f"{totals.get(s, 0)} {s}" for s in ("ok", "no", "n/a", "FAIL"))
        + f"; {tables_all_ok} tables ok for every operation ({time.monotonic() - start:.0f} s)"
    )
    if notes:
        print("\nnotes:")
        for path in sorted(notes):
            print(f"  {path}: {notes[path]}")
    print("\nrefusals:")
    for path in sorted(results):
        for op in OPS:
            c = results[path][op]
            if c.status == "no":
                print(f"  {path} {op}: {c.detail}")
    fails = [(p, op, c) for p in sorted(results) for op, c in results[p].items() if c.status == "FAIL"]
    if fails:
        print("\nFAILURES:")
        for p, op, c in fails:
            print(f"  {p} {op}: {c.detail}")
    if args.json_out:
        with open(args.json_out, "w", encoding="utf-8") as f:
            json.dump({p: {op: [c.status, c.detail] for op, c in cells.items()} for p, cells in results.items()}, f, indent=1)
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
