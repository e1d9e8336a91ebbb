#!/usr/bin/env python3
"""Independent check of silt-datagen output, read back with pyarrow.

Usage:
  .venv/bin/python benches/check_datagen.py DIR --rows N          # one store_sales directory
  .venv/bin/python benches/check_datagen.py --all DIR --scale SF  # `silt-datagen all --out DIR`

Checks schemas (names, types, nullability), row counts per scale factor, the value rules
documented in the table modules of benches/src/tables/, and referential integrity between
the tables (returns reference existing sales; fact keys resolve in item, customer and
date_dim), using pyarrow.compute only: no code is shared with the generator. Exits
non-zero with a list of failures.
"""

import argparse
import glob
import os
import sys

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

# TPC-DS table 3-2 at SF 1; fact tables grow linearly.
PER_SF = {"store_sales": 2_880_404, "store_returns": 287_514, "web_sales": 719_384, "web_returns": 71_763}
SALES_FIRST, SALES_LAST = 2450816, 2452642
DATE_FIRST, DATE_ROWS = 2415022, 73049
JDN_EPOCH = 2440588
D72 = pa.decimal128(7, 2)

failures = []


def check(cond, msg):
    if not cond:
        failures.append(msg)


def bad_count(expr):
    return pc.sum(pc.cast(pc.invert(pc.fill_null(expr, True)), pa.int64())).as_py() or 0


def all_true(expr, msg):
    bad = bad_count(expr)
    check(bad == 0, f"{msg}: {bad} rows violate")


def read_dir(d):
    files = sorted(glob.glob(os.path.join(d, "part-*.parquet")))
    check(len(files) > 0, f"{d}: no part files")
    check(not glob.glob(os.path.join(d, "*.tmp")), f"{d}: leftover .tmp files")
    for f in files:
        meta = pq.ParquetFile(f).metadata
        codecs = {meta.row_group(0).column(i).compression for i in range(meta.num_columns)}
        check(codecs == {"SNAPPY"}, f"{f}: compression {codecs}")
    # File by file, so row order is file order.
    return pa.concat_tables([pq.read_table(f) for f in files]), len(files)


def check_schema(name, t, fields):
    got = pa.schema([pa.field(f.name, f.type, f.nullable) for f in t.schema])
    exp = pa.schema([pa.field(n, ty, nullable) for n, ty, nullable in fields])
    check(got.equals(exp), f"{name}: schema mismatch:\n got {got}\n expected {exp}")


def cents(col):
    return pc.cast(pc.round(pc.multiply(pc.cast(col, pa.float64()), 100.0)), pa.int64())


def i64(col):
    return pc.cast(col, pa.int64())


def rng(name, col, lo, hi):
    mn, mx = pc.min_max(col).values()
    check(mn.is_valid and lo <= mn.as_py() and mx.as_py() <= hi,
          f"{name} range [{mn}, {mx}] not within [{lo}, {hi}]")


def null_fraction_ok(name, col, rows):
    frac = col.null_count / max(rows, 1)
    check(0.03 <= frac <= 0.06, f"{name} null fraction {frac:.4f} not ~4.5%")


def share(amount, part, whole):
    """round half up of amount * part / whole, in integer cents."""
    return pc.divide(pc.add(pc.multiply(pc.multiply(amount, 2), part), whole), pc.multiply(whole, 2))


def eq_or_both_null(a, b):
    return pc.or_(pc.and_(pc.is_null(a), pc.is_null(b)), pc.fill_null(pc.equal(a, b), False))


# --- sales ------------------------------------------------------------------------------

SS_KEYS = ["ss_sold_date_sk", "ss_sold_time_sk", "ss_item_sk", "ss_customer_sk", "ss_cdemo_sk",
           "ss_hdemo_sk", "ss_addr_sk", "ss_store_sk", "ss_promo_sk"]
