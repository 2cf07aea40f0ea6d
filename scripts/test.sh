#!/usr/bin/env bash
# THE test command of oceanflow: ./scripts/test.sh
#
# Idempotent; on a fresh Debian 12 machine (as root, or with sudo) it installs what the tests
# need, then builds, tests, lints and format-checks the whole workspace. Every step is bounded
# by a timeout and the script stops at the first failing step with a clear message.
#
# Environment:
#   OCEANFLOW_TEST_SKIP_INSTALL=1  skip the system-package step (you installed them yourself)
#   CARGO_TARGET_DIR               honoured; OCEANFLOW_BIN is exported for the tests
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

if ! command -v cargo >/dev/null 2>&1 && [[ -x "${HOME:-/root}/.cargo/bin/cargo" ]]; then
  export PATH="${HOME:-/root}/.cargo/bin:$PATH"
fi

START=$SECONDS
CURRENT_STEP=""
step() {
  CURRENT_STEP="$1"
  printf '\n==> [%4ds] %s\n' "$((SECONDS - START))" "$1"
}
on_exit() {
  local rc=$?
  if [[ $rc -ne 0 ]]; then
    printf '\n!!! scripts/test.sh FAILED at step: %s (exit %d, after %ds)\n' \
      "${CURRENT_STEP:-setup}" "$rc" "$((SECONDS - START))" >&2
  fi
}
trap on_exit EXIT

# Runs "$@" with a time limit in seconds; a timeout is reported as such.
bounded() {
  local limit="$1"
  shift
  local rc=0
  timeout --kill-after=30 "$limit" "$@" || rc=$?
  if [[ $rc -eq 124 || $rc -eq 137 ]]; then
    echo "!!! timed out after ${limit}s: $*" >&2
  fi
  return "$rc"
}

# ------------------------------------------------------------------------- system packages
SUDO=""
if [[ "$(id -u)" -ne 0 ]]; then
  SUDO="sudo -n"
fi
APT_UPDATED=0
apt_install() {
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "!!! apt-get not found: install these packages by hand: $*" >&2
    return 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  if [[ $APT_UPDATED -eq 0 ]]; then
    bounded 600 $SUDO apt-get update -qq
    APT_UPDATED=1
  fi
  # Never start the packages' daemons (e.g. a system Prometheus on :9090): tests start their
  # own on loopback ports. policy-rc.d exit 101 = "action forbidden".
  local made_policy=0
  if [[ ! -e /usr/sbin/policy-rc.d && -w /usr/sbin ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    made_policy=1
  fi
  local rc=0
  bounded 900 $SUDO apt-get install -y -qq --no-install-recommends "$@" || rc=$?
  if [[ $made_policy -eq 1 ]]; then rm -f /usr/sbin/policy-rc.d; fi
  return "$rc"
}

install_system_deps() {
  # Prometheus: tests/tests/prometheus.rs runs a real server that scrapes oceanflow.
  if prometheus --version >/dev/null 2>&1; then
    echo "prometheus: $(prometheus --version 2>&1 | head -n1)"
  else
    apt_install prometheus
    prometheus --version >/dev/null 2>&1 || {
      echo "!!! prometheus still not runnable after apt-get install prometheus" >&2
      return 1
    }
    echo "prometheus: installed $(prometheus --version 2>&1 | head -n1)"
  fi

  # socat: the vessel serial-port test reads a pseudo-terminal pair made by socat.
  if command -v socat >/dev/null 2>&1; then
    echo "socat: $(socat -V 2>/dev/null | sed -n 's/^socat version \([^ ]*\).*/\1/p' | head -n1)"
  else
    apt_install socat
    command -v socat >/dev/null 2>&1 || { echo "!!! socat still missing after apt-get install socat" >&2; return 1; }
  fi

  # The Kafka-protocol broker (tansu) for the Kafka tests: built once into $OCEANFLOW_TOOLS.
  bounded 3600 "$ROOT/scripts/kafka-broker.sh" install
  OCEANFLOW_KAFKA_BROKER="$("$ROOT/scripts/kafka-broker.sh" path)"
  export OCEANFLOW_KAFKA_BROKER

  # Python clients of the cross-language tests (confluent-kafka, odp-sdk), from PyPI.
  OCEANFLOW_PYTHON="$(bounded 1200 "$ROOT/scripts/python-env.sh")"
  export OCEANFLOW_PYTHON
  echo "python: $OCEANFLOW_PYTHON"
}

if [[ "${OCEANFLOW_TEST_SKIP_INSTALL:-0}" == 1 ]]; then
  step "system packages: skipped (OCEANFLOW_TEST_SKIP_INSTALL=1)"
else
  step "system packages"
  install_system_deps
fi

# ------------------------------------------------------------------------- toolchain check
step "toolchain"
for tool in cargo rustc; do
  command -v "$tool" >/dev/null 2>&1 || { echo "!!! $tool not found on PATH" >&2; exit 1; }
done
cargo --version
cargo clippy --version || { echo "!!! cargo clippy missing (rustup component add clippy)" >&2; exit 1; }
cargo fmt --version || { echo "!!! cargo fmt missing (rustup component add rustfmt)" >&2; exit 1; }

# ------------------------------------------------------------------------- build and test
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
export OCEANFLOW_BIN="$TARGET_DIR/debug/oceanflow"
export RUST_BACKTRACE="${RUST_BACKTRACE:-1}"

step "cargo build --workspace --all-targets"
bounded 2400 cargo build --workspace --all-targets
if [[ ! -x "$OCEANFLOW_BIN" ]]; then
  echo "!!! the build did not produce $OCEANFLOW_BIN (package oceanflow-pipeline, bin oceanflow)" >&2
  exit 1
fi
echo "OCEANFLOW_BIN=$OCEANFLOW_BIN"

step "cargo test --workspace"
bounded 1500 cargo test --workspace --no-fail-fast

step "cargo clippy --workspace --all-targets -- -D warnings"
bounded 900 cargo clippy --workspace --all-targets -- -D warnings

step "cargo fmt --all -- --check"
bounded 120 cargo fmt --all -- --check

CURRENT_STEP=""
printf '\n==> [%4ds] all steps passed\n' "$((SECONDS - START))"
