/* engine/cache.h - the step cache: content-based keys, source digests for COPY/ADD, and the
 * on-disk index of step results under CACHE_DIR/cache/.
 *
 * Owns: CACHE_DIR/cache/keys/<key>.json (one entry per cached step; its mtime is the entry's
 * last use) and CACHE_DIR/cache/lock (taken exclusively by prune only).  Layer blobs stay in
 * the content store (oci/store.h); an entry only names them.
 *
 * Keys (engine/cache-key.c).  A step's key is a SHA-256 over a list of labelled parts, led by
 * a format tag and the parent step's key.  Every part is encoded unambiguously (label length, label, a kind byte,
 * then the value's length and bytes, or for a vector its item count and each item with its
 * length), so two different part lists never produce the same byte stream: "ab"+"c" differs
 * from "a"+"bc", an empty part differs from no part, and a vector differs from any string,
 * including the vector's items joined.
 *
 * Source digests.  ossb_cache_digest_paths() hashes the sources a COPY/ADD selected as BuildKit
 * does in spirit: paths, types, permission bits (with setuid/setgid/sticky), owners, file
 * contents, link targets, device numbers and extended attributes; never mtimes, atimes, ctimes
 * or inode numbers.  Touching a file, or changing a file that is not selected, changes nothing.
 *
 * Entries.  An entry with layer annotations is written as format version 2, any other as
 * version 1 (what ossb before annotations wrote and reads), so that an older ossb sharing
 * the cache directory leaves the new entries alone instead of dropping them as malformed;
 * both versions are read (a version 1 entry has no annotations).
 *
 * Concurrency.  Several builds may share one cache directory: entries are written whole
 * (temp file, fsync, rename) and read whole, so a reader sees an old or a new entry, never a
 * torn one; two builds storing the same key leave one valid entry.  Prune takes an exclusive
 * flock on CACHE_DIR/cache/lock so two prunes never interleave; it does not wait for builds.
 * A build that got a hit while a prune runs may find the layer blob gone: callers must check
 * the blob (ossb_store_has) after a hit and treat a missing blob as a miss (and may drop the
 * entry with ossb_cache_remove).
 */
#ifndef OSSB_ENGINE_CACHE_H
#define OSSB_ENGINE_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

#include "common/cleanup.h"
#include "common/error.h"
#include "common/sha256.h"
#include "oci/store.h"

/* Keys and source digests are rendered as 64 lower-case hex digits (no "sha256:" prefix). */
#define OSSB_CACHE_HEX_LEN OSSB_SHA256_HEX_LEN

/* ---- key builder ------------------------------------------------------------------------ */

/* A key being built.  Caller-allocated; init, add parts, then final (which releases the hash
 * context) or ossb_cache_key_clear to abandon.  An error in any add is sticky: later adds do
 * nothing and final returns it. */
struct ossb_cache_key {
        struct ossb_sha256 *h; /* owned; NULL before init and after final/clear */
        int error;             /* first failure (-errno), 0 when none */
};

/* Start a key.  `parent_hex` is the parent step's key (64 lower-case hex digits) or NULL for a
 * step with no parent; anything else is -EINVAL.  Version tag and parent are the first parts,
 * so keys of different format versions or with and without a parent never collide.
 * -ENOMEM.  On failure k is left cleared. */
int ossb_cache_key_init(struct ossb_cache_key *k, const char *parent_hex);

/* Add a part: a label (a NUL-terminated string naming what the value is) and `len` bytes of
 * value (data may be NULL when len is 0).  Returns 0 or the sticky error. */
int ossb_cache_key_add(struct ossb_cache_key *k, const char *label, const void *data, size_t len);
/* A string part; a NULL string is a distinct "absent" value (not the same as ""). */
int ossb_cache_key_add_str(struct ossb_cache_key *k, const char *label, const char *s);
/* A vector part: the item count, then every item length-prefixed.  NULL is "absent"; an
 * empty vector (only the terminator) is a vector of 0 items.  Order matters. */
