#!/usr/bin/env bash
# The whole test suite, on a fresh Debian machine with Rust: installs and starts what the
# tests need, then runs every test. This is the command README.md gives and .ci/run calls.
set -euo pipefail
cd "$(dirname "$0")/.."

# Database servers for the replicator tests are started here once those tests exist; the
# engine and journal tests need nothing but cargo.
if [ -x tools/services.sh ]; then
  bash tools/services.sh
  # The tests' databases carry this run's id (src/testkit/test_db.rs); on exit, however the run
  # ends, only they are dropped: the servers may be shared with other runs.
  SEQD_TEST_RUN=$(bash tools/services.sh --run-id $$)
  export SEQD_TEST_RUN
  trap 'bash tools/services.sh --drop-run "$SEQD_TEST_RUN" || true' EXIT
fi

# promtool (Debian package `prometheus`) checks the metrics exposition (tests/metrics.rs), the
# alert rules and the dashboard's queries; installed where missing.
if ! command -v promtool >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then as_root=(); else as_root=(sudo); fi
  "${as_root[@]}" apt-get update -qq
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
promtool check rules docs/prometheus/alerts.yml
promtool test rules docs/prometheus/alerts_test.yml

# The code itself first: formatting and lints fail the run before anything slow starts.
cargo fmt --check
cargo clippy --all-targets --quiet -- -D warnings
# The production library without the test machinery (ARCHITECTURE.md, Layout: testkit).
cargo clippy --lib --no-default-features --quiet -- -D warnings

# A debug-profile pass (overflow checks and debug_assert! on) of the unit, property,
# differential and fuzz-corpus tests, which exercise the engine and the codecs hardest.
cargo test --lib --test engine_properties --test engine_differential --test engine_workflows \
  --test protocol --test fuzz_corpus --test tidy

cargo build --release --bins

# The systemd unit, offline: `systemd-analyze verify` and the `security` exposure score.
bash tools/check-unit.sh target/release/seqd

# The crash tests at full length, about two minutes each here: 100 SIGKILLs of a sequencing
# child, then 100 SIGKILLs of the whole daemon under client load.
tools/crash-test --cycles 100 --seed "${SEQD_CRASH_SEED:-1}"
tools/crash-test --daemon --cycles 100 --seed "${SEQD_CRASH_SEED:-1}"

# The Python SDK against the release daemon (a venv with aioquic from PyPI; python3-venv is
# installed with apt-get where missing).
bash clients/python/run-tests.sh target/release/seqd -q

# The examples in the documentation, then every unit, integration, property and differential
# test and the benchmarks in test mode (last, so its summary closes the run).
cargo test --release --doc
cargo test --release --all-targets
