"""Credentials: every source of registry/credentials.h, in its order, against a registry with
Basic auth (htpasswd) and one with Bearer tokens (tokenserver.py: "pusher" may push, "puller"
may only pull, anonymous clients may pull public/*).  Wrong or missing credentials fail with
exit 3 and a message naming the registry and the credential source, never the secret.

Sources, highest first:
  1 --registry-auth-file FILE   2 $REGISTRY_AUTH_FILE   3 $DOCKER_CONFIG/config.json (else
  ~/.docker/config.json; auths, credHelpers, credsStore)   4 $XDG_RUNTIME_DIR/containers/auth.json
"""
import base64
import json
import re
import stat
import sys

import pytest

import images
from registry import USERS, assert_secret_absent, assert_store_clean, ossb_cmd, store_blobs

pytestmark = pytest.mark.usefixtures("registry_env")

TINY = images.make_image([[images.F("hello.txt", "hello\n")]])
PUSHER, PULLER = USERS["pusher"].password, USERS["puller"].password
WRONG = "Wr0ng-Passw0rd-xyz"
DENIED_WORDS = re.compile(r"denied|not allowed|insufficient|unauthori[sz]ed|forbidden|permission", re.I)


def b64(user, pw):
    return base64.b64encode(f"{user}:{pw}".encode()).decode()


@pytest.fixture(scope="module")
def layout(tmp_path_factory):
    return images.write_layout(tmp_path_factory.mktemp("tiny") / "lay", {"t": TINY})


@pytest.fixture(scope="module")
def basic(module_registry_factory, layout):
    reg = module_registry_factory(auth="basic", name="basic")
    reg.push_layout(layout, "t", "tiny:1")
    return reg


@pytest.fixture(scope="module")
def token(module_registry_factory, layout):
    reg = module_registry_factory(auth="token", name="token")
    reg.push_layout(layout, "t", "tiny:1")
    reg.push_layout(layout, "t", "public/tiny:1")
    return reg


def auths(entries):
    """{"auths": {key: {"auth": base64}}} from {key: (user, password)}."""
    return {"auths": {k: {"auth": b64(*v)} for k, v in entries.items()}}


def write_json(path, doc):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    return path


def pull(ossb, reg, name="tiny:1", *args, env=None, pre=()):
    return ossb_cmd(ossb, "pull", *args, reg.ref(name), env=env, pre=pre)


def assert_pulled(r):
    assert r.returncode == 0, str(r)
    assert r.digest == TINY.digest


def assert_auth_failed(r, reg, *needles, secrets=(WRONG,)):
    assert r.returncode == 3, str(r)
    assert reg.host in r.stderr, f"the message does not name the registry {reg.host}\n{r}"
    for n in needles:
        assert str(n) in r.stderr, f"the message does not name {n}\n{r}"
    assert_secret_absent(r, *secrets)
    assert "sha256:" not in r.stdout


# --- the sources, one at a time ---------------------------------------------------------------


def test_registry_auth_file(ossb, basic):
    f = write_json(ossb.path("auth.json"), auths({basic.host: ("puller", PULLER)}))
    assert_pulled(pull(ossb, basic, "tiny:1", "--registry-auth-file", f))


def test_kubernetes_dockerconfigjson_secret(ossb, basic):
    """A kubernetes.io/dockerconfigjson secret mounted as a file: {"auths": {...}}."""
    f = write_json(ossb.path("secret") / ".dockerconfigjson",
                   {"auths": {basic.host: {"username": "puller", "password": PULLER, "auth": b64("puller", PULLER)}}})
    assert_pulled(pull(ossb, basic, "tiny:1", "--registry-auth-file", f))


def test_registry_auth_file_env(ossb, basic):
    f = write_json(ossb.path("env-auth.json"), auths({basic.host: ("puller", PULLER)}))
    assert_pulled(pull(ossb, basic, env={"REGISTRY_AUTH_FILE": str(f)}))


def test_docker_config_auth(ossb, basic):
    d = ossb.path("dockercfg")
    write_json(d / "config.json", auths({basic.host: ("puller", PULLER)}))
    assert_pulled(pull(ossb, basic, env={"DOCKER_CONFIG": str(d)}))


def test_docker_config_username_password(ossb, basic):
    d = ossb.path("dockercfg")
    write_json(d / "config.json", {"auths": {basic.host: {"username": "puller", "password": PULLER}}})
    assert_pulled(pull(ossb, basic, env={"DOCKER_CONFIG": str(d)}))


