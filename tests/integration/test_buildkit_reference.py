"""ossb against BuildKit: build the reference Dockerfiles of tests/reference (every instruction
except RUN) and compare with what Docker's BuildKit built from them (recorded in
tests/reference/buildkit-out by tests/reference/record-buildkit.sh): the same files (type,
mode, owner, size, content, link target, xattrs), the same image config field for field, the
same history.  The layer tars are not compared byte for byte (libarchive and Go's archive/tar
encode the same headers differently)."""
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
REF = REPO / "tests" / "reference"


def compare_images_py():
    for c in (os.environ.get("COMPARE_IMAGES"), REPO.parent / "shared" / "bench" / "compare-images.py",
              "/work/shared/bench/compare-images.py"):
        if c and Path(c).is_file():
            return str(c)
    return None


CASES = [("every-instruction", "final"), ("every-instruction", "base"), ("edge-cases", "minimal")]


@pytest.mark.parametrize("case,target", CASES)
def test_same_as_buildkit(ossb, case, target):
    cmp = compare_images_py()
    if not cmp:
        pytest.skip("compare-images.py (shared/bench) not found next to the repository")
    if os.geteuid() != 0:
        pytest.skip("prepare-context.sh sets owners: needs root")
    ctx = ossb.path("ctx")
    p = subprocess.run([str(REF / "prepare-context.sh"), str(REF / case), str(ctx)], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    out = ossb.path("image.tar")
    r = ossb.run("build", "-f", REF / case / "Dockerfile", "--target", target, "--output",
                 f"type=oci,dest={out}", ctx)
    assert r.returncode == 0, str(r)
    env = dict(os.environ, COMPARE_IMAGES=cmp, TMPDIR=str(ossb.path("tmp")))
    p = subprocess.run([str(REF / "compare.sh"), "--loose", str(out), str(REF / "buildkit-out" / case / target)],
                       capture_output=True, text=True, env=env)
    summary = p.stdout[p.stdout.find("== summary"):]
    assert "== summary" in p.stdout, p.stdout + p.stderr
    assert "files: identical" in summary, p.stdout
    assert "config: same" in summary, p.stdout
    assert "history: same" in summary, p.stdout


def test_from_registry_same_as_buildkit(ossb, registry_factory):
    """The issue's "done when": `ossb build --push` of a Dockerfile FROM a base in a local
    registry (with COPY, COPY --from=<image> and the base's ONBUILD trigger) gives, read back
    from the registry with skopeo, the files, config and history BuildKit built from it."""
    cmp = compare_images_py()
    if not cmp:
        pytest.skip("compare-images.py (shared/bench) not found next to the repository")
    if os.geteuid() != 0:
        pytest.skip("prepare-context.sh sets owners: needs root")
    case = REF / "from-registry"
    reg = registry_factory()
    layout = ossb.path("base-layout")
    subprocess.run(["python3", str(case / "make-base.py"), str(layout)], check=True, capture_output=True)
    base = reg.ref("ossb-ref-base/from-registry:1")
    reg.push_layout(layout, "1", "ossb-ref-base/from-registry:1")
    ctx = ossb.path("ctx")
    p = subprocess.run([str(REF / "prepare-context.sh"), str(case), str(ctx)], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    dockerfile = ossb.path("Dockerfile")
    dockerfile.write_text((case / "Dockerfile").read_text().replace("@BASE@", base))
    app = reg.ref("app:1")
    r = ossb.run("build", "--push", "-t", app, "-f", dockerfile, ctx)
    assert r.returncode == 0, str(r)
    digest = r.stdout.strip().splitlines()[-1]
    assert digest == reg.manifest_digest("app:1")
    pulled = ossb.path("pulled")
    subprocess.run(["skopeo", "copy", "-q", "--src-tls-verify=false", f"docker://{app}", f"oci:{pulled}:1"],
                   check=True, capture_output=True)
    env = dict(os.environ, COMPARE_IMAGES=cmp, TMPDIR=str(ossb.path("tmp")))
    p = subprocess.run([str(REF / "compare.sh"), "--loose", "--tag", "1", str(pulled),
                        str(REF / "buildkit-out" / "from-registry" / "default")],
                       capture_output=True, text=True, env=env)
    summary = p.stdout[p.stdout.find("== summary"):]
    assert "== summary" in summary, p.stdout + p.stderr
    assert "files: identical" in summary, p.stdout
    assert "config: same" in summary, p.stdout
    assert "history: same" in summary, p.stdout
