#!/usr/bin/env python3
"""tests/fuse/posix-checks.py - pjdfstest-style POSIX and overlay-semantics checks of a mounted
overlay (kernel overlayfs, fuse-overlayfs, or OSSB's fusefs-mount), over lower layers this script
makes itself.

    posix-checks.py --backend kernel|fuse-overlayfs|ossb [--workdir DIR] [--only REGEX]
                    [--list] [--keep] [--timeout SECONDS] [--userxattr] [--no-unshare]

Each check owns one directory, CHECK, in every layer: it first writes what it needs into the two
lower layers (top-most L0, bottom L1), then all of them run against one mount of
L0:L1 + upper (made with tests/fuse/mount-backend.sh), and some look at the upper directory
after the unmount (the on-disk format OSSB's snapshotter reads).  Checks that compare with
"the reference" do the same operations on a plain directory of the host file system and demand
the same outcome, so that kernel-version-dependent details (suid clearing, killpriv) are judged
against the kernel itself.

Output: one line per check, "PASS name", "FAIL name: reason" or "SKIP name: reason", then
"posix-checks: N passed, N failed, N skipped".  Exit status 1 on any FAIL, 2 on usage errors.

Runs best as root.  As another user the kernel and ossb backends need a user namespace: the
script re-executes itself under `unshare --user --map-root-user --mount` (unless --no-unshare),
where checks that need other ids, trusted.* xattrs or drop_caches are skipped.  Python 3
standard library only.
"""

import argparse
import errno
import hashlib
import mmap
import os
import random
import re
import shutil
import stat
import sys
import tempfile
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from posixfs import (CAP_BLOB, CHECKS, FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, RENAME_EXCHANGE,  # noqa: E402
                     RENAME_NOREPLACE, Env, Fail, Skip, T, _is_whiteout, _xattr,
                     backend_cmd, check, errname, fallocate, journal_check, mode_of, probe_other_user,
                     read, renameat2, step, write)

# ---------------------------------------------------------------------------------------------
# modes and owners


@check("chmod-lower-file")
def _(t):
    t.lw(1, "f", b"data", mode=0o644, owner=(1000, 1000) if t.env.full_ids else None)
    os.utime(t.lp(1, "f"), (1000000000, 1000000000))
    yield
    before = os.lstat(t.m("f"))
    os.chmod(t.m("f"), 0o600)
    st = os.lstat(t.m("f"))
    t.eq(stat.S_IMODE(st.st_mode), 0o600, "mode after chmod")
    t.eq((st.st_uid, st.st_gid), (before.st_uid, before.st_gid), "owner after chmod")
    t.eq(st.st_mtime, 1000000000, "mtime after chmod (copy-up must keep it)")
    t.eq(read(t.m("f")), b"data", "content after chmod")


@check("chmod-lower-dir")
def _(t):
    t.lw(1, "d/child", b"c")
    os.chmod(t.lp(1, "d"), 0o755)
    yield
    os.chmod(t.m("d"), 0o710)
    t.eq(mode_of(t.m("d")), 0o710, "dir mode after chmod")
    t.listing(t.m("d"), ["child"])
    t.eq(read(t.m("d/child")), b"c", "child content")


@check("chown-lower-file")
def _(t):
    t.need_ids()
    t.lw(1, "f", b"data", mode=0o640)
    os.symlink("f", t.lp(1, "sym"))
    yield
    os.chown(t.m("f"), 1234, 5678)
    st = os.lstat(t.m("f"))
    t.eq((st.st_uid, st.st_gid), (1234, 5678), "owner after chown")
    t.eq(stat.S_IMODE(st.st_mode), 0o640, "mode after chown")
    t.eq(read(t.m("f")), b"data", "content after chown")
    os.lchown(t.m("sym"), 4321, 8765)
    st = os.lstat(t.m("sym"))
    t.eq((st.st_uid, st.st_gid), (4321, 8765), "symlink owner after lchown")
    t.eq(os.readlink(t.m("sym")), "f", "symlink target after lchown")
    t.eq(os.stat(t.m("f")).st_uid, 1234, "lchown must not follow the link")
    yield
    st = os.lstat(t.u("f"))
    if (st.st_uid, st.st_gid) != (1234, 5678):
        ov = _xattr(t.u("f"), "user.containers.override_stat")
        t.true(ov is not None and ov.startswith(b"1234:5678:"),
               "upper file has owner %d:%d and no override xattr" % (st.st_uid, st.st_gid))


@check("suid-kept-on-copy-up")
def _(t):
    t.need_root()
    t.lw(1, "f", b"#!/bin/sh\n", mode=0o4755, ref=True)
    t.lw(1, "g", b"#!/bin/sh\n", mode=0o2755, ref=True)
    yield
    for n in ("f", "g"):
        for p in (t.m(n), t.r(n)):
            os.utime(p, (2000000000, 2000000000))
        t.eq(mode_of(t.m(n)), mode_of(t.r(n)), n + ": mode after utime (metadata copy-up)")
        for p in (t.m(n), t.r(n)):
            write(p, "# root appends\n", "ab")
        t.eq(mode_of(t.m(n)), mode_of(t.r(n)), n + ": mode after root's write (data copy-up)")


@check("suid-cleared-on-chown")
def _(t):
    t.need_ids()
    t.lw(1, "f", b"x", mode=0o6755, ref=True)
    yield
    for p in (t.m("f"), t.r("f")):
        os.chown(p, 1, 1)
    t.eq(mode_of(t.m("f")), mode_of(t.r("f")), "mode after chown (as the reference fs)")
    t.true(mode_of(t.m("f")) & 0o6000 == 0, "setuid/setgid survived chown: %o" % mode_of(t.m("f")))


@check("suid-cleared-on-write-by-other")
def _(t):
    t.need_ids()
    t.lw(1, "f", b"x", mode=0o4777, ref=True)
    for p in (t.lp(1, ""), t.r("")):
        os.chmod(p, 0o755)
    yield
    t.need_other_user()
    for p in (t.m("f"), t.r("f")):
        e = t.as_user(lambda p=p: write(p, "y", "ab"))
        t.eq(e and errname(e), None, "append by uid 65534 to " + p)
    t.eq(mode_of(t.m("f")), mode_of(t.r("f")), "mode after a write by uid 65534 (as the reference fs)")
    t.eq(read(t.m("f")), b"xy", "content")