def test_home_docker_config(ossb, basic):
    write_json(ossb.home / ".docker" / "config.json", auths({basic.host: ("puller", PULLER)}))
    assert_pulled(pull(ossb, basic))


def test_xdg_runtime_auth_json(ossb, basic):
    write_json(ossb.path("xdg-runtime") / "containers" / "auth.json", auths({basic.host: ("puller", PULLER)}))
    assert_pulled(pull(ossb, basic))


@pytest.mark.parametrize("form", ["https://{h}", "https://{h}/", "http://{h}", "{h}/tiny"])
def test_auth_key_forms(ossb, basic, form):
    f = write_json(ossb.path("auth.json"), auths({form.format(h=basic.host): ("puller", PULLER)}))
    assert_pulled(pull(ossb, basic, "tiny:1", "--registry-auth-file", f))


def test_repository_scoped_key_wins(ossb, basic):
    f = write_json(ossb.path("auth.json"), auths({basic.host: ("puller", WRONG),
                                                  f"{basic.host}/tiny": ("puller", PULLER)}))
    assert_pulled(pull(ossb, basic, "tiny:1", "--registry-auth-file", f))


def test_identity_token(ossb, token):
    """"identitytoken" is an OAuth2 refresh token: ossb trades it with POST /token
    (grant_type=refresh_token) and never shows it."""
    ts = token.token_server
    rt = ts.issue_refresh_token("puller")
    d = ossb.path("dockercfg")
    write_json(d / "config.json", {"auths": {token.host: {"auth": b64("puller", ""), "identitytoken": rt}}})
    before = len(ts.grants("refresh_token"))
    r = pull(ossb, token, env={"DOCKER_CONFIG": str(d)}, pre=("--log-level", "debug"))
    assert_pulled(r)
    used = ts.grants("refresh_token")[before:]
    assert used and used[-1]["status"] == 200 and used[-1]["user"] == "puller", used
    assert_secret_absent(r, rt, *ts.issued)


def test_token_basic_credentials(ossb, token):
    f = write_json(ossb.path("auth.json"), auths({token.host: ("puller", PULLER)}))
    ts = token.token_server
    r = pull(ossb, token, "tiny:1", "--registry-auth-file", f, pre=("--log-level", "debug"))
    assert_pulled(r)
    assert any(g["user"] == "puller" and g["status"] == 200 for g in ts.requests)
    assert_secret_absent(r, PULLER, b64("puller", PULLER), *ts.issued)


def test_token_anonymous_public(ossb, token):
    r = pull(ossb, token, "public/tiny:1")
    assert_pulled(r)


def test_token_anonymous_private_denied(ossb, token):
    r = pull(ossb, token, "tiny:1")
    assert r.returncode == 3, str(r)
    assert token.host in r.stderr
    assert re.search(r"anonymous|no credentials|without credentials", r.stderr, re.I), str(r)


def test_basic_anonymous_denied(ossb, basic):
    r = pull(ossb, basic)
    assert r.returncode == 3, str(r)
    assert basic.host in r.stderr
    assert re.search(r"anonymous|no credentials|without credentials", r.stderr, re.I), str(r)


# --- credential helpers -------------------------------------------------------------------


def write_helper(ossb, creds, name="test"):
    """docker-credential-NAME on a PATH dir of the test: `get` answers from `creds`
    ({server: (user, secret)}; a scheme and trailing slash of the server are ignored), else
    "credentials not found"; every call is logged to helper.log."""
    bindir = ossb.path("helper-bin")
    bindir.mkdir(exist_ok=True)
    db = write_json(ossb.path(f"helper-{name}.json"), {k: list(v) for k, v in creds.items()})
    log = ossb.path("helper.log")
    script = bindir / f"docker-credential-{name}"
    script.write_text(f"""#!{sys.executable}
import json, re, sys
server = sys.stdin.read().strip()
with open({str(log)!r}, "a") as f:
    f.write(" ".join(sys.argv[1:]) + " " + server + "\\n")
if sys.argv[1:] != ["get"]:
    sys.exit(1)
key = re.sub(r"^https?://", "", server).rstrip("/")
db = json.load(open({str(db)!r}))
if key not in db:
    print("credentials not found in native keychain")
    sys.exit(1)
user, secret = db[key]
print(json.dumps({{"ServerURL": server, "Username": user, "Secret": secret}}))
""")
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return {"PATH": f"{bindir}:{ossb.env.get('PATH', '/usr/bin:/bin')}"}, log


