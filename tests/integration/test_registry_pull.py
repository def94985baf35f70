"""`ossb pull`, `ossb inspect` and `FROM` a registry image, against Debian's docker-registry
seeded by skopeo with the offline busybox images of images.py (see registry.seed_busybox)."""
import json
import platform

import pytest

import images
from conftest import DIGEST_RE, need_tool
from registry import assert_store_clean, ossb_cmd, store_blobs


def host_arch():
    m = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(m, m)


@pytest.fixture(scope="module")
def seeded(seeded_registry):
    return seeded_registry


@pytest.fixture(scope="module")
def reg(seeded):
    return seeded.registry


def pull(ossb, *args, **kw):
    return ossb_cmd(ossb, "pull", *args, **kw)


def pull_ok(ossb, *args, **kw):
    r = pull(ossb, *args, **kw)
    assert r.returncode == 0, str(r)
    return r


def inspect(ossb, *args, **kw):
    return ossb_cmd(ossb, "inspect", *args, **kw)


def need_multi(seeded):
    if "multi:1" not in seeded.pushed:
        pytest.skip(images.ARM64_SKIP_REASON)
    return seeded.image("multi:1")


# --- pull by tag / digest -------------------------------------------------------------------


def test_pull_by_tag(ossb, seeded, reg):
    img = seeded.image("busybox:1")
    r = pull_ok(ossb, reg.ref("busybox:1"))
    assert r.digest == seeded.digest("busybox:1") == img.digest
    have = store_blobs(ossb.cache)
    for d in [img.digest, *img.blobs]:
        assert d in have, f"{d} is not in the store after the pull\n{r}"
    assert_store_clean(ossb)


def test_pull_by_digest(ossb, seeded, reg):
    d = seeded.digest("busybox:layered")
    r = pull_ok(ossb, reg.ref(f"busybox@{d}"))
    assert r.digest == d
    assert set(seeded.image("busybox:layered").blobs) <= store_blobs(ossb.cache)


def test_pull_by_tag_and_digest(ossb, seeded, reg):
    """NAME:TAG@DIGEST: the digest wins (the tag is not even asked for)."""
    d = seeded.digest("busybox:1")
    mark = reg.mark()
    r = pull_ok(ossb, reg.ref(f"busybox:no-such-tag@{d}"))
    assert r.digest == d
    assert not reg.requests("GET", r"/manifests/no-such-tag$", since=mark)


def test_pull_output_oci_layout(ossb, seeded, reg):
    dest = ossb.path("out")
    pull_ok(ossb, "--output", f"type=oci,dest={dest}", reg.ref("busybox:1"))
    got = images.load_layout_image(dest)
    img = seeded.image("busybox:1")
    assert got.digest == img.digest, "an OCI image is written out byte for byte as pulled"
    assert got.config == img.config_json
    want = images.expected_tree([images.busybox_rootfs()])
    assert images.tree_diff(images.tree_summary(got.rootfs()), want) == []


def test_pull_output_docker_archive(ossb, seeded, reg):
    from conftest import DockerArchive
    dest = ossb.path("out.tar")
    pull_ok(ossb, "--output", f"type=docker,dest={dest}", reg.ref("busybox:1"))
    arch = DockerArchive(dest)
    img = seeded.image("busybox:1")
    assert [images.digest(t) for t in arch.layer_tars()] == img.config_json["rootfs"]["diff_ids"]
    assert arch.config["config"]["Labels"] == images.BASE_CONFIG["Labels"]


# --- formats ----------------------------------------------------------------------------------


def test_pull_docker_schema2(ossb, seeded, reg):
    d = seeded.digest("busybox:v2s2")
    assert d != seeded.digest("busybox:1")
    dest = ossb.path("out")
    r = pull_ok(ossb, "--output", f"type=oci,dest={dest}", reg.ref("busybox:v2s2"))
    assert r.digest == d
    got = images.load_layout_image(dest)
    want = images.expected_tree([images.busybox_rootfs()])
    assert images.tree_diff(images.tree_summary(got.rootfs()), want) == []
    assert got.config["config"]["Env"] == images.BASE_CONFIG["Env"]
    assert_store_clean(ossb)


