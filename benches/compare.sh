#!/usr/bin/env bash
# Side-by-side measurements for BENCHMARKS.md: memesd against the yardstick's limitd (the
# least work a durable token daemon can do), driven by the same load generator in the same
# run, plus memory, start-up and CLI cost. Takes about ten minutes; needs hyperfine for the
# CLI figure (apt-get install hyperfine).
#
#   benches/compare.sh [YARDSTICK_DIR]      (default: ../shared/yardstick)
set -euo pipefail
cd "$(dirname "$0")/.."
yardstick=${1:-../shared/yardstick}
cargo build --release --locked --quiet
cargo build --release --quiet --manifest-path "$yardstick/Cargo.toml"
M=$PWD/target/release
Y=$yardstick/target/release
work=$(mktemp -d /tmp/memes-bench.XXXXXX)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

start_memesd() { # socket data-dir [memesd args...]
  local socket=$1 data=$2; shift 2
  MEMES_LOG=warn "$M/memesd" --socket "$socket" --data-dir "$data" "$@" 2>>"$work/memesd.log" &
  pids+=($!)
  until "$M/memes" --socket "$socket" status >/dev/null 2>&1; do sleep 0.02; done
}
serving_after() { # label socket data-dir: prints the seconds from exec until `status` answers
  local t0 t1
  t0=$(date +%s.%N)
  # Not in a command substitution: the daemon would hold its pipe open and hang the script.
  MEMES_LOG=warn "$M/memesd" --socket "$2" --data-dir "$3" 2>>"$work/memesd.log" &
  big=$!
  pids+=("$big")
  until "$M/memes" --socket "$2" status >/dev/null 2>&1; do sleep 0.01; done
  t1=$(date +%s.%N)
  echo "$1 $(echo "$t1 - $t0" | bc) s"
}
rss_mb() { awk '/VmRSS/ {printf "%.0f", $2/1024}' "/proc/$1/status"; }
limitd_line='{"id":{id},"op":"debit","user":"{user}","amount":1}'

echo "## machine"
echo "$(nproc) cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $(free -g | awk '/Mem/ {print $2}') GiB; $(df -h "$work" | awk 'NR==2 {print $1}') for data"
echo

"$Y/limitd" --socket "$work/l.sock" --journal "$work/limitd.ndjson" 2>/dev/null &
pids+=($!)
start_memesd "$work/m.sock" "$work/m"
"$M/memes" --socket "$work/m.sock" bench --prepare --users 10000 -n 1 -c 1 >/dev/null

for round in 1 2; do
  echo "## durable charged get, 64 connections x 1 in flight (round $round)"
  "$M/memes" --socket "$work/l.sock" bench -c 64 -n 200000 --template "$limitd_line"
  "$M/memes" --socket "$work/m.sock" bench -c 64 -n 200000 --users 10000
  echo
  echo "## pipelined, 16 connections x 32 in flight (round $round)"
  "$M/memes" --socket "$work/l.sock" bench -c 16 -d 32 -n 1000000 --template "$limitd_line"
  "$M/memes" --socket "$work/m.sock" bench -c 16 -d 32 -n 1000000 --users 10000
  echo
done

echo "## the same, measured by the yardstick's own generator (ncload)"
"$Y/ncload" --socket "$work/l.sock" -c 64 -n 200000 --label limitd --template "$limitd_line"
"$Y/ncload" --socket "$work/m.sock" -c 64 -n 200000 --users 10000 --user-prefix bench- --label memesd \
  --template '{"id":{id},"op":"get","user":"{user}","query":"cat"}'
"$Y/ncload" --socket "$work/l.sock" -c 16 -d 32 -n 1000000 --label limitd --template "$limitd_line"
"$Y/ncload" --socket "$work/m.sock" -c 16 -d 32 -n 1000000 --users 10000 --user-prefix bench- --label memesd \
  --template '{"id":{id},"op":"get","user":"{user}","query":"cat"}'
echo

for round in 1 2; do
  echo "## open loop, 15000 requests/s for 60 s (round $round)"
  "$M/memes" --socket "$work/l.sock" bench --rate 15000 --duration 60 -c 64 --template "$limitd_line"
  "$M/memes" --socket "$work/m.sock" bench --rate 15000 --duration 60 -c 64 --users 10000 \
    --max-p99 2 --max-latency 50 || true
  echo
