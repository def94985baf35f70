"""Rootless builds: the ossb binary run as uid 65534 (nobody) with `setpriv`, while pytest
stays root to arrange the user's subordinate ids: fake /etc/subuid and /etc/subgid bound over
the real ones in a mount namespace of that one command (conftest.AsUser; the real files are
never changed).  ossb then enters a user namespace of its own (common/userns.c): with
subordinate ids every owner a COPY or a RUN gives is kept; without them (single-id) the build
still works, warns, and other owners are flattened to root.

Everything lives in a fresh directory under /tmp that the user can reach (pytest's own temp
root is private to root): the contexts, the cache and the outputs.  The whole RUN suite runs as
a non-root user with `OSSB_TEST_AS_USER=65534 pytest tests/integration/test_run.py`."""
import os
import shutil
import tempfile
from pathlib import Path

import pytest

import images
from registry import CLEAN_ENV
from conftest import IS_ROOT, AsUser, Layout, Ossb, dockerfile, need_tool, open_fuse_device, run_tool, write_tree

pytestmark = pytest.mark.skipif(not IS_ROOT, reason="the rootless tests need root to become uid 65534")

USER = 65534
SUBID = (200000, 65536)
# the test image's busybox (Debian's busybox-static) has no adduser: a RUN adds the user itself
ADD_BOB = ("echo bob:x:1234:1234::/home/bob:/bin/sh >> /etc/passwd && echo bob:x:1234: >> /etc/group "
           "&& mkdir /home/bob && chown bob:bob /home/bob")
SINGLE_ID_WARNING = ("no subordinate ids for nobody in /etc/subuid: files owned by other users are stored as root "
                     "(single-id mapping)")


@pytest.fixture(scope="module")
def user_root():
    """A fresh directory every user may pass through; removed after the module."""
    d = Path(tempfile.mkdtemp(prefix="ossb-rootless-"))
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def rootless(ossb_binary, user_root, request):
    """rootless(subid=SUBID) -> an Ossb running as USER in a directory of its own, which also
    has a `context(files, df)` method writing contexts there."""
    made = []
    open_fuse_device()

    def make(subid=SUBID):
        d = Path(tempfile.mkdtemp(prefix=request.node.name[:40] + "-", dir=user_root))
        o = Ossb(ossb_binary, d, as_user=AsUser(USER, subid, d / "subid", user_root))
        n = [0]

        def context(files, df):
            n[0] += 1  # the user gets it (AsUser.give) when ossb runs
            root = write_tree(d / f"ctx{n[0]}", files)
            (root / "Dockerfile").write_text(dockerfile(df))
            return root

        o.context = context
        made.append(o)
        return o

    yield make
    for o in made:
        o.check_no_leftovers()


@pytest.fixture
def base(seeded_registry):
    return seeded_registry.registry.ref("busybox:1")


def build_ok_debug(o, ctx, *args, **kw):
    """o.build_ok with the global --log-level debug (it goes before `build`)."""
    lay = o.fresh("layout")
    r = o.run("--log-level", "debug", "build", "--output", f"type=oci,dest={lay}", *args, ctx, **kw)
    assert r.returncode == 0, str(r)
    r.layout_dir = lay
    r.image = Layout(lay).image()
    r.image.check_consistency()
    return r


def layer(r, i):
    """Layer i of the built image: path -> TarInfo."""
    return {name: ti for name, ti, _ in r.image.layer_entries(i)}


def owner(ti):
    return ti.uid, ti.gid


def group_id(fs, name):
    for line in fs["etc/group"].data.decode().splitlines():
        f = line.split(":")
        if f[0] == name:
            return int(f[2])
    raise AssertionError(f"no group {name} in /etc/group")


def assert_ran_as_user(r):
    """The build ran as USER: what it wrote on the host belongs to USER."""
    st = os.stat(r.layout_dir / "index.json")
    assert (st.st_uid, st.st_gid) == (USER, USER), f"index.json is owned by {st.st_uid}:{st.st_gid}"


# --- COPY -------------------------------------------------------------------------------------


def test_copy_chown_keeps_owners(rootless):
    o = rootless()
    ctx = o.context({"a.txt": "a\n", "d/b.txt": ("b\n", 0o640)},
                    "FROM scratch\nCOPY --chown=1000:1000 a.txt /a.txt\nCOPY --chown=1234:5678 d /d\n"
                    "COPY a.txt /root-owned.txt\n")
    r = o.build_ok(ctx)
    assert_ran_as_user(r)
    assert "single-id" not in r.stderr, r.stderr
    assert owner(layer(r, 0)["a.txt"]) == (1000, 1000)
    d = layer(r, 1)
    assert owner(d["d"]) == (1234, 5678) and owner(d["d/b.txt"]) == (1234, 5678)
    assert d["d/b.txt"].mode & 0o7777 == 0o640
    # context files belong to root on the host (unmapped in the namespace): COPY makes them 0:0
    assert owner(layer(r, 2)["root-owned.txt"]) == (0, 0)


