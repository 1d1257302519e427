"""Module and Sequential: torch-shaped containers with explicit forward and backward passes.

A layer implements ``forward(x)`` (keeping whatever its backward needs from the last call) and
``backward(dy) -> dx``, which adds each parameter's gradient into ``Parameter.grad``. Parameters,
buffers and submodules assigned as attributes are registered in assignment order, so
``state_dict()`` keys match torch's for the same architecture (``0.weight``, ``fc.bias``,
``bn.running_mean`` ...).
"""

from collections import OrderedDict

import numpy as np

from .parameter import Parameter

__all__ = ["Module", "Sequential"]


class Module:
    """Base class of all layers and models."""

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    # -- registration ------------------------------------------------------------------------

    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"{type(self).__name__}: call Module.__init__() before assigning attributes")
        for store in (self._parameters, self._buffers, self._modules):
            store.pop(name, None)
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        elif name in self.__dict__.get("_buffer_names", ()):
            self._buffers[name] = value
        object.__setattr__(self, name, value)

    def __delattr__(self, name):
        for store in (self._parameters, self._buffers, self._modules):
            store.pop(name, None)
        object.__delattr__(self, name)

    def register_parameter(self, name, param):
        """Registers ``param`` (a Parameter or None, e.g. an absent bias) under ``name``."""
        if param is None:
            self._parameters[name] = None
            object.__setattr__(self, name, None)
        else:
            setattr(self, name, param if isinstance(param, Parameter) else Parameter(param))

    def register_buffer(self, name, array):
        """A non-trainable array saved in state_dict (e.g. batch-norm running statistics)."""
        names = self.__dict__.setdefault("_buffer_names", set())
        names.add(name)
        self._buffers[name] = array
        object.__setattr__(self, name, array)

    def add_module(self, name, module):
        if not isinstance(module, Module) and module is not None:
            raise TypeError(f"{type(self).__name__}.add_module: {name} is a {type(module).__name__}, not a Module")
        self._modules[name] = module
        object.__setattr__(self, name, module)

    # -- calling -----------------------------------------------------------------------------

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} does not implement forward")

    def backward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} does not implement backward")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    # -- traversal ---------------------------------------------------------------------------

    def named_modules(self, prefix=""):
        yield prefix, self
        for name, mod in self._modules.items():
            if mod is not None:
                yield from mod.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self):
        for _, m in self.named_modules():
            yield m

    def children(self):
        for m in self._modules.values():
            if m is not None:
                yield m

    def named_parameters(self, prefix="", recurse=True):
        seen = set()
        mods = self.named_modules(prefix) if recurse else [(prefix, self)]
        for mod_prefix, mod in mods:
            for name, p in mod._parameters.items():
                if p is None or id(p) in seen:
                    continue
                seen.add(id(p))
                yield (f"{mod_prefix}.{name}" if mod_prefix else name), p

    def parameters(self, recurse=True):
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix=""):
        for mod_prefix, mod in self.named_modules(prefix):
            for name, b in mod._buffers.items():
                if b is not None:
                    yield (f"{mod_prefix}.{name}" if mod_prefix else name), b

    def buffers(self):
        for _, b in self.named_buffers():
            yield b

    def apply(self, fn):
        for m in self.children():
            m.apply(fn)
        fn(self)
        return self

    # -- modes and gradients -----------------------------------------------------------------

    def train(self, mode=True):
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self):
        return self.train(False)

    def zero_grad(self, set_to_none=True):
        """Clears every parameter's gradient: None (torch's default) or zeros kept in place
        (``set_to_none=False``, which saves re-allocating gradient buffers every step)."""
        for p in self.parameters():
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.fill(0)

    def to(self, dtype):
        """Converts every parameter and float buffer to ``dtype`` (np.float32 or np.float64)."""
        dtype = np.dtype(dtype)
        if dtype not in (np.float32, np.float64):
            raise TypeError(f"{type(self).__name__}.to: dtype must be float32 or float64, got {dtype}")
        for p in self.parameters():
            if p.data.dtype != dtype:
                p.data = p.data.astype(dtype)
                p.grad = None if p.grad is None else p.grad.astype(dtype)
        for m in self.modules():
            for name, b in list(m._buffers.items()):
                if isinstance(b, np.ndarray) and b.dtype.kind == "f" and b.dtype != dtype:
                    m.register_buffer(name, b.astype(dtype))
        return self

    def num_parameters(self):
        return sum(p.size for p in self.parameters())

    # -- state -------------------------------------------------------------------------------

    def state_dict(self):
        """Parameters and buffers by torch-style dotted name (arrays are the live ones: copy to
        snapshot)."""
        out = OrderedDict()
        for mod_prefix, mod in self.named_modules():
            pre = f"{mod_prefix}." if mod_prefix else ""
            for name, p in mod._parameters.items():
                if p is not None:
                    out[pre + name] = p.data
            for name, b in mod._buffers.items():
                if b is not None:
                    out[pre + name] = b
        return out

    def load_state_dict(self, state_dict, strict=True):
        """Copies arrays into parameters and buffers by name (a torch state_dict converted with
        ``{k: v.numpy() for k, v in sd.items()}`` works unchanged). With strict=True, missing or
        unexpected keys raise; shape mismatches always raise, naming every offending key.
        Returns (missing_keys, unexpected_keys)."""
        own = self.state_dict()
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        mismatched = []
        for k, target in own.items():
            if k in state_dict:
                src = np.asarray(state_dict[k])
                if src.shape != np.shape(target):
                    mismatched.append(f"{k}: checkpoint {tuple(src.shape)} vs model {tuple(np.shape(target))}")
        problems = []
        if mismatched:
            problems.append("shape mismatch for " + "; ".join(mismatched))
        if strict and missing:
            problems.append("missing keys: " + ", ".join(missing))
        if strict and unexpected:
            problems.append("unexpected keys: " + ", ".join(unexpected))
        if problems:
            raise ValueError(f"{type(self).__name__}.load_state_dict: " + ". ".join(problems))
        for mod_prefix, mod in self.named_modules():
            pre = f"{mod_prefix}." if mod_prefix else ""
            for name, p in mod._parameters.items():
                if p is not None and pre + name in state_dict:
                    p.data[...] = np.asarray(state_dict[pre + name], dtype=p.data.dtype)
            for name, b in list(mod._buffers.items()):
                if pre + name in state_dict:
                    src = np.asarray(state_dict[pre + name])
                    if isinstance(b, np.ndarray):
                        b[...] = src.astype(b.dtype, copy=False)
                    else:
                        mod.register_buffer(name, src.copy())
        return missing, unexpected

    # -- display -----------------------------------------------------------------------------

    def extra_repr(self):
        return ""

    def __repr__(self):
        lines = [f"{type(self).__name__}({self.extra_repr()}"]
        if self._modules:
            lines[0] = lines[0]
            for name, m in self._modules.items():
                sub = repr(m).replace("\n", "\n  ")
                lines.append(f"  ({name}): {sub}")
            lines.append(")")
            return "\n".join(lines)
        return lines[0] + ")"


class Sequential(Module):
    """Chains modules: forward runs them in order, backward in reverse."""

    def __init__(self, *modules):
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], (dict, OrderedDict)):
            for name, m in modules[0].items():
                self.add_module(str(name), m)
        else:
            for i, m in enumerate(modules):
                self.add_module(str(i), m)

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def __getitem__(self, idx):
        mods = list(self._modules.values())
        if isinstance(idx, slice):
            return Sequential(*mods[idx])
        return mods[idx]

    def append(self, module):
        self.add_module(str(len(self._modules)), module)
        return self

    def forward(self, x):
        for m in self._modules.values():
            x = m(x)
        return x

    def backward(self, dy):
        for m in reversed(list(self._modules.values())):
            dy = m.backward(dy)
        return dy
