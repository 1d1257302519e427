// nk.matmul: the GEMM wrapper every kernel uses, exposed for users and tests.
#include "arrays.h"
#include "nnkern/gemm.h"

namespace nnkern {
namespace bind {
namespace {

// A 2-D matrix operand as BLAS sees it: a C-ordered buffer plus a transpose flag. A Fortran-
// ordered array (e.g. x.T of a C array) is used as is with the flag flipped, so it is not copied.
template <class T>
struct Operand {
  py::array_t<T> buf;
  bool trans;
  index_t rows, cols;  // of op(X), as the caller means it
  index_t ld;
};

template <class T>
Operand<T> matrix_operand(py::handle obj, bool trans, const char* name, const char* dtype_from) {
  const char* fn = "matmul";
  py::array a = require_ndarray(obj, fn, name);
  check_ndim(a, 2, fn, name, "(a matrix)");
  Operand<T> op;
  const bool fortran = (a.flags() & py::array::f_style) && !(a.flags() & py::array::c_style) &&
                       has_dtype<T>(a) && is_aligned(a) && a.dtype().is(py::dtype::of<T>());
  if (fortran) {
    // a == S^T with S C-ordered of shape (cols, rows): op(a) = op'(S) with the flag flipped.
    op.buf = py::reinterpret_borrow<py::array_t<T>>(a);
    op.trans = !trans;
    op.ld = a.shape(0) > 0 ? a.shape(0) : 1;
  } else {
    op.buf = input<T>(a, fn, name, dtype_from);
    op.trans = trans;
    op.ld = a.shape(1) > 0 ? a.shape(1) : 1;
  }
  op.rows = trans ? a.shape(1) : a.shape(0);
  op.cols = trans ? a.shape(0) : a.shape(1);
  return op;
}

template <class T>
py::array_t<T> matmul_impl(py::handle a_obj, py::handle b_obj, py::handle out_obj, bool trans_a,
                           bool trans_b, double alpha, double beta) {
  const char* fn = "matmul";
  Operand<T> A = matrix_operand<T>(a_obj, trans_a, "a", nullptr);
  Operand<T> B = matrix_operand<T>(b_obj, trans_b, "b", "a");
  if (A.cols != B.rows) {
    value_error(fn, "inner dimensions differ: op(a) is (", A.rows, ", ", A.cols, ") and op(b) is (",
                B.rows, ", ", B.cols, ")", trans_a || trans_b ? " after the requested transposes" : "");
  }
  const index_t M = A.rows, N = B.cols, K = A.cols;
  for (index_t d : {M, N, K, A.ld, B.ld}) {
    if (d > kGemmMaxDim) value_error(fn, "dimension ", d, " exceeds the BLAS limit of ", kGemmMaxDim);
  }
  check_finite(alpha, fn, "alpha");
  check_finite(beta, fn, "beta");
  if (beta != 0.0 && out_obj.is_none()) {
    value_error(fn, "beta=", beta, " needs out= (C = alpha * op(a) @ op(b) + beta * out)");
  }
  py::array_t<T> C = output<T>(out_obj, {M, N}, fn);
  check_no_overlap(C, A.buf, fn, "out", "a");
  check_no_overlap(C, B.buf, fn, "out", "b");
  const T* pa = A.buf.data();
  const T* pb = B.buf.data();
  T* pc = C.mutable_data();
  {
    py::gil_scoped_release nogil;
    gemm<T>(A.trans, B.trans, M, N, K, static_cast<T>(alpha), pa, A.ld, pb, B.ld,
            static_cast<T>(beta), pc, N > 0 ? N : 1);
  }
  return C;
}

}  // namespace

void bind_gemm(py::module_& m) {
  m.def(
      "matmul",
      [](py::object a, py::object b, py::object out, bool trans_a, bool trans_b, double alpha,
         double beta) -> py::object {
        return dispatch_float(a, "matmul", "a", [&](auto t) -> py::object {
          using T = decltype(t);
          return matmul_impl<T>(a, b, out, trans_a, trans_b, alpha, beta);
        });
      },
      py::arg("a"), py::arg("b"), py::arg("out") = py::none(), py::arg("trans_a") = false,
      py::arg("trans_b") = false, py::kw_only(), py::arg("alpha") = 1.0, py::arg("beta") = 0.0,
      R"doc(Matrix product op(a) @ op(b) of 2-D float32/float64 arrays through nnkern's GEMM.

op(x) is x, or x.T when trans_x is true. With out=, writes
out = alpha * op(a) @ op(b) + beta * out in place (out must be C-contiguous, writeable, of the
right shape and dtype, and must not overlap a or b). Fortran-ordered inputs are used without a
copy. Results are bitwise identical for any thread count.)doc");
}

}  // namespace bind
}  // namespace nnkern
