"""The training-step benchmark (nnkern.bench.train) runs, and its implementations train the same
model: nnkern, the NumPy twin and torch give the same loss at every step (dropout off, float32)."""

import numpy as np
import pytest

import nnkern as nk
from nnkern import bench
from nnkern.bench import train as bench_train


def test_cases_and_names():
    cases = bench.family_cases("train", quick=True)
    assert [c.name for c in cases] == ["digits-cnn", "char-lstm"]
    assert all(c.unit == "GFLOP/s" and c.work > 0 and c.mode == "step" for c in cases)
    torch = bench.torch_or_none()
    for c in cases:
        assert c.impl_names == ["nnkern", "numpy"] + (["torch", "torch-foreach"] if torch else [])
    assert "train" in bench.FAMILIES


@pytest.fixture
def one_thread():
    """nnkern, torch and NumPy's BLAS on one thread (the comparison does not need more, and an
    oversubscribed machine makes spinning thread pools very slow), restored afterwards."""
    import contextlib

    torch = bench.torch_or_none()
    old = nk.get_num_threads(), torch.get_num_threads() if torch is not None else None
    try:
        from threadpoolctl import threadpool_limits

        blas = threadpool_limits(1)
    except ImportError:
        blas = contextlib.nullcontext()
    nk.set_num_threads(1)
    if torch is not None:
        torch.set_num_threads(1)
    with blas:
        yield
    nk.set_num_threads(old[0])
    if torch is not None:
        torch.set_num_threads(old[1])


@pytest.mark.parametrize("setup", ["cnn", "lstm"])
def test_implementations_take_the_same_steps(setup, one_thread):
    impls = bench_train._cnn_setup(dropout=0.0) if setup == "cnn" else bench_train._lstm_setup()
    names = [i.name for i in impls]
    assert names[:2] == ["nnkern", "numpy"]
    steps = 4 if setup == "cnn" else 2
    losses = {i.name: [float(i.fn()) for _ in range(steps)] for i in impls}
    for name, ls in losses.items():
        np.testing.assert_allclose(ls, losses["nnkern"], rtol=1e-4, err_msg=name)
    assert losses["nnkern"][-1] < losses["nnkern"][0]  # same fixed batch: the loss goes down
