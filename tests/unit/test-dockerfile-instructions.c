/* tests/unit/test-dockerfile-instructions.c - engine/dockerfile instructions: stages and meta
 * ARGs, typed fields of every instruction, flag validation, and every error path, with
 * BuildKit's messages (frontend/dockerfile/instructions). */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/error.h"
#include "common/strbuf.h"
#include "engine/dockerfile/instructions.h"
#include "engine/dockerfile/parser.h"
#include "tests/unit/tap.h"

struct fixture {
        struct ossb_dockerfile *df;
        struct ossb_df_plan *plan;
};

static void fixture_done(struct fixture *f)
{
        ossb_df_plan_free(f->plan);
        ossb_dockerfile_free(f->df);
}
#define _cleanup_fixture_ __attribute__((cleanup(fixture_done)))

static int plan(struct fixture *f, const char *text)
{
        _cleanup_error_ struct ossb_error *err = NULL;
        if (ossb_dockerfile_parse("Dockerfile", text, strlen(text), &f->df, &err) < 0 ||
            ossb_df_plan_new(f->df, &f->plan, &err) < 0) {
                fprintf(stderr, "# unexpected error: %s\n", err && err->msg ? err->msg : "?");
                return -1;
        }
        return 0;
}

/* The plan error for text (it must parse); NULL if there is none. */
static char *plan_error(const char *text)
{
        _cleanup_dockerfile_ struct ossb_dockerfile *df = NULL;
        _cleanup_df_plan_ struct ossb_df_plan *p = NULL;
        _cleanup_error_ struct ossb_error *err = NULL;
        if (ossb_dockerfile_parse("Dockerfile", text, strlen(text), &df, &err) < 0)
                return strdup("(parse failed)");
        if (ossb_df_plan_new(df, &p, &err) >= 0)
                return NULL;
        if (!err || err->exit_code != OSSB_EXIT_USAGE || err->code >= 0)
                return strdup("(wrong error object)");
        return strdup(err->msg);
}

#define ASSERT_PLAN_ERROR(text, expected)                       \
        do {                                                    \
                _cleanup_free_ char *_e = plan_error(text);     \
                ASSERT_STREQ(_e, expected);                     \
        } while (0)

#define ASSERT_PLAN_OK(text)                                    \
        do {                                                    \
                _cleanup_free_ char *_e = plan_error(text);     \
                ASSERT_STREQ(_e ? _e : "ok", "ok");             \
        } while (0)

/* The first instruction of the first stage of "FROM x\n" + text. */
#define FIRST(f, text) (plan(&(f), "FROM x\n" text) == 0 && (f).plan->stages[0].n_insts > 0 ? &(f).plan->stages[0].insts[0] : NULL)

