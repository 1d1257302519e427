"""Matrix products through nnkern's GEMM (our OpenBLAS copy, split over nnkern's threads)."""

from .._core import matmul

__all__ = ["matmul"]
