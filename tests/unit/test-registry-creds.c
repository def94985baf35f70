/* tests/unit/test-registry-creds.c - registry/credentials.c: every credential source and their
 * order, key matching, entry forms, file errors, and the docker-credential-helper protocol
 * (a fake helper script the test writes, first on PATH).  Everything lives in a mkdtemp dir
 * (HOME, DOCKER_CONFIG, REGISTRY_AUTH_FILE and XDG_RUNTIME_DIR point into it), and no error
 * message may contain any of the secrets used. */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fs.h"
#include "registry/auth.h"
#include "registry/credentials.h"
#include "tests/unit/tap.h"

static char base[] = "/tmp/ossb-creds-XXXXXX";
static char *home_cfg, *xdg_auth, *dcfg_dir, *dcfg, *reg_file, *cli_file, *helper_log, *bin;

static const char *const secrets[] = {
        "pw-a", "pw-b", "pw-c", "pw-d", "pw-h", "helper-secret-1", "refresh-secret-2", "hub-secret-3",
        "leaky-secret-4", "leftover-secret-5", "p4ssw0rd", "idtok-secret", "notbase64-secretish", "nocolonsecret",
        "c2VjcmV0", "store-secret",
};

static const char helper_script[] =
        "#!/bin/sh\n"
        "[ \"$1\" = get ] || { echo \"bad args: $*\" >&2; exit 3; }\n"
        "server=$(cat)\n"
        "printf '%s\\n' \"$server\" >> \"$OSSB_TEST_HELPER_LOG\"\n"
        "case \"$server\" in\n"
        "ok.example) printf '{\"ServerURL\":\"%s\",\"Username\":\"helperuser\",\"Secret\":\"helper-secret-1\"}\\n' "
        "\"$server\" ;;\n"
        "token.example) printf '{\"ServerURL\":\"%s\",\"Username\":\"<token>\",\"Secret\":\"refresh-secret-2\"}\\n' "
        "\"$server\" ;;\n"
        "https://index.docker.io/v1/) printf '{\"ServerURL\":\"%s\",\"Username\":\"hubuser\",\"Secret\":\"hub-secret-3\"}' "
        "\"$server\" ;;\n"
        "store.example:5000) printf '{\"Username\":\"storeuser\",\"Secret\":\"store-secret\"}' ;;\n"
        "fail.example) echo 'error getting credentials - err: exit status 2, out: gpg: decryption failed'; exit 1 ;;\n"
        "json-fail.example) echo '{\"Secret\":\"leaky-secret-4\"}'; exit 1 ;;\n"
        "stderr.example) echo 'complaint on stderr' >&2; exit 2 ;;\n"
        "garbage.example) echo 'not json at all' ;;\n"
        "nosecret.example) echo '{\"ServerURL\":\"x\",\"Username\":\"u\",\"Secret\":\"\"}' ;;\n"
        "empty.example) ;;\n"
        "array.example) echo '[\"x\"]' ;;\n"
        "signal.example) kill -9 $$ ;;\n"
        "big.example) head -c 2000000 /dev/zero | tr '\\0' a ;;\n"
        "slow.example) exec sleep 30 ;;\n"
        "leftover.example) sleep 3 & printf '{\"Username\":\"u\",\"Secret\":\"leftover-secret-5\"}' ;;\n"
        "*) echo 'credentials not found in native keychain'; exit 1 ;;\n"
        "esac\n";

static int write_text(const char *path, const char *text)
{
        return ossb_write_file_atomic(path, text, strlen(text), 0600, NULL);
}

static char *path_in(const char *sub)
{
        char *p = NULL;
        return asprintf(&p, "%s/%s", base, sub) < 0 ? NULL : p;
}

