"""`ossb build --push`, `--output type=registry` and `ossb push` of an OCI layout, against
Debian's docker-registry; what was pushed is read back with skopeo and umoci, and the registry's
access log shows how it was pushed (cross-repository mounts, chunked uploads, no re-upload)."""
import json
import os
import subprocess
import tarfile

import pytest

import images
from conftest import IS_ROOT, Layout, need_tool
from registry import CLEAN_ENV, ossb_cmd

HELLO = "hello from the pushed image\n"


@pytest.fixture(scope="module")
def seeded(seeded_registry):
    return seeded_registry


@pytest.fixture(scope="module")
def reg(seeded):
    return seeded.registry


def app_context(context, reg, extra_files=None, extra_df=""):
    files = {"hello.txt": (HELLO, 0o644)}
    files.update(extra_files or {})
    return context(files, df=f"FROM {reg.ref('busybox:1')}\nCOPY hello.txt /srv/hello.txt\n{extra_df}")


def expected_app_tree(extra=()):
    return images.expected_tree([images.busybox_rootfs(),
                                 [images.D("srv"), images.F("srv/hello.txt", HELLO, 0o644), *extra]])


def build_push(ossb, ctx, *tags, extra=(), env=None):
    a = ["--push"]
    for t in tags:
        a += ["-t", t]
    return ossb.build(ctx, *a, *extra, out=False, env=env)


def skopeo(*args):
    p = subprocess.run([need_tool("skopeo"), *map(str, args)], capture_output=True, text=True, timeout=120,
                       env=CLEAN_ENV)
    assert p.returncode == 0, f"skopeo {' '.join(map(str, args))}: {p.stderr}"
    return p


def pushed_tree(reg, name, tmp):
    lay = tmp / ("copy-" + name.replace(":", "-").replace("/", "-"))
    skopeo("copy", "-q", "--src-tls-verify=false", f"docker://{reg.ref(name)}", f"oci:{lay}:x")
    return lay, images.load_layout_image(lay)


# --- build --push ----------------------------------------------------------------------------


def test_build_push(ossb, reg, context, tmp_path):
    ctx = app_context(context, reg)
    r = build_push(ossb, ctx, reg.ref("app:1"))
    assert r.returncode == 0, str(r)
    assert r.digest == reg.manifest_digest("app:1"), "the printed digest is not the registry's"
    insp = json.loads(skopeo("inspect", "--tls-verify=false", f"docker://{reg.ref('app:1')}").stdout)
    assert insp["Digest"] == r.digest
    assert insp["Labels"] == images.BASE_CONFIG["Labels"]
    lay, got = pushed_tree(reg, "app:1", tmp_path)
    assert got.digest == r.digest
    Layout(lay).image().check_consistency()
    assert images.tree_diff(images.tree_summary(got.rootfs()), expected_app_tree()) == []


def test_build_push_umoci_unpacks(ossb, reg, context, tmp_path):
    umoci = need_tool("umoci")
    ctx = app_context(context, reg)
    r = build_push(ossb, ctx, reg.ref("app-umoci:1"))
    assert r.returncode == 0, str(r)
    lay, _ = pushed_tree(reg, "app-umoci:1", tmp_path)
    args = [umoci, "unpack", "--image", f"{lay}:x", tmp_path / "bundle"]
    if not IS_ROOT:
        args.insert(2, "--rootless")
    subprocess.run(list(map(str, args)), check=True, capture_output=True)
    root = tmp_path / "bundle" / "rootfs"
    assert (root / "srv/hello.txt").read_text() == HELLO
    assert (root / "bin/busybox").read_bytes() == images.busybox_binary()
    assert os.readlink(root / "bin/sh") == "busybox"
    cfg = json.loads((tmp_path / "bundle" / "config.json").read_text())
    assert cfg["process"]["args"] == ["sh"] and cfg["process"]["cwd"] == "/root"


def test_build_push_metadata_file(ossb, reg, context):
    meta = ossb.path("meta.json")
    r = build_push(ossb, app_context(context, reg), reg.ref("app-meta:1"), extra=("--metadata-file", meta))
    assert r.returncode == 0, str(r)
    doc = json.loads(meta.read_text())
    assert doc["containerimage.digest"] == r.digest == reg.manifest_digest("app-meta:1")


