"""GEMM workloads: the roof every GEMM-based kernel is measured against."""

import numpy as np

from . import Case, Impl, torch_or_none


def _setup(m, n, k):
    def setup():
        import nnkern as nk

        rng = np.random.default_rng(0)
        a = rng.standard_normal((m, k), dtype=np.float32)
        b = rng.standard_normal((k, n), dtype=np.float32)
        c_nk = np.empty((m, n), np.float32)
        c_np = np.empty((m, n), np.float32)
        impls = [
            Impl("nnkern", lambda: nk.matmul(a, b, out=c_nk), "our OpenBLAS copy, split over OpenMP"),
            Impl("numpy", lambda: np.matmul(a, b, out=c_np), "numpy's OpenBLAS"),
        ]
        torch = torch_or_none()
        if torch is not None:
            ta, tb, tc = torch.from_numpy(a), torch.from_numpy(b), torch.empty((m, n))
            impls.append(Impl("torch", lambda: torch.mm(ta, tb, out=tc), "torch.mm (MKL)"))
        return impls

    return setup


def cases(quick):
    sizes = [(512, 512, 512)] if quick else [(2048, 2048, 2048), (64, 1024, 256), (2240, 1024, 128)]
    names = ["nnkern", "numpy"] + (["torch"] if torch_or_none() is not None else [])
    return [
        Case("gemm", "sgemm", f"M{m} N{n} K{k}", _setup(m, n, k), work=2.0 * m * n * k, unit="GFLOP/s",
             mode="op", impl_names=names)
        for (m, n, k) in sizes
    ]
