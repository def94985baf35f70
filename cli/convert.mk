# cli/: `ossb convert` (cli/convert.c), rewriting an image's layers with another compression.
ossb_SOURCES += cli/convert.c