@check("suid-cleared-on-truncate-by-other")
def _(t):
    t.need_ids()
    for n in ("f", "g", "h"):
        t.lw(1, n, b"xyz", mode=0o6777, ref=True)
    t.lw(1, "k", b"xyz", mode=0o2767, ref=True)  # setgid without group exec: kept
    for p in (t.lp(1, ""), t.r("")):
        os.chmod(p, 0o755)
    yield
    t.need_other_user()
    for base in (t.m, t.r):
        e = t.as_user(lambda p=base("f"): os.truncate(p, 1))
        t.eq(e and errname(e), None, "truncate by uid 65534")
        e = t.as_user(lambda p=base("g"): os.close(os.open(p, os.O_WRONLY | os.O_TRUNC)))
        t.eq(e and errname(e), None, "open(O_TRUNC) by uid 65534")
        e = t.as_user(lambda p=base("h"): write(p, "w", "ab"))
        t.eq(e and errname(e), None, "append by uid 65534")
        e = t.as_user(lambda p=base("k"): write(p, "w", "ab"))
        t.eq(e and errname(e), None, "append by uid 65534")
    for n in ("f", "g", "h", "k"):
        t.eq(mode_of(t.m(n)), mode_of(t.r(n)), n + ": mode as the reference fs")
    t.true(mode_of(t.m("g")) & 0o6000 == 0, "setuid/setgid survived open(O_TRUNC) by another user")


@check("suid-cleared-after-earlier-writes")
def _(t):
    # A write first finds nothing to clear (the kernel may remember that for the inode), then
    # the file becomes setuid or gets a capability: the next write must still clear them.
    t.need_ids()
    t.lw(1, "f", b"x", mode=0o777, ref=True)
    t.lw(1, "c", b"x", mode=0o755, ref=True)
    for p in (t.lp(1, ""), t.r("")):
        os.chmod(p, 0o755)
    yield
    t.need_other_user()
    for base in (t.m, t.r):
        write(base("f"), "a", "ab")
        write(base("c"), "a", "ab")
        os.chmod(base("f"), 0o4777)
        e = t.as_user(lambda p=base("f"): write(p, "b", "ab"))
        t.eq(e and errname(e), None, "append by uid 65534")
    t.eq(mode_of(t.m("f")), mode_of(t.r("f")), "mode after chmod u+s and another user's write")
    t.eq(read(t.m("f")), b"xab", "content")
    try:
        for base in (t.m, t.r):
            os.setxattr(base("c"), "security.capability", CAP_BLOB)
    except OSError as e:
        raise Skip("cannot set security.capability: " + errname(e.errno))
    for base in (t.m, t.r):
        write(base("c"), "b", "ab")
    t.eq(_xattr(t.m("c"), "security.capability"), _xattr(t.r("c"), "security.capability"),
         "capability after a later write, as the reference fs")


@check("setgid-dir-inherits-group")
def _(t):
    t.need_ids()
    t.ld(1, "d", mode=0o2775, owner=(0, 4321))
    os.chmod(t.lp(1, "d"), 0o2775)
    yield
    write(t.m("d/f"), "x")
    os.mkdir(t.m("d/sub"))
    t.eq(os.lstat(t.m("d/f")).st_gid, 4321, "gid of a file created in a setgid dir")
    st = os.lstat(t.m("d/sub"))
    t.eq(st.st_gid, 4321, "gid of a dir created in a setgid dir")
    t.true(st.st_mode & stat.S_ISGID, "subdir of a setgid dir lacks setgid")


@check("umask-applies")
def _(t):
    t.ld(1, "d")
    yield
    old = os.umask(0o027)
    try:
        os.close(os.open(t.m("d/f"), os.O_CREAT | os.O_WRONLY, 0o666))
        os.mkdir(t.m("d/sub"), 0o777)
    finally:
        os.umask(old)
    t.eq(mode_of(t.m("d/f")), 0o640, "file mode with umask 027")
    t.eq(mode_of(t.m("d/sub")), 0o750, "dir mode with umask 027")


@check("permissions-enforced-for-other-user")
def _(t):
    t.need_ids()
    t.lw(1, "secret", b"s", mode=0o600)
    t.ld(1, "private", mode=0o700)
    t.lw(1, "private/f", b"p")
    t.lw(1, "public", b"p", mode=0o644)
    os.chmod(t.lp(1, ""), 0o755)
    yield
    t.need_other_user()
    t.eq(t.as_user(lambda: read(t.m("public"))), None, "uid 65534 reads a 0644 file")
    t.eq(errname(t.as_user(lambda: read(t.m("secret"))) or 0), "EACCES", "uid 65534 reads a 0600 root file")
    t.eq(errname(t.as_user(lambda: os.listdir(t.m("private"))) or 0), "EACCES", "uid 65534 lists a 0700 dir")
    t.eq(errname(t.as_user(lambda: write(t.m("public"), "w", "ab")) or 0), "EACCES", "uid 65534 writes a 0644 file")
    t.eq(errname(t.as_user(lambda: os.chmod(t.m("public"), 0o666)) or 0), "EPERM", "uid 65534 chmods root's file")
    t.eq(errname(t.as_user(lambda: os.unlink(t.m("public"))) or 0), "EACCES", "uid 65534 unlinks in root's 0755 dir")
    t.eq(read(t.m("public")), b"p", "file intact")


# ---------------------------------------------------------------------------------------------
# link, unlink, rename


@check("rename-file-over-existing")
def _(t):
    t.lw(1, "a", b"A")
    t.lw(1, "b", b"B")
    t.lw(1, "c", b"C")
    yield
    os.rename(t.m("a"), t.m("b"))
    t.eq(read(t.m("b")), b"A", "target content")
    t.noent(t.m("a"))
    write(t.m("n"), "N")
    os.rename(t.m("n"), t.m("c"))
    t.eq(read(t.m("c")), b"N", "upper file renamed over a lower file")
    t.listing(t.m(""), ["b", "c"])


@check("rename-file-between-dirs")
def _(t):
    t.lw(1, "x/f", b"F")
    t.ld(1, "y")
    yield
    os.rename(t.m("x/f"), t.m("y/f"))
    t.eq(read(t.m("y/f")), b"F", "moved content")
    t.listing(t.m("x"), [])
    t.listing(t.m("y"), ["f"])


@check("rename-dir-over-empty-dir")
def _(t):
    t.ld(1, "empty")
    yield
    os.mkdir(t.m("src"))
    write(t.m("src/z"), "z")
    os.rename(t.m("src"), t.m("empty"))
    t.listing(t.m("empty"), ["z"])
    t.noent(t.m("src"))


@check("rename-dir-over-emptied-lower-dir")
def _(t):
    t.lw(1, "t/x", b"x")
    t.lw(1, "t/y", b"y")
    t.lw(0, "t/w", b"w")
    yield
    for n in ("x", "y", "w"):
        os.unlink(t.m("t", n))
    t.listing(t.m("t"), [])
    os.mkdir(t.m("src"))
    write(t.m("src/z"), "z")
    os.rename(t.m("src"), t.m("t"))
    t.listing(t.m("t"), ["z"])
    for n in ("x", "y", "w"):
        t.noent(t.m("t", n))


@check("rename-dir-over-nonempty-dir")
def _(t):
    t.lw(1, "full/x", b"x")
    yield
    os.mkdir(t.m("src"))
    t.errno((errno.ENOTEMPTY, errno.EEXIST), os.rename, t.m("src"), t.m("full"), what="rename dir over non-empty lower dir")
    os.mkdir(t.m("full2"))
    write(t.m("full2/y"), "y")
    t.errno((errno.ENOTEMPTY, errno.EEXIST), os.rename, t.m("src"), t.m("full2"), what="rename dir over non-empty upper dir")
    t.listing(t.m("full"), ["x"])
    t.listing(t.m("src"), [])


