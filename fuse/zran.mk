# fuse/: gzip layers served lazily through their checkpoint index (see fuse/source-zran.h;
# tested by tests/unit/test-zran, oci/zran.mk).
libossb_fuse_la_SOURCES += fuse/source-zran.c fuse/source-zran.h