done

echo "## the disk alone: append 1.4 KB + fdatasync, back to back, 10 s"
python3 - "$work/fsync-probe" <<'EOF'
import os, sys, time
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_APPEND)
lat, end = [], time.time() + 10
while time.time() < end:
    os.write(fd, b"x" * 1400 + b"\n")
    t = time.perf_counter(); os.fdatasync(fd); lat.append(time.perf_counter() - t)
lat.sort(); q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] * 1000
print(f"{len(lat) / 10:.0f} flushes/s  p50 {q(.5):.3f}  p99 {q(.99):.3f}  p99.9 {q(.999):.3f}  max {lat[-1] * 1000:.3f} ms")
EOF
echo

echo "## premium costs nothing on a plain get (64 x 1, same run)"
secret="$work/claims.key"
printf 'benchmark-secret-0123456789abcdef' >"$secret"
start_memesd "$work/p.sock" "$work/p" --claims-key "$secret"
"$M/memes" --socket "$work/p.sock" bench --prepare --users 10000 -n 1 -c 1 >/dev/null
token=$(python3 - "$secret" <<'EOF'
import base64, hashlib, hmac, json, sys, time
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
key = open(sys.argv[1], "rb").read()
head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
body = b64(json.dumps({"sub": "bench-0", "tier": "premium", "exp": int(time.time()) + 3600}).encode())
sig = b64(hmac.new(key, f"{head}.{body}".encode(), hashlib.sha256).digest())
print(f"{head}.{body}.{sig}")
EOF
)
for round in 1 2; do
  "$M/memes" --socket "$work/m.sock" bench -c 64 -n 200000 --users 10000 | sed 's/^memes bench/without --claims-key/'
  "$M/memes" --socket "$work/p.sock" bench -c 64 -n 200000 --users 10000 | sed 's/^memes bench/with --claims-key   /'
  "$M/memes" --socket "$work/p.sock" bench -c 64 -n 200000 \
    --template "{\"id\":{id},\"op\":\"get\",\"user\":\"bench-0\",\"query\":\"cat\",\"token\":\"$token\"}" \
    | sed 's/^memes bench/with a token (HS256)/'
done
echo

echo "## 1,000,000 accounts, 5,000,000 ledger entries: memory and start-up"
start_memesd "$work/big.sock" "$work/big"
big=${pids[-1]}
"$M/memes" --socket "$work/big.sock" bench --prepare --users 1000000 -n 1 -c 1 2>&1 >/dev/null | grep prepared
"$M/memes" --socket "$work/big.sock" bench --users 1000000 -c 16 -d 32 -n 3000000 >/dev/null
"$M/memes" --socket "$work/big.sock" status | grep -E "Accounts|entries"
echo "RSS with 1M accounts: $(rss_mb "$big") MB"
ls -la "$work/big" | awk '/journal|snapshot/ {printf "%s %.0f MB\n", $9, $5/1048576}'
t0=$(date +%s.%N)
kill -TERM "$big"; wait "$big" 2>/dev/null || true
echo "clean stop (writes a final checkpoint): $(echo "$(date +%s.%N) - $t0" | bc) s"
serving_after "start after a clean stop (checkpoint only):     " "$work/big.sock" "$work/big"
echo "RSS after start-up: $(rss_mb "$big") MB"
"$M/memes" --socket "$work/big.sock" bench --users 1000000 -c 16 -d 32 -n 300000 >/dev/null
kill -9 "$big"; wait "$big" 2>/dev/null || true
serving_after "start after kill -9 (checkpoint + journal tail):" "$work/big.sock" "$work/big"
kill -9 "$big"; wait "$big" 2>/dev/null || true
rm "$work/big/snapshot.json"
serving_after "start with no checkpoint (replays every line):  " "$work/big.sock" "$work/big"
echo

echo "## the CLI in a shell loop"
"$M/memes" --socket "$work/m.sock" topup --user cli --amount 1 >/dev/null
hyperfine -N --warmup 50 --runs 500 "$M/memes --socket $work/m.sock balance --user cli" 2>&1 | grep -E "Time|Range"
