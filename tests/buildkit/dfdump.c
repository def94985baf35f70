/* tests/buildkit/dfdump.c - parse Dockerfiles and print them in BuildKit's Node.Dump format (as
 * BuildKit's parser/dumper does), or as JSON with --json.  Used by run-parser-testfiles.sh to
 * compare with BuildKit's parser testfiles.  Exit 0 when every file parsed, 2 otherwise (the
 * message goes to stderr).
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/error.h"
#include "engine/dockerfile/parser.h"

static int dump_one(const char *path, bool json)
{
        _cleanup_dockerfile_ struct ossb_dockerfile *df = NULL;
        _cleanup_error_ struct ossb_error *err = NULL;
        _cleanup_free_ char *out = NULL;

        if (ossb_dockerfile_parse_file(path, &df, &err) < 0) {
                fprintf(stderr, "%s\n", err && err->msg ? err->msg : "parse failed");
                return err ? err->exit_code : OSSB_EXIT_INTERNAL;
        }
        if ((json ? ossb_dockerfile_to_json(df, &out) : ossb_dockerfile_dump(df, &out)) < 0) {
                fprintf(stderr, "out of memory\n");
                return OSSB_EXIT_INTERNAL;
        }
        printf("%s\n", out);
        for (size_t i = 0; !json && df->warnings && df->warnings[i]; i++)
                fprintf(stderr, "warning: %s\n", df->warnings[i]);
        return 0;
}

int main(int argc, char **argv)
{
        bool json = false;
        int rc = 0, i = 1;

        if (argc > 1 && streq(argv[1], "--json")) {
                json = true;
                i++;
        }
        if (i >= argc) {
                fprintf(stderr, "usage: %s [--json] DOCKERFILE...\n", argv[0]);
                return OSSB_EXIT_USAGE;
        }
        for (; i < argc; i++) {
                int r = dump_one(argv[i], json);
                if (r != 0)
                        rc = r;
        }
        return rc;
}
