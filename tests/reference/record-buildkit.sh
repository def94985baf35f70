#!/bin/bash
# record-buildkit.sh - build the reference cases with Docker's BuildKit and record what it
# writes (config, history, manifest, every layer's tar headers) under buildkit-out/.
#
#   tests/reference/record-buildkit.sh [-o OUTDIR] [CASE ...]     (default: every case)
#
# A case is a folder here with a Dockerfile, a context/ (made into the real build context by
# prepare-context.sh), optionally a make-base.py (writes a base image as an OCI layout, which
# is pushed to the registry as REGISTRY/ossb-ref-base/CASE:1; that name replaces every @BASE@
# of the Dockerfile)
# and optionally a `targets` file (one --target per line; default: the
# last stage, recorded as "default"). For each target the script builds with
# `DOCKER_BUILDKIT=1 /usr/bin/docker build` (Debian's docker.io 20.10, BuildKit built into
# dockerd), `docker save`s the image, pushes it to a private registry for the manifest a
# registry serves, and writes OUTDIR/CASE/TARGET/ with image-dump.py, plus:
#   image.docker-archive.tar.gz   the `docker save` output (gzip -n), for compare.sh
#   registry-manifest.json        the pushed manifest, byte for byte (+ .pretty.json)
#   build.log                     `docker build --progress=plain` output
#
# Daemons: with DOCKER_HOST set, that dockerd is used and left alone. Otherwise a private
# dockerd runs with data-root, exec-root and socket under a temp dir (no bridge, no iptables,
# as /work/shared/bench/tools/docker.sh does) and is stopped and removed at the end. Likewise
# REF_REGISTRY=host:port uses a running registry; otherwise Debian's docker-registry is started
# on 127.0.0.1:${REF_REG_PORT:-5055} and stopped at the end. Runs as root.
# Needs: docker.io, docker-registry, skopeo, python3, GNU tar, gzip.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
OUT=$HERE/buildkit-out
DOCKER_BIN=${DOCKER_BIN:-/usr/bin/docker}

while getopts o:h opt; do
	case $opt in
	o) OUT=$(mkdir -p "$OPTARG" && cd "$OPTARG" && pwd) ;;
	*) sed -n '2,22p' "$0"; exit 2 ;;
	esac
done
shift $((OPTIND - 1))

