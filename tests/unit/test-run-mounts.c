/* tests/unit/test-run-mounts.c - the RUN --mount parser (engine/run-mounts.c) against
 * BuildKit's rules: CSV fields, keys and aliases, bare flags, booleans, numbers, sizes, the
 * read-only defaults, per-type restrictions and their order dependence, `from` without
 * variables, expansion of the other values; the --secret parser; RAM sizes; from= names.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/error.h"
#include "common/strbuf.h"
#include "engine/run-mounts.h"
#include "tests/unit/tap.h"

static struct ossb_run_mount m;
static struct ossb_error *e;

static int parse(const char *spec)
{
        ossb_run_mount_clear(&m);
        ossb_error_free(e);
        e = NULL;
        return ossb_run_mount_parse(spec, NULL, NULL, &m, &e);
}

/* The parse fails with a usage error whose message contains `needle`. */
static int fails_with(const char *spec, const char *needle)
{
        if (parse(spec) >= 0) {
                fprintf(stderr, "# `%s` parsed\n", spec);
                return 0;
        }
        if (!e || e->exit_code != OSSB_EXIT_USAGE || !strstr(e->msg, needle)) {
                fprintf(stderr, "# `%s`: got \"%s\", wanted \"%s\"\n", spec, e ? e->msg : "(no error)", needle);
                return 0;
        }
        return 1;
}

static void test_defaults(void)
{
        ASSERT(parse("target=/x") == 0);
        ASSERT_INTEQ(m.type, OSSB_MOUNT_BIND);
        ASSERT_STREQ(m.target, "/x");
        ASSERT(m.readonly);
        ASSERT(!m.source && !m.from && !m.id && !m.env);
        ASSERT(parse("type=cache,target=/c") == 0);
        ASSERT(!m.readonly);
        ASSERT_INTEQ(m.sharing, OSSB_SHARING_UNSET);
        ASSERT(parse("type=tmpfs,target=/t") == 0);
        ASSERT(!m.readonly);
        ASSERT_INTEQ(m.size, 0);
        ASSERT(parse("type=secret,id=s") == 0);
        ASSERT(m.readonly && !m.required);
}

static void test_aliases_and_case(void)
{
        ASSERT(parse("TYPE=Bind,Src=a,DST=/b,From=stage") == 0);
        ASSERT_INTEQ(m.type, OSSB_MOUNT_BIND);
        ASSERT_STREQ(m.source, "a");
        ASSERT_STREQ(m.target, "/b");
        ASSERT_STREQ(m.from, "stage");
        ASSERT(parse("source=s,destination=/d") == 0);
        ASSERT_STREQ(m.source, "s");
        ASSERT_STREQ(m.target, "/d");
        ASSERT(parse("type=cache,target=/a,target=/b,sharing=LOCKED") == 0);
        ASSERT_STREQ(m.target, "/b"); /* the last one wins */
        ASSERT_INTEQ(m.sharing, OSSB_SHARING_LOCKED);
        ASSERT(parse("type=cache,target=/a,sharing=private") == 0);
        ASSERT_INTEQ(m.sharing, OSSB_SHARING_PRIVATE);
        ASSERT(parse("type=cache,target=/a,sharing=shared") == 0);
        ASSERT_INTEQ(m.sharing, OSSB_SHARING_SHARED);
        /* values keep their case, and may contain '=' */
        ASSERT(parse("target=/A=B") == 0);
        ASSERT_STREQ(m.target, "/A=B");
}

static void test_bools(void)
{
        ASSERT(parse("target=/x,rw") == 0);
        ASSERT(!m.readonly);
        ASSERT(parse("target=/x,readwrite=true") == 0);
        ASSERT(!m.readonly);
        ASSERT(parse("type=cache,target=/x,ro") == 0);
        ASSERT(m.readonly);
        ASSERT(parse("type=cache,target=/x,readonly=1") == 0);
        ASSERT(m.readonly);
        ASSERT(parse("target=/x,rw=F") == 0);
        ASSERT(m.readonly);
        ASSERT(parse("target=/x,ro=False") == 0);
        ASSERT(!m.readonly);
        ASSERT(parse("target=/x,rw=t,ro") == 0);
        ASSERT(m.readonly);
        ASSERT(fails_with("target=/x,rw=yes", "invalid value for rw: yes"));
        ASSERT(fails_with("target=/x,readonly=", "invalid value for readonly: "));
        ASSERT(parse("type=secret,id=a,required") == 0);
        ASSERT(m.required);
        ASSERT(parse("type=secret,id=a,required=true") == 0);
        ASSERT(m.required);
        ASSERT(parse("type=ssh,required=0") == 0);
        ASSERT(!m.required);
}

