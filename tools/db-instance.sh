#!/usr/bin/env bash
# Runs a private, throwaway database server in the foreground, for tests that kill and restart
# a database mid-load without touching the shared servers of tools/services.sh.
#   tools/db-instance.sh mariadb    DIR PORT     (MySQL protocol on 127.0.0.1:PORT, root, no password)
#   tools/db-instance.sh clickhouse DIR PORT     (HTTP on 127.0.0.1:PORT; native PORT+1, interserver PORT+2)
# DIR is created and initialised on first use and reused afterwards (a restart keeps the data).
# `exec` makes the server this process, so the caller's kill (even SIGKILL) reaches it.
set -euo pipefail
kind=$1 dir=$2 port=$3
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)

case "$kind" in
  mariadb)
    if [ ! -d "$dir/data/mysql" ]; then
      mariadb-install-db --no-defaults --datadir="$dir/data" --user="$(id -un)" \
        --auth-root-authentication-method=normal --skip-test-db >"$dir/install.log" 2>&1
    fi
    exec /usr/sbin/mariadbd --no-defaults --datadir="$dir/data" --user="$(id -un)" --port="$port" \
      --bind-address=127.0.0.1 --socket="$dir/mysqld.sock" --pid-file="$dir/mysqld.pid" --skip-log-bin \
      --innodb-buffer-pool-size=256M --log-error="$dir/error.log"
    ;;
  clickhouse)
    mkdir -p "$dir/data" "$dir/tmp" "$dir/user_files" "$dir/format_schemas"
    cd "$dir"
    exec /usr/sbin/clickhouse-server --config-file=/etc/clickhouse-server/config.xml -- \
      --http_port="$port" --tcp_port="$((port + 1))" --interserver_http_port="$((port + 2))" \
      --path="$dir/data/" --tmp_path="$dir/tmp/" --user_files_path="$dir/user_files/" \
      --format_schema_path="$dir/format_schemas/" --logger.log="$dir/server.log" \
      --logger.errorlog="$dir/error.log" --logger.console=0
    ;;
  *)
    echo "usage: $0 mariadb|clickhouse DIR PORT" >&2
    exit 2
    ;;
esac
