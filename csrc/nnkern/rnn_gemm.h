// A register-blocked GEMM for the recurrent step products, C[M,N] (+)= A[M,K] B[K,N], with B
// pre-packed once per sequence call.
//
// Why not OpenBLAS here: each time step multiplies the same weight block again (35 times per
// sequence in the benchmarks), and OpenBLAS re-packs both operands on every call; for these
// mid-sized products (e.g. 64 x 256 x 256 per work item) the packing and call overhead cost
// 20-40% against oneDNN's LSTM. Large one-off products (input projection, weight gradients) stay
// with gemm.h.
//
// Packed B ("panels"): the columns are cut into panels of kPanel = 64 columns; panel q holds rows
// k = 0..Kp-1 of its 64 columns, one contiguous 64-element row per k (zero beyond the last column).
// A step's work item reads whole rows of consecutive panels: contiguous memory, few TLB pages.
//
// Kernel: the output is cut into MR x (NP*VW) tiles held in registers for the whole K loop; per k
// it loads NP vectors of B and broadcasts MR elements of A. The vector width VW follows the ISA
// (GCC vector extensions: AVX-512 16 floats, AVX2 8, SSE 4) and so do MR/NP (register budget).
// The summation order over k is fixed (blocks of kKBlock, each 0..kc-1, added to C in order), so
// results depend on the shape and the ISA level only, never on the thread count.
#pragma once

#include <algorithm>
#include <cstring>

#include "nnkern/common.h"
#include "nnkern/simd.h"

// The vector helpers below are always inlined into ISA-specific functions, so the vector-return
// ABI note GCC prints for them does not apply.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpsabi"

namespace nnkern {
namespace rnn {

constexpr index_t kPanel = 64;

// Elements of a packed B with Kp rows and N columns.
inline index_t packed_size(index_t Kp, index_t N) { return (N + kPanel - 1) / kPanel * kPanel * Kp; }

// Address of element (k, n) of a packed B with Kp rows.
template <class T>
inline T* packed_at(T* Bp, index_t Kp, index_t k, index_t n) {
  return Bp + (n / kPanel) * Kp * kPanel + k * kPanel + n % kPanel;
}

// Zero the padding columns [N, round_up(N, kPanel)) of a packed B.
template <class T>
void packed_zero_tail(T* Bp, index_t Kp, index_t N) {
  const index_t w = N % kPanel;
  if (w == 0) return;
  T* panel = Bp + (N / kPanel) * Kp * kPanel;
  for (index_t k = 0; k < Kp; ++k) std::fill(panel + k * kPanel + w, panel + (k + 1) * kPanel, T(0));
}

// B(k, n0 + n) = src[k * lds + n] for k < rows, n < cols (rows k0.. of B; whole-row copies).
template <class T>
void pack_rows(T* Bp, index_t Kp, index_t k0, index_t n0, const T* src, index_t lds, index_t rows, index_t cols) {
  for (index_t k = 0; k < rows; ++k) {
    index_t n = 0;
    while (n < cols) {
      const index_t c = n0 + n;
      const index_t len = std::min(cols - n, kPanel - c % kPanel);
      std::memcpy(packed_at(Bp, Kp, k0 + k, c), src + k * lds + n, static_cast<std::size_t>(len) * sizeof(T));
      n += len;
    }
  }
}

// B(k, n0 + n) = src[n * lds + k] for n < rows_n, k < cols_k: B gets src transposed (a weight
// block [outputs, inputs] becomes columns of B), in 32 x 32 blocks.
template <class T>
void pack_transposed(T* Bp, index_t Kp, index_t n0, const T* src, index_t lds, index_t rows_n, index_t cols_k) {
  constexpr index_t B = 32;
  for (index_t r0 = 0; r0 < rows_n; r0 += B) {
    const index_t r1 = std::min(rows_n, r0 + B);
    for (index_t c0 = 0; c0 < cols_k; c0 += B) {
      const index_t c1 = std::min(cols_k, c0 + B);
      for (index_t k = c0; k < c1; ++k) {
        for (index_t n = r0; n < r1; ++n) *packed_at(Bp, Kp, k, n0 + n) = src[n * lds + k];
      }
    }
  }
}

namespace sgemm_detail {

template <class T, int VB>
struct Vec {
  typedef T type __attribute__((vector_size(VB), aligned(sizeof(T))));
};

template <class V, class T>
NNK_INLINE V load_v(const T* p) {
  V v;
  __builtin_memcpy(&v, p, sizeof(V));
  return v;
}

template <class V, class T>
NNK_INLINE void store_v(T* p, V v) {
  __builtin_memcpy(p, &v, sizeof(V));
}

// One MR x (NP*VW) tile over the full K, accumulators in registers. B rows are ldb apart.
template <class T, int VB, int MR, int NP>
NNK_INLINE void tile(index_t K, const T* A, index_t lda, const T* B, index_t ldb, T* C, index_t ldc,
                     bool accumulate) {
  using V = typename Vec<T, VB>::type;
  constexpr int VW = VB / static_cast<int>(sizeof(T));
  V acc[MR][NP];
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i) {
#pragma GCC unroll 8
    for (int p = 0; p < NP; ++p) acc[i][p] = V{};
  }
  for (index_t k = 0; k < K; ++k) {
    const T* bk = B + k * ldb;
    V b[NP];
#pragma GCC unroll 8
    for (int p = 0; p < NP; ++p) b[p] = load_v<V>(bk + p * VW);
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      const T a = A[i * lda + k];  // a scalar times a vector: broadcast
#pragma GCC unroll 8
      for (int p = 0; p < NP; ++p) acc[i][p] += a * b[p];
    }
  }
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i) {
    T* c = C + i * ldc;
#pragma GCC unroll 8
    for (int p = 0; p < NP; ++p) store_v(c + p * VW, accumulate ? load_v<V>(c + p * VW) + acc[i][p] : acc[i][p]);
  }
}

