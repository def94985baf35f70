"""Bad input: the exit code, a message naming what is at fault (file:line, path or
reference), and no output left at the destination (neither a layout dir nor a tar)."""
import os
import re

import pytest

from conftest import IS_ROOT, assert_failed


def failing_build(ossb, ctx, *args, **kw):
    """Build into an OCI dir, an OCI tar and a docker tar at once; return (result, dests)."""
    d, t, k = ossb.fresh("out-dir"), ossb.fresh("out-oci.tar"), ossb.fresh("out-docker.tar")
    r = ossb.run("build", "-o", f"type=oci,dest={d}", "-o", f"type=oci,dest={t}", "-o", f"type=docker,dest={k}",
                 *args, ctx, **kw)
    return r, [d, t, k]


@pytest.mark.parametrize("df,needles", [
    ("FROM scratch\nFOO bar\n", ["Dockerfile:2", "FOO"]),
    ("FROM scratch\nCOPY <<EOF /x\nhello\n", ["Dockerfile:2", "heredoc"]),
    ("FROM scratch\nCOPY --bogus a b\n", ["Dockerfile:2", "bogus"]),
    ("COPY a /a\n", ["Dockerfile:1"]),
    ("ARG X=1\n", ["Dockerfile"]),
    ("", ["Dockerfile"]),
    ("# only a comment\n\n", ["Dockerfile"]),
    ("FROM scratch\nCMD [\"unterminated\"\nENV\n", ["Dockerfile:3", "ENV"]),
    ("FROM scratch\nLABEL\n", ["Dockerfile:2", "LABEL"]),
    ("FROM scratch\nCOPY onlyone\n", ["Dockerfile:2", "COPY"]),
    ("FROM scratch\nONBUILD FROM scratch\n", ["Dockerfile:2", "FROM"]),
    ("FROM scratch\nEXPOSE 70000\n", ["Dockerfile:2", "70000"]),
    ("FROM scratch AS x y\n", ["Dockerfile:1"]),
    ("FROM ${NOPE}\n", ["Dockerfile:1"]),
], ids=["unknown-instruction", "unterminated-heredoc", "bad-flag", "missing-from", "only-arg", "empty",
        "comment-only", "env-without-args", "label-without-args", "copy-one-arg", "onbuild-from",
        "expose-out-of-range", "from-bad-as", "from-empty-name"])
def test_dockerfile_errors(ossb, context, df, needles):
    ctx = context({"a": "a\n"})
    (ctx / "Dockerfile").write_text(df)
    r, dests = failing_build(ossb, ctx)
    assert_failed(r, 2, *needles, dest=dests)
    assert str(ctx / "Dockerfile") in r.stderr, f"the message does not name the Dockerfile's path\n{r}"


def test_missing_copy_source(ossb, context):
    ctx = context({"a": "a\n"}, df="FROM scratch\nCOPY a /a\nCOPY missing.txt /m\n")
    r, dests = failing_build(ossb, ctx)
    assert_failed(r, 1, "Dockerfile:3", "missing.txt", dest=dests)


def test_glob_matching_nothing(ossb, context):
    ctx = context({"a": "a\n"}, df="FROM scratch\nCOPY *.nothing /m/\n")
    r, dests = failing_build(ossb, ctx)
    assert_failed(r, 1, "Dockerfile:2", "*.nothing", dest=dests)


def test_copy_parent_of_context(ossb, context):
    ctx = context({"a": "a\n"}, df="FROM scratch\nCOPY ../x /\n")
    (ctx.parent / "x").write_text("outside\n")
    r, dests = failing_build(ossb, ctx)
    assert_failed(r, 1, "Dockerfile:2", "../x", dest=dests)
    ctx = context({"a": "a\n"}, df="FROM scratch\nCOPY sub/../../x /\n")
    (ctx / "sub").mkdir()
    r, dests = failing_build(ossb, ctx)
    assert_failed(r, 1, "Dockerfile:2", "sub/../../x", dest=dests)


def test_context_symlink_pointing_outside(ossb, context, tmp_path):
    outside = tmp_path / "outside-secret.txt"
    outside.write_text("secret\n")
    ctx = context({"a": "a\n"}, df="FROM scratch\nCOPY escape /x\n")
    os.symlink(outside, ctx / "escape")
    r, dests = failing_build(ossb, ctx)
    assert_failed(r, 1, "Dockerfile:2", "escape", dest=dests)
    ctx = context({"a": "a\n"}, df="FROM scratch\nCOPY rel-escape /x\n")
    os.symlink("../outside-secret.txt", ctx / "rel-escape")
    r, dests = failing_build(ossb, ctx)
    assert_failed(r, 1, "Dockerfile:2", "rel-escape", dest=dests)
    # through a symlinked directory in the middle of the path
    ctx = context({"a": "a\n"}, df="FROM scratch\nCOPY dirlink/outside-secret.txt /x\n")
    os.symlink("..", ctx / "dirlink")
    r, dests = failing_build(ossb, ctx)
    assert r.returncode == 1, f"a path through a symlink to outside the context was accepted\n{r}"
    for d in dests:
        assert not os.path.lexists(d)


