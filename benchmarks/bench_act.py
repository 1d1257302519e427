"""Activations: nnkern vs its NumPy twin vs torch (forward, forward+backward; softmax/log_softmax)."""

from _harness import family_tests

test_bench = family_tests("act")
