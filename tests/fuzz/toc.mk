# tests/fuzz: the seekable-format reader (oci/seekable.c: TOC location, TOC decoding, chunk
# reads) on arbitrary bytes; its corpus (layers ossb's writer and upstream tools wrote, see
# tests/fuzz/corpus/toc/README) replays in every `make check`.
check_PROGRAMS += tests/fuzz/fuzz-toc-replay
tests_fuzz_fuzz_toc_replay_SOURCES = tests/fuzz/fuzz-toc.c tests/fuzz/replay-main.c
tests_fuzz_fuzz_toc_replay_LDADD = $(OSSB_LIBS)
TESTS += tests/fuzz/replay-toc.sh
EXTRA_DIST += tests/fuzz/replay-toc.sh

if ENABLE_FUZZING
check_PROGRAMS += tests/fuzz/fuzz-toc
tests_fuzz_fuzz_toc_SOURCES = tests/fuzz/fuzz-toc.c
tests_fuzz_fuzz_toc_LDADD = $(OSSB_LIBS)
tests_fuzz_fuzz_toc_LDFLAGS = $(AM_LDFLAGS) -fsanitize=fuzzer
endif
