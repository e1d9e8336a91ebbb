"""The benchmark runner: silt vs delta-rs on the same TPC-DS-style data, same run.

See benches/README.md. In short:

1. Generate the data with silt-datagen (untimed): the load source (store_sales, --load-rows
   rows; written unpartitioned, by store and by date); at --scale: store_sales and
   web_returns in --fact-files files; and the compaction input, store_sales --compact-rows
   rows (the load source's rows) in --small-files small files. The last three become Delta
   tables in place (deltalake.convert_to_deltalake: the generator's files, with their
   stats, are the table), the common starting point of every run of MERGE, compaction,
   Z-order, DELETE and UPDATE. zorder/long_prefix starts from store_sales plus a string
   column with a long common prefix, written once by deltalake.write_deltalake. The upserts
   into the load rows start from the load source's files (hard links) converted the same
   way, and from those rows sorted by key in files of --clustered-file-size, converted too.
2. Build the MERGE sources from their targets and compute every expected result
   independently (pyarrow over the data, not either engine).
3. For each scenario and repetition, run each side in its own child process on a fresh
   copy of the same input (silt first in even repetitions, delta-rs first in odd ones;
   Z-order: delta-rs first, then silt with the target size at which it writes as many
   files as delta-rs just did), measure wall, CPU and peak RSS, and verify the resulting
   table with deltalake (rows, sum of an amount column, columns). A side silt does not have
   yet is reported as not available; nothing is measured in its place.
4. Analyse layouts from the Delta log's add actions: query file skipping after each load,
   compaction and Z-order, clustering quality (files read per point predicate over seeded
   random probes), file sizes before/after compaction.
5. Write results.json, results.md and PNG charts to --out-dir; print the Markdown.
"""

import argparse
import datetime as dt
import dataclasses
import decimal
import fnmatch
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import layout, report, scenarios
from .measure import (ChildError, git_info, machine, parent_peak_rss_mib, run_child,
                      run_measured, tool_version)
from .scenarios import (CLUSTERING_PROBES, DML_CASES, LOAD_SCENARIOS, MERGE_CASES, MERGE_TARGETS, PREFIX_COL,
                        PREFIX_DIGITS, PREFIX_STATS_COLS, PREFIX_TEXT, STATS_COLS, STORE_SALES,
                        STORE_SALES_MERGE_CASES, UPDATE_COL, UPDATE_INCREMENT, UPDATES, UPSERT_CASES,
                        UPSERT_TARGET_LAYOUTS, WEB_RETURNS, ZORDER_CASES, ZORDER_COLS, MergeCase, Scenario)

BENCHES = Path(__file__).resolve().parent.parent
REPO = BENCHES.parent
CHILD = Path(__file__).resolve().parent / "child.py"
CHARTS = Path(__file__).resolve().parent / "charts.py"
SIDES = ("silt", "delta-rs")
DML_OPS = ("delete", "update")

PROFILES = {
    # Keeps the runner working inside the test suite (benches/tests/bench_quick.rs).
    "quick": {"load_rows": 20_000, "scale": 0.01, "reps": 1, "fact_files": 8, "small_files": 48,
              "compact_rows": 20_000,
              "load_files": 4, "compact_target_size": 256 << 10, "zorder_target_size": 64 << 10,
              "store_sales_merge_cases": 2, "clustered_file_size": 64 << 10},
    # The documented full run (README "Benchmarks"). The compaction input is the load
    # source's 5,000,000 rows in 1,200 small files (~250 KB each).
    "full": {"load_rows": 5_000_000, "scale": 1.0, "reps": 3, "fact_files": 20, "small_files": 1200,
             "compact_rows": 5_000_000,
             "load_files": 2 * (os.cpu_count() or 1), "compact_target_size": 32 << 20,
             "zorder_target_size": 8 << 20, "store_sales_merge_cases": len(STORE_SALES_MERGE_CASES),
             "clustered_file_size": 10 << 20},
}


