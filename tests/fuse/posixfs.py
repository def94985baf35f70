"""tests/fuse/posixfs.py - the framework of posix-checks.py: the layers and capabilities of
one run (Env), the handle each check gets (T: paths in its own directory of every layer,
assertions), libc calls Python lacks (renameat2, fallocate), running a step of a check under a
time limit, and the check of fusefs-mount's change journal against the upper directory.
Python 3 standard library only."""

import ctypes
import errno
import os
import re
import signal
import stat
import struct
import subprocess
import sys
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
MOUNT_BACKEND = os.path.join(HERE, "mount-backend.sh")
NOBODY = 65534

# ---------------------------------------------------------------------------------------------
# libc bits Python does not wrap

_libc = ctypes.CDLL(None, use_errno=True)
AT_FDCWD = -100
RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2
FALLOC_FL_KEEP_SIZE = 1
FALLOC_FL_PUNCH_HOLE = 2


def _oserror(what):
    e = ctypes.get_errno()
    return OSError(e, os.strerror(e), what)


def renameat2(old, new, flags):
    fn = getattr(_libc, "renameat2", None)
    if fn is None:
        raise Skip("libc has no renameat2")
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if fn(AT_FDCWD, os.fsencode(old), AT_FDCWD, os.fsencode(new), flags) != 0:
        raise _oserror(old)


def fallocate(fd, mode, off, length):
    fn = _libc.fallocate
    fn.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    if fn(fd, mode, off, length) != 0:
        raise _oserror("fallocate")


# VFS_CAP_REVISION_2 | VFS_CAP_FLAGS_EFFECTIVE, permitted = CAP_NET_BIND_SERVICE (10)
CAP_BLOB = struct.pack("<IIIII", 0x02000001, 1 << 10, 0, 0, 0)

# ---------------------------------------------------------------------------------------------
# check framework


class Skip(Exception):
    pass


class Fail(Exception):
    pass


class Timeout(Exception):
    pass


def errname(e):
    return errno.errorcode.get(e, str(e))


class Env:
    """What every check may use: the layer directories and what this process may do."""

    def __init__(self, work, backend, userxattr):
        self.work = work
        self.backend = backend
        self.l0 = os.path.join(work, "l0")
        self.l1 = os.path.join(work, "l1")
        self.upper = os.path.join(work, "upper")
        self.wdir = os.path.join(work, "work")
        self.mnt = os.path.join(work, "mnt")
        self.ref = os.path.join(work, "ref")
        for d in (self.l0, self.l1, self.upper, self.wdir, self.mnt, self.ref):
            os.makedirs(d, exist_ok=True)
        self.root = os.geteuid() == 0
        self.in_userns = not _uid_map_is_initial()
        self.userxattr = userxattr or self.in_userns
        self.xprefix = "user." if self.userxattr else "trusted."
        self.full_ids = self.root and _uid_map_covers(70000)
        self.can_drop_caches = self.root and not self.in_userns and os.access("/proc/sys/vm/drop_caches", os.W_OK)
        self.can_trusted = self.root and _probe_xattr(work, "trusted.ossb-probe")
        self.can_user_xattr = _probe_xattr(work, "user.ossb-probe")
        self.can_mknod_whiteout = _probe_whiteout(work)
        self.other_user = None  # decided once mounted

    def drop_caches(self):
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("2\n")


def _uid_map_is_initial():
    try:
        with open("/proc/self/uid_map") as f:
            return f.read().split() == ["0", "0", "4294967295"]
    except OSError:
        return True


def _uid_map_covers(n):
    try:
        with open("/proc/self/uid_map") as f:
            return sum(int(line.split()[2]) for line in f if line.strip()) >= n
    except OSError:
        return False


def _probe_xattr(d, name):
    p = os.path.join(d, ".xattr-probe")
    try:
        with open(p, "w"):
            pass
        os.setxattr(p, name, b"1")
        return True
    except OSError:
        return False
    finally:
        if os.path.exists(p):
            os.unlink(p)


def _probe_whiteout(d):
    p = os.path.join(d, ".whiteout-probe")
    try:
        os.mknod(p, stat.S_IFCHR | 0o600, 0)
        os.unlink(p)
        return True
    except OSError:
        return False


