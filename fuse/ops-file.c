/* fuse/ops-file.c - open files: open (copy-up first when opened for writing or truncation),
 * read (spliced from the file's fd where the source has one), write, release (the
 * last release of an unlinked file removes its orphan), fsync, fallocate, lseek.  There is no
 * flush handler: libfuse answers ENOSYS once and the kernel stops sending FLUSH on close (the
 * writeback cache still writes dirty pages back on close; locks are the kernel's). 
 *
 * A handle opened on a lower file moves to the upper copy on its next read once the file was
 * copied up (through another handle), so a reader never sees stale data. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "fuse/fusefs-internal.h"

struct fhandle {
        pthread_mutex_t lock;
        struct fnode *n;      /* referenced */
        int ufd;              /* lock: the upper file, or -1; once set, kept until release */
        int lfd;              /* the lower source's fd, or -1 */
        void *lh;             /* the lower source's handle (kept until release) */
        struct ossb_fs_source *src;
        int flags;            /* the upper open flags */
        struct fhandle *prev, *next; /* fs->handles_lock */
};

static void fh_link(struct ossb_fusefs *fs, struct fhandle *h)
{
        pthread_mutex_lock(&fs->handles_lock);
        h->next = fs->fhandles;
        if (h->next)
                h->next->prev = h;
        fs->fhandles = h;
        pthread_mutex_unlock(&fs->handles_lock);
}

static void fh_unlink(struct ossb_fusefs *fs, struct fhandle *h)
{
        pthread_mutex_lock(&fs->handles_lock);
        if (h->prev)
                h->prev->next = h->next;
        else
                fs->fhandles = h->next;
        if (h->next)
                h->next->prev = h->prev;
        pthread_mutex_unlock(&fs->handles_lock);
}

static void fh_close(struct fhandle *h)
{
        if (h->lh)
                h->src->ops->release(h->src->ctx, h->lh);
        if (h->ufd >= 0)
                close(h->ufd);
        pthread_mutex_destroy(&h->lock);
        free(h);
}

void file_handles_free_all(struct ossb_fusefs *fs)
{
        while (fs->fhandles) {
                struct fhandle *h = fs->fhandles;
                fs->fhandles = h->next;
                fh_close(h); /* the nodes go with the mount */
        }
}

static struct fhandle *fh_of(struct fuse_file_info *fi)
{
        return (struct fhandle *) (uintptr_t) fi->fh;
}

int file_handle_fd(struct fuse_file_info *fi)
{
        struct fhandle *h = fh_of(fi);
        if (!h)
                return -1;
        pthread_mutex_lock(&h->lock);
        int fd = h->ufd;
        pthread_mutex_unlock(&h->lock);
        return fd;
}

static struct fhandle *fh_new(struct ossb_fusefs *fs, struct fnode *n)
{
        struct fhandle *h = calloc(1, sizeof(*h));
        if (!h)
                return NULL;
        pthread_mutex_init(&h->lock, NULL);
        h->ufd = h->lfd = -1;
        node_ref(n);
        h->n = n;
        pthread_mutex_lock(&n->lock);
        n->nopen++;
        pthread_mutex_unlock(&n->lock);
        fh_link(fs, h);
        return h;
}

/* The last release of a file unlinked while open removes it from the work directory. */
static void fh_free(struct ossb_fusefs *fs, struct fhandle *h)
{
        struct fnode *n = h->n;
        fh_unlink(fs, h);
        fh_close(h);
        pthread_mutex_lock(&n->lock);
        bool gone = --n->nopen == 0 && n->orphan;
        char *orphan = gone ? TAKE_PTR(n->orphan) : NULL;
        pthread_mutex_unlock(&n->lock);
        if (orphan) {
                struct stat st;
                if (fstatat(fs->work_fd, orphan, &st, AT_SYMLINK_NOFOLLOW) == 0)
                        ino_forget_upper(fs, st.st_ino);
                if (unlinkat(fs->work_fd, orphan, 0) < 0 && errno != ENOENT)
                        fs_fail(fs, -errno, "cannot remove the unlinked file `%s` from the work directory", orphan);
                node_drop_alias(fs, n, fs->workdir, orphan);
                free(orphan);
        }
        node_unref(fs, n);
}