static void test_stages(void)
{
        _cleanup_fixture_ struct fixture f = { 0 };
        ASSERT(plan(&f, "ARG A=1\nARG B\nFROM --platform=$BUILDPLATFORM golang AS Build\nRUN a\nFROM scratch\n"
                        "ARG C\nCOPY --from=build /x /y\nFROM build as Final.2\n") == 0);
        struct ossb_df_plan *p = f.plan;
        ASSERT_INTEQ(p->n_meta_args, 2);
        ASSERT_INTEQ(p->meta_args[0].kind, OSSB_DF_ARG);
        ASSERT_STREQ(p->meta_args[0].kvs[0].key, "A");
        ASSERT_STREQ(p->meta_args[0].kvs[0].value, "1");
        ASSERT(p->meta_args[1].kvs[0].value == NULL);
        ASSERT_INTEQ(p->n_stages, 3);
        ASSERT_STREQ(p->stages[0].name, "build");
        ASSERT_STREQ(p->stages[0].from.from_name, "build");
        ASSERT_STREQ(p->stages[0].from.from_image, "golang");
        ASSERT_STREQ(p->stages[0].from.from_platform, "$BUILDPLATFORM");
        ASSERT_INTEQ(p->stages[0].from.kind, OSSB_DF_FROM);
        ASSERT(p->stages[0].from.node == &f.df->insts[2]);
        ASSERT_INTEQ(p->stages[0].n_insts, 1);
        ASSERT(p->stages[1].name == NULL && p->stages[1].index == 1);
        ASSERT(p->stages[1].from.from_platform == NULL);
        ASSERT_INTEQ(p->stages[1].n_insts, 2);
        ASSERT_INTEQ(p->stages[1].insts[0].kind, OSSB_DF_ARG);
        ASSERT_STREQ(p->stages[2].name, "final.2");

        ASSERT(ossb_df_plan_find_stage(p, "BUILD") == &p->stages[0]);
        ASSERT(ossb_df_plan_find_stage(p, "final.2") == &p->stages[2]);
        ASSERT(ossb_df_plan_find_stage(p, "1") == &p->stages[1]);
        ASSERT(ossb_df_plan_find_stage(p, "2") == &p->stages[2]);
        ASSERT(ossb_df_plan_find_stage(p, "3") == NULL);
        ASSERT(ossb_df_plan_find_stage(p, "99999999999999999999999") == NULL);
        ASSERT(ossb_df_plan_find_stage(p, "1a") == NULL);
        ASSERT(ossb_df_plan_find_stage(p, "") == NULL);
        ASSERT(ossb_df_plan_find_stage(p, "nope") == NULL);

        ASSERT_PLAN_ERROR("RUN a\n", "Dockerfile:1: no build stage in current context");
        ASSERT_PLAN_ERROR("ARG a\n# c\nENV a b\nFROM x\n", "Dockerfile:3: no build stage in current context");
        ASSERT_PLAN_ERROR("ARG a\nARG b\n", "Dockerfile:1: dockerfile contains no stages to build");
        ASSERT_PLAN_ERROR("FROM a AS x\nFROM b AS X\n",
                          "Dockerfile:2: Duplicate stage name \"x\", stage names should be unique");
        ASSERT_PLAN_ERROR("FROM a AS 1x\n",
                          "Dockerfile:1: invalid name for build stage: \"1x\", name can't start with a number or contain symbols");
        ASSERT_PLAN_ERROR("FROM a AS a$b\n",
                          "Dockerfile:1: invalid name for build stage: \"a$b\", name can't start with a number or contain symbols");
        ASSERT_PLAN_ERROR("FROM\n", "Dockerfile:1: FROM requires either one or three arguments");
        ASSERT_PLAN_ERROR("FROM a b\n", "Dockerfile:1: FROM requires either one or three arguments");
        ASSERT_PLAN_ERROR("FROM a IS b\n", "Dockerfile:1: FROM requires either one or three arguments");
        ASSERT_PLAN_ERROR("FROM --platfrom=x a\n", "Dockerfile:1: unknown flag: --platfrom (did you mean platform?)");
        ASSERT_PLAN_ERROR("FROM --platform a\n", "Dockerfile:1: missing a value on flag: --platform");
        ASSERT_PLAN_OK("FROM a AS a-b_c.d9\n");
        ossb_df_plan_free(NULL);
}

static void test_flags(void)
{
        ASSERT_PLAN_ERROR("FROM x\nCOPY --foo a b\n", "Dockerfile:2: unknown flag: --foo (did you mean from?)");
        ASSERT_PLAN_ERROR("FROM x\nCOPY --chmown=1 a b\n", "Dockerfile:2: unknown flag: --chmown (did you mean chown?)");
        ASSERT_PLAN_ERROR("FROM x\nCOPY --zzzzzz a b\n", "Dockerfile:2: unknown flag: --zzzzzz");
        ASSERT_PLAN_ERROR("FROM x\nCOPY --=x a b\n", "Dockerfile:2: unknown flag: --");
        ASSERT_PLAN_ERROR("FROM x\nCOPY --from=a --from=b a b\n", "Dockerfile:2: duplicate flag specified: --from");
        ASSERT_PLAN_ERROR("FROM x\nCOPY --link --link=false a b\n", "Dockerfile:2: duplicate flag specified: --link");
        ASSERT_PLAN_ERROR("FROM x\nCOPY --link= a b\n", "Dockerfile:2: missing a value on flag: --link");
        ASSERT_PLAN_ERROR("FROM x\nCOPY --link=yes a b\n", "Dockerfile:2: expecting boolean value for flag --link, not: yes");
        ASSERT_PLAN_ERROR("FROM x\nCOPY --from a b\n", "Dockerfile:2: missing a value on flag: --from");
        ASSERT_PLAN_ERROR("FROM x\nCOPY --exclude a b\n", "Dockerfile:2: missing a value on flag: --exclude");
        ASSERT_PLAN_ERROR("FROM x\nENV --x=1 a b\n", "Dockerfile:2: unknown flag: --x");
        ASSERT_PLAN_ERROR("FROM x\nLABEL --x=1 a b\n", "Dockerfile:2: unknown flag: --x");
        ASSERT_PLAN_ERROR("FROM x\nMAINTAINER --x=1 me\n", "Dockerfile:2: unknown flag: --x");
        ASSERT_PLAN_ERROR("FROM x\nWORKDIR --x=1 /\n", "Dockerfile:2: unknown flag: --x");
        ASSERT_PLAN_ERROR("FROM x\nUSER --x=1 me\n", "Dockerfile:2: unknown flag: --x");
        ASSERT_PLAN_ERROR("FROM x\nEXPOSE --x=1 80\n", "Dockerfile:2: unknown flag: --x");
        ASSERT_PLAN_ERROR("FROM x\nVOLUME --x=1 /v\n", "Dockerfile:2: unknown flag: --x");
        ASSERT_PLAN_ERROR("FROM x\nCMD --x=1 a\n", "Dockerfile:2: unknown flag: --x");
        ASSERT_PLAN_ERROR("FROM x\nENTRYPOINT --x=1 a\n", "Dockerfile:2: unknown flag: --x");
        ASSERT_PLAN_ERROR("FROM x\nSHELL --x=1 [\"a\"]\n", "Dockerfile:2: unknown flag: --x");
        ASSERT_PLAN_ERROR("FROM x\nONBUILD --x=1 RUN a\n", "Dockerfile:2: unknown flag: --x");
        ASSERT_PLAN_ERROR("FROM x\nRUN --mont=type=cache a\n", "Dockerfile:2: unknown flag: --mont (did you mean mount?)");
        ASSERT_PLAN_ERROR("FROM x\nHEALTHCHECK --intervall=1s CMD a\n",
                          "Dockerfile:2: unknown flag: --intervall (did you mean interval?)");
        /* ARG, STOPSIGNAL and HEALTHCHECK NONE never look at their flags (as BuildKit) */
        ASSERT_PLAN_OK("FROM x\nARG --x=1 a\nSTOPSIGNAL --y 9\nHEALTHCHECK --z NONE\n");
        /* bool values are case-insensitive; "--" ends the flags */
        ASSERT_PLAN_OK("FROM x\nCOPY --link=TRUE --parents=False a b\nCOPY -- --link a b\n");
}

