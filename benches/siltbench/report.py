"""Summaries, ratios and the Markdown report of a results dict (pure Python)."""

import statistics

SIDES = ("silt", "delta-rs")
METRICS = ("wall_s", "cpu_s", "peak_rss_mib")
# Data files a DELETE/UPDATE/MERGE removed and added, from each engine's own metrics:
# delta-rs's snake_case numbers, silt's Delta operationMetrics (camelCase strings); MERGE
# names them numTargetFilesRemoved/-Added (num_target_files_removed/_added in delta-rs).
DML_GROUPS = ("delete", "update")
FILE_GROUPS = DML_GROUPS + ("merge",)
FILE_METRICS = {"files_removed": ("num_removed_files", "numRemovedFiles",
                                  "num_target_files_removed", "numTargetFilesRemoved"),
                "files_added": ("num_added_files", "numAddedFiles",
                                "num_target_files_added", "numTargetFilesAdded")}
# Data files and bytes each side's load wrote, from the verified table (the add actions).
LOAD_GROUPS = ("load",)
OUTPUT_METRICS = {"files_written": "files", "bytes_written": "bytes"}


def stats(values):
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def summarize_side(side):
    ok = [r for r in side["runs"] if r["ok"]]
    side["ok_runs"] = len(ok)
    side["summary"] = {m: stats([r[m] for r in ok]) for m in METRICS}
    inner = [r["inner_op_s"] for r in ok if r.get("inner_op_s") is not None]
    side["summary"]["inner_op_s"] = stats(inner)


def summarize_files(side):
    ok = [r for r in side["runs"] if r["ok"]]
    for key, names in FILE_METRICS.items():
        counts = []
        for r in ok:
            metrics = r.get("engine_metrics") or {}
            found = [metrics[n] for n in names if metrics.get(n) is not None]
            if found:
                counts.append(int(found[0]))
        side["summary"][key] = stats(counts)


def summarize_written(side):
    ok = [r for r in side["runs"] if r["ok"] and r.get("written_bytes") is not None]
    side["summary"]["written_bytes"] = stats([r["written_bytes"] for r in ok])


def summarize_output(side):
    ok = [r for r in side["runs"] if r["ok"] and r.get("output")]
    for key, name in OUTPUT_METRICS.items():
        side["summary"][key] = stats([r["output"][name] for r in ok if r["output"].get(name) is not None])


def ratios(scenario):
    """silt / delta-rs per repetition where both sides succeeded, for each metric."""
    sides = scenario["sides"]
    if not all(sides[s]["available"] for s in SIDES):
        return None
    by_rep = {s: {r["rep"]: r for r in sides[s]["runs"] if r["ok"]} for s in SIDES}
    reps = sorted(set(by_rep["silt"]) & set(by_rep["delta-rs"]))
    out = {}
    for m in METRICS:
        vals = [by_rep["silt"][k][m] / by_rep["delta-rs"][k][m] for k in reps if by_rep["delta-rs"][k][m] > 0]
        out[m] = stats(vals)
    return out


def finish(results):
    """Adds per-side summaries and ratios to every scenario."""
    for sc in results["scenarios"]:
        for s in SIDES:
            summarize_side(sc["sides"][s])
            if sc["group"] in FILE_GROUPS:
                summarize_files(sc["sides"][s])
                summarize_written(sc["sides"][s])
            if sc["group"] in LOAD_GROUPS:
                summarize_output(sc["sides"][s])
        sc["ratio_silt_over_delta_rs"] = ratios(sc)


def _f(x, digits=2):
    return "–" if x is None else f"{x:.{digits}f}"


def _median(side, metric, digits=2):
    if not side["available"]:
        return "n/a"
    s = side["summary"].get(metric)
    if s is None:
        return "FAILED" if side["runs"] else "–"
    return _f(s["median"], digits)


def _inner(side):
    s = side.get("summary", {}).get("inner_op_s") if side["available"] else None
    return "" if s is None else f" ({s['median']:.2f})"


