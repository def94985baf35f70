/* tests/unit/test-fusefs-util.h - what the fuse/ unit tests share: temporary layer trees in
 * overlay format, mounting fusefs (and kernel overlayfs) over them, reading files back, the
 * journal as text, a canonical dump of an upper directory for comparisons. */
#ifndef OSSB_TESTS_TEST_FUSEFS_UTIL_H
#define OSSB_TESTS_TEST_FUSEFS_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "fuse/fusefs.h"

#define FX_MAX_LOWERS 4

struct fx {
        char *root;                   /* the temporary directory holding everything */
        char *lower[FX_MAX_LOWERS];   /* root/l0 (top) ... */
        size_t n_lowers;
        char *upper, *work, *mnt;
        bool userxattr;
        struct ossb_fusefs *fs;
        char *journal;                /* after fx_unmount: "FLAGS path\n" lines */
        char *error;                  /* after fx_unmount: the unmount error, if any */
};

/* Whether fusefs can be mounted here (root, /dev/fuse, mount(2)); *ret_why when not. */
bool fx_can_mount(const char **ret_why);

/* A fixture with n lower directories (empty), an upper, a work dir and a mount point. */
struct fx *fx_new(size_t n_lowers, bool userxattr);
int fx_mount(struct fx *fx);
/* Unmount, keep the journal text and any error; idempotent. */
int fx_unmount(struct fx *fx);
void fx_free(struct fx *fx);

/* Paths: fx_p(fx, "mnt", "a/b") -> "<root>/mnt/a/b" (a static ring of buffers). */
const char *fx_p(struct fx *fx, const char *area, const char *rel);

/* File helpers (abort-free: return -errno). */
int fx_write(const char *path, const char *content);
/* The whole file as a string (caller frees), or NULL. */
char *fx_read(const char *path);
int fx_mkdir_p(const char *path);
int fx_whiteout(const char *path);
int fx_opaque(const char *path, bool userxattr);
int fx_setxattr(const char *path, const char *name, const char *value);
/* The value of an xattr (caller frees), or NULL. */
char *fx_getxattr(const char *path, const char *name);
bool fx_exists(const char *path);
/* The sorted names of a directory joined with ',' (caller frees). */
char *fx_list(const char *path);

/* A canonical description of a tree (one line per entry, sorted: type, mode, owner, size,
 * rdev, nlink for files, content digest, link target, xattrs), leaving out xattrs whose name
 * starts with one of `skip_xattr_prefixes` (NULL-terminated, may be NULL). */
char *fx_dump_tree(const char *dir, const char *const *skip_xattr_prefixes);

/* Mount kernel overlayfs with ossb's options (redirect_dir, index, metacopy off). */
int fx_kernel_mount(struct fx *fx);
int fx_kernel_unmount(struct fx *fx);

#endif
