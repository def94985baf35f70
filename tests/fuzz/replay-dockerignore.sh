#!/bin/sh
# tests/fuzz/replay-dockerignore.sh - replay the .dockerignore fuzz corpus (make check).
exec ./tests/fuzz/fuzz-dockerignore-replay "${srcdir:-.}/tests/fuzz/corpus/dockerignore"
