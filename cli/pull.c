/* cli/pull.c - `ossb pull`, `ossb inspect` and `ossb push`: the registry client on its own,
 * for people debugging registries, credentials and images. */
#include "config.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "cli/cli.h"
#include "common/cleanup.h"
#include "common/fs.h"
#include "common/interrupt.h"
#include "common/log.h"
#include "common/strbuf.h"
#include "engine/engine.h"
#include "oci/layout.h"
#include "oci/platform.h"
#include "registry/pull.h"
#include "registry/push.h"
#include "registry/reference.h"

static const char pull_usage[] =
        "Usage: ossb pull [OPTIONS] REFERENCE\n"
        "\n"
        "Download an image (manifest, config and layers, each verified against its digest) into\n"
        "ossb's store, where builds find it.  Prints the digest the reference resolved to.\n"
        "\n"
        "Options:\n"
        "      --platform OS/ARCH[/V]   Platform to choose from a multi-platform image (default: the host's)\n"
        "  -o, --output SPEC            Also write the image: type=oci,dest=DIR|FILE.tar or\n"
        "                               type=docker,dest=FILE.tar (as for ossb build)\n"
        "      --progress MODE          auto (default), plain, tty, json or quiet\n"
        "      --cache-dir DIR          State directory (as for ossb build)\n"
        "  -h, --help                   Show this help\n"
        "\n";

static const char inspect_usage[] =
        "Usage: ossb inspect [OPTIONS] REFERENCE\n"
        "\n"
        "Print an image's manifest and config as JSON: {\"name\", \"digest\", \"mediaType\", \"manifest\",\n"
        "\"config\"}, plus \"index\" and \"platform\" when the reference names a multi-platform index.\n"
        "Only the manifest(s) and the config are downloaded.\n"
        "\n"
        "Options:\n"
        "      --raw                    Print the manifest or index exactly as the registry served it\n"
        "      --config                 Print the image config only\n"
        "      --platform OS/ARCH[/V]   Platform to choose from an index (default: the host's)\n"
        "      --cache-dir DIR          State directory (as for ossb build)\n"
        "  -h, --help                   Show this help\n"
        "\n";

static const char push_usage[] =
        "Usage: ossb push [OPTIONS] LAYOUT REFERENCE\n"
        "\n"
        "Push an image from an OCI image layout (a directory, or a tar of one) to REFERENCE: blobs the\n"
        "registry lacks (mounted from another repository of that registry when ossb knows one that\n"
        "has them), then the manifest.  Prints the pushed digest.\n"
        "\n"
        "Options:\n"
        "      --tag NAME               The layout's entry to push (its org.opencontainers.image.ref.name;\n"
        "                               needed when the layout holds several)\n"
        "      --digest-file FILE       Write the pushed digest to FILE\n"
        "      --progress MODE          auto (default), plain, tty, json or quiet\n"
        "      --cache-dir DIR          State directory (as for ossb build)\n"
        "  -h, --help                   Show this help\n"
        "\n"
        "Environment:\n"
        "  OSSB_PUSH_CHUNK_SIZE=BYTES   Blobs larger than this are uploaded in chunks (default 64 MiB)\n"
        "\n";

enum {
        OPT_PLATFORM = 256,
        OPT_PROGRESS,
        OPT_CACHE_DIR,
        OPT_RAW,
        OPT_CONFIG,
        OPT_TAG,
        OPT_DIGEST_FILE,
};

struct reg_cli {
        const char *cmd;
        struct ossb_cli_session s;
        const char *platform;
        const char *cache_dir;
        enum ossb_progress_mode progress;
        struct ossb_output output;
        bool have_output;
        bool raw, config_only;
        const char *tag;
        const char *digest_file;
        char **args;
};

static void reg_cli_clear(struct reg_cli *c)
{
        ossb_cli_session_close(&c->s);
        if (c->have_output)
                ossb_output_clear(&c->output);
        ossb_strv_free(c->args);
}

