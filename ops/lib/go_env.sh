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
