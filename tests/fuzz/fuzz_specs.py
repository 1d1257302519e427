"""The fuzz registry: for every public kernel, how to draw a random *valid* call.

``SPECS[name](g)`` returns a ``Case`` (fuzz_roles) whose arrays are wrapped in their contract
role; ``g`` is a ``Gen`` (a seeded numpy Generator plus the call's float dtype). The same
``name`` is looked up in ``nnkern`` and ``nnkern.reference`` (the NumPy twin). The mutators in
fuzz_engine turn the valid call into invalid ones using the roles.

``EXCLUDED`` lists public names that have no spec, with the reason (test_fuzz checks that every
name in an ops module's ``__all__`` is either here or excluded).
"""

import numpy as np

from fuzz_roles import Buf, Case, Fwd, Idx, In, Mask

# Open findings (FUZZ.md): (kernel, status) pairs the CI test tolerates *and reports*; every entry
# has a repro in FUZZ.md. Remove an entry when the bug is fixed (the test then guards it).
KNOWN_FINDINGS = {
    # NaN/Inf results that differ from the twin, triaged against torch 2.13 (FUZZ.md, "NaN/Inf"):
    # the twin matches torch; the kernel keeps a cheaper evaluation that propagates NaN/Inf differently.
    # (a) h0=None in the cells: the kernel skips the zero-state GEMM, so NaN/Inf in w_hh (forward) or
    #     in the gate gradients (dw_hh in the backward) do not turn into 0 * inf = NaN.
    **{(k, "nan_mismatch"): "cell with h0=None skips the zero-state GEMM (0 * inf)" for k in (
        "lstm_cell", "lstm_cell_backward", "gru_cell", "gru_cell_backward", "rnn_cell", "rnn_cell_backward")},
    # (b) LSTM: the four gate activations share one division (inverse4), so a non-finite gate
    #     pre-activation makes the unit's other gates, and c, NaN (torch keeps c finite when only o is NaN).
    ("lstm_sequence", "nan_mismatch"): "LSTM gates share one division (inverse4)",
    # (c) cross-entropy with label smoothing and an infinite class weight: the smoothing term is formed
    #     as wsum * lse - sum(w z), inf - inf = NaN where torch sums w (lse - z) = inf.
    **{(k, "nan_mismatch"): "label smoothing with an infinite class weight: inf - inf" for k in (
        "cross_entropy", "cross_entropy_backward", "cross_entropy_forward_backward")},
    # (d) affine_warp (bilinear) does not read corners with a zero weight, so an exact sample next to a
    #     NaN/Inf pixel copies its pixel (flips and integer shifts stay exact); torch's grid_sample and
    #     the twin give 0 * NaN = NaN there.
    ("affine_warp", "nan_mismatch"): "zero-weight bilinear corners are not read (exact copies next to NaN)",
}

# Public kernels deliberately without a fuzz spec (justified). Empty: everything is fuzzed.
EXCLUDED = {}

# Exceptions a kernel documents besides TypeError/ValueError, raised for valid-looking input.
EXTRA_EXCEPTIONS = {
    # torch's error_if_nonfinite=True raises RuntimeError on a NaN/Inf total norm (documented).
    "clip_grad_norm": (RuntimeError,),
}


class Gen:
    def __init__(self, rng, dtype):
        self.rng = rng
        self.dt = np.dtype(dtype)

    def dim(self, lo=1, hi=6, zero=0.08):
        """A size: mostly in [lo, hi], sometimes 0 (empty arrays are valid)."""
        if lo <= 0:
            return int(self.rng.integers(0, hi + 1))
        if self.rng.random() < zero:
            return 0
        return int(self.rng.integers(lo, hi + 1))

    def arr(self, shape, lo=None, hi=None):
        if lo is not None:
            return np.asarray(self.rng.uniform(lo, hi, size=shape)).astype(self.dt)
        return np.asarray(self.rng.standard_normal(shape)).astype(self.dt)

    def pos(self, shape):
        return np.asarray(self.rng.uniform(0.1, 2.0, size=shape)).astype(self.dt)

    def choice(self, seq):
        return seq[int(self.rng.integers(len(seq)))]

    def coin(self, p=0.5):
        return bool(self.rng.random() < p)

    def out(self, shape, p=0.3):
        """An out= buffer (NaN-filled, so an unwritten element shows) or None."""
        if self.coin(p):
            return Buf(np.full(shape, np.nan, dtype=self.dt), optional=True)
        return None


SPECS = {}


def spec(*names):
    def deco(f):
        for n in names:
            SPECS[n] = (lambda g, n=n: f(g, n))
        return f
    return deco


# ---------------------------------------------------------------------------------------------
# Activations: any shape, out= may be the input


def _any_shape(g, max_ndim=4):
    nd = int(g.rng.integers(0, max_ndim + 1))
    return tuple(g.dim(1, 5) for _ in range(nd))


@spec("sigmoid", "tanh", "relu", "silu")
def _act_fwd(g, name):
    s = _any_shape(g)
    x = In(g.arr(s) * 3, strict_shape=False, strict_ndim=False)
    return Case([x], dict(out=g.out(s)))


