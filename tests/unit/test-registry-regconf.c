/* tests/unit/test-registry-regconf.c - registry/regconf.c: the registries.conf reader, options,
 * prefix matching and rewriting, the insecure-host rules and the certs.d lookup (in temp dirs). */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fs.h"
#include "common/strbuf.h"
#include "registry/regconf.h"
#include "tests/unit/tap.h"

static char tmpdir[] = "/tmp/ossb-regconf-XXXXXX";

static struct ossb_regconf *empty_conf(void)
{
        struct ossb_regconf *c = NULL;
        if (ossb_regconf_new(NULL, NULL, NULL, NULL, &c, NULL) < 0)
                return NULL;
        return c;
}

static int parse_text(struct ossb_regconf *c, const char *text, struct ossb_error **err)
{
        return ossb_regconf_parse(c, "test.conf", text, strlen(text), err);
}

/* Parsing `text` fails with "test.conf:LINE: ..." containing why. */
static int bad_conf(const char *text, int line, const char *why)
{
        struct ossb_regconf *c = empty_conf();
        struct ossb_error *err = NULL;
        char where[64];
        snprintf(where, sizeof(where), "test.conf:%d: ", line);
        int r = c ? parse_text(c, text, &err) : -ENOMEM;
        int ok = r == -EINVAL && err && err->exit_code == OSSB_EXIT_USAGE && strncmp(err->msg, where, strlen(where)) == 0 &&
                 strstr(err->msg, why) && c->n_registries == 0;
        if (!ok)
                fprintf(stderr, "# [%s]: expected `%s%s`, got %d %s\n", text, where, why, r, err ? err->msg : "");
        ossb_error_free(err);
        ossb_regconf_free(c);
        return ok;
}

static const char sample[] =
        "# registries.conf\n"
        "unqualified-search-registries = [\"docker.io\", # comment inside\n"
        "   'quay.io',\n"
        "]\n"
        "short-name-mode = \"enforcing\"\n"
        "credential-helpers = [ \"containers-auth.json\" ]\n"
        "\n"
        "[[registry]]\n"
        "prefix = \"docker.io\"\n"
        "location = \"docker.io\"   # trailing comment\n"
        "mirror-by-digest-only = false\n"
        "\n"
        "  [[registry.mirror]]\n"
        "  location = \"mirror.example:5000\"\n"
        "  insecure = true\n"
        "  pull-from-mirror = \"all\"\n"
        "\n"
        "  [[registry.mirror]]\n"
        "  location = \"https://mirror2.example/sub/\"\n"
        "\n"
        "[[ registry ]]\n"
        "location = 'plain.example:5000'\n"
        "insecure = true\n"
        "\n"
        "[[registry]]\n"
        "prefix = \"example.com/team\"\n"
        "location = \"internal.example/t\"\n"
        "blocked = false\n"
        "\n"
        "[[registry]]\n"
        "\"prefix\" = \"blocked.example\"\n"
        "blocked = true\n"
        "\n"
        "[[registry]]\n"
        "prefix = \"*.wild.example\"\n"
        "insecure = true\n"
        "\n"
        "[aliases]\n"
        "\"fedora\" = \"registry.fedoraproject.org/fedora\"\n"
        "location = 42\n"
        "\n"
        "[registries.search]\n"
        "registries = ['a', \"b\"]\n"
        "[[other.tables]]\n"
        "x = { a = 1, b = [1, 2], c = { d = \"e\" } }\n"
        "y = 1979-05-27T07:32:00Z\n"
        "z = +1.5e3\n"
        "dotted.key.here = true\n";

