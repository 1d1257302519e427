"""NumPy twins of the loss kernels (not written yet)."""

__all__ = []
