#include "nnkern/norm.h"

#include <algorithm>
#include <cmath>

#include "nnkern/parallel.h"
#include "nnkern/simd.h"
#include "nnkern/workspace.h"

namespace nnkern {
namespace {

// ---------------------------------------------------------------------------------------------
// How per-channel reductions are cut (a function of the shape only, never of the thread count).
//
// Plane path (S >= kPlaneMinS): one piece per (n, c) plane of S contiguous elements; pieces of a
// channel are combined in n order. Tile path (small S, e.g. (N, C) input): x is a matrix of N rows
// and R = C*S columns cut into tiles of kTileRows x kTileCols; each tile yields one partial per
// column (vectorised across columns), and a channel combines its columns' partials tile row by
// tile row, column by column. Scratch: 2 doubles per plane, or per column and tile row (at most
// 1/16 resp. 1/64 of a float32 input's size).
constexpr index_t kPlaneMinS = 64;
constexpr index_t kTileRows = 256;
constexpr index_t kTileCols = 256;
// Elementwise and reduction passes give each thread at least this many elements.
constexpr index_t kMinElemsPerThread = 32768;

inline bool use_planes(index_t S) { return S >= kPlaneMinS; }
inline index_t ceil_div(index_t a, index_t b) { return (a + b - 1) / b; }

// Running (count, mean, M2) of a set of values; merge() adds a disjoint set (Chan et al.).
struct Moments {
  double count = 0.0, mean = 0.0, m2 = 0.0;
  void merge(double nb, double mean_b, double m2_b) {
    const double n = count + nb;
    const double delta = mean_b - mean;
    // An infinite mean on either side makes delta inf - inf = NaN or +-inf, and mean + delta
    // NaN where the plain sum/n (torch's mean) is +-inf: take the weighted mean then.
    if (!std::isfinite(delta)) {
      mean = (count > 0.0 ? mean * count : 0.0) / n + mean_b * (nb / n);
      m2 += m2_b + delta * delta;  // NaN or inf, as torch's sum of squared deviations
      count = n;
      return;
    }
    mean += delta * (nb / n);
    m2 += m2_b + delta * delta * (count * nb / n);
    count = n;
  }
};

// ---------------------------------------------------------------------------------------------
// Hot loops (NNK_MULTIVERSION: compiled per ISA level, called from parallel bodies).

// Plane reductions: 16 accumulators (element i goes to lane i % 16), combined by a fixed tree.
// One accumulator chain would be bound by the add latency; 16 give the vector units
// independent chains (4 ymm / 2 zmm registers), and the result does not depend on the vector
// width (only FMA contraction can differ between ISA levels).
constexpr int kLanes = 16;

NNK_INLINE double combine_lanes(double* acc) {
  for (int w = kLanes / 2; w >= 1; w /= 2) {
    for (int k = 0; k < w; ++k) acc[k] += acc[k + w];
  }
  return acc[0];
}

// sum(x[0..n)) in double.
template <class T>
NNK_INLINE double sum_lanes(const T* x, index_t n) {
  double acc[kLanes] = {};
  index_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int k = 0; k < kLanes; ++k) acc[k] += static_cast<double>(x[i + k]);
  }
  for (int k = 0; i < n; ++i, ++k) acc[k] += static_cast<double>(x[i]);
  return combine_lanes(acc);
}

// sum((x - m)^2) in double.
template <class T>
NNK_INLINE double sum_sq_dev_lanes(const T* x, index_t n, double m) {
  double acc[kLanes] = {};
  index_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int k = 0; k < kLanes; ++k) {
      const double d = static_cast<double>(x[i + k]) - m;
      acc[k] += d * d;
    }
  }
  for (int k = 0; i < n; ++i, ++k) {
    const double d = static_cast<double>(x[i]) - m;
    acc[k] += d * d;
  }
  return combine_lanes(acc);
}

