"""nk.nn.Conv2d / Conv1d / Flatten: torch-compatible parameters, init, forward/backward, grad accumulation."""

import math

import numpy as np
import pytest

import nnkern as nk
from conftest import numerical_grad, requires_torch, torch

# torch warns that it pads a copy for 'same' with even kernels; that is torch's business.
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same'")


def _to_torch_module(layer, torch_cls, **kw):
    m = torch_cls(layer.in_channels, layer.out_channels, layer.kernel_size, stride=layer.stride,
                  padding=layer.padding, dilation=layer.dilation, groups=layer.groups, bias=layer.bias is not None,
                  dtype=torch.float64, **kw)
    m.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in layer.state_dict().items()})
    return m


LAYER_CASES = [
    dict(cls="Conv2d", args=(3, 8, 3), kw=dict(padding=1), x=(2, 3, 9, 8)),
    dict(cls="Conv2d", args=(4, 6, (2, 3)), kw=dict(stride=(2, 1), dilation=(1, 2), groups=2, bias=False), x=(3, 4, 9, 10)),
    dict(cls="Conv2d", args=(24, 24, 3), kw=dict(padding="same", groups=24), x=(2, 24, 7, 7)),
    dict(cls="Conv2d", args=(32, 16, 4), kw=dict(padding="same"), x=(2, 32, 6, 5)),
    dict(cls="Conv1d", args=(5, 7, 3), kw=dict(stride=2, padding=2), x=(4, 5, 13)),
    dict(cls="Conv1d", args=(6, 6, 2), kw=dict(padding="same", groups=3), x=(2, 6, 9)),
]


@requires_torch
@pytest.mark.parametrize("case", LAYER_CASES, ids=[f"{c['cls']}-{i}" for i, c in enumerate(LAYER_CASES)])
def test_layer_matches_torch(case):
    rng = np.random.default_rng(0)
    layer = getattr(nk.nn, case["cls"])(*case["args"], **case["kw"], dtype=np.float64)
    tm = _to_torch_module(layer, getattr(torch.nn, case["cls"]))
    x = rng.standard_normal(case["x"])
    tx = torch.from_numpy(x).requires_grad_()
    y = layer(x)
    ty = tm(tx)
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-11, atol=1e-11)
    # two backward passes: gradients accumulate into .grad as torch's do
    for step in range(2):
        dy = rng.standard_normal(y.shape)
        if step == 1:
            y = layer(x)
            ty = tm(tx)
        dx = layer.backward(dy)
        tx.grad = None
        ty.backward(torch.from_numpy(dy))
        np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-11, atol=1e-11)
        np.testing.assert_allclose(layer.weight.grad, tm.weight.grad.numpy(), rtol=1e-11, atol=1e-11)
        if layer.bias is not None:
            np.testing.assert_allclose(layer.bias.grad, tm.bias.grad.numpy(), rtol=1e-11, atol=1e-11)


def test_state_dict_names_and_shapes():
    layer = nk.nn.Conv2d(6, 4, (3, 2), groups=2)
    sd = layer.state_dict()
    assert list(sd) == ["weight", "bias"]
    assert sd["weight"].shape == (4, 3, 3, 2) and sd["bias"].shape == (4,)
    assert sd["weight"].dtype == np.float32
    assert list(nk.nn.Conv1d(2, 3, 4, bias=False).state_dict()) == ["weight"]
    assert nk.nn.Conv1d(2, 3, 4).weight.shape == (3, 2, 4)


@requires_torch
def test_loads_torch_state_dict():
    tm = torch.nn.Conv2d(3, 5, 3, padding=1)
    layer = nk.nn.Conv2d(3, 5, 3, padding=1)
    layer.load_state_dict({k: v.detach().numpy() for k, v in tm.state_dict().items()})
    x = np.random.default_rng(1).standard_normal((2, 3, 6, 6)).astype(np.float32)
    with torch.no_grad():
        np.testing.assert_allclose(layer(x), tm(torch.from_numpy(x)).numpy(), rtol=1e-5, atol=1e-5)


def test_default_init_is_torchs():
    """kaiming_uniform_(a=sqrt(5)) gives U(+-1/sqrt(fan_in)) for the weight; the bias the same bound."""
    nk.manual_seed(0)
    layer = nk.nn.Conv2d(16, 64, 3, groups=2)
    fan_in = 8 * 9
    bound = 1 / math.sqrt(fan_in)
    w, b = layer.weight.data, layer.bias.data
    assert np.abs(w).max() <= bound and np.abs(b).max() <= bound
    assert np.abs(w).max() > 0.95 * bound  # really spread over the interval
    assert abs(w.std() - bound / math.sqrt(3)) < 0.05 * bound  # uniform: std = bound/sqrt(3)
    assert abs(w.mean()) < 0.05 * bound


