# oci/: content store, layer writer, image model, layout and docker-archive writers.
libossb_oci_la_SOURCES += \
	oci/oci.h \
	oci/oci-internal.h \
	oci/store.c oci/store.h \
	oci/compress.c oci/compress.h \
	oci/pgzip.c oci/pgzip.h \
	oci/layer.c oci/layer.h \
	oci/image.c oci/image.h \
	oci/layout.c oci/layout.h \
	oci/docker-archive.c

check_PROGRAMS += tests/unit/test-oci-store tests/unit/test-oci-layer tests/unit/test-oci-layout
TESTS += tests/unit/test-oci-store tests/unit/test-oci-layer tests/unit/test-oci-layout
tests_unit_test_oci_store_SOURCES = tests/unit/test-oci-store.c tests/unit/tap.h
tests_unit_test_oci_store_LDADD = $(OSSB_LIBS)
tests_unit_test_oci_layer_SOURCES = tests/unit/test-oci-layer.c tests/unit/tap.h
tests_unit_test_oci_layer_LDADD = $(OSSB_LIBS)
tests_unit_test_oci_layout_SOURCES = tests/unit/test-oci-layout.c tests/unit/tap.h
tests_unit_test_oci_layout_LDADD = $(OSSB_LIBS)
check_PROGRAMS += tests/unit/test-oci-compress
TESTS += tests/unit/test-oci-compress
tests_unit_test_oci_compress_SOURCES = tests/unit/test-oci-compress.c tests/unit/tap.h
tests_unit_test_oci_compress_LDADD = $(OSSB_LIBS)

# The tool-based checks (skopeo, umoci, podman; skipped when absent) drive test-oci-layout.
TESTS += tests/unit/test-oci-tools.sh
EXTRA_DIST += tests/unit/test-oci-tools.sh

# Fuzz target for the manifest parser; its corpus replays in every `make check`.
check_PROGRAMS += tests/fuzz/fuzz-manifest-replay
TESTS += tests/fuzz/replay-manifest.sh
tests_fuzz_fuzz_manifest_replay_SOURCES = tests/fuzz/fuzz-manifest.c tests/fuzz/replay-main.c
tests_fuzz_fuzz_manifest_replay_LDADD = $(OSSB_LIBS)
EXTRA_DIST += tests/fuzz/replay-manifest.sh tests/fuzz/corpus/manifest
if ENABLE_FUZZING
check_PROGRAMS += tests/fuzz/fuzz-manifest
tests_fuzz_fuzz_manifest_SOURCES = tests/fuzz/fuzz-manifest.c
tests_fuzz_fuzz_manifest_LDADD = $(OSSB_LIBS)
tests_fuzz_fuzz_manifest_LDFLAGS = $(AM_LDFLAGS) -fsanitize=fuzzer
endif