SS_AMOUNTS = ["ss_wholesale_cost", "ss_list_price", "ss_sales_price", "ss_ext_discount_amt",
              "ss_ext_sales_price", "ss_ext_wholesale_cost", "ss_ext_list_price", "ss_ext_tax",
              "ss_coupon_amt", "ss_net_paid", "ss_net_paid_inc_tax", "ss_net_profit"]


def check_pricing(t, p, amounts, rows):
    c = {a: cents(t.column(f"{p}_{a}")) for a in amounts}
    q = i64(t.column(f"{p}_quantity"))
    w, l, s = c["wholesale_cost"], c["list_price"], c["sales_price"]
    all_true(pc.and_(pc.greater_equal(w, 100), pc.less_equal(w, 10000)), f"{p}: wholesale in 1.00..100.00")
    all_true(pc.and_(pc.less_equal(w, l), pc.less_equal(l, pc.multiply(w, 2))), f"{p}: wholesale <= list <= 2*wholesale")
    all_true(pc.and_(pc.greater_equal(s, 0), pc.less_equal(s, l)), f"{p}: 0 <= sales <= list")
    all_true(pc.equal(c["ext_discount_amt"], pc.multiply(q, pc.subtract(l, s))), f"{p}: ext_discount = q*(list-sales)")
    all_true(pc.equal(c["ext_sales_price"], pc.multiply(q, s)), f"{p}: ext_sales = q*sales")
    all_true(pc.equal(c["ext_wholesale_cost"], pc.multiply(q, w)), f"{p}: ext_wholesale = q*wholesale")
    all_true(pc.equal(c["ext_list_price"], pc.multiply(q, l)), f"{p}: ext_list = q*list")
    es, cp, np_, tax = c["ext_sales_price"], c["coupon_amt"], c["net_paid"], c["ext_tax"]
    all_true(pc.and_(pc.greater_equal(cp, 0), pc.less_equal(cp, es)), f"{p}: 0 <= coupon <= ext_sales")
    all_true(pc.equal(np_, pc.subtract(es, cp)), f"{p}: net_paid = ext_sales - coupon")
    all_true(pc.and_(pc.greater_equal(tax, 0), pc.less_equal(pc.multiply(tax, 100), pc.add(pc.multiply(np_, 9), 50))),
             f"{p}: ext_tax within 0..9% of net_paid")
    all_true(pc.equal(c["net_paid_inc_tax"], pc.add(np_, tax)), f"{p}: net_paid_inc_tax = net_paid + ext_tax")
    all_true(pc.equal(c["net_profit"], pc.subtract(np_, c["ext_wholesale_cost"])), f"{p}: net_profit = net_paid - ext_wholesale")
    coupon_frac = pc.sum(pc.cast(pc.greater(cp, 0), pa.int64())).as_py() / max(rows, 1)
    check(0.15 <= coupon_frac <= 0.25, f"{p}: coupon fraction {coupon_frac:.3f} not ~20%")
    return c


def check_groups(t, p, group_col, shared, files):
    """Dense group numbers in row order, 8..16 distinct items each (only the table's last
    group may be shorter), group-level columns constant, dates non-decreasing."""
    g = t.column(group_col)
    n_groups = len(pc.unique(g))
    check(pc.min(g).as_py() == 1 and pc.max(g).as_py() == n_groups, f"{group_col} not dense from 1")
    diffs = pc.pairwise_diff(i64(g.combine_chunks()))
    all_true(pc.is_in(pc.fill_null(diffs, 0), pa.array([0, 1], pa.int64())), f"{group_col} steps by 0 or 1 in row order")
    item = f"{p}_item_sk"
    agg = t.group_by(group_col).aggregate([(item, "count"), (item, "count_distinct")]
                                          + [(k, "min") for k in shared] + [(k, "max") for k in shared])
    agg = agg.sort_by(group_col)
    cnt = agg.column(f"{item}_count")
    all_true(pc.equal(cnt, agg.column(f"{item}_count_distinct")), f"{p}: items distinct within a {group_col}")
    short = pc.sum(pc.cast(pc.less(cnt.slice(0, max(len(cnt) - 1, 0)), 8), pa.int64())).as_py() or 0
    check(short == 0, f"{p}: {short} groups other than the last hold fewer than 8 items")
    check(pc.max(cnt).as_py() <= 16, f"{p}: group with more than 16 items")
    for k in shared:
        all_true(pc.equal(agg.column(f"{k}_min"), agg.column(f"{k}_max")), f"{k} constant per {group_col}")
    d = pc.drop_null(agg.column(f"{shared[0]}_min").combine_chunks())
    all_true(pc.greater_equal(pc.pairwise_diff(d), 0), f"{shared[0]} non-decreasing with {group_col}")
    return n_groups


