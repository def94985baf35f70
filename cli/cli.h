/* cli/cli.h - the ossb command line: one file per subcommand, shared option helpers.
 *
 * Owns: argument parsing, the mapping of errors to exit codes, and what is printed for the
 * user.  Each subcommand returns the process exit code.
 */
#ifndef OSSB_CLI_CLI_H
#define OSSB_CLI_CLI_H

#include "common/error.h"

int ossb_cmd_build(int argc, char **argv);
int ossb_cmd_debug(int argc, char **argv);
int ossb_cmd_version(int argc, char **argv);

/* Print an error once ("ossb: error: ...") and return its exit code. */
int ossb_cli_fail(struct ossb_error *err);
/* Print a usage error with a hint to --help and return OSSB_EXIT_USAGE. */
int ossb_cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The cache directory: --cache-dir, $OSSB_CACHE_DIR, $XDG_CACHE_HOME/ossb, ~/.cache/ossb. */
char *ossb_cli_cache_dir(const char *flag);

#endif
