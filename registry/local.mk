# registry/: references, credentials, auth, transport, pull and push.
libossb_registry_la_SOURCES += \
	registry/reference.c registry/reference.h

check_PROGRAMS += tests/unit/test-registry-reference
TESTS += tests/unit/test-registry-reference
tests_unit_test_registry_reference_SOURCES = tests/unit/test-registry-reference.c tests/unit/tap.h
tests_unit_test_registry_reference_LDADD = $(OSSB_LIBS)

libossb_registry_la_SOURCES += \
	registry/pull.c registry/pull.h registry/pull-layers.c \
	registry/push.c registry/push.h \
	registry/progress.c registry/progress.h
