"""Functional kernels: thin wrappers over nnkern._core (argument normalisation and docs only).

Each family is one module whose ``__all__`` is re-exported at the top level of ``nnkern``.
"""
