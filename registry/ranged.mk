# registry/: ranged blob reads for lazy pulling (see registry/ranged.h).
libossb_registry_la_SOURCES += registry/ranged.c registry/ranged.h

check_PROGRAMS += tests/unit/test-ranged
TESTS += tests/unit/test-ranged.sh
tests_unit_test_ranged_SOURCES = tests/unit/test-ranged.c tests/unit/tap.h
tests_unit_test_ranged_LDADD = $(OSSB_LIBS)
EXTRA_DIST += tests/unit/test-ranged.sh
