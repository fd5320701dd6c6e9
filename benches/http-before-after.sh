#!/usr/bin/env bash
# Two memesd builds side by side over HTTP, in alternating rounds: the closed loop (64
# connections x 1), each request a durable charged GET /memes with a user id as the bearer
# (development mode, loopback). The socket's loads are benches/before-after.sh's; compare the
# ratios within one run (the machines are shared and noisy).
#
#   benches/http-before-after.sh BEFORE_DIR AFTER_DIR [ROUNDS]
#
# BEFORE_DIR and AFTER_DIR hold memesd (and AFTER_DIR memes, which drives both).
set -euo pipefail
cd "$(dirname "$0")/.."
before=$1 after=$2 rounds=${3:-3}
work=$(mktemp -d /tmp/memes-http-ba.XXXXXX)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
declare -A port
for build in before after; do
  dir=$before; [ "$build" = after ] && dir=$after
  port[$build]=$(free_port)
  MEMES_LOG=warn "$dir/memesd" --socket "$work/$build.sock" --data-dir "$work/$build" \
    --http "127.0.0.1:${port[$build]}" 2>>"$work/$build.log" &
  pids+=($!)
  until "$after/memes" --socket "$work/$build.sock" status >/dev/null 2>&1; do sleep 0.02; done
  "$after/memes" --socket "$work/$build.sock" bench --prepare --users 10000 -n 1 -c 1 >/dev/null 2>&1
done

line() { # build: one row "build rps p50 p99 max errors"
  "$after/memes" --url "http://127.0.0.1:${port[$1]}" bench --json -c 64 -n 200000 --users 10000 |
    python3 benches/row.py "$1"
}

for round in $(seq "$rounds"); do
  # Alternate which build goes first, so neither always meets a warmer or cooler machine.
  if [ $((round % 2)) -eq 1 ]; then order="before after"; else order="after before"; fi
  echo "## round $round: HTTP closed loop, 64 connections, 200,000 charged GET /memes"
  for build in $order; do line "$build"; done
done
