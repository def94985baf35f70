# snapshotter/: the snapshotter interface and its backends (see snapshotter.h).
libossb_snapshotter_la_SOURCES += \
	snapshotter/snapshotter.h \
	snapshotter/snapshotter-internal.h \
	snapshotter/snapshotter.c \
	snapshotter/walk.c \
	snapshotter/overlay.c \
	snapshotter/upper.c \
	snapshotter/diff.c \
	snapshotter/commit.c \
	snapshotter/native.c \
	snapshotter/layered.c \
	snapshotter/mounts.c \
	snapshotter/layerstore.h \
	snapshotter/layerstore.c \
	snapshotter/stagefs.h \
	snapshotter/stagefs.c

check_PROGRAMS += tests/unit/test-snapshotter
TESTS += tests/unit/test-snapshotter
tests_unit_test_snapshotter_SOURCES = tests/unit/test-snapshotter.c tests/unit/tap.h
tests_unit_test_snapshotter_LDADD = $(OSSB_LIBS)
