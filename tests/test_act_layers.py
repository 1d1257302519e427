"""Activation layers (nnkern.nn): forward/backward against torch modules, finite differences,
in-place variants, PReLU's weight gradient and state_dict, and errors that name the layer."""

import numpy as np
import pytest

import nnkern as nk
from conftest import assert_close, numerical_grad, requires_torch, torch

nn = nk.nn


def _layers():
    """(name, nnkern factory, torch factory) with identical settings."""
    return [
        ("ReLU", lambda: nn.ReLU(), lambda: torch.nn.ReLU()),
        ("LeakyReLU", lambda: nn.LeakyReLU(0.2), lambda: torch.nn.LeakyReLU(0.2)),
        ("PReLU1", lambda: nn.PReLU(), lambda: torch.nn.PReLU()),
        ("PReLU6", lambda: nn.PReLU(6, init=0.1), lambda: torch.nn.PReLU(6, init=0.1)),
        ("Sigmoid", lambda: nn.Sigmoid(), lambda: torch.nn.Sigmoid()),
        ("Tanh", lambda: nn.Tanh(), lambda: torch.nn.Tanh()),
        ("Softplus", lambda: nn.Softplus(), lambda: torch.nn.Softplus()),
        ("Softplus2", lambda: nn.Softplus(beta=2.0, threshold=3.0), lambda: torch.nn.Softplus(beta=2.0, threshold=3.0)),
        ("SiLU", lambda: nn.SiLU(), lambda: torch.nn.SiLU()),
        ("Softmax1", lambda: nn.Softmax(dim=1), lambda: torch.nn.Softmax(dim=1)),
        ("SoftmaxLast", lambda: nn.Softmax(dim=-1), lambda: torch.nn.Softmax(dim=-1)),
        ("LogSoftmax1", lambda: nn.LogSoftmax(dim=1), lambda: torch.nn.LogSoftmax(dim=1)),
    ]


LAYER_NAMES = [n for n, _, _ in _layers()] if torch is not None else []


def _factory(name):
    return next((m, t) for n, m, t in _layers() if n == name)


@requires_torch
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", LAYER_NAMES)
def test_layer_matches_torch(rng, name, dtype):
    make, tmake = _factory(name)
    layer, tlayer = make().to(dtype), tmake().to(torch.float64 if dtype == np.float64 else torch.float32)
    for shape in [(5, 6), (3, 6, 4, 5)]:
        x = np.asarray(rng.standard_normal(shape) * 2, dtype)
        dy = np.asarray(rng.standard_normal(shape), dtype)
        tx = torch.from_numpy(x.copy()).requires_grad_(True)
        ty = tlayer(tx)
        ty.backward(torch.from_numpy(dy))
        y = layer(x)
        dx = layer.backward(dy)
        tol = dict(rtol=1e-4, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-11, atol=1e-12)
        np.testing.assert_allclose(y, ty.detach().numpy(), **tol)
        np.testing.assert_allclose(dx, tx.grad.numpy(), **tol)
    if name.startswith("PReLU"):  # the weight gradient accumulated over both shapes, as torch's
        np.testing.assert_allclose(layer.weight.grad, tlayer.weight.grad.numpy(),
                                   rtol=1e-4 if dtype == np.float32 else 1e-10)
        assert list(layer.state_dict()) == list(tlayer.state_dict()) == ["weight"]


@pytest.mark.parametrize("layer", [nn.ReLU(), nn.LeakyReLU(0.3), nn.PReLU(4), nn.Sigmoid(), nn.Tanh(), nn.Softplus(2.0),
                                   nn.SiLU(), nn.Softmax(1), nn.LogSoftmax(0)], ids=lambda m: type(m).__name__)
def test_layer_finite_differences(rng, layer):
    layer.to(np.float64)
    x = rng.standard_normal((3, 4))
    x[np.abs(x) < 1e-3] += 0.01
    dy = rng.standard_normal((3, 4))
    layer(x)
    dx = layer.backward(dy)
    num = numerical_grad(lambda: float((layer.forward(x) * dy).sum()), x)
    np.testing.assert_allclose(dx, num, rtol=1e-6, atol=1e-8)


def test_prelu_weight_grad_finite_differences(rng):
    layer = nn.PReLU(3, dtype=np.float64)
    layer.weight.data[:] = [0.1, -0.2, 0.3]
    x = rng.standard_normal((4, 3, 5))
    dy = rng.standard_normal((4, 3, 5))
    layer(x)
    layer.backward(dy)
    num = numerical_grad(lambda: float((layer.forward(x) * dy).sum()), layer.weight.data)
    np.testing.assert_allclose(layer.weight.grad, num, rtol=1e-6, atol=1e-8)
    g1 = layer.weight.grad.copy()
    layer(x)
    layer.backward(dy)  # accumulates, as torch
    np.testing.assert_allclose(layer.weight.grad, 2 * g1, rtol=1e-12)
    layer.weight.requires_grad = False
    layer.zero_grad()
    layer(x)
    layer.backward(dy)
    assert layer.weight.grad is None


