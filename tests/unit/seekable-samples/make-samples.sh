#!/bin/bash
# tests/unit/seekable-samples/make-samples.sh - how the foreign seekable layers in this folder
# were made, with Debian 12's tools only (never ossb), so that ossb's reader is checked
# against what upstream writers produce, not against ossb's own writer:
#
#   zstd-chunked-skopeo.blob/.json   skopeo 1.9.3 (containers/image + containers/storage)
#                                    `skopeo copy --dest-compress-format zstd:chunked` from an
#                                    OCI layout to another
#   estargz-ctr-remote.blob/.json    stargz-snapshotter 0.12.0's `ctr-remote images convert
#                                    --estargz --oci` in a private containerd 1.6.20 (the
#                                    image imported from an OCI archive, the result exported)
#   zstd-chunked-ctr-remote.blob/.json  the same with `--zstdchunked`
#
# Each .blob is the layer blob, each .json the layer's descriptor from the manifest (with its
# annotations).  The source image is one layer made with umoci: directories, small files, an
# empty file, a setuid file, a symlink, a hard link, a text file and 24000 random bytes (which
# containers/storage's rolling checksum cuts into two chunks).  Run as root (containerd) from
# anywhere:  tests/unit/seekable-samples/make-samples.sh [OUTDIR]   (default: this folder).
# Needs: umoci skopeo containerd ctr-remote ctr python3 jq.
set -euo pipefail
OUT=$(cd "${1:-$(dirname "$0")}" && pwd)
W=$(mktemp -d /tmp/ossb-seek-samples-XXXXXX)
trap 'kill "$(cat "$W/containerd.pid" 2>/dev/null)" 2>/dev/null || true; sleep 1; rm -rf "$W"' EXIT
cd "$W"

# ---- the source image (umoci) ----
umoci init --layout lay >/dev/null
umoci new --image lay:src
umoci unpack --rootless --image lay:src bundle >/dev/null 2>&1
R=bundle/rootfs
mkdir -p "$R/etc" "$R/usr/share/doc" "$R/data"
echo "hello world" >"$R/etc/hello.txt"
printf 'ID=seek\nNAME="Seek Sample"\n' >"$R/etc/os-release"
seq 1 10000 >"$R/data/seq.txt"
python3 -c "import random,sys; random.seed(6); sys.stdout.buffer.write(bytes(random.getrandbits(8) for _ in range(24000)))" >"$R/data/random.bin"
python3 -c "import random; random.seed(99); print(''.join(random.choice('abcdef \n') for _ in range(3000)))" >"$R/usr/share/doc/notes.txt"
ln -s hello.txt "$R/etc/link"
ln "$R/etc/hello.txt" "$R/etc/hard.txt"
: >"$R/etc/empty"
chmod 4755 "$R/etc/os-release"
touch -h -d '2024-01-02 03:04:05' "$R"/etc/* "$R"/data/* "$R"/usr/share/doc/* "$R"/etc "$R"/data "$R"/usr "$R"/usr/share "$R"/usr/share/doc
umoci repack --image lay:src bundle >/dev/null

# layer_of LAYOUT TAG NAME: copy the layout's (only) layer blob and descriptor to $OUT/NAME.*
layer_of() {
	local idx man
	idx=$(jq -r --arg t "$2" '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"] == $t) | .digest' "$1/index.json")
	man="$1/blobs/sha256/${idx#sha256:}"
	jq '.layers[0]' "$man" >"$OUT/$3.json"
	cp "$1/blobs/sha256/$(jq -r '.layers[0].digest' "$man" | cut -d: -f2)" "$OUT/$3.blob"
	echo "$3: $(stat -c %s "$OUT/$3.blob") bytes"
}

# ---- zstd:chunked, skopeo ----
skopeo copy -q --dest-compress-format zstd:chunked oci:lay:src oci:zc:src
layer_of zc src zstd-chunked-skopeo

# ---- eStargz and zstd:chunked, ctr-remote in a private containerd ----
mkdir -p cd
cat >cd/config.toml <<TOML
version = 2
root = "$W/cd/root"
state = "$W/cd/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$W/cd/sock"
[ttrpc]
  address = "$W/cd/sock.ttrpc"
[debug]
  address = "$W/cd/sock.debug"
TOML
setsid containerd --config cd/config.toml >cd/log 2>&1 </dev/null &
echo $! >containerd.pid
CTR=(ctr-remote -a "$W/cd/sock" -n samples)
for _ in $(seq 50); do "${CTR[@]}" version >/dev/null 2>&1 && break; sleep 0.2; done
tar -C lay -cf src.tar .
"${CTR[@]}" images import --base-name localhost/src --digests --all-platforms src.tar >/dev/null
SRC=$("${CTR[@]}" images ls -q | head -n 1)
for fmt in estargz zstdchunked; do
	"${CTR[@]}" images convert --"$fmt" --oci "$SRC" "localhost/src:$fmt" >/dev/null
	"${CTR[@]}" images export "$fmt.tar" "localhost/src:$fmt"
	mkdir "$fmt" && tar -C "$fmt" -xf "$fmt.tar"
	# the export's index names the image; write a tag umoci-style for layer_of
	jq --arg t "$fmt" '.manifests[0].annotations["org.opencontainers.image.ref.name"] = $t' "$fmt/index.json" >"$fmt/i" && mv "$fmt/i" "$fmt/index.json"
done
layer_of estargz estargz estargz-ctr-remote
layer_of zstdchunked zstdchunked zstd-chunked-ctr-remote
