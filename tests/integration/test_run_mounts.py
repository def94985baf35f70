"""RUN --mount (as root) on the busybox base the tests push to a real registry: bind mounts of
the context (read-only, .dockerignore), of a stage and of an image, read-write binds whose
writes are discarded, cache mounts that persist across builds (ids, uid/gid/mode, sharing
modes with concurrent builds), tmpfs, secrets from a file and from the environment (never in a
layer, the config, the history, the cache dir or ossb's output), ssh refused; mount targets
never in a layer with either snapshotter; and the cgroup limits --pids-limit, --memory, --cpus.
"""
import gzip
import hashlib
import os
import re
import threading
import time
from pathlib import Path

import pytest

from conftest import Layout, assert_failed

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the RUN suite runs as root")

SNAPSHOTTERS = ["overlay", "fuse", "native"]


@pytest.fixture(params=SNAPSHOTTERS)
def snap(request):
    return request.param


@pytest.fixture
def base(seeded_registry):
    return seeded_registry.registry.ref("busybox:1")


def build(ossb, context, base, snap, body, *args, files=None, ctx=None, **kw):
    ctx = ctx or context(files or {"a.txt": b"a\n"}, df=f"FROM {base}\n" + body)
    return ossb.build(ctx, "--snapshotter", snap, *args, **kw)


def build_ok(ossb, context, base, snap, body, *args, files=None, ctx=None, **kw):
    ctx = ctx or context(files or {"a.txt": b"a\n"}, df=f"FROM {base}\n" + body)
    return ossb.build_ok(ctx, "--snapshotter", snap, *args, **kw)


def step_names(r, first=1):
    """Every path written by the layers from index `first` on (the base is layer 0)."""
    out = set()
    for i in range(first, len(r.image.manifest["layers"])):
        out |= {name for name, _, _ in r.image.layer_entries(i)}
    return out


def under(names, *prefixes):
    return sorted(n for n in names for p in prefixes if n == p or n.startswith(p + "/"))


# --- bind ------------------------------------------------------------------------------------


def test_bind_context_read_only(ossb, context, base, snap):
    files = {"src/a.txt": "from-context\n", "top.txt": "t\n"}
    body = ("RUN --mount=type=bind,source=src,target=/mnt/src cat /mnt/src/a.txt > /out.txt"
            " && if touch /mnt/src/new 2>/dev/null; then exit 9; fi"
            " && if echo x 2>/dev/null >> /mnt/src/a.txt; then exit 8; fi\n"
            "RUN --mount=target=/ctx ls /ctx > /ls.txt\n"
            "RUN --mount=type=bind,src=src/a.txt,dst=/etc/one-file cat /etc/one-file > /file.txt\n")
    r = build_ok(ossb, context, base, snap, body, files=files)
    fs = r.image.rootfs()
    assert fs["out.txt"].data == b"from-context\n"
    assert set(fs["ls.txt"].text.split()) == {"Dockerfile", "src", "top.txt"}
    assert fs["file.txt"].data == b"from-context\n"
    names = step_names(r)
    assert not under(names, "mnt", "ctx", "etc/one-file"), names
    assert "mnt" not in fs and "ctx" not in fs and "etc/one-file" not in fs
    # the history is BuildKit's: the mounts are not shown
    hist = [h["created_by"] for h in r.image.config["history"]]
    assert "RUN /bin/sh -c ls /ctx > /ls.txt # buildkit" in hist


def test_bind_context_dockerignore(ossb, context, base, snap):
    files = {".dockerignore": "private.txt\nlogs\n", "private.txt": "p\n", "logs/x": "x\n", "a.txt": "a\n"}
    body = ("RUN --mount=type=bind,target=/ctx test ! -e /ctx/private.txt && test ! -e /ctx/logs"
            " && cat /ctx/a.txt > /a.out && stat -c %u:%g /ctx/a.txt > /owner\n")
    ctx = context(files, df=f"FROM {base}\n" + body)
    os.chown(ctx / "a.txt", 1234, 1234)
    r = build_ok(ossb, context, base, snap, "", ctx=ctx)
    fs = r.image.rootfs()
    assert fs["a.out"].data == b"a\n"
    assert fs["owner"].data == b"0:0\n"  # as BuildKit's context: files owned by root
    r = build(ossb, context, base, snap, "RUN --mount=type=bind,source=private.txt,target=/p cat /p\n",
              files=files)
    assert_failed(r, 1, "source `private.txt` not found in the build context (excluded by .dockerignore)")


