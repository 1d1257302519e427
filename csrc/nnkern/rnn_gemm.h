// The GEMM of the recurrent sequence kernels: C[M,N] (+)= A[M,K] B[K,N], register-blocked, with
// A read through strides (so A can be a transposed view, e.g. dG^T for weight gradients) and B
// either row-major or pre-packed in column panels.
//
// Why not OpenBLAS here: each time step multiplies the same weight block again (35 times per
// sequence in the benchmarks) and OpenBLAS re-packs both operands on every call; for these
// mid-sized products (e.g. 64 x 256 x 256 per work item) the packing and call overhead cost
// 20-40% against oneDNN's LSTM (measured on this machine: ~120 vs ~90 GFLOP/s per core in
// isolation). Three entry points:
//   step_gemm    one work item of one time step (serial), B pre-packed once per sequence call;
//   rnn_gemm     the same over threads by row blocks: the input projection of all steps (it also
//                avoids OpenBLAS's separate zeroing pass over the 9 MB gate buffer);
//   rnn_gemm_pa  long-K products with A and B packed per K block: the weight gradients
//                dW = dG^T [X | H_prev] over all steps (~10-30% faster than OpenBLAS here, and
//                both weights come from one pass over dG). dX = dG W_ih stays with gemm.h, where
//                OpenBLAS measured faster.
//
// Packed B ("panels"): the columns are cut into panels of panel_width() columns (one register
// tile's width: 64 at the AVX-512 level, 16 at AVX2, 8 at the baseline); panel q holds rows
// k = 0..Kp-1 of its columns, one contiguous row of panel_width() elements per k (zero beyond the
// last column), so the B rows a tile reads are consecutive. A row-major B is the same thing with
// panel stride panel_width() and row stride ldb.
//
// Kernel: the output is cut into MR x (NP*VW) tiles held in registers over a K block of k_block()
// rows; per k it loads NP vectors of B and broadcasts MR elements of A. The vector width VW
// follows the ISA (GCC vector extensions: AVX-512 16 floats, AVX2 8, SSE 4) and so do MR/NP
// (register budget). Every output element sees the same operation sequence whichever tile
// computes it (acc = 0; acc += a*b for k in its block in order; C += acc block by block), so
// results depend on the shape and the ISA level only, never on how rows are split over threads.
#pragma once

#include <algorithm>
#include <cstring>

#include <omp.h>

#include "nnkern/common.h"
#include "nnkern/parallel.h"
#include "nnkern/simd.h"
#include "nnkern/workspace.h"

// The vector helpers below are always inlined into ISA-specific functions, so the vector-return
// ABI note GCC prints for them does not apply.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpsabi"

