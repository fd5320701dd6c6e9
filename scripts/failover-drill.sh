#!/usr/bin/env bash
# The fault suite on a replicated PostgreSQL: starts a throwaway cluster
# (scripts/patroni-cluster.sh: etcd and three nodes under Patroni, each in its own network
# namespace) and runs the tests of tests/it/replicated.rs against it, one at a time: kill -9,
# freeze and cut-off of the primary under load through two memesd hosts, each judged by the
# history checker. Prints each test's figures (`figures: …` lines); the cluster is stopped
# afterwards whatever happens. As root. scripts/test.sh runs it; extra arguments go to the
# test binary (a test name to run only that one, --nocapture, …).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --locked --bins --tests --quiet
exec scripts/patroni-cluster.sh -- \
  cargo test --locked --quiet --test it replicated:: -- --ignored --test-threads 1 --nocapture "$@"
