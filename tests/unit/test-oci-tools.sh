#!/bin/sh
# tests/unit/test-oci-tools.sh - check the exporters' output with real tools.
#
# test-oci-layout writes a small image (a dir, a file, a symlink, a hard link; gzip and zstd
# variants) through the oci/ API as a layout directory, a layout tar and docker archives; this
# script then checks them with skopeo and umoci (required: exit 77 = skip without them), podman
# (when present and usable, with a private storage root), GNU tar, and re-checks the rules
# `docker load` of Docker 20.10 applies (moby image/tarexport/load.go) with python3.
set -u

if ! command -v skopeo >/dev/null 2>&1 || ! command -v umoci >/dev/null 2>&1; then
        echo "1..0 # SKIP skopeo or umoci is not installed"
        exit 77
fi

T=$(mktemp -d /tmp/ossb-test-tools-XXXXXX) || exit 1
trap 'rm -rf "$T"' EXIT
n=0
failed=0

ok() {
        n=$((n + 1))
        echo "ok $n - $1"
}
not_ok() {
        n=$((n + 1))
        echo "not ok $n - $1"
        failed=1
}
# check DESCRIPTION COMMAND...: runs COMMAND, prints its output as comments when it fails.
check() {
        desc=$1
        shift
        if "$@" >"$T/out" 2>&1; then
                ok "$desc"
        else
                not_ok "$desc"
                sed 's/^/# /' "$T/out"
        fi
}

if ! ./tests/unit/test-oci-layout mkimage "$T/img" >"$T/out" 2>&1; then
        not_ok "mkimage"
        sed 's/^/# /' "$T/out"
        echo "1..$n"
        exit 1
fi
I=$T/img

ROOTLESS=
[ "$(id -u)" -eq 0 ] || ROOTLESS=--rootless

# umoci unpack IMAGE BUNDLE, then the layer's files must be there.
unpack_and_check() {
        rm -rf "$2"
        umoci unpack $ROOTLESS --image "$1" "$2" || return 1
        r=$2/rootfs/app
        [ "$(cat "$r/hello.txt")" = "hello world" ] || { echo "hello.txt: wrong content"; return 1; }
        [ -L "$r/link" ] && [ "$(readlink "$r/link")" = hello.txt ] || { echo "link: not a symlink to hello.txt"; return 1; }
        [ "$(stat -c %i "$r/hard")" = "$(stat -c %i "$r/hello.txt")" ] || { echo "hard: not a hard link"; return 1; }
        [ "$(stat -c %a "$r")" = 755 ] || { echo "app: mode $(stat -c %a "$r")"; return 1; }
}

