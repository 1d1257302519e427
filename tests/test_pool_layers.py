"""nnkern.nn pooling layers: forward/backward against torch.nn and the functional kernels."""

import numpy as np
import pytest

import nnkern as nk
from conftest import assert_close, requires_torch, torch

LAYERS = [
    ("MaxPool2d", dict(kernel_size=2)),
    ("MaxPool2d", dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
    ("MaxPool2d", dict(kernel_size=(3, 2), stride=(1, 2), padding=(1, 0), dilation=(2, 1))),
    ("AvgPool2d", dict(kernel_size=2)),
    ("AvgPool2d", dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False)),
    ("AvgPool2d", dict(kernel_size=(2, 3), stride=1, divisor_override=5)),
    ("AdaptiveAvgPool2d", dict(output_size=(3, 5))),
    ("AdaptiveAvgPool2d", dict(output_size=1)),
    ("AdaptiveMaxPool2d", dict(output_size=(4, 3))),
    ("AdaptiveMaxPool2d", dict(output_size=(None, 2))),
]


@requires_torch
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name,kwargs", LAYERS)
def test_layers_match_torch(name, kwargs, dtype):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 11, 13)).astype(dtype)
    layer = getattr(nk.nn, name)(**kwargs)
    tlayer = getattr(torch.nn, name)(**kwargs)
    y = layer(x)
    tx = torch.from_numpy(x).requires_grad_(True)
    ty = tlayer(tx)
    assert_close(y, ty.detach().numpy(), dtype)
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx = layer.backward(dy)
    ty.backward(torch.from_numpy(dy))
    assert dx.shape == x.shape and dx.dtype == x.dtype
    assert_close(dx, tx.grad.numpy(), dtype)
    assert list(layer.parameters()) == [] and layer.state_dict() == {} == dict(tlayer.state_dict())


@requires_torch
@pytest.mark.parametrize("name", ["MaxPool2d", "AdaptiveMaxPool2d"])
def test_return_indices(name):
    x = np.random.default_rng(1).standard_normal((1, 2, 8, 9)).astype(np.float32)
    arg = dict(kernel_size=3, stride=2, padding=1) if name == "MaxPool2d" else dict(output_size=(3, 4))
    layer = getattr(nk.nn, name)(**arg, return_indices=True)
    y, idx = layer(x)
    ty, ti = getattr(torch.nn, name)(**arg, return_indices=True)(torch.from_numpy(x))
    np.testing.assert_array_equal(y, ty.numpy())
    np.testing.assert_array_equal(idx, ti.numpy())
    assert layer.backward(np.ones_like(y)).shape == x.shape


def test_backward_before_forward():
    for layer in [nk.nn.MaxPool2d(2), nk.nn.AvgPool2d(2), nk.nn.AdaptiveAvgPool2d(2), nk.nn.AdaptiveMaxPool2d(2)]:
        with pytest.raises(RuntimeError, match=rf"{type(layer).__name__}.backward called before forward"):
            layer.backward(np.ones((1, 1, 2, 2), np.float32))


def test_layers_match_functional_and_chain():
    x = np.random.default_rng(2).standard_normal((2, 4, 16, 16)).astype(np.float32)
    model = nk.nn.Sequential(nk.nn.MaxPool2d(2), nk.nn.AvgPool2d(3, 1, 1), nk.nn.AdaptiveMaxPool2d(3),
                             nk.nn.AdaptiveAvgPool2d(1))
    y = model(x)
    y1, i1 = nk.max_pool2d(x, 2)
    y2 = nk.avg_pool2d(y1, 3, 1, 1)
    y3, i3 = nk.adaptive_max_pool2d(y2, 3)
    y4 = nk.adaptive_avg_pool2d(y3, 1)
    np.testing.assert_array_equal(y, y4)
    dy = np.ones_like(y)
    d3 = nk.adaptive_avg_pool2d_backward(dy, y3.shape)
    d2 = nk.adaptive_max_pool2d_backward(d3, i3, y2.shape)
    d1 = nk.avg_pool2d_backward(d2, y1.shape, 3, 1, 1)
    np.testing.assert_array_equal(model.backward(dy), nk.max_pool2d_backward(d1, i1, x.shape))
    assert "kernel_size=2" in repr(model[0]) and "output_size=3" in repr(model[2])
