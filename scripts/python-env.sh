#!/usr/bin/env bash
# Prints the path of a Python interpreter with tests/python/requirements.txt installed.
#
# The virtualenv lives in $OCEANFLOW_TOOLS (default ~/.cache/oceanflow), keyed by a hash of the
# requirements file, so it is built once and rebuilt when the requirements change. Everything
# comes from PyPI. Progress goes to stderr; stdout is only the interpreter's path.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REQ="$ROOT/tests/python/requirements.txt"
TOOLS="${OCEANFLOW_TOOLS:-${HOME:-/root}/.cache/oceanflow}"
HASH="$(sha256sum "$REQ" | cut -c1-12)"
VENV="$TOOLS/venv-$HASH"

if [[ ! -x "$VENV/bin/python" || ! -e "$VENV/.complete" ]]; then
  echo "creating $VENV from $REQ" >&2
  rm -rf "$VENV"
  mkdir -p "$TOOLS"
  python3 -m venv "$VENV" >&2
  timeout 900 "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$REQ" >&2
  touch "$VENV/.complete"
fi
echo "$VENV/bin/python"
