# The mesh on a locked-down Consul: ACLs on with default policy "deny", a bootstrap
# (initial management) token, one least-privilege token per service, a "*" -> "*" deny
# intention plus explicit allows, and a read-only token for Prometheus.
# Source it (after ops/lib/common.sh, which puts `consul` on PATH); do not run it.
#
# Every secret lives in a file of mode 0600 under "$run_dir/acl" (mode 0700) and reaches
# `consul` through CONSUL_HTTP_TOKEN_FILE: no token is ever on a command line (ps shows
# those) or printed. A typical secure start:
#
#   acl_init "$run"                                        # token + agent config
#   consul agent -dev ... $(acl_consul_args "$run") &
#   acl_wait_ready "$addr" "$run"
#   acl_deny_all "$addr" "$run"
#   acl_allow "$addr" "$run" add frontend                  # frontend -> add
#   add_token=$(acl_service_token "$addr" "$run" add)      # a path, not the token
#   add-svc --consul "$addr" --consul-token-file "$add_token" ...
#   coromesh-sidecar --service add ... --consul-token-file "$add_token"
#   acl_prometheus_config prometheus.yml prometheus-acl.yml \
#     "$(acl_prometheus_token "$addr" "$run")"
#   acl_rotate_token "$addr" "$run" add                    # new token in place, old revoked

# acl_dir RUN_DIR: where the secrets are kept.
acl_dir() {
  printf '%s/acl\n' "$1"
}

# acl_init RUN_DIR: the bootstrap token (bootstrap.token) and the agent's ACL
# configuration (consul-acl.hcl); kept when they exist, so a restarted agent keeps its
# tokens valid.
acl_init() {
  local dir
  dir=$(acl_dir "$1")
  (
    umask 077
    mkdir -p "$dir"
    chmod 700 "$dir"
    if [ ! -s "$dir/bootstrap.token" ]; then
      cat /proc/sys/kernel/random/uuid >"$dir/bootstrap.token"
    fi
    local token
    token=$(cat "$dir/bootstrap.token")
    # Consul 1.15 names: tokens.initial_management (formerly "master"); the agent's own
    # token is the management one here, for the single-node demo agent only.
    cat >"$dir/consul-acl.hcl" <<EOF
acl {
  enabled = true
  default_policy = "deny"
  enable_token_persistence = true
  tokens {
    initial_management = "$token"
    agent = "$token"
  }
}
EOF
  )
}

# acl_consul_args RUN_DIR: what to add to `consul agent` (after acl_init).
acl_consul_args() {
  printf -- '-config-file=%s/consul-acl.hcl\n' "$(acl_dir "$1")"
}

# _acl_consul ADDR RUN_DIR consul-args...: `consul` as the operator (bootstrap token).
_acl_consul() {
  local addr=$1 dir
  dir=$(acl_dir "$2")
  shift 2
  CONSUL_HTTP_ADDR="$addr" CONSUL_HTTP_TOKEN="" CONSUL_HTTP_TOKEN_FILE="$dir/bootstrap.token" \
    consul "$@"
}

# acl_wait_ready ADDR RUN_DIR: waits (up to 30s) until the agent accepts the bootstrap
# token, i.e. it has a leader and its ACL system is up.
acl_wait_ready() {
  local _
  for _ in $(seq 1 150); do
    if _acl_consul "$1" "$2" acl token read -self >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.2
  done
  echo "acl: the Consul agent at $1 did not accept the bootstrap token within 30s" >&2
  return 1
}

# _acl_policy ADDR RUN_DIR NAME RULES: creates the policy unless it exists.
_acl_policy() {
  if ! _acl_consul "$1" "$2" acl policy read -name "$3" >/dev/null 2>&1; then
    _acl_consul "$1" "$2" acl policy create -name "$3" -rules "$4" >/dev/null
  fi
}

# _acl_token_file ADDR RUN_DIR NAME token-create-args...: creates a token, stores its
# secret in NAME.token (0600, replaced atomically) and its accessor ID in NAME.accessor;
# prints the token file's path.
_acl_token_file() {
  local addr=$1 run=$2 name=$3 dir json
  dir=$(acl_dir "$run")
  shift 3
  json=$(_acl_consul "$addr" "$run" acl token create -format=json "$@") || return 1
  (
    umask 077
    jq -r .SecretID <<<"$json" >"$dir/$name.token.partial"
    jq -r .AccessorID <<<"$json" >"$dir/$name.accessor"
    mv -f "$dir/$name.token.partial" "$dir/$name.token"
  )
  printf '%s/%s.token\n' "$dir" "$name"
}

