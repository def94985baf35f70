"""Mirrors: --registry-mirror (mirrors of docker.io: "busybox:1" is docker.io/library/busybox:1,
asked of the mirror as library/busybox) and registries.conf [[registry.mirror]] entries (for
any prefix), tried in order, the origin last; a mirror missing the image or down is skipped.
Pushes never go to mirrors.  There is no network here, so docker.io itself is never reached:
the docker.io tests always find the image on a mirror."""
import socket

import pytest

import images
from registry import ossb_cmd

pytestmark = pytest.mark.usefixtures("registry_env")

PLAIN = images.image_plain()
ORIGIN_ONLY = images.make_image([[images.F("origin.txt", "only at the origin\n")]])


@pytest.fixture(scope="module")
def layout(tmp_path_factory):
    return images.write_layout(tmp_path_factory.mktemp("mirror") / "lay", {"plain": PLAIN, "origin": ORIGIN_ONLY})


@pytest.fixture(scope="module")
def mirror(module_registry_factory, layout):
    reg = module_registry_factory(name="mirror")
    reg.push_layout(layout, "plain", "library/busybox:1")
    reg.push_layout(layout, "plain", "busybox:1")  # for mirrors of the local origin below
    return reg


@pytest.fixture(scope="module")
def empty_mirror(module_registry_factory):
    return module_registry_factory(name="empty-mirror")


@pytest.fixture(scope="module")
def origin(module_registry_factory, layout):
    reg = module_registry_factory(name="origin")
    reg.push_layout(layout, "plain", "busybox:1")
    reg.push_layout(layout, "origin", "busybox:origin-only")
    return reg


@pytest.fixture(scope="module")
def dead_host():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


def pull(ossb, ref, *args, **kw):
    return ossb_cmd(ossb, "pull", *args, ref, **kw)


def assert_pulled(r, img=PLAIN):
    assert r.returncode == 0, str(r)
    assert r.digest == img.digest


def served_manifest(reg, repo, tag, since=0, status=200):
    return [a for a in reg.requests("GET", rf"^/v2/{repo}/manifests/{tag}$", since=since) if a.status == status]


def conf(ossb, text):
    f = ossb.path("registries.conf")
    f.write_text(text)
    return f


# --- --registry-mirror ------------------------------------------------------------------------


@pytest.mark.parametrize("ref", ["busybox:1", "library/busybox:1", "docker.io/library/busybox:1",
                                 "index.docker.io/library/busybox:1"])
def test_registry_mirror(ossb, mirror, ref):
    mark = mirror.mark()
    assert_pulled(pull(ossb, ref, "--registry-mirror", mirror.host))
    assert served_manifest(mirror, "library/busybox", "1", since=mark)


def test_registry_mirror_url_form(ossb, mirror):
    assert_pulled(pull(ossb, "busybox:1", "--registry-mirror", f"http://{mirror.host}"))


def test_registry_mirror_by_digest(ossb, mirror):
    assert_pulled(pull(ossb, f"busybox@{PLAIN.digest}", "--registry-mirror", mirror.host))


def test_mirrors_in_order_missing_skipped(ossb, mirror, empty_mirror):
    m1, m2 = empty_mirror.mark(), mirror.mark()
    r = pull(ossb, "busybox:1", "--registry-mirror", empty_mirror.host, "--registry-mirror", mirror.host)
    assert_pulled(r)
    assert served_manifest(empty_mirror, "library/busybox", "1", since=m1, status=404), "the first mirror was not asked"
    assert served_manifest(mirror, "library/busybox", "1", since=m2)


def test_mirror_down_skipped(ossb, mirror, dead_host):
    assert_pulled(pull(ossb, "busybox:1", "--registry-mirror", dead_host, "--registry-mirror", mirror.host))


def test_first_mirror_wins(ossb, mirror, empty_mirror):
    m = empty_mirror.mark()
    assert_pulled(pull(ossb, "busybox:1", "--registry-mirror", mirror.host, "--registry-mirror", empty_mirror.host))
    assert empty_mirror.requests(since=m) == [], "the second mirror was asked although the first had the image"


def test_build_from_docker_hub_name_via_mirror(ossb, mirror, context):
    ctx = context({"a.txt": "a\n"}, df="FROM busybox:1\nCOPY a.txt /a.txt\n")
    r = ossb.build_ok(ctx, "--registry-mirror", mirror.host)
    assert r.image.manifest["layers"][0]["digest"] == PLAIN.layer_digests()[0]


