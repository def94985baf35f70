"""examples/hello built into every output format, each output checked with an independent
reader (skopeo, umoci, podman) as well as with this suite's own readers."""
import json
import os
import platform
import shutil
import stat
import tarfile
import tempfile
from pathlib import Path

import pytest

from conftest import (IS_ROOT, REF_NAME, REPO_ROOT, SCRATCH_PATH, DockerArchive, Layout, apply_layers,
                      digest_of, extract_tar, need_tool, run_tool)

HELLO = REPO_ROOT / "examples" / "hello"

# What examples/hello/Dockerfile makes (keep in step with it).
GREETING = (HELLO / "greeting.txt").read_bytes() if (HELLO / "greeting.txt").exists() else None
GREETING_MODE = stat.S_IMODE(os.stat(HELLO / "greeting.txt").st_mode) if GREETING is not None else None
HELLO_FILES = {
    # path: (content or None for a directory, mode, uid, gid)
    "srv": (None, 0o755, 0, 0),
    "srv/greeting.txt": (GREETING, GREETING_MODE, 0, 0),
    "srv/built-by.txt": (b"built by ossb for hello\n", 0o644, 0, 0),
    "srv/copy-of-greeting.txt": (GREETING, 0o444, 0, 0),
}
HELLO_CONFIG = {
    "User": "1000:1000",
    "WorkingDir": "/srv",
    "Entrypoint": ["/bin/cat"],
    "Cmd": ["/srv/greeting.txt"],
    "ExposedPorts": {"8080/tcp": {}},
    "Volumes": {"/srv/data": {}},
    "Labels": {
        "org.opencontainers.image.title": "ossb hello example",
        "org.opencontainers.image.description": "A FROM scratch image made by ossb",
    },
}
HELLO_ENV = [SCRATCH_PATH, "APP_HOME=/srv", "GREETING_FILE=/srv/greeting.txt"]


def host_arch():
    m = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64", "i686": "386", "armv7l": "arm"}.get(m, m)


@pytest.fixture(autouse=True)
def _need_example():
    if not (HELLO / "Dockerfile").is_file():
        pytest.fail(f"{HELLO}/Dockerfile is missing")


def build_hello(ossb, *outputs, extra=()):
    args = ["build", "-t", "hello:latest"]
    for o in outputs:
        args += ["--output", o]
    r = ossb.run(*args, *extra, HELLO)
    assert r.returncode == 0, str(r)
    return r


def check_hello_config(img):
    cfg = img.config
    assert cfg["os"] == "linux"
    assert cfg["architecture"] == host_arch()
    for k, v in HELLO_CONFIG.items():
        assert img.cfg.get(k) == v, f"config.{k} = {img.cfg.get(k)!r}, expected {v!r}"
    assert img.cfg.get("Env") == HELLO_ENV


def check_hello_rootfs_entries(fs):
    assert set(fs) == set(HELLO_FILES), f"rootfs holds {sorted(fs)}"
    for path, (content, mode, uid, gid) in HELLO_FILES.items():
        e = fs[path]
        if content is None:
            assert e.info.isdir(), f"{path} is not a directory"
        else:
            assert e.info.isreg(), f"{path} is not a regular file"
            assert e.data == content, f"{path}: {e.data!r}"
        assert e.mode == mode, f"{path}: mode {oct(e.mode)}, expected {oct(mode)}"
        assert e.owner == (uid, gid), f"{path}: owner {e.owner}, expected {(uid, gid)}"