int file_handle_new_upper(struct ossb_fusefs *fs, struct fnode *n, int fd, struct fuse_file_info *fi)
{
        struct fhandle *h = fh_new(fs, n);
        if (!h) {
                close(fd);
                return -ENOMEM;
        }
        h->ufd = fd;
        h->flags = upper_open_flags(fi->flags);
        fi->fh = (uint64_t) (uintptr_t) h;
        fi->keep_cache = 1;
        return 0;
}

void file_handle_drop(struct ossb_fusefs *fs, struct fuse_file_info *fi)
{
        struct fhandle *h = fh_of(fi);
        if (h)
                fh_free(fs, h);
        fi->fh = 0;
}

struct open_req {
        int flags;
        int fd;
};

static int open_at(struct ossb_fusefs *fs, int pfd, const char *name, void *ud)
{
        struct open_req *o = ud;
        o->fd = openat(pfd, name, o->flags);
        return o->fd < 0 ? -errno : 0;
}

static int open_upper(struct ossb_fusefs *fs, struct fnode *n, int flags, int *ret_fd)
{
        struct open_req o = { flags, -1 };
        int r = with_parent(fs, n, open_at, &o);
        if (r == 0)
                *ret_fd = o.fd;
        return r;
}

static int do_open(struct ossb_fusefs *fs, struct fnode *n, struct fuse_file_info *fi, struct fhandle **ret)
{
        bool write = (fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC);
        int r;
        if (S_ISDIR(n->type))
                return -EISDIR;
        if (write) {
                r = copy_up(fs, n, !(fi->flags & O_TRUNC));
                if (r < 0)
                        return r;
                journal_add_node(fs, n, OSSB_FS_CHANGE_MODIFIED);
        }
        struct fhandle *h = fh_new(fs, n);
        if (!h)
                return -ENOMEM;
        h->flags = upper_open_flags(fi->flags);
        if (node_is_upper(n)) {
                /* Linux truncates on O_RDONLY|O_TRUNC too: that needs a writable fd */
                int fl = (fi->flags & O_TRUNC) ? (h->flags & ~O_ACCMODE) | O_RDWR : h->flags;
                r = open_upper(fs, n, fl, &h->ufd);
                if (r == 0 && (fi->flags & O_TRUNC) && ftruncate(h->ufd, 0) < 0)
                        r = -errno;
                if (r == 0 && (fi->flags & O_TRUNC) && req_kill_suidgid())
                        r = node_kill_suidgid(fs, n);
        } else {
                h->src = fs->lowers[n->src];
                r = h->src->ops->open(h->src->ctx, n->lpath, &h->lh);
                if (r == 0)
                        h->lfd = h->src->ops->handle_fd ? h->src->ops->handle_fd(h->src->ctx, h->lh) : -1;
        }
        if (r < 0) {
                fh_free(fs, h);
                return r;
        }
        *ret = h;
        return 0;
}

void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
        struct ossb_fusefs *fs = req_fs(req);
        struct fhandle *h;
        int r = do_open(fs, node_of(fs, ino), fi, &h);
        if (r < 0) {
                reply_change_err(req, fs, r);
                return;
        }
        fi->fh = (uint64_t) (uintptr_t) h;
        fi->keep_cache = 1;
        fi->noflush = 1;
        if (fuse_reply_open(req, fi) != 0)
                fh_free(fs, h);
}

/* Move a lower handle to the upper copy (after a copy-up), or copy up for writing.  The
 * lower handle stays open until release: a read may still be using its fd. */
static int fh_to_upper(struct ossb_fusefs *fs, struct fhandle *h, bool for_write)
{
        if (h->ufd >= 0)
                return 0;
        if (for_write) {
                int r = copy_up(fs, h->n, true);
                if (r < 0)
                        return r;
        } else if (!node_is_upper(h->n))
                return 0;
        int fd = -1;
        int r = open_upper(fs, h->n, (h->flags & ~O_ACCMODE) | (for_write ? O_RDWR : O_RDONLY), &fd);
        if (r < 0)
                return r;
        h->ufd = fd;
        return 0;
}

/* The fd to use: the upper file's, else the lower source's (-1 when it has none: read it
 * through the source).  Both stay open until release. */
