#!/bin/sh
# every-instruction/prepare.sh - run by ../prepare-context.sh inside a fresh copy of context/:
# gives files the modes, links, owners and xattrs git cannot keep, and makes the archives ADD
# extracts. Deterministic: fixed names, contents, owners and mtimes.
set -eu
chmod 0755 files/exec.sh
chmod 0600 files/secret
chmod 4755 files/suid
chmod 0700 files/sub/deeper
ln files/a.txt files/hardlink-to-a
ln -s a.txt files/symlink-to-a
ln -s sub/d.txt files/symlink-to-d
mkdir files/emptydir
chmod 0750 files/emptydir
mkdir -p files/long
long=files/long/this-file-name-is-longer-than-one-hundred-characters-so-that-ustar-cannot-hold-it-in-the-name-field.txt
printf 'long name\n' >"$long"
# a symlink whose target does not fit the 100-byte ustar linkname field
ln -s "../$long" files/long/link-with-a-long-target
printf 'owned by 1234:5678 in the context\n' >files/owned-1234
chown 1234:5678 files/owned-1234
python3 -c 'import os; os.setxattr("files/xattr.txt", "user.ossb.test", b"hello")'

# archives for ADD: entries owned by 1234:5678, mtime 2021-02-03T09:41:18Z, a symlink inside
ln -s x.txt archive-src/top/link-to-x
chmod 0700 archive-src/top/nested
find archive-src -exec touch -h -d @1612345278 {} +
tar --sort=name --owner=1234 --group=5678 --numeric-owner --mtime=@1612345278 \
	-C archive-src -cf - top | gzip -n -9 >archive.tar.gz
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@1612345278 \
	-C archive-src -cf plain.tar top/x.txt
# a gzip file that is not a tar: ADD must copy it as it is
printf 'just gzip, no tar\n' | gzip -n -9 >not-a-tar.txt.gz