/* Parse options; returns -1 after --help, 0 to go on, or an exit code. */
static int parse(struct reg_cli *c, int argc, char **argv, const char *usage, size_t n_args)
{
        static const struct option longopts[] = {
                { "platform", required_argument, NULL, OPT_PLATFORM },
                { "progress", required_argument, NULL, OPT_PROGRESS },
                { "cache-dir", required_argument, NULL, OPT_CACHE_DIR },
                { "output", required_argument, NULL, 'o' },
                { "raw", no_argument, NULL, OPT_RAW },
                { "config", no_argument, NULL, OPT_CONFIG },
                { "tag", required_argument, NULL, OPT_TAG },
                { "digest-file", required_argument, NULL, OPT_DIGEST_FILE },
                { "help", no_argument, NULL, 'h' },
                OSSB_CLI_REGISTRY_LONGOPTS,
                {},
        };
        int opt;
        optind = 1;
        opterr = 0;
        while ((opt = getopt_long(argc, argv, ":o:h", longopts, NULL)) != -1) {
                int taken = ossb_cli_registry_option(&c->s.reg_opts, opt, optarg);
                if (taken < 0)
                        return OSSB_EXIT_INTERNAL;
                if (taken)
                        continue;
                switch (opt) {
                case OPT_PLATFORM:
                        c->platform = optarg;
                        break;
                case OPT_PROGRESS:
                        if (ossb_progress_mode_parse(optarg, &c->progress) < 0)
                                return ossb_cli_usage_error(c->cmd, "invalid --progress `%s` (auto, plain, tty, json, quiet)",
                                                            optarg);
                        break;
                case OPT_CACHE_DIR:
                        c->cache_dir = optarg;
                        break;
                case 'o': {
                        struct ossb_error *err = NULL;
                        if (c->have_output)
                                return ossb_cli_usage_error(c->cmd, "--output may be given once");
                        if (ossb_output_parse(optarg, &c->output, &err) < 0)
                                return ossb_cli_fail(err);
                        c->have_output = true;
                        if (c->output.type == OSSB_OUTPUT_REGISTRY)
                                return ossb_cli_usage_error(c->cmd, "--output %s: use `ossb push` to push", optarg);
                        break;
                }
                case OPT_RAW:
                        c->raw = true;
                        break;
                case OPT_CONFIG:
                        c->config_only = true;
                        break;
                case OPT_TAG:
                        c->tag = optarg;
                        break;
                case OPT_DIGEST_FILE:
                        c->digest_file = optarg;
                        break;
                case 'h':
                        fputs(usage, stdout);
                        fputs(ossb_cli_registry_help, stdout);
                        return -1;
                case ':':
                        return ossb_cli_usage_error(c->cmd, "option `%s` requires a value", argv[optind - 1]);
                default:
                        return ossb_cli_usage_error(c->cmd, "unknown option `%s`", argv[optind - 1]);
                }
        }
        if ((size_t) (argc - optind) != n_args)
                return ossb_cli_usage_error(c->cmd, "expected %zu argument%s, got %d", n_args, n_args == 1 ? "" : "s",
                                            argc - optind);
        for (int i = optind; i < argc; i++)
                if (ossb_strv_push(&c->args, argv[i]) < 0)
                        return OSSB_EXIT_INTERNAL;
        return 0;
}

static int start(struct reg_cli *c, struct ossb_reference **ref, const char *name, struct ossb_platform *want,
                 struct ossb_error **err)
{
        int r = ossb_reference_parse(name, ref, err);
        if (r >= 0)
                r = ossb_platform_parse(c->platform ? c->platform : ossb_host_platform(), want, err);
        if (r < 0) {
                ossb_error_set_exit(err, OSSB_EXIT_USAGE);
                return r;
        }
        if (ossb_interrupt_setup() < 0)
                log_warn("cannot install signal handlers");
        return ossb_cli_session_open(&c->s, c->cache_dir, c->progress, err);
}

static int write_output(struct reg_cli *c, const struct ossb_reference *ref, const struct ossb_pulled_image *p,
                        struct ossb_error **err)
{
        _cleanup_free_ char *fam = ossb_reference_familiar(ref), *full = ossb_reference_full(ref);
        if (!fam || !full)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        /* a digest reference names no tag to record */
        struct ossb_layout_tag tag = { .ref_name = fam, .full_name = full };
        size_t n = ref->digest ? 0 : 1;
        char *tags[2] = { n ? fam : NULL, NULL };
        int r;
        if (c->output.type == OSSB_OUTPUT_DOCKER)
                r = ossb_docker_archive_write(c->s.store, c->output.dest, &p->manifest, tags, err);
        else if (c->output.tar)
                r = ossb_layout_write_tar(c->s.store, c->output.dest, &p->manifest, &tag, n, err);
        else
                r = ossb_layout_write_dir(c->s.store, c->output.dest, &p->manifest, &tag, n, err);
        if (r < 0)
                ossb_error_wrap(err, "--output %s", c->output.dest);
        return r;
}

int ossb_cmd_pull(int argc, char **argv)
{
        struct reg_cli c = { .cmd = "pull " };
        struct ossb_error *err = NULL;
        struct ossb_reference *ref = NULL;
        struct ossb_pulled_image p = { 0 };
        struct ossb_platform want;
        int r = parse(&c, argc, argv, pull_usage, 1);
        if (r == 0) {
                if (start(&c, &ref, c.args[0], &want, &err) < 0 ||
                    ossb_pull(c.s.reg, c.s.store, ref, &want, true, &p, &err) < 0 ||
                    (c.have_output && write_output(&c, ref, &p, &err) < 0))
                        r = ossb_cli_fail(err);
                else {
                        ossb_transfer_display_finish(&c.s.display, "pulled");
                        printf("%s\n", p.top.digest);
                }
        }
        ossb_pulled_image_clear(&p);
        ossb_reference_free(ref);
        reg_cli_clear(&c);
        return r < 0 ? 0 : r;
}

