#!/usr/bin/env bash
# deploy/check.sh: checks the operations files in deploy/ the way they will be used.
#
#   deploy/check.sh [MEMESD]        (or MEMESD=PATH deploy/check.sh)
#
# MEMESD is the memesd binary the systemd unit is checked against: it must accept every
# flag ExecStart passes, and the example configuration memesd.toml. Default: target/release/memesd if it is built, else /bin/true,
# which checks the units alone.
#
# Needs the Debian packages prometheus (promtool), systemd (systemd-analyze,
# systemd-sysusers), procps (/bin/kill, which ExecReload names) and python3. It changes
# nothing outside a temporary directory: the units are verified inside a throwaway root
# that gets the memes user from deploy/systemd/memes.conf, never on this system.
set -Eeuo pipefail

deploy=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$deploy")
memesd=${1:-${MEMESD:-}}
if [ -z "$memesd" ]; then
  if [ -x "$repo/target/release/memesd" ]; then
    memesd=$repo/target/release/memesd
  else
    memesd=/bin/true
  fi
fi

for tool in promtool systemd-analyze systemd-sysusers python3; do
  command -v "$tool" >/dev/null || {
    echo "deploy/check.sh: $tool not found (apt-get install prometheus systemd python3)" >&2
    exit 1
  }
done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
step=""
trap 'echo "deploy/check.sh: FAILED: $step" >&2' ERR
check() { step=$1; echo "== $step"; }
fail() { echo "$*" >&2; false; }

# --- Prometheus --------------------------------------------------------------------------
check "promtool check rules prometheus/memes.rules.yml"
promtool check rules "$deploy/prometheus/memes.rules.yml"

check "promtool test rules prometheus/memes.rules.test.yml"
(cd "$deploy/prometheus" && promtool test rules memes.rules.test.yml)

check "promtool check config prometheus/prometheus.yml (the sample scrape config)"
promtool check config "$deploy/prometheus/prometheus.yml"

# --- Grafana -----------------------------------------------------------------------------
check "grafana/memes.json is JSON"
python3 -m json.tool "$deploy/grafana/memes.json" >/dev/null

# Grafana cannot be run here, so check what an import needs and what would show as "no
# data": every panel on the templated data source, distinct panel ids, every query valid
# PromQL (promtool parses them as rules, Grafana's variables replaced), every recorded
# series it reads defined in memes.rules.yml.
check "grafana/memes.json: data source, panel ids, queries parse, recorded series exist"
python3 - "$deploy/grafana/memes.json" "$deploy/prometheus/memes.rules.yml" \
  "$tmp/dashboard.rules.yml" <<'EOF'
import json, re, sys

dashboard_path, rules_path, out_path = sys.argv[1:]
dashboard = json.load(open(dashboard_path))
recorded = set(re.findall(r"^\s*- record:\s*(\S+)", open(rules_path).read(), re.M))
problems = []
DS = "${DS_PROMETHEUS}"

variables = {v["name"]: v for v in dashboard.get("templating", {}).get("list", [])}
if variables.get("DS_PROMETHEUS", {}).get("type") != "datasource":
    problems.append("no data source variable DS_PROMETHEUS")
for key in ("title", "uid", "schemaVersion"):
    if not dashboard.get(key):
        problems.append(f"dashboard has no {key}")

def walk(panels):
    for panel in panels:
        yield panel
        yield from walk(panel.get("panels", []))

ids, exprs = set(), []
for panel in walk(dashboard.get("panels", [])):
    where = f'panel {panel.get("id")} "{panel.get("title")}"'
    if panel.get("id") in ids:
        problems.append(f"{where}: duplicate id")
    ids.add(panel.get("id"))
    if panel.get("type") == "row":
        continue
    if panel.get("datasource", {}).get("uid") != DS:
        problems.append(f"{where}: data source is not {DS}")
    if not panel.get("targets"):
        problems.append(f"{where}: no queries")
    for target in panel.get("targets", []):
        if target.get("datasource", {}).get("uid") != DS:
            problems.append(f"{where}: query {target.get('refId')} not on {DS}")
        expr = target.get("expr", "")
        if not expr.strip():
            problems.append(f"{where}: empty query {target.get('refId')}")
            continue
        exprs.append(expr)
        for name in re.findall(r"\b[a-z_]+:[a-z0-9_]+:[a-z0-9_]+\b", expr):
            if name not in recorded:
                problems.append(f"{where}: reads {name}, which memes.rules.yml does not record")

# Grafana's variables, replaced by values of the same kind.
subst = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h", "$instance": ".*"}
with open(out_path, "w") as out:
    out.write("groups:\n  - name: dashboard\n    rules:\n")
    for n, expr in enumerate(exprs):
        for var, value in subst.items():
            expr = expr.replace(var, value)
        if "$" in expr:
            problems.append(f"unknown variable in: {expr}")
        out.write(f"      - record: dashboard:query:{n}\n        expr: {json.dumps(expr)}\n")

