"""Loss modules (nnkern.nn): MSELoss, CrossEntropyLoss, BCEWithLogitsLoss against torch modules,
train (fused) vs eval paths, grad_output handling, buffers/state_dict, errors naming the layer, and
a small training run that follows torch's loss trajectory."""

import numpy as np
import pytest

import nnkern as nk
from conftest import assert_close, requires_torch, torch

nn = nk.nn


def _tol(dtype):
    return dict(rtol=1e-4, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-11, atol=1e-13)


def _cases(rng, dtype):
    """(name, nnkern module, torch module, pred, target) for every loss and option mix."""
    tdt = torch.float32 if dtype == np.float32 else torch.float64
    x = np.asarray(rng.standard_normal((12, 5)) * 2, dtype)
    x4 = np.asarray(rng.standard_normal((3, 5, 4, 2)) * 2, dtype)
    y = np.asarray(rng.standard_normal((12, 5)), dtype)
    b = np.asarray(rng.random((12, 5)), dtype)
    t = rng.integers(0, 5, 12)
    t[[2, 7]] = -100  # ignored by the default ignore_index
    t1 = np.where(t == -100, 1, t)  # for ignore_index=1
    t4 = rng.integers(0, 5, (3, 4, 2))
    w = np.asarray(rng.uniform(0.5, 2, 5), dtype)
    pw = np.asarray(rng.uniform(0.5, 3, 5), dtype)
    cases = []
    for red in ("mean", "sum", "none"):
        cases += [
            (f"mse-{red}", nn.MSELoss(red), torch.nn.MSELoss(reduction=red), x, y),
            (f"ce-{red}", nn.CrossEntropyLoss(reduction=red), torch.nn.CrossEntropyLoss(reduction=red), x, t),
            (f"ce-all-{red}", nn.CrossEntropyLoss(w, ignore_index=1, reduction=red, label_smoothing=0.15),
             torch.nn.CrossEntropyLoss(torch.from_numpy(w), ignore_index=1, reduction=red, label_smoothing=0.15), x, t1),
            (f"ce-nd-{red}", nn.CrossEntropyLoss(w, reduction=red), torch.nn.CrossEntropyLoss(torch.from_numpy(w),
                                                                                            reduction=red), x4, t4),
            (f"bce-{red}", nn.BCEWithLogitsLoss(reduction=red), torch.nn.BCEWithLogitsLoss(reduction=red), x, b),
            (f"bce-w-{red}", nn.BCEWithLogitsLoss(w, reduction=red, pos_weight=pw),
             torch.nn.BCEWithLogitsLoss(torch.from_numpy(w), reduction=red, pos_weight=torch.from_numpy(pw)), x, b),
        ]
    return [(n, m, tm.to(tdt), p, tg) for n, m, tm, p, tg in cases]


@requires_torch
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_losses_match_torch(rng, dtype, mode):
    for name, crit, tcrit, pred, target in _cases(rng, dtype):
        getattr(crit, mode)()
        tp = torch.from_numpy(pred.copy()).requires_grad_(True)
        tl = tcrit(tp, torch.from_numpy(target))
        none = crit.reduction == "none"
        g = np.asarray(rng.standard_normal(tl.shape), dtype) if none else None
        tl.backward(torch.from_numpy(g) if none else None)
        loss = crit(pred, target)
        if none:
            assert isinstance(loss, np.ndarray) and loss.shape == tuple(tl.shape), name
        else:
            assert isinstance(loss, float), name
        np.testing.assert_allclose(loss, tl.detach().numpy(), err_msg=name, **_tol(dtype))
        dpred = crit.backward(g)
        assert dpred.shape == pred.shape and dpred.dtype == dtype
        np.testing.assert_allclose(dpred, tp.grad.numpy(), err_msg=name, **_tol(dtype))


@pytest.mark.parametrize("make", [lambda: nn.MSELoss(), lambda: nn.CrossEntropyLoss(label_smoothing=0.1),
                                  lambda: nn.BCEWithLogitsLoss(pos_weight=np.full(4, 2.0))])
def test_backward_variants_agree(rng, make):
    crit = make()
    pred = rng.standard_normal((6, 4))
    target = rng.integers(0, 4, 6) if isinstance(crit, nn.CrossEntropyLoss) else rng.random((6, 4))
    loss = crit(pred, target)
    g_fused = crit.backward()
    g_again = crit.backward()  # a second call recomputes from the saved inputs
    assert_close(g_again, g_fused)
    crit(pred, target)
    assert_close(crit.backward(2.5), 2.5 * g_fused)
    crit.eval()
    assert crit(pred, target) == loss
    assert_close(crit.backward(), g_fused)
    assert_close(crit.backward(np.float64(0.5)), 0.5 * g_fused)


def test_none_reduction_grad_output_array(rng):
    crit = nn.CrossEntropyLoss(reduction="none")
    x = rng.standard_normal((5, 3, 2))
    t = rng.integers(0, 3, (5, 2))
    g = rng.standard_normal((5, 2))
    losses = crit(x, t)
    assert losses.shape == (5, 2)
    fused = crit.backward(g)
    np.testing.assert_allclose(fused, nk.cross_entropy_backward(x, t, reduction="none", grad_output=g), rtol=1e-12)
    crit.eval()
    crit(x, t)
    np.testing.assert_allclose(crit.backward(g), fused, rtol=1e-12)
    crit.train()
    crit(x, t)
    with pytest.raises(ValueError, match=r"CrossEntropyLoss.backward: grad_output has shape \(2, 5\), expected \(5, 2\)"):
        crit.backward(g.T)
    mse = nn.MSELoss()
    mse(x, x * 0)
    with pytest.raises(ValueError, match=r"MSELoss.backward: grad_output must be a scalar for reduction='mean'"):
        mse.backward(np.ones(x.shape))


