"""SIGTERM/SIGINT during a build: ossb stops at the next file or step, exits 4, and leaves no
output at the destination, no build work dir and no partial blob in the store."""
import os
import signal
import subprocess

import pytest


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_interrupted_build_cleans_up(ossb, context, sig):
    files = {f"big/f{i:03d}": os.urandom(256 * 1024) for i in range(160)}  # 40 MiB, incompressible
    ctx = context(files, df="FROM scratch\nCOPY big /data\nCOPY big /again\n")
    out = ossb.path("out.tar")
    cache = ossb.path("cache")
    p = subprocess.Popen([str(ossb.binary), "build", "--progress=plain", "--cache-dir", str(cache), "-o",
                          f"type=oci,dest={out}", str(ctx)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env=ossb.env, cwd=ossb.tmp)
    seen = b""
    while b"COPY big /data" not in seen:  # the first COPY has started
        line = p.stderr.readline()
        assert line, f"ossb ended before the COPY started: {seen!r}"
        seen += line
    p.send_signal(sig)
    _, err = p.communicate(timeout=120)
    err = seen + err
    if p.returncode == 0:
        pytest.skip("the build finished before the signal arrived")
    assert p.returncode == 4, err.decode(errors="replace")
    assert b"interrupted by signal" in err, err
    assert not out.exists()
    assert not [f for f in ossb.tmp.iterdir() if f.name.startswith("out.tar")], "temp output left behind"
    assert not list((cache / "builds").iterdir()), "build work dir left behind"
    ingest = cache / "store" / "ingest"
    assert not ingest.exists() or not list(ingest.iterdir()), "partial blob left in the store"


@pytest.mark.skipif(os.geteuid() != 0, reason="RUN as non-root runs in the rootless suite")
@pytest.mark.parametrize("snap", ["overlay", "native"])
def test_interrupted_run_cleans_up(ossb, context, seeded_registry, snap):
    """SIGTERM while a RUN runs: the sandbox is killed, ossb exits 4 promptly, and no mount,
    work dir, cache entry or output is left."""
    import time
    base = seeded_registry.registry.ref("busybox:1")
    ctx = context({}, df=f"FROM {base}\nRUN echo started-sleeping && sleep 300\n")
    out = ossb.path("out")
    cache = ossb.path("cache")
    p = subprocess.Popen([str(ossb.binary), "build", "--progress=plain", "--snapshotter", snap, "--cache-dir",
                          str(cache), "-o", f"type=oci,dest={out}", str(ctx)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=ossb.env, cwd=ossb.tmp)
    seen = b""
    while b"started-sleeping\n" not in seen or b"echo started-sleeping" in seen.splitlines()[-1]:
        line = p.stderr.readline()
        assert line, f"ossb ended before the RUN started: {seen!r}"
        seen += line
    t0 = time.monotonic()
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=60)
    assert time.monotonic() - t0 < 10, "the sandbox was not killed promptly"
    assert p.returncode == 4, (seen + err).decode(errors="replace")
    assert not out.exists()
    assert not list((cache / "builds").iterdir()), "build work dir left behind"
    with open("/proc/self/mountinfo") as f:
        assert str(cache) not in f.read(), "a mount under the cache dir was left behind"
    keys = cache / "cache" / "keys"
    assert not keys.exists() or not list(keys.iterdir()), "a cache entry was written for an interrupted RUN"
