/* oci/zran.c - checkpoint indexes of gzip layers (see zran.h): building one while the blob is
 * decompressed once (libarchive reads the tar from our inflating read callback), the
 * serialized format, span reads and random reads, and the copies in the cache dir. */
#include "config.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>
#include <zlib.h>

#include "common/cleanup.h"
#include "common/fs.h"
#include "common/log.h"
#include "oci/zran.h"

#define IN_BUF (256 * 1024)
#define OUT_BUF (256 * 1024)
#define SPAN_OUT_CUT (16 * 1024 * 1024) /* a checkpoint at least every this many output bytes */
#define MAX_NAME 4096
#define MAX_XATTRS 256
#define MAX_XATTR_NAME 255
#define MAX_XATTR_VALUE (64 * 1024)
#define MAGIC "OSSBZRAN"
#define HEADER_LEN (8 + 4 + 4 + 32 + 8 + 8 + 8 + 4 + 4)
#define CP_FIXED (8 + 1 + 1 + 8 + 32 + 4 + 4)
#define ENTRY_FIXED (4 + 1 + 4 + 4 + 8 + 8 + 4 + 8 + 4 + 4 + 4 + 4 + 4)

/* ---- small helpers ---- */

static void entry_clear(struct ossb_zran_entry *e)
{
        free(e->path);
        free(e->link);
        for (size_t i = 0; i < e->n_xattrs; i++) {
                free((char *) e->xattrs[i].name);
                free((void *) e->xattrs[i].value);
        }
        free(e->xattrs);
        free(e->digests);
}

void ossb_zran_free(struct ossb_zran *z)
{
        if (!z)
                return;
        for (size_t i = 0; i < z->n_cps; i++)
                free(z->cps[i].window);
        free(z->cps);
        for (size_t i = 0; i < z->n_entries; i++)
                entry_clear(&z->entries[i]);
        free(z->entries);
        free(z);
}


static int hex_val(char c)
{
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        return -1;
}

/* "sha256:<hex>" -> 32 bytes. */
static int digest_to_raw(const char *d, unsigned char out[32])
{
        if (!ossb_digest_is_valid(d))
                return -EINVAL;
        for (size_t i = 0; i < 32; i++)
                out[i] = (unsigned char) (hex_val(d[7 + 2 * i]) << 4 | hex_val(d[8 + 2 * i]));
        return 0;
}

static void raw_to_digest(const unsigned char in[32], char out[OSSB_DIGEST_STR_LEN + 1])
{
        static const char hex[] = "0123456789abcdef";
        memcpy(out, "sha256:", 7);
        for (size_t i = 0; i < 32; i++) {
                out[7 + 2 * i] = hex[in[i] >> 4];
                out[8 + 2 * i] = hex[in[i] & 15];
        }
        out[OSSB_DIGEST_STR_LEN] = 0;
}

/* A relative, clean name: "./a//b/" -> "a/b", "/" or "." -> "".  NULL for ".." escapes. */
static char *clean_name(const char *name)
{
        _cleanup_free_ char *c = ossb_path_clean(name);
        if (!c)
                return NULL;
        const char *p = c;
        while (*p == '/')
                p++;
        if (streq(p, ".."))
                return NULL;
        if (!strncmp(p, "../", 3))
                return NULL;
        return strdup(streq(p, ".") ? "" : p);
}

/* ---- windows ---- */

static int window_pack(const unsigned char *win, size_t len, unsigned char **ret, size_t *ret_len)
{
        z_stream d = { 0 };
        if (deflateInit2(&d, 9, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) != Z_OK)
                return -ENOMEM;
        size_t cap = deflateBound(&d, (uLong) len) + 16;
        unsigned char *out = malloc(cap);
        if (!out) {
                deflateEnd(&d);
                return -ENOMEM;
        }
        d.next_in = (unsigned char *) win;
        d.avail_in = (uInt) len;
        d.next_out = out;
        d.avail_out = (uInt) cap;
        int r = deflate(&d, Z_FINISH);
        size_t n = cap - d.avail_out;
        deflateEnd(&d);
        if (r != Z_STREAM_END) {
                free(out);
                return -EIO;
        }
        *ret = out;
        *ret_len = n;
        return 0;
}

/* The window of checkpoint `cp` into out (OSSB_ZRAN_WINDOW bytes): -EBADMSG unless it
 * inflates to exactly cp->window_size bytes. */
static int window_unpack(const struct ossb_zran_checkpoint *cp, unsigned char *out)
{
        z_stream s = { 0 };
        if (inflateInit2(&s, -15) != Z_OK)
                return -ENOMEM;
        s.next_in = cp->window;
        s.avail_in = (uInt) cp->window_len;
        s.next_out = out;
        s.avail_out = OSSB_ZRAN_WINDOW;
        int r = inflate(&s, Z_FINISH);
        size_t n = OSSB_ZRAN_WINDOW - s.avail_out;
        inflateEnd(&s);
        return r == Z_STREAM_END && n == cp->window_size ? 0 : -EBADMSG;
}

/* ---- building ---- */

struct builder {
        const struct ossb_zran_build_opts *o;
        int64_t span;
        ossb_zran_read_fn read;
        void *userdata;
        z_stream zs;
        bool z_ready, at_member, eof;
        unsigned char *in, *out;
        int64_t fed;       /* compressed bytes read */
        int64_t out_total; /* uncompressed bytes produced */
        struct ossb_sha256 *blob_hash, *span_hash, *file_hash;
        struct ossb_zran *z;
        size_t cap_cps, cap_entries;
        struct ossb_error *err;
        int failed;
};

static int64_t consumed(const struct builder *b)
{
        return b->fed - (int64_t) b->zs.avail_in;
}

