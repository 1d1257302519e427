#include "nnkern/workspace.h"

#include <atomic>
#include <cstdlib>
#include <new>

namespace nnkern {
namespace {

constexpr std::size_t kAlign = 64;

std::atomic<std::size_t> g_held{0};
std::atomic<std::size_t> g_limit{std::size_t{64} << 20};

struct Buffer {
  void* ptr = nullptr;
  std::size_t size = 0;
};

struct ThreadScratch {
  Buffer slots[kNumScratchSlots];
  ~ThreadScratch() { release(); }
  void release() {
    for (Buffer& b : slots) {
      if (b.ptr != nullptr) {
        std::free(b.ptr);
        g_held.fetch_sub(b.size, std::memory_order_relaxed);
      }
      b = Buffer{};
    }
  }
};

ThreadScratch& local() {
  thread_local ThreadScratch s;
  return s;
}

}  // namespace

void* scratch_bytes(int slot, std::size_t bytes) {
  NNK_ASSERT(slot >= 0 && slot < kNumScratchSlots);
  Buffer& b = local().slots[slot];
  if (bytes <= b.size && b.ptr != nullptr) return b.ptr;
  // Grow by at least 1/8 so a slowly growing request does not reallocate every call.
  std::size_t want = bytes + bytes / 8;
  want = (want + kAlign - 1) / kAlign * kAlign;
  if (want == 0) want = kAlign;
  void* p = std::aligned_alloc(kAlign, want);
  if (p == nullptr) throw std::bad_alloc();
  if (b.ptr != nullptr) {
    std::free(b.ptr);
    g_held.fetch_sub(b.size, std::memory_order_relaxed);
  }
  b.ptr = p;
  b.size = want;
  g_held.fetch_add(want, std::memory_order_relaxed);
  return p;
}

std::size_t scratch_bytes_held() { return g_held.load(std::memory_order_relaxed); }

void release_scratch() { local().release(); }

std::size_t workspace_limit() { return g_limit.load(std::memory_order_relaxed); }

void set_workspace_limit(std::size_t bytes) { g_limit.store(bytes, std::memory_order_relaxed); }

}  // namespace nnkern
