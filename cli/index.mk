# cli/: `ossb index` (cli/index.c), checkpoint indexes of an image's gzip layers for lazy pulls.
ossb_SOURCES += cli/index.c
