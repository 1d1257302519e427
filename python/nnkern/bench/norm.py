"""Batch norm, dropout, embedding and affine-warp workloads (the norm family).

Rates are GB/s of the minimum memory traffic of the op (each array read or written once):
  batch norm fwd: read x, write y; fwd+bwd: that plus read dy and x, write dx.
  dropout fwd: read x, write y and the 1-byte mask; fwd+bwd: plus read dy and the mask, write dx.
  embedding fwd+bwd: gather M rows (read + write) plus the dense gradient (write V*D, read dy).
  affine warp: read x, write y.
nnkern and the NumPy twins write into preallocated buffers where the API has out=.
"""

import numpy as np

from . import Case, Impl, torch_or_none


# ---------------------------------------------------------------------------------------------
# Batch norm (BatchNorm2d in training mode)


def _bn_setup(shape, with_backward):
    def setup():
        import nnkern as nk
        from nnkern import reference as ref

        rng = np.random.default_rng(0)
        c = shape[1]
        x = rng.standard_normal(shape, dtype=np.float32) * 2 + 1
        dy = rng.standard_normal(shape, dtype=np.float32)
        w = rng.uniform(0.5, 1.5, c).astype(np.float32)
        b = rng.standard_normal(c).astype(np.float32)
        rm, rv = np.zeros(c, np.float32), np.ones(c, np.float32)
        y, dx = np.empty_like(x), np.empty_like(x)
        sm, si, dw, db = (np.empty(c, np.float32) for _ in range(4))

        def run_nk():
            nk.batch_norm(x, rm, rv, w, b, True, 0.1, 1e-5, out=y, save_mean_out=sm, save_invstd_out=si)
            if with_backward:
                nk.batch_norm_backward(dy, x, w, sm, si, True, out=dx, dweight_out=dw, dbias_out=db)

        rm2, rv2 = rm.copy(), rv.copy()

        def run_np():
            _, m, s = ref.batch_norm(x, rm2, rv2, w, b, True, 0.1, 1e-5, out=y)
            if with_backward:
                ref.batch_norm_backward(dy, x, w, m, s, True, out=dx)

        impls = [Impl("nnkern", run_nk, "nk.batch_norm(+_backward), out= buffers"),
                 Impl("numpy", run_np, "NumPy twin (vectorised, in place where possible)")]
        torch = torch_or_none()
        if torch is not None:
            for fmt, name in ((torch.contiguous_format, "torch"), (torch.channels_last, "torch-channels_last")):
                layer = torch.nn.BatchNorm2d(c)
                with torch.no_grad():
                    layer.weight.copy_(torch.from_numpy(w))
                    layer.bias.copy_(torch.from_numpy(b))
                tx = torch.from_numpy(x).contiguous(memory_format=fmt)
                tdy = torch.from_numpy(dy).contiguous(memory_format=fmt)
                if with_backward:
                    txg = tx.clone().requires_grad_(True)

                    def run_t(layer=layer, txg=txg, tdy=tdy):
                        txg.grad = None
                        layer.weight.grad = layer.bias.grad = None
                        layer(txg).backward(tdy)
                else:
                    def run_t(layer=layer, tx=tx):
                        with torch.no_grad():
                            layer(tx)
                impls.append(Impl(name, run_t, "nn.BatchNorm2d train" + (" + autograd backward" if with_backward
                                                                          else " (no_grad)")))
        return impls

    return setup


# ---------------------------------------------------------------------------------------------
# Dropout


def _dropout_setup(n, p, with_backward):
    def setup():
        import nnkern as nk
        from nnkern import reference as ref

        rng = np.random.default_rng(0)
        x = rng.standard_normal(n, dtype=np.float32)
        dy = rng.standard_normal(n, dtype=np.float32)
        y, dx = np.empty_like(x), np.empty_like(x)
        mask = np.empty(n, bool)
        scale = np.float32(1 / (1 - p))

        def run_nk():
            nk.dropout(x, p, 1234, out=y, mask_out=mask)
            if with_backward:
                nk.dropout_backward(dy, mask, p, out=dx)

        def run_twin():
            _, m = ref.dropout(x, p, 1234, out=y)
            if with_backward:
                ref.dropout_backward(dy, m, p, out=dx)

        gen = np.random.default_rng(1)
        u = np.empty(n, np.float32)
        keep = np.empty(n, np.float32)

        def run_np():
            gen.random(out=u, dtype=np.float32)
            np.greater_equal(u, p, out=mask)
            np.multiply(mask, scale, out=keep)
            np.multiply(x, keep, out=y)
            if with_backward:
                np.multiply(dy, keep, out=dx)

        impls = [Impl("nnkern", run_nk, "counter-based mask (keyed 32-bit hash), out= buffers"),
                 Impl("numpy-twin", run_twin, "reproduces nnkern's mask in NumPy uint32 arithmetic"),
                 Impl("numpy-random", run_np, "Generator.random(out=) float32 uniforms, in-place ufuncs")]
        torch = torch_or_none()
        if torch is not None:
            tx = torch.from_numpy(x)
            tdy = torch.from_numpy(dy)
            if with_backward:
                txg = tx.clone().requires_grad_(True)

                def run_t():
                    txg.grad = None
                    torch.nn.functional.dropout(txg, p, training=True).backward(tdy)
            else:
                def run_t():
                    with torch.no_grad():
                        torch.nn.functional.dropout(tx, p, training=True)
            impls.append(Impl("torch", run_t, "F.dropout" + (" + autograd backward" if with_backward else "")))
        return impls

    return setup


