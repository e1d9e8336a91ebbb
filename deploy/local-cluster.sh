#!/usr/bin/env bash
# Starts a multi-process silt cluster on loopback: one coordinator and N executors, each its
# own process, logging to $DIR/*.log. Prints the coordinator URL; stop with `kill $(cat $DIR/pids)`.
#   deploy/local-cluster.sh [N=2] [PORT=7077] [DIR=target/local-cluster]
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-2}"; PORT="${2:-7077}"; DIR="${3:-target/local-cluster}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/silt-target}"
BIN="${SILT_BIN:-$CARGO_TARGET_DIR/release/silt}"
[ -x "$BIN" ] || cargo build --release -q -p silt
mkdir -p "$DIR"; : > "$DIR/pids"
"$BIN" coordinator --listen "127.0.0.1:$PORT" > "$DIR/coordinator.log" 2>&1 &
echo $! >> "$DIR/pids"
for i in $(seq 1 "$N"); do
  "$BIN" executor --coordinator "http://127.0.0.1:$PORT" --name "exec$i" > "$DIR/executor$i.log" 2>&1 &
  echo $! >> "$DIR/pids"
done
echo "http://127.0.0.1:$PORT"
