"""Real registries for the integration tests: Debian's `docker-registry` (distribution 2.8)
started on free ports, with TLS, Basic or Bearer-token auth, plus helpers to seed them with
skopeo and to read what they logged.

    reg = Registry(workdir, tls=False, auth=None).start()   # auth: None, "basic" or "token"
    reg.host            # "127.0.0.1:PORT"
    reg.push_layout(layout_dir, "plain", "busybox:1")   # skopeo copy oci:DIR:plain docker://HOST/busybox:1
    reg.requests()      # [Access(method, path, query, status, size)] from its access log
    reg.mark(); ...; reg.requests(since=mark)
    reg.served_bytes([digest, ...], since=mark, status=206)   # body bytes served for those blobs
    reg.stop()

Modes
  plain HTTP      (default)
  TLS             tls=True: a CA and a server certificate for 127.0.0.1 and localhost made with
                  certtool (gnutls-bin); reg.ca_path; reg.cert_dir(dir) writes DIR/HOST:PORT/ca.crt
                  for `ossb --cert-dir DIR`
  Basic auth      auth="basic": an htpasswd file (htpasswd -Bbn, apache2-utils) of `users`
  Bearer tokens   auth="token": a tokenserver.TokenServer (made here unless given) signs the
                  tokens; the registry trusts its certificate (rootcertbundle)
Users (both auth modes): USERS below: "pusher" may pull and push everywhere, "puller" may only
pull; the token server also lets anonymous clients pull repositories under "public/".

Fixtures (imported into conftest.py): `registry_factory` (per test) and
`module_registry_factory` (per module) return a function making started registries that are
stopped at teardown; `seeded_registry` is a module-wide plain registry holding the base images
of images.py.  When a test fails, the tail of every live registry's log (and the fault proxies'
and token servers' request lists) is added to its report.
"""
import atexit
import base64
import json
import os
import re
import shutil
import signal
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

import images
from tokenserver import TokenServer, User, free_port

DOCKER_REGISTRY = "/usr/bin/docker-registry"
START_TIMEOUT = 20

USERS = {
    "pusher": User("pusher-Secr3t-pw", {"*": ["pull", "push"]}),
    "puller": User("puller-Secr3t-pw", {"*": ["pull"]}),
}
ANONYMOUS = {"public/*": ["pull"]}
ADMIN = "pusher"

# The access log (combined format): ... "METHOD URI HTTP/x" STATUS SIZE "referer" "agent", where
# SIZE is the response body bytes the registry wrote ("-" for none)
ACCESS_RE = re.compile(r'^\S+ - \S+ \[[^\]]+\] "(?P<method>[A-Z]+) (?P<uri>\S+) HTTP/[0-9.]+" (?P<status>\d{3}) '
                       r'(?P<size>\d+|-)?')

MANIFEST_TYPES = ("application/vnd.oci.image.manifest.v1+json", "application/vnd.oci.image.index.v1+json",
                  "application/vnd.docker.distribution.manifest.v2+json",
                  "application/vnd.docker.distribution.manifest.list.v2+json")

LIVE = []  # started Registry / FaultProxy / TokenServer objects, for failure reports

# The environment for the tools run here (skopeo, certtool, ...): no proxy in the way.
CLEAN_ENV = {k: v for k, v in os.environ.items()
             if k.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")}
CLEAN_ENV.update(NO_PROXY="*", no_proxy="*")
# ... and no credentials of whoever runs the tests: skopeo gets an empty auth file, an empty
# Docker config dir and a private XDG_RUNTIME_DIR (it reads ${XDG_RUNTIME_DIR}/containers/auth.json,
# or /run/containers/UID/auth.json when the variable is unset, which a non-root user may not read)
_TOOL_HOME = Path(tempfile.mkdtemp(prefix="ossb-it-tools-"))
atexit.register(shutil.rmtree, _TOOL_HOME, True)
(_TOOL_HOME / "docker").mkdir()
(_TOOL_HOME / "run").mkdir(mode=0o700)
(_TOOL_HOME / "auth.json").write_text('{"auths": {}}')
CLEAN_ENV.update(REGISTRY_AUTH_FILE=str(_TOOL_HOME / "auth.json"), DOCKER_CONFIG=str(_TOOL_HOME / "docker"),
                 XDG_RUNTIME_DIR=str(_TOOL_HOME / "run"))
# urllib without any proxy from the environment
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def urlopen(req, timeout=30, context=None):
    if context is not None:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                             urllib.request.HTTPSHandler(context=context))
        return opener.open(req, timeout=timeout)
    return _OPENER.open(req, timeout=timeout)