static void test_parse_sample(void)
{
        struct ossb_regconf *c = empty_conf();
        struct ossb_error *err = NULL;
        ASSERT(c);
        int r = parse_text(c, sample, &err);
        if (r < 0)
                fprintf(stderr, "# %s\n", err->msg);
        ASSERT_INTEQ(r, 0);
        ASSERT_INTEQ(c->n_registries, 5);
        const struct ossb_regconf_registry *hub = &c->registries[0];
        ASSERT_STREQ(hub->prefix, "docker.io");
        ASSERT_STREQ(hub->location, "docker.io");
        ASSERT(!hub->insecure && !hub->blocked);
        ASSERT_INTEQ(hub->n_mirrors, 2);
        ASSERT_STREQ(hub->mirrors[0].location, "mirror.example:5000");
        ASSERT(hub->mirrors[0].insecure);
        ASSERT_STREQ(hub->mirrors[1].location, "mirror2.example/sub");
        ASSERT(!hub->mirrors[1].insecure);
        ASSERT_STREQ(c->registries[1].prefix, "plain.example:5000");
        ASSERT_STREQ(c->registries[1].location, "plain.example:5000");
        ASSERT(c->registries[1].insecure);
        ASSERT_STREQ(c->registries[2].prefix, "example.com/team");
        ASSERT_STREQ(c->registries[2].location, "internal.example/t");
        ASSERT_STREQ(c->registries[3].prefix, "blocked.example");
        ASSERT_STREQ(c->registries[3].location, "blocked.example");
        ASSERT(c->registries[3].blocked);
        ASSERT_STREQ(c->registries[4].prefix, "*.wild.example");
        ASSERT(!c->registries[4].location);
        /* a second parse appends */
        ASSERT_INTEQ(parse_text(c, "[[registry]]\nlocation=\"more.example\"\n", NULL), 0);
        ASSERT_INTEQ(c->n_registries, 6);
        ossb_regconf_free(c);
}

static void test_parse_strings(void)
{
        struct ossb_regconf *c = empty_conf();
        ASSERT(c);
        const char *text = "[[registry]]\r\n"
                           "prefix = \"esc\\u0061ped.example/x\"\r\n"
                           "location = \"\"\"\nmulti.example\"\"\"\n"
                           "[[registry]]\n"
                           "location = '''raw.example'''\n"
                           "ignored = \"\"\"a \\\n   b \"\" \"\"\"\n"
                           "ignored2 = '''it''s'''\n"
                           "ignored3 = \"tab\\tnl\\n\\b\\f\\r\\\"\\\\\\e\\U0001F600\\u00e9\\u0800\"\n"
                           "ignored4 = \"\"\"x\"\"\"\"\"\n"
                           "ignored5 = \"\"\"\r\nline1\r\nline2\"\"\"\n";
        struct ossb_error *err = NULL;
        int r = parse_text(c, text, &err);
        if (r < 0)
                fprintf(stderr, "# %s\n", err->msg);
        ASSERT_INTEQ(r, 0);
        ASSERT_INTEQ(c->n_registries, 2);
        ASSERT_STREQ(c->registries[0].prefix, "escaped.example/x");
        ASSERT_STREQ(c->registries[0].location, "multi.example");
        ASSERT_STREQ(c->registries[1].location, "raw.example");
        ossb_regconf_free(c);
}

