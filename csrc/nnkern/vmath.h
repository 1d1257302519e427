// Vectorisable elementary functions: exp, expm1, log, log1p, tanh, sigmoid, softplus (float, double).
//
// Why not std::exp & co.: libm calls are opaque to GCC's vectoriser (and -fno-math-errno alone
// does not give it a vector libm), so a loop calling std::exp runs one element at a time. These
// are NNK_INLINE, branch-free (ternaries become blends) and use only +, *, /, compares and
// integer bit operations, so a loop calling them inside an NNK_MULTIVERSION body vectorises at
// the wrapper's ISA (16 floats per AVX-512 instruction). Any kernel family may include this file.
//
// Method (the usual one; the code is our own):
//   exp(x):   x = n*ln2 + r, |r| <= ln2/2 (Cody-Waite split of ln2, so r is exact), e^r by a
//             polynomial, times 2^n built from exponent bits. 2^n is applied as two factors
//             2^h * 2^(n-h), h = n/2, so results that overflow give +inf and results in the
//             subnormal range are rounded once (no separate slow path, no branch).
//   log(x):   x = 2^k * m, m in [sqrt(2)/2, sqrt(2)), f = m - 1, s = f / (2 + f),
//             log(m) = 2 atanh(s) = f - (f^2/2 - s (f^2/2 + R(s^2))) with R a polynomial.
//   log1p(y): log(u) with u = 1 + y, plus the correction (y - (u - 1)) / u for the rounding of u.
//   expm1(x): 2^n (e^r - 1) + (2^n - 1), with e^r - 1 = r + r^2 P(r) (no cancellation near 0).
//   tanh(x):  e / (e + 2) with e = expm1(2|x|) (|x| clamped where tanh rounds to 1); sign copied.
// Polynomial coefficients are near-minimax Chebyshev fits made with mpmath:
//   mpmath.chebyfit(f, [a, b], degree + 1) for f(r) = (e^r - 1 - r) / r^2 on [-ln2/2, ln2/2] and
//   f(z) = 2 (atanh(sqrt z) / sqrt z - 1) / z on [0, (3 - 2 sqrt 2)^2]
// (degree 4 / 2 for float, 9 / 6 for double), rounded to the type.
//
// Accuracy (tests/test_act_vmath.py measures it against NumPy in extended precision over wide
// ranges at every SIMD level; float32 was also checked exhaustively over all 2^32 inputs):
// exp, log, log1p within 2 ulp of the correctly rounded result over their whole domain (subnormal
// results within 1 unit of the smallest subnormal); expm1 within 2.5 ulp; tanh, sigmoid and
// softplus within 3 ulp (sigmoid flushes results below the normal range to 0). Special values as IEEE/C99: exp(+inf) = +inf, exp(-inf) = 0,
// overflow -> +inf, underflow -> 0; expm1(-inf) = -1; log(0) = -inf, log(x < 0) = NaN,
// log1p(-1) = -inf, log1p(y < -1) = NaN; tanh(+-inf) = +-1; NaN in -> NaN out everywhere.
//
// Levels may differ by an ulp or so because FMA contraction (AVX2/AVX-512) rounds once where the
// baseline rounds twice; a given level is deterministic. GCC 12 vectorises every function here at
// AVX-512 and AVX2 for float and double, and at the SSE2 baseline for float only (SSE2 lacks the
// 64-bit mask conversion select() needs, so baseline double loops run scalar: correct, slower).
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "nnkern/common.h"

namespace nnkern {
namespace vmath {

namespace detail {

template <class T>
struct Traits;

template <>
struct Traits<float> {
  using Bits = std::uint32_t;
  static constexpr int kMantBits = 23;
  static constexpr Bits kBias = 127;
  static constexpr Bits kMantMask = 0x007fffffu;
  static constexpr Bits kOneBits = 0x3f800000u;         // 1.0f
  static constexpr Bits kSqrtHalfBits = 0x3f3504f3u;    // sqrt(2)/2 rounded
  // exp: clamp so 2^n stays in range; beyond these the result is inf / 0 anyway.
  static constexpr float kExpHi = 89.0f;                // e^89 > FLT_MAX -> inf
  static constexpr float kExpLo = -104.0f;              // e^-104 < min subnormal / 2 -> 0
  static constexpr float kShift = 12582912.0f;          // 1.5 * 2^23: x + kShift rounds to an integer
  static constexpr float kLog2e = 1.44269504088896341f;
  // ln2 = kLn2Hi + kLn2Lo; kLn2Hi has 16 significant bits, so n * kLn2Hi is exact for |n| < 2^8.
  static constexpr float kLn2Hi = 0.693145751953125f;   // 0x3f317200
  static constexpr float kLn2Lo = 1.428606765330187e-06f;
  static constexpr float kMinNormal = 1.17549435e-38f;
  static constexpr float kTwoPowMant = 16777216.0f;     // 2^24: scales subnormals to normal
  static constexpr int kMantPlus1 = 24;
  static constexpr float kTanhOne = 10.0f;  // 1 - tanh(10) < 2^-25: tanh rounds to 1 beyond
  static constexpr float kExpNormalLo = -87.33654f;  // ln(FLT_MIN): e^x is subnormal below
  static constexpr float kExpm1Lo = -20.0f;  // e^x - 1 rounds to -1 below
  static constexpr float kExpm1Hi = 20.0f;   // e^x - 1 rounds like e^x above (2^-29 relative)