def test_build_push_every_tag(ossb, reg, context):
    r = build_push(ossb, app_context(context, reg), reg.ref("app-tags:1"), reg.ref("app-tags:latest"),
                   reg.ref("app-other:1"))
    assert r.returncode == 0, str(r)
    for n in ("app-tags:1", "app-tags:latest", "app-other:1"):
        assert reg.manifest_digest(n) == r.digest, n


def test_output_type_registry(ossb, reg, context):
    r = ossb.build(app_context(context, reg), "--output", f"type=registry,name={reg.ref('app-out:2')}", out=False)
    assert r.returncode == 0, str(r)
    assert r.digest == reg.manifest_digest("app-out:2")


def test_output_type_registry_uses_tag(ossb, reg, context):
    r = ossb.build(app_context(context, reg), "-t", reg.ref("app-out:3"), "--output", "type=registry", out=False)
    assert r.returncode == 0, str(r)
    assert r.digest == reg.manifest_digest("app-out:3")


def test_build_push_without_tag_is_usage_error(ossb, reg, context):
    r = ossb.build(app_context(context, reg), "--push", out=False)
    assert r.returncode == 2, str(r)


def test_same_build_pushed_and_exported_match(ossb, reg, context, tmp_path):
    """The image pushed equals the one written to an OCI layout by the same build (with a
    fixed SOURCE_DATE_EPOCH, byte for byte)."""
    ctx = app_context(context, reg)
    env = {"SOURCE_DATE_EPOCH": "1700000000"}
    r1 = ossb.build(ctx, "--push", "-t", reg.ref("app-same:1"), "--output", f"type=oci,dest={ossb.path('lay')}",
                    out=False, env=env)
    assert r1.returncode == 0, str(r1)
    local = images.load_layout_image(ossb.path("lay"))
    assert local.digest == r1.digest == reg.manifest_digest("app-same:1")
    _, pushed = pushed_tree(reg, "app-same:1", tmp_path)
    assert pushed.layer_blobs == local.layer_blobs and pushed.config_bytes == local.config_bytes


# --- how blobs go up -------------------------------------------------------------------------


def test_cross_repository_mount(ossb, seeded, reg, context):
    """The base layer came from repository busybox of this registry: pushing to another
    repository mounts it (POST ...?mount=DIGEST&from=busybox) instead of uploading it."""
    base_layer = seeded.image("busybox:1").layer_digests()[0]
    mark = reg.mark()
    r = build_push(ossb, app_context(context, reg), reg.ref("app-mount:1"))
    assert r.returncode == 0, str(r)
    posts = reg.requests("POST", r"^/v2/app-mount/blobs/uploads/$", since=mark)
    mounts = [p for p in posts if p.query.get("mount") == [base_layer]]
    assert mounts, "no cross-repository mount of the base layer:\n" + "\n".join(p.uri for p in posts)
    assert mounts[0].query.get("from") == ["busybox"]
    assert mounts[0].status == 201
    # and its bytes were not sent
    puts = reg.requests("PUT", r"^/v2/app-mount/blobs/uploads/", since=mark)
    assert not [p for p in puts if p.query.get("digest") == [base_layer]]
    assert reg.has_blob("app-mount", base_layer)


def test_existing_blobs_not_uploaded_again(ossb, reg, context):
    # a reproducible build (SOURCE_DATE_EPOCH): the second build makes the same blobs
    ctx = app_context(context, reg)
    sde = {"SOURCE_DATE_EPOCH": "1700000000"}
    r = build_push(ossb, ctx, reg.ref("app-again:1"), env=sde)
    assert r.returncode == 0, str(r)
    mark = reg.mark()
    r2 = build_push(ossb, ctx, reg.ref("app-again:2"), env=sde)
    assert r2.returncode == 0, str(r2)
    assert reg.requests("POST", r"/blobs/uploads/", since=mark) == [], "blobs the registry has were uploaded again"
    assert reg.requests("HEAD", r"^/v2/app-again/blobs/", since=mark), "no HEAD check of the blobs"
    assert reg.manifest_digest("app-again:2") == r2.digest


