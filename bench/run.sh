#!/usr/bin/env bash
# oceanflow bench harness: generates the tutorial workload, runs oceanflow and its peers
# (Dask, Polars, DuckDB, pandas) on it, checks they agree, prints times, ratios and peak memory.
# See bench/README.md.
#
#   ./bench/run.sh [--rows 1000000,10000000] [--formats parquet,csv] [--quick] [--reps N]
#                  [--engines LIST] [--workers N] [--incremental max|ROWS|none] [--no-build]
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
cd "$ROOT"

ROWS="1000000,10000000"
FORMATS="parquet,csv"
REPS=3
ENGINES="oceanflow-q1q4,oceanflow-all,dask,dask-distributed,polars,duckdb,pandas"
WORKERS=2
INCREMENTAL="max"
EXTRA_ROWS=1000
BUILD=1

usage() { sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --rows) ROWS="$2"; shift 2 ;;
    --formats) FORMATS="$2"; shift 2 ;;
    --quick) REPS=1; shift ;;
    --reps) REPS="$2"; shift 2 ;;
    --engines) ENGINES="$2"; shift 2 ;;
    --workers) WORKERS="$2"; shift 2 ;;
    --incremental) INCREMENTAL="$2"; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "run.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
  esac
done

step() { printf '\n==> %s\n' "$*"; }

# ---------------------------------------------------------------------------- virtualenv
VENV="$HERE/.venv"
PYTHON="${PYTHON:-python3}"
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "run.sh: needs Python >= 3.11 as \$PYTHON or python3" >&2
  exit 1
fi
REQ="$HERE/requirements.txt"
STAMP="$VENV/.requirements.sha256"
want="$(sha256sum "$REQ" | cut -d' ' -f1)"
if [[ ! -x "$VENV/bin/python" ]] || [[ "$(cat "$STAMP" 2>/dev/null)" != "$want" ]]; then
  step "creating $VENV (pinned: $(grep -v '^#' "$REQ" | tr '\n' ' '))"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQ"
  echo "$want" >"$STAMP"
fi
VPY="$VENV/bin/python"

# ---------------------------------------------------------------------------------- data
step "generating data into bench/data/"
IFS=',' read -r -a ROW_LIST <<<"$ROWS"
IFS=',' read -r -a FMT_LIST <<<"$FORMATS"
max_rows=0
for r in "${ROW_LIST[@]}"; do
  (( r > max_rows )) && max_rows=$r
  for f in "${FMT_LIST[@]}"; do
    "$VPY" "$HERE/gen_data.py" --rows "$r" --format "$f" --output "$HERE/data/tutorial_${r}.${f}"
  done
done
case "$INCREMENTAL" in
  none) inc_rows="" ;;
  max) inc_rows="$max_rows" ;;
  *) inc_rows="$INCREMENTAL" ;;
esac
if [[ -n "$inc_rows" ]]; then
  for f in "${FMT_LIST[@]}"; do
    # The extra rows continue the base file's timeline, from another seed.
    "$VPY" "$HERE/gen_data.py" --rows "$EXTRA_ROWS" --format "$f" --seed 43 \
      --start-row "$inc_rows" --output "$HERE/data/tutorial_${inc_rows}_extra${EXTRA_ROWS}.${f}"
  done
fi

# ------------------------------------------------------------------------------ oceanflow
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
OCEANFLOW="$TARGET/release/oceanflow"
OCEANFLOW_BENCH="$TARGET/release/oceanflow-bench"
if [[ "$BUILD" == 1 ]]; then
  step "cargo build --release -p oceanflow-pipeline"
  if ! cargo build --release -p oceanflow-pipeline; then
    echo "oceanflow: not built (cargo build failed; continuing with the peers only)"
    OCEANFLOW=""
  fi
  # Hook: the incremental case's oceanflow side is a bench binary `oceanflow-bench`
  # (`oceanflow-bench incremental --base FILE --extra FILE`); build it if a package has it.
  bench_pkg="$(cargo metadata --no-deps --format-version 1 2>/dev/null | "$VPY" -c '
import json, sys
m = json.load(sys.stdin)
print(next((p["name"] for p in m["packages"] for t in p["targets"]
            if t["name"] == "oceanflow-bench" and "bin" in t["kind"]), ""))' || true)"
  if [[ -n "$bench_pkg" ]]; then
    step "cargo build --release -p $bench_pkg --bin oceanflow-bench"
    cargo build --release -p "$bench_pkg" --bin oceanflow-bench ||
      echo "oceanflow-bench: not built (cargo build failed)"
  fi
fi
if [[ -n "$OCEANFLOW" && ! -x "$OCEANFLOW" ]]; then
  echo "oceanflow: not built ($OCEANFLOW missing)"
  OCEANFLOW=""
fi

# --------------------------------------------------------------------------------- bench
step "running the bench (reps=$REPS, engines=$ENGINES)"
exec "$VPY" "$HERE/harness.py" --rows "$ROWS" --formats "$FORMATS" --reps "$REPS" \
  --engines "$ENGINES" --workers "$WORKERS" --incremental "${inc_rows:-none}" \
  --extra-rows "$EXTRA_ROWS" --oceanflow "$OCEANFLOW" --oceanflow-bench "$OCEANFLOW_BENCH"
