/* engine/run-mounts-prepare.c - what a RUN step's --mount values become for the sandbox:
 * bind sources resolved inside their tree, cache directories (created, seeded, locked),
 * tmpfs, secrets written to private files or handed over as environment variables.
 *
 * Owns: struct ossb_run_mounts: the private directory of one step's mounts (secret files,
 * read-write copies), the cache locks, the secret environment entries (wiped when freed).
 * Semantics are BuildKit's (dockerfile2llb convert_runmount.go, convert_secrets.go):
 * - bind: `source` (default the root) in the build context (as .dockerignore leaves it), in an
 *   earlier stage's root (from=NAME or index) or in an image (from=REF); read-only unless rw,
 *   and then a private copy whose writes are discarded.  A read-only bind of a context without
 *   .dockerignore binds the context itself (its files keep their host owners); a copy of the
 *   context, like BuildKit's context, gives them to 0:0.
 * - cache: CACHE_DIR/mounts/cache/<sha256 hex of the id> (id defaults to the target as
 *   written, cleaned), created with uid/gid/mode (0:0 0755) or seeded from from=/source= on
 *   creation.  Users hold a flock on "<dir>.lock": shared (the default) a shared lock (it waits
 *   only for a `locked` user), locked an exclusive one (waits), private an exclusive one taken
 *   without waiting and then shared, trying the instances <hex>, <hex>-1, ... in turn, so that
 *   a private user never shares its directory with another user.
 * - secret: id = source, else id, else the target's base name; from the build's --secret
 *   values; missing: skipped, or an error when required.  A file (mode 0400 or `mode`, owner
 *   uid:gid, default 0:0) bound read-only at target (default /run/secrets/<id>), and/or with
 *   env=NAME the variable NAME=content.  The content is never logged or put in an error.
 * - tmpfs: size= bytes; ssh: refused.
 * Relative targets are under the step's working directory; "/" is refused.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fs.h"
#include "common/interrupt.h"
#include "common/log.h"
#include "common/sha256.h"
#include "common/strbuf.h"
#include "engine/build-internal.h"
#include "engine/copy.h"
#include "engine/exec/exec.h"
#include "engine/run-mounts.h"

#define PRIVATE_INSTANCES 64
#define LOCK_POLL_NS (50 * 1000 * 1000)

struct cache_use {
        char *key;  /* "<hex>" of the id */
        char *dir;  /* the instance in use */
};

struct ossb_run_mounts {
        char *dir;                    /* private directory: secret files, copies */
        struct ossb_exec_mount *exec;
        size_t n;
        char **strings;               /* sources and targets the exec mounts point to */
        char **env;                   /* "NAME=secret" (wiped when freed) */
        int *locks;
        size_t n_locks;
        struct cache_use *caches;
        size_t n_caches;
        size_t n_files;               /* names for the private directory's entries */
};

struct prep {
        struct build *b;
        struct stage_state *s;
        struct ossb_run_mounts *m;
        const char *cwd;
};

static int oom(struct ossb_error **err)
{
        return ossb_error_set(err, -ENOMEM, "out of memory");
}

/* ---- the result ---- */

static void wipe_free(char *s)
{
        if (s) {
                explicit_bzero(s, strlen(s));
                free(s);
        }
}

void ossb_run_mounts_free(struct ossb_run_mounts *m)
{
        if (!m)
                return;
        for (size_t i = 0; m->env && m->env[i]; i++)
                wipe_free(m->env[i]);
        free(m->env);
        for (size_t i = 0; i < m->n_locks; i++)
                close(m->locks[i]); /* releases the flock */
        free(m->locks);
        for (size_t i = 0; i < m->n_caches; i++) {
                free(m->caches[i].key);
                free(m->caches[i].dir);
        }
        free(m->caches);
        if (m->dir) {
                int r = ossb_rm_rf(m->dir);
                if (r < 0)
                        log_warn("cannot remove `%s` (RUN --mount files): %s", m->dir, strerror(-r));
                free(m->dir);
        }
        ossb_strv_free(m->strings);
        free(m->exec);
        free(m);
}

