"""Optimizer steps: nnkern fused kernels vs the NumPy twin vs torch (fused, foreach, single)."""

from _harness import family_tests

test_bench = family_tests("optim")
