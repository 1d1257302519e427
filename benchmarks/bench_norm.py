"""Batch norm, dropout, embedding and affine warp: nnkern vs NumPy twins vs torch."""

from _harness import family_tests

test_bench = family_tests("norm")
