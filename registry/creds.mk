# registry/: credential sources, auth challenges and tokens, registries.conf (see the headers).
libossb_registry_la_SOURCES += \
	registry/credentials.c registry/credentials.h \
	registry/auth.c registry/auth.h \
	registry/regconf.c registry/regconf.h

check_PROGRAMS += tests/unit/test-registry-creds tests/unit/test-registry-auth tests/unit/test-registry-regconf
TESTS += tests/unit/test-registry-creds tests/unit/test-registry-auth tests/unit/test-registry-regconf
tests_unit_test_registry_creds_SOURCES = tests/unit/test-registry-creds.c tests/unit/tap.h
tests_unit_test_registry_creds_LDADD = $(OSSB_LIBS)
tests_unit_test_registry_auth_SOURCES = tests/unit/test-registry-auth.c tests/unit/tap.h
tests_unit_test_registry_auth_LDADD = $(OSSB_LIBS)
tests_unit_test_registry_regconf_SOURCES = tests/unit/test-registry-regconf.c tests/unit/tap.h
tests_unit_test_registry_regconf_LDADD = $(OSSB_LIBS)

# Fuzz targets for the WWW-Authenticate and registries.conf parsers; their corpora replay in
# every `make check` (see tests/fuzz/fuzz.mk).
check_PROGRAMS += tests/fuzz/fuzz-auth-replay tests/fuzz/fuzz-regconf-replay
TESTS += tests/fuzz/replay-auth.sh tests/fuzz/replay-regconf.sh
tests_fuzz_fuzz_auth_replay_SOURCES = tests/fuzz/fuzz-auth.c tests/fuzz/replay-main.c
tests_fuzz_fuzz_auth_replay_LDADD = $(OSSB_LIBS)
tests_fuzz_fuzz_regconf_replay_SOURCES = tests/fuzz/fuzz-regconf.c tests/fuzz/replay-main.c
tests_fuzz_fuzz_regconf_replay_LDADD = $(OSSB_LIBS)
EXTRA_DIST += tests/fuzz/replay-auth.sh tests/fuzz/replay-regconf.sh tests/fuzz/corpus/auth tests/fuzz/corpus/regconf
if ENABLE_FUZZING
check_PROGRAMS += tests/fuzz/fuzz-auth tests/fuzz/fuzz-regconf
tests_fuzz_fuzz_auth_SOURCES = tests/fuzz/fuzz-auth.c
tests_fuzz_fuzz_auth_LDADD = $(OSSB_LIBS)
tests_fuzz_fuzz_auth_LDFLAGS = $(AM_LDFLAGS) -fsanitize=fuzzer
tests_fuzz_fuzz_regconf_SOURCES = tests/fuzz/fuzz-regconf.c
tests_fuzz_fuzz_regconf_LDADD = $(OSSB_LIBS)
tests_fuzz_fuzz_regconf_LDFLAGS = $(AM_LDFLAGS) -fsanitize=fuzzer
endif
