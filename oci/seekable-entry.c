/* oci/seekable-entry.c - the TOC JSON of eStargz and zstd:chunked layers into struct
 * ossb_toc: entry fields, chunks, blob ranges, all checked.
 *
 * Owns: the entries it builds until they are handed over in the struct ossb_toc.
 * Both formats share one vocabulary (eStargz's TOCEntry, containers/storage's FileMetadata):
 * "reg" entries carry their first chunk (offset, chunkOffset, chunkSize, chunkDigest,
 * innerOffset; zstd:chunked adds endOffset), "chunk" entries right after carry the others.
 * Everything is untrusted: numbers are range-checked before any arithmetic, strings must not
 * hold NUL bytes, and a malformed entry is -EBADMSG naming its index and name.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include "common/cleanup.h"
#include "oci/image.h"
#include "oci/oci-internal.h"
#include "oci/seekable-internal.h"
#include "oci/seekable-toc.h"

/* Decompressed bytes a chunk may start after in its member (eStargz's innerOffset: small files
 * sharing a member); bounds the work a hostile TOC can ask of a chunk read. */
#define INNER_OFFSET_MAX (256 * 1024 * 1024)

struct parse {
        const struct ossb_toc_location *loc;
        struct ossb_toc *toc;
        size_t cap;
        bool collecting;    /* toc->entries[n - 1] is a "reg" whose chunks may follow */
        size_t idx;         /* index in the JSON array of the entry being read */
        const char *name;   /* its name, for messages */
        struct ossb_error **err;
};

