#!/bin/bash
# bench/lazy.sh - lazy pull (issue 6): builds on a huge base that read one file or every file,
# ossb reading the base lazily (eStargz, zstd:chunked) against ossb pulling it in full and
# against buildah and BuildKit, cold caches, medians.
#
#   /work/shared/bench/setup.sh            # registry on 127.0.0.1:5000 (+ its seed data)
#   OSSB=$PWD/ossb bench/seed-huge.sh      # localhost:5000/huge-ok:latest (gzip, 5 layers)
#   OSSB=$PWD/ossb bench/lazy.sh [-t TOOLS] [-c CASES] [-n RUNS] [-o OUT.tsv]
#
# As root.  The lazily read bases are made from huge-ok:latest the first time (when missing)
# with `ossb convert` (huge-ok:esgz, huge-ok:zstdchunked); BASE_ESGZ / BASE_ZSTD name others,
# e.g. the ctr-remote copies the shared stargz.sh makes (`stargz.sh huge-ok:latest` ->
# huge-ok:latest-esgz, huge-ok:latest-zstdchunked).  BASE_GZIP is the full-pull base.
#
# Cases (bench/cases/lazy-*, the base passed as --build-arg BASE):
#   touch     FROM base; RUN cat /etc/os-release > /out.txt
#   readall   FROM base; RUN tar -c --one-file-system -f - / | wc -c > /bytes.txt  (every file)
# Tools:
#   ossb-esgz     ossb --snapshotter=fuse, BASE_ESGZ read lazily
#   ossb-zstd     ossb --snapshotter=fuse, BASE_ZSTD read lazily
#   ossb-esgz-bg, ossb-zstd-bg   the same with --lazy=background (the rest of each layer fetched
#                 in large ranges beside the steps; the default, auto, is on-demand)
#   ossb-full     ossb --snapshotter=fuse --lazy=off, BASE_GZIP pulled in full
#   ossb-overlay  ossb (default snapshotter: kernel overlayfs), BASE_GZIP pulled in full
#   buildah       the shared harness's adapter (tools/buildah.sh), BASE_GZIP
#   docker        BuildKit in a private dockerd (tools/docker.sh, /usr/bin/docker), BASE_GZIP
#
# Every run is cold: the tool's images and caches are deleted (ossb: its --cache-dir, chunk
# cache included), `sync` (DROP_CACHES=1: also drop the page cache).  Builds only, no push:
# each tool leaves the image in its own store (ossb: no --output, the image stays in its
# --cache-dir; buildah: its storage; BuildKit: dockerd's image store).  Each output line of the
# build is stamped with the wall clock as it arrives; "first RUN" is the time from the start of
# the command to the first line announcing the RUN step (ossb: `#N [stage] RUN ...` of
# --progress=plain, printed when the step starts; buildah: `STEP 2/2: RUN ...`, printed when the
# step starts; BuildKit: `#N [2/2] RUN ...` of --progress=plain, printed by the client when the
# vertex starts, after the base is pulled; its plain printer may add up to a few hundred ms).
# ossb's fetched bytes are the sum of its `lazy:` counter lines (bytes the lazily read layers
# fetched).
#
# Time to the first RUN and the total are both taken from the same command.
#
# Output: OUT.tsv (default $BENCH_WORK/lazy.tsv: medians), OUT-runs.tsv (every run), logs in
# $BENCH_WORK/logs/; BENCH_WORK is $LAZY_BENCH_WORK (default /tmp/ossb-bench/lazy): its
# own buildah storage and private dockerd (stop it: kill $(cat $BENCH_WORK/docker/dockerd.pid)).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
shared=${SHARED_BENCH:-$(cd "$here/../../shared/bench" 2>/dev/null && pwd || echo /work/shared/bench)}
[ -r "$shared/lib.sh" ] || { echo "bench/lazy.sh: no shared harness at $shared (set SHARED_BENCH)" >&2; exit 2; }
# its own work dir (buildah storage, a private dockerd), so that a peers.sh running meanwhile
# keeps its images; the registry is the shared one on 127.0.0.1:5000
export BENCH_WORK=${LAZY_BENCH_WORK:-/tmp/ossb-bench/lazy}
# shellcheck source=/dev/null
. "$shared/lib.sh"
# shellcheck source=/dev/null
. "$shared/tools/buildah.sh"
# shellcheck source=/dev/null
. "$shared/tools/docker.sh"

