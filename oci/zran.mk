# oci/: checkpoint indexes of plain gzip layers for lazy pulling (see oci/zran.h).
libossb_oci_la_SOURCES += oci/zran.c oci/zran.h

check_PROGRAMS += tests/unit/test-zran
TESTS += tests/unit/test-zran
tests_unit_test_zran_SOURCES = tests/unit/test-zran.c tests/unit/tap.h
tests_unit_test_zran_LDADD = $(OSSB_LIBS)

# The index parser on arbitrary bytes; its corpus (tests/fuzz/corpus/zran/) replays in make check.
check_PROGRAMS += tests/fuzz/fuzz-zran-replay
tests_fuzz_fuzz_zran_replay_SOURCES = tests/fuzz/fuzz-zran.c tests/fuzz/replay-main.c
tests_fuzz_fuzz_zran_replay_LDADD = $(OSSB_LIBS)
TESTS += tests/fuzz/replay-zran.sh
EXTRA_DIST += tests/fuzz/replay-zran.sh

if ENABLE_FUZZING
check_PROGRAMS += tests/fuzz/fuzz-zran
tests_fuzz_fuzz_zran_SOURCES = tests/fuzz/fuzz-zran.c
tests_fuzz_fuzz_zran_LDADD = $(OSSB_LIBS)
tests_fuzz_fuzz_zran_LDFLAGS = $(AM_LDFLAGS) -fsanitize=fuzzer
endif
