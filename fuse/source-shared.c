/* fuse/source-shared.c - one data source used by several mounts (see ossb_fs_shared in
 * fusefs.h): every mount gets its own struct ossb_fs_source whose operations forward to the
 * shared one and whose free only drops a reference. */
#include "config.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "fuse/fusefs.h"

struct ossb_fs_shared {
        struct ossb_fs_source *src;
        atomic_int refs;
        struct ossb_fs_source_ops ops; /* shared_ops, without readdir_ino when src lacks it */
};

#define SRC(ctx) (((struct ossb_fs_shared *) (ctx))->src)

static int sh_getattr(void *ctx, const char *path, struct stat *st, unsigned *ret_flags)
{
        return SRC(ctx)->ops->getattr(SRC(ctx)->ctx, path, st, ret_flags);
}

static int sh_readdir(void *ctx, const char *path, int (*cb)(void *ud, const char *name, unsigned char type),
                      void *ud)
{
        return SRC(ctx)->ops->readdir(SRC(ctx)->ctx, path, cb, ud);
}

static int sh_readdir_ino(void *ctx, const char *path,
                          int (*cb)(void *ud, const char *name, unsigned char type, uint64_t ino), void *ud)
{
        return SRC(ctx)->ops->readdir_ino(SRC(ctx)->ctx, path, cb, ud);
}

static int sh_open(void *ctx, const char *path, void **ret_handle)
{
        return SRC(ctx)->ops->open(SRC(ctx)->ctx, path, ret_handle);
}

static ssize_t sh_read(void *ctx, void *handle, void *buf, size_t size, off_t off)
{
        return SRC(ctx)->ops->read(SRC(ctx)->ctx, handle, buf, size, off);
}

static int sh_handle_fd(void *ctx, void *handle)
{
        return SRC(ctx)->ops->handle_fd(SRC(ctx)->ctx, handle);
}

static void sh_release(void *ctx, void *handle)
{
        SRC(ctx)->ops->release(SRC(ctx)->ctx, handle);
}

static ssize_t sh_readlink(void *ctx, const char *path, char *buf, size_t size)
{
        return SRC(ctx)->ops->readlink(SRC(ctx)->ctx, path, buf, size);
}

static ssize_t sh_getxattr(void *ctx, const char *path, const char *name, void *buf, size_t size)
{
        return SRC(ctx)->ops->getxattr(SRC(ctx)->ctx, path, name, buf, size);
}

static ssize_t sh_listxattr(void *ctx, const char *path, char *buf, size_t size)
{
        return SRC(ctx)->ops->listxattr(SRC(ctx)->ctx, path, buf, size);
}

static void sh_free(void *ctx)
{
        ossb_fs_shared_unref(ctx);
}

static const struct ossb_fs_source_ops shared_ops = {
        .getattr = sh_getattr,
        .readdir = sh_readdir,
        .open = sh_open,
        .read = sh_read,
        .handle_fd = sh_handle_fd,
        .release = sh_release,
        .readlink = sh_readlink,
        .getxattr = sh_getxattr,
        .listxattr = sh_listxattr,
        .free = sh_free,
        .readdir_ino = sh_readdir_ino,
};

struct ossb_fs_shared *ossb_fs_shared_new(struct ossb_fs_source *src)
{
        struct ossb_fs_shared *sh = calloc(1, sizeof(*sh));
        if (!sh) {
                ossb_fs_source_free(src);
                return NULL;
        }
        sh->src = src;
        atomic_init(&sh->refs, 1);
        sh->ops = shared_ops;
        if (!src->ops->readdir_ino) /* the filesystem tests for it */
                sh->ops.readdir_ino = NULL;
        return sh;
}

struct ossb_fs_shared *ossb_fs_shared_ref(struct ossb_fs_shared *sh)
{
        atomic_fetch_add(&sh->refs, 1);
        return sh;
}

void ossb_fs_shared_unref(struct ossb_fs_shared *sh)
{
        if (!sh || atomic_fetch_sub(&sh->refs, 1) != 1)
                return;
        ossb_fs_source_free(sh->src);
        free(sh);
}

struct ossb_fs_source *ossb_fs_shared_source(struct ossb_fs_shared *sh)
{
        return sh->src;
}

int ossb_fs_shared_mount_source(struct ossb_fs_shared *sh, struct ossb_fs_source **ret)
{
        struct ossb_fs_source *s = calloc(1, sizeof(*s));
        if (!s || !(s->name = strdup(sh->src->name ? sh->src->name : "shared source"))) {
                free(s);
                return -ENOMEM;
        }
        s->ops = &sh->ops;
        s->ctx = ossb_fs_shared_ref(sh);
        *ret = s;
        return 0;
}