OSSB=${OSSB:-$here/../ossb}
BASE_GZIP=${BASE_GZIP:-$REG_HOST/huge-ok:latest}
BASE_ESGZ=${BASE_ESGZ:-$REG_HOST/huge-ok:esgz}
BASE_ZSTD=${BASE_ZSTD:-$REG_HOST/huge-ok:zstdchunked}
TOOLS=ossb-esgz,ossb-zstd,ossb-full,ossb-overlay,buildah,docker
CASES=touch,readall
RUNS=3
OUT=$BENCH_WORK/lazy.tsv
while getopts t:c:n:o: o; do
	case $o in
	t) TOOLS=$OPTARG ;;
	c) CASES=$OPTARG ;;
	n) RUNS=$OPTARG ;;
	o) OUT=$OPTARG ;;
	*) die "usage: $0 [-t TOOLS] [-c CASES] [-n RUNS] [-o OUT.tsv]" ;;
	esac
done
RUNS_TSV=${OUT%.tsv}-runs.tsv
LOGS=$BENCH_WORK/logs
OSSB_CACHE=$BENCH_WORK/ossb/cache
[ "$(id -u)" = 0 ] || die "run as root (the peers' overlay storage, ossb's FUSE mounts)"
[ -x "$OSSB" ] || die "no ossb binary at $OSSB (set OSSB)"
need curl jq skopeo
registry_up || die "no registry at $REG_URL: run $shared/setup.sh first"
image_present "$BASE_GZIP" || die "$BASE_GZIP is missing: run bench/seed-huge.sh"
mkdir -p "$LOGS" "$OSSB_CACHE"

# --- the lazily readable bases -----------------------------------------------------------

seed() { # seed REF COMPRESSION
	image_present "$1" && return 0
	log "making $1 from $BASE_GZIP (ossb convert --compression $2)"
	local c; c=$(mktemp -d "$BENCH_WORK/convert.XXXXXX")
	"$OSSB" convert --cache-dir "$c" --progress quiet --compression "$2" "docker://$BASE_GZIP" "docker://$1" >/dev/null
	local rc=$?
	rm -rf "$c"
	[ $rc = 0 ] || die "ossb convert $2 failed"
}
case ,$TOOLS, in *,ossb-esgz*) seed "$BASE_ESGZ" estargz ;; esac
case ,$TOOLS, in *,ossb-zstd*) seed "$BASE_ZSTD" zstd:chunked ;; esac

# --- one run ---------------------------------------------------------------------------

stamp() { local l; while IFS= read -r l; do printf '%s %s\n' "$EPOCHREALTIME" "$l"; done; }

# first_run LOG T0 PATTERN: seconds from T0 to the first stamped line matching PATTERN, or NA
first_run() {
	awk -v t0="$2" -v re="$3" '{ line = $0; sub(/^[^ ]+ /, "", line) }
		line ~ re { printf "%.3f\n", $1 - t0; found = 1; exit } END { if (!found) print "NA" }' "$1"
}

base_of() {
	case $1 in
	ossb-esgz*) echo "$BASE_ESGZ" ;;
	ossb-zstd*) echo "$BASE_ZSTD" ;;
	*) echo "$BASE_GZIP" ;;
	esac
}

ossb_flags() {
	case $1 in
	ossb-esgz | ossb-zstd) echo "--snapshotter=fuse" ;;
	ossb-esgz-bg | ossb-zstd-bg) echo "--snapshotter=fuse --lazy=background" ;;
	ossb-full) echo "--snapshotter=fuse --lazy=off" ;;
	ossb-overlay) echo "" ;;
	esac
}

clean() {
	case $1 in
	ossb-*) rm -rf "$OSSB_CACHE" && mkdir -p "$OSSB_CACHE" ;;
	buildah) buildah_clean ;;
	docker) docker_clean ;;
	esac
}

