"""nn.BatchNorm1d / nn.BatchNorm2d layers against torch modules with copied weights."""

import numpy as np
import pytest

import nnkern as nk
from conftest import assert_bitwise_equal, numerical_grad, requires_torch, torch


def torch_bn(cls_name, c, **kw):
    return getattr(torch.nn, cls_name)(c, **kw).double()


def copy_into_torch(layer, tlayer):
    sd = {k: torch.from_numpy(np.array(v)) for k, v in layer.state_dict().items()}
    tlayer.load_state_dict(sd)


TOL64 = dict(rtol=1e-11, atol=1e-11)


@requires_torch
@pytest.mark.parametrize("cls_name,shape", [("BatchNorm1d", (8, 4)), ("BatchNorm1d", (5, 3, 7)),
                                            ("BatchNorm2d", (4, 3, 6, 5)), ("BatchNorm2d", (2, 5, 9, 9))])
@pytest.mark.parametrize("momentum", [0.1, None, 0.5])
@pytest.mark.parametrize("affine,track", [(True, True), (False, True), (True, False)])
def test_matches_torch_module(rng, cls_name, shape, momentum, affine, track):
    c = shape[1]
    layer = getattr(nk.nn, cls_name)(c, momentum=momentum, affine=affine, track_running_stats=track).to(np.float64)
    tlayer = torch_bn(cls_name, c, momentum=momentum, affine=affine, track_running_stats=track)
    if affine:
        layer.weight.data[...] = rng.uniform(0.5, 1.5, c)
        layer.bias.data[...] = rng.standard_normal(c)
    copy_into_torch(layer, tlayer)
    assert list(layer.state_dict()) == list(tlayer.state_dict())
    for step in range(3):
        x = rng.standard_normal(shape) * (1 + step) + step
        dy = rng.standard_normal(shape)
        tx = torch.tensor(x, requires_grad=True)
        ty = tlayer(tx)
        ty.backward(torch.from_numpy(dy))
        y = layer(x)
        dx = layer.backward(dy)
        np.testing.assert_allclose(y, ty.detach().numpy(), **TOL64)
        np.testing.assert_allclose(dx, tx.grad.numpy(), **TOL64)
    if affine:  # grads accumulated over the 3 steps, as torch's
        np.testing.assert_allclose(layer.weight.grad, tlayer.weight.grad.numpy(), **TOL64)
        np.testing.assert_allclose(layer.bias.grad, tlayer.bias.grad.numpy(), **TOL64)
    for k, v in tlayer.state_dict().items():
        np.testing.assert_allclose(layer.state_dict()[k], v.numpy(), **TOL64, err_msg=k)
    # eval mode (running statistics, or batch statistics without them)
    layer.eval()
    tlayer.eval()
    x = rng.standard_normal(shape)
    dy = rng.standard_normal(shape)
    tx = torch.tensor(x, requires_grad=True)
    ty = tlayer(tx)
    ty.backward(torch.from_numpy(dy))
    np.testing.assert_allclose(layer(x), ty.detach().numpy(), **TOL64)
    np.testing.assert_allclose(layer.backward(dy), tx.grad.numpy(), **TOL64)
    if track:
        assert int(layer.num_batches_tracked) == 3


@requires_torch
def test_state_dict_round_trip_float32(rng):
    tlayer = torch.nn.BatchNorm2d(6)
    with torch.no_grad():
        for _ in range(2):
            tlayer(torch.randn(4, 6, 5, 5) * 3 + 1)
        tlayer.weight.uniform_(0.5, 2.0)
        tlayer.bias.normal_()
    layer = nk.nn.BatchNorm2d(6)
    layer.load_state_dict({k: v.numpy() for k, v in tlayer.state_dict().items()})
    assert layer.num_batches_tracked.dtype == np.int64 and int(layer.num_batches_tracked) == 2
    tlayer.eval()
    layer.eval()
    x = rng.standard_normal((3, 6, 4, 4)).astype(np.float32)
    with torch.no_grad():
        np.testing.assert_allclose(layer(x), tlayer(torch.from_numpy(x)).numpy(), rtol=1e-5, atol=1e-5)
    # and back into a fresh torch module
    t2 = torch.nn.BatchNorm2d(6)
    t2.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in layer.state_dict().items()})
    t2.eval()
    with torch.no_grad():
        np.testing.assert_allclose(t2(torch.from_numpy(x)).numpy(), layer(x), rtol=1e-6, atol=1e-6)


