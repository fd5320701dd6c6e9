# Shared by the scripts that measure memesd builds side by side (startup.sh, memory.sh):
# sourced, never run. Gives `$work` (a scratch directory), `$pid` (the memesd to stop on
# exit), `rss_mb PID` and `median` (of numbers on stdin).
# shellcheck shell=bash
work=$(mktemp -d "/tmp/memes-$(basename "$0" .sh).XXXXXX")
pid=
# shellcheck disable=SC2317  # called by the trap
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

rss_mb() { awk '/VmRSS/ {printf "%.1f\n", $2/1024}' "/proc/$1/status"; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
