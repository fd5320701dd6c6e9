#!/usr/bin/env bash
# The whole test run, as README tells a newcomer and as CI runs it: installs what the tests
# need (Debian packages, as root or through sudo), then runs every test. Nothing is skipped:
# a test whose server or browser is missing fails and says so.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-test-deps.sh

cargo test --locked
# The integration tests once more, every daemon on PostgreSQL (a fresh database each, in a
# throwaway cluster of the test process's own); tests about the file store's own files keep
# using it.
MEMES_TEST_STORE=postgres cargo test --locked --test it
