#!/bin/sh
# tests/fuzz/replay-unpack.sh - replay the layer applier fuzz corpus (make check).
exec ./tests/fuzz/fuzz-unpack-replay "${srcdir:-.}/tests/fuzz/corpus/unpack"
