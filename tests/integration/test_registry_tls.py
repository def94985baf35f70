"""TLS and plain HTTP: registries with certificates made by certtool, the CA given with
--cert-dir DIR (DIR/HOST:PORT/ca.crt) or installed in /etc/docker/certs.d (root), client
certificates (mutual TLS), and the plain-HTTP rule: allowed for loopback hosts, elsewhere only
with --insecure-registry or an insecure registries.conf entry.

As Docker does, loopback hosts (localhost, 127.0.0.0/8) count as insecure registries: plain HTTP
and unverified TLS are allowed there (registry/regconf.h).  The tests that need verification to
fail therefore use a registry bound to an address of this machine outside 127.0.0.0/8 and are
skipped when there is none."""
import re

import pytest

import images
from registry import assert_store_clean, non_loopback_ipv4, ossb_cmd

pytestmark = pytest.mark.usefixtures("registry_env")

TINY = images.make_image([[images.F("tls.txt", "over TLS\n")]])
TLS_WORDS = re.compile(r"TLS|SSL|certificate|https|handshake|x509|issuer|verif", re.I)


@pytest.fixture(scope="module")
def layout(tmp_path_factory):
    return images.write_layout(tmp_path_factory.mktemp("tiny") / "lay", {"t": TINY})


@pytest.fixture(scope="module")
def external_ip():
    addr = non_loopback_ipv4()
    if not addr:
        pytest.skip("this machine has no IPv4 address outside 127.0.0.0/8 (needed to leave the loopback rule)")
    return addr


@pytest.fixture(scope="module")
def tls_loopback(module_registry_factory, layout):
    reg = module_registry_factory(tls=True, name="tls-loopback")
    reg.push_layout(layout, "t", "tiny:1")
    return reg


@pytest.fixture(scope="module")
def tls_external(module_registry_factory, layout, external_ip):
    reg = module_registry_factory(tls=True, bind=external_ip, name="tls-external")
    reg.push_layout(layout, "t", "tiny:1")
    return reg


@pytest.fixture(scope="module")
def plain_external(module_registry_factory, layout, external_ip):
    reg = module_registry_factory(bind=external_ip, name="plain-external")
    reg.push_layout(layout, "t", "tiny:1")
    return reg


@pytest.fixture(scope="module")
def mtls(module_registry_factory, layout):
    reg = module_registry_factory(client_certs=True, name="mtls")
    reg.push_layout(layout, "t", "tiny:1")
    return reg


def pull(ossb, ref, *args, **kw):
    return ossb_cmd(ossb, "pull", *args, ref, **kw)


def assert_pulled(r):
    assert r.returncode == 0, str(r)
    assert r.digest == TINY.digest


# --- verified TLS ---------------------------------------------------------------------------


def test_cert_dir(ossb, tls_loopback):
    d = tls_loopback.cert_dir(ossb.path("certs"))
    assert_pulled(pull(ossb, tls_loopback.ref("tiny:1"), "--cert-dir", d))


def test_cert_dir_external(ossb, tls_external):
    d = tls_external.cert_dir(ossb.path("certs"))
    assert_pulled(pull(ossb, tls_external.ref("tiny:1"), "--cert-dir", d))


def test_without_ca_fails(ossb, tls_external):
    out = ossb.path("out")
    r = pull(ossb, tls_external.ref("tiny:1"), "--output", f"type=oci,dest={out}")
    assert r.returncode == 3, str(r)
    assert tls_external.host in r.stderr, str(r)
    assert TLS_WORDS.search(r.stderr), f"the message does not say TLS verification failed\n{r}"
    assert not out.exists()
    assert_store_clean(ossb)


def test_wrong_ca_fails(ossb, tls_external, tls_loopback):
    """A cert dir holding another registry's CA does not make the certificate trusted."""
    d = ossb.path("certs")
    (d / tls_external.host).mkdir(parents=True)
    (d / tls_external.host / "ca.crt").write_bytes(tls_loopback.ca_path.read_bytes())
    r = pull(ossb, tls_external.ref("tiny:1"), "--cert-dir", d)
    assert r.returncode == 3, str(r)
    assert TLS_WORDS.search(r.stderr), str(r)


def test_system_certs_d(ossb, tls_external, system_certs_d):
    system_certs_d(tls_external)
    assert_pulled(pull(ossb, tls_external.ref("tiny:1")))


def test_system_certs_d_loopback(ossb, tls_loopback, system_certs_d):
    system_certs_d(tls_loopback)
    assert_pulled(pull(ossb, tls_loopback.ref("tiny:1")))