# acl_service_token ADDR RUN_DIR SERVICE [NAME]: a token for SERVICE and its sidecar: the
# service identity (service:write on SERVICE and SERVICE-sidecar-proxy, read on every
# service and node: registration, leaf certificate, intentions, upstream discovery) and
# read on its live QoS override keys (coromesh/qos/SERVICE/). Kept in NAME.token (NAME
# defaults to SERVICE: one token per process kind, e.g. add-svc and add-svc-sidecar).
# Prints the token file.
acl_service_token() {
  local addr=$1 run=$2 service=$3 name=${4:-$3}
  _acl_policy "$addr" "$run" "coromesh-qos-$service" \
    "key_prefix \"coromesh/qos/$service/\" { policy = \"read\" }" || return 1
  _acl_token_file "$addr" "$run" "$name" -description "coromesh $name (service $service)" \
    -service-identity "$service" -policy-name "coromesh-qos-$service"
}

# acl_ensure_service_token ADDR RUN_DIR SERVICE [NAME]: as acl_service_token, but an
# existing NAME.token the agent still accepts is kept (a second `up` makes no new
# token; a restarted dev agent, which forgot every token, gets new ones).
acl_ensure_service_token() {
  local file
  file="$(acl_dir "$2")/${4:-$3}.token"
  if [ -s "$file" ] && CONSUL_HTTP_ADDR="$1" CONSUL_HTTP_TOKEN="" CONSUL_HTTP_TOKEN_FILE="$file" \
    consul acl token read -self >/dev/null 2>&1; then
    printf '%s\n' "$file"
    return 0
  fi
  acl_service_token "$@"
}

# acl_rotate_token ADDR RUN_DIR SERVICE [NAME]: a new token replaces NAME.token (the
# running processes read it at their next Consul call and register again with it), then
# the old one is revoked.
acl_rotate_token() {
  local addr=$1 run=$2 service=$3 name=${4:-$3} dir old
  dir=$(acl_dir "$run")
  old=$(cat "$dir/$name.accessor")
  acl_service_token "$addr" "$run" "$service" "$name" >/dev/null || return 1
  # Give the processes a resync interval (5s by default) to pick the new token up.
  sleep "${ACL_ROTATE_GRACE:-6}"
  _acl_consul "$addr" "$run" acl token delete -accessor-id "$old" >/dev/null
}

# acl_curl_header RUN_DIR: a file holding "X-Consul-Token: <bootstrap token>" (0600), for
# `curl -H @FILE`: the operator's own HTTP calls to Consul, with no token on a command
# line. Prints its path.
acl_curl_header() {
  local dir
  dir=$(acl_dir "$1")
  (
    umask 077
    printf 'X-Consul-Token: %s\n' "$(cat "$dir/bootstrap.token")" >"$dir/bootstrap.header"
  )
  printf '%s/bootstrap.header\n' "$dir"
}

# acl_prometheus_token ADDR RUN_DIR: read on every service, node and agent: what
# consul_sd_configs needs and nothing more. Prints the token file.
acl_prometheus_token() {
  _acl_policy "$1" "$2" prometheus-consul-sd \
    'service_prefix "" { policy = "read" }
node_prefix "" { policy = "read" }
agent_prefix "" { policy = "read" }' || return 1
  _acl_token_file "$1" "$2" prometheus -description "prometheus consul_sd" \
    -policy-name prometheus-consul-sd
}

# acl_prometheus_config IN OUT TOKEN_FILE: the rendered prometheus.yml with the token
# sent to Consul (Authorization: Bearer, read from TOKEN_FILE at each refresh, so a
# rotation needs no reload).
acl_prometheus_config() {
  local in=$1 out=$2 token_file=$3
  grep -q -- '- server:' "$in" || {
    echo "acl: no consul_sd_configs '- server:' line in $in" >&2
    return 1
  }
  sed -e "/- server:/a\\
        authorization:\\
          type: Bearer\\
          credentials_file: $token_file" "$in" >"$out"
}

# acl_deny_all ADDR RUN_DIR: the "*" -> "*" deny intention: only explicit allows pass.
acl_deny_all() {
  acl_intentions "$1" "$2" '*' '*=deny'
}

# acl_allow ADDR RUN_DIR DESTINATION SOURCE...: DESTINATION accepts each SOURCE (and,
# through the "*" deny, nothing else). Replaces DESTINATION's intentions.
acl_allow() {
  local addr=$1 run=$2 destination=$3 sources=() source
  shift 3
  for source in "$@"; do
    sources+=("$source=allow")
  done
  acl_intentions "$addr" "$run" "$destination" "${sources[@]}"
}

# acl_intentions ADDR RUN_DIR DESTINATION SOURCE=ACTION...: writes DESTINATION's
# service-intentions config entry.
acl_intentions() {
  local addr=$1 run=$2 destination=$3 entry='[]' pair
  shift 3
  for pair in "$@"; do
    entry=$(jq -c --arg name "${pair%%=*}" --arg action "${pair#*=}" \
      '. + [{Name: $name, Action: $action}]' <<<"$entry")
  done
  jq -n --arg name "$destination" --argjson sources "$entry" \
    '{Kind: "service-intentions", Name: $name, Sources: $sources}' |
    _acl_consul "$addr" "$run" config write - >/dev/null
}
