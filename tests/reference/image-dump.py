#!/usr/bin/env python3
"""image-dump.py: write an image's config, history, manifest and layer headers as text files.

    image-dump.py [--tag TAG] [--oci LAYOUT_DIR] IMAGE OUTDIR

IMAGE is an OCI image layout (directory, or tar / tar.gz of one), a docker-archive
(`docker save` output: tar, tar.gz, or its extracted directory) or a `skopeo copy ... dir:DIR`
directory. A source holding both an
index.json and a manifest.json is read as OCI. --tag picks a manifest of an OCI layout by its
org.opencontainers.image.ref.name (default: the first one; an index is followed to its
linux/amd64 manifest).

OUTDIR receives (the same files record-buildkit.sh keeps under buildkit-out/, so that
compare.sh can diff one dump against another):
  config.json          the config blob, byte for byte
  config.pretty.json   the same, indented, keys in their original order
  config.norm.json     as pretty, with "created" values and rootfs.diff_ids replaced by
                       placeholders (they follow from build time and layer bytes)
  history.txt          one line per history entry: index, layer|empty, comment, author, created_by
  manifest.json        the manifest blob as stored (OCI layouts only; a docker-archive has none)
  manifest.summary.txt media types and annotations of manifest, config and layers
  layers.tsv           per layer: media type, blob digest and size, diff_id, tar size, entries
  layer-NN.headers     every tar header field as written (tar-headers.py), raw mtimes
  layer-NN.norm        the same with each mtime within [created - 1 day, created + 1 hour]
                       written as BUILD (the builder's clock, not content)
  layer-NN.tvv         `tar -tvv --full-time` of the uncompressed layer
--oci LAYOUT_DIR also writes the image as an OCI layout there (config and layer blobs as they
are), which /work/shared/bench/compare-images.py reads as oci:LAYOUT_DIR.
"""
import argparse
import datetime
import gzip
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections import OrderedDict

HERE = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location("tar_headers", os.path.join(HERE, "tar-headers.py"))
tar_headers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tar_headers)

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"


def die(msg):
    print(f"image-dump: {msg}", file=sys.stderr)
    sys.exit(2)


def sha256_hex(data):
    return hashlib.sha256(data).hexdigest()


def unpack_source(src, tmp):
    """Return a directory holding the image files (src itself, or src extracted into tmp)."""
    if os.path.isdir(src):
        return src
    if not os.path.isfile(src):
        die(f"{src}: no such file or directory")
    dest = os.path.join(tmp, "src")
    os.makedirs(dest)
    with open(src, "rb") as f:
        magic = f.read(2)
    opener = gzip.open if magic == b"\x1f\x8b" else open
    with opener(src, "rb") as f, tarfile.open(fileobj=f, mode="r|") as tar:
        tar.extractall(dest)
    return dest


class Image:
    """Blobs of one image: config bytes, layer paths in order, manifest bytes (or None)."""

    def __init__(self, root, tag):
        self.root = root
        self.kind = None
        if os.path.exists(os.path.join(root, "index.json")):
            self._read_oci(tag)
        elif os.path.exists(os.path.join(root, "manifest.json")):
            with open(os.path.join(root, "manifest.json"), "rb") as f:
                top = json.load(f)
            if isinstance(top, dict):
                self._read_skopeo_dir(top)
            else:
                self._read_docker_archive(tag)
        else:
            die(f"{root}: neither index.json (OCI layout) nor manifest.json (docker-archive)")

    def blob(self, digest):
        algo, hexd = digest.split(":", 1)
        if self.kind == "skopeo-dir":
            return os.path.join(self.root, hexd)
        return os.path.join(self.root, "blobs", algo, hexd)

    def _read_skopeo_dir(self, man):
        """`skopeo copy ... dir:DIR`: manifest.json as served, blobs named by their hex digest."""
        self.kind = "skopeo-dir"
        with open(os.path.join(self.root, "manifest.json"), "rb") as f:
            self.manifest_bytes = f.read()
        self.manifest_desc = {"mediaType": man.get("mediaType")}
        with open(self.blob(man["config"]["digest"]), "rb") as f:
            self.config_bytes = f.read()
        self.layers = [(lay.get("mediaType", ""), lay["digest"], self.blob(lay["digest"]))
                       for lay in man.get("layers", [])]

    def _read_oci(self, tag):
        self.kind = "oci-layout"
        with open(os.path.join(self.root, "index.json")) as f:
            index = json.load(f)
        cands = index.get("manifests", [])
        if tag:
            cands = [m for m in cands if m.get("annotations", {}).get(
                "org.opencontainers.image.ref.name", "") in (tag, tag.split(":")[-1])
                or m.get("annotations", {}).get(
                    "org.opencontainers.image.ref.name", "").endswith(":" + tag)]
        if not cands:
            die(f"no manifest{' for tag ' + tag if tag else ''} in {self.root}/index.json")
        desc = cands[0]
        while "index" in desc.get("mediaType", "") or "manifest.list" in desc.get("mediaType", ""):
            with open(self.blob(desc["digest"])) as f:
                idx = json.load(f)
            plat = [m for m in idx["manifests"]
                    if m.get("platform", {}).get("os") == "linux"
                    and m.get("platform", {}).get("architecture") == "amd64"]
            if not plat:
                die("index has no linux/amd64 manifest")
            desc = plat[0]
        with open(self.blob(desc["digest"]), "rb") as f:
            self.manifest_bytes = f.read()
        self.manifest_desc = desc
        man = json.loads(self.manifest_bytes)
        with open(self.blob(man["config"]["digest"]), "rb") as f:
            self.config_bytes = f.read()
        self.layers = [(lay.get("mediaType", ""), lay["digest"], self.blob(lay["digest"]))
                       for lay in man.get("layers", [])]

    def _read_docker_archive(self, tag):
        self.kind = "docker-archive"
        with open(os.path.join(self.root, "manifest.json")) as f:
            entries = json.load(f)
        if tag:
            entries = [e for e in entries if any(t == tag or t.endswith(":" + tag)
                                                 for t in e.get("RepoTags") or [])]
        if not entries:
            die(f"no image{' tagged ' + tag if tag else ''} in {self.root}/manifest.json")
        e = entries[0]
        with open(os.path.join(self.root, e["Config"]), "rb") as f:
            self.config_bytes = f.read()
        self.layers = []
        for rel in e["Layers"]:
            path = os.path.join(self.root, rel)
            with open(path, "rb") as f:
                digest = "sha256:" + sha256_hex(f.read())
            self.layers.append(("(docker-archive layer.tar)", digest, path))
        self.manifest_bytes = None
        self.manifest_desc = None


