"""A Debian bookworm minbase base image for the integration tests (as root, with debootstrap).

    debootstrap --variant=minbase bookworm DIR MIRROR

MIRROR is the machine's own Debian mirror, read from its apt configuration (the `URIs:` of a
deb822 stanza in /etc/apt/sources.list.d/*.sources whose `Suites:` holds bookworm, else a
`deb URI bookworm ...` line of /etc/apt/sources.list): the only network the tests ever use,
and only the first time on a machine.  The rootfs is kept as a tar in $OSSB_TEST_CACHE
(default /var/cache/ossb-tests/), written to a temporary name and renamed, under a lock so that
concurrent sessions debootstrap once; a later session reuses it.  Left out of it, as of a Debian
image: the downloaded .debs (apt-get clean) and the build host's /etc/hostname and
/etc/resolv.conf that debootstrap copies in.

The tar becomes an image with images.py's helpers (one gzip layer, deterministic: entries
sorted, fixed mtimes; device nodes under /dev are left out as image builders leave them out,
the directories /dev, /proc and /sys stay), written to a layout once per session and pushed to
a module's registry by `debian_base`.

Fixtures (import them into a test module):
  debian_rootfs_tar   session: Path of the cached rootfs tar (skips when not root, or when the
                      tar must be made and debootstrap is missing or apt names no bookworm
                      mirror; fails when debootstrap fails)
  debian_layout       session: an OCI layout dir holding the image under the tag "bookworm"
  debian_base         module: "HOST:PORT/debian:bookworm" in the module's seeded_registry
"""
import fcntl
import glob
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path

import pytest

import images

SUITE = "bookworm"
CACHE_DIR = Path(os.environ.get("OSSB_TEST_CACHE") or "/var/cache/ossb-tests")
DEBOOTSTRAP_TIMEOUT = 1800
DEBIAN_CONFIG = {"Env": [images.PATH_ENV], "Cmd": ["bash"]}
TAG = "bookworm"


# --- the mirror -------------------------------------------------------------------------------


def _deb822_stanzas(text):
    """Stanzas of a deb822 file as {field (lower case): value}; comments dropped, continuation
    lines joined."""
    out, cur, key = [], {}, None
    for line in text.splitlines() + [""]:
        if line.startswith("#"):
            continue
        if not line.strip():
            if cur:
                out.append(cur)
            cur, key = {}, None
        elif line[0] in " \t" and key:
            cur[key] += " " + line.strip()
        elif ":" in line:
            key, _, value = line.partition(":")
            key = key.strip().lower()
            cur[key] = value.strip()
    return out


def apt_mirror(suite=SUITE, sources_d="/etc/apt/sources.list.d", sources_list="/etc/apt/sources.list"):
    """The first mirror apt uses for `suite` (binary packages), or None."""
    for path in sorted(glob.glob(os.path.join(sources_d, "*.sources"))):
        try:
            text = Path(path).read_text()
        except OSError:
            continue
        for st in _deb822_stanzas(text):
            if st.get("enabled", "yes").lower() == "no":
                continue
            if "deb" in st.get("types", "").split() and suite in st.get("suites", "").split():
                uris = st.get("uris", "").split()
                if uris:
                    return uris[0]
    paths = [sources_list] + sorted(glob.glob(os.path.join(sources_d, "*.list")))
    for path in paths:
        try:
            lines = Path(path).read_text().splitlines()
        except OSError:
            continue
        for line in lines:
            line = re.sub(r"\[[^\]]*\]", " ", line.split("#", 1)[0]).split()  # drop [options]
            if len(line) >= 3 and line[0] == "deb" and line[2] == suite:
                return line[1]
    return None


# --- the cached rootfs tar ------------------------------------------------------------------


def host_arch():
    p = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True)
    return p.stdout.strip() or "amd64"


def cached_tar_path(arch=None):
    return CACHE_DIR / f"debian-{SUITE}-minbase-{arch or host_arch()}.tar"