def test_cache_holds_only_the_users_files(rootless, base):
    """While the build runs, a file owned by 1234 in the namespace belongs to the subordinate
    id START+1233 on the host: ossb removes its stage roots itself, from inside (the user could
    not); what it keeps in the cache belongs to the user, except the unpacked base layers
    (shared by later builds, their owners kept), which `ossb prune` removes from inside too."""
    o = rootless()
    ctx = o.context({}, f"FROM {base}\nRUN touch /f && chown 1234:1234 /f && stat -c %u:%g /f > /owner\n")
    r = o.build_ok(ctx)
    fs = r.image.rootfs()
    assert fs["owner"].data == b"1234:1234\n"
    assert owner(fs["f"].info) == (1234, 1234)
    cache = o.tmp / "cache"

    def others(under):
        return {p for p in under.rglob("*") if p.lstat().st_uid != USER}
    assert not others(cache) - others(cache / "layers"), "files of other ids outside the layer store"
    pr = o.run("prune", "--cache-dir", cache)
    assert pr.returncode == 0, str(pr)
    assert not others(cache), f"files left in the cache owned by others: {sorted(others(cache))[:5]}"


# --- RUN ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("snap", ["overlay", "fuse", "native"])
def test_run_created_user_keeps_owners(rootless, base, snap):
    o = rootless()
    ctx = o.context({}, f"FROM {base}\n"
                        f"RUN {ADD_BOB} && mkdir /data/bob && chown bob /data/bob "
                        "&& touch /data/bob/f && chown bob:bob /data/bob/f && id -u bob > /uid\n"
                        "USER bob\nRUN touch /home/bob/mine && id -u > /tmp/who\n")
    r = o.build_ok(ctx, "--snapshotter", snap)
    assert_ran_as_user(r)
    fs = r.image.rootfs()
    gid = group_id(fs, "bob")
    assert fs["uid"].data == b"1234\n"
    one = layer(r, 1)
    assert one["data/bob"].uid == 1234
    assert owner(one["data/bob/f"]) == (1234, gid)
    assert owner(one["home/bob"]) == (1234, gid)
    assert "bob:x:1234:" in fs["etc/passwd"].data.decode()
    two = layer(r, 2)
    assert owner(two["home/bob/mine"]) == (1234, gid)
    assert fs["tmp/who"].data == b"1234\n"
    # the base's own owners survive unpacking and a copy-up
    assert owner(fs["home/app"].info) == (1000, 1000)


@pytest.mark.parametrize("snap", ["overlay", "native"])
def test_run_snapshotters_rootless(rootless, base, snap):
    o = rootless()
    ctx = o.context({}, f"FROM {base}\n"
                        "RUN mkdir -p /x/y && echo 1 > /x/y/f && rm /etc/group && chmod 4755 /x/y/f && mkfifo /p\n"
                        "RUN rm -rf /x/y && mkdir /x/y && echo 2 > /x/y/g && touch /home/app/t\n")
    r = build_ok_debug(o, ctx, "--snapshotter", snap)
    assert "user namespace: full" in r.stderr, r.stderr
    fs = r.image.rootfs()
    assert "etc/group" not in fs and "x/y/f" not in fs
    assert fs["x/y/g"].data == b"2\n"
    assert "p" in fs and fs["p"].info.isfifo()
    assert owner(layer(r, 2)["home/app"]) == (1000, 1000)
    assert "etc/.wh.group" in layer(r, 1)
    if snap == "overlay":  # the replaced directory is opaque (user.overlay.opaque in the upper)
        assert "x/y/.wh..wh..opq" in layer(r, 2)


def test_snapshotter_auto_picks_overlay_rootless(rootless, base):
    o = rootless()
    ctx = o.context({}, f"FROM {base}\nRUN echo hi > /hi\n")
    r = o.build_ok(ctx)
    assert "snapshotter: overlay" in r.stderr and "userxattr" in r.stderr, r.stderr


# --- single-id fallback -------------------------------------------------------------------------


def test_single_id_fallback(rootless, base):
    o = rootless(subid=None)
    ctx = o.context({"a.txt": "a\n"}, f"FROM {base}\nCOPY a.txt /a.txt\n"
                                      "RUN echo hi > /hi && touch /home/app/t && id -u > /uid\n")
    r = o.build_ok(ctx)
    assert_ran_as_user(r)
    assert SINGLE_ID_WARNING in r.stderr, r.stderr
    assert r.stderr.count(SINGLE_ID_WARNING) == 1
    fs = r.image.rootfs()
    assert fs["hi"].data == b"hi\n" and fs["uid"].data == b"0\n"
    assert owner(layer(r, 1)["a.txt"]) == (0, 0)
    # /home/app (1000:1000 in the base) could not keep its owner when unpacked: flattened
    assert owner(layer(r, 2)["home/app"]) == (0, 0)


