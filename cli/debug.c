/* cli/debug.c - `ossb debug parse [--buildkit-dump] FILE`: the Dockerfile parse as JSON;
 * `ossb debug verify-store [--cache-dir DIR] [--remove-bad]`: check every stored blob. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "common/cleanup.h"
#include "common/fs.h"
#include "common/strbuf.h"
#include "engine/dockerfile/instructions.h"
#include "engine/dockerfile/parser.h"
#include "oci/store.h"

static const char debug_usage[] =
        "Usage: ossb debug parse [--buildkit-dump] FILE\n"
        "       ossb debug verify-store [--cache-dir DIR] [--remove-bad]\n"
        "\n"
        "Parse a Dockerfile (FILE, or - for stdin) and print the parse as JSON: directives and, for\n"
        "each instruction, its keyword, lines, flags, arguments, form and heredocs.  The stages are\n"
        "checked as a build would check them.  --buildkit-dump prints BuildKit's test dump format.\n"
        "Exit code 2 and a message naming the line for a Dockerfile error.\n"
        "\n"
        "verify-store hashes every blob in ossb's store and compares it with its name; it prints\n"
        "\"N blobs ok, M bad\" and the bad digests (removed with --remove-bad).  Exit code 4 when\n"
        "any blob is bad.\n";

static int verify_store(int argc, char **argv)
{
        const char *cache_flag = NULL;
        bool remove_bad = false;
        for (int i = 2; i < argc; i++) {
                if (streq(argv[i], "--remove-bad"))
                        remove_bad = true;
                else if (streq(argv[i], "--cache-dir") && i + 1 < argc)
                        cache_flag = argv[++i];
                else if (strncmp(argv[i], "--cache-dir=", 12) == 0)
                        cache_flag = argv[i] + 12;
                else
                        return ossb_cli_usage_error("debug ", "unexpected argument `%s`", argv[i]);
        }
        _cleanup_free_ char *cache = ossb_cli_cache_dir(cache_flag);
        _cleanup_free_ char *root = cache ? ossb_path_join(cache, "store") : NULL;
        if (!root)
                return ossb_cli_usage_error("debug ", "no cache directory: set --cache-dir, $OSSB_CACHE_DIR or $HOME");
        struct ossb_error *err = NULL;
        struct ossb_store *store = NULL;
        char **bad = NULL;
        int64_t ok = 0;
        if (ossb_store_open(root, &store, &err) < 0 || ossb_store_verify(store, remove_bad, &ok, &bad, &err) < 0) {
                ossb_store_free(store);
                return ossb_cli_fail(err);
        }
        size_t n_bad = ossb_strv_length(bad);
        printf("%lld blobs ok, %zu bad\n", (long long) ok, n_bad);
        for (size_t i = 0; i < n_bad; i++)
                printf("bad: %s%s\n", bad[i], remove_bad ? " (removed)" : "");
        ossb_strv_free(bad);
        ossb_store_free(store);
        return n_bad ? OSSB_EXIT_INTERNAL : 0;
}

int ossb_cmd_debug(int argc, char **argv)
{
        bool dump = false;
        const char *file = NULL;
        if (argc < 2 || streq(argv[1], "--help") || streq(argv[1], "-h")) {
                fputs(debug_usage, argc < 2 ? stderr : stdout);
                return argc < 2 ? 2 : 0;
        }
        if (streq(argv[1], "verify-store"))
                return verify_store(argc, argv);
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
