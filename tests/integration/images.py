"""Base images the registry tests make offline (Python standard library, plus the `zstd`,
`dpkg-deb` and `skopeo` programs).

Everything here is deterministic: layer tars list their entries sorted by path with fixed
mtimes, owners and modes; gzip members carry mtime 0; configs have fixed "created" dates.  The
same inputs give the same digests on every run, so tests can name expected digests.

What the images hold:
  busybox_rootfs(binary)   /bin/busybox (from busybox-static) plus applet symlinks, /etc/passwd,
                           /etc/group, /tmp (1777), /root (0700) and a few empty dirs.
  image_plain()            one gzip layer: the rootfs.  A config with every inheritable field.
  image_layered()          three layers: rootfs; /data and /opt files plus a hard link; then a
                           whiteout of /data/b.txt and an opaque /opt (only /opt/new.txt left).
  image_zstd()             image_plain() with a zstd layer.
  index_two_platforms()    an OCI index: linux/amd64 (local busybox) + linux/arm64 (busybox from
                           the busybox-static arm64 .deb of tools/fetch-test-debs.sh).
Expected trees: expected_rootfs(...) and LAYERED_EXPECTED describe what a correct pull/unpack
gives, for comparing with what ossb and skopeo/umoci produce.

Write with write_layout(dir, {tag: image or index}); push with skopeo (registry.Registry.push).
"""
import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

MT_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MT_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER = "application/vnd.oci.image.layer.v1.tar"
MT_LAYER_GZIP = MT_LAYER + "+gzip"
MT_LAYER_ZSTD = MT_LAYER + "+zstd"
REF_NAME = "org.opencontainers.image.ref.name"

FIXED_MTIME = 1700000000  # 2023-11-14T22:13:20Z, every entry of every layer
CREATED = "2023-11-14T22:13:20Z"
BUSYBOX = "/bin/busybox"
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

APPLETS = ["sh", "ash", "ls", "cat", "echo", "mkdir", "rm", "rmdir", "cp", "mv", "ln", "chmod", "chown",
           "touch", "true", "false", "env", "id", "test", "[", "printf", "sed", "grep", "head", "tail", "wc",
           "sleep", "stat", "find", "readlink", "uname", "whoami", "tar", "gzip", "sort", "pwd", "date"]
PASSWD = ("root:x:0:0:root:/root:/bin/sh\n"
          "daemon:x:1:1:daemon:/usr/sbin:/bin/false\n"
          "app:x:1000:1000:app:/home/app:/bin/sh\n"
          "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")
GROUP = "root:x:0:\ndaemon:x:1:\napp:x:1000:\nnogroup:x:65534:\n"

# The config of every busybox image here: each field the engine must inherit from a base.
BASE_CONFIG = {
    "User": "0:0",
    "Env": [PATH_ENV, "BASE_VAR=from-base"],
    "Cmd": ["sh"],
    "WorkingDir": "/root",
    "ExposedPorts": {"8080/tcp": {}},
    "Volumes": {"/data/vol": {}},
    "Labels": {"org.opencontainers.image.title": "ossb test busybox", "org.example.base": "busybox"},
    "StopSignal": "SIGTERM",
    "Healthcheck": {"Test": ["CMD-SHELL", "true"], "Interval": 30000000000, "Retries": 3},
    "Shell": ["/bin/sh", "-c"],
}


# --- layer entries --------------------------------------------------------------------------


@dataclass
class Ent:
    """One tar entry.  kind: file, dir, symlink, hardlink."""
    path: str
    kind: str = "file"
    data: bytes = b""
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    link: str = ""


def F(path, data, mode=0o644, uid=0, gid=0):
    if isinstance(data, str):
        data = data.encode()
    return Ent(path, "file", data, mode, uid, gid)


def D(path, mode=0o755, uid=0, gid=0):
    return Ent(path, "dir", b"", mode, uid, gid)


