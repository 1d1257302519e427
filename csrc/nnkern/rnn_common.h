// Internals shared by the recurrent kernels (lstm.cc, gru.cc, rnn.cc): vectorisable sigmoid/tanh,
// the slice plan that cuts one time step into independent work items, gate-row permutation, the
// sequence workspace layout, and small deterministic helpers.
//
// Not part of the public kernel API (rnn.h is); nothing here touches Python.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <atomic>
#include <new>

#include <omp.h>

#include "nnkern/common.h"
#include "nnkern/gemm.h"
#include "nnkern/parallel.h"
#include "nnkern/rnn.h"
#include "nnkern/rnn_gemm.h"
#include "nnkern/simd.h"
#include "nnkern/vmath.h"
#include "nnkern/workspace.h"

namespace nnkern {
namespace rnn {

// ---------------------------------------------------------------------------------------------
// Elementwise maths: the gate activations, built on vmath.h (the same exp/expm1 as the
// activation kernels: degree-4 minimax polynomials for float, accuracy tested in
// tests/test_act_vmath.py and, for these forms, tests/test_rnn_math.py). A gate pass divides
// once per unit for all its gates (inverse4 below), so sigmoid and tanh come as numerator and
// denominator. Sigmoid results below the normal range flush to 0, as torch's float sigmoid and
// nk.sigmoid do. (These used a private degree-8 Taylor exp until 2026-12: ~25% slower gate
// passes for no accuracy the float results could show.)

// sigmoid(x) = num / den with den = 1 + e, e = e^-|x| <= 1, num = 1 (x >= 0) or e (x < 0): no
// overflow, and full relative accuracy for large negative x. den is in [1, 2]; NaN gives NaN.
template <class T>
NNK_INLINE void sigmoid_parts(T x, T* num, T* den) {
  const T e = vmath::exp_nonpositive(-std::fabs(x));
  *num = vmath::select(x < T(0), e, T(1));
  *den = T(1) + e;
}

// tanh(x) = num / den = sign(x) E / (E + 2) with E = expm1(2|x|), |x| clamped where tanh rounds
// to +-1: accurate near 0 (no cancellation). den is in [2, e^(2 * kTanhOne) + 1]; NaN gives NaN.
template <class T>
NNK_INLINE void tanh_parts(T x, T* num, T* den) {
  using Tr = vmath::detail::Traits<T>;
  const T a = std::fabs(x);
  const T ac = vmath::select(a > Tr::kTanhOne, Tr::kTanhOne, a);  // NaN compares false: kept
  const T e = vmath::detail::expm1_core(ac + ac);
  *num = std::copysign(e, x);
  *den = e + T(2);
}

template <class T>
NNK_INLINE T vsigmoid(T x) {
  return vmath::sigmoid(x);
}

template <class T>
NNK_INLINE T vtanh(T x) {
  return vmath::tanh(x);
}

// 1/a, 1/b from one division: r = 1/(ab), 1/a = r b, 1/b = r a (division is the slowest vector
// operation in the gate passes; each result gains at most ~1 ulp). Needs ab finite: the callers
// pass the bounded denominators above.
template <class T>
NNK_INLINE void inverse2(T a, T b, T* ia, T* ib) {
  const T r = T(1) / (a * b);
  *ia = r * b;
  *ib = r * a;
}

// 1/a .. 1/d from one division (products stay below ~1e10 for float with the bounds above).
template <class T>
NNK_INLINE void inverse4(T a, T b, T c, T d, T* ia, T* ib, T* ic, T* id) {
  const T ab = a * b, cd = c * d;
  const T r = T(1) / (ab * cd);
  const T iab = r * cd, icd = r * ab;
  *ia = iab * b;
  *ib = iab * a;
  *ic = icd * d;
  *id = icd * c;
}

// ---------------------------------------------------------------------------------------------
// Slice plan: how one time step is cut into work items.
//
// The hidden units are cut into S slices of `sw` units and the batch into R row blocks. An item
// (row block, slice) computes the gate pre-activations of its slice by one GEMM and then the
// fused gate pass for those units, so a thread touches only its own gates and its own block of
// W_hh (which stays in its core's cache across steps). To make that one GEMM, the sequence
// kernels keep copies of W_ih / W_hh / biases with the gate rows permuted "slice-major" (slice s
// holds rows [G*u0, G*(u0+w)), its G gate blocks of w rows each, w = width of slice s), packed as
// the B operand of rnn_gemm.h's kernel.
//
// Determinism: the plan depends on the problem shape only; threads just share the items out.
struct SlicePlan {
  index_t N = 0, H = 0, G = 0;
  index_t sw = 0;  // units per slice (last slice may be narrower)
  index_t S = 1;   // number of slices
  index_t rb = 0;  // rows per row block (last block may be smaller)
  index_t R = 1;   // number of row blocks
  bool parallel = false;  // enough work per step to share it over threads

