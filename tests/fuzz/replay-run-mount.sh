#!/bin/sh
# tests/fuzz/replay-run-mount.sh - replay the RUN --mount parser fuzz corpus (make check).
exec ./tests/fuzz/fuzz-run-mount-replay "${srcdir:-.}/tests/fuzz/corpus/run-mount"
