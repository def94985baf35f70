#!/bin/sh
# tests/fuzz/replay-manifest.sh - replay the manifest parser fuzz corpus (make check).
exec ./tests/fuzz/fuzz-manifest-replay "${srcdir:-.}/tests/fuzz/corpus/manifest"