# run_one TOOL CASE N: one cold run; appends a line to RUNS_TSV
run_one() {
	local tool=$1 case=$2 n=$3 base df tag log t0 t1 rc pat first total fetched=NA
	base=$(base_of "$tool")
	df=$here/cases/lazy-$case/Dockerfile
	tag=$REG_HOST/bench/lazy-$case:$tool
	log=$LOGS/$case.$tool.$n.log
	clean "$tool" || return 1
	sync
	[ "${DROP_CACHES:-0}" = 1 ] && echo 3 >/proc/sys/vm/drop_caches
	case $tool in
	ossb-*)
		# shellcheck disable=SC2207
		CMD=(env OSSB_CACHE_DIR="$OSSB_CACHE" XDG_CACHE_HOME="$OSSB_CACHE/xdg" "$OSSB" build --progress=plain
			--cache-dir "$OSSB_CACHE" $(ossb_flags "$tool") --network=none --build-arg "BASE=$base"
			-t "$tag" -f "$df" "$here/cases/lazy-$case")
		pat='^#[0-9]+ \[[^]]*\] RUN ' ;;
	buildah)
		buildah_build_cmd "$tag" "$df" "$here/cases/lazy-$case"
		CMD=("${CMD[@]:0:${#CMD[@]}-1}" --build-arg "BASE=$base" "${CMD[-1]}")
		pat='^STEP [0-9]+/[0-9]+: RUN ' ;;
	docker)
		docker_build_cmd "$tag" "$df" "$here/cases/lazy-$case"
		CMD=("${CMD[@]:0:${#CMD[@]}-1}" --build-arg "BASE=$base" "${CMD[-1]}")
		pat='^#[0-9]+ \[[0-9]+/[0-9]+\] RUN ' ;;
	esac
	t0=$EPOCHREALTIME
	"${CMD[@]}" 2>&1 </dev/null | stamp >"$log"
	rc=${PIPESTATUS[0]}
	t1=$EPOCHREALTIME
	total=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
	first=$(first_run "$log" "$t0" "$pat")
	case $tool in
	ossb-esgz* | ossb-zstd*)
		fetched=$(sed -n 's/^[^ ]* lazy: .*: fetched \([0-9]*\) of .*/\1/p' "$log" |
			awk '{ s += $1 } END { printf "%.1f", s / 1048576 }') ;;
	esac
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$case" "$tool" "$n" "$first" "$total" "$fetched" "$rc" >>"$RUNS_TSV"
	log "$case $tool run $n: first RUN ${first}s, total ${total}s, fetched ${fetched} MiB, exit $rc"
	[ "$rc" = 0 ]
}

# --- all runs ----------------------------------------------------------------------------

printf 'case\ttool\trun\tfirst_run_s\ttotal_s\tfetched_mib\trc\n' >"$RUNS_TSV"
IFS=, read -ra tools <<<"$TOOLS"
IFS=, read -ra cases <<<"$CASES"
for tool in "${tools[@]}"; do
	case $tool in
	buildah | docker)
		if ! "${tool}_available" || ! "${tool}_start"; then log "$tool unavailable"; continue; fi ;;
	esac
	for case in "${cases[@]}"; do
		for n in $(seq 1 "$RUNS"); do run_one "$tool" "$case" "$n"; done
	done
done
clean ossb-x
for tool in "${tools[@]}"; do [ "$tool" = buildah ] && buildah_clean; done

col() { # col CASE TOOL FIELD: the median of FIELD over the successful runs
	awk -F'\t' -v c="$1" -v t="$2" -v f="$3" 'NR > 1 && $1 == c && $2 == t && $7 == 0 && $f != "NA" { print $f }' \
		"$RUNS_TSV" | median
}
{
	printf 'case\ttool\truns_ok\tfirst_run_med_s\ttotal_med_s\tfetched_med_mib\n'
	for case in "${cases[@]}"; do
		for tool in "${tools[@]}"; do
			ok=$(awk -F'\t' -v c="$case" -v t="$tool" 'NR > 1 && $1 == c && $2 == t && $7 == 0' "$RUNS_TSV" | wc -l)
			printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$case" "$tool" "$ok" "$(col "$case" "$tool" 4)" \
				"$(col "$case" "$tool" 5)" "$(col "$case" "$tool" 6)"
		done
	done
} >"$OUT"
column -t -s $'\t' "$OUT"
