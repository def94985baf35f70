#!/bin/bash
# tests/fuse/unionmount.sh - run the unionmount-testsuite (github amir73il/unionmount-testsuite,
# an overlay-semantics suite) against one overlay backend of tests/fuse/mount-backend.sh.
#
#   tests/fuse/unionmount.sh [-b kernel|fuse-overlayfs|ossb] [--layers N] [--xdev]
#                            [-o RESULTS.tsv] [-k] SUITE_DIR [TEST...]
#   tests/fuse/unionmount.sh --table RESULTS.tsv...   (Markdown: one row per test, one column
#                            per file; a file name containing "xdev"/"layers" labels its column)
#
# SUITE_DIR is a checkout of the suite; it is never downloaded here and never committed.
# Each test of the suite runs on its own (`./run ... TEST`: the suite stops at its first
# failure), so one failing test does not hide the others.  Output: one line per test,
# "PASS test (n/n subtests)" or "FAIL test (k/n subtests): first error", then
# "unionmount: N passed, N failed"; exit status 1 when a test failed.
#
# How the suite is pointed at a backend: it mounts with `mount -t overlay ... -olowerdir=,
# upperdir=,workdir=` (or `-t fuse.NAME` with --fuse=NAME) and unmounts with `umount MNT`.
# A `mount` and an `umount` wrapper put first on PATH turn exactly those calls into
# `mount-backend.sh mount|umount BACKEND` and pass every other call to the real tools.
#   kernel          ./run --ov          (+ UNIONMOUNT_MNTOPTIONS=redirect_dir=off,index=off,
#                                        metacopy=off, so the suite expects EXDEV on dir renames)
#   fuse-overlayfs  ./run --ov --fuse=fuse-overlayfs
#   ossb            ./run --ov --fuse=ossb  (FUSE semantics: one st_dev, dir renames work)
# --layers N runs the suite's multi-layer mode (--ov=N: during tests the upper is rotated into
# the lower stack, so mounts get up to N+1 lower layers).  --xdev makes the suite expect EXDEV
# on directory renames instead (the suite's own flag).  -k keeps the work directory.
#
# Needs root (the suite mounts tmpfs and overlays); everything happens in a private mount
# namespace (unshare -m) on two tmpfs instances (lower, upper), so nothing leaks to the host.
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
if [ "${1:-}" = --table ]; then # Markdown table of saved -o results: one row per test
	shift
	[ $# -gt 0 ] || { echo "unionmount.sh: --table needs TSV files" >&2; exit 2; }
	awk -F'\t' '
		$1 == "backend" { next }
		{ col = $1 (FILENAME ~ /xdev/ ? " --xdev" : "") (FILENAME ~ /layers/ ? " --layers" : "")
		  if (!(col in seen)) { seen[col] = 1; cols[++nc] = col }
		  if (!($2 in tseen)) { tseen[$2] = 1; tests[++nt] = $2 }
		  v[$2, col] = ($3 == "PASS" ? "" : "FAIL ") $4 "/" $5
		  if ($3 == "PASS") pass[col]++; else fail[col]++ }
		END {
			h = "| test |"; s = "| --- |"
			for (i = 1; i <= nc; i++) { h = h " " cols[i] " |"; s = s " --- |" }
			print h; print s
			for (j = 1; j <= nt; j++) {
				r = "| " tests[j] " |"
				for (i = 1; i <= nc; i++) r = r " " ((tests[j], cols[i]) in v ? v[tests[j], cols[i]] : "-") " |"
				print r
			}
			r = "| **tests passed** |"
			for (i = 1; i <= nc; i++) r = r " **" pass[cols[i]] + 0 "/" pass[cols[i]] + fail[cols[i]] "** |"
			print r
		}' "$@"
	exit 0
fi
backend=kernel layers="" xdev=0 tsv="" keep=0
usage() { sed -n '2,/^$/{s/^# \{0,1\}//;p}' "$0" >&2; exit 2; }
while [ $# -gt 0 ]; do
	case $1 in
	-b | --backend) backend=$2; shift ;;
	--layers) layers=$2; shift ;;
	--xdev) xdev=1 ;;
	-o) tsv=$2; shift ;;
	-k) keep=1 ;;
	-h | --help) usage ;;
	-*) echo "unionmount.sh: unknown option $1" >&2; usage ;;
	*) break ;;
	esac
	shift
