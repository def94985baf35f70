/* cli/prune.c - `ossb prune [--keep-storage SIZE] [--cache-dir DIR]`: evict step-cache
 * entries, least recently used first, and the layer blobs only they referenced; and unpacked
 * base layers (snapshotter/layerstore.h) that no build uses. */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "common/cleanup.h"
#include "common/fs.h"
#include "engine/cache.h"
#include "oci/store.h"
#include "engine/replay.h"
#include "fuse/chunkcache.h"
#include "snapshotter/layerstore.h"

static const char prune_usage[] =
        "Usage: ossb prune [--keep-storage SIZE] [--cache-dir DIR]\n"
        "\n"
        "Remove step-cache entries, least recently used first, until the layers the remaining\n"
        "entries reference take at most SIZE (bytes, or with a suffix: 512m, 10g; default 0:\n"
        "remove every entry), and delete the layer blobs only evicted entries referenced.\n"
        "Unpacked base layers no running build uses, and chunks of lazily read layers, go the\n"
        "same way, least recently used first, until each kind takes at most SIZE too.  Prints\n"
        "the bytes freed and the cache directory.  Records of the files steps read from lazily\n"
        "read layers (for prefetching) go when older than 30 days or beyond the newest 4096.\n"
        "Builds sharing the cache directory may run meanwhile.\n"
        "\n"
        "The cache directory: --cache-dir, else $OSSB_CACHE_DIR, else /var/lib/ossb for root,\n"
        "else $XDG_CACHE_HOME/ossb, else ~/.cache/ossb.\n";

/* "1024", "512k", "512m", "10g" (powers of 1024), "1.5g". */
static int parse_size(const char *s, int64_t *ret)
{
        char *end = NULL;
        errno = 0;
        double v = strtod(s, &end);
        if (!*s || errno || v < 0 || end == s)
                return -EINVAL;
        double mul = 1;
        if (*end) {
                switch (*end) {
                case 'k': case 'K': mul = 1024.0; break;
                case 'm': case 'M': mul = 1024.0 * 1024; break;
                case 'g': case 'G': mul = 1024.0 * 1024 * 1024; break;
                case 't': case 'T': mul = 1024.0 * 1024 * 1024 * 1024; break;
                default: return -EINVAL;
                }
                end++;
                if ((*end == 'b' || *end == 'B') && end[1] == '\0')
                        end++;
                if (*end)
                        return -EINVAL;
        }
        if (v * mul > 9.0e18)
                return -ERANGE;
        *ret = (int64_t) (v * mul);
        return 0;
}

int ossb_cmd_prune(int argc, char **argv)
{
        static const struct option longopts[] = {
                { "keep-storage", required_argument, NULL, 'k' },
                { "cache-dir", required_argument, NULL, 'c' },
                { "help", no_argument, NULL, 'h' },
                {},
        };
        const char *cache_flag = NULL;
        int64_t keep = 0, freed = 0;
        int opt;
        optind = 1;
        opterr = 0;
        while ((opt = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
                switch (opt) {
                case 'k':
                        if (parse_size(optarg, &keep) < 0)
                                return ossb_cli_usage_error("prune ", "invalid --keep-storage `%s`", optarg);
                        break;
                case 'c':
                        cache_flag = optarg;
                        break;
                case 'h':
                        fputs(prune_usage, stdout);
                        return 0;
                case ':':
                        return ossb_cli_usage_error("prune ", "option `%s` requires a value", argv[optind - 1]);
                default:
                        return ossb_cli_usage_error("prune ", "unknown option `%s`", argv[optind - 1]);
                }
        }
        if (optind != argc)
                return ossb_cli_usage_error("prune ", "unexpected argument `%s`", argv[optind]);
        _cleanup_free_ char *cache = ossb_cli_cache_dir(cache_flag);
        _cleanup_free_ char *root = cache ? ossb_path_join(cache, "store") : NULL;
        if (!root)
                return ossb_cli_usage_error("prune ", "no cache directory: set --cache-dir, $OSSB_CACHE_DIR or $HOME");
        struct ossb_error *err = NULL;
        struct ossb_store *store = NULL;
        struct ossb_cache *c = NULL;
        int r = ossb_store_open(root, &store, &err);
        if (r >= 0)
                r = ossb_cache_open(cache, &c, &err);
        if (r >= 0)
                r = ossb_cache_prune(c, store, keep, &freed, &err);
        int64_t freed_layers = 0, freed_chunks = 0;
        if (r >= 0)
                r = ossb_layerstore_prune(cache, keep, &freed_layers, &err);
        if (r >= 0)
                r = ossb_chunkcache_prune(cache, keep, &freed_chunks, &err);
        if (r >= 0) /* records of the files steps read: old ones, beyond a count (tiny files) */
                r = ossb_replay_prune(cache, OSSB_REPLAY_PRUNE_AGE, OSSB_REPLAY_PRUNE_COUNT, NULL, &err);
        freed += freed_layers + freed_chunks;
        ossb_cache_free(c);
        ossb_store_free(store);
        if (r < 0)
                return ossb_cli_fail(err);
        printf("%lld bytes freed in %s\n", (long long) freed, cache);
        return 0;
}
