#!/bin/sh
# tests/unit/test-registry-client.sh - run test-registry-client against real registries.
#
# Starts Debian's docker-registry (the distribution registry) on free 127.0.0.1 ports: a plain
# one, one with htpasswd Basic auth (when htpasswd is installed), and a TLS one with a CA made
# by certtool (when certtool is installed; it listens on a non-loopback address of this machine
# so that its certificate is really verified); then the fault-injecting proxy
# (registry-fault-server.py) in front of the plain one.  Exit 77 (skip) only when
# docker-registry or python3 is missing.  Logs are printed when the test fails.
set -u

REGISTRY=${OSSB_DOCKER_REGISTRY:-/usr/bin/docker-registry}
if [ ! -x "$REGISTRY" ] || ! command -v python3 >/dev/null 2>&1; then
        echo "1..0 # SKIP docker-registry (Debian package docker-registry) or python3 is not installed"
        exit 77
fi
SRC=${srcdir:-.}
FAULT="$SRC/tests/unit/registry-fault-server.py"
[ -f "$FAULT" ] || FAULT="$(dirname "$0")/registry-fault-server.py"

T=$(mktemp -d /tmp/ossb-test-registry-XXXXXX) || exit 1
PIDS=""
cleanup() {
        for p in $PIDS; do
                kill "$p" 2>/dev/null
        done
        for p in $PIDS; do
                wait "$p" 2>/dev/null
        done
        rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

free_port() {
        python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# wait_http URL: until something answers (at most ~10 s)
wait_http() {
        python3 - "$1" <<'EOF'
import ssl, sys, time, urllib.request, urllib.error
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
for _ in range(100):
    try:
        urllib.request.urlopen(sys.argv[1], timeout=1, context=ctx)
        sys.exit(0)
    except urllib.error.HTTPError:
        sys.exit(0)
    except Exception:
        time.sleep(0.1)
sys.exit(1)
EOF
}

# wait_tcp HOST:PORT: until it accepts connections (the TLS registry wants client certificates)
wait_tcp() {
        python3 - "$1" <<'EOF'
import socket, sys, time
host, _, port = sys.argv[1].rpartition(":")
for _ in range(100):
    try:
        socket.create_connection((host, int(port)), timeout=1).close()
        sys.exit(0)
    except OSError:
        time.sleep(0.1)
sys.exit(1)
EOF
}

# start_registry NAME ADDR EXTRA-YAML
start_registry() {
        mkdir -p "$T/$1"
        cat >"$T/$1/config.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $T/$1/data
  delete:
    enabled: true
http:
  addr: $2
$3
EOF
        "$REGISTRY" serve "$T/$1/config.yml" >"$T/$1/log" 2>&1 &
        PIDS="$PIDS $!"
}

PLAIN_PORT=$(free_port)
start_registry plain "127.0.0.1:$PLAIN_PORT" ""

BASIC=""
if command -v htpasswd >/dev/null 2>&1; then
        BASIC_PORT=$(free_port)
        htpasswd -Bbn alice 'alice-secret-pw' >"$T/htpasswd" 2>/dev/null
        start_registry basic "127.0.0.1:$BASIC_PORT" "auth:
  htpasswd:
    realm: ossb-test
    path: $T/htpasswd"
        BASIC="127.0.0.1:$BASIC_PORT"
fi

TLS=""
TLS_IP=$(hostname -I 2>/dev/null | tr ' ' '\n' | grep -E '^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$' | grep -v '^127\.' | head -n 1)
if command -v certtool >/dev/null 2>&1 && [ -n "$TLS_IP" ]; then
        TLS_PORT=$(free_port)
        mkdir -p "$T/pki" "$T/certs.d/$TLS_IP:$TLS_PORT"
        cat >"$T/pki/ca.tmpl" <<EOF
cn = ossb test CA
ca
cert_signing_key
expiration_days = 2
EOF
        cat >"$T/pki/server.tmpl" <<EOF
cn = $TLS_IP
ip_address = $TLS_IP
tls_www_server
expiration_days = 2
EOF
        cat >"$T/pki/client.tmpl" <<EOF
cn = ossb client
tls_www_client
expiration_days = 2
EOF
        if certtool --generate-privkey --outfile "$T/pki/ca.key" >/dev/null 2>&1 &&
                certtool --generate-self-signed --load-privkey "$T/pki/ca.key" --template "$T/pki/ca.tmpl" \
                        --outfile "$T/pki/ca.crt" >/dev/null 2>&1 &&
                certtool --generate-privkey --outfile "$T/pki/server.key" >/dev/null 2>&1 &&
                certtool --generate-certificate --load-privkey "$T/pki/server.key" --load-ca-certificate "$T/pki/ca.crt" \
                        --load-ca-privkey "$T/pki/ca.key" --template "$T/pki/server.tmpl" \
                        --outfile "$T/pki/server.crt" >/dev/null 2>&1 &&
                certtool --generate-privkey --outfile "$T/pki/client.key" >/dev/null 2>&1 &&
                certtool --generate-certificate --load-privkey "$T/pki/client.key" --load-ca-certificate "$T/pki/ca.crt" \
                        --load-ca-privkey "$T/pki/ca.key" --template "$T/pki/client.tmpl" \
                        --outfile "$T/pki/client.crt" >/dev/null 2>&1; then
                start_registry tls "$TLS_IP:$TLS_PORT" "  tls:
    certificate: $T/pki/server.crt
    key: $T/pki/server.key
    clientcas:
      - $T/pki/ca.crt"
                cp "$T/pki/ca.crt" "$T/certs.d/$TLS_IP:$TLS_PORT/ca.crt"
                cp "$T/pki/client.crt" "$T/certs.d/$TLS_IP:$TLS_PORT/client.cert"
                cp "$T/pki/client.key" "$T/certs.d/$TLS_IP:$TLS_PORT/client.key"
                TLS="$TLS_IP:$TLS_PORT"
        else
                echo "# certtool failed: no TLS registry" >&2
        fi
fi

python3 "$FAULT" --upstream "127.0.0.1:$PLAIN_PORT" --port-file "$T/fault.port" >"$T/fault.log" 2>&1 &
PIDS="$PIDS $!"

ok=1
wait_http "http://127.0.0.1:$PLAIN_PORT/v2/" || ok=0
[ -z "$BASIC" ] || wait_http "http://$BASIC/v2/" || ok=0
[ -z "$TLS" ] || wait_tcp "$TLS" || TLS=""
for _ in $(seq 1 100); do
        [ -s "$T/fault.port" ] && break
        sleep 0.1
done
[ -s "$T/fault.port" ] || ok=0
if [ "$ok" != 1 ]; then
        echo "Bail out! the test registries did not start"
        for f in "$T"/*/log "$T/fault.log"; do
                [ -f "$f" ] && sed "s|^|# $f: |" "$f"
        done
        exit 1
fi
FAULT_ADDR="127.0.0.1:$(cat "$T/fault.port")"

mkdir -p "$T/work"
OSSB_TEST_REGISTRY="127.0.0.1:$PLAIN_PORT" OSSB_TEST_FAULT="$FAULT_ADDR" OSSB_TEST_BASIC="$BASIC" \
        OSSB_TEST_TLS="$TLS" OSSB_TEST_CERTS="$T/certs.d" OSSB_TEST_TMP="$T/work" \
        ./tests/unit/test-registry-client
rc=$?
if [ "$rc" != 0 ] && [ "$rc" != 77 ]; then
        for f in "$T"/*/log "$T/fault.log"; do
                [ -f "$f" ] && tail -n 15 "$f" | sed "s|^|# $f: |"
        done
fi
exit "$rc"
