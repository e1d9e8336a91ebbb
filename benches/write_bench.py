#!/usr/bin/env python3
"""Write benchmark: silt vs delta-rs writing the same TPC-DS store_sales data, same run.

See benches/README.md. Summary:

1. Generate the source once with silt-datagen (release): --rows rows in --files Parquet files.
2. For each repetition (alternating which side goes first), each side writes the whole
   source to a fresh Delta table in its own child process:
     silt:     <silt-bin> write --table T --source SRC --format parquet --mode overwrite
               --executors N
     delta-rs: python -c "deltalake.write_deltalake(T, <pyarrow dataset of SRC>,
               mode='overwrite')"
   Each child is measured with os.wait4: wall (time.monotonic), CPU (user+sys) and peak RSS.
3. Each output table is verified by another child with deltalake (row count and
   sum(ss_net_paid) equal to the source's); a wrong output is a failure, not a timing.
4. Prints a Markdown summary and writes JSON (--out). Exit status 1 if anything failed.

This process deliberately never imports pyarrow or deltalake: on Linux a child's ru_maxrss
starts at its parent's peak RSS (vfork + exec records the parent's high-water mark), so a
big parent would inflate every child's measured memory. Heavy work runs in children only.
"""

import argparse
import datetime as dt
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SIDES = ("silt", "delta-rs")

DELTA_RS_WRITE = """
import sys
import deltalake
import pyarrow.dataset as ds
src, dst = sys.argv[1], sys.argv[2]
# write_deltalake takes Arrow C-stream exportables; a scanner's reader streams the files
# (reading is part of the timed work, as it is for silt).
reader = ds.dataset(src, format="parquet").scanner().to_reader()
deltalake.write_deltalake(dst, reader, mode="overwrite")
"""

SOURCE_SUMMARY = """
import json, sys
import pyarrow.compute as pc
import pyarrow.dataset as ds
d = ds.dataset(sys.argv[1], format="parquet")
rows, total = 0, None
for b in d.to_batches(columns=["ss_net_paid"]):
    rows += b.num_rows
    s = pc.sum(b.column(0)).as_py()
    if s is not None:
        total = s if total is None else total + s
print(json.dumps({"rows": rows, "sum_net_paid": str(total), "columns": d.schema.names}))
"""

VERIFY_TABLE = """
import json, sys
import deltalake
import pyarrow.compute as pc
dt = deltalake.DeltaTable(sys.argv[1])
names = [f.name for f in dt.schema().fields]
t = dt.to_pyarrow_table(columns=["ss_net_paid"])
s = pc.sum(t.column(0)).as_py()
print(json.dumps({"rows": t.num_rows, "sum_net_paid": str(s), "columns": names,
                  "version": dt.version(), "files": len(dt.file_uris())}))
"""

VERSIONS = """
import json, deltalake, pyarrow
print(json.dumps({"deltalake": deltalake.__version__, "pyarrow": pyarrow.__version__}))
"""


def default_target_dir():
    return Path(os.environ.get("CARGO_TARGET_DIR") or REPO / "target")


def meminfo_total_bytes():
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def run_measured(argv, log_prefix, env=None):
    """Runs argv as a child; returns dict with exit status, wall/cpu seconds, peak RSS."""
    out_path, err_path = Path(f"{log_prefix}.stdout"), Path(f"{log_prefix}.stderr")
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        started = time.monotonic()
        proc = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.monotonic() - started
    proc.returncode = os.waitstatus_to_exitcode(status)  # already reaped; keep Popen quiet
    return {
        "argv": [str(a) for a in argv],
        "exit_code": proc.returncode,
        "wall_s": wall,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "user_s": usage.ru_utime,
        "sys_s": usage.ru_stime,
        "peak_rss_mib": usage.ru_maxrss / 1024.0,  # KiB on Linux
        "stdout": out_path.read_text(errors="replace")[-4000:],
        "stderr_tail": err_path.read_text(errors="replace")[-4000:],
    }


def run_json(argv):
    """Runs a helper child and parses its last stdout line as JSON."""
    p = subprocess.run(argv, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"{argv[0]} ... failed ({p.returncode}): {p.stderr[-2000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def parse_kv(line):
    return dict(part.split("=", 1) for part in line.split() if "=" in part)


def build_datagen(args):
    if args.datagen_bin:
        return Path(args.datagen_bin)
    target = default_target_dir()
    if not args.no_build:
        env = dict(os.environ, CARGO_TARGET_DIR=str(target))
        print(f"building silt-datagen (release) in {target} ...", flush=True)
        subprocess.run(["cargo", "build", "-p", "silt-benches", "--release", "--bin", "silt-datagen"],
                       cwd=REPO, env=env, check=True)
    return target / "release" / "silt-datagen"


def tool_version(binary):
    try:
        p = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=30)
        return (p.stdout or p.stderr).strip() or None
    except (OSError, subprocess.TimeoutExpired):
        return None


