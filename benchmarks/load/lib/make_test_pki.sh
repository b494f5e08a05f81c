#!/usr/bin/env bash
# Throwaway PKI for the nginx stream TLS pair in sidecar_pairs.sh: a CA and two EC
# P-256 leaves it signed (the key type Consul's built-in CA issues), valid for a day.
#   make_test_pki.sh DIR  ->  DIR/{ca,server,client}.{crt,key}
# server.crt names backend.bench and 127.0.0.1; client.crt is for client auth.
set -euo pipefail
dir="$1"
mkdir -p "$dir"
cd "$dir"
ec() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1"; }

ec ca.key
openssl req -x509 -new -key ca.key -sha256 -days 1 -subj "/CN=sidecar-bench CA" -out ca.crt \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"

# leaf NAME CN EXTENSIONS
leaf() {
  ec "$1.key"
  openssl req -new -key "$1.key" -subj "/CN=$2" -out "$1.csr"
  printf '%s\n' "$3" >"$1.ext"
  openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -sha256 -days 1 \
    -extfile "$1.ext" -out "$1.crt"
}
leaf server backend.bench "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=DNS:backend.bench,IP:127.0.0.1"
leaf client client.bench "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth
subjectAltName=DNS:client.bench"
