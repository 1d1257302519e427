// The boundary between Python and the kernels: every argument is checked here, once, with an
// error that names the function, the argument, the value and the rule, e.g.
//   TypeError:  adam_step: m has dtype float64, expected float32 (the dtype of p)
//   ValueError: conv2d: x has 3 dims, expected 4 (N, C, H, W)
//
// Rules (DESIGN.md section 3 and 8):
//   * Inputs must be numpy arrays of the call's float dtype (float32 or float64, fixed by the first
//     float argument). Any memory layout is accepted: non-contiguous, unaligned or byte-swapped
//     *inputs* are copied to C order once (documented), since a copy of an input changes nothing.
//   * In-place buffers (parameters, gradients, optimizer state, out=) must already be C-contiguous,
//     aligned, writeable and of the exact dtype. They are never copied: a copy would be updated
//     instead of the caller's array.
//   * In-place buffers must not overlap other arguments (except an exact alias where a kernel
//     allows it, e.g. out=x for elementwise ops).
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <sstream>
#include <string>
#include <vector>

#include "nnkern/common.h"

namespace nnkern {
namespace bind {

namespace py = pybind11;
using nnkern::index_t;

// ---------------------------------------------------------------------------------------------
// Messages

// Message pieces print as they would in Python: floats by their repr (1.0, 1e-08, nan).
template <class T>
const T& msg_part(const T& v) {
  return v;
}
inline std::string msg_part(double v) { return py::repr(py::float_(v)).cast<std::string>(); }
inline std::string msg_part(float v) { return msg_part(static_cast<double>(v)); }
inline const char* msg_part(bool v) { return v ? "True" : "False"; }

template <class... Parts>
std::string cat(const Parts&... parts) {
  std::ostringstream os;
  (os << ... << msg_part(parts));
  return os.str();
}

template <class... Parts>
[[noreturn]] void type_error(const char* fn, const Parts&... parts) {
  throw py::type_error(cat(fn, ": ", parts...));
}

template <class... Parts>
[[noreturn]] void value_error(const char* fn, const Parts&... parts) {
  throw py::value_error(cat(fn, ": ", parts...));
}

inline std::string shape_str(const py::array& a) {
  std::ostringstream os;
  os << "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) {
    if (i) os << ", ";
    os << a.shape(i);
  }
  if (a.ndim() == 1) os << ",";
  os << ")";
  return os.str();
}

inline std::string shape_str(const std::vector<index_t>& s) {
  std::ostringstream os;
  os << "(";
  for (size_t i = 0; i < s.size(); ++i) {
    if (i) os << ", ";
    os << s[i];
  }
  if (s.size() == 1) os << ",";
  os << ")";
  return os.str();
}

inline std::string strides_str(const py::array& a) {
  std::ostringstream os;
  os << "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) os << (i ? ", " : "") << a.strides(i);
  if (a.ndim() == 1) os << ",";
  os << ")";
  return os.str();
}

inline std::string dtype_str(const py::array& a) { return py::str(a.dtype()).cast<std::string>(); }

inline std::string type_name(py::handle obj) {
  return py::str(py::type::handle_of(obj).attr("__name__")).cast<std::string>();
}

template <class T>
const char* dtype_name() {
  return sizeof(T) == 4 ? "float32" : "float64";
}

// ---------------------------------------------------------------------------------------------
// Array kinds

// `obj` must be a numpy.ndarray (or subclass).
inline py::array require_ndarray(py::handle obj, const char* fn, const char* name) {
  if (!py::isinstance<py::array>(obj)) {
    type_error(fn, name, " must be a numpy.ndarray, got ", type_name(obj));
  }
  return py::reinterpret_borrow<py::array>(obj);
}

// Which float type a call computes in: float32 or float64, from its first float argument.
enum class FloatKind { f32, f64 };

// Byte order does not matter here: a byte-swapped input is converted by input<T>(), and a
// byte-swapped in-place buffer is refused by inplace<T>() with its own message.
inline FloatKind float_kind(py::handle obj, const char* fn, const char* name) {
  py::array a = require_ndarray(obj, fn, name);
  if (a.dtype().is(py::dtype::of<float>())) return FloatKind::f32;
  if (a.dtype().is(py::dtype::of<double>())) return FloatKind::f64;
  if (a.dtype().kind() == 'f' && a.dtype().itemsize() == 4) return FloatKind::f32;
  if (a.dtype().kind() == 'f' && a.dtype().itemsize() == 8) return FloatKind::f64;
  type_error(fn, name, " has dtype ", dtype_str(a), ", expected float32 or float64");
}

// Calls f(float{}) or f(double{}) depending on the dtype of `obj`.
template <class F>
auto dispatch_float(py::handle obj, const char* fn, const char* name, F&& f) {
  if (float_kind(obj, fn, name) == FloatKind::f32) return f(float{});
  return f(double{});
}

template <class T>
bool has_dtype(const py::array& a) {
  return a.dtype().equal(py::dtype::of<T>());
}

// T's values in any byte order (float32 or float64, native or byte-swapped).
template <class T>
bool has_float_type(const py::array& a) {
  return a.dtype().kind() == 'f' && a.dtype().itemsize() == static_cast<py::ssize_t>(sizeof(T));
}

inline bool is_c_contiguous(const py::array& a) {
  return (a.flags() & py::array::c_style) != 0;
}

inline bool is_aligned(const py::array& a) {
  return (a.flags() & py::detail::npy_api::NPY_ARRAY_ALIGNED_) != 0;
}

inline bool is_writeable(const py::array& a) {
  return (a.flags() & py::detail::npy_api::NPY_ARRAY_WRITEABLE_) != 0;
}

// A read-only input of dtype T (`dtype_from` names the argument that fixed the dtype).
// Copied to an aligned C-contiguous array only if it is not one already.
template <class T>
py::array_t<T> input(py::handle obj, const char* fn, const char* name,
                     const char* dtype_from = nullptr) {
  py::array a = require_ndarray(obj, fn, name);
  if (!has_float_type<T>(a)) {
    if (dtype_from != nullptr) {
      type_error(fn, name, " has dtype ", dtype_str(a), ", expected ", dtype_name<T>(), " (the dtype of ",
                 dtype_from, ")");
    }
    type_error(fn, name, " has dtype ", dtype_str(a), ", expected ", dtype_name<T>());
  }
  if (is_c_contiguous(a) && is_aligned(a) && a.dtype().is(py::dtype::of<T>())) {
    return py::reinterpret_borrow<py::array_t<T>>(a);
  }
  // Non-contiguous, unaligned or non-native byte order: one copy into a fresh C-ordered array.
  return py::array_t<T, py::array::c_style | py::array::forcecast>::ensure(a);
}

// A read-only int64 input (class targets, indices). Other integer dtypes are converted; floats,
// bools and objects are refused.
inline py::array_t<std::int64_t> index_input(py::handle obj, const char* fn, const char* name) {
  py::array a = require_ndarray(obj, fn, name);
  const char kind = a.dtype().kind();
  if (kind != 'i' && kind != 'u') {
    type_error(fn, name, " has dtype ", dtype_str(a), ", expected an integer dtype (int64)");
  }
  if (has_dtype<std::int64_t>(a) && is_c_contiguous(a) && is_aligned(a) &&
      a.dtype().is(py::dtype::of<std::int64_t>())) {
    return py::reinterpret_borrow<py::array_t<std::int64_t>>(a);
  }
  return py::array_t<std::int64_t, py::array::c_style | py::array::forcecast>::ensure(a);
}

// An array the kernel writes into (parameter, gradient, optimizer state, out=). Never copied.
template <class T>
py::array_t<T> inplace(py::handle obj, const char* fn, const char* name,
                       const char* dtype_from = nullptr) {
  py::array a = require_ndarray(obj, fn, name);
  if (!has_dtype<T>(a) || !a.dtype().is(py::dtype::of<T>())) {
    // Same kind and size but not equal: a byte-swapped (non-native) float array.
    if (!has_dtype<T>(a) && a.dtype().kind() == 'f' && a.dtype().itemsize() == sizeof(T)) {
      type_error(fn, name, " has a non-native dtype ", dtype_str(a), "; in-place buffers must be native ",
                 dtype_name<T>(), " (they are never copied)");
    }
    if (dtype_from != nullptr) {
      type_error(fn, name, " has dtype ", dtype_str(a), ", expected ", dtype_name<T>(), " (the dtype of ",
                 dtype_from, "); in-place buffers are never converted");
    }
    type_error(fn, name, " has dtype ", dtype_str(a), ", expected ", dtype_name<T>(),
               "; in-place buffers are never converted");
  }
  if (!is_c_contiguous(a)) {
    value_error(fn, name, " must be C-contiguous (it has strides ", strides_str(a),
                "): it is written in place and is never copied");
  }
  if (!is_aligned(a)) {
    value_error(fn, name, " is not aligned to its itemsize: it is written in place and is never copied");
  }
  if (!is_writeable(a)) {
    value_error(fn, name, " is read-only (writeable=False): it is written in place");
  }
  return py::reinterpret_borrow<py::array_t<T>>(a);
}

// `out` if given (checked like an in-place buffer, with the expected shape), else a fresh array.
template <class T>
py::array_t<T> output(py::handle out, const std::vector<index_t>& shape, const char* fn,
                      const char* name = "out") {
  if (out.is_none()) {
    std::vector<py::ssize_t> s(shape.begin(), shape.end());
    return py::array_t<T>(s);
  }
  py::array_t<T> a = inplace<T>(out, fn, name);
  bool same = a.ndim() == static_cast<py::ssize_t>(shape.size());
  for (size_t i = 0; same && i < shape.size(); ++i) same = a.shape(i) == shape[i];
  if (!same) {
    value_error(fn, name, " has shape ", shape_str(a), ", expected ", shape_str(shape));
  }
  return a;
}

// ---------------------------------------------------------------------------------------------
// Shapes

inline std::vector<index_t> shape_of(const py::array& a) {
  std::vector<index_t> s(static_cast<size_t>(a.ndim()));
  for (py::ssize_t i = 0; i < a.ndim(); ++i) s[static_cast<size_t>(i)] = a.shape(i);
  return s;
}

// "conv2d: x has 3 dims, expected 4 (N, C, H, W)"
inline void check_ndim(const py::array& a, py::ssize_t ndim, const char* fn, const char* name,
                       const char* dims = nullptr) {
  if (a.ndim() != ndim) {
    if (dims != nullptr) value_error(fn, name, " has ", a.ndim(), " dims, expected ", ndim, " ", dims);
    value_error(fn, name, " has ", a.ndim(), " dims, expected ", ndim);
  }
}

inline void check_shape(const py::array& a, const std::vector<index_t>& expected, const char* fn,
                        const char* name, const char* why = nullptr) {
  if (shape_of(a) != expected) {
    if (why != nullptr) value_error(fn, name, " has shape ", shape_str(a), ", expected ", shape_str(expected), " ", why);
    value_error(fn, name, " has shape ", shape_str(a), ", expected ", shape_str(expected));
  }
}

inline void check_same_shape(const py::array& a, const py::array& b, const char* fn, const char* name_a,
                             const char* name_b) {
  if (shape_of(a) != shape_of(b)) {
    value_error(fn, name_b, " has shape ", shape_str(b), ", expected ", shape_str(a), " (the shape of ",
                name_a, ")");
  }
}

// ---------------------------------------------------------------------------------------------
// Memory overlap between C-contiguous buffers.

inline bool overlaps(const py::array& a, const py::array& b) {
  if (a.nbytes() == 0 || b.nbytes() == 0) return false;
  const auto a0 = reinterpret_cast<std::uintptr_t>(a.data());
  const auto b0 = reinterpret_cast<std::uintptr_t>(b.data());
  return a0 < b0 + static_cast<std::uintptr_t>(b.nbytes()) &&
         b0 < a0 + static_cast<std::uintptr_t>(a.nbytes());
}

inline bool same_buffer(const py::array& a, const py::array& b) {
  return a.data() == b.data() && a.nbytes() == b.nbytes();
}

// In-place buffer `a` must not share memory with `b`; with allow_alias an exact alias is fine.
inline void check_no_overlap(const py::array& a, const py::array& b, const char* fn, const char* name_a,
                             const char* name_b, bool allow_alias = false) {
  if (!overlaps(a, b)) return;
  if (allow_alias && same_buffer(a, b)) return;
  if (allow_alias) {
    value_error(fn, name_a, " partially overlaps ", name_b, " (only the exact same array is allowed)");
  }
  value_error(fn, name_a, " shares memory with ", name_b, " (in-place buffers must not overlap other arguments)");
}

// ---------------------------------------------------------------------------------------------
// Scalars

inline void check_finite(double v, const char* fn, const char* name) {
  if (!std::isfinite(v)) value_error(fn, name, " must be finite, got ", v);
}

inline void check_nonneg(double v, const char* fn, const char* name) {
  if (!(v >= 0.0) || !std::isfinite(v)) value_error(fn, name, " must be a finite number >= 0, got ", v);
}

inline void check_positive(double v, const char* fn, const char* name) {
  if (!(v > 0.0) || !std::isfinite(v)) value_error(fn, name, " must be a finite number > 0, got ", v);
}

inline void check_range(double v, double lo, double hi, const char* fn, const char* name,
                        bool hi_inclusive = false) {
  const bool ok = v >= lo && (hi_inclusive ? v <= hi : v < hi);
  if (!ok) {
    value_error(fn, name, " must be in [", lo, ", ", hi, hi_inclusive ? "]" : ")", ", got ", v);
  }
}

// ---------------------------------------------------------------------------------------------
// Families register their functions from their own binding file (bindings/<family>.cc).

void bind_core(py::module_& m);
void bind_gemm(py::module_& m);
void bind_optim(py::module_& m);
void bind_act(py::module_& m);
void bind_loss(py::module_& m);
void bind_conv(py::module_& m);
void bind_pool(py::module_& m);
void bind_rnn(py::module_& m);
void bind_norm(py::module_& m);

}  // namespace bind
}  // namespace nnkern