@dataclass
class Access:
    method: str
    path: str
    query: dict
    status: int
    size: int = 0  # response body bytes the registry wrote (multipart framing included)

    @property
    def uri(self):
        q = urllib.parse.urlencode(self.query, doseq=True)
        return self.path + ("?" + q if q else "")


def need(prog, package):
    path = shutil.which(prog) or (prog if os.path.isabs(prog) and os.access(prog, os.X_OK) else None)
    if not path:
        pytest.skip(f"`{prog}` is not installed (Debian package {package})")
    return path


def run(args, **kw):
    kw.setdefault("env", CLEAN_ENV)
    p = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=120, **kw)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, args))} exited {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


# --- certificates (certtool) ----------------------------------------------------------------


class CertAuthority:
    """A throw-away CA made with certtool, and server certificates it signs."""

    def __init__(self, workdir, name="ossb test CA"):
        self.certtool = need("certtool", "gnutls-bin")
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.key = self.dir / "ca.key"
        self.cert = self.dir / "ca.crt"
        tmpl = self.dir / "ca.tmpl"
        tmpl.write_text(f'cn = "{name}"\nca\ncert_signing_key\ncrl_signing_key\nexpiration_days = 7\n')
        run([self.certtool, "--generate-privkey", "--key-type=ecdsa", "--outfile", self.key])
        run([self.certtool, "--generate-self-signed", "--load-privkey", self.key, "--template", tmpl,
             "--outfile", self.cert])

    def server_cert(self, name, ips=("127.0.0.1",), dns=("localhost",)):
        """(cert path, key path) for a TLS server known as `ips` and `dns`."""
        lines = [f'cn = "{(list(ips) + list(dns))[0]}"']
        lines += [f'ip_address = "{ip}"' for ip in ips]
        lines += [f'dns_name = "{d}"' for d in dns]
        lines += ["tls_www_server", "signing_key", "encryption_key", "expiration_days = 7"]
        return self._sign(name, lines)

    def client_cert(self, name, cn="ossb test client"):
        """(cert path, key path) for a TLS client (mutual TLS)."""
        return self._sign(name, [f'cn = "{cn}"', "tls_www_client", "signing_key", "expiration_days = 7"])

    def _sign(self, name, lines):
        key = self.dir / f"{name}.key"
        cert = self.dir / f"{name}.crt"
        tmpl = self.dir / f"{name}.tmpl"
        tmpl.write_text("\n".join(lines) + "\n")
        run([self.certtool, "--generate-privkey", "--key-type=ecdsa", "--outfile", key])
        run([self.certtool, "--generate-certificate", "--load-privkey", key, "--load-ca-certificate", self.cert,
             "--load-ca-privkey", self.key, "--template", tmpl, "--outfile", cert])
        return cert, key


def htpasswd_file(path, users):
    prog = need("htpasswd", "apache2-utils")
    lines = []
    for name, u in users.items():
        pw = u.password if isinstance(u, User) else u
        # -C 4: the lowest bcrypt cost, so that the registry checks passwords quickly
        lines.append(run([prog, "-Bbn", "-C", "4", name, pw]).stdout.strip())
    Path(path).write_text("\n".join(lines) + "\n")
    return path


# --- the registry ---------------------------------------------------------------------------


class Registry:
    def __init__(self, workdir, tls=False, auth=None, users=None, token_server=None, bind="127.0.0.1",
                 name="registry", client_certs=False):
        assert auth in (None, "basic", "token"), auth
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.tls = tls or client_certs
        self.client_certs = client_certs  # the registry asks for a client certificate signed by its CA
        self.auth = auth
        self.users = dict(USERS if users is None else users)
        self.bind = bind
        self.name = name
        self.port = None
        self.proc = None
        self.ca = None
        self.token_server = token_server
        self._own_token_server = False
        self.log_path = self.workdir / "registry.log"
        self.config_path = self.workdir / "config.yml"
        self._log_file = None

    # --- addresses ---

    @property
    def host(self):
        return f"{self.bind}:{self.port}"

    @property
    def scheme(self):
        return "https" if self.tls else "http"

    @property
    def url(self):
        return f"{self.scheme}://{self.host}"

    def ref(self, name):
        return f"{self.host}/{name}"

    @property
    def ca_path(self):
        return self.ca.cert if self.ca else None

    def cert_dir(self, d, client=None, host=None):
        """Write D/HOST:PORT/ca.crt (the layout of --cert-dir and /etc/docker/certs.d), plus
        client.cert/client.key when `client` is true (or always when the registry wants client
        certificates and `client` is None); returns D.  `host` overrides the directory name
        (e.g. "localhost:PORT")."""
        assert self.tls
        d = Path(d)
        sub = d / (host or self.host)
        sub.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.ca.cert, sub / "ca.crt")
        if client or (client is None and self.client_certs):
            cert, key = self.client_cert()
            shutil.copyfile(cert, sub / "client.cert")
            shutil.copyfile(key, sub / "client.key")
        return d

    def client_cert(self):
        """(cert, key) of a client certificate signed by the registry's CA (made once)."""
        if getattr(self, "_client", None) is None:
            self._client = self.ca.client_cert("client")
        return self._client

    # --- lifecycle ---

    def _config(self):
        lines = [
            "version: 0.1",
            "log:",
            "  level: info",
            "  formatter: json",
            "  accesslog:",
            "    disabled: false",
            "storage:",
            "  filesystem:",
            f"    rootdirectory: {self.workdir / 'data'}",
            "  delete:",
            "    enabled: true",
            "  redirect:",
            "    disable: true",
            "  maintenance:",
            "    uploadpurging:",
            "      enabled: false",
            "http:",
            f"  addr: {self.bind}:{self.port}",
            "  secret: ossb-integration-tests",
            "  headers:",
            "    X-Content-Type-Options: [nosniff]",
        ]
        if self.tls:
            lines += ["  tls:", f"    certificate: {self.server_cert}", f"    key: {self.server_key}"]
            if self.client_certs:
                lines += ["    clientcas:", f"      - {self.ca.cert}"]
        lines += ["health:", "  storagedriver:", "    enabled: false"]
        if self.auth == "basic":
            lines += ["auth:", "  htpasswd:", "    realm: ossb-test-registry", f"    path: {self.htpasswd}"]
        elif self.auth == "token":
            ts = self.token_server
            lines += ["auth:", "  token:", f"    realm: {ts.realm}", f"    service: {ts.service}",
                      f"    issuer: {ts.issuer}", f"    rootcertbundle: {ts.cert_path}"]
        return "\n".join(lines) + "\n"

    def start(self):
        need(DOCKER_REGISTRY, "docker-registry")
        if self.tls and self.ca is None:
            self.ca = CertAuthority(self.workdir / "tls")
            ips = [self.bind] if self.bind != "127.0.0.1" else ["127.0.0.1"]
            self.server_cert, self.server_key = self.ca.server_cert("server", ips=ips, dns=("localhost",))
        if self.auth == "basic":
            self.htpasswd = htpasswd_file(self.workdir / "htpasswd", self.users)
        if self.auth == "token" and self.token_server is None:
            self.token_server = TokenServer(users=self.users, anonymous=ANONYMOUS, workdir=self.workdir / "token")
            self._own_token_server = True
        if self.auth == "token" and self.token_server.httpd is None:
            self.token_server.start()
            if self._own_token_server:
                LIVE.append(self.token_server)
        last = None
        for _ in range(5):  # a free port can be taken between choosing it and binding it
            self.port = free_port(self.bind)
            self.config_path.write_text(self._config())
            self._log_file = open(self.log_path, "ab")
            self.proc = subprocess.Popen([DOCKER_REGISTRY, "serve", str(self.config_path)], stdout=self._log_file,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)
            try:
                self._wait_ready()
                LIVE.append(self)
                return self
            except RuntimeError as e:
                last = e
                self._kill()
                if "address already in use" not in self.log_text():
                    break
        raise RuntimeError(f"{self.name} did not start: {last}\n--- log\n{self.log_tail(40)}")

    def _ssl_context(self):
        if not self.tls:
            return None
        ctx = ssl.create_default_context(cafile=str(self.ca.cert))
        if self.client_certs:
            cert, key = self.client_cert()
            ctx.load_cert_chain(str(cert), str(key))
        return ctx

    def _wait_ready(self):
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"docker-registry exited with {self.proc.returncode}")
            try:
                with urlopen(self.url + "/v2/", timeout=2, context=self._ssl_context()):
                    return
            except urllib.error.HTTPError as e:
                if e.code == 401:  # an auth mode answers: it is up
                    return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.05)
        raise RuntimeError(f"no answer on {self.url}/v2/ within {START_TIMEOUT}s")

    def _kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        if self._log_file:
            self._log_file.close()
            self._log_file = None

    def stop(self):
        self._kill()
        if self in LIVE:
            LIVE.remove(self)
        if self._own_token_server and self.token_server:
            self.token_server.stop()
            if self.token_server in LIVE:
                LIVE.remove(self.token_server)

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    # --- logs ---

    def log_text(self):
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, n=60):
        return "\n".join(self.log_text().splitlines()[-n:])

    def log_report(self, n_access=40, n_other=15):
        """A readable tail of the log for failure reports: the last access-log lines and the
        last warnings/errors (their message, error and request only)."""
        access, other = [], []
        for line in self.log_text().splitlines():
            if ACCESS_RE.match(line):
                access.append(re.sub(r"_state=[^&\s\"]+", "_state=...", line))
                continue
            try:
                doc = json.loads(line)
            except ValueError:
                other.append(line[:300])
                continue
            if doc.get("level") in ("warning", "error", "fatal", "panic"):
                req = " ".join(str(doc.get(k, "")) for k in ("http.request.method", "http.request.uri"))
                other.append(f"{doc.get('level')}: {doc.get('msg')} {doc.get('err.message', '')} "
                             f"{doc.get('err.detail', '')} [{req.strip()}]")
        return ("access log:\n" + "\n".join(access[-n_access:]) + "\nwarnings and errors:\n"
                + "\n".join(other[-n_other:]))

    def settle(self, quiet=0.1, timeout=3.0):
        """Wait until the log stops growing for `quiet` seconds (the access line of a request is
        written just after its response, so a client may finish before the line is there)."""
        deadline = time.monotonic() + timeout
        last = -1
        while time.monotonic() < deadline:
            size = self.log_path.stat().st_size if self.log_path.exists() else 0
            if size == last:
                return
            last = size
            time.sleep(quiet)

    def mark(self):
        """A position in the access log; requests(since=mark) lists what came after."""
        self.settle()
        return len(self._access())

    def _access(self):
        out = []
        for line in self.log_text().splitlines():
            m = ACCESS_RE.match(line)
            if not m:
                continue
            u = urllib.parse.urlsplit(m.group("uri"))
            size = m.group("size")
            out.append(Access(m.group("method"), urllib.parse.unquote(u.path), urllib.parse.parse_qs(u.query),
                              int(m.group("status")), int(size) if size and size != "-" else 0))
        return out

    def requests(self, method=None, path=None, since=0, settle=True):
        """Requests the registry served (from its access log), filtered by method and a regular
        expression searched in the path."""
        if settle:
            self.settle()
        rx = re.compile(path) if path else None
        return [a for a in self._access()[since:]
                if (method is None or a.method == method) and (rx is None or rx.search(a.path))]

    def blob_gets(self, since=0):
        return self.requests("GET", r"^/v2/.+/blobs/sha256:", since=since)

    def served_bytes(self, digests, since=0, status=None):
        """Body bytes the registry wrote in its answers to GETs of the blobs `digests` (any
        repository) since the mark `since`, by its access log: what went over the wire for
        them, multipart framing included.  `status` keeps only answers with that status, e.g.
        206 for the answers to Range requests (a lazy reader's), leaving out whole-blob
        fetches (200)."""
        want = set(digests)
        return sum(a.size for a in self.blob_gets(since=since)
                   if a.path.rsplit("/", 1)[-1] in want and (status is None or a.status == status))

    # --- clients ---

    def creds(self, user=ADMIN):
        return f"{user}:{self.users[user].password}" if self.auth else None

    def skopeo_dest_args(self, user=ADMIN):
        a = []
        if self.tls:
            a.append(f"--dest-cert-dir={self.cert_dir(self.workdir / 'certs.d') / self.host}")
        else:
            a.append("--dest-tls-verify=false")
        if self.auth:
            a.append(f"--dest-creds={self.creds(user)}")
        return a

    def skopeo_src_args(self, user=ADMIN):
        a = []
        if self.tls:
            a.append(f"--src-cert-dir={self.cert_dir(self.workdir / 'certs.d') / self.host}")
        else:
            a.append("--src-tls-verify=false")
        if self.auth and user:
            a.append(f"--src-creds={self.creds(user)}")
        return a

    def skopeo_args(self, user=ADMIN):
        """For skopeo inspect (no src/dest prefix)."""
        return [a.replace("--src-", "--") for a in self.skopeo_src_args(user)]

    def push_layout(self, layout, tag, name, fmt=None, all_=False, user=ADMIN):
        """skopeo copy oci:LAYOUT:TAG docker://HOST/NAME; returns the manifest digest the
        registry holds for NAME."""
        skopeo = need("skopeo", "skopeo")
        a = [skopeo, "copy", "-q", *self.skopeo_dest_args(user)]
        if fmt:
            a.append(f"--format={fmt}")
        if all_:
            a.append("--all")
        a += [f"oci:{layout}:{tag}", f"docker://{self.ref(name)}"]
        run(a)
        return self.manifest_digest(name)

    def inspect_raw(self, name, user=ADMIN):
        skopeo = need("skopeo", "skopeo")
        p = subprocess.run([skopeo, "inspect", "--raw", *self.skopeo_args(user), f"docker://{self.ref(name)}"],
                           capture_output=True, timeout=60, env=CLEAN_ENV)
        if p.returncode != 0:
            raise RuntimeError(f"skopeo inspect --raw {self.ref(name)}: {p.stderr.decode(errors='replace')}")
        return p.stdout

    def manifest_digest(self, name, user=ADMIN):
        return images.digest(self.inspect_raw(name, user))

    def http(self, method, path, headers=None, data=None, user=ADMIN, scope=None):
        """One request to the registry with the admin's credentials (Basic, or a token for
        `scope`, default pull+push on the path's repository): (status, headers, body)."""
        hdrs = dict(headers or {})
        if "/manifests/" in path and method in ("GET", "HEAD"):
            # without an Accept naming them, distribution 2.8 answers 404 for OCI manifests
            hdrs.setdefault("Accept", ", ".join(MANIFEST_TYPES))
        if self.auth == "basic" and user:
            raw = f"{user}:{self.users[user].password}".encode()
            hdrs["Authorization"] = "Basic " + base64.b64encode(raw).decode()
        elif self.auth == "token" and user:
            if scope is None:
                m = re.match(r"^/v2/(.+?)/(manifests|blobs|tags)/", path)
                scope = f"repository:{m.group(1)}:pull,push" if m else ""
            hdrs["Authorization"] = "Bearer " + self.token(user, scope)
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=hdrs)
        try:
            with urlopen(req, timeout=30, context=self._ssl_context()) as r:
                return r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()

    def token(self, user, scope):
        ts = self.token_server
        q = urllib.parse.urlencode({"service": ts.service, "scope": scope})
        raw = f"{user}:{self.users[user].password}".encode()
        auth = "Basic " + base64.b64encode(raw).decode()
        req = urllib.request.Request(f"{ts.realm}?{q}", headers={"Authorization": auth})
        with urlopen(req, timeout=10) as r:
            return json.loads(r.read())["token"]

    def put_blob(self, repo, data):
        """Monolithic upload of `data` to repo (POST + PUT); returns its digest."""
        d = images.digest(data)
        st, h, body = self.http("POST", f"/v2/{repo}/blobs/uploads/")
        assert st == 202, (st, body)
        loc = h["Location"]
        if loc.startswith("/"):
            loc = self.url + loc
        u = urllib.parse.urlsplit(loc)
        q = urllib.parse.parse_qs(u.query)
        q["digest"] = [d]
        path = u.path + "?" + urllib.parse.urlencode(q, doseq=True)
        st, h, body = self.http("PUT", path, headers={"Content-Type": "application/octet-stream"}, data=data,
                                scope=f"repository:{repo}:pull,push")
        assert st == 201, (st, body)
        return d

    def put_manifest(self, repo, ref, data, media_type):
        st, h, body = self.http("PUT", f"/v2/{repo}/manifests/{ref}", headers={"Content-Type": media_type}, data=data)
        assert st == 201, (st, body)
        return h.get("Docker-Content-Digest")

    def push_image(self, repo, ref, img):
        """Push an images.Image (or Index with its images) over HTTP; returns the digest."""
        if isinstance(img, images.Index):
            for im in img.images:
                self.push_image(repo, im.digest, im)
            return self.put_manifest(repo, ref, img.index, images.MT_OCI_INDEX)
        for d, data in img.blobs.items():
            self.put_blob(repo, data)
        return self.put_manifest(repo, ref, img.manifest, images.MT_OCI_MANIFEST)

    def has_manifest(self, repo, ref):
        st, _, _ = self.http("HEAD", f"/v2/{repo}/manifests/{ref}")
        return st == 200

    def has_blob(self, repo, digest):
        st, _, _ = self.http("HEAD", f"/v2/{repo}/blobs/{digest}")
        return st == 200

    def describe(self):
        mode = ("TLS " if self.tls else "") + (f"{self.auth} auth" if self.auth else "no auth")
        return f"{self.name} {self.url} ({mode}), data in {self.workdir}"