const struct ossb_exec_mount *ossb_run_mounts_exec(const struct ossb_run_mounts *m, size_t *ret_n)
{
        *ret_n = m->n;
        return m->exec;
}

char *const *ossb_run_mounts_env(const struct ossb_run_mounts *m)
{
        return m->env;
}

/* Keep `s` (taken) alive as long as m; returns it, NULL on ENOMEM. */
static const char *keep(struct ossb_run_mounts *m, char *s)
{
        if (!s || ossb_strv_consume(&m->strings, s) < 0)
                return NULL;
        return s;
}

static int add_exec(struct ossb_run_mounts *m, struct ossb_exec_mount em, struct ossb_error **err)
{
        struct ossb_exec_mount *n = realloc(m->exec, (m->n + 1) * sizeof(*n));
        if (!n)
                return oom(err);
        m->exec = n;
        n[m->n++] = em;
        return 0;
}

static int add_lock(struct ossb_run_mounts *m, int fd, struct ossb_error **err)
{
        int *n = realloc(m->locks, (m->n_locks + 1) * sizeof(*n));
        if (!n) {
                close(fd);
                return oom(err);
        }
        m->locks = n;
        n[m->n_locks++] = fd;
        return 0;
}

/* A fresh path in the private directory. */
static char *private_path(struct ossb_run_mounts *m, const char *kind)
{
        char *p = NULL;
        if (asprintf(&p, "%s/%s-%zu", m->dir, kind, ++m->n_files) < 0)
                return NULL;
        return p;
}

/* ---- targets and sources ---- */

static int abs_target(const char *cwd, const char *target, char **ret, struct ossb_error **err)
{
        _cleanup_free_ char *joined = target[0] == '/' ? strdup(target) : ossb_path_join(cwd, target);
        char *clean = joined ? ossb_path_clean(joined) : NULL;
        if (!clean)
                return oom(err);
        if (streq(clean, "/")) {
                free(clean);
                return ossb_error_setx(err, OSSB_EXIT_USAGE, -EINVAL, "invalid mount target \"/\"");
        }
        *ret = clean;
        return 0;
}

struct source {
        const struct ossb_tree *tree;
        bool context;
        char what[300];  /* "the build context", "stage `x`", "image `x`" */
        char *rel;       /* canonical, relative to the tree */
        char *abs;
        struct stat st;
};

static void source_clear(struct source *src)
{
        free(src->rel);
        free(src->abs);
}

static int source_tree(struct prep *p, const char *from, struct source *src, struct ossb_error **err)
{
        if (!from || !*from) {
                src->tree = &p->b->context;
                src->context = true;
                snprintf(src->what, sizeof(src->what), "the build context");
                return 0;
        }
        struct stage_state *st = ossb_find_stage(p->b, from);
        if (st) {
                if (st->stage->index >= p->s->stage->index)
                        return ossb_error_setx(err, OSSB_EXIT_USAGE, -EINVAL,
                                               "cannot mount from stage \"%s\": a stage needs to be defined before the "
                                               "current command", from);
                if (!st->done || !st->root.path)
                        return ossb_error_setx(err, OSSB_EXIT_INTERNAL, -EINVAL,
                                               "cannot mount from stage \"%s\": it has not been built", from);
                src->tree = &st->root;
                snprintf(src->what, sizeof(src->what), "stage `%s`", from);
                return 0;
        }
        snprintf(src->what, sizeof(src->what), "image `%s`", from);
        return ossb_image_source(p->b, from, &src->tree, err);
}