def test_bind_source_stays_inside_the_context(ossb, context, base, snap):
    ctx = context({"a.txt": "a\n"}, df=f"FROM {base}\n"
                  "RUN --mount=type=bind,source=../../..,target=/c ls /c > /ls.txt\n"
                  "RUN --mount=type=bind,source=up/a.txt,target=/f cat /f > /f.txt\n")
    os.symlink("/", ctx / "up")  # an absolute link: resolved inside the context
    r = build_ok(ossb, context, base, snap, "", ctx=ctx)
    fs = r.image.rootfs()
    assert set(fs["ls.txt"].text.split()) == {"Dockerfile", "a.txt", "up"}
    assert fs["f.txt"].data == b"a\n"
    ctx = context({"a.txt": "a\n"}, df=f"FROM {base}\nRUN --mount=type=bind,source=hostetc/passwd,target=/p cat /p\n")
    os.symlink("/etc", ctx / "hostetc")
    r = build(ossb, context, base, snap, "", ctx=ctx)
    assert_failed(r, 1, "source `hostetc/passwd` not found in the build context")


def test_bind_from_stage_and_image(ossb, context, base, snap):
    body = (f"FROM {base} AS build\n"
            "RUN mkdir -p /out && echo built > /out/file\n"
            f"FROM {base}\n"
            "RUN --mount=type=bind,from=build,source=/out,target=/in cat /in/file > /copied\n"
            "RUN --mount=from=0,target=/stage0 test -f /stage0/out/file && echo yes > /by-index\n"
            f"RUN --mount=type=bind,from={base},source=/etc,target=/img cat /img/group > /group.txt\n")
    ctx = context({"a.txt": "a\n"}, df=body)
    r = ossb.build_ok(ctx, "--snapshotter", snap)
    fs = r.image.rootfs()
    assert fs["copied"].data == b"built\n"
    assert fs["by-index"].data == b"yes\n"
    assert fs["group.txt"].data.startswith(b"root:x:0:")
    assert "out" not in fs  # the build stage's files are not in the image
    assert not under(step_names(r), "in", "stage0", "img")


def test_bind_from_later_stage_refused(ossb, context, base, snap):
    ctx = context({}, df=f"FROM {base} AS first\nRUN --mount=from=later,target=/x true\nFROM {base} AS later\n")
    r = ossb.build(ctx, "--snapshotter", snap, "--target", "first")
    assert_failed(r, 2, "cannot mount from stage \"later\"")


def test_bind_rw_writes_are_discarded(ossb, context, base, snap):
    files = {"d/f.txt": "orig\n"}
    body = (f"FROM {base} AS other\nRUN echo stage > /s.txt\n"
            f"FROM {base}\n"
            "RUN --mount=type=bind,source=d,target=/d,rw echo changed > /d/f.txt && echo new > /d/n.txt"
            " && cat /d/f.txt > /seen && stat -c %u:%g /d/f.txt > /rwowner\n"
            "RUN --mount=type=bind,source=d,target=/d cat /d/f.txt > /after && test ! -e /d/n.txt\n"
            "RUN --mount=type=bind,from=other,target=/o,readwrite=true echo x > /o/s.txt && rm /o/bin/busybox\n"
            "RUN --mount=type=bind,from=other,target=/o cat /o/s.txt > /other && test -e /o/bin/busybox\n")
    ctx = context(files, df=body)
    os.chown(ctx / "d" / "f.txt", 1234, 1234)
    r = ossb.build_ok(ctx, "--snapshotter", snap)
    fs = r.image.rootfs()
    assert fs["seen"].data == b"changed\n"
    assert fs["rwowner"].data == b"0:0\n"  # a copy of the context: owned by root, as in BuildKit
    assert fs["after"].data == b"orig\n"
    assert fs["other"].data == b"stage\n"
    assert (ctx / "d" / "f.txt").read_text() == "orig\n" and not (ctx / "d" / "n.txt").exists()
    assert not under(step_names(r), "d", "o")


