/* cli/main.c - `ossb`: global options and subcommand dispatch. */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>

#include "cli/cli.h"
#include "common/cleanup.h"
#include "common/log.h"
#include "common/userns.h"


static const char usage[] =
        "Usage: ossb [--log-level LEVEL] [--log-format text|json] COMMAND [OPTIONS]\n"
        "\n"
        "OSSB, the Open Source Slim Builder: builds OCI images from Dockerfiles without a daemon.\n"
        "\n"
        "Commands:\n"
        "  build      Build an image from a Dockerfile and a context directory\n"
        "  pull       Download an image from a registry into ossb's store\n"
        "  push       Push an image from an OCI image layout to a registry\n"
        "  inspect    Print an image's manifest and config (JSON) from a registry\n"
        "  prune      Remove step-cache entries (least recently used first) and their layers\n"
        "  convert    Rewrite an image's layers with another compression (estargz, zstd:chunked, ...)\n"
        "  index      Make (and --push) checkpoint indexes of an image's gzip layers for lazy builds\n"
        "  debug      Developer tools (parse: a Dockerfile's parse as JSON; verify-store)\n"
        "  version    Print the version\n"
        "\n"
        "Global options:\n"
        "  --log-level LEVEL        error, warn, info (default) or debug\n"
        "  --log-format FORMAT      text (default) or json (one JSON object per line on stderr)\n"
        "  -h, --help               Show this help\n"
        "\n"
        "Environment:\n"
        "  OSSB_NO_USERNS=1         Run by a non-root user, build, pull and push normally enter a user\n"
        "                           namespace in which ossb is root (ids mapped from /etc/subuid and\n"
        "                           /etc/subgid through newuidmap/newgidmap, else only the caller's id);\n"
        "                           this turns that off (for debugging: file owners are then not kept\n"
        "                           and RUN fails)\n"
        "\n"
        "Exit codes:\n"
        "  0  success\n"
        "  1  the build failed (e.g. a COPY source is missing)\n"
        "  2  usage or Dockerfile error\n"
        "  3  registry or authentication error\n"
        "  4  internal or environment error\n"
        "\n"
        "Run 'ossb COMMAND --help' for a command's options.\n";

int ossb_cli_fail(struct ossb_error *err)
{
        int code = err ? err->exit_code : OSSB_EXIT_INTERNAL;
        log_error("%s", err && err->msg ? err->msg : "unknown error");
        ossb_error_free(err);
        return code ? code : OSSB_EXIT_INTERNAL;
}

int ossb_cli_usage_error(const char *cmd, const char *fmt, ...)
{
        _cleanup_free_ char *msg = NULL;
        va_list ap;
        va_start(ap, fmt);
        int r = vasprintf(&msg, fmt, ap);
        va_end(ap);
        if (ossb_log_is_json()) {
                log_error("%s (run 'ossb %s--help' for usage)", r < 0 ? "usage error" : msg, cmd ? cmd : "");
                return OSSB_EXIT_USAGE;
        }
        log_error("%s", r < 0 ? "usage error" : msg);
        fprintf(stderr, "Run 'ossb %s--help' for usage.\n", cmd ? cmd : "");
        return OSSB_EXIT_USAGE;
}

static int parse_level(const char *s, enum ossb_log_level *ret)
{
        static const char *const names[] = { "error", "warn", "info", "debug" };
        for (size_t i = 0; i < ELEMENTSOF(names); i++)
                if (streq(s, names[i])) {
                        *ret = (enum ossb_log_level) i;
                        return 0;
                }
        return -1;
}

/* Global options may appear before the command; --log-format/--log-level are also accepted by
 * subcommands (they share this parser through ossb_cli_global_option). */
