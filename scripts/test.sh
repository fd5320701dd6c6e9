#!/usr/bin/env bash
# The whole test run, as README tells a newcomer and as CI runs it: installs what the tests
# need (Debian packages, as root or through sudo; schemathesis from PyPI), then runs every
# test, and schemathesis against the HTTP API's served OpenAPI document. Nothing is skipped:
# a test whose server or tool is missing fails and says so.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests and deploy/check.sh need, when missing; with --patroni also
# etcd and Patroni, for the fault suite on a replicated cluster.
scripts/install-test-deps.sh --patroni

# Every Rust test: unit, property, integration (real daemons), the PostgreSQL store's.
cargo test --locked

# The integration tests once more, every daemon on PostgreSQL (a fresh database each, in a
# throwaway cluster of the test process's own); tests about the file store's own files keep
# using it.
MEMES_TEST_STORE=postgres cargo test --locked --test it

# The fault suite on a replicated PostgreSQL (three nodes under Patroni and etcd, in network
# namespaces): kill -9, freeze and cut-off of the primary under load, judged by the history
# checker. Namespaces need root: elsewhere it says so and goes on, unless told to skip nothing
# (MEMES_TEST_NO_SKIP=1, as CI does).
if [ "$(id -u)" -eq 0 ]; then
  scripts/failover-drill.sh
elif [ -n "${MEMES_TEST_NO_SKIP:-}" ]; then
  echo "test.sh: the fault suite needs root (network namespaces)" >&2
  exit 1
else
  echo "test.sh: not root, so the fault suite on a replicated cluster (scripts/failover-drill.sh) does not run" >&2
fi

# The web console in a real browser, against the memesd just built.
cargo build --locked --bins
scripts/test-browser.sh
# The HTTP API against its own OpenAPI document (schemathesis), on the memesd just built.
scripts/schemathesis.sh target/debug/memesd
# The operations files in deploy/ (alert rules, dashboard, systemd units), the units
# checked against the memesd just built by the tests (it must accept every ExecStart flag).
deploy/check.sh "${CARGO_TARGET_DIR:-target}/debug/memesd"

# Last, so that every check above has run whatever it says: the load gate. A short open-loop
# load on a release build must stay within its service level (p99 and worst request against
# the yardstick's in the same run, no errors).
scripts/load-gate.sh
