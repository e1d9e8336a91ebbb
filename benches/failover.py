#!/usr/bin/env python3
"""Coordinator failover benchmark: a leader killed (SIGKILL) in the middle of a job.

    .venv/bin/python benches/failover.py [--rows 5000000] [--lease-ttl-ms 2000] [--reps 3]

Per repetition, on loopback: a real etcd, two `silt coordinator --etcd` processes, two
executors given both coordinators, and `silt write` of a store_sales source (silt-datagen)
into a new table, given both coordinators. First the job runs undisturbed (its time is the
baseline); then it runs again into another table and the leader is killed once the first
task succeeded. Measured from the kill: until the standby leads (takeover: lease TTL plus
the delay to notice and take over; target TTL + 1 s or less), and until the job is done
(the client, following the job to the new leader, exits). Work redone: the new leader runs
the job again from its start, so the time from the takeover to the job's end is compared
with the baseline. Checks: the job succeeded with exactly one commit holding every row.

Binaries: $CARGO_TARGET_DIR (default ~/.cache/silt-target)/release/{silt,silt-datagen}
(build them first: cargo build --release -p silt -p silt-benches). Writes JSON and Markdown
to --out-dir.
"""

import argparse
import json
import os
import queue
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Proc:
    """A process whose stderr lines are timestamped into a queue (and kept)."""

    def __init__(self, name, argv, env=None, stdout=subprocess.DEVNULL):
        self.name, self.lines, self.seen = name, queue.Queue(), []
        self.p = subprocess.Popen(argv, stdout=stdout, stderr=subprocess.PIPE, text=True,
                                  env={**os.environ, **(env or {})})
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.p.stderr:
            self.lines.put((time.monotonic(), line.rstrip()))

    def wait_line(self, needle, timeout):
        deadline = time.monotonic() + timeout
        for t, line in self.seen:
            if needle in line:
                return t, line
        while time.monotonic() < deadline:
            try:
                t, line = self.lines.get(timeout=0.05)
            except queue.Empty:
                continue
            self.seen.append((t, line))
            if needle in line:
                return t, line
        raise TimeoutError(f"{self.name}: no `{needle}` in {timeout}s; last lines: {[l for _, l in self.seen[-5:]]}")

    def count(self, needle):
        while True:
            try:
                self.seen.append(self.lines.get_nowait())
            except queue.Empty:
                break
        return sum(needle in l for _, l in self.seen)

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
        self.p.wait()

    def dump(self, path, t0):
        """Writes the stderr lines seen, each with its time relative to `t0`."""
        self.count("")
        path.write_text("".join(f"{t - t0:+8.3f} {line}\n" for t, line in self.seen))


def start_cluster(silt, work, ttl_ms):
    client, peer = free_port(), free_port()
    url, peer_url = f"http://127.0.0.1:{client}", f"http://127.0.0.1:{peer}"
    etcd = Proc("etcd", ["etcd", "--name", "b", "--data-dir", str(work / "etcd"),
                         "--listen-client-urls", url, "--advertise-client-urls", url,
                         "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
                         "--initial-cluster", f"b={peer_url}"])
    etcd.wait_line("ready to serve client requests", 30)
    coords = []
    for name in ("A", "B"):
        c = Proc(name, [silt, "coordinator", "--listen", "127.0.0.1:0", "--etcd", url,
                        "--cluster-name", "bench", "--lease-ttl-ms", str(ttl_ms)],
                 env={"SILT_LOG": "info"})
        _, line = c.wait_line("listening on", 30)
        addr = line.split("listening on ")[1].split()[0].rstrip(":")
        coords.append((c, f"http://{addr}"))
        if name == "A":
            c.wait_line("leads cluster", 30)
    both = ",".join(u for _, u in coords)
    executors = []
    for i in range(2):
        e = Proc(f"exec{i}", [silt, "executor", "--coordinator", both, "--slots", "1",
                              "--memory-limit", str(2 << 30), "--name", f"bench{i}"],
                 env={"SILT_LOG": "info"})
        e.wait_line("registered with coordinator", 30)
        executors.append(e)
    return etcd, coords, executors, both


def write(silt, table, source, both):
    return Proc("write", [silt, "write", "--table", str(table), "--source", str(source), "--format",
                          "parquet", "--json", "-q", "--coordinator", both], stdout=subprocess.PIPE)


