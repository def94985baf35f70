# tests/fuzz: libFuzzer targets.  Every target is also linked with replay-main.c into a
# *-replay program that `make check` runs over the target's corpus (tests/fuzz/corpus/<name>/),
# so the corpora are replayed in every build, sanitizers or not.  With --enable-fuzzing
# (CC=clang) the real fuzzers are built too: run e.g.
#   tests/fuzz/fuzz-dockerfile -max_total_time=300 $(srcdir)/tests/fuzz/corpus/dockerfile
check_PROGRAMS += tests/fuzz/fuzz-dockerfile-replay
tests_fuzz_fuzz_dockerfile_replay_SOURCES = tests/fuzz/fuzz-dockerfile.c tests/fuzz/replay-main.c
tests_fuzz_fuzz_dockerfile_replay_LDADD = $(OSSB_LIBS)
TESTS += tests/fuzz/replay-dockerfile.sh
EXTRA_DIST += tests/fuzz/replay-dockerfile.sh tests/fuzz/corpus

if ENABLE_FUZZING
check_PROGRAMS += tests/fuzz/fuzz-dockerfile
tests_fuzz_fuzz_dockerfile_SOURCES = tests/fuzz/fuzz-dockerfile.c
tests_fuzz_fuzz_dockerfile_LDADD = $(OSSB_LIBS)
tests_fuzz_fuzz_dockerfile_LDFLAGS = $(AM_LDFLAGS) -fsanitize=fuzzer
endif
