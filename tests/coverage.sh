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
# processes that run as another user (the rootless paths: ossb as uid 65534, the user
# namespace tests' children) must be able to write their .gcda counters into this copy
chmod -R a+rwX "$work/src"
make -j"$(nproc)" check >/dev/null 2>&1 || echo "coverage: some unit tests failed (see $work/src/test-suite.log)"
OSSB="$work/src/ossb" /usr/bin/python3 -m pytest "$src/tests/integration" -q -p no:cacheprovider >/dev/null 2>&1 ||
	echo "coverage: some integration tests failed"
if [ "$(id -u)" = 0 ]; then # the rootless pass of tests/run-all.sh
	chmod -R a+rwX "$work/src"
	OSSB_TEST_AS_USER=65534 OSSB="$work/src/ossb" /usr/bin/python3 -m pytest -q -p no:cacheprovider \
		"$src/tests/integration/test_run.py" "$src/tests/integration/test_rootless.py" >/dev/null 2>&1 ||
		echo "coverage: some rootless integration tests failed"
fi
gcovr -r . --exclude 'tests/' --txt "$work/coverage.txt" >/dev/null 2>&1
cat "$work/coverage.txt"
echo "--- per module (lines covered / lines)"
awk '$1 ~ /\.c$/ { split($1, p, "/"); m = (p[1] == "engine" && p[2] == "dockerfile") ? "engine/dockerfile" : p[1];
	l[m] += $2; c[m] += $3 } END { for (m in l) printf "%-20s %6d / %6d  %5.1f%%\n", m, c[m], l[m], 100 * c[m] / l[m] }' \
	"$work/coverage.txt" | sort
