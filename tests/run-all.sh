#!/bin/bash
# tests/run-all.sh - the whole test suite, as CI runs it (after tools/install-deps.sh and a
# build in the source tree: autoreconf -fi && ./configure && make):
#   1. unit tests and fuzz-corpus replays (make check) of the normal build
#   2. the same under AddressSanitizer + UndefinedBehaviorSanitizer (a copy of the sources,
#      built in $OSSB_TEST_WORK/asan)
#   3. integration tests (pytest, tests/integration) against real tools: skopeo, umoci, ...
#   4. as root: the RUN and lazy-pull suites again with ossb run as a non-root user (rootless)
#   5. as root: POSIX and overlay-semantics checks of ossb's FUSE filesystem
#      (tests/fuse/posix-checks.py through tests/fuse/fusefs-mount)
# Ends with "N passed, N failed, N skipped"; exits non-zero when anything failed.
#   SKIP_ASAN=1 skips step 2; SKIP_INTEGRATION=1 skips step 3.
set -uo pipefail

src=$(cd "$(dirname "$0")/.." && pwd)
work=${OSSB_TEST_WORK:-$src/test-results}
mkdir -p "$work"
passed=0 failed=0 skipped=0

count_automake() { # test-suite.log of a make check run
	local log=$1 p f s e
	p=$(sed -n 's/^# PASS: *//p' "$log" | head -1)
	f=$(sed -n 's/^# FAIL: *//p' "$log" | head -1)
	e=$(sed -n 's/^# ERROR: *//p' "$log" | head -1)
	s=$(sed -n 's/^# SKIP: *//p' "$log" | head -1)
	passed=$((passed + ${p:-0}))
	failed=$((failed + ${f:-0} + ${e:-0}))
	skipped=$((skipped + ${s:-0}))
}

run_make_check() { # DIR NAME
	local dir=$1 name=$2
	echo "=== $name: make check ($dir)"
	if ! make -C "$dir" -j"$(nproc)" check >"$work/$name.log" 2>&1; then
		tail -40 "$work/$name.log"
		find "$dir/tests" -name '*.log' -newer "$work/$name.log" -prune -o -name '*.log' -print0 2>/dev/null |
			xargs -0 grep -l '^FAIL\|^not ok\|ERROR' 2>/dev/null | head -5 | while read -r l; do
				echo "--- $l"; tail -30 "$l"; done
	fi
	if [ -f "$dir/test-suite.log" ]; then
		count_automake "$dir/test-suite.log"
		grep -E '^# (TOTAL|PASS|SKIP|FAIL|ERROR):' "$dir/test-suite.log"
	else
		echo "$name: no test-suite.log (the build failed)"
		failed=$((failed + 1))
	fi
}

# 1. unit tests of the normal build
if [ ! -f "$src/Makefile" ]; then
	echo "run-all: build first: autoreconf -fi && ./configure && make" >&2
	exit 2
fi
make -C "$src" -j"$(nproc)" >/dev/null || { echo "run-all: make failed" >&2; exit 1; }
run_make_check "$src" unit

# 2. unit tests under ASan + UBSan
if [ "${SKIP_ASAN:-0}" != 1 ]; then
	asan=$work/asan
	rm -rf "$asan" && mkdir -p "$asan/src"
	(cd "$src" && git ls-files -co --exclude-standard -z 2>/dev/null | grep -zv '^test-results/' |
		tar --null -cf - -T -) | tar -xf - -C "$asan/src"
	echo "=== asan: configure and build"
	if (cd "$asan/src" && autoreconf -fi && ./configure -q --enable-asan --enable-ubsan &&
		make -j"$(nproc)") >"$work/asan-build.log" 2>&1; then
		ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
			run_make_check "$asan/src" asan
	else
		tail -30 "$work/asan-build.log"
		failed=$((failed + 1))
	fi
fi

# 3. integration tests, and 4. the RUN suites again with ossb run by a non-root user (uid
# 65534; pytest stays root to set up registries): rootless builds in a user namespace
count_junit() { # XML NAME
	if [ -f "$1" ]; then
		read -r t f e s < <(/usr/bin/python3 - "$1" <<'PY'
import sys, xml.etree.ElementTree as ET
r = ET.parse(sys.argv[1]).getroot()
suites = [r] if r.tag == "testsuite" else list(r)
t = sum(int(x.get("tests", 0)) for x in suites)
f = sum(int(x.get("failures", 0)) for x in suites)
e = sum(int(x.get("errors", 0)) for x in suites)
s = sum(int(x.get("skipped", 0)) for x in suites)
print(t, f, e, s)
PY
)
		passed=$((passed + t - f - e - s))
		failed=$((failed + f + e))
		skipped=$((skipped + s))
		[ "$t" -gt 0 ] || { echo "$2: no test ran"; failed=$((failed + 1)); }
	else
		echo "$2: pytest produced no report"
		failed=$((failed + 1))
	fi
}

if [ "${SKIP_INTEGRATION:-0}" != 1 ]; then
	echo "=== integration: pytest tests/integration"
	# Debian's python3 (with python3-pytest), not another python3 that may come first on PATH
	OSSB=${OSSB:-$src/ossb} /usr/bin/python3 -m pytest "$src/tests/integration" -q -rfEs \
		--junitxml="$work/integration.xml" -p no:cacheprovider 2>&1 | tail -60
	count_junit "$work/integration.xml" integration
	if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null; then
		echo "=== rootless: the RUN and lazy-pull suites with ossb as uid 65534"
		OSSB_TEST_AS_USER=65534 OSSB=${OSSB:-$src/ossb} /usr/bin/python3 -m pytest -q -rfEs \
			"$src/tests/integration/test_run.py" "$src/tests/integration/test_run_mounts.py" \
			"$src/tests/integration/test_cache.py" "$src/tests/integration/test_multistage.py" \
			"$src/tests/integration/test_run_faults.py" "$src/tests/integration/test_buildah_compare.py" \
			"$src/tests/integration/test_lazy.py" "$src/tests/integration/test_lazy_built.py" \
			--junitxml="$work/rootless.xml" -p no:cacheprovider 2>&1 | tail -30
		count_junit "$work/rootless.xml" rootless
	fi
fi

# 5. the FUSE filesystem's own checks (each check one test)
count_summary() { # LOG NAME: its last "N passed, N failed, N skipped" line
	local line p f s
	line=$(grep -E '[0-9]+ passed, [0-9]+ failed' "$1" | tail -1)
	if [ -z "$line" ]; then
		echo "$2: no summary"; failed=$((failed + 1)); return
	fi
	p=$(sed -E 's/.* ([0-9]+) passed.*/\1/' <<<"$line")
	f=$(sed -E 's/.* ([0-9]+) failed.*/\1/' <<<"$line")
	s=$(sed -nE 's/.* ([0-9]+) skipped.*/\1/p' <<<"$line")
	passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + ${s:-0}))
}
if [ "${SKIP_INTEGRATION:-0}" != 1 ] && [ "$(id -u)" = 0 ] && [ -c /dev/fuse ] && [ -x "$src/tests/fuse/fusefs-mount" ]; then
	echo "=== fuse: posix-checks.py --backend ossb"
	FUSEFS_MOUNT=$src/tests/fuse/fusefs-mount /usr/bin/python3 "$src/tests/fuse/posix-checks.py" --backend ossb \
		>"$work/fuse-posix.log" 2>&1
	grep -E '^(FAIL|posix-checks:)' "$work/fuse-posix.log"
	count_summary "$work/fuse-posix.log" fuse
fi

echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