int ossb_cache_key_add_strv(struct ossb_cache_key *k, const char *label, char *const *v);
/* An integer part (8 bytes, big-endian; a distinct kind, never equal to a string part). */
int ossb_cache_key_add_u64(struct ossb_cache_key *k, const char *label, uint64_t v);

/* Finish: write the key (64 hex digits + NUL) into out and release the context.  Returns the
 * sticky error instead (out untouched) when an add failed, -EINVAL when k was not inited. */
int ossb_cache_key_final(struct ossb_cache_key *k, char out[OSSB_CACHE_HEX_LEN + 1]);
/* True when s is a key or source digest as this module renders them: exactly 64 lower-case
 * hex digits. */
bool ossb_cache_key_is_valid(const char *s);

/* Release the context without a result.  Accepts a cleared or finished key. */
void ossb_cache_key_clear(struct ossb_cache_key *k);
#define _cleanup_cache_key_ __attribute__((cleanup(ossb_cache_key_clear)))

/* ---- source digests --------------------------------------------------------------------- */

/* What a filter says about one entry under a selected path (rel: relative to the root, as
 * hashed).  Selected paths themselves are not filtered. */
enum ossb_cache_walk {
        OSSB_CACHE_WALK_INCLUDE = 0, /* hash it (and, for a directory, walk into it) */
        OSSB_CACHE_WALK_SKIP = 1,    /* leave it out, but still walk into it if a directory */
        OSSB_CACHE_WALK_PRUNE = 2,   /* leave it and everything beneath it out */
};
/* Return an enum ossb_cache_walk value, or -errno to stop the walk with that error. */
typedef int (*ossb_cache_filter_fn)(const char *rel, bool is_dir, void *userdata);

/* Digest the selected paths of the tree at `rootfd` (a directory fd, O_PATH is fine).
 *
 * `rel_paths` (NULL-terminated; relative to the root; a leading "/" and "." components are
 * cleaned away, ".." cannot climb above the root, "" or "." is the root itself) are hashed in
 * sorted order (duplicates once).  Intermediate components are resolved inside the root
 * (ossb_open_in_root); the last component is never followed: a selected path that is a
 * symlink is hashed as a link (its target text), whether its target is inside the root or
 * not.  Callers that follow a named source link (COPY does) pass the resolved path.
 * Directories are walked recursively, entries in byte order of their names, without ever
 * following a symlink.  For every entry the hash covers: its relative path, type, permission
 * bits (07777), uid, gid; for a regular file the SHA-256 of its content; for a symlink its
 * target; for a device its major and minor; its extended attributes (sorted by name, with
 * values), except security.selinux and the overlay-private trusted.overlay.* and
 * user.overlay.*.  Never mtimes, atimes, ctimes, inode numbers, link counts.
 *
 * `filter` (may be NULL) decides about each entry below a selected directory, e.g. from the
 * .dockerignore and --exclude patterns, so that excluded files do not affect the digest.
 *
 * Errors: -ENOENT (a selected path is missing), -ELOOP (nesting deeper than 256 levels),
 * -EIO etc. from reading, each with a message naming the path.  out_hex: 64 hex digits + NUL. */
int ossb_cache_digest_paths_at(int rootfd, char *const *rel_paths, ossb_cache_filter_fn filter, void *userdata,
                               char out_hex[OSSB_CACHE_HEX_LEN + 1], struct ossb_error **err);
/* The same with the root given by path, and no filter. */
int ossb_cache_digest_paths(const char *root, char *const *rel_paths, char out_hex[OSSB_CACHE_HEX_LEN + 1],
                            struct ossb_error **err);

/* ---- the index ---------------------------------------------------------------------------- */

