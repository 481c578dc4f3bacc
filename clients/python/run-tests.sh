#!/usr/bin/env bash
# Runs the Python SDK's tests (codec units and the integration tests against a real daemon).
#
#   clients/python/run-tests.sh [SEQD_BINARY] [pytest args...]
#
# SEQD_BINARY (or $SEQD_BIN) is the seqd to test against; default target/debug/seqd of this
# repository. Creates a virtual environment in $SEQD_PY_VENV (default clients/python/.venv),
# installs the package with its test extras and runs pytest. Exits non-zero on any failure.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
    SEQD_BIN="$1"
    shift
fi
SEQD_BIN="${SEQD_BIN:-$repo/target/debug/seqd}"
case "$SEQD_BIN" in /*) ;; *) SEQD_BIN="$PWD/$SEQD_BIN" ;; esac
if [ ! -x "$SEQD_BIN" ]; then
    echo "run-tests.sh: no seqd binary at $SEQD_BIN (cargo build --bin seqd, or pass its path)" >&2
    exit 2
fi
export SEQD_BIN

venv="${SEQD_PY_VENV:-$here/.venv}"
if [ ! -x "$venv/bin/python" ]; then
    if ! python3 -m venv "$venv" 2>/dev/null; then
        # Debian and Ubuntu ship venv separately.
        rm -rf "$venv"
        echo "run-tests.sh: python3 -m venv failed; installing python3-venv" >&2
        if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi
        $sudo apt-get update -qq
        $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv
        python3 -m venv "$venv"
    fi
fi
"$venv/bin/python" -m pip install -q --upgrade pip >/dev/null
# Not editable: the tests run against the package as it installs (py.typed included).
"$venv/bin/python" -m pip install -q "$here[test]"

cd "$here"
exec "$venv/bin/python" -m pytest -q "$@"
