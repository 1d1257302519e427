"""nnkern.optim optimizer classes against torch.optim: identical trajectories with several param
groups, gradients missing on some steps, state_dict save/resume (bitwise identical to an
uninterrupted run), loading a torch state_dict (converted to NumPy) and converting ours back,
zero_grad, closures, add_param_group, constructor errors."""

import copy

import numpy as np
import pytest

import nnkern as nk
from conftest import assert_bitwise_equal, requires_torch, torch
from nnkern.nn import Parameter
from test_optim_kernels import CONFIGS

CLASSES = {"adam": "Adam", "adamw": "AdamW", "sgd": "SGD", "adagrad": "Adagrad", "rmsprop": "RMSprop",
           "adadelta": "Adadelta"}
SHAPES = [(6, 4), (4,), (9,), (2, 3, 5), (1,)]
TOL = {np.float32: dict(rtol=1e-5, atol=1e-6), np.float64: dict(rtol=1e-12, atol=1e-13)}


def class_kwargs(cfg):
    kw = dict(cfg)
    if "decoupled" in kw:
        kw["decoupled_weight_decay"] = kw.pop("decoupled")
    return kw


def groups_of(params, name):
    """Two param groups: defaults, and a second one with its own lr (and weight decay)."""
    second = {"params": params[2:], "lr": 0.02 if name != "adadelta" else 0.7}
    if name != "adamw":
        second["weight_decay"] = 0.05
    return [{"params": params[:2]}, second]


def make(rng, dtype):
    return [rng.standard_normal(s).astype(dtype) for s in SHAPES]


def ours_and_torch(name, cfg, values, groups=True, torch_extra=None):
    ps = [Parameter(v.copy()) for v in values]
    opt = getattr(nk.optim, CLASSES[name])(groups_of(ps, name) if groups else ps, **class_kwargs(cfg))
    tps = [torch.tensor(v.copy(), requires_grad=True) for v in values]
    topt = getattr(torch.optim, CLASSES[name])(groups_of(tps, name) if groups else tps, **class_kwargs(cfg),
                                               **(torch_extra or dict(foreach=False)))
    return ps, opt, tps, topt


def set_grads(rng, ps, tps, step, skip_every=3):
    # Parameter 1 gets no gradient every third step (skipped: its state does not advance).
    for i, (p, t) in enumerate(zip(ps, tps)):
        if i == 1 and step % skip_every == 0:
            p.grad, t.grad = None, None
            continue
        g = rng.standard_normal(p.shape).astype(p.dtype)
        p.grad = g
        t.grad = torch.tensor(g.copy())


def assert_params_close(ps, tps, dtype):
    for i, (p, t) in enumerate(zip(ps, tps)):
        np.testing.assert_allclose(p.data, t.detach().numpy(), err_msg=f"param {i}", **TOL[dtype])


