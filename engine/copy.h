/* engine/copy.h - COPY and ADD into a stage's root file system.
 *
 * Owns: source selection (paths and globs, resolved inside the source tree: the build context
 * with its .dockerignore, or another stage's root), Docker's destination rules, ownership and
 * mode rules (--chown, --chmod), --parents, --exclude, ADD's extraction of local tar archives
 * (gzip, bzip2, xz, zstd or plain), and recording every path it writes in struct ossb_changes.
 * Errors about sources (missing, outside the context) carry OSSB_EXIT_BUILD.
 */
#ifndef OSSB_ENGINE_COPY_H
#define OSSB_ENGINE_COPY_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/error.h"
#include "engine/dockerfile/dockerignore.h"
#include "engine/rootfs.h"

/* A --chmod value: octal, or symbolic as chmod(1) ("u+x,g-w", "a=rX"). */
struct ossb_chmod {
        bool set;
        bool symbolic;
        mode_t octal;
        char spec[64];
};

/* Parse a --chmod value. */
int ossb_chmod_parse(const char *spec, struct ossb_chmod *ret, struct ossb_error **err);
/* The mode a file of mode `mode` gets (unchanged when !c->set). */
mode_t ossb_chmod_apply(const struct ossb_chmod *c, mode_t mode, bool is_dir);

struct ossb_copy_req {
        const struct ossb_tree *src;            /* where sources are read */
        const struct ossb_dockerignore *ignore; /* the context's .dockerignore, or NULL */
        bool src_is_context;                    /* owners become 0:0 unless --chown */
        char *const *sources;                   /* expanded source words */
        const char *dest;                       /* expanded destination, absolute (WORKDIR applied) */
        bool dest_is_dir;                       /* the destination ended in '/' */
        int64_t uid, gid;                       /* --chown result, -1 when not given */
        struct ossb_chmod chmod;                /* --chmod */
        bool parents;                           /* --parents */
        const struct ossb_dockerignore *excludes; /* --exclude patterns, or NULL */
        bool add;                               /* ADD: extract local archives */
        int64_t now;                            /* mtime for directories created by the copy */
        const char *what;                       /* "COPY" or "ADD", for messages */
};

int ossb_copy_run(const struct ossb_tree *dst, const struct ossb_copy_req *req, struct ossb_changes *c,
                  struct ossb_error **err);

/* Write one regular file at `dest` (absolute inside dst; parents created as 0755 owned by
 * uid/gid) from a buffer: heredocs and downloaded URLs. */
int ossb_copy_write_file(const struct ossb_tree *dst, const char *dest, const void *data, size_t len, mode_t mode,
                         uid_t uid, gid_t gid, int64_t mtime, int64_t dir_mtime, struct ossb_changes *c,
                         struct ossb_error **err);

/* Resolve a --chown value ("user", "user:group", numeric or names looked up in the tree's
 * /etc/passwd and /etc/group) to ids. */
int ossb_chown_parse(const struct ossb_tree *root, const char *spec, uid_t *ret_uid, gid_t *ret_gid,
                     struct ossb_error **err);

#endif