static int fail(struct builder *b, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(struct builder *b, int code, const char *fmt, ...)
{
        if (b->failed)
                return b->failed;
        char *msg = NULL;
        va_list ap;
        va_start(ap, fmt);
        int k = vasprintf(&msg, fmt, ap);
        va_end(ap);
        ossb_error_set(&b->err, code, "%s: %s", b->o->name ? b->o->name : "layer", k >= 0 ? msg : "indexing failed");
        free(msg);
        b->failed = code;
        return code;
}

static int close_span(struct builder *b)
{
        if (b->z->n_cps == 0)
                return 0;
        ossb_sha256_final(b->span_hash, b->z->cps[b->z->n_cps - 1].digest);
        return 0;
}

static int add_checkpoint(struct builder *b, uint8_t kind)
{
        struct ossb_zran *z = b->z;
        if (z->n_cps >= OSSB_ZRAN_MAX_CHECKPOINTS)
                return fail(b, -E2BIG, "more than %u checkpoints", OSSB_ZRAN_MAX_CHECKPOINTS);
        if (z->n_cps == b->cap_cps) {
                size_t cap = b->cap_cps ? b->cap_cps * 2 : 64;
                struct ossb_zran_checkpoint *v = reallocarray(z->cps, cap, sizeof(*v));
                if (!v)
                        return fail(b, -ENOMEM, "out of memory");
                z->cps = v;
                b->cap_cps = cap;
        }
        if (z->n_cps > 0 && z->cps[z->n_cps - 1].out == b->out_total)
                return 0; /* nothing came out since the last one: it serves as well */
        struct ossb_zran_checkpoint cp = {
                .in = consumed(b), .kind = kind, .out = b->out_total,
        };
        if (kind == OSSB_ZRAN_INSIDE) {
                unsigned char win[OSSB_ZRAN_WINDOW];
                uInt wlen = sizeof(win);
                if (inflateGetDictionary(&b->zs, win, &wlen) != Z_OK)
                        return fail(b, -EIO, "zlib could not give its window");
                cp.bits = (uint8_t) (b->zs.data_type & 7);
                cp.window_size = wlen;
                if (window_pack(win, wlen, &cp.window, &cp.window_len) < 0)
                        return fail(b, -ENOMEM, "out of memory");
        }
        close_span(b);
        z->cps[z->n_cps++] = cp;
        return 0;
}

static bool span_due(const struct builder *b)
{
        const struct ossb_zran_checkpoint *last = &b->z->cps[b->z->n_cps - 1];
        return consumed(b) - last->in >= b->span || b->out_total - last->out >= SPAN_OUT_CUT;
}

static int refill(struct builder *b)
{
        if (b->zs.avail_in > 0 || b->eof)
                return 0;
        ssize_t n = b->read(b->userdata, b->in, IN_BUF, &b->err);
        if (n < 0) {
                b->failed = (int) n;
                if (!b->err)
                        ossb_error_set(&b->err, (int) n, "reading the blob failed");
                return (int) n;
        }
        if (n == 0) {
                b->eof = true;
                return 0;
        }
        ossb_sha256_update(b->blob_hash, b->in, (size_t) n);
        b->fed += n;
        b->zs.next_in = b->in;
        b->zs.avail_in = (uInt) n;
        return 0;
}

/* Between members: the end of the blob, or the next member (a checkpoint when one is due). */
static int member_start(struct builder *b, bool *ret_done)
{
        int k = refill(b);
        if (k < 0)
                return k;
        *ret_done = b->zs.avail_in == 0 && b->eof;
        if (*ret_done)
                return 0;
        if (b->z->n_cps == 0 || span_due(b)) {
                k = add_checkpoint(b, OSSB_ZRAN_MEMBER);
                if (k < 0)
                        return k;
        }
        if (inflateReset(&b->zs) != Z_OK)
                return fail(b, -EIO, "zlib reset failed");
        b->at_member = false;
        return 0;
}

/* Inflate into b->out until it is full or the blob ends: the number of bytes produced. */
static ssize_t inflate_some(struct builder *b)
{
        b->zs.next_out = b->out;
        b->zs.avail_out = OUT_BUF;
        while (b->zs.avail_out > 0 && !b->failed) {
                if (b->at_member) {
                        bool done;
                        if (member_start(b, &done) < 0 || done)
                                break;
                }
                if (refill(b) < 0)
                        break;
                uInt before = b->zs.avail_out;
                int r = inflate(&b->zs, Z_BLOCK);
                size_t produced = before - b->zs.avail_out;
                ossb_sha256_update(b->span_hash, b->zs.next_out - produced, produced);
                b->out_total += (int64_t) produced;
                if (r == Z_STREAM_END) {
                        b->at_member = true;
                        continue;
                }
                if (r == Z_BUF_ERROR && b->eof && b->zs.avail_in == 0)
                        return fail(b, -EBADMSG, "the gzip stream is truncated");
                if (r != Z_OK && r != Z_BUF_ERROR)
                        return fail(b, -EBADMSG, "corrupt gzip data at compressed byte %" PRId64 ": %s", consumed(b),
                                    b->zs.msg ? b->zs.msg : "zlib error");
                const struct ossb_zran_checkpoint *last = &b->z->cps[b->z->n_cps - 1];
                if (b->out_total - last->out > OSSB_ZRAN_MAX_SPAN_OUT)
                        return fail(b, -ENOTSUP, "a deflate block longer than %d uncompressed bytes",
                                    OSSB_ZRAN_MAX_SPAN_OUT);
                if ((b->zs.data_type & 128) && !(b->zs.data_type & 64) && span_due(b) &&
                    add_checkpoint(b, OSSB_ZRAN_INSIDE) < 0)
                        break;
        }
        return b->failed ? b->failed : (ssize_t) (OUT_BUF - b->zs.avail_out);
}

static la_ssize_t archive_read_cb(struct archive *a, void *userdata, const void **buf)
{
        struct builder *b = userdata;
        ssize_t n = inflate_some(b);
        *buf = b->out;
        if (n < 0) {
                archive_set_error(a, EIO, "decompression failed");
                return -1;
        }
        return n;
}

static int add_xattrs(struct builder *b, struct archive_entry *ae, struct ossb_zran_entry *e)
{
        size_t n = (size_t) archive_entry_xattr_reset(ae);
        if (n == 0)
                return 0;
        if (n > MAX_XATTRS)
                return fail(b, -E2BIG, "`%s` has more than %d xattrs", e->path, MAX_XATTRS);
        e->xattrs = calloc(n, sizeof(*e->xattrs));
        if (!e->xattrs)
                return fail(b, -ENOMEM, "out of memory");
        const char *name;
        const void *value;
        size_t size;
        while (e->n_xattrs < n && archive_entry_xattr_next(ae, &name, &value, &size) == ARCHIVE_OK) {
                if (!name || strlen(name) > MAX_XATTR_NAME || size > MAX_XATTR_VALUE || !*name)
                        return fail(b, -EBADMSG, "`%s` has an xattr the index cannot hold", e->path);
                struct ossb_xattr *x = &e->xattrs[e->n_xattrs];
                x->name = strdup(name);
                x->value = malloc(size ? size : 1);
                if (!x->name || !x->value) {
                        free((char *) x->name);
                        free((void *) x->value);
                        return fail(b, -ENOMEM, "out of memory");
                }
                memcpy((void *) x->value, value, size);
                x->size = size;
                e->n_xattrs++;
        }
        return 0;
}

static int fill_entry(struct builder *b, struct archive *a, struct archive_entry *ae, struct ossb_zran_entry *e)
{
        const char *name = archive_entry_pathname(ae);
        if (!name || strlen(name) > MAX_NAME)
                return fail(b, -EBADMSG, "a tar entry without a usable name");
        e->path = clean_name(name);
        if (!e->path)
                return fail(b, -EBADMSG, "tar entry `%s` leaves the layer's root", name);
        const char *hl = archive_entry_hardlink(ae), *sl = archive_entry_symlink(ae);
        if (hl) {
                e->hardlink = true;
                e->link = clean_name(hl);
                if (!e->link || !*e->link)
                        return fail(b, -EBADMSG, "hard link `%s` points outside the layer", e->path);
        } else if (sl) {
                if (strlen(sl) > MAX_NAME)
                        return fail(b, -EBADMSG, "symlink `%s` has a target too long", e->path);
                e->link = strdup(sl);
                if (!e->link)
                        return fail(b, -ENOMEM, "out of memory");
        }
        if (archive_entry_sparse_count(ae) > 0)
                return fail(b, -ENOTSUP, "`%s` is a sparse file", e->path);
        e->mode = archive_entry_mode(ae);
        mode_t type = e->mode & S_IFMT;
        if (!hl && type != S_IFREG && type != S_IFDIR && type != S_IFLNK && type != S_IFCHR && type != S_IFBLK &&
            type != S_IFIFO)
                return fail(b, -EBADMSG, "tar entry `%s` has an unknown type", e->path);
        if (hl)
                e->mode = (e->mode & 07777) | S_IFREG;
        e->uid = (uid_t) archive_entry_uid(ae);
        e->gid = (gid_t) archive_entry_gid(ae);
        e->mtime.tv_sec = archive_entry_mtime(ae);
        e->mtime.tv_nsec = archive_entry_mtime_nsec(ae);
        if (type == S_IFCHR || type == S_IFBLK)
                e->rdev = makedev(archive_entry_rdevmajor(ae), archive_entry_rdevminor(ae));
        if (type == S_IFREG && !hl) {
                e->size = archive_entry_size(ae);
                e->offset = archive_filter_bytes(a, 0);
                if (e->size < 0 || e->offset < 0)
                        return fail(b, -EBADMSG, "tar entry `%s` has a bad size", e->path);
        }
        return add_xattrs(b, ae, e);
}

static int add_entry(struct builder *b, struct archive *a, struct archive_entry *ae)
{
        struct ossb_zran *z = b->z;
        if (z->n_entries >= OSSB_ZRAN_MAX_ENTRIES)
                return fail(b, -E2BIG, "more than %u tar entries", OSSB_ZRAN_MAX_ENTRIES);
        if (z->n_entries == b->cap_entries) {
                size_t cap = b->cap_entries ? b->cap_entries * 2 : 256;
                struct ossb_zran_entry *v = reallocarray(z->entries, cap, sizeof(*v));
                if (!v)
                        return fail(b, -ENOMEM, "out of memory");
                z->entries = v;
                b->cap_entries = cap;
        }
        struct ossb_zran_entry *e = &z->entries[z->n_entries++];
        memset(e, 0, sizeof(*e));
        return fill_entry(b, a, ae, e);
}

static int push_digest(struct builder *b, struct ossb_zran_entry *e, size_t *cap)
{
        if (e->n_digests == *cap) {
                size_t c = *cap ? *cap * 2 : 4;
                char (*v)[OSSB_DIGEST_STR_LEN + 1] = reallocarray(e->digests, c, sizeof(*v));
                if (!v)
                        return fail(b, -ENOMEM, "out of memory");
                e->digests = v;
                *cap = c;
        }
        ossb_sha256_final(b->file_hash, e->digests[e->n_digests++]);
        return 0;
}

/* Read a regular file's data, hashing its bytes span by span (every checkpoint before the
 * bytes libarchive hands out is known: the inflater is ahead of it). */
static int hash_file(struct builder *b, struct archive *a, struct ossb_zran_entry *e)
{
        size_t cap = 0, span = 0;
        bool open = false;
        int64_t done = 0;
        for (;;) {
                const void *buf;
                size_t len;
                la_int64_t at;
                int r = archive_read_data_block(a, &buf, &len, &at);
                if (r == ARCHIVE_EOF)
                        break;
                if (r != ARCHIVE_OK && r != ARCHIVE_WARN)
                        return b->failed ? b->failed : fail(b, -EBADMSG, "corrupt tar data in `%s`: %s", e->path,
                                                            archive_error_string(a));
                if (at != done)
                        return fail(b, -ENOTSUP, "`%s` has holes", e->path);
                const unsigned char *p = buf;
                while (len > 0) {
                        int64_t pos = e->offset + done;
                        size_t s = ossb_zran_span_at(b->z, pos);
                        if (open && s != span && push_digest(b, e, &cap) < 0)
                                return b->failed;
                        span = s;
                        open = true;
                        int64_t room = s + 1 < b->z->n_cps ? b->z->cps[s + 1].out - pos : INT64_MAX;
                        size_t take = (int64_t) len < room ? len : (size_t) room;
                        ossb_sha256_update(b->file_hash, p, take);
                        p += take;
                        len -= take;
                        done += (int64_t) take;
                }
        }
        if (done != e->size)
                return fail(b, -EBADMSG, "`%s` has %" PRId64 " bytes, its header says %" PRId64, e->path, done, e->size);
        return open ? push_digest(b, e, &cap) : 0;
}

static int read_tar(struct builder *b)
{
        struct archive *a = archive_read_new();
        if (!a)
                return fail(b, -ENOMEM, "out of memory");
        int k = 0;
        archive_read_support_format_tar(a);
        if (archive_read_open(a, b, NULL, archive_read_cb, NULL) != ARCHIVE_OK)
                k = b->failed ? b->failed : fail(b, -EBADMSG, "not a tar stream: %s", archive_error_string(a));
        struct archive_entry *ae;
        while (k >= 0) {
                int r = archive_read_next_header(a, &ae);
                if (r == ARCHIVE_EOF)
                        break;
                if (r != ARCHIVE_OK && r != ARCHIVE_WARN) {
                        k = b->failed ? b->failed : fail(b, -EBADMSG, "corrupt tar: %s", archive_error_string(a));
                        break;
                }
                k = add_entry(b, a, ae);
                if (k < 0)
                        break;
                struct ossb_zran_entry *e = &b->z->entries[b->z->n_entries - 1];
                if (S_ISREG(e->mode) && !e->hardlink)
                        k = hash_file(b, a, e);
                else if (archive_read_data_skip(a) != ARCHIVE_OK)
                        k = b->failed ? b->failed : fail(b, -EBADMSG, "corrupt tar: %s", archive_error_string(a));
        }
        archive_read_free(a);
        return k;
}

static int finish_build(struct builder *b)
{
        while (!b->failed) {
                ssize_t n = inflate_some(b);
                if (n <= 0)
                        break;
        }
        if (b->failed)
                return b->failed;
        if (!b->at_member)
                return fail(b, -EBADMSG, "the gzip stream is truncated");
        if (b->z->n_cps == 0)
                return fail(b, -EBADMSG, "an empty blob is not a gzip stream");
        close_span(b);
        struct ossb_zran *z = b->z;
        char got[OSSB_DIGEST_STR_LEN + 1];
        ossb_sha256_final(b->blob_hash, got);
        if (!streq(got, b->o->digest))
                return fail(b, -EBADMSG, "the blob's digest is %s, not %s", got, b->o->digest);
        if (b->o->size >= 0 && b->fed != b->o->size)
                return fail(b, -EBADMSG, "the blob has %" PRId64 " bytes, not %" PRId64, b->fed, b->o->size);
        memcpy(z->layer_digest, got, sizeof(got));
        z->blob_size = b->fed;
        z->size = b->out_total;
        z->span = b->span;
        for (size_t i = 0; i < z->n_entries; i++) {
                const struct ossb_zran_entry *e = &z->entries[i];
                if (!S_ISREG(e->mode) || e->hardlink)
                        continue;
                if (e->offset + e->size > z->size)
                        return fail(b, -EBADMSG, "`%s` ends past the tar", e->path);
                if (ossb_zran_file_spans(z, e, NULL) != e->n_digests)
                        return fail(b, -EIO, "`%s`: its span digests are inconsistent", e->path);
        }
        return 0;
}

int ossb_zran_build(const struct ossb_zran_build_opts *o, ossb_zran_read_fn read, void *userdata,
                    struct ossb_zran **ret, struct ossb_error **err)
{
        if (!o->digest || !ossb_digest_is_valid(o->digest))
                return ossb_error_set(err, -EINVAL, "%s: indexing needs the blob's digest", o->name ? o->name : "layer");
        struct builder b = { .o = o, .read = read, .userdata = userdata, .at_member = true,
                             .span = o->span > 0 ? o->span : OSSB_ZRAN_DEFAULT_SPAN };
        b.z = calloc(1, sizeof(*b.z));
        b.in = malloc(IN_BUF);
        b.out = malloc(OUT_BUF);
        int k = b.z && b.in && b.out && ossb_sha256_new(&b.blob_hash) >= 0 && ossb_sha256_new(&b.span_hash) >= 0 &&
                                ossb_sha256_new(&b.file_hash) >= 0
                        ? 0 : fail(&b, -ENOMEM, "out of memory");
        if (k >= 0 && inflateInit2(&b.zs, 15 + 16) != Z_OK)
                k = fail(&b, -ENOMEM, "zlib could not start");
        b.z_ready = k >= 0;
        if (k >= 0)
                k = read_tar(&b);
        if (k >= 0)
                k = finish_build(&b);
        if (b.z_ready)
                inflateEnd(&b.zs);
        free(b.in);
        free(b.out);
        ossb_sha256_free(b.blob_hash);
        ossb_sha256_free(b.span_hash);
        ossb_sha256_free(b.file_hash);
        if (k < 0) {
                ossb_zran_free(b.z);
                if (err && !*err)
                        *err = TAKE_PTR(b.err);
                ossb_error_free(b.err);
                return k;
        }
        ossb_error_free(b.err);
        *ret = b.z;
        return 0;
}

/* ---- span reads ---- */

size_t ossb_zran_span_at(const struct ossb_zran *z, int64_t off)
{
        size_t lo = 0, hi = z->n_cps;
        while (hi - lo > 1) {
                size_t mid = lo + (hi - lo) / 2;
                if (z->cps[mid].out <= off)
                        lo = mid;
                else
                        hi = mid;
        }
        return lo;
}

size_t ossb_zran_file_spans(const struct ossb_zran *z, const struct ossb_zran_entry *e, size_t *ret_first)
{
        if (!S_ISREG(e->mode) || e->hardlink || e->size <= 0)
                return 0;
        size_t first = ossb_zran_span_at(z, e->offset), last = ossb_zran_span_at(z, e->offset + e->size - 1);
        if (ret_first)
                *ret_first = first;
        return last - first + 1;
}

void ossb_zran_span(const struct ossb_zran *z, size_t i, int64_t *ret_in, int64_t *ret_in_len, int64_t *ret_out,
                    int64_t *ret_out_len)
{
        const struct ossb_zran_checkpoint *c = &z->cps[i];
        int64_t start = c->in - (c->bits ? 1 : 0);
        int64_t end = i + 1 < z->n_cps ? z->cps[i + 1].in : z->blob_size;
        int64_t out_end = i + 1 < z->n_cps ? z->cps[i + 1].out : z->size;
        if (ret_in)
                *ret_in = start;
        if (ret_in_len)
                *ret_in_len = end - start;
        if (ret_out)
                *ret_out = c->out;
        if (ret_out_len)
                *ret_out_len = out_end - c->out;
}

static int span_start(const struct ossb_zran_checkpoint *c, z_stream *s, const unsigned char *comp, size_t comp_len)
{
        if (c->kind == OSSB_ZRAN_MEMBER) {
                s->next_in = (unsigned char *) comp;
                s->avail_in = (uInt) comp_len;
                return inflateInit2(s, 15 + 16) == Z_OK ? 0 : -ENOMEM;
        }
        if (inflateInit2(s, -15) != Z_OK)
                return -ENOMEM;
        unsigned char win[OSSB_ZRAN_WINDOW];
        int k = window_unpack(c, win);
        if (k >= 0 && c->bits) {
                if (comp_len < 1)
                        k = -EBADMSG;
                else if (inflatePrime(s, c->bits, comp[0] >> (8 - c->bits)) != Z_OK)
                        k = -EBADMSG;
                comp++;
                comp_len--;
        }
        if (k >= 0 && c->window_size > 0 && inflateSetDictionary(s, win, c->window_size) != Z_OK)
                k = -EBADMSG;
        s->next_in = (unsigned char *) comp;
        s->avail_in = (uInt) comp_len;
        if (k < 0)
                inflateEnd(s);
        return k;
}

/* Inflate from a started stream until out_len bytes are out, following member ends. */
static int span_inflate(z_stream *s, bool raw, unsigned char *out, size_t out_len)
{
        s->next_out = out;
        s->avail_out = (uInt) out_len;
        while (s->avail_out > 0) {
                int r = inflate(s, Z_NO_FLUSH);
                if (r == Z_STREAM_END) {
                        if (raw) { /* the trailer zlib did not read in raw mode */
                                if (s->avail_in < 8)
                                        return -EBADMSG;
                                s->next_in += 8;
                                s->avail_in -= 8;
                        }
                        if (s->avail_in == 0 || inflateReset2(s, 15 + 16) != Z_OK)
                                return s->avail_out ? -EBADMSG : 0;
                        raw = false;
                        continue;
                }
                if (r != Z_OK)
                        return -EBADMSG;
        }
        return 0;
}

int ossb_zran_span_read(const struct ossb_zran *z, size_t i, const void *comp, size_t comp_len, void *out,
                        struct ossb_error **err)
{
        int64_t in_len, out_len;
        ossb_zran_span(z, i, NULL, &in_len, NULL, &out_len);
        if ((int64_t) comp_len != in_len)
                return ossb_error_set(err, -EINVAL, "span %zu needs %" PRId64 " compressed bytes, got %zu", i, in_len,
                                      comp_len);
        z_stream s = { 0 };
        const struct ossb_zran_checkpoint *c = &z->cps[i];
        int k = span_start(c, &s, comp, comp_len);
        if (k == -ENOMEM)
                return ossb_error_set(err, k, "out of memory");
        if (k >= 0) {
                k = span_inflate(&s, c->kind == OSSB_ZRAN_INSIDE, out, (size_t) out_len);
                inflateEnd(&s);
        }
        if (k < 0)
                return ossb_error_set(err, -EBADMSG, "span %zu (compressed bytes %" PRId64 "-%" PRId64
                                      ") does not decompress", i, c->in, c->in + in_len - 1);
        char got[OSSB_DIGEST_STR_LEN + 1];
        if (ossb_sha256_digest(out, (size_t) out_len, got) < 0)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        if (!streq(got, c->digest))
                return ossb_error_set(err, -EBADMSG, "span %zu (uncompressed bytes %" PRId64 "-%" PRId64 ") has digest %s, "
                                      "the index says %s", i, c->out, c->out + out_len - 1, got, c->digest);
        return 0;
}

static int read_span(const struct ossb_zran *z, size_t i, ossb_zran_pread_fn pread, void *userdata,
                     unsigned char **ret, struct ossb_error **err)
{
        int64_t in, in_len, out, out_len;
        ossb_zran_span(z, i, &in, &in_len, &out, &out_len);
        _cleanup_free_ unsigned char *comp = malloc(in_len > 0 ? (size_t) in_len : 1);
        _cleanup_free_ unsigned char *dec = malloc(out_len > 0 ? (size_t) out_len : 1);
        if (!comp || !dec)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        int k = pread(userdata, comp, (size_t) in_len, in, err);
        if (k >= 0)
                k = ossb_zran_span_read(z, i, comp, (size_t) in_len, dec, err);
        if (k < 0)
                return k;
        *ret = TAKE_PTR(dec);
        return 0;
}

ssize_t ossb_zran_read(const struct ossb_zran *z, ossb_zran_pread_fn pread, void *userdata, void *buf, size_t len,
                       int64_t off, struct ossb_error **err)
{
        if (off < 0)
                return ossb_error_set(err, -EINVAL, "negative offset");
        if (off >= z->size || len == 0)
                return 0;
        if ((int64_t) len > z->size - off)
                len = (size_t) (z->size - off);
        size_t done = 0;
        for (size_t i = ossb_zran_span_at(z, off); done < len && i < z->n_cps; i++) {
                int64_t s_out, s_len;
                ossb_zran_span(z, i, NULL, NULL, &s_out, &s_len);
                _cleanup_free_ unsigned char *dec = NULL;
                int k = read_span(z, i, pread, userdata, &dec, err);
                if (k < 0)
                        return k;
                int64_t from = off + (int64_t) done - s_out;
                size_t n = (size_t) (s_len - from) < len - done ? (size_t) (s_len - from) : len - done;
                memcpy((char *) buf + done, dec + from, n);
                done += n;
        }
        return (ssize_t) done;
}

/* ---- encoding ---- */

struct wbuf {
        unsigned char *p;
        size_t len, cap;
        bool oom;
};

static void put(struct wbuf *w, const void *data, size_t n)
{
        if (w->oom || n == 0)
                return;
        if (w->len + n > w->cap) {
                size_t cap = w->cap ? w->cap : 4096;
                while (cap < w->len + n)
                        cap *= 2;
                unsigned char *p = realloc(w->p, cap);
                if (!p) {
                        w->oom = true;
                        return;
                }
                w->p = p;
                w->cap = cap;
        }
        memcpy(w->p + w->len, data, n);
        w->len += n;
}

static void put_u8(struct wbuf *w, uint8_t v)
{
        put(w, &v, 1);
}

static void put_u32(struct wbuf *w, uint32_t v)
{
        unsigned char b[4] = { (unsigned char) v, (unsigned char) (v >> 8), (unsigned char) (v >> 16),
                               (unsigned char) (v >> 24) };
        put(w, b, 4);
}

static void put_u64(struct wbuf *w, uint64_t v)
{
        put_u32(w, (uint32_t) v);
        put_u32(w, (uint32_t) (v >> 32));
}

static void put_str(struct wbuf *w, const char *s, size_t n)
{
        put_u32(w, (uint32_t) n);
        put(w, s, n);
}

static void put_digest(struct wbuf *w, const char *d)
{
        unsigned char raw[32] = { 0 };
        digest_to_raw(d, raw);
        put(w, raw, 32);
}

static void put_entry(struct wbuf *w, const struct ossb_zran_entry *e)
{
        put_u32(w, (uint32_t) e->mode);
        put_u8(w, e->hardlink ? 1 : 0);
        put_u32(w, (uint32_t) e->uid);
        put_u32(w, (uint32_t) e->gid);
        put_u64(w, (uint64_t) e->size);
        put_u64(w, (uint64_t) e->mtime.tv_sec);
        put_u32(w, (uint32_t) e->mtime.tv_nsec);
        put_u64(w, (uint64_t) e->offset);
        put_u32(w, major(e->rdev));
        put_u32(w, minor(e->rdev));
        put_str(w, e->path, strlen(e->path));
        put_str(w, e->link ? e->link : "", e->link ? strlen(e->link) : 0);
        put_u32(w, (uint32_t) e->n_xattrs);
        for (size_t x = 0; x < e->n_xattrs; x++) {
                put_str(w, e->xattrs[x].name, strlen(e->xattrs[x].name));
                put_str(w, e->xattrs[x].value, e->xattrs[x].size);
        }
        for (size_t d = 0; d < e->n_digests; d++)
                put_digest(w, e->digests[d]);
}

int ossb_zran_encode(const struct ossb_zran *z, void **ret, size_t *ret_len, struct ossb_error **err)
{
        struct wbuf w = { 0 };
        put(&w, MAGIC, 8);
        put_u32(&w, OSSB_ZRAN_VERSION);
        put_u32(&w, 0);
        put_digest(&w, z->layer_digest);
        put_u64(&w, (uint64_t) z->blob_size);
        put_u64(&w, (uint64_t) z->size);
        put_u64(&w, (uint64_t) z->span);
        put_u32(&w, (uint32_t) z->n_cps);
        put_u32(&w, (uint32_t) z->n_entries);
        for (size_t i = 0; i < z->n_cps; i++) {
                const struct ossb_zran_checkpoint *c = &z->cps[i];
                put_u64(&w, (uint64_t) c->in);
                put_u8(&w, c->bits);
                put_u8(&w, c->kind);
                put_u64(&w, (uint64_t) c->out);
                put_digest(&w, c->digest);
                put_u32(&w, c->window_size);
                put_str(&w, (const char *) c->window, c->window_len);
        }
        for (size_t i = 0; i < z->n_entries; i++)
                put_entry(&w, &z->entries[i]);
        char d[OSSB_DIGEST_STR_LEN + 1];
        if (!w.oom && ossb_sha256_digest(w.p, w.len, d) >= 0)
                put_digest(&w, d);
        else
                w.oom = true;
        if (w.oom) {
                free(w.p);
                return ossb_error_set(err, -ENOMEM, "out of memory");
        }
        *ret = w.p;
        *ret_len = w.len;
        return 0;
}

/* ---- decoding ---- */

struct rbuf {
        const unsigned char *p;
        size_t len, at;
        const char *why; /* the first fault */
};

static bool take(struct rbuf *r, void *out, size_t n, const char *what)
{
        if (r->why)
                return false;
        if (r->len - r->at < n) {
                r->why = what;
                return false;
        }
        memcpy(out, r->p + r->at, n);
        r->at += n;
        return true;
}

static uint8_t get_u8(struct rbuf *r, const char *what)
{
        uint8_t v = 0;
        take(r, &v, 1, what);
        return v;
}

static uint32_t get_u32(struct rbuf *r, const char *what)
{
        unsigned char b[4] = { 0 };
        take(r, b, 4, what);
        return (uint32_t) b[0] | (uint32_t) b[1] << 8 | (uint32_t) b[2] << 16 | (uint32_t) b[3] << 24;
}

static uint64_t get_u64(struct rbuf *r, const char *what)
{
        uint64_t lo = get_u32(r, what);
        return lo | (uint64_t) get_u32(r, what) << 32;
}

static void get_digest(struct rbuf *r, char out[OSSB_DIGEST_STR_LEN + 1], const char *what)
{
        unsigned char raw[32] = { 0 };
        take(r, raw, 32, what);
        raw_to_digest(raw, out);
}

/* A length-prefixed byte string of at most `max` bytes, NUL-terminated; NULL on a fault. */
static char *get_bytes(struct rbuf *r, size_t max, size_t *ret_len, const char *what)
{
        uint32_t n = get_u32(r, what);
        if (r->why)
                return NULL;
        if (n > max || r->len - r->at < n) {
                r->why = what;
                return NULL;
        }
        char *s = malloc((size_t) n + 1);
        if (!s) {
                r->why = "out of memory";
                return NULL;
        }
        memcpy(s, r->p + r->at, n);
        s[n] = 0;
        r->at += n;
        if (ret_len)
                *ret_len = n;
        return s;
}

static bool name_ok(const char *s, size_t n, bool allow_empty)
{
        if (strlen(s) != n || (!allow_empty && n == 0))
                return false;
        _cleanup_free_ char *c = clean_name(s);
        return c && streq(c, s);
}

static void get_checkpoint(struct rbuf *r, const struct ossb_zran *z, size_t i, size_t n, struct ossb_zran_checkpoint *c)
{
        c->in = (int64_t) get_u64(r, "a truncated checkpoint");
        c->bits = get_u8(r, "a truncated checkpoint");
        c->kind = get_u8(r, "a truncated checkpoint");
        c->out = (int64_t) get_u64(r, "a truncated checkpoint");
        get_digest(r, c->digest, "a truncated checkpoint");
        c->window_size = get_u32(r, "a truncated checkpoint");
        c->window = (unsigned char *) get_bytes(r, 2 * OSSB_ZRAN_WINDOW, &c->window_len, "a checkpoint window");
        if (r->why)
                return;
        const struct ossb_zran_checkpoint *p = i > 0 ? c - 1 : NULL;
        if (c->bits > 7 || c->kind > OSSB_ZRAN_INSIDE || c->window_size > OSSB_ZRAN_WINDOW ||
            (c->kind == OSSB_ZRAN_MEMBER && (c->bits || c->window_size)))
                r->why = "a checkpoint with bad fields";
        else if (i == 0 && (c->in != 0 || c->out != 0 || c->kind != OSSB_ZRAN_MEMBER))
                r->why = "a first checkpoint not at the start";
        else if (p && (c->in <= p->in || c->out <= p->out || c->out - p->out > OSSB_ZRAN_MAX_SPAN_OUT))
                r->why = "checkpoints out of order or too far apart";
        else if (c->in < 0 || c->in > z->blob_size || c->out < 0 || c->out > z->size ||
                 (c->out == z->size && i > 0 && i + 1 < n))
                r->why = "a checkpoint outside the blob";
        else if (c->kind == OSSB_ZRAN_INSIDE && c->window_size) {
                unsigned char win[OSSB_ZRAN_WINDOW];
                if (window_unpack(c, win) < 0)
                        r->why = "a corrupt checkpoint window";
        }
}

static void get_xattrs(struct rbuf *r, struct ossb_zran_entry *e)
{
        uint32_t n = get_u32(r, "a truncated entry");
        if (r->why)
                return;
        if (n > MAX_XATTRS) {
                r->why = "an entry with too many xattrs";
                return;
        }
        e->xattrs = n ? calloc(n, sizeof(*e->xattrs)) : NULL;
        if (n && !e->xattrs) {
                r->why = "out of memory";
                return;
        }
        for (uint32_t x = 0; x < n && !r->why; x++) {
                size_t nlen;
                char *name = get_bytes(r, MAX_XATTR_NAME, &nlen, "an xattr name");
                if (!name)
                        return;
                e->xattrs[e->n_xattrs].name = name;
                e->xattrs[e->n_xattrs].value = get_bytes(r, MAX_XATTR_VALUE, &e->xattrs[e->n_xattrs].size, "an xattr value");
                e->n_xattrs++;
                if (strlen(name) != nlen || nlen == 0)
                        r->why = "a bad xattr name";
        }
}

static void get_entry(struct rbuf *r, const struct ossb_zran *z, struct ossb_zran_entry *e)
{
        e->mode = (mode_t) get_u32(r, "a truncated entry");
        uint8_t flags = get_u8(r, "a truncated entry");
        e->uid = (uid_t) get_u32(r, "a truncated entry");
        e->gid = (gid_t) get_u32(r, "a truncated entry");
        e->size = (int64_t) get_u64(r, "a truncated entry");
        e->mtime.tv_sec = (time_t) get_u64(r, "a truncated entry");
        e->mtime.tv_nsec = (long) get_u32(r, "a truncated entry");
        e->offset = (int64_t) get_u64(r, "a truncated entry");
        uint32_t maj = get_u32(r, "a truncated entry"), min = get_u32(r, "a truncated entry");
        size_t plen, llen;
        e->path = get_bytes(r, MAX_NAME, &plen, "an entry name");
        e->link = get_bytes(r, MAX_NAME, &llen, "an entry's link");
        get_xattrs(r, e);
        if (r->why)
                return;
        e->hardlink = flags & 1;
        e->rdev = makedev(maj, min);
        mode_t t = e->mode & S_IFMT;
        bool known = t == S_IFREG || t == S_IFDIR || t == S_IFLNK || t == S_IFCHR || t == S_IFBLK || t == S_IFIFO;
        if (!known || (e->mode & ~(mode_t) (S_IFMT | 07777)) || flags > 1 || e->mtime.tv_nsec >= 1000000000L)
                r->why = "an entry with bad fields";
        else if (!name_ok(e->path, plen, true))
                r->why = "an entry with a bad name";
        else if (e->hardlink && (t != S_IFREG || !name_ok(e->link, llen, false)))
                r->why = "a bad hard link";
        else if (strlen(e->link) != llen)
                r->why = "a link with NUL";
        else if (t == S_IFREG && !e->hardlink &&
                 (e->size < 0 || e->offset < 0 || e->offset % 512 || e->offset > z->size || e->size > z->size - e->offset))
                r->why = "a file whose data lies outside the tar";
        if (!llen) {
                free(e->link);
                e->link = NULL;
        }
        size_t n = r->why ? 0 : ossb_zran_file_spans(z, e, NULL);
        if (n > (r->len - r->at) / 32) {
                r->why = "truncated file digests";
                return;
        }
        e->digests = n ? calloc(n, sizeof(*e->digests)) : NULL;
        if (n && !e->digests) {
                r->why = "out of memory";
                return;
        }
        for (; e->n_digests < n; e->n_digests++)
                get_digest(r, e->digests[e->n_digests], "truncated file digests");
}

static int decode_header(struct rbuf *r, struct ossb_zran *z, uint32_t *ret_cps, uint32_t *ret_entries)
{
        char magic[8] = { 0 };
        take(r, magic, 8, "too short");
        if (!r->why && memcmp(magic, MAGIC, 8))
                r->why = "not an ossb zran index";
        uint32_t version = get_u32(r, "too short"), flags = get_u32(r, "too short");
        if (!r->why && (version != OSSB_ZRAN_VERSION || flags))
                r->why = "an unknown version";
        get_digest(r, z->layer_digest, "too short");
        z->blob_size = (int64_t) get_u64(r, "too short");
        z->size = (int64_t) get_u64(r, "too short");
        z->span = (int64_t) get_u64(r, "too short");
        *ret_cps = get_u32(r, "too short");
        *ret_entries = get_u32(r, "too short");
        if (r->why)
                return -EBADMSG;
        if (z->blob_size <= 0 || z->size < 0 || z->span <= 0 || *ret_cps == 0 || *ret_cps > OSSB_ZRAN_MAX_CHECKPOINTS ||
            *ret_entries > OSSB_ZRAN_MAX_ENTRIES || (uint64_t) *ret_cps * CP_FIXED > r->len ||
            (uint64_t) *ret_entries * ENTRY_FIXED > r->len)
                r->why = "impossible sizes or counts";
        return r->why ? -EBADMSG : 0;
}

static int decode_body(struct rbuf *r, struct ossb_zran *z, uint32_t n_cps, uint32_t n_entries)
{
        z->cps = calloc(n_cps, sizeof(*z->cps));
        z->entries = calloc(n_entries ? n_entries : 1, sizeof(*z->entries));
        if (!z->cps || !z->entries)
                return -ENOMEM;
        for (uint32_t i = 0; i < n_cps && !r->why; i++) {
                get_checkpoint(r, z, i, n_cps, &z->cps[i]);
                z->n_cps++;
        }
        for (uint32_t i = 0; i < n_entries && !r->why; i++) {
                get_entry(r, z, &z->entries[i]);
                z->n_entries++;
        }
        return r->why ? -EBADMSG : 0;
}

int ossb_zran_decode(const void *data, size_t len, struct ossb_zran **ret, struct ossb_error **err)
{
        if (len < HEADER_LEN + 32 || len > OSSB_ZRAN_MAX_INDEX)
                return ossb_error_set(err, -EBADMSG, "zran index: %zu bytes is not a possible size", len);
        char want[OSSB_DIGEST_STR_LEN + 1], got[OSSB_DIGEST_STR_LEN + 1];
        raw_to_digest((const unsigned char *) data + len - 32, want);
        if (ossb_sha256_digest(data, len - 32, got) < 0)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        if (!streq(want, got))
                return ossb_error_set(err, -EBADMSG, "zran index: its checksum does not match (corrupt)");
        _cleanup_(ossb_zran_freep) struct ossb_zran *z = calloc(1, sizeof(*z));
        if (!z)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        struct rbuf r = { .p = data, .len = len - 32 };
        uint32_t n_cps = 0, n_entries = 0;
        int k = decode_header(&r, z, &n_cps, &n_entries);
        if (k >= 0)
                k = decode_body(&r, z, n_cps, n_entries);
        if (k >= 0 && r.at != r.len)
                r.why = "trailing bytes", k = -EBADMSG;
        if (k == -ENOMEM || (r.why && streq(r.why, "out of memory")))
                return ossb_error_set(err, -ENOMEM, "out of memory");
        if (k < 0)
                return ossb_error_set(err, -EBADMSG, "zran index: %s", r.why ? r.why : "corrupt");
        *ret = TAKE_PTR(z);
        return 0;
}

/* ---- the cache ---- */

char *ossb_zran_cache_path(const char *cache_dir, const char *layer_digest)
{
        char *p = NULL;
        if (!ossb_digest_is_valid(layer_digest))
                return NULL;
        if (asprintf(&p, "%s/indexes/sha256/%s.zran", cache_dir, layer_digest + 7) < 0)
                return NULL;
        return p;
}

int ossb_zran_cache_load(const char *cache_dir, const char *layer_digest, int64_t blob_size, struct ossb_zran **ret,
                         struct ossb_error **err)
{
        _cleanup_free_ char *path = ossb_zran_cache_path(cache_dir, layer_digest);
        if (!path)
                return ossb_error_set(err, -EINVAL, "bad layer digest `%s`", layer_digest);
        _cleanup_free_ char *data = NULL;
        size_t len = 0;
        int k = ossb_read_file(path, OSSB_ZRAN_MAX_INDEX, &data, &len, NULL);
        if (k == -ENOENT)
                return -ENOENT;
        struct ossb_error *e = NULL;
        struct ossb_zran *z = NULL;
        if (k >= 0)
                k = ossb_zran_decode(data, len, &z, &e);
        if (k >= 0 && (!streq(z->layer_digest, layer_digest) || (blob_size >= 0 && z->blob_size != blob_size))) {
                k = -EBADMSG;
                ossb_zran_free(z);
        }
        if (k < 0) {
                log_debug("cached index %s is unusable (%s): removed", path, e && e->msg ? e->msg : strerror(-k));
                ossb_error_free(e);
                unlink(path);
                return -ENOENT;
        }
        *ret = z;
        return 0;
}

int ossb_zran_cache_store(const char *cache_dir, const void *data, size_t len, char **ret_path,
                          struct ossb_error **err)
{
        struct ossb_zran *z = NULL;
        int k = ossb_zran_decode(data, len, &z, err);
        if (k < 0)
                return k;
        _cleanup_free_ char *path = ossb_zran_cache_path(cache_dir, z->layer_digest);
        ossb_zran_free(z);
        _cleanup_free_ char *dir = path ? strdup(path) : NULL;
        if (!path || !dir)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        *strrchr(dir, '/') = 0;
        k = ossb_mkdir_p(dir, 0755);
        if (k < 0)
                return ossb_error_set(err, k, "cannot create %s: %s", dir, strerror(-k));
        k = ossb_write_file_atomic(path, data, len, 0644, err);
        if (k < 0)
                return k;
        if (ret_path)
                *ret_path = TAKE_PTR(path);
        return 0;
}
