# engine/exec/: the RUN sandbox (see exec.h).
libossb_engine_la_SOURCES += \
	engine/exec/exec.h \
	engine/exec/exec-internal.h \
	engine/exec/exec.c \
	engine/exec/exec-child.c \
	engine/exec/exec-mounts.c \
	engine/exec/exec-creds.c

check_PROGRAMS += tests/unit/test-exec
TESTS += tests/unit/test-exec
tests_unit_test_exec_SOURCES = tests/unit/test-exec.c tests/unit/tap.h
tests_unit_test_exec_LDADD = $(OSSB_LIBS)
