"""What the benchmark runs: the scenarios, the operation spec both engines receive, and
silt's side of each operation.

Every measured run executes one *op spec*, a JSON-able dict such as

    {"kind": "merge", "table": T, "source": S, "predicate": "t.k = s.k AND ...",
     "clauses": [{"kind": "matched_update_all"}, {"kind": "not_matched_insert_all"}]}

or {"kind": "write", "table": T, "source": S, "mode": "overwrite"} with an optional
"partition_by": [column, ...] for a new partitioned table.

The delta-rs side runs it with `child.py op` (the Python `deltalake` package). silt's side
is `SILT_SIDE[kind](spec, ctx)`, which returns the `silt` command line for the spec, or is
`None` while silt does not have the operation: the runner then reports that side as not
available (in the JSON, the Markdown table and the charts) and never measures anything in
its place. Giving silt a new operation in the benchmark is one function here, e.g.

    def silt_merge(spec, ctx):
        return [ctx.silt_bin, "merge", "--table", spec["table"], "--source", spec["source"],
                "--on", spec["predicate"], *clause_flags(spec["clauses"]), *cluster_flags(ctx)]
    SILT_SIDE["merge"] = silt_merge
"""

import datetime as dt
import os
from dataclasses import dataclass, field


def cluster_flags(ctx):
    """Embedded local cluster size for every silt command."""
    return ["--executors", str(ctx.executors), "--executor-memory", str(ctx.executor_memory)]


def silt_write(spec, ctx):
    partition = ["--partition-by", ",".join(spec["partition_by"])] if spec.get("partition_by") else []
    return [ctx.silt_bin, "write", "--table", spec["table"], "--source", spec["source"],
            "--format", "parquet", "--mode", spec.get("mode", "overwrite"), *partition,
            *cluster_flags(ctx), "--json", "-q"]


def silt_sql(statement, ctx):
    return [ctx.silt_bin, "sql", *cluster_flags(ctx), "--json", "-q", statement]


def delta_ref(spec):
    """The spec's table in SQL: delta.`/absolute/path`."""
    return f"delta.`{os.path.abspath(spec['table'])}`"


def silt_delete(spec, ctx):
    return silt_sql(f"DELETE FROM {delta_ref(spec)} WHERE {spec['predicate']}", ctx)


def silt_update(spec, ctx):
    return silt_sql(f"UPDATE {delta_ref(spec)} SET {assignments_sql(spec['updates'])} "
                    f"WHERE {spec['predicate']}", ctx)


def silt_merge(spec, ctx):
    """The spec's MERGE as SQL (its source is one Parquet file)."""
    source = f"parquet.`{os.path.abspath(spec['source'])}`"
    clauses = merge_clauses_sql(spec["clauses"])
    return silt_sql(f"MERGE INTO {delta_ref(spec)} t USING {source} s ON {spec['predicate']} "
                    f"{clauses}", ctx)


def silt_optimize(spec, ctx, extra=()):
    return [ctx.silt_bin, "optimize", "--table", spec["table"], "--target-size", str(spec["target_size"]),
            *extra, *cluster_flags(ctx), "--json", "-q"]


def silt_compact(spec, ctx):
    """OPTIMIZE (bin-packing) with the spec's target size; silt's default --min-file-size
    (half the target) takes every small file of the compaction input."""
    return silt_optimize(spec, ctx)


def silt_zorder(spec, ctx):
    """OPTIMIZE ZORDER BY on the Z-order curve (what delta-rs's z_order and Spark compute).
    The target size is the one the runner put in the spec: for the scenarios that match
    delta-rs's file count, ceil(input bytes / delta-rs's files), see runner.match_files."""
    return silt_optimize(spec, ctx, ["--zorder-by", ",".join(spec["columns"]), "--curve", "zorder"])


# op kind -> builder of silt's command line, or None while silt lacks the operation.
SILT_SIDE = {
    "write": silt_write,
    "merge": silt_merge,
    "compact": silt_compact,
    "zorder": silt_zorder,
    "delete": silt_delete,
    "update": silt_update,
}

# Scenarios run a second time with deletion vectors enabled on silt's copy of the table
# (ALTER TABLE … SET TBLPROPERTIES, untimed, before silt's run): named <scenario>/dv. delta-rs
# writes no deletion vectors, so its side stays copy-on-write, as in the plain scenario.
DV_SCENARIOS = ("delete/scattered", "merge/load/upsert_10pct")


def dv_name(name):
    return f"{name}/dv"


