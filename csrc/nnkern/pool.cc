// Pooling kernels (see pool.h for the semantics).
//
// NCHW planes are contiguous, so each thread takes whole planes (the backward passes then scatter
// without atomics, and results do not depend on the thread count). Within a plane there are two
// vectorised paths, both covering padding, ceil_mode, overlapping windows and dilation:
//
// 1. Stride-2 row kernels (sW == 2, kW 2 or 3, no dilation along W, a vector of outputs per row:
//    2x2/s2 and 3x3/s2, the common CNN windows). A vector of L outputs reads 2L consecutive input
//    elements per window row; an even/odd shuffle (GCC vector extensions, sized for the ISA:
//    vpermt2ps under AVX-512) gives taps kw = 0 and 1, the same from two elements further on gives
//    kw = 2. Windows reaching into the padding read a padded copy of the plane. The last vector of
//    a row overlaps the one before it (forward outputs are recomputed, not accumulated). Avg
//    backward expands dy/divisor into input rows the same way (an exact 2x2 tiling just stores).
//
// 2. Phase planes for everything else (space-to-depth). With stride (sH, sW), padded input element
//    (r, c) goes to phase plane (r mod sH, c mod sW) at (r div sH, c div sW); every tap (kh, kw)
//    then reads one phase plane at a fixed offset with unit stride along both output axes, and
//    padding, ceil_mode overhang and dilation become a matter of which phase and offset. Building
//    the planes (only the phases some tap uses; padding filled with -inf for max, 0 for avg) is one
//    L1-resident pass; stride 1 without padding reads x in place. Phase rows hold
//    Wq = OW + (largest tap column offset) elements and the output is computed at flat positions
//    P = oh*Wq + ow, so a whole plane is one long unit-stride loop per tap (or one loop with 2x2 /
//    3x3 taps in registers); the columns ow >= OW are dropped when the rows are compacted.
//
// Max tracks the winning tap's index offset (kh*dH*W + kw*dW, int32 while it fits: the same lane
// count as float) and adds it to the window's base index when storing. Padding holds -inf, which
// can only win a window whose real elements are all -inf: outputs equal to -inf are recomputed
// with torch's exact scalar loop, so indices always point at real elements with torch's tie rule.
// Max backward scatters dy through the indices into a zeroed input-gradient plane (serially within
// the plane: overlapping windows may send several gradients to one element).
#include "nnkern/pool.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>
#include <utility>
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
  // Not a loop over every window: `in` may be huge (2**33) for an empty batch, where a linear scan
  // took seconds. Windows that start in the left padding (i < ceil(p / s)) are checked one by one;
  // their first in-bounds tap lies in [0, d), so with in >= d none of them can miss the input.
  const index_t n_left = std::min(out, ceil_div_pos(p, s));
  for (index_t i = 0; i < n_left && in < d; ++i) {
    const index_t start = i * s - p;
    const index_t first = start < 0 ? ceil_div_pos(-start, d) : 0;  // first tap at or after 0
    if (first >= k || start + first * d >= in) return i;
  }
  // A window starting at or after 0 covers only padding iff start >= in, which grows with i:
  // the first such window is i = ceil((in + p) / s).
  const index_t first_right = std::max(n_left, ceil_div_pos(in + p, s));
  return first_right < out ? first_right : -1;
}