def test_inplace_variants(rng):
    x = rng.standard_normal((4, 5)).astype(np.float32)
    dy = rng.standard_normal((4, 5)).astype(np.float32)
    for make in (lambda inplace: nn.ReLU(inplace=inplace), lambda inplace: nn.LeakyReLU(0.1, inplace=inplace)):
        ref_layer, layer = make(False), make(True)
        y_ref = ref_layer(x)
        dx_ref = ref_layer.backward(dy)
        xi = x.copy()
        y = layer(xi)
        assert y is xi  # written over the input
        np.testing.assert_array_equal(y, y_ref)
        np.testing.assert_array_equal(layer.backward(dy), dx_ref)
    with pytest.raises(ValueError, match=r"LeakyReLU: inplace=True needs negative_slope >= 0"):
        nn.LeakyReLU(-0.5, inplace=True)


def test_softmax_dim_none_uses_torch_legacy_rule(rng):
    x = rng.standard_normal((2, 3, 4))
    with pytest.warns(UserWarning, match="implicit dimension choice"):
        y = nn.Softmax()(x)
    np.testing.assert_allclose(y, nk.softmax(x, 0))  # 3-D: dim 0, as torch
    with pytest.warns(UserWarning):
        y = nn.LogSoftmax()(x[0])
    np.testing.assert_allclose(y, nk.log_softmax(x[0], 1))


def test_layer_errors(rng):
    x = rng.standard_normal((4, 3)).astype(np.float32)
    for layer in (nn.ReLU(), nn.Sigmoid(), nn.PReLU(), nn.Softmax(1)):
        with pytest.raises(RuntimeError, match=f"{type(layer).__name__}.backward called before forward"):
            layer.backward(x)
        layer(x)
        with pytest.raises(ValueError, match=rf"{type(layer).__name__}.backward: dy has shape \(3, 4\), expected \(4, 3\)"):
            layer.backward(x.T.copy())
    with pytest.raises(TypeError, match=r"PReLU: input has dtype float64, expected float32 \(the dtype of the weight\)"):
        nn.PReLU()(x.astype(np.float64))
    with pytest.raises(ValueError, match=r"PReLU: input has shape \(4, 3\) with 3 channels in dim 1, expected 5"):
        nn.PReLU(5)(x)
    with pytest.raises(ValueError, match=r"PReLU: num_parameters must be >= 1"):
        nn.PReLU(0)
    with pytest.raises(TypeError, match=r"Tanh: input must be a numpy.ndarray, got list"):
        nn.Tanh()([1.0])
    with pytest.raises(TypeError, match=r"sigmoid: x has dtype int64"):
        nn.Sigmoid()(np.ones(3, np.int64))


@requires_torch
def test_prelu_loads_torch_state_dict(rng):
    t = torch.nn.PReLU(5)
    with torch.no_grad():
        t.weight.uniform_(-1, 1)
    layer = nn.PReLU(5)
    layer.load_state_dict({k: v.numpy() for k, v in t.state_dict().items()})
    x = rng.standard_normal((3, 5, 2)).astype(np.float32)
    np.testing.assert_allclose(layer(x), t(torch.from_numpy(x)).detach().numpy(), rtol=1e-6)


@requires_torch
def test_mlp_with_activations_matches_torch(rng):
    """Linear -> PReLU -> Linear -> SiLU -> Linear -> LogSoftmax, forward and backward vs torch."""
    model = nn.Sequential(nn.Linear(6, 8, dtype=np.float64), nn.PReLU(8, dtype=np.float64),
                          nn.Linear(8, 7, dtype=np.float64), nn.SiLU(), nn.Linear(7, 4, dtype=np.float64),
                          nn.LogSoftmax(1))
    tmodel = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.PReLU(8), torch.nn.Linear(8, 7), torch.nn.SiLU(),
                                 torch.nn.Linear(7, 4), torch.nn.LogSoftmax(1)).double()
    tmodel.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in model.state_dict().items()})
    x = rng.standard_normal((10, 6))
    dy = rng.standard_normal((10, 4))
    tx = torch.from_numpy(x.copy()).requires_grad_(True)
    ty = tmodel(tx)
    ty.backward(torch.from_numpy(dy))
    y = model(x)
    dx = model.backward(dy)
    assert_close(y, ty.detach().numpy(), np.float64, scale=10)
    assert_close(dx, tx.grad.numpy(), np.float64, scale=10)
    for (name, p), (tname, tp) in zip(model.named_parameters(), tmodel.named_parameters()):
        assert name == tname
        assert_close(p.grad, tp.grad.numpy(), np.float64, scale=10)
