"""One fuzzed call: draw a valid case from its spec, maybe mutate it, run nnkern and the NumPy twin,
and classify the outcome. Runs inside the worker child (fuzz_runner), where a crash is contained.

Outcome statuses (``FAILURES`` are the ones the suite asserts never happen):
  valid_ok        valid call, matched the twin
  raised_ok       invalid (or possibly-invalid) call raised TypeError/ValueError (or a documented error)
  either_ok       possibly-invalid call accepted, and it matched the twin
  mismatch        accepted, result differs from the twin (silently wrong)
  accepted_invalid  a call the contract says must raise returned normally (silently accepted)
  rejected_valid  a valid call raised
  bad_exception   raised an exception type the contract does not allow (IndexError, RuntimeError, ...)
  input_modified  a read-only input was written
  twin_rejects    nnkern accepted a possibly-invalid call that the twin rejects (result unverifiable)
  crash / hang    set by the parent when the child dies or stops answering
"""

import copy
import math

import numpy as np

import nnkern
import nnkern.reference as reference
from fuzz_roles import Arr, Buf, Case, Fwd, Idx, In, Mask, slots
from fuzz_specs import EXTRA_EXCEPTIONS, SPECS, TWIN_WORKAROUNDS, Gen

FAILURES = ("mismatch", "nan_mismatch", "accepted_invalid", "rejected_valid", "bad_exception", "input_modified",
            "twin_rejects", "crash", "hang")

# float32 / float64 tolerances (scaled by the case's `scale` and the magnitude of the expected value)
TOL = {np.dtype(np.float32): (2e-4, 2e-5), np.dtype(np.float64): (1e-9, 1e-10)}

MUTATIONS = ("valid", "valid", "valid", "nan_inf", "layout_in", "layout_buf", "dtype", "other_float",
             "not_array", "ndim", "shape", "alias", "overlap", "huge", "param")

HUGE = 2**33 + 3  # an extent that overflows 32-bit index math (int32 / uint32)


class Skip(Exception):
    """The mutation does not apply to this case (e.g. no buffer to mutate): drawn again."""


# ---------------------------------------------------------------------------------------------
# Layout and value mutators (values kept, layout changed)


def relayout(a, how, rng):
    """A view of `a`'s values with another memory layout."""
    if how == "noncontig":
        if a.ndim == 0:
            raise Skip
        ax = int(rng.integers(a.ndim))
        shape = list(a.shape)
        shape[ax] *= 2
        big = np.empty(shape, a.dtype)
        sl = [slice(None)] * a.ndim
        sl[ax] = slice(None, None, 2)
        big[tuple(sl)] = a
        return big[tuple(sl)]
    if how == "negstride":
        if a.ndim == 0:
            raise Skip
        ax = int(rng.integers(a.ndim))
        flip = np.ascontiguousarray(np.flip(a, ax))
        return np.flip(flip, ax)
    if how == "fortran":
        return a.copy(order="F")  # (np.asfortranarray would make a 0-d array 1-d)
    if how == "readonly":
        r = a.copy()
        r.setflags(write=False)
        return r
    if how == "unaligned":
        buf = np.empty(a.nbytes + 1, np.uint8)
        r = buf[1:].view(a.dtype).reshape(a.shape)
        r[...] = a
        return r
    if how == "byteswap":
        return a.astype(a.dtype.newbyteorder())
    if how == "zero_stride":  # a broadcast view (stride 0), read-only
        if a.size == 0 or a.ndim == 0:
            raise Skip
        flat = a.reshape(-1)
        if not np.all(flat == flat[0]) and not (np.isnan(flat).all() if a.dtype.kind == "f" else False):
            a[...] = flat[0]
        return np.broadcast_to(a.reshape(-1)[:1].reshape((1,) * a.ndim), a.shape)
    raise AssertionError(how)


LAYOUTS = ("noncontig", "negstride", "fortran", "readonly", "unaligned", "byteswap", "zero_stride")


def good_buffer(a, dtype):
    f = a.flags
    return (f.c_contiguous and f.aligned and f.writeable and a.dtype == dtype and a.dtype.isnative)


BAD_DTYPES = (np.int32, np.int64, np.float16, np.bool_, object, np.complex64, np.uint8)


def _astype(a, dt):
    if np.dtype(dt) == object:
        return a.astype(object)
    with np.errstate(invalid="ignore", over="ignore"):
        return a.astype(dt)


# ---------------------------------------------------------------------------------------------
# Drawing a case


