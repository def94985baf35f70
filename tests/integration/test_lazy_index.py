"""Lazy pulling of plain gzip layers through checkpoint indexes (oci/zran.h, `ossb index`).

The base: debian_base.py's Debian minbase layer (one gzip member, Python's gzip) and a layer of
many files gzipped as concatenated 1 MiB members (pigz-style multi-member gzip), pushed to the
registry as they are (no seekable format, no annotations).  `ossb index REF --push` makes the
indexes and pushes them as an artifact referring to the image: distribution 2.8 has no
referrers API, so the artifact is found through the tag-schema index `sha256-<hex>`, checked
here with raw HTTP and skopeo.  Then, with an empty cache dir (nothing local but what the
registry serves): `RUN cat /etc/os-release` fetches under 5% of the base's bytes (ossb's
counters, cross-checked with the registry's access log); a step that reads every file gives
the same result and layer as --lazy=off; a corrupted blob range (fault proxy) fails the build
naming the layer and the file, never serving wrong bytes.  The referrers-API path (a registry
that answers GET /v2/NAME/referrers/DIGEST) is checked against a small fake registry."""
import gzip
import hashlib
import http.server
import json
import os
import re
import threading
from pathlib import Path

import pytest

import images
from conftest import open_fuse_device
from debian_base import DEBIAN_CONFIG, rootfs_entries
from debian_base import debian_rootfs_tar  # noqa: F401 (a fixture)
from registry import ossb_cmd

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the test images need debootstrap (root)")

ZRAN_TYPE = "application/vnd.ossb.zran.index.v1"
LAYER_ANNOTATION = "io.ossb.zran.layer.digest"
SDE = {"SOURCE_DATE_EPOCH": "1700000000"}
LAZY_RE = re.compile(r"^lazy: (.+): fetched (\d+) of (\d+) bytes", re.M)
SERVED_SLACK = 64 * 1024
SPAN = "256K"


def many_files():
    """~24 MiB in 1200 files: text-like and random contents, a symlink, a hard link."""
    ents = [images.D("opt"), images.D("opt/many")]
    seed = hashlib.sha256(b"ossb").digest()
    for i in range(1200):
        if i % 5 == 0:
            data = os.urandom(40000 + (i * 37) % 9000)
        else:
            line = f"line {i} of a text-like file {seed.hex()[: (i % 60) + 4]}\n".encode()
            data = line * (600 + (i * 13) % 200)
        ents.append(images.F(f"opt/many/d{i % 20:02d}/f{i:04d}.txt", data))
    for d in range(20):
        ents.append(images.D(f"opt/many/d{d:02d}"))
    ents.append(images.F("opt/many/marker.txt", b"marker\n"))
    ents.append(images.S("opt/many/link", "marker.txt"))
    ents.append(images.H("opt/many/z-hard", "opt/many/marker.txt"))
    return ents


def multi_member(raw, piece=1 << 20):
    return b"".join(gzip.compress(raw[i:i + piece], compresslevel=6, mtime=0) for i in range(0, len(raw), piece))


def gzip_image(layer_blobs_and_tars):
    """An images.Image from [(gzip blob, its tar)]."""
    blobs, descs, diff_ids = {}, [], []
    for blob, raw in layer_blobs_and_tars:
        blobs[images.digest(blob)] = blob
        descs.append({"mediaType": images.MT_LAYER_GZIP, "digest": images.digest(blob), "size": len(blob)})
        diff_ids.append(images.digest(raw))
    cfg = {"created": images.CREATED, "architecture": "amd64", "os": "linux", "config": dict(DEBIAN_CONFIG),
           "rootfs": {"type": "layers", "diff_ids": diff_ids},
           "history": [{"created": images.CREATED, "created_by": f"layer {i}"} for i in range(len(descs))]}
    cfg_bytes = images.canonical(cfg)
    blobs[images.digest(cfg_bytes)] = cfg_bytes
    manifest = {"schemaVersion": 2, "mediaType": images.MT_OCI_MANIFEST,
                "config": {"mediaType": images.MT_OCI_CONFIG, "digest": images.digest(cfg_bytes),
                           "size": len(cfg_bytes)},
                "layers": descs}
    return images.Image(images.canonical(manifest), cfg_bytes, blobs, {"architecture": "amd64", "os": "linux"},
                        [r for _, r in layer_blobs_and_tars])