  // e^r = 1 + r + r^2 P(r), |r| <= ln2/2
  static NNK_INLINE float exp_poly(float r) {
    float p = 1.392617611993557888e-3f;
    p = p * r + 8.363173074513710903e-3f;
    p = p * r + 4.166655466205053398e-2f;
    p = p * r + 1.666657702559798819e-1f;
    p = p * r + 0.5f;
    return p;
  }
  // R(z) / z with R from the log comment above, z = s^2 <= 0.0295
  static NNK_INLINE float log_poly(float z) {
    float q = 0.2957994939197278471f;
    q = q * z + 0.3998878056602198190f;
    q = q * z + 0.6666668503957585502f;
    return q;
  }
};

template <>
struct Traits<double> {
  using Bits = std::uint64_t;
  static constexpr int kMantBits = 52;
  static constexpr Bits kBias = 1023;
  static constexpr Bits kMantMask = 0x000fffffffffffffull;
  static constexpr Bits kOneBits = 0x3ff0000000000000ull;
  static constexpr Bits kSqrtHalfBits = 0x3fe6a09e667f3bcdull;
  static constexpr double kExpHi = 710.0;      // e^710 > DBL_MAX -> inf
  static constexpr double kExpLo = -746.0;     // e^-746 < min subnormal / 2 -> 0
  static constexpr double kShift = 6755399441055744.0;  // 1.5 * 2^52
  static constexpr double kLog2e = 1.4426950408889634074;
  // kLn2Hi has 32 trailing zero bits: n * kLn2Hi is exact for |n| < 2^20.
  static constexpr double kLn2Hi = 6.93147180369123816490e-01;  // 0x3fe62e42fee00000
  static constexpr double kLn2Lo = 1.90821492927058770002e-10;
  static constexpr double kMinNormal = 2.2250738585072014e-308;
  static constexpr double kTwoPowMant = 9007199254740992.0;  // 2^53
  static constexpr int kMantPlus1 = 53;
  static constexpr double kTanhOne = 20.0;  // 1 - tanh(20) < 2^-54
  static constexpr double kExpNormalLo = -708.3964185322641;  // ln(DBL_MIN)
  static constexpr double kExpm1Lo = -40.0;
  static constexpr double kExpm1Hi = 40.0;

