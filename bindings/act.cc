// Activations: nk.sigmoid / tanh / relu / leaky_relu / prelu / softplus / silu / softmax /
// log_softmax and their *_backward. Validation lives here; the maths in csrc/nnkern/act.cc.
#include <cmath>
#include <string>

#include "arrays.h"
#include "nnkern/act.h"

namespace nnkern {
namespace bind {
namespace {

// out (checked like an in-place buffer) shaped like `like`; it may be the exact same array as any
// of `inputs` (in-place activation, dx over dy) but must not partially overlap one.
template <class T>
py::array_t<T> elementwise_out(py::handle out, const py::array& like, const char* fn,
                               std::initializer_list<std::pair<const py::array*, const char*>> inputs) {
  py::array_t<T> y = output<T>(out, shape_of(like), fn);
  for (const auto& in : inputs) check_no_overlap(y, *in.first, fn, "out", in.second, /*allow_alias=*/true);
  return y;
}

// y = f(x) elementwise.
template <class T, class K>
py::object unary_forward(const char* fn, py::handle x_obj, py::handle out_obj, K kernel) {
  py::array_t<T> x = input<T>(x_obj, fn, "x");
  py::array_t<T> y = elementwise_out<T>(out_obj, x, fn, {{&x, "x"}});
  const T* px = x.data();
  T* py_ = y.mutable_data();
  const index_t n = x.size();
  {
    py::gil_scoped_release nogil;
    kernel(py_, px, n);
  }
  return std::move(y);
}

// dx = f(dy, saved) elementwise; `saved_name` is "y" or "x".
template <class T, class K>
py::object unary_backward(const char* fn, py::handle dy_obj, py::handle s_obj, const char* saved_name,
                          py::handle out_obj, K kernel) {
  py::array_t<T> dy = input<T>(dy_obj, fn, "dy");
  py::array_t<T> s = input<T>(s_obj, fn, saved_name, "dy");
  check_same_shape(dy, s, fn, "dy", saved_name);
  py::array_t<T> dx = elementwise_out<T>(out_obj, dy, fn, {{&dy, "dy"}, {&s, saved_name}});
  const T* pdy = dy.data();
  const T* ps = s.data();
  T* pdx = dx.mutable_data();
  const index_t n = dy.size();
  {
    py::gil_scoped_release nogil;
    kernel(pdx, pdy, ps, n);
  }
  return std::move(dx);
}

void check_not_nan(double v, const char* fn, const char* name) {
  if (std::isnan(v)) value_error(fn, name, " must not be NaN");
}

void check_softplus_args(double beta, double threshold, const char* fn) {
  if (!std::isfinite(beta) || beta == 0.0) value_error(fn, "beta must be a finite nonzero number, got ", beta);
  check_not_nan(threshold, fn, "threshold");
}

// --- prelu -------------------------------------------------------------------------------------

struct PreluDims {
  index_t N, C, S;
};

// x [N, C, *] with weight (C,) or (1,); x with fewer than 2 dims has one channel.
PreluDims prelu_dims(const py::array& x, const py::array& w, const char* fn) {
  check_ndim(w, 1, fn, "weight", "(num_parameters,)");
  const index_t channels = x.ndim() >= 2 ? x.shape(1) : 1;
  const index_t nw = w.shape(0);
  if (nw != 1 && nw != channels) {
    if (x.ndim() >= 2) {
      value_error(fn, "weight has ", nw, " elements, expected 1 or ", channels, " (the size of dim 1 of x, shape ",
                  shape_str(x), ")");
    }
    value_error(fn, "weight has ", nw, " elements, expected 1 (x with ", x.ndim(), " dims has no channel dim)");
  }
  if (nw == 1) return {x.size(), 1, 1};
  index_t S = 1;
  for (py::ssize_t d = 2; d < x.ndim(); ++d) S *= x.shape(d);
  return {x.shape(0), channels, S};
}

template <class T>
py::object prelu_impl(py::handle x_obj, py::handle w_obj, py::handle out_obj) {
  const char* fn = "prelu";
  py::array_t<T> x = input<T>(x_obj, fn, "x");
  py::array_t<T> w = input<T>(w_obj, fn, "weight", "x");
  const PreluDims d = prelu_dims(x, w, fn);
  py::array_t<T> y = elementwise_out<T>(out_obj, x, fn, {{&x, "x"}});
  check_no_overlap(y, w, fn, "out", "weight");
  const T* px = x.data();
  const T* pw = w.data();
  T* py_ = y.mutable_data();
  {
    py::gil_scoped_release nogil;
    prelu_forward<T>(py_, px, pw, d.N, d.C, d.S);
  }
  return std::move(y);
}

template <class T>
py::object prelu_backward_impl(py::handle dy_obj, py::handle x_obj, py::handle w_obj, py::handle out_obj) {
  const char* fn = "prelu_backward";
  py::array_t<T> dy = input<T>(dy_obj, fn, "dy");
  py::array_t<T> x = input<T>(x_obj, fn, "x", "dy");
  py::array_t<T> w = input<T>(w_obj, fn, "weight", "dy");
  check_same_shape(dy, x, fn, "dy", "x");
  const PreluDims d = prelu_dims(x, w, fn);
  py::array_t<T> dx = elementwise_out<T>(out_obj, dy, fn, {{&dy, "dy"}, {&x, "x"}});
  check_no_overlap(dx, w, fn, "out", "weight");
  py::array_t<T> dw(std::vector<py::ssize_t>{w.shape(0)});
  const T* pdy = dy.data();
  const T* px = x.data();
  const T* pw = w.data();
  T* pdx = dx.mutable_data();
  T* pdw = dw.mutable_data();
  {
    py::gil_scoped_release nogil;
    prelu_backward<T>(pdx, pdw, pdy, px, pw, d.N, d.C, d.S);
  }
  return py::make_tuple(dx, dw);
}

// --- softmax -----------------------------------------------------------------------------------

struct SoftmaxDims {
  index_t outer, D, inner;
};

// dim: a Python int (or any __index__ object such as numpy.int64), never a bool or a float.
// Ints beyond 64 bits are out of range like any other too-large dim.
long long dim_arg(py::handle obj, const char* fn) {
  if (PyBool_Check(obj.ptr()) || !py::hasattr(obj, "__index__")) {
    type_error(fn, "dim must be an int, got ", type_name(obj));
  }
  py::object as_int = py::reinterpret_steal<py::object>(PyNumber_Index(obj.ptr()));
  if (!as_int) throw py::error_already_set();
  int overflow = 0;
  const long long dim = PyLong_AsLongLongAndOverflow(as_int.ptr(), &overflow);
  if (overflow != 0) {
    value_error(fn, "dim ", py::str(as_int).cast<std::string>(), " is out of range (not a 64-bit int)");
  }
  return dim;
}

SoftmaxDims softmax_dims(const py::array& x, long long dim, const char* fn) {
  const long long nd = x.ndim();
  const long long lo = nd == 0 ? -1 : -nd, hi = nd == 0 ? 1 : nd;  // a 0-d x acts like shape (1,)
  if (dim < lo || dim >= hi) {
    value_error(fn, "dim ", dim, " is out of range for x with ", nd, " dims (expected ", lo, " <= dim < ", hi, ")");
  }
  if (nd == 0) return {1, 1, 1};
  const long long k = dim < 0 ? dim + nd : dim;
  SoftmaxDims d{1, x.shape(k), 1};
  for (long long i = 0; i < k; ++i) d.outer *= x.shape(i);
  for (long long i = k + 1; i < nd; ++i) d.inner *= x.shape(i);
  return d;
}

template <class T, class K>
py::object softmax_forward_impl(const char* fn, py::handle x_obj, long long dim, py::handle out_obj, K kernel) {
  py::array_t<T> x = input<T>(x_obj, fn, "x");
  const SoftmaxDims d = softmax_dims(x, dim, fn);
  py::array_t<T> y = elementwise_out<T>(out_obj, x, fn, {{&x, "x"}});
  const T* px = x.data();
  T* py_ = y.mutable_data();
  {
    py::gil_scoped_release nogil;
    kernel(py_, px, d.outer, d.D, d.inner);
  }
  return std::move(y);
}

template <class T, class K>
py::object softmax_backward_impl(const char* fn, py::handle dy_obj, py::handle y_obj, long long dim,
                                 py::handle out_obj, K kernel) {
  py::array_t<T> dy = input<T>(dy_obj, fn, "dy");
  py::array_t<T> y = input<T>(y_obj, fn, "y", "dy");
  check_same_shape(dy, y, fn, "dy", "y");
  const SoftmaxDims d = softmax_dims(y, dim, fn);
  py::array_t<T> dx = elementwise_out<T>(out_obj, dy, fn, {{&dy, "dy"}, {&y, "y"}});
  const T* pdy = dy.data();
  const T* pyy = y.data();
  T* pdx = dx.mutable_data();
  {
    py::gil_scoped_release nogil;
    kernel(pdx, pdy, pyy, d.outer, d.D, d.inner);
  }
  return std::move(dx);
}

// Registers name(x, out=None) with a kernel template instantiated for float and double.
#define NNK_DEF_UNARY(NAME, KERNEL, DOC)                                                        \
  m.def(                                                                                        \
      NAME,                                                                                     \
      [](py::object x, py::object out) -> py::object {                                          \
        return dispatch_float(x, NAME, "x", [&](auto t) -> py::object {                         \
          using T = decltype(t);                                                                \
          return unary_forward<T>(NAME, x, out, [](T* y, const T* px, index_t n) { KERNEL<T>(y, px, n); }); \
        });                                                                                     \
      },                                                                                        \
      py::arg("x"), py::arg("out") = py::none(), DOC)

#define NNK_DEF_UNARY_BWD(NAME, SAVED, KERNEL, DOC)                                             \
  m.def(                                                                                        \
      NAME,                                                                                     \
      [](py::object dy, py::object s, py::object out) -> py::object {                           \
        return dispatch_float(dy, NAME, "dy", [&](auto t) -> py::object {                       \
          using T = decltype(t);                                                                \
          return unary_backward<T>(NAME, dy, s, SAVED, out,                                     \
                                   [](T* dx, const T* g, const T* v, index_t n) { KERNEL<T>(dx, g, v, n); }); \
        });                                                                                     \
      },                                                                                        \
      py::arg("dy"), py::arg(SAVED), py::arg("out") = py::none(), DOC)

}  // namespace

void bind_act(py::module_& m) {
  NNK_DEF_UNARY("sigmoid", sigmoid_forward,
                "sigmoid(x, out=None): y = 1 / (1 + exp(-x)), elementwise (accurate for large |x|).\n\n"
                "x is float32 or float64 of any shape; out= (same shape and dtype, C-contiguous,\n"
                "writeable) may be x itself for an in-place activation.");
  NNK_DEF_UNARY_BWD("sigmoid_backward", "y", sigmoid_backward,
                    "sigmoid_backward(dy, y, out=None): dx = dy * (1 - y) * y from the forward output y.\n"
                    "out= may be dy or y itself.");
  NNK_DEF_UNARY("tanh", tanh_forward, "tanh(x, out=None): y = tanh(x) elementwise; out= may be x.");
  NNK_DEF_UNARY_BWD("tanh_backward", "y", tanh_backward,
                    "tanh_backward(dy, y, out=None): dx = dy * (1 - y^2) from the forward output y.");
  NNK_DEF_UNARY("relu", relu_forward,
                "relu(x, out=None): y = max(x, 0) elementwise (NaN propagates, as torch); out= may be x.");
  NNK_DEF_UNARY_BWD("relu_backward", "y", relu_backward,
                    "relu_backward(dy, y, out=None): dx = dy where y > 0, else 0 (from the forward output y,\n"
                    "as torch's threshold_backward). out= may be dy or y itself.");
  NNK_DEF_UNARY("silu", silu_forward, "silu(x, out=None): y = x * sigmoid(x) elementwise (swish); out= may be x.");
  NNK_DEF_UNARY_BWD("silu_backward", "x", silu_backward,
                    "silu_backward(dy, x, out=None): dx = dy * s * (1 + x * (1 - s)), s = sigmoid(x),\n"
                    "from the forward input x. out= may be dy or x itself.");

  m.def(
      "leaky_relu",
      [](py::object x, double slope, py::object out) -> py::object {
        const char* fn = "leaky_relu";
        check_not_nan(slope, fn, "negative_slope");
        return dispatch_float(x, fn, "x", [&](auto t) -> py::object {
          using T = decltype(t);
          const T s = static_cast<T>(slope);
          return unary_forward<T>(fn, x, out,
                                  [s](T* y, const T* px, index_t n) { leaky_relu_forward<T>(y, px, n, s); });
        });
      },
      py::arg("x"), py::arg("negative_slope") = 0.01, py::arg("out") = py::none(),
      "leaky_relu(x, negative_slope=0.01, out=None): y = x if x > 0 else negative_slope * x.\n"
      "out= may be x itself.");
  m.def(
      "leaky_relu_backward",
      [](py::object dy, py::object x, double slope, py::object out) -> py::object {
        const char* fn = "leaky_relu_backward";
        check_not_nan(slope, fn, "negative_slope");
        return dispatch_float(dy, fn, "dy", [&](auto t) -> py::object {
          using T = decltype(t);
          const T s = static_cast<T>(slope);
          return unary_backward<T>(fn, dy, x, "x", out, [s](T* dx, const T* g, const T* v, index_t n) {
            leaky_relu_backward<T>(dx, g, v, n, s);
          });
        });
      },
      py::arg("dy"), py::arg("x"), py::arg("negative_slope") = 0.01, py::arg("out") = py::none(),
      "leaky_relu_backward(dy, x, negative_slope=0.01, out=None): dx = dy if x > 0 else\n"
      "negative_slope * dy, from the forward input x (the output works too when negative_slope >= 0).");

  m.def(
      "softplus",
      [](py::object x, double beta, double threshold, py::object out) -> py::object {
        const char* fn = "softplus";
        check_softplus_args(beta, threshold, fn);
        return dispatch_float(x, fn, "x", [&](auto t) -> py::object {
          using T = decltype(t);
          const T b = static_cast<T>(beta), th = static_cast<T>(threshold);
          return unary_forward<T>(fn, x, out,
                                  [b, th](T* y, const T* px, index_t n) { softplus_forward<T>(y, px, n, b, th); });
        });
      },
      py::arg("x"), py::arg("beta") = 1.0, py::arg("threshold") = 20.0, py::arg("out") = py::none(),
      "softplus(x, beta=1.0, threshold=20.0, out=None): y = log(1 + exp(beta * x)) / beta, and y = x\n"
      "where beta * x > threshold (torch's rule). Evaluated without overflow. out= may be x.");
  m.def(
      "softplus_backward",
      [](py::object dy, py::object x, double beta, double threshold, py::object out) -> py::object {
        const char* fn = "softplus_backward";
        check_softplus_args(beta, threshold, fn);
        return dispatch_float(dy, fn, "dy", [&](auto t) -> py::object {
          using T = decltype(t);
          const T b = static_cast<T>(beta), th = static_cast<T>(threshold);
          return unary_backward<T>(fn, dy, x, "x", out, [b, th](T* dx, const T* g, const T* v, index_t n) {
            softplus_backward<T>(dx, g, v, n, b, th);
          });
        });
      },
      py::arg("dy"), py::arg("x"), py::arg("beta") = 1.0, py::arg("threshold") = 20.0, py::arg("out") = py::none(),
      "softplus_backward(dy, x, beta=1.0, threshold=20.0, out=None): dx = dy * sigmoid(beta * x), and\n"
      "dx = dy where beta * x > threshold; from the forward input x.");

  m.def(
      "prelu",
      [](py::object x, py::object w, py::object out) -> py::object {
        return dispatch_float(x, "prelu", "x", [&](auto t) -> py::object {
          return prelu_impl<decltype(t)>(x, w, out);
        });
      },
      py::arg("x"), py::arg("weight"), py::arg("out") = py::none(),
      "prelu(x, weight, out=None): y = x if x > 0 else weight[c] * x, c the index along dim 1 of x.\n\n"
      "weight has shape (C,) with C = x.shape[1], or (1,) (one weight for every element; x with\n"
      "fewer than 2 dims has one channel). out= may be x itself.");
  m.def(
      "prelu_backward",
      [](py::object dy, py::object x, py::object w, py::object out) -> py::object {
        return dispatch_float(dy, "prelu_backward", "dy", [&](auto t) -> py::object {
          return prelu_backward_impl<decltype(t)>(dy, x, w, out);
        });
      },
      py::arg("dy"), py::arg("x"), py::arg("weight"), py::arg("out") = py::none(),
      "prelu_backward(dy, x, weight, out=None) -> (dx, dweight): dx = dy if x > 0 else weight[c] * dy;\n"
      "dweight[c] = sum of x * dy over the elements of channel c with x <= 0 (a fresh array shaped\n"
      "like weight; reduced in a fixed order, identical for any thread count). out= (for dx) may be\n"
      "dy or x itself.");

  m.def(
      "softmax",
      [](py::object x, py::object dim, py::object out) -> py::object {
        return dispatch_float(x, "softmax", "x", [&](auto t) -> py::object {
          using T = decltype(t);
          return softmax_forward_impl<T>("softmax", x, dim_arg(dim, "softmax"), out,
                                         [](T* y, const T* px, index_t o, index_t D, index_t i) {
                                           softmax_forward<T>(y, px, o, D, i);
                                         });
        });
      },
      py::arg("x"), py::arg("dim") = -1, py::arg("out") = py::none(),
      "softmax(x, dim=-1, out=None): y = exp(x - max) / sum(exp(x - max)) along dim (any dim;\n"
      "the last dim is the fastest). out= may be x itself.");
  m.def(
      "softmax_backward",
      [](py::object dy, py::object y, py::object dim, py::object out) -> py::object {
        return dispatch_float(dy, "softmax_backward", "dy", [&](auto t) -> py::object {
          using T = decltype(t);
          return softmax_backward_impl<T>("softmax_backward", dy, y, dim_arg(dim, "softmax_backward"), out,
                                          [](T* dx, const T* g, const T* py_, index_t o, index_t D, index_t i) {
                                            softmax_backward<T>(dx, g, py_, o, D, i);
                                          });
        });
      },
      py::arg("dy"), py::arg("y"), py::arg("dim") = -1, py::arg("out") = py::none(),
      "softmax_backward(dy, y, dim=-1, out=None): dx = y * (dy - sum(dy * y, dim)) from the forward\n"
      "output y. out= may be dy or y itself.");
  m.def(
      "log_softmax",
      [](py::object x, py::object dim, py::object out) -> py::object {
        return dispatch_float(x, "log_softmax", "x", [&](auto t) -> py::object {
          using T = decltype(t);
          return softmax_forward_impl<T>("log_softmax", x, dim_arg(dim, "log_softmax"), out,
                                         [](T* y, const T* px, index_t o, index_t D, index_t i) {
                                           log_softmax_forward<T>(y, px, o, D, i);
                                         });
        });
      },
      py::arg("x"), py::arg("dim") = -1, py::arg("out") = py::none(),
      "log_softmax(x, dim=-1, out=None): y = x - max - log(sum(exp(x - max))) along dim.\n"
      "out= may be x itself.");
  m.def(
      "log_softmax_backward",
      [](py::object dy, py::object y, py::object dim, py::object out) -> py::object {
        return dispatch_float(dy, "log_softmax_backward", "dy", [&](auto t) -> py::object {
          using T = decltype(t);
          return softmax_backward_impl<T>("log_softmax_backward", dy, y, dim_arg(dim, "log_softmax_backward"), out,
                                          [](T* dx, const T* g, const T* py_, index_t o, index_t D, index_t i) {
                                            log_softmax_backward<T>(dx, g, py_, o, D, i);
                                          });
        });
      },
      py::arg("dy"), py::arg("y"), py::arg("dim") = -1, py::arg("out") = py::none(),
      "log_softmax_backward(dy, y, dim=-1, out=None): dx = dy - exp(y) * sum(dy, dim) from the\n"
      "forward output y. out= may be dy or y itself.");

  m.def(
      "_vmath",
      [](const std::string& name, py::object x) -> py::object {
        const char* fn = "_vmath";
        return dispatch_float(x, fn, "x", [&](auto t) -> py::object {
          using T = decltype(t);
          py::array_t<T> xa = input<T>(x, fn, "x");
          py::array_t<T> y(shape_of(xa));
          const T* px = xa.data();
          T* py_ = y.mutable_data();
          bool ok;
          {
            py::gil_scoped_release nogil;
            ok = vmath_apply<T>(name.c_str(), py_, px, xa.size());
          }
          if (!ok) {
            value_error(fn, "unknown function '", name,
                        "' (exp, exp_nonpositive, expm1, log, log1p, tanh, sigmoid, softplus)");
          }
          return std::move(y);
        });
      },
      py::arg("name"), py::arg("x"),
      "Applies one of nnkern's vectorised elementary functions (csrc/nnkern/vmath.h) elementwise:\n"
      "'exp', 'exp_nonpositive', 'expm1', 'log', 'log1p', 'tanh', 'sigmoid', 'softplus'. For accuracy tests.");
}

#undef NNK_DEF_UNARY
#undef NNK_DEF_UNARY_BWD

}  // namespace bind
}  // namespace nnkern
