"""Self-tests of the registry test infrastructure (registry.py, tokenserver.py, faultproxy.py,
images.py) with skopeo, umoci and plain HTTP: no ossb involved.  When these fail, the ossb
registry tests' failures say nothing about ossb."""
import base64
import http.client
import json
import os
import subprocess
import urllib.parse

import pytest

import images
from conftest import apply_layers, need_tool
from faultproxy import Fault
from registry import CLEAN_ENV, USERS, non_loopback_ipv4, seed_busybox


def skopeo(*args, check=True):
    p = subprocess.run([need_tool("skopeo"), *map(str, args)], capture_output=True, text=True, timeout=120,
                       env=CLEAN_ENV)
    if check and p.returncode != 0:
        pytest.fail(f"skopeo {' '.join(map(str, args))} exited {p.returncode}\n{p.stderr}")
    return p


def read_layout_image(lay, ref=None):
    """(manifest, config, [uncompressed layer tars]) of the single image in an OCI layout."""
    idx = json.loads((lay / "index.json").read_text())
    m = idx["manifests"][0]
    blob = lambda d: (lay / "blobs" / "sha256" / d[7:]).read_bytes()  # noqa: E731
    man = json.loads(blob(m["digest"]))
    cfg = json.loads(blob(man["config"]["digest"]))
    raws = []
    for d in man["layers"]:
        data = blob(d["digest"])
        if d["mediaType"].endswith("gzip"):
            import gzip
            data = gzip.decompress(data)
        elif d["mediaType"].endswith("zstd"):
            data = subprocess.run(["zstd", "-dc"], input=data, capture_output=True, check=True).stdout
        raws.append(data)
    return man, cfg, raws


# --- images.py ------------------------------------------------------------------------------


def test_images_are_deterministic():
    a, b = images.image_layered(), images.image_layered()
    assert a.digest == b.digest and a.blobs == b.blobs
    z1, z2 = images.image_zstd(), images.image_zstd()
    assert z1.digest == z2.digest


def test_layered_image_applies_whiteouts():
    img = images.image_layered()
    fs = apply_layers(img.layer_tars)
    for p, data in images.LAYERED_EXPECTED.items():
        assert fs[p].data == data, p
    for p in images.LAYERED_ABSENT:
        assert p not in fs, p
    assert fs["bin/sh"].info.issym() and fs["bin/sh"].info.linkname == "busybox"
    assert fs["tmp"].mode == 0o1777


# --- plain registry + skopeo + umoci ------------------------------------------------------


@pytest.fixture(scope="module")
def seeded(seeded_registry):
    return seeded_registry


