# engine/dockerfile parser + instructions (owned by the parser work).
libossb_engine_la_SOURCES += \
	engine/dockerfile/parser.h \
	engine/dockerfile/parser-internal.h \
	engine/dockerfile/parser.c \
	engine/dockerfile/parser-args.c \
	engine/dockerfile/parser-heredoc.c \
	engine/dockerfile/parser-json.c \
	engine/dockerfile/parser-text.c \
	engine/dockerfile/parser-dump.c \
	engine/dockerfile/instructions.h \
	engine/dockerfile/instructions.c \
	engine/dockerfile/instructions-flags.c

# BuildKit's parser testfiles are compared by tests/buildkit/run-parser-testfiles.sh (given a
# checkout); the dumper it drives is built by `make check`.
check_PROGRAMS += tests/buildkit/ossb-dfdump
tests_buildkit_ossb_dfdump_SOURCES = tests/buildkit/dfdump.c
tests_buildkit_ossb_dfdump_LDADD = $(OSSB_LIBS)
EXTRA_DIST += tests/buildkit/run-parser-testfiles.sh

check_PROGRAMS += tests/unit/test-dockerfile-parser tests/unit/test-dockerfile-instructions
TESTS += tests/unit/test-dockerfile-parser tests/unit/test-dockerfile-instructions
tests_unit_test_dockerfile_parser_SOURCES = tests/unit/test-dockerfile-parser.c tests/unit/tap.h
tests_unit_test_dockerfile_parser_LDADD = $(OSSB_LIBS)
tests_unit_test_dockerfile_instructions_SOURCES = tests/unit/test-dockerfile-instructions.c tests/unit/tap.h
tests_unit_test_dockerfile_instructions_LDADD = $(OSSB_LIBS)