// sum(g) and sum(g * (x - m)) in double.
template <class T>
NNK_INLINE void dy_sums_lanes(const T* g, const T* x, index_t n, double m, double* sg, double* sgx) {
  double a[kLanes] = {}, b[kLanes] = {};
  index_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int k = 0; k < kLanes; ++k) {
      const double gk = static_cast<double>(g[i + k]);
      a[k] += gk;
      b[k] += gk * (static_cast<double>(x[i + k]) - m);
    }
  }
  for (int k = 0; i < n; ++i, ++k) {
    const double gk = static_cast<double>(g[i]);
    a[k] += gk;
    b[k] += gk * (static_cast<double>(x[i]) - m);
  }
  *sg = combine_lanes(a);
  *sgx = combine_lanes(b);
}

// Mean and sum of squared deviations of planes [p0, p1), each S contiguous elements, in double.
// Two passes per plane: the second re-reads the plane from cache.
template <class T>
NNK_INLINE void planes_mean_m2_body(const T* x, index_t S, index_t p0, index_t p1, double* mean,
                                    double* m2) {
  for (index_t p = p0; p < p1; ++p) {
    const T* xp = x + p * S;
    const double m = sum_lanes(xp, S) / static_cast<double>(S);
    mean[p] = m;
    m2[p] = sum_sq_dev_lanes(xp, S, m);
  }
}
NNK_MULTIVERSION(planes_mean_m2, planes_mean_m2_body)

// Per-column mean and M2 of a tile: `rows` rows of `cols` elements, row stride ld.
template <class T>
NNK_INLINE void tile_mean_m2_body(const T* x, index_t ld, index_t rows, index_t cols, double* mean,
                                  double* m2) {
  for (index_t j = 0; j < cols; ++j) mean[j] = 0.0;
  for (index_t r = 0; r < rows; ++r) {
    const T* xr = x + r * ld;
#pragma omp simd
    for (index_t j = 0; j < cols; ++j) mean[j] += static_cast<double>(xr[j]);
  }
  const double n = static_cast<double>(rows);
  for (index_t j = 0; j < cols; ++j) {
    mean[j] /= n;
    m2[j] = 0.0;
  }
  for (index_t r = 0; r < rows; ++r) {
    const T* xr = x + r * ld;
#pragma omp simd
    for (index_t j = 0; j < cols; ++j) {
      const double d = static_cast<double>(xr[j]) - mean[j];
      m2[j] += d * d;
    }
  }
}
NNK_MULTIVERSION(tile_mean_m2, tile_mean_m2_body)

// Per plane p in [p0, p1) (channel p % C): sum(dy) and sum(dy * (x - mean[c])) in double.
template <class T>
NNK_INLINE void planes_dy_sums_body(const T* dy, const T* x, const T* mean, index_t C, index_t S,
                                    index_t p0, index_t p1, double* sdy, double* sdyx) {
  for (index_t p = p0; p < p1; ++p) {
    dy_sums_lanes(dy + p * S, x + p * S, S, static_cast<double>(mean[p % C]), sdy + p, sdyx + p);
  }
}
NNK_MULTIVERSION(planes_dy_sums, planes_dy_sums_body)

// Per column of a tile: sum(dy) and sum(dy * (x - colmean[j])) in double.
template <class T>
NNK_INLINE void tile_dy_sums_body(const T* dy, const T* x, const T* colmean, index_t ld, index_t rows,
                                  index_t cols, double* sdy, double* sdyx) {
  for (index_t j = 0; j < cols; ++j) {
    sdy[j] = 0.0;
    sdyx[j] = 0.0;
  }
  for (index_t r = 0; r < rows; ++r) {
    const T* g = dy + r * ld;
    const T* xr = x + r * ld;
#pragma omp simd
    for (index_t j = 0; j < cols; ++j) {
      const double gj = static_cast<double>(g[j]);
      sdy[j] += gj;
      sdyx[j] += gj * (static_cast<double>(xr[j]) - static_cast<double>(colmean[j]));
    }
  }
}
NNK_MULTIVERSION(tile_dy_sums, tile_dy_sums_body)

