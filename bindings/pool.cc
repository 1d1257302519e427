// nk.max_pool2d / avg_pool2d / adaptive_*_pool2d and their backward passes: argument parsing
// (int or (h, w) pairs), torch's validity rules, out= buffers, 3-D (C, H, W) inputs.
#include <limits>
#include <string>

#include "arrays.h"
#include "nnkern/pool.h"

namespace nnkern {
namespace bind {
namespace {

// Sizes, strides, paddings, dilations and output sizes above this are refused as absurd (and
// every product of two of them stays far from int64 overflow).
constexpr index_t kMaxPoolArg = 2147483647;

struct Pair {
  index_t h, w;
};

std::string pair_str(Pair p) { return cat("(", p.h, ", ", p.w, ")"); }

// One integer (Python int or NumPy integer; bool refused) or -1 with *ok = false. Integers beyond
// int64 raise "<fn>: <name> ... is too large".
index_t int_value(py::handle v, bool* ok, const char* fn, const char* name) {
  *ok = false;
  if (PyBool_Check(v.ptr()) || !PyIndex_Check(v.ptr())) return -1;
  PyObject* num = PyNumber_Index(v.ptr());
  if (num == nullptr) throw py::error_already_set();
  int overflow = 0;
  const long long val = PyLong_AsLongLongAndOverflow(num, &overflow);
  Py_DECREF(num);
  if (overflow != 0) {
    value_error(fn, name, " value ", py::repr(v).cast<std::string>(), " is too large (each value must be < 2**31)");
  }
  *ok = true;
  return static_cast<index_t>(val);
}

// An int or a sequence of 1 or 2 ints (torch's kernel_size/stride/padding/dilation rules).
// allow_none_items: elements may be None (adaptive output_size), returned as -1.
Pair pair_arg(py::handle obj, const char* fn, const char* name, bool allow_none_items = false) {
  bool ok = false;
  const index_t single = int_value(obj, &ok, fn, name);
  if (ok) return {single, single};
  const char* what = allow_none_items ? "an int or a pair of ints (or None)" : "an int or a pair of ints";
  if (PyTuple_Check(obj.ptr()) || PyList_Check(obj.ptr())) {
    py::sequence seq = py::reinterpret_borrow<py::sequence>(obj);
    const size_t n = seq.size();
    if (n == 1 || n == 2) {
      index_t v[2];
      for (size_t i = 0; i < n; ++i) {
        py::handle item = seq[i];
        if (allow_none_items && item.is_none()) {
          v[i] = -1;
          continue;
        }
        v[i] = int_value(item, &ok, fn, name);
        if (!ok) type_error(fn, name, " must be ", what, ", got ", py::repr(obj).cast<std::string>());
      }
      return n == 1 ? Pair{v[0], v[0]} : Pair{v[0], v[1]};
    }
    value_error(fn, name, " must be ", what, ", got a sequence of length ", n);
  }
  type_error(fn, name, " must be ", what, ", got ", type_name(obj));
}

void check_pair_range(Pair p, index_t lo, const char* fn, const char* name) {
  if (p.h < lo || p.w < lo) value_error(fn, name, " must be >= ", lo, ", got ", pair_str(p));
  if (p.h > kMaxPoolArg || p.w > kMaxPoolArg) {
    value_error(fn, name, " ", pair_str(p), " is too large (each value must be < 2**31)");
  }
}

// (N, C, H, W) of a 4-D array or of a 3-D (C, H, W) one (N = 1).
struct Dims {
  index_t N, C, H, W;
  bool batched;
};

Dims dims_of(const py::array& a, const char* fn, const char* name) {
  if (a.ndim() != 4 && a.ndim() != 3) {
    value_error(fn, name, " has ", a.ndim(), " dims, expected 4 (N, C, H, W) or 3 (C, H, W)");
  }
  Dims d;
  d.batched = a.ndim() == 4;
  d.N = d.batched ? a.shape(0) : 1;
  d.C = a.shape(a.ndim() - 3);
  d.H = a.shape(a.ndim() - 2);
  d.W = a.shape(a.ndim() - 1);
  return d;
}

// x_shape argument of the backward passes: a sequence of 3 or 4 non-negative ints.
Dims dims_from_shape(py::handle obj, const char* fn) {
  if (!PyTuple_Check(obj.ptr()) && !PyList_Check(obj.ptr())) {
    type_error(fn, "x_shape must be a tuple of 4 ints (N, C, H, W) or 3 ints (C, H, W), got ", type_name(obj));
  }
  py::sequence seq = py::reinterpret_borrow<py::sequence>(obj);
  const size_t n = seq.size();
  if (n != 3 && n != 4) {
    value_error(fn, "x_shape has ", n, " entries, expected 4 (N, C, H, W) or 3 (C, H, W)");
  }
  index_t v[4] = {1, 0, 0, 0};
  for (size_t i = 0; i < n; ++i) {
    bool ok = false;
    const index_t val = int_value(seq[i], &ok, fn, "x_shape");
    if (!ok) type_error(fn, "x_shape must contain ints, got ", py::repr(obj).cast<std::string>());
    if (val < 0) value_error(fn, "x_shape must not contain negative sizes, got ", py::repr(obj).cast<std::string>());
    v[4 - n + i] = val;
  }
  return Dims{v[0], v[1], v[2], v[3], n == 4};
}

std::vector<index_t> shape_vec(const Dims& d, index_t h, index_t w) {
  if (d.batched) return {d.N, d.C, h, w};
  return {d.C, h, w};
}

void check_spatial(const Dims& d, const char* fn, const char* what) {
  if (d.H == 0 || d.W == 0) {
    value_error(fn, what, " has an empty spatial size (H, W) = (", d.H, ", ", d.W, "); pooling needs H, W >= 1");
  }
}

// planes = N*C and the element count of an (N, C, h, w) array, refusing absurd sizes.
index_t planes_of(const Dims& d, index_t oh, index_t ow, const char* fn) {
  index_t planes = 0, out_plane = 0, total = 0;
  if (__builtin_mul_overflow(d.N, d.C, &planes) || __builtin_mul_overflow(oh, ow, &out_plane) ||
      __builtin_mul_overflow(planes, out_plane, &total) || total > std::numeric_limits<index_t>::max() / 8) {
    value_error(fn, "the output (", d.N, ", ", d.C, ", ", oh, ", ", ow, ") would be too large");
  }
  return planes;
}

// Fixed-window pooling geometry with torch's rules (pool2d_shape_check / pooling_output_shape).
struct PoolArgs {
  Pair k, s, p, d;
  bool ceil_mode;
};

PoolArgs parse_pool_args(py::handle kernel_size, py::handle stride, py::handle padding, py::handle dilation,
                         bool ceil_mode, const char* fn) {
  PoolArgs a;
  a.k = pair_arg(kernel_size, fn, "kernel_size");
  check_pair_range(a.k, 1, fn, "kernel_size");
  bool default_stride = stride.is_none();
  if (!default_stride && (PyTuple_Check(stride.ptr()) || PyList_Check(stride.ptr())) && py::len(stride) == 0) {
    default_stride = true;  // torch: stride=() means kernel_size
  }
  a.s = default_stride ? a.k : pair_arg(stride, fn, "stride");
  check_pair_range(a.s, 1, fn, "stride");
  a.p = pair_arg(padding, fn, "padding");
  check_pair_range(a.p, 0, fn, "padding");
  a.d = pair_arg(dilation, fn, "dilation");
  check_pair_range(a.d, 1, fn, "dilation");
  if (a.p.h > a.k.h / 2 || a.p.w > a.k.w / 2) {
    value_error(fn, "padding ", pair_str(a.p), " must be at most half of kernel_size ", pair_str(a.k),
                " (padding <= kernel_size // 2, as torch requires)");
  }
  a.ceil_mode = ceil_mode;
  return a;
}

Pool2dShape pool_shape(const Dims& d, const PoolArgs& a, const char* fn, const char* what) {
  check_spatial(d, fn, what);
  Pool2dShape s;
  s.H = d.H;
  s.W = d.W;
  s.kH = a.k.h;
  s.kW = a.k.w;
  s.sH = a.s.h;
  s.sW = a.s.w;
  s.pH = a.p.h;
  s.pW = a.p.w;
  s.dH = a.d.h;
  s.dW = a.d.w;
  s.OH = pool_output_size(s.H, s.kH, s.sH, s.pH, s.dH, a.ceil_mode);
  s.OW = pool_output_size(s.W, s.kW, s.sW, s.pW, s.dW, a.ceil_mode);
  if (s.OH < 1 || s.OW < 1) {
    const bool dil = s.dH != 1 || s.dW != 1;
    value_error(fn, "kernel_size ", pair_str(a.k), dil ? cat(" with dilation ", pair_str(a.d)) : std::string(),
                " does not fit the ", what, " of spatial size (", s.H, ", ", s.W, ") with padding ",
                pair_str(a.p), ": the output would be (", s.OH, ", ", s.OW, "), it must be at least (1, 1)");
  }
  const index_t bad_h = pool_first_empty_window(s.H, s.OH, s.kH, s.sH, s.pH, s.dH);
  const index_t bad_w = pool_first_empty_window(s.W, s.OW, s.kW, s.sW, s.pW, s.dW);
  if (bad_h >= 0 || bad_w >= 0) {
    value_error(fn, "with kernel_size ", pair_str(a.k), ", dilation ", pair_str(a.d), " and padding ",
                pair_str(a.p), " the window of output ", bad_h >= 0 ? "row " : "column ", bad_h >= 0 ? bad_h : bad_w,
                " covers only padding (", what, " ", bad_h >= 0 ? "height " : "width ", bad_h >= 0 ? s.H : s.W, ")");
  }
  s.planes = planes_of(d, s.OH, s.OW, fn);
  return s;
}

// An int64 array the kernel writes (indices out=), never copied.
py::array_t<std::int64_t> index_output(py::handle out, const std::vector<index_t>& shape, const char* fn,
                                       const char* name) {
  if (out.is_none()) return py::array_t<std::int64_t>(std::vector<py::ssize_t>(shape.begin(), shape.end()));
  py::array a = require_ndarray(out, fn, name);
  if (!a.dtype().equal(py::dtype::of<std::int64_t>())) {  // also refuses byte-swapped int64
    type_error(fn, name, " has dtype ", dtype_str(a), ", expected native int64; in-place buffers are never converted");
  }
  if (!is_c_contiguous(a)) {
    value_error(fn, name, " must be C-contiguous (it has strides ", strides_str(a),
                "): it is written in place and is never copied");
  }
  if (!is_aligned(a)) value_error(fn, name, " is not aligned to its itemsize: it is written in place");
  if (!is_writeable(a)) value_error(fn, name, " is read-only (writeable=False): it is written in place");
  if (shape_of(a) != shape) value_error(fn, name, " has shape ", shape_str(a), ", expected ", shape_str(shape));
  return py::reinterpret_borrow<py::array_t<std::int64_t>>(a);
}

// ---------------------------------------------------------------------------------------------
// max_pool2d

template <class T>
py::tuple max_pool2d_impl(py::handle x_obj, const PoolArgs& a, py::handle out_obj, py::handle idx_obj,
                          const char* fn) {
  py::array_t<T> x = input<T>(x_obj, fn, "x");
  const Dims d = dims_of(x, fn, "x");
  const Pool2dShape s = pool_shape(d, a, fn, "input");
  const std::vector<index_t> yshape = shape_vec(d, s.OH, s.OW);
  py::array_t<T> y = output<T>(out_obj, yshape, fn, "out");
  py::array_t<std::int64_t> idx = index_output(idx_obj, yshape, fn, "indices_out");
  check_no_overlap(y, x, fn, "out", "x");
  check_no_overlap(idx, x, fn, "indices_out", "x");
  check_no_overlap(idx, y, fn, "indices_out", "out");
  const T* px = x.data();
  T* py_ = y.mutable_data();
  index_t* pi = idx.mutable_data();
  {
    py::gil_scoped_release nogil;
    max_pool2d_forward<T>(py_, pi, px, s);
  }
  return py::make_tuple(y, idx);
}

// Shared by max_pool2d_backward and adaptive_max_pool2d_backward.
template <class T>
py::array_t<T> max_backward_impl(py::handle dy_obj, py::handle idx_obj, py::handle x_shape, py::handle out_obj,
                                 const char* fn) {
  py::array_t<T> dy = input<T>(dy_obj, fn, "dy");
  const Dims xd = dims_from_shape(x_shape, fn);
  const Dims dd = dims_of(dy, fn, "dy");
  if (dd.batched != xd.batched) {
    value_error(fn, "dy has ", dy.ndim(), " dims but x_shape has ", xd.batched ? 4 : 3, " entries");
  }
  if (dd.N != xd.N || dd.C != xd.C) {
    value_error(fn, "dy has shape ", shape_str(dy), ", expected ", xd.batched ? cat("(", xd.N, ", ", xd.C, ", OH, OW)") : cat("(", xd.C, ", OH, OW)"),
                " to match x_shape ", py::repr(x_shape).cast<std::string>());
  }
  check_spatial(xd, fn, "x_shape");
  py::array_t<std::int64_t> idx = index_input(idx_obj, fn, "indices");
  check_same_shape(dy, idx, fn, "dy", "indices");
  const index_t planes = planes_of(xd, xd.H, xd.W, fn);
  py::array_t<T> dx = output<T>(out_obj, shape_vec(xd, xd.H, xd.W), fn, "out");
  check_no_overlap(dx, dy, fn, "out", "dy");
  check_no_overlap(dx, idx, fn, "out", "indices");
  const T* pdy = dy.data();
  const index_t* pidx = idx.data();
  T* pdx = dx.mutable_data();
  const index_t in_plane = xd.H * xd.W, out_plane = dd.H * dd.W;
  PoolIndexCheck check;
  {
    py::gil_scoped_release nogil;
    check = max_pool2d_backward<T>(pdx, pdy, pidx, planes, in_plane, out_plane);
  }
  if (check.bad_position >= 0) {
    // Name the offending element by its multi-index (dx holds partial results: discard it).
    std::string where = "[";
    index_t rem = check.bad_position;
    std::vector<index_t> ix(static_cast<size_t>(idx.ndim()));
    for (py::ssize_t i = idx.ndim() - 1; i >= 0; --i) {
      ix[static_cast<size_t>(i)] = rem % idx.shape(i);
      rem /= idx.shape(i);
    }
    for (size_t i = 0; i < ix.size(); ++i) where += cat(i ? ", " : "", ix[i]);
    where += "]";
    value_error(fn, "indices", where, " = ", pidx[check.bad_position],
                " is out of range for an input plane of H*W = ", in_plane, " elements (expected 0 <= index < ",
                in_plane, ")");
  }
  return dx;
}

// ---------------------------------------------------------------------------------------------
// avg_pool2d

index_t parse_divisor(py::handle divisor_override, const char* fn) {
  if (divisor_override.is_none()) return 0;
  bool ok = false;
  const index_t v = int_value(divisor_override, &ok, fn, "divisor_override");
  if (!ok) type_error(fn, "divisor_override must be an int or None, got ", type_name(divisor_override));
  if (v == 0) value_error(fn, "divisor_override must not be zero");
  if (v > kMaxPoolArg || v < -kMaxPoolArg) value_error(fn, "divisor_override ", v, " is too large (|value| must be < 2**31)");
  return v;
}

template <class T>
py::array_t<T> avg_pool2d_impl(py::handle x_obj, const PoolArgs& a, bool count_include_pad, index_t divisor,
                               py::handle out_obj, const char* fn) {
  py::array_t<T> x = input<T>(x_obj, fn, "x");
  const Dims d = dims_of(x, fn, "x");
  const Pool2dShape s = pool_shape(d, a, fn, "input");
  py::array_t<T> y = output<T>(out_obj, shape_vec(d, s.OH, s.OW), fn, "out");
  check_no_overlap(y, x, fn, "out", "x");
  const T* px = x.data();
  T* py_ = y.mutable_data();
  {
    py::gil_scoped_release nogil;
    avg_pool2d_forward<T>(py_, px, s, count_include_pad, divisor);
  }
  return y;
}

template <class T>
py::array_t<T> avg_pool2d_backward_impl(py::handle dy_obj, py::handle x_shape, const PoolArgs& a,
                                        bool count_include_pad, index_t divisor, py::handle out_obj,
                                        const char* fn) {
  py::array_t<T> dy = input<T>(dy_obj, fn, "dy");
  const Dims xd = dims_from_shape(x_shape, fn);
  const Pool2dShape s = pool_shape(xd, a, fn, "input");
  const std::vector<index_t> yshape = shape_vec(xd, s.OH, s.OW);
  check_shape(dy, yshape, fn, "dy", "(the avg_pool2d output shape for x_shape and these pooling arguments)");
  py::array_t<T> dx = output<T>(out_obj, shape_vec(xd, xd.H, xd.W), fn, "out");
  check_no_overlap(dx, dy, fn, "out", "dy");
  const T* pdy = dy.data();
  T* pdx = dx.mutable_data();
  {
    py::gil_scoped_release nogil;
    avg_pool2d_backward<T>(pdx, pdy, s, count_include_pad, divisor);
  }
  return dx;
}

// ---------------------------------------------------------------------------------------------
// adaptive pooling

Pair adaptive_output(py::handle output_size, const Dims& d, const char* fn) {
  Pair o = pair_arg(output_size, fn, "output_size", /*allow_none_items=*/true);
  // None (in a pair) keeps the input size, as torch.
  if (PyTuple_Check(output_size.ptr()) || PyList_Check(output_size.ptr())) {
    py::sequence seq = py::reinterpret_borrow<py::sequence>(output_size);
    if (seq.size() == 2) {
      if (py::handle(seq[0]).is_none()) o.h = d.H;
      if (py::handle(seq[1]).is_none()) o.w = d.W;
    } else if (py::handle(seq[0]).is_none()) {
      o = {d.H, d.W};
    }
  }
  if (o.h < 0 || o.w < 0) value_error(fn, "output_size must be >= 0, got ", pair_str(o));
  if (o.h > kMaxPoolArg || o.w > kMaxPoolArg) {
    value_error(fn, "output_size ", pair_str(o), " is too large (each value must be < 2**31)");
  }
  return o;
}

template <class T>
py::object adaptive_impl(py::handle x_obj, py::handle output_size, py::handle out_obj, py::handle idx_obj,
                         bool is_max, const char* fn) {
  py::array_t<T> x = input<T>(x_obj, fn, "x");
  const Dims d = dims_of(x, fn, "x");
  check_spatial(d, fn, "x");
  const Pair o = adaptive_output(output_size, d, fn);
  const index_t planes = planes_of(d, o.h, o.w, fn);
  const std::vector<index_t> yshape = shape_vec(d, o.h, o.w);
  py::array_t<T> y = output<T>(out_obj, yshape, fn, "out");
  check_no_overlap(y, x, fn, "out", "x");
  const T* px = x.data();
  T* py_ = y.mutable_data();
  if (!is_max) {
    {
      py::gil_scoped_release nogil;
      adaptive_avg_pool2d_forward<T>(py_, px, planes, d.H, d.W, o.h, o.w);
    }
    return y;
  }
  py::array_t<std::int64_t> idx = index_output(idx_obj, yshape, fn, "indices_out");
  check_no_overlap(idx, x, fn, "indices_out", "x");
  check_no_overlap(idx, y, fn, "indices_out", "out");
  index_t* pi = idx.mutable_data();
  {
    py::gil_scoped_release nogil;
    adaptive_max_pool2d_forward<T>(py_, pi, px, planes, d.H, d.W, o.h, o.w);
  }
  return py::make_tuple(y, idx);
}

template <class T>
py::array_t<T> adaptive_avg_backward_impl(py::handle dy_obj, py::handle x_shape, py::handle out_obj,
                                          const char* fn) {
  py::array_t<T> dy = input<T>(dy_obj, fn, "dy");
  const Dims xd = dims_from_shape(x_shape, fn);
  const Dims dd = dims_of(dy, fn, "dy");
  if (dd.batched != xd.batched) {
    value_error(fn, "dy has ", dy.ndim(), " dims but x_shape has ", xd.batched ? 4 : 3, " entries");
  }
  if (dd.N != xd.N || dd.C != xd.C) {
    value_error(fn, "dy has shape ", shape_str(dy), ", expected ", xd.batched ? cat("(", xd.N, ", ", xd.C, ", OH, OW)") : cat("(", xd.C, ", OH, OW)"),
                " to match x_shape ", py::repr(x_shape).cast<std::string>());
  }
  check_spatial(xd, fn, "x_shape");
  const index_t planes = planes_of(xd, xd.H, xd.W, fn);
  py::array_t<T> dx = output<T>(out_obj, shape_vec(xd, xd.H, xd.W), fn, "out");
  check_no_overlap(dx, dy, fn, "out", "dy");
  const T* pdy = dy.data();
  T* pdx = dx.mutable_data();
  {
    py::gil_scoped_release nogil;
    adaptive_avg_pool2d_backward<T>(pdx, pdy, planes, xd.H, xd.W, dd.H, dd.W);
  }
  return dx;
}

}  // namespace

void bind_pool(py::module_& m) {
  m.def("_pool_force_wide_indices", &pool_force_wide_indices, py::arg("on"),
        "Tests only: use the 64-bit index variants of the pooling kernels at any size.");
  m.def(
      "max_pool2d",
      [](py::object x, py::object kernel_size, py::object stride, py::object padding, py::object dilation,
         bool ceil_mode, py::object out, py::object indices_out) -> py::object {
        const char* fn = "max_pool2d";
        const PoolArgs a = parse_pool_args(kernel_size, stride, padding, dilation, ceil_mode, fn);
        return dispatch_float(x, fn, "x", [&](auto t) -> py::object {
          return max_pool2d_impl<decltype(t)>(x, a, out, indices_out, fn);
        });
      },
      py::arg("x"), py::arg("kernel_size"), py::arg("stride") = py::none(), py::arg("padding") = 0,
      py::arg("dilation") = 1, py::arg("ceil_mode") = false, py::kw_only(), py::arg("out") = py::none(),
      py::arg("indices_out") = py::none(),
      R"doc(2-D max pooling of x (N, C, H, W) or (C, H, W), float32/float64, as torch.nn.functional.max_pool2d.

Returns (y, indices): indices (int64, shaped like y) hold h*W + w of the chosen element within its
(n, c) plane; the first maximum in row-major window order wins ties, and a NaN in a window
propagates (the index of its last NaN is returned), as torch's CPU kernel does.
kernel_size, stride (default: kernel_size), padding and dilation are ints or (h, w) pairs;
padding <= kernel_size // 2; ceil_mode as torch (the last window must start inside the input or
the left padding). out= / indices_out= take preallocated C-contiguous buffers.)doc");