static void test_copy_add(void)
{
        _cleanup_fixture_ struct fixture f = { 0 };
        const struct ossb_df_inst *i = FIRST(f, "COPY --from=build --chown=1:2 --chmod=0755 --link --parents "
                                                "--exclude=*.md --exclude=.git a <<EOF /dst/\nhi\nEOF\n"
                                                "COPY [\"a b\", \"/c\"]\nCOPY --from= --chown= x y\n");
        ASSERT(i);
        ASSERT_INTEQ(i->kind, OSSB_DF_COPY);
        ASSERT_STREQ(i->copy_from, "build");
        ASSERT_STREQ(i->chown, "1:2");
        ASSERT_STREQ(i->chmod, "0755");
        ASSERT(i->link && i->parents);
        ASSERT_INTEQ(ossb_strv_length(i->excludes), 2);
        ASSERT_STREQ(i->excludes[1], ".git");
        ASSERT_INTEQ(ossb_strv_length(i->sources), 2);
        ASSERT_STREQ(i->sources[1], "<<EOF");
        ASSERT_STREQ(i->dest, "/dst/");
        ASSERT(!i->sources_json);
        ASSERT_STREQ(i->node->heredocs[0].content, "hi\n");
        const struct ossb_df_inst *j = &f.plan->stages[0].insts[1];
        ASSERT(j->sources_json);
        ASSERT_STREQ(j->sources[0], "a b");
        ASSERT(!j->link && !j->parents && !j->excludes && !j->chmod);
        const struct ossb_df_inst *k = &f.plan->stages[0].insts[2];
        ASSERT(!k->copy_from && !k->chown);

        _cleanup_fixture_ struct fixture g = { 0 };
        i = FIRST(g, "ADD --checksum=sha256:abc --keep-git-dir=true --unpack=false --chown=a --chmod=600 --link "
                     "--exclude=x https://e.com/a.tgz /\nADD a b\n");
        ASSERT(i);
        ASSERT_INTEQ(i->kind, OSSB_DF_ADD);
        ASSERT_STREQ(i->checksum, "sha256:abc");
        ASSERT(i->keep_git_dir && i->keep_git_dir_set);
        ASSERT_INTEQ(i->unpack, 0);
        ASSERT_STREQ(i->chown, "a");
        ASSERT_STREQ(i->chmod, "600");
        ASSERT(i->link);
        ASSERT_STREQ(i->excludes[0], "x");
        ASSERT_STREQ(i->sources[0], "https://e.com/a.tgz");
        j = &g.plan->stages[0].insts[1];
        ASSERT(!j->keep_git_dir_set && j->unpack == -1 && !j->checksum);

        ASSERT_PLAN_ERROR("FROM x\nCOPY a\n",
                          "Dockerfile:2: COPY requires at least two arguments, but only one was provided. Destination could not be determined");
        ASSERT_PLAN_ERROR("FROM x\nCOPY --bogus a\n",
                          "Dockerfile:2: COPY requires at least two arguments, but only one was provided. Destination could not be determined");
        ASSERT_PLAN_ERROR("FROM x\nADD\n",
                          "Dockerfile:2: ADD requires at least two arguments, but only one was provided. Destination could not be determined");
        ASSERT_PLAN_ERROR("FROM x\nADD --from=a b c\n", "Dockerfile:2: unknown flag: --from");
        ASSERT_PLAN_ERROR("FROM x\nCOPY --checksum=a b c\n", "Dockerfile:2: unknown flag: --checksum");
        ASSERT_PLAN_ERROR("FROM x\nCOPY a <<EOF\nx\nEOF\n", "Dockerfile:2: COPY cannot accept a heredoc as a destination");
        ASSERT_PLAN_ERROR("FROM x\nADD a <<-\"E\"\nE\n", "Dockerfile:2: ADD cannot accept a heredoc as a destination");
        /* a heredoc-looking JSON source is still a source; a broken one is just a word */
        ASSERT_PLAN_OK("FROM x\nCOPY [\"<<EOF\", \"/d\"]\nCOPY a <<'EOF /d\n");
}

