"""optim kernels (not written yet)."""

__all__ = []