@pytest.fixture(scope="module")
def zran_base(debian_rootfs_tar, seeded_registry):  # noqa: F811
    """(ref, images.Image) of the two-layer plain gzip base in the module's registry."""
    reg = seeded_registry.registry
    deb_raw = images.tar_bytes(rootfs_entries(debian_rootfs_tar))
    many_raw = images.tar_bytes(many_files())
    img = gzip_image([(images.gzip_bytes(deb_raw), deb_raw), (multi_member(many_raw), many_raw)])
    reg.push_image("zran-base", "1", img)
    return reg.ref("zran-base:1"), img


@pytest.fixture(scope="module")
def pushed_index(zran_base, seeded_registry, ossb_binary, tmp_path_factory):
    """`ossb index --push` of the base, once: (artifact digest, its stderr)."""
    import subprocess
    ref, img = zran_base
    cache = tmp_path_factory.mktemp("index-cache")
    p = subprocess.run([str(ossb_binary), "index", "--cache-dir", str(cache), "--span-size", SPAN, "--push", ref],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    digest = p.stdout.strip()
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", digest), p.stdout
    files = sorted((cache / "indexes" / "sha256").iterdir())
    assert [f.name for f in files] == sorted(d[7:] + ".zran" for d in img.layer_digests())
    return digest, p.stderr


def lazy_counts(stderr):
    return [(m.group(1), int(m.group(2)), int(m.group(3))) for m in LAZY_RE.finditer(stderr)]


def build(ossb, context, base, body, *args, ok=True, **kw):
    open_fuse_device()
    ctx = context({"a.txt": b"a\n"}, df=f"FROM {base}\n" + body)
    run = ossb.build_ok if ok else ossb.build
    return run(ctx, "--snapshotter", "fuse", "--progress=plain", *args, **kw)


def test_index_artifact_in_tag_schema(zran_base, pushed_index, seeded_registry):
    reg = seeded_registry.registry
    ref, img = zran_base
    artifact, _ = pushed_index
    # no referrers API on distribution 2.8: the tag `sha256-<hex>` holds the referrers index
    st, _, body = reg.http("GET", f"/v2/zran-base/referrers/{img.digest}")
    assert st == 404
    st, _, body = reg.http("GET", f"/v2/zran-base/manifests/sha256-{img.digest[7:]}",
                           headers={"Accept": images.MT_OCI_INDEX})
    assert st == 200, body
    ix = json.loads(body)
    assert ix["mediaType"] == images.MT_OCI_INDEX
    assert [(m["digest"], m["artifactType"]) for m in ix["manifests"]] == [(artifact, ZRAN_TYPE)]
    # the artifact, read by an independent client
    m = json.loads(reg.inspect_raw(f"zran-base@{artifact}"))
    assert m["artifactType"] == ZRAN_TYPE
    assert m["config"]["mediaType"] == "application/vnd.oci.empty.v1+json" and m["config"]["size"] == 2
    assert m["subject"]["digest"] == img.digest and m["subject"]["size"] == len(img.manifest)
    assert [lay["annotations"][LAYER_ANNOTATION] for lay in m["layers"]] == img.layer_digests()
    for lay in m["layers"]:
        st, _, blob = reg.http("GET", f"/v2/zran-base/blobs/{lay['digest']}")
        assert st == 200 and images.digest(blob) == lay["digest"] and blob[:8] == b"OSSBZRAN"


def test_index_push_again_is_idempotent(zran_base, pushed_index, seeded_registry, ossb, tmp_path):
    """A second `ossb index --push` (a fresh cache: indexed again) gives the same artifact, and
    the tag-schema index still lists it once."""
    reg = seeded_registry.registry
    ref, img = zran_base
    r = ossb_cmd(ossb, "index", "--span-size", SPAN, "--push", ref, cache=tmp_path / "again")
    assert r.returncode == 0, str(r)
    assert r.stdout.strip() == pushed_index[0]
    st, _, body = reg.http("GET", f"/v2/zran-base/manifests/sha256-{img.digest[7:]}",
                           headers={"Accept": images.MT_OCI_INDEX})
    assert [m["digest"] for m in json.loads(body)["manifests"]] == [pushed_index[0]]


def test_touch_one_file_fetches_little(ossb, context, zran_base, pushed_index, seeded_registry):
    reg = seeded_registry.registry
    ref, img = zran_base
    layers = {d["digest"]: d["size"] for d in img.manifest_json["layers"]}
    mark = reg.mark()
    r = build(ossb, context, ref, "RUN cat /etc/os-release > /out\n")
    counts = lazy_counts(r.stderr)
    assert len(counts) == 2, r.stderr  # both layers read lazily, from an empty cache
    fetched, size = sum(c[1] for c in counts), sum(c[2] for c in counts)
    assert size == sum(layers.values())
    print(f"fetched {fetched} of {size} bytes ({100 * fetched / size:.2f}%): {counts}")
    assert fetched < size * 0.05, f"fetched {fetched} of {size} bytes: {counts}"
    served = reg.served_bytes(layers, since=mark, status=206)
    assert served < size * 0.05, f"the registry served {served} of the base's {size} bytes"
    assert fetched <= served <= fetched + SERVED_SLACK, f"ossb counted {fetched} bytes, the registry served {served}"
    assert b"bookworm" in r.image.rootfs()["out"].data
    assert (Path(ossb.cache) / "indexes" / "sha256").is_dir()  # found through the registry, then kept


def test_read_everything_same_as_full_pull(ossb, context, zran_base, pushed_index):
    ref, _ = zran_base
    body = ("RUN find / -xdev -type f ! -path '/proc/*' | sort | xargs -d '\\n' cat | sha256sum > /sum "
            "&& cat /opt/many/z-hard /opt/many/link >> /sum && ls -lR /opt/many | sha256sum >> /sum\n")
    lazy = build(ossb, context, ref, body, env=SDE)
    full = build(ossb, context, ref, body, "--lazy", "off", env=SDE)
    assert len(lazy_counts(lazy.stderr)) == 2 and not lazy_counts(full.stderr), lazy.stderr
    assert lazy.image.rootfs()["sum"].data == full.image.rootfs()["sum"].data
    assert lazy.image.config["rootfs"]["diff_ids"] == full.image.config["rootfs"]["diff_ids"]


def test_corrupted_range_fails_clearly(ossb, context, zran_base, pushed_index, seeded_registry, fault_proxy):
    from faultproxy import Fault
    reg = seeded_registry.registry
    proxy = fault_proxy(reg)
    ref, img = zran_base
    many = img.layer_digests()[1]
    # every read of the many-files layer's blob gets a flipped byte
    proxy.add(Fault("corrupt", method="GET", path=f"/blobs/{many}", times=None))
    r = build(ossb, context, ref.replace(reg.host, proxy.host), "RUN cat /opt/many/d07/f0007.txt > /copy\n", ok=False)
    assert r.returncode != 0, str(r)
    assert "f0007.txt" in r.stderr and many[:19] in r.stderr, r.stderr
    assert "did not match" in r.stderr or "not what" in r.stderr or "digest" in r.stderr, r.stderr
    assert not (Path(r.layout_dir) / "index.json").exists()


def test_index_of_corrupt_blob_refused(zran_base, seeded_registry, fault_proxy, ossb, tmp_path):
    """`ossb index` on a blob the registry serves corrupted: no index, an error naming the
    image and the layer, exit code 3 (a registry problem)."""
    from faultproxy import Fault
    reg = seeded_registry.registry
    proxy = fault_proxy(reg)
    ref, img = zran_base
    many = img.layer_digests()[1]
    proxy.add(Fault("corrupt", method="GET", path=f"/blobs/{many}", times=None))
    cache = tmp_path / "bad"
    r = ossb_cmd(ossb, "index", "--span-size", SPAN, ref.replace(reg.host, proxy.host), cache=cache)
    assert r.returncode == 3, str(r)
    assert "layer 2" in r.stderr and many[:19] in r.stderr, r.stderr
    assert not (cache / "indexes" / "sha256" / (many[7:] + ".zran")).exists()


# --- the referrers API (a fake registry: distribution 2.8 has none) ---------------------------


class FakeReferrers(http.server.ThreadingHTTPServer):
    """Answers GET /v2/NAME/referrers/DIGEST with an index of one artifact, and serves that
    artifact's manifest and blobs; counts the tag-schema fallback requests."""

    def __init__(self, subject, artifact, blobs):
        self.subject, self.artifact, self.blobs = subject, artifact, blobs
        self.tag_gets = 0
        self.referrer_gets = 0
        super().__init__(("127.0.0.1", 0), Handler)


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def send(self, status, body=b"", ctype="application/json"):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        if status == 200 and "/manifests/sha256:" in self.path:
            self.send_header("Docker-Content-Digest", self.path.rsplit("/", 1)[1])
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        s = self.server
        if self.path == "/v2/":
            return self.send(200, b"{}")
        if self.path.startswith(f"/v2/img/referrers/{s.subject}"):
            s.referrer_gets += 1
            desc = {"mediaType": images.MT_OCI_MANIFEST, "artifactType": ZRAN_TYPE,
                    "digest": images.digest(s.artifact), "size": len(s.artifact)}
            other = dict(desc, artifactType="application/example", digest="sha256:" + "0" * 64)
            body = json.dumps({"schemaVersion": 2, "mediaType": images.MT_OCI_INDEX, "manifests": [other, desc]})
            return self.send(200, body.encode(), images.MT_OCI_INDEX)
        if "/manifests/sha256-" in self.path:
            s.tag_gets += 1
            return self.send(404, b'{"errors":[{"code":"MANIFEST_UNKNOWN"}]}')
        d = self.path.rsplit("/", 1)[1]
        if d in s.blobs:
            return self.send(200, s.blobs[d], "application/octet-stream")
        return self.send(404, b'{"errors":[{"code":"BLOB_UNKNOWN"}]}')


def test_referrers_api_is_used(zran_base, pushed_index, seeded_registry, ossb, context):
    """A registry with the referrers API (a fake serving the image, its blobs and the artifact
    copied from the real registry): a build with an empty cache finds the index through
    GET /v2/NAME/referrers/DIGEST (the non-ossb referrer listed first is skipped) and reads
    both layers lazily, never asking for the fallback tag."""
    reg = seeded_registry.registry
    ref, img = zran_base
    artifact, _ = pushed_index
    m = reg.inspect_raw(f"zran-base@{artifact}")
    blobs = {artifact: m, img.digest: img.manifest}
    for lay in json.loads(m)["layers"]:
        blobs[lay["digest"]] = reg.http("GET", f"/v2/zran-base/blobs/{lay['digest']}")[2]
    blobs.update(img.blobs)
    fake = FakeReferrers(img.digest, m, blobs)
    t = threading.Thread(target=fake.serve_forever, daemon=True)
    t.start()
    try:
        host = f"127.0.0.1:{fake.server_address[1]}"
        r = build(ossb, context, f"{host}/img@{img.digest}", "RUN cat /etc/os-release > /out\n",
                  "--insecure-registry", host)
        assert len(lazy_counts(r.stderr)) == 2, r.stderr
        assert fake.referrer_gets == 1 and fake.tag_gets == 0, (fake.referrer_gets, fake.tag_gets)
        assert b"bookworm" in r.image.rootfs()["out"].data
    finally:
        fake.shutdown()
