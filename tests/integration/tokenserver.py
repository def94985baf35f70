"""A token server for the registry tests (the Docker registry token authentication spec), with
the Python standard library plus Debian's python3-jwt and python3-cryptography.

    ts = TokenServer(users={"pusher": User("pw", {"*": ["pull", "push"]})},
                     anonymous={"public/*": ["pull"]})
    ts.start()          # threaded HTTP server on a free 127.0.0.1 port
    ts.realm            # http://127.0.0.1:PORT/token  (the registry's auth.token.realm)
    ts.cert_path        # PEM of the signing certificate (the registry's rootcertbundle)
    ts.stop()

GET /token?service=S&scope=repository:NAME:ACTIONS[&scope=...][&offline_token=true]
    Basic auth with a user of `users` (wrong password: 401), or anonymous.  Answers
    {"token", "access_token", "expires_in", "issued_at"} (+ "refresh_token" when offline_token
    is asked for by an authenticated user).  Each requested scope is granted the intersection of
    the requested actions and what the user (or anonymous) may do; nothing allowed gives an
    empty action list, so the registry itself then answers 401 insufficient_scope (what real
    token servers do).
POST /token (form) grant_type=refresh_token&refresh_token=T&service=S&scope=...
    the OAuth2 refresh grant Docker clients use with an "identitytoken"; also
    grant_type=password&username=U&password=P.  An unknown refresh token: 400 invalid_grant.

The JWT: header {"typ": "JWT", "alg": "RS256"|"ES256", "x5c": [signing cert, base64 DER]};
claims iss, sub, aud (= service), exp, nbf, iat, jti, access [{type, name, actions}], as
distribution 2.8 verifies them (issuer and audience equal to its config, exp/nbf within 60 s
leeway, x5c leaf verified against rootcertbundle, signature by the leaf's key).

Every request is recorded in `requests` (no secrets): method, grant, user, scopes, granted,
status, for tests asserting which flow a client used.
"""
import base64
import datetime
import fnmatch
import json
import secrets
import socket
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def _crypto():
    """The third-party modules, imported on first use so that merely importing this file (as
    conftest.py does through registry.py) works without them; a test that needs them is
    skipped, naming the Debian packages."""
    try:
        import jwt
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec, rsa
        from cryptography.x509.oid import NameOID
    except ImportError as e:
        import pytest
        pytest.skip(f"the token server needs python3-jwt and python3-cryptography ({e})")
    return jwt, x509, hashes, serialization, ec, rsa, NameOID


@dataclass
class User:
    password: str
    access: dict = field(default_factory=dict)  # repository glob -> ["pull", "push", ...]


def allowed_actions(policy, repo):
    out = set()
    for pattern, actions in (policy or {}).items():
        if fnmatch.fnmatchcase(repo, pattern):
            out.update(actions)
    if "*" in out:  # "*" in a policy means every action
        out |= {"pull", "push", "delete", "*"}
    return out


def parse_scope(s):
    """"repository:ns/app:pull,push" -> ("repository", "ns/app", ["pull", "push"])."""
    typ, _, rest = s.partition(":")
    name, _, actions = rest.rpartition(":")
    if not typ or not name:
        return None
    return typ, name, [a for a in actions.split(",") if a]


def make_signing_key(alg="RS256", common_name="ossb test token signer"):
    """(private key, self-signed certificate) for signing tokens."""
    _, x509, hashes, _, ec, rsa, NameOID = _crypto()
    if alg == "RS256":
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    elif alg == "ES256":
        key = ec.generate_private_key(ec.SECP256R1())
    else:
        raise ValueError(alg)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=7))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    return key, cert