static void test_order_matters(void)
{
        /* BuildKit checks `required` and `size` against the type seen so far */
        ASSERT(fails_with("required,type=secret,id=a", "unexpected key 'required' for mount type 'bind'"));
        ASSERT(fails_with("required=true,type=secret,id=a", "unexpected key 'required' for mount type 'bind'"));
        ASSERT(fails_with("size=10m,type=tmpfs,target=/t", "unexpected key 'size' for mount type 'bind'"));
        ASSERT(fails_with("type=cache,target=/t,size=1", "unexpected key 'size' for mount type 'cache'"));
        ASSERT(parse("type=tmpfs,target=/t,size=10m") == 0);
        ASSERT_INTEQ(m.size, 10 * 1024 * 1024);
}

static void test_numbers(void)
{
        ASSERT(parse("type=cache,target=/c,uid=1000,gid=0,mode=0750") == 0);
        ASSERT(m.uid_set && m.gid_set && m.mode_set);
        ASSERT_INTEQ(m.uid, 1000);
        ASSERT_INTEQ(m.gid, 0);
        ASSERT_INTEQ(m.mode, 0750);
        ASSERT(parse("type=secret,id=s,mode=4755,uid=4294967295") == 0);
        ASSERT_INTEQ(m.mode, 04755);
        ASSERT_INTEQ(m.uid, 4294967295u);
        ASSERT(fails_with("type=cache,target=/c,uid=4294967296", "invalid value 4294967296 for uid"));
        ASSERT(fails_with("type=cache,target=/c,uid=-1", "invalid value -1 for uid"));
        ASSERT(fails_with("type=cache,target=/c,gid=x", "invalid value x for gid"));
        ASSERT(fails_with("type=cache,target=/c,mode=0789", "invalid value 0789 for mode"));
        ASSERT(fails_with("type=cache,target=/c,mode=", "invalid value  for mode"));
        ASSERT(fails_with("type=cache,target=/c,mode=0o755", "invalid value 0o755 for mode"));
        ASSERT(fails_with("target=/c,uid=0", "uid not allowed for \"bind\" type mounts"));
        ASSERT(fails_with("type=tmpfs,target=/c,mode=1777", "mode not allowed for \"tmpfs\" type mounts"));
        ASSERT(fails_with("type=tmpfs,target=/c,gid=1", "gid not allowed for \"tmpfs\" type mounts"));
}

static void test_sizes(void)
{
        static const struct { const char *s; int64_t v; } ok[] = {
                { "0", 0 }, { "1024", 1024 }, { "64k", 65536 }, { "64K", 65536 }, { "1m", 1048576 },
                { "1.5g", 1610612736 }, { "10 MiB", 10485760 }, { "2mb", 2097152 }, { "3b", 3 }, { "7i", 7 },
                { "1t", 1099511627776LL }, { "1p", 1125899906842624LL }, { "1 ", 1 },
        };
        static const char *const bad[] = { "", "k", "-1", "1.", ".5", "1x", "1kk", "1 k b", "1mbb", "1.2.3", " 1",
                                            "99999999999p" };
        for (size_t i = 0; i < ELEMENTSOF(ok); i++) {
                int64_t v = -1;
                ASSERT_INTEQ(ossb_parse_ram_size(ok[i].s, &v), 0);
                ASSERT_INTEQ(v, ok[i].v);
        }
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                int64_t v;
                if (ossb_parse_ram_size(bad[i], &v) >= 0)
                        fprintf(stderr, "# `%s` parsed\n", bad[i]);
                ASSERT(ossb_parse_ram_size(bad[i], &v) < 0);
        }
        ASSERT(fails_with("type=tmpfs,target=/t,size=lots", "invalid value for size: lots"));
}

