"""nnkern's default random generator (initializers, dropout, shuffling), seeded by manual_seed."""

import numpy as np

__all__ = ["manual_seed", "default_generator"]

_generator = np.random.default_rng()


def manual_seed(seed):
    """Re-seeds the default generator used by initializers, dropout and data shuffling."""
    global _generator
    _generator = np.random.default_rng(seed)
    return _generator


def default_generator():
    return _generator