def check_store_sales(t, files, rows):
    fields = [(k, pa.int32(), k != "ss_item_sk") for k in SS_KEYS]
    fields += [("ss_ticket_number", pa.int64(), False), ("ss_quantity", pa.int32(), True)]
    fields += [(a, D72, True) for a in SS_AMOUNTS]
    check_schema("store_sales", t, fields)
    check(t.num_rows == rows, f"store_sales rows {t.num_rows} != {rows}")
    rng("ss_sold_date_sk", t.column("ss_sold_date_sk"), SALES_FIRST, SALES_LAST)
    rng("ss_sold_time_sk", t.column("ss_sold_time_sk"), 28800, 75599)
    rng("ss_quantity", t.column("ss_quantity"), 1, 100)
    rng("ss_hdemo_sk", t.column("ss_hdemo_sk"), 1, 7200)
    rng("ss_cdemo_sk", t.column("ss_cdemo_sk"), 1, 1920800)
    for k in ["ss_item_sk", "ss_ticket_number", "ss_quantity"] + SS_AMOUNTS:
        check(t.column(k).null_count == 0, f"{k} has nulls")
    for k in SS_KEYS:
        if k != "ss_item_sk":
            null_fraction_ok(k, t.column(k), t.num_rows)
    check_pricing(t, "ss", [a[3:] for a in SS_AMOUNTS], t.num_rows)
    tickets = check_groups(t, "ss", "ss_ticket_number",
                           ["ss_sold_date_sk", "ss_sold_time_sk", "ss_customer_sk", "ss_store_sk"], files)
    return f"{tickets} tickets"


WS_KEYS = ["ws_sold_date_sk", "ws_sold_time_sk", "ws_ship_date_sk", "ws_item_sk", "ws_bill_customer_sk",
           "ws_bill_cdemo_sk", "ws_bill_hdemo_sk", "ws_bill_addr_sk", "ws_ship_customer_sk", "ws_ship_cdemo_sk",
           "ws_ship_hdemo_sk", "ws_ship_addr_sk", "ws_web_page_sk", "ws_web_site_sk", "ws_ship_mode_sk",
           "ws_warehouse_sk", "ws_promo_sk"]
WS_AMOUNTS = ["ws_wholesale_cost", "ws_list_price", "ws_sales_price", "ws_ext_discount_amt", "ws_ext_sales_price",
              "ws_ext_wholesale_cost", "ws_ext_list_price", "ws_ext_tax", "ws_coupon_amt", "ws_ext_ship_cost",
              "ws_net_paid", "ws_net_paid_inc_tax", "ws_net_paid_inc_ship", "ws_net_paid_inc_ship_tax",
              "ws_net_profit"]


