"""End-to-end tests of `ossb build` (pytest, Python standard library only).

Which binary is tested:
  $OSSB            the path of the ossb binary (wins over everything else)
  $OSSB_BUILDDIR   a build directory: the binary is $OSSB_BUILDDIR/ossb
  otherwise        `ossb` in the repository root (an in-tree build)
A missing binary is an error (every test errors out), never a skip.

Every test works in its own pytest temporary directory: its build contexts, outputs, and the
--cache-dir it passes to every build.  The ossb child process gets HOME, XDG_CACHE_HOME,
OSSB_CACHE_DIR and TMPDIR pointing inside that directory too, so nothing is written elsewhere.

Optional tools: skopeo and umoci (checks of the OCI layout against independent readers),
podman (`podman load`), zstd (for .tar.zst archives and zstd layers).  A test needing a missing
tool is skipped and says which tool.  umoci unpack keeps file owners only as root; without root
the owner checks on its output are skipped.
"""
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import stat
import subprocess
import tarfile
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
DATA_DIR = Path(__file__).resolve().parent / "data"

# one build should take well under a second; a hang (e.g. a FIFO opened for reading) must fail
BUILD_TIMEOUT = int(os.environ.get("OSSB_TEST_TIMEOUT", "120"))

DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
IS_ROOT = os.geteuid() == 0

MT_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MT_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
MT_LAYER_GZIP = MT_LAYER_TAR + "+gzip"
MT_LAYER_ZSTD = MT_LAYER_TAR + "+zstd"
REF_NAME = "org.opencontainers.image.ref.name"
SCRATCH_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def find_ossb():
    v = os.environ.get("OSSB")
    if v:
        return Path(v)
    bd = os.environ.get("OSSB_BUILDDIR")
    if bd:
        return Path(bd) / "ossb"
    return REPO_ROOT / "ossb"


def need_tool(name):
    path = shutil.which(name)
    if not path:
        pytest.skip(f"`{name}` is not installed")
    return path


def sha256_hex(data):
    return hashlib.sha256(data).hexdigest()


def digest_of(data):
    return "sha256:" + sha256_hex(data)


def run_tool(args, **kw):
    """Run an external checker (skopeo, umoci, ...); fail the test with its output on error."""
    p = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=BUILD_TIMEOUT, **kw)
    if p.returncode != 0:
        pytest.fail(f"{' '.join(map(str, args))} exited {p.returncode}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}")
    return p


# --- OCI layout / docker-archive readers ---------------------------------------------------


def decompress_layer(media_type, blob):
    if media_type.endswith("+gzip") or media_type.endswith(".tar.gzip") or media_type.endswith("diff.tar.gzip"):
        return gzip.decompress(blob)
    if media_type.endswith("+zstd"):
        zstd = need_tool("zstd")
        p = subprocess.run([zstd, "-dc"], input=blob, capture_output=True, timeout=BUILD_TIMEOUT)
        assert p.returncode == 0, p.stderr
        return p.stdout
    if media_type in (MT_LAYER_TAR, "application/vnd.docker.image.rootfs.diff.tar"):
        return blob
    raise AssertionError(f"unexpected layer media type {media_type}")


@dataclass
class Entry:
    info: tarfile.TarInfo
    data: bytes | None

    @property
    def mode(self):
        return self.info.mode & 0o7777

    @property
    def owner(self):
        return (self.info.uid, self.info.gid)

    @property
    def text(self):
        assert self.data is not None, f"{self.info.name} is not a regular file"
        return self.data.decode()


def norm_name(name):
    name = name.rstrip("/")
    while name.startswith("./"):
        name = name[2:]
    return name.lstrip("/")


def tar_entries(raw):
    """[(normalized name, TarInfo, data or None)] of an uncompressed layer tar, in order."""
    out = []
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tf:
        for ti in tf:
            data = tf.extractfile(ti).read() if ti.isreg() else None
            out.append((norm_name(ti.name), ti, data))
    return out


def apply_layers(raws):
    """Apply uncompressed layer tars in order (OCI whiteouts honoured); path -> Entry."""
    fs = {}
    for raw in raws:
        entries = tar_entries(raw)
        for name, ti, data in entries:
            base = name.rsplit("/", 1)[-1]
            parent = name.rsplit("/", 1)[0] if "/" in name else ""
            if base == ".wh..wh..opq":
                for k in [k for k in fs if parent == "" or k.startswith(parent + "/")]:
                    del fs[k]
                continue
            if base.startswith(".wh."):
                victim = (parent + "/" if parent else "") + base[4:]
                for k in [k for k in fs if k == victim or k.startswith(victim + "/")]:
                    del fs[k]
                continue
            if name == "":
                continue
            if ti.islnk():
                target = norm_name(ti.linkname)
                assert target in fs, f"hard link {name} -> {ti.linkname}: target not in the image"
                data = fs[target].data
            fs[name] = Entry(ti, data)
    return fs


