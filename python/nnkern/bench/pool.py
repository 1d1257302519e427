"""Pooling workloads (DESIGN.md section 6): N32 C64 32x32 float32, max 2x2/s2, avg 2x2/s2,
max 3x3/s2/p1; forward and forward+backward.

GB/s counts the minimum traffic: forward reads x and writes y (and the int64 indices for max);
forward+backward is twice that. nnkern and the NumPy twin run on preallocated outputs (out=);
torch's forward runs under no_grad (its max path then skips the indices), its backward through
autograd (torch.autograd.grad with a fixed upstream gradient). torch-channels_last uses
NHWC-strided tensors; the conversion is done once in setup, not timed.
"""

import numpy as np

from . import Case, Impl, torch_or_none

WORKLOADS = [
    # name, op, kernel, stride, padding
    ("max2x2s2", "max", 2, 2, 0),
    ("avg2x2s2", "avg", 2, 2, 0),
    ("max3x3s2p1", "max", 3, 2, 1),
]


def _out(n, k, s, p):
    return (n + 2 * p - k) // s + 1


def _setup(op, k, s, p, shape, backward):
    def setup():
        import nnkern as nk
        from nnkern import reference as ref

        N, C, H, W = shape
        OH, OW = _out(H, k, s, p), _out(W, k, s, p)
        rng = np.random.default_rng(0)
        x = rng.standard_normal(shape, dtype=np.float32)
        dy = rng.standard_normal((N, C, OH, OW), dtype=np.float32)
        y = np.empty((N, C, OH, OW), np.float32)
        idx = np.empty((N, C, OH, OW), np.int64)
        dx = np.empty(shape, np.float32)
        y_np = np.empty_like(y)
        idx_np = np.empty_like(idx)
        dx_np = np.empty_like(dx)

        if op == "max":
            def nk_fwd():
                nk.max_pool2d(x, k, s, p, out=y, indices_out=idx)

            def nk_fb():
                nk.max_pool2d(x, k, s, p, out=y, indices_out=idx)
                nk.max_pool2d_backward(dy, idx, shape, out=dx)

            def np_fwd():
                ref.max_pool2d(x, k, s, p, out=y_np, indices_out=idx_np)

            def np_fb():
                ref.max_pool2d(x, k, s, p, out=y_np, indices_out=idx_np)
                ref.max_pool2d_backward(dy, idx_np, shape, out=dx_np)
        else:
            def nk_fwd():
                nk.avg_pool2d(x, k, s, p, out=y)

            def nk_fb():
                nk.avg_pool2d(x, k, s, p, out=y)
                nk.avg_pool2d_backward(dy, shape, k, s, p, out=dx)

            def np_fwd():
                ref.avg_pool2d(x, k, s, p, out=y_np)

            def np_fb():
                ref.avg_pool2d(x, k, s, p, out=y_np)
                ref.avg_pool2d_backward(dy, shape, k, s, p, out=dx_np)

        impls = [
            Impl("nnkern", nk_fb if backward else nk_fwd, "out= buffers" + (", indices int64" if op == "max" else "")),
            Impl("numpy", np_fb if backward else np_fwd, "nnkern.reference: loop over kernel offsets (strided views)"),
        ]
        torch = torch_or_none()
        if torch is not None:
            import torch.nn.functional as F

            fn = F.max_pool2d if op == "max" else F.avg_pool2d
            tdy = torch.from_numpy(dy)
            for name, fmt in (("torch", torch.contiguous_format), ("torch-channels_last", torch.channels_last)):
                tx = torch.from_numpy(x).contiguous(memory_format=fmt)
                tdy_f = tdy.contiguous(memory_format=fmt)
                if backward:
                    txg = tx.clone().requires_grad_(True)

                    def t_fb(txg=txg, tdy_f=tdy_f):
                        ty = fn(txg, k, s, p)
                        torch.autograd.grad(ty, txg, tdy_f)

                    impls.append(Impl(name, t_fb, "autograd"))
                else:
                    def t_fwd(tx=tx):
                        with torch.no_grad():
                            fn(tx, k, s, p)

                    impls.append(Impl(name, t_fwd, "no_grad"))
        return impls

    return setup


def cases(quick):
    shape = (4, 16, 32, 32) if quick else (32, 64, 32, 32)
    N, C, H, W = shape
    names = ["nnkern", "numpy"] + (["torch", "torch-channels_last"] if torch_or_none() is not None else [])
    out = []
    for name, op, k, s, p in WORKLOADS:
        OH, OW = _out(H, k, s, p), _out(W, k, s, p)
        fwd_bytes = 4 * N * C * (H * W + OH * OW) + (8 * N * C * OH * OW if op == "max" else 0)
        sh = f"N{N} C{C} {H}x{W} k{k} s{s} p{p}"
        out.append(Case("pool", name, sh, _setup(op, k, s, p, shape, False), work=fwd_bytes, mode="fwd",
                        impl_names=names))
        out.append(Case("pool", name, sh, _setup(op, k, s, p, shape, True), work=2 * fwd_bytes, mode="fwd+bwd",
                        impl_names=names))
    return out
