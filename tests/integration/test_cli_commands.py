"""The other commands and the global options: `ossb debug parse`, `ossb version`, `ossb` with
no or an unknown command, --log-level and --log-format before the command."""
import json

DF = "# syntax=docker/dockerfile:1\nARG B=scratch\nFROM ${B} AS one\nCOPY --chmod=644 <<EOF /x\nhi\nEOF\nCMD [\"a\"]\n"


def test_debug_parse_json(ossb):
    f = ossb.path("Dockerfile")
    f.write_text(DF)
    r = ossb.run("debug", "parse", f)
    assert r.returncode == 0, str(r)
    doc = json.loads(r.stdout)
    text = json.dumps(doc)
    assert "docker/dockerfile:1" in text, "the syntax directive is recorded"
    for word in ("from", "copy", "cmd", "--chmod=644", "hi\\n"):
        assert word in text, f"{word} missing from the parse: {text}"


def test_debug_parse_buildkit_dump_and_stdin(ossb):
    r = ossb.run("debug", "parse", "--buildkit-dump", "-", input=DF.encode())
    assert r.returncode == 0, str(r)
    lines = r.stdout.splitlines()
    assert lines[0].startswith("(arg") and any(l.startswith("(from") for l in lines), r.stdout
    assert any(l.startswith("(cmd") for l in lines), r.stdout


def test_debug_parse_errors(ossb):
    bad = ossb.path("Bad")
    bad.write_text("FROM scratch\nNOPE x\n")
    r = ossb.run("debug", "parse", bad)
    assert r.returncode == 2 and f"{bad}:2" in r.stderr and "NOPE" in r.stderr.upper(), str(r)
    r = ossb.run("debug", "parse", ossb.path("missing"))
    assert r.returncode == 2 and "missing" in r.stderr, str(r)
    r = ossb.run("debug", "nothing")
    assert r.returncode == 2 and "nothing" in r.stderr, str(r)
    r = ossb.run("debug", "parse")
    assert r.returncode == 2, str(r)
    r = ossb.run("debug", "parse", bad, "extra")
    assert r.returncode == 2 and "extra" in r.stderr, str(r)
    r = ossb.run("debug")
    assert r.returncode == 2 and "Usage" in r.stderr, str(r)
    r = ossb.run("debug", "--help")
    assert r.returncode == 0 and "debug parse" in r.stdout, str(r)
    r = ossb.run("debug", "parse", "--help")
    assert r.returncode == 0 and "buildkit-dump" in r.stdout, str(r)


def test_version(ossb):
    r = ossb.run("version")
    assert r.returncode == 0 and r.stdout.startswith("ossb ") and "platform: linux/" in r.stdout, str(r)
    r = ossb.run("--version")
    assert r.returncode == 0 and r.stdout.startswith("ossb "), str(r)
    r = ossb.run("version", "--help")
    assert r.returncode == 0 and "Usage: ossb version" in r.stdout, str(r)
    r = ossb.run("version", "extra")
    assert r.returncode == 2 and "extra" in r.stderr, str(r)


def test_no_and_unknown_command(ossb):
    r = ossb.run()
    assert r.returncode == 2 and "Usage" in r.stderr, str(r)
    r = ossb.run("frobnicate")
    assert r.returncode == 2 and "frobnicate" in r.stderr, str(r)
    r = ossb.run("help")
    assert r.returncode == 0 and "Commands" in r.stdout, str(r)


def test_global_log_options(ossb):
    f = ossb.path("Bad")
    f.write_text("FROM scratch\nNOPE x\n")
    r = ossb.run("--log-format=json", "--log-level", "debug", "debug", "parse", f)
    assert r.returncode == 2, str(r)
    events = [json.loads(l) for l in r.stderr.splitlines() if l.strip()]
    assert events and events[-1]["level"] == "error" and "NOPE" in events[-1]["msg"].upper(), r.stderr
    r = ossb.run("--log-format", "text", "--log-level=warn", "version")
    assert r.returncode == 0, str(r)
    for bad in (["--log-level", "loud", "version"], ["--log-format=xml", "version"], ["--log-level"]):
        r = ossb.run(*bad)
        assert r.returncode == 2, str(r)


def test_build_option_errors(ossb, context):
    ctx = context({"a.txt": "a"}, df="FROM scratch\nCOPY a.txt /\n")
    cases = [
        (["--output", "type=tarball,dest=x"], "tarball"),
        (["--output", "type=oci"], "dest="),
        (["--output", "type=oci,dest=x,tar=maybe"], "tar="),
        (["--output", "type=oci,dest=x,color=red"], "color"),
        (["--output", "type=oci,bogus"], "type=oci,bogus"),
        (["--progress", "loud"], "loud"),
        (["--log-format", "xml"], "xml"),
        (["--compression", "lz4"], "lz4"),
        (["--compression-level", "99"], "99"),
        (["--platform", "linux/amd64,linux/arm64"], "several platforms"),
        (["--platform", "windows/amd64"], "windows/amd64"),
        (["--platform", "linux"], "linux"),
        (["--label", "novalue"], "novalue"),
    ]
    for args, word in cases:
        r = ossb.run("build", *args, ctx)
        assert r.returncode == 2 and word in r.stderr, str(r)
    r = ossb.run("build", ctx, "--tag")
    assert r.returncode == 2 and "requires a value" in r.stderr, str(r)
    r = ossb.run("build", ctx, ctx)
    assert r.returncode == 2 and "exactly one CONTEXT" in r.stderr, str(r)
    r = ossb.run("build")
    assert r.returncode == 2 and "CONTEXT" in r.stderr, str(r)
    r = ossb.run("build", "-f", ctx, ctx)
    assert r.returncode == 2 and "directory" in r.stderr, str(r)
    r = ossb.run("build", ossb.path("no-such-dir"))
    assert r.returncode == 2 and "no-such-dir" in r.stderr, str(r)
    r = ossb.run("build", ctx, env={"SOURCE_DATE_EPOCH": "yesterday"})
    assert r.returncode == 2 and "SOURCE_DATE_EPOCH" in r.stderr, str(r)


def test_build_zstd_uncompressed_and_tar_output(ossb, context):
    ctx = context({"a.txt": "a" * 1000}, df="FROM scratch\nCOPY a.txt /\n")
    for comp, mt in (("zstd", "+zstd"), ("uncompressed", "layer.v1.tar")):
        r = ossb.build_ok(ctx, "--compression", comp, "--compression-level", "3")
        layer = r.image.manifest["layers"][0]["mediaType"]
        assert layer.endswith(mt), layer
    out = ossb.path("img.tar")
    r = ossb.run("build", "--progress=tty", "-o", f"type=oci,dest={out},tar=true", ctx)
    assert r.returncode == 0 and out.is_file(), str(r)
    d = ossb.path("plain-dir")
    r = ossb.run("build", "--progress=plain", "-o", str(d), ctx)
    assert r.returncode == 0 and (d / "index.json").is_file() and "#1" in r.stderr, str(r)
    r = ossb.run("build", "--progress=quiet", "--platform", "linux/arm/v7", "--no-cache", ctx)
    assert r.returncode == 0 and r.stderr == "", str(r)