def parse_time(s):
    if not s:
        return None
    s = s.replace("Z", "+00:00")
    date, _, rest = s.partition(".")
    if rest:  # at most 6 fractional digits for fromisoformat
        frac = "".join(c for c in rest if c.isdigit())
        tz = rest[len(frac):]
        s = f"{date}.{frac[:6].ljust(6, '0')}{tz}"
    return datetime.datetime.fromisoformat(s).timestamp()


def pretty(obj):
    return json.dumps(obj, indent=2, ensure_ascii=False) + "\n"


def normalize_config(cfg):
    norm = json.loads(json.dumps(cfg), object_pairs_hook=OrderedDict)
    if "created" in norm:
        norm["created"] = "<created>"
    for h in norm.get("history") or []:
        if "created" in h:
            h["created"] = "<created>"
    rootfs = norm.get("rootfs") or {}
    if isinstance(rootfs.get("diff_ids"), list):
        rootfs["diff_ids"] = ["<diff_id>" for _ in rootfs["diff_ids"]]
    return norm


def history_lines(cfg):
    out = []
    for i, h in enumerate(cfg.get("history") or []):
        kind = "empty" if h.get("empty_layer") else "layer"
        out.append(f"{i:02d}\t{kind}\tcomment={h.get('comment', '')!r}\t"
                   f"author={h.get('author', '')!r}\t{h.get('created_by', '')}")
        extra = [k for k in h if k not in ("created", "created_by", "comment", "author",
                                           "empty_layer")]
        if extra:
            out.append(f"\textra keys: {extra}")
    return out


def manifest_summary(img):
    if img.manifest_bytes is None:
        return ["source: docker-archive (no manifest blob; docker save writes manifest.json)"]
    man = json.loads(img.manifest_bytes)
    lines = [f"source: {img.kind}",
             f"index descriptor mediaType: {img.manifest_desc.get('mediaType')}",
             f"index descriptor annotations: {json.dumps(img.manifest_desc.get('annotations', {}), sort_keys=True)}",
             f"index descriptor platform: {json.dumps(img.manifest_desc.get('platform'), sort_keys=True)}",
             f"manifest keys (in order): {list(json.loads(img.manifest_bytes, object_pairs_hook=OrderedDict).keys())}",
             f"schemaVersion: {man.get('schemaVersion')}",
             f"mediaType: {man.get('mediaType')}",
             f"config mediaType: {man['config'].get('mediaType')}",
             f"annotations: {json.dumps(man.get('annotations', {}), sort_keys=True)}"]
    for i, lay in enumerate(man.get("layers", [])):
        ann = json.dumps(lay.get("annotations", {}), sort_keys=True) if lay.get("annotations") else ""
        lines.append(f"layer {i + 1:02d} mediaType: {lay.get('mediaType')} {ann}".rstrip())
    return lines


def write(path, data):
    mode = "wb" if isinstance(data, bytes) else "w"
    with open(path, mode) as f:
        f.write(data)


