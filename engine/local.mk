# engine/: build context, COPY/ADD, stages, image config, export.
libossb_engine_la_SOURCES += \
	engine/engine.h \
	engine/build-internal.h \
	engine/build.c \
	engine/dispatch.c \
	engine/progress.c \
	engine/imageconfig.c engine/imageconfig.h \
	engine/copy.c engine/copy.h \
	engine/extract.c engine/extract.h \
	engine/rootfs.c engine/rootfs.h \
	engine/baseimage.c \
	engine/run.c

check_PROGRAMS += tests/unit/test-engine-imageconfig
TESTS += tests/unit/test-engine-imageconfig
tests_unit_test_engine_imageconfig_SOURCES = tests/unit/test-engine-imageconfig.c tests/unit/tap.h
tests_unit_test_engine_imageconfig_LDADD = $(OSSB_LIBS)

check_PROGRAMS += tests/unit/test-engine-copy
TESTS += tests/unit/test-engine-copy
tests_unit_test_engine_copy_SOURCES = tests/unit/test-engine-copy.c tests/unit/tap.h
tests_unit_test_engine_copy_LDADD = $(OSSB_LIBS)
