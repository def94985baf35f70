"""Bad input from registries and users: malformed, oversized (> 4 MiB, distribution's cap) and
unknown-type manifests (served by faultproxy.py in place of the real ones), unknown tags and
repositories, missing blobs -> exit 3; invalid references -> exit 2.  Nothing is half-written:
no --output left behind, the store verifies clean and holds nothing of the bad manifest."""
import json
import re

import pytest

import images
from faultproxy import Fault
from registry import assert_store_clean, ossb_cmd, store_blobs

pytestmark = pytest.mark.usefixtures("registry_env")

MAX_MANIFEST = 4 * 1024 * 1024


@pytest.fixture(scope="module")
def seeded(seeded_registry):
    return seeded_registry


@pytest.fixture(scope="module")
def reg(seeded):
    return seeded.registry


@pytest.fixture
def proxy(reg, fault_proxy):
    return fault_proxy(reg)


def serve_manifest(proxy, body, media_type, path=r"/manifests/1$", headers=None):
    h = {"Content-Type": media_type, "Docker-Distribution-Api-Version": "registry/2.0"}
    h.update(headers or {})
    proxy.add(Fault("respond", path=path, status=200, body=body, headers=h, times=None))


def assert_failed_cleanly(ossb, r, code, *patterns, out=None, bad_bytes=None):
    assert r.returncode == code, str(r)
    assert "sha256:" not in r.stdout or code != 0, str(r)
    for p in patterns:
        assert re.search(p, r.stderr, re.I), f"stderr does not match {p!r}\n{r}"
    if out is not None:
        assert not out.exists(), f"a failed pull left {out} behind\n{r}"
    if bad_bytes is not None:
        assert images.digest(bad_bytes) not in store_blobs(ossb.cache), "the bad manifest was stored"
    assert_store_clean(ossb)


def pull_via(ossb, proxy, name="busybox:1", out=True):
    dest = ossb.path("out") if out else None
    args = ["--output", f"type=oci,dest={dest}"] if out else []
    return ossb_cmd(ossb, "pull", *args, f"{proxy.host}/{name}"), dest


# --- bad manifests ------------------------------------------------------------------------


@pytest.mark.parametrize("body", [
    b"{not json",
    b'{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "config": ',
    b'{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "config": "x", "layers": 3}',
    b'{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", '
    b'"config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": "sha256:nothex", "size": 2}, '
    b'"layers": []}',
    b"[]",
    b"",
], ids=["garbage", "truncated", "wrong-types", "bad-digest", "array", "empty"])
def test_malformed_manifest(ossb, proxy, body):
    serve_manifest(proxy, body, images.MT_OCI_MANIFEST)
    r, out = pull_via(ossb, proxy)
    assert_failed_cleanly(ossb, r, 3, r"manifest", out=out, bad_bytes=body)
    assert proxy.host in r.stderr, str(r)


def test_oversized_manifest(ossb, proxy):
    doc = {"schemaVersion": 2, "mediaType": images.MT_OCI_MANIFEST,
           "config": {"mediaType": images.MT_OCI_CONFIG, "digest": "sha256:" + "0" * 64, "size": 2},
           "layers": [], "annotations": {"pad": "x" * (MAX_MANIFEST + 1024)}}
    body = json.dumps(doc).encode()
    assert len(body) > MAX_MANIFEST
    serve_manifest(proxy, body, images.MT_OCI_MANIFEST)
    r, out = pull_via(ossb, proxy)
    assert_failed_cleanly(ossb, r, 3, r"too (large|big)|exceed|4 ?MiB|4194304|size|limit", out=out, bad_bytes=body)


@pytest.mark.parametrize("media_type", [
    "application/vnd.example.unknown.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
])
def test_unknown_media_type(ossb, proxy, media_type):
    body = json.dumps({"schemaVersion": 2 if "example" in media_type else 1, "mediaType": media_type,
                       "name": "busybox", "tag": "1", "fsLayers": []}).encode()
    serve_manifest(proxy, body, media_type)
    r, out = pull_via(ossb, proxy)
    assert_failed_cleanly(ossb, r, 3, re.escape(media_type), out=out, bad_bytes=body)


def test_unknown_layer_media_type(ossb, reg, tmp_path):
    """A manifest whose layer has a media type ossb cannot unpack: a build FROM it fails with
    exit 3 naming the type (distribution stores any type)."""
    img = images.make_image([[images.F("a.txt", "a\n")]])
    man = img.manifest_json
    man["layers"][0]["mediaType"] = "application/vnd.example.layer.v1.tar+lz4"
    body = images.canonical(man)
    for d, data in img.blobs.items():
        reg.put_blob("weird-layer", data)
    reg.put_manifest("weird-layer", "1", body, images.MT_OCI_MANIFEST)
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {reg.ref('weird-layer:1')} AS b\nFROM scratch\nCOPY --from=b /a.txt /\n")
    r = ossb.build(ctx, out=None)
    assert r.returncode == 3, str(r)
    assert "application/vnd.example.layer.v1.tar+lz4" in r.stderr, str(r)