def test_single_id_copy_chown_is_flattened(rootless):
    """An id the single-id namespace does not map (EINVAL from lchown) is flattened to root."""
    o = rootless(subid=None)
    ctx = o.context({"a.txt": "a\n"}, "FROM scratch\nCOPY --chown=1000:1000 a.txt /a.txt\n")
    r = o.build_ok(ctx)
    assert SINGLE_ID_WARNING in r.stderr
    assert owner(layer(r, 0)["a.txt"]) == (0, 0)


def test_single_id_run_chown_to_unmapped_id_fails_clearly(rootless, base):
    o = rootless(subid=None)
    ctx = o.context({}, f"FROM {base}\nRUN touch /f && chown 1234 /f\n")
    r = o.build(ctx)
    assert r.returncode == 1, str(r)
    assert "exited with code 1" in r.stderr and "chown" in r.stderr, r.stderr


# --- no user namespaces allowed ------------------------------------------------------------------

# Runs argv in a user namespace (ids 0-65535 mapped to themselves) whose limit of nested user
# namespaces is 0 (user.max_user_namespaces is per namespace), as a seccomp profile or a sysctl
# would refuse them; argv is then AsUser's wrapper (which still works: it needs no user namespace).
NO_USERNS = r"""
import ctypes, os, sys
r, w = os.pipe(); r2, w2 = os.pipe()
pid = os.fork()
if pid == 0:
    if ctypes.CDLL(None, use_errno=True).unshare(0x10000000) != 0:  # CLONE_NEWUSER
        os._exit(90)
    os.write(w2, b"u"); os.read(r, 1)
    with open("/proc/sys/user/max_user_namespaces", "w") as f:
        f.write("0")
    os.execvp(sys.argv[1], sys.argv[1:])
os.read(r2, 1)
for name in ("uid_map", "gid_map"):
    with open(f"/proc/{pid}/{name}", "w") as f:
        f.write("0 0 65536")
os.write(w, b"g")
sys.exit(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
"""


def test_user_namespaces_refused(rootless, base):
    """Where no user namespace may be created, build warns and goes on as the caller: COPY
    works (owners are the caller's), a RUN fails saying why."""
    import sys
    o = rootless()
    wrap = o.as_user.wrap
    o.as_user.wrap = lambda argv: [sys.executable, "-c", NO_USERNS] + wrap(argv)
    ctx = o.context({"a.txt": "a\n"}, "FROM scratch\nCOPY --chown=1000:1000 a.txt /a.txt\n")
    r = o.build_ok(ctx)
    assert "warning: cannot create a user namespace (unshare(CLONE_NEWUSER): No space left on device): building " \
           f"as uid {USER}, file owners are not kept and RUN steps cannot run" in r.stderr, r.stderr
    assert owner(layer(r, 0)["a.txt"]) == (USER, USER)
    ctx = o.context({}, f"FROM {base}\nRUN true\n")
    r = o.build(ctx)
    assert r.returncode == 4 and "RUN true" in r.stderr and "creating the namespaces (unshare)" in r.stderr, str(r)


# --- escape hatch, pull, push -------------------------------------------------------------------


def test_no_userns_escape_hatch(rootless):
    o = rootless()
    ctx = o.context({"a.txt": "a\n"}, "FROM scratch\nCOPY a.txt /a.txt\n")
    r = build_ok_debug(o, ctx, env={"OSSB_NO_USERNS": "1"})
    assert "user namespace: disabled" in r.stderr, r.stderr
    # without the namespace the file keeps the caller's own id (it cannot chown)
    assert owner(layer(r, 0)["a.txt"]) == (USER, USER)


def test_pull_and_push_rootless(rootless, base, registry_factory, tmp_path):
    o = rootless()
    r = o.run("--log-level", "debug", "pull", "--cache-dir", o.tmp / "cache", base, cache=False)
    assert r.returncode == 0, str(r)
    assert "user namespace: full" in r.stderr, r.stderr
    ctx = o.context({}, f"FROM {base}\nRUN {ADD_BOB} && touch /f && chown bob /f\n")
    b = o.build_ok(ctx)
    dest = registry_factory()
    ref = dest.ref("rootless:1")
    p = o.run("push", "--cache-dir", o.tmp / "cache", b.layout_dir, ref, cache=False)
    assert p.returncode == 0, str(p)
    # the pushed image keeps the owner the RUN gave (read back by skopeo, as root)
    copy = tmp_path / "pushed"
    run_tool([need_tool("skopeo"), "copy", "-q", "--src-tls-verify=false", f"docker://{ref}", f"oci:{copy}:x"],
             env=CLEAN_ENV)
    fs = images.load_layout_image(copy).rootfs()
    assert fs["f"].info.uid == 1234
