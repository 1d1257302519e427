// Reusable scratch memory for kernels (im2col columns, saved gates, per-thread partials).
//
// This VM pays ~1.7 us per 4 KiB page fault, so a fresh multi-MB temporary per call can cost more
// than the kernel. Scratch buffers are per thread (each OpenMP worker and each calling Python
// thread has its own), 64-byte aligned, grow to the largest request seen and are reused by later
// calls. A kernel asks for `scratch<T>(slot, n)`; the pointer stays valid until the same thread
// asks for the same slot again, so a kernel uses distinct slots for buffers alive at once.
//
// Memory bound: kernels that could need huge scratch (im2col over a whole batch) cut their work
// into pieces whose scratch fits workspace_limit() bytes (default 64 MiB, nk.set_workspace_limit).
#pragma once

#include <cstddef>

#include "nnkern/common.h"

namespace nnkern {

enum ScratchSlot : int {
  kScratch0 = 0,
  kScratch1,
  kScratch2,
  kScratch3,
  kScratch4,
  kScratch5,
  kScratch6,
  kScratch7,
  kNumScratchSlots
};

// At least `bytes` bytes of 64-byte-aligned memory for this thread and slot (contents undefined).
void* scratch_bytes(int slot, std::size_t bytes);

template <class T>
T* scratch(int slot, index_t n) {
  NNK_ASSERT(n >= 0);
  return static_cast<T*>(scratch_bytes(slot, static_cast<std::size_t>(n) * sizeof(T)));
}

// Bytes of scratch currently held by all threads (for tests and memory reports).
std::size_t scratch_bytes_held();
// Frees the calling thread's scratch buffers.
void release_scratch();

// Soft cap on the scratch a single kernel call may use, in bytes (default 64 MiB).
std::size_t workspace_limit();
void set_workspace_limit(std::size_t bytes);

}  // namespace nnkern
