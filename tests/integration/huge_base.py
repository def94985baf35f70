"""A huge base image for the lazy-pull tests (test_lazy_huge.py), made offline and cached.

The image: debian_base.py's Debian bookworm minbase (one layer) plus four generated layers,
about 1.6 GiB uncompressed and 36,000 files in five layers, shaped like the bench harness's
huge:latest:

    layer 2  /opt/huge/text    20,000 text files of 1 B - 20 KiB (word soup, compressible)
    layer 3  /opt/huge/blobs   10,000 random files of 30 KiB (incompressible)
    layer 4  /opt/huge/big     three random files of 200, 150 and 100 MiB
    layer 5  /opt/huge/extra   a 350 MiB log-like text file, a 150 MiB random file, 5 small files

Contents come from seeded generators (random.Random), entries are sorted, owners 0:0, mtimes
fixed: the image is the same on every machine for one VERSION.  It is written once as an OCI
layout with gzip -1 layers (the plain-gzip variant, and the source every other variant is
converted from) under $OSSB_TEST_CACHE/huge-base-VERSION/plain (default /var/cache/ossb-tests),
through a temporary directory renamed into place, under the cache's lock.

The variants made by independent tools are cached beside it, keyed by the tool's version, since
they depend only on the plain layout and the tool:
    skopeo-zstdchunked-<skopeo version>/    skopeo copy --dest-compress-format zstd:chunked
    ctr-remote-estargz-<package version>/   ctr-remote images convert --estargz --oci, in a
                                            private containerd (root, state and socket in a
                                            temporary directory; stopped right after)
The variants ossb makes (`ossb convert`) are never cached: they are the code under test.

Change VERSION whenever the generated contents change; old cache entries can be deleted by hand
(rm -rf /var/cache/ossb-tests/huge-base-*)."""
import fcntl
import hashlib
import io
import json
import os
import random
import shutil
import signal
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path

import images
from debian_base import CACHE_DIR, DEBIAN_CONFIG, rootfs_entries

VERSION = "v1"
TAG = "base"
MTIME = 1700000000
MIN_UNCOMPRESSED = 3 << 29  # 1.5 GiB
MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
REF_NAME = "org.opencontainers.image.ref.name"
MIB = 1 << 20


def base_dir():
    return CACHE_DIR / f"huge-base-{VERSION}"


# --- generators --------------------------------------------------------------------------------

WORDS = ("alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma "
         "tau upsilon phi chi psi omega static const int char void return struct include define buffer "
         "layer image manifest digest config index registry upload chunk range snapshot overlay whiteout "
         "opaque tar gzip zstd the of and to in is for on with as by at from that this be are").split()


def word_soup(rng, size):
    """`size` bytes of lines of random words."""
    out, n = [], 0
    while n < size:
        line = " ".join(rng.choices(WORDS, k=rng.randint(4, 13))) + "\n"
        out.append(line)
        n += len(line)
    return "".join(out).encode()[:size]


def log_text(rng, size):
    """`size` bytes of log-like lines (compresses about 5x with gzip -1)."""
    methods = ["GET", "POST", "PUT", "DELETE", "HEAD"]
    codes = ["200", "200", "200", "201", "204", "304", "404", "500"]
    parts, n, t = [], 0, 0
    while n < size:
        t += rng.randint(0, 900)
        line = (f"2025-05-{1 + t // 86400000 % 28:02d} {t // 3600000 % 24:02d}:{t // 60000 % 60:02d}:"
                f"{t // 1000 % 60:02d}.{t % 1000:03d} INFO worker-{rng.randint(0, 15)} {rng.choice(methods)} "
                f"/api/v1/items/{rng.randint(0, 99999)} status={rng.choice(codes)} bytes={rng.randint(0, 65535)} "
                f"id={rng.getrandbits(32):08x}\n")
        parts.append(line)
        n += len(line)
    return "".join(parts).encode()[:size]


def _dir(name):
    return ("dir", name, None)


def _file(name, data):
    return ("file", name, data)


