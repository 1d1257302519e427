// Fused optimizer steps and gradient clipping (see optim.h for the contract).
//
// Each step kernel is one loop over the elements of a tensor range that reads p, g and the state
// once and writes p and the state once. Everything written is read first in the same iteration,
// so the stores hit lines already in cache (no write-allocate traffic): Adam on float32 moves
// 28 bytes per parameter (read p g m v, write p m v), the minimum.
//
// Scalars that depend only on the hyperparameters and the step (bias corrections, 1 - beta,
// lr / bc1 ...) are computed once per tensor in double and rounded to T, as torch's fused CPU
// Adam and its single-tensor path do; the per-element arithmetic then runs in T in the order
// torch's single-tensor path uses, so results match torch to a few ulp per step.
#include "nnkern/optim.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>

#include "nnkern/parallel.h"
#include "nnkern/simd.h"
#include "nnkern/workspace.h"

namespace nnkern {
namespace {

template <bool B>
using Bool = std::integral_constant<bool, B>;

// Calls f(std::true_type{}) or f(std::false_type{}): turns a run-time flag that is uniform over a
// call into a template parameter, so the hot loop has no per-element branch on it.
template <class F>
void with_flag(bool b, F&& f) {
  if (b) {
    f(std::true_type{});
  } else {
    f(std::false_type{});
  }
}

// Range boundaries inside a tensor are multiples of this many elements (>= any SIMD width, a
// cache line for float64). The vector main loop and the scalar tail then cover the same elements
// whatever the split, which keeps results bitwise independent of the thread count and of how
// tensors are grouped into calls.
constexpr index_t kAlign = 64;
// Below 2x this many elements in a call, one thread does it all: forking costs a few
// microseconds, about what one thread needs for 32K Adam elements in cache.
constexpr index_t kMinPerThread = index_t{1} << 15;

// Calls fn(i, begin, end) over ranges of the tensors i = 0..count-1 (size_of(i) elements each),
// split evenly over the threads. Tensors are laid end to end, each padded to a multiple of kAlign,
// and the padded line is cut into one piece per thread at multiples of kAlign: balanced for any
// mix of tensor sizes, with every cut inside a tensor at a multiple of kAlign.
template <class SizeOf, class F>
void for_each_range(index_t count, SizeOf&& size_of, F&& fn) {
  index_t total = 0;
  for (index_t i = 0; i < count; ++i) total += detail::round_up(size_of(i), kAlign);
  if (total == 0) return;
  const index_t by_work = std::max<index_t>(1, total / kMinPerThread);
  const int nt = static_cast<int>(std::min<index_t>(num_threads(), by_work));
  if (nt <= 1) {
    for (index_t i = 0; i < count; ++i) {
      const index_t n = size_of(i);
      if (n > 0) fn(i, index_t{0}, n);
    }
    return;
  }
#pragma omp parallel num_threads(nt)
  {
    const index_t t = omp_get_thread_num();
    const index_t team = omp_get_num_threads();
    const index_t per = detail::round_up((total + team - 1) / team, kAlign);
    const index_t a = std::min(total, t * per);
    const index_t b = std::min(total, a + per);
    index_t off = 0;  // padded start of tensor i
    for (index_t i = 0; i < count && off < b; ++i) {
      const index_t n = size_of(i);
      const index_t len = detail::round_up(n, kAlign);
      const index_t lo = std::max(a, off) - off;
      const index_t hi = std::min(std::min(b, off + len) - off, n);
      if (lo < hi) fn(i, lo, hi);
      off += len;
    }
  }
}

// torch's lerp(a, b, w) = a + w * (b - a), evaluated as b - (b - a) * (1 - w) when |w| >= 0.5
// (ATen's two-branch form, exact at w = 1). Written as base + coef * (b - a) with a select that is
// uniform over the loop: base = a, coef = w for small w; base = b, coef = w - 1 otherwise.
template <class T>
struct Lerp {
  T coef;
  bool from_a;
};

template <class T>
Lerp<T> make_lerp(double w) {
  const bool small = std::abs(w) < 0.5;
  return {small ? static_cast<T>(w) : static_cast<T>(w) - T(1), small};
}

template <class T>
NNK_INLINE T lerp(T a, T b, const Lerp<T>& l) {
  return (l.from_a ? a : b) + l.coef * (b - a);
}

// NaN-propagating max, as torch.maximum: NaN if either argument is NaN.
template <class T>
NNK_INLINE T nan_max(T a, T b) {
  T r = a < b ? b : a;
  return b != b ? b : r;
}

// ---------------------------------------------------------------------------------------------
// Adam / AdamW
//
//   g' = maximize ? -g : g
//   Adam, weight_decay != 0:  g' = g' + weight_decay * p             (coupled)
//   AdamW:                    p  = p * (1 - lr * weight_decay)       (decoupled)
//   m  = lerp(m, g', 1 - beta1)
//   v  = v * beta2 + (1 - beta2) * g' * g'
//   amsgrad: v_max = max(v_max, v); use v_max below instead of v
//   denom = sqrt(v) * (1 / sqrt(1 - beta2^step)) + eps
//   p  = p - (lr / (1 - beta1^step)) * m / denom
//
// torch divides sqrt(v) by sqrt(1 - beta2^step); multiplying by its reciprocal (rounded once, in
// double, then to T) differs by at most an ulp of the denominator and saves one of the two
// divisions per element. Divisions and square roots share one unit with a throughput of about a
// vector every 10 cycles, so on one core the two-division form is compute-bound (0.83 vs 0.60
// ns/element in L1 at AVX-512 here), slower than DRAM can deliver the 28 bytes of an element.

template <class T>
struct AdamCoef {
  T sign;       // -1 when maximizing
  T wd;         // coupled weight decay
  T decay;      // decoupled decay factor (1 when not decoupled)
  Lerp<T> m_lerp;
  T beta2, one_minus_beta2;
  T inv_bc2_sqrt;  // 1 / sqrt(1 - beta2^step)
  T eps;
  T step_size;     // lr / (1 - beta1^step)
};

template <class T>
AdamCoef<T> adam_coef(const AdamConfig& cfg, index_t step) {
  const double t = static_cast<double>(step);
  const double bc1 = 1.0 - std::pow(cfg.beta1, t);
  const double bc2 = 1.0 - std::pow(cfg.beta2, t);
  AdamCoef<T> c;
  c.sign = cfg.maximize ? T(-1) : T(1);
  c.wd = static_cast<T>(cfg.weight_decay);
  c.decay = cfg.decoupled ? static_cast<T>(1.0 - cfg.lr * cfg.weight_decay) : T(1);
  c.m_lerp = make_lerp<T>(1.0 - cfg.beta1);
  c.beta2 = static_cast<T>(cfg.beta2);
  c.one_minus_beta2 = static_cast<T>(1.0 - cfg.beta2);
  c.inv_bc2_sqrt = static_cast<T>(1.0 / std::sqrt(bc2));
  c.eps = static_cast<T>(cfg.eps);
  c.step_size = static_cast<T>(cfg.lr / bc1);
  return c;
}

// p, g, m, v, v_max [n]
template <class T, bool Coupled, bool Amsgrad>
NNK_INLINE void adam_body(Bool<Coupled>, Bool<Amsgrad>, T* NNK_RESTRICT p, const T* NNK_RESTRICT g,
                          T* NNK_RESTRICT m, T* NNK_RESTRICT v, T* NNK_RESTRICT v_max, index_t n,
                          AdamCoef<T> c) {
  for (index_t i = 0; i < n; ++i) {
    T gi = g[i] * c.sign;  // exact: the sign flip of maximize
    T pi = p[i];
    if constexpr (Coupled) {
      gi = gi + c.wd * pi;
    } else {
      pi = pi * c.decay;  // exact identity when decay == 1
    }
    const T mi = lerp(m[i], gi, c.m_lerp);
    const T vi = v[i] * c.beta2 + c.one_minus_beta2 * gi * gi;
    m[i] = mi;
    v[i] = vi;
    T vn = vi;
    if constexpr (Amsgrad) {
      vn = nan_max(v_max[i], vi);
      v_max[i] = vn;
    }
    const T denom = std::sqrt(vn) * c.inv_bc2_sqrt + c.eps;
    p[i] = pi - c.step_size * mi / denom;
  }
}
NNK_MULTIVERSION(adam_loop, adam_body)

// ---------------------------------------------------------------------------------------------
// SGD
//
//   g' = maximize ? -g : g;  weight_decay != 0: g' = g' + weight_decay * p
//   momentum != 0:  buf = first step ? g' : buf * momentum + (1 - dampening) * g'
//                   d = nesterov ? g' + momentum * buf : buf
//   otherwise       d = g'
//   p = p - lr * d

template <class T>
struct SgdCoef {
  T sign, wd, lr, momentum, one_minus_dampening;
};

// p, g, buf [n]
template <class T, bool Decay, bool Momentum, bool First, bool Nesterov>
NNK_INLINE void sgd_body(Bool<Decay>, Bool<Momentum>, Bool<First>, Bool<Nesterov>, T* NNK_RESTRICT p,
                         const T* NNK_RESTRICT g, T* NNK_RESTRICT buf, index_t n, SgdCoef<T> c) {
  for (index_t i = 0; i < n; ++i) {
    T gi = g[i] * c.sign;
    const T pi = p[i];
    if constexpr (Decay) gi = gi + c.wd * pi;
    T d = gi;
    if constexpr (Momentum) {
      T b;
      if constexpr (First) {
        b = gi;  // the old buffer is never read: it may hold anything
      } else {
        b = buf[i] * c.momentum + c.one_minus_dampening * gi;
      }
      buf[i] = b;
      if constexpr (Nesterov) {
        d = gi + c.momentum * b;
      } else {
        d = b;
      }
    }
    p[i] = pi - c.lr * d;
  }
}
NNK_MULTIVERSION(sgd_loop, sgd_body)

// ---------------------------------------------------------------------------------------------
// Adagrad
//
//   g' = maximize ? -g : g;  weight_decay != 0: g' = g' + weight_decay * p
//   sum = sum + g' * g'
//   clr = lr / (1 + (step - 1) * lr_decay)
//   p = p - clr * g' / (sqrt(sum) + eps)

template <class T>
struct AdagradCoef {
  T sign, wd, clr, eps;
};

// p, g, sum [n]
template <class T, bool Decay>
NNK_INLINE void adagrad_body(Bool<Decay>, T* NNK_RESTRICT p, const T* NNK_RESTRICT g,
                             T* NNK_RESTRICT sum, index_t n, AdagradCoef<T> c) {
  for (index_t i = 0; i < n; ++i) {
    T gi = g[i] * c.sign;
    const T pi = p[i];
    if constexpr (Decay) gi = gi + c.wd * pi;
    const T s = sum[i] + gi * gi;
    sum[i] = s;
    const T std_ = std::sqrt(s) + c.eps;
    p[i] = pi - c.clr * gi / std_;
  }
}
NNK_MULTIVERSION(adagrad_loop, adagrad_body)

// ---------------------------------------------------------------------------------------------
// RMSprop
//
//   g' = maximize ? -g : g;  weight_decay != 0: g' = g' + weight_decay * p
//   sq = sq * alpha + (1 - alpha) * g' * g'
//   centered: ga = lerp(ga, g', 1 - alpha);  avg = sqrt(sq - ga * ga)
//   else:     avg = sqrt(sq)
//   avg = avg + eps
//   momentum > 0: buf = buf * momentum + g' / avg;  p = p - lr * buf
//   else:         p = p - lr * g' / avg

template <class T>
struct RmspropCoef {
  T sign, wd, alpha, one_minus_alpha, eps, lr, momentum;
  Lerp<T> ga_lerp;
};

// p, g, square_avg, buf, grad_avg [n]
template <class T, bool Decay, bool Centered, bool Momentum>
NNK_INLINE void rmsprop_body(Bool<Decay>, Bool<Centered>, Bool<Momentum>, T* NNK_RESTRICT p,
                             const T* NNK_RESTRICT g, T* NNK_RESTRICT sq, T* NNK_RESTRICT buf,
                             T* NNK_RESTRICT ga, index_t n, RmspropCoef<T> c) {
  for (index_t i = 0; i < n; ++i) {
    T gi = g[i] * c.sign;
    const T pi = p[i];
    if constexpr (Decay) gi = gi + c.wd * pi;
    const T s = sq[i] * c.alpha + c.one_minus_alpha * gi * gi;
    sq[i] = s;
    T avg;
    if constexpr (Centered) {
      const T a = lerp(ga[i], gi, c.ga_lerp);
      ga[i] = a;
      avg = std::sqrt(s - a * a);
    } else {
      avg = std::sqrt(s);
    }
    avg = avg + c.eps;
    if constexpr (Momentum) {
      const T b = buf[i] * c.momentum + gi / avg;
      buf[i] = b;
      p[i] = pi - c.lr * b;
    } else {
      p[i] = pi - c.lr * gi / avg;
    }
  }
}
NNK_MULTIVERSION(rmsprop_loop, rmsprop_body)

// ---------------------------------------------------------------------------------------------
// Adadelta
//
//   g' = maximize ? -g : g;  weight_decay != 0: g' = g' + weight_decay * p
//   sq = sq * rho + (1 - rho) * g' * g'
//   delta = sqrt(acc + eps) / sqrt(sq + eps) * g'
//   acc = acc * rho + (1 - rho) * delta * delta
//   p = p - lr * delta

template <class T>
struct AdadeltaCoef {
  T sign, wd, rho, one_minus_rho, eps, lr;
};

// p, g, square_avg, acc_delta [n]
template <class T, bool Decay>
NNK_INLINE void adadelta_body(Bool<Decay>, T* NNK_RESTRICT p, const T* NNK_RESTRICT g,
                              T* NNK_RESTRICT sq, T* NNK_RESTRICT acc, index_t n, AdadeltaCoef<T> c) {
  for (index_t i = 0; i < n; ++i) {
    T gi = g[i] * c.sign;
    const T pi = p[i];
    if constexpr (Decay) gi = gi + c.wd * pi;
    const T s = sq[i] * c.rho + c.one_minus_rho * gi * gi;
    sq[i] = s;
    const T std_ = std::sqrt(s + c.eps);
    const T delta = std::sqrt(acc[i] + c.eps) / std_ * gi;
    acc[i] = acc[i] * c.rho + c.one_minus_rho * delta * delta;
    p[i] = pi - c.lr * delta;
  }
}
NNK_MULTIVERSION(adadelta_loop, adadelta_body)

// ---------------------------------------------------------------------------------------------
// Clipping: norms, scaling, clamping

enum class NormKind { kSumSquares, kSumAbs, kMaxAbs, kMinAbs, kCountNonzero, kSumPow };

NormKind norm_kind(double p) {
  if (p == 2.0) return NormKind::kSumSquares;
  if (p == 1.0) return NormKind::kSumAbs;
  if (p == std::numeric_limits<double>::infinity()) return NormKind::kMaxAbs;
  if (p == -std::numeric_limits<double>::infinity()) return NormKind::kMinAbs;
  if (p == 0.0) return NormKind::kCountNonzero;
  return NormKind::kSumPow;
}

// Identity of each reduction and how two partial results combine (NaN-propagating for min/max,
// like torch's norms).
double reduce_identity(NormKind k) {
  return k == NormKind::kMinAbs ? std::numeric_limits<double>::infinity() : 0.0;
}

NNK_INLINE double reduce_combine(NormKind k, double acc, double x) {
  switch (k) {
    case NormKind::kMaxAbs: return (x > acc || x != x) ? x : acc;
    case NormKind::kMinAbs: return (x < acc || x != x) ? x : acc;
    default: return acc + x;
  }
}

// Reduces x[0..n) into *out with 16 independent double lanes (element i goes to lane i % 16) and
// a fixed pairwise combination of the lanes: the result depends on n only, and the lane loop
// vectorises (2 zmm, 4 ymm or 8 xmm registers of doubles).
template <class T, class Map, class Combine>
NNK_INLINE double lanes_reduce(const T* NNK_RESTRICT x, index_t n, double init, Map map, Combine comb) {
  constexpr int L = 16;
  double acc[L];
  for (int j = 0; j < L; ++j) acc[j] = init;
  index_t i = 0;
  for (; i + L <= n; i += L) {
    for (int j = 0; j < L; ++j) acc[j] = comb(acc[j], map(static_cast<double>(x[i + j])));
  }
  for (int j = 0; i < n; ++i, ++j) acc[j] = comb(acc[j], map(static_cast<double>(x[i])));
  for (int w = L / 2; w > 0; w /= 2) {
    for (int j = 0; j < w; ++j) acc[j] = comb(acc[j], acc[j + w]);
  }
  return acc[0];
}

// x [n] -> *out: the chunk's partial of the reduction `kind` (power `p` for kSumPow).
template <class T>
NNK_INLINE void norm_chunk_body(const T* x, index_t n, int kind, double p, double* out) {
  const auto sum = [](double a, double b) { return a + b; };
  const auto max_nan = [](double a, double b) { return (b > a || b != b) ? b : a; };
  const auto min_nan = [](double a, double b) { return (b < a || b != b) ? b : a; };
  switch (static_cast<NormKind>(kind)) {
    case NormKind::kSumSquares:
      *out = lanes_reduce(x, n, 0.0, [](double v) { return v * v; }, sum);
      break;
    case NormKind::kSumAbs:
      *out = lanes_reduce(x, n, 0.0, [](double v) { return std::fabs(v); }, sum);
      break;
    case NormKind::kMaxAbs:
      *out = lanes_reduce(x, n, 0.0, [](double v) { return std::fabs(v); }, max_nan);
      break;
    case NormKind::kMinAbs:
      *out = lanes_reduce(x, n, std::numeric_limits<double>::infinity(),
                          [](double v) { return std::fabs(v); }, min_nan);
      break;
    case NormKind::kCountNonzero:
      *out = lanes_reduce(x, n, 0.0, [](double v) { return v != 0.0 ? 1.0 : 0.0; }, sum);
      break;
    case NormKind::kSumPow:
      *out = lanes_reduce(x, n, 0.0, [p](double v) { return std::pow(std::fabs(v), p); }, sum);
      break;
  }
}
NNK_MULTIVERSION(norm_chunk, norm_chunk_body)

// x [n] *= factor
template <class T>
NNK_INLINE void scale_body(T* NNK_RESTRICT x, index_t n, T factor) {
  for (index_t i = 0; i < n; ++i) x[i] = x[i] * factor;
}
NNK_MULTIVERSION(scale_loop, scale_body)

// x [n] = min(max(x, lo), hi); NaN compares false both times and stays NaN.
template <class T>
NNK_INLINE void clamp_body(T* NNK_RESTRICT x, index_t n, T lo, T hi) {
  for (index_t i = 0; i < n; ++i) {
    const T a = x[i] < lo ? lo : x[i];
    x[i] = hi < a ? hi : a;
  }
}
NNK_MULTIVERSION(clamp_loop, clamp_body)

// Elements per partial of a norm: fixed, so the partials (and their order) depend on the array
// sizes only.
constexpr index_t kNormChunk = index_t{1} << 14;

}  // namespace

// ---------------------------------------------------------------------------------------------
// Drivers

template <class T>
void adam_step(const AdamTensor<T>* ts, index_t count, const AdamConfig& cfg) {
  const bool coupled = cfg.weight_decay != 0.0 && !cfg.decoupled;
  with_flag(coupled, [&](auto coupled_t) {
    with_flag(cfg.amsgrad, [&](auto ams_t) {
      for_each_range(
          count, [&](index_t i) { return ts[i].n; },
          [&](index_t i, index_t b, index_t e) {
            const AdamTensor<T>& t = ts[i];
            T* vmax = decltype(ams_t)::value ? t.v_max + b : static_cast<T*>(nullptr);
            adam_loop(coupled_t, ams_t, t.p + b, t.g + b, t.m + b, t.v + b, vmax, e - b,
                      adam_coef<T>(cfg, t.step));
          });
    });
  });
}

template <class T>
void sgd_step(const SgdTensor<T>* ts, index_t count, const SgdConfig& cfg) {
  SgdCoef<T> c;
  c.sign = cfg.maximize ? T(-1) : T(1);
  c.wd = static_cast<T>(cfg.weight_decay);
  c.lr = static_cast<T>(cfg.lr);
  c.momentum = static_cast<T>(cfg.momentum);
  c.one_minus_dampening = static_cast<T>(1.0 - cfg.dampening);
  const bool has_momentum = cfg.momentum != 0.0;
  with_flag(cfg.weight_decay != 0.0, [&](auto decay_t) {
    with_flag(has_momentum && cfg.nesterov, [&](auto nesterov_t) {
      for_each_range(
          count, [&](index_t i) { return ts[i].n; },
          [&](index_t i, index_t b, index_t e) {
            const SgdTensor<T>& t = ts[i];
            if (!has_momentum) {
              sgd_loop(decay_t, std::false_type{}, std::false_type{}, std::false_type{}, t.p + b, t.g + b,
                       static_cast<T*>(nullptr), e - b, c);
            } else if (t.first_step) {
              sgd_loop(decay_t, std::true_type{}, std::true_type{}, nesterov_t, t.p + b, t.g + b, t.buf + b,
                       e - b, c);
            } else {
              sgd_loop(decay_t, std::true_type{}, std::false_type{}, nesterov_t, t.p + b, t.g + b, t.buf + b,
                       e - b, c);
            }
          });
    });
  });
}

template <class T>
void adagrad_step(const AdagradTensor<T>* ts, index_t count, const AdagradConfig& cfg) {
  with_flag(cfg.weight_decay != 0.0, [&](auto decay_t) {
    for_each_range(
        count, [&](index_t i) { return ts[i].n; },
        [&](index_t i, index_t b, index_t e) {
          const AdagradTensor<T>& t = ts[i];
          AdagradCoef<T> c;
          c.sign = cfg.maximize ? T(-1) : T(1);
          c.wd = static_cast<T>(cfg.weight_decay);
          c.clr = static_cast<T>(cfg.lr / (1.0 + static_cast<double>(t.step - 1) * cfg.lr_decay));
          c.eps = static_cast<T>(cfg.eps);
          adagrad_loop(decay_t, t.p + b, t.g + b, t.sum + b, e - b, c);
        });
  });
}

template <class T>
void rmsprop_step(const RmspropTensor<T>* ts, index_t count, const RmspropConfig& cfg) {
  RmspropCoef<T> c;
  c.sign = cfg.maximize ? T(-1) : T(1);
  c.wd = static_cast<T>(cfg.weight_decay);
  c.alpha = static_cast<T>(cfg.alpha);
  c.one_minus_alpha = static_cast<T>(1.0 - cfg.alpha);
  c.eps = static_cast<T>(cfg.eps);
  c.lr = static_cast<T>(cfg.lr);
  c.momentum = static_cast<T>(cfg.momentum);
  c.ga_lerp = make_lerp<T>(1.0 - cfg.alpha);
  with_flag(cfg.weight_decay != 0.0, [&](auto decay_t) {
    with_flag(cfg.centered, [&](auto centered_t) {
      with_flag(cfg.momentum > 0.0, [&](auto momentum_t) {
        for_each_range(
            count, [&](index_t i) { return ts[i].n; },
            [&](index_t i, index_t b, index_t e) {
              const RmspropTensor<T>& t = ts[i];
              T* buf = decltype(momentum_t)::value ? t.momentum_buffer + b : static_cast<T*>(nullptr);
              T* ga = decltype(centered_t)::value ? t.grad_avg + b : static_cast<T*>(nullptr);
              rmsprop_loop(decay_t, centered_t, momentum_t, t.p + b, t.g + b, t.square_avg + b, buf, ga,
                           e - b, c);
            });
      });
    });
  });
}

template <class T>
void adadelta_step(const AdadeltaTensor<T>* ts, index_t count, const AdadeltaConfig& cfg) {
  AdadeltaCoef<T> c;
  c.sign = cfg.maximize ? T(-1) : T(1);
  c.wd = static_cast<T>(cfg.weight_decay);
  c.rho = static_cast<T>(cfg.rho);
  c.one_minus_rho = static_cast<T>(1.0 - cfg.rho);
  c.eps = static_cast<T>(cfg.eps);
  c.lr = static_cast<T>(cfg.lr);
  with_flag(cfg.weight_decay != 0.0, [&](auto decay_t) {
    for_each_range(
        count, [&](index_t i) { return ts[i].n; },
        [&](index_t i, index_t b, index_t e) {
          const AdadeltaTensor<T>& t = ts[i];
          adadelta_loop(decay_t, t.p + b, t.g + b, t.square_avg + b, t.acc_delta + b, e - b, c);
        });
  });
}

template <class T>
double grad_norm(const Span<const T>* arrays, index_t count, double norm_type) {
  if (count <= 0) return 0.0;
  const NormKind kind = norm_kind(norm_type);
  // Chunk c of the concatenation belongs to array i when first[i] <= c < first[i + 1].
  index_t* first = scratch<index_t>(kScratch1, count + 1);
  first[0] = 0;
  index_t total = 0;
  for (index_t i = 0; i < count; ++i) {
    first[i + 1] = first[i] + num_chunks(arrays[i].n, kNormChunk);
    total += arrays[i].n;
  }
  const index_t items = first[count];
  double* part = scratch<double>(kScratch0, std::max<index_t>(items, 1));
  const auto run = [&](index_t c) {
    const index_t i = static_cast<index_t>(std::upper_bound(first, first + count + 1, c) - first) - 1;
    const index_t b = (c - first[i]) * kNormChunk;
    const index_t e = std::min(arrays[i].n, b + kNormChunk);
    norm_chunk(arrays[i].data + b, e - b, static_cast<int>(kind), norm_type, part + c);
  };
  const int nt = static_cast<int>(
      std::min<index_t>({static_cast<index_t>(num_threads()), std::max<index_t>(1, total / kMinPerThread), items}));
  if (nt <= 1) {
    for (index_t c = 0; c < items; ++c) run(c);
  } else {
#pragma omp parallel for num_threads(nt) schedule(static)
    for (index_t c = 0; c < items; ++c) run(c);
  }
  // Per-array norms from their chunks (in chunk order), then the norm of the per-array norms,
  // which is how torch's clip_grad_norm_ combines them.
  const double id = reduce_identity(kind);
  double result = id;
  for (index_t i = 0; i < count; ++i) {
    double acc = id;
    for (index_t c = first[i]; c < first[i + 1]; ++c) acc = reduce_combine(kind, acc, part[c]);
    switch (kind) {
      case NormKind::kSumSquares: {
        const double norm = std::sqrt(acc);
        result += norm * norm;
        break;
      }
      case NormKind::kSumAbs: result += acc; break;
      case NormKind::kMaxAbs:
      case NormKind::kMinAbs: result = reduce_combine(kind, result, acc); break;
      case NormKind::kCountNonzero: result += acc != 0.0 ? 1.0 : 0.0; break;
      case NormKind::kSumPow: result += std::pow(std::pow(acc, 1.0 / norm_type), norm_type); break;
    }
  }
  switch (kind) {
    case NormKind::kSumSquares: return std::sqrt(result);
    case NormKind::kSumPow: return std::pow(result, 1.0 / norm_type);
    default: return result;
  }
}

template <class T>
void scale_inplace(const Span<T>* arrays, index_t count, T factor) {
  for_each_range(
      count, [&](index_t i) { return arrays[i].n; },
      [&](index_t i, index_t b, index_t e) { scale_loop(arrays[i].data + b, e - b, factor); });
}

template <class T>
void clamp_inplace(const Span<T>* arrays, index_t count, T lo, T hi) {
  for_each_range(
      count, [&](index_t i) { return arrays[i].n; },
      [&](index_t i, index_t b, index_t e) { clamp_loop(arrays[i].data + b, e - b, lo, hi); });
}

template <class T>
T clip_coefficient(double max_norm, double total_norm) {
  const T coef = static_cast<T>(max_norm) / (static_cast<T>(total_norm) + static_cast<T>(1e-6));
  return coef > T(1) ? T(1) : coef;  // NaN stays NaN, as torch.clamp(max=1)
}

#define NNK_OPTIM_INSTANTIATE(T)                                                             \
  template void adam_step<T>(const AdamTensor<T>*, index_t, const AdamConfig&);              \
  template void sgd_step<T>(const SgdTensor<T>*, index_t, const SgdConfig&);                 \
  template void adagrad_step<T>(const AdagradTensor<T>*, index_t, const AdagradConfig&);     \
  template void rmsprop_step<T>(const RmspropTensor<T>*, index_t, const RmspropConfig&);     \
  template void adadelta_step<T>(const AdadeltaTensor<T>*, index_t, const AdadeltaConfig&);  \
  template double grad_norm<T>(const Span<const T>*, index_t, double);                       \
  template void scale_inplace<T>(const Span<T>*, index_t, T);                                \
  template void clamp_inplace<T>(const Span<T>*, index_t, T, T);                             \
  template T clip_coefficient<T>(double, double);

NNK_OPTIM_INSTANTIATE(float)
NNK_OPTIM_INSTANTIATE(double)

#undef NNK_OPTIM_INSTANTIATE

}  // namespace nnkern