/* What a cached step produced. */
struct ossb_cache_entry {
        bool empty;                                /* the step made no layer: the fields below
                                                    * but `extra` are unset ("", 0, NULL) */
        char digest[OSSB_DIGEST_STR_LEN + 1];      /* layer blob, "sha256:<hex>" */
        int64_t size;                              /* layer blob size, >= 0 */
        char *media_type;                          /* layer media type; owned */
        char diff_id[OSSB_DIGEST_STR_LEN + 1];     /* digest of the uncompressed layer */
        char *extra;                               /* optional JSON text (any JSON value, e.g.
                                                    * {"created_by":"..."}), NULL when none;
                                                    * owned.  At most 64 KiB. */
        json_object *annotations;                  /* the layer descriptor's annotations (an
                                                    * object of strings, e.g. a seekable
                                                    * layer's TOC digest), NULL when none;
                                                    * an owned reference.  Non-empty entries
                                                    * only; at most 64 KiB as JSON. */
};

/* Free the owned members and zero every field.  Accepts NULL. */
void ossb_cache_entry_clear(struct ossb_cache_entry *e);

struct ossb_cache;

/* Open (creating CACHE_DIR/cache/keys/ with mode 0700 where missing) the index of cache_dir.
 * The caller owns *ret (ossb_cache_free). */
int ossb_cache_open(const char *cache_dir, struct ossb_cache **ret, struct ossb_error **err);
void ossb_cache_free(struct ossb_cache *c); /* accepts NULL */
OSSB_DEFINE_CLEANUP(struct ossb_cache *, ossb_cache_free)
#define _cleanup_cache_ _cleanup_(ossb_cache_freep)
/* The directory of the index (CACHE_DIR/cache); borrowed. */
const char *ossb_cache_dir(const struct ossb_cache *c);

/* Look a key up.  *ret_hit tells hit or miss.  A hit fills *ret (the caller clears it with
 * ossb_cache_entry_clear; on a miss *ret is untouched) and marks the entry used now (its
 * mtime).  A missing entry is a miss; so is a
 * malformed one (not strict JSON, wrong fields or types, another key's content), which is
 * also removed.  An entry written by another format version is a miss and left alone.
 * -EINVAL for a key that is not 64 lower-case hex digits. */
int ossb_cache_get(struct ossb_cache *c, const char *key_hex, struct ossb_cache_entry *ret, bool *ret_hit,
                   struct ossb_error **err);

/* Store (or replace) the entry of a key, atomically.  A non-empty entry needs valid digest
 * and diff_id, size >= 0 and a printable media type of at most 255 bytes; `extra`, when
 * set, must be valid JSON; `annotations`, when set, a non-empty entry's object of strings
 * with printable keys of 1..255 bytes; -EINVAL otherwise. */
int ossb_cache_put(struct ossb_cache *c, const char *key_hex, const struct ossb_cache_entry *e,
                   struct ossb_error **err);

/* Drop the entry of a key (no error when there is none).  Blobs are left alone. */
int ossb_cache_remove(struct ossb_cache *c, const char *key_hex, struct ossb_error **err);

/* Evict least recently used entries until the distinct layer blobs the remaining entries
 * reference (sizes from the store; a blob missing from the store counts 0) total at most
 * keep_bytes; keep_bytes 0 removes every entry.  Entries are evicted oldest use first (ties
 * by key); an entry used or rewritten while prune runs is kept.  The blob rule: a layer blob is deleted from the store when, after eviction, no
 * remaining entry references it and some evicted entry did.  The store keeps no other
 * reference count, so a blob that is also part of a pulled base image or an exported image
 * can be deleted this way; it is fetched or rebuilt again when next needed.  Blobs no entry
 * ever referenced (base layers, manifests, configs) are never touched.  Malformed entries and
 * temp files of interrupted writes older than an hour are removed too; entries of another
 * format version are left alone (and their blobs are not counted).  *ret_freed (may be
 * NULL) receives the bytes of blobs deleted.  Holds CACHE_DIR/cache/lock exclusively. */
int ossb_cache_prune(struct ossb_cache *c, struct ossb_store *store, int64_t keep_bytes, int64_t *ret_freed,
                     struct ossb_error **err);

#endif