/* Resolve source= inside the tree (symlinks and ".." cannot leave it). */
static int source_resolve(struct prep *p, const char *from, const char *source, struct source *src,
                          struct ossb_error **err)
{
        int r = source_tree(p, from, src, err);
        if (r < 0)
                return r;
        const char *written = source && *source ? source : "/";
        r = ossb_tree_resolve(src->tree, written, true, &src->rel, err);
        if (r < 0)
                return r;
        if (!(src->abs = ossb_tree_abs(src->tree, src->rel)))
                return oom(err);
        bool ignored = false;
        if (src->context && p->b->ignore && *src->rel) {
                r = ossb_dockerignore_match(p->b->ignore, src->rel);
                if (r < 0)
                        return oom(err);
                ignored = r > 0;
        }
        if (ignored || lstat(src->abs, &src->st) < 0)
                return ossb_error_setx(err, OSSB_EXIT_BUILD, ignored ? -ENOENT : -errno, "source `%s` not found in %s%s",
                                       written, src->what, ignored ? " (excluded by .dockerignore)" : "");
        return 0;
}

/* A source pattern for COPY's selection that means exactly `rel`: glob characters escaped. */
static char *literal_pattern(const char *rel)
{
        _cleanup_strbuf_ struct ossb_strbuf sb = OSSB_STRBUF_INIT;
        if (!*rel)
                return strdup(".");
        for (const char *c = rel; *c;) {
                size_t n = strcspn(c, "/");
                bool glob = memchr(c, '*', n) || memchr(c, '?', n) || memchr(c, '[', n);
                for (size_t i = 0; i < n; i++)
                        if ((glob && strchr("*?[\\", c[i]) && ossb_strbuf_append_c(&sb, '\\') < 0) ||
                            ossb_strbuf_append_c(&sb, c[i]) < 0)
                                return NULL;
                c += n;
                if (*c == '/') {
                        if (ossb_strbuf_append_c(&sb, '/') < 0)
                                return NULL;
                        c++;
                }
        }
        return ossb_strbuf_steal(&sb);
}

/* A private copy of the source at `dest`: a context directory through COPY's rules
 * (.dockerignore applies, owners become 0:0), anything else as it is (cp -a; a context file
 * then belongs to 0:0 too). */
static int source_copy(struct prep *p, const struct source *src, const char *dest, struct ossb_error **err)
{
        if (!(src->context && S_ISDIR(src->st.st_mode))) {
                int r = ossb_tree_clone(src->abs, dest, err);
                if (r >= 0 && src->context && lchown(dest, 0, 0) < 0)
                        r = ossb_error_set(err, -errno, "cannot change the owner of `%s`: %m", dest);
                return r;
        }
        if (mkdir(dest, 0755) < 0)
                return ossb_error_set(err, -errno, "cannot create `%s`: %m", dest);
        _cleanup_free_ char *pattern = literal_pattern(src->rel);
        if (!pattern)
                return oom(err);
        char *sources[2] = { pattern, NULL };
        struct ossb_copy_req req = {
                .src = src->tree, .ignore = p->b->ignore, .src_is_context = true, .sources = sources,
                .dest = "/", .dest_is_dir = true, .uid = -1, .gid = -1, .now = p->b->now, .what = "RUN --mount",
        };
        struct ossb_tree dst = { .fd = -1 };
        int r = ossb_tree_open(dest, &dst, err);
        if (r >= 0)
                r = ossb_copy_run(&dst, &req, NULL, err);
        if (dst.path)
                ossb_tree_close(&dst);
        /* the root of the copy is the source directory itself */
        if (r >= 0 && (chmod(dest, src->st.st_mode & 07777) < 0 || chown(dest, 0, 0) < 0))
                r = ossb_error_set(err, -errno, "cannot set the mode of `%s`: %m", dest);
        return r;
}

/* ---- bind ---- */

static int prepare_bind(struct prep *p, const struct ossb_run_mount *mt, const char *target, struct ossb_error **err)
{
        struct source src = { 0 };
        int r = source_resolve(p, mt->from, mt->source, &src, err);
        const char *bound = NULL;
        if (r >= 0 && (!mt->readonly || (src.context && p->b->ignore))) {
                _cleanup_free_ char *copy = private_path(p->m, "bind");
                if (!copy)
                        r = oom(err);
                else if ((r = source_copy(p, &src, copy, err)) >= 0 && !(bound = keep(p->m, TAKE_PTR(copy))))
                        r = oom(err);
        } else if (r >= 0 && !(bound = keep(p->m, TAKE_PTR(src.abs))))
                r = oom(err);
        source_clear(&src);
        if (r < 0)
                return r;
        return add_exec(p->m, (struct ossb_exec_mount) { .source = bound, .target = target, .readonly = mt->readonly }, err);
}

