/* fuse/fusefs-internal.h - what fuse/'s files share; never included from outside fuse/ (its
 * own unit tests excepted).
 *
 * Owns: struct ossb_fusefs (one mount), struct fnode (one FUSE inode), and the vocabulary of
 * the handlers: merged lookup, copy-up, the directory fd cache, the journal.
 *
 * The model
 *   A node is one file of the merged view, named by its FUSE node id (its address; the root is
 *   FUSE_ROOT_ID).  Its st_ino is fixed at creation: a lower entry's is its layer's tag (the
 *   layer's index + 1, in the top 16 bits) over the entry's own inode number, an upper entry's
 *   is tag 0 over the upper inode number, and a copy-up records "upper inode -> old st_ino" in
 *   fs->cumap so that the number survives the copy-up and the node's forgetting.  fs->nodes
 *   maps st_ino -> live node, which is how hard links (in one layer, or linked in the upper)
 *   come back as one node.  Inode numbers that do not fit 48 bits get numbers from a counter
 *   (fs->bigmap), still stable for the mount's life.
 *
 *   Lower content is read through the sources by path: node->lpath is the node's path in the
 *   lowers.  It is fixed, because a node with lower content never moves: renaming it copies it
 *   up first (a directory is copied up whole: every entry beneath it, then made opaque).  A
 *   directory's node->dl lists the lower layers (top first) merged beneath it, cut at the
 *   first opaque one; it empties when the directory becomes opaque or is copied up whole.
 *
 *   Upper content is reached from directory fds: an upper directory node's fd is kept in a
 *   bounded cache (dirfd_get/dirfd_put; evicted least recently used, reopened from its parent
 *   and checked against node->uino), and a non-directory is reached as (parent fd, name)
 *   through its first alias.  Aliases are the (parent, name) pairs a node is known by: one for
 *   a directory, one or more for a file with hard links.  An open file unlinked while open is
 *   renamed into the work directory (an orphan) and removed at its last release.
 *
 * Locks, in the order they may be taken (never the reverse):
 *   0. fhandle->lock an open file's handle (ops-file.c), held while it moves to the upper copy.
 *   1. node->culock  copy-up of that node.  A non-directory's may be held while a directory's
 *                    is taken (its parents are copied up first); two directory culocks are
 *                    never held at once (ensure_upper_dir climbs without holding one).
 *   2. node->dlock   (directories, a rwlock) written for changes to that directory's upper
 *                    entries: create, remove, rename, installing a copy-up, making it opaque;
 *                    read for reaching a child by name (stat, open, setattr, xattrs).  Held
 *                    across the I/O of that change or access.  Only rename holds two (written,
 *                    in address order); nothing holding a dlock takes a culock or another
 *                    dlock, and a thread never takes the same dlock twice.
 *   3. node->lock    the node's fields marked "lock" below; memory only, one node at a time.
 *   4. fs->table_lock, fs->fdc_lock, fs->journal_lock, fs->err_lock, fs->handles_lock,
 *      fs->init_lock: leaf locks, memory only (fdc_lock also closes evicted fds).
 * No lock is global across I/O: the kernel already serialises a directory's namespace changes
 * (i_rwsem) and cross-directory renames, so dlocks only order our own copy-ups against them.
 */
#ifndef OSSB_FUSE_FUSEFS_INTERNAL_H
#define OSSB_FUSE_FUSEFS_INTERNAL_H

#define FUSE_USE_VERSION 312

#include <fuse_lowlevel.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>

#include "common/error.h"
#include "fuse/fusefs.h"

#define LAYER_UPPER (-1)
#define INO_TAG_SHIFT 48
#define INO_LOW_MASK ((UINT64_C(1) << INO_TAG_SHIFT) - 1)
#define FUSEFS_MAX_LAYERS 4096
#define FUSEFS_TIMEOUT 86400.0
#define WORK_ORPHAN_PREFIX "#ossb-orphan-"
#define WORK_TMP_PREFIX "#ossb-tmp-"

struct fnode;
struct fhandle;
struct dirhandle;

struct falias {
        struct fnode *parent; /* holds a reference */
        char *name;
};

/* A directory listing (merged), shared by open directory handles and the node's cache. */
struct dent {
        char *name;
        uint64_t ino;
        unsigned char type;
};