def draw(name, seed):
    """(Case for nnkern, Case for the twin, expectation, description). Deterministic in (name, seed)."""
    rng = np.random.default_rng([seed, _name_key(name)])
    dtype = np.float32 if rng.random() < 0.5 else np.float64
    g = Gen(rng, dtype)
    case = SPECS[name](g)
    for _ in range(20):
        mut = MUTATIONS[int(rng.integers(len(MUTATIONS)))]
        trial = copy.deepcopy(case)
        ref = copy.deepcopy(case)
        try:
            expect, desc = apply(mut, trial, ref, rng, np.dtype(dtype), name)
        except Skip:
            continue
        if desc.startswith("sole float"):
            dtype = np.float32 if np.dtype(dtype) == np.float64 else np.float64
        return trial, ref, expect, f"{mut}: {desc}", np.dtype(dtype)
    return copy.deepcopy(case), copy.deepcopy(case), "valid", "valid (no mutation applied)", np.dtype(dtype)


def _name_key(name):
    return int.from_bytes(name.encode()[:8].ljust(8, b"\0"), "little") ^ len(name)


def _pick(rng, items):
    if not items:
        raise Skip
    return items[int(rng.integers(len(items)))]


def _slot_desc(container, key):
    return f"arg {key}" if not isinstance(key, str) else f"{key}="


def mirror(v, r):
    """The twin gets the same (mutated) values: a copy, or the same read-only view when huge."""
    r.a = v.a if (isinstance(v.a, np.ndarray) and v.a.size > 10**6) else copy.deepcopy(v.a)