namespace {

std::atomic<bool> g_force_wide_indices{false};

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

// Vector bytes for the per-row helpers at the ISA level in use (see VecB below).
inline int row_vector_bytes() {
  switch (simd::level()) {
    case simd::kAvx512: return 64;
    case simd::kAvx2: return 32;
    default: return 16;
  }
}

// Everything about a fixed-window pooling call that does not depend on the plane: phase planes,
// taps, flattened output. Built once per call by the calling thread, read by all threads.
struct PoolPlan {
  index_t Hq = 0, Wq = 0;  // phase plane rows / columns (= flattened output row length)
  index_t L = 0;           // flattened outputs computed: (OH-1)*Wq + OW
  bool direct = false;     // stride 1 and no padding or overhang: read the input plane in place
  bool padded = false;     // some window reaches outside the input (padding or ceil_mode overhang)
  bool compact = false;    // Wq > OW: flattened rows carry dropped columns, outputs are compacted
  index_t nh = 0, nw = 0;  // phases in use along H / W
  std::vector<index_t> hphase, wphase;  // their values (r mod sH, c mod sW)
  std::vector<index_t> hslot, wslot;    // phase value -> slot (or -1), for values < map length
  std::vector<index_t> tap_src;         // per tap: element offset of its data in the phase planes
  std::vector<index_t> tap_index;       // per tap: kh*dH*W + kw*dW (flat input index offset)
  std::vector<index_t> base;            // max only, per flat output: (oh*sH - pH)*W - pW + ow*sW
  // Stride 2 with both column phases: where the even / odd input columns of a row land.
  index_t even_slot = 0, odd_slot = 0;  // column phase slots receiving input columns 2m / 2m+1
  index_t oe = 0, oo = 0;               // phase-row positions of input columns 0 and 1
  index_t ne = 0, no = 0;               // even / odd input columns landing inside the Wq columns
  int vb = 16;                          // vector bytes of the per-row helpers (row_vector_bytes)
  index_t plane_elems() const { return Hq * Wq; }
  index_t phase_elems() const { return nh * nw * Hq * Wq; }
};

PoolPlan make_plan(const Pool2dShape& s, bool with_base) {
  PoolPlan pl;
  pl.vb = row_vector_bytes();
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
  pl.compact = pl.Wq != s.OW;
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
  for (index_t kh = 0; kh < s.kH; ++kh) {
    for (index_t kw = 0; kw < s.kW; ++kw) {
      const index_t plane = kh_slot[static_cast<size_t>(kh)] * pl.nw + kw_slot[static_cast<size_t>(kw)];
      const index_t off = (kh * s.dH / s.sH) * pl.Wq + kw * s.dW / s.sW;
      pl.tap_src.push_back(plane * pl.plane_elems() + off);
      pl.tap_index.push_back(kh * s.dH * s.W + kw * s.dW);
    }
  }
  if (!pl.direct && s.sW == 2 && pl.nw == 2) {
    // Input column c is padded column c + pW: phase (c + pW) & 1, position (c + pW) >> 1.
    const index_t slot0 = pl.wphase[0] == 0 ? 0 : 1;  // slot of column phase 0
    const bool even_to_0 = (s.pW & 1) == 0;
    pl.even_slot = even_to_0 ? slot0 : 1 - slot0;
    pl.odd_slot = even_to_0 ? 1 - slot0 : slot0;
    pl.oe = std::min(s.pW >> 1, pl.Wq);
    pl.oo = std::min((s.pW + 1) >> 1, pl.Wq);
    pl.ne = std::max<index_t>(0, std::min((s.W + 1) / 2, pl.Wq - pl.oe));
    pl.no = std::max<index_t>(0, std::min(s.W / 2, pl.Wq - pl.oo));
  }
  if (with_base) {
    pl.base.resize(static_cast<size_t>(pl.L));
    for (index_t P = 0; P < pl.L; ++P) {
      const index_t oh = P / pl.Wq, ow = P % pl.Wq;
      pl.base[static_cast<size_t>(P)] = (oh * s.sH - s.pH) * s.W - s.pW + ow * s.sW;
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

template <class T>
NNK_INLINE void fill_n(T* NNK_RESTRICT d, index_t n, T v) {
  if (n <= 0) return;
  d[0] = v;  // most fills are one padding column: skip the vector loop's set-up for them
  for (index_t j = 1; j < n; ++j) d[j] = v;
}

// Short per-row loops of the phase planes (rows are typically 8-32 elements, where an
// auto-vectorised loop spends more on its run-time checks than on the work) use GCC vector
// extensions of B bytes: B = 64 under AVX-512, 32 under AVX2, 16 otherwise (pl.vb; wider vectors
// than the ISA has would be split and their shuffles lowered element by element). They are only
// used inside inlined bodies and through pointers, never passed by value across calls.
template <int B, class T>
struct VecB {
  typedef T V __attribute__((vector_size(B), aligned(sizeof(T)), may_alias));
  typedef typename std::conditional<sizeof(T) == 4, std::int32_t, std::int64_t>::type E;
  typedef E M __attribute__((vector_size(B)));
  static constexpr index_t lanes = B / static_cast<index_t>(sizeof(T));
};

template <int B, class T, std::size_t... K>
NNK_INLINE void deinterleave_chunk(T* de, T* dd, const T* src, std::index_sequence<K...>) {
  using W = VecB<B, T>;
  using V = typename W::V;
  using E = typename W::E;
  const typename W::M even = {static_cast<E>(2 * K)...};
  const typename W::M odd = {static_cast<E>(2 * K + 1)...};
  const V a = *reinterpret_cast<const V*>(src);
  const V b = *reinterpret_cast<const V*>(src + W::lanes);
  *reinterpret_cast<V*>(de) = __builtin_shuffle(a, b, even);
  *reinterpret_cast<V*>(dd) = __builtin_shuffle(a, b, odd);
}

template <int B, class T, std::size_t... K>
NNK_INLINE void interleave_chunk(T* out, const T* se, const T* so, std::index_sequence<K...>) {
  using W = VecB<B, T>;
  using V = typename W::V;
  using E = typename W::E;
  constexpr index_t L = W::lanes;
  const typename W::M lo = {static_cast<E>(K / 2 + (K % 2) * L)...};
  const typename W::M hi = {static_cast<E>(L / 2 + K / 2 + (K % 2) * L)...};
  const V a = *reinterpret_cast<const V*>(se);
  const V b = *reinterpret_cast<const V*>(so);
  *reinterpret_cast<V*>(out) = __builtin_shuffle(a, b, lo);
  *reinterpret_cast<V*>(out + L) = __builtin_shuffle(a, b, hi);
}

// de[m] = src[2m], dd[m] = src[2m+1] for m < n.
template <int B, class T>
NNK_INLINE void deinterleave2_b(T* de, T* dd, const T* src, index_t n) {
  constexpr index_t L = VecB<B, T>::lanes;
  index_t m = 0;
  for (; m + L <= n; m += L) {
    deinterleave_chunk<B>(de + m, dd + m, src + 2 * m, std::make_index_sequence<static_cast<std::size_t>(L)>());
  }
  for (; m < n; ++m) {
    de[m] = src[2 * m];
    dd[m] = src[2 * m + 1];
  }
}

// out[2m] = se[m], out[2m+1] = so[m] for m < n.
template <int B, class T>
NNK_INLINE void interleave2_b(T* out, const T* se, const T* so, index_t n) {
  constexpr index_t L = VecB<B, T>::lanes;
  index_t m = 0;
  for (; m + L <= n; m += L) {
    interleave_chunk<B>(out + 2 * m, se + m, so + m, std::make_index_sequence<static_cast<std::size_t>(L)>());
  }
  for (; m < n; ++m) {
    out[2 * m] = se[m];
    out[2 * m + 1] = so[m];
  }
}

// out[k] = in[k] for k < n: whole vectors, the last one overlapping (no scalar tail).
template <int B, class T>
NNK_INLINE void copy_row_b(T* out, const T* in, index_t n) {
  using V = typename VecB<B, T>::V;
  constexpr index_t L = VecB<B, T>::lanes;
  if (n < L) {
    for (index_t k = 0; k < n; ++k) out[k] = in[k];
    return;
  }
  index_t k = 0;
  for (; k + L <= n; k += L) *reinterpret_cast<V*>(out + k) = *reinterpret_cast<const V*>(in + k);
  if (k < n) *reinterpret_cast<V*>(out + n - L) = *reinterpret_cast<const V*>(in + n - L);
}

template <class T>
NNK_INLINE void deinterleave2(T* de, T* dd, const T* src, index_t n, int vb) {
  if (vb == 64) deinterleave2_b<64>(de, dd, src, n);
  else if (vb == 32) deinterleave2_b<32>(de, dd, src, n);
  else deinterleave2_b<16>(de, dd, src, n);
}

template <class T>
NNK_INLINE void interleave2(T* out, const T* se, const T* so, index_t n, int vb) {
  if (vb == 64) interleave2_b<64>(out, se, so, n);
  else if (vb == 32) interleave2_b<32>(out, se, so, n);
  else interleave2_b<16>(out, se, so, n);
}

template <class T>
NNK_INLINE void copy_row(T* out, const T* in, index_t n, int vb) {
  if (vb == 64) copy_row_b<64>(out, in, n);
  else if (vb == 32) copy_row_b<32>(out, in, n);
  else copy_row_b<16>(out, in, n);
}

// One input row (src, or all padding when null) split into the used column phases of one phase
// row: dst + b*pe is the row of column phase slot b.
template <int SW, class T>
NNK_INLINE void split_row(T* dst, index_t pe, const T* NNK_RESTRICT src, const Pool2dShape& s, const PoolPlan& pl,
                          T fill) {
  const index_t Wq = pl.Wq, W = s.W, pW = s.pW;
  if (src == nullptr) {
    for (index_t b = 0; b < pl.nw; ++b) fill_n(dst + b * pe, Wq, fill);
    return;
  }
  if (SW == 1) {  // one phase: padding, the row, padding
    const index_t left = std::min(pW, Wq);
    const index_t cols = std::max<index_t>(0, std::min(W, Wq - pW));
    fill_n(dst, left, fill);
    copy_row(dst + left, src, cols, pl.vb);
    fill_n(dst + left + cols, Wq - left - cols, fill);
    return;
  }
  const index_t sw = SW > 0 ? SW : s.sW;
  for (index_t b = 0; b < pl.nw; ++b) {
    T* NNK_RESTRICT d = dst + b * pe;
    const index_t c0 = pl.wphase[static_cast<size_t>(b)] - pW;
    for (index_t j = 0; j < Wq; ++j) {
      const index_t c = c0 + j * sw;
      d[j] = (c >= 0 && c < W) ? src[c] : fill;
    }
  }
}

// Phase planes of one input plane x [H,W] into Q [nh*nw][Hq][Wq].
template <int SW, class T>
NNK_INLINE void build_phases(T* Q, const T* NNK_RESTRICT x, const Pool2dShape& s, const PoolPlan& pl, T fill) {
  const index_t pe = pl.plane_elems(), Hq = pl.Hq, Wq = pl.Wq, H = s.H, W = s.W, sH = s.sH, pH = s.pH;
  for (index_t a = 0; a < pl.nh; ++a) {
    const index_t qh = pl.hphase[static_cast<size_t>(a)];
    T* Qa = Q + a * pl.nw * pe;
    for (index_t i = 0; i < Hq; ++i) {
      const index_t h = i * sH + qh - pH;
      split_row<SW>(Qa + i * Wq, pe, (h >= 0 && h < H) ? x + h * W : nullptr, s, pl, fill);
    }
  }
}

// Inverse of build_phases for gradients: dx [H,W] from the phase planes G (elements no tap
// reaches are 0).
template <int SW, class T>
NNK_INLINE void merge_phases(T* NNK_RESTRICT dx, const T* G, const Pool2dShape& s, const PoolPlan& pl) {
  const index_t pe = pl.plane_elems(), Wq = pl.Wq, W = s.W, pW = s.pW;
  for (index_t h = 0; h < s.H; ++h) {
    T* NNK_RESTRICT out = dx + h * W;
    const index_t r = h + s.pH;
    const index_t qh = r % s.sH, i = r / s.sH;
    const index_t a = qh < static_cast<index_t>(pl.hslot.size()) ? pl.hslot[static_cast<size_t>(qh)] : -1;
    if (a < 0 || i >= pl.Hq) {
      fill_n(out, W, T(0));
      continue;
    }
    const T* grow = G + a * pl.nw * pe + i * Wq;
    if (SW == 1) {  // padded column c = w + pW is phase-plane column c
      const index_t cols = std::max<index_t>(0, std::min(W, Wq - pW));
      copy_row(out, grow + pW, cols, pl.vb);
      fill_n(out + cols, W - cols, T(0));
      continue;
    }
    if (SW == 2 && pl.nw == 2) {
      const T* ge = grow + pl.even_slot * pe + pl.oe;
      const T* go = grow + pl.odd_slot * pe + pl.oo;
      const index_t ne = pl.ne, no = pl.no, M = std::min(ne, no);
      interleave2(out, ge, go, M, pl.vb);
      for (index_t m = M; m < (W + 1) / 2; ++m) out[2 * m] = m < ne ? ge[m] : T(0);
      for (index_t m = M; m < W / 2; ++m) out[2 * m + 1] = m < no ? go[m] : T(0);
      continue;
    }
    const index_t sw = SW > 0 ? SW : s.sW;
    for (index_t w = 0; w < W; ++w) {
      const index_t c = w + pW;
      const index_t qw = c % sw, j = c / sw;
      const index_t b = qw < static_cast<index_t>(pl.wslot.size()) ? pl.wslot[static_cast<size_t>(qw)] : -1;
      out[w] = (b >= 0 && j < Wq) ? grow[b * pe + j] : T(0);
    }
  }
}

// build_phases for stride 2 along W with both column phases in use (2x2 and 3x3 windows with
// stride 2, the common case), with the per-row work reduced to one deinterleave where possible.
template <class T>
NNK_INLINE void build_phases_s2(T* Q, const T* NNK_RESTRICT x, const Pool2dShape& s, const PoolPlan& pl, T fill) {
  const index_t pe = pl.plane_elems(), Hq = pl.Hq, Wq = pl.Wq, H = s.H, W = s.W, sH = s.sH, pH = s.pH;
  const index_t oe = pl.oe, oo = pl.oo, ne = pl.ne, no = pl.no, M = std::min(ne, no);
  const int vb = pl.vb;
  // Rows whose even/odd input columns fill the two phase rows exactly (no padding columns).
  const bool plain = oe == 0 && oo == 0 && ne == Wq && no == Wq;
  for (index_t a = 0; a < pl.nh; ++a) {
    const index_t qh = pl.hphase[static_cast<size_t>(a)];
    T* Qe = Q + (a * pl.nw + pl.even_slot) * pe;
    T* Qo = Q + (a * pl.nw + pl.odd_slot) * pe;
    for (index_t i = 0; i < Hq; ++i) {
      const index_t h = i * sH + qh - pH;
      T* re = Qe + i * Wq;
      T* ro = Qo + i * Wq;
      if (h < 0 || h >= H) {
        fill_n(re, Wq, fill);
        fill_n(ro, Wq, fill);
        continue;
      }
      const T* src = x + h * W;
      if (plain) {
        deinterleave2(re, ro, src, Wq, vb);
        continue;
      }
      if (oe > 0) fill_n(re, oe, fill);
      if (oo > 0) fill_n(ro, oo, fill);
      deinterleave2(re + oe, ro + oo, src, M, vb);
      for (index_t m = M; m < ne; ++m) re[oe + m] = src[2 * m];
      for (index_t m = M; m < no; ++m) ro[oo + m] = src[2 * m + 1];
      if (oe + ne < Wq) fill_n(re + oe + ne, Wq - oe - ne, fill);
      if (oo + no < Wq) fill_n(ro + oo + no, Wq - oo - no, fill);
    }
  }
}

template <class T>
NNK_INLINE void build_phases_any(T* Q, const T* x, const Pool2dShape& s, const PoolPlan& pl, T fill) {
  if (s.sW == 1) build_phases<1>(Q, x, s, pl, fill);
  else if (s.sW == 2 && pl.nw == 2) build_phases_s2(Q, x, s, pl, fill);
  else if (s.sW == 2) build_phases<2>(Q, x, s, pl, fill);
  else build_phases<0>(Q, x, s, pl, fill);
}

// Copies the first OW of every Wq-long flattened row (compaction of the dropped columns).
template <class T>
NNK_INLINE void compact_rows(T* out, const T* flat, index_t OH, index_t OW, index_t Wq, int vb) {
  for (index_t oh = 0; oh < OH; ++oh) copy_row(out + oh * OW, flat + oh * Wq, OW, vb);
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

// Flattened outputs P in [0, L): yv[P] = window max, iv[P] = its flat input index. The winning
// tap's index offset is tracked as I (int32 while it fits: the same lane count as float) and
// added to the per-position base at the end.
template <int KH, int KW, class T, class I>
NNK_INLINE void max_flat_fixed(T* NNK_RESTRICT yv, index_t* NNK_RESTRICT iv, const T* src, const PoolPlan& pl, I) {
  constexpr int K = KH * KW;
  const T* tp[K];
  I to[K];
  for (int t = 0; t < K; ++t) {
    tp[t] = src + pl.tap_src[static_cast<size_t>(t)];
    to[t] = static_cast<I>(pl.tap_index[static_cast<size_t>(t)]);
  }
  const index_t* NNK_RESTRICT base = pl.base.data();
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
    yv[P] = best;
    iv[P] = base[P] + static_cast<index_t>(besti);
  }
}

// Any window: one vectorised pass per tap over the flattened outputs (toff: L scratch).
template <class T, class I>
NNK_INLINE void max_flat_generic(T* NNK_RESTRICT yv, index_t* NNK_RESTRICT iv, I* NNK_RESTRICT toff, const T* src,
                                 const PoolPlan& pl) {
  const index_t L = pl.L;
  const index_t K = static_cast<index_t>(pl.tap_src.size());
  {
    const T* NNK_RESTRICT t0 = src + pl.tap_src[0];
    const I o0 = static_cast<I>(pl.tap_index[0]);
    for (index_t P = 0; P < L; ++P) {
      yv[P] = t0[P];
      toff[P] = o0;
    }
  }
  for (index_t t = 1; t < K; ++t) {
    const T* NNK_RESTRICT tt = src + pl.tap_src[static_cast<size_t>(t)];
    const I ot = static_cast<I>(pl.tap_index[static_cast<size_t>(t)]);
    for (index_t P = 0; P < L; ++P) {
      const T v = tt[P];
      const T b = yv[P];
      const bool take = (v > b) | (v != v);
      yv[P] = take ? v : b;
      toff[P] = take ? ot : toff[P];
    }
  }
  const index_t* NNK_RESTRICT base = pl.base.data();
  for (index_t P = 0; P < L; ++P) iv[P] = base[P] + static_cast<index_t>(toff[P]);
}

// Planes [p0, p1). Scratch: Q (phase planes), yflat/iflat (L each, when compacting), toff (L).
template <class T, class I>
NNK_INLINE void max_pool_planes(T* y, index_t* idx, const T* x, const Pool2dShape* sp, const PoolPlan* plp,
                                index_t p0, index_t p1, T* Q, T* yflat, index_t* iflat, I* toff, int taps) {
  const Pool2dShape& s = *sp;
  const PoolPlan& pl = *plp;
  const index_t in_plane = s.H * s.W, out_plane = s.OH * s.OW;
  for (index_t p = p0; p < p1; ++p) {
    const T* xpl = x + p * in_plane;
    T* ypl = y + p * out_plane;
    index_t* ipl = idx + p * out_plane;
    const T* src = xpl;
    if (!pl.direct) {
      build_phases_any(Q, xpl, s, pl, neg_inf<T>());
      src = Q;
    }
    T* yv = pl.compact ? yflat : ypl;
    index_t* iv = pl.compact ? iflat : ipl;
    if (taps == 2) max_flat_fixed<2, 2>(yv, iv, src, pl, I{});
    else if (taps == 3) max_flat_fixed<3, 3>(yv, iv, src, pl, I{});
    else max_flat_generic(yv, iv, toff, src, pl);
    if (pl.compact) {
      compact_rows(ypl, yflat, s.OH, s.OW, pl.Wq, pl.vb);
      compact_rows(ipl, iflat, s.OH, s.OW, pl.Wq, pl.vb);
    }
    if (pl.padded) {
      // A padding element can only have won where the result is -inf: redo those windows exactly.
      int any = 0;
      for (index_t o = 0; o < out_plane; ++o) any |= static_cast<int>(ypl[o] == neg_inf<T>());
      if (any) {
        for (index_t oh = 0; oh < s.OH; ++oh) {
          for (index_t ow = 0; ow < s.OW; ++ow) {
            const index_t o = oh * s.OW + ow;
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
NNK_INLINE void avg_flat_fixed(T* NNK_RESTRICT yv, const T* src, const T* NNK_RESTRICT inv, const PoolPlan& pl) {
  constexpr int K = KH * KW;
  const T* tp[K];
  for (int t = 0; t < K; ++t) tp[t] = src + pl.tap_src[static_cast<size_t>(t)];
  const index_t L = pl.L;
#pragma GCC ivdep
  for (index_t P = 0; P < L; ++P) {
    T sum = tp[0][P];  // torch sums in scan order from 0; 0 + first == first
#pragma GCC unroll 9
    for (int t = 1; t < K; ++t) sum += tp[t][P];
    yv[P] = sum * inv[P];
  }
}

template <class T>
NNK_INLINE void avg_flat_generic(T* NNK_RESTRICT yv, const T* src, const T* NNK_RESTRICT inv, const PoolPlan& pl) {
  const index_t L = pl.L;
  const index_t K = static_cast<index_t>(pl.tap_src.size());
  {
    const T* NNK_RESTRICT t0 = src + pl.tap_src[0];
    for (index_t P = 0; P < L; ++P) yv[P] = t0[P];
  }
  for (index_t t = 1; t < K; ++t) {
    const T* NNK_RESTRICT tt = src + pl.tap_src[static_cast<size_t>(t)];
    for (index_t P = 0; P < L; ++P) yv[P] += tt[P];
  }
  for (index_t P = 0; P < L; ++P) yv[P] *= inv[P];
}

// Planes [p0, p1). inv: 1/divisor per flattened output (L). Scratch: Q, yflat (L, when compacting).
template <class T>
NNK_INLINE void avg_pool_planes(T* y, const T* x, const Pool2dShape* sp, const PoolPlan* plp, const T* inv,
                                index_t p0, index_t p1, T* Q, T* yflat, int taps) {
  const Pool2dShape& s = *sp;
  const PoolPlan& pl = *plp;
  const index_t in_plane = s.H * s.W, out_plane = s.OH * s.OW;
  for (index_t p = p0; p < p1; ++p) {
    const T* xpl = x + p * in_plane;
    T* ypl = y + p * out_plane;
    const T* src = xpl;
    if (!pl.direct) {
      build_phases_any(Q, xpl, s, pl, T(0));
      src = Q;
    }
    T* yv = pl.compact ? yflat : ypl;
    if (taps == 2) avg_flat_fixed<2, 2>(yv, src, inv, pl);
    else if (taps == 3) avg_flat_fixed<3, 3>(yv, src, inv, pl);
    else avg_flat_generic(yv, src, inv, pl);
    if (pl.compact) compact_rows(ypl, yflat, s.OH, s.OW, pl.Wq, pl.vb);
  }
}
NNK_MULTIVERSION(avg_pool_planes_mv, avg_pool_planes)

// 1/divisor for output positions P = oh*row_len + ow, P < count (the same for every plane),
// torch's rules; 0 in dropped columns (ow >= OW).
template <class T>
void avg_inverse_divisors(T* inv, const Pool2dShape& s, index_t row_len, index_t count, bool count_include_pad,
                          index_t divisor_override) {
  for (index_t P = 0; P < count; ++P) {
    const index_t oh = P / row_len, ow = P % row_len;
    if (ow >= s.OW) {
      inv[P] = 0;
      continue;
    }
    const index_t h0 = oh * s.sH - s.pH;
    const index_t h1 = std::min(h0 + s.kH, s.H + s.pH);
    const index_t w0 = ow * s.sW - s.pW;
    const index_t w1 = std::min(w0 + s.kW, s.W + s.pW);
    const index_t with_pad = (h1 - h0) * (w1 - w0);
    const index_t inside = (std::min(h1, s.H) - std::max<index_t>(h0, 0)) * (std::min(w1, s.W) - std::max<index_t>(w0, 0));
    const index_t div = divisor_override != 0 ? divisor_override : count_include_pad ? with_pad : inside;
    inv[P] = T(1) / static_cast<T>(div);
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
  const index_t OH = s.OH, OW = s.OW, Wq = pl.Wq, L = pl.L;
  for (index_t p = p0; p < p1; ++p) {
    T* dxpl = dx + p * in_plane;
    const T* NNK_RESTRICT dypl = dy + p * out_plane;
    // g = dy / divisor in the flattened layout; 0 in the dropped columns (inv is 0 there), which
    // overlap real positions of the next row in the phase planes.
    if (!pl.compact) {
      for (index_t P = 0; P < L; ++P) g[P] = dypl[P] * inv[P];
    } else {
      for (index_t oh = 0; oh < OH; ++oh) {
        T* NNK_RESTRICT gr = g + oh * Wq;
        const T* NNK_RESTRICT dr = dypl + oh * OW;
        const T* NNK_RESTRICT ir = inv + oh * Wq;
        for (index_t ow = 0; ow < OW; ++ow) gr[ow] = dr[ow] * ir[ow];
        if (oh + 1 < OH) fill_n(gr + OW, Wq - OW, T(0));
      }
    }
    T* acc = pl.direct ? dxpl : G;
    fill_n(acc, pl.direct ? in_plane : pl.phase_elems(), T(0));
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
// Stride-2 row kernels: sW == 2, kW in {2, 3}, dW == 1 (2x2/s2 and 3x3/s2 windows, the common
// CNN case) with at least one vector of outputs per row. Output rows are computed a vector of
// outputs at a time straight from the input rows: two loads and an even/odd shuffle give the
// kw = 0 and kw = 1 taps (kw = 2: the same from a load two elements further on), so nothing is
// staged through phase planes. Windows that reach into the padding (or loads that would run past
// an input row) read a padded copy of the plane instead.

struct S2Plan {
  bool use = false;
  int vb = 16;
  index_t Hn = 0, Wn = 0;  // padded rows / columns the forward kernels read
  bool copy = false;       // forward reads a padded copy of the plane
  bool padded = false;     // some window reaches outside the input (max: -inf fixup)
  index_t OWr = 0;         // avg backward: outputs per row rounded up to whole vectors (+1 for kW 3)
  index_t ldb = 0;         // avg backward: row length of the padded gradient plane
  bool bwd_direct = false; // avg backward accumulates into dx itself (no padding, fits)
  bool bwd_store = false;  // avg backward: exact 2x2/s2 tiling, every dx element written once
};

S2Plan make_s2_plan(const Pool2dShape& s, index_t tsize) {
  S2Plan p;
  p.vb = row_vector_bytes();
  const index_t lanes = p.vb / tsize;
  if (s.sW != 2 || s.dW != 1 || (s.kW != 2 && s.kW != 3) || s.OW < lanes) return p;
  p.use = true;
  p.Hn = (s.OH - 1) * s.sH + (s.kH - 1) * s.dH + 1;
  p.Wn = 2 * s.OW + (s.kW == 3 ? 2 : 0);  // the loads for the last outputs reach column Wn - 1
  const index_t Wtouch = 2 * (s.OW - 1) + s.kW;
  p.padded = s.pH > 0 || s.pW > 0 || p.Hn > s.H || Wtouch > s.W;
  p.copy = s.pH > 0 || s.pW > 0 || p.Hn > s.H || p.Wn > s.W;
  p.OWr = (s.OW + (s.kW == 3 ? 1 : 0) + lanes - 1) / lanes * lanes;
  p.bwd_store = s.pH == 0 && s.pW == 0 && s.kW == 2 && s.kH == 2 && s.sH == 2 && s.dH == 1 &&
                s.W == 2 * s.OW && s.H == 2 * s.OH;
  p.bwd_direct = p.bwd_store || (s.pH == 0 && s.pW == 0 && p.Hn <= s.H && 2 * p.OWr <= s.W);
  p.ldb = p.bwd_direct ? s.W : std::max(2 * p.OWr, s.W + s.pW);
  return p;
}

// The plane in padded coordinates (rows [0, Hn), columns [0, Wn), input (h, w) at (h+pH, w+pW)).
template <class T>
NNK_INLINE void copy_padded(T* xp, const T* NNK_RESTRICT x, const Pool2dShape& s, index_t Hn, index_t Wn, T fill,
                            int vb) {
  const index_t left = std::min(s.pW, Wn);
  const index_t cols = std::max<index_t>(0, std::min(s.W, Wn - s.pW));
  for (index_t r = 0; r < Hn; ++r) {
    T* row = xp + r * Wn;
    const index_t h = r - s.pH;
    if (h < 0 || h >= s.H) {
      fill_n(row, Wn, fill);
      continue;
    }
    fill_n(row, left, fill);
    copy_row(row + left, x + h * s.W, cols, vb);
    fill_n(row + left + cols, Wn - left - cols, fill);
  }
}

// Max over the NT taps of L outputs (tv[t][k]: tap t of output k, in torch's scan order) with the
// winner's flat index start + 2k + toff[t]. Written as a plain loop over the lanes so that the
// compare/select is vectorised in the ISA-specific caller: GCC lowers vector-extension compares
// inside an inlined template element by element (they are expanded before inlining, for the
// baseline ISA), while the auto-vectoriser runs after inlining.
template <index_t L, int NT, class T>
NNK_INLINE void max_fold_lanes(T* NNK_RESTRICT y, index_t* NNK_RESTRICT idx, const T (*tv)[L],
                               const std::int32_t* toff, index_t start) {
#pragma GCC unroll 1
  for (index_t k = 0; k < L; ++k) {
    T best = tv[0][k];
    std::int32_t besti = toff[0];
#pragma GCC unroll 9
    for (int t = 1; t < NT; ++t) {
      const T v = tv[t][k];
      const bool take = (v > best) | (v != v);  // torch: first max wins, NaN always replaces
      best = take ? v : best;
      besti = take ? toff[t] : besti;
    }
    y[k] = best;
    idx[k] = start + 2 * k + besti;
  }
}

template <int B, int KH, int KW, class T, std::size_t... K>
NNK_INLINE void max_s2_plane_b(T* y, index_t* idx, const T* src, index_t ldx, const Pool2dShape& s,
                               std::index_sequence<K...>) {
  using W = VecB<B, T>;
  using V = typename W::V;
  using M = typename W::M;
  using E = typename W::E;
  constexpr index_t L = W::lanes;
  constexpr int NT = KH * KW;
  const M even = {static_cast<E>(2 * K)...};
  const M odd = {static_cast<E>(2 * K + 1)...};
  const index_t OH = s.OH, OW = s.OW, sH = s.sH, dH = s.dH, Win = s.W, pH = s.pH, pW = s.pW;
  std::int32_t toff[NT];
  for (int kh = 0; kh < KH; ++kh) {
    for (int kw = 0; kw < KW; ++kw) toff[kh * KW + kw] = static_cast<std::int32_t>(kh * dH * Win + kw);
  }
  alignas(64) T tv[NT][L];
  for (index_t oh = 0; oh < OH; ++oh) {
    const T* r0 = src + oh * sH * ldx;
    const index_t base = (oh * sH - pH) * Win - pW;
    for (index_t ow0 = 0;; ow0 += L) {
      if (ow0 + L > OW) ow0 = OW - L;  // the last vector overlaps the one before: same values
#pragma GCC unroll 3
      for (int kh = 0; kh < KH; ++kh) {
        const T* r = r0 + kh * dH * ldx + 2 * ow0;
        const V a = *reinterpret_cast<const V*>(r);
        const V b = *reinterpret_cast<const V*>(r + L);
        *reinterpret_cast<V*>(tv[kh * KW]) = __builtin_shuffle(a, b, even);
        *reinterpret_cast<V*>(tv[kh * KW + 1]) = __builtin_shuffle(a, b, odd);
        if (KW == 3) {
          const V a2 = *reinterpret_cast<const V*>(r + 2);
          const V b2 = *reinterpret_cast<const V*>(r + 2 + L);
          *reinterpret_cast<V*>(tv[kh * KW + 2]) = __builtin_shuffle(a2, b2, even);
        }
      }
      max_fold_lanes<L, NT>(y + oh * OW + ow0, idx + oh * OW + ow0, tv, toff, base + 2 * ow0);
      if (ow0 + L >= OW) break;
    }
  }
}

template <int B, int KW, class T, std::size_t... K>
NNK_INLINE void avg_s2_plane_b(T* y, const T* src, index_t ldx, const Pool2dShape& s, const T* inv,
                               std::index_sequence<K...>) {
  using W = VecB<B, T>;
  using V = typename W::V;
  using M = typename W::M;
  using E = typename W::E;
  constexpr index_t L = W::lanes;
  const M even = {static_cast<E>(2 * K)...};
  const M odd = {static_cast<E>(2 * K + 1)...};
  const index_t OH = s.OH, OW = s.OW, sH = s.sH, kH = s.kH;
  for (index_t oh = 0; oh < OH; ++oh) {
    const T* r0 = src + oh * sH * ldx;
    for (index_t ow0 = 0;; ow0 += L) {
      if (ow0 + L > OW) ow0 = OW - L;
      const T* r = r0 + 2 * ow0;
      V sum = __builtin_shuffle(*reinterpret_cast<const V*>(r), *reinterpret_cast<const V*>(r + L), even);
      for (index_t kh = 0; kh < kH; ++kh) {  // torch's order: row by row, left to right
        r = r0 + kh * ldx + 2 * ow0;
        const V a = *reinterpret_cast<const V*>(r);
        const V b = *reinterpret_cast<const V*>(r + L);
        if (kh > 0) sum += __builtin_shuffle(a, b, even);
        sum += __builtin_shuffle(a, b, odd);
        if (KW == 3) {
          const V a2 = *reinterpret_cast<const V*>(r + 2);
          const V b2 = *reinterpret_cast<const V*>(r + 2 + L);
          sum += __builtin_shuffle(a2, b2, even);
        }
      }
      *reinterpret_cast<V*>(y + oh * OW + ow0) = sum * *reinterpret_cast<const V*>(inv + oh * OW + ow0);
      if (ow0 + L >= OW) break;
    }
  }
}

// Avg backward of one plane into dxp (row length ldx: dx itself or a padded scratch plane).
// g row: dy/divisor with a zero before it (gbuf[0]) and zeros after it up to OWr.
template <int B, int KW, class T, std::size_t... K>
NNK_INLINE void avg_bwd_s2_plane_b(T* dxp, index_t ldx, const T* dy, const T* inv, const Pool2dShape& s,
                                   const S2Plan& p, T* gbuf, std::index_sequence<K...>) {
  using W = VecB<B, T>;
  using V = typename W::V;
  using M = typename W::M;
  using E = typename W::E;
  constexpr index_t L = W::lanes;
  const M lo = {static_cast<E>(K / 2 + (K % 2) * L)...};
  const M hi = {static_cast<E>(L / 2 + K / 2 + (K % 2) * L)...};
  const index_t OH = s.OH, OW = s.OW, sH = s.sH, kH = s.kH, OWr = p.OWr;
  if (p.bwd_store) {
    // 2x2/s2 tiling: dx[2oh + kh][2ow + kw] = g[oh][ow], each element written once.
    for (index_t oh = 0; oh < OH; ++oh) {
      T* r0 = dxp + 2 * oh * ldx;
      for (index_t ow0 = 0;; ow0 += L) {
        if (ow0 + L > OW) ow0 = OW - L;
        const V g = *reinterpret_cast<const V*>(dy + oh * OW + ow0) * *reinterpret_cast<const V*>(inv + oh * OW + ow0);
        const V gl = __builtin_shuffle(g, g, lo);
        const V gh = __builtin_shuffle(g, g, hi);
        *reinterpret_cast<V*>(r0 + 2 * ow0) = gl;
        *reinterpret_cast<V*>(r0 + 2 * ow0 + L) = gh;
        *reinterpret_cast<V*>(r0 + ldx + 2 * ow0) = gl;
        *reinterpret_cast<V*>(r0 + ldx + 2 * ow0 + L) = gh;
        if (ow0 + L >= OW) break;
      }
    }
    return;
  }
  gbuf[0] = 0;
  for (index_t ow = OW; ow < OWr; ++ow) gbuf[1 + ow] = 0;
  for (index_t oh = 0; oh < OH; ++oh) {
    const T* NNK_RESTRICT dyr = dy + oh * OW;
    const T* NNK_RESTRICT ir = inv + oh * OW;
    T* NNK_RESTRICT g = gbuf + 1;
    for (index_t ow = 0; ow < OW; ++ow) g[ow] = dyr[ow] * ir[ow];
    T* r0 = dxp + oh * sH * ldx;
    for (index_t ow0 = 0; ow0 < OWr; ow0 += L) {
      // input column 2j gets g[j] (kw 0) + g[j-1] (kw 2), column 2j+1 gets g[j] (kw 1)
      const V gv = *reinterpret_cast<const V*>(gbuf + 1 + ow0);
      const V ev = KW == 3 ? gv + *reinterpret_cast<const V*>(gbuf + ow0) : gv;
      const V el = __builtin_shuffle(ev, gv, lo);
      const V eh = __builtin_shuffle(ev, gv, hi);
      for (index_t kh = 0; kh < kH; ++kh) {
        T* r = r0 + kh * ldx + 2 * ow0;
        *reinterpret_cast<V*>(r) += el;
        *reinterpret_cast<V*>(r + L) += eh;
      }
    }
  }
}

template <int B, class T>
NNK_INLINE void max_s2_plane(T* y, index_t* idx, const T* src, index_t ldx, const Pool2dShape& s) {
  constexpr auto seq = std::make_index_sequence<static_cast<std::size_t>(VecB<B, T>::lanes)>();
  const int kh = static_cast<int>(s.kH);
  if (s.kW == 2) {
    if (kh == 1) max_s2_plane_b<B, 1, 2>(y, idx, src, ldx, s, seq);
    else if (kh == 2) max_s2_plane_b<B, 2, 2>(y, idx, src, ldx, s, seq);
    else max_s2_plane_b<B, 3, 2>(y, idx, src, ldx, s, seq);
  } else {
    if (kh == 1) max_s2_plane_b<B, 1, 3>(y, idx, src, ldx, s, seq);
    else if (kh == 2) max_s2_plane_b<B, 2, 3>(y, idx, src, ldx, s, seq);
    else max_s2_plane_b<B, 3, 3>(y, idx, src, ldx, s, seq);
  }
}

template <int B, class T>
NNK_INLINE void avg_s2_plane(T* y, const T* src, index_t ldx, const Pool2dShape& s, const T* inv) {
  constexpr auto seq = std::make_index_sequence<static_cast<std::size_t>(VecB<B, T>::lanes)>();
  if (s.kW == 2) avg_s2_plane_b<B, 2>(y, src, ldx, s, inv, seq);
  else avg_s2_plane_b<B, 3>(y, src, ldx, s, inv, seq);
}

template <int B, class T>
NNK_INLINE void avg_bwd_s2_plane(T* dxp, index_t ldx, const T* dy, const T* inv, const Pool2dShape& s,
                                 const S2Plan& p, T* gbuf) {
  constexpr auto seq = std::make_index_sequence<static_cast<std::size_t>(VecB<B, T>::lanes)>();
  if (s.kW == 2) avg_bwd_s2_plane_b<B, 2>(dxp, ldx, dy, inv, s, p, gbuf, seq);
  else avg_bwd_s2_plane_b<B, 3>(dxp, ldx, dy, inv, s, p, gbuf, seq);
}

// Planes [p0, p1). xpad: Hn*Wn scratch when p.copy.
template <class T>
NNK_INLINE void max_s2_planes(T* y, index_t* idx, const T* x, const Pool2dShape* sp, const S2Plan* pp, index_t p0,
                              index_t p1, T* xpad) {
  const Pool2dShape& s = *sp;
  const S2Plan& p = *pp;
  const index_t in_plane = s.H * s.W, out_plane = s.OH * s.OW;
  for (index_t q = p0; q < p1; ++q) {
    const T* xpl = x + q * in_plane;
    T* ypl = y + q * out_plane;
    index_t* ipl = idx + q * out_plane;
    const T* src = xpl;
    index_t ldx = s.W;
    if (p.copy) {
      copy_padded(xpad, xpl, s, p.Hn, p.Wn, neg_inf<T>(), p.vb);
      src = xpad;
      ldx = p.Wn;
    }
    if (p.vb == 64) max_s2_plane<64>(ypl, ipl, src, ldx, s);
    else if (p.vb == 32) max_s2_plane<32>(ypl, ipl, src, ldx, s);
    else max_s2_plane<16>(ypl, ipl, src, ldx, s);
    if (p.padded) {
      // A padding element can only have won where the result is -inf: redo those windows exactly.
      int any = 0;
      for (index_t o = 0; o < out_plane; ++o) any |= static_cast<int>(ypl[o] == neg_inf<T>());
      if (any) {
        for (index_t oh = 0; oh < s.OH; ++oh) {
          for (index_t ow = 0; ow < s.OW; ++ow) {
            const index_t o = oh * s.OW + ow;
            if (ypl[o] == neg_inf<T>()) max_window_exact(ypl + o, ipl + o, xpl, s, oh, ow);
          }
        }
      }
    }
  }
}
NNK_MULTIVERSION(max_s2_planes_mv, max_s2_planes)

template <class T>
NNK_INLINE void avg_s2_planes(T* y, const T* x, const Pool2dShape* sp, const S2Plan* pp, const T* inv, index_t p0,
                              index_t p1, T* xpad) {
  const Pool2dShape& s = *sp;
  const S2Plan& p = *pp;
  const index_t in_plane = s.H * s.W, out_plane = s.OH * s.OW;
  for (index_t q = p0; q < p1; ++q) {
    const T* src = x + q * in_plane;
    index_t ldx = s.W;
    if (p.copy) {
      copy_padded(xpad, src, s, p.Hn, p.Wn, T(0), p.vb);
      src = xpad;
      ldx = p.Wn;
    }
    T* ypl = y + q * out_plane;
    if (p.vb == 64) avg_s2_plane<64>(ypl, src, ldx, s, inv);
    else if (p.vb == 32) avg_s2_plane<32>(ypl, src, ldx, s, inv);
    else avg_s2_plane<16>(ypl, src, ldx, s, inv);
  }
}
NNK_MULTIVERSION(avg_s2_planes_mv, avg_s2_planes)

// Planes [p0, p1). dxpad: Hn*ldb scratch unless the gradient goes straight into dx; gbuf: OWr+1.
template <class T>
NNK_INLINE void avg_bwd_s2_planes(T* dx, const T* dy, const Pool2dShape* sp, const S2Plan* pp, const T* inv,
                                  index_t p0, index_t p1, T* dxpad, T* gbuf) {
  const Pool2dShape& s = *sp;
  const S2Plan& p = *pp;
  const index_t in_plane = s.H * s.W, out_plane = s.OH * s.OW;
  for (index_t q = p0; q < p1; ++q) {
    T* dxpl = dx + q * in_plane;
    const T* dypl = dy + q * out_plane;
    T* dst = p.bwd_direct ? dxpl : dxpad;
    const index_t ldx = p.bwd_direct ? s.W : p.ldb;
    if (!p.bwd_store) fill_n(dst, (p.bwd_direct ? s.H : p.Hn) * ldx, T(0));
    if (p.vb == 64) avg_bwd_s2_plane<64>(dst, ldx, dypl, inv, s, p, gbuf);
    else if (p.vb == 32) avg_bwd_s2_plane<32>(dst, ldx, dypl, inv, s, p, gbuf);
    else avg_bwd_s2_plane<16>(dst, ldx, dypl, inv, s, p, gbuf);
    if (!p.bwd_direct) {
      // Crop the padded gradient back to the input plane (rows no window reached are 0).
      for (index_t h = 0; h < s.H; ++h) {
        T* out = dxpl + h * s.W;
        if (h + s.pH >= p.Hn) {
          fill_n(out, s.W, T(0));
          continue;
        }
        copy_row(out, dxpad + (h + s.pH) * ldx + s.pW, s.W, p.vb);
      }
    }
  }
}
NNK_MULTIVERSION(avg_bwd_s2_planes_mv, avg_bwd_s2_planes)

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
  const bool small = n < 2147483647 && !g_force_wide_indices.load();
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

void pool_force_wide_indices(bool on) { g_force_wide_indices.store(on); }

template <class T>
void max_pool2d_forward(T* y, index_t* indices, const T* x, const Pool2dShape& s) {
  if (s.planes <= 0 || s.OH <= 0 || s.OW <= 0) return;
  NNK_ASSERT(s.H > 0 && s.W > 0 && s.kH > 0 && s.kW > 0 && s.sH > 0 && s.sW > 0 && s.dH > 0 && s.dW > 0);
  if (is_global(s)) return global_max(y, indices, x, s.planes, s.H * s.W);
  const S2Plan s2 = make_s2_plan(s, sizeof(T));
  // (kH <= 3: the taps of a window are staged for the lane-wise compare; kH*dH*W: int32 offsets)
  if (s2.use && s.kH <= 3 && s.kH * s.dH * s.W < 2147483647 && !g_force_wide_indices.load()) {
    const S2Plan* pp = &s2;
    const Pool2dShape* sp = &s;
    for_plane_ranges(s.planes, s.H * s.W + 3 * s.OH * s.OW, [&](index_t p0, index_t p1) {
      T* xpad = pp->copy ? scratch<T>(kScratch0, pp->Hn * pp->Wn) : nullptr;
      max_s2_planes_mv(y, indices, x, sp, pp, p0, p1, xpad);
    });
    return;
  }
  const PoolPlan plan = make_plan(s, /*with_base=*/true);
  const PoolPlan* pl = &plan;
  const Pool2dShape* sp = &s;
  const int taps = fixed_taps(s);
  // Tap offsets as int32 while they fit (the same lane count as float).
  const bool small = (s.kH - 1) * s.dH * s.W + (s.kW - 1) * s.dW < 2147483647 && !g_force_wide_indices.load();
  for_plane_ranges(s.planes, s.H * s.W + 3 * s.OH * s.OW, [&](index_t p0, index_t p1) {
    T* Q = pl->direct ? nullptr : scratch<T>(kScratch0, pl->phase_elems());
    T* yflat = pl->compact ? scratch<T>(kScratch1, pl->L) : nullptr;
    index_t* iflat = pl->compact ? scratch<index_t>(kScratch2, pl->L) : nullptr;
    if (small) {
      auto* toff = taps ? nullptr : scratch<std::int32_t>(kScratch3, pl->L);
      max_pool_planes_mv(y, indices, x, sp, pl, p0, p1, Q, yflat, iflat, toff, taps);
    } else {
      auto* toff = scratch<index_t>(kScratch3, pl->L);
      max_pool_planes_mv(y, indices, x, sp, pl, p0, p1, Q, yflat, iflat, toff, 0);
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
  const S2Plan s2 = make_s2_plan(s, sizeof(T));
  if (s2.use) {
    T* inv = scratch<T>(kScratch4, s.OH * s.OW);  // the calling thread's slot, read by all
    avg_inverse_divisors(inv, s, s.OW, s.OH * s.OW, count_include_pad, divisor_override);
    const T* cinv = inv;
    const S2Plan* pp = &s2;
    const Pool2dShape* sp = &s;
    for_plane_ranges(s.planes, s.H * s.W + s.OH * s.OW, [&](index_t p0, index_t p1) {
      T* xpad = pp->copy ? scratch<T>(kScratch0, pp->Hn * pp->Wn) : nullptr;
      avg_s2_planes_mv(y, x, sp, pp, cinv, p0, p1, xpad);
    });
    return;
  }
  const PoolPlan plan = make_plan(s, /*with_base=*/false);
  const PoolPlan* pl = &plan;
  const Pool2dShape* sp = &s;
  // 1/divisor per flattened output: the calling thread's slot kScratch4 (workers use 0-3), read by all.
  T* inv = scratch<T>(kScratch4, plan.L);
  avg_inverse_divisors(inv, s, plan.Wq, plan.L, count_include_pad, divisor_override);
  const T* cinv = inv;
  const int taps = fixed_taps(s);
  for_plane_ranges(s.planes, s.H * s.W + s.OH * s.OW, [&](index_t p0, index_t p1) {
    T* Q = pl->direct ? nullptr : scratch<T>(kScratch0, pl->phase_elems());
    T* yflat = pl->compact ? scratch<T>(kScratch1, pl->L) : nullptr;
    avg_pool_planes_mv(y, x, sp, pl, cinv, p0, p1, Q, yflat, taps);
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
  const S2Plan s2 = make_s2_plan(s, sizeof(T));
  if (s2.use) {
    T* inv = scratch<T>(kScratch4, s.OH * s.OW);
    avg_inverse_divisors(inv, s, s.OW, s.OH * s.OW, count_include_pad, divisor_override);
    const T* cinv = inv;
    const S2Plan* pp = &s2;
    const Pool2dShape* sp = &s;
    const index_t lanes = s2.vb / static_cast<index_t>(sizeof(T));
    for_plane_ranges(s.planes, n + s.OH * s.OW, [&](index_t p0, index_t p1) {
      T* dxpad = pp->bwd_direct ? nullptr : scratch<T>(kScratch0, pp->Hn * pp->ldb);
      T* gbuf = scratch<T>(kScratch1, pp->OWr + 1 + lanes);
      avg_bwd_s2_planes_mv(dx, dy, sp, pp, cinv, p0, p1, dxpad, gbuf);
    });
    return;
  }
  const PoolPlan plan = make_plan(s, /*with_base=*/false);
  const PoolPlan* pl = &plan;
  const Pool2dShape* sp = &s;
  T* inv = scratch<T>(kScratch4, plan.L);
  avg_inverse_divisors(inv, s, plan.Wq, plan.L, count_include_pad, divisor_override);
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
