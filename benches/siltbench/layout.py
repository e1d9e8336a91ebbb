"""File skipping and clustering quality, computed from a table's add-action statistics.

Input: the per-file stats that `child.py table_info` reads from the Delta log (size, rows,
min and max of the columns in scenarios.STATS_COLS). A file must be scanned for a predicate
unless its [min, max] proves that no row can match; a file without stats for the column
must be scanned. In a partitioned table a partition column's value is the file's min and
max (partition pruning), and a file in the null partition of a column (`all_null`) never
matches a comparison on it. This is the pruning every Delta engine does before reading
data, so it is computed here once, from the log, for the tables both engines wrote.

Pure Python on purpose: the runner process must stay small (see measure.py).
"""

import statistics


def may_match(f, col, lo, hi):
    """Whether a file can hold a row with lo <= col <= hi, judging by its stats."""
    if col in f.get("all_null", ()):
        return False
    mn, mx = f["min"].get(col), f["max"].get(col)
    if mn is None or mx is None:
        return True
    return mx >= lo and mn <= hi


def domain(files, col):
    mins = [f["min"][col] for f in files if f["min"].get(col) is not None]
    maxs = [f["max"][col] for f in files if f["max"].get(col) is not None]
    if not mins:
        return None
    return min(mins), max(maxs)


def spread(lo, hi, n):
    """n integer points spread evenly over [lo, hi] (centres of n equal slices)."""
    return sorted({int(lo + (i + 0.5) * (hi - lo) / n) for i in range(n)})


def scan_cost(files, col, ranges):
    """Mean files and bytes that must be scanned over a list of [lo, hi] ranges."""
    fs, bs = [], []
    for lo, hi in ranges:
        hit = [f for f in files if may_match(f, col, lo, hi)]
        fs.append(len(hit))
        bs.append(sum(f["size"] for f in hit))
    return statistics.fmean(fs), statistics.fmean(bs)


def query_predicates(files):
    """The point and range predicates of the skipping report, derived from the table's own
    key domains so that they mean the same on every layout of the same data: (name, SQL,
    column, list of [lo, hi] ranges whose costs are averaged)."""
    preds = []
    for col, short in (("ss_ticket_number", "ticket"), ("ss_item_sk", "item"), ("ss_customer_sk", "customer")):
        d = domain(files, col)
        if d:
            pts = spread(d[0], d[1], 50)
            preds.append((f"point {short} (mean of {len(pts)})", f"{col} = v", col, [[p, p] for p in pts]))
    d = domain(files, "ss_sold_date_sk")
    if d:
        lo = d[0] + (d[1] - d[0]) // 2
        preds.append(("range 30 days", f"ss_sold_date_sk BETWEEN {lo} AND {lo + 29}",
                      "ss_sold_date_sk", [[lo, lo + 29]]))
    d = domain(files, "ss_item_sk")
    if d:
        width = max(1, (d[1] - d[0]) // 100)
        starts = spread(d[0], d[1] - width, 20)
        preds.append(("range 1% items (mean of 20)", f"ss_item_sk BETWEEN v AND v + {width}",
                      "ss_item_sk", [[s, s + width] for s in starts]))
    return preds


def skipping(files):
    """Files and bytes scanned per predicate, against the totals."""
    total_files = len(files)
    total_bytes = sum(f["size"] for f in files)
    out = []
    for name, sql, col, ranges in query_predicates(files):
        mean_files, mean_bytes = scan_cost(files, col, ranges)
        out.append({
            "predicate": name,
            "sql": sql,
            "files_scanned": round(mean_files, 2),
            "files_total": total_files,
            "files_fraction": round(mean_files / total_files, 4) if total_files else None,
            "bytes_scanned": round(mean_bytes),
            "bytes_total": total_bytes,
            "bytes_fraction": round(mean_bytes / total_bytes, 4) if total_bytes else None,
        })
    return out


def clustering(files, columns, probes):
    """Clustering quality on each column: files read per point predicate `col = v` over the
    random probe values `probes[col]` (drawn once from the starting table, the same for
    every layout of it; see child.probe_values): mean, median and max, and the mean as a
    fraction of all files; and the mean overlap depth (how many files' [min, max] ranges
    overlap a file's range, itself included). 1 file per probe and depth 1 is perfect
    clustering; = file count is none."""
    out = {}
    for col in columns:
        values = (probes or {}).get(col) or []
        if domain(files, col) is None or not values:
            out[col] = None
            continue
        per_probe = [sum(1 for f in files if may_match(f, col, v, v)) for v in values]
        mean_files = statistics.fmean(per_probe)
        depths = []
        for f in files:
            lo, hi = f["min"].get(col), f["max"].get(col)
            if lo is None or hi is None:
                depths.append(len(files))
                continue
            depths.append(sum(1 for g in files if may_match(g, col, lo, hi)))
        out[col] = {
            "files": len(files),
            "probes": len(per_probe),
            "files_per_lookup": round(mean_files, 2),
            "files_per_lookup_median": statistics.median(per_probe),
            "files_per_lookup_max": max(per_probe),
            "lookup_fraction": round(mean_files / len(files), 4) if files else None,
            "overlap_depth": round(statistics.fmean(depths), 2) if depths else None,
        }
    return out


def sizes(files):
    return sorted(f["size"] for f in files)