static int bad(struct parse *p, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int bad(struct parse *p, int code, const char *fmt, ...)
{
        _cleanup_free_ char *msg = NULL;
        va_list ap;
        va_start(ap, fmt);
        int r = vasprintf(&msg, fmt, ap);
        va_end(ap);
        return ossb_error_set(p->err, code, "TOC entry %zu (`%s`): %s", p->idx, p->name ? p->name : "?",
                              r < 0 ? "invalid" : msg);
}

void ossb_toc_entry_clear(struct ossb_toc_entry *e)
{
        free(e->path);
        free(e->link);
        for (size_t i = 0; i < e->n_xattrs; i++) {
                free((char *) e->xattrs[i].name);
                free((void *) e->xattrs[i].value);
        }
        free(e->xattrs);
        free(e->chunks);
}

/* ---- names ---- */

int ossb_toc_path_clean(const char *name, size_t len, char **ret)
{
        if (memchr(name, '\0', len))
                return -EBADMSG;
        if (len > 0 && name[0] == '/')
                return -EPERM;
        char *out = malloc(len + 1);
        size_t n = 0;
        if (!out)
                return -ENOMEM;
        for (size_t i = 0; i < len;) {
                size_t j = i;
                while (j < len && name[j] != '/')
                        j++;
                size_t cl = j - i;
                if (cl == 2 && name[i] == '.' && name[i + 1] == '.') {
                        free(out);
                        return -EPERM;
                }
                if (cl > 0 && !(cl == 1 && name[i] == '.')) {
                        if (n > 0)
                                out[n++] = '/';
                        memcpy(out + n, name + i, cl);
                        n += cl;
                }
                i = j + 1;
        }
        out[n] = '\0';
        *ret = out;
        return 0;
}

bool ossb_toc_path_equal(const char *name, const char *path)
{
        _cleanup_free_ char *c = NULL;
        return ossb_toc_path_clean(name, strlen(name), &c) == 0 && streq(c, path);
}

/* ---- fields ---- */

static int get_int(struct parse *p, json_object *o, const char *key, int64_t max, int64_t *ret)
{
        json_object *v;
        *ret = 0;
        if (!json_object_object_get_ex(o, key, &v) || json_object_is_type(v, json_type_null))
                return 0;
        if (!json_object_is_type(v, json_type_int))
                return bad(p, -EBADMSG, "`%s` is not an integer", key);
        int64_t x = json_object_get_int64(v);
        if (x < 0 || x > max || x == INT64_MAX)
                return bad(p, -EBADMSG, "`%s` is out of range", key);
        *ret = x;
        return 0;
}

static int get_str(struct parse *p, json_object *o, const char *key, const char **ret, size_t *ret_len)
{
        json_object *v;
        *ret = NULL;
        *ret_len = 0;
        if (!json_object_object_get_ex(o, key, &v) || json_object_is_type(v, json_type_null))
                return 0;
        if (!json_object_is_type(v, json_type_string))
                return bad(p, -EBADMSG, "`%s` is not a string", key);
        *ret = json_object_get_string(v);
        *ret_len = (size_t) json_object_get_string_len(v);
        if (memchr(*ret, '\0', *ret_len))
                return bad(p, -EBADMSG, "`%s` holds a NUL byte", key);
        return 0;
}

static int get_digest(struct parse *p, json_object *o, const char *key, char ret[OSSB_DIGEST_STR_LEN + 1])
{
        const char *s;
        size_t len;
        int r = get_str(p, o, key, &s, &len);
        ret[0] = '\0';
        if (r < 0 || !s || len == 0)
                return r;
        if (!ossb_digest_is_valid(s))
                return bad(p, -EBADMSG, "`%s` is not a sha256 digest", key);
        memcpy(ret, s, OSSB_DIGEST_STR_LEN + 1);
        return 0;
}

static int entry_type(struct parse *p, const char *t, mode_t *ret)
{
        static const struct {
                const char *name;
                mode_t type;
        } types[] = { { "reg", S_IFREG },   { "dir", S_IFDIR },   { "symlink", S_IFLNK }, { "hardlink", S_IFREG },
                      { "char", S_IFCHR },  { "block", S_IFBLK }, { "fifo", S_IFIFO } };
        for (size_t i = 0; t && i < ELEMENTSOF(types); i++)
                if (streq(t, types[i].name)) {
                        *ret = types[i].type;
                        return 0;
                }
        return bad(p, -EBADMSG, "unknown type `%s`", t ? t : "(none)");
}

static int get_time(struct parse *p, json_object *o, struct timespec *ret)
{
        const char *s;
        size_t len;
        int64_t sec;
        long nsec;
        int r = get_str(p, o, "modtime", &s, &len);
        ret->tv_sec = 0;
        ret->tv_nsec = 0;
        if (r < 0 || !s || len == 0)
                return r;
        if (ossb_seekable_parse_time(s, &sec, &nsec) < 0)
                return bad(p, -EBADMSG, "invalid modtime `%s`", s);
        ret->tv_sec = (time_t) sec;
        ret->tv_nsec = nsec;
        return 0;
}

static int get_xattrs(struct parse *p, json_object *o, struct ossb_toc_entry *e)
{
        json_object *x;
        if (!json_object_object_get_ex(o, "xattrs", &x) || json_object_is_type(x, json_type_null))
                return 0;
        if (!json_object_is_type(x, json_type_object))
                return bad(p, -EBADMSG, "`xattrs` is not an object");
        size_t n = (size_t) json_object_object_length(x);
        if (n == 0)
                return 0;
        e->xattrs = calloc(n, sizeof(*e->xattrs));
        if (!e->xattrs)
                return ossb_error_set(p->err, -ENOMEM, "out of memory");
        json_object_object_foreach(x, key, val) {
                struct ossb_xattr *xa = &e->xattrs[e->n_xattrs];
                unsigned char *value;
                size_t len;
                if (!*key || !json_object_is_type(val, json_type_string))
                        return bad(p, -EBADMSG, "invalid xattr `%s`", key);
                int r = ossb_seekable_b64_decode(json_object_get_string(val), (size_t) json_object_get_string_len(val),
                                                 &value, &len);
                if (r == -ENOMEM)
                        return ossb_error_set(p->err, r, "out of memory");
                if (r < 0)
                        return bad(p, -EBADMSG, "xattr `%s`: its value is not base64", key);
                xa->value = value;
                xa->size = len;
                xa->name = strdup(key);
                e->n_xattrs++;
                if (!xa->name)
                        return ossb_error_set(p->err, -ENOMEM, "out of memory");
        }
        return 0;
}

static int get_path(struct parse *p, json_object *o, const char *key, char **ret)
{
        const char *s;
        size_t len;
        int r = get_str(p, o, key, &s, &len);
        if (r < 0)
                return r;
        if (!s)
                return bad(p, -EBADMSG, "no `%s`", key);
        r = ossb_toc_path_clean(s, len, ret);
        if (r == -ENOMEM)
                return ossb_error_set(p->err, r, "out of memory");
        if (r == -EPERM)
                return bad(p, -EPERM, "`%s` `%s` is absolute or has a `..` component", key, s);
        return r < 0 ? bad(p, r, "invalid `%s`", key) : 0;
}

/* ---- chunks ---- */

/* A chunk of the file being collected (the reg entry's own fields or a "chunk" entry's). */
static int add_chunk(struct parse *p, json_object *o, struct ossb_toc_entry *e)
{
        int64_t off, coff, csize, inner, end;
        int r = get_int(p, o, "offset", INT64_MAX, &off);
        r = r < 0 ? r : get_int(p, o, "chunkOffset", INT64_MAX, &coff);
        r = r < 0 ? r : get_int(p, o, "chunkSize", INT64_MAX, &csize);
        r = r < 0 ? r : get_int(p, o, "innerOffset", INNER_OFFSET_MAX, &inner);
        r = r < 0 ? r : get_int(p, o, "endOffset", INT64_MAX, &end);
        if (r < 0)
                return r;
        if (off <= 0 || off >= p->loc->offset)
                return bad(p, -EBADMSG, "chunk offset %" PRId64 " is not inside the blob's data", off);
        if (coff >= e->size || (e->n_chunks == 0 && coff != 0) ||
            (e->n_chunks > 0 && coff <= e->chunks[e->n_chunks - 1].file_offset))
                return bad(p, -EBADMSG, "chunk at file offset %" PRId64 " is out of order", coff);
        if (e->n_chunks % 16 == 0) {
                struct ossb_toc_chunk *c = reallocarray(e->chunks, e->n_chunks + 16, sizeof(*c));
                if (!c)
                        return ossb_error_set(p->err, -ENOMEM, "out of memory");
                e->chunks = c;
        }
        struct ossb_toc_chunk *c = &e->chunks[e->n_chunks++];
        *c = (struct ossb_toc_chunk) { .offset = off, .end = end, .file_offset = coff, .size = csize, .inner_offset = inner };
        return get_digest(p, o, "chunkDigest", c->digest);
}

/* The collected file is complete: sizes from the offsets, each one checked. */
static int finish_file(struct parse *p)
{
        struct ossb_toc_entry *e = &p->toc->entries[p->toc->n - 1];
        int64_t file_end = e->chunks[0].end; /* a "reg" entry's endOffset: where its data ends */
        p->collecting = false;
        p->name = e->path;
        for (size_t i = 0; i < e->n_chunks; i++) {
                struct ossb_toc_chunk *c = &e->chunks[i];
                int64_t next = i + 1 < e->n_chunks ? c[1].file_offset : e->size;
                if (c->size != 0 && c->size != next - c->file_offset)
                        return bad(p, -EBADMSG, "chunk at file offset %" PRId64 " has size %" PRId64 ", not %" PRId64,
                                   c->file_offset, c->size, next - c->file_offset);
                c->size = next - c->file_offset;
                c->end = i + 1 < e->n_chunks ? 0 : file_end;
        }
        if (e->n_chunks == 1 && !e->chunks[0].digest[0])
                memcpy(e->chunks[0].digest, e->digest, sizeof(e->digest));
        return 0;
}

/* ---- entries ---- */

static int entries_grow(struct parse *p)
{
        if (p->toc->n < p->cap)
                return 0;
        size_t cap = p->cap ? p->cap * 2 : 64;
        struct ossb_toc_entry *e = reallocarray(p->toc->entries, cap, sizeof(*e));
        if (!e)
                return ossb_error_set(p->err, -ENOMEM, "out of memory");
        p->toc->entries = e;
        p->cap = cap;
        return 0;
}

static int entry_fields(struct parse *p, json_object *o, struct ossb_toc_entry *e, const char *type)
{
        int64_t mode, uid, gid, size, maj, min;
        mode_t ft = 0;
        int r = entry_type(p, type, &ft);
        r = r < 0 ? r : get_int(p, o, "mode", UINT32_MAX, &mode);
        r = r < 0 ? r : get_int(p, o, "uid", UINT32_MAX - 1, &uid);
        r = r < 0 ? r : get_int(p, o, "gid", UINT32_MAX - 1, &gid);
        r = r < 0 ? r : get_int(p, o, "size", INT64_MAX - 1, &size);
        r = r < 0 ? r : get_int(p, o, "devMajor", UINT32_MAX, &maj);
        r = r < 0 ? r : get_int(p, o, "devMinor", UINT32_MAX, &min);
        r = r < 0 ? r : get_time(p, o, &e->mtime);
        r = r < 0 ? r : get_xattrs(p, o, e);
        r = r < 0 ? r : get_digest(p, o, "digest", e->digest);
        if (r < 0)
                return r;
        e->mode = ft | ((mode_t) mode & 07777);
        e->uid = (uid_t) uid;
        e->gid = (gid_t) gid;
        e->hardlink = streq(type, "hardlink");
        e->size = streq(type, "reg") ? size : 0;
        if (S_ISCHR(ft) || S_ISBLK(ft))
                e->rdev = makedev((unsigned) maj, (unsigned) min);
        if (streq(type, "symlink") || e->hardlink) {
                const char *s;
                size_t len;
                r = e->hardlink ? get_path(p, o, "linkName", &e->link) : get_str(p, o, "linkName", &s, &len);
                if (r >= 0 && !e->hardlink && (!s || len == 0))
                        return bad(p, -EBADMSG, "a symlink without a target");
                if (r >= 0 && !e->hardlink && !(e->link = strdup(s)))
                        return ossb_error_set(p->err, -ENOMEM, "out of memory");
        }
        return r;
}

static int parse_entry(struct parse *p, json_object *o)
{
        const char *type;
        size_t len;
        int r = get_str(p, o, "type", &type, &len);
        if (r < 0)
                return r;
        if (type && streq(type, "chunk")) {
                if (!p->collecting)
                        return bad(p, -EBADMSG, "a chunk that follows no regular file with data");
                return add_chunk(p, o, &p->toc->entries[p->toc->n - 1]);
        }
        if (p->collecting && (r = finish_file(p)) < 0)
                return r;
        r = entries_grow(p);
        if (r < 0)
                return r;
        struct ossb_toc_entry *e = &p->toc->entries[p->toc->n];
        memset(e, 0, sizeof(*e));
        p->toc->n++;
        r = get_path(p, o, "name", &e->path);
        if (r < 0)
                return r;
        p->name = e->path;
        r = entry_fields(p, o, e, type);
        if (r >= 0 && S_ISREG(e->mode) && !e->hardlink && e->size > 0) {
                r = add_chunk(p, o, e);
                p->collecting = r >= 0;
        }
        return r;
}

/* Blob ranges: offsets never go backwards; a chunk ends at the next larger offset (or its
 * file's endOffset, which may not pass it), the last ones at the end of the data. */
static int finish_ends(struct parse *p)
{
        int64_t limit = p->loc->offset - (p->loc->kind == OSSB_SEEKABLE_ZSTD_CHUNKED ? OSSB_ZSTD_SKIPPABLE_HEADER : 0);
        int64_t last = 0;
        for (size_t i = 0; i < p->toc->n; i++)
                for (size_t k = 0; k < p->toc->entries[i].n_chunks; k++) {
                        const struct ossb_toc_chunk *c = &p->toc->entries[i].chunks[k];
                        p->name = p->toc->entries[i].path;
                        if (c->offset < last || c->offset >= limit)
                                return bad(p, -EBADMSG, "chunk offset %" PRId64 " goes backwards or past the data",
                                           c->offset);
                        last = c->offset;
                }
        int64_t next = limit, run = limit;
        for (size_t i = p->toc->n; i-- > 0;)
                for (size_t k = p->toc->entries[i].n_chunks; k-- > 0;) {
                        struct ossb_toc_chunk *c = &p->toc->entries[i].chunks[k];
                        p->name = p->toc->entries[i].path;
                        if (c->offset < run) {
                                next = run;
                                run = c->offset;
                        }
                        if (c->end != 0 && (c->end <= c->offset || c->end > next))
                                return bad(p, -EBADMSG, "endOffset %" PRId64 " is outside [%" PRId64 ", %" PRId64 "]",
                                           c->end, c->offset + 1, next);
                        if (c->end == 0)
                                c->end = next;
                }
        return 0;
}

static void find_landmark(struct ossb_toc *toc)
{
        for (size_t i = 0; i < toc->n; i++)
                if (streq(toc->entries[i].path, ".prefetch.landmark") && toc->entries[i].n_chunks > 0) {
                        toc->prefetch_end = toc->entries[i].chunks[0].offset;
                        return;
                }
}

static int parse_root(struct parse *p, json_object *root)
{
        json_object *v, *list;
        if (!json_object_is_type(root, json_type_object))
                return ossb_error_set(p->err, -EBADMSG, "the TOC is not a JSON object");
        if (!json_object_object_get_ex(root, "version", &v) || !json_object_is_type(v, json_type_int) ||
            json_object_get_int64(v) != 1)
                return ossb_error_set(p->err, -EBADMSG, "the TOC's version is not 1");
        if (!json_object_object_get_ex(root, "entries", &list) || !json_object_is_type(list, json_type_array))
                return ossb_error_set(p->err, -EBADMSG, "the TOC has no `entries` array");
        size_t n = json_object_array_length(list);
        if (n > OSSB_TOC_MAX_ENTRIES)
                return ossb_error_set(p->err, -EBADMSG, "the TOC has %zu entries (at most %u)", n, OSSB_TOC_MAX_ENTRIES);
        for (size_t i = 0; i < n; i++) {
                json_object *o = json_object_array_get_idx(list, i);
                p->idx = i;
                p->name = NULL;
                if (!json_object_is_type(o, json_type_object))
                        return ossb_error_set(p->err, -EBADMSG, "TOC entry %zu is not an object", i);
                int r = parse_entry(p, o);
                if (r < 0)
                        return r;
        }
        p->idx = n;
        return p->collecting ? finish_file(p) : 0;
}

int ossb_toc_parse(const struct ossb_toc_location *loc, const char *json, size_t len, struct ossb_toc **ret,
                   struct ossb_error **err)
{
        _cleanup_json_ json_object *root = NULL;
        struct parse p = { .loc = loc, .err = err };
        int r = ossb_json_parse(json, len, OSSB_TOC_MAX_JSON, &root, err);
        if (r < 0) {
                if (err && *err)
                        (*err)->code = -EBADMSG;
                return -EBADMSG;
        }
        p.toc = calloc(1, sizeof(*p.toc));
        if (!p.toc)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        p.toc->kind = loc->kind;
        r = parse_root(&p, root);
        if (r >= 0)
                r = finish_ends(&p);
        if (r < 0) {
                ossb_toc_free(p.toc);
                return r;
        }
        if (loc->kind == OSSB_SEEKABLE_ESTARGZ)
                find_landmark(p.toc);
        *ret = p.toc;
        return 0;
}
