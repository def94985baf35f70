"""A reverse proxy between a client and a registry that injects faults (Python standard library).

    proxy = FaultProxy("127.0.0.1:5000").start()     # upstream host:port (plain HTTP)
    proxy.host                                       # "127.0.0.1:PORT" to give the client
    proxy.add(Fault("drop", method="GET", path=r"/blobs/sha256:abc", after=65536))
    proxy.add(Fault("status", path=r"/manifests/", status=503, times=2))
    proxy.add(Fault("status", path=r"/blobs/", status=429, headers={"Retry-After": "1"}))
    ...
    proxy.count("GET", r"/blobs/")                   # requests seen (whatever was answered)
    proxy.log                                        # [Request(...)] in arrival order
    proxy.stop()

A Fault matches a request by method (None: any) and a regular expression searched in the path
with its query; it counts the requests it matched (per rule, or per distinct path with
per_path=True) and fires on the attempts listed in `attempts` (1-based), by default on the
first `times` (default 1; None: always).  The first rule that fires decides.  Actions:

  drop      forward, send the headers (full Content-Length) and the first `after` body bytes,
            then reset the connection (RST)
  truncate  the same, but close cleanly (FIN): the body is shorter than Content-Length promised
  status    answer `status` with `headers` and `body` (default: a registry-style JSON error)
            without asking the registry; e.g. 500, 503, 429 with headers={"Retry-After": "1"}
  respond   same as status (meant for serving a made-up 200 body: a malformed manifest...)
  corrupt   forward, but flip one byte of the body (at `offset`, default the middle)
  delay     wait `seconds`, then forward
  refuse    close the connection without answering

Everything else is forwarded unchanged: methods with bodies (POST/PATCH/PUT uploads, chunked
request bodies re-sent with a Content-Length), Range requests (206 answers pass through), and
redirects/Location headers naming the registry are rewritten to name the proxy, so an upload
keeps going through it.  Connections are HTTP/1.1 keep-alive like a registry's.
"""
import http.client
import json
import re
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
              "transfer-encoding", "upgrade", "expect", "content-length"}


@dataclass
class Fault:
    action: str
    method: str = None
    path: str = ".*"
    times: int = 1
    attempts: object = None  # iterable of 1-based attempt numbers; wins over times
    per_path: bool = False
    after: int = 0
    status: int = 503
    headers: dict = field(default_factory=dict)
    body: bytes = None
    offset: int = None
    seconds: float = 0.0
    seen: dict = field(default_factory=dict)  # count key -> matched requests so far
    fired: int = 0

    def __post_init__(self):
        assert self.action in ("drop", "truncate", "status", "respond", "corrupt", "delay", "refuse"), self.action
        self._re = re.compile(self.path)

    def matches(self, method, path):
        if self.method and self.method.upper() != method.upper():
            return False
        return bool(self._re.search(path))

    def should_fire(self, path):
        key = path if self.per_path else ""
        n = self.seen.get(key, 0) + 1
        self.seen[key] = n
        if self.attempts is not None:
            hit = n in set(self.attempts)
        else:
            hit = self.times is None or n <= self.times
        if hit:
            self.fired += 1
        return hit


@dataclass
class Request:
    method: str
    path: str
    range: str
    status: int
    fault: str
    sent: int  # body bytes sent to the client
    at: float  # time.monotonic() when the request arrived


