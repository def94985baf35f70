"""RUN steps checked against another builder: each Dockerfile of dockerfiles/run-*/ is built by
ossb (with each snapshotter) and by Debian's buildah (as root, vfs storage in the test's own
directory, one squashed layer, OCI format) FROM the same base in the test registry, and the
images are compared with imagecmp.py: the same files with the same type, mode, owner, size,
content, link target, hard-link groups and xattrs, and the same config fields (timestamps are
not compared).  Each path left out of a comparison says why below (CASES).  The
Dockerfiles run on the busybox base with a hard link, a whiteout and an opaque directory in its
layers (busybox:layered), several also on a Debian bookworm minbase image (debian_base.py);
a few of ossb's images are pushed with `ossb build --push` and run with podman.

Needs root and buildah (skipped, saying so, when buildah is not installed); the Debian cases
also need debootstrap (and the network once per machine to reach the apt mirror)."""
import gzip
import hashlib
import io
import json
import secrets
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import imagecmp
import images
from conftest import BUILD_TIMEOUT, IS_ROOT, need_tool
from debian_base import TAG as DEBIAN_TAG
from debian_base import debian_base, debian_layout, debian_rootfs_tar  # noqa: F401 (fixtures)
from registry import CLEAN_ENV

DOCKERFILES = Path(__file__).resolve().parent / "dockerfiles"
SNAPSHOTTERS = ["overlay", "fuse", "native"]
BUSYBOX_TAG = "busybox:layered"  # images.image_layered(): base whiteout, opaque dir, hard link
SECRET = "cmp-secret-" + secrets.token_hex(12)  # never in an image, a config or a log

# buildah stamps its own version into every image's labels: not the Dockerfile's content
BUILDAH_LABELS = ("io.buildah.version",)
# What buildah commits that BuildKit (ossb's reference) does not: the mount points of the files
# it bind-mounts into every RUN container (/etc/hosts, /etc/hostname and /etc/resolv.conf as
# empty files, /run for /run/.containerenv and /run/secrets), and a directory for each VOLUME
# of the image config with its parents (busybox's /data/vol).  BuildKit removes such stubs
# after each RUN (executor/stubs.go, MountStubsCleaner).  buildah_placeholders() leaves these
# paths out only where ossb's image lacks them and buildah's is an empty file or a directory
# holding nothing but other such stubs.
BUILDAH_MOUNT_POINTS = ("etc/hosts", "etc/hostname", "etc/resolv.conf", "run", "run/secrets",
                        "run/.containerenv")

# BuildKit runs RUN steps with runc, which sets HOME from the container's /etc/passwd when the
# environment has none (libcontainer/env.go); buildah does the same.  ossb passes no HOME.

@dataclass
class Case:
    bases: tuple = ("busybox",)
    build_args: dict = field(default_factory=dict)
    secret: bool = False
    # more buildah stub candidates (see BUILDAH_MOUNT_POINTS): parents it made for mount targets
    stubs: tuple = ()
    # (path or pattern, why): paths that legitimately differ
    ignore: tuple = ()
    # groups of paths that are one file (hard links to base files): buildah's layer holds the
    # new name as a separate copy (its diff only hard-links names that are both in the layer),
    # so the groups are not compared; ossb's image must keep each group, as the RUN left it
    base_hardlinks: tuple = ()
    # (path, base path): ossb's file there must have the content the base has at base path;
    # for files buildah's layer misses (see CASES)
    from_base: tuple = ()
    # {path: content}: what ossb's image must hold there (checked besides the comparison)
    expect: dict = field(default_factory=dict)


