"""Layer fuzzing (nk.nn.*): forward and backward with random shapes, and bad inputs.

Layers have no NumPy twin of their own; the oracle is (a) the output and dx have the documented
shapes and dtype, (b) a non-contiguous / Fortran / read-only view of x gives bitwise the same
output and dx as the C-contiguous array, (c) finite inputs give finite outputs, and (d) invalid x
(int / float16 / object / bool dtype, wrong ndim, wrong feature size) raises TypeError/ValueError.
NaN/Inf in x must not crash. Names are "nn.<Layer>"; run_layer(name, seed) mirrors run_one.
"""

import numpy as np

import nnkern.nn as nn


def _layer(name, g, dt):
    r = g.integers
    if name == "Linear":
        fi, fo = int(r(1, 9)), int(r(1, 9))
        return nn.Linear(fi, fo, dtype=dt), (int(r(0, 5)), fi), -1
    if name == "Conv2d":
        ci, co, k = int(r(1, 4)), int(r(1, 4)), int(r(1, 4))
        return nn.Conv2d(ci, co, k, padding=int(r(0, 2)), dtype=dt), (int(r(1, 3)), ci, k + int(r(0, 4)), k + int(r(0, 4))), 1
    if name == "Conv1d":
        ci, co, k = int(r(1, 4)), int(r(1, 4)), int(r(1, 4))
        return nn.Conv1d(ci, co, k, dtype=dt), (int(r(1, 3)), ci, k + int(r(0, 4))), 1
    if name == "BatchNorm1d":
        c = int(r(1, 5))
        return nn.BatchNorm1d(c, dtype=dt), (int(r(2, 5)), c), 1
    if name == "BatchNorm2d":
        c = int(r(1, 5))
        return nn.BatchNorm2d(c, dtype=dt), (int(r(2, 4)), c, int(r(1, 4)), int(r(1, 4))), 1
    if name in ("ReLU", "Sigmoid", "Tanh", "SiLU", "Softplus", "LeakyReLU", "Identity"):
        return getattr(nn, name)(), tuple(int(r(0, 5)) for _ in range(int(r(1, 4)))), None
    if name in ("Softmax", "LogSoftmax"):
        return getattr(nn, name)(dim=-1), (int(r(1, 4)), int(r(1, 6))), None
    if name == "PReLU":
        return nn.PReLU(dtype=dt), (int(r(1, 4)), int(r(1, 5))), None
    if name == "MaxPool2d":
        return nn.MaxPool2d(int(r(1, 3))), (int(r(1, 3)), int(r(1, 3)), int(r(2, 7)), int(r(2, 7))), None
    if name == "AvgPool2d":
        return nn.AvgPool2d(int(r(1, 3))), (int(r(1, 3)), int(r(1, 3)), int(r(2, 7)), int(r(2, 7))), None
    if name == "AdaptiveAvgPool2d":
        return nn.AdaptiveAvgPool2d((int(r(1, 3)), int(r(1, 3)))), (int(r(1, 3)), int(r(1, 3)), int(r(1, 7)), int(r(1, 7))), None
    if name == "Flatten":
        return nn.Flatten(), (int(r(1, 3)), int(r(1, 3)), int(r(1, 4))), None
    if name in ("LSTM", "GRU", "RNN"):
        f, h = int(r(1, 5)), int(r(1, 5))
        return getattr(nn, name)(f, h, num_layers=int(r(1, 3)), bidirectional=bool(r(0, 2)), dtype=dt), (int(r(1, 4)), int(r(1, 3)), f), -1
    if name in ("LSTMCell", "GRUCell", "RNNCell"):
        f, h = int(r(1, 5)), int(r(1, 5))
        return getattr(nn, name)(f, h, dtype=dt), (int(r(1, 4)), f), -1
    raise KeyError(name)


LAYERS = ["Linear", "Conv2d", "Conv1d", "BatchNorm1d", "BatchNorm2d", "ReLU", "Sigmoid", "Tanh", "SiLU", "Softplus",
          "LeakyReLU", "Identity", "Softmax", "LogSoftmax", "PReLU", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d",
          "Flatten", "LSTM", "GRU", "RNN", "LSTMCell", "GRUCell", "RNNCell"]


