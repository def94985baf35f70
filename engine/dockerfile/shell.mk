# engine/dockerfile shell expansion + dockerignore.
libossb_engine_la_SOURCES += \
	engine/dockerfile/gorune.c engine/dockerfile/gorune.h \
	engine/dockerfile/shell.c engine/dockerfile/shell.h \
	engine/dockerfile/gore.c engine/dockerfile/gore.h \
	engine/dockerfile/match.c \
	engine/dockerfile/dockerignore.c engine/dockerfile/dockerignore.h

# BuildKit's corpora: tests/buildkit/run-shell-tests.sh BUILDKIT/frontend/dockerfile/shell
check_PROGRAMS += tests/buildkit/shellexpand
tests_buildkit_shellexpand_SOURCES = tests/buildkit/shellexpand.c
tests_buildkit_shellexpand_LDADD = $(OSSB_LIBS)
EXTRA_DIST += tests/buildkit/run-shell-tests.sh

check_PROGRAMS += tests/unit/test-dockerfile-shell tests/unit/test-dockerignore
TESTS += tests/unit/test-dockerfile-shell tests/unit/test-dockerignore
tests_unit_test_dockerfile_shell_SOURCES = tests/unit/test-dockerfile-shell.c tests/unit/tap.h
tests_unit_test_dockerfile_shell_LDADD = $(OSSB_LIBS)
tests_unit_test_dockerignore_SOURCES = tests/unit/test-dockerignore.c tests/unit/tap.h
tests_unit_test_dockerignore_LDADD = $(OSSB_LIBS)

# Fuzz targets (one per file) and their corpus replays, which run in every `make check`.
check_PROGRAMS += tests/fuzz/fuzz-shell-replay tests/fuzz/fuzz-dockerignore-replay
TESTS += tests/fuzz/replay-shell.sh tests/fuzz/replay-dockerignore.sh
tests_fuzz_fuzz_shell_replay_SOURCES = tests/fuzz/fuzz-shell.c tests/fuzz/replay-main.c
tests_fuzz_fuzz_shell_replay_LDADD = $(OSSB_LIBS)
tests_fuzz_fuzz_dockerignore_replay_SOURCES = tests/fuzz/fuzz-dockerignore.c tests/fuzz/replay-main.c
tests_fuzz_fuzz_dockerignore_replay_LDADD = $(OSSB_LIBS)
EXTRA_DIST += tests/fuzz/replay-shell.sh tests/fuzz/replay-dockerignore.sh \
	tests/fuzz/corpus/shell tests/fuzz/corpus/dockerignore
if ENABLE_FUZZING
check_PROGRAMS += tests/fuzz/fuzz-shell tests/fuzz/fuzz-dockerignore
tests_fuzz_fuzz_shell_SOURCES = tests/fuzz/fuzz-shell.c
tests_fuzz_fuzz_shell_LDADD = $(OSSB_LIBS)
tests_fuzz_fuzz_shell_LDFLAGS = $(AM_LDFLAGS) -fsanitize=fuzzer
tests_fuzz_fuzz_dockerignore_SOURCES = tests/fuzz/fuzz-dockerignore.c
tests_fuzz_fuzz_dockerignore_LDADD = $(OSSB_LIBS)
tests_fuzz_fuzz_dockerignore_LDFLAGS = $(AM_LDFLAGS) -fsanitize=fuzzer
endif
