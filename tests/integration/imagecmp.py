"""imagecmp: do two container images hold the same files and the same config?

    import imagecmp
    a = imagecmp.load("/path/to/oci-layout")              # or "oci:DIR[:REF]"
    b = imagecmp.load("docker://127.0.0.1:5000/app:1", workdir=tmp)   # skopeo copy -> layout
    diffs = imagecmp.compare(a, b, ignore=["var/log/*.log"], names=("ossb", "buildah"))
    assert not diffs, "\n".join(diffs)

or from a shell: `python3 imagecmp.py [--times] [--ignore PATH]... IMAGE_A IMAGE_B` (exit 0 when
identical, 1 when not, 2 when an image cannot be read).

Each image's layers are applied in order into a table path -> Node, as a runtime unpacks them
(OCI image-spec "Representing Changes"): a layer's whiteouts (`.wh.NAME`) and opaque markers
(`.wh..wh..opq`) remove what the layers below hold, never what the same layer adds; an entry
that is not a directory replacing a directory removes the directory's contents; a directory
entry over an existing directory replaces its metadata.  Compared per path:
  type        file, dir, symlink, char, block, fifo
  mode        the permission bits with setuid, setgid and sticky (mode & 07777); not for
              symlinks, whose mode has no meaning on Linux (lstat always shows 0777)
  uid, gid    numeric (user and group names in the tar headers are ignored: runtimes use ids)
  size, sha256 of the content (regular files)
  link        a symlink's target, verbatim (relative, absolute or dangling alike)
  hardlinks   the other paths of the image that are the same file (one inode): hard-link
              groups are compared as sets, whichever name a builder archived first
  device      major:minor of device nodes
  xattrs      every extended attribute (PAX SCHILY.xattr.* and LIBARCHIVE.xattr.* records)
              except those of IGNORED_XATTRS; `xattrs=` narrows the selection
  mtime       only with times=True (builders stamp files when they write them)
and the config fields of CONFIG_FIELDS (Env, Cmd, Entrypoint, WorkingDir, User, Labels,
ExposedPorts, plus Volumes and StopSignal), where an unset field, null, "" and an empty list or
map are the same thing (a runtime treats them alike), plus the platform (architecture, os).

Each layer's uncompressed content must hash to the config's diff_id (ImageError otherwise);
a layer is read once per process whatever image it belongs to (a shared base layer is cached
by its diff_id).

Paths to leave out (`ignore=`): "a/b" leaves out a/b and everything below it; a pattern with
* ? or [ is matched with fnmatch against the whole path (so "tmp/*.rnd" matches below tmp).
Fields to leave out at some paths only (`ignore_fields={"etc/passwd": {"hardlinks"}}`), and
the paths to compare alone (`only=[...]`, then no config field) work the same way.
Python standard library only (plus `skopeo` for docker:// sources and `zstd` for zstd layers).
"""
import base64
import dataclasses
import fnmatch
import gzip
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

CONFIG_FIELDS = ("Env", "Cmd", "Entrypoint", "WorkingDir", "User", "Labels", "ExposedPorts", "Volumes", "StopSignal")
# SELinux labels depend on the host that wrote the files, not on the build
IGNORED_XATTRS = ("security.selinux",)
INDEX_TYPES = ("application/vnd.oci.image.index.v1+json",
               "application/vnd.docker.distribution.manifest.list.v2+json")
WH = ".wh."
OPAQUE = ".wh..wh..opq"
MAX_SHOWN = 60  # differences listed before "... N more"


class ImageError(Exception):
    """An image that cannot be read (a missing blob, a digest mismatch, bad JSON)."""


# --- reading an image ---------------------------------------------------------------------------


@dataclass
class Image:
    """One image of an OCI layout: its manifest and config, and its layer blobs (paths)."""
    source: str
    manifest: dict
    config: dict
    layers: list  # Paths of the layer blobs, bottom first

    @property
    def cfg(self):
        return self.config.get("config") or {}


def _blob_path(layout, digest):
    algo, _, hexd = digest.partition(":")
    return Path(layout) / "blobs" / algo / hexd


