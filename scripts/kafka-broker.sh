#!/usr/bin/env bash
# A real Kafka-protocol broker (tansu) for tests and local use, on loopback only.
#
#   scripts/kafka-broker.sh install          build tansu once into $OCEANFLOW_TOOLS (skip if there)
#   scripts/kafka-broker.sh path             print the broker binary's path
#   scripts/kafka-broker.sh start [PORT]     start on 127.0.0.1:PORT (a free port if absent);
#                                            prints "PORT PID" and returns once it accepts
#   scripts/kafka-broker.sh stop PID         stop it (SIGTERM, then SIGKILL after 10 s)
#
# Apache Kafka itself cannot be downloaded on the build machines; tansu 0.6.0 speaks the Kafka
# protocol, comes from crates.io, and keeps its data in memory here. Topics are not created on
# produce: create them with an admin client first. Building it takes about 14 minutes on
# 2 cores, so it is installed once into a fixed folder, keyed by version.
set -euo pipefail

TANSU_VERSION="0.6.0"
TOOLS="${OCEANFLOW_TOOLS:-${HOME:-/root}/.cache/oceanflow}"
ROOT_DIR="$TOOLS/tansu-$TANSU_VERSION"
BIN="$ROOT_DIR/bin/tansu"

install() {
  if [[ -x "$BIN" ]] && "$BIN" --version 2>/dev/null | grep -q "$TANSU_VERSION"; then
    echo "tansu $TANSU_VERSION: $BIN"
    return 0
  fi
  echo "building tansu $TANSU_VERSION into $ROOT_DIR (about 14 minutes on 2 cores)"
  mkdir -p "$ROOT_DIR"
  # A target dir of its own, so the workspace's build cache is not disturbed.
  CARGO_TARGET_DIR="$TOOLS/tansu-build" timeout 3600 \
    cargo install "tansu@$TANSU_VERSION" --locked --features dynostore --root "$ROOT_DIR"
  rm -rf "$TOOLS/tansu-build"
  "$BIN" --version
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

start() {
  [[ -x "$BIN" ]] || { echo "tansu is not installed: run $0 install" >&2; exit 1; }
  local port="${1:-$(free_port)}"
  local log="${TMPDIR:-/tmp}/tansu-$port.log"
  "$BIN" broker \
    --listener-url "tcp://127.0.0.1:$port" \
    --advertised-listener-url "tcp://127.0.0.1:$port" \
    --storage-engine "memory://tansu/" >"$log" 2>&1 &
  local pid=$!
  # Ready when it accepts connections; bounded to 30 s.
  for _ in $(seq 1 300); do
    if python3 -c "import socket; socket.create_connection(('127.0.0.1',$port),0.2).close()" 2>/dev/null; then
      echo "$port $pid"
      return 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "tansu exited during start; log $log:" >&2
      cat "$log" >&2
      exit 1
    fi
    sleep 0.1
  done
  kill "$pid" 2>/dev/null || true
  echo "tansu did not accept on 127.0.0.1:$port within 30 s; log $log" >&2
  exit 1
}

stop() {
  local pid="$1"
  kill "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -9 "$pid" 2>/dev/null || true
}

case "${1:-}" in
  install) install ;;
  path) echo "$BIN" ;;
  start) shift; start "$@" ;;
  stop) shift; stop "$1" ;;
  *) sed -n '2,12p' "$0"; exit 2 ;;
esac