# --- seeding ------------------------------------------------------------------------------


@dataclass
class Seeded:
    """What seed_busybox pushed: name -> (images.Image or Index, digest in the registry)."""
    registry: Registry
    layout: Path
    pushed: dict

    def digest(self, name):
        return self.pushed[name][1]

    def image(self, name):
        return self.pushed[name][0]


def seed_busybox(reg, workdir, multi=True):
    """Push the images of images.py into `reg`:
      busybox:1         image_plain (OCI, gzip)           busybox:layered  image_layered
      busybox:zstd      image_zstd                         busybox:v2s2     image_plain as Docker v2s2
      multi:1           index_two_platforms (when the arm64 .deb is there)
    """
    lay = Path(workdir) / "seed-layout"
    plain = images.image_plain()
    tags = {"plain": plain, "layered": images.image_layered()}
    if shutil.which("zstd"):
        tags["zstd"] = images.image_zstd()
    two = images.index_two_platforms() if multi else None
    if two:
        tags["multi"] = two[0]
    images.write_layout(lay, tags)
    pushed = {}
    pushed["busybox:1"] = (plain, reg.push_layout(lay, "plain", "busybox:1"))
    pushed["busybox:layered"] = (tags["layered"], reg.push_layout(lay, "layered", "busybox:layered"))
    if "zstd" in tags:
        pushed["busybox:zstd"] = (tags["zstd"], reg.push_layout(lay, "zstd", "busybox:zstd"))
    pushed["busybox:v2s2"] = (plain, reg.push_layout(lay, "plain", "busybox:v2s2", fmt="v2s2"))
    if two:
        pushed["multi:1"] = (two[0], reg.push_layout(lay, "multi", "multi:1", all_=True))
    return Seeded(reg, lay, pushed)