static int setup(void)
{
        _cleanup_free_ char *home = NULL, *run = NULL, *script = NULL, *path = NULL;
        if (!mkdtemp(base))
                return -1;
        home = path_in("home");
        run = path_in("run");
        bin = path_in("bin");
        dcfg_dir = path_in("dockercfg");
        home_cfg = path_in("home/.docker/config.json");
        xdg_auth = path_in("run/containers/auth.json");
        dcfg = path_in("dockercfg/config.json");
        reg_file = path_in("registry-auth.json");
        cli_file = path_in("cli-auth.json");
        helper_log = path_in("helper.log");
        script = path_in("bin/docker-credential-test");
        if (!home || !run || !bin || !dcfg_dir || !home_cfg || !xdg_auth || !dcfg || !reg_file || !cli_file ||
            !helper_log || !script)
                return -1;
        _cleanup_free_ char *docker_dir = path_in("home/.docker"), *xdg_dir = path_in("run/containers");
        if (!docker_dir || !xdg_dir || ossb_mkdir_p(bin, 0755) < 0 || ossb_mkdir_p(dcfg_dir, 0755) < 0 ||
            ossb_mkdir_p(docker_dir, 0755) < 0 || ossb_mkdir_p(xdg_dir, 0755) < 0)
                return -1;
        if (ossb_write_file_atomic(script, helper_script, strlen(helper_script), 0755, NULL) < 0)
                return -1;
        const char *old = getenv("PATH");
        if (asprintf(&path, "%s:%s", bin, old ? old : "/usr/bin:/bin") < 0)
                return -1;
        setenv("PATH", path, 1);
        setenv("HOME", home, 1);
        setenv("XDG_RUNTIME_DIR", run, 1);
        setenv("OSSB_TEST_HELPER_LOG", helper_log, 1);
        unsetenv("DOCKER_CONFIG");
        unsetenv("REGISTRY_AUTH_FILE");
        return 0;
}

/* Remove every source file and the env vars that name extra ones. */
static void reset(void)
{
        unlink(home_cfg);
        unlink(xdg_auth);
        unlink(dcfg);
        unlink(reg_file);
        unlink(cli_file);
        unlink(helper_log);
        unsetenv("DOCKER_CONFIG");
        unsetenv("REGISTRY_AUTH_FILE");
        _cleanup_free_ char *run = path_in("run");
        setenv("XDG_RUNTIME_DIR", run, 1);
}

static bool has_secret(const char *msg)
{
        for (size_t i = 0; msg && i < ELEMENTSOF(secrets); i++)
                if (strstr(msg, secrets[i]))
                        return true;
        return false;
}

/* {"auths": {"KEY": {"auth": base64(user:pass)}}} */
static char *auths_one(const char *key, const char *user, const char *pass)
{
        _cleanup_free_ char *plain = NULL, *b64 = NULL;
        char *json = NULL;
        if (asprintf(&plain, "%s:%s", user, pass) < 0 || !(b64 = ossb_base64_encode(plain, strlen(plain))))
                return NULL;
        if (asprintf(&json, "{\"auths\":{\"%s\":{\"auth\":\"%s\"}}}", key, b64) < 0)
                return NULL;
        return json;
}

static int write_auths_one(const char *path, const char *key, const char *user, const char *pass)
{
        _cleanup_free_ char *json = auths_one(key, user, pass);
        return json ? write_text(path, json) : -1;
}

/* The lookup gives user (NULL: anonymous) from a source containing `source`. */
static int found(const char *auth_file, const char *repo, const char *user, const char *secret, const char *source)
{
        struct ossb_credential c = { 0 };
        struct ossb_error *err = NULL;
        int r = ossb_credentials_find(auth_file, repo, &c, &err);
        int ok = r == 0 && !err;
        if (ok && !user)
                ok = !c.username && !c.secret && !c.source;
        else if (ok)
                ok = c.username && streq(c.username, user) && c.secret && (!secret || streq(c.secret, secret)) &&
                     c.source && strstr(c.source, source);
        if (!ok)
                fprintf(stderr, "# %s: r=%d %s user=%s source=%s, want %s from %s\n", repo, r, err ? err->msg : "",
                        c.username ? c.username : "(null)", c.source ? c.source : "(null)", user ? user : "(null)",
                        source ? source : "-");
        ossb_credential_clear(&c);
        ossb_error_free(err);
        return ok;
}

/* The lookup fails with a message containing every one of why1/why2 and no secret. */
static int fails(const char *auth_file, const char *repo, const char *why1, const char *why2)
{
        struct ossb_credential c = { 0 };
        struct ossb_error *err = NULL;
        int r = ossb_credentials_find(auth_file, repo, &c, &err);
        int ok = r < 0 && err && err->code == r && err->msg && strstr(err->msg, why1) && (!why2 || strstr(err->msg, why2)) &&
                 !has_secret(err->msg) && !c.username && (r == -ENOMEM || err->exit_code == OSSB_EXIT_REGISTRY);
        if (!ok)
                fprintf(stderr, "# %s: expected an error with `%s` `%s`, got %d %s\n", repo, why1, why2 ? why2 : "", r,
                        err ? err->msg : "(none)");
        ossb_error_free(err);
        return ok;
}