def _ratio(r, metric):
    if r is None or r.get(metric) is None:
        return "n/a"
    s = r[metric]
    return f"**{s['median']:.2f}** ({s['min']:.2f}–{s['max']:.2f})"


def _files(side, key, scale=1, digits=None):
    if not side["available"]:
        return "n/a"
    s = side["summary"].get(key)
    if s is None:
        return "–"
    return f"{s['median'] / scale:g}" if digits is None else f"{s['median'] / scale:.{digits}f}"


def _name(sc):
    return f"merge {sc['label']}" if sc["group"] == "merge" else sc["name"]


def zorder_lines(results):
    """Z-order at the same file count: per scenario and column, the target size and files
    of each side's analysed result (repetition 0) and the files read per point predicate."""
    cl = results.get("clustering") or {}
    after = {}
    for _, entry in cl.get("tables") or []:
        if entry.get("side") in SIDES and entry.get("available"):
            after[(entry["scenario"], entry["side"])] = entry
    scs = [sc for sc in results["scenarios"] if sc["group"] == "zorder"]
    if not any((sc["name"], side) in after for sc in scs for side in SIDES):
        return []
    n = next((v.get("n") for v in (cl.get("probes") or {}).values()), None)
    lines = ["", "Z-order at the same file count: delta-rs runs first in each repetition, silt gets "
             "`--target-size` ceil(input bytes / delta-rs's files); files read per point predicate "
             f"`col = v`, mean over {n or '?'} seeded random probes per column (fraction of the table's "
             "files), repetition 0:", "",
             "| scenario | column | delta-rs target → files | silt target → files | delta-rs files per probe | "
             "silt files per probe | silt / delta-rs |",
             "|---|---|---|---|---|---|---|"]

    def target(e):
        if e is None:
            return "n/a"
        t = e.get("target_size")
        return f"{'?' if t is None else f'{t / 2**20:.2f} MiB'} → {e['files']}"

    def per_probe(e, c):
        q = (e or {}).get("quality", {}).get(c)
        return None if q is None else q

    for sc in scs:
        d, s_ = after.get((sc["name"], "delta-rs")), after.get((sc["name"], "silt"))
        for c in sc["params"]["columns"]:
            qd, qs = per_probe(d, c), per_probe(s_, c)
            cell = lambda q: "n/a" if q is None else f"{q['files_per_lookup']:g} ({q['lookup_fraction']:.3f})"
            ratio = ("–" if qd is None or qs is None or not qd["files_per_lookup"]
                     else f"**{qs['files_per_lookup'] / qd['files_per_lookup']:.2f}**")
            lines.append(f"| {sc['name']} | {c} | {target(d)} | {target(s_)} | {cell(qd)} | {cell(qs)} | {ratio} |")
    return lines


