#!/usr/bin/env bash
# The web console's tests under Node.js (tests/browser): its pure modules, then the console
# in headless Chromium (Debian's, driven by playwright-core) against a real memesd built by
# cargo (target/debug; MEMESD and MEMES override). Screenshots go to target/browser-screenshots/.
# Nothing here is optional: a missing browser or Node.js fails the run and says so.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() {
  echo "test-browser: $*" >&2
  exit 1
}

command -v node >/dev/null 2>&1 ||
  fail "Node.js is missing: the browser tests need Node.js 20.11 or newer with npm (scripts/install-test-deps.sh installs Debian's)"
command -v npm >/dev/null 2>&1 || fail "npm is missing: the browser tests install playwright-core with it"
node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 11) ? 0 : 1)' ||
  fail "Node.js $(node --version) is too old: the browser tests need 20.11 or newer"
chromium="${CHROMIUM:-/usr/bin/chromium}"
[ -x "$chromium" ] ||
  fail "Chromium is missing at $chromium: install Debian's chromium package (scripts/install-test-deps.sh does) or set CHROMIUM"
for binary in "${MEMESD:-target/debug/memesd}" "${MEMES:-target/debug/memes}"; do
  [ -x "$binary" ] || fail "$binary is missing: build it first (cargo build --locked --bins)"
done

cd tests/browser
# Install exactly what the lock file says, and again whenever it changes.
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
export CHROMIUM="$chromium"
node --test --test-concurrency=1 modules.test.mjs console.test.mjs
