# oci/: layer unpacking, platforms and indexes, layout reading (see unpack.h, platform.h,
# layout.h: ossb_layout_read) and store verification (store.c: ossb_store_verify).
libossb_oci_la_SOURCES += \
	oci/unpack.c oci/unpack.h \
	oci/platform.c oci/platform.h \
	oci/layout-read.c

check_PROGRAMS += tests/unit/test-oci-unpack tests/unit/test-oci-platform tests/unit/test-oci-layout-read
TESTS += tests/unit/test-oci-unpack tests/unit/test-oci-platform tests/unit/test-oci-layout-read
tests_unit_test_oci_unpack_SOURCES = tests/unit/test-oci-unpack.c tests/unit/tap.h
tests_unit_test_oci_unpack_LDADD = $(OSSB_LIBS)
tests_unit_test_oci_platform_SOURCES = tests/unit/test-oci-platform.c tests/unit/tap.h
tests_unit_test_oci_platform_LDADD = $(OSSB_LIBS)
tests_unit_test_oci_layout_read_SOURCES = tests/unit/test-oci-layout-read.c tests/unit/tap.h
tests_unit_test_oci_layout_read_LDADD = $(OSSB_LIBS)

# Fuzz targets: the index parser and the layer applier; their corpora replay in `make check`.
check_PROGRAMS += tests/fuzz/fuzz-index-replay tests/fuzz/fuzz-unpack-replay
TESTS += tests/fuzz/replay-index.sh tests/fuzz/replay-unpack.sh
tests_fuzz_fuzz_index_replay_SOURCES = tests/fuzz/fuzz-index.c tests/fuzz/replay-main.c
tests_fuzz_fuzz_index_replay_LDADD = $(OSSB_LIBS)
tests_fuzz_fuzz_unpack_replay_SOURCES = tests/fuzz/fuzz-unpack.c tests/fuzz/replay-main.c
tests_fuzz_fuzz_unpack_replay_LDADD = $(OSSB_LIBS)
EXTRA_DIST += tests/fuzz/replay-index.sh tests/fuzz/replay-unpack.sh
if ENABLE_FUZZING
check_PROGRAMS += tests/fuzz/fuzz-index tests/fuzz/fuzz-unpack
tests_fuzz_fuzz_index_SOURCES = tests/fuzz/fuzz-index.c
tests_fuzz_fuzz_index_LDADD = $(OSSB_LIBS)
tests_fuzz_fuzz_index_LDFLAGS = $(AM_LDFLAGS) -fsanitize=fuzzer
tests_fuzz_fuzz_unpack_SOURCES = tests/fuzz/fuzz-unpack.c
tests_fuzz_fuzz_unpack_LDADD = $(OSSB_LIBS)
tests_fuzz_fuzz_unpack_LDFLAGS = $(AM_LDFLAGS) -fsanitize=fuzzer
endif