static void test_parse_errors(void)
{
        ASSERT(bad_conf("[[registry]]\nlocation = \"unterminated\n", 2, "unterminated string"));
        ASSERT(bad_conf("\n\n[[registry.mirror]]\nlocation = \"m\"\n", 3, "before any [[registry]]"));
        ASSERT(bad_conf("[[registry]]\ninsecure = true\n[[registry]]\nlocation = \"x\"\n", 1,
                        "without a `prefix` or `location`"));
        ASSERT(bad_conf("[[registry]]\nlocation = \"x\"\n[[registry.mirror]]\ninsecure = true\n", 3,
                        "[[registry.mirror]] without a `location`"));
        ASSERT(bad_conf("[[registry]]\nlocation = \"x\"\ninsecure = \"yes\"\n", 3, "`insecure` must be true or false"));
        ASSERT(bad_conf("[[registry]]\nlocation = 5\n", 2, "`location` must be a string"));
        ASSERT(bad_conf("[[registry]]\nlocation = \"x\"\nlocation = \"y\"\n", 3, "`location` is set twice"));
        ASSERT(bad_conf("[[registry]]\nlocation = \"x\"\nblocked = true\nblocked = false\n", 4, "set twice"));
        ASSERT(bad_conf("garbage\n", 1, "expected '='"));
        ASSERT(bad_conf("a = \n", 1, "expected a value"));
        ASSERT(bad_conf("= 1\n", 1, "expected a key"));
        ASSERT(bad_conf("a = 1 b\n", 1, "expected the end of the line"));
        ASSERT(bad_conf("[registry]\nlocation = \"x\"\n", 1, "must be an array of tables"));
        ASSERT(bad_conf("[registry.mirror]\n", 1, "must be an array of tables"));
        ASSERT(bad_conf("[[registry]\n", 1, "expected ']]'"));
        ASSERT(bad_conf("[aliases\n", 1, "expected ']'"));
        ASSERT(bad_conf("[[registry]]\nprefix = \"*.w.example\"\nlocation = \"x\"\n", 1, "wildcard"));
        ASSERT(bad_conf("[[registry]]\nprefix = \"a*b\"\n", 2, "not a valid prefix"));
        ASSERT(bad_conf("[[registry]]\nprefix = \"*.\"\n", 2, "not a valid prefix"));
        ASSERT(bad_conf("[[registry]]\nlocation = \"has space\"\n", 2, "not a valid registry location"));
        ASSERT(bad_conf("[[registry]]\nlocation = \"\"\n", 2, "not a valid registry location"));
        ASSERT(bad_conf("[[registry]]\nlocation = \"ünicode\"\n", 2, "not a valid registry location"));
        ASSERT(bad_conf("a = \"\\q\"\n", 1, "invalid escape"));
        ASSERT(bad_conf("a = \"\\u12\"\n", 1, "invalid \\u escape"));
        ASSERT(bad_conf("a = \"\\uD800\"\n", 1, "invalid Unicode"));
        ASSERT(bad_conf("a = \"\\u0000\"\n", 1, "invalid Unicode"));
        ASSERT(bad_conf("a = \"\\U00110000\"\n", 1, "invalid Unicode"));
        ASSERT(bad_conf("a = \"ctl\x01\"\n", 1, "control character"));
        ASSERT(bad_conf("a = 'lit\n'\n", 1, "unterminated string"));
        ASSERT(bad_conf("a = \"\"\"never closed\n\n", 3, "unterminated string"));
        ASSERT(bad_conf("a = \"\"\"x\"\"\"\"\"\"\n", 1, "too many quotes"));
        ASSERT(bad_conf("a = \"\"\"bare\rcr\"\"\"\n", 1, "bare carriage return"));
        ASSERT(bad_conf("a = [1, 2\nb = 3\n", 2, "expected ',' or ']'"));
        ASSERT(bad_conf("a = { b = 1\n", 1, "expected ',' or '}'"));
        ASSERT(bad_conf("a = { b 1 }\n", 1, "expected '='"));
        ASSERT(bad_conf("a = \"x\"\r\rb = 1\n", 1, "expected the end of the line"));
        ASSERT(bad_conf("a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q = 1\n", 1, "too many parts"));
        /* nesting is bounded */
        struct ossb_strbuf sb = OSSB_STRBUF_INIT;
        ASSERT(ossb_strbuf_append(&sb, "\n\na = ") == 0);
        for (int i = 0; i < 100; i++)
                ASSERT(ossb_strbuf_append_c(&sb, '[') == 0);
        int ok = bad_conf(sb.buf, 3, "nested too deeply");
        ossb_strbuf_free(&sb);
        ASSERT(ok);
        /* a NUL byte is named with its line */
        struct ossb_regconf *c = empty_conf();
        struct ossb_error *err = NULL;
        ASSERT_INTEQ(ossb_regconf_parse(c, "n.conf", "a = 1\nb = \"x\0y\"\n", 15, &err), -EINVAL);
        ASSERT_STREQ(err->msg, "n.conf:2: NUL byte");
        ossb_error_free(err);
        ossb_regconf_free(c);
}

