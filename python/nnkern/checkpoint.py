"""Checkpoints: ``nk.save(path, model, optimizer=None, **extra)`` and ``nk.load(path, model, optimizer)``.

Format: one ``.npz`` (NumPy zip) file holding
  __nnkern_checkpoint__   format version (int) and metadata (JSON string)
  model/<name>            every entry of model.state_dict()
  optim/state/<i>/<key>   optimizer per-parameter state arrays (and scalars)
  optim/meta              the rest of optimizer.state_dict() (param_groups ...) as JSON
  extra/<key>             user extras: arrays as arrays, anything JSON-serialisable as JSON
Writes are atomic: the file is written to a temporary name in the same directory, flushed,
fsync'ed and renamed over the target, so a crash mid-save leaves the previous checkpoint intact.
"""

import io
import json
import numbers
import os
import tempfile
import zipfile

import numpy as np

__all__ = ["save", "load", "CheckpointError", "FORMAT_VERSION"]

FORMAT_VERSION = 1
_MAGIC = "__nnkern_checkpoint__"


class CheckpointError(ValueError):
    """A checkpoint file is unreadable, of another format, or does not match the model."""


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray) and obj.ndim == 0:
        return obj.item()
    raise TypeError(f"not JSON-serialisable: {type(obj).__name__}")


def _optimizer_arrays(opt_state):
    arrays = {}
    state = opt_state.get("state", {})
    for idx, pstate in state.items():
        for key, val in pstate.items():
            arrays[f"optim/state/{idx}/{key}"] = np.asarray(val)
    meta = {k: v for k, v in opt_state.items() if k != "state"}
    arrays["optim/meta"] = np.array(json.dumps(meta, default=_json_default))
    return arrays


def _optimizer_state(files):
    meta = json.loads(str(files["optim/meta"][()]))
    state = {}
    for key in files:
        if key.startswith("optim/state/"):
            _, _, idx, name = key.split("/", 3)
            val = files[key]
            state.setdefault(int(idx), {})[name] = val.copy() if val.ndim else val[()]
    meta["state"] = state
    return meta


def save(path, model=None, optimizer=None, **extra):
    """Saves model (and optimizer) state plus JSON-serialisable or array extras, atomically."""
    path = os.fspath(path)
    arrays = {}
    meta = {"format": FORMAT_VERSION, "extra_json": {}}
    try:
        import nnkern

        meta["nnkern"] = nnkern.__version__
    except Exception:  # pragma: no cover
        pass
    if model is not None:
        meta["model"] = type(model).__name__
        for name, arr in model.state_dict().items():
            arrays[f"model/{name}"] = np.asarray(arr)
    if optimizer is not None:
        meta["optimizer"] = type(optimizer).__name__
        arrays.update(_optimizer_arrays(optimizer.state_dict()))
    for key, val in extra.items():
        if isinstance(val, np.ndarray):
            arrays[f"extra/{key}"] = val
        else:
            try:
                json.dumps(val, default=_json_default)
            except TypeError as exc:
                raise TypeError(f"nk.save: extra {key!r} is neither an array nor JSON-serialisable ({exc})") from None
            meta["extra_json"][key] = val
    arrays[_MAGIC] = np.array(json.dumps(meta, default=_json_default))

    directory = os.path.dirname(os.path.abspath(path)) or "."
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:  # make the rename itself durable
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:  # pragma: no cover - some filesystems refuse fsync on directories
        pass
    return path


def load(path, model=None, optimizer=None, strict=True):
    """Loads a checkpoint written by ``save`` into model/optimizer; returns the extras (dict).

    Raises CheckpointError (a ValueError) for a missing, corrupt or foreign file, and for a model
    whose parameter names or shapes differ (naming the missing/unexpected keys and the shapes).
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            blob = f.read()
        files = dict(np.load(io.BytesIO(blob), allow_pickle=False))
    except FileNotFoundError:
        raise
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise CheckpointError(f"nk.load: {path} is not a readable nnkern checkpoint ({exc})") from None
    if _MAGIC not in files:
        raise CheckpointError(f"nk.load: {path} is an .npz file but not an nnkern checkpoint (no {_MAGIC} entry)")
    meta = json.loads(str(files[_MAGIC][()]))
    version = meta.get("format")
    if not isinstance(version, numbers.Integral) or version > FORMAT_VERSION or version < 1:
        raise CheckpointError(f"nk.load: {path} has checkpoint format {version!r}; this nnkern reads "
                              f"formats 1..{FORMAT_VERSION}")
    if model is not None:
        state = {k[len("model/"):]: v for k, v in files.items() if k.startswith("model/")}
        if not state and "model" not in meta:
            raise CheckpointError(f"nk.load: {path} holds no model state")
        try:
            model.load_state_dict(state, strict=strict)
        except ValueError as exc:
            raise CheckpointError(f"nk.load: {path} does not match the model: {exc}") from None
    if optimizer is not None:
        if "optim/meta" not in files:
            raise CheckpointError(f"nk.load: {path} holds no optimizer state")
        try:
            optimizer.load_state_dict(_optimizer_state(files))
        except (ValueError, KeyError) as exc:
            raise CheckpointError(f"nk.load: {path} does not match the optimizer: {exc}") from None
    extras = dict(meta.get("extra_json", {}))
    for k, v in files.items():
        if k.startswith("extra/"):
            extras[k[len("extra/"):]] = v
    return extras
