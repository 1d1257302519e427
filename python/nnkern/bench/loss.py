"""Loss workloads: softmax cross-entropy forward+backward on (512, 1000) and (8192, 10) logits
(and its forward alone), BCE with logits and MSE forward+backward on 1M and 10M float32 elements.

nnkern runs the fused forward+backward kernel into a preallocated gradient; the NumPy twin its
forward_backward; torch its autograd path (the loss, then torch.autograd.grad for the gradient
of the input: what a training step runs). GB/s counts the minimum traffic: CE reads the logits and
writes their gradient (8 B/logit; the forward alone 4 B); BCE and MSE read prediction and target
and write the gradient (12 B/element).
"""

import numpy as np

from . import Case, Impl, torch_or_none


def _ce_setup(shape, mode):
    def setup():
        import nnkern as nk
        from nnkern import reference as ref

        rng = np.random.default_rng(0)
        x = rng.standard_normal(shape, dtype=np.float32)
        t = rng.integers(0, shape[1], shape[0])
        g_nk = np.empty_like(x)
        g_np = np.empty_like(x)
        if mode == "fwd":
            impls = [Impl("nnkern", lambda: nk.cross_entropy(x, t), "loss only"),
                     Impl("numpy", lambda: ref.cross_entropy(x, t), "nnkern.reference twin")]
        else:
            impls = [Impl("nnkern", lambda: nk.cross_entropy_forward_backward(x, t, out=g_nk), "fused, out="),
                     Impl("numpy", lambda: ref.cross_entropy_forward_backward(x, t, out=g_np), "nnkern.reference twin")]
        torch = torch_or_none()
        if torch is not None:
            F = torch.nn.functional
            tt = torch.from_numpy(t)
            if mode == "fwd":
                tx = torch.from_numpy(x)

                def run():
                    with torch.no_grad():
                        return F.cross_entropy(tx, tt)

                impls.append(Impl("torch", run, "F.cross_entropy under no_grad"))
            else:
                tx = torch.from_numpy(x).requires_grad_(True)

                def run():
                    loss = F.cross_entropy(tx, tt)
                    return torch.autograd.grad(loss, tx)

                impls.append(Impl("torch", run, "F.cross_entropy + autograd.grad"))
        return impls

    return setup


def _pointwise_setup(kind, n):
    def setup():
        import nnkern as nk
        from nnkern import reference as ref

        rng = np.random.default_rng(0)
        x = rng.standard_normal(n, dtype=np.float32)
        t = (rng.random(n) > 0.5).astype(np.float32) if kind == "bce" else rng.standard_normal(n, dtype=np.float32)
        g_nk = np.empty_like(x)
        g_np = np.empty_like(x)
        if kind == "bce":
            impls = [Impl("nnkern", lambda: nk.binary_cross_entropy_with_logits_forward_backward(x, t, out=g_nk),
                          "fused, out="),
                     Impl("numpy", lambda: ref.binary_cross_entropy_with_logits_forward_backward(x, t, out=g_np),
                          "nnkern.reference twin")]
        else:
            impls = [Impl("nnkern", lambda: nk.mse_loss_forward_backward(x, t, out=g_nk), "fused, out="),
                     Impl("numpy", lambda: ref.mse_loss_forward_backward(x, t, out=g_np), "nnkern.reference twin")]
        torch = torch_or_none()
        if torch is not None:
            F = torch.nn.functional
            tx = torch.from_numpy(x).requires_grad_(True)
            tt = torch.from_numpy(t)
            f = F.binary_cross_entropy_with_logits if kind == "bce" else F.mse_loss

            def run():
                return torch.autograd.grad(f(tx, tt), tx)

            impls.append(Impl("torch", run, "functional loss + autograd.grad"))
        return impls

    return setup


def cases(quick):
    names = ["nnkern", "numpy"] + (["torch"] if torch_or_none() is not None else [])
    out = []
    for shape in [(512, 1000)] if quick else [(512, 1000), (8192, 10)]:
        elems = float(np.prod(shape))
        out.append(Case("loss", "cross_entropy", f"{shape[0]}x{shape[1]}", _ce_setup(shape, "fwd+bwd"), work=8 * elems,
                        mode="fwd+bwd", impl_names=names))
        out.append(Case("loss", "cross_entropy", f"{shape[0]}x{shape[1]}", _ce_setup(shape, "fwd"), work=4 * elems,
                        mode="fwd", impl_names=names))
    for kind, name in (("bce", "bce_with_logits"), ("mse", "mse")):
        for n in [1 << 20] if quick else [1 << 20, 10 << 20]:
            out.append(Case("loss", name, f"{n >> 20}M", _pointwise_setup(kind, n), work=12.0 * n, mode="fwd+bwd",
                            impl_names=names))
    return out