def table_facts(table):
    code = ("import json,sys,deltalake; t=deltalake.DeltaTable(sys.argv[1]); "
            "print(json.dumps({'version': t.version(), 'rows': t.to_pyarrow_dataset().count_rows()}))")
    out = subprocess.run([sys.executable, "-c", code, str(table)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def repetition(silt, source, rows, ttl_ms, work, logs):
    etcd, coords, executors, both = start_cluster(silt, work, ttl_ms)
    killed = time.monotonic()
    try:
        t0 = time.monotonic()
        base = write(silt, work / "base", source, both)
        out, _ = base.p.communicate(timeout=600)
        baseline = time.monotonic() - t0
        if base.p.returncode != 0:
            raise RuntimeError(f"baseline job failed: {out}")
        before = sum(e.count("task succeeded") for e in executors)
        job = write(silt, work / "failover", source, both)
        start = time.monotonic()
        # Kill the leader once a task of the job has succeeded (work that will be redone).
        while sum(e.count("task succeeded") for e in executors) < before + 1:
            if time.monotonic() - start > 300:
                raise RuntimeError("no task succeeded")
            time.sleep(0.01)
        done_before = sum(e.count("task succeeded") for e in executors) - before
        (leader, _), (standby, _) = coords
        killed = time.monotonic()
        leader.kill()
        led, line = standby.wait_line("leads cluster", 60)
        out, _ = job.p.communicate(timeout=600)
        finished = time.monotonic()
        if job.p.returncode != 0:
            raise RuntimeError(f"job failed after the failover: {out}")
        result = json.loads(out.strip().splitlines()[-1])
        facts = table_facts(work / "failover")
        ok = result["state"] == "succeeded" and facts["version"] == 0 and facts["rows"] == rows
        return {
            "baseline_s": round(baseline, 3),
            "killed_after_s": round(killed - start, 3),
            "tasks_done_before_kill": done_before,
            "takeover_s": round(led - killed, 3),
            "kill_to_done_s": round(finished - killed, 3),
            "rerun_s": round(finished - led, 3),
            "total_s": round(finished - start, 3),
            "taken_over": line.split("jobs taken over: ")[-1],
            "exactly_once": ok,
            "version": facts["version"],
            "rows": facts["rows"],
        }
    finally:
        for p in [*executors, *(c for c, _ in coords), etcd]:
            p.kill()
        # Each process's lines, timed from the kill.
        logs.mkdir(parents=True, exist_ok=True)
        for p in [*executors, *(c for c, _ in coords)]:
            p.dump(logs / f"{p.name}.log", killed)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=5_000_000)
    ap.add_argument("--files", type=int, default=8)
    ap.add_argument("--lease-ttl-ms", type=int, default=2000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--workdir", help="scratch directory (default: a temporary one, removed)")
    ap.add_argument("--out-dir", default=str(REPO / "benches" / "results"))
    args = ap.parse_args()
    target = Path(os.environ.get("CARGO_TARGET_DIR", Path.home() / ".cache" / "silt-target"))
    silt, datagen = target / "release" / "silt", target / "release" / "silt-datagen"
    for b in (silt, datagen):
        if not b.exists():
            sys.exit(f"{b} not found: cargo build --release -p silt -p silt-benches")
    work = Path(args.workdir or tempfile.mkdtemp(prefix="silt-failover-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        source = work / "source"
        subprocess.run([datagen, "store_sales", "--rows", str(args.rows), "--seed", str(args.seed),
                        "--files", str(args.files), "--out", source, "--overwrite"],
                       check=True, capture_output=True)
        reps = []
        for i in range(args.reps):
            rep_dir = work / f"rep{i}"
            shutil.rmtree(rep_dir, ignore_errors=True)
            rep_dir.mkdir()
            r = repetition(str(silt), source, args.rows, args.lease_ttl_ms, rep_dir,
                           Path(args.out_dir) / "failover-logs" / f"rep{i}")
            print(f"rep {i}: {json.dumps(r)}", flush=True)
            reps.append(r)
            shutil.rmtree(rep_dir, ignore_errors=True)
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    med = lambda k: statistics.median(r[k] for r in reps)  # noqa: E731
    ttl = args.lease_ttl_ms / 1000
    summary = {
        "rows": args.rows, "lease_ttl_s": ttl, "reps": reps,
        "median": {k: med(k) for k in ("baseline_s", "takeover_s", "kill_to_done_s", "rerun_s")},
        "takeover_within_ttl_plus_1s": all(r["takeover_s"] <= ttl + 1 for r in reps),
        "exactly_once": all(r["exactly_once"] for r in reps),
    }
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "failover.json").write_text(json.dumps(summary, indent=1))
    m = summary["median"]
    md = (f"| failover | {args.rows:,} rows, lease {ttl:g} s, {len(reps)} reps | "
          f"{m['takeover_s']:.2f} s | {m['kill_to_done_s']:.2f} s | {m['rerun_s']:.2f} s vs "
          f"{m['baseline_s']:.2f} s undisturbed | {'yes' if summary['exactly_once'] else 'NO'} |")
    (out / "failover.md").write_text(
        "| benchmark | input | kill → new leader (median) | kill → job done | rerun vs undisturbed job | exactly one commit, every row |\n"
        "|---|---|---|---|---|---|\n" + md + "\n")
    print(md)
    return 0 if summary["exactly_once"] else 1


if __name__ == "__main__":
    sys.exit(main())