def _fwd_bwd(layer, x, rng_seed):
    y = layer.forward(x)
    y0 = y[0] if isinstance(y, tuple) else y
    dy = np.random.default_rng(rng_seed).standard_normal(y0.shape).astype(y0.dtype)
    dx = layer.backward(dy)
    dx0 = dx[0] if isinstance(dx, tuple) else dx
    return np.array(y0), np.array(dx0)


def run_layer(name, seed):
    lname = name[3:]
    g = np.random.default_rng([seed, 77])
    dt = np.float32 if g.random() < 0.5 else np.float64
    layer, shape, feat_axis = _layer(lname, g, dt)
    x = g.standard_normal(shape).astype(dt)
    mut = ["valid", "valid", "layout", "nan", "dtype", "ndim", "features"][int(g.integers(7))]
    res = dict(name=name, seed=seed, dtype=np.dtype(dt).name, desc=f"{mut} x{shape}")
    if mut in ("valid", "layout", "nan"):
        res["expect"] = "valid"
        try:
            if mut == "nan" and x.size:
                x.reshape(-1)[int(g.integers(x.size))] = [np.nan, np.inf, -np.inf][int(g.integers(3))]
                with np.errstate(all="ignore"):
                    _fwd_bwd(layer, x, seed)  # must not crash; values not compared
                res["status"] = "valid_ok"
                return res
            y, dx = _fwd_bwd(layer, x, seed)
            if y.dtype != dt or dx.shape != x.shape or dx.dtype != dt:
                res.update(status="mismatch", detail=f"y {y.dtype}, dx {dx.shape} {dx.dtype} for x {x.shape} {dt}")
                return res
            if not (np.isfinite(y).all() and np.isfinite(dx).all()):
                res.update(status="mismatch", detail="non-finite output for finite input")
                return res
            if mut == "layout":
                how = ["fortran", "readonly", "noncontig"][int(g.integers(3))]
                res["desc"] += f" {how}"
                if how == "fortran":
                    v = np.asfortranarray(x) if x.ndim >= 2 else x.copy()
                elif how == "readonly":
                    v = x.copy()
                    v.setflags(write=False)
                else:
                    big = np.repeat(x, 2, axis=-1) if x.ndim else x.copy()
                    v = big[..., ::2] if x.ndim else big
                # the same layer again (forward output and dx do not depend on the grads it accumulated)
                y2, dx2 = _fwd_bwd(layer, v, seed)
                if not (np.array_equal(y, y2) and np.array_equal(dx, dx2)):
                    res.update(status="mismatch", detail=f"{how} view of x changes the result")
                    return res
            res["status"] = "valid_ok"
        except (TypeError, ValueError) as e:
            res.update(status="rejected_valid", error=f"{type(e).__name__}: {e}")
        except Exception as e:  # noqa: BLE001
            res.update(status="bad_exception", error=f"{type(e).__name__}: {e}")
        return res
    res["expect"] = "raise"
    if mut == "dtype":
        bad = [np.int32, np.int64, np.float16, np.bool_, object][int(g.integers(5))]
        x = x.astype(bad)
        if lname in ("Identity", "Flatten"):  # no kernel: they pass any array through (by design)
            res["expect"] = "either"
    elif mut == "ndim":
        x = x[None] if g.random() < 0.5 or x.ndim < 2 else x.reshape(x.shape[:-2] + (x.shape[-2] * x.shape[-1],))
        if feat_axis is None or lname in ("Linear", "LSTM", "GRU", "RNN", "LSTMCell", "GRUCell", "RNNCell"):
            # shape-agnostic layers (activations; pools take 3-D or 4-D); Linear takes any leading
            # dims and the recurrent layers unbatched input, as torch does
            res["expect"] = "either"
    else:
        if feat_axis is None:
            res["expect"] = "either"
            res["status"] = "raised_ok"
            return res
        s = list(x.shape)
        s[feat_axis] += 1
        x = np.resize(x, s)
    res["desc"] = f"{mut} x{x.shape} {x.dtype}"
    try:
        _fwd_bwd(layer, x, seed)
    except (TypeError, ValueError):
        res["status"] = "raised_ok"
        return res
    except Exception as e:  # noqa: BLE001
        res.update(status="bad_exception", error=f"{type(e).__name__}: {e}")
        return res
    res["status"] = "accepted_invalid" if res["expect"] == "raise" else "either_ok"
    return res
