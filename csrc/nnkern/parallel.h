// Threads: how many, and the two loop shapes every kernel uses.
//
// One thread pool at a time: our OpenMP (libgomp) owns all parallelism; our OpenBLAS copy runs
// single-threaded and large GEMMs are split by gemm.cc. The thread count is process-wide
// (set_num_threads), not OpenMP's per-thread ICV, so Python threads all see the same value; a
// lower omp_set_num_threads() limit on the calling thread (e.g. from threadpoolctl) also applies.
//
// Determinism: parallel_for is only used where each output element is written by exactly one
// range and does not depend on the split; reductions use parallel_chunks, whose chunk boundaries
// depend on the problem size only, and the caller combines chunk results in chunk order.
#pragma once

#include <omp.h>

#include <algorithm>

#include "nnkern/common.h"

namespace nnkern {

// Threads kernels use now (>= 1).
int num_threads();
// Sets the process-wide thread count (n >= 1; the caller validates).
void set_num_threads(int n);
// OMP_NUM_THREADS if set, else the number of available cores.
int default_num_threads();

namespace detail {
inline index_t round_up(index_t x, index_t m) { return (x + m - 1) / m * m; }
}  // namespace detail

// Calls fn(begin, end) over a partition of [0, n) into one contiguous range per thread.
// Serial (no OpenMP entry at all, ~0.7 us saved) when one thread is used or n < 2*min_per_thread.
// Range boundaries are multiples of `align` elements (SIMD width, cache lines).
template <class F>
void parallel_for(index_t n, index_t min_per_thread, F&& fn, index_t align = 64) {
  if (n <= 0) return;
  const int want = num_threads();
  const index_t by_work = std::max<index_t>(1, n / std::max<index_t>(1, min_per_thread));
  const int nt = static_cast<int>(std::min<index_t>(want, by_work));
  if (nt <= 1) {
    fn(index_t{0}, n);
    return;
  }
#pragma omp parallel num_threads(nt)
  {
    const index_t t = omp_get_thread_num();
    const index_t team = omp_get_num_threads();
    const index_t per = detail::round_up((n + team - 1) / team, align);
    const index_t begin = std::min(n, t * per);
    const index_t end = std::min(n, begin + per);
    if (begin < end) fn(begin, end);
  }
}

// Calls fn(chunk, begin, end) for every chunk of [0, n) cut into pieces of `chunk` elements.
// The cut depends on n and chunk only, never on the thread count: reductions write one partial
// result per chunk and the caller combines them in chunk order, so results are bitwise equal for
// any number of threads. Chunks are handed out statically (contiguous blocks per thread).
template <class F>
void parallel_chunks(index_t n, index_t chunk, F&& fn) {
  if (n <= 0) return;
  NNK_ASSERT(chunk > 0);
  const index_t nchunks = (n + chunk - 1) / chunk;
  const int nt = static_cast<int>(std::min<index_t>(num_threads(), nchunks));
  if (nt <= 1) {
    for (index_t c = 0; c < nchunks; ++c) fn(c, c * chunk, std::min(n, (c + 1) * chunk));
    return;
  }
#pragma omp parallel for num_threads(nt) schedule(static)
  for (index_t c = 0; c < nchunks; ++c) fn(c, c * chunk, std::min(n, (c + 1) * chunk));
}

// Number of chunks parallel_chunks(n, chunk, ...) will make.
inline index_t num_chunks(index_t n, index_t chunk) { return n <= 0 ? 0 : (n + chunk - 1) / chunk; }

}  // namespace nnkern
