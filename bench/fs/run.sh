#!/bin/bash
# bench/fs/run.sh - filesystem benchmark of the overlay backends: kernel overlayfs vs Debian's
# fuse-overlayfs vs OSSB's fusefs-mount (tests/fuse/mount-backend.sh mounts each the same way).
# Run by hand, as root (it drops caches); not part of CI.
#
#   bench/fs/run.sh [-b kernel,fuse-overlayfs,ossb] [-c CASE,...] [-n RUNS] [-w WORKDIR]
#                   [-o RESULTS.tsv] [--files N]
#   bench/fs/run.sh --table RESULTS.tsv [MORE.tsv...]     (Markdown table of saved results)
#
# Cases (seconds, wall clock, median of RUNS; caches dropped with `echo 3 >
# /proc/sys/vm/drop_caches` before every timed step marked "cold"):
#   untar        tar -xf of a generated tree of N files (default 50,000, ~150 MiB) into an
#                empty mount, then `sync -f` on the upper
#   find         cold `find MNT -printf '%s'` (a stat of every entry) over that tree as a lower
#   write-1g     dd 1 GiB bs=1M conv=fsync into the mount
#   read-1g      cold dd of that file back
#   copy-up-500m cold open(O_APPEND) + write of 1 byte to a 500 MiB lower file (the copy-up)
#   dir-create   create 10,000 empty files in one new directory (a bash loop, no forks)
#   dir-list     cold `ls -lU` of that directory (readdir + lstat + xattr reads per entry)
#   dir-delete   rm -rf of that directory
# The inputs (tree tarball, unpacked tree, 500 MiB file) are made once under WORKDIR (default
# /tmp/ossb-fsbench) and reused; each backend gets a fresh upper per case.  FUSEFS_MOUNT
# names ossb's fusefs-mount (see tests/fuse/mount-backend.sh).  Backends that are not available
# are skipped with a message; the table leaves their column "n/a".
# Output: TSV (backend, case, median seconds, runs, date, every run's seconds) appended to -o
# (default WORKDIR/results.tsv; later lines win in the table), and the Markdown table on stdout.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
mb=$here/../../tests/fuse/mount-backend.sh
all_backends=(kernel fuse-overlayfs ossb)
all_cases=(untar find write-1g read-1g copy-up-500m dir-create dir-list dir-delete)

table() { # TSV... -> Markdown, one row per case, one column per backend
	awk -F'\t' -v cases="${all_cases[*]}" -v backends="${all_backends[*]}" '
		$1 == "backend" { next }
		{ v[$2, $1] = $3; if (!($1 in seen)) { seen[$1] = 1 } ; d[$1] = $5 }
		END {
			nb = split(backends, B, " "); nc = split(cases, C, " ")
			h = "| case |"; s = "| --- |"
			for (i = 1; i <= nb; i++) { h = h " " B[i] " (s) |"; s = s " ---: |" }
			print h; print s
			for (j = 1; j <= nc; j++) {
				r = "| " C[j] " |"
				for (i = 1; i <= nb; i++) r = r " " ((C[j], B[i]) in v ? v[C[j], B[i]] : "n/a") " |"
				print r
			}
			for (i = 1; i <= nb; i++) if (B[i] in d) dates = dates (dates ? ", " : "") B[i] " " d[B[i]]
			if (dates) print "\nRuns: " dates
		}' "$@"
}

if [ "${1:-}" = --table ]; then
	shift
	[ $# -gt 0 ] || { echo "run.sh: --table needs TSV files" >&2; exit 2; }
	table "$@"
	exit 0
fi

backends=("${all_backends[@]}") cases=("${all_cases[@]}") runs=1 work=/tmp/ossb-fsbench out="" nfiles=50000
while [ $# -gt 0 ]; do
	case $1 in
	-b) IFS=, read -r -a backends <<<"$2"; shift ;;
	-c) IFS=, read -r -a cases <<<"$2"; shift ;;
	-n) runs=$2; shift ;;
	-w) work=$2; shift ;;
	-o) out=$2; shift ;;
	--files) nfiles=$2; shift ;;
	-h | --help) sed -n '2,/^set -euo/{/^set/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
	*) echo "run.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
	esac
	shift
done
[ "$(id -u)" = 0 ] || { echo "run.sh: run as root (drops caches, mounts)" >&2; exit 2; }
mkdir -p "$work"
work=$(cd "$work" && pwd)
out=${out:-$work/results.tsv}
export MB_STATE_DIR=$work/state MB_TIMEOUT=120

