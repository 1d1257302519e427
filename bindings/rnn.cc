// Bindings for the recurrent kernels (csrc/nnkern/rnn.h): the public cells (lstm_cell, gru_cell,
// rnn_cell and their backward passes) and the private whole-sequence drivers the layers in
// nnkern.nn (and nnkern.ops.rnn's *_sequence wrappers) call, one call per layer and direction.
//
// Cells are called from users' Python loops, so their argument checks take a fast path for the
// common case (C-contiguous, aligned, native float32/float64 arrays: a few pointer reads each)
// and fall back to the general helpers of arrays.h, which copy unusual inputs or raise the
// documented error.
#include <algorithm>
#include <chrono>
#include <cstring>
#include <string>
#include <vector>

#include "arrays.h"
#include "nnkern/rnn.h"
#include "nnkern/rnn_gemm.h"

namespace nnkern {
namespace bind {
namespace {

namespace npd = py::detail;

template <class T>
constexpr int npy_type_num() {
  return sizeof(T) == 4 ? npd::npy_api::NPY_FLOAT_ : npd::npy_api::NPY_DOUBLE_;
}

constexpr int kFastInFlags = npd::npy_api::NPY_ARRAY_C_CONTIGUOUS_ | npd::npy_api::NPY_ARRAY_ALIGNED_;
constexpr int kFastOutFlags = kFastInFlags | npd::npy_api::NPY_ARRAY_WRITEABLE_;

// True if `o` is a numpy array of exactly T, native byte order, with all `flags` set.
template <class T>
inline bool fast_ok(PyObject* o, int flags) {
  if (!npd::npy_api::get().PyArray_Check_(o)) return false;
  const auto* a = npd::array_proxy(o);
  const auto* d = npd::array_descriptor_proxy(a->descr);
  return d->type_num == npy_type_num<T>() && d->byteorder != '>' && (a->flags & flags) == flags;
}

// A float array argument as the kernels see it (plus the object that keeps a converted copy).
template <class T>
struct Arr {
  py::object hold;
  T* p = nullptr;
  int nd = 0;
  const py::ssize_t* dims = nullptr;
  index_t size = 0;
  bool present() const { return p != nullptr || hold; }
  index_t dim(int i) const { return dims[i]; }
  std::size_t nbytes() const { return static_cast<std::size_t>(size) * sizeof(T); }
};

template <class T>
Arr<T> from_array(py::handle a_obj, py::object hold) {
  Arr<T> r;
  const auto* a = npd::array_proxy(a_obj.ptr());
  r.p = reinterpret_cast<T*>(a->data);
  r.nd = a->nd;
  r.dims = a->dimensions;
  r.size = 1;
  for (int i = 0; i < r.nd; ++i) r.size *= r.dims[i];
  r.hold = std::move(hold);
  return r;
}

// Read-only input (copied to C order if it is not already; wrong dtypes raise).
template <class T>
Arr<T> in_arr(py::handle obj, const char* fn, const char* name, const char* dtype_from) {
  if (fast_ok<T>(obj.ptr(), kFastInFlags)) return from_array<T>(obj, py::object());
  py::array_t<T> a = input<T>(obj, fn, name, dtype_from);
  return from_array<T>(a, a);
}

// Optional input: None gives an absent Arr.
template <class T>
Arr<T> opt_in(py::handle obj, const char* fn, const char* name, const char* dtype_from) {
  if (obj.is_none()) return Arr<T>{};
  return in_arr<T>(obj, fn, name, dtype_from);
}

// In-place buffer (never copied) with an exact expected shape.
template <class T>
Arr<T> inplace_arr(py::handle obj, const std::vector<index_t>& shape, const char* fn, const char* name) {
  if (fast_ok<T>(obj.ptr(), kFastOutFlags)) {
    Arr<T> r = from_array<T>(obj, py::object());
    bool same = r.nd == static_cast<int>(shape.size());
    for (size_t i = 0; same && i < shape.size(); ++i) same = r.dims[i] == shape[i];
    if (same) return r;
  }
  py::array_t<T> a = output<T>(obj, shape, fn, name);  // raises with the rule that was broken
  return from_array<T>(a, py::object());
}

// Output: `obj` (checked as an in-place buffer) or a fresh array.
template <class T>
Arr<T> out_arr(py::handle obj, const std::vector<index_t>& shape, const char* fn, const char* name) {
  if (!obj.is_none()) return inplace_arr<T>(obj, shape, fn, name);
  std::vector<py::ssize_t> s(shape.begin(), shape.end());
  py::array_t<T> a(s);
  return from_array<T>(a, a);
}

template <class T>
py::object obj_of(const Arr<T>& a, py::handle given) {
  return a.hold ? a.hold : py::reinterpret_borrow<py::object>(given);
}

std::string dims_str(std::initializer_list<index_t> s) { return shape_str(std::vector<index_t>(s)); }

template <class T>
std::string arr_shape(const Arr<T>& a) {
  std::vector<index_t> s(a.dims, a.dims + a.nd);
  return shape_str(s);
}

template <class T>
void expect_ndim(const Arr<T>& a, int nd, const char* fn, const char* name, const char* dims) {
  if (a.nd != nd) value_error(fn, name, " has ", a.nd, " dims, expected ", nd, " ", dims);
}

template <class T>
void expect_shape(const Arr<T>& a, std::initializer_list<index_t> want, const char* fn, const char* name,
                  const std::string& why) {
  bool ok = a.nd == static_cast<int>(want.size());
  int i = 0;
  for (index_t v : want) {
    if (!ok) break;
    ok = a.dims[i++] == v;
  }
  if (!ok) value_error(fn, name, " has shape ", arr_shape(a), ", expected ", dims_str(want), " ", why);
}

// Outputs must not share memory with any other argument.
struct Span {
  const char* name;
  const char* lo;
  const char* hi;
};

template <class T>
Span span(const char* name, const Arr<T>& a) {
  const char* p = reinterpret_cast<const char*>(a.p);
  return Span{name, p, p + (a.p ? a.nbytes() : 0)};
}

void check_disjoint(const char* fn, std::initializer_list<Span> outs, std::initializer_list<Span> all) {
  for (const Span& o : outs) {
    if (o.lo == o.hi) continue;
    for (const Span& s : all) {
      if (s.lo == s.hi || std::strcmp(s.name, o.name) == 0) continue;
      if (o.lo < s.hi && s.lo < o.hi) {
        value_error(fn, o.name, " shares memory with ", s.name, " (outputs must not overlap other arguments)");
      }
    }
  }
}

// Gate-packed weights: w_hh (G*H, H) fixes H; w_ih must be (G*H, F); biases (G*H,).
template <class T>
index_t check_weights(const Arr<T>& w_ih, const Arr<T>& w_hh, const Arr<T>& b_ih, const Arr<T>& b_hh, index_t G,
                      index_t F, const char* fn, const char* gates, const char* expect_H_from = nullptr,
                      index_t expect_H = -1) {
  expect_ndim(w_hh, 2, fn, "w_hh", "(gates*hidden_size, hidden_size)");
  const index_t H = w_hh.dim(1);
  if (H < 1) value_error(fn, "w_hh has shape ", arr_shape(w_hh), ": hidden_size (its second dim) must be >= 1");
  if (expect_H >= 0 && H != expect_H) {
    value_error(fn, "w_hh has shape ", arr_shape(w_hh), ", expected hidden_size ", expect_H, " (the hidden size of ",
                expect_H_from, ")");
  }
  const std::string packing = std::string("(") + std::to_string(G) + "*hidden_size, hidden_size) for gates " + gates;
  expect_shape(w_hh, {G * H, H}, fn, "w_hh", packing);
  expect_ndim(w_ih, 2, fn, "w_ih", "(gates*hidden_size, input_size)");
  expect_shape(w_ih, {G * H, F}, fn, "w_ih",
               std::string("(") + std::to_string(G) + "*hidden_size, input_size) for gates " + gates);
  if (b_ih.present()) expect_shape(b_ih, {G * H}, fn, "b_ih", std::string("(") + std::to_string(G) + "*hidden_size,)");
  if (b_hh.present()) expect_shape(b_hh, {G * H}, fn, "b_hh", std::string("(") + std::to_string(G) + "*hidden_size,)");
  return H;
}

bool str_is(py::handle obj, const char* s) {
  return PyUnicode_Check(obj.ptr()) && PyUnicode_CompareWithASCIIString(obj.ptr(), s) == 0;
}

bool parse_variant(py::handle v, const char* fn) {
  if (str_is(v, "torch")) return false;
  if (str_is(v, "cho2014")) return true;
  value_error(fn, "variant must be 'torch' or 'cho2014', got ", py::repr(v).cast<std::string>());
}

bool parse_nonlinearity(py::handle v, const char* fn) {
  if (str_is(v, "tanh")) return false;
  if (str_is(v, "relu")) return true;
  value_error(fn, "nonlinearity must be 'tanh' or 'relu', got ", py::repr(v).cast<std::string>());
}

// out=(a, b, ...) tuple of optional buffers.
py::handle out_item(py::handle out, size_t i, size_t n, const char* fn) {
  if (out.is_none()) return py::none().release();
  if (!PyTuple_Check(out.ptr()) && !PyList_Check(out.ptr())) {
    type_error(fn, "out must be None or a tuple of ", n, " arrays (or None), got ", type_name(out));
  }
  py::sequence seq = py::reinterpret_borrow<py::sequence>(out);
  if (seq.size() != n) value_error(fn, "out must have ", n, " entries, got ", seq.size());
  return seq[i].ptr();
}

template <class T>
GradOut<T> grad_out(const Arr<T>& a, bool acc) {
  return GradOut<T>{a.p, acc};
}

// ---------------------------------------------------------------------------------------------
// Cells

template <class T>
py::tuple lstm_cell_impl(py::handle x, py::handle h0, py::handle c0, py::handle w_ih, py::handle w_hh,
                         py::handle b_ih, py::handle b_hh, py::handle out) {
  const char* fn = "lstm_cell";
  Arr<T> X = in_arr<T>(x, fn, "x", nullptr);
  expect_ndim(X, 2, fn, "x", "(batch, input_size)");
  const index_t N = X.dim(0), F = X.dim(1);
  Arr<T> Wih = in_arr<T>(w_ih, fn, "w_ih", "x"), Whh = in_arr<T>(w_hh, fn, "w_hh", "x");
  Arr<T> Bih = opt_in<T>(b_ih, fn, "b_ih", "x"), Bhh = opt_in<T>(b_hh, fn, "b_hh", "x");
  const index_t H = check_weights(Wih, Whh, Bih, Bhh, 4, F, fn, "i, f, g, o");
  Arr<T> H0 = opt_in<T>(h0, fn, "h0", "x"), C0 = opt_in<T>(c0, fn, "c0", "x");
  if (H0.present()) expect_shape(H0, {N, H}, fn, "h0", "(batch, hidden_size)");
  if (C0.present()) expect_shape(C0, {N, H}, fn, "c0", "(batch, hidden_size)");
  py::handle o_h = out_item(out, 0, 3, fn), o_c = out_item(out, 1, 3, fn), o_ws = out_item(out, 2, 3, fn);
  Arr<T> H1 = out_arr<T>(o_h, {N, H}, fn, "out[0] (h1)");
  Arr<T> C1 = out_arr<T>(o_c, {N, H}, fn, "out[1] (c1)");
  Arr<T> WS = out_arr<T>(o_ws, {N, 5 * H}, fn, "out[2] (ws)");
  check_disjoint(fn, {span("h1", H1), span("c1", C1), span("ws", WS)},
                 {span("x", X), span("h0", H0), span("c0", C0), span("w_ih", Wih), span("w_hh", Whh),
                  span("b_ih", Bih), span("b_hh", Bhh), span("h1", H1), span("c1", C1), span("ws", WS)});
  {
    py::gil_scoped_release nogil;
    lstm_cell_forward<T>(H1.p, C1.p, WS.p, X.p, H0.p, C0.p, Wih.p, Whh.p, Bih.p, Bhh.p, N, F, H);
  }
  return py::make_tuple(obj_of(H1, o_h), obj_of(C1, o_c), obj_of(WS, o_ws));
}

template <class T>
py::tuple lstm_cell_backward_impl(py::handle dh1, py::handle dc1, py::handle ws, py::handle x, py::handle h0,
                                  py::handle c0, py::handle w_ih, py::handle w_hh, py::handle gdw_ih,
                                  py::handle gdw_hh, py::handle gdb_ih, py::handle gdb_hh, bool accumulate) {
  const char* fn = "lstm_cell_backward";
  Arr<T> WS = in_arr<T>(ws, fn, "ws", nullptr);
  Arr<T> X = in_arr<T>(x, fn, "x", "ws");
  expect_ndim(X, 2, fn, "x", "(batch, input_size)");
  const index_t N = X.dim(0), F = X.dim(1);
  Arr<T> Wih = in_arr<T>(w_ih, fn, "w_ih", "ws"), Whh = in_arr<T>(w_hh, fn, "w_hh", "ws");
  const index_t H = check_weights(Wih, Whh, Arr<T>{}, Arr<T>{}, 4, F, fn, "i, f, g, o");
  expect_shape(WS, {N, 5 * H}, fn, "ws", "(batch, 5*hidden_size) as lstm_cell returned it");
  Arr<T> DH1 = opt_in<T>(dh1, fn, "dh1", "ws"), DC1 = opt_in<T>(dc1, fn, "dc1", "ws");
  Arr<T> H0 = opt_in<T>(h0, fn, "h0", "ws"), C0 = opt_in<T>(c0, fn, "c0", "ws");
  if (DH1.present()) expect_shape(DH1, {N, H}, fn, "dh1", "(batch, hidden_size)");
  if (DC1.present()) expect_shape(DC1, {N, H}, fn, "dc1", "(batch, hidden_size)");
  if (H0.present()) expect_shape(H0, {N, H}, fn, "h0", "(batch, hidden_size)");
  if (C0.present()) expect_shape(C0, {N, H}, fn, "c0", "(batch, hidden_size)");
  Arr<T> DX = out_arr<T>(py::none(), {N, F}, fn, "dx");
  Arr<T> DH0 = out_arr<T>(py::none(), {N, H}, fn, "dh0");
  Arr<T> DC0 = out_arr<T>(py::none(), {N, H}, fn, "dc0");
  Arr<T> DWih = out_arr<T>(gdw_ih, {4 * H, F}, fn, "dw_ih");
  Arr<T> DWhh = out_arr<T>(gdw_hh, {4 * H, H}, fn, "dw_hh");
  Arr<T> DBih = out_arr<T>(gdb_ih, {4 * H}, fn, "db_ih");
  Arr<T> DBhh = out_arr<T>(gdb_hh, {4 * H}, fn, "db_hh");
  check_disjoint(fn, {span("dw_ih", DWih), span("dw_hh", DWhh), span("db_ih", DBih), span("db_hh", DBhh)},
                 {span("ws", WS), span("x", X), span("h0", H0), span("c0", C0), span("w_ih", Wih),
                  span("w_hh", Whh), span("dh1", DH1), span("dc1", DC1), span("dw_ih", DWih),
                  span("dw_hh", DWhh), span("db_ih", DBih), span("db_hh", DBhh)});
  const bool acc_wi = accumulate && !gdw_ih.is_none(), acc_wh = accumulate && !gdw_hh.is_none();
  const bool acc_bi = accumulate && !gdb_ih.is_none(), acc_bh = accumulate && !gdb_hh.is_none();
  {
    py::gil_scoped_release nogil;
    lstm_cell_backward<T>(DX.p, DH0.p, DC0.p, grad_out(DWih, acc_wi), grad_out(DWhh, acc_wh),
                          grad_out(DBih, acc_bi), grad_out(DBhh, acc_bh), DH1.p, DC1.p, WS.p, X.p, H0.p, C0.p,
                          Wih.p, Whh.p, N, F, H);
  }
  return py::make_tuple(DX.hold, DH0.hold, DC0.hold, obj_of(DWih, gdw_ih), obj_of(DWhh, gdw_hh),
                        obj_of(DBih, gdb_ih), obj_of(DBhh, gdb_hh));
}

// GRU and vanilla RNN cells share one shape: (h1, ws) forward; six gradients backward.
enum class CellKind { gru, rnn };

template <class T>
py::tuple gr_cell_impl(CellKind kind, py::handle x, py::handle h0, py::handle w_ih, py::handle w_hh,
                       py::handle b_ih, py::handle b_hh, py::handle opt, py::handle out) {
  const bool gru = kind == CellKind::gru;
  const char* fn = gru ? "gru_cell" : "rnn_cell";
  const index_t G = gru ? 3 : 1;
  const bool flag = gru ? parse_variant(opt, fn) : parse_nonlinearity(opt, fn);
  Arr<T> X = in_arr<T>(x, fn, "x", nullptr);
  expect_ndim(X, 2, fn, "x", "(batch, input_size)");
  const index_t N = X.dim(0), F = X.dim(1);
  Arr<T> Wih = in_arr<T>(w_ih, fn, "w_ih", "x"), Whh = in_arr<T>(w_hh, fn, "w_hh", "x");
  Arr<T> Bih = opt_in<T>(b_ih, fn, "b_ih", "x"), Bhh = opt_in<T>(b_hh, fn, "b_hh", "x");
  const index_t H = check_weights(Wih, Whh, Bih, Bhh, G, F, fn, gru ? "r, z, n" : "(one gate)");
  Arr<T> H0 = opt_in<T>(h0, fn, "h0", "x");
  if (H0.present()) expect_shape(H0, {N, H}, fn, "h0", "(batch, hidden_size)");
  py::handle o_h = out_item(out, 0, 2, fn), o_ws = out_item(out, 1, 2, fn);
  Arr<T> H1 = out_arr<T>(o_h, {N, H}, fn, "out[0] (h1)");
  Arr<T> WS = out_arr<T>(o_ws, {N, gru ? 4 * H : H}, fn, "out[1] (ws)");
  check_disjoint(fn, {span("h1", H1), span("ws", WS)},
                 {span("x", X), span("h0", H0), span("w_ih", Wih), span("w_hh", Whh), span("b_ih", Bih),
                  span("b_hh", Bhh), span("h1", H1), span("ws", WS)});
  {
    py::gil_scoped_release nogil;
    if (gru) {
      gru_cell_forward<T>(H1.p, WS.p, X.p, H0.p, Wih.p, Whh.p, Bih.p, Bhh.p, N, F, H, flag);
    } else {
      rnn_cell_forward<T>(H1.p, WS.p, X.p, H0.p, Wih.p, Whh.p, Bih.p, Bhh.p, N, F, H, flag);
    }
  }
  return py::make_tuple(obj_of(H1, o_h), obj_of(WS, o_ws));
}

template <class T>
py::tuple gr_cell_backward_impl(CellKind kind, py::handle dh1, py::handle ws, py::handle x, py::handle h0,
                                py::handle w_ih, py::handle w_hh, py::handle opt, py::handle gdw_ih,
                                py::handle gdw_hh, py::handle gdb_ih, py::handle gdb_hh, bool accumulate) {
  const bool gru = kind == CellKind::gru;
  const char* fn = gru ? "gru_cell_backward" : "rnn_cell_backward";
  const index_t G = gru ? 3 : 1;
  const bool flag = gru ? parse_variant(opt, fn) : parse_nonlinearity(opt, fn);
  Arr<T> WS = in_arr<T>(ws, fn, "ws", nullptr);
  Arr<T> X = in_arr<T>(x, fn, "x", "ws");
  expect_ndim(X, 2, fn, "x", "(batch, input_size)");
  const index_t N = X.dim(0), F = X.dim(1);
  Arr<T> Wih = in_arr<T>(w_ih, fn, "w_ih", "ws"), Whh = in_arr<T>(w_hh, fn, "w_hh", "ws");
  const index_t H = check_weights(Wih, Whh, Arr<T>{}, Arr<T>{}, G, F, fn, gru ? "r, z, n" : "(one gate)");
  expect_shape(WS, {N, gru ? 4 * H : H}, fn, "ws",
               gru ? "(batch, 4*hidden_size) as gru_cell returned it" : "(batch, hidden_size) as rnn_cell returned it");
  Arr<T> DH1 = opt_in<T>(dh1, fn, "dh1", "ws"), H0 = opt_in<T>(h0, fn, "h0", "ws");
  if (DH1.present()) expect_shape(DH1, {N, H}, fn, "dh1", "(batch, hidden_size)");
  if (H0.present()) expect_shape(H0, {N, H}, fn, "h0", "(batch, hidden_size)");
  Arr<T> DX = out_arr<T>(py::none(), {N, F}, fn, "dx");
  Arr<T> DH0 = out_arr<T>(py::none(), {N, H}, fn, "dh0");
  Arr<T> DWih = out_arr<T>(gdw_ih, {G * H, F}, fn, "dw_ih");
  Arr<T> DWhh = out_arr<T>(gdw_hh, {G * H, H}, fn, "dw_hh");
  Arr<T> DBih = out_arr<T>(gdb_ih, {G * H}, fn, "db_ih");
  Arr<T> DBhh = out_arr<T>(gdb_hh, {G * H}, fn, "db_hh");
  check_disjoint(fn, {span("dw_ih", DWih), span("dw_hh", DWhh), span("db_ih", DBih), span("db_hh", DBhh)},
                 {span("ws", WS), span("x", X), span("h0", H0), span("w_ih", Wih), span("w_hh", Whh),
                  span("dh1", DH1), span("dw_ih", DWih), span("dw_hh", DWhh), span("db_ih", DBih),
                  span("db_hh", DBhh)});
  const bool acc_wi = accumulate && !gdw_ih.is_none(), acc_wh = accumulate && !gdw_hh.is_none();
  const bool acc_bi = accumulate && !gdb_ih.is_none(), acc_bh = accumulate && !gdb_hh.is_none();
  {
    py::gil_scoped_release nogil;
    if (gru) {
      gru_cell_backward<T>(DX.p, DH0.p, grad_out(DWih, acc_wi), grad_out(DWhh, acc_wh), grad_out(DBih, acc_bi),
                           grad_out(DBhh, acc_bh), DH1.p, WS.p, X.p, H0.p, Wih.p, Whh.p, N, F, H, flag);
    } else {
      rnn_cell_backward<T>(DX.p, DH0.p, grad_out(DWih, acc_wi), grad_out(DWhh, acc_wh), grad_out(DBih, acc_bi),
                           grad_out(DBhh, acc_bh), DH1.p, WS.p, X.p, H0.p, Wih.p, Whh.p, N, F, H, flag);
    }
  }
  return py::make_tuple(DX.hold, DH0.hold, obj_of(DWih, gdw_ih), obj_of(DWhh, gdw_hh), obj_of(DBih, gdb_ih),
                        obj_of(DBhh, gdb_hh));
}

// ---------------------------------------------------------------------------------------------
// Sequences (private: nnkern.nn layers and nnkern.ops.rnn wrappers call these)

enum class SeqKind { lstm, gru, rnn };

const char* seq_name(SeqKind k, bool backward) {
  switch (k) {
    case SeqKind::lstm: return backward ? "lstm_sequence_backward" : "lstm_sequence";
    case SeqKind::gru: return backward ? "gru_sequence_backward" : "gru_sequence";
    default: return backward ? "rnn_sequence_backward" : "rnn_sequence";
  }
}

index_t seq_gates(SeqKind k) { return k == SeqKind::lstm ? 4 : (k == SeqKind::gru ? 3 : 1); }

std::int64_t seq_magic(SeqKind k) {
  return k == SeqKind::lstm ? kWsMagicLstm : (k == SeqKind::gru ? kWsMagicGru : kWsMagicRnn);
}

template <class T>
index_t seq_ws_size(SeqKind k, const SeqDims& d) {
  switch (k) {
    case SeqKind::lstm: return lstm_seq_ws_size<T>(d);
    case SeqKind::gru: return gru_seq_ws_size<T>(d);
    default: return rnn_seq_ws_size<T>(d);
  }
}

// Sizes whose products could overflow 64-bit arithmetic are refused up front.
void check_seq_sizes(const char* fn, index_t T, index_t N, index_t F, index_t H, index_t G) {
  const index_t lim = index_t(1) << 31;
  if (T >= lim || N >= lim || F >= lim || H >= lim || static_cast<double>(T) * N * (G + 4) * H > 4.0e18 ||
      static_cast<double>(G) * H * (F + H) > 4.0e18) {
    value_error(fn, "sizes T=", T, ", N=", N, ", input_size=", F, ", hidden_size=", H, " are too large");
  }
}

template <class T>
void seq_forward_impl(SeqKind kind, py::handle x, py::handle h0, py::handle c0, py::handle w_ih, py::handle w_hh,
                      py::handle b_ih, py::handle b_hh, py::handle lengths, bool reverse, bool batch_first,
                      int variant, py::handle y, index_t y_col, py::handle h_n, py::handle c_n, py::handle ws) {
  const char* fn = seq_name(kind, false);
  const index_t G = seq_gates(kind);
  Arr<T> X = in_arr<T>(x, fn, "x", nullptr);
  expect_ndim(X, 3, fn, "x", batch_first ? "(batch, seq_len, input_size)" : "(seq_len, batch, input_size)");
  const index_t Tn = batch_first ? X.dim(1) : X.dim(0), N = batch_first ? X.dim(0) : X.dim(1), F = X.dim(2);
  Arr<T> Wih = in_arr<T>(w_ih, fn, "w_ih", "x"), Whh = in_arr<T>(w_hh, fn, "w_hh", "x");
  Arr<T> Bih = opt_in<T>(b_ih, fn, "b_ih", "x"), Bhh = opt_in<T>(b_hh, fn, "b_hh", "x");
  const char* gates = kind == SeqKind::lstm ? "i, f, g, o" : (kind == SeqKind::gru ? "r, z, n" : "(one gate)");
  const index_t H = check_weights(Wih, Whh, Bih, Bhh, G, F, fn, gates);
  check_seq_sizes(fn, Tn, N, F, H, G);
  Arr<T> H0 = opt_in<T>(h0, fn, "h0", "x"), C0;
  if (H0.present()) expect_shape(H0, {N, H}, fn, "h0", "(batch, hidden_size)");
  if (kind == SeqKind::lstm) {
    C0 = opt_in<T>(c0, fn, "c0", "x");
    if (C0.present()) expect_shape(C0, {N, H}, fn, "c0", "(batch, hidden_size)");
  }
  py::array_t<std::int64_t> L;
  const std::int64_t* lp = nullptr;
  if (!lengths.is_none()) {
    L = index_input(lengths, fn, "lengths");
    if (L.ndim() != 1 || L.shape(0) != N) {
      value_error(fn, "lengths has shape ", shape_str(L), ", expected (", N, ",) (one length per batch element)");
    }
    lp = L.data();
    for (index_t n = 0; n < N; ++n) {
      if (lp[n] < 0 || lp[n] > Tn) {
        value_error(fn, "lengths[", n, "] = ", lp[n], " is out of range: lengths must be in [0, seq_len=", Tn, "]");
      }
    }
  }
  // y: rows like x, this direction's H columns start at y_col.
  py::array ya = require_ndarray(y, fn, "y");
  if (ya.ndim() != 3 || ya.shape(0) != X.dim(0) || ya.shape(1) != X.dim(1)) {
    value_error(fn, "y has shape ", shape_str(ya), ", expected (", X.dim(0), ", ", X.dim(1),
                ", >= hidden_size) like x in its first two dims");
  }
  const index_t ldy = ya.shape(2);
  if (y_col < 0 || y_col + H > ldy) {
    value_error(fn, "y_col=", y_col, " with hidden_size ", H, " does not fit y's last dim ", ldy);
  }
  Arr<T> Y = inplace_arr<T>(y, shape_of(ya), fn, "y");
  Arr<T> HN = inplace_arr<T>(h_n, {N, H}, fn, "h_n"), CN;
  if (kind == SeqKind::lstm) CN = inplace_arr<T>(c_n, {N, H}, fn, "c_n");
  SeqDims d;
  d.T = Tn;
  d.N = N;
  d.F = F;
  d.H = H;
  d.batch_first = batch_first;
  d.reverse = reverse;
  d.variant = variant;
  const index_t wsn = seq_ws_size<T>(kind, d);
  Arr<T> WS = inplace_arr<T>(ws, {wsn}, fn, "ws");
  if (reinterpret_cast<std::uintptr_t>(WS.p) % 8 != 0) value_error(fn, "ws must be 8-byte aligned");
  check_disjoint(fn, {span("y", Y), span("h_n", HN), span("c_n", CN), span("ws", WS)},
                 {span("x", X), span("h0", H0), span("c0", C0), span("w_ih", Wih), span("w_hh", Whh),
                  span("b_ih", Bih), span("b_hh", Bhh), span("y", Y), span("h_n", HN), span("c_n", CN),
                  span("ws", WS)});
  {
    py::gil_scoped_release nogil;
    switch (kind) {
      case SeqKind::lstm:
        lstm_seq_forward<T>(Y.p + y_col, ldy, HN.p, CN.p, WS.p, X.p, H0.p, C0.p, Wih.p, Whh.p, Bih.p, Bhh.p, lp, d);
        break;
      case SeqKind::gru:
        gru_seq_forward<T>(Y.p + y_col, ldy, HN.p, WS.p, X.p, H0.p, Wih.p, Whh.p, Bih.p, Bhh.p, lp, d);
        break;
      default:
        rnn_seq_forward<T>(Y.p + y_col, ldy, HN.p, WS.p, X.p, H0.p, Wih.p, Whh.p, Bih.p, Bhh.p, lp, d);
        break;
    }
  }
}

template <class T>
void seq_backward_impl(SeqKind kind, py::handle ws, py::handle x, py::handle dy, index_t dy_col, py::handle dh_n,
                       py::handle dc_n, py::handle dx, bool dx_accumulate, py::handle dh0, py::handle dc0,
                       py::handle grads, py::handle accumulate, bool dy_exact) {
  const char* fn = seq_name(kind, true);
  const index_t G = seq_gates(kind);
  py::array wsa = require_ndarray(ws, fn, "ws");
  if (wsa.ndim() != 1) value_error(fn, "ws has ", wsa.ndim(), " dims, expected 1 (a workspace from the forward call)");
  Arr<T> WS = inplace_arr<T>(ws, {static_cast<index_t>(wsa.shape(0))}, fn, "ws");
  if (WS.size * static_cast<index_t>(sizeof(T)) < 64 || reinterpret_cast<std::uintptr_t>(WS.p) % 8 != 0) {
    value_error(fn, "ws is not a workspace written by ", seq_name(kind, false));
  }
  WsHeader hdr;
  std::memcpy(&hdr, WS.p, sizeof(hdr));
  if (hdr.magic != seq_magic(kind) || hdr.itemsize != static_cast<std::int64_t>(sizeof(T))) {
    value_error(fn, "ws is not a workspace written by ", seq_name(kind, false), " with dtype ", dtype_name<T>());
  }
  if (hdr.complete == 2) {
    value_error(fn, "ws was already used by a backward pass (it overwrites the saved gates); run the forward "
                "again before another backward");
  }
  if (hdr.complete != 1 || hdr.T < 0 || hdr.N < 0 || hdr.F < 0 || hdr.H < 1) {
    value_error(fn, "ws does not hold a completed forward pass");
  }
  SeqDims d;
  d.T = hdr.T;
  d.N = hdr.N;
  d.F = hdr.F;
  d.H = hdr.H;
  d.batch_first = (hdr.flags & kFlagBatchFirst) != 0;
  d.reverse = (hdr.flags & kFlagReverse) != 0;
  d.variant = (hdr.flags & kFlagVariant) != 0 ? 1 : 0;
  check_seq_sizes(fn, d.T, d.N, d.F, d.H, G);
  if (seq_ws_size<T>(kind, d) != WS.size) value_error(fn, "ws has ", WS.size, " elements, which does not match its header");
  const index_t Tn = d.T, N = d.N, F = d.F, H = d.H;
  const index_t d0 = d.batch_first ? N : Tn, d1 = d.batch_first ? Tn : N;
  const std::string xshape = d.batch_first ? "(batch, seq_len, input_size) of the forward call"
                                           : "(seq_len, batch, input_size) of the forward call";
  Arr<T> X = in_arr<T>(x, fn, "x", "ws");
  expect_shape(X, {d0, d1, F}, fn, "x", xshape);
  Arr<T> DY;
  index_t lddy = 0;
  if (!dy.is_none()) {
    DY = in_arr<T>(dy, fn, "dy", "ws");
    if (DY.nd != 3 || DY.dim(0) != d0 || DY.dim(1) != d1) {
      value_error(fn, "dy has shape ", arr_shape(DY), ", expected (", d0, ", ", d1, ", >= hidden_size) like the output");
    }
    lddy = DY.dim(2);
    // One direction's dy is (.., .., H); a bidirectional layer passes its whole (.., .., 2H) output
    // gradient and picks its half with dy_col (0 or H). Any other width is a caller's mistake.
    if (dy_exact ? lddy != H : (lddy != H && lddy != 2 * H)) {
      value_error(fn, "dy has shape ", arr_shape(DY), ", expected (", d0, ", ", d1, ", ", H,
                  dy_exact ? ") like the output (last dim = hidden_size)"
                           : ") like the output (last dim = hidden_size, or 2 * hidden_size when bidirectional)");
    }
    if (dy_col < 0 || dy_col + H > lddy || dy_col % H != 0) {
      value_error(fn, "dy_col=", dy_col, " with hidden_size ", H, " does not fit dy's last dim ", lddy);
    }
  }
  Arr<T> DHN = opt_in<T>(dh_n, fn, "dh_n", "ws"), DCN;
  if (DHN.present()) expect_shape(DHN, {N, H}, fn, "dh_n", "(batch, hidden_size)");
  if (kind == SeqKind::lstm) {
    DCN = opt_in<T>(dc_n, fn, "dc_n", "ws");
    if (DCN.present()) expect_shape(DCN, {N, H}, fn, "dc_n", "(batch, hidden_size)");
  }
  Arr<T> DX;
  if (!dx.is_none()) DX = inplace_arr<T>(dx, {d0, d1, F}, fn, "dx");
  Arr<T> DH0 = inplace_arr<T>(dh0, {N, H}, fn, "dh0"), DC0;
  if (kind == SeqKind::lstm) DC0 = inplace_arr<T>(dc0, {N, H}, fn, "dc0");
  // grads: (dw_ih, dw_hh, db_ih, db_hh), each an array or None; accumulate: 4 bools.
  if (!PyTuple_Check(grads.ptr()) || PyTuple_GET_SIZE(grads.ptr()) != 4) {
    type_error(fn, "grads must be a tuple of 4 arrays or None (dw_ih, dw_hh, db_ih, db_hh)");
  }
  if (!PyTuple_Check(accumulate.ptr()) || PyTuple_GET_SIZE(accumulate.ptr()) != 4) {
    type_error(fn, "accumulate must be a tuple of 4 bools");
  }
  py::tuple gt = py::reinterpret_borrow<py::tuple>(grads), at = py::reinterpret_borrow<py::tuple>(accumulate);
  const char* gnames[4] = {"grads[0] (dw_ih)", "grads[1] (dw_hh)", "grads[2] (db_ih)", "grads[3] (db_hh)"};
  const std::vector<index_t> gshapes[4] = {{G * H, F}, {G * H, H}, {G * H}, {G * H}};
  Arr<T> GR[4];
  GradOut<T> go[4];
  for (int i = 0; i < 4; ++i) {
    if (!gt[i].is_none()) GR[i] = inplace_arr<T>(gt[i], gshapes[i], fn, gnames[i]);
    go[i] = GradOut<T>{GR[i].p, at[i].cast<bool>()};
  }
  check_disjoint(fn, {span("dx", DX), span("dh0", DH0), span("dc0", DC0), span("grads[0]", GR[0]),
                      span("grads[1]", GR[1]), span("grads[2]", GR[2]), span("grads[3]", GR[3])},
                 {span("ws", WS), span("x", X), span("dy", DY), span("dh_n", DHN), span("dc_n", DCN), span("dx", DX),
                  span("dh0", DH0), span("dc0", DC0), span("grads[0]", GR[0]), span("grads[1]", GR[1]),
                  span("grads[2]", GR[2]), span("grads[3]", GR[3])});
  const T* dyp = DY.p != nullptr ? DY.p + dy_col : nullptr;
  {
    py::gil_scoped_release nogil;
    switch (kind) {
      case SeqKind::lstm:
        lstm_seq_backward<T>(DX.p, dx_accumulate, DH0.p, DC0.p, go[0], go[1], go[2], go[3], dyp, lddy, DHN.p, DCN.p,
                             WS.p, X.p);
        break;
      case SeqKind::gru:
        gru_seq_backward<T>(DX.p, dx_accumulate, DH0.p, go[0], go[1], go[2], go[3], dyp, lddy, DHN.p, WS.p, X.p);
        break;
      default:
        rnn_seq_backward<T>(DX.p, dx_accumulate, DH0.p, go[0], go[1], go[2], go[3], dyp, lddy, DHN.p, WS.p, X.p);
        break;
    }
  }
}

SeqKind parse_kind(const std::string& k) {
  if (k == "lstm") return SeqKind::lstm;
  if (k == "gru") return SeqKind::gru;
  if (k == "rnn") return SeqKind::rnn;
  value_error("rnn sequence", "kind must be 'lstm', 'gru' or 'rnn', got '", k, "'");
}


// ---------------------------------------------------------------------------------------------
// Cells: raw METH_FASTCALL entry points.
//
// Users call cells from their own Python loops, so a call must cost little beyond the maths
// (target: < 2 us at batch 1, hidden 64). pybind11's generic dispatch (keyword matching, dtype
// objects, per-argument casts) costs several microseconds, so the cells are plain CPython
// functions: a fast path accepts the common case (C-contiguous aligned native arrays of the right
// dtype and exact shapes; pointer reads only) and anything else goes to the general
// implementations above, which copy unusual inputs or raise the documented errors.

struct ArgSpec {
  const char* name;
  bool required;
  PyObject* interned = nullptr;  // filled once: keyword names at call sites are interned too
};

// Python-style binding of (args, nargs, kwnames) to `n` parameters, the first `npos` of which may
// be given positionally. out[i] is a borrowed reference or nullptr (absent).
bool parse_args(const char* fn, ArgSpec* spec, int n, int npos, PyObject* const* args, Py_ssize_t nargs,
                PyObject* kwnames, PyObject** out) {
  for (int i = 0; i < n; ++i) out[i] = nullptr;
  if (nargs > npos) {
    PyErr_Format(PyExc_TypeError, "%s() takes at most %d positional arguments (%zd given)", fn, npos, nargs);
    return false;
  }
  for (Py_ssize_t i = 0; i < nargs; ++i) out[i] = args[i];
  const Py_ssize_t nkw = kwnames != nullptr ? PyTuple_GET_SIZE(kwnames) : 0;
  for (Py_ssize_t k = 0; k < nkw; ++k) {
    PyObject* key = PyTuple_GET_ITEM(kwnames, k);
    int found = -1;
    for (int i = 0; i < n && found < 0; ++i) {
      if (spec[i].interned == nullptr) spec[i].interned = PyUnicode_InternFromString(spec[i].name);
      if (key == spec[i].interned) found = i;  // the usual case: one pointer compare
    }
    for (int i = 0; i < n && found < 0; ++i) {
      if (PyUnicode_CompareWithASCIIString(key, spec[i].name) == 0) found = i;
    }
    if (found < 0) {
      PyErr_Format(PyExc_TypeError, "%s() got an unexpected keyword argument '%U'", fn, key);
      return false;
    }
    if (out[found] != nullptr) {
      PyErr_Format(PyExc_TypeError, "%s() got multiple values for argument '%s'", fn, spec[found].name);
      return false;
    }
    out[found] = args[nargs + k];
  }
  for (int i = 0; i < n; ++i) {
    if (spec[i].required && out[i] == nullptr) {
      PyErr_Format(PyExc_TypeError, "%s() missing required argument '%s'", fn, spec[i].name);
      return false;
    }
  }
  return true;
}

inline bool absent(PyObject* o) { return o == nullptr || o == Py_None; }
inline py::handle hnd(PyObject* o) { return o != nullptr ? py::handle(o) : py::handle(Py_None); }

// Runs a general implementation, turning C++/pybind11 exceptions into a Python error.
template <class F>
PyObject* guarded(F&& f) {
  try {
    return f().release().ptr();
  } catch (py::error_already_set& e) {
    e.restore();
  } catch (py::builtin_exception& e) {
    e.set_error();
  } catch (std::bad_alloc&) {
    PyErr_NoMemory();
  } catch (std::exception& e) {
    PyErr_SetString(PyExc_RuntimeError, e.what());
  }
  return nullptr;
}

// 0 = float32, 1 = float64, -1 = anything else (the general path reports it).
inline int fast_dtype(PyObject* o) {
  if (o == nullptr || !npd::npy_api::get().PyArray_Check_(o)) return -1;
  const auto* d = npd::array_descriptor_proxy(npd::array_proxy(o)->descr);
  if (d->byteorder == '>') return -1;
  if (d->type_num == npd::npy_api::NPY_FLOAT_) return 0;
  if (d->type_num == npd::npy_api::NPY_DOUBLE_) return 1;
  return -1;
}

// A fast-path array: a data pointer and its byte range, or "not fast" (ok = false).
struct FastArr {
  char* p = nullptr;
  std::size_t nbytes = 0;
  bool ok = false;
};

// `o` as a fast array of T with exactly dims d0[, d1]: C-contiguous, aligned, native (and
// writeable for outputs). nd = 1 or 2.
template <class T>
inline FastArr fast_arr(PyObject* o, int nd, index_t d0, index_t d1, bool writeable) {
  FastArr r;
  if (!fast_ok<T>(o, writeable ? kFastOutFlags : kFastInFlags)) return r;
  const auto* a = npd::array_proxy(o);
  if (a->nd != nd || a->dimensions[0] != d0 || (nd == 2 && a->dimensions[1] != d1)) return r;
  r.p = a->data;
  r.nbytes = static_cast<std::size_t>(d0 * (nd == 2 ? d1 : 1)) * sizeof(T);
  r.ok = true;
  return r;
}

// Optional input: absent is fine (p = null, ok = true).
template <class T>
inline FastArr fast_opt(PyObject* o, int nd, index_t d0, index_t d1) {
  if (absent(o)) {
    FastArr r;
    r.ok = true;
    return r;
  }
  return fast_arr<T>(o, nd, d0, d1, false);
}

inline bool byte_overlap(const FastArr& a, const FastArr& b) {
  return a.nbytes && b.nbytes && a.p < b.p + b.nbytes && b.p < a.p + a.nbytes;
}

// A fresh C-ordered numpy array of T (new reference), or null with MemoryError set.
template <class T>
PyObject* new_array(index_t d0, index_t d1, int nd) {
  auto& api = npd::npy_api::get();
  Py_intptr_t dims[2] = {static_cast<Py_intptr_t>(d0), static_cast<Py_intptr_t>(d1)};
  return api.PyArray_NewFromDescr_(api.PyArray_Type_, api.PyArray_DescrFromType_(npy_type_num<T>()), nd, dims,
                                   nullptr, nullptr, 0, nullptr);
}

template <class T>
inline T* data_of(PyObject* o) {
  return reinterpret_cast<T*>(npd::array_proxy(o)->data);
}

// Output slot: the caller's buffer (checked, new reference taken) or a fresh array.
struct OutSlot {
  PyObject* obj = nullptr;  // new reference
  FastArr arr;
};

template <class T>
bool fast_out(PyObject* given, int nd, index_t d0, index_t d1, OutSlot* slot) {
  if (absent(given)) {
    slot->obj = new_array<T>(d0, d1, nd);
    if (slot->obj == nullptr) return false;
    slot->arr.p = npd::array_proxy(slot->obj)->data;
    slot->arr.nbytes = 0;  // fresh: overlaps nothing
    slot->arr.ok = true;
    return true;
  }
  slot->arr = fast_arr<T>(given, nd, d0, d1, true);
  if (!slot->arr.ok) return false;
  Py_INCREF(given);
  slot->obj = given;
  return true;
}

inline void release_slots(OutSlot* s, int n) {
  for (int i = 0; i < n; ++i) Py_XDECREF(s[i].obj);
}

// Items of an out= tuple (absent entries stay null); false if `out` is not a fast-path tuple.
inline bool out_items(PyObject* out, int n, PyObject** items) {
  for (int i = 0; i < n; ++i) items[i] = nullptr;
  if (absent(out)) return true;
  if (!PyTuple_Check(out) || PyTuple_GET_SIZE(out) != n) return false;
  for (int i = 0; i < n; ++i) items[i] = PyTuple_GET_ITEM(out, i);
  return true;
}

// Does any given (non-fresh) output overlap any input or another output?
inline bool any_overlap(const OutSlot* outs, int nout, const FastArr* ins, int nin) {
  for (int i = 0; i < nout; ++i) {
    for (int j = 0; j < nin; ++j) {
      if (byte_overlap(outs[i].arr, ins[j])) return true;
    }
    for (int j = 0; j < nout; ++j) {
      if (j != i && byte_overlap(outs[i].arr, outs[j].arr)) return true;
    }
  }
  return false;
}

// Option strings: 0/1, or -1 (general path reports the error). Absent = default (0).
inline int fast_flag(PyObject* o, const char* off, const char* on) {
  if (o == nullptr) return 0;
  if (!PyUnicode_Check(o)) return -1;
  if (PyUnicode_CompareWithASCIIString(o, off) == 0) return 0;
  if (PyUnicode_CompareWithASCIIString(o, on) == 0) return 1;
  return -1;
}

// ----- forward cells

// Kind-specific sizes: gates G and ws width in units of H.
inline index_t cell_gates(int kind) { return kind == 0 ? 4 : (kind == 1 ? 3 : 1); }
inline index_t cell_ws(int kind) { return kind == 0 ? 5 : (kind == 1 ? 4 : 1); }

// a: x, h0, c0 (LSTM only), w_ih, w_hh, b_ih, b_hh, opt, out.  Returns null if not handled
// (*handled = false) or on a Python error (*handled = true).
template <class T>
PyObject* cell_forward_fast(int kind, PyObject** a, bool* handled) {
  *handled = false;
  const bool lstm = kind == 0;
  PyObject *x = a[0], *h0 = a[1], *c0 = a[2], *w_ih = a[3], *w_hh = a[4], *b_ih = a[5], *b_hh = a[6];
  const int flag = kind == 0 ? 0 : fast_flag(a[7], kind == 1 ? "torch" : "tanh", kind == 1 ? "cho2014" : "relu");
  if (flag < 0 || !fast_ok<T>(x, kFastInFlags) || !fast_ok<T>(w_hh, kFastInFlags)) return nullptr;
  const auto* xa = npd::array_proxy(x);
  const auto* wa = npd::array_proxy(w_hh);
  if (xa->nd != 2 || wa->nd != 2) return nullptr;
  const index_t N = xa->dimensions[0], F = xa->dimensions[1], H = wa->dimensions[1], G = cell_gates(kind);
  if (H < 1 || wa->dimensions[0] != G * H) return nullptr;
  const FastArr in[7] = {fast_arr<T>(x, 2, N, F, false), fast_opt<T>(h0, 2, N, H),
                         lstm ? fast_opt<T>(c0, 2, N, H) : FastArr{nullptr, 0, true},
                         fast_arr<T>(w_ih, 2, G * H, F, false), fast_arr<T>(w_hh, 2, G * H, H, false),
                         fast_opt<T>(b_ih, 1, G * H, 1), fast_opt<T>(b_hh, 1, G * H, 1)};
  for (const FastArr& f : in) {
    if (!f.ok) return nullptr;
  }
  const int nout = lstm ? 3 : 2;
  PyObject* given[3];
  if (!out_items(a[8], nout, given)) return nullptr;
  OutSlot outs[3];
  const index_t wsw = cell_ws(kind) * H;
  const bool made = fast_out<T>(given[0], 2, N, H, &outs[0]) &&
                    (lstm ? fast_out<T>(given[1], 2, N, H, &outs[1]) : true) &&
                    fast_out<T>(given[nout - 1], 2, N, wsw, &outs[nout - 1]);
  if (!made || any_overlap(outs, nout, in, 7)) {
    release_slots(outs, 3);
    if (PyErr_Occurred()) {
      *handled = true;
    }
    return nullptr;
  }
  *handled = true;
  T* h1 = reinterpret_cast<T*>(outs[0].arr.p);
  T* wsp = reinterpret_cast<T*>(outs[nout - 1].arr.p);
  const T* cp[7];
  for (int i = 0; i < 7; ++i) cp[i] = reinterpret_cast<const T*>(in[i].p);
  Py_BEGIN_ALLOW_THREADS
  if (kind == 0) {
    lstm_cell_forward<T>(h1, reinterpret_cast<T*>(outs[1].arr.p), wsp, cp[0], cp[1], cp[2], cp[3], cp[4], cp[5],
                         cp[6], N, F, H);
  } else if (kind == 1) {
    gru_cell_forward<T>(h1, wsp, cp[0], cp[1], cp[3], cp[4], cp[5], cp[6], N, F, H, flag == 1);
  } else {
    rnn_cell_forward<T>(h1, wsp, cp[0], cp[1], cp[3], cp[4], cp[5], cp[6], N, F, H, flag == 1);
  }
  Py_END_ALLOW_THREADS
  PyObject* res = PyTuple_New(nout);
  if (res == nullptr) {
    release_slots(outs, 3);
    return nullptr;
  }
  for (int i = 0; i < nout; ++i) PyTuple_SET_ITEM(res, i, outs[i].obj);  // steals
  return res;
}

// ----- backward cells

// a: dh1, dc1 (LSTM only), ws, x, h0, c0 (LSTM only), w_ih, w_hh, opt, dw_ih, dw_hh, db_ih, db_hh,
// accumulate.
template <class T>
PyObject* cell_backward_fast(int kind, PyObject** a, bool* handled) {
  *handled = false;
  const bool lstm = kind == 0;
  PyObject *dh1 = a[0], *dc1 = a[1], *ws = a[2], *x = a[3], *h0 = a[4], *c0 = a[5], *w_ih = a[6], *w_hh = a[7];
  const int flag = kind == 0 ? 0 : fast_flag(a[8], kind == 1 ? "torch" : "tanh", kind == 1 ? "cho2014" : "relu");
  int acc = 0;
  if (a[13] != nullptr) {
    if (a[13] == Py_True) acc = 1;
    else if (a[13] == Py_False) acc = 0;
    else return nullptr;
  }
  if (flag < 0 || !fast_ok<T>(x, kFastInFlags) || !fast_ok<T>(w_hh, kFastInFlags)) return nullptr;
  const auto* xa = npd::array_proxy(x);
  const auto* wa = npd::array_proxy(w_hh);
  if (xa->nd != 2 || wa->nd != 2) return nullptr;
  const index_t N = xa->dimensions[0], F = xa->dimensions[1], H = wa->dimensions[1], G = cell_gates(kind);
  if (H < 1 || wa->dimensions[0] != G * H) return nullptr;
  const FastArr none{nullptr, 0, true};
  const FastArr in[8] = {fast_opt<T>(dh1, 2, N, H),  lstm ? fast_opt<T>(dc1, 2, N, H) : none,
                         fast_arr<T>(ws, 2, N, cell_ws(kind) * H, false), fast_arr<T>(x, 2, N, F, false),
                         fast_opt<T>(h0, 2, N, H), lstm ? fast_opt<T>(c0, 2, N, H) : none,
                         fast_arr<T>(w_ih, 2, G * H, F, false), fast_arr<T>(w_hh, 2, G * H, H, false)};
  for (const FastArr& f : in) {
    if (!f.ok) return nullptr;
  }
  // outs: dx, dh0, [dc0], dw_ih, dw_hh, db_ih, db_hh
  OutSlot outs[7];
  const int nfix = lstm ? 3 : 2;
  bool made = fast_out<T>(nullptr, 2, N, F, &outs[0]) && fast_out<T>(nullptr, 2, N, H, &outs[1]) &&
              (lstm ? fast_out<T>(nullptr, 2, N, H, &outs[2]) : true);
  made = made && fast_out<T>(a[9], 2, G * H, F, &outs[nfix]) && fast_out<T>(a[10], 2, G * H, H, &outs[nfix + 1]) &&
         fast_out<T>(a[11], 1, G * H, 1, &outs[nfix + 2]) && fast_out<T>(a[12], 1, G * H, 1, &outs[nfix + 3]);
  const int nout = nfix + 4;
  if (!made || any_overlap(outs, nout, in, 8)) {
    release_slots(outs, 7);
    if (PyErr_Occurred()) *handled = true;
    return nullptr;
  }
  *handled = true;
  auto P = [&](int i) { return reinterpret_cast<T*>(outs[i].arr.p); };
  auto G_ = [&](int i, PyObject* given) { return GradOut<T>{P(i), acc == 1 && !absent(given)}; };
  const T* c[8];
  for (int i = 0; i < 8; ++i) c[i] = reinterpret_cast<const T*>(in[i].p);
  const GradOut<T> gwi = G_(nfix, a[9]), gwh = G_(nfix + 1, a[10]), gbi = G_(nfix + 2, a[11]),
                   gbh = G_(nfix + 3, a[12]);
  Py_BEGIN_ALLOW_THREADS
  if (lstm) {
    lstm_cell_backward<T>(P(0), P(1), P(2), gwi, gwh, gbi, gbh, c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7], N, F,
                          H);
  } else if (kind == 1) {
    gru_cell_backward<T>(P(0), P(1), gwi, gwh, gbi, gbh, c[0], c[2], c[3], c[4], c[6], c[7], N, F, H, flag == 1);
  } else {
    rnn_cell_backward<T>(P(0), P(1), gwi, gwh, gbi, gbh, c[0], c[2], c[3], c[4], c[6], c[7], N, F, H, flag == 1);
  }
  Py_END_ALLOW_THREADS
  PyObject* res = PyTuple_New(nout);
  if (res == nullptr) {
    release_slots(outs, 7);
    return nullptr;
  }
  for (int i = 0; i < nout; ++i) PyTuple_SET_ITEM(res, i, outs[i].obj);
  return res;
}

// ----- entry points

ArgSpec kLstmFwdSpec[] = {{"x", true},     {"h0", true},     {"c0", true},  {"w_ih", true},
                                {"w_hh", true},  {"b_ih", false},  {"b_hh", false}, {"out", false}};
ArgSpec kGruFwdSpec[] = {{"x", true},     {"h0", true},      {"w_ih", true}, {"w_hh", true},
                               {"b_ih", false}, {"b_hh", false},   {"variant", false}, {"out", false}};
ArgSpec kRnnFwdSpec[] = {{"x", true},     {"h0", true},      {"w_ih", true}, {"w_hh", true},
                               {"b_ih", false}, {"b_hh", false},   {"nonlinearity", false}, {"out", false}};
ArgSpec kLstmBwdSpec[] = {{"dh1", true},    {"dc1", true},    {"ws", true},    {"x", true},
                                {"h0", true},     {"c0", true},     {"w_ih", true},  {"w_hh", true},
                                {"dw_ih", false}, {"dw_hh", false}, {"db_ih", false}, {"db_hh", false},
                                {"accumulate", false}};
ArgSpec kGruBwdSpec[] = {{"dh1", true},    {"ws", true},     {"x", true},      {"h0", true},
                               {"w_ih", true},   {"w_hh", true},   {"variant", false}, {"dw_ih", false},
                               {"dw_hh", false}, {"db_ih", false}, {"db_hh", false}, {"accumulate", false}};
ArgSpec kRnnBwdSpec[] = {{"dh1", true},    {"ws", true},     {"x", true},      {"h0", true},
                               {"w_ih", true},   {"w_hh", true},   {"nonlinearity", false}, {"dw_ih", false},
                               {"dw_hh", false}, {"db_ih", false}, {"db_hh", false}, {"accumulate", false}};

template <int Kind>
PyObject* cell_forward_entry(PyObject*, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  const char* fn = Kind == 0 ? "lstm_cell" : (Kind == 1 ? "gru_cell" : "rnn_cell");
  ArgSpec* spec = Kind == 0 ? kLstmFwdSpec : (Kind == 1 ? kGruFwdSpec : kRnnFwdSpec);
  PyObject* p[8];
  if (!parse_args(fn, spec, 8, Kind == 0 ? 7 : 7, args, nargs, kwnames, p)) return nullptr;
  // a: x, h0, c0, w_ih, w_hh, b_ih, b_hh, opt, out
  PyObject* a[9];
  if (Kind == 0) {
    a[0] = p[0], a[1] = p[1], a[2] = p[2], a[3] = p[3], a[4] = p[4], a[5] = p[5], a[6] = p[6], a[7] = nullptr,
    a[8] = p[7];
  } else {
    a[0] = p[0], a[1] = p[1], a[2] = nullptr, a[3] = p[2], a[4] = p[3], a[5] = p[4], a[6] = p[5], a[7] = p[6],
    a[8] = p[7];
  }
  bool handled = false;
  const int dt = fast_dtype(a[0]);
  PyObject* r = dt == 0 ? cell_forward_fast<float>(Kind, a, &handled)
                        : (dt == 1 ? cell_forward_fast<double>(Kind, a, &handled) : nullptr);
  if (handled) return r;
  // General path: full checks, conversions and the documented errors.
  return guarded([&]() -> py::object {
    return dispatch_float(hnd(a[0]), fn, "x", [&](auto t) -> py::object {
      using T = decltype(t);
      if (Kind == 0) return lstm_cell_impl<T>(hnd(a[0]), hnd(a[1]), hnd(a[2]), hnd(a[3]), hnd(a[4]), hnd(a[5]),
                                              hnd(a[6]), hnd(a[8]));
      py::object opt = a[7] != nullptr ? py::reinterpret_borrow<py::object>(a[7])
                                        : py::object(py::str(Kind == 1 ? "torch" : "tanh"));
      return gr_cell_impl<T>(Kind == 1 ? CellKind::gru : CellKind::rnn, hnd(a[0]), hnd(a[1]), hnd(a[3]), hnd(a[4]),
                             hnd(a[5]), hnd(a[6]), opt, hnd(a[8]));
    });
  });
}

template <int Kind>
PyObject* cell_backward_entry(PyObject*, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  const char* fn = Kind == 0 ? "lstm_cell_backward" : (Kind == 1 ? "gru_cell_backward" : "rnn_cell_backward");
  ArgSpec* spec = Kind == 0 ? kLstmBwdSpec : (Kind == 1 ? kGruBwdSpec : kRnnBwdSpec);
  const int n = Kind == 0 ? 13 : 12;
  PyObject* p[13];
  if (!parse_args(fn, spec, n, Kind == 0 ? 8 : 7, args, nargs, kwnames, p)) return nullptr;
  // a: dh1, dc1, ws, x, h0, c0, w_ih, w_hh, opt, dw_ih, dw_hh, db_ih, db_hh, accumulate
  PyObject* a[14];
  if (Kind == 0) {
    for (int i = 0; i < 8; ++i) a[i] = p[i];
    a[8] = nullptr;
    for (int i = 0; i < 5; ++i) a[9 + i] = p[8 + i];
  } else {
    a[0] = p[0], a[1] = nullptr, a[2] = p[1], a[3] = p[2], a[4] = p[3], a[5] = nullptr, a[6] = p[4], a[7] = p[5];
    a[8] = p[6];
    for (int i = 0; i < 5; ++i) a[9 + i] = p[7 + i];
  }
  bool handled = false;
  const int dt = fast_dtype(a[2]);
  PyObject* r = dt == 0 ? cell_backward_fast<float>(Kind, a, &handled)
                        : (dt == 1 ? cell_backward_fast<double>(Kind, a, &handled) : nullptr);
  if (handled) return r;
  return guarded([&]() -> py::object {
    bool acc = false;
    if (a[13] != nullptr) acc = py::cast<bool>(py::handle(a[13]));
    return dispatch_float(hnd(a[2]), fn, "ws", [&](auto t) -> py::object {
      using T = decltype(t);
      if (Kind == 0) {
        return lstm_cell_backward_impl<T>(hnd(a[0]), hnd(a[1]), hnd(a[2]), hnd(a[3]), hnd(a[4]), hnd(a[5]),
                                          hnd(a[6]), hnd(a[7]), hnd(a[9]), hnd(a[10]), hnd(a[11]), hnd(a[12]), acc);
      }
      py::object opt = a[8] != nullptr ? py::reinterpret_borrow<py::object>(a[8])
                                        : py::object(py::str(Kind == 1 ? "torch" : "tanh"));
      return gr_cell_backward_impl<T>(Kind == 1 ? CellKind::gru : CellKind::rnn, hnd(a[0]), hnd(a[2]), hnd(a[3]),
                                      hnd(a[4]), hnd(a[6]), hnd(a[7]), opt, hnd(a[9]), hnd(a[10]), hnd(a[11]),
                                      hnd(a[12]), acc);
    });
  });
}

template <class F>
PyCFunction as_cfunc(F f) {
  return reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(f));
}

PyMethodDef kCellMethods[] = {
    {"lstm_cell", as_cfunc(&cell_forward_entry<0>), METH_FASTCALL | METH_KEYWORDS,
     "lstm_cell(x, h0, c0, w_ih, w_hh, b_ih=None, b_hh=None, *, out=None) -> (h1, c1, ws)\n\n"
     "One fused LSTM step (torch's gates i, f, g, o). x (N, F); h0, c0 (N, H) or None (zeros);\n"
     "w_ih (4H, F); w_hh (4H, H); biases (4H,) or None. ws (N, 5H) holds the activated gates and\n"
     "tanh(c1) for lstm_cell_backward. out=(h1, c1, ws) reuses buffers (None entries are allocated)."},
    {"lstm_cell_backward", as_cfunc(&cell_backward_entry<0>), METH_FASTCALL | METH_KEYWORDS,
     "lstm_cell_backward(dh1, dc1, ws, x, h0, c0, w_ih, w_hh, *, dw_ih=None, dw_hh=None, db_ih=None,\n"
     "db_hh=None, accumulate=False) -> (dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh)\n\n"
     "Gradients of one LSTM step; dh1/dc1 may be None (zero). Given dw_*/db_* buffers are written,\n"
     "or added into with accumulate=True (e.g. Parameter.grad), and returned."},
    {"gru_cell", as_cfunc(&cell_forward_entry<1>), METH_FASTCALL | METH_KEYWORDS,
     "gru_cell(x, h0, w_ih, w_hh, b_ih=None, b_hh=None, variant='torch', *, out=None) -> (h1, ws)\n\n"
     "One fused GRU step (gates r, z, n). variant='torch': n = tanh(W_in x + b_in + r*(W_hn h + b_hn));\n"
     "'cho2014': n = tanh(W_in x + b_in + W_hn (r*h) + b_hn). ws (N, 4H) = r, z, n and W_hn h + b_hn\n"
     "(torch) or r*h (cho2014)."},
    {"gru_cell_backward", as_cfunc(&cell_backward_entry<1>), METH_FASTCALL | METH_KEYWORDS,
     "gru_cell_backward(dh1, ws, x, h0, w_ih, w_hh, variant='torch', *, dw_ih=None, dw_hh=None,\n"
     "db_ih=None, db_hh=None, accumulate=False) -> (dx, dh0, dw_ih, dw_hh, db_ih, db_hh)"},
    {"rnn_cell", as_cfunc(&cell_forward_entry<2>), METH_FASTCALL | METH_KEYWORDS,
     "rnn_cell(x, h0, w_ih, w_hh, b_ih=None, b_hh=None, nonlinearity='tanh', *, out=None) -> (h1, ws)\n\n"
     "One Elman RNN step, h1 = tanh or relu(x W_ih^T + b_ih + h0 W_hh^T + b_hh); ws (N, H) = h1."},
    {"rnn_cell_backward", as_cfunc(&cell_backward_entry<2>), METH_FASTCALL | METH_KEYWORDS,
     "rnn_cell_backward(dh1, ws, x, h0, w_ih, w_hh, nonlinearity='tanh', *, dw_ih=None, dw_hh=None,\n"
     "db_ih=None, db_hh=None, accumulate=False) -> (dx, dh0, dw_ih, dw_hh, db_ih, db_hh)"},
    {nullptr, nullptr, 0, nullptr}};

void add_cell_functions(py::module_& m) {
  if (PyModule_AddFunctions(m.ptr(), kCellMethods) != 0) throw py::error_already_set();
}

}  // namespace

