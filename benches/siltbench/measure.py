"""Measuring whole child processes, and describing the machine.

Each side of a run is one child process, measured from outside:

* wall time: time.monotonic() around spawn and wait (includes process start: the Python
  interpreter and imports for delta-rs, starting the embedded cluster for silt);
* CPU time: user + system from os.wait4's rusage of that child;
* peak RSS: ru_maxrss of that child (KiB on Linux).

The runner process itself must stay small and never import pyarrow, deltalake or numpy:
on Linux a child's ru_maxrss starts from its parent's peak RSS (exec keeps the old address
space's high-water mark, and with vfork that is the parent's), so a big parent would
inflate every child's memory figure. `parent_peak_rss_mib` in the results shows it stayed
small. Anything heavy runs in child.py.
"""

import json
import os
import platform
import resource
import subprocess
import tempfile
import time
from pathlib import Path


def run_measured(argv, log_prefix, env=None, cwd=None):
    """Runs argv as a child; returns exit status, wall/CPU seconds and peak RSS."""
    log_prefix = Path(log_prefix)
    log_prefix.parent.mkdir(parents=True, exist_ok=True)
    out_path = log_prefix.with_name(log_prefix.name + ".stdout")
    err_path = log_prefix.with_name(log_prefix.name + ".stderr")
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        started = time.monotonic()
        proc = subprocess.Popen([str(a) for a in argv], stdout=out, stderr=err,
                                stdin=subprocess.DEVNULL, env=env, cwd=cwd)
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
        "peak_rss_mib": usage.ru_maxrss / 1024.0,
        "stdout_tail": out_path.read_text(errors="replace")[-2000:],
        "stderr_tail": err_path.read_text(errors="replace")[-2000:],
    }


class ChildError(RuntimeError):
    pass


def run_child(python, script, op, spec, workdir):
    """Runs `python child.py op spec` and returns its JSON result (unmeasured helper)."""
    fd, spec_path = tempfile.mkstemp(prefix=f"{op}-", suffix=".json", dir=workdir)
    with os.fdopen(fd, "w") as f:
        json.dump(spec, f)
    try:
        p = subprocess.run([str(python), str(script), op, spec_path], capture_output=True, text=True)
    finally:
        os.unlink(spec_path)
    if p.returncode != 0:
        raise ChildError(f"child {op} failed ({p.returncode}): {p.stderr.strip()[-3000:]}")
    lines = p.stdout.strip().splitlines()
    if not lines:
        raise ChildError(f"child {op} printed nothing")
    return json.loads(lines[-1])


def parent_peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _first_line_with(path, prefix):
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(prefix):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def machine():
    mem_kib = _first_line_with("/proc/meminfo", "MemTotal")
    return {
        "cores": os.cpu_count() or 1,
        "memory_bytes": int(mem_kib.split()[0]) * 1024 if mem_kib else None,
        "cpu": _first_line_with("/proc/cpuinfo", "model name") or platform.processor() or None,
        "kernel": platform.release(),
        "os": platform.system(),
        "python": platform.python_version(),
        "load_avg_at_start": list(os.getloadavg()),
    }


def tool_version(binary):
    try:
        p = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=60)
        return (p.stdout or p.stderr).strip() or None
    except (OSError, subprocess.TimeoutExpired):
        return None


def git_info(repo):
    def git(*args):
        try:
            p = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=30)
            return p.stdout.strip() if p.returncode == 0 else None
        except (OSError, subprocess.TimeoutExpired):
            return None

    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": git("rev-parse", "HEAD"), "dirty": bool(status) if status is not None else None}
