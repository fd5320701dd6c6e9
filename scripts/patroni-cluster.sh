#!/usr/bin/env bash
# Starts a throwaway replicated PostgreSQL for tests, drills and benchmarks: one etcd (Debian's
# etcd-server) and three PostgreSQL 15 nodes under Patroni (from PyPI, in the virtual
# environment `scripts/install-test-deps.sh --patroni` makes), synchronous mode, strict; each
# node in its own network namespace on a bridge, like three hosts, so that a fault test can
# cut one off; creates the database `memes`; then runs COMMAND with
#   MEMES_CLUSTER_URL    a multi-host connection string for memesd (read-write),
#   MEMES_CLUSTER_DIR    the cluster's directory (node logs, configurations, pids),
#   MEMES_CLUSTER_HOSTS  the three nodes' addresses, in the URL's order (node1..node3),
#   MEMES_CLUSTER_NODE   a command that acts on one node, for fault tests:
#     "$MEMES_CLUSTER_NODE" N kill     kill -9 of its Patroni and postmaster
#     "$MEMES_CLUSTER_NODE" N freeze   SIGSTOP of every process of the node (a zombie primary)
#     "$MEMES_CLUSTER_NODE" N thaw     SIGCONT of them
#     "$MEMES_CLUSTER_NODE" N cut      drop every packet in and out of the node (nftables)
#     "$MEMES_CLUSTER_NODE" N heal     lift the cut
#     "$MEMES_CLUSTER_NODE" N start    start its Patroni again (after a kill)
#     "$MEMES_CLUSTER_NODE" N role     leader, replica or down, as its Patroni's REST API says
#     "$MEMES_CLUSTER_NODE" etcd restart   stops etcd and starts it again (also: start, stop)
#     "$MEMES_CLUSTER_NODE" settled [S] waits (up to S seconds, 120 by default) for a leader
#                                      and two streaming standbys, one synchronous: ready for
#                                      the next fault
# or, without COMMAND, waits until interrupted. Whatever happens, it stops everything it
# started and removes the namespaces, the bridge and the directory (MEMES_CLUSTER_KEEP=1 keeps
# the directory).
#
#   scripts/patroni-cluster.sh -- sh -c 'memesd --store "$MEMES_CLUSTER_URL"'
#
# Runs as root (namespaces and nftables need it; PostgreSQL and Patroni run as `postgres`).
# MEMES_CLUSTER_NET (default 250) picks the subnet 10.213.NET.0/24 and the names (bridge
# mbrNET, namespaces memesNET-n1..3), so two clusters can run side by side.
set -euo pipefail

