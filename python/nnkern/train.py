"""Training loop utilities (``nk.train``): fit, evaluate, predict, early stopping, checkpoints,
truncated BPTT for sequence models, and training-curve plots.

    hist = nk.train.fit(model, nk.nn.CrossEntropyLoss(), nk.optim.Adam(model.parameters()),
                        (x_train, y_train), epochs=10, val_data=(x_val, y_val), batch_size=64,
                        callbacks=[nk.train.EarlyStopping(patience=3)])

A model is any nnkern Module (forward/backward); a loss is a module whose call returns a float and
whose ``backward()`` returns the gradient of the prediction. Progress bars use tqdm when it is
installed (``pip install nnkern[examples]``), else one line per epoch.
"""

import math
import sys
import time

import numpy as np

from .data import DataLoader, sequence_streams
from .random import default_generator

__all__ = [
    "History", "Callback", "EarlyStopping", "ModelCheckpoint", "fit", "evaluate", "predict", "fit_sequence",
    "plot_history",
]


class History(dict):
    """Per-epoch metrics: history['loss'][e], history['val_accuracy'][e], ... (a dict of lists)."""

    def add(self, **metrics):
        for k, v in metrics.items():
            self.setdefault(k, []).append(v)

    @property
    def epochs(self):
        return len(self.get("loss", []))


class Callback:
    """Hooks called by fit: on_train_begin, on_epoch_end (return True to stop), on_train_end."""

    def on_train_begin(self, model, optimizer):
        pass

    def on_epoch_end(self, epoch, logs, model, optimizer):
        return False

    def on_train_end(self, model, optimizer):
        pass


class EarlyStopping(Callback):
    """Stops when ``monitor`` has not improved by more than ``min_delta`` for ``patience`` epochs;
    with restore_best, puts back the best weights at the end."""

    def __init__(self, monitor="val_loss", patience=5, min_delta=0.0, mode="auto", restore_best=True):
        self.monitor = monitor
        self.patience = int(patience)
        self.min_delta = float(min_delta)
        if mode == "auto":
            mode = "max" if "acc" in monitor else "min"
        if mode not in ("min", "max"):
            raise ValueError(f"EarlyStopping: mode must be 'min', 'max' or 'auto', got {mode!r}")
        self.mode = mode
        self.restore_best = restore_best
        self.best = None
        self.best_epoch = None
        self.best_state = None
        self.wait = 0
        self.stopped_epoch = None

    def _improved(self, value):
        if self.best is None:
            return True
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def on_train_begin(self, model, optimizer):
        self.best, self.best_epoch, self.best_state, self.wait, self.stopped_epoch = None, None, None, 0, None

    def on_epoch_end(self, epoch, logs, model, optimizer):
        if self.monitor not in logs:
            raise KeyError(f"EarlyStopping: metric {self.monitor!r} is not logged (have {sorted(logs)}); "
                           "pass val_data to fit to get val_ metrics")
        value = logs[self.monitor]
        if self._improved(value):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best:
                self.best_state = {k: np.array(v, copy=True) for k, v in model.state_dict().items()}
            return False
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = epoch
            return True
        return False

    def on_train_end(self, model, optimizer):
        if self.restore_best and self.best_state is not None:
            model.load_state_dict(self.best_state)


class ModelCheckpoint(Callback):
    """Saves model + optimizer with nk.save after each epoch (or only on improvement)."""

    def __init__(self, path, monitor="val_loss", save_best_only=False, mode="auto"):
        self.path = path
        self.monitor = monitor
        self.save_best_only = save_best_only
        if mode == "auto":
            mode = "max" if "acc" in monitor else "min"
        self.mode = mode
        self.best = None

    def on_epoch_end(self, epoch, logs, model, optimizer):
        from .checkpoint import save

        if self.save_best_only:
            value = logs.get(self.monitor)
            if value is None:
                raise KeyError(f"ModelCheckpoint: metric {self.monitor!r} is not logged (have {sorted(logs)})")
            better = self.best is None or (value < self.best if self.mode == "min" else value > self.best)
            if not better:
                return False
            self.best = value
        save(self.path, model, optimizer, epoch=epoch, logs={k: float(v) for k, v in logs.items()})
        return False


# ---------------------------------------------------------------------------------------------
# Progress display


class _Progress:
    def __init__(self, total, desc, enabled):
        self.enabled = enabled
        self.bar = None
        self.desc = desc
        self.start = time.perf_counter()
        if enabled:
            try:
                from tqdm.auto import tqdm

                self.bar = tqdm(total=total, desc=desc, leave=True, dynamic_ncols=True, file=sys.stdout)
            except ImportError:
                self.bar = None

    def update(self, n, **postfix):
        if self.bar is not None:
            self.bar.update(n)
            self.bar.set_postfix({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in postfix.items()},
                                 refresh=False)

    def close(self, **final):
        if self.bar is not None:
            self.bar.set_postfix({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in final.items()})
            self.bar.close()
        elif self.enabled:
            parts = " ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in final.items())
            print(f"{self.desc}: {parts} ({time.perf_counter() - self.start:.1f} s)", flush=True)


