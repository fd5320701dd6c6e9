#!/usr/bin/env bash
# Starts a throwaway replicated PostgreSQL on loopback, for tests, drills and benchmarks: one
# etcd (Debian's etcd-server) and three PostgreSQL 15 nodes under Patroni (from PyPI, in the
# virtual environment `scripts/install-test-deps.sh --patroni` makes), synchronous mode, strict; creates
# the database `memes`; then runs COMMAND with
#   MEMES_CLUSTER_URL  a multi-host connection string for memesd (read-write),
#   MEMES_CLUSTER_DIR  the cluster's directory (node logs, configurations, pids),
#   MEMES_CLUSTER_PORTS  the three PostgreSQL ports, in the URL's order (node1..node3)
#   MEMES_CLUSTER_REST_PORTS  their Patroni REST API ports (GET /primary is 200 on the leader)
# or, without COMMAND, waits until interrupted. Whatever happens, it stops everything it
# started and removes the directory (set MEMES_CLUSTER_KEEP=1 to keep it).
#
#   scripts/patroni-cluster.sh -- sh -c 'memesd --store "$MEMES_CLUSTER_URL"'
#
# Runs as root (PostgreSQL and Patroni then run as the `postgres` user) or as any user.
# MEMES_CLUSTER_BASE_PORT (default 25400) picks the ports: etcd BASE and BASE+1, PostgreSQL
# BASE+10..12, Patroni's REST API BASE+20..22.
set -euo pipefail