def check_web_sales(t, files, rows):
    fields = [(k, pa.int32(), k != "ws_item_sk") for k in WS_KEYS]
    fields += [("ws_order_number", pa.int64(), False), ("ws_quantity", pa.int32(), True)]
    fields += [(a, D72, True) for a in WS_AMOUNTS]
    check_schema("web_sales", t, fields)
    check(t.num_rows == rows, f"web_sales rows {t.num_rows} != {rows}")
    rng("ws_sold_date_sk", t.column("ws_sold_date_sk"), SALES_FIRST, SALES_LAST)
    rng("ws_sold_time_sk", t.column("ws_sold_time_sk"), 0, 86399)
    rng("ws_ship_mode_sk", t.column("ws_ship_mode_sk"), 1, 20)
    ship_days = pc.subtract(i64(t.column("ws_ship_date_sk")), i64(t.column("ws_sold_date_sk")))
    all_true(pc.and_(pc.greater_equal(ship_days, 1), pc.less_equal(ship_days, 120)), "ws ship date 1..120 days after sale")
    for k in WS_KEYS:
        if k != "ws_item_sk":
            null_fraction_ok(k, t.column(k), t.num_rows)
    c = check_pricing(t, "ws", [a[3:] for a in WS_AMOUNTS if a not in (
        "ws_ext_ship_cost", "ws_net_paid_inc_ship", "ws_net_paid_inc_ship_tax")], t.num_rows)
    ship = cents(t.column("ws_ext_ship_cost"))
    q = i64(t.column("ws_quantity"))
    all_true(pc.and_(pc.greater_equal(ship, 0),
                     pc.less_equal(ship, pc.multiply(q, pc.divide(pc.add(c["list_price"], 1), 2)))),
             "ws ext_ship_cost within 0..50% of quantity*list")
    all_true(pc.equal(cents(t.column("ws_net_paid_inc_ship")), pc.add(c["net_paid"], ship)),
             "ws net_paid_inc_ship = net_paid + ext_ship_cost")
    all_true(pc.equal(cents(t.column("ws_net_paid_inc_ship_tax")), pc.add(pc.add(c["net_paid"], ship), c["ext_tax"])),
             "ws net_paid_inc_ship_tax = net_paid + ship + tax")
    orders = check_groups(t, "ws", "ws_order_number",
                          ["ws_sold_date_sk", "ws_ship_date_sk", "ws_bill_customer_sk", "ws_web_site_sk"], files)
    same = pc.equal(t.column("ws_ship_customer_sk"), t.column("ws_bill_customer_sk"))
    frac = pc.mean(pc.cast(pc.drop_null(same), pa.float64())).as_py()
    check(0.85 <= frac <= 0.95, f"ws ship-to = bill-to customer on {frac:.3f} of lines, not ~90%")
    return f"{orders} orders"


# --- returns ----------------------------------------------------------------------------

