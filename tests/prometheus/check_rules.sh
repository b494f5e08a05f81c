#!/usr/bin/env bash
# The shipped Prometheus configuration and rules, checked with the real promtool:
#   1. `promtool check rules` on every ops/prometheus/rules/*.rules.yml;
#   2. `promtool test rules` on every *.test.yml there (the alerts' and recording
#      rules' unit tests), and every alert of the rules files must be expected to fire
#      in one of those tests (an alert nobody tests could never fire unnoticed);
#   3. `promtool check config` on prometheus.yml.in rendered the way ops/demo.sh
#      renders it, which also loads the rule files it names.
#   check_rules.sh SOURCE_DIR WORK_DIR
set -euo pipefail
src="${1:?usage: check_rules.sh SOURCE_DIR WORK_DIR}"
work="${2:?usage: check_rules.sh SOURCE_DIR WORK_DIR}"
promtool="$src/ops/.tools/bin/promtool"
rules_dir="$src/ops/prometheus/rules"
fail() { echo "check_rules.sh: FAIL: $*" >&2; exit 1; }

[ -x "$promtool" ] || fail "$promtool not found: run ./ops/setup.sh (ops/build-prometheus.sh builds it)"
mapfile -t rule_files < <(find "$rules_dir" -maxdepth 1 -name '*.rules.yml' | sort)
mapfile -t test_files < <(find "$rules_dir" -maxdepth 1 -name '*.test.yml' | sort)
[ "${#rule_files[@]}" -gt 0 ] || fail "no *.rules.yml in $rules_dir"
[ "${#test_files[@]}" -gt 0 ] || fail "no *.test.yml in $rules_dir"

echo "--- promtool check rules"
"$promtool" check rules "${rule_files[@]}" || fail "promtool check rules"

echo "--- promtool test rules"
(cd "$rules_dir" && "$promtool" test rules "${test_files[@]}") || fail "promtool test rules"

echo "--- every alert is expected to fire in a test"
mapfile -t alerts < <(sed -nE 's/^[[:space:]]*-[[:space:]]*alert:[[:space:]]*([A-Za-z0-9_]+).*/\1/p' "${rule_files[@]}" | sort -u)
[ "${#alerts[@]}" -gt 0 ] || fail "no alert found in ${rule_files[*]}"
untested=()
for alert in "${alerts[@]}"; do
  # An alert_rule_test entry for this alert whose exp_alerts is not empty.
  if ! awk -v name="$alert" '
      $1 == "alertname:" { current = $2; next }
      $1 == "exp_alerts:" { expecting = (current == name && $2 != "[]") ; next }
      expecting && $1 == "-" && $2 == "exp_labels:" { found = 1 }
      END { exit(found ? 0 : 1) }' "${test_files[@]}"; then
    untested+=("$alert")
  fi
done
[ "${#untested[@]}" -eq 0 ] || fail "alerts no test expects to fire: ${untested[*]}"
echo "${#alerts[@]} alerts, each expected to fire: ${alerts[*]}"

echo "--- promtool check config (prometheus.yml.in as ops/demo.sh renders it)"
mkdir -p "$work"
sed -e "s/__CONSUL_ADDR__/127.0.0.1:8500/" -e "s/__SCRAPE_INTERVAL__/5s/g" \
  -e "s#__RULES_DIR__#$rules_dir#g" "$src/ops/prometheus/prometheus.yml.in" >"$work/prometheus.yml"
out="$("$promtool" check config "$work/prometheus.yml" 2>&1)" || { echo "$out"; fail "promtool check config"; }
echo "$out"
for f in "${rule_files[@]}"; do
  grep -qF "$f" <<<"$out" || fail "the rendered config does not load $f"
done
echo "check_rules.sh: ok"
