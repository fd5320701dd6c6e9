#!/usr/bin/env bash
# Installs what the test suite needs and this machine lacks:
# - from Debian's packages: PostgreSQL's server binaries (the PostgreSQL store's tests start a
#   throwaway cluster); Chromium, and Node.js with npm when there is none, for the web
#   console's browser tests (tests/browser; scripts/test-browser.sh says plainly if the
#   Node.js found is too old); what deploy/check.sh runs: promtool (prometheus),
#   systemd-analyze and systemd-sysusers (systemd), /bin/kill (procps) and python3; `man`
#   (man-db), whose `man --warnings` checks the manual pages; Python's
#   venv module where schemathesis must be installed;
# - from PyPI: schemathesis (scripts/schemathesis.sh tests the HTTP API against its OpenAPI
#   document), into its own virtual environment unless a `schemathesis` is on PATH already.
# With --patroni (scripts/test.sh passes it), also what scripts/patroni-cluster.sh needs (the
# replicated cluster of the fault suite): etcd (Debian's etcd-server), nftables, iproute2, and
# Patroni 3.1 from PyPI into /opt/memes/patroni-3.1.2 (MEMES_PATRONI_VENV), readable by the postgres user.
# Already installed: nothing to do, no network needed.
set -euo pipefail

patroni=
[ "${1:-}" = "--patroni" ] && patroni=1
patroni_venv=${MEMES_PATRONI_VENV:-/opt/memes/patroni-3.1.2}

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# Where schemathesis goes when it is not on PATH (scripts/schemathesis.sh looks there too).
venv=${MEMES_TEST_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/memes/test-venv}
schemathesis_version='schemathesis~=4.32'
need_schemathesis=
if ! command -v schemathesis >/dev/null && [ ! -x "$venv/bin/schemathesis" ]; then
  need_schemathesis=1
fi

missing=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
command -v promtool >/dev/null || missing+=(prometheus)
command -v man >/dev/null || missing+=(man-db)
{ command -v systemd-analyze && command -v systemd-sysusers; } >/dev/null || missing+=(systemd)
[ -x /bin/kill ] || missing+=(procps)
command -v python3 >/dev/null || missing+=(python3)
if [ -n "$need_schemathesis" ] && ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
  missing+=(python3-venv)
fi

if [ -n "$patroni" ]; then
  command -v etcd >/dev/null || missing+=(etcd-server)
  command -v nft >/dev/null || missing+=(nftables)
  command -v ip >/dev/null || missing+=(iproute2)
  [ -x "$patroni_venv/bin/patroni" ] || /usr/bin/python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
fi

if [ ${#missing[@]} -gt 0 ]; then
  echo "install-test-deps: installing ${missing[*]}" >&2
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ -n "$need_schemathesis" ]; then
  echo "install-test-deps: installing $schemathesis_version into $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$schemathesis_version"
fi

if [ -n "$patroni" ] && [ ! -x "$patroni_venv/bin/patroni" ]; then
  # Patroni 3.1: not Debian 12's 3.0.2 (patroni issue #2689: on etcd's v3 API a thawed old
  # leader could take the leader key back), not 3.2 or later (they raise a ttl below 20 s to
  # 20 s, a 20 s outage per failover; deploy/patroni/node.yml.in). cdiff is what its
  # patronictl imports. The system Python, so that the postgres user can run it.
  echo "install-test-deps: installing Patroni into $patroni_venv" >&2
  as_root mkdir -p "$(dirname "$patroni_venv")"
  as_root /usr/bin/python3 -m venv "$patroni_venv"
  as_root "$patroni_venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    'patroni[etcd3]==3.1.2' 'cdiff~=1.0' 'psycopg2-binary~=2.9'
fi
