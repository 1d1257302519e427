#include "nnkern/loss.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>

#include "nnkern/parallel.h"
#include "nnkern/simd.h"
#include "nnkern/vmath.h"
#include "nnkern/workspace.h"

namespace nnkern {
namespace {

using vmath::select;

// Elements per reduction chunk: the cut depends on the problem size only (determinism).
constexpr index_t kLossChunk = 16384;
// Rows of logits processed pass by pass together (~this many elements, at least one row).
constexpr index_t kRowBlock = 2048;

// Scratch slots: the calling thread keeps partial sums and weight buffers in the high slots while
// the workers (the calling thread among them) use the low ones.
constexpr int kSlotPartials = kScratch7;
constexpr int kSlotWeight = kScratch6;
constexpr int kSlotPosWeight = kScratch5;

// Compile-time form of LossOutputs (+ whether a per-element grad_output is given), passed to the
// loop bodies as a tag argument so NNK_MULTIVERSION can deduce it.
template <bool S, bool N, bool G, bool V>
struct Mode {
  static constexpr bool kSum = S, kNone = N, kGrad = G, kGvec = V;
};

template <class F>
void dispatch_mode(const LossOutputs& o, bool has_gvec, F&& f) {
  NNK_ASSERT(!(o.sum && o.none));
  auto with = [&](auto s, auto nn) {
    constexpr bool S = decltype(s)::value, N = decltype(nn)::value;
    if (!o.grad) {
      f(Mode<S, N, false, false>{});
    } else if (has_gvec) {
      f(Mode<S, N, true, true>{});
    } else {
      f(Mode<S, N, true, false>{});
    }
  };
  if (o.sum) {
    with(std::true_type{}, std::false_type{});
  } else if (o.none) {
    with(std::false_type{}, std::true_type{});
  } else {
    with(std::false_type{}, std::false_type{});
  }
}

inline double sum_in_order(const double* part, index_t n) {
  double acc = 0.0;
  for (index_t i = 0; i < n; ++i) acc += part[i];
  return acc;
}

// ---------------------------------------------------------------------------------------------
// MSE: elements [b, e). Pointers that a mode does not use may be null (never offset).

template <class M, class T>
NNK_INLINE void mse_body(M, double* psum, T* loss, T* grad, const T* p, const T* t, const T* gv, index_t b,
                         index_t e, T gscale) {
  double s = 0.0;  // sums accumulate in double (see act.cc row_sum)
#pragma omp simd reduction(+ : s)
  for (index_t i = b; i < e; ++i) {
    const T d = p[i] - t[i];
    if constexpr (M::kSum) s += d * d;
    if constexpr (M::kNone) loss[i] = d * d;
    if constexpr (M::kGrad) {
      T g = (T(2) * d) * gscale;
      if constexpr (M::kGvec) g *= gv[i];
      grad[i] = g;
    }
  }
  *psum = s;
}
NNK_MULTIVERSION(mse_loop, mse_body)

// ---------------------------------------------------------------------------------------------
// Cross-entropy over contiguous rows (inner == 1): a block of `rows` rows of C logits.
//
// Like softmax (act.cc): short rows (C < kRowFuseMin) go a block at a time, pass by pass (row
// maxima and target logits, the shift z - max into the gradient buffer or scratch `e` for a
// forward only, one exp over the whole block, then per row the sum, loss and gradient scale);
// long rows go one at a time with exp fused into the sums. Every logit of a row is read before
// the row's gradient is written, so grad may be the logits buffer itself.
//
// Numerics: exponents z - max are <= 0 (vmath::exp_nonpositive); nll = log(s) + (max - z_t) and
// the smoothing term sum_c w_c (lse - z_c) = wsum log(s) - sum_c w_c (z_c - max) are sums of
// non-negative terms (no cancellation); the sums accumulate in double.

struct CeArgs {
  index_t C;
  std::int64_t ignore;
  double ignored_smooth;  // 0, or NaN when a class weight is NaN/inf (see ignored_row_zero)
};

template <bool kSmooth, class M>
struct CeTag {};

// An ignored row's gradient value: 0, or NaN where torch's 0 * (softmax or class weight) is NaN.
template <bool kSmooth>
NNK_INLINE double ignored_row_zero(double s, const CeArgs& a) {
  return kSmooth ? s * 0.0 + a.ignored_smooth : s * 0.0;
}

// Loss of one row and, with M::kGrad, its gradient from dr = e^(z - max) (in place). s = sum of dr,
// swt = sum_c w_c (z_c - max) (both accumulated in double), zt = z_t (unused when the row is
// ignored). The per-row scalars are formed in double; the gradient scale is rounded to T once.
template <bool kSmooth, class M, class T>
NNK_INLINE double ce_finish_row(T* dr, std::int64_t t, const T* w, const CeArgs& a, double s, T mx, T zt, double swt,
                                T eps, T wsum, T g) {
  const index_t C = a.C;
  if (t == a.ignore) {
    // torch: an ignored row's gradient is 0 - softmax * 0, which is NaN across the row when its
    // logits hold a NaN or +inf (then s, a sum of e^(z - max) <= C, is NaN), else 0. With label
    // smoothing the zero upstream gradient also meets every class weight (0 * w_c), so a NaN or
    // infinite class weight makes the row NaN as well.
    if constexpr (M::kGrad) std::fill(dr, dr + C, static_cast<T>(ignored_row_zero<kSmooth>(s, a)));
    return 0.0;
  }
  const double ls = std::log(s);
  const double wt = w[t], e = eps;
  double loss = (1.0 - e) * wt * (ls + (static_cast<double>(mx) - zt));
  if constexpr (kSmooth) loss += e / static_cast<double>(C) * (static_cast<double>(wsum) * ls - swt);
  if constexpr (M::kGrad) {
    if constexpr (kSmooth) {
      const T k1 = static_cast<T>(g * ((1.0 - e) * wt + e / static_cast<double>(C) * wsum) / s);
      const T k2 = g * eps / T(C);
#pragma omp simd
      for (index_t c = 0; c < C; ++c) dr[c] = dr[c] * k1 - k2 * w[c];
    } else {
      const T k1 = static_cast<T>(g * wt / s);
#pragma omp simd
      for (index_t c = 0; c < C; ++c) dr[c] *= k1;
    }
    dr[t] -= g * (T(1) - eps) * w[t];
  }
  return loss;
}

// Rows of at least this many classes go one at a time with exp fused into the sums; shorter rows
// go block-wise (one exp loop over the whole block, which vectorises even for C = 10).
constexpr index_t kRowFuseMin = 64;

// rl: per-row losses (double); stat: 2 * rows scratch values of T, sd: rows doubles; e: rows * C
// scratch (forward only, short rows).
template <bool kSmooth, class M, class T>
NNK_INLINE void ce_rows_body(CeTag<kSmooth, M>, double* rl, T* grad, const T* z, const std::int64_t* tgt, const T* w,
                             const T* gv, index_t rows, CeArgs a, T eps, T wsum, T gscale, T* stat, double* sd, T* e) {
  const index_t C = a.C;
  if (C >= kRowFuseMin) {
    for (index_t r = 0; r < rows; ++r) {
      const T* zr = z + r * C;
      T mx = zr[0];
#pragma omp simd reduction(max : mx)
      for (index_t c = 1; c < C; ++c) mx = zr[c] > mx ? zr[c] : mx;
      const std::int64_t t = tgt[r];
      const T zt = t == a.ignore ? T(0) : zr[t];
      double s = 0.0, swt = 0.0;
      T* dr = M::kGrad ? grad + r * C : nullptr;
#pragma omp simd reduction(+ : s, swt)
      for (index_t c = 0; c < C; ++c) {
        const T d = zr[c] - mx;
        const T ev = vmath::exp_nonpositive(d);
        if constexpr (M::kGrad) dr[c] = ev;
        s += ev;
        if constexpr (kSmooth) swt += static_cast<double>(w[c]) * d;
      }
      T g = gscale;
      if constexpr (M::kGvec) g *= gv[r];
      rl[r] = ce_finish_row<kSmooth, M>(dr, t, w, a, s, mx, zt, swt, eps, wsum, g);
    }
    return;
  }
  T* m = stat;
  T* zt = stat + rows;
  double* swt = sd;
  for (index_t r = 0; r < rows; ++r) {
    const T* zr = z + r * C;
    T mx = zr[0];
#pragma omp simd reduction(max : mx)
    for (index_t c = 1; c < C; ++c) mx = zr[c] > mx ? zr[c] : mx;
    m[r] = mx;
    const std::int64_t t = tgt[r];
    zt[r] = t == a.ignore ? T(0) : zr[t];
  }
  T* dst = M::kGrad ? grad : e;
  for (index_t r = 0; r < rows; ++r) {
    const T mx = m[r];
    const T* zr = z + r * C;
    T* dr = dst + r * C;
#pragma omp simd
    for (index_t c = 0; c < C; ++c) dr[c] = zr[c] - mx;
    if constexpr (kSmooth) {
      double acc = 0.0;
#pragma omp simd reduction(+ : acc)
      for (index_t c = 0; c < C; ++c) acc += static_cast<double>(w[c]) * dr[c];
      swt[r] = acc;
    }
  }
  const index_t n = rows * C;
#pragma omp simd
  for (index_t i = 0; i < n; ++i) dst[i] = vmath::exp_nonpositive(dst[i]);
  for (index_t r = 0; r < rows; ++r) {
    T* dr = dst + r * C;
    double s = 0.0;
#pragma omp simd reduction(+ : s)
    for (index_t c = 0; c < C; ++c) s += dr[c];
    T g = gscale;
    if constexpr (M::kGvec) g *= gv[r];
    rl[r] = ce_finish_row<kSmooth, M>(dr, tgt[r], w, a, s, m[r], zt[r], kSmooth ? swt[r] : 0.0, eps, wsum, g);
  }
}
NNK_MULTIVERSION(ce_rows, ce_rows_body)

// Cross-entropy over a strided class dim: W positions j0 .. j0 + W - 1 of one sample, logits at
// z[c * inner + j], vectorised across the positions. st: 3 * W values of T, sd: 2 * W doubles.
template <bool kSmooth, class M, class T>
NNK_INLINE void ce_cols_body(CeTag<kSmooth, M>, double* rl, T* grad, const T* z, const std::int64_t* tgt, const T* w,
                             const T* gv, index_t inner, index_t W, CeArgs a, T eps, T wsum, T gscale, T* st,
                             double* sd) {
  const index_t C = a.C;
  T* m = st;
  T* k1 = st + W;
  T* k2 = st + 2 * W;
  double* s = sd;
  double* swt = sd + W;
#pragma omp simd
  for (index_t j = 0; j < W; ++j) m[j] = z[j];
  for (index_t c = 1; c < C; ++c) {
    const T* zc = z + c * inner;
#pragma omp simd
    for (index_t j = 0; j < W; ++j) m[j] = zc[j] > m[j] ? zc[j] : m[j];
  }
  T* zt = k1;  // target logits; k1 is computed from them below
  for (index_t j = 0; j < W; ++j) {
    const std::int64_t t = tgt[j];
    zt[j] = t == a.ignore ? T(0) : z[t * inner + j];
  }
#pragma omp simd
  for (index_t j = 0; j < W; ++j) {
    s[j] = 0.0;
    swt[j] = 0.0;
  }
  for (index_t c = 0; c < C; ++c) {
    const T* zc = z + c * inner;
    const T wc = w[c];
    T* gc = M::kGrad ? grad + c * inner : nullptr;
#pragma omp simd
    for (index_t j = 0; j < W; ++j) {
      const T d = zc[j] - m[j];
      const T ev = vmath::exp_nonpositive(d);
      s[j] += ev;
      if constexpr (kSmooth) swt[j] += static_cast<double>(wc) * d;
      if constexpr (M::kGrad) gc[j] = ev;
    }
  }
  for (index_t j = 0; j < W; ++j) {
    const std::int64_t t = tgt[j];
    if (t == a.ignore) {
      rl[j] = 0.0;
      k1[j] = static_cast<T>(ignored_row_zero<kSmooth>(s[j], a));  // NaN or 0, see ce_finish_row
      k2[j] = T(0);
      continue;
    }
    const double ls = std::log(s[j]);
    const double wt = w[t], e = eps;
    double loss = (1.0 - e) * wt * (ls + (static_cast<double>(m[j]) - zt[j]));
    if constexpr (kSmooth) loss += e / static_cast<double>(C) * (static_cast<double>(wsum) * ls - swt[j]);
    rl[j] = loss;
    T g = gscale;
    if constexpr (M::kGvec) g *= gv[j];
    k1[j] = static_cast<T>(kSmooth ? g * ((1.0 - e) * wt + e / static_cast<double>(C) * wsum) / s[j] : g * wt / s[j]);
    k2[j] = g * eps / T(C);
  }
  if constexpr (M::kGrad) {
    for (index_t c = 0; c < C; ++c) {
      T* gc = grad + c * inner;
      const T wc = w[c];
#pragma omp simd
      for (index_t j = 0; j < W; ++j) gc[j] = kSmooth ? gc[j] * k1[j] - k2[j] * wc : gc[j] * k1[j];
    }
    for (index_t j = 0; j < W; ++j) {
      const std::int64_t t = tgt[j];
      if (t == a.ignore) continue;
      T g = gscale;
      if constexpr (M::kGvec) g *= gv[j];
      grad[t * inner + j] -= g * (T(1) - eps) * w[t];
    }
  }
}
NNK_MULTIVERSION(ce_cols, ce_cols_body)

// ---------------------------------------------------------------------------------------------
// BCE with logits over one segment: x, t, loss, grad, gv indexed by i0 + k; w and pw already
// offset to the segment (contiguous for len elements).

// HasPw: std::true_type when pos_weight was given. A compile-time flag: a runtime bool in the
// loop stopped it from vectorising (10x slower).
template <class M, class HasPw, class T>
NNK_INLINE void bce_body(M, HasPw, double* psum, T* loss, T* grad, const T* x, const T* t, const T* w, const T* pw,
                         const T* gv, index_t i0, index_t len, T gscale) {
  double s = 0.0;
#pragma omp simd reduction(+ : s)
  for (index_t k = 0; k < len; ++k) {
    const index_t i = i0 + k;
    const T xi = x[i], ti = t[i], wk = w[k], pk = pw[k];
    const T e = vmath::exp(-vmath::abs(xi));
    // Without pos_weight the factor is exactly 1 (as in torch): 1 + 0 * t would turn t = +-inf into NaN.
    T lw = T(1);
    if constexpr (HasPw::value) lw = T(1) + (pk - T(1)) * ti;
    if constexpr (M::kSum || M::kNone) {
      const T sp = select(xi < T(0), -xi, T(0)) + vmath::log1p(e);  // softplus(-x)
      const T l = wk * ((T(1) - ti) * xi + lw * sp);
      if constexpr (M::kSum) s += l;
      if constexpr (M::kNone) loss[i] = l;
    }
    if constexpr (M::kGrad) {
      const T sig = select(xi >= T(0), T(1), e) / (T(1) + e);
      T g = wk * (lw * sig - pk * ti) * gscale;
      if constexpr (M::kGvec) g *= gv[i];
      grad[i] = g;
    }
  }
  *psum = s;
}
NNK_MULTIVERSION(bce_loop, bce_body)

// Replicates a weight vector of period K (or all ones when w is null) to a period L >= 256 so
// the segments of the BCE loop are long enough to vectorise.
template <class T>
const T* bce_periodic(const T* w, index_t K, index_t n, index_t& L, int slot) {
  constexpr index_t kMin = 256;
  if (w == nullptr) {
    L = kMin;
    T* ones = scratch<T>(slot, L);
    std::fill(ones, ones + L, T(1));
    return ones;
  }
  NNK_ASSERT(K >= 1);
  if (K >= kMin || K >= n) {
    L = K;
    return w;
  }
  L = K * ((kMin + K - 1) / K);
  T* rep = scratch<T>(slot, L);
  for (index_t j = 0; j < L; ++j) rep[j] = w[j % K];
  return rep;
}

}  // namespace

// --- MSE -----------------------------------------------------------------------------------------

template <class T>
double mse_loss(LossOutputs out, T* loss, T* grad, const T* pred, const T* target, const T* gvec, index_t n,
                T gscale) {
  if (n <= 0) return 0.0;
  const index_t nch = num_chunks(n, kLossChunk);
  double* part = scratch<double>(kSlotPartials, nch);
  dispatch_mode(out, gvec != nullptr, [&](auto mode) {
    parallel_chunks(n, kLossChunk, [&](index_t c, index_t b, index_t e) {
      double s;
      mse_loop(mode, &s, loss, grad, pred, target, gvec, b, e, gscale);
      part[c] = s;
    });
  });
  return out.sum ? sum_in_order(part, nch) : 0.0;
}

// --- cross-entropy -------------------------------------------------------------------------------

index_t cross_entropy_first_bad_target(const std::int64_t* target, index_t M, index_t C, std::int64_t ignore_index) {
  if (M <= 0) return -1;
  const index_t nch = num_chunks(M, kLossChunk);
  index_t* first = scratch<index_t>(kSlotPartials, nch);
  parallel_chunks(M, kLossChunk, [&](index_t c, index_t b, index_t e) {
    index_t bad = -1;
    for (index_t i = b; i < e; ++i) {
      const std::int64_t t = target[i];
      if ((t < 0 || t >= C) && t != ignore_index) {
        bad = i;
        break;
      }
    }
    first[c] = bad;
  });
  for (index_t c = 0; c < nch; ++c) {
    if (first[c] >= 0) return first[c];
  }
  return -1;
}

template <class T>
double cross_entropy_weight_total(const std::int64_t* target, index_t M, const T* weight, std::int64_t ignore_index) {
  if (M <= 0) return 0.0;
  const index_t nch = num_chunks(M, kLossChunk);
  double* part = scratch<double>(kSlotPartials, nch);
  parallel_chunks(M, kLossChunk, [&](index_t c, index_t b, index_t e) {
    double acc = 0.0;
    for (index_t i = b; i < e; ++i) {
      const std::int64_t t = target[i];
      if (t == ignore_index) continue;
      acc += weight != nullptr ? static_cast<double>(weight[t]) : 1.0;
    }
    part[c] = acc;
  });
  return sum_in_order(part, nch);
}

template <class T>
double cross_entropy(LossOutputs out, T* loss, T* grad, const T* logits, const std::int64_t* target, const T* weight,
                     const T* gvec, index_t N, index_t C, index_t inner, std::int64_t ignore_index,
                     T label_smoothing, T gscale) {
  if (N <= 0 || inner <= 0) return 0.0;
  NNK_ASSERT(C >= 1);
  // Class weights (ones when absent) and their sum.
  const T* w = weight;
  if (w == nullptr) {
    T* ones = scratch<T>(kSlotWeight, C);
    std::fill(ones, ones + C, T(1));
    w = ones;
  }
  double wsum_d = 0.0;
  bool weights_finite = true;
  for (index_t c = 0; c < C; ++c) {
    wsum_d += static_cast<double>(w[c]);
    weights_finite = weights_finite && std::isfinite(w[c]);
  }
  const T wsum = static_cast<T>(wsum_d);
  const CeArgs args{C, ignore_index, weights_finite ? 0.0 : std::numeric_limits<double>::quiet_NaN()};
  const bool smooth = label_smoothing != T(0);
  double total = 0.0;

  auto run = [&](auto tag) {
    if (inner == 1) {
      const index_t rows = N;
      const index_t rpb = std::max<index_t>(1, kRowBlock / C);
      const index_t chunk = rpb * std::max<index_t>(1, kLossChunk / (rpb * C));
      const index_t nch = num_chunks(rows, chunk);
      double* part = scratch<double>(kSlotPartials, nch);
      parallel_chunks(rows, chunk, [&](index_t ch, index_t b, index_t e) {
        T* stat = scratch<T>(kScratch0, 2 * rpb);
        double* rl = scratch<double>(kScratch1, 2 * rpb);  // row losses, then the smoothing sums
        T* ebuf = out.grad || C >= kRowFuseMin ? nullptr : scratch<T>(kScratch2, rpb * C);
        double acc = 0.0;
        for (index_t r = b; r < e; r += rpb) {
          const index_t nr = std::min(rpb, e - r);
          ce_rows(tag, rl, out.grad ? grad + r * C : nullptr, logits + r * C, target + r, w,
                  gvec != nullptr ? gvec + r : nullptr, nr, args, label_smoothing, wsum, gscale, stat, rl + rpb, ebuf);
          for (index_t k = 0; k < nr; ++k) acc += rl[k];
          if (out.none) {
            for (index_t k = 0; k < nr; ++k) loss[r + k] = static_cast<T>(rl[k]);
          }
        }
        part[ch] = acc;
      });
      total = sum_in_order(part, nch);
      return;
    }
    const index_t W = std::min(inner, std::max<index_t>(16, kRowBlock / C));
    const index_t nblk = (inner + W - 1) / W;
    const index_t units = N * nblk;
    const index_t chunk = std::max<index_t>(1, kLossChunk / (W * C));
    const index_t nch = num_chunks(units, chunk);
    double* part = scratch<double>(kSlotPartials, nch);
    parallel_chunks(units, chunk, [&](index_t ch, index_t b, index_t e) {
      T* st = scratch<T>(kScratch0, 3 * W);
      double* sd = scratch<double>(kScratch1, 3 * W);  // sums (2 W), then row losses (W)
      double* rl = sd + 2 * W;
      double acc = 0.0;
      for (index_t u = b; u < e; ++u) {
        const index_t n = u / nblk, j0 = (u % nblk) * W;
        const index_t wlen = std::min(W, inner - j0);
        const index_t zoff = n * C * inner + j0, roff = n * inner + j0;
        ce_cols(tag, rl, out.grad ? grad + zoff : nullptr, logits + zoff, target + roff, w,
                gvec != nullptr ? gvec + roff : nullptr, inner, wlen, args, label_smoothing, wsum, gscale, st, sd);
        for (index_t k = 0; k < wlen; ++k) acc += rl[k];
        if (out.none) {
          for (index_t k = 0; k < wlen; ++k) loss[roff + k] = static_cast<T>(rl[k]);
        }
      }
      part[ch] = acc;
    });
    total = sum_in_order(part, nch);
  };

  // The per-row losses are always computed (cheap); sum/none only decide what is kept.
  LossOutputs mode_out = out;
  mode_out.sum = false;
  mode_out.none = false;
  dispatch_mode(mode_out, gvec != nullptr, [&](auto mode) {
    using M = decltype(mode);
    if (smooth) {
      run(CeTag<true, M>{});
    } else {
      run(CeTag<false, M>{});
    }
  });
  return total;
}

// --- BCE with logits -----------------------------------------------------------------------------

template <class T>
double bce_with_logits(LossOutputs out, T* loss, T* grad, const T* x, const T* target, const T* weight,
                       index_t weight_period, const T* pos_weight, index_t pos_period, const T* gvec, index_t n,
                       T gscale) {
  if (n <= 0) return 0.0;
  index_t Lw = 0, Lp = 0;
  const T* w = bce_periodic(weight, weight_period, n, Lw, kSlotWeight);
  const T* pw = bce_periodic(pos_weight, pos_period, n, Lp, kSlotPosWeight);
  const index_t nch = num_chunks(n, kLossChunk);
  double* part = scratch<double>(kSlotPartials, nch);
  dispatch_mode(out, gvec != nullptr, [&](auto mode) {
    parallel_chunks(n, kLossChunk, [&](index_t c, index_t b, index_t e) {
      double acc = 0.0;
      // Segments along which neither weight index wraps around its period.
      for (index_t i = b; i < e;) {
        const index_t iw = i % Lw, ip = i % Lp;
        const index_t len = std::min({e - i, Lw - iw, Lp - ip});
        double s;
        if (pos_weight != nullptr) {
          bce_loop(mode, std::true_type{}, &s, loss, grad, x, target, w + iw, pw + ip, gvec, i, len, gscale);
        } else {
          bce_loop(mode, std::false_type{}, &s, loss, grad, x, target, w + iw, pw + ip, gvec, i, len, gscale);
        }
        acc += s;
        i += len;
      }
      part[c] = acc;
    });
  });
  return out.sum ? sum_in_order(part, nch) : 0.0;
}

#define NNK_INSTANTIATE_LOSS(T)                                                                                 \
  template double mse_loss<T>(LossOutputs, T*, T*, const T*, const T*, const T*, index_t, T);                    \
  template double cross_entropy<T>(LossOutputs, T*, T*, const T*, const std::int64_t*, const T*, const T*,      \
                                   index_t, index_t, index_t, std::int64_t, T, T);                               \
  template double cross_entropy_weight_total<T>(const std::int64_t*, index_t, const T*, std::int64_t);          \
  template double bce_with_logits<T>(LossOutputs, T*, T*, const T*, const T*, const T*, index_t, const T*,       \
                                     index_t, const T*, index_t, T);

NNK_INSTANTIATE_LOSS(float)
NNK_INSTANTIATE_LOSS(double)

}  // namespace nnkern
