"""Argument roles the fuzz specs wrap arrays in, so that mutators know what the contract says.

The contract (bindings/arrays.h, DESIGN.md section 3):
  * ``In``: a read-only float input. Any layout is accepted (non-contiguous, negative strides,
    Fortran order, read-only, unaligned, byte-swapped are copied once); any dtype other than the
    call's float dtype raises TypeError.
  * ``Idx``: a read-only integer input (targets, indices): any integer dtype is accepted and
    converted, float/bool/object dtypes raise TypeError.
  * ``Buf``: an array the kernel writes (out=, parameters, optimizer state, running stats): it must
    be C-contiguous, aligned, writeable, of the exact native dtype and shape; anything else raises.
  * ``Mask``: dropout's bool mask (read-only input).
  * ``Fwd``: an argument computed on each side (nnkern / NumPy twin) by a forward call, e.g. the
    opaque workspace of a sequence pass; never mutated.

``strict_shape``/``strict_ndim``: changing one dim (the number of dims) of this array, all else
fixed, makes the call invalid, so the mutated call must raise. When False the mutated call may be
valid: it must then raise cleanly or match the twin.
"""

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Arr:
    a: np.ndarray
    strict_shape: bool = True
    strict_ndim: bool = True
    list_ok: bool = False      # a list in its place may be converted (Python-level normalisation)
    nan_ok: bool = True        # NaN/Inf values are a valid input (they must propagate)
    optional: bool = False     # None is a valid value

    kind = "in"

    def __post_init__(self):
        if not isinstance(self.a, np.ndarray):  # 0-d arithmetic gives numpy scalars
            self.a = np.asarray(self.a)


@dataclass
class In(Arr):
    kind = "in"


@dataclass
class Idx(Arr):
    nan_ok: bool = False
    kind = "idx"


@dataclass
class Buf(Arr):
    kind = "buf"


@dataclass
class Mask(Arr):
    nan_ok: bool = False
    kind = "mask"


@dataclass
class Fwd:
    """Argument = fn(*args, **kwargs)[index] computed with the side's own implementation."""
    fn: str
    args: list
    kwargs: dict = field(default_factory=dict)
    index: int = -1
    kind = "fwd"


@dataclass
class Case:
    args: list
    kwargs: dict = field(default_factory=dict)
    ignore: tuple = ()          # output indices not compared (opaque workspaces), with the reason below
    nan_ignore: tuple = ()      # further indices not compared when the inputs hold NaN/Inf (see the spec)
    scale: float = 1.0          # tolerance multiplier (documented in the spec)
    note: str = ""


def slots(case):
    """Every (container, key, value) position of the case holding a wrapped array, in order."""
    out = []
    for i, v in enumerate(case.args):
        if isinstance(v, Arr):
            out.append((case.args, i, v))
        elif isinstance(v, (list, tuple)) and v and all(isinstance(e, Arr) for e in v):
            for j, e in enumerate(v):
                out.append((v, j, e))
    for k, v in case.kwargs.items():
        if isinstance(v, Arr):
            out.append((case.kwargs, k, v))
        elif isinstance(v, (list, tuple)) and v and all(isinstance(e, Arr) for e in v):
            for j, e in enumerate(v):
                out.append((v, j, e))
    return out