done
[ $# -ge 1 ] || usage
suite=$(cd "$1" 2>/dev/null && pwd) || { echo "unionmount.sh: no suite at $1" >&2; exit 2; }
shift
[ -x "$suite/run" ] && [ -d "$suite/tests" ] || { echo "unionmount.sh: $suite is not a unionmount-testsuite checkout" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "unionmount.sh: needs root" >&2; exit 2; }
why=$("$here/mount-backend.sh" available "$backend") || { echo "unionmount.sh: $backend: $why" >&2; exit 2; }
if [ -n "$tsv" ]; then tsv=$(realpath -m "$tsv"); fi

# Re-run inside a private mount namespace.
if [ "${UMT_IN_NS:-}" != 1 ]; then
	args=(-b "$backend")
	[ -n "$layers" ] && args+=(--layers "$layers")
	[ "$xdev" = 1 ] && args+=(--xdev)
	[ -n "$tsv" ] && args+=(-o "$tsv")
	[ "$keep" = 1 ] && args+=(-k)
	UMT_IN_NS=1 exec unshare --mount --propagation private "$0" "${args[@]}" "$suite" "$@"
fi

work=$(mktemp -d /tmp/ossb-umt.XXXXXX) && chmod 755 "$work" || exit 2
mkdir -p "$work"/{lower,base,mnt,bin,logs,state}
cleanup() {
	(cd "$suite" && PATH=$work/bin:$PATH ./run -c) >>"$work/logs/cleanup.log" 2>&1
	for m in "$work/mnt" "$work/base" "$work/lower"; do
		while grep -q " $m " /proc/self/mounts; do umount -l "$m" 2>/dev/null || break; done
	done
	if [ "$keep" = 1 ]; then echo "unionmount.sh: kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
# the fs names must not end in "_layer": the suite's clean-up unmounts those
mount -t tmpfs umtlower "$work/lower" && mount -t tmpfs umtupper "$work/base" || exit 2

# --- the wrappers ---------------------------------------------------------------------------
real_mount=$(command -v mount) real_umount=$(command -v umount)
cat >"$work/bin/mount" <<EOF
#!/bin/bash
# unionmount.sh's wrapper: an overlay mount by the suite becomes mount-backend.sh mount
real=$real_mount mb=$here/mount-backend.sh backend=$backend
export PATH='$PATH' # mount-backend.sh must reach the real mount, not this wrapper
EOF
cat >>"$work/bin/mount" <<'EOF'
type="" opts="" pos=()
a=("$@")
for ((i = 0; i < ${#a[@]}; i++)); do
	case ${a[i]} in
	-t) type=${a[i + 1]}; i=$((i + 1)) ;;
	-o) opts+=,${a[i + 1]}; i=$((i + 1)) ;;
	-o*) opts+=,${a[i]#-o} ;;
	-*) ;;
	*) pos+=("${a[i]}") ;;
	esac
done
case $type in overlay | fuse.*) ;; *) exec "$real" "$@" ;; esac
case $opts in *lowerdir=*) ;; *) exec "$real" "$@" ;; esac
args=()
IFS=, read -r -a o <<<"$opts"
for x in "${o[@]}"; do
	case $x in
	lowerdir=*) IFS=: read -r -a ls <<<"${x#lowerdir=}"; for l in "${ls[@]}"; do args+=(--lower "$l"); done ;;
	upperdir=*) args+=(--upper "${x#upperdir=}") ;;
	workdir=*) args+=(--work "${x#workdir=}") ;;
	esac
