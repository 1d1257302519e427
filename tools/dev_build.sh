#!/usr/bin/env bash
# Development build: compiles nnkern._core with plain CMake into build/dev and places it in
# python/nnkern/, so `PYTHONPATH=python python -m pytest` tests the working tree without a pip
# install. Needs numpy, pybind11 and scipy-openblas32 in the current Python environment.
#   tools/dev_build.sh            # Release
#   NNKERN_SANITIZE=1 tools/dev_build.sh   # ASan/UBSan build in build/dev-sanitize
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
if [[ "${NNKERN_SANITIZE:-0}" == "1" ]]; then
  dir=build/dev-sanitize; extra=(-DNNKERN_SANITIZE=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo)
else
  dir=build/dev; extra=(-DCMAKE_BUILD_TYPE=Release)
fi
cmake -S . -B "$dir" -G Ninja -DNNKERN_INPLACE=ON -DPython_EXECUTABLE="$(command -v "$PY")" "${extra[@]}" >/dev/null
cmake --build "$dir" "$@"