# Every blob's name is the sha256 of its content.
blobs_verified() {
        for b in "$1"/blobs/sha256/*; do
                [ "$(sha256sum "$b" | cut -d' ' -f1)" = "$(basename "$b")" ] || { echo "bad blob $b"; return 1; }
        done
}

check "layout: blobs match their digests" blobs_verified "$I/layout"
for ref in app:1.0 localhost:5000/app:1.0 1.0 latest; do
        check "skopeo inspect oci:DIR:$ref" skopeo inspect "oci:$I/layout:$ref"
        check "umoci unpack --image DIR:$ref" unpack_and_check "$I/layout:$ref" "$T/bundle"
done
check "umoci unpack --image DIR (defaults to latest)" unpack_and_check "$I/layout" "$T/bundle"
check "skopeo refuses an unknown ref name" sh -c "! skopeo inspect 'oci:$I/layout:nope'"

for ref in app:1.0 localhost:5000/app:1.0 1.0 latest; do
        check "skopeo inspect oci-archive:TAR:$ref" skopeo inspect "oci-archive:$I/layout.tar:$ref"
done
check "GNU tar lists the layout tar without warnings" sh -c "tar -tf '$I/layout.tar' 2>&1 >/dev/null | grep . && exit 1 || exit 0"
check "skopeo copy oci-archive -> oci, umoci unpacks it" sh -c \
        "skopeo copy 'oci-archive:$I/layout.tar:app:1.0' 'oci:$T/copy1:x' && umoci unpack $ROOTLESS --image '$T/copy1:x' '$T/b1' && test -L '$T/b1/rootfs/app/link'"

for f in docker.tar docker-zstd.tar; do
        check "skopeo inspect docker-archive:$f" skopeo inspect "docker-archive:$I/$f"
        check "skopeo inspect docker-archive:$f:app:1.0" skopeo inspect "docker-archive:$I/$f:app:1.0"
        check "skopeo inspect docker-archive:$f:localhost:5000/app:1.0" skopeo inspect "docker-archive:$I/$f:localhost:5000/app:1.0"
        rm -rf "$T/copy2"
        check "skopeo copy docker-archive:$f -> oci, umoci unpacks it" sh -c \
                "skopeo copy 'docker-archive:$I/$f' 'oci:$T/copy2:x' && umoci unpack $ROOTLESS --image '$T/copy2:x' '$T/b2' && test -L '$T/b2/rootfs/app/link' && rm -rf '$T/b2'"
        check "skopeo inspect oci-archive:$f:1.0 (the OCI side of the docker archive)" skopeo inspect "oci-archive:$I/$f:1.0"
done

# What `docker load` (Docker 20.10, moby image/tarexport/load.go) requires of an archive.
docker_load_rules() {
        python3 - "$1" <<'EOF'
import gzip, hashlib, json, sys, tarfile
t = tarfile.open(sys.argv[1])
files = {m.name.rstrip("/"): m for m in t.getmembers()}
def read(name):
    return t.extractfile(files[name]).read()
items = json.loads(read("manifest.json"))
assert isinstance(items, list) and items, "manifest.json: not a non-empty list"
for it in items:
    cfg = json.loads(read(it["Config"]))
    diff_ids = cfg["rootfs"]["diff_ids"]
    assert cfg.get("os", "") in ("", "linux"), "os"
    assert len(diff_ids) == len(it["Layers"]), "layers length mismatch"
    for path, diff_id in zip(it["Layers"], diff_ids):
        data = read(path)
        if data[:3] == b"\x1f\x8b\x08":
            data = gzip.decompress(data)
        elif data[:3] == b"BZh" or data[:6] == b"\xfd7zXZ\x00":
            pass  # load.go can, this check does not
        elif data[:4] == b"\x28\xb5\x2f\xfd":
            raise SystemExit(path + ": zstd, which docker load 20.10 cannot decompress")
        got = "sha256:" + hashlib.sha256(data).hexdigest()
        assert got == diff_id, "%s: diff_id %s, expected %s" % (path, got, diff_id)
    for tag in it.get("RepoTags") or []:
        assert ":" in tag.rsplit("/", 1)[-1] and "@" not in tag, "untagged RepoTag " + tag
for name in ("oci-layout", "index.json"):
    assert name in files, name + " missing"
for name, m in files.items():
    if name.startswith("blobs/sha256/") and m.isfile():
        assert hashlib.sha256(read(name)).hexdigest() == name.rsplit("/", 1)[1], "bad blob " + name
EOF
}
if command -v python3 >/dev/null 2>&1; then
        for f in docker.tar docker-zstd.tar; do
                check "docker load rules (image/tarexport/load.go) hold for $f" docker_load_rules "$I/$f"
        done
else
        ok "# SKIP python3 missing: docker load rules not re-checked"
fi

# podman, with its own storage so that nothing of the host's is touched.
P="podman --root $T/podman-root --runroot $T/podman-run --storage-driver vfs"
if command -v podman >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ] && $P info >/dev/null 2>&1; then
        check "podman load docker.tar (two tags)" sh -c "$P load -i '$I/docker.tar'"
        check "podman has both tags" sh -c "$P images --format '{{.Repository}}:{{.Tag}}' | grep -q 'localhost:5000/app:1.0' && $P images --format '{{.Repository}}:{{.Tag}}' | grep -q '/app:1.0'"
        check "podman load docker-zstd.tar" sh -c "$P load -i '$I/docker-zstd.tar'"
        check "podman load docker-1tag.tar (read as an OCI archive)" sh -c "$P load -i '$I/docker-1tag.tar' | grep -q 'docker.io/library/app:1.0'"
        check "podman load layout-1tag.tar" sh -c "$P load -i '$I/layout-1tag.tar'"
        $P rmi -a -f >/dev/null 2>&1
        rm -rf "$T/podman-root" "$T/podman-run" 2>/dev/null
else
        ok "# SKIP podman missing, not root, or not usable here"
fi

echo "1..$n"
exit $failed
