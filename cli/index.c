/* cli/index.c - `ossb index REF [--push]`: checkpoint indexes of an image's plain gzip layers
 * (oci/zran.h), so that builds read those layers lazily.
 *
 * Owns: the command: resolve REF for the platform, then for each gzip layer without a
 * seekable TOC stream its blob (ranged reads of the registry, or the store when the blob is
 * there) through the indexer: downloaded and indexed at once, nothing unpacked, nothing kept
 * but the index (CACHE/indexes/sha256/<layer hex>.zran, written atomically).  With --push
 * the indexes go to the registry as one artifact whose subject is the image manifest
 * (registry/referrers.h), so builds on other machines find them.  Prints the artifact's
 * digest (--push) or the index files.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <json-c/json.h>

#include "cli/cli.h"
#include "common/cleanup.h"
#include "common/interrupt.h"
#include "common/log.h"
#include "oci/image.h"
#include "oci/platform.h"
#include "oci/zran.h"
#include "registry/pull.h"
#include "registry/ranged.h"
#include "registry/reference.h"
#include "registry/referrers.h"

static const char index_usage[] =
        "Usage: ossb index [OPTIONS] REF\n"
        "\n"
        "Make checkpoint indexes of an image's plain gzip layers, so that `ossb build\n"
        "--snapshotter=fuse` reads those layers lazily (file by file) instead of pulling them.\n"
        "Each layer is downloaded and indexed at once (nothing is unpacked or kept but the index,\n"
        "in the cache dir's indexes/).  Layers that are already seekable (eStargz, zstd:chunked)\n"
        "and plain zstd layers (which ossb always pulls in full) are skipped.\n"
        "\n"
        "Options:\n"
        "      --push                   Push the indexes to REF's repository as an artifact that\n"
        "                               refers to the image (OCI referrers API, or the sha256-<hex>\n"
        "                               tag where the registry has none); prints its digest\n"
        "      --platform OS/ARCH[/V]   Platform to choose from a multi-platform image (default: the host's)\n"
        "      --span-size SIZE         Compressed bytes between checkpoints (default 4MiB; K/M suffixes)\n"
        "      --progress MODE          auto (default), plain, tty, json or quiet\n"
        "      --cache-dir DIR          State directory (as for ossb build)\n"
        "  -h, --help                   Show this help\n"
        "\n";

enum { OPT_PUSH = 256, OPT_PLATFORM, OPT_SPAN, OPT_PROGRESS, OPT_CACHE_DIR };

struct index_cmd {
        struct ossb_cli_session s;
        bool push;
        const char *platform, *cache_flag, *ref_arg;
        char *cache_dir;
        int64_t span;
        enum ossb_progress_mode progress;
        struct ossb_reference *ref;
};

static int parse_size(const char *s, int64_t *ret)
{
        char *end;
        errno = 0;
        long long v = strtoll(s, &end, 10);
        int64_t mul = 1;
        if (*end == 'K' || *end == 'k')
                mul = 1024, end++;
        else if (*end == 'M' || *end == 'm')
                mul = 1024 * 1024, end++;
        if (*end == 'i' && mul > 1)
                end++;
        if (*end == 'B' && mul > 1)
                end++;
        if (errno || end == s || *end || v <= 0 || v > (1LL << 30) / mul)
                return -EINVAL;
        *ret = v * mul;
        return 0;
}

/* Parse options; -1 after --help, 0 to go on, or an exit code. */
static int parse(struct index_cmd *c, int argc, char **argv)
{
        static const struct option longopts[] = {
                { "push", no_argument, NULL, OPT_PUSH },
                { "platform", required_argument, NULL, OPT_PLATFORM },
                { "span-size", required_argument, NULL, OPT_SPAN },
                { "progress", required_argument, NULL, OPT_PROGRESS },
                { "cache-dir", required_argument, NULL, OPT_CACHE_DIR },
                { "help", no_argument, NULL, 'h' },
                OSSB_CLI_REGISTRY_LONGOPTS,
                {},
        };
        int opt;
        optind = 1;
        opterr = 0;
        while ((opt = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
                int taken = ossb_cli_registry_option(&c->s.reg_opts, opt, optarg);
                if (taken < 0)
                        return OSSB_EXIT_INTERNAL;
                if (taken)
                        continue;
                switch (opt) {
                case OPT_PUSH:
                        c->push = true;
                        break;
                case OPT_PLATFORM:
                        c->platform = optarg;
                        break;
                case OPT_SPAN:
                        if (parse_size(optarg, &c->span) < 0 || c->span < 64 * 1024)
                                return ossb_cli_usage_error("index ", "invalid --span-size `%s` (64K to 1G)", optarg);
                        break;
                case OPT_PROGRESS:
                        if (ossb_progress_mode_parse(optarg, &c->progress) < 0)
                                return ossb_cli_usage_error("index ", "invalid --progress `%s`", optarg);
                        break;
                case OPT_CACHE_DIR:
                        c->cache_flag = optarg;
                        break;
                case 'h':
                        fputs(index_usage, stdout);
                        fputs(ossb_cli_registry_help, stdout);
                        return -1;
                case ':':
                        return ossb_cli_usage_error("index ", "option `%s` requires a value", argv[optind - 1]);
                default:
                        return ossb_cli_usage_error("index ", "unknown option `%s`", argv[optind - 1]);
                }
        }
        if (argc - optind != 1)
                return ossb_cli_usage_error("index ", "expected one image reference, got %d argument(s)", argc - optind);
        c->ref_arg = argv[optind];
        return 0;
}

/* ---- reading a layer blob in order ---- */

#define READ_PIECE (8 * 1024 * 1024)

struct blob_reader {
        int fd;                  /* the store's copy, or -1: ranged reads */
        struct ossb_ranged *rr;
        const char *digest;
        int64_t size, at;
        char *buf;
        size_t len, pos;
};

static int copy_piece(void *userdata, size_t index, const void *data, size_t len)
{
        struct blob_reader *br = userdata;
        memcpy(br->buf, data, len);
        br->len = len;
        br->pos = 0;
        return 0;
}

static ssize_t blob_read(void *userdata, void *buf, size_t len, struct ossb_error **err)
{
        struct blob_reader *br = userdata;
        if (ossb_interrupted())
                return ossb_error_set(err, -EINTR, "interrupted");
        if (br->fd >= 0) {
                ssize_t n = read(br->fd, buf, len);
                if (n < 0) {
                        int e = errno;
                        return ossb_error_set(err, -e, "reading %s from the store: %s", br->digest, strerror(e));
                }
                return n;
        }
        if (br->pos == br->len) {
                if (br->at >= br->size)
                        return 0;
                struct ossb_range r = { br->at, br->size - br->at < READ_PIECE ? br->size - br->at : READ_PIECE };
                int k = ossb_ranged_read(br->rr, br->digest, br->size, &r, 1, copy_piece, br, NULL, err);
                if (k < 0)
                        return k;
                br->at += r.length;
        }
        size_t n = br->len - br->pos < len ? br->len - br->pos : len;
        memcpy(buf, br->buf + br->pos, n);
        br->pos += n;
        return (ssize_t) n;
}

/* ---- one layer ---- */

static bool seekable(const struct ossb_descriptor *d)
{
        json_object *v;
        return d->annotations && (json_object_object_get_ex(d->annotations, "containerd.io/snapshot/stargz/toc.digest", &v) ||
                                  json_object_object_get_ex(d->annotations,
                                                            "io.github.containers.zstd-chunked.manifest-checksum", &v));
}

static int index_layer(struct index_cmd *c, struct ossb_ranged *rr, const struct ossb_descriptor *d, const char *name,
                       void **ret, size_t *ret_len, struct ossb_error **err)
{
        struct ossb_zran *z = NULL;
        int k = ossb_zran_cache_load(c->cache_dir, d->digest, d->size, &z, err);
        if (k == -ENOENT) {
                _cleanup_free_ char *buf = malloc(READ_PIECE);
                struct blob_reader br = { .fd = -1, .rr = rr, .digest = d->digest, .size = d->size, .buf = buf };
                if (!buf)
                        return ossb_error_set(err, -ENOMEM, "out of memory");
                if (ossb_store_has(c->s.store, d->digest) && ossb_store_open_blob(c->s.store, d->digest, &br.fd, NULL) < 0)
                        br.fd = -1;
                struct ossb_zran_build_opts o = { .name = name, .digest = d->digest, .size = d->size, .span = c->span };
                k = ossb_zran_build(&o, blob_read, &br, &z, err);
                if (br.fd >= 0)
                        close(br.fd);
                if (k == -EBADMSG || k == -ENOTSUP) /* the blob is corrupt, or not what a layer should be */
                        ossb_error_set_exit(err, OSSB_EXIT_REGISTRY);
        } else if (k >= 0)
                log_info("%s: index found in the cache", name);
        if (k < 0)
                return k;
        k = ossb_zran_encode(z, ret, ret_len, err);
        if (k >= 0)
                log_info("%s: %zu checkpoints, %zu entries, %" PRId64 " uncompressed bytes; index of %zu bytes", name, z->n_cps,
                         z->n_entries, z->size, *ret_len);
        ossb_zran_free(z);
        return k;
}

/* ---- the image ---- */

struct made {
        struct ossb_artifact_layer *layers;
        size_t n;
};

static void made_clear(struct made *m)
{
        for (size_t i = 0; i < m->n; i++)
                json_object_put(m->layers[i].annotations);
        free(m->layers);
}

static int keep(struct index_cmd *c, const struct ossb_descriptor *d, const void *data, size_t len, struct made *m,
                struct ossb_error **err)
{
        _cleanup_free_ char *path = NULL;
        int k = ossb_zran_cache_store(c->cache_dir, data, len, &path, err);
        if (k >= 0 && !c->push)
                printf("%s %s\n", d->digest, path);
        if (k < 0 || !c->push)
                return k;
        struct ossb_artifact_layer *l = &m->layers[m->n];
        *l = (struct ossb_artifact_layer) { .media_type = OSSB_ZRAN_MEDIA_TYPE, .size = (int64_t) len };
        k = ossb_store_put(c->s.store, data, len, NULL, l->digest, err);
        if (k < 0)
                return k;
        l->annotations = json_object_new_object();
        if (!l->annotations ||
            json_object_object_add(l->annotations, OSSB_ZRAN_ANNOTATION_LAYER, json_object_new_string(d->digest)) < 0) {
                json_object_put(l->annotations);
                return ossb_error_set(err, -ENOMEM, "out of memory");
        }
        m->n++;
        return 0;
}

static int index_layers(struct index_cmd *c, struct ossb_repo *repo, const struct ossb_pulled_image *p, struct made *m,
                        struct ossb_error **err)
{
        struct ossb_ranged *rr = NULL;
        int k = ossb_ranged_new(repo, NULL, &rr, err);
        m->layers = k >= 0 ? calloc(p->parsed->n_layers + 1, sizeof(*m->layers)) : NULL;
        if (k >= 0 && !m->layers)
                k = ossb_error_set(err, -ENOMEM, "out of memory");
        for (size_t i = 0; k >= 0 && i < p->parsed->n_layers; i++) {
                const struct ossb_descriptor *d = &p->parsed->layers[i];
                _cleanup_free_ char *name = NULL;
                if (asprintf(&name, "%s layer %zu (%.19s)", c->ref_arg, i + 1, d->digest) < 0) {
                        k = ossb_error_set(err, -ENOMEM, "out of memory");
                        break;
                }
                bool gzip = streq(d->media_type, OSSB_MT_OCI_LAYER_GZIP) || streq(d->media_type, OSSB_MT_DOCKER_LAYER_GZIP);
                if (!gzip || seekable(d)) {
                        log_info("%s: skipped (%s)", name, !gzip ? d->media_type : "already seekable");
                        continue;
                }
                _cleanup_free_ void *data = NULL;
                size_t len = 0;
                k = index_layer(c, rr, d, name, &data, &len, err);
                if (k >= 0)
                        k = keep(c, d, data, len, m, err);
                if (k < 0)
                        ossb_error_wrap(err, "%s", name);
        }
        ossb_ranged_free(rr);
        return k;
}

static int run(struct index_cmd *c, struct ossb_error **err)
{
        struct ossb_platform want;
        int k = ossb_reference_parse(c->ref_arg, &c->ref, err);
        if (k >= 0)
                k = ossb_platform_parse(c->platform ? c->platform : ossb_host_platform(), &want, err);
        if (k < 0) {
                ossb_error_set_exit(err, OSSB_EXIT_USAGE);
                return k;
        }
        if (ossb_interrupt_setup() < 0)
                log_warn("cannot install signal handlers");
        c->cache_dir = ossb_cli_cache_dir(c->cache_flag);
        if (!c->cache_dir)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        struct ossb_pulled_image p = { 0 };
        struct ossb_repo *repo = NULL;
        struct made m = { 0 };
        k = ossb_cli_session_open(&c->s, c->cache_flag, c->progress, err);
        if (k >= 0)
                k = ossb_pull(c->s.reg, c->s.store, c->ref, &want, false, &p, err);
        if (k >= 0)
                k = ossb_repo_open(c->s.reg, c->ref, c->push, &repo, err);
        if (k >= 0)
                k = index_layers(c, repo, &p, &m, err);
        char digest[OSSB_DIGEST_STR_LEN + 1];
        bool tags = false;
        if (k >= 0 && c->push && m.n == 0)
                log_warn("%s: no plain gzip layer: nothing to push", c->ref_arg);
        else if (k >= 0 && c->push)
                k = ossb_referrers_push(repo, c->s.store, &p.manifest, OSSB_ZRAN_MEDIA_TYPE, m.layers, m.n, NULL, digest,
                                        &tags, err);
        if (k >= 0 && c->push && m.n > 0) {
                log_info("%s: pushed %zu index(es) as %s%s", c->ref_arg, m.n, digest,
                         tags ? " (tag schema: the registry has no referrers API)" : "");
                printf("%s\n", digest);
        }
        if (k < 0)
                ossb_error_wrap(err, "ossb index %s", c->ref_arg);
        made_clear(&m);
        ossb_repo_free(repo);
        ossb_pulled_image_clear(&p);
        return k;
}

int ossb_cmd_index(int argc, char **argv)
{
        struct index_cmd c = { .progress = OSSB_PROGRESS_AUTO };
        struct ossb_error *err = NULL;
        int r = parse(&c, argc, argv);
        if (r == 0 && run(&c, &err) < 0)
                r = ossb_cli_fail(err);
        ossb_reference_free(c.ref);
        free(c.cache_dir);
        ossb_cli_session_close(&c.s);
        return r < 0 ? 0 : r;
}