def _read_blob(layout, digest, verify=True):
    p = _blob_path(layout, digest)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise ImageError(f"{layout}: blob {digest}: {e.strerror}") from None
    if verify and "sha256:" + hashlib.sha256(data).hexdigest() != digest:
        raise ImageError(f"{layout}: blob {digest} does not hash to its name")
    return data


def _host_arch():
    m = os.uname().machine
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(m, m)


def load(source, ref=None, workdir=None, skopeo_args=(), env=None):
    """An Image from `source`: an OCI layout directory (Path or str), "oci:DIR[:REF]", or
    "docker://REF" (copied with `skopeo copy` into a layout under `workdir`, default a fresh
    temp dir the caller owns; `skopeo_args` go before the source, e.g. --src-tls-verify=false).
    `ref` picks the manifest by its org.opencontainers.image.ref.name; an index in the way is
    resolved to linux and this machine's architecture."""
    s = str(source)
    if s.startswith("docker://"):
        workdir = Path(workdir or tempfile.mkdtemp(prefix="imagecmp-"))
        dest = workdir / f"copy-{len(list(workdir.glob('copy-*')))}"
        skopeo = shutil.which("skopeo")
        if not skopeo:
            raise ImageError("`skopeo` is not installed (needed for docker:// sources)")
        p = subprocess.run([skopeo, "copy", "-q", *skopeo_args, s, f"oci:{dest}:img"], capture_output=True,
                           text=True, timeout=600, env=env)
        if p.returncode != 0:
            raise ImageError(f"skopeo copy {s}: {p.stderr.strip()}")
        return _load_layout(dest, "img", s)
    if s.startswith("oci:"):
        path, _, tag = s[4:].partition(":")
        return _load_layout(Path(path), ref or tag or None, s)
    return _load_layout(Path(s), ref, s)


def _load_layout(layout, ref, source):
    try:
        index = json.loads((layout / "index.json").read_text())
    except (OSError, ValueError) as e:
        raise ImageError(f"{layout}: cannot read index.json: {e}") from None
    descs = index.get("manifests") or []
    if ref is not None:
        descs = [d for d in descs if (d.get("annotations") or {}).get("org.opencontainers.image.ref.name") == ref]
    if not descs:
        raise ImageError(f"{layout}: no manifest{' named ' + ref if ref else ''} in index.json")
    desc = descs[0]
    doc = json.loads(_read_blob(layout, desc["digest"]))
    while doc.get("mediaType", desc.get("mediaType")) in INDEX_TYPES or "manifests" in doc:
        cands = [m for m in doc.get("manifests") or []
                 if (m.get("platform") or {}).get("os", "linux") == "linux"
                 and (m.get("platform") or {}).get("architecture", _host_arch()) == _host_arch()]
        if not cands:
            raise ImageError(f"{layout}: the index has no linux/{_host_arch()} manifest")
        desc = cands[0]
        doc = json.loads(_read_blob(layout, desc["digest"]))
    config = json.loads(_read_blob(layout, doc["config"]["digest"]))
    layers = [_blob_path(layout, d["digest"]) for d in doc.get("layers") or []]
    for p, d in zip(layers, doc.get("layers") or []):
        if not p.is_file():
            raise ImageError(f"{layout}: layer blob {d['digest']} is missing")
    return Image(source, doc, config, layers)


# --- flattening ---------------------------------------------------------------------------------


@dataclass
class Node:
    type: str
    mode: int
    uid: int
    gid: int
    size: int = 0
    sha256: str = ""
    link: str = ""
    device: str = ""
    xattrs: dict = field(default_factory=dict)
    mtime: int = 0
    inode: int = 0  # same number = same file (hard links)
    head: bytes = b""  # the first bytes of a regular file, to show in differences


TYPES = {tarfile.REGTYPE: "file", tarfile.AREGTYPE: "file", tarfile.CONTTYPE: "file", tarfile.DIRTYPE: "dir",
         tarfile.SYMTYPE: "symlink", tarfile.CHRTYPE: "char", tarfile.BLKTYPE: "block", tarfile.FIFOTYPE: "fifo"}


def _norm(name):
    """A tar member name as an image path: no "./" or "/" prefix, no trailing "/"; the root is ""."""
    while name.startswith("./") or name.startswith("/"):
        name = name[2:] if name.startswith("./") else name[1:]
    name = name.rstrip("/")
    return "" if name == "." else name