static void test_anonymous(void)
{
        reset();
        ASSERT(found(NULL, "docker.io/library/alpine", NULL, NULL, NULL));
        ASSERT_INTEQ(write_text(home_cfg, ""), 0);
        ASSERT(found(NULL, "docker.io/library/alpine", NULL, NULL, NULL));
        ASSERT_INTEQ(write_text(home_cfg, " \n\t"), 0);
        ASSERT(found(NULL, "docker.io/library/alpine", NULL, NULL, NULL));
        ASSERT_INTEQ(write_text(home_cfg, "{}"), 0);
        ASSERT(found(NULL, "docker.io/library/alpine", NULL, NULL, NULL));
        ASSERT_INTEQ(write_text(home_cfg, "{\"auths\":{}}"), 0);
        ASSERT(found(NULL, "docker.io/library/alpine", NULL, NULL, NULL));
        /* $REGISTRY_AUTH_FILE and $DOCKER_CONFIG that point nowhere are skipped */
        setenv("REGISTRY_AUTH_FILE", "/nonexistent/auth.json", 1);
        setenv("DOCKER_CONFIG", "/nonexistent", 1);
        ASSERT(found(NULL, "docker.io/library/alpine", NULL, NULL, NULL));
        /* so is a missing XDG_RUNTIME_DIR */
        unsetenv("XDG_RUNTIME_DIR");
        ASSERT(found(NULL, "docker.io/library/alpine", NULL, NULL, NULL));
        /* without $HOME, the passwd entry's home is used (whatever it holds, the lookup is sane) */
        reset();
        _cleanup_free_ char *home = getenv("HOME") ? strdup(getenv("HOME")) : NULL;
        ASSERT(home);
        unsetenv("HOME");
        struct ossb_credential hc = { 0 };
        struct ossb_error *herr = NULL;
        int hr = ossb_credentials_find(NULL, "nohome.invalid/x", &hc, &herr);
        setenv("HOME", home, 1);
        ASSERT(hr == 0 || (herr && herr->msg && !has_secret(herr->msg)));
        ossb_credential_clear(&hc);
        ossb_error_free(herr);
        reset();
        const char *invalid[] = { "", NULL, "/abs" };
        for (size_t i = 0; i < ELEMENTSOF(invalid); i++) {
                struct ossb_credential c = { 0 };
                struct ossb_error *err = NULL;
                ASSERT_INTEQ(ossb_credentials_find(NULL, invalid[i], &c, &err), -EINVAL);
                ASSERT(err && strstr(err->msg, "invalid repository"));
                ossb_error_free(err);
        }
        struct ossb_credential c = { 0 };
        ossb_credential_clear(&c);
        ossb_credential_clear(NULL);
}

