"""`ossb convert`: an image made by the tests rewritten into eStargz, zstd:chunked, gzip and zstd.

Each result is checked with readers independent of ossb: the layout and every blob digest
(load_layout_image), the same files as the source (Python's tarfile), the config's new
rootfs.diff_ids (the sha256 of each decompressed layer), skopeo (inspect, copy) and umoci
(unpack); the eStargz and zstd:chunked tables of contents are parsed here in Python (footer,
TOC digest against the annotation, every chunk decompressed on its own and checked against its
chunkDigest and against the file's bytes), so that ossb's own reader is not what says the
format is right."""
import hashlib
import io
import json
import os
import shutil
import struct
import subprocess
import tarfile
import time
import zlib

import pytest

from conftest import IS_ROOT, apply_layers, need_tool, run_tool
from images import D, F, H, S, WH, load_layout_image, make_image, tree_summary, write_layout

MIB = 1024 * 1024
BIG = bytes((i * 2654435761 >> 13) & 0xFF for i in range(9 * MIB + 77))  # three 4 MiB chunks

LAYER1 = [D("etc"), F("etc/hello.txt", "hello world\n"), F("etc/empty", b""), F("etc/suid", "x", 0o4755),
          S("etc/link", "hello.txt"), H("etc/link2", "etc/hello.txt"), D("usr"), D("usr/lib"),
          F("usr/lib/big.bin", BIG), F("usr/lib/caf\u00e9.txt", "accents\n", 0o600, 1000, 1000),
          F("gone.txt", "to be deleted\n")]
LAYER2 = [WH("gone.txt"), D("etc"), F("etc/new.txt", "second layer\n")]

ANN_TOC = "containerd.io/snapshot/stargz/toc.digest"
ANN_USIZE = "io.containers.estargz.uncompressed-size"
ANN_ZC_SUM = "io.github.containers.zstd-chunked.manifest-checksum"
ANN_ZC_POS = "io.github.containers.zstd-chunked.manifest-position"


@pytest.fixture
def source(tmp_path):
    img = make_image([LAYER1, LAYER2])
    write_layout(tmp_path / "src", {"v1": img})
    return img


def convert(ossb, tmp_path, compression, src="oci:{tmp}/src:v1", dst="oci:{tmp}/dst:conv", extra=()):
    src = src.format(tmp=tmp_path)
    dst = dst.format(tmp=tmp_path)
    r = ossb.run("convert", "--cache-dir", ossb.cache, "--progress", "plain", f"--compression={compression}",
                 *extra, src, dst)
    return r


