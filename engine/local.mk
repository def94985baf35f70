# engine/: build context, COPY/ADD, stages, image config, export.
libossb_engine_la_SOURCES += \
	engine/engine.h \
	engine/build-internal.h \
	engine/build.c \
	engine/dispatch.c \
	engine/progress.c \
	engine/imageconfig.c engine/imageconfig.h \
	engine/copy.c engine/copy.h \
	engine/extract.c engine/extract.h \
	engine/rootfs.c engine/rootfs.h \
	engine/baseimage.c \
	engine/run.c \
	engine/stepcache.c \
	engine/layers.c \
	engine/lazy.c

check_PROGRAMS += tests/unit/test-engine-imageconfig
TESTS += tests/unit/test-engine-imageconfig
tests_unit_test_engine_imageconfig_SOURCES = tests/unit/test-engine-imageconfig.c tests/unit/tap.h
tests_unit_test_engine_imageconfig_LDADD = $(OSSB_LIBS)

check_PROGRAMS += tests/unit/test-engine-copy
TESTS += tests/unit/test-engine-copy
tests_unit_test_engine_copy_SOURCES = tests/unit/test-engine-copy.c tests/unit/tap.h
tests_unit_test_engine_copy_LDADD = $(OSSB_LIBS)

# RUN --mount (engine/run-mounts*.c) and the sandbox's cgroup limits (engine/exec/exec-cgroup.c,
# listed here rather than in engine/exec/exec.mk by the helper that wrote it).
libossb_engine_la_SOURCES += \
	engine/run-mounts.c engine/run-mounts.h \
	engine/run-mounts-prepare.c \
	engine/exec/exec-cgroup.c

check_PROGRAMS += tests/unit/test-run-mounts tests/unit/test-exec-cgroup
TESTS += tests/unit/test-run-mounts tests/unit/test-exec-cgroup
tests_unit_test_run_mounts_SOURCES = tests/unit/test-run-mounts.c tests/unit/tap.h
tests_unit_test_run_mounts_LDADD = $(OSSB_LIBS)
tests_unit_test_exec_cgroup_SOURCES = tests/unit/test-exec-cgroup.c tests/unit/tap.h
tests_unit_test_exec_cgroup_LDADD = $(OSSB_LIBS)

# Fuzz target for the --mount and --secret parsers; its corpus replays in every `make check`.
check_PROGRAMS += tests/fuzz/fuzz-run-mount-replay
TESTS += tests/fuzz/replay-run-mount.sh
tests_fuzz_fuzz_run_mount_replay_SOURCES = tests/fuzz/fuzz-run-mount.c tests/fuzz/replay-main.c
tests_fuzz_fuzz_run_mount_replay_LDADD = $(OSSB_LIBS)
EXTRA_DIST += tests/fuzz/replay-run-mount.sh tests/fuzz/corpus/run-mount
if ENABLE_FUZZING
check_PROGRAMS += tests/fuzz/fuzz-run-mount
tests_fuzz_fuzz_run_mount_SOURCES = tests/fuzz/fuzz-run-mount.c
tests_fuzz_fuzz_run_mount_LDADD = $(OSSB_LIBS)
tests_fuzz_fuzz_run_mount_LDFLAGS = $(AM_LDFLAGS) -fsanitize=fuzzer
endif