def layer_text():
    rng = random.Random(2)
    corpus = word_soup(rng, 8 * MIB)
    yield _dir("opt")
    yield _dir("opt/huge")
    yield _dir("opt/huge/text")
    for d in range(200):
        yield _dir(f"opt/huge/text/d{d:03d}")
        for f in range(d, 20000, 200):
            size = rng.randint(1, 20480)
            off = rng.randrange(0, len(corpus) - size)
            head = f"file {f:05d}\n".encode()
            yield _file(f"opt/huge/text/d{d:03d}/f{f:05d}.txt", (head + corpus[off:off + size])[:size])


def layer_blobs():
    rng = random.Random(3)
    yield _dir("opt")
    yield _dir("opt/huge")
    yield _dir("opt/huge/blobs")
    for d in range(100):
        yield _dir(f"opt/huge/blobs/r{d:03d}")
        for f in range(100):
            yield _file(f"opt/huge/blobs/r{d:03d}/b{f:04d}.bin", rng.randbytes(30720))


def layer_big():
    rng = random.Random(4)
    yield _dir("opt")
    yield _dir("opt/huge")
    yield _dir("opt/huge/big")
    for name, mib in (("random-100m.bin", 100), ("random-150m.bin", 150), ("random-200m.bin", 200)):
        yield _file(f"opt/huge/big/{name}", rng.randbytes(mib * MIB))


def layer_extra():
    rng = random.Random(5)
    yield _dir("opt")
    yield _dir("opt/huge")
    yield _dir("opt/huge/extra")
    yield _dir("opt/huge/extra/data")
    yield _file("opt/huge/extra/data/model-150m.bin", rng.randbytes(150 * MIB))
    yield _dir("opt/huge/extra/etc")
    for i in range(5):
        yield _file(f"opt/huge/extra/etc/settings{i}.conf", word_soup(rng, rng.randint(100, 4096)))
    yield _dir("opt/huge/extra/logs")
    yield _file("opt/huge/extra/logs/app.log", log_text(rng, 350 * MIB))


GENERATED = (layer_text, layer_blobs, layer_big, layer_extra)


# --- writing a layer: tar -> gzip -1 --------------------------------------------------------------


class _HashingWriter:
    """A file object that hashes and counts what passes through to `out`."""

    def __init__(self, out):
        self.out = out
        self.h = hashlib.sha256()
        self.n = 0

    def write(self, b):
        self.h.update(b)
        self.n += len(b)
        self.out.write(b)
        return len(b)


def _gzip_layer(write_tar, blobs_dir):
    """Run write_tar(fileobj) into `gzip -1 -n`; returns (descriptor, diff_id, uncompressed size)."""
    fd, tmp = tempfile.mkstemp(dir=blobs_dir, prefix=".layer.")
    with os.fdopen(fd, "wb") as out:
        gz = subprocess.Popen(["gzip", "-1", "-n", "-c"], stdin=subprocess.PIPE, stdout=out)
        hw = _HashingWriter(gz.stdin)
        try:
            write_tar(hw)
        finally:
            gz.stdin.close()
            rc = gz.wait()
        if rc != 0:
            raise RuntimeError(f"gzip exited {rc}")
    h = hashlib.sha256()
    with open(tmp, "rb") as f:
        while True:
            b = f.read(4 * MIB)
            if not b:
                break
            h.update(b)
    digest = "sha256:" + h.hexdigest()
    os.chmod(tmp, 0o644)
    os.rename(tmp, blobs_dir / digest[7:])
    return ({"mediaType": MT_GZIP, "digest": digest, "size": os.path.getsize(blobs_dir / digest[7:])},
            "sha256:" + hw.h.hexdigest(), hw.n)


def _write_generated(gen, out):
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tf:
        for kind, name, data in gen():
            ti = tarfile.TarInfo(name)
            ti.mtime = MTIME
            ti.uid = ti.gid = 0
            if kind == "dir":
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
                tf.addfile(ti)
            else:
                ti.mode, ti.size = 0o644, len(data)
                tf.addfile(ti, io.BytesIO(data))


def _blob(d, obj):
    data = json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    (d / "blobs" / "sha256" / digest[7:]).write_bytes(data)
    return data, digest


