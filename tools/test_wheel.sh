#!/usr/bin/env bash
# Runs the test suite against an installed wheel, from outside the source tree:
#   tools/test_wheel.sh [path/to/nnkern-*.whl]      (default: the one in wheelhouse/)
# Installs the wheel with its `test` extra into a fresh venv, copies tests/ into a temporary
# directory and runs `pytest -m "not slow"` there (WHEEL_TEST_ARGS adds pytest arguments), after
# asserting that `import nnkern` resolves to the venv's copy (with its vendored nnkern.libs), also
# inside the pytest process. torch is not installed there: torch comparisons skip.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
PY=${PYTHON:-python3}
wheel=$(realpath "${1:-$(ls wheelhouse/nnkern-*.whl | head -1)}")
start=$(date +%s)

work=$(mktemp -d "${TMPDIR:-/tmp}/nnkern-wheeltest.XXXXXX")
trap 'rm -rf "$work"' EXIT
echo "== fresh venv with $(basename "$wheel")[test]"
"$PY" -m venv "$work/venv"
"$work/venv/bin/pip" install -q "$wheel[test]"
cp -r "$root/tests" "$work/tests"
cp "$root/README.md" "$work/"  # tests/test_readme.py checks the README next to tests/
find "$work/tests" -name __pycache__ -prune -exec rm -rf {} +
cd "$work"

# `import nnkern` must be the wheel in the venv, never the source tree.
"$work/venv/bin/python" - "$work/venv" <<'PYCODE'
import os, sys, nnkern
where = os.path.realpath(nnkern.__file__)
venv = os.path.realpath(sys.argv[1])
print("tests import", where, "simd", nnkern.simd_level(), "blas", nnkern.blas_corename())
assert where.startswith(venv + os.sep) and "site-packages" in where, f"nnkern imported from {where}, not the wheel"
libs = os.path.join(os.path.dirname(os.path.dirname(where)), "nnkern.libs")
assert os.path.isdir(libs), "no vendored libraries (nnkern.libs)"
print("vendored:", sorted(os.listdir(libs)))
PYCODE
# The same check inside the pytest process (after conftest and rootdir handling).
cat > "$work/wheel_guard.py" <<PYCODE
import os
import nnkern

def pytest_configure(config):
    where = os.path.realpath(nnkern.__file__)
    assert where.startswith(os.path.realpath("$work/venv") + os.sep), f"nnkern imported from {where}"
PYCODE
echo "== pytest in $work"
PYTHONPATH="$work" "$work/venv/bin/python" -m pytest -q -p no:cacheprovider -p wheel_guard -m "not slow" \
  ${WHEEL_TEST_ARGS:-} tests
echo "== wheel test suite passed in $(( $(date +%s) - start )) s"
