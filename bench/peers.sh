#!/bin/bash
# bench/peers.sh - run the shared harness (../shared/bench, or $SHARED_BENCH) with this
# folder's extra cases added: ossb against buildah and BuildKit in one run.
#
#   bench/peers.sh [peers.sh options]      e.g.  bench/peers.sh -c from-huge-copy -t ossb,buildah,docker
#
# Needs the shared harness set up first (its install.sh and setup.sh: registry on
# 127.0.0.1:5000 with busybox, debian:bookworm and huge:latest).  Builds ossb's path from $OSSB
# (default: ./ossb of this checkout).  Writes nothing here: the merged harness folder is made
# under $BENCH_WORK (default /tmp/ossb-bench), results go where peers.sh puts them.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
shared=${SHARED_BENCH:-$(cd "$here/../../shared/bench" 2>/dev/null && pwd || echo /work/shared/bench)}
[ -x "$shared/peers.sh" ] || { echo "bench/peers.sh: no shared harness at $shared (set SHARED_BENCH)" >&2; exit 2; }
work=${BENCH_WORK:-/tmp/ossb-bench}
merged=$work/harness
rm -rf "$merged" && mkdir -p "$merged/cases"
for f in "$shared"/*; do
	[ "$(basename "$f")" = cases ] || ln -s "$f" "$merged/$(basename "$f")"
done
# a case's files are linked one by one; a small file whose whole text is a relative path to
# an existing file or folder (a git symlink flattened into text when the harness was copied,
# e.g. cases/rebuild/Dockerfile -> ../busybox-run/Dockerfile) becomes that symlink again
for c in "$shared"/cases/* "$here"/cases/*; do
	d=$merged/cases/$(basename "$c")
	mkdir -p "$d"
	for f in "$c"/*; do
		t=
		if [ -f "$f" ] && [ "$(stat -c %s "$f")" -lt 200 ] && [ "$(wc -l <"$f")" -le 1 ]; then
			t=$(cat "$f")
			case $t in ../* | ./*) [ -e "$c/$t" ] || t= ;; *) t= ;; esac
		fi
		if [ -n "$t" ]; then ln -s "$(cd "$(dirname "$c/$t")" && pwd)/$(basename "$t")" "$d/$(basename "$f")"
		else ln -s "$f" "$d/$(basename "$f")"; fi
	done
done
export OSSB=${OSSB:-$(cd "$here/.." && pwd)/ossb}
exec env BENCH_DIR="$merged" "$merged/peers.sh" "$@"