def ensure_venv():
    """<repo>/.venv with the pinned packages of tests/python/requirements.txt, created or
    updated when the requirements changed (the same stamp as scripts/setup.sh)."""
    import hashlib
    import subprocess

    venv = REPO / ".venv"
    python = venv / "bin" / "python"
    req = REPO / "tests" / "python" / "requirements.txt"
    stamp = venv / ".requirements.sha256"
    want = hashlib.sha256(req.read_bytes()).hexdigest()
    if python.is_file() and stamp.is_file() and stamp.read_text().strip() == want:
        return python
    print(f"creating {venv} with the pinned packages of {req.relative_to(REPO)} ...", flush=True)
    subprocess.run([shutil.which("python3") or sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", "-r", str(req)],
                   check=True)
    stamp.write_text(want + "\n")
    return python


def default_target_dir():
    return Path(os.environ.get("CARGO_TARGET_DIR") or Path.home() / ".cache" / "silt-target")


def parse_args(argv):
    cores = os.cpu_count() or 1
    ap = argparse.ArgumentParser(prog="bench.py", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", choices=sorted(PROFILES), default="full",
                    help="preset sizes (default full); the options below override it")
    ap.add_argument("--scale", type=float, help="TPC-DS scale factor of the MERGE/Z-order/DELETE/UPDATE data")
    ap.add_argument("--load-rows", type=int, help="store_sales rows of the load scenarios")
    ap.add_argument("--load-files", type=int, help="Parquet files of the load source")
    ap.add_argument("--fact-files", type=int, help="files of the store_sales and web_returns targets")
    ap.add_argument("--small-files", type=int, help="files of the compaction input")
    ap.add_argument("--compact-rows", type=int,
                    help="store_sales rows of the compaction input (the load source's rows when equal to "
                         "--load-rows)")
    ap.add_argument("--compact-target-size", type=int, help="OPTIMIZE target file size, bytes")
    ap.add_argument("--zorder-target-size", type=int,
                    help="Z-order target file size of delta-rs, bytes (silt gets the size at which it writes "
                         "as many files as delta-rs did)")
    ap.add_argument("--clustered-file-size", type=int,
                    help="file size of the clustered upsert target (load rows sorted by key), bytes")
    ap.add_argument("--reps", type=int, help="repetitions per side")
    ap.add_argument("--seed", type=int, default=1, help="data and sampling seed (default 1)")
    ap.add_argument("--scenarios", default="*",
                    help="comma-separated globs over scenario names (default all), e.g. 'load,merge/*'")
    ap.add_argument("--executors", type=int, default=cores, help=f"silt executors (default cores = {cores})")
    ap.add_argument("--executor-memory", type=int, default=2 << 30,
                    help="silt memory limit per executor, bytes (default 2 GiB)")
    ap.add_argument("--only", choices=SIDES, help="run one side only (the other is reported as not run)")
    ap.add_argument("--silt-bin", default=str(default_target_dir() / "release" / "silt"),
                    help="silt binary (default $CARGO_TARGET_DIR/release/silt, "
                         "CARGO_TARGET_DIR defaulting to ~/.cache/silt-target)")
    ap.add_argument("--datagen-bin", help="silt-datagen binary (default: cargo build --release, then use it)")
    ap.add_argument("--no-build", action="store_true", help="do not run cargo build for silt-datagen")
    ap.add_argument("--python", help="python with the pinned deltalake/pyarrow/matplotlib (default: <repo>/.venv, "
                                      "created or updated from tests/python/requirements.txt when needed)")
    ap.add_argument("--workdir", help="work directory (default: a new temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (data, tables, logs)")
    ap.add_argument("--out-dir", help="where results.json, results.md and the charts go "
                                      "(default bench-results/<timestamp>)")
    ap.add_argument("--no-charts", action="store_true", help="skip the PNG charts")
    args = ap.parse_args(argv)
    prof = dict(PROFILES[args.profile])
    for k in list(prof):
        v = getattr(args, k, None)
        if v is not None:
            prof[k] = v
    for k in ("load_rows", "reps", "fact_files", "small_files", "compact_rows", "load_files", "compact_target_size",
              "zorder_target_size", "clustered_file_size"):
        if prof[k] < 1:
            ap.error(f"--{k.replace('_', '-')} must be positive")
    if not prof["scale"] > 0:
        ap.error("--scale must be positive")
    if args.executors < 1:
        ap.error("--executors must be positive")
    return args, prof


class Ctx:
    """Everything a scenario needs: paths, sizes, binaries."""

    def __init__(self, args, prof, workdir):
        self.args, self.prof, self.workdir = args, prof, workdir
        self.python = args.python
        self.silt_bin = args.silt_bin
        self.executors = args.executors
        self.executor_memory = args.executor_memory
        self.logs = workdir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.data = workdir / "data"
        self.runs = workdir / "runs"
        self.info = {}
        # data set key -> {column: probe info} for the clustering analysis (probe_values).
        self.probes = {}

    def child(self, op, spec):
        return run_child(self.python, CHILD, op, spec, self.workdir)


def fresh_copy(src, dst):
    """A private copy of a prepared Delta table: data files hard-linked (Parquet files are
    immutable; both engines only add new ones), the log copied (a checkpoint rewrites
    _last_checkpoint in place)."""
    if dst.exists():
        shutil.rmtree(dst)

    def copy(s, d):
        if "_delta_log" in Path(s).parts:
            return shutil.copy2(s, d)
        try:
            return os.link(s, d)
        except OSError:
            return shutil.copy2(s, d)

    shutil.copytree(src, dst, copy_function=copy)


def build_datagen(args):
    if args.datagen_bin:
        return Path(args.datagen_bin)
    target = default_target_dir()
    if not args.no_build:
        env = dict(os.environ, CARGO_TARGET_DIR=str(target))
        print(f"building silt-datagen (release) in {target} ...", flush=True)
        import subprocess

        subprocess.run(["cargo", "build", "-q", "-p", "silt-benches", "--release", "--bin", "silt-datagen"],
                       cwd=REPO, env=env, check=True)
    return target / "release" / "silt-datagen"


def generate(ctx, datagen, name, table, size_args, files):
    out = ctx.data / name
    # A workdir used before holds the Delta log its files were converted into: the files are
    # replaced (--overwrite), so the log goes too, and they are converted afresh.
    shutil.rmtree(out / "_delta_log", ignore_errors=True)
    argv = [datagen, table, *size_args, "--seed", str(ctx.args.seed), "--files", str(files),
            "--out", out, "--overwrite"]
    run = run_measured(argv, ctx.logs / f"datagen-{name}")
    if run["exit_code"] != 0:
        raise RuntimeError(f"silt-datagen {table} failed: {run['stderr_tail']}")
    kv = dict(p.split("=", 1) for p in run["stdout_tail"].strip().splitlines()[-1].split() if "=" in p)
    print(f"data {name}: {kv.get('rows')} rows, {kv.get('files')} files, {int(kv.get('bytes', 0)) / 2**20:.1f} MiB "
          f"in {run['wall_s']:.2f}s", flush=True)
    return {"table": table, "rows": int(kv["rows"]), "files": int(kv["files"]), "bytes": int(kv["bytes"]),
            "datagen_wall_s": run["wall_s"], "datagen_peak_rss_mib": run["peak_rss_mib"], "path": str(out)}


def selected(name, patterns):
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def wanted_with_dv(name, patterns):
    """Whether a scenario or its deletion-vector twin (scenarios.DV_SCENARIOS) is selected."""
    return selected(name, patterns) or (name in scenarios.DV_SCENARIOS
                                        and selected(scenarios.dv_name(name), patterns))


def with_dv_twins(found):
    """The scenarios, each of scenarios.DV_SCENARIOS followed by its twin with deletion
    vectors enabled on silt's table."""
    out = []
    for sc in found:
        out.append(sc)
        if sc.name in scenarios.DV_SCENARIOS:
            out.append(dataclasses.replace(
                sc, name=scenarios.dv_name(sc.name), label=f"{sc.label} dv",
                description=f"{sc.description}; silt's table has deletion vectors enabled (delta-rs: "
                            "copy-on-write, it writes none)",
                params={**sc.params, "deletion_vectors": "silt"},
                silt_setup=scenarios.silt_enable_dv))
    return out


def merge_cases_for(table, prof):
    if table == "web_returns":
        return MERGE_CASES
    return STORE_SALES_MERGE_CASES[: prof["store_sales_merge_cases"]]


def build_scenarios(ctx, patterns):
    """The scenario list; prepares only the data the selected scenarios need."""
    prof, args = ctx.prof, ctx.args
    wanted = {
        "load": any(selected(name, patterns) for name, _, _ in LOAD_SCENARIOS),
        "web_returns": any(selected(f"merge/web_returns/{c.name}", patterns) for c in MERGE_CASES),
        "store_sales_merge": any(selected(f"merge/store_sales/{c.name}", patterns)
                                 for c in merge_cases_for("store_sales", prof)),
        "compaction": selected("compaction", patterns),
        "zorder": any(selected(z.name, patterns) for z in ZORDER_CASES),
        "zorder_prefix": any(selected(z.name, patterns) for z in ZORDER_CASES if z.data == "store_sales_prefix"),
        "dml": any(wanted_with_dv(f"{op}/{n}", patterns) for op in DML_OPS for n in DML_CASES),
        "upsert": any(wanted_with_dv(c.scenario, patterns) for c in UPSERT_CASES),
    }
    need_ss = wanted["store_sales_merge"] or wanted["zorder"] or wanted["dml"]
    data = {}
    datagen = build_datagen(args) if any(wanted.values()) else None
    if datagen:
        ctx.info["silt-datagen"] = tool_version(datagen)
    if wanted["load"] or wanted["upsert"]:
        data["load_src"] = generate(ctx, datagen, "load_src", "store_sales",
                                    ["--rows", str(prof["load_rows"])], prof["load_files"])
        part_cols = sorted({c for _, cols, _ in LOAD_SCENARIOS for c in cols})
        data["load_src"].update(ctx.child("source_info", {"path": data["load_src"]["path"],
                                                          "amount_col": STORE_SALES["amount_col"],
                                                          "distinct_cols": part_cols}))
    scale = ["--scale", repr(prof["scale"])]
    compact_rows = ["--rows", str(prof["compact_rows"])]
    for key, table, size, files, need in (
            ("store_sales", "store_sales", scale, prof["fact_files"], need_ss),
            ("web_returns", "web_returns", scale, prof["fact_files"], wanted["web_returns"]),
            ("store_sales_small", "store_sales", compact_rows, prof["small_files"], wanted["compaction"])):
        if not need:
            continue
        d = generate(ctx, datagen, key, table, size, files)
        d["convert_wall_s"] = convert_table(ctx, d)
        t = MERGE_TARGETS[table]
        d["info"] = ctx.child("table_info", {"path": d["path"], "amount_col": t["amount_col"],
                                             "stats_cols": STATS_COLS if table == "store_sales" else []})
        data[key] = d
    if wanted["zorder_prefix"]:
        data["store_sales_prefix"] = prefix_table(ctx, data["store_sales"])
    for z in ZORDER_CASES:
        if selected(z.name, patterns) and z.data not in ctx.probes:
            d = data[z.data]
            ctx.probes[z.data] = ctx.child("probe_values", {"path": d["path"], "columns": list(z.columns),
                                                            "seed": args.seed, "n": CLUSTERING_PROBES})
    if wanted["upsert"]:
        for layout in sorted({c.target for c in UPSERT_CASES if wanted_with_dv(c.scenario, patterns)}):
            data[f"upsert_{layout}"] = upsert_target(ctx, layout, data["load_src"])
    ctx.data_sets = data

    out = []
    if wanted["load"]:
        out += load_scenarios(ctx)
    for table, key, want in (("web_returns", "web_returns", wanted["web_returns"]),
                             ("store_sales", "store_sales", wanted["store_sales_merge"])):
        if want:
            out += merge_scenarios(ctx, table, data[key], patterns)
    if wanted["upsert"]:
        out += upsert_scenarios(ctx, patterns)
    if wanted["compaction"]:
        out.append(compaction_scenario(ctx))
    if wanted["zorder"]:
        out += zorder_scenarios(ctx, patterns)
    if wanted["dml"]:
        for op in DML_OPS:
            out += dml_scenarios(ctx, op, patterns)
    return [s for s in with_dv_twins(out) if selected(s.name, patterns)]


def load_scenarios(ctx):
    """`load`: the load source into a new unpartitioned table; `load/by_store`,
    `load/by_date`: the same into a table partitioned by a column, checked also for its
    partition columns and for one partition per distinct value (null included)."""
    src = ctx.data_sets["load_src"]
    out = []
    for name, part_cols, label in LOAD_SCENARIOS:
        extra = {"partition_by": part_cols} if part_cols else {}

        def spec(run_dir, extra=extra):
            return {"kind": "write", "source": src["path"], "table": str(run_dir / "table"), "mode": "overwrite",
                    **extra}

        expect = {"rows": src["rows"], "sum": src["sum"], "columns": src["columns"],
                  "amount_col": STORE_SALES["amount_col"]}
        params = {"rows": src["rows"], "source_files": src["files"], "source_bytes": src["bytes"]}
        partitioned = ""
        if part_cols:
            expect["partition_by"] = params["partition_by"] = part_cols
            partitioned = f" partitioned by {', '.join(part_cols)}"
            if len(part_cols) == 1:
                # One partition per distinct value of the column in the source, null included.
                expect["partitions"] = params["partitions"] = src["distinct"][part_cols[0]]
                partitioned += f" ({expect['partitions']:,} partitions)"
        out.append(Scenario(
            name=name, group="load", kind="write", label=label,
            description=f"write {src['rows']:,} store_sales rows from {src['files']} Parquet files "
                        f"into a new Delta table{partitioned} (mode overwrite)",
            spec=spec, expect=expect, params=params, analyze=name))
    return out


def merge_scenarios(ctx, table, target, patterns):
    t = MERGE_TARGETS[table]
    cases = [c for c in merge_cases_for(table, ctx.prof) if selected(f"merge/{table}/{c.name}", patterns)]
    if not cases:
        return []
    out_dir = ctx.workdir / "sources" / table
    out_dir.mkdir(parents=True, exist_ok=True)
    built = ctx.child("merge_sources", {
        "target": target["path"], "key_col": t["key_col"], "item_col": t["item_col"],
        "amount_col": t["amount_col"], "seed": ctx.args.seed, "out": str(out_dir),
        "cases": [{"name": c.name, "kind": c.kind, "file_fraction": c.file_fraction,
                   "row_matched": c.row_matched, "row_not_matched": c.row_not_matched,
                   "row_changed": c.row_changed} for c in cases]})
    out = []
    for c in cases:
        exp = built["cases"][c.name]
        clauses = scenarios.merge_clauses(c, t)

        def spec(run_dir, exp=exp, clauses=clauses):
            fresh_copy(Path(target["path"]), run_dir / "table")
            return {"kind": "merge", "table": str(run_dir / "table"), "source": exp["source"],
                    "predicate": scenarios.merge_predicate(t), "clauses": clauses}

        out.append(Scenario(
            name=f"merge/{table}/{c.name}", group="merge", kind="merge", label=f"{t['short']} {c.label}",
            description=scenarios.merge_sql(t, clauses),
            spec=spec,
            expect={"rows": exp["expected_rows"], "sum": exp["expected_sum"], "amount_col": t["amount_col"]},
            params={"case": c.kind, "origin": c.origin, "file_fraction": c.file_fraction,
                    "row_matched": c.row_matched, "row_not_matched": c.row_not_matched,
                    "row_changed": c.row_changed, **{k: v for k, v in exp.items() if k != "source"}}))
    return out


def upsert_target(ctx, layout, src):
    """A Delta table of the load source's rows for the upsert cases (untimed, built once;
    every run gets a fresh copy). "load": the generated files hard-linked as they are,
    converted in place; "clustered": the rows sorted by (ss_ticket_number, ss_item_sk)
    written by pyarrow in files of about --clustered-file-size, converted in place."""
    out = ctx.data / f"upsert_{layout}"
    if out.exists():
        shutil.rmtree(out)
    params = {}
    if layout == "load":
        fresh_copy(Path(src["path"]), out)
    else:
        params = ctx.child("clustered_files", {"source": src["path"], "out": str(out),
                                               "key_col": STORE_SALES["key_col"],
                                               "item_col": STORE_SALES["item_col"],
                                               "file_size": ctx.prof["clustered_file_size"]})
    ctx.child("convert", {"path": str(out)})
    info = ctx.child("table_info", {"path": str(out), "amount_col": STORE_SALES["amount_col"],
                                    "stats_cols": STATS_COLS})
    if info["rows"] != src["rows"] or decimal.Decimal(info["sum"]) != decimal.Decimal(src["sum"]):
        raise RuntimeError(f"upsert target {layout}: {info['rows']} rows, sum {info['sum']}, not the load "
                           f"source's {src['rows']} rows, sum {src['sum']}")
    size = ctx.prof["clustered_file_size"]
    size = f"{size / 2**20:g} MiB" if size >= 2**20 else f"{size / 2**10:g} KiB"
    d = {"table": "store_sales", "layout": UPSERT_TARGET_LAYOUTS[layout].format(size=size),
         "rows": info["rows"], "files": len(info["files"]), "bytes": sum(f["size"] for f in info["files"]),
         "path": str(out), "info": info}
    if params:
        d["rows_per_file"] = params["rows_per_file"]
    print(f"data upsert_{layout}: {d['rows']} rows, {d['files']} files, {d['bytes'] / 2**20:.1f} MiB "
          f"({d['layout']})", flush=True)
    return d


def upsert_scenarios(ctx, patterns):
    """merge/load/upsert_10pct, merge/clustered/upsert (UPSERT_CASES): upserts into the load
    rows, each against a fresh copy of its target; the source is built from the target by
    child.py upsert_source."""
    t = STORE_SALES
    out_dir = ctx.workdir / "sources" / "upsert"
    out_dir.mkdir(parents=True, exist_ok=True)
    out = []
    for unit, c in enumerate(UPSERT_CASES, start=1):
        if not wanted_with_dv(c.scenario, patterns):
            continue
        target = ctx.data_sets[f"upsert_{c.target}"]
        exp = ctx.child("upsert_source", {
            "target": target["path"], "key_col": t["key_col"], "item_col": t["item_col"],
            "amount_col": t["amount_col"], "seed": ctx.args.seed, "unit": unit,
            "key_range": c.key_range, "row_matched": c.row_matched, "row_not_matched": c.row_not_matched,
            "out": str(out_dir / f"{c.target}-{c.name}.parquet")})
        clauses = scenarios.merge_clauses(c, t)

        def spec(run_dir, exp=exp, clauses=clauses, target=target):
            fresh_copy(Path(target["path"]), run_dir / "table")
            return {"kind": "merge", "table": str(run_dir / "table"), "source": exp["source"],
                    "predicate": scenarios.merge_predicate(t), "clauses": clauses}

        keys = "" if c.key_range >= 1 else (f", keys among the newest {c.key_range:.0%} of tickets "
                                            f"(>= {exp['first_key']:,}, {exp['files_in_key_range']} files)")
        out.append(Scenario(
            name=c.scenario, group="merge", kind="merge", label=c.label,
            description=f"{exp['target_rows']:,}-row store_sales in {exp['target_files']} files "
                        f"({target['layout']}), {c.summary}: {exp['matched_rows']:,} changed + "
                        f"{exp['not_matched_rows']:,} new rows{keys}; {scenarios.merge_sql(t, clauses)}",
            spec=spec,
            expect={"rows": exp["expected_rows"], "sum": exp["expected_sum"], "amount_col": t["amount_col"]},
            params={"case": c.kind, "origin": "silt", "target_layout": target["layout"],
                    "key_range": c.key_range, "row_matched": c.row_matched, "row_not_matched": c.row_not_matched,
                    **{k: v for k, v in exp.items() if k != "source"}}))
    return out


def convert_table(ctx, d):
    """deltalake.convert_to_deltalake in place (untimed setup; its wall time is recorded)."""
    started = time.monotonic()
    ctx.child("convert", {"path": d["path"]})
    took = time.monotonic() - started
    print(f"   converted {d['files']} files into a Delta table in place in {took:.2f}s", flush=True)
    return took


def prefix_table(ctx, ss):
    """store_sales (the --scale data set) plus PREFIX_COL, a string with a long common
    prefix derived from ss_customer_sk, written once as a new Delta table by
    deltalake.write_deltalake in about as many files as store_sales (untimed; every run gets
    a fresh copy)."""
    out = ctx.data / "store_sales_prefix"
    if out.exists():
        shutil.rmtree(out)
    started = time.monotonic()
    ctx.child("prefix_table", {"source": ss["path"], "out": str(out), "column": PREFIX_COL,
                               "prefix": PREFIX_TEXT, "key_col": "ss_customer_sk", "digits": PREFIX_DIGITS,
                               "file_size": math.ceil(ss["bytes"] / max(1, ss["files"]))})
    took = time.monotonic() - started
    info = ctx.child("table_info", {"path": str(out), "amount_col": STORE_SALES["amount_col"],
                                    "stats_cols": PREFIX_STATS_COLS})
    if info["rows"] != ss["info"]["rows"] or decimal.Decimal(info["sum"]) != decimal.Decimal(ss["info"]["sum"]):
        raise RuntimeError(f"store_sales_prefix: {info['rows']} rows, sum {info['sum']}, not store_sales' "
                           f"{ss['info']['rows']} rows, sum {ss['info']['sum']}")
    d = {"table": "store_sales", "layout": f"store_sales SF {ctx.prof['scale']:g} plus {PREFIX_COL} = "
                                          f"'{PREFIX_TEXT}' + ss_customer_sk zero-padded to {PREFIX_DIGITS} digits, "
                                          "written by deltalake.write_deltalake",
         "rows": info["rows"], "files": len(info["files"]), "bytes": sum(f["size"] for f in info["files"]),
         "write_wall_s": took, "path": str(out), "info": info}
    print(f"data store_sales_prefix: {d['rows']} rows, {d['files']} files, {d['bytes'] / 2**20:.1f} MiB "
          f"in {took:.2f}s (with {PREFIX_COL})", flush=True)
    return d


def compaction_scenario(ctx):
    d = ctx.data_sets["store_sales_small"]
    size = ctx.prof["compact_target_size"]
    input_bytes = sum(f["size"] for f in d["info"]["files"])

    def spec(run_dir):
        fresh_copy(Path(d["path"]), run_dir / "table")
        return {"kind": "compact", "table": str(run_dir / "table"), "target_size": size}

    return Scenario(
        name="compaction", group="compaction", kind="compact", label="compaction",
        description=f"OPTIMIZE (bin-packing) of {d['rows']:,}-row store_sales in {d['files']:,} small files "
                    f"({input_bytes / 2**20:.1f} MiB), target size {size / 2**20:g} MiB",
        spec=spec,
        expect={"rows": d["info"]["rows"], "sum": d["info"]["sum"], "amount_col": STORE_SALES["amount_col"],
                "fewer_files_than": d["files"]},
        params={"input_rows": d["info"]["rows"], "input_files": d["files"], "input_bytes": input_bytes,
                "target_size": size},
        analyze="compaction")


def zorder_scenarios(ctx, patterns):
    """The Z-order scenarios (ZORDER_CASES), at the same file count: delta-rs runs first in
    every repetition with --zorder-target-size; silt then gets --target-size
    ceil(input bytes / the files delta-rs wrote), at which its clustering writes about as
    many files (match_files)."""
    size = ctx.prof["zorder_target_size"]
    out = []
    for z in ZORDER_CASES:
        if not selected(z.name, patterns):
            continue
        d = ctx.data_sets[z.data]
        cols = list(z.columns)
        input_bytes = sum(f["size"] for f in d["info"]["files"])

        def spec(run_dir, d=d, cols=cols):
            fresh_copy(Path(d["path"]), run_dir / "table")
            return {"kind": "zorder", "table": str(run_dir / "table"), "columns": cols, "target_size": size}

        what = "store_sales" if z.data == "store_sales" else f"store_sales + {PREFIX_COL} (long common prefix)"
        out.append(Scenario(
            name=z.name, group="zorder", kind="zorder", label=z.label,
            description=f"OPTIMIZE ZORDER BY ({', '.join(cols)}) of {what} SF {ctx.prof['scale']:g} "
                        f"({d['files']} files, {input_bytes / 2**20:.1f} MiB); delta-rs target size "
                        f"{size / 2**20:g} MiB, silt at delta-rs's file count",
            spec=spec,
            expect={"rows": d["info"]["rows"], "sum": d["info"]["sum"], "amount_col": STORE_SALES["amount_col"]},
            params={"data": z.data, "input_files": d["files"], "input_bytes": input_bytes, "columns": cols,
                    "target_size": size,
                    "silt_target_size_rule": "ceil(input_bytes / files delta-rs wrote in the same repetition): "
                                             "delta-rs runs first; silt's clustering writes about "
                                             "ceil(input_bytes / target size) files"},
            analyze=z.name, stats_cols=list(z.stats_cols), match_files=True, zorder_cols=cols))
    return out


def match_files(sc, delta_side, rep, spec):
    """silt's target size in a Z-order repetition: ceil(input bytes / N), N = data files of
    delta-rs's verified result in the same repetition (it ran first), so that both results
    have the same file count. Without a delta-rs result the scenario's own target size."""
    theirs = next((r for r in delta_side["runs"] if r["rep"] == rep and r["ok"]), None)
    if theirs is None or not theirs.get("output", {}).get("files"):
        why = "not run" if not delta_side["available"] else "failed"
        return spec["target_size"], f"delta-rs {why} in rep {rep}: the scenario's target size"
    n = theirs["output"]["files"]
    input_bytes = sc.params["input_bytes"]
    return (math.ceil(input_bytes / n),
            f"ceil({input_bytes} input bytes / {n} files delta-rs wrote in rep {rep}): delta-rs's file count")


def dml_scenarios(ctx, op, patterns):
    """`op` ("delete" or "update") of store_sales WHERE each of DML_CASES. DELETE is checked
    by rows and the ss_net_paid sum left, UPDATE by unchanged rows and the UPDATE_COL sum
    grown by UPDATE_INCREMENT per matching non-null value."""
    d = ctx.data_sets["store_sales"]
    names = [n for n in DML_CASES if wanted_with_dv(f"{op}/{n}", patterns)]
    if not names:
        return []
    amount = STORE_SALES["amount_col"] if op == "delete" else UPDATE_COL
    counts = ctx.child("count_where", {"path": d["path"], "amount_col": amount,
                                       "predicates": {n: DML_CASES[n] for n in names}})
    total = decimal.Decimal(counts["sum"])
    out = []
    for n in names:
        sql = scenarios.predicate_sql(DML_CASES[n])
        hit = counts["matches"][n]
        if op == "delete":
            statement = f"DELETE FROM store_sales WHERE {sql}"
            extra = {}
            expect = {"rows": counts["rows"] - hit["rows"], "sum": str(total - decimal.Decimal(hit["sum"]))}
        else:
            statement = f"UPDATE store_sales SET {scenarios.assignments_sql(UPDATES)} WHERE {sql}"
            extra = {"updates": UPDATES}
            expect = {"rows": counts["rows"], "sum": str(total + hit["non_null"] * UPDATE_INCREMENT)}

        def spec(run_dir, sql=sql, extra=extra):
            fresh_copy(Path(d["path"]), run_dir / "table")
            return {"kind": op, "table": str(run_dir / "table"), "predicate": sql, **extra}

        out.append(Scenario(
            name=f"{op}/{n}", group=op, kind=op, label=f"{op} {n}",
            description=f"{statement} ({hit['rows']:,} of {counts['rows']:,} rows)",
            spec=spec,
            expect={**expect, "amount_col": amount},
            params={"predicate": sql, **extra, "matching_rows": hit["rows"], "table_rows": counts["rows"]}))
    return out


def table_files(table):
    """Relative path -> size of every file under a table's root but its log (none if absent)."""
    if not table or not os.path.isdir(table):
        return {}
    out = {}
    for root, _dirs, files in os.walk(table):
        rel_root = os.path.relpath(root, table)
        if rel_root.split(os.sep)[0] == "_delta_log":
            continue
        for f in files:
            out[os.path.normpath(os.path.join(rel_root, f))] = os.path.getsize(os.path.join(root, f))
    return out


def verify(ctx, table, expect, stats_cols=None):
    info = ctx.child("table_info", {"path": table, "amount_col": expect["amount_col"],
                                    "stats_cols": stats_cols or STATS_COLS})
    problems = []
    if info["rows"] != expect["rows"]:
        problems.append(f"rows {info['rows']} != expected {expect['rows']}")
    if expect.get("sum") is not None and decimal.Decimal(info["sum"] or 0) != decimal.Decimal(expect["sum"]):
        problems.append(f"sum({expect['amount_col']}) {info['sum']} != expected {expect['sum']}")
    if expect.get("columns") and info["columns"] != expect["columns"]:
        problems.append(f"columns {info['columns']} != expected {expect['columns']}")
    if "partition_by" in expect and info["partition_columns"] != expect["partition_by"]:
        problems.append(f"partition columns {info['partition_columns']} != expected {expect['partition_by']}")
    if expect.get("partitions") is not None and info["partitions"] != expect["partitions"]:
        problems.append(f"{info['partitions']} partitions != expected {expect['partitions']}")
    if expect.get("fewer_files_than") and len(info["files"]) >= expect["fewer_files_than"]:
        problems.append(f"{len(info['files'])} files after compaction, not fewer than {expect['fewer_files_than']}")
    return info, problems


def not_available(reason):
    return {"available": False, "reason": reason, "runs": []}


# Free disk space under which a finished run's directory is deleted at once instead of at
# the end of the benchmark.
KEEP_RUNS_FREE_BYTES = 8 << 30


def retire_run_dir(ctx, run_dir, written_bytes):
    """Deletes a finished run's directory at the end of the benchmark (with the work
    directory, or the runs under one given), or now if disk space runs short. Deleting thousands of files just before
    the next timed run slows that run down on some file systems: on ext4 without a journal
    (this machine's), creating inodes within 60 s (360 s while the inode table is dirty) of
    deleting many makes the allocator scan past each recently deleted one
    (`recently_deleted`), which measured a third of silt's CPU in load/by_date, whose run
    creates 1,834 directories and as many files. Which side paid depended on the order."""
    free = shutil.disk_usage(run_dir).free
    if free - written_bytes < KEEP_RUNS_FREE_BYTES:
        shutil.rmtree(run_dir, ignore_errors=True)


def run_scenario(ctx, sc, results):
    args = ctx.args
    sides = {}
    reason = scenarios.silt_unavailable(sc.kind)
    sides["silt"] = ({"available": True, "runs": []} if reason is None and args.only != "delta-rs"
                     else not_available(reason or "not run (--only delta-rs)"))
    sides["delta-rs"] = ({"available": True, "runs": []} if args.only != "silt"
                         else not_available("not run (--only silt)"))
    entry = {"name": sc.name, "group": sc.group, "label": sc.label, "description": sc.description,
             "kind": sc.kind, "params": sc.params, "op": None,
             "expect": {k: v for k, v in sc.expect.items()}, "sides": sides}
    results["scenarios"].append(entry)
    print(f"\n== {sc.name}: {sc.description}", flush=True)
    if not sides["silt"]["available"]:
        print(f"   silt: not available ({sides['silt']['reason']})", flush=True)
    safe = sc.name.replace("/", "__")
    if sc.match_files:
        print("   delta-rs first in every repetition; silt at delta-rs's file count", flush=True)
    for rep in range(ctx.prof["reps"]):
        order = list(SIDES) if rep % 2 == 0 else list(reversed(SIDES))
        if sc.match_files:
            order = ["delta-rs", "silt"]
        for side in order:
            if not sides[side]["available"]:
                continue
            run_dir = ctx.runs / safe / f"{side}-rep{rep}"
            shutil.rmtree(run_dir, ignore_errors=True)
            run_dir.mkdir(parents=True)
            spec = sc.spec(run_dir)
            if entry["op"] is None:
                entry["op"] = {k: v for k, v in spec.items() if k not in ("table", "source")}
            target = None
            if sc.match_files:
                target = (spec["target_size"], "the scenario's target size (--zorder-target-size)")
                if side == "silt":
                    target = match_files(sc, sides["delta-rs"], rep, spec)
                    spec["target_size"] = target[0]
                print(f"   rep {rep} {side:8s} target size {target[0]:,} bytes: {target[1]}", flush=True)
            if side == "silt":
                if sc.silt_setup:
                    subprocess.run(sc.silt_setup(spec, ctx), check=True, capture_output=True)
                argv = scenarios.silt_command(spec, ctx)
            else:
                spec_path = run_dir / "op.json"
                spec_path.write_text(json.dumps(spec))
                argv = [ctx.python, CHILD, "op", spec_path]
            before = table_files(spec.get("table"))
            os.sync()  # start each run without the previous run's dirty pages pending
            run = run_measured(argv, ctx.logs / safe / f"{side}-rep{rep}")
            # Bytes of the files the run wrote into the table (data and deletion vector files;
            # not the log).
            run["written_bytes"] = sum(size for p, size in table_files(spec.get("table")).items()
                                       if p not in before)
            run.update(side=side, rep=rep, ok=False, error=None, inner_op_s=None)
            if target is not None:
                run.update(target_size=target[0], target_size_reason=target[1])
            if run["exit_code"] != 0:
                run["error"] = f"exit code {run['exit_code']}"
            else:
                # Both sides print one JSON line last: the deltalake child its op time and
                # metrics, `silt --json` the job result with Delta's operation metrics.
                try:
                    out = json.loads(run["stdout_tail"].strip().splitlines()[-1])
                    run["engine_metrics"] = out.get("metrics")
                    run["inner_op_s"] = out.get("op_s")
                except (ValueError, IndexError, AttributeError):
                    pass
                try:
                    info, problems = verify(ctx, spec["table"], sc.expect, sc.stats_cols)
                    run["output"] = {"rows": info["rows"], "files": len(info["files"]), "version": info["version"],
                                     "bytes": sum(f["size"] for f in info["files"]),
                                     "partitions": info["partitions"]}
                    run["ok"] = not problems
                    run["error"] = "; ".join(problems) or None
                    if run["ok"] and rep == 0 and sc.analyze:
                        analyze(ctx, results, sc, side, info, spec)
                except ChildError as e:
                    run["error"] = f"verification failed: {e}"
            if run["ok"]:
                run.pop("stderr_tail", None)
            run.pop("stdout_tail", None)
            status = "ok" if run["ok"] else f"FAILED ({run['error']})"
            files = f", {run['output']['files']} files" if run.get("output") else ""
            print(f"   rep {rep} {side:8s} wall {run['wall_s']:7.2f}s cpu {run['cpu_s']:7.2f}s "
                  f"rss {run['peak_rss_mib']:8.1f} MiB  {status}{files}", flush=True)
            if not run["ok"]:
                results["failed"] = True
                results["errors"].append(f"{sc.name} {side} rep {rep}: {run['error']}")
                if run.get("stderr_tail"):
                    print("     stderr: " + run["stderr_tail"][-800:].replace("\n", "\n     "), flush=True)
            sides[side]["runs"].append(run)
            if not args.keep:
                retire_run_dir(ctx, run_dir, run.get("written_bytes") or 0)
    # A side that never produced an analysed output still needs its row in the analyses.
    if sc.analyze:
        for side in SIDES:
            if not sides[side]["available"]:
                analyze_unavailable(results, sc, side, sides[side]["reason"])
    if sc.match_files:
        by_rep = {s: {r["rep"]: r for r in sides[s]["runs"] if r["ok"]} for s in SIDES}
        for rep in sorted(set(by_rep["silt"]) & set(by_rep["delta-rs"])):
            a, b = by_rep["silt"][rep]["output"]["files"], by_rep["delta-rs"][rep]["output"]["files"]
            if a != b:
                print(f"   note: rep {rep}: silt wrote {a} files, delta-rs {b}", flush=True)


LAYOUT_LABEL = {**{name: f"after {label}" for name, _, label in LOAD_SCENARIOS},
                "compaction": "after compaction", "zorder": "after Z-order",
                "zorder/long_prefix": "after Z-order, long prefix"}
BEFORE_LABEL = {"store_sales": "before Z-order (generated)",
                "store_sales_prefix": "before Z-order, long prefix (written by deltalake)"}


def analyze(ctx, results, sc, side, info, spec):
    what = sc.analyze
    files = info["files"]
    results["skipping"].append({"layout": LAYOUT_LABEL[what], "side": side, "available": True,
                                "files": len(files), "rows": info["rows"],
                                "predicates": layout.skipping(files)})
    if what == "compaction":
        results["file_sizes"].append((f"after OPTIMIZE ({side})", {"available": True, "sizes": layout.sizes(files)}))
    if sc.group == "zorder":
        probes = {c: p["values"] for c, p in ctx.probes[sc.params["data"]].items()}
        results["clustering"]["tables"].append((f"{LAYOUT_LABEL[what]} ({side})", {
            "available": True, "scenario": sc.name, "side": side, "columns": sc.zorder_cols,
            "files": len(files), "target_size": spec.get("target_size"),
            "quality": layout.clustering(files, sc.zorder_cols, probes)}))


def analyze_unavailable(results, sc, side, reason):
    what = sc.analyze
    results["skipping"].append({"layout": LAYOUT_LABEL[what], "side": side, "available": False, "reason": reason})
    if what == "compaction":
        results["file_sizes"].append((f"after OPTIMIZE ({side})", {"available": False, "reason": reason}))
    if sc.group == "zorder":
        results["clustering"]["tables"].append((f"{LAYOUT_LABEL[what]} ({side})", {
            "available": False, "reason": reason, "scenario": sc.name, "side": side, "columns": sc.zorder_cols}))


def baseline_analyses(ctx, results):
    """Layouts both engines start from (the generator's files, converted in place)."""
    ss = ctx.data_sets.get("store_sales")
    if ss:
        files = ss["info"]["files"]
        results["skipping"].insert(0, {"layout": "generated (Z-order/DELETE/UPDATE input)", "side": "silt-datagen",
                                       "available": True, "files": len(files), "rows": ss["info"]["rows"],
                                       "predicates": layout.skipping(files)})
    # Clustering of each Z-order input, with the probes of its scenarios.
    for i, z in enumerate(z for z in ZORDER_CASES if z.data in ctx.probes):
        d = ctx.data_sets[z.data]
        files = d["info"]["files"]
        probes = {c: p["values"] for c, p in ctx.probes[z.data].items()}
        results["clustering"]["tables"].insert(i, (BEFORE_LABEL[z.data], {
            "available": True, "scenario": z.name, "side": "input", "columns": list(z.columns),
            "files": len(files), "quality": layout.clustering(files, list(z.columns), probes)}))
    small = ctx.data_sets.get("store_sales_small")
    if small:
        results["file_sizes"].insert(0, ("before OPTIMIZE (generated)", {
            "available": True, "sizes": layout.sizes(small["info"]["files"])}))


def portable(obj, prefixes):
    """The results as committed: machine paths replaced by placeholders (<workdir>, <repo>,
    ~) and floats rounded to 4 decimals."""
    if isinstance(obj, dict):
        return {k: portable(v, prefixes) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [portable(v, prefixes) for v in obj]
    if isinstance(obj, float):
        return round(obj, 4)
    if isinstance(obj, str):
        for prefix, name in prefixes:
            obj = obj.replace(prefix, name)
    return obj


def main(argv=None):
    args, prof = parse_args(argv)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out_dir = Path(args.out_dir) if args.out_dir else REPO / "bench-results" / stamp
    patterns = [p.strip() for p in args.scenarios.split(",") if p.strip()]
    if args.only != "delta-rs" and not (Path(args.silt_bin).is_file() and os.access(args.silt_bin, os.X_OK)):
        print(f"error: silt binary not found at {args.silt_bin}; build it with "
              "`cargo build -p silt --release`, pass --silt-bin, or use --only delta-rs", file=sys.stderr)
        return 2
    if args.python is None:
        args.python = str(ensure_venv())
    created = args.workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="silt-bench-")) if created else Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"workdir: {workdir}", flush=True)
    ctx = Ctx(args, prof, workdir)
    ss_rows = round(2_880_404 * prof["scale"])
    wr_rows = round(71_763 * prof["scale"])
    results = {
        "suite": "silt benches/bench.py", "schema_version": 1, "timestamp": stamp, "profile": args.profile,
        "command": ["benches/bench.py", *(argv if argv is not None else sys.argv[1:])],
        "params": {**prof, "seed": args.seed, "executors": args.executors, "executor_memory": args.executor_memory,
                   "only": args.only, "scenarios": patterns,
                   "rows": {"store_sales": ss_rows, "web_returns": wr_rows}},
        "ratio_direction": "silt / delta-rs (below 1: silt used less)",
        "machine": machine(), "versions": {}, "data": {}, "scenarios": [], "skipping": [],
        "clustering": {"columns": ZORDER_COLS, "tables": [], "probes": {}}, "file_sizes": [],
        "failed": False, "errors": [],
    }
    try:
        results["versions"] = ctx.child("versions", {})
        results["versions"]["silt"] = tool_version(args.silt_bin) if args.only != "delta-rs" else None
        results["versions"].update({f"git_{k}": v for k, v in git_info(REPO).items()})
        for sc in build_scenarios(ctx, patterns):
            run_scenario(ctx, sc, results)
        results["versions"]["silt-datagen"] = ctx.info.get("silt-datagen")
        results["data"] = {k: {kk: vv for kk, vv in v.items() if kk not in ("info", "path")}
                           for k, v in getattr(ctx, "data_sets", {}).items()}
        results["clustering"]["probes"] = {
            k: {"n": CLUSTERING_PROBES, "seed": args.seed,
                "rule": "random.Random(f'clustering:{seed}:{column}'): integer columns uniformly from "
                        "[min, max] of the starting table's values, string columns uniformly from its "
                        "distinct non-null values (with replacement)",
                "columns": v} for k, v in ctx.probes.items()}
        baseline_analyses(ctx, results)
    except Exception as e:  # noqa: BLE001 - a setup failure is reported in the results too
        results["failed"] = True
        results["errors"].append(f"{type(e).__name__}: {e}")
        print(f"error: {e}", file=sys.stderr)
    finally:
        if created and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        elif not args.keep:
            # The run directories kept until now (see retire_run_dir).
            shutil.rmtree(workdir / "runs", ignore_errors=True)

    report.finish(results)
    results["parent_peak_rss_mib"] = parent_peak_rss_mib()
    prefixes = [(str(workdir.resolve()), "<workdir>"), (str(workdir), "<workdir>"), (str(REPO), "<repo>"),
                (str(Path.home()), "~")]
    results = portable(results, prefixes)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    md = report.markdown(results)
    (out_dir / "results.md").write_text(md)
    if not args.no_charts:
        import subprocess

        p = subprocess.run([str(args.python), str(CHARTS), str(out_dir / "results.json"), str(out_dir)],
                           capture_output=True, text=True)
        if p.returncode != 0:
            results["failed"] = True
            results["errors"].append(f"charts failed: {p.stderr.strip()[-1000:]}")
            (out_dir / "results.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
            print(f"error: charts failed: {p.stderr[-2000:]}", file=sys.stderr)
        else:
            print(p.stdout.strip(), flush=True)
    print("\n" + md)
    print(f"results: {out_dir}")
    return 1 if results["failed"] else 0