def write_plain_layout(dest, debian_tar):
    """The plain (gzip -1) layout at `dest` (a new directory); returns the uncompressed size."""
    blobs = dest / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    (dest / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    debian_raw = images.tar_bytes(rootfs_entries(debian_tar))
    layers = [lambda out: out.write(debian_raw)] + [lambda out, g=g: _write_generated(g, out) for g in GENERATED]
    descs, diff_ids, total = [], [], 0
    for w in layers:
        desc, diff_id, n = _gzip_layer(w, blobs)
        descs.append(desc)
        diff_ids.append(diff_id)
        total += n
    created = "2023-11-14T22:13:20Z"
    cfg = {"created": created, "architecture": "amd64", "os": "linux", "config": dict(DEBIAN_CONFIG),
           "rootfs": {"type": "layers", "diff_ids": diff_ids},
           "history": [{"created": created, "created_by": f"ossb tests: huge base layer {i + 1}"}
                       for i in range(len(descs))]}
    cfg_data, cfg_digest = _blob(dest, cfg)
    man = {"schemaVersion": 2, "mediaType": MT_MANIFEST,
           "config": {"mediaType": MT_CONFIG, "digest": cfg_digest, "size": len(cfg_data)}, "layers": descs}
    man_data, man_digest = _blob(dest, man)
    index = {"schemaVersion": 2, "mediaType": MT_INDEX,
             "manifests": [{"mediaType": MT_MANIFEST, "digest": man_digest, "size": len(man_data),
                            "annotations": {REF_NAME: TAG}}]}
    (dest / "index.json").write_text(json.dumps(index))
    (dest / "uncompressed-size").write_text(f"{total}\n")
    return total


# --- the cache ---------------------------------------------------------------------------------


def _cached(name, make):
    """CACHE/huge-base-VERSION/NAME, made by make(tmpdir) when missing (under the cache's lock,
    through a temporary name); returns (path, seconds spent making it or 0)."""
    dest = base_dir() / name
    if dest.is_dir():
        return dest, 0.0
    base_dir().mkdir(parents=True, exist_ok=True)
    with open(CACHE_DIR / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if dest.is_dir():
            return dest, 0.0
        for stale in base_dir().glob(f".{name}.*"):
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=base_dir()))
        started = time.monotonic()
        try:
            make(tmp / "out")
            os.rename(tmp / "out", dest)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return dest, time.monotonic() - started


def plain_layout(debian_tar):
    """(layout dir, seconds spent) of the plain gzip base; the tag is TAG."""
    def make(d):
        total = write_plain_layout(d, debian_tar)
        if total < MIN_UNCOMPRESSED:
            raise RuntimeError(f"the huge base is only {total} bytes uncompressed")
    return _cached("plain", make)


def uncompressed_size(layout):
    return int((Path(layout) / "uncompressed-size").read_text())


def tool_version(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True)
    return "".join(c if c.isalnum() or c in ".-+" else "_" for c in p.stdout.strip().split()[-1]) or "unknown"


def skopeo_zstd_chunked(plain):
    """(layout dir, seconds) of skopeo's zstd:chunked copy of the plain layout."""
    ver = tool_version(["skopeo", "--version"])

    def make(d):
        subprocess.run(["skopeo", "copy", "-q", "--dest-compress-format", "zstd:chunked", "--dest-compress-level",
                        "1", f"oci:{plain}:{TAG}", f"oci:{d}:{TAG}"], check=True, capture_output=True,
                       timeout=1800)
    return _cached(f"skopeo-zstdchunked-{ver}", make)


# --- ctr-remote in a private containerd -----------------------------------------------------------


class ContainerdUnavailable(Exception):
    """The private containerd could not run here (the message says why, with its log)."""