def test_pull_zstd_layers(ossb, seeded, reg):
    if "busybox:zstd" not in seeded.pushed:
        pytest.skip("`zstd` is not installed")
    dest = ossb.path("out")
    r = pull_ok(ossb, "--output", f"type=oci,dest={dest}", reg.ref("busybox:zstd"))
    assert r.digest == seeded.digest("busybox:zstd")
    got = images.load_layout_image(dest)
    want = images.expected_tree([images.busybox_rootfs()])
    assert images.tree_diff(images.tree_summary(got.rootfs()), want) == []


def test_from_zstd_base(ossb, seeded, reg, context):
    """The engine decompresses a zstd base layer to build on it."""
    if "busybox:zstd" not in seeded.pushed:
        pytest.skip("`zstd` is not installed")
    ctx = context(df=f"""
        FROM {reg.ref('busybox:zstd')} AS base
        FROM scratch
        COPY --from=base /bin/busybox /etc/passwd /out/
    """)
    r = ossb.build_ok(ctx)
    fs = r.image.rootfs()
    assert fs["out/busybox"].data == images.busybox_binary()
    assert fs["out/passwd"].data == images.PASSWD.encode()


# --- platforms ------------------------------------------------------------------------------


def test_pull_platform_from_index(ossb, seeded, reg):
    idx = need_multi(seeded)
    amd, arm = idx.images
    dest = ossb.path("out")
    r = pull_ok(ossb, "--platform", "linux/arm64", "--output", f"type=oci,dest={dest}", reg.ref("multi:1"))
    assert r.digest in (idx.digest, arm.digest), f"printed {r.digest}: neither the index nor the arm64 manifest"
    have = store_blobs(ossb.cache)
    assert arm.digest in have and set(arm.blobs) <= have
    assert not (set(amd.layer_digests()) & have), "the amd64 layer was downloaded for an arm64 pull"
    got = images.load_layout_image(dest, arch="arm64")
    assert got.digest == arm.digest
    assert images.elf_machine(got.rootfs()["bin/busybox"].data) == images.ELF_AARCH64


def test_pull_platform_default_is_host(ossb, seeded, reg):
    idx = need_multi(seeded)
    want = {im.platform["architecture"]: im for im in idx.images}.get(host_arch())
    if want is None:
        pytest.skip(f"the test index has no {host_arch()} image")
    pull_ok(ossb, reg.ref("multi:1"))
    have = store_blobs(ossb.cache)
    assert want.digest in have and set(want.blobs) <= have


@pytest.mark.parametrize("plat", ["linux/arm64/v8", "linux/aarch64"])
def test_pull_platform_normalised(ossb, seeded, reg, plat):
    idx = need_multi(seeded)
    arm = idx.images[1]
    pull_ok(ossb, "--platform", plat, reg.ref("multi:1"))
    assert arm.digest in store_blobs(ossb.cache)


def test_pull_platform_missing_lists_offered(ossb, seeded, reg):
    need_multi(seeded)
    dest = ossb.path("out")
    r = pull(ossb, "--platform", "linux/s390x", "--output", f"type=oci,dest={dest}", reg.ref("multi:1"))
    assert r.returncode == 3, str(r)
    assert "linux/s390x" in r.stderr, str(r)
    assert "linux/amd64" in r.stderr and "linux/arm64" in r.stderr, f"the error lists the platforms offered\n{r}"
    assert not dest.exists()
    assert_store_clean(ossb)


# --- layers, whiteouts, the store ---------------------------------------------------------


