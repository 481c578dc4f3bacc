#!/usr/bin/env bash
# Checks systemd/seqd.service offline, without systemd running (CI containers have another PID 1):
#   - `systemd-analyze verify`: any line about the unit (unknown key, bad value, missing
#     executable) fails, since verify exits 0 on most of them;
#   - `systemd-analyze security --offline=yes`: fails above an exposure of 2.0 (the unit's is
#     1.4; README.md, Running on bare metal) and prints the score.
# Usage: tools/check-unit.sh [SEQD_BINARY]   (default target/release/seqd; the unit's ExecStart
# names /usr/local/bin/seqd, which is replaced by this path so that verify can check it).
# Installs the `systemd` package (for systemd-analyze) with apt-get where it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
binary=$(realpath "${1:-target/release/seqd}")
exposure_max=20 # tenths: 2.0

log() { echo "check-unit: $*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

if ! command -v systemd-analyze >/dev/null 2>&1; then
  log "installing systemd (for systemd-analyze)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends systemd >/dev/null
fi
[ -x "$binary" ] || { log "no executable $binary (build it first)"; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
unit="$work/seqd.service"
sed "s#^ExecStart=/usr/local/bin/seqd #ExecStart=$binary #" systemd/seqd.service >"$unit"
grep -q "^ExecStart=$binary " "$unit" || { log "ExecStart no longer names /usr/local/bin/seqd"; exit 1; }

# verify: the environment (no systemd as PID 1, no D-Bus) may add noise of its own; only lines
# naming the unit, or a failure with no other explanation, count.
set +e
output=$(SYSTEMD_LOG_LEVEL=warning systemd-analyze verify "$unit" 2>&1)
status=$?
set -e
about_unit=$(grep -F "seqd.service" <<<"$output" || true)
if [ -n "$about_unit" ]; then
  log "systemd-analyze verify found problems in systemd/seqd.service:"
  echo "$about_unit" >&2
  exit 1
fi
if [ "$status" != 0 ]; then
  log "systemd-analyze verify failed (exit $status) without naming the unit:"
  echo "$output" >&2
  exit 1
fi
[ -z "$output" ] || { log "systemd-analyze verify (environment, not the unit):"; echo "$output" >&2; }
log "systemd-analyze verify: systemd/seqd.service is clean"

if ! systemd-analyze security --help 2>&1 | grep -q -- "--offline"; then
  log "this systemd-analyze ($(systemd-analyze --version | head -1)) has no --offline: exposure not checked"
  exit 0
fi
set +e
report=$(systemd-analyze security --offline=yes --threshold="$exposure_max" "$unit" 2>&1)
status=$?
set -e
score=$(grep -o "Overall exposure level for seqd.service: .*" <<<"$report" || true)
if [ -z "$score" ]; then
  log "systemd-analyze security gave no score:"
  echo "$report" >&2
  exit 1
fi
if [ "$status" != 0 ]; then
  echo "$report" >&2
  log "$score: above $((exposure_max / 10)).$((exposure_max % 10))"
  exit 1
fi
log "$score"