def test_seeded_registry_serves_what_was_pushed(seeded):
    reg = seeded.registry
    for name in ("busybox:1", "busybox:layered", "busybox:zstd"):
        img = seeded.image(name)
        # an OCI image pushed by skopeo keeps its manifest bytes, hence its digest
        assert seeded.digest(name) == img.digest, name
    assert reg.has_manifest("busybox", "1") and reg.has_manifest("busybox", seeded.digest("busybox:v2s2"))
    assert not reg.has_manifest("busybox", "nope")
    raw = json.loads(reg.inspect_raw("busybox:v2s2"))
    assert raw["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
    insp = json.loads(skopeo("inspect", "--tls-verify=false", f"docker://{reg.ref('busybox:1')}").stdout)
    assert insp["Digest"] == seeded.digest("busybox:1")
    assert insp["Labels"]["org.example.base"] == "busybox"


def test_access_log_lists_blob_gets(seeded, tmp_path):
    reg = seeded.registry
    mark = reg.mark()
    skopeo("copy", "-q", "--src-tls-verify=false", f"docker://{reg.ref('busybox:1')}", f"oci:{tmp_path / 'o'}:x")
    gets = reg.blob_gets(since=mark)
    img = seeded.image("busybox:1")
    got = {g.path.rsplit("/", 1)[-1] for g in gets}
    assert set(img.blobs) <= got, (got, list(img.blobs))
    assert all(g.status == 200 for g in gets)
    assert reg.requests("GET", r"/manifests/1$", since=mark)


def test_umoci_unpacks_layered_image_with_whiteouts(seeded, tmp_path):
    umoci = need_tool("umoci")
    reg = seeded.registry
    lay = tmp_path / "lay"
    skopeo("copy", "-q", "--src-tls-verify=false", f"docker://{reg.ref('busybox:layered')}", f"oci:{lay}:x")
    args = [umoci, "unpack", "--image", f"{lay}:x", tmp_path / "bundle"]
    if os.geteuid() != 0:
        args.insert(2, "--rootless")
    subprocess.run(list(map(str, args)), check=True, capture_output=True)
    root = tmp_path / "bundle" / "rootfs"
    for p, data in images.LAYERED_EXPECTED.items():
        assert (root / p).read_bytes() == data
    for p in images.LAYERED_ABSENT:
        assert not os.path.lexists(root / p), p
    assert os.stat(root / "data/a.txt").st_ino == os.stat(root / "data/link-to-a").st_ino
    assert (root / "bin/busybox").read_bytes() == images.busybox_binary()


def test_zstd_image_round_trips(seeded, tmp_path):
    reg = seeded.registry
    lay = tmp_path / "z"
    skopeo("copy", "-q", "--src-tls-verify=false", f"docker://{reg.ref('busybox:zstd')}", f"oci:{lay}:x")
    man, cfg, raws = read_layout_image(lay)
    assert man["layers"][0]["mediaType"] == images.MT_LAYER_ZSTD
    assert images.digest(raws[0]) == cfg["rootfs"]["diff_ids"][0]


def test_two_platform_index(seeded):
    if "multi:1" not in seeded.pushed:
        pytest.skip(images.ARM64_SKIP_REASON)
    reg = seeded.registry
    idx = json.loads(reg.inspect_raw("multi:1"))
    assert idx["mediaType"] == images.MT_OCI_INDEX
    plats = sorted((m["platform"]["os"], m["platform"]["architecture"]) for m in idx["manifests"])
    assert plats == [("linux", "amd64"), ("linux", "arm64")]
    _, amd, arm = images.index_two_platforms()
    assert images.elf_machine(apply_layers(amd.layer_tars)["bin/busybox"].data) == images.ELF_X86_64
    assert images.elf_machine(apply_layers(arm.layer_tars)["bin/busybox"].data) == images.ELF_AARCH64
    # skopeo picks the arm64 manifest when asked
    insp = json.loads(skopeo("inspect", "--tls-verify=false", "--override-arch=arm64",
                             f"docker://{reg.ref('multi:1')}").stdout)
    assert insp["Architecture"] == "arm64"


# --- TLS ----------------------------------------------------------------------------------


def test_tls_registry(registry_factory, tmp_path):
    reg = registry_factory(tls=True)
    lay = images.write_layout(tmp_path / "lay", {"t": images.make_image([[images.F("hello.txt", "hi\n")]])})
    reg.push_layout(lay, "t", "tiny:1")
    certs = reg.cert_dir(tmp_path / "certs") / reg.host
    ok = skopeo("inspect", "--raw", f"--cert-dir={certs}", f"docker://{reg.ref('tiny:1')}")
    assert json.loads(ok.stdout)["layers"]
    bad = skopeo("inspect", "--raw", f"docker://{reg.ref('tiny:1')}", check=False)
    assert bad.returncode != 0 and "certificate" in bad.stderr


# --- Basic auth ---------------------------------------------------------------------------


def test_basic_auth_registry(registry_factory, tmp_path):
    reg = registry_factory(auth="basic")
    lay = images.write_layout(tmp_path / "lay", {"t": images.make_image([[images.F("hello.txt", "hi\n")]])})
    reg.push_layout(lay, "t", "tiny:1")
    ref = f"docker://{reg.ref('tiny:1')}"
    assert skopeo("inspect", "--raw", "--tls-verify=false", f"--creds=puller:{USERS['puller'].password}", ref)
    bad = skopeo("inspect", "--raw", "--tls-verify=false", "--creds=puller:wrong", ref, check=False)
    assert bad.returncode != 0
    anon = skopeo("inspect", "--raw", "--tls-verify=false", "--no-creds", ref, check=False)
    assert anon.returncode != 0
    statuses = {r.status for r in reg.requests("GET", r"/manifests/1$")}
    assert 200 in statuses and 401 in statuses, statuses


# --- token auth ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def token_registry(module_registry_factory, tmp_path_factory):
    reg = module_registry_factory(auth="token")
    lay = images.write_layout(tmp_path_factory.mktemp("tok") / "lay",
                              {"t": images.make_image([[images.F("hello.txt", "hi\n")]])})
    reg.push_layout(lay, "t", "tiny:1")
    reg.push_layout(lay, "t", "public/tiny:1")
    return reg, lay


def test_token_pusher_can_push(token_registry):
    reg, lay = token_registry
    p = skopeo("copy", "-q", "--dest-tls-verify=false", f"--dest-creds=pusher:{USERS['pusher'].password}",
               f"oci:{lay}:t", f"docker://{reg.ref('pushed:1')}")
    assert p.returncode == 0
    assert any(r["user"] == "pusher" and any("push" in a["actions"] for a in r["granted"] or [])
               for r in reg.token_server.requests)


def test_token_puller_cannot_push_but_can_pull(token_registry, tmp_path):
    reg, lay = token_registry
    creds = f"puller:{USERS['puller'].password}"
    p = skopeo("copy", "-q", "--dest-tls-verify=false", f"--dest-creds={creds}", f"oci:{lay}:t",
               f"docker://{reg.ref('denied:1')}", check=False)
    assert p.returncode != 0
    assert "denied" in p.stderr.lower() or "unauthorized" in p.stderr.lower(), p.stderr
    ok = skopeo("copy", "-q", "--src-tls-verify=false", f"--src-creds={creds}", f"docker://{reg.ref('tiny:1')}",
                f"oci:{tmp_path / 'o'}:x")
    assert ok.returncode == 0


def test_token_anonymous_only_public(token_registry):
    reg, _ = token_registry
    assert skopeo("inspect", "--raw", "--tls-verify=false", "--no-creds", f"docker://{reg.ref('public/tiny:1')}")
    p = skopeo("inspect", "--raw", "--tls-verify=false", "--no-creds", f"docker://{reg.ref('tiny:1')}", check=False)
    assert p.returncode != 0


def test_token_wrong_password_is_401(token_registry):
    reg, _ = token_registry
    p = skopeo("inspect", "--raw", "--tls-verify=false", "--creds=puller:nope", f"docker://{reg.ref('tiny:1')}",
               check=False)
    assert p.returncode != 0
    assert any(r["status"] == 401 and r["user"] == "puller" for r in reg.token_server.requests)


def test_token_refresh_grant(token_registry):
    """An identity token (refresh token) buys an access token with POST /token; the registry
    accepts it."""
    reg, _ = token_registry
    ts = reg.token_server
    rt = ts.issue_refresh_token("puller")
    form = urllib.parse.urlencode({"grant_type": "refresh_token", "refresh_token": rt, "service": ts.service,
                                   "scope": "repository:tiny:pull", "client_id": "ossb-tests"})
    c = http.client.HTTPConnection("127.0.0.1", ts.port, timeout=10)
    c.request("POST", "/token", body=form, headers={"Content-Type": "application/x-www-form-urlencoded"})
    r = c.getresponse()
    body = json.loads(r.read())
    assert r.status == 200, body
    tok = body["access_token"]
    c = http.client.HTTPConnection(reg.host, timeout=10)
    c.request("GET", "/v2/tiny/manifests/1", headers={"Authorization": "Bearer " + tok,
                                                      "Accept": images.MT_OCI_MANIFEST})
    r = c.getresponse()
    r.read()
    assert r.status == 200
    # a bad refresh token is refused
    form = form.replace(rt, "rt-bogus")
    c = http.client.HTTPConnection("127.0.0.1", ts.port, timeout=10)
    c.request("POST", "/token", body=form, headers={"Content-Type": "application/x-www-form-urlencoded"})
    r = c.getresponse()
    r.read()
    assert r.status == 400


def test_token_offline_gives_refresh_token(token_registry):
    reg, _ = token_registry
    ts = reg.token_server
    q = urllib.parse.urlencode({"service": ts.service, "scope": "repository:tiny:pull", "offline_token": "true"})
    c = http.client.HTTPConnection("127.0.0.1", ts.port, timeout=10)
    raw = base64.b64encode(f"pusher:{USERS['pusher'].password}".encode()).decode()
    c.request("GET", f"/token?{q}", headers={"Authorization": "Basic " + raw})
    body = json.loads(c.getresponse().read())
    assert body["refresh_token"] in ts.refresh_tokens


def test_token_es256(registry_factory, tmp_path):
    from tokenserver import TokenServer
    ts = TokenServer(users=USERS, alg="ES256", workdir=tmp_path / "ts").start()
    try:
        reg = registry_factory(auth="token", token_server=ts)
        lay = images.write_layout(tmp_path / "lay", {"t": images.make_image([[images.F("a", "a")]])})
        reg.push_layout(lay, "t", "es:1")
        assert reg.manifest_digest("es:1")
    finally:
        ts.stop()


# --- fault proxy ----------------------------------------------------------------------------


def _get(host, path, headers=None):
    h, port = host.rsplit(":", 1)
    c = http.client.HTTPConnection(h, int(port), timeout=10)
    c.request("GET", path, headers=headers or {})
    r = c.getresponse()
    try:
        return r.status, dict(r.getheaders()), r.read()
    except http.client.IncompleteRead as e:
        return r.status, dict(r.getheaders()), ("incomplete", len(e.partial))
    except ConnectionResetError:
        return r.status, dict(r.getheaders()), ("reset", 0)


def test_fault_proxy_faults(seeded, fault_proxy):
    reg = seeded.registry
    img = seeded.image("busybox:1")
    layer = img.layer_digests()[0]
    data = img.blobs[layer]
    proxy = fault_proxy(reg)
    path = f"/v2/busybox/blobs/{layer}"
    assert _get(proxy.host, path)[2] == data

    proxy.add(Fault("status", path=layer, status=503, times=2))
    assert _get(proxy.host, path)[0] == 503
    assert _get(proxy.host, path)[0] == 503
    assert _get(proxy.host, path)[2] == data

    proxy.clear()
    proxy.add(Fault("status", path=layer, status=429, headers={"Retry-After": "1"}))
    st, h, _ = _get(proxy.host, path)
    assert st == 429 and h["Retry-After"] == "1"

    proxy.clear()
    proxy.add(Fault("truncate", path=layer, after=1000))
    st, h, body = _get(proxy.host, path)
    assert int(h["Content-Length"]) == len(data) and body == ("incomplete", 1000)

    proxy.clear()
    proxy.add(Fault("drop", path=layer, after=5000))
    st, h, body = _get(proxy.host, path)
    assert body[0] in ("incomplete", "reset")

    proxy.clear()
    proxy.add(Fault("corrupt", path=layer))
    st, h, body = _get(proxy.host, path)
    assert len(body) == len(data) and body != data and images.digest(body) != layer

    proxy.clear()
    st, h, body = _get(proxy.host, path, {"Range": "bytes=100-"})
    assert st == 206 and body == data[100:], (st, h)
    assert proxy.requests("GET", layer)[0].range == "bytes=100-"

    proxy.clear()
    proxy.add(Fault("status", method="GET", path="/manifests/", status=200, body=b"{not json",
                    headers={"Content-Type": images.MT_OCI_MANIFEST}, times=None))
    assert _get(proxy.host, "/v2/busybox/manifests/1")[2] == b"{not json"
    assert proxy.count("GET", "/manifests/") == 1


def test_fault_proxy_passes_uploads(seeded, fault_proxy, tmp_path):
    """skopeo pushes through the proxy (POST/PATCH/PUT with Location rewriting) while the
    proxy fails some requests; skopeo's own retries get it through."""
    reg = seeded.registry
    proxy = fault_proxy(reg)
    lay = images.write_layout(tmp_path / "lay", {"t": images.image_layered()})
    skopeo("copy", "-q", "--dest-tls-verify=false", f"oci:{lay}:t", f"docker://{proxy.host}/through-proxy:1")
    assert proxy.count("POST", r"/blobs/uploads/$") >= 1
    assert proxy.count("PUT", r"/blobs/uploads/") >= 1 or proxy.count("PATCH", r"/blobs/uploads/") >= 1
    assert proxy.count("PUT", r"/manifests/1$") == 1
    assert reg.manifest_digest("through-proxy:1") == images.image_layered().digest
    # uploads went through the proxy: the registry saw them from the proxy's Host
    assert all(r.status < 500 for r in proxy.log)


def test_fault_proxy_refuse_and_delay(seeded, fault_proxy):
    import time
    proxy = fault_proxy(seeded.registry)
    proxy.add(Fault("delay", path="/v2/$", seconds=0.3))
    t0 = time.monotonic()
    assert _get(proxy.host, "/v2/")[0] == 200
    assert time.monotonic() - t0 >= 0.3
    proxy.clear()
    proxy.add(Fault("refuse", path="/v2/$"))
    with pytest.raises((ConnectionError, http.client.RemoteDisconnected)):
        _get(proxy.host, "/v2/")


# --- seeding a second registry, non-loopback address ------------------------------------


def test_registry_on_non_loopback_address(registry_factory, tmp_path):
    addr = non_loopback_ipv4()
    if not addr:
        pytest.skip("this machine has no IPv4 address outside 127.0.0.0/8")
    reg = registry_factory(bind=addr)
    seed = seed_busybox(reg, tmp_path, multi=False)
    assert seed.digest("busybox:1") == images.image_plain().digest


def test_mutual_tls_registry(registry_factory, tmp_path):
    reg = registry_factory(client_certs=True)
    lay = images.write_layout(tmp_path / "lay", {"t": images.make_image([[images.F("a", "a")]])})
    reg.push_layout(lay, "t", "m:1")  # skopeo with client.cert/client.key in its cert dir
    with_client = reg.cert_dir(tmp_path / "with", client=True) / reg.host
    without = reg.cert_dir(tmp_path / "without", client=False) / reg.host
    assert skopeo("inspect", "--raw", f"--cert-dir={with_client}", f"docker://{reg.ref('m:1')}")
    p = skopeo("inspect", "--raw", f"--cert-dir={without}", f"docker://{reg.ref('m:1')}", check=False)
    assert p.returncode != 0


def test_tls_registry_on_non_loopback_address(registry_factory, tmp_path):
    addr = non_loopback_ipv4()
    if not addr:
        pytest.skip("this machine has no IPv4 address outside 127.0.0.0/8")
    reg = registry_factory(tls=True, bind=addr)
    lay = images.write_layout(tmp_path / "lay", {"t": images.make_image([[images.F("a", "a")]])})
    reg.push_layout(lay, "t", "x:1")
    certs = reg.cert_dir(tmp_path / "certs") / reg.host
    assert skopeo("inspect", "--raw", f"--cert-dir={certs}", f"docker://{reg.ref('x:1')}")
    p = skopeo("inspect", "--raw", f"docker://{reg.ref('x:1')}", check=False)
    assert p.returncode != 0 and "certificate" in p.stderr


def test_system_certs_d_fixture(registry_factory, system_certs_d, tmp_path):
    reg = registry_factory(tls=True)
    d = system_certs_d(reg)
    assert (d / "ca.crt").read_bytes() == reg.ca_path.read_bytes()
    lay = images.write_layout(tmp_path / "lay", {"t": images.make_image([[images.F("a", "a")]])})
    reg.push_layout(lay, "t", "x:1")
    # skopeo (containers/image) reads /etc/docker/certs.d too
    assert skopeo("inspect", "--raw", f"docker://{reg.ref('x:1')}")


def test_faultproxy_chunked_request_body(seeded, fault_proxy):
    """A chunked (Transfer-Encoding) PATCH through the proxy arrives whole."""
    reg = seeded.registry
    proxy = fault_proxy(reg)
    h, port = proxy.host.rsplit(":", 1)
    c = http.client.HTTPConnection(h, int(port), timeout=10)
    c.request("POST", "/v2/chunked/blobs/uploads/")
    r = c.getresponse()
    r.read()
    assert r.status == 202
    loc = urllib.parse.urlsplit(r.getheader("Location"))
    assert loc.netloc in ("", proxy.host), "Location does not point at the proxy"
    data = os.urandom(100000)
    c.request("PATCH", loc.path + ("?" + loc.query if loc.query else ""), body=iter([data[:50000], data[50000:]]),
              headers={"Content-Type": "application/octet-stream"}, encode_chunked=True)
    r = c.getresponse()
    r.read()
    assert r.status == 202, r.status
    loc = urllib.parse.urlsplit(r.getheader("Location"))
    q = urllib.parse.parse_qs(loc.query)
    q["digest"] = [images.digest(data)]
    c.request("PUT", loc.path + "?" + urllib.parse.urlencode(q, doseq=True), body=b"")
    r = c.getresponse()
    r.read()
    assert r.status == 201, r.status
    assert reg.has_blob("chunked", images.digest(data))
