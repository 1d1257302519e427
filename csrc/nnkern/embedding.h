// Embedding lookup and its gradient (a deterministic scatter-add).
#pragma once

#include <cstdint>

#include "nnkern/common.h"

namespace nnkern {

// y[m, :] = weight[idx[m], :]
//   idx [M] (every 0 <= idx[m] < V: the caller checks)  weight [V, D]  y [M, D]
template <class T>
void embedding_forward(T* y, const T* weight, const std::int64_t* idx, index_t M, index_t D);

// dweight[v, :] (=|+=) sum over m with idx[m] == v and v != padding_idx of dy[m, :]
//   dy [M, D]  idx [M]  dweight [V, D]; padding_idx < 0 means none.
// accumulate=false overwrites dweight (rows nobody looks up become 0); accumulate=true adds into
// it (rows nobody looks up, and the padding row, keep their values).
// Each row sums its contributions in the order of m, starting from 0 (or the existing value), and
// a row is written by one thread: results are bitwise equal for any thread count.
template <class T>
void embedding_backward(T* dweight, const T* dy, const std::int64_t* idx, index_t M, index_t V,
                        index_t D, index_t padding_idx, bool accumulate);

}  // namespace nnkern
