// Fused optimizer steps and gradient clipping.
//
// Every optimizer step is one pass over memory: each element of the parameter, its gradient and
// its state buffers is read once and written once, with the whole update (weight decay, moment
// updates, bias correction, the parameter update) done in registers. The formulas and defaults are
// torch.optim's (single-tensor and CPU fused paths, torch 2.13); the per-element maths is written
// next to each kernel in optim.cc.
//
// Calls take a list of tensors (the multi-tensor form): `count` structs, each naming the buffers
// of one parameter and its length. One tensor is the single-tensor call; a flat arena holding many
// parameters is one tensor too. Work is split over threads by element ranges whose boundaries are
// multiples of 64 elements within each tensor, so every element is computed by the same
// instructions for any thread count and any grouping into calls: results are bitwise identical
// between 1, 2, 3 ... threads and between single- and multi-tensor calls.
//
// Kernels allocate nothing (norm partials use the per-thread scratch of workspace.h) and only
// assert: all checking (dtypes, shapes, overlap, hyperparameter ranges) happens in bindings/optim.cc.
#pragma once

#include "nnkern/common.h"

namespace nnkern {

// ---------------------------------------------------------------------------------------------
// Optimizer steps. `step` fields are 1-based: the number of the step being taken (torch's
// state['step'] after its increment).

struct AdamConfig {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;
  bool decoupled = false;  // AdamW: p *= 1 - lr * weight_decay instead of g += weight_decay * p
  bool amsgrad = false;    // normalise by the running max of v (uncorrected)
  bool maximize = false;   // ascend: use -g
};

// p, g, m (exp_avg), v (exp_avg_sq), v_max (max_exp_avg_sq, only with amsgrad): [n] each.
template <class T>
struct AdamTensor {
  T* p;
  const T* g;
  T* m;
  T* v;
  T* v_max;  // nullptr unless amsgrad
  index_t n;
  index_t step;
};

template <class T>
void adam_step(const AdamTensor<T>* tensors, index_t count, const AdamConfig& cfg);

struct SgdConfig {
  double lr = 1e-3;
  double momentum = 0.0;
  double dampening = 0.0;
  double weight_decay = 0.0;
  bool nesterov = false;
  bool maximize = false;
};

// p, g, buf (momentum_buffer, only with momentum != 0): [n] each. With first_step the buffer's
// old contents are ignored and it is set to the (decayed) gradient, as torch does when the
// buffer does not exist yet.
template <class T>
struct SgdTensor {
  T* p;
  const T* g;
  T* buf;
  index_t n;
  bool first_step;
};

template <class T>
void sgd_step(const SgdTensor<T>* tensors, index_t count, const SgdConfig& cfg);

struct AdagradConfig {
  double lr = 1e-2;
  double lr_decay = 0.0;
  double weight_decay = 0.0;
  double eps = 1e-10;
  bool maximize = false;
};

// p, g, sum (state_sum): [n] each.
template <class T>
struct AdagradTensor {
  T* p;
  const T* g;
  T* sum;
  index_t n;
  index_t step;
};

template <class T>
void adagrad_step(const AdagradTensor<T>* tensors, index_t count, const AdagradConfig& cfg);

struct RmspropConfig {
  double lr = 1e-2;
  double alpha = 0.99;
  double eps = 1e-8;
  double weight_decay = 0.0;
  double momentum = 0.0;
  bool centered = false;
  bool maximize = false;
};

// p, g, square_avg, momentum_buffer (only with momentum > 0), grad_avg (only if centered): [n].
template <class T>
struct RmspropTensor {
  T* p;
  const T* g;
  T* square_avg;
  T* momentum_buffer;
  T* grad_avg;
  index_t n;
};

template <class T>
void rmsprop_step(const RmspropTensor<T>* tensors, index_t count, const RmspropConfig& cfg);

struct AdadeltaConfig {
  double lr = 1.0;
  double rho = 0.9;
  double eps = 1e-6;
  double weight_decay = 0.0;
  bool maximize = false;
};

// p, g, square_avg, acc_delta: [n] each.
template <class T>
struct AdadeltaTensor {
  T* p;
  const T* g;
  T* square_avg;
  T* acc_delta;
  index_t n;
};

template <class T>
void adadelta_step(const AdadeltaTensor<T>* tensors, index_t count, const AdadeltaConfig& cfg);

// ---------------------------------------------------------------------------------------------
// Gradient clipping over many arrays.

template <class T>
struct Span {
  T* data;
  index_t n;
};

// The norm of order `norm_type` of all elements of all arrays, as torch's clip_grad_norm_ computes
// it: per-array norms first, then the norm of those. Any norm_type torch accepts: p > 0, inf
// (max |x|), -inf (min |x|), 0 (count of non-zeros), p < 0. Accumulation is in double over
// fixed chunks combined in order, so the result does not depend on the thread count.
template <class T>
double grad_norm(const Span<const T>* arrays, index_t count, double norm_type);

// x *= factor for every element of every array.
template <class T>
void scale_inplace(const Span<T>* arrays, index_t count, T factor);

// x = min(max(x, lo), hi) for every element (NaN stays NaN, as torch.clamp).
template <class T>
void clamp_inplace(const Span<T>* arrays, index_t count, T lo, T hi);

// torch's clip_grad_norm_ rule: clip_coef = max_norm / (total_norm + 1e-6), clamped to at most 1,
// computed in T (the gradients' dtype) as torch does. NaN stays NaN (then every gradient
// becomes NaN, as in torch).
template <class T>
T clip_coefficient(double max_norm, double total_norm);

}  // namespace nnkern