/* After an error, the registries the failed parse added are gone; earlier ones stay. */
static void test_parse_rollback(void)
{
        struct ossb_regconf *c = empty_conf();
        ASSERT(c);
        ASSERT_INTEQ(parse_text(c, "[[registry]]\nlocation=\"keep.example\"\n", NULL), 0);
        ASSERT_INTEQ(parse_text(c, "[[registry]]\nlocation=\"a\"\n[[registry.mirror]]\nlocation=\"m\"\n[[registry]]\n"
                                   "location=\"b\"\nbad",
                                NULL),
                     -EINVAL);
        ASSERT_INTEQ(c->n_registries, 1);
        ASSERT_STREQ(c->registries[0].location, "keep.example");
        /* many entries (arrays grow) */
        struct ossb_strbuf sb = OSSB_STRBUF_INIT;
        for (int i = 0; i < 40; i++) {
                ASSERT(ossb_strbuf_appendf(&sb, "[[registry]]\nlocation = \"r%d.example\"\n", i) == 0);
                for (int k = 0; k < 5; k++)
                        ASSERT(ossb_strbuf_appendf(&sb, "[[registry.mirror]]\nlocation = \"m%d.example\"\n", k) == 0);
        }
        int r = parse_text(c, sb.buf, NULL);
        ossb_strbuf_free(&sb);
        ASSERT_INTEQ(r, 0);
        ASSERT_INTEQ(c->n_registries, 41);
        ASSERT_STREQ(c->registries[40].location, "r39.example");
        ASSERT_INTEQ(c->registries[40].n_mirrors, 5);
        ASSERT_STREQ(c->registries[40].mirrors[4].location, "m4.example");
        /* too large */
        struct ossb_error *err = NULL;
        ASSERT_INTEQ(ossb_regconf_parse(c, "big.conf", "", OSSB_REGCONF_MAX_SIZE + 1, &err), -EFBIG);
        ASSERT(strstr(err->msg, "big.conf"));
        ossb_error_free(err);
        ossb_regconf_free(c);
}

static void test_limits(void)
{
        struct ossb_regconf *c = empty_conf();
        ASSERT(c);
        struct ossb_strbuf sb = OSSB_STRBUF_INIT;
        ASSERT(ossb_strbuf_append(&sb, "[[registry]]\nlocation = \"r.example\"\n") == 0);
        for (int k = 0; k <= OSSB_REGCONF_MAX_MIRRORS; k++)
                ASSERT(ossb_strbuf_append(&sb, "[[registry.mirror]]\nlocation = \"m\"\n") == 0);
        struct ossb_error *err = NULL;
        int r = parse_text(c, sb.buf, &err);
        ossb_strbuf_free(&sb);
        ASSERT_INTEQ(r, -EINVAL);
        ASSERT(strstr(err->msg, "more than 256 mirrors"));
        ossb_error_free(err);
        err = NULL;
        for (int i = 0; i <= OSSB_REGCONF_MAX_REGISTRIES; i++)
                ASSERT(ossb_strbuf_append(&sb, "[[registry]]\nlocation = \"r\"\n") == 0);
        r = parse_text(c, sb.buf, &err);
        ossb_strbuf_free(&sb);
        ASSERT_INTEQ(r, -EINVAL);
        ASSERT(strstr(err->msg, "more than 4096"));
        ASSERT_INTEQ(c->n_registries, 0);
        ossb_error_free(err);
        ossb_regconf_free(c);
}

static int write_text(const char *path, const char *text)
{
        return ossb_write_file_atomic(path, text, strlen(text), 0644, NULL);
}