/* ---- cache ---- */

static int lock_file(const char *path, int op, bool wait, const char *id, int *ret_fd, struct ossb_error **err)
{
        _cleanup_close_ int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0)
                return ossb_error_set(err, -errno, "cannot open `%s`: %m", path);
        for (bool said = false;;) {
                if (flock(fd, op | LOCK_NB) == 0)
                        break;
                if (errno != EWOULDBLOCK && errno != EINTR)
                        return ossb_error_set(err, -errno, "cannot lock `%s`: %m", path);
                if (!wait)
                        return 0; /* *ret_fd stays -1: in use */
                if (ossb_interrupted())
                        return ossb_error_setx(err, OSSB_EXIT_INTERNAL, -EINTR, "interrupted by signal %d",
                                               ossb_interrupted());
                if (!said)
                        log_info("waiting for the cache mount `%s`: another build uses it", id);
                said = true;
                nanosleep(&(struct timespec) { .tv_nsec = LOCK_POLL_NS }, NULL);
        }
        *ret_fd = TAKE_FD(fd);
        return 0;
}

/* Lock an instance of the cache as the sharing mode says; *ret_dir is its directory. */
static int cache_lock(struct prep *p, const char *base, const char *hex, const struct ossb_run_mount *mt, const char *id,
                      char **ret_dir, struct ossb_error **err)
{
        int fd = -1;
        for (unsigned i = 0; i < PRIVATE_INSTANCES; i++) {
                _cleanup_free_ char *dir = NULL, *lock = NULL;
                if (asprintf(&dir, i ? "%s/%s-%u" : "%s/%s", base, hex, i) < 0 || asprintf(&lock, "%s.lock", dir) < 0)
                        return oom(err);
                int r;
                if (mt->sharing != OSSB_SHARING_PRIVATE) {
                        bool locked = mt->sharing == OSSB_SHARING_LOCKED;
                        r = lock_file(lock, locked ? LOCK_EX : LOCK_SH, true, id, &fd, err);
                } else {
                        r = lock_file(lock, LOCK_EX, false, id, &fd, err);
                        /* ours alone now; shared, so that a `locked` user waits for us */
                        if (r >= 0 && fd >= 0 && flock(fd, LOCK_SH | LOCK_NB) < 0) {
                                close(fd);
                                fd = -1;
                        }
                }
                if (r < 0)
                        return r;
                if (fd < 0)
                        continue; /* a private user: this instance is in use */
                r = add_lock(p->m, fd, err);
                if (r >= 0)
                        *ret_dir = TAKE_PTR(dir);
                return r;
        }
        return ossb_error_setx(err, OSSB_EXIT_BUILD, -EBUSY, "cache mount `%s` (sharing=private): all %d instances are in use",
                               id, PRIVATE_INSTANCES);
}

/* Create the cache directory on first use: empty with uid/gid/mode, or seeded from from=. */
static int cache_create(struct prep *p, const struct ossb_run_mount *mt, const char *dir, struct ossb_error **err)
{
        struct stat st;
        if (lstat(dir, &st) == 0 && S_ISDIR(st.st_mode))
                return 0;
        _cleanup_free_ char *tmp = ossb_tmp_name(dir);
        if (!tmp)
                return oom(err);
        int r = 0;
        bool seeded = mt->from && *mt->from;
        if (seeded) {
                struct source src = { 0 };
                r = source_resolve(p, mt->from, mt->source, &src, err);
                if (r >= 0 && !S_ISDIR(src.st.st_mode))
                        r = ossb_error_setx(err, OSSB_EXIT_BUILD, -ENOTDIR, "cache mount source `%s` in %s is not a directory",
                                            mt->source ? mt->source : "/", src.what);
                if (r >= 0)
                        r = source_copy(p, &src, tmp, err);
                source_clear(&src);
        } else if (mkdir(tmp, 0700) < 0)
                r = ossb_error_set(err, -errno, "cannot create `%s`: %m", tmp);
        if (r >= 0 && (!seeded || mt->uid_set || mt->gid_set || mt->mode_set) &&
            (chown(tmp, mt->uid, mt->gid) < 0 || chmod(tmp, mt->mode_set ? mt->mode & 07777 : 0755) < 0))
                r = ossb_error_set(err, -errno, "cannot set the owner and mode of `%s`: %m", tmp);
        if (r >= 0 && rename(tmp, dir) < 0 && errno != EEXIST && errno != ENOTEMPTY)
                r = ossb_error_set(err, -errno, "cannot rename `%s` to `%s`: %m", tmp, dir);
        (void) ossb_rm_rf(tmp); /* what is left when another build created it first */
        return r;
}