# --- non-loopback address ----------------------------------------------------------------


def non_loopback_ipv4():
    """An IPv4 address of this machine outside 127.0.0.0/8, or None."""
    ip = shutil.which("ip")
    if ip:
        p = subprocess.run([ip, "-4", "-o", "addr", "show"], capture_output=True, text=True)
        for line in p.stdout.splitlines():
            m = re.search(r"\binet (\d+\.\d+\.\d+\.\d+)/", line)
            if m and not m.group(1).startswith("127."):
                return m.group(1)
    import socket
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.123", 9))  # no packet is sent for a UDP connect
            addr = s.getsockname()[0]
            return None if addr.startswith("127.") or addr == "0.0.0.0" else addr
    except OSError:
        return None


# --- fixtures -------------------------------------------------------------------------------


class _Factory:
    def __init__(self, base):
        self.base = Path(base)
        self.made = []
        self.n = 0

    def __call__(self, **kw):
        self.n += 1
        name = kw.pop("name", f"registry{self.n}")
        reg = Registry(self.base / name, name=name, **kw)
        self.made.append(reg)
        return reg.start()

    def close(self):
        for reg in reversed(self.made):
            reg.stop()


@pytest.fixture
def registry_factory(tmp_path):
    """registry_factory(tls=False, auth=None, users=None, token_server=None, bind=...) -> a
    started Registry under the test's tmp dir, stopped at teardown."""
    f = _Factory(tmp_path / "registries")
    yield f
    f.close()