def test_bind_missing_source(ossb, context, base, snap):
    r = build(ossb, context, base, snap, "RUN --mount=type=bind,source=nope,target=/x true\n")
    assert_failed(r, 1, "source `nope` not found in the build context", "Dockerfile:2")


# --- cache -----------------------------------------------------------------------------------


COUNTER = ("RUN --mount=type=cache,target=/var/cache/c "
           "n=$(cat /var/cache/c/n 2>/dev/null || echo 0); echo $((n+1)) > /var/cache/c/n; cp /var/cache/c/n /count\n")


def test_cache_persists_between_builds(ossb, context, base, snap):
    for want in (b"1\n", b"2\n"):
        r = build_ok(ossb, context, base, snap, COUNTER, "--no-cache")
        assert r.image.rootfs()["count"].data == want
        assert not under(step_names(r), "var/cache")
    other = ossb.path("other-cache")
    r = build_ok(ossb, context, base, snap, COUNTER, "--cache-dir", other)
    assert r.image.rootfs()["count"].data == b"1\n"  # a cache dir of its own starts empty


def test_cache_ids_owner_and_mode(ossb, context, base, snap):
    body = ("RUN --mount=type=cache,id=shared,target=/a echo hello > /a/f\n"
            "RUN --mount=type=cache,id=shared,target=/b cat /b/f > /got\n"
            "RUN --mount=type=cache,target=/a test ! -e /a/f && echo separate > /sep\n"
            "RUN --mount=type=cache,target=/c2,uid=1000,gid=1000,mode=0700 stat -c '%u %g %a' /c2 > /c2stat\n"
            "RUN --mount=type=cache,target=/c3 stat -c '%u %g %a' /c3 > /c3stat\n"
            "RUN --mount=type=cache,target=/ro,ro if touch /ro/x 2>/dev/null; then exit 3; fi\n"
            "RUN --mount=type=cache,id=same,target=/p,sharing=locked "
            "--mount=type=cache,id=same,target=/q,sharing=locked echo 1 > /p/f && cat /q/f > /both\n")
    r = build_ok(ossb, context, base, snap, body)
    fs = r.image.rootfs()
    assert fs["got"].data == b"hello\n"
    assert fs["sep"].data == b"separate\n"
    assert fs["c2stat"].data == b"1000 1000 700\n"
    assert fs["c3stat"].data == b"0 0 755\n"
    assert fs["both"].data == b"1\n"
    assert not under(step_names(r), "a", "b", "c2", "c3", "ro", "p", "q")
    caches = sorted(p.name for p in (ossb.cache / "mounts" / "cache").iterdir() if not p.name.endswith(".lock"))
    assert hashlib.sha256(b"shared").hexdigest() in caches
    assert hashlib.sha256(b"/a").hexdigest() in caches  # the default id is the target


def test_cache_seeded_from_stage(ossb, context, base, snap):
    body = (f"FROM {base} AS seed\nRUN mkdir -p /deps && echo seeded > /deps/s\n"
            f"FROM {base}\n"
            "RUN --mount=type=cache,target=/c,from=seed,source=/deps cat /c/s > /s && echo more > /c/more\n"
            "RUN --mount=type=cache,target=/c,from=seed,source=/deps cat /c/more > /m\n")
    r = ossb.build_ok(context({}, df=body), "--snapshotter", snap)
    fs = r.image.rootfs()
    assert fs["s"].data == b"seeded\n" and fs["m"].data == b"more\n"


def concurrent_builds(ossb, ctxs, *args):
    results = [None] * len(ctxs)

    def one(i):
        results[i] = ossb.build(ctxs[i], *args)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(ctxs))]
    for t in threads:
        t.start()
        time.sleep(0.2)
    for t in threads:
        t.join()
    for r in results:
        assert r.returncode == 0, str(r)
    return results