def make_rootfs_tar(dest, mirror, workdir):
    """debootstrap into WORKDIR/rootfs and tar it (numeric owners) to DEST through a
    temporary name in DEST's directory.  Returns the seconds debootstrap took."""
    root = Path(workdir) / "rootfs"
    started = time.monotonic()
    p = subprocess.run(["debootstrap", "--variant=minbase", SUITE, str(root), mirror],
                       capture_output=True, text=True, timeout=DEBOOTSTRAP_TIMEOUT)
    took = time.monotonic() - started
    if p.returncode != 0:
        log = root / "debootstrap" / "debootstrap.log"
        tail = log.read_text(errors="replace")[-3000:] if log.is_file() else ""
        shutil.rmtree(root, ignore_errors=True)
        pytest.fail(f"debootstrap --variant=minbase {SUITE} {mirror} exited {p.returncode}\n"
                    f"{p.stdout[-2000:]}\n{p.stderr[-2000:]}\n{tail}")
    # what a Debian image leaves out: the downloaded .debs (apt-get clean), and the build host's
    # name and resolver configuration that debootstrap copied in
    for deb in (root / "var" / "cache" / "apt" / "archives").glob("*.deb"):
        deb.unlink()
    for f in ("etc/hostname", "etc/resolv.conf"):
        if (root / f).is_file() or (root / f).is_symlink():
            (root / f).unlink()
    fd, tmp = tempfile.mkstemp(prefix=dest.name + ".", suffix=".part", dir=dest.parent)
    os.close(fd)
    try:
        subprocess.run(["tar", "--numeric-owner", "--xattrs", "--xattrs-include=*", "-C", str(root), "-cf", tmp,
                        "."], check=True, capture_output=True, timeout=600)
        os.chmod(tmp, 0o644)
        os.rename(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
        shutil.rmtree(root, ignore_errors=True)
    return took


def ensure_rootfs_tar(workdir):
    """The cached rootfs tar, made now when the cache does not hold it yet (debootstrap is only
    needed then)."""
    dest = cached_tar_path()
    if dest.is_file():
        return dest
    if not shutil.which("debootstrap"):
        pytest.skip("`debootstrap` is not installed (Debian package debootstrap; tools/install-deps.sh)")
    mirror = apt_mirror()
    if not mirror:
        pytest.skip(f"no `{SUITE}` mirror in /etc/apt/sources.list.d/*.sources or /etc/apt/sources.list")
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with open(CACHE_DIR / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another session may be making it: wait, then reuse
        if not dest.is_file():
            for stale in CACHE_DIR.glob(dest.name + ".*.part"):  # a session killed while writing
                stale.unlink()
            took = make_rootfs_tar(dest, mirror, workdir)
            print(f"\ndebian_base: debootstrap {SUITE} from {mirror} took {took:.0f}s; cached as {dest}")
    return dest


# --- the image ----------------------------------------------------------------------------------


def _norm(name):
    name = name.rstrip("/")
    while name.startswith("./"):
        name = name[2:]
    return "" if name == "." else name.lstrip("/")


def _key(path):
    return path.strip("/").split("/")


def rootfs_entries(tar_path):
    """images.Ent list of the rootfs tar: every directory, file and symlink with its mode and
    owner; hard links kept (each group's first path in sorted order holds the data, as
    images.tar_bytes writes parents and targets first); device nodes, FIFOs and sockets left
    out (only /dev has them: debootstrap's device nodes).  images.Ent has no extended
    attributes: a rootfs with any is refused rather than changed (minbase has none)."""
    ents, groups = [], {}
    with tarfile.open(tar_path) as tf:
        for m in tf:
            name = _norm(m.name)
            if any(k.startswith(("SCHILY.xattr.", "LIBARCHIVE.xattr.")) for k in m.pax_headers):
                raise RuntimeError(f"{tar_path}: {name} has extended attributes, which images.Ent cannot hold")
            if m.isdir():
                if name:
                    ents.append(images.Ent(name, "dir", b"", m.mode & 0o7777, m.uid, m.gid))
            elif m.issym():
                ents.append(images.Ent(name, "symlink", b"", 0o777, m.uid, m.gid, m.linkname))
            elif m.isreg():
                data = tf.extractfile(m).read()
                ents.append(images.Ent(name, "file", data, m.mode & 0o7777, m.uid, m.gid))
                groups.setdefault(name, [name])
            elif m.islnk():
                target = _norm(m.linkname)
                groups.setdefault(target, [target]).append(name)
    # hard links: the group's first path (sorted as images.tar_bytes sorts) is the file
    by_path = {e.path: e for e in ents}
    for target, names in groups.items():
        if len(names) < 2:
            continue
        first = min(names, key=_key)
        src = by_path[target]
        if first != target:
            by_path[first] = images.Ent(first, "file", src.data, src.mode, src.uid, src.gid)
            ents.append(by_path[first])
            ents.remove(src)
        for n in names:
            if n != first:
                ents.append(images.Ent(n, "hardlink", b"", src.mode, src.uid, src.gid, first))
    return ents


def debian_image(tar_path):
    return images.make_image([rootfs_entries(tar_path)], config=DEBIAN_CONFIG)


@pytest.fixture(scope="session")
def debian_rootfs_tar(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("debootstrap (and the RUN steps on its image) need root")
    return ensure_rootfs_tar(tmp_path_factory.mktemp("debootstrap"))


@pytest.fixture(scope="session")
def debian_layout(debian_rootfs_tar, tmp_path_factory):
    lay = tmp_path_factory.mktemp("debian-layout")
    images.write_layout(lay, {TAG: debian_image(debian_rootfs_tar)})
    return lay


@pytest.fixture(scope="module")
def debian_base(debian_layout, seeded_registry):
    reg = seeded_registry.registry
    reg.push_layout(debian_layout, TAG, "debian:bookworm")
    return reg.ref("debian:bookworm")