struct dlist {
        atomic_long refs;
        size_t n;
        struct dent *e;
};

struct fnode {
        uint64_t ino;      /* st_ino served (immutable) */
        mode_t type;       /* S_IFMT as served (immutable) */
        char *lpath;       /* path in the lowers, or NULL: no lower content (immutable) */
        int src;           /* lower layer serving the content while !upper (immutable) */
        bool lower_multi;  /* a lower file with several links (link-up on copy-up) */
        atomic_long refs;  /* internal references, +1 while nlookup > 0 */

        pthread_mutex_t lock;
        pthread_rwlock_t dlock;
        pthread_mutex_t culock;

        /* lock */
        uint64_t nlookup;
        bool upper;        /* exists in the upper directory */
        bool removed;      /* no name left */
        bool pinned;       /* an extra reference for the mount's life (copied-up multi-link lower) */
        bool override;     /* the upper entry carries OSSB_FS_OVERRIDE_XATTR */
        uint64_t uino;     /* upper inode number (when upper) */
        struct falias *al; /* aliases; al[0] is the one used for name-based upper access */
        size_t n_al;
        int *dl;           /* directories: lower layers merged beneath, top first */
        size_t n_dl;
        struct dlist *rdcache;
        uint64_t rdgen;    /* bumped when rdcache is dropped */
        unsigned nopen;    /* open file handles */
        char *orphan;      /* name in the work directory while an unlinked file is still open */

        /* fs->fdc_lock */
        int ufd;           /* directories: O_RDONLY|O_DIRECTORY fd in the upper, or -1 */
        unsigned ufd_pins;
        bool ufd_fixed;    /* never evicted (root, work) */
        struct fnode *lru_prev, *lru_next;

        /* fs->table_lock */
        struct fnode *hnext;
        bool hashed;
        struct fnode *all_prev, *all_next; /* every node of the mount, for the final free */
};

struct ino_map_entry {
        uint64_t tag, key, val;
        struct ino_map_entry *next;
};

struct ino_map {
        struct ino_map_entry **b;
        size_t nb, n;
};

struct journal_entry {
        char *path;
        unsigned flags;
        struct journal_entry *next;
};

struct ossb_fusefs {
        struct ossb_fs_source **lowers;
        size_t n_lowers;
        char *upper_path, *work_path, *mountpoint;
        int upper_fd, work_fd;
        dev_t upper_dev;
        bool userxattr;
        char opaque_xattr[32];   /* PREFIX "overlay.opaque" */
        unsigned threads;
        uid_t uid;               /* the mounting process's ids (owner of the mount) */
        gid_t gid;

        struct fuse_session *se;
        pthread_t loop_thread;
        bool loop_running;       /* init_lock */
        bool loop_started;
        int loop_result;
        bool mounted;
        bool unmounted;

        pthread_mutex_t init_lock;
        pthread_cond_t init_cond;
        bool init_done;

        struct fnode *root;
        struct fnode *workdir;   /* pseudo node for the work directory (orphans) */

        pthread_mutex_t table_lock;
        struct fnode **nodes;    /* st_ino -> live node */
        struct fnode *all;       /* every node (freed at the end whatever the kernel forgot) */
        size_t nodes_nb, nodes_n;
        struct ino_map cumap;    /* upper inode -> st_ino of copied-up entries */
        struct ino_map bigmap;   /* (layer tag, big inode) -> allocated number */
        uint64_t next_big;

        pthread_mutex_t fdc_lock;
        struct fnode *lru_head, *lru_tail;
        size_t fdc_open, fdc_max;

        pthread_mutex_t journal_lock;
        struct journal_entry **jb;
        size_t jnb, jn;
        bool journal_oom;

        pthread_mutex_t err_lock;
        int err_code;
        char *err_msg;

        /* open file and directory handles (the kernel does not always send the last releases
         * before an unmount completes): freed with the mount */
        pthread_mutex_t handles_lock;
        struct fhandle *fhandles;
        struct dirhandle *dirhandles;

        atomic_bool override_seen; /* an override attribute was written: serve them */

        /* FUSE_HANDLE_KILLPRIV_V2, negotiated below libfuse (fuse/wire.c) */
        atomic_uint_fast64_t init_unique; /* the FUSE_INIT request's id, 0 before it came */
        atomic_bool killpriv_offered;     /* the kernel offered it */
        atomic_bool killpriv_v2;          /* the reply asked for it: the filesystem kills suid bits */