static void test_csv(void)
{
        ASSERT(parse("\"target=/a,b\",type=bind") == 0);
        ASSERT_STREQ(m.target, "/a,b");
        ASSERT(parse("target=/x\n") == 0); /* a trailing newline is allowed */
        ASSERT_STREQ(m.target, "/x");
        ASSERT(parse("\"target=/q\"\"q\"") == 0);
        ASSERT_STREQ(m.target, "/q\"q");
        ASSERT(fails_with("target=/a\"b", "failed to parse csv mounts: bare \" in non-quoted-field"));
        ASSERT(fails_with("\"target=/a", "failed to parse csv mounts: extraneous or missing \" in quoted-field"));
        ASSERT(fails_with("\"target=/a\"x", "extraneous or missing \" in quoted-field"));
        ASSERT(fails_with("", "failed to parse csv mounts: EOF"));
        ASSERT(fails_with("target=/a,", "invalid field '' must be a key=value pair"));
        ASSERT(fails_with(" target=/a", "unexpected key ' target'")); /* no trimming */

        _cleanup_strv_free_ char **f = NULL;
        ASSERT(ossb_csv_fields("a,,\"b,c\",\"\"", &f, NULL) == 0);
        ASSERT_INTEQ(ossb_strv_length(f), 4);
        ASSERT_STREQ(f[1], "");
        ASSERT_STREQ(f[2], "b,c");
        ASSERT_STREQ(f[3], "");
}

static void test_errors(void)
{
        ASSERT(fails_with("type=nfs,target=/x", "unsupported mount type \"nfs\""));
        ASSERT(fails_with("target=/x,foo=bar", "unexpected key 'foo' in 'foo=bar'"));
        ASSERT(fails_with("target=/x,bogus", "invalid field 'bogus' must be a key=value pair"));
        ASSERT(fails_with("type=cache,target=/x,sharing=exclusive", "unsupported sharing value \"exclusive\""));
        ASSERT(fails_with("target=/x,sharing=locked", "invalid cache sharing set for bind mount"));
        ASSERT(fails_with("type=secret,id=a,from=x", "secret mount should not have a from"));
        ASSERT(fails_with("type=secret,id=a,sharing=shared", "secret mount should not define sharing"));
        ASSERT(fails_with("type=secret", "invalid secret mount. one of source, target required"));
        ASSERT(fails_with("type=secret,src=a,id=b", "both source and id can't be set"));
        ASSERT(fails_with("from=$STAGE,target=/x", "'from' doesn't support variable expansion"));
        ASSERT(fails_with("from=a${B}c,target=/x", "'from' doesn't support variable expansion"));
        ASSERT(parse("from=a$,target=/x") == 0); /* a trailing $ is no variable */
        ASSERT_STREQ(m.from, "a$");
        /* accepted as BuildKit accepts them (and ignores them where they mean nothing) */
        ASSERT(parse("type=bind,target=/x,env=FOO,id=z") == 0);
        ASSERT(parse("type=ssh") == 0);
        ASSERT_INTEQ(m.type, OSSB_MOUNT_SSH);
}

static void test_secret_fields(void)
{
        ASSERT(parse("type=secret,id=aws,target=/root/.aws/credentials,uid=1000,mode=0440,required") == 0);
        ASSERT_STREQ(m.id, "aws");
        ASSERT_STREQ(m.target, "/root/.aws/credentials");
        ASSERT(m.required && m.uid_set && m.mode_set);
        ASSERT(parse("type=secret,id=tok,env=TOKEN") == 0);
        ASSERT_STREQ(m.env, "TOKEN");
        ASSERT(parse("type=secret,src=tok,env=") == 0);
        ASSERT_STREQ(m.source, "tok");
        ASSERT_STREQ(m.env, "");
}

struct fake_env {
        int calls;
};

static int fake_expand(void *userdata, const char *word, char **ret, struct ossb_error **err)
{
        struct fake_env *x = userdata;
        x->calls++;
        if (strstr(word, "$BAD"))
                return ossb_error_setx(err, OSSB_EXIT_USAGE, -EINVAL, "bad substitution");
        /* "$T" -> "/tgt" */
        const char *d = strstr(word, "$T");
        if (!d)
                return (*ret = strdup(word)) ? 0 : -ENOMEM;
        return asprintf(ret, "%.*s/tgt%s", (int) (d - word), word, d + 2) < 0 ? -ENOMEM : 0;
}

static void test_expansion(void)
{
        struct fake_env x = { 0 };
        struct ossb_run_mount r;
        _cleanup_error_ struct ossb_error *err = NULL;
        ASSERT(ossb_run_mount_parse("type=cache,target=$T/x,id=$T,ro", fake_expand, &x, &r, &err) == 0);
        ASSERT_STREQ(r.target, "/tgt/x");
        ASSERT_STREQ(r.id, "/tgt");
        ASSERT_INTEQ(x.calls, 3); /* values only: not the bare flag */
        ossb_run_mount_clear(&r);
        ASSERT(ossb_run_mount_parse("target=$BAD", fake_expand, &x, &r, &err) < 0);
        ASSERT_STREQ(err->msg, "bad substitution");
}

