#!/usr/bin/env bash
# The main job on the embedded local cluster, no external services: generate a small
# TPC-DS-style store_sales (Parquet) and write it into a Delta table with silt, then read
# it back with delta-rs if the test venv exists.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v protoc >/dev/null 2>&1 || scripts/setup.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/silt-target}"
ROWS="${ROWS:-1000000}"
OUT="${OUT:-target/demo}"
cargo build --release -q -p silt -p silt-benches
rm -rf "$OUT/store_sales_src" "$OUT/store_sales"
"$CARGO_TARGET_DIR/release/silt-datagen" store_sales --rows "$ROWS" --seed 42 --out "$OUT/store_sales_src" --files 4
"$CARGO_TARGET_DIR/release/silt" write --table "$OUT/store_sales" --source "$OUT/store_sales_src" \
  --format parquet --mode overwrite
if [ -x .venv/bin/python ]; then
  .venv/bin/python -c "
import sys, deltalake
t = deltalake.DeltaTable(sys.argv[1])
print(f'delta-rs reads version {t.version()}: {t.to_pyarrow_table().num_rows} rows in {len(t.file_uris())} files')
" "$OUT/store_sales"
fi