static void test_new(void)
{
        struct ossb_regconf *c = NULL;
        struct ossb_error *err = NULL;
        _cleanup_free_ char *conf = NULL;
        ASSERT(asprintf(&conf, "%s/registries.conf", tmpdir) > 0);
        ASSERT_INTEQ(write_text(conf, "[[registry]]\nprefix = \"docker.io\"\nlocation = \"docker.io\"\n"
                                      "[[registry.mirror]]\nlocation = \"conf-mirror.example\"\n"),
                     0);
        char *insecure[] = { (char *) "http://plain.example:5000/", (char *) "10.1.0.0/16", NULL };
        char *mirrors[] = { (char *) "http://cli-mirror.example:5000", (char *) "https://secure-mirror.example/",
                            (char *) "bare.example", NULL };
        ASSERT_INTEQ(ossb_regconf_new(insecure, mirrors, conf, "/my/certs", &c, &err), 0);
        ASSERT_STREQ(c->insecure_hosts[0], "plain.example:5000");
        ASSERT_STREQ(c->insecure_hosts[1], "10.1.0.0/16");
        ASSERT(!c->insecure_hosts[2]);
        ASSERT_INTEQ(c->n_registries, 1);
        ASSERT_INTEQ(c->registries[0].n_mirrors, 4);
        ASSERT_STREQ(c->registries[0].mirrors[0].location, "cli-mirror.example:5000");
        ASSERT(c->registries[0].mirrors[0].insecure);
        ASSERT_STREQ(c->registries[0].mirrors[1].location, "secure-mirror.example");
        ASSERT(!c->registries[0].mirrors[1].insecure);
        ASSERT_STREQ(c->registries[0].mirrors[2].location, "bare.example");
        ASSERT_STREQ(c->registries[0].mirrors[3].location, "conf-mirror.example");
        ASSERT_STREQ(c->cert_dirs[0], "/my/certs");
        ASSERT_STREQ(c->cert_dirs[1], "/etc/containers/certs.d");
        ASSERT_STREQ(c->cert_dirs[2], "/etc/docker/certs.d");
        ASSERT(!c->cert_dirs[3]);
        ossb_regconf_free(c);
        c = NULL;

        /* no conf: the docker.io entry is made for the mirrors */
        char *one[] = { (char *) "mirror.example", NULL };
        ASSERT_INTEQ(ossb_regconf_new(NULL, one, NULL, NULL, &c, NULL), 0);
        ASSERT_INTEQ(c->n_registries, 1);
        ASSERT_STREQ(c->registries[0].prefix, "docker.io");
        ASSERT_STREQ(c->registries[0].location, "docker.io");
        ASSERT_STREQ(c->registries[0].mirrors[0].location, "mirror.example");
        ASSERT(c->insecure_hosts && !c->insecure_hosts[0]);
        ASSERT_STREQ(c->cert_dirs[0], "/etc/containers/certs.d");
        ossb_regconf_free(c);
        c = NULL;
        ossb_regconf_free(NULL);

        /* bad values */
        char *badm[] = { (char *) "http://", NULL };
        ASSERT_INTEQ(ossb_regconf_new(NULL, badm, NULL, NULL, &c, &err), -EINVAL);
        ASSERT(strstr(err->msg, "--registry-mirror") && err->exit_code == OSSB_EXIT_USAGE);
        ossb_error_free(err);
        err = NULL;
        char *badi[] = { (char *) "bad host", NULL };
        ASSERT_INTEQ(ossb_regconf_new(badi, NULL, NULL, NULL, &c, &err), -EINVAL);
        ASSERT(strstr(err->msg, "--insecure-registry"));
        ossb_error_free(err);
        err = NULL;
        ASSERT_INTEQ(ossb_regconf_new(NULL, NULL, "/nonexistent/registries.conf", NULL, &c, &err), -ENOENT);
        ASSERT(strstr(err->msg, "/nonexistent/registries.conf"));
        ossb_error_free(err);
        err = NULL;
        ASSERT_INTEQ(write_text(conf, "[[registry]]\n\nlocation = [\n"), 0);
        ASSERT_INTEQ(ossb_regconf_new(NULL, NULL, conf, NULL, &c, &err), -EINVAL);
        ASSERT(strstr(err->msg, conf) && strstr(err->msg, ":4: "));
        ossb_error_free(err);
        ASSERT(!c);
}

