"""NumPy twins of the pool kernels (not written yet)."""

__all__ = []