def silt_enable_dv(spec, ctx):
    """The untimed setup of a /dv scenario's silt side."""
    return silt_sql(f"ALTER TABLE {delta_ref(spec)} SET TBLPROPERTIES "
                    "('delta.enableDeletionVectors' = 'true')", ctx)


# Why silt's side is not available, for an operation whose SILT_SIDE entry is None.
NOT_AVAILABLE = {}


def silt_unavailable(kind):
    """None if silt has the operation, else why not."""
    if SILT_SIDE.get(kind) is None:
        return NOT_AVAILABLE.get(kind, f"silt has no {kind} operation")
    return None


def silt_command(spec, ctx):
    """silt's command line for a spec (only for available operations)."""
    return SILT_SIDE[spec["kind"]](spec, ctx)


# --- tables ------------------------------------------------------------------------------

STORE_SALES = {
    "table": "store_sales", "short": "ss", "key_col": "ss_ticket_number", "item_col": "ss_item_sk",
    "amount_col": "ss_net_paid",
}
WEB_RETURNS = {
    "table": "web_returns", "short": "wr", "key_col": "wr_order_number", "item_col": "wr_item_sk",
    "amount_col": "wr_return_amt",
}
MERGE_TARGETS = {"web_returns": WEB_RETURNS, "store_sales": STORE_SALES}

# The load scenarios: (name, partition columns, chart label). All write the same load
# source into a new table; the partitioned ones add "partition_by" to the write spec.
LOAD_SCENARIOS = [
    ("load", [], "load"),
    ("load/by_store", ["ss_store_sk"], "load by store"),
    ("load/by_date", ["ss_sold_date_sk"], "load by date"),
]

# Columns whose per-file min/max the analyses read (skipping, clustering).
STATS_COLS = ["ss_ticket_number", "ss_item_sk", "ss_customer_sk", "ss_sold_date_sk"]
ZORDER_COLS = ["ss_customer_sk", "ss_item_sk"]

# The long-common-prefix Z-order table (delta-io/delta-rs#2844: delta-rs's Z-order key uses
# only the first 16 bytes of each column's value): store_sales plus a string column
# PREFIX_COL = PREFIX_TEXT + ss_customer_sk zero-padded to PREFIX_DIGITS digits (null where
# ss_customer_sk is null), e.g. "customer-0000000000-0000012345": 30 bytes whose first 20
# (24 at SF 1, where the keys have at most 6 digits) are the same in every row, so all
# values share their first 16 bytes.
PREFIX_COL = "ss_customer_id"
PREFIX_TEXT = "customer-0000000000-"
PREFIX_DIGITS = 10
PREFIX_ZORDER_COLS = [PREFIX_COL, "ss_item_sk"]
PREFIX_STATS_COLS = STATS_COLS + [PREFIX_COL]


@dataclass(frozen=True)
class ZorderCase:
    """One Z-order scenario: the data set it starts from (a key of the runner's data sets),
    the columns, and the chart label. Both run at the same file count: delta-rs first in
    every repetition, then silt with --target-size ceil(input bytes / delta-rs's files)."""
    name: str
    data: str
    columns: tuple
    label: str
    stats_cols: tuple


ZORDER_CASES = [
    ZorderCase("zorder", "store_sales", tuple(ZORDER_COLS), "z-order", tuple(STATS_COLS)),
    ZorderCase("zorder/long_prefix", "store_sales_prefix", tuple(PREFIX_ZORDER_COLS), "z-order long prefix",
               tuple(PREFIX_STATS_COLS)),
]

# Random point probes per column for the clustering analysis (layout.clustering), drawn
# with random.Random(f"clustering:{seed}:{column}") from the starting table: integers
# uniformly from [min, max], strings uniformly from the column's distinct non-null values.
CLUSTERING_PROBES = 100


# --- MERGE cases -------------------------------------------------------------------------

