#!/bin/sh
# tests/unit/test-ranged.sh - run test-ranged (ranged blob reads, registry/ranged.h) against
# Debian's docker-registry (the distribution registry: filesystem storage, a free 127.0.0.1
# port), directly and through a small proxy written here that can play the parts the
# registry does not: Basic auth, a redirect of blob GETs to a storage host ("localhost:PORT"
# instead of "127.0.0.1:PORT", so credentials must not follow) with pre-signed URLs that
# expire, and servers that refuse multi-range requests (400), serve only their first range,
# answer them with the whole blob, or ignore Range altogether.  Then the registry case of
# test-source-remote (a lazily read layer through registry/ranged.h).  Exit 77 (skip) when
# docker-registry or python3 is missing.  Logs are printed when the test fails.
set -u

REGISTRY=${OSSB_DOCKER_REGISTRY:-/usr/bin/docker-registry}
if [ ! -x "$REGISTRY" ] || ! command -v python3 >/dev/null 2>&1; then
        echo "1..0 # SKIP docker-registry (Debian package docker-registry) or python3 is not installed"
        exit 77
fi

T=$(mktemp -d /tmp/ossb-test-ranged-XXXXXX) || exit 1
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

wait_http() {
        python3 - "$1" <<'EOF'
import sys, time, urllib.request, urllib.error
for _ in range(100):
    try:
        urllib.request.urlopen(sys.argv[1], timeout=1)
        sys.exit(0)
    except urllib.error.HTTPError:
        sys.exit(0)
    except Exception:
        time.sleep(0.1)
sys.exit(1)
EOF
}

cat >"$T/proxy.py" <<'EOF'
"""A proxy in front of the registry for test-ranged.

Control: POST /_ctl/mode {"auth": bool, "redirect": bool, "norange": bool,
"multi": "400" | "first" | "full" | null, "break": N, "craft": "ok" | "bad"} (also clears
the log);
POST /_ctl/expire (pre-signed storage URLs issued so far stop working: 403);
GET /_ctl/log -> [{"path", "range", "auth", "status", "host"}].
"break": N breaks the next N blob answers after half of their body; "craft" answers
multi-range requests with a multipart body made here (see craft)."""
import base64, http.client, http.server, json, re, sys, threading, urllib.parse

UP = ("127.0.0.1", int(sys.argv[1]))
STATE = {"mode": {}, "log": [], "epoch": 1}
LOCK = threading.Lock()
HOP = ("connection", "keep-alive", "transfer-encoding", "content-length")
CRED = "Basic " + base64.b64encode(b"alice:alice-secret").decode()