CASES = {
    "run-files": Case(bases=("busybox", "debian")),
    "run-rename": Case(ignore=(
        ("srv-data/vol", "buildah made busybox's VOLUME /data/vol as a directory in the first RUN; "
                         "`mv /data /srv-data` carried it along (BuildKit never makes it)"),)),
    "run-whiteouts": Case(),
    "run-opaque": Case(bases=("busybox", "debian")),
    "run-links": Case(bases=("busybox", "debian"),
                      base_hardlinks=(("etc/passwd", "etc/passwd.hard"), ("etc/group", "srv/group.hard"))),
    "run-modes": Case(),
    "run-users": Case(bases=("busybox", "debian")),
    # /var/cache: the parent of the cache mount's target, absent from busybox; buildah keeps the
    # empty directory it made, BuildKit removes it (RemoveMountStubsRecursive)
    "run-mounts": Case(secret=True, stubs=("var/cache",), expect={
        "cache-count": "1\n", "cache-owned-stat": "1000:1000 750\n", "secret-length": f"{len(SECRET)}\n",
        "secret-stat": f"400 {len(SECRET)}\n", "scratch-ls": "x\n"}),
    "run-args": Case(build_args={"GREETING": "hello"},
                     expect={"args.txt": f"hello|default-value|hello-env|before||{images.PATH_ENV[5:]}\n",
                             "pwd.txt": "/work/hello\n"}),
    # useradd backs /etc/group up to /etc/group-, replacing the base's backup by a file of the
    # same size, mode and mtime (it copies the mtime; the base's files all have one): buildah's
    # vfs diff compares metadata only and leaves the new content out of its layer, so its image
    # still holds the base's old /etc/group-.  ossb's must hold the base's /etc/group.
    "run-debian": Case(bases=("debian",), from_base=(("etc/group-", "etc/group"),),
                       ignore=(("etc/group-", "buildah misses the rewritten backup: see from_base"),)),
}


def test_every_dockerfile_has_a_case():
    dirs = {p.name for p in DOCKERFILES.glob("run-*") if (p / "Dockerfile").is_file()}
    assert dirs == set(CASES), f"dockerfiles/run-* without a Case: {dirs - set(CASES)}; " \
                               f"Cases without a directory: {set(CASES) - dirs}"


# --- the comparer itself (no root, no buildah) -------------------------------------------------