[ "${1:-}" = "--" ] && shift
here=$(cd "$(dirname "$0")/.." && pwd)
venv=${MEMES_PATRONI_VENV:-/opt/memes/patroni-venv}
bin_dir=${MEMES_PG_BIN:-$(ls -d /usr/lib/postgresql/15/bin 2>/dev/null || ls -d /usr/lib/postgresql/*/bin | tail -1)}
base=${MEMES_CLUSTER_BASE_PORT:-25400}
etcd_port=$base
[ -x "$venv/bin/patroni" ] || { echo "patroni-cluster: no Patroni in $venv; run scripts/install-test-deps.sh --patroni" >&2; exit 1; }
command -v etcd >/dev/null || { echo "patroni-cluster: no etcd; run scripts/install-test-deps.sh --patroni" >&2; exit 1; }

dir=$(mktemp -d /tmp/memes-patroni-XXXXXX)
chmod 755 "$dir"
as_pg=()
if [ "$(id -u)" -eq 0 ]; then
  chown postgres: "$dir"
  as_pg=(runuser -u postgres --)
fi

pids=()
stop_all() {
  local status=$?
  trap - EXIT INT TERM
  for n in 1 2 3; do
    [ -f "$dir/node$n/patroni.pid" ] && pids+=("$(cat "$dir/node$n/patroni.pid")")
  done
  # Patroni first (it stops its PostgreSQL), then whatever is left, then etcd.
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  # (a drill may have stopped one with SIGSTOP)
  for pid in "${pids[@]}"; do kill -CONT "$pid" 2>/dev/null || true; done
  for _ in $(seq 100); do
    local alive=
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ -z "$alive" ] && break
    sleep 0.1
  done
  for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  # A postmaster whose Patroni was killed (a drill's kill -9) is stopped by its data dir.
  for n in 1 2 3; do
    if [ -f "$dir/node$n/data/postmaster.pid" ]; then
      "${as_pg[@]}" "$bin_dir/pg_ctl" stop -D "$dir/node$n/data" -m immediate >/dev/null 2>&1 || true
    fi
  done
  if [ "${MEMES_CLUSTER_KEEP:-}" = 1 ]; then
    echo "patroni-cluster: kept $dir" >&2
  else
    rm -rf "$dir"
  fi
  exit "$status"
}
trap stop_all EXIT INT TERM

etcd --name memes-etcd --data-dir "$dir/etcd" \
  --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
  --listen-peer-urls "http://127.0.0.1:$((base + 1))" --initial-advertise-peer-urls "http://127.0.0.1:$((base + 1))" \
  --initial-cluster "memes-etcd=http://127.0.0.1:$((base + 1))" >"$dir/etcd.log" 2>&1 &
pids+=($!)
echo $! >"$dir/etcd.pid"

ports=()
for n in 1 2 3; do
  pg_port=$((base + 9 + n))
  ports+=("$pg_port")
  mkdir -p "$dir/node$n"
  sed -e "s|\${NAME}|node$n|g" -e "s|\${DIR}|$dir|g" -e "s|\${BIN_DIR}|$bin_dir|g" \
      -e "s|\${PG_PORT}|$pg_port|g" -e "s|\${REST_PORT}|$((base + 19 + n))|g" \
      -e "s|\${ETCD_PORT}|$etcd_port|g" "$here/deploy/patroni/node.yml.in" >"$dir/node$n/patroni.yml"
  [ "$(id -u)" -eq 0 ] && chown -R postgres: "$dir/node$n"
  chmod 700 "$dir/node$n"
  # Patroni writes its own pid (runuser's would not do for a drill's kill -9).
  "${as_pg[@]}" sh -c 'echo $$ >"$1"; exec "$2" "$3"' sh "$dir/node$n/patroni.pid" \
    "$venv/bin/patroni" "$dir/node$n/patroni.yml" >"$dir/node$n/patroni.log" 2>&1 &
  pids+=($!)
  # The first node bootstraps alone; the others then clone it.
  if [ "$n" -eq 1 ]; then
    for _ in $(seq 600); do
      "${as_pg[@]}" "$bin_dir/psql" -h 127.0.0.1 -p "$pg_port" -U postgres -d postgres -tAc \
        'SELECT NOT pg_is_in_recovery()' 2>/dev/null | grep -q t && break
      sleep 0.1
    done
  fi
done

# Ready: a leader and two streaming standbys, one of them synchronous.
for _ in $(seq 900); do
  state=$("$venv/bin/patronictl" -c "$dir/node1/patroni.yml" list -f json 2>/dev/null || true)
  if python3 - "$state" <<'PY'
import json, sys
try:
    members = json.loads(sys.argv[1])
except ValueError:
    sys.exit(1)
roles = sorted(m.get("Role", "") for m in members)
streaming = sum(1 for m in members if m.get("State") in ("streaming", "running") and m.get("Role") != "Leader")
sys.exit(0 if "Leader" in roles and any(r.startswith("Sync") for r in roles) and streaming == 2 else 1)
PY
  then break; fi
  sleep 0.2
done
leader=$("$venv/bin/patronictl" -c "$dir/node1/patroni.yml" list -f json | python3 -c \
  'import json,sys; print([m["Host"] for m in json.load(sys.stdin) if m["Role"]=="Leader"][0])')
"${as_pg[@]}" "$bin_dir/psql" -h 127.0.0.1 -p "${leader##*:}" -U postgres -d postgres -qc 'CREATE DATABASE memes'

hosts=$(printf '127.0.0.1:%s,' "${ports[@]}")
export MEMES_CLUSTER_URL="postgres://postgres@${hosts%,}/memes?target_session_attrs=read-write"
export MEMES_CLUSTER_DIR=$dir
export MEMES_CLUSTER_PORTS="${ports[*]}"
export MEMES_CLUSTER_REST_PORTS="$((base + 20)) $((base + 21)) $((base + 22))"
echo "patroni-cluster: ready in $dir; leader $leader; MEMES_CLUSTER_URL=$MEMES_CLUSTER_URL" >&2
"$venv/bin/patronictl" -c "$dir/node1/patroni.yml" list >&2 || true

if [ $# -gt 0 ]; then
  "$@"
else
  echo "patroni-cluster: Ctrl-C stops it" >&2
  while true; do sleep 1; done
fi