static int prepare_cache(struct prep *p, const struct ossb_run_mount *mt, const char *target, struct ossb_error **err)
{
        _cleanup_free_ char *id = mt->id && *mt->id ? strdup(mt->id) : ossb_path_clean(mt->target ? mt->target : "");
        _cleanup_free_ char *base = NULL, *dir = NULL;
        char digest[OSSB_DIGEST_STR_LEN + 1];
        if (!id || !(base = ossb_path_join(p->b->opts->cache_dir, "mounts/cache")))
                return oom(err);
        if (ossb_sha256_digest(id, strlen(id), digest) < 0)
                return oom(err);
        const char *hex = digest + 7;
        int r = ossb_mkdir_p(base, 0700);
        if (r < 0)
                return ossb_error_set(err, r, "cannot create `%s`: %s", base, strerror(-r));
        /* the same id twice in one RUN: one instance, one lock (a second flock would wait on us) */
        for (size_t i = 0; i < p->m->n_caches && !dir; i++)
                if (streq(p->m->caches[i].key, hex) && !(dir = strdup(p->m->caches[i].dir)))
                        return oom(err);
        if (!dir) {
                r = cache_lock(p, base, hex, mt, id, &dir, err);
                if (r < 0)
                        return r;
                struct cache_use *n = realloc(p->m->caches, (p->m->n_caches + 1) * sizeof(*n));
                if (!n)
                        return oom(err);
                p->m->caches = n;
                struct cache_use *u = &n[p->m->n_caches++];
                *u = (struct cache_use) { .key = strdup(hex), .dir = strdup(dir) };
                if (!u->key || !u->dir)
                        return oom(err);
        }
        r = cache_create(p, mt, dir, err);
        if (r < 0)
                return r;
        const char *src = keep(p->m, TAKE_PTR(dir));
        if (!src)
                return oom(err);
        log_debug("RUN --mount=type=cache: id `%s` is %s", id, src);
        return add_exec(p->m, (struct ossb_exec_mount) { .source = src, .target = target, .readonly = mt->readonly }, err);
}

/* ---- secret ---- */

/* The --secret value for `id` (the last one given wins), or 0 when none. */
static int secret_find(struct prep *p, const char *id, struct ossb_secret_spec *ret, struct ossb_error **err)
{
        int found = 0;
        for (size_t i = 0; p->b->opts->secrets && p->b->opts->secrets[i]; i++) {
                struct ossb_secret_spec s;
                int r = ossb_secret_spec_parse(p->b->opts->secrets[i], &s, err);
                if (r < 0)
                        return ossb_error_wrap(err, "--secret");
                if (!streq(s.id, id)) {
                        ossb_secret_spec_clear(&s);
                        continue;
                }
                ossb_secret_spec_clear(ret);
                *ret = s;
                found = 1;
        }
        return found;
}

