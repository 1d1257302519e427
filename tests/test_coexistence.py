"""nnkern next to torch and next to NumPy's own BLAS in one process (hardening, issue 6).

- With torch imported before or after nnkern (torch brings its own OpenMP runtime; an installed
  nnkern wheel vendors another libgomp under a different name), nnkern's results are bitwise
  those of a process without torch, also while torch computes on another Python thread, and they
  match torch's.
- No oversubscription: threadpoolctl sees nnkern's OpenBLAS copy at 1 thread (all its parallelism
  is our OpenMP pool of nk.get_num_threads() threads), and threadpool_limits() limits our pool too.
Skips cleanly without torch / threadpoolctl.
"""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import nnkern as nk
from conftest import assert_bitwise_equal, requires_torch

# Computes a fixed set of nnkern results (and, with torch, torch's and nnkern's while torch runs
# on another thread) and saves them to argv[1]. argv[2]: none | torch-first | nnkern-first.
SCRIPT = textwrap.dedent(r"""
    import sys, threading
    import numpy as np
    order = sys.argv[2]
    if order == "none":
        import builtins
        real_import = builtins.__import__
        def no_torch(name, *a, **k):
            if name == "torch" or name.startswith("torch."):
                raise ImportError("torch hidden")
            return real_import(name, *a, **k)
        builtins.__import__ = no_torch
    if order == "torch-first":
        import torch
    import nnkern as nk
    if order == "nnkern-first":
        import torch
    nk.set_num_threads(2)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 8, 20, 20)).astype(np.float32)
    w = rng.standard_normal((16, 8, 3, 3)).astype(np.float32)
    a = rng.standard_normal((200, 300)); b = rng.standard_normal((300, 150))
    logits = rng.standard_normal((500, 40)).astype(np.float32); t = rng.integers(0, 40, 500)

    def ours():
        y = nk.conv2d(x, w, padding=1)
        dx, dw, db = nk.conv2d_backward(y, x, w, padding=1)
        bn = nk.batch_norm(x, np.zeros(8, np.float32), np.ones(8, np.float32), training=True)[0]
        return dict(conv=y, dx=dx, dw=dw, mm=nk.matmul(a, b), sm=nk.log_softmax(logits),
                    ce=np.array([nk.cross_entropy(logits, t)]), pool=nk.max_pool2d(x, 2)[0], bn=bn)

    res = {}
    if order != "none":
        torch.set_num_threads(2)
        tx, tw = torch.from_numpy(x), torch.from_numpy(w)
        res["torch_conv"] = torch.nn.functional.conv2d(tx, tw, padding=1).numpy()
        res["torch_mm"] = (torch.from_numpy(a) @ torch.from_numpy(b)).numpy()
        stop = threading.Event()
        def torch_busy():
            while not stop.is_set():
                torch.nn.functional.conv2d(tx, tw, padding=1).sum()
        th = threading.Thread(target=torch_busy); th.start()
        try:
            concurrent = [ours() for _ in range(3)]
        finally:
            stop.set(); th.join()
        for i, r in enumerate(concurrent):
            res.update({f"concurrent{i}_{k}": v for k, v in r.items()})
    res.update(ours())
    np.savez(sys.argv[1], **res)
    """)


def run_script(tmp_path, order):
    path = tmp_path / f"{order}.npz"
    env = dict(os.environ)
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(path), order], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, f"{order}: exit {proc.returncode}\n{proc.stderr[-3000:]}"
    return dict(np.load(path))