def check_returns(p, t, rows, sales, spec):
    """Returns against their sales: (group, item) is a sale and unique; keys copied from the
    sale; date after the sale's; quantity and amounts derived from the sale."""
    name = spec["name"]
    check(t.num_rows == rows, f"{name} rows {t.num_rows} != {rows}")
    group_r, group_s = spec["group"]
    item_r, item_s = f"{p}_item_sk", f"{spec['sp']}_item_sk"
    keys = t.select([group_r, item_r])
    check(t.group_by([group_r, item_r]).aggregate([]).num_rows == t.num_rows, f"{name}: (group, item) not unique")
    sale_cols = [group_s, item_s, spec["sp"] + "_quantity", spec["sp"] + "_net_paid", spec["sp"] + "_ext_tax",
                 spec["date_s"]] + [s for _, s in spec["copied"]] + spec.get("extra_sale_cols", [])
    s = sales.select(sale_cols).rename_columns([f"s.{c}" for c in sale_cols])
    j = t.join(s, keys=[group_r, item_r], right_keys=[f"s.{group_s}", f"s.{item_s}"], join_type="inner")
    check(j.num_rows == t.num_rows, f"{name}: {t.num_rows - j.num_rows} returns reference no sale")
    del keys
    for r_col, s_col in spec["copied"]:
        all_true(eq_or_both_null(j.column(r_col), j.column(f"s.{s_col}")), f"{name}: {r_col} = sale's {s_col}")
    days = pc.subtract(i64(j.column(spec["date_r"])), i64(j.column(f"s.{spec['date_s']}")))
    all_true(pc.and_(pc.greater_equal(days, 0), pc.less_equal(days, 90)), f"{name}: return date 0..90 days after {spec['date_s']}")
    q = i64(j.column(f"s.{spec['sp']}_quantity"))
    qr = i64(j.column(f"{p}_return_quantity"))
    all_true(pc.and_(pc.greater_equal(qr, 1), pc.less_equal(qr, q)), f"{name}: 1 <= return quantity <= sold")
    amt = cents(j.column(f"{p}_return_amt"))
    tax = cents(j.column(f"{p}_return_tax"))
    all_true(pc.equal(amt, share(cents(j.column(f"s.{spec['sp']}_net_paid")), qr, q)), f"{name}: return_amt = net_paid share")
    all_true(pc.equal(tax, share(cents(j.column(f"s.{spec['sp']}_ext_tax")), qr, q)), f"{name}: return_tax = ext_tax share")
    all_true(pc.equal(cents(j.column(f"{p}_return_amt_inc_tax")), pc.add(amt, tax)), f"{name}: amt_inc_tax = amt + tax")
    fee = cents(j.column(f"{p}_fee"))
    all_true(pc.and_(pc.greater_equal(fee, 50), pc.less_equal(fee, 10000)), f"{name}: fee 0.50..100.00")
    parts = [cents(j.column(f"{p}_{c}")) for c in ("refunded_cash", "reversed_charge", spec["credit"])]
    for part in parts:
        all_true(pc.greater_equal(part, 0), f"{name}: refund parts >= 0")
    all_true(pc.equal(pc.add(pc.add(parts[0], parts[1]), parts[2]), amt), f"{name}: cash + reversed + credit = amt")
    ship = cents(j.column(f"{p}_return_ship_cost"))
    all_true(pc.equal(cents(j.column(f"{p}_net_loss")), pc.subtract(pc.add(pc.add(amt, tax), ship), fee)),
             f"{name}: net_loss = amt_inc_tax + ship - fee")
    if "ship_share_of" in spec:
        all_true(pc.equal(ship, share(cents(j.column(f"s.{spec['ship_share_of']}")), qr, q)),
                 f"{name}: return_ship_cost = ext_ship_cost share")
    null_fraction_ok(spec["date_r"], t.column(spec["date_r"]), t.num_rows)
    return j


def check_store_returns(t, rows, sales):
    fields = [(k, pa.int32(), k != "sr_item_sk") for k in
              ["sr_returned_date_sk", "sr_return_time_sk", "sr_item_sk", "sr_customer_sk", "sr_cdemo_sk",
               "sr_hdemo_sk", "sr_addr_sk", "sr_store_sk", "sr_reason_sk"]]
    fields += [("sr_ticket_number", pa.int64(), False), ("sr_return_quantity", pa.int32(), True)]
    fields += [(a, D72, True) for a in ["sr_return_amt", "sr_return_tax", "sr_return_amt_inc_tax", "sr_fee",
                                        "sr_return_ship_cost", "sr_refunded_cash", "sr_reversed_charge",
                                        "sr_store_credit", "sr_net_loss"]]
    check_schema("store_returns", t, fields)
    rng("sr_return_time_sk", t.column("sr_return_time_sk"), 28800, 75599)
    check_returns("sr", t, rows, sales, {
        "name": "store_returns", "sp": "ss", "group": ("sr_ticket_number", "ss_ticket_number"),
        "date_r": "sr_returned_date_sk", "date_s": "ss_sold_date_sk", "credit": "store_credit",
        "copied": [("sr_customer_sk", "ss_customer_sk"), ("sr_cdemo_sk", "ss_cdemo_sk"),
                   ("sr_hdemo_sk", "ss_hdemo_sk"), ("sr_addr_sk", "ss_addr_sk"), ("sr_store_sk", "ss_store_sk")]})
    return "references store_sales"


