/* cli/debug.c - `ossb debug parse [--buildkit-dump] FILE`: the Dockerfile parse as JSON. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "common/cleanup.h"
#include "common/fs.h"
#include "engine/dockerfile/instructions.h"
#include "engine/dockerfile/parser.h"

static const char debug_usage[] =
        "Usage: ossb debug parse [--buildkit-dump] FILE\n"
        "\n"
        "Parse a Dockerfile (FILE, or - for stdin) and print the parse as JSON: directives and, for\n"
        "each instruction, its keyword, lines, flags, arguments, form and heredocs.  The stages are\n"
        "checked as a build would check them.  --buildkit-dump prints BuildKit's test dump format.\n"
        "Exit code 2 and a message naming the line for a Dockerfile error.\n";

int ossb_cmd_debug(int argc, char **argv)
{
        bool dump = false;
        const char *file = NULL;
        if (argc < 2 || streq(argv[1], "--help") || streq(argv[1], "-h")) {
                fputs(debug_usage, argc < 2 ? stderr : stdout);
                return argc < 2 ? 2 : 0;
        }
        if (!streq(argv[1], "parse"))
                return ossb_cli_usage_error("debug ", "unknown debug command `%s`", argv[1]);
        for (int i = 2; i < argc; i++) {
                if (streq(argv[i], "--buildkit-dump"))
                        dump = true;
                else if (streq(argv[i], "--help") || streq(argv[i], "-h")) {
                        fputs(debug_usage, stdout);
                        return 0;
                } else if (!file)
                        file = argv[i];
                else
                        return ossb_cli_usage_error("debug ", "unexpected argument `%s`", argv[i]);
        }
        if (!file)
                return ossb_cli_usage_error("debug ", "a FILE is required");

        struct ossb_error *err = NULL;
        _cleanup_free_ char *data = NULL, *out = NULL;
        size_t len = 0;
        int r;
        if (streq(file, "-"))
                r = ossb_read_fd(STDIN_FILENO, OSSB_DF_MAX_SIZE, &data, &len);
        else
                r = ossb_read_file(file, OSSB_DF_MAX_SIZE, &data, &len, &err);
        if (r < 0) {
                if (!err)
                        ossb_error_set(&err, r, "cannot read stdin");
                ossb_error_set_exit(&err, OSSB_EXIT_USAGE);
                return ossb_cli_fail(err);
        }
        struct ossb_dockerfile *df = NULL;
        struct ossb_df_plan *plan = NULL;
        r = ossb_dockerfile_parse(file, data, len, &df, &err);
        if (r >= 0)
                r = ossb_df_plan_new(df, &plan, &err);
        if (r >= 0)
                r = dump ? ossb_dockerfile_dump(df, &out) : ossb_dockerfile_to_json(df, &out);
        ossb_df_plan_free(plan);
        ossb_dockerfile_free(df);
        if (r < 0)
                return err ? ossb_cli_fail(err) : OSSB_EXIT_INTERNAL;
        fputs(out, stdout);
        if (len && out[strlen(out) - 1] != '\n')
                fputc('\n', stdout);
        return 0;
}