def test_localhost_name(ossb, tls_loopback):
    """localhost:PORT is matched against the certificate's DNS name and the cert dir of that
    spelling."""
    host = f"localhost:{tls_loopback.port}"
    d = tls_loopback.cert_dir(ossb.path("certs"), host=host)
    assert_pulled(pull(ossb, f"{host}/tiny:1", "--cert-dir", d))


def test_loopback_tls_unverified_allowed(ossb, tls_loopback):
    """Loopback registries are insecure registries for Docker: TLS without a known CA is
    accepted there."""
    assert_pulled(pull(ossb, tls_loopback.ref("tiny:1")))


def test_insecure_registry_skips_verification(ossb, tls_external):
    assert_pulled(pull(ossb, tls_external.ref("tiny:1"), "--insecure-registry", tls_external.host))


def test_push_over_tls(ossb, tls_external, layout):
    d = tls_external.cert_dir(ossb.path("certs"))
    r = ossb_cmd(ossb, "push", "--cert-dir", d, layout, tls_external.ref("pushed:1"))
    assert r.returncode == 0, str(r)
    assert r.digest == TINY.digest == tls_external.manifest_digest("pushed:1")


def test_build_from_tls_registry(ossb, tls_loopback, context):
    d = tls_loopback.cert_dir(ossb.path("certs"))
    ctx = context(df=f"FROM {tls_loopback.ref('tiny:1')} AS b\nFROM scratch\nCOPY --from=b /tls.txt /copied.txt\n")
    r = ossb.build_ok(ctx, "--cert-dir", d)
    assert r.image.rootfs()["copied.txt"].data == b"over TLS\n"


# --- client certificates --------------------------------------------------------------------


def test_client_certificate(ossb, mtls):
    d = mtls.cert_dir(ossb.path("certs"), client=True)
    assert (d / mtls.host / "client.cert").is_file() and (d / mtls.host / "client.key").is_file()
    assert_pulled(pull(ossb, mtls.ref("tiny:1"), "--cert-dir", d))


def test_client_certificate_missing(ossb, mtls):
    d = mtls.cert_dir(ossb.path("certs"), client=False)
    r = pull(ossb, mtls.ref("tiny:1"), "--cert-dir", d)
    assert r.returncode == 3, str(r)
    assert mtls.host in r.stderr, str(r)


# --- plain HTTP ---------------------------------------------------------------------------


def test_plain_http_loopback_allowed(ossb, module_registry_factory, layout):
    reg = module_registry_factory(name="plain-loopback")
    reg.push_layout(layout, "t", "tiny:1")
    assert_pulled(pull(ossb, reg.ref("tiny:1")))
    assert_pulled(pull(ossb, f"localhost:{reg.port}/tiny:1", cache=ossb.path("c2")))


def test_plain_http_elsewhere_needs_insecure(ossb, plain_external):
    mark = plain_external.mark()
    r = pull(ossb, plain_external.ref("tiny:1"))
    assert r.returncode == 3, str(r)
    assert plain_external.host in r.stderr, str(r)
    assert re.search(r"insecure|https|TLS|SSL", r.stderr, re.I), f"the message does not say why\n{r}"
    assert plain_external.requests("GET", r"/manifests/", since=mark) == [], \
        "ossb spoke plain HTTP to a non-loopback host"


@pytest.mark.parametrize("form", ["host:port", "host"])
def test_insecure_registry_flag(ossb, plain_external, form):
    name = plain_external.host if form == "host:port" else plain_external.bind
    assert_pulled(pull(ossb, plain_external.ref("tiny:1"), "--insecure-registry", name))


def test_insecure_registry_other_host_does_not_count(ossb, plain_external):
    r = pull(ossb, plain_external.ref("tiny:1"), "--insecure-registry", f"{plain_external.bind}:1")
    assert r.returncode == 3, str(r)


def test_registries_conf_insecure(ossb, plain_external):
    conf = ossb.path("registries.conf")
    conf.write_text(f'[[registry]]\nlocation = "{plain_external.host}"\ninsecure = true\n')
    assert_pulled(pull(ossb, plain_external.ref("tiny:1"), "--registries-conf", conf))


def test_push_plain_http_elsewhere(ossb, plain_external, layout):
    r = ossb_cmd(ossb, "push", layout, plain_external.ref("pushed:1"))
    assert r.returncode == 3, str(r)
    r = ossb_cmd(ossb, "push", "--insecure-registry", plain_external.host, layout, plain_external.ref("pushed:1"))
    assert r.returncode == 0, str(r)
    assert plain_external.manifest_digest("pushed:1") == TINY.digest
