#!/usr/bin/env bash
# tests/tools/make-test-ca.sh: make a throwaway test CA and a server certificate
# for 127.0.0.1, ::1 and localhost, with the openssl CLI (tests only; never
# commit the output).
#
#   bash tests/tools/make-test-ca.sh DIR [DAYS=2] [NAME...]
#
# Each NAME is one more DNS name of the server certificate (the compose test
# serves example.com from its provider stand-in).
#
# Writes into DIR (created if missing):
#   ca.pem      the CA certificate: give it to clients (curl --cacert DIR/ca.pem)
#   ca.key      the CA key
#   server.pem  the server certificate followed by the CA certificate (a chain,
#               as `origin --cert` and HAProxy's `crt` want it)
#   server.key  the server key
# Keys are P-256 (fast to make and to handshake). Prints nothing on success.
set -euo pipefail

dir=${1:?usage: make-test-ca.sh DIR [DAYS]}
days=${2:-2}
extra_names=
for name in "${@:3}"; do
    [[ $name =~ ^[A-Za-z0-9.-]+$ ]] || { echo "make-test-ca.sh: bad name: $name" >&2; exit 1; }
    extra_names+=",DNS:$name"
done
command -v openssl >/dev/null 2>&1 || { echo "make-test-ca.sh: openssl not installed" >&2; exit 1; }
mkdir -p "$dir"
cd "$dir"
umask 077

log=$(mktemp)
trap 'rm -f "$log" server.csr server.ext ca.srl' EXIT
run() {
    if ! "$@" >>"$log" 2>&1; then
        echo "make-test-ca.sh: failed: $*" >&2
        cat "$log" >&2
        exit 1
    fi
}

run openssl ecparam -name prime256v1 -genkey -noout -out ca.key
run openssl req -x509 -new -key ca.key -sha256 -days "$days" -subj "/CN=gw test CA $$" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out ca.pem

run openssl ecparam -name prime256v1 -genkey -noout -out server.key
run openssl req -new -key server.key -subj "/CN=localhost" -out server.csr
cat >server.ext <<EOF
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost$extra_names
EOF
run openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -sha256 \
    -days "$days" -extfile server.ext -out server.crt
cat server.crt ca.pem >server.pem
rm -f server.crt
chmod 644 ca.pem server.pem server.key # throwaway: readable by any test process
