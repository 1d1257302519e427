"""Optimizer-step workloads (memory-bound): Adam, AdamW and SGD with momentum on 1M and 10M float32
parameters, Adam on 10M parameters held as 50 tensors (the multi-tensor path), and the memory
bandwidth limits measured in the same run (copy, in-place add).

Work is bytes moved per step at the minimum: Adam/AdamW read p, g, m, v and write p, m, v
(28 B/param); SGD with momentum reads p, g, buf and writes p, buf (20 B/param). Every
implementation runs on its own warm, preallocated buffers:

  nnkern         nk.adam_step / adamw_step / sgd_step (one fused pass; *_multi for the 50 tensors)
  numpy-inplace  nnkern.reference twin: out= ufuncs and one preallocated scratch array
  numpy-naive    textbook expressions allocating temporaries every step
  torch-fused    torch.optim.<Opt>(fused=True): torch's single-pass CPU kernel
  torch-foreach  torch.optim.<Opt>(foreach=True): multi-tensor, one op per pass
  torch-single   torch.optim.<Opt>(foreach=False): the single-tensor path
"""

import numpy as np

from . import Case, Impl, torch_or_none

LR, BETAS, EPS, MOMENTUM = 1e-3, (0.9, 0.999), 1e-8, 0.9

BYTES_PER_PARAM = {"adam": 28, "adamw": 28, "sgd": 20}


class _Counter:
    """The 1-based step number each call of a functional step takes."""

    def __init__(self):
        self.t = 0

    def __call__(self):
        self.t += 1
        return self.t


def _arrays(sizes, seed=0):
    rng = np.random.default_rng(seed)
    ps = [rng.standard_normal(n, dtype=np.float32) for n in sizes]
    gs = [rng.standard_normal(n, dtype=np.float32) for n in sizes]
    return ps, gs


def _numpy_naive_adam(p, g, m, v, t, decoupled_wd=0.0):
    b1, b2 = BETAS
    if decoupled_wd:
        p *= 1 - LR * decoupled_wd
    m[:] = b1 * m + (1 - b1) * g
    v[:] = b2 * v + (1 - b2) * g * g
    m_hat = m / (1 - b1**t)
    v_hat = v / (1 - b2**t)
    p -= LR * m_hat / (np.sqrt(v_hat) + EPS)


def _numpy_naive_sgd(p, g, buf):
    buf[:] = MOMENTUM * buf + g
    p -= LR * buf


def _setup(opt, sizes):
    def setup():
        import nnkern as nk
        from nnkern import reference as ref

        impls = []
        multi = len(sizes) > 1
        wd = 1e-2 if opt == "adamw" else 0.0

        # nnkern
        ps, gs = _arrays(sizes)
        if opt == "sgd":
            bufs = [np.zeros_like(p) for p in ps]
            if multi:
                fn = lambda: nk.sgd_step_multi(ps, gs, bufs, 2, lr=LR, momentum=MOMENTUM)  # noqa: E731
            else:
                fn = lambda: nk.sgd_step(ps[0], gs[0], bufs[0], 2, lr=LR, momentum=MOMENTUM)  # noqa: E731
        else:
            ms = [np.zeros_like(p) for p in ps]
            vs = [np.zeros_like(p) for p in ps]
            step = _Counter()
            f = {("adam", False): nk.adam_step, ("adam", True): nk.adam_step_multi,
                 ("adamw", False): nk.adamw_step, ("adamw", True): nk.adamw_step_multi}[opt, multi]
            if multi:
                fn = lambda: f(ps, gs, ms, vs, step(), lr=LR, betas=BETAS, eps=EPS)  # noqa: E731
            else:
                fn = lambda: f(ps[0], gs[0], ms[0], vs[0], step(), lr=LR, betas=BETAS, eps=EPS)  # noqa: E731
        impls.append(Impl("nnkern", fn, "fused single pass" + (", multi-tensor call" if multi else "")))

        # numpy twin (in place, one scratch array) and the textbook version
        ps2, gs2 = _arrays(sizes)
        scratch = np.empty(max(sizes), np.float32)
        if opt == "sgd":
            bufs2 = [np.zeros_like(p) for p in ps2]

            def twin():
                for p, g, b in zip(ps2, gs2, bufs2):
                    ref.sgd_step(p, g, b, 2, lr=LR, momentum=MOMENTUM, scratch=scratch[:p.size])
        else:
            ms2 = [np.zeros_like(p) for p in ps2]
            vs2 = [np.zeros_like(p) for p in ps2]
            step2 = _Counter()
            rf = ref.adamw_step if opt == "adamw" else ref.adam_step

            def twin():
                t = step2()
                for p, g, m, v in zip(ps2, gs2, ms2, vs2):
                    rf(p, g, m, v, t, lr=LR, betas=BETAS, eps=EPS, scratch=scratch[:p.size])
        impls.append(Impl("numpy-inplace", twin, "nnkern.reference: out= ufuncs, 1 scratch array"))

        ps3, gs3 = _arrays(sizes)
        if opt == "sgd":
            bufs3 = [np.zeros_like(p) for p in ps3]

            def naive():
                for p, g, b in zip(ps3, gs3, bufs3):
                    _numpy_naive_sgd(p, g, b)
        else:
            ms3 = [np.zeros_like(p) for p in ps3]
            vs3 = [np.zeros_like(p) for p in ps3]
            step3 = _Counter()

            def naive():
                t = step3()
                for p, g, m, v in zip(ps3, gs3, ms3, vs3):
                    _numpy_naive_adam(p, g, m, v, t, wd)
        impls.append(Impl("numpy-naive", naive, "textbook expressions, fresh temporaries"))

        torch = torch_or_none()
        if torch is not None:
            cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}[opt]
            kw = dict(lr=LR, momentum=MOMENTUM) if opt == "sgd" else dict(lr=LR, betas=BETAS, eps=EPS)
            for name, mode in (("torch-fused", dict(fused=True)), ("torch-foreach", dict(foreach=True)),
                               ("torch-single", dict(foreach=False))):
                pt, gt = _arrays(sizes)
                tensors = [torch.from_numpy(p).requires_grad_() for p in pt]
                for t, g in zip(tensors, gt):
                    t.grad = torch.from_numpy(g)
                topt = cls(tensors, **kw, **mode)
                impls.append(Impl(name, topt.step, f"torch.optim.{cls.__name__}({next(iter(mode))}=True)"
                                  if name != "torch-single" else f"torch.optim.{cls.__name__}(foreach=False)"))
        return impls

    return setup