def test_cache_sharing_locked_concurrent(ossb, context, base):
    def body(tag):
        return (f"FROM {base}\nRUN --mount=type=cache,target=/c,sharing=locked "
                f"echo start-{tag} >> /c/log; sleep 2; echo end-{tag} >> /c/log; cp /c/log /log\n")
    concurrent_builds(ossb, [context({}, df=body("a")), context({}, df=body("b"))], "--snapshotter", "overlay")
    r = ossb.build_ok(context({}, df=f"FROM {base}\nRUN --mount=type=cache,target=/c cp /c/log /log\n"))
    lines = r.image.rootfs()["log"].text.split()
    assert len(lines) == 4, lines
    # one build at a time: each start is directly followed by its own end
    assert lines[0].split("-")[1] == lines[1].split("-")[1] and lines[2].split("-")[1] == lines[3].split("-")[1], lines
    assert [l.split("-")[0] for l in lines] == ["start", "end", "start", "end"], lines


def test_cache_sharing_private_concurrent(ossb, context, base):
    def body(tag):
        return (f"FROM {base}\nRUN --mount=type=cache,target=/c,sharing=private "
                f"echo {tag} >> /c/log; sleep 2; cp /c/log /log\n")
    rs = concurrent_builds(ossb, [context({}, df=body("a")), context({}, df=body("b"))], "--snapshotter", "overlay")
    logs = [ossb_layout_rootfs(r)["log"].text.split() for r in rs]
    assert logs == [["a"], ["b"]], logs  # each had a directory of its own
    insts = [p.name for p in (ossb.cache / "mounts" / "cache").iterdir() if not p.name.endswith(".lock")]
    assert len(insts) == 2, insts


def ossb_layout_rootfs(r):
    return Layout(r.layout_dir).image().rootfs()


# --- tmpfs -----------------------------------------------------------------------------------


def test_tmpfs(ossb, context, base, snap):
    body = ("RUN --mount=type=tmpfs,target=/scratch,size=1m echo x > /scratch/f"
            " && grep ' /scratch tmpfs ' /proc/mounts > /mounts.txt"
            " && if head -c 2000000 /dev/zero > /scratch/big 2>/dev/null; then exit 7; fi\n"
            "RUN --mount=type=tmpfs,target=/data echo hidden > /data/f && test ! -e /data/a.txt\n"
            "RUN --mount=type=tmpfs,target=/new/deep/dir touch /new/deep/dir/f\n")
    r = build_ok(ossb, context, base, snap, body)
    fs = r.image.rootfs()
    assert "size=1024k" in fs["mounts.txt"].text
    assert not under(step_names(r), "scratch", "data", "new"), step_names(r)
    assert "new" not in fs and "scratch" not in fs


# --- secrets ---------------------------------------------------------------------------------


SECRET = b"s3cr3t-" + hashlib.sha256(b"ossb secret test").hexdigest()[:24].encode()
ENV_SECRET = b"envs3cr3t-" + hashlib.sha256(b"ossb env secret").hexdigest()[:20].encode()


def all_bytes_under(path):
    """Every file under path, raw and (gzip) decompressed."""
    for p in Path(path).rglob("*"):
        if p.is_file() and not p.is_symlink():
            data = p.read_bytes()
            yield p, data
            if data[:2] == b"\x1f\x8b":
                try:
                    yield p, gzip.decompress(data)
                except (OSError, EOFError):
                    pass


def assert_nowhere(secret, r, *dirs):
    assert secret not in r.stdout.encode() and secret not in r.stderr.encode(), str(r)
    for d in dirs:
        for p, data in all_bytes_under(d):
            assert secret not in data, f"the secret is in {p}"