def tar_of(entries):
    """An uncompressed layer tar of E() tuples, in the given order."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, kind, data, mode, uid, gid, xattrs, mtime in entries:
            ti = tarfile.TarInfo(name)
            ti.mode, ti.uid, ti.gid, ti.mtime = mode, uid, gid, mtime
            if xattrs:
                ti.pax_headers = {"SCHILY.xattr." + k: v for k, v in xattrs.items()}
            body = None
            if kind == "file":
                ti.size, body = len(data), io.BytesIO(data)
            elif kind == "dir":
                ti.type = tarfile.DIRTYPE
            elif kind == "symlink":
                ti.type, ti.linkname = tarfile.SYMTYPE, data
            elif kind == "hardlink":
                ti.type, ti.linkname = tarfile.LNKTYPE, data
            tf.addfile(ti, body)
    return buf.getvalue()


def layout_of(path, tars, config=None, gz=True, diff_ids=None):
    """An OCI layout at `path` of one image made of the uncompressed layer `tars` (the config
    lists `diff_ids`, by default the right ones)."""
    blobs = path / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def put(data):
        d = hashlib.sha256(data).hexdigest()
        (blobs / d).write_bytes(data)
        return {"digest": "sha256:" + d, "size": len(data)}

    layers = [dict(put(gzip.compress(t, mtime=0)), mediaType=images.MT_LAYER_GZIP) if gz else
              dict(put(t), mediaType=images.MT_LAYER) for t in tars]
    cfg = {"architecture": "amd64", "os": "linux", "config": config or {"Env": ["PATH=/bin"], "Cmd": ["sh"]},
           "rootfs": {"type": "layers", "diff_ids": diff_ids or [images.digest(t) for t in tars]}}
    cdesc = dict(put(json.dumps(cfg).encode()), mediaType=images.MT_OCI_CONFIG)
    man = {"schemaVersion": 2, "mediaType": images.MT_OCI_MANIFEST, "config": cdesc, "layers": layers}
    mdesc = dict(put(json.dumps(man).encode()), mediaType=images.MT_OCI_MANIFEST)
    (path / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [mdesc]}))
    (path / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    return path


def E(name, kind="file", data=b"", mode=0o644, uid=0, gid=0, xattrs=None, mtime=1700000000):
    """One tar entry; kind: file, dir, symlink or hardlink (data: the target)."""
    if kind == "dir" and mode == 0o644:
        mode = 0o755
    return (name, kind, data, mode, uid, gid, xattrs, mtime)


BASE_ENTRIES = [E("etc", "dir"), E("etc/passwd", data=b"root:x:0:0::/root:/bin/sh\n"), E("d", "dir"),
                E("d/a", data=b"a\n"), E("d/b", data=b"b\n"), E("d/sub", "dir"), E("d/sub/c", data=b"c\n"),
                E("opt", "dir"), E("opt/old", data=b"old\n"), E("link", "symlink", "d/a"),
                E("hard", "hardlink", "d/a")]


def test_imagecmp_whiteouts_opaque_and_layers(tmp_path):
    """The same tree written as one layer, and as a base plus a layer of whiteouts, an opaque
    directory, a type change and a re-made hard link: no difference."""
    flat = [E("etc", "dir"), E("etc/passwd", data=b"root:x:0:0::/root:/bin/sh\n"), E("d", "dir"),
            E("d/a", data=b"a\n"), E("d/sub", "dir"), E("d/sub/c", data=b"c2\n", mode=0o600), E("opt", "dir"),
            E("opt/new", data=b"new\n"), E("link", "dir"), E("hard", "hardlink", "d/a")]
    a = layout_of(tmp_path / "a", [tar_of(flat)])
    top = [E("d", "dir"), E("d/.wh.b"), E("d/sub/c", data=b"c2\n", mode=0o600), E("opt", "dir"), E("opt/.wh..wh..opq"),
           E("opt/new", data=b"new\n"), E(".wh.link"), E("link", "dir")]
    b = layout_of(tmp_path / "b", [tar_of(BASE_ENTRIES), tar_of(top)], gz=False)
    assert imagecmp.compare(imagecmp.load(a), imagecmp.load(b)) == []
    tree = imagecmp.flatten(imagecmp.load(b))
    assert "d/b" not in tree and "opt/old" not in tree and tree["link"].type == "dir"
    assert imagecmp.hardlink_groups(tree)["hard"] == ("d/a",)


def test_imagecmp_reports_each_field(tmp_path):
    a = layout_of(tmp_path / "a", [tar_of(BASE_ENTRIES + [
        E("s", data=b"x", mode=0o4755), E("own", data=b"o"), E("cap", data=b"c", xattrs={"user.k": "1"}),
        E("gone", data=b"g"), E("t", "dir"), E("h1", data=b"h"), E("h2", "hardlink", "h1"),
        E("rnd", data=b"1")])],
        config={"Env": ["PATH=/bin", "A=1"], "Cmd": ["sh"], "Labels": {"x": "1", "stamp": "a"}})
    b = layout_of(tmp_path / "b", [tar_of(BASE_ENTRIES[:-2] + [
        E("link", "symlink", "/d/a"), E("hard", data=b"a\n"),
        E("s", data=b"x", mode=0o755), E("own", data=b"o", uid=1000, gid=1000),
        E("cap", data=b"c", xattrs={"user.k": "2"}),
        E("t", data=b""), E("h1", data=b"h"), E("h2", data=b"h"), E("rnd", data=b"2"), E("extra", data=b"e")])],
        config={"Env": ["PATH=/bin"], "Cmd": None, "Entrypoint": [], "Labels": {"x": "1", "stamp": "b"}})
    ia, ib = imagecmp.load(a), imagecmp.load(b)
    diffs = imagecmp.compare(ia, ib, names=("a", "b"), ignore_labels=("stamp",), ignore=["rn?"])
    text = "\n".join(diffs)
    for want in ["s: mode 4755 != 0755", "own: uid 0 != 1000; gid 0 != 1000", "cap: xattrs", "gone: only in a",
                 "extra: only in b", "t: type 'dir' != 'file'", "link: link 'd/a' != '/d/a'",
                 "h1: hard links ['h2'] != []", "hard: hard links ['d/a'] != []", "d/a: hard links ['hard'] != []",
                 "config Env: a ['PATH=/bin', 'A=1'], b ['PATH=/bin']", "config Cmd: a ['sh'], b None"]:
        assert want in text, f"{want!r} not reported:\n{text}"
    assert "rnd" not in text and "stamp" not in text and "Entrypoint" not in text, text
    assert len(diffs) == 13, text
    # field-wise ignores and `only`
    skip = {p: {"hardlinks"} for p in ("h1", "h2", "hard", "d/a")}
    assert not [d for d in imagecmp.compare(ia, ib, ignore_fields=skip) if "hard links" in d]
    assert imagecmp.compare(ia, ib, only=["own"], names=("a", "b")) == [d for d in diffs if d.startswith("own:")]


def test_imagecmp_times_and_diff_ids(tmp_path):
    a = layout_of(tmp_path / "a", [tar_of([E("f", data=b"1")])])
    b = layout_of(tmp_path / "b", [tar_of([E("f", data=b"1", mtime=1700000001)])])
    assert imagecmp.compare(a, b) == []
    assert imagecmp.compare(a, b, times=True, names=("a", "b")) == ["f: mtime 1700000000 != 1700000001  [a != b]"]
    # a layer whose content does not hash to the config's diff_id is refused
    c = layout_of(tmp_path / "c", [tar_of([E("f", data=b"1")])], diff_ids=["sha256:" + "0" * 64])
    with pytest.raises(imagecmp.ImageError, match="diff_id"):
        imagecmp.flatten(imagecmp.load(c))
    # and so is a blob that does not hash to its name
    mdesc = json.loads((c / "index.json").read_text())["manifests"][0]
    man = c / "blobs" / "sha256" / mdesc["digest"][7:]
    man.write_bytes(man.read_bytes() + b" ")
    with pytest.raises(imagecmp.ImageError, match="does not hash to its name"):
        imagecmp.load(c)


def test_imagecmp_reads_a_registry(seeded_registry, tmp_path):
    """docker:// sources are copied with skopeo into a layout first."""
    need_tool("skopeo")
    remote = imagecmp.load("docker://" + seeded_registry.registry.ref(BUSYBOX_TAG), workdir=tmp_path,
                           skopeo_args=["--src-tls-verify=false"], env=CLEAN_ENV)
    assert imagecmp.compare(remote, imagecmp.load(seeded_registry.layout, ref="layered")) == []
    diffs = imagecmp.compare(remote, imagecmp.load(seeded_registry.layout, ref="plain"), names=("layered", "plain"))
    assert "data/a.txt: only in layered (file)" in diffs and "opt/new.txt: only in layered (file)" in diffs, diffs