def _xattrs(m):
    out = {}
    for k, v in (m.pax_headers or {}).items():
        if k.startswith("SCHILY.xattr."):
            # tarfile decoded the raw value as UTF-8 with surrogateescape: undo it
            out[k[len("SCHILY.xattr."):]] = v.encode("utf-8", "surrogateescape") if isinstance(v, str) else v
        elif k.startswith("LIBARCHIVE.xattr."):
            name = urllib.parse.unquote(k[len("LIBARCHIVE.xattr."):])
            out[name] = base64.b64decode(v + "=" * (-len(v) % 4))
    return out


def _open_layer(path):
    """(file object of the uncompressed tar stream, process to wait for or None)."""
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic[:2] == b"\x1f\x8b":
        return gzip.open(path, "rb"), None
    if magic == b"\x28\xb5\x2f\xfd":
        zstd = shutil.which("zstd")
        if not zstd:
            raise ImageError(f"{path}: a zstd layer and no `zstd` program")
        proc = subprocess.Popen([zstd, "-dc", str(path)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        return proc.stdout, proc
    return open(path, "rb"), None


class _HashingReader:
    """A file object that hashes what is read through it (the layer's DiffID)."""

    def __init__(self, f):
        self.f = f
        self.h = hashlib.sha256()

    def read(self, n=-1):
        data = self.f.read(n)
        self.h.update(data)
        return data

    def drain(self):
        for chunk in iter(lambda: self.read(1 << 20), b""):
            pass
        return "sha256:" + self.h.hexdigest()


# DiffID -> a layer's members, each regular file numbered from 1 in the layer (Node.inode):
# a base layer both images share is read once per process
_LAYER_CACHE = {}


def _layer_members(path, diff_id=None):
    """[(path, Node, hard-link target or None)] of one layer, in tar order.  The uncompressed
    stream must hash to `diff_id` when one is given (the config's rootfs.diff_ids)."""
    if diff_id and diff_id in _LAYER_CACHE:
        return _LAYER_CACHE[diff_id]
    out = []
    n_files = 0
    fobj, proc = _open_layer(path)
    reader = _HashingReader(fobj)
    try:
        with tarfile.open(fileobj=reader, mode="r|") as tf:
            for m in tf:
                name = _norm(m.name)
                kind = "hardlink" if m.islnk() else TYPES.get(m.type, f"type-{m.type!r}")
                node = Node(kind, m.mode & 0o7777, m.uid, m.gid, mtime=int(m.mtime), xattrs=_xattrs(m))
                if m.isreg():
                    h = hashlib.sha256()
                    src = tf.extractfile(m)
                    first = True
                    for chunk in iter(lambda: src.read(1 << 20), b""):
                        if first:
                            node.head = chunk[:64]
                            first = False
                        h.update(chunk)
                    n_files += 1
                    node.size, node.sha256, node.inode = m.size, h.hexdigest(), n_files
                elif m.issym():
                    node.link = m.linkname
                elif m.ischr() or m.isblk():
                    node.device = f"{m.devmajor}:{m.devminor}"
                out.append((name, node, _norm(m.linkname) if m.islnk() else None))
        got = reader.drain()  # the tar's end-of-archive blocks and padding belong to it too
    except (tarfile.TarError, OSError, EOFError) as e:
        raise ImageError(f"layer {path}: {e}") from None
    finally:
        fobj.close()
        if proc:
            proc.wait()
    if diff_id and got != diff_id:
        raise ImageError(f"layer {path}: its uncompressed content hashes to {got}, the config's diff_id is {diff_id}")
    if diff_id:
        _LAYER_CACHE[diff_id] = out
    return out


def _remove(tree, path):
    """Remove `path` and everything below it ("" = everything)."""
    for k in [k for k in tree if path == "" or k == path or k.startswith(path + "/")]:
        del tree[k]


def _apply(tree, members, where, inode_base):
    # whiteouts and opaque markers hide what the layers below hold: apply them first
    for name, _, _ in members:
        base = name.rsplit("/", 1)[-1]
        parent = name.rpartition("/")[0]
        if base == OPAQUE:
            for k in [k for k in tree if k.startswith(parent + "/" if parent else "")]:
                del tree[k]
        elif base.startswith(WH):
            _remove(tree, (parent + "/" if parent else "") + base[len(WH):])
    for name, node, target in members:
        base = name.rsplit("/", 1)[-1]
        if base.startswith(WH):
            continue
        if node.type == "hardlink":
            if target not in tree or tree[target].type != "file":
                raise ImageError(f"{where}: hard link {name} -> {target}: no such file below it")
            t = tree[target]
            node = Node("file", t.mode, t.uid, t.gid, t.size, t.sha256, mtime=t.mtime, xattrs=dict(t.xattrs),
                        inode=t.inode, head=t.head)
        elif node.type == "file":
            node = dataclasses.replace(node, inode=inode_base + node.inode)  # unique in the image
        old = tree.get(name)
        if old is not None and old.type == "dir" and node.type != "dir":
            _remove(tree, name)
        tree[name] = node


def flatten(image):
    """path -> Node of the image's file system (the root directory is the path "")."""
    tree = {}
    diff_ids = (image.config.get("rootfs") or {}).get("diff_ids") or []
    if len(diff_ids) != len(image.layers):
        raise ImageError(f"{image.source}: {len(image.layers)} layers but {len(diff_ids)} diff_ids")
    for i, (path, diff_id) in enumerate(zip(image.layers, diff_ids)):
        # inode numbers: layer i's files are (i + 1) * 2**32 + their number in the layer
        _apply(tree, _layer_members(path, diff_id), f"{image.source} layer {i}", (i + 1) << 32)
    return tree


def hardlink_groups(tree):
    """path -> sorted tuple of the other paths of the same file (regular files only)."""
    by_inode = {}
    for p, n in tree.items():
        if n.type == "file":
            by_inode.setdefault(n.inode, []).append(p)
    out = {}
    for paths in by_inode.values():
        for p in paths:
            out[p] = tuple(sorted(q for q in paths if q != p))
    return out


# --- comparing ----------------------------------------------------------------------------------


def _matches(path, pat):
    pat = _norm(pat)
    if any(c in pat for c in "*?["):
        return fnmatch.fnmatchcase(path, pat)
    return path == pat or (pat == "" and path != "") or path.startswith(pat + "/")


def _ignored(path, ignore):
    return any(_matches(path, pat) for pat in ignore)


def _skipped_fields(path, ignore_fields):
    out = set()
    for pat, fields in (ignore_fields or {}).items():
        if _matches(path, pat):
            out |= set(fields)
    return out


def _show(node, what):
    v = getattr(node, what) if what != "hardlinks" else None
    if what == "mode":
        return f"{v:04o}"
    if what == "sha256":
        text = node.head.decode(errors="replace")
        more = "..." if node.size > len(node.head) else ""
        return f"{v[:12]} ({text!r}{more})"
    return repr(v)


FIELDS = ("type", "mode", "uid", "gid", "size", "sha256", "link", "hardlinks", "device", "xattrs", "mtime")


def _node_diffs(path, a, b, links_a, links_b, times, xattr_pred, skip=()):
    fields = ["type", "uid", "gid"]
    if a.type == b.type:
        if a.type != "symlink":
            fields.append("mode")
        if a.type == "file":
            fields += ["size", "sha256"]
        if a.type == "symlink":
            fields.append("link")
        if a.type in ("char", "block"):
            fields.append("device")
    else:
        fields += ["mode"]
    if times:
        fields.append("mtime")
    out = [f"{f} {_show(a, f)} != {_show(b, f)}" for f in fields if f not in skip and getattr(a, f) != getattr(b, f)]
    if a.type == b.type == "file" and "hardlinks" not in skip and links_a.get(path) != links_b.get(path):
        out.append(f"hard links {list(links_a.get(path, ()))} != {list(links_b.get(path, ()))}")
    xa = {k: v for k, v in a.xattrs.items() if xattr_pred(k)}
    xb = {k: v for k, v in b.xattrs.items() if xattr_pred(k)}
    if xa != xb and "xattrs" not in skip:
        out.append(f"xattrs {xa!r} != {xb!r}")
    return out


def _unset(v):
    return v is None or v == "" or v == [] or v == {}


def compare_config(a, b, fields=CONFIG_FIELDS, ignore_labels=(), names=("A", "B")):
    """Differences of the config fields (and the platform) as readable lines."""
    out = []
    for k in ("architecture", "os"):
        if a.config.get(k) != b.config.get(k):
            out.append(f"config {k}: {names[0]} {a.config.get(k)!r}, {names[1]} {b.config.get(k)!r}")
    ca, cb = a.cfg, b.cfg
    for f in fields:
        va, vb = ca.get(f), cb.get(f)
        if f == "Labels":
            va = {k: v for k, v in (va or {}).items() if k not in ignore_labels}
            vb = {k: v for k, v in (vb or {}).items() if k not in ignore_labels}
        if _unset(va) and _unset(vb):
            continue
        if va != vb:
            out.append(f"config {f}: {names[0]} {va!r}, {names[1]} {vb!r}")
    return out


def compare(a, b, ignore=(), times=False, config_fields=CONFIG_FIELDS, ignore_labels=(), xattrs=None,
            names=("A", "B"), limit=MAX_SHOWN, ignore_fields=None, only=None):
    """Every difference between images `a` and `b` (Image objects from load(), or sources load()
    accepts) as readable lines; [] when they hold the same files and config.  ignore: paths or
    patterns left out (see the module's doc); times: compare mtimes too; config_fields: the
    config fields compared; ignore_labels: label keys left out (a builder's own stamp); xattrs:
    a predicate on attribute names, default every name but IGNORED_XATTRS; names: what to call
    the two images in the lines; limit: lines shown before a "... N more" line;
    ignore_fields: {path or pattern: fields of FIELDS not compared there} (e.g. "hardlinks");
    only: paths or patterns, the only ones compared (and then no config field)."""
    a = a if isinstance(a, Image) else load(a)
    b = b if isinstance(b, Image) else load(b)
    xattr_pred = xattrs or (lambda k: k not in IGNORED_XATTRS)
    ta, tb = flatten(a), flatten(b)
    la, lb = hardlink_groups(ta), hardlink_groups(tb)
    out = []
    for p in sorted(set(ta) | set(tb)):
        if _ignored(p, ignore) or (only is not None and not _ignored(p, only)):
            continue
        shown = p or "/"
        if p == "" and (p not in ta or p not in tb):
            continue  # a layer need not describe the root directory: compared only when both do
        if p not in tb:
            out.append(f"{shown}: only in {names[0]} ({ta[p].type})")
        elif p not in ta:
            out.append(f"{shown}: only in {names[1]} ({tb[p].type})")
        else:
            d = _node_diffs(p, ta[p], tb[p], la, lb, times, xattr_pred, _skipped_fields(p, ignore_fields))
            if d:
                out.append(f"{shown}: " + "; ".join(d) + f"  [{names[0]} != {names[1]}]")
    if only is None:
        out += compare_config(a, b, config_fields, ignore_labels, names)
    if limit and len(out) > limit:
        out = out[:limit] + [f"... {len(out) - limit} more"]
    return out


def main(argv):
    import argparse
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a", help="OCI layout dir, oci:DIR[:REF] or docker://REF")
    ap.add_argument("b")
    ap.add_argument("--ignore", action="append", default=[], help="path (and below) or fnmatch pattern")
    ap.add_argument("--ignore-label", action="append", default=[])
    ap.add_argument("--times", action="store_true", help="compare mtimes too")
    ap.add_argument("--src-tls-verify", default="true", choices=["true", "false"])
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="imagecmp-") as tmp:
        try:
            sk = [f"--src-tls-verify={args.src_tls_verify}"]
            a = load(args.a, workdir=tmp, skopeo_args=sk)
            b = load(args.b, workdir=tmp, skopeo_args=sk)
            diffs = compare(a, b, ignore=args.ignore, times=args.times, ignore_labels=tuple(args.ignore_label),
                            names=("A", "B"), limit=0)
        except ImageError as e:
            print(f"imagecmp: {e}", file=sys.stderr)
            return 2
    for line in diffs:
        print(line)
    print(f"{len(diffs)} differences" if diffs else "identical")
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