static json_object *parse_json(const char *data, size_t len)
{
        json_object *o = NULL;
        if (ossb_json_parse(data, len, OSSB_MANIFEST_MAX_SIZE, &o, NULL) < 0)
                return NULL;
        return o;
}

static int print_inspect(const struct reg_cli *c, const struct ossb_pulled_image *p)
{
        if (c->raw) {
                fwrite(p->top.data, 1, p->top.len, stdout);
                return 0;
        }
        int flags = JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE;
        if (c->config_only) {
                printf("%s\n", json_object_to_json_string_ext(p->config, flags));
                return 0;
        }
        _cleanup_free_ char *data = NULL;
        size_t len = 0;
        if (ossb_store_read_blob(c->s.store, p->manifest.digest, OSSB_MANIFEST_MAX_SIZE, &data, &len, NULL) < 0)
                return OSSB_EXIT_INTERNAL;
        json_object *o = json_object_new_object();
        if (!o)
                return OSSB_EXIT_INTERNAL;
        json_object_object_add(o, "name", json_object_new_string(p->name));
        json_object_object_add(o, "digest", json_object_new_string(p->top.digest));
        json_object_object_add(o, "mediaType", json_object_new_string(p->top.media_type));
        if (p->top_is_index) {
                char buf[128];
                struct ossb_platform pl = { 0 };
                json_object *v = NULL;
                json_object_object_add(o, "index", parse_json(p->top.data, p->top.len));
                json_object_object_add(o, "manifestDigest", json_object_new_string(p->manifest.digest));
                if (json_object_object_get_ex(p->config, "os", &v))
                        snprintf(pl.os, sizeof(pl.os), "%s", json_object_get_string(v));
                if (json_object_object_get_ex(p->config, "architecture", &v))
                        snprintf(pl.architecture, sizeof(pl.architecture), "%s", json_object_get_string(v));
                if (json_object_object_get_ex(p->config, "variant", &v))
                        snprintf(pl.variant, sizeof(pl.variant), "%s", json_object_get_string(v));
                json_object_object_add(o, "platform", json_object_new_string(ossb_platform_format(&pl, buf, sizeof(buf))));
        }
        json_object_object_add(o, "manifest", parse_json(data, len));
        json_object_object_add(o, "config", json_object_get(p->config));
        printf("%s\n", json_object_to_json_string_ext(o, flags));
        json_object_put(o);
        return 0;
}

int ossb_cmd_inspect(int argc, char **argv)
{
        struct reg_cli c = { .cmd = "inspect ", .progress = OSSB_PROGRESS_QUIET };
        struct ossb_error *err = NULL;
        struct ossb_reference *ref = NULL;
        struct ossb_pulled_image p = { 0 };
        struct ossb_platform want;
        int r = parse(&c, argc, argv, inspect_usage, 1);
        if (r == 0) {
                if (start(&c, &ref, c.args[0], &want, &err) < 0 ||
                    ossb_pull(c.s.reg, c.s.store, ref, &want, false, &p, &err) < 0)
                        r = ossb_cli_fail(err);
                else
                        r = print_inspect(&c, &p);
        }
        ossb_pulled_image_clear(&p);
        ossb_reference_free(ref);
        reg_cli_clear(&c);
        return r < 0 ? 0 : r;
}

int ossb_cmd_push(int argc, char **argv)
{
        struct reg_cli c = { .cmd = "push " };
        struct ossb_error *err = NULL;
        struct ossb_reference *ref = NULL;
        struct ossb_descriptor top = { 0 };
        struct ossb_platform want;
        char digest[OSSB_DIGEST_STR_LEN + 1];
        int r = parse(&c, argc, argv, push_usage, 2);
        if (r == 0) {
                if (start(&c, &ref, c.args[1], &want, &err) < 0 ||
                    ossb_layout_read(c.s.store, c.args[0], c.tag, &top, &err) < 0 ||
                    ossb_push(c.s.reg, c.s.store, &top, &ref, 1, digest, &err) < 0 ||
                    (c.digest_file && ossb_write_file_atomic(c.digest_file, digest, strlen(digest), 0644, &err) < 0))
                        r = ossb_cli_fail(err);
                else {
                        ossb_transfer_display_finish(&c.s.display, "pushed");
                        printf("%s\n", digest);
                }
        }
        ossb_descriptor_clear(&top);
        ossb_reference_free(ref);
        reg_cli_clear(&c);
        return r < 0 ? 0 : r;
}
