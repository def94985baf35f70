# engine/: gzip base layers read lazily through a checkpoint index found in the cache or the
# registry (engine/lazy-index.h).
libossb_engine_la_SOURCES += engine/lazy-index.c engine/lazy-index.h
