#!/bin/sh
# tests/fuzz/replay-index.sh - replay the image index parser fuzz corpus (make check).
exec ./tests/fuzz/fuzz-index-replay "${srcdir:-.}/tests/fuzz/corpus/index"