def test_weight_buffers_and_dtype(rng):
    w = np.array([1.0, 2.0, 0.5])  # float64 weight, float32 logits: converted once and kept
    crit = nn.CrossEntropyLoss(weight=w)
    x = rng.standard_normal((4, 3)).astype(np.float32)
    t = np.array([0, 1, 2, 1])
    loss = crit(x, t)
    assert crit.weight.dtype == np.float32
    assert list(crit.state_dict()) == ["weight"]
    assert np.isclose(loss, nk.cross_entropy(x, t, weight=w.astype(np.float32)))
    assert list(nn.CrossEntropyLoss().state_dict()) == []
    bce = nn.BCEWithLogitsLoss(weight=np.ones((4, 1)), pos_weight=np.array([1.0, 2.0, 3.0]))
    assert list(bce.state_dict()) == ["weight", "pos_weight"]
    bce(x, np.ones_like(x))
    assert bce.pos_weight.dtype == np.float32


@requires_torch
def test_state_dict_names_match_torch():
    w = np.ones(3, np.float32)
    assert list(nn.CrossEntropyLoss(w).state_dict()) == list(torch.nn.CrossEntropyLoss(torch.from_numpy(w)).state_dict())
    assert list(nn.BCEWithLogitsLoss(w, pos_weight=w).state_dict()) == list(
        torch.nn.BCEWithLogitsLoss(torch.from_numpy(w), pos_weight=torch.from_numpy(w)).state_dict())


def test_loss_layer_errors(rng):
    x = rng.standard_normal((4, 3)).astype(np.float32)
    with pytest.raises(RuntimeError, match=r"MSELoss.backward called before forward"):
        nn.MSELoss().backward()
    with pytest.raises(ValueError, match=r"MSELoss: target has shape \(3, 4\), expected \(4, 3\) \(the shape of the input\)"):
        nn.MSELoss()(x, x.T.copy())
    with pytest.raises(ValueError, match=r"BCEWithLogitsLoss: target has shape \(4,\), expected \(4, 3\)"):
        nn.BCEWithLogitsLoss()(x, x[:, 0].copy())
    with pytest.raises(ValueError, match=r"CrossEntropyLoss: target has shape \(3,\), expected \(4,\) for input of shape \(4, 3\)"):
        nn.CrossEntropyLoss()(x, np.zeros(3, np.int64))
    with pytest.raises(ValueError, match=r"target\[1\] = 3 is out of range for 3 classes"):
        nn.CrossEntropyLoss()(x, np.array([0, 3, 1, 2]))
    with pytest.raises(ValueError, match=r"target\[1\] = 3 is out of range"):
        nn.CrossEntropyLoss().eval()(x, np.array([0, 3, 1, 2]))
    with pytest.raises(TypeError, match=r"CrossEntropyLoss: target must be a numpy.ndarray, got list"):
        nn.CrossEntropyLoss()(x, [0, 1, 2, 1])
    with pytest.raises(ValueError, match=r"MSELoss: reduction must be 'mean', 'sum' or 'none', got 'avg'"):
        nn.MSELoss("avg")
    with pytest.raises(ValueError, match=r"CrossEntropyLoss: label_smoothing must be in \[0.0, 1.0\], got -0.1"):
        nn.CrossEntropyLoss(label_smoothing=-0.1)


@requires_torch
def test_training_loop_follows_torch(rng):
    """Linear -> ReLU -> Linear -> CrossEntropyLoss trained 20 plain-SGD steps from identical
    weights follows torch's loss trajectory (float64)."""
    model = nn.Sequential(nn.Linear(10, 16, dtype=np.float64), nn.ReLU(), nn.Linear(16, 4, dtype=np.float64))
    tmodel = torch.nn.Sequential(torch.nn.Linear(10, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4)).double()
    tmodel.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in model.state_dict().items()})
    crit = nn.CrossEntropyLoss(label_smoothing=0.05)
    tcrit = torch.nn.CrossEntropyLoss(label_smoothing=0.05)
    x = rng.standard_normal((32, 10))
    t = rng.integers(0, 4, 32)
    tx, tt = torch.from_numpy(x), torch.from_numpy(t)
    losses, tlosses = [], []
    for _ in range(20):
        model.zero_grad()
        loss = crit(model(x), t)
        model.backward(crit.backward())
        for p in model.parameters():
            p.data -= 0.5 * p.grad
        tmodel.zero_grad()
        tl = tcrit(tmodel(tx), tt)
        tl.backward()
        with torch.no_grad():
            for p in tmodel.parameters():
                p -= 0.5 * p.grad
        losses.append(loss)
        tlosses.append(tl.item())
    np.testing.assert_allclose(losses, tlosses, rtol=1e-9)
    assert losses[-1] < 0.75 * losses[0]  # it learns
