"""Images ossb builds with --compression=estargz or zstd:chunked are lazily pullable (issue 6):
every layer a build writes (COPY, RUN, WORKDIR) carries its seekable annotations in the
manifest's layer descriptors (eStargz: containerd.io/snapshot/stargz/toc.digest and
io.containers.estargz.uncompressed-size; zstd:chunked: io.github.containers.zstd-chunked.
manifest-checksum and -manifest-position), whichever output gets the image (a push, an OCI
layout; a docker archive has no annotations), also when the steps come from the step cache,
and a base image's layers keep theirs in an image built on it.

Checked against readers independent of ossb: the annotations against each pushed blob, parsed
here in Python (test_convert.py's footer and TOC readers); stargz-snapshotter's ctr-remote
(get-toc-digest, in a private containerd, root only); and the use they are for: a second build
`FROM` the pushed image with --snapshotter=fuse and an empty cache reads its layers lazily,
fetching a small part of them (ossb's `lazy:` counters and the registry's access log).

Runs as root and, from tests/run-all.sh, with ossb as uid 65534 (OSSB_TEST_AS_USER)."""
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path

import pytest

import images
from conftest import IS_ROOT, need_tool, open_fuse_device, run_tool
from test_convert import ANN_TOC, ANN_USIZE, ANN_ZC_POS, ANN_ZC_SUM, estargz_toc, zstd_chunked_toc

SDE = {"SOURCE_DATE_EPOCH": "1700000000"}
LAZY_RE = re.compile(r"^lazy: (.+): fetched (\d+) of (\d+) bytes", re.M)
ANN_ZC_OLD = ("io.containers.zstd-chunked.manifest-checksum", "io.containers.zstd-chunked.manifest-position")
KEYS = {"estargz": {ANN_TOC, ANN_USIZE}, "zstd:chunked": {ANN_ZC_SUM, ANN_ZC_POS, *ANN_ZC_OLD}}
COMPRESSIONS = ["estargz", "zstd:chunked"]
MIB = 1024 * 1024
SERVED_SLACK = 64 * 1024  # as in test_lazy.py

# Two stages, so that a stage's layers (with their annotations) carry over into the next:
# COPY and RUN in the first, WORKDIR in the target.  The base (busybox:1) is plain gzip.
DOCKERFILE = """\
FROM {base} AS data
COPY data /data
RUN echo built > /built.txt && mkdir -p /var/made
FROM data
WORKDIR /srv/app
"""


def tag_name(compression):
    return compression.replace(":", "-")


@pytest.fixture(scope="module")
def data_files():
    """The COPY source: 4 x 2 MiB of random bytes (incompressible: the layer is big) and a small
    file that the lazy build reads."""
    files = {f"data/r{i}.bin": os.urandom(2 * MIB) for i in range(4)}
    files["data/small.txt"] = b"small file\n"
    return files


def make_context(context, data_files, base):
    return context(dict(data_files), df=DOCKERFILE.format(base=base))


def build_push(ossb, ctx, ref, compression, *args, **kw):
    """Build with `compression`, push to `ref` and also write an OCI layout (result.layout)."""
    r = ossb.build_ok(ctx, "--compression", compression, "--progress=plain", "--push", "-t", ref, *args,
                      env=SDE, **kw)
    return r


def pushed_manifest(reg, name):
    raw = reg.inspect_raw(name)
    return raw, json.loads(raw)


def blob(reg, name, digest):
    st, _, body = reg.http("GET", f"/v2/{name.split(':')[0]}/blobs/{digest}")
    assert st == 200, (st, body[:200])
    return body


def check_layer(reg, repo, desc, compression):
    """The descriptor's annotations are the layer writer's, and true of the blob."""
    ann = desc.get("annotations") or {}
    assert set(ann) == KEYS[compression], f"{desc['digest']}: annotations {ann}"
    data = blob(reg, repo, desc["digest"])
    assert len(data) == desc["size"]
    if compression == "estargz":
        toc, _ = estargz_toc(data, ann)  # checks the TOC JSON's digest against the annotation
        assert int(ann[ANN_USIZE]) == len(images.decompress(data)), "uncompressed-size is not the tar's"
    else:
        toc, _ = zstd_chunked_toc(data, ann)  # checks the compressed TOC against manifest-checksum
        assert [ann[k] for k in ANN_ZC_OLD] == [ann[ANN_ZC_SUM], ann[ANN_ZC_POS]]
    return toc


