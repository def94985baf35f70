"""SOURCE_DATE_EPOCH: reproducible images."""
import calendar
import os
import time

from conftest import Layout

EPOCH = 1_700_000_000
EPOCH_TEXT = "2023-11-14T22:13:20Z"

DF = """
    FROM scratch AS base
    COPY files /files/
    FROM base
    WORKDIR /work/dir
    COPY <<EOF /heredoc.txt
    made at build time
    EOF
    COPY --from=base /files/a.txt /copied-from-stage.txt
    LABEL x=y
    CMD ["/bin/true"]
    """
FILES = {"files/a.txt": "a\n", "files/sub/b.txt": "b\n", "files/new.txt": "new\n"}


def touch_all(root, when):
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            os.utime(os.path.join(dirpath, n), (when, when), follow_symlinks=False)
    os.utime(root, (when, when))


def test_epoch_sets_created_and_clamps_mtimes(ossb, context):
    ctx = context(FILES, df=DF)
    touch_all(ctx, EPOCH - 1000)  # older than the epoch: kept
    os.utime(ctx / "files/new.txt", (EPOCH + 5000, EPOCH + 5000))  # newer: clamped
    r = ossb.build_ok(ctx, env={"SOURCE_DATE_EPOCH": str(EPOCH)})
    img = r.image
    assert img.config["created"] == EPOCH_TEXT
    for h in img.config["history"]:
        assert h["created"] == EPOCH_TEXT
    for i in range(len(img.manifest["layers"])):
        for name, ti, _ in img.layer_entries(i):
            assert ti.mtime <= EPOCH, f"{name}: mtime {ti.mtime} not clamped to {EPOCH}"
    fs = img.rootfs()
    assert fs["files/new.txt"].info.mtime == EPOCH
    assert fs["files/a.txt"].info.mtime == EPOCH - 1000
    assert fs["work/dir"].info.mtime == EPOCH
    assert fs["heredoc.txt"].info.mtime == EPOCH


def test_touching_newer_files_keeps_digest(ossb, context):
    """Two builds of the same Dockerfile and context, the context's files touched in between
    (to times after the epoch, which are clamped), give the same manifest digest."""
    ctx = context(FILES, df=DF)
    env = {"SOURCE_DATE_EPOCH": str(EPOCH)}
    touch_all(ctx, EPOCH + 100)
    out1, out2 = ossb.path("r1"), ossb.path("r2")
    r1 = ossb.run("build", "--cache-dir", ossb.path("c1"), "-t", "repro:1", "-o", f"type=oci,dest={out1}", ctx,
                  env=env)
    assert r1.returncode == 0, str(r1)
    time.sleep(1.1)
    touch_all(ctx, int(time.time()))
    r2 = ossb.run("build", "--cache-dir", ossb.path("c2"), "-t", "repro:1", "-o", f"type=oci,dest={out2}", ctx,
                  env=env)
    assert r2.returncode == 0, str(r2)
    assert r1.digest == r2.digest
    assert Layout(out1).image().digest == r1.digest
    assert (out1 / "index.json").read_bytes() == (out2 / "index.json").read_bytes()
    for f in (out1 / "blobs" / "sha256").iterdir():
        assert (out2 / "blobs" / "sha256" / f.name).read_bytes() == f.read_bytes()
    assert Layout(out1).image().config["created"] == EPOCH_TEXT


def test_build_arg_source_date_epoch(ossb, context):
    ctx = context(FILES, df=DF)
    touch_all(ctx, EPOCH + 100)
    r = ossb.build_ok(ctx, "--build-arg", f"SOURCE_DATE_EPOCH={EPOCH}")
    assert r.image.config["created"] == EPOCH_TEXT
    assert "SOURCE_DATE_EPOCH" not in r.stderr, "SOURCE_DATE_EPOCH is a known build arg: no unused-arg warning"


def test_without_epoch_created_is_now(ossb, context):
    ctx = context(FILES, df=DF)
    before = time.time()
    img = ossb.build_ok(ctx).image
    created = img.config["created"]
    t = calendar.timegm(time.strptime(created[:19], "%Y-%m-%dT%H:%M:%S"))
    assert before - 5 <= t <= time.time() + 5, created


def test_invalid_epoch(ossb, context):
    ctx = context(FILES, df=DF)
    r = ossb.build(ctx, env={"SOURCE_DATE_EPOCH": "yesterday"})
    assert r.returncode == 2, str(r)
    assert "yesterday" in r.stderr
