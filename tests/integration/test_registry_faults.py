"""Pulls and pushes through faultproxy.py, a proxy between ossb and the registry that drops
connections mid-blob, answers 500/503/429, truncates bodies and serves wrong bytes.  Every
operation either succeeds after retrying or fails with exit 3 and a clear message, and the
content store never holds a blob whose bytes do not match its name."""
import socket
import time

import pytest

import images
from faultproxy import Fault
from registry import assert_store_clean, ossb_cmd, store_blobs, verify_store

pytestmark = pytest.mark.usefixtures("registry_env")


@pytest.fixture(scope="module")
def seeded(seeded_registry):
    return seeded_registry


@pytest.fixture
def proxy(seeded, fault_proxy):
    return fault_proxy(seeded.registry)


@pytest.fixture(scope="module")
def big_layer(seeded):
    """The busybox layer (about 1 MB gzip): (digest, size)."""
    img = seeded.image("busybox:1")
    d = img.layer_digests()[0]
    return d, len(img.blobs[d])


def pull(ossb, proxy, name="busybox:1", *args, **kw):
    return ossb_cmd(ossb, "pull", *args, f"{proxy.host}/{name}", **kw)


def assert_pulled(ossb, r, seeded, name="busybox:1"):
    assert r.returncode == 0, str(r)
    assert r.digest == seeded.digest(name)
    img = seeded.image(name)
    assert set(img.blobs) <= store_blobs(ossb.cache)
    assert_store_clean(ossb)


# --- retried and resumed ------------------------------------------------------------------


def test_drop_mid_blob_resumes_with_range(ossb, seeded, proxy, big_layer):
    d, size = big_layer
    cut = size // 3
    proxy.add(Fault("drop", method="GET", path=f"/blobs/{d}$", after=cut))
    r = pull(ossb, proxy)
    assert_pulled(ossb, r, seeded)
    gets = proxy.requests("GET", f"/blobs/{d}$")
    assert len(gets) >= 2, proxy.summary()
    ranged = [g for g in gets[1:] if g.range]
    assert ranged, f"the download was restarted, not resumed with Range:\n{proxy.summary()}"
    start = int(ranged[0].range.split("=")[1].split("-")[0])
    assert 0 < start <= cut, f"resumed at {start}, {cut} bytes had arrived"


def test_truncated_body_retried(ossb, seeded, proxy, big_layer):
    d, _ = big_layer
    proxy.add(Fault("truncate", method="GET", path=f"/blobs/{d}$", after=4096))
    r = pull(ossb, proxy)
    assert_pulled(ossb, r, seeded)
    assert proxy.count("GET", f"/blobs/{d}$") >= 2


def test_503_twice_then_ok(ossb, seeded, proxy, big_layer):
    d, _ = big_layer
    proxy.add(Fault("status", method="GET", path=f"/blobs/{d}$", status=503, times=2))
    r = pull(ossb, proxy)
    assert_pulled(ossb, r, seeded)
    assert proxy.count("GET", f"/blobs/{d}$") == 3, proxy.summary()


def test_500_on_manifest_retried(ossb, seeded, proxy):
    proxy.add(Fault("status", method="GET", path=r"/manifests/1$", status=500, times=1))
    r = pull(ossb, proxy)
    assert_pulled(ossb, r, seeded)
    assert proxy.count("GET", r"/manifests/1$") == 2, proxy.summary()


def test_429_retry_after_honoured(ossb, seeded, proxy, big_layer):
    d, _ = big_layer
    proxy.add(Fault("status", method="GET", path=f"/blobs/{d}$", status=429, headers={"Retry-After": "1"}))
    r = pull(ossb, proxy)
    assert_pulled(ossb, r, seeded)
    gets = proxy.requests("GET", f"/blobs/{d}$")
    assert len(gets) == 2, proxy.summary()
    waited = gets[1].at - gets[0].at
    assert waited >= 0.95, f"the retry came {waited:.2f} s after a 429 with Retry-After: 1"


def test_connection_refused_by_proxy_once(ossb, seeded, proxy, big_layer):
    d, _ = big_layer
    proxy.add(Fault("refuse", method="GET", path=f"/blobs/{d}$"))
    r = pull(ossb, proxy)
    assert_pulled(ossb, r, seeded)


def test_slow_blob_still_completes(ossb, seeded, proxy, big_layer):
    d, _ = big_layer
    proxy.add(Fault("delay", method="GET", path=f"/blobs/{d}$", seconds=1.0))
    assert_pulled(ossb, pull(ossb, proxy), seeded)


# --- failures -------------------------------------------------------------------------------