def apply(mut, case, ref, rng, dtype, name):
    """Mutates `case` (nnkern side) and `ref` (twin side) in place. Returns (expect, description)."""
    ss, rs = slots(case), slots(ref)
    if mut == "valid":
        return "valid", "as drawn"

    if mut == "nan_inf":
        cand = [i for i, (_, _, v) in enumerate(ss) if v.kind == "in" and v.nan_ok and v.a.size]
        i = _pick(rng, cand)
        a = ss[i][2].a
        k = int(rng.integers(1, min(a.size, 3) + 1))
        pos = rng.choice(a.size, size=k, replace=False)
        vals = [np.nan, np.inf, -np.inf]
        for p in pos:
            v = vals[int(rng.integers(3))]
            a.reshape(-1)[p] = v
            rs[i][2].a.reshape(-1)[p] = v
        return "valid", f"NaN/Inf in {_slot_desc(*ss[i][:2])}"

    if mut == "layout_in":
        cand = [i for i, (_, _, v) in enumerate(ss) if v.kind in ("in", "idx", "mask")]
        i = _pick(rng, cand)
        how = LAYOUTS[int(rng.integers(len(LAYOUTS)))]
        c, k, v = ss[i]
        if how == "zero_stride":
            if v.a.size == 0 or v.a.ndim == 0:
                raise Skip
            v.a.reshape(-1)[...] = v.a.reshape(-1)[0]
            rs[i][2].a.reshape(-1)[...] = v.a.reshape(-1)[0]
        v.a = relayout(v.a, how, rng)
        # byte-swapped inputs are converted like any other layout (arrays.h)
        return "valid", f"{how} view for input {_slot_desc(c, k)}"

    if mut == "layout_buf":
        cand = [i for i, (_, _, v) in enumerate(ss) if v.kind == "buf"]
        i = _pick(rng, cand)
        how = LAYOUTS[int(rng.integers(len(LAYOUTS)))]
        c, k, v = ss[i]
        if how == "zero_stride":
            how = "readonly"
        v.a = relayout(v.a, how, rng)
        ok = good_buffer(v.a, rs[i][2].a.dtype)
        if how == "byteswap":
            return "raise", f"{how} view for in-place buffer {_slot_desc(c, k)}"
        return ("valid" if ok else "raise"), f"{how} view for in-place buffer {_slot_desc(c, k)}"

    if mut == "dtype":
        i = _pick(rng, list(range(len(ss))))
        c, k, v = ss[i]
        dt = np.dtype(BAD_DTYPES[int(rng.integers(len(BAD_DTYPES)))])
        if v.kind == "idx":
            if dt.kind in "iu":
                if dt == np.uint8 and v.a.size and (v.a.min() < 0 or v.a.max() > 255):
                    raise Skip
                v.a = _astype(v.a, dt)
                return "valid", f"index {_slot_desc(c, k)} as {dt}"
            v.a = _astype(v.a, dt)
            return "raise", f"index {_slot_desc(c, k)} as {dt}"
        if v.kind == "mask":
            if dt == np.bool_:
                raise Skip
            v.a = _astype(v.a, dt)
            mirror(v, rs[i][2])
            return "either", f"mask {_slot_desc(c, k)} as {dt}"
        if v.kind == "buf" and v.a.dtype == np.bool_:
            if dt == np.bool_:
                raise Skip
            v.a = _astype(v.a, dt)
            # dropout's mask_out= also takes uint8 (same itemsize; written as 0/1)
            return ("either" if dt == np.uint8 else "raise"), f"bool buffer {_slot_desc(c, k)} as {dt}"
        v.a = _astype(v.a, dt)
        if v.list_ok:
            mirror(v, rs[i][2])
            return "either", f"{_slot_desc(c, k)} as {dt}"
        return "raise", f"{_slot_desc(c, k)} as {dt}"

    if mut == "other_float":
        cand = [i for i, (_, _, v) in enumerate(ss) if v.kind in ("in", "buf") and v.a.dtype.kind == "f"]
        i = _pick(rng, cand)
        c, k, v = ss[i]
        other = np.float32 if v.a.dtype == np.float64 else np.float64
        v.a = v.a.astype(other)
        n_float = sum(1 for (_, _, w) in ss if w.a.dtype.kind == "f")
        if n_float == 1 and v.kind == "in":
            # the only float argument fixes the call's dtype: valid, twin on the same values
            rs[i][2].a = rs[i][2].a.astype(other)
            return "either", f"sole float {_slot_desc(c, k)} as {np.dtype(other)}".replace("sole", "sole", 1)
        if v.list_ok or not v.strict_shape:
            mirror(v, rs[i][2])  # free-form arrays (weights, gradient lists) may mix dtypes
            return "either", f"{_slot_desc(c, k)} as {np.dtype(other)} (mixed dtypes)"
        return "raise", f"{_slot_desc(c, k)} as {np.dtype(other)} (mixed dtypes)"

    if mut == "not_array":
        i = _pick(rng, list(range(len(ss))))
        c, k, v = ss[i]
        repl = [None, v.a.tolist(), 1.5, "x", (1, 2)][int(rng.integers(5))]
        c[k] = repl
        if repl is None and v.optional:
            rs[i][0][rs[i][1]] = None
            return "valid", f"None for optional {_slot_desc(c, k)}"
        if v.list_ok and repl is not None:
            rs[i][0][rs[i][1]] = copy.deepcopy(repl)
            return "either", f"{type(repl).__name__} for {_slot_desc(c, k)}"
        return "raise", f"{type(repl).__name__} for array {_slot_desc(c, k)}"

    if mut == "ndim":
        i = _pick(rng, list(range(len(ss))))
        c, k, v = ss[i]
        a = v.a
        if a.ndim and rng.random() < 0.5:
            # drop a dim: merge the last two, or take [0] of a size-1 dim
            if a.ndim >= 2:
                v.a = a.reshape(a.shape[:-2] + (a.shape[-2] * a.shape[-1],))
            else:
                v.a = np.array(a[0]) if a.size else np.zeros((), a.dtype)
            desc = f"{_slot_desc(c, k)} with one dim fewer {v.a.shape}"
        else:
            v.a = a[None] if rng.random() < 0.5 else a[..., None]
            desc = f"{_slot_desc(c, k)} with one dim more {v.a.shape}"
        if v.strict_ndim:
            return "raise", desc
        mirror(v, rs[i][2])
        return "either", desc

    if mut == "shape":
        i = _pick(rng, [j for j, (_, _, v) in enumerate(ss) if v.a.ndim])
        c, k, v = ss[i]
        a = v.a
        ax = int(rng.integers(a.ndim))
        shape = list(a.shape)
        shape[ax] = shape[ax] + 1 if (shape[ax] == 0 or rng.random() < 0.6) else shape[ax] - 1
        new = np.resize(a, shape) if a.size else np.zeros(shape, a.dtype)
        if v.kind == "idx":
            new = np.clip(new, 0, max(int(a.max()) if a.size else 0, 0)).astype(a.dtype) if new.size else new
        if v.kind == "mask":
            new = new.astype(bool)
        v.a = new.astype(a.dtype)
        desc = f"{_slot_desc(c, k)} shape {a.shape} -> {tuple(shape)}"
        if v.strict_shape:
            return "raise", desc
        mirror(v, rs[i][2])
        return "either", desc

    if mut in ("alias", "overlap"):
        bufs = [i for i, (_, _, v) in enumerate(ss) if v.kind == "buf"]
        ins = [i for i, (_, _, v) in enumerate(ss) if v.kind in ("in", "buf")]
        pairs = [(b, j) for b in bufs for j in ins if b != j and ss[b][2].a.shape == ss[j][2].a.shape
                 and ss[b][2].a.dtype == ss[j][2].a.dtype and ss[b][2].a.size]
        b, j = _pick(rng, pairs)
        cb, kb, vb = ss[b]
        cj, kj, vj = ss[j]
        if mut == "alias":
            # out= is the very same array as the other argument; the twin sees separate arrays
            init = vj.a.copy()
            vb.a = vj.a
            rs[b][2].a = init.copy() if vj.kind == "in" else rs[b][2].a
            if vj.kind == "in":
                rs[b][2].a[...] = init
            return ("either" if vj.kind == "in" else "raise"), f"{_slot_desc(cb, kb)} aliases {_slot_desc(cj, kj)}"
        # partial overlap: both contiguous views into one buffer, shifted by `off` elements
        n = vj.a.size
        if n < 2:
            raise Skip
        off = int(rng.integers(1, n))
        base = np.zeros(n + off, vj.a.dtype)
        base[:n] = vj.a.reshape(-1)
        binit = vb.a.reshape(-1).copy()
        vj.a = base[:n].reshape(vj.a.shape)
        vb.a = base[off:off + n].reshape(vb.a.shape)
        # the twin gets the values the nnkern arrays hold at call time
        rs[j][2].a = vj.a.copy()
        rs[b][2].a = vb.a.copy()
        del binit
        return ("either" if vj.kind == "in" else "raise"), f"{_slot_desc(cb, kb)} overlaps {_slot_desc(cj, kj)} shifted by {off}"

    if mut == "huge":
        i = _pick(rng, [j for j, (_, _, v) in enumerate(ss) if v.a.ndim])
        c, k, v = ss[i]
        a = v.a
        shape = list(a.shape)
        ax = int(rng.integers(a.ndim))
        if rng.random() < 0.5 and a.ndim >= 2:
            # zero-size but with a huge extent elsewhere: contiguous, allocates nothing
            shape[ax] = HUGE
            shape[(ax + 1) % a.ndim] = 0
            v.a = np.lib.stride_tricks.as_strided(np.zeros(1, a.dtype), shape=shape, strides=(0,) * a.ndim)
            v.a = np.empty(shape, a.dtype) if 0 in shape else v.a
            desc = f"{_slot_desc(c, k)} zero-size with a huge extent {tuple(shape)}"
        else:
            # a stride-0 view of one element with a huge extent (nothing allocated)
            shape[ax] = HUGE
            base = np.ones(1, a.dtype) if a.dtype.kind != "b" else np.ones(1, bool)
            v.a = np.lib.stride_tricks.as_strided(base, shape=shape, strides=(0,) * a.ndim, writeable=False)
            desc = f"{_slot_desc(c, k)} stride-0 view of huge shape {tuple(shape)}"
        mirror(v, rs[i][2])
        return "huge", desc

    if mut == "param":
        cands = [(case.args, i, ref.args) for i, v in enumerate(case.args)
                 if isinstance(v, (int, float, str, tuple, bool)) and not isinstance(v, Arr) and v is not None]
        cands += [(case.kwargs, k, ref.kwargs) for k, v in case.kwargs.items()
                  if isinstance(v, (int, float, str, tuple, bool)) and v is not None]
        c, k, rc = _pick(rng, cands)
        old = c[k]
        if isinstance(old, bool):
            pool = [1, 0, None, "yes", np.bool_(not old)]
        elif isinstance(old, int):
            pool = [-1, 0, -2**31, 2**31, 2**32 + 1, 2**63 - 1, 2**63, 2**64 + 5, -2**63, 1.5, True, None,
                    old + 1, old * 1000 + 7, np.int64(old), "3"]
        elif isinstance(old, float):
            pool = [math.nan, math.inf, -math.inf, -1.0, 0.0, 1e300, -1e-300, 2.0, 1, None, "0.1"]
        elif isinstance(old, str):
            pool = ["", old.upper(), old + " ", "nonsense", None, 1]
        else:  # tuple of ints
            pool = [tuple(-x for x in old), tuple(x + 2**31 for x in old), old + (1,), old[:1], (), tuple(
                float(x) for x in old), tuple(2**62 for _ in old), tuple(0 for _ in old), list(old)]
        new = pool[int(rng.integers(len(pool)))]
        c[k] = new
        rc[k] = copy.deepcopy(new)
        return "either", f"param {_slot_desc(c, k)} {old!r} -> {new!r}"

    raise AssertionError(mut)