@pytest.fixture(scope="module")
def module_registry_factory(tmp_path_factory):
    """Like registry_factory, for registries shared by a module's tests."""
    f = _Factory(tmp_path_factory.mktemp("registries"))
    yield f
    f.close()


@pytest.fixture(scope="module")
def seeded_registry(module_registry_factory, tmp_path_factory):
    """A plain-HTTP registry holding the busybox images (see seed_busybox)."""
    reg = module_registry_factory(name="seeded")
    return seed_busybox(reg, tmp_path_factory.mktemp("seed"))


@pytest.fixture
def system_certs_d():
    """system_certs_d(registry) installs /etc/docker/certs.d/HOST:PORT/ca.crt (root only),
    removed again at teardown."""
    made = []

    def install(reg):
        if os.geteuid() != 0:
            pytest.skip("writing /etc/docker/certs.d needs root")
        base = Path("/etc/docker/certs.d")
        created = []
        for p in (Path("/etc/docker"), base):
            if not p.exists():
                p.mkdir()
                created.append(p)
        d = base / reg.host
        assert not d.exists(), f"{d} exists already"
        d.mkdir()
        shutil.copyfile(reg.ca_path, d / "ca.crt")
        made.append((d, created))
        return d

    yield install
    for d, created in made:
        shutil.rmtree(d, ignore_errors=True)
        for p in reversed(created):
            try:
                p.rmdir()
            except OSError:
                pass