static void test_order(void)
{
        reset();
        ASSERT_INTEQ(write_auths_one(cli_file, "order.example", "a", "pw-a"), 0);
        ASSERT_INTEQ(write_auths_one(reg_file, "order.example", "b", "pw-b"), 0);
        ASSERT_INTEQ(write_auths_one(dcfg, "order.example", "c", "pw-c"), 0);
        ASSERT_INTEQ(write_auths_one(home_cfg, "order.example", "h", "pw-h"), 0);
        ASSERT_INTEQ(write_auths_one(xdg_auth, "order.example", "d", "pw-d"), 0);
        setenv("REGISTRY_AUTH_FILE", reg_file, 1);
        setenv("DOCKER_CONFIG", dcfg_dir, 1);
        _cleanup_free_ char *src_cli = NULL, *src_reg = NULL;
        ASSERT(asprintf(&src_cli, "--registry-auth-file %s", cli_file) > 0);
        ASSERT(asprintf(&src_reg, "$REGISTRY_AUTH_FILE (%s)", reg_file) > 0);
        ASSERT(found(cli_file, "order.example/app", "a", "pw-a", src_cli));
        ASSERT(found(NULL, "order.example/app", "b", "pw-b", src_reg));
        unsetenv("REGISTRY_AUTH_FILE");
        ASSERT(found(NULL, "order.example/app", "c", "pw-c", dcfg));
        unsetenv("DOCKER_CONFIG");
        ASSERT(found(NULL, "order.example/app", "h", "pw-h", home_cfg));
        unlink(home_cfg);
        ASSERT(found(NULL, "order.example/app", "d", "pw-d", xdg_auth));
        unlink(xdg_auth);
        ASSERT(found(NULL, "order.example/app", NULL, NULL, NULL));
        /* a source without an entry for the registry passes to the next one */
        ASSERT_INTEQ(write_auths_one(cli_file, "other.example", "a", "pw-a"), 0);
        setenv("REGISTRY_AUTH_FILE", reg_file, 1);
        ASSERT(found(cli_file, "order.example/app", "b", "pw-b", src_reg));
        ASSERT(found(cli_file, "other.example/app", "a", "pw-a", src_cli));
        /* a named --registry-auth-file must exist */
        ASSERT(fails("/nonexistent/cli.json", "order.example/app", "--registry-auth-file /nonexistent/cli.json",
                     "no such file"));
}

static void test_keys(void)
{
        reset();
        ASSERT_INTEQ(write_text(home_cfg,
                                "{\"auths\":{"
                                "\"https://index.docker.io/v1/\":{\"username\":\"hub\",\"password\":\"p4ssw0rd\"},"
                                "\"http://localhost:5000/\":{\"username\":\"local\",\"password\":\"p4ssw0rd\"},"
                                "\"https://r.example/v2/\":{\"username\":\"r\",\"password\":\"p4ssw0rd\"},"
                                "\"R2.Example\":{\"username\":\"r2\",\"password\":\"p4ssw0rd\"},"
                                "\"r3.example:443\":{\"username\":\"r3\",\"password\":\"p4ssw0rd\"},"
                                "\"https://tie.example\":{\"username\":\"legacy\",\"password\":\"p4ssw0rd\"},"
                                "\"tie.example\":{\"username\":\"plain\",\"password\":\"p4ssw0rd\"},"
                                "\"tie2.example\":{\"username\":\"plain2\",\"password\":\"p4ssw0rd\"},"
                                "\"http://tie2.example/v1/\":{\"username\":\"legacy2\",\"password\":\"p4ssw0rd\"},"
                                "\"s.example\":{\"username\":\"host\",\"password\":\"p4ssw0rd\"},"
                                "\"s.example/team/app\":{\"username\":\"app\",\"password\":\"p4ssw0rd\"},"
                                "\"s.example/team\":{\"username\":\"team\",\"password\":\"p4ssw0rd\"},"
                                "\"s.example/team/empty\":{},"
                                "\"https://s2.example/ns/repo\":{\"username\":\"s2\",\"password\":\"p4ssw0rd\"},"
                                "\"broken.example\":{\"auth\":\"!!!\"}"
                                "}}"),
                     0);
        ASSERT(found(NULL, "docker.io/library/alpine", "hub", "p4ssw0rd", home_cfg));
        ASSERT(found(NULL, "index.docker.io/library/alpine", "hub", NULL, home_cfg));
        ASSERT(found(NULL, "registry-1.docker.io/user/app", "hub", NULL, home_cfg));
        ASSERT(found(NULL, "localhost:5000/app", "local", NULL, home_cfg));
        ASSERT(found(NULL, "localhost:5001/app", NULL, NULL, NULL));
        ASSERT(found(NULL, "localhost/app", NULL, NULL, NULL));
        ASSERT(found(NULL, "r.example/a/b", "r", NULL, home_cfg));
        ASSERT(found(NULL, "r2.example/x", "r2", NULL, home_cfg));
        ASSERT(found(NULL, "R2.EXAMPLE/x", "r2", NULL, home_cfg));
        ASSERT(found(NULL, "r3.example/x", NULL, NULL, NULL));
        ASSERT(found(NULL, "r3.example:443/x", "r3", NULL, home_cfg));
        /* a key without a scheme beats its legacy form, whichever comes first */
        ASSERT(found(NULL, "tie.example/x", "plain", NULL, home_cfg));
        ASSERT(found(NULL, "tie2.example/x", "plain2", NULL, home_cfg));
        /* repository-scoped keys: the most specific prefix at a '/' boundary */
        ASSERT(found(NULL, "s.example/team/app", "app", NULL, home_cfg));
        ASSERT(found(NULL, "s.example/team/app/sub", "app", NULL, home_cfg));
        ASSERT(found(NULL, "s.example/team/application", "team", NULL, home_cfg));
        ASSERT(found(NULL, "s.example/team/other", "team", NULL, home_cfg));
        ASSERT(found(NULL, "s.example/teamx/a", "host", NULL, home_cfg));
        ASSERT(found(NULL, "s.example/team/empty", "team", NULL, home_cfg));
        ASSERT(found(NULL, "s.example", "host", NULL, home_cfg));
        ASSERT(found(NULL, "s.example/", "host", NULL, home_cfg));
        /* a legacy key with a path counts as its host */
        ASSERT(found(NULL, "s2.example/other/thing", "s2", NULL, home_cfg));
        /* a broken entry only matters for its own registry */
        ASSERT(found(NULL, "unrelated.example/a", NULL, NULL, NULL));
        ASSERT(fails(NULL, "broken.example/a", "broken.example", "not base64"));
}

