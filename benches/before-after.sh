#!/usr/bin/env bash
# Two memesd builds side by side, with the yardstick's limitd, in alternating rounds: the
# closed loop (64 connections x 1), the pipelined loop (16 x 32) and the open loop at a fixed
# rate, each a durable charged get. For "no loss of speed" claims: compare the ratios within
# one run, not absolute figures (the machines are shared and noisy).
#
#   benches/before-after.sh BEFORE_DIR AFTER_DIR [ROUNDS] [OPEN_RATE] [OPEN_SECS]
#
# BEFORE_DIR and AFTER_DIR hold memesd (and AFTER_DIR memes and memes-bench, which drive both).
# ONE_LOT=1 leaves every bench user one lot (a deduction empties its welcome grant), as
# issue 26's "a charge for a user with one lot" asks; by default each holds two (the welcome
# grant, charged first, and --prepare's top-up).
# BEFORE_FLAGS and AFTER_FLAGS add memesd flags to either, so one build can be measured
# against itself with a feature on, e.g. metrics:
#
#   AFTER_FLAGS="--metrics 127.0.0.1:0" benches/before-after.sh target/release target/release
set -euo pipefail
cd "$(dirname "$0")/.."
before=$1 after=$2 rounds=${3:-3} rate=${4:-15000} secs=${5:-30}
yardstick=${YARDSTICK:-../shared/yardstick}
cargo build --release --quiet --manifest-path "$yardstick/Cargo.toml"
Y=$yardstick/target/release
work=$(mktemp -d /tmp/memes-ba.XXXXXX)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

bench() { "$after/memes" --socket "$1" bench "${@:2}"; }
start() { # name dir [memesd flags...]
  MEMES_LOG=warn "$2/memesd" --socket "$work/$1.sock" --data-dir "$work/$1" "${@:3}" 2>>"$work/$1.log" &
  pids+=($!)
  until "$after/memes" --socket "$work/$1.sock" status >/dev/null 2>&1; do sleep 0.02; done
  bench "$work/$1.sock" --prepare --users 10000 -n 1 -c 1 >/dev/null 2>&1
  if [ -n "${ONE_LOT:-}" ]; then # empty the welcome grant: one lot left, --prepare's top-up
    bench "$work/$1.sock" --users 10000 -n 10000 -c 1 -d 64 \
      --template '{"id":{id},"op":"topup","user":"{user}","amount":-150}' >/dev/null 2>&1
  fi
}
"$Y/limitd" --socket "$work/limitd.sock" --journal "$work/limitd.ndjson" 2>/dev/null &
pids+=($!)
# shellcheck disable=SC2086 # the flags are words
start before "$before" ${BEFORE_FLAGS:-}
# shellcheck disable=SC2086
start after "$after" ${AFTER_FLAGS:-}
limitd_line='{"id":{id},"op":"debit","user":"{user}","amount":1}'

line() { # label socket args...: one row "label rps p50 p99 max errors"
  local label=$1 socket=$2; shift 2
  bench "$socket" --json --max-errors 1000000000 "$@" | python3 benches/row.py "$label"
}

for round in $(seq "$rounds"); do
  # Alternate which build goes first, so neither always meets a warmer or cooler machine.
  if [ $((round % 2)) -eq 1 ]; then order="before after"; else order="after before"; fi
  echo "## round $round: closed loop, 64 connections x 1 in flight, 200,000 gets"
  line limitd "$work/limitd.sock" -c 64 -n 200000 --template "$limitd_line"
  for build in $order; do line "$build" "$work/$build.sock" -c 64 -n 200000 --users 10000; done
  echo "## round $round: pipelined, 16 connections x 32 in flight, 1,000,000 gets"
  line limitd "$work/limitd.sock" -c 16 -d 32 -n 1000000 --template "$limitd_line"
  for build in $order; do line "$build" "$work/$build.sock" -c 16 -d 32 -n 1000000 --users 10000; done
  echo "## round $round: open loop, $rate gets/s for $secs s, 64 connections"
  line limitd "$work/limitd.sock" --rate "$rate" --duration "$secs" -c 64 --template "$limitd_line"
  for build in $order; do
    line "$build" "$work/$build.sock" --rate "$rate" --duration "$secs" -c 64 --users 10000
  done
done