# ---------------------------------------------------------------------------------------------
# Running and comparing


def materialize(v, side, snapshots=None):
    if isinstance(v, Arr):
        if snapshots is not None and v.kind in ("in", "idx", "mask"):
            snapshots.append((v.a, _snapshot(v.a)))
        return v.a
    if isinstance(v, Fwd):
        fn = getattr(side, v.fn)
        return fn(*[materialize(a, side) for a in v.args],
                  **{k: materialize(a, side) for k, a in v.kwargs.items()})[v.index]
    if isinstance(v, list) and v and all(isinstance(e, Arr) for e in v):
        return [materialize(e, side, snapshots) for e in v]
    return v


def _snapshot(a):
    try:
        if a.size > 10**7 or not isinstance(a, np.ndarray) or a.dtype == object:
            return None
        return np.array(a, copy=True)
    except Exception:  # noqa: BLE001 - snapshot is best-effort
        return None


def call(side, name, case, snapshots=None):
    fn = getattr(side, name)
    if side is reference and name in TWIN_WORKAROUNDS:
        fn = TWIN_WORKAROUNDS[name](fn)
    args = [materialize(a, side, snapshots) for a in case.args]
    kwargs = {k: materialize(v, side, snapshots) for k, v in case.kwargs.items()}
    return fn(*args, **kwargs), args, kwargs


