#!/bin/sh
# prepare-context.sh - make the build context of a reference case, with every mode, owner,
# link and mtime fixed, so that every builder (BuildKit, OSSB) sees the same bytes.
#   tests/reference/prepare-context.sh CASE_DIR DEST_DIR
# Copies CASE_DIR/context to DEST_DIR (removed first), runs CASE_DIR/prepare.sh inside it
# when present (modes, hard/sym links, xattrs, archives git cannot keep), then sets the mtime
# of every entry to $CONTEXT_EPOCH (default 1577836800 = 2020-01-01T00:00:00Z).
# Needs root (chown) and a filesystem with user xattrs.
set -eu
[ $# = 2 ] || { echo "usage: $0 CASE_DIR DEST_DIR" >&2; exit 2; }
case_dir=$(cd "$1" && pwd)
dest=$2
epoch=${CONTEXT_EPOCH:-1577836800}
[ -d "$case_dir/context" ] || { echo "$0: $case_dir/context: no such directory" >&2; exit 2; }
rm -rf "$dest"
mkdir -p "$dest"
cp -a "$case_dir/context/." "$dest/"
cd "$dest"
find . -type f -exec chmod 0644 {} +
find . -type d -exec chmod 0755 {} +
chown -R 0:0 .
umask 022
[ ! -f "$case_dir/prepare.sh" ] || sh "$case_dir/prepare.sh"
# bottom-up, links themselves (-h), the archives made above included
find . -depth -exec touch -h -d "@$epoch" {} +
