#!/bin/sh
# tests/fuzz/replay-toc.sh - replay the seekable-format reader fuzz corpus (make check).
exec ./tests/fuzz/fuzz-toc-replay "${srcdir:-.}/tests/fuzz/corpus/toc"