static int parse_globals(int *argc, char ***argv)
{
        enum ossb_log_level level = OSSB_LOG_INFO;
        bool json = false;
        int i = 1;
        for (; i < *argc; i++) {
                const char *a = (*argv)[i];
                const char *v = NULL;
                if (strncmp(a, "--log-level", 11) == 0 || strncmp(a, "--log-format", 12) == 0) {
                        const char *eq = strchr(a, '=');
                        if (eq)
                                v = eq + 1;
                        else if (i + 1 < *argc)
                                v = (*argv)[++i];
                        else
                                return ossb_cli_usage_error(NULL, "%s requires a value", a);
                        if (strncmp(a, "--log-level", 11) == 0) {
                                if (parse_level(v, &level) < 0)
                                        return ossb_cli_usage_error(NULL, "invalid --log-level `%s` (error, warn, info, debug)", v);
                        } else if (streq(v, "json") || streq(v, "text")) {
                                json = streq(v, "json");
                        } else {
                                return ossb_cli_usage_error(NULL, "invalid --log-format `%s` (text, json)", v);
                        }
                        continue;
                }
                break;
        }
        ossb_log_setup(level, json);
        *argc -= i - 1;
        *argv += i - 1;
        return 0;
}

/* Rootless (common/userns.h): build, pull and push run as root of a user namespace of their
 * own when started by another user, so that file owners are kept and RUN can mount; prune
 * too, to remove the unpacked layers builds left owned by subordinate ids.  Must run before
 * any thread exists. */
static int enter_userns(const char *cmd)
{
        if (!streq(cmd, "build") && !streq(cmd, "pull") && !streq(cmd, "push") && !streq(cmd, "prune"))
                return 0;
        enum ossb_userns_mode mode;
        _cleanup_free_ char *note = NULL;
        struct ossb_error *err = NULL;
        if (ossb_userns_enter(&mode, &note, &err) < 0)
                return ossb_cli_fail(err);
        const char *why = note ? note : "no reason given";
        if (mode == OSSB_USERNS_SINGLE && streq(cmd, "build"))
                log_warn("%s: files owned by other users are stored as root (single-id mapping)", why);
        else if (mode == OSSB_USERNS_UNAVAILABLE && streq(cmd, "build"))
                log_warn("cannot create a user namespace (%s): building as uid %u, file owners are not kept and "
                         "RUN steps cannot run", why, (unsigned) geteuid());
        else
                log_debug("user namespace: %s%s%s", ossb_userns_mode_name(mode), note ? ": " : "", note ? note : "");
        return 0;
}

int main(int argc, char **argv)
{
        int r = parse_globals(&argc, &argv);
        if (r)
                return r;
        if (argc < 2) {
                fputs(usage, stderr);
                return OSSB_EXIT_USAGE;
        }
        const char *cmd = argv[1];
        if (streq(cmd, "-h") || streq(cmd, "--help") || streq(cmd, "help")) {
                fputs(usage, stdout);
                return 0;
        }
        if (streq(cmd, "--version"))
                return ossb_cmd_version(argc - 1, argv + 1);
        if ((r = enter_userns(cmd)) != 0)
                return r;
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
                log_error("cannot initialise libcurl");
                return OSSB_EXIT_INTERNAL;
        }
        if (streq(cmd, "build"))
                r = ossb_cmd_build(argc - 1, argv + 1);
        else if (streq(cmd, "pull"))
                r = ossb_cmd_pull(argc - 1, argv + 1);
        else if (streq(cmd, "push"))
                r = ossb_cmd_push(argc - 1, argv + 1);
        else if (streq(cmd, "inspect"))
                r = ossb_cmd_inspect(argc - 1, argv + 1);
        else if (streq(cmd, "prune"))
                r = ossb_cmd_prune(argc - 1, argv + 1);
        else if (streq(cmd, "convert"))
                r = ossb_cmd_convert(argc - 1, argv + 1);
        else if (streq(cmd, "index"))
                r = ossb_cmd_index(argc - 1, argv + 1);
        else if (streq(cmd, "debug"))
                r = ossb_cmd_debug(argc - 1, argv + 1);
        else if (streq(cmd, "version"))
                r = ossb_cmd_version(argc - 1, argv + 1);
        else
                r = ossb_cli_usage_error(NULL, "unknown command `%s`", cmd);
        curl_global_cleanup();
        return r;
}
