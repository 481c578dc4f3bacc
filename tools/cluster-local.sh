#!/usr/bin/env bash
# A local 3-node seqd cluster on 127.0.0.1 (docs/CLUSTER.md, section 1).
#   tools/cluster-local.sh start|stop|status|kill N|restart N
# Nodes: gateway 127.0.0.1:740N, node transport 127.0.0.1:750N, metrics 127.0.0.1:940N.
# Data, certificates, configurations and logs under $SEQD_CLUSTER_DIR (./cluster-local).
# Uses $SEQD (default: target/release/seqd, then seqd on the PATH).
set -euo pipefail
dir=${SEQD_CLUSTER_DIR:-./cluster-local}
seqd=${SEQD:-target/release/seqd}
[ -x "$seqd" ] || seqd=$(command -v seqd) || { echo "build seqd first: cargo build --release" >&2; exit 1; }
nodes=3

write_configs() {
  mkdir -p "$dir"
  [ -f "$dir/certs/ca.pem" ] || "$seqd" dev-certs "$dir/certs" --nodes "$nodes" >/dev/null
  for i in $(seq 1 "$nodes"); do
    {
      printf '[data]\ndir = "%s/node%s"\n' "$dir" "$i"
      printf '[gateway]\nlisten = "127.0.0.1:740%s"\ncerts_dir = "%s/certs"\n' "$i" "$dir"
      printf '[metrics]\nlisten = "127.0.0.1:940%s"\n' "$i"
      printf '[[principals]]\nname = "admin"\nadmin = true\n'
      printf '[[principals]]\nname = "trader1"\naccounts = [1]\n'
      printf '[[principals]]\nname = "trader2"\naccounts = [2]\n'
      printf '[cluster]\nnode_id = %s\ncerts_dir = "%s/certs"\nelection_timeout_ms = 500\nheartbeat_ms = 50\n' "$i" "$dir"
      for j in $(seq 1 "$nodes"); do
        printf '[[cluster.nodes]]\nid = %s\nnode_address = "127.0.0.1:750%s"\n' "$j" "$j"
        printf 'client_address = "127.0.0.1:740%s"\nmetrics_address = "127.0.0.1:940%s"\n' "$j" "$j"
      done
    } >"$dir/node$i.toml"
  done
}

pid_of() { cat "$dir/node$1.pid" 2>/dev/null || true; }
# A pid file outlives its process, and the pid may be reused: it counts only while that process
# is still this node's `seqd run`.
running() {
  local pid; pid=$(pid_of "$1")
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "--config $dir/node$1.toml"
}

start_node() {
  running "$1" && return
  "$seqd" run --config "$dir/node$1.toml" >>"$dir/node$1.log" 2>&1 &
  echo $! >"$dir/node$1.pid"
  echo "node $1: pid $(pid_of "$1"), log $dir/node$1.log"
}

case "${1:-}" in
  start)
    write_configs
    for i in $(seq 1 "$nodes"); do start_node "$i"; done
    ;;
  stop)
    for i in $(seq 1 "$nodes"); do running "$i" && kill -TERM "$(pid_of "$i")"; done
    for i in $(seq 1 "$nodes"); do while running "$i"; do sleep 0.1; done; done
    ;;
  kill) running "$2" && kill -KILL "$(pid_of "$2")" ;;
  restart) running "$2" && kill -TERM "$(pid_of "$2")"; while running "$2"; do sleep 0.1; done; start_node "$2" ;;
  status) exec "$seqd" cluster status --config "$dir/node1.toml" ;;
  *) echo "usage: $0 start|stop|status|kill N|restart N" >&2; exit 2 ;;
esac