  index_t items() const { return S * R; }
  index_t u0(index_t s) const { return s * sw; }
  index_t width(index_t s) const { return std::min(sw, H - s * sw); }
  index_t r0(index_t r) const { return r * rb; }
  index_t rows(index_t r) const { return std::min(rb, N - r * rb); }
  // Row offset of slice s's gate g in the permuted layout.
  index_t perm_row(index_t s, index_t g) const { return G * u0(s) + g * width(s); }
};

// flops_per_step: GEMM work of one step (2 N GH H); below ~1 MFLOP one item runs everything.
// Threads join only from ~4 MFLOP per step (~20 us): a step's barrier costs ~1 us on an idle
// machine and a lot more on a busy one. Results do not depend on either choice.
inline SlicePlan make_plan(index_t N, index_t H, index_t G, double flops_per_step) {
  SlicePlan p;
  p.N = N;
  p.H = H;
  p.G = G;
  p.sw = std::max<index_t>(H, 1);
  p.S = 1;
  p.rb = std::max<index_t>(N, 1);
  p.R = 1;
  p.parallel = flops_per_step >= 4.0e6;
  if (flops_per_step < 1.0e6 || N <= 0 || H <= 0) return p;
  if (H >= 128) {
    // 64 units: a gate block is 4 AVX-512 vectors, a slice's W_hh block is G*64*H elements.
    p.sw = 64;
    p.S = (H + p.sw - 1) / p.sw;
  }
  if (N >= 64 && p.S < 4) {
    // Few slices: cut the batch too, into blocks of >= 32 rows, aiming at >= 4 items.
    const index_t want = std::min<index_t>(N / 32, (4 + p.S - 1) / p.S);
    p.R = std::max<index_t>(1, want);
    p.rb = (N + p.R - 1) / p.R;
    p.R = (N + p.rb - 1) / p.rb;
  }
  return p;
}

// Threads for a time loop over `items` items (1 = no parallel region at all).
inline int loop_threads(const SlicePlan& p) {
  if (!p.parallel) return 1;
  return static_cast<int>(std::min<index_t>(num_threads(), p.items()));
}

// Contiguous item range of thread t of nt (same items every step: weights stay in its cache).
inline void thread_items(index_t items, int t, int nt, index_t* begin, index_t* end) {
  *begin = items * t / nt;
  *end = items * (t + 1) / nt;
}

// dst rows in slice-major order from src rows in gate-major order ([G*H, cols] both).
template <class T>
void permute_gate_rows(T* dst, const T* src, const SlicePlan& p, index_t cols) {
  for (index_t s = 0; s < p.S; ++s) {
    const index_t w = p.width(s);
    for (index_t g = 0; g < p.G; ++g) {
      const T* from = src + (g * p.H + p.u0(s)) * cols;
      T* to = dst + p.perm_row(s, g) * cols;
      if (w * cols > 0) std::memcpy(to, from, static_cast<std::size_t>(w * cols) * sizeof(T));
    }
  }
}

// A weight W [G*H, K] (gate-major, as given: W_ih with K = F or W_hh with K = H) packed as the B
// operand of x W'^T: Kp = K rows and G*H slice-permuted columns (a slice's gate blocks are
// consecutive columns).
template <class T>
void pack_step_weights(T* Bp, const T* w, const SlicePlan& p, index_t K) {
  const index_t GH = p.G * p.H;
  packed_zero_tail(Bp, K, GH);
  // One (slice, gate) block per task: blocks write disjoint columns.
  parallel_for(
      p.S * p.G, (p.H * K < 65536 ? p.S * p.G : 2),
      [&](index_t b0, index_t b1) {
        for (index_t b = b0; b < b1; ++b) {
          const index_t s = b / p.G, g = b % p.G;
          pack_transposed(Bp, K, p.perm_row(s, g), w + (g * p.H + p.u0(s)) * K, K, p.width(s), K);
        }
      },
      1);
}

// The backward step weights (B = W_hh' [G*H rows, H columns]) from the forward ones
// (Bf = W_hh'^T [H rows, G*H columns]), both packed; parallel over column panels of the result.
template <class T>
void pack_backward_from_forward(T* Bb, const T* Bf, index_t H, index_t GH) {
  packed_zero_tail(Bb, GH, H);
  const index_t pw = panel_width(), panels = (H + pw - 1) / pw;
  parallel_for(
      panels, (H * GH < 65536 ? panels : 1),
      [&](index_t q0, index_t q1) {
        for (index_t q = q0; q < q1; ++q) {
          // dst(k, u) = src(u, k) for the columns u in [ub, ue) of destination panel q: row k of
          // the panel is contiguous, src(u, k) = s[u * pw] (one panel of src, pw apart).
          const index_t ub = q * pw, ue = std::min(H, ub + pw);
          T* dpanel = Bb + q * GH * pw;
          for (index_t k = 0; k < GH; ++k) {
            const T* src = Bf + (k / pw) * H * pw + k % pw;
            T* dst = dpanel + k * pw - ub;
            for (index_t u = ub; u < ue; ++u) dst[u] = src[u * pw];
          }
        }
      },
      1);
}

// Elementwise pass written once, dispatched per ISA (see simd.h).
template <class T>
NNK_INLINE void add_or_copy_body(T* dst, const T* src, index_t n, bool accumulate) {
  if (accumulate) {
#pragma omp simd
    for (index_t i = 0; i < n; ++i) dst[i] += src[i];
  } else {
    std::memcpy(dst, src, static_cast<std::size_t>(n) * sizeof(T));
  }
}
NNK_MULTIVERSION(add_or_copy, add_or_copy_body)

// dst (gate-major, [G*H, cols]) = or += src (slice-major).
// src rows have `cols` elements `lds` apart (lds = cols when dense; lds > cols to take a column
// range of a wider matrix).
template <class T>
void unpermute_gate_rows(T* dst, bool accumulate, const T* src, const SlicePlan& p, index_t cols, index_t lds = -1) {
  if (lds < 0) lds = cols;
  parallel_for(
      p.S * p.G, (p.H * cols < 65536 ? p.S * p.G : 2),
      [&](index_t b0, index_t b1) {
        for (index_t b = b0; b < b1; ++b) {
          const index_t s = b / p.G, g = b % p.G;
          T* d = dst + (g * p.H + p.u0(s)) * cols;
          const T* sp = src + p.perm_row(s, g) * lds;
          if (lds == cols) {
            add_or_copy(d, sp, p.width(s) * cols, accumulate);
          } else {
            for (index_t r = 0; r < p.width(s); ++r) add_or_copy(d + r * cols, sp + r * lds, cols, accumulate);
          }
        }
      },
      1);
}

// dW'_ih and dW'_hh (slice-permuted, [G*H, F] and [G*H, H]) = dG^T X and dG^T H_prev as one
// product dG^T [X | H_prev] into gw [G*H, F + H] (A packed once), then un-permuted into the
// gate-major outputs. Either output may be absent.
template <class T>
void seq_weight_grads(GradOut<T> dw_ih, GradOut<T> dw_hh, const T* dG, index_t TN, const T* X, const T* Hp,
                      index_t F, const SlicePlan& p, T* gw) {
  const index_t GH = p.G * p.H, H = p.H;
  const bool want_ih = dw_ih.p != nullptr && F > 0, want_hh = dw_hh.p != nullptr;
  const index_t n1 = want_ih ? F : 0, n2 = want_hh ? H : 0;
  if (n1 + n2 > 0) {
    rnn_gemm_pa<T>(GH, TN, MatA<T>{dG, 1, GH}, want_ih ? X : Hp, want_ih ? F : H, want_ih ? F : H,
                   want_ih && want_hh ? Hp : nullptr, H, want_ih ? n2 : 0, gw, n1 + n2, false);
  }
  if (want_ih) unpermute_gate_rows(dw_ih.p, dw_ih.accumulate, gw, p, F, n1 + n2);
  if (want_hh) unpermute_gate_rows(dw_hh.p, dw_hh.accumulate, gw + n1, p, H, n1 + n2);
}

// out[c] (+)= sum_r a[r*lda + c] for c < cols: rows added in order, columns split over threads,
// so the result does not depend on the thread count.
template <class T>
NNK_INLINE void column_sum_body(T* out, bool accumulate, const T* a, index_t rows, index_t lda, index_t c0,
                                index_t c1) {
  for (index_t c = c0; c < c1; ++c) out[c] = accumulate ? out[c] : T(0);
  for (index_t r = 0; r < rows; ++r) {
    const T* row = a + r * lda;
#pragma omp simd
    for (index_t c = c0; c < c1; ++c) out[c] += row[c];
  }
}
NNK_MULTIVERSION(column_sum_range, column_sum_body)

template <class T>
void column_sum(T* out, bool accumulate, const T* a, index_t rows, index_t cols, index_t lda) {
  // Blocks of 256 columns keep the partial sums in registers/L1 while rows stream by.
  const index_t min_cols = rows * cols < 65536 ? cols : 256;
  parallel_for(cols, min_cols, [&](index_t c0, index_t c1) {
    for (index_t b = c0; b < c1; b += 256) {
      column_sum_range(out, accumulate, a, rows, lda, b, std::min(c1, b + 256));
    }
  });
}

// Copies an [rows, cols] block between strided row buffers (or zero-fills when src is null).
template <class T>
inline void copy_rows(T* dst, index_t ldd, const T* src, index_t lds, index_t rows, index_t cols) {
  for (index_t r = 0; r < rows; ++r) {
    if (src != nullptr) {
      std::memcpy(dst + r * ldd, src + r * lds, static_cast<std::size_t>(cols) * sizeof(T));
    } else {
      std::fill(dst + r * ldd, dst + r * ldd + cols, T(0));
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Sequence addressing: every per-(t, n) buffer (x, y, gates, saved states) uses the row order of
// x, time-major (row = t*N + n) or batch-first (row = n*T + t). A step's N rows are then one
// strided matrix: base row step_row(t), row stride `rn` rows.
struct SeqIndex {
  index_t T = 0, N = 0;
  bool batch_first = false;
  index_t step_row(index_t t) const { return batch_first ? t : t * N; }
  index_t rn() const { return batch_first ? T : 1; }
};

static_assert(sizeof(WsHeader) == 64, "the workspace header is one cache line");

// Region offsets (in elements of T) inside a workspace, each 64-byte aligned.
struct WsLayoutBuilder {
  index_t esize;
  index_t total = 0;
  explicit WsLayoutBuilder(index_t itemsize) : esize(itemsize) {}
  index_t add(index_t elems) {
    const index_t align = 64 / esize;
    const index_t off = total;
    total += (elems + align - 1) / align * align;
    return off;
  }
};

// Scratch slots: the drivers use 0-3 on the calling thread; per-thread step scratch uses 4-5.
constexpr int kSlotZeros = 0;
constexpr int kSlotGrad = 1;
constexpr int kSlotBias = 2;
constexpr int kSlotState = 3;
constexpr int kSlotStep0 = 4;
constexpr int kSlotStep1 = 5;
constexpr int kSlotWeights = 6;

// A zero vector of n elements (scratch), for absent biases, states and upstream gradients.
template <class T>
T* zeros_scratch(index_t n, int slot = kSlotZeros) {
  T* z = static_cast<T*>(scratch_bytes(slot, static_cast<std::size_t>(std::max<index_t>(n, 1)) * sizeof(T)));
  std::fill(z, z + std::max<index_t>(n, 1), T(0));
  return z;
}

inline bool row_active(const std::int64_t* lengths, index_t n, index_t t) {
  return lengths == nullptr || t < lengths[n];
}

// Runs fn(k, phase, item) for k = 0..steps-1, phase = 0..phases-1 and every item of the plan, the
// items shared statically over the threads (the same items every step, so each thread's weight
// block stays in its cache), with a barrier after phase p when bit p of barrier_mask is set.
// One parallel region for the whole loop: a barrier costs far less than a fork/join per step.
//
// step_scratch_bytes: every thread reserves that much in slot kSlotStep0 before the loop (fn then
// gets it with scratch_bytes(kSlotStep0, same size), which no longer allocates). A failed
// allocation stops all threads before the first step and throws std::bad_alloc afterwards,
// instead of an exception escaping the parallel region.
template <class Fn>
void run_steps(index_t steps, int phases, const SlicePlan& p, Fn&& fn, unsigned barrier_mask,
               std::size_t step_scratch_bytes = 0) {
  const index_t items = p.items();
  const int nt = loop_threads(p);
  if (nt <= 1) {
    if (step_scratch_bytes > 0) scratch_bytes(kSlotStep0, step_scratch_bytes);
    for (index_t k = 0; k < steps; ++k) {
      for (int ph = 0; ph < phases; ++ph) {
        for (index_t i = 0; i < items; ++i) fn(k, ph, i);
      }
    }
    return;
  }
  std::atomic<bool> failed{false};
#pragma omp parallel num_threads(nt)
  {
    if (step_scratch_bytes > 0) {
      try {
        scratch_bytes(kSlotStep0, step_scratch_bytes);
      } catch (...) {
        failed.store(true);
      }
    }
#pragma omp barrier
    index_t b = 0, e = 0;
    thread_items(items, omp_get_thread_num(), omp_get_num_threads(), &b, &e);
    const index_t nsteps = failed.load() ? 0 : steps;
    for (index_t k = 0; k < nsteps; ++k) {
      for (int ph = 0; ph < phases; ++ph) {
        for (index_t i = b; i < e; ++i) fn(k, ph, i);
        if (barrier_mask & (1u << ph)) {
#pragma omp barrier
        }
      }
    }
  }
  if (failed.load()) throw std::bad_alloc();
}

// Weight and bias gradients from gate gradients dG [M, GH] (row stride ldg), inputs X [M, F] and
// previous states Hp [M, H] (null = zeros), written straight into gate-major outputs.
template <class T>
void weight_grads_direct(GradOut<T> dw_ih, GradOut<T> dw_hh, GradOut<T> db_ih, GradOut<T> db_hh, const T* dG,
                         index_t ldg, index_t M, index_t GH, const T* X, index_t F, const T* Hp, index_t H) {
  // Large products with a long K (all steps): OpenBLAS's packed blocking does them best (rnn_gemm
  // reads a transposed A straight from memory, ~2x slower here).
  const index_t ldf = std::max<index_t>(F, 1);
  if (dw_ih.p != nullptr) {
    gemm<T>(true, false, GH, F, M, T(1), dG, ldg, X, ldf, dw_ih.accumulate ? T(1) : T(0), dw_ih.p, ldf);
  }
  if (dw_hh.p != nullptr) {
    if (Hp != nullptr) {
      gemm<T>(true, false, GH, H, M, T(1), dG, ldg, Hp, H, dw_hh.accumulate ? T(1) : T(0), dw_hh.p, H);
    } else if (!dw_hh.accumulate) {
      std::fill(dw_hh.p, dw_hh.p + GH * H, T(0));
    }
  }
  if (db_ih.p != nullptr) column_sum(db_ih.p, db_ih.accumulate, dG, M, GH, ldg);
  if (db_hh.p != nullptr) column_sum(db_hh.p, db_hh.accumulate, dG, M, GH, ldg);
}

// Reads the dims of a sequence workspace back from its header.
inline SeqDims dims_from_header(const WsHeader& h) {
  SeqDims d;
  d.T = h.T;
  d.N = h.N;
  d.F = h.F;
  d.H = h.H;
  d.batch_first = (h.flags & kFlagBatchFirst) != 0;
  d.reverse = (h.flags & kFlagReverse) != 0;
  d.variant = (h.flags & kFlagVariant) != 0 ? 1 : 0;
  return d;
}

inline std::int64_t header_flags(const SeqDims& d, bool has_lengths) {
  return (d.batch_first ? kFlagBatchFirst : 0) | (d.reverse ? kFlagReverse : 0) |
         (has_lengths ? kFlagLengths : 0) | (d.variant != 0 ? kFlagVariant : 0);
}

}  // namespace rnn
}  // namespace nnkern