/* The secret's bytes (wiped and freed by the caller). */
static int secret_read(const struct ossb_secret_spec *s, char **ret, size_t *ret_len, struct ossb_error **err)
{
        if (s->env) {
                const char *v = secure_getenv(s->env);
                *ret = strdup(v ? v : "");
                *ret_len = *ret ? strlen(*ret) : 0;
                return *ret ? 0 : oom(err);
        }
        int r = ossb_read_file(s->file, OSSB_SECRET_MAX_SIZE, ret, ret_len, NULL);
        if (r == -EFBIG)
                return ossb_error_setx(err, OSSB_EXIT_USAGE, r, "secret `%s` is too big (more than %d bytes)", s->id,
                                       OSSB_SECRET_MAX_SIZE);
        if (r < 0)
                return ossb_error_setx(err, OSSB_EXIT_USAGE, r, "secret `%s`: cannot read `%s`: %s", s->id, s->file,
                                       strerror(-r));
        return 0;
}

static int secret_file(struct prep *p, const struct ossb_run_mount *mt, const char *data, size_t len, char **ret,
                       struct ossb_error **err)
{
        _cleanup_free_ char *path = private_path(p->m, "secret");
        if (!path)
                return oom(err);
        _cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0)
                return ossb_error_set(err, -errno, "cannot create `%s`: %m", path);
        if (ossb_write_all(fd, data, len) < 0)
                return ossb_error_set(err, -errno, "cannot write `%s`: %m", path);
        if (fchown(fd, mt->uid, mt->gid) < 0 || fchmod(fd, mt->mode_set ? mt->mode & 07777 : 0400) < 0)
                return ossb_error_set(err, -errno, "cannot set the owner and mode of `%s`: %m", path);
        *ret = TAKE_PTR(path);
        return 0;
}

static int secret_env(struct prep *p, const struct ossb_run_mount *mt, const char *data, struct ossb_error **err)
{
        if (!*mt->env || strchr(mt->env, '='))
                return ossb_error_setx(err, OSSB_EXIT_USAGE, -EINVAL, "env=%s: not a variable name", mt->env);
        _cleanup_strbuf_ struct ossb_strbuf sb = OSSB_STRBUF_INIT;
        if (ossb_strbuf_appendf(&sb, "%s=", mt->env) < 0 || ossb_strbuf_append(&sb, data) < 0) {
                if (sb.buf)
                        explicit_bzero(sb.buf, sb.len);
                return oom(err);
        }
        char *kv = ossb_strbuf_steal(&sb);
        if (!p->m->env && !(p->m->env = ossb_strv_new_empty())) {
                wipe_free(kv);
                return oom(err);
        }
        size_t n = ossb_strv_length(p->m->env);
        char **nv = realloc(p->m->env, (n + 2) * sizeof(*nv));
        if (!nv) {
                wipe_free(kv);
                return oom(err);
        }
        nv[n] = kv;
        nv[n + 1] = NULL;
        p->m->env = nv;
        return 0;
}

static int secret_mount(struct prep *p, const struct ossb_run_mount *mt, const char *id, const char *data, size_t len,
                        struct ossb_error **err)
{
        _cleanup_free_ char *target = NULL, *file = NULL, *dflt = NULL;
        const char *slash = strrchr(id, '/');
        if (!mt->target || !*mt->target) {
                if (asprintf(&dflt, "/run/secrets/%s", slash ? slash + 1 : id) < 0)
                        return oom(err);
        }
        int r = abs_target(p->cwd, dflt ? dflt : mt->target, &target, err);
        if (r >= 0)
                r = secret_file(p, mt, data, len, &file, err);
        if (r < 0)
                return r;
        const char *src = keep(p->m, TAKE_PTR(file)), *tgt = src ? keep(p->m, TAKE_PTR(target)) : NULL;
        if (!tgt)
                return oom(err);
        return add_exec(p->m, (struct ossb_exec_mount) { .source = src, .target = tgt, .readonly = true }, err);
}

