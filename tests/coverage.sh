#!/bin/bash
# tests/coverage.sh - line coverage per module: builds a copy of the sources with
# --enable-coverage in $OSSB_TEST_WORK/coverage, runs the unit tests and the integration tests
# against that build, and prints gcovr's per-file and per-module summary.
set -uo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
work=${OSSB_TEST_WORK:-$src/test-results}/coverage
rm -rf "$work" && mkdir -p "$work/src"
(cd "$src" && git ls-files -co --exclude-standard -z | grep -zv '^test-results/' | tar --null -cf - -T -) |
	tar -xf - -C "$work/src"
cd "$work/src"
autoreconf -fi >/dev/null 2>&1 && ./configure -q --enable-coverage && make -j"$(nproc)" >/dev/null || exit 1
make -j"$(nproc)" check >/dev/null 2>&1 || echo "coverage: some unit tests failed (see $work/src/test-suite.log)"
OSSB="$work/src/ossb" /usr/bin/python3 -m pytest "$src/tests/integration" -q -p no:cacheprovider >/dev/null 2>&1 ||
	echo "coverage: some integration tests failed"
gcovr -r . --exclude 'tests/' --txt "$work/coverage.txt" >/dev/null 2>&1
cat "$work/coverage.txt"
echo "--- per module (lines covered / lines)"
awk '$1 ~ /\.c$/ { split($1, p, "/"); m = (p[1] == "engine" && p[2] == "dockerfile") ? "engine/dockerfile" : p[1];
	l[m] += $2; c[m] += $3 } END { for (m in l) printf "%-20s %6d / %6d  %5.1f%%\n", m, c[m], l[m], 100 * c[m] / l[m] }' \
	"$work/coverage.txt" | sort