  m.def(
      "max_pool2d_backward",
      [](py::object dy, py::object indices, py::object x_shape, py::object out) -> py::object {
        const char* fn = "max_pool2d_backward";
        return dispatch_float(dy, fn, "dy", [&](auto t) -> py::object {
          return max_backward_impl<decltype(t)>(dy, indices, x_shape, out, fn);
        });
      },
      py::arg("dy"), py::arg("indices"), py::arg("x_shape"), py::kw_only(), py::arg("out") = py::none(),
      R"doc(Gradient of max_pool2d with respect to x: dx (x_shape) with dx[n, c].flat[indices] += dy.

Overlapping windows may send several gradients to one element; they are summed. Every index must
be in [0, H*W) (ValueError otherwise; nothing is written out of bounds).)doc");

  m.def(
      "avg_pool2d",
      [](py::object x, py::object kernel_size, py::object stride, py::object padding, bool ceil_mode,
         bool count_include_pad, py::object divisor_override, py::object out) -> py::object {
        const char* fn = "avg_pool2d";
        const PoolArgs a = parse_pool_args(kernel_size, stride, padding, py::int_(1), ceil_mode, fn);
        const index_t divisor = parse_divisor(divisor_override, fn);
        return dispatch_float(x, fn, "x", [&](auto t) -> py::object {
          return avg_pool2d_impl<decltype(t)>(x, a, count_include_pad, divisor, out, fn);
        });
      },
      py::arg("x"), py::arg("kernel_size"), py::arg("stride") = py::none(), py::arg("padding") = 0,
      py::arg("ceil_mode") = false, py::arg("count_include_pad") = true, py::arg("divisor_override") = py::none(),
      py::kw_only(), py::arg("out") = py::none(),
      R"doc(2-D average pooling of x (N, C, H, W) or (C, H, W), as torch.nn.functional.avg_pool2d.

The divisor of a window is its size clipped to the padded input (count_include_pad=True) or to the
input (False), or divisor_override when given, with torch's rules for ceil_mode windows.)doc");

  m.def(
      "avg_pool2d_backward",
      [](py::object dy, py::object x_shape, py::object kernel_size, py::object stride, py::object padding,
         bool ceil_mode, bool count_include_pad, py::object divisor_override, py::object out) -> py::object {
        const char* fn = "avg_pool2d_backward";
        const PoolArgs a = parse_pool_args(kernel_size, stride, padding, py::int_(1), ceil_mode, fn);
        const index_t divisor = parse_divisor(divisor_override, fn);
        return dispatch_float(dy, fn, "dy", [&](auto t) -> py::object {
          return avg_pool2d_backward_impl<decltype(t)>(dy, x_shape, a, count_include_pad, divisor, out, fn);
        });
      },
      py::arg("dy"), py::arg("x_shape"), py::arg("kernel_size"), py::arg("stride") = py::none(),
      py::arg("padding") = 0, py::arg("ceil_mode") = false, py::arg("count_include_pad") = true,
      py::arg("divisor_override") = py::none(), py::kw_only(), py::arg("out") = py::none(),
      R"doc(Gradient of avg_pool2d with respect to x (same pooling arguments as the forward call).)doc");

  m.def(
      "adaptive_avg_pool2d",
      [](py::object x, py::object output_size, py::object out) -> py::object {
        const char* fn = "adaptive_avg_pool2d";
        return dispatch_float(x, fn, "x", [&](auto t) -> py::object {
          return adaptive_impl<decltype(t)>(x, output_size, out, py::none(), false, fn);
        });
      },
      py::arg("x"), py::arg("output_size"), py::kw_only(), py::arg("out") = py::none(),
      R"doc(Adaptive average pooling to output_size (int, (h, w), None keeps that input size), as torch.

Window i along a dimension of size n cut into m is [floor(i*n/m), ceil((i+1)*n/m)).)doc");

  m.def(
      "adaptive_avg_pool2d_backward",
      [](py::object dy, py::object x_shape, py::object out) -> py::object {
        const char* fn = "adaptive_avg_pool2d_backward";
        return dispatch_float(dy, fn, "dy", [&](auto t) -> py::object {
          return adaptive_avg_backward_impl<decltype(t)>(dy, x_shape, out, fn);
        });
      },
      py::arg("dy"), py::arg("x_shape"), py::kw_only(), py::arg("out") = py::none(),
      R"doc(Gradient of adaptive_avg_pool2d with respect to x (the output size is dy's).)doc");

  m.def(
      "adaptive_max_pool2d",
      [](py::object x, py::object output_size, py::object out, py::object indices_out) -> py::object {
        const char* fn = "adaptive_max_pool2d";
        return dispatch_float(x, fn, "x", [&](auto t) -> py::object {
          return adaptive_impl<decltype(t)>(x, output_size, out, indices_out, true, fn);
        });
      },
      py::arg("x"), py::arg("output_size"), py::kw_only(), py::arg("out") = py::none(),
      py::arg("indices_out") = py::none(),
      R"doc(Adaptive max pooling to output_size, as torch; returns (y, indices) like max_pool2d.)doc");

  m.def(
      "adaptive_max_pool2d_backward",
      [](py::object dy, py::object indices, py::object x_shape, py::object out) -> py::object {
        const char* fn = "adaptive_max_pool2d_backward";
        return dispatch_float(dy, fn, "dy", [&](auto t) -> py::object {
          return max_backward_impl<decltype(t)>(dy, indices, x_shape, out, fn);
        });
      },
      py::arg("dy"), py::arg("indices"), py::arg("x_shape"), py::kw_only(), py::arg("out") = py::none(),
      R"doc(Gradient of adaptive_max_pool2d with respect to x (same rule as max_pool2d_backward).)doc");
}

}  // namespace bind
}  // namespace nnkern
