"""Pooling: nnkern vs the NumPy twin vs torch NCHW and channels_last (N32 C64 32x32 float32)."""

from _harness import family_tests

test_bench = family_tests("pool")