def test_debian_mirror_from_apt_config(tmp_path):
    """debian_base reads the mirror from deb822 .sources files first, else from sources.list."""
    import debian_base as db
    d = tmp_path / "sources.list.d"
    d.mkdir()
    (d / "a.sources").write_text("Types: deb-src\nURIs: http://src.example/debian\nSuites: bookworm\n\n"
                                 "Enabled: no\nTypes: deb\nURIs: http://off.example/debian\nSuites: bookworm\n")
    (d / "b.sources").write_text("# comment\nTypes: deb\nURIs: http://sec.example/debian-security\n"
                                 "Suites: bookworm-security\n\nTypes: deb deb-src\n"
                                 "URIs: http://mirror.example/debian\n  http://second.example/debian\n"
                                 "Suites: bookworm bookworm-updates\nComponents: main\n")
    lst = tmp_path / "sources.list"
    lst.write_text("deb [arch=amd64 signed-by=/k.gpg] http://list.example/debian bookworm main\n")
    assert db.apt_mirror(sources_d=str(d), sources_list=str(lst)) == "http://mirror.example/debian"
    (d / "b.sources").unlink()
    assert db.apt_mirror(sources_d=str(d), sources_list=str(lst)) == "http://list.example/debian"
    assert db.apt_mirror(suite="trixie", sources_d=str(d), sources_list=str(lst)) is None