static void test_run_cmd_entrypoint(void)
{
        _cleanup_fixture_ struct fixture f = { 0 };
        const struct ossb_df_inst *i = FIRST(f, "RUN --mount=type=cache,target=/c --mount=type=secret,id=s "
                                                "--network=none --security=insecure --device=/dev/fuse apt-get update\n"
                                                "RUN [\"a\", \"b c\"]\nRUN <<EOF\necho\nEOF\nRUN\n"
                                                "CMD [\"x\"]\nCMD echo $HOME\nCMD []\nENTRYPOINT []\nENTRYPOINT\nENTRYPOINT e f\n");
        ASSERT(i);
        ASSERT_INTEQ(i->kind, OSSB_DF_RUN);
        ASSERT_INTEQ(ossb_strv_length(i->run_mounts), 2);
        ASSERT_STREQ(i->run_mounts[1], "type=secret,id=s");
        ASSERT_STREQ(i->run_network, "none");
        ASSERT_STREQ(i->run_security, "insecure");
        ASSERT_STREQ(i->run_devices[0], "/dev/fuse");
        ASSERT(!i->command.json);
        ASSERT_STREQ(i->command.argv[0], "apt-get update");
        ASSERT(!i->command.argv[1]);
        const struct ossb_df_inst *s = f.plan->stages[0].insts;
        ASSERT(s[1].command.json && !s[1].run_network && !s[1].run_security && !s[1].run_mounts);
        ASSERT_STREQ(s[1].command.argv[1], "b c");
        ASSERT_STREQ(s[2].command.argv[0], "<<EOF");
        ASSERT(s[3].command.argv && !s[3].command.argv[0]);
        ASSERT_INTEQ(s[4].kind, OSSB_DF_CMD);
        ASSERT(s[4].command.json);
        ASSERT_STREQ(s[5].command.argv[0], "echo $HOME");
        ASSERT(s[6].command.json && s[6].command.argv && !s[6].command.argv[0]);
        ASSERT_INTEQ(s[7].kind, OSSB_DF_ENTRYPOINT);
        ASSERT(s[7].command.json && !s[7].command.argv);
        ASSERT(!s[8].command.json && !s[8].command.argv);
        ASSERT_STREQ(s[9].command.argv[0], "e f");

        ASSERT_PLAN_ERROR("FROM x\nRUN --network=bridge a\n", "Dockerfile:2: invalid network mode \"bridge\"");
        ASSERT_PLAN_ERROR("FROM x\nRUN --network= a\n", "Dockerfile:2: invalid network mode \"\"");
        ASSERT_PLAN_ERROR("FROM x\nRUN --security=x a\n", "Dockerfile:2: security \"x\" is not valid");
        ASSERT_PLAN_ERROR("FROM x\nRUN --network a\n", "Dockerfile:2: missing a value on flag: --network");
        ASSERT_PLAN_OK("FROM x\nRUN --network=host --security=sandbox a\n");
        ASSERT_PLAN_ERROR("FROM x\nRUN --network=host --network=default a\n", "Dockerfile:2: duplicate flag specified: --network");
}

