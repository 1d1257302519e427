"""Losses: fused cross-entropy / BCE / MSE forward+backward, nnkern vs its NumPy twin vs torch autograd."""

from _harness import family_tests

test_bench = family_tests("loss")
