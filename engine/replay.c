/* engine/replay.c - record and replay of the files a build's steps read from lazily pulled
 * base layers (see replay.h): the record (sections per step, caps, merging), its file format
 * and parser, keys, storage and pruning under CACHE_DIR/replay, and the build's use of them
 * (groups of lazy layers per FROM image, step windows, the background replay, the events). */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fs.h"
#include "common/log.h"
#include "common/sha256.h"
#include "common/strbuf.h"
#include "engine/build-internal.h"
#include "engine/replay.h"
#include "fuse/source-remote.h"
#include "registry/pull.h"

#define MAGIC "ossb-replay 1"
#define LINE_OVERHEAD 8 /* "path " and the newline, roughly, per path in the file */


/* ---- a set of borrowed strings (dedup) ---- */

struct strset {
        const char **v;
        size_t cap, n;
};

static uint64_t hash_str(const char *s)
{
        uint64_t h = 0xcbf29ce484222325ULL;
        for (; *s; s++)
                h = (h ^ (unsigned char) *s) * 0x100000001b3ULL;
        return h;
}

static void strset_put(const char **v, size_t cap, const char *s)
{
        size_t i = hash_str(s) & (cap - 1);
        while (v[i])
                i = (i + 1) & (cap - 1);
        v[i] = s;
}

/* 1: added, 0: there already, -ENOMEM. */
static int strset_add(struct strset *set, const char *s)
{
        if (set->cap) {
                for (size_t i = hash_str(s) & (set->cap - 1); set->v[i]; i = (i + 1) & (set->cap - 1))
                        if (streq(set->v[i], s))
                                return 0;
        }
        if ((set->n + 1) * 2 > set->cap) {
                size_t cap = set->cap ? set->cap * 2 : 64;
                const char **v = calloc(cap, sizeof(*v));
                if (!v)
                        return -ENOMEM;
                for (size_t i = 0; i < set->cap; i++)
                        if (set->v[i])
                                strset_put(v, cap, set->v[i]);
                free(set->v);
                set->v = v;
                set->cap = cap;
        }
        strset_put(set->v, set->cap, s);
        set->n++;
        return 1;
}

static void strset_clear(struct strset *set)
{
        free(set->v);
        *set = (struct strset) { 0 };
}

/* ---- the record ---- */

struct ossb_replay_record *ossb_replay_record_new(void)
{
        return calloc(1, sizeof(struct ossb_replay_record));
}

void ossb_replay_record_free(struct ossb_replay_record *r)
{
        if (!r)
                return;
        for (size_t i = 0; i < r->n_steps; i++) {
                free(r->steps[i].id);
                free(r->steps[i].label);
                ossb_strv_free(r->steps[i].paths);
                if (r->steps[i].seen)
                        strset_clear(r->steps[i].seen);
                free(r->steps[i].seen);
        }
        free(r->steps);
        free(r);
}

static void record_freep(struct ossb_replay_record **r)
{
        ossb_replay_record_free(*r);
}
#define _cleanup_record_ __attribute__((cleanup(record_freep)))

