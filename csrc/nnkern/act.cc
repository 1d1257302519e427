#include "nnkern/act.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "nnkern/parallel.h"
#include "nnkern/simd.h"
#include "nnkern/vmath.h"
#include "nnkern/workspace.h"

namespace nnkern {
namespace {

using vmath::select;

// Elements per thread before another thread is worth waking.
constexpr index_t kMinCheap = 32768;   // a compare or a multiply per element: memory bound
constexpr index_t kMinTransc = 8192;   // an exp, log or division per element

// ---------------------------------------------------------------------------------------------
// Elementwise maps. Each op is a functor with an NNK_INLINE operator(), so it is compiled at the
// ISA of the NNK_MULTIVERSION wrapper it is inlined into. Selections go through vmath::select
// (see vmath.h: a ?: with arithmetic in an arm can stop vectorisation below AVX-512). The loops
// carry `omp simd`: outputs may be the exact same buffer as an input (each element is read
// before it is written), which GCC's runtime alias checks would otherwise send to a scalar loop.

template <class Op, class T>
NNK_INLINE void map1_body(Op op, T* y, const T* x, index_t n) {
#pragma omp simd
  for (index_t i = 0; i < n; ++i) y[i] = op(x[i]);
}
NNK_MULTIVERSION(map1, map1_body)

template <class Op, class T>
NNK_INLINE void map2_body(Op op, T* z, const T* a, const T* b, index_t n) {
#pragma omp simd
  for (index_t i = 0; i < n; ++i) z[i] = op(a[i], b[i]);
}
NNK_MULTIVERSION(map2, map2_body)

template <class Op, class T>
void run_map1(Op op, T* y, const T* x, index_t n, index_t min_per_thread) {
  parallel_for(n, min_per_thread, [&](index_t b, index_t e) { map1(op, y + b, x + b, e - b); });
}

template <class Op, class T>
void run_map2(Op op, T* z, const T* a, const T* b, index_t n, index_t min_per_thread) {
  parallel_for(n, min_per_thread, [&](index_t lo, index_t hi) { map2(op, z + lo, a + lo, b + lo, hi - lo); });
}

template <class T>
struct SigmoidFwd {
  NNK_INLINE T operator()(T x) const { return vmath::sigmoid(x); }
};
template <class T>
struct SigmoidBwd {  // (dy, y); torch: dy * (1 - y) * y
  NNK_INLINE T operator()(T dy, T y) const { return dy * (T(1) - y) * y; }
};
template <class T>
struct TanhFwd {
  NNK_INLINE T operator()(T x) const { return vmath::tanh(x); }
};
template <class T>
struct TanhBwd {  // (dy, y)
  NNK_INLINE T operator()(T dy, T y) const { return dy * (T(1) - y * y); }
};
template <class T>
struct ReluFwd {  // x < 0 ? 0 : x keeps NaN (and -0.0, as torch)
  NNK_INLINE T operator()(T x) const { return x < T(0) ? T(0) : x; }
};
template <class T>
struct ReluBwd {  // (dy, y); torch's threshold_backward: y <= 0 ? 0 : dy
  NNK_INLINE T operator()(T dy, T y) const { return y <= T(0) ? T(0) : dy; }
};
template <class T>
struct LeakyFwd {
  T slope;
  NNK_INLINE T operator()(T x) const { return select(x > T(0), x, x * slope); }
};
template <class T>
struct LeakyBwd {  // (dy, x)
  T slope;
  NNK_INLINE T operator()(T dy, T x) const { return select(x > T(0), dy, dy * slope); }
};
template <class T, bool kUnitBeta>
struct SoftplusFwd {
  T beta, threshold;
  // log1p(exp(z)) evaluated as max(z, 0) + log1p(exp(-|z|)): same function, never overflows
  // (torch's direct form gives inf when a large threshold lets e^z overflow). beta = 1 (the
  // default) skips the multiply and the division.
  NNK_INLINE T operator()(T x) const {
    const T z = kUnitBeta ? x : x * beta;
    const T sp = vmath::softplus(z);
    return select(z > threshold, x, kUnitBeta ? sp : sp / beta);
  }
};
template <class T>
struct SoftplusBwd {  // (dy, x); torch's e^z / (e^z + 1) written as sigmoid(z) (no overflow)
  T beta, threshold;
  NNK_INLINE T operator()(T dy, T x) const {
    const T z = x * beta;
    return select(z > threshold, dy, dy * vmath::sigmoid(z));
  }
};
template <class T>
struct SiluFwd {
  NNK_INLINE T operator()(T x) const { return x * vmath::sigmoid(x); }
};
template <class T>
struct SiluBwd {  // (dy, x)
  NNK_INLINE T operator()(T dy, T x) const {
    const T s = vmath::sigmoid(x);
    return dy * s * (T(1) + x * (T(1) - s));
  }
};

// vmath accuracy probes
template <class T>
struct ExpOp {
  NNK_INLINE T operator()(T x) const { return vmath::exp(x); }
};
template <class T>
struct ExpNonposOp {
  NNK_INLINE T operator()(T x) const { return vmath::exp_nonpositive(x); }
};
template <class T>
struct Expm1Op {
  NNK_INLINE T operator()(T x) const { return vmath::expm1(x); }
};
template <class T>
struct LogOp {
  NNK_INLINE T operator()(T x) const { return vmath::log(x); }
};
template <class T>
struct Log1pOp {
  NNK_INLINE T operator()(T x) const { return vmath::log1p(x); }
};
template <class T>
struct SoftplusOp {
  NNK_INLINE T operator()(T x) const { return vmath::softplus(x); }
};

// ---------------------------------------------------------------------------------------------
// PReLU

template <class T>
struct PreluFwd {  // one weight
  T w;
  NNK_INLINE T operator()(T x) const { return select(x > T(0), x, w * x); }
};
template <class T>
struct PreluFwdW {  // (x, w) per element
  NNK_INLINE T operator()(T x, T w) const { return select(x > T(0), x, w * x); }
};

// dx = x > 0 ? dy : w dy over n elements with one weight; *wsum = sum of (x > 0 ? 0 : x dy),
// accumulated in double.
template <class T>
NNK_INLINE void prelu_bwd_seg_body(T* dx, double* wsum, const T* dy, const T* x, index_t n, T w) {
  double s = 0.0;
#pragma omp simd reduction(+ : s)
  for (index_t i = 0; i < n; ++i) {
    const T xi = x[i], g = dy[i];
    const bool pos = xi > T(0);
    s += select(pos, T(0), xi * g);
    dx[i] = select(pos, g, w * g);
  }
  *wsum = s;
}
NNK_MULTIVERSION(prelu_bwd_seg, prelu_bwd_seg_body)

// One row of the periodic-weight layout: dx as above with per-element weights w[k]; the weight
// contributions are added into part[k] (one partial per column, summed over rows in order).
template <class T>
NNK_INLINE void prelu_bwd_row_body(T* dx, double* part, const T* dy, const T* x, const T* w, index_t n) {
#pragma omp simd
  for (index_t k = 0; k < n; ++k) {
    const T xk = x[k], g = dy[k];
    const bool pos = xk > T(0);
    part[k] += select(pos, T(0), xk * g);
    dx[k] = select(pos, g, w[k] * g);
  }
}
NNK_MULTIVERSION(prelu_bwd_row, prelu_bwd_row_body)

// Planes of at least this many elements take one scalar weight each; smaller planes use the
// periodic layout (weights expanded to a row that repeats through memory).
constexpr index_t kPreluPlaneMin = 16;
constexpr index_t kPreluFlatChunk = 16384;  // fixed reduction chunk for a single shared weight
constexpr index_t kPreluMinPeriod = 256;    // periodic rows are replicated to at least this long
constexpr index_t kPreluColBlock = 512;     // column block of a backward tile
constexpr index_t kPreluRowChunks = 16;     // row chunks of the backward tiles (fixed: determinism)

// Period of the weights in flat memory (C * S), replicated to L >= kPreluMinPeriod elements.
template <class T>
T* prelu_periodic_weights(const T* w, index_t C, index_t S, index_t& L, int slot) {
  const index_t K = C * S;
  L = K * ((kPreluMinPeriod + K - 1) / K);
  T* wexp = scratch<T>(slot, L);
  for (index_t j = 0; j < L; ++j) wexp[j] = w[(j / S) % C];
  return wexp;
}

// ---------------------------------------------------------------------------------------------
// softmax / log_softmax over contiguous rows: a block of `rows` rows of length D. Exponents are
// x - max <= 0 (or NaN), so the cheaper vmath::exp_nonpositive applies (terms below the normal range
// are flushed to 0; next to the max's e^0 = 1 they change nothing).
//
// Short rows (D < kRowFuseMin) are processed a block at a time, pass by pass (max, shift, exp over
// the whole block, sums, scale): the exp loop runs over rows * D contiguous elements, so it
// vectorises fully even for D = 10, and the block (~2K elements) stays in L1 across the passes.
// Long rows go one at a time with exp fused into the sum. Memory sees one read of x and one write
// of y either way.
constexpr index_t kRowBlock = 2048;

template <class T>
NNK_INLINE T row_max(const T* x, index_t D) {
  T m = x[0];
#pragma omp simd reduction(max : m)
  for (index_t d = 1; d < D; ++d) m = x[d] > m ? x[d] : m;
  return m;
}

// Row sums accumulate in double whatever T is: a float sum of ~1000 terms near 1 (the softmax
// normaliser) would otherwise carry ~1e-6 of error into log_softmax near its maximum. The cost is
// a widening conversion per element in loops that are dominated by exp.
template <class T>
NNK_INLINE double row_sum(const T* x, index_t D) {
  double s = 0.0;
#pragma omp simd reduction(+ : s)
  for (index_t d = 0; d < D; ++d) s += x[d];
  return s;
}

// Rows at least this long are processed one at a time with exp fused into the sum (3 passes over
// the row for softmax, 3 reads and a write for log_softmax); shorter rows go block-wise.
constexpr index_t kRowFuseMin = 64;

// stat: `rows` scratch values; e: rows * D scratch (log_softmax on short rows only).
template <bool kLog, class T>
NNK_INLINE void softmax_rows_body(T* y, const T* x, index_t rows, index_t D, T* stat, T* e) {
  if (D >= kRowFuseMin) {
    for (index_t r = 0; r < rows; ++r) {
      const T* xr = x + r * D;
      T* yr = y + r * D;
      const T m = row_max(xr, D);
      double s = 0.0;
      if (kLog) {
#pragma omp simd reduction(+ : s)
        for (index_t d = 0; d < D; ++d) s += vmath::exp_nonpositive(xr[d] - m);
        const T ls = static_cast<T>(std::log(s));
#pragma omp simd
        for (index_t d = 0; d < D; ++d) yr[d] = (xr[d] - m) - ls;
      } else {
#pragma omp simd reduction(+ : s)
        for (index_t d = 0; d < D; ++d) {
          const T ev = vmath::exp_nonpositive(xr[d] - m);
          yr[d] = ev;
          s += ev;
        }
        const T inv = static_cast<T>(1.0 / s);
#pragma omp simd
        for (index_t d = 0; d < D; ++d) yr[d] *= inv;
      }
    }
    return;
  }
  for (index_t r = 0; r < rows; ++r) stat[r] = row_max(x + r * D, D);
  for (index_t r = 0; r < rows; ++r) {
    const T m = stat[r];
    const T* xr = x + r * D;
    T* yr = y + r * D;
#pragma omp simd
    for (index_t d = 0; d < D; ++d) yr[d] = xr[d] - m;  // NaN / +inf rows turn NaN here or below
  }
  const index_t n = rows * D;
  T* dst = kLog ? e : y;
#pragma omp simd
  for (index_t i = 0; i < n; ++i) dst[i] = vmath::exp_nonpositive(y[i]);
  for (index_t r = 0; r < rows; ++r) {
    const double s = row_sum(dst + r * D, D);
    T* yr = y + r * D;
    if (kLog) {
      const T ls = static_cast<T>(std::log(s));
#pragma omp simd
      for (index_t d = 0; d < D; ++d) yr[d] -= ls;
    } else {
      const T inv = static_cast<T>(1.0 / s);
#pragma omp simd
      for (index_t d = 0; d < D; ++d) yr[d] *= inv;
    }
  }
}
template <class T>
NNK_INLINE void softmax_rows_fwd_body(T* y, const T* x, index_t rows, index_t D, T* stat, T* e) {
  softmax_rows_body<false>(y, x, rows, D, stat, e);
}
template <class T>
NNK_INLINE void log_softmax_rows_fwd_body(T* y, const T* x, index_t rows, index_t D, T* stat, T* e) {
  softmax_rows_body<true>(y, x, rows, D, stat, e);
}
NNK_MULTIVERSION(softmax_rows_fwd, softmax_rows_fwd_body)
NNK_MULTIVERSION(log_softmax_rows_fwd, log_softmax_rows_fwd_body)

// dx = y * (dy - sum(dy * y)) per row.
template <class T>
NNK_INLINE void softmax_rows_bwd_body(T* dx, const T* dy, const T* y, index_t rows, index_t D) {
  for (index_t r = 0; r < rows; ++r) {
    const T* gr = dy + r * D;
    const T* yr = y + r * D;
    double acc = 0.0;
#pragma omp simd reduction(+ : acc)
    for (index_t d = 0; d < D; ++d) acc += static_cast<double>(gr[d]) * yr[d];
    const T dot = static_cast<T>(acc);
    T* dr = dx + r * D;
#pragma omp simd
    for (index_t d = 0; d < D; ++d) dr[d] = yr[d] * (gr[d] - dot);
  }
}
NNK_MULTIVERSION(softmax_rows_bwd, softmax_rows_bwd_body)

// dx = dy - exp(y) * sum(dy) per row; e: rows * D scratch (exp over the whole block at once).
template <class T>
NNK_INLINE void log_softmax_rows_bwd_body(T* dx, const T* dy, const T* y, index_t rows, index_t D, T* e) {
  if (D >= kRowFuseMin) {
    for (index_t r = 0; r < rows; ++r) {
      const T* gr = dy + r * D;
      const T* yr = y + r * D;
      const T s = static_cast<T>(row_sum(gr, D));
      T* dr = dx + r * D;
#pragma omp simd
      for (index_t d = 0; d < D; ++d) dr[d] = gr[d] - vmath::exp(yr[d]) * s;
    }
    return;
  }
  const index_t n = rows * D;
#pragma omp simd
  for (index_t i = 0; i < n; ++i) e[i] = vmath::exp(y[i]);
  for (index_t r = 0; r < rows; ++r) {
    const T* gr = dy + r * D;
    const T s = static_cast<T>(row_sum(gr, D));
    const T* er = e + r * D;
    T* dr = dx + r * D;
#pragma omp simd
    for (index_t d = 0; d < D; ++d) dr[d] = gr[d] - er[d] * s;
  }
}
NNK_MULTIVERSION(log_softmax_rows_bwd, log_softmax_rows_bwd_body)

// softmax / log_softmax over a strided dim: x points at [o, 0, j0] of [outer, D, inner]; the
// W columns j0 .. j0 + W - 1 are processed together, vectorised across the columns.
// m: W scratch values of T, s: W doubles (sums accumulate in double, as row_sum).
template <bool kLog, class T>
NNK_INLINE void softmax_cols_body(T* y, const T* x, index_t D, index_t inner, index_t W, T* m, double* s) {
#pragma omp simd
  for (index_t j = 0; j < W; ++j) m[j] = x[j];
  for (index_t d = 1; d < D; ++d) {
    const T* xd = x + d * inner;
#pragma omp simd
    for (index_t j = 0; j < W; ++j) m[j] = xd[j] > m[j] ? xd[j] : m[j];
  }
#pragma omp simd
  for (index_t j = 0; j < W; ++j) s[j] = 0.0;
  for (index_t d = 0; d < D; ++d) {
    const T* xd = x + d * inner;
    T* yd = y + d * inner;
#pragma omp simd
    for (index_t j = 0; j < W; ++j) {
      const T t = xd[j] - m[j];
      const T ev = vmath::exp_nonpositive(t);
      s[j] += ev;
      yd[j] = kLog ? t : ev;
    }
  }
  // m now holds the per-column factor: log(sum) to subtract, or 1 / sum to scale by.
#pragma omp simd
  for (index_t j = 0; j < W; ++j) m[j] = static_cast<T>(kLog ? vmath::log(s[j]) : 1.0 / s[j]);
  for (index_t d = 0; d < D; ++d) {
    T* yd = y + d * inner;
#pragma omp simd
    for (index_t j = 0; j < W; ++j) yd[j] = kLog ? yd[j] - m[j] : yd[j] * m[j];
  }
}
template <class T>
NNK_INLINE void softmax_cols_fwd_body(T* y, const T* x, index_t D, index_t inner, index_t W, T* m, double* s) {
  softmax_cols_body<false>(y, x, D, inner, W, m, s);
}
template <class T>
NNK_INLINE void log_softmax_cols_fwd_body(T* y, const T* x, index_t D, index_t inner, index_t W, T* m, double* s) {
  softmax_cols_body<true>(y, x, D, inner, W, m, s);
}
NNK_MULTIVERSION(softmax_cols_fwd, softmax_cols_fwd_body)
NNK_MULTIVERSION(log_softmax_cols_fwd, log_softmax_cols_fwd_body)

// f: W scratch values of T, s: W doubles.
template <bool kLog, class T>
NNK_INLINE void softmax_cols_bwd_body(T* dx, const T* dy, const T* y, index_t D, index_t inner, index_t W, T* f,
                                      double* s) {
#pragma omp simd
  for (index_t j = 0; j < W; ++j) s[j] = 0.0;
  for (index_t d = 0; d < D; ++d) {
    const T* gd = dy + d * inner;
    const T* yd = y + d * inner;
#pragma omp simd
    for (index_t j = 0; j < W; ++j) s[j] += kLog ? static_cast<double>(gd[j]) : static_cast<double>(gd[j]) * yd[j];
  }
#pragma omp simd
  for (index_t j = 0; j < W; ++j) f[j] = static_cast<T>(s[j]);
  for (index_t d = 0; d < D; ++d) {
    const T* gd = dy + d * inner;
    const T* yd = y + d * inner;
    T* xd = dx + d * inner;
#pragma omp simd
    for (index_t j = 0; j < W; ++j) {
      xd[j] = kLog ? gd[j] - vmath::exp(yd[j]) * f[j] : yd[j] * (gd[j] - f[j]);
    }
  }
}
template <class T>
NNK_INLINE void softmax_cols_bwd_body_s(T* dx, const T* dy, const T* y, index_t D, index_t inner, index_t W, T* f,
                                        double* s) {
  softmax_cols_bwd_body<false>(dx, dy, y, D, inner, W, f, s);
}
template <class T>
NNK_INLINE void log_softmax_cols_bwd_body(T* dx, const T* dy, const T* y, index_t D, index_t inner, index_t W, T* f,
                                          double* s) {
  softmax_cols_bwd_body<true>(dx, dy, y, D, inner, W, f, s);
}
NNK_MULTIVERSION(softmax_cols_bwd, softmax_cols_bwd_body_s)
NNK_MULTIVERSION(log_softmax_cols_bwd, log_softmax_cols_bwd_body)

// Column block width for the strided path: W * D elements per unit (~kRowBlock), at least 16.
inline index_t col_block(index_t D, index_t inner) {
  return std::min(inner, std::max<index_t>(16, kRowBlock / std::max<index_t>(D, 1)));
}

enum class SoftmaxKind { kSoftmax, kLogSoftmax };

template <SoftmaxKind kind, class T>
void softmax_forward_impl(T* y, const T* x, index_t outer, index_t D, index_t inner) {
  if (outer <= 0 || D <= 0 || inner <= 0) return;
  if (inner == 1) {
    const index_t rpb = std::max<index_t>(1, kRowBlock / D);  // rows per block
    parallel_for(
        outer, std::max<index_t>(1, kMinTransc / D),
        [&](index_t b, index_t e) {
          T* stat = scratch<T>(kScratch0, rpb);
          T* ebuf = kind == SoftmaxKind::kLogSoftmax && D < kRowFuseMin ? scratch<T>(kScratch1, rpb * D) : nullptr;
          for (index_t r = b; r < e; r += rpb) {
            const index_t rows = std::min(rpb, e - r);
            if (kind == SoftmaxKind::kSoftmax) {
              softmax_rows_fwd(y + r * D, x + r * D, rows, D, stat, ebuf);
            } else {
              log_softmax_rows_fwd(y + r * D, x + r * D, rows, D, stat, ebuf);
            }
          }
        },
        rpb);  // blocks start at multiples of rpb for any thread count (same sums, same bits)
    return;
  }
  const index_t W = col_block(D, inner);
  const index_t nblk = (inner + W - 1) / W;
  parallel_for(
      outer * nblk, std::max<index_t>(1, kMinTransc / (W * D)),
      [&](index_t b, index_t e) {
        T* m = scratch<T>(kScratch0, W);
        double* s = scratch<double>(kScratch1, W);
        for (index_t u = b; u < e; ++u) {
          const index_t o = u / nblk, j0 = (u % nblk) * W;
          const index_t w = std::min(W, inner - j0);
          const index_t off = o * D * inner + j0;
          if (kind == SoftmaxKind::kSoftmax) {
            softmax_cols_fwd(y + off, x + off, D, inner, w, m, s);
          } else {
            log_softmax_cols_fwd(y + off, x + off, D, inner, w, m, s);
          }
        }
      },
      1);
}

template <SoftmaxKind kind, class T>
void softmax_backward_impl(T* dx, const T* dy, const T* y, index_t outer, index_t D, index_t inner) {
  if (outer <= 0 || D <= 0 || inner <= 0) return;
  if (inner == 1) {
    const index_t rpb = std::max<index_t>(1, kRowBlock / D);
    parallel_for(
        outer, std::max<index_t>(1, (kind == SoftmaxKind::kSoftmax ? kMinCheap : kMinTransc) / D),
        [&](index_t b, index_t e) {
          T* ebuf = kind == SoftmaxKind::kLogSoftmax && D < kRowFuseMin ? scratch<T>(kScratch1, rpb * D) : nullptr;
          for (index_t r = b; r < e; r += rpb) {
            const index_t rows = std::min(rpb, e - r);
            if (kind == SoftmaxKind::kSoftmax) {
              softmax_rows_bwd(dx + r * D, dy + r * D, y + r * D, rows, D);
            } else {
              log_softmax_rows_bwd(dx + r * D, dy + r * D, y + r * D, rows, D, ebuf);
            }
          }
        },
        rpb);
    return;
  }
  const index_t W = col_block(D, inner);
  const index_t nblk = (inner + W - 1) / W;
  parallel_for(
      outer * nblk, std::max<index_t>(1, kMinTransc / (W * D)),
      [&](index_t b, index_t e) {
        T* f = scratch<T>(kScratch0, W);
        double* s = scratch<double>(kScratch1, W);
        for (index_t u = b; u < e; ++u) {
          const index_t o = u / nblk, j0 = (u % nblk) * W;
          const index_t w = std::min(W, inner - j0);
          const index_t off = o * D * inner + j0;
          if (kind == SoftmaxKind::kSoftmax) {
            softmax_cols_bwd(dx + off, dy + off, y + off, D, inner, w, f, s);
          } else {
            log_softmax_cols_bwd(dx + off, dy + off, y + off, D, inner, w, f, s);
          }
        }
      },
      1);
}

}  // namespace

// --- elementwise ---------------------------------------------------------------------------------

template <class T>
void sigmoid_forward(T* y, const T* x, index_t n) {
  run_map1(SigmoidFwd<T>{}, y, x, n, kMinTransc);
}
template <class T>
void sigmoid_backward(T* dx, const T* dy, const T* y, index_t n) {
  run_map2(SigmoidBwd<T>{}, dx, dy, y, n, kMinCheap);
}
template <class T>
void tanh_forward(T* y, const T* x, index_t n) {
  run_map1(TanhFwd<T>{}, y, x, n, kMinTransc);
}
template <class T>
void tanh_backward(T* dx, const T* dy, const T* y, index_t n) {
  run_map2(TanhBwd<T>{}, dx, dy, y, n, kMinCheap);
}
template <class T>
void relu_forward(T* y, const T* x, index_t n) {
  run_map1(ReluFwd<T>{}, y, x, n, kMinCheap);
}
template <class T>
void relu_backward(T* dx, const T* dy, const T* y, index_t n) {
  run_map2(ReluBwd<T>{}, dx, dy, y, n, kMinCheap);
}
template <class T>
void leaky_relu_forward(T* y, const T* x, index_t n, T slope) {
  run_map1(LeakyFwd<T>{slope}, y, x, n, kMinCheap);
}
template <class T>
void leaky_relu_backward(T* dx, const T* dy, const T* x, index_t n, T slope) {
  run_map2(LeakyBwd<T>{slope}, dx, dy, x, n, kMinCheap);
}
template <class T>
void softplus_forward(T* y, const T* x, index_t n, T beta, T threshold) {
  if (beta == T(1)) {
    run_map1(SoftplusFwd<T, true>{beta, threshold}, y, x, n, kMinTransc);
  } else {
    run_map1(SoftplusFwd<T, false>{beta, threshold}, y, x, n, kMinTransc);
  }
}
template <class T>
void softplus_backward(T* dx, const T* dy, const T* x, index_t n, T beta, T threshold) {
  run_map2(SoftplusBwd<T>{beta, threshold}, dx, dy, x, n, kMinTransc);
}
template <class T>
void silu_forward(T* y, const T* x, index_t n) {
  run_map1(SiluFwd<T>{}, y, x, n, kMinTransc);
}
template <class T>
void silu_backward(T* dx, const T* dy, const T* x, index_t n) {
  run_map2(SiluBwd<T>{}, dx, dy, x, n, kMinTransc);
}

// --- prelu ---------------------------------------------------------------------------------------

template <class T>
void prelu_forward(T* y, const T* x, const T* w, index_t N, index_t C, index_t S) {
  const index_t total = N * C * S;
  if (total <= 0) return;
  if (C == 1) {
    run_map1(PreluFwd<T>{w[0]}, y, x, total, kMinCheap);
  } else if (S >= kPreluPlaneMin) {
    // One scalar weight per (n, c) plane.
    parallel_for(
        N * C, std::max<index_t>(1, kMinCheap / S),
        [&](index_t b, index_t e) {
          for (index_t p = b; p < e; ++p) map1(PreluFwd<T>{w[p % C]}, y + p * S, x + p * S, S);
        },
        1);
  } else {
    // Small planes: weights expanded to a period of L elements that repeats through memory.
    index_t L = 0;
    const T* wexp = prelu_periodic_weights(w, C, S, L, kScratch0);
    parallel_for(
        total, kMinCheap,
        [&](index_t b, index_t e) {  // b is a multiple of L (align below)
          for (index_t i = b; i < e; i += L) map2(PreluFwdW<T>{}, y + i, x + i, wexp, std::min(L, e - i));
        },
        L);
  }
}

template <class T>
void prelu_backward(T* dx, T* dw, const T* dy, const T* x, const T* w, index_t N, index_t C, index_t S) {
  const index_t total = N * C * S;
  if (total <= 0) {
    for (index_t c = 0; c < C; ++c) dw[c] = T(0);
    return;
  }
  if (C == 1) {
    // Fixed chunks, one partial each, summed in chunk order.
    const index_t nch = num_chunks(total, kPreluFlatChunk);
    double* part = scratch<double>(kScratch0, nch);
    const T w0 = w[0];
    parallel_chunks(total, kPreluFlatChunk, [&](index_t c, index_t b, index_t e) {
      prelu_bwd_seg(dx + b, part + c, dy + b, x + b, e - b, w0);
    });
    double acc = 0.0;
    for (index_t c = 0; c < nch; ++c) acc += part[c];
    dw[0] = static_cast<T>(acc);
    return;
  }
  if (S >= kPreluPlaneMin) {
    // One partial per (n, c) plane, then dw[c] = sum over n in order.
    const index_t P = N * C;
    double* part = scratch<double>(kScratch0, P);
    parallel_for(
        P, std::max<index_t>(1, kMinCheap / S),
        [&](index_t b, index_t e) {
          for (index_t p = b; p < e; ++p) {
            prelu_bwd_seg(dx + p * S, part + p, dy + p * S, x + p * S, S, w[p % C]);
          }
        },
        1);
    for (index_t c = 0; c < C; ++c) {
      double acc = 0.0;
      for (index_t n = 0; n < N; ++n) acc += part[n * C + c];
      dw[c] = static_cast<T>(acc);
    }
    return;
  }
  // Small planes: periodic weights of period L; memory viewed as R super-rows of L elements (the
  // last one may be short). Tiles = (row chunk, column block); each tile owns the partials
  // part[rc][k] of its columns and sums its rows in order. Cuts depend on the shape only.
  index_t L = 0;
  const T* wexp = prelu_periodic_weights(w, C, S, L, kScratch1);
  const index_t R = (total + L - 1) / L;
  const index_t RC = std::min(R, kPreluRowChunks);
  const index_t KB = (L + kPreluColBlock - 1) / kPreluColBlock;
  double* part = scratch<double>(kScratch0, RC * L);
  parallel_for(
      RC * KB, std::max<index_t>(1, kMinCheap * RC * KB / total),
      [&](index_t b, index_t e) {
        for (index_t t = b; t < e; ++t) {
          const index_t rc = t / KB, kb = t % KB;
          const index_t r0 = rc * R / RC, r1 = (rc + 1) * R / RC;
          const index_t k0 = kb * kPreluColBlock, k1 = std::min(L, k0 + kPreluColBlock);
          double* pr = part + rc * L;
          std::fill(pr + k0, pr + k1, 0.0);
          for (index_t r = r0; r < r1; ++r) {
            const index_t base = r * L;
            const index_t kend = std::min(k1, total - base);  // short last super-row
            if (kend <= k0) continue;
            prelu_bwd_row(dx + base + k0, pr + k0, dy + base + k0, x + base + k0, wexp + k0, kend - k0);
          }
        }
      },
      1);
  double* acc = scratch<double>(kScratch2, C);
  std::fill(acc, acc + C, 0.0);
  for (index_t j = 0; j < L; ++j) {
    double v = 0.0;
    for (index_t rc = 0; rc < RC; ++rc) v += part[rc * L + j];
    acc[(j / S) % C] += v;
  }
  for (index_t c = 0; c < C; ++c) dw[c] = static_cast<T>(acc[c]);
}

// --- softmax -------------------------------------------------------------------------------------

template <class T>
void softmax_forward(T* y, const T* x, index_t outer, index_t D, index_t inner) {
  softmax_forward_impl<SoftmaxKind::kSoftmax>(y, x, outer, D, inner);
}
template <class T>
void log_softmax_forward(T* y, const T* x, index_t outer, index_t D, index_t inner) {
  softmax_forward_impl<SoftmaxKind::kLogSoftmax>(y, x, outer, D, inner);
}
template <class T>
void softmax_backward(T* dx, const T* dy, const T* y, index_t outer, index_t D, index_t inner) {
  softmax_backward_impl<SoftmaxKind::kSoftmax>(dx, dy, y, outer, D, inner);
}
template <class T>
void log_softmax_backward(T* dx, const T* dy, const T* y, index_t outer, index_t D, index_t inner) {
  softmax_backward_impl<SoftmaxKind::kLogSoftmax>(dx, dy, y, outer, D, inner);
}

// --- vmath probes --------------------------------------------------------------------------------

template <class T>
bool vmath_apply(const char* name, T* y, const T* x, index_t n) {
  if (std::strcmp(name, "exp") == 0) run_map1(ExpOp<T>{}, y, x, n, kMinTransc);
  else if (std::strcmp(name, "exp_nonpositive") == 0) run_map1(ExpNonposOp<T>{}, y, x, n, kMinTransc);
  else if (std::strcmp(name, "expm1") == 0) run_map1(Expm1Op<T>{}, y, x, n, kMinTransc);
  else if (std::strcmp(name, "log") == 0) run_map1(LogOp<T>{}, y, x, n, kMinTransc);
  else if (std::strcmp(name, "log1p") == 0) run_map1(Log1pOp<T>{}, y, x, n, kMinTransc);
  else if (std::strcmp(name, "tanh") == 0) run_map1(TanhFwd<T>{}, y, x, n, kMinTransc);
  else if (std::strcmp(name, "sigmoid") == 0) run_map1(SigmoidFwd<T>{}, y, x, n, kMinTransc);
  else if (std::strcmp(name, "softplus") == 0) run_map1(SoftplusOp<T>{}, y, x, n, kMinTransc);
  else return false;
  return true;
}

#define NNK_INSTANTIATE_ACT(T)                                                                   \
  template void sigmoid_forward<T>(T*, const T*, index_t);                                       \
  template void sigmoid_backward<T>(T*, const T*, const T*, index_t);                            \
  template void tanh_forward<T>(T*, const T*, index_t);                                          \
  template void tanh_backward<T>(T*, const T*, const T*, index_t);                               \
  template void relu_forward<T>(T*, const T*, index_t);                                          \
  template void relu_backward<T>(T*, const T*, const T*, index_t);                               \
  template void leaky_relu_forward<T>(T*, const T*, index_t, T);                                 \
  template void leaky_relu_backward<T>(T*, const T*, const T*, index_t, T);                      \
  template void softplus_forward<T>(T*, const T*, index_t, T, T);                                \
  template void softplus_backward<T>(T*, const T*, const T*, index_t, T, T);                     \
  template void silu_forward<T>(T*, const T*, index_t);                                          \
  template void silu_backward<T>(T*, const T*, const T*, index_t);                               \
  template void prelu_forward<T>(T*, const T*, const T*, index_t, index_t, index_t);             \
  template void prelu_backward<T>(T*, T*, const T*, const T*, const T*, index_t, index_t, index_t); \
  template void softmax_forward<T>(T*, const T*, index_t, index_t, index_t);                     \
  template void softmax_backward<T>(T*, const T*, const T*, index_t, index_t, index_t);          \
  template void log_softmax_forward<T>(T*, const T*, index_t, index_t, index_t);                 \
  template void log_softmax_backward<T>(T*, const T*, const T*, index_t, index_t, index_t);      \
  template bool vmath_apply<T>(const char*, T*, const T*, index_t);

NNK_INSTANTIATE_ACT(float)
NNK_INSTANTIATE_ACT(double)

}  // namespace nnkern