def S(path, target):
    return Ent(path, "symlink", b"", 0o777, 0, 0, target)


def H(path, target):
    """A hard link to `target` (a path in the same layer, written before this entry)."""
    return Ent(path, "hardlink", b"", 0o644, 0, 0, target)


def WH(path):
    """Whiteout: deletes `path` of the layers below."""
    d, _, base = path.rpartition("/")
    return F((d + "/" if d else "") + ".wh." + base, b"", 0o644)


def OPQ(dirpath):
    """Opaque marker: hides everything below `dirpath` in the layers below."""
    return F(dirpath.rstrip("/") + "/.wh..wh..opq", b"", 0o644)


def _sort_key(e):
    return e.path.strip("/").split("/")


def tar_bytes(entries):
    """A deterministic uncompressed tar: entries sorted by path components (parents first),
    hard links after their targets, fixed mtime, numeric owners only."""
    ents = sorted(entries, key=_sort_key)
    seen = set()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for e in ents:
            name = e.path.strip("/")
            ti = tarfile.TarInfo(name + ("/" if e.kind == "dir" else ""))
            ti.mtime = FIXED_MTIME
            ti.mode = e.mode
            ti.uid, ti.gid = e.uid, e.gid
            ti.uname = ti.gname = ""
            data = None
            if e.kind == "file":
                ti.type = tarfile.REGTYPE
                ti.size = len(e.data)
                data = io.BytesIO(e.data)
            elif e.kind == "dir":
                ti.type = tarfile.DIRTYPE
            elif e.kind == "symlink":
                ti.type = tarfile.SYMTYPE
                ti.linkname = e.link
            elif e.kind == "hardlink":
                assert e.link.strip("/") in seen, f"hard link {e.path} before its target {e.link}"
                ti.type = tarfile.LNKTYPE
                ti.linkname = e.link.strip("/")
            else:
                raise ValueError(e.kind)
            tf.addfile(ti, data)
            seen.add(name)
    return buf.getvalue()


def gzip_bytes(raw):
    return gzip.compress(raw, compresslevel=6, mtime=0)


def zstd_bytes(raw):
    zstd = shutil.which("zstd")
    if not zstd:
        raise RuntimeError("`zstd` is not installed")
    p = subprocess.run([zstd, "-q", "-c", "-3", "--no-progress"], input=raw, capture_output=True, check=True)
    return p.stdout