static void test_entries(void)
{
        reset();
        _cleanup_free_ char *colon = ossb_base64_encode("u:p:q", 5), *tokuser = ossb_base64_encode("tu:", 3);
        _cleanup_free_ char *nocolon = ossb_base64_encode("nocolonsecret", 13);
        _cleanup_free_ char *nul = ossb_base64_encode("a\0:b", 4);
        _cleanup_free_ char *json = NULL;
        ASSERT(colon && tokuser && nocolon && nul);
        ASSERT(asprintf(&json,
                        "{\"auths\":{"
                        "\"colon.example\":{\"auth\":\"%s\"},"
                        "\"idtok.example\":{\"identitytoken\":\"idtok-secret\"},"
                        "\"idtok2.example\":{\"auth\":\"%s\",\"identitytoken\":\"idtok-secret\"},"
                        "\"userpass.example\":{\"username\":\"up\",\"password\":\"p4ssw0rd\",\"email\":\"x@y\"},"
                        "\"nopass.example\":{\"username\":\"up\"},"
                        "\"emptyauth.example\":{\"auth\":\"\"},"
                        "\"nullauth.example\":{\"auth\":null},"
                        "\"nocolon.example\":{\"auth\":\"%s\"},"
                        "\"nul.example\":{\"auth\":\"%s\"},"
                        "\"badb64.example\":{\"auth\":\"notbase64-secretish\"},"
                        "\"notobj.example\":\"p4ssw0rd\""
                        "}}",
                        colon, tokuser, nocolon, nul) > 0);
        ASSERT_INTEQ(write_text(xdg_auth, json), 0);
        ASSERT(found(NULL, "colon.example/a", "u", "p:q", xdg_auth));
        struct ossb_credential c = { 0 };
        ASSERT_INTEQ(ossb_credentials_find(NULL, "idtok.example/a", &c, NULL), 0);
        ASSERT_STREQ(c.username, "<token>");
        ASSERT_STREQ(c.secret, "idtok-secret");
        ASSERT(c.identity_token);
        ossb_credential_clear(&c);
        ASSERT(!c.username && !c.secret && !c.source && !c.identity_token);
        ASSERT_INTEQ(ossb_credentials_find(NULL, "idtok2.example/a", &c, NULL), 0);
        ASSERT_STREQ(c.username, "tu");
        ASSERT_STREQ(c.secret, "idtok-secret");
        ASSERT(c.identity_token);
        ossb_credential_clear(&c);
        ASSERT(found(NULL, "userpass.example/a", "up", "p4ssw0rd", xdg_auth));
        ASSERT(found(NULL, "nopass.example/a", NULL, NULL, NULL));
        ASSERT(found(NULL, "emptyauth.example/a", NULL, NULL, NULL));
        ASSERT(found(NULL, "nullauth.example/a", NULL, NULL, NULL));
        ASSERT(fails(NULL, "nocolon.example/a", xdg_auth, "\"nocolon.example\" is not base64 of \"username:password\""));
        ASSERT(fails(NULL, "nul.example/a", "nul.example", "not base64"));
        ASSERT(fails(NULL, "badb64.example/a", xdg_auth, "badb64.example"));
        ASSERT(fails(NULL, "notobj.example/a", "\"notobj.example\" is not an object", NULL));
        /* an error names the registry too */
        ASSERT(fails(NULL, "notobj.example/a", "credentials for notobj.example", NULL));
}

