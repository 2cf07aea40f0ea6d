#!/usr/bin/env bash
# Vessel feed benchmark (not a test): NMEA parse and parse-and-aggregate throughput of the
# NBP1406 sample logs concatenated REPS times, UDP loopback at a target datagram rate, and the
# Python baseline (pynmea2) on the same lines. See bench/vessel/README.md.
#
#   ./bench/vessel/run.sh [--reps N] [--udp-rate R] [--udp-seconds S] [--no-build]
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
SRC="$ROOT/../shared/data/nbp1406"
REPS=100
UDP_RATE=50000
UDP_SECONDS=4
BUILD=1
while [[ $# -gt 0 ]]; do
  case "$1" in
    --reps) REPS="$2"; shift 2 ;;
    --udp-rate) UDP_RATE="$2"; shift 2 ;;
    --udp-seconds) UDP_SECONDS="$2"; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    -h|--help) sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
step() { printf '\n==> %s\n' "$*" >&2; }
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
DATA="$HERE/data/x$REPS"
mkdir -p "$HERE/results"

step "bench virtualenv (pynmea2) in bench/vessel/.venv"
if [[ ! -x "$HERE/.venv/bin/python" ]]; then python3 -m venv "$HERE/.venv"; fi
if ! cmp -s "$HERE/requirements.txt" "$HERE/.venv/requirements.txt"; then
  "$HERE/.venv/bin/pip" install -q -r "$HERE/requirements.txt"
  cp "$HERE/requirements.txt" "$HERE/.venv/requirements.txt"
fi

step "data: the sample logs x$REPS in $DATA"
python3 "$HERE/make_data.py" "$SRC" "$DATA" "$REPS"
LOGS=("$DATA"/NBP1406_*)
NMEA_LOGS=("$DATA"/NBP1406_s330* "$DATA"/NBP1406_PCOD* "$DATA"/NBP1406_gyr1* "$DATA"/NBP1406_mbdp*)

if [[ $BUILD -eq 1 ]]; then
  step "cargo build --release (oceanflow, vessel_bench)"
  # Two commands: with --example, cargo builds only examples (not the oceanflow binary).
  (cd "$ROOT" && cargo build --release -p oceanflow-pipeline \
    && cargo build --release -p oceanflow-vessel --example vessel_bench)
fi
BENCH="$TARGET/release/examples/vessel_bench"

OUT="$HERE/results/latest.jsonl"
: >"$OUT"
step "Rust: NMEA parse only (one core)"
"$BENCH" parse "${NMEA_LOGS[@]}" | tee -a "$OUT"
step "Rust: replay reader (merge + timestamps + parse + join + Arrow batches, one core)"
"$BENCH" replay "${LOGS[@]}" | tee -a "$OUT"

step "oceanflow run --once: replay + aggregate (the example config on the concatenated logs)"
CONFIG="$HERE/results/nbp1406-x$REPS.toml"
sed -e "s|^replay_dir = .*|replay_dir = \"$DATA\"|" "$ROOT/config/examples/nbp1406.toml" >"$CONFIG"
LINES=$(cat "${LOGS[@]}" | wc -l)
START=$(date +%s.%N)
OCEANFLOW_LOG=warn "$TARGET/release/oceanflow" run --once --config "$CONFIG" --output "$HERE/results/nbp1406-x$REPS.json"
END=$(date +%s.%N)
python3 -c "import json,sys; s=float(sys.argv[2])-float(sys.argv[1]); n=int(sys.argv[3]); print(json.dumps({'mode':'oceanflow-run','lines':n,'seconds':round(s,3),'lines_per_second':round(n/s)}))" \
  "$START" "$END" "$LINES" | tee -a "$OUT"

step "UDP loopback: $UDP_RATE datagrams/s for ${UDP_SECONDS}s"
"$BENCH" udp "$UDP_RATE" "$UDP_SECONDS" | tee -a "$OUT"

step "Python baseline: pynmea2 (+ ISO timestamp parse) on the NMEA lines"
"$HERE/.venv/bin/python" "$HERE/pynmea2_baseline.py" "${NMEA_LOGS[@]}" | tee -a "$OUT"

step "summary"
python3 - "$OUT" <<'PY'
import json, sys
runs = {r["mode"]: r for r in map(json.loads, open(sys.argv[1]))}
py = runs["pynmea2"]["lines_per_second"]
py_t = runs["pynmea2+timestamps"]["lines_per_second"]
print(f"{'mode':14s} {'lines/s':>12s}  vs Python")
r = runs["parse"]["lines_per_second"]
print(f"{'parse':14s} {r:>12,}  {r / py:6.0f}x pynmea2")
for mode in ("replay", "oceanflow-run"):
    r = runs[mode]["lines_per_second"]
    print(f"{mode:14s} {r:>12,}  {r / py_t:6.0f}x pynmea2+timestamps")
print(f"{'pynmea2':14s} {py:>12,}")
print(f"{'pynmea2+ts':14s} {py_t:>12,}")
u = runs["udp"]
print(f"udp            sent {u['sent']:,} at {u['achieved_rate']:,}/s, received {u['received']:,}, lost {u['lost']:,}")
PY