@dataclass(frozen=True)
class MergeCase:
    """One case of Delta's merge benchmark (delta-io/delta benchmarks, MergeTestCases):
    the source is built from the target by sampling `file_fraction` of its files, then
    `row_matched` of their rows unchanged and, independently, `row_not_matched` of their
    rows with fresh keys."""
    kind: str
    file_fraction: float
    row_matched: float
    row_not_matched: float
    row_changed: float = 0.0
    origin: str = "delta"

    @property
    def name(self):
        f = f"fileMatchedFraction_{self.file_fraction}"
        if self.kind in ("insert_only", "multiple_insert_only"):
            prefix = "single_insert_only" if self.kind == "insert_only" else "multiple_insert_only"
            return f"{prefix}_{f}_rowNotMatchedFraction_{self.row_not_matched}"
        if self.kind == "delete_only":
            return f"delete_only_{f}_rowMatchedFraction_{self.row_matched}"
        if self.kind == "upsert":
            return (f"upsert_{f}_rowMatchedFraction_{self.row_matched}"
                    f"_rowNotMatchedFraction_{self.row_not_matched}")
        return (f"upsert_changed_only_{f}_rowMatchedFraction_{self.row_matched}"
                f"_rowChangedFraction_{self.row_changed}_rowNotMatchedFraction_{self.row_not_matched}")

    @property
    def label(self):
        """Short name for charts."""
        short = {"insert_only": "ins", "multiple_insert_only": "multi-ins", "delete_only": "del",
                 "upsert": "upsert", "upsert_changed_only": "upsert-chg"}[self.kind]
        parts = [f"f{self.file_fraction:g}"]
        if self.kind not in ("insert_only", "multiple_insert_only"):
            parts.append(f"m{self.row_matched:g}")
        if self.row_changed:
            parts.append(f"c{self.row_changed:g}")
        if self.kind != "delete_only":
            parts.append(f"n{self.row_not_matched:g}")
        return f"{short} {' '.join(parts)}"


# The 16 cases of Delta's merge benchmark, in its order, plus one of ours.
MERGE_CASES = [
    MergeCase("insert_only", 0.05, 0.0, 0.05),
    MergeCase("insert_only", 0.05, 0.0, 0.5),
    MergeCase("insert_only", 0.05, 0.0, 1.0),
    MergeCase("multiple_insert_only", 0.05, 0.0, 0.05),
    MergeCase("multiple_insert_only", 0.05, 0.0, 0.5),
    MergeCase("multiple_insert_only", 0.05, 0.0, 1.0),
    MergeCase("delete_only", 0.05, 0.05, 0.0),
    MergeCase("upsert", 0.05, 0.1, 0.01),
    MergeCase("upsert", 0.05, 0.0, 0.1),
    MergeCase("upsert", 0.05, 0.01, 0.1),
    MergeCase("upsert", 0.05, 0.1, 0.0),
    MergeCase("upsert", 0.5, 0.01, 0.001),
    MergeCase("upsert", 1.0, 0.01, 0.001),
    MergeCase("upsert", 0.05, 0.5, 0.001),
    MergeCase("upsert", 0.05, 0.99, 0.001),
    MergeCase("upsert", 0.05, 1.0, 0.001),
    # Ours: CDC-style upsert where only 1% of the matched rows differ from the target and
    # the UPDATE is conditional on the difference, so almost every match is a no-op.
    MergeCase("upsert_changed_only", 0.05, 0.5, 0.001, row_changed=0.01, origin="silt"),
]

# Cases run against store_sales by default (all cases run against web_returns, the table
# Delta's benchmark uses): one of each shape.
STORE_SALES_MERGE_CASES = [
    MergeCase("insert_only", 0.05, 0.0, 0.05),
    MergeCase("delete_only", 0.05, 0.05, 0.0),
    MergeCase("upsert", 0.05, 0.1, 0.01),
    MergeCase("upsert", 1.0, 0.01, 0.001),
    MergeCase("upsert", 0.05, 0.99, 0.001),
    MergeCase("upsert_changed_only", 0.05, 0.5, 0.001, row_changed=0.01, origin="silt"),
]


# Upserts into a target holding the load rows (ours, not Delta's benchmark): the target is
# the load source's store_sales rows, `target` "load" = its files as generated, unpartitioned
# (5,000,000 rows in a few big files in the full profile: a scattered upsert rewrites them
# all, copy-on-write), "clustered" = the same rows sorted by (ss_ticket_number, ss_item_sk)
# in files of about --clustered-file-size (each file covers a narrow key range, so min/max
# stats let an engine skip the files no source key falls in). The source takes its keys
# from the rows whose ticket number lies in the top `key_range` of the target's ticket range
# (1.0: all rows): `row_matched` of those rows, sampled uniformly, with ss_net_paid raised by
# 1.00, plus `row_not_matched` of them as new rows with fresh ticket numbers above the max.
# Scenario name merge/<target>/<name>, clauses as the "upsert" MERGE cases.
@dataclass(frozen=True)
class UpsertCase:
    target: str
    name: str
    label: str
    summary: str
    key_range: float
    row_matched: float
    row_not_matched: float
    kind: str = "upsert"

    @property
    def scenario(self):
        return f"merge/{self.target}/{self.name}"


