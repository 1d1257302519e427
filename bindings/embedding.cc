// Bindings for embedding lookup and its scatter-add gradient (registered from bind_norm).
#include <cstdint>
#include <limits>
#include <sstream>
#include <vector>

#include "arrays.h"
#include "norm_helpers.h"
#include "nnkern/embedding.h"

namespace nnkern {
namespace bind {
namespace {

// "indices[2, 5]" for flat position `pos` of an array of shape `shape`.
std::string position_str(const std::vector<index_t>& shape, index_t pos) {
  std::vector<index_t> at(shape.size());
  for (size_t k = shape.size(); k-- > 0;) {
    at[k] = shape[k] > 0 ? pos % shape[k] : 0;
    pos = shape[k] > 0 ? pos / shape[k] : 0;
  }
  std::ostringstream os;
  os << "indices[";
  for (size_t k = 0; k < at.size(); ++k) os << (k ? ", " : "") << at[k];
  os << "]";
  return os.str();
}

// Every index must be in [0, V): names the first offender and where it is.
void check_indices(const py::array_t<std::int64_t>& idx, index_t V, const char* fn) {
  const std::int64_t* p = idx.data();
  const index_t n = idx.size();
  for (index_t i = 0; i < n; ++i) {
    if (p[i] < 0 || p[i] >= V) {
      value_error(fn, position_str(shape_of(idx), i), " = ", p[i], " is out of range for num_embeddings=", V,
                  " (expected 0 <= index < ", V, ")");
    }
  }
}

// None -> -1; else an int in [-V, V), negative counting from the end (torch's rule).
index_t padding_arg(py::handle obj, index_t V, const char* fn) {
  if (obj.is_none()) return -1;
  if (py::isinstance<py::bool_>(obj) || !py::hasattr(obj, "__index__")) {
    type_error(fn, "padding_idx must be an int or None, got ", type_name(obj));
  }
  // Any Python int (or __index__ object) of any size: one beyond 64 bits is simply out of range
  // (a plain cast<long long> would raise pybind11's RuntimeError instead).
  py::object as_int = py::reinterpret_steal<py::object>(PyNumber_Index(obj.ptr()));
  if (!as_int) throw py::error_already_set();
  int overflow = 0;
  const long long p = PyLong_AsLongLongAndOverflow(as_int.ptr(), &overflow);
  if (overflow != 0 || p < -V || p >= V) {
    value_error(fn, "padding_idx=", py::str(as_int).cast<std::string>(),
                " must be in [-num_embeddings, num_embeddings) = [", -V, ", ", V, ")");
  }
  return p < 0 ? p + V : p;
}

template <class T>
py::array_t<T> embedding_impl(py::handle idx_obj, py::handle w_obj, py::handle pad_obj, py::handle out_obj) {
  const char* fn = "embedding";
  py::array_t<T> w = input<T>(w_obj, fn, "weight");
  check_ndim(w, 2, fn, "weight", "(num_embeddings, embedding_dim)");
  const index_t V = w.shape(0), D = w.shape(1);
  py::array_t<std::int64_t> idx = index_input(idx_obj, fn, "indices");
  padding_arg(pad_obj, V, fn);  // validated only: the lookup itself ignores padding_idx (as torch)
  check_indices(idx, V, fn);
  std::vector<index_t> yshape = shape_of(idx);
  yshape.push_back(D);
  Buffers bufs(fn);
  bufs.input(w, "weight");
  bufs.input(idx, "indices");
  py::array_t<T> y = output<T>(out_obj, yshape, fn);
  bufs.written(y, "out");
  bufs.check();
  const T* pw = w.data();
  const std::int64_t* pi = idx.data();
  T* py_ = y.mutable_data();
  const index_t M = idx.size();
  {
    py::gil_scoped_release nogil;
    embedding_forward<T>(py_, pw, pi, M, D);
  }
  return y;
}

template <class T>
py::array_t<T> embedding_backward_impl(py::handle dy_obj, py::handle idx_obj, long long V, py::handle pad_obj,
                                       py::handle out_obj, bool accumulate) {
  const char* fn = "embedding_backward";
  py::array_t<T> dy = input<T>(dy_obj, fn, "dy");
  py::array_t<std::int64_t> idx = index_input(idx_obj, fn, "indices");
  bool dy_ok = dy.ndim() == idx.ndim() + 1;
  for (py::ssize_t k = 0; dy_ok && k < idx.ndim(); ++k) dy_ok = dy.shape(k) == idx.shape(k);
  if (!dy_ok) {
    value_error(fn, "dy has shape ", shape_str(dy),
                ", expected indices.shape + (embedding_dim,) with indices of shape ", shape_str(idx));
  }
  const index_t D = dy.shape(dy.ndim() - 1);
  if (V < 0) value_error(fn, "num_embeddings must be >= 0, got ", V);
  if (D > 0 && V > std::numeric_limits<index_t>::max() / 8 / D) {
    value_error(fn, "num_embeddings=", V, " with embedding_dim=", D, " is too large");
  }
  const index_t pad = padding_arg(pad_obj, V, fn);
  check_indices(idx, V, fn);
  if (accumulate && out_obj.is_none()) value_error(fn, "accumulate=True needs out= (the gradient to add into)");
  Buffers bufs(fn);
  bufs.input(dy, "dy");
  bufs.input(idx, "indices");
  py::array_t<T> dw = output<T>(out_obj, {V, D}, fn);
  bufs.written(dw, "out");
  bufs.check();
  const T* pdy = dy.data();
  const std::int64_t* pi = idx.data();
  T* pdw = dw.mutable_data();
  const index_t M = idx.size();
  {
    py::gil_scoped_release nogil;
    embedding_backward<T>(pdw, pdy, pi, M, V, D, pad, accumulate);
  }
  return dw;
}

}  // namespace

void bind_embedding(py::module_& m) {
  m.def(
      "embedding",
      [](py::object indices, py::object weight, py::object padding_idx, py::object out) -> py::object {
        return dispatch_float(weight, "embedding", "weight", [&](auto t) -> py::object {
          using T = decltype(t);
          return embedding_impl<T>(indices, weight, padding_idx, out);
        });
      },
      py::arg("indices"), py::arg("weight"), py::arg("padding_idx") = py::none(), py::kw_only(),
      py::arg("out") = py::none(),
      R"doc(Embedding lookup: weight[indices], shape indices.shape + (embedding_dim,).

indices: an integer array of any shape (converted to int64), each in [0, num_embeddings); an
index out of range raises ValueError naming it and its position. padding_idx (None or an int in
[-num_embeddings, num_embeddings)) only matters for the gradient, as in torch.)doc");

  m.def(
      "embedding_backward",
      [](py::object dy, py::object indices, long long num_embeddings, py::object padding_idx, py::object out,
         bool accumulate) -> py::object {
        return dispatch_float(dy, "embedding_backward", "dy", [&](auto t) -> py::object {
          using T = decltype(t);
          return embedding_backward_impl<T>(dy, indices, num_embeddings, padding_idx, out, accumulate);
        });
      },
      py::arg("dy"), py::arg("indices"), py::arg("num_embeddings"), py::arg("padding_idx") = py::none(),
      py::kw_only(), py::arg("out") = py::none(), py::arg("accumulate") = false,
      R"doc(Gradient of embedding with respect to the weight: a scatter-add of dy's rows.

dweight[v] = sum of dy[pos] over the positions pos with indices[pos] == v, shape
(num_embeddings, embedding_dim); the row at padding_idx gets no gradient. With
accumulate=True the sums are added into out= (rows nobody looks up keep their values),
otherwise out= (or a fresh array) is overwritten. Every row is summed in the order of the
positions: bitwise identical for any thread count.)doc");
}

}  // namespace bind
}  // namespace nnkern
