"""Optimizers over nnkern.nn.Parameter objects, with torch.optim's API, defaults and state layout.

Each ``step()`` updates every parameter of a param group with one multi-tensor kernel call
(``nk.adam_step_multi`` ...): one pass over memory per parameter, all tensors of the group split
evenly over nnkern's threads. Parameters whose ``.grad`` is None or whose ``requires_grad`` is
False are skipped (their state is not touched), as in torch.

State and ``state_dict()`` follow torch exactly: ``state`` maps each parameter to a dict with
torch's keys (``step``, ``exp_avg``, ``exp_avg_sq``, ``max_exp_avg_sq``, ``momentum_buffer``,
``sum``, ``square_avg``, ``acc_delta``, ``grad_avg``); ``state_dict()`` returns
``{'state': {index: {...}}, 'param_groups': [{..., 'params': [indices]}]}`` with parameters
numbered in group order. A torch optimizer's ``state_dict()`` with its tensors turned into NumPy
arrays (or left as CPU tensors) loads with ``load_state_dict`` and the run continues as torch's
would; ours converts back the same way (``step`` is a 0-d float32 array, like torch's 0-d tensor).
"""

import copy
import warnings
from collections import defaultdict
from itertools import chain

import numpy as np

from ..ops import optim as kernels
from ..nn.parameter import Parameter

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "Adagrad", "RMSprop", "Adadelta"]


def _check(ok, what, value):
    # torch.optim's constructor checks and messages ("Invalid learning rate: -1.0").
    if not ok:
        raise ValueError(f"Invalid {what}: {value}")


def _torch_only_options(foreach, fused, capturable, differentiable):
    # Accepted for drop-in compatibility with torch's signatures; they select torch code paths that
    # do not exist here (nnkern always runs its fused multi-tensor kernel) and change no maths.
    if differentiable:
        raise ValueError("differentiable=True is not supported: nnkern optimizers do not record autograd graphs")
    if fused and foreach:
        raise RuntimeError("`fused` and `foreach` cannot be `True` together.")
    return {"foreach": foreach, "capturable": capturable, "differentiable": differentiable, "fused": fused}


