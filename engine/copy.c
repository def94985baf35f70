/* engine/copy.c - see copy.h. */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fs.h"
#include "common/interrupt.h"
#include "common/strbuf.h"
#include "engine/copy.h"
#include "engine/extract.h"

#define MAX_SOURCES 100000

struct copy_ctx {
        const struct ossb_tree *dst;
        const struct ossb_copy_req *req;
        struct ossb_changes *changes;
        struct hardlink {
                dev_t dev;
                ino_t ino;
                char *dst_rel;
        } *links;
        size_t n_links;
};

/* The parent of a relative path ("" for a top-level name); NULL on ENOMEM. */
static char *rel_dirname(const char *rel)
{
        char *d = strdup(rel);
        if (!d)
                return NULL;
        char *slash = strrchr(d, '/');
        if (slash)
                *slash = '\0';
        else
                d[0] = '\0';
        return d;
}

static bool has_glob(const char *s)
{
        return strpbrk(s, "*?[") != NULL;
}

static int source_error(struct ossb_error **err, int code, const struct ossb_copy_req *req, const char *src,
                        const char *why)
{
        return ossb_error_setx(err, OSSB_EXIT_BUILD, code, "%s source `%s`: %s", req->what, src, why);
}

static bool is_ignored(const struct ossb_copy_req *req, const char *rel)
{
        return req->ignore && *rel && ossb_dockerignore_excluded(req->ignore, rel);
}

/* --- source selection -------------------------------------------------------------------- */

/* Follow a named source that is a symlink, refusing targets outside the source tree. */
static int follow_source_link(const struct ossb_copy_req *req, const char *written, char **rel,
                              struct ossb_error **err)
{
        for (int depth = 0; depth < 40; depth++) {
                _cleanup_free_ char *abs = ossb_tree_abs(req->src, *rel);
                struct stat st;
                char target[PATH_MAX];
                if (!abs)
                        return ossb_error_set(err, -ENOMEM, "out of memory");
                if (lstat(abs, &st) < 0)
                        return source_error(err, -errno, req, written,
                                            req->src_is_context ? "not found in the build context" : "not found");
                if (!S_ISLNK(st.st_mode))
                        return 0;
                ssize_t n = readlink(abs, target, sizeof(target) - 1);
                if (n < 0)
                        return source_error(err, -errno, req, written, "cannot read symbolic link");
                target[n] = '\0';
                _cleanup_free_ char *dir = rel_dirname(*rel);
                if (!dir)
                        return ossb_error_set(err, -ENOMEM, "out of memory");
                _cleanup_free_ char *joined = NULL;
                if (asprintf(&joined, "%s%s%s", dir, *dir ? "/" : "", target) < 0)
                        return ossb_error_set(err, -ENOMEM, "out of memory");
                char *clean = ossb_path_clean(joined);
                if (!clean)
                        return ossb_error_set(err, -ENOMEM, "out of memory");
                if (req->src_is_context &&
                    (target[0] == '/' || streq(clean, "..") || strncmp(clean, "../", 3) == 0)) {
                        free(clean);
                        return ossb_error_setx(err, OSSB_EXIT_BUILD, -EXDEV,
                                               "%s source `%s` is a symbolic link to `%s`, outside the build context",
                                               req->what, written, target);
                }
                /* inside a stage an absolute link means the stage's root */
                free(*rel);
                *rel = NULL;
                int r = ossb_tree_resolve(req->src, clean, false, rel, err);
                free(clean);
                if (r < 0)
                        return r;
        }
        return source_error(err, -ELOOP, req, written, "too many levels of symbolic links");
}

/* Expand one glob component by component; matches appended to *out (canonical rel paths). */
static int glob_expand(const struct ossb_copy_req *req, const char *prefix, const char *rest, char ***out,
                       struct ossb_error **err)
{
        if (!*rest)
                return ossb_strv_push(out, prefix) < 0 ? ossb_error_set(err, -ENOMEM, "out of memory") : 0;