        atomic_uint_fast64_t tmp_seq;
        atomic_uint_fast64_t st_requests, st_lookups, st_copy_ups, st_copy_up_bytes, st_lower_bytes;
        atomic_uint_fast64_t st_by_opcode[OSSB_FUSEFS_N_OPCODES];
};

/* Whether the request this thread is handling asked to clear setuid/setgid (FUSE_HANDLE_KILLPRIV_V2:
 * a WRITE, SETATTR or OPEN by a caller without CAP_FSETID); set by mount.c's reader. */
bool req_kill_suidgid(void);
/* Whether the caller of that request is in group gid (its fs gid or a supplementary group). */
bool req_caller_in_group(gid_t gid);
/* Clear n's setuid bit, and setgid when group-executable (ops-attr.c). */
int node_kill_suidgid(struct ossb_fusefs *fs, struct fnode *n);

/* ---- failures (mount.c) ---- */

/* Record an internal failure (the first one is reported by ossb_fusefs_unmount); returns code. */
int fs_fail(struct ossb_fusefs *fs, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* ---- nodes (node.c) ---- */

struct fnode *node_new(struct ossb_fusefs *fs, uint64_t ino, mode_t type);
/* Free a node never inserted nor handed out. */
void node_discard(struct ossb_fusefs *fs, struct fnode *n);
void node_ref(struct fnode *n);
void node_unref(struct ossb_fusefs *fs, struct fnode *n);
/* The node for a FUSE node id (borrowed: valid while the kernel holds a lookup on it). */
struct fnode *node_of(struct ossb_fusefs *fs, fuse_ino_t id);
fuse_ino_t node_id(struct ossb_fusefs *fs, struct fnode *n);
/* The live node with this st_ino, referenced, or NULL. */
struct fnode *node_find(struct ossb_fusefs *fs, uint64_t ino);
/* Take a node out of the table (it has no name left; its number may come back). */
void node_unhash(struct ossb_fusefs *fs, struct fnode *n);
/* Insert a new node into the table; if a live one has the number already, return that one
 * (referenced) and free `n`. */
struct fnode *node_insert(struct ossb_fusefs *fs, struct fnode *n);
/* Alias management (n->lock must not be held; these take it). */
int node_add_alias(struct fnode *n, struct fnode *parent, const char *name);
/* Remove (parent, name) from n's aliases; the reference on parent is dropped.  Returns the
 * number of aliases left. */
size_t node_drop_alias(struct ossb_fusefs *fs, struct fnode *n, struct fnode *parent, const char *name);
int node_rename_alias(struct ossb_fusefs *fs, struct fnode *n, struct fnode *op, const char *oname,
                      struct fnode *np, const char *nname);
bool node_has_alias(struct fnode *n, struct fnode *parent, const char *name);
/* The first alias: *ret_parent referenced, *ret_name owned.  -ENOENT when none. */
int node_first_alias(struct fnode *n, struct fnode **ret_parent, char **ret_name);
/* The node's path in the merged view ("" for the root), newly allocated; NULL on ENOMEM or
 * when the node has no name left (*ret_r says which). */
char *node_path(struct ossb_fusefs *fs, struct fnode *n, int *ret_r);
char *path_join2(const char *parent, const char *name);
bool node_is_upper(struct fnode *n);
/* The kernel got the node in a reply: the caller's reference becomes the kernel's lookup. */
void node_lookup_done(struct ossb_fusefs *fs, struct fnode *n);
void node_forget(struct ossb_fusefs *fs, struct fnode *n, uint64_t count);
/* The listing cache of a directory node. */
void node_invalidate_dir(struct ossb_fusefs *fs, struct fnode *dir);
void dlist_unref(struct dlist *l);
void nodes_free_all(struct ossb_fusefs *fs);

/* st_ino numbers */
uint64_t ino_for_lower(struct ossb_fusefs *fs, int layer, uint64_t ino);
uint64_t ino_for_upper(struct ossb_fusefs *fs, uint64_t uino);
void ino_record_copy_up(struct ossb_fusefs *fs, uint64_t uino, uint64_t ino);
int ino_map_put(struct ino_map *m, uint64_t tag, uint64_t key, uint64_t val);
bool ino_map_get(const struct ino_map *m, uint64_t tag, uint64_t key, uint64_t *ret);
void ino_map_del(struct ino_map *m, uint64_t tag, uint64_t key);
void ino_map_clear(struct ino_map *m);

/* ---- the directory fd cache (node.c) ---- */

/* A pinned fd of the upper directory `n` (which must be upper); release with dirfd_put. */
int dirfd_get(struct ossb_fusefs *fs, struct fnode *n);
void dirfd_put(struct ossb_fusefs *fs, struct fnode *n);
/* Seed the cache with an fd just opened (ownership taken). */
void dirfd_seed(struct ossb_fusefs *fs, struct fnode *n, int fd);

/* ---- layers: merged lookup and stat (layers.c) ---- */

struct lentry {
        int layer;          /* LAYER_UPPER or the lower index providing the entry */
        struct stat st;     /* as served (override applied), st_ino already the served number */
        bool in_upper;      /* the upper has it (not a whiteout) */
        bool lower_has;     /* some lower (merged, whiteouts honoured) has the name */
        bool override;
        uint64_t uino;
        int *dl;            /* directories: lower layers beneath (owned) */
        size_t n_dl;
        int ufd;            /* an fd of the upper directory, when one was opened (owned), else -1 */
};

void lentry_clear(struct lentry *e);
/* Look `name` up in directory `dir`.  -ENOENT when the merged view has no such name. */
int merged_lookup(struct ossb_fusefs *fs, struct fnode *dir, const char *name, struct lentry *ret);
/* Whether any lower layer beneath `dir` has `name` (whiteouts and opaque dirs honoured). */
int lower_has_name(struct ossb_fusefs *fs, struct fnode *dir, const char *name, bool *ret);
/* Find or create the node for an entry found in dir/name and add the alias; referenced. */
int node_for_entry(struct ossb_fusefs *fs, struct fnode *dir, const char *name, struct lentry *e,
                   struct fnode **ret);
/* The attributes of a node now. */
int node_stat(struct ossb_fusefs *fs, struct fnode *n, struct stat *ret);
/* Attributes of an upper entry dirfd/name (override applied when userxattr). */
int upper_stat(struct ossb_fusefs *fs, int dirfd, const char *name, struct stat *ret, bool *ret_override);
/* Copy the dl array of a directory node (caller frees). */
int node_dl_copy(struct fnode *n, int **ret, size_t *ret_n);
bool is_whiteout(const struct stat *st);
/* xattr calls on dirfd/name or an fd without following the last symlink (through /proc). */
ssize_t xat_get(int dirfd, const char *name, const char *attr, void *buf, size_t size);
int xat_set(int dirfd, const char *name, const char *attr, const void *val, size_t size, int flags);
int xat_remove(int dirfd, const char *name, const char *attr);
ssize_t xat_list(int dirfd, const char *name, char *buf, size_t size);
/* Whether an xattr name is private to the storage format (never shown, never copied). */
bool xattr_private(const char *name);
/* A fresh name for a temporary entry in the work directory. */
void work_tmp_name(struct ossb_fusefs *fs, char buf[64]);
/* Create a whiteout at dirfd/name, replacing what is there (a non-directory or directory). */
int make_whiteout(struct ossb_fusefs *fs, int dirfd, const char *name, bool replace);
/* Whether the upper directory dirfd/name is marked opaque. */
bool upper_is_opaque(struct ossb_fusefs *fs, int dirfd, const char *name);
/* Remove every whiteout inside the upper directory fd (after it became opaque). */
int remove_whiteouts(struct ossb_fusefs *fs, int fd);

/* ---- copy-up (copyup.c) ---- */

/* Make the directory exist in the upper (its parents first), with its metadata. */
int ensure_upper_dir(struct ossb_fusefs *fs, struct fnode *dir);
/* Copy a node up (its parents first); `data` false copies metadata only (an O_TRUNC open). */
int copy_up(struct ossb_fusefs *fs, struct fnode *n, bool data);
/* Copy everything beneath directory `dir` up and make it opaque (before renaming it). */
int copy_up_tree(struct ossb_fusefs *fs, struct fnode *dir);
/* Lower hard links of a copied-up node found at dir/name: link the upper file there. */
int link_up(struct ossb_fusefs *fs, struct fnode *n, struct fnode *dir, const char *name);
/* Run `fn` with the parent of a non-directory locked (dlock) and its fd: the node is reached
 * as (pfd, name).  -ENOENT when it has no name. */
int with_parent(struct ossb_fusefs *fs, struct fnode *n, int (*fn)(struct ossb_fusefs *fs, int pfd, const char *name,
                                                                   void *ud), void *ud);

/* ---- the journal (journal.c) ---- */

void journal_add(struct ossb_fusefs *fs, const char *path, unsigned flags);
void journal_add_child(struct ossb_fusefs *fs, struct fnode *dir, const char *name, unsigned flags);
void journal_add_node(struct ossb_fusefs *fs, struct fnode *n, unsigned flags);
/* Every path beneath the upper directory fd (path `base`) with `flags`. */
void journal_add_tree(struct ossb_fusefs *fs, int fd, const char *base, unsigned flags);
void journal_free(struct ossb_fusefs *fs);

/* ---- the handlers (ops-*.c) ---- */

extern const struct fuse_lowlevel_ops fusefs_ops;

void op_init(void *ud, struct fuse_conn_info *conn);
void op_destroy(void *ud);
void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name);
void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup);
void op_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets);
void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set, struct fuse_file_info *fi);
void op_readlink(fuse_req_t req, fuse_ino_t ino);
void op_statfs(fuse_req_t req, fuse_ino_t ino);
void op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value, size_t size, int flags);
void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size);
void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size);
void op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name);