static int fh_fd(struct ossb_fusefs *fs, struct fhandle *h, bool for_write, bool *ret_lower)
{
        pthread_mutex_lock(&h->lock);
        int r = fh_to_upper(fs, h, for_write);
        int fd = h->ufd >= 0 ? h->ufd : h->lfd;
        *ret_lower = h->ufd < 0;
        pthread_mutex_unlock(&h->lock);
        return r < 0 ? r : fd;
}

static void read_source(fuse_req_t req, struct fhandle *h, size_t size, off_t off)
{
        _cleanup_free_ char *buf = malloc(size ? size : 1);
        if (!buf) {
                fuse_reply_err(req, ENOMEM);
                return;
        }
        pthread_mutex_lock(&h->lock);
        ssize_t n = h->lh ? h->src->ops->read(h->src->ctx, h->lh, buf, size, off) : -EBADF;
        pthread_mutex_unlock(&h->lock);
        if (n < 0)
                fuse_reply_err(req, (int) -n);
        else
                fuse_reply_buf(req, buf, (size_t) n);
}

void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
        struct ossb_fusefs *fs = req_fs(req);
        struct fhandle *h = fh_of(fi);
        bool lower;
        int fd = fh_fd(fs, h, false, &lower);
        if (lower)
                atomic_fetch_add(&fs->st_lower_bytes, (uint64_t) size);
        if (fd == -1 && lower) {
                read_source(req, h, size, off);
                return;
        }
        if (fd < 0) {
                fuse_reply_err(req, -fd);
                return;
        }
        struct fuse_bufvec buf = FUSE_BUFVEC_INIT(size);
        buf.buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK;
        buf.buf[0].fd = fd;
        buf.buf[0].pos = off;
        fuse_reply_data(req, &buf, FUSE_BUF_SPLICE_MOVE);
}

void op_write_buf(fuse_req_t req, fuse_ino_t ino, struct fuse_bufvec *in, off_t off, struct fuse_file_info *fi)
{
        struct ossb_fusefs *fs = req_fs(req);
        bool lower;
        int fd = fh_fd(fs, fh_of(fi), true, &lower);
        if (fd < 0) {
                reply_change_err(req, fs, fd == -1 ? -EBADF : fd);
                return;
        }
        struct fuse_bufvec out = FUSE_BUFVEC_INIT(fuse_buf_size(in));
        out.buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK;
        out.buf[0].fd = fd;
        out.buf[0].pos = off;
        ssize_t n = fuse_buf_copy(&out, in, 0);
        if (n >= 0 && req_kill_suidgid()) {
                int r = node_kill_suidgid(fs, fh_of(fi)->n);
                n = r < 0 ? r : n;
        }
        if (n < 0)
                reply_change_err(req, fs, (int) n);
        else
                fuse_reply_write(req, (size_t) n);
}

void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
        struct ossb_fusefs *fs = req_fs(req);
        file_handle_drop(fs, fi);
        fuse_reply_err(req, 0);
}

void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
        (void) req_fs(req); /* counts the request */
        struct fhandle *h = fh_of(fi);
        int fd = file_handle_fd(fi);
        int r = 0;
        if (h && fd >= 0)
                r = (datasync ? fdatasync(fd) : fsync(fd)) < 0 ? errno : 0;
        fuse_reply_err(req, r);
}

void op_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset, off_t length, struct fuse_file_info *fi)
{
        struct ossb_fusefs *fs = req_fs(req);
        bool lower;
        int fd = fh_fd(fs, fh_of(fi), true, &lower);
        int r = fd < 0 ? (fd == -1 ? EBADF : -fd) : 0;
        if (r == 0 && fallocate(fd, mode, offset, length) < 0)
                r = errno;
        if (r == 0)
                journal_add_node(fs, node_of(fs, ino), OSSB_FS_CHANGE_MODIFIED);
        reply_change_err(req, fs, -r);
}

void op_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence, struct fuse_file_info *fi)
{
        struct ossb_fusefs *fs = req_fs(req);
        bool lower;
        int fd = fh_fd(fs, fh_of(fi), false, &lower);
        if (fd < 0) {
                fuse_reply_err(req, fd == -1 ? ESPIPE : -fd);
                return;
        }
        off_t r = lseek(fd, off, whence);
        if (r < 0)
                fuse_reply_err(req, errno);
        else
                fuse_reply_lseek(req, r);
}
