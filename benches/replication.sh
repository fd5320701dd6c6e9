#!/usr/bin/env bash
# The price of synchronous replication, for RELIABILITY.md: closed-loop charged gets (durable,
# `memes bench`, 64 connections) through one memesd on the replicated cluster
# (scripts/patroni-cluster.sh: three nodes under Patroni, synchronous_mode_strict, each in its
# own network namespace) against one memesd on a single PostgreSQL on the same machine (same
# server version and settings: fsync and synchronous_commit on), in the same run, rounds
# alternating. As root.
#
#   benches/replication.sh        ROUNDS=3 SECS=15 by default
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${MEMES_CLUSTER_URL:-}" ]; then
  cargo build --release --locked --quiet
  exec scripts/patroni-cluster.sh -- "$0" "$@"
fi
ROUNDS=${ROUNDS:-3}
SECS=${SECS:-15}
USERS=10000
M=$PWD/target/release
PGBIN=$(ls -d /usr/lib/postgresql/15/bin 2>/dev/null || ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
work=$(mktemp -d /tmp/memes-replication.XXXXXX)
chmod 755 "$work"
chown postgres: "$work"
as_pg() { runuser -u postgres -- "$@"; }
pids=()
cleanup() {
  kill "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
  as_pg "$PGBIN/pg_ctl" -D "$work/data" -m fast -w stop >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

# The single server: over TCP on loopback, as the cluster's nodes are reached over their
# bridge, with the cluster's shared_buffers and connection limit left at their defaults too.
as_pg "$PGBIN/initdb" -D "$work/data" -U postgres -A trust -E UTF8 --locale=C >/dev/null
as_pg "$PGBIN/pg_ctl" -D "$work/data" -l "$work/server.log" -w \
  -o "-c listen_addresses=127.0.0.1 -c port=25499 -c unix_socket_directories=$work" start >/dev/null
as_pg "$PGBIN/createdb" -h "$work" -p 25499 -U postgres memes
SINGLE="postgres://postgres@127.0.0.1:25499/memes"

echo "## machine"
echo "$(nproc) cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $("$PGBIN/postgres" --version)"
echo "replicated: $MEMES_CLUSTER_URL (synchronous_mode_strict, synchronous_commit on)"
echo "single:     $SINGLE (synchronous_commit on)"
echo

start_memesd() { # name, store
  MEMES_LOG=warn "$M/memesd" --socket "$work/$1.sock" --data-dir "$work/$1" --store "$2" \
    --store-pool 16 2>>"$work/memesd.log" &
  pids+=($!)
  until "$M/memes" --socket "$work/$1.sock" status >/dev/null 2>&1; do sleep 0.05; done
  "$M/memes" --socket "$work/$1.sock" bench --prepare --users $USERS -n 1 -c 16 >/dev/null
}
start_memesd replicated "$MEMES_CLUSTER_URL"
start_memesd single "$SINGLE"

run() { # name
  "$M/memes" --socket "$work/$1.sock" bench -c 64 --duration "$SECS" --users $USERS --json | python3 -c '
import json, sys
r = json.loads(sys.stdin.read())
print("%-10s %s req/s  p50 %.2f ms  p99 %.2f ms  max %.1f ms  errors %d" % (sys.argv[1],
      format(round(r["rps"]), ","), r["latency_ms"]["p50"], r["latency_ms"]["p99"],
      r["latency_ms"]["max"], r["error_total"]))' "$1"
}

echo "## closed loop, 64 connections, durable charged get, ${SECS} s each"
for round in $(seq 1 "$ROUNDS"); do
  echo "round $round"
  if [ $((round % 2)) -eq 1 ]; then run single; run replicated; else run replicated; run single; fi
done