def test_manifest_with_missing_blob(ossb, proxy, seeded):
    img = seeded.image("busybox:1")
    man = img.manifest_json
    missing = "sha256:" + "ab" * 32
    man["layers"][0]["digest"] = missing
    body = images.canonical(man)
    serve_manifest(proxy, body, images.MT_OCI_MANIFEST)
    r, out = pull_via(ossb, proxy)
    assert_failed_cleanly(ossb, r, 3, re.escape(missing[7:19]), out=out)


def test_digest_header_mismatch_by_digest(ossb, proxy, seeded):
    """Pulling by digest, a Docker-Content-Digest header naming another digest is refused."""
    d = seeded.digest("busybox:1")
    img = seeded.image("busybox:1")
    serve_manifest(proxy, img.manifest, images.MT_OCI_MANIFEST, path=f"/manifests/{d}$",
                   headers={"Docker-Content-Digest": "sha256:" + "1" * 64})
    r, out = pull_via(ossb, proxy, f"busybox@{d}")
    assert_failed_cleanly(ossb, r, 3, r"digest", out=out)


def test_index_served_for_platform_missing(ossb, proxy, seeded):
    """An index that offers only another platform (made up here, no arm64 .deb needed)."""
    amd = seeded.image("busybox:1")
    idx = {"schemaVersion": 2, "mediaType": images.MT_OCI_INDEX,
           "manifests": [dict(amd.descriptor, platform={"os": "linux", "architecture": "riscv64"})]}
    body = images.canonical(idx)
    serve_manifest(proxy, body, images.MT_OCI_INDEX)
    r, out = pull_via(ossb, proxy)
    assert_failed_cleanly(ossb, r, 3, r"linux/riscv64", out=out, bad_bytes=body)


# --- unknown names ------------------------------------------------------------------------


def test_unknown_tag(ossb, reg):
    out = ossb.path("out")
    r = ossb_cmd(ossb, "pull", "--output", f"type=oci,dest={out}", reg.ref("busybox:no-such-tag"))
    assert_failed_cleanly(ossb, r, 3, r"no-such-tag", out=out)
    assert reg.host in r.stderr


def test_unknown_repository(ossb, reg):
    r = ossb_cmd(ossb, "pull", reg.ref("no/such/repo:1"))
    assert_failed_cleanly(ossb, r, 3, r"no/such/repo")


def test_unknown_digest(ossb, reg):
    d = "sha256:" + "cd" * 32
    r = ossb_cmd(ossb, "pull", reg.ref(f"busybox@{d}"))
    assert_failed_cleanly(ossb, r, 3, d[7:19])


def test_inspect_unknown_tag(ossb, reg):
    r = ossb_cmd(ossb, "inspect", reg.ref("busybox:no-such-tag"))
    assert r.returncode == 3 and "no-such-tag" in r.stderr, str(r)
    assert r.stdout.strip() == "", str(r)


def test_build_from_unknown_tag(ossb, reg, context):
    ctx = context(df=f"FROM {reg.ref('busybox:no-such-tag')}\nLABEL a=b\n")
    out = ossb.path("layout-out")
    r = ossb.build(ctx, "--output", f"type=oci,dest={out}", out=False)
    assert r.returncode == 3, str(r)
    assert "no-such-tag" in r.stderr, str(r)
    assert not out.exists()


# --- invalid references -------------------------------------------------------------------

BAD_REFS = ["127.0.0.1:5000/UPPER:1", "busybox:bad tag", "busybox@sha256:1234", "a//b", ":tag", "busybox:",
            "-leading-dash", "busybox@md5:" + "0" * 32, "x" * 300]


@pytest.mark.parametrize("ref", BAD_REFS)
def test_invalid_reference_pull(ossb, ref):
    out = ossb.path("out")
    r = ossb_cmd(ossb, "pull", "--output", f"type=oci,dest={out}", "--", ref)
    assert r.returncode == 2, str(r)
    assert ref[:40] in r.stderr, f"the message does not quote the reference\n{r}"
    assert not out.exists()


@pytest.mark.parametrize("ref", BAD_REFS[:4])
def test_invalid_reference_inspect_and_push(ossb, ref, tmp_path):
    r = ossb_cmd(ossb, "inspect", "--", ref)
    assert r.returncode == 2, str(r)
    lay = images.write_layout(tmp_path / "lay", {"t": images.make_image([[images.F("a", "a")]])})
    r = ossb_cmd(ossb, "push", "--", lay, ref)
    assert r.returncode == 2, str(r)


def test_invalid_reference_from(ossb, context):
    ctx = context(df="FROM 127.0.0.1:5000/UPPER:1\n")
    r = ossb.build(ctx, out=False, tag=None)
    assert r.returncode == 2, str(r)
    assert "UPPER" in r.stderr, str(r)


def test_push_missing_layout(ossb, reg):
    missing = ossb.path("no-such-layout")
    r = ossb_cmd(ossb, "push", missing, reg.ref("x:1"))
    assert r.returncode in (2, 4), str(r)
    assert str(missing) in r.stderr, str(r)