def test_wrong_digest_fails_and_stores_nothing(ossb, seeded, proxy, big_layer):
    d, _ = big_layer
    proxy.add(Fault("corrupt", method="GET", path=f"/blobs/{d}$", times=None))
    out = ossb.path("out")
    r = pull(ossb, proxy, "busybox:1", "--output", f"type=oci,dest={out}")
    assert r.returncode == 3, str(r)
    assert d in r.stderr or d[7:19] in r.stderr, f"the message does not name the blob\n{r}"
    assert "digest" in r.stderr.lower(), str(r)
    assert d not in store_blobs(ossb.cache), "the corrupt blob is in the store"
    ok, bad, v = verify_store(ossb)
    assert bad == 0 and v.returncode == 0, str(v)
    assert not out.exists()
    ingest = ossb.cache / "store" / "ingest"
    assert not (ingest.is_dir() and any(ingest.iterdir())), "the bad download was left in the store's ingest dir"


def test_wrong_manifest_bytes_by_digest(ossb, seeded, proxy):
    d = seeded.digest("busybox:1")
    proxy.add(Fault("corrupt", method="GET", path=f"/manifests/{d}$", times=None, offset=10))
    r = pull(ossb, proxy, f"busybox@{d}")
    assert r.returncode == 3, str(r)
    assert "digest" in r.stderr.lower(), str(r)
    assert d not in store_blobs(ossb.cache)
    assert_store_clean(ossb)


def test_always_500_gives_up(ossb, seeded, proxy, big_layer):
    d, _ = big_layer
    proxy.add(Fault("status", method="GET", path=f"/blobs/{d}$", status=500, times=None))
    t0 = time.monotonic()
    r = pull(ossb, proxy)
    elapsed = time.monotonic() - t0
    assert r.returncode == 3, str(r)
    assert "500" in r.stderr, str(r)
    assert proxy.count("GET", f"/blobs/{d}$") >= 2, "no retry at all"
    assert elapsed < 90, f"gave up only after {elapsed:.0f} s"
    assert d not in store_blobs(ossb.cache)
    assert_store_clean(ossb)


def test_registry_down(ossb):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.monotonic()
    r = ossb_cmd(ossb, "pull", f"127.0.0.1:{port}/busybox:1")
    assert r.returncode == 3, str(r)
    assert f"127.0.0.1:{port}" in r.stderr, str(r)
    assert time.monotonic() - t0 < 90
    assert_store_clean(ossb)


def test_registry_stops_mid_pull(ossb, module_registry_factory, fault_proxy, tmp_path):
    """The proxy answers 502 once its registry is gone."""
    reg = module_registry_factory(name="short-lived")
    lay = images.write_layout(tmp_path / "lay", {"t": images.make_image([[images.F("a", "a")]])})
    reg.push_layout(lay, "t", "gone:1")
    p = fault_proxy(reg)
    reg.stop()
    r = ossb_cmd(ossb, "pull", f"{p.host}/gone:1")
    assert r.returncode == 3, str(r)
    assert p.host in r.stderr, str(r)


# --- pushes through the proxy -----------------------------------------------------------------


def push_layout(ossb, proxy, tmp_path, name, img=None):
    img = img or images.image_layered()
    lay = images.write_layout(tmp_path / f"lay-{name.replace(':', '-')}", {"t": img})
    return img, ossb_cmd(ossb, "push", lay, f"{proxy.host}/{name}")


def test_push_manifest_503_retried(ossb, seeded, proxy, tmp_path):
    proxy.add(Fault("status", method="PUT", path=r"/manifests/", status=503, times=1))
    img, r = push_layout(ossb, proxy, tmp_path, "push-503:1")
    assert r.returncode == 0, str(r)
    assert r.digest == img.digest == seeded.registry.manifest_digest("push-503:1")
    assert proxy.count("PUT", r"/manifests/") == 2


def test_push_upload_dropped(ossb, seeded, proxy, tmp_path):
    """A blob upload whose connection drops: the push succeeds after retrying (restarting the
    upload) or fails clearly; either way the registry never holds a broken image."""
    proxy.add(Fault("refuse", method="PUT", path=r"/blobs/uploads/", times=1))
    img, r = push_layout(ossb, proxy, tmp_path, "push-drop:1")
    assert r.returncode in (0, 3), str(r)
    if r.returncode == 0:
        assert seeded.registry.manifest_digest("push-drop:1") == img.digest
        for d in img.blobs:
            assert seeded.registry.has_blob("push-drop", d)
    else:
        assert proxy.host in r.stderr, str(r)
        assert not seeded.registry.has_manifest("push-drop", "1")


def test_push_blob_503_retried(ossb, seeded, proxy, tmp_path):
    proxy.add(Fault("status", method="POST", path=r"/blobs/uploads/$", status=503, times=2))
    img, r = push_layout(ossb, proxy, tmp_path, "push-post-503:1")
    assert r.returncode == 0, str(r)
    assert seeded.registry.manifest_digest("push-post-503:1") == img.digest


def test_push_always_failing(ossb, seeded, proxy, tmp_path):
    proxy.add(Fault("status", method="PUT", path=r"/manifests/", status=500, times=None))
    img, r = push_layout(ossb, proxy, tmp_path, "push-500:1")
    assert r.returncode == 3, str(r)
    assert "500" in r.stderr and proxy.host in r.stderr, str(r)
    assert not seeded.registry.has_manifest("push-500", "1")