# ---------------------------------------------------------------------------------------------
# Embedding


def _embedding_setup(v, d, ishape):
    def setup():
        import nnkern as nk
        from nnkern import reference as ref

        rng = np.random.default_rng(0)
        w = rng.standard_normal((v, d), dtype=np.float32)
        idx = rng.integers(0, v, ishape)
        dy = rng.standard_normal(ishape + (d,), dtype=np.float32)
        y = np.empty(ishape + (d,), np.float32)
        dw = np.empty((v, d), np.float32)

        def run_nk():
            nk.embedding(idx, w, out=y)
            nk.embedding_backward(dy, idx, v, out=dw)

        def run_np():
            ref.embedding(idx, w, out=y)
            ref.embedding_backward(dy, idx, v, out=dw)

        impls = [Impl("nnkern", run_nk, "lookup + dense scatter-add gradient (overwrites out=)"),
                 Impl("numpy", run_np, "np.take(out=) + zero + np.add.at")]
        torch = torch_or_none()
        if torch is not None:
            tw = torch.from_numpy(w.copy()).requires_grad_(True)
            tidx = torch.from_numpy(idx)
            tdy = torch.from_numpy(dy)

            def run_t():
                tw.grad = None
                torch.nn.functional.embedding(tidx, tw).backward(tdy)

            impls.append(Impl("torch", run_t, "F.embedding + autograd backward (dense grad)"))
        return impls

    return setup


# ---------------------------------------------------------------------------------------------
# Affine warp (augmentation)


def _warp_setup(shape):
    def setup():
        import nnkern as nk
        from nnkern import reference as ref

        rng = np.random.default_rng(0)
        n, c, h, w = shape
        x = rng.random(shape, dtype=np.float32)
        ang = rng.uniform(-0.3, 0.3, n)
        s = rng.uniform(0.9, 1.1, n)
        theta = np.zeros((n, 2, 3), np.float32)
        theta[:, 0, 0], theta[:, 0, 1] = np.cos(ang) * s, -np.sin(ang) * s
        theta[:, 1, 0], theta[:, 1, 1] = np.sin(ang) * s, np.cos(ang) * s
        theta[:, :, 2] = rng.uniform(-0.1, 0.1, (n, 2))
        mats = ref.theta_to_pixel(theta, (h, w), (h, w))
        y = np.empty_like(x)
        impls = [Impl("nnkern", lambda: nk.affine_warp(x, mats, out=y), "bilinear, fill 0, out= buffer"),
                 Impl("numpy", lambda: ref.affine_warp(x, mats, out=y), "NumPy twin (vectorised gathers)")]
        torch = torch_or_none()
        if torch is not None:
            F = torch.nn.functional
            tx, tt = torch.from_numpy(x), torch.from_numpy(theta)

            def run_t():
                with torch.no_grad():
                    F.grid_sample(tx, F.affine_grid(tt, tuple(shape), align_corners=False), mode="bilinear",
                                  padding_mode="zeros", align_corners=False)

            impls.append(Impl("torch", run_t, "F.affine_grid + F.grid_sample (no_grad)"))
        return impls

    return setup


def cases(quick):
    torch = torch_or_none()
    tnames = (lambda *names: list(names) if torch is not None else [])
    bn_shapes = [(8, 16, 16, 16)] if quick else [(32, 64, 32, 32), (64, 128, 16, 16)]
    out = []
    for shape in bn_shapes:
        n = int(np.prod(shape))
        label = "N{} C{} {}x{}".format(*shape)
        for mode, work, bwd in (("fwd", 8.0 * n, False), ("fwd+bwd", 20.0 * n, True)):
            out.append(Case("norm", "batchnorm2d", label, _bn_setup(shape, bwd), work=work, mode=mode,
                            impl_names=["nnkern", "numpy"] + tnames("torch", "torch-channels_last")))
    n = 100_000 if quick else 10_000_000
    for mode, work, bwd in (("fwd", 9.0 * n, False), ("fwd+bwd", 18.0 * n, True)):
        out.append(Case("norm", "dropout", f"{n} elems p=0.5", _dropout_setup(n, 0.5, bwd), work=work, mode=mode,
                        impl_names=["nnkern", "numpy-twin", "numpy-random"] + tnames("torch")))
    v, d, ishape = (1000, 64, (16, 35)) if quick else (10_000, 256, (64, 35))
    m = int(np.prod(ishape))
    out.append(Case("norm", "embedding", f"V{v} D{d} idx {ishape[0]}x{ishape[1]}", _embedding_setup(v, d, ishape),
                    work=4.0 * d * (3 * m + v), mode="fwd+bwd", impl_names=["nnkern", "numpy"] + tnames("torch")))
    warp_shapes = [(32, 1, 28, 28)] if quick else [(256, 1, 28, 28), (64, 3, 32, 32)]
    for shape in warp_shapes:
        out.append(Case("norm", "affine_warp", "N{} C{} {}x{}".format(*shape), _warp_setup(shape),
                        work=8.0 * int(np.prod(shape)), mode="fwd", impl_names=["nnkern", "numpy"] + tnames("torch")))
    return out
