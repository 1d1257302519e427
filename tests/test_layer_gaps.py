"""Layer checks from issue 5's list that the per-family files leave out: conv layers vs torch in
float32 (the family file checks float64), Linear vs torch in float64 (test_nn_module checks
float32), nk.gradcheck through the pooling layers and through a whole CNN in train mode, and the
conv layers' cached option normalisation following attribute changes."""

import numpy as np
import pytest

import nnkern as nk
from conftest import requires_torch, torch

CONV_CASES = [
    ("Conv2d", (3, 8, 3), dict(padding=1), (2, 3, 9, 8)),
    ("Conv2d", (4, 6, (2, 3)), dict(stride=(2, 1), dilation=(1, 2), groups=2, bias=False), (3, 4, 9, 10)),
    ("Conv1d", (5, 7, 3), dict(stride=2, padding=2), (4, 5, 13)),
]


@requires_torch
@pytest.mark.parametrize("cls,args,kw,xshape", CONV_CASES)
def test_conv_layers_match_torch_float32(cls, args, kw, xshape):
    rng = np.random.default_rng(0)
    layer = getattr(nk.nn, cls)(*args, **kw)
    tm = getattr(torch.nn, cls)(*args, **kw)
    tm.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in layer.state_dict().items()})
    x = rng.standard_normal(xshape).astype(np.float32)
    tx = torch.from_numpy(x).requires_grad_()
    y, ty = layer(x), tm(tx)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-4, atol=1e-5)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx = layer.backward(dy)
    ty.backward(torch.from_numpy(dy))
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-4, atol=1e-5)
    for name, p in layer.named_parameters():
        np.testing.assert_allclose(p.grad, dict(tm.named_parameters())[name].grad.numpy(), rtol=1e-4, atol=1e-4,
                                   err_msg=name)


@requires_torch
def test_linear_matches_torch_float64():
    rng = np.random.default_rng(1)
    layer = nk.nn.Linear(6, 5, dtype=np.float64)
    tm = torch.nn.Linear(6, 5).double()
    tm.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in layer.state_dict().items()})
    x = rng.standard_normal((3, 4, 6))  # leading dims are batch dims
    tx = torch.from_numpy(x).requires_grad_()
    y, ty = layer(x), tm(tx)
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-12, atol=1e-12)
    dy = rng.standard_normal(y.shape)
    dx = layer.backward(dy)
    ty.backward(torch.from_numpy(dy))
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(layer.weight.grad, tm.weight.grad.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(layer.bias.grad, tm.bias.grad.numpy(), rtol=1e-12, atol=1e-12)


POOLS = [
    ("MaxPool2d", dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
    ("AvgPool2d", dict(kernel_size=3, stride=2, padding=1, count_include_pad=False)),
    ("AdaptiveAvgPool2d", dict(output_size=(3, 2))),
    ("AdaptiveMaxPool2d", dict(output_size=(2, 3))),
]


@pytest.mark.parametrize("name,kw", POOLS)
def test_pool_layers_gradcheck(name, kw):
    # Distinct, well separated values: no ties and no max switching within +-eps.
    rng = np.random.default_rng(2)
    x = rng.permutation(2 * 2 * 7 * 6).reshape(2, 2, 7, 6) * 0.1
    report = nk.gradcheck(getattr(nk.nn, name)(**kw), x)
    assert report.ok, str(report)


def test_whole_cnn_gradcheck_in_train_mode():
    """Every parameter and the input of Conv -> BatchNorm (batch statistics) -> ReLU -> MaxPool ->
    Flatten -> Linear -> Tanh, checked together through Sequential.backward."""
    nk.manual_seed(4)
    model = nk.nn.Sequential(nk.nn.Conv2d(2, 3, 3, padding=1), nk.nn.BatchNorm2d(3), nk.nn.ReLU(),
                             nk.nn.MaxPool2d(2), nk.nn.Flatten(), nk.nn.Linear(3 * 3 * 3, 4), nk.nn.Tanh())
    model.to(np.float64)
    x = np.random.default_rng(5).standard_normal((3, 2, 6, 6))
    report = nk.gradcheck(model, x, rtol=1e-5, atol=1e-7)
    assert report.ok, str(report)
    names = {row[0] for row in report.rows}
    assert {"0.weight", "0.bias", "1.weight", "1.bias", "5.weight", "5.bias"} <= names


def test_gradcheck_catches_a_wrong_layer_gradient():
    """The model-level check above can fail: a layer whose backward is off by a factor is reported."""

    class BadScale(nk.nn.Module):
        def forward(self, x):
            return 2.0 * x

        def backward(self, dy):
            return 2.1 * dy

    nk.manual_seed(4)
    model = nk.nn.Sequential(nk.nn.Linear(5, 3, dtype=np.float64), BadScale(), nk.nn.Tanh())
    report = nk.gradcheck(model, np.random.default_rng(6).standard_normal((4, 5)))
    assert not report.ok


@pytest.mark.parametrize("cls", ["Conv2d", "Conv1d"])
def test_conv_layer_follows_option_changes(cls):
    """The layer caches its normalised options; changing padding/stride/dilation (or swapping in a
    weight of another shape) after a call takes effect, as with the functional ops."""
    nd = 2 if cls == "Conv2d" else 1
    F = nk.conv2d if nd == 2 else nk.conv1d
    layer = getattr(nk.nn, cls)(3, 4, 3, dtype=np.float64)
    x = np.random.default_rng(7).standard_normal((2, 3) + (9,) * nd)
    np.testing.assert_array_equal(layer(x), F(x, layer.weight.data, layer.bias.data))
    for attr, value in (("padding", (1,) * nd), ("stride", (2,) * nd), ("dilation", (2,) * nd)):
        setattr(layer, attr, value)
        y = layer(x)
        expect = F(x, layer.weight.data, layer.bias.data, stride=layer.stride, padding=layer.padding,
                   dilation=layer.dilation)
        assert y.shape == expect.shape, attr
        np.testing.assert_array_equal(y, expect)
        dx = layer.backward(np.ones_like(y))
        assert dx.shape == x.shape
    layer.weight.data = np.random.default_rng(8).standard_normal((4, 3) + (5,) * nd)
    y = layer(x)
    np.testing.assert_array_equal(y, F(x, layer.weight.data, layer.bias.data, stride=layer.stride,
                                       padding=layer.padding, dilation=layer.dilation))
    layer.padding = (-1,) * nd
    with pytest.raises(ValueError, match="padding must be >= 0"):
        layer(x)
