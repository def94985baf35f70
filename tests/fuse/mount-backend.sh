#!/bin/bash
# tests/fuse/mount-backend.sh - mount and unmount an overlay (N lower dirs + upper + work) with
# one of three backends, the same way for every test and benchmark of fuse/:
#
#   kernel          mount -t overlay, redirect_dir=off,index=off,metacopy=off (the on-disk format
#                   ossb's snapshotter reads); inside a user namespace userxattr and
#                   redirect_dir=nofollow (the kernel refuses redirect_dir=off with userxattr)
#   fuse-overlayfs  Debian's fuse-overlayfs, run in the foreground (-f) in the background
#   ossb            OSSB's fusefs-mount ($FUSEFS_MOUNT, else the first of
#                   /tmp/build-fuse/tests/fuse/fusefs-mount and ./tests/fuse/fusefs-mount),
#                   run in the background; unmounted with SIGTERM, its exit status is reported
#
# As a command:
#   mount-backend.sh mount BACKEND [--userxattr] [--log FILE] --lower DIR [--lower DIR...]
#                    --upper DIR --work DIR MOUNTPOINT      (lowers top-most first)
#   mount-backend.sh umount MOUNTPOINT        (any backend; non-zero if the server failed)
#   mount-backend.sh available BACKEND        (exit 0 if usable here, else prints why not)
#   mount-backend.sh is-mounted MOUNTPOINT
#   mount-backend.sh log MOUNTPOINT           (path of the server's output: ossb prints its
#                                              change journal there when it exits)
#   mount-backend.sh backend MOUNTPOINT       (the backend that mounted it, if this script did)
# As a library (bash):  . tests/fuse/mount-backend.sh
#   mb_mount BACKEND MOUNTPOINT UPPER WORK LOWER...   mb_umount MOUNTPOINT
#   mb_available BACKEND   mb_is_mounted MOUNTPOINT   mb_log MOUNTPOINT   mb_backend MOUNTPOINT
#   (set MB_USERXATTR=1 before mb_mount for --userxattr, MB_LOG=FILE for the server's log)
#
# Environment: FUSEFS_MOUNT (ossb's binary), MB_STATE_DIR (where the servers' pid, exit status
# and log files live; default /run/ossb-mount-backend for root, else
# ${XDG_RUNTIME_DIR:-/tmp}/ossb-mount-backend-UID), MB_TIMEOUT (seconds to wait for a mount to
# answer or a server to exit; default 30), MB_KERNEL_OPTS / MB_FUSE_OVERLAYFS_OPTS (extra -o
# options for those two backends).

mb_err() { echo "mount-backend: $*" >&2; }

mb_state_dir() {
	local d=${MB_STATE_DIR:-}
	if [ -z "$d" ]; then
		if [ "$(id -u)" = 0 ] && [ -w /run ]; then d=/run/ossb-mount-backend
		else d=${XDG_RUNTIME_DIR:-/tmp}/ossb-mount-backend-$(id -u); fi
	fi
	mkdir -p "$d" && echo "$d"
}

# The state files of a mount point are named after a hash of its canonical path.
mb_key() { printf '%s' "$1" | sha256sum | cut -c1-16; }

mb_in_userns() { # true when this process is not in the initial user namespace
	local a b c
	read -r a b c </proc/self/uid_map 2>/dev/null || return 1
	! [ "$a" = 0 ] || ! [ "$b" = 0 ] || ! [ "$c" = 4294967295 ]
}

mb_fusefs_bin() {
	local c
	for c in "${FUSEFS_MOUNT:-}" /tmp/build-fuse/tests/fuse/fusefs-mount ./tests/fuse/fusefs-mount; do
		if [ -n "$c" ] && [ -x "$c" ]; then echo "$c"; return 0; fi
	done
	return 1
}