def check_web_returns(t, rows, sales):
    keys = ["wr_returned_date_sk", "wr_returned_time_sk", "wr_item_sk", "wr_refunded_customer_sk",
            "wr_refunded_cdemo_sk", "wr_refunded_hdemo_sk", "wr_refunded_addr_sk", "wr_returning_customer_sk",
            "wr_returning_cdemo_sk", "wr_returning_hdemo_sk", "wr_returning_addr_sk", "wr_web_page_sk", "wr_reason_sk"]
    fields = [(k, pa.int32(), k != "wr_item_sk") for k in keys]
    fields += [("wr_order_number", pa.int64(), False), ("wr_return_quantity", pa.int32(), True)]
    fields += [(a, D72, True) for a in ["wr_return_amt", "wr_return_tax", "wr_return_amt_inc_tax", "wr_fee",
                                        "wr_return_ship_cost", "wr_refunded_cash", "wr_reversed_charge",
                                        "wr_account_credit", "wr_net_loss"]]
    check_schema("web_returns", t, fields)
    rng("wr_returned_time_sk", t.column("wr_returned_time_sk"), 0, 86399)
    check_returns("wr", t, rows, sales, {
        "name": "web_returns", "sp": "ws", "group": ("wr_order_number", "ws_order_number"),
        "date_r": "wr_returned_date_sk", "date_s": "ws_ship_date_sk", "credit": "account_credit",
        "ship_share_of": "ws_ext_ship_cost", "extra_sale_cols": ["ws_ext_ship_cost"],
        "copied": [("wr_refunded_customer_sk", "ws_bill_customer_sk"), ("wr_refunded_cdemo_sk", "ws_bill_cdemo_sk"),
                   ("wr_refunded_hdemo_sk", "ws_bill_hdemo_sk"), ("wr_refunded_addr_sk", "ws_bill_addr_sk"),
                   ("wr_returning_customer_sk", "ws_ship_customer_sk"), ("wr_returning_cdemo_sk", "ws_ship_cdemo_sk"),
                   ("wr_returning_hdemo_sk", "ws_ship_hdemo_sk"), ("wr_returning_addr_sk", "ws_ship_addr_sk")]})
    return "references web_sales"


# --- dimensions -------------------------------------------------------------------------

def dense_sk(name, col):
    n = len(col)
    all_true(pc.equal(i64(col), pa.array(range(1, n + 1), pa.int64())), f"{name} is 1..N in row order")