// Rows in tiles of MR, then of 4, then one by one (same k order for every row).
template <class T, int VB, int MR, int NP>
NNK_INLINE void column_block(index_t M, index_t K, const T* A, index_t lda, const T* B, index_t ldb, T* C,
                             index_t ldc, bool accumulate) {
  index_t i0 = 0;
  for (; i0 + MR <= M; i0 += MR) tile<T, VB, MR, NP>(K, A + i0 * lda, lda, B, ldb, C + i0 * ldc, ldc, accumulate);
  if (MR > 4) {
    for (; i0 + 4 <= M; i0 += 4) tile<T, VB, 4, NP>(K, A + i0 * lda, lda, B, ldb, C + i0 * ldc, ldc, accumulate);
  }
  for (; i0 < M; ++i0) tile<T, VB, 1, NP>(K, A + i0 * lda, lda, B, ldb, C + i0 * ldc, ldc, accumulate);
}

// One panel: `cols` <= kPanel columns, B rows kPanel apart.
template <class T, int VB, int MR, int NP>
NNK_INLINE void panel_body(index_t M, index_t cols, index_t K, const T* A, index_t lda, const T* B, T* C,
                           index_t ldc, bool accumulate) {
  constexpr index_t VW = VB / static_cast<index_t>(sizeof(T));
  index_t j0 = 0;
  for (; j0 + NP * VW <= cols; j0 += NP * VW) {
    column_block<T, VB, MR, NP>(M, K, A, lda, B + j0, kPanel, C + j0, ldc, accumulate);
  }
  for (; j0 + VW <= cols; j0 += VW) column_block<T, VB, MR, 1>(M, K, A, lda, B + j0, kPanel, C + j0, ldc, accumulate);
  // Fewer than VW columns left (a narrow last slice): plain loops, same k order.
  for (index_t i = 0; i < M && j0 < cols; ++i) {
    for (index_t j = j0; j < cols; ++j) {
      T sum = T(0);
      for (index_t k = 0; k < K; ++k) sum += A[i * lda + k] * B[k * kPanel + j];
      C[i * ldc + j] = accumulate ? C[i * ldc + j] + sum : sum;
    }
  }
}