class Optimizer:
    """Base class: param groups, per-parameter state, zero_grad, state_dict/load_state_dict.

    Subclasses define ``_new_state(p, group)`` (the initial state dict of a parameter) and
    ``_update(group, params, grads, states, steps)`` (one kernel call for parameters of one dtype).
    """

    # State keys holding arrays shaped like the parameter (cast to its dtype on load).
    _array_keys = ()

    def __init__(self, params, defaults):
        self.defaults = defaults
        self.state = defaultdict(dict)  # Parameter -> its state dict (as torch: missing keys read as {})
        self.param_groups = []
        if isinstance(params, (Parameter, np.ndarray)):
            raise TypeError("params argument given to the optimizer should be an iterable of Parameters or dicts, "
                            f"but got {type(params).__name__}")
        groups = list(params)
        if len(groups) == 0:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    # -- param groups --------------------------------------------------------------------------

    def add_param_group(self, param_group):
        """Adds a group of parameters (a dict with 'params' and optional per-group options; missing
        options take the optimizer's defaults), as torch.optim.Optimizer.add_param_group."""
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, but got {type(param_group).__name__}")
        group = dict(param_group)
        params = group["params"]
        if isinstance(params, Parameter):
            params = [params]
        elif isinstance(params, set):
            raise TypeError("optimizer parameters need to be organized in ordered collections, but the ordering of "
                            "tensors in sets will change between runs. Please use a list instead.")
        else:
            params = list(params)
        names = [p[0] for p in params if isinstance(p, tuple)]
        params = [p[1] if isinstance(p, tuple) else p for p in params]
        if names:
            if len(names) != len(params):
                raise ValueError("all optimizer params should be with/without names. Some param names are missing")
            group["param_names"] = names
        for p in params:
            if not isinstance(p, Parameter):
                raise TypeError(f"optimizer can only optimize Parameters, but one of the params is {type(p).__name__}")
        group["params"] = params
        for name, default in self.defaults.items():
            group.setdefault(name, default)
        if len(params) != len({id(p) for p in params}):
            warnings.warn("optimizer contains a parameter group with duplicate parameters", stacklevel=3)
        existing = set()
        for g in self.param_groups:
            existing.update(id(p) for p in g["params"])
            if ("param_names" in group) != ("param_names" in g):
                raise ValueError("all optimizer param groups should be with/without names. cannot add param group "
                                 f"{'with' if 'param_names' in group else 'without'} names to the optimizer")
        if existing & {id(p) for p in params}:
            raise ValueError("some parameters appear in more than one parameter group")
        self.param_groups.append(group)

    # -- stepping ------------------------------------------------------------------------------

    def zero_grad(self, set_to_none=True):
        """Clears the gradients: None (torch's default) or zero-filled in place."""
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    p.grad.fill(0)

    def step(self, closure=None):
        """One optimization step over every param group; returns ``closure()`` if given (called
        first, as torch does)."""
        loss = None
        if closure is not None:
            loss = closure()
        state = self.state
        for gi, group in enumerate(self.param_groups):
            params, grads, states, steps = [], [], [], []
            for p in group["params"]:
                g = p.grad
                if g is None or not p.requires_grad:
                    continue
                st = state.get(p)
                if not st:
                    st = self._new_state(p, group)
                    if st:  # (SGD creates its state in _update, on the first step with momentum)
                        state[p] = st
                params.append(p)
                grads.append(g)
                states.append(st)
                steps.append(st.get("step", 0) + 1)
            if params:
                self._step_group(gi, group, params, grads, states, steps)
        return loss

    def _step_group(self, gi, group, params, grads, states, steps):
        # One kernel call for the whole group. The kernel validates everything before writing, so
        # a failed call changed nothing: then either the group mixes float32 and float64
        # parameters (one call per dtype instead) or a gradient is wrong (say which).
        try:
            self._apply(group, params, grads, states, steps)
            return
        except (TypeError, ValueError):
            dtypes = {p.data.dtype for p in params}
            if len(dtypes) == 1:
                self._check_grads(gi, group)
                raise
        for dt in dtypes:
            idx = [k for k, p in enumerate(params) if p.data.dtype == dt]
            self._apply(group, [params[k] for k in idx], [grads[k] for k in idx], [states[k] for k in idx],
                        [steps[k] for k in idx])

    def _apply(self, group, params, grads, states, steps):
        self._update(group, params, grads, states, steps)
        for st, s in zip(states, steps):
            if "step" in st:
                st["step"] = s

    def _check_grads(self, gi, group):
        for j, p in enumerate(group["params"]):
            g = p.grad
            if g is None or not p.requires_grad:
                continue
            data = p.data
            if not isinstance(g, np.ndarray) or g.shape != data.shape or g.dtype != data.dtype:
                raise ValueError(
                    f"{type(self).__name__}.step: param_groups[{gi}]['params'][{j}] has a gradient of "
                    f"{_describe(g)}, expected shape {data.shape} and dtype {data.dtype} like the parameter")

    def _new_state(self, p, group):
        """The initial state of parameter ``p`` (torch's keys and initial values)."""
        raise NotImplementedError

    def _update(self, group, params, grads, states, steps):
        """One kernel call: ``params`` (Parameters of one dtype), their gradients, state dicts and
        the 1-based numbers of the steps being taken."""
        raise NotImplementedError

    @staticmethod
    def _zeros(p):
        return np.zeros_like(p.data)

    # -- state_dict ----------------------------------------------------------------------------

    def state_dict(self):
        """torch's layout: ``{'state': {index: {key: value}}, 'param_groups': [{..., 'params': [index]}]}``.

        Arrays are the live state buffers (as torch returns its tensors): ``copy.deepcopy`` the
        result for a snapshot that later steps do not change. ``step`` is a 0-d float32 array.
        """
        index = {}
        groups = []
        for group in self.param_groups:
            packed = {k: v for k, v in group.items() if k != "params"}
            for p in group["params"]:
                index.setdefault(id(p), len(index))
            packed["params"] = [index[id(p)] for p in group["params"]]
            groups.append(packed)
        state = {}
        for p, s in self.state.items():
            if id(p) not in index:
                continue
            state[index[id(p)]] = {k: (np.array(v, dtype=np.float32) if k == "step" else v) for k, v in s.items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict):
        """Loads a state_dict from ``state_dict()`` (ours or torch's, tensors as NumPy arrays or CPU
        tensors). Arrays are copied into new C-contiguous buffers of each parameter's dtype."""
        groups = self.param_groups
        saved_groups = copy.deepcopy(state_dict["param_groups"])
        if len(groups) != len(saved_groups):
            raise ValueError("loaded state dict has a different number of parameter groups")
        if any(len(g["params"]) != len(s["params"]) for g, s in zip(groups, saved_groups)):
            raise ValueError("loaded state dict contains a parameter group that doesn't match the size of "
                             "optimizer's group")
        id_map = dict(zip(chain.from_iterable(s["params"] for s in saved_groups),
                          chain.from_iterable(g["params"] for g in groups)))
        state = defaultdict(dict)
        for k, v in state_dict["state"].items():
            if k in id_map:
                p = id_map[k]
                state[p] = {key: self._load_value(p, k, key, val) for key, val in v.items()}
            else:
                state[k] = v
        new_groups = []
        for group, saved in zip(groups, saved_groups):
            saved["params"] = group["params"]
            if "param_names" in group and "param_names" not in saved:
                saved["param_names"] = group["param_names"]
            for name, default in self.defaults.items():
                saved.setdefault(name, default)
            self._fix_loaded_group(saved)
            new_groups.append(saved)
        self.state = state
        self.param_groups = new_groups

    def _fix_loaded_group(self, group):
        if isinstance(group.get("betas"), list):
            group["betas"] = tuple(group["betas"])

    def _load_value(self, p, index, key, value):
        if key == "step":
            step = float(np.asarray(value))
            if not (step >= 0 and step == int(step)):
                raise ValueError(f"load_state_dict: state[{index}]['step'] must be a whole number >= 0, got {step}")
            return int(step)
        if value is None:
            return None
        if key in self._array_keys or hasattr(value, "shape"):
            # asarray first: CPU tensors convert through __array__, which takes no copy= argument
            arr = np.array(np.asarray(value), dtype=p.dtype, order="C", copy=True)
            if arr.shape != p.shape:
                raise ValueError(f"load_state_dict: state[{index}][{key!r}] has shape {arr.shape}, expected "
                                 f"{p.shape} (the shape of its parameter)")
            return arr
        return value

    def __getstate__(self):
        return {"defaults": self.defaults, "state": self.state, "param_groups": self.param_groups}

    def __setstate__(self, state):
        self.__dict__.update(state)

    def __repr__(self):
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            for key in sorted(group):
                if key != "params":
                    lines.append(f"    {key}: {group[key]}")
        lines.append(")")
        return "\n".join(lines)