def test_secret_file_and_env(ossb, context, base, snap, tmp_path):
    sfile = tmp_path / "secret.txt"
    sfile.write_bytes(SECRET)
    want = hashlib.sha256(SECRET).hexdigest().encode()
    body = ("RUN --mount=type=secret,id=tok busybox sha256sum /run/secrets/tok > /sum"
            " && stat -c '%a %u %g' /run/secrets/tok > /st && if echo x 2>/dev/null > /run/secrets/tok; then exit 4; fi\n"
            "RUN --mount=type=secret,id=tok,target=/etc/tok,uid=1000,mode=0440 stat -c '%a %u' /etc/tok > /st2"
            " && busybox sha256sum /etc/tok > /sum2\n"
            "RUN --mount=type=secret,id=envtok,env=TOKEN echo ${#TOKEN} > /envlen && test ! -e /run/secrets/envtok\n"
            "RUN --mount=type=secret,id=tok,env=BOTH,target=/run/both test \"$BOTH\" = \"$(cat /run/both)\""
            " && echo same > /both\n"
            "RUN --mount=type=secret,id=tok mkdir -p /run/mine && touch /run/mine/f\n")
    env = {"MY_SECRET_VAR": ENV_SECRET.decode()}
    out = ossb.fresh("layout")
    ctx = context({"a.txt": "a\n"}, df=f"FROM {base}\n" + body)
    r = ossb.run("--log-level", "debug", "build", "--snapshotter", snap, "--output", f"type=oci,dest={out}",
                 "--secret", f"id=tok,src={sfile}", "--secret", "id=envtok,env=MY_SECRET_VAR", ctx, env=env)
    assert r.returncode == 0, str(r)
    img = Layout(out).image()
    fs = img.rootfs()
    assert fs["sum"].data.split()[0] == want
    assert fs["st"].data == b"400 0 0\n"
    assert fs["st2"].data == b"440 1000\n"
    assert fs["sum2"].data.split()[0] == want
    assert fs["envlen"].data == str(len(ENV_SECRET)).encode() + b"\n"
    assert fs["both"].data == b"same\n"
    assert "run/mine/f" in fs  # the command's own files beside a mount point stay
    names = set()
    for i in range(1, len(img.manifest["layers"])):
        names |= {n for n, _, _ in img.layer_entries(i)}
    assert not under(names, "run/secrets", "etc/tok", "run/both"), names
    hist = [h["created_by"] for h in img.config["history"]]
    assert "RUN /bin/sh -c echo ${#TOKEN} > /envlen && test ! -e /run/secrets/envtok # buildkit" in hist
    assert not any("MY_SECRET_VAR" in e or "TOKEN=" in e for e in img.cfg.get("Env", []))
    for secret in (SECRET, ENV_SECRET):
        assert secret not in img.config_bytes and secret not in img.manifest_bytes
        assert_nowhere(secret, r, out, ossb.cache)


def test_secret_missing_and_required(ossb, context, base, snap, tmp_path):
    r = build_ok(ossb, context, base, snap, "RUN --mount=type=secret,id=nope test ! -e /run/secrets/nope && touch /ok\n")
    assert "ok" in r.image.rootfs()
    r = build(ossb, context, base, snap, "RUN --mount=type=secret,id=nope,required=true true\n")
    assert_failed(r, 2, "secret `nope` is required but was not given", "Dockerfile:2")
    r = build(ossb, context, base, snap, "RUN true\n", "--secret", f"id=x,src={tmp_path / 'missing'}")
    assert_failed(r, 2, "--secret id=x,src=", "missing")
    r = build(ossb, context, base, snap, "RUN true\n", "--secret", "src=/etc/hostname")
    assert_failed(r, 2, "secret missing ID")


def test_ssh_refused(ossb, context, base, snap):
    r = build(ossb, context, base, snap, "RUN --mount=type=ssh true\n")
    assert_failed(r, 2, "RUN --mount=type=ssh is not supported yet")


def test_bad_mount_specs(ossb, context, base, snap):
    cases = [("type=nfs,target=/x", "unsupported mount type \"nfs\""),
             ("target=/x,uid=1", "uid not allowed for \"bind\" type mounts"),
             ("type=cache,target=/", "invalid mount target \"/\""),
             ("from=$X,target=/x", "'from' doesn't support variable expansion")]
    for spec, needle in cases:
        r = build(ossb, context, base, snap, f"RUN --mount={spec} true\n")
        assert_failed(r, 2, needle)
    # found before any step runs, naming its line
    r = build(ossb, context, base, snap, "RUN echo ran-first-step\nRUN --mount=type=nfs,target=/x true\n")
    assert_failed(r, 2, "unsupported mount type \"nfs\"", "Dockerfile:3")
    assert "ran-first-step" not in r.stderr, r.stderr


# --- mount targets and layers ----------------------------------------------------------------


