#!/bin/sh
# tests/buildkit/run-parser-testfiles.sh - compare ossb's Dockerfile parser with BuildKit's own
# parser test corpus.
#
# usage: run-parser-testfiles.sh [-v] DIR
#   DIR is BuildKit's frontend/dockerfile/parser directory (holding testfiles/ and
#   testfiles-negative/) or its testfiles/ directory (testfiles-negative/ is then looked for
#   beside it).  Nothing from BuildKit is kept in this repository: pass a checkout, e.g.
#     git -C buildkit archive HEAD frontend/dockerfile/parser | tar -x -C /tmp/bk
#     tests/buildkit/run-parser-testfiles.sh /tmp/bk/frontend/dockerfile/parser
# The dumper is $OSSB_DFDUMP, or tests/buildkit/ossb-dfdump in the current (build) directory
# (`make check` builds it).
#
# Each testfiles/<case>/Dockerfile must parse and print exactly testfiles/<case>/result (BuildKit's
# Node.Dump() plus a newline); each testfiles-negative/<case>/Dockerfile must fail to parse.
# Cases listed in KNOWN below differ on purpose and are reported, not counted as failures.
# Exit status: 0 when every other case agrees, 1 otherwise, 2 on usage errors.

# json: its CMD holds "\u0000"; C strings cannot carry NUL, so ossb refuses the line.
KNOWN="json"

verbose=0
if [ "$1" = "-v" ]; then
        verbose=1
        shift
fi
if [ $# -ne 1 ] || [ ! -d "$1" ]; then
        echo "usage: $0 [-v] BUILDKIT_PARSER_DIR|TESTFILES_DIR" >&2
        exit 2
fi
if [ -d "$1/testfiles" ]; then
        pos="$1/testfiles"
        neg="$1/testfiles-negative"
else
        pos="$1"
        neg="$1/../testfiles-negative"
fi
dfdump=${OSSB_DFDUMP:-./tests/buildkit/ossb-dfdump}
if [ ! -x "$dfdump" ]; then
        echo "$0: dumper $dfdump not found (build it with make check, or set OSSB_DFDUMP)" >&2
        exit 2
fi

tmp=$(mktemp -d) || exit 2
trap 'rm -rf "$tmp"' EXIT INT TERM

total=0 agree=0 known=0 failed=0
for dir in "$pos"/*/; do
        dir=${dir%/}
        name=$(basename "$dir")
        [ -f "$dir/Dockerfile" ] && [ -f "$dir/result" ] || continue
        total=$((total + 1))
        if "$dfdump" "$dir/Dockerfile" >"$tmp/out" 2>"$tmp/err" && cmp -s "$tmp/out" "$dir/result"; then
                agree=$((agree + 1))
                [ $verbose = 1 ] && echo "ok       $name"
                continue
        fi
        case " $KNOWN " in
        *" $name "*)
                known=$((known + 1))
                echo "known    $name: $(head -n 1 "$tmp/err")"
                ;;
        *)
                failed=$((failed + 1))
                echo "DIFFERS  $name"
                diff "$dir/result" "$tmp/out" | sed 's/^/    /'
                sed 's/^/    stderr: /' "$tmp/err"
                ;;
        esac
done

ntotal=0 nagree=0
if [ -d "$neg" ]; then
        for dir in "$neg"/*/; do
                dir=${dir%/}
                name=$(basename "$dir")
                [ -f "$dir/Dockerfile" ] || continue
                ntotal=$((ntotal + 1))
                if "$dfdump" "$dir/Dockerfile" >"$tmp/out" 2>"$tmp/err"; then
                        failed=$((failed + 1))
                        echo "ACCEPTED negative case $name"
                else
                        nagree=$((nagree + 1))
                        [ $verbose = 1 ] && echo "ok       negative $name: $(head -n 1 "$tmp/err")"
                fi
        done
fi

echo "testfiles: $agree/$total agree ($known known difference(s)); testfiles-negative: $nagree/$ntotal rejected"
[ $failed -eq 0 ]
