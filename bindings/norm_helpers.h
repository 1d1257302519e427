// Validation helpers shared by the norm-family bindings (norm.cc, embedding.cc, augment.cc) that
// bindings/arrays.h does not have yet: optional (C,) inputs, bool masks, seeds, and an overlap
// check over all buffers of a call.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "arrays.h"

namespace nnkern {
namespace bind {

// A null array handle, for absent optional arrays (`if (a)` is false).
template <class T>
py::array_t<T> absent_array() {
  return py::reinterpret_steal<py::array_t<T>>(py::handle());
}

// None -> absent; otherwise a read-only input of dtype T with the given shape.
template <class T>
py::array_t<T> optional_input(py::handle obj, const std::vector<index_t>& shape, const char* fn,
                              const char* name, const char* dtype_from, const char* why) {
  if (obj.is_none()) return absent_array<T>();
  py::array_t<T> a = input<T>(obj, fn, name, dtype_from);
  check_shape(a, shape, fn, name, why);
  return a;
}

// A real number (int or float; not bool or str).
inline double number_arg(py::handle obj, const char* fn, const char* name) {
  if (py::isinstance<py::bool_>(obj) ||
      !(py::isinstance<py::float_>(obj) || py::isinstance<py::int_>(obj) || py::hasattr(obj, "__float__"))) {
    type_error(fn, name, " must be a number, got ", type_name(obj));
  }
  return obj.cast<double>();
}

// An integer in [0, 2**64).
inline std::uint64_t seed_arg(py::handle obj, const char* fn, const char* name) {
  if (py::isinstance<py::bool_>(obj) || !py::hasattr(obj, "__index__")) {
    type_error(fn, name, " must be an int, got ", type_name(obj));
  }
  py::int_ v = py::reinterpret_steal<py::int_>(PyNumber_Index(obj.ptr()));
  if (!v) throw py::error_already_set();
  const py::int_ lo(0);
  const py::int_ hi = py::reinterpret_steal<py::int_>(PyLong_FromUnsignedLongLong(~0ULL));
  if (v < lo || v > hi) {
    value_error(fn, name, " must be in [0, 2**64), got ", py::repr(v).cast<std::string>());
  }
  return v.cast<std::uint64_t>();
}

inline bool is_mask_dtype(const py::array& a) {
  return a.dtype().equal(py::dtype("bool")) || a.dtype().equal(py::dtype::of<std::uint8_t>());
}

// A mask the kernel writes: a fresh bool array, or `obj` (bool or uint8, C-contiguous, writeable).
inline py::array mask_output(py::handle obj, const std::vector<index_t>& shape, const char* fn,
                             const char* name) {
  if (obj.is_none()) {
    std::vector<py::ssize_t> s(shape.begin(), shape.end());
    return py::array(py::dtype("bool"), s);
  }
  py::array a = require_ndarray(obj, fn, name);
  if (!is_mask_dtype(a)) type_error(fn, name, " has dtype ", dtype_str(a), ", expected bool or uint8");
  if (!is_c_contiguous(a)) {
    value_error(fn, name, " must be C-contiguous (it has strides ", strides_str(a),
                "): it is written in place and is never copied");
  }
  if (!is_writeable(a)) value_error(fn, name, " is read-only (writeable=False): it is written in place");
  if (shape_of(a) != shape) value_error(fn, name, " has shape ", shape_str(a), ", expected ", shape_str(shape));
  return a;
}

// A mask the kernel reads: bool or uint8 of any layout (copied to C order if needed).
inline py::array mask_input(py::handle obj, const char* fn, const char* name) {
  py::array a = require_ndarray(obj, fn, name);
  if (!is_mask_dtype(a)) type_error(fn, name, " has dtype ", dtype_str(a), ", expected bool or uint8");
  if (is_c_contiguous(a)) return a;
  return py::module_::import("numpy").attr("ascontiguousarray")(a);
}

// Every buffer a call writes must not share memory with any other argument, except the exact
// aliases it allows (e.g. out=x for elementwise kernels).
class Buffers {
 public:
  explicit Buffers(const char* fn) : fn_(fn) {}
  void input(const py::array& a, const char* name) { all_.push_back({a, name, false, {}}); }
  void written(const py::array& a, const char* name, const char* alias1 = nullptr,
               const char* alias2 = nullptr) {
    Entry e{a, name, true, {}};
    if (alias1 != nullptr) e.aliases.push_back(alias1);
    if (alias2 != nullptr) e.aliases.push_back(alias2);
    all_.push_back(e);
  }
  void check() const {
    for (size_t i = 0; i < all_.size(); ++i) {
      if (!all_[i].written) continue;
      for (size_t j = 0; j < all_.size(); ++j) {
        if (i == j) continue;
        const Entry& w = all_[i];
        const Entry& o = all_[j];
        if (o.written && j < i) continue;  // pairs of written buffers are checked once
        bool allowed = false;
        for (const std::string& al : w.aliases) allowed = allowed || al == o.name;
        check_no_overlap(w.a, o.a, fn_, w.name.c_str(), o.name.c_str(), allowed);
      }
    }
  }

 private:
  struct Entry {
    py::array a;
    std::string name;
    bool written;
    std::vector<std::string> aliases;
  };
  const char* fn_;
  std::vector<Entry> all_;
};

}  // namespace bind
}  // namespace nnkern
