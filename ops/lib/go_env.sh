# The Go environment of the ops/build-*.sh scripts, which build upstream tools from
# Go modules. Source it after defining `fail MESSAGE`.
#   GO         the go binary (default: /usr/local/go/bin/go, else the one on PATH)
#   BUILD_JOBS go build -p (default 2: the machine's size)

if [ -z "${GO:-}" ]; then
  if [ -x /usr/local/go/bin/go ]; then GO=/usr/local/go/bin/go; else GO="$(command -v go || true)"; fi
fi
[ -n "$GO" ] && [ -x "$GO" ] || fail "no Go toolchain found (set GO=/path/to/go)"
export GOTOOLCHAIN=local # never download another toolchain
export CGO_ENABLED=0     # as upstream release builds
export GOFLAGS="${GOFLAGS:+$GOFLAGS }-mod=readonly"
JOBS="${BUILD_JOBS:-2}"

# Consul 1.15 needs Go 1.20 and Prometheus 2.55 Go 1.22; say so instead of failing
# later with a compiler error.
go_version="$("$GO" env GOVERSION 2>/dev/null || true)"
if [[ "$go_version" =~ ^go1\.([0-9]+) ]] && [ "${BASH_REMATCH[1]}" -lt 22 ]; then
  fail "$GO is $go_version; the Go module builds need Go 1.22 or newer"
fi
