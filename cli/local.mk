# cli/: the ossb binary.
ossb_SOURCES += cli/main.c
ossb_LDADD = $(OSSB_LIBS)