/* A path relative to the root, normalised: no leading '/', no empty, "." or ".." components. */
static bool valid_path(const char *p)
{
        size_t len = strlen(p);
        if (len == 0 || len > OSSB_REPLAY_MAX_PATH_LEN || p[0] == '/')
                return false;
        for (const char *c = p; *c;) {
                size_t n = strcspn(c, "/");
                if (n == 0 || (n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' && c[1] == '.'))
                        return false;
                c += n;
                if (*c == '/' && !*++c)
                        return false; /* a trailing slash */
        }
        return true;
}

static struct ossb_replay_step *step_get(struct ossb_replay_record *r, const char *id, const char *label)
{
        for (size_t i = 0; i < r->n_steps; i++)
                if (streq(r->steps[i].id, id))
                        return &r->steps[i];
        if (r->n_steps >= OSSB_REPLAY_MAX_STEPS) {
                r->capped = true;
                return NULL;
        }
        struct ossb_replay_step *v = reallocarray(r->steps, r->n_steps + 1, sizeof(*v));
        if (!v)
                return NULL;
        r->steps = v;
        struct ossb_replay_step *st = &v[r->n_steps];
        *st = (struct ossb_replay_step) { .id = strndup(id, OSSB_REPLAY_MAX_TEXT),
                                          .label = strndup(label ? label : "", OSSB_REPLAY_MAX_TEXT),
                                          .paths = calloc(1, sizeof(char *)) };
        if (!st->id || !st->label || !st->paths) {
                free(st->id);
                free(st->label);
                free(st->paths);
                return NULL;
        }
        r->n_steps++;
        return st;
}

/* Add paths to a step, each once, within the caps.  `strict`: an invalid or repeated path is
 * an error (-EBADMSG: parsing a file), else it is skipped. */
static int step_add(struct ossb_replay_record *r, struct ossb_replay_step *st, char *const *paths, bool strict)
{
        size_t n_new = ossb_strv_length(paths);
        if (!st->seen && !(st->seen = calloc(1, sizeof(*st->seen))))
                return -ENOMEM;
        char **v = reallocarray(st->paths, st->n_paths + n_new + 1, sizeof(char *));
        if (!v)
                return -ENOMEM;
        st->paths = v;
        int k = 0;
        for (size_t i = 0; k >= 0 && i < n_new; i++) {
                const char *p = paths[i];
                size_t cost = strlen(p) + LINE_OVERHEAD;
                if (!valid_path(p)) {
                        k = strict ? -EBADMSG : 0;
                        continue;
                }
                if (r->n_paths >= OSSB_REPLAY_MAX_PATHS || r->bytes + cost > OSSB_REPLAY_MAX_FILE) {
                        r->capped = true;
                        break;
                }
                char *c = strdup(p);
                k = c ? strset_add(st->seen, c) : -ENOMEM;
                if (k <= 0) {
                        free(c);
                        k = k < 0 ? k : strict ? -EBADMSG : 0;
                        continue;
                }
                st->paths[st->n_paths++] = c;
                st->paths[st->n_paths] = NULL;
                r->n_paths++;
                r->bytes += cost;
        }
        return k < 0 ? k : 0;
}

int ossb_replay_record_add(struct ossb_replay_record *r, const char *id, const char *label, char *const *paths)
{
        struct ossb_replay_step *st = step_get(r, id, label);
        if (!st)
                return r->capped ? 0 : -ENOMEM;
        return step_add(r, st, paths, false);
}

int ossb_replay_record_merge(struct ossb_replay_record *r, const struct ossb_replay_record *old, const char *prefix)
{
        for (size_t i = 0; old && i < old->n_steps; i++) {
                _cleanup_free_ char *id = NULL;
                if (asprintf(&id, "%s%s", prefix ? prefix : "", old->steps[i].id) < 0)
                        return -ENOMEM;
                bool have = false;
                for (size_t k = 0; k < r->n_steps && !have; k++)
                        have = streq(r->steps[k].id, id);
                if (have)
                        continue;
                if (r->n_paths >= OSSB_REPLAY_MAX_PATHS) {
                        r->capped = true;
                        break;
                }
                int k = ossb_replay_record_add(r, id, old->steps[i].label, old->steps[i].paths);
                if (k < 0)
                        return k;
        }
        if (old && old->capped)
                r->capped = true;
        return 0;
}

int ossb_replay_record_paths(const struct ossb_replay_record *r, char ***ret)
{
        struct strset seen = { 0 };
        char **v = calloc(r->n_paths + 1, sizeof(char *));
        size_t n = 0;
        int k = v ? 0 : -ENOMEM;
        for (size_t i = 0; k >= 0 && i < r->n_steps; i++)
                for (size_t j = 0; k >= 0 && j < r->steps[i].n_paths && n < r->n_paths; j++) {
                        k = strset_add(&seen, r->steps[i].paths[j]);
                        if (k > 0 && !(v[n++] = strdup(r->steps[i].paths[j])))
                                k = -ENOMEM;
                }
        strset_clear(&seen);
        if (k < 0) {
                ossb_strv_free(v);
                return k;
        }
        *ret = v;
        return 0;
}

/* ---- the file format ---- */

static int append_escaped(struct ossb_strbuf *sb, const char *s)
{
        for (const unsigned char *c = (const unsigned char *) s; *c; c++) {
                int k = *c < 0x21 || *c == '%' || *c == 0x7f ? ossb_strbuf_appendf(sb, "%%%02X", *c)
                                                              : ossb_strbuf_append_c(sb, (char) *c);
                if (k < 0)
                        return k;
        }
        return 0;
}

int ossb_replay_record_format(const struct ossb_replay_record *r, const char *key, int64_t created, char **ret,
                              size_t *ret_len)
{
        _cleanup_strbuf_ struct ossb_strbuf sb = OSSB_STRBUF_INIT;
        int k = ossb_strbuf_appendf(&sb, MAGIC "\nkey %s\ncreated %" PRId64 "\ncapped %d\n", key, created,
                                    r->capped ? 1 : 0);
        for (size_t i = 0; k >= 0 && i < r->n_steps; i++) {
                const struct ossb_replay_step *st = &r->steps[i];
                k = ossb_strbuf_append(&sb, "step ");
                if (k >= 0)
                        k = append_escaped(&sb, st->id);
                if (k >= 0)
                        k = ossb_strbuf_append_c(&sb, ' ');
                if (k >= 0)
                        k = append_escaped(&sb, st->label);
                if (k >= 0)
                        k = ossb_strbuf_append_c(&sb, '\n');
                for (size_t j = 0; k >= 0 && j < st->n_paths; j++) {
                        k = ossb_strbuf_append(&sb, "path ");
                        if (k >= 0)
                                k = append_escaped(&sb, st->paths[j]);
                        if (k >= 0)
                                k = ossb_strbuf_append_c(&sb, '\n');
                }
        }
        if (k >= 0)
                k = ossb_strbuf_appendf(&sb, "end %zu %zu\n", r->n_steps, r->n_paths);
        if (k < 0)
                return -ENOMEM;
        *ret_len = sb.len;
        *ret = ossb_strbuf_steal(&sb);
        return *ret ? 0 : -ENOMEM;
}

static int hexval(char c)
{
        return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Decode the field [s, s + n) in place into out (at most n + 1 bytes); -EBADMSG when it holds
 * a raw byte that should have been escaped, a bad escape or an escaped NUL. */
static int unescape(const char *s, size_t n, char *out)
{
        size_t o = 0;
        for (size_t i = 0; i < n; i++) {
                unsigned char c = (unsigned char) s[i];
                if (c < 0x21 || c == 0x7f)
                        return -EBADMSG;
                if (c == '%') {
                        int hi = i + 2 < n ? hexval(s[i + 1]) : -1, lo = hi >= 0 ? hexval(s[i + 2]) : -1;
                        if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
                                return -EBADMSG;
                        c = (unsigned char) (hi * 16 + lo);
                        i += 2;
                }
                out[o++] = (char) c;
        }
        out[o] = 0;
        return 0;
}

struct parser {
        const char *p, *end;
        int line;
        char *buf; /* a decoded field: as long as the longest line + 1 */
};

/* The next line (without its newline) as [*ret, *ret + *ret_n); -EBADMSG when the data ends
 * without one. */
static int next_line(struct parser *ps, const char **ret, size_t *ret_n)
{
        const char *nl = ps->p < ps->end ? memchr(ps->p, '\n', (size_t) (ps->end - ps->p)) : NULL;
        if (!nl)
                return -EBADMSG;
        *ret = ps->p;
        *ret_n = (size_t) (nl - ps->p);
        ps->p = nl + 1;
        ps->line++;
        return 0;
}

/* A line "TAG VALUE": the value's start and length, -EBADMSG when the tag differs. */
static int expect(struct parser *ps, const char *tag, const char **ret, size_t *ret_n)
{
        const char *l;
        size_t n, t = strlen(tag);
        int k = next_line(ps, &l, &n);
        if (k < 0 || n < t + 1 || memcmp(l, tag, t) != 0 || l[t] != ' ')
                return -EBADMSG;
        *ret = l + t + 1;
        *ret_n = n - t - 1;
        return 0;
}

static int parse_u64(const char *s, size_t n, uint64_t max, uint64_t *ret)
{
        uint64_t v = 0;
        if (n == 0 || n > 19)
                return -EBADMSG;
        for (size_t i = 0; i < n; i++) {
                if (s[i] < '0' || s[i] > '9')
                        return -EBADMSG;
                v = v * 10 + (uint64_t) (s[i] - '0');
        }
        if (v > max)
                return -EBADMSG;
        *ret = v;
        return 0;
}

static int parse_head(struct parser *ps, const char *key, struct ossb_replay_record *r, const char **why)
{
        const char *v;
        size_t n;
        uint64_t x;
        *why = "not a replay record";
        if (next_line(ps, &v, &n) < 0 || n != strlen(MAGIC) || memcmp(v, MAGIC, n) != 0)
                return -EBADMSG;
        *why = "its key line is not the key it is stored under";
        if (expect(ps, "key", &v, &n) < 0 || n != strlen(key) || memcmp(v, key, n) != 0)
                return -EBADMSG;
        *why = "bad created line";
        if (expect(ps, "created", &v, &n) < 0 || parse_u64(v, n, INT64_MAX, &x) < 0)
                return -EBADMSG;
        r->created = (int64_t) x;
        *why = "bad capped line";
        if (expect(ps, "capped", &v, &n) < 0 || parse_u64(v, n, 1, &x) < 0)
                return -EBADMSG;
        r->capped = x == 1;
        return 0;
}

/* "step ID LABEL": a new section (ids once each). */
static int parse_step(struct parser *ps, const char *v, size_t n, struct ossb_replay_record *r,
                      struct ossb_replay_step **ret)
{
        const char *sp = memchr(v, ' ', n);
        if (!sp || (size_t) (sp - v) > OSSB_REPLAY_MAX_TEXT * 3 || unescape(v, (size_t) (sp - v), ps->buf) < 0 ||
            !*ps->buf || strlen(ps->buf) > OSSB_REPLAY_MAX_TEXT)
                return -EBADMSG;
        for (size_t i = 0; i < r->n_steps; i++)
                if (streq(r->steps[i].id, ps->buf))
                        return -EBADMSG;
        _cleanup_free_ char *id = strdup(ps->buf);
        if (!id || unescape(sp + 1, n - (size_t) (sp - v) - 1, ps->buf) < 0)
                return id ? -EBADMSG : -ENOMEM;
        size_t before = r->n_steps;
        *ret = step_get(r, id, ps->buf);
        return *ret && r->n_steps > before ? 0 : r->capped ? -EBADMSG : -ENOMEM;
}

static int parse_body(struct parser *ps, struct ossb_replay_record *r, const char **why)
{
        struct ossb_replay_step *st = NULL;
        for (;;) {
                const char *l;
                size_t n;
                *why = "truncated (no end line)";
                if (next_line(ps, &l, &n) < 0)
                        return -EBADMSG;
                int k = 0;
                if (n > 5 && !memcmp(l, "path ", 5)) {
                        *why = st ? "a bad path" : "a path before any step";
                        char *one[2] = { ps->buf, NULL };
                        if (!st || unescape(l + 5, n - 5, ps->buf) < 0)
                                return -EBADMSG;
                        size_t before = r->n_paths;
                        k = step_add(r, st, one, true);
                        if (k >= 0 && r->n_paths == before) {
                                *why = "more paths than the caps allow";
                                return -EBADMSG;
                        }
                } else if (n > 5 && !memcmp(l, "step ", 5)) {
                        *why = "a bad or repeated step line";
                        k = parse_step(ps, l + 5, n - 5, r, &st);
                } else if (n > 4 && !memcmp(l, "end ", 4)) {
                        *why = "its counts do not match its content";
                        const char *sp = memchr(l + 4, ' ', n - 4);
                        uint64_t a, b;
                        if (!sp || parse_u64(l + 4, (size_t) (sp - l - 4), SIZE_MAX, &a) < 0 ||
                            parse_u64(sp + 1, n - (size_t) (sp + 1 - l), SIZE_MAX, &b) < 0 || a != r->n_steps ||
                            b != r->n_paths)
                                return -EBADMSG;
                        *why = "data after the end line";
                        return ps->p == ps->end ? 0 : -EBADMSG;
                } else {
                        *why = "an unknown line";
                        return -EBADMSG;
                }
                if (k < 0)
                        return k;
        }
}

int ossb_replay_record_parse(const char *data, size_t len, const char *key, struct ossb_replay_record **ret,
                             struct ossb_error **err)
{
        if (len > OSSB_REPLAY_MAX_FILE + 4096)
                return ossb_error_set(err, -EBADMSG, "replay record %s: larger than the cap", key);
        _cleanup_record_ struct ossb_replay_record *r = ossb_replay_record_new();
        _cleanup_free_ char *buf = malloc(len + 1);
        if (!r || !buf)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        struct parser ps = { .p = data, .end = data + len, .buf = buf };
        const char *why = "";
        int k = parse_head(&ps, key, r, &why);
        if (k >= 0)
                k = parse_body(&ps, r, &why);
        if (k == -ENOMEM)
                return ossb_error_set(err, k, "out of memory");
        if (k < 0)
                return ossb_error_set(err, -EBADMSG, "replay record %s: line %d: %s", key, ps.line, why);
        *ret = TAKE_PTR(r);
        return 0;
}

/* ---- keys and storage ---- */

int ossb_replay_key(const char *domain, const char *const *parts, size_t n, char ret[65])
{
        _cleanup_strbuf_ struct ossb_strbuf sb = OSSB_STRBUF_INIT;
        int k = ossb_strbuf_appendf(&sb, "%zu:%s", strlen(domain), domain);
        for (size_t i = 0; k >= 0 && i < n; i++) {
                const char *p = parts[i] ? parts[i] : "";
                k = ossb_strbuf_appendf(&sb, "%zu:", strlen(p));
                if (k >= 0)
                        k = ossb_strbuf_append(&sb, p);
        }
        char digest[OSSB_DIGEST_STR_LEN + 1];
        if (k < 0 || ossb_sha256_digest(sb.buf ? sb.buf : "", sb.len, digest) < 0)
                return -ENOMEM;
        memcpy(ret, digest + 7, 64); /* after "sha256:" */
        ret[64] = 0;
        return 0;
}

static bool valid_key(const char *key)
{
        if (strlen(key) != 64)
                return false;
        for (const char *c = key; *c; c++)
                if (hexval(*c) < 0 || (*c >= 'A' && *c <= 'F'))
                        return false;
        return true;
}

static char *record_path(const char *cache_dir, const char *key)
{
        char *p = NULL;
        return valid_key(key) && asprintf(&p, "%s/replay/%s", cache_dir, key) >= 0 ? p : NULL;
}

int ossb_replay_load(const char *cache_dir, const char *key, struct ossb_replay_record **ret, struct ossb_error **err)
{
        _cleanup_free_ char *path = record_path(cache_dir, key), *data = NULL;
        size_t len = 0;
        if (!path)
                return ossb_error_set(err, -EINVAL, "bad replay key");
        int k = ossb_read_file(path, OSSB_REPLAY_MAX_FILE + 4096, &data, &len, NULL);
        if (k == -ENOENT)
                return k;
        if (k < 0)
                return ossb_error_set(err, k == -EFBIG ? -EBADMSG : k, "cannot read `%s`: %s", path, strerror(-k));
        k = ossb_replay_record_parse(data, len, key, ret, err);
        if (k < 0)
                return ossb_error_wrap(err, "`%s`", path);
        return 0;
}

int ossb_replay_save(const char *cache_dir, const char *key, const struct ossb_replay_record *r,
                     struct ossb_error **err)
{
        _cleanup_free_ char *path = record_path(cache_dir, key), *dir = NULL, *data = NULL;
        size_t len = 0;
        if (!path || asprintf(&dir, "%s/replay", cache_dir) < 0)
                return ossb_error_set(err, path ? -ENOMEM : -EINVAL, path ? "out of memory" : "bad replay key");
        if (ossb_mkdir_p(dir, 0700) < 0)
                return ossb_error_set(err, -errno, "cannot create `%s`: %m", dir);
        if (ossb_replay_record_format(r, key, (int64_t) time(NULL), &data, &len) < 0)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        return ossb_write_file_atomic(path, data, len, 0600, err);
}

struct rec_file {
        char name[80];
        int64_t mtime;
};

static int by_mtime_desc(const void *a, const void *b)
{
        const struct rec_file *x = a, *y = b;
        return x->mtime < y->mtime ? 1 : x->mtime > y->mtime ? -1 : strcmp(x->name, y->name);
}

static bool prune_one(int dfd, const char *name, int64_t mtime, int64_t now, int64_t max_age_s)
{
        bool tmp = !valid_key(name);
        if (tmp ? now - mtime <= 3600 : now - mtime <= max_age_s)
                return false;
        return unlinkat(dfd, name, 0) == 0;
}

int ossb_replay_prune(const char *cache_dir, int64_t max_age_s, size_t max_records, size_t *ret_removed,
                      struct ossb_error **err)
{
        _cleanup_free_ char *dir = NULL;
        _cleanup_free_ struct rec_file *v = NULL;
        size_t n = 0, cap = 0, removed = 0;
        if (asprintf(&dir, "%s/replay", cache_dir) < 0)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        DIR *d = opendir(dir);
        if (!d && errno == ENOENT && ret_removed)
                *ret_removed = 0;
        if (!d)
                return errno == ENOENT ? 0 : ossb_error_set(err, -errno, "cannot open `%s`: %m", dir);
        int64_t now = (int64_t) time(NULL);
        int k = 0;
        for (struct dirent *de; k >= 0 && (de = readdir(d));) {
                struct stat st;
                if (de->d_name[0] == '.' || strlen(de->d_name) >= sizeof(v->name) ||
                    fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
                        continue;
                if (prune_one(dirfd(d), de->d_name, st.st_mtim.tv_sec, now, max_age_s)) {
                        removed++;
                        continue;
                }
                if (!valid_key(de->d_name))
                        continue;
                if (n == cap) {
                        struct rec_file *nv = reallocarray(v, cap = cap ? cap * 2 : 64, sizeof(*nv));
                        if (!nv) {
                                k = -ENOMEM;
                                break;
                        }
                        v = nv;
                }
                snprintf(v[n].name, sizeof(v[n].name), "%s", de->d_name);
                v[n++].mtime = st.st_mtim.tv_sec;
        }
        if (k >= 0 && max_records && n > max_records) {
                qsort(v, n, sizeof(*v), by_mtime_desc);
                for (size_t i = max_records; i < n; i++)
                        removed += unlinkat(dirfd(d), v[i].name, 0) == 0;
        }
        closedir(d);
        if (k < 0)
                return ossb_error_set(err, k, "out of memory");
        if (ret_removed)
                *ret_removed = removed;
        return 0;
}

/* ---- the build's use ---- */

struct replay_layer {
        struct lazy_layer *l;
        struct ossb_fs_source *src; /* borrowed from l */
        size_t mark;                /* recorded paths before it belong to earlier steps */
};

/* The lazy layers of one FROM image, bottom first. */
struct replay_group {
        char key[65], base_key[65];
        char *image;
        struct replay_layer *layers;
        size_t n;
        pthread_mutex_t lock;           /* protects rec, the marks and capped */
        struct ossb_replay_record *rec; /* what this build read */
        bool capped;                    /* a source's log was capped */
};

static void group_free(struct replay_group *g)
{
        if (!g)
                return;
        for (size_t i = 0; i < g->n; i++)
                ossb_fs_source_remote_replay_stop(g->layers[i].src, false);
        ossb_replay_record_free(g->rec);
        pthread_mutex_destroy(&g->lock);
        free(g->layers);
        free(g->image);
        free(g);
}

/* Each group once (its top layer is its owner). */
static struct replay_group *owned_group(struct lazy_layer *l)
{
        struct replay_group *g = *ossb_lazy_replay_group(l);
        return g && g->layers[g->n - 1].l == l ? g : NULL;
}

static int group_keys(struct build *b, const struct ossb_pulled_image *p, struct replay_group *g)
{
        const struct ossb_build_opts *o = b->opts;
        _cleanup_free_ char *ctx = o->context_dir ? realpath(o->context_dir, NULL) : NULL;
        _cleanup_free_ char *df = o->dockerfile_path_is_file && o->dockerfile_name ? realpath(o->dockerfile_name, NULL)
                                                                                   : NULL;
        const char *parts[] = { ctx ? ctx : o->context_dir, df ? df : o->dockerfile_name, o->target, o->platform, p->name };
        const char *base[] = { p->manifest.digest };
        if (ossb_replay_key("ossb replay dockerfile 1", parts, ELEMENTSOF(parts), g->key) < 0 ||
            ossb_replay_key("ossb replay base 1", base, ELEMENTSOF(base), g->base_key) < 0)
                return -ENOMEM;
        return 0;
}

/* The record for g: its Dockerfile's, else its base image's.  NULL when none (or unusable). */
static struct ossb_replay_record *group_record(struct build *b, struct replay_group *g, const char **ret_found_by)
{
        const char *keys[] = { g->key, g->base_key };
        const char *names[] = { "of this Dockerfile", "on this base image" };
        for (size_t i = 0; i < ELEMENTSOF(keys); i++) {
                struct ossb_replay_record *r = NULL;
                struct ossb_error *e = NULL;
                int k = ossb_replay_load(b->opts->cache_dir, keys[i], &r, &e);
                if (k == -EBADMSG)
                        log_warn("ignoring a replay record: %s", e && e->msg ? e->msg : "not valid");
                else if (k < 0 && k != -ENOENT)
                        log_debug("replay record: %s", e && e->msg ? e->msg : strerror(-k));
                ossb_error_free(e);
                if (k >= 0 && r->n_paths > 0) {
                        *ret_found_by = names[i];
                        return r;
                }
                ossb_replay_record_free(r);
        }
        return NULL;
}

/* The layer that serves `path`: the topmost that has it, when it has a regular file there
 * (else, or when none has it, g->n).  Layers pulled in full in between are not looked at: a
 * file they replace is fetched for nothing, which costs bytes, not correctness. */
static size_t serving_layer(struct replay_group *g, const char *path)
{
        for (size_t top = g->n; top-- > 0;) {
                int kind = ossb_fs_source_remote_path_kind(g->layers[top].src, path);
                if (kind != -ENOENT)
                        return kind == OSSB_FS_REMOTE_FILE ? top : g->n;
        }
        return g->n;
}

/* Each path replayed by the layer that serves it (in the record's order). */
static int group_replay(struct replay_group *g, char **paths, struct ossb_error **err)
{
        size_t n = ossb_strv_length(paths);
        _cleanup_free_ char **mine = calloc(n + 1, sizeof(char *));
        _cleanup_free_ size_t *at = calloc(n + 1, sizeof(size_t));
        if (!mine || !at)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        for (size_t i = 0; i < n; i++)
                at[i] = serving_layer(g, paths[i]);
        for (size_t li = 0; li < g->n; li++) {
                size_t m = 0;
                for (size_t i = 0; i < n; i++)
                        if (at[i] == li)
                                mine[m++] = paths[i];
                if (m == 0)
                        continue;
                int k = ossb_fs_source_remote_replay_start(g->layers[li].src, mine, m, err);
                if (k < 0)
                        return k;
        }
        return 0;
}

static void group_start(struct build *b, struct replay_group *g)
{
        const char *found_by = NULL;
        struct ossb_replay_record *r = group_record(b, g, &found_by);
        _cleanup_strv_free_ char **paths = NULL;
        struct ossb_error *e = NULL;
        if (!r)
                return;
        int k = ossb_replay_record_paths(r, &paths);
        ossb_replay_record_free(r);
        if (k >= 0)
                k = group_replay(g, paths, &e);
        if (k < 0)
                log_warn("%s: replay: %s", g->image, e && e->msg ? e->msg : strerror(-k));
        ossb_error_free(e);
        uint64_t files = 0, bytes = 0, compressed = 0;
        for (size_t i = 0; i < g->n; i++) {
                struct ossb_fs_remote_replay_stats st;
                ossb_fs_source_remote_replay_stats(g->layers[i].src, &st);
                files += st.files;
                bytes += st.file_bytes;
                compressed += st.compressed_bytes;
        }
        if (files)
                ossb_progress_replay_start(b, g->image, found_by, files, bytes, compressed);
}

void ossb_replay_image(struct build *b, const struct ossb_pulled_image *p, struct lazy_layer **layers)
{
        if (b->opts->lazy_replay_off || !b->opts->cache_dir)
                return;
        size_t n = p->parsed->n_layers;
        struct replay_group *g = calloc(1, sizeof(*g));
        if (!g) {
                log_warn("replay: out of memory");
                return;
        }
        pthread_mutex_init(&g->lock, NULL);
        if (!(g->layers = calloc(n ? n : 1, sizeof(*g->layers))) || !(g->image = strdup(p->name)) ||
            !(g->rec = ossb_replay_record_new()) || group_keys(b, p, g) < 0) {
                group_free(g);
                log_warn("replay: out of memory");
                return;
        }
        for (size_t i = 0; i < n; i++)
                if (layers[i] && ossb_fs_source_is_remote(ossb_lazy_source(layers[i]))) { /* TOC layers only */
                        struct ossb_fs_source *src = ossb_lazy_source(layers[i]);
                        g->layers[g->n++] = (struct replay_layer) { layers[i], src,
                                                                    ossb_fs_source_remote_record_mark(src, NULL) };
                        *ossb_lazy_replay_group(layers[i]) = g;
                }
        if (g->n == 0) {
                group_free(g);
                return;
        }
        if (!b->opts->no_cache)
                group_start(b, g);
}

/* What the group's layers served since the last boundary, as step `id`'s. */
static void group_collect(struct replay_group *g, const char *id, const char *label)
{
        pthread_mutex_lock(&g->lock);
        for (size_t i = 0; i < g->n; i++) {
                bool capped = false;
                size_t now = ossb_fs_source_remote_record_mark(g->layers[i].src, &capped);
                _cleanup_strv_free_ char **paths = NULL;
                g->capped |= capped;
                if (now <= g->layers[i].mark)
                        continue;
                if (ossb_fs_source_remote_record_paths(g->layers[i].src, g->layers[i].mark, now, &paths) < 0 ||
                    ossb_replay_record_add(g->rec, id, label, paths) < 0)
                        log_debug("replay: out of memory recording step %s", id);
                g->layers[i].mark = now;
        }
        pthread_mutex_unlock(&g->lock);
}

void ossb_replay_step_done(struct build *b, struct stage_state *s, const struct ossb_df_inst *inst)
{
        if (b->opts->lazy_replay_off || !b->n_lazy)
                return;
        const struct ossb_df_stage *st = s->stage;
        char id[64];
        _cleanup_free_ char *label = NULL;
        int line = inst->node ? inst->node->line_start : 0;
        if (inst >= st->insts && inst < st->insts + st->n_insts)
                snprintf(id, sizeof(id), "%zu/%zu", st->index, (size_t) (inst - st->insts));
        else
                snprintf(id, sizeof(id), "%zu/onbuild-%d", st->index, line);
        if (asprintf(&label, "line %d: %.200s", line, inst->node && inst->node->original ? inst->node->original : "")
            < 0)
                return;
        /* b->lazy grows under b->lock (a FROM pulls with it held): never wait for a pull here;
         * what is not collected now goes to the next step */
        if (pthread_mutex_trylock(&b->lock) != 0)
                return;
        for (size_t i = 0; i < b->n_lazy; i++) {
                struct replay_group *g = owned_group(b->lazy[i]);
                if (g)
                        group_collect(g, id, label);
        }
        pthread_mutex_unlock(&b->lock);
}

static void group_save(struct build *b, struct replay_group *g)
{
        const char *dir = b->opts->cache_dir;
        _cleanup_record_ struct ossb_replay_record *old = NULL, *base = ossb_replay_record_new(), *old_base = NULL;
        char prefix[20];
        struct ossb_error *e = NULL;
        if (g->capped)
                log_warn("%s: replay record capped at %d paths or %d MiB per layer", g->image, OSSB_FS_REMOTE_RECORD_MAX,
                         OSSB_FS_REMOTE_RECORD_MAX_BYTES >> 20);
        g->rec->capped |= g->capped;
        (void) ossb_replay_load(dir, g->key, &old, NULL);
        (void) ossb_replay_load(dir, g->base_key, &old_base, NULL);
        snprintf(prefix, sizeof(prefix), "%.16s:", g->key);
        int k = base ? ossb_replay_record_merge(g->rec, old, NULL) : -ENOMEM;
        if (k >= 0)
                k = ossb_replay_record_merge(base, g->rec, prefix);
        if (k >= 0)
                k = ossb_replay_record_merge(base, old_base, NULL);
        if (k >= 0)
                k = ossb_replay_save(dir, g->key, g->rec, &e);
        if (k >= 0)
                k = ossb_replay_save(dir, g->base_key, base, &e);
        if (k < 0)
                log_warn("%s: cannot write the replay record: %s", g->image, e && e->msg ? e->msg : strerror(-k));
        else
                log_debug("%s: replay record %s: %zu paths in %zu steps", g->image, g->key, g->rec->n_paths,
                          g->rec->n_steps);
        ossb_error_free(e);
}

static void group_finish(struct build *b, struct replay_group *g)
{
        for (size_t i = 0; i < g->n; i++) {
                struct ossb_fs_source *src = g->layers[i].src;
                struct ossb_fs_remote_replay_stats st;
                struct ossb_fs_remote_stats rst;
                ossb_fs_source_remote_replay_stop(src, false);
                ossb_fs_source_remote_replay_stats(src, &st);
                ossb_fs_source_remote_get_stats(src, &rst);
                if (st.files)
                        ossb_progress_replay_done(b, ossb_lazy_name(g->layers[i].l), ossb_lazy_digest(g->layers[i].l), &st,
                                                  rst.prefetched_bytes);
        }
        group_collect(g, "other", "read outside RUN steps");
        if (g->rec->n_paths > 0)
                group_save(b, g);
}

void ossb_replay_finish(struct build *b)
{
        if (b->opts->lazy_replay_off)
                return;
        bool any = false;
        for (size_t i = 0; i < b->n_lazy; i++) {
                struct replay_group *g = owned_group(b->lazy[i]);
                if (g) {
                        group_finish(b, g);
                        any = true;
                }
        }
        size_t removed = 0;
        if (any && ossb_replay_prune(b->opts->cache_dir, OSSB_REPLAY_PRUNE_AGE, OSSB_REPLAY_PRUNE_COUNT, &removed, NULL) >= 0 &&
            removed)
                log_debug("replay: %zu old records removed", removed);
}

void ossb_replay_free_all(struct build *b)
{
        /* a group's owner is its top layer, which may come before its other layers in b->lazy:
         * free each group once, after every layer forgot it */
        for (size_t i = 0; i < b->n_lazy; i++) {
                struct replay_group *g = owned_group(b->lazy[i]);
                if (!g)
                        continue;
                for (size_t k = 0; k < g->n; k++)
                        *ossb_lazy_replay_group(g->layers[k].l) = NULL;
                group_free(g);
        }
}
