#!/usr/bin/env bash
# Runs the test suite against an ASan + UBSan build of nnkern._core and prints a PASS/FAIL summary.
#   tools/sanitize.sh [--no-torch] [--leaks] [pytest args...]
#       default pytest args: tests -q -m "not slow" --ignore=tests/fuzz --ignore=tests/mpi
#   tools/sanitize.sh [--no-torch] [--leaks] --python script.py [args...]   (a script, not pytest)
#   --no-torch  hide torch from the tests (a stub that raises ImportError, so `requires_torch`
#               tests skip); use it if torch's own libraries trip the sanitizers.
#   --leaks     LeakSanitizer on (detect_leaks=1) with tools/lsan.supp; meant for
#               tools/leakcheck.py rather than the whole suite (CPython's own allocations that live
#               until exit are suppressed, not our kernels').
# The sanitized extension is built into build/sanitize/pkg/nnkern (a copy of python/nnkern), so the
# normal development build in python/nnkern is left alone. Needs the development environment of
# DEVELOPING.md (numpy, pybind11, scipy-openblas32, cmake, ninja, pytest, hypothesis).
# UBSan reports do not stop the run (halt_on_error=0, so one run lists every finding); ASan errors
# abort the process (ASan cannot recover). Every report is written to build/sanitize/logs/ and
# counted in the summary: the run PASSES only if pytest passes and there is no report.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
PY=${PYTHON:-python}
out=build/sanitize
no_torch=0
leaks=0
runner=(-m pytest)
while [[ $# -gt 0 ]]; do
  case "$1" in
    --no-torch) no_torch=1; shift ;;
    --leaks) leaks=1; shift ;;
    --python) runner=(); shift; break ;;
    *) break ;;
  esac
done

rm -rf "$out/pkg" "$out/logs" "$out/notorch"
mkdir -p "$out/pkg" "$out/logs"
cp -r python/nnkern "$out/pkg/nnkern"
rm -f "$out/pkg/nnkern"/_core*.so
cmake -S . -B "$out/build" -G Ninja -DNNKERN_INPLACE=ON -DNNKERN_INPLACE_DIR="$root/$out/pkg/nnkern" \
  -DNNKERN_SANITIZE=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPython_EXECUTABLE="$(command -v "$PY")" >/dev/null
cmake --build "$out/build"

pypath="$root/$out/pkg"
if [[ $no_torch == 1 ]]; then
  mkdir -p "$out/notorch/torch"
  echo 'raise ImportError("torch hidden by tools/sanitize.sh --no-torch")' > "$out/notorch/torch/__init__.py"
  pypath="$root/$out/notorch:$pypath"
fi

asan=$(gcc -print-file-name=libasan.so)
ubsan=$(gcc -print-file-name=libubsan.so)
# libstdc++ preloaded too: otherwise ASan's interceptors can abort on the first C++ exception.
stdcxx=$(gcc -print-file-name=libstdc++.so)
if [[ $# -eq 0 && ${#runner[@]} -gt 0 ]]; then
  set -- tests -q -m "not slow" -p no:cacheprovider --ignore=tests/fuzz --ignore=tests/mpi
fi
asan_opts="abort_on_error=1:strict_init_order=1:detect_stack_use_after_return=1:log_path=$root/$out/logs/asan"
if [[ $leaks == 1 ]]; then
  asan_opts="detect_leaks=1:$asan_opts"
  export LSAN_OPTIONS="suppressions=$root/tools/lsan.supp:print_suppressions=0:report_objects=0"
else
  asan_opts="detect_leaks=0:$asan_opts"
fi
echo "== under ASan/UBSan (torch $([[ $no_torch == 1 ]] && echo hidden || echo visible), leaks $([[ $leaks == 1 ]] && echo on || echo off)): $*"
start=$(date +%s)
set +e
LD_PRELOAD="$asan $ubsan $stdcxx" \
ASAN_OPTIONS="$asan_opts" \
UBSAN_OPTIONS="halt_on_error=0:print_stacktrace=1:log_path=$root/$out/logs/ubsan" \
PYTHONPATH="$pypath" NNKERN_SANITIZED=1 "$PY" "${runner[@]}" "$@"
status=$?
set -e

reports=$(find "$out/logs" -type f | wc -l)
echo
echo "== sanitizer summary ($(( $(date +%s) - start )) s)"
echo "exit status: $status"
echo "sanitizer report files: $reports (in $out/logs)"
if [[ $reports -gt 0 ]]; then
  # One line per distinct finding: the SUMMARY lines of ASan/LSan and UBSan's 'runtime error' lines.
  grep -hE "SUMMARY:|runtime error:" "$out"/logs/* | sed "s|$root/||g" | sort | uniq -c | sort -rn | head -40
fi
if [[ $status -eq 0 && $reports -eq 0 ]]; then
  echo "SANITIZE: PASS"
else
  echo "SANITIZE: FAIL"
  exit 1
fi
