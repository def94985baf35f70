#!/usr/bin/env python3
"""tests/unit/registry-fault-server.py - a fault-injecting proxy in front of a real registry,
for the registry client's unit tests (test-registry-client.sh starts it).

Usage: registry-fault-server.py --upstream HOST:PORT [--listen ADDR] [--port-file FILE]

Every request is passed through to the upstream registry (the Host header is kept, so the
registry's Location URLs point back here) unless a rule of the current plan matches it.

Control API (JSON bodies):
  POST /_fault/plan  {"rules": [RULE...], "auth": AUTH or null}  replace the plan, clear the log
  GET  /_fault/log   [{"method", "path", "range", "auth", "host", "form"}...] requests seen

RULE: {"method": "GET", "path": "REGEX", "times": N (default 1, -1: always), "action": A, ...}
  status     answer "code" with "headers" ({}) and "body" (text) instead of proxying
  drop       proxy, announce the whole body, send "after" bytes of it and close the connection
  truncate   proxy, announce and send only "after" bytes of the body
  corrupt    proxy, with one byte of the body changed
  no_range   proxy without the request's Range header (the registry sends the whole blob)
  bad_range  answer 206 with the whole blob and a Content-Range that starts at 0
  redirect   answer 307 to the same path under /_redirected/ on "host" ("localhost:PORT")
  big        answer 200 with a manifest-typed body of "size" bytes ("no_length": true sends
             it without Content-Length and closes the connection)
  header     proxy, then set the response headers in "headers"

AUTH: {"type": "basic" | "bearer", "users": {"NAME": {"password": "...", "push": true}},
       "anonymous_pull": false, "expires_in": 300, "refresh_tokens": {"TOKEN": "NAME"}}
  Requests under /v2/ then need credentials: Basic, or Bearer tokens from /_fault/token
  (GET with Basic auth or anonymous, or a POST form with grant_type=refresh_token), which
  grant pull to users (and to anyone with anonymous_pull) and push to users with "push".
  /_redirected/ requests are proxied without any check (a storage backend).
Rules apply after the auth check of /v2/ requests, and also to /_fault/token and /_redirected/.
"""

import argparse
import base64
import http.client
import http.server
import json
import os
import re
import secrets
import socket
import sys
import threading
import time
import urllib.parse

HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade",
       "content-length"}

STATE = {"rules": [], "auth": None, "log": [], "tokens": {}}
LOCK = threading.Lock()
UPSTREAM = ("127.0.0.1", 5000)


