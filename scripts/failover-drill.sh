#!/usr/bin/env bash
# The fault suite on a replicated PostgreSQL: starts a throwaway cluster
# (scripts/patroni-cluster.sh: etcd and three nodes under Patroni, each in its own network
# namespace) and runs the tests of tests/it/replicated.rs against it, one at a time: kill -9,
# freeze and cut-off of the primary, kill -9 of a memesd host and etcd's restart, under load
# through two memesd hosts, each judged by the history checker. Prints each test's figures
# (`figures: …` lines); the cluster is stopped afterwards whatever happens. As root.
# scripts/test.sh runs it.
#
#   scripts/failover-drill.sh            the short schedule (about 3 minutes)
#   scripts/failover-drill.sh --drill    the drill instead: open-loop load at MEMES_DRILL_RATE
#                                        (2000/s) for MEMES_DRILL_MINUTES (10), a failover
#                                        every 2 minutes, its availability measured
#
# Extra arguments go to the test binary (a test name to run only that one, …).
set -euo pipefail
cd "$(dirname "$0")/.."
tests=(replicated:: --skip replicated::drill_)
if [ "${1:-}" = --drill ]; then
  shift
  tests=(replicated::drill_)
fi
cargo build --locked --bins --tests --quiet
exec scripts/patroni-cluster.sh -- \
  cargo test --locked --quiet --test it -- "${tests[@]}" --ignored --test-threads 1 --nocapture "$@"