def close(a, b, dtype, scale):
    """None if a matches b, else a description of the first difference."""
    if isinstance(b, (tuple, list)):
        if not isinstance(a, (tuple, list)) or len(a) != len(b):
            return f"structure {type(a).__name__}[{len(a) if hasattr(a, '__len__') else '?'}] vs {type(b).__name__}[{len(b)}]"
        for i, (x, y) in enumerate(zip(a, b)):
            d = close(x, y, dtype, scale)
            if d:
                return f"[{i}] {d}"
        return None
    if b is None or a is None:
        return None if (a is None and b is None) else f"{type(a).__name__} vs {type(b).__name__}"
    if isinstance(b, dict):
        return None
    a_arr, b_arr = np.asarray(a), np.asarray(b)
    if a_arr.shape != b_arr.shape:
        return f"shape {a_arr.shape} vs {b_arr.shape}"
    if b_arr.dtype.kind in "biu" or a_arr.dtype.kind in "biu":
        return None if np.array_equal(a_arr, b_arr) else "integer/bool values differ"
    a64, b64 = a_arr.astype(np.float64), b_arr.astype(np.float64)
    rtol, atol = TOL.get(np.dtype(dtype), TOL[np.dtype(np.float32)])
    if a_arr.dtype == np.float32 or b_arr.dtype == np.float32:
        rtol, atol = TOL[np.dtype(np.float32)]
    fin = np.isfinite(b64)
    mag = max(1.0, float(np.abs(b64[fin]).max())) if fin.any() else 1.0
    nan_a, nan_b = np.isnan(a64), np.isnan(b64)
    if not np.array_equal(nan_a, nan_b):
        i = np.argwhere(nan_a != nan_b)[0]
        return f"NaN pattern differs at {tuple(i)}: {a64[tuple(i)]} vs {b64[tuple(i)]}"
    inf = np.isinf(b64) | np.isinf(a64)
    if not np.array_equal(a64[inf], b64[inf]):
        return "Inf values differ"
    m = ~(nan_b | inf)
    err = np.abs(a64[m] - b64[m])
    lim = scale * (atol * mag + rtol * np.abs(b64[m]))
    if np.any(err > lim):
        k = int(np.argmax(err - lim))
        return f"max excess: |{a64[m][k]!r} - {b64[m][k]!r}| > {lim[k]:.3g}"
    return None


