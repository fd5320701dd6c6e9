#!/usr/bin/env bash
# The whole test run, as README tells a newcomer and as CI runs it: installs what the tests
# need (Debian packages, as root or through sudo; schemathesis from PyPI), then runs every
# test, and schemathesis against the HTTP API's served OpenAPI document. Nothing is skipped:
# a test whose server or tool is missing fails and says so.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-test-deps.sh

cargo test --locked
# The web console in a real browser, against the memesd just built.
cargo build --locked --bins
scripts/test-browser.sh
# The HTTP API against its own OpenAPI document (schemathesis), on the memesd just built.
scripts/schemathesis.sh target/debug/memesd
# The load gate: a short open-loop load on a release build must stay within its service
# level (p99, worst request, no errors).
scripts/load-gate.sh
