// Batch normalisation (training and eval, forward and backward) and dropout.
//
// Batch norm follows torch (DESIGN.md section 2): training mode normalises with the batch mean and
// the biased batch variance and moves the running statistics towards the batch ones with the
// unbiased variance; eval mode normalises with the running statistics.
//
// Layout: x is viewed as [N, C, S] with S = 1 for (N, C) input, L for (N, C, L) and H*W for
// (N, C, H, W); channel c holds the N*S elements x[:, c, :].
//
// Determinism: every per-channel reduction is cut into pieces that depend on (N, C, S) only
// (one (n, c) plane each when S is large, tiles of rows x columns otherwise), each piece is
// reduced by one thread, and the pieces are combined in a fixed order. Results are bitwise equal
// for any thread count. Statistics are accumulated in double for float32 input, and the variance
// is computed in two passes per piece (mean, then squared deviations), combined with Chan's
// formula, so it stays accurate when |mean| >> std.
//
// Dropout: inverted dropout; whether element i is kept is a pure function of (seed, i) (a keyed
// 32-bit hash of i), so masks do not depend on threads or SIMD level.
#pragma once

#include <cstdint>

#include "nnkern/common.h"

namespace nnkern {

// Training forward.
//   x, y [N,C,S]   weight, bias [C] or nullptr (then 1 and 0)
//   save_mean [C] = batch mean, save_invstd [C] = 1 / sqrt(biased batch variance + eps)
//   running_mean, running_var [C] or both nullptr; updated in place when given:
//     running_mean = (1 - momentum) * running_mean + momentum * mean
//     running_var  = (1 - momentum) * running_var  + momentum * var * M / (M - 1),  M = N*S
//   y = (x - mean) * invstd * weight + bias
// N*S >= 2 (the caller checks); N*S == 0 only fills save_mean/save_invstd with 0.
// y may be x (exact alias).
template <class T>
void batch_norm_train_forward(T* y, T* save_mean, T* save_invstd, T* running_mean, T* running_var,
                              const T* x, const T* weight, const T* bias, index_t N, index_t C,
                              index_t S, double momentum, double eps);

// Eval forward: y = (x - running_mean) * invstd * weight + bias with invstd = 1/sqrt(running_var + eps).
// save_mean = running_mean and save_invstd = invstd, so batch_norm_backward(training=false) can
// take the same arguments as after a training forward.
//   x, y [N,C,S]   running_mean, running_var, save_mean, save_invstd [C]   weight, bias [C] or nullptr
template <class T>
void batch_norm_eval_forward(T* y, T* save_mean, T* save_invstd, const T* x, const T* running_mean,
                             const T* running_var, const T* weight, const T* bias, index_t N,
                             index_t C, index_t S, double eps);

// Backward (torch's formulas), with xmu = x - save_mean and M = N*S:
//   dbias   = sum(dy)                       over (N, S)
//   dweight = sum(dy * xmu) * invstd
//   training: dx = w*invstd * (dy - sum(dy)/M - xmu * invstd^2 * sum(dy*xmu)/M)
//   eval:     dx = w*invstd * dy             (running statistics are constants)
//   dy, x, dx [N,C,S]   weight [C] or nullptr   save_mean, save_invstd, dweight, dbias [C]
// dx may be dy or x (exact alias).
template <class T>
void batch_norm_backward(T* dx, T* dweight, T* dbias, const T* dy, const T* x, const T* weight,
                         const T* save_mean, const T* save_invstd, index_t N, index_t C, index_t S,
                         bool training);

// Dropout keep/drop rule: a pure function of (seed, element index i), so masks are identical
// for any thread count and SIMD level. With i = block * 2^32 + c (c 32-bit),
//   key = SplitMix64 output number block+1 for state `seed`, k0 = low 32 bits, k1 = high 32 bits
//   bits = mix32(mix32(c + k0) ^ k1)    mix32: "lowbias32" (Wellons) 32-bit mixer, a bijection
//   element i is dropped when bits < dropout_threshold(p) = round(p * 2^32)
// so P(drop) = p up to 2^-32; thresholds of 2^32 (p >= 1 - 2^-33) drop everything.
std::uint64_t dropout_threshold(double p);
// k0, k1 of `block` (2^32 elements each) for `seed`.
void dropout_keys(std::uint64_t seed, std::uint64_t block, std::uint32_t* k0, std::uint32_t* k1);

// y = x * (keep ? scale : 0) and mask = keep (0 or 1), scale = 1/(1-p) (0 when all are dropped).
// The product form propagates NaN/Inf from dropped elements as torch does.
//   x, y, mask [n]; y may be x (exact alias).
template <class T>
void dropout_forward(T* y, std::uint8_t* mask, const T* x, index_t n, double p, std::uint64_t seed);

// dx = dy * (mask != 0 ? scale : 0) (scale as in dropout_forward).   dy, dx, mask [n]; dx may be dy.
template <class T>
void dropout_backward(T* dx, const T* dy, const std::uint8_t* mask, index_t n, double p);

}  // namespace nnkern