class Image:
    """One image: its manifest, config and layers, read from a blob source."""

    def __init__(self, blob, manifest_desc):
        self.blob = blob
        self.manifest_desc = manifest_desc
        self.manifest_bytes = blob(manifest_desc["digest"], manifest_desc.get("size"))
        self.manifest = json.loads(self.manifest_bytes)
        assert self.manifest.get("schemaVersion") == 2
        assert self.manifest.get("mediaType") == MT_OCI_MANIFEST
        cdesc = self.manifest["config"]
        assert cdesc["mediaType"] == MT_OCI_CONFIG
        self.config_digest = cdesc["digest"]
        self.config_bytes = blob(cdesc["digest"], cdesc["size"])
        self.config = json.loads(self.config_bytes)
        self._layers = None

    @property
    def digest(self):
        return self.manifest_desc["digest"]

    @property
    def cfg(self):
        """The container config part ("config"), {} when absent."""
        return self.config.get("config") or {}

    def env(self):
        out = {}
        for kv in self.cfg.get("Env") or []:
            k, _, v = kv.partition("=")
            assert k not in out, f"Env has {k} twice: {self.cfg['Env']}"
            out[k] = v
        return out

    def layer_tars(self):
        if self._layers is None:
            self._layers = []
            for d in self.manifest["layers"]:
                raw = decompress_layer(d["mediaType"], self.blob(d["digest"], d["size"]))
                self._layers.append(raw)
        return self._layers

    def layer_entries(self, i):
        return tar_entries(self.layer_tars()[i])

    def rootfs(self):
        return apply_layers(self.layer_tars())

    def check_consistency(self):
        """diff_ids match the uncompressed layers; history's non-empty entries match layers."""
        diff_ids = (self.config.get("rootfs") or {}).get("diff_ids") or []
        assert self.config["rootfs"]["type"] == "layers"
        raws = self.layer_tars()
        assert len(diff_ids) == len(raws), f"{len(diff_ids)} diff_ids for {len(raws)} layers"
        for raw, did in zip(raws, diff_ids):
            assert digest_of(raw) == did, "a diff_id is not the sha256 of its uncompressed layer"
        hist = self.config.get("history") or []
        non_empty = [h for h in hist if not h.get("empty_layer")]
        assert len(non_empty) == len(raws), f"history has {len(non_empty)} non-empty entries for {len(raws)} layers"


