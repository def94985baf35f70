/* oci/unpack.h - applying a layer blob to a directory: decompress, read the tar, apply.
 *
 * Owns: the layer reader.  The compression is found from the blob's magic bytes (gzip, zstd,
 * or a plain tar), whatever the media type says.  Entries are applied inside `dest` only (every
 * path resolved beneath it: "..", absolute names and symlinks in the tree can never lead out;
 * such an entry fails the unpack with -EPERM naming it).  Whiteouts as the OCI spec says:
 * ".wh.NAME" removes NAME as the lower layers left it, ".wh..wh..opq" empties its directory
 * of what lower layers put there (entries of the same layer stay, whatever their order); the
 * whiteout files themselves are never created.  Hard links point to paths inside dest.  Files
 * keep mode (incl. setuid/setgid/sticky), owner (when the process may chown; otherwise the
 * caller's ids, and unpack reports that it happened through ret stats), mtime (directories get
 * theirs after their children are written), xattrs (SCHILY.xattr.*: security.capability,
 * user.*, trusted.* where permitted; others are skipped), device nodes (mknod when permitted,
 * else skipped and counted).  An entry replacing an existing one removes it first (a
 * directory replacing a directory keeps its children, as Docker does).
 * Details: an entry or hard link target with a ".." component is -EPERM; a leading "/" is
 * dropped (names are relative to dest, as Docker takes them); missing parent directories are
 * created 0755; the "." entry (dest itself) is not applied.  A ".wh.NAME" whose NAME this
 * layer created stays, and of a directory holding entries of this layer only what lower
 * layers left is removed.  ".wh..wh.*" entries other than the opaque marker (aufs metadata)
 * are ignored.  Overlay metadata xattrs (trusted.overlay.*, user.overlay.*) are never set
 * from a layer (counted as skipped).  Gzip streams may have several members but nothing
 * after the last one.  The whole uncompressed stream is hashed, also what follows the tar's
 * end-of-archive blocks.
 */
#ifndef OSSB_OCI_UNPACK_H
#define OSSB_OCI_UNPACK_H

#include <stdbool.h>
#include <stdint.h>

#include "common/error.h"
#include "common/sha256.h"

struct ossb_unpack_stats {
        int64_t entries;
        int64_t bytes;            /* uncompressed tar bytes read */
        int64_t chown_skipped;    /* entries whose owner could not be set */
        int64_t devices_skipped;  /* device nodes not created (not permitted) */
        int64_t xattrs_skipped;
};

/* Apply the layer read from `blob_fd` (compressed or not) to the directory `dest` (created
 * when missing).  *ret_diff_id (may be NULL) receives the sha256 of the uncompressed tar
 * stream (read to its very end).  When `expected_diff_id` is non-NULL and differs, -EBADMSG
 * with a message naming both digests (dest is then in an undefined state: callers unpack into
 * a directory they can throw away).  A corrupt stream is -EBADMSG; `name` (e.g. the blob
 * digest) is used in messages. */
int ossb_layer_unpack(int blob_fd, const char *name, const char *dest, const char *expected_diff_id,
                      char ret_diff_id[OSSB_DIGEST_STR_LEN + 1], struct ossb_unpack_stats *ret_stats,
                      struct ossb_error **err);

/* How to apply a layer. */
struct ossb_unpack_opts {
        /* dest is one layer of a kernel overlayfs stack, not a whole tree: a ".wh.NAME" becomes
         * a 0/0 character device NAME (unless this layer made NAME: a directory of it is then
         * marked opaque), ".wh..wh..opq" sets the opaque attribute on its directory, and a
         * directory replacing a non-directory of this layer or a whiteout is marked opaque.
         * Nothing is removed.  As in Docker's overlay2 driver, a parent directory the layer does
         * not list is created 0755 root's (well-formed layers list every parent) and a hard
         * link must point into the same layer. */
        bool overlay_format;
        /* the opaque attribute is user.overlay.opaque (mounts with `userxattr` in a user
         * namespace), else trusted.overlay.opaque */
        bool userxattr;
};

/* ossb_layer_unpack with options (NULL: the defaults, a whole tree). */
int ossb_layer_unpack_ex(int blob_fd, const char *name, const char *dest, const struct ossb_unpack_opts *opts,
                         const char *expected_diff_id, char ret_diff_id[OSSB_DIGEST_STR_LEN + 1],
                         struct ossb_unpack_stats *ret_stats, struct ossb_error **err);

#endif
