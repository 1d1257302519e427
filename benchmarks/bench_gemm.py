"""GEMM roof: nnkern's OpenBLAS copy (split over OpenMP) vs numpy's BLAS vs torch.mm."""

from _harness import family_tests

test_bench = family_tests("gemm")
