#!/usr/bin/env python3
"""Test oracle for silt's integration tests.

Independent of silt: data generation with numpy/pyarrow, expected tables written with
delta-rs (`deltalake.write_deltalake`), reads with two readers (delta-rs and polars).

Subcommands (run `oracle.py <cmd> --help`):

  gen             random source files (parquet / csv / json) from a seed
  oracle-write    write a source into a Delta table with delta-rs: the expected table, or
                  a concurrent delta-rs writer (`--mode append`); prints {"rows", "version"}
  compare         compare a table's content (read by delta-rs AND polars) with the expected
  expect-dpo      expected content of a dynamic partition overwrite (polars)
  expect-filter   expected content after `DELETE WHERE p` without delta-rs: the rows of a
                  table (read by polars) for which a polars expression is not true (null
                  counts as not true, as in SQL), or with --keep-matching those for which
                  it is true; written to a parquet file
  dml             DELETE / UPDATE a table in place with delta-rs; prints {"metrics": the
                  dict delta-rs returns, "version": the committed version, null when
                  nothing was committed (no row matched)}
  set-properties  set table properties with delta-rs; prints {"version", "configuration"}
  compact       bin-packing OPTIMIZE with delta-rs (dataChange=false rewrites), optionally of
                one partition; prints {"metrics", "version"}
  inspect         JSON facts about a table (version, files, schema, protocol, last commit)

`gen --format parquet` (variant `base`) suits DELETE/UPDATE tests as it is: `id` int64
unique and never null; `k` int32 from --k-domain (default 0..3, ~8% nulls unless
--no-null-k), a small-domain partition column (`oracle-write --partition-by k`); nullable
(~10%) `s` string (partition-unsafe characters), `d` date (6 values), `ts` timestamp UTC,
`amount` decimal(10,2), `f` float64, `flag` bool. Odd-numbered Parquet files store decimals
as integers (where the precision allows), even-numbered ones as fixed-length bytes. Variant
`decimals` adds `price` decimal(7,2), `big` decimal(28,4) and `digit` decimal(1,0); variant
`fixed` drops `s` and `flag` and adds `price`, `digit` and `qty` int16 (fixed-width
columns only). For example:

  oracle.py gen --seed 1 --rows 5000 --files 3 --out SRC
  oracle.py oracle-write --table T --source SRC --partition-by k
  oracle.py dml --table T --op update --set "f=f * 2" --set "s='x'" --predicate "k = 1 AND d IS NULL"
  oracle.py expect-filter --table T --predicate-py "(col('k') == 2) & (col('id') > 10)" --out E.parquet
  oracle.py compare --table SILT_T --expected-parquet E.parquet

Exit codes: 0 ok, 1 mismatch / failure (with a summary on stderr), 2 usage errors.
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import decimal
import functools
import glob
import json
import os
import sys
from collections import Counter
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

# Partition-key values that need escaping in Hive-style directory names (Spark escapes
# `/ : % = #` among others; space and non-ASCII stay as they are).
S_VALUES = ["a/b", "x:y", "100%", "sp ace", "eq=ual", "ünï", "#h", "plain"]
# A few dates, several before 1970, so that a date partition column has a small domain.
D_VALUES = [
    dt.date(1900, 1, 1),
    dt.date(1955, 6, 15),
    dt.date(1969, 12, 31),
    dt.date(1970, 1, 1),
    dt.date(2000, 2, 29),
    dt.date(2024, 12, 31),
]
TS_MIN_US = int(dt.datetime(1900, 1, 1, tzinfo=dt.timezone.utc).timestamp() * 1_000_000)
TS_MAX_US = int(dt.datetime(2100, 1, 1, tzinfo=dt.timezone.utc).timestamp() * 1_000_000)


def eprint(*a: Any) -> None:
    print(*a, file=sys.stderr)


# --------------------------------------------------------------------------------------------
# gen
# --------------------------------------------------------------------------------------------


def _null_mask(rng: np.random.Generator, n: int, p: float) -> np.ndarray:
    return rng.random(n) < p


def _with_nulls(values: list, mask: np.ndarray) -> list:
    return [None if m else v for v, m in zip(values, mask)]


def _price(rng, n: int):
    """Random cents, a null mask (~10%) and the `price` decimal(7,2) column they make."""
    cents = rng.integers(-(10**6), 10**6, size=n, dtype=np.int64)
    mask = _null_mask(rng, n, 0.1)
    column = pa.array(
        _with_nulls([decimal.Decimal(int(c)).scaleb(-2) for c in cents], mask),
        type=pa.decimal128(7, 2),
    )
    return cents, mask, column


def generate(
    seed: int,
    rows: int,
    variant: str,
    fmt: str,
    id_start: int,
    k_domain: list[int],
    k_nulls: bool,
) -> pa.Table:
    rng = np.random.default_rng(seed)
    n = rows
    ids = (np.arange(n, dtype=np.int64) + id_start)[rng.permutation(n)]
    k_vals = rng.choice(np.array(k_domain, dtype=np.int32), size=n)
    k_mask = _null_mask(rng, n, 0.08) if k_nulls else np.zeros(n, dtype=bool)
    s_idx = rng.integers(0, len(S_VALUES), size=n)
    s_mask = _null_mask(rng, n, 0.1)
    d_idx = rng.integers(0, len(D_VALUES), size=n)
    d_mask = _null_mask(rng, n, 0.1)
    ts_vals = rng.integers(TS_MIN_US, TS_MAX_US, size=n, dtype=np.int64)
    ts_mask = _null_mask(rng, n, 0.1)
    cents = rng.integers(-(10**8), 10**8, size=n, dtype=np.int64)
    amount_mask = _null_mask(rng, n, 0.1)
    f_vals = np.round(rng.normal(0, 1000, size=n), 3)
    f_mask = _null_mask(rng, n, 0.1)
    flag_vals = rng.random(n) < 0.5
    flag_mask = _null_mask(rng, n, 0.1)
    new_vals = rng.integers(-1000, 1000, size=n, dtype=np.int64)
    new_mask = _null_mask(rng, n, 0.2)

    cols: dict[str, pa.Array] = {}
    cols["id"] = pa.array(ids, type=pa.int64())
    k_list = _with_nulls([int(v) for v in k_vals], k_mask)
    if variant == "badtype":
        cols["k"] = pa.array([None if v is None else str(v) for v in k_list], type=pa.string())
    else:
        cols["k"] = pa.array(k_list, type=pa.int32())
    if variant == "long_prefix":
        # Many distinct strings behind a 20-byte common prefix (a fixed-length key prefix
        # cannot tell them apart).
        s_num = rng.integers(0, 1_000_000, size=n)
        cols["s"] = pa.array(
            _with_nulls([f"customer-0000000000-{int(v):07d}" for v in s_num], s_mask), type=pa.string()
        )
    else:
        cols["s"] = pa.array(_with_nulls([S_VALUES[i] for i in s_idx], s_mask), type=pa.string())
    if fmt == "parquet":
        cols["d"] = pa.array(_with_nulls([D_VALUES[i] for i in d_idx], d_mask), type=pa.date32())
        cols["ts"] = pa.array(
            _with_nulls([int(v) for v in ts_vals], ts_mask), type=pa.int64()
        ).cast(pa.timestamp("us", tz="UTC"))
        cols["amount"] = pa.array(
            _with_nulls([decimal.Decimal(int(c)).scaleb(-2) for c in cents], amount_mask),
            type=pa.decimal128(10, 2),
        )
    cols["f"] = pa.array(_with_nulls([float(v) for v in f_vals], f_mask), type=pa.float64())
    cols["flag"] = pa.array(_with_nulls([bool(v) for v in flag_vals], flag_mask), type=pa.bool_())
    if variant == "decimals":
        # Decimals of every Parquet storage: `price` fits 32-bit integers (precision 7),
        # `amount` 64-bit ones, `big` (precision 28) only fixed-length bytes.
        price_cents, price_mask, cols["price"] = _price(rng, n)
        big_units = rng.integers(-(10**15), 10**15, size=n, dtype=np.int64)
        big_mask = _null_mask(rng, n, 0.1)
        cols["big"] = pa.array(
            _with_nulls([decimal.Decimal(int(c) * 10**9).scaleb(-4) for c in big_units], big_mask),
            type=pa.decimal128(28, 4),
        )
        # Precision 1: arrow-rs stores it as 64-bit integers, pyarrow as 32-bit ones.
        cols["digit"] = pa.array(
            _with_nulls([decimal.Decimal(int(c) % 10) for c in price_cents], big_mask),
            type=pa.decimal128(1, 0),
        )
    if variant == "fixed":
        # Fixed-width columns only (silt encodes the small files of such a table itself):
        # no string or boolean; decimals of 32- and 64-bit storage and of precision 1, and a
        # 16-bit integer.
        del cols["s"]
        del cols["flag"]
        price_cents, price_mask, cols["price"] = _price(rng, n)
        cols["digit"] = pa.array(
            _with_nulls([decimal.Decimal(int(c) % 10) for c in price_cents], price_mask),
            type=pa.decimal128(1, 0),
        )
        cols["qty"] = pa.array(
            _with_nulls([int(c) % 30_000 for c in price_cents], price_mask), type=pa.int16()
        )
    if variant == "extra_col":
        cols["new_col"] = pa.array(_with_nulls([int(v) for v in new_vals], new_mask), type=pa.int64())
    if variant == "narrow":
        del cols["f"]
    if variant == "no_k":
        del cols["k"]
    return pa.table(cols)


def write_source(table: pa.Table, out: str, fmt: str, files: int, row_group_rows: int | None) -> list[str]:
    os.makedirs(out, exist_ok=True)
    n = table.num_rows
    files = max(1, min(files, max(n, 1)))
    bounds = [round(i * n / files) for i in range(files + 1)]
    paths = []
    for i in range(files):
        part = table.slice(bounds[i], bounds[i + 1] - bounds[i])
        if fmt == "parquet":
            path = os.path.join(out, f"part-{i:05d}.parquet")
            # Odd-numbered files store decimals as integers where their precision allows
            # (as Spark and arrow-rs do), even-numbered ones as fixed-length bytes (pyarrow's
            # default): readers meet both, in one source.
            pq.write_table(
                part, path, row_group_size=row_group_rows or None, store_decimal_as_integer=i % 2 == 1
            )
        elif fmt == "csv":
            path = os.path.join(out, f"part-{i:05d}.csv")
            pacsv.write_csv(part, path)
        elif fmt == "json":
            path = os.path.join(out, f"part-{i:05d}.json")
            with open(path, "w", encoding="utf-8") as fh:
                for row in part.to_pylist():
                    fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        else:
            raise SystemExit(f"unknown format {fmt}")
        paths.append(path)
    return paths


def cmd_gen(args: argparse.Namespace) -> int:
    k_domain = [int(x) for x in args.k_domain.split(",") if x.strip()]
    table = generate(
        args.seed, args.rows, args.variant, args.format, args.id_start, k_domain, not args.no_null_k
    )
    paths = write_source(table, args.out, args.format, args.files, args.row_group_rows)
    print(
        json.dumps(
            {
                "seed": args.seed,
                "rows": table.num_rows,
                "files": paths,
                "columns": table.column_names,
                "variant": args.variant,
            }
        )
    )
    eprint(f"oracle gen: seed={args.seed} rows={table.num_rows} files={len(paths)} -> {args.out}")
    return 0


# --------------------------------------------------------------------------------------------
# reading sources and tables
# --------------------------------------------------------------------------------------------


def _source_files(path: str, exts: tuple[str, ...]) -> list[str]:
    if os.path.isfile(path):
        return [path]
    out = []
    for root, dirs, files in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not d.startswith((".", "_")))
        for f in sorted(files):
            if f.startswith((".", "_")):
                continue
            if f.lower().endswith(exts):
                out.append(os.path.join(root, f))
    if not out:
        raise SystemExit(f"no {exts} files under {path}")
    return out


def read_source(path: str, fmt: str) -> pa.Table:
    if fmt == "delta":
        from deltalake import DeltaTable

        return DeltaTable(path).to_pyarrow_table()
    if fmt == "parquet":
        tables = [pq.read_table(p) for p in _source_files(path, (".parquet",))]
    elif fmt == "csv":
        # Empty unquoted fields are nulls (as the generator writes them), for strings too.
        opts = pacsv.ConvertOptions(strings_can_be_null=True, quoted_strings_can_be_null=False)
        tables = [pacsv.read_csv(p, convert_options=opts) for p in _source_files(path, (".csv",))]
    elif fmt == "json":
        tables = [pajson.read_json(p) for p in _source_files(path, (".json", ".jsonl", ".ndjson"))]
    else:
        raise SystemExit(f"unknown format {fmt}")
    tables = [t.replace_schema_metadata(None) for t in tables]
    return pa.concat_tables(tables, promote_options="permissive")


def error_line(ex: Exception) -> str:
    """An exception as one line (delta-rs messages span several)."""
    return f"{type(ex).__name__}: {' '.join(str(ex).split())}"


def cmd_oracle_write(args: argparse.Namespace) -> int:
    from deltalake import DeltaTable, write_deltalake
    from deltalake.exceptions import DeltaError

    data = read_source(args.source, args.format)
    kwargs: dict[str, Any] = {"mode": args.mode}
    if args.partition_by:
        kwargs["partition_by"] = [c.strip() for c in args.partition_by.split(",") if c.strip()]
    if args.predicate:
        kwargs["predicate"] = args.predicate
    if args.schema_mode:
        kwargs["schema_mode"] = args.schema_mode
    # A write through a DeltaTable updates its version in place: the version of this very
    # commit, even when other writers commit concurrently (conflict tests).
    target = DeltaTable(args.table) if DeltaTable.is_deltatable(args.table) else args.table
    try:
        write_deltalake(target, data, **kwargs)
    except DeltaError as ex:
        eprint(f"oracle-write {args.table}: {error_line(ex)}")
        return 1
    version = target.version() if isinstance(target, DeltaTable) else DeltaTable(args.table).version()
    print(json.dumps({"rows": data.num_rows, "version": version}))
    eprint(f"oracle-write: {data.num_rows} rows -> {args.table} v{version} ({kwargs})")
    return 0


def read_table_deltalake(path: str, version: int | None = None) -> pa.Table:
    from deltalake import DeltaTable, QueryBuilder

    from deltalake.exceptions import DeltaProtocolError

    table = DeltaTable(path, version=version)
    mapped = table.metadata().configuration.get("delta.columnMapping.mode", "none") != "none"
    try:
        if mapped:
            # `to_pyarrow_table` reads a column-mapped table's columns as nulls (it looks
            # them up by logical name in the files); the DataFusion scan maps them.
            raise DeltaProtocolError("column mapping")
        return table.to_pyarrow_table()
    except DeltaProtocolError:
        # `to_pyarrow_table` refuses reader features such as deletion vectors and v2
        # checkpoints; delta-rs's DataFusion scan reads them.
        batches = QueryBuilder().register("t", table).execute("SELECT * FROM t")
        return pa.table(batches.read_all())


def read_table_polars(path: str) -> pa.Table:
    import polars as pl

    return pl.read_delta(path).to_arrow()


def read_table_duckdb(path: str) -> pa.Table:
    """The table as DuckDB's Delta extension reads it (delta-kernel-rs: deletion vectors
    applied), loaded from the pip package (no download)."""
    import glob

    import duckdb
    import duckdb_extension_delta

    con = duckdb.connect(config={"allow_unsigned_extensions": "true", "autoinstall_known_extensions": "false"})

    def load(package) -> None:
        ext = glob.glob(os.path.join(package.__path__[0], "**", "*.duckdb_extension"), recursive=True)
        con.execute(f"LOAD '{ext[0]}'")

    load(duckdb_extension_delta)
    if "://" in path and not path.startswith("file://"):
        import duckdb_extension_httpfs

        load(duckdb_extension_httpfs)
        # An S3 API endpoint (the tests' moto server): credentials and endpoint from the
        # environment, as silt and delta-rs take them.
        endpoint = os.environ.get("AWS_ENDPOINT_URL", "")
        host = endpoint.split("://", 1)[-1].rstrip("/")
        con.execute(
            "CREATE SECRET (TYPE s3, KEY_ID ?, SECRET ?, REGION ?, ENDPOINT ?, URL_STYLE 'path', USE_SSL ?)",
            [
                os.environ.get("AWS_ACCESS_KEY_ID", ""),
                os.environ.get("AWS_SECRET_ACCESS_KEY", ""),
                os.environ.get("AWS_REGION", os.environ.get("AWS_DEFAULT_REGION", "us-east-1")),
                host,
                not endpoint.startswith("http://"),
            ],
        )
        target = path
    else:
        target = os.path.abspath(path.removeprefix("file://"))
    return con.execute("SELECT * FROM delta_scan(?)", [target]).to_arrow_table()


def read_expected_parquet(path: str) -> pa.Table:
    files = _source_files(path, (".parquet",))
    tables = [pq.read_table(p).replace_schema_metadata(None) for p in files]
    return pa.concat_tables(tables, promote_options="permissive")


# --------------------------------------------------------------------------------------------
# normalisation and comparison
# --------------------------------------------------------------------------------------------


def _norm_type(t: pa.DataType) -> pa.DataType:
    if pa.types.is_dictionary(t):
        return _norm_type(t.value_type)
    if pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return pa.string()
    if pa.types.is_large_binary(t) or pa.types.is_binary_view(t):
        return pa.binary()
    if pa.types.is_timestamp(t):
        # Delta `timestamp` is UTC-adjusted; timestamp_ntz (naive) stays naive.
        return pa.timestamp("us", tz="UTC" if t.tz is not None else None)
    if pa.types.is_large_list(t) or pa.types.is_list_view(t):
        return pa.list_(_norm_type(t.value_type))
    if pa.types.is_list(t):
        return pa.list_(_norm_type(t.value_type))
    if pa.types.is_struct(t):
        return pa.struct([pa.field(f.name, _norm_type(f.type)) for f in t])
    return t


def _loose_type(t: pa.DataType) -> pa.DataType:
    if pa.types.is_integer(t):
        return pa.int64()
    if pa.types.is_floating(t):
        return pa.float64()
    return t


def normalise(table: pa.Table, columns: list[str], loose: bool) -> pa.Table:
    """Same column order, canonical types (strings, timestamps as UTC micros, ...)."""
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise ValueError(f"missing columns {missing} (has {table.column_names})")
    arrays = []
    for c in columns:
        col = table.column(c)
        if pa.types.is_dictionary(col.type):
            col = col.cast(col.type.value_type)
        if pa.types.is_timestamp(col.type) and col.type.tz is not None and col.type.tz != "UTC":
            col = col.cast(pa.timestamp(col.type.unit, tz="UTC"))
        target = _norm_type(col.type)
        if loose:
            target = _loose_type(target)
        if target != col.type:
            col = col.cast(target)
        arrays.append(col)
    return pa.table(arrays, names=columns)


def _hashable(v: Any) -> Any:
    if isinstance(v, dict):
        return tuple(sorted((k, _hashable(x)) for k, x in v.items()))
    if isinstance(v, (list, tuple)):
        return tuple(_hashable(x) for x in v)
    if isinstance(v, float) and v != v:
        return ("NaN",)
    return v


def rows_of(table: pa.Table) -> list[tuple]:
    cols = [table.column(i).to_pylist() for i in range(table.num_columns)]
    return [tuple(_hashable(c[i]) for c in cols) for i in range(table.num_rows)]


def _sort_key(row: tuple) -> tuple:
    return tuple((1, "") if v is None else (0, repr(type(v)), v) for v in row)


def sorted_rows(table: pa.Table) -> list[tuple]:
    rows = rows_of(table)
    try:
        rows.sort(key=_sort_key)
    except TypeError:
        rows.sort(key=lambda r: repr(r))
    return rows


def diff_rows(actual: list[tuple], expected: list[tuple], columns: list[str], limit: int = 8) -> str:
    ca, ce = Counter(actual), Counter(expected)
    extra = list((ca - ce).elements())
    missing = list((ce - ca).elements())
    lines = [
        f"rows: actual {len(actual)}, expected {len(expected)}; "
        f"{len(extra)} unexpected row(s), {len(missing)} missing row(s)",
        f"columns: {columns}",
    ]
    for r in sorted(extra, key=_sort_key)[:limit]:
        lines.append(f"  + {r}")
    for r in sorted(missing, key=_sort_key)[:limit]:
        lines.append(f"  - {r}")
    dup = [r for r, n in ca.items() if n > 1 and ce.get(r, 0) < n]
    if dup:
        lines.append(f"  duplicated in actual: {len(dup)} distinct row(s), e.g. {dup[0]}")
    return "\n".join(lines)


def compare_tables(
    name: str, actual: pa.Table, expected: pa.Table, columns: list[str], loose: bool, check_types: bool
) -> list[str]:
    problems = []
    a = normalise(actual, columns, loose)
    e = normalise(expected, columns, loose)
    if check_types:
        for c in columns:
            ta, te = a.schema.field(c).type, e.schema.field(c).type
            if ta != te:
                problems.append(f"[{name}] column `{c}`: type {ta}, expected {te}")
    if problems:
        # Still compare values after casting the expected side to the actual types.
        try:
            e = pa.table([e.column(c).cast(a.schema.field(c).type) for c in columns], names=columns)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return problems
    ra, re_ = sorted_rows(a), sorted_rows(e)
    if ra != re_:
        problems.append(f"[{name}] content differs:\n" + diff_rows(ra, re_, columns))
    return problems


def cmd_compare(args: argparse.Namespace) -> int:
    readers = [r.strip() for r in args.readers.split(",") if r.strip()]
    # Expected tables are read by delta-rs, unless the comparison leaves it out; an
    # earlier version of them only by delta-rs (time travel).
    if args.expected_version is not None or "deltalake" in readers:
        read_expected = functools.partial(read_table_deltalake, version=args.expected_version)
    else:
        read_expected = read_table_polars
    expected_parts: list[pa.Table] = []
    for e in args.expected or []:
        expected_parts.append(read_expected(e))
    for p in args.expected_parquet or []:
        expected_parts.append(read_expected_parquet(p))
    if not expected_parts:
        eprint("compare: give --expected and/or --expected-parquet")
        return 2
    first = expected_parts[0]
    columns = list(first.column_names)
    if args.columns:
        columns = [c.strip() for c in args.columns.split(",") if c.strip()]
    aligned = []
    for t in expected_parts:
        aligned.append(normalise(t, columns, args.loose_types))
    expected = pa.concat_tables(aligned, promote_options="permissive")

    problems: list[str] = []
    counts = {}
    for r in readers:
        try:
            if r == "deltalake":
                actual = read_table_deltalake(args.table)
            elif r == "polars":
                actual = read_table_polars(args.table)
            elif r == "duckdb":
                actual = read_table_duckdb(args.table)
            else:
                eprint(f"compare: unknown reader {r}")
                return 2
        except Exception as ex:  # noqa: BLE001 - reported as a mismatch
            problems.append(f"[{r}] cannot read {args.table}: {type(ex).__name__}: {ex}")
            continue
        counts[r] = actual.num_rows
        if not args.columns:
            extra_cols = sorted(set(actual.column_names) - set(columns))
            if extra_cols:
                problems.append(f"[{r}] unexpected column(s) {extra_cols}")
        try:
            problems += compare_tables(r, actual, expected, columns, args.loose_types, not args.no_type_check)
        except ValueError as ex:
            problems.append(f"[{r}] {ex}")
    if problems:
        eprint(f"compare {args.table}: MISMATCH (expected {expected.num_rows} rows)")
        for p in problems:
            eprint(p)
        return 1
    print(json.dumps({"ok": True, "rows": expected.num_rows, "readers": counts}))
    return 0


def cmd_expect_dpo(args: argparse.Namespace) -> int:
    """Expected content of a dynamic partition overwrite, computed with polars: rows of the
    old table whose partition is not written by the new data, plus all new rows."""
    import polars as pl

    parts = [c.strip() for c in args.partition_by.split(",") if c.strip()]
    old = pl.from_arrow(read_table_deltalake(args.old_table))
    new = pl.from_arrow(read_source(args.new_source, args.format))
    new = new.select(old.columns)
    touched = new.select(parts).unique()
    kept = old.join(touched, on=parts, how="anti", nulls_equal=True)
    out = pl.concat([kept, new.cast(dict(kept.schema))], how="vertical")
    out.write_parquet(args.out)
    eprint(
        f"expect-dpo: kept {kept.height} old row(s) of untouched partitions + {new.height} new -> {args.out}"
    )
    print(json.dumps({"kept": kept.height, "new": new.height, "touched": touched.height}))
    return 0


def cmd_expect_filter(args: argparse.Namespace) -> int:
    """Expected content of `DELETE WHERE p` computed with polars, independent of delta-rs's
    DELETE, also for tables delta-rs cannot read (deletion vectors; polars applies them):
    the rows for which the polars expression is not true; null is not true, so those stay."""
    import polars as pl

    table = pl.read_delta(args.table)
    predicate = eval(args.predicate_py, {"pl": pl, "col": pl.col})  # noqa: S307 - test input
    matching = table.select(predicate.fill_null(False).alias("matching")).to_series()
    out = table.filter(matching if args.keep_matching else ~matching)
    out.write_parquet(args.out)
    hits = int(matching.sum())
    eprint(f"expect-filter: {hits} of {table.height} row(s) match; wrote {out.height} -> {args.out}")
    print(json.dumps({"rows": table.height, "matching": hits, "written": out.height}))
    return 0


# --------------------------------------------------------------------------------------------
# DML and table properties with delta-rs
# --------------------------------------------------------------------------------------------


def assignment(text: str) -> tuple[str, str]:
    """argparse type of NAME=VALUE options (the value may contain `=`)."""
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name.strip(), value.strip()


def cmd_dml(args: argparse.Namespace) -> int:
    from deltalake import DeltaTable
    from deltalake.exceptions import DeltaError

    updates = dict(args.set or [])
    if (args.op == "update") != bool(updates):
        eprint("dml: --op update needs --set COL=SQLEXPR; --op delete takes none")
        return 2
    try:
        table = DeltaTable(args.table)
        before = table.version()
        if args.op == "delete":
            metrics = table.delete(args.predicate)
        else:
            metrics = table.update(updates=updates, predicate=args.predicate)
    except DeltaError as ex:
        eprint(f"dml {args.op} {args.table}: {error_line(ex)}")
        return 1
    # delta-rs commits nothing when no row matches; otherwise the table object is at the
    # version it committed.
    version = table.version() if table.version() != before else None
    out = json.dumps({"metrics": metrics, "version": version})
    if args.out_json:
        with open(args.out_json, "w", encoding="utf-8") as fh:
            fh.write(out + "\n")
    print(out)
    eprint(f"dml {args.op} {args.table}: version {version}, {metrics}")
    return 0


def cmd_merge(args: argparse.Namespace) -> int:
    """MERGE a Parquet source into a table with delta-rs's merge builder, from a JSON spec:
    {"on", "target_alias", "source_alias", "clauses": [{"kind": matched|not_matched|
    not_matched_by_source, "action": update|update_all|delete|insert|insert_all,
    "cond": SQL or null, "set": {column: SQL}}]}."""
    from deltalake import DeltaTable
    from deltalake.exceptions import DeltaError

    spec = json.loads(args.spec)
    source = read_source(args.source, "parquet")
    try:
        table = DeltaTable(args.table)
        before = table.version()
        m = table.merge(
            source,
            spec["on"],
            source_alias=spec["source_alias"],
            target_alias=spec["target_alias"],
            merge_schema=bool(spec.get("merge_schema")),
        )
        for c in spec["clauses"]:
            kind, action, cond, sets = c["kind"], c["action"], c.get("cond"), c.get("set") or {}
            if kind == "matched":
                if action == "update":
                    m = m.when_matched_update(sets, predicate=cond)
                elif action == "update_all":
                    m = m.when_matched_update_all(predicate=cond)
                else:
                    m = m.when_matched_delete(predicate=cond)
            elif kind == "not_matched":
                if action == "insert":
                    m = m.when_not_matched_insert(sets, predicate=cond)
                else:
                    m = m.when_not_matched_insert_all(predicate=cond)
            else:
                if action == "update":
                    m = m.when_not_matched_by_source_update(sets, predicate=cond)
                else:
                    m = m.when_not_matched_by_source_delete(predicate=cond)
        metrics = m.execute()
    except DeltaError as ex:
        out = json.dumps({"error": error_line(ex)})
        print(out)
        eprint(f"merge {args.table}: {error_line(ex)}")
        return 0
    table = DeltaTable(args.table)
    version = table.version() if table.version() != before else None
    out = json.dumps({"metrics": metrics, "version": version})
    print(out)
    eprint(f"merge {args.table}: version {version}, {metrics}")
    return 0


def cmd_upsert_source(args: argparse.Namespace) -> int:
    """A MERGE upsert source for a table (read by delta-rs, deletion vectors applied): about half
    its rows with their other columns changed (numbers +1, strings + '!', the first other
    column only) plus `--new` rows with fresh keys; and the table's expected content after
    `WHEN MATCHED THEN UPDATE SET * WHEN NOT MATCHED THEN INSERT *` on the key."""
    import polars as pl

    df = pl.from_arrow(read_table_deltalake(args.table))
    key = args.key
    rng = np.random.default_rng(args.seed)
    # Rows whose key is null match nothing: an upsert source's rows have keys.
    valid = df[key].is_not_null().to_numpy()
    mask = (rng.random(df.height) < 0.5) & valid
    if valid.any() and not mask.any():
        # A small table can draw no row at all: update one, so a MATCHED clause always runs.
        mask[rng.choice(np.flatnonzero(valid))] = True
    picked = df.filter(pl.Series(mask))
    others = [c for c in df.columns if c != key]
    if others:
        c = others[0]
        dtype = df.schema[c]
        if dtype.is_numeric():
            picked = picked.with_columns((pl.col(c) + 1).cast(dtype))
        elif dtype == pl.String:
            picked = picked.with_columns(pl.col(c) + "!")
    fresh = df.head(args.new)
    start = int(df[key].max() or 0) + 1000
    fresh = fresh.with_columns(
        pl.Series(key, range(start, start + fresh.height)).cast(df.schema[key])
    )
    source = pl.concat([picked, fresh])
    os.makedirs(args.out, exist_ok=True)
    source.write_parquet(os.path.join(args.out, "source.parquet"))
    expected = pl.concat([df.join(source.select(key), on=key, how="anti"), source])
    expected.write_parquet(os.path.join(args.out, "expected.parquet"))
    print(json.dumps({"source_rows": source.height, "expected_rows": expected.height}))
    return 0


def cmd_set_properties(args: argparse.Namespace) -> int:
    from deltalake import DeltaTable
    from deltalake.exceptions import DeltaError

    props = dict(args.prop)
    try:
        table = DeltaTable(args.table)
        table.alter.set_table_properties(props, raise_if_not_exists=False)
    except DeltaError as ex:
        eprint(f"set-properties {args.table}: {error_line(ex)}")
        return 1
    print(json.dumps({"version": table.version(), "configuration": dict(table.metadata().configuration)}))
    eprint(f"set-properties {args.table}: {props} -> version {table.version()}")
    return 0


def cmd_add_constraint(args: argparse.Namespace) -> int:
    from deltalake import DeltaTable
    from deltalake.exceptions import DeltaError

    try:
        table = DeltaTable(args.table)
        table.alter.add_constraint({args.name: args.expr})
    except DeltaError as ex:
        eprint(f"add-constraint {args.table}: {error_line(ex)}")
        return 1
    print(json.dumps({"version": table.version()}))
    return 0


def cmd_compact(args: argparse.Namespace) -> int:
    from deltalake import DeltaTable
    from deltalake.exceptions import DeltaError

    filters = None
    if args.partition:
        col, _, value = args.partition.partition("=")
        filters = [(col, "=", value)]
    try:
        table = DeltaTable(args.table)
        metrics = table.optimize.compact(partition_filters=filters)
    except DeltaError as ex:
        eprint(f"compact {args.table}: {error_line(ex)}")
        return 1
    print(json.dumps({"metrics": metrics, "version": table.version()}, default=str))
    eprint(f"compact {args.table}: version {table.version()}")
    return 0


def cmd_zorder(args: argparse.Namespace) -> int:
    from deltalake import DeltaTable
    from deltalake.exceptions import DeltaError

    try:
        table = DeltaTable(args.table)
        kwargs = {"target_size": args.target_size} if args.target_size else {}
        metrics = table.optimize.z_order(args.columns.split(","), **kwargs)
    except DeltaError as ex:
        eprint(f"zorder {args.table}: {error_line(ex)}")
        return 1
    print(json.dumps({"metrics": metrics, "version": table.version()}, default=str))
    eprint(f"zorder {args.table}: version {table.version()}")
    return 0


def cmd_small_files_table(args: argparse.Namespace) -> int:
    """A Delta table partitioned by k made of many small files: generated rows written as
    Hive-partitioned Parquet of --rows-per-file rows each, converted in place by delta-rs."""
    import pyarrow.dataset as ds
    from deltalake import convert_to_deltalake

    k_domain = [int(x) for x in args.k_domain.split(",") if x.strip()]
    table = generate(args.seed, args.rows, "base", "parquet", 0, k_domain, False)
    ds.write_dataset(
        table,
        args.out,
        format="parquet",
        partitioning=ds.partitioning(pa.schema([("k", pa.int32())]), flavor="hive"),
        max_rows_per_file=args.rows_per_file,
        max_rows_per_group=args.rows_per_file,
        existing_data_behavior="error",
    )
    from deltalake import DeltaTable, Field, Schema

    convert_to_deltalake(args.out, partition_by=Schema([Field("k", "integer")]), partition_strategy="hive")

    print(json.dumps({"files": len(DeltaTable(args.out).file_uris()), "rows": table.num_rows}))
    return 0


def cmd_vacuum(args: argparse.Namespace) -> int:
    from deltalake import DeltaTable
    from deltalake.exceptions import DeltaError

    try:
        table = DeltaTable(args.table)
        files = table.vacuum(
            retention_hours=args.retain_hours,
            dry_run=args.dry_run,
            enforce_retention_duration=not args.no_retention_check,
            full=True,
        )
    except DeltaError as ex:
        eprint(f"vacuum {args.table}: {error_line(ex)}")
        return 1
    print(json.dumps({"files": sorted(files), "version": table.version()}))
    return 0


def cmd_project(args: argparse.Namespace) -> int:
    """A source's rows with columns renamed (`--rename old=new`) and dropped (`--drop c`),
    written to one parquet file: the expected content after ALTER TABLE … RENAME/DROP."""
    table = read_source(args.source, "parquet")
    renames = dict(r.split("=", 1) for r in args.rename or [])
    keep = [c for c in table.column_names if c not in (args.drop or [])]
    table = table.select(keep).rename_columns([renames.get(c, c) for c in keep])
    for ex in args.exclude or []:
        col, value = ex.split("=", 1)
        table = table.filter(pc.invert(pc.fill_null(pc.equal(table.column(col), value), False)))
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    pq.write_table(table, args.out)
    print(json.dumps({"rows": table.num_rows, "columns": table.column_names}))
    return 0


def cmd_generated_table(args: argparse.Namespace) -> int:
    """A delta-rs table with the source's columns plus a generated column (`--column`,
    `--type`, `--expression`), the source appended (delta-rs computes the column)."""
    from deltalake import DeltaTable, Field, Schema, write_deltalake

    data = read_source(args.source, "parquet")
    fields = [Field.from_arrow(f) for f in data.schema]
    fields.append(
        Field(args.column, args.type, nullable=True, metadata={"delta.generationExpression": args.expression})
    )
    DeltaTable.create(args.table, schema=Schema(fields))
    write_deltalake(args.table, data, mode="append")
    print(json.dumps({"version": DeltaTable(args.table).version()}))
    return 0


def cmd_identity_table(args: argparse.Namespace) -> int:
    """A table with an identity column `id` (start, step, GENERATED ALWAYS or BY DEFAULT) and a
    string column `v`, as Delta Spark writes one: its first commit written here by hand (the
    protocol with the `identityColumns` writer feature, the schema with the identity metadata
    as JSON numbers, a high-water mark past the `--rows` rows it holds: start, start + step,
    ...), its data file by pyarrow. delta-rs does not generate identity values."""
    os.makedirs(os.path.join(args.table, "_delta_log"), exist_ok=True)
    ids = [args.start + i * args.step for i in range(args.rows)]
    data = pa.table({"id": pa.array(ids, pa.int64()), "v": [f"r{i}" for i in range(args.rows)]})
    name = "part-00000-identity.snappy.parquet"
    pq.write_table(data, os.path.join(args.table, name))
    meta = {
        "delta.identity.start": args.start,
        "delta.identity.step": args.step,
        "delta.identity.allowExplicitInsert": args.allow_explicit_insert,
    }
    if ids:
        meta["delta.identity.highWaterMark"] = ids[-1]
    schema = {
        "type": "struct",
        "fields": [
            {"name": "id", "type": "long", "nullable": True, "metadata": meta},
            {"name": "v", "type": "string", "nullable": True, "metadata": {}},
        ],
    }
    now = 1_700_000_000_000
    stats = {"numRecords": len(ids), "minValues": {"id": min(ids)}, "maxValues": {"id": max(ids)}, "nullCount": {"id": 0}}
    actions = [
        {"commitInfo": {"timestamp": now, "operation": "CREATE TABLE AS SELECT", "operationParameters": {}}},
        {"protocol": {"minReaderVersion": 1, "minWriterVersion": 7, "writerFeatures": ["identityColumns", "appendOnly", "invariants"]}},
        {"metaData": {"id": "00000000-0000-0000-0000-000000000001", "format": {"provider": "parquet", "options": {}},
                      "schemaString": json.dumps(schema), "partitionColumns": [], "configuration": {}, "createdTime": now}},
        {"add": {"path": name, "partitionValues": {}, "size": os.path.getsize(os.path.join(args.table, name)),
                 "modificationTime": now, "dataChange": True, "stats": json.dumps(stats)}},
    ]
    with open(os.path.join(args.table, "_delta_log", "00000000000000000000.json"), "w", encoding="utf-8") as f:
        f.write("\n".join(json.dumps(a) for a in actions) + "\n")
    print(json.dumps({"ids": ids}))
    return 0


def cmd_row_tracking_check(args: argparse.Namespace) -> int:
    """`row_tracking_check` of `--table`, printed."""
    print(json.dumps(row_tracking_check(args.table)))
    return 0


def row_tracking_check(table: str) -> dict:
    """Checks a row-tracking table's log (every JSON commit, replayed here) against the
    protocol's writer requirements: every add has `baseRowId` and `defaultRowCommitVersion`
    (its commit's version; a file added again keeps the ids of the add it replaces); the
    fresh row ids of all adds ever committed ([baseRowId, baseRowId + numRecords)) never
    overlap; each commit that gives new ids records a `delta.rowTracking` high-water mark at
    or past them, and new ids lie past the mark before; every remove carries its file's
    ids. Returns {"commits", "adds", "mark", "problems"}."""
    log = os.path.join(table, "_delta_log")
    versions = sorted(int(n[:20]) for n in os.listdir(log) if n.endswith(".json") and n[:20].isdigit())
    mark = -1
    live: dict[str, tuple] = {}
    ranges: list[tuple[int, int, str]] = []
    problems: list[str] = []
    adds = 0
    for v in versions:
        with open(os.path.join(log, f"{v:020}.json"), encoding="utf-8") as f:
            actions = [json.loads(line) for line in f if line.strip()]
        removed = {a["remove"]["path"]: a["remove"] for a in actions if "remove" in a}
        new_mark = None
        for a in actions:
            d = a.get("domainMetadata")
            if d and d.get("domain") == "delta.rowTracking" and not d.get("removed"):
                new_mark = json.loads(d["configuration"])["rowIdHighWaterMark"]
        for path, rm in removed.items():
            if path in live and (rm.get("baseRowId"), rm.get("defaultRowCommitVersion")) != live[path]:
                problems.append(f"v{v}: remove of {path} carries {rm.get('baseRowId')}/{rm.get('defaultRowCommitVersion')}, its add {live[path]}")
        highest = None
        for a in actions:
            add = a.get("add")
            if not add:
                continue
            adds += 1
            base, commit = add.get("baseRowId"), add.get("defaultRowCommitVersion")
            if not isinstance(base, int) or not isinstance(commit, int):
                problems.append(f"v{v}: add {add['path']} without row ids")
                continue
            rows = json.loads(add.get("stats") or "{}").get("numRecords")
            if add["path"] in removed and add["path"] in live:
                if (base, commit) != live[add["path"]]:
                    problems.append(f"v{v}: {add['path']} added again with other ids")
            else:
                if commit != v:
                    problems.append(f"v{v}: add {add['path']} has defaultRowCommitVersion {commit}")
                if base <= mark:
                    problems.append(f"v{v}: baseRowId {base} not past the mark {mark}")
                ranges.append((base, base + (rows or 0), f"v{v}:{add['path']}"))
                highest = max(highest or -1, base + (rows or 0) - 1)
            live[add["path"]] = (base, commit)
        for path in removed:
            if path not in {a["add"]["path"] for a in actions if "add" in a}:
                live.pop(path, None)
        if highest is not None and highest > mark:
            if new_mark is None or new_mark < highest:
                problems.append(f"v{v}: ids up to {highest} given, mark recorded {new_mark}")
        if new_mark is not None:
            mark = max(mark, new_mark)
    ranges.sort()
    for (a0, a1, an), (b0, b1, bn) in zip(ranges, ranges[1:]):
        if b0 < a1:
            problems.append(f"row ids overlap: {an} [{a0}, {a1}) and {bn} [{b0}, {b1})")
    return {"commits": len(versions), "adds": adds, "mark": mark, "problems": problems[:20]}


def cmd_field_values(args: argparse.Namespace) -> int:
    """The values of a field nested in a struct column (`--path col.field…`), as every reader
    (delta-rs, DuckDB; polars when it reads the table) reads them, sorted: {"reader": [...]}."""
    readers = {"deltalake": read_table_deltalake, "duckdb": read_table_duckdb, "polars": read_table_polars}
    path = args.path.split(".")
    out = {}
    for name, read in readers.items():
        try:
            rows = read(args.table).column(path[0]).to_pylist()
        except Exception as ex:  # noqa: BLE001 - a reader that cannot read the table is left out
            eprint(f"field-values: {name} cannot read {args.table}: {type(ex).__name__}")
            continue
        values = []
        for r in rows:
            for p in path[1:]:
                r = None if r is None else r.get(p, "<missing>")
            values.append(r)
        out[name] = sorted(values, key=lambda v: json.dumps(v, default=str))
    print(json.dumps(out, default=str))
    return 0


def cmd_strings(args: argparse.Namespace) -> int:
    """`--files` Parquet files of `--rows` rows each of one column `v`: distinct random
    32-character hex strings (incompressible, about 1 MiB per 30,000 rows)."""
    import numpy as np

    rng = np.random.default_rng(args.seed)
    os.makedirs(args.out, exist_ok=True)
    for f in range(args.files):
        raw = rng.integers(0, 2**63, size=(args.rows, 2), dtype=np.int64)
        values = [f"{a:016x}{b:016x}" for a, b in raw.tolist()]
        pq.write_table(pa.table({"v": values}), os.path.join(args.out, f"part-{f}.parquet"))
    print(json.dumps({"rows": args.rows * args.files}))
    return 0


def cmd_clustered_table(args: argparse.Namespace) -> int:
    """A liquid-clustered table as Databricks writes one, by hand: long columns c0 … c{n-1},
    clustered by `--cluster-by` (a `delta.clustering` domain naming them, the `clustering`
    and `domainMetadata` writer features), one data file of `--rows` rows with statistics of
    the clustering columns; and a Parquet source of more such rows (`--source`)."""
    n = args.columns
    os.makedirs(os.path.join(args.table, "_delta_log"), exist_ok=True)

    def rows(start: int, count: int) -> pa.Table:
        return pa.table({f"c{i}": pa.array([start + r * (i + 1) for r in range(count)], pa.int64()) for i in range(n)})

    data = rows(0, args.rows)
    name = "part-00000-clustered.snappy.parquet"
    pq.write_table(data, os.path.join(args.table, name))
    cluster = args.cluster_by.split(",")
    stats = {
        "numRecords": args.rows,
        "minValues": {c: min(data.column(c).to_pylist()) for c in cluster},
        "maxValues": {c: max(data.column(c).to_pylist()) for c in cluster},
        "nullCount": {c: 0 for c in cluster},
    }
    schema = {"type": "struct", "fields": [{"name": f"c{i}", "type": "long", "nullable": True, "metadata": {}} for i in range(n)]}
    now = 1_700_000_000_000
    actions = [
        {"commitInfo": {"timestamp": now, "operation": "CREATE TABLE AS SELECT", "operationParameters": {"clusterBy": json.dumps(cluster)}}},
        {"protocol": {"minReaderVersion": 1, "minWriterVersion": 7, "writerFeatures": ["domainMetadata", "clustering"]}},
        {"metaData": {"id": "00000000-0000-0000-0000-000000000002", "format": {"provider": "parquet", "options": {}},
                      "schemaString": json.dumps(schema), "partitionColumns": [], "configuration": {}, "createdTime": now}},
        {"domainMetadata": {"domain": "delta.clustering", "configuration": json.dumps({"clusteringColumns": [[c] for c in cluster]}), "removed": False}},
        {"add": {"path": name, "partitionValues": {}, "size": os.path.getsize(os.path.join(args.table, name)),
                 "modificationTime": now, "dataChange": True, "stats": json.dumps(stats), "clusteringProvider": "liquid"}},
    ]
    with open(os.path.join(args.table, "_delta_log", "00000000000000000000.json"), "w", encoding="utf-8") as f:
        f.write("\n".join(json.dumps(a) for a in actions) + "\n")
    os.makedirs(args.source, exist_ok=True)
    pq.write_table(rows(1000, args.rows), os.path.join(args.source, "part-0.parquet"))
    print(json.dumps({"rows": args.rows}))
    return 0


def cmd_identity_state(args: argparse.Namespace) -> int:
    """An identity table as readers see it: the `id` values (delta-rs; polars and DuckDB must
    read the same rows) and the column's high-water mark as the latest schema has it
    (`mark`, and whether the log holds it as a JSON number)."""
    from deltalake import DeltaTable

    readers = {"deltalake": read_table_deltalake, "polars": read_table_polars, "duckdb": read_table_duckdb}
    tables = {r: read(args.table) for r, read in readers.items()}
    base = sorted_rows(normalise(tables["deltalake"], ["id", "v"], False))
    for r, t in tables.items():
        if sorted_rows(normalise(t, ["id", "v"], False)) != base:
            eprint(f"identity-state: {r} reads other rows than delta-rs")
            return 1
    schema = json.loads(DeltaTable(args.table).schema().to_json())
    meta = next(f for f in schema["fields"] if f["name"] == "id")["metadata"]
    # The raw log: the latest metaData's schema string.
    raw = None
    log = os.path.join(args.table, "_delta_log")
    for name in sorted(n for n in os.listdir(log) if n.endswith(".json")):
        with open(os.path.join(log, name), encoding="utf-8") as f:
            for line in f:
                a = json.loads(line)
                if "metaData" in a:
                    raw = json.loads(a["metaData"]["schemaString"])
    raw_meta = next(f for f in raw["fields"] if f["name"] == "id")["metadata"]
    mark = raw_meta.get("delta.identity.highWaterMark")
    print(json.dumps({
        "ids": tables["deltalake"].column("id").to_pylist(),
        "mark": mark,
        "mark_is_number": isinstance(mark, int),
        "step_is_number": isinstance(raw_meta.get("delta.identity.step"), int),
        "delta_rs_mark": meta.get("delta.identity.highWaterMark"),
    }))
    return 0


def cmd_parquet_columns(args: argparse.Namespace) -> int:
    """Top-level column names and Parquet field ids of a data file."""
    schema = pq.read_schema(args.file)
    out = []
    for f in schema:
        meta = f.metadata or {}
        fid = meta.get(b"PARQUET:field_id")
        out.append({"name": f.name, "field_id": int(fid) if fid is not None else None})
    print(json.dumps(out))
    return 0


def cmd_cdf(args: argparse.Namespace) -> int:
    """The change data feed delta-rs reads (`load_cdf`) from `--from` on, per commit version:
    {"<version>": [rows, each {"column": value, ..., "_change_type": ...}, canonically
    sorted]}; `_commit_timestamp` left out."""
    from deltalake import DeltaTable

    table = DeltaTable(args.table)
    feed = pa.table(table.load_cdf(starting_version=args.start).read_all())
    out: dict[str, list] = {}
    for row in feed.to_pylist():
        version = str(row.pop("_commit_version"))
        row.pop("_commit_timestamp", None)
        # Strings may come as binary views.
        out.setdefault(version, []).append(
            {k: v.decode() if isinstance(v, bytes) else _hashable(v) for k, v in row.items()}
        )
    if args.cancel_unchanged:
        # Rows a commit left as they were, recorded anyway, are left out: an update's before
        # and after images of a row it did not change (delta-rs records only those that
        # differ; Delta Spark records every updated row), and a row deleted and inserted
        # with the same values (delta-rs writes no change data for an update that changed
        # no value, so readers derive its changes from whole files removed and added).
        def image(r: dict) -> str:
            return json.dumps({k: v for k, v in r.items() if k != "_change_type"}, sort_keys=True, default=str)

        for version, rows in out.items():
            left: dict[str, collections.Counter] = {}
            for pair in (("update_preimage", "update_postimage"), ("delete", "insert")):
                count = [collections.Counter(image(r) for r in rows if r["_change_type"] == k) for k in pair]
                same = count[0] & count[1]
                for k in pair:
                    left[k] = collections.Counter(same)
            kept = []
            for r in rows:
                kind = r["_change_type"]
                if left[kind][image(r)] > 0:
                    left[kind][image(r)] -= 1
                    continue
                kept.append(r)
            out[version] = kept
    for rows in out.values():
        rows.sort(key=lambda r: json.dumps(r, sort_keys=True, default=str))
    print(json.dumps(out, sort_keys=True, default=str))
    return 0


def cmd_versions(args: argparse.Namespace) -> int:
    """Rows of every version of a table (each read in full by delta-rs), or the error
    reading it."""
    from deltalake import DeltaTable

    latest = DeltaTable(args.table).version()
    out = {}
    for v in range(0, latest + 1):
        try:
            out[str(v)] = DeltaTable(args.table, version=v).to_pyarrow_table().num_rows
        except Exception as ex:  # noqa: BLE001 - the error is the answer
            out[str(v)] = f"error: {error_line(ex)}"
    print(json.dumps(out))
    return 0


def cmd_clustering(args: argparse.Namespace) -> int:
    """Per column: the mean fraction of the table's files whose [min, max] (from the add
    actions' stats, as delta-rs reports them) holds a random value of the column (probes drawn
    from the table's rows with the given seed)."""
    from deltalake import DeltaTable

    t = DeltaTable(args.table)
    adds = pa.table(t.get_add_actions(flatten=True))
    data = t.to_pyarrow_table()
    rng = np.random.default_rng(args.seed)
    out: dict[str, Any] = {"files": adds.num_rows}
    for col in args.columns.split(","):
        values = [v for v in data.column(col).to_pylist() if v is not None]
        probes = [values[i] for i in rng.integers(0, len(values), size=args.probes)] if values else []
        # A column without statistics in any file has no min/max columns at all.
        def stat(name: str) -> list:
            if name in adds.column_names:
                return adds.column(name).to_pylist()
            return [None] * adds.num_rows

        mins, maxs, nulls = stat(f"min.{col}"), stat(f"max.{col}"), stat(f"null_count.{col}")
        rows = adds.column("num_records").to_pylist()
        read = 0
        for v in probes:
            for lo, hi, nc, n in zip(mins, maxs, nulls, rows):
                if lo is None or hi is None:
                    # No min/max: the file is read unless it is all nulls.
                    read += 0 if (nc is not None and n is not None and nc == n) else 1
                elif lo <= v <= hi:
                    read += 1
        out[col] = read / (len(probes) * adds.num_rows) if probes and adds.num_rows else None
    print(json.dumps(out, default=str))
    return 0


# --------------------------------------------------------------------------------------------
# inspect
# --------------------------------------------------------------------------------------------


def _log_entries(table: str) -> list[tuple[int, str]]:
    log = os.path.join(table, "_delta_log")
    out = []
    for p in glob.glob(os.path.join(log, "*.json")):
        base = os.path.basename(p)[: -len(".json")]
        if base.isdigit():
            out.append((int(base), p))
    return sorted(out)


def _read_commit(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


_STAT_TYPES = (
    pa.types.is_integer,
    pa.types.is_floating,
    pa.types.is_decimal,
    pa.types.is_date,
    pa.types.is_timestamp,
    pa.types.is_string,
    pa.types.is_large_string,
)


def _parse_ts_us(v: str) -> int:
    t = dt.datetime.fromisoformat(v.replace("Z", "+00:00"))
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.timezone.utc)
    delta = t - dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def verify_file_stats(table_root: str, path: str, stats: dict | None, partition_cols: list[str]) -> list[str]:
    """Checks a data file's stats against its content. Returns problems."""
    import urllib.parse

    problems: list[str] = []
    if not stats:
        return [f"{path}: no stats"]
    local = os.path.join(table_root, urllib.parse.unquote(path))
    data = pq.read_table(local)
    if stats.get("numRecords") != data.num_rows:
        problems.append(f"{path}: numRecords {stats.get('numRecords')} but the file has {data.num_rows} rows")
    mins = stats.get("minValues") or {}
    maxs = stats.get("maxValues") or {}
    nulls = stats.get("nullCount") or {}
    for name in data.column_names:
        if name in partition_cols:
            continue
        col = data.column(name)
        if name not in nulls:
            problems.append(f"{path}: no nullCount for `{name}`")
        elif nulls[name] != col.null_count:
            problems.append(f"{path}: nullCount[{name}] = {nulls[name]} but the file has {col.null_count}")
        t = col.type
        if not any(f(t) for f in _STAT_TYPES) or col.null_count == len(col):
            continue
        if name not in mins or name not in maxs:
            problems.append(f"{path}: no minValues/maxValues for `{name}` ({t})")
            continue
        mm = pc.min_max(col)
        amin, amax = mm["min"].as_py(), mm["max"].as_py()
        smin, smax = mins[name], maxs[name]
        ok = True
        if pa.types.is_timestamp(t):
            a0 = col.cast(pa.int64())
            umin, umax = pc.min(a0).as_py(), pc.max(a0).as_py()
            unit = {"s": 1_000_000, "ms": 1000, "us": 1, "ns": 0.001}[t.unit]
            umin, umax = int(umin * unit), int(umax * unit)
            # Millisecond stats: the minimum rounded down, the maximum rounded up, so both
            # stay valid bounds for file skipping by any reader.
            ok = _parse_ts_us(smin) <= umin and umin - _parse_ts_us(smin) < 1000
            ok = ok and _parse_ts_us(smax) >= umax and _parse_ts_us(smax) - umax < 1000
        elif pa.types.is_date(t):
            ok = smin == amin.isoformat() and smax == amax.isoformat()
        elif pa.types.is_decimal(t):
            ok = decimal.Decimal(str(smin)) == amin and decimal.Decimal(str(smax)) == amax
        elif pa.types.is_string(t) or pa.types.is_large_string(t):
            ok = amin.startswith(smin) and smax >= amax
            if len(amin) <= 32:
                ok = ok and smin == amin
            if len(amax) <= 32:
                ok = ok and smax == amax
        else:
            ok = smin == amin and smax == amax
        if not ok:
            problems.append(f"{path}: `{name}` stats min={smin!r} max={smax!r}, content min={amin!r} max={amax!r}")
    return problems


def cmd_inspect(args: argparse.Namespace) -> int:
    from deltalake import DeltaTable

    t = DeltaTable(args.table)
    proto = t.protocol()
    md = t.metadata()
    adds = t.get_add_actions(flatten=False)
    adds = pa.table(adds)
    paths = adds.column("path").to_pylist()
    stats_col = None
    entries = _log_entries(args.table)
    # Raw add actions (with the stats JSON as written) of all commits, for the active paths.
    raw_adds: dict[str, dict] = {}
    last_commit: list[dict] = []
    for v, p in entries:
        actions = _read_commit(p)
        if v == t.version():
            last_commit = actions
        for a in actions:
            if "add" in a:
                raw_adds[a["add"]["path"]] = a["add"]
    files = []
    for p in paths:
        raw = raw_adds.get(p)
        stats = None
        if raw is not None and raw.get("stats"):
            try:
                stats = json.loads(raw["stats"])
            except json.JSONDecodeError:
                stats = {"_unparseable": raw["stats"]}
        files.append(
            {
                "path": p,
                "size": raw.get("size") if raw else None,
                "partitionValues": raw.get("partitionValues") if raw else None,
                "dataChange": raw.get("dataChange") if raw else None,
                "tags": raw.get("tags") if raw else None,
                "deletion_vector": raw.get("deletionVector") if raw else None,
                "in_json_log": raw is not None,
                "stats": stats,
            }
        )
    del stats_col
    stats_problems: list[str] = []
    if args.verify_stats:
        for f in files:
            stats_problems += verify_file_stats(args.table, f["path"], f["stats"], list(md.partition_columns))
    commit_info = next((a["commitInfo"] for a in last_commit if "commitInfo" in a), None)
    counts = Counter(next(iter(a.keys())) for a in last_commit)
    txns = {}
    for v, p in entries:
        for a in _read_commit(p):
            if "txn" in a:
                txns[a["txn"]["appId"]] = a["txn"]["version"]
    out = {
        "version": t.version(),
        "num_files": len(paths),
        "partition_columns": list(md.partition_columns),
        "configuration": dict(md.configuration),
        "schema": json.loads(t.schema().to_json()),
        "protocol": {
            "minReaderVersion": proto.min_reader_version,
            "minWriterVersion": proto.min_writer_version,
            "readerFeatures": proto.reader_features,
            "writerFeatures": proto.writer_features,
        },
        "commit_info": commit_info,
        "last_commit_actions": dict(counts),
        "last_commit_adds": [a["add"]["path"] for a in last_commit if "add" in a],
        "last_commit_removes": [a["remove"]["path"] for a in last_commit if "remove" in a],
        "txns": txns,
        "files": files,
        "num_rows": read_table_deltalake(args.table).num_rows,
    }
    if args.verify_stats:
        out["stats_problems"] = stats_problems
    print(json.dumps(out, default=str))
    return 0


# --------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="oracle.py", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)

    g = sub.add_parser("gen", help="random source files")
    g.add_argument("--seed", type=int, required=True)
    g.add_argument("--rows", type=int, required=True)
    g.add_argument("--out", required=True)
    g.add_argument("--format", choices=["parquet", "csv", "json"], default="parquet")
    g.add_argument("--files", type=int, default=1)
    g.add_argument("--variant", choices=["base", "extra_col", "narrow", "badtype", "no_k", "long_prefix", "decimals", "fixed"], default="base")
    g.add_argument("--id-start", type=int, default=0, help="ids are id_start .. id_start+rows-1")
    g.add_argument("--k-domain", default="0,1,2,3", help="values of k, comma separated")
    g.add_argument("--no-null-k", action="store_true", help="no nulls in k")
    g.add_argument("--row-group-rows", type=int, default=None, help="parquet row group size")
    g.set_defaults(func=cmd_gen)

    w = sub.add_parser("oracle-write", help="write with delta-rs (the oracle)")
    w.add_argument("--table", required=True)
    w.add_argument("--source", required=True)
    w.add_argument("--format", choices=["parquet", "csv", "json", "delta"], default="parquet")
    w.add_argument("--mode", choices=["append", "overwrite", "error", "ignore"], default="append")
    w.add_argument("--partition-by", default="")
    w.add_argument("--predicate", default=None)
    w.add_argument("--schema-mode", choices=["merge", "overwrite"], default=None)
    w.set_defaults(func=cmd_oracle_write)

    c = sub.add_parser("compare", help="compare a table with the expected content")
    c.add_argument("--table", required=True)
    c.add_argument("--expected", action="append", help="expected Delta table (repeatable, concatenated)")
    c.add_argument(
        "--expected-version", type=int, default=None,
        help="read the --expected tables at this version (delta-rs time travel; may name --table itself)",
    )
    c.add_argument(
        "--expected-parquet", action="append", help="expected parquet file or dir (repeatable, concatenated)"
    )
    c.add_argument("--sort-by", default=None, help="ignored: all rows are sorted by all columns")
    c.add_argument("--columns", default=None, help="compare only these columns (comma separated)")
    c.add_argument("--readers", default="deltalake,polars,duckdb")
    c.add_argument("--loose-types", action="store_true", help="ints as int64, floats as float64")
    c.add_argument("--no-type-check", action="store_true", help="compare values only")
    c.set_defaults(func=cmd_compare)

    x = sub.add_parser("expect-dpo", help="expected content of a dynamic partition overwrite (polars)")
    x.add_argument("--old-table", required=True)
    x.add_argument("--new-source", required=True)
    x.add_argument("--format", choices=["parquet", "csv", "json", "delta"], default="parquet")
    x.add_argument("--partition-by", required=True)
    x.add_argument("--out", required=True, help="parquet file to write")
    x.set_defaults(func=cmd_expect_dpo)

    f = sub.add_parser("expect-filter", help="expected content after DELETE WHERE (polars)")
    f.add_argument("--table", required=True)
    f.add_argument(
        "--predicate-py",
        required=True,
        help="polars expression over `pl` and `col` (= pl.col), e.g. \"(col('k') == 2) & (col('id') > 10)\"",
    )
    f.add_argument("--out", required=True, help="parquet file to write")
    f.add_argument(
        "--keep-matching", action="store_true", help="write the rows where it is true instead (the deleted ones)"
    )
    f.set_defaults(func=cmd_expect_filter)

    m = sub.add_parser("dml", help="DELETE / UPDATE a table in place with delta-rs")
    m.add_argument("--table", required=True)
    m.add_argument("--op", choices=["delete", "update"], required=True)
    m.add_argument("--predicate", default=None, help="SQL predicate (default: every row)")
    m.add_argument(
        "--set",
        type=assignment,
        action="append",
        metavar="COL=SQLEXPR",
        help="UPDATE assignment (repeatable; --op update only)",
    )
    m.add_argument("--out-json", default=None, help="also write the JSON result to this file")
    m.set_defaults(func=cmd_dml)

    mg = sub.add_parser("merge", help="MERGE a Parquet source into a table with delta-rs")
    mg.add_argument("--table", required=True)
    mg.add_argument("--source", required=True, help="Parquet file or directory")
    mg.add_argument("--spec", required=True, help="JSON: on, aliases, clauses")
    mg.set_defaults(func=cmd_merge)

    us = sub.add_parser("upsert-source", help="an upsert source for a table and its expected result")
    us.add_argument("--table", required=True)
    us.add_argument("--key", required=True)
    us.add_argument("--out", required=True, help="directory for source.parquet and expected.parquet")
    us.add_argument("--seed", type=int, default=0)
    us.add_argument("--new", type=int, default=3, help="rows with fresh keys")
    us.set_defaults(func=cmd_upsert_source)

    p = sub.add_parser("set-properties", help="set table properties with delta-rs")
    p.add_argument("--table", required=True)
    p.add_argument("--prop", type=assignment, action="append", required=True, metavar="KEY=VALUE")
    p.set_defaults(func=cmd_set_properties)

    ac = sub.add_parser("add-constraint", help="add a CHECK constraint with delta-rs")
    ac.add_argument("--table", required=True)
    ac.add_argument("--name", required=True)
    ac.add_argument("--expr", required=True)
    ac.set_defaults(func=cmd_add_constraint)

    o = sub.add_parser("compact", help="bin-packing OPTIMIZE with delta-rs")
    o.add_argument("--table", required=True)
    o.add_argument("--partition", default=None, metavar="COL=VALUE", help="only this partition")
    o.set_defaults(func=cmd_compact)

    zo = sub.add_parser("zorder", help="OPTIMIZE ZORDER BY with delta-rs")
    zo.add_argument("--table", required=True)
    zo.add_argument("--columns", required=True, help="comma separated")
    zo.add_argument("--target-size", type=int, default=None)
    zo.set_defaults(func=cmd_zorder)

    sf = sub.add_parser("small-files-table", help="a table of many small files (delta-rs convert)")
    sf.add_argument("--out", required=True)
    sf.add_argument("--seed", type=int, required=True)
    sf.add_argument("--rows", type=int, required=True)
    sf.add_argument("--rows-per-file", type=int, required=True)
    sf.add_argument("--k-domain", default="1,2,3,4")
    sf.set_defaults(func=cmd_small_files_table)

    va = sub.add_parser("vacuum", help="VACUUM (full mode, as Delta Spark) with delta-rs")
    va.add_argument("--table", required=True)
    va.add_argument("--retain-hours", type=int, default=None)
    va.add_argument("--dry-run", action="store_true")
    va.add_argument("--no-retention-check", action="store_true")
    va.set_defaults(func=cmd_vacuum)

    pj = sub.add_parser("project", help="a source with columns renamed and dropped, as one parquet file")
    pj.add_argument("--source", required=True)
    pj.add_argument("--out", required=True)
    pj.add_argument("--rename", action="append", help="old=new (repeatable)")
    pj.add_argument("--drop", action="append", help="column (repeatable)")
    pj.add_argument("--exclude", action="append", help="column=value: leave out rows with that string value")
    pj.set_defaults(func=cmd_project)

    gt = sub.add_parser("generated-table", help="a delta-rs table with a generated column")
    gt.add_argument("--table", required=True)
    gt.add_argument("--source", required=True)
    gt.add_argument("--column", required=True)
    gt.add_argument("--type", required=True, help="Delta primitive type, e.g. double")
    gt.add_argument("--expression", required=True)
    gt.set_defaults(func=cmd_generated_table)

    pc_ = sub.add_parser("parquet-columns", help="top-level column names and field ids of a Parquet file")
    pc_.add_argument("--file", required=True)
    pc_.set_defaults(func=cmd_parquet_columns)

    it = sub.add_parser("identity-table", help="a table with an identity column, written by hand as Spark writes one")
    it.add_argument("--table", required=True)
    it.add_argument("--rows", type=int, default=5)
    it.add_argument("--start", type=int, default=1)
    it.add_argument("--step", type=int, default=1)
    it.add_argument("--allow-explicit-insert", action="store_true")
    it.set_defaults(func=cmd_identity_table)

    rt = sub.add_parser("row-tracking-check", help="a row-tracking table's log against the protocol's writer rules")
    rt.add_argument("--table", required=True)
    rt.set_defaults(func=cmd_row_tracking_check)

    fv = sub.add_parser("field-values", help="the values of a nested field as every reader reads them")
    fv.add_argument("--table", required=True)
    fv.add_argument("--path", required=True)
    fv.set_defaults(func=cmd_field_values)

    st = sub.add_parser("strings", help="Parquet files of distinct random strings (column v)")
    st.add_argument("--out", required=True)
    st.add_argument("--files", type=int, default=3)
    st.add_argument("--rows", type=int, default=1000)
    st.add_argument("--seed", type=int, default=0)
    st.set_defaults(func=cmd_strings)

    ct = sub.add_parser("clustered-table", help="a liquid-clustered table, written by hand as Databricks writes one")
    ct.add_argument("--table", required=True)
    ct.add_argument("--source", required=True)
    ct.add_argument("--columns", type=int, default=40)
    ct.add_argument("--rows", type=int, default=20)
    ct.add_argument("--cluster-by", default="c39")
    ct.set_defaults(func=cmd_clustered_table)

    ist = sub.add_parser("identity-state", help="an identity table's ids (all readers agree) and high-water mark")
    ist.add_argument("--table", required=True)
    ist.set_defaults(func=cmd_identity_state)

    cd = sub.add_parser("cdf", help="the change data feed delta-rs reads, per version")
    cd.add_argument("--table", required=True)
    cd.add_argument("--start", type=int, default=0)
    cd.add_argument(
        "--cancel-unchanged",
        action="store_true",
        help="leave out pairs of change rows of a row left as it was (before/after, delete/insert)",
    )
    cd.set_defaults(func=cmd_cdf)

    vs = sub.add_parser("versions", help="rows of every version (or the error reading it)")
    vs.add_argument("--table", required=True)
    vs.set_defaults(func=cmd_versions)

    cq = sub.add_parser("clustering", help="files a random point predicate reads, per column")
    cq.add_argument("--table", required=True)
    cq.add_argument("--columns", required=True, help="comma separated")
    cq.add_argument("--probes", type=int, default=100)
    cq.add_argument("--seed", type=int, default=0)
    cq.set_defaults(func=cmd_clustering)

    i = sub.add_parser("inspect", help="JSON facts about a table")
    i.add_argument("--table", required=True)
    i.add_argument(
        "--verify-stats",
        action="store_true",
        help="read every active file and check its stats (numRecords, nullCount, min/max)",
    )
    i.set_defaults(func=cmd_inspect)

    args = ap.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # Skip interpreter teardown: native thread pools (polars, delta-rs) can abort at exit.
    os._exit(code)
