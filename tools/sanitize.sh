#!/usr/bin/env bash
# Runs the test suite against an ASan + UBSan build of nnkern._core and prints a PASS/FAIL summary.
#   tools/sanitize.sh [--no-torch] [--leaks] [pytest args...]
#       default pytest args: tests -q -m "not slow" --ignore=tests/fuzz --ignore=tests/mpi
#   tools/sanitize.sh [--no-torch] [--leaks] --python script.py [args...]   (a script, not pytest)
#   e.g. tools/sanitize.sh --leaks --no-torch --python tools/leakcheck.py 1000
#   --no-torch  hide torch from the tests (a stub that raises ImportError, so `requires_torch`
#               tests skip); use it if torch's own libraries trip the sanitizers.
#   --leaks     LeakSanitizer on (detect_leaks=1); meant for tools/leakcheck.py rather than the
#               whole suite. CPython and NumPy keep objects alive until exit, so LSan always reports
#               some leaks: the run FAILS only on a leak whose allocation stack has a frame in
#               nnkern (csrc/nnkern, bindings, nnkern::, _core). (A suppression file cannot do this:
#               suppressions match any frame, and every stack of ours has CPython frames below.)
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
# detect_stack_use_after_return stays off: with ASan's fake stack, the AVX-512 GEMM micro-kernels
# (rnn_gemm.h tile(), 64-byte vector accumulators) segfault at once in the RelWithDebInfo build
# (fake stack frames vs 64-byte vector locals); with it off the same tests pass clean, and the
# Release build passes them (docs/HARDENING.md).
asan_opts="abort_on_error=1:strict_init_order=1:detect_stack_use_after_return=0:log_path=$root/$out/logs/asan"
if [[ $leaks == 1 ]]; then
  # LSan's own exit code off: leak reports are expected and judged from the log below.
  asan_opts="detect_leaks=1:${asan_opts/abort_on_error=1/abort_on_error=0}"
  export LSAN_OPTIONS="report_objects=0:max_leaks=0:exitcode=0"
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
ours_leaks=0
if [[ $reports -gt 0 ]]; then
  # One line per distinct finding: the SUMMARY lines of ASan/LSan and UBSan's 'runtime error' lines.
  grep -hE "SUMMARY:|runtime error:" "$out"/logs/* | sed "s|$root/||g" | sort | uniq -c | sort -rn | head -40
fi
if [[ $leaks == 1 && $reports -gt 0 ]]; then
  # Leak reports are expected (CPython/NumPy until-exit allocations): count those with our frames.
  ours_leaks=$("$PY" - "$out"/logs/* <<'PYCODE'
import re, sys
blocks = []
for path in sys.argv[1:]:
    blocks += re.split(r"\n(?=(?:Direct|Indirect) leak of)", open(path, errors="replace").read())
ours = [b for b in blocks if re.match(r"(Direct|Indirect) leak", b)
        and re.search(r"nnkern::|/bindings/|/csrc/nnkern/|_core\.cpython", b)]
other = [b for b in blocks if re.search(r"ERROR: AddressSanitizer|runtime error:", b)]
total = sum(1 for b in blocks if re.match(r"(Direct|Indirect) leak", b))
print(len(ours) + len(other), file=sys.stdout)
print(f"leak reports: {total}, with nnkern frames: {len(ours)}; other sanitizer errors: {len(other)}",
      file=sys.stderr)
for b in (ours + other)[:5]:
    print(b[:3000], file=sys.stderr)
PYCODE
)
fi
if [[ $leaks == 1 ]]; then
  ok=$([[ $status -eq 0 && $ours_leaks -eq 0 ]] && echo 1 || echo 0)
else
  ok=$([[ $status -eq 0 && $reports -eq 0 ]] && echo 1 || echo 0)
fi
if [[ $ok == 1 ]]; then
  echo "SANITIZE: PASS"
else
  echo "SANITIZE: FAIL"
  exit 1
fi
