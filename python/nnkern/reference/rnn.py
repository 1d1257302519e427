"""NumPy twins of the rnn kernels (not written yet)."""

__all__ = []