def _describe(g):
    if isinstance(g, np.ndarray):
        return f"shape {g.shape} and dtype {g.dtype}"
    return f"type {type(g).__name__}"


# ---------------------------------------------------------------------------------------------


class SGD(Optimizer):
    """torch.optim.SGD: momentum, dampening, Nesterov, weight decay, maximize (state:
    ``momentum_buffer``, created on a parameter's first step as a copy of its gradient)."""

    _array_keys = ("momentum_buffer",)

    def __init__(self, params, lr=1e-3, momentum=0, dampening=0, weight_decay=0, nesterov=False, *,
                 maximize=False, foreach=None, differentiable=False, fused=None):
        _check(lr >= 0.0, "learning rate", lr)
        _check(momentum >= 0.0, "momentum value", momentum)
        _check(weight_decay >= 0.0, "weight_decay value", weight_decay)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        extra = _torch_only_options(foreach, fused, False, differentiable)
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay, nesterov=nesterov,
                        maximize=maximize, foreach=extra["foreach"], differentiable=differentiable, fused=fused)
        super().__init__(params, defaults)

    def _new_state(self, p, group):
        return {}

    def _update(self, group, params, grads, states, steps):
        momentum = group["momentum"]
        bufs = first = None
        if momentum != 0:
            bufs, first = [], []
            for p, st in zip(params, states):
                buf = st.get("momentum_buffer")
                first.append(1 if buf is None else 2)  # step 1: the kernel sets the buffer to the gradient
                bufs.append(np.empty_like(p.data) if buf is None else buf)
        kernels.sgd_step_multi([p.data for p in params], grads, bufs, first, lr=group["lr"], momentum=momentum,
                               dampening=group["dampening"], weight_decay=group["weight_decay"],
                               nesterov=group["nesterov"], maximize=group["maximize"])
        if momentum != 0:
            for p, st, buf in zip(params, states, bufs):
                st["momentum_buffer"] = buf
                self.state[p] = st


