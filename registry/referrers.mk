# registry/: artifacts referring to an image, referrers API and tag-schema fallback (see
# registry/referrers.h).
libossb_registry_la_SOURCES += registry/referrers.c registry/referrers.h

