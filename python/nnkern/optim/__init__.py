"""nnkern.optim: torch.optim-compatible optimizers and learning-rate schedulers.

Optimizers (``SGD``, ``Adam``, ``AdamW``, ``Adagrad``, ``RMSprop``, ``Adadelta``) take
``nnkern.nn.Parameter`` objects (or param-group dicts), with torch's constructor arguments,
defaults, ``param_groups``, ``state`` keys and ``state_dict()`` layout; each ``step()`` runs one
fused multi-tensor kernel per param group. Schedulers live in ``nnkern.optim.lr_scheduler``
(``StepLR``, ``MultiStepLR``, ``ExponentialLR``, ``CosineAnnealingLR``, ``ReduceLROnPlateau``).

    opt = nk.optim.AdamW(model.parameters(), lr=1e-3)
    sched = nk.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=100)
    for epoch in range(100):
        for x, y in batches:
            opt.zero_grad()
            loss = crit(model(x), y)
            model.backward(crit.backward())
            opt.step()
        sched.step()
"""

from . import lr_scheduler
from .optimizer import SGD, Adadelta, Adagrad, Adam, AdamW, Optimizer, RMSprop

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "Adagrad", "RMSprop", "Adadelta", "lr_scheduler"]