def test_hello_oci_dir(ossb):
    dest = ossb.path("hello-oci")
    r = build_hello(ossb, f"type=oci,dest={dest}")
    lay = Layout(dest)
    lay.check_all_blobs()
    assert lay.ref_names() == ["hello:latest"]
    img = lay.image("hello:latest")
    # the last line of stdout is the manifest digest, and index.json points at that manifest
    assert r.digest == img.digest
    assert lay.manifests()[0]["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert lay.manifests()[0]["size"] == len(img.manifest_bytes)
    img.check_consistency()
    check_hello_config(img)
    check_hello_rootfs_entries(img.rootfs())
    # metadata-only instructions leave empty_layer history entries, COPYs make layers
    hist = img.config["history"]
    assert any(h.get("empty_layer") and h["created_by"].startswith("LABEL") for h in hist)
    assert any(h.get("empty_layer") and h["created_by"].startswith("ENV") for h in hist)
    assert any(h.get("empty_layer") and h["created_by"].startswith("EXPOSE") for h in hist)
    # three COPYs and WORKDIR /srv (a layer although /srv exists: BuildKit's rule, which the
    # engine follows; see test_config.py::test_workdir_joins_and_creates_directories)
    assert [h["created_by"].split()[0] for h in hist if not h.get("empty_layer")] == ["COPY", "COPY", "WORKDIR", "COPY"]


def test_hello_skopeo_inspect(ossb):
    skopeo = need_tool("skopeo")
    dest = ossb.path("hello-oci")
    r = build_hello(ossb, f"type=oci,dest={dest}")
    p = run_tool([skopeo, "inspect", f"oci:{dest}:hello:latest"])
    info = json.loads(p.stdout)
    assert info["Digest"] == r.digest
    assert info["Architecture"] == host_arch()
    assert info["Os"] == "linux"
    assert info["Labels"] == HELLO_CONFIG["Labels"]
    assert info["Env"] == HELLO_ENV
    assert len(info["Layers"]) == len(Layout(dest).image().manifest["layers"]) == 4
    p = run_tool([skopeo, "inspect", "--config", f"oci:{dest}:hello:latest"])
    assert json.loads(p.stdout)["config"]["Entrypoint"] == ["/bin/cat"]


def test_hello_umoci_unpack(ossb):
    umoci = need_tool("umoci")
    dest = ossb.path("hello-oci")
    build_hello(ossb, f"type=oci,dest={dest}")
    bundle = ossb.path("bundle")
    run_tool([umoci, "unpack"] + ([] if IS_ROOT else ["--rootless"]) + ["--image", f"{dest}:hello:latest", bundle])
    rootfs = bundle / "rootfs"
    found = sorted(str(p.relative_to(rootfs)) for p in rootfs.rglob("*"))
    assert found == sorted(HELLO_FILES), f"unpacked rootfs holds {found}"
    for path, (content, mode, uid, gid) in HELLO_FILES.items():
        st = os.lstat(rootfs / path)
        if content is None:
            assert stat.S_ISDIR(st.st_mode), path
        else:
            assert stat.S_ISREG(st.st_mode), path
            assert (rootfs / path).read_bytes() == content, path
        assert stat.S_IMODE(st.st_mode) == mode, f"{path}: mode {oct(stat.S_IMODE(st.st_mode))}"
        if IS_ROOT:
            assert (st.st_uid, st.st_gid) == (uid, gid), f"{path}: owner {(st.st_uid, st.st_gid)}"
    # umoci's runtime config is derived from the image config
    rt = json.loads((bundle / "config.json").read_text())
    assert rt["process"]["args"] == ["/bin/cat", "/srv/greeting.txt"]
    assert rt["process"]["cwd"] == "/srv"
    assert (rt["process"]["user"]["uid"], rt["process"]["user"]["gid"]) == (1000, 1000)
    assert "APP_HOME=/srv" in rt["process"]["env"]


def test_hello_skopeo_copy_to_docker_archive(ossb):
    skopeo = need_tool("skopeo")
    dest = ossb.path("hello-oci")
    r = build_hello(ossb, f"type=oci,dest={dest}")
    out = ossb.path("copied.tar")
    run_tool([skopeo, "copy", f"oci:{dest}:hello:latest", f"docker-archive:{out}:hello:latest"])
    p = run_tool([skopeo, "inspect", f"docker-archive:{out}"])
    info = json.loads(p.stdout)
    assert info["Labels"] == HELLO_CONFIG["Labels"]
    arch = DockerArchive(out)
    check_hello_rootfs_entries(apply_layers(arch.layer_tars()))
    assert r.digest.startswith("sha256:")


def test_hello_oci_archive(ossb):
    skopeo = need_tool("skopeo")
    tar_path = ossb.path("hello-oci.tar")
    r = build_hello(ossb, f"type=oci,dest={tar_path}")
    assert tar_path.is_file()
    p = run_tool([skopeo, "inspect", f"oci-archive:{tar_path}:hello:latest"])
    assert json.loads(p.stdout)["Digest"] == r.digest
    lay = Layout(extract_tar(tar_path, ossb.path("unpacked-oci-tar")))
    lay.check_all_blobs()
    img = lay.image("hello:latest")
    assert img.digest == r.digest
    check_hello_config(img)
    check_hello_rootfs_entries(img.rootfs())


def test_hello_oci_tar_flag(ossb):
    """tar=true makes a tar whatever the name; tar=false a directory even for *.tar."""
    a = ossb.path("layout-as-tar")
    b = ossb.path("dir.tar")
    build_hello(ossb, f"type=oci,dest={a},tar=true", f"type=oci,dest={b},tar=false")
    assert a.is_file() and tarfile.is_tarfile(a)
    assert b.is_dir() and (b / "index.json").is_file()


def test_hello_docker_archive(ossb):
    skopeo = need_tool("skopeo")
    tar_path = ossb.path("hello-docker.tar")
    oci_dir = ossb.path("hello-oci")
    r = build_hello(ossb, f"type=docker,dest={tar_path}", f"type=oci,dest={oci_dir}")
    img = Layout(oci_dir).image("hello:latest")
    assert img.digest == r.digest
    p = run_tool([skopeo, "inspect", f"docker-archive:{tar_path}"])
    info = json.loads(p.stdout)
    assert info["Labels"] == HELLO_CONFIG["Labels"]
    assert info["Architecture"] == host_arch()
    arch = DockerArchive(tar_path)
    assert arch.entry["RepoTags"] == ["hello:latest"]
    # the same image: the config is byte-identical to the OCI output's config
    cfg_bytes = arch.files[arch.entry["Config"].lstrip("./")]
    assert digest_of(cfg_bytes) == img.config_digest
    assert arch.config["rootfs"]["diff_ids"] == img.config["rootfs"]["diff_ids"]
    layers = arch.layer_tars()
    assert [digest_of(x) for x in layers] == img.config["rootfs"]["diff_ids"]
    check_hello_rootfs_entries(apply_layers(layers))


def test_hello_podman_load(ossb):
    podman = need_tool("podman")
    tar_path = ossb.path("hello-docker.tar")
    build_hello(ossb, f"type=docker,dest={tar_path}")
    store = ossb.path("podman")
    # podman refuses a --runroot longer than 50 characters: that one lives in a short-named
    # /tmp directory, removed at the end
    runroot = tempfile.mkdtemp(prefix="ossb-it-")
    try:
        base = [podman, "--root", store / "root", "--runroot", runroot, "--storage-driver", "vfs",
                "--cgroup-manager", "cgroupfs", "--events-backend", "none"]
        env = dict(os.environ, XDG_RUNTIME_DIR=runroot, HOME=str(ossb.home))
        p = run_tool(base + ["load", "-i", tar_path], env=env)
        # docker-archive RepoTags are familiar names: hello:latest is docker.io/library/hello:latest
        assert "docker.io/library/hello:latest" in p.stdout + p.stderr
        p = run_tool(base + ["image", "inspect", "docker.io/library/hello:latest"], env=env)
        info = json.loads(p.stdout)[0]
    finally:
        shutil.rmtree(runroot, ignore_errors=True)
    assert info["Config"]["Entrypoint"] == ["/bin/cat"]
    assert info["Config"]["Cmd"] == ["/srv/greeting.txt"]
    assert info["Config"]["WorkingDir"] == "/srv"


def test_hello_bare_output_path_and_several_tags(ossb):
    """`-o PATH` is an OCI layout directory; every -t names the same manifest."""
    dest = ossb.path("bare")
    r = ossb.run("build", "-t", "hello:latest", "-t", "example.com/team/hello:1.0", "-o", dest, HELLO)
    assert r.returncode == 0, str(r)
    lay = Layout(dest)
    assert sorted(lay.ref_names()) == sorted(["hello:latest", "example.com/team/hello:1.0"])
    assert {m["digest"] for m in lay.manifests()} == {r.digest}


def test_hello_rebuild_into_existing_layout_replaces_tag(ossb):
    """Building the same tag again into a layout leaves one entry for the tag (the new one)."""
    dest = ossb.path("again")
    build_hello(ossb, f"type=oci,dest={dest}", extra=["--label", "build=1"])
    r2 = build_hello(ossb, f"type=oci,dest={dest}", extra=["--label", "build=2"])
    lay = Layout(dest)
    named = [m for m in lay.manifests() if (m.get("annotations") or {}).get(REF_NAME) == "hello:latest"]
    assert len(named) == 1, lay.index
    assert named[0]["digest"] == r2.digest
    assert lay.image("hello:latest").cfg["Labels"]["build"] == "2"