void bind_rnn(py::module_& m) {
  add_cell_functions(m);

  // Private sequence drivers.
  m.def(
      "_rnn_seq_ws_size",
      [](const std::string& kind, index_t T, index_t N, index_t F, index_t H, py::object dtype) {
        const SeqKind k = parse_kind(kind);
        check_seq_sizes("rnn sequence", T, N, F, H, seq_gates(k));
        SeqDims d;
        d.T = T;
        d.N = N;
        d.F = F;
        d.H = H;
        const py::dtype dt = py::dtype::from_args(dtype);
        if (dt.equal(py::dtype::of<float>())) return seq_ws_size<float>(k, d);
        if (dt.equal(py::dtype::of<double>())) return seq_ws_size<double>(k, d);
        type_error("rnn sequence", "dtype must be float32 or float64, got ", py::str(dt).cast<std::string>());
      },
      py::arg("kind"), py::arg("T"), py::arg("N"), py::arg("F"), py::arg("H"), py::arg("dtype"));
  m.def(
      "_rnn_seq_forward",
      [](const std::string& kind, py::object x, py::object h0, py::object c0, py::object w_ih, py::object w_hh,
         py::object b_ih, py::object b_hh, py::object lengths, bool reverse, bool batch_first, int variant,
         py::object y, index_t y_col, py::object h_n, py::object c_n, py::object ws) {
        const SeqKind k = parse_kind(kind);
        dispatch_float(x, seq_name(k, false), "x", [&](auto t) {
          seq_forward_impl<decltype(t)>(k, x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths, reverse, batch_first,
                                        variant, y, y_col, h_n, c_n, ws);
          return 0;
        });
      },
      py::arg("kind"), py::arg("x"), py::arg("h0"), py::arg("c0"), py::arg("w_ih"), py::arg("w_hh"), py::arg("b_ih"),
      py::arg("b_hh"), py::arg("lengths"), py::arg("reverse"), py::arg("batch_first"), py::arg("variant"),
      py::arg("y"), py::arg("y_col"), py::arg("h_n"), py::arg("c_n"), py::arg("ws"));
  m.def(
      "_rnn_seq_backward",
      [](const std::string& kind, py::object ws, py::object x, py::object dy, index_t dy_col, py::object dh_n,
         py::object dc_n, py::object dx, bool dx_accumulate, py::object dh0, py::object dc0, py::object grads,
         py::object accumulate, bool dy_exact) {
        const SeqKind k = parse_kind(kind);
        dispatch_float(ws, seq_name(k, true), "ws", [&](auto t) {
          seq_backward_impl<decltype(t)>(k, ws, x, dy, dy_col, dh_n, dc_n, dx, dx_accumulate, dh0, dc0, grads,
                                         accumulate, dy_exact);
          return 0;
        });
      },
      py::arg("kind"), py::arg("ws"), py::arg("x"), py::arg("dy"), py::arg("dy_col"), py::arg("dh_n"),
      py::arg("dc_n"), py::arg("dx"), py::arg("dx_accumulate"), py::arg("dh0"), py::arg("dc0"), py::arg("grads"),
      py::arg("accumulate"), py::arg("dy_exact") = false);
  m.def(
      "_lstm_cell_kernel_seconds",
      [](py::array_t<float> x, py::array_t<float> h0, py::array_t<float> c0, py::array_t<float> w_ih,
         py::array_t<float> w_hh, py::array_t<float> b_ih, py::array_t<float> b_hh, bool backward, int iters) {
        // The kernels alone, looped in C++ (no Python, no argument checks): the "math" part of a
        // call, so benchmarks can report the per-call overhead of nk.lstm_cell from Python.
        const index_t N = x.shape(0), F = x.shape(1), H = h0.shape(1);
        std::vector<float> h1(N * H), c1(N * H), ws(N * 5 * H), dx(N * F), dh0(N * H), dc0(N * H);
        std::vector<float> gwi(4 * H * F), gwh(4 * H * H), gbi(4 * H), gbh(4 * H);
        lstm_cell_forward<float>(h1.data(), c1.data(), ws.data(), x.data(), h0.data(), c0.data(), w_ih.data(),
                                 w_hh.data(), b_ih.data(), b_hh.data(), N, F, H);
        py::gil_scoped_release nogil;
        const auto t0 = std::chrono::steady_clock::now();
        for (int i = 0; i < iters; ++i) {
          if (backward) {
            lstm_cell_backward<float>(dx.data(), dh0.data(), dc0.data(), GradOut<float>{gwi.data(), true},
                                      GradOut<float>{gwh.data(), true}, GradOut<float>{gbi.data(), true},
                                      GradOut<float>{gbh.data(), true}, h1.data(), c1.data(), ws.data(), x.data(),
                                      h0.data(), c0.data(), w_ih.data(), w_hh.data(), N, F, H);
          } else {
            lstm_cell_forward<float>(h1.data(), c1.data(), ws.data(), x.data(), h0.data(), c0.data(), w_ih.data(),
                                     w_hh.data(), b_ih.data(), b_hh.data(), N, F, H);
          }
        }
        const std::chrono::duration<double> dt = std::chrono::steady_clock::now() - t0;
        return dt.count() / std::max(iters, 1);
      },
      py::arg("x"), py::arg("h0"), py::arg("c0"), py::arg("w_ih"), py::arg("w_hh"), py::arg("b_ih"),
      py::arg("b_hh"), py::arg("backward"), py::arg("iters"));
  m.def(
      "_rnn_step_gemm",
      [](py::object a, py::object b, py::object c, bool accumulate, int iters) {
        // c (+)= a @ b through the recurrent step GEMM (rnn_gemm.h), iters times (tests, timing).
        return dispatch_float(a, "_rnn_step_gemm", "a", [&](auto t) {
          using T = decltype(t);
          const char* fn = "_rnn_step_gemm";
          Arr<T> A = in_arr<T>(a, fn, "a", nullptr), B = in_arr<T>(b, fn, "b", "a");
          expect_ndim(A, 2, fn, "a", "(M, K)");
          expect_ndim(B, 2, fn, "b", "(K, N)");
          const index_t M = A.dim(0), K = A.dim(1), N = B.dim(1);
          expect_shape(B, {K, N}, fn, "b", "(K, N)");
          Arr<T> C = inplace_arr<T>(c, {M, N}, fn, "c");
          check_disjoint(fn, {span("c", C)}, {span("a", A), span("b", B), span("c", C)});
          py::gil_scoped_release nogil;
          std::vector<T> bp(static_cast<std::size_t>(std::max<index_t>(rnn::packed_size(K, N), 1)));
          rnn::packed_zero_tail(bp.data(), K, N);
          rnn::pack_rows(bp.data(), K, 0, 0, B.p, N, K, N);
          const auto t0 = std::chrono::steady_clock::now();
          for (int i = 0; i < std::max(iters, 1); ++i) {
            rnn::step_gemm<T>(M, N, K, rnn::MatA<T>{A.p, K, 1}, rnn::packed_b(bp.data(), K), 0, C.p, N, accumulate);
          }
          const std::chrono::duration<double> dt = std::chrono::steady_clock::now() - t0;
          return dt.count() / std::max(iters, 1);
        });
      },
      py::arg("a"), py::arg("b"), py::arg("c"), py::arg("accumulate"), py::arg("iters") = 1);
  m.def(
      "_rnn_activation",
      [](py::object x, const std::string& kind) -> py::object {
        const int k = kind == "sigmoid" ? 0 : (kind == "tanh" ? 1 : -1);
        if (k < 0) value_error("_rnn_activation", "kind must be 'sigmoid' or 'tanh', got '", kind, "'");
        return dispatch_float(x, "_rnn_activation", "x", [&](auto t) -> py::object {
          using T = decltype(t);
          py::array_t<T> a = input<T>(x, "_rnn_activation", "x");
          py::array_t<T> y(std::vector<py::ssize_t>(a.shape(), a.shape() + a.ndim()));
          const T* px = a.data();
          T* py_ = y.mutable_data();
          const index_t n = a.size();
          {
            py::gil_scoped_release nogil;
            rnn_activation<T>(py_, px, n, k);
          }
          return std::move(y);
        });
      },
      py::arg("x"), py::arg("kind"), "The vectorised sigmoid/tanh the recurrent kernels use (for tests).");
}

}  // namespace bind
}  // namespace nnkern
