"""NumPy twins of the norm kernels (not written yet)."""

__all__ = []
