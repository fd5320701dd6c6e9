#!/usr/bin/env bash
# Two memesd builds side by side over HTTP, with the yardstick's limitd-http, in alternating
# rounds: the closed loop (64 connections x 1, 200,000 requests) and the open loop (a fixed
# rate for OPEN_SECS seconds, latency from the schedule), each request a durable charged
# GET /memes with a user id as the bearer (development mode, loopback). Each row also gives
# the server's own CPU time per request (user + system, from /proc), steadier than
# throughput on a shared machine. The socket's loads are benches/before-after.sh's; compare
# the ratios within one round (the machines are shared and noisy).
#
#   benches/http-before-after.sh BEFORE_DIR AFTER_DIR [ROUNDS] [OPEN_RATE] [OPEN_SECS]
#
# BEFORE_DIR and AFTER_DIR hold memesd (and AFTER_DIR memes and memes-bench, which drive
# all three). ONE_LOT=1 leaves every bench user one lot, as benches/before-after.sh does.
set -euo pipefail
cd "$(dirname "$0")/.."
before=$1 after=$2 rounds=${3:-3} rate=${4:-10000} secs=${5:-15}
yardstick=${YARDSTICK:-../shared/yardstick}
cargo build --release --quiet --manifest-path "$yardstick/Cargo.toml" --target-dir target/yardstick
Y=target/yardstick/release
work=$(mktemp -d /tmp/memes-http-ba.XXXXXX)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
declare -A port pid
for build in before after; do
  dir=$before; [ "$build" = after ] && dir=$after
  port[$build]=$(free_port)
  MEMES_LOG=warn "$dir/memesd" --socket "$work/$build.sock" --data-dir "$work/$build" \
    --http "127.0.0.1:${port[$build]}" 2>>"$work/$build.log" &
  pids+=($!) pid[$build]=$!
  until "$after/memes" --socket "$work/$build.sock" status >/dev/null 2>&1; do sleep 0.02; done
  "$after/memes" --socket "$work/$build.sock" bench --prepare --users 10000 -n 1 -c 1 >/dev/null 2>&1
  if [ -n "${ONE_LOT:-}" ]; then # empty the welcome grant: one lot left, --prepare's top-up
    "$after/memes" --socket "$work/$build.sock" bench --users 10000 -n 10000 -c 1 -d 64 \
      --template '{"id":{id},"op":"topup","user":"{user}","amount":-150}' >/dev/null 2>&1
  fi
done
# A new user starts at 150 tokens on limitd-http: it is started afresh for every load.
start_limitd() {
  [ -n "${pid[limitd-http]:-}" ] && { kill "${pid[limitd-http]}"; wait "${pid[limitd-http]}" 2>/dev/null || true; }
  port[limitd-http]=$(free_port)
  rm -f "$work/limitd-http.ndjson"
  "$Y/limitd-http" --listen "127.0.0.1:${port[limitd-http]}" --journal "$work/limitd-http.ndjson" 2>/dev/null &
  pids+=($!) pid[limitd-http]=$!
  until python3 -c "import socket; socket.create_connection(('127.0.0.1', ${port[limitd-http]}), 1)" 2>/dev/null; do
    sleep 0.02
  done
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }   # user + system, in clock ticks
line() { # server args...: one row "server rps p50 p99 max errors cpu"
  local server=$1 ticks report; shift
  [ "$server" = limitd-http ] && start_limitd
  ticks=$(cpu_ticks "${pid[$server]}")
  report=$("$after/memes" --url "http://127.0.0.1:${port[$server]}" bench --json \
    --max-errors 1000000000 --users 10000 "$@")
  ticks=$(($(cpu_ticks "${pid[$server]}") - ticks))
  python3 - "$server" "$ticks" "$(getconf CLK_TCK)" "$report" <<'PY'
import json, sys
server, ticks, hz, report = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), json.loads(sys.argv[4])
l, done = report["latency_ms"], report["requests"] or 1
print("%-12s %9.0f req/s  p50 %.2f  p99 %.2f  max %.1f ms  errors %d  cpu %.1f us/req"
      % (server, report["rps"], l["p50"], l["p99"], l["max"], report["error_total"],
         ticks / hz * 1e6 / done))
PY
}

echo "## $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
for round in $(seq "$rounds"); do
  # Alternate which build goes first, so neither always meets a warmer or cooler machine.
  if [ $((round % 2)) -eq 1 ]; then order="limitd-http before after"; else order="after before limitd-http"; fi
  echo "## round $round: HTTP closed loop, 64 connections, 200,000 charged GET /memes"
  for server in $order; do line "$server" -c 64 -n 200000; done
  echo "## round $round: HTTP open loop, $rate GET /memes/s for $secs s, 64 connections"
  for server in $order; do line "$server" -c 64 --rate "$rate" --duration "$secs"; done
done
