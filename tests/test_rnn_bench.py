"""Smoke test of the recurrent benchmark workloads (nnkern.bench.rnn): every nnkern/NumPy
implementation of the quick cases runs once (torch's are torch's code, and slow to start)."""

import numpy as np

from nnkern import bench


def test_quick_cases_run():
    cases = bench.family_cases("rnn", quick=True)
    assert cases and all(c.unit == "GFLOP/s" and c.work > 0 for c in cases)
    for case in cases:
        impls = case.setup()
        assert [i.name for i in impls] == case.impl_names
        for impl in impls:
            if not impl.name.startswith("torch"):
                impl.fn()


def test_flop_count():
    from nnkern.bench import rnn

    assert rnn._flops("lstm", 35, 64, 128, 256) == 2.0 * 35 * 64 * 4 * 256 * (128 + 256)
    assert rnn._flops("gru", 35, 1, 32, 64) == 2.0 * 35 * 1 * 3 * 64 * (32 + 64)
