#!/usr/bin/env bash
# Two memesd builds side by side on PostgreSQL: each on a database of its own in one throwaway
# cluster, in alternating rounds, 64 connections, every request a durable charged get. For
# "no loss of speed" claims on the PostgreSQL store (compare the ratios within one round; the
# machines are shared and noisy).
#
#   benches/postgres-before-after.sh BEFORE_DIR AFTER_DIR [ROUNDS] [SECS]
#
# BEFORE_DIR and AFTER_DIR hold memesd (and AFTER_DIR memes and memes-bench, which drive
# both). ONE_LOT=1 leaves every bench user one lot, as benches/before-after.sh does. Every
# round starts from the same state on both sides: accounts vacuumed, fresh statistics and a
# checkpoint behind it.
set -euo pipefail
cd "$(dirname "$0")/.."
before=$1 after=$2 rounds=${3:-3} secs=${4:-20}
users=10000
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
work=$(mktemp -d /tmp/memes-pg-ba.XXXXXX)
chmod 755 "$work"
as_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
[ "$(id -u)" -eq 0 ] && chown postgres: "$work"
pids=()
cleanup() {
  kill "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
  as_pg "$PGBIN/pg_ctl" -D "$work/data" -m fast -w stop >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

as_pg "$PGBIN/initdb" -D "$work/data" -U postgres -A trust -E UTF8 --locale=C >/dev/null
as_pg "$PGBIN/pg_ctl" -D "$work/data" -l "$work/server.log" -w \
  -o "-c listen_addresses='' -c unix_socket_directories=$work -c max_connections=300 -c shared_buffers=256MB" \
  start >/dev/null

bench() { "$after/memes" --socket "$1" bench "${@:2}"; }
start() { # name dir
  as_pg "$PGBIN/createdb" -h "$work" -U postgres "$1"
  MEMES_LOG=warn "$2/memesd" --socket "$work/$1.sock" --data-dir "$work/$1" \
    --store "postgres://postgres@/$1?host=$work" --store-pool 16 2>>"$work/$1.log" &
  pids+=($!)
  until "$after/memes" --socket "$work/$1.sock" status >/dev/null 2>&1; do sleep 0.05; done
  bench "$work/$1.sock" --prepare --users $users -n 1 -c 16 >/dev/null 2>&1
  if [ -n "${ONE_LOT:-}" ]; then # empty the welcome grant: one lot left, --prepare's top-up
    bench "$work/$1.sock" --users $users -n $users -c 16 \
      --template '{"id":{id},"op":"topup","user":"{user}","amount":-150}' >/dev/null 2>&1
  fi
}
start before "$before"
start after "$after"

settle() { # database
  as_pg "$PGBIN/psql" -h "$work" -U postgres -q -c "VACUUM ANALYZE" -c "CHECKPOINT" "$1"
}
line() { # build: one row "label rps p50 p99 max errors"
  settle "$1"
  bench "$work/$1.sock" --json --max-errors 1000000000 -c 64 --duration "$secs" --users $users |
    python3 benches/row.py "$1"
}

for round in $(seq "$rounds"); do
  if [ $((round % 2)) -eq 1 ]; then order="before after"; else order="after before"; fi
  echo "## round $round: closed loop, 64 connections x 1 in flight, $secs s"
  for build in $order; do line "$build"; done
done
