// Process-wide settings: threads, SIMD level, BLAS information.
#include "arrays.h"
#include "nnkern/gemm.h"
#include "nnkern/parallel.h"
#include "nnkern/simd.h"
#include "nnkern/workspace.h"

namespace nnkern {
namespace bind {

// Upper bound on set_num_threads: beyond this a typo, not a setting.
constexpr int kMaxThreads = 1024;

void bind_core(py::module_& m) {
  m.def(
      "set_num_threads",
      [](int n) {
        if (n < 1 || n > kMaxThreads) {
          value_error("set_num_threads", "n must be in [1, ", kMaxThreads, "], got ", n);
        }
        set_num_threads(n);
      },
      py::arg("n"),
      "Set the number of OpenMP threads nnkern kernels use (process-wide). Results do not\n"
      "depend on it: every kernel is bitwise deterministic for any thread count.");
  m.def("get_num_threads", &num_threads,
        "Number of threads nnkern kernels use now (default: OMP_NUM_THREADS or the core count).");
  m.def("default_num_threads", &default_num_threads);
  m.def("simd_level", [] { return std::string(simd::level_name(simd::level())); },
        "SIMD code path in use: 'avx512', 'avx2' or 'baseline' (override with NNKERN_ISA).");
  m.def("_detected_simd_level", [] { return std::string(simd::level_name(simd::detected_level())); });
  m.def(
      "_set_simd_level",
      [](const std::string& name) {
        simd::Level lv;
        if (name == "avx512") lv = simd::kAvx512;
        else if (name == "avx2") lv = simd::kAvx2;
        else if (name == "baseline") lv = simd::kBaseline;
        else value_error("_set_simd_level", "level must be 'avx512', 'avx2' or 'baseline', got '", name, "'");
        if (!simd::set_level(lv)) value_error("_set_simd_level", "this CPU cannot run '", name, "'");
      },
      py::arg("level"), "Force a SIMD code path (tests only; not thread-safe against running kernels).");
  m.def("blas_config", [] { return std::string(blas_config()); },
        "Build configuration of nnkern's OpenBLAS copy (scipy-openblas32).");
  m.def("blas_corename", [] { return std::string(blas_corename()); },
        "Kernel family OpenBLAS selected for this CPU (e.g. 'SkylakeX', 'Haswell').");
  m.def(
      "set_workspace_limit",
      [](long long bytes) {
        if (bytes < (1 << 20)) {
          value_error("set_workspace_limit", "bytes must be >= 1048576 (1 MiB), got ", bytes);
        }
        set_workspace_limit(static_cast<std::size_t>(bytes));
      },
      py::arg("bytes"),
      "Cap (bytes, default 64 MiB) on the scratch memory one kernel call may use: kernels such as\n"
      "im2col convolution process large batches in pieces that fit under it.");
  m.def("get_workspace_limit", [] { return static_cast<long long>(workspace_limit()); });
  m.def("_scratch_bytes_held", [] { return static_cast<long long>(scratch_bytes_held()); },
        "Scratch memory currently held by nnkern threads (bytes).");
  m.def("_gemm_split", [](index_t M, index_t N, index_t K) {
    const GemmSplit s = gemm_split(M, N, K);
    return py::make_tuple(s.blocks, s.split_m ? "M" : "N");
  });
}

}  // namespace bind
}  // namespace nnkern
