"""How Dockerfile instructions and build flags map to the image config (read from the OCI
layout the build wrote)."""
import platform

import pytest

from conftest import SCRATCH_PATH

SEC = 1_000_000_000


def host_arch():
    m = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64", "i686": "386", "armv7l": "arm"}.get(m, m)


def test_env_forms_and_scoping(ossb, context):
    ctx = context(df=r"""
        FROM scratch
        ENV A=1 B=2
        ENV C=$A D="x y" E=${A}0
        ENV LEGACY spaced   value here
        ENV A=override F=$A
        ENV G=${UNSET:-dflt} H=${A:+set} I=${A:-no} J=${UNSET:+alt} K=\$A L='$A'
        """)
    img = ossb.build_ok(ctx).image
    env = img.env()
    assert env == {
        "PATH": SCRATCH_PATH[5:],
        "A": "override",
        "B": "2",
        "C": "1",
        "D": "x y",
        "E": "10",
        "LEGACY": "spaced   value here",
        "F": "1",  # an earlier pair of the same ENV is not visible to later pairs
        "G": "dflt",
        "H": "set",
        "I": "override",
        "J": "",
        "K": "$A",
        "L": "$A",
    }
    # a redefined variable keeps its place (Docker replaces in place)
    keys = [kv.split("=", 1)[0] for kv in img.cfg["Env"]]
    assert keys.index("A") < keys.index("B")
    for h in img.config["history"]:
        assert h.get("empty_layer") is True
    assert img.manifest["layers"] == []


def test_labels_and_label_flag(ossb, context):
    ctx = context(df=r"""
        FROM scratch
        ARG V=3
        LABEL a=1 "b c"="d e" version=$V
        LABEL a=2 multi="one \
        two"
        LABEL overridden=dockerfile
        """)
    img = ossb.build_ok(ctx, "--label", "cli=yes", "--label", "overridden=cli", "--label", "eq=x=y").image
    assert img.cfg["Labels"] == {
        "a": "2",
        "b c": "d e",
        "version": "3",
        "multi": "one two",
        "cli": "yes",
        "overridden": "cli",
        "eq": "x=y",
    }


def test_label_flag_without_value_is_usage_error(ossb, context):
    ctx = context(df="FROM scratch\n")
    r = ossb.build(ctx, "--label", "novalue")
    assert r.returncode == 2, str(r)
    assert "novalue" in r.stderr


def test_expose_volume_user_stopsignal_maintainer(ossb, context):
    ctx = context(df="""
        FROM scratch
        ARG P=9090
        EXPOSE 80 53/udp 8000-8001
        EXPOSE $P/TCP 80/tcp
        VOLUME ["/data", "/logs"]
        VOLUME /cache /tmp/v2
        USER app:staff
        STOPSIGNAL SIGKILL
        MAINTAINER OSSB Tests <tests@example.invalid>
        """)
    img = ossb.build_ok(ctx).image
    assert img.cfg["ExposedPorts"] == {"80/tcp": {}, "53/udp": {}, "8000/tcp": {}, "8001/tcp": {}, "9090/tcp": {}}
    assert img.cfg["Volumes"] == {"/data": {}, "/logs": {}, "/cache": {}, "/tmp/v2": {}}
    assert img.cfg["User"] == "app:staff"
    assert img.cfg["StopSignal"] == "SIGKILL"
    assert img.config["author"] == "OSSB Tests <tests@example.invalid>"
    # none of these makes a layer (VOLUME does not create its directories)
    assert img.manifest["layers"] == []
    assert all(h.get("empty_layer") for h in img.config["history"])


def test_invalid_expose_and_stopsignal(ossb, context):
    for bad, word in (("EXPOSE 80/bogus", "80/bogus"), ("STOPSIGNAL SIGNOPE", "SIGNOPE")):
        ctx = context(df=f"FROM scratch\n{bad}\n")
        r = ossb.build(ctx)
        assert r.returncode == 2, str(r)
        assert word in r.stderr and "Dockerfile:2" in r.stderr, str(r)