class TokenServer:
    def __init__(self, users=None, anonymous=None, service="ossb-test-registry", issuer="ossb-test-token-issuer",
                 alg="RS256", expires_in=300, workdir=None):
        self.users = dict(users or {})
        self.anonymous = dict(anonymous or {})
        self.service = service
        self.issuer = issuer
        self.alg = alg
        self.expires_in = expires_in
        self.refresh_tokens = {}  # token -> user name
        self.issued = []  # every access token handed out (tests check none leaks into logs)
        self.requests = []
        self._lock = threading.Lock()
        self.key, self.cert = make_signing_key(alg)
        serialization = _crypto()[3]
        self.cert_der_b64 = base64.b64encode(self.cert.public_bytes(serialization.Encoding.DER)).decode()
        self._pem = self.cert.public_bytes(serialization.Encoding.PEM)
        self.workdir = Path(workdir) if workdir else None
        self.cert_path = None
        self.httpd = None
        self.thread = None

    # --- tokens ---

    def issue_refresh_token(self, user):
        """A refresh (identity) token for `user`, as a `docker login` would have stored."""
        tok = "rt-" + secrets.token_urlsafe(24)
        with self._lock:
            self.refresh_tokens[tok] = user
        return tok

    def grant(self, user, scopes):
        policy = self.users[user].access if user else self.anonymous
        access = []
        for s in scopes:
            p = parse_scope(s)
            if p is None:
                continue
            typ, name, wanted = p
            if typ != "repository":
                allowed = set()
            else:
                allowed = allowed_actions(policy, name)
            access.append({"type": typ, "name": name, "actions": sorted(a for a in wanted if a in allowed)})
        return access

    def make_token(self, user, access):
        now = int(time.time())
        claims = {"iss": self.issuer, "sub": user or "", "aud": self.service, "exp": now + self.expires_in,
                  "nbf": now - 1, "iat": now, "jti": secrets.token_hex(16), "access": access}
        jwt = _crypto()[0]
        return jwt.encode(claims, self.key, algorithm=self.alg, headers={"typ": "JWT", "x5c": [self.cert_der_b64]})

    def token_response(self, user, scopes, offline):
        access = self.grant(user, scopes)
        tok = self.make_token(user, access)
        with self._lock:
            self.issued.append(tok)
        body = {"token": tok, "access_token": tok, "expires_in": self.expires_in,
                "issued_at": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
        if offline and user:
            body["refresh_token"] = self.issue_refresh_token(user)
        return body, access

    def check_password(self, user, password):
        u = self.users.get(user)
        return u is not None and secrets.compare_digest(u.password.encode(), password.encode())

    def record(self, **kw):
        with self._lock:
            self.requests.append(kw)

    def grants(self, grant=None):
        with self._lock:
            return [r for r in self.requests if grant is None or r.get("grant") == grant]

    # --- server ---

    @property
    def port(self):
        return self.httpd.server_address[1]

    @property
    def realm(self):
        return f"http://127.0.0.1:{self.port}/token"

    def start(self):
        if self.workdir:
            self.workdir.mkdir(parents=True, exist_ok=True)
            self.cert_path = self.workdir / "token-signer.pem"
            self.cert_path.write_bytes(self._pem)
        handler = type("Handler", (_Handler,), {"ts": self})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="tokenserver", daemon=True)
        self.thread.start()
        return self

    def stop(self):
        if self.httpd:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.httpd = None


class _Handler(BaseHTTPRequestHandler):
    ts = None  # set per server
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # quiet; requests are recorded instead
        pass

    def _send(self, status, body, extra=None):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _basic(self):
        """(user, password) from a Basic Authorization header, None when absent, False when
        malformed."""
        h = self.headers.get("Authorization")
        if not h:
            return None
        scheme, _, val = h.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, sep, pw = base64.b64decode(val.strip(), validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        return (user, pw) if sep else False

    def do_GET(self):
        ts = self.ts
        url = urllib.parse.urlsplit(self.path)
        q = urllib.parse.parse_qs(url.query)
        if url.path != "/token":
            return self._send(404, {"error": "not found"})
        scopes = []
        for s in q.get("scope", []):
            scopes += s.split(" ")
        service = (q.get("service") or [""])[0]
        offline = (q.get("offline_token") or [""])[0].lower() == "true"
        if service != ts.service:
            ts.record(method="GET", grant="basic", user=None, scopes=scopes, granted=None, status=400)
            return self._send(400, {"errors": [{"code": "DENIED", "message": f"unknown service {service!r}"}]})
        cred = self._basic()
        user = None
        if cred is False or (cred and not ts.check_password(*cred)):
            ts.record(method="GET", grant="basic", user=cred[0] if cred else None, scopes=scopes, granted=None,
                      status=401)
            return self._send(401, {"errors": [{"code": "UNAUTHORIZED", "message": "authentication failed"}]},
                              {"WWW-Authenticate": 'Basic realm="ossb test token server"'})
        if cred:
            user = cred[0]
        body, access = ts.token_response(user, scopes, offline)
        ts.record(method="GET", grant="basic" if user else "anonymous", user=user, scopes=scopes, granted=access,
                  status=200)
        self._send(200, body)

    def do_POST(self):
        ts = self.ts
        url = urllib.parse.urlsplit(self.path)
        n = int(self.headers.get("Content-Length") or 0)
        form = urllib.parse.parse_qs(self.rfile.read(n).decode(errors="replace")) if n else {}
        if url.path != "/token":
            return self._send(404, {"error": "not found"})
        f = {k: v[0] for k, v in form.items()}
        scopes = []
        for s in form.get("scope", []):
            scopes += s.split(" ")
        grant = f.get("grant_type", "")
        if f.get("service") != ts.service:
            ts.record(method="POST", grant=grant, user=None, scopes=scopes, granted=None, status=400)
            return self._send(400, {"error": "invalid_request", "error_description": "unknown service"})
        if grant == "refresh_token":
            with ts._lock:
                user = ts.refresh_tokens.get(f.get("refresh_token", ""))
        elif grant == "password":
            user = f.get("username")
            if not ts.check_password(user or "", f.get("password", "")):
                user = None
        else:
            ts.record(method="POST", grant=grant, user=None, scopes=scopes, granted=None, status=400)
            return self._send(400, {"error": "unsupported_grant_type"})
        if user is None:
            ts.record(method="POST", grant=grant, user=None, scopes=scopes, granted=None, status=400)
            return self._send(400, {"error": "invalid_grant"})
        body, access = ts.token_response(user, scopes, f.get("access_type") == "offline")
        if grant == "refresh_token":
            body["refresh_token"] = f["refresh_token"]
        body["scope"] = " ".join(scopes)
        ts.record(method="POST", grant=grant, user=user, scopes=scopes, granted=access, status=200)
        self._send(200, body)


def free_port(host="127.0.0.1"):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]