def test_whiteouts_applied_when_built_upon(ossb, seeded, reg, context):
    """COPY --from a three-layer base copies from its unpacked rootfs: the whiteout and the
    opaque directory of the top layer hide what the layers below had."""
    ctx = context(df=f"""
        FROM {reg.ref('busybox:layered')} AS base
        FROM scratch
        COPY --from=base /data /data
        COPY --from=base /opt /opt
    """)
    r = ossb.build_ok(ctx)
    fs = r.image.rootfs()
    for p, data in images.LAYERED_EXPECTED.items():
        assert p in fs and fs[p].data == data, f"{p} missing or wrong in {sorted(fs)}"
    for p in images.LAYERED_ABSENT:
        assert p not in fs, f"{p} should have been removed by a whiteout; rootfs: {sorted(fs)}"
    assert fs["data/sub/c.txt"].mode == 0o600


def test_second_pull_downloads_no_blob(ossb, seeded, reg):
    pull_ok(ossb, reg.ref("busybox:layered"))
    mark = reg.mark()
    r = pull_ok(ossb, reg.ref("busybox:layered"))
    assert r.digest == seeded.digest("busybox:layered")
    assert reg.blob_gets(since=mark) == [], "the second pull downloaded blobs the store had"


def test_shared_layer_not_downloaded_again(ossb, seeded, reg):
    """busybox:1 and busybox:layered share their first layer: pulling the second after the
    first fetches only the blobs the store lacks."""
    pull_ok(ossb, reg.ref("busybox:1"))
    shared = seeded.image("busybox:1").layer_digests()[0]
    assert shared == seeded.image("busybox:layered").layer_digests()[0]
    mark = reg.mark()
    pull_ok(ossb, reg.ref("busybox:layered"))
    got = {a.path.rsplit("/", 1)[-1] for a in reg.blob_gets(since=mark)}
    assert shared not in got
    assert set(seeded.image("busybox:layered").layer_digests()[1:]) <= got


def test_build_from_uses_store(ossb, seeded, reg, context):
    """A build FROM an image already pulled downloads no blob."""
    pull_ok(ossb, reg.ref("busybox:1"))
    mark = reg.mark()
    ctx = context({"f.txt": "f\n"}, df=f"FROM {reg.ref('busybox:1')}\nCOPY f.txt /f.txt\n")
    ossb.build_ok(ctx)
    assert reg.blob_gets(since=mark) == []


# --- FROM: the base's config is inherited ------------------------------------------------


def test_from_inherits_base_config(ossb, seeded, reg, context):
    ctx = context({"hello.txt": "hello\n"}, df=f"""
        FROM {reg.ref('busybox:1')}
        COPY hello.txt /srv/hello.txt
    """)
    r = ossb.build_ok(ctx)
    img = r.image
    cfg = img.cfg
    base = images.BASE_CONFIG
    for k in ("User", "Cmd", "WorkingDir", "ExposedPorts", "Volumes", "Labels", "StopSignal", "Healthcheck",
              "Shell"):
        assert cfg.get(k) == base[k], f"config.{k} = {cfg.get(k)!r}, the base has {base[k]!r}"
    assert cfg.get("Env") == base["Env"]
    # the base layer is reused as is; one layer is added on top
    base_img = seeded.image("busybox:1")
    assert [d["digest"] for d in img.manifest["layers"][:1]] == base_img.layer_digests()
    assert len(img.manifest["layers"]) == 2
    assert img.config["rootfs"]["diff_ids"][0] == base_img.config_json["rootfs"]["diff_ids"][0]
    assert img.config["history"][0] == base_img.config_json["history"][0]
    fs = img.rootfs()
    assert fs["srv/hello.txt"].data == b"hello\n"
    assert fs["bin/busybox"].data == images.busybox_binary()


