/* cli/cli.h - the ossb command line: one file per subcommand, shared option helpers.
 *
 * Owns: argument parsing, the mapping of errors to exit codes, and what is printed for the
 * user.  Each subcommand returns the process exit code.
 */
#ifndef OSSB_CLI_CLI_H
#define OSSB_CLI_CLI_H

#include "common/error.h"
#include "engine/engine.h"
#include "oci/store.h"
#include "registry/client.h"
#include "registry/progress.h"
#include "registry/regconf.h"

int ossb_cmd_build(int argc, char **argv);
int ossb_cmd_debug(int argc, char **argv);
int ossb_cmd_version(int argc, char **argv);
int ossb_cmd_pull(int argc, char **argv);
int ossb_cmd_push(int argc, char **argv);
int ossb_cmd_inspect(int argc, char **argv);
int ossb_cmd_prune(int argc, char **argv);
int ossb_cmd_convert(int argc, char **argv);
int ossb_cmd_index(int argc, char **argv);

/* Print an error once ("ossb: error: ...") and return its exit code. */
int ossb_cli_fail(struct ossb_error *err);
/* Print a usage error with a hint to --help and return OSSB_EXIT_USAGE. */
int ossb_cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The cache directory: --cache-dir, $OSSB_CACHE_DIR, OSSB_ROOT_CACHE_DIR for the real root (not
 * root of a user namespace), $XDG_CACHE_HOME/ossb, ~/.cache/ossb. */
#define OSSB_ROOT_CACHE_DIR "/var/lib/ossb"
char *ossb_cli_cache_dir(const char *flag);

/* Registry options shared by build, pull, push and inspect (getopt values from 1000 on). */
enum {
        OSSB_OPT_REGISTRY_AUTH_FILE = 1000,
        OSSB_OPT_INSECURE_REGISTRY,
        OSSB_OPT_REGISTRY_MIRROR,
        OSSB_OPT_REGISTRIES_CONF,
        OSSB_OPT_CERT_DIR,
};
#define OSSB_CLI_REGISTRY_LONGOPTS                                                                  \
        { "registry-auth-file", required_argument, NULL, OSSB_OPT_REGISTRY_AUTH_FILE },             \
        { "insecure-registry", required_argument, NULL, OSSB_OPT_INSECURE_REGISTRY },               \
        { "registry-mirror", required_argument, NULL, OSSB_OPT_REGISTRY_MIRROR },                   \
        { "registries-conf", required_argument, NULL, OSSB_OPT_REGISTRIES_CONF },                   \
        { "cert-dir", required_argument, NULL, OSSB_OPT_CERT_DIR }

extern const char ossb_cli_registry_help[];

struct ossb_cli_registry {
        const char *auth_file;
        char **insecure;
        char **mirrors;
        const char *conf_file;
        const char *cert_dir;
        struct ossb_regconf *conf; /* after ossb_cli_registry_load */
};
/* 1 when `opt` was a registry option (taken), 0 when not, -1 on ENOMEM. */
int ossb_cli_registry_option(struct ossb_cli_registry *r, int opt, const char *arg);
int ossb_cli_registry_load(struct ossb_cli_registry *r, struct ossb_error **err);
void ossb_cli_registry_clear(struct ossb_cli_registry *r);

/* What pull, push and inspect work with. */
struct ossb_cli_session {
        struct ossb_cli_registry reg_opts;
        struct ossb_store *store;
        struct ossb_registry *reg;
        struct ossb_transfer_display display;
};
int ossb_cli_session_open(struct ossb_cli_session *s, const char *cache_dir_flag, enum ossb_progress_mode progress,
                          struct ossb_error **err);
void ossb_cli_session_close(struct ossb_cli_session *s);

#endif