// out = (x - mean) * scale + shift, per plane (channel p % C) or per row (per-column parameters).
template <class T>
NNK_INLINE void planes_affine_body(T* y, const T* x, index_t C, index_t S, index_t p0, index_t p1,
                                   const T* mean, const T* scale, const T* shift) {
  for (index_t p = p0; p < p1; ++p) {
    const index_t c = p % C;
    const T m = mean[c], a = scale[c], b = shift[c];
    T* yp = y + p * S;
    const T* xp = x + p * S;
#pragma omp simd
    for (index_t i = 0; i < S; ++i) yp[i] = (xp[i] - m) * a + b;
  }
}
NNK_MULTIVERSION(planes_affine, planes_affine_body)

template <class T>
NNK_INLINE void rows_affine_body(T* y, const T* x, index_t R, index_t r0, index_t r1, const T* mean,
                                 const T* scale, const T* shift) {
  for (index_t r = r0; r < r1; ++r) {
    T* yr = y + r * R;
    const T* xr = x + r * R;
#pragma omp simd
    for (index_t j = 0; j < R; ++j) yr[j] = (xr[j] - mean[j]) * scale[j] + shift[j];
  }
}
NNK_MULTIVERSION(rows_affine, rows_affine_body)

// Training backward elementwise, in torch's form: dx = (dy - (x - mean)*k2 - k3) * k1 with
// k1 = weight*invstd, k2 = invstd^2 * sum(dy (x - mean)) / M, k3 = sum(dy) / M. (Folding k1 into
// the other two saves one operation but turns an infinite weight or invstd into inf - inf = NaN
// where torch's finite bracket times infinity gives +-inf.)
template <class T>
NNK_INLINE void planes_bwd_train_body(T* dx, const T* dy, const T* x, index_t C, index_t S,
                                      index_t p0, index_t p1, const T* mean, const T* k1,
                                      const T* k2, const T* k3) {
  for (index_t p = p0; p < p1; ++p) {
    const index_t c = p % C;
    const T m = mean[c], a = k1[c], b = k2[c], d = k3[c];
    T* o = dx + p * S;
    const T* g = dy + p * S;
    const T* xp = x + p * S;
#pragma omp simd
    for (index_t i = 0; i < S; ++i) o[i] = (g[i] - (xp[i] - m) * b - d) * a;
  }
}
NNK_MULTIVERSION(planes_bwd_train, planes_bwd_train_body)

template <class T>
NNK_INLINE void rows_bwd_train_body(T* dx, const T* dy, const T* x, index_t R, index_t r0, index_t r1,
                                    const T* mean, const T* k1, const T* k2, const T* k3) {
  for (index_t r = r0; r < r1; ++r) {
    T* o = dx + r * R;
    const T* g = dy + r * R;
    const T* xr = x + r * R;
#pragma omp simd
    for (index_t j = 0; j < R; ++j) o[j] = (g[j] - (xr[j] - mean[j]) * k2[j] - k3[j]) * k1[j];
  }
}
NNK_MULTIVERSION(rows_bwd_train, rows_bwd_train_body)

// Eval backward elementwise: dx = k1 * dy (x is not read).
template <class T>
NNK_INLINE void planes_scale_body(T* dx, const T* dy, index_t C, index_t S, index_t p0, index_t p1,
                                  const T* k1) {
  for (index_t p = p0; p < p1; ++p) {
    const T a = k1[p % C];
    T* o = dx + p * S;
    const T* g = dy + p * S;
#pragma omp simd
    for (index_t i = 0; i < S; ++i) o[i] = a * g[i];
  }
}
NNK_MULTIVERSION(planes_scale, planes_scale_body)