static void test_kv(void)
{
        _cleanup_fixture_ struct fixture f = { 0 };
        const struct ossb_df_inst *i = FIRST(f, "ENV a=1 b=\"x y\" c=\nENV k v w\nLABEL l=1\nARG n=1 m\n");
        ASSERT(i);
        ASSERT_INTEQ(i->kind, OSSB_DF_ENV);
        ASSERT_INTEQ(i->n_kvs, 3);
        ASSERT_STREQ(i->kvs[1].key, "b");
        ASSERT_STREQ(i->kvs[1].value, "\"x y\"");
        ASSERT_STREQ(i->kvs[2].value, "");
        const struct ossb_df_inst *s = f.plan->stages[0].insts;
        ASSERT_STREQ(s[1].kvs[0].value, "v w");
        ASSERT_INTEQ(s[2].kind, OSSB_DF_LABEL);
        ASSERT_INTEQ(s[3].n_kvs, 2);
        ASSERT_STREQ(s[3].kvs[0].value, "1");
        ASSERT(s[3].kvs[1].value == NULL);

        ASSERT_PLAN_ERROR("FROM x\nENV\n", "Dockerfile:2: ENV requires at least one argument");
        ASSERT_PLAN_ERROR("FROM x\nLABEL\n", "Dockerfile:2: LABEL requires at least one argument");
        ASSERT_PLAN_ERROR("FROM x\nENV =x\n", "Dockerfile:2: ENV names can not be blank");
        ASSERT_PLAN_ERROR("FROM x\nLABEL a=b =x\n", "Dockerfile:2: LABEL names can not be blank");
        ASSERT_PLAN_ERROR("ARG\n", "Dockerfile:1: ARG requires at least one argument");
        ASSERT_PLAN_ERROR("FROM x\nARG a =b\n", "Dockerfile:2: ARG names can not be blank");
}

static void test_simple(void)
{
        _cleanup_fixture_ struct fixture f = { 0 };
        const struct ossb_df_inst *i = FIRST(f, "USER a b\nWORKDIR /w\nSTOPSIGNAL SIGTERM\nMAINTAINER Me\n"
                                                "EXPOSE 8080 443 80/udp\nVOLUME [\" /v \", \"/w\"]\nVOLUME /a /b\n"
                                                "SHELL [\"pwsh\", \"-c\"]\n");
        ASSERT(i);
        ASSERT_INTEQ(i->kind, OSSB_DF_USER);
        ASSERT_STREQ(i->str, "a b");
        const struct ossb_df_inst *s = f.plan->stages[0].insts;
        ASSERT_INTEQ(s[1].kind, OSSB_DF_WORKDIR);
        ASSERT_STREQ(s[1].str, "/w");
        ASSERT_INTEQ(s[2].kind, OSSB_DF_STOPSIGNAL);
        ASSERT_STREQ(s[3].str, "Me");
        ASSERT_INTEQ(s[3].kind, OSSB_DF_MAINTAINER);
        ASSERT_INTEQ(s[4].kind, OSSB_DF_EXPOSE);
        ASSERT_STREQ(s[4].words[0], "443");
        ASSERT_STREQ(s[4].words[1], "80/udp");
        ASSERT_STREQ(s[4].words[2], "8080");
        ASSERT_INTEQ(s[5].kind, OSSB_DF_VOLUME);
        ASSERT_STREQ(s[5].words[0], "/v");
        ASSERT_STREQ(s[6].words[1], "/b");
        ASSERT_INTEQ(s[7].kind, OSSB_DF_SHELL);
        ASSERT_STREQ(s[7].words[1], "-c");

        ASSERT_PLAN_ERROR("FROM x\nUSER\n", "Dockerfile:2: USER requires exactly one argument");
        ASSERT_PLAN_ERROR("FROM x\nWORKDIR\n", "Dockerfile:2: WORKDIR requires exactly one argument");
        ASSERT_PLAN_ERROR("FROM x\nSTOPSIGNAL\n", "Dockerfile:2: STOPSIGNAL requires exactly one argument");
        ASSERT_PLAN_ERROR("FROM x\nMAINTAINER\n", "Dockerfile:2: MAINTAINER requires exactly one argument");
        ASSERT_PLAN_ERROR("FROM x\nEXPOSE\n", "Dockerfile:2: EXPOSE requires at least one argument");
        ASSERT_PLAN_ERROR("FROM x\nVOLUME\n", "Dockerfile:2: VOLUME requires at least one argument");
        ASSERT_PLAN_ERROR("FROM x\nVOLUME [\"/a\", \" \"]\n", "Dockerfile:2: VOLUME specified can not be an empty string");
        ASSERT_PLAN_ERROR("FROM x\nSHELL []\n", "Dockerfile:2: SHELL requires at least one argument");
        ASSERT_PLAN_ERROR("FROM x\nSHELL\n", "Dockerfile:2: SHELL requires at least one argument");
        ASSERT_STREQ(ossb_df_kind_name(OSSB_DF_HEALTHCHECK), "HEALTHCHECK");
        ASSERT_STREQ(ossb_df_kind_name((enum ossb_df_kind) 99), "?");
}