def test_cred_helpers(ossb, basic):
    env, log = write_helper(ossb, {basic.host: ("puller", PULLER)})
    d = ossb.path("dockercfg")
    write_json(d / "config.json", {"credHelpers": {basic.host: "test"}})
    r = pull(ossb, basic, env={**env, "DOCKER_CONFIG": str(d)}, pre=("--log-level", "debug"))
    assert_pulled(r)
    assert "get" in log.read_text() and basic.host in log.read_text()
    assert_secret_absent(r, PULLER)


def test_creds_store(ossb, basic):
    env, log = write_helper(ossb, {basic.host: ("puller", PULLER)})
    d = ossb.path("dockercfg")
    write_json(d / "config.json", {"credsStore": "test"})
    assert_pulled(pull(ossb, basic, env={**env, "DOCKER_CONFIG": str(d)}))
    assert basic.host in log.read_text()


def test_cred_helper_identity_token(ossb, token):
    """A helper answering Username "<token>" hands over an identity token."""
    rt = token.token_server.issue_refresh_token("puller")
    env, _ = write_helper(ossb, {token.host: ("<token>", rt)})
    d = ossb.path("dockercfg")
    write_json(d / "config.json", {"credHelpers": {token.host: "test"}})
    r = pull(ossb, token, env={**env, "DOCKER_CONFIG": str(d)}, pre=("--log-level", "debug"))
    assert_pulled(r)
    assert_secret_absent(r, rt)


def test_cred_helper_not_found_is_anonymous(ossb, token):
    env, log = write_helper(ossb, {})
    d = ossb.path("dockercfg")
    write_json(d / "config.json", {"credsStore": "test"})
    assert_pulled(pull(ossb, token, "public/tiny:1", env={**env, "DOCKER_CONFIG": str(d)}))
    assert log.read_text(), "the helper was not asked"


def test_cred_helper_wrong_secret(ossb, basic):
    env, _ = write_helper(ossb, {basic.host: ("puller", WRONG)})
    d = ossb.path("dockercfg")
    write_json(d / "config.json", {"credHelpers": {basic.host: "test"}})
    r = pull(ossb, basic, env={**env, "DOCKER_CONFIG": str(d)}, pre=("--log-level", "debug"))
    assert_auth_failed(r, basic, "docker-credential-test")


def test_cred_helper_failing(ossb, basic):
    bindir = ossb.path("helper-bin")
    bindir.mkdir()
    h = bindir / "docker-credential-broken"
    h.write_text("#!/bin/sh\necho 'the keyring is locked' >&2\nexit 1\n")
    h.chmod(0o755)
    d = ossb.path("dockercfg")
    write_json(d / "config.json", {"credHelpers": {basic.host: "broken"}})
    r = pull(ossb, basic, env={"PATH": f"{bindir}:{ossb.env['PATH']}", "DOCKER_CONFIG": str(d)})
    assert r.returncode == 3, str(r)
    assert "docker-credential-broken" in r.stderr, str(r)


def test_cred_helper_missing(ossb, basic):
    d = ossb.path("dockercfg")
    write_json(d / "config.json", {"credHelpers": {basic.host: "not-installed-anywhere"}})
    r = pull(ossb, basic, env={"DOCKER_CONFIG": str(d)})
    assert r.returncode == 3, str(r)
    assert "docker-credential-not-installed-anywhere" in r.stderr, str(r)


# --- order of the sources -----------------------------------------------------------------


def put_source(ossb, src, host, user, pw):
    """Put one credential entry in source `src`; returns (ossb args, env, text naming it)."""
    doc = auths({host: (user, pw)})
    if src == "flag":
        f = write_json(ossb.path("flag-auth.json"), doc)
        return ["--registry-auth-file", str(f)], {}, str(f)
    if src == "env":
        f = write_json(ossb.path("env-auth.json"), doc)
        return [], {"REGISTRY_AUTH_FILE": str(f)}, str(f)
    if src == "docker":
        d = ossb.path("dockercfg")
        f = write_json(d / "config.json", doc)
        return [], {"DOCKER_CONFIG": str(d)}, str(f)
    if src == "xdg":
        f = write_json(ossb.path("xdg-runtime") / "containers" / "auth.json", doc)
        return [], {}, str(f)
    raise ValueError(src)


ORDER = ["flag", "env", "docker", "xdg"]
PAIRS = [(ORDER[i], ORDER[j]) for i in range(len(ORDER)) for j in range(i + 1, len(ORDER))]


@pytest.mark.parametrize("high,low", PAIRS)
def test_source_order_higher_wins(ossb, basic, high, low):
    a1, e1, _ = put_source(ossb, high, basic.host, "puller", PULLER)
    a2, e2, _ = put_source(ossb, low, basic.host, "puller", WRONG)
    assert_pulled(pull(ossb, basic, "tiny:1", *a1, *a2, env={**e1, **e2}))