def summarize(values):
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def fmt(x, digits=2):
    return "-" if x is None else f"{x:.{digits}f}"


def main():
    cores = os.cpu_count() or 1
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=5_000_000, help="store_sales rows (default 5,000,000)")
    ap.add_argument("--reps", type=int, default=3, help="repetitions per side (default 3)")
    ap.add_argument("--executors", type=int, default=cores, help=f"silt executors (default cores = {cores})")
    ap.add_argument("--files", type=int, default=2 * cores, help=f"source files (default 2 x cores = {2 * cores})")
    ap.add_argument("--seed", type=int, default=1, help="silt-datagen seed (default 1)")
    ap.add_argument("--only", choices=SIDES, help="run one side only")
    ap.add_argument("--silt-bin", default=str(default_target_dir() / "release" / "silt"),
                    help="silt binary (default $CARGO_TARGET_DIR/release/silt)")
    ap.add_argument("--datagen-bin", help="silt-datagen binary (default: cargo build --release, then use it)")
    ap.add_argument("--no-build", action="store_true", help="do not run cargo build for silt-datagen")
    ap.add_argument("--source", help="use this existing store_sales Parquet directory instead of generating")
    ap.add_argument("--python", default=sys.executable, help="python for the delta-rs side and checks")
    ap.add_argument("--workdir", help="work directory (default: a new temp dir under /tmp)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (source, tables, logs)")
    ap.add_argument("--out", help="JSON results path (default bench-results/write-<timestamp>.json)")
    args = ap.parse_args()
    if args.reps < 1 or args.rows < 1 or args.executors < 1 or args.files < 1:
        ap.error("--rows, --reps, --executors and --files must be positive")

    sides = [args.only] if args.only else list(SIDES)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out_path = Path(args.out) if args.out else REPO / "bench-results" / f"write-{stamp}.json"
    silt_bin = Path(args.silt_bin)
    if "silt" in sides and not (silt_bin.is_file() and os.access(silt_bin, os.X_OK)):
        print(f"error: silt binary not found at {silt_bin}; build it with "
              f"`cargo build -p silt --release` or pass --silt-bin (or use --only delta-rs)", file=sys.stderr)
        return 2

    created_workdir = args.workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="silt-write-bench-", dir="/tmp")) if created_workdir else Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    logs = workdir / "logs"
    logs.mkdir(exist_ok=True)
    print(f"workdir: {workdir}", flush=True)

    result = {
        "benchmark": "write store_sales (overwrite) from Parquet",
        "timestamp": stamp,
        "params": {"rows": args.rows, "reps": args.reps, "executors": args.executors,
                   "files": args.files, "seed": args.seed, "sides": sides},
        "machine": {"cores": cores, "memory_bytes": meminfo_total_bytes(), "cpu": cpu_model(),
                    "kernel": platform.release(), "python": platform.python_version()},
        "versions": {},
        "runs": [],
    }
    failed = False
    try:
        result["versions"] = run_json([args.python, "-c", VERSIONS])
        if "silt" in sides:
            result["versions"]["silt"] = tool_version(silt_bin)

        # 1. Source data.
        if args.source:
            src = Path(args.source)
        else:
            datagen = build_datagen(args)
            result["versions"]["silt-datagen"] = tool_version(datagen)
            src = workdir / "source"
            gen = run_measured([datagen, "store_sales", "--rows", str(args.rows), "--seed", str(args.seed),
                                "--out", src, "--files", str(args.files), "--overwrite"], logs / "datagen")
            if gen["exit_code"] != 0:
                raise RuntimeError(f"silt-datagen failed: {gen['stderr_tail']}")
            result["datagen"] = {**parse_kv(gen["stdout"].strip().splitlines()[-1]),
                                 "wall_s": gen["wall_s"], "peak_rss_mib": gen["peak_rss_mib"]}
            print(f"source: {gen['stdout'].strip()}", flush=True)
        expected = run_json([args.python, "-c", SOURCE_SUMMARY, str(src)])
        if expected["rows"] != args.rows:
            raise RuntimeError(f"source {src} has {expected['rows']} rows, --rows says {args.rows}")
        result["source"] = {"path": str(src), "rows": expected["rows"], "sum_net_paid": expected["sum_net_paid"],
                            "bytes": sum(p.stat().st_size for p in src.glob("*.parquet"))}

        # 2. Timed runs, alternating order.
        for rep in range(args.reps):
            order = sides if rep % 2 == 0 else list(reversed(sides))
            for side in order:
                table = workdir / f"{side}-rep{rep}"
                if table.exists():
                    shutil.rmtree(table)
                if side == "silt":
                    argv = [silt_bin, "write", "--table", table, "--source", src, "--format", "parquet",
                            "--mode", "overwrite", "--executors", str(args.executors)]
                else:
                    argv = [args.python, "-c", DELTA_RS_WRITE, src, table]
                os.sync()  # start each run without the previous run's dirty pages pending
                run = run_measured(argv, logs / f"{side}-rep{rep}")
                run.update(side=side, rep=rep, ok=False, error=None)
                if run["exit_code"] != 0:
                    run["error"] = f"exit code {run['exit_code']}"
                else:
                    try:
                        got = run_json([args.python, "-c", VERIFY_TABLE, str(table)])
                        run["verify"] = got
                        problems = []
                        if got["rows"] != expected["rows"]:
                            problems.append(f"rows {got['rows']} != {expected['rows']}")
                        if got["sum_net_paid"] != expected["sum_net_paid"]:
                            problems.append(f"sum(ss_net_paid) {got['sum_net_paid']} != {expected['sum_net_paid']}")
                        if got["columns"] != expected["columns"]:
                            problems.append(f"columns {got['columns']} != {expected['columns']}")
                        run["ok"] = not problems
                        run["error"] = "; ".join(problems) or None
                    except Exception as e:  # noqa: BLE001 - any verification error fails the run
                        run["error"] = f"verification failed: {e}"
                    if table.exists():
                        run["table_bytes"] = sum(p.stat().st_size for p in table.rglob("*") if p.is_file())
                status = "ok" if run["ok"] else f"FAILED ({run['error']})"
                print(f"rep {rep} {side:8s} wall {run['wall_s']:7.2f}s cpu {run['cpu_s']:7.2f}s "
                      f"rss {run['peak_rss_mib']:8.1f} MiB  {status}", flush=True)
                if not run["ok"]:
                    failed = True
                    if run["stderr_tail"]:
                        print("  stderr tail: " + run["stderr_tail"][-800:].replace("\n", "\n  "), flush=True)
                result["runs"].append(run)
                if not args.keep and table.exists():
                    shutil.rmtree(table)
    except Exception as e:  # noqa: BLE001 - report setup failures in the JSON too
        failed = True
        result["error"] = str(e)
        print(f"error: {e}", file=sys.stderr)
    finally:
        if created_workdir and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)

    # 3. Summary.
    summary = {}
    for side in sides:
        ok = [r for r in result["runs"] if r["side"] == side and r["ok"]]
        summary[side] = {
            "ok_runs": len(ok),
            "runs": sum(1 for r in result["runs"] if r["side"] == side),
            "wall_s": summarize([r["wall_s"] for r in ok]),
            "cpu_s": summarize([r["cpu_s"] for r in ok]),
            "peak_rss_mib": summarize([r["peak_rss_mib"] for r in ok]),
        }
    ratios = []
    if len(sides) == 2:
        for rep in range(args.reps):
            pair = {r["side"]: r for r in result["runs"] if r["rep"] == rep and r["ok"]}
            if len(pair) == 2 and pair["silt"]["wall_s"] > 0:
                ratios.append(pair["delta-rs"]["wall_s"] / pair["silt"]["wall_s"])
    summary["speedup_delta_rs_over_silt_wall"] = summarize(ratios)
    summary["paired_reps"] = len(ratios)
    result["summary"] = summary
    result["parent_peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    result["failed"] = failed

    m = result["machine"]
    mem = f"{m['memory_bytes'] / 2**30:.1f} GiB" if m["memory_bytes"] else "?"
    lines = [
        f"## Write benchmark: store_sales, {args.rows:,} rows x 23 columns, overwrite",
        "",
        f"machine: {m['cores']} cores ({m['cpu'] or '?'}), {mem} RAM, Linux {m['kernel']}; "
        f"executors={args.executors}, source files={args.files}, reps={args.reps}",
        f"versions: deltalake {result['versions'].get('deltalake', '?')}, "
        f"pyarrow {result['versions'].get('pyarrow', '?')}, "
        f"`silt --version`: {result['versions'].get('silt') or 'n/a'}",
        "",
        "| side | ok runs | wall median s | wall min s | wall max s | CPU median s | peak RSS median MiB |",
        "|---|---|---|---|---|---|---|",
    ]
    for side in sides:
        s = summary[side]
        w, c, r = s["wall_s"] or {}, s["cpu_s"] or {}, s["peak_rss_mib"] or {}
        lines.append(f"| {side} | {s['ok_runs']}/{s['runs']} | {fmt(w.get('median'))} | {fmt(w.get('min'))} | "
                     f"{fmt(w.get('max'))} | {fmt(c.get('median'))} | {fmt(r.get('median'), 1)} |")
    sp = summary["speedup_delta_rs_over_silt_wall"]
    if sp:
        lines += ["", f"speedup (delta-rs wall / silt wall, {len(ratios)} paired reps): "
                      f"median {sp['median']:.2f}x, min {sp['min']:.2f}x, max {sp['max']:.2f}x"]
    elif len(sides) == 2:
        lines += ["", "speedup: n/a (no rep where both sides succeeded)"]
    if failed:
        lines += ["", "**FAILED**: " + (result.get("error") or "see failed runs above")]
    print("\n".join(lines))

    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"\nresults: {out_path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