[ "${1:-}" = "--" ] && shift
here=$(cd "$(dirname "$0")/.." && pwd)
venv=${MEMES_PATRONI_VENV:-/opt/memes/patroni-3.1.2}
bin_dir=${MEMES_PG_BIN:-$(ls -d /usr/lib/postgresql/15/bin 2>/dev/null || ls -d /usr/lib/postgresql/*/bin | tail -1)}
net=${MEMES_CLUSTER_NET:-250}
subnet=10.213.$net
bridge=mbr$net
[ "$(id -u)" -eq 0 ] || { echo "patroni-cluster: run as root (network namespaces)" >&2; exit 1; }
[ -x "$venv/bin/patroni" ] || { echo "patroni-cluster: no Patroni in $venv; run scripts/install-test-deps.sh --patroni" >&2; exit 1; }
for tool in etcd nft ip; do
  command -v $tool >/dev/null || { echo "patroni-cluster: no $tool; run scripts/install-test-deps.sh --patroni" >&2; exit 1; }
done

dir=$(mktemp -d /tmp/memes-patroni-XXXXXX)
chmod 755 "$dir"
chown postgres: "$dir"

# The per-node command the tests use (and this script, to start the nodes).
cat >"$dir/node" <<EOF
#!/usr/bin/env bash
# Acts on one node of the cluster in $dir (see scripts/patroni-cluster.sh).
set -euo pipefail
dir=$dir venv=$venv net=$net subnet=$subnet
EOF
cat >>"$dir/node" <<'EOF'
if [ "$1" = settled ]; then
  deadline=$((SECONDS + ${2:-120}))
  while [ $SECONDS -lt $deadline ]; do
    state=$("$venv/bin/patronictl" -c "$dir/node1/patroni.yml" list -f json 2>/dev/null || true)
    if python3 - "$state" <<'PY'
import json, sys
try:
    members = json.loads(sys.argv[1])
except ValueError:
    sys.exit(1)
roles = [m.get("Role", "") for m in members]
streaming = sum(1 for m in members if m.get("State") == "streaming" and m.get("Role") != "Leader")
sys.exit(0 if roles.count("Leader") == 1 and any(r.startswith("Sync") for r in roles) and streaming == 2 else 1)
PY
    then exit 0; fi
    sleep 0.2
  done
  echo "node: the cluster did not settle in ${2:-120} s" >&2
  "$venv/bin/patronictl" -c "$dir/node1/patroni.yml" list >&2 || true
  exit 1
fi
if [ "$1" = etcd ]; then
  stop_etcd() {
    local pid
    pid=$(cat "$dir/etcd.pid")
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.05; done
    kill -KILL "$pid" 2>/dev/null || true
  }
  start_etcd() {
    etcd --name memes-etcd --data-dir "$(cat "$dir/etcd.dir")" \
      --listen-client-urls "http://$subnet.1:2379" --advertise-client-urls "http://$subnet.1:2379" \
      --listen-peer-urls "http://$subnet.1:2380" --initial-advertise-peer-urls "http://$subnet.1:2380" \
      --initial-cluster "memes-etcd=http://$subnet.1:2380" >>"$dir/etcd.log" 2>&1 &
    echo $! >"$dir/etcd.pid"
  }
  case $2 in
    start) start_etcd ;;
    stop) stop_etcd ;;
    restart) stop_etcd; start_etcd ;;
    *) echo "node: unknown etcd action $2" >&2; exit 2 ;;
  esac
  exit 0
fi
n=$1 ns=memes$net-n$1
case $2 in
  start)
    # Patroni writes its own pid (runuser's would not do for a kill -9).
    ip netns exec "$ns" runuser -u postgres -- sh -c 'echo $$ >"$1"; exec "$2" "$3"' sh \
      "$dir/node$n/patroni.pid" "$venv/bin/patroni" "$dir/node$n/patroni.yml" >>"$dir/node$n/patroni.log" 2>&1 &
    ;;
  kill)
    kill -KILL "$(cat "$dir/node$n/patroni.pid")" 2>/dev/null || true
    kill -KILL "$(head -1 "$dir/node$n/data/postmaster.pid")" 2>/dev/null || true
    ;;
  freeze) ip netns pids "$ns" | xargs -r kill -STOP ;;
  thaw) ip netns pids "$ns" | xargs -r kill -CONT ;;
  cut)
    ip netns exec "$ns" nft -f - <<'NFT'
table inet memes_cut {
  chain input { type filter hook input priority 0; policy drop; iif lo accept; }
  chain output { type filter hook output priority 0; policy drop; oif lo accept; }
}
NFT
    ;;
  heal) ip netns exec "$ns" nft delete table inet memes_cut 2>/dev/null || true ;;
  role)
    role=$(python3 - "$subnet.1$n" <<'PY'
import json, sys, urllib.request
try:
    with urllib.request.urlopen(f"http://{sys.argv[1]}:8008/patroni", timeout=1) as reply:
        state = json.load(reply)
except Exception:
    print("down"); sys.exit()
print({"primary": "leader", "master": "leader"}.get(state.get("role"), "replica"))
PY
)
    echo "$role"
    ;;
  *) echo "node: unknown action $2" >&2; exit 2 ;;
esac
EOF
chmod 755 "$dir/node"
node=$dir/node

stop_all() {
  local status=$?
  # A second Ctrl-C or TERM must not cut the clean-up short (it would leave namespaces).
  trap '' INT TERM
  trap - EXIT
  local pids=()
  for n in 1 2 3; do
    "$node" "$n" heal 2>/dev/null || true
    "$node" "$n" thaw 2>/dev/null || true
    [ -f "$dir/node$n/patroni.pid" ] && pids+=("$(cat "$dir/node$n/patroni.pid")")
  done
  # Patroni first (it stops its PostgreSQL), then whatever is left, then etcd.
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for _ in $(seq 100); do
    local alive=
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ -z "$alive" ] && break
    sleep 0.1
  done
  for n in 1 2 3; do
    ip netns pids "memes$net-n$n" 2>/dev/null | xargs -r kill -KILL 2>/dev/null || true
  done
  [ -f "$dir/etcd.pid" ] && "$node" etcd stop
  for n in 1 2 3; do ip netns del "memes$net-n$n" 2>/dev/null || true; done
  ip link del "$bridge" 2>/dev/null || true
  [ -f "$dir/etcd.dir" ] && rm -rf "$(cat "$dir/etcd.dir")"
  if [ "${MEMES_CLUSTER_KEEP:-}" = 1 ]; then
    echo "patroni-cluster: kept $dir" >&2
  else
    rm -rf "$dir"
  fi
  exit "$status"
}
trap stop_all EXIT INT TERM

# What a cluster on the same subnet left behind when it was killed outright.
for n in 1 2 3; do ip netns del "memes$net-n$n" 2>/dev/null || true; done
ip link del "$bridge" 2>/dev/null || true

# The network: a bridge in this namespace (etcd and memesd are here, at $subnet.1), and one
# namespace per node ($subnet.11..13) on a veth pair into it.
ip link add "$bridge" type bridge
ip addr add "$subnet.1/24" dev "$bridge"
ip link set "$bridge" up
for n in 1 2 3; do
  ns=memes$net-n$n
  ip netns add "$ns"
  ip link add "mv${net}n$n" type veth peer name eth0 netns "$ns"
  ip link set "mv${net}n$n" master "$bridge" up
  ip -n "$ns" addr add "$subnet.1$n/24" dev eth0
  ip -n "$ns" link set eth0 up
  ip -n "$ns" link set lo up
done

# etcd's data in memory where there is /dev/shm: a throwaway cluster, and etcd's fsyncs
# queued behind a busy disk slowed Patroni's loop (and so the failover) by seconds.
etcd_dir=$dir/etcd
[ -d /dev/shm ] && etcd_dir=$(mktemp -d /dev/shm/memes-etcd-XXXXXX)
echo "$etcd_dir" >"$dir/etcd.dir"
"$node" etcd start

hosts=()
for n in 1 2 3; do
  hosts+=("$subnet.1$n")
  mkdir -p "$dir/node$n"
  sed -e "s|\${NAME}|node$n|g" -e "s|\${DIR}|$dir|g" -e "s|\${BIN_DIR}|$bin_dir|g" \
      -e "s|\${HOST}|$subnet.1$n|g" -e "s|\${SUBNET}|$subnet.0/24|g" \
      -e "s|\${ETCD}|$subnet.1:2379|g" "$here/deploy/patroni/node.yml.in" >"$dir/node$n/patroni.yml"
  chown -R postgres: "$dir/node$n"
  chmod 700 "$dir/node$n"
  "$node" "$n" start
  # The first node bootstraps alone; the others then clone it.
  if [ "$n" -eq 1 ]; then
    for _ in $(seq 600); do
      [ "$("$node" 1 role)" = leader ] && break
      sleep 0.1
    done
  fi
done

"$node" settled
leader=
for n in 1 2 3; do [ "$("$node" "$n" role)" = leader ] && leader=$n; done
runuser -u postgres -- "$bin_dir/psql" -h "$subnet.1$leader" -U postgres -d postgres -qc 'CREATE DATABASE memes'

url_hosts=$(printf '%s:5432,' "${hosts[@]}")
export MEMES_CLUSTER_URL="postgres://postgres@${url_hosts%,}/memes?target_session_attrs=read-write"
export MEMES_CLUSTER_DIR=$dir
export MEMES_CLUSTER_HOSTS="${hosts[*]}"
export MEMES_CLUSTER_NODE=$node
echo "patroni-cluster: ready in $dir; leader node$leader; MEMES_CLUSTER_URL=$MEMES_CLUSTER_URL" >&2
"$venv/bin/patronictl" -c "$dir/node1/patroni.yml" list >&2 || true

if [ $# -gt 0 ]; then
  "$@"
else
  echo "patroni-cluster: Ctrl-C stops it" >&2
  while true; do sleep 1; done
fi
