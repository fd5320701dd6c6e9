#!/usr/bin/env bash
# Top-ups during a flood of history reads (issue 17, fault 1): 4 admin connections top up
# while 256 connections ask, in a loop, for the newest 10,000 entries of a user with 60,000.
# Prints the top-ups' throughput and latency without the flood and during it, in
# alternating rounds, and memesd's resident memory at the end of each flood.
#
#   benches/flood.sh [ROUNDS] [SECS]      (release build in target/release)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3} secs=${2:-20}
M=$PWD/target/release
work=$(mktemp -d /tmp/memes-flood.XXXXXX)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

MEMES_LOG=warn "$M/memesd" --socket "$work/s.sock" --data-dir "$work/data" 2>>"$work/memesd.log" &
daemon=$!
pids+=("$daemon")
until "$M/memes" --socket "$work/s.sock" status >/dev/null 2>&1; do sleep 0.02; done
bench() { "$M/memes" --socket "$work/s.sock" bench --max-errors 1000000000 "$@"; }
# The flooded user's 60,000 entries (pipelined top-ups), and the payers' accounts.
bench --op topup --users 1 --user-prefix flooded -n 59999 -c 1 -d 64 >/dev/null
bench --op topup --users 100 --user-prefix payer -n 100 -c 1 >/dev/null

topups() { # label
  bench --op topup --users 100 --user-prefix payer -c 4 --duration "$secs" --json |
    python3 -c '
import json, sys
r = json.load(sys.stdin); l = r["latency_ms"]
print("%-16s %7.0f top-ups/s  p50 %.2f  p99 %.2f  max %.1f ms  errors %d"
      % (sys.argv[1], r["rps"], l["p50"], l["p99"], l["max"], r["error_total"]))' "$1"
}
history='{"id":{id},"op":"history","user":"flooded0","limit":10000}'
for round in $(seq "$rounds"); do
  echo "## round $round"
  topups "quiet"
  bench -c 256 --duration $((secs + 4)) --template "$history" --json >"$work/flood.json" &
  flood=$!
  sleep 2
  topups "history flood"
  rss=$(awk '/VmRSS/ {printf "%.0f", $2/1024}' "/proc/$daemon/status")
  wait "$flood"
  python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
busy = r["errors"].get("busy", 0)
print("  the flood: %d history requests, %d pages served, %d refused busy; memesd %s MB resident"
      % (r["requests"], r["requests"] - r["error_total"], busy, sys.argv[2]))' "$work/flood.json" "$rss"
done
