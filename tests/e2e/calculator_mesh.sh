#!/usr/bin/env bash
# End to end: the calculator mesh of ./ops/demo.sh (ops/lib/topology.sh), brought up on
# free loopback ports in a temporary directory with its own Consul dev agent and
# Prometheus, then:
#   1. Prometheus finds every service and every sidecar through Consul (up == 1);
#   2. a table of expressions gives its results, or its errors (status and code);
#   3. both instances of every operator service got calls (their own /metrics);
#   4. with one add-svc instance killed (SIGKILL) in the middle of a stream of
#      requests, every answer stays right;
#   5. Prometheus sees the request counters rise (the frontend's and its sidecar's; with
#      TOPO_PROXY=native the frontend's own client-side calls).
#
#   [TOPO_PROXY=coromesh|native] tests/e2e/calculator_mesh.sh [BIN_DIR=build/bin]
# TOPO_PROXY=native: the same checks against the Connect-native topology (no sidecars
# but mod-svc's; the frontend reached through its ingress sidecar), which also shows
# that each native operator's own metrics (its admin port) saw its share of the calls.
# E2E_MODE=secure (tests/e2e/lib.sh): all of it on a locked-down Consul (ACLs, default
# deny, a token per process kind; Prometheus with its own), and then:
#   6. without the frontend -> add-svc allow, additions fail with the authorization
#      reason while the other operators answer; with it back, additions work again;
#   7. no token appears in any log of the run.
#   [E2E_MODE=secure] tests/e2e/calculator_mesh.sh [BIN_DIR=build/bin]
# Every process it starts is stopped by PID on exit, whatever the outcome.
set -euo pipefail
COROMESH_SCRIPT=e2e
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"
e2e_mesh_up "${1:-}" --prometheus

# prom_query QUERY: the first result's value (empty when there is none).
prom_query() {
  curl -fsS --max-time 5 "http://$platform_prometheus_addr/api/v1/query" \
    --data-urlencode "query=$1" | jq -r '.data.result[0].value[1] // empty'
}

# ---------------------------------------------------------------- 1. discovery
want_targets=$(topology_metrics_targets | sort)
deadline=$((SECONDS + 60))
while :; do
  up_targets=$(platform_prometheus_targets "$platform_prometheus_addr" 2>/dev/null |
    awk '$3 == "up" {print $2}' | sort)
  [ "$up_targets" != "$want_targets" ] || break
  [ "$SECONDS" -lt "$deadline" ] || fail "Prometheus targets up after 60 s:
$up_targets
wanted:
$want_targets"
  sleep 0.5
done
# One sidecar per instance, or with native services only mod-svc's two.
want_sidecars=11 want_native=0
[ "$TOPO_PROXY" != native ] || want_sidecars=2 want_native=9
sidecars=$(grep -c -- '-sidecar-proxy$' <<<"$want_targets" || true)
[ "$sidecars" -eq "$want_sidecars" ] || fail "expected $want_sidecars sidecar targets, found $sidecars"
native=$(curl -fsS --max-time 5 "http://$TOPO_CONSUL_ADDR/v1/agent/services" |
  jq '[.[] | select(.Connect.Native == true)] | length')
[ "$native" -eq "$want_native" ] || fail "expected $want_native Connect-native registrations, found $native"
pass "Prometheus scrapes all $(wc -l <<<"$want_targets") services and sidecars, found through Consul"

