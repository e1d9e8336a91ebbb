#!/usr/bin/env python3
"""PNG charts of a results.json (matplotlib, Agg backend). Run as a child of the runner.

Usage: python charts.py RESULTS_JSON OUT_DIR

Writes time.png and memory.png (per scenario, median with min-max bars, both sides; "n/a"
where silt does not have the operation), file_sizes.png (file-size histograms before and
after OPTIMIZE), clustering.png (files read per point predicate before and after Z-order,
one panel per Z-order input) and skipping.png (files scanned per query after each layout).
"""

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

COLORS = {"silt": "#1f77b4", "delta-rs": "#ff7f0e"}
SIDES = ("silt", "delta-rs")


def per_scenario(results, metric, unit, title, path):
    scs = results["scenarios"]
    if not scs:
        return False
    n = len(scs)
    fig, ax = plt.subplots(figsize=(10, max(3.0, 0.42 * n + 1.6)))
    height = 0.38
    ymax = 0.0
    labeled = set()
    for i, sc in enumerate(scs):
        for j, side in enumerate(SIDES):
            y = i + (j - 0.5) * height
            s = sc["sides"][side]
            summ = (s.get("summary") or {}).get(metric) if s["available"] else None
            if summ is None:
                text = "n/a" if not s["available"] else "failed"
                ax.text(0, y, f" {side}: {text}", va="center", fontsize=7, color="gray")
                continue
            med = summ["median"]
            ymax = max(ymax, summ["max"])
            ax.barh(y, med, height=height, color=COLORS[side],
                    xerr=[[med - summ["min"]], [summ["max"] - med]], capsize=2,
                    label=None if side in labeled else side)
            labeled.add(side)
            digits = 0 if metric == "peak_rss_mib" else 2
            text = f" {med:.{digits}f}"
            ratio = ((sc.get("ratio_silt_over_delta_rs") or {}).get(metric) or {}).get("median")
            if side == "silt" and ratio is not None:
                text += f"   silt/delta-rs {ratio:.2f}"
            ax.text(summ["max"], y, text, va="center", fontsize=7)
    ax.set_yticks(range(n))
    ax.set_yticklabels([sc.get("label") or sc["name"] for sc in scs], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(unit)
    ax.set_xlim(0, ymax * 1.3 if ymax else 1)
    ax.set_title(title, fontsize=10)
    if labeled:
        ax.legend(loc="lower right", fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def file_sizes(results, path):
    import numpy as np

    entries = results.get("file_sizes") or []
    if not entries:
        return False
    all_mib = [s / 2**20 for _, e in entries if e.get("available") for s in e.get("sizes") or []]
    lo, hi = (min(all_mib), max(all_mib)) if all_mib else (1e-3, 1.0)
    bins = np.geomspace(lo * 0.9, hi * 1.1, 40)
    fig, axes = plt.subplots(1, len(entries), figsize=(4.2 * len(entries), 3.4), squeeze=False, sharex=True)
    for ax, (label, e) in zip(axes[0], entries):
        ax.set_title(label, fontsize=9)
        ax.set_xscale("log")
        if not e.get("available") or not e.get("sizes"):
            ax.text(0.5, 0.5, f"n/a\n{e.get('reason', '')}", ha="center", va="center", fontsize=8,
                    transform=ax.transAxes, color="gray")
            ax.set_yticks([])
            continue
        mib = [s / 2**20 for s in e["sizes"]]
        ax.hist(mib, bins=bins, color="#2ca02c")
        ax.set_xlabel(f"file size, MiB, log scale ({len(mib)} files)")
        ax.set_ylabel("files")
    fig.suptitle("Data file sizes before / after OPTIMIZE", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def clustering(results, path):
    """One panel per set of Z-order columns (one per Z-order input): the fraction of files a
    point predicate reads, before Z-order and after each side's Z-order."""
    cl = results.get("clustering") or {}
    tables = cl.get("tables") or []
    if not tables:
        return False
    groups = {}
    for label, e in tables:
        groups.setdefault(tuple(e.get("columns") or cl.get("columns") or []), []).append((label, e))
    groups = {cols: ts for cols, ts in groups.items() if cols}
    if not groups:
        return False
    fig, axes = plt.subplots(1, len(groups), figsize=(8 * len(groups), 3.8), squeeze=False)
    for ax, (cols, ts) in zip(axes[0], groups.items()):
        width = 0.8 / len(ts)
        for t, (label, e) in enumerate(ts):
            xs = [c + (t - (len(ts) - 1) / 2) * width for c in range(len(cols))]
            if not e.get("available"):
                for x in xs:
                    ax.text(x, 0.02, "n/a", ha="center", fontsize=7, color="gray", rotation=90)
                ax.bar(xs, [0] * len(xs), width=width, label=f"{label}: n/a")
                continue
            vals = [(e["quality"].get(c) or {}).get("lookup_fraction") or 0 for c in cols]
            bars = ax.bar(xs, vals, width=width, label=label)
            for b, c in zip(bars, cols):
                q = e["quality"].get(c) or {}
                ax.text(b.get_x() + b.get_width() / 2, b.get_height(),
                        f"{q.get('files_per_lookup', 0):g}/{q.get('files', 0)}", ha="center", va="bottom",
                        fontsize=7)
        ax.set_xticks(range(len(cols)))
        ax.set_xticklabels(cols)
        ax.set_ylabel("fraction of files read\nper point predicate")
        ax.set_ylim(0, 1.45)
        ax.set_title(f"Z-order by ({', '.join(cols)}), lower is better", fontsize=10)
        ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def skipping(results, path):
    entries = [e for e in results.get("skipping") or []]
    if not entries:
        return False
    names = []
    for e in entries:
        for q in e.get("predicates") or []:
            if q["predicate"] not in names:
                names.append(q["predicate"])
    if not names:
        return False
    fig, ax = plt.subplots(figsize=(12, 4.2))
    width = 0.8 / len(entries)
    for k, e in enumerate(entries):
        label = f"{e['layout']} ({e['side']}" + (f", {e['files']} files)" if e["available"] else ")")
        xs = [i + (k - (len(entries) - 1) / 2) * width for i in range(len(names))]
        if not e["available"]:
            ax.bar(xs, [0] * len(xs), width=width, label=f"{label}: n/a")
            continue
        by = {q["predicate"]: q for q in e["predicates"]}
        ax.bar(xs, [(by.get(n) or {}).get("files_fraction") or 0 for n in names], width=width, label=label)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, fontsize=8)
    ax.set_ylabel("fraction of files scanned")
    ax.set_ylim(0, 1.05)
    ax.set_title("Query file skipping from add-action min/max stats and partition values (lower is better)",
                 fontsize=10)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def main():
    if len(sys.argv) != 3:
        print("usage: charts.py RESULTS_JSON OUT_DIR", file=sys.stderr)
        return 2
    with open(sys.argv[1]) as f:
        results = json.load(f)
    out = sys.argv[2]
    written = []
    for name, ok in (
        ("time.png", per_scenario(results, "wall_s", "wall seconds (median, min-max)",
                                  "Wall time per scenario (whole process)", f"{out}/time.png")),
        ("memory.png", per_scenario(results, "peak_rss_mib", "peak RSS, MiB (median, min-max)",
                                    "Peak memory per scenario (whole process)", f"{out}/memory.png")),
        ("file_sizes.png", file_sizes(results, f"{out}/file_sizes.png")),
        ("clustering.png", clustering(results, f"{out}/clustering.png")),
        ("skipping.png", skipping(results, f"{out}/skipping.png")),
    ):
        if ok:
            written.append(name)
    print("charts: " + ", ".join(written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