  static NNK_INLINE double exp_poly(double r) {
    double p = 2.510037583256123366e-8;
    p = p * r + 2.762007587998336659e-7;
    p = p * r + 2.755726848031002553e-6;
    p = p * r + 2.480152132236869327e-5;
    p = p * r + 1.984126986304054527e-4;
    p = p * r + 1.388888891719671908e-3;
    p = p * r + 8.333333333330064449e-3;
    p = p * r + 4.166666666662416190e-2;
    p = p * r + 1.666666666666666745e-1;
    p = p * r + 0.5000000000000001021;
    return p;
  }
  static NNK_INLINE double log_poly(double z) {
    double q = 0.1461644968504340586;
    q = q * z + 0.1533172160055604127;
    q = q * z + 0.1818288912526172208;
    q = q * z + 0.2222221113479507986;
    q = q * z + 0.2857142862597548492;
    q = q * z + 0.3999999999989950449;
    q = q * z + 0.6666666666666669686;
    return q;
  }
};

template <class T>
NNK_INLINE typename Traits<T>::Bits to_bits(T x) {
  return __builtin_bit_cast(typename Traits<T>::Bits, x);
}

template <class T>
NNK_INLINE T from_bits(typename Traits<T>::Bits b) {
  return __builtin_bit_cast(T, b);
}

// The unbiased exponent field of a positive finite value as T (bits >> mantissa - bias), without
// an int64 -> double conversion, which AVX2 lacks: the field is OR-ed into the mantissa of 2^52.
NNK_INLINE float exponent_as_float(std::uint32_t bits) {
  return static_cast<float>(static_cast<std::int32_t>(bits >> 23)) - 127.0f;
}
NNK_INLINE double exponent_as_float(std::uint64_t bits) {
  const double two52 = 4503599627370496.0;
  return from_bits<double>(to_bits(two52) | (bits >> 52)) - (two52 + 1023.0);
}

// log(2^k m) + c for m in [sqrt(2)/2, sqrt(2)) given as (m, k), c a small correction.
template <class T>
NNK_INLINE T log_reduced(T m, T k, T c) {
  using Tr = Traits<T>;
  const T f = m - T(1);
  const T s = f / (T(2) + f);
  const T z = s * s;
  const T r = z * Tr::log_poly(z);
  const T hfsq = T(0.5) * f * f;
  return k * Tr::kLn2Hi + (f - (hfsq - (s * (hfsq + r) + (k * Tr::kLn2Lo + c))));
}

// Splits a positive normal u into (m, k), u = 2^k m, m in [sqrt(2)/2, sqrt(2)).
template <class T>
NNK_INLINE void split_log(T u, T& m, T& k) {
  using Tr = Traits<T>;
  using Bits = typename Tr::Bits;
  // Offset so that a mantissa >= sqrt(2) carries into the exponent (m then is mantissa / 2).
  const Bits iu = to_bits(u) + (Tr::kOneBits - Tr::kSqrtHalfBits);
  k = exponent_as_float(iu);
  m = from_bits<T>((iu & Tr::kMantMask) + Tr::kSqrtHalfBits);
}

}  // namespace detail

// c ? a : b as bit operations. A plain ?: whose arms hold arithmetic is gimplified into a branch;
// GCC may then sink or specialise code into it, and a floating-point operation left in a branch
// "could trap" (-ftrapping-math), which stops vectorisation without AVX-512 masking. This form
// always computes both arms and never branches.
template <class T>
NNK_INLINE T select(bool c, T a, T b) {
  using Bits = typename detail::Traits<T>::Bits;
  const Bits m = Bits(0) - static_cast<Bits>(c);
  return detail::from_bits<T>((detail::to_bits(a) & m) | (detail::to_bits(b) & ~m));
}

// e^x
template <class T>
NNK_INLINE T exp(T x) {
  using Tr = detail::Traits<T>;
  using Bits = typename Tr::Bits;
  // No clamp of x up front: a clamped constant path gets specialised by GCC (jump threading) and
  // the overflowing constant multiply left in it blocks vectorisation at AVX2 and below. Out-of-
  // range x computes garbage here and is replaced at the end.
  const T kd = x * Tr::kLog2e + Tr::kShift;  // n = round(x / ln2) sits in the low mantissa bits
  const T n = kd - Tr::kShift;
  const T r = (x - n * Tr::kLn2Hi) - n * Tr::kLn2Lo;
  const T p = T(1) + (r + r * r * Tr::exp_poly(r));
  // 2^n = 2^h * 2^(n - h) with h = round(n / 2): both factors are normal for every x in
  // [kExpLo, kExpHi], so overflow gives inf and subnormal results are rounded once.
  const T hd = n * T(0.5) + Tr::kShift;
  const Bits kbits = detail::to_bits(kd), hbits = detail::to_bits(hd), sbits = detail::to_bits(Tr::kShift);
  const T s1 = detail::from_bits<T>((hbits - sbits + Tr::kBias) << Tr::kMantBits);
  const T s2 = detail::from_bits<T>((kbits - hbits + Tr::kBias) << Tr::kMantBits);
  T res = (p * s1) * s2;
  res = select(x > Tr::kExpHi, std::numeric_limits<T>::infinity(), res);
  res = select(x < Tr::kExpLo, T(0), res);
  return res;  // NaN: compares false, and p is NaN
}


// e^x for x <= 0 (or NaN), flushing results below the normal range to 0: one 2^n factor and one
// select instead of exp()'s two of each. For shifted exponents such as z - max(z) in softmax and
// cross-entropy, where a term below ~1e-38 (float) next to the max's 1 changes nothing.
template <class T>
NNK_INLINE T exp_nonpositive(T x) {
  using Tr = detail::Traits<T>;
  const T kd = x * Tr::kLog2e + Tr::kShift;
  const T n = kd - Tr::kShift;
  const T r = (x - n * Tr::kLn2Hi) - n * Tr::kLn2Lo;
  const T p = T(1) + (r + r * r * Tr::exp_poly(r));
  const T s = detail::from_bits<T>((detail::to_bits(kd) - detail::to_bits(Tr::kShift) + Tr::kBias) << Tr::kMantBits);
  return select(x < Tr::kExpNormalLo, T(0), p * s);  // NaN: compares false, p is NaN
}

namespace detail {
// e^x - 1 without the cancellation of e^x - 1: with x = n ln2 + r, e^x - 1 = 2^n (e^r - 1) +
// (2^n - 1), where e^r - 1 = r + r^2 P(r) is accurate in relative terms and 2^n - 1 is exact for
// small n (n = 0 for |x| < ln2/2). Valid while 2^n is normal: x in about [-87, 87] (float),
// [-708, 708] (double); callers clamp.
template <class T>
NNK_INLINE T expm1_core(T x) {
  using Tr = Traits<T>;
  const T kd = x * Tr::kLog2e + Tr::kShift;
  const T n = kd - Tr::kShift;
  const T r = (x - n * Tr::kLn2Hi) - n * Tr::kLn2Lo;
  const T q = r + r * r * Tr::exp_poly(r);
  const T s = from_bits<T>((to_bits(kd) - to_bits(Tr::kShift) + Tr::kBias) << Tr::kMantBits);
  return s * q + (s - T(1));
}
}  // namespace detail

// e^x - 1, accurate for small |x|. Below kExpm1Lo the result rounds to -1; from kExpm1Hi up
// e^x - 1 rounds like e^x, which exp() computes with its overflow handling.
template <class T>
NNK_INLINE T expm1(T x) {
  using Tr = detail::Traits<T>;
  T xc = select(x < Tr::kExpm1Lo, Tr::kExpm1Lo, x);
  xc = select(xc > Tr::kExpm1Hi, Tr::kExpm1Hi, xc);
  const T em = detail::expm1_core(xc);
  return select(x > Tr::kExpm1Hi, exp(x), em);  // NaN: compares false, the core gives NaN
}

// Natural logarithm.
template <class T>
NNK_INLINE T log(T x) {
  using Tr = detail::Traits<T>;
  const bool sub = x < Tr::kMinNormal;
  const T xs = select(sub, x * Tr::kTwoPowMant, x);  // subnormals (and 0, negatives: fixed below)
  T m, k;
  detail::split_log(xs, m, k);
  k = select(sub, k - T(Tr::kMantPlus1), k);
  T res = detail::log_reduced(m, k, T(0));
  const T inf = std::numeric_limits<T>::infinity();
  res = select(x == inf, inf, res);
  res = select(x == T(0), -inf, res);
  res = select(x < T(0), std::numeric_limits<T>::quiet_NaN(), res);
  res = select(x != x, x, res);
  return res;
}

// log(1 + y), accurate for small |y|.
template <class T>
NNK_INLINE T log1p(T y) {
  const T u = T(1) + y;
  const T c = (y - (u - T(1))) / u;  // what rounding 1 + y lost, relative to u
  T m, k;
  detail::split_log(u, m, k);
  T res = detail::log_reduced(m, k, c);
  const T inf = std::numeric_limits<T>::infinity();
  res = select(y == inf, inf, res);
  res = select(y == T(-1), -inf, res);
  res = select(y < T(-1), std::numeric_limits<T>::quiet_NaN(), res);
  res = select(y != y, y, res);
  return res;
}

// |x| (std::fabs is a compiler builtin: it clears the sign bit and vectorises).
template <class T>
NNK_INLINE T abs(T x) {
  return std::fabs(x);
}

// tanh(x) = e / (e + 2) with e = e^(2|x|) - 1 (accurate for small |x| too), sign copied.
template <class T>
NNK_INLINE T tanh(T x) {
  using Tr = detail::Traits<T>;
  const T a = abs(x);
  // Beyond kTanhOne, tanh rounds to 1: clamping there keeps e^(2a) in the core's range.
  const T ac = select(a > Tr::kTanhOne, Tr::kTanhOne, a);
  const T e = detail::expm1_core(ac + ac);
  return std::copysign(e / (e + T(2)), x);  // NaN: a, ac, e are NaN
}

// 1 / (1 + e^-x), accurate in relative terms on both sides (e^x / (1 + e^x) for x < 0). Results
// below the normal range (x < -87.3 for float, -708.4 for double) flush to 0, as torch's float
// sigmoid does: exp_nonpositive is ~30% cheaper than exp here (sigmoid feeds silu and RNN gates).
template <class T>
NNK_INLINE T sigmoid(T x) {
  const T e = exp_nonpositive(-abs(x));
  return select(x >= T(0), T(1), e) / (T(1) + e);
}

// log(1 + e^z) = max(z, 0) + log1p(e^-|z|), never overflowing.
template <class T>
NNK_INLINE T softplus(T z) {
  return select(z > T(0), z, T(0)) + log1p(exp(-abs(z)));
}

}  // namespace vmath
}  // namespace nnkern