# ---------------------------------------------------------------- 2. expressions
# expect EXPRESSION STATUS RESULT-OR-ERROR-CODE
expect() {
  local got status body want
  got=$(compute "$(jq -nc --arg e "$1" '{expression: $e}')")
  status=${got%% *} body=${got#* }
  if [ "$2" = 200 ]; then
    want="{\"result\":$3}"
    [ "$status" = 200 ] && [ "$body" = "$want" ] || fail "'$1': got $status $body, want 200 $want"
  else
    [ "$status" = "$2" ] && [ "$(jq -r .error <<<"$body" 2>/dev/null)" = "$3" ] ||
      fail "'$1': got $status $body, want $2 with error $3"
  fi
}
expect "1+1+2+3+4+5+6-1-2-3-4-5-6+9+8-4-5" 200 9 # the seed's
expect "1+2*3" 200 7                             # precedence
expect "2*3+1" 200 7
expect "(1+2)*3" 200 9 # parentheses
expect "(1+2)*(3+4)" 200 21
expect "10-4-3" 200 3 # left associativity
expect "100/7/2" 200 7
expect "-3*-(2+1)" 200 9 # unary minus
expect " 7 - -2 " 200 9
expect "-9223372036854775807-1" 200 -9223372036854775808
expect "17 % 5 * 2" 200 4 # mod-svc (Python): % as * and /, the dividend's sign
expect "-7 % 2" 200 -1
expect "1/0" 422 division_by_zero
expect "4/(2-2)" 422 division_by_zero
expect "7 % (3-3)" 422 division_by_zero
expect "9223372036854775807+1" 422 overflow
expect "(-9223372036854775807-1)/-1" 422 overflow
expect "3*-3074457345618258603" 422 overflow
expect "1+" 400 invalid_expression
expect "2*(3" 400 invalid_expression
expect "1 2" 400 invalid_expression
expect "" 400 empty_expression
expect "99999999999999999999" 400 literal_out_of_range
got=$(compute '{"expression": 5}')
[ "${got%% *}" = 400 ] || fail "a non-string expression: got $got, want 400"
got=$(compute 'not json')
[ "${got%% *}" = 400 ] || fail "a body that is not JSON: got $got, want 400"
pass "23 expressions and 2 malformed bodies: results, 422s from the operators, 400s from the parser"

# ---------------------------------------------------------------- 3. both instances
for i in $(seq 1 8); do expect "((1+1)-(1-1))*(2/1)+5%3" 200 6; done
for service in add-svc sub-svc mul-svc div-svc mod-svc; do
  operation=${service%-svc}
  while IFS=$'\t' read -r proc _ _ _ _ metrics _; do
    calls=$(curl -fsS --max-time 5 "http://127.0.0.1:$metrics/metrics" |
      awk -v op="operation=\"$operation\"" '/^coromesh_http_server_requests_total/ && index($0, op) && /code="200"/ {s += $2} END {print s + 0}')
    [ "$calls" -gt 0 ] || fail "$proc answered no $operation call: the other instance got them all"
    echo "  $proc: $calls $operation calls"
  done < <(topology_rows service "$service")
done
pass "both instances of every operator service got calls"

# ---------------------------------------------------------------- 4. an instance killed
computes_before=$(prom_query 'sum(coromesh_http_server_requests_total{service="frontend",operation="compute"})')
# The frontend's add calls: counted by its sidecar's upstream, or natively by its client.
add_calls='sum(coromesh_sidecar_upstream_requests_total{service="frontend-sidecar-proxy",upstream="add-svc"})'
[ "$TOPO_PROXY" != native ] ||
  add_calls='sum(coromesh_qos_calls_total{service="frontend",operation="add",side="client"})'
sidecar_before=$(prom_query "$add_calls")
# Two clients, each a stream of the seed's request; add-svc-1 dies once both are going.
clients=()
for client in 1 2; do
  (for _ in $(seq 1 40); do compute '{"expression":"1+1+2+3+4+5+6-1-2-3-4-5-6+9+8-4-5"}'; done \
    >"$work/client-$client.out") &
  clients+=($!)
done
deadline=$((SECONDS + 60))
until [ "$(cat "$work"/client-*.out 2>/dev/null | wc -l)" -ge 10 ]; do
  [ "$SECONDS" -lt "$deadline" ] || fail "the clients got no answers within 60 s"
  sleep 0.05
done
victim=$(proc_pid "$work" add-svc-1)
kill -KILL "$victim"
wait "$victim" 2>/dev/null || true
answers_at_kill=$(cat "$work"/client-*.out | wc -l)
wait "${clients[@]}"
bad=$(cat "$work"/client-*.out | grep -cvxF '200 {"result":9}' || true)
total=$(cat "$work"/client-*.out | wc -l)
[ "$total" -eq 80 ] || fail "the clients recorded $total answers, not 80"
[ "$bad" -eq 0 ] || fail "$bad of 80 answers were wrong after add-svc-1 was killed:
$(grep -vxF '200 {"result":9}' "$work"/client-*.out | sort | uniq -c)"
# And after Consul has taken the dead instance out (its checks run every second).
for _ in $(seq 1 10); do expect "1+1+2+3+4+5+6-1-2-3-4-5-6+9+8-4-5" 200 9; done
pass "add-svc-1 killed (pid $victim) after $answers_at_kill answers: all 90 answers right"

# ---------------------------------------------------------------- 5. Prometheus sees it
deadline=$((SECONDS + 60))
while :; do
  computes_after=$(prom_query 'sum(coromesh_http_server_requests_total{service="frontend",operation="compute"})')
  sidecar_after=$(prom_query "$add_calls")
  # 90 computations since the first reading; the seed's expression makes 8 additions.
  if awk -v a="${computes_after:-0}" -v b="${computes_before:-0}" \
    -v c="${sidecar_after:-0}" -v d="${sidecar_before:-0}" 'BEGIN {exit !(a - b >= 90 && c - d >= 720)}'; then
    break
  fi
  [ "$SECONDS" -lt "$deadline" ] || fail "Prometheus's counters did not rise enough in 60 s:" \
    "frontend computes $computes_before -> $computes_after, its sidecar's add-svc requests" \
    "$sidecar_before -> $sidecar_after ($add_calls)"
  sleep 0.5
done
pass "Prometheus: frontend computes $computes_before -> $computes_after," \
  "its add-svc calls $sidecar_before -> $sidecar_after ($add_calls)"
[ "${E2E_MODE:-}" = secure ] || {
  echo "PASS"
  exit 0
}

# ---------------------------------------------------------------- 6. intentions
_topology_consul_curl -fsS --max-time 5 -X DELETE -o /dev/null \
  "http://$TOPO_CONSUL_ADDR/v1/config/service-intentions/add-svc"
deadline=$((SECONDS + 30))
while :; do
  got=$(compute '{"expression":"2+3"}')
  [ "${got%% *}" = 200 ] || break
  [ "$SECONDS" -lt "$deadline" ] || fail "additions still answer 30 s after the allow went: $got"
  sleep 0.6 # longer than the operators' idle timeout: the next call is a new connection
done
echo "  2+3 without the allow: $got"
status=${got%% *} body=${got#* }
# add-svc's sidecars (http inbound in secure mode) answer 403 with Consul's reason; the
# frontend's dependency refused it, which is not the user's fault: 502, with the reason.
[ "$status" = 502 ] && [ "$(jq -r .error <<<"$body")" = unauthorized ] ||
  fail "an addition without the allow: got $got, want 502 unauthorized"
jq -r .reason <<<"$body" |
  grep -q 'add-svc does not accept calls from frontend: Matched L4 intention: default/\* => default/\*' ||
  fail "the answer does not carry Consul's reason: $got"
refusals=$(cat "$work"/add-svc-*-sidecar.log | grep -c 'sidecar.inbound.refused.*reason=unauthorized' || true)
[ "$refusals" -gt 0 ] || fail "no add-svc sidecar logged an unauthorized refusal"
grep -h 'reason=unauthorized' "$work"/add-svc-*-sidecar.log | grep -q 'Matched L4 intention: default/\* => default/\*' ||
  fail "the refusals do not carry Consul's reason: $(grep -h 'reason=unauthorized' "$work"/add-svc-*-sidecar.log | head -2)"
expect "(8-2)*3/2" 200 9
expect "7%4*3" 200 9
acl_allow "$TOPO_CONSUL_ADDR" "$TOPO_ACL_RUN" add-svc frontend
deadline=$((SECONDS + 30))
until [ "$(compute '{"expression":"2+3"}')" = '200 {"result":5}' ]; do
  [ "$SECONDS" -lt "$deadline" ] || fail "additions still fail 30 s after the allow came back"
  sleep 0.6
done
pass "without the frontend -> add-svc allow: $status $(jq -c . <<<"$body"), $refusals refusals" \
  "logged with Consul's reason; sub, mul, div, mod answer; the allow back: additions answer"

# ---------------------------------------------------------------- 7. no token printed
tokens=("$work"/acl/*.token)
# bootstrap, prometheus, and one per service and one per sidecar of 6 services
[ "${#tokens[@]}" -eq 14 ] || fail "expected 14 token files, found ${#tokens[@]}: ${tokens[*]}"
[ "$(cat "${tokens[@]}" | sort -u | wc -l)" -eq 14 ] || fail "two token files hold the same token"
for token_file in "${tokens[@]}"; do
  [ "$(stat -c %a "$token_file")" = 600 ] || fail "$token_file is not 0600"
  if grep -lF -- "$(cat "$token_file")" "$work"/*.log "$work"/*.cmd; then
    fail "the token of $(basename "$token_file") is in the logs or command lines above"
  fi
done
logs=("$work"/*.log)
pass "none of the 14 tokens is in any of the ${#logs[@]} logs or any command line"
echo "PASS"
