#!/usr/bin/env bash
# Installs (Debian packages, where missing) and starts the database servers the replicator tests
# talk to, on loopback, and leaves them in a known state:
#   - MariaDB (stand-in for TiDB's MySQL protocol) on 127.0.0.1:3306, root with an empty password;
#   - ClickHouse on 127.0.0.1:8123 (HTTP).
# A server that already answers is used as it is. Works without systemd (the Debian packages do
# not start services in containers), so it starts the daemons with start-stop-daemon.
# Tests create and drop their own databases (names start with `seqd_test_`); this script drops
# what an earlier, interrupted run left behind.
set -euo pipefail

log() { echo "services: $*" >&2; }

need_packages=()
command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ] || need_packages+=(mariadb-server mariadb-client)
[ -x /usr/bin/clickhouse-server ] || [ -x /usr/sbin/clickhouse-server ] || need_packages+=(clickhouse-server clickhouse-client)
command -v curl >/dev/null 2>&1 || need_packages+=(curl)

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

if [ ${#need_packages[@]} -gt 0 ]; then
  log "installing ${need_packages[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_packages[@]}" >/dev/null
fi

mysql_up() { mysqladmin --protocol=tcp -h127.0.0.1 -P3306 -uroot ping >/dev/null 2>&1; }
clickhouse_up() { curl -sf http://127.0.0.1:8123/ping >/dev/null 2>&1; }

wait_for() { # wait_for NAME CHECK_FN SECONDS
  local name=$1 check=$2 seconds=$3
  for _ in $(seq "$((seconds * 5))"); do
    if "$check"; then return 0; fi
    sleep 0.2
  done
  log "$name did not come up within ${seconds}s"
  return 1
}

if ! mysql_up; then
  log "starting MariaDB"
  as_root mkdir -p /run/mysqld
  as_root chown mysql:mysql /run/mysqld
  as_root start-stop-daemon --start --oknodo --background --chuid mysql --exec /usr/sbin/mariadbd -- --user=mysql
  # A fresh install lets root in over the unix socket only; allow TCP with an empty password too.
  for _ in $(seq 150); do
    if as_root mysqladmin ping >/dev/null 2>&1; then break; fi
    sleep 0.2
  done
  if ! mysql_up; then
    as_root mysql -e "ALTER USER root@localhost IDENTIFIED VIA mysql_native_password USING PASSWORD('') OR unix_socket" || true
  fi
  wait_for MariaDB mysql_up 30
fi

if ! clickhouse_up; then
  log "starting ClickHouse"
  ch=/usr/bin/clickhouse-server
  [ -x "$ch" ] || ch=/usr/sbin/clickhouse-server
  as_root mkdir -p /var/lib/clickhouse /var/log/clickhouse-server
  as_root chown -R clickhouse:clickhouse /var/lib/clickhouse /var/log/clickhouse-server
  as_root start-stop-daemon --start --oknodo --background --chuid clickhouse --chdir /var/lib/clickhouse \
    --exec "$ch" -- --config=/etc/clickhouse-server/config.xml
  wait_for ClickHouse clickhouse_up 60
fi

# Known state: no databases left over from an interrupted test run.
for db in $(mysql --protocol=tcp -h127.0.0.1 -uroot -N -e "SHOW DATABASES LIKE 'seqd\\_test\\_%'"); do
  mysql --protocol=tcp -h127.0.0.1 -uroot -e "DROP DATABASE \`$db\`"
done
for db in $(curl -sf 'http://127.0.0.1:8123/' --data-binary "SELECT name FROM system.databases WHERE startsWith(name, 'seqd_test_')"); do
  curl -sf 'http://127.0.0.1:8123/' --data-binary "DROP DATABASE IF EXISTS $db" >/dev/null
done
log "MariaDB $(mysql --protocol=tcp -h127.0.0.1 -uroot -N -e 'SELECT VERSION()'), ClickHouse $(curl -sf 'http://127.0.0.1:8123/' --data-binary 'SELECT version()') ready"
