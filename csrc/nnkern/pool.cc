// Pooling kernels (see pool.h for the semantics).
//
// How the fast path works. NCHW planes are contiguous, so each thread takes whole planes (the
// backward passes then scatter without atomics, and results do not depend on the thread count).
// Within a plane:
//   * Phase planes (space-to-depth). With stride (sH, sW), padded input element (r, c) goes to
//     phase plane (r mod sH, c mod sW) at (r div sH, c div sW). Every kernel tap (kh, kw) then
//     reads one phase plane at a fixed offset with unit stride along both output axes, and padding,
//     ceil_mode overhang and dilation become a matter of which phase and offset. Building the phase
//     planes (only the phases some tap uses; padding filled with -inf for max, 0 for avg) is one
//     L1-resident pass over the plane. Stride 1 without padding reads x in place.
//   * Flattened rows. Phase planes have rows of Wq = OW + (largest tap column offset) elements; the
//     output is computed at flat position P = oh*Wq + ow, so tap t reads plane_t[P + off_t] and a
//     whole plane is ONE long unit-stride vector loop (no short rows, no strided or gathered loads,
//     no edge cases); the few columns ow >= OW are computed and dropped.
//   * 2x2 and 3x3 windows have compile-time taps (the running max / sum stays in registers);
//     other windows run one vector pass per tap over the flattened output.
//   * Max tracks the winning tap's offset (kh*dH*W + kw*dW, int32 while it fits) and turns it into
//     torch's flat index h*W + w when the output row is stored. A -inf padding element can only win
//     a window whose real elements are all -inf; such outputs (y == -inf) are recomputed with
//     torch's exact scalar loop, so indices always point at real elements with torch's tie rule.
//   * Backward: max scatters dy through the indices into a zeroed input-gradient plane (serially
//     within the plane: overlapping windows may send several gradients to one element); avg adds
//     dy/divisor into gradient phase planes, one vector pass per tap, then interleaves them back.
#include "nnkern/pool.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "nnkern/parallel.h"
#include "nnkern/simd.h"
#include "nnkern/workspace.h"