static void test_match_rewrite(void)
{
        struct ossb_regconf *c = empty_conf();
        ASSERT(c);
        ASSERT_INTEQ(parse_text(c, "[[registry]]\nlocation = \"example.com\"\n"
                                   "[[registry]]\nprefix = \"example.com/team\"\nlocation = \"internal.example:5000/t\"\n"
                                   "[[registry.mirror]]\nlocation = \"mirror.example/m\"\n"
                                   "[[registry]]\nprefix = \"example.com/team/app\"\nblocked = true\nlocation = \"x\"\n"
                                   "[[registry]]\nprefix = \"*.wild.example\"\n"
                                   "[[registry]]\nprefix = \"*.sub.wild.example\"\nblocked = true\n",
                                NULL),
                     0);
        const struct ossb_regconf_registry *r = ossb_regconf_match(c, "example.com/team/other");
        ASSERT(r && streq(r->prefix, "example.com/team"));
        ASSERT(ossb_regconf_match(c, "example.com/team/app")->blocked);
        ASSERT(ossb_regconf_match(c, "example.com/team/app/sub")->blocked);
        ASSERT_STREQ(ossb_regconf_match(c, "example.com/team/application")->prefix, "example.com/team");
        ASSERT_STREQ(ossb_regconf_match(c, "example.com/teamx/a")->prefix, "example.com");
        ASSERT_STREQ(ossb_regconf_match(c, "example.com")->prefix, "example.com");
        ASSERT(!ossb_regconf_match(c, "example.comx/a"));
        ASSERT(!ossb_regconf_match(c, "other.example/a"));
        ASSERT(!ossb_regconf_match(c, NULL));
        ASSERT(!ossb_regconf_match(NULL, "example.com/a"));
        ASSERT_STREQ(ossb_regconf_match(c, "a.wild.example/x/y")->prefix, "*.wild.example");
        ASSERT_STREQ(ossb_regconf_match(c, "A.Wild.Example:5000/x")->prefix, "*.wild.example");
        ASSERT(ossb_regconf_match(c, "b.sub.wild.example/x")->blocked);
        ASSERT(!ossb_regconf_match(c, "wild.example/x"));

        char *s = NULL;
        ASSERT_INTEQ(ossb_regconf_rewrite(r, r->location, "example.com/team/other", &s), 0);
        ASSERT_STREQ(s, "internal.example:5000/t/other");
        free(s);
        ASSERT_INTEQ(ossb_regconf_rewrite(r, r->mirrors[0].location, "example.com/team/a/b", &s), 0);
        ASSERT_STREQ(s, "mirror.example/m/a/b");
        free(s);
        ASSERT_INTEQ(ossb_regconf_rewrite(r, NULL, "example.com/team/a", &s), 0);
        ASSERT_STREQ(s, "example.com/team/a");
        free(s);
        ASSERT_INTEQ(ossb_regconf_rewrite(r, "x", "other/team/a", &s), -EINVAL);
        const struct ossb_regconf_registry *w = ossb_regconf_match(c, "a.wild.example/x/y");
        ASSERT_INTEQ(ossb_regconf_rewrite(w, "m.example", "a.wild.example/x/y", &s), 0);
        ASSERT_STREQ(s, "m.example/x/y");
        free(s);
        ossb_regconf_free(c);
}

