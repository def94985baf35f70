/* engine/extract.h - ADD's extraction of local tar archives (plain, gzip, bzip2, xz, zstd)
 * into a stage's root, confined to it (no entry can escape through "..", absolute names or
 * symlinks), and ADD's download of http(s) URLs.
 *
 * Owns: nothing persistent; the download goes to a temp file the caller names and removes.
 */
#ifndef OSSB_ENGINE_EXTRACT_H
#define OSSB_ENGINE_EXTRACT_H

#include <stdint.h>

#include "common/error.h"
#include "engine/rootfs.h"

/* 1 when the file is a tar archive (possibly compressed) ADD should extract, 0 if not. */
int ossb_archive_detect(const char *path);

/* Extract `archive` into the directory `into_rel` of the tree; owners from the archive unless
 * uid/gid >= 0.  Every written path is recorded in c. */
int ossb_archive_extract(const struct ossb_tree *t, const char *into_rel, const char *archive, int64_t uid,
                         int64_t gid, struct ossb_changes *c, struct ossb_error **err);

/* Download `url` into the file `dest_path` (created, mode 0600).  *ret_mtime gets the
 * Last-Modified time (or -1); *ret_digest the sha256 of the body.  HTTP errors name the URL
 * and status and carry OSSB_EXIT_BUILD. */
int ossb_url_download(const char *url, const char *dest_path, int64_t *ret_mtime,
                      char ret_digest[72], struct ossb_error **err);

#endif