def test_chunked_upload(ossb, reg, context, tmp_path):
    chunk = 64 * 1024
    big = os.urandom(400 * 1024)  # incompressible: the layer blob is > 6 chunks
    ctx = context({"big.bin": (big, 0o644)}, df=f"FROM {reg.ref('busybox:1')}\nCOPY big.bin /big.bin\n")
    mark = reg.mark()
    r = build_push(ossb, ctx, reg.ref("chunky:1"), env={"OSSB_PUSH_CHUNK_SIZE": str(chunk)})
    assert r.returncode == 0, str(r)
    patches = reg.requests("PATCH", r"^/v2/chunky/blobs/uploads/", since=mark)
    assert len(patches) >= len(big) // chunk, f"{len(patches)} PATCH requests for a {len(big)}-byte layer"
    assert all(p.status == 202 for p in patches)
    _, got = pushed_tree(reg, "chunky:1", tmp_path)
    assert got.digest == r.digest
    assert got.rootfs()["big.bin"].data == big


# --- ossb push LAYOUT -----------------------------------------------------------------------


def test_push_oci_layout(ossb, reg, tmp_path):
    img = images.image_layered()
    lay = images.write_layout(tmp_path / "lay", {"t": img})
    digest_file = ossb.path("digest.txt")
    r = ossb_cmd(ossb, "push", "--digest-file", digest_file, lay, reg.ref("pushed-layout:1"))
    assert r.returncode == 0, str(r)
    assert r.digest == img.digest, "the manifest is pushed byte for byte"
    assert reg.manifest_digest("pushed-layout:1") == img.digest
    assert digest_file.read_text().strip() == img.digest
    for d in img.blobs:
        assert reg.has_blob("pushed-layout", d), d


def test_push_oci_layout_tar(ossb, reg, tmp_path):
    img = images.make_image([images.busybox_rootfs(), [images.F("extra.txt", "tar layout\n")]])
    lay = images.write_layout(tmp_path / "lay", {"t": img})
    tar = tmp_path / "lay.tar"
    with tarfile.open(tar, "w") as tf:
        for p in sorted(lay.rglob("*")):
            tf.add(p, arcname=str(p.relative_to(lay)), recursive=False)
    r = ossb_cmd(ossb, "push", tar, reg.ref("pushed-tar:1"))
    assert r.returncode == 0, str(r)
    assert r.digest == img.digest == reg.manifest_digest("pushed-tar:1")


def test_push_layout_choose_by_tag(ossb, reg, tmp_path):
    a = images.make_image([[images.F("which.txt", "a\n")]])
    b = images.make_image([[images.F("which.txt", "b\n")]])
    lay = images.write_layout(tmp_path / "lay", {"a": a, "b": b})
    r = ossb_cmd(ossb, "push", "--tag", "b", lay, reg.ref("pushed-choose:1"))
    assert r.returncode == 0, str(r)
    assert r.digest == b.digest == reg.manifest_digest("pushed-choose:1")


def test_push_index_layout(ossb, reg, tmp_path):
    two = images.index_two_platforms()
    if two is None:
        pytest.skip(images.ARM64_SKIP_REASON)
    idx = two[0]
    lay = images.write_layout(tmp_path / "lay", {"multi": idx})
    r = ossb_cmd(ossb, "push", lay, reg.ref("pushed-index:1"))
    assert r.returncode == 0, str(r)
    assert r.digest == idx.digest == reg.manifest_digest("pushed-index:1")
    for im in idx.images:
        assert reg.has_manifest("pushed-index", im.digest), im.platform


def test_push_layout_then_pull_back(ossb, reg, tmp_path):
    """What ossb pushes ossb pulls back identically (another cache dir: nothing shared)."""
    img = images.image_layered()
    lay = images.write_layout(tmp_path / "lay", {"t": img})
    r = ossb_cmd(ossb, "push", lay, reg.ref("roundtrip:1"))
    assert r.returncode == 0, str(r)
    out = ossb.path("back")
    r2 = ossb_cmd(ossb, "pull", "--output", f"type=oci,dest={out}", reg.ref("roundtrip:1"), cache=ossb.path("c2"))
    assert r2.returncode == 0, str(r2)
    got = images.load_layout_image(out)
    assert got.digest == img.digest and got.layer_blobs == [img.blobs[d] for d in img.layer_digests()]