def test_mount_targets_never_in_layers(ossb, context, base, snap):
    files = {"over/x": "x\n"}
    body = ("RUN mkdir -p /data/keep && echo keep > /data/keep/k\n"
            "RUN --mount=type=bind,source=over,target=/data cat /data/x > /seen\n"
            "RUN --mount=type=tmpfs,target=/data touch /data/tmpfile\n"
            "RUN --mount=type=cache,target=/data touch /data/cachefile\n"
            "WORKDIR /w\n"
            "RUN --mount=type=bind,source=over,target=rel cat /w/rel/x > /relseen\n")
    r = build_ok(ossb, context, base, snap, body, files=files)
    fs = r.image.rootfs()
    assert fs["data/keep/k"].data == b"keep\n" and fs["seen"].data == b"x\n" and fs["relseen"].data == b"x\n"
    assert "data/x" not in fs and "data/tmpfile" not in fs and "data/cachefile" not in fs and "w/rel" not in fs
    layers = [{n for n, _, _ in r.image.layer_entries(i)} for i in range(len(r.image.manifest["layers"]))]
    assert under(layers[1], "data") == ["data", "data/keep", "data/keep/k"]
    later = set().union(*layers[2:])
    assert not under(later, "data", "w/rel"), later
    # the tmpfs and cache steps changed nothing in the image
    empty = {h["created_by"]: h.get("empty_layer", False) for h in r.image.config["history"]}
    assert empty["RUN /bin/sh -c touch /data/tmpfile # buildkit"] is True
    assert empty["RUN /bin/sh -c touch /data/cachefile # buildkit"] is True
    assert empty["RUN /bin/sh -c cat /data/x > /seen # buildkit"] is False


# --- cgroup limits ---------------------------------------------------------------------------


def limits_or_skip(ossb, context, base, *flag):
    r = ossb.build(context({}, df=f"FROM {base}\nRUN true\n"), *flag)
    if r.returncode != 0 and "needs a writable cgroup" in r.stderr:
        pytest.skip(r.stderr.strip().splitlines()[-1])
    assert r.returncode == 0, str(r)


def leftover_cgroups():
    out = []
    for top in ("/sys/fs/cgroup", "/sys/fs/cgroup/unified", "/sys/fs/cgroup/pids", "/sys/fs/cgroup/memory",
                "/sys/fs/cgroup/cpu"):
        p = Path(top)
        if p.is_dir():
            out += [c for c in p.rglob("ossb-*") if c.is_dir()]
    return out


def test_pids_limit(ossb, context, base):
    before = set(leftover_cgroups())
    limits_or_skip(ossb, context, base, "--pids-limit", "64")
    body = "RUN for i in 1 2 3 4 5 6 7 8 9 10 11 12; do sleep 1 & done; wait\n"
    r = ossb.build(context({}, df=f"FROM {base}\n" + body), "--pids-limit", "6")
    assert_failed(r, 1, re.compile(r"fork|Resource temporarily unavailable"))
    r = ossb.build_ok(context({}, df=f"FROM {base}\n" + body + "RUN cat /proc/self/cgroup > /cg\n"),
                      "--pids-limit", "64")
    cg = r.image.rootfs()["cg"].text
    assert "ossb-" in cg, cg  # the command ran in the run's cgroup
    assert set(leftover_cgroups()) <= before, "a run's cgroup was left behind"


def test_memory_limit(ossb, context, base):
    limits_or_skip(ossb, context, base, "--memory", "64m")
    body = "RUN x=$(head -c 200000000 /dev/zero | busybox tr '\\0' a); echo ${#x}\n"
    r = ossb.build(context({}, df=f"FROM {base}\n" + body), "--memory", "16m")
    assert_failed(r, 1, "killed by signal 9", "out of memory: the --memory limit was reached")


def test_cpus_limit(ossb, context, base):
    limits_or_skip(ossb, context, base, "--cpus", "0.5")
    r = ossb.build_ok(context({}, df=f"FROM {base}\nRUN cat /proc/self/cgroup > /cg\n"), "--cpus", "0.5")
    assert "ossb-" in r.image.rootfs()["cg"].text


def test_limit_flags_checked(ossb, context, base):
    ctx = context({}, df=f"FROM {base}\nRUN true\n")
    for flag, value, needle in (("--memory", "lots", "invalid --memory"), ("--memory", "1m", "smallest limit"),
                                ("--cpus", "0.001", "invalid --cpus"), ("--cpus", "x", "invalid --cpus"),
                                ("--pids-limit", "-5", "invalid --pids-limit")):
        r = ossb.build(ctx, flag, value)
        assert_failed(r, 2, needle)