def dump(img, out):
    os.makedirs(out, exist_ok=True)
    for name in os.listdir(out):
        if name.startswith("layer-") or name in ("manifest.json", "manifest.pretty.json"):
            os.remove(os.path.join(out, name))
    cfg = json.loads(img.config_bytes, object_pairs_hook=OrderedDict)
    write(os.path.join(out, "config.json"), img.config_bytes)
    write(os.path.join(out, "config.pretty.json"), pretty(cfg))
    write(os.path.join(out, "config.norm.json"), pretty(normalize_config(cfg)))
    write(os.path.join(out, "history.txt"), "\n".join(history_lines(cfg)) + "\n")
    if img.manifest_bytes is not None:
        write(os.path.join(out, "manifest.json"), img.manifest_bytes)
        write(os.path.join(out, "manifest.pretty.json"),
              pretty(json.loads(img.manifest_bytes, object_pairs_hook=OrderedDict)))
    write(os.path.join(out, "manifest.summary.txt"), "\n".join(manifest_summary(img)) + "\n")

    created = parse_time(cfg.get("created"))

    def build_mask(secs, raw):
        if created is not None and created - 86400 <= secs <= created + 3600:
            return "BUILD"
        return f"{raw!r}({tar_headers.iso(secs)})"

    diff_ids = (cfg.get("rootfs") or {}).get("diff_ids") or []
    rows = ["#\tmediaType\tblob_digest\tblob_size\tdiff_id\ttar_size\tentries\tdiff_id_in_config"]
    for i, (mtype, digest, path) in enumerate(img.layers):
        with open(path, "rb") as f:
            blob = f.read()
        data = tar_headers.decompress(blob)
        diff_id = "sha256:" + sha256_hex(data)
        raw_lines = list(tar_headers.header_lines(data))
        norm_lines = list(tar_headers.header_lines(data, build_mask))
        n = f"{i + 1:02d}"
        write(os.path.join(out, f"layer-{n}.headers"), "\n".join(raw_lines) + "\n")
        write(os.path.join(out, f"layer-{n}.norm"), "\n".join(norm_lines) + "\n")
        tvv = subprocess.run(["tar", "-tvv", "--full-time", "-f", "-"], input=data,
                             capture_output=True)
        write(os.path.join(out, f"layer-{n}.tvv"), tvv.stdout + tvv.stderr)
        entries = sum(1 for ln in raw_lines if ln.startswith("#"))
        in_cfg = "yes" if i < len(diff_ids) and diff_ids[i] == diff_id else "NO"
        rows.append(f"{n}\t{mtype}\t{digest}\t{len(blob)}\t{diff_id}\t{len(data)}\t{entries}\t{in_cfg}")
    if len(diff_ids) != len(img.layers):
        rows.append(f"!! config has {len(diff_ids)} diff_ids, manifest {len(img.layers)} layers")
    write(os.path.join(out, "layers.tsv"), "\n".join(rows) + "\n")


def write_oci(img, dest):
    """An OCI layout of img at dest: blobs copied as they are; a manifest made when none."""
    blobs = os.path.join(dest, "blobs", "sha256")
    os.makedirs(blobs, exist_ok=True)
    write(os.path.join(dest, "oci-layout"), '{"imageLayoutVersion":"1.0.0"}')

    def put(data=None, path=None):
        if data is None:
            with open(path, "rb") as f:
                data = f.read()
        hexd = sha256_hex(data)
        target = os.path.join(blobs, hexd)
        if not os.path.exists(target):
            write(target, data)
        return "sha256:" + hexd, len(data)

    cdig, csize = put(img.config_bytes)
    if img.manifest_bytes is not None:
        for _, _, path in img.layers:
            put(path=path)
        mdig, msize = put(img.manifest_bytes)
        mtype = json.loads(img.manifest_bytes).get("mediaType") or OCI_MANIFEST
    else:
        layers = []
        for _, _, path in img.layers:
            d, s = put(path=path)
            layers.append({"mediaType": OCI_LAYER, "digest": d, "size": s})
        man = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
               "config": {"mediaType": OCI_CONFIG, "digest": cdig, "size": csize},
               "layers": layers}
        mdig, msize = put(json.dumps(man).encode())
        mtype = OCI_MANIFEST
    index = {"schemaVersion": 2, "manifests": [
        {"mediaType": mtype, "digest": mdig, "size": msize,
         "annotations": {"org.opencontainers.image.ref.name": "latest"}}]}
    write(os.path.join(dest, "index.json"), json.dumps(index))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tag")
    ap.add_argument("--oci", metavar="LAYOUT_DIR")
    ap.add_argument("image")
    ap.add_argument("outdir")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        img = Image(unpack_source(args.image, tmp), args.tag)
        dump(img, args.outdir)
        if args.oci:
            shutil.rmtree(args.oci, ignore_errors=True)
            write_oci(img, args.oci)
    return 0


if __name__ == "__main__":
    sys.exit(main())