# ---- inputs, made once ---------------------------------------------------------------------
make_tree() { # DIR N: N files, ~3 KiB average, 100 per directory, two levels
	python3 - "$1" "$2" <<'PY'
import os, random, sys
root, n = sys.argv[1], int(sys.argv[2])
rnd = random.Random(42)
blob = os.urandom(1 << 20)
for i in range(n):
    d = os.path.join(root, "d%03d" % (i // 10000), "s%03d" % (i // 100 % 100))
    if i % 100 == 0:
        os.makedirs(d, exist_ok=True)
    size = rnd.choice((0, 100, 500, 1000, 2000, 3000, 4000, 6000, 8000, 24000))
    off = rnd.randrange(len(blob) - size) if size else 0
    with open(os.path.join(d, "f%06d" % i), "wb") as f:
        f.write(blob[off:off + size])
PY
}

inputs=$work/inputs-$nfiles
if [ ! -f "$inputs/done" ]; then
	echo "run.sh: making the inputs in $inputs (once)" >&2
	rm -rf "$inputs" && mkdir -p "$inputs/tree" "$inputs/big" "$inputs/empty"
	make_tree "$inputs/tree" "$nfiles"
	tar -cf "$inputs/tree.tar" -C "$inputs/tree" .
	head -c $((500 << 20)) /dev/urandom >"$inputs/big/big500"
	touch "$inputs/done"
fi

# ---- helpers ---------------------------------------------------------------------------------
now() { echo "$EPOCHREALTIME"; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
cold() { sync; echo 3 >/proc/sys/vm/drop_caches; }
median() { sort -n | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

mnt=$work/mnt
cur_upper=""
mount_with() { # BACKEND LOWER
	cur_upper=$(mktemp -d "$work/upper.XXXXXX")
	mkdir -p "$cur_upper/u" "$cur_upper/w" "$mnt"
	"$mb" mount "$1" --lower "$2" --upper "$cur_upper/u" --work "$cur_upper/w" "$mnt"
}
unmount() {
	local rc=0
	"$mb" umount "$mnt" || { echo "run.sh: unmount reported an error" >&2; rc=1; }
	rm -rf "$cur_upper"
	cur_upper=""
	return $rc
}
trap '[ -z "$cur_upper" ] || unmount' EXIT

# timed NAME CMD...: run CMD, print "NAME SECONDS"; fails when CMD fails.
timed() {
	local name=$1 t0 t1
	shift
	t0=$(now)
	"$@" || { echo "run.sh: $name: '$*' failed" >&2; return 1; }
	t1=$(now)
	echo "$name $(elapsed "$t0" "$t1")"
}
untar() { tar -xf "$inputs/tree.tar" -C "$mnt" && sync -f "$cur_upper/u"; }
find_all() { find "$mnt" -printf '%s\n' >/dev/null; }
append_one() { printf x >>"$mnt/big500"; }
list_10k() { ls -lU "$mnt/d" >/dev/null; }
create_10k() { local i; for ((i = 0; i < 10000; i++)); do : >"$mnt/d/file-$i" || return 1; done; }

# One run of a group of cases on one fresh mount: prints "CASE SECONDS" lines.
run_group() { # BACKEND GROUP
	local b=$1 rc=0
	case $2 in
	untar)
		mount_with "$b" "$inputs/empty" || return 1
		cold; timed untar untar || rc=1 ;;
	find)
		mount_with "$b" "$inputs/tree" || return 1
		cold; timed find find_all || rc=1 ;;
	io)
		mount_with "$b" "$inputs/empty" || return 1
		cold; timed write-1g dd if=/dev/zero of="$mnt/big" bs=1M count=1024 conv=fsync status=none &&
			{ cold; timed read-1g dd if="$mnt/big" of=/dev/null bs=1M status=none; } || rc=1 ;;
	copy-up-500m)
		mount_with "$b" "$inputs/big" || return 1
		cold; timed copy-up-500m append_one || rc=1
		[ "$(stat -c %s "$mnt/big500")" = $(((500 << 20) + 1)) ] || { echo "run.sh: $b: size after copy-up is wrong" >&2; rc=1; } ;;
	dir)
		mount_with "$b" "$inputs/empty" || return 1
		mkdir "$mnt/d" && cold && timed dir-create create_10k &&
			{ cold; timed dir-list list_10k; } &&
			timed dir-delete rm -rf "$mnt/d" || rc=1 ;;
	esac
	unmount || rc=1
	return $rc
}

group_of() {
	case $1 in
	write-1g | read-1g) echo io ;;
	dir-create | dir-list | dir-delete) echo dir ;;
	*) echo "$1" ;;
	esac
}

date=$(date -u +%Y-%m-%d)
raw=$work/raw.$$
: >"$raw"
[ -f "$out" ] || printf 'backend\tcase\tseconds\truns\tdate\tall_runs\n' >"$out"
for b in "${backends[@]}"; do
	if ! why=$("$mb" available "$b"); then
		echo "run.sh: skipping $b: $why" >&2
		continue
	fi
	groups=()
	for c in "${cases[@]}"; do
		g=$(group_of "$c")
		[[ " ${groups[*]} " == *" $g "* ]] || groups+=("$g")
	done
	for g in "${groups[@]}"; do
		for ((r = 0; r < runs; r++)); do
			echo "run.sh: $b $g (run $((r + 1))/$runs)" >&2
			if run_group "$b" "$g" >"$raw.one"; then
				sed "s/^/$b /" "$raw.one" >>"$raw"
			else
				echo "run.sh: $b $g: failed (its numbers are left out)" >&2
			fi
		done
	done
	for c in "${cases[@]}"; do
		all=$(awk -v b="$b" -v c="$c" '$1 == b && $2 == c { print $3 }' "$raw")
		[ -n "$all" ] || continue
		v=$(median <<<"$all")
		printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$b" "$c" "$v" "$(wc -l <<<"$all")" "$date" "$(paste -sd, <<<"$all")" >>"$out"
	done
done
rm -f "$raw" "$raw.one"
echo "results: $out" >&2
table "$out"