template <class T>
NNK_INLINE void rows_scale_body(T* dx, const T* dy, index_t R, index_t r0, index_t r1, const T* k1) {
  for (index_t r = r0; r < r1; ++r) {
    T* o = dx + r * R;
    const T* g = dy + r * R;
#pragma omp simd
    for (index_t j = 0; j < R; ++j) o[j] = k1[j] * g[j];
  }
}
NNK_MULTIVERSION(rows_scale, rows_scale_body)

// ---------------------------------------------------------------------------------------------
// Drivers

// Planes per thread and rows per thread for the elementwise passes.
inline index_t min_planes(index_t S) { return std::max<index_t>(1, kMinElemsPerThread / std::max<index_t>(1, S)); }
inline index_t min_rows(index_t R) { return std::max<index_t>(1, kMinElemsPerThread / std::max<index_t>(1, R)); }

// Per-channel mean and M2 (sum of squared deviations) of x [N, C, S], N*S >= 1.
template <class T>
void channel_moments(const T* x, index_t N, index_t C, index_t S, double* cmean, double* cm2) {
  if (use_planes(S)) {
    const index_t P = N * C;
    double* pm = scratch<double>(kScratch0, P);
    double* pq = scratch<double>(kScratch1, P);
    parallel_for(
        P, min_planes(S), [&](index_t b, index_t e) { planes_mean_m2(x, S, b, e, pm, pq); }, 1);
    const double s = static_cast<double>(S);
    parallel_for(
        C, 256,
        [&](index_t b, index_t e) {
          for (index_t c = b; c < e; ++c) {
            Moments m;
            for (index_t n = 0; n < N; ++n) m.merge(s, pm[n * C + c], pq[n * C + c]);
            cmean[c] = m.mean;
            cm2[c] = m.m2;
          }
        },
        1);
    return;
  }
  const index_t R = C * S;
  const index_t row_tiles = ceil_div(N, kTileRows), col_tiles = ceil_div(R, kTileCols);
  double* tm = scratch<double>(kScratch0, row_tiles * R);
  double* tq = scratch<double>(kScratch1, row_tiles * R);
  parallel_for(
      row_tiles * col_tiles, 2,
      [&](index_t b, index_t e) {
        for (index_t t = b; t < e; ++t) {
          const index_t k = t / col_tiles, j0 = (t % col_tiles) * kTileCols;
          const index_t r0 = k * kTileRows;
          tile_mean_m2(x + r0 * R + j0, R, std::min(kTileRows, N - r0), std::min(kTileCols, R - j0),
                       tm + k * R + j0, tq + k * R + j0);
        }
      },
      1);
  parallel_for(
      C, std::max<index_t>(1, 4096 / (row_tiles * S)),
      [&](index_t b, index_t e) {
        for (index_t c = b; c < e; ++c) {
          Moments m;
          for (index_t k = 0; k < row_tiles; ++k) {
            const double rows = static_cast<double>(std::min(kTileRows, N - k * kTileRows));
            for (index_t s = 0; s < S; ++s) m.merge(rows, tm[k * R + c * S + s], tq[k * R + c * S + s]);
          }
          cmean[c] = m.mean;
          cm2[c] = m.m2;
        }
      },
      1);
}

