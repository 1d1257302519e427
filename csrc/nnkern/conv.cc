#include "nnkern/conv.h"

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <exception>
#include <type_traits>

#include "nnkern/gemm.h"
#include "nnkern/parallel.h"
#include "nnkern/simd.h"
#include "nnkern/workspace.h"

// Column runs are short (one output row, often 8-32 elements): GCC's memcpy/memset idiom calls
// cost more than such copies, so these loops stay inline vector code.
#pragma GCC optimize("no-tree-loop-distribute-patterns")

namespace nnkern {
namespace {

// Backward sums the batch in at most this many image chunks, each with its own dW/db partial.
// Enough to keep 2-8 threads busy; few enough that adding the partials stays ~1% of the work.
constexpr index_t kMaxRedChunks = 8;
// One thread's buffers (column block, image copies) may use this fraction of workspace_limit() ...
constexpr index_t kThreadShare = 8;
// ... and the dW/db partials together this fraction.
constexpr index_t kPartialShare = 4;
// A capped pixel block still holds at least this many pixels (GEMM efficiency).
constexpr index_t kMinBlockPixels = 64;
// Channels-last columns need contiguous runs at least this long to pay for the transposes.
constexpr index_t kMinNhwcRun = 16;
constexpr int kMaxTeam = 1024;
// Below this much work (multiply-adds plus copied elements) per thread a parallel region costs
// more than it saves (~1-2 us to wake a team; much more on an oversubscribed machine).
constexpr double kMinWorkPerThread = 1.0e6;

// Scratch slots. Per thread: the column block, the image copies (x; dx or dy) and the own SGEMM's
// packed blocks. Shared (taken by the calling thread before a parallel region, read-only or
// written per chunk inside it): the dW/db partials and the prepared weights.
constexpr int kSlotColumns = kScratch0;
constexpr int kSlotDwPartials = kScratch1;
constexpr int kSlotDbPartials = kScratch2;
constexpr int kSlotImage = kScratch3;
constexpr int kSlotImageGrad = kScratch4;
constexpr int kSlotWeight = kScratch5;
constexpr int kSlotPackB = kScratch6;
constexpr int kSlotPackA = kScratch7;

// Lambdas passed to NNK_INLINE helpers must be inlined too, so that they are compiled for the
// caller's ISA (simd.h).
#define NNK_LAMBDA_INLINE __attribute__((always_inline))

// ---------------------------------------------------------------------------------------------
// Runs: short contiguous copies without scalar tails.
//
// Blocks of 16 elements are fixed-length loops the compiler turns into whole vectors (one zmm,
// two ymm or four xmm). A copy's tail is one more block that overlaps the previous one (it
// writes the same values again), so a run of 15, 24 or 31 elements costs 1-2 vector moves
// instead of up to 15 scalar ones. Adds cannot overlap: their tail steps down 8, 4, 1.

template <int B, class T>
NNK_INLINE void copy_block(T* NNK_RESTRICT d, const T* NNK_RESTRICT s) {
  for (int l = 0; l < B; ++l) d[l] = s[l];
}

template <int B, class T>
NNK_INLINE void copy_block_s2(T* NNK_RESTRICT d, const T* NNK_RESTRICT s) {
  for (int l = 0; l < B; ++l) d[l] = s[2 * l];
}

template <int B, class T>
NNK_INLINE void zero_block(T* NNK_RESTRICT d) {
  for (int l = 0; l < B; ++l) d[l] = T(0);
}

template <int B, class T>
NNK_INLINE void add_block(T* NNK_RESTRICT d, const T* NNK_RESTRICT s) {
  for (int l = 0; l < B; ++l) d[l] += s[l];
}

// d[0..n) = s[0..n)
template <class T>
NNK_INLINE void copy_run(T* NNK_RESTRICT d, const T* NNK_RESTRICT s, index_t n) {
  if (n >= 16) {
    index_t i = 0;
    for (; i + 16 <= n; i += 16) copy_block<16>(d + i, s + i);
    if (i < n) copy_block<16>(d + n - 16, s + n - 16);
  } else if (n >= 8) {
    copy_block<8>(d, s);
    copy_block<8>(d + n - 8, s + n - 8);
  } else if (n >= 4) {
    copy_block<4>(d, s);
    copy_block<4>(d + n - 4, s + n - 4);
  } else {
    for (index_t i = 0; i < n; ++i) d[i] = s[i];
  }
}

// d[0..n) = s[0], s[2], ... s[2(n-1)]
template <class T>
NNK_INLINE void copy_run_s2(T* NNK_RESTRICT d, const T* NNK_RESTRICT s, index_t n) {
  if (n >= 16) {
    index_t i = 0;
    for (; i + 16 <= n; i += 16) copy_block_s2<16>(d + i, s + 2 * i);
    if (i < n) copy_block_s2<16>(d + n - 16, s + 2 * (n - 16));
  } else {
    for (index_t i = 0; i < n; ++i) d[i] = s[2 * i];
  }
}

template <class T>
NNK_INLINE void zero_run(T* NNK_RESTRICT d, index_t n) {
  if (n >= 16) {
    index_t i = 0;
    for (; i + 16 <= n; i += 16) zero_block<16>(d + i);
    if (i < n) zero_block<16>(d + n - 16);
  } else {
    for (index_t i = 0; i < n; ++i) d[i] = T(0);
  }
}

// d[0..n) += s[0..n)
template <class T>
NNK_INLINE void add_run(T* NNK_RESTRICT d, const T* NNK_RESTRICT s, index_t n) {
  index_t i = 0;
  for (; i + 16 <= n; i += 16) add_block<16>(d + i, s + i);
  if (i + 8 <= n) {
    add_block<8>(d + i, s + i);
    i += 8;
  }
  if (i + 4 <= n) {
    add_block<4>(d + i, s + i);
    i += 4;
  }
  for (; i < n; ++i) d[i] += s[i];
}

// d[i*S] = s[i] / d[i*S] += s[i] for any stride (scalar; strides >= 2 only).
template <class T>
NNK_INLINE void copy_run_strided(T* NNK_RESTRICT d, const T* NNK_RESTRICT s, index_t n, index_t S) {
  if (S == 1) {
    copy_run(d, s, n);
  } else if (S == 2) {
    copy_run_s2(d, s, n);
  } else {
    for (index_t i = 0; i < n; ++i) d[i] = s[i * S];
  }
}

template <class T>
NNK_INLINE void add_run_strided(T* NNK_RESTRICT d, const T* NNK_RESTRICT s, index_t n, index_t S) {
  if (S == 1) {
    add_run(d, s, n);
  } else {
    for (index_t i = 0; i < n; ++i) d[i * S] += s[i];
  }
}

// ---------------------------------------------------------------------------------------------
// NCHW columns (torch's unfold layout): col [C*KH*KW, pixels], one row per (c, ki, kj).

// Output columns ow in [0, OW) whose input column ow*S + off lies inside [0, W).
struct Span {
  index_t lo, hi;
};
NNK_INLINE Span valid_span(index_t off, index_t S, index_t W, index_t OW) {
  index_t lo = off >= 0 ? 0 : (-off + S - 1) / S;
  index_t hi = W - 1 - off < 0 ? 0 : (W - 1 - off) / S + 1;
  lo = std::min(lo, OW);
  hi = std::max(lo, std::min(hi, OW));
  return {lo, hi};
}

// Walks the column rows of channels [c0, c1) for output pixels [p0, p1) of one image and calls
// run(row_piece, ow_begin, ow_end, input_row | nullptr, off, span) for every piece of one output
// row. The piece covers output columns [ow_begin, ow_end) of one output row oh; input_row is the
// input row that (oh, ki) reads, or nullptr when it falls into the top/bottom padding. Columns
// in [span.lo, span.hi) read input_row[ow*SW + off]; the others are left/right padding. Row
// pieces are contiguous runs of the block's column matrix (row length p1 - p0).
template <class ColT, class XT, class Run>
NNK_INLINE void walk_columns(ColT* col, XT* x, const ConvGeom& g, index_t c0, index_t c1, index_t p0,
                             index_t p1, Run&& run) {
  const index_t len = p1 - p0;
  const index_t oh_first = p0 / g.OW, ow_first = p0 - oh_first * g.OW;
  for (index_t c = c0; c < c1; ++c) {
    XT* xc = x + c * g.H * g.W;
    for (index_t ki = 0; ki < g.KH; ++ki) {
      for (index_t kj = 0; kj < g.KW; ++kj) {
        ColT* row = col + ((c * g.KH + ki) * g.KW + kj) * len;
        const index_t off = kj * g.DW - g.PW;
        const Span sp = valid_span(off, g.SW, g.W, g.OW);
        index_t q = 0, ow0 = ow_first;
        index_t ih = oh_first * g.SH + ki * g.DH - g.PH;
        while (q < len) {
          const index_t ow1 = std::min(g.OW, ow0 + (len - q));
          run(row + q, ow0, ow1, (ih >= 0 && ih < g.H) ? xc + ih * g.W : nullptr, off, sp);
          q += ow1 - ow0;
          ow0 = 0;
          ih += g.SH;
        }
      }
    }
  }
}

// Rows [oh_lo, oh_hi) of output rows whose input row oh*SH + ki*DH - PH lies inside [0, H).
NNK_INLINE void valid_rows(const ConvGeom& g, index_t ki, index_t& oh_lo, index_t& oh_hi) {
  const Span sp = valid_span(ki * g.DH - g.PH, g.SH, g.H, g.OH);
  oh_lo = sp.lo;
  oh_hi = sp.hi;
}

// col [C*KH*KW, p1-p0] (the rows of channels [c0, c1))  x [C, H, W] (one image)
template <class T>
NNK_INLINE void im2col_block_body(T* col, const T* x, const ConvGeom* gp, index_t c0, index_t c1,
                                  index_t p0, index_t p1) {
  const ConvGeom& g = *gp;
  if (p0 == 0 && p1 == g.P()) {
    // Whole image: per (c, ki, kj) the valid rows and columns are one rectangle; a tight loop
    // over its rows with fixed run lengths (the usual case).
    const index_t P = g.P();
    for (index_t c = c0; c < c1; ++c) {
      const T* xc = x + c * g.H * g.W;
      for (index_t ki = 0; ki < g.KH; ++ki) {
        index_t oh_lo, oh_hi;
        valid_rows(g, ki, oh_lo, oh_hi);
        for (index_t kj = 0; kj < g.KW; ++kj) {
          T* row = col + ((c * g.KH + ki) * g.KW + kj) * P;
          const index_t off = kj * g.DW - g.PW;
          const Span sp = valid_span(off, g.SW, g.W, g.OW);
          zero_run(row, oh_lo * g.OW);
          const T* src = xc + (oh_lo * g.SH + ki * g.DH - g.PH) * g.W + sp.lo * g.SW + off;
          for (index_t oh = oh_lo; oh < oh_hi; ++oh) {
            T* d = row + oh * g.OW;
            zero_run(d, sp.lo);
            if (sp.hi > sp.lo) copy_run_strided(d + sp.lo, src, sp.hi - sp.lo, g.SW);
            zero_run(d + sp.hi, g.OW - sp.hi);
            src += g.SH * g.W;
          }
          zero_run(row + oh_hi * g.OW, (g.OH - oh_hi) * g.OW);
        }
      }
    }
    return;
  }
  walk_columns(col, x, g, c0, c1, p0, p1,
               [&](T* d, index_t ow0, index_t ow1, const T* in, index_t off, Span sp) NNK_LAMBDA_INLINE {
                 if (in == nullptr) {
                   zero_run(d, ow1 - ow0);
                   return;
                 }
                 const index_t a = std::clamp(sp.lo, ow0, ow1);
                 const index_t b = std::clamp(sp.hi, ow0, ow1);
                 zero_run(d, a - ow0);
                 if (b > a) copy_run_strided(d + (a - ow0), in + a * g.SW + off, b - a, g.SW);
                 zero_run(d + (b - ow0), ow1 - b);
               });
}
NNK_MULTIVERSION(im2col_block, im2col_block_body)

// x [C, H, W] (one image; channels [c0, c1) accumulated into)  col [C*KH*KW, p1-p0]
template <class T>
NNK_INLINE void col2im_block_body(T* x, const T* col, const ConvGeom* gp, index_t c0, index_t c1,
                                  index_t p0, index_t p1) {
  const ConvGeom& g = *gp;
  if (p0 == 0 && p1 == g.P()) {  // whole image: see im2col_block_body
    const index_t P = g.P();
    for (index_t c = c0; c < c1; ++c) {
      T* xc = x + c * g.H * g.W;
      for (index_t ki = 0; ki < g.KH; ++ki) {
        index_t oh_lo, oh_hi;
        valid_rows(g, ki, oh_lo, oh_hi);
        for (index_t kj = 0; kj < g.KW; ++kj) {
          const T* row = col + ((c * g.KH + ki) * g.KW + kj) * P;
          const index_t off = kj * g.DW - g.PW;
          const Span sp = valid_span(off, g.SW, g.W, g.OW);
          if (sp.hi <= sp.lo) continue;
          T* dst = xc + (oh_lo * g.SH + ki * g.DH - g.PH) * g.W + sp.lo * g.SW + off;
          for (index_t oh = oh_lo; oh < oh_hi; ++oh) {
            add_run_strided(dst, row + oh * g.OW + sp.lo, sp.hi - sp.lo, g.SW);
            dst += g.SH * g.W;
          }
        }
      }
    }
    return;
  }
  walk_columns(col, x, g, c0, c1, p0, p1,
               [&](const T* d, index_t ow0, index_t ow1, T* in, index_t off, Span sp) NNK_LAMBDA_INLINE {
                 if (in == nullptr) return;
                 const index_t a = std::clamp(sp.lo, ow0, ow1);
                 const index_t b = std::clamp(sp.hi, ow0, ow1);
                 if (b > a) add_run_strided(in + a * g.SW + off, d + (a - ow0), b - a, g.SW);
               });
}
NNK_MULTIVERSION(col2im_block, col2im_block_body)

// ---------------------------------------------------------------------------------------------
// Channels-last columns: col [pixels, K], K ordered (group, ki, kj, c within the group).
//
// The image is first copied once into a zero-padded channels-last buffer xt [Hp, Wp, C], so
// every window read is a contiguous run of channels (KW*C long when G == 1 and DW == 1) with no
// bounds checks. For C >= 16 this beats the NCHW walk, whose runs are one output row long.

// Padded extent actually read by the kernel windows (rows/cols past it are never touched).
struct PaddedDims {
  index_t Hp, Wp;
};
inline PaddedDims padded_dims(const ConvGeom& g) {
  return {(g.OH - 1) * g.SH + (g.KH - 1) * g.DH + 1, (g.OW - 1) * g.SW + (g.KW - 1) * g.DW + 1};
}

// 2-D transposes in register tiles of VB bytes x VB bytes (VB = 64: 16x16 floats, 8x8 doubles),
// written with GCC vector extensions so the same source compiles at every ISA level: a butterfly
// of log2(L) two-vector shuffles per row pair swaps the off-diagonal blocks of L/2, ..., 2, 1
// lanes. VB must match the ISA's vector width (with_tile_bytes): GCC splits wider vectors and
// lowers their shuffles element by element (64-byte tiles under AVX2 ran at ~1.6 GB/s, a quarter
// of a strided convolution's time).
template <class T, int VB = 64>
struct Tile {
  static constexpr int L = VB / sizeof(T);
  using IntT = std::conditional_t<sizeof(T) == 4, std::int32_t, std::int64_t>;
  typedef T Vec __attribute__((vector_size(VB)));
  typedef IntT Mask __attribute__((vector_size(VB)));
};

template <class T, int BS, int VB = 64>
NNK_INLINE void tile_stage(typename Tile<T, VB>::Vec* v) {
  constexpr int L = Tile<T, VB>::L;
  typename Tile<T, VB>::Mask lo, hi;
  for (int j = 0; j < L; ++j) {
    lo[j] = (j & BS) == 0 ? j : L + j - BS;
    hi[j] = (j & BS) == 0 ? j + BS : L + j;
  }
  for (int r = 0; r < L; ++r) {
    if (r & BS) continue;
    const typename Tile<T, VB>::Vec a = v[r], b = v[r + BS];
    v[r] = __builtin_shuffle(a, b, lo);
    v[r + BS] = __builtin_shuffle(a, b, hi);
  }
}

// dst[j*ldd + i] = src[i*lds + j] for a full L x L tile.
template <class T, int VB = 64>
NNK_INLINE void transpose_tile(T* NNK_RESTRICT dst, index_t ldd, const T* NNK_RESTRICT src, index_t lds) {
  constexpr int L = Tile<T, VB>::L;
  typename Tile<T, VB>::Vec v[L];
  for (int i = 0; i < L; ++i) __builtin_memcpy(&v[i], src + i * lds, sizeof(v[i]));
  if constexpr (L >= 16) tile_stage<T, 8, VB>(v);
  if constexpr (L >= 8) tile_stage<T, 4, VB>(v);
  if constexpr (L >= 4) tile_stage<T, 2, VB>(v);
  tile_stage<T, 1, VB>(v);
  for (int j = 0; j < L; ++j) __builtin_memcpy(dst + j * ldd, &v[j], sizeof(v[j]));
}

// dst[j*ldd + i] = src[i*lds + j] for i < rows, j < cols: full tiles, scalar edges.
template <class T, int VB>
NNK_INLINE void transpose_2d(T* NNK_RESTRICT dst, index_t ldd, const T* NNK_RESTRICT src, index_t lds,
                             index_t rows, index_t cols) {
  constexpr int L = Tile<T, VB>::L;
  const index_t rows_full = rows / L * L, cols_full = cols / L * L;
  for (index_t i0 = 0; i0 < rows_full; i0 += L) {
    for (index_t j0 = 0; j0 < cols_full; j0 += L) {
      transpose_tile<T, VB>(dst + j0 * ldd + i0, ldd, src + i0 * lds + j0, lds);
    }
    for (index_t i = i0; i < i0 + L; ++i) {
      for (index_t j = cols_full; j < cols; ++j) dst[j * ldd + i] = src[i * lds + j];
    }
  }
  for (index_t i = rows_full; i < rows; ++i) {
    for (index_t j = 0; j < cols; ++j) dst[j * ldd + i] = src[i * lds + j];
  }
}

// Channels-last rows from the (C, h_end, w_end) interior of one NCHW image (to_nhwc), or that
// interior back from them: row ih of the channels-last side at + ih * drow, pixel w at + w * C.
// Channels go in blocks of one tile (L of them) over all rows: the L channel rows (HW apart, often
// a multiple of 4 KiB) then stay in L1 while their tiles pass; with all C channels per image row
// (the obvious order) those rows compete for one cache set and the transposes ran at ~5 instead
// of ~12 GB/s (AVX2, 64 channels of 32 x 32).
template <class T, int VB>
NNK_INLINE void nhwc_strips(T* dst, const T* src, index_t drow, const ConvGeom& g, index_t h_end, index_t w_end,
                            bool to_nhwc) {
  constexpr int L = Tile<T, VB>::L;
  const index_t C = g.C, HW = g.H * g.W;
  for (index_t c0 = 0; c0 < C; c0 += L) {
    const index_t nc = std::min<index_t>(L, C - c0);
    for (index_t ih = 0; ih < h_end; ++ih) {
      const index_t nchw = c0 * HW + ih * g.W, nhwc = ih * drow + c0;  // the strip's offsets
      if (to_nhwc) transpose_2d<T, VB>(dst + nhwc, C, src + nchw, HW, nc, w_end);
      else transpose_2d<T, VB>(dst + nchw, HW, src + nhwc, C, w_end, nc);
    }
  }
}

// Calls f(std::integral_constant<int, VB>) with the tile bytes of the ISA level in use. All three
// instantiations are compiled into every NNK_MULTIVERSION wrapper; the level picks the one that
// suits the wrapper's ISA.
template <class F>
NNK_INLINE void with_tile_bytes(F&& f) {
  switch (simd::level()) {
    case simd::kAvx512: f(std::integral_constant<int, 64>{}); break;
    case simd::kAvx2: f(std::integral_constant<int, 32>{}); break;
    default: f(std::integral_constant<int, 16>{}); break;
  }
}

// xt [Hp, Wp, C] (zero outside the input)  x [C, H, W] (one image)
template <class T>
NNK_INLINE void to_padded_nhwc_body(T* xt, const T* x, const ConvGeom* gp, index_t Hp, index_t Wp) {
  const ConvGeom& g = *gp;
  const index_t C = g.C;
  // Rows: top padding, input rows inside the padded extent, the rest (bottom padding); columns
  // likewise. A large stride may leave part of the padding or input unread.
  const index_t top = std::min(g.PH, Hp), h_end = std::clamp<index_t>(Hp - g.PH, 0, g.H);
  const index_t left = std::min(g.PW, Wp), w_end = std::clamp<index_t>(Wp - g.PW, 0, g.W);
  zero_run(xt, top * Wp * C);
  zero_run(xt + (top + h_end) * Wp * C, (Hp - top - h_end) * Wp * C);
  for (index_t ih = 0; ih < h_end; ++ih) {
    T* row = xt + (g.PH + ih) * Wp * C;
    zero_run(row, left * C);
    zero_run(row + (left + w_end) * C, (Wp - left - w_end) * C);
  }
  // The (C, h_end, w_end) input slab becomes h_end rows of (w_end, C).
  with_tile_bytes([&](auto vb) NNK_LAMBDA_INLINE {
    nhwc_strips<T, decltype(vb)::value>(xt + (g.PH * Wp + g.PW) * C, x, Wp * C, g, h_end, w_end, true);
  });
}
NNK_MULTIVERSION(to_padded_nhwc, to_padded_nhwc_body)

// dx [C, H, W] (one image)  dxt [Hp, Wp, C]: the interior of dxt, transposed back; input
// positions past the padded extent are never read by the convolution, so their gradient is 0.
template <class T>
NNK_INLINE void from_padded_nhwc_body(T* dx, const T* dxt, const ConvGeom* gp, index_t Hp, index_t Wp) {
  const ConvGeom& g = *gp;
  const index_t C = g.C, HW = g.H * g.W;
  const index_t h_end = std::clamp<index_t>(Hp - g.PH, 0, g.H);
  const index_t w_end = std::clamp<index_t>(Wp - g.PW, 0, g.W);
  with_tile_bytes([&](auto vb) NNK_LAMBDA_INLINE {
    nhwc_strips<T, decltype(vb)::value>(dx, dxt + (g.PH * Wp + g.PW) * C, Wp * C, g, h_end, w_end, false);
  });
  for (index_t ih = 0; ih < g.H; ++ih) {
    T* dst = dx + ih * g.W;
    if (ih >= h_end) {
      for (index_t c = 0; c < C; ++c) zero_run(dst + c * HW, g.W);
    } else if (w_end < g.W) {
      for (index_t c = 0; c < C; ++c) zero_run(dst + c * HW + w_end, g.W - w_end);
    }
  }
}
NNK_MULTIVERSION(from_padded_nhwc, from_padded_nhwc_body)

// Calls run(col_run, xt_run, length) for every contiguous run of the channels-last columns of
// pixels [p0, p1): col [p1-p0, K], xt [Hp, Wp, C].
template <class ColT, class XT, class Run>
NNK_INLINE void walk_nhwc(ColT* col, XT* xt, const ConvGeom& g, index_t Wp, index_t p0, index_t p1, Run&& run) {
  const index_t C = g.C, Cg = g.Cg(), K = g.K();
  const bool whole_rows = g.G == 1 && g.DW == 1;  // the KW window columns are one run of KW*C
  index_t oh = p0 / g.OW, ow = p0 - oh * g.OW;
  for (index_t p = p0; p < p1; ++p) {
    ColT* dst = col + (p - p0) * K;
    XT* base = xt + (oh * g.SH * Wp + ow * g.SW) * C;
    if (whole_rows) {
      for (index_t ki = 0; ki < g.KH; ++ki) run(dst + ki * g.KW * C, base + ki * g.DH * Wp * C, g.KW * C);
    } else {
      for (index_t grp = 0; grp < g.G; ++grp) {
        for (index_t ki = 0; ki < g.KH; ++ki) {
          for (index_t kj = 0; kj < g.KW; ++kj) {
            run(dst + ((grp * g.KH + ki) * g.KW + kj) * Cg, base + (ki * g.DH * Wp + kj * g.DW) * C + grp * Cg, Cg);
          }
        }
      }
    }
    if (++ow == g.OW) {
      ow = 0;
      ++oh;
    }
  }
}

// col [p1-p0, K]  xt [Hp, Wp, C]
template <class T>
NNK_INLINE void gather_nhwc_body(T* col, const T* xt, const ConvGeom* gp, index_t Wp, index_t p0, index_t p1) {
  walk_nhwc(col, xt, *gp, Wp, p0, p1,
            [](T* d, const T* s, index_t n) NNK_LAMBDA_INLINE { copy_run(d, s, n); });
}
NNK_MULTIVERSION(gather_nhwc, gather_nhwc_body)

// dxt [Hp, Wp, C] (accumulated into)  col [p1-p0, K]
template <class T>
NNK_INLINE void scatter_nhwc_body(T* dxt, const T* col, const ConvGeom* gp, index_t Wp, index_t p0, index_t p1) {
  walk_nhwc(col, dxt, *gp, Wp, p0, p1,
            [](const T* s, T* d, index_t n) NNK_LAMBDA_INLINE { add_run(d, s, n); });
}
NNK_MULTIVERSION(scatter_nhwc, scatter_nhwc_body)

// wt [OC, KH, KW, Cg]  w [OC, Cg, KH, KW]
template <class T>
void weight_to_nhwc(T* wt, const T* w, const ConvGeom& g) {
  const index_t Cg = g.Cg(), KK = g.KH * g.KW;
  for (index_t o = 0; o < g.OC; ++o) {
    const T* src = w + o * Cg * KK;
    T* dst = wt + o * Cg * KK;
    for (index_t c = 0; c < Cg; ++c) {
      for (index_t k = 0; k < KK; ++k) dst[k * Cg + c] = src[c * KK + k];
    }
  }
}

// w [OC, Cg, KH, KW] (= or +=)  wt [OC, KH, KW, Cg]
template <class T>
void weight_from_nhwc(T* w, const T* wt, const ConvGeom& g, bool accumulate) {
  const index_t Cg = g.Cg(), KK = g.KH * g.KW;
  for (index_t o = 0; o < g.OC; ++o) {
    const T* src = wt + o * Cg * KK;
    T* dst = w + o * Cg * KK;
    for (index_t c = 0; c < Cg; ++c) {
      for (index_t k = 0; k < KK; ++k) {
        dst[c * KK + k] = accumulate ? dst[c * KK + k] + src[k * Cg + c] : src[k * Cg + c];
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Small vector helpers

template <class T>
NNK_INLINE void zero_body(T* d, index_t n) {
  zero_run(d, n);
}
NNK_MULTIVERSION(zero_fill, zero_body)

// y [rows, P] = b[row] for rows [r0, r1)
template <class T>
NNK_INLINE void fill_bias_body(T* y, const T* b, index_t r0, index_t r1, index_t P) {
  for (index_t r = r0; r < r1; ++r) {
    T* NNK_RESTRICT yr = y + r * P;
    const T br = b[r];
    for (index_t i = 0; i < P; ++i) yr[i] = br;
  }
}
NNK_MULTIVERSION(fill_bias, fill_bias_body)

// Sum of a[0..n) in a fixed order: 16 interleaved partial sums, then combined pairwise. The same
// order at every ISA level (16 lanes = one AVX-512 float vector, two AVX2 ones, ...), so db does
// not even depend on the SIMD level.
template <class T>
NNK_INLINE T fixed_order_sum(const T* NNK_RESTRICT a, index_t n) {
  T acc[16] = {};
  index_t i = 0;
  for (; i + 16 <= n; i += 16) {
    for (int l = 0; l < 16; ++l) acc[l] += a[i + l];
  }
  for (int l = 0; i + l < n; ++l) acc[l] += a[i + l];
  for (int w = 8; w >= 1; w /= 2) {
    for (int l = 0; l < w; ++l) acc[l] += acc[l + w];
  }
  return acc[0];
}

// sums[r] += sum_i m[r, i] for rows [r0, r1) of m [rows, n]
template <class T>
NNK_INLINE void add_row_sums_body(T* sums, const T* m, index_t r0, index_t r1, index_t n) {
  for (index_t r = r0; r < r1; ++r) sums[r] += fixed_order_sum(m + r * n, n);
}
NNK_MULTIVERSION(add_row_sums, add_row_sums_body)

// parts[0][i] = parts[0][i] + parts[1][i] + ... (in part order), i in [i0, i1)
template <class T>
NNK_INLINE void reduce_partials_body(T* parts, index_t nparts, index_t stride, index_t i0, index_t i1) {
  T* NNK_RESTRICT d = parts;
  for (index_t c = 1; c < nparts; ++c) {
    const T* NNK_RESTRICT pc = parts + c * stride;
    for (index_t i = i0; i < i1; ++i) d[i] += pc[i];
  }
}
NNK_MULTIVERSION(reduce_partials, reduce_partials_body)

// dst[i] = src[i] or dst[i] += src[i]
template <class T>
NNK_INLINE void store_body(T* dst, const T* src, index_t n, bool accumulate) {
  T* NNK_RESTRICT d = dst;
  const T* NNK_RESTRICT s = src;
  if (accumulate) {
    for (index_t i = 0; i < n; ++i) d[i] += s[i];
  } else {
    for (index_t i = 0; i < n; ++i) d[i] = s[i];
  }
}
NNK_MULTIVERSION(store, store_body)

// ---------------------------------------------------------------------------------------------
// Own AVX-512 SGEMM for the per-image GEMMs
//
// OpenBLAS's SkylakeX sgemm kernel reached ~72% of MKL's rate on our AVX-512 test machine (an
// Intel part: 72 vs 99 GFLOP/s on the 128x256x576 product of one conv image), and oneDNN's
// convolutions run at MKL's rate, so per-image GEMMs at the avx512 level use this BLIS-style
// GEMM instead: 12x32 register tile (24 zmm accumulators: 12 broadcast rows of A times two
// 16-float vectors of B), A packed in 12-row panels, B in 32-column panels, blocks KC x NC of B
// (L2) and MC x KC of A, one B micro-panel (<= 32 KiB) reused from L1 across the A panels.
// The blocking depends on (M, N, K) only: results are deterministic. float64 and the other ISA
// levels use OpenBLAS (gemm_serial).
namespace sgemm {

constexpr int MR = 12, NR = 32;
constexpr index_t kMaxKC = 256, kMC = 144, kNC = 1536;

// K is cut into equal blocks of at most kMaxKC (576 -> 3 x 192): shape-only, so deterministic.
inline index_t block_k(index_t K) {
  const index_t nkb = std::max<index_t>(1, (K + kMaxKC - 1) / kMaxKC);
  return std::max<index_t>(1, (K + nkb - 1) / nkb);
}
inline index_t round_up(index_t x, index_t m) { return (x + m - 1) / m * m; }

// A matrix operand: op(X) = X or X^T (X row-major with leading dim ld), or already packed
// (whole matrix, every K block, by pack_a_all/pack_b_all).
struct Operand {
  const float* p;
  index_t ld;
  bool trans;
  const float* packed;
};

// The 12 x 32 accumulator tile of the micro-kernel (24 zmm registers once inlined).
struct Acc {
  __m512 c[MR][2];
};

// acc = Ap[kc][12] . Bp[kc][32]
NNK_TARGET_AVX512 NNK_INLINE void micro_tile(index_t kc, const float* NNK_RESTRICT Ap, const float* NNK_RESTRICT Bp,
                                             Acc& acc) {
  // Accumulate in a local array (registers): __m512 may alias the float loads, so accumulating
  // straight into `acc` would store the tile to memory after every k.
  __m512 c[MR][2];
  for (int i = 0; i < MR; ++i) c[i][0] = c[i][1] = _mm512_setzero_ps();
  for (index_t k = 0; k < kc; ++k) {
    const __m512 b0 = _mm512_load_ps(Bp + k * NR), b1 = _mm512_load_ps(Bp + k * NR + 16);
    const float* a = Ap + k * MR;
#pragma GCC unroll 12
    for (int i = 0; i < MR; ++i) {
      const __m512 ai = _mm512_set1_ps(a[i]);
      c[i][0] = _mm512_fmadd_ps(ai, b0, c[i][0]);
      c[i][1] = _mm512_fmadd_ps(ai, b1, c[i][1]);
    }
  }
  for (int i = 0; i < MR; ++i) {
    acc.c[i][0] = c[i][0];
    acc.c[i][1] = c[i][1];
  }
}

NNK_TARGET_AVX512 NNK_INLINE __mmask16 lanes(index_t n) {
  return static_cast<__mmask16>(n >= 16 ? 0xffff : n <= 0 ? 0 : (1u << n) - 1u);
}

// Ap[panel][k][12] = op(A)[i0 + panel*12 + i][p0 + k] for rows [i0, i0 + mc_pad), zero past M.
NNK_TARGET_AVX512 void pack_a(float* NNK_RESTRICT Ap, const Operand& A, index_t M, index_t i0, index_t mc_pad,
                              index_t p0, index_t kc) {
  for (index_t ip = 0; ip < mc_pad; ip += MR) {
    float* dst = Ap + ip * kc;
    const index_t rows = std::min<index_t>(MR, M - i0 - ip);
    if (A.trans) {  // op(A)[i][k] = A[k*ld + i]: 12 contiguous values per k
      const __mmask16 m = lanes(rows);
      for (index_t k = 0; k < kc; ++k) {
        _mm512_mask_storeu_ps(dst + k * MR, 0x0fff, _mm512_maskz_loadu_ps(m, A.p + (p0 + k) * A.ld + i0 + ip));
      }
      continue;
    }
    // op(A)[i][k] = A[i*ld + k]: 16-wide slices of the 12 rows (4 zero rows) transposed as one
    // 16x16 tile, 12 lanes of each of its rows stored.
    using V = Tile<float>::Vec;
    for (index_t k0 = 0; k0 < kc; k0 += 16) {
      const index_t kn = std::min<index_t>(16, kc - k0);
      const __mmask16 mk = lanes(kn);
      V v[16];
      for (int i = 0; i < 16; ++i) {
        const __m512 r = i < rows ? _mm512_maskz_loadu_ps(mk, A.p + (i0 + ip + i) * A.ld + p0 + k0)
                                  : _mm512_setzero_ps();
        __builtin_memcpy(&v[i], &r, sizeof(r));
      }
      tile_stage<float, 8>(v);
      tile_stage<float, 4>(v);
      tile_stage<float, 2>(v);
      tile_stage<float, 1>(v);
      for (index_t k = 0; k < kn; ++k) {
        __m512 r;
        __builtin_memcpy(&r, &v[k], sizeof(r));
        _mm512_mask_storeu_ps(dst + (k0 + k) * MR, 0x0fff, r);
      }
    }
  }
}

// Bp[panel][k][32] = op(B)[p0 + k][j0 + panel*32 + j] for columns [j0, j0 + nc_pad), zero past N.
NNK_TARGET_AVX512 void pack_b(float* NNK_RESTRICT Bp, const Operand& B, index_t N, index_t j0, index_t nc_pad,
                              index_t p0, index_t kc) {
  for (index_t jp = 0; jp < nc_pad; jp += NR) {
    float* dst = Bp + jp * kc;
    const index_t cols = std::min<index_t>(NR, N - j0 - jp);
    if (!B.trans) {  // op(B)[k][j] = B[k*ld + j]: 32 contiguous values per k
      const __mmask16 m0 = lanes(cols), m1 = lanes(cols - 16);
      for (index_t k = 0; k < kc; ++k) {
        const float* src = B.p + (p0 + k) * B.ld + j0 + jp;
        _mm512_store_ps(dst + k * NR, _mm512_maskz_loadu_ps(m0, src));
        _mm512_store_ps(dst + k * NR + 16, _mm512_maskz_loadu_ps(m1, src + 16));
      }
      continue;
    }
    // op(B)[k][j] = B[j*ld + k]: a transpose, in 16x16 tiles where full
    const index_t kfull = kc / 16 * 16;
    for (index_t jj = 0; jj < NR; jj += 16) {
      if (jj + 16 <= cols) {
        for (index_t k = 0; k < kfull; k += 16) {
          transpose_tile(dst + k * NR + jj, index_t{NR}, B.p + (j0 + jp + jj) * B.ld + p0 + k, B.ld);
        }
        for (index_t k = kfull; k < kc; ++k) {
          for (index_t j = jj; j < jj + 16; ++j) dst[k * NR + j] = B.p[(j0 + jp + j) * B.ld + p0 + k];
        }
      } else {
        for (index_t k = 0; k < kc; ++k) {
          for (index_t j = jj; j < jj + 16; ++j) dst[k * NR + j] = j < cols ? B.p[(j0 + jp + j) * B.ld + p0 + k] : 0.0f;
        }
      }
    }
  }
}

// Whole-matrix packing (every K block in order), for an operand many GEMMs share: the weight.
inline index_t packed_a_size(index_t M, index_t K) { return round_up(M, MR) * K; }
inline index_t packed_b_size(index_t N, index_t K) { return round_up(N, NR) * K; }

NNK_TARGET_AVX512 void pack_a_all(float* Ap, const Operand& A, index_t M, index_t K) {
  const index_t KC = block_k(K), Mp = round_up(M, MR);
  for (index_t pc = 0; pc < K; pc += KC) pack_a(Ap + pc * Mp, A, M, 0, Mp, pc, std::min(KC, K - pc));
}

NNK_TARGET_AVX512 void pack_b_all(float* Bp, const Operand& B, index_t N, index_t K) {
  const index_t KC = block_k(K), Np = round_up(N, NR);
  for (index_t pc = 0; pc < K; pc += KC) pack_b(Bp + pc * Np, B, N, 0, Np, pc, std::min(KC, K - pc));
}

// B blocks (KC x NC) stay under 1/16 of the workspace limit. NC only changes how often blocks of
// A are packed, never the arithmetic, so results do not depend on it.
inline index_t nc_cap(index_t KC) {
  const index_t bytes = static_cast<index_t>(std::min<std::size_t>(workspace_limit(), std::size_t{1} << 40)) / 16;
  return std::max<index_t>(NR, bytes / (KC * static_cast<index_t>(sizeof(float))) / NR * NR);
}

// Default C destination: C[(i0 + i)*ldc + j0 + j] = (beta ? C : row_bias[i0 + i] or 0) + tile.
// (A bias per row lets the forward skip a separate pass over y.)
struct StoreC {
  float* C;
  index_t ldc;
  const float* row_bias = nullptr;
  NNK_TARGET_AVX512 NNK_INLINE void operator()(Acc& acc, index_t i0, index_t j0, int rows, __mmask16 m0, __mmask16 m1,
                                               bool beta) const {
    for (int i = 0; i < rows; ++i) {
      float* ci = C + (i0 + i) * ldc + j0;
      if (beta) {
        acc.c[i][0] = _mm512_add_ps(_mm512_maskz_loadu_ps(m0, ci), acc.c[i][0]);
        acc.c[i][1] = _mm512_add_ps(_mm512_maskz_loadu_ps(m1, ci + 16), acc.c[i][1]);
      } else if (row_bias != nullptr) {
        const __m512 bi = _mm512_set1_ps(row_bias[i0 + i]);
        acc.c[i][0] = _mm512_add_ps(bi, acc.c[i][0]);
        acc.c[i][1] = _mm512_add_ps(bi, acc.c[i][1]);
      }
      _mm512_mask_storeu_ps(ci, m0, acc.c[i][0]);
      _mm512_mask_storeu_ps(ci + 16, m1, acc.c[i][1]);
    }
  }
};

// Default B source: packs block (pc, jc) of op(B) into `buf`, or points into its packed copy.
struct PackB {
  Operand B;
  index_t N;
  bool needs_buffer() const { return B.packed == nullptr; }
  NNK_TARGET_AVX512 NNK_INLINE const float* operator()(float* buf, index_t jc, index_t nc_pad, index_t pc,
                                                       index_t kc) const {
    if (B.packed != nullptr) return B.packed + pc * round_up(N, NR) + jc * kc;
    pack_b(buf, B, N, jc, nc_pad, pc, kc);
    return buf;
  }
};

// C[M,N] = (beta ? C : 0) + op(A)[M,K] @ op(B)[K,N] on the calling thread, B produced by `bsrc`
// block by block, tiles written by `cdst` (fused packers/stores let the conv skip its column
// matrix). A not packed yet is packed block by block into this thread's scratch.
template <class BSrc, class CDst>
NNK_TARGET_AVX512 NNK_INLINE void gemm_t(index_t M, index_t N, index_t K, const Operand& A, const BSrc& bsrc, bool beta,
                                         const CDst& cdst) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0) {
    if (beta) return;
    Acc zero;
    for (int i = 0; i < MR; ++i) zero.c[i][0] = zero.c[i][1] = _mm512_setzero_ps();
    for (index_t i0 = 0; i0 < M; i0 += MR) {
      for (index_t j0 = 0; j0 < N; j0 += NR) {
        cdst(zero, i0, j0, static_cast<int>(std::min<index_t>(MR, M - i0)), lanes(N - j0), lanes(N - j0 - 16), false);
      }
    }
    return;
  }
  const index_t KC = block_k(K), Mp = round_up(M, MR), Np = round_up(N, NR);
  const index_t NCb = std::min({kNC, Np, nc_cap(KC)}), MCb = std::min(kMC, Mp);
  float* Bbuf = bsrc.needs_buffer() ? scratch<float>(kSlotPackB, KC * NCb) : nullptr;
  float* Abuf = A.packed == nullptr ? scratch<float>(kSlotPackA, KC * MCb) : nullptr;
  Acc acc;
  for (index_t jc = 0; jc < N; jc += NCb) {
    const index_t nc = std::min(NCb, N - jc), nc_pad = round_up(nc, NR);
    for (index_t pc = 0; pc < K; pc += KC) {
      const index_t kc = std::min(KC, K - pc);
      const bool beta_blk = beta || pc > 0;
      const float* Bp = bsrc(Bbuf, jc, nc_pad, pc, kc);
      for (index_t ic = 0; ic < M; ic += MCb) {
        const index_t mc = std::min(MCb, M - ic), mc_pad = round_up(mc, MR);
        const float* Ap = A.packed != nullptr ? A.packed + pc * Mp + ic * kc : Abuf;
        if (A.packed == nullptr) pack_a(Abuf, A, M, ic, mc_pad, pc, kc);
        for (index_t jr = 0; jr < nc; jr += NR) {
          const index_t cols = std::min<index_t>(NR, nc - jr);
          const __mmask16 m0 = lanes(cols), m1 = lanes(cols - 16);
          const float* bp = Bp + jr * kc;
          for (index_t ir = 0; ir < mc; ir += MR) {
            micro_tile(kc, Ap + ir * kc, bp, acc);
            cdst(acc, ic + ir, jc + jr, static_cast<int>(std::min<index_t>(MR, mc - ir)), m0, m1, beta_blk);
          }
        }
      }
    }
  }
}

NNK_TARGET_AVX512 void gemm(index_t M, index_t N, index_t K, const Operand& A, const Operand& B, bool beta, float* C,
                            index_t ldc, const float* row_bias = nullptr) {
  gemm_t(M, N, K, A, PackB{B, N}, beta, StoreC{C, ldc, row_bias});
}

}  // namespace sgemm

// Products too thin for a 12 x 32 tile or too short in K are left to OpenBLAS's small-matrix
// kernels (measured: digits' 8 x 25 x 576 dW GEMM runs 2x faster there).
inline bool own_gemm_fits(index_t M, index_t N, index_t K) { return M >= 16 && N >= 32 && K >= 16; }

// ---------------------------------------------------------------------------------------------
// Fused channels-last GEMMs (own SGEMM, G == 1, DW == 1, KW*C a multiple of 32): the column
// matrix is never written. The forward GEMM packs its B blocks straight from the padded
// channels-last image, the dW GEMM reads its B rows there without packing, and the dcol GEMM adds
// its tiles straight into the padded dx image.
//
// Column index k = ki*run + r (run = KW*C) of pixel p lives at xt[base(p) + off(k)].
struct NhwcMap {
  index_t OW, SH, SW, Wp, C, run, row_step;  // row_step = DH*Wp*C
  index_t p0;                                // first pixel of the GEMM's pixel range
  NNK_INLINE index_t base(index_t q) const {
    const index_t p = p0 + q, oh = p / OW, ow = p - oh * OW;
    return (oh * SH * Wp + ow * SW) * C;
  }
  NNK_INLINE index_t off(index_t k) const {
    const index_t ki = k / run;
    return ki * row_step + (k - ki * run);
  }
};

inline NhwcMap nhwc_map(const ConvGeom& g, index_t Wp, index_t p0) {
  return {g.OW, g.SH, g.SW, Wp, g.C, g.KW * g.C, g.DH * Wp * g.C, p0};
}

// Whether a channels-last problem can take the fused path (float at the avx512 level).
inline bool nhwc_fusable(const ConvGeom& g) {
  return g.G == 1 && g.DW == 1 && (g.KW * g.C) % 32 == 0 && sgemm::block_k(g.K()) % 16 == 0 &&
         own_gemm_fits(g.OC, g.P(), g.K()) && own_gemm_fits(g.OC, g.K(), g.P()) && own_gemm_fits(g.P(), g.K(), g.OC);
}

// Forward: B = col^T (K = Kg column indices, N = pixels), Bp[k][32 pixels]: 16 pixels x 16
// channels loaded from xt and transposed in registers.
struct FwdPackB {
  const float* xt;
  NhwcMap m;
  index_t N;
  bool needs_buffer() const { return true; }
  NNK_TARGET_AVX512 NNK_INLINE const float* operator()(float* buf, index_t jc, index_t nc_pad, index_t pc,
                                                       index_t kc) const {
    using V = Tile<float>::Vec;
    for (index_t jp = 0; jp < nc_pad; jp += sgemm::NR) {
      float* dst = buf + jp * kc;
      for (index_t jj = 0; jj < sgemm::NR; jj += 16) {
        const index_t q0 = jc + jp + jj;
        const index_t count = std::clamp<index_t>(N - q0, 0, 16);
        index_t bases[16];
        for (index_t t = 0; t < count; ++t) bases[t] = m.base(q0 + t);
        for (index_t k0 = 0; k0 < kc; k0 += 16) {  // kc % 16 == 0 and runs hold whole 16-blocks
          const index_t off = m.off(pc + k0);
          V v[16];
          for (index_t t = 0; t < 16; ++t) {
            const __m512 r = t < count ? _mm512_loadu_ps(xt + bases[t] + off) : _mm512_setzero_ps();
            __builtin_memcpy(&v[t], &r, sizeof(r));
          }
          tile_stage<float, 8>(v);
          tile_stage<float, 4>(v);
          tile_stage<float, 2>(v);
          tile_stage<float, 1>(v);
          for (index_t r = 0; r < 16; ++r) __builtin_memcpy(dst + (k0 + r) * sgemm::NR + jj, &v[r], sizeof(v[r]));
        }
      }
    }
    return buf;
  }
};

// dW without packing B: acc = Ap[kc][12] . B, where row k of the 32-column B panel is the run
// rows[k] + off of the channels-last image (one pixel's 32 consecutive column values).
NNK_TARGET_AVX512 NNK_INLINE void micro_tile_rows(index_t kc, const float* NNK_RESTRICT Ap, const float* const* rows,
                                                  index_t off, __mmask16 m0, __mmask16 m1, sgemm::Acc& acc) {
  __m512 c[sgemm::MR][2];  // local: see micro_tile
  for (int i = 0; i < sgemm::MR; ++i) c[i][0] = c[i][1] = _mm512_setzero_ps();
  for (index_t k = 0; k < kc; ++k) {
    const float* br = rows[k] + off;
    const __m512 b0 = _mm512_maskz_loadu_ps(m0, br), b1 = _mm512_maskz_loadu_ps(m1, br + 16);
    const float* a = Ap + k * sgemm::MR;
#pragma GCC unroll 12
    for (int i = 0; i < sgemm::MR; ++i) {
      const __m512 ai = _mm512_set1_ps(a[i]);
      c[i][0] = _mm512_fmadd_ps(ai, b0, c[i][0]);
      c[i][1] = _mm512_fmadd_ps(ai, b1, c[i][1]);
    }
  }
  for (int i = 0; i < sgemm::MR; ++i) {
    acc.c[i][0] = c[i][0];
    acc.c[i][1] = c[i][1];
  }
}

// dW [OC, K] = (beta ? dW : 0) + dy [OC, np] @ col [np, K], col read straight from xt. Same
// blocking and summation order as sgemm::gemm_t.
NNK_TARGET_AVX512 void dw_from_image(float* dw, const float* dy, index_t ldy, const float* xt, const NhwcMap& m,
                                     index_t OC, index_t np, index_t K, bool beta) {
  using namespace sgemm;
  const index_t KC = block_k(np), MCb = std::min(kMC, round_up(OC, MR));
  float* Abuf = scratch<float>(kSlotPackA, KC * MCb);
  const float* rows[kMaxKC];
  const StoreC store{dw, K};
  Acc acc;
  for (index_t pc = 0; pc < np; pc += KC) {
    const index_t kc = std::min(KC, np - pc);
    for (index_t kk = 0; kk < kc; ++kk) rows[kk] = xt + m.base(pc + kk);
    const bool beta_blk = beta || pc > 0;
    for (index_t ic = 0; ic < OC; ic += MCb) {
      const index_t mc = std::min(MCb, OC - ic);
      pack_a(Abuf, Operand{dy, ldy, false, nullptr}, OC, ic, round_up(mc, MR), pc, kc);
      for (index_t jr = 0; jr < K; jr += NR) {
        const index_t cols = std::min<index_t>(NR, K - jr), off = m.off(jr);
        const __mmask16 m0 = lanes(cols), m1 = lanes(cols - 16);
        for (index_t ir = 0; ir < mc; ir += MR) {
          micro_tile_rows(kc, Abuf + ir * kc, rows, off, m0, m1, acc);
          store(acc, ic + ir, jr, static_cast<int>(std::min<index_t>(MR, mc - ir)), m0, m1, beta_blk);
        }
      }
    }
  }
}

// dcol: C = dcol (M = pixels, N = Kg column indices); every tile row is added into the padded dx
// image at its pixel's window (overlapping windows add up in turn: one thread owns dxt).
struct DcolStore {
  float* dxt;
  NhwcMap m;
  NNK_TARGET_AVX512 NNK_INLINE void operator()(sgemm::Acc& acc, index_t i0, index_t j0, int rows, __mmask16 m0,
                                               __mmask16 m1, bool /*beta: always added*/) const {
    float* d0 = dxt + m.off(j0);
    for (int i = 0; i < rows; ++i) {
      float* d = d0 + m.base(i0 + i);
      _mm512_mask_storeu_ps(d, m0, _mm512_add_ps(_mm512_maskz_loadu_ps(m0, d), acc.c[i][0]));
      _mm512_mask_storeu_ps(d + 16, m1, _mm512_add_ps(_mm512_maskz_loadu_ps(m1, d + 16), acc.c[i][1]));
    }
  }
};

// The three fused GEMMs (float only; T = double never takes the fused path).
template <class T>
NNK_TARGET_AVX512 void fused_forward(T* y, index_t ldy, const T* xt, const NhwcMap& m, const T* w, const T* wpk, index_t OC, index_t np,
                   index_t K, const T* bias) {
  if constexpr (std::is_same_v<T, float>) {
    sgemm::gemm_t(OC, np, K, sgemm::Operand{w, K, false, wpk}, FwdPackB{xt, m, np}, false,
                  sgemm::StoreC{y, ldy, bias});
  } else {
    NNK_ASSERT(false);
  }
}

template <class T>
NNK_TARGET_AVX512 void fused_dw(T* dw, const T* dy, index_t ldy, const T* xt, const NhwcMap& m, index_t OC, index_t np, index_t K,
              bool beta) {
  if constexpr (std::is_same_v<T, float>) {
    dw_from_image(dw, dy, ldy, xt, m, OC, np, K, beta);
  } else {
    NNK_ASSERT(false);
  }
}

template <class T>
NNK_TARGET_AVX512 void fused_dcol(T* dxt, const NhwcMap& m, const T* dy, index_t ldy, const T* w, const T* wpk, index_t OC, index_t np,
                index_t K) {
  if constexpr (std::is_same_v<T, float>) {
    sgemm::gemm_t(np, K, OC, sgemm::Operand{dy, ldy, true, nullptr}, sgemm::PackB{{w, K, false, wpk}, K}, false,
                  DcolStore{dxt, m});
  } else {
    NNK_ASSERT(false);
  }
}

// ---------------------------------------------------------------------------------------------
// Direct NCHW convolution on the own SGEMM's micro-kernel (float, avx512)
//
// Output pixels ride the vector lanes. A panel is two segments of up to 16 consecutive output
// pixels of one output row each (segments in row-major order, paired); a tile is 12 output
// channels x one panel. The K loop runs over the taps (c, ki, kj) in weight order; the B row of a
// tap is read straight from xq, a zero-padded copy of the input image whose columns are split
// into SW phase planes (xq[phase][c][h][j] = padded x[c][h][j*SW + phase]), so 16 consecutive
// output pixels read 16 consecutive floats for any stride. No column matrix, no B packing; the
// weight is packed once per call as one K block ([panel][K][12]).
// Also used for dx of stride-1 convolutions: dx = conv(dy, weight flipped and transposed).

constexpr index_t kSeg = 16;
// A direct kernel needs its output rows to fill at least this share of the 16-float lanes.
constexpr double kMinLaneUse = 0.6;

struct DirectDims {
  index_t Hp, Wq, planes;  // rows of xq, columns of one phase plane, SW
  index_t plane;           // floats per phase plane: C * Hp * Wq
  index_t segs_row;        // 16-pixel segments per output row
  index_t elems() const { return planes * plane + kSeg; }  // (+ slack for masked row ends)
};

inline DirectDims direct_dims(const ConvGeom& g) {
  DirectDims d;
  d.Hp = (g.OH - 1) * g.SH + (g.KH - 1) * g.DH + 1;
  const index_t Wp = (g.OW - 1) * g.SW + (g.KW - 1) * g.DW + 1;
  d.planes = g.SW;
  d.Wq = (Wp + g.SW - 1) / g.SW;
  d.plane = g.C * d.Hp * d.Wq;
  d.segs_row = (g.OW + kSeg - 1) / kSeg;
  return d;
}

inline double lane_use(index_t OW) {
  return OW <= 0 ? 0.0 : static_cast<double>(OW) / static_cast<double>((OW + kSeg - 1) / kSeg * kSeg);
}

// xq [SW][C][Hp][Wq]  x [C][H][W] (one image): padded x[c][h][w] = x[c][h - PH][w - PW], 0 outside.
template <class T>
NNK_INLINE void to_direct_body(T* xq, const T* x, const ConvGeom* gp, const DirectDims* dp) {
  const ConvGeom& g = *gp;
  const DirectDims& d = *dp;
  for (index_t ph = 0; ph < d.planes; ++ph) {
    // Plane column j holds padded column w = j*SW + ph, i.e. input column iw = w - PW; the valid
    // j form one contiguous range [j0, j1).
    const index_t first = g.PW - ph;  // j*SW >= first
    const index_t j0 = std::clamp<index_t>(first <= 0 ? 0 : (first + g.SW - 1) / g.SW, 0, d.Wq);
    const index_t j1 = std::clamp<index_t>((g.W - 1 + g.PW - ph) < 0 ? 0 : (g.W - 1 + g.PW - ph) / g.SW + 1, j0, d.Wq);
    for (index_t c = 0; c < g.C; ++c) {
      T* dst = xq + ph * d.plane + c * d.Hp * d.Wq;
      const T* src = x + c * g.H * g.W;
      for (index_t h = 0; h < d.Hp; ++h) {
        T* row = dst + h * d.Wq;
        const index_t ih = h - g.PH;
        if (ih < 0 || ih >= g.H || j1 <= j0) {
          zero_run(row, d.Wq);
          continue;
        }
        zero_run(row, j0);
        copy_run_strided(row + j0, src + ih * g.W + j0 * g.SW + ph - g.PW, j1 - j0, g.SW);
        zero_run(row + j1, d.Wq - j1);
      }
    }
  }
  zero_run(xq + d.planes * d.plane, kSeg);
}
NNK_MULTIVERSION(to_direct, to_direct_body)

// koff[k] for the taps k = (c, ki, kj) of channels [c0, c0 + Cg): offset of the tap's first
// pixel in xq relative to an output pixel's base (oh*SH)*Wq + ow.
inline void direct_tap_offsets(index_t* koff, const ConvGeom& g, const DirectDims& d, index_t c0, index_t Cg) {
  index_t k = 0;
  for (index_t c = 0; c < Cg; ++c) {
    for (index_t ki = 0; ki < g.KH; ++ki) {
      for (index_t kj = 0; kj < g.KW; ++kj) {
        const index_t col = kj * g.DW;
        koff[k++] = (col % g.SW) * d.plane + (c0 + c) * d.Hp * d.Wq + ki * g.DH * d.Wq + col / g.SW;
      }
    }
  }
}

// acc = Ap[K][12] . B, B row k = 16 lanes at x0 + koff[k] and 16 at x1 + koff[k].
NNK_TARGET_AVX512 NNK_INLINE void direct_tile(index_t K, const float* NNK_RESTRICT Ap, const float* x0, const float* x1,
                                              const index_t* koff, __mmask16 m0, __mmask16 m1, sgemm::Acc& acc) {
  __m512 c[sgemm::MR][2];  // local: see micro_tile
  for (int i = 0; i < sgemm::MR; ++i) c[i][0] = c[i][1] = _mm512_setzero_ps();
  for (index_t k = 0; k < K; ++k) {
    const index_t off = koff[k];
    const __m512 b0 = _mm512_maskz_loadu_ps(m0, x0 + off), b1 = _mm512_maskz_loadu_ps(m1, x1 + off);
    const float* a = Ap + k * sgemm::MR;
#pragma GCC unroll 12
    for (int i = 0; i < sgemm::MR; ++i) {
      const __m512 ai = _mm512_set1_ps(a[i]);
      c[i][0] = _mm512_fmadd_ps(ai, b0, c[i][0]);
      c[i][1] = _mm512_fmadd_ps(ai, b1, c[i][1]);
    }
  }
  for (int i = 0; i < sgemm::MR; ++i) {
    acc.c[i][0] = c[i][0];
    acc.c[i][1] = c[i][1];
  }
}

// y [OC, OH*OW] (one image, the rows of one group: OCg of them) = (bias) + W_g x_g, W_g packed
// [panel][K][12], xq the image's padded copy, koff the group's tap offsets.
NNK_TARGET_AVX512 void direct_image(float* y, const float* xq, const ConvGeom& g, const DirectDims& d, const float* wpk,
                                    const index_t* koff, index_t OCg, index_t K, const float* bias) {
  using namespace sgemm;
  const index_t nseg = g.OH * d.segs_row, P = g.P();
  Acc acc;
  for (index_t ir = 0; ir < OCg; ir += MR) {
    const int rows = static_cast<int>(std::min<index_t>(MR, OCg - ir));
    const float* Ap = wpk + ir * K;
    for (index_t s0 = 0; s0 < nseg; s0 += 2) {
      index_t xb[2] = {0, 0}, yb[2] = {0, 0}, len[2] = {0, 0};
      for (int h = 0; h < 2 && s0 + h < nseg; ++h) {
        const index_t oh = (s0 + h) / d.segs_row, ow = ((s0 + h) - oh * d.segs_row) * kSeg;
        xb[h] = oh * g.SH * d.Wq + ow;
        yb[h] = oh * g.OW + ow;
        len[h] = std::min(kSeg, g.OW - ow);
      }
      const __mmask16 m0 = lanes(len[0]), m1 = lanes(len[1]);
      direct_tile(K, Ap, xq + xb[0], xq + xb[1], koff, m0, m1, acc);
      for (int i = 0; i < rows; ++i) {
        float* yi = y + (ir + i) * P;
        if (bias != nullptr) {
          const __m512 bi = _mm512_set1_ps(bias[ir + i]);
          acc.c[i][0] = _mm512_add_ps(bi, acc.c[i][0]);
          acc.c[i][1] = _mm512_add_ps(bi, acc.c[i][1]);
        }
        _mm512_mask_storeu_ps(yi + yb[0], m0, acc.c[i][0]);
        _mm512_mask_storeu_ps(yi + yb[1], m1, acc.c[i][1]);
      }
    }
  }
}

// dW_g [OCg, Kg] (= or +=, `beta`) from one image: dW[o][k] = sum over output pixels p of
// dy[o][p] * xq[base(p) + koff[k]]. Pixels ride the lanes (16-pixel segments of output rows);
// a tile keeps MO output channels x NT taps of lane accumulators (24) in registers over the
// whole image, then reduces each accumulator across its lanes in a fixed order. Two tile shapes
// (6 x 4, 4 x 6); the one that wastes fewer lanes on partial tiles is used.

// Sum of the 16 lanes in a fixed pairwise order.
NNK_TARGET_AVX512 NNK_INLINE float lane_sum(__m512 v) {
  alignas(64) float t[16];
  _mm512_store_ps(t, v);
  for (int w = 8; w >= 1; w /= 2) {
    for (int l = 0; l < w; ++l) t[l] += t[l + w];
  }
  return t[0];
}

template <int MO, int NT>
NNK_TARGET_AVX512 void direct_dw_image(float* dw, bool beta, const float* dy, const float* xq, const ConvGeom& g,
                                       const DirectDims& d, const index_t* koff, index_t OCg, index_t Kg) {
  const index_t P = g.P();
  for (index_t o0 = 0; o0 < OCg; o0 += MO) {
    const int mo = static_cast<int>(std::min<index_t>(MO, OCg - o0));
    for (index_t t0 = 0; t0 < Kg; t0 += NT) {
      const int nt = static_cast<int>(std::min<index_t>(NT, Kg - t0));
      // Tails (mo < MO, nt < NT) repeat the last row/tap: no branches in the loop below.
      const float* xt[NT];
      const float* dyr[MO];
      for (int t = 0; t < NT; ++t) xt[t] = xq + koff[t0 + std::min(t, nt - 1)];
      for (int o = 0; o < MO; ++o) dyr[o] = dy + (o0 + std::min(o, mo - 1)) * P;
      __m512 acc[MO][NT];
      for (int o = 0; o < MO; ++o) {
        for (int t = 0; t < NT; ++t) acc[o][t] = _mm512_setzero_ps();
      }
      for (index_t oh = 0; oh < g.OH; ++oh) {
        const index_t xrow = oh * g.SH * d.Wq, yrow = oh * g.OW;
        for (index_t ow = 0; ow < g.OW; ow += kSeg) {
          const __mmask16 m = sgemm::lanes(g.OW - ow);
          __m512 dyv[MO];
          for (int o = 0; o < MO; ++o) dyv[o] = _mm512_maskz_loadu_ps(m, dyr[o] + yrow + ow);
          for (int t = 0; t < NT; ++t) {
            const __m512 xv = _mm512_maskz_loadu_ps(m, xt[t] + xrow + ow);
            for (int o = 0; o < MO; ++o) acc[o][t] = _mm512_fmadd_ps(dyv[o], xv, acc[o][t]);
          }
        }
      }
      // Constant indices only (full unroll): a runtime index would keep acc in memory.
#pragma GCC unroll 6
      for (int o = 0; o < MO; ++o) {
#pragma GCC unroll 6
        for (int t = 0; t < NT; ++t) {
          if (o < mo && t < nt) {
            float* dst = dw + (o0 + o) * Kg + t0 + t;
            const float v = lane_sum(acc[o][t]);
            *dst = beta ? *dst + v : v;
          }
        }
      }
    }
  }
}

// Lanes computed per useful one for an MO x NT tiling of OCg x Kg.
inline double dw_tile_waste(index_t OCg, index_t Kg, index_t MO, index_t NT) {
  return static_cast<double>(sgemm::round_up(OCg, MO) * sgemm::round_up(Kg, NT)) /
         static_cast<double>(std::max<index_t>(1, OCg * Kg));
}

// The direct dW for one image (float only).
template <class T>
void direct_dw(T* dw, bool beta, const T* dy, const T* x, T* xq, const ConvGeom& g, const DirectDims& d,
               const index_t* koff) {
  if constexpr (std::is_same_v<T, float>) {
    to_direct(xq, x, &g, &d);
    const index_t OCg = g.OCg(), Kg = g.Kg();
    const bool tall = dw_tile_waste(OCg, Kg, 6, 4) <= dw_tile_waste(OCg, Kg, 4, 6);
    for (index_t grp = 0; grp < g.G; ++grp) {
      float* dwg = dw + grp * OCg * Kg;
      const float* dyg = dy + grp * OCg * g.P();
      if (tall) {
        direct_dw_image<6, 4>(dwg, beta, dyg, xq, g, d, koff + grp * Kg, OCg, Kg);
      } else {
        direct_dw_image<4, 6>(dwg, beta, dyg, xq, g, d, koff + grp * Kg, OCg, Kg);
      }
    }
  } else {
    NNK_ASSERT(false);
  }
}

// The geometry of dx = conv(dy, flipped transposed weight) for a stride-1 convolution g.
inline ConvGeom dx_as_conv(const ConvGeom& g) {
  ConvGeom t = g;
  t.C = g.OC;
  t.H = g.OH;
  t.W = g.OW;
  t.OC = g.C;
  t.PH = g.DH * (g.KH - 1) - g.PH;
  t.PW = g.DW * (g.KW - 1) - g.PW;
  t.OH = g.H;
  t.OW = g.W;
  return t;
}

// Whether dx of g can run as a direct convolution: stride 1, and padding no larger than the
// dilated kernel on every side (the transposed problem's padding is then >= 0).
inline bool dx_direct_possible(const ConvGeom& g) {
  if (g.SH != 1 || g.SW != 1) return false;
  const index_t pb = g.OH - 1 + g.DH * (g.KH - 1) + 1 - g.H - g.PH;  // padding after, rows
  const index_t pr = g.OW - 1 + g.DW * (g.KW - 1) + 1 - g.W - g.PW;
  return g.PH <= g.DH * (g.KH - 1) && pb >= 0 && pb <= g.DH * (g.KH - 1) && g.PW <= g.DW * (g.KW - 1) && pr >= 0 &&
         pr <= g.DW * (g.KW - 1);
}

// w_t [C, OC/G, KH, KW] (per group: [Cg, OCg, KH, KW]) = w [OC, C/G, KH, KW] transposed within
// each group and flipped in both spatial dims.
template <class T>
void flip_transpose_weight(T* wt, const T* w, const ConvGeom& g) {
  const index_t Cg = g.Cg(), OCg = g.OCg(), KK = g.KH * g.KW;
  for (index_t grp = 0; grp < g.G; ++grp) {
    for (index_t o = 0; o < OCg; ++o) {
      for (index_t c = 0; c < Cg; ++c) {
        const T* src = w + ((grp * OCg + o) * Cg + c) * KK;
        T* dst = wt + ((grp * Cg + c) * OCg + o) * KK;
        for (index_t k = 0; k < KK; ++k) dst[k] = src[KK - 1 - k];
      }
    }
  }
}

// The shared per-call data of the direct kernel (made by the calling thread before the parallel
// region, read-only in it): the weight of every group packed as [panel][Kg][12], and the tap
// offsets. For dx (`flip`), the weight is first transposed within each group and flipped.
template <class T>
struct DirectWeights {
  const T* wpk = nullptr;
  index_t stride = 0;  // between groups, in elements
  const index_t* koff = nullptr;
};

// Elements (of T) of direct_weights' buffer, and of a tap-offset table of K entries.
template <class T>
index_t tap_table_elems(index_t K) {
  return sgemm::round_up((K * static_cast<index_t>(sizeof(index_t)) + static_cast<index_t>(sizeof(T)) - 1) /
                             static_cast<index_t>(sizeof(T)),
                         16);
}

template <class T>
index_t direct_weights_elems(const ConvGeom& g, bool flip) {
  const index_t stride = sgemm::round_up(sgemm::round_up(g.OCg(), sgemm::MR) * g.Kg(), 16);
  return (flip ? sgemm::round_up(g.OC * g.Kg(), 16) : 0) + g.G * stride + tap_table_elems<T>(g.K());
}

// Tap offsets of every group of g into `buf` (tap_table_elems<T>(g.K()) elements).
template <class T>
const index_t* tap_table(T* buf, const ConvGeom& g, const DirectDims& d) {
  index_t* koff = reinterpret_cast<index_t*>(buf);
  for (index_t grp = 0; grp < g.G; ++grp) direct_tap_offsets(koff + grp * g.Kg(), g, d, grp * g.Cg(), g.Cg());
  return koff;
}

// Fills `buf` (direct_weights_elems(g, flip) elements, 64-byte aligned).
template <class T>
DirectWeights<T> direct_weights(T* buf, const T* w, const ConvGeom& orig, const ConvGeom& g, const DirectDims& d,
                                bool flip) {
  DirectWeights<T> out;
  if constexpr (std::is_same_v<T, float>) {
    const index_t OCg = g.OCg(), Kg = g.Kg();
    const index_t flip_elems = flip ? sgemm::round_up(g.OC * Kg, 16) : 0;
    out.stride = sgemm::round_up(sgemm::round_up(OCg, sgemm::MR) * Kg, 16);
    const T* src = w;
    if (flip) {
      flip_transpose_weight(buf, w, orig);
      src = buf;
    }
    T* wpk = buf + flip_elems;
    for (index_t grp = 0; grp < g.G; ++grp) {
      sgemm::pack_a(wpk + grp * out.stride, sgemm::Operand{src + grp * OCg * Kg, Kg, false, nullptr}, OCg, 0,
                    sgemm::round_up(OCg, sgemm::MR), 0, Kg);
    }
    out.wpk = wpk;
    out.koff = tap_table(wpk + g.G * out.stride, g, d);
  } else {
    NNK_ASSERT(false);
  }
  return out;
}

// The direct path for one image (float only: T = double never takes it).
template <class T>
void direct_conv_image(T* y, const T* x, T* xq, const ConvGeom& g, const DirectDims& d, const T* wpk,
                       index_t wpk_stride, const index_t* koff, const T* bias) {
  if constexpr (std::is_same_v<T, float>) {
    to_direct(xq, x, &g, &d);
    const index_t OCg = g.OCg(), Kg = g.Kg();
    for (index_t grp = 0; grp < g.G; ++grp) {
      direct_image(y + grp * OCg * g.P(), xq, g, d, wpk + grp * wpk_stride, koff + grp * Kg, OCg, Kg,
                   bias != nullptr ? bias + grp * OCg : nullptr);
    }
  } else {
    NNK_ASSERT(false);
  }
}

// Float at the avx512 level can use the own SGEMM (the other levels and float64: OpenBLAS).
template <class T>
bool own_gemm_available() {
  if constexpr (std::is_same_v<T, float>) return simd::level() == simd::kAvx512;
  return false;
}


// Packs a weight operand once per call for the own SGEMM: as A (M = rows) or as B (N = rows).
template <class T>
void pack_weight(T* dst, const T* p, index_t ld, bool trans, index_t rows, index_t K, bool as_b) {
  if constexpr (std::is_same_v<T, float>) {
    const sgemm::Operand op{p, ld, trans, nullptr};
    if (as_b) {
      sgemm::pack_b_all(dst, op, rows, K);
    } else {
      sgemm::pack_a_all(dst, op, rows, K);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Threads

// Runs fn(thread, team) on `nt` threads (inline when nt <= 1). An exception (e.g. bad_alloc from
// scratch) must not leave an OpenMP region: the first one is rethrown after the region.
template <class F>
void run_team(int nt, F&& fn) {
  if (nt <= 1) {
    fn(0, 1);
    return;
  }
  std::exception_ptr err = nullptr;
#pragma omp parallel num_threads(nt)
  {
    try {
      fn(omp_get_thread_num(), omp_get_num_threads());
    } catch (...) {
#pragma omp critical(nnkern_conv_error)
      if (!err) err = std::current_exception();
    }
  }
  if (err) std::rethrow_exception(err);
}

// Contiguous share [lo, hi) of [0, n) for thread t of `team` (work split only: callers make
// results independent of it).
inline void team_range(index_t n, int t, int team, index_t& lo, index_t& hi) {
  const index_t per = (n + team - 1) / team;
  lo = std::min(n, t * per);
  hi = std::min(n, lo + per);
}

// How a conv call runs one GEMM, C = (beta ? C : 0) + op(A) @ op(B): the own SGEMM (Apk/Bpk:
// that operand already packed), OpenBLAS on this thread, or OpenBLAS split over threads (gemm()).
template <class T>
struct Mm {
  bool own;
  bool split;
  void operator()(bool ta, bool tb, index_t M, index_t N, index_t K, const T* A, index_t lda, const T* B,
                  index_t ldb, T beta, T* C, index_t ldc, const T* Apk = nullptr, const T* Bpk = nullptr,
                  const T* row_bias = nullptr) const {
    if constexpr (std::is_same_v<T, float>) {
      if (own) {
        sgemm::gemm(M, N, K, {A, lda, ta, Apk}, {B, ldb, tb, Bpk}, beta != T(0), C, ldc, row_bias);
        return;
      }
    }
    NNK_ASSERT(row_bias == nullptr);
    if (split) {
      gemm<T>(ta, tb, M, N, K, T(1), A, lda, B, ldb, beta, C, ldc);
    } else {
      gemm_serial<T>(ta, tb, M, N, K, T(1), A, lda, B, ldb, beta, C, ldc);
    }
  }
};

// Calls fn(group, mm) for every group. Per-image mode: in turn, serial GEMMs (own SGEMM when
// `own`). Split mode: one group -> gemm() splits the product over threads; several -> groups
// spread over threads, each one OpenBLAS call. All choices depend on the shape only.
template <class T, class F>
void for_groups(const ConvGeom& g, bool split, bool own, F&& fn) {
  if (!split) {
    const Mm<T> mm{own, false};
    for (index_t grp = 0; grp < g.G; ++grp) fn(grp, mm);
  } else if (g.G == 1) {
    fn(index_t{0}, Mm<T>{false, true});
  } else {
    parallel_for(
        g.G, 1,
        [&](index_t g0, index_t g1) {
          for (index_t grp = g0; grp < g1; ++grp) fn(grp, Mm<T>{false, false});
        },
        1);
  }
}

// Channels per thread worth splitting im2col/col2im for (about 32K elements each).
inline index_t min_channels_per_thread(const ConvGeom& g, index_t pixels) {
  const index_t per_channel = std::max<index_t>(1, g.KH * g.KW * pixels);
  return std::max<index_t>(1, 32768 / per_channel);
}

template <class T>
void im2col_image(T* col, const T* x_img, const ConvGeom& g, index_t p0, index_t p1, bool split) {
  if (!split) {
    im2col_block(col, x_img, &g, index_t{0}, g.C, p0, p1);
    return;
  }
  parallel_for(
      g.C, min_channels_per_thread(g, p1 - p0),
      [&](index_t c0, index_t c1) { im2col_block(col, x_img, &g, c0, c1, p0, p1); }, 1);
}

template <class T>
void col2im_image(T* x_img, const T* col, const ConvGeom& g, index_t p0, index_t p1, bool split) {
  if (!split) {
    col2im_block(x_img, col, &g, index_t{0}, g.C, p0, p1);
    return;
  }
  parallel_for(
      g.C, min_channels_per_thread(g, p1 - p0),
      [&](index_t c0, index_t c1) { col2im_block(x_img, col, &g, c0, c1, p0, p1); }, 1);
}

template <class T>
void zero_image(T* d, index_t n, bool split) {
  if (!split) {
    zero_fill(d, n);
    return;
  }
  parallel_for(n, 65536, [&](index_t i0, index_t i1) { zero_fill(d + i0, i1 - i0); });
}

// Threads for a per-image region over `units` (images or chunks). Only the speed depends on it.
int team_size(const ConvPlan& pl, const ConvGeom& g, index_t units, double passes) {
  const double work = passes * static_cast<double>(g.N) * static_cast<double>(g.P()) *
                      (static_cast<double>(g.OC) * static_cast<double>(g.Kg()) + static_cast<double>(g.K()));
  const index_t by_work = static_cast<index_t>(std::min(1.0e6, std::max(1.0, work / kMinWorkPerThread)));
  return static_cast<int>(std::min<index_t>(
      {static_cast<index_t>(num_threads()), static_cast<index_t>(pl.max_threads), units, by_work}));
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Plan

ConvPlan conv_plan(const ConvGeom& g, std::size_t elem_size, bool backward, bool need_dw, bool need_dx) {
  const index_t elem = static_cast<index_t>(elem_size);
  const index_t limit = static_cast<index_t>(
      std::min<std::size_t>(workspace_limit(), std::size_t{1} << 60));
  const index_t thread_budget = std::max<index_t>(1, limit / kThreadShare / elem);  // elements
  const index_t P = g.P(), K = g.K();
  ConvPlan pl{};

  pl.per_image = g.N >= 2;
  pl.red_chunks = 1;
  pl.red_chunk_images = std::max<index_t>(g.N, 1);
  if (backward && g.N >= 2) {
    const index_t part_bytes = ((need_dw ? g.OC * g.Kg() : 0) + g.OC) * elem;
    index_t nred = std::min(g.N, kMaxRedChunks);
    if (part_bytes > 0) nred = std::min(nred, std::max<index_t>(1, limit / kPartialShare / part_bytes));
    pl.red_chunk_images = (g.N + nred - 1) / nred;
    pl.red_chunks = (g.N + pl.red_chunk_images - 1) / pl.red_chunk_images;
    // A single chunk would run the whole batch on one thread: split each GEMM instead.
    if (pl.red_chunks < 2) {
      pl.per_image = false;
      pl.red_chunks = 1;
      pl.red_chunk_images = g.N;
    }
  }

  // Direct NCHW kernels (float at the avx512 level, per-image mode): the forward, and dx of
  // stride-1 convolutions, when the output rows fill the 16-float lanes and the output channels
  // the 12-row tiles well enough, the padded image copy fits a thread's budget, and the fused
  // channels-last GEMMs (faster for wide inputs: their B reads stay in L1) do not apply.
  const bool own = elem_size == sizeof(float) && simd::level() == simd::kAvx512 && pl.per_image && P > 0;
  const bool fused_candidate = own && nhwc_fusable(g);
  auto tile_use = [](index_t rows) { return static_cast<double>(rows) / static_cast<double>(sgemm::round_up(rows, sgemm::MR)); };
  if (own && !backward && !g.pointwise() && !fused_candidate && lane_use(g.OW) >= kMinLaneUse && g.Kg() >= 4 &&
      tile_use(g.OCg()) >= 0.6) {
    const index_t e = direct_dims(g).elems();
    if (e <= thread_budget / 2) {
      pl.direct_fwd = true;
      pl.direct_elems = e;
    }
  }
  if (own && backward && need_dw && !g.pointwise() && !fused_candidate && lane_use(g.OW) >= kMinLaneUse &&
      g.Kg() >= 4) {
    const index_t e = direct_dims(g).elems();
    if (e <= thread_budget / 4) {
      pl.direct_dw = true;
      pl.direct_w_elems = e;
    }
  }
  if (own && backward && need_dx && !g.pointwise() && !fused_candidate && dx_direct_possible(g)) {
    const ConvGeom t = dx_as_conv(g);
    const index_t e = direct_dims(t).elems();
    if (lane_use(t.OW) >= kMinLaneUse && t.Kg() >= 4 && tile_use(t.OCg()) >= 0.6 && e <= thread_budget / 4) {
      pl.direct_dx = true;
      pl.direct_elems = e;
    }
  }

  // Column layout for what remains: channels-last when its contiguous runs are long and beat
  // the NCHW runs (one output row; strided gathers when SW > 1), per-image mode only (its
  // scatter is not split over threads), and the padded image copies fit a thread's budget.
  const bool need_columns = backward ? ((need_dw && !pl.direct_dw) || (need_dx && !pl.direct_dx)) : !pl.direct_fwd;
  pl.layout = ConvPlan::kNchw;
  pl.image_elems = 0;
  pl.image_copies = 0;
  if (g.pointwise()) {
    pl.layout = ConvPlan::kPointwise;
  } else if (pl.per_image && P > 0 && need_columns) {
    const index_t run = (g.G == 1 && g.DW == 1) ? g.KW * g.C : g.Cg();
    const PaddedDims pd = padded_dims(g);
    const index_t image = pd.Hp * pd.Wp * g.C;
    const index_t copies = backward ? (need_dw && !pl.direct_dw ? 1 : 0) + (need_dx && !pl.direct_dx ? 1 : 0) : 1;
    if (run >= kMinNhwcRun && (run >= g.OW || g.SW > 1) &&
        copies * image <= (thread_budget - pl.direct_elems - pl.direct_w_elems) / 2) {
      pl.layout = ConvPlan::kNhwc;
      pl.image_elems = image;
      pl.image_copies = copies;
    }
  }

  pl.fused = pl.layout == ConvPlan::kNhwc && elem_size == sizeof(float) && simd::level() == simd::kAvx512 &&
             nhwc_fusable(g);

  if (pl.layout == ConvPlan::kPointwise || pl.fused || !need_columns || P == 0) {
    pl.block_pixels = std::max<index_t>(P, 1);
    pl.col_elems = 0;
  } else {
    const index_t budget = std::max<index_t>(
        1, thread_budget - pl.image_copies * pl.image_elems - pl.direct_elems - pl.direct_w_elems);
    index_t bp = K > 0 ? budget / K : P;
    if (bp >= P) {
      bp = P;
    } else {
      bp = std::max(bp, std::min(P, kMinBlockPixels));
      if (bp >= g.OW) bp = bp / g.OW * g.OW;  // whole output rows when they fit
    }
    pl.block_pixels = std::max<index_t>(bp, 1);
    pl.col_elems = K * pl.block_pixels;
  }
  const index_t thread_bytes =
      (pl.col_elems + pl.image_copies * pl.image_elems + pl.direct_elems + pl.direct_w_elems) * elem;
  pl.max_threads = thread_bytes == 0
                       ? kMaxTeam
                       : static_cast<int>(std::clamp<index_t>(limit / thread_bytes, 1, kMaxTeam));
  return pl;
}

// ---------------------------------------------------------------------------------------------
// im2col / col2im over a batch (torch's unfold / fold)

template <class T>
void im2col(T* col, const T* x, const ConvGeom& g) {
  const index_t K = g.K(), P = g.P(), CHW = g.C * g.H * g.W;
  const index_t units = g.N * g.C;  // (image, channel) pairs: disjoint column rows
  parallel_for(
      units, min_channels_per_thread(g, P),
      [&](index_t u0, index_t u1) {
        for (index_t u = u0; u < u1;) {
          const index_t n = u / g.C, c0 = u - n * g.C;
          const index_t c1 = std::min(g.C, c0 + (u1 - u));
          im2col_block(col + n * K * P, x + n * CHW, &g, c0, c1, index_t{0}, P);
          u += c1 - c0;
        }
      },
      1);
}

template <class T>
void col2im(T* x, const T* col, const ConvGeom& g) {
  const index_t K = g.K(), P = g.P(), HW = g.H * g.W, CHW = g.C * HW;
  const index_t units = g.N * g.C;  // each (image, channel) plane of x is owned by one thread
  parallel_for(
      units, min_channels_per_thread(g, P),
      [&](index_t u0, index_t u1) {
        zero_fill(x + u0 * HW, (u1 - u0) * HW);
        for (index_t u = u0; u < u1;) {
          const index_t n = u / g.C, c0 = u - n * g.C;
          const index_t c1 = std::min(g.C, c0 + (u1 - u));
          col2im_block(x + n * CHW, col + n * K * P, &g, c0, c1, index_t{0}, P);
          u += c1 - c0;
        }
      },
      1);
}

// ---------------------------------------------------------------------------------------------
// Forward

template <class T>
void conv2d_forward(T* y, const T* x, const T* w, const T* b, const ConvGeom& g) {
  const index_t P = g.P();
  if (g.N <= 0 || g.OC <= 0 || P <= 0) return;
  const ConvPlan pl = conv_plan(g, sizeof(T), false, false);
  const index_t CHW = g.C * g.H * g.W, OCP = g.OC * P, OCg = g.OCg(), Kg = g.Kg(), K = g.K();
  if (pl.direct_fwd) {
    const DirectDims d = direct_dims(g);
    const DirectWeights<T> dw8 =
        direct_weights(scratch<T>(kSlotWeight, direct_weights_elems<T>(g, false)), w, g, g, d, false);
    run_team(team_size(pl, g, g.N, 1.0), [&](int t, int team) {
      T* xq = scratch<T>(kSlotImage, pl.direct_elems);
      index_t lo, hi;
      team_range(g.N, t, team, lo, hi);
      for (index_t n = lo; n < hi; ++n) direct_conv_image(y + n * OCP, x + n * CHW, xq, g, d, dw8.wpk, dw8.stride, dw8.koff, b);
    });
    return;
  }
  const bool nhwc = pl.layout == ConvPlan::kNhwc, pw = pl.layout == ConvPlan::kPointwise;
  const PaddedDims pd = padded_dims(g);
  // Channels-last columns pair with the weight in (OC, KH, KW, Cg) order; the own SGEMM takes it
  // packed as A. Both made once per call, shared read-only by the threads.
  const bool own = pl.per_image && own_gemm_available<T>() && own_gemm_fits(OCg, pl.block_pixels, Kg);
  // (offsets in whole cache lines: packed panels are read and written with aligned vector moves)
  const index_t wt_elems = nhwc ? sgemm::round_up(g.OC * Kg, 16) : 0;
  const index_t wpk_stride = own ? sgemm::round_up(sgemm::packed_a_size(OCg, Kg), 16) : 0;
  const T* wk = w;
  const T* wpk = nullptr;
  if (nhwc || own) {
    T* buf = scratch<T>(kSlotWeight, wt_elems + g.G * wpk_stride);
    if (nhwc) {
      weight_to_nhwc(buf, w, g);
      wk = buf;
    }
    if (own) {
      for (index_t grp = 0; grp < g.G; ++grp) {
        pack_weight(buf + wt_elems + grp * wpk_stride, wk + grp * OCg * Kg, Kg, false, OCg, Kg, false);
      }
      wpk = buf + wt_elems;
    }
  }
  auto wpk_of = [&](index_t grp) -> const T* { return wpk != nullptr ? wpk + grp * wpk_stride : nullptr; };

  // One image: y_n = bias rows, then for every column block y_n[g-rows, block] += W_g @ col_g
  // (GEMM beta = 1: no separate zeroing or bias pass over y). `col` (and `xt` for channels-last)
  // are this thread's scratch.
  // The own SGEMM adds the bias in its first store instead (row_bias, beta = 0).
  const bool bias_in_gemm = own && b != nullptr;
  const T beta = b != nullptr && !bias_in_gemm ? T(1) : T(0);
  auto bias_of = [&](index_t grp) -> const T* { return bias_in_gemm ? b + grp * OCg : nullptr; };
  auto image = [&](index_t n, T* col, T* xt, bool split) {
    const T* xn = x + n * CHW;
    T* yn = y + n * OCP;
    if (b != nullptr && !bias_in_gemm) {
      if (split) {
        parallel_for(
            g.OC, std::max<index_t>(1, 65536 / P), [&](index_t r0, index_t r1) { fill_bias(yn, b, r0, r1, P); },
            1);
      } else {
        fill_bias(yn, b, index_t{0}, g.OC, P);
      }
    }
    if (nhwc) to_padded_nhwc(xt, xn, &g, pd.Hp, pd.Wp);
    for (index_t p0 = 0; p0 < P; p0 += pl.block_pixels) {
      const index_t p1 = std::min(P, p0 + pl.block_pixels), np = p1 - p0;
      if (nhwc && pl.fused) {
        fused_forward(yn + p0, P, static_cast<const T*>(xt), nhwc_map(g, pd.Wp, p0), wk, wpk_of(0), OCg, np, Kg,
                      bias_of(0));
        continue;
      }
      if (nhwc) {
        gather_nhwc(col, static_cast<const T*>(xt), &g, pd.Wp, p0, p1);  // col [np, K]
        for_groups<T>(g, split, own, [&](index_t grp, const Mm<T>& mm) {
          mm(false, true, OCg, np, Kg, wk + grp * OCg * Kg, Kg, col + grp * Kg, K, beta, yn + grp * OCg * P + p0, P,
             wpk_of(grp), nullptr, bias_of(grp));
        });
        continue;
      }
      const T* cols = xn + p0;  // pointwise: the image is its own column matrix (row stride P)
      index_t ld = P;
      if (!pw) {
        im2col_image(col, xn, g, p0, p1, split);  // col [K, np]
        cols = col;
        ld = np;
      }
      for_groups<T>(g, split, own, [&](index_t grp, const Mm<T>& mm) {
        mm(false, false, OCg, np, Kg, wk + grp * OCg * Kg, Kg, cols + grp * Kg * ld, ld, beta,
           yn + grp * OCg * P + p0, P, wpk_of(grp), nullptr, bias_of(grp));
      });
    }
  };

  if (pl.per_image) {
    run_team(team_size(pl, g, g.N, 1.0), [&](int t, int team) {
      T* col = pl.col_elems > 0 ? scratch<T>(kSlotColumns, pl.col_elems) : nullptr;
      T* xt = nhwc ? scratch<T>(kSlotImage, pl.image_elems) : nullptr;
      index_t lo, hi;
      team_range(g.N, t, team, lo, hi);
      for (index_t n = lo; n < hi; ++n) image(n, col, xt, false);
    });
  } else {
    T* col = pl.col_elems > 0 ? scratch<T>(kSlotColumns, pl.col_elems) : nullptr;
    for (index_t n = 0; n < g.N; ++n) image(n, col, nullptr, true);
  }
}

// ---------------------------------------------------------------------------------------------
// Backward

template <class T>
void conv2d_backward(T* dx, T* dw, T* db, const T* dy, const T* x, const T* w, const ConvGeom& g,
                     bool accumulate) {
  const index_t P = g.P(), CHW = g.C * g.H * g.W, OCP = g.OC * P, OCg = g.OCg(), Kg = g.Kg(), K = g.K();
  const index_t WN = g.OC * Kg;  // weight elements
  if (g.N <= 0 || P <= 0) {
    if (!accumulate) {
      if (dw != nullptr) zero_fill(dw, WN);
      if (db != nullptr) zero_fill(db, g.OC);
    }
    return;
  }
  const ConvPlan pl = conv_plan(g, sizeof(T), true, dw != nullptr, dx != nullptr);
  const bool nhwc = pl.layout == ConvPlan::kNhwc, pw = pl.layout == ConvPlan::kPointwise;
  const PaddedDims pd = padded_dims(g);
  // dx through the columns (dcol GEMM + col2im), unless the direct kernel computes it; dW through
  // the columns unless the direct dW kernel does.
  T* const dxc = pl.direct_dx ? nullptr : dx;
  const bool direct_dw_on = pl.direct_dw && dw != nullptr;
  // dcol = W^T dy: channels-last pairs with the weight in (OC, KH, KW, Cg) order (B of the GEMM),
  // NCHW with W^T (A). The own SGEMM takes that operand packed once per call.
  const bool own_ok = pl.per_image && own_gemm_available<T>();
  const index_t bp = pl.block_pixels;
  const bool own_dw = own_ok && own_gemm_fits(OCg, Kg, bp);
  const bool own_dx = own_ok && (nhwc ? own_gemm_fits(bp, Kg, OCg) : own_gemm_fits(Kg, bp, OCg));
  const bool need_wk = dxc != nullptr && (nhwc || own_dx);
  const index_t wt_elems = nhwc && dxc != nullptr ? sgemm::round_up(WN, 16) : 0;
  const index_t wpk_stride = !(own_dx && dxc != nullptr) ? 0
                             : sgemm::round_up(nhwc ? sgemm::packed_b_size(Kg, OCg) : sgemm::packed_a_size(Kg, OCg), 16);
  // Everything shared by the threads lives in one buffer: [direct dx weights | dW tap table |
  // weight for the dcol GEMM].
  ConvGeom gx{};
  DirectDims dd{}, dxd{};
  DirectWeights<T> dxw{};
  const index_t* dw_koff = nullptr;
  if (pl.direct_dx) {
    gx = dx_as_conv(g);
    dd = direct_dims(gx);
  }
  if (direct_dw_on) dxd = direct_dims(g);
  const index_t shared_a = pl.direct_dx ? direct_weights_elems<T>(gx, true) : 0;
  const index_t shared_b = direct_dw_on ? tap_table_elems<T>(K) : 0;
  const index_t shared_c = need_wk ? wt_elems + g.G * wpk_stride : 0;
  T* shared = shared_a + shared_b + shared_c > 0 ? scratch<T>(kSlotWeight, shared_a + shared_b + shared_c) : nullptr;
  if (pl.direct_dx) dxw = direct_weights(shared, w, g, gx, dd, true);
  if (direct_dw_on) dw_koff = tap_table(shared + shared_a, g, dxd);
  const T* wk = w;
  const T* wpk = nullptr;
  if (need_wk) {
    T* buf = shared + shared_a + shared_b;
    if (nhwc) {
      weight_to_nhwc(buf, w, g);
      wk = buf;
    }
    if (wpk_stride > 0) {
      for (index_t grp = 0; grp < g.G; ++grp) {
        // channels-last: B = W'_g [OCg, Kg] (N = Kg); NCHW: A = W_g^T (M = Kg)
        pack_weight(buf + wt_elems + grp * wpk_stride, wk + grp * OCg * Kg, Kg, !nhwc, Kg, OCg, nhwc);
      }
      wpk = buf + wt_elems;
    }
  }
  auto wpk_of = [&](index_t grp) -> const T* { return wpk != nullptr ? wpk + grp * wpk_stride : nullptr; };

  // One image: dW target `dwt` (first GEMM with beta `dw_beta`, then 1; in the column layout's
  // weight order), db target `dbt` (added into), dx image written. `col`, `xt`, `dxt` are this
  // thread's scratch (xt/dxt: channels-last only).
  auto image = [&](index_t n, T* col, T* xt, T* dxt, T* dyq, T* xq, T* dw_in, T& dw_beta, T* dbt, bool split) {
    const T* dyn = dy + n * OCP;
    const T* xn = x + n * CHW;
    T* dxn = dxc != nullptr ? dxc + n * CHW : nullptr;
    if (pl.direct_dx && dx != nullptr) {
      direct_conv_image(dx + n * CHW, dyn, dyq, gx, dd, dxw.wpk, dxw.stride, dxw.koff, static_cast<const T*>(nullptr));
    }
    if (direct_dw_on && dw_in != nullptr) {
      direct_dw(dw_in, dw_beta != T(0), dyn, xn, xq, g, dxd, dw_koff);
      dw_beta = T(1);
    }
    T* const dwt = direct_dw_on ? nullptr : dw_in;  // dW through the columns
    if (dbt != nullptr) {
      if (split) {
        parallel_for(
            g.OC, std::max<index_t>(1, 65536 / P),
            [&](index_t r0, index_t r1) { add_row_sums(dbt, dyn, r0, r1, P); }, 1);
      } else {
        add_row_sums(dbt, dyn, index_t{0}, g.OC, P);
      }
    }
    if (dwt == nullptr && dxn == nullptr) return;
    if (nhwc) {
      if (dwt != nullptr) to_padded_nhwc(xt, xn, &g, pd.Hp, pd.Wp);
      if (dxn != nullptr) zero_fill(dxt, pl.image_elems);
    } else if (dxn != nullptr && !pw) {
      zero_image(dxn, CHW, split);
    }
    for (index_t p0 = 0; p0 < P; p0 += pl.block_pixels) {
      const index_t p1 = std::min(P, p0 + pl.block_pixels), np = p1 - p0;
      if (dwt != nullptr) {
        // dW_g += dy_g[:, block] @ col_g^T
        const T beta = dw_beta;
        if (nhwc && pl.fused) {
          fused_dw(dwt, dyn + p0, P, static_cast<const T*>(xt), nhwc_map(g, pd.Wp, p0), OCg, np, Kg, beta != T(0));
        } else if (nhwc) {
          gather_nhwc(col, static_cast<const T*>(xt), &g, pd.Wp, p0, p1);  // col [np, K]
          for_groups<T>(g, split, own_dw, [&](index_t grp, const Mm<T>& mm) {
            mm(false, false, OCg, Kg, np, dyn + grp * OCg * P + p0, P, col + grp * Kg, K, beta, dwt + grp * OCg * Kg,
               Kg);
          });
        } else {
          const T* cols = xn + p0;
          index_t ld = P;
          if (!pw) {
            im2col_image(col, xn, g, p0, p1, split);  // col [K, np]
            cols = col;
            ld = np;
          }
          for_groups<T>(g, split, own_dw, [&](index_t grp, const Mm<T>& mm) {
            mm(false, true, OCg, Kg, np, dyn + grp * OCg * P + p0, P, cols + grp * Kg * ld, ld, beta,
               dwt + grp * OCg * Kg, Kg);
          });
        }
        dw_beta = T(1);
      }
      if (dxn != nullptr) {
        // dcol_g = W_g^T @ dy_g[:, block] into the column buffer (free again), then scattered
        // back. Pointwise: dx_g[:, block] = W_g^T @ dy_g[:, block] directly.
        if (nhwc && pl.fused) {
          fused_dcol(dxt, nhwc_map(g, pd.Wp, p0), dyn + p0, P, wk, wpk_of(0), OCg, np, Kg);
        } else if (nhwc) {
          for_groups<T>(g, split, own_dx, [&](index_t grp, const Mm<T>& mm) {
            mm(true, false, np, Kg, OCg, dyn + grp * OCg * P + p0, P, wk + grp * OCg * Kg, Kg, T(0), col + grp * Kg, K,
               nullptr, wpk_of(grp));
          });
          scatter_nhwc(dxt, static_cast<const T*>(col), &g, pd.Wp, p0, p1);
        } else {
          T* dcol = pw ? dxn + p0 : col;
          const index_t ld = pw ? P : np;
          for_groups<T>(g, split, own_dx, [&](index_t grp, const Mm<T>& mm) {
            mm(true, false, Kg, np, OCg, wk + grp * OCg * Kg, Kg, dyn + grp * OCg * P + p0, P, T(0),
               dcol + grp * Kg * ld, ld, wpk_of(grp));
          });
          if (!pw) col2im_image(dxn, static_cast<const T*>(col), g, p0, p1, split);
        }
      }
    }
    if (nhwc && dxn != nullptr) from_padded_nhwc(dxn, static_cast<const T*>(dxt), &g, pd.Hp, pd.Wp);
  };

  if (pl.per_image) {
    // Image chunks fixed by the shape, each summed in image order into its own partial; the
    // partials are added in chunk order below. Threads take contiguous runs of chunks.
    const index_t nred = pl.red_chunks, per = pl.red_chunk_images;
    T* dwp = dw != nullptr ? scratch<T>(kSlotDwPartials, nred * WN) : nullptr;
    T* dbp = db != nullptr ? scratch<T>(kSlotDbPartials, nred * g.OC) : nullptr;
    run_team(team_size(pl, g, nred, (dx != nullptr) + (dw != nullptr)), [&](int t, int team) {
      T* col = pl.col_elems > 0 ? scratch<T>(kSlotColumns, pl.col_elems) : nullptr;
      T* xt = nhwc && dw != nullptr ? scratch<T>(kSlotImage, pl.image_elems) : nullptr;
      T* dxt = nhwc && dxc != nullptr ? scratch<T>(kSlotImageGrad, pl.image_elems) : nullptr;
      T* dyq = pl.direct_dx ? scratch<T>(kSlotImageGrad, pl.direct_elems) : nullptr;
      T* xq = direct_dw_on ? scratch<T>(kSlotImage, pl.direct_w_elems) : nullptr;
      index_t lo, hi;
      team_range(nred, t, team, lo, hi);
      for (index_t c = lo; c < hi; ++c) {
        T* dwc = dwp != nullptr ? dwp + c * WN : nullptr;
        T* dbc = dbp != nullptr ? dbp + c * g.OC : nullptr;
        if (dbc != nullptr) zero_fill(dbc, g.OC);
        T beta = T(0);
        for (index_t n = c * per; n < std::min(g.N, (c + 1) * per); ++n) {
          image(n, col, xt, dxt, dyq, xq, dwc, beta, dbc, false);
        }
        if (dwc != nullptr && beta == T(0)) zero_fill(dwc, WN);  // no GEMM ran (empty dims)
      }
    });
    // Partials summed in chunk order into partial 0, then stored (or added) into dw/db.
    if (dw != nullptr) {
      parallel_for(WN, 16384, [&](index_t i0, index_t i1) { reduce_partials(dwp, nred, WN, i0, i1); });
      if (nhwc && !direct_dw_on) {  // channels-last columns give dW in (OC, KH, KW, Cg) order
        weight_from_nhwc(dw, static_cast<const T*>(dwp), g, accumulate);
      } else {
        store(dw, static_cast<const T*>(dwp), WN, accumulate);
      }
    }
    if (db != nullptr) {
      reduce_partials(dbp, nred, g.OC, index_t{0}, g.OC);
      store(db, static_cast<const T*>(dbp), g.OC, accumulate);
    }
  } else {
    // Images in turn, every GEMM split over the threads; dW/db accumulate in image order.
    T* col = pl.col_elems > 0 ? scratch<T>(kSlotColumns, pl.col_elems) : nullptr;
    T beta = accumulate ? T(1) : T(0);
    if (db != nullptr && !accumulate) zero_fill(db, g.OC);
    for (index_t n = 0; n < g.N; ++n) image(n, col, nullptr, nullptr, nullptr, nullptr, dw, beta, db, true);
    if (dw != nullptr && beta == T(0)) zero_fill(dw, WN);
  }
}

template <class T>
void conv_serial_gemm(bool trans_a, bool trans_b, index_t M, index_t N, index_t K, const T* A, index_t lda,
                      const T* B, index_t ldb, bool beta, T* C, index_t ldc) {
  Mm<T>{own_gemm_available<T>(), false}(trans_a, trans_b, M, N, K, A, lda, B, ldb, beta ? T(1) : T(0), C, ldc);
}

#define NNK_CONV_INSTANTIATE(T)                                                               \
  template void conv_serial_gemm<T>(bool, bool, index_t, index_t, index_t, const T*, index_t, const T*, \
                                    index_t, bool, T*, index_t);                              \
  template void im2col<T>(T*, const T*, const ConvGeom&);                                     \
  template void col2im<T>(T*, const T*, const ConvGeom&);                                     \
  template void conv2d_forward<T>(T*, const T*, const T*, const T*, const ConvGeom&);         \
  template void conv2d_backward<T>(T*, T*, T*, const T*, const T*, const T*, const ConvGeom&, \
                                   bool);
NNK_CONV_INSTANTIATE(float)
NNK_CONV_INSTANTIATE(double)
#undef NNK_CONV_INSTANTIATE

}  // namespace nnkern