@spec("sigmoid_backward", "tanh_backward", "relu_backward", "silu_backward")
def _act_bwd(g, name):
    s = _any_shape(g)
    second = g.arr(s, 0.01, 0.99) if name in ("sigmoid_backward",) else g.arr(s) * 2
    if name == "tanh_backward":
        second = g.arr(s, -0.99, 0.99)
    return Case([In(g.arr(s), strict_ndim=bool(s)), In(second, strict_ndim=bool(s))], dict(out=g.out(s)))


@spec("leaky_relu")
def _leaky(g, name):
    s = _any_shape(g)
    return Case([In(g.arr(s) * 3, strict_shape=False, strict_ndim=False), float(g.rng.uniform(-1, 1))],
                dict(out=g.out(s)))


@spec("leaky_relu_backward")
def _leaky_b(g, name):
    s = _any_shape(g)
    return Case([In(g.arr(s), strict_ndim=bool(s)), In(g.arr(s), strict_ndim=bool(s)), float(g.rng.uniform(-1, 1))],
                dict(out=g.out(s)))


def _prelu_shapes(g):
    nd = int(g.rng.integers(1, 5))
    s = tuple(g.dim(1, 5) for _ in range(nd))
    c = s[1] if nd >= 2 else 1
    wlen = c if (nd >= 2 and g.coin()) else 1
    return s, wlen


@spec("prelu")
def _prelu(g, name):
    s, wl = _prelu_shapes(g)
    return Case([In(g.arr(s), strict_shape=False, strict_ndim=False), In(g.arr((wl,)), strict_shape=wl not in (0, 1))],
                dict(out=g.out(s)))


@spec("prelu_backward")
def _prelu_b(g, name):
    s, wl = _prelu_shapes(g)
    return Case([In(g.arr(s)), In(g.arr(s), strict_ndim=False), In(g.arr((wl,)), strict_shape=wl != 1)],
                dict(out=g.out(s)))


@spec("softplus")
def _softplus(g, name):
    s = _any_shape(g)
    return Case([In(g.arr(s) * 5, strict_shape=False, strict_ndim=False), float(g.rng.uniform(0.2, 3)),
                 float(g.rng.uniform(1, 20))], dict(out=g.out(s)))


@spec("softplus_backward")
def _softplus_b(g, name):
    s = _any_shape(g)
    return Case([In(g.arr(s), strict_ndim=bool(s)), In(g.arr(s) * 5, strict_ndim=bool(s)),
                 float(g.rng.uniform(0.2, 3)), float(g.rng.uniform(1, 20))], dict(out=g.out(s)))


@spec("softmax", "log_softmax")
def _softmax(g, name):
    nd = int(g.rng.integers(1, 5))
    s = tuple(g.dim(1, 6) for _ in range(nd))
    dim = int(g.rng.integers(-nd, nd))
    return Case([In(g.arr(s) * 3, strict_shape=False, strict_ndim=False), dim], dict(out=g.out(s)))


@spec("softmax_backward", "log_softmax_backward")
def _softmax_b(g, name):
    nd = int(g.rng.integers(1, 5))
    s = tuple(g.dim(1, 6) for _ in range(nd))
    dim = int(g.rng.integers(-nd, nd))
    x = g.arr(s)
    e = np.exp(x - x.max(axis=dim, keepdims=True)) if x.size else x
    y = e / e.sum(axis=dim, keepdims=True) if x.size else x
    if name == "log_softmax_backward":
        y = np.log(y) if y.size else y
    return Case([In(g.arr(s)), In(y.astype(g.dt)), dim], dict(out=g.out(s)))


# ---------------------------------------------------------------------------------------------
# GEMM


@spec("matmul")
def _matmul(g, name):
    m, k, n = g.dim(1, 9), g.dim(1, 9), g.dim(1, 9)
    ta, tb = g.coin(), g.coin()
    a = g.arr((k, m) if ta else (m, k))
    b = g.arr((n, k) if tb else (k, n))
    beta = float(g.choice([0.0, 0.0, 1.0, -0.5]))
    out = Buf(g.arr((m, n))) if (beta != 0.0 or g.coin(0.3)) else None
    strict = out is not None  # without out=, M and N follow a and b (K must still agree)
    return Case([In(a, strict_shape=strict), In(b, strict_shape=strict), out, ta, tb], dict(alpha=float(g.rng.uniform(-2, 2)), beta=beta))


# ---------------------------------------------------------------------------------------------
# Convolution


