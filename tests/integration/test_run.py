"""RUN steps (as root): the command runs in a sandbox on the stage's root file system, on a
busybox base the tests push to a real registry; its changes become the step's layer (OCI
whiteouts for deletions, an opaque directory for a replaced one), later steps see them, and
the image config never holds build args.  Every case runs with both snapshotters."""
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from conftest import assert_failed

# pytest itself runs as root: ossb runs as root, or as OSSB_TEST_AS_USER (conftest.py's AsUser
# gives that user subordinate ids in a private mount namespace); as a non-root pytest the
# outcome would depend on the machine's /etc/subuid
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the RUN suite runs as root (OSSB_TEST_AS_USER for rootless)")

SNAPSHOTTERS = ["overlay", "fuse", "native"]


@pytest.fixture(params=SNAPSHOTTERS)
def snap(request):
    return request.param


@pytest.fixture
def base(seeded_registry):
    return seeded_registry.registry.ref("busybox:1")


def build(ossb, context, base, snap, body, *args, files=None, **kw):
    ctx = context(files or {"a.txt": b"a\n"}, df=f"FROM {base}\n" + body)
    return ossb.build(ctx, "--snapshotter", snap, *args, **kw)


def build_ok(ossb, context, base, snap, body, *args, files=None, **kw):
    ctx = context(files or {"a.txt": b"a\n"}, df=f"FROM {base}\n" + body)
    return ossb.build_ok(ctx, "--snapshotter", snap, *args, **kw)


def new_layer(r, base_layers=1):
    """Entries of the first layer after the base's: path -> TarInfo."""
    return {name: ti for name, ti, _ in r.image.layer_entries(base_layers)}


def test_run_creates_files(ossb, context, base, snap):
    r = build_ok(ossb, context, base, snap, "RUN echo hello > /out.txt && mkdir -p /data/sub && ln -s out.txt /link\n")
    fs = r.image.rootfs()
    assert fs["out.txt"].data == b"hello\n"
    assert fs["link"].info.linkname == "out.txt"
    assert fs["data/sub"].info.isdir()
    layer = new_layer(r)
    assert set(layer) >= {"out.txt", "link", "data", "data/sub"}
    # mount points the sandbox needs are never committed
    assert not any(n.startswith(("etc/hosts", "etc/resolv.conf", "etc/hostname", "proc/", "dev/")) for n in layer), layer
    hist = r.image.config["history"][-1]
    assert hist["created_by"] == "RUN /bin/sh -c echo hello > /out.txt && mkdir -p /data/sub && ln -s out.txt /link # buildkit"
    assert not hist.get("empty_layer")


def test_run_exec_form_and_output(ossb, context, base, snap):
    r = build_ok(ossb, context, base, snap, 'RUN ["/bin/sh", "-c", "echo to-stdout; echo to-stderr >&2; touch /x"]\n')
    assert "to-stdout" in r.stderr and "to-stderr" in r.stderr
    assert "x" in r.image.rootfs()


def test_run_sees_earlier_steps_and_later_steps_see_it(ossb, context, base, snap):
    r = build_ok(ossb, context, base, snap, "COPY a.txt /a.txt\nRUN cat /a.txt /a.txt > /b.txt\n"
                                            "RUN cp /b.txt /c.txt\nCOPY a.txt /d.txt\n")
    fs = r.image.rootfs()
    assert fs["b.txt"].data == b"a\na\n" and fs["c.txt"].data == b"a\na\n" and fs["d.txt"].data == b"a\n"
    assert len(r.image.manifest["layers"]) == 5


def test_run_deletes_base_file_whiteout(ossb, context, base, snap):
    r = build_ok(ossb, context, base, snap, "RUN rm /etc/group && rm -r /tmp\n")
    fs = r.image.rootfs()
    assert "etc/group" not in fs and "tmp" not in fs
    layer = new_layer(r)
    assert "etc/.wh.group" in layer and ".wh.tmp" in layer


def test_run_replaced_dir(ossb, context, base, snap):
    r = build_ok(ossb, context, base, snap,
                 "RUN mkdir -p /d/old && touch /d/old/f /d/keep\nRUN rm -rf /d && mkdir /d && touch /d/new\n")
    fs = r.image.rootfs()
    assert "d/new" in fs and "d/keep" not in fs and "d/old/f" not in fs
    names = set(new_layer(r, 2))
    # overlay marks the directory opaque; native writes one whiteout per deleted child
    assert "d/.wh..wh..opq" in names or {"d/.wh.keep", "d/.wh.old"} <= names, names


def test_run_modes_owners_links(ossb, context, base, snap):
    r = build_ok(ossb, context, base, snap,
                 "RUN touch /f && chown 1000:1000 /f && chmod 4750 /f && ln /f /hard && mkfifo /fifo "
                 "&& chmod 1777 /tmp && chown app /etc/passwd\n")
    layer = new_layer(r)
    assert layer["f"].mode & 0o7777 == 0o4750 and (layer["f"].uid, layer["f"].gid) == (1000, 1000)
    assert layer["hard"].islnk() and layer["hard"].linkname == "f"
    assert layer["fifo"].isfifo()
    assert layer["etc/passwd"].uid == 1000  # a base file whose owner changed is in the layer


def test_run_user_and_workdir(ossb, context, base, snap):
    r = build_ok(ossb, context, base, snap,
                 "WORKDIR /work\nRUN pwd > /pwd.txt\nUSER app\nRUN id -u > /tmp/uid && id -g > /tmp/gid && touch /tmp/mine\n")
    fs = r.image.rootfs()
    assert fs["pwd.txt"].data == b"/work\n"
    assert fs["tmp/uid"].data == b"1000\n" and fs["tmp/gid"].data == b"1000\n"
    assert fs["tmp/mine"].owner == (1000, 1000)