def steps_cached(stderr):
    return len(re.findall(r"^#\d+ CACHED", stderr, re.M))


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_built_layers_carry_annotations(ossb, context, seeded_registry, data_files, compression):
    need_tool("zstd")
    reg = seeded_registry.registry
    ctx = make_context(context, data_files, reg.ref("busybox:1"))
    name = f"built-{tag_name(compression)}:1"
    archive = ossb.path("docker.tar")
    r = build_push(ossb, ctx, reg.ref(name), compression, "--output", f"type=docker,dest={archive}",
                   "--output", f"type=oci,dest={ossb.fresh('layout')}")
    raw, man = pushed_manifest(reg, name)
    assert images.digest(raw) == r.digest
    layers = man["layers"]
    assert len(layers) == 4, layers  # busybox, COPY, RUN, WORKDIR
    assert "annotations" not in layers[0]  # the base's gzip layer has none
    tocs = [check_layer(reg, name, d, compression) for d in layers[1:]]
    names = {e["name"].strip("/") for e in tocs[0]["entries"]}
    assert {"data/small.txt", "data/r0.bin"} <= names
    # the OCI layout got the same manifest (build_ok checked every blob of it)
    assert r.image.manifest == man
    # a docker archive has no place for annotations (and gets zstd layers as gzip), but holds
    # the same layer tars
    layout_tars = [images.decompress(r.layout.blob(d["digest"])) for d in layers]
    with tarfile.open(archive) as tf:
        entry = json.loads(tf.extractfile("manifest.json").read())[0]
        assert len(entry["Layers"]) == 4
        assert [images.decompress(tf.extractfile(n).read()) for n in entry["Layers"]] == layout_tars

    # a rebuild from the step cache pushes the same layers with the same annotations
    again = f"built-{tag_name(compression)}:again"
    r2 = build_push(ossb, ctx, reg.ref(again), compression, out=False)
    assert steps_cached(r2.stderr) >= 3, r2.stderr  # COPY, RUN, WORKDIR
    _, man2 = pushed_manifest(reg, again)
    assert man2["layers"] == layers
    assert r2.digest == r.digest


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_old_cache_entries_without_annotations(ossb, context, seeded_registry, data_files, compression):
    """A step cache entry stored without annotations (as ossb did before it kept them) is a
    miss for a seekable build: the step runs again and its entry gets the annotations."""
    reg = seeded_registry.registry
    ctx = make_context(context, data_files, reg.ref("busybox:1"))
    r = build_push(ossb, ctx, reg.ref(f"old-entries-{tag_name(compression)}:1"), compression, out=False)
    entries = sorted((ossb.cache / "cache" / "keys").glob("*.json"))
    annotated = 0
    for f in entries:
        e = json.loads(f.read_text())
        if "annotations" in e:
            annotated += 1
            assert e["version"] == 2 and set(e["annotations"]) == KEYS[compression]
            del e["annotations"]
            e["version"] = 1
            f.write_text(json.dumps(e))  # in place: the owner stays (rootless runs)
    assert annotated == 3, [f.read_text() for f in entries]
    name = f"old-entries-{tag_name(compression)}:2"
    r2 = build_push(ossb, ctx, reg.ref(name), compression, out=False)
    assert steps_cached(r2.stderr) == 0, r2.stderr
    _, man = pushed_manifest(reg, name)
    assert all(set(d.get("annotations") or {}) == KEYS[compression] for d in man["layers"][1:]), man
    assert r2.digest == r.digest
    assert sum("annotations" in json.loads(f.read_text()) for f in entries) == 3


def test_base_layers_keep_annotations(ossb, ossb_binary, context, seeded_registry, tmp_path):
    """FROM an eStargz image (converted by ossb, pushed by skopeo): its layers keep their
    annotations in an image built on it, whatever the build's own compression."""
    reg = seeded_registry.registry
    conv = tmp_path / "estargz-busybox"
    # the base is made as the test's user (root), like the registry's other images
    subprocess.run([str(ossb_binary), "convert", "--cache-dir", str(tmp_path / "convert-cache"),
                    f"oci:{seeded_registry.layout}:plain", f"oci:{conv}:base", "--compression", "estargz"],
                   check=True, capture_output=True)
    reg.push_layout(conv, "base", "busybox-estargz:1")
    _, base = pushed_manifest(reg, "busybox-estargz:1")
    assert base["layers"][0]["annotations"][ANN_TOC]
    ctx = context({"a.txt": "a\n"}, df=f"FROM {reg.ref('busybox-estargz:1')}\nCOPY a.txt /\n")
    for compression in ("gzip", "estargz"):
        name = f"on-estargz-{compression}:1"
        ossb.build_ok(ctx, "--compression", compression, "--push", "-t", reg.ref(name), out=False)
        _, man = pushed_manifest(reg, name)
        assert man["layers"][0] == base["layers"][0]
        assert ("annotations" in man["layers"][1]) == (compression == "estargz")


