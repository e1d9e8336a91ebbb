#!/usr/bin/env bash
# Runs every silt test: installs what the tests need (scripts/setup.sh), then the whole
# workspace's unit and integration tests (real gRPC processes, Python delta-rs/polars as
# independent readers and oracle) and the quick benchmark profile.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/silt-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
cargo build --workspace --bins
cargo test --workspace --no-fail-fast "$@"
