#!/usr/bin/env python3
"""Static checks of the Kubernetes manifests in deploy/k8s (no cluster needed).

Usage: check_manifests.py SILT_BINARY MANIFEST...

For every container running silt: each `--flag` of its args is one the binary's subcommand
accepts (from `silt <subcommand> --help`); every `$(VAR)` in the args is defined in the
container's env; every port the args listen on (`--listen`, `--shuffle-listen`, `--http-listen`) is a
declared containerPort; an elected coordinator advertises a reachable URL and is probed on
/readyz and /healthz; executors and clients name every coordinator; an executor advertises a shuffle address other pods can reach (not
0.0.0.0/127.x) and a spill directory that is a mounted volume; every container authenticates
(SILT_TLS_CERT, SILT_TLS_KEY, SILT_TLS_CA and SILT_TOKEN_FILE name files on volumes mounted
from Secrets) and every coordinator URL it dials or advertises is https. Prints
{"checked": N} or the problems, one per line, and exits 1.
"""

import json
import re
import subprocess
import sys

import yaml


def help_flags(binary, sub, cache={}):
    if sub not in cache:
        out = subprocess.run([binary, sub, "--help"], capture_output=True, text=True, check=True).stdout
        cache[sub] = set(re.findall(r"(--[a-z0-9-]+)", out))
    return cache[sub]


def containers(doc):
    spec = doc.get("spec") or {}
    if doc.get("kind") == "CronJob":
        spec = (spec.get("jobTemplate") or {}).get("spec", {})
    spec = spec.get("template", {}).get("spec", {})
    return spec.get("containers", []), spec.get("volumes", [])


def main():
    binary, paths = sys.argv[1], sys.argv[2:]
    problems, checked = [], 0
    for path in paths:
        for doc in yaml.safe_load_all(open(path)):
            if not doc:
                continue
            cs, volumes = containers(doc)
            for c in cs:
                args = [str(a) for a in c.get("args", [])]
                if not args:
                    continue
                checked += 1
                where = f"{path}: {c.get('name')}"
                sub = args[0]
                known = help_flags(binary, sub)
                for a in args[1:]:
                    if a.startswith("--") and a.split("=")[0] not in known:
                        problems.append(f"{where}: `silt {sub}` has no option {a}")
                env = {e["name"] for e in c.get("env", [])}
                values = {e["name"]: e.get("value", "") for e in c.get("env", [])}
                mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
                secrets = {v["name"] for v in volumes if "secret" in v}
                for var in ("SILT_TLS_CERT", "SILT_TLS_KEY", "SILT_TLS_CA", "SILT_TOKEN_FILE"):
                    path = values.get(var, "")
                    mounted = [m for m in mounts if path.startswith(m.rstrip("/") + "/")]
                    if not path:
                        problems.append(f"{where}: {var} is not set (cluster traffic must be authenticated)")
                    elif not any(mounts[m] in secrets for m in mounted):
                        problems.append(f"{where}: {var}={path} is not on a volume mounted from a Secret")
                for flag in ("--coordinator", "--advertise"):
                    if flag in args:
                        for url in args[args.index(flag) + 1].split(","):
                            if not url.startswith("https://"):
                                problems.append(f"{where}: {flag} {url} is not https")
                for var in re.findall(r"\$\(([A-Z_]+)\)", " ".join(args)):
                    if var not in env:
                        problems.append(f"{where}: $({var}) is used but not in env")
                ports = {p["containerPort"] for p in c.get("ports", [])}
                for flag in ("--listen", "--shuffle-listen", "--http-listen"):
                    if flag in args:
                        port = int(args[args.index(flag) + 1].rsplit(":", 1)[1])
                        if port not in ports:
                            problems.append(f"{where}: {flag} port {port} is not a containerPort")
                if sub == "coordinator" and "--etcd" in args:
                    # Standbys refuse naming the leader's advertised URL: others must reach it.
                    adv = args[args.index("--advertise") + 1] if "--advertise" in args else ""
                    if not adv or re.search(r"//(0\.0\.0\.0|127\.|localhost)", adv):
                        problems.append(f"{where}: an elected coordinator must --advertise a URL other pods reach")
                    probes = [c.get(k, {}).get("httpGet", {}).get("path") for k in ("readinessProbe", "livenessProbe")]
                    if "--http-listen" not in args or probes != ["/readyz", "/healthz"]:
                        problems.append(f"{where}: probes must use /readyz and /healthz on --http-listen")
                if sub in ("executor", "compact-service", "write", "sql") and "--coordinator" in args:
                    urls = args[args.index("--coordinator") + 1].split(",")
                    if len(urls) < 2:
                        problems.append(f"{where}: give every coordinator (--coordinator A,B,C) so that it follows the leader")
                if sub == "executor":
                    if "--shuffle-advertise" not in args:
                        problems.append(f"{where}: executors must advertise their shuffle address")
                    else:
                        adv = args[args.index("--shuffle-advertise") + 1]
                        if adv.startswith(("0.0.0.0", "127.", "localhost")):
                            problems.append(f"{where}: shuffle address {adv} is not reachable from other pods")
                    if "--spill-dir" in args:
                        spill = args[args.index("--spill-dir") + 1]
                        mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
                        names = {v["name"] for v in volumes}
                        if mounts.get(spill) not in names:
                            problems.append(f"{where}: spill dir {spill} is not a mounted volume")
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return 1
    print(json.dumps({"checked": checked}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