void op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev);
void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode);
void op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name);
void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname);
void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name);
void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name);
void op_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent, const char *newname,
               unsigned int flags);
void op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, struct fuse_file_info *fi);

void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi);
void op_write_buf(fuse_req_t req, fuse_ino_t ino, struct fuse_bufvec *bufv, off_t off, struct fuse_file_info *fi);
void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi);
void op_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset, off_t length, struct fuse_file_info *fi);
void op_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence, struct fuse_file_info *fi);
void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi);
void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi);
void op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void op_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi);

/* Shared by the handlers. */
struct ossb_fusefs *req_fs(fuse_req_t req);
/* Reply an error (r <= 0) of a handler that changes the upper: an I/O error there (EIO,
 * ESTALE, EUCLEAN) is an internal failure, reported at unmount. */
void reply_change_err(fuse_req_t req, struct ossb_fusefs *fs, int r);
void reply_entry_for(fuse_req_t req, struct ossb_fusefs *fs, struct fnode *n, const struct stat *st);
/* Build the merged listing of a directory (cached on the node); referenced. */
int dir_listing(struct ossb_fusefs *fs, struct fnode *dir, struct dlist **ret);
/* Whether the merged directory has no entries. */
int dir_is_empty(struct ossb_fusefs *fs, struct fnode *dir, bool *ret);
/* Apply the caller's ownership to a new upper entry (setgid directories honoured). */
int set_new_owner(struct ossb_fusefs *fs, fuse_req_t req, struct fnode *dir, int pfd, const char *name,
                  mode_t mode, bool *ret_override);
/* Free the handles the kernel never released (after the unmount). */
void file_handles_free_all(struct ossb_fusefs *fs);
void dir_handles_free_all(struct ossb_fusefs *fs);
/* An open file's upper fd (ops-file.c's handle), or -1. */
int file_handle_fd(struct fuse_file_info *fi);
/* Make fi's handle for a file just created in the upper (fd taken); drop it again. */
int file_handle_new_upper(struct ossb_fusefs *fs, struct fnode *n, int fd, struct fuse_file_info *fi);
void file_handle_drop(struct ossb_fusefs *fs, struct fuse_file_info *fi);
/* Open flags for an upper file (write-only becomes read-write, no append: writeback cache). */
int upper_open_flags(int flags);
/* Forget the copy-up record of an upper inode that no longer exists. */
void ino_forget_upper(struct ossb_fusefs *fs, uint64_t uino);
bool bad_name(const char *name);
/* The merged lookup of dir/name with its node (referenced); -ENOENT when absent. */
int lookup_node(struct ossb_fusefs *fs, struct fnode *dir, const char *name, struct fnode **ret, struct stat *ret_st);

/* The local directory source's openat2 fallback, for tests. */
void fsrc_dir_force_fallback(bool force);

#endif
