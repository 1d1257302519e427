// 2-D pooling on NCHW planes: max (with torch's flat indices) and average, fixed windows and
// adaptive windows, forward and backward.
//
// Layout: every (n, c) pair is one contiguous H x W plane, so all kernels work plane by plane and
// run in parallel over planes (each thread owns whole input and output planes: the backward
// passes scatter without atomics and results do not depend on the thread count).
//
// Semantics follow torch's CPU kernels exactly:
//   * output size: floor or ceil((in + 2p - d*(k-1) - 1) / s) + 1, and with ceil_mode the last
//     window must start inside the input or the left padding (pool_output_size);
//   * max: the first maximum in row-major scan order wins ties; a NaN in the window propagates and
//     the index of the last NaN in scan order is returned; indices are h*W + w within the plane;
//   * avg: windows are clipped to the padded input for the count_include_pad divisor, to the input
//     otherwise; divisor_override replaces both;
//   * adaptive windows of output i: [floor(i*in/out), ceil((i+1)*in/out)).
//
// Kernels only assert; the bindings (bindings/pool.cc) validate every argument first.
#pragma once

#include "nnkern/common.h"

namespace nnkern {

// Geometry of one pooling call. planes = N*C; the input plane is H x W, the output OH x OW.
struct Pool2dShape {
  index_t planes;
  index_t H, W;
  index_t OH, OW;
  index_t kH, kW;
  index_t sH, sW;
  index_t pH, pW;
  index_t dH, dW;
};

// torch's pooling_output_shape: number of windows along one dimension (may be <= 0 when the
// window does not fit; the caller rejects that).
index_t pool_output_size(index_t in, index_t k, index_t s, index_t p, index_t d, bool ceil_mode);

// The first output position along one dimension whose window holds no input element (it lies
// entirely in the padding, possible only with dilation > 1), or -1 if every window holds one.
index_t pool_first_empty_window(index_t in, index_t out, index_t k, index_t s, index_t p, index_t d);

// Adaptive windows: [adaptive_start(i), adaptive_end(i)) along a dimension of size `in` cut into
// `out` windows.
inline index_t adaptive_start(index_t i, index_t in, index_t out) {
  return static_cast<index_t>((static_cast<__int128>(i) * in) / out);
}
inline index_t adaptive_end(index_t i, index_t in, index_t out) {
  return static_cast<index_t>((static_cast<__int128>(i + 1) * in + out - 1) / out);
}

// Result of a backward pass that reads indices: the flat position (in the indices array) of the
// lowest out-of-range index, or -1 if all were in [0, H*W). Out-of-range indices are skipped,
// never written through.
struct PoolIndexCheck {
  index_t bad_position = -1;
};

// Tests only: run the 64-bit index variants (normally used only when a plane's index offsets
// exceed int32) on any size, so they can be checked on small inputs. Not thread-safe against
// running kernels.
void pool_force_wide_indices(bool on);

// x [planes,H,W]  ->  y [planes,OH,OW], indices [planes,OH,OW] (int64, h*W + w)
template <class T>
void max_pool2d_forward(T* y, index_t* indices, const T* x, const Pool2dShape& s);

// dy [planes,OH,OW], indices [planes,OH,OW]  ->  dx [planes,H,W] (zeroed, then dx[idx] += dy)
template <class T>
PoolIndexCheck max_pool2d_backward(T* dx, const T* dy, const index_t* indices, index_t planes,
                                   index_t in_plane, index_t out_plane);

// x [planes,H,W]  ->  y [planes,OH,OW]; divisor_override 0 means none. Dilation must be 1.
template <class T>
void avg_pool2d_forward(T* y, const T* x, const Pool2dShape& s, bool count_include_pad,
                        index_t divisor_override);

// dy [planes,OH,OW]  ->  dx [planes,H,W]
template <class T>
void avg_pool2d_backward(T* dx, const T* dy, const Pool2dShape& s, bool count_include_pad,
                         index_t divisor_override);

// x [planes,H,W]  ->  y [planes,OH,OW] (mean over each adaptive window)
template <class T>
void adaptive_avg_pool2d_forward(T* y, const T* x, index_t planes, index_t H, index_t W, index_t OH,
                                 index_t OW);

// dy [planes,OH,OW]  ->  dx [planes,H,W]
template <class T>
void adaptive_avg_pool2d_backward(T* dx, const T* dy, index_t planes, index_t H, index_t W,
                                  index_t OH, index_t OW);

// x [planes,H,W]  ->  y, indices [planes,OH,OW] (backward: max_pool2d_backward)
template <class T>
void adaptive_max_pool2d_forward(T* y, index_t* indices, const T* x, index_t planes, index_t H,
                                 index_t W, index_t OH, index_t OW);

}  // namespace nnkern
