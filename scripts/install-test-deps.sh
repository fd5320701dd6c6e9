#!/usr/bin/env bash
# Installs what the test suite needs and this machine lacks, from Debian's packages:
# PostgreSQL's server binaries (the PostgreSQL store's tests start a throwaway cluster);
# Chromium, and Node.js with npm when there is none, for the web console's browser tests
# (tests/browser; scripts/test-browser.sh says plainly if the Node.js found is too old);
# what deploy/check.sh runs: promtool (prometheus), systemd-analyze and systemd-sysusers
# (systemd), /bin/kill (procps) and python3.
# Already installed: nothing to do, no network needed.
set -euo pipefail

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

missing=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
command -v promtool >/dev/null || missing+=(prometheus)
{ command -v systemd-analyze && command -v systemd-sysusers; } >/dev/null || missing+=(systemd)
[ -x /bin/kill ] || missing+=(procps)
command -v python3 >/dev/null || missing+=(python3)

if [ ${#missing[@]} -gt 0 ]; then
  echo "install-test-deps: installing ${missing[*]}" >&2
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
