#!/usr/bin/env python3
"""The ClickHouse mirror on a current ClickHouse engine, compared with the server it runs on.

    analytics_compat.py --url URL --database DB --schema FILE --analytics FILE

Runs the mirror's DDL (FILE: statements separated by lines holding `;`, as the sink writes them)
in an embedded current ClickHouse (the `chdb` package), copies every row of every table of the
replicated database DB on the server at URL (ClickHouse 18.16 here) into it, then runs each query of
docs/analytics.sql (`-- name: <name>` blocks) on both and compares the answers exactly: column
names, column types and every value. Exit status 0 when all agree, 1 with the differences printed.

Decimal output: releases after 18.16 print decimals without trailing zeros by default; the
comparison sets `output_format_decimal_trailing_zeros = 1`, a display setting, so that the values
are compared digit for digit. Everything else runs with the engines' defaults.

Run by tests/replicate_clickhouse.rs (analytics_agree_on_a_current_clickhouse) with the Python of
tools/chdb-venv.sh.
"""

import argparse
import sys
import tempfile
import urllib.parse
import urllib.request

from chdb import session as chdb_session

FORMAT = "TSVWithNamesAndTypes"


def server_query(url: str, database: str, sql: str) -> str:
    query = urllib.parse.urlencode({"database": database})
    request = urllib.request.Request(f"{url}/?{query}", data=sql.encode(), method="POST")
    with urllib.request.urlopen(request, timeout=60) as response:
        return response.read().decode()


def statements(text: str) -> list[str]:
    """Splits a DDL file on lines that hold only `;` (and on a trailing `;`)."""
    out, current = [], []
    for line in text.splitlines():
        if line.strip() == ";":
            out.append("\n".join(current))
            current = []
        else:
            current.append(line)
    rest = "\n".join(current).strip().rstrip(";").strip()
    if rest:
        out.append(rest)
    return [s for s in (s.strip() for s in out) if s]


def analytics(text: str) -> dict[str, str]:
    """The `-- name:` blocks of docs/analytics.sql, comments dropped."""
    queries, name, body = {}, None, []
    for line in text.splitlines() + ["-- name: <end>"]:
        if line.startswith("-- name:"):
            if name is not None:
                sql = "\n".join(body).strip().rstrip(";").strip()
                if not sql:
                    raise SystemExit(f"query {name} is empty")
                queries[name] = sql
            name, body = line[len("-- name:"):].strip(), []
        elif name is not None and not line.lstrip().startswith("--"):
            body.append(line)
    return queries


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--database", required=True)
    parser.add_argument("--schema", required=True)
    parser.add_argument("--analytics", required=True)
    args = parser.parse_args()
    url = args.url.rstrip("/")

    current = chdb_session.Session(tempfile.mkdtemp(prefix="seqd-chdb-"))
    current.query("CREATE DATABASE IF NOT EXISTS mirror")
    current.query("USE mirror")
    with open(args.schema) as f:
        for sql in statements(f.read()):
            current.query(sql)
    print(f"current engine: ClickHouse {current.query('SELECT version()', 'TSV').data().strip()}")

    tables = server_query(url, args.database, "SELECT name FROM system.tables WHERE database = currentDatabase() ORDER BY name FORMAT TSV").split()
    rows_copied = 0
    for table in tables:
        rows = server_query(url, args.database, f"SELECT * FROM `{table}` FORMAT TSV")
        if rows:
            current.query(f"INSERT INTO mirror.`{table}` FORMAT TSV\n{rows}")
            rows_copied += rows.count("\n")
    print(f"copied {rows_copied} rows of {len(tables)} tables")

    failures = 0
    queries = analytics(open(args.analytics).read())
    for name, sql in queries.items():
        old = server_query(url, args.database, f"{sql}\nFORMAT {FORMAT}")
        new = current.query(f"{sql}\nSETTINGS output_format_decimal_trailing_zeros = 1", FORMAT).data()
        if old == new:
            print(f"{name}: same answer ({old.count(chr(10)) - 2} rows)")
            continue
        failures += 1
        print(f"{name}: DIFFERENT answers")
        old_lines, new_lines = old.splitlines(), new.splitlines()
        for i in range(max(len(old_lines), len(new_lines))):
            a = old_lines[i] if i < len(old_lines) else "<none>"
            b = new_lines[i] if i < len(new_lines) else "<none>"
            if a != b:
                print(f"  line {i + 1}:\n    18.16:   {a}\n    current: {b}")
    if not queries:
        print("no queries found")
        return 1
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
