/* tests/buildkit/dfdump.c - parse Dockerfiles and print them in BuildKit's Node.Dump format (as
 * BuildKit's parser/dumper does), as JSON with --json, or with --plan a one-line summary of the
 * stage plan ("meta=N stages=name:count,...", "-" for an unnamed stage).  Used by
 * run-parser-testfiles.sh to compare with BuildKit's parser testfiles.  Exit 0 when every file
 * parsed, else the error's exit code (the message goes to stderr).
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/error.h"
#include "engine/dockerfile/instructions.h"
#include "engine/dockerfile/parser.h"

enum mode { DUMP, JSON, PLAN };

static int print_plan(const struct ossb_dockerfile *df, struct ossb_error **err)
{
        _cleanup_df_plan_ struct ossb_df_plan *p = NULL;
        if (ossb_df_plan_new(df, &p, err) < 0)
                return -1;
        printf("meta=%zu stages=", p->n_meta_args);
        for (size_t i = 0; i < p->n_stages; i++)
                printf("%s%s:%zu", i ? "," : "", p->stages[i].name ? p->stages[i].name : "-", p->stages[i].n_insts);
        printf("\n");
        return 0;
}

static int dump_one(const char *path, enum mode mode)
{
        _cleanup_dockerfile_ struct ossb_dockerfile *df = NULL;
        _cleanup_error_ struct ossb_error *err = NULL;
        _cleanup_free_ char *out = NULL;

        if (ossb_dockerfile_parse_file(path, &df, &err) < 0) {
                fprintf(stderr, "%s\n", err && err->msg ? err->msg : "parse failed");
                return err ? err->exit_code : OSSB_EXIT_INTERNAL;
        }
        if (mode == PLAN) {
                if (print_plan(df, &err) < 0) {
                        fprintf(stderr, "%s\n", err && err->msg ? err->msg : "plan failed");
                        return err ? err->exit_code : OSSB_EXIT_INTERNAL;
                }
                return 0;
        }
        if ((mode == JSON ? ossb_dockerfile_to_json(df, &out) : ossb_dockerfile_dump(df, &out)) < 0) {
                fprintf(stderr, "out of memory\n");
                return OSSB_EXIT_INTERNAL;
        }
        printf("%s\n", out);
        for (size_t i = 0; mode == DUMP && df->warnings && df->warnings[i]; i++)
                fprintf(stderr, "warning: %s\n", df->warnings[i]);
        return 0;
}

int main(int argc, char **argv)
{
        enum mode mode = DUMP;
        int rc = 0, i = 1;

        if (argc > 1 && (streq(argv[1], "--json") || streq(argv[1], "--plan"))) {
                mode = streq(argv[1], "--json") ? JSON : PLAN;
                i++;
        }
        if (i >= argc) {
                fprintf(stderr, "usage: %s [--json|--plan] DOCKERFILE...\n", argv[0]);
                return OSSB_EXIT_USAGE;
        }
        for (; i < argc; i++) {
                int r = dump_one(argv[i], mode);
                if (r != 0)
                        rc = r;
        }
        return rc;
}
