#!/usr/bin/env python3
"""make-base.py OUTDIR - write the base image of the from-registry case as an OCI image layout
(tag "1"), byte for byte the same on every machine: two gzip layers made with tarfile (fixed
mtimes and owners, sorted entries, gzip mtime 0), a config with every field a child inherits
(Env, Entrypoint, Cmd, WorkingDir, User, ExposedPorts, Volumes, Labels, Healthcheck, Shell,
StopSignal, OnBuild) and two history entries.  Layer 2 deletes a file (.wh.gone.txt) and makes
a directory opaque (old/.wh..wh..opq), so a pull must apply whiteouts.  Push it with
  skopeo copy oci:OUTDIR:1 docker://HOST:PORT/REPO:1 --dest-tls-verify=false"""
import gzip
import hashlib
import io
import json
import os
import sys
import tarfile

MTIME = 1577836800  # 2020-01-01T00:00:00Z


def entry(name, kind="file", data=b"", mode=0o644, uid=0, gid=0, link=""):
    ti = tarfile.TarInfo(name)
    ti.mtime = MTIME
    ti.uid, ti.gid, ti.mode = uid, gid, mode
    ti.uname = ti.gname = ""
    if kind == "dir":
        ti.type = tarfile.DIRTYPE
    elif kind == "symlink":
        ti.type, ti.linkname = tarfile.SYMTYPE, link
    elif kind == "hardlink":
        ti.type, ti.linkname = tarfile.LNKTYPE, link
    else:
        ti.size = len(data)
    return ti, data


def layer(entries):
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as t:
        for ti, data in entries:
            t.addfile(ti, io.BytesIO(data) if ti.isfile() else None)
    tar = raw.getvalue()
    gz = io.BytesIO()
    with gzip.GzipFile(fileobj=gz, mode="wb", mtime=0, compresslevel=6) as g:
        g.write(tar)
    return tar, gz.getvalue()


def sha(b):
    return "sha256:" + hashlib.sha256(b).hexdigest()


LAYER1 = [
    entry("bin", "dir", mode=0o755),
    entry("bin/tool", data=b"#!/bin/sh\necho tool \"$@\"\n", mode=0o755),
    entry("bin/tool-link", "symlink", link="tool", mode=0o777),
    entry("etc", "dir", mode=0o755),
    entry("etc/group", data=b"root:x:0:\napp:x:1000:\n"),
    entry("etc/os-release", data=b"NAME=ossb-ref-base\nVERSION=1\n"),
    entry("etc/passwd", data=b"root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n"),
    entry("gone.txt", data=b"deleted by layer 2\n"),
    entry("old", "dir", mode=0o755),
    entry("old/a.txt", data=b"hidden by the opaque dir\n"),
    entry("old/sub", "dir", mode=0o700),
    entry("old/sub/b.txt", data=b"hidden too\n"),
    entry("tmp", "dir", mode=0o1777),
    entry("usr", "dir", mode=0o755),
    entry("usr/bin", "dir", mode=0o755),
    entry("usr/bin/setuid-tool", data=b"#!/bin/sh\n", mode=0o4755),
    entry("usr/share", "dir", mode=0o755),
    entry("usr/share/doc", "dir", mode=0o755),
    entry("usr/share/doc/readme.txt", data=b"the base image of ossb's from-registry reference case\n"),
    entry("usr/share/doc/readme-link.txt", "hardlink", link="usr/share/doc/readme.txt"),
    entry("var", "dir", mode=0o755),
    entry("var/lib", "dir", mode=0o755),
    entry("var/lib/app", "dir", mode=0o750, uid=1000, gid=1000),
    entry("var/lib/app/data.txt", data=b"app data\n", mode=0o640, uid=1000, gid=1000),
]

LAYER2 = [
    entry(".wh.gone.txt"),
    entry("etc", "dir", mode=0o755),
    entry("etc/motd", data=b"welcome\n"),
    entry("etc/os-release", data=b"NAME=ossb-ref-base\nVERSION=2\n"),
    entry("old", "dir", mode=0o755),
    entry("old/.wh..wh..opq"),
    entry("old/new.txt", data=b"the only file of old/\n"),
]


def blob(root, data):
    d = sha(data)
    path = os.path.join(root, "blobs", "sha256", d.split(":")[1])
    with open(path, "wb") as f:
        f.write(data)
    return d


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    root = sys.argv[1]
    os.makedirs(os.path.join(root, "blobs", "sha256"), exist_ok=True)
    layers, diff_ids = [], []
    for ents in (LAYER1, LAYER2):
        tar, gz = layer(ents)
        diff_ids.append(sha(tar))
        layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": blob(root, gz),
                       "size": len(gz)})
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": "2020-01-01T00:00:00Z",
        "author": "ossb tests",
        "config": {
            "User": "app",
            "ExposedPorts": {"8080/tcp": {}},
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "BASE_ENV=from-base"],
            "Entrypoint": ["/bin/tool"],
            "Cmd": ["--help"],
            "Volumes": {"/data": {}},
            "WorkingDir": "/var/lib/app",
            "Labels": {"base.label": "base"},
            "StopSignal": "SIGQUIT",
            "Healthcheck": {"Test": ["CMD", "/bin/tool", "health"], "Interval": 30000000000,
                            "Timeout": 5000000000, "Retries": 3},
            "Shell": ["/bin/sh", "-eu", "-c"],
            "OnBuild": ["COPY onbuild.txt /onbuild/"],
        },
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [
            {"created": "2020-01-01T00:00:00Z", "created_by": "make-base.py: layer 1"},
            {"created": "2020-01-01T00:00:00Z", "created_by": "make-base.py: layer 2 (whiteouts)"},
        ],
    }
    cfg = json.dumps(config, separators=(",", ":"), sort_keys=False).encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": blob(root, cfg),
                   "size": len(cfg)},
        "layers": layers,
    }
    m = json.dumps(manifest, separators=(",", ":")).encode()
    index = {"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                                                "digest": blob(root, m), "size": len(m),
                                                "annotations": {"org.opencontainers.image.ref.name": "1"}}]}
    with open(os.path.join(root, "index.json"), "w") as f:
        json.dump(index, f)
    with open(os.path.join(root, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    print(sha(m))


if __name__ == "__main__":
    main()
