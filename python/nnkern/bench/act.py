"""Activation workloads: every activation forward and forward+backward on 1M and 10M float32
elements, softmax/log_softmax on (4096, 1000) and (65536, 10).

All implementations write into preallocated outputs. torch runs its own kernels directly (the
functional forward with out=, the aten backward op with its out= overload), so each side is
timed kernel for kernel without autograd bookkeeping. GB/s counts the minimum traffic: forward
reads x and writes y (8 B/element); forward+backward adds reading dy and the saved array and
writing dx (20 B/element in all).
"""

import numpy as np

from . import Case, Impl, torch_or_none

# name -> (what backward saves: "y" or "x", extra keyword arguments)
ELEMENTWISE = {
    "sigmoid": ("y", {}),
    "tanh": ("y", {}),
    "relu": ("y", {}),
    "leaky_relu": ("x", {"negative_slope": 0.01}),
    "prelu": ("x", {}),
    "softplus": ("x", {"beta": 1.0, "threshold": 20.0}),
    "silu": ("x", {}),
}


def _shape(name, n):
    # prelu: an NCHW activation map with 64 channels (weight (64,)); the others: flat
    return (n // (64 * 1024), 64, 32, 32) if name == "prelu" else (n,)


def _torch_ops(torch, name, tx, ty, tdy, tdx, tw):
    """(forward, forward+backward) for torch's kernels on preallocated tensors."""
    a = torch.ops.aten
    if name == "sigmoid":
        fwd = lambda: torch.sigmoid(tx, out=ty)  # noqa: E731
        bwd = lambda: a.sigmoid_backward.grad_input(tdy, ty, grad_input=tdx)  # noqa: E731
    elif name == "tanh":
        fwd = lambda: torch.tanh(tx, out=ty)  # noqa: E731
        bwd = lambda: a.tanh_backward.grad_input(tdy, ty, grad_input=tdx)  # noqa: E731
    elif name == "relu":
        fwd = lambda: torch.clamp_min(tx, 0, out=ty)  # noqa: E731
        bwd = lambda: a.threshold_backward.grad_input(tdy, ty, 0, grad_input=tdx)  # noqa: E731
    elif name == "leaky_relu":
        fwd = lambda: a.leaky_relu.out(tx, 0.01, out=ty)  # noqa: E731
        bwd = lambda: a.leaky_relu_backward.grad_input(tdy, tx, 0.01, False, grad_input=tdx)  # noqa: E731
    elif name == "softplus":
        fwd = lambda: a.softplus.out(tx, 1.0, 20.0, out=ty)  # noqa: E731
        bwd = lambda: a.softplus_backward.grad_input(tdy, tx, 1.0, 20.0, grad_input=tdx)  # noqa: E731
    elif name == "silu":
        fwd = lambda: a.silu.out(tx, out=ty)  # noqa: E731
        bwd = lambda: a.silu_backward.grad_input(tdy, tx, grad_input=tdx)  # noqa: E731
    elif name == "prelu":  # no out= overloads: fresh outputs
        fwd = lambda: a._prelu_kernel(tx, tw.view(-1, 1, 1))  # noqa: E731
        bwd = lambda: a._prelu_kernel_backward(tdy, tx, tw.view(-1, 1, 1))  # noqa: E731
    else:
        raise AssertionError(name)

    def both():
        fwd()
        bwd()

    return fwd, both


def _elementwise_setup(name, n, mode):
    def setup():
        import nnkern as nk
        from nnkern import reference as ref

        saved, kw = ELEMENTWISE[name]
        shape = _shape(name, n)
        rng = np.random.default_rng(0)
        x = rng.standard_normal(shape, dtype=np.float32)
        dy = rng.standard_normal(shape, dtype=np.float32)
        w = np.full(64, 0.25, np.float32)
        y_nk, dx_nk = np.empty_like(x), np.empty_like(x)
        y_np, dx_np = np.empty_like(x), np.empty_like(x)
        f, b = getattr(nk, name), getattr(nk, name + "_backward")
        rf, rb = getattr(ref, name), getattr(ref, name + "_backward")
        if name == "prelu":
            nk_fwd = lambda: nk.prelu(x, w, out=y_nk)  # noqa: E731
            nk_bwd = lambda: nk.prelu_backward(dy, x, w, out=dx_nk)  # noqa: E731
            np_fwd = lambda: ref.prelu(x, w, out=y_np)  # noqa: E731
            np_bwd = lambda: ref.prelu_backward(dy, x, w, out=dx_np)  # noqa: E731
        else:
            s_nk = y_nk if saved == "y" else x
            s_np = y_np if saved == "y" else x
            nk_fwd = lambda: f(x, out=y_nk, **kw)  # noqa: E731
            nk_bwd = lambda: b(dy, s_nk, out=dx_nk, **kw)  # noqa: E731
            np_fwd = lambda: rf(x, out=y_np, **kw)  # noqa: E731
            np_bwd = lambda: rb(dy, s_np, out=dx_np, **kw)  # noqa: E731

        def pick(fwd, bwd):
            if mode == "fwd":
                return fwd

            def both():
                fwd()
                bwd()

            return both

        impls = [Impl("nnkern", pick(nk_fwd, nk_bwd), "out= buffers"),
                 Impl("numpy", pick(np_fwd, np_bwd), "nnkern.reference twin, out= buffers")]
        torch = torch_or_none()
        if torch is not None:
            tx, tdy, tw = torch.from_numpy(x), torch.from_numpy(dy), torch.from_numpy(w)
            ty, tdx = torch.empty(shape), torch.empty(shape)
            fwd, both = _torch_ops(torch, name, tx, ty, tdy, tdx, tw)
            note = "aten forward/backward kernels" + (
                " (prelu: fresh outputs, no out=)" if name == "prelu" else ", out=")
            impls.append(Impl("torch", fwd if mode == "fwd" else both, note))
        return impls

    return setup


def _softmax_setup(name, shape, mode):
    def setup():
        import nnkern as nk
        from nnkern import reference as ref

        rng = np.random.default_rng(0)
        x = rng.standard_normal(shape, dtype=np.float32)
        dy = rng.standard_normal(shape, dtype=np.float32)
        y_nk, dx_nk, y_np, dx_np = (np.empty_like(x) for _ in range(4))
        f, b = getattr(nk, name), getattr(nk, name + "_backward")
        rf, rb = getattr(ref, name), getattr(ref, name + "_backward")

        def nk_run():
            f(x, -1, out=y_nk)
            if mode != "fwd":
                b(dy, y_nk, -1, out=dx_nk)

        def np_run():
            rf(x, -1, out=y_np)
            if mode != "fwd":
                rb(dy, y_np, -1, out=dx_np)

        impls = [Impl("nnkern", nk_run, "out= buffers"), Impl("numpy", np_run, "nnkern.reference twin")]
        torch = torch_or_none()
        if torch is not None:
            a = torch.ops.aten
            tx, tdy = torch.from_numpy(x), torch.from_numpy(dy)
            ty, tdx = torch.empty(shape), torch.empty(shape)
            tf = a._softmax.out if name == "softmax" else a._log_softmax.out
            tb = a._softmax_backward_data.out if name == "softmax" else a._log_softmax_backward_data.out

            def torch_run():
                tf(tx, -1, False, out=ty)
                if mode != "fwd":
                    if name == "softmax":
                        tb(tdy, ty, -1, torch.float32, grad_input=tdx)
                    else:
                        tb(tdy, ty, -1, torch.float32, out=tdx)

            impls.append(Impl("torch", torch_run, "aten _softmax/_log_softmax (+ backward_data), out="))
        return impls

    return setup


def cases(quick):
    names = ["nnkern", "numpy"] + (["torch"] if torch_or_none() is not None else [])
    sizes = [1 << 20] if quick else [1 << 20, 10 << 20]
    out = []
    for name in ELEMENTWISE:
        for n in sizes:
            for mode, per in (("fwd", 8), ("fwd+bwd", 20)):
                shape = _shape(name, n)
                label = "x".join(map(str, shape)) if len(shape) > 1 else f"{n // (1 << 20)}M"
                out.append(Case("act", name, label, _elementwise_setup(name, n, mode),
                                work=per * float(np.prod(shape)), mode=mode, impl_names=names))
    shapes = [(4096, 1000)] if quick else [(4096, 1000), (65536, 10)]
    for name in ("softmax", "log_softmax"):
        for shape in shapes:
            for mode, per in (("fwd", 8), ("fwd+bwd", 20)):
                out.append(Case("act", name, f"{shape[0]}x{shape[1]} dim=-1", _softmax_setup(name, shape, mode),
                                work=per * float(np.prod(shape)), mode=mode, impl_names=names))
    return out