def test_workdir_joins_and_creates_directories(ossb, context):
    """WORKDIR joins relative paths, creates missing directories (0755, owned by USER).
    As BuildKit (and the lead's commit 0b842a6 "WORKDIR/COPY layers always"), every WORKDIR
    other than / makes a layer: an existing directory gives a layer without entries."""
    ctx = context(files={"f.txt": "f\n"}, df="""
        FROM scratch
        WORKDIR /a
        WORKDIR b
        WORKDIR ../c
        COPY f.txt rel.txt
        WORKDIR /a
        WORKDIR /
        """)
    r = ossb.build_ok(ctx)
    img = r.image
    assert img.cfg["WorkingDir"] == "/"
    fs = img.rootfs()
    for d in ("a", "a/b", "a/c"):
        assert d in fs and fs[d].info.isdir(), f"WORKDIR did not create /{d}: {sorted(fs)}"
        assert fs[d].mode == 0o755 and fs[d].owner == (0, 0)
    assert fs["a/c/rel.txt"].data == b"f\n"  # a relative COPY destination joins WORKDIR
    hist = [(h["created_by"], bool(h.get("empty_layer"))) for h in img.config["history"]]
    workdirs = [(c, e) for c, e in hist if c.startswith("WORKDIR")]
    assert workdirs == [("WORKDIR /a", False), ("WORKDIR /a/b", False), ("WORKDIR /a/c", False),
                        ("WORKDIR /a", False), ("WORKDIR /", True)], hist
    assert len(img.manifest["layers"]) == 5
    names = [{n for n, _, _ in img.layer_entries(i)} - {""} for i in range(5)]
    assert names[0] == {"a"}
    assert names[1] - {"a"} == {"a/b"}
    assert names[2] - {"a"} == {"a/c"}
    assert names[4] == set(), f"WORKDIR of an existing directory changed {names[4]}"


def test_workdir_owned_by_user(ossb, context):
    ctx = context(df="""
        FROM scratch
        USER 1234:5678
        WORKDIR /home/u
        """)
    fs = ossb.build_ok(ctx).image.rootfs()
    assert fs["home/u"].owner == (1234, 5678)


def test_cmd_entrypoint_forms_and_shell(ossb, context):
    ctx = context(df="""
        FROM scratch AS execform
        CMD ["a", "b c"]
        ENTRYPOINT ["/e", "x"]

        FROM scratch AS shellform
        CMD echo "hi there" $HOME
        ENTRYPOINT exec /bin/app

        FROM scratch AS withshell
        SHELL ["/bin/bash", "-ec"]
        CMD run it
        ENTRYPOINT ["/only"]
        """)
    img = ossb.build_ok(ctx, "--target", "execform").image
    assert img.cfg["Cmd"] == ["a", "b c"]
    assert img.cfg["Entrypoint"] == ["/e", "x"]  # CMD set in this stage survives ENTRYPOINT
    img = ossb.build_ok(ctx, "--target", "shellform").image
    assert img.cfg["Cmd"] == ["/bin/sh", "-c", 'echo "hi there" $HOME']
    assert img.cfg["Entrypoint"] == ["/bin/sh", "-c", "exec /bin/app"]
    img = ossb.build_ok(ctx, "--target", "withshell").image
    assert img.cfg["Shell"] == ["/bin/bash", "-ec"]
    assert img.cfg["Cmd"] == ["/bin/bash", "-ec", "run it"]
    assert img.cfg["Entrypoint"] == ["/only"]


def test_entrypoint_resets_inherited_cmd(ossb, context):
    ctx = context(df="""
        FROM scratch AS parent
        CMD ["inherited"]
        FROM parent AS child
        ENTRYPOINT ["/bin/false"]
        FROM parent AS keeps
        LABEL x=y
        """)
    img = ossb.build_ok(ctx, "--target", "child").image
    assert img.cfg["Entrypoint"] == ["/bin/false"]
    assert not img.cfg.get("Cmd"), f"inherited CMD survived ENTRYPOINT: {img.cfg.get('Cmd')}"
    img = ossb.build_ok(ctx, "--target", "keeps").image
    assert img.cfg["Cmd"] == ["inherited"]