// Per-channel sum(dy) and sum(dy * (x - mean[c])) of dy, x [N, C, S].
template <class T>
void channel_dy_sums(const T* dy, const T* x, const T* mean, index_t N, index_t C, index_t S,
                     double* csdy, double* csdyx) {
  if (use_planes(S)) {
    const index_t P = N * C;
    double* pa = scratch<double>(kScratch0, P);
    double* pb = scratch<double>(kScratch1, P);
    parallel_for(
        P, min_planes(S), [&](index_t b, index_t e) { planes_dy_sums(dy, x, mean, C, S, b, e, pa, pb); },
        1);
    for (index_t c = 0; c < C; ++c) {
      double a = 0.0, b = 0.0;
      for (index_t n = 0; n < N; ++n) {
        a += pa[n * C + c];
        b += pb[n * C + c];
      }
      csdy[c] = a;
      csdyx[c] = b;
    }
    return;
  }
  const index_t R = C * S;
  const index_t row_tiles = ceil_div(N, kTileRows), col_tiles = ceil_div(R, kTileCols);
  double* ta = scratch<double>(kScratch0, row_tiles * R);
  double* tb = scratch<double>(kScratch1, row_tiles * R);
  // Column means: the channel mean repeated S times (the same array when S == 1).
  const T* colmean = mean;
  if (S > 1) {
    T* cm = scratch<T>(kScratch4, R);
    for (index_t c = 0; c < C; ++c) std::fill(cm + c * S, cm + (c + 1) * S, mean[c]);
    colmean = cm;
  }
  parallel_for(
      row_tiles * col_tiles, 2,
      [&](index_t b, index_t e) {
        for (index_t t = b; t < e; ++t) {
          const index_t k = t / col_tiles, j0 = (t % col_tiles) * kTileCols;
          const index_t r0 = k * kTileRows;
          tile_dy_sums(dy + r0 * R + j0, x + r0 * R + j0, colmean + j0, R, std::min(kTileRows, N - r0),
                       std::min(kTileCols, R - j0), ta + k * R + j0, tb + k * R + j0);
        }
      },
      1);
  for (index_t c = 0; c < C; ++c) {
    double a = 0.0, b = 0.0;
    for (index_t k = 0; k < row_tiles; ++k) {
      for (index_t s = 0; s < S; ++s) {
        a += ta[k * R + c * S + s];
        b += tb[k * R + c * S + s];
      }
    }
    csdy[c] = a;
    csdyx[c] = b;
  }
}

// Per-channel parameters repeated S times per channel (tile path with S > 1), in scratch `slot`.
template <class T>
const T* columns(const T* chan, index_t C, index_t S, int slot) {
  if (S == 1) return chan;
  T* col = scratch<T>(slot, C * S);
  for (index_t c = 0; c < C; ++c) std::fill(col + c * S, col + (c + 1) * S, chan[c]);
  return col;
}

// y = (x - mean[c]) * scale[c] + shift[c] over x [N, C, S].
template <class T>
void apply_affine(T* y, const T* x, index_t N, index_t C, index_t S, const T* mean, const T* scale,
                  const T* shift) {
  if (use_planes(S)) {
    parallel_for(
        N * C, min_planes(S),
        [&](index_t b, index_t e) { planes_affine(y, x, C, S, b, e, mean, scale, shift); }, 1);
    return;
  }
  const index_t R = C * S;
  const T* cm = columns(mean, C, S, kScratch5);
  const T* ca = columns(scale, C, S, kScratch6);
  const T* cb = columns(shift, C, S, kScratch7);
  parallel_for(
      N, min_rows(R), [&](index_t b, index_t e) { rows_affine(y, x, R, b, e, cm, ca, cb); }, 1);
}