static void test_insecure(void)
{
        struct ossb_regconf *c = NULL;
        char *hosts[] = { (char *) "plain.example:5000", (char *) "anyport.example", (char *) "10.1.0.0/16",
                          (char *) "fd00::/8", (char *) "[2001:db8::1]", (char *) "bad/cidr", (char *) "1.2.3.4/99",
                          NULL };
        char *mirrors[] = { (char *) "http://insecure-mirror.example", (char *) "secure-mirror.example", NULL };
        ASSERT_INTEQ(ossb_regconf_new(hosts, mirrors, NULL, NULL, &c, NULL), 0);
        ASSERT_INTEQ(parse_text(c, "[[registry]]\nlocation = \"conf-insecure.example:443/path\"\ninsecure = true\n"
                                   "[[registry]]\nlocation = \"conf-secure.example\"\n"
                                   "[[registry.mirror]]\nlocation = \"conf-mirror.example:81\"\ninsecure = true\n"
                                   "[[registry]]\nlocation = \"http://scheme-insecure.example\"\n"
                                   "[[registry]]\nprefix = \"*.wild.example\"\ninsecure = true\n",
                                NULL),
                     0);
        /* loopback, as Docker allows */
        const char *yes[] = { "localhost", "localhost:5000", "LOCALHOST:1", "127.0.0.1", "127.0.0.1:5000", "127.1.2.3:80",
                              "[::1]", "[::1]:5000", "::1", "plain.example:5000", "anyport.example",
                              "anyport.example:1234", "ANYPORT.example:1", "10.1.2.3", "10.1.255.255:5000",
                              "[fd12::1]:443", "[2001:db8::1]:5000", "insecure-mirror.example",
                              "conf-insecure.example:443", "conf-mirror.example:81", "scheme-insecure.example",
                              "a.wild.example", "a.wild.example:5000" };
        const char *no[] = { "", "localhostx", "localhost.evil.example", "127.0.0.1.nip.io", "128.0.0.1", "[::2]",
                             "localhost:abc", "localhost:", "localhost:123456", "[::1", "[::1]x", "plain.example",
                             "plain.example:5001", "10.2.0.1", "secure-mirror.example", "conf-secure.example",
                             "conf-insecure.example", "conf-mirror.example", "wild.example", "example.com",
                             "[fe80::1]", "2001:db8::2" };
        for (size_t i = 0; i < ELEMENTSOF(yes); i++) {
                if (!ossb_regconf_insecure(c, yes[i]))
                        fprintf(stderr, "# %s should be insecure\n", yes[i]);
                ASSERT(ossb_regconf_insecure(c, yes[i]));
        }
        for (size_t i = 0; i < ELEMENTSOF(no); i++) {
                if (ossb_regconf_insecure(c, no[i]))
                        fprintf(stderr, "# %s should not be insecure\n", no[i]);
                ASSERT(!ossb_regconf_insecure(c, no[i]));
        }
        ASSERT(!ossb_regconf_insecure(c, NULL));
        ASSERT(ossb_regconf_insecure(NULL, "127.0.0.1:1"));
        ossb_regconf_free(c);
}

static int touch(const char *dir, const char *name)
{
        _cleanup_free_ char *p = NULL;
        if (asprintf(&p, "%s/%s", dir, name) < 0)
                return -1;
        return write_text(p, "x\n");
}

