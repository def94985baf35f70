# fuse/: the userspace overlay filesystem (see fuse/fusefs.h, design in fuse/fusefs-internal.h).
libossb_fuse_la_SOURCES += \
	fuse/fusefs.h \
	fuse/fusefs-internal.h \
	fuse/override.c \
	fuse/source-dir.c \
	fuse/source-shared.c \
	fuse/node.c \
	fuse/layers.c \
	fuse/readdir.c \
	fuse/copyup.c \
	fuse/journal.c \
	fuse/ops-attr.c \
	fuse/ops-ns.c \
	fuse/ops-rename.c \
	fuse/ops-file.c \
	fuse/mount.c \
	fuse/wire.c fuse/wire.h

# A foreground mount for the unionmount test suite and benchmarks (usage in its header).
check_PROGRAMS += tests/fuse/fusefs-mount
tests_fuse_fusefs_mount_SOURCES = tests/fuse/fusefs-mount.c
tests_fuse_fusefs_mount_LDADD = $(OSSB_LIBS)

check_PROGRAMS += tests/unit/test-fusefs
TESTS += tests/unit/test-fusefs
tests_unit_test_fusefs_SOURCES = tests/unit/test-fusefs.c tests/unit/test-fusefs-util.c \
	tests/unit/test-fusefs-util.h tests/unit/tap.h
tests_unit_test_fusefs_LDADD = $(OSSB_LIBS)

check_PROGRAMS += tests/unit/test-fusefs-kernel
TESTS += tests/unit/test-fusefs-kernel
tests_unit_test_fusefs_kernel_SOURCES = tests/unit/test-fusefs-kernel.c tests/unit/test-fusefs-util.c \
	tests/unit/test-fusefs-util.h tests/unit/tap.h
tests_unit_test_fusefs_kernel_LDADD = $(OSSB_LIBS)

check_PROGRAMS += tests/unit/test-fuse-wire
TESTS += tests/unit/test-fuse-wire
tests_unit_test_fuse_wire_SOURCES = tests/unit/test-fuse-wire.c tests/unit/tap.h
tests_unit_test_fuse_wire_LDADD = $(OSSB_LIBS)
