#!/usr/bin/python3
"""Write the seed inputs of tests/fuzz/fuzz-zran.c into this directory (run once; the files are
committed).  The index seeds are encoded here from docs/LAZY-INDEX.md's description of format 1,
independently of oci/zran.c: the fuzz target's round trip (decode, then encode to the same bytes)
checks that the two agree.  First byte of each file: 0 an index, 1 a layer blob, 2 an index without its trailer
(the fuzz target appends the checksum).  The found-* files are inputs a libFuzzer run of
tests/fuzz/fuzz-zran.c kept (merged with -merge=1), not made here."""
import gzip
import hashlib
import io
import os
import stat
import struct
import tarfile

HERE = os.path.dirname(os.path.abspath(__file__))


def tar_bytes():
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        def add(name, typ, data=b"", mode=0o644, link="", pax=None):
            ti = tarfile.TarInfo(name)
            ti.type, ti.mode, ti.mtime, ti.uid, ti.gid, ti.linkname = typ, mode, 1700000000, 1000, 100, link
            ti.size = len(data) if typ == tarfile.REGTYPE else 0
            if pax:
                ti.pax_headers = pax
            tf.addfile(ti, io.BytesIO(data) if typ == tarfile.REGTYPE else None)
        add("etc/", tarfile.DIRTYPE, mode=0o755)
        add("etc/os-release", tarfile.REGTYPE, b"ID=seed\n")
        add("etc/x", tarfile.REGTYPE, b"x" * 3000, pax={"SCHILY.xattr.user.a": "v"})
        add("etc/link", tarfile.SYMTYPE, mode=0o777, link="os-release")
        add("etc/hard", tarfile.LNKTYPE, link="etc/os-release")
        add("etc/.wh.gone", tarfile.REGTYPE, b"")
        add("empty", tarfile.REGTYPE, b"")
    return buf.getvalue()


def u32(v):
    return struct.pack("<I", v)


def u64(v):
    return struct.pack("<Q", v)


def lstr(b):
    return u32(len(b)) + b


def index_of(tar, blob, span=4 << 20):
    """Format 1 for a blob of one span (a single checkpoint at 0)."""
    sha = lambda b: hashlib.sha256(b).digest()  # noqa: E731
    entries = []
    with tarfile.open(fileobj=io.BytesIO(tar), mode="r:") as tf:
        for m in tf:
            name = m.name.rstrip("/")
            typ = {tarfile.DIRTYPE: stat.S_IFDIR, tarfile.SYMTYPE: stat.S_IFLNK}.get(m.type, stat.S_IFREG)
            hard = m.type == tarfile.LNKTYPE
            size = m.size if m.isreg() else 0
            data = tar[m.offset_data:m.offset_data + size]
            xattrs = [(k[len("SCHILY.xattr."):].encode(), v.encode()) for k, v in sorted(m.pax_headers.items())
                      if k.startswith("SCHILY.xattr.")]
            e = (u32(typ | m.mode) + bytes([1 if hard else 0]) + u32(m.uid) + u32(m.gid) + u64(size)
                 + u64(int(m.mtime)) + u32(0) + u64(m.offset_data if m.isreg() else 0) + u32(0) + u32(0)
                 + lstr(name.encode()) + lstr(m.linkname.encode()) + u32(len(xattrs))
                 + b"".join(lstr(k) + lstr(v) for k, v in xattrs))
            if size > 0:
                e += sha(data)
            entries.append(e)
    cp = u64(0) + bytes([0, 0]) + u64(0) + sha(tar) + u32(0) + u32(0)
    head = (b"OSSBZRAN" + u32(1) + u32(0) + sha(blob) + u64(len(blob)) + u64(len(tar)) + u64(span) + u32(1)
            + u32(len(entries)))
    body = head + cp + b"".join(entries)
    return body + sha(body)


def main():
    tar = tar_bytes()
    blob = gzip.compress(tar, mtime=0)
    idx = index_of(tar, blob)
    seeds = {
        "index-small": b"\x00" + idx,
        "index-truncated": b"\x00" + idx[:-40],
        "body-small": b"\x02" + idx[:-32],
        "blob-small": b"\x01" + blob,
        "blob-members": b"\x01" + b"".join(gzip.compress(tar[i:i + 2048], mtime=0) for i in range(0, len(tar), 2048)),
        "blob-truncated": b"\x01" + blob[:-9],
        "blob-notgzip": b"\x01not gzip at all",
    }
    for name, data in seeds.items():
        with open(os.path.join(HERE, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