# --- failure reports ----------------------------------------------------------------------


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.when != "call" or not rep.failed:
        return
    for obj in list(LIVE):
        if isinstance(obj, Registry):
            rep.sections.append((f"{obj.describe()}", obj.log_report()))
        elif isinstance(obj, TokenServer):
            lines = [f"{r.get('method')} grant={r.get('grant')} user={r.get('user')} scopes={r.get('scopes')} "
                     f"granted={r.get('granted')} -> {r.get('status')}" for r in obj.requests[-40:]]
            rep.sections.append((f"token server {obj.realm}: requests", "\n".join(lines)))
        elif hasattr(obj, "summary"):
            rep.sections.append((f"fault proxy {obj.host}: requests", obj.summary()[-8000:]))


@pytest.fixture
def fault_proxy():
    """fault_proxy(registry) -> a started faultproxy.FaultProxy in front of a plain-HTTP
    registry, stopped at teardown."""
    from faultproxy import FaultProxy
    made = []

    def make(reg):
        assert not reg.tls, "the fault proxy speaks plain HTTP to its upstream"
        p = FaultProxy(reg.host).start()
        made.append(p)
        LIVE.append(p)
        return p

    yield make
    for p in made:
        p.stop()
        if p in LIVE:
            LIVE.remove(p)