def test_from_by_digest(ossb, seeded, reg, context):
    d = seeded.digest("busybox:1")
    ctx = context(df=f"FROM {reg.ref('busybox@' + d)}\nLABEL x=y\n")
    r = ossb.build_ok(ctx)
    assert r.image.manifest["layers"][0]["digest"] == seeded.image("busybox:1").layer_digests()[0]


def test_onbuild_triggers_of_base_run(ossb, reg, context, tmp_path):
    cfg = dict(images.BASE_CONFIG, OnBuild=["COPY trigger.txt /from-trigger.txt", "LABEL triggered=yes"])
    img = images.make_image([images.busybox_rootfs()], config=cfg)
    lay = images.write_layout(tmp_path / "onbuild-layout", {"t": img})
    reg.push_layout(lay, "t", "onbuild-base:1")
    ctx = context({"trigger.txt": "from the child context\n"}, df=f"FROM {reg.ref('onbuild-base:1')}\n")
    r = ossb.build_ok(ctx)
    assert r.image.rootfs()["from-trigger.txt"].data == b"from the child context\n"
    assert r.image.cfg["Labels"].get("triggered") == "yes"
    assert not r.image.cfg.get("OnBuild"), "triggers run in the child are not inherited further"


# --- inspect ------------------------------------------------------------------------------


def test_inspect(ossb, seeded, reg):
    img = seeded.image("busybox:1")
    r = inspect(ossb, reg.ref("busybox:1"))
    assert r.returncode == 0, str(r)
    doc = json.loads(r.stdout)
    assert doc["digest"] == img.digest
    assert doc["mediaType"] == images.MT_OCI_MANIFEST
    assert reg.host in doc["name"] and "busybox" in doc["name"]
    assert doc["manifest"] == img.manifest_json
    assert doc["config"] == img.config_json


def test_inspect_raw_matches_skopeo(ossb, seeded, reg):
    skopeo = need_tool("skopeo")
    import subprocess
    for name in ("busybox:1", "busybox:v2s2"):
        r = inspect(ossb, "--raw", reg.ref(name))
        assert r.returncode == 0, str(r)
        raw = reg.inspect_raw(name)
        assert r.stdout.encode() == raw, f"--raw of {name} differs from the bytes served"
        p = subprocess.run([skopeo, "inspect", "--tls-verify=false", f"docker://{reg.ref(name)}"],
                           capture_output=True, text=True, check=True)
        assert images.digest(r.stdout.encode()) == json.loads(p.stdout)["Digest"]


def test_inspect_config(ossb, seeded, reg):
    r = inspect(ossb, "--config", reg.ref("busybox:v2s2"))
    assert r.returncode == 0, str(r)
    assert json.loads(r.stdout) == seeded.image("busybox:1").config_json


def test_inspect_docker_schema2(ossb, seeded, reg):
    r = inspect(ossb, reg.ref("busybox:v2s2"))
    assert r.returncode == 0, str(r)
    doc = json.loads(r.stdout)
    assert doc["mediaType"] == images.MT_DOCKER_MANIFEST
    assert doc["digest"] == seeded.digest("busybox:v2s2")


def test_inspect_index(ossb, seeded, reg):
    idx = need_multi(seeded)
    r = inspect(ossb, "--platform", "linux/arm64", reg.ref("multi:1"))
    assert r.returncode == 0, str(r)
    doc = json.loads(r.stdout)
    assert doc["index"] == json.loads(idx.index)
    assert doc["platform"] in ("linux/arm64", "linux/arm64/v8")
    assert doc["manifest"] == idx.images[1].manifest_json
    assert doc["config"]["architecture"] == "arm64"
    r = inspect(ossb, "--raw", reg.ref("multi:1"))
    assert r.returncode == 0 and r.stdout.encode() == idx.index, str(r)


def test_inspect_prints_digest_format(ossb, reg):
    r = inspect(ossb, reg.ref("busybox:1"))
    assert r.returncode == 0, str(r)
    assert DIGEST_RE.match(json.loads(r.stdout)["digest"])
