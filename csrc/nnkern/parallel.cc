#include "nnkern/parallel.h"

#include <atomic>
#include <cstdlib>

namespace nnkern {
namespace {

int parse_omp_num_threads() {
  // OMP_NUM_THREADS may be a list ("4,2" for nested levels): the first entry is ours.
  const char* env = std::getenv("OMP_NUM_THREADS");
  if (env == nullptr) return 0;
  char* end = nullptr;
  const long v = std::strtol(env, &end, 10);
  if (end == env || v < 1) return 0;
  return v > 4096 ? 4096 : static_cast<int>(v);
}

std::atomic<int>& thread_setting() {
  static std::atomic<int> n{default_num_threads()};
  return n;
}

}  // namespace

int default_num_threads() {
  const int env = parse_omp_num_threads();
  if (env > 0) return env;
  const int procs = omp_get_num_procs();
  return procs > 0 ? procs : 1;
}

int num_threads() {
  const int set = thread_setting().load(std::memory_order_relaxed);
  // Honour a lower limit placed on this thread's OpenMP ICV (threadpoolctl, omp_set_num_threads).
  const int icv = omp_get_max_threads();
  const int n = icv < set ? icv : set;
  return n > 0 ? n : 1;
}

void set_num_threads(int n) {
  NNK_ASSERT(n >= 1);
  thread_setting().store(n, std::memory_order_relaxed);
  // Keep the calling thread's ICV in step, so the min() above does not hide the new value.
  omp_set_num_threads(n);
}

}  // namespace nnkern
