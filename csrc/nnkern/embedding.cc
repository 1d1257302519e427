#include "nnkern/embedding.h"

#include <algorithm>
#include <cstring>

#include "nnkern/parallel.h"
#include "nnkern/simd.h"
#include "nnkern/workspace.h"

namespace nnkern {
namespace {

// Below this many element updates (zeroing + additions) the backward runs on one thread.
constexpr index_t kMinParallelWork = 1 << 16;

template <class T>
NNK_INLINE void gather_rows_body(T* y, const T* weight, const std::int64_t* idx, index_t m0,
                                 index_t m1, index_t D) {
  for (index_t m = m0; m < m1; ++m) std::memcpy(y + m * D, weight + idx[m] * D, sizeof(T) * D);
}
NNK_MULTIVERSION(gather_rows, gather_rows_body)

// Serial scatter-add in the order of m.
template <class T>
NNK_INLINE void scatter_rows_body(T* dweight, const T* dy, const std::int64_t* idx, index_t M,
                                  index_t D, index_t padding_idx) {
  for (index_t m = 0; m < M; ++m) {
    const index_t v = idx[m];
    if (v == padding_idx) continue;
    T* dst = dweight + v * D;
    const T* src = dy + m * D;
#pragma omp simd
    for (index_t d = 0; d < D; ++d) dst[d] += src[d];
  }
}
NNK_MULTIVERSION(scatter_rows, scatter_rows_body)

// Rows [v0, v1) of dweight from the positions grouped by row (CSR: order[off[v] .. off[v+1]) are
// the m with idx[m] == v, ascending).
template <class T>
NNK_INLINE void csr_rows_body(T* dweight, const T* dy, const index_t* off, const index_t* order,
                              index_t v0, index_t v1, index_t D, bool zero) {
  for (index_t v = v0; v < v1; ++v) {
    T* dst = dweight + v * D;
    if (zero) std::memset(dst, 0, sizeof(T) * D);
    for (index_t k = off[v]; k < off[v + 1]; ++k) {
      const T* src = dy + order[k] * D;
#pragma omp simd
      for (index_t d = 0; d < D; ++d) dst[d] += src[d];
    }
  }
}
NNK_MULTIVERSION(csr_rows, csr_rows_body)

}  // namespace

template <class T>
void embedding_forward(T* y, const T* weight, const std::int64_t* idx, index_t M, index_t D) {
  if (M <= 0 || D <= 0) return;
  parallel_for(
      M, std::max<index_t>(1, 16384 / D), [&](index_t b, index_t e) { gather_rows(y, weight, idx, b, e, D); },
      1);
}

template <class T>
void embedding_backward(T* dweight, const T* dy, const std::int64_t* idx, index_t M, index_t V,
                        index_t D, index_t padding_idx, bool accumulate) {
  if (V <= 0 || D <= 0) return;
  const index_t work = (accumulate ? 0 : V * D) + M * D;
  const int want = num_threads();
  if (want <= 1 || work < kMinParallelWork) {
    if (!accumulate) std::memset(dweight, 0, sizeof(T) * V * D);
    scatter_rows(dweight, dy, idx, M, D, padding_idx);
    return;
  }
  // Group positions by row (counting sort, stable in m), then give each thread a range of rows
  // with about the same cost: 2 units per contribution (read dy, update the row) + 1 per row
  // to zero. Each row is summed in m order whichever thread owns it.
  index_t* off = scratch<index_t>(kScratch0, V + 1);
  index_t* cursor = scratch<index_t>(kScratch1, V);
  index_t* order = scratch<index_t>(kScratch2, std::max<index_t>(M, 1));
  std::fill(off, off + V + 1, index_t{0});
  for (index_t m = 0; m < M; ++m) {
    if (idx[m] != padding_idx) ++off[idx[m] + 1];
  }
  for (index_t v = 0; v < V; ++v) off[v + 1] += off[v];
  std::copy(off, off + V, cursor);
  for (index_t m = 0; m < M; ++m) {
    if (idx[m] != padding_idx) order[cursor[idx[m]]++] = m;
  }
  const index_t zero_cost = accumulate ? 0 : 1;
  auto cost_before = [&](index_t v) { return 2 * off[v] + zero_cost * v; };
  const index_t total = cost_before(V);
  const int nt = static_cast<int>(std::min<index_t>(want, std::max<index_t>(1, V)));
  // First row of thread t's range: the first v whose cost_before reaches t/nt of the total.
  auto boundary = [&](index_t t) -> index_t {
    if (t <= 0) return 0;
    if (t >= nt) return V;
    const index_t target = (total * t + nt - 1) / nt;
    index_t lo = 0, hi = V;
    while (lo < hi) {
      const index_t mid = lo + (hi - lo) / 2;
      if (cost_before(mid) < target) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  };
#pragma omp parallel num_threads(nt)
  {
    const index_t t = omp_get_thread_num();
    const index_t team = omp_get_num_threads();
    const index_t v0 = team == nt ? boundary(t) : (t == 0 ? 0 : V);
    const index_t v1 = team == nt ? boundary(t + 1) : (t == 0 ? V : V);
    if (v0 < v1) csr_rows(dweight, dy, off, order, v0, v1, D, !accumulate);
  }
}

template void embedding_forward<float>(float*, const float*, const std::int64_t*, index_t, index_t);
template void embedding_forward<double>(double*, const double*, const std::int64_t*, index_t, index_t);
template void embedding_backward<float>(float*, const float*, const std::int64_t*, index_t, index_t,
                                        index_t, index_t, bool);
template void embedding_backward<double>(double*, const double*, const std::int64_t*, index_t, index_t,
                                         index_t, index_t, bool);

}  // namespace nnkern