def to_numpy(obj):
    if torch is not None and isinstance(obj, torch.Tensor):
        return obj.detach().numpy().copy()
    if isinstance(obj, dict):
        return {k: to_numpy(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [to_numpy(v) for v in obj]
    return obj


def to_torch(obj):
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(obj.copy())
    if isinstance(obj, dict):
        return {k: to_torch(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [to_torch(v) for v in obj]
    return obj


CLASS_CASES = [(name, i) for name in CLASSES for i in range(len(CONFIGS[name]))]


def case_id(case):
    name, i = case
    return f"{name}-{i}"


@requires_torch
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CLASS_CASES, ids=case_id)
def test_class_matches_torch(rng, case, dtype):
    name, i = case
    cfg = CONFIGS[name][i]
    ps, opt, tps, topt = ours_and_torch(name, cfg, make(rng, dtype))
    for step in range(1, 31):
        set_grads(rng, ps, tps, step)
        opt.step()
        topt.step()
    assert_params_close(ps, tps, dtype)
    # Same state layout: keys, steps, buffers
    sd, tsd = opt.state_dict(), to_numpy(topt.state_dict())
    assert sd["state"].keys() == tsd["state"].keys()
    for k in sd["state"]:
        assert list(sd["state"][k].keys()) == list(tsd["state"][k].keys())
        for key, val in sd["state"][k].items():
            if key == "step":
                assert val.dtype == np.float32 and val.shape == () and float(val) == float(tsd["state"][k][key])
            else:
                np.testing.assert_allclose(val, tsd["state"][k][key], **TOL[dtype])
    assert len(sd["param_groups"]) == 2
    for g, tg in zip(sd["param_groups"], tsd["param_groups"]):
        assert g["params"] == tg["params"]
        for key in g:
            if key not in ("params", "foreach"):
                assert g[key] == tg[key], key


@requires_torch
@pytest.mark.parametrize("name", ["adam", "adamw", "sgd", "adagrad"])
def test_class_matches_torch_fused(rng, name):
    cfg = CONFIGS[name][-1] if name != "sgd" else CONFIGS[name][5]
    ps, opt, tps, topt = ours_and_torch(name, cfg, make(rng, np.float32), torch_extra=dict(fused=True))
    for step in range(1, 31):
        set_grads(rng, ps, tps, step)
        opt.step()
        topt.step()
    assert_params_close(ps, tps, np.float32)


@pytest.mark.parametrize("name,i", [(n, len(CONFIGS[n]) - 1) for n in CLASSES] + [("sgd", 2)])
def test_state_dict_resume_is_bitwise(rng, name, i):
    cfg = CONFIGS[name][i]
    values = make(rng, np.float32)
    grads = [[rng.standard_normal(s).astype(np.float32) for s in SHAPES] for _ in range(20)]

    def build(vals):
        ps = [Parameter(v.copy()) for v in vals]
        return ps, getattr(nk.optim, CLASSES[name])(groups_of(ps, name), **class_kwargs(cfg))

    def run(ps, opt, steps):
        for t in steps:
            for p, g in zip(ps, grads[t]):
                p.grad = g.copy()
            opt.step()

    ps, opt = build(values)
    run(ps, opt, range(20))
    ps2, opt2 = build(values)
    run(ps2, opt2, range(10))
    saved = copy.deepcopy(opt2.state_dict())
    weights = [p.data.copy() for p in ps2]
    run(ps2, opt2, range(10, 13))  # mutate the live optimizer after saving: must not matter
    ps3, opt3 = build(weights)
    opt3.load_state_dict(saved)
    run(ps3, opt3, range(10, 20))
    for a, b in zip(ps, ps3):
        assert_bitwise_equal(a.data, b.data)


@requires_torch
@pytest.mark.parametrize("name,i", [(n, len(CONFIGS[n]) - 1) for n in CLASSES] + [("sgd", 3), ("adam", 2)])
def test_load_torch_state_dict_and_convert_back(rng, name, i):
    cfg = CONFIGS[name][i]
    values = make(rng, np.float64)
    tps = [torch.tensor(v.copy(), requires_grad=True) for v in values]
    topt = getattr(torch.optim, CLASSES[name])(groups_of(tps, name), **class_kwargs(cfg), foreach=False)
    for step in range(1, 11):
        set_grads(rng, [Parameter(t.detach().numpy().copy()) for t in tps], tps, step)
        topt.step()
    # torch -> nnkern: converted state_dict, then both continue
    ps = [Parameter(t.detach().numpy().copy()) for t in tps]
    opt = getattr(nk.optim, CLASSES[name])(groups_of(ps, name), **class_kwargs(cfg))
    opt.load_state_dict(to_numpy(topt.state_dict()))
    for step in range(11, 21):
        set_grads(rng, ps, tps, step)
        opt.step()
        topt.step()
    assert_params_close(ps, tps, np.float64)
    # nnkern -> torch: our state_dict with arrays turned into tensors loads into a fresh torch optimizer
    tps2 = [torch.tensor(p.data.copy(), requires_grad=True) for p in ps]
    topt2 = getattr(torch.optim, CLASSES[name])(groups_of(tps2, name), **class_kwargs(cfg), foreach=False)
    topt2.load_state_dict(to_torch(copy.deepcopy(opt.state_dict())))
    for step in range(21, 31):
        set_grads(rng, ps, tps2, step)
        opt.step()
        topt2.step()
    assert_params_close(ps, tps2, np.float64)


@requires_torch
def test_raw_torch_state_dict_loads_without_conversion(rng):
    # CPU tensors convert through NumPy's array protocol, so even an unconverted dict loads.
    tps = [torch.tensor(v, requires_grad=True) for v in make(rng, np.float32)]
    topt = torch.optim.Adam(tps, lr=0.01)
    for t in tps:
        t.grad = torch.ones_like(t)
    topt.step()
    ps = [Parameter(t.detach().numpy().copy()) for t in tps]
    opt = nk.optim.Adam(ps, lr=0.01)
    opt.load_state_dict(topt.state_dict())
    assert opt.state[ps[0]]["step"] == 1
    np.testing.assert_array_equal(opt.state[ps[0]]["exp_avg"], topt.state[tps[0]]["exp_avg"].numpy())
    assert opt.state[ps[0]]["exp_avg"].flags.c_contiguous and opt.state[ps[0]]["exp_avg"].flags.writeable


def test_load_state_dict_errors(rng):
    ps = [Parameter(v) for v in make(rng, np.float32)]
    opt = nk.optim.Adam(ps)
    for p in ps:
        p.grad = np.ones_like(p.data)
    opt.step()
    sd = copy.deepcopy(opt.state_dict())
    other = nk.optim.Adam([{"params": ps[:2]}, {"params": ps[2:]}])
    with pytest.raises(ValueError, match="loaded state dict has a different number of parameter groups"):
        other.load_state_dict(sd)
    fewer = nk.optim.Adam(ps[:3])
    with pytest.raises(ValueError, match="doesn't match the size of optimizer's group"):
        fewer.load_state_dict(sd)
    sd["state"][0]["exp_avg"] = np.zeros(5)
    with pytest.raises(ValueError, match=r"load_state_dict: state\[0\]\['exp_avg'\] has shape \(5,\), expected "
                                         r"\(6, 4\)"):
        nk.optim.Adam(ps).load_state_dict(sd)


def test_loaded_state_is_copied_and_cast(rng):
    ps = [Parameter(np.zeros(3, np.float32))]
    opt = nk.optim.Adam(ps)
    m = np.arange(3, dtype=np.float64)
    m.flags.writeable = False
    opt.load_state_dict({"state": {0: {"step": np.array(4.0), "exp_avg": m, "exp_avg_sq": [1.0, 1.0, 1.0]}},
                         "param_groups": [{"params": [0], "lr": 0.5}]})
    st = opt.state[ps[0]]
    assert st["step"] == 4
    assert st["exp_avg"].dtype == np.float32 and st["exp_avg"].flags.writeable
    assert not np.shares_memory(st["exp_avg"], m)
    assert opt.param_groups[0]["lr"] == 0.5 and opt.param_groups[0]["betas"] == (0.9, 0.999)  # defaults fill in
    ps[0].grad = np.ones(3, np.float32)
    opt.step()
    assert opt.state[ps[0]]["step"] == 5


def test_skips_params_without_grad_or_frozen(rng):
    a, b, c = (Parameter(np.ones(4)) for _ in range(3))
    b.requires_grad = False
    opt = nk.optim.SGD([a, b, c], lr=0.5, momentum=0.9)
    a.grad = np.ones(4)
    b.grad = np.ones(4)  # frozen: ignored even with a gradient
    opt.step()
    np.testing.assert_array_equal(a.data, 0.5)
    np.testing.assert_array_equal(b.data, 1.0)
    np.testing.assert_array_equal(c.data, 1.0)
    assert b not in opt.state and c not in opt.state
    assert opt.state_dict()["state"].keys() == {0}


def test_zero_grad_and_closure(rng):
    ps = [Parameter(np.ones(3)), Parameter(np.ones(2))]
    opt = nk.optim.Adam(ps)
    for p in ps:
        p.grad = np.full(p.shape, 2.0)
    keep = ps[0].grad
    opt.zero_grad(set_to_none=False)
    assert ps[0].grad is keep and np.all(keep == 0)
    opt.zero_grad()
    assert all(p.grad is None for p in ps)

    calls = []

    def closure():
        calls.append(1)
        for p in ps:
            p.grad = np.ones(p.shape)
        return 1.25

    assert opt.step(closure) == 1.25 and calls == [1]
    assert opt.state[ps[0]]["step"] == 1
    assert opt.step() is None


def test_add_param_group_and_group_options(rng):
    a, b = Parameter(np.ones(3)), Parameter(np.ones(3))
    opt = nk.optim.SGD([a], lr=0.1)
    opt.add_param_group({"params": b, "lr": 0.5})
    assert opt.param_groups[1]["momentum"] == 0 and opt.param_groups[1]["lr"] == 0.5
    a.grad, b.grad = np.ones(3), np.ones(3)
    opt.step()
    np.testing.assert_allclose(a.data, 0.9)
    np.testing.assert_allclose(b.data, 0.5)
    opt.param_groups[0]["lr"] = 0.0  # group options are read on every step
    opt.step()
    np.testing.assert_allclose(a.data, 0.9)
    with pytest.raises(ValueError, match="some parameters appear in more than one parameter group"):
        opt.add_param_group({"params": [a]})
    with pytest.raises(TypeError, match="param_group must be a dict"):
        opt.add_param_group([a])
    # Adagrad creates state for parameters of groups added later, lazily
    ada = nk.optim.Adagrad([a], initial_accumulator_value=0.1)
    assert ada.state[a]["step"] == 0 and np.all(ada.state[a]["sum"] == 0.1)
    ada.add_param_group({"params": [b]})
    ada.step()
    assert ada.state[b]["step"] == 1


def test_named_parameters_and_mixed_dtypes():
    a = Parameter(np.ones(3, np.float32))
    b = Parameter(np.ones(2))
    opt = nk.optim.Adam([("w", a), ("b", b)], lr=0.1)
    assert opt.param_groups[0]["param_names"] == ["w", "b"]
    a.grad, b.grad = np.ones(3, np.float32), np.ones(2)
    opt.step()  # float32 and float64 parameters in one group: one kernel call per dtype
    np.testing.assert_allclose(a.data, 1 - 0.1 / (1 + 1e-8), rtol=1e-6)
    np.testing.assert_allclose(b.data, 1 - 0.1 / (1 + 1e-8), rtol=1e-12)
    assert opt.state[a]["exp_avg"].dtype == np.float32 and opt.state[b]["exp_avg"].dtype == np.float64


def test_bad_gradient_names_the_parameter():
    a, b = Parameter(np.ones(3)), Parameter(np.ones(2))
    opt = nk.optim.Adam([a, b])
    a.grad, b.grad = np.ones(3), np.ones(3)
    with pytest.raises(ValueError, match=r"Adam.step: param_groups\[0\]\['params'\]\[1\] has a gradient of shape "
                                         r"\(3,\) and dtype float64, expected shape \(2,\)"):
        opt.step()
    assert a not in opt.state or opt.state[a]["step"] == 0  # nothing advanced


CTOR_ERRORS = [
    (lambda p: nk.optim.SGD(p, lr=-0.1), ValueError, "Invalid learning rate: -0.1"),
    (lambda p: nk.optim.SGD(p, momentum=-1), ValueError, "Invalid momentum value: -1"),
    (lambda p: nk.optim.SGD(p, nesterov=True), ValueError, "Nesterov momentum requires a momentum and zero dampening"),
    (lambda p: nk.optim.Adam(p, betas=(1.0, 0.9)), ValueError, "Invalid beta parameter at index 0: 1.0"),
    (lambda p: nk.optim.Adam(p, betas=(0.9, 1.5)), ValueError, "Invalid beta parameter at index 1: 1.5"),
    (lambda p: nk.optim.Adam(p, eps=-1), ValueError, "Invalid epsilon value: -1"),
    (lambda p: nk.optim.AdamW(p, weight_decay=-1), ValueError, "Invalid weight_decay value: -1"),
    (lambda p: nk.optim.Adagrad(p, lr_decay=-1), ValueError, "Invalid lr_decay value: -1"),
    (lambda p: nk.optim.Adagrad(p, initial_accumulator_value=-1), ValueError,
     "Invalid initial_accumulator_value value: -1"),
    (lambda p: nk.optim.RMSprop(p, alpha=-1), ValueError, "Invalid alpha value: -1"),
    (lambda p: nk.optim.Adadelta(p, rho=1.1), ValueError, "Invalid rho value: 1.1"),
    (lambda p: nk.optim.Adam(p, differentiable=True), ValueError, "differentiable=True is not supported"),
    (lambda p: nk.optim.Adam([]), ValueError, "optimizer got an empty parameter list"),
    (lambda p: nk.optim.Adam(p[0]), TypeError, "should be an iterable of Parameters or dicts, but got Parameter"),
    (lambda p: nk.optim.Adam([np.zeros(3)]), TypeError, "optimizer can only optimize Parameters, but one of the params "
                                                        "is ndarray"),
    (lambda p: nk.optim.Adam([{"params": {p[0]}}]), TypeError, "ordered collections"),
]


@pytest.mark.parametrize("fn,exc,match", CTOR_ERRORS, ids=[m[:40] for _, _, m in CTOR_ERRORS])
def test_constructor_errors(fn, exc, match):
    with pytest.raises(exc, match=match):
        fn([Parameter(np.ones(2))])


def test_bad_group_hyperparameter_caught_at_step():
    a = Parameter(np.ones(2))
    opt = nk.optim.Adam([a])
    opt.param_groups[0]["lr"] = -1.0
    a.grad = np.ones(2)
    with pytest.raises(ValueError, match=r"adam_step_multi: lr must be a finite number >= 0, got -1.0"):
        opt.step()
    np.testing.assert_array_equal(a.data, 1.0)


def test_repr():
    r = repr(nk.optim.SGD([Parameter(np.ones(2))], lr=0.1))
    assert r.startswith("SGD (") and "Parameter Group 0" in r and "lr: 0.1" in r
