/* common/userns.h - rootless ossb: the process enters a user namespace (and a mount namespace)
 * in which it is root, so that COPY --chown, layer unpacking and RUN keep file owners and may
 * mount, as buildah unshare and rootlesskit do.
 *
 * Owns: the id maps of ossb's own user namespace and the subordinate-id files' parsing.
 *
 * How: ossb_userns_enter forks a helper that stays in the caller's user namespace, then the
 * process itself unshares CLONE_NEWUSER | CLONE_NEWNS (so its pid, stdio, exit status and
 * signals stay what the caller sees: nothing is forwarded); the helper writes the maps of
 * /proc/PID, and the process then makes its mount tree private (nothing ossb mounts shows
 * outside, and every mount goes away with the process).
 *   full mapping    ids 0 = the caller's uid/gid, 1.. = the caller's subordinate ranges of
 *                   /etc/subuid and /etc/subgid (entries by user name or by number, ranges in
 *                   file order), written by the newuidmap/newgidmap setuid helpers (Debian's
 *                   uidmap package) found in $PATH.
 *   single-id       only the caller's uid/gid, mapped to 0 (setgroups denied), written by the
 *                   helper itself: when the user has no subordinate ids, the helpers are
 *                   missing, or one fails.  Files owned by other ids cannot be created: a
 *                   layer's other owners are flattened to root when unpacked.
 * Must be called while the process has a single thread (the kernel refuses unshare of a user
 * namespace otherwise): first thing in main().
 */
#ifndef OSSB_COMMON_USERNS_H
#define OSSB_COMMON_USERNS_H

#include <stdbool.h>
#include <stddef.h>

#include "common/error.h"

enum ossb_userns_mode {
        OSSB_USERNS_NONE = 0,    /* not entered: already root (as root, or inside a namespace) */
        OSSB_USERNS_DISABLED,    /* not entered: $OSSB_NO_USERNS is set (and not "0") */
        OSSB_USERNS_UNAVAILABLE, /* not entered: creating it failed (sysctl, seccomp, threads,
                                  * a non-dumpable process); note says why */
        OSSB_USERNS_FULL,        /* entered with the subordinate ranges mapped */
        OSSB_USERNS_SINGLE,      /* entered with only the caller's ids; note says why */
};

/* Enter the namespace when the effective uid is not 0.  *ret_mode says what happened;
 * *ret_note (owned by the caller, may be NULL) explains UNAVAILABLE and SINGLE, e.g. "no
 * subordinate ids for alice in /etc/subuid".  Returns 0 in every mode above; negative (err set)
 * only when the process unshared but could not be given maps or be made root in the new
 * namespace: it cannot go on then (its files would belong to the overflow id). */
int ossb_userns_enter(enum ossb_userns_mode *ret_mode, char **ret_note, struct ossb_error **err);

/* The name of a mode ("none", "disabled", "unavailable", "full", "single-id"). */
const char *ossb_userns_mode_name(enum ossb_userns_mode mode);

/* ---- exposed for the unit tests ---- */

#define OSSB_SUBID_MAX_RANGES 32

struct ossb_subid_range {
        unsigned long start;
        unsigned long count;
};

/* The ranges of `text` (the content of /etc/subuid or /etc/subgid: "NAME-OR-ID:START:COUNT"
 * lines) that belong to `user` (may be NULL) or to the number `id`, in file order, at most
 * `max`.  Malformed lines, a count of 0 and ranges beyond 2^32-1 are skipped (as newuidmap
 * ignores them).  Returns the number of ranges stored. */
size_t ossb_subid_parse(const char *text, const char *user, unsigned long id, struct ossb_subid_range *ranges,
                        size_t max);

/* The id map arguments of newuidmap/newgidmap for `id` and its ranges: "0 ID 1 1 S1 C1 ..."
 * (inside ids follow each other from 1; ranges that would pass 2^32-1 inside are dropped).
 * NULL on ENOMEM.  The caller owns the string. */
char *ossb_userns_map_args(unsigned long id, const struct ossb_subid_range *ranges, size_t n);

#endif
