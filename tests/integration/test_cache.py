"""The step cache (as root): a RUN whose key matches an earlier build's is not run again; its
layer is reused.  Keys follow the instruction, the env and args it sees, and for COPY the
content of what it copies (not mtimes), so touching or changing files no step copies
invalidates nothing, while a changed copied file or a rebuilt stage is never served stale."""
import os
import re
import subprocess
import time

import pytest

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="RUN as non-root runs in the rootless suite")

SDE = {"SOURCE_DATE_EPOCH": "1700000000"}


@pytest.fixture
def base(seeded_registry):
    return seeded_registry.registry.ref("busybox:1")


def ran(r, marker):
    """Whether the RUN that prints `marker` ran (its output line "#N ran-...") rather than came
    from the cache."""
    return re.search(rf"^#\d+ ran-{re.escape(marker)}$", r.stderr, re.M) is not None


def build(ossb, ctx, *args, **kw):
    r = ossb.build_ok(ctx, "--progress=plain", *args, env=dict(SDE, **kw.pop("env", {})), **kw)
    return r


def test_second_build_reuses_run(ossb, context, base):
    ctx = context({"a.txt": b"a\n", "other.txt": b"o\n"},
                  df=f"FROM {base}\nCOPY a.txt /a.txt\nRUN echo ran-one && cat /a.txt > /b.txt\n")
    r1 = build(ossb, ctx)
    assert ran(r1, "one")
    r2 = build(ossb, ctx)
    assert not ran(r2, "one") and "CACHED" in r2.stderr, r2.stderr
    assert r2.digest == r1.digest  # same layers, same config (SOURCE_DATE_EPOCH)
    assert r2.image.rootfs()["b.txt"].data == b"a\n"


def test_touch_and_unrelated_changes_keep_the_cache(ossb, context, base):
    ctx = context({"a.txt": b"a\n", "other.txt": b"o\n"},
                  df=f"FROM {base}\nCOPY a.txt /a.txt\nRUN echo ran-two && cat /a.txt > /b.txt\n")
    build(ossb, ctx)
    later = time.time() + 1000
    os.utime(ctx / "a.txt", (later, later))  # touched: same content
    (ctx / "other.txt").write_bytes(b"changed\n")  # not copied by any step
    r = build(ossb, ctx)
    assert not ran(r, "two"), r.stderr


def test_changed_copied_file_reruns(ossb, context, base):
    ctx = context({"a.txt": b"a\n"}, df=f"FROM {base}\nCOPY a.txt /a.txt\nRUN echo ran-three && cat /a.txt > /b.txt\n")
    build(ossb, ctx)
    (ctx / "a.txt").write_bytes(b"new\n")
    r = build(ossb, ctx)
    assert ran(r, "three")
    assert r.image.rootfs()["b.txt"].data == b"new\n"


def test_env_and_args_are_in_the_key(ossb, context, base):
    ctx = context({}, df=f"FROM {base}\nARG V=1\nRUN echo ran-four-$V && echo ran-four-$V > /v.txt\n")
    build(ossb, ctx)
    r = build(ossb, ctx, "--build-arg", "V=2")
    assert ran(r, "four-2")
    assert r.image.rootfs()["v.txt"].data == b"ran-four-2\n"
    r = build(ossb, ctx, "--build-arg", "V=1")
    assert not ran(r, "four-1")


def test_no_cache(ossb, context, base):
    ctx = context({}, df=f"FROM {base}\nRUN echo ran-five && touch /f.txt\n")
    build(ossb, ctx)
    r = build(ossb, ctx, "--no-cache")
    assert ran(r, "five")


def test_copy_from_rebuilt_stage_is_not_stale(ossb, context, base):
    ctx = context({"src.txt": b"v1\n"}, df=f"""
        FROM {base} AS gen
        COPY src.txt /src.txt
        RUN echo ran-gen && cp /src.txt /gen.txt
        FROM {base}
        COPY --from=gen /gen.txt /final.txt
        RUN echo ran-final && cat /final.txt > /copy.txt
        """)
    build(ossb, ctx)
    (ctx / "src.txt").write_bytes(b"v2\n")
    r = build(ossb, ctx)
    assert ran(r, "gen") and ran(r, "final")
    assert r.image.rootfs()["copy.txt"].data == b"v2\n"


def test_concurrent_builds_share_the_cache(ossb, context, base):
    ctx = context({"a.txt": b"a\n"}, df=f"FROM {base}\nCOPY a.txt /a.txt\nRUN echo ran-six && touch /x.txt\n")
    procs = []
    for i in range(3):
        out = ossb.path(f"par-{i}")
        cmd = [str(ossb.binary), "build", "--cache-dir", str(ossb.cache), "--output", f"type=oci,dest={out}",
               str(ctx)]
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                      env=dict(ossb.env, **SDE)))
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (o, e) in zip(procs, outs):
        assert p.returncode == 0, e
    assert len({o.strip().splitlines()[-1] for o, _ in outs}) == 1  # the same image each time
    r = build(ossb, ctx)
    assert not ran(r, "six")