def run_one(name, seed):
    """Runs case (name, seed). Returns a dict: status, expect, desc, detail."""
    if name.startswith("nn."):
        import fuzz_layers
        return fuzz_layers.run_layer(name, seed)
    case, ref, expect, desc, dtype = draw(name, seed)
    allowed = (TypeError, ValueError) + EXTRA_EXCEPTIONS.get(name, ())
    if expect == "huge":
        allowed = allowed + (MemoryError, OverflowError)
    if desc.startswith("param"):  # absurd sizes may fail to allocate the output
        allowed = allowed + (OverflowError, MemoryError)
    res = dict(name=name, seed=seed, expect=expect, desc=desc, dtype=str(dtype))
    snaps = []
    try:
        with np.errstate(all="ignore"):
            got, nk_args, nk_kwargs = call(nnkern, name, case, snaps)
    except allowed as e:
        msg = str(e)
        res["error"] = f"{type(e).__name__}: {msg[:300]}"
        res["named"] = name in msg or _wrapper_named(name, msg)
        if expect == "valid":
            # A valid call must not raise (documented exceptions excepted, e.g. clip_grad_norm's RuntimeError)
            if isinstance(e, EXTRA_EXCEPTIONS.get(name, ())):
                res["status"] = "raised_ok"
            else:
                res["status"] = "rejected_valid"
        else:
            res["status"] = "raised_ok"
        return res
    except BaseException as e:  # noqa: BLE001 - any other exception type is a finding
        res["status"] = "bad_exception"
        res["error"] = f"{type(e).__name__}: {str(e)[:300]}"
        return res

    if expect == "raise":
        res["status"] = "accepted_invalid"
        return res

    # Read-only inputs must be unchanged (unless the case aliases them with a buffer on purpose).
    if not desc.startswith(("alias", "overlap", "param")):  # a param (e.g. training=1) may make an input a buffer
        for arr, snap in snaps:
            if snap is not None and isinstance(arr, np.ndarray) and arr.shape == snap.shape:
                if not np.array_equal(arr, snap, equal_nan=True):
                    res["status"] = "input_modified"
                    return res

    if expect == "huge":
        # Accepted only if the call is really empty (a huge stride-0 input cannot be copied under
        # the child's address-space limit). The twin is not run: NumPy loops over a huge
        # zero-size extent for minutes. Results must be zero-size or small.
        res["status"] = "huge_unverified"
        for r in (got if isinstance(got, tuple) else (got,)):
            if isinstance(r, np.ndarray) and r.size > 10**7:
                res["status"] = "mismatch"
                res["detail"] = f"huge call returned an array of {r.size} elements"
        return res

    try:
        with np.errstate(all="ignore"):
            want, ref_args, ref_kwargs = call(reference, name, ref)
    except BaseException as e:  # noqa: BLE001
        if expect == "valid":
            res["status"] = "twin_error"  # the twin failed on a valid call: a harness/twin problem
            res["error"] = f"twin {type(e).__name__}: {str(e)[:300]}"
            return res
        res["status"] = "huge_unverified" if (expect == "huge" and isinstance(e, MemoryError)) else "twin_rejects"
        res["error"] = f"twin {type(e).__name__}: {str(e)[:300]}"
        return res

    nonfinite_in = desc.startswith("nan_inf")
    d = _compare(got, want, case, ref, nk_args, nk_kwargs, ref_args, ref_kwargs, dtype, nonfinite_in)
    if d:
        # Disagreements on NaN/Inf inputs get their own status: they need triage against torch
        # (the twin is not always right about non-finite values); see FUZZ.md.
        nonfinite = desc.startswith("nan_inf") or (desc.startswith("param") and ("nan" in desc or "inf" in desc
                                                                                 or "e+300" in desc))
        res["status"] = "nan_mismatch" if nonfinite else "mismatch"
        res["detail"] = d
    else:
        res["status"] = "valid_ok" if expect == "valid" else "either_ok"
    return res


def _wrapper_named(name, msg):
    # sequence passes validate through their cell names; the _multi steps through the single names
    base = name.replace("_multi", "").replace("_forward_backward", "").replace("_backward", "")
    return base.split("_")[0] in msg


def _compare(got, want, case, ref, nk_args, nk_kwargs, ref_args, ref_kwargs, dtype, nonfinite_in=False):
    ignore = tuple(case.ignore) + (tuple(case.nan_ignore) if nonfinite_in else ())
    if ignore:
        got = tuple(x for i, x in enumerate(got) if i not in ignore)
        want = tuple(x for i, x in enumerate(want) if i not in ignore)
    d = close(got, want, dtype, case.scale)
    if d:
        return f"result {d}"
    # every in-place buffer ends in the same state on both sides
    for (cs, ks, vs), (cr, kr, vr) in zip(slots(case), slots(ref)):
        if vs.kind == "buf" and isinstance(vs.a, np.ndarray) and isinstance(vr.a, np.ndarray):
            d = close(vs.a, vr.a, dtype, case.scale)
            if d:
                return f"buffer {_slot_desc(cs, ks)} {d}"
    return None
