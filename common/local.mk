# common/: errors, logging, cleanup, buffers, sha256, file-system helpers, interrupts, the
# rootless user namespace.
libossb_common_la_SOURCES += \
	common/cleanup.h \
	common/error.c common/error.h \
	common/log.c common/log.h \
	common/strbuf.c common/strbuf.h \
	common/sha256.c common/sha256.h \
	common/fs.c common/fs.h \
	common/interrupt.c common/interrupt.h \
	common/userns.c common/userns.h

check_PROGRAMS += tests/unit/test-common
TESTS += tests/unit/test-common
tests_unit_test_common_SOURCES = tests/unit/test-common.c tests/unit/tap.h
tests_unit_test_common_LDADD = $(OSSB_LIBS)

check_PROGRAMS += tests/unit/test-userns
TESTS += tests/unit/test-userns
tests_unit_test_userns_SOURCES = tests/unit/test-userns.c tests/unit/tap.h
tests_unit_test_userns_LDADD = $(OSSB_LIBS)
