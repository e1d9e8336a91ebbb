#!/usr/bin/env python3
"""Child-process operations of the benchmark runner: everything that imports pyarrow,
deltalake or numpy runs here, in its own process, never in the runner.

Usage: python child.py OP SPEC_JSON_FILE

Prints one JSON object on the last line of stdout. Operations:

  versions        versions of the Python packages
  convert         turn a directory of Parquet files into a Delta table in place
                  (deltalake.convert_to_deltalake: the files stay, with their stats)
  table_info      rows, sum of an amount column, columns, version, partition columns and
                  per-file stats (a partition column's value counts as the file's min and max)
  source_info     rows and sum of an amount column of a Parquet directory, and distinct
                  values of some columns (partitioned load expectations)
  merge_sources   build the MERGE source tables of a target (see scenarios.py)
  clustered_files write a Parquet directory's rows sorted by two key columns into files of
                  about a target size (the clustered upsert target, converted afterwards)
  upsert_source   build the source of an upsert into the load rows (UPSERT_CASES in
                  scenarios.py) and its expected outcome
  count_where     rows, non-null amounts and amount sum matching simple predicates
                  (DELETE and UPDATE expectations)
  prefix_table    write a Delta table's rows plus a long-common-prefix string column derived
                  from an integer key into a new Delta table with write_deltalake (the
                  zorder/long_prefix input)
  probe_values    seeded random point-probe values per column of a Delta table (the
                  clustering analysis)
  op              THE MEASURED OPERATION on the delta-rs side: write, merge, compact,
                  zorder, delete or update, as described by the spec (see scenarios.py)
"""

import json
import os
import sys
import time


def _pa():
    import pyarrow as pa

    return pa


