// 2-D convolution (NCHW) by im2col + GEMM: forward, backward (dx, dw, db), im2col and col2im.
// conv1d is the same kernel with H = KH = 1.
//
// Layouts (torch's): x [N, C, H, W], w [OC, C/G, KH, KW], b [OC], y [N, OC, OH, OW].
// Columns (torch's unfold layout): col [C*KH*KW, OH*OW] per image, row (c, ki, kj), column
// (oh, ow): col[(c*KH + ki)*KW + kj][oh*OW + ow] = x[c][oh*SH + ki*DH - PH][ow*SW + kj*DW - PW]
// (0 outside the input). Group g owns the contiguous rows [g*Kg, (g+1)*Kg), Kg = C/G*KH*KW.
//
// How the work is cut (conv_plan):
//   * N >= 2 ("per-image" mode): threads take whole images. Each thread builds one image's
//     columns in its own scratch (L2-sized for typical layers), runs single-threaded GEMMs on it
//     (y_n = W col_n; dW += dy_n col_n^T; dcol = W^T dy_n) and scatters dcol back with col2im into
//     the dx image it owns: no atomics, no shared writes.
//   * Column layouts: NCHW (torch's unfold, [K, pixels]; runs of one output row) for few input
//     channels; channels-last ([pixels, K], gathered from a zero-padded NHWC copy of the image:
//     runs of KW*C contiguous values) when those runs are long (C >= 16 or so).
//   * GEMMs: float32 at the avx512 level uses nnkern's own AVX-512 SGEMM (conv.cc, 12x32 tile;
//     OpenBLAS's SkylakeX kernel reached ~72% of MKL's rate on our Intel test machine) for
//     products big enough to fill its tiles; the weight is packed once per call. For dense
//     channels-last convolutions (G = 1, DW = 1, KW*C % 32 == 0) the GEMMs are fused with the
//     column handling: the forward packs B straight from the image copy, dW reads its B rows
//     there, and dcol tiles are added straight into the dx image copy: no column matrix at all.
//     float64, the other ISA levels and small products go through gemm.h (OpenBLAS).
//   * Direct kernels (float32, avx512, per-image mode; no column matrix): output pixels on the
//     16-float lanes, B rows read straight from a zero-padded, stride-phase-split NCHW copy of the
//     image. Used for the forward and for dx of stride-1 convolutions (a convolution of dy with
//     the flipped, transposed kernel) when output rows fill the lanes and output channels the
//     12-row tiles, and for dW (6x4 / 4x6 register tiles of lane accumulators) when the fused
//     channels-last path does not apply. They are what makes few-channel layers (digits, CIFAR
//     inputs) fast: there the im2col copies, not the FLOPs, dominated.
//   * N == 1, or a weight too large for per-chunk partial gradients: images run one after the
//     other and each GEMM is split over the threads by gemm() (fixed, shape-only cut);
//     im2col/col2im split over channels.
//   * Memory: one image's columns (or image copies) per active thread. If they exceed
//     workspace_limit()/8, the image is processed in pixel blocks; the number of concurrently
//     active threads is capped so that blocks * threads stays under the limit; the own SGEMM's
//     packing buffers stay under limit/16. No allocation grows with N.
//   * Determinism: every choice above depends on the shapes (and the workspace limit), never on
//     the thread count. dW and db sum the batch in a fixed number of image chunks, each into its
//     own partial, combined in chunk order. Results are bitwise equal for any thread count. (A
//     workspace limit small enough to cut one image into pixel blocks, or to reduce the number
//     of dW partials, changes the summation order: last-bit changes.)
#pragma once

#include <cstddef>

#include "nnkern/common.h"

namespace nnkern {

// Geometry of one convolution. Padding after the input (bottom/right) is implied by OH/OW, so
// asymmetric padding (torch's padding='same' with even kernels) needs no extra fields.
struct ConvGeom {
  index_t N = 0, C = 0, H = 0, W = 0;   // input x [N, C, H, W]
  index_t OC = 0, KH = 1, KW = 1;       // weight w [OC, C/G, KH, KW]
  index_t G = 1;                        // groups (C % G == 0, OC % G == 0)
  index_t SH = 1, SW = 1;               // stride
  index_t PH = 0, PW = 0;               // padding before (top, left)
  index_t DH = 1, DW = 1;               // dilation
  index_t OH = 0, OW = 0;               // output size

