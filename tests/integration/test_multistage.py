"""Multi-stage builds: which stages run, --target."""
from conftest import assert_failed

DF = """
    FROM scratch AS unused
    COPY does-not-exist /x

    FROM scratch AS a
    COPY a.txt /a

    FROM a AS b
    COPY b.txt /b

    FROM scratch AS c
    COPY --from=b /a /from-b-a
    COPY c.txt /c
    """
FILES = {"a.txt": "a\n", "b.txt": "b\n", "c.txt": "c\n"}


def test_unused_stage_is_not_built(ossb, context):
    ctx = context(FILES, df=DF)
    r = ossb.build_ok(ctx)
    fs = r.image.rootfs()
    assert set(fs) == {"from-b-a", "c"}, sorted(fs)
    assert fs["from-b-a"].data == b"a\n"
    # progress names the stages it ran; the unused one is not among them
    assert "does-not-exist" not in r.stderr, r.stderr


def test_unused_stage_would_fail(ossb, context):
    """The stage skipped above really fails when built: the test above proves something."""
    ctx = context(FILES, df=DF)
    r = ossb.build(ctx, "--target", "unused")
    assert_failed(r, 1, "does-not-exist", "Dockerfile:2", dest=[r.layout_dir])


def test_target_picks_stage(ossb, context):
    ctx = context(FILES, df=DF)
    fs = ossb.build_ok(ctx, "--target", "a").image.rootfs()
    assert set(fs) == {"a"}
    img = ossb.build_ok(ctx, "--target", "B").image  # stage names are case-insensitive
    assert set(img.rootfs()) == {"a", "b"}
    assert len(img.manifest["layers"]) == 2  # b's image has a's layer under its own


def test_unknown_target(ossb, context):
    ctx = context(FILES, df=DF)
    r = ossb.build(ctx, "--target", "nosuchstage")
    assert_failed(r, 2, "nosuchstage", dest=[r.layout_dir])


def test_target_by_index_is_not_a_name(ossb, context):
    """--target takes a stage name (as docker build); an index is not one."""
    ctx = context(FILES, df=DF)
    r = ossb.build(ctx, "--target", "1")
    assert_failed(r, 2, "target", dest=[r.layout_dir])


def test_stage_dependency_order_and_copy_from_later_stage_name(ossb, context):
    ctx = context(FILES, df="""
        FROM scratch AS first
        COPY a.txt /a
        FROM scratch AS second
        COPY --from=first /a /a-in-second
        FROM second
        COPY --from=first /a /a-again
        """)
    fs = ossb.build_ok(ctx).image.rootfs()
    assert set(fs) == {"a-in-second", "a-again"}


def test_copy_from_itself_or_unknown_image(ossb, context):
    ctx = context(FILES, df="FROM scratch AS me\nCOPY --from=me /x /y\n")
    r = ossb.build(ctx)
    assert_failed(r, 2, "Dockerfile:2", dest=[r.layout_dir])
    ctx = context(FILES, df="FROM scratch\nCOPY --from=nosuchstage /x /y\n")
    r = ossb.build(ctx)
    assert r.returncode != 0 and "nosuchstage" in r.stderr, str(r)


def test_from_registry_that_is_down(ossb, context):
    """FROM an image whose registry does not answer: a registry error (exit 3) naming the image
    and the Dockerfile line, after bounded retries, and no output."""
    ctx = context(FILES, df="FROM 127.0.0.1:1/none:1\nCOPY a.txt /\n")
    r = ossb.build(ctx)
    assert_failed(r, 3, "127.0.0.1:1/none:1", "Dockerfile:1", "cannot connect", dest=[r.layout_dir])


def test_duplicate_stage_name(ossb, context):
    ctx = context(FILES, df="FROM scratch AS x\nFROM scratch AS x\n")
    r = ossb.build(ctx)
    assert_failed(r, 2, "Dockerfile:", dest=[r.layout_dir])


def test_global_arg_in_stage_name_reference(ossb, context):
    ctx = context(FILES, df="""
        ARG SRC=first
        FROM scratch AS first
        COPY a.txt /a
        FROM scratch
        COPY --from=${SRC} /a /copied
        """)
    fs = ossb.build_ok(ctx).image.rootfs()
    assert fs["copied"].data == b"a\n"
    fs = ossb.build_ok(ctx, "--build-arg", "SRC=0").image.rootfs()
    assert fs["copied"].data == b"a\n"