def check_item(t, rows):
    check(t.num_rows == rows, f"item rows {t.num_rows} != {rows}")
    check(t.column("i_item_sk").type == pa.int32() and t.column("i_rec_start_date").type == pa.date32(),
          "item: column types")
    check(t.num_columns == 22, f"item has {t.num_columns} columns, not 22")
    dense_sk("i_item_sk", t.column("i_item_sk"))
    all_true(pc.equal(pc.utf8_length(t.column("i_item_id")), 16), "i_item_id has 16 characters")
    g = t.group_by("i_item_id").aggregate([("i_item_sk", "count"), ("i_rec_end_date", "count"),
                                           ("i_category_id", "min"), ("i_category_id", "max")])
    check(g.num_rows == (rows // 6) * 3 + [0, 1, 2, 2, 3, 3][rows % 6], f"item: {g.num_rows} distinct i_item_id")
    cnt = g.column("i_item_sk_count")
    all_true(pc.and_(pc.greater_equal(cnt, 1), pc.less_equal(cnt, 3)), "item: 1..3 revisions per i_item_id")
    # Exactly one current revision (null end date) per business key (the last run may be cut).
    all_true(pc.less_equal(pc.subtract(cnt, g.column("i_rec_end_date_count")), 1), "item: at most one current revision")
    all_true(pc.equal(g.column("i_category_id_min"), g.column("i_category_id_max")), "item: category constant per id")
    price, cost = cents(t.column("i_current_price")), cents(t.column("i_wholesale_cost"))
    all_true(pc.and_(pc.greater_equal(price, 9), pc.less_equal(price, 9999)), "i_current_price 0.09..99.99")
    all_true(pc.and_(pc.greater_equal(cost, 1), pc.less_equal(cost, price)), "0.01 <= i_wholesale_cost <= price")
    rng("i_category_id", t.column("i_category_id"), 1, 10)
    all_true(pc.less_equal(pc.utf8_length(t.column("i_item_desc")), 200), "i_item_desc at most 200 characters")
    end, start = t.column("i_rec_end_date"), t.column("i_rec_start_date")
    all_true(pc.greater_equal(pc.cast(end, pa.int32()), pc.cast(start, pa.int32())), "item: rec_end >= rec_start")
    return f"{g.num_rows} business keys"


def check_customer(t, rows):
    check(t.num_rows == rows, f"customer rows {t.num_rows} != {rows}")
    check(t.num_columns == 18, f"customer has {t.num_columns} columns, not 18")
    dense_sk("c_customer_sk", t.column("c_customer_sk"))
    check(len(pc.unique(t.column("c_customer_id"))) == t.num_rows, "c_customer_id not unique")
    rng("c_current_hdemo_sk", t.column("c_current_hdemo_sk"), 1, 7200)
    rng("c_current_cdemo_sk", t.column("c_current_cdemo_sk"), 1, 1920800)
    rng("c_birth_month", t.column("c_birth_month"), 1, 12)
    rng("c_birth_year", t.column("c_birth_year"), 1924, 1992)
    rng("c_first_sales_date_sk", t.column("c_first_sales_date_sk"), SALES_FIRST - 3652, SALES_LAST)
    d = pc.subtract(i64(t.column("c_first_shipto_date_sk")), i64(t.column("c_first_sales_date_sk")))
    all_true(pc.and_(pc.greater_equal(d, 0), pc.less_equal(d, 30)), "customer: first ship-to 0..30 days after first sale")
    check(t.column("c_login").null_count == t.num_rows, "c_login should be null")
    null_fraction_ok("c_current_addr_sk", t.column("c_current_addr_sk"), t.num_rows)
    # Birth day valid for its month: build the date and compare.
    day, month, year = t.column("c_birth_day"), t.column("c_birth_month"), t.column("c_birth_year")
    strs = pc.binary_join_element_wise(pc.cast(year, pa.string()), pc.utf8_lpad(pc.cast(month, pa.string()), 2, "0"),
                                       pc.utf8_lpad(pc.cast(day, pa.string()), 2, "0"), "-")
    parsed = pc.strptime(strs, format="%Y-%m-%d", unit="s", error_is_null=True)
    check(parsed.null_count == 0, f"customer: {parsed.null_count} invalid birth dates")
    return "ok"


def check_date_dim(t):
    check(t.num_rows == DATE_ROWS, f"date_dim rows {t.num_rows} != {DATE_ROWS}")
    sk = i64(t.column("d_date_sk"))
    all_true(pc.equal(sk, pa.array(range(DATE_FIRST, DATE_FIRST + t.num_rows), pa.int64())), "d_date_sk dense from 2415022")
    days = i64(pc.cast(t.column("d_date"), pa.int32()))
    all_true(pc.equal(days, pc.subtract(sk, JDN_EPOCH)), "d_date matches d_date_sk")
    dates = t.column("d_date")
    all_true(pc.equal(i64(t.column("d_year")), i64(pc.year(dates))), "d_year")
    all_true(pc.equal(i64(t.column("d_moy")), i64(pc.month(dates))), "d_moy")
    all_true(pc.equal(i64(t.column("d_dom")), i64(pc.day(dates))), "d_dom")
    sunday_first = pc.day_of_week(dates, count_from_zero=True, week_start=7)
    all_true(pc.equal(i64(t.column("d_dow")), i64(sunday_first)), "d_dow (0 = Sunday)")
    all_true(pc.equal(pc.utf8_slice_codeunits(t.column("d_day_name"), 0, 3),
                      pc.strftime(dates, format="%a")), "d_day_name matches the date")
    all_true(pc.equal(t.column("d_weekend"), pc.if_else(pc.is_in(t.column("d_dow"), pa.array([0, 6], pa.int32())), "Y", "N")),
             "d_weekend on Saturday and Sunday")
    all_true(pc.equal(i64(t.column("d_month_seq")),
                      pc.add(pc.multiply(pc.subtract(i64(t.column("d_year")), 1900), 12),
                             pc.subtract(i64(t.column("d_moy")), 1))), "d_month_seq")
    ws = pc.pairwise_diff(i64(t.column("d_week_seq").combine_chunks()))
    sunday = pc.equal(t.column("d_dow").combine_chunks().slice(1), 0)
    all_true(pc.equal(pc.drop_null(ws), pc.cast(sunday, pa.int64())), "d_week_seq advances on Sundays")
    check(pc.sum(pc.cast(pc.equal(t.column("d_current_day"), "Y"), pa.int64())).as_py() == 1, "one current day")
    return "ok"


def check_foreign_keys(tables, dims):
    """Fact keys resolve in the generated dimensions."""
    item_n = tables["item"].num_rows if "item" in tables else dims.get("item")
    cust_n = tables["customer"].num_rows if "customer" in tables else None
    for name, t in tables.items():
        for col in t.column_names:
            if col.endswith("_item_sk") and name != "item" and item_n:
                rng(f"{col} within item", t.column(col), 1, item_n)
            if cust_n and name != "customer" and col.endswith("customer_sk"):
                rng(f"{col} within customer", t.column(col), 1, cust_n)
            if col.endswith("_date_sk") and name not in ("date_dim", "customer"):
                rng(f"{col} within date_dim", t.column(col), DATE_FIRST, DATE_FIRST + DATE_ROWS - 1)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir", nargs="?", help="one store_sales directory (with --rows)")
    ap.add_argument("--rows", type=int, help="store_sales rows of DIR")
    ap.add_argument("--all", metavar="DIR", help="a multi-table output directory (with --scale)")
    ap.add_argument("--scale", type=float)
    args = ap.parse_args()
    summary = []
    if args.dir:
        if args.rows is None:
            ap.error("DIR needs --rows")
        t, files = read_dir(args.dir)
        summary.append(f"store_sales: {files} files, {t.num_rows} rows, {check_store_sales(t, files, args.rows)}")
    elif args.all:
        if args.scale is None:
            ap.error("--all needs --scale")
        present = {n for n in os.listdir(args.all) if os.path.isdir(os.path.join(args.all, n))}
        tables = {}
        for n in sorted(present):
            tables[n], files = read_dir(os.path.join(args.all, n))
            summary.append(f"{n}: {files} files, {tables[n].num_rows} rows")
        rows = {n: round(per * args.scale) for n, per in PER_SF.items()}
        if "store_sales" in tables:
            summary.append("store_sales: " + check_store_sales(tables["store_sales"], 0, rows["store_sales"]))
        if "web_sales" in tables:
            summary.append("web_sales: " + check_web_sales(tables["web_sales"], 0, rows["web_sales"]))
        if "store_returns" in tables:
            check("store_sales" in tables, "store_returns needs store_sales in the same directory")
            if "store_sales" in tables:
                summary.append("store_returns: " + check_store_returns(tables["store_returns"], rows["store_returns"],
                                                                     tables["store_sales"]))
        if "web_returns" in tables:
            check("web_sales" in tables, "web_returns needs web_sales in the same directory")
            if "web_sales" in tables:
                summary.append("web_returns: " + check_web_returns(tables["web_returns"], rows["web_returns"],
                                                                 tables["web_sales"]))
        dim_rows = {"item": 18_000, "customer": 100_000} if args.scale <= 1 else {}
        if "item" in tables:
            summary.append("item: " + check_item(tables["item"], dim_rows.get("item", tables["item"].num_rows)))
        if "customer" in tables:
            summary.append("customer: " + check_customer(tables["customer"],
                                                         dim_rows.get("customer", tables["customer"].num_rows)))
        if "date_dim" in tables:
            summary.append("date_dim: " + check_date_dim(tables["date_dim"]))
        check_foreign_keys(tables, {})
    else:
        ap.error("give DIR --rows N or --all DIR --scale SF")
    for s in summary:
        print(s)
    print("OK" if not failures else "FAILED")
    for f in failures:
        print("  FAIL:", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