static void test_secret_spec(void)
{
        struct ossb_secret_spec s;
        _cleanup_error_ struct ossb_error *err = NULL;
        ASSERT(ossb_secret_spec_parse("id=a,src=/f", &s, &err) == 0);
        ASSERT_STREQ(s.id, "a");
        ASSERT_STREQ(s.file, "/f");
        ASSERT(!s.env);
        ossb_secret_spec_clear(&s);
        ASSERT(ossb_secret_spec_parse("ID=a,source=/f,type=file", &s, &err) == 0);
        ASSERT_STREQ(s.file, "/f");
        ossb_secret_spec_clear(&s);
        ASSERT(ossb_secret_spec_parse("id=a,env=V", &s, &err) == 0);
        ASSERT(!s.file);
        ASSERT_STREQ(s.env, "V");
        ossb_secret_spec_clear(&s);
        ASSERT(ossb_secret_spec_parse("type=env,id=a,src=V", &s, &err) == 0); /* buildx: src names the variable */
        ASSERT(!s.file);
        ASSERT_STREQ(s.env, "V");
        ossb_secret_spec_clear(&s);
        /* neither: the variable ID when set, else the file ID */
        ASSERT(setenv("OSSB_TEST_SECRET_ID", "x", 1) == 0);
        ASSERT(ossb_secret_spec_parse("id=OSSB_TEST_SECRET_ID", &s, &err) == 0);
        ASSERT_STREQ(s.env, "OSSB_TEST_SECRET_ID");
        ossb_secret_spec_clear(&s);
        ASSERT(unsetenv("OSSB_TEST_SECRET_ID") == 0);
        ASSERT(ossb_secret_spec_parse("id=OSSB_TEST_SECRET_ID", &s, &err) == 0);
        ASSERT_STREQ(s.file, "OSSB_TEST_SECRET_ID");
        ossb_secret_spec_clear(&s);

        static const char *const bad[][2] = {
                { "src=/f", "secret missing ID" },
                { "id=", "secret missing ID" },
                { "id=a,src=/f,env=V", "not both" },
                { "id=a,type=ssh", "unsupported secret type \"ssh\"" },
                { "id=a,foo=1", "unexpected key 'foo'" },
                { "id=a,src", "invalid field 'src' must be a key=value pair" },
                { "id=\"a", "failed to parse csv secret" },
        };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                ossb_error_free(err);
                err = NULL;
                ASSERT(ossb_secret_spec_parse(bad[i][0], &s, &err) < 0);
                if (!strstr(err->msg, bad[i][1]))
                        fprintf(stderr, "# `%s`: \"%s\"\n", bad[i][0], err->msg);
                ASSERT(strstr(err->msg, bad[i][1]));
                ASSERT_INTEQ(err->exit_code, OSSB_EXIT_USAGE);
        }
}

static void test_from_names(void)
{
        char *specs[] = { "from=build,target=/a", "type=cache,target=/c,from=seed", "target=/b,from=build",
                          "from=,target=/x", "type=nope,from=skipped", "target=/y", NULL };
        _cleanup_strv_free_ char **names = NULL;
        ASSERT(ossb_run_mounts_from_names(specs, &names) == 0);
        ASSERT_INTEQ(ossb_strv_length(names), 2);
        ASSERT_STREQ(names[0], "build");
        ASSERT_STREQ(names[1], "seed");
        ossb_strv_free(names);
        names = NULL;
        ASSERT(ossb_run_mounts_from_names(NULL, &names) == 0);
        ASSERT(names && !names[0]);
}

int main(void)
{
        RUN_TEST(test_defaults);
        RUN_TEST(test_aliases_and_case);
        RUN_TEST(test_bools);
        RUN_TEST(test_order_matters);
        RUN_TEST(test_numbers);
        RUN_TEST(test_sizes);
        RUN_TEST(test_csv);
        RUN_TEST(test_errors);
        RUN_TEST(test_secret_fields);
        RUN_TEST(test_expansion);
        RUN_TEST(test_secret_spec);
        RUN_TEST(test_from_names);
        ossb_run_mount_clear(&m);
        ossb_error_free(e);
        TAP_END();
}