static void test_healthcheck(void)
{
        _cleanup_fixture_ struct fixture f = { 0 };
        const struct ossb_df_inst *i = FIRST(f, "HEALTHCHECK --interval=5s --timeout=1m30s --start-period=0 "
                                                "--start-interval=1.5ms --retries=3 CMD curl -f x\n"
                                                "HEALTHCHECK none\nHEALTHCHECK cmd [\"a\", \"b\"]\n"
                                                "HEALTHCHECK --interval= --retries= CMD x\n");
        ASSERT(i);
        ASSERT_INTEQ(i->kind, OSSB_DF_HEALTHCHECK);
        ASSERT(!i->hc_none);
        ASSERT_STREQ(i->hc_interval, "5s");
        ASSERT_STREQ(i->hc_timeout, "1m30s");
        ASSERT_STREQ(i->hc_start_period, "0");
        ASSERT_STREQ(i->hc_start_interval, "1.5ms");
        ASSERT_STREQ(i->hc_retries, "3");
        ASSERT_STREQ(i->command.argv[0], "curl -f x");
        ASSERT(!i->command.json);
        const struct ossb_df_inst *s = f.plan->stages[0].insts;
        ASSERT(s[1].hc_none && !s[1].command.argv);
        ASSERT(s[2].command.json);
        ASSERT_STREQ(s[2].command.argv[1], "b");
        ASSERT(!s[3].hc_interval && !s[3].hc_retries);

        ASSERT_PLAN_ERROR("FROM x\nHEALTHCHECK\n", "Dockerfile:2: HEALTHCHECK requires at least one argument");
        ASSERT_PLAN_ERROR("FROM x\nHEALTHCHECK NONE x\n", "Dockerfile:2: HEALTHCHECK NONE takes no arguments");
        ASSERT_PLAN_ERROR("FROM x\nHEALTHCHECK CMD\n", "Dockerfile:2: Missing command after HEALTHCHECK CMD");
        ASSERT_PLAN_ERROR("FROM x\nHEALTHCHECK CMD []\n", "Dockerfile:2: Missing command after HEALTHCHECK CMD");
        ASSERT_PLAN_ERROR("FROM x\nHEALTHCHECK connect TCP 7000\n", "Dockerfile:2: Unknown type \"CONNECT\" in HEALTHCHECK (try CMD)");
        /* strings.ToUpper: non-ASCII letters too, bad bytes become U+FFFD */
        ASSERT_PLAN_ERROR("FROM x\nHEALTHCHECK \xc3\xa9t\xc3\xa9\xff\xc5\x82\xc4\xba\xce\xb1\xd0\xb6\xd1\x91\xc3\xbf\xc2\xb5\xcf\x82\xc5\xbf\xc4\xb1 x\n",
                          "Dockerfile:2: Unknown type \"\xc3\x89T\xc3\x89\xef\xbf\xbd\xc5\x81\xc4\xb9\xce\x91\xd0\x96\xd0\x81\xc5\xb8\xce\x9c\xce\xa3SI\" in HEALTHCHECK (try CMD)");
        ASSERT_PLAN_ERROR("FROM x\nHEALTHCHECK --timeout=3 CMD a\n", "Dockerfile:2: time: missing unit in duration \"3\"");
        ASSERT_PLAN_ERROR("FROM x\nHEALTHCHECK --interval=5x CMD a\n", "Dockerfile:2: time: unknown unit \"x\" in duration \"5x\"");
        ASSERT_PLAN_ERROR("FROM x\nHEALTHCHECK --interval=abc CMD a\n", "Dockerfile:2: time: invalid duration \"abc\"");
        ASSERT_PLAN_ERROR("FROM x\nHEALTHCHECK --start-period=- CMD a\n", "Dockerfile:2: time: invalid duration \"-\"");
        ASSERT_PLAN_ERROR("FROM x\nHEALTHCHECK --start-period=.s CMD a\n", "Dockerfile:2: time: invalid duration \".s\"");
        ASSERT_PLAN_ERROR("FROM x\nHEALTHCHECK --start-period=1\xc3\xa9 CMD a\n",
                          "Dockerfile:2: time: unknown unit \"\\xc3\\xa9\" in duration \"1\\xc3\\xa9\"");
        ASSERT_PLAN_ERROR("FROM x\nHEALTHCHECK --interval=9999999999999999999s CMD a\n",
                          "Dockerfile:2: time: invalid duration \"9999999999999999999s\"");
        ASSERT_PLAN_ERROR("FROM x\nHEALTHCHECK --interval=99999999999999999999 CMD a\n",
                          "Dockerfile:2: time: invalid duration \"99999999999999999999\"");
        ASSERT_PLAN_ERROR("FROM x\nHEALTHCHECK --interval=5000000h5000000h CMD a\n",
                          "Dockerfile:2: time: invalid duration \"5000000h5000000h\"");
        ASSERT_PLAN_ERROR("FROM x\nHEALTHCHECK --interval=9223372036.854775808s CMD a\n",
                          "Dockerfile:2: time: invalid duration \"9223372036.854775808s\"");
        ASSERT_PLAN_ERROR("FROM x\nHEALTHCHECK --interval=9223372037s CMD a\n",
                          "Dockerfile:2: time: invalid duration \"9223372037s\"");
        ASSERT_PLAN_ERROR("FROM x\nHEALTHCHECK --interval=9223372036.9s CMD a\n",
                          "Dockerfile:2: time: invalid duration \"9223372036.9s\"");
        ASSERT_PLAN_ERROR("FROM x\nHEALTHCHECK --interval='1x\"\x01' CMD a\n",
                          "Dockerfile:2: time: unknown unit \"x\\\"\\x01\" in duration \"1x\\\"\\x01\"");
        ASSERT_PLAN_ERROR("FROM x\nHEALTHCHECK --interval=100us CMD a\n",
                          "Dockerfile:2: Interval \"interval\" cannot be less than 1ms");
        ASSERT_PLAN_ERROR("FROM x\nHEALTHCHECK --timeout=-1s CMD a\n",
                          "Dockerfile:2: Interval \"timeout\" cannot be less than 1ms");
        ASSERT_PLAN_ERROR("FROM x\nHEALTHCHECK --retries=x CMD a\n",
                          "Dockerfile:2: strconv.ParseInt: parsing \"x\": invalid syntax");
        ASSERT_PLAN_ERROR("FROM x\nHEALTHCHECK --retries=- CMD a\n",
                          "Dockerfile:2: strconv.ParseInt: parsing \"-\": invalid syntax");
        ASSERT_PLAN_ERROR("FROM x\nHEALTHCHECK --retries=2147483648 CMD a\n",
                          "Dockerfile:2: strconv.ParseInt: parsing \"2147483648\": value out of range");
        ASSERT_PLAN_ERROR("FROM x\nHEALTHCHECK --retries=-2147483649 CMD a\n",
                          "Dockerfile:2: strconv.ParseInt: parsing \"-2147483649\": value out of range");
        ASSERT_PLAN_ERROR("FROM x\nHEALTHCHECK --retries=88888888888x CMD a\n",
                          "Dockerfile:2: strconv.ParseInt: parsing \"88888888888x\": value out of range");
        ASSERT_PLAN_ERROR("FROM x\nHEALTHCHECK --retries=8x8888888888 CMD a\n",
                          "Dockerfile:2: strconv.ParseInt: parsing \"8x8888888888\": invalid syntax");
        ASSERT_PLAN_ERROR("FROM x\nHEALTHCHECK --retries=-1 CMD a\n", "Dockerfile:2: --retries cannot be negative (-1)");
        ASSERT_PLAN_ERROR("FROM x\nHEALTHCHECK --retries=-2147483648 CMD a\n",
                          "Dockerfile:2: --retries cannot be negative (-2147483648)");
        ASSERT_PLAN_OK("FROM x\nHEALTHCHECK --retries=+2147483647 --timeout=-0 --interval=1.h --start-period=1ms "
                       "--start-interval=2\xc2\xb5s5\xce\xbcs1ns1.00000000000000000000000000001ms CMD a\nHEALTHCHECK --retries=0 "
                       "--interval=9223372036.854775807s --timeout=.5s CMD a\n"
                       "HEALTHCHECK --interval=1.99999999999999999999s --timeout=.9223372036854775809s CMD a\n");
        ASSERT_PLAN_ERROR("FROM x\nHEALTHCHECK --interval=9223372036854775809ns CMD a\n",
                          "Dockerfile:2: time: invalid duration \"9223372036854775809ns\"");
        ASSERT_PLAN_ERROR("FROM x\nHEALTHCHECK --start-period=1ms CMD a\n" "HEALTHCHECK --start-period=0.000000001s CMD b\n",
                          "Dockerfile:3: Interval \"start-period\" cannot be less than 1ms");
}