@check("rename-type-mismatch")
def _(t):
    t.lw(1, "file", b"f")
    t.lw(1, "dir/x", b"x")
    t.ld(1, "emptydir")
    yield
    t.errno(errno.EISDIR, os.rename, t.m("file"), t.m("emptydir"), what="rename file over dir")
    t.errno(errno.ENOTDIR, os.rename, t.m("emptydir"), t.m("file"), what="rename dir over file")
    t.errno(errno.EINVAL, os.rename, t.m("dir"), t.m("dir/sub"), what="rename dir into itself")
    t.eq(read(t.m("file")), b"f", "file intact")


@check("rmdir-lower-dir")
def _(t):
    t.lw(1, "d/a", b"a")
    t.lw(0, "d/b", b"b")
    yield
    t.errno((errno.ENOTEMPTY, errno.EEXIST), os.rmdir, t.m("d"), what="rmdir of a non-empty merged dir")
    os.unlink(t.m("d/a"))
    t.errno((errno.ENOTEMPTY, errno.EEXIST), os.rmdir, t.m("d"), what="rmdir with one lower entry left")
    os.unlink(t.m("d/b"))
    os.rmdir(t.m("d"))
    t.noent(t.m("d"))


@check("rename-noreplace")
def _(t):
    t.lw(1, "a", b"A")
    t.lw(1, "b", b"B")
    t.lw(1, "gone", b"G")
    yield
    t.errno(errno.EEXIST, renameat2, t.m("a"), t.m("b"), RENAME_NOREPLACE, what="NOREPLACE over a lower file")
    t.eq((read(t.m("a")), read(t.m("b"))), (b"A", b"B"), "both intact")
    renameat2(t.m("a"), t.m("c"), RENAME_NOREPLACE)
    t.eq(read(t.m("c")), b"A", "NOREPLACE to a new name")
    t.noent(t.m("a"))
    os.unlink(t.m("gone"))
    renameat2(t.m("c"), t.m("gone"), RENAME_NOREPLACE)
    t.eq(read(t.m("gone")), b"A", "NOREPLACE onto a deleted (whited-out) name")
    t.listing(t.m(""), ["b", "gone"])


@check("rename-exchange")
def _(t):
    t.lw(1, "a", b"A")
    t.lw(1, "b", b"B")
    t.lw(1, "f", b"F")
    yield
    renameat2(t.m("a"), t.m("b"), RENAME_EXCHANGE)
    t.eq((read(t.m("a")), read(t.m("b"))), (b"B", b"A"), "contents after exchange of two lower files")
    os.mkdir(t.m("d"))
    write(t.m("d/in"), "in")
    renameat2(t.m("f"), t.m("d"), RENAME_EXCHANGE)
    t.true(stat.S_ISDIR(os.lstat(t.m("f")).st_mode), "f is the dir after exchange")
    t.eq(read(t.m("f/in")), b"in", "dir content after exchange")
    t.eq(read(t.m("d")), b"F", "file content after exchange")
    t.errno(errno.ENOENT, renameat2, t.m("a"), t.m("missing"), RENAME_EXCHANGE, what="exchange with a missing name")
    t.listing(t.m(""), ["a", "b", "d", "f"])


def _dir_rename_or_exdev(t, src, dst):
    """Rename a directory that has lower content.  Kernel overlayfs mounted with
    redirect_dir=off answers EXDEV by design (callers copy); every other backend must rename."""
    try:
        os.rename(src, dst)
    except OSError as e:
        if e.errno == errno.EXDEV:
            if t.env.backend == "kernel":
                raise Skip("EXDEV: kernel overlayfs with redirect_dir=off does not rename lower dirs")
            raise Fail("EXDEV renaming a lower dir (ossb's contract: copied up whole and renamed)")
        raise


@check("rename-lower-dir-with-content")
def _(t):
    t.lw(1, "d/f", b"F")
    t.lw(1, "d/sub/g", b"G")
    t.lw(0, "d/top", b"T")
    os.symlink("sub/g", t.lp(1, "d/link"))
    yield
    _dir_rename_or_exdev(t, t.m("d"), t.m("d2"))
    t.noent(t.m("d"))
    t.listing(t.m("d2"), ["f", "sub", "top", "link"])
    t.eq(read(t.m("d2/f")), b"F", "d2/f")
    t.eq(read(t.m("d2/sub/g")), b"G", "d2/sub/g")
    t.eq(read(t.m("d2/top")), b"T", "d2/top (from the upper lower layer)")
    t.eq(read(t.m("d2/link")), b"G", "d2/link")
    os.mkdir(t.m("d"))
    t.listing(t.m("d"), [])
    os.rename(t.m("d2"), t.m("d3"))
    t.listing(t.m("d3"), ["f", "sub", "top", "link"])


@check("rename-hardlinked-lower-file")
def _(t):
    t.lw(1, "h1", b"H")
    os.link(t.lp(1, "h1"), t.lp(1, "h2"))
    yield
    os.rename(t.m("h1"), t.m("h3"))
    t.noent(t.m("h1"))
    t.eq(read(t.m("h3")), b"H", "renamed name")
    t.eq(read(t.m("h2")), b"H", "other name")
    t.listing(t.m(""), ["h2", "h3"])


@check("unlink-lower-file")
def _(t):
    t.lw(1, "f", b"F")
    t.lw(0, "g", b"G")
    t.lw(1, "keep", b"K")
    yield
    os.unlink(t.m("f"))
    os.unlink(t.m("g"))
    t.noent(t.m("f"))
    t.noent(t.m("g"))
    t.errno(errno.ENOENT, os.unlink, t.m("f"), what="second unlink")
    t.listing(t.m(""), ["keep"])


