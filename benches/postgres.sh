#!/usr/bin/env bash
# memesd on PostgreSQL against the anchor, for BENCHMARKS.md: pgbench running the
# straightforward transaction (BEGIN; UPDATE … balance = balance - 1 … RETURNING; INSERT the
# entry; COMMIT) with 64 clients, against the same server, schema and users as memesd, in the
# same run, rounds alternating. Every request on both sides is a durable charge (fsync and
# synchronous_commit on, the server's defaults).
#
#   benches/postgres.sh            ROUNDS=2 SECS=30 OPEN_SECS=60 STORE_POOL=16 by default
#
# Starts a throwaway cluster of its own (initdb into a temporary directory, Unix socket only,
# as the postgres user when run as root) and removes it afterwards. Run it on a quiet machine.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-2}
SECS=${SECS:-30}
OPEN_SECS=${OPEN_SECS:-60}
RATE=${RATE:-5000}
USERS=10000
cargo build --release --locked --quiet
M=$PWD/target/release
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
work=$(mktemp -d /tmp/memes-pgbench.XXXXXX)
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
as_pg "$PGBIN/createdb" -h "$work" -U postgres memes
URL="postgres://postgres@/memes?host=$work"

echo "## machine"
echo "$(nproc) cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $(free -g | awk '/Mem/ {print $2}') GiB; $(df -h "$work" | awk 'NR==2 {print $1}') for data; $("$PGBIN/postgres" --version)"
echo "server: fsync=$(as_pg "$PGBIN/psql" -h "$work" -U postgres -Atc 'show fsync' memes), synchronous_commit=$(as_pg "$PGBIN/psql" -h "$work" -U postgres -Atc 'show synchronous_commit' memes), commit_delay=$(as_pg "$PGBIN/psql" -h "$work" -U postgres -Atc 'show commit_delay' memes)"
echo

start_memesd() { # name
  MEMES_LOG=warn "$M/memesd" --socket "$work/$1.sock" --data-dir "$work/$1" --store "$URL" \
    --store-pool "${STORE_POOL:-16}" 2>>"$work/memesd.log" &
  pids+=($!)
  until "$M/memes" --socket "$work/$1.sock" status >/dev/null 2>&1; do sleep 0.02; done
}
start_memesd h1
"$M/memes" --socket "$work/h1.sock" bench --prepare --users $USERS -n 1 -c 16 >/dev/null

# Every round starts from the same state, whichever side ran before it: the accounts' dead row
# versions (both sides update every account) vacuumed, fresh planner statistics, and a
# checkpoint behind it (so no round pays for the previous round's checkpoint).
settle() {
  as_pg "$PGBIN/psql" -h "$work" -U postgres -q -c "VACUUM ANALYZE accounts" -c "ANALYZE entries" -c "CHECKPOINT" memes
}

# The straightforward transaction, one per request, prepared statements.
cat >"$work/charge.sql" <<'SQL'
\set u random(0, 9999)
BEGIN;
UPDATE accounts SET balance = balance - 1 WHERE user_id = 'bench-' || :u AND balance >= 1 RETURNING balance \gset
INSERT INTO entries (time_ms, user_id, kind, delta, balance, memes) VALUES ((extract(epoch FROM clock_timestamp()) * 1000)::bigint, 'bench-' || :u, 'charge', -1, :balance, '{grumpy-cat}');
COMMIT;
SQL
chmod 644 "$work/charge.sql"

summary() { # reads memes bench --json reports on stdin (one per line): total rps, worst p50/p99/max, errors
  python3 -c '
import json, sys
reports = [json.loads(line) for line in sys.stdin if line.strip()]
rps = sum(r["rps"] for r in reports)
worst = {k: max(r["latency_ms"][k] for r in reports) for k in ("p50", "p99", "max")}
errors = sum(r["error_total"] for r in reports)
print("%s req/s  p50 %.2f ms  p99 %.2f ms  max %.1f ms  errors %d"
      % (format(round(rps), ","), worst["p50"], worst["p99"], worst["max"], errors))'
}

pgbench_run() { # label, pgbench args...
  local label=$1; shift
  settle
  rm -f "$work"/pgl.*
  (cd "$work" && as_pg "$PGBIN/pgbench" -h "$work" -U postgres -n -M prepared -c 64 -j 2 \
    -f "$work/charge.sql" -l --log-prefix="$work/pgl" "$@" memes) >"$work/pgbench.out" 2>&1
  local tps failed
  tps=$(grep -m1 -oP 'tps = \K[0-9.]+' "$work/pgbench.out")
  failed=$(grep -oP 'number of failed transactions: \K[0-9]+' "$work/pgbench.out" || echo 0)
  # Latency from the schedule (time + schedule lag under -R), as memes bench measures it.
  cat "$work"/pgl.* | awk '{ lat = $3 + (NF >= 7 ? $7 : 0); print lat / 1000 }' | sort -n | awk -v label="$label" -v tps="$tps" -v failed="$failed" '
    { v[NR] = $1 }
    END {
      p50 = v[int(NR * 0.50) + 1]; p99 = v[int(NR * 0.99) + 1]; mx = v[NR];
      printf "%s: %\047.0f tps  p50 %.2f ms  p99 %.2f ms  max %.1f ms  failed %d\n", label, tps, p50, p99, mx, failed
    }'
}

memes_closed() { settle; echo "memesd, 1 host, 64 connections: $("$M/memes" --socket "$work/h1.sock" bench -c 64 --duration "$SECS" --users $USERS --json | summary)"; }
pgbench_closed() { pgbench_run "pgbench, 64 clients" -T "$SECS"; }

echo "## closed loop, 64 clients, durable charge, ${SECS} s each"
for round in $(seq 1 "$ROUNDS"); do
  echo "round $round"
  if [ $((round % 2)) -eq 1 ]; then pgbench_closed; memes_closed; else memes_closed; pgbench_closed; fi
done
echo

start_memesd h2
start_memesd h3
bench_pids=()
echo "## three hosts on one database, 3 x 21 connections, ${SECS} s each"
for round in $(seq 1 "$ROUNDS"); do
  echo "round $round"
  if [ $((round % 2)) -eq 0 ]; then memes_closed; fi
  settle
  for h in h1 h2 h3; do
    "$M/memes" --socket "$work/$h.sock" bench -c 21 --duration "$SECS" --users $USERS --json >"$work/$h.json" &
    bench_pids+=($!)
  done
  wait "${bench_pids[@]}"
  bench_pids=()
  echo "memesd, 3 hosts together: $(cat "$work"/h1.json "$work"/h2.json "$work"/h3.json | summary)"
  if [ $((round % 2)) -eq 1 ]; then memes_closed; fi
done
echo

echo "## open loop, $RATE requests/s for ${OPEN_SECS} s, one host"
for round in $(seq 1 "$ROUNDS"); do
  echo "round $round"
  memes_open() { settle; echo "memesd, 1 host: $("$M/memes" --socket "$work/h1.sock" bench --rate "$RATE" --duration "$OPEN_SECS" -c 64 --users $USERS --json | summary)"; }
  pgbench_open() { pgbench_run "pgbench -R $RATE" -R "$RATE" -T "$OPEN_SECS"; }
  if [ $((round % 2)) -eq 1 ]; then pgbench_open; memes_open; else memes_open; pgbench_open; fi
done
echo
echo "## audit after the run"
"$M/memes" --socket "$work/h2.sock" audit
