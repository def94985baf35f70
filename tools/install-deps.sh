#!/bin/bash
# tools/install-deps.sh - install what building and testing ossb needs on Debian 12
# (apt-get; uses sudo when not root).  Used by the README's Quick start and by .ci/run.
set -euo pipefail

SUDO=
if [ "$(id -u)" != 0 ]; then
	SUDO=sudo
fi

build_pkgs=(build-essential autoconf automake libtool pkg-config
	libfuse3-dev libcurl4-gnutls-dev libgnutls28-dev libjson-c-dev libzstd-dev
	libarchive-dev liburing-dev zlib1g-dev)
test_pkgs=(python3 python3-pytest python3-jwt python3-cryptography skopeo umoci zstd xz-utils bzip2 gcovr
	docker-registry apache2-utils gnutls-bin busybox-static uidmap podman runc buildah debootstrap containerd stargz-snapshotter
	clang libclang-rt-14-dev)

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${build_pkgs[@]}" "${test_pkgs[@]}"

# the arm64 busybox-static .deb for the two-platform test image (downloaded, not installed)
"$(dirname "$0")/fetch-test-debs.sh"
