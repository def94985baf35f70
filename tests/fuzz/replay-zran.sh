#!/bin/sh
# tests/fuzz/replay-zran.sh - replay the zran index parser fuzz corpus (make check).
exec ./tests/fuzz/fuzz-zran-replay "${srcdir:-.}/tests/fuzz/corpus/zran"