  index_t Cg() const { return C / G; }
  index_t OCg() const { return OC / G; }
  index_t Kg() const { return Cg() * KH * KW; }  // column rows (GEMM depth) of one group
  index_t K() const { return C * KH * KW; }      // column rows of all groups
  index_t P() const { return OH * OW; }          // output pixels per image
  // 1x1, stride 1, no padding: the input image already is its column matrix.
  bool pointwise() const {
    return KH == 1 && KW == 1 && SH == 1 && SW == 1 && PH == 0 && PW == 0 && OH == H && OW == W;
  }
};

// Output length of one spatial dim: (in + pad_before + pad_after - d*(k-1) - 1) / s + 1.
// The caller has checked that the padded input holds one dilated kernel.
inline index_t conv_out_size(index_t in, index_t k, index_t s, index_t pad_before,
                             index_t pad_after, index_t d) {
  return (in + pad_before + pad_after - d * (k - 1) - 1) / s + 1;
}

// How conv2d_forward/backward cut a problem (decided from shapes and workspace_limit() only,
// never from the thread count). Exposed for tests and benchmarks.
struct ConvPlan {
  // Column matrix layout: NCHW (torch's unfold, [K, pixels]); channels-last ([pixels, K] gathered
  // from a zero-padded channels-last copy of the image: long contiguous runs when C is large);
  // or none (pointwise: the image is its own column matrix).
  enum Layout { kNchw, kNhwc, kPointwise };
  Layout layout;
  bool fused;             // channels-last with nnkern's AVX-512 SGEMM packing straight from the
                          // image copy and adding straight into the dx copy: no column matrix
  bool direct_fwd;        // forward by the direct NCHW kernel (no columns)
  bool direct_dx;         // dx by the direct NCHW kernel (stride 1: conv of dy, flipped weight)
  bool direct_dw;         // dW by the direct kernel (pixels on the lanes, no columns)
  index_t direct_elems;   // scratch elements of one padded phase-split image (forward: x; dx: dy)
  index_t direct_w_elems; // dW: scratch elements of the padded phase-split copy of x
  index_t image_copies;   // channels-last image copies per thread (x, and dx)
  bool per_image;         // threads over images (else: images in turn, GEMMs split by gemm())
  index_t block_pixels;   // pixels of one image per column block (== P unless capped)
  index_t col_elems;      // scratch elements of one block's columns (0 for pointwise)
  index_t image_elems;    // channels-last: elements of one padded image copy (x, and dx)
  int max_threads;        // cap on active threads so that their buffers fit the limit
  index_t red_chunks;     // backward: image chunks with their own dW/db partial
  index_t red_chunk_images;
};
ConvPlan conv_plan(const ConvGeom& g, std::size_t elem_size, bool backward, bool need_dw, bool need_dx = true);

// col [N, C*KH*KW, OH*OW]  x [N, C, H, W]
template <class T>
void im2col(T* col, const T* x, const ConvGeom& g);

// x [N, C, H, W] (overwritten with the sum of every column entry mapping to it)
// col [N, C*KH*KW, OH*OW]
template <class T>
void col2im(T* x, const T* col, const ConvGeom& g);

// y [N, OC, OH, OW]  x [N, C, H, W]  w [OC, C/G, KH, KW]  b [OC] or nullptr
template <class T>
void conv2d_forward(T* y, const T* x, const T* w, const T* b, const ConvGeom& g);

// dx [N, C, H, W] | nullptr   dw [OC, C/G, KH, KW] | nullptr   db [OC] | nullptr
// dy [N, OC, OH, OW]  x [N, C, H, W]  w [OC, C/G, KH, KW]
// dx is overwritten; dw and db are overwritten, or added into when `accumulate` (a parameter's
// .grad, as GEMM beta = 1).
template <class T>
void conv2d_backward(T* dx, T* dw, T* db, const T* dy, const T* x, const T* w, const ConvGeom& g,
                     bool accumulate);

// The serial GEMM per-image threads use (float32 at the avx512 level: nnkern's own AVX-512 SGEMM;
// otherwise one OpenBLAS call). C[M,N] = (beta ? C : 0) + op(A) @ op(B). Exposed for tests.
template <class T>
void conv_serial_gemm(bool trans_a, bool trans_b, index_t M, index_t N, index_t K, const T* A, index_t lda,
                      const T* B, index_t ldb, bool beta, T* C, index_t ldc);

}  // namespace nnkern
