#!/usr/bin/env bash
# ODP read benchmark (not a timed test): rows/s from the local ODP test server
# (odp-test-server, seeded biota-like table) into oceanflow's aggregates, against the real
# odp-sdk (0.28.10) reading the same selection into pandas — the tutorial's path — in the same
# run. Also prints peak RSS of both processes.
#
#   ./bench/odp/run.sh [--rows N] [--page-rows N] [--batch-rows N] [--reps N] [--no-build]
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
cd "$ROOT"

ROWS=1000000
PAGE_ROWS=100000
BATCH_ROWS=16384
REPS=3
BUILD=1
while [[ $# -gt 0 ]]; do
  case "$1" in
    --rows) ROWS="$2"; shift 2 ;;
    --page-rows) PAGE_ROWS="$2"; shift 2 ;;
    --batch-rows) BATCH_ROWS="$2"; shift 2 ;;
    --reps) REPS="$2"; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    -h|--help) sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

DATASET="1d801817-742b-4867-82cf-5597673524eb"
KEY="sk_bench"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}/release"
if [[ $BUILD -eq 1 ]]; then
  cargo build --release -p oceanflow-pipeline -p oceanflow-odp-server
fi
PY="$("$ROOT/scripts/python-env.sh")"   # the virtualenv with odp-sdk==0.28.10
TMP="$(mktemp -d)"
SERVER_PID=""
cleanup() {
  if [[ -n "$SERVER_PID" ]]; then kill "$SERVER_PID" 2>/dev/null || true; fi
  rm -rf "$TMP"
}
trap cleanup EXIT

"$TARGET/odp-test-server" --rows "$ROWS" --page-rows "$PAGE_ROWS" --batch-rows "$BATCH_ROWS" \
  --api-key "$KEY" --dataset "$DATASET" >"$TMP/server.out" 2>"$TMP/server.err" &
SERVER_PID=$!
for _ in $(seq 1 600); do
  [[ -s "$TMP/server.out" ]] && break
  sleep 0.1
done
URL="$(awk '/^listening on /{print $3}' "$TMP/server.out")"
[[ -n "$URL" ]] || { echo "the server did not start: $(cat "$TMP/server.err")" >&2; exit 1; }

sed -e "s#base_url = \"https://api.hubocean.earth\"#base_url = \"$URL\"#" \
    -e 's#listen = "127.0.0.1:9187"#listen = "127.0.0.1:0"#' \
    -e 's#^allowed_lateness = .*#allowed_lateness = "1h"  \# the generated rows come in time order#' \
    config/examples/odp.toml >"$TMP/odp.toml"
# The same source with every aggregate family off: the read path alone (HTTP, IPC decode,
# canonical conversion, centroids) into the dataflow's input.
sed -e 's/^enabled = true/enabled = false/' "$TMP/odp.toml" >"$TMP/read-only.toml"

echo "rows=$ROWS page_rows=$PAGE_ROWS batch_rows=$BATCH_ROWS reps=$REPS server=$URL"
printf '%-10s %4s %10s %14s %12s\n' engine rep seconds rows_per_s peak_rss_mb
for rep in $(seq 1 "$REPS"); do
  /usr/bin/time -f '%e %M' -o "$TMP/time.of" env ODP_API_KEY="$KEY" OCEANFLOW_LOG=warn \
    "$TARGET/oceanflow" run --once --config "$TMP/odp.toml" --output "$TMP/out.json"
  read -r secs kb <"$TMP/time.of"
  total="$(python3 -c 'import json,sys; print(sum(r["count"] for r in json.load(open(sys.argv[1]))["stations"]))' "$TMP/out.json")"
  [[ "$total" == "$ROWS" ]] || { echo "oceanflow aggregated $total rows, expected $ROWS" >&2; exit 1; }
  printf '%-10s %4s %10.2f %14.0f %12.1f\n' oceanflow "$rep" "$secs" "$(echo "$ROWS / $secs" | bc -l)" "$(echo "$kb / 1024" | bc -l)"

  /usr/bin/time -f '%e %M' -o "$TMP/time.ro" env ODP_API_KEY="$KEY" OCEANFLOW_LOG=warn \
    "$TARGET/oceanflow" run --once --config "$TMP/read-only.toml" --output "$TMP/ro.json"
  read -r rsecs rkb <"$TMP/time.ro"
  printf '%-10s %4s %10.2f %14.0f %12.1f   (read path only: aggregates off)\n' of-read "$rep" "$rsecs" "$(echo "$ROWS / $rsecs" | bc -l)" "$(echo "$rkb / 1024" | bc -l)"

  /usr/bin/time -f '%e %M' -o "$TMP/time.sdk" "$PY" "$HERE/sdk_bench.py" "$URL" "$KEY" "$DATASET" >"$TMP/sdk.json"
  read -r psecs pkb <"$TMP/time.sdk"
  read -r srows ssecs <<<"$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["rows"], d["seconds"])' "$TMP/sdk.json")"
  [[ "$srows" == "$ROWS" ]] || { echo "odp-sdk read $srows rows, expected $ROWS" >&2; exit 1; }
  printf '%-10s %4s %10.2f %14.0f %12.1f   (process %.2f s incl. imports)\n' odp-sdk "$rep" "$ssecs" "$(echo "$ROWS / $ssecs" | bc -l)" "$(echo "$pkb / 1024" | bc -l)" "$psecs"
done
