/* registry/sources.c - blob provenance: which repositories a blob is known to come from, kept
 * in the store's root as sources/<hex> (one "HOST[:PORT]/path" line per repository, newest
 * last, at most SOURCES_MAX lines, rewritten atomically).  Pushes use it to pick
 * cross-repository mounts.  See client.h. */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/fs.h"
#include "common/strbuf.h"
#include "registry/client.h"

#define SOURCES_MAX 32
#define SOURCES_FILE_MAX (64 * 1024)
#define REPOSITORY_MAX 512

static int sources_path(struct ossb_store *store, const char *digest, char **ret, struct ossb_error **err)
{
        if (!ossb_digest_is_valid(digest))
                return ossb_error_set(err, -EINVAL, "`%s` is not a sha256 digest", digest);
        if (asprintf(ret, "%s/sources/%s", ossb_store_root(store), digest + 7) < 0)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        return 0;
}

static bool valid_repository(const char *s)
{
        size_t n = strlen(s);
        if (n == 0 || n > REPOSITORY_MAX || !strchr(s, '/') || s[0] == '/')
                return false;
        for (const char *p = s; *p; p++)
                if ((unsigned char) *p <= ' ' || *p == 0x7f)
                        return false;
        return true;
}

/* The lines of a sources file (missing file: empty list). */
static int read_sources(const char *path, char ***ret, struct ossb_error **err)
{
        _cleanup_free_ char *data = NULL;
        size_t len = 0;
        _cleanup_strv_free_ char **v = ossb_strv_new_empty();
        if (!v)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        struct ossb_error *e = NULL;
        int k = ossb_read_file(path, SOURCES_FILE_MAX, &data, &len, &e);
        if (k == -ENOENT) {
                ossb_error_free(e);
                *ret = TAKE_PTR(v);
                return 0;
        }
        if (k < 0) {
                if (err && !*err)
                        *err = e;
                else
                        ossb_error_free(e);
                return k;
        }
        for (char *p = data; p < data + len;) {
                size_t n = strcspn(p, "\n");
                p[n] = 0;
                if (valid_repository(p) && !ossb_strv_contains(v, p) && ossb_strv_push(&v, p) < 0)
                        return ossb_error_set(err, -ENOMEM, "out of memory");
                p += n + 1;
        }
        *ret = TAKE_PTR(v);
        return 0;
}

int ossb_blob_source_get(struct ossb_store *store, const char *digest, char ***ret, struct ossb_error **err)
{
        _cleanup_free_ char *path = NULL;
        int k = sources_path(store, digest, &path, err);
        if (k < 0)
                return k;
        return read_sources(path, ret, err);
}

int ossb_blob_source_add(struct ossb_store *store, const char *digest, const char *repository,
                         struct ossb_error **err)
{
        if (!valid_repository(repository))
                return ossb_error_set(err, -EINVAL, "`%s` is not a repository name", repository);
        _cleanup_free_ char *path = NULL;
        _cleanup_strv_free_ char **v = NULL;
        int k = sources_path(store, digest, &path, err);
        if (k >= 0)
                k = read_sources(path, &v, err);
        if (k < 0)
                return k;
        size_t n = ossb_strv_length(v);
        if (n > 0 && streq(v[n - 1], repository))
                return 0; /* already the newest */
        struct ossb_strbuf sb = OSSB_STRBUF_INIT;
        /* oldest first; the repository moves (or is added) to the end; the oldest fall off */
        size_t keep = 0;
        for (size_t i = 0; i < n; i++)
                if (!streq(v[i], repository))
                        keep++;
        size_t skip = keep + 1 > SOURCES_MAX ? keep + 1 - SOURCES_MAX : 0;
        for (size_t i = 0; k >= 0 && i < n; i++) {
                if (streq(v[i], repository))
                        continue;
                if (skip > 0) {
                        skip--;
                        continue;
                }
                k = ossb_strbuf_appendf(&sb, "%s\n", v[i]);
        }
        if (k >= 0)
                k = ossb_strbuf_appendf(&sb, "%s\n", repository);
        if (k < 0) {
                ossb_strbuf_free(&sb);
                return ossb_error_set(err, -ENOMEM, "out of memory");
        }
        _cleanup_free_ char *dir = NULL;
        if (asprintf(&dir, "%s/sources", ossb_store_root(store)) < 0) {
                dir = NULL;
                ossb_strbuf_free(&sb);
                return ossb_error_set(err, -ENOMEM, "out of memory");
        }
        k = ossb_mkdir_p(dir, 0755);
        if (k < 0) {
                ossb_strbuf_free(&sb);
                return ossb_error_set(err, k, "cannot create `%s`: %s", dir, strerror(-k));
        }
        k = ossb_write_file_atomic(path, sb.buf, sb.len, 0644, err);
        ossb_strbuf_free(&sb);
        return k;
}