# mountinfo escapes space, tab, newline and backslash as octal
mb_mountinfo_escape() {
	local s=$1
	s=${s//\\/\\134}; s=${s// /\\040}; s=${s//$'\t'/\\011}; s=${s//$'\n'/\\012}
	printf '%s' "$s"
}

# The file system type of the top-most mount at MOUNTPOINT (empty when none).
mb_fstype() {
	local m
	m=$(mb_mountinfo_escape "$1")
	awk -v m="$m" '$5 == m { for (i = 7; i <= NF; i++) if ($i == "-") { t = $(i + 1); break } }
		END { print t }' /proc/self/mountinfo
}

mb_is_mounted() {
	local m
	m=$(realpath -e "$1" 2>/dev/null) || m=$1
	[ -n "$(mb_fstype "$m")" ]
}

mb_available() {
	case ${1:-} in
	kernel)
		grep -qw overlay /proc/filesystems 2>/dev/null || modprobe overlay 2>/dev/null ||
			{ echo "no overlay in /proc/filesystems"; return 1; }
		if [ "$(id -u)" != 0 ]; then echo "kernel overlayfs needs root (or run under unshare -Urm)"; return 1; fi
		;;
	fuse-overlayfs)
		command -v fuse-overlayfs >/dev/null || { echo "fuse-overlayfs not installed (apt-get install fuse-overlayfs)"; return 1; }
		[ -c /dev/fuse ] || { echo "no /dev/fuse"; return 1; }
		;;
	ossb)
		mb_fusefs_bin >/dev/null || { echo "fusefs-mount not found (set FUSEFS_MOUNT)"; return 1; }
		[ -c /dev/fuse ] || { echo "no /dev/fuse"; return 1; }
		;;
	*) echo "unknown backend '${1:-}' (kernel, fuse-overlayfs, ossb)"; return 1 ;;
	esac
	return 0
}

# Wait until MOUNTPOINT carries a mount of type FSTYPE-PATTERN that answers stat, while the
# server PID (if any) lives.
mb_wait_mounted() { # MNT PATTERN PID
	local mnt=$1 pat=$2 pid=${3:-} i t
	for ((i = 0; i < ${MB_TIMEOUT:-30} * 20; i++)); do
		t=$(mb_fstype "$mnt")
		# shellcheck disable=SC2053
		if [[ $t == $pat ]] && stat -f "$mnt" >/dev/null 2>&1; then return 0; fi
		if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then return 1; fi
		sleep 0.05
	done
	return 1
}

# Start a FUSE server in the background under a small supervisor subshell that records its pid
# and, once it exits, its exit status (a server is not our child after this script returns).
mb_spawn() { # STATEBASE LOG CMD...
	local base=$1 log=$2
	shift 2
	rm -f "$base.pid" "$base.rc"
	(
		trap '' INT HUP
		"$@" </dev/null >>"$log" 2>&1 &
		echo $! >"$base.pid.tmp" && mv "$base.pid.tmp" "$base.pid"
		wait $!
		echo $? >"$base.rc.tmp" && mv "$base.rc.tmp" "$base.rc"
	) </dev/null >/dev/null 2>&1 &
	disown $! 2>/dev/null || true
	local i
	for ((i = 0; i < 200; i++)); do [ -s "$base.pid" ] && break; sleep 0.01; done
	[ -s "$base.pid" ]
}

