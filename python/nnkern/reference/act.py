"""NumPy twins of the act kernels (not written yet)."""

__all__ = []
