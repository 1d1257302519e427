// Losses forward and backward with torch's formulas: mean squared error, softmax cross-entropy on
// logits with integer class targets (class weights, ignore_index, label smoothing) and binary
// cross-entropy with logits (weight, pos_weight).
//
// Every kernel computes the per-element (per-row) losses and, on request in the same pass, the
// gradient. Reductions use fixed chunks whose partial sums (in double) are combined in order, so
// results are bitwise identical for any thread count. Reduction scaling (1/n for 'mean', the
// grad_output factor) is passed in by the caller as `gscale` (and `gvec` for a per-element
// grad_output with reduction='none').
#pragma once

#include <cstdint>

#include "nnkern/common.h"

namespace nnkern {

// What a loss kernel call produces.
struct LossOutputs {
  bool sum = false;         // return the sum of the element losses
  bool none = false;        // write the element losses into `loss`
  bool grad = false;        // write the gradient into `grad`
};

// --- MSE: pred, target, loss, grad, gvec [n] --------------------------------------------------
// loss_i = (pred_i - target_i)^2;  grad_i = 2 (pred_i - target_i) * gscale * (gvec ? gvec_i : 1)
// (the caller folds 1/n of 'mean' into gscale). Returns the sum of loss_i (0 unless out.sum).
// grad may alias pred or target exactly.
template <class T>
double mse_loss(LossOutputs out, T* loss, T* grad, const T* pred, const T* target, const T* gvec, index_t n,
                T gscale);

// --- softmax cross-entropy: logits, grad [N, C, inner], target, loss, gvec [N, inner] ----------
// Row r = (n, j) has logits z_c = logits[n, c, j], class t = target[n, j], weights w (ones when
// weight is null), eps = label_smoothing:
//   lse = log sum_c e^(z_c),   wsum = sum_c w_c
//   loss_r = 0 if t == ignore_index, else (1 - eps) w_t (lse - z_t) + (eps / C) sum_c w_c (lse - z_c)
//   grad_rc = g_r [p_c ((1 - eps) w_t + (eps / C) wsum) - (eps / C) w_c - (1 - eps) w_t [c == t]]
// with p = softmax(z) and g_r = gscale * (gvec ? gvec[r] : 1); ignored rows get a zero gradient.
// Targets must be valid (checked with cross_entropy_first_bad_target). Returns sum_r loss_r.
// grad may alias logits exactly.
template <class T>
double cross_entropy(LossOutputs out, T* loss, T* grad, const T* logits, const std::int64_t* target,
                     const T* weight, const T* gvec, index_t N, index_t C, index_t inner,
                     std::int64_t ignore_index, T label_smoothing, T gscale);

// Flat index of the first target that is neither in [0, C) nor ignore_index, or -1.
index_t cross_entropy_first_bad_target(const std::int64_t* target, index_t M, index_t C, std::int64_t ignore_index);

// 'mean' denominator: sum of w[target] over rows whose target is not ignore_index (their count
// when weight is null). Targets must be valid.
template <class T>
double cross_entropy_weight_total(const std::int64_t* target, index_t M, const T* weight, std::int64_t ignore_index);

// --- BCE with logits: x, target, loss, grad, gvec [n] -------------------------------------------
// weight and pos_weight broadcast from the end: element i uses weight[i % weight_period] and
// pos_weight[i % pos_period] (null = all ones; a period divides the flat size of x's trailing dims).
//   lw_i = 1 + (pos_weight_i - 1) t_i
//   loss_i = weight_i ((1 - t_i) x_i + lw_i (max(-x_i, 0) + log(1 + e^-|x_i|)))
//   grad_i = weight_i (lw_i sigmoid(x_i) - pos_weight_i t_i) * gscale * (gvec ? gvec_i : 1)
// Returns the sum of loss_i. grad may alias x or target exactly.
template <class T>
double bce_with_logits(LossOutputs out, T* loss, T* grad, const T* x, const T* target, const T* weight,
                       index_t weight_period, const T* pos_weight, index_t pos_period, const T* gvec, index_t n,
                       T gscale);

}  // namespace nnkern
