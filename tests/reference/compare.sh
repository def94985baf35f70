#!/bin/bash
# compare.sh - compare an image OSSB built with what BuildKit built from the same Dockerfile.
#
#   tests/reference/compare.sh [options] OSSB_IMAGE REFERENCE
#
# OSSB_IMAGE  an OCI image layout (directory, or .tar/.tar.gz of one), a docker-archive
#             (`docker save`-style tar, .tar.gz or directory) or a `skopeo copy dir:` directory.
# REFERENCE   a recorded directory tests/reference/buildkit-out/CASE/TARGET (what
#             record-buildkit.sh wrote), or an image in any of the forms above.
#
# Options:
#   --mtime        compare every mtime exactly (default: mtimes within a day before the
#                  image's `created` count as BUILD, i.e. the builder's clock, on both sides)
#   --loose        also ignore tar uname/gname (BuildKit takes them from the build host's
#                  passwd/group), header offsets, and the order of config keys
#   --ignore PATH  path prefix compare-images.py skips (repeatable)
#   --tag TAG      manifest of OSSB_IMAGE to use when its OCI layout holds several
#   -q             print only the summary lines
#
# Checks, each printed as a unified diff (--- buildkit, +++ ossb):
#   1. files: /work/shared/bench/compare-images.py on both images (type, mode, uid, gid, size,
#      content sha256, link target, xattrs of every path after applying all layers; the
#      config fields a user sees). Needs the recorded image.docker-archive.tar.gz.
#   2. config: the whole config JSON, created times and diff_ids as placeholders
#      (config.norm.json: the key order is BuildKit's; --loose sorts keys).
#   3. history: created_by, comment, author and empty_layer of every entry (history.txt).
#   4. layers: layer count, then each layer's tar headers field by field (layer-NN.norm, or
#      layer-NN.headers with --mtime): entry order, names, modes, ids, sizes, link names,
#      PAX records, end-of-archive blocks.
#   5. manifest media types: printed for information, never counted (Docker 20.10 pushes
#      Docker schema 2 with gzip layers; an OCI layout has OCI types).
# Exit status: 0 when 1-4 find no difference, 1 when some do, 2 on a usage or read error.
# Needs python3 and GNU tar; compare-images.py from /work/shared/bench (COMPARE_IMAGES=...).
set -uo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
COMPARE_IMAGES=${COMPARE_IMAGES:-/work/shared/bench/compare-images.py}
MTIME=0
LOOSE=0
QUIET=0
TAG=
IGNORES=()

usage() { sed -n '2,36p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

while [ $# -gt 0 ]; do
	case $1 in
	--mtime) MTIME=1 ;;
	--loose) LOOSE=1 ;;
	--ignore) [ $# -ge 2 ] || usage; IGNORES+=(--ignore "$2"); shift ;;
	--tag) [ $# -ge 2 ] || usage; TAG=$2; shift ;;
	-q) QUIET=1 ;;
	-h | --help) usage ;;
	--) shift; break ;;
	-*) echo "compare.sh: unknown option $1" >&2; usage ;;
	*) break ;;
	esac
	shift
done
[ $# = 2 ] || usage
OSSB_IMAGE=$1
REFERENCE=$2
[ -e "$OSSB_IMAGE" ] || { echo "compare.sh: $OSSB_IMAGE: not found" >&2; exit 2; }
[ -e "$REFERENCE" ] || { echo "compare.sh: $REFERENCE: not found" >&2; exit 2; }
[ -f "$COMPARE_IMAGES" ] || { echo "compare.sh: $COMPARE_IMAGES: not found" >&2; exit 2; }

TMP=$(mktemp -d /tmp/ossb-compare.XXXXXX)
trap 'rm -rf "$TMP"' EXIT

say() { [ $QUIET = 1 ] || printf '%s\n' "$*"; }
show() { [ $QUIET = 1 ] || cat; }

# --- dump both sides -----------------------------------------------------------------------
tagargs=()
[ -z "$TAG" ] || tagargs=(--tag "$TAG")
python3 "$HERE/image-dump.py" "${tagargs[@]}" --oci "$TMP/a-oci" "$OSSB_IMAGE" "$TMP/a" || exit 2

B=$TMP/b
B_OCI=
if [ -d "$REFERENCE" ] && [ -f "$REFERENCE/config.json" ] && [ -f "$REFERENCE/history.txt" ]; then
	B=$(cd "$REFERENCE" && pwd)
	if [ -f "$B/image.docker-archive.tar.gz" ]; then
		python3 "$HERE/image-dump.py" --oci "$TMP/b-oci" "$B/image.docker-archive.tar.gz" "$TMP/b-full" || exit 2
		B_OCI=$TMP/b-oci
	elif ! ls "$B"/layer-*.headers >/dev/null 2>&1; then
		# an image without layers (docker save refuses those): its config is all there is
		python3 - "$B/config.json" "$TMP/b-oci" <<'PY' || exit 2
import hashlib, json, os, sys
cfg = open(sys.argv[1], "rb").read()
root = sys.argv[2]
os.makedirs(os.path.join(root, "blobs", "sha256"))
def put(data):
    h = hashlib.sha256(data).hexdigest()
    open(os.path.join(root, "blobs", "sha256", h), "wb").write(data)
    return {"digest": "sha256:" + h, "size": len(data)}
man = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
       "config": dict(mediaType="application/vnd.oci.image.config.v1+json", **put(cfg)),
       "layers": []}