log() { printf '[record-buildkit] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (dockerd, chown in prepare-context.sh)"
[ -x "$DOCKER_BIN" ] || die "$DOCKER_BIN missing: apt-get install docker.io"
for c in dockerd skopeo python3 tar gzip; do
	command -v "$c" >/dev/null || die "missing command $c"
done

WORK=$(mktemp -d /tmp/ossb-ref.XXXXXX)
DOCKERD_PID=
REGISTRY_PID=

cleanup() {
	set +e
	if [ -n "$DOCKERD_PID" ]; then
		kill "$DOCKERD_PID" 2>/dev/null || true
		for _ in $(seq 1 50); do kill -0 "$DOCKERD_PID" 2>/dev/null || break; sleep 0.2; done
	fi
	if [ -n "$REGISTRY_PID" ]; then
		kill "$REGISTRY_PID" 2>/dev/null || true
		wait "$REGISTRY_PID" 2>/dev/null || true
	fi
	# dockerd unmounts its overlays on exit; anything still mounted under WORK is ours
	if [ -d "$WORK" ]; then
		awk -v w="$WORK" 'index($2, w) == 1 { print $2 }' /proc/mounts | sort -r |
			while read -r m; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null; done
		rm -rf "$WORK" || true
	fi
}
trap cleanup EXIT

start_dockerd() {
	if [ -n "${DOCKER_HOST:-}" ]; then
		log "using the dockerd at $DOCKER_HOST"
		return
	fi
	local d=$WORK/docker
	mkdir -p "$d"
	cat >"$d/daemon.json" <<JSON
{
  "data-root": "$d/data",
  "exec-root": "$d/exec",
  "pidfile": "$d/dockerd.pid",
  "hosts": ["unix://$d/docker.sock"],
  "storage-driver": "overlay2",
  "bridge": "none",
  "iptables": false,
  "ip6tables": false,
  "ip-masq": false,
  "features": { "buildkit": true }
}
JSON
	export DOCKER_HOST=unix://$d/docker.sock
	setsid dockerd --config-file "$d/daemon.json" >"$d/dockerd.log" 2>&1 </dev/null &
	DOCKERD_PID=$!
	for _ in $(seq 1 100); do
		"$DOCKER_BIN" version >/dev/null 2>&1 && { log "private dockerd pid $DOCKERD_PID"; return; }
		sleep 0.3
	done
	tail -n 20 "$d/dockerd.log" >&2
	die "dockerd did not come up"
}

start_registry() {
	if [ -n "${REF_REGISTRY:-}" ]; then
		log "using the registry at $REF_REGISTRY"
		return
	fi
	command -v docker-registry >/dev/null || die "missing docker-registry (apt-get install docker-registry)"
	REF_REGISTRY=127.0.0.1:${REF_REG_PORT:-5055}
	mkdir -p "$WORK/registry"
	cat >"$WORK/registry/config.yml" <<YML
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $WORK/registry/data
http:
  addr: $REF_REGISTRY
health:
  storagedriver:
    enabled: false
YML
	docker-registry serve "$WORK/registry/config.yml" >"$WORK/registry/log" 2>&1 </dev/null &
	REGISTRY_PID=$!
	for _ in $(seq 1 50); do
		python3 -c "import urllib.request,sys; urllib.request.urlopen('http://$REF_REGISTRY/v2/', timeout=1)" \
			2>/dev/null && { log "private registry on $REF_REGISTRY pid $REGISTRY_PID"; return; }
		sleep 0.2
	done
	cat "$WORK/registry/log" >&2
	die "registry did not come up on $REF_REGISTRY"
}

record_target() {
	local case=$1 ctx=$2 target=$3 name=$4
	local dest=$OUT/$case/$name tag=ossb-ref/$case:$name
	local dockerfile=$HERE/$case/Dockerfile
	if [ -n "$CASE_BASE" ]; then
		dockerfile=$WORK/Dockerfile-$case
		sed "s|@BASE@|$CASE_BASE|g" "$HERE/$case/Dockerfile" >"$dockerfile"
	fi
	local args=(build --progress=plain --network=none -f "$dockerfile" -t "$tag")
	[ "$target" = "" ] || args+=(--target "$target")
	mkdir -p "$dest"
	log "$case: building target ${target:-<last stage>}"
	if ! DOCKER_BUILDKIT=1 "$DOCKER_BIN" "${args[@]}" "$ctx" >"$WORK/build.log" 2>&1; then
		cat "$WORK/build.log" >&2
		die "$case/$name: docker build failed"
	fi
	# drop timings and step digests so that the kept log only changes when the build does
	grep -vE '^#[0-9]+ sha256:|^$' "$WORK/build.log" |
		sed -E 's/ [0-9]+\.[0-9]+s( done)?$/\1/; s/(transferring [a-z]+: )[0-9.]+[kMG]?B/\1N/' >"$dest/build.log"
	local pushed=0
	"$DOCKER_BIN" tag "$tag" "$REF_REGISTRY/$tag"
	if "$DOCKER_BIN" push "$REF_REGISTRY/$tag" >"$WORK/push.log" 2>&1; then
		pushed=1
		skopeo inspect --raw --tls-verify=false "docker://$REF_REGISTRY/$tag" >"$dest/registry-manifest.json"
		rm -rf "$WORK/pulled" "$WORK/pulled-dump"
		skopeo copy -q --src-tls-verify=false "docker://$REF_REGISTRY/$tag" "dir:$WORK/pulled"
		python3 "$HERE/image-dump.py" "$WORK/pulled" "$WORK/pulled-dump"
	else
		log "$case/$name: docker push failed (see push.log)"
		sed -E 's/^[0-9a-f]{12}: //' "$WORK/push.log" >"$dest/push.log"
	fi
	if "$DOCKER_BIN" save "$tag" >"$WORK/image.tar" 2>"$WORK/save.err"; then
		python3 "$HERE/image-dump.py" "$WORK/image.tar" "$dest"
		gzip -n -9 <"$WORK/image.tar" >"$dest/image.docker-archive.tar.gz"
		local size; size=$(stat -c %s "$dest/image.docker-archive.tar.gz")
		if [ "$size" -gt 1000000 ]; then
			log "$case/$name: image.docker-archive.tar.gz is $size bytes (> 1 MB): not kept"
			rm -f "$dest/image.docker-archive.tar.gz"
		fi
		if [ $pushed = 1 ]; then
			cmp -s "$WORK/pulled-dump/config.json" "$dest/config.json" ||
				log "$case/$name: the pushed config differs from the docker save config"
		fi
	elif [ $pushed = 1 ]; then
		# docker 20.10 cannot save an image without layers ("empty export - not implemented")
		log "$case/$name: docker save failed ($(cat "$WORK/save.err")): dumping the pushed copy"
		cp "$WORK/save.err" "$dest/save.err"
		python3 "$HERE/image-dump.py" "$WORK/pulled" "$dest"
	else
		die "$case/$name: neither docker save nor docker push worked"
	fi
	# registry-manifest.json is the manifest as served; image-dump.py's copy of it (made only
	# when the image was dumped from the pushed copy) would duplicate it
	rm -f "$dest/manifest.json" "$dest/manifest.pretty.json"
	if [ $pushed = 1 ]; then
		cp "$WORK/pulled-dump/manifest.summary.txt" "$dest/registry-manifest.summary.txt"
		cp "$WORK/pulled-dump/layers.tsv" "$dest/registry-layers.tsv"
		python3 -c 'import json,sys,collections
m=json.load(open(sys.argv[1]),object_pairs_hook=collections.OrderedDict)
print(json.dumps(m,indent=2))' "$dest/registry-manifest.json" >"$dest/registry-manifest.pretty.json"
	fi
}

record_case() {
	local case=$1
	[ -f "$HERE/$case/Dockerfile" ] || die "$case: no $HERE/$case/Dockerfile"
	local ctx=$WORK/ctx-$case
	"$HERE/prepare-context.sh" "$HERE/$case" "$ctx"
	rm -rf "${OUT:?}/$case"
	CASE_BASE=
	if [ -f "$HERE/$case/make-base.py" ]; then
		# the case builds FROM an image in the registry: make it and push it first
		local base=$REF_REGISTRY/ossb-ref-base/$case:1
		rm -rf "$WORK/base-$case"
		python3 "$HERE/$case/make-base.py" "$WORK/base-$case" >/dev/null
		skopeo copy -q --dest-tls-verify=false "oci:$WORK/base-$case:1" "docker://$base"
		CASE_BASE=$base
		log "$case: base image pushed as $base"
	fi
	local targets=("")
	if [ -f "$HERE/$case/targets" ]; then
		mapfile -t targets < <(grep -vE '^\s*(#|$)' "$HERE/$case/targets")
	fi
	local t
	for t in "${targets[@]}"; do
		record_target "$case" "$ctx" "$t" "${t:-default}"
	done
}

CASE_BASE=
cases=("$@")
if [ ${#cases[@]} = 0 ]; then
	for d in "$HERE"/*/Dockerfile; do cases+=("$(basename "$(dirname "$d")")"); done
fi
start_dockerd
start_registry
{
	echo "docker: $("$DOCKER_BIN" version --format '{{.Server.Version}}') (client $("$DOCKER_BIN" version --format '{{.Client.Version}}'))"
	echo "containerd: $("$DOCKER_BIN" version --format '{{range .Server.Components}}{{if eq .Name "containerd"}}{{.Version}}{{end}}{{end}}')"
	echo "storage driver: $("$DOCKER_BIN" info --format '{{.Driver}}')"
	echo "kernel: $(uname -r)"
} >"$WORK/versions.txt"
mkdir -p "$OUT"
cp "$WORK/versions.txt" "$OUT/versions.txt"
for c in "${cases[@]}"; do record_case "$c"; done
log "recorded under $OUT"