def test_run_build_args_visible_not_in_config(ossb, context, base, snap):
    r = build_ok(ossb, context, base, snap, "ARG GREETING=hi\nENV KEPT=env\nRUN echo $GREETING $KEPT > /g.txt\n",
                 "--build-arg", "GREETING=hello")
    assert r.image.rootfs()["g.txt"].data == b"hello env\n"
    assert not any(e.startswith("GREETING=") for e in r.image.cfg.get("Env", []))
    assert r.image.config["history"][-1]["created_by"] == "RUN |1 GREETING=hello /bin/sh -c echo $GREETING $KEPT > /g.txt # buildkit"


def test_run_env_is_exactly_the_image_env(ossb, context, base, snap):
    r = build_ok(ossb, context, base, snap, "ENV A=1\nRUN env | sort > /env.txt\n")
    env = r.image.rootfs()["env.txt"].data.decode().splitlines()
    names = {e.split("=", 1)[0] for e in env}
    assert {"A", "PATH", "BASE_VAR"} <= names
    assert not names & {"OSSB_CACHE_DIR", "TMPDIR", "HOME_OF_OSSB"}, names


def test_run_failure(ossb, context, base, snap):
    r = build(ossb, context, base, snap, "RUN echo something went wrong >&2; exit 3\n")
    assert_failed(r, 1, "exited with code 3", "something went wrong", "Dockerfile:2", dest=[r.layout_dir])


def test_run_missing_binary(ossb, context, base, snap):
    r = build(ossb, context, base, snap, 'RUN ["/no/such/binary"]\n')
    assert_failed(r, 1, "exited with code 127", dest=[r.layout_dir])


def test_run_background_child_does_not_hang(ossb, context, base, snap):
    r = build_ok(ossb, context, base, snap, "RUN (sleep 300 &) ; echo started > /s.txt\n")
    assert r.image.rootfs()["s.txt"].data == b"started\n"


def test_run_network_none(ossb, context, base, snap):
    r = build_ok(ossb, context, base, snap, "RUN cat /proc/net/dev > /dev.txt\nRUN --network=none cat /proc/net/dev > /none.txt\n")
    fs = r.image.rootfs()
    ifaces = [l.split(":")[0].strip() for l in fs["none.txt"].data.decode().splitlines() if ":" in l]
    assert ifaces == ["lo"], ifaces


def test_run_sandbox_proc_and_dev(ossb, context, base, snap):
    r = build_ok(ossb, context, base, snap,
                 "RUN ls /proc | grep -c '^[0-9]' > /procs.txt && echo x > /dev/null && hostname > /host.txt\n")
    fs = r.image.rootfs()
    assert int(fs["procs.txt"].data) <= 4  # sh, ls, grep and little else: a PID namespace
    assert fs["host.txt"].data == b"buildkitsandbox\n"


def test_run_empty_change(ossb, context, base, snap):
    r = build_ok(ossb, context, base, snap, "RUN true\n")
    assert len(r.image.manifest["layers"]) == 1
    assert r.image.config["history"][-1]["empty_layer"] is True


def test_run_heredoc(ossb, context, base, snap):
    r = build_ok(ossb, context, base, snap, "RUN <<EOF\necho one > /h.txt\necho two >> /h.txt\nEOF\n")
    assert r.image.rootfs()["h.txt"].data == b"one\ntwo\n"


def test_snapshotters_agree(ossb, context, base):
    body = ("RUN mkdir -p /x/y && echo 1 > /x/y/f && ln -s y /x/l && rm /etc/group && chmod 700 /x\n"
            "RUN rm -rf /x/y && mkdir /x/y && echo 2 > /x/y/g\n")
    a = build_ok(ossb, context, base, "overlay", body, env={"SOURCE_DATE_EPOCH": "1700000000"})
    b = build_ok(ossb, context, base, "native", body, env={"SOURCE_DATE_EPOCH": "1700000000"})
    fa, fb = a.image.rootfs(), b.image.rootfs()
    assert set(fa) == set(fb)
    for p in fa:
        ea, eb = fa[p], fb[p]
        assert (ea.info.type, ea.mode, ea.owner, ea.data, ea.info.linkname) == \
               (eb.info.type, eb.mode, eb.owner, eb.data, eb.info.linkname), p


def test_run_image_runs_in_podman(ossb, context, base, tmp_path):
    podman = subprocess.run(["which", "podman"], capture_output=True, text=True).stdout.strip()
    if not podman:
        pytest.skip("podman is not installed")
    ctx = context({}, df=f"FROM {base}\nRUN echo built-by-ossb > /msg\nCMD [\"cat\", \"/msg\"]\n")
    out = tmp_path / "img.tar"
    r = ossb.build(ctx, "-t", "localhost/ossb-run-test:1", "--output", f"type=docker,dest={out}", out=False)
    assert r.returncode == 0, str(r)
    root = Path(tempfile.mkdtemp(prefix="ossb-pm-"))  # podman wants a short runroot
    common = [podman, "--root", str(root / "root"), "--runroot", str(root / "run"), "--runtime", "runc",
              "--cgroup-manager", "cgroupfs", "--events-backend", "none"]
    p = subprocess.run(common + ["load", "-i", str(out)], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    p = subprocess.run(common + ["run", "--rm", "--network=none", "--ulimit", "nofile=4096:4096", "--ulimit",
                                 "nproc=4096:4096", "localhost/ossb-run-test:1"],
                       capture_output=True, text=True, timeout=120)
    subprocess.run(common + ["rmi", "-a", "-f"], capture_output=True, timeout=60)
    shutil.rmtree(root, ignore_errors=True)
    assert p.returncode == 0, p.stderr
    assert p.stdout == "built-by-ossb\n"