static void test_file_errors(void)
{
        reset();
        ASSERT_INTEQ(write_text(cli_file, "{\"auths\":{\"x.example\":{\"auth\":\"c2VjcmV0\"}"), 0);
        ASSERT(fails(cli_file, "x.example/a", "--registry-auth-file", "truncated JSON"));
        ASSERT_INTEQ(write_text(cli_file, "[1]"), 0);
        ASSERT(fails(cli_file, "x.example/a", cli_file, "not a JSON object"));
        ASSERT_INTEQ(write_text(cli_file, "{\"auths\":[]}"), 0);
        ASSERT(fails(cli_file, "x.example/a", "`auths` is not an object", NULL));
        ASSERT_INTEQ(write_text(cli_file, "{\"credHelpers\":\"test\"}"), 0);
        ASSERT(fails(cli_file, "x.example/a", "`credHelpers` is not an object", NULL));
        ASSERT_INTEQ(write_text(cli_file, "{\"credHelpers\":{\"x.example\":5}}"), 0);
        ASSERT(fails(cli_file, "x.example/a", "`credHelpers` entry \"x.example\" is not a string", NULL));
        ASSERT_INTEQ(write_text(cli_file, "{\"credsStore\":5}"), 0);
        ASSERT(fails(cli_file, "x.example/a", "`credsStore` is not a string", NULL));
        ASSERT_INTEQ(write_text(cli_file, "{\"credsStore\":\"\"}"), 0);
        ASSERT(found(cli_file, "x.example/a", NULL, NULL, NULL));
        ASSERT_INTEQ(write_text(cli_file, "{\"auths\":{\"\\u0001bad\":{\"auth\":\"!\"}, \"x.example\":{\"auth\":\"!\"}}}"),
                     0);
        ASSERT(fails(cli_file, "x.example/a", "not base64", NULL));
        /* too large */
        size_t n = 1024 * 1024 + 1;
        _cleanup_free_ char *big = malloc(n + 1);
        ASSERT(big);
        memset(big, ' ', n);
        big[n] = '\0';
        ASSERT_INTEQ(write_text(cli_file, big), 0);
        ASSERT(fails(cli_file, "x.example/a", cli_file, "larger than"));
        /* not a regular file */
        ASSERT(fails(base, "x.example/a", base, "not a regular file"));
        /* unreadable (unless we are root) */
        if (geteuid() != 0) {
                ASSERT_INTEQ(write_text(cli_file, "{}"), 0);
                ASSERT_INTEQ(chmod(cli_file, 0), 0);
                ASSERT(fails(cli_file, "x.example/a", cli_file, "cannot open"));
        }
        /* a too long registry name */
        char longrepo[1100];
        memset(longrepo, 'a', sizeof(longrepo) - 1);
        longrepo[sizeof(longrepo) - 1] = '\0';
        ASSERT(fails(NULL, longrepo, "too long", NULL));
}

static char *read_log(void)
{
        char *data = NULL;
        size_t len;
        if (ossb_read_file(helper_log, 65536, &data, &len, NULL) < 0)
                return NULL;
        return data;
}