class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        sys.stderr.write("proxy: " + (fmt % args) + "\n")

    def note(self, status):
        with LOCK:
            STATE["log"].append({"path": self.path, "range": self.headers.get("Range"), "status": status,
                                 "auth": self.headers.get("Authorization") is not None,
                                 "host": self.headers.get("Host")})

    def send(self, status, headers, body):
        self.note(status)
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.wfile.flush()

    def upstream(self, path, rng):
        c = http.client.HTTPConnection(UP[0], UP[1], timeout=60)
        c.request(self.command, path, headers={"Range": rng} if rng else {})
        r = c.getresponse()
        data = r.read()
        headers = [(k, v) for k, v in r.getheaders() if k.lower() not in HOP]
        c.close()
        return r.status, headers, data

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n)
        with LOCK:
            if self.path == "/_ctl/mode":
                STATE["mode"] = json.loads(body or b"{}")
                STATE["log"] = []
            elif self.path == "/_ctl/expire":
                STATE["epoch"] += 1
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self):
        if self.path == "/_ctl/log":
            with LOCK:
                data = json.dumps(STATE["log"]).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        with LOCK:
            mode = dict(STATE["mode"])
            epoch = STATE["epoch"]
        path = self.path
        if path.startswith("/_storage/"):
            if self.headers.get("Authorization"):
                return self.send(400, [], b"credentials sent to the storage host")
            u = urllib.parse.urlparse(path)
            if urllib.parse.parse_qs(u.query).get("sig") != [str(epoch)]:
                return self.send(403, [], b"<Error><Code>AccessDenied</Code><Message>expired</Message></Error>")
            path = u.path[len("/_storage"):]
        else:
            if mode.get("auth") and self.headers.get("Authorization") != CRED:
                return self.send(401, [("WWW-Authenticate", 'Basic realm="ranged-test"')], b"{}")
            if mode.get("redirect") and re.match(r"^/v2/.+/blobs/sha256:", path):
                loc = "http://localhost:%d/_storage%s?sig=%d" % (self.server.server_address[1], path, epoch)
                return self.send(307, [("Location", loc)], b"")
        rng = self.headers.get("Range")
        multi = rng is not None and "," in rng
        if mode.get("norange"):
            rng = None
        elif multi and mode.get("multi") == "400":
            return self.send(400, [], b"multiple ranges are not supported")
        elif multi and mode.get("multi") == "first":
            rng = rng.split(",")[0]
        elif multi and mode.get("multi") == "full":
            rng = None
        if multi and mode.get("craft"):
            return self.craft(path, rng, mode.get("craft"))
        status, headers, data = self.upstream(path, rng)
        brk = False
        with LOCK:
            if STATE["mode"].get("break", 0) > 0 and status in (200, 206) and len(data) > 16 and "/blobs/" in path:
                STATE["mode"]["break"] -= 1
                brk = True
        if brk:
            self.note(status)
            self.send_response(status)
            for k, v in headers:
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.send(status, headers, data)

    def craft(self, path, rng, how):
        """A multipart/byteranges answer made here: a quoted boundary, a preamble, transport
        padding, lower-case part headers, the parts in reverse order; "bad" leaves out the
        Content-Range of the parts."""
        b = "sep:123=abc"
        body = b"a preamble to ignore\r\n"
        total = None
        for spec in reversed(rng[len("bytes="):].split(",")):
            status, headers, data = self.upstream(path, "bytes=" + spec)
            cr = dict((k.lower(), v) for k, v in headers)["content-range"]
            body += ("\r\n--%s  \r\ncontent-type: application/octet-stream\r\n" % b).encode()
            if how != "bad":
                body += ("content-range: %s\r\n" % cr).encode()
            body += b"\r\n" + data
        body += ("\r\n--%s--\r\nan epilogue\r\n" % b).encode()
        return self.send(206, [("Content-Type", 'multipart/byteranges; boundary="%s"' % b)], body)

    do_HEAD = do_GET


srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
srv.daemon_threads = True
with open(sys.argv[2] + ".tmp", "w") as f:
    f.write("%d\n" % srv.server_address[1])
import os
os.rename(sys.argv[2] + ".tmp", sys.argv[2])
srv.serve_forever()
EOF

PORT=$(free_port)
mkdir -p "$T/registry"
cat >"$T/registry/config.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $T/registry/data
http:
  addr: 127.0.0.1:$PORT
EOF
"$REGISTRY" serve "$T/registry/config.yml" >"$T/registry/log" 2>&1 &
PIDS="$PIDS $!"
python3 "$T/proxy.py" "$PORT" "$T/proxy.port" >"$T/proxy.log" 2>&1 &
PIDS="$PIDS $!"

ok=1
wait_http "http://127.0.0.1:$PORT/v2/" || ok=0
for _ in $(seq 1 100); do
        [ -s "$T/proxy.port" ] && break
        sleep 0.1
done
[ -s "$T/proxy.port" ] || ok=0
if [ "$ok" != 1 ]; then
        echo "Bail out! the test registry or proxy did not start"
        sed 's|^|# registry: |' "$T/registry/log"
        sed 's|^|# proxy: |' "$T/proxy.log"
        exit 1
fi

mkdir -p "$T/work" "$T/docker-config"
DOCKER_CONFIG="$T/docker-config" OSSB_TEST_REGISTRY="127.0.0.1:$PORT" \
        OSSB_TEST_PROXY="127.0.0.1:$(cat "$T/proxy.port")" OSSB_TEST_TMP="$T/work" \
        ./tests/unit/test-ranged
rc=$?
# the remote layer source (fuse/source-remote.h) reading through this registry
if [ "$rc" = 0 ] && [ -x ./tests/unit/test-source-remote ]; then
        DOCKER_CONFIG="$T/docker-config" OSSB_TEST_REGISTRY="127.0.0.1:$PORT" OSSB_TEST_REGISTRY_ONLY=1 \
                OSSB_TEST_TMP="$T/work" ./tests/unit/test-source-remote
        rc=$?
fi
if [ "$rc" != 0 ] && [ "$rc" != 77 ]; then
        tail -n 20 "$T/registry/log" | sed 's|^|# registry: |'
        tail -n 40 "$T/proxy.log" | sed 's|^|# proxy: |'
fi
exit "$rc"
