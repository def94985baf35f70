# oci/: the seekable layer formats, eStargz and zstd:chunked (seekable.h): their writer
# (driven by the layer writer), TOC reader and chunk decoder.
libossb_oci_la_SOURCES += \
	oci/seekable.h oci/seekable-internal.h oci/seekable-toc.h oci/seekable-dec.h \
	oci/seekable.c \
	oci/seekable-entry.c \
	oci/seekable-dec.c \
	oci/seekable-locate.c \
	oci/seekable-pipe.c \
	oci/seekable-write.c \
	oci/seekable-util.c \
	oci/seekable-convert.c

check_PROGRAMS += tests/unit/test-seekable
TESTS += tests/unit/test-seekable
tests_unit_test_seekable_SOURCES = tests/unit/test-seekable.c tests/unit/test-seekable-util.h tests/unit/tap.h
tests_unit_test_seekable_LDADD = $(OSSB_LIBS)
check_PROGRAMS += tests/unit/test-seekable-reader
TESTS += tests/unit/test-seekable-reader
tests_unit_test_seekable_reader_SOURCES = tests/unit/test-seekable-reader.c tests/unit/test-seekable-util.h tests/unit/tap.h
tests_unit_test_seekable_reader_LDADD = $(OSSB_LIBS)
EXTRA_DIST += tests/unit/seekable-samples
include tests/fuzz/toc.mk