static void test_onbuild(void)
{
        _cleanup_fixture_ struct fixture f = { 0 };
        const struct ossb_df_inst *i = FIRST(f, "  onbuild   RUN echo hi  \nONBUILD COPY <<A <<B /d\na\nA\nb\nB\n"
                                                "ONBUILD RUN [\"x\"]\n");
        ASSERT(i);
        ASSERT_INTEQ(i->kind, OSSB_DF_ONBUILD);
        ASSERT_STREQ(i->onbuild, "RUN echo hi  ");
        const struct ossb_df_inst *s = f.plan->stages[0].insts;
        ASSERT_STREQ(s[1].onbuild, "COPY <<A <<B /d\na\nA\nb\nB");
        ASSERT_STREQ(s[2].onbuild, "RUN [\"x\"]");

        ASSERT_PLAN_ERROR("FROM x\nONBUILD\n", "Dockerfile:2: ONBUILD requires at least one argument");
        ASSERT_PLAN_ERROR("FROM x\nONBUILD ONBUILD RUN x\n", "Dockerfile:2: Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed");
        ASSERT_PLAN_ERROR("FROM x\nONBUILD from y\n", "Dockerfile:2: FROM isn't allowed as an ONBUILD trigger");
        ASSERT_PLAN_ERROR("FROM x\nONBUILD Maintainer y\n", "Dockerfile:2: MAINTAINER isn't allowed as an ONBUILD trigger");

        /* the stored trigger parses back into the same instruction */
        _cleanup_dockerfile_ struct ossb_dockerfile *tdf = NULL;
        struct ossb_df_inst *t = NULL;
        _cleanup_error_ struct ossb_error *err = NULL;
        ASSERT(ossb_df_parse_trigger(s[1].onbuild, &tdf, &t, &err) == 0);
        ASSERT_INTEQ(t->kind, OSSB_DF_COPY);
        ASSERT_STREQ(t->dest, "/d");
        ASSERT_STREQ(t->node->heredocs[1].content, "b\n");
        ossb_df_inst_free(t);
        ossb_df_inst_free(NULL);
}