# ---------------------------------------------------------------------------------------------
# Classification helpers


def _accuracy(pred, target):
    """Fraction of argmax(pred) == target for class-id targets; None when not a classification."""
    target = np.asarray(target)
    if pred.ndim >= 2 and target.dtype.kind in "iu" and target.shape == pred.shape[:1] + pred.shape[2:]:
        return float(np.mean(np.argmax(pred, axis=1) == target))
    return None


def _as_loader(data, batch_size, shuffle, rng, transform=None):
    if isinstance(data, DataLoader):
        return data
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise TypeError("fit: data must be a DataLoader or an (inputs, targets) pair")
    return DataLoader(tuple(data), batch_size=batch_size, shuffle=shuffle, transform=transform, rng=rng)


def evaluate(model, loss_fn, data, batch_size=256):
    """Mean loss (and accuracy for class-id targets) over data, in eval mode, no gradients."""
    was_training = model.training
    model.eval()
    total, correct, n, any_acc = 0.0, 0.0, 0, True
    try:
        for xb, yb in _as_loader(data, batch_size, False, None):
            pred = model(xb)
            loss = loss_fn(pred, yb)
            total += float(loss) * len(xb)
            acc = _accuracy(pred, yb)
            if acc is None:
                any_acc = False
            else:
                correct += acc * len(xb)
            n += len(xb)
    finally:
        model.train(was_training)
    if n == 0:
        raise ValueError("evaluate: no data")
    return (total / n, correct / n) if any_acc else (total / n, None)


def predict(model, x, batch_size=256):
    """Model outputs for x in eval mode, batch by batch, concatenated."""
    was_training = model.training
    model.eval()
    try:
        outs = [model(x[i:i + batch_size]) for i in range(0, len(x), batch_size)]
    finally:
        model.train(was_training)
    return np.concatenate(outs, axis=0)


def _apply_penalties(model, l1, l2):
    if not (l1 or l2):
        return 0.0
    from .regularization import l1_penalty, l2_penalty

    params = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    return (l1_penalty(params, l1) if l1 else 0.0) + (l2_penalty(params, l2) if l2 else 0.0)


def _clip(model, max_norm):
    if max_norm is None:
        return None
    from .nn.utils import clip_grad_norm_

    return clip_grad_norm_(model.parameters(), max_norm)


def fit(model, loss_fn, optimizer, train_data, epochs=1, val_data=None, batch_size=32, shuffle=True,
        clip_grad_norm=None, callbacks=(), scheduler=None, transform=None, l1=0.0, l2=0.0, rng=None,
        progress=True):
    """Trains ``model`` and returns a History of per-epoch metrics.

    train_data / val_data: (inputs, targets) arrays or DataLoaders. Each step: zero grads (kept
    allocated), forward, loss, backward, optional L1/L2 penalties (added to loss and gradients of
    weight matrices/kernels), optional gradient clipping by global norm, optimizer step.
    scheduler: an LR scheduler stepped once per epoch (ReduceLROnPlateau gets val_loss, or loss).
    transform: augmentation ``f(xb, rng)`` for training batches. callbacks: EarlyStopping, ...
    """
    rng = rng if rng is not None else default_generator()
    loader = _as_loader(train_data, batch_size, shuffle, rng, transform)
    history = History()
    for cb in callbacks:
        cb.on_train_begin(model, optimizer)
    for epoch in range(int(epochs)):
        model.train()
        t0 = time.perf_counter()
        bar = _Progress(len(loader.dataset), f"epoch {epoch + 1}/{epochs}", progress)
        seen, loss_sum, correct, acc_ok = 0, 0.0, 0.0, True
        for xb, yb in loader:
            model.zero_grad(set_to_none=False)
            pred = model(xb)
            loss = float(loss_fn(pred, yb))
            model.backward(loss_fn.backward())
            loss += _apply_penalties(model, l1, l2)
            _clip(model, clip_grad_norm)
            optimizer.step()
            if not math.isfinite(loss):
                bar.close(loss=loss)
                raise FloatingPointError(f"fit: loss became {loss} at epoch {epoch + 1}")
            n = len(xb)
            seen += n
            loss_sum += loss * n
            acc = _accuracy(pred, yb)
            if acc is None:
                acc_ok = False
            else:
                correct += acc * n
            bar.update(n, loss=loss_sum / seen, samples_s=int(seen / max(time.perf_counter() - t0, 1e-9)))
        dt = time.perf_counter() - t0
        logs = {"loss": loss_sum / max(seen, 1)}
        if acc_ok and seen:
            logs["accuracy"] = correct / seen
        if val_data is not None:
            vloss, vacc = evaluate(model, loss_fn, val_data, batch_size=max(batch_size, 256))
            logs["val_loss"] = vloss
            if vacc is not None:
                logs["val_accuracy"] = vacc
        logs["lr"] = float(optimizer.param_groups[0]["lr"])
        logs["epoch_time"] = dt
        logs["samples_per_s"] = seen / max(dt, 1e-9)
        history.add(**logs)
        bar.close(**{k: v for k, v in logs.items() if k not in ("epoch_time", "samples_per_s", "lr")})
        if scheduler is not None:
            if type(scheduler).__name__ == "ReduceLROnPlateau":
                scheduler.step(logs.get("val_loss", logs["loss"]))
            else:
                scheduler.step()
        stop = False
        for cb in callbacks:
            stop = bool(cb.on_epoch_end(epoch, logs, model, optimizer)) or stop
        if stop:
            break
    for cb in callbacks:
        cb.on_train_end(model, optimizer)
    return history