def _conv_geometry(g, nd):
    n, gr = g.dim(1, 3), g.choice([1, 1, 1, 2, 3])
    cin, cout = gr * g.dim(1, 3), gr * g.dim(1, 3)
    k = tuple(g.dim(1, 3, zero=0) for _ in range(nd))
    s = tuple(int(g.rng.integers(1, 3)) for _ in range(nd))
    d = tuple(int(g.rng.integers(1, 3)) for _ in range(nd))
    p = tuple(int(g.rng.integers(0, 3)) for _ in range(nd))
    size = tuple(max(d[i] * (k[i] - 1) + 1 - 2 * p[i], 1) + g.dim(0, 5) for i in range(nd))
    osz = tuple((size[i] + 2 * p[i] - d[i] * (k[i] - 1) - 1) // s[i] + 1 for i in range(nd))
    if g.coin(0.15) and nd == 2:
        s, p = (1, 1), "same"
        osz = size
    elif g.coin(0.1):
        p = "valid"
        size = tuple(max(size[i], d[i] * (k[i] - 1) + 1) for i in range(nd))
        osz = tuple((size[i] - d[i] * (k[i] - 1) - 1) // s[i] + 1 for i in range(nd))
    return n, gr, cin, cout, k, s, d, p, size, osz


@spec("conv2d", "conv1d")
def _conv(g, name):
    nd = 2 if name == "conv2d" else 1
    n, gr, cin, cout, k, s, d, p, size, osz = _conv_geometry(g, nd)
    x = In(g.arr((n, cin) + size), strict_shape=False)
    w = In(g.arr((cout, cin // gr) + k), strict_shape=False)
    b = In(g.arr((cout,)), optional=True) if g.coin() else None
    return Case([x, w, b, s, p, d, gr], dict(out=g.out((n, cout) + osz)), scale=4)


@spec("conv2d_backward", "conv1d_backward")
def _conv_b(g, name):
    nd = 2 if name == "conv2d_backward" else 1
    n, gr, cin, cout, k, s, d, p, size, osz = _conv_geometry(g, nd)
    dy = In(g.arr((n, cout) + osz))
    x = In(g.arr((n, cin) + size), strict_shape=False)
    w = In(g.arr((cout, cin // gr) + k), strict_shape=False)
    need = [g.coin(0.8), g.coin(0.8), g.coin(0.8)]
    acc = g.coin(0.4) and g.coin(0.5)
    kw = dict(accumulate=acc)
    if acc or g.coin(0.4):
        kw["dx_out"] = Buf(g.arr((n, cin) + size), optional=True) if need[0] else None
        kw["dw_out"] = Buf(g.arr((cout, cin // gr) + k), optional=not acc) if need[1] else None
        kw["db_out"] = Buf(g.arr((cout,)), optional=not acc) if need[2] else None
    return Case([dy, x, w, s, p, d, gr] + need, kw, scale=4)


def _im2col_geometry(g):
    k = (g.dim(1, 3, zero=0), g.dim(1, 3, zero=0))
    s = (int(g.rng.integers(1, 3)), int(g.rng.integers(1, 3)))
    d = (int(g.rng.integers(1, 3)), int(g.rng.integers(1, 3)))
    p = (int(g.rng.integers(0, 2)), int(g.rng.integers(0, 2)))
    size = tuple(max(d[i] * (k[i] - 1) + 1 - 2 * p[i], 1) + g.dim(0, 4) for i in range(2))
    osz = tuple((size[i] + 2 * p[i] - d[i] * (k[i] - 1) - 1) // s[i] + 1 for i in range(2))
    return k, s, d, p, size, osz


@spec("im2col")
def _im2col(g, name):
    k, s, d, p, size, osz = _im2col_geometry(g)
    n, c = g.dim(1, 3), g.dim(1, 3)
    return Case([In(g.arr((n, c) + size), strict_shape=False), k, s, p, d],
                dict(out=g.out((n, c * k[0] * k[1], osz[0] * osz[1]))))


@spec("col2im")
def _col2im(g, name):
    k, s, d, p, size, osz = _im2col_geometry(g)
    n, c = g.dim(1, 3), g.dim(1, 3)
    return Case([In(g.arr((n, c * k[0] * k[1], osz[0] * osz[1])), strict_shape=False), size, k, s, p, d],
                dict(out=g.out((n, c) + size)), scale=2)


# ---------------------------------------------------------------------------------------------
# Embedding, affine warp


def _indices(g, v, shape):
    return g.rng.integers(0, max(v, 1), size=shape).astype(np.int64) if v else np.zeros(shape, np.int64)


@spec("embedding")
def _embedding(g, name):
    v, d = g.dim(1, 8), g.dim(1, 6)
    shape = _any_shape(g, 3)
    if v == 0:
        shape = shape + (0,)
    pad = g.choice([None, None, int(g.rng.integers(-v, v)) if v else None])
    return Case([Idx(_indices(g, v, shape), strict_shape=False, strict_ndim=False), In(g.arr((v, d)), strict_shape=False),
                 pad], dict(out=g.out(shape + (d,))))


@spec("embedding_backward")
def _embedding_b(g, name):
    v, d = g.dim(1, 8), g.dim(1, 6)
    shape = _any_shape(g, 3)
    if v == 0:
        shape = shape + (0,)
    pad = g.choice([None, None, int(g.rng.integers(-v, v)) if v else None])
    acc = g.coin(0.3)
    out = Buf(g.arr((v, d))) if (acc or g.coin(0.3)) else None
    return Case([In(g.arr(shape + (d,)), strict_shape=out is not None), Idx(_indices(g, v, shape)), v, pad],
                dict(out=out, accumulate=acc))


@spec("affine_warp")
def _affine(g, name):
    n, c, h, w = g.dim(1, 3), g.dim(1, 3), g.dim(1, 7), g.dim(1, 7)
    oshape = None if g.coin() else (g.dim(1, 7), g.dim(1, 7))
    ho, wo = (h, w) if oshape is None else oshape
    normalized = g.coin(0.3)
    if normalized:
        m = np.tile(np.array([[1, 0, 0], [0, 1, 0]], g.dt), (n, 1, 1)) + 0.3 * g.arr((n, 2, 3))
    else:
        m = np.tile(np.array([[1, 0, 0], [0, 1, 0]], g.dt), (n, 1, 1)) + g.arr((n, 2, 3)) * np.array(
            [[0.3, 0.3, 2], [0.3, 0.3, 2]], g.dt)
    # matrices: float32 or float64 whatever x's dtype (converted to float64), must be finite
    return Case([In(g.arr((n, c, h, w)), strict_shape=False), In(m.astype(g.dt), list_ok=True, nan_ok=False), oshape, float(g.rng.uniform(-1, 1))],
                dict(out=g.out((n, c, ho, wo)), mode=g.choice(["bilinear", "nearest"]), normalized=normalized,
                     padding_mode=g.choice(["fill", "border"])), scale=4)


# ---------------------------------------------------------------------------------------------
# Losses


def _reduction(g):
    return g.choice(["mean", "sum", "none"])


def _grad_output(g, reduction, shape):
    if reduction == "none" and g.coin(0.7):
        return In(g.arr(shape), list_ok=True, strict_ndim=False)  # a number is valid too
    return float(g.rng.uniform(-2, 2))


@spec("mse_loss", "mse_loss_backward", "mse_loss_forward_backward")
def _mse(g, name):
    s = _any_shape(g, 3)
    r = _reduction(g)
    args = [In(g.arr(s), strict_ndim=bool(s)), In(g.arr(s), strict_ndim=bool(s)), r]
    kw = {}
    if name != "mse_loss":
        args.append(_grad_output(g, r, s))
        kw["out"] = g.out(s)
    return Case(args, kw)


def _ce_shapes(g):
    n, c = g.dim(1, 6), g.dim(1, 6, zero=0)
    extra = tuple(g.dim(1, 3) for _ in range(int(g.rng.integers(0, 3))))
    return (n, c) + extra, (n,) + extra, c


@spec("cross_entropy", "cross_entropy_backward", "cross_entropy_forward_backward")
def _ce(g, name):
    ls, ts, c = _ce_shapes(g)  # C >= 1 (nnkern and torch reject 0 classes)
    ignore = g.choice([-100, -100, int(g.rng.integers(0, max(c, 1)))])
    t = g.rng.integers(0, max(c, 1), size=ts).astype(np.int64)
    if g.coin(0.3) and t.size:
        t.flat[int(g.rng.integers(t.size))] = ignore
    r = _reduction(g)
    w = In(g.pos((c,)), optional=True) if g.coin() else None
    args = [In(g.arr(ls) * 3, strict_shape=False), Idx(t), w, ignore, r, float(g.choice([0.0, 0.0, 0.1, 0.5]))]
    kw = {}
    if name != "cross_entropy":
        args.append(_grad_output(g, r, ts))
        kw["out"] = g.out(ls)
    return Case(args, kw)


@spec("binary_cross_entropy_with_logits", "binary_cross_entropy_with_logits_backward",
      "binary_cross_entropy_with_logits_forward_backward")
def _bce(g, name):
    s = _any_shape(g, 3)
    r = _reduction(g)
    tail = s[len(s) - int(g.rng.integers(0, len(s) + 1)):] if s else ()
    w = In(g.pos(tail), optional=True, list_ok=True, strict_shape=False, strict_ndim=False) if g.coin() else None
    pw = In(g.pos(tail), optional=True, list_ok=True, strict_shape=False, strict_ndim=False) if g.coin() else None
    args = [In(g.arr(s) * 3, strict_ndim=bool(s)), In(g.arr(s, 0, 1), strict_ndim=bool(s)), w, pw, r]
    kw = {}
    if name != "binary_cross_entropy_with_logits":
        args.append(_grad_output(g, r, s))
        kw["out"] = g.out(s)
    return Case(args, kw)


# ---------------------------------------------------------------------------------------------
# Batch norm, dropout


def _bn_shape(g):
    n, c = g.dim(1, 5), g.dim(1, 5)
    extra = tuple(g.dim(1, 4) for _ in range(int(g.rng.integers(0, 3))))
    return (n, c) + extra, c


@spec("batch_norm")
def _bn(g, name):
    s, c = _bn_shape(g)
    training = g.coin()
    m = s[0] * int(np.prod(s[2:]))  # values per channel
    if training and m < 2 and not (m == 0 and g.coin(0.2)):
        s = (max(s[0], 2), s[1]) + tuple(max(e, 1) for e in s[2:])
    running = g.coin(0.8) or not training
    role = Buf if training else In
    rm = role(g.arr((c,)) * 0.1) if running else None  # None only together with running_var
    rv = role(g.pos((c,))) if running else None
    w = In(g.arr((c,)), optional=True) if g.coin() else None
    b = In(g.arr((c,)), optional=True) if g.coin() else None
    kw = dict(out=g.out(s))
    if g.coin(0.3):
        kw["save_mean_out"] = Buf(g.arr((c,)), optional=True)
        kw["save_invstd_out"] = Buf(g.arr((c,)), optional=True)
    return Case([In(g.arr(s), strict_shape=False, strict_ndim=False), rm, rv, w, b, training, float(g.rng.uniform(0, 1)),
                 float(g.choice([1e-5, 1e-3, 0.1]))], kw, scale=10)


@spec("batch_norm_backward")
def _bn_b(g, name):
    s, c = _bn_shape(g)
    training = g.coin()
    x = g.arr(s)
    axes = (0,) + tuple(range(2, len(s)))
    if training:
        mean = x.mean(axis=axes) if x.size else np.zeros(c, g.dt)
        invstd = 1 / np.sqrt((x.var(axis=axes) if x.size else np.zeros(c, g.dt)) + 1e-5)
    else:
        mean, invstd = g.arr((c,)) * 0.1, g.pos((c,))
    w = In(g.arr((c,)), optional=True) if g.coin() else None
    kw = dict(out=g.out(s))
    if g.coin(0.3):
        kw["dweight_out"] = Buf(g.arr((c,)), optional=True)
        kw["dbias_out"] = Buf(g.arr((c,)), optional=True)
    return Case([In(g.arr(s)), In(x), w, In(mean.astype(g.dt)), In(invstd.astype(g.dt)), training], kw, scale=10)


@spec("dropout")
def _dropout(g, name):
    s = _any_shape(g)
    kw = dict(out=g.out(s))
    if g.coin(0.3):
        kw["mask_out"] = Buf(np.zeros(s, bool), optional=True)
    return Case([In(g.arr(s), strict_shape=False, strict_ndim=False), float(g.choice([0.0, 0.2, 0.5, 0.9])),
                 int(g.rng.integers(0, 2**63))], kw)


@spec("dropout_backward")
def _dropout_b(g, name):
    s = _any_shape(g)
    p = float(g.choice([0.0, 0.2, 0.5, 0.9]))
    return Case([In(g.arr(s), strict_ndim=bool(s)), Mask(g.rng.random(s) >= p, strict_ndim=bool(s)), p],
                dict(out=g.out(s)))


# ---------------------------------------------------------------------------------------------
# Optimizers (everything but g is an in-place buffer) and clipping


def _opt_shape(g):
    return tuple(g.dim(1, 7) for _ in range(int(g.rng.integers(0, 3))))


def _opt_arrays(g, multi, names):
    """For each name: an array (or, for *_multi, a list of arrays) of shared per-tensor shapes."""
    shapes = [_opt_shape(g) for _ in range(int(g.rng.integers(0, 4)) if multi else 1)]
    out = {}
    for nm in names:
        if nm == "g":
            mk = (lambda s: In(g.arr(s)))
        elif nm in ("v", "state_sum", "square_avg", "acc_delta", "v_max"):
            mk = (lambda s: Buf(g.pos(s) * 0.1))
        else:
            mk = (lambda s: Buf(g.arr(s)))
        vals = [mk(s) for s in shapes]
        out[nm] = vals if multi else vals[0]
    return out


def _step(g):
    return int(g.rng.integers(1, 50))


@spec("adam_step", "adam_step_multi", "adamw_step", "adamw_step_multi")
def _adam(g, name):
    multi = name.endswith("_multi")
    amsgrad = g.coin(0.3)
    a = _opt_arrays(g, multi, ["p", "g", "m", "v"] + (["v_max"] if amsgrad else []))
    kw = dict(lr=float(g.rng.uniform(0, 0.1)), betas=(float(g.rng.uniform(0, 0.99)), float(g.rng.uniform(0, 0.999))),
              eps=float(g.choice([1e-8, 1e-3])), weight_decay=float(g.choice([0.0, 0.01, 0.1])),
              amsgrad=amsgrad, v_max=a.get("v_max"), maximize=g.coin(0.3))
    if name.startswith("adam_"):
        kw["decoupled"] = g.coin()
    return Case([a["p"], a["g"], a["m"], a["v"], _step(g)], kw, scale=10)


@spec("sgd_step", "sgd_step_multi")
def _sgd(g, name):
    multi = name.endswith("_multi")
    mom = float(g.choice([0.0, 0.9, 0.5]))
    a = _opt_arrays(g, multi, ["p", "g"] + (["b"] if mom else []))
    nesterov = bool(mom) and g.coin(0.3)
    damp = 0.0 if nesterov else float(g.choice([0.0, 0.1]))
    return Case([a["p"], a["g"], a.get("b"), _step(g) if mom else g.choice([None, _step(g)])],
                dict(lr=float(g.rng.uniform(0, 0.1)), momentum=mom, dampening=damp,
                     weight_decay=float(g.choice([0.0, 0.01])), nesterov=nesterov, maximize=g.coin(0.3)))


@spec("adagrad_step", "adagrad_step_multi")
def _adagrad(g, name):
    a = _opt_arrays(g, name.endswith("_multi"), ["p", "g", "state_sum"])
    return Case([a["p"], a["g"], a["state_sum"], _step(g)],
                dict(lr=float(g.rng.uniform(0, 0.1)), lr_decay=float(g.choice([0.0, 0.01])),
                     weight_decay=float(g.choice([0.0, 0.01])), eps=1e-10, maximize=g.coin(0.3)), scale=10)


@spec("rmsprop_step", "rmsprop_step_multi")
def _rmsprop(g, name):
    mom = float(g.choice([0.0, 0.9]))
    centered = g.coin()
    a = _opt_arrays(g, name.endswith("_multi"), ["p", "g", "square_avg"] + (["b"] if mom else [])
                    + (["grad_avg"] if centered else []))
    if centered:  # keep square_avg - grad_avg**2 positive, as a real run does
        for sa, ga in zip(*(([a["square_avg"]], [a["grad_avg"]]) if not isinstance(a["p"], list)
                            else (a["square_avg"], a["grad_avg"]))):
            ga.a[...] = 0.1 * sa.a
    return Case([a["p"], a["g"], a["square_avg"], a.get("b"), a.get("grad_avg")],
                dict(lr=float(g.rng.uniform(0, 0.1)), alpha=float(g.rng.uniform(0, 0.99)), eps=1e-8,
                     weight_decay=float(g.choice([0.0, 0.01])), momentum=mom, centered=centered,
                     maximize=g.coin(0.3)), scale=10)


@spec("adadelta_step", "adadelta_step_multi")
def _adadelta(g, name):
    a = _opt_arrays(g, name.endswith("_multi"), ["p", "g", "square_avg", "acc_delta"])
    return Case([a["p"], a["g"], a["square_avg"], a["acc_delta"]],
                dict(lr=float(g.rng.uniform(0, 1)), rho=float(g.rng.uniform(0, 0.99)), eps=1e-6,
                     weight_decay=float(g.choice([0.0, 0.01])), maximize=g.coin(0.3)), scale=10)


def _grads(g, role):
    return [role(g.arr(_opt_shape(g))) for _ in range(int(g.rng.integers(0, 4)))]


@spec("grad_norm")
def _grad_norm(g, name):
    return Case([_grads(g, lambda a: In(a, strict_shape=False, strict_ndim=False)),
                 float(g.choice([2.0, 1.0, 3.0, np.inf, 0.5]))], scale=10)


@spec("clip_grad_norm")
def _clip_norm(g, name):
    return Case([_grads(g, lambda a: Buf(a, strict_shape=False, strict_ndim=False)), float(g.rng.uniform(0.1, 3)),
                 float(g.choice([2.0, 1.0, np.inf])), g.coin(0.2)], scale=10)


@spec("clip_grad_value")
def _clip_value(g, name):
    return Case([_grads(g, lambda a: Buf(a, strict_shape=False, strict_ndim=False)), float(g.rng.uniform(0, 2))])


# ---------------------------------------------------------------------------------------------
# Pooling


def _pool_x(g):
    n, c = g.dim(1, 3), g.dim(1, 3)
    h, w = g.dim(1, 8, zero=0), g.dim(1, 8, zero=0)
    return ((n, c, h, w) if g.coin(0.8) else (c, h, w))


def _pool_opts(g, xs, dilation=True):
    h, w = xs[-2:]
    k = (int(g.rng.integers(1, max(min(h, 3), 1) + 1)), int(g.rng.integers(1, max(min(w, 3), 1) + 1)))
    s = g.choice([None, (int(g.rng.integers(1, 3)), int(g.rng.integers(1, 3)))])
    p = (int(g.rng.integers(0, k[0] // 2 + 1)), int(g.rng.integers(0, k[1] // 2 + 1)))
    d = (1, 1) if not dilation else (int(g.rng.integers(1, 3)), int(g.rng.integers(1, 3)))
    if dilation:  # keep the dilated window inside the padded input
        d = tuple(d[i] if xs[-2 + i] + 2 * p[i] >= d[i] * (k[i] - 1) + 1 else 1 for i in range(2))
    return k, s, p, d


@spec("max_pool2d")
def _maxpool(g, name):
    xs = _pool_x(g)
    k, s, p, d = _pool_opts(g, xs)
    return Case([In(g.arr(xs), strict_shape=False, strict_ndim=False), k, s, p, d, g.coin(0.3)], {})


def _ref_pool(fn, *args, **kw):
    import nnkern.reference as ref
    return getattr(ref, fn)(*args, **kw)


@spec("max_pool2d_backward", "adaptive_max_pool2d_backward", "global_max_pool2d_backward")
def _maxpool_b(g, name):
    xs = _pool_x(g)
    x = g.arr(xs)
    if name == "max_pool2d_backward":
        k, s, p, d = _pool_opts(g, xs)
        y, idx = _ref_pool("max_pool2d", x, k, s, p, d, g.coin(0.3))
    elif name == "adaptive_max_pool2d_backward":
        y, idx = _ref_pool("adaptive_max_pool2d", x, (g.dim(1, 4), g.dim(1, 4)))
    else:
        y, idx = _ref_pool("global_max_pool2d", x)
    return Case([In(g.arr(y.shape)), Idx(np.asarray(idx, np.int64)), tuple(xs)], dict(out=g.out(xs)))


@spec("avg_pool2d")
def _avgpool(g, name):
    xs = _pool_x(g)
    k, s, p, _ = _pool_opts(g, xs, dilation=False)
    return Case([In(g.arr(xs), strict_shape=False, strict_ndim=False), k, s, p, g.coin(0.3), g.coin(),
                 g.choice([None, None, int(g.rng.integers(1, 5))])], {})


@spec("avg_pool2d_backward")
def _avgpool_b(g, name):
    xs = _pool_x(g)
    k, s, p, _ = _pool_opts(g, xs, dilation=False)
    ceil, cip, div = g.coin(0.3), g.coin(), g.choice([None, None, int(g.rng.integers(1, 5))])
    y = _ref_pool("avg_pool2d", g.arr(xs), k, s, p, ceil, cip, div)
    return Case([In(g.arr(y.shape)), tuple(xs), k, s, p, ceil, cip, div], dict(out=g.out(xs)))


@spec("adaptive_avg_pool2d", "adaptive_max_pool2d")
def _adaptive(g, name):
    xs = _pool_x(g)
    osz = (g.dim(1, 5), g.dim(1, 5)) if g.coin(0.8) else g.dim(1, 5)
    return Case([In(g.arr(xs), strict_shape=False, strict_ndim=False), osz], {})


@spec("adaptive_avg_pool2d_backward")
def _adaptive_b(g, name):
    xs = _pool_x(g)
    osz = (g.dim(1, 5), g.dim(1, 5))
    return Case([In(g.arr(xs[:-2] + osz), strict_shape=False, strict_ndim=False), tuple(xs)], dict(out=g.out(xs)))


@spec("global_avg_pool2d", "global_max_pool2d")
def _global(g, name):
    xs = _pool_x(g)
    return Case([In(g.arr(xs), strict_shape=False, strict_ndim=False)], {})


@spec("global_avg_pool2d_backward")
def _global_b(g, name):
    xs = _pool_x(g)
    # dy of any spatial size is taken as an adaptive-pool gradient (FUZZ.md): not strict
    return Case([In(g.arr(xs[:-2] + (1, 1)), strict_shape=False), tuple(xs)], dict(out=g.out(xs)))


# ---------------------------------------------------------------------------------------------
# Recurrent cells and sequences

_GATES = {"lstm": 4, "gru": 3, "rnn": 1}


def _cell_arrays(g, kind):
    n, f, h = g.dim(1, 4), g.dim(1, 5), g.dim(1, 5, zero=0)
    G = _GATES[kind]
    x = In(g.arr((n, f)), strict_shape=False)  # N, F follow x when h0/weights allow
    h0 = In(g.arr((n, h)), optional=True) if g.coin(0.8) else None
    c0 = In(g.arr((n, h)), optional=True) if g.coin(0.8) else None
    w_ih, w_hh = In(g.arr((G * h, f)) * 0.5), In(g.arr((G * h, h)) * 0.5)
    b_ih = In(g.arr((G * h,)), optional=True) if g.coin(0.7) else None
    b_hh = In(g.arr((G * h,)), optional=True) if g.coin(0.7) else None
    return n, f, h, x, h0, c0, w_ih, w_hh, b_ih, b_hh


def _strip(v):
    return v.a.copy() if hasattr(v, "a") else v


_WS_NAN_NOTE = ("ws (the backward's workspace) is not compared when the inputs hold NaN/Inf: the kernel's "
                "fused gate maths (one division for the four LSTM gates) may leave NaN in a unit's other gate "
                "slots; h1/c1 are compared, and the backward passes check ws's use")


@spec("lstm_cell")
def _lstm_cell(g, name):
    n, f, h, x, h0, c0, w_ih, w_hh, b_ih, b_hh = _cell_arrays(g, "lstm")
    return Case([x, h0, c0, w_ih, w_hh, b_ih, b_hh], {}, scale=10, nan_ignore=(2,), note=_WS_NAN_NOTE)


@spec("gru_cell", "rnn_cell")
def _gru_cell(g, name):
    kind = name.split("_")[0]
    n, f, h, x, h0, c0, w_ih, w_hh, b_ih, b_hh = _cell_arrays(g, kind)
    extra = g.choice(["torch", "cho2014"]) if kind == "gru" else g.choice(["tanh", "relu"])
    return Case([x, h0, w_ih, w_hh, b_ih, b_hh, extra], {}, scale=10, nan_ignore=(1,), note=_WS_NAN_NOTE)


@spec("lstm_cell_backward")
def _lstm_cell_b(g, name):
    n, f, h, x, h0, c0, w_ih, w_hh, b_ih, b_hh = _cell_arrays(g, "lstm")
    fwd = Fwd("lstm_cell", [_strip(v) for v in (x, h0, c0, w_ih, w_hh, b_ih, b_hh)], index=2)
    dh1 = In(g.arr((n, h)), optional=True) if g.coin(0.9) else None
    dc1 = In(g.arr((n, h)), optional=True) if g.coin(0.7) else None
    return Case([dh1, dc1, fwd, x, h0, c0, w_ih, w_hh], {}, scale=10)


@spec("gru_cell_backward", "rnn_cell_backward")
def _gru_cell_b(g, name):
    kind = name.split("_")[0]
    n, f, h, x, h0, c0, w_ih, w_hh, b_ih, b_hh = _cell_arrays(g, kind)
    extra = g.choice(["torch", "cho2014"]) if kind == "gru" else g.choice(["tanh", "relu"])
    fwd = Fwd(f"{kind}_cell", [_strip(v) for v in (x, h0, w_ih, w_hh, b_ih, b_hh)] + [extra], index=1)
    dh1 = In(g.arr((n, h)), optional=True) if g.coin(0.9) else None
    return Case([dh1, fwd, x, h0, w_ih, w_hh, extra], {}, scale=10)


def _seq_arrays(g, kind):
    n, f, h, x, h0, c0, w_ih, w_hh, b_ih, b_hh = _cell_arrays(g, kind)
    t = g.dim(1, 5)
    bf = g.coin(0.3)
    x = In(g.arr((n, t, f) if bf else (t, n, f)), strict_shape=False)
    lengths = Idx(g.rng.integers(0, t + 1, size=n).astype(np.int64), optional=True) if g.coin(0.3) else None
    if lengths is not None:  # documented: padding positions of x hold finite values
        x.nan_ok = False
    kw = dict(lengths=lengths, reverse=g.coin(0.3), batch_first=bf)
    return n, t, h, x, h0, c0, w_ih, w_hh, b_ih, b_hh, kw


@spec("lstm_sequence")
def _lstm_seq(g, name):
    n, t, h, x, h0, c0, w_ih, w_hh, b_ih, b_hh, kw = _seq_arrays(g, "lstm")
    return Case([x, h0, c0, w_ih, w_hh, b_ih, b_hh], kw, ignore=(3,), scale=10,
                note="ws (index 3) is an opaque workspace: nnkern's is a 1-D array, the twin's a dict")


@spec("gru_sequence", "rnn_sequence")
def _gru_seq(g, name):
    kind = name.split("_")[0]
    n, t, h, x, h0, c0, w_ih, w_hh, b_ih, b_hh, kw = _seq_arrays(g, kind)
    if kind == "gru":
        kw["variant"] = g.choice(["torch", "cho2014"])
    else:
        kw["nonlinearity"] = g.choice(["tanh", "relu"])
    return Case([x, h0, w_ih, w_hh, b_ih, b_hh], kw, ignore=(2,), scale=10,
                note="ws (index 2) is an opaque workspace")


@spec("lstm_sequence_backward", "gru_sequence_backward", "rnn_sequence_backward")
def _seq_b(g, name):
    kind = name.split("_")[0]
    n, t, h, x, h0, c0, w_ih, w_hh, b_ih, b_hh, kw = _seq_arrays(g, kind)
    if kind == "gru":
        kw["variant"] = g.choice(["torch", "cho2014"])
    elif kind == "rnn":
        kw["nonlinearity"] = g.choice(["tanh", "relu"])
    kw = {k: _strip(v) for k, v in kw.items()}
    xs = x.a.copy()
    if kind == "lstm":
        fwd = Fwd("lstm_sequence", [_strip(v) for v in (x, h0, c0, w_ih, w_hh, b_ih, b_hh)], kw, index=3)
    else:
        fwd = Fwd(f"{kind}_sequence", [_strip(v) for v in (x, h0, w_ih, w_hh, b_ih, b_hh)], kw, index=2)
    ys = xs.shape[:2] + (h,)
    dy = In(g.arr(ys), optional=True) if g.coin(0.9) else None
    dh = In(g.arr((n, h)), optional=True) if g.coin(0.7) else None
    args = [dy, dh]
    if kind == "lstm":
        args.append(In(g.arr((n, h)), optional=True) if g.coin(0.7) else None)
    x.nan_ok = False  # x must be the forward's x (the workspace was computed from it)
    x.strict_shape = x.strict_ndim = True
    return Case(args + [fwd, In(xs, nan_ok=False)], {}, scale=10)


# ---------------------------------------------------------------------------------------------
# Workarounds for bugs found in the NumPy twins (nnkern itself right): name -> wrapper of the twin
# function, so the fuzzer can still check nnkern on those inputs while the twin is being fixed.
# Empty: the twin bugs found so far (0-d optimizer parameters with weight_decay/maximize, max-pool
# backward with N*C == 0, affine_warp on an empty image, batch_norm on an empty training batch)
# are fixed in nnkern.reference (FUZZ.md).

TWIN_WORKAROUNDS = {}