def test_context_symlink_inside_a_copied_dir_is_kept_as_link(ossb, context, tmp_path):
    """Not an error: a link inside a copied directory is copied as a link, not followed."""
    ctx = context({"d/a": "a\n"}, df="FROM scratch\nCOPY d /d/\n")
    os.symlink(tmp_path / "anything", ctx / "d/out")
    fs = ossb.build_ok(ctx).image.rootfs()
    assert fs["d/out"].info.issym() and fs["d/out"].info.linkname == str(tmp_path / "anything")


@pytest.mark.parametrize("instr", ["COPY", "ADD"])
def test_special_file_in_context(ossb, context, instr):
    """A FIFO cannot be copied (and must never be opened: that would hang the build)."""
    ctx = context({"a": "a\n"}, df=f"FROM scratch\n{instr} fifo /x\n")
    os.mkfifo(ctx / "fifo")
    r, dests = failing_build(ossb, ctx, timeout=60)
    assert_failed(r, (1, 4), "Dockerfile:2", "fifo", dest=dests)
    ctx = context({"d/a": "a\n"}, df=f"FROM scratch\n{instr} d /d/\n")
    os.mkfifo(ctx / "d" / "pipe")
    r, dests = failing_build(ossb, ctx, timeout=60)
    assert_failed(r, (1, 4), "Dockerfile:2", "pipe", dest=dests)


def test_unreadable_context_file(ossb, context):
    if IS_ROOT:
        pytest.skip("running as root: mode 000 does not stop root from reading (the FIFO test covers "
                    "an uncopyable context file)")
    ctx = context({"secret": "s\n"}, df="FROM scratch\nCOPY secret /x\n")
    os.chmod(ctx / "secret", 0)
    try:
        r, dests = failing_build(ossb, ctx)
        assert_failed(r, (1, 4), "secret", dest=dests)
    finally:
        os.chmod(ctx / "secret", 0o644)


def test_unknown_target(ossb, context):
    ctx = context({"a": "a\n"}, df="FROM scratch AS one\nCOPY a /a\n")
    r, dests = failing_build(ossb, ctx, "--target", "two")
    assert_failed(r, 2, "two", dest=dests)


@pytest.mark.parametrize("tag", ["UPPER/Case", "bad tag", "x:", "-lead", "name:tag:again", "a//b",
                                 "x:" + "t" * 129])
def test_invalid_tag(ossb, context, tag):
    ctx = context({"a": "a\n"}, df="FROM scratch\nCOPY a /a\n")
    r, dests = failing_build(ossb, ctx, "-t", tag)
    assert_failed(r, 2, tag, dest=dests)


def test_unknown_flag(ossb, context):
    ctx = context({"a": "a\n"}, df="FROM scratch\nCOPY a /a\n")
    r, dests = failing_build(ossb, ctx, "--squash-everything")
    assert_failed(r, 2, "--squash-everything", dest=dests)


@pytest.mark.skipif(os.geteuid() != 0, reason="RUN needs root until the rootless support exists")
def test_run_without_a_shell(ossb, context):
    """FROM scratch has no /bin/sh: the RUN fails as a shell would (127), naming the line."""
    ctx = context({"a": "a\n"}, df="FROM scratch\nCOPY a /a\nRUN echo hi\n")
    r, dests = failing_build(ossb, ctx)
    assert_failed(r, 1, "Dockerfile:3", "RUN /bin/sh -c echo hi", "exited with code 127", dest=dests)


def test_run_mount_not_supported_yet(ossb, context):
    ctx = context({"a": "a\n"}, df="FROM scratch\nRUN --mount=type=ssh,target=/c echo hi\n")
    r, dests = failing_build(ossb, ctx)
    assert_failed(r, 2, "Dockerfile:2", "type=ssh", re.compile("not supported", re.I), dest=dests)


def test_failed_build_keeps_existing_layout(ossb, context):
    """A failing build into an existing layout leaves it as it was."""
    good = context({"a": "a\n"}, df="FROM scratch\nCOPY a /a\n")
    dest = ossb.path("existing")
    r = ossb.run("build", "-t", "keep:1", "-o", f"type=oci,dest={dest}", good)
    assert r.returncode == 0, str(r)
    before = {p.relative_to(dest): p.read_bytes() for p in dest.rglob("*") if p.is_file()}
    bad = context({"a": "a\n"}, df="FROM scratch\nCOPY missing /a\n")
    r = ossb.run("build", "-t", "keep:1", "-o", f"type=oci,dest={dest}", bad)
    assert r.returncode == 1, str(r)
    after = {p.relative_to(dest): p.read_bytes() for p in dest.rglob("*") if p.is_file()}
    assert before == after
