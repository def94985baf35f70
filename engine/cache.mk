# engine/cache*: the step cache (keys, COPY/ADD source digests, the on-disk index, prune).
libossb_engine_la_SOURCES += \
	engine/cache.c engine/cache.h \
	engine/cache-key.c

check_PROGRAMS += tests/unit/test-engine-cache
TESTS += tests/unit/test-engine-cache
tests_unit_test_engine_cache_SOURCES = tests/unit/test-engine-cache.c tests/unit/tap.h
tests_unit_test_engine_cache_LDADD = $(OSSB_LIBS)