// Per-channel T arrays in scratch: mean, scale = w * invstd, shift = b.
template <class T>
void normalise(T* y, const T* x, const T* weight, const T* bias, const T* mean, const double* invstd,
               index_t N, index_t C, index_t S) {
  T* scale = scratch<T>(kScratch2, C);
  T* shift = scratch<T>(kScratch3, C);
  for (index_t c = 0; c < C; ++c) {
    const double w = weight != nullptr ? static_cast<double>(weight[c]) : 1.0;
    scale[c] = static_cast<T>(w * invstd[c]);
    shift[c] = bias != nullptr ? bias[c] : T(0);
  }
  apply_affine(y, x, N, C, S, mean, scale, shift);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Batch norm

template <class T>
void batch_norm_train_forward(T* y, T* save_mean, T* save_invstd, T* running_mean, T* running_var,
                              const T* x, const T* weight, const T* bias, index_t N, index_t C,
                              index_t S, double momentum, double eps) {
  const index_t M = N * S;
  if (C <= 0) return;
  if (M == 0) {
    // Nothing to normalise (torch leaves the running statistics alone for an empty batch).
    std::fill(save_mean, save_mean + C, T(0));
    std::fill(save_invstd, save_invstd + C, T(0));
    return;
  }
  NNK_ASSERT(M >= 2 || running_mean == nullptr);
  double* cmean = scratch<double>(kScratch2, C);
  double* cm2 = scratch<double>(kScratch3, C);
  channel_moments(x, N, C, S, cmean, cm2);
  double* invstd = scratch<double>(kScratch4, C);
  const double md = static_cast<double>(M);
  for (index_t c = 0; c < C; ++c) {
    invstd[c] = 1.0 / std::sqrt(cm2[c] / md + eps);
    save_mean[c] = static_cast<T>(cmean[c]);
    save_invstd[c] = static_cast<T>(invstd[c]);
    if (running_mean != nullptr) {
      running_mean[c] = static_cast<T>((1.0 - momentum) * static_cast<double>(running_mean[c]) +
                                       momentum * cmean[c]);
      running_var[c] = static_cast<T>((1.0 - momentum) * static_cast<double>(running_var[c]) +
                                      momentum * (cm2[c] / (md - 1.0)));
    }
  }
  // normalise() takes scratch slots 2 and 3 for its own arrays: invstd lives in slot 4.
  normalise(y, x, weight, bias, save_mean, invstd, N, C, S);
}

template <class T>
void batch_norm_eval_forward(T* y, T* save_mean, T* save_invstd, const T* x, const T* running_mean,
                             const T* running_var, const T* weight, const T* bias, index_t N,
                             index_t C, index_t S, double eps) {
  if (C <= 0) return;
  double* invstd = scratch<double>(kScratch4, C);
  for (index_t c = 0; c < C; ++c) {
    invstd[c] = 1.0 / std::sqrt(static_cast<double>(running_var[c]) + eps);
    save_mean[c] = running_mean[c];
    save_invstd[c] = static_cast<T>(invstd[c]);
  }
  if (N * S == 0) return;
  normalise(y, x, weight, bias, save_mean, invstd, N, C, S);
}

template <class T>
void batch_norm_backward(T* dx, T* dweight, T* dbias, const T* dy, const T* x, const T* weight,
                         const T* save_mean, const T* save_invstd, index_t N, index_t C, index_t S,
                         bool training) {
  if (C <= 0) return;
  const index_t M = N * S;
  double* sdy = scratch<double>(kScratch2, C);
  double* sdyx = scratch<double>(kScratch3, C);
  if (M > 0) {
    channel_dy_sums(dy, x, save_mean, N, C, S, sdy, sdyx);
  } else {
    std::fill(sdy, sdy + C, 0.0);
    std::fill(sdyx, sdyx + C, 0.0);
  }
  T* k1 = scratch<T>(kScratch5, C);
  T* k2 = scratch<T>(kScratch6, C);
  T* k3 = scratch<T>(kScratch7, C);
  const double md = static_cast<double>(M);
  for (index_t c = 0; c < C; ++c) {
    const double invstd = static_cast<double>(save_invstd[c]);
    const double w = weight != nullptr ? static_cast<double>(weight[c]) : 1.0;
    dbias[c] = static_cast<T>(sdy[c]);
    // An empty batch has empty sums: dweight is 0 whatever save_invstd holds (not 0 * inf).
    dweight[c] = M > 0 ? static_cast<T>(sdyx[c] * invstd) : T(0);
    k1[c] = static_cast<T>(w * invstd);
    k2[c] = training && M > 0 ? static_cast<T>(sdyx[c] * invstd * invstd / md) : T(0);
    k3[c] = training && M > 0 ? static_cast<T>(sdy[c] / md) : T(0);
  }
  if (M == 0) return;
  if (use_planes(S)) {
    if (training) {
      parallel_for(
          N * C, min_planes(S),
          [&](index_t b, index_t e) { planes_bwd_train(dx, dy, x, C, S, b, e, save_mean, k1, k2, k3); }, 1);
    } else {
      parallel_for(
          N * C, min_planes(S), [&](index_t b, index_t e) { planes_scale(dx, dy, C, S, b, e, k1); }, 1);
    }
    return;
  }
  const index_t R = C * S;
  // Column parameters: slots 0..4 are free again once the reductions are done.
  const T* c1 = columns<T>(k1, C, S, kScratch0);
  if (training) {
    const T* cm = columns(save_mean, C, S, kScratch1);
    const T* c2 = columns<T>(k2, C, S, kScratch2);
    const T* c3 = columns<T>(k3, C, S, kScratch3);
    parallel_for(
        N, min_rows(R), [&](index_t b, index_t e) { rows_bwd_train(dx, dy, x, R, b, e, cm, c1, c2, c3); },
        1);
  } else {
    parallel_for(
        N, min_rows(R), [&](index_t b, index_t e) { rows_scale(dx, dy, R, b, e, c1); }, 1);
  }
}

// ---------------------------------------------------------------------------------------------
// Dropout

namespace {

// The keep/drop rule (documented in norm.h), written for 32-bit SIMD lanes so it vectorises on
// every ISA level (AVX2 has no 64-bit multiply) and gives the same bits on all of them.
constexpr std::uint64_t kSplitMixGamma = 0x9e3779b97f4a7c15ULL;

// SplitMix64 output function (Steele, Lea, Flood 2014): derives the per-call keys.
inline std::uint64_t splitmix_mix(std::uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// A 32-bit bijective mixer with low avalanche bias ("lowbias32", C. Wellons' hash prospector).
NNK_INLINE std::uint32_t mix32(std::uint32_t x) {
  x ^= x >> 16;
  x *= 0x7feb352dU;
  x ^= x >> 15;
  x *= 0x846ca68bU;
  x ^= x >> 16;
  return x;
}

// Random 32 bits of element c of a block: mix32(mix32(c + k0) ^ k1).
NNK_INLINE std::uint32_t dropout_bits(std::uint32_t c, std::uint32_t k0, std::uint32_t k1) {
  return mix32(mix32(c + k0) ^ k1);
}

// Elements [begin, end) of one 2^32-element block (the same keys throughout).
template <class T>
NNK_INLINE void dropout_block_body(T* y, std::uint8_t* mask, const T* x, index_t begin, index_t end,
                                   std::uint32_t k0, std::uint32_t k1, std::uint32_t threshold, T scale) {
  const std::uint32_t c0 = static_cast<std::uint32_t>(begin);
  const index_t len = end - begin;
  T* yb = y + begin;
  std::uint8_t* mb = mask + begin;
  const T* xb = x + begin;
  // bits >= threshold as a signed compare of sign-flipped values: AVX2 has no unsigned 32-bit
  // compare, and without this GCC leaves the loop scalar (with a branch) below AVX-512.
  const auto thr_signed = static_cast<std::int32_t>(threshold ^ 0x80000000U);
#pragma omp simd
  for (index_t j = 0; j < len; ++j) {
    const auto b = static_cast<std::int32_t>(dropout_bits(c0 + static_cast<std::uint32_t>(j), k0, k1) ^ 0x80000000U);
    const std::int32_t keep = b >= thr_signed;
    yb[j] = xb[j] * (keep ? scale : T(0));
    mb[j] = static_cast<std::uint8_t>(keep);
  }
}
NNK_MULTIVERSION(dropout_block, dropout_block_body)

template <class T>
NNK_INLINE void dropout_bwd_range_body(T* dx, const T* dy, const std::uint8_t* mask, index_t begin,
                                       index_t end, T scale) {
#pragma omp simd
  for (index_t i = begin; i < end; ++i) dx[i] = dy[i] * (mask[i] != 0 ? scale : T(0));
}
NNK_MULTIVERSION(dropout_bwd_range, dropout_bwd_range_body)

// Everything dropped (p == 1 up to 2^-33): y = x * 0 (NaN/Inf stay NaN, as torch).
template <class T>
NNK_INLINE void dropout_all_body(T* y, std::uint8_t* mask, const T* x, index_t begin, index_t end) {
#pragma omp simd
  for (index_t i = begin; i < end; ++i) {
    y[i] = x[i] * T(0);
    mask[i] = 0;
  }
}
NNK_MULTIVERSION(dropout_all, dropout_all_body)

template <class T>
T dropout_scale(double p) {
  return dropout_threshold(p) >= (std::uint64_t{1} << 32) ? T(0) : static_cast<T>(1.0 / (1.0 - p));
}

constexpr index_t kDropoutMinPerThread = 1 << 16;
constexpr index_t kBlock = index_t{1} << 32;

}  // namespace

std::uint64_t dropout_threshold(double p) {
  if (!(p > 0.0)) return 0;
  if (p >= 1.0) return std::uint64_t{1} << 32;
  return static_cast<std::uint64_t>(std::llround(p * 4294967296.0));
}

void dropout_keys(std::uint64_t seed, std::uint64_t block, std::uint32_t* k0, std::uint32_t* k1) {
  const std::uint64_t key = splitmix_mix(seed + (block + 1) * kSplitMixGamma);
  *k0 = static_cast<std::uint32_t>(key);
  *k1 = static_cast<std::uint32_t>(key >> 32);
}

template <class T>
void dropout_forward(T* y, std::uint8_t* mask, const T* x, index_t n, double p, std::uint64_t seed) {
  const std::uint64_t thr = dropout_threshold(p);
  const T scale = dropout_scale<T>(p);
  if (thr >= (std::uint64_t{1} << 32)) {
    parallel_for(n, kDropoutMinPerThread, [&](index_t b, index_t e) { dropout_all(y, mask, x, b, e); });
    return;
  }
  const auto thr32 = static_cast<std::uint32_t>(thr);
  parallel_for(n, kDropoutMinPerThread, [&](index_t b, index_t e) {
    // Cut the range at 2^32-element block edges: each block has its own keys.
    while (b < e) {
      const index_t block = b / kBlock;
      const index_t stop = std::min(e, (block + 1) * kBlock);
      std::uint32_t k0, k1;
      dropout_keys(seed, static_cast<std::uint64_t>(block), &k0, &k1);
      dropout_block(y, mask, x, b, stop, k0, k1, thr32, scale);
      b = stop;
    }
  });
}

template <class T>
void dropout_backward(T* dx, const T* dy, const std::uint8_t* mask, index_t n, double p) {
  const T scale = dropout_scale<T>(p);
  parallel_for(n, kDropoutMinPerThread,
               [&](index_t b, index_t e) { dropout_bwd_range(dx, dy, mask, b, e, scale); });
}

#define NNK_INSTANTIATE(T)                                                                         \
  template void batch_norm_train_forward<T>(T*, T*, T*, T*, T*, const T*, const T*, const T*,      \
                                            index_t, index_t, index_t, double, double);            \
  template void batch_norm_eval_forward<T>(T*, T*, T*, const T*, const T*, const T*, const T*,     \
                                           const T*, index_t, index_t, index_t, double);           \
  template void batch_norm_backward<T>(T*, T*, T*, const T*, const T*, const T*, const T*,         \
                                       const T*, index_t, index_t, index_t, bool);                 \
  template void dropout_forward<T>(T*, std::uint8_t*, const T*, index_t, double, std::uint64_t);   \
  template void dropout_backward<T>(T*, const T*, const std::uint8_t*, index_t, double);
NNK_INSTANTIATE(float)
NNK_INSTANTIATE(double)
#undef NNK_INSTANTIATE

}  // namespace nnkern