def test_layer_gradcheck(rng):
    layer = nk.nn.BatchNorm1d(3).to(np.float64)
    layer.weight.data[...] = rng.uniform(0.5, 1.5, 3)
    layer.bias.data[...] = rng.standard_normal(3)
    x = rng.standard_normal((6, 3, 4))
    proj = rng.standard_normal(x.shape)

    def loss():
        layer.running_mean[...] = 0
        layer.running_var[...] = 1
        return float((layer(x) * proj).sum())

    loss()
    layer.zero_grad()
    dx = layer.backward(proj)
    np.testing.assert_allclose(dx, numerical_grad(loss, x), rtol=1e-6, atol=1e-7)
    g = layer.weight.grad.copy()
    np.testing.assert_allclose(g, numerical_grad(loss, layer.weight.data), rtol=1e-6, atol=1e-7)


def test_defaults_train_eval_and_buffers():
    bn = nk.nn.BatchNorm2d(4)
    assert bn.weight.data.dtype == np.float32 and np.all(bn.weight.data == 1) and np.all(bn.bias.data == 0)
    assert np.all(bn.running_mean == 0) and np.all(bn.running_var == 1) and bn.num_batches_tracked.shape == ()
    assert list(bn.state_dict()) == ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    x = np.random.default_rng(0).standard_normal((8, 4, 3, 3)).astype(np.float32) + 2
    bn(x)
    assert int(bn.num_batches_tracked) == 1 and np.all(bn.running_mean > 0.05)
    rm = bn.running_mean.copy()
    bn.eval()
    bn(x)
    assert_bitwise_equal(bn.running_mean, rm)  # eval leaves them alone
    assert int(bn.num_batches_tracked) == 1
    bn.to(np.float64)
    assert bn.running_mean.dtype == np.float64 and bn.num_batches_tracked.dtype == np.int64
    bn.reset_parameters()
    assert np.all(bn.running_mean == 0) and int(bn.num_batches_tracked) == 0
    assert "BatchNorm2d(4, eps=1e-05, momentum=0.1" in repr(bn)
    nostats = nk.nn.BatchNorm1d(3, affine=False, track_running_stats=False)
    assert list(nostats.state_dict()) == [] and list(nostats.parameters()) == []


def test_layer_errors():
    bn = nk.nn.BatchNorm2d(3)
    with pytest.raises(ValueError, match=r"BatchNorm2d: input has shape \(2, 4, 5, 5\), expected \(N, 3, H, W\)"):
        bn(np.ones((2, 4, 5, 5), np.float32))
    with pytest.raises(ValueError,
                       match=r"BatchNorm1d: input has shape \(2, 4, 5, 5\), expected \(N, 3\) or \(N, 3, L\)"):
        nk.nn.BatchNorm1d(3)(np.ones((2, 4, 5, 5), np.float32))
    with pytest.raises(TypeError, match=r"BatchNorm2d: input has dtype float64, expected float32"):
        bn(np.ones((2, 3, 5, 5)))
    with pytest.raises(RuntimeError, match=r"BatchNorm2d.backward called before forward"):
        bn.backward(np.ones((2, 3, 5, 5), np.float32))
    bn(np.random.default_rng(0).standard_normal((2, 3, 5, 5)).astype(np.float32))
    with pytest.raises(ValueError, match=r"BatchNorm2d.backward: dy has shape \(2, 3, 5\), expected \(2, 3, 5, 5\)"):
        bn.backward(np.ones((2, 3, 5), np.float32))
    with pytest.raises(ValueError, match=r"BatchNorm1d: momentum must be None or in \[0, 1\], got 2"):
        nk.nn.BatchNorm1d(3, momentum=2)
    with pytest.raises(ValueError, match=r"BatchNorm1d: num_features must be a positive int, got 0"):
        nk.nn.BatchNorm1d(0)
    with pytest.raises(ValueError, match=r"expected more than 1 value per channel when training"):
        nk.nn.BatchNorm1d(3)(np.ones((1, 3), np.float32))