UPSERT_CASES = [
    # 10% of the target's rows: 90% changed target rows, 10% new.
    UpsertCase("load", "upsert_10pct", "ss 10% upsert", "10% upsert, copy-on-write", 1.0, 0.09, 0.01),
    # 2% of the rows of the newest 15% of tickets changed, plus a few (0.1% of them) new.
    UpsertCase("clustered", "upsert", "ss clustered upsert", "clustered upsert", 0.15, 0.02, 0.001),
]

# How the two targets are laid out (for the report).
UPSERT_TARGET_LAYOUTS = {
    "load": "the load source's files as generated",
    "clustered": "sorted by (ss_ticket_number, ss_item_sk), files of ~{size}",
}


def merge_clauses(case, t):
    item, amount = t["item_col"], t["amount_col"]
    if case.kind == "insert_only":
        return [{"kind": "not_matched_insert_all"}]
    if case.kind == "multiple_insert_only":
        return [{"kind": "not_matched_insert_all", "condition": f"s.{item} % 2 = 0"},
                {"kind": "not_matched_insert_all"}]
    if case.kind == "delete_only":
        return [{"kind": "matched_delete"}]
    if case.kind == "upsert":
        return [{"kind": "matched_update_all"}, {"kind": "not_matched_insert_all"}]
    return [{"kind": "matched_update_all", "condition": f"s.{amount} <> t.{amount}"},
            {"kind": "not_matched_insert_all"}]


def merge_predicate(t):
    return f"t.{t['key_col']} = s.{t['key_col']} AND t.{t['item_col']} = s.{t['item_col']}"


def merge_clauses_sql(clauses):
    """The WHEN clauses of a spec, as Delta SQL."""
    sql = []
    for c in clauses:
        cond = f" AND {c['condition']}" if c.get("condition") else ""
        action = {"matched_update_all": "WHEN MATCHED{} THEN UPDATE SET *",
                  "matched_delete": "WHEN MATCHED{} THEN DELETE",
                  "not_matched_insert_all": "WHEN NOT MATCHED{} THEN INSERT *"}[c["kind"]]
        sql.append(action.format(cond))
    return " ".join(sql)


def merge_sql(t, clauses):
    """The MERGE statement a spec stands for, for the report."""
    return f"MERGE INTO {t['table']} t USING source s ON {merge_predicate(t)} {merge_clauses_sql(clauses)}"


# --- DELETE and UPDATE cases -------------------------------------------------------------

def date_sk(year, month, day):
    """TPC-DS date key (Julian day number) of a calendar date."""
    return dt.date(year, month, day).toordinal() + 1_721_425


# name -> conjuncts [column, op, value] of the WHERE clause of both the DELETE and the
# UPDATE scenarios; evaluated independently by pyarrow for the expected result and
# rendered as SQL for the engines.
DML_CASES = {
    # Aligned with the layout (dates grow with ticket numbers): touches few files.
    "date_range": [["ss_sold_date_sk", ">=", date_sk(2001, 10, 1)],
                   ["ss_sold_date_sk", "<", date_sk(2002, 1, 1)]],
    # Scattered over every file: about 5% of the rows.
    "scattered": [["ss_quantity", "<=", 5]],
}


# UPDATE store_sales SET UPDATE_COL = UPDATE_COL + UPDATE_INCREMENT WHERE ...: the sum of
# UPDATE_COL grows by the increment once per matching row where it is not null (null + 1
# stays null), which the verification checks.
UPDATE_COL = "ss_ext_discount_amt"
UPDATE_INCREMENT = 1
UPDATES = {UPDATE_COL: f"{UPDATE_COL} + {UPDATE_INCREMENT}"}


def predicate_sql(conjuncts):
    return " AND ".join(f"{c} {op} {v}" for c, op, v in conjuncts)


def assignments_sql(updates):
    return ", ".join(f"{col} = {expr}" for col, expr in updates.items())


@dataclass
class Scenario:
    """One benchmark scenario. `spec(run_dir)` prepares the inputs of one run (untimed:
    e.g. a fresh copy of the target table) and returns its op spec; `expect` is what the
    resulting table must hold (rows, amount sum, optionally columns)."""
    name: str
    group: str
    kind: str
    description: str
    spec: object
    expect: dict
    params: dict = field(default_factory=dict)
    label: str = ""
    analyze: object = None
    # Columns whose per-file stats the verification reads (default STATS_COLS).
    stats_cols: list = None
    # Run delta-rs first in every repetition and give silt the target size at which it
    # writes as many files as delta-rs did (runner.match_files).
    match_files: bool = False
    # Z-order columns, for the clustering analysis.
    zorder_cols: list = None
    # silt's command line of an untimed step before silt's run (spec, ctx) -> argv, e.g.
    # enabling deletion vectors on its copy of the table.
    silt_setup: object = None