def test_registry_mirror_not_for_other_registries(ossb, origin, mirror):
    """--registry-mirror only mirrors docker.io."""
    m = mirror.mark()
    assert_pulled(pull(ossb, origin.ref("busybox:1"), "--registry-mirror", mirror.host))
    assert mirror.requests(since=m) == []


# --- registries.conf ----------------------------------------------------------------------


def test_registries_conf_docker_io_mirror(ossb, mirror):
    f = conf(ossb, f'[[registry]]\nprefix = "docker.io"\nlocation = "docker.io"\n\n'
                   f'[[registry.mirror]]\nlocation = "{mirror.host}"\ninsecure = true\n')
    assert_pulled(pull(ossb, "busybox:1", "--registries-conf", f))


def test_registries_conf_mirror_serves(ossb, origin, mirror):
    f = conf(ossb, f'unqualified-search-registries = ["docker.io"]\n\n[[registry]]\nlocation = "{origin.host}"\n\n'
                   f'[[registry.mirror]]\nlocation = "{mirror.host}"\n')
    mo, mm = origin.mark(), mirror.mark()
    assert_pulled(pull(ossb, origin.ref("busybox:1"), "--registries-conf", f))
    assert served_manifest(mirror, "busybox", "1", since=mm)
    assert origin.blob_gets(since=mo) == [], "blobs came from the origin although the mirror has them"


def test_registries_conf_mirror_missing_falls_back(ossb, origin, mirror):
    f = conf(ossb, f'[[registry]]\nlocation = "{origin.host}"\n[[registry.mirror]]\nlocation = "{mirror.host}"\n')
    mo, mm = origin.mark(), mirror.mark()
    assert_pulled(pull(ossb, origin.ref("busybox:origin-only"), "--registries-conf", f), ORIGIN_ONLY)
    assert served_manifest(mirror, "busybox", "origin-only", since=mm, status=404)
    assert served_manifest(origin, "busybox", "origin-only", since=mo)


def test_registries_conf_mirror_down_falls_back(ossb, origin, dead_host):
    f = conf(ossb, f'[[registry]]\nlocation = "{origin.host}"\n[[registry.mirror]]\nlocation = "{dead_host}"\n')
    assert_pulled(pull(ossb, origin.ref("busybox:1"), "--registries-conf", f))


def test_registries_conf_prefix_with_location(ossb, origin):
    """prefix "example.test/team" served from the origin's location."""
    f = conf(ossb, f'[[registry]]\nprefix = "example.test/team"\nlocation = "{origin.host}"\n')
    assert_pulled(pull(ossb, "example.test/team/busybox:1", "--registries-conf", f))


def test_push_ignores_mirrors(ossb, origin, mirror, tmp_path):
    f = conf(ossb, f'[[registry]]\nlocation = "{origin.host}"\n[[registry.mirror]]\nlocation = "{mirror.host}"\n')
    lay = images.write_layout(tmp_path / "lay", {"t": ORIGIN_ONLY})
    mm = mirror.mark()
    r = ossb_cmd(ossb, "push", "--registries-conf", f, lay, origin.ref("pushed-here:1"))
    assert r.returncode == 0, str(r)
    assert origin.manifest_digest("pushed-here:1") == ORIGIN_ONLY.digest
    assert mirror.requests(since=mm) == [], "the push talked to the mirror"


def test_blocked_registry(ossb, origin):
    f = conf(ossb, f'[[registry]]\nlocation = "{origin.host}"\nblocked = true\n')
    m = origin.mark()
    r = pull(ossb, origin.ref("busybox:1"), "--registries-conf", f)
    assert r.returncode == 3, str(r)
    assert "blocked" in r.stderr.lower() and origin.host in r.stderr, str(r)
    assert origin.requests(since=m) == []


def test_registries_conf_syntax_error(ossb, origin):
    f = conf(ossb, '[[registry]]\nlocation = "unterminated\n')
    r = pull(ossb, origin.ref("busybox:1"), "--registries-conf", f)
    assert r.returncode in (2, 3), str(r)
    assert f"{f}:2" in r.stderr or str(f) in r.stderr, str(r)