class FaultProxy:
    def __init__(self, upstream, host="127.0.0.1"):
        self.upstream = upstream  # "host:port"
        self.bind_host = host
        self.faults = []
        self.log = []
        self._lock = threading.Lock()
        self.httpd = None
        self.thread = None

    @property
    def port(self):
        return self.httpd.server_address[1]

    @property
    def host(self):
        return f"{self.bind_host}:{self.port}"

    def add(self, fault):
        with self._lock:
            self.faults.append(fault)
        return fault

    def clear(self):
        """Forget every fault and the request log."""
        with self._lock:
            self.faults = []
            self.log = []

    def requests(self, method=None, path=None):
        rx = re.compile(path) if path else None
        with self._lock:
            return [r for r in self.log if (method is None or r.method == method) and (rx is None or rx.search(r.path))]

    def count(self, method=None, path=None):
        return len(self.requests(method, path))

    def summary(self):
        with self._lock:
            return "\n".join(f"{r.method} {r.path} range={r.range or '-'} -> {r.status} {r.fault or ''} "
                             f"({r.sent} bytes)" for r in self.log)

    def _pick(self, method, path):
        with self._lock:
            for f in self.faults:
                if f.matches(method, path) and f.should_fire(path):
                    return f
        return None

    def _record(self, req):
        with self._lock:
            self.log.append(req)

    def start(self):
        handler = type("Handler", (_Handler,), {"proxy": self})
        self.httpd = ThreadingHTTPServer((self.bind_host, 0), handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="faultproxy", daemon=True)
        self.thread.start()
        return self

    def stop(self):
        if self.httpd:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.httpd = None


def error_body(status):
    code = {429: "TOOMANYREQUESTS", 500: "UNKNOWN", 502: "UNKNOWN", 503: "UNAVAILABLE"}.get(status, "UNKNOWN")
    return json.dumps({"errors": [{"code": code, "message": f"injected by the test proxy ({status})"}]}).encode()


class _Handler(BaseHTTPRequestHandler):
    proxy = None
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def _read_body(self):
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            out = bytearray()
            while True:
                line = self.rfile.readline()
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else None

    def _abort(self, rst):
        self.close_connection = True
        try:
            if rst:
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            else:
                self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.connection.close()

    def _rewrite(self, value):
        return value.replace(self.proxy.upstream, self.proxy.host)

    def _handle(self):
        proxy = self.proxy
        t0 = time.monotonic()
        method, path = self.command, self.path
        rng = self.headers.get("Range")
        body = self._read_body()
        fault = proxy._pick(method, path)
        action = fault.action if fault else None

        def record(status, sent):
            proxy._record(Request(method, path, rng, status, action, sent, t0))

        if action == "refuse":
            record(0, 0)
            return self._abort(rst=True)
        if action in ("status", "respond"):
            data = fault.body if fault.body is not None else (error_body(fault.status) if fault.status >= 400 else b"")
            self.send_response(fault.status)
            hdrs = {"Content-Type": "application/json"} if fault.body is None else {}
            hdrs.update(fault.headers)
            for k, v in hdrs.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            record(fault.status, len(data))  # before answering: the client may look at the log next
            self.end_headers()
            if method != "HEAD":
                self.wfile.write(data)
            return
        if action == "delay":
            time.sleep(fault.seconds)

        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        conn = http.client.HTTPConnection(proxy.upstream, timeout=60)
        try:
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read() if method != "HEAD" else b""
            status, reason, rheaders = resp.status, resp.reason, resp.getheaders()
        except OSError as e:
            record(502, 0)
            data = error_body(502)
            self.send_response(502, f"upstream: {e}")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        finally:
            conn.close()

        length = None
        self.send_response(status, reason)
        for k, v in rheaders:
            kl = k.lower()
            if kl in HOP_BY_HOP:
                if kl == "content-length":
                    length = v
                continue
            if kl in ("location", "www-authenticate", "link"):
                v = self._rewrite(v)
            self.send_header(k, v)
        if method == "HEAD":
            if length is not None:
                self.send_header("Content-Length", length)
            record(status, 0)
            self.end_headers()
            return
        if action == "corrupt" and data:
            i = fault.offset if fault.offset is not None else len(data) // 2
            data = data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1:]
        self.send_header("Content-Length", str(len(data)))
        if action in ("drop", "truncate") and len(data) > fault.after:
            record(status, fault.after)
            self.end_headers()
            self.wfile.write(data[:fault.after])
            return self._abort(rst=(action == "drop"))
        record(status, len(data))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _handle