def test_finite_differences_through_layer():
    rng = np.random.default_rng(3)
    layer = nk.nn.Conv2d(2, 3, 2, stride=1, padding=1, dtype=np.float64)
    x = rng.standard_normal((2, 2, 3, 3))
    dy = rng.standard_normal(layer(x).shape)

    def loss():
        return float(np.sum(layer.forward(x) * dy))

    layer.zero_grad()
    layer(x)
    dx = layer.backward(dy)
    np.testing.assert_allclose(dx, numerical_grad(loss, x), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(layer.weight.grad, numerical_grad(loss, layer.weight.data), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(layer.bias.grad, numerical_grad(loss, layer.bias.data), rtol=1e-6, atol=1e-7)


def test_grad_accumulates_and_frozen_parameters():
    rng = np.random.default_rng(4)
    layer = nk.nn.Conv2d(3, 4, 3)
    x = rng.standard_normal((2, 3, 5, 5)).astype(np.float32)
    dy = rng.standard_normal((2, 4, 3, 3)).astype(np.float32)
    layer(x)
    layer.backward(dy)
    g1w, g1b = layer.weight.grad.copy(), layer.bias.grad.copy()
    gw_buf = layer.weight.grad
    layer(x)
    layer.backward(dy)
    assert layer.weight.grad is gw_buf  # added in place into the existing buffer
    np.testing.assert_allclose(layer.weight.grad, 2 * g1w, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(layer.bias.grad, 2 * g1b, rtol=1e-6, atol=1e-6)
    # bias gradient cleared, weight gradient kept: the weight accumulates, the bias starts afresh
    layer.bias.grad = None
    layer(x)
    layer.backward(dy)
    np.testing.assert_allclose(layer.weight.grad, 3 * g1w, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(layer.bias.grad, g1b, rtol=1e-6, atol=1e-6)
    layer.zero_grad()
    layer.weight.requires_grad = False
    layer(x)
    layer.backward(dy)
    assert layer.weight.grad is None and layer.bias.grad is not None


def test_to_float64_and_dtype_errors():
    layer = nk.nn.Conv2d(2, 3, 3).to(np.float64)
    assert layer.weight.dtype == np.float64
    y = layer(np.zeros((1, 2, 4, 4)))
    assert y.dtype == np.float64
    with pytest.raises(TypeError, match=r"Conv2d: input has dtype float32, expected float64"):
        layer(np.zeros((1, 2, 4, 4), np.float32))
    with pytest.raises(ValueError, match=r"Conv2d: input has shape \(1, 3, 4, 4\), expected \(N, C, H, W\) with C = in_channels = 2"):
        layer(np.zeros((1, 3, 4, 4)))
    with pytest.raises(RuntimeError, match="Conv1d.backward called before forward"):
        nk.nn.Conv1d(1, 1, 1).backward(np.zeros((1, 1, 1), np.float32))


@pytest.mark.parametrize("args,kw,match", [
    ((3, 4, 3), dict(groups=2), "Conv2d: in_channels=3 is not divisible by groups=2"),
    ((4, 3, 3), dict(groups=2), "Conv2d: out_channels=3 is not divisible by groups=2"),
    ((4, 4, 0), {}, "Conv2d: kernel_size must be >= 1"),
    ((4, 4, 3), dict(padding="same", stride=2), "Conv2d: padding='same' needs stride 1"),
    ((4, 4, 3), dict(padding_mode="reflect"), "Conv2d: padding_mode must be 'zeros'"),
    ((4, 4, 3), dict(stride=0), "Conv2d: stride must be >= 1"),
])
def test_constructor_errors(args, kw, match):
    with pytest.raises(ValueError, match=match):
        nk.nn.Conv2d(*args, **kw)


@requires_torch
@pytest.mark.parametrize("start,end", [(1, -1), (0, -1), (2, 3), (-3, -2), (1, 1)])
def test_flatten_matches_torch(start, end):
    x = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    f = nk.nn.Flatten(start, end)
    y = f(x)
    assert y.shape == torch.nn.Flatten(start, end)(torch.from_numpy(x)).shape
    np.testing.assert_array_equal(y.ravel(), x.ravel())
    dy = np.random.default_rng(0).standard_normal(y.shape).astype(np.float32)
    np.testing.assert_array_equal(f.backward(dy), dy.reshape(x.shape))


def test_flatten_edge_cases():
    assert nk.nn.Flatten()(np.zeros((0, 3, 2))).shape == (0, 6)
    with pytest.raises(ValueError, match="Flatten: start_dim=3, end_dim=-1 do not select dims"):
        nk.nn.Flatten(3)(np.zeros((2, 3)))


@requires_torch
def test_small_cnn_matches_torch():
    """Conv2d -> Conv2d(stride 2, groups) -> Flatten -> Linear, forward and all gradients vs torch."""
    nk.manual_seed(1)
    net = nk.nn.Sequential(nk.nn.Conv2d(3, 8, 3, padding=1), nk.nn.Conv2d(8, 16, 3, stride=2, padding=1, groups=2),
                           nk.nn.Flatten(), nk.nn.Linear(16 * 4 * 4, 5)).to(np.float64)
    tnet = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.Conv2d(8, 16, 3, stride=2, padding=1, groups=2),
                               torch.nn.Flatten(), torch.nn.Linear(16 * 4 * 4, 5)).double()
    tnet.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in net.state_dict().items()})
    x = np.random.default_rng(2).standard_normal((4, 3, 8, 8))
    y = net(x)
    ty = tnet(torch.from_numpy(x))
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-10, atol=1e-10)
    dy = np.random.default_rng(3).standard_normal(y.shape)
    net.zero_grad()
    net.backward(dy)
    ty.backward(torch.from_numpy(dy))
    grads = dict(tnet.named_parameters())
    for name, p in net.named_parameters():
        np.testing.assert_allclose(p.grad, grads[name].grad.numpy(), rtol=1e-10, atol=1e-10, err_msg=name)