class Adam(Optimizer):
    """torch.optim.Adam (state: ``step``, ``exp_avg``, ``exp_avg_sq``, ``max_exp_avg_sq`` with
    amsgrad). ``decoupled_weight_decay=True`` is AdamW."""

    _array_keys = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, amsgrad=False, *,
                 foreach=None, maximize=False, capturable=False, differentiable=False, fused=None,
                 decoupled_weight_decay=False):
        _check(0.0 <= lr, "learning rate", lr)
        _check(0.0 <= eps, "epsilon value", eps)
        _check(0.0 <= betas[0] < 1.0, "beta parameter at index 0", betas[0])
        _check(0.0 <= betas[1] < 1.0, "beta parameter at index 1", betas[1])
        _check(0.0 <= weight_decay, "weight_decay value", weight_decay)
        extra = _torch_only_options(foreach, fused, capturable, differentiable)
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                        maximize=maximize, **extra, decoupled_weight_decay=decoupled_weight_decay)
        super().__init__(params, defaults)

    def _new_state(self, p, group):
        state = {"step": 0, "exp_avg": self._zeros(p), "exp_avg_sq": self._zeros(p)}
        if group["amsgrad"]:
            state["max_exp_avg_sq"] = self._zeros(p)
        return state

    def _update(self, group, params, grads, states, steps):
        amsgrad = group["amsgrad"]
        if amsgrad:
            for p, s in zip(params, states):
                if "max_exp_avg_sq" not in s:  # amsgrad switched on after the state was created
                    s["max_exp_avg_sq"] = self._zeros(p)
        kernels.adam_step_multi([p.data for p in params], grads, [s["exp_avg"] for s in states],
                                [s["exp_avg_sq"] for s in states], steps, lr=group["lr"], betas=group["betas"],
                                eps=group["eps"], weight_decay=group["weight_decay"],
                                decoupled=group["decoupled_weight_decay"], amsgrad=amsgrad,
                                v_max=[s["max_exp_avg_sq"] for s in states] if amsgrad else None,
                                maximize=group["maximize"])