desc = dict(mediaType=man["mediaType"], **put(json.dumps(man).encode()))
open(os.path.join(root, "oci-layout"), "w").write('{"imageLayoutVersion":"1.0.0"}')
open(os.path.join(root, "index.json"), "w").write(json.dumps({"schemaVersion": 2, "manifests": [desc]}))
PY
		B_OCI=$TMP/b-oci
	fi
else
	python3 "$HERE/image-dump.py" --oci "$TMP/b-oci" "$REFERENCE" "$B" || exit 2
	B_OCI=$TMP/b-oci
fi

fail=0
summary=()

# --- 1. files ------------------------------------------------------------------------------
if [ -n "$B_OCI" ]; then
	cargs=()
	[ $MTIME = 0 ] || cargs+=(--mtime)
	say "== 1. files and user-visible config (compare-images.py, A = buildkit, B = ossb)"
	out=$(python3 "$COMPARE_IMAGES" "${cargs[@]}" "${IGNORES[@]}" "oci:$B_OCI" "oci:$TMP/a-oci")
	rc=$?
	printf '%s\n' "$out" | show
	case $rc in
	0) summary+=("files: $(printf '%s\n' "$out" | tail -n1)") ;;
	1) summary+=("files: $(printf '%s\n' "$out" | tail -n1)"); fail=1 ;;
	*) echo "compare.sh: compare-images.py failed ($rc)" >&2; exit 2 ;;
	esac
else
	say "== 1. files: skipped (no image.docker-archive.tar.gz in $REFERENCE)"
	summary+=("files: not compared (no BuildKit image tar recorded)")
fi

# --- 2. config -----------------------------------------------------------------------------
prep_config() {
	if [ $LOOSE = 1 ]; then
		python3 -c 'import json,sys; print(json.dumps(json.load(open(sys.argv[1])), indent=2, sort_keys=True, ensure_ascii=False))' "$1"
	else
		cat "$1"
	fi
}
say "== 2. config (created times and diff_ids as placeholders)"
prep_config "$B/config.norm.json" >"$TMP/cfg-b"
prep_config "$TMP/a/config.norm.json" >"$TMP/cfg-a"
if diff -u --label buildkit --label ossb "$TMP/cfg-b" "$TMP/cfg-a" >"$TMP/cfg.diff"; then
	summary+=("config: same")
else
	show <"$TMP/cfg.diff"
	summary+=("config: different ($(grep -c '^[-+] ' "$TMP/cfg.diff") changed lines)")
	fail=1
fi
if cmp -s "$B/config.json" "$TMP/a/config.json"; then
	summary+=("config bytes: identical (same image id)")
else
	summary+=("config bytes: differ (expected while created times or layers differ)")
fi

# --- 3. history ----------------------------------------------------------------------------
say "== 3. history"
if diff -u --label buildkit --label ossb "$B/history.txt" "$TMP/a/history.txt" >"$TMP/hist.diff"; then
	summary+=("history: same ($(wc -l <"$B/history.txt") entries)")
else
	show <"$TMP/hist.diff"
	summary+=("history: different")
	fail=1
fi

# --- 4. layers -----------------------------------------------------------------------------
ext=norm
[ $MTIME = 0 ] || ext=headers
prep_layer() {
	if [ -f "$1" ]; then
		if [ $LOOSE = 1 ]; then
			sed -E "s/ off=[0-9]+//; s/ uname='[^']*' gname='[^']*'//" "$1"
		else
			cat "$1"
		fi
	fi
}
nb=$(find "$B" -maxdepth 1 -name "layer-*.$ext" | wc -l)
na=$(find "$TMP/a" -maxdepth 1 -name "layer-*.$ext" | wc -l)
say "== 4. layers (buildkit $nb, ossb $na)"
[ "$na" = "$nb" ] || { say "layer count differs: buildkit $nb, ossb $na"; fail=1; }
max=$((na > nb ? na : nb))
bad=0
for i in $(seq 1 "$max"); do
	n=$(printf '%02d' "$i")
	prep_layer "$B/layer-$n.$ext" >"$TMP/lb"
	prep_layer "$TMP/a/layer-$n.$ext" >"$TMP/la"
	if ! diff -u --label "buildkit layer $n" --label "ossb layer $n" "$TMP/lb" "$TMP/la" >"$TMP/l.diff"; then
		show <"$TMP/l.diff"
		bad=$((bad + 1))
	fi
done
if [ $bad = 0 ] && [ "$na" = "$nb" ]; then
	summary+=("layers: $nb, headers identical (.$ext)")
else
	summary+=("layers: buildkit $nb, ossb $na, $bad differ (.$ext)")
	fail=1
fi

# --- 5. manifest (information) -------------------------------------------------------------
ref_summary=$B/manifest.summary.txt
[ ! -f "$B/registry-manifest.summary.txt" ] || ref_summary=$B/registry-manifest.summary.txt
say "== 5. manifest media types (information only)"
say "-- buildkit ($(basename "$ref_summary"))"
show <"$ref_summary"
say "-- ossb"
show <"$TMP/a/manifest.summary.txt"

say "== summary"
printf '%s\n' "${summary[@]}"
if [ $fail = 0 ]; then
	echo "compare: identical"
else
	echo "compare: different"
fi
exit $fail
