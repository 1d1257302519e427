#include "nnkern/simd.h"

#include <atomic>
#include <cstdlib>
#include <cstring>

namespace nnkern {
namespace simd {
namespace {

Level detect() {
  __builtin_cpu_init();
  // x86-64-v4 as GCC defines it: AVX512F/BW/CD/DQ/VL on top of v3.
  if (__builtin_cpu_supports("x86-64-v4")) return kAvx512;
  if (__builtin_cpu_supports("x86-64-v3")) return kAvx2;
  return kBaseline;
}

Level initial_level() {
  const Level best = detect();
  const char* env = std::getenv("NNKERN_ISA");
  if (env == nullptr || *env == '\0') return best;
  Level want = best;
  if (std::strcmp(env, "baseline") == 0 || std::strcmp(env, "default") == 0) want = kBaseline;
  else if (std::strcmp(env, "avx2") == 0) want = kAvx2;
  else if (std::strcmp(env, "avx512") == 0) want = kAvx512;
  // An unknown value or a level the CPU lacks falls back to the best supported level;
  // nnkern.simd_level() shows what is in use.
  return want <= best ? want : best;
}

std::atomic<int>& current() {
  static std::atomic<int> lv{static_cast<int>(initial_level())};
  return lv;
}

}  // namespace

Level level() { return static_cast<Level>(current().load(std::memory_order_relaxed)); }

Level detected_level() {
  static const Level best = detect();
  return best;
}

bool set_level(Level lv) {
  if (lv < kBaseline || lv > detected_level()) return false;
  current().store(static_cast<int>(lv), std::memory_order_relaxed);
  return true;
}

const char* level_name(Level lv) {
  switch (lv) {
    case kAvx512: return "avx512";
    case kAvx2: return "avx2";
    default: return "baseline";
  }
}

}  // namespace simd
}  // namespace nnkern
