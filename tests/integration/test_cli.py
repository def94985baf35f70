import os
"""Flags of `ossb build` around the build itself: result files, Dockerfile location, progress
and log formats, help, usage errors."""
import json
import shutil
import subprocess
import tempfile

import pytest

from conftest import DIGEST_RE, Layout, assert_failed, digest_of

SIMPLE = "FROM scratch\nCOPY a.txt /a.txt\nLABEL k=v\n"


def simple_ctx(context, df=SIMPLE):
    return context({"a.txt": "a\n"}, df=df)


def json_lines(text):
    out = []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            pytest.fail(f"not a JSON line on stderr: {line!r}\nall of stderr:\n{text}")
        assert isinstance(obj, dict), line
        out.append(obj)
    return out


def test_help(ossb):
    r = ossb.run("build", "--help")
    assert r.returncode == 0, str(r)
    for flag in ("--file", "--tag", "--output", "--build-arg", "--target", "--platform", "--iidfile",
                 "--metadata-file", "--progress", "--cache-dir", "SOURCE_DATE_EPOCH"):
        assert flag in r.stdout, f"--help does not mention {flag}"
    r = ossb.run("--help")
    assert r.returncode == 0 and "build" in r.stdout and "Exit codes" in r.stdout, str(r)
    r = ossb.run("version")
    assert r.returncode == 0 and r.stdout.strip(), str(r)


def test_iidfile_and_metadata_file(ossb, context):
    ctx = simple_ctx(context)
    iid, meta = ossb.path("iid"), ossb.path("meta.json")
    r = ossb.build_ok(ctx, "-t", "hello:latest", "--iidfile", iid, "--metadata-file", meta)
    img = r.image
    assert iid.read_text().strip() == img.config_digest
    assert digest_of(img.config_bytes) == img.config_digest
    m = json.loads(meta.read_text())
    assert m["containerimage.digest"] == r.digest
    assert m["containerimage.config.digest"] == img.config_digest
    assert m["containerimage.descriptor"]["digest"] == r.digest
    assert m["containerimage.descriptor"]["size"] == len(img.manifest_bytes)
    assert m["containerimage.descriptor"]["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert m["image.name"] == "docker.io/library/hello:latest"


def test_no_output_still_prints_digest(ossb, context):
    ctx = simple_ctx(context)
    r = ossb.build(ctx, out=False)
    assert r.returncode == 0, str(r)
    assert DIGEST_RE.match(r.digest)
    # the same build into a layout: the same config except the creation time, so compare
    # only that a digest was printed and the cache dir holds the blobs
    assert (ossb.cache / "store").exists()


def test_dockerfile_outside_context(ossb, context, tmp_path):
    ctx = context({"a.txt": "a\n"})
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "Build.df").write_text(SIMPLE)
    r = ossb.build_ok(ctx, "-f", elsewhere / "Build.df")
    assert r.image.rootfs()["a.txt"].data == b"a\n"
    # errors name the file given with -f
    (elsewhere / "Bad.df").write_text("FROM scratch\nBOGUS x\n")
    r = ossb.build(ctx, "-f", elsewhere / "Bad.df")
    assert_failed(r, 2, f"{elsewhere / 'Bad.df'}:2", dest=[r.layout_dir])


def test_dockerfile_from_stdin(ossb, context):
    ctx = context({"a.txt": "a\n", "Dockerfile": "FROM scratch\nLABEL from=context-dockerfile\n"})
    r = ossb.build_ok(ctx, "-f", "-", input=SIMPLE.encode())
    assert r.image.cfg["Labels"] == {"k": "v"}
    assert r.image.rootfs()["a.txt"].data == b"a\n"


def test_default_dockerfile_and_missing_one(ossb, context):
    ctx = context({"a.txt": "a\n"})
    r = ossb.build(ctx)
    assert_failed(r, 2, "Dockerfile", dest=[r.layout_dir])
    r = ossb.build(ctx, "-f", ctx / "nope.df")
    assert_failed(r, 2, "nope.df", dest=[r.layout_dir])
    (ctx / "Dockerfile").mkdir()
    r = ossb.build(ctx)
    assert_failed(r, 2, "Dockerfile", dest=[r.layout_dir])


def test_context_not_a_directory(ossb, context):
    ctx = simple_ctx(context)
    r = ossb.build(ctx / "a.txt", "-f", ctx / "Dockerfile")
    assert_failed(r, 2, "a.txt", dest=[r.layout_dir])
    r = ossb.build(ossb.path("no-such-dir"), "-f", ctx / "Dockerfile")
    assert_failed(r, 2, "no-such-dir", dest=[r.layout_dir])


def test_progress_json(ossb, context):
    ctx = simple_ctx(context)
    r = ossb.build_ok(ctx, "--progress=json")
    events = json_lines(r.stderr)
    assert events, "no progress events"
    started = [e for e in events if e.get("status") == "started"]
    done = [e for e in events if e.get("status") == "done"]
    assert len(started) == len(done) >= 4  # FROM, COPY, LABEL, export
    assert sorted(e["id"] for e in started) == sorted(e["id"] for e in done)
    assert any("COPY a.txt /a.txt" in (e.get("name") or "") for e in started)


def test_progress_quiet_and_plain(ossb, context):
    ctx = simple_ctx(context)
    r = ossb.build_ok(ctx, "--progress", "quiet")
    assert r.stderr.strip() == "", r.stderr
    r = ossb.build_ok(ctx, "--progress", "plain")
    assert "COPY a.txt /a.txt" in r.stderr and "\033[" not in r.stderr
    r = ossb.build(ctx, "--progress", "fancy")
    assert_failed(r, 2, "fancy", dest=[r.layout_dir])


