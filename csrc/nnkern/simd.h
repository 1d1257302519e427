// Run-time ISA dispatch for hot loops.
//
// A kernel body is written once as an NNK_INLINE function template. NNK_MULTIVERSION(name, body)
// then defines three wrappers compiled for x86-64-v4 (AVX-512), x86-64-v3 (AVX2+FMA) and the
// baseline, plus `name(...)`, which calls the one chosen at import time.
//
// Why not __attribute__((target_clones)) as DESIGN.md first suggested: clones are chosen by the
// loader with no way to force one, so the baseline clone could never be tested on an AVX-512
// machine. Here the level can be forced with the environment variable NNKERN_ISA
// (baseline | avx2 | avx512, read once at import) or nnkern._core._set_isa() in tests.
//
// Rules:
//   * Only call the dispatched `name(...)` from inside `#pragma omp parallel` bodies; a loop
//     written directly in a parallel body is compiled for the baseline ISA.
//   * Everything the body calls must itself be NNK_INLINE (it is then compiled for the
//     wrapper's ISA) or a plain out-of-line function (which stays baseline).
//   * Different levels may round differently (FMA contraction), so results are equal across
//     thread counts but only close (a few ulp) across ISA levels.
#pragma once

#include "nnkern/common.h"

namespace nnkern {
namespace simd {

enum Level : int { kBaseline = 0, kAvx2 = 1, kAvx512 = 2 };

// The level in use (decided once, on first call: NNKERN_ISA or the best the CPU supports).
Level level();
// The best level this CPU supports.
Level detected_level();
// Force a level (tests). Returns false if the CPU cannot run it.
bool set_level(Level lv);
const char* level_name(Level lv);

}  // namespace simd
}  // namespace nnkern

#define NNK_TARGET_AVX512 __attribute__((target("arch=x86-64-v4")))
#define NNK_TARGET_AVX2 __attribute__((target("arch=x86-64-v3")))

#define NNK_MULTIVERSION(name, body)                                        \
  template <class... Args>                                                  \
  NNK_TARGET_AVX512 __attribute__((noinline)) void name##_avx512(Args... a) { \
    body(a...);                                                             \
  }                                                                         \
  template <class... Args>                                                  \
  NNK_TARGET_AVX2 __attribute__((noinline)) void name##_avx2(Args... a) {   \
    body(a...);                                                             \
  }                                                                         \
  template <class... Args>                                                  \
  __attribute__((noinline)) void name##_baseline(Args... a) {               \
    body(a...);                                                             \
  }                                                                         \
  template <class... Args>                                                  \
  inline void name(Args... a) {                                             \
    switch (::nnkern::simd::level()) {                                      \
      case ::nnkern::simd::kAvx512: name##_avx512(a...); break;             \
      case ::nnkern::simd::kAvx2: name##_avx2(a...); break;                 \
      default: name##_baseline(a...); break;                                \
    }                                                                       \
  }
