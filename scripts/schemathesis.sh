#!/usr/bin/env bash
# The HTTP API against its own OpenAPI document: starts a throwaway memesd (HTTP on a free
# loopback port, an admin key and a webhook secret made for the run) and runs schemathesis
# on the served /openapi.json with that key as the bearer: every operation, every check, a
# fixed seed, a bounded number of examples per operation and a time cap, so a run is
# repeatable and takes a minute or two. It fails on any 5xx, any response the document does
# not describe, any request the document forbids that memesd accepts, and any request the
# document allows that memesd refuses (scripts/schemathesis.toml lists the few refusals no
# schema can foresee, with their reasons); and if memesd died or logged a panic.
#
#   scripts/schemathesis.sh [MEMESD]      (default: target/debug/memesd, built if missing)
#
# MEMES_ST_EXAMPLES (default 50) and MEMES_ST_SEED (default 1) change the run's size and seed.
set -euo pipefail
cd "$(dirname "$0")/.."

memesd=${1:-target/debug/memesd}
[ -x "$memesd" ] || cargo build --locked --quiet --bin memesd
st=$(command -v schemathesis || echo "${MEMES_TEST_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/memes/test-venv}/bin/schemathesis")
[ -x "$st" ] || { echo "schemathesis.sh: schemathesis is not installed (run scripts/install-test-deps.sh)" >&2; exit 1; }

work=$(mktemp -d /tmp/memes-st.XXXXXX)
pid=
# shellcheck disable=SC2317  # called by the trap
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

random_hex() { od -An -tx1 -N32 /dev/urandom | tr -d ' \n'; }
key="memes_admin_$(random_hex)"
printf 'schemathesis %s\n' "$(printf %s "$key" | sha256sum | cut -d' ' -f1)" >"$work/admin-keys"
MEMES_WEBHOOK_SECRET="whsec_$(random_hex)"
export MEMES_WEBHOOK_SECRET
printf '%s\n' "$MEMES_WEBHOOK_SECRET" >"$work/webhook-secret"

MEMES_LOG=info "$memesd" --socket "$work/s.sock" --data-dir "$work/data" --http 127.0.0.1:0 \
  --admin-keys "$work/admin-keys" --webhook-secret "$work/webhook-secret" 2>"$work/memesd.log" &
pid=$!
url=
for _ in $(seq 400); do
  url=$(grep -o 'and http://[0-9.:]*' "$work/memesd.log" | head -1 | cut -d' ' -f2 || true)
  [ -n "$url" ] && break
  kill -0 "$pid" 2>/dev/null || { cat "$work/memesd.log" >&2; echo "schemathesis.sh: memesd did not start" >&2; exit 1; }
  sleep 0.05
done
[ -n "$url" ] || { cat "$work/memesd.log" >&2; echo "schemathesis.sh: memesd logged no HTTP address" >&2; exit 1; }

status=0
# From the run's own directory: schemathesis keeps a cache in the one it runs in.
config=$PWD/scripts/schemathesis.toml
hooks=$PWD/scripts
cd "$work"
SCHEMATHESIS_HOOKS=schemathesis_hooks PYTHONPATH="$hooks${PYTHONPATH:+:$PYTHONPATH}" \
  timeout 900 "$st" --config-file "$config" run "$url/openapi.json" \
  --header "Authorization: Bearer $key" \
  --checks all \
  --max-examples "${MEMES_ST_EXAMPLES:-50}" \
  --seed "${MEMES_ST_SEED:-1}" \
  --request-timeout 30 \
  --generation-database none \
  --output-sanitize true || status=$?

if ! kill -0 "$pid" 2>/dev/null; then
  echo "schemathesis.sh: memesd died during the run" >&2
  cat "$work/memesd.log" >&2
  exit 1
fi
if grep -q panicked "$work/memesd.log"; then
  echo "schemathesis.sh: memesd panicked during the run" >&2
  grep -B2 -A10 panicked "$work/memesd.log" >&2
  exit 1
fi
exit "$status"
