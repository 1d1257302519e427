// nnkern._core: one extension module; each kernel family registers its functions from its own
// binding file (bindings/<family>.cc). Bindings convert, validate and release the GIL; the maths
// lives in csrc/nnkern.
#include "arrays.h"
#include "nnkern/gemm.h"

PYBIND11_MODULE(_core, m) {
  m.doc() = "nnkern compiled kernels (use the nnkern package, not this module directly)";
  // Our OpenBLAS copy runs single-threaded: OpenMP splits large GEMMs (see csrc/nnkern/gemm.h).
  nnkern::blas_init();
  namespace b = nnkern::bind;
  b::bind_core(m);
  b::bind_gemm(m);
  b::bind_optim(m);
  b::bind_act(m);
  b::bind_loss(m);
  b::bind_conv(m);
  b::bind_pool(m);
  b::bind_rnn(m);
  b::bind_norm(m);
}
