#!/bin/bash
# bench/seed-huge.sh - push localhost:5000/huge-ok:latest (see seed-huge/Dockerfile), built by
# ossb from the shared harness's seed data; run the shared setup.sh first.
#   OSSB=path/to/ossb bench/seed-huge.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=${BENCH_WORK:-/tmp/ossb-bench}
ossb=${OSSB:-$here/../ossb}
data=$work/seed/huge-data
[ -f "$data.complete" ] || { echo "seed-huge: no $data (run the shared bench/setup.sh)" >&2; exit 2; }
cache=$(mktemp -d "$work/seed-huge-cache.XXXXXX")
trap 'rm -rf "$cache"' EXIT
"$ossb" build --progress=plain --cache-dir "$cache" --push -t localhost:5000/huge-ok:latest \
	-f "$here/seed-huge/Dockerfile" "$data"
