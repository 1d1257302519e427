// Shared basics for every kernel family: index type, assertions, inlining and restrict macros.
//
// Kernels only assert: every argument is checked at the Python boundary (bindings/), so a failed
// NNK_ASSERT here is a bug in nnkern, not a user error. Asserts stay on in release builds because
// they guard memory safety and cost nothing next to the loops they protect.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

namespace nnkern {

// All index arithmetic is 64-bit: N*C*H*W overflows 32 bits on real workloads.
using index_t = std::int64_t;

[[noreturn]] inline void assert_fail(const char* expr, const char* file, int line) {
  std::fprintf(stderr, "nnkern internal error: %s failed at %s:%d\n", expr, file, line);
  std::abort();
}

}  // namespace nnkern

#define NNK_ASSERT(cond) \
  ((cond) ? (void)0 : ::nnkern::assert_fail(#cond, __FILE__, __LINE__))

// Force inlining of kernel bodies into their ISA-specific wrappers (see simd.h): a body that is
// inlined is compiled with the wrapper's target ISA; one that is called stays at the baseline ISA.
#define NNK_INLINE inline __attribute__((always_inline))
#define NNK_RESTRICT __restrict__