class Layout:
    """An OCI image layout directory."""

    def __init__(self, path):
        self.path = Path(path)
        assert (self.path / "oci-layout").is_file(), f"{path}: no oci-layout file"
        assert json.loads((self.path / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
        self.index = json.loads((self.path / "index.json").read_text())
        assert self.index.get("schemaVersion") == 2
        assert self.index.get("mediaType", MT_OCI_INDEX) == MT_OCI_INDEX

    def blob(self, digest, size=None):
        assert DIGEST_RE.match(digest), digest
        data = (self.path / "blobs" / "sha256" / digest[7:]).read_bytes()
        assert digest_of(data) == digest, f"blob {digest} does not hash to its name"
        if size is not None:
            assert len(data) == size, f"blob {digest}: {len(data)} bytes, descriptor says {size}"
        return data

    def manifests(self):
        return self.index["manifests"]

    def ref_names(self):
        return [(m.get("annotations") or {}).get(REF_NAME) for m in self.manifests()]

    def image(self, ref=None):
        ms = self.manifests()
        if ref is not None:
            ms = [m for m in ms if (m.get("annotations") or {}).get(REF_NAME) == ref]
            assert ms, f"no manifest named {ref} in index.json: {self.ref_names()}"
        assert len(ms) >= 1
        assert len({m["digest"] for m in ms}) == 1, f"index.json holds different images: {ms}"
        return Image(self.blob, ms[0])

    def check_all_blobs(self):
        for f in (self.path / "blobs" / "sha256").iterdir():
            assert sha256_hex(f.read_bytes()) == f.name, f"blob {f.name} is corrupt"


class DockerArchive:
    def __init__(self, tar_path):
        self.path = Path(tar_path)
        with tarfile.open(self.path) as tf:
            self.files = {norm_name(m.name): tf.extractfile(m).read() for m in tf if m.isreg()}
        self.manifest = json.loads(self.files["manifest.json"])
        assert isinstance(self.manifest, list) and len(self.manifest) == 1, self.manifest
        self.entry = self.manifest[0]
        self.config = json.loads(self.files[norm_name(self.entry["Config"])])

    def layer_tars(self):
        out = []
        for name in self.entry["Layers"]:
            data = self.files[norm_name(name)]
            out.append(gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data)
        return out


def extract_tar(tar_path, dest):
    dest = Path(dest)
    dest.mkdir(parents=True)
    with tarfile.open(tar_path) as tf:
        for m in tf:
            assert not m.name.startswith("/") and ".." not in m.name.split("/"), m.name
        tf.extractall(dest)
    return dest


# --- building ------------------------------------------------------------------------------


@dataclass
class Result:
    args: list
    returncode: int
    stdout: str
    stderr: str

    def __str__(self):
        return (f"ossb {' '.join(map(str, self.args))}\nexit {self.returncode}\n"
                f"--- stdout\n{self.stdout}--- stderr\n{self.stderr}")

    @property
    def digest(self):
        lines = self.stdout.strip().splitlines()
        assert lines, f"nothing on stdout\n{self}"
        assert DIGEST_RE.match(lines[-1]), f"last stdout line is not a digest\n{self}"
        return lines[-1]


class Ossb:
    def __init__(self, binary, tmp, as_user=None):
        self.binary = binary
        self.tmp = Path(tmp)
        self.as_user = as_user  # an AsUser: ossb runs as that user (see below)
        self.cache = self.tmp / "cache"
        self.home = self.tmp / "home"
        self.home.mkdir(exist_ok=True)
        (self.tmp / "tmp").mkdir(exist_ok=True)
        if as_user:
            as_user.give([self.tmp])
        self._n = 0
        self.killed = False
        self.env = {k: v for k, v in os.environ.items()
                    if k.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
                    and k not in ("SOURCE_DATE_EPOCH", "OSSB_CACHE_DIR")}
        self.env.update(HOME=str(self.home), XDG_CACHE_HOME=str(self.home / ".cache"),
                        OSSB_CACHE_DIR=str(self.tmp / "env-cache"), TMPDIR=str(self.tmp / "tmp"),
                        NO_PROXY="*", no_proxy="*", LC_ALL="C")

    def path(self, name):
        return self.tmp / name

    def fresh(self, prefix):
        self._n += 1
        return self.tmp / f"{prefix}{self._n}"

    def run(self, *args, env=None, input=None, cache=True, timeout=BUILD_TIMEOUT, cwd=None):
        args = [str(a) for a in args]
        if cache and "build" in args and not any(a.startswith("--cache-dir") for a in args):
            i = args.index("build") + 1
            args = args[:i] + ["--cache-dir", str(self.cache)] + args[i:]
        e = dict(self.env)
        if env:
            for k, v in env.items():
                if v is None:
                    e.pop(k, None)
                else:
                    e[k] = v
        cmd = [str(self.binary)] + args
        if self.as_user:
            self.as_user.give([self.tmp] + args)
            cmd = self.as_user.wrap(cmd)
        try:
            p = subprocess.run(cmd, capture_output=True, env=e, input=input,
                               timeout=timeout, cwd=cwd or self.tmp)
        except subprocess.TimeoutExpired as ex:
            self.killed = True  # a killed build cannot clean up its work dir
            pytest.fail(f"ossb {' '.join(args)} did not finish within {timeout}s\n"
                        f"stderr so far:\n{(ex.stderr or b'').decode(errors='replace')}")
        return Result(args, p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace"))

    def build(self, context, *args, out=None, tag=None, **kw):
        """Build `context` into an OCI layout dir (returned as result.layout) unless
        `out` is False; any other args are passed through before the context."""
        a = ["build"]
        if tag:
            a += ["-t", tag]
        layout_dir = None
        if out is None:
            layout_dir = self.fresh("layout")
            a += ["--output", f"type=oci,dest={layout_dir}"]
        a += list(args) + [str(context)]
        r = self.run(*a, **kw)
        r.layout_dir = layout_dir
        return r

    def build_ok(self, context, *args, **kw):
        r = self.build(context, *args, **kw)
        assert r.returncode == 0, str(r)
        d = r.digest
        if r.layout_dir is not None:
            lay = Layout(r.layout_dir)
            lay.check_all_blobs()
            img = lay.image()
            assert img.digest == d, f"printed digest {d} is not index.json's {img.digest}"
            img.check_consistency()
            r.layout = lay
            r.image = img
        return r

    def check_no_leftovers(self):
        """Every cache dir the test used (direct children of its tmp dir) has no build work
        dir left, whatever the outcome of the builds (unless the test had to kill one)."""
        if self.killed:
            return
        for builds in self.tmp.glob("*/builds"):
            left = list(builds.iterdir())
            assert not left, f"build work dirs left behind: {left}"


@pytest.fixture(scope="session")
def ossb_binary():
    b = find_ossb()
    if not (b.is_file() and os.access(b, os.X_OK)):
        pytest.fail(f"ossb binary not found at {b} (set $OSSB or $OSSB_BUILDDIR; see conftest.py)", pytrace=False)
    return b


# --- ossb as a non-root user ---------------------------------------------------------------
# OSSB_TEST_AS_USER=UID (pytest itself stays root) makes the `ossb` fixture run every ossb
# command as UID, for the rootless suite (e.g. test_run.py as uid 65534).  OSSB_TEST_SUBID
# is that user's subordinate range "START:COUNT" (default 200000:65536), or "none" for the
# single-id fallback.  Used by test_rootless.py as well.  Pytest's temp root moves to a fresh
# world-traversable directory so that UID can reach the test directories.
AS_USER_UID = os.environ.get("OSSB_TEST_AS_USER")
if AS_USER_UID and IS_ROOT and not os.environ.get("PYTEST_DEBUG_TEMPROOT"):
    import tempfile as _tempfile
    _AS_USER_TEMPROOT = _tempfile.mkdtemp(prefix="ossb-it-as-user-")
    os.chmod(_AS_USER_TEMPROOT, 0o755)
    os.environ["PYTEST_DEBUG_TEMPROOT"] = _AS_USER_TEMPROOT
    import atexit as _atexit
    # registered before pytest's own clean-up of numbered dirs, so it runs after it
    _atexit.register(shutil.rmtree, _AS_USER_TEMPROOT, ignore_errors=True)


class AsUser:
    """Run ossb as `uid` with `setpriv`, inside a mount namespace of that command only
    (`unshare --mount`) in which fake /etc/subuid and /etc/subgid are bound over the real ones:
    they give the user `subid` = (start, count), or nothing when subid is None (the single-id
    fallback).  The real files are never changed.  Root only.

    The files a test makes for ossb are the user's own, as in real use: before each command,
    `give` hands what root made in the test's directory (and in the paths named on the command
    line) to the user; only paths inside `area` (the session's temp dirs) are ever changed."""

    def __init__(self, uid, subid, workdir, area):
        import pwd
        if not IS_ROOT:
            pytest.skip("running ossb as another user needs root")
        for tool in ("setpriv", "unshare"):
            need_tool(tool)
        for f in ("/etc/subuid", "/etc/subgid"):
            if not os.path.isfile(f):
                pytest.skip(f"{f} is missing (the fake one is bound over it)")
        self.uid = int(uid)
        try:
            self.gid = pwd.getpwuid(self.uid).pw_gid
        except KeyError:
            self.gid = self.uid
        self.subid = subid
        self.area = Path(area).resolve()
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        self.traverse(workdir)
        self.subid_file = workdir / f"subid-{self.uid}-{'none' if subid is None else '%d-%d' % subid}"
        self.subid_file.write_text("" if subid is None else f"{self.uid}:{subid[0]}:{subid[1]}\n")
        os.chmod(self.subid_file, 0o644)

    def traverse(self, path):
        """Let every user pass through `path` and its parents (search permission only; only
        directories inside the system's temp dir are changed)."""
        import tempfile
        top = Path(tempfile.gettempdir()).resolve()
        for d in [Path(path).resolve()] + list(Path(path).resolve().parents):
            st = d.stat()
            if st.st_mode & 0o001 or st.st_uid == self.uid:
                continue
            if d != top and top in d.parents and st.st_uid == 0:
                os.chmod(d, stat.S_IMODE(st.st_mode) | 0o001)
            else:
                pytest.fail(f"{d} cannot be passed through by other users: put the test directories elsewhere")

    def _inside(self, p):
        return p == self.area or self.area in p.parents

    def give(self, paths):
        """Hand root's files under each existing path inside `area` to the user.  Command-line
        arguments count as paths, and so does each value of a "k=v,k=v" argument."""
        seen = set()
        for a in paths:
            for piece in [str(a)] + [kv.partition("=")[2] for kv in str(a).split(",")]:
                if not piece.startswith("/"):
                    continue
                p = Path(piece).resolve()
                if p in seen or not self._inside(p) or not p.exists():
                    continue
                seen.add(p)
                self.traverse(p.parent)
                todo = [p]
                for root, dirs, files in os.walk(p):
                    todo += [Path(root, n) for n in dirs + files]
                for f in todo:
                    st = os.lstat(f)
                    if st.st_uid == 0:
                        os.lchown(f, self.uid, self.gid)
                        if st.st_mode & 0o6000 and not stat.S_ISLNK(st.st_mode):
                            os.chmod(f, stat.S_IMODE(st.st_mode))  # chown cleared setuid/setgid

    def wrap(self, argv):
        script = 'mount --bind "$1" /etc/subuid && mount --bind "$1" /etc/subgid && shift && exec "$@"'
        return (["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", str(self.subid_file),
                 "setpriv", f"--reuid={self.uid}", f"--regid={self.gid}", "--clear-groups", "--"] + list(argv))


def parse_subid(text):
    """OSSB_TEST_SUBID: "START:COUNT" -> (start, count); "none" -> None."""
    if text == "none":
        return None
    start, count = text.split(":")
    return int(start), int(count)


def open_fuse_device():
    """Distributions ship /dev/fuse mode 0666; some machines (this project's CI among them) have
    0600, so that only root could use FUSE: as root, give it the usual mode before ossb runs
    as another user with --snapshotter=fuse (or auto falling back to it)."""
    try:
        st = os.stat("/dev/fuse")
    except FileNotFoundError:
        return
    if os.geteuid() == 0 and (st.st_mode & 0o666) != 0o666:
        os.chmod("/dev/fuse", 0o666)


@pytest.fixture(scope="session")
def as_user_env(tmp_path_factory):
    """The AsUser of OSSB_TEST_AS_USER, or None when it is not set."""
    if not AS_USER_UID:
        return None
    open_fuse_device()
    return AsUser(AS_USER_UID, parse_subid(os.environ.get("OSSB_TEST_SUBID", "200000:65536")),
                  tmp_path_factory.mktemp("as-user"), tmp_path_factory.getbasetemp())


@pytest.fixture
def ossb(ossb_binary, tmp_path, as_user_env):
    o = Ossb(ossb_binary, tmp_path, as_user=as_user_env)
    yield o
    o.check_no_leftovers()
    # nothing written where the environment's defaults point
    assert not (tmp_path / "env-cache").exists(), "ossb used $OSSB_CACHE_DIR although --cache-dir was given"
    assert not (tmp_path / "home" / ".cache").exists(), "ossb wrote under $HOME/.cache although --cache-dir was given"


def write_tree(root, files):
    """Create files under root.  `files` maps a relative path to str/bytes content, or to a
    tuple (content, mode), or to None for a directory."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for rel, spec in files.items():
        p = root / rel
        if spec is None:
            p.mkdir(parents=True, exist_ok=True)
            continue
        mode = None
        if isinstance(spec, tuple):
            spec, mode = spec
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(spec, str):
            spec = spec.encode()
        p.write_bytes(spec)
        if mode is not None:
            os.chmod(p, mode)
    return root


def dockerfile(text):
    return textwrap.dedent(text).lstrip("\n")


@pytest.fixture
def context(tmp_path):
    """context(files, df=None, name='ctx') -> a context dir with the given files and Dockerfile."""
    n = [0]

    def make(files=None, df=None, name=None):
        n[0] += 1
        root = tmp_path / (name or f"ctx{n[0]}")
        write_tree(root, files or {})
        if df is not None:
            (root / "Dockerfile").write_text(dockerfile(df))
        return root

    return make


def assert_failed(r, code, *needles, dest=()):
    """The build failed with `code`, stderr names every needle, no output left at dest."""
    codes = code if isinstance(code, (tuple, list, set)) else (code,)
    assert r.returncode in codes, f"expected exit {code}\n{r}"
    assert "sha256:" not in r.stdout, f"a failed build printed a digest\n{r}"
    for n in needles:
        if isinstance(n, re.Pattern):
            assert n.search(r.stderr), f"stderr does not match {n.pattern!r}\n{r}"
        else:
            assert n in r.stderr, f"stderr does not name {n!r}\n{r}"
    for d in dest:
        assert not os.path.lexists(d), f"a failed build left {d} behind\n{r}"


# --- registries (tests/integration/registry.py; appended for the registry tests) ----------
# Imported here so that every test module can use them; the hook adds the logs of the live
# registries, token servers and fault proxies to the report of a failed test.
from registry import (fault_proxy, module_registry_factory, pytest_runtest_makereport, registry_env,  # noqa: E402,F401
                      registry_factory, seeded_registry, system_certs_d)