def markdown(results):
    m = results["machine"]
    v = results["versions"]
    p = results["params"]
    mem = f"{m['memory_bytes'] / 2**30:.1f} GiB" if m.get("memory_bytes") else "?"
    # MERGE upserts into the load rows (UPSERT_CASES): the only MERGEs with a target layout.
    upserts = [sc for sc in results["scenarios"] if sc["group"] == "merge" and sc["params"].get("target_layout")]
    lines = [
        f"### silt vs delta-rs ({results['profile']} profile, {results['timestamp']})",
        "",
        f"- scale: SF {p['scale']:g} for MERGE, Z-order, DELETE, UPDATE and query skipping "
        f"(store_sales {p['rows']['store_sales']:,} rows in {p['fact_files']} files, web_returns "
        f"{p['rows']['web_returns']:,} rows in {p['fact_files']} files); compaction input: "
        f"{p['compact_rows']:,} store_sales rows in {p['small_files']:,} files; load: {p['load_rows']:,} "
        f"store_sales rows from {p['load_files']} Parquet files",
        f"- machine: {m['cores']} cores ({m.get('cpu') or '?'}), {mem} RAM, Linux {m.get('kernel')}",
        f"- versions: silt `{v.get('silt') or 'n/a'}` (git {str(v.get('git_commit') or '?')[:10]}"
        f"{', dirty' if v.get('git_dirty') else ''}), deltalake {v.get('deltalake')}, "
        f"pyarrow {v.get('pyarrow')}; silt executors={p['executors']}, "
        f"executor memory={p['executor_memory'] / 2**30:g} GiB; {p['reps']} repetition(s), "
        "sides alternating (Z-order: delta-rs first, then silt at its file count)",
        "- ratio = silt / delta-rs per repetition, **median** (min–max): below 1 means silt "
        "used less time or memory. Times are whole processes (interpreter and imports for "
        "delta-rs, embedded cluster start for silt); (op) = the deltalake call alone, timed inside "
        "the process; n/a = silt does not have the operation yet.",
        "- MERGE scenarios (Delta's merge benchmark cases; full names in results.json): target "
        "`wr` = web_returns, `ss` = store_sales; `ins` = single insert-only, `multi-ins` = two "
        "insert clauses, `del` = delete-only, `upsert`, `upsert-chg` = update only changed rows "
        "(ours); f = fileMatchedFraction, m = rowMatchedFraction, n = rowNotMatchedFraction, "
        "c = changed fraction of the matches." + ("" if not upserts else " " + ", ".join(
            f"`{sc['label']}`" for sc in upserts) + " (ours): upserts into the load rows, below.")
        if any(sc["group"] == "merge" for sc in results["scenarios"]) else None,
        "",
        "| scenario | silt wall s | delta-rs wall s (op) | wall ratio | CPU ratio | silt RSS MiB | delta-rs RSS MiB | RSS ratio |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines = [line for line in lines if line is not None]
    for sc in results["scenarios"]:
        s, d = sc["sides"]["silt"], sc["sides"]["delta-rs"]
        r = sc.get("ratio_silt_over_delta_rs")
        lines.append(
            f"| {_name(sc)} | {_median(s, 'wall_s')} | {_median(d, 'wall_s')}{_inner(d)} | {_ratio(r, 'wall_s')} | "
            f"{_ratio(r, 'cpu_s')} | {_median(s, 'peak_rss_mib', 0)} | {_median(d, 'peak_rss_mib', 0)} | "
            f"{_ratio(r, 'peak_rss_mib')} |")
    loads = [sc for sc in results["scenarios"] if sc["group"] in LOAD_GROUPS]
    if loads:
        lines += ["", "Loads: data files and MiB each side wrote, from the table's add actions (median over "
                  "runs); partitions = distinct values of the partition column in the source, null included:", "",
                  "| scenario | partitions | silt files | delta-rs files | silt MiB | delta-rs MiB |",
                  "|---|---|---|---|---|---|"]
        for sc in loads:
            parts = sc["params"].get("partitions")
            cells = [_files(sc["sides"][side], "files_written") for side in SIDES]
            cells += [_files(sc["sides"][side], "bytes_written", 2**20, 2) for side in SIDES]
            lines.append(f"| {_name(sc)} | {'–' if parts is None else f'{parts:,}'} | " + " | ".join(cells) + " |")
    dml = [sc for sc in results["scenarios"] if sc["group"] in DML_GROUPS]
    if dml:
        lines += ["", "DELETE / UPDATE: data files removed / added (rewritten) by each side, from the "
                  "engines' own metrics, and MiB of files each wrote into the table (data and deletion "
                  "vector files, from the table's directory; median over runs); /dv: silt's table has "
                  "deletion vectors enabled:", "",
                  "| scenario | matching rows | silt removed | silt added | delta-rs removed | delta-rs added "
                  "| silt MiB written | delta-rs MiB written |",
                  "|---|---|---|---|---|---|---|---|"]
        for sc in dml:
            cells = [_files(sc["sides"][side], key) for side in SIDES for key in FILE_METRICS]
            cells += [_files(sc["sides"][side], "written_bytes", 2**20, 2) for side in SIDES]
            lines.append(f"| {_name(sc)} | {sc['params']['matching_rows']:,} | " + " | ".join(cells) + " |")
    if upserts:
        lines += ["", "MERGE upserts into the load rows: the target's data files, those whose "
                  "ss_ticket_number range reaches the source's keys and those holding a matched row "
                  "(the fewest a copy-on-write MERGE rewrites), and the data files removed / added by each "
                  "side, from the engines' own metrics (median over runs):", "",
                  "| scenario | target | source rows (changed + new) | target files | in key range | "
                  "with matches | silt removed | silt added | delta-rs removed | delta-rs added "
                  "| silt MiB written | delta-rs MiB written |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for sc in upserts:
            p_ = sc["params"]
            cells = [_files(sc["sides"][side], key) for side in SIDES for key in FILE_METRICS]
            cells += [_files(sc["sides"][side], "written_bytes", 2**20, 2) for side in SIDES]
            lines.append(f"| {_name(sc)} | {p_['target_rows']:,} rows, {p_['target_layout']} | "
                         f"{p_['matched_rows']:,} + {p_['not_matched_rows']:,} | {p_['target_files']} | "
                         f"{p_['files_in_key_range']} | {p_['files_with_matches']} | " + " | ".join(cells) + " |")
    sk = results.get("skipping") or []
    if sk:
        lines += ["", "Query file skipping (files scanned / files in the table, from the add-action "
                  "min/max stats and partition values):", ""]
        names = []
        for entry in sk:
            for q in entry.get("predicates") or []:
                if q["predicate"] not in names:
                    names.append(q["predicate"])
        lines.append("| layout | written by | files | " + " | ".join(names) + " |")
        lines.append("|---|---|---|" + "---|" * len(names))
        for entry in sk:
            if not entry["available"]:
                lines.append(f"| {entry['layout']} | {entry['side']} | n/a ({entry['reason']}) |"
                             + " |" * len(names))
                continue
            by = {q["predicate"]: q for q in entry["predicates"]}
            cells = [f"{by[n]['files_scanned']:g}" if n in by else "–" for n in names]
            lines.append(f"| {entry['layout']} | {entry['side']} | {entry['files']} | " + " | ".join(cells) + " |")
    cl = results.get("clustering")
    if cl and cl.get("tables"):
        lines += zorder_lines(results)
        groups = {}
        for label, entry in cl["tables"]:
            groups.setdefault(tuple(entry.get("columns") or cl["columns"]), []).append((label, entry))
        for cols, tables in groups.items():
            lines += ["", f"Clustering on Z-order columns ({', '.join(cols)}): files read per point "
                      "predicate (mean over the seeded random probes) / files, and mean overlap depth "
                      "(1 is perfect):", "",
                      "| table | " + " | ".join(f"{c} files per probe | {c} depth" for c in cols) + " |",
                      "|---|" + "---|---|" * len(cols)]
            for label, entry in tables:
                if not entry["available"]:
                    lines.append(f"| {label} | n/a ({entry['reason']}) |" + " |" * (2 * len(cols) - 1))
                    continue
                cells = []
                for c in cols:
                    q = entry["quality"].get(c)
                    cells += (["–", "–"] if q is None else
                              [f"{q['files_per_lookup']:g} / {q['files']}", f"{q['overlap_depth']:g}"])
                lines.append(f"| {label} | " + " | ".join(cells) + " |")
    fs = results.get("file_sizes")
    if fs:
        lines += ["", "Compaction: " + "; ".join(
            f"{label}: {len(entry['sizes'])} files, median {statistics.median(entry['sizes']) / 2**20:.2f} MiB"
            if entry.get("available") and entry.get("sizes") else f"{label}: n/a ({entry.get('reason')})"
            for label, entry in fs)]
    if results.get("failed"):
        lines += ["", "**FAILED**: " + "; ".join(results.get("errors") or ["see failed runs"])]
    return "\n".join(lines) + "\n"
