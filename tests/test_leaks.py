"""Memory bounds of repeated calls (hardening, issue 6): every kernel family's representative
kernels (the registry of tests/test_thread_safety.py, small shapes), their out= forms and calls
that raise, each run CALLS (10,000) times after a warm-up; the process RSS must grow by less than
1 MiB, and no input array may gain references (a leaked reference to an input never shows in RSS,
as the same arrays are passed every time).

NNKERN_LEAK_CALLS overrides the count (tools/leakcheck.py runs the same workloads under
LeakSanitizer). The default run takes ~20-40 s on 2 cores.
"""

import gc
import os
import sys

import numpy as np
import pytest

import nnkern as nk
from test_thread_safety import CASES

psutil = pytest.importorskip("psutil")

# RSS means nothing under ASan (freed memory is held in its quarantine): tools/sanitize.sh sets
# NNKERN_SANITIZED, and its --leaks mode runs LeakSanitizer over the same workloads instead.
pytestmark = pytest.mark.skipif(bool(os.environ.get("NNKERN_SANITIZED")), reason="RSS is meaningless under ASan")

CALLS = int(os.environ.get("NNKERN_LEAK_CALLS", "10000"))
WARMUP = 300
MAX_GROWTH = 1 << 20  # bytes


try:  # glibc: hand free heap pages back, so reusing them later shows up in RSS again
    import ctypes

    _malloc_trim = ctypes.CDLL("libc.so.6").malloc_trim
except (OSError, AttributeError):  # pragma: no cover - not glibc
    _malloc_trim = None


def rss():
    # Without the trim, memory freed by earlier tests (still resident) absorbs a leak of a few MiB
    # without any RSS growth.
    gc.collect()
    if _malloc_trim is not None:
        _malloc_trim(0)
    return psutil.Process().memory_info().rss


def assert_flat(fn, calls=CALLS, what=""):
    for _ in range(WARMUP):
        fn()
    before = rss()
    for _ in range(calls):
        fn()
    growth = rss() - before
    assert growth < MAX_GROWTH, f"{what}: RSS grew by {growth / 1024:.0f} KiB over {calls} calls"


def out_calls(rng, dtype):
    """Kernels writing into caller-provided out= buffers (no result allocation at all)."""
    x = rng.standard_normal((2, 3, 8, 8)).astype(dtype)
    w = rng.standard_normal((4, 3, 3, 3)).astype(dtype)
    a, b = rng.standard_normal((9, 7)).astype(dtype), rng.standard_normal((7, 5)).astype(dtype)
    logits, target = rng.standard_normal((6, 5)).astype(dtype), rng.integers(0, 5, 6)
    emb_w, idx = rng.standard_normal((10, 4)).astype(dtype), rng.integers(0, 10, 12)
    bufs = dict(mm=np.empty((9, 5), dtype), conv=np.empty((2, 4, 6, 6), dtype), sm=np.empty((6, 5), dtype),
                pool=np.empty((2, 3, 4, 4), dtype), pidx=np.empty((2, 3, 4, 4), np.int64),
                bn=np.empty_like(x), mean=np.empty(3, dtype), invstd=np.empty(3, dtype),
                drop=np.empty_like(x), mask=np.empty(x.shape, bool), emb=np.empty((12, 4), dtype),
                dx=np.empty_like(x), dw=np.empty_like(w), db=np.empty(4, dtype), dlogits=np.empty((6, 5), dtype),
                warp=np.empty_like(x))
    rm, rv = np.zeros(3, dtype), np.ones(3, dtype)
    mats = np.array([[1.0, 0.1, 0.5], [0.0, 1.0, -0.5]], dtype)

    def run():
        nk.matmul(a, b, out=bufs["mm"])
        y = nk.conv2d(x, w, out=bufs["conv"])
        nk.conv2d_backward(y, x, w, dx_out=bufs["dx"], dw_out=bufs["dw"], db_out=bufs["db"])
        nk.softmax(logits, out=bufs["sm"])
        nk.max_pool2d(x, 2, out=bufs["pool"], indices_out=bufs["pidx"])
        nk.batch_norm(x, rm, rv, training=True, out=bufs["bn"], save_mean_out=bufs["mean"],
                      save_invstd_out=bufs["invstd"])
        nk.dropout(x, 0.5, 3, out=bufs["drop"], mask_out=bufs["mask"])
        nk.embedding(idx, emb_w, out=bufs["emb"])
        nk.cross_entropy_forward_backward(logits, target, out=bufs["dlogits"])
        nk.affine_warp(x, mats, out=bufs["warp"])
        nk.relu(bufs["warp"], out=bufs["warp"])  # in place
    inputs = [x, w, a, b, logits, target, emb_w, idx, rm, rv, mats, *bufs.values()]
    return run, inputs


