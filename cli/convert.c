/* cli/convert.c - `ossb convert SRC DST --compression=...`: an image rewritten with another
 * layer compression, eStargz and zstd:chunked (lazily pullable) included.
 *
 * Owns: argument parsing and the image-level steps: read the source (an OCI image layout or
 * a registry), choose the platform's manifest, rewrite each layer (oci/seekable.h,
 * ossb_layer_convert), write the config with the new rootfs.diff_ids and a new OCI manifest
 * whose layers carry the format's annotations, then write the destination (an OCI image
 * layout or a registry).  As upstream converters do, the tar streams are written anew, so
 * DiffIDs change and the config says so.
 */
#include "config.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "cli/cli.h"
#include "common/cleanup.h"
#include "common/interrupt.h"
#include "common/log.h"
#include "common/strbuf.h"
#include "engine/engine.h"
#include "oci/image.h"
#include "oci/layout.h"
#include "oci/platform.h"
#include "oci/seekable.h"
#include "registry/pull.h"
#include "registry/push.h"
#include "registry/reference.h"

static const char convert_usage[] =
        "Usage: ossb convert [OPTIONS] SRC DST\n"
        "\n"
        "Rewrite every layer of an image with another compression, e.g. into eStargz or zstd:chunked\n"
        "layers that lazily pulling builders and runtimes can read file by file.  The layers' tar\n"
        "streams are written anew (names, modes, owners, mtimes in seconds, links, devices and xattrs\n"
        "kept), so their DiffIDs change: the new config lists the new ones.  One platform is\n"
        "converted.  Prints the new manifest's digest.\n"
        "\n"
        "SRC and DST:\n"
        "  oci:DIR[:REF]                An OCI image layout (SRC: a directory or a tar of one); REF is\n"
        "                               the entry's org.opencontainers.image.ref.name (SRC: needed when\n"
        "                               the layout holds several; DST: the tag to record)\n"
        "  docker://NAME[:TAG|@DIGEST]  An image in a registry\n"
        "\n"
        "Options:\n"
        "      --compression C          estargz, zstd:chunked, gzip, zstd or uncompressed (required)\n"
        "      --level N                Compression level (default: gzip 6, zstd 3)\n"
        "      --platform OS/ARCH[/V]   Platform to choose from a multi-platform image (default: the host's)\n"
        "      --progress MODE          auto (default), plain, tty, json or quiet\n"
        "      --cache-dir DIR          State directory (as for ossb build)\n"
        "  -h, --help                   Show this help\n"
        "\n";

enum { OPT_COMPRESSION = 256, OPT_LEVEL, OPT_PLATFORM, OPT_PROGRESS, OPT_CACHE_DIR };

/* An image location: oci:DIR[:REF] or docker://REF. */
struct location {
        bool registry;
        char *dir;             /* oci */
        char *ref_name;        /* oci, may be NULL */
        struct ossb_reference *ref; /* registry */
};

struct convert {
        struct ossb_cli_session s;
        struct ossb_layer_opts opts;
        bool have_compression;
        const char *platform, *cache_dir;
        enum ossb_progress_mode progress;
        const char *src_arg, *dst_arg;
        struct location src, dst;
};

static void location_clear(struct location *l)
{
        free(l->dir);
        free(l->ref_name);
        ossb_reference_free(l->ref);
        memset(l, 0, sizeof(*l));
}

static int location_parse(const char *s, struct location *ret, struct ossb_error **err)
{
        if (strncmp(s, "docker://", 9) == 0) {
                ret->registry = true;
                return ossb_reference_parse(s + 9, &ret->ref, err);
        }
        if (strncmp(s, "oci:", 4) != 0 || !s[4])
                return ossb_error_setx(err, OSSB_EXIT_USAGE, -EINVAL,
                                       "`%s`: expected oci:DIR[:REF] or docker://NAME[:TAG]", s);
        const char *colon = strchr(s + 4, ':');
        ret->dir = colon ? strndup(s + 4, (size_t) (colon - s - 4)) : strdup(s + 4);
        if (colon && colon[1] && !(ret->ref_name = strdup(colon + 1)))
                return ossb_error_set(err, -ENOMEM, "out of memory");
        if (!ret->dir)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        if (!*ret->dir)
                return ossb_error_setx(err, OSSB_EXIT_USAGE, -EINVAL, "`%s`: no directory", s);
        return 0;
}

