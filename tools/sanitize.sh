#!/usr/bin/env bash
# Runs the test suite against an ASan + UBSan build of nnkern._core.
#   tools/sanitize.sh [pytest args...]      (default: tests -q -m "not slow")
# The sanitized extension is built into build/sanitize/pkg/nnkern (a copy of python/nnkern), so the
# normal development build in python/nnkern is left alone. Needs the development environment of
# DEVELOPING.md (numpy, pybind11, scipy-openblas32, cmake, ninja, pytest, hypothesis).
# Leak detection is off for the Python process itself (CPython keeps interned objects alive);
# tools/leakcheck.py measures kernel memory growth instead.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
out=build/sanitize
rm -rf "$out/pkg"
mkdir -p "$out/pkg"
cp -r python/nnkern "$out/pkg/nnkern"
rm -f "$out/pkg/nnkern"/_core*.so
cmake -S . -B "$out/build" -G Ninja -DNNKERN_INPLACE=ON -DNNKERN_INPLACE_DIR="$(pwd)/$out/pkg/nnkern" \
  -DNNKERN_SANITIZE=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPython_EXECUTABLE="$(command -v "$PY")" >/dev/null
cmake --build "$out/build"
asan=$(gcc -print-file-name=libasan.so)
ubsan=$(gcc -print-file-name=libubsan.so)
# libstdc++ preloaded too: otherwise ASan's interceptors can abort on the first C++ exception.
stdcxx=$(gcc -print-file-name=libstdc++.so)
[[ $# -eq 0 ]] && set -- tests -q -m "not slow" -p no:cacheprovider
echo "== pytest under ASan/UBSan: $*"
LD_PRELOAD="$asan $ubsan $stdcxx" \
ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:strict_init_order=1:detect_stack_use_after_return=1" \
UBSAN_OPTIONS="halt_on_error=1:abort_on_error=1:print_stacktrace=1" \
PYTHONPATH="$out/pkg" NNKERN_SANITIZED=1 "$PY" -m pytest "$@"