def sha(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def files_of(image_tars):
    fs = tree_summary(apply_layers(image_tars))
    fs.pop("stargz.index.json", None)  # eStargz's TOC is a file of the tar
    return fs


# --- an independent reader of the two formats -----------------------------------------------


def gunzip_member(data):
    """Decompress gzip members from the start of data (as many as there are)."""
    out = b""
    while data:
        d = zlib.decompressobj(31)
        out += d.decompress(data)
        if not d.eof:
            break
        data = d.unused_data
    return out


def estargz_toc(blob, annotations):
    footer = blob[-51:]
    assert footer[:4] == b"\x1f\x8b\x08\x04" and footer[12:14] == b"SG" and footer[32:38] == b"STARGZ"
    off = int(footer[16:32], 16)
    d = zlib.decompressobj(31)
    tar = d.decompress(blob[off:-51])
    assert d.eof and not d.unused_data, "the TOC is one gzip member, right before the footer"
    with tarfile.open(fileobj=io.BytesIO(tar)) as tf:
        ti = tf.next()
        assert ti.name == "stargz.index.json"
        js = tf.extractfile(ti).read()
    assert sha(js) == annotations[ANN_TOC]
    return json.loads(js), off


def zstd_decompress(data):
    return subprocess.run([shutil.which("zstd"), "-dc"], input=data, capture_output=True, check=True).stdout


def zstd_chunked_toc(blob, annotations):
    off, length, ulen, typ = (int(x) for x in annotations[ANN_ZC_POS].split(":"))
    assert typ == 1 and sha(blob[off:off + length]) == annotations[ANN_ZC_SUM]
    assert blob[off - 8:off - 4] == b"\x50\x2a\x4d\x18" and struct.unpack("<I", blob[off - 4:off])[0] == length
    js = zstd_decompress(blob[off:off + length])
    assert len(js) == ulen
    f = blob[-40:]
    assert blob[-48:-44] == b"\x50\x2a\x4d\x18" and f[32:] == b"GnUlInUx"
    assert struct.unpack("<QQQQ", f[:32]) == (off, length, ulen, 1)
    return json.loads(js), off - 8


def check_chunks(blob, toc, toc_off, zstd, tar_files):
    """Every file's chunks, each decompressed on its own, give the file's bytes."""
    ents = toc["entries"]
    offsets = sorted({e["offset"] for e in ents if e.get("offset")}) + [toc_off]
    checked = 0
    i = 0
    while i < len(ents):
        e = ents[i]
        if e["type"] != "reg" or not e.get("size"):
            i += 1
            continue
        chunks = [e] + [c for c in ents[i + 1:i + 1 + 64] if c["type"] == "chunk"]
        chunks = chunks[:1 + next((k for k, c in enumerate(ents[i + 1:]) if c["type"] != "chunk"), len(ents) - i - 1)]
        data = b""
        for k, c in enumerate(chunks):
            start = c["offset"]
            end = e["endOffset"] if zstd and k == len(chunks) - 1 else offsets[offsets.index(start) + 1]
            size = (chunks[k + 1]["chunkOffset"] if k + 1 < len(chunks) else e["size"]) - c.get("chunkOffset", 0)
            raw = (zstd_decompress(blob[start:end]) if zstd else gunzip_member(blob[start:end]))[:size]
            assert len(raw) == size, f"{e['name']}: chunk at {start} is short"
            want = c.get("chunkDigest") or e["digest"]
            assert sha(raw) == want, f"{e['name']}: chunk at {start} does not match its digest"
            data += raw
        name = e["name"].strip("/")
        assert sha(data) == e["digest"] and data == tar_files[name], f"{name}: chunks differ from the tar"
        checked += 1
        i += len(chunks)
    return checked


def tar_file_bytes(raw):
    out = {}
    with tarfile.open(fileobj=io.BytesIO(raw)) as tf:
        for ti in tf:
            if ti.isreg():
                out[ti.name.strip("/")] = tf.extractfile(ti).read()
    return out


# --- tests ----------------------------------------------------------------------------------


@pytest.mark.parametrize("compression", ["estargz", "zstd:chunked", "gzip", "zstd"])
def test_convert_layout(ossb, tmp_path, source, compression):
    need_tool("zstd")
    r = convert(ossb, tmp_path, compression)
    assert r.returncode == 0, str(r)
    digest = r.stdout.strip().splitlines()[-1]
    img = load_layout_image(tmp_path / "dst")
    assert img.digest == digest
    zstd = compression.startswith("zstd")
    mt = "application/vnd.oci.image.layer.v1.tar+" + ("zstd" if zstd else "gzip")
    assert [d["mediaType"] for d in img.manifest["layers"]] == [mt, mt]
    # the config: the new DiffIDs, everything else as it was
    assert img.config["rootfs"]["diff_ids"] == [sha(t) for t in img.layer_tars]
    src_cfg = source.config_json
    for k in ("config", "history", "architecture", "os", "created"):
        assert img.config[k] == src_cfg[k]
    # the same files
    assert files_of(img.layer_tars) == files_of(source.layer_tars)
    for d, blob, raw in zip(img.manifest["layers"], img.layer_blobs, img.layer_tars):
        ann = d.get("annotations", {})
        if compression == "estargz":
            assert ann[ANN_USIZE] == str(len(raw))
            toc, off = estargz_toc(blob, ann)
        elif compression == "zstd:chunked":
            assert ANN_TOC not in ann  # containers/storage refuses layers with both TOC kinds
            toc, off = zstd_chunked_toc(blob, ann)
        else:
            assert not ann
            continue
        files = tar_file_bytes(raw)
        n = check_chunks(blob, toc, off, zstd, files)
        assert n == len([f for f in files if f != "stargz.index.json" and files[f]])
        if d is img.manifest["layers"][0]:
            big = [e for e in toc["entries"] if e["name"].strip("/") == "usr/lib/big.bin" or
                   (e["type"] == "chunk" and e["name"].strip("/") == "usr/lib/big.bin")]
            assert len(big) == 3


@pytest.mark.parametrize("compression", ["estargz", "zstd:chunked"])
def test_convert_tools_accept(ossb, tmp_path, source, compression):
    skopeo = need_tool("skopeo")
    need_tool("zstd")
    r = convert(ossb, tmp_path, compression)
    assert r.returncode == 0, str(r)
    out = json.loads(run_tool([skopeo, "inspect", f"oci:{tmp_path}/dst:conv"]).stdout)
    assert len(out["Layers"]) == 2
    run_tool([skopeo, "copy", "-q", f"oci:{tmp_path}/dst:conv", f"oci:{tmp_path}/copy:x"])
    assert load_layout_image(tmp_path / "copy").digest == load_layout_image(tmp_path / "dst").digest
    if compression == "estargz":
        umoci = need_tool("umoci")
        bundle = tmp_path / "bundle"
        run_tool([umoci, "unpack", *([] if IS_ROOT else ["--rootless"]), "--image", f"{tmp_path}/dst:conv", bundle])
        root = bundle / "rootfs"
        assert (root / "usr/lib/big.bin").read_bytes() == BIG
        assert (root / "etc/new.txt").read_text() == "second layer\n"
        assert not (root / "gone.txt").exists()
        assert os.readlink(root / "etc/link") == "hello.txt"


def test_convert_back_drops_estargz_entries(ossb, tmp_path, source):
    need_tool("zstd")
    assert convert(ossb, tmp_path, "estargz").returncode == 0
    r = convert(ossb, tmp_path, "gzip", src="oci:{tmp}/dst:conv", dst="oci:{tmp}/back:gz")
    assert r.returncode == 0, str(r)
    img = load_layout_image(tmp_path / "back")
    for raw in img.layer_tars:
        assert "stargz.index.json" not in tar_file_bytes(raw)
    assert files_of(img.layer_tars) == files_of(source.layer_tars)
    # converting again gives the same bytes (the writer is deterministic)
    r2 = convert(ossb, tmp_path, "gzip", src="oci:{tmp}/dst:conv", dst="oci:{tmp}/back2:gz")
    assert r2.returncode == 0 and load_layout_image(tmp_path / "back2").digest == img.digest


def test_convert_usage_errors(ossb, tmp_path, source):
    r = ossb.run("convert", "--cache-dir", ossb.cache, f"oci:{tmp_path}/src:v1", f"oci:{tmp_path}/d")
    assert r.returncode == 2 and "--compression" in r.stderr
    r = convert(ossb, tmp_path, "lz4")
    assert r.returncode == 2
    r = convert(ossb, tmp_path, "estargz", dst="{tmp}/no-transport")
    assert r.returncode == 2
    r = convert(ossb, tmp_path, "estargz", src="oci:{tmp}/src:missing")
    assert r.returncode != 0 and "missing" in r.stderr
    assert not (tmp_path / "dst").exists()


@pytest.mark.parametrize("compression", ["estargz", "zstd:chunked"])
def test_convert_ctr_remote_reads_toc(ossb, tmp_path, source, compression):
    """stargz-snapshotter's ctr-remote (its estargz package) parses each converted layer and
    finds the TOC the annotations name.  ctr-remote is a containerd client: a private containerd
    runs for the test (root only)."""
    if not IS_ROOT:
        pytest.skip("a private containerd needs root")
    ctr, containerd = need_tool("ctr-remote"), need_tool("containerd")
    need_tool("zstd")
    assert convert(ossb, tmp_path, compression).returncode == 0
    w = tmp_path / "containerd"
    w.mkdir()
    (w / "config.toml").write_text(
        f'version = 2\nroot = "{w}/root"\nstate = "{w}/state"\n'
        'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
        f'[grpc]\n  address = "{w}/sock"\n[ttrpc]\n  address = "{w}/sock.ttrpc"\n'
        f'[debug]\n  address = "{w}/sock.debug"\n')
    log = open(w / "log", "w")
    proc = subprocess.Popen([containerd, "--config", w / "config.toml"], stdout=log, stderr=log,
                            start_new_session=True)
    base = [ctr, "-a", str(w / "sock"), "-n", "ossb-test"]
    try:
        for _ in range(100):
            if subprocess.run(base + ["version"], capture_output=True).returncode == 0:
                break
            time.sleep(0.1)
        with tarfile.open(tmp_path / "img.tar", "w") as tf:
            tf.add(tmp_path / "dst", arcname=".")
        run_tool(base + ["images", "import", "--base-name", "localhost/conv", "--digests", tmp_path / "img.tar"])
        img = load_layout_image(tmp_path / "dst")
        for d, blob in zip(img.manifest["layers"], img.layer_blobs):
            ann = d["annotations"]
            args = base + ["images", "get-toc-digest"]
            if compression == "zstd:chunked":
                args.append("--zstdchunked")
            got = run_tool(args + [d["digest"]]).stdout.strip()
            if compression == "estargz":
                assert got == ann[ANN_TOC]
            else:  # ctr-remote gives the JSON's digest; the annotation is the compressed TOC's
                toc, _ = zstd_chunked_toc(blob, ann)
                off, length, _, _ = (int(x) for x in ann[ANN_ZC_POS].split(":"))
                assert got == sha(zstd_decompress(blob[off:off + length]))
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
        shutil.rmtree(w / "root", ignore_errors=True)


def test_convert_between_registries(ossb, tmp_path, source, registry_factory):
    """docker:// on both sides: the source read from one registry, the eStargz copy pushed to
    another, its layers carrying the TOC annotations, and skopeo reading it back."""
    a, b = registry_factory(name="conv-src"), registry_factory(name="conv-dst")
    a.push_layout(tmp_path / "src", "v1", "app:1")
    r = convert(ossb, tmp_path, "estargz", src=f"docker://{a.ref('app:1')}", dst=f"docker://{b.ref('app-esgz:1')}")
    assert r.returncode == 0, str(r)
    manifest = json.loads(b.inspect_raw("app-esgz:1"))
    assert len(manifest["layers"]) == 2
    for d in manifest["layers"]:
        assert ANN_TOC in d.get("annotations", {}), d
    out = tmp_path / "back"
    run_tool(["skopeo", "copy", "-q", "--src-tls-verify=false", f"docker://{b.ref('app-esgz:1')}", f"oci:{out}:x"])
    img = load_layout_image(out)
    assert files_of(img.layer_tars) == files_of(source.layer_tars)
