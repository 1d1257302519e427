#include "nnkern/augment.h"

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "nnkern/parallel.h"
#include "nnkern/simd.h"
#include "nnkern/workspace.h"

namespace nnkern {
namespace {

// Output pixels resolved to input offsets and weights, shared by all channels. A corner outside
// the image, or with weight exactly 0, has offset -1 and is not used (so flips, crops and integer
// shifts copy pixels exactly, whatever their neighbours hold); the weight of outside corners goes
// to `fillv` (the fill value's share).
template <class T>
struct Table {
  std::int32_t *o0, *o1, *o2, *o3;
  T *w0, *w1, *w2, *w3;
  T* fillv;
};

template <class R>
NNK_INLINE R clamp(R v, R lo, R hi) {
  v = v < lo ? lo : v;
  return v > hi ? hi : v;
}

// float32 images up to this size (every side, input and output) compute sample positions in float.
constexpr index_t kFloatCoordsMax = 512;

// Output rows of at most this many pixels form one unit of work (tables stay in L1/L2).
constexpr index_t kBlockPixels = 2048;

// Table rows are computed kRowPad-aligned: a row of Wo entries runs on to padded(Wo), spilling
// harmless entries into the next row (computed after it, so overwritten) or into the table's
// slack. Every vector loop over a row then has a multiple of the SIMD width as trip count and no
// scalar remainder, which costs as much as the vector part for 28-pixel rows.
constexpr index_t kRowPad = 16;
inline index_t padded(index_t n) { return (n + kRowPad - 1) / kRowPad * kRowPad; }

// 1 when 0 <= v < n, else 0 (no branch).
NNK_INLINE std::int32_t in_range(std::int32_t v, std::int32_t n) {
  return static_cast<std::int32_t>(static_cast<std::uint32_t>(v) < static_cast<std::uint32_t>(n));
}

// Table entries [t0, t0 + count) for output row i, columns j0, j0 + 1, ...
//
// Sample positions are computed in R, the coordinate type: float for float32 images of at most
// kFloatCoordsMax pixels a side (8 SIMD lanes instead of 4 and no lane-width shuffles; position
// error <= 2^-24 * 512 ~ 3e-5 pixel, like torch's float32 grid; integer-valued maps stay exact),
// double otherwise. The row's start position is computed in double.
// The loop is written without ?: on computed values and with integer 0/1 masks: GCC
// (-ftrapping-math) does not if-convert floating-point operations it has threaded into branches,
// and the loop would stay scalar below AVX-512. floor() is a truncation of the positive ix + 4.
template <class T, class R, bool kFill>
NNK_INLINE void bilinear_row(const Table<T>& tb, index_t t0, const double* a, double i, index_t j0,
                             index_t H, index_t W, index_t count, T fill, bool border) {
  const R bx = static_cast<R>(a[1] * i + a[2]), by = static_cast<R>(a[4] * i + a[5]);
  const R ax = static_cast<R>(a[0]), ay = static_cast<R>(a[3]);
  const R dH = static_cast<R>(H), dW = static_cast<R>(W);
  // Clamp far-away positions to just outside the image (all 4 corners stay outside, and the
  // int32 conversions cannot overflow), or into the image for padding_mode='border'.
  const R lox = border ? R(0) : R(-2), hix = border ? dW - R(1) : dW + R(1);
  const R loy = border ? R(0) : R(-2), hiy = border ? dH - R(1) : dH + R(1);
  const R fr = static_cast<R>(fill);
  const auto w32 = static_cast<std::int32_t>(W), h32 = static_cast<std::int32_t>(H);
  std::int32_t *o0 = tb.o0 + t0, *o1 = tb.o1 + t0, *o2 = tb.o2 + t0, *o3 = tb.o3 + t0;
  T *w0 = tb.w0 + t0, *w1 = tb.w1 + t0, *w2 = tb.w2 + t0, *w3 = tb.w3 + t0, *fv = tb.fillv + t0;
#pragma omp simd
  for (index_t j = 0; j < count; ++j) {
    const R jd = static_cast<R>(static_cast<std::int32_t>(j0 + j));
    const R ix = clamp(ax * jd + bx, lox, hix);
    const R iy = clamp(ay * jd + by, loy, hiy);
    const std::int32_t xi = static_cast<std::int32_t>(ix + R(4)) - 4;
    const std::int32_t yi = static_cast<std::int32_t>(iy + R(4)) - 4;
    const R fx = ix - static_cast<R>(xi), fy = iy - static_cast<R>(yi);
    const std::int32_t ex0 = in_range(xi, w32), ex1 = in_range(xi + 1, w32);
    const std::int32_t ey0 = in_range(yi, h32), ey1 = in_range(yi + 1, h32);
    const R q00 = (R(1) - fx) * (R(1) - fy), q01 = fx * (R(1) - fy);
    const R q10 = (R(1) - fx) * fy, q11 = fx * fy;
    // e: the corner is inside the image; u: it is used (inside, with a nonzero weight)
    const std::int32_t e00 = ex0 & ey0, e01 = ex1 & ey0, e10 = ex0 & ey1, e11 = ex1 & ey1;
    const std::int32_t u00 = e00 & static_cast<std::int32_t>(q00 != R(0));
    const std::int32_t u01 = e01 & static_cast<std::int32_t>(q01 != R(0));
    const std::int32_t u10 = e10 & static_cast<std::int32_t>(q10 != R(0));
    const std::int32_t u11 = e11 & static_cast<std::int32_t>(q11 != R(0));
    const std::int32_t base = yi * w32 + xi;
    o0[j] = ((base + 1) & -u00) - 1;  // base, or -1 when unused
    o1[j] = ((base + 2) & -u01) - 1;
    o2[j] = ((base + w32 + 1) & -u10) - 1;
    o3[j] = ((base + w32 + 2) & -u11) - 1;
    w0[j] = static_cast<T>(q00 * static_cast<R>(u00));
    w1[j] = static_cast<T>(q01 * static_cast<R>(u01));
    w2[j] = static_cast<T>(q10 * static_cast<R>(u10));
    w3[j] = static_cast<T>(q11 * static_cast<R>(u11));
    if (kFill) {
      fv[j] = static_cast<T>(fr * (q00 * static_cast<R>(1 - e00) + q01 * static_cast<R>(1 - e01) +
                                   q10 * static_cast<R>(1 - e10) + q11 * static_cast<R>(1 - e11)));
    }
  }
}

template <class R>
NNK_INLINE void nearest_row(std::int32_t* off, const double* a, double i, index_t j0, index_t H, index_t W,
                            index_t count, bool border) {
  const R bx = static_cast<R>(a[1] * i + a[2]), by = static_cast<R>(a[4] * i + a[5]);
  const R ax = static_cast<R>(a[0]), ay = static_cast<R>(a[3]);
  const R dH = static_cast<R>(H), dW = static_cast<R>(W);
  const R lox = border ? R(0) : R(-1), hix = border ? dW - R(1) : dW;
  const R loy = border ? R(0) : R(-1), hiy = border ? dH - R(1) : dH;
  const auto w32 = static_cast<std::int32_t>(W), h32 = static_cast<std::int32_t>(H);
#pragma omp simd
  for (index_t j = 0; j < count; ++j) {
    const R jd = static_cast<R>(static_cast<std::int32_t>(j0 + j));
    // Round half to even, as torch's grid_sample(mode='nearest').
    const R rx = std::nearbyint(clamp(ax * jd + bx, lox, hix));
    const R ry = std::nearbyint(clamp(ay * jd + by, loy, hiy));
    const auto xi = static_cast<std::int32_t>(rx), yi = static_cast<std::int32_t>(ry);
    const std::int32_t inside = in_range(xi, w32) & in_range(yi, h32);
    off[j] = ((yi * w32 + xi + 1) & -inside) - 1;
  }
}

// One channel: out[t] = sum of w_k[t] * p[o_k[t]] over the used corners (+ fillv[t]).
template <class T, bool kFill>
NNK_INLINE void bilinear_gather(T* out, const T* p, const Table<T>& tb, index_t npix) {
  const std::int32_t *o0 = tb.o0, *o1 = tb.o1, *o2 = tb.o2, *o3 = tb.o3;
  const T *w0 = tb.w0, *w1 = tb.w1, *w2 = tb.w2, *w3 = tb.w3, *fv = tb.fillv;
#pragma omp simd
  for (index_t t = 0; t < npix; ++t) {
    // Unused corners (offset -1) load p[0] (always valid) and are then replaced by 0, so no
    // NaN/Inf there leaks in through a zero weight; the loads stay unconditional gathers.
    const std::int32_t a0 = o0[t], a1 = o1[t], a2 = o2[t], a3 = o3[t];
    const T r0 = p[a0 < 0 ? 0 : a0], r1 = p[a1 < 0 ? 0 : a1];
    const T r2 = p[a2 < 0 ? 0 : a2], r3 = p[a3 < 0 ? 0 : a3];
    const T v0 = a0 < 0 ? T(0) : r0, v1 = a1 < 0 ? T(0) : r1;
    const T v2 = a2 < 0 ? T(0) : r2, v3 = a3 < 0 ? T(0) : r3;
    const T acc = (w0[t] * v0 + w1[t] * v1) + (w2[t] * v2 + w3[t] * v3);
    out[t] = kFill ? acc + fv[t] : acc;
  }
}

template <class T>
NNK_INLINE void nearest_gather(T* out, const T* p, const std::int32_t* off, index_t npix, T fill) {
#pragma omp simd
  for (index_t t = 0; t < npix; ++t) {
    const std::int32_t o = off[t];
    const T v = p[o < 0 ? 0 : o];
    out[t] = o < 0 ? fill : v;
  }
}

// How output images are cut into work units: blocks of whole rows (up to kBlockPixels pixels),
// or, for rows wider than that, segments of one row.
struct Units {
  index_t rows;      // rows per unit
  index_t width;     // columns per unit (Wo, or a segment of a wide row)
  index_t segments;  // units per row (1 unless rows are wider than kBlockPixels)
  index_t per_image;
};

inline Units plan_units(index_t Ho, index_t Wo) {
  Units u;
  if (Wo > kBlockPixels) {
    u.rows = 1;
    u.width = kBlockPixels;
    u.segments = (Wo + kBlockPixels - 1) / kBlockPixels;
  } else {
    u.rows = std::max<index_t>(1, std::min(Ho, kBlockPixels / Wo));
    u.width = Wo;
    u.segments = 1;
  }
  u.per_image = (Ho + u.rows - 1) / u.rows * u.segments;
  return u;
}

// Units [u0, u1) over all channels. A unit is rows [r0, r1) x columns [j0, j1) of image n; when
// it has several rows they are whole rows (j0 = 0, j1 = Wo), so its outputs are contiguous.
template <class T>
NNK_INLINE void warp_units_body(T* y, const T* x, const double* A, index_t C, index_t H, index_t W,
                                index_t Ho, index_t Wo, T fill, bool nearest, bool border, Units plan,
                                index_t u0, index_t u1, Table<T> tb) {
  const index_t plane = H * W, oplane = Ho * Wo;
  const bool float_coords = sizeof(T) == 4 && std::max(std::max(H, W), std::max(Ho, Wo)) <= kFloatCoordsMax;
  for (index_t u = u0; u < u1; ++u) {
    const index_t n = u / plan.per_image;
    const index_t k = u % plan.per_image;
    const index_t r0 = k / plan.segments * plan.rows;
    const index_t r1 = std::min(Ho, r0 + plan.rows);
    const index_t j0 = k % plan.segments * plan.width;
    const index_t width = std::min(Wo - j0, plan.width);
    const index_t npix = (r1 - r0) * width;
    const double* a = A + n * 6;
    const T* xn = x + n * C * plane;
    T* yn = y + n * C * oplane + r0 * Wo + j0;
    if (nearest) {
      for (index_t i = r0; i < r1; ++i) {
        const double di = static_cast<double>(i);
        std::int32_t* off = tb.o0 + (i - r0) * width;
        if (float_coords) nearest_row<float>(off, a, di, j0, H, W, padded(width), border);
        else nearest_row<double>(off, a, di, j0, H, W, padded(width), border);
      }
      for (index_t c = 0; c < C; ++c) nearest_gather(yn + c * oplane, xn + c * plane, tb.o0, npix, fill);
      continue;
    }
    // Nothing comes from outside with border clamping, and a zero fill adds nothing.
    const bool with_fill = fill != T(0) && !border;
    for (index_t i = r0; i < r1; ++i) {
      const double di = static_cast<double>(i);
      const index_t t0 = (i - r0) * width, count = padded(width);
      if (float_coords && with_fill) bilinear_row<T, float, true>(tb, t0, a, di, j0, H, W, count, fill, border);
      else if (float_coords) bilinear_row<T, float, false>(tb, t0, a, di, j0, H, W, count, fill, border);
      else if (with_fill) bilinear_row<T, double, true>(tb, t0, a, di, j0, H, W, count, fill, border);
      else bilinear_row<T, double, false>(tb, t0, a, di, j0, H, W, count, fill, border);
    }
    for (index_t c = 0; c < C; ++c) {
      if (with_fill) {
        bilinear_gather<T, true>(yn + c * oplane, xn + c * plane, tb, npix);
      } else {
        bilinear_gather<T, false>(yn + c * oplane, xn + c * plane, tb, npix);
      }
    }
  }
}
NNK_MULTIVERSION(warp_units, warp_units_body)

}  // namespace

template <class T>
void affine_warp_forward(T* y, const T* x, const double* A, index_t N, index_t C, index_t H, index_t W,
                         index_t Ho, index_t Wo, T fill, bool nearest, bool border) {
  if (N <= 0 || C <= 0 || Ho <= 0 || Wo <= 0) return;
  NNK_ASSERT(H * W < (index_t{1} << 31));
  if (H <= 0 || W <= 0) {
    // An empty input: every sample is outside (and there is no border to clamp to).
    std::fill(y, y + N * C * Ho * Wo, fill);
    return;
  }
  const Units plan = plan_units(Ho, Wo);
  const index_t units = N * plan.per_image;
  const index_t len = padded(plan.rows * plan.width) + kRowPad;  // slack for the last row's padding
  parallel_for(
      units, std::max<index_t>(1, 16384 / (plan.rows * plan.width * C)),
      [&](index_t b, index_t e) {
        // This thread's table: 4 offset arrays, 4 weight arrays and the fill share, each of at
        // most ~kBlockPixels entries (about 80 KB in all, reused across calls).
        auto* o = scratch<std::int32_t>(kScratch0, 4 * len);
        T* w = scratch<T>(kScratch1, 5 * len);
        Table<T> tb{o, o + len, o + 2 * len, o + 3 * len, w, w + len, w + 2 * len, w + 3 * len, w + 4 * len};
        warp_units(y, x, A, C, H, W, Ho, Wo, fill, nearest, border, plan, b, e, tb);
      },
      1);
}

template void affine_warp_forward<float>(float*, const float*, const double*, index_t, index_t, index_t,
                                         index_t, index_t, index_t, float, bool, bool);
template void affine_warp_forward<double>(double*, const double*, const double*, index_t, index_t,
                                          index_t, index_t, index_t, index_t, double, bool, bool);

}  // namespace nnkern
