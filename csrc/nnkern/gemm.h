// Row-major GEMM over our OpenBLAS copy (scipy-openblas32), split across OpenMP threads by us.
//
//   C[M,N] = alpha * op(A)[M,K] @ op(B)[K,N] + beta * C
//   op(A) = A (stored [M, lda >= K]) or A^T (stored [K, lda >= M]); likewise B.
//
// Determinism: OpenBLAS results for a block of C depend on how the call was cut (edge and
// small-matrix kernels sum in other orders), so the cut into blocks depends on (M, N, K) only and
// threads just share the blocks out. Results are bitwise equal for any thread count.
//
// Everything that needs a matrix product goes through here, so a fused or home-grown GEMM can
// replace OpenBLAS later without touching the kernels.
#pragma once

#include "nnkern/common.h"

namespace nnkern {

// Largest dimension or leading dimension one BLAS call takes (blasint is 32-bit).
constexpr index_t kGemmMaxDim = 2147483647;

// Parallel over our OpenMP threads (serial for small products).
template <class T>
void gemm(bool trans_a, bool trans_b, index_t M, index_t N, index_t K, T alpha, const T* A,
          index_t lda, const T* B, index_t ldb, T beta, T* C, index_t ldc);

// Always one BLAS call on the calling thread: for use inside parallel regions.
template <class T>
void gemm_serial(bool trans_a, bool trans_b, index_t M, index_t N, index_t K, T alpha, const T* A,
                 index_t lda, const T* B, index_t ldb, T beta, T* C, index_t ldc);

// How gemm() cuts a product: `blocks` pieces along M (split_m) or N. Exposed for tests/benchmarks.
struct GemmSplit {
  int blocks;
  bool split_m;
};
GemmSplit gemm_split(index_t M, index_t N, index_t K);

// OpenBLAS bookkeeping: its thread count is pinned to 1 (we parallelise).
void blas_init();
const char* blas_config();
const char* blas_corename();

}  // namespace nnkern