/* Parse options; -1 after --help, 0 to go on, or an exit code. */
static int parse(struct convert *c, int argc, char **argv)
{
        static const struct option longopts[] = {
                { "compression", required_argument, NULL, OPT_COMPRESSION },
                { "level", required_argument, NULL, OPT_LEVEL },
                { "platform", required_argument, NULL, OPT_PLATFORM },
                { "progress", required_argument, NULL, OPT_PROGRESS },
                { "cache-dir", required_argument, NULL, OPT_CACHE_DIR },
                { "help", no_argument, NULL, 'h' },
                OSSB_CLI_REGISTRY_LONGOPTS,
                {},
        };
        int opt;
        char *end;
        optind = 1;
        opterr = 0;
        while ((opt = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
                int taken = ossb_cli_registry_option(&c->s.reg_opts, opt, optarg);
                if (taken < 0)
                        return OSSB_EXIT_INTERNAL;
                if (taken)
                        continue;
                switch (opt) {
                case OPT_COMPRESSION:
                        if (ossb_compression_from_string(optarg, &c->opts.compression) < 0)
                                return ossb_cli_usage_error("convert ", "invalid --compression `%s` (estargz, "
                                                            "zstd:chunked, gzip, zstd, uncompressed)", optarg);
                        c->have_compression = true;
                        break;
                case OPT_LEVEL:
                        c->opts.level = (int) strtol(optarg, &end, 10);
                        if (!*optarg || *end || c->opts.level < -131072 || c->opts.level > 22)
                                return ossb_cli_usage_error("convert ", "invalid --level `%s`", optarg);
                        break;
                case OPT_PLATFORM:
                        c->platform = optarg;
                        break;
                case OPT_PROGRESS:
                        if (ossb_progress_mode_parse(optarg, &c->progress) < 0)
                                return ossb_cli_usage_error("convert ", "invalid --progress `%s`", optarg);
                        break;
                case OPT_CACHE_DIR:
                        c->cache_dir = optarg;
                        break;
                case 'h':
                        fputs(convert_usage, stdout);
                        fputs(ossb_cli_registry_help, stdout);
                        return -1;
                case ':':
                        return ossb_cli_usage_error("convert ", "option `%s` requires a value", argv[optind - 1]);
                default:
                        return ossb_cli_usage_error("convert ", "unknown option `%s`", argv[optind - 1]);
                }
        }
        if (argc - optind != 2)
                return ossb_cli_usage_error("convert ", "expected SRC and DST, got %d argument(s)", argc - optind);
        if (!c->have_compression)
                return ossb_cli_usage_error("convert ", "--compression is required");
        c->src_arg = argv[optind];
        c->dst_arg = argv[optind + 1];
        return 0;
}

/* ---- the source image ---- */

/* The manifest for the platform when `top` is an index, else `top` itself. */
static int choose_manifest(struct convert *c, const struct ossb_descriptor *top, const struct ossb_platform *want,
                           struct ossb_descriptor *ret, struct ossb_error **err)
{
        for (int depth = 0; depth < 8; depth++) {
                _cleanup_free_ char *data = NULL;
                size_t len = 0;
                struct ossb_index *ix = NULL;
                const struct ossb_index_entry *e = NULL;
                int r = ossb_store_read_blob(c->s.store, top->digest, OSSB_MANIFEST_MAX_SIZE, &data, &len, err);
                if (r < 0)
                        return r;
                if (!ossb_is_index(top->media_type, data, len))
                        return ossb_descriptor_copy(top, ret) < 0 ? ossb_error_set(err, -ENOMEM, "out of memory") : 0;
                r = ossb_index_parse(data, len, &ix, err);
                if (r >= 0)
                        r = ossb_index_select(ix, want, c->src_arg, &e, err);
                if (r >= 0 && ossb_descriptor_copy(&e->desc, ret) < 0)
                        r = ossb_error_set(err, -ENOMEM, "out of memory");
                ossb_index_free(ix);
                if (r < 0)
                        return r;
                if (!ret->media_type || strstr(ret->media_type, "index") == NULL)
                        return 0;
                top = ret; /* a nested index: go on with it (its blob is in the store) */
        }
        return ossb_error_set(err, -EPROTO, "`%s`: indexes nested too deep", c->src_arg);
}

static int read_source(struct convert *c, const struct ossb_platform *want, struct ossb_descriptor *ret,
                       struct ossb_error **err)
{
        struct ossb_descriptor top = { 0 };
        int r;
        if (c->src.registry) {
                struct ossb_pulled_image p = { 0 };
                r = ossb_pull(c->s.reg, c->s.store, c->src.ref, want, true, &p, err);
                if (r >= 0 && ossb_descriptor_copy(&p.manifest, ret) < 0)
                        r = ossb_error_set(err, -ENOMEM, "out of memory");
                ossb_pulled_image_clear(&p);
                return r;
        }
        r = ossb_layout_read(c->s.store, c->src.dir, c->src.ref_name, &top, err);
        if (r >= 0)
                r = choose_manifest(c, &top, want, ret, err);
        ossb_descriptor_clear(&top);
        return r;
}

/* ---- converting ---- */

static int read_json_blob(struct ossb_store *s, const char *digest, json_object **ret, struct ossb_error **err)
{
        _cleanup_free_ char *data = NULL;
        size_t len = 0;
        int r = ossb_store_read_blob(s, digest, 16 * 1024 * 1024, &data, &len, err);
        return r < 0 ? r : ossb_json_parse(data, len, 16 * 1024 * 1024, ret, err);
}

static int set_diff_ids(json_object *config, char (*diff_ids)[OSSB_DIGEST_STR_LEN + 1], size_t n,
                        struct ossb_error **err)
{
        json_object *rootfs, *old, *ids = json_object_new_array();
        if (!ids)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        if (!json_object_object_get_ex(config, "rootfs", &rootfs) || !json_object_is_type(rootfs, json_type_object) ||
            !json_object_object_get_ex(rootfs, "diff_ids", &old) || !json_object_is_type(old, json_type_array) ||
            json_object_array_length(old) != n) {
                json_object_put(ids);
                return ossb_error_set(err, -EPROTO, "the image config's rootfs.diff_ids does not list its %zu layers", n);
        }
        for (size_t i = 0; i < n; i++)
                if (json_object_array_add(ids, json_object_new_string(diff_ids[i])) < 0) {
                        json_object_put(ids);
                        return ossb_error_set(err, -ENOMEM, "out of memory");
                }
        json_object_object_add(rootfs, "diff_ids", ids);
        return 0;
}

static int convert_image(struct convert *c, const struct ossb_descriptor *src, struct ossb_descriptor *ret,
                         struct ossb_error **err)
{
        _cleanup_free_ char *data = NULL;
        _cleanup_free_ char(*diff_ids)[OSSB_DIGEST_STR_LEN + 1] = NULL;
        struct ossb_manifest *m = NULL;
        struct ossb_descriptor *layers = NULL, cfg = { 0 };
        json_object *config = NULL;
        size_t len = 0, n = 0;
        int r = ossb_store_read_blob(c->s.store, src->digest, OSSB_MANIFEST_MAX_SIZE, &data, &len, err);
        if (r >= 0)
                r = ossb_manifest_parse(data, len, &m, err);
        if (r >= 0)
                r = read_json_blob(c->s.store, m->config.digest, &config, err);
        if (r >= 0) {
                layers = calloc(m->n_layers ? m->n_layers : 1, sizeof(*layers));
                diff_ids = calloc(m->n_layers ? m->n_layers : 1, sizeof(*diff_ids));
                if (!layers || !diff_ids)
                        r = ossb_error_set(err, -ENOMEM, "out of memory");
        }
        for (; r >= 0 && n < m->n_layers; n++) {
                if (ossb_interrupted()) {
                        r = ossb_error_set(err, -EINTR, "interrupted");
                        break;
                }
                r = ossb_layer_convert(c->s.store, &m->layers[n], &c->opts, &layers[n], diff_ids[n], err);
                if (r >= 0)
                        log_info("layer %zu/%zu: %s -> %s (%s, %lld bytes)", n + 1, m->n_layers, m->layers[n].digest,
                                 layers[n].digest, ossb_compression_to_string(c->opts.compression),
                                 (long long) layers[n].size);
        }
        if (r >= 0)
                r = set_diff_ids(config, diff_ids, m->n_layers, err);
        if (r >= 0)
                r = ossb_image_write(c->s.store, config, layers, m->n_layers, NULL, ret, &cfg, err);
        for (size_t i = 0; i < n; i++)
                ossb_descriptor_clear(&layers[i]);
        free(layers);
        ossb_descriptor_clear(&cfg);
        json_object_put(config);
        ossb_manifest_free(m);
        return r;
}

static int write_destination(struct convert *c, const struct ossb_descriptor *manifest, char digest[OSSB_DIGEST_STR_LEN + 1],
                             struct ossb_error **err)
{
        int r;
        memcpy(digest, manifest->digest, OSSB_DIGEST_STR_LEN + 1);
        if (c->dst.registry)
                r = ossb_push(c->s.reg, c->s.store, manifest, &c->dst.ref, 1, digest, err);
        else {
                struct ossb_layout_tag tag = { .ref_name = c->dst.ref_name };
                size_t n = c->dst.ref_name ? 1 : 0, l = strlen(c->dst.dir);
                if (l > 4 && streq(c->dst.dir + l - 4, ".tar"))
                        r = ossb_layout_write_tar(c->s.store, c->dst.dir, manifest, &tag, n, err);
                else
                        r = ossb_layout_write_dir(c->s.store, c->dst.dir, manifest, &tag, n, err);
        }
        if (r < 0)
                ossb_error_wrap(err, "%s", c->dst_arg);
        return r;
}

static int run(struct convert *c, struct ossb_error **err)
{
        struct ossb_descriptor src = { 0 }, out = { 0 };
        struct ossb_platform want;
        char digest[OSSB_DIGEST_STR_LEN + 1];
        int r = location_parse(c->src_arg, &c->src, err);
        if (r >= 0)
                r = location_parse(c->dst_arg, &c->dst, err);
        if (r >= 0)
                r = ossb_platform_parse(c->platform ? c->platform : ossb_host_platform(), &want, err);
        if (r < 0) {
                ossb_error_set_exit(err, OSSB_EXIT_USAGE);
                return r;
        }
        if (ossb_interrupt_setup() < 0)
                log_warn("cannot install signal handlers");
        r = ossb_cli_session_open(&c->s, c->cache_dir, c->progress, err);
        if (r >= 0)
                r = read_source(c, &want, &src, err);
        if (r >= 0)
                r = convert_image(c, &src, &out, err);
        if (r >= 0)
                r = write_destination(c, &out, digest, err);
        if (r >= 0) {
                ossb_transfer_display_finish(&c->s.display, "converted");
                printf("%s\n", digest);
        }
        ossb_descriptor_clear(&src);
        ossb_descriptor_clear(&out);
        return r;
}

int ossb_cmd_convert(int argc, char **argv)
{
        struct convert c = { .opts = { .level = -1, .source_date_epoch = -1 } };
        struct ossb_error *err = NULL;
        int r = parse(&c, argc, argv);
        if (r == 0 && run(&c, &err) < 0)
                r = ossb_cli_fail(err);
        location_clear(&c.src);
        location_clear(&c.dst);
        ossb_cli_session_close(&c.s);
        return r < 0 ? 0 : r;
}
