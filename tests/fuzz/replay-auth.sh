#!/bin/sh
# tests/fuzz/replay-auth.sh - replay the auth fuzz corpus (make check).
exec ./tests/fuzz/fuzz-auth-replay "${srcdir:-.}/tests/fuzz/corpus/auth"
