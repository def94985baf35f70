# engine/dockerfile shell expansion + dockerignore.
libossb_engine_la_SOURCES += \
	engine/dockerfile/gorune.c engine/dockerfile/gorune.h \
	engine/dockerfile/shell.c engine/dockerfile/shell.h \
	engine/dockerfile/gore.c engine/dockerfile/gore.h \
	engine/dockerfile/match.c \
	engine/dockerfile/dockerignore.c engine/dockerfile/dockerignore.h

# BuildKit's corpora: tests/buildkit/run-shell-tests.sh BUILDKIT/frontend/dockerfile/shell
check_PROGRAMS += tests/buildkit/shellexpand
tests_buildkit_shellexpand_SOURCES = tests/buildkit/shellexpand.c
tests_buildkit_shellexpand_LDADD = $(OSSB_LIBS)
EXTRA_DIST += tests/buildkit/run-shell-tests.sh