@pytest.mark.parametrize("high,low", PAIRS)
def test_source_order_higher_wrong_fails_naming_it(ossb, basic, high, low):
    a1, e1, name = put_source(ossb, high, basic.host, "puller", WRONG)
    a2, e2, _ = put_source(ossb, low, basic.host, "puller", PULLER)
    r = pull(ossb, basic, "tiny:1", *a1, *a2, env={**e1, **e2}, pre=("--log-level", "debug"))
    assert_auth_failed(r, basic, name, secrets=(WRONG, b64("puller", WRONG)))


def test_source_without_entry_falls_through(ossb, basic):
    """A source with no entry for the registry does not stop the search."""
    f = write_json(ossb.path("other.json"), auths({"other.example:5000": ("x", "y")}))
    d = ossb.path("dockercfg")
    write_json(d / "config.json", auths({basic.host: ("puller", PULLER)}))
    assert_pulled(pull(ossb, basic, "tiny:1", "--registry-auth-file", f, env={"DOCKER_CONFIG": str(d)}))


# --- failures -----------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["basic", "token"])
def test_wrong_password(ossb, request, which):
    reg = request.getfixturevalue(which)
    f = write_json(ossb.path("auth.json"), auths({reg.host: ("puller", WRONG)}))
    out = ossb.path("out")
    r = pull(ossb, reg, "tiny:1", "--registry-auth-file", f, "--output", f"type=oci,dest={out}",
             pre=("--log-level", "debug"))
    assert_auth_failed(r, reg, f, secrets=(WRONG, b64("puller", WRONG)))
    assert not out.exists()
    assert TINY.digest not in store_blobs(ossb.cache)


def test_pull_only_user_cannot_push(ossb, token, layout):
    f = write_json(ossb.path("auth.json"), auths({token.host: ("puller", PULLER)}))
    r = ossb_cmd(ossb, "push", "--registry-auth-file", f, layout, token.ref("not-yours:1"),
                 pre=("--log-level", "debug"))
    assert r.returncode == 3, str(r)
    assert token.host in r.stderr and "not-yours" in r.stderr, str(r)
    assert DENIED_WORDS.search(r.stderr), f"the message does not say the push was refused\n{r}"
    assert str(f) in r.stderr, f"the message does not name the credential source\n{r}"
    assert_secret_absent(r, PULLER, b64("puller", PULLER), *token.token_server.issued)
    assert not token.has_manifest("not-yours", "1")


def test_pusher_can_push(ossb, token, layout):
    f = write_json(ossb.path("auth.json"), auths({token.host: ("pusher", PUSHER)}))
    r = ossb_cmd(ossb, "push", "--registry-auth-file", f, layout, token.ref("yours:1"), pre=("--log-level", "debug"))
    assert r.returncode == 0, str(r)
    assert r.digest == TINY.digest == token.manifest_digest("yours:1")
    assert_secret_absent(r, PUSHER, b64("pusher", PUSHER), *token.token_server.issued)


def test_build_push_with_credentials(ossb, token, context):
    f = write_json(ossb.path("auth.json"), auths({token.host: ("pusher", PUSHER)}))
    ctx = context({"x.txt": "x\n"}, df=f"FROM {token.ref('tiny:1')}\nCOPY x.txt /x.txt\n")
    r = ossb.build(ctx, "--push", "-t", token.ref("built:1"), "--registry-auth-file", f, out=False)
    assert r.returncode == 0, str(r)
    assert r.digest == token.manifest_digest("built:1")


def test_malformed_auth_file(ossb, basic):
    f = ossb.path("auth.json")
    f.write_text('{"auths": {"' + basic.host + '": {"auth": "%%%not base64"')
    r = pull(ossb, basic, "tiny:1", "--registry-auth-file", f)
    assert r.returncode == 3, str(r)
    assert str(f) in r.stderr, str(r)


def test_missing_auth_file(ossb, basic):
    f = ossb.path("no-such-auth.json")
    r = pull(ossb, basic, "tiny:1", "--registry-auth-file", f)
    assert r.returncode in (2, 3), str(r)
    assert str(f) in r.stderr, str(r)


def test_failed_auth_leaves_store_clean(ossb, basic):
    f = write_json(ossb.path("auth.json"), auths({basic.host: ("puller", WRONG)}))
    r = pull(ossb, basic, "tiny:1", "--registry-auth-file", f)
    assert r.returncode == 3, str(r)
    assert_store_clean(ossb)