@requires_torch
def test_torch_in_the_same_process_gives_identical_results(tmp_path):
    base = run_script(tmp_path, "none")
    assert not any(k.startswith("torch") for k in base)
    for order in ("torch-first", "nnkern-first"):
        got = run_script(tmp_path, order)
        for k, v in base.items():
            assert_bitwise_equal(got[k], v, f"{order}: {k}")
            for i in range(3):  # while torch computed on another Python thread
                assert_bitwise_equal(got[f"concurrent{i}_{k}"], v, f"{order} concurrent {i}: {k}")
        np.testing.assert_allclose(got["conv"], got["torch_conv"], rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(got["mm"], got["torch_mm"], rtol=1e-12, atol=1e-11)


def _openblas_copies(info):
    """(scipy_openblas32's library, the copy vendored in nnkern.libs by auditwheel): the
    threadpoolctl entries of each (lists, empty when not loaded). Found by path: importing
    scipy_openblas32 to ask for its directory would itself load its library."""
    openblas = [d for d in info if d["internal_api"] == "openblas"]
    package = [d for d in openblas if f"scipy_openblas32{os.sep}lib{os.sep}" in os.path.realpath(d["filepath"])]
    vendored = [d for d in openblas if "nnkern.libs" in d["filepath"]]
    return package, vendored


def _our_openblas(info):
    """The OpenBLAS nnkern computes with: the vendored copy in a repaired wheel, else the
    scipy_openblas32 package's (source and editable installs, found through _core's RPATH)."""
    package, vendored = _openblas_copies(info)
    return vendored or package


def test_one_openblas_copy_of_ours_is_loaded():
    # In an installed wheel, _core uses the copy auditwheel vendored in nnkern.libs; nnkern must not
    # also load scipy_openblas32's (a second library with its own idle thread pool whose symbols
    # interpose the first: see nnkern/__init__.py).
    threadpoolctl = pytest.importorskip("threadpoolctl")
    package, vendored = _openblas_copies(threadpoolctl.threadpool_info())
    assert len(package) + len(vendored) == 1


def test_thread_pools_seen_by_threadpoolctl():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    a = np.random.default_rng(0).standard_normal((300, 300))
    a @ a  # NumPy's BLAS loaded and used
    nk.set_num_threads(2)
    ours = nk.matmul(a, a)
    info = threadpoolctl.threadpool_info()
    blas = _our_openblas(info)
    assert len(blas) == 1, info
    assert blas[0]["num_threads"] == 1  # nnkern's OpenBLAS never spawns threads of its own
    omp = [d for d in info if d["user_api"] == "openmp"]
    assert omp and any(d["num_threads"] == nk.get_num_threads() == 2 for d in omp), omp
    # NumPy's BLAS is a separate library with its own pool, untouched by nnkern
    others = [d for d in info if d["user_api"] == "blas" and d not in blas]
    assert all(os.path.realpath(d["filepath"]) != os.path.realpath(blas[0]["filepath"]) for d in others)

    # threadpool_limits limits every pool, ours included, and results do not change.
    with threadpoolctl.threadpool_limits(limits=1):
        assert nk.get_num_threads() == 1
        assert_bitwise_equal(nk.matmul(a, a), ours)
        package, vendored = _openblas_copies(threadpoolctl.threadpool_info())
        unused = {d["filepath"] for d in vendored} if package else set()  # see the test above
        assert all(d["num_threads"] == 1 for d in threadpoolctl.threadpool_info() if d["filepath"] not in unused)
    assert nk.get_num_threads() == 2
    np.testing.assert_allclose(ours, a @ a, rtol=1e-12, atol=1e-10)


def test_limiting_other_blas_libraries_leaves_ours_at_one_thread():
    # threadpoolctl sets (and on leaving threadpool_limits restores) every library's count. In a
    # wheel install the vendored copy's set_num_threads binds to scipy_openblas32's copy (symbol
    # interposition), so setting the unused vendored copy to n threads sets the copy nnkern uses:
    # threadpool_limits(1) then left nnkern's GEMMs at 2 OpenBLAS threads inside each OpenMP
    # thread about every other run (it depends on the order threadpoolctl lists the libraries);
    # test_one_openblas_copy_of_ours_is_loaded guards against that setup.
    threadpoolctl = pytest.importorskip("threadpoolctl")
    a = np.ones((64, 64))
    a @ a
    controller = threadpoolctl.ThreadpoolController()
    info = controller.info()
    package, vendored = _openblas_copies(info)
    ours = _our_openblas(info)[0]["filepath"]
    others = [d["filepath"] for d in info if d["user_api"] == "blas" and d["filepath"] != ours]
    assert others  # at least NumPy's own BLAS
    for path in others:
        with controller.select(filepath=path).limit(limits=2):
            now = {d["filepath"]: d["num_threads"] for d in threadpoolctl.threadpool_info()}
            assert now[ours] == 1, f"limiting {path} changed nnkern's OpenBLAS to {now[ours]} threads"
        assert {d["filepath"]: d["num_threads"] for d in threadpoolctl.threadpool_info()}[ours] == 1
