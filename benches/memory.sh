#!/usr/bin/env bash
# Resident memory of memesd builds holding many accounts, side by side (issue 26: a million
# accounts with one lot each resident at most 1.3× what they were before lots). For each
# directory holding a memesd and a memes binary, ROUNDS times in turn: start memesd on a
# fresh data directory without a welcome grant, open USERS accounts with one top-up each
# (`memes bench --prepare`: one lot each, as a ledger written before lots carries over),
# read VmRSS while it serves them, stop it (SIGTERM: a final checkpoint), start it again on
# that ledger and read VmRSS once `status` answers. Prints the medians in MB. Memory, unlike
# throughput, does not depend on how busy the machine is.
#
#   benches/memory.sh DIR...        e.g. /tmp/before /tmp/after
#
# USERS (default 1000000) and ROUNDS (default 1) change the accounts and the rounds.
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: benches/memory.sh DIR..." >&2; exit 2; }
users=${USERS:-1000000}
rounds=${ROUNDS:-1}
# shellcheck source=benches/builds.sh
source "$(dirname "$0")/builds.sh"

start() {
  "$1/memesd" --socket "$work/s.sock" --data-dir "$work/data" --welcome-tokens 0 2>>"$work/memesd.log" &
  pid=$!
  until "$1/memes" --socket "$work/s.sock" status >/dev/null 2>&1; do sleep 0.01; done
}

stop() {
  kill -TERM "$pid"
  wait "$pid" || true
  pid=
}

for round in $(seq "$rounds"); do
  for dir in "$@"; do
    tag=$(echo "$dir" | tr '/' '_')
    rm -rf "$work/data" "$work/s.sock"
    start "$dir"
    # Every account is opened by the preparation; the one measured request changes nothing
    # that stays.
    "$dir/memes" --socket "$work/s.sock" bench --prepare --users "$users" --op balance \
      --requests 1 >/dev/null
    rss_mb "$pid" >>"$work/$tag.serving"
    stop
    start "$dir"
    rss_mb "$pid" >>"$work/$tag.restarted"
    stop
    echo "round $round: $dir: $(tail -1 "$work/$tag.serving") MB serving, $(tail -1 "$work/$tag.restarted") MB restarted" >&2
  done
done

printf '%-40s %14s %14s\n' "build ($users accounts, one lot each)" "serving, MB" "restarted, MB"
for dir in "$@"; do
  tag=$(echo "$dir" | tr '/' '_')
  printf '%-40s %14s %14s\n' "$dir" "$(median <"$work/$tag.serving")" "$(median <"$work/$tag.restarted")"
done