mb_mount() { # BACKEND MNT UPPER WORK LOWER...
	local backend=$1 mnt=$2 upper=$3 work=$4
	shift 4
	local lowers=("$@") l lowerdir="" why
	if [ ${#lowers[@]} -eq 0 ]; then mb_err "no lower dir"; return 2; fi
	why=$(mb_available "$backend") || { mb_err "$backend: $why"; return 2; }
	mnt=$(realpath -e "$mnt") || { mb_err "no mount point $2"; return 2; }
	upper=$(realpath -e "$upper") || { mb_err "no upper dir $3"; return 2; }
	work=$(realpath -e "$work") || { mb_err "no work dir $4"; return 2; }
	for l in "${lowers[@]}"; do
		l=$(realpath -e "$l") || { mb_err "no lower dir"; return 2; }
		case $l in *[:,]*) mb_err "lower dir '$l' has ':' or ','"; return 2 ;; esac
		lowerdir=${lowerdir:+$lowerdir:}$l
	done
	case $upper$work in *[:,]*) mb_err "upper/work dir has ':' or ','"; return 2 ;; esac
	local state base log userx=${MB_USERXATTR:-0}
	state=$(mb_state_dir) || return 2
	base=$state/$(mb_key "$mnt")
	if [ -f "$base.info" ] && mb_is_mounted "$mnt"; then
		mb_err "$mnt is already mounted by $(sed -n 1p "$base.info") (unmount it first)"
		return 1
	fi
	log=${MB_LOG:-$base.log}
	: >"$log" || return 2
	rm -f "$base.pid" "$base.rc"
	printf '%s\n%s\n%s\n' "$backend" "$mnt" "$log" >"$base.info"
	mb_in_userns && userx=1
	case $backend in
	kernel)
		# with userxattr the kernel refuses redirect_dir=off (which means "follow" when
		# redirect_always_follow is set): nofollow creates no redirects either
		local opts="lowerdir=$lowerdir,upperdir=$upper,workdir=$work,index=off,metacopy=off"
		if [ "$userx" = 1 ]; then opts+=",redirect_dir=nofollow,userxattr"; else opts+=",redirect_dir=off"; fi
		[ -n "${MB_KERNEL_OPTS:-}" ] && opts+=",$MB_KERNEL_OPTS"
		if ! mount -t overlay overlay -o "$opts" "$mnt" 2>>"$log"; then
			mb_err "kernel: mount -t overlay -o $opts $mnt failed: $(tail -1 "$log")"
			rm -f "$base.info"
			return 1
		fi
		;;
	fuse-overlayfs)
		local opts="lowerdir=$lowerdir,upperdir=$upper,workdir=$work"
		[ -n "${MB_FUSE_OVERLAYFS_OPTS:-}" ] && opts+=",$MB_FUSE_OVERLAYFS_OPTS"
		mb_spawn "$base" "$log" fuse-overlayfs -f -o "$opts" "$mnt" || { mb_err "fuse-overlayfs: could not start"; return 1; }
		if ! mb_wait_mounted "$mnt" 'fuse*' "$(cat "$base.pid")"; then
			mb_err "fuse-overlayfs: did not mount (waited up to ${MB_TIMEOUT:-30}s): $(tail -3 "$log")"
			mb_umount "$mnt" >/dev/null 2>&1
			return 1
		fi
		;;
	ossb)
		local bin args=()
		bin=$(mb_fusefs_bin)
		[ "$userx" = 1 ] && args+=(--userxattr)
		for l in "${lowers[@]}"; do args+=(--lower "$(realpath -e "$l")"); done
		args+=(--upper "$upper" --work "$work" "$mnt")
		mb_spawn "$base" "$log" "$bin" "${args[@]}" || { mb_err "ossb: could not start $bin"; return 1; }
		if ! mb_wait_mounted "$mnt" 'fuse*' "$(cat "$base.pid")"; then
			mb_err "ossb: $bin did not mount (waited up to ${MB_TIMEOUT:-30}s): $(tail -3 "$log")"
			mb_umount "$mnt" >/dev/null 2>&1
			return 1
		fi
		;;
	esac
	return 0
}

# Wait for the supervised server of BASE to exit; print its exit status.
mb_wait_server() { # BASE
	local base=$1 i
	for ((i = 0; i < ${MB_TIMEOUT:-30} * 20; i++)); do
		[ -s "$base.rc" ] && { cat "$base.rc"; return 0; }
		sleep 0.05
	done
	return 1
}