class T:
    """The handle one check gets: paths in its own directory of each layer, and assertions."""

    def __init__(self, env, name):
        self.env = env
        self.name = name

    # paths
    def lp(self, layer, *rel):
        return os.path.join(self.env.l0 if layer == 0 else self.env.l1, self.name, *rel)

    def m(self, *rel):
        return os.path.join(self.env.mnt, self.name, *rel)

    def u(self, *rel):
        return os.path.join(self.env.upper, self.name, *rel)

    def r(self, *rel):
        return os.path.join(self.env.ref, self.name, *rel)

    # building the lower layers (and the reference directory)
    def lw(self, layer, rel, data=b"", mode=None, owner=None, ref=False):
        paths = [self.lp(layer, rel)] + ([self.r(rel)] if ref else [])
        for p in paths:
            os.makedirs(os.path.dirname(p), exist_ok=True)
            with open(p, "wb") as f:
                f.write(data if isinstance(data, bytes) else data.encode())
            if owner is not None:
                os.chown(p, *owner)
            if mode is not None:
                os.chmod(p, mode)
        return paths[0]

    def ld(self, layer, rel, mode=None, owner=None, ref=False):
        paths = [self.lp(layer, rel)] + ([self.r(rel)] if ref else [])
        for p in paths:
            os.makedirs(p, exist_ok=True)
            if owner is not None:
                os.chown(p, *owner)
            if mode is not None:
                os.chmod(p, mode)
        return paths[0]

    # needs
    def need(self, cond, why):
        if not cond:
            raise Skip(why)

    def need_root(self):
        self.need(self.env.root, "needs root")

    def need_ids(self):
        self.need(self.env.full_ids, "needs root with a full id map (chown to other ids)")

    def need_other_user(self):
        self.need(self.env.full_ids, "needs root with a full id map (runs as uid 65534)")
        self.need(self.env.other_user is True, "uid 65534 cannot enter the mount (%s)" % self.env.other_user)

    # assertions
    def eq(self, got, want, what):
        if got != want:
            raise Fail("%s: got %s, want %s" % (what, _short(got), _short(want)))

    def true(self, cond, what):
        if not cond:
            raise Fail(what)

    def errno(self, errs, fn, *args, what=None):
        errs = (errs,) if isinstance(errs, int) else tuple(errs)
        try:
            fn(*args)
        except OSError as e:
            if e.errno in errs:
                return e.errno
            raise Fail("%s: got %s, want %s" % (what or fn.__name__, errname(e.errno),
                                                "/".join(errname(x) for x in errs)))
        raise Fail("%s: succeeded, want %s" % (what or fn.__name__, "/".join(errname(x) for x in errs)))

    def noent(self, path):
        self.errno(errno.ENOENT, os.lstat, path, what="lstat " + os.path.relpath(path, self.env.mnt))

    def listing(self, path, want):
        got = os.listdir(path)
        self.true(len(got) == len(set(got)), "readdir of %s has duplicates" % os.path.relpath(path, self.env.mnt))
        self.eq(sorted(got), sorted(want), "readdir " + os.path.relpath(path, self.env.mnt))

    def as_user(self, fn, uid=NOBODY, gid=NOBODY):
        """Run fn() in a child with uid/gid; return None or the errno it failed with."""
        return run_as(fn, uid, gid)


def _short(v):
    s = repr(v)
    return s if len(s) < 120 else s[:117] + "..."


def read(p):
    with open(p, "rb") as f:
        return f.read()


def write(p, data, flags="wb"):
    with open(p, flags) as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def mode_of(p):
    return stat.S_IMODE(os.lstat(p).st_mode)


def run_as(fn, uid, gid):
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            os.setgroups([])
            os.setresgid(gid, gid, gid)
            os.setresuid(uid, uid, uid)
            fn()
        except OSError as e:
            code = min(e.errno, 250)
        except BaseException:
            code = 255
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code == 255:
        raise Fail("child as uid %d raised a non-OSError" % uid)
    return code or None


CHECKS = []


def check(name):
    def reg(fn):
        CHECKS.append((name, fn))
        return fn
    return reg


def _xattr(p, name):
    try:
        return os.getxattr(p, name, follow_symlinks=False)
    except OSError:
        return None




def _is_whiteout(p):
    try:
        st = os.lstat(p)
    except FileNotFoundError:
        return False
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0




# ---------------------------------------------------------------------------------------------
# driver


class Alarm:
    def __init__(self, seconds):
        self.seconds = seconds

    def __enter__(self):
        def fire(signum, frame):
            raise Timeout("timed out after %ds" % self.seconds)
        self.old = signal.signal(signal.SIGALRM, fire)
        signal.alarm(self.seconds)

    def __exit__(self, *a):
        signal.alarm(0)
        signal.signal(signal.SIGALRM, self.old)