def test_healthcheck(ossb, context):
    ctx = context(df="""
        FROM scratch AS full
        HEALTHCHECK --interval=30s --timeout=5s --start-period=1m30s --retries=3 \\
            CMD ["/bin/check", "--quick"]
        FROM scratch AS shell
        HEALTHCHECK --interval=1.5s CMD /bin/check shell form
        FROM full AS none
        HEALTHCHECK NONE
        """)
    img = ossb.build_ok(ctx, "--target", "full").image
    assert img.cfg["Healthcheck"] == {
        "Test": ["CMD", "/bin/check", "--quick"],
        "Interval": 30 * SEC,
        "Timeout": 5 * SEC,
        "StartPeriod": 90 * SEC,
        "Retries": 3,
    }
    img = ossb.build_ok(ctx, "--target", "shell").image
    assert img.cfg["Healthcheck"] == {"Test": ["CMD-SHELL", "/bin/check shell form"], "Interval": 1_500_000_000}
    img = ossb.build_ok(ctx, "--target", "none").image
    assert img.cfg["Healthcheck"]["Test"] == ["NONE"]


def test_healthcheck_bad_duration(ossb, context):
    ctx = context(df="FROM scratch\nHEALTHCHECK --interval=soon CMD true\n")
    r = ossb.build(ctx)
    assert r.returncode == 2, str(r)
    assert "soon" in r.stderr and "Dockerfile:2" in r.stderr


def test_onbuild_stored_and_triggered(ossb, context):
    ctx = context(files={"trig.txt": "triggered\n"}, df="""
        FROM scratch AS base
        ONBUILD COPY trig.txt /onbuild.txt
        ONBUILD LABEL fired=yes
        FROM base AS child
        LABEL child=1
        """)
    img = ossb.build_ok(ctx, "--target", "base").image
    assert img.cfg["OnBuild"] == ["COPY trig.txt /onbuild.txt", "LABEL fired=yes"]
    assert img.manifest["layers"] == []  # triggers do not run in the stage that declares them
    assert "fired" not in (img.cfg.get("Labels") or {})
    img = ossb.build_ok(ctx, "--target", "child").image
    assert not img.cfg.get("OnBuild"), f"child kept the triggers: {img.cfg.get('OnBuild')}"
    assert img.cfg["Labels"] == {"fired": "yes", "child": "1"}
    fs = img.rootfs()
    assert fs["onbuild.txt"].data == b"triggered\n"
    assert len(img.manifest["layers"]) == 1


def test_args_global_stage_buildarg_env(ossb, context):
    ctx = context(df="""
        ARG BASE=base
        ARG V=global
        ARG ONLYGLOBAL=g
        FROM scratch AS base
        LABEL stage=base
        FROM ${BASE} AS final
        ARG V
        ARG OVER=default
        ARG FROMENV
        ARG UNSETENV
        ARG DERIVED=${V}-${OVER}
        LABEL v=$V over=$OVER fromenv=$FROMENV unset=${UNSETENV:-unset} derived=$DERIVED \\
              onlyglobal=${ONLYGLOBAL:-invisible}
        """)
    r = ossb.build_ok(ctx, "--build-arg", "OVER=cli", "--build-arg", "FROMENV", "--build-arg", "UNSETENV",
                      env={"FROMENV": "from-env", "UNSETENV": None})
    img = r.image
    assert img.cfg["Labels"] == {
        "stage": "base",  # FROM ${BASE} resolved the global ARG to the stage `base`
        "v": "global",  # redeclared ARG without a value takes the global value
        "over": "cli",
        "fromenv": "from-env",  # bare --build-arg K takes $K from the environment
        "unset": "unset",  # ... and stays unset when $K is not set
        "derived": "global-cli",
        "onlyglobal": "invisible",  # a global ARG not redeclared in the stage is not visible
    }
    assert set(img.env()) == {"PATH"}, "ARG values must not end up in the config's Env"


def test_unused_build_arg_warns(ossb, context):
    ctx = context(df="FROM scratch\nARG USED\nLABEL u=$USED\n")
    r = ossb.build_ok(ctx, "--build-arg", "USED=1", "--build-arg", "NOTUSED=2")
    assert "NOTUSED" in r.stderr
    assert r.image.cfg["Labels"] == {"u": "1"}


