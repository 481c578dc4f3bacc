#!/usr/bin/env bash
# Installs (Debian packages, where missing) and starts the database servers the replicator tests
# talk to, on loopback, and leaves them in a known state:
#   - MariaDB (stand-in for TiDB's MySQL protocol) on 127.0.0.1:3306, root with an empty password;
#   - ClickHouse on 127.0.0.1:8123 (HTTP).
# A server that already answers is used as it is. Works without systemd (the Debian packages do
# not start services in containers), so it starts the daemons with start-stop-daemon.
# Tests create and drop their own databases, named `seqd_test_<host>_<pid>_...` after the run that
# owns them (src/testkit/test_db.rs): <host> is this machine's host name cut to lower-case letters
# and digits (16 at most), <pid> the owner (tools/test.sh, or the test binary run on its own).
# The server may be shared, so this script drops only:
#   - `tools/services.sh --drop-run RUN`: the databases of run RUN (tools/test.sh on exit);
#   - on start: leftovers whose owner was on this host and is no longer running.
# Databases of other hosts, of live runs and of other naming schemes are never touched.
set -euo pipefail

log() { echo "services: $*" >&2; }

host_tag() {
  local tag
  tag=$(tr '[:upper:]' '[:lower:]' </proc/sys/kernel/hostname | tr -cd 'a-z0-9' | cut -c1-16)
  echo "${tag:-host}"
}

mysql_q() { mysql --protocol=tcp -h127.0.0.1 -P3306 -uroot -N -e "$1"; }
clickhouse_q() { curl -sf 'http://127.0.0.1:8123/' --data-binary "$1"; }

# test_databases: every `seqd_test_` database on both servers, one "SERVER NAME" a line.
test_databases() {
  mysql_q "SHOW DATABASES LIKE 'seqd\\_test\\_%'" 2>/dev/null | sed 's/^/mysql /' || true
  clickhouse_q "SELECT name FROM system.databases WHERE startsWith(name, 'seqd_test_')" 2>/dev/null \
    | sed 's/^/clickhouse /' || true
}

drop_database() { # drop_database SERVER NAME
  log "dropping $1 database $2"
  case "$1" in
    mysql) mysql_q "DROP DATABASE IF EXISTS \`$2\`" || log "could not drop $2" ;;
    clickhouse) clickhouse_q "DROP DATABASE IF EXISTS \`$2\`" >/dev/null || log "could not drop $2" ;;
  esac
}

# drop_run RUN: the databases named after run RUN (`<host>_<pid>`), on both servers.
drop_run() {
  local run=$1 server name
  [[ "$run" =~ ^[a-z0-9]{1,16}_[0-9]{1,10}$ ]] || { log "not a run id: $run"; return 2; }
  while read -r server name; do
    [[ "$name" == "seqd_test_${run}_"* ]] && drop_database "$server" "$name"
  done < <(test_databases)
  return 0
}

# drop_dead_runs: leftovers of runs on this host whose owner process has gone.
drop_dead_runs() {
  local host server name pid
  host=$(host_tag)
  while read -r server name; do
    if [[ "$name" =~ ^seqd_test_${host}_([0-9]{1,10})_ ]]; then
      pid=${BASH_REMATCH[1]}
      [ -d "/proc/$pid" ] || drop_database "$server" "$name"
    fi
  done < <(test_databases)
}

case "${1:-}" in
  --drop-run)
    drop_run "${2:?usage: $0 --drop-run RUN}"
    exit
    ;;
  --run-id) # the run id of a process: tools/test.sh names its run with its own pid
    echo "$(host_tag)_${2:?usage: $0 --run-id PID}"
    exit
    ;;
  "") ;;
  *)
    echo "usage: $0 [--drop-run RUN | --run-id PID]" >&2
    exit 2
    ;;
esac

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

# Known state: no databases left over from an interrupted run of this host.
drop_dead_runs
log "MariaDB $(mysql --protocol=tcp -h127.0.0.1 -uroot -N -e 'SELECT VERSION()'), ClickHouse $(curl -sf 'http://127.0.0.1:8123/' --data-binary 'SELECT version()') ready"
