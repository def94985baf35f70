"""ossb and skopeo read each other's work: what skopeo pushes, ossb pulls (the same bytes as
skopeo's own copy) and builds on (the expected files); what ossb pushes, skopeo copies back
(the same image ossb writes locally)."""
import json
import subprocess

import pytest

import images
from conftest import Layout, need_tool
from registry import CLEAN_ENV, ossb_cmd

pytestmark = pytest.mark.usefixtures("registry_env")


@pytest.fixture(scope="module")
def seeded(seeded_registry):
    return seeded_registry


@pytest.fixture(scope="module")
def reg(seeded):
    return seeded.registry


def skopeo(*args):
    p = subprocess.run([need_tool("skopeo"), *map(str, args)], capture_output=True, text=True, timeout=120,
                       env=CLEAN_ENV)
    assert p.returncode == 0, f"skopeo {' '.join(map(str, args))}: {p.stderr}"
    return p


def skopeo_copy_out(reg, name, dest):
    skopeo("copy", "-q", "--src-tls-verify=false", f"docker://{reg.ref(name)}", f"oci:{dest}:x")
    return images.load_layout_image(dest)


@pytest.mark.parametrize("name", ["busybox:1", "busybox:layered", "busybox:zstd"])
def test_ossb_pull_equals_skopeo_copy(ossb, seeded, reg, name):
    if name not in seeded.pushed:
        pytest.skip("`zstd` is not installed")
    out = ossb.path("ossb-out")
    r = ossb_cmd(ossb, "pull", "--output", f"type=oci,dest={out}", reg.ref(name))
    assert r.returncode == 0, str(r)
    mine = images.load_layout_image(out)
    theirs = skopeo_copy_out(reg, name, ossb.path("skopeo-out"))
    assert mine.digest == theirs.digest == r.digest
    assert mine.config_bytes == theirs.config_bytes
    assert mine.layer_blobs == theirs.layer_blobs
    assert images.tree_diff(images.tree_summary(mine.rootfs()), images.tree_summary(theirs.rootfs())) == []


def test_ossb_pull_v2s2_same_files_as_skopeo(ossb, reg):
    out = ossb.path("ossb-out")
    r = ossb_cmd(ossb, "pull", "--output", f"type=oci,dest={out}", reg.ref("busybox:v2s2"))
    assert r.returncode == 0, str(r)
    mine = images.load_layout_image(out)
    theirs = skopeo_copy_out(reg, "busybox:v2s2", ossb.path("skopeo-out"))
    assert images.tree_diff(images.tree_summary(mine.rootfs()), images.tree_summary(theirs.rootfs())) == []
    # skopeo converts the Docker config to an OCI one, dropping what OCI lacks (Healthcheck,
    # Shell...); ossb keeps the config as served
    assert mine.config["config"] == images.BASE_CONFIG
    for k, v in theirs.config["config"].items():
        assert mine.config["config"].get(k) == v, k


def test_build_from_skopeo_pushed_base(ossb, reg, context):
    """`ossb build` FROM a base skopeo pushed: the base's files plus the COPY, nothing else."""
    ctx = context({"app/run.sh": ("#!/bin/sh\necho hi\n", 0o755), "app/conf.txt": ("k=v\n", 0o600)},
                  df=f"""
        FROM {reg.ref('busybox:layered')}
        COPY app /app
        COPY --chown=1000:1000 app/conf.txt /home/app/conf.txt
    """)
    r = ossb.build_ok(ctx)
    got = images.tree_summary(r.image.rootfs())
    want = images.expected_tree([
        images.busybox_rootfs(), images.LAYER2, images.LAYER3,
        [images.D("app"), images.F("app/run.sh", "#!/bin/sh\necho hi\n", 0o755),
         images.F("app/conf.txt", "k=v\n", 0o600),
         images.F("home/app/conf.txt", "k=v\n", 0o600, 1000, 1000)],
    ])
    # the engine records the base layers unchanged: compare the final trees
    assert images.tree_diff(got, want) == []


def test_skopeo_copies_what_ossb_pushes(ossb, reg, context, tmp_path):
    ctx = context({"hello.txt": ("hi\n", 0o644)}, df=f"FROM {reg.ref('busybox:1')}\nCOPY hello.txt /hello.txt\n")
    env = {"SOURCE_DATE_EPOCH": "1700000000"}
    local = ossb.path("local")
    r = ossb.build(ctx, "--push", "-t", reg.ref("from-ossb:1"), "--output", f"type=oci,dest={local}", out=False,
                   env=env)
    assert r.returncode == 0, str(r)
    theirs = skopeo_copy_out(reg, "from-ossb:1", tmp_path / "back")
    mine = images.load_layout_image(local)
    assert theirs.digest == mine.digest == r.digest
    Layout(tmp_path / "back").image().check_consistency()
    # skopeo can also turn it into a docker-archive
    skopeo("copy", "-q", "--src-tls-verify=false", f"docker://{reg.ref('from-ossb:1')}",
           f"docker-archive:{tmp_path / 'd.tar'}:from-ossb:1")
    insp = json.loads(skopeo("inspect", "--tls-verify=false", f"docker://{reg.ref('from-ossb:1')}").stdout)
    assert insp["Env"] == images.BASE_CONFIG["Env"]


def test_ossb_push_of_skopeo_layout_keeps_digest(ossb, reg, tmp_path):
    """skopeo copies an image to an OCI layout, ossb pushes that layout under a new name: the
    registry has the same manifest."""
    lay = tmp_path / "sk"
    skopeo("copy", "-q", "--src-tls-verify=false", f"docker://{reg.ref('busybox:layered')}", f"oci:{lay}:x")
    want = images.load_layout_image(lay).digest
    r = ossb_cmd(ossb, "push", lay, reg.ref("re-pushed:1"))
    assert r.returncode == 0, str(r)
    assert r.digest == want == reg.manifest_digest("re-pushed:1")


def test_skopeo_reads_ossb_pushed_index_free_manifest(ossb, reg, tmp_path):
    """The manifest ossb pushes is a plain OCI image manifest skopeo inspects without
    complaint, with the config and layer media types as written."""
    img = images.image_layered()
    lay = images.write_layout(tmp_path / "lay", {"t": img})
    r = ossb_cmd(ossb, "push", lay, reg.ref("plain-manifest:1"))
    assert r.returncode == 0, str(r)
    raw = json.loads(reg.inspect_raw("plain-manifest:1"))
    assert raw == img.manifest_json
    cfg = skopeo("inspect", "--config", "--raw", "--tls-verify=false", f"docker://{reg.ref('plain-manifest:1')}")
    assert cfg.stdout.encode() == img.config