class AdamW(Adam):
    """torch.optim.AdamW: Adam with decoupled weight decay (default ``weight_decay=1e-2``)."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False, *,
                 maximize=False, foreach=None, capturable=False, differentiable=False, fused=None):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, foreach=foreach, maximize=maximize,
                         capturable=capturable, differentiable=differentiable, fused=fused,
                         decoupled_weight_decay=True)

    def _fix_loaded_group(self, group):
        super()._fix_loaded_group(group)
        group["decoupled_weight_decay"] = True  # as torch's AdamW.__setstate__


class Adagrad(Optimizer):
    """torch.optim.Adagrad (state: ``step``, ``sum``; created for every parameter at construction,
    ``sum`` filled with ``initial_accumulator_value``, as torch does)."""

    _array_keys = ("sum",)

    def __init__(self, params, lr=1e-2, lr_decay=0, weight_decay=0, initial_accumulator_value=0, eps=1e-10,
                 foreach=None, *, maximize=False, differentiable=False, fused=None):
        _check(0.0 <= lr, "learning rate", lr)
        _check(0.0 <= lr_decay, "lr_decay value", lr_decay)
        _check(0.0 <= weight_decay, "weight_decay value", weight_decay)
        _check(0.0 <= initial_accumulator_value, "initial_accumulator_value value", initial_accumulator_value)
        _check(0.0 <= eps, "epsilon value", eps)
        _torch_only_options(foreach, fused, False, differentiable)
        defaults = dict(lr=lr, lr_decay=lr_decay, eps=eps, weight_decay=weight_decay,
                        initial_accumulator_value=initial_accumulator_value, foreach=foreach, maximize=maximize,
                        differentiable=differentiable, fused=fused)
        super().__init__(params, defaults)
        for group in self.param_groups:
            for p in group["params"]:
                self.state[p] = self._new_state(p, group)

    def _new_state(self, p, group):
        return {"step": 0, "sum": np.full_like(p.data, group["initial_accumulator_value"])}

    def _update(self, group, params, grads, states, steps):
        kernels.adagrad_step_multi([p.data for p in params], grads, [s["sum"] for s in states], steps, lr=group["lr"],
                                   lr_decay=group["lr_decay"], weight_decay=group["weight_decay"], eps=group["eps"],
                                   maximize=group["maximize"])


class RMSprop(Optimizer):
    """torch.optim.RMSprop (state: ``step``, ``square_avg``, ``momentum_buffer`` with momentum > 0,
    ``grad_avg`` if centered)."""

    _array_keys = ("square_avg", "momentum_buffer", "grad_avg")

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0, centered=False,
                 capturable=False, foreach=None, maximize=False, differentiable=False):
        _check(0.0 <= lr, "learning rate", lr)
        _check(0.0 <= eps, "epsilon value", eps)
        _check(0.0 <= momentum, "momentum value", momentum)
        _check(0.0 <= weight_decay, "weight_decay value", weight_decay)
        _check(0.0 <= alpha, "alpha value", alpha)
        _torch_only_options(foreach, None, capturable, differentiable)
        defaults = dict(lr=lr, momentum=momentum, alpha=alpha, eps=eps, centered=centered, weight_decay=weight_decay,
                        capturable=capturable, foreach=foreach, maximize=maximize, differentiable=differentiable)
        super().__init__(params, defaults)

    def _new_state(self, p, group):
        state = {"step": 0, "square_avg": self._zeros(p)}
        if group["momentum"] > 0:
            state["momentum_buffer"] = self._zeros(p)
        if group["centered"]:
            state["grad_avg"] = self._zeros(p)
        return state

    def _update(self, group, params, grads, states, steps):
        momentum, centered = group["momentum"], group["centered"]
        for p, s in zip(params, states):  # options switched on after the state was created
            if momentum > 0 and "momentum_buffer" not in s:
                s["momentum_buffer"] = self._zeros(p)
            if centered and "grad_avg" not in s:
                s["grad_avg"] = self._zeros(p)
        kernels.rmsprop_step_multi([p.data for p in params], grads, [s["square_avg"] for s in states],
                                   [s["momentum_buffer"] for s in states] if momentum > 0 else None,
                                   [s["grad_avg"] for s in states] if centered else None, lr=group["lr"],
                                   alpha=group["alpha"], eps=group["eps"], weight_decay=group["weight_decay"],
                                   momentum=momentum, centered=centered, maximize=group["maximize"])


class Adadelta(Optimizer):
    """torch.optim.Adadelta (state: ``step``, ``square_avg``, ``acc_delta``)."""

    _array_keys = ("square_avg", "acc_delta")

    def __init__(self, params, lr=1.0, rho=0.9, eps=1e-6, weight_decay=0, foreach=None, *, capturable=False,
                 maximize=False, differentiable=False):
        _check(0.0 <= lr, "learning rate", lr)
        _check(0.0 <= rho <= 1.0, "rho value", rho)
        _check(0.0 <= eps, "epsilon value", eps)
        _check(0.0 <= weight_decay, "weight_decay value", weight_decay)
        _torch_only_options(foreach, None, capturable, differentiable)
        defaults = dict(lr=lr, rho=rho, eps=eps, weight_decay=weight_decay, maximize=maximize, capturable=capturable,
                        foreach=foreach, differentiable=differentiable)
        super().__init__(params, defaults)

    def _new_state(self, p, group):
        return {"step": 0, "square_avg": self._zeros(p), "acc_delta": self._zeros(p)}

    def _update(self, group, params, grads, states, steps):
        kernels.adadelta_step_multi([p.data for p in params], grads, [s["square_avg"] for s in states],
                                    [s["acc_delta"] for s in states], lr=group["lr"], rho=group["rho"],
                                    eps=group["eps"], weight_decay=group["weight_decay"], maximize=group["maximize"])