mb_umount() { # MNT
	local mnt state base backend="" pid rc=0 src
	mnt=$(realpath -e "$1" 2>/dev/null) || mnt=$1
	state=$(mb_state_dir) || return 2
	base=$state/$(mb_key "$mnt")
	[ -f "$base.info" ] && backend=$(sed -n 1p "$base.info")
	pid=$(cat "$base.pid" 2>/dev/null || true)
	case $backend in
	ossb)
		if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill -TERM "$pid"; fi
		;;
	fuse-overlayfs | "")
		if mb_is_mounted "$mnt"; then
			if [ "$(id -u)" = 0 ]; then umount "$mnt" || rc=1
			else fusermount3 -u "$mnt" || rc=1; fi
		fi
		;;
	kernel)
		if mb_is_mounted "$mnt"; then umount "$mnt" || rc=1; fi
		;;
	esac
	if [ -n "$pid" ]; then
		src=$(mb_wait_server "$base") || {
			mb_err "$backend server $pid did not exit within ${MB_TIMEOUT:-30}s; killing it"
			kill -KILL "$pid" 2>/dev/null
			src=$(mb_wait_server "$base") || src=137
		}
		if [ "$src" != 0 ]; then
			local log
			log=$(sed -n 3p "$base.info" 2>/dev/null)
			mb_err "$backend server exited with status $src (log: $log)"
			# its last messages, without ossb's journal lines ("FLAGS PATH") and "ready"
			[ -f "$log" ] && grep -Ev '^[CMDO]+ |: ready ' "$log" | tail -3 | sed 's/^/mount-backend:   /' >&2
			rc=1
		fi
	fi
	if mb_is_mounted "$mnt" && [[ $(mb_fstype "$mnt") == fuse* ]] && [ -n "$backend" ]; then
		mb_err "$mnt still mounted after the server exited; detaching it"
		umount -l "$mnt" 2>/dev/null || fusermount3 -uz "$mnt" 2>/dev/null
		rc=1
	fi
	rm -f "$base.pid" "$base.rc" "$base.info"
	return $rc
}

# Print the backend that mounted MOUNTPOINT through this script (fails when none did).
mb_backend() {
	local mnt state
	mnt=$(realpath -e "$1" 2>/dev/null) || mnt=$1
	state=$(mb_state_dir) || return 2
	[ -f "$state/$(mb_key "$mnt").info" ] || return 1
	sed -n 1p "$state/$(mb_key "$mnt").info"
}

mb_log() {
	local mnt state
	mnt=$(realpath -e "$1" 2>/dev/null) || mnt=$1
	state=$(mb_state_dir) || return 2
	sed -n 3p "$state/$(mb_key "$mnt").info" 2>/dev/null | grep . || echo "$state/$(mb_key "$mnt").log"
}

mb_usage() {
	sed -n '2,/^$/{s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}" >&2
	return 2
}

mb_main() {
	local cmd=${1:-}
	shift || true
	case $cmd in
	mount)
		local backend=${1:-} lowers=() upper="" work="" mnt=""
		shift || true
		while [ $# -gt 0 ]; do
			case $1 in
			--userxattr) export MB_USERXATTR=1 ;;
			--log) export MB_LOG=$2; shift ;;
			--lower) lowers+=("$2"); shift ;;
			--upper) upper=$2; shift ;;
			--work) work=$2; shift ;;
			-*) mb_err "unknown option $1"; return 2 ;;
			*) mnt=$1 ;;
			esac
			shift
		done
		[ -n "$backend" ] && [ -n "$upper" ] && [ -n "$work" ] && [ -n "$mnt" ] && [ ${#lowers[@]} -gt 0 ] || { mb_usage; return 2; }
		mb_mount "$backend" "$mnt" "$upper" "$work" "${lowers[@]}"
		;;
	umount | unmount) [ $# -eq 1 ] || { mb_usage; return 2; }; mb_umount "$1" ;;
	available) [ $# -eq 1 ] || { mb_usage; return 2; }; mb_available "$1" ;;
	is-mounted) [ $# -eq 1 ] || { mb_usage; return 2; }; mb_is_mounted "$1" ;;
	log) [ $# -eq 1 ] || { mb_usage; return 2; }; mb_log "$1" ;;
	backend) [ $# -eq 1 ] || { mb_usage; return 2; }; mb_backend "$1" ;;
	*) mb_usage ;;
	esac
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
	set -uo pipefail
	mb_main "$@"
	exit $?
fi