def step(gen, timeout):
    """Advance a check to its next yield.  Returns None when it yielded or ended cleanly,
    else (status, reason)."""
    try:
        with Alarm(timeout):
            next(gen)
        return None
    except StopIteration:
        return None
    except Skip as e:
        return ("SKIP", str(e))
    except Fail as e:
        return ("FAIL", str(e))
    except Timeout as e:
        return ("FAIL", str(e))
    except OSError as e:
        where = " (%s)" % _shorten(e.filename, 80) if isinstance(e.filename, str) else ""
        return ("FAIL", "%s%s %s%s" % (_where(e), type(e).__name__, errname(e.errno) if e.errno else e, where))
    except Exception as e:  # a bug in a check or an unexpected library error: still a FAIL
        return ("FAIL", "%s%s: %s" % (_where(e), type(e).__name__, e))


def _where(exc):
    """'line N `source`: ' of the innermost frame of the checks' script in exc's traceback."""
    main = getattr(sys.modules.get("__main__"), "__file__", None)
    found = None
    for fs in traceback.extract_tb(exc.__traceback__):
        if main and os.path.abspath(fs.filename) == os.path.abspath(main):
            found = fs
    return "line %d `%s`: " % (found.lineno, _shorten(found.line or "", 70)) if found else ""


def _shorten(s, n):
    return s if len(s) <= n else s[:n - 3] + "..."


def journal_check(env, log):
    """ossb's fusefs-mount prints its change journal ("FLAGS PATH", flags of C M D O) when it
    exits.  Every non-directory entry of the upper must be in it (created or modified), every
    whiteout as deleted, every opaque directory as opaque (or created, when no lower has the
    name): the snapshotter builds the layer
    diff from the journal, so a missing path is a missing change in the image."""
    if env.backend != "ossb":
        return ("SKIP", "only fusefs-mount prints a change journal")
    journal = {}
    try:
        with open(log, errors="surrogateescape") as f:
            for line in f:
                m = re.match(r"^([CMDO]+) (.*)$", line.rstrip("\n"))
                if m:
                    journal[m.group(2)] = m.group(1)
    except OSError as e:
        return ("FAIL", "cannot read the server log: " + errname(e.errno))
    if not journal:
        return ("FAIL", "no journal lines in " + log)
    problems = []
    opaque = env.xprefix + "overlay.opaque"
    for dirpath, dirnames, filenames in os.walk(env.upper):
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            rel = os.path.relpath(p, env.upper)
            flags = journal.get(rel, "")
            if _is_whiteout(p):
                if "D" not in flags:
                    problems.append("whiteout %s: journal has %r" % (rel, flags))
            elif n in dirnames:
                if _xattr(p, opaque) == b"y" and not set(flags) & set("OC"):  # C: nothing below to hide
                    problems.append("opaque dir %s: journal has %r" % (rel, flags))
            elif not set(flags) & set("CM") and not _same_as_lower(env, rel):
                problems.append("%s: journal has %r" % (rel, flags))
    if problems:
        return ("FAIL", "%d upper entries not in the journal as they should be, e.g. %s" %
                (len(problems), "; ".join(problems[:5])))
    return ("PASS", "")


def _same_as_lower(env, rel):
    """True when the upper's copy of rel equals the top-most lower entry of that path (an
    unchanged copy-up, e.g. the other name of a hard link, need not be in the journal)."""
    up = os.path.join(env.upper, rel)
    for layer in (env.l0, env.l1):
        lo = os.path.join(layer, rel)
        if not os.path.lexists(lo):
            continue
        a, b = os.lstat(up), os.lstat(lo)
        if (a.st_mode, a.st_uid, a.st_gid, a.st_size) != (b.st_mode, b.st_uid, b.st_gid, b.st_size):
            return False
        if stat.S_ISLNK(a.st_mode):
            return os.readlink(up) == os.readlink(lo)
        return not stat.S_ISREG(a.st_mode) or read(up) == read(lo)
    return False


def probe_other_user(env):
    if not env.full_ids:
        return "not root with a full id map"
    try:
        e = run_as(lambda: os.listdir(env.mnt), NOBODY, NOBODY)
    except Fail as f:
        return str(f)
    return True if e is None else "listdir of the mount root as uid 65534: " + errname(e)


def backend_cmd(*args):
    return subprocess.run([MOUNT_BACKEND] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True)
