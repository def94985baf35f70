# fuse/: the remote (lazily fetched) lower layer and the chunk cache (see fuse/source-remote.h).
libossb_fuse_la_SOURCES += \
	fuse/chunkcache.c fuse/chunkcache.h \
	fuse/source-remote.c fuse/source-remote.h \
	fuse/source-remote-internal.h fuse/source-remote-replay.c

check_PROGRAMS += tests/unit/test-source-remote
TESTS += tests/unit/test-source-remote
tests_unit_test_source_remote_SOURCES = tests/unit/test-source-remote.c tests/unit/tap.h
tests_unit_test_source_remote_LDADD = $(OSSB_LIBS)