        const char *slash = strchr(rest, '/');
        _cleanup_free_ char *comp = slash ? strndup(rest, (size_t) (slash - rest)) : strdup(rest);
        const char *next = slash ? slash + 1 : "";
        if (!comp)
                return ossb_error_set(err, -ENOMEM, "out of memory");

        if (!has_glob(comp)) {
                _cleanup_free_ char *p = NULL;
                if (asprintf(&p, "%s%s%s", prefix, *prefix ? "/" : "", comp) < 0)
                        return ossb_error_set(err, -ENOMEM, "out of memory");
                _cleanup_free_ char *abs = ossb_tree_abs(req->src, p);
                struct stat st;
                if (!abs)
                        return ossb_error_set(err, -ENOMEM, "out of memory");
                if (lstat(abs, &st) < 0 || is_ignored(req, p))
                        return 0;
                return glob_expand(req, p, next, out, err);
        }

        _cleanup_free_ char *dabs = ossb_tree_abs(req->src, prefix);
        if (!dabs)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        DIR *d = opendir(dabs);
        if (!d)
                return 0;
        struct dirent *de;
        int r = 0;
        char **names = NULL;
        while ((de = readdir(d)))
                if (!streq(de->d_name, ".") && !streq(de->d_name, "..") && ossb_strv_push(&names, de->d_name) < 0) {
                        r = -ENOMEM;
                        break;
                }
        closedir(d);
        for (size_t i = 0; r >= 0 && names && names[i]; i++) {
                int m = ossb_path_match(comp, names[i]);
                if (m < 0) {
                        r = ossb_error_setx(err, OSSB_EXIT_USAGE, -EINVAL, "%s: bad pattern `%s`", req->what, comp);
                        break;
                }
                if (!m)
                        continue;
                _cleanup_free_ char *p = NULL;
                if (asprintf(&p, "%s%s%s", prefix, *prefix ? "/" : "", names[i]) < 0) {
                        r = -ENOMEM;
                        break;
                }
                if (is_ignored(req, p))
                        continue;
                r = glob_expand(req, p, next, out, err);
                if (ossb_strv_length(*out) > MAX_SOURCES)
                        r = ossb_error_setx(err, OSSB_EXIT_BUILD, -E2BIG, "%s: too many source files", req->what);
        }
        ossb_strv_free(names);
        if (r == -ENOMEM)
                return ossb_error_set(err, r, "out of memory");
        return r;
}

static int cmp_str(const void *a, const void *b)
{
        return strcmp(*(char *const *) a, *(char *const *) b);
}

/* One written source -> canonical relative paths in the source tree. */
static int select_source(const struct ossb_copy_req *req, const char *written, char ***out, struct ossb_error **err)
{
        _cleanup_free_ char *clean = ossb_path_clean(written);
        if (!clean)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        if (req->src_is_context && (streq(clean, "..") || strncmp(clean, "../", 3) == 0))
                return ossb_error_setx(err, OSSB_EXIT_BUILD, -EXDEV, "%s source `%s` is outside the build context",
                                       req->what, written);
        const char *rel = clean;
        while (*rel == '/')
                rel++;
        if (streq(rel, "."))
                rel = "";

        if (has_glob(rel)) {
                char **found = NULL;
                int r = glob_expand(req, "", rel, &found, err);
                if (r < 0) {
                        ossb_strv_free(found);
                        return r;
                }
                if (!found)
                        return source_error(err, -ENOENT, req, written, "no files match the pattern");
                qsort(found, ossb_strv_length(found), sizeof(char *), cmp_str);
                for (size_t i = 0; found[i] && r >= 0; i++) {
                        _cleanup_free_ char *p = strdup(found[i]);
                        r = p ? follow_source_link(req, written, &p, err) : -ENOMEM;
                        if (r >= 0 && ossb_strv_consume(out, TAKE_PTR(p)) < 0)
                                r = ossb_error_set(err, -ENOMEM, "out of memory");
                }
                ossb_strv_free(found);
                return r;
        }

        _cleanup_free_ char *canon = NULL;
        int r = ossb_tree_resolve(req->src, rel, false, &canon, err);
        if (r < 0)
                return r;
        if (is_ignored(req, canon))
                return source_error(err, -ENOENT, req, written, "excluded by .dockerignore");
        r = follow_source_link(req, written, &canon, err);
        if (r < 0)
                return r;
        return ossb_strv_consume(out, TAKE_PTR(canon)) < 0 ? ossb_error_set(err, -ENOMEM, "out of memory") : 0;
}

