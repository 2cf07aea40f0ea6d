#!/usr/bin/env bash
# Kafka throughput: oceanflow consume + aggregate vs a bare rdkafka consumer reading the same
# topic's bytes (the ceiling the broker and client library allow), for JSON and Arrow IPC.
#
#   bench/kafka/run.sh [ROWS]        default 5,000,000 observations per format
#
# Starts a tansu broker on loopback (scripts/kafka-broker.sh), creates the topics with the
# Python client, produces with `kafka-bench produce`, then times `kafka-bench consume` and
# `oceanflow run --once` (stop_at_end) over each topic. Release builds; prints a JSON line per
# measurement and the ratios. Peak RSS of oceanflow comes from /usr/bin/time when present.
# BENCH_TARGET_DIR (default target/) selects the cargo target directory.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
ROWS="${1:-5000000}"
PARTITIONS=4
IPC_ROWS=10000
TARGET="${BENCH_TARGET_DIR:-$ROOT/target}"
WORK="$(mktemp -d)"
cd "$ROOT"

CARGO_TARGET_DIR="$TARGET" cargo build --release -p oceanflow-pipeline -p oceanflow-kafka >&2
BIN="$TARGET/release"
PY="$(scripts/python-env.sh)"

read -r PORT PID < <(scripts/kafka-broker.sh start)
trap 'scripts/kafka-broker.sh stop "$PID"; rm -rf "$WORK"' EXIT
BROKERS="127.0.0.1:$PORT"

now() { date +%s.%N; }

for FORMAT in json arrow_ipc; do
  TOPIC="bench-${FORMAT//_/-}"
  "$PY" tests/python/kafka_client.py create --brokers "$BROKERS" --topic "$TOPIC" \
    --partitions "$PARTITIONS" >&2
  PRODUCED=$("$BIN/kafka-bench" produce --brokers "$BROKERS" --topic "$TOPIC" \
    --partitions "$PARTITIONS" --format "${FORMAT//_/-}" --rows "$ROWS" \
    --rows-per-message "$IPC_ROWS")
  echo "{\"format\":\"$FORMAT\",\"produced\":$PRODUCED}"
  MESSAGES=$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['messages'])" "$PRODUCED")

  CEILING=$("$BIN/kafka-bench" consume --brokers "$BROKERS" --topic "$TOPIC" \
    --partitions "$PARTITIONS" --messages "$MESSAGES")
  echo "{\"format\":\"$FORMAT\",\"ceiling\":$CEILING}"

  cat >"$WORK/$FORMAT.toml" <<TOML
variables = ["temperature_c", "salinity_psu", "depth_m", "dissolved_oxygen"]
categorical = []
[pipeline]
workers = 1
allowed_lateness = "3650days"
[[sources]]
kind = "kafka"
name = "bench"
brokers = "$BROKERS"
topics = ["$TOPIC"]
group_id = "bench-$TOPIC"
format = "$FORMAT"
stop_at_end = true
max_batch_messages = 20000
[aggregates.station]
enabled = true
[aggregates.temporal]
enabled = true
buckets = ["hour", "day"]
[aggregates.regional]
enabled = false
TOML
  START=$(now)
  if [[ -x /usr/bin/time ]]; then
    /usr/bin/time -f "%M" -o "$WORK/rss" "$BIN/oceanflow" run --config "$WORK/$FORMAT.toml" \
      --once --output "$WORK/$FORMAT.json" 2>"$WORK/$FORMAT.log"
    RSS_KB=$(tail -1 "$WORK/rss")
  else
    "$BIN/oceanflow" run --config "$WORK/$FORMAT.toml" --once --output "$WORK/$FORMAT.json" \
      2>"$WORK/$FORMAT.log"
    RSS_KB=null
  fi
  SECS=$(python3 -c "print($(now) - $START)")
  python3 - "$FORMAT" "$CEILING" "$SECS" "$MESSAGES" "$ROWS" "$RSS_KB" "$WORK/$FORMAT.json" <<'PY'
import json, sys
fmt, ceiling, secs, messages, rows, rss, out = sys.argv[1:]
ceiling = json.loads(ceiling)
secs, messages, rows = float(secs), int(messages), int(rows)
counted = sum(s["count"] for s in json.load(open(out))["stations"])
rate = messages / secs
print(json.dumps({
    "format": fmt, "oceanflow_seconds": round(secs, 2), "rows_aggregated": counted,
    "rows_expected": rows, "oceanflow_rows_per_second": round(rows / secs),
    "oceanflow_messages_per_second": round(rate),
    "ceiling_messages_per_second": round(ceiling["messages_per_second"]),
    "ratio": round(rate / ceiling["messages_per_second"], 3),
    "peak_rss_mb": None if rss == "null" else round(int(rss) / 1024),
}))
PY
done
