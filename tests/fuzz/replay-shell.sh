#!/bin/sh
# tests/fuzz/replay-shell.sh - replay the shell expansion fuzz corpus (make check).
exec ./tests/fuzz/fuzz-shell-replay "${srcdir:-.}/tests/fuzz/corpus/shell"
