#!/usr/bin/env python3
"""tar-headers.py: print every header block of a tar stream, field by field, as written.

    tar-headers.py [--no-mtime] [FILE|-]

Reads a tar (plain, or gzip/zstd-compressed: detected by magic) and prints one line per
header block with the raw text of each ustar field (NULs stripped, octal fields as written),
the decoded mtime, and for PAX ('x'/'g') and GNU long-name ('L'/'K') blocks their payload.
Ends with the stream's length and how many zero blocks close it. Used to record what BuildKit
writes and to diff OSSB's layers against it field for field (image-dump.py imports it).
--no-mtime masks every mtime (header and PAX) with '*'.
"""
import gzip
import io
import subprocess
import sys
import time

FIELDS = [("name", 0, 100), ("mode", 100, 8), ("uid", 108, 8), ("gid", 116, 8),
          ("size", 124, 12), ("mtime", 136, 12), ("chksum", 148, 8), ("type", 156, 1),
          ("linkname", 157, 100), ("magic", 257, 6), ("version", 263, 2), ("uname", 265, 32),
          ("gname", 297, 32), ("devmajor", 329, 8), ("devminor", 337, 8), ("prefix", 345, 155)]
TIME_KEYS = ("mtime", "atime", "ctime")


def text(b):
    return b.rstrip(b"\0").decode("utf-8", "backslashreplace")


def octal(b):
    if b and b[0] & 0x80:  # base-256 (GNU/Go) encoding
        return int.from_bytes(b, "big") & ~(0x80 << (8 * (len(b) - 1)))
    s = b.replace(b"\0", b" ").strip()
    return int(s, 8) if s else 0


def decompress(data):
    if data[:2] == b"\x1f\x8b":
        return gzip.decompress(data)
    if data[:4] == b"\x28\xb5\x2f\xfd":
        return subprocess.run(["zstd", "-dc"], input=data, capture_output=True,
                              check=True).stdout
    return data


def pax_records(payload):
    out, buf = [], io.BytesIO(payload)
    while True:
        head = b""
        while not head.endswith(b" "):
            c = buf.read(1)
            if not c:
                return out
            head += c
        rec = buf.read(int(head[:-1]) - len(head))
        key, _, val = rec[:-1].partition(b"=")
        out.append((key.decode(), val.decode("utf-8", "backslashreplace")))


def iso(t):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def header_lines(data, mtime_fmt=None):
    """Yield one text line per header block (and its PAX/GNU payload) of the tar bytes.
    mtime_fmt(seconds, raw_text) -> text replaces the default "'raw'(ISO date)" rendering."""
    if mtime_fmt is None:
        def mtime_fmt(secs, raw):
            return f"{raw!r}({iso(secs)})"
    off, n, zeros = 0, 0, 0
    while off + 512 <= len(data):
        block = data[off:off + 512]
        if block == b"\0" * 512:
            zeros += 1
            off += 512
            continue
        if zeros:
            yield f"!! {zeros} zero block(s) before offset {off}"
            zeros = 0
        f = {name: block[o:o + ln] for name, o, ln in FIELDS}
        size = octal(f["size"])
        typ = text(f["type"]) or "\\0"
        parts = [f"#{n}", f"off={off}", f"type={typ}", f"name={text(f['name'])!r}"]
        if text(f["prefix"]):
            parts.append(f"prefix={text(f['prefix'])!r}")
        parts += [f"{k}={text(f[k])!r}" for k in ("mode", "uid", "gid", "size")]
        parts.append("mtime=" + mtime_fmt(octal(f["mtime"]), text(f["mtime"])))
        if text(f["linkname"]):
            parts.append(f"linkname={text(f['linkname'])!r}")
        parts += [f"magic={f['magic'].decode('latin-1')!r}",
                  f"version={f['version'].decode('latin-1')!r}",
                  f"uname={text(f['uname'])!r}", f"gname={text(f['gname'])!r}",
                  f"dev={text(f['devmajor'])!r},{text(f['devminor'])!r}"]
        yield " ".join(parts)
        body = data[off + 512: off + 512 + size]
        if typ in ("x", "g"):
            for k, v in pax_records(body):
                if k in TIME_KEYS:
                    try:
                        v = mtime_fmt(int(float(v)), v)
                    except ValueError:
                        pass
                yield f"    pax {k}={v!r}"
        elif typ in ("L", "K"):
            yield f"    gnu-long {text(body)!r}"
        off += 512 + (size + 511) // 512 * 512
        n += 1
    if zeros:
        yield f"end: {zeros} zero block(s)"
    yield (f"total: {len(data)} bytes, {n} header blocks, "
           f"trailing bytes after last block: {len(data) - off}")


def main():
    args = sys.argv[1:]
    mask = "--no-mtime" in args
    args = [a for a in args if a != "--no-mtime"]
    path = args[0] if args else "-"
    data = sys.stdin.buffer.read() if path == "-" else open(path, "rb").read()
    fmt = (lambda secs, raw: "*") if mask else None
    for line in header_lines(decompress(data), fmt):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