def repo_action(method, path):
    """(repository name, "pull" or "push") of a /v2/ API path; (None, action) for /v2/."""
    m = re.match(r"^/v2/(.+?)/(manifests|blobs|tags)/", path)
    action = "pull" if method in ("GET", "HEAD") else "push"
    return (m.group(1) if m else None), action


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # quiet; the test reads /_fault/log
        sys.stderr.write("fault-server: " + (fmt % args) + "\n")

    # --- plumbing -------------------------------------------------------------------------
    def read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = b""
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length", "0") or "0")
        return self.rfile.read(n) if n > 0 else b""

    def answer(self, code, headers=None, body=b"", length=None, close=False):
        self.send_response(code)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if length is not False:
            self.send_header("Content-Length", str(len(body) if length is None else length))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)
        self.wfile.flush()

    def json_answer(self, code, obj, headers=None):
        h = {"Content-Type": "application/json"}
        h.update(headers or {})
        self.answer(code, h, json.dumps(obj).encode())

    def upstream(self, path, body, strip_range=False):
        conn = http.client.HTTPConnection(UPSTREAM[0], UPSTREAM[1], timeout=60)
        hdrs = {}
        for k, v in self.headers.items():
            kl = k.lower()
            if kl in HOP or kl == "authorization" or (strip_range and kl == "range") or kl == "expect":
                continue
            hdrs[k] = v
        if body or self.command in ("PUT", "POST", "PATCH"):
            hdrs["Content-Length"] = str(len(body))
        conn.request(self.command, path, body=body if body else None, headers=hdrs)
        resp = conn.getresponse()
        data = resp.read()
        headers = [(k, v) for k, v in resp.getheaders() if k.lower() not in HOP]
        length = resp.getheader("Content-Length")
        conn.close()
        return resp.status, headers, data, length

    def relay(self, status, headers, data, length, override=None):
        self.send_response(status)
        over = {k.lower(): v for k, v in (override or {}).items()}
        for k, v in headers:
            if k.lower() not in over:
                self.send_header(k, v)
        for k, v in (override or {}).items():
            self.send_header(k, v)
        if self.command == "HEAD" and length is not None:
            self.send_header("Content-Length", length)
        else:
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        self.wfile.flush()

    # --- auth emulation -------------------------------------------------------------------
    def challenge(self, auth, name, action, error=None):
        if auth["type"] == "basic":
            return {"WWW-Authenticate": 'Basic realm="fault-registry"'}
        host = self.headers.get("Host", "127.0.0.1")
        scope = "repository:%s:%s" % (name, "pull,push" if action == "push" else "pull") if name else ""
        v = 'Bearer realm="http://%s/_fault/token",service="fault-registry"' % host
        if scope:
            v += ',scope="%s"' % scope
        if error:
            v += ',error="%s"' % error
        return {"WWW-Authenticate": v}

    def basic_user(self, auth):
        h = self.headers.get("Authorization", "")
        if not h.startswith("Basic "):
            return None, False
        try:
            user, _, pw = base64.b64decode(h[6:]).decode().partition(":")
        except Exception:
            return None, True
        u = auth["users"].get(user)
        return (user if u and u["password"] == pw else None), True

    def check_auth(self, auth):
        """True when the request may go on; else an answer was sent."""
        name, action = repo_action(self.command, self.path)
        deny = {"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]}
        if auth["type"] == "basic":
            user, _ = self.basic_user(auth)
            if user is None:
                self.json_answer(401, deny, self.challenge(auth, name, action))
                return False
            if action == "push" and name and not auth["users"][user].get("push"):
                self.json_answer(403, {"errors": [{"code": "DENIED", "message": "requested access to the resource is denied"}]})
                return False
            return True
        h = self.headers.get("Authorization", "")
        if not h.startswith("Bearer "):
            self.json_answer(401, deny, self.challenge(auth, name, action))
            return False
        with LOCK:
            tok = STATE["tokens"].get(h[7:])
        if tok is None or tok["expires"] < time.time():
            self.json_answer(401, deny, self.challenge(auth, name, action, "invalid_token"))
            return False
        if name and "repository:%s:%s" % (name, action) not in tok["grants"]:
            self.json_answer(401, {"errors": [{"code": "DENIED", "message": "insufficient scope"}]},
                             self.challenge(auth, name, action, "insufficient_scope"))
            return False
        return True

    def token(self, auth, body):
        q = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query)
        user = None
        if self.command == "POST":
            form = urllib.parse.parse_qs(body.decode())
            if form.get("grant_type") != ["refresh_token"] or form.get("client_id") != ["ossb"]:
                return self.json_answer(400, {"error": "unsupported_grant_type"})
            user = auth.get("refresh_tokens", {}).get(form.get("refresh_token", [""])[0])
            if user is None:
                return self.json_answer(401, {"errors": [{"code": "UNAUTHORIZED", "message": "bad refresh token"}]})
            scopes = " ".join(form.get("scope", [])).split()
        else:
            user, given = self.basic_user(auth)
            if given and user is None:
                return self.json_answer(401, {"errors": [{"code": "UNAUTHORIZED", "message": "bad credentials"}]})
            if user is None and not auth.get("anonymous_pull"):
                return self.json_answer(401, {"errors": [{"code": "UNAUTHORIZED", "message": "anonymous access denied"}]})
            scopes = q.get("scope", [])
        grants = set()
        for s in scopes:
            parts = s.split(":")
            if len(parts) != 3 or parts[0] != "repository":
                continue
            for a in parts[2].split(","):
                if a == "pull" or (a == "push" and user and auth["users"][user].get("push")):
                    grants.add("repository:%s:%s" % (parts[1], a))
        tok = secrets.token_hex(16)
        expires = auth.get("expires_in", 300)
        with LOCK:
            STATE["tokens"][tok] = {"grants": grants, "expires": time.time() + expires, "user": user}
        key = "access_token" if self.command == "POST" else "token"
        self.json_answer(200, {key: tok, "expires_in": expires})

    # --- rules ----------------------------------------------------------------------------
    def take_rule(self):
        with LOCK:
            for r in STATE["rules"]:
                if r.get("times", 1) == 0:
                    continue
                if r.get("method", self.command) != self.command:
                    continue
                if not re.search(r.get("path", ""), self.path):
                    continue
                if r.get("times", 1) > 0:
                    r["times"] = r.get("times", 1) - 1
                return dict(r)
        return None

    def apply(self, rule, body):
        a = rule["action"]
        if a == "status":
            return self.answer(rule.get("code", 500), rule.get("headers", {}), rule.get("body", "").encode())
        if a == "redirect":
            return self.answer(307, {"Location": "http://%s/_redirected%s" % (rule["host"], self.path)})
        if a == "big":
            data = b'{"schemaVersion":2,"pad":"' + b"a" * rule["size"] + b'"}'
            h = {"Content-Type": "application/vnd.oci.image.manifest.v1+json"}
            if rule.get("no_length"):
                return self.answer(200, h, data, length=False, close=True)
            return self.answer(200, h, data)
        status, headers, data, length = self.upstream(self.path, body, strip_range=a in ("no_range", "bad_range"))
        if a == "drop" and self.command != "HEAD":
            self.send_response(status)
            for k, v in headers:
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: rule["after"]])
            self.wfile.flush()
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return None
        if a == "truncate":
            return self.relay(status, headers, data[: rule["after"]], None)
        if a == "corrupt" and data:
            i = len(data) // 2
            data = data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1:]
        if a == "bad_range" and status == 200:
            over = {"Content-Range": "bytes 0-%d/%d" % (len(data) - 1, len(data))}
            return self.relay(206, headers, data, None, over)
        return self.relay(status, headers, data, length, rule.get("headers") if a == "header" else None)

    # --- dispatch -------------------------------------------------------------------------
    def control(self, body):
        if self.path == "/_fault/plan" and self.command == "POST":
            plan = json.loads(body or b"{}")
            with LOCK:
                STATE["rules"] = plan.get("rules", [])
                STATE["auth"] = plan.get("auth")
                STATE["log"] = []
                STATE["tokens"] = {}
            return self.json_answer(200, {"ok": True})
        if self.path == "/_fault/log":
            with LOCK:
                log = list(STATE["log"])
            return self.json_answer(200, log)
        return self.json_answer(404, {"error": "unknown control path"})

    def record(self, body):
        auth = self.headers.get("Authorization")
        form = None
        if self.path.startswith("/_fault/token") and self.command == "POST":
            form = {k: v[0] for k, v in urllib.parse.parse_qs(body.decode()).items() if k != "refresh_token"}
        entry = {"method": self.command, "path": self.path, "range": self.headers.get("Range"),
                 "auth": auth.split(" ")[0] if auth else None, "host": self.headers.get("Host"), "form": form}
        with LOCK:
            STATE["log"].append(entry)

    def handle_any(self):
        body = self.read_body()
        if self.path.startswith("/_fault/") and not self.path.startswith("/_fault/token"):
            return self.control(body)
        self.record(body)
        with LOCK:
            auth = STATE["auth"]
        if auth and self.path.startswith("/v2/") and not self.check_auth(auth):
            return None
        rule = self.take_rule()
        if rule:
            return self.apply(rule, body)
        if self.path.startswith("/_fault/token"):
            if not auth:
                return self.json_answer(404, {"error": "no auth configured"})
            return self.token(auth, body)
        if self.path.startswith("/_redirected/"):
            status, headers, data, length = self.upstream(self.path[len("/_redirected"):], body)
            return self.relay(status, headers, data, length)
        status, headers, data, length = self.upstream(self.path, body)
        return self.relay(status, headers, data, length)

    do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = handle_any


def main():
    global UPSTREAM
    ap = argparse.ArgumentParser(description="fault-injecting registry proxy for tests")
    ap.add_argument("--upstream", required=True, help="HOST:PORT of the registry")
    ap.add_argument("--listen", default="127.0.0.1")
    ap.add_argument("--port-file", help="write the chosen port here once listening")
    args = ap.parse_args()
    host, _, port = args.upstream.rpartition(":")
    UPSTREAM = (host, int(port))
    srv = http.server.ThreadingHTTPServer((args.listen, 0), Handler)
    srv.daemon_threads = True
    if args.port_file:
        with open(args.port_file + ".tmp", "w") as f:
            f.write("%d\n" % srv.server_address[1])
        os.rename(args.port_file + ".tmp", args.port_file)
    srv.serve_forever()


if __name__ == "__main__":
    main()
