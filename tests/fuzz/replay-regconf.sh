#!/bin/sh
# tests/fuzz/replay-regconf.sh - replay the regconf fuzz corpus (make check).
exec ./tests/fuzz/fuzz-regconf-replay "${srcdir:-.}/tests/fuzz/corpus/regconf"