def fit_sequence(model, loss_fn, optimizer, ids, epochs=1, seq_len=64, batch_size=32, clip_grad_norm=None,
                 val_ids=None, callbacks=(), scheduler=None, progress=True, max_steps=None):
    """Truncated-BPTT training of a sequence model on a 1-D token array.

    ``model.forward(x, state) -> (logits, state)`` with x (T, B) int64 token ids, logits (T, B, V),
    state whatever the model carries (None at the start of an epoch); ``model.backward(dlogits)``
    back-propagates through the last chunk only: the state handed to the next chunk is a plain
    array with no history, which is exactly truncated BPTT. Returns a History (loss per epoch, and
    val_loss when val_ids is given).
    """
    history = History()
    for cb in callbacks:
        cb.on_train_begin(model, optimizer)
    steps = 0
    for epoch in range(int(epochs)):
        model.train()
        t0 = time.perf_counter()
        n_chunks = math.ceil(((len(ids) - 1) // batch_size) / seq_len)
        bar = _Progress(n_chunks, f"epoch {epoch + 1}/{epochs}", progress)
        state, loss_sum, tokens = None, 0.0, 0
        for x, y in sequence_streams(ids, batch_size, seq_len):
            model.zero_grad(set_to_none=False)
            logits, state = model(x, state)
            V = logits.shape[-1]
            loss = float(loss_fn(logits.reshape(-1, V), y.reshape(-1)))
            model.backward(loss_fn.backward().reshape(logits.shape))
            _clip(model, clip_grad_norm)
            optimizer.step()
            if not math.isfinite(loss):
                raise FloatingPointError(f"fit_sequence: loss became {loss} at epoch {epoch + 1}")
            loss_sum += loss * y.size
            tokens += y.size
            steps += 1
            bar.update(1, loss=loss_sum / tokens, tok_s=int(tokens / max(time.perf_counter() - t0, 1e-9)))
            if max_steps is not None and steps >= max_steps:
                break
        dt = time.perf_counter() - t0
        logs = {"loss": loss_sum / max(tokens, 1), "lr": float(optimizer.param_groups[0]["lr"]),
                "epoch_time": dt, "tokens_per_s": tokens / max(dt, 1e-9)}
        if val_ids is not None:
            logs["val_loss"] = evaluate_sequence(model, loss_fn, val_ids, seq_len, batch_size)
        history.add(**logs)
        bar.close(**{k: v for k, v in logs.items() if k in ("loss", "val_loss")})
        if scheduler is not None:
            if type(scheduler).__name__ == "ReduceLROnPlateau":
                scheduler.step(logs.get("val_loss", logs["loss"]))
            else:
                scheduler.step()
        stop = False
        for cb in callbacks:
            stop = bool(cb.on_epoch_end(epoch, logs, model, optimizer)) or stop
        if stop or (max_steps is not None and steps >= max_steps):
            break
    for cb in callbacks:
        cb.on_train_end(model, optimizer)
    return history


def evaluate_sequence(model, loss_fn, ids, seq_len=64, batch_size=32):
    """Mean per-token loss of a sequence model over ids (eval mode, state carried across chunks)."""
    was_training = model.training
    model.eval()
    try:
        state, total, tokens = None, 0.0, 0
        for x, y in sequence_streams(ids, batch_size, seq_len):
            logits, state = model(x, state)
            total += float(loss_fn(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))) * y.size
            tokens += y.size
    finally:
        model.train(was_training)
    return total / max(tokens, 1)


def plot_history(history, path, title=None):
    """Saves loss (and accuracy) curves per epoch as a PNG; needs matplotlib (nnkern[examples])."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError("plot_history needs matplotlib: pip install 'nnkern[examples]'") from exc
    has_acc = "accuracy" in history or "val_accuracy" in history
    fig, axes = plt.subplots(1, 2 if has_acc else 1, figsize=(10 if has_acc else 5, 3.5))
    axes = np.atleast_1d(axes)
    for key in ("loss", "val_loss"):
        if key in history:
            axes[0].plot(range(1, len(history[key]) + 1), history[key], marker="o", label=key)
    axes[0].set_xlabel("epoch")
    axes[0].set_ylabel("loss")
    axes[0].legend()
    if has_acc:
        for key in ("accuracy", "val_accuracy"):
            if key in history:
                axes[1].plot(range(1, len(history[key]) + 1), history[key], marker="o", label=key)
        axes[1].set_xlabel("epoch")
        axes[1].set_ylabel("accuracy")
        axes[1].legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