/* --- writing ---------------------------------------------------------------------------- */

static void owner_for(const struct copy_ctx *cc, const struct stat *st, uid_t *uid, gid_t *gid)
{
        const struct ossb_copy_req *req = cc->req;
        *uid = req->src_is_context ? 0 : st->st_uid;
        *gid = req->src_is_context ? 0 : st->st_gid;
        if (req->uid >= 0)
                *uid = (uid_t) req->uid;
        if (req->gid >= 0)
                *gid = (gid_t) req->gid;
}

static int apply_meta(const char *abs, const struct stat *st, uid_t uid, gid_t gid, mode_t mode)
{
        if (lchown(abs, uid, gid) < 0 && errno != EPERM && errno != EINVAL)
                return -errno;
        if (!S_ISLNK(st->st_mode) && chmod(abs, mode) < 0)
                return -errno;
        struct timespec ts[2] = { st->st_mtim, st->st_mtim };
        return utimensat(AT_FDCWD, abs, ts, AT_SYMLINK_NOFOLLOW) < 0 ? -errno : 0;
}

/* Make room for a new entry of type `mode` at abs: an existing non-directory is removed; an
 * existing directory stays when a directory goes there and is an error otherwise. */
static int make_room(const char *abs, mode_t mode, bool *ret_exists_dir)
{
        struct stat st;
        *ret_exists_dir = false;
        if (lstat(abs, &st) < 0)
                return errno == ENOENT ? 0 : -errno;
        if (S_ISDIR(st.st_mode)) {
                if (S_ISDIR(mode)) {
                        *ret_exists_dir = true;
                        return 0;
                }
                return -EISDIR;
        }
        return unlink(abs) < 0 ? -errno : 0;
}

static int copy_node(struct copy_ctx *cc, const char *src_rel, const char *excl_rel, const char *dst_rel,
                     struct ossb_error **err);

static int copy_dir_children(struct copy_ctx *cc, const char *src_rel, const char *excl_rel, const char *dst_rel,
                             struct ossb_error **err)
{
        _cleanup_free_ char *sabs = ossb_tree_abs(cc->req->src, src_rel);
        if (!sabs)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        DIR *d = opendir(sabs);
        if (!d)
                return ossb_error_setx(err, OSSB_EXIT_BUILD, -errno, "%s: cannot read directory `%s`: %m",
                                       cc->req->what, sabs);
        char **names = NULL;
        struct dirent *de;
        int r = 0;
        while ((de = readdir(d)))
                if (!streq(de->d_name, ".") && !streq(de->d_name, "..") && ossb_strv_push(&names, de->d_name) < 0)
                        r = -ENOMEM;
        closedir(d);
        if (r < 0) {
                ossb_strv_free(names);
                return ossb_error_set(err, r, "out of memory");
        }
        if (names)
                qsort(names, ossb_strv_length(names), sizeof(char *), cmp_str);
        for (size_t i = 0; names && names[i] && r >= 0; i++) {
                _cleanup_free_ char *s = NULL, *x = NULL, *t = NULL;
                if (asprintf(&s, "%s%s%s", src_rel, *src_rel ? "/" : "", names[i]) < 0 ||
                    asprintf(&x, "%s%s%s", excl_rel, *excl_rel ? "/" : "", names[i]) < 0 ||
                    asprintf(&t, "%s%s%s", dst_rel, *dst_rel ? "/" : "", names[i]) < 0) {
                        r = ossb_error_set(err, -ENOMEM, "out of memory");
                        break;
                }
                r = copy_node(cc, s, x, t, err);
        }
        ossb_strv_free(names);
        return r;
}

