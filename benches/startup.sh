#!/usr/bin/env bash
# Start-up time and resident memory of memesd builds, side by side (issue 28: search by
# meaning must add at most 100 ms to start-up and 40 MB to RSS). For each directory holding
# a memesd and a memes binary, ROUNDS times in turn: start memesd on a fresh data directory,
# time exec → `status` answering, read VmRSS, then search 200 queries never seen before
# (each embedded and ranked) and read VmRSS again. Prints the medians.
#
#   benches/startup.sh DIR...        e.g. /tmp/without-model /tmp/with-model
#
# ROUNDS (default 10) changes the number of rounds.
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: benches/startup.sh DIR..." >&2; exit 2; }
rounds=${ROUNDS:-10}
# shellcheck source=benches/builds.sh
source "$(dirname "$0")/builds.sh"

for round in $(seq "$rounds"); do
  for dir in "$@"; do
    tag=$(echo "$dir" | tr '/' '_')
    rm -rf "$work/data" "$work/s.sock"
    start=$(date +%s.%N)
    "$dir/memesd" --socket "$work/s.sock" --data-dir "$work/data" 2>/dev/null &
    pid=$!
    until "$dir/memes" --socket "$work/s.sock" status >/dev/null 2>&1; do sleep 0.005; done
    end=$(date +%s.%N)
    echo "$end - $start" | bc >>"$work/$tag.start"
    rss_mb "$pid" >>"$work/$tag.rss"
    for i in $(seq 200); do
      "$dir/memes" --socket "$work/s.sock" search "a cat that is upset about thing number $i" --limit 3 >/dev/null
    done
    rss_mb "$pid" >>"$work/$tag.rss-searched"
    kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
  done
  echo "round $round done" >&2
done

printf '%-40s %12s %14s %22s\n' build "start-up s" "RSS at start" "RSS after 200 searches"
for dir in "$@"; do
  tag=$(echo "$dir" | tr '/' '_')
  printf '%-40s %12s %11s MB %19s MB\n' "$dir" "$(median <"$work/$tag.start")" \
    "$(median <"$work/$tag.rss")" "$(median <"$work/$tag.rss-searched")"
done
