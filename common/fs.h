/* common/fs.h - file-system helpers: atomic writes, recursive mkdir/remove, whole-file reads,
 * fd-to-fd copies, and path resolution confined to a root directory.
 *
 * Owns: nothing persistent.  All fds are O_CLOEXEC.  Functions return 0 or -errno and, where
 * they take `err`, set a message naming the path.
 */
#ifndef OSSB_COMMON_FS_H
#define OSSB_COMMON_FS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "common/error.h"

/* Write data to path atomically: a temp file beside it, fsync, rename, fsync of the dir. */
int ossb_write_file_atomic(const char *path, const void *data, size_t len, mode_t mode, struct ossb_error **err);

/* Read a whole file (at most max bytes; -EFBIG beyond).  *ret is NUL-terminated; the caller
 * owns it. */
int ossb_read_file(const char *path, size_t max, char **ret, size_t *ret_len, struct ossb_error **err);
int ossb_read_fd(int fd, size_t max, char **ret, size_t *ret_len);

/* mkdir -p with the given mode for created directories. */
int ossb_mkdir_p(const char *path, mode_t mode);
/* rm -rf; a missing path is success.  Never follows symlinks. */
int ossb_rm_rf(const char *path);
int ossb_rm_rf_at(int dirfd, const char *name);

/* Write all of data to fd (retrying short writes and EINTR). */
int ossb_write_all(int fd, const void *data, size_t len);

/* Copy all bytes from in to out (copy_file_range, then read/write). */
int ossb_copy_fd(int in, int out);

/* fsync a directory by path. */
int ossb_fsync_dir(const char *path);

/* Open `path` (relative or absolute, interpreted inside root) beneath the directory fd
 * `rootfd`: symlinks and ".." are resolved as if rootfd were "/" (openat2 with
 * RESOLVE_IN_ROOT|RESOLVE_NO_MAGICLINKS, with a userspace fallback where openat2 is
 * missing).  flags as for openat (O_CLOEXEC is added). */
int ossb_open_in_root(int rootfd, const char *path, int flags, mode_t mode);

/* Lexically clean a slash path like Go's path.Clean ("a/../b/./" -> "b", "" -> ".").
 * Returns a newly allocated string or NULL on ENOMEM. */
char *ossb_path_clean(const char *path);
/* Join two paths with one '/' (b may start with '/'); newly allocated. */
char *ossb_path_join(const char *a, const char *b);

/* Create a unique temp name "<path>.tmp-XXXXXX" (not created); newly allocated. */
char *ossb_tmp_name(const char *path);

/* Disable openat2 (tests of the fallback). */
void ossb_fs_disable_openat2(bool disable);

#endif
