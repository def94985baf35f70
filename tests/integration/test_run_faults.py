"""RUN steps that meet a hostile environment rather than a failing command (as root, both
snapshotters, on the busybox base the tests push to a real registry):

  - the disk fills up while the RUN writes (ossb's cache dir, hence its work dir and store,
    and $TMPDIR on a 64 MiB tmpfs): exit 1, the step and "No space left on device" named,
    and nothing left behind: no mount, no work dir, no temp file, no partial blob or cache
    entry, the space free again;
  - the RUN succeeds but its layer cannot be stored (the RUN's incompressible file takes most
    of the space, so the compressed layer does not fit): a clear error, the same clean state;
  - the RUN leaves daemons behind (setsid, a double fork, one that ignores SIGTERM and SIGHUP,
    all holding the output pipe): the build ends promptly and none of them outlives it.
test_run.py checks that a plain background child does not hang a build; test_interrupt.py
covers SIGTERM/SIGINT during a RUN."""
import os
import random
import subprocess
import time

import pytest

from conftest import assert_failed
from registry import verify_store

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs and RUN as root need root")

SNAPSHOTTERS = ["overlay", "fuse", "native"]
SMALL_FS_MIB = 64
ENOSPC = "No space left on device"


@pytest.fixture(params=SNAPSHOTTERS)
def snap(request):
    return request.param


@pytest.fixture
def base(seeded_registry):
    return seeded_registry.registry.ref("busybox:1")


def mounts_under(path):
    """Mount points strictly below `path` in this mount namespace."""
    prefix = str(path).rstrip("/") + "/"
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    return [p for p in points if p.startswith(prefix)]


@pytest.fixture
def small_fs(ossb, tmp_path):
    """A SMALL_FS_MIB tmpfs at TMP/small holding the build's cache dir (store, work dirs, step
    cache) and its $TMPDIR; unmounted (with anything a failure left below it) at teardown.
    Owned by the user ossb runs as (OSSB_TEST_AS_USER)."""
    d = tmp_path / "small"
    d.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SMALL_FS_MIB}m,mode=0700", "ossb-test-small", str(d)],
                   check=True, capture_output=True)
    (d / "tmp").mkdir()
    if ossb.as_user:
        for p in (d, d / "tmp"):
            os.chown(p, ossb.as_user.uid, ossb.as_user.gid)
    yield d
    for m in sorted(mounts_under(d), key=len, reverse=True):
        subprocess.run(["umount", "-l", m], capture_output=True)
    subprocess.run(["umount", "-l", str(d)], capture_output=True)


def free_mib(path):
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize / (1 << 20)


def build_small(ossb, context, base, snap, small, body):
    ctx = context({}, df=f"FROM {base}\n" + body)
    out = ossb.path("out")
    r = ossb.build(ctx, "--snapshotter", snap, "--cache-dir", small / "cache", "--output", f"type=oci,dest={out}",
                   out=False, env={"TMPDIR": str(small / "tmp")})
    r.out = out
    return r


def assert_nothing_left(ossb, small):
    """No mount below the tmpfs, no build work dir, no temp dir of the sandbox, no ingest file,
    no step-cache entry, every stored blob intact, and the space free again."""
    cache = small / "cache"
    assert not mounts_under(small), f"mounts left under the cache dir: {mounts_under(small)}"
    builds = cache / "builds"
    assert not builds.exists() or not list(builds.iterdir()), f"build work dir left: {list(builds.iterdir())}"
    assert not list((small / "tmp").iterdir()), f"temp files left in $TMPDIR: {list((small / 'tmp').iterdir())}"
    ingest = cache / "store" / "ingest"
    assert not ingest.exists() or not list(ingest.iterdir()), f"partial blob left: {list(ingest.iterdir())}"
    keys = cache / "cache" / "keys"
    assert not keys.exists() or not list(keys.iterdir()), "a step-cache entry was written for the failed RUN"
    ok, bad, r = verify_store(ossb, cache)
    assert bad == 0 and r.returncode == 0, f"the store holds bad blobs\n{r}"
    # what is left is the base image's blobs (a few MiB): the RUN's data is gone
    assert free_mib(small) > SMALL_FS_MIB - 8, f"only {free_mib(small):.1f} MiB free on the tmpfs after the build"


def test_run_fills_the_disk(ossb, context, base, snap, small_fs):
    r = build_small(ossb, context, base, snap, small_fs, "RUN busybox dd if=/dev/zero of=/big bs=1M count=200\n")
    assert_failed(r, 1, "Dockerfile:2", "RUN busybox dd if=/dev/zero of=/big bs=1M count=200", ENOSPC, dest=[r.out])
    assert_nothing_left(ossb, small_fs)


def test_layer_does_not_fit(ossb, context, base, snap, small_fs):
    """The RUN writes 40 MiB of random bytes (fits); the layer, as big again, does not."""
    r = build_small(ossb, context, base, snap, small_fs,
                    "RUN head -c 41943040 /dev/urandom > /rnd && echo wrote-it\n")
    assert "wrote-it" in r.stderr, f"the RUN itself should have succeeded\n{r}"
    # an environment error (exit 4) naming the step, the layer's file and the cause
    assert_failed(r, 4, "Dockerfile:2", "RUN head -c 41943040 /dev/urandom", "`rnd`", ENOSPC, dest=[r.out])
    assert_nothing_left(ossb, small_fs)


def sleepers(marks):
    """PIDs of live processes whose command line names one of `marks` (sleep durations)."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
            with open(f"/proc/{d}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and any(str(m).encode() in argv for m in marks):
            out.append((int(d), argv))
    return out


def test_run_daemons_do_not_outlive_the_build(ossb, context, base, snap):
    marks = random.sample(range(5000, 9000), 3)  # sleep durations no other test uses
    # three daemons, all holding the RUN's output pipe; the RUN ends once all three run
    body = (f"RUN busybox setsid sh -c 'sleep {marks[0]} &'; (sleep {marks[1]} &); "
            f"(sh -c 'trap \"\" HUP TERM INT; exec sleep {marks[2]}' &); "
            "for i in $(busybox seq 100); do [ $(busybox pidof sleep | wc -w) -ge 3 ] && break; sleep 0.1; done; "
            "busybox pidof sleep | wc -w > /started\n"
            "RUN cat /started > /after\n")
    ctx = context({}, df=f"FROM {base}\n" + body)
    t0 = time.monotonic()
    r = ossb.build_ok(ctx, "--snapshotter", snap)
    took = time.monotonic() - t0
    assert took < 30, f"the build took {took:.0f}s: it waited for the RUN's daemons"
    deadline = time.monotonic() + 5  # the PID namespace's teardown is asynchronous
    while sleepers(marks) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = sleepers(marks)
    assert not left, f"the RUN's daemons outlived the build: {left}"
    fs = r.image.rootfs()
    assert fs["started"].text.strip() == "3", "the daemons were not all running when the RUN ended"
    assert fs["after"].data == fs["started"].data
    assert not mounts_under(ossb.cache), f"mounts left under the cache dir: {mounts_under(ossb.cache)}"