done
echo "+ mount-backend.sh mount $backend ${args[*]} ${pos[-1]}" >&2
exec "$mb" mount "$backend" "${args[@]}" "${pos[-1]}"
EOF
cat >"$work/bin/umount" <<EOF
#!/bin/bash
# unionmount.sh's wrapper: unmount what mount-backend.sh mounted through it
real=$real_umount mb=$here/mount-backend.sh
export PATH='$PATH'
EOF
cat >>"$work/bin/umount" <<'EOF'
if [ $# -eq 1 ] && [ "${1#-}" = "$1" ] && "$mb" backend "$1" >/dev/null 2>&1; then
	exec "$mb" umount "$1"
fi
exec "$real" "$@"
EOF
chmod +x "$work/bin/mount" "$work/bin/umount"

# --- what to run ----------------------------------------------------------------------------
sel=--ov
[ -n "$layers" ] && sel=--ov=$layers
runargs=("$sel")
case $backend in
kernel) export UNIONMOUNT_MNTOPTIONS=redirect_dir=off,index=off,metacopy=off ;;
*) runargs+=("--fuse=$backend"); unset UNIONMOUNT_MNTOPTIONS ;;
esac
[ "$xdev" = 1 ] && runargs+=(--xdev)
# dir renames: the kernel with redirect_dir=off and --xdev expect EXDEV (rename-exdev); FUSE
# backends are expected to rename (rename-dir, rename-empty-dir, ...), as the suite decides
want_exdev=0
{ [ "$backend" = kernel ] || [ "$xdev" = 1 ]; } && want_exdev=1
if [ $# -gt 0 ]; then
	tests=("$@")
else
	mapfile -t tests < <(python3 - "$suite/run" "$want_exdev" <<'PY'
import ast, sys
tree = ast.parse(open(sys.argv[1]).read())
main, extra = None, []
for node in ast.walk(tree):
    if isinstance(node, ast.Assign) and isinstance(node.value, ast.List) and \
            any(isinstance(t, ast.Name) and t.id == "tests" for t in node.targets) and main is None:
        main = [e.value for e in node.value.elts]
    if isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name) and node.target.id == "tests":
        extra.append([e.value for e in node.value.elts])
if main is None or len(extra) != 2:
    sys.exit("cannot find the test list in " + sys.argv[1])
print("\n".join(main + (extra[0] if sys.argv[2] == "1" else extra[1])))
PY
	) || exit 2
	[ ${#tests[@]} -gt 0 ] || { echo "unionmount.sh: no tests found in $suite/run" >&2; exit 2; }
fi

export UNIONMOUNT_LOWERDIR=$work/lower UNIONMOUNT_BASEDIR=$work/base UNIONMOUNT_MNTPOINT=$work/mnt
export MB_STATE_DIR=$work/state PATH=$work/bin:$PATH PYTHONUNBUFFERED=1
echo "unionmount: backend $backend, suite $suite ($(git -C "$suite" rev-parse --short HEAD 2>/dev/null || echo "no git")), ./run ${runargs[*]}"
[ -n "$tsv" ] && printf 'backend\ttest\tstatus\tsubtests_passed\tsubtests_total\terror\n' >"$tsv"
passed=0 failed=0
for t in "${tests[@]}"; do
	log=$work/logs/$t.log
	(cd "$suite" && timeout -k 10 600 ./run "${runargs[@]}" "$t") >"$log" 2>&1
	rc=$?
	# distinct names: a test file may define one subtest name twice (the last one counts)
	nsub=$(grep -o '^def subtest_[A-Za-z0-9_]*' "$suite/tests/$t.py" 2>/dev/null | sort -u | wc -l)
	rounds=1
	[ -n "$layers" ] && rounds=2 # --ov=N runs every test twice (with and without rotation)
	total=$((nsub * rounds))
	started=$(grep -c '^TEST ' "$log")
	if [ $rc = 0 ]; then
		status=PASS done_=$started err=""
		passed=$((passed + 1))
		echo "PASS $t ($done_/$total subtests)"
	else
		status=FAIL done_=$((started > 0 ? started - 1 : 0))
		err=$(grep -v '^ \./run\|^TEST \|^\*\*\*\|^+ mount-backend\|^Environment\|^UNIONMOUNT_\|^unknown argument ignored\|^mount-backend: \|^$' "$log" | tail -1 | tr '\t' ' ')
		if [[ $err == *"Command failed: umount"* ]] && [ "$started" = "$total" ]; then
			done_=$started # every subtest ran; the unmount after the last one failed
		fi
		# what mount-backend.sh said (e.g. the server's own error when it exited non-zero)
		mbmsg=$(grep '^mount-backend: ' "$log" | sed 's/^mount-backend: *//' | grep -v '^ossb server exited\|^fuse-overlayfs server exited' | tail -1)
		[ -n "$mbmsg" ] && err="$err [$mbmsg]"
		[ $rc = 124 ] && err="timed out after 600s; $err"
		failed=$((failed + 1))
		echo "FAIL $t ($done_/$total subtests): $(grep '^TEST ' "$log" | tail -1 | cut -c6-): $err"
	fi
	[ -n "$tsv" ] && printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$backend" "$t" "$status" "$done_" "$total" "$err" >>"$tsv"
done
[ "$keep" = 1 ] && echo "logs: $work/logs"
echo "unionmount: $passed passed, $failed failed"
[ $failed = 0 ]
