# registry/: the HTTP client, sessions, blob transfers, blob provenance (see client.h).
libossb_registry_la_SOURCES += \
	registry/client.c registry/client.h registry/client-internal.h \
	registry/client-call.c registry/client-blobs.c \
	registry/http.c registry/http.h \
	registry/sources.c

check_PROGRAMS += tests/unit/test-registry-client
TESTS += tests/unit/test-registry-client.sh
tests_unit_test_registry_client_SOURCES = tests/unit/test-registry-client.c tests/unit/registry-client-fixtures.h \
	tests/unit/tap.h
tests_unit_test_registry_client_LDADD = $(OSSB_LIBS)
EXTRA_DIST += tests/unit/test-registry-client.sh tests/unit/registry-fault-server.py