/* Nodes the parser never produces (a caller building a struct ossb_dockerfile by hand). */
static void test_foreign_nodes(void)
{
        _cleanup_dockerfile_ struct ossb_dockerfile *df = NULL;
        _cleanup_df_plan_ struct ossb_df_plan *p = NULL;
        _cleanup_error_ struct ossb_error *err = NULL;
        ASSERT(ossb_dockerfile_parse("D", "FROM x\nSHELL [\"a\"]\n", 19, &df, &err) == 0);
        df->insts[1].json = false;
        ASSERT(ossb_df_plan_new(df, &p, &err) < 0);
        ASSERT_STREQ(err->msg, "D:2: SHELL requires the arguments to be in JSON form");
        ossb_error_free(TAKE_PTR(err));
        df->insts[1].cmd[0] = 'z';
        ASSERT(ossb_df_plan_new(df, &p, &err) < 0);
        ASSERT_STREQ(err->msg, "D:2: unknown instruction: zhell");
        ossb_error_free(TAKE_PTR(err));
        /* flags that do not start with "--" */
        ASSERT(ossb_strv_push(&df->insts[0].flags, "-x") == 0);
        ASSERT(ossb_df_plan_new(df, &p, &err) < 0);
        ASSERT_STREQ(err->msg, "D:1: arg should start with -- : -x");
}

static void test_triggers(void)
{
        static const struct {
                const char *trigger, *msg;
        } bad[] = {
                { "RUN a\nRUN b", "ONBUILD trigger:1: onbuild trigger should be a single expression" },
                { "FROM x", "ONBUILD trigger:1: FROM isn't allowed as an ONBUILD trigger" },
                { "ONBUILD RUN x", "ONBUILD trigger:1: Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed" },
                { "", "ONBUILD trigger:1: file with no instructions" },
                { "BOGUS x", "ONBUILD trigger:1: unknown instruction: BOGUS" },
                { "COPY a", "ONBUILD trigger:1: COPY requires at least two arguments, but only one was provided. Destination could not be determined" },
        };
        for (size_t k = 0; k < ELEMENTSOF(bad); k++) {
                _cleanup_dockerfile_ struct ossb_dockerfile *df = NULL;
                _cleanup_error_ struct ossb_error *err = NULL;
                struct ossb_df_inst *i = NULL;
                ASSERT(ossb_df_parse_trigger(bad[k].trigger, &df, &i, &err) < 0);
                ASSERT(!df && !i);
                ASSERT_STREQ(err->msg, bad[k].msg);
                ASSERT_INTEQ(err->exit_code, OSSB_EXIT_USAGE);
        }
        _cleanup_dockerfile_ struct ossb_dockerfile *df = NULL;
        _cleanup_error_ struct ossb_error *err = NULL;
        struct ossb_df_inst *i = NULL;
        ASSERT(ossb_df_parse_trigger("ENV a=b", &df, &i, &err) == 0);
        ASSERT_INTEQ(i->kind, OSSB_DF_ENV);
        ASSERT_STREQ(i->kvs[0].value, "b");
        ossb_df_inst_free(i);
}

int main(void)
{
        RUN_TEST(test_stages);
        RUN_TEST(test_flags);
        RUN_TEST(test_copy_add);
        RUN_TEST(test_run_cmd_entrypoint);
        RUN_TEST(test_kv);
        RUN_TEST(test_simple);
        RUN_TEST(test_healthcheck);
        RUN_TEST(test_onbuild);
        RUN_TEST(test_foreign_nodes);
        RUN_TEST(test_triggers);
        TAP_END();
}
