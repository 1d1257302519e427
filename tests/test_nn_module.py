"""Module / Parameter / Sequential / Linear: registration, state_dict, torch interop, gradients."""

import numpy as np
import pytest

import nnkern as nk
from conftest import numerical_grad, requires_torch, torch


def test_registration_and_names():
    class Net(nk.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nk.nn.Linear(4, 3)
            self.fc2 = nk.nn.Linear(3, 2, bias=False)
            self.register_buffer("stat", np.zeros(2, np.float32))

    net = Net()
    assert [n for n, _ in net.named_parameters()] == ["fc1.weight", "fc1.bias", "fc2.weight"]
    # as torch: a module's own parameters and buffers come before its children's
    assert list(net.state_dict()) == ["stat", "fc1.weight", "fc1.bias", "fc2.weight"]
    assert net.num_parameters() == 4 * 3 + 3 + 3 * 2
    net.eval()
    assert not net.training and not net.fc1.training
    net.train()
    assert net.fc2.training


def test_load_state_dict_errors_name_keys_and_shapes():
    m = nk.nn.Sequential(nk.nn.Linear(4, 3), nk.nn.Linear(3, 2))
    sd = {k: v.copy() for k, v in m.state_dict().items()}
    bad = dict(sd)
    bad["1.weight"] = np.zeros((5, 3), np.float32)
    with pytest.raises(ValueError, match=r"shape mismatch for 1.weight: checkpoint \(5, 3\) vs model \(2, 3\)"):
        m.load_state_dict(bad)
    missing = {k: v for k, v in sd.items() if k != "0.bias"}
    with pytest.raises(ValueError, match=r"missing keys: 0.bias"):
        m.load_state_dict(missing)
    extra = dict(sd, **{"2.weight": np.zeros(1)})
    with pytest.raises(ValueError, match=r"unexpected keys: 2.weight"):
        m.load_state_dict(extra)
    assert m.load_state_dict(extra, strict=False) == ([], ["2.weight"])


def test_parameter_rules():
    p = nk.nn.Parameter(np.ones((2, 3)))
    assert p.grad is None and p.shape == (2, 3) and p.dtype == np.float64
    with pytest.raises(TypeError, match="float32 or float64"):
        nk.nn.Parameter(np.ones(3, np.int32))
    with pytest.raises(TypeError, match="numpy.ndarray"):
        nk.nn.Parameter([1.0, 2.0])
    p.data = np.ones((3, 2)).T  # non-contiguous data is copied once into C order
    assert p.data.flags.c_contiguous
    g, acc = p.grad_target()
    assert not acc and p.grad is g
    g2, acc2 = p.grad_target()
    assert acc2 and g2 is g
    p.grad = np.zeros((5,))
    with pytest.raises(ValueError, match="grad has shape"):
        p.grad_target()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_linear_gradients_finite_differences(rng, dtype):
    layer = nk.nn.Linear(5, 4).to(np.float64)
    x = rng.standard_normal((3, 2, 5))
    rep = nk.gradcheck(layer, x)
    assert rep.ok, str(rep)
    # and the report can fail: a wrong backward is caught
    class Broken(nk.nn.Linear):
        def backward(self, dy):
            return 1.01 * super().backward(dy)

    b = Broken(5, 4).to(np.float64)
    assert not nk.gradcheck(b, x).ok


def test_linear_grads_accumulate(rng):
    layer = nk.nn.Linear(3, 2)
    x = rng.standard_normal((4, 3)).astype(np.float32)
    dy = rng.standard_normal((4, 2)).astype(np.float32)
    layer(x)
    layer.backward(dy)
    g1 = layer.weight.grad.copy()
    layer(x)
    layer.backward(dy)
    np.testing.assert_allclose(layer.weight.grad, 2 * g1, rtol=1e-6)
    layer.zero_grad()
    assert layer.weight.grad is None
    layer(x)
    layer.backward(dy)
    layer.zero_grad(set_to_none=False)
    assert np.all(layer.weight.grad == 0)


def test_linear_errors():
    layer = nk.nn.Linear(3, 2)
    with pytest.raises(ValueError, match=r"Linear: input has shape \(4, 5\), expected \(..., 3\)"):
        layer(np.zeros((4, 5), np.float32))
    with pytest.raises(TypeError, match="Linear: input has dtype float64, expected float32"):
        layer(np.zeros((4, 3)))


def test_to_float64_converts_everything(rng):
    m = nk.nn.Sequential(nk.nn.Linear(3, 2))
    m.to(np.float64)
    assert all(p.dtype == np.float64 for p in m.parameters())
    y = m(rng.standard_normal((2, 3)))
    assert y.dtype == np.float64


@requires_torch
def test_linear_matches_torch_and_roundtrips_state(rng):
    tm = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Linear(5, 3, bias=False))
    m = nk.nn.Sequential(nk.nn.Linear(6, 5), nk.nn.Linear(5, 3, bias=False))
    m.load_state_dict({k: v.detach().numpy() for k, v in tm.state_dict().items()})
    x = rng.standard_normal((7, 6)).astype(np.float32)
    dy = rng.standard_normal((7, 3)).astype(np.float32)
    xt = torch.from_numpy(x).requires_grad_()
    yt = tm(xt)
    yt.backward(torch.from_numpy(dy))
    y = m(x)
    dx = m.backward(dy)
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-5, atol=1e-6)
    for (name, p), (tname, tp) in zip(m.named_parameters(), tm.named_parameters()):
        assert name == tname
        np.testing.assert_allclose(p.grad, tp.grad.numpy(), rtol=1e-5, atol=1e-6)
    # and back into torch
    tm2 = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Linear(5, 3, bias=False))
    tm2.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in m.state_dict().items()})
    np.testing.assert_allclose(tm2(torch.from_numpy(x)).detach().numpy(), y, rtol=1e-5, atol=1e-6)


@requires_torch
def test_default_init_matches_torch_distribution():
    # torch's Linear default: weight and bias ~ U(-1/sqrt(in), 1/sqrt(in))
    layer = nk.nn.Linear(400, 300)
    bound = 1 / np.sqrt(400)
    assert np.abs(layer.weight.data).max() <= bound
    assert np.abs(layer.weight.data).max() > 0.95 * bound
    assert abs(layer.weight.data.std() - bound / np.sqrt(3)) < 0.02 * bound
    assert np.abs(layer.bias.data).max() <= bound


def test_sequential_indexing():
    m = nk.nn.Sequential(nk.nn.Linear(2, 2), nk.nn.Identity(), nk.nn.Linear(2, 1))
    assert len(m) == 3 and isinstance(m[1], nk.nn.Identity)
    assert len(m[1:]) == 2
    assert "Linear(in_features=2, out_features=2, bias=True)" in repr(m)