def _bandwidth_setup(kind, n):
    def setup():
        a = np.ones(n, np.float32)
        b = np.full(n, 2.0, np.float32)
        impls = []
        if kind == "copy":
            impls.append(Impl("numpy-copy", lambda: np.copyto(a, b), "np.copyto (1 thread; +50% write-allocate traffic)"))
        else:
            impls.append(Impl("numpy-add-inplace", lambda: np.add(a, b, out=a), "a += b (1 thread, no write-allocate)"))
            torch = torch_or_none()
            if torch is not None:
                ta, tb = torch.ones(n), torch.full((n,), 2.0)
                impls.append(Impl("torch-add-inplace", lambda: ta.add_(tb, alpha=1e-3), "a += s*b (torch threads)"))
        return impls

    return setup


def cases(quick):
    torch_names = ["torch-fused", "torch-foreach", "torch-single"] if torch_or_none() is not None else []
    names = ["nnkern", "numpy-inplace", "numpy-naive"] + torch_names
    if quick:
        workloads = [("adam", "1M", [1_000_000])]
    else:
        workloads = [
            ("adam", "1M", [1_000_000]), ("adam", "10M", [10_000_000]),
            ("adamw", "1M", [1_000_000]), ("adamw", "10M", [10_000_000]),
            ("sgd", "1M", [1_000_000]), ("sgd", "10M", [10_000_000]),
            ("adam", "10Mx50", [200_000] * 50),
        ]
    out = []
    for opt, label, sizes in workloads:
        total = sum(sizes)
        title = "sgd-momentum" if opt == "sgd" else opt
        shape = f"{total / 1e6:g}M float32" + (f" as {len(sizes)} tensors" if len(sizes) > 1 else "")
        out.append(Case("optim", f"{title}/{label}", shape, _setup(opt, sizes),
                        work=float(BYTES_PER_PARAM[opt] * total), mode="step", impl_names=names))
    if not quick:
        n = 20_000_000  # two 80 MB arrays: the same 160 MB read per step as Adam's p, g, m, v at 10M
        out.append(Case("optim", "bandwidth/copy", "20M float32", _bandwidth_setup("copy", n), work=8.0 * n,
                        mode="op", impl_names=["numpy-copy"]))
        out.append(Case("optim", "bandwidth/add-inplace", "20M float32", _bandwidth_setup("add", n), work=12.0 * n,
                        mode="op", impl_names=["numpy-add-inplace"] + (["torch-add-inplace"] if torch_names else [])))
    return out