// K is cut into blocks of kKBlock rows: a panel's block (kKBlock x 64, 32 KiB in float) stays in
// L1 while every row tile streams past it; without the cut the panel is re-read from L2 for each
// row tile and the loads, not the FMAs, set the pace (measured: ~95 vs ~125 GFLOP/s per core).
constexpr index_t kKBlock = 128;

template <class T, int VB, int MR, int NP>
NNK_INLINE void gemm_body(index_t M, index_t N, index_t K, const T* A, index_t lda, const T* Bp, index_t Kp,
                          index_t col0, T* C, index_t ldc, bool accumulate) {
  for (index_t j0 = 0; j0 < N; j0 += kPanel) {
    const T* panel = Bp + (col0 + j0) / kPanel * Kp * kPanel;
    const index_t cols = std::min(kPanel, N - j0);
    if (K <= 0) {
      panel_body<T, VB, MR, NP>(M, cols, 0, A, lda, panel, C + j0, ldc, accumulate);
      continue;
    }
    for (index_t k0 = 0; k0 < K; k0 += kKBlock) {
      const index_t kc = std::min(kKBlock, K - k0);
      panel_body<T, VB, MR, NP>(M, cols, kc, A + k0, lda, panel + k0 * kPanel, C + j0, ldc, accumulate || k0 > 0);
    }
  }
}

// Per ISA: AVX-512 has 32 vector registers (24 accumulators of 16 floats: 6 rows x 64 columns),
// AVX2 and SSE 16 (8 accumulators).
template <class T>
NNK_TARGET_AVX512 __attribute__((noinline)) void gemm_avx512(index_t M, index_t N, index_t K, const T* A,
                                                             index_t lda, const T* Bp, index_t Kp, index_t col0,
                                                             T* C, index_t ldc, bool acc) {
  gemm_body<T, 64, 6, 4>(M, N, K, A, lda, Bp, Kp, col0, C, ldc, acc);
}

template <class T>
NNK_TARGET_AVX2 __attribute__((noinline)) void gemm_avx2(index_t M, index_t N, index_t K, const T* A,
                                                         index_t lda, const T* Bp, index_t Kp, index_t col0, T* C,
                                                         index_t ldc, bool acc) {
  gemm_body<T, 32, 4, 2>(M, N, K, A, lda, Bp, Kp, col0, C, ldc, acc);
}

template <class T>
__attribute__((noinline)) void gemm_baseline(index_t M, index_t N, index_t K, const T* A, index_t lda,
                                             const T* Bp, index_t Kp, index_t col0, T* C, index_t ldc, bool acc) {
  gemm_body<T, 16, 4, 2>(M, N, K, A, lda, Bp, Kp, col0, C, ldc, acc);
}

}  // namespace sgemm_detail

// C[M,N] = (accumulate ? C : 0) + A[M,K] B[K, col0:col0+N]; A and C row-major (lda, ldc), B packed
// with Kp >= K rows (only rows 0..K-1 are used), col0 a multiple of kPanel. Serial: call it from
// inside parallel regions, one call per work item.
template <class T>
inline void step_gemm(index_t M, index_t N, index_t K, const T* A, index_t lda, const T* Bp, index_t Kp,
                      index_t col0, T* C, index_t ldc, bool accumulate) {
  NNK_ASSERT(col0 % kPanel == 0 && K <= Kp);
  if (M <= 0 || N <= 0) return;
  switch (simd::level()) {
    case simd::kAvx512: sgemm_detail::gemm_avx512<T>(M, N, K, A, lda, Bp, Kp, col0, C, ldc, accumulate); break;
    case simd::kAvx2: sgemm_detail::gemm_avx2<T>(M, N, K, A, lda, Bp, Kp, col0, C, ldc, accumulate); break;
    default: sgemm_detail::gemm_baseline<T>(M, N, K, A, lda, Bp, Kp, col0, C, ldc, accumulate); break;
  }
}

}  // namespace rnn
}  // namespace nnkern

#pragma GCC diagnostic pop