# --- running ossb against registries ------------------------------------------------------

VERIFY_RE = re.compile(r"(\d+) blobs? ok, (\d+) bad")


def ossb_cmd(ossb, cmd, *args, cache=None, pre=(), **kw):
    """`ossb PRE CMD --cache-dir CACHE ARGS` (pull, push, inspect; `ossb build` gets its cache
    dir from the Ossb fixture already).  CACHE defaults to the test's cache dir; PRE are global
    options (--log-level debug)."""
    return ossb.run(*pre, cmd, "--cache-dir", cache or ossb.cache, *args, cache=False, **kw)


CRED_ENV = ("DOCKER_CONFIG", "REGISTRY_AUTH_FILE", "XDG_RUNTIME_DIR", "CONTAINERS_REGISTRIES_CONF",
            "SSL_CERT_FILE", "SSL_CERT_DIR", "CURL_CA_BUNDLE")


@pytest.fixture
def registry_env(ossb):
    """Keep the credentials and CA settings of whoever runs the tests away from ossb: the
    variables of CRED_ENV are removed from the Ossb fixture's environment and XDG_RUNTIME_DIR
    points to an empty directory of the test (HOME is the test's already)."""
    for k in CRED_ENV:
        ossb.env.pop(k, None)
    run_dir = ossb.path("xdg-runtime")
    run_dir.mkdir(mode=0o700, exist_ok=True)
    ossb.env["XDG_RUNTIME_DIR"] = str(run_dir)
    return ossb


