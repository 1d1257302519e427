#include "nnkern/gemm.h"

#include <cblas.h>

#include <algorithm>

#include "nnkern/parallel.h"
#include "nnkern/simd.h"

namespace nnkern {
namespace {

// Below this many flops one call on one thread beats splitting (~40 us at 200 GFLOP/s).
constexpr double kMinSplitFlops = 8.0e6;
// Each block should carry at least this much work, so repacking the shared operand stays cheap.
constexpr double kMinBlockFlops = 4.0e6;
// At most this many blocks: enough to balance 1, 2 or 4 threads, few enough that the per-block
// repacking of the other operand stays a few percent of the work.
constexpr int kMaxBlocks = 4;
// Block edges along the split dimension are multiples of this (micro-kernel widths, cache lines).
constexpr index_t kBlockAlign = 32;

inline CBLAS_TRANSPOSE tr(bool t) { return t ? CblasTrans : CblasNoTrans; }

inline void blas_call(bool ta, bool tb, index_t M, index_t N, index_t K, float alpha,
                      const float* A, index_t lda, const float* B, index_t ldb, float beta,
                      float* C, index_t ldc) {
  scipy_cblas_sgemm(CblasRowMajor, tr(ta), tr(tb), static_cast<blasint>(M),
                    static_cast<blasint>(N), static_cast<blasint>(K), alpha, A,
                    static_cast<blasint>(lda), B, static_cast<blasint>(ldb), beta, C,
                    static_cast<blasint>(ldc));
}

inline void blas_call(bool ta, bool tb, index_t M, index_t N, index_t K, double alpha,
                      const double* A, index_t lda, const double* B, index_t ldb, double beta,
                      double* C, index_t ldc) {
  scipy_cblas_dgemm(CblasRowMajor, tr(ta), tr(tb), static_cast<blasint>(M),
                    static_cast<blasint>(N), static_cast<blasint>(K), alpha, A,
                    static_cast<blasint>(lda), B, static_cast<blasint>(ldb), beta, C,
                    static_cast<blasint>(ldc));
}

inline void blas_gemv(bool trans, index_t rows, index_t cols, float alpha, const float* A, index_t lda,
                      const float* x, index_t incx, float* y, index_t incy) {
  scipy_cblas_sgemv(CblasRowMajor, tr(trans), static_cast<blasint>(rows), static_cast<blasint>(cols), alpha, A,
                    static_cast<blasint>(lda), x, static_cast<blasint>(incx), 1.0f, y, static_cast<blasint>(incy));
}

inline void blas_gemv(bool trans, index_t rows, index_t cols, double alpha, const double* A, index_t lda,
                      const double* x, index_t incx, double* y, index_t incy) {
  scipy_cblas_dgemv(CblasRowMajor, tr(trans), static_cast<blasint>(rows), static_cast<blasint>(cols), alpha, A,
                    static_cast<blasint>(lda), x, static_cast<blasint>(incx), 1.0, y, static_cast<blasint>(incy));
}

// A[M,N] += alpha * x y^T, y contiguous. Our own loop, not OpenBLAS's sger: that one runs one
// axpy call per row, whose call overhead dominates the short rows of batch-1 weight gradients
// (~5 of a 1 x 64 LSTM cell backward's 10 us).
template <class T>
NNK_INLINE void ger_rows_body(index_t M, index_t N, T alpha, const T* x, index_t incx, const T* NNK_RESTRICT y,
                              T* A, index_t lda) {
  for (index_t i = 0; i < M; ++i) {
    const T s = alpha * x[i * incx];
    T* NNK_RESTRICT row = A + i * lda;
#pragma omp simd
    for (index_t j = 0; j < N; ++j) row[j] += s * y[j];
  }
}
NNK_MULTIVERSION(ger_rows, ger_rows_body)

inline void blas_ger(index_t M, index_t N, float alpha, const float* x, index_t incx, const float* y, index_t incy,
                     float* A, index_t lda) {
  if (incy == 1) {
    ger_rows(M, N, alpha, x, incx, y, A, lda);
    return;
  }
  scipy_cblas_sger(CblasRowMajor, static_cast<blasint>(M), static_cast<blasint>(N), alpha, x,
                   static_cast<blasint>(incx), y, static_cast<blasint>(incy), A, static_cast<blasint>(lda));
}

inline void blas_ger(index_t M, index_t N, double alpha, const double* x, index_t incx, const double* y,
                     index_t incy, double* A, index_t lda) {
  if (incy == 1) {
    ger_rows(M, N, alpha, x, incx, y, A, lda);
    return;
  }
  scipy_cblas_dger(CblasRowMajor, static_cast<blasint>(M), static_cast<blasint>(N), alpha, x,
                   static_cast<blasint>(incx), y, static_cast<blasint>(incy), A, static_cast<blasint>(lda));
}

// C = beta * C for the K == 0 case (BLAS implementations disagree on it; we follow the maths).
template <class T>
void scale_c(index_t M, index_t N, T beta, T* C, index_t ldc) {
  for (index_t i = 0; i < M; ++i) {
    T* row = C + i * ldc;
    if (beta == T(0)) {
      std::fill(row, row + N, T(0));
    } else if (beta != T(1)) {
      for (index_t j = 0; j < N; ++j) row[j] *= beta;
    }
  }
}

}  // namespace

GemmSplit gemm_split(index_t M, index_t N, index_t K) {
  const double flops = 2.0 * static_cast<double>(M) * static_cast<double>(N) * static_cast<double>(K);
  if (flops < kMinSplitFlops) return {1, false};
  // Split the longer side of C: the operand that every block re-packs is then the smaller one.
  const bool split_m = M > N;
  const index_t len = split_m ? M : N;
  int blocks = 1;
  while (blocks * 2 <= kMaxBlocks && flops / (blocks * 2) >= kMinBlockFlops &&
         len / (blocks * 2) >= 2 * kBlockAlign) {
    blocks *= 2;
  }
  return {blocks, split_m};
}

template <class T>
void gemm_serial(bool trans_a, bool trans_b, index_t M, index_t N, index_t K, T alpha, const T* A,
                 index_t lda, const T* B, index_t ldb, T beta, T* C, index_t ldc) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0) {
    scale_c(M, N, beta, C, ldc);
    return;
  }
  NNK_ASSERT(M <= kGemmMaxDim && N <= kGemmMaxDim && K <= kGemmMaxDim);
  NNK_ASSERT(lda <= kGemmMaxDim && ldb <= kGemmMaxDim && ldc <= kGemmMaxDim);
  // One row, one column or K = 1 (batch-1 cells and linear layers, their weight gradients):
  // OpenBLAS's sgemm packs the whole other operand first, ~8 us of a 1 x 256 x 96 product that
  // gemv does in ~1 us. C is scaled by beta first (so beta = 0 never reads C, as in gemm) and the
  // vector kernels accumulate into it. The choice depends on the shape only (deterministic).
  if (M == 1 || N == 1 || K == 1) {
    if (beta != T(1)) scale_c(M, N, beta, C, ldc);
    if (M == 1) {
      // C[0, :] += alpha * op(B)^T a, a = op(A)[0, :] (stride lda when A is stored transposed)
      if (trans_b) blas_gemv(false, N, K, alpha, B, ldb, A, trans_a ? lda : 1, C, 1);
      else blas_gemv(true, K, N, alpha, B, ldb, A, trans_a ? lda : 1, C, 1);
    } else if (N == 1) {
      // C[:, 0] += alpha * op(A) b, b = op(B)[:, 0] (stride ldb unless B is stored transposed)
      if (trans_a) blas_gemv(true, K, M, alpha, A, lda, B, trans_b ? 1 : ldb, C, ldc);
      else blas_gemv(false, M, K, alpha, A, lda, B, trans_b ? 1 : ldb, C, ldc);
    } else {
      // C += alpha * op(A)[:, 0] op(B)[0, :]
      blas_ger(M, N, alpha, A, trans_a ? 1 : lda, B, trans_b ? ldb : 1, C, ldc);
    }
    return;
  }
  blas_call(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

template <class T>
void gemm(bool trans_a, bool trans_b, index_t M, index_t N, index_t K, T alpha, const T* A,
          index_t lda, const T* B, index_t ldb, T beta, T* C, index_t ldc) {
  if (M <= 0 || N <= 0) return;
  const GemmSplit split = gemm_split(M, N, K);
  if (K <= 0 || split.blocks == 1) {
    gemm_serial(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  const index_t len = split.split_m ? M : N;
  const index_t per = detail::round_up((len + split.blocks - 1) / split.blocks, kBlockAlign);
  const int nblocks = static_cast<int>((len + per - 1) / per);
  auto run_block = [&](int b) {
    const index_t lo = b * per;
    const index_t n = std::min(len, lo + per) - lo;
    if (split.split_m) {
      // Rows lo.. of op(A): row offset in A, or column offset when A is stored transposed.
      const T* Ab = trans_a ? A + lo : A + lo * lda;
      gemm_serial(trans_a, trans_b, n, N, K, alpha, Ab, lda, B, ldb, beta, C + lo * ldc, ldc);
    } else {
      // Columns lo.. of op(B): column offset in B, or row offset when B is stored transposed.
      const T* Bb = trans_b ? B + lo * ldb : B + lo;
      gemm_serial(trans_a, trans_b, M, n, K, alpha, A, lda, Bb, ldb, beta, C + lo, ldc);
    }
  };
  const int nt = std::min(num_threads(), nblocks);
  if (nt <= 1) {
    for (int b = 0; b < nblocks; ++b) run_block(b);
    return;
  }
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int b = 0; b < nblocks; ++b) run_block(b);
}

template void gemm<float>(bool, bool, index_t, index_t, index_t, float, const float*, index_t,
                          const float*, index_t, float, float*, index_t);
template void gemm<double>(bool, bool, index_t, index_t, index_t, double, const double*, index_t,
                           const double*, index_t, double, double*, index_t);
template void gemm_serial<float>(bool, bool, index_t, index_t, index_t, float, const float*,
                                 index_t, const float*, index_t, float, float*, index_t);
template void gemm_serial<double>(bool, bool, index_t, index_t, index_t, double, const double*,
                                  index_t, const double*, index_t, double, double*, index_t);

void blas_init() { scipy_openblas_set_num_threads(1); }
const char* blas_config() { return scipy_openblas_get_config(); }
const char* blas_corename() { return scipy_openblas_get_corename(); }

}  // namespace nnkern