@check("open-file-survives-unlink")
def _(t):
    t.lw(1, "lower", b"L" * 10000)
    yield
    fd = os.open(t.m("lower"), os.O_RDONLY)
    try:
        os.unlink(t.m("lower"))
        t.eq(os.pread(fd, 10000, 0), b"L" * 10000, "read of an unlinked lower file")
    finally:
        os.close(fd)
    fd = os.open(t.m("upper"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.unlink(t.m("upper"))
        os.write(fd, b"still here")
        t.eq(os.pread(fd, 100, 0), b"still here", "read of an unlinked upper file")
        t.eq(os.fstat(fd).st_nlink, 0, "st_nlink of an unlinked open file")
    finally:
        os.close(fd)
    t.listing(t.m(""), [])


# ---------------------------------------------------------------------------------------------
# hard links spanning layers


@check("hardlink-lower-pair")
def _(t):
    t.lw(1, "h1", b"H")
    os.link(t.lp(1, "h1"), t.lp(1, "h2"))
    yield
    a, b = os.lstat(t.m("h1")), os.lstat(t.m("h2"))
    t.eq(a.st_ino, b.st_ino, "st_ino of two names of one lower inode")
    t.eq((a.st_nlink, b.st_nlink), (2, 2), "st_nlink")


@check("hardlink-lower-pair-after-copy-up")
def _(t):
    t.lw(1, "h1", b"H")
    os.link(t.lp(1, "h1"), t.lp(1, "h2"))
    yield
    write(t.m("h1"), "+", "ab")
    t.eq(read(t.m("h2")), b"H+", "write through one name seen through the other")
    a, b = os.lstat(t.m("h1")), os.lstat(t.m("h2"))
    t.eq(a.st_ino, b.st_ino, "st_ino of both names after copy-up")
    t.eq((a.st_nlink, b.st_nlink), (2, 2), "st_nlink after copy-up")


@check("hardlink-to-lower-file")
def _(t):
    t.lw(1, "f", b"F")
    yield
    os.link(t.m("f"), t.m("g"))
    a, b = os.lstat(t.m("f")), os.lstat(t.m("g"))
    t.eq(a.st_ino, b.st_ino, "st_ino of the new link and the lower file")
    t.eq((a.st_nlink, b.st_nlink), (2, 2), "st_nlink")
    write(t.m("g"), "+", "ab")
    t.eq(read(t.m("f")), b"F+", "write through the new link seen through the old name")
    os.unlink(t.m("f"))
    t.eq(os.lstat(t.m("g")).st_nlink, 1, "st_nlink after unlinking one name")


@check("hardlink-upper")
def _(t):
    yield
    write(t.m("f"), "F")
    os.link(t.m("f"), t.m("g"))
    t.eq(os.lstat(t.m("g")).st_nlink, 2, "st_nlink")
    t.eq(os.lstat(t.m("f")).st_ino, os.lstat(t.m("g")).st_ino, "st_ino")
    t.errno(errno.EEXIST, os.link, t.m("f"), t.m("g"), what="link over an existing name")
    os.mkdir(t.m("d"))
    t.errno(errno.EPERM, os.link, t.m("d"), t.m("d2"), what="link of a directory")


# ---------------------------------------------------------------------------------------------
# symlinks


@check("symlink-create")
def _(t):
    t.lw(1, "target", b"T")
    yield
    long_target = "x/" * 2000 + "end"
    cases = {"rel": "target", "abs": "/nonexistent/absolute/target", "dangling": "nowhere",
             "dot": "./target", "long": long_target}
    for n, target in cases.items():
        os.symlink(target, t.m(n))
    for n, target in cases.items():
        t.eq(os.readlink(t.m(n)), target, "readlink " + n)
        st = os.lstat(t.m(n))
        t.true(stat.S_ISLNK(st.st_mode), n + " is not a symlink")
        t.eq(st.st_size, len(target), "lstat size of " + n)
    t.eq(read(t.m("rel")), b"T", "read through a relative symlink to a lower file")
    t.errno(errno.ENOENT, os.stat, t.m("dangling"), what="stat of a dangling symlink")
    t.errno(errno.ENOENT, os.stat, t.m("abs"), what="absolute target resolves outside the mount")
    t.errno(errno.EEXIST, os.symlink, "x", t.m("rel"), what="symlink over an existing name")


@check("symlink-lower")
def _(t):
    t.lw(1, "target", b"T")
    t.ld(1, "dir")
    os.symlink("target", t.lp(1, "rel"))
    os.symlink("/etc/hostname-does-not-exist", t.lp(1, "abs"))
    os.symlink("missing", t.lp(1, "dangling"))
    os.symlink("../target", t.lp(1, "dir/up"))
    yield
    t.eq(os.readlink(t.m("rel")), "target", "readlink rel")
    t.eq(os.readlink(t.m("abs")), "/etc/hostname-does-not-exist", "readlink abs")
    t.eq(os.readlink(t.m("dangling")), "missing", "readlink dangling")
    t.eq(read(t.m("dir/up")), b"T", "read through ../ symlink")
    write(t.m("missing"), "now")
    t.eq(read(t.m("dangling")), b"now", "dangling symlink resolves once the target exists")
    os.rename(t.m("rel"), t.m("rel2"))
    t.eq(os.readlink(t.m("rel2")), "target", "readlink after rename")
    os.unlink(t.m("abs"))
    t.noent(t.m("abs"))


@check("symlink-loop")
def _(t):
    os.makedirs(t.lp(1, ""), exist_ok=True)
    os.symlink("b", t.lp(1, "a"))
    os.symlink("a", t.lp(1, "b"))
    yield
    t.errno(errno.ELOOP, os.stat, t.m("a"), what="stat of a symlink loop")
    t.errno(errno.ELOOP, os.open, t.m("a"), os.O_RDONLY | os.O_NOFOLLOW, what="O_NOFOLLOW on a symlink")


# ---------------------------------------------------------------------------------------------
# names of NAME_MAX bytes


@check("name-max")
def _(t):
    n255, n255b, n256 = "a" * 255, "b" * 253 + "\u00e9", "c" * 256  # n255b: 255 bytes in UTF-8
    t.ld(1, "d")
    t.lw(1, "d/" + "L" * 255, b"lower")
    t.ld(1, "d/" + "D" * 255)
    yield
    write(t.m("d", n255), "x")
    t.eq(read(t.m("d", n255)), b"x", "255-byte name")
    os.mkdir(t.m("d", n255b))
    t.eq(read(t.m("d", "L" * 255)), b"lower", "255-byte lower name")
    os.rename(t.m("d", "L" * 255), t.m("d", "M" * 255))
    t.eq(read(t.m("d", "M" * 255)), b"lower", "rename between 255-byte names")
    os.rmdir(t.m("d", "D" * 255))
    t.listing(t.m("d"), [n255, n255b, "M" * 255])
    for what, fn, args in (("open O_CREAT", os.open, (t.m("d", n256), os.O_CREAT | os.O_WRONLY)),
                           ("mkdir", os.mkdir, (t.m("d", n256),)),
                           ("lstat", os.lstat, (t.m("d", n256),)),
                           ("symlink", os.symlink, ("x", t.m("d", n256))),
                           ("rename to", os.rename, (t.m("d", n255), t.m("d", n256))),
                           ("link", os.link, (t.m("d", n255), t.m("d", n256)))):
        t.errno(errno.ENAMETOOLONG, fn, *args, what=what + " with a 256-byte name")
    t.eq(os.statvfs(t.m("d")).f_namemax >= 255, True, "f_namemax >= 255")


# ---------------------------------------------------------------------------------------------
# deep trees


DEPTH = 120


@check("deep-tree-lower")
def _(t):
    rel = "/".join(["d"] * DEPTH)
    t.lw(1, rel + "/f", b"deep")
    yield
    p = t.m(rel)
    t.eq(read(p + "/f"), b"deep", "file at depth %d" % DEPTH)
    write(p + "/f", "+", "ab")
    write(p + "/new", "n")
    t.eq(read(p + "/f"), b"deep+", "copy-up at depth %d" % DEPTH)
    t.eq(read(p + "/new"), b"n", "new file at depth %d" % DEPTH)
    shutil.rmtree(t.m("d"))
    t.noent(t.m("d"))


@check("deep-tree-create")
def _(t):
    depth = 150
    yield
    fd = os.open(t.m(""), os.O_RDONLY | os.O_DIRECTORY)
    try:
        for i in range(depth):
            os.mkdir("n%d" % i, dir_fd=fd)
            nfd = os.open("n%d" % i, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = nfd
        wfd = os.open("leaf", os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=fd)
        os.write(wfd, b"leaf")
        os.close(wfd)
    finally:
        os.close(fd)
    rel = "/".join("n%d" % i for i in range(depth))
    t.eq(read(t.m(rel, "leaf")), b"leaf", "file at depth %d" % depth)
    os.rename(t.m("n0"), t.m("top"))
    t.eq(read(t.m("top", rel[3:], "leaf")), b"leaf", "after renaming the top dir")
    shutil.rmtree(t.m("top"))
    t.listing(t.m(""), [])


# ---------------------------------------------------------------------------------------------
# whiteouts and opaque directories, as seen through the mount


@check("delete-then-recreate-file")
def _(t):
    t.lw(1, "f", b"old content that is longer", mode=0o600)
    yield
    os.unlink(t.m("f"))
    write(t.m("f"), "new")
    t.eq(read(t.m("f")), b"new", "recreated content")
    t.eq(os.lstat(t.m("f")).st_size, 3, "recreated size")
    t.eq(mode_of(t.m("f")), 0o644, "recreated mode (fresh, umask 022)")
    t.listing(t.m(""), ["f"])
    yield
    t.true(not _is_whiteout(t.u("f")), "upper still holds a whiteout for a recreated name")


@check("rmdir-then-mkdir-is-empty")
def _(t):
    t.lw(1, "d/a", b"a")
    t.lw(1, "d/b/c", b"c")
    t.lw(0, "d/top", b"t")
    yield
    shutil.rmtree(t.m("d"))
    t.noent(t.m("d"))
    os.mkdir(t.m("d"))
    t.listing(t.m("d"), [])
    for n in ("a", "b", "b/c", "top"):
        t.noent(t.m("d", n))
    write(t.m("d/a"), "fresh")
    t.eq(read(t.m("d/a")), b"fresh", "new file in recreated dir")
    t.listing(t.m("d"), ["a"])


@check("readdir-merges-layers")
def _(t):
    t.lw(1, "d/a", b"1a")
    t.lw(1, "d/b", b"1b")
    t.lw(1, "d/c", b"1c")
    t.lw(0, "d/c", b"0c")
    t.lw(0, "d/e", b"0e")
    t.lw(1, "d/sub/x", b"x")
    t.lw(0, "d/sub/y", b"y")
    yield
    t.listing(t.m("d"), ["a", "b", "c", "e", "sub"])
    t.eq(read(t.m("d/c")), b"0c", "the top layer wins")
    t.listing(t.m("d/sub"), ["x", "y"])
    write(t.m("d/f"), "new")
    t.listing(t.m("d"), ["a", "b", "c", "e", "f", "sub"])


@check("file-and-dir-across-layers")
def _(t):
    t.lw(1, "x/inside", b"i")
    t.lw(0, "x", b"file on top")
    t.lw(1, "y", b"file below")
    t.lw(0, "y/only", b"o")
    yield
    t.true(stat.S_ISREG(os.lstat(t.m("x")).st_mode), "a file on top hides the dir below")
    t.eq(read(t.m("x")), b"file on top", "x")
    t.true(stat.S_ISDIR(os.lstat(t.m("y")).st_mode), "a dir on top hides the file below")
    t.listing(t.m("y"), ["only"])


@check("lower-whiteout-hides")
def _(t):
    t.need(t.env.can_mknod_whiteout, "cannot mknod a 0/0 character device here")
    t.lw(1, "f", b"f")
    t.lw(1, "d/x", b"x")
    t.lw(1, "keep", b"k")
    os.makedirs(t.lp(0, ""), exist_ok=True)
    for n in ("f", "d"):
        os.mknod(t.lp(0, n), stat.S_IFCHR | 0o600, 0)
    yield
    t.noent(t.m("f"))
    t.noent(t.m("d"))
    t.listing(t.m(""), ["keep"])
    write(t.m("f"), "again")
    t.eq(read(t.m("f")), b"again", "create over a lower whiteout")
    os.mkdir(t.m("d"))
    t.listing(t.m("d"), [])


@check("lower-opaque-dir-hides")
def _(t):
    name = t.env.xprefix + "overlay.opaque"
    t.need(t.env.can_trusted or t.env.userxattr, "cannot set trusted.* xattrs (and not userxattr)")
    t.lw(1, "d/below", b"b")
    t.lw(0, "d/above", b"a")
    os.setxattr(t.lp(0, "d"), name, b"y")
    yield
    t.listing(t.m("d"), ["above"])
    t.noent(t.m("d/below"))
    names = os.listxattr(t.m("d"))
    t.true(not any(n.startswith("trusted.overlay.") or n.startswith("user.overlay.") for n in names),
           "overlay-private xattrs visible through the mount: %s" % names)


# ---------------------------------------------------------------------------------------------
# xattrs


@check("xattr-user")
def _(t):
    t.need(t.env.can_user_xattr, "the host fs has no user.* xattrs")
    t.lw(1, "f", b"f")
    t.ld(1, "d")
    os.setxattr(t.lp(1, "f"), "user.lower", b"L")
    yield
    t.eq(os.getxattr(t.m("f"), "user.lower"), b"L", "lower xattr through the mount")
    os.setxattr(t.m("f"), "user.new", b"N" * 1000)
    t.eq(os.getxattr(t.m("f"), "user.lower"), b"L", "lower xattr after copy-up")
    t.eq(os.getxattr(t.m("f"), "user.new"), b"N" * 1000, "new xattr")
    t.true({"user.lower", "user.new"} <= set(os.listxattr(t.m("f"))), "listxattr %s" % os.listxattr(t.m("f")))
    os.removexattr(t.m("f"), "user.lower")
    t.errno(errno.ENODATA, os.getxattr, t.m("f"), "user.lower", what="getxattr after removexattr")
    t.errno(errno.ENODATA, os.getxattr, t.m("f"), "user.never", what="getxattr of a missing name")
    t.errno(errno.EEXIST, os.setxattr, t.m("f"), "user.new", b"x", os.XATTR_CREATE, what="XATTR_CREATE on existing")
    t.errno(errno.ENODATA, os.setxattr, t.m("f"), "user.none", b"x", os.XATTR_REPLACE, what="XATTR_REPLACE on missing")
    os.setxattr(t.m("d"), "user.dir", b"D")
    t.eq(os.getxattr(t.m("d"), "user.dir"), b"D", "xattr on a lower dir")
    t.eq(read(t.m("f")), b"f", "content after xattr copy-up")


@check("xattr-trusted")
def _(t):
    t.need(t.env.can_trusted, "needs root in the initial user namespace (trusted.*)")
    t.lw(1, "f", b"f")
    os.setxattr(t.lp(1, "f"), "trusted.lowerattr", b"L")
    yield
    t.eq(os.getxattr(t.m("f"), "trusted.lowerattr"), b"L", "lower trusted xattr through the mount")
    os.setxattr(t.m("f"), "trusted.ossbtest", b"T")
    t.eq(os.getxattr(t.m("f"), "trusted.ossbtest"), b"T", "trusted xattr set through the mount")
    t.true("trusted.ossbtest" in os.listxattr(t.m("f")), "listxattr lacks trusted.ossbtest")
    t.true(not any(n.startswith("trusted.overlay.") for n in os.listxattr(t.m("f"))),
           "trusted.overlay.* shown through the mount")


@check("xattr-security-capability")
def _(t):
    t.need_root()
    t.lw(1, "f", b"\x7fELF", mode=0o755, ref=True)
    t.lw(1, "g", b"\x7fELF", mode=0o755, ref=True)
    try:
        for p in (t.lp(1, "g"), t.r("g")):
            os.setxattr(p, "security.capability", CAP_BLOB)
    except OSError as e:
        raise Skip("cannot set security.capability on the host fs: " + errname(e.errno))
    yield
    t.eq(os.getxattr(t.m("g"), "security.capability"), CAP_BLOB, "lower file capability through the mount")
    for p in (t.m("f"), t.r("f")):
        os.setxattr(p, "security.capability", CAP_BLOB)
    t.eq(os.getxattr(t.m("f"), "security.capability"), CAP_BLOB, "capability set through the mount")
    for p in (t.m("g"), t.r("g")):
        os.chmod(p, 0o750)
    t.eq(_xattr(t.m("g"), "security.capability"), _xattr(t.r("g"), "security.capability"),
         "capability after chmod (copy-up), as the reference fs")
    for p in (t.m("f"), t.r("f")):
        write(p, "x", "ab")
    t.eq(_xattr(t.m("f"), "security.capability"), _xattr(t.r("f"), "security.capability"),
         "capability after a write (killpriv), as the reference fs")


# ---------------------------------------------------------------------------------------------
# data paths: mmap, fallocate, truncate, O_APPEND, big copy-up


@check("mmap-shared-write")
def _(t):
    t.lw(1, "lower", b"a" * 8192)
    yield
    for n, size in (("lower", 8192), ("upper", 1 << 20)):
        fd = os.open(t.m(n), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if n == "upper":
                os.ftruncate(fd, size)
            with mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE) as mm:
                mm[0:5] = b"HELLO"
                mm[5000:5005] = b"WORLD"
                mm[size - 1:size] = b"Z"
                mm.flush()
            t.eq(os.pread(fd, 5, 5000), b"WORLD", n + ": read() of mmap-written bytes, same fd")
        finally:
            os.close(fd)
        data = read(t.m(n))
        t.eq(len(data), size, n + ": size")
        t.eq((data[0:5], data[5000:5005], data[-1:]), (b"HELLO", b"WORLD", b"Z"), n + ": content after munmap")
    with open(t.m("lower"), "rb") as f, mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ) as mm:
        t.eq(mm[0:5], b"HELLO", "read-only mmap of the copied-up file")


@check("fallocate")
def _(t):
    t.lw(1, "lower", b"L" * 4096)
    yield
    fd = os.open(t.m("upper"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fallocate(fd, 0, 0, 1 << 20)
        t.eq(os.fstat(fd).st_size, 1 << 20, "size after fallocate")
        t.eq(os.pread(fd, 16, 4096), b"\0" * 16, "fallocated range reads zeros")
        fallocate(fd, FALLOC_FL_KEEP_SIZE, 1 << 20, 1 << 20)
        t.eq(os.fstat(fd).st_size, 1 << 20, "size after KEEP_SIZE")
        os.pwrite(fd, b"D" * 65536, 0)
        fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 4096, 8192)
        t.eq(os.pread(fd, 8192, 4096), b"\0" * 8192, "punched hole reads zeros")
        t.eq(os.pread(fd, 4096, 0), b"D" * 4096, "data before the hole")
        t.eq(os.pread(fd, 4096, 12288), b"D" * 4096, "data after the hole")
    finally:
        os.close(fd)
    fd = os.open(t.m("lower"), os.O_RDWR)
    try:
        fallocate(fd, 0, 0, 65536)
        t.eq(os.fstat(fd).st_size, 65536, "size after fallocate of a lower file")
    finally:
        os.close(fd)
    t.eq(read(t.m("lower")), b"L" * 4096 + b"\0" * (65536 - 4096), "lower file content after fallocate")


@check("truncate")
def _(t):
    t.lw(1, "f", b"0123456789")
    t.lw(1, "g", b"gggg")
    t.lw(1, "h", b"hhhh")
    t.lw(1, "k", b"kkkk", ref=True)
    yield
    os.truncate(t.m("f"), 4)
    t.eq(read(t.m("f")), b"0123", "shrunk lower file")
    os.truncate(t.m("f"), 8)
    t.eq(read(t.m("f")), b"0123\0\0\0\0", "grown file")
    os.close(os.open(t.m("g"), os.O_WRONLY | os.O_TRUNC))
    t.eq(os.lstat(t.m("g")).st_size, 0, "O_TRUNC of a lower file")
    fd = os.open(t.m("h"), os.O_RDONLY)
    try:
        t.errno((errno.EINVAL, errno.EBADF), os.ftruncate, fd, 0, what="ftruncate of an O_RDONLY fd")
    finally:
        os.close(fd)
    t.eq(read(t.m("h")), b"hhhh", "file intact after the refused ftruncate")
    for p in (t.m("k"), t.r("k")):  # Linux truncates on O_RDONLY|O_TRUNC (POSIX leaves it open)
        os.close(os.open(p, os.O_RDONLY | os.O_TRUNC))
    t.eq(os.lstat(t.m("k")).st_size, os.lstat(t.r("k")).st_size, "size after O_RDONLY|O_TRUNC, as the reference fs")


@check("o-append")
def _(t):
    t.lw(1, "f", b"abc")
    yield
    fd1 = os.open(t.m("f"), os.O_WRONLY | os.O_APPEND)
    fd2 = os.open(t.m("f"), os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd1, b"d")
        os.write(fd2, b"e")
        os.write(fd1, b"f")
        os.pwrite(fd2, b"g", 0)  # Linux: O_APPEND wins over the offset
    finally:
        os.close(fd1)
        os.close(fd2)
    t.eq(read(t.m("f")), b"abcdefg", "content after O_APPEND writes from two fds")


@check("read-only-fd-sees-copy-up")
def _(t):
    t.lw(1, "f", b"before")
    yield
    fd = os.open(t.m("f"), os.O_RDONLY)
    try:
        t.eq(os.pread(fd, 100, 0), b"before", "first read")
        write(t.m("f"), "after!", "r+b")
        t.eq(os.pread(fd, 100, 0), b"after!", "read through an fd opened before the copy-up")
    finally:
        os.close(fd)


@check("copy-up-large-file")
def _(t):
    rnd = random.Random(7)
    data = bytes(rnd.getrandbits(8) for _ in range(1 << 16)) * 256  # 16 MiB
    t.lw(1, "big", data)
    os.utime(t.lp(1, "big"), (1500000000, 1500000000))
    yield
    t.eq(os.lstat(t.m("big")).st_mtime, 1500000000, "mtime before copy-up")
    write(t.m("big"), b"!", "ab")
    st = os.lstat(t.m("big"))
    t.eq(st.st_size, len(data) + 1, "size after append")
    t.true(st.st_mtime != 1500000000, "append did not update mtime")
    got = hashlib.sha256(read(t.m("big"))).hexdigest()
    t.eq(got, hashlib.sha256(data + b"!").hexdigest(), "sha256 after copy-up + append")


# ---------------------------------------------------------------------------------------------
# inode numbers, statfs


@check("inode-stable-across-copy-up")
def _(t):
    t.lw(1, "f", b"f")
    t.lw(1, "g", b"g")
    t.ld(1, "d")
    yield
    ino = {n: os.lstat(t.m(n)).st_ino for n in ("f", "g", "d")}
    os.chmod(t.m("f"), 0o600)
    write(t.m("g"), "+", "ab")
    write(t.m("d/new"), "n")
    for n in ("f", "g", "d"):
        t.eq(os.lstat(t.m(n)).st_ino, ino[n], n + ": st_ino after copy-up")
    if t.env.can_drop_caches:
        t.env.drop_caches()
        for n in ("f", "g", "d"):
            t.eq(os.lstat(t.m(n)).st_ino, ino[n], n + ": st_ino after copy-up and drop_caches")


@check("inode-stable-and-unique")
def _(t):
    for i in range(300):
        t.lw(1 if i % 2 else 0, "d%d/f%d" % (i % 10, i), b"x")
    yield
    for i in range(100):
        write(t.m("d%d/u%d" % (i % 10, i)), "u")
    first = {}
    for dirpath, dirnames, filenames in os.walk(t.m("")):
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            first[p] = os.lstat(p).st_ino
    t.eq(len(first), 410, "entries walked")
    inos = list(first.values())
    t.eq(len(set(inos)), len(inos), "distinct st_ino for distinct files")
    for p, ino in first.items():
        fd = os.open(p, os.O_RDONLY)
        try:
            st = os.fstat(fd)
        finally:
            os.close(fd)
        if (st.st_ino, st.st_dev) != (ino, os.lstat(p).st_dev):
            raise Fail("fstat of an open %s differs from its lstat (st_ino %d vs %d)" %
                       (os.path.relpath(p, t.env.mnt), st.st_ino, ino))
    for rnd in range(3):
        if t.env.can_drop_caches:
            t.env.drop_caches()
        for p, ino in first.items():
            if os.lstat(p).st_ino != ino:
                raise Fail("st_ino of %s changed between stat calls (round %d)" % (os.path.relpath(p, t.env.mnt), rnd))


@check("statfs")
def _(t):
    yield
    sm, su = os.statvfs(t.env.mnt), os.statvfs(t.env.upper)
    t.true(sm.f_bsize > 0 and sm.f_frsize > 0 and sm.f_blocks > 0, "zero block size or count: %s" % (sm,))
    t.true(sm.f_namemax >= 255, "f_namemax %d < 255" % sm.f_namemax)
    mavail, uavail = sm.f_bavail * sm.f_frsize, su.f_bavail * su.f_frsize
    t.true(abs(mavail - uavail) <= max(uavail // 10, 256 << 20),
           "free space %d MiB differs from the upper fs's %d MiB" % (mavail >> 20, uavail >> 20))


# ---------------------------------------------------------------------------------------------
# big directories


@check("readdir-10k")
def _(t):
    for i in range(6000):
        t.lw(1, "d/f%05d" % i)
    for i in range(5000, 9000):
        t.lw(0, "d/f%05d" % i)
    yield
    for i in range(500):
        os.unlink(t.m("d/f%05d" % i))
    for i in range(1500):
        os.close(os.open(t.m("d/n%04d" % i), os.O_CREAT | os.O_WRONLY, 0o644))
    want = ["f%05d" % i for i in range(500, 9000)] + ["n%04d" % i for i in range(1500)]
    t.eq(len(want), 10000, "expected names")
    t.listing(t.m("d"), want)
    with os.scandir(t.m("d")) as it:
        types = {e.is_file(follow_symlinks=False) for e in it}
    t.eq(types, {True}, "d_type of every entry is a regular file")
    t.listing(t.m("d"), want)


@check("readdir-unlink-while-iterating")
def _(t):
    for i in range(2000):
        t.lw(1, "d/l%04d" % i)
    for i in range(500):
        t.lw(0, "d/t%04d" % i)
    yield
    for i in range(1000):
        os.close(os.open(t.m("d/u%04d" % i), os.O_CREAT | os.O_WRONLY, 0o644))
    seen = 0
    with os.scandir(t.m("d")) as it:
        for e in it:
            os.unlink(e.path)
            seen += 1
    t.eq(seen, 3500, "entries returned by one pass that unlinks each as it goes")
    t.listing(t.m("d"), [])
    os.rmdir(t.m("d"))


# ---------------------------------------------------------------------------------------------
# concurrency


def _remove_tree(p):
    """rm -rf without shutil's symlink-race guard (whose errno-less OSError would hide what
    the file system answered)."""
    try:
        os.unlink(p)
        return
    except IsADirectoryError:
        pass
    for n in os.listdir(p):
        try:
            _remove_tree(os.path.join(p, n))
        except FileNotFoundError:
            pass
    os.rmdir(p)


@check("concurrent-rename-unlink")
def _(t):
    for i in range(100):
        t.lw(1, "c/f%d" % i, b"lower%d" % i)
    for i in range(20):
        t.lw(1, "c/dir%d/x" % i, b"x")
    yield
    bad, ops = [], [0]
    deadline = time.monotonic() + 3.0
    ok_errs = {errno.ENOENT, errno.EEXIST, errno.ENOTEMPTY, errno.EISDIR, errno.ENOTDIR, errno.EXDEV,
               errno.EINVAL}

    def worker(seed):
        rnd = random.Random(seed)
        while time.monotonic() < deadline and not bad:
            a = t.m("c", rnd.choice(("f", "g", "dir")) + str(rnd.randrange(100)))
            b = t.m("c", rnd.choice(("f", "g", "dir")) + str(rnd.randrange(100)))
            op = rnd.randrange(10)
            try:
                if op == 0:
                    os.rename(a, b)
                elif op == 1:
                    os.unlink(a)
                elif op == 2:
                    write(a, "w", "ab")
                elif op == 3:
                    os.lstat(a)
                elif op == 4:
                    os.listdir(t.m("c"))
                elif op == 5:
                    os.link(a, b)
                elif op == 6:
                    os.mkdir(a)
                elif op == 7:
                    os.rmdir(a)
                elif op == 8:
                    _remove_tree(a)
                else:
                    read(a)
                ops[0] += 1
            except OSError as e:
                if e.errno not in ok_errs and not (op == 5 and e.errno == errno.EPERM):  # link(dir)
                    bad.append("op %d on %s: %s" % (op, os.path.basename(a), errname(e.errno)))

    threads = [threading.Thread(target=worker, args=(s,), daemon=True) for s in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(30)
    t.true(not any(th.is_alive() for th in threads), "a worker thread hangs")
    t.true(not bad, "unexpected errors: %s" % bad[:3])
    t.true(ops[0] > 100, "only %d operations completed in 3 s" % ops[0])
    names = os.listdir(t.m("c"))
    t.true(len(names) == len(set(names)), "duplicates in readdir after the race")
    for n in names:
        os.lstat(t.m("c", n))
    write(t.m("after"), "alive")
    t.eq(read(t.m("after")), b"alive", "the mount answers after the race")
    os.statvfs(t.env.mnt)


# ---------------------------------------------------------------------------------------------
# the upper directory after the unmount: kernel overlayfs's format (what the snapshotter reads)


@check("upper-format-whiteout")
def _(t):
    t.lw(1, "f", b"f")
    t.lw(1, "d/x", b"x")
    yield
    os.unlink(t.m("f"))
    shutil.rmtree(t.m("d"))
    yield
    for n in ("f", "d"):
        st = os.lstat(t.u(n)) if os.path.lexists(t.u(n)) else None
        t.true(st is not None and _is_whiteout(t.u(n)),
               "upper/%s is %s, want a 0/0 character device" % (n, "missing" if st is None else oct(st.st_mode)))


@check("upper-format-opaque")
def _(t):
    t.lw(1, "d/x", b"x")
    yield
    shutil.rmtree(t.m("d"))
    os.mkdir(t.m("d"))
    write(t.m("d/new"), "n")
    yield
    name = t.env.xprefix + "overlay.opaque"
    t.eq(_xattr(t.u("d"), name), b"y", "upper/d xattr " + name)
    t.eq(sorted(os.listdir(t.u("d"))), ["new"], "entries of upper/d (only what was created)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backend", choices=("kernel", "fuse-overlayfs", "ossb"))
    ap.add_argument("--workdir", help="where to make the layers (default: a new dir in $TMPDIR)")
    ap.add_argument("--only", help="run the checks whose name matches this regex")
    ap.add_argument("--list", action="store_true", help="list the checks and exit")
    ap.add_argument("--keep", action="store_true", help="keep the layers afterwards")
    ap.add_argument("--timeout", type=int, default=120, help="seconds per check step (default 120)")
    ap.add_argument("--userxattr", action="store_true", help="mount with userxattr (user.overlay.*)")
    ap.add_argument("-v", "--verbose", action="store_true", help="progress on stderr")
    ap.add_argument("--no-unshare", action="store_true", help="as non-root, do not enter a user namespace")
    a = ap.parse_args()
    checks = [(n, f) for n, f in CHECKS if not a.only or re.search(a.only, n)]
    if a.list:
        for n, _ in checks:
            print(n)
        return 0
    if not a.backend:
        ap.error("--backend is required")
    if os.geteuid() != 0 and a.backend != "fuse-overlayfs" and not a.no_unshare:
        os.execvp("unshare", ["unshare", "--user", "--map-root-user", "--mount", sys.executable] + sys.argv)
    os.umask(0o022)
    work = a.workdir or tempfile.mkdtemp(prefix="ossb-posix-")
    os.makedirs(work, exist_ok=True)
    os.chmod(work, 0o755)
    env = Env(work, a.backend, a.userxattr)
    results = []
    pending = []
    for name, fn in checks:
        t = T(env, name)
        os.makedirs(t.lp(1, ""), exist_ok=True)
        gen = fn(t)
        r = step(gen, a.timeout)
        if r:
            results.append((name,) + r)
        else:
            pending.append((name, gen))
    print("posix-checks: backend %s, root %s, user namespace %s, userxattr %s, work %s" %
          (a.backend, env.root, env.in_userns, env.userxattr, work), flush=True)
    server_log = os.path.join(work, "server.log")
    margs = ["mount", a.backend, "--log", server_log] + (["--userxattr"] if a.userxattr else [])
    margs += ["--lower", env.l0, "--lower", env.l1, "--upper", env.upper, "--work", env.wdir, env.mnt]
    p = backend_cmd(*margs)
    if p.returncode != 0:
        print("FAIL mount: %s" % (p.stderr.strip() or p.stdout.strip()))
        print("posix-checks: 0 passed, 1 failed, 0 skipped")
        return 1
    unmounted = False
    try:
        env.other_user = probe_other_user(env)
        after = []
        for name, gen in pending:
            r = step(gen, a.timeout)
            if a.verbose:
                print("... %s: %s" % (name, _line((name,) + r) if r else "done"), file=sys.stderr, flush=True)
            if r:
                results.append((name,) + r)
            else:
                after.append((name, gen))
        p = backend_cmd("umount", env.mnt)
        unmounted = True
        results.append(("unmount-clean",) + (("PASS", "") if p.returncode == 0 else
                                             ("FAIL", " ".join(p.stderr.split()))))
        for name, gen in after:
            r = step(gen, a.timeout)
            results.append((name,) + (r or ("PASS", "")))
        results.append(("journal-covers-upper",) + journal_check(env, server_log))
    finally:
        if not unmounted:
            backend_cmd("umount", env.mnt)
    order = {n: i for i, (n, _) in enumerate(checks)}
    results.sort(key=lambda r: order.get(r[0], len(order)))
    print("--- results (%s)" % a.backend)
    for r in results:
        print(_line(r))
    n = {s: sum(1 for r in results if r[1] == s) for s in ("PASS", "FAIL", "SKIP")}
    print("posix-checks: %d passed, %d failed, %d skipped" % (n["PASS"], n["FAIL"], n["SKIP"]))
    if not a.keep and not a.workdir:
        shutil.rmtree(work, ignore_errors=True)
    elif not a.keep:
        for d in (env.l0, env.l1, env.upper, env.wdir, env.ref):
            shutil.rmtree(d, ignore_errors=True)
    return 1 if n["FAIL"] else 0


def _line(r):
    name, status, reason = r
    return "%s %s%s" % (status, name, ": " + reason if reason else "")


if __name__ == "__main__":
    sys.exit(main())