def digest(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


# --- images and indexes ---------------------------------------------------------------------


@dataclass
class Image:
    manifest: bytes
    config: bytes
    blobs: dict  # digest -> bytes (layers and config)
    platform: dict
    layer_tars: list = field(default_factory=list)  # uncompressed, in order

    @property
    def digest(self):
        return digest(self.manifest)

    @property
    def descriptor(self):
        return {"mediaType": MT_OCI_MANIFEST, "digest": self.digest, "size": len(self.manifest),
                "platform": dict(self.platform)}

    def all_blobs(self):
        out = dict(self.blobs)
        out[self.digest] = self.manifest
        return out

    @property
    def manifest_json(self):
        return json.loads(self.manifest)

    @property
    def config_json(self):
        return json.loads(self.config)

    def layer_digests(self):
        return [d["digest"] for d in self.manifest_json["layers"]]


@dataclass
class Index:
    index: bytes
    images: list

    @property
    def digest(self):
        return digest(self.index)

    def all_blobs(self):
        out = {}
        for im in self.images:
            out.update(im.all_blobs())
        out[self.digest] = self.index
        return out


def canonical(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def make_image(layers, config=None, arch="amd64", os_="linux", variant=None, compression="gzip",
               history=None, annotations=None):
    """An OCI image from `layers` (each a list of Ent).  config: the "config" part (defaults to
    BASE_CONFIG).  compression: gzip, zstd or none."""
    blobs = {}
    descs = []
    diff_ids = []
    tars = []
    for ents in layers:
        raw = tar_bytes(ents)
        tars.append(raw)
        diff_ids.append(digest(raw))
        if compression == "gzip":
            blob, mt = gzip_bytes(raw), MT_LAYER_GZIP
        elif compression == "zstd":
            blob, mt = zstd_bytes(raw), MT_LAYER_ZSTD
        elif compression == "none":
            blob, mt = raw, MT_LAYER
        else:
            raise ValueError(compression)
        blobs[digest(blob)] = blob
        descs.append({"mediaType": mt, "digest": digest(blob), "size": len(blob)})
    platform = {"architecture": arch, "os": os_}
    if variant:
        platform["variant"] = variant
    cfg = {
        "created": CREATED,
        "architecture": arch,
        "os": os_,
        "config": dict(BASE_CONFIG if config is None else config),
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": history or [{"created": CREATED, "created_by": f"ossb tests: layer {i}"}
                               for i in range(len(layers))],
    }
    if variant:
        cfg["variant"] = variant
    cfg_bytes = canonical(cfg)
    blobs[digest(cfg_bytes)] = cfg_bytes
    manifest = {
        "schemaVersion": 2,
        "mediaType": MT_OCI_MANIFEST,
        "config": {"mediaType": MT_OCI_CONFIG, "digest": digest(cfg_bytes), "size": len(cfg_bytes)},
        "layers": descs,
    }
    if annotations:
        manifest["annotations"] = dict(annotations)
    return Image(canonical(manifest), cfg_bytes, blobs, platform, tars)


def make_index(images, annotations=None):
    idx = {"schemaVersion": 2, "mediaType": MT_OCI_INDEX, "manifests": [im.descriptor for im in images]}
    if annotations:
        idx["annotations"] = dict(annotations)
    return Index(canonical(idx), list(images))


def write_layout(path, tags):
    """Write an OCI image layout at `path` holding {tag: Image or Index}.  An Index is referenced
    from index.json as a nested index (skopeo copy --all pushes every platform)."""
    path = Path(path)
    (path / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    (path / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    manifests = []
    for tag, obj in tags.items():
        for d, data in obj.all_blobs().items():
            f = path / "blobs" / "sha256" / d[7:]
            if not f.exists():
                f.write_bytes(data)
        if isinstance(obj, Index):
            desc = {"mediaType": MT_OCI_INDEX, "digest": obj.digest, "size": len(obj.index)}
        else:
            desc = {"mediaType": MT_OCI_MANIFEST, "digest": obj.digest, "size": len(obj.manifest)}
        desc["annotations"] = {REF_NAME: tag}
        manifests.append(desc)
    (path / "index.json").write_bytes(canonical({"schemaVersion": 2, "mediaType": MT_OCI_INDEX,
                                                 "manifests": manifests}))
    return path


# --- busybox --------------------------------------------------------------------------------


def busybox_binary():
    p = Path(BUSYBOX)
    if not p.is_file():
        raise RuntimeError(f"{BUSYBOX} is missing (Debian package busybox-static)")
    return p.read_bytes()


def busybox_rootfs(binary=None):
    binary = busybox_binary() if binary is None else binary
    ents = [D("bin"), F("bin/busybox", binary, 0o755), D("etc"), F("etc/passwd", PASSWD), F("etc/group", GROUP),
            D("tmp", 0o1777), D("root", 0o700), D("home"), D("home/app", 0o755, 1000, 1000), D("var"),
            D("var/tmp", 0o1777), D("usr"), D("usr/bin"), D("dev"), D("proc"), D("sys"), D("data"),
            F("etc/os-release", 'NAME="ossb test busybox"\nID=busybox\n')]
    ents += [S("bin/" + a, "busybox") for a in APPLETS]
    ents.append(S("usr/bin/env", "/bin/env"))
    return ents


def expected_rootfs(ents):
    """{path: (kind, data or link target, mode, uid, gid)} of a tree made of `ents` (one layer,
    no whiteouts).  Hard links are reported as files with their target's data."""
    out = {}
    for e in ents:
        p = e.path.strip("/")
        if e.kind == "hardlink":
            k, data, mode, uid, gid = out[e.link.strip("/")]
            out[p] = (k, data, mode, uid, gid)
        elif e.kind == "symlink":
            out[p] = ("symlink", e.link, None, e.uid, e.gid)
        else:
            out[p] = (e.kind, e.data if e.kind == "file" else None, e.mode, e.uid, e.gid)
    return out


def image_plain(binary=None, arch="amd64", compression="gzip", config=None):
    return make_image([busybox_rootfs(binary)], config=config, arch=arch, compression=compression)


def image_zstd(binary=None):
    return image_plain(binary, compression="zstd")


LAYER2 = [D("data"), F("data/a.txt", "a\n"), F("data/b.txt", "b\n"), D("data/sub"), F("data/sub/c.txt", "c\n"),
          H("data/link-to-a", "data/a.txt"), D("opt"), F("opt/keep.txt", "old\n"), D("opt/gone"),
          F("opt/gone/x.txt", "x\n")]
LAYER3 = [D("data"), WH("data/b.txt"), D("opt"), OPQ("opt"), F("opt/new.txt", "new\n"),
          F("data/sub/c.txt", "c2\n", 0o600)]
# What /data and /opt hold after the three layers of image_layered() are applied.
LAYERED_EXPECTED = {
    "data/a.txt": b"a\n",
    "data/link-to-a": b"a\n",
    "data/sub/c.txt": b"c2\n",
    "opt/new.txt": b"new\n",
}
LAYERED_ABSENT = ["data/b.txt", "opt/keep.txt", "opt/gone", "opt/gone/x.txt"]


def image_layered(binary=None):
    return make_image([busybox_rootfs(binary), LAYER2, LAYER3])


# --- the arm64 busybox from a Debian package ------------------------------------------------


def debs_dir():
    return Path(os.environ.get("OSSB_TEST_DEBS") or "/var/cache/ossb-test-debs")


def arm64_deb():
    """The busybox-static arm64 .deb fetched by tools/fetch-test-debs.sh, or None."""
    d = debs_dir()
    debs = sorted(d.glob("busybox-static_*_arm64.deb")) if d.is_dir() else []
    return debs[-1] if debs else None


def busybox_from_deb(deb):
    dpkg_deb = shutil.which("dpkg-deb")
    if not dpkg_deb:
        raise RuntimeError("`dpkg-deb` is not installed")
    with tempfile.TemporaryDirectory(prefix="ossb-deb-") as t:
        subprocess.run([dpkg_deb, "-x", str(deb), t], check=True, capture_output=True)
        for cand in ("bin/busybox", "usr/bin/busybox"):
            p = Path(t) / cand
            if p.is_file():
                return p.read_bytes()
    raise RuntimeError(f"{deb}: no bin/busybox inside")


ARM64_SKIP_REASON = ("the busybox-static arm64 .deb is not in $OSSB_TEST_DEBS or /var/cache/ossb-test-debs: "
                     "run tools/fetch-test-debs.sh")


def index_two_platforms():
    """(Index of linux/amd64 + linux/arm64/v8, amd64 Image, arm64 Image); None when the arm64 deb
    is absent (callers skip with ARM64_SKIP_REASON)."""
    deb = arm64_deb()
    if deb is None:
        return None
    amd = image_plain(arch="amd64")
    arm_bin = busybox_from_deb(deb)
    arm = make_image([busybox_rootfs(arm_bin)], arch="arm64", variant="v8")
    return make_index([amd, arm]), amd, arm


def elf_machine(data):
    """e_machine of an ELF file: 62 x86-64, 183 aarch64."""
    assert data[:4] == b"\x7fELF", "not an ELF file"
    return int.from_bytes(data[18:20], "little" if data[5] == 1 else "big")


ELF_X86_64 = 62
ELF_AARCH64 = 183


# --- reading images back (from an OCI layout anyone wrote) ---------------------------------

MT_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MT_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
INDEX_TYPES = (MT_OCI_INDEX, MT_DOCKER_LIST)


def decompress(blob):
    """A layer blob's tar, whatever its compression (by magic bytes: gzip, zstd, none)."""
    if blob[:2] == b"\x1f\x8b":
        return gzip.decompress(blob)
    if blob[:4] == b"\x28\xb5\x2f\xfd":
        return subprocess.run([shutil.which("zstd") or "zstd", "-dc"], input=blob, capture_output=True,
                              check=True).stdout
    return blob


@dataclass
class Loaded:
    manifest_bytes: bytes
    manifest: dict
    config_bytes: bytes
    config: dict
    layer_blobs: list
    layer_tars: list

    @property
    def digest(self):
        return digest(self.manifest_bytes)

    @property
    def media_type(self):
        return self.manifest.get("mediaType")

    def rootfs(self):
        from conftest import apply_layers  # late: conftest imports this module's importers
        return apply_layers(self.layer_tars)


def load_layout_image(path, arch=None):
    """The image of an OCI layout dir (OCI or Docker schema 2 media types), descending into a
    nested index (choosing `arch`, default the first entry).  Every blob is checked against its
    digest."""
    path = Path(path)

    def blob(d):
        data = (path / "blobs" / d.split(":")[0] / d.split(":")[1]).read_bytes()
        assert digest(data) == d, f"{path}: blob {d} does not hash to its name"
        return data

    idx = json.loads((path / "index.json").read_text())
    desc = idx["manifests"][0]
    data = blob(desc["digest"])
    doc = json.loads(data)
    while doc.get("mediaType", desc.get("mediaType")) in INDEX_TYPES or "manifests" in doc:
        ms = doc["manifests"]
        if arch:
            ms = [m for m in ms if m.get("platform", {}).get("architecture") == arch]
            assert ms, f"{path}: no {arch} manifest in the index"
        desc = ms[0]
        data = blob(desc["digest"])
        doc = json.loads(data)
    cfg_bytes = blob(doc["config"]["digest"])
    blobs = [blob(d["digest"]) for d in doc["layers"]]
    return Loaded(data, doc, cfg_bytes, json.loads(cfg_bytes), blobs, [decompress(b) for b in blobs])


def tree_summary(fs):
    """{path: (type, mode, uid, gid, content or link target)} of an apply_layers() tree."""
    out = {}
    for p, e in fs.items():
        ti = e.info
        if ti.isdir():
            kind, what = "dir", None
        elif ti.issym():
            kind, what = "symlink", ti.linkname
        elif ti.isreg() or ti.islnk():
            kind, what = "file", e.data
        else:
            kind, what = f"type{ti.type!r}", None
        out[p] = (kind, ti.mode & 0o7777 if kind != "symlink" else None, ti.uid, ti.gid, what)
    return out


def tree_diff(a, b, limit=20):
    """Differences between two tree_summary() dicts, as readable lines ([] when equal)."""
    out = []
    for p in sorted(set(a) | set(b)):
        if p not in a:
            out.append(f"only in second: {p}")
        elif p not in b:
            out.append(f"only in first: {p}")
        elif a[p] != b[p]:
            sa = a[p][:4] + ((a[p][4][:40] if isinstance(a[p][4], (bytes, str)) else a[p][4]),)
            sb = b[p][:4] + ((b[p][4][:40] if isinstance(b[p][4], (bytes, str)) else b[p][4]),)
            out.append(f"{p}: {sa} != {sb}")
        if len(out) >= limit:
            out.append("...")
            break
    return out


def expected_tree(ents_layers):
    """tree_summary() of what `ents_layers` (lists of Ent, applied in order) should unpack to."""
    from conftest import apply_layers
    return tree_summary(apply_layers([tar_bytes(ents) for ents in ents_layers]))
