#!/bin/sh
# tests/buildkit/run-shell-tests.sh - run BuildKit's shell lexer corpora against ossb.
#
#   tests/buildkit/run-shell-tests.sh BUILDKIT_SHELL_DIR [SHELLEXPAND]
#
# BUILDKIT_SHELL_DIR is a checkout's frontend/dockerfile/shell directory (holding envVarTest
# and wordsTest; the corpora are never copied into this repository).  SHELLEXPAND is the
# driver built by `make check` (default: tests/buildkit/shellexpand in the current directory).
# Prints every disagreement and "N passed, M failed"; exits 1 when something failed.
set -u

dir=${1:?usage: run-shell-tests.sh BUILDKIT_SHELL_DIR [SHELLEXPAND]}
drv=${2:-./tests/buildkit/shellexpand}

for f in envVarTest wordsTest; do
        if [ ! -f "$dir/$f" ]; then
                echo "run-shell-tests: $dir/$f not found" >&2
                exit 2
        fi
done
if [ ! -x "$drv" ]; then
        echo "run-shell-tests: driver $drv not built (make check, or pass its path)" >&2
        exit 2
fi

passed=0
failed=0
skipped=0
for mode in envvar:envVarTest words:wordsTest; do
        out=$("$drv" "${mode%%:*}" "$dir/${mode#*:}")
        rc=$?
        if [ $rc -gt 1 ]; then
                echo "run-shell-tests: driver failed on ${mode#*:}" >&2
                exit 2
        fi
        printf '%s\n' "$out" | sed '$d'
        set -- $(printf '%s\n' "$out" | tail -n 1)
        echo "${mode#*:}: $1 passed, $3 failed, $5 skipped"
        passed=$((passed + $1))
        failed=$((failed + $3))
        skipped=$((skipped + $5))
done
echo "$passed passed, $failed failed ($skipped skipped: Windows-only lines)"
[ "$failed" -eq 0 ]