class PrivateContainerd:
    """containerd with its root, state and sockets in `workdir`, no CRI, for ctr-remote."""

    def __init__(self, workdir):
        self.dir = Path(workdir)
        self.sock = self.dir / "containerd.sock"
        self.proc = None

    def ctr(self, *args, timeout=1800, **kw):
        return subprocess.run(["ctr-remote", "-a", str(self.sock), "-n", "ossb-tests", *map(str, args)],
                              capture_output=True, text=True, timeout=timeout, **kw)

    def start(self):
        if os.geteuid() != 0:
            raise ContainerdUnavailable("containerd needs root")
        for tool in ("containerd", "ctr-remote"):
            if not shutil.which(tool):
                raise ContainerdUnavailable(f"`{tool}` is not installed")
        self.dir.mkdir(parents=True, exist_ok=True)
        conf = self.dir / "config.toml"
        conf.write_text(f'version = 2\nroot = "{self.dir}/root"\nstate = "{self.dir}/state"\n'
                        'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
                        f'[grpc]\n  address = "{self.sock}"\n[ttrpc]\n  address = "{self.sock}.ttrpc"\n'
                        f'[debug]\n  address = "{self.sock}.debug"\n')
        self.log = open(self.dir / "containerd.log", "ab")
        self.proc = subprocess.Popen(["containerd", "--config", str(conf)], stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            if self.sock.exists() and self.ctr("version", timeout=10).returncode == 0:
                return self
            time.sleep(0.2)
        self.stop()
        tail = (self.dir / "containerd.log").read_text(errors="replace")[-3000:]
        raise ContainerdUnavailable(f"the private containerd did not come up (exit {self.proc.returncode}); "
                                    f"its log:\n{tail}")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if getattr(self, "log", None):
            self.log.close()
            self.log = None

    def check(self, p, what):
        if p.returncode != 0:
            raise RuntimeError(f"ctr-remote {what} exited {p.returncode}\n{p.stdout[-2000:]}\n{p.stderr[-3000:]}")
        return p


def ctr_remote_estargz(plain, workdir):
    """(layout dir, seconds) of ctr-remote's eStargz conversion of the plain layout (gzip level 1
    for speed).  Raises ContainerdUnavailable when the private containerd cannot run."""
    ver = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "stargz-snapshotter"], capture_output=True,
                         text=True).stdout.strip() or "unknown"
    ver = "".join(c if c.isalnum() or c in ".-+" else "_" for c in ver)
    dest = base_dir() / f"ctr-remote-estargz-{ver}"
    if dest.is_dir():
        return dest, 0.0
    cd = PrivateContainerd(Path(workdir) / "containerd")
    cd.start()

    def make(d):
        dst = "localhost/ossb-tests/huge:esgz"
        tar = subprocess.Popen(["tar", "-C", str(plain), "-c", "oci-layout", "index.json", "blobs"],
                               stdout=subprocess.PIPE)
        try:
            p = cd.ctr("images", "import", "--no-unpack", "--base-name", "localhost/ossb-tests/huge", "-",
                       stdin=tar.stdout)
        finally:
            tar.stdout.close()
            tar.wait()
        cd.check(p, "images import")
        names = cd.check(cd.ctr("images", "ls", "-q"), "images ls").stdout.split()
        named = [n for n in names if n.endswith(":" + TAG)]
        if not named:
            raise RuntimeError(f"ctr-remote images import made no image tagged {TAG}: {names}")
        cd.check(cd.ctr("images", "convert", "--estargz", "--oci", "--estargz-compression-level", "1",
                        named[0], dst), "images convert --estargz")
        archive = Path(workdir) / "esgz.tar"
        cd.check(cd.ctr("images", "export", "--skip-manifest-json", archive, dst), "images export")
        d.mkdir()
        subprocess.run(["tar", "-C", str(d), "-xf", str(archive)], check=True)
        archive.unlink()
        # the layout's manifest entry: tag it TAG for `oci:DIR:TAG`
        idx = json.loads((d / "index.json").read_text())
        for m in idx["manifests"]:
            m.setdefault("annotations", {})[REF_NAME] = TAG
        (d / "index.json").write_text(json.dumps(idx))

    try:
        return _cached(dest.name, make)
    finally:
        cd.stop()
        shutil.rmtree(cd.dir, ignore_errors=True)


# --- reading manifests -------------------------------------------------------------------------


def layout_manifest(layout):
    d = Path(layout)
    idx = json.loads((d / "index.json").read_text())
    desc = idx["manifests"][0]
    return json.loads((d / "blobs" / "sha256" / desc["digest"][7:]).read_text())
