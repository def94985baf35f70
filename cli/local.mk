# cli/: the ossb binary (one file per subcommand).
ossb_SOURCES += cli/cli.h cli/main.c cli/build.c cli/debug.c cli/version.c cli/registry.c cli/pull.c cli/prune.c
ossb_LDADD = $(OSSB_LIBS)
