"""nnkern.optim.lr_scheduler against torch.optim.lr_scheduler: identical learning rates epoch by
epoch (exact float equality: same recursive formulas), same state_dict keys, save/resume."""

import copy
import math
import warnings

import numpy as np
import pytest

import nnkern as nk
from conftest import requires_torch, torch
from nnkern.nn import Parameter
from nnkern.optim import lr_scheduler

SCHEDULERS = [
    ("StepLR", dict(step_size=3, gamma=0.5)),
    ("StepLR", dict(step_size=1)),
    ("MultiStepLR", dict(milestones=[2, 5, 5, 9], gamma=0.3)),
    ("ExponentialLR", dict(gamma=0.9)),
    ("CosineAnnealingLR", dict(T_max=7)),
    ("CosineAnnealingLR", dict(T_max=5, eta_min=0.001)),
]
EPOCHS = 25


def two_group_opt(lib, lrs=(0.1, 0.03)):
    if lib == "nk":
        ps = [Parameter(np.zeros(2)), Parameter(np.zeros(3))]
        return nk.optim.SGD([{"params": [ps[0]], "lr": lrs[0]}, {"params": [ps[1]], "lr": lrs[1]}], momentum=0.9)
    ts = [torch.zeros(2, requires_grad=True), torch.zeros(3, requires_grad=True)]
    return torch.optim.SGD([{"params": [ts[0]], "lr": lrs[0]}, {"params": [ts[1]], "lr": lrs[1]}], momentum=0.9)


def lr_trajectory(opt, sched, epochs, metrics=None):
    out = [sched.get_last_lr()]
    for e in range(epochs):
        opt.step()  # no gradients: a no-op step, keeps torch's call-order check quiet
        if metrics is None:
            sched.step()
        else:
            sched.step(metrics[e])
        out.append(sched.get_last_lr())
        assert [g["lr"] for g in opt.param_groups] == out[-1]
    return out


@requires_torch
@pytest.mark.parametrize("name,kw", SCHEDULERS, ids=[f"{n}-{i}" for i, (n, _) in enumerate(SCHEDULERS)])
def test_matches_torch(name, kw):
    opt, topt = two_group_opt("nk"), two_group_opt("torch")
    sched = getattr(lr_scheduler, name)(opt, **kw)
    tsched = getattr(torch.optim.lr_scheduler, name)(topt, **kw)
    assert lr_trajectory(opt, sched, EPOCHS) == lr_trajectory(topt, tsched, EPOCHS)
    sd, tsd = sched.state_dict(), tsched.state_dict()
    assert sd.keys() == tsd.keys()
    for k in sd:
        assert sd[k] == tsd[k], k


METRICS = [1.0, 0.9, 0.95, 0.95, 0.96, 0.97, 0.5, 0.5, 0.5, 0.5, 0.5, 0.49999, 0.6, 0.7, 0.8, 0.9, 1.0, 0.1, 0.1,
           0.1, 0.1, 0.1, 0.1, 0.1, 0.1]
PLATEAU = [dict(), dict(patience=1), dict(mode="max", patience=2, factor=0.5), dict(threshold_mode="abs",
           threshold=0.05, patience=1, cooldown=2), dict(patience=0, min_lr=[0.01, 0.02]), dict(patience=0, eps=0.05),
           dict(mode="max", threshold_mode="abs", patience=1, min_lr=0.05)]


@requires_torch
@pytest.mark.parametrize("kw", PLATEAU, ids=str)
def test_reduce_on_plateau_matches_torch(kw):
    opt, topt = two_group_opt("nk"), two_group_opt("torch")
    sched = lr_scheduler.ReduceLROnPlateau(opt, **kw)
    tsched = torch.optim.lr_scheduler.ReduceLROnPlateau(topt, **kw)
    assert lr_trajectory(opt, sched, EPOCHS, METRICS) == lr_trajectory(topt, tsched, EPOCHS, METRICS)
    sd, tsd = sched.state_dict(), tsched.state_dict()
    assert sd.keys() == tsd.keys()
    for k in sd:
        assert sd[k] == tsd[k], k


@pytest.mark.parametrize("name,kw", SCHEDULERS + [("ReduceLROnPlateau", dict(patience=1))],
                         ids=[f"{n}-{i}" for i, (n, _) in enumerate(SCHEDULERS + [("ReduceLROnPlateau", 0)])])
def test_state_dict_resume(name, kw):
    metrics = METRICS if name == "ReduceLROnPlateau" else None
    opt = two_group_opt("nk")
    sched = getattr(lr_scheduler, name)(opt, **kw)
    full = lr_trajectory(opt, sched, EPOCHS, metrics)
    opt2 = two_group_opt("nk")
    sched2 = getattr(lr_scheduler, name)(opt2, **kw)
    first = lr_trajectory(opt2, sched2, 10, metrics)
    saved_opt, saved_sched = copy.deepcopy(opt2.state_dict()), copy.deepcopy(sched2.state_dict())
    # a fresh optimizer + scheduler (created first, then loaded, as torch documents)
    opt3 = two_group_opt("nk")
    sched3 = getattr(lr_scheduler, name)(opt3, **kw)
    opt3.load_state_dict(saved_opt)
    sched3.load_state_dict(saved_sched)
    rest = lr_trajectory(opt3, sched3, EPOCHS - 10, metrics[10:] if metrics else None)
    assert first + rest[1:] == full


def test_closed_form_with_epoch_argument():
    opt = two_group_opt("nk")
    sched = lr_scheduler.StepLR(opt, step_size=3, gamma=0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sched.step(7)
    assert sched.get_last_lr() == [0.1 * 0.5**2, 0.03 * 0.5**2]
    assert sched.last_epoch == 7


def test_cosine_endpoints():
    opt = two_group_opt("nk", lrs=(1.0, 0.5))
    sched = lr_scheduler.CosineAnnealingLR(opt, T_max=4, eta_min=0.1)
    lrs = lr_trajectory(opt, sched, 4)
    assert lrs[0] == [1.0, 0.5]
    np.testing.assert_allclose(lrs[2], [0.1 + 0.9 * (1 + math.cos(math.pi / 2)) / 2, 0.1 + 0.4 / 2])
    np.testing.assert_allclose(lrs[4], [0.1, 0.1], atol=1e-15)


def test_errors():
    opt = two_group_opt("nk")
    with pytest.raises(TypeError, match="is not an Optimizer"):
        lr_scheduler.StepLR(object(), 3)
    with pytest.raises(ValueError, match="Factor should be < 1.0."):
        lr_scheduler.ReduceLROnPlateau(opt, factor=1.0)
    with pytest.raises(ValueError, match="mode avg is unknown!"):
        lr_scheduler.ReduceLROnPlateau(opt, mode="avg")
    with pytest.raises(ValueError, match="expected 2 min_lrs, got 1"):
        lr_scheduler.ReduceLROnPlateau(opt, min_lr=[0.1])
    with pytest.raises(KeyError, match="initial_lr"):
        lr_scheduler.StepLR(two_group_opt("nk"), 3, last_epoch=4)


def test_scheduled_lr_reaches_the_kernel():
    # The optimizer reads group['lr'] on every step, so the scheduled value is what is applied.
    p = Parameter(np.zeros(1))
    opt = nk.optim.SGD([p], lr=1.0)
    sched = lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    for _ in range(3):
        p.grad = np.ones(1)
        opt.step()
        sched.step()
    np.testing.assert_allclose(p.data, [-(1.0 + 0.5 + 0.25)])
