#!/usr/bin/env python3
"""Independent check of silt-datagen store_sales output, read back with pyarrow.

Usage: .venv/bin/python benches/check_datagen.py DIR --rows N [--scale-items N]

Checks the schema (names, types, nullability), the row count, and every value rule
documented in benches/src/tables/store_sales.rs, using pyarrow.compute only (no code
shared with the generator). Exits non-zero with a list of failures.
"""

import argparse
import glob
import os
import sys

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

KEYS = [
    "ss_sold_date_sk", "ss_sold_time_sk", "ss_item_sk", "ss_customer_sk", "ss_cdemo_sk",
    "ss_hdemo_sk", "ss_addr_sk", "ss_store_sk", "ss_promo_sk",
]
AMOUNTS = [
    "ss_wholesale_cost", "ss_list_price", "ss_sales_price", "ss_ext_discount_amt",
    "ss_ext_sales_price", "ss_ext_wholesale_cost", "ss_ext_list_price", "ss_ext_tax",
    "ss_coupon_amt", "ss_net_paid", "ss_net_paid_inc_tax", "ss_net_profit",
]
NOT_NULL = {"ss_item_sk", "ss_ticket_number"}
NULLABLE_KEYS = [k for k in KEYS if k not in NOT_NULL]


def expected_schema():
    fields = [pa.field(k, pa.int32(), k not in NOT_NULL) for k in KEYS]
    fields.append(pa.field("ss_ticket_number", pa.int64(), False))
    fields.append(pa.field("ss_quantity", pa.int32(), True))
    fields += [pa.field(a, pa.decimal128(7, 2), True) for a in AMOUNTS]
    return pa.schema(fields)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--rows", type=int, required=True)
    ap.add_argument("--items", type=int, default=None, help="item domain size (default: no upper check)")
    ap.add_argument("--stores", type=int, default=None)
    args = ap.parse_args()

    failures = []

    def check(cond, msg):
        if not cond:
            failures.append(msg)

    files = sorted(glob.glob(os.path.join(args.dir, "part-*.parquet")))
    check(len(files) > 0, "no part files")
    check(not glob.glob(os.path.join(args.dir, "*.tmp")), "leftover .tmp files")
    for f in files:
        meta = pq.ParquetFile(f).metadata
        codecs = {meta.row_group(0).column(i).compression for i in range(meta.num_columns)}
        check(codecs == {"SNAPPY"}, f"{f}: compression {codecs}")

    # Read file by file so row order is file order (a dataset scan may interleave files).
    t = pa.concat_tables([pq.read_table(f) for f in files])
    exp = expected_schema()
    # Parquet keeps nullability via repetition levels; compare fields without metadata.
    got = pa.schema([pa.field(f.name, f.type, f.nullable) for f in t.schema])
    check(got.equals(exp), f"schema mismatch:\n got {got}\n expected {exp}")
    check(t.num_rows == args.rows, f"rows {t.num_rows} != {args.rows}")

    def col(name):
        return t.column(name)

    def rng(name, lo, hi):
        mn, mx = pc.min_max(col(name)).values()
        ok = mn.is_valid and lo <= mn.as_py() and mx.as_py() <= hi
        check(ok, f"{name} range [{mn}, {mx}] not within [{lo}, {hi}]")

    rng("ss_sold_date_sk", 2450816, 2452642)
    rng("ss_sold_time_sk", 28800, 75599)
    rng("ss_quantity", 1, 100)
    for k in ["ss_item_sk", "ss_customer_sk", "ss_cdemo_sk", "ss_hdemo_sk", "ss_addr_sk", "ss_store_sk", "ss_promo_sk"]:
        rng(k, 1, 2**31 - 1)
    rng("ss_hdemo_sk", 1, 7200)
    rng("ss_cdemo_sk", 1, 1920800)
    if args.items:
        rng("ss_item_sk", 1, args.items)
    if args.stores:
        rng("ss_store_sk", 1, args.stores)

    for k in sorted(NOT_NULL) + ["ss_quantity"] + AMOUNTS:
        check(col(k).null_count == 0, f"{k} has {col(k).null_count} nulls")
    for k in NULLABLE_KEYS:
        frac = col(k).null_count / max(t.num_rows, 1)
        check(0.03 <= frac <= 0.06, f"{k} null fraction {frac:.4f} not ~4.5%")

    # Pricing rules, exact, in integer cents.
    cents = {a: pc.cast(pc.round(pc.multiply(pc.cast(col(a), pa.float64()), 100.0)), pa.int64()) for a in AMOUNTS}
    q = pc.cast(col("ss_quantity"), pa.int64())
    w, l, s = cents["ss_wholesale_cost"], cents["ss_list_price"], cents["ss_sales_price"]

    def all_true(expr, msg):
        bad = pc.sum(pc.cast(pc.invert(expr), pa.int64())).as_py() or 0
        check(bad == 0, f"{msg}: {bad} rows violate")

    all_true(pc.and_(pc.greater_equal(w, 100), pc.less_equal(w, 10000)), "wholesale in 1.00..100.00")
    all_true(pc.and_(pc.less_equal(w, l), pc.less_equal(l, pc.multiply(w, 2))), "wholesale <= list <= 2*wholesale")
    all_true(pc.and_(pc.greater_equal(s, 0), pc.less_equal(s, l)), "0 <= sales <= list")
    all_true(pc.equal(cents["ss_ext_discount_amt"], pc.multiply(q, pc.subtract(l, s))), "ext_discount = q*(list-sales)")
    all_true(pc.equal(cents["ss_ext_sales_price"], pc.multiply(q, s)), "ext_sales = q*sales")
    all_true(pc.equal(cents["ss_ext_wholesale_cost"], pc.multiply(q, w)), "ext_wholesale = q*wholesale")
    all_true(pc.equal(cents["ss_ext_list_price"], pc.multiply(q, l)), "ext_list = q*list")
    es, cp, np_ = cents["ss_ext_sales_price"], cents["ss_coupon_amt"], cents["ss_net_paid"]
    all_true(pc.and_(pc.greater_equal(cp, 0), pc.less_equal(cp, es)), "0 <= coupon <= ext_sales")
    all_true(pc.equal(np_, pc.subtract(es, cp)), "net_paid = ext_sales - coupon")
    tax = cents["ss_ext_tax"]
    all_true(pc.and_(pc.greater_equal(tax, 0), pc.less_equal(pc.multiply(tax, 100), pc.add(pc.multiply(np_, 9), 50))),
             "ext_tax within 0..9% of net_paid")
    all_true(pc.equal(cents["ss_net_paid_inc_tax"], pc.add(np_, tax)), "net_paid_inc_tax = net_paid + ext_tax")
    all_true(pc.equal(cents["ss_net_profit"], pc.subtract(np_, cents["ss_ext_wholesale_cost"])),
             "net_profit = net_paid - ext_wholesale")
    coupon_frac = pc.sum(pc.cast(pc.greater(cp, 0), pa.int64())).as_py() / max(t.num_rows, 1)
    check(0.15 <= coupon_frac <= 0.25, f"coupon fraction {coupon_frac:.3f} not ~20%")

    # Tickets: dense 1..T in file/row order, 8..16 distinct items each (the last ticket of a
    # file may be cut short), ticket-level attributes constant where not null, dates
    # non-decreasing with ticket number.
    tn = col("ss_ticket_number")
    tickets = pc.unique(tn)
    check(pc.min(tn).as_py() == 1 and pc.max(tn).as_py() == len(tickets), "ticket numbers not dense from 1")
    diffs = pc.pairwise_diff(pc.cast(tn.combine_chunks(), pa.int64()))
    all_true(pc.is_in(pc.fill_null(diffs, 0), pa.array([0, 1], pa.int64())), "ticket numbers step by 0 or 1 in row order")
    g = t.group_by("ss_ticket_number").aggregate(
        [("ss_item_sk", "count"), ("ss_item_sk", "count_distinct")]
        + [(k, "min") for k in ["ss_sold_date_sk", "ss_sold_time_sk", "ss_customer_sk", "ss_store_sk"]]
        + [(k, "max") for k in ["ss_sold_date_sk", "ss_sold_time_sk", "ss_customer_sk", "ss_store_sk"]]
    )
    cnt = g.column("ss_item_sk_count")
    all_true(pc.equal(cnt, g.column("ss_item_sk_count_distinct")), "items distinct within a ticket")
    short = pc.sum(pc.cast(pc.less(cnt, 8), pa.int64())).as_py() or 0
    check(short <= len(files), f"{short} tickets shorter than 8 (at most one per file allowed)")
    check(pc.max(cnt).as_py() <= 16, "ticket with more than 16 items")
    for k in ["ss_sold_date_sk", "ss_sold_time_sk", "ss_customer_sk", "ss_store_sk"]:
        all_true(pc.fill_null(pc.equal(g.column(f"{k}_min"), g.column(f"{k}_max")), True), f"{k} constant per ticket")
    g = g.sort_by("ss_ticket_number")
    d = pc.drop_null(g.column("ss_sold_date_sk_min").combine_chunks())
    all_true(pc.fill_null(pc.greater_equal(pc.pairwise_diff(d), 0), True), "date non-decreasing with ticket number")

    print(f"checked {len(files)} files, {t.num_rows} rows, {len(tickets)} tickets: "
          f"{'OK' if not failures else 'FAILED'}")
    for f in failures:
        print("  FAIL:", f)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
