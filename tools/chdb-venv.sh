#!/usr/bin/env bash
# Makes (once) a Python virtual environment with chdb, the embedded current ClickHouse engine that
# tests/replicate_clickhouse.rs compares the mirror's analytics on, and prints its python's path.
#
#   tools/chdb-venv.sh            # venv in $SEQD_CHDB_VENV (default target/chdb-venv)
#
# chdb is pinned: a new ClickHouse release may change an answer, and that should be a deliberate
# upgrade of this line, not a surprise in CI.
set -euo pipefail

CHDB_VERSION="4.4.0"   # embeds ClickHouse 26.9
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${SEQD_CHDB_VENV:-$repo/target/chdb-venv}"

if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import chdb" 2>/dev/null; then
    rm -rf "$venv"
    mkdir -p "$(dirname "$venv")"
    if ! python3 -m venv "$venv" 2>/dev/null; then
        rm -rf "$venv"
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
            echo "chdb-venv: installing python3-venv" >&2
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >&2
        fi
        python3 -m venv "$venv"
    fi
    echo "chdb-venv: installing chdb $CHDB_VERSION into $venv (about 200 MB)" >&2
    "$venv/bin/pip" install -q --disable-pip-version-check "chdb==$CHDB_VERSION" >&2
fi
echo "$venv/bin/python"