for problem in problems:
    print(f"grafana/memes.json: {problem}", file=sys.stderr)
print(f"{len(ids)} panels, {len(exprs)} queries")
sys.exit(1 if problems else 0)
EOF
promtool check rules "$tmp/dashboard.rules.yml"

# --- systemd -----------------------------------------------------------------------------
# `systemd-analyze verify` loads the units as systemd would and checks that the programs
# they run exist. It exits 0 after mere warnings (an unknown key, a value it cannot parse,
# both then ignored), so any output at all counts as a failure here.
#
# It runs against a throwaway root laid out like this system (merged /usr), holding the
# units, the standard units they refer to (sockets.target, ...), the programs named by
# Exec*= (memesd as given, the rest copied from here), and users made by memes.conf.
check "systemd-sysusers: systemd/memes.conf creates the memes user (in a throwaway root)"
root=$tmp/root
mkdir -p "$root/etc/systemd/system" "$root/usr/bin" "$root/usr/lib/systemd" "$root/usr/sbin"
ln -s usr/bin "$root/bin"
ln -s usr/lib "$root/lib"
ln -s usr/sbin "$root/sbin"
systemd-sysusers --root="$root" "$deploy/systemd/memes.conf"
grep -q '^memes:' "$root/etc/passwd" || fail "memes.conf made no user memes"
grep -q '^memes:' "$root/etc/group" || fail "memes.conf made no group memes"

check "the users and groups the units name are the ones memes.conf makes"
while read -r entry; do
  grep -q "^${entry#*=}:" "$root/etc/passwd" || fail "$entry: not made by memes.conf"
done < <(grep -hE '^(User|SocketUser)=' "$deploy"/systemd/*.service "$deploy"/systemd/*.socket)
while read -r entry; do
  grep -q "^${entry#*=}:" "$root/etc/group" || fail "$entry: not made by memes.conf"
done < <(grep -hE '^(Group|SocketGroup)=' "$deploy"/systemd/*.service "$deploy"/systemd/*.socket)

check "systemd-analyze verify memesd.service memesd.socket memesd-http.socket (memesd: $memesd)"
[ -x "$memesd" ] || fail "$memesd is not an executable"
units=(memesd.service memesd.socket memesd-http.socket)
for unit in "${units[@]}"; do
  cp "$deploy/systemd/$unit" "$root/etc/systemd/system/"
done
host_units=/usr/lib/systemd/system
[ -d "$host_units" ] || host_units=/lib/systemd/system
cp -r "$host_units" "$root/usr/lib/systemd/"
# The first word of each Exec*= line, less the prefixes (-@:+!) systemd allows.
while read -r program; do
  if [ "$program" = /usr/local/bin/memesd ]; then
    install -D -m 0755 "$memesd" "$root$program"
  else
    [ -x "$program" ] || fail "memesd.service runs $program, which this system does not have"
    install -D -m 0755 "$program" "$root$program"
  fi
done < <(sed -nE 's/^Exec[A-Za-z]*=[-@:+!]*([^ ]+).*/\1/p' "$deploy/systemd/memesd.service")
[ -x "$root/usr/local/bin/memesd" ] || fail "memesd.service does not run /usr/local/bin/memesd"
if ! out=$(systemd-analyze verify --man=no --generators=no --root="$root" "${units[@]}" 2>&1) \
  || [ -n "$out" ]; then
  fail "$out"
fi

# A service whose ExecStart passes a flag memesd does not know fails on every start, which
# nothing above can see; with a real binary, ask it.
if [ "$memesd" != /bin/true ]; then
  check "$memesd accepts the flags ExecStart passes"
  help=$("$memesd" --help)
  while read -r flag; do
    grep -qE -- "(^|[ ,])$flag([ =,]|$)" <<<"$help" || fail "$memesd --help does not list $flag"
  done < <(sed -nE 's/^ExecStart=//p' "$deploy/systemd/memesd.service" | grep -oE -- '--[a-z0-9-]+')

  check "$memesd accepts the example configuration memesd.toml"
  "$memesd" --config "$deploy/memesd.toml" --print-config >/dev/null
fi

# The sandbox, as systemd scores it (0 = fully confined, 10 = not at all). The threshold
# (in tenths) keeps it from loosening unnoticed; 1.6 at the time of writing.
check "systemd-analyze security memesd.service: exposure at most 2.0"
systemd-analyze security --offline=yes --root="$root" --threshold=20 memesd.service >"$tmp/security" 2>&1 \
  || { cat "$tmp/security" >&2; false; }
grep 'Overall exposure level' "$tmp/security"

step=""
echo "deploy/check.sh: all checks passed"
