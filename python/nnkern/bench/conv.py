"""Convolution workloads (DESIGN.md section 6): forward and forward+backward (dx, dw, db), float32.

Implementations side by side: nnkern (out= buffers), the NumPy im2col twin (nnkern.reference),
torch NCHW and torch channels_last (torch's faster path here; the layout conversion is not
timed), and ``gemm-roof``: nk.matmul on GEMMs with the same FLOPs (the forward product, and for
forward+backward also the dW and dcol products, each over the whole batch's columns as one GEMM),
i.e. what the GEMM alone reaches on this machine in this run.
GFLOP/s count 2*N*Cout*OH*OW*Cin/groups*kH*kW per forward, 3x that for forward+backward.
"""

import numpy as np

from . import Case, Impl, torch_or_none

# name: (N, Cin, H, W, Cout, k, stride, padding)
WORKLOADS = {
    "digits": (64, 1, 28, 28, 8, 5, 1, 0),
    "cifar-first": (32, 3, 32, 32, 32, 3, 1, 1),
    "mid": (32, 64, 16, 16, 128, 3, 1, 1),
    "strided": (32, 64, 32, 32, 64, 3, 2, 1),
}
QUICK = {
    "digits": (8, 1, 28, 28, 8, 5, 1, 0),
    "mid": (4, 64, 16, 16, 128, 3, 1, 1),
}


def _out(n, k, s, p):
    return (n + 2 * p - k) // s + 1


def _flops(spec):
    n, c, h, w, oc, k, s, p = spec
    return 2.0 * n * oc * _out(h, k, s, p) * _out(w, k, s, p) * c * k * k


def _setup(spec, mode):
    def setup():
        import nnkern as nk
        from nnkern import reference as ref

        n, c, h, w, oc, k, s, p = spec
        oh, ow = _out(h, k, s, p), _out(w, k, s, p)
        rng = np.random.default_rng(0)
        x = rng.standard_normal((n, c, h, w), dtype=np.float32)
        wt = (rng.standard_normal((oc, c, k, k), dtype=np.float32) / np.sqrt(c * k * k)).astype(np.float32)
        b = rng.standard_normal(oc, dtype=np.float32)
        dy = rng.standard_normal((n, oc, oh, ow), dtype=np.float32)
        y = np.empty((n, oc, oh, ow), np.float32)
        dx, dw, db = np.empty_like(x), np.empty_like(wt), np.empty_like(b)
        y_np = np.empty_like(y)
        fwdbwd = mode == "fwd+bwd"

        def nk_run():
            nk.conv2d(x, wt, b, s, p, out=y)
            if fwdbwd:
                nk.conv2d_backward(dy, x, wt, s, p, dx_out=dx, dw_out=dw, db_out=db)

        def np_run():
            ref.conv2d(x, wt, b, s, p, out=y_np)
            if fwdbwd:
                ref.conv2d_backward(dy, x, wt, s, p)

        impls = [Impl("nnkern", nk_run, "out= buffers; path per shape: direct kernels, fused channels-last GEMMs or im2col+GEMM"),
                 Impl("numpy-im2col", np_run, "sliding_window_view columns + matmul; col2im by offsets")]

        # The GEMM roof: the same products (whole batch's columns in one GEMM each) through nk.matmul.
        kk = c * k * k
        ga = rng.standard_normal((oc, kk), dtype=np.float32)
        gcols = rng.standard_normal((kk, n * oh * ow), dtype=np.float32)
        gdy = rng.standard_normal((oc, n * oh * ow), dtype=np.float32)
        gy = np.empty((oc, n * oh * ow), np.float32)
        gdw = np.empty((oc, kk), np.float32)
        gdcol = np.empty((kk, n * oh * ow), np.float32)

        def roof_run():
            nk.matmul(ga, gcols, out=gy)
            if fwdbwd:
                nk.matmul(gdy, gcols, out=gdw, trans_b=True)
                nk.matmul(ga, gdy, out=gdcol, trans_a=True)

        impls.append(Impl("gemm-roof", roof_run, f"nk.matmul only: [{oc}x{kk}] x [{kk}x{n * oh * ow}]"
                                                 + (" + dW + dcol GEMMs" if fwdbwd else "")))

        torch = torch_or_none()
        if torch is not None:
            for fmt in ("nchw", "channels_last"):
                mf = torch.channels_last if fmt == "channels_last" else torch.contiguous_format
                tx = torch.from_numpy(x).contiguous(memory_format=mf)
                tw = torch.from_numpy(wt).contiguous(memory_format=mf)
                tb = torch.from_numpy(b).clone()
                tdy = torch.from_numpy(dy).contiguous(memory_format=mf)
                name = "torch" if fmt == "nchw" else "torch-channels_last"
                if fwdbwd:
                    tx.requires_grad_()
                    tw.requires_grad_()
                    tb.requires_grad_()

                    def t_run(tx=tx, tw=tw, tb=tb, tdy=tdy):
                        out = torch.nn.functional.conv2d(tx, tw, tb, s, p)
                        out.backward(tdy)
                        tx.grad = tw.grad = tb.grad = None
                else:
                    def t_run(tx=tx, tw=tw, tb=tb):
                        with torch.no_grad():
                            torch.nn.functional.conv2d(tx, tw, tb, s, p)
                impls.append(Impl(name, t_run, "F.conv2d (oneDNN)" + (", autograd backward" if fwdbwd else
                                                                     ", no_grad")))
        return impls

    return setup


def cases(quick):
    names = ["nnkern", "numpy-im2col", "gemm-roof"]
    if torch_or_none() is not None:
        names += ["torch", "torch-channels_last"]
    out = []
    for name, spec in (QUICK if quick else WORKLOADS).items():
        n, c, h, w, oc, k, s, p = spec
        shape = f"N{n} C{c} {h}x{w} -> {oc} k{k}" + (f" s{s}" if s > 1 else "") + (f" p{p}" if p else "")
        for mode in ("fwd", "fwd+bwd"):
            work = _flops(spec) * (3 if mode == "fwd+bwd" else 1)
            out.append(Case("conv", name, shape, _setup(spec, mode), work=work, unit="GFLOP/s", mode=mode,
                            impl_names=list(names)))
    return out
