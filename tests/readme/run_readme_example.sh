#!/usr/bin/env bash
# The README's out-of-tree example, as the README shows it: extracts every fenced block
# marked `<!-- file: example/... -->`, installs coromesh from BUILD_DIR into a scratch
# prefix, builds the example with find_package(coromesh) and -Wall -Wextra -Werror, runs
# greeter-svc and welcome-svc on free loopback ports, checks the answers the README
# quotes, and stops both with SIGTERM (each must exit 0). Any drift fails the test.
# The shorter snippets a newcomer meets first ("Write your first service", "A service
# with QoS") are marked `<!-- file: snippets/... -->`: built the same way (with a
# CMakeLists.txt of the test's own, as the README shows none for them) and called.
#   run_readme_example.sh SOURCE_DIR BUILD_DIR WORK_DIR CXX [LINKER_FLAGS]
set -euo pipefail
source_dir="$1" build_dir="$2" work="$3" cxx="$4" linker_flags="${5:-}"

fail() {
  echo "readme.example: $*" >&2
  exit 1
}
pids=()
cleanup() {
  for pid in "${pids[@]}"; do
    kill -KILL "$pid" 2>/dev/null || true
  done
}
trap cleanup EXIT

rm -rf "$work"
mkdir -p "$work"

# 1. The blocks, byte for byte.
mkdir -p "$work/example" "$work/snippets"
awk -v out="$work" '
  /^<!-- file: (example|snippets)\/[^ ]+ -->$/ {
    target = $0
    sub(/^<!-- file: /, "", target)
    sub(/ -->$/, "", target)
    target = out "/" target
    next
  }
  target != "" && !inside && /^```/ { inside = 1; printf "" > target; next }
  inside && /^```$/ { inside = 0; close(target); target = ""; next }
  inside { print > target }
' "$source_dir/README.md"
for file in example/CMakeLists.txt example/greeter_api.hpp example/greeter.cpp \
  example/welcome.cpp snippets/hello.cpp snippets/calculator_api.hpp snippets/add.cpp; do
  [ -s "$work/$file" ] || fail "README.md has no block marked <!-- file: $file -->"
done
cat >"$work/snippets/CMakeLists.txt" <<'CMAKE'
cmake_minimum_required(VERSION 3.25)
project(readme_snippets LANGUAGES CXX)
set(CMAKE_CXX_STANDARD 20)
set(CMAKE_CXX_STANDARD_REQUIRED ON)
find_package(coromesh 0.1 REQUIRED)
add_executable(hello-svc hello.cpp)
add_executable(add-svc add.cpp)
target_link_libraries(hello-svc PRIVATE coromesh::framework)
target_link_libraries(add-svc PRIVATE coromesh::framework)
CMAKE

# 2. Install, configure, build: what the README tells a user to do.
cmake --install "$build_dir" --prefix "$work/prefix" >"$work/install.log" 2>&1 \
  || { cat "$work/install.log" >&2; fail "cmake --install failed"; }
launcher=()
if command -v ccache >/dev/null 2>&1; then
  launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
fi
cmake -S "$work/example" -B "$work/build" -G Ninja -DCMAKE_CXX_COMPILER="$cxx" \
  -DCMAKE_PREFIX_PATH="$work/prefix" "${launcher[@]}" \
  "-DCMAKE_CXX_FLAGS=-Wall -Wextra -Werror" "-DCMAKE_EXE_LINKER_FLAGS=$linker_flags" \
  >"$work/configure.log" 2>&1 || { cat "$work/configure.log" >&2; fail "configure failed"; }
cmake --build "$work/build" >"$work/build.log" 2>&1 \
  || { tail -60 "$work/build.log" >&2; fail "the README's example does not build"; }
cmake -S "$work/snippets" -B "$work/build-snippets" -G Ninja -DCMAKE_CXX_COMPILER="$cxx" \
  -DCMAKE_PREFIX_PATH="$work/prefix" "${launcher[@]}" \
  "-DCMAKE_CXX_FLAGS=-Wall -Wextra -Werror" "-DCMAKE_EXE_LINKER_FLAGS=$linker_flags" \
  >"$work/configure-snippets.log" 2>&1 ||
  { cat "$work/configure-snippets.log" >&2; fail "configure of the snippets failed"; }
cmake --build "$work/build-snippets" >"$work/build-snippets.log" 2>&1 ||
  { tail -60 "$work/build-snippets.log" >&2; fail "the README's snippets do not build"; }