def store_dir(cache):
    return Path(cache) / "store" / "blobs" / "sha256"


def store_blobs(cache):
    """Digests of the blobs in the content store of `cache` (an empty set when there is none)."""
    d = store_dir(cache)
    return {"sha256:" + f.name for f in d.iterdir()} if d.is_dir() else set()


def verify_store(ossb, cache=None):
    """Run `ossb debug verify-store`; returns (ok, bad, result).  Fails the test when the
    command's output does not have the "N blobs ok, M bad" line."""
    r = ossb.run("debug", "verify-store", "--cache-dir", cache or ossb.cache, cache=False)
    m = VERIFY_RE.search(r.stdout + r.stderr)
    if not m:
        pytest.fail(f"`ossb debug verify-store` printed no 'N blobs ok, M bad' line\n{r}")
    return int(m.group(1)), int(m.group(2)), r


def assert_store_clean(ossb, cache=None):
    """verify-store exits 0 and reports 0 bad blobs; also checks every blob here directly."""
    ok, bad, r = verify_store(ossb, cache)
    assert bad == 0 and r.returncode == 0, f"the store holds bad blobs\n{r}"
    for f in (store_dir(cache or ossb.cache).iterdir() if store_dir(cache or ossb.cache).is_dir() else []):
        assert images.digest(f.read_bytes())[7:] == f.name, f"store blob {f.name} does not hash to its name"
    return ok


def assert_secret_absent(r, *secrets):
    for s in secrets:
        if not s:
            continue
        for stream, text in (("stdout", r.stdout), ("stderr", r.stderr)):
            assert s not in text, f"a secret ({s[:3]}...) appears on {stream}\n{r}"