static void test_tls_files(void)
{
        _cleanup_free_ char *certs = NULL, *hostdir = NULL, *other = NULL, *v6 = NULL;
        ASSERT(asprintf(&certs, "%s/certs.d", tmpdir) > 0);
        ASSERT(asprintf(&hostdir, "%s/reg.example:5000", certs) > 0);
        ASSERT(asprintf(&other, "%s/reg.example", certs) > 0);
        ASSERT(asprintf(&v6, "%s/[::1]:5000", certs) > 0);
        ASSERT_INTEQ(ossb_mkdir_p(hostdir, 0755), 0);
        ASSERT_INTEQ(ossb_mkdir_p(other, 0755), 0);
        ASSERT_INTEQ(ossb_mkdir_p(v6, 0755), 0);
        ASSERT(touch(hostdir, "b.crt") == 0 && touch(hostdir, "ca.crt") == 0 && touch(hostdir, "a.crt") == 0);
        ASSERT(touch(hostdir, "client.cert") == 0 && touch(hostdir, "client.key") == 0);
        ASSERT(touch(hostdir, "aaa.cert") == 0 && touch(hostdir, "aaa.key") == 0);
        ASSERT(touch(hostdir, ".hidden.crt") == 0 && touch(hostdir, "README") == 0);
        _cleanup_free_ char *dircrt = NULL;
        ASSERT(asprintf(&dircrt, "%s/dir.crt", hostdir) > 0 && mkdir(dircrt, 0755) == 0);
        ASSERT(touch(other, "only.crt") == 0);
        ASSERT(touch(v6, "first.cert") == 0 && touch(v6, "first.key") == 0);

        struct ossb_regconf *c = NULL;
        ASSERT_INTEQ(ossb_regconf_new(NULL, NULL, NULL, certs, &c, NULL), 0);
        char **cas = NULL, *cert = NULL, *key = NULL;
        ASSERT_INTEQ(ossb_regconf_tls_files(c, "reg.example:5000", &cas, &cert, &key, NULL), 0);
        ASSERT(cas && ossb_strv_length(cas) == 3);
        ASSERT(strstr(cas[0], "/reg.example:5000/ca.crt") && strstr(cas[1], "/a.crt") && strstr(cas[2], "/b.crt"));
        ASSERT(cert && strstr(cert, "/reg.example:5000/client.cert"));
        ASSERT(key && strstr(key, "/reg.example:5000/client.key"));
        ossb_strv_free(cas);
        free(cert);
        free(key);
        /* exactly the host[:port] directory: no fallback from host:port to host */
        ASSERT_INTEQ(ossb_regconf_tls_files(c, "reg.example:5001", &cas, &cert, &key, NULL), 0);
        ASSERT(!cas && !cert && !key);
        ASSERT_INTEQ(ossb_regconf_tls_files(c, "reg.example", &cas, &cert, &key, NULL), 0);
        ASSERT(cas && strstr(cas[0], "/reg.example/only.crt") && !cas[1] && !cert && !key);
        ossb_strv_free(cas);
        /* the first pair by name when there is no client.cert */
        ASSERT_INTEQ(ossb_regconf_tls_files(c, "[::1]:5000", &cas, &cert, &key, NULL), 0);
        ASSERT(!cas && cert && strstr(cert, "/first.cert") && key && strstr(key, "/first.key"));
        free(cert);
        free(key);
        /* a certificate without its key, and the reverse */
        ASSERT(touch(hostdir, "lonely.cert") == 0);
        struct ossb_error *err = NULL;
        ASSERT_INTEQ(ossb_regconf_tls_files(c, "reg.example:5000", &cas, &cert, &key, &err), -ENOENT);
        ASSERT(strstr(err->msg, hostdir) && strstr(err->msg, "lonely.cert has no key lonely.key"));
        ossb_error_free(err);
        err = NULL;
        ASSERT(touch(v6, "other.key") == 0);
        ASSERT_INTEQ(ossb_regconf_tls_files(c, "[::1]:5000", &cas, &cert, &key, &err), -ENOENT);
        ASSERT(strstr(err->msg, "other.key has no certificate other.cert"));
        ossb_error_free(err);
        err = NULL;
        /* names that are not a directory name */
        ASSERT_INTEQ(ossb_regconf_tls_files(c, "../etc", &cas, &cert, &key, &err), -EINVAL);
        ossb_error_free(err);
        ASSERT_INTEQ(ossb_regconf_tls_files(c, "a/b", &cas, &cert, &key, NULL), -EINVAL);
        ASSERT_INTEQ(ossb_regconf_tls_files(c, "", &cas, &cert, &key, NULL), -EINVAL);
        /* a file where the directory would be is skipped */
        ASSERT(touch(certs, "file.example") == 0);
        ASSERT_INTEQ(ossb_regconf_tls_files(c, "file.example", &cas, &cert, &key, NULL), 0);
        ASSERT(!cas && !cert && !key);
        /* an unreadable directory is an error (unless we are root) */
        if (geteuid() != 0) {
                ASSERT(chmod(other, 0) == 0);
                err = NULL;
                ASSERT(ossb_regconf_tls_files(c, "reg.example", &cas, &cert, &key, &err) < 0);
                ASSERT(err && strstr(err->msg, other));
                ossb_error_free(err);
                ASSERT(chmod(other, 0755) == 0);
        }
        ossb_regconf_free(c);
}

int main(void)
{
        if (!mkdtemp(tmpdir)) {
                perror("mkdtemp");
                return 1;
        }
        RUN_TEST(test_parse_sample);
        RUN_TEST(test_parse_strings);
        RUN_TEST(test_parse_errors);
        RUN_TEST(test_parse_rollback);
        RUN_TEST(test_limits);
        RUN_TEST(test_new);
        RUN_TEST(test_match_rewrite);
        RUN_TEST(test_insecure);
        RUN_TEST(test_tls_files);
        ossb_rm_rf(tmpdir);
        TAP_END();
}
