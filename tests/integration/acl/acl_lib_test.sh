#!/usr/bin/env bash
# ops/lib/acl.sh against a real `consul agent -dev` on free loopback ports: the files it
# writes (mode 0600, no secret printed), what each token may and may not do, the
# intentions it writes, the Prometheus configuration, and a rotation.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
# shellcheck source=ops/lib/common.sh
source "$root/ops/lib/common.sh"
# shellcheck source=ops/lib/acl.sh
source "$root/ops/lib/acl.sh"
command -v consul >/dev/null || { echo "FAIL: consul not found (run ./ops/setup.sh)"; exit 1; }

run=$(mktemp -d "${TMPDIR:-/tmp}/coromesh-acl-lib.XXXXXX")
agent=""
cleanup() {
  if [ -n "$agent" ]; then kill "$agent" 2>/dev/null || true; wait "$agent" 2>/dev/null || true; fi
  [ -n "${KEEP:-}" ] || rm -rf "$run"  # KEEP=1: keep the run directory to look at
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; echo "run dir: $run"; exit 1; }

# Seven free ports in 20000-32000, where the test fixtures pick theirs.
mapfile -t ports < <(python3 -c '
import random, socket
socks = []
while len(socks) < 7:
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", random.randint(20000, 32000)))
        socks.append(s)
    except OSError:
        s.close()
print("\n".join(str(s.getsockname()[1]) for s in socks))')
addr="127.0.0.1:${ports[0]}"

acl_init "$run"
[ "$(stat -c %a "$run/acl")" = 700 ] || fail "acl dir is not 0700"
[ "$(stat -c %a "$run/acl/bootstrap.token")" = 600 ] || fail "bootstrap.token is not 0600"
bootstrap=$(cat "$run/acl/bootstrap.token")
consul agent -dev -node=acl-lib -bind=127.0.0.1 -client=127.0.0.1 -http-port="${ports[0]}" \
  -dns-port="${ports[1]}" -serf-lan-port="${ports[2]}" -serf-wan-port="${ports[3]}" \
  -server-port="${ports[4]}" -grpc-port="${ports[5]}" -grpc-tls-port="${ports[6]}" \
  -log-level=warn "$(acl_consul_args "$run")" >"$run/consul.log" 2>&1 &
agent=$!
acl_wait_ready "$addr" "$run" || { cat "$run/consul.log"; fail "agent not ready"; }

out=$(
  acl_deny_all "$addr" "$run"
  acl_allow "$addr" "$run" add frontend
  acl_service_token "$addr" "$run" add
  acl_prometheus_token "$addr" "$run"
)
add_file="$run/acl/add.token"
prom_file="$run/acl/prometheus.token"
[ "$out" = "$add_file"$'\n'"$prom_file" ] || fail "printed: $out"
for f in "$add_file" "$prom_file"; do
  [ "$(stat -c %a "$f")" = 600 ] || fail "$f is not 0600"
  grep -qF "$(cat "$f")" <<<"$out" && fail "a secret was printed"
done

as() { CONSUL_HTTP_ADDR="$addr" CONSUL_HTTP_TOKEN="" CONSUL_HTTP_TOKEN_FILE="$1" consul "${@:2}"; }
svc() { printf '{"Service":{"Name":"%s","Port":%d}}' "$1" "$2" >"$run/$1.json"; echo "$run/$1.json"; }
as "$add_file" services register "$(svc add 9001)" >/dev/null || fail "add cannot register add"
if as "$add_file" services register "$(svc sub 9002)" >"$run/sub.out" 2>&1; then
  fail "the add token registered sub"
fi
grep -q "lacks permission 'service:write'" "$run/sub.out" || fail "no reason: $(cat "$run/sub.out")"
as "$add_file" kv get coromesh/qos/add/x >/dev/null 2>"$run/kv.err" || true
grep -q "Permission denied" "$run/kv.err" && fail "add cannot read its override keys"
listed() { as "$prom_file" catalog services 2>/dev/null | grep -qx add; }
for _ in $(seq 1 100); do listed && break; sleep 0.2; done  # anti-entropy syncs the catalog
listed || fail "prometheus cannot list services: $(as "$prom_file" catalog services 2>&1; as "$run/acl/bootstrap.token" catalog services 2>&1)"
as "$prom_file" services register "$(svc prom 9003)" >/dev/null 2>&1 && fail "prometheus can write"

check() {  # source destination expected
  local said
  said=$(as "$run/acl/bootstrap.token" intention check "$1" "$2" || true)
  [ "$said" = "$3" ] || fail "intention $1 -> $2 is '$said', not $3"
}
check frontend add Allowed
check sub add Denied
check frontend sub Denied

acl_prometheus_config "$root/ops/prometheus/prometheus.yml.in" "$run/prometheus.yml" "$prom_file"
grep -q "credentials_file: $prom_file" "$run/prometheus.yml" || fail "no credentials_file"
if command -v prometheus >/dev/null; then
  sed -i -e "s/__CONSUL_ADDR__/$addr/" -e 's/__SCRAPE_INTERVAL__/5s/g' "$run/prometheus.yml"
  promtool=$(dirname "$(command -v prometheus)")/promtool
  [ -x "$promtool" ] && { "$promtool" check config "$run/prometheus.yml" >/dev/null || fail "promtool"; }
fi

old=$(cat "$add_file")
ACL_ROTATE_GRACE=0 acl_rotate_token "$addr" "$run" add
[ "$(cat "$add_file")" != "$old" ] || fail "not rotated"
as "$add_file" services register "$(svc add 9001)" >/dev/null || fail "the new token cannot register"
printf '%s\n' "$old" >"$run/old.token"
as "$run/old.token" services register "$(svc add 9001)" >/dev/null 2>&1 && fail "the old token still works"

grep -qF "$bootstrap" "$run/consul.log" && fail "the agent logged the bootstrap token"
echo "acl_lib_test: 1 passed, 0 failed"