def lazy_counts(stderr):
    return [(m.group(1), int(m.group(2)), int(m.group(3))) for m in LAZY_RE.finditer(stderr)]


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_lazy_build_on_built_image(ossb, context, seeded_registry, data_files, compression):
    """The pushed image is read lazily by a build FROM it with an empty cache: its three
    seekable layers are not pulled, a step reading one small file fetches a few percent of
    them (ossb's counters, and what the registry's access log says it served)."""
    reg = seeded_registry.registry
    ctx = make_context(context, data_files, reg.ref("busybox:1"))
    name = f"lazy-built-{tag_name(compression)}:1"
    build_push(ossb, ctx, reg.ref(name), compression, out=False)
    _, man = pushed_manifest(reg, name)
    seekable = {d["digest"]: d["size"] for d in man["layers"][1:]}

    open_fuse_device()
    ctx2 = context({}, df=f"FROM {reg.ref(name)}\nRUN cat /data/small.txt /built.txt > /out && pwd >> /out\n")
    mark = reg.mark()
    # an OCI layout output: the lazily read blobs are fetched in full (whole-blob GETs) after
    # the steps ran, which ossb's lazy counters do not count
    r = ossb.build_ok(ctx2, "--snapshotter", "fuse", "--progress=plain", "--cache-dir", ossb.path("empty-cache"))
    counts = lazy_counts(r.stderr)
    assert sorted(c[2] for c in counts) == sorted(seekable.values()), f"{counts}\n{r.stderr}"
    fetched, size = sum(c[1] for c in counts), sum(c[2] for c in counts)
    assert size > 8 * MIB and fetched < size * 0.05, f"fetched {fetched} of {size} bytes: {counts}"
    # the registry's account (its answers to Range requests): equal to ossb's unless a transfer
    # was cut short, which can only make the registry count more (test_lazy.py says more)
    served = reg.served_bytes(seekable, since=mark, status=206)
    assert fetched <= served <= fetched + SERVED_SLACK, f"the registry served {served} bytes, ossb counted {fetched}"
    # the result: the base's layers as they were (annotations too), and the step's output
    top = r.image.manifest
    assert top["layers"][:4] == man["layers"]
    assert r.image.rootfs()["out"].data == b"small file\nbuilt\n/srv/app\n"


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_ctr_remote_finds_the_tocs(ossb, context, seeded_registry, data_files, tmp_path, compression):
    """stargz-snapshotter's ctr-remote (in a private containerd) finds each built layer's TOC
    and agrees with its annotation (for zstd:chunked it prints the TOC JSON's digest; the
    annotation is the compressed TOC's)."""
    if not IS_ROOT:
        pytest.skip("a private containerd needs root")
    ctr, containerd = need_tool("ctr-remote"), need_tool("containerd")
    need_tool("zstd")
    reg = seeded_registry.registry
    ctx = make_context(context, data_files, reg.ref("busybox:1"))
    r = build_push(ossb, ctx, reg.ref(f"ctr-{tag_name(compression)}:1"), compression)
    with Containerd(ctr, containerd, tmp_path / "containerd") as base:
        with tarfile.open(tmp_path / "img.tar", "w") as tf:
            tf.add(r.layout_dir, arcname=".")
        run_tool(base + ["images", "import", "--base-name", "localhost/built", "--digests", tmp_path / "img.tar"])
        for d in r.image.manifest["layers"][1:]:
            args = base + ["images", "get-toc-digest"] + (["--zstdchunked"] if compression == "zstd:chunked" else [])
            got = run_tool(args + [d["digest"]]).stdout.strip()
            ann = d["annotations"]
            if compression == "estargz":
                assert got == ann[ANN_TOC]
            else:
                data = r.layout.blob(d["digest"])
                off, length, ulen, _ = (int(x) for x in ann[ANN_ZC_POS].split(":"))
                js = subprocess.run([shutil.which("zstd"), "-dc"], input=data[off:off + length],
                                    capture_output=True, check=True).stdout
                assert len(js) == ulen and got == images.digest(js)


class Containerd:
    """A private containerd for ctr-remote (its own root, state and log under `workdir`, its
    sockets in a short directory of its own: a unix socket path has at most 104 bytes);
    `with` gives the ctr-remote command prefix."""

    def __init__(self, ctr, containerd, workdir):
        self.ctr, self.containerd, self.w = ctr, containerd, Path(workdir)

    def __enter__(self):
        w = self.w
        w.mkdir()
        self.sockdir = Path(tempfile.mkdtemp(prefix="ossb-ctr-"))
        sock = self.sockdir / "sock"
        (w / "config.toml").write_text(
            f'version = 2\nroot = "{w}/root"\nstate = "{self.sockdir}/state"\n'
            'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
            f'[grpc]\n  address = "{sock}"\n[ttrpc]\n  address = "{sock}.ttrpc"\n'
            f'[debug]\n  address = "{sock}.debug"\n')
        self.log = open(w / "log", "w")
        self.proc = subprocess.Popen([self.containerd, "--config", w / "config.toml"], stdout=self.log,
                                     stderr=self.log, start_new_session=True)
        base = [self.ctr, "-a", str(sock), "-n", "ossb-test"]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                if subprocess.run(base + ["version"], capture_output=True, timeout=5).returncode == 0:
                    return base
            except subprocess.TimeoutExpired:
                pass
            time.sleep(0.1)
        self.__exit__(None, None, None)
        pytest.fail(f"containerd did not start: {(w / 'log').read_text()[-2000:]}")

    def __exit__(self, *exc):
        if self.proc.poll() is None:
            self.proc.terminate()
        self.proc.wait(timeout=30)
        self.log.close()
        shutil.rmtree(self.w / "root", ignore_errors=True)
        shutil.rmtree(self.sockdir, ignore_errors=True)
        return False
