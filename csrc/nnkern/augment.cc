#include "nnkern/augment.h"

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "nnkern/parallel.h"
#include "nnkern/simd.h"
#include "nnkern/workspace.h"

namespace nnkern {
namespace {

// A row of output pixels resolved to input offsets and weights, shared by all channels.
// A corner outside the image, or with weight exactly 0, has offset -1 and is not read (so
// flips, crops and integer shifts copy pixels exactly, whatever their neighbours hold); the
// weight of outside corners goes to `fillw` (the fill value's share).
template <class T>
struct RowTable {
  std::int32_t* off[4];
  T* w[4];
  T* fillv;  // fill * (weight of corners outside the image)
};

template <class T>
NNK_INLINE void bilinear_table(RowTable<T> tb, const double* a, double i, index_t H, index_t W,
                               index_t Wo, T fill, bool border) {
  const double bx = a[1] * i + a[2], by = a[4] * i + a[5];
  const double dH = static_cast<double>(H), dW = static_cast<double>(W);
#pragma omp simd
  for (index_t j = 0; j < Wo; ++j) {
    double ix = a[0] * static_cast<double>(j) + bx;
    double iy = a[3] * static_cast<double>(j) + by;
    if (border) {
      ix = std::min(std::max(ix, 0.0), dW - 1.0);
      iy = std::min(std::max(iy, 0.0), dH - 1.0);
    }
    // (-1, W) x (-1, H) is where some corner is inside; NaN coordinates fail the test too.
    const bool inside = ix > -1.0 && ix < dW && iy > -1.0 && iy < dH;
    const double cx = inside ? ix : -1.0, cy = inside ? iy : -1.0;
    const double x0 = std::floor(cx), y0 = std::floor(cy);
    const double fx = cx - x0, fy = cy - y0;
    const double wgt[4] = {(1.0 - fx) * (1.0 - fy), fx * (1.0 - fy), (1.0 - fx) * fy, fx * fy};
    const bool vx0 = x0 >= 0.0, vx1 = x0 + 1.0 < dW, vy0 = y0 >= 0.0, vy1 = y0 + 1.0 < dH;
    const bool valid[4] = {vx0 && vy0, vx1 && vy0, vx0 && vy1, vx1 && vy1};
    const std::int32_t base = static_cast<std::int32_t>(y0) * static_cast<std::int32_t>(W) +
                              static_cast<std::int32_t>(x0);
    const std::int32_t delta[4] = {0, 1, static_cast<std::int32_t>(W), static_cast<std::int32_t>(W) + 1};
    double outside = inside ? 0.0 : 1.0;
    for (int k = 0; k < 4; ++k) {
      const bool use = inside && valid[k] && wgt[k] != 0.0;
      tb.off[k][j] = use ? base + delta[k] : -1;
      tb.w[k][j] = use ? static_cast<T>(wgt[k]) : T(0);
      outside += (inside && !valid[k]) ? wgt[k] : 0.0;
    }
    tb.fillv[j] = static_cast<T>(static_cast<double>(fill) * outside);
  }
}

template <class T>
NNK_INLINE void nearest_table(std::int32_t* off, const double* a, double i, index_t H, index_t W,
                              index_t Wo, bool border) {
  const double bx = a[1] * i + a[2], by = a[4] * i + a[5];
  const double dH = static_cast<double>(H), dW = static_cast<double>(W);
#pragma omp simd
  for (index_t j = 0; j < Wo; ++j) {
    // Round half to even, as torch's grid_sample(mode='nearest').
    double ix = a[0] * static_cast<double>(j) + bx;
    double iy = a[3] * static_cast<double>(j) + by;
    if (border) {
      ix = std::min(std::max(ix, 0.0), dW - 1.0);
      iy = std::min(std::max(iy, 0.0), dH - 1.0);
    }
    const double rx = std::nearbyint(ix);
    const double ry = std::nearbyint(iy);
    const bool inside = rx >= 0.0 && rx < dW && ry >= 0.0 && ry < dH;
    off[j] = inside ? static_cast<std::int32_t>(ry) * static_cast<std::int32_t>(W) + static_cast<std::int32_t>(rx)
                    : -1;
  }
}

// Output rows [r0, r1) (r = n * Ho + i) for all channels.
template <class T>
NNK_INLINE void warp_rows_body(T* y, const T* x, const double* A, index_t C, index_t H, index_t W,
                               index_t Ho, index_t Wo, T fill, bool nearest, bool border, index_t r0,
                               index_t r1, RowTable<T> tb) {
  const index_t plane = H * W, oplane = Ho * Wo;
  for (index_t r = r0; r < r1; ++r) {
    const index_t n = r / Ho, i = r % Ho;
    const double* a = A + n * 6;
    const T* xn = x + n * C * plane;
    T* yr = y + n * C * oplane + i * Wo;
    if (nearest) {
      nearest_table<T>(tb.off[0], a, static_cast<double>(i), H, W, Wo, border);
      const std::int32_t* o = tb.off[0];
      for (index_t c = 0; c < C; ++c) {
        const T* p = xn + c * plane;
        T* out = yr + c * oplane;
#pragma omp simd
        for (index_t j = 0; j < Wo; ++j) out[j] = o[j] >= 0 ? p[o[j]] : fill;
      }
      continue;
    }
    bilinear_table<T>(tb, a, static_cast<double>(i), H, W, Wo, fill, border);
    const std::int32_t *o0 = tb.off[0], *o1 = tb.off[1], *o2 = tb.off[2], *o3 = tb.off[3];
    const T *w0 = tb.w[0], *w1 = tb.w[1], *w2 = tb.w[2], *w3 = tb.w[3], *fv = tb.fillv;
    for (index_t c = 0; c < C; ++c) {
      const T* p = xn + c * plane;
      T* out = yr + c * oplane;
#pragma omp simd
      for (index_t j = 0; j < Wo; ++j) {
        const T v0 = o0[j] >= 0 ? p[o0[j]] : T(0);
        const T v1 = o1[j] >= 0 ? p[o1[j]] : T(0);
        const T v2 = o2[j] >= 0 ? p[o2[j]] : T(0);
        const T v3 = o3[j] >= 0 ? p[o3[j]] : T(0);
        out[j] = ((w0[j] * v0 + w1[j] * v1) + (w2[j] * v2 + w3[j] * v3)) + fv[j];
      }
    }
  }
}
NNK_MULTIVERSION(warp_rows, warp_rows_body)

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
  const index_t rows = N * Ho;
  parallel_for(
      rows, std::max<index_t>(1, 8192 / (Wo * C)),
      [&](index_t b, index_t e) {
        // Per-thread table: 4 offset arrays, 4 weight arrays and the fill share, Wo each.
        const index_t wo_pad = (Wo + 15) / 16 * 16;
        auto* offs = scratch<std::int32_t>(kScratch0, 4 * wo_pad);
        T* ws = scratch<T>(kScratch1, 5 * wo_pad);
        RowTable<T> tb;
        for (int k = 0; k < 4; ++k) {
          tb.off[k] = offs + k * wo_pad;
          tb.w[k] = ws + k * wo_pad;
        }
        tb.fillv = ws + 4 * wo_pad;
        warp_rows(y, x, A, C, H, W, Ho, Wo, fill, nearest, border, b, e, tb);
      },
      1);
}

template void affine_warp_forward<float>(float*, const float*, const double*, index_t, index_t, index_t,
                                         index_t, index_t, index_t, float, bool, bool);
template void affine_warp_forward<double>(double*, const double*, const double*, index_t, index_t,
                                          index_t, index_t, index_t, index_t, double, bool, bool);

}  // namespace nnkern