# --- buildah ------------------------------------------------------------------------------------


class Buildah:
    """buildah with a private vfs store: `root` under the module's temp dir, `runroot` a short
    directory under /tmp (removed by close()); TMPDIR (where buildah keeps RUN --mount=type=cache
    directories) inside the module's temp dir as well."""

    def __init__(self, workdir):
        self.bin = need_tool("buildah")
        self.workdir = Path(workdir)
        self.runroot = Path(tempfile.mkdtemp(prefix="ossb-bh-"))
        (self.workdir / "tmp").mkdir(parents=True, exist_ok=True)
        self.policy = self.workdir / "policy.json"
        self.policy.write_text('{"default": [{"type": "insecureAcceptAnything"}]}')
        self.env = dict(CLEAN_ENV, TMPDIR=str(self.workdir / "tmp"))
        self.n = 0

    def cmd(self, *args):
        return [self.bin, "--root", str(self.workdir / "root"), "--runroot", str(self.runroot),
                "--storage-driver", "vfs", *map(str, args)]

    def run(self, *args, check=True):
        p = subprocess.run(self.cmd(*args), capture_output=True, text=True, env=self.env, timeout=BUILD_TIMEOUT * 3)
        if check and p.returncode != 0:
            pytest.fail(f"{' '.join(self.cmd(*args))} exited {p.returncode}\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
        return p

    def build(self, context, dest, build_args=(), secret_file=None):
        """buildah bud CONTEXT, then push the image to the OCI layout DEST."""
        self.n += 1
        tag = f"localhost/ossb-cmp:{self.n}"
        a = ["bud", "--layers=false", "--tls-verify=false", "--format", "oci", "--runtime", "runc",
             "--signature-policy", self.policy, "-t", tag]
        for kv in build_args:
            a += ["--build-arg", kv]
        if secret_file:
            a += ["--secret", f"id=token,src={secret_file}"]
        p = self.run(*a, context)
        # uncompressed (-D): nothing to gain from compressing a layout read once, on this machine
        self.run("push", "-D", "--tls-verify=false", "--signature-policy", self.policy, tag, f"oci:{dest}:latest")
        self.run("rmi", "-f", tag)
        return p

    def close(self):
        self.run("rmi", "-a", "-f", check=False)
        shutil.rmtree(self.runroot, ignore_errors=True)
        shutil.rmtree(self.workdir / "root", ignore_errors=True)  # vfs: a full copy per layer


@pytest.fixture(scope="module")
def buildah(tmp_path_factory):
    if not shutil.which("buildah"):
        pytest.skip("`buildah` is not installed (Debian package buildah; tools/install-deps.sh)")
    if not IS_ROOT:
        pytest.skip("the comparison runs buildah and ossb's RUN steps as root")
    b = Buildah(tmp_path_factory.mktemp("buildah"))
    yield b
    b.close()


# --- the bases ----------------------------------------------------------------------------------


@dataclass
class Base:
    ref: str  # in the test registry
    layout: Path  # an OCI layout holding it under `tag`
    tag: str

    def tree(self):
        return imagecmp.flatten(imagecmp.load(self.layout, ref=self.tag))


def get_base(request, name):
    seeded = request.getfixturevalue("seeded_registry")
    if name == "debian":
        ref = request.getfixturevalue("debian_base")
        return Base(ref, request.getfixturevalue("debian_layout"), DEBIAN_TAG)
    return Base(seeded.registry.ref(BUSYBOX_TAG), seeded.layout, "layered")


# --- comparing ------------------------------------------------------------------------------------


def buildah_placeholders(ossb_tree, buildah_img, buildah_tree, stubs=()):
    """The paths of BUILDAH_MOUNT_POINTS, `stubs` and the config's VOLUMEs (with their parents)
    that buildah committed as empty placeholders where ossb's image has nothing."""
    cands = set(BUILDAH_MOUNT_POINTS) | set(stubs)
    for v in (buildah_img.cfg.get("Volumes") or {}):
        parts = v.strip("/").split("/")
        cands |= {"/".join(parts[:i]) for i in range(1, len(parts) + 1)}
    out = []
    for p in sorted(cands):
        n = buildah_tree.get(p)
        if n is None or p in ossb_tree:
            continue
        below = [q for q in buildah_tree if q.startswith(p + "/")]
        if (n.type == "file" and n.size == 0) or (n.type == "dir" and all(q in cands for q in below)):
            out.append(p)
    return out


def all_bytes(layout):
    """Every blob of a layout, layers decompressed: where a leaked secret would be."""
    out = []
    for f in (Path(layout) / "blobs" / "sha256").iterdir():
        data = f.read_bytes()
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
        elif data[:4] == b"\x28\xb5\x2f\xfd":
            data = subprocess.run(["zstd", "-dc"], input=data, capture_output=True, check=True).stdout
        out.append((f.name, data))
    return out


def assert_secret_nowhere(layout, who):
    for name, data in all_bytes(layout):
        assert SECRET.encode() not in data, f"the secret is in {who}'s blob {name}"


@pytest.fixture(scope="module")
def built():
    """Images built so far in the module: ("buildah", Dockerfile, base) -> buildah's layout
    (built once, compared with ossb's image of each snapshotter), and ("ossb", Dockerfile,
    base, snapshotter) -> ossb's layout."""
    return {}


def prepare(name, base, case, tmp_path):
    """(context dir, build args "K=V", secret file or None) of dockerfiles/NAME FROM base."""
    ctx = tmp_path / "ctx"
    if not ctx.exists():
        shutil.copytree(DOCKERFILES / name, ctx)
    args = [f"BASE={base.ref}"] + [f"{k}={v}" for k, v in case.build_args.items()]
    secret_file = None
    if case.secret:
        secret_file = tmp_path / "token"
        secret_file.write_text(SECRET)
    return ctx, args, secret_file


def build_ossb(ossb, built, base, base_name, name, case, snap, tmp_path):
    key = ("ossb", name, base_name, snap)
    if key in built:
        return built[key]
    ctx, args, secret_file = prepare(name, base, case, tmp_path)
    a = ["--snapshotter", snap]
    for kv in args:
        a += ["--build-arg", kv]
    if secret_file:
        a += ["--secret", f"id=token,src={secret_file}"]
    r = ossb.build_ok(ctx, *a)
    if case.secret:
        assert SECRET not in r.stdout + r.stderr, "the secret is in ossb's output"
        assert_secret_nowhere(r.layout_dir, "ossb")
    built[key] = r.layout_dir
    return r.layout_dir


def build_buildah(buildah, built, base, base_name, name, case, tmp_path):
    key = ("buildah", name, base_name)
    if key in built:
        return built[key]
    ctx, args, secret_file = prepare(name, base, case, tmp_path)
    bl = tmp_path / "buildah-oci"
    p = buildah.build(ctx, bl, args, secret_file)
    if case.secret:
        assert SECRET not in p.stdout + p.stderr, "the secret is in buildah's output"
        assert_secret_nowhere(bl, "buildah")
    built[key] = bl
    return bl


def compare(base, ossb_layout, buildah_layout, case):
    """imagecmp's differences, buildah's placeholders and the case's legitimate differences
    left out.  Also checks what the case expects of ossb's image alone (expect, from_base,
    base_hardlinks)."""
    a = imagecmp.load(ossb_layout)
    b = imagecmp.load(buildah_layout)
    ta, tb = imagecmp.flatten(a), imagecmp.flatten(b)
    ignore = buildah_placeholders(ta, b, tb, case.stubs) + [p for p, _why in case.ignore]
    skip = {p: {"hardlinks"} for group in case.base_hardlinks for p in group}
    links = imagecmp.hardlink_groups(ta)
    for group in case.base_hardlinks:
        for p in group:
            assert set(links.get(p, ())) >= set(group) - {p}, \
                f"ossb's image lost the hard link between {group}: {p} is linked to {links.get(p)}"
    if case.from_base:
        base_tree = base.tree()
        for p, bp in case.from_base:
            assert ta[p].sha256 == base_tree[bp].sha256, \
                f"ossb's /{p} does not hold the base's /{bp}: {ta[p].head!r}... != {base_tree[bp].head!r}..."
    for p, want in case.expect.items():
        assert p in ta and ta[p].sha256 == hashlib.sha256(want.encode()).hexdigest(), \
            f"ossb's /{p} holds {ta[p].head if p in ta else None!r}..., expected {want!r}"
    return imagecmp.compare(a, b, ignore=ignore, ignore_labels=BUILDAH_LABELS, names=("ossb", "buildah"),
                            ignore_fields=skip)


def params():
    return [pytest.param(name, base, snap, id=f"{name}-{base}-{snap}")
            for name, case in CASES.items() for base in case.bases for snap in SNAPSHOTTERS]


@pytest.mark.parametrize("name,base_name,snap", params())
def test_same_image_as_buildah(request, ossb, buildah, built, tmp_path, name, base_name, snap):
    case = CASES[name]
    base = get_base(request, base_name)
    bl = build_buildah(buildah, built, base, base_name, name, case, tmp_path)
    ol = build_ossb(ossb, built, base, base_name, name, case, snap, tmp_path)
    diffs = compare(base, ol, bl, case)
    assert not diffs, (f"dockerfiles/{name} on {base_name} (--snapshotter {snap}): ossb's image differs from "
                       "buildah's:\n" + "\n".join(diffs))


# --- the images run ------------------------------------------------------------------------------

# (Dockerfile, base, command or None for the image's own, expected stdout)
PODMAN_RUNS = [
    ("run-users", "busybox",
     ["sh", "-c", "id; stat -c '%n %U:%G %a' /srv/owned /srv/owned/f /srv/owned/by-root /home/builder/mine; "
                  "stat -c '%n %u:%g' /srv/numeric"],
     "uid=2001(builder) gid=2002(builders) groups=2002(builders)\n"
     "/srv/owned builder:builders 755\n/srv/owned/f builder:builders 644\n/srv/owned/by-root root:root 644\n"
     "/home/builder/mine builder:builders 644\n/srv/numeric 4242:4343\n"),
    ("run-links", "busybox",
     ["sh", "-c", "stat -c '%h %n' /srv/f /srv/sub/f4 /etc/passwd; for l in rel abs dangling; do readlink /srv/$l; "
                  "done; readlink /srv-link; cat /srv/abs /srv-link/rel /srv/sub-link; test -e /srv/dangling || "
                  "echo dangling"],
     "3 /srv/f\n3 /srv/sub/f4\n2 /etc/passwd\nf\n/srv/f\n../nowhere/x\n/srv\ndata\ndata\nno-longer-a-link\ndangling\n"),
    ("run-args", "busybox", None,
     "hello|default-value|hello-env|before||/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"),
    ("run-debian", "debian",
     ["sh", "-c", "id; cat /home/app/whoami; test \"$(dpkg -l | grep -c '^ii')\" = \"$(grep -c '^ii' /pkgs)\" && "
                  "echo same-packages; stat -c '%U %a' /home/app /home/app/.profile"],
     "uid=1000(app) gid=1000(app) groups=1000(app)\napp:app\nsame-packages\napp 755\napp 644\n"),
]


class Podman:
    """podman with a private store: root under the test's directory, run root and temp dir in a
    short directory under /tmp (podman refuses long run roots), removed by close(); runc, because
    Debian's crun 1.8 refuses hybrid cgroup layouts ("cgroups in hybrid mode not supported"), and
    explicit rlimits, because where root lacks CAP_SYS_RESOURCE runc cannot raise nofile/nproc to
    podman's defaults ("error setting rlimit type 7")."""

    def __init__(self, workdir):
        self.bin = need_tool("podman")
        self.short = Path(tempfile.mkdtemp(prefix="ossb-pm-"))
        self.root = Path(workdir) / "podman-root"
        self.base = [self.bin, "--root", str(self.root), "--runroot", str(self.short / "run"),
                     "--tmpdir", str(self.short / "tmp"), "--storage-driver", "vfs", "--runtime", "runc",
                     "--cgroup-manager", "cgroupfs", "--events-backend", "none"]

    def run(self, ref, command):
        a = self.base + ["run", "--rm", "--network=none", "--tls-verify=false", "--ulimit", "nofile=4096:4096",
                         "--ulimit", "nproc=4096:4096", ref] + list(command or [])
        return subprocess.run(a, capture_output=True, text=True, timeout=BUILD_TIMEOUT, env=CLEAN_ENV)

    def close(self):
        subprocess.run(self.base + ["rmi", "-a", "-f"], capture_output=True, timeout=BUILD_TIMEOUT, env=CLEAN_ENV)
        shutil.rmtree(self.short, ignore_errors=True)
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def podman(tmp_path):
    if not IS_ROOT:
        pytest.skip("podman runs here as root")
    p = Podman(tmp_path)
    yield p
    p.close()


@pytest.mark.parametrize("name,base_name,command,expected",
                         [pytest.param(*r, id=f"{r[0]}-{r[1]}") for r in PODMAN_RUNS])
def test_ossb_image_runs_in_podman(request, ossb, podman, tmp_path, name, base_name, command, expected):
    """ossb build --push, then podman pulls the image and runs it with runc."""
    case = CASES[name]
    base = get_base(request, base_name)
    ref = request.getfixturevalue("seeded_registry").registry.ref(f"cmp/{name}:ossb")
    ctx, args, secret_file = prepare(name, base, case, tmp_path)
    a = []
    for kv in args:
        a += ["--build-arg", kv]
    if secret_file:
        a += ["--secret", f"id=token,src={secret_file}"]
    r = ossb.build(ctx, "--push", "-t", ref, *a, out=False)
    assert r.returncode == 0, str(r)
    p = podman.run(ref, command)
    assert p.returncode == 0, f"podman run {ref} exited {p.returncode}\n{p.stdout}\n{p.stderr}"
    assert p.stdout == expected


# --- the fuse snapshotter writes the layers the overlay one writes ------------------------------


@pytest.mark.parametrize("name", sorted(CASES))
def test_fuse_layers_equal_overlay(request, ossb, tmp_path, name):
    """With SOURCE_DATE_EPOCH, each Dockerfile built with --snapshotter fuse and with
    --snapshotter overlay (each with a cache dir of its own, so cache mounts start empty) gives
    the same layer DiffIDs: ossb's FUSE filesystem leaves the upper the kernel's overlayfs
    leaves."""
    case = CASES[name]
    base = get_base(request, "busybox" if "busybox" in case.bases else case.bases[0])
    ctx, args, secret_file = prepare(name, base, case, tmp_path)
    ids = {}
    for snap in ("overlay", "fuse"):
        a = ["--snapshotter", snap, "--cache-dir", str(tmp_path / f"cache-{snap}")]
        for kv in args:
            a += ["--build-arg", kv]
        if secret_file:
            a += ["--secret", f"id=token,src={secret_file}"]
        r = ossb.build_ok(ctx, *a, env={"SOURCE_DATE_EPOCH": "1700000000"})
        ids[snap] = r.image.config["rootfs"]["diff_ids"]
    assert ids["fuse"] == ids["overlay"], ids