def versions(_spec):
    import importlib.metadata as md

    out = {}
    for pkg in ("deltalake", "pyarrow", "polars", "pandas", "numpy", "matplotlib"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = None
    return out


def convert(spec):
    import deltalake

    deltalake.convert_to_deltalake(spec["path"])
    dt = deltalake.DeltaTable(spec["path"])
    return {"version": dt.version(), "files": len(dt.file_uris())}


def _sum_str(column):
    import pyarrow.compute as pc

    s = pc.sum(column).as_py()
    return None if s is None else str(s)


def table_info(spec):
    """Rows, amount sum, columns and per-file stats of a Delta table (via deltalake). For a
    partition column, which has no stats of its own (its value lives in the add action, not
    in the data file), the file's partition value is its min and max; a null partition value
    marks the column all-null in that file (`all_null`), so no comparison can match it."""
    import deltalake
    import pyarrow as pa

    dt = deltalake.DeltaTable(spec["path"])
    amount = spec.get("amount_col")
    cols = [amount] if amount else []
    if "deletionVectors" in (dt.protocol().reader_features or []):
        # to_pyarrow_table refuses deletion vectors; delta-rs's DataFusion scan applies them.
        select = ", ".join(f'"{c}"' for c in cols) or "*"
        batches = deltalake.QueryBuilder().register("t", dt).execute(f"SELECT {select} FROM t")
        t = pa.table(batches.read_all())
    else:
        t = dt.to_pyarrow_table(columns=cols or None)
    out = {
        "rows": t.num_rows,
        "sum": _sum_str(t.column(amount)) if amount else None,
        "columns": [f.name for f in dt.schema().fields],
        "version": dt.version(),
    }
    part_cols = list(dt.metadata().partition_columns)
    adds = pa.table(dt.get_add_actions(flatten=True))
    stats_cols = spec.get("stats_cols", [])
    files = []
    partitions = set()
    for row in adds.to_pylist():
        f = {"path": row["path"], "size": row["size_bytes"], "rows": row.get("num_records")}
        f["min"] = {c: row.get(f"min.{c}") for c in stats_cols}
        f["max"] = {c: row.get(f"max.{c}") for c in stats_cols}
        if part_cols:
            values = {c: row.get(f"partition.{c}") for c in part_cols}
            partitions.add(tuple(values.values()))
            f["partition"] = values
            for c in stats_cols:
                if c in values:
                    f["min"][c] = f["max"][c] = values[c]
            f["all_null"] = [c for c in stats_cols if c in values and values[c] is None]
        files.append(f)
    files.sort(key=lambda f: f["path"])
    out["files"] = files
    out["partition_columns"] = part_cols
    out["partitions"] = len(partitions) if part_cols else None
    return out


def source_info(spec):
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    d = ds.dataset(spec["path"], format="parquet")
    distinct_cols = spec.get("distinct_cols", [])
    rows, total = 0, None
    seen = {c: set() for c in distinct_cols}
    for b in d.to_batches(columns=[spec["amount_col"], *distinct_cols]):
        rows += b.num_rows
        s = pc.sum(b.column(0)).as_py()
        if s is not None:
            total = s if total is None else total + s
        for i, c in enumerate(distinct_cols, start=1):
            seen[c].update(pc.unique(b.column(i)).to_pylist())
    out = {"rows": rows, "sum": None if total is None else str(total), "columns": d.schema.names}
    if distinct_cols:
        # Distinct values, null included: the partitions a table partitioned by the column has.
        out["distinct"] = {c: len(v) for c, v in seen.items()}
    return out


# --- deterministic sampling (independent of numpy's random generators) ----------------

_MASK = (1 << 64) - 1


def _mix(z):
    """splitmix64 finaliser on a numpy uint64 array (wrapping arithmetic)."""
    import numpy as np

    z = z + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _u01(seed, salt, unit, n):
    """n uniforms in [0, 1) for (seed, salt, unit), stable across numpy versions."""
    import numpy as np

    base = np.uint64(((seed * 1_000_003 + salt * 7_919 + unit * 104_729) ^ 0x5DEECE66D) & _MASK)
    with np.errstate(over="ignore"):
        z = _mix(np.arange(n, dtype=np.uint64) ^ _mix(np.array([base], dtype=np.uint64))[0])
    return (z >> np.uint64(11)).astype(np.float64) / float(1 << 53)


SALT_FILES, SALT_MATCHED, SALT_NOT_MATCHED, SALT_CHANGED = 1, 2, 3, 4


def merge_sources(spec):
    """Builds one MERGE source per case from the target's files, as Delta's merge benchmark
    does: pick round(fileMatchedFraction x files) files (at least one); from their rows take
    a rowMatchedFraction sample unchanged (matches the target) and an independent
    rowNotMatchedFraction sample with fresh keys (never matches). Optionally a fraction of
    the matched rows gets its amount raised by 1.00 (changed rows). Writes one Parquet file
    per case and returns the expected outcome of each case."""
    import decimal

    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    target = spec["target"]
    key, item, amount = spec["key_col"], spec["item_col"], spec["amount_col"]
    seed = spec["seed"]
    info = table_info({"path": target, "amount_col": amount, "stats_cols": [key]})
    paths = [f["path"] for f in info["files"]]
    target_sum = decimal.Decimal(info["sum"])
    max_key = max(f["max"][key] for f in info["files"] if f["max"][key] is not None)
    schema = pq.read_schema(f"{target}/{paths[0]}")
    file_rank = np.argsort(_u01(seed, SALT_FILES, 0, len(paths)), kind="stable")
    cache = {}

    def rows_of(i):
        if i not in cache:
            cache[i] = pq.read_table(f"{target}/{paths[i]}")
        return cache[i]

    out = {}
    for case in spec["cases"]:
        k = max(1, round(case["file_fraction"] * len(paths)))
        chosen = sorted(int(i) for i in file_rank[:k])
        matched, not_matched = [], []
        changed = 0
        for i in chosen:
            t = rows_of(i)
            n = t.num_rows
            m_mask = _u01(seed, SALT_MATCHED, i, n) < case["row_matched"]
            nm_mask = _u01(seed, SALT_NOT_MATCHED, i, n) < case["row_not_matched"]
            m = t.filter(pa.array(m_mask))
            if case.get("row_changed", 0) > 0 and m.num_rows:
                c_mask = _u01(seed, SALT_CHANGED, i, n)[m_mask] < case["row_changed"]
                changed += int(c_mask.sum())
                raised = pc.cast(pc.add(m.column(amount), pa.scalar(decimal.Decimal("1.00"))),
                                 m.schema.field(amount).type)
                new_amt = pc.if_else(pa.array(c_mask), raised, m.column(amount))
                m = m.set_column(m.schema.get_field_index(amount), m.schema.field(amount), new_amt)
            matched.append(m)
            not_matched.append(t.filter(pa.array(nm_mask)))
        m = pa.concat_tables(matched) if matched else schema.empty_table()
        nm = pa.concat_tables(not_matched) if not_matched else schema.empty_table()
        start = max_key + 1
        fresh = pa.array(np.arange(start, start + nm.num_rows, dtype=np.int64), schema.field(key).type)
        nm = nm.set_column(nm.schema.get_field_index(key), nm.schema.field(key), fresh)
        src = pa.concat_tables([m, nm]).cast(schema)
        path = f"{spec['out']}/{case['name']}.parquet"
        pq.write_table(src, path)

        def dsum(t):
            s = pc.sum(t.column(amount)).as_py() if t.num_rows else None
            return s if s is not None else decimal.Decimal(0)

        m_sum, nm_sum = dsum(m), dsum(nm)
        kind = case["kind"]
        even = 0
        if nm.num_rows:
            even = int(pc.sum(pc.cast(pc.equal(pc.bit_wise_and(nm.column(item), 1), 0), pa.int64())).as_py() or 0)
        if kind in ("insert_only", "multiple_insert_only"):
            rows, total = info["rows"] + nm.num_rows, target_sum + nm_sum
        elif kind == "delete_only":
            rows, total = info["rows"] - m.num_rows, target_sum - m_sum
        elif kind == "upsert":
            rows, total = info["rows"] + nm.num_rows, target_sum + nm_sum
        elif kind == "upsert_changed_only":
            rows, total = info["rows"] + nm.num_rows, target_sum + nm_sum + changed * decimal.Decimal("1.00")
        else:
            raise ValueError(f"unknown merge kind {kind}")
        out[case["name"]] = {
            "source": path,
            "source_rows": src.num_rows,
            "matched_rows": m.num_rows,
            "not_matched_rows": nm.num_rows,
            "not_matched_even_items": even,
            "changed_rows": changed,
            "files_matched": len(chosen),
            "target_files": len(paths),
            "expected_rows": rows,
            "expected_sum": str(total),
        }
    return {"target_rows": info["rows"], "target_sum": info["sum"], "cases": out}


def _sorted_pieces(files, key, item):
    """The rows of `files` sorted by (key, item), a piece at a time, if the files hold
    non-decreasing key ranges in name order (as the generator writes them: whole row ranges
    of a table in ticket order) with at most one key value shared by neighbours: each file's
    rows except those of its highest key, which go on with the next file, sorted. Raises
    ValueError when the pieces come out of order."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    carry, last = None, None
    for i, f in enumerate(files):
        t = pq.read_table(f)
        if carry is not None:
            t = pa.concat_tables([carry, t])
        if t.column(key).null_count or t.column(item).null_count:
            raise ValueError("null keys")
        if i < len(files) - 1 and t.num_rows:
            top = pc.equal(t.column(key), pc.max(t.column(key)))
            carry, t = t.filter(top), t.filter(pc.invert(top))
        else:
            carry = None
        if not t.num_rows:
            continue
        t = t.sort_by([(key, "ascending"), (item, "ascending")])
        first = (t.column(key)[0].as_py(), t.column(item)[0].as_py())
        if last is not None and first < last:
            raise ValueError(f"files not in {key} order")
        last = (t.column(key)[-1].as_py(), t.column(item)[-1].as_py())
        yield t


def clustered_files(spec):
    """Writes the rows of the Parquet directory `source` sorted by (key, item) into `out` as
    part-NNNNN.parquet files of about `file_size` bytes (rows per file from the size of the
    first 64Ki sorted rows written alone). Streams the generator's files when they come in
    key order; otherwise sorts the whole table in memory."""
    import glob

    import pyarrow as pa
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    key, item = spec["key_col"], spec["item_col"]
    files = sorted(glob.glob(os.path.join(spec["source"], "*.parquet")))
    schema = ds.dataset(files, format="parquet").schema
    os.makedirs(spec["out"], exist_ok=True)
    state = {"rows_per_file": None, "writer": None, "in_file": 0, "files": 0, "rows": 0}

    def close():
        if state["writer"] is not None:
            state["writer"].close()
            state["writer"] = None

    def emit(t):
        if state["rows_per_file"] is None:
            sample = t.slice(0, 1 << 16)
            buf = pa.BufferOutputStream()
            pq.write_table(sample, buf)
            state["rows_per_file"] = max(1, round(spec["file_size"] * sample.num_rows / buf.getvalue().size))
        per = state["rows_per_file"]
        off = 0
        while off < t.num_rows:
            if state["writer"] is None:
                path = os.path.join(spec["out"], f"part-{state['files']:05d}.parquet")
                state["writer"] = pq.ParquetWriter(path, schema)
                state["files"] += 1
                state["in_file"] = 0
            n = min(per - state["in_file"], t.num_rows - off)
            state["writer"].write_table(t.slice(off, n), row_group_size=per)
            state["in_file"] += n
            state["rows"] += n
            off += n
            if state["in_file"] >= per:
                close()

    streamed = True
    try:
        for t in _sorted_pieces(files, key, item):
            emit(t.cast(schema))
    except ValueError:
        # Not in key order: start again from the whole table, sorted in memory.
        streamed = False
        close()
        for f in glob.glob(os.path.join(spec["out"], "part-*.parquet")):
            os.unlink(f)
        state.update(files=0, rows=0, in_file=0)
        t = ds.dataset(files, format="parquet").to_table()
        emit(t.sort_by([(key, "ascending"), (item, "ascending")]).cast(schema))
    close()
    return {"files": state["files"], "rows": state["rows"], "rows_per_file": state["rows_per_file"],
            "streamed": streamed}


SALT_UPSERT_MATCHED, SALT_UPSERT_NEW = 5, 6


def upsert_source(spec):
    """The source of one upsert case (UPSERT_CASES in scenarios.py) into the Delta table
    `target`, written to `out` as one Parquet file. Rows in range: those whose key is at least
    max - floor(key_range x (max - min)). Of them, round(row_matched x in-range rows) are
    sampled uniformly (the smallest seeded hashes per row; rows whose (key, item) is null or
    not unique in the target are never sampled, as they would not match exactly once) and get
    the amount raised by 1.00; round(row_not_matched x in-range rows), sampled independently,
    become new rows with fresh keys max+1, max+2, ... Returns the expected result: rows
    target + new, amount sum target + new rows' amounts + 1.00 per non-null changed amount."""
    import decimal

    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    target = spec["target"]
    key, item, amount = spec["key_col"], spec["item_col"], spec["amount_col"]
    seed, unit = spec["seed"], spec["unit"]
    info = table_info({"path": target, "amount_col": amount, "stats_cols": [key]})
    files = info["files"]
    paths = [f"{target}/{f['path']}" for f in files]
    schema = pq.read_schema(paths[0])
    keys = [pq.read_table(p, columns=[key, item]) for p in paths]
    offsets = np.cumsum([0] + [k.num_rows for k in keys])
    allkeys = pa.concat_tables(keys)
    n = allkeys.num_rows
    k_null = pc.or_(pc.is_null(allkeys.column(key)), pc.is_null(allkeys.column(item)))
    k_null = np.asarray(k_null.combine_chunks().to_numpy(zero_copy_only=False), dtype=bool)
    kk = np.asarray(pc.fill_null(allkeys.column(key), 0).combine_chunks().to_numpy(), dtype=np.int64)
    ii = np.asarray(pc.fill_null(allkeys.column(item), 0).combine_chunks().to_numpy(), dtype=np.int64)
    del keys, allkeys
    lo, hi = int(kk[~k_null].min()), int(kk[~k_null].max())
    first_key = hi - int(spec["key_range"] * (hi - lo))
    in_range = (kk >= first_key) & ~k_null
    # (key, item) pairs that occur more than once: a source row with such a key would match
    # several target rows, which MERGE rejects.
    order = np.lexsort((ii, kk))
    same = (kk[order][1:] == kk[order][:-1]) & (ii[order][1:] == ii[order][:-1])
    dup_sorted = np.zeros(n, dtype=bool)
    dup_sorted[1:] |= same
    dup_sorted[:-1] |= same
    dup = np.empty(n, dtype=bool)
    dup[order] = dup_sorted
    del order, same, dup_sorted
    eligible = in_range & ~dup
    n_range = int(in_range.sum())
    k_matched = round(spec["row_matched"] * n_range)
    k_new = round(spec["row_not_matched"] * n_range)

    def pick(mask, salt, k):
        idx = np.flatnonzero(mask)
        u = _u01(seed, salt, unit, n)[idx]
        return np.sort(idx[np.argsort(u, kind="stable")[:k]])

    matched_idx = pick(eligible, SALT_UPSERT_MATCHED, k_matched)
    new_idx = pick(in_range, SALT_UPSERT_NEW, k_new)
    if len(matched_idx) < k_matched:
        raise ValueError(f"only {len(matched_idx)} rows with unique keys in range, {k_matched} wanted")

    matched, new = [], []
    files_with_matches = 0
    for i, p in enumerate(paths):
        lo_i, hi_i = offsets[i], offsets[i + 1]
        m = matched_idx[(matched_idx >= lo_i) & (matched_idx < hi_i)] - lo_i
        w = new_idx[(new_idx >= lo_i) & (new_idx < hi_i)] - lo_i
        if not len(m) and not len(w):
            continue
        t = pq.read_table(p)
        if len(m):
            files_with_matches += 1
            matched.append(t.take(pa.array(m)))
        if len(w):
            new.append(t.take(pa.array(w)))
    m = pa.concat_tables(matched).cast(schema) if matched else schema.empty_table()
    nm = pa.concat_tables(new).cast(schema) if new else schema.empty_table()
    a = m.schema.get_field_index(amount)
    raised = pc.cast(pc.add(m.column(amount), pa.scalar(decimal.Decimal("1.00"))), m.schema.field(amount).type)
    m = m.set_column(a, m.schema.field(amount), raised)
    changed = m.num_rows - m.column(amount).null_count
    fresh = pa.array(np.arange(hi + 1, hi + 1 + nm.num_rows, dtype=np.int64), schema.field(key).type)
    nm = nm.set_column(nm.schema.get_field_index(key), nm.schema.field(key), fresh)
    src = pa.concat_tables([m, nm]).cast(schema)
    pq.write_table(src, spec["out"])

    def dsum(t):
        s = pc.sum(t.column(amount)).as_py() if t.num_rows else None
        return s if s is not None else decimal.Decimal(0)

    total = decimal.Decimal(info["sum"]) + dsum(nm) + changed * decimal.Decimal("1.00")
    return {
        "source": spec["out"],
        "source_rows": src.num_rows,
        "matched_rows": m.num_rows,
        "not_matched_rows": nm.num_rows,
        "changed_rows": changed,
        "rows_in_key_range": n_range,
        "duplicate_key_rows": int(dup.sum()),
        "first_key": first_key,
        "max_key": hi,
        "target_rows": info["rows"],
        "target_files": len(files),
        "target_bytes": sum(f["size"] for f in files),
        "files_in_key_range": sum(1 for f in files if f["max"][key] is not None and f["max"][key] >= first_key),
        "files_with_matches": files_with_matches,
        "expected_rows": info["rows"] + nm.num_rows,
        "expected_sum": str(total),
    }


def count_where(spec):
    """Rows, rows with a non-null amount and amount sum of a Delta table matching each
    predicate, evaluated by pyarrow (not by either engine). A predicate is a list of
    [column, op, value] conjuncts."""
    import deltalake
    import pyarrow.compute as pc

    ops = {"<": pc.less, "<=": pc.less_equal, ">": pc.greater, ">=": pc.greater_equal, "=": pc.equal}
    amount = spec["amount_col"]
    cols = sorted({c for p in spec["predicates"].values() for c, _, _ in p} | {amount})
    t = deltalake.DeltaTable(spec["path"]).to_pyarrow_table(columns=cols)
    out = {}
    for name, conj in spec["predicates"].items():
        mask = None
        for col, op, value in conj:
            m = pc.fill_null(ops[op](t.column(col), value), False)
            mask = m if mask is None else pc.and_(mask, m)
        hit = t.filter(mask)
        s = pc.sum(hit.column(amount)).as_py()
        out[name] = {"rows": hit.num_rows, "non_null": hit.num_rows - hit.column(amount).null_count,
                     "sum": str(s) if s is not None else "0"}
    return {"rows": t.num_rows, "sum": _sum_str(t.column(amount)), "matches": out}


def prefix_table(spec):
    """Writes the rows of the Delta table `source` (its files in name order, streamed) plus
    the string column `column` = `prefix` + `key_col` zero-padded to `digits` digits (null
    where the key is null) into a new Delta table `out`, once, with deltalake.write_deltalake
    (target_file_size `file_size`, so it starts in about as many files as `source`)."""
    import deltalake
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    src = deltalake.DeltaTable(spec["source"])
    files = sorted(src.file_uris())
    d = ds.dataset(files, format="parquet")
    schema = d.schema.append(pa.field(spec["column"], pa.string()))
    prefix = pa.scalar(spec["prefix"], pa.string())

    def batches():
        for b in d.to_batches():
            key = pc.cast(b.column(spec["key_col"]), pa.string())
            padded = pc.utf8_lpad(key, width=spec["digits"], padding="0")
            value = pc.binary_join_element_wise(prefix, padded, "")
            yield pa.RecordBatch.from_arrays([*b.columns, value], schema=schema)

    reader = pa.RecordBatchReader.from_batches(schema, batches())
    deltalake.write_deltalake(spec["out"], reader, mode="error", target_file_size=spec["file_size"])
    dt = deltalake.DeltaTable(spec["out"])
    return {"version": dt.version(), "files": len(dt.file_uris())}


def probe_values(spec):
    """`n` point-probe values per column of the Delta table `path`, drawn with
    random.Random(f"clustering:{seed}:{column}"): integer columns uniformly from [min, max]
    of the column's values, string columns uniformly (with replacement) from its distinct
    non-null values in sorted order. Python's random, so the values are the same on every
    machine and numpy version."""
    import random

    import deltalake
    import pyarrow as pa
    import pyarrow.compute as pc

    t = deltalake.DeltaTable(spec["path"]).to_pyarrow_table(columns=spec["columns"])
    out = {}
    for col in spec["columns"]:
        c = t.column(col)
        label = f"clustering:{spec['seed']}:{col}"
        rng = random.Random(label)
        if pa.types.is_integer(c.type):
            mm = pc.min_max(c).as_py()
            lo, hi = mm["min"], mm["max"]
            values = [rng.randint(lo, hi) for _ in range(spec["n"])]
            out[col] = {"kind": "integer, uniform over [min, max]", "min": lo, "max": hi, "seed": label,
                        "values": values}
        else:
            distinct = sorted(v for v in pc.unique(c).to_pylist() if v is not None)
            values = [rng.choice(distinct) for _ in range(spec["n"])]
            out[col] = {"kind": "string, uniform over the distinct values", "min": distinct[0],
                        "max": distinct[-1], "distinct": len(distinct), "seed": label, "values": values}
    return out


# --- the measured delta-rs operations ----------------------------------------------------

def op(spec):
    import deltalake

    kind = spec["kind"]
    started = time.monotonic()
    metrics = None
    if kind == "write":
        import pyarrow.dataset as ds

        # write_deltalake takes Arrow C-stream exportables; a scanner's reader streams the
        # files (reading is part of the timed work, as it is for silt).
        reader = ds.dataset(spec["source"], format="parquet").scanner().to_reader()
        deltalake.write_deltalake(spec["table"], reader, mode=spec.get("mode", "overwrite"),
                                  partition_by=spec.get("partition_by") or None)
    elif kind == "merge":
        import pyarrow.parquet as pq

        source = pq.read_table(spec["source"])
        merger = deltalake.DeltaTable(spec["table"]).merge(
            source, spec["predicate"], source_alias="s", target_alias="t")
        for clause in spec["clauses"]:
            cond = clause.get("condition")
            if clause["kind"] == "matched_update_all":
                merger = merger.when_matched_update_all(predicate=cond)
            elif clause["kind"] == "matched_delete":
                merger = merger.when_matched_delete(predicate=cond)
            elif clause["kind"] == "not_matched_insert_all":
                merger = merger.when_not_matched_insert_all(predicate=cond)
            else:
                raise ValueError(f"unknown merge clause {clause['kind']}")
        metrics = merger.execute()
    elif kind == "compact":
        metrics = deltalake.DeltaTable(spec["table"]).optimize.compact(target_size=spec["target_size"])
    elif kind == "zorder":
        metrics = deltalake.DeltaTable(spec["table"]).optimize.z_order(
            spec["columns"], target_size=spec["target_size"])
    elif kind == "delete":
        metrics = deltalake.DeltaTable(spec["table"]).delete(spec["predicate"])
    elif kind == "update":
        metrics = deltalake.DeltaTable(spec["table"]).update(updates=spec["updates"], predicate=spec["predicate"])
    else:
        raise ValueError(f"unknown op kind {kind}")
    return {"op_s": time.monotonic() - started, "metrics": metrics}


OPS = {
    "versions": versions,
    "convert": convert,
    "table_info": table_info,
    "source_info": source_info,
    "merge_sources": merge_sources,
    "clustered_files": clustered_files,
    "upsert_source": upsert_source,
    "count_where": count_where,
    "prefix_table": prefix_table,
    "probe_values": probe_values,
    "op": op,
}


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in OPS:
        print(f"usage: child.py {{{','.join(OPS)}}} SPEC_JSON_FILE", file=sys.stderr)
        return 2
    with open(sys.argv[2]) as f:
        spec = json.load(f)
    result = OPS[sys.argv[1]](spec)
    print(json.dumps(result, default=str), flush=True)
    if sys.argv[1] != "op":
        # Helpers skip interpreter teardown: reading through deltalake's pyarrow dataset
        # leaves Arrow IO threads that sometimes abort the process at exit ("terminate
        # called without an active exception", delta-io/delta-rs#2184, apache/arrow#34314)
        # after the work is done. The measured operations exit normally.
        sys.stderr.flush()
        os._exit(0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