static void test_helpers(void)
{
        reset();
        setenv("DOCKER_CONFIG", dcfg_dir, 1);
        ASSERT_INTEQ(write_text(dcfg, "{\"auths\":{\"missing.example\":{\"username\":\"same\",\"password\":\"p4ssw0rd\"},"
                                      "\"docker.io\":{}, \"inline.example\":{\"username\":\"in\",\"password\":\"p4ssw0rd\"}},"
                                      "\"credHelpers\":{\"ok.example\":\"test\",\"token.example\":\"test\","
                                      "\"missing.example\":\"test\",\"fail.example\":\"test\",\"json-fail.example\":\"test\","
                                      "\"stderr.example\":\"test\",\"garbage.example\":\"test\","
                                      "\"nosecret.example\":\"test\",\"empty.example\":\"test\",\"array.example\":\"test\","
                                      "\"signal.example\":\"test\",\"big.example\":\"test\",\"slow.example\":\"test\","
                                      "\"leftover.example\":\"test\",\"absent.example\":\"nonexistent\","
                                      "\"badname.example\":\"../../bin/sh\"},"
                                      "\"credsStore\":\"test\"}"),
                     0);
        ASSERT_INTEQ(write_auths_one(xdg_auth, "missing.example", "xdg", "pw-d"), 0);
        _cleanup_free_ char *src = NULL;
        ASSERT(asprintf(&src, "docker-credential-test (credHelpers in %s)", dcfg) > 0);
        ASSERT(found(NULL, "ok.example/app", "helperuser", "helper-secret-1", src));
        struct ossb_credential c = { 0 };
        ASSERT_INTEQ(ossb_credentials_find(NULL, "token.example/app", &c, NULL), 0);
        ASSERT(c.identity_token && streq(c.username, "<token>") && streq(c.secret, "refresh-secret-2"));
        ossb_credential_clear(&c);
        /* credsStore, asked for Docker Hub's server URL; an inline entry is used before it */
        _cleanup_free_ char *store = NULL;
        ASSERT(asprintf(&store, "docker-credential-test (credsStore in %s)", dcfg) > 0);
        ASSERT(found(NULL, "docker.io/library/alpine", "hubuser", "hub-secret-3", store));
        ASSERT(found(NULL, "store.example:5000/app", "storeuser", "store-secret", store));
        ASSERT(found(NULL, "inline.example/app", "in", "p4ssw0rd", dcfg));
        _cleanup_free_ char *log = read_log();
        ASSERT(log && streq(log, "ok.example\ntoken.example\nhttps://index.docker.io/v1/\nstore.example:5000\n"));
        /* "not found": the next source (the credHelpers entry is authoritative for its file) */
        ASSERT(found(NULL, "missing.example/app", "xdg", "pw-d", xdg_auth));
        ASSERT(found(NULL, "nosecret.example/app", NULL, NULL, NULL));
        ASSERT(found(NULL, "empty.example/app", NULL, NULL, NULL));
        ASSERT(found(NULL, "unknown.example/app", NULL, NULL, NULL));
        /* failures name the helper, never the secret */
        ASSERT(fails(NULL, "fail.example/a", src, "exit status 1): error getting credentials - err: exit status 2, "
                                                  "out: gpg: decryption failed"));
        ASSERT(fails(NULL, "json-fail.example/a", "docker-credential-test", "exit status 1)"));
        ASSERT(fails(NULL, "stderr.example/a", "exit status 2): complaint on stderr", NULL));
        ASSERT(fails(NULL, "garbage.example/a", "docker-credential-test", "invalid answer"));
        ASSERT(fails(NULL, "array.example/a", "docker-credential-test", "not a JSON object"));
        ASSERT(fails(NULL, "signal.example/a", "docker-credential-test", "killed by signal 9"));
        ASSERT(fails(NULL, "big.example/a", "docker-credential-test", "larger than"));
        ASSERT(fails(NULL, "absent.example/a", "docker-credential-nonexistent (credHelpers in", "not found in $PATH"));
        ASSERT(fails(NULL, "badname.example/a", "invalid credential helper name", NULL));
        ossb_credentials_set_helper_timeout(300);
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        ASSERT(fails(NULL, "slow.example/a", "docker-credential-test", "no answer within 0.3 s"));
        /* a helper that leaves a process holding its stdout does not keep us waiting */
        ossb_credentials_set_helper_timeout(0);
        ASSERT(found(NULL, "leftover.example/a", "u", "leftover-secret-5", src));
        clock_gettime(CLOCK_MONOTONIC, &t1);
        ASSERT((t1.tv_sec - t0.tv_sec) < 2);
}

int main(void)
{
        if (setup() < 0) {
                perror("setup");
                return 1;
        }
        RUN_TEST(test_anonymous);
        RUN_TEST(test_order);
        RUN_TEST(test_keys);
        RUN_TEST(test_entries);
        RUN_TEST(test_file_errors);
        RUN_TEST(test_helpers);
        ossb_rm_rf(base);
        TAP_END();
}