# 3. Run it. start NAME args...: sets $port from the service's start-up log line; the
# binary is $bin_dir/NAME.
bin_dir="$work/build"
start() {
  local name="$1"
  shift
  # Created first: the background job opens its redirection only when it gets to run.
  : >"$work/$name.log"
  "$bin_dir/$name" --no-consul-register --port 0 "$@" 2>"$work/$name.log" &
  pids+=($!)
  eval "${name//-/_}_pid=$!"
  port=""
  for _ in $(seq 1 150); do
    port=$(sed -nE 's/.*event=service\.started .*port=([0-9]+).*/\1/p' "$work/$name.log")
    [ -n "$port" ] && return 0
    kill -0 "$!" 2>/dev/null || { cat "$work/$name.log" >&2; fail "$name exited at start-up"; }
    sleep 0.1
  done
  fail "$name did not log service.started within 15 s"
}
# expect WHAT STATUS BODY curl-args...: the answer must be exactly STATUS and BODY.
expect() {
  local what="$1" status="$2" body="$3"
  shift 3
  grep -qF -- "$body" "$source_dir/README.md" || fail "$what: README.md no longer quotes $body"
  local answer
  answer=$(curl -sS --max-time 10 -w '\n%{http_code}' "$@") || fail "$what: curl failed"
  local got_body="${answer%$'\n'*}" got_status="${answer##*$'\n'}"
  if [ "$got_status" != "$status" ] || [ "$got_body" != "$body" ]; then
    fail "$what: expected $status $body, got $got_status $got_body"
  fi
  echo "readme.example: $what -> $got_status $got_body"
}
# stop NAME PID: SIGTERM, then it must exit 0 within 15 s.
stop() {
  kill -TERM "$2"
  for _ in $(seq 1 150); do
    if ! kill -0 "$2" 2>/dev/null; then
      local rc=0
      wait "$2" || rc=$?
      [ "$rc" -eq 0 ] || fail "$1 exited $rc after SIGTERM"
      return 0
    fi
    sleep 0.1
  done
  fail "$1 did not exit within 15 s of SIGTERM"
}

start greeter-svc
greeter_port=$port
expect "greet" 200 '{"message":"hello, mesh"}' "http://127.0.0.1:$greeter_port/api/v1/greet?name=mesh"
expect "greet without a name (HttpError)" 422 \
  '{"error":"empty_name","reason":"say who is to be greeted"}' \
  "http://127.0.0.1:$greeter_port/api/v1/greet?name="

start welcome-svc --upstreams "greet=127.0.0.1:$greeter_port"
welcome_port=$port
welcome_url="http://127.0.0.1:$welcome_port/api/v1/welcome"
expect "welcome through the typed client" 200 \
  '{"message":"hello, a string over 15 chars, visit 2"}' \
  -d '{"name":"a string over 15 chars","visit":2}' "$welcome_url"
expect "welcome with a bad JSON body" 400 \
  '{"error":"invalid_field","reason":"JSON body field '"'"'name'"'"': expected a string"}' \
  -d '{"name":5}' "$welcome_url"
expect "welcome without visit (a default initializer is not optional)" 400 \
  '{"error":"missing_field","reason":"JSON body field '"'"'visit'"'"' is required"}' \
  -d '{"name":"mesh"}' "$welcome_url"
expect "welcome when greeter refuses the name (a 4xx is no fallback's)" 502 \
  '{"error":"empty_name","reason":"the callee answered 422 empty_name: say who is to be greeted"}' \
  -d '{"name":"","visit":2}' "$welcome_url"

stop greeter-svc "$greeter_svc_pid"
expect "welcome with greeter-svc stopped (fallback)" 200 \
  '{"message":"hello, whoever you are (greeter unavailable), visit 2"}' \
  -d '{"name":"a string over 15 chars","visit":2}' "$welcome_url"
stop welcome-svc "$welcome_svc_pid"

bin_dir="$work/build-snippets"
start hello-svc
expect "the first service's greet" 200 '{"message":"hello, mesh"}' \
  "http://127.0.0.1:$port/api/v1/hello?name=mesh"
expect "the first service's binding" 400 \
  '{"error":"invalid_field","reason":"query parameter '"'"'delay_ms'"'"': '"'"'x'"'"' is not an integer"}' \
  "http://127.0.0.1:$port/api/v1/hello?name=mesh&delay_ms=x"
stop hello-svc "$hello_svc_pid"
start add-svc
expect "add-svc's snippet" 200 '3' "http://127.0.0.1:$port/api/v1/execute?l=1&r=2"
answer=$(curl -sS --max-time 10 -o /dev/null -w '%{http_code}' \
  "http://127.0.0.1:$port/api/v1/execute?l=9223372036854775807&r=1") || fail "add-svc: curl failed"
[ "$answer" = 422 ] || fail "add-svc's snippet answered $answer to an overflowing sum, not 422"
echo "readme.example: add-svc's snippet: 9223372036854775807 + 1 -> 422"
stop add-svc "$add_svc_pid"
echo "readme.example: the README's example and snippets build, run and answer as documented"