def test_bind_mount_run_not_served_stale(ossb, context, base):
    """A RUN reading the context through a bind mount is keyed on more than its text: it runs
    again when the file changes."""
    ctx = context({"data.txt": b"v1\n"}, df=f"FROM {base}\nRUN --mount=type=bind,target=/ctx cat /ctx/data.txt > /out.txt\n")
    build(ossb, ctx)
    (ctx / "data.txt").write_bytes(b"v2\n")
    r = build(ossb, ctx)
    assert r.image.rootfs()["out.txt"].data == b"v2\n"


def test_prune_empties_the_cache(ossb, context, base):
    ctx = context({}, df=f"FROM {base}\nRUN echo ran-seven && head -c 100000 /dev/urandom > /r.bin\n")
    build(ossb, ctx)
    assert not ran(build(ossb, ctx), "seven")
    r = ossb.run("prune", "--keep-storage", "1g", "--cache-dir", ossb.cache)
    assert r.returncode == 0 and r.stdout.strip() == f"0 bytes freed in {ossb.cache}", str(r)
    assert not ran(build(ossb, ctx), "seven")  # within 1 GiB: kept
    r = ossb.run("prune", "--cache-dir", ossb.cache)
    assert r.returncode == 0, str(r)
    freed = int(r.stdout.split()[0])
    assert freed > 100000, r.stdout  # the random layer's blob went with its entry
    assert ran(build(ossb, ctx), "seven")
    r = ossb.run("prune", "--keep-storage", "lots", "--cache-dir", ossb.cache)
    assert r.returncode == 2 and "--keep-storage" in r.stderr


def test_no_cache_filter(ossb, context, base):
    ctx = context({}, df=f"""
        FROM {base} AS one
        RUN echo ran-one-stage && touch /one
        FROM one
        RUN echo ran-final-stage && touch /final
        """)
    build(ossb, ctx)
    r = build(ossb, ctx, "--no-cache-filter", "one")
    assert ran(r, "one-stage") and not ran(r, "final-stage")  # only the named stage runs again
    r = build(ossb, ctx, "--no-cache-filter", "1")
    assert not ran(r, "one-stage") and ran(r, "final-stage")
    assert {"one", "final"} <= set(r.image.rootfs())


def test_copy_layers_are_cached(ossb, context, base):
    """A COPY whose sources did not change reuses its layer (same digest), also after a touch;
    a changed source makes a new layer."""
    ctx = context({"a.txt": b"a\n", "d/b.txt": b"b\n"}, df=f"FROM {base}\nCOPY a.txt d /app/\n")
    r1 = ossb.build_ok(ctx, "--progress=plain")
    r2 = ossb.build_ok(ctx, "--progress=plain")
    assert "CACHED" in r2.stderr
    assert r2.image.manifest["layers"][-1]["digest"] == r1.image.manifest["layers"][-1]["digest"]
    later = time.time() + 500
    os.utime(ctx / "a.txt", (later, later))
    r3 = ossb.build_ok(ctx, "--progress=plain")
    assert "CACHED" in r3.stderr
    (ctx / "d" / "b.txt").write_bytes(b"changed\n")
    r4 = ossb.build_ok(ctx, "--progress=plain")
    assert "CACHED" not in r4.stderr
    assert r4.image.rootfs()["app/b.txt"].data == b"changed\n"


def test_workdir_layer_is_cached(ossb, context, base):
    """WORKDIR's directories are a layer: a second build reuses it (without SOURCE_DATE_EPOCH
    a new one would carry new mtimes), and the RUN after it hits too."""
    ctx = context({"a.txt": b"a\n"}, df=f"FROM {base}\nWORKDIR /app/sub\nRUN echo ran-wd && pwd > /where\n")
    r1 = ossb.build_ok(ctx, "--progress=plain")
    time.sleep(1.1)
    r2 = ossb.build_ok(ctx, "--progress=plain")
    assert ran(r1, "wd") and not ran(r2, "wd"), r2.stderr
    assert re.search(r"^#\d+ CACHED", r2.stderr, re.M), r2.stderr
    l1, l2 = (r.image.manifest["layers"] for r in (r1, r2))
    assert len(l1) == 3 and [d["digest"] for d in l1] == [d["digest"] for d in l2]
    assert r2.image.rootfs()["where"].data == b"/app/sub\n"