static int prepare_secret(struct prep *p, const struct ossb_run_mount *mt, struct ossb_error **err)
{
        const char *id = mt->source && *mt->source ? mt->source : mt->id && *mt->id ? mt->id : NULL;
        _cleanup_free_ char *from_target = NULL;
        if (!id) {
                const char *t = mt->target, *slash = strrchr(t, '/');
                if (!(from_target = strdup(slash ? slash + 1 : t)))
                        return oom(err);
                id = from_target;
        }
        struct ossb_secret_spec spec = { 0 };
        int r = secret_find(p, id, &spec, err);
        if (r <= 0) {
                ossb_secret_spec_clear(&spec);
                if (r < 0 || !mt->required) {
                        if (r == 0)
                                log_debug("RUN --mount=type=secret: secret `%s` not given: not mounted", id);
                        return r;
                }
                return ossb_error_setx(err, OSSB_EXIT_USAGE, -ENOENT,
                                       "secret `%s` is required but was not given (--secret id=%s,src=FILE or "
                                       "--secret id=%s,env=VARIABLE)", id, id, id);
        }
        char *data = NULL;
        size_t len = 0;
        r = secret_read(&spec, &data, &len, err);
        ossb_secret_spec_clear(&spec);
        if (r >= 0 && mt->env)
                r = secret_env(p, mt, data, err);
        if (r >= 0 && (!mt->env || (mt->target && *mt->target)))
                r = secret_mount(p, mt, id, data, len, err);
        if (data) {
                explicit_bzero(data, len);
                free(data);
        }
        return r;
}

/* ---- one mount, all mounts ---- */

static int prepare_one(struct prep *p, const struct ossb_run_mount *mt, struct ossb_error **err)
{
        if (mt->type == OSSB_MOUNT_SSH)
                return ossb_error_setx(err, OSSB_EXIT_USAGE, -ENOTSUP, "RUN --mount=type=ssh is not supported yet");
        if (mt->type == OSSB_MOUNT_SECRET)
                return prepare_secret(p, mt, err);
        char *t = NULL;
        int r = abs_target(p->cwd, mt->target ? mt->target : "", &t, err);
        const char *target = r >= 0 ? keep(p->m, t) : NULL;
        if (r < 0)
                return r;
        if (!target)
                return oom(err);
        switch (mt->type) {
        case OSSB_MOUNT_BIND:
                return prepare_bind(p, mt, target, err);
        case OSSB_MOUNT_CACHE:
                return prepare_cache(p, mt, target, err);
        default:
                return add_exec(p->m, (struct ossb_exec_mount) { .target = target, .tmpfs = true, .readonly = mt->readonly,
                                                                 .size = (uint64_t) mt->size }, err);
        }
}

struct expand_ctx {
        struct build *b;
        char **env;
};

static int expand_value(void *userdata, const char *word, char **ret, struct ossb_error **err)
{
        struct expand_ctx *x = userdata;
        return ossb_expand(x->b, x->env, word, ret, err);
}

int ossb_run_mounts_prepare(struct build *b, struct stage_state *s, const struct ossb_df_inst *inst, const char *cwd,
                            const char *dir, struct ossb_run_mounts **ret, struct ossb_error **err)
{
        struct ossb_run_mounts *m = calloc(1, sizeof(*m));
        struct expand_ctx x = { .b = b, .env = ossb_stage_env(s) };
        struct prep p = { .b = b, .s = s, .m = m, .cwd = cwd };
        int r = m && x.env && (m->dir = strdup(dir)) ? 0 : oom(err);
        if (r >= 0 && mkdir(dir, 0700) < 0)
                r = ossb_error_set(err, -errno, "cannot create `%s`: %m", dir);
        for (size_t i = 0; r >= 0 && inst->run_mounts && inst->run_mounts[i]; i++) {
                const char *spec = inst->run_mounts[i];
                struct ossb_run_mount mt;
                r = ossb_run_mount_parse(spec, expand_value, &x, &mt, err);
                if (r >= 0) {
                        r = prepare_one(&p, &mt, err);
                        ossb_run_mount_clear(&mt);
                }
                if (r < 0)
                        ossb_error_wrap(err, "--mount=%s", spec);
        }
        ossb_strv_free(x.env);
        if (r < 0) {
                ossb_run_mounts_free(m);
                return r;
        }
        *ret = m;
        return 0;
}
