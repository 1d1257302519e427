"""Convolution forward and forward+backward: nnkern vs the NumPy im2col twin, torch NCHW / channels_last, GEMM roof."""

from _harness import family_tests

test_bench = family_tests("conv")
