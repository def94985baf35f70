# engine/replay.mk: record and replay of the files steps read from lazily pulled base layers.
libossb_engine_la_SOURCES += \
	engine/replay.c engine/replay.h

check_PROGRAMS += tests/unit/test-replay
TESTS += tests/unit/test-replay
tests_unit_test_replay_SOURCES = tests/unit/test-replay.c tests/unit/tap.h
tests_unit_test_replay_LDADD = $(OSSB_LIBS)