namespace nnkern {
namespace rnn {

// Panel width (columns) at the ISA level in use: one tile's NP vectors of floats. At AVX2 a
// 64-column panel held four 16-column tiles whose B rows were 256 bytes apart; 16-column panels
// (contiguous tile rows) measured +12% on the 32 x 1024 x 256 step product (Zen 3).
inline index_t panel_width() {
  switch (simd::level()) {
    case simd::kAvx512: return 64;
    case simd::kAvx2: return 16;
    default: return 8;
  }
}
// K block: a panel's block (k_block() x panel_width()) stays in L1 while every row tile streams
// past it; without the cut B is re-read from L2 for each row tile and the loads, not the FMAs,
// set the pace (AVX-512: 128 x 64 floats, 32 KiB, measured ~95 vs ~125 GFLOP/s per core on
// 64 x 256 x 256). At AVX2 a 16-column panel's block of 256 rows is 16 KiB (+7% over 128 rows).
inline index_t k_block() { return simd::level() == simd::kAvx2 ? 256 : 128; }

// A(i, k) = p[i * si + k * sk]: row-major A has (lda, 1); a transposed view of a row-major X has
// (1, ldx).
template <class T>
struct MatA {
  const T* p;
  index_t si, sk;
};

// B(k, j) = p[(j / panel_width()) * pstride + k * ldk + j % panel_width()].
template <class T>
struct MatB {
  const T* p;
  index_t ldk, pstride;
};

template <class T>
inline MatB<T> packed_b(const T* Bp, index_t Kp) {
  return MatB<T>{Bp, panel_width(), Kp * panel_width()};
}

template <class T>
inline MatB<T> rowmajor_b(const T* B, index_t ldb) {
  return MatB<T>{B, ldb, panel_width()};
}

// Elements of a packed B with Kp rows and N columns.
inline index_t packed_size(index_t Kp, index_t N) {
  const index_t pw = panel_width();
  return (N + pw - 1) / pw * pw * Kp;
}

// Address of element (k, n) of a packed B with Kp rows and panels of pw = panel_width() columns
// (pw passed in: the callers' element loops must not ask for the ISA level each time).
template <class T>
inline T* packed_at(T* Bp, index_t Kp, index_t k, index_t n, index_t pw) {
  return Bp + (n / pw) * Kp * pw + k * pw + n % pw;
}

// Zero the padding columns [N, round_up(N, panel_width())) of a packed B.
template <class T>
void packed_zero_tail(T* Bp, index_t Kp, index_t N) {
  const index_t pw = panel_width(), w = N % pw;
  if (w == 0) return;
  T* panel = Bp + (N / pw) * Kp * pw;
  for (index_t k = 0; k < Kp; ++k) std::fill(panel + k * pw + w, panel + (k + 1) * pw, T(0));
}

// B(k0 + k, n0 + n) = src[k * lds + n] for k < rows, n < cols (whole-row copies).
template <class T>
void pack_rows(T* Bp, index_t Kp, index_t k0, index_t n0, const T* src, index_t lds, index_t rows, index_t cols) {
  const index_t pw = panel_width();
  for (index_t k = 0; k < rows; ++k) {
    index_t n = 0;
    while (n < cols) {
      const index_t c = n0 + n;
      const index_t len = std::min(cols - n, pw - c % pw);
      std::memcpy(packed_at(Bp, Kp, k0 + k, c, pw), src + k * lds + n, static_cast<std::size_t>(len) * sizeof(T));
      n += len;
    }
  }
}

// B(k, n0 + n) = src[n * lds + k] for n < rows_n, k < cols_k: B gets src transposed (a weight
// block [outputs, inputs] becomes columns of B), in 32 x 32 blocks; each packed row is written in
// runs that stay inside one panel.
template <class T>
void pack_transposed(T* Bp, index_t Kp, index_t n0, const T* src, index_t lds, index_t rows_n, index_t cols_k) {
  constexpr index_t B = 32;
  const index_t pw = panel_width();
  for (index_t r0 = 0; r0 < rows_n; r0 += B) {
    const index_t r1 = std::min(rows_n, r0 + B);
    for (index_t c0 = 0; c0 < cols_k; c0 += B) {
      const index_t c1 = std::min(cols_k, c0 + B);
      for (index_t k = c0; k < c1; ++k) {
        for (index_t n = r0; n < r1;) {
          const index_t col = n0 + n, len = std::min(r1 - n, pw - col % pw);
          T* dst = packed_at(Bp, Kp, k, col, pw);
          for (index_t i = 0; i < len; ++i) dst[i] = src[(n + i) * lds + k];
          n += len;
        }
      }
    }
  }
}

// dst(k0 + j, i) = src(i, j) for i < rows_src, j < cols_src: a packed matrix transposed into
// (rows k0.. of) another packed matrix, in 32 x 32 blocks (runs inside one destination panel).
// Turns the forward step weights (W^T) into the backward ones (W) without keeping W itself.
template <class T>
void transpose_packed(T* dst, index_t Kp_dst, index_t k0, const T* src, index_t Kp_src, index_t rows_src,
                      index_t cols_src) {
  constexpr index_t B = 32;
  const index_t pw = panel_width();
  for (index_t i0 = 0; i0 < rows_src; i0 += B) {
    const index_t i1 = std::min(rows_src, i0 + B);
    for (index_t j0 = 0; j0 < cols_src; j0 += B) {
      const index_t j1 = std::min(cols_src, j0 + B);
      for (index_t j = j0; j < j1; ++j) {
        for (index_t i = i0; i < i1;) {
          const index_t len = std::min(i1 - i, pw - i % pw);
          T* d = packed_at(dst, Kp_dst, k0 + j, i, pw);
          const T* sp = packed_at(src, Kp_src, i, j, pw);  // src(i + t, j) = sp[t * pw] within a panel
          for (index_t t = 0; t < len; ++t) d[t] = sp[t * pw];
          i += len;
        }
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

// One MR x (NP*VW) tile over K rows of B (ldk apart), accumulators in registers.
template <class T, int VB, int MR, int NP>
NNK_INLINE void tile(index_t K, const T* A, index_t si, index_t sk, const T* B, index_t ldk, T* C, index_t ldc,
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
    const T* bk = B + k * ldk;
    const T* ak = A + k * sk;
    V b[NP];
#pragma GCC unroll 8
    for (int p = 0; p < NP; ++p) b[p] = load_v<V>(bk + p * VW);
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      const T a = ak[i * si];  // a scalar times a vector: broadcast
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

// A tile of h <= MR rows (h known at run time only).
template <class T, int VB, int MR, int NP>
NNK_INLINE void tile_h(int h, index_t K, const T* A, index_t si, index_t sk, const T* B, index_t ldk, T* C,
                       index_t ldc, bool accumulate) {
  static_assert(MR <= 6, "tile_h covers heights 1..6");
  switch (h) {
    case 6: if constexpr (MR >= 6) tile<T, VB, 6, NP>(K, A, si, sk, B, ldk, C, ldc, accumulate); break;
    case 5: if constexpr (MR >= 5) tile<T, VB, 5, NP>(K, A, si, sk, B, ldk, C, ldc, accumulate); break;
    case 4: if constexpr (MR >= 4) tile<T, VB, 4, NP>(K, A, si, sk, B, ldk, C, ldc, accumulate); break;
    case 3: if constexpr (MR >= 3) tile<T, VB, 3, NP>(K, A, si, sk, B, ldk, C, ldc, accumulate); break;
    case 2: if constexpr (MR >= 2) tile<T, VB, 2, NP>(K, A, si, sk, B, ldk, C, ldc, accumulate); break;
    default: tile<T, VB, 1, NP>(K, A, si, sk, B, ldk, C, ldc, accumulate); break;
  }
}

// Rows in ceil(M / MR) tiles of nearly equal height (M = 32, MR = 6: 6, 6, 5, 5, 5, 5). Full
// tiles plus a 2-row remainder ran that remainder as two 1-row tiles at a fraction of the FMA
// rate (~10% of a batch-32 step). Tile heights never change an element's arithmetic.
template <class T, int VB, int MR, int NP>
NNK_INLINE void column_block(index_t M, index_t K, const T* A, index_t si, index_t sk, const T* B, index_t ldk, T* C,
                             index_t ldc, bool accumulate) {
  const index_t tiles = (M + MR - 1) / MR, base = M / tiles, extra = M % tiles;
  index_t i0 = 0;
  for (index_t t = 0; t < tiles; ++t) {
    const int h = static_cast<int>(base + (t < extra ? 1 : 0));
    if (h == MR) tile<T, VB, MR, NP>(K, A + i0 * si, si, sk, B, ldk, C + i0 * ldc, ldc, accumulate);
    else tile_h<T, VB, MR, NP>(h, K, A + i0 * si, si, sk, B, ldk, C + i0 * ldc, ldc, accumulate);
    i0 += h;
  }
}

// One panel: `cols` <= panel_width() columns.
template <class T, int VB, int MR, int NP>
NNK_INLINE void panel_body(index_t M, index_t cols, index_t K, const T* A, index_t si, index_t sk, const T* B,
                           index_t ldk, T* C, index_t ldc, bool accumulate) {
  constexpr index_t VW = VB / static_cast<index_t>(sizeof(T));
  index_t j0 = 0;
  for (; j0 + NP * VW <= cols; j0 += NP * VW) {
    column_block<T, VB, MR, NP>(M, K, A, si, sk, B + j0, ldk, C + j0, ldc, accumulate);
  }
  for (; j0 + VW <= cols; j0 += VW) column_block<T, VB, MR, 1>(M, K, A, si, sk, B + j0, ldk, C + j0, ldc, accumulate);
  // Fewer than VW columns left (a narrow last slice): the same sequence per element, scalar.
  for (index_t i = 0; i < M && j0 < cols; ++i) {
    for (index_t j = j0; j < cols; ++j) {
      T sum = T(0);
      for (index_t k = 0; k < K; ++k) sum += A[i * si + k * sk] * B[k * ldk + j];
      C[i * ldc + j] = accumulate ? C[i * ldc + j] + sum : sum;
    }
  }
}

// pw: panel width, kb: K block (panel_width(), k_block() of the level the wrapper is for).
template <class T, int VB, int MR, int NP>
NNK_INLINE void gemm_body(index_t M, index_t N, index_t K, const T* A, index_t si, index_t sk, const T* B,
                          index_t ldk, index_t pstride, index_t col0, T* C, index_t ldc, bool accumulate,
                          index_t pw, index_t kb) {
  for (index_t j0 = 0; j0 < N; j0 += pw) {
    const T* panel = B + (col0 + j0) / pw * pstride;
    const index_t cols = std::min(pw, N - j0);
    if (K <= 0) {
      panel_body<T, VB, MR, NP>(M, cols, 0, A, si, sk, panel, ldk, C + j0, ldc, accumulate);
      continue;
    }
    for (index_t k0 = 0; k0 < K; k0 += kb) {
      const index_t kc = std::min(kb, K - k0);
      panel_body<T, VB, MR, NP>(M, cols, kc, A + k0 * sk, si, sk, panel + k0 * ldk, ldk, C + j0, ldc,
                                accumulate || k0 > 0);
    }
  }
}

// ---- Products with a long K and a big A (dW = dG^T X over all steps, dX = dG W_ih): A is packed
// per K block into panels of kPackRows rows (Ap[(r / 6) * kc * 6 + k * 6 + r % 6]), so a tile
// reads its A values from one contiguous run instead of one page per k.
constexpr index_t kPackRows = 6;

template <class T>
NNK_INLINE void pack_a(T* Ap, index_t M, index_t kc, const T* A, index_t si, index_t sk) {
  constexpr index_t P = kPackRows;
  if (si == 1) {
    // A(r, k) = A[r + k sk] (a transposed view): source row k holds consecutive r.
    for (index_t k = 0; k < kc; ++k) {
      const T* src = A + k * sk;
      index_t p0 = 0;
      for (; p0 + P <= M; p0 += P) {
        T* dst = Ap + p0 * kc + k * P;
        for (index_t r = 0; r < P; ++r) dst[r] = src[p0 + r];
      }
      for (index_t r = p0; r < M; ++r) Ap[p0 * kc + k * P + (r - p0)] = src[r];
    }
  } else {
    for (index_t p0 = 0; p0 < M; p0 += P) {
      const index_t rows = std::min(P, M - p0);
      for (index_t r = 0; r < rows; ++r) {
        const T* src = A + (p0 + r) * si;
        T* dst = Ap + p0 * kc + r;
        for (index_t k = 0; k < kc; ++k) dst[k * P] = src[k * sk];
      }
    }
  }
}

// Rows [0, M) of a packed A against `cols` <= NP*VW... columns of B (rows ldk apart).
template <class T, int VB, int MR, int NP>
NNK_INLINE void packed_rows(index_t M, index_t kc, const T* Ap, const T* B, index_t ldk, T* C, index_t ldc,
                            bool accumulate) {
  for (index_t p0 = 0; p0 < M; p0 += kPackRows) {
    const T* ap = Ap + (p0 / kPackRows) * kc * kPackRows;
    const index_t rows = std::min(kPackRows, M - p0);
    static_assert(MR == kPackRows, "one tile per packed panel");
    if (rows == kPackRows) tile<T, VB, MR, NP>(kc, ap, 1, kPackRows, B, ldk, C + p0 * ldc, ldc, accumulate);
    else tile_h<T, VB, MR, NP>(static_cast<int>(rows), kc, ap, 1, kPackRows, B, ldk, C + p0 * ldc, ldc, accumulate);
  }
}

template <class T, int VB, int MR, int NP>
NNK_INLINE void gemm_pa_body(index_t M, index_t N, index_t K, const T* A, index_t si, index_t sk, const T* B,
                             index_t ldk, index_t pstride, T* C, index_t ldc, bool accumulate, T* Ap, index_t pw,
                             index_t kbs) {
  constexpr index_t VW = VB / static_cast<index_t>(sizeof(T));
  const index_t kblocks = K > 0 ? (K + kbs - 1) / kbs : 1;
  for (index_t kb = 0; kb < kblocks; ++kb) {
    const index_t k0 = kb * kbs;
    const index_t kc = std::min(kbs, K - k0);  // 0 when K == 0: C = (accumulate ? C : 0)
    pack_a(Ap, M, kc, A + k0 * sk, si, sk);
    const bool acc = accumulate || kb > 0;
    for (index_t j0 = 0; j0 < N; j0 += pw) {
      const T* panel = B + j0 / pw * pstride + k0 * ldk;
      const index_t cols = std::min(pw, N - j0);
      index_t c = 0;
      for (; c + NP * VW <= cols; c += NP * VW) packed_rows<T, VB, MR, NP>(M, kc, Ap, panel + c, ldk, C + j0 + c, ldc, acc);
      for (; c + VW <= cols; c += VW) packed_rows<T, VB, MR, 1>(M, kc, Ap, panel + c, ldk, C + j0 + c, ldc, acc);
      for (index_t r = 0; r < M && c < cols; ++r) {
        const T* ar = Ap + (r / kPackRows) * kc * kPackRows + r % kPackRows;
        for (index_t j = c; j < cols; ++j) {
          T sum = T(0);
          for (index_t k = 0; k < kc; ++k) sum += ar[k * kPackRows] * panel[k * ldk + j];
          T* cr = C + r * ldc + j0 + j;
          *cr = acc ? *cr + sum : sum;
        }
      }
    }
  }
}

template <class T>
NNK_TARGET_AVX512 __attribute__((noinline)) void gemm_pa_avx512(index_t M, index_t N, index_t K, const T* A,
                                                                index_t si, index_t sk, const T* B, index_t ldk,
                                                                index_t ps, T* C, index_t ldc, bool acc, T* Ap,
                                                                index_t pw, index_t kb) {
  gemm_pa_body<T, 64, 6, 4>(M, N, K, A, si, sk, B, ldk, ps, C, ldc, acc, Ap, pw, kb);
}

template <class T>
NNK_TARGET_AVX2 __attribute__((noinline)) void gemm_pa_avx2(index_t M, index_t N, index_t K, const T* A, index_t si,
                                                            index_t sk, const T* B, index_t ldk, index_t ps, T* C,
                                                            index_t ldc, bool acc, T* Ap, index_t pw, index_t kb) {
  gemm_pa_body<T, 32, 6, 2>(M, N, K, A, si, sk, B, ldk, ps, C, ldc, acc, Ap, pw, kb);
}

template <class T>
__attribute__((noinline)) void gemm_pa_baseline(index_t M, index_t N, index_t K, const T* A, index_t si, index_t sk,
                                                const T* B, index_t ldk, index_t ps, T* C, index_t ldc, bool acc,
                                                T* Ap, index_t pw, index_t kb) {
  gemm_pa_body<T, 16, 6, 2>(M, N, K, A, si, sk, B, ldk, ps, C, ldc, acc, Ap, pw, kb);
}

// Per ISA: AVX-512 has 32 vector registers (24 accumulators of 16 floats: 6 rows x 64 columns),
// AVX2 and SSE 16 (12 accumulators: 6 rows x 2 vectors; 4 x 2 left the FMA units half idle).
// pw, kb: the panel_width() and k_block() B was packed with (the callers pass them).
template <class T>
NNK_TARGET_AVX512 __attribute__((noinline)) void gemm_avx512(index_t M, index_t N, index_t K, const T* A, index_t si,
                                                             index_t sk, const T* B, index_t ldk, index_t ps,
                                                             index_t col0, T* C, index_t ldc, bool acc, index_t pw,
                                                             index_t kb) {
  gemm_body<T, 64, 6, 4>(M, N, K, A, si, sk, B, ldk, ps, col0, C, ldc, acc, pw, kb);
}

template <class T>
NNK_TARGET_AVX2 __attribute__((noinline)) void gemm_avx2(index_t M, index_t N, index_t K, const T* A, index_t si,
                                                         index_t sk, const T* B, index_t ldk, index_t ps,
                                                         index_t col0, T* C, index_t ldc, bool acc, index_t pw,
                                                         index_t kb) {
  gemm_body<T, 32, 6, 2>(M, N, K, A, si, sk, B, ldk, ps, col0, C, ldc, acc, pw, kb);
}

template <class T>
__attribute__((noinline)) void gemm_baseline(index_t M, index_t N, index_t K, const T* A, index_t si, index_t sk,
                                             const T* B, index_t ldk, index_t ps, index_t col0, T* C, index_t ldc,
                                             bool acc, index_t pw, index_t kb) {
  gemm_body<T, 16, 6, 2>(M, N, K, A, si, sk, B, ldk, ps, col0, C, ldc, acc, pw, kb);
}

}  // namespace sgemm_detail

// C[M,N] = (accumulate ? C : 0) + A[M,K] B[K, col0:col0+N], C row-major (ldc); col0 a multiple
// of panel_width(). Serial: call it from inside parallel regions, one call per work item.
template <class T>
inline void step_gemm(index_t M, index_t N, index_t K, MatA<T> A, MatB<T> B, index_t col0, T* C, index_t ldc,
                      bool accumulate) {
  const index_t pw = panel_width(), kb = k_block();
  NNK_ASSERT(col0 % pw == 0);
  if (M <= 0 || N <= 0) return;
  switch (simd::level()) {
    case simd::kAvx512:
      sgemm_detail::gemm_avx512<T>(M, N, K, A.p, A.si, A.sk, B.p, B.ldk, B.pstride, col0, C, ldc, accumulate, pw, kb);
      break;
    case simd::kAvx2:
      sgemm_detail::gemm_avx2<T>(M, N, K, A.p, A.si, A.sk, B.p, B.ldk, B.pstride, col0, C, ldc, accumulate, pw, kb);
      break;
    default:
      sgemm_detail::gemm_baseline<T>(M, N, K, A.p, A.si, A.sk, B.p, B.ldk, B.pstride, col0, C, ldc, accumulate, pw,
                                     kb);
      break;
  }
}

// The same over nnkern's threads, rows split into blocks (bitwise equal for any split, see top).
template <class T>
void rnn_gemm(index_t M, index_t N, index_t K, MatA<T> A, MatB<T> B, T* C, index_t ldc, bool accumulate) {
  if (M <= 0 || N <= 0) return;
  const double flops = 2.0 * static_cast<double>(M) * N * (K > 0 ? K : 1);
  // ~4 MFLOP per thread before splitting, and at least 96 rows.
  const index_t min_rows = std::max<index_t>(96, static_cast<index_t>(4.0e6 / (flops / M)));
  parallel_for(
      M, min_rows,
      [&](index_t r0, index_t r1) {
        // Row blocks of 96: a block's C rows stay in cache while every panel of B passes over
        // them (C is written once, not once per panel).
        for (index_t b0 = r0; b0 < r1; b0 += 96) {
          const index_t rows = std::min<index_t>(96, r1 - b0);
          step_gemm<T>(rows, N, K, MatA<T>{A.p + b0 * A.si, A.si, A.sk}, B, 0, C + b0 * ldc, ldc, accumulate);
        }
      },
      6);
}

// C[M,N] = (accumulate ? C : 0) + A [B1 | B2] for long K (the all-steps backward products:
// dW = dG^T [X | H_prev], dX = dG W_ih). Per K block of k_block() rows, B's block is packed once
// into panels (contiguous: no cache-set conflicts from a large row stride), then the rows of C are
// processed in blocks of kPaRows, each thread packing its own block of A; C stays in L2 across K.
// B2 (optional, n2 columns, may be null) supplies columns [n1, n1 + n2). Bitwise equal for any
// thread count (every element sees the same sequence, see the top of this file).
constexpr index_t kPaRows = 192;

// parallel_for with the team capped at `nt` and the thread's index passed to fn(t, begin, end):
// for per-thread buffers sized for nt threads before the region. parallel_for itself reads the
// thread count again, and another Python thread may raise nk.set_num_threads() in between, which
// would hand a thread index >= nt a buffer past the end of the allocation.
template <class F>
void parallel_for_capped(int nt, index_t n, index_t min_per_thread, index_t align, F&& fn) {
  if (n <= 0) return;
  const index_t by_work = std::max<index_t>(1, n / std::max<index_t>(1, min_per_thread));
  const int team_max = static_cast<int>(std::min<index_t>(nt, by_work));
  if (team_max <= 1) {
    fn(index_t{0}, index_t{0}, n);
    return;
  }
#pragma omp parallel num_threads(team_max)
  {
    const index_t t = omp_get_thread_num();
    const index_t team = omp_get_num_threads();
    const index_t per_thread = (n + team - 1) / team;
    const index_t share = (per_thread + align - 1) / align * align;
    const index_t begin = std::min(n, t * share);
    const index_t end = std::min(n, begin + share);
    if (begin < end) fn(t, begin, end);
  }
}

template <class T>
void rnn_gemm_pa(index_t M, index_t K, MatA<T> A, const T* B1, index_t ldb1, index_t n1, const T* B2, index_t ldb2,
                 index_t n2, T* C, index_t ldc, bool accumulate) {
  const index_t N = n1 + n2;
  if (M <= 0 || N <= 0) return;
  const int nt = std::max(1, num_threads());
  const index_t pw = panel_width(), kbs = k_block();
  const index_t per = kPaRows * kbs;
  const index_t bsize = packed_size(kbs, N);
  // Packed B block and one packed-A buffer per thread that may join (taken before any region).
  T* Bp = static_cast<T*>(scratch_bytes(5 /* kSlotStep1 */, static_cast<std::size_t>(bsize + per * nt) * sizeof(T)));
  T* bufs = Bp + bsize;
  const double flops_kb = 2.0 * static_cast<double>(M) * N * kbs;
  const index_t min_rows = std::max<index_t>(kPaRows, static_cast<index_t>(4.0e6 / (flops_kb / M)));
  const index_t kblocks = K > 0 ? (K + kbs - 1) / kbs : 1;
  packed_zero_tail(Bp, kbs, N);
  for (index_t kb = 0; kb < kblocks; ++kb) {
    const index_t k0 = kb * kbs;
    const index_t kc = std::min(kbs, K - k0);
    if (kc > 0) {
      pack_rows(Bp, kbs, 0, 0, B1 + k0 * ldb1, ldb1, kc, n1);
      if (n2 > 0) pack_rows(Bp, kbs, 0, n1, B2 + k0 * ldb2, ldb2, kc, n2);
    }
    const bool acc = accumulate || kb > 0;
    parallel_for_capped(
        nt, M, min_rows, sgemm_detail::kPackRows,  // thread ranges of whole A panels, balanced to within 6 rows
        [&](index_t t, index_t r0, index_t r1) {
          T* Ap = bufs + t * per;
          for (index_t b0 = r0; b0 < r1; b0 += kPaRows) {
            const index_t rows = std::min(kPaRows, r1 - b0);
            const T* a = A.p + b0 * A.si + k0 * A.sk;
            T* c = C + b0 * ldc;
            switch (simd::level()) {
              case simd::kAvx512:
                sgemm_detail::gemm_pa_avx512<T>(rows, N, kc, a, A.si, A.sk, Bp, pw, kbs * pw, c, ldc, acc, Ap, pw, kbs);
                break;
              case simd::kAvx2:
                sgemm_detail::gemm_pa_avx2<T>(rows, N, kc, a, A.si, A.sk, Bp, pw, kbs * pw, c, ldc, acc, Ap, pw, kbs);
                break;
              default:
                sgemm_detail::gemm_pa_baseline<T>(rows, N, kc, a, A.si, A.sk, Bp, pw, kbs * pw, c, ldc, acc, Ap, pw,
                                                  kbs);
                break;
            }
          }
        });
  }
}

}  // namespace rnn
}  // namespace nnkern

#pragma GCC diagnostic pop
