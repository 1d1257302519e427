"""NumPy twins of the conv kernels (not written yet)."""

__all__ = []