def test_log_format_json_error(ossb, context):
    ctx = simple_ctx(context, df="FROM scratch\nCOPY missing.txt /x\n")
    for args in (("--log-format=json", "build"), ("build", "--log-format", "json")):
        lay = ossb.fresh("layout")
        r = ossb.run(*args, "--progress=json", "-o", f"type=oci,dest={lay}", ctx)
        assert_failed(r, 1, dest=[lay])
        events = json_lines(r.stderr)
        errors = [e for e in events if e.get("level") == "error"]
        assert len(errors) == 1, events
        assert "missing.txt" in errors[0]["msg"] and "Dockerfile:2" in errors[0]["msg"]
        assert "time" in errors[0]


def test_log_format_json_warning(ossb, context):
    ctx = simple_ctx(context)
    r = ossb.build_ok(ctx, "--log-format=json", "--progress=quiet", "--build-arg", "UNUSED=1")
    events = json_lines(r.stderr)
    assert any(e.get("level") == "warning" and "UNUSED" in e.get("msg", "") for e in events), events


def test_log_format_json_usage_error_is_all_json(ossb, context):
    """With --log-format=json nothing on stderr may be plain text, usage errors included."""
    ctx = simple_ctx(context)
    r = ossb.run("--log-format=json", "build", "--no-such-flag", ctx)
    assert r.returncode == 2, str(r)
    events = json_lines(r.stderr)
    assert any(e.get("level") == "error" and "--no-such-flag" in e.get("msg", "") for e in events)


def test_cache_dir_from_environment(ossb, context):
    ctx = simple_ctx(context)
    envcache = ossb.path("from-env-cache")
    lay = ossb.fresh("layout")
    r = ossb.run("build", "-o", f"type=oci,dest={lay}", ctx, cache=False, env={"OSSB_CACHE_DIR": str(envcache)})
    assert r.returncode == 0, str(r)
    assert envcache.is_dir() and any(envcache.iterdir())
    assert not ossb.cache.exists()
    assert Layout(lay).image().digest == r.digest


@pytest.mark.skipif(os.geteuid() != 0, reason="the default for root")
def test_default_cache_dir_of_root_and_of_a_user(ossb):
    """Without --cache-dir or $OSSB_CACHE_DIR: /var/lib/ossb for root (as buildah keeps
    /var/lib/containers), $XDG_CACHE_HOME/ossb for other users (ossb prune names it)."""
    env = {k: v for k, v in ossb.env.items() if k != "OSSB_CACHE_DIR"}
    r = subprocess.run([str(ossb.binary), "prune", "--keep-storage", "100g"], env=env, capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip().endswith(" in /var/lib/ossb"), r
    xdg = tempfile.mkdtemp(prefix="ossb-xdg-")  # where uid 65534 can reach it
    try:
        os.chown(xdg, 65534, 65534)
        user_env = dict(env, XDG_CACHE_HOME=xdg)
        r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", str(ossb.binary), "prune"],
                           env=user_env, capture_output=True, text=True)
        assert r.returncode == 0 and r.stdout.strip().endswith(f" in {xdg}/ossb"), r
    finally:
        shutil.rmtree(xdg)


@pytest.mark.parametrize("args,needle", [
    (["--no-such-flag"], "--no-such-flag"),
    (["--output", "type=tarball,dest=x"], "tarball"),
    (["--output", "type=oci"], "dest"),
    (["--output", "type=oci,dest=x,colour=red"], "colour"),
    (["--compression-level", "high"], "high"),
    (["--platform", "linux/amd64,linux/arm64"], "linux/amd64,linux/arm64"),
    (["--log-format", "xml"], "xml"),
])
def test_usage_errors(ossb, context, args, needle):
    ctx = simple_ctx(context)
    r = ossb.build(ctx, *args)
    assert_failed(r, 2, needle, dest=[r.layout_dir])


def test_option_missing_its_value(ossb, context):
    ctx = simple_ctx(context)
    lay = ossb.fresh("layout")
    r = ossb.run("build", "-o", f"type=oci,dest={lay}", ctx, "--target")
    assert_failed(r, 2, "--target", dest=[lay])


def test_context_arity(ossb, context):
    ctx = simple_ctx(context)
    r = ossb.run("build")
    assert_failed(r, 2, "CONTEXT")
    r = ossb.run("build", ctx, ctx)
    assert_failed(r, 2)
    r = ossb.run("frobnicate")
    assert_failed(r, 2, "frobnicate")


def test_several_outputs_in_one_build(ossb, context):
    ctx = simple_ctx(context)
    d, t, k = ossb.path("o-dir"), ossb.path("o.tar"), ossb.path("d.tar")
    r = ossb.run("build", "-t", "multi:1", "-o", f"type=oci,dest={d}", "-o", f"type=oci,dest={t}",
                 "-o", f"type=docker,dest={k}", ctx)
    assert r.returncode == 0, str(r)
    assert Layout(d).image("multi:1").digest == r.digest
    assert t.is_file() and k.is_file()


def test_output_into_non_layout_directory_fails(ossb, context):
    """An existing non-empty directory that is no OCI layout is not overwritten."""
    ctx = simple_ctx(context)
    dest = ossb.path("precious")
    dest.mkdir()
    (dest / "keep.txt").write_text("mine\n")
    r = ossb.run("build", "-o", f"type=oci,dest={dest}", ctx)
    assert r.returncode != 0, str(r)
    assert "precious" in r.stderr
    assert sorted(p.name for p in dest.iterdir()) == ["keep.txt"]
    assert (dest / "keep.txt").read_text() == "mine\n"
