#!/bin/bash
# tools/fetch-test-debs.sh - download the foreign-architecture Debian packages the integration
# tests build their offline base images from (today: busybox-static for arm64, the second
# platform of the two-platform index in tests/integration/images.py).
#
# Usage: tools/fetch-test-debs.sh [DIR]
#   DIR defaults to $OSSB_TEST_DEBS, else /var/cache/ossb-test-debs.  The tests look there too.
# Adds the arm64 architecture to dpkg (needs root or sudo) and runs apt-get update once; the
# .deb files are only downloaded into DIR, never installed.  Re-running is cheap: when every
# package is already in DIR nothing is done.
set -euo pipefail

dir=${1:-${OSSB_TEST_DEBS:-/var/cache/ossb-test-debs}}
pkgs=(busybox-static:arm64)

SUDO=
if [ "$(id -u)" != 0 ]; then
	SUDO=sudo
fi

missing=0
for p in "${pkgs[@]}"; do
	if ! compgen -G "$dir/${p%%:*}_*_${p##*:}.deb" >/dev/null; then
		missing=1
	fi
done
if [ "$missing" = 0 ]; then
	echo "fetch-test-debs: every package is already in $dir"
	exit 0
fi

if ! dpkg --print-foreign-architectures | grep -qx arm64; then
	$SUDO dpkg --add-architecture arm64
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q

if ! mkdir -p "$dir" 2>/dev/null || [ ! -w "$dir" ]; then
	$SUDO mkdir -p "$dir"
	$SUDO chown "$(id -u):$(id -g)" "$dir"
fi
cd "$dir"
# As root apt-get warns that the download runs unsandboxed (the _apt user cannot write to
# DIR): harmless, the file is only read by the tests.
apt-get download "${pkgs[@]}"
ls -l "$dir"