static int copy_regular(struct copy_ctx *cc, const char *sabs, const char *dabs, const struct stat *st)
{
        for (size_t i = 0; st->st_nlink > 1 && i < cc->n_links; i++)
                if (cc->links[i].dev == st->st_dev && cc->links[i].ino == st->st_ino) {
                        _cleanup_free_ char *first = ossb_tree_abs(cc->dst, cc->links[i].dst_rel);
                        if (!first)
                                return -ENOMEM;
                        return link(first, dabs) < 0 ? -errno : 1;
                }
        _cleanup_close_ int in = open(sabs, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (in < 0)
                return -errno;
        _cleanup_close_ int out = open(dabs, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (out < 0)
                return -errno;
        return ossb_copy_fd(in, out);
}

static int remember_link(struct copy_ctx *cc, const struct stat *st, const char *dst_rel)
{
        if (!S_ISREG(st->st_mode) || st->st_nlink < 2)
                return 0;
        struct hardlink *n = realloc(cc->links, (cc->n_links + 1) * sizeof(*n));
        if (!n)
                return -ENOMEM;
        cc->links = n;
        n[cc->n_links] = (struct hardlink) { .dev = st->st_dev, .ino = st->st_ino, .dst_rel = strdup(dst_rel) };
        if (!n[cc->n_links].dst_rel)
                return -ENOMEM;
        cc->n_links++;
        return 0;
}

static int copy_node(struct copy_ctx *cc, const char *src_rel, const char *excl_rel, const char *dst_rel,
                     struct ossb_error **err)
{
        const struct ossb_copy_req *req = cc->req;
        _cleanup_free_ char *sabs = ossb_tree_abs(req->src, src_rel);
        _cleanup_free_ char *dabs = ossb_tree_abs(cc->dst, dst_rel);
        struct stat st;
        uid_t uid;
        gid_t gid;
        bool exists_dir;
        int r;

        if (!sabs || !dabs)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        if (ossb_interrupted())
                return ossb_error_setx(err, OSSB_EXIT_INTERNAL, -EINTR, "interrupted by signal %d", ossb_interrupted());
        bool excluded = (req->excludes && *excl_rel && ossb_dockerignore_excluded(req->excludes, excl_rel)) ||
                        is_ignored(req, src_rel);
        if (lstat(sabs, &st) < 0)
                return ossb_error_setx(err, OSSB_EXIT_BUILD, -errno, "%s: cannot stat `%s`: %m", req->what, sabs);
        if (excluded && !(S_ISDIR(st.st_mode) &&
                          ((req->ignore && ossb_dockerignore_must_descend(req->ignore, src_rel)) ||
                           (req->excludes && ossb_dockerignore_must_descend(req->excludes, excl_rel)))))
                return 0;
        owner_for(cc, &st, &uid, &gid);
        mode_t mode = ossb_chmod_apply(&req->chmod, st.st_mode & 07777, S_ISDIR(st.st_mode));

        r = make_room(dabs, st.st_mode, &exists_dir);
        if (r == -EISDIR)
                return ossb_error_setx(err, OSSB_EXIT_BUILD, r, "%s: cannot overwrite directory `/%s` with a non-directory",
                                       req->what, dst_rel);
        if (r < 0)
                return ossb_error_set(err, r, "%s: cannot replace `%s`: %s", req->what, dabs, strerror(-r));

        if (S_ISDIR(st.st_mode)) {
                if (!exists_dir && mkdir(dabs, 0700) < 0)
                        return ossb_error_set(err, -errno, "%s: cannot create `%s`: %m", req->what, dabs);
                r = copy_dir_children(cc, src_rel, excl_rel, dst_rel, err);
                if (r < 0)
                        return r;
        } else if (S_ISREG(st.st_mode)) {
                r = copy_regular(cc, sabs, dabs, &st);
                if (r == 1) { /* hard link to a file copied earlier */
                        return ossb_changes_add(cc->changes, dst_rel) < 0 ? ossb_error_set(err, -ENOMEM, "out of memory")
                                                                           : 0;
                }
                if (r >= 0)
                        r = remember_link(cc, &st, dst_rel);
        } else if (S_ISLNK(st.st_mode)) {
                char target[PATH_MAX];
                ssize_t n = readlink(sabs, target, sizeof(target) - 1);
                r = n < 0 ? -errno : 0;
                if (r >= 0) {
                        target[n] = '\0';
                        r = symlink(target, dabs) < 0 ? -errno : 0;
                }
        } else if (!req->src_is_context) {
                r = mknod(dabs, st.st_mode, st.st_rdev) < 0 ? -errno : 0;
        } else {
                return ossb_error_setx(err, OSSB_EXIT_BUILD, -EINVAL,
                                       "%s: `%s` is a special file (device, fifo or socket); the build context may only hold files, directories and symbolic links",
                                       req->what, src_rel);
        }
        if (r >= 0 && !req->src_is_context)
                r = ossb_copy_xattrs(sabs, dabs);
        if (r >= 0)
                r = apply_meta(dabs, &st, uid, gid, mode);
        if (r < 0)
                return ossb_error_set(err, r, "%s: cannot copy `%s` to `%s`: %s", req->what, sabs, dabs, strerror(-r));
        return ossb_changes_add(cc->changes, dst_rel) < 0 ? ossb_error_set(err, -ENOMEM, "out of memory") : 0;
}

/* --- destination rules ------------------------------------------------------------------- */

static const char *base_name(const char *rel)
{
        const char *s = strrchr(rel, '/');
        return s ? s + 1 : rel;
}

/* --parents: the part of the written source that is kept under the destination: everything
 * after a "/./" pivot, else the whole cleaned source path. */
static int parents_suffix(const char *written, const char *matched, char **ret)
{
        const char *pivot = strstr(written, "/./");
        if (strncmp(written, "./", 2) == 0 && !pivot)
                pivot = NULL;
        _cleanup_free_ char *clean_pivot = NULL;
        if (pivot) {
                _cleanup_free_ char *head = strndup(written, (size_t) (pivot - written));
                if (!head)
                        return -ENOMEM;
                clean_pivot = ossb_path_clean(head);
                if (!clean_pivot)
                        return -ENOMEM;
                const char *h = clean_pivot;
                while (*h == '/')
                        h++;
                size_t hl = strlen(h);
                if (strncmp(matched, h, hl) == 0 && matched[hl] == '/') {
                        *ret = strdup(matched + hl + 1);
                        return *ret ? 0 : -ENOMEM;
                }
        }
        *ret = strdup(matched);
        return *ret ? 0 : -ENOMEM;
}

static int is_dir_at(const struct ossb_tree *t, const char *rel, bool *ret)
{
        _cleanup_free_ char *abs = ossb_tree_abs(t, rel);
        struct stat st;
        if (!abs)
                return -ENOMEM;
        *ret = stat(abs, &st) == 0 && S_ISDIR(st.st_mode);
        return 0;
}

static int copy_one_source(struct copy_ctx *cc, const char *written, const char *matched, const char *dest_rel,
                           bool dest_dir, struct ossb_error **err)
{
        const struct ossb_copy_req *req = cc->req;
        bool src_dir;
        int r = is_dir_at(req->src, matched, &src_dir);
        if (r < 0)
                return ossb_error_set(err, r, "out of memory");

        _cleanup_free_ char *target = NULL;
        if (req->parents && *matched) {
                _cleanup_free_ char *suffix = NULL;
                if (parents_suffix(written, matched, &suffix) < 0)
                        return ossb_error_set(err, -ENOMEM, "out of memory");
                r = asprintf(&target, "%s%s%s", dest_rel, *dest_rel ? "/" : "", suffix);
        } else if (src_dir) {
                target = strdup(dest_rel);
                r = target ? 0 : -1;
        } else if (dest_dir) {
                r = asprintf(&target, "%s%s%s", dest_rel, *dest_rel ? "/" : "", base_name(matched));
        } else {
                target = strdup(dest_rel);
                r = target ? 0 : -1;
        }
        if (r < 0)
                return ossb_error_set(err, -ENOMEM, "out of memory");

        /* parents of the target: created 0755, owned by the --chown user */
        _cleanup_free_ char *parent = rel_dirname(target);
        if (!parent)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        uid_t puid = req->uid >= 0 ? (uid_t) req->uid : 0;
        gid_t pgid = req->gid >= 0 ? (gid_t) req->gid : 0;
        if (src_dir && !req->parents)
                r = ossb_tree_mkdir_p(cc->dst, target, puid, pgid, req->now, cc->changes, err);
        else
                r = ossb_tree_mkdir_p(cc->dst, parent, puid, pgid, req->now, cc->changes, err);
        if (r < 0)
                return r;
        _cleanup_free_ char *canon = NULL;
        r = ossb_tree_resolve(cc->dst, target, src_dir, &canon, err);
        if (r < 0)
                return r;

        if (req->add && !src_dir) {
                _cleanup_free_ char *sabs = ossb_tree_abs(req->src, matched);
                if (!sabs)
                        return ossb_error_set(err, -ENOMEM, "out of memory");
                if (ossb_archive_detect(sabs) > 0) {
                        /* a local archive is extracted into the destination directory */
                        _cleanup_free_ char *into = NULL;
                        r = ossb_tree_resolve(cc->dst, dest_rel, true, &into, err);
                        if (r < 0)
                                return r;
                        r = ossb_tree_mkdir_p(cc->dst, into, puid, pgid, req->now, cc->changes, err);
                        if (r < 0)
                                return r;
                        /* as BuildKit: --chown applies to the destination directory, the
                         * extracted entries keep the archive's owners */
                        return ossb_archive_extract(cc->dst, into, sabs, -1, -1, cc->changes, err);
                }
        }
        if (src_dir && !req->parents)
                return copy_dir_children(cc, matched, "", canon, err);
        return copy_node(cc, matched, base_name(matched), canon, err);
}

int ossb_copy_run(const struct ossb_tree *dst, const struct ossb_copy_req *req, struct ossb_changes *c,
                  struct ossb_error **err)
{
        struct copy_ctx cc = { .dst = dst, .req = req, .changes = c };
        size_t n_written = ossb_strv_length(req->sources);
        bool wildcard = false;
        int r = 0;

        for (size_t i = 0; i < n_written; i++)
                wildcard |= has_glob(req->sources[i]);

        _cleanup_free_ char *dest_rel = NULL;
        r = ossb_tree_resolve(dst, req->dest, true, &dest_rel, err);
        if (r < 0)
                return r;
        bool dest_exists_dir = false;
        if (is_dir_at(dst, dest_rel, &dest_exists_dir) < 0)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        bool dest_dir = req->dest_is_dir || n_written > 1 || wildcard || dest_exists_dir || !*dest_rel;

        for (size_t i = 0; i < n_written && r >= 0; i++) {
                char **matched = NULL;
                r = select_source(req, req->sources[i], &matched, err);
                for (size_t k = 0; r >= 0 && matched && matched[k]; k++)
                        r = copy_one_source(&cc, req->sources[i], matched[k], dest_rel, dest_dir, err);
                ossb_strv_free(matched);
        }
        for (size_t i = 0; i < cc.n_links; i++)
                free(cc.links[i].dst_rel);
        free(cc.links);
        return r;
}

int ossb_copy_write_file(const struct ossb_tree *dst, const char *dest, const void *data, size_t len, mode_t mode,
                         uid_t uid, gid_t gid, int64_t mtime, int64_t dir_mtime, struct ossb_changes *c,
                         struct ossb_error **err)
{
        _cleanup_free_ char *canon = NULL, *parent = NULL;
        int r = ossb_tree_resolve(dst, dest, true, &canon, err);
        if (r < 0)
                return r;
        parent = rel_dirname(canon);
        if (!parent)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        r = ossb_tree_mkdir_p(dst, parent, uid, gid, dir_mtime, c, err);
        if (r < 0)
                return r;
        _cleanup_free_ char *abs = ossb_tree_abs(dst, canon);
        bool exists_dir;
        if (!abs)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        r = make_room(abs, S_IFREG, &exists_dir);
        if (r < 0)
                return ossb_error_setx(err, OSSB_EXIT_BUILD, r, "cannot write `/%s`: %s", canon, strerror(-r));
        _cleanup_close_ int fd = open(abs, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0)
                return ossb_error_set(err, -errno, "cannot create `%s`: %m", abs);
        int w = ossb_write_all(fd, data, len);
        if (w < 0)
                return ossb_error_set(err, w, "cannot write `%s`: %s", abs, strerror(-w));
        if ((fchown(fd, uid, gid) < 0 && errno != EPERM && errno != EINVAL) || fchmod(fd, mode) < 0)
                return ossb_error_set(err, -errno, "cannot set owner/mode of `%s`: %m", abs);
        struct timespec ts[2] = { { .tv_sec = mtime }, { .tv_sec = mtime } };
        if (futimens(fd, ts) < 0)
                return ossb_error_set(err, -errno, "cannot set times of `%s`: %m", abs);
        return ossb_changes_add(c, canon) < 0 ? ossb_error_set(err, -ENOMEM, "out of memory") : 0;
}

/* --- --chown / --chmod ------------------------------------------------------------------ */

static bool parse_id(const char *s, int64_t *ret)
{
        if (!*s)
                return false;
        char *end = NULL;
        errno = 0;
        unsigned long long v = strtoull(s, &end, 10);
        if (errno || *end || v > 0xfffffffeULL || s[0] == '-' || s[0] == '+')
                return false;
        *ret = (int64_t) v;
        return true;
}

/* Look `name` up in an /etc/passwd- or /etc/group-style file inside the tree: field 3 is the
 * id; for passwd, field 4 (the primary group) goes to *ret_gid. */
static int lookup_db(const struct ossb_tree *root, const char *file, const char *name, int64_t *ret_id,
                     int64_t *ret_gid, struct ossb_error **err)
{
        _cleanup_free_ char *rel = NULL, *abs = NULL, *data = NULL;
        int r = ossb_tree_resolve(root, file, true, &rel, err);
        if (r < 0)
                return r;
        abs = ossb_tree_abs(root, rel);
        if (!abs)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        if (ossb_read_file(abs, 16u << 20, &data, NULL, NULL) < 0)
                return -ENOENT;
        for (char *line = data; line && *line;) {
                char *nl = strchr(line, '\n');
                if (nl)
                        *nl = '\0';
                char *f[5] = { NULL };
                char *p = line;
                for (int i = 0; i < 5 && p; i++) {
                        f[i] = p;
                        p = strchr(p, ':');
                        if (p)
                                *p++ = '\0';
                }
                if (f[0] && f[2] && streq(f[0], name) && parse_id(f[2], ret_id)) {
                        if (ret_gid && !(f[3] && parse_id(f[3], ret_gid)))
                                *ret_gid = -1;
                        return 0;
                }
                line = nl ? nl + 1 : NULL;
        }
        return -ENOENT;
}

int ossb_chown_parse(const struct ossb_tree *root, const char *spec, uid_t *ret_uid, gid_t *ret_gid,
                     struct ossb_error **err)
{
        _cleanup_free_ char *user = strdup(spec);
        if (!user)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        char *group = strchr(user, ':');
        if (group)
                *group++ = '\0';
        if (!*user)
                return ossb_error_setx(err, OSSB_EXIT_USAGE, -EINVAL, "invalid --chown value `%s`: missing user", spec);
        int64_t uid = -1, gid = -1, primary = -1;
        if (!parse_id(user, &uid)) {
                int r = lookup_db(root, "/etc/passwd", user, &uid, &primary, err);
                if (r == -ENOENT)
                        return ossb_error_setx(err, OSSB_EXIT_BUILD, r,
                                               "--chown=%s: unable to find user `%s` in the image's /etc/passwd", spec, user);
                if (r < 0)
                        return r;
        } else {
                /* a numeric user keeps its primary group from /etc/passwd when the name exists */
                primary = uid;
        }
        if (group && *group) {
                if (!parse_id(group, &gid)) {
                        int r = lookup_db(root, "/etc/group", group, &gid, NULL, err);
                        if (r == -ENOENT)
                                return ossb_error_setx(err, OSSB_EXIT_BUILD, r,
                                                       "--chown=%s: unable to find group `%s` in the image's /etc/group",
                                                       spec, group);
                        if (r < 0)
                                return r;
                }
        } else {
                gid = primary >= 0 ? primary : uid;
        }
        *ret_uid = (uid_t) uid;
        *ret_gid = (gid_t) gid;
        return 0;
}

/* chmod(1) symbolic clauses: [ugoa]*([-+=]([rwxXst]*|[ugo]))+ separated by commas */
static int symbolic_apply(const char *spec, mode_t mode, bool is_dir, mode_t *ret)
{
        const char *p = spec;
        for (;;) {
                mode_t who = 0;
                for (; *p && strchr("ugoa", *p); p++)
                        who |= *p == 'u' ? 04700 : *p == 'g' ? 02070 : *p == 'o' ? 01007 : 07777;
                if (!who)
                        who = 07777;
                if (!*p || !strchr("+-=", *p))
                        return -EINVAL;
                while (*p && strchr("+-=", *p)) {
                        char op = *p++;
                        mode_t bits = 0;
                        if (*p && strchr("ugo", *p)) {
                                mode_t src = *p == 'u' ? (mode >> 6) & 7 : *p == 'g' ? (mode >> 3) & 7 : mode & 7;
                                bits = (src << 6) | (src << 3) | src;
                                p++;
                        } else {
                                for (; *p && strchr("rwxXst", *p); p++)
                                        bits |= *p == 'r' ? 0444 : *p == 'w' ? 0222 : *p == 'x' ? 0111 :
                                                *p == 'X' ? ((is_dir || (mode & 0111)) ? 0111 : 0) :
                                                *p == 's' ? 06000 : 01000;
                        }
                        bits &= who;
                        if (op == '+')
                                mode |= bits;
                        else if (op == '-')
                                mode &= ~bits;
                        else
                                mode = (mode & ~(who & 07777)) | bits;
                }
                if (!*p)
                        break;
                if (*p++ != ',')
                        return -EINVAL;
        }
        *ret = mode & 07777;
        return 0;
}

mode_t ossb_chmod_apply(const struct ossb_chmod *c, mode_t mode, bool is_dir)
{
        mode_t out = mode;
        if (!c->set)
                return mode;
        if (!c->symbolic)
                return c->octal;
        return symbolic_apply(c->spec, mode, is_dir, &out) < 0 ? mode : out;
}

int ossb_chmod_parse(const char *spec, struct ossb_chmod *ret, struct ossb_error **err)
{
        char *end = NULL;
        mode_t probe;
        struct ossb_chmod c = { .set = true };
        if (!*spec)
                return ossb_error_setx(err, OSSB_EXIT_USAGE, -EINVAL, "invalid --chmod value: empty");
        if (spec[0] >= '0' && spec[0] <= '9') {
                errno = 0;
                unsigned long v = strtoul(spec, &end, 8);
                if (errno || *end || v > 07777)
                        return ossb_error_setx(err, OSSB_EXIT_USAGE, -EINVAL,
                                               "invalid --chmod value `%s`: not an octal mode up to 7777", spec);
                c.octal = (mode_t) v;
        } else {
                if (strlen(spec) >= sizeof(c.spec) || symbolic_apply(spec, 0, false, &probe) < 0)
                        return ossb_error_setx(err, OSSB_EXIT_USAGE, -EINVAL,
                                               "invalid --chmod value `%s`: expected an octal mode or chmod(1) symbols such as u+x,go-w",
                                               spec);
                c.symbolic = true;
                snprintf(c.spec, sizeof(c.spec), "%s", spec);
        }
        *ret = c;
        return 0;
}
