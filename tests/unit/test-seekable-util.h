/* tests/unit/test-seekable-util.h - helpers the seekable-format tests share: blobs in memory,
 * locate + decode, and the independent check of a TOC against the layer's tar as libarchive
 * reads it (every file assembled from its chunks must equal the tar's bytes; metadata must
 * match), so that neither ossb's writer nor its reader is trusted by the tests. */
#ifndef OSSB_TESTS_SEEKABLE_UTIL_H
#define OSSB_TESTS_SEEKABLE_UTIL_H

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <archive.h>
#include <archive_entry.h>

#include "common/cleanup.h"
#include "common/fs.h"
#include "oci/oci.h"
#include "oci/seekable.h"

struct blob {
        unsigned char *data;
        size_t len;
};

static inline void blob_clear(struct blob *b)
{
        free(b->data);
        b->data = NULL;
        b->len = 0;
}

static inline int blob_read(struct ossb_store *s, const char *digest, struct blob *b)
{
        char *p = NULL;
        size_t len = 0;
        int r = ossb_store_read_blob(s, digest, 512u * 1024 * 1024, &p, &len, NULL);
        if (r < 0)
                return r;
        b->data = (unsigned char *) p;
        b->len = len;
        return 0;
}

/* locate (annotations and the tail) then decode. */
static inline int toc_open(const struct blob *b, json_object *annotations, struct ossb_toc_location *loc,
                           struct ossb_toc **ret, struct ossb_error **err)
{
        size_t tail = b->len < OSSB_SEEKABLE_TAIL_SIZE ? b->len : OSSB_SEEKABLE_TAIL_SIZE;
        int r = ossb_toc_locate(annotations, (int64_t) b->len, b->data + b->len - tail, tail, loc, err);
        if (r < 0)
                return r;
        if (loc->offset < 0 || loc->length <= 0 || (uint64_t) (loc->offset + loc->length) > b->len)
                return -ERANGE;
        return ossb_toc_decode(loc, b->data + loc->offset, (size_t) loc->length, ret, err);
}

static inline const struct ossb_toc_entry *toc_find(const struct ossb_toc *toc, const char *path)
{
        const struct ossb_toc_entry *found = NULL;
        for (size_t i = 0; i < toc->n; i++)
                if (strcmp(toc->entries[i].path, path) == 0)
                        found = &toc->entries[i]; /* the last one wins, as when unpacking */
        return found;
}

/* A file's bytes from its chunks; NULL on failure (with *err). */
static inline unsigned char *toc_file(const struct blob *b, const struct ossb_toc *toc, const struct ossb_toc_entry *e,
                                      struct ossb_error **err)
{
        unsigned char *out = malloc(e->size > 0 ? (size_t) e->size : 1);
        if (!out)
                return NULL;
        for (size_t k = 0; k < e->n_chunks; k++) {
                const struct ossb_toc_chunk *c = &e->chunks[k];
                if (c->end > (int64_t) b->len || c->offset < 0 ||
                    ossb_toc_chunk_read(toc, e, c, b->data + c->offset, (size_t) (c->end - c->offset),
                                        out + c->file_offset, err) < 0) {
                        free(out);
                        return NULL;
                }
        }
        return out;
}

static inline void clean_name(const char *in, char *out, size_t cap)
{
        size_t n = 0;
        for (const char *p = in; *p && n + 1 < cap;) {
                const char *e = strchr(p, '/');
                size_t l = e ? (size_t) (e - p) : strlen(p);
                if (l > 0 && !(l == 1 && p[0] == '.')) {
                        if (n > 0)
                                out[n++] = '/';
                        memcpy(out + n, p, l < cap - n - 1 ? l : cap - n - 1);
                        n += l < cap - n - 1 ? l : cap - n - 1;
                }
                p += l + (e ? 1 : 0);
        }
        out[n] = '\0';
}

static inline int check_meta(const struct ossb_toc_entry *e, struct archive_entry *ae)
{
        if ((e->mode & 07777) != (archive_entry_mode(ae) & 07777) || e->uid != (uid_t) archive_entry_uid(ae) ||
            e->gid != (gid_t) archive_entry_gid(ae) || (int64_t) e->mtime.tv_sec != (int64_t) archive_entry_mtime(ae))
                return -1;
        if (archive_entry_hardlink(ae)) {
                char t[4096];
                clean_name(archive_entry_hardlink(ae), t, sizeof(t));
                return e->hardlink && e->link && strcmp(e->link, t) == 0 ? 0 : -1;
        }
        if ((e->mode & S_IFMT) != (archive_entry_filetype(ae) & S_IFMT))
                return -1;
        if (S_ISLNK(e->mode) && (!e->link || strcmp(e->link, archive_entry_symlink(ae)) != 0))
                return -1;
        if ((S_ISCHR(e->mode) || S_ISBLK(e->mode)) && e->rdev != archive_entry_rdev(ae))
                return -1;
        if ((size_t) archive_entry_xattr_count(ae) != e->n_xattrs)
                return -1;
        return 0;
}

/* Every tar entry (but eStargz's TOC) has a TOC entry with the same metadata, and every
 * regular file's chunks give exactly the tar's bytes.  Returns the number of files checked,
 * or -1 (with a diagnostic on stderr). */
static inline int verify_against_tar(const struct blob *b, const struct ossb_toc *toc, size_t *ret_entries)
{
        struct archive *a = archive_read_new();
        struct archive_entry *ae;
        int files = 0, rc = 0;
        size_t entries = 0;
        archive_read_support_filter_all(a);
        archive_read_support_format_tar(a);
        if (archive_read_open_memory(a, b->data, b->len) != ARCHIVE_OK) {
                archive_read_free(a);
                return -1;
        }
        int ar;
        while (rc == 0 && (ar = archive_read_next_header(a, &ae)) == ARCHIVE_OK) {
                char path[4096];
                struct ossb_error *err = NULL;
                clean_name(archive_entry_pathname(ae), path, sizeof(path));
                if (strcmp(path, "stargz.index.json") == 0)
                        continue;
                entries++;
                const struct ossb_toc_entry *e = toc_find(toc, path);
                if (!e || check_meta(e, ae) < 0) {
                        fprintf(stderr, "# `%s`: %s\n", path, e ? "metadata differs" : "not in the TOC");
                        rc = -1;
                        break;
                }
                if (!S_ISREG(e->mode) || e->hardlink)
                        continue;
                int64_t size = archive_entry_size(ae);
                unsigned char *want = malloc(size > 0 ? (size_t) size : 1);
                unsigned char *got = want ? toc_file(b, toc, e, &err) : NULL;
                if (!got || e->size != size || archive_read_data(a, want, (size_t) size) != (la_ssize_t) size ||
                    memcmp(want, got, (size_t) size) != 0) {
                        fprintf(stderr, "# `%s`: content differs (%s)\n", path, err && err->msg ? err->msg : "-");
                        rc = -1;
                }
                ossb_error_free(err);
                free(want);
                free(got);
                files++;
        }
        if (rc == 0 && ar != ARCHIVE_EOF) {
                fprintf(stderr, "# tar: %s\n", archive_error_string(a));
                rc = -1;
        }
        archive_read_free(a);
        if (ret_entries)
                *ret_entries = entries;
        return rc < 0 ? -1 : files;
}

#endif
