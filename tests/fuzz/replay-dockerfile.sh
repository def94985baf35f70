#!/bin/sh
# Replay the Dockerfile fuzz corpus through the fuzz target, linked with replay-main.c
# (automake exports $srcdir to tests).
exec ./tests/fuzz/fuzz-dockerfile-replay "${srcdir:-.}/tests/fuzz/corpus/dockerfile"
