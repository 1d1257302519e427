"""Bounded memory: a large-batch convolution under a small nk.set_workspace_limit keeps its scratch
under the cap, its peak RSS growth far below the whole batch's column matrix, and its results.

Runs in a fresh process so that scratch kept by earlier tests (it is reused, never shrunk) and
the allocator's history do not blur the measurement."""

import json
import os
import subprocess
import sys

import pytest

SCRIPT = r"""
import json, resource, sys
import numpy as np
import nnkern as nk

limit = int(sys.argv[1])
nk.set_num_threads(2)
N, C, H, W, OC = 48, 64, 32, 32, 64      # whole-batch columns: 48 * 576 * 1024 * 4 B = 113 MB
rng = np.random.default_rng(0)
x = rng.standard_normal((N, C, H, W), dtype=np.float32)
w = rng.standard_normal((OC, C, 3, 3), dtype=np.float32)
dy = rng.standard_normal((N, OC, H, W), dtype=np.float32)
# Outputs filled (not np.zeros: calloc pages would only fault in when the kernel writes them).
y = np.full((N, OC, H, W), 1.0, np.float32)
dx, dw, db = np.full_like(x, 1.0), np.full_like(w, 1.0), np.full(OC, 1.0, np.float32)
# Warm-up on tiny images (small scratch): thread stacks, OpenBLAS's per-thread buffers, code pages.
nk.set_workspace_limit(limit)
xs, dys = np.ascontiguousarray(x[:4, :, :6, :6]), np.ascontiguousarray(dy[:4, :, :6, :6])
nk.conv2d(xs, w, padding=1)
nk.conv2d_backward(dys, xs, w, padding=1)
del xs, dys

def status(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(key)

def reset_peak():
    try:  # Linux >= 4.0: VmHWM restarts from the current RSS
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass

def rss_peak():
    return status("VmHWM")

def rss_now():
    return status("VmRSS")

reset_peak()
now0, peak0 = rss_now(), rss_peak()
nk.conv2d(x, w, padding=1, out=y)
nk.conv2d_backward(dy, x, w, padding=1, dx_out=dx, dw_out=dw, db_out=db)
peak1 = rss_peak()
held = nk._core._scratch_bytes_held()
plan = nk._core._conv2d_plan(x.shape, w.shape, (1, 1), (1, 1, 1, 1), (1, 1), 1, 4, True, True)
nk.set_workspace_limit(256 << 20)
ref = [nk.conv2d(x, w, padding=1)] + list(nk.conv2d_backward(dy, x, w, padding=1))
err = max(float(np.max(np.abs(a - e)) / max(1.0, float(np.max(np.abs(e))))) for a, e in zip((y, dx, dw, db), ref))
print(json.dumps(dict(growth=peak1 - max(now0, peak0), slack=peak0 - now0, held=held, err=err,
                      block_pixels=plan["block_pixels"], pixels=plan["pixels"])))
"""


def run(limit):
    env = dict(os.environ)
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(limit)], capture_output=True, text=True, env=env,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_large_batch_under_small_workspace_limit():
    limit = 2 << 20
    r = run(limit)
    columns = 48 * 576 * 1024 * 4
    assert r["block_pixels"] < r["pixels"]  # each image's columns were cut into pixel blocks
    # scratch held by all threads: under the cap (plus the 1/8 growth margin of scratch buffers)
    assert r["held"] <= limit * 1.25, r
    # peak RSS growth of the call: the cap plus a little, far from the batch's column matrix
    assert r["slack"] < 8 << 20, r  # the measurement baseline is tight
    assert r["growth"] <= limit * 1.25 + (4 << 20), r
    assert r["growth"] < columns / 8
    assert r["err"] < 1e-5, r
