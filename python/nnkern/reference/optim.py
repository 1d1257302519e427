"""NumPy twins of the optim kernels (not written yet)."""

__all__ = []