def error_calls(rng):
    """Calls that raise (after converting some arguments): each must release what it took."""
    x = rng.standard_normal((2, 3, 8, 8))
    x32 = x.astype(np.float32)
    ro = x.copy()
    ro.flags.writeable = False
    p, g = np.zeros(10), np.zeros(10)
    calls = [
        lambda: nk.matmul(x[0, 0], x32[0, 0]),                       # mixed dtypes
        lambda: nk.matmul(x[0, 0], x[0, 0], out=np.empty((8, 8), np.float32)),
        lambda: nk.conv2d(x, np.zeros((4, 2, 3, 3))),                # channel mismatch
        lambda: nk.conv2d(x, np.zeros((4, 3, 3, 3)), out=np.empty((2, 4, 5, 5))),
        lambda: nk.max_pool2d(x, 20),                                # window larger than input
        lambda: nk.softmax(x, dim=7),
        lambda: nk.relu(x, out=ro),                                  # read-only out
        lambda: nk.cross_entropy(x[0], np.array([0, 1, 99])),        # target out of range
        lambda: nk.batch_norm(x, np.zeros(2), np.ones(3), training=True),
        lambda: nk.dropout(x, 1.5, 0),
        lambda: nk.embedding(np.array([0, 11]), x[0, 0]),            # index out of range
        lambda: nk.adam_step(p, g[:5], p.copy(), p.copy(), 1),       # shape mismatch
        lambda: nk.sgd_step(ro[0, 0], g, lr=0.1),                    # read-only parameter
        lambda: nk.lstm_sequence(x[0], x[0, 0], x[0, 0], x[0, 0], x[0, 0]),
        lambda: nk.affine_warp(x, np.zeros((3, 2, 3))),
        lambda: nk.clip_grad_norm([p, x32[0, 0]], 1.0),             # mixed dtypes
    ]

    def run():
        for call in calls:
            try:
                call()
            except (TypeError, ValueError, IndexError, RuntimeError):
                pass
            else:  # pragma: no cover - the call must raise
                raise AssertionError("expected an error")
    return run, [x, x32, ro, p, g]


@pytest.mark.parametrize("name", list(CASES))
def test_rss_flat_over_repeated_calls(name):
    nk.set_num_threads(1)  # one OpenMP team: per-thread scratch is then fixed after the warm-up
    assert_flat(CASES[name](np.random.default_rng(0), np.float32, False), what=name)


def test_rss_and_refcounts_flat_with_out_buffers():
    run, inputs = out_calls(np.random.default_rng(1), np.float64)
    refs = [sys.getrefcount(a) for a in inputs]
    assert_flat(run, what="out= calls")
    assert [sys.getrefcount(a) for a in inputs] == refs


def test_rss_and_refcounts_flat_over_calls_that_raise():
    run, inputs = error_calls(np.random.default_rng(2))
    run()  # every call raises (checked inside)
    refs = [sys.getrefcount(a) for a in inputs]
    assert_flat(run, calls=max(1, CALLS // 4), what="error paths")  # 16 raising calls per round
    assert [sys.getrefcount(a) for a in inputs] == refs


def test_refcounts_of_inputs_unchanged_by_every_family():
    # The registry's runs return new arrays: none of them may hold a reference to an input (the
    # closures' cells are the inputs; compare their reference counts before and after).
    for name, make in CASES.items():
        run = make(np.random.default_rng(3), np.float64, False)
        cells = [c.cell_contents for c in run.__closure__ or () if isinstance(c.cell_contents, np.ndarray)]
        run()
        refs = [sys.getrefcount(a) for a in cells]
        for _ in range(200):
            run()
        assert [sys.getrefcount(a) for a in cells] == refs, name


def test_leak_detector_can_fail():
    # Guard: a deliberately leaking call (keeps ~300 bytes per call alive) is caught, even with
    # free heap memory left by earlier allocations that the leak could reuse.
    slack = [np.ones(25) for _ in range(20000)]
    del slack
    kept = []
    with pytest.raises(AssertionError, match="RSS grew"):
        assert_flat(lambda: kept.append(np.ones(25)), calls=max(CALLS, 10000))