def test_automatic_platform_args(ossb, context):
    ctx = context(df="""
        FROM scratch
        ARG TARGETARCH
        ARG TARGETPLATFORM
        ARG TARGETOS
        ARG BUILDARCH
        LABEL arch=$TARGETARCH platform=$TARGETPLATFORM os=$TARGETOS build=$BUILDARCH \\
              undeclared=${BUILDPLATFORM:-none}
        """)
    img = ossb.build_ok(ctx).image
    arch = host_arch()
    assert img.config["architecture"] == arch and img.config["os"] == "linux"
    assert img.cfg["Labels"] == {"arch": arch, "platform": f"linux/{arch}", "os": "linux", "build": arch,
                                 "undeclared": "none"}
    img = ossb.build_ok(ctx, "--platform", "linux/arm64").image
    assert img.config["architecture"] == "arm64"
    assert img.config["os"] == "linux"
    assert img.cfg["Labels"]["arch"] == "arm64"
    assert img.cfg["Labels"]["platform"] == "linux/arm64"
    assert img.cfg["Labels"]["build"] == arch


def test_platform_arm_variant(ossb, context):
    ctx = context(df="FROM scratch\nARG TARGETVARIANT\nLABEL v=$TARGETVARIANT\n")
    img = ossb.build_ok(ctx, "--platform", "linux/arm/v6").image
    assert img.config["architecture"] == "arm"
    assert img.config.get("variant") == "v6"
    assert img.cfg["Labels"]["v"] == "v6"


def test_bad_platform(ossb, context):
    ctx = context(df="FROM scratch\n")
    for bad in ("linux", "windows/amd64"):
        r = ossb.build(ctx, "--platform", bad)
        assert r.returncode == 2, str(r)
        assert bad in r.stderr


def test_history_and_diff_ids(ossb, context):
    ctx = context(files={"a.txt": "a\n", "b.txt": "b\n"}, df="""
        FROM scratch
        LABEL l=1
        COPY a.txt /a.txt
        ENV E=1
        COPY b.txt /b/
        CMD ["x"]
        """)
    img = ossb.build_ok(ctx).image
    hist = img.config["history"]
    assert [h["created_by"].split()[0] for h in hist] == ["LABEL", "COPY", "ENV", "COPY", "CMD"]
    assert [bool(h.get("empty_layer")) for h in hist] == [True, False, True, False, True]
    assert len(img.config["rootfs"]["diff_ids"]) == 2 == len(img.manifest["layers"])
    for h in hist:
        assert h["created"] == img.config["created"]
    assert {n for n, _, _ in img.layer_entries(0)} - {""} == {"a.txt"}
    assert {n for n, _, _ in img.layer_entries(1)} - {""} == {"b", "b/b.txt"}


def test_compression_options(ossb, context):
    ctx = context(files={"a.txt": "a" * 10000}, df="FROM scratch\nCOPY a.txt /\n")
    for algo, mt in (("gzip", "application/vnd.oci.image.layer.v1.tar+gzip"),
                     ("zstd", "application/vnd.oci.image.layer.v1.tar+zstd"),
                     ("uncompressed", "application/vnd.oci.image.layer.v1.tar")):
        if algo == "zstd":
            import shutil
            if not shutil.which("zstd"):
                continue
        img = ossb.build_ok(ctx, "--compression", algo).image
        assert img.manifest["layers"][0]["mediaType"] == mt
        assert img.rootfs()["a.txt"].data == b"a" * 10000
    r = ossb.build(ctx, "--compression", "lzma")
    assert r.returncode == 2 and "lzma" in r.stderr, str(r)


def test_no_layers_image_is_valid(ossb, context, tmp_path):
    """An image of metadata only: empty layers and diff_ids lists, loadable by skopeo."""
    import shutil
    ctx = context(df="FROM scratch\nLABEL only=metadata\n")
    r = ossb.build_ok(ctx, tag="meta:1")
    assert r.image.manifest["layers"] == []
    assert r.image.config["rootfs"] == {"type": "layers", "diff_ids": []}
    if shutil.which("skopeo"):
        from conftest import run_tool
        run_tool(["skopeo", "inspect", f"oci:{r.layout_dir}:meta:1"])