namespace nnkern {

// ---------------------------------------------------------------------------------------------
// Geometry

namespace {

inline index_t floor_div(index_t a, index_t b) {
  const index_t q = a / b;
  return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

inline index_t ceil_div_pos(index_t a, index_t b) { return (a + b - 1) / b; }

}  // namespace

index_t pool_output_size(index_t in, index_t k, index_t s, index_t p, index_t d, bool ceil_mode) {
  const index_t span = in + 2 * p - d * (k - 1) - 1;
  index_t out = floor_div(span + (ceil_mode ? s - 1 : 0), s) + 1;
  // ceil_mode: the last window must start inside the input or the left padding.
  if (ceil_mode && (out - 1) * s >= in + p) --out;
  return out;
}

index_t pool_first_empty_window(index_t in, index_t out, index_t k, index_t s, index_t p, index_t d) {
  for (index_t i = 0; i < out; ++i) {
    const index_t start = i * s - p;
    const index_t first = start < 0 ? ceil_div_pos(-start, d) : 0;  // first tap at or after 0
    if (first >= k || start + first * d >= in) return i;
  }
  return -1;
}

namespace {

// Planes per thread: at least this many input+output elements, so a parallel region (~1-5 us to
// start) is only entered when each thread has tens of microseconds of work.
constexpr index_t kMinElementsPerThread = 32768;

template <class F>
void for_plane_ranges(index_t planes, index_t elements_per_plane, F&& fn) {
  const index_t min_planes = std::max<index_t>(1, kMinElementsPerThread / std::max<index_t>(1, elements_per_plane));
  parallel_for(planes, min_planes, fn, /*align=*/1);
}

template <class T>
constexpr T neg_inf() {
  return -std::numeric_limits<T>::infinity();
}

// Everything about a fixed-window pooling call that does not depend on the plane: phase planes,
// taps, flattened output. Built once per call by the calling thread, read by all threads.
struct PoolPlan {
  index_t Hq = 0, Wq = 0;  // phase plane rows / columns
  index_t L = 0;           // flattened outputs computed: (OH-1)*Wq + OW
  bool direct = false;     // stride 1 and no padding or overhang: read the input plane in place
  bool padded = false;     // some window reaches outside the input (padding or ceil_mode overhang)
  index_t nh = 0, nw = 0;  // phases in use along H / W
  index_t row_need = 0;    // padded columns [0, row_need) the column phases read
  std::vector<index_t> hphase, wphase;  // their values (r mod sH, c mod sW)
  std::vector<index_t> hslot, wslot;    // phase value -> slot (or -1), for values < map length
  std::vector<index_t> tap_src;         // per tap: element offset of its data in the phase planes
  std::vector<index_t> tap_index;       // per tap: kh*dH*W + kw*dW (flat input index offset)
  index_t plane_elems() const { return Hq * Wq; }
  index_t phase_elems() const { return nh * nw * Hq * Wq; }
};

PoolPlan make_plan(const Pool2dShape& s) {
  PoolPlan pl;
  const index_t Hp = (s.OH - 1) * s.sH + (s.kH - 1) * s.dH + 1;  // padded extent the windows touch
  const index_t Wp = (s.OW - 1) * s.sW + (s.kW - 1) * s.dW + 1;
  pl.padded = s.pH > 0 || s.pW > 0 || Hp > s.H || Wp > s.W;
  pl.direct = !pl.padded && s.sH == 1 && s.sW == 1;
  if (pl.direct) {
    pl.Hq = s.H;
    pl.Wq = s.W;
  } else {
    pl.Hq = s.OH + (s.kH - 1) * s.dH / s.sH;
    pl.Wq = s.OW + (s.kW - 1) * s.dW / s.sW;
  }
  pl.L = (s.OH - 1) * pl.Wq + s.OW;
  // Phases in use, in order of first use; maps cover every phase value an input row/column has.
  auto phases = [](index_t k, index_t d, index_t st, index_t map_len, std::vector<index_t>& vals,
                   std::vector<index_t>& slot, std::vector<index_t>& tap_slot) {
    slot.assign(static_cast<size_t>(std::min(st, map_len)), -1);
    tap_slot.resize(static_cast<size_t>(k));
    for (index_t t = 0; t < k; ++t) {
      const index_t q = t * d % st;
      index_t found = -1;
      for (size_t i = 0; i < vals.size(); ++i) {
        if (vals[i] == q) found = static_cast<index_t>(i);
      }
      if (found < 0) {
        found = static_cast<index_t>(vals.size());
        vals.push_back(q);
        if (q < static_cast<index_t>(slot.size())) slot[static_cast<size_t>(q)] = found;
      }
      tap_slot[static_cast<size_t>(t)] = found;
    }
  };
  std::vector<index_t> kh_slot, kw_slot;
  if (pl.direct) {
    pl.hphase = {0};
    pl.wphase = {0};
    kh_slot.assign(static_cast<size_t>(s.kH), 0);
    kw_slot.assign(static_cast<size_t>(s.kW), 0);
  } else {
    phases(s.kH, s.dH, s.sH, s.H + s.pH, pl.hphase, pl.hslot, kh_slot);
    phases(s.kW, s.dW, s.sW, s.W + s.pW, pl.wphase, pl.wslot, kw_slot);
  }
  pl.nh = static_cast<index_t>(pl.hphase.size());
  pl.nw = static_cast<index_t>(pl.wphase.size());
  pl.row_need = (pl.Wq - 1) * s.sW + *std::max_element(pl.wphase.begin(), pl.wphase.end()) + 1;
  for (index_t kh = 0; kh < s.kH; ++kh) {
    for (index_t kw = 0; kw < s.kW; ++kw) {
      const index_t plane = kh_slot[static_cast<size_t>(kh)] * pl.nw + kw_slot[static_cast<size_t>(kw)];
      const index_t off = (kh * s.dH / s.sH) * pl.Wq + kw * s.dW / s.sW;
      pl.tap_src.push_back(plane * pl.plane_elems() + off);
      pl.tap_index.push_back(kh * s.dH * s.W + kw * s.dW);
    }
  }
  return pl;
}

// Window sizes with compile-time taps (any stride, padding and dilation).
inline int fixed_taps(const Pool2dShape& s) {
  if (s.kH == 2 && s.kW == 2) return 2;
  if (s.kH == 3 && s.kW == 3) return 3;
  return 0;
}

// ---------------------------------------------------------------------------------------------
// Phase planes (inlined into the ISA-specific bodies)

// One padded input row (input row `src`, or all `fill` when src is null) split into the used
// column phases: dst_b[j] = padded[j*sW + wphase[b]] for j < Wq, where padded[c] = src[c - pW].
// tmp: pl.row_need scratch for rows whose split would read outside [0, W).
template <int SW, class T>
NNK_INLINE void split_row(T* NNK_RESTRICT dst0, index_t dst_stride, const T* NNK_RESTRICT src, const Pool2dShape& s,
                          const PoolPlan& pl, T* NNK_RESTRICT tmp, T fill) {
  const index_t sw = SW > 0 ? SW : s.sW;
  const index_t Wq = pl.Wq;
  if (src == nullptr) {
    for (index_t b = 0; b < pl.nw; ++b) {
      T* NNK_RESTRICT d = dst0 + b * dst_stride;
      for (index_t j = 0; j < Wq; ++j) d[j] = fill;
    }
    return;
  }
  if (sw == 1) {  // one phase: fill, copy, fill
    T* NNK_RESTRICT d = dst0;
    const index_t left = std::min(s.pW, Wq);
    const index_t cols = std::max<index_t>(0, std::min(s.W, Wq - s.pW));
    for (index_t j = 0; j < left; ++j) d[j] = fill;
    for (index_t j = 0; j < cols; ++j) d[left + j] = src[j];
    for (index_t j = left + cols; j < Wq; ++j) d[j] = fill;
    return;
  }
  // Padded row as a pointer p with p[c] = padded[c] for c < row_need: the input row itself when
  // that stays inside it, else a filled copy in tmp.
  const index_t need = pl.row_need;
  const T* row;
  if (s.pW == 0 && need <= s.W) {
    row = src;
  } else {
    const index_t left = std::min(s.pW, need);
    const index_t cols = std::max<index_t>(0, std::min(s.W, need - s.pW));
    for (index_t c = 0; c < left; ++c) tmp[c] = fill;
    for (index_t c = 0; c < cols; ++c) tmp[left + c] = src[c];
    for (index_t c = left + cols; c < need; ++c) tmp[c] = fill;
    row = tmp;
  }
  if (SW == 2 && pl.nw == 2) {
    // Both column phases: a full even/odd deinterleave (no gaps, so it vectorises cleanly).
    T* NNK_RESTRICT d0 = dst0 + (pl.wphase[0] == 0 ? 0 : dst_stride);
    T* NNK_RESTRICT d1 = dst0 + (pl.wphase[0] == 0 ? dst_stride : 0);
    for (index_t j = 0; j < Wq; ++j) {
      d0[j] = row[2 * j];
      d1[j] = row[2 * j + 1];
    }
    return;
  }
  for (index_t b = 0; b < pl.nw; ++b) {
    T* NNK_RESTRICT d = dst0 + b * dst_stride;
    const T* NNK_RESTRICT r = row + pl.wphase[static_cast<size_t>(b)];
    for (index_t j = 0; j < Wq; ++j) d[j] = r[j * sw];
  }
}

// Phase planes of one input plane x [H,W] into Q [nh*nw][Hq][Wq].
template <int SW, class T>
NNK_INLINE void build_phases(T* NNK_RESTRICT Q, const T* NNK_RESTRICT x, const Pool2dShape& s, const PoolPlan& pl,
                             T* NNK_RESTRICT tmp, T fill) {
  const index_t pe = pl.plane_elems();
  for (index_t a = 0; a < pl.nh; ++a) {
    const index_t qh = pl.hphase[static_cast<size_t>(a)];
    for (index_t i = 0; i < pl.Hq; ++i) {
      const index_t h = i * s.sH + qh - s.pH;
      const T* src = (h >= 0 && h < s.H) ? x + h * s.W : nullptr;
      split_row<SW>(Q + a * pl.nw * pe + i * pl.Wq, pe, src, s, pl, tmp, fill);
    }
  }
}

// Inverse of build_phases for gradients: dx [H,W] from the phase planes G (elements no tap
// reaches are 0).
template <int SW, class T>
NNK_INLINE void merge_phases(T* NNK_RESTRICT dx, const T* NNK_RESTRICT G, const Pool2dShape& s, const PoolPlan& pl) {
  const index_t pe = pl.plane_elems();
  const index_t sw = SW > 0 ? SW : s.sW;
  for (index_t h = 0; h < s.H; ++h) {
    T* NNK_RESTRICT out = dx + h * s.W;
    const index_t r = h + s.pH;
    const index_t qh = r % s.sH, i = r / s.sH;
    const index_t a = qh < static_cast<index_t>(pl.hslot.size()) ? pl.hslot[static_cast<size_t>(qh)] : -1;
    if (a < 0 || i >= pl.Hq) {
      for (index_t w = 0; w < s.W; ++w) out[w] = 0;
      continue;
    }
    const T* NNK_RESTRICT grow = G + a * pl.nw * pe + i * pl.Wq;
    if (sw == 1) {
      // padded column c = w + pW is phase-plane column c
      const index_t cols = std::max<index_t>(0, std::min(s.W, pl.Wq - s.pW));
      for (index_t w = 0; w < cols; ++w) out[w] = grow[w + s.pW];
      for (index_t w = cols; w < s.W; ++w) out[w] = 0;
      continue;
    }
    if (SW == 2 && pl.nw == 2) {
      // Interleave the two phase rows: padded columns 2j, 2j+1 are input columns 2j-pW, 2j+1-pW.
      const T* NNK_RESTRICT g0 = grow + (pl.wphase[0] == 0 ? 0 : pe);
      const T* NNK_RESTRICT g1 = grow + (pl.wphase[0] == 0 ? pe : 0);
      const index_t pw = s.pW;
      // j range where both columns are inside the input: 2j - pW >= 0 and 2j + 1 - pW < W.
      const index_t jlo = (pw + 1) / 2;
      const index_t jhi = std::max(jlo, std::min(pl.Wq, (s.W + pw) / 2));
      for (index_t w = 0; w < s.W; ++w) out[w] = 0;
      for (index_t j = jlo; j < jhi; ++j) {
        out[2 * j - pw] = g0[j];
        out[2 * j + 1 - pw] = g1[j];
      }
      for (index_t j = 0; j < pl.Wq; ++j) {  // edges
        if (j >= jlo && j < jhi) continue;
        const index_t w0 = 2 * j - pw, w1 = 2 * j + 1 - pw;
        if (w0 >= 0 && w0 < s.W) out[w0] = g0[j];
        if (w1 >= 0 && w1 < s.W) out[w1] = g1[j];
      }
      continue;
    }
    for (index_t w = 0; w < s.W; ++w) {
      const index_t c = w + s.pW;
      const index_t qw = c % sw, j = c / sw;
      const index_t b = qw < static_cast<index_t>(pl.wslot.size()) ? pl.wslot[static_cast<size_t>(qw)] : -1;
      out[w] = (b >= 0 && j < pl.Wq) ? grow[b * pe + j] : T(0);
    }
  }
}

// torch's scalar max loop for one window of one plane.
template <class T>
NNK_INLINE void max_window_exact(T* y, index_t* idx, const T* NNK_RESTRICT x, const Pool2dShape& s,
                                 index_t oh, index_t ow) {
  index_t h0 = oh * s.sH - s.pH;
  index_t w0 = ow * s.sW - s.pW;
  const index_t h1 = std::min(h0 + (s.kH - 1) * s.dH + 1, s.H);
  const index_t w1 = std::min(w0 + (s.kW - 1) * s.dW + 1, s.W);
  if (h0 < 0) h0 += ceil_div_pos(-h0, s.dH) * s.dH;
  if (w0 < 0) w0 += ceil_div_pos(-w0, s.dW) * s.dW;
  T best = neg_inf<T>();
  index_t besti = h0 * s.W + w0;
  for (index_t h = h0; h < h1; h += s.dH) {
    for (index_t w = w0; w < w1; w += s.dW) {
      const T v = x[h * s.W + w];
      if (v > best || v != v) {
        best = v;
        besti = h * s.W + w;
      }
    }
  }
  *y = best;
  *idx = besti;
}

// ---------------------------------------------------------------------------------------------
// Max forward

// Flattened outputs P in [0, L): vals[P] = window max, toff[P] = winning tap's index offset.
template <int KH, int KW, class T, class I>
NNK_INLINE void max_flat_fixed(T* NNK_RESTRICT vals, I* NNK_RESTRICT toff, const T* src, const PoolPlan& pl) {
  constexpr int K = KH * KW;
  const T* tp[K];
  I to[K];
  for (int t = 0; t < K; ++t) {
    tp[t] = src + pl.tap_src[static_cast<size_t>(t)];
    to[t] = static_cast<I>(pl.tap_index[static_cast<size_t>(t)]);
  }
  const index_t L = pl.L;
#pragma GCC ivdep
  for (index_t P = 0; P < L; ++P) {
    T best = tp[0][P];
    I besti = to[0];
#pragma GCC unroll 9
    for (int t = 1; t < K; ++t) {
      const T v = tp[t][P];
      const bool take = (v > best) | (v != v);  // torch: first max wins, NaN always replaces
      best = take ? v : best;
      besti = take ? to[t] : besti;
    }
    vals[P] = best;
    toff[P] = besti;
  }
}

template <class T, class I>
NNK_INLINE void max_flat_generic(T* NNK_RESTRICT vals, I* NNK_RESTRICT toff, const T* src, const PoolPlan& pl) {
  const index_t L = pl.L;
  const index_t K = static_cast<index_t>(pl.tap_src.size());
  {
    const T* NNK_RESTRICT t0 = src + pl.tap_src[0];
    const I o0 = static_cast<I>(pl.tap_index[0]);
    for (index_t P = 0; P < L; ++P) {
      vals[P] = t0[P];
      toff[P] = o0;
    }
  }
  for (index_t t = 1; t < K; ++t) {
    const T* NNK_RESTRICT tt = src + pl.tap_src[static_cast<size_t>(t)];
    const I ot = static_cast<I>(pl.tap_index[static_cast<size_t>(t)]);
    for (index_t P = 0; P < L; ++P) {
      const T v = tt[P];
      const T b = vals[P];
      const bool take = (v > b) | (v != v);
      vals[P] = take ? v : b;
      toff[P] = take ? ot : toff[P];
    }
  }
}

// Planes [p0, p1). Scratch: Q (phase planes), vals/toff (L each), tmp (sW*Wq).
template <class T, class I>
NNK_INLINE void max_pool_planes(T* y, index_t* idx, const T* x, const Pool2dShape* sp, const PoolPlan* plp,
                                index_t p0, index_t p1, T* Q, T* vals, I* toff, T* tmp, int taps) {
  const Pool2dShape& s = *sp;
  const PoolPlan& pl = *plp;
  const index_t in_plane = s.H * s.W, out_plane = s.OH * s.OW;
  for (index_t p = p0; p < p1; ++p) {
    const T* xpl = x + p * in_plane;
    T* NNK_RESTRICT ypl = y + p * out_plane;
    index_t* NNK_RESTRICT ipl = idx + p * out_plane;
    const T* src = xpl;
    if (!pl.direct) {
      if (s.sW == 1) build_phases<1>(Q, xpl, s, pl, tmp, neg_inf<T>());
      else if (s.sW == 2) build_phases<2>(Q, xpl, s, pl, tmp, neg_inf<T>());
      else build_phases<0>(Q, xpl, s, pl, tmp, neg_inf<T>());
      src = Q;
    }
    if (taps == 2) max_flat_fixed<2, 2>(vals, toff, src, pl);
    else if (taps == 3) max_flat_fixed<3, 3>(vals, toff, src, pl);
    else max_flat_generic(vals, toff, src, pl);
    // Store rows: flat index = (oh*sH - pH)*W + ow*sW - pW + tap offset. (Sizes are copied to
    // locals: stores through the int64 index pointer could otherwise alias the shape struct.)
    const index_t OH = s.OH, OW = s.OW, Wq = pl.Wq, W = s.W, sH = s.sH, sW = s.sW, pH = s.pH, pW = s.pW;
    for (index_t oh = 0; oh < OH; ++oh) {
      const T* NNK_RESTRICT vr = vals + oh * Wq;
      const I* NNK_RESTRICT tr = toff + oh * Wq;
      T* NNK_RESTRICT yr = ypl + oh * OW;
      index_t* NNK_RESTRICT ir = ipl + oh * OW;
      const index_t base = (oh * sH - pH) * W - pW;
      for (index_t ow = 0; ow < OW; ++ow) {
        yr[ow] = vr[ow];
        ir[ow] = base + ow * sW + static_cast<index_t>(tr[ow]);
      }
    }
    if (pl.padded) {
      // A padding element can only have won where the result is -inf: redo those windows exactly.
      int any = 0;
      for (index_t o = 0; o < out_plane; ++o) any |= static_cast<int>(ypl[o] == neg_inf<T>());
      if (any) {
        for (index_t oh = 0; oh < OH; ++oh) {
          for (index_t ow = 0; ow < OW; ++ow) {
            const index_t o = oh * OW + ow;
            if (ypl[o] == neg_inf<T>()) max_window_exact(ypl + o, ipl + o, xpl, s, oh, ow);
          }
        }
      }
    }
  }
}
NNK_MULTIVERSION(max_pool_planes_mv, max_pool_planes)

// ---------------------------------------------------------------------------------------------
// Avg forward

template <int KH, int KW, class T>
NNK_INLINE void sum_flat_fixed(T* NNK_RESTRICT sums, const T* src, const PoolPlan& pl) {
  constexpr int K = KH * KW;
  const T* tp[K];
  for (int t = 0; t < K; ++t) tp[t] = src + pl.tap_src[static_cast<size_t>(t)];
  const index_t L = pl.L;
#pragma GCC ivdep
  for (index_t P = 0; P < L; ++P) {
    T sum = tp[0][P];  // torch sums in scan order from 0; 0 + first == first
#pragma GCC unroll 9
    for (int t = 1; t < K; ++t) sum += tp[t][P];
    sums[P] = sum;
  }
}

template <class T>
NNK_INLINE void sum_flat_generic(T* NNK_RESTRICT sums, const T* src, const PoolPlan& pl) {
  const index_t L = pl.L;
  const index_t K = static_cast<index_t>(pl.tap_src.size());
  {
    const T* NNK_RESTRICT t0 = src + pl.tap_src[0];
    for (index_t P = 0; P < L; ++P) sums[P] = t0[P];
  }
  for (index_t t = 1; t < K; ++t) {
    const T* NNK_RESTRICT tt = src + pl.tap_src[static_cast<size_t>(t)];
    for (index_t P = 0; P < L; ++P) sums[P] += tt[P];
  }
}

// Planes [p0, p1). inv: 1/divisor per output position (OH*OW). Scratch: Q, sums (L), tmp.
template <class T>
NNK_INLINE void avg_pool_planes(T* y, const T* x, const Pool2dShape* sp, const PoolPlan* plp, const T* inv,
                                index_t p0, index_t p1, T* Q, T* sums, T* tmp, int taps) {
  const Pool2dShape& s = *sp;
  const PoolPlan& pl = *plp;
  const index_t in_plane = s.H * s.W, out_plane = s.OH * s.OW;
  for (index_t p = p0; p < p1; ++p) {
    const T* xpl = x + p * in_plane;
    T* NNK_RESTRICT ypl = y + p * out_plane;
    const T* src = xpl;
    if (!pl.direct) {
      if (s.sW == 1) build_phases<1>(Q, xpl, s, pl, tmp, T(0));
      else if (s.sW == 2) build_phases<2>(Q, xpl, s, pl, tmp, T(0));
      else build_phases<0>(Q, xpl, s, pl, tmp, T(0));
      src = Q;
    }
    if (taps == 2) sum_flat_fixed<2, 2>(sums, src, pl);
    else if (taps == 3) sum_flat_fixed<3, 3>(sums, src, pl);
    else sum_flat_generic(sums, src, pl);
    const index_t OH = s.OH, OW = s.OW, Wq = pl.Wq;
    for (index_t oh = 0; oh < OH; ++oh) {
      const T* NNK_RESTRICT sr = sums + oh * Wq;
      const T* NNK_RESTRICT ir = inv + oh * OW;
      T* NNK_RESTRICT yr = ypl + oh * OW;
      for (index_t ow = 0; ow < OW; ++ow) yr[ow] = sr[ow] * ir[ow];
    }
  }
}
NNK_MULTIVERSION(avg_pool_planes_mv, avg_pool_planes)

// 1/divisor for every output position (the same for every plane), torch's rules.
template <class T>
void avg_inverse_divisors(T* inv, const Pool2dShape& s, bool count_include_pad, index_t divisor_override) {
  for (index_t oh = 0; oh < s.OH; ++oh) {
    const index_t h0 = oh * s.sH - s.pH;
    const index_t h1 = std::min(h0 + s.kH, s.H + s.pH);
    const index_t hpad = h1 - h0;
    const index_t hin = std::min(h1, s.H) - std::max<index_t>(h0, 0);
    for (index_t ow = 0; ow < s.OW; ++ow) {
      const index_t w0 = ow * s.sW - s.pW;
      const index_t w1 = std::min(w0 + s.kW, s.W + s.pW);
      const index_t wpad = w1 - w0;
      const index_t win = std::min(w1, s.W) - std::max<index_t>(w0, 0);
      const index_t div = divisor_override != 0 ? divisor_override : count_include_pad ? hpad * wpad : hin * win;
      inv[oh * s.OW + ow] = T(1) / static_cast<T>(div);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Avg backward

// Planes [p0, p1). Scratch: G (phase planes of the gradient), g (L).
template <class T>
NNK_INLINE void avg_backward_planes(T* dx, const T* dy, const Pool2dShape* sp, const PoolPlan* plp, const T* inv,
                                    index_t p0, index_t p1, T* G, T* g) {
  const Pool2dShape& s = *sp;
  const PoolPlan& pl = *plp;
  const index_t in_plane = s.H * s.W, out_plane = s.OH * s.OW;
  const index_t K = static_cast<index_t>(pl.tap_src.size());
  for (index_t p = p0; p < p1; ++p) {
    T* dxpl = dx + p * in_plane;
    const T* NNK_RESTRICT dypl = dy + p * out_plane;
    // g: dy / divisor in the flattened layout, 0 in the dropped columns ow >= OW (they overlap
    // real positions of the next row in the phase planes).
    const index_t OH = s.OH, OW = s.OW, Wq = pl.Wq, L = pl.L;
    for (index_t oh = 0; oh < OH; ++oh) {
      T* NNK_RESTRICT gr = g + oh * Wq;
      const T* NNK_RESTRICT dr = dypl + oh * OW;
      const T* NNK_RESTRICT ir = inv + oh * OW;
      for (index_t ow = 0; ow < OW; ++ow) gr[ow] = dr[ow] * ir[ow];
      if (oh + 1 < OH) {
        for (index_t ow = OW; ow < Wq; ++ow) gr[ow] = 0;
      }
    }
    T* acc = pl.direct ? dxpl : G;
    const index_t n = pl.direct ? in_plane : pl.phase_elems();
    for (index_t i = 0; i < n; ++i) acc[i] = 0;
    // One pass per tap; within a tap, distinct outputs reach distinct elements.
    for (index_t t = 0; t < K; ++t) {
      T* NNK_RESTRICT at = acc + pl.tap_src[static_cast<size_t>(t)];
      const T* NNK_RESTRICT gg = g;
      for (index_t P = 0; P < L; ++P) at[P] += gg[P];
    }
    if (!pl.direct) {
      if (s.sW == 1) merge_phases<1>(dxpl, G, s, pl);
      else if (s.sW == 2) merge_phases<2>(dxpl, G, s, pl);
      else merge_phases<0>(dxpl, G, s, pl);
    }
  }
}
NNK_MULTIVERSION(avg_backward_planes_mv, avg_backward_planes)

// ---------------------------------------------------------------------------------------------
// Global (whole-plane) reductions: 16 fixed lanes, combined in a fixed order, so the result does
// not depend on the SIMD level or the thread count.

constexpr int kLanes = 16;

template <class T>
NNK_INLINE void max_fold(T& best, index_t& besti, T v, index_t i) {
  if (v > best || v != v) {
    best = v;
    besti = i;
  }
}

// Max and its index over one contiguous plane of n >= 1 elements, with torch's scan-order rules.
template <class T, class I>
NNK_INLINE void global_max_plane(T* y, index_t* idx, const T* NNK_RESTRICT x, index_t n) {
  if (n < 2 * kLanes) {
    T best = x[0];
    index_t besti = 0;
    for (index_t i = 1; i < n; ++i) max_fold(best, besti, x[i], i);
    *y = best;
    *idx = besti;
    return;
  }
  // Lane l folds elements l, l+16, l+32, ... in order: first max (or last NaN) of its subsequence.
  T bv[kLanes];
  I bi[kLanes];
  for (int l = 0; l < kLanes; ++l) {
    bv[l] = x[l];
    bi[l] = static_cast<I>(l);
  }
  index_t b = kLanes;
  for (; b + kLanes <= n; b += kLanes) {
    for (int l = 0; l < kLanes; ++l) {
      const T v = x[b + l];
      const bool take = (v > bv[l]) | (v != v);
      bv[l] = take ? v : bv[l];
      bi[l] = take ? static_cast<I>(b + l) : bi[l];
    }
  }
  for (index_t i = b; i < n; ++i) {
    const int l = static_cast<int>(i - b);
    const T v = x[i];
    if (v > bv[l] || v != v) {
      bv[l] = v;
      bi[l] = static_cast<I>(i);
    }
  }
  // Combine: any NaN -> the NaN with the largest index (the last in scan order); otherwise the
  // largest value with the smallest index (the first maximum).
  T best = bv[0];
  index_t besti = bi[0];
  for (int l = 1; l < kLanes; ++l) {
    const T v = bv[l];
    const index_t i = bi[l];
    bool take;
    if (best != best) take = (v != v) && i > besti;
    else if (v != v) take = true;
    else take = v > best || (v == best && i < besti);
    if (take) {
      best = v;
      besti = i;
    }
  }
  *y = best;
  *idx = besti;
}

// Sum of one contiguous plane in 16 fixed lanes combined pairwise.
template <class T>
NNK_INLINE T global_sum_plane(const T* NNK_RESTRICT x, index_t n) {
  if (n < 2 * kLanes) {
    T sum = 0;
    for (index_t i = 0; i < n; ++i) sum += x[i];
    return sum;
  }
  T acc[kLanes];
  for (int l = 0; l < kLanes; ++l) acc[l] = x[l];
  index_t b = kLanes;
  for (; b + kLanes <= n; b += kLanes) {
    for (int l = 0; l < kLanes; ++l) acc[l] += x[b + l];
  }
  for (index_t i = b; i < n; ++i) acc[i - b] += x[i];
  for (int w = kLanes / 2; w > 0; w /= 2) {
    for (int l = 0; l < w; ++l) acc[l] += acc[l + w];
  }
  return acc[0];
}

template <class T, class I>
NNK_INLINE void global_max_planes(T* y, index_t* idx, const T* x, index_t n, index_t p0, index_t p1, I tag) {
  for (index_t p = p0; p < p1; ++p) global_max_plane<T, I>(y + p, idx + p, x + p * n, n);
}
NNK_MULTIVERSION(global_max_planes_mv, global_max_planes)

template <class T>
NNK_INLINE void global_avg_planes(T* y, const T* x, index_t n, T divisor, index_t p0, index_t p1) {
  for (index_t p = p0; p < p1; ++p) y[p] = global_sum_plane(x + p * n, n) / divisor;
}
NNK_MULTIVERSION(global_avg_planes_mv, global_avg_planes)

// A fixed-window pooling that is one window per plane (kernel == input, no padding).
inline bool is_global(const Pool2dShape& s) {
  return s.OH == 1 && s.OW == 1 && s.kH == s.H && s.kW == s.W && s.pH == 0 && s.pW == 0 && s.dH == 1 &&
         s.dW == 1;
}

template <class T>
void global_max(T* y, index_t* idx, const T* x, index_t planes, index_t n) {
  const bool small = n < 2147483647;
  for_plane_ranges(planes, n, [&](index_t p0, index_t p1) {
    if (small) global_max_planes_mv(y, idx, x, n, p0, p1, std::int32_t{0});
    else global_max_planes_mv(y, idx, x, n, p0, p1, index_t{0});
  });
}

template <class T>
void global_avg(T* y, const T* x, index_t planes, index_t n, index_t divisor) {
  const T div = static_cast<T>(divisor);
  for_plane_ranges(planes, n, [&](index_t p0, index_t p1) { global_avg_planes_mv(y, x, n, div, p0, p1); });
}

// Global avg backward: every element of a plane gets dy / divisor.
template <class T>
NNK_INLINE void global_avg_backward_planes(T* dx, const T* dy, index_t n, T divisor, index_t p0, index_t p1) {
  for (index_t p = p0; p < p1; ++p) {
    const T g = dy[p] / divisor;
    T* NNK_RESTRICT d = dx + p * n;
    for (index_t i = 0; i < n; ++i) d[i] = g;
  }
}
NNK_MULTIVERSION(global_avg_backward_planes_mv, global_avg_backward_planes)

// ---------------------------------------------------------------------------------------------
// Max backward: scatter through the indices

template <class T>
NNK_INLINE void max_backward_planes(T* dx, const T* dy, const index_t* indices, index_t in_plane,
                                    index_t out_plane, index_t p0, index_t p1, std::atomic<index_t>* bad) {
  for (index_t p = p0; p < p1; ++p) {
    T* NNK_RESTRICT d = dx + p * in_plane;
    const T* NNK_RESTRICT g = dy + p * out_plane;
    const index_t* NNK_RESTRICT ix = indices + p * out_plane;
    for (index_t i = 0; i < in_plane; ++i) d[i] = 0;
    for (index_t o = 0; o < out_plane; ++o) {
      const index_t k = ix[o];
      if (static_cast<std::uint64_t>(k) < static_cast<std::uint64_t>(in_plane)) {
        d[k] += g[o];
      } else {
        // Never write through a bad index; report the lowest bad position.
        const index_t pos = p * out_plane + o;
        index_t cur = bad->load(std::memory_order_relaxed);
        while ((cur < 0 || pos < cur) && !bad->compare_exchange_weak(cur, pos, std::memory_order_relaxed)) {
        }
      }
    }
  }
}
NNK_MULTIVERSION(max_backward_planes_mv, max_backward_planes)

// ---------------------------------------------------------------------------------------------
// Adaptive windows that are not a regular grid (in % out != 0): torch's loops, per plane.

template <class T>
NNK_INLINE void adaptive_avg_planes(T* y, const T* x, index_t H, index_t W, index_t OH, index_t OW, index_t p0,
                                    index_t p1) {
  for (index_t p = p0; p < p1; ++p) {
    const T* NNK_RESTRICT xp = x + p * H * W;
    T* NNK_RESTRICT yp = y + p * OH * OW;
    for (index_t oh = 0; oh < OH; ++oh) {
      const index_t h0 = adaptive_start(oh, H, OH), h1 = adaptive_end(oh, H, OH);
      for (index_t ow = 0; ow < OW; ++ow) {
        const index_t w0 = adaptive_start(ow, W, OW), w1 = adaptive_end(ow, W, OW);
        T sum = 0;
        for (index_t h = h0; h < h1; ++h) {
          for (index_t w = w0; w < w1; ++w) sum += xp[h * W + w];
        }
        yp[oh * OW + ow] = sum / static_cast<T>((h1 - h0) * (w1 - w0));
      }
    }
  }
}
NNK_MULTIVERSION(adaptive_avg_planes_mv, adaptive_avg_planes)

template <class T>
NNK_INLINE void adaptive_max_planes(T* y, index_t* idx, const T* x, index_t H, index_t W, index_t OH, index_t OW,
                                    index_t p0, index_t p1) {
  for (index_t p = p0; p < p1; ++p) {
    const T* NNK_RESTRICT xp = x + p * H * W;
    T* NNK_RESTRICT yp = y + p * OH * OW;
    index_t* NNK_RESTRICT ip = idx + p * OH * OW;
    for (index_t oh = 0; oh < OH; ++oh) {
      const index_t h0 = adaptive_start(oh, H, OH), h1 = adaptive_end(oh, H, OH);
      for (index_t ow = 0; ow < OW; ++ow) {
        const index_t w0 = adaptive_start(ow, W, OW), w1 = adaptive_end(ow, W, OW);
        T best = neg_inf<T>();
        index_t besti = h0 * W + w0;
        for (index_t h = h0; h < h1; ++h) {
          for (index_t w = w0; w < w1; ++w) max_fold(best, besti, xp[h * W + w], h * W + w);
        }
        yp[oh * OW + ow] = best;
        ip[oh * OW + ow] = besti;
      }
    }
  }
}
NNK_MULTIVERSION(adaptive_max_planes_mv, adaptive_max_planes)

template <class T>
NNK_INLINE void adaptive_avg_backward_planes(T* dx, const T* dy, index_t H, index_t W, index_t OH, index_t OW,
                                             index_t p0, index_t p1) {
  for (index_t p = p0; p < p1; ++p) {
    T* NNK_RESTRICT d = dx + p * H * W;
    const T* NNK_RESTRICT g = dy + p * OH * OW;
    for (index_t i = 0; i < H * W; ++i) d[i] = 0;
    for (index_t oh = 0; oh < OH; ++oh) {
      const index_t h0 = adaptive_start(oh, H, OH), h1 = adaptive_end(oh, H, OH);
      for (index_t ow = 0; ow < OW; ++ow) {
        const index_t w0 = adaptive_start(ow, W, OW), w1 = adaptive_end(ow, W, OW);
        const T gv = g[oh * OW + ow] / static_cast<T>((h1 - h0) * (w1 - w0));
        for (index_t h = h0; h < h1; ++h) {
          for (index_t w = w0; w < w1; ++w) d[h * W + w] += gv;
        }
      }
    }
  }
}
NNK_MULTIVERSION(adaptive_avg_backward_planes_mv, adaptive_avg_backward_planes)

// Adaptive pooling whose windows form a regular grid (in % out == 0 on both axes) is plain
// pooling with kernel = stride = in/out: same windows, same scan order, same divisor.
inline bool adaptive_is_grid(index_t H, index_t W, index_t OH, index_t OW) {
  return H % OH == 0 && W % OW == 0;
}

inline Pool2dShape grid_shape(index_t planes, index_t H, index_t W, index_t OH, index_t OW) {
  const index_t kh = H / OH, kw = W / OW;
  return Pool2dShape{planes, H, W, OH, OW, kh, kw, kh, kw, 0, 0, 1, 1};
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Entry points

template <class T>
void max_pool2d_forward(T* y, index_t* indices, const T* x, const Pool2dShape& s) {
  if (s.planes <= 0 || s.OH <= 0 || s.OW <= 0) return;
  NNK_ASSERT(s.H > 0 && s.W > 0 && s.kH > 0 && s.kW > 0 && s.sH > 0 && s.sW > 0 && s.dH > 0 && s.dW > 0);
  if (is_global(s)) return global_max(y, indices, x, s.planes, s.H * s.W);
  const PoolPlan plan = make_plan(s);
  const PoolPlan* pl = &plan;
  const Pool2dShape* sp = &s;
  const int taps = fixed_taps(s);
  // Tap offsets as int32 while they fit (same lane count as float).
  const bool small = (s.kH - 1) * s.dH * s.W + (s.kW - 1) * s.dW < 2147483647;
  for_plane_ranges(s.planes, s.H * s.W + 2 * s.OH * s.OW, [&](index_t p0, index_t p1) {
    T* Q = pl->direct ? nullptr : scratch<T>(kScratch0, pl->phase_elems());
    T* vals = scratch<T>(kScratch1, pl->L);
    T* tmp = scratch<T>(kScratch3, pl->row_need);
    if (small) {
      auto* toff = scratch<std::int32_t>(kScratch2, pl->L);
      max_pool_planes_mv(y, indices, x, sp, pl, p0, p1, Q, vals, toff, tmp, taps);
    } else {
      auto* toff = scratch<index_t>(kScratch2, pl->L);
      max_pool_planes_mv(y, indices, x, sp, pl, p0, p1, Q, vals, toff, tmp, 0);
    }
  });
}

template <class T>
PoolIndexCheck max_pool2d_backward(T* dx, const T* dy, const index_t* indices, index_t planes, index_t in_plane,
                                   index_t out_plane) {
  PoolIndexCheck check;
  if (planes <= 0 || in_plane <= 0) return check;
  std::atomic<index_t> bad{-1};
  std::atomic<index_t>* badp = &bad;
  for_plane_ranges(planes, in_plane + 2 * out_plane, [&](index_t p0, index_t p1) {
    max_backward_planes_mv(dx, dy, indices, in_plane, out_plane, p0, p1, badp);
  });
  check.bad_position = bad.load();
  return check;
}

template <class T>
void avg_pool2d_forward(T* y, const T* x, const Pool2dShape& s, bool count_include_pad, index_t divisor_override) {
  if (s.planes <= 0 || s.OH <= 0 || s.OW <= 0) return;
  NNK_ASSERT(s.H > 0 && s.W > 0 && s.kH > 0 && s.kW > 0 && s.sH > 0 && s.sW > 0 && s.dH == 1 && s.dW == 1);
  if (is_global(s)) return global_avg(y, x, s.planes, s.H * s.W, divisor_override != 0 ? divisor_override : s.H * s.W);
  const PoolPlan plan = make_plan(s);
  const PoolPlan* pl = &plan;
  const Pool2dShape* sp = &s;
  // 1/divisor per output position: the calling thread's slot kScratch4 (workers use 0-3), read by all.
  T* inv = scratch<T>(kScratch4, s.OH * s.OW);
  avg_inverse_divisors(inv, s, count_include_pad, divisor_override);
  const T* cinv = inv;
  const int taps = fixed_taps(s);
  for_plane_ranges(s.planes, s.H * s.W + s.OH * s.OW, [&](index_t p0, index_t p1) {
    T* Q = pl->direct ? nullptr : scratch<T>(kScratch0, pl->phase_elems());
    T* sums = scratch<T>(kScratch1, pl->L);
    T* tmp = scratch<T>(kScratch3, pl->row_need);
    avg_pool_planes_mv(y, x, sp, pl, cinv, p0, p1, Q, sums, tmp, taps);
  });
}

template <class T>
void avg_pool2d_backward(T* dx, const T* dy, const Pool2dShape& s, bool count_include_pad,
                         index_t divisor_override) {
  if (s.planes <= 0 || s.H <= 0 || s.W <= 0) return;
  if (s.OH <= 0 || s.OW <= 0) {
    std::memset(dx, 0, sizeof(T) * static_cast<size_t>(s.planes * s.H * s.W));
    return;
  }
  NNK_ASSERT(s.kH > 0 && s.kW > 0 && s.sH > 0 && s.sW > 0 && s.dH == 1 && s.dW == 1);
  const index_t n = s.H * s.W;
  if (is_global(s)) {
    const T div = static_cast<T>(divisor_override != 0 ? divisor_override : n);
    for_plane_ranges(s.planes, n, [&](index_t p0, index_t p1) {
      global_avg_backward_planes_mv(dx, dy, n, div, p0, p1);
    });
    return;
  }
  const PoolPlan plan = make_plan(s);
  const PoolPlan* pl = &plan;
  const Pool2dShape* sp = &s;
  T* inv = scratch<T>(kScratch4, s.OH * s.OW);
  avg_inverse_divisors(inv, s, count_include_pad, divisor_override);
  const T* cinv = inv;
  for_plane_ranges(s.planes, n + s.OH * s.OW, [&](index_t p0, index_t p1) {
    T* G = pl->direct ? nullptr : scratch<T>(kScratch0, pl->phase_elems());
    T* g = scratch<T>(kScratch1, pl->L);
    avg_backward_planes_mv(dx, dy, sp, pl, cinv, p0, p1, G, g);
  });
}

template <class T>
void adaptive_avg_pool2d_forward(T* y, const T* x, index_t planes, index_t H, index_t W, index_t OH, index_t OW) {
  if (planes <= 0 || OH <= 0 || OW <= 0) return;
  NNK_ASSERT(H > 0 && W > 0);
  if (adaptive_is_grid(H, W, OH, OW)) {
    return avg_pool2d_forward(y, x, grid_shape(planes, H, W, OH, OW), true, 0);
  }
  for_plane_ranges(planes, H * W + OH * OW, [&](index_t p0, index_t p1) {
    adaptive_avg_planes_mv(y, x, H, W, OH, OW, p0, p1);
  });
}

template <class T>
void adaptive_avg_pool2d_backward(T* dx, const T* dy, index_t planes, index_t H, index_t W, index_t OH,
                                  index_t OW) {
  if (planes <= 0 || H <= 0 || W <= 0) return;
  if (OH <= 0 || OW <= 0) {
    std::memset(dx, 0, sizeof(T) * static_cast<size_t>(planes * H * W));
    return;
  }
  if (adaptive_is_grid(H, W, OH, OW)) {
    return avg_pool2d_backward(dx, dy, grid_shape(planes, H, W, OH, OW), true, 0);
  }
  for_plane_ranges(planes, H * W + OH * OW, [&](index_t p0, index_t p1) {
    adaptive_avg_backward_planes_mv(dx, dy, H, W, OH, OW, p0, p1);
  });
}

template <class T>
void adaptive_max_pool2d_forward(T* y, index_t* indices, const T* x, index_t planes, index_t H, index_t W,
                                 index_t OH, index_t OW) {
  if (planes <= 0 || OH <= 0 || OW <= 0) return;
  NNK_ASSERT(H > 0 && W > 0);
  if (adaptive_is_grid(H, W, OH, OW)) {
    return max_pool2d_forward(y, indices, x, grid_shape(planes, H, W, OH, OW));
  }
  for_plane_ranges(planes, H * W + 2 * OH * OW, [&](index_t p0, index_t p1) {
    adaptive_max_planes_mv(y, indices, x, H, W, OH, OW, p0, p1);
  });
}

#define NNK_POOL_INSTANTIATE(T)                                                                        \
  template void max_pool2d_forward<T>(T*, index_t*, const T*, const Pool2dShape&);                    \
  template PoolIndexCheck max_pool2d_backward<T>(T*, const T*, const index_t*, index_t, index_t,      \
                                                 index_t);                                            \
  template void avg_pool2d_forward<T>(T*, const T*, const Pool2dShape&, bool, index_t);               \
  template void avg_pool2d_backward<T>(T*, const T*, const Pool2dShape&, bool, index_t);              \
  template void adaptive_avg_pool2d_forward<T>(T*, const T*, index_t, index_t, index_t, index_t,      \
                                               index_t);                                              \
  template void adaptive_avg_pool2d_backward<T>(T*, const T*, index_t, index_t, index_t, index_t,     \
                                                index_t);                                             \
  template void adaptive_max_pool2d_forward<T>(T*, index_t*, const T*, index_t, index_t, index_t,     \
                                               index_t, index_t);

NNK_POOL_INSTANTIATE(float)
NNK_POOL_INSTANTIATE(double)

}  // namespace nnkern
