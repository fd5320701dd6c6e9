#!/usr/bin/env bash
# CPU instructions memesd spends per charged `get`, for builds side by side, counted by
# callgrind. An instruction count does not move with whatever else the machine runs, so it
# answers "did this change make a request dearer?" on a busy two-core machine where
# throughput rounds swing by 2x (compare the builds' counts, not their seconds).
#
#   benches/instructions.sh DIR...       each DIR holds memesd and memes
#
# For each build: memesd starts under callgrind on a fresh data directory, its bench users are
# prepared, 500 warm-up gets run, the counters are zeroed, then N gets (default 1,000; N=…)
# over one connection are counted (one request per batch, so the count does not depend on how requests happened to be batched), in two workloads:
#   same-query  every get asks for "cat" (a query searched once, then served from the cache)
#   new-query   every get describes a meme in words never sent before (embedded and ranked
#               each time: the dearest case for search by meaning)
# LOTS=K (default 2) gives every bench user K lots before anything is counted: the welcome
# grant, --prepare's top-up and K-2 top-ups of 1 token (spent after the first two; a build
# before lots just adds them to the balance). LOTS=1 leaves --prepare's top-up alone: a
# deduction of 150 tokens empties the welcome grant (a build before lots just deducts them). Prints instructions per request. Needs valgrind
# (callgrind, callgrind_control).
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: benches/instructions.sh DIR..." >&2; exit 2; }
n=${N:-1000}
lots=${LOTS:-2}
users=1000
topup='{"id":{id},"op":"topup","user":"{user}","amount":1}'
deduct_welcome='{"id":{id},"op":"topup","user":"{user}","amount":-150}'
work=$(mktemp -d /tmp/memes-instr.XXXXXX)
pid=
# shellcheck disable=SC2317  # called by the trap
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

same_query='{"id":{id},"op":"get","user":"{user}","query":"cat"}'
new_query='{"id":{id},"op":"get","user":"{user}","query":"a dog calmly drinking coffee in a burning room number {seq} of {id}"}'

# Instructions counted since the last zeroing, then zeroed again.
counted() {
  callgrind_control -d "$pid" >/dev/null 2>&1
  local file
  file=$(ls -t "$work"/callgrind.out.* | head -1)
  awk '/^summary:/ {print $2}' "$file"
  rm -f "$work"/callgrind.out.*.*
  callgrind_control -z "$pid" >/dev/null 2>&1
}

printf '%-40s %-10s %14s\n' build workload "instr/request"
for dir in "$@"; do
  rm -rf "$work/data" "$work/s.sock"
  MEMES_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$work/callgrind.out.%p" \
    "$dir/memesd" --socket "$work/s.sock" --data-dir "$work/data" 2>>"$work/memesd.log" &
  pid=$!
  until "$dir/memes" --socket "$work/s.sock" status >/dev/null 2>&1; do sleep 0.2; done
  bench() { "$dir/memes" --socket "$work/s.sock" bench --users "$users" "$@" >/dev/null; }
  bench --prepare -n 1 -c 1
  if [ "$lots" -eq 1 ]; then
    bench -n "$users" -c 1 -d 64 --template "$deduct_welcome"
  elif [ "$lots" -gt 2 ]; then
    # One connection takes the users in turn: each gets LOTS-2 top-ups.
    bench -n $((users * (lots - 2))) -c 1 -d 64 --template "$topup"
  fi
  bench -n 500 -c 1 --template "$same_query"
  for workload in same-query new-query; do
    template=$same_query
    [ "$workload" = new-query ] && template=$new_query
    counted >/dev/null
    bench -n "$n" -c 1 --template "$template"
    total=$(counted)
    printf '%-40s %-10s %14d\n' "$dir" "$workload" $((total / n))
  done
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  pid=
done
