// Bindings for the optim family: fused optimizer steps (single- and multi-tensor) and gradient
// clipping. Python wrappers with the public signatures and docs are in python/nnkern/ops/optim.py.
//
// Checks, all before the GIL is released:
//   * parameters and state buffers are in-place buffers (the rules of arrays.h inplace<T>: exact
//     dtype, C-contiguous, aligned, writeable; never copied); gradients are read-only inputs of
//     the same dtype (arrays.h input<T>: copied once if strided), except in clipping, which writes
//     them. Arrays that pass a quick test of those rules skip the helpers (see class Arrays);
//     the others go through them and get their errors;
//   * every buffer has the shape of its parameter;
//   * no written buffer shares memory with any other argument (all tensors of a multi-tensor call
//     included: two parameters that overlap would be updated twice);
//   * hyperparameters as torch.optim validates them (lr >= 0, 0 <= beta < 1, ...), and finite;
//   * `step` is an integer >= 1 (the 1-based number of the step being taken).
#include <algorithm>
#include <stdexcept>
#include <string>
#include <vector>

#include "arrays.h"
#include "nnkern/optim.h"

namespace nnkern {
namespace bind {
namespace {

// ---------------------------------------------------------------------------------------------
// Argument helpers

// The arrays of one argument: the object itself for single-tensor calls, the items of a list or
// tuple for *_multi calls.
std::vector<py::handle> items_of(py::handle obj, const char* fn, const char* name, bool multi) {
  if (!multi) return {obj};
  if (!py::isinstance<py::list>(obj) && !py::isinstance<py::tuple>(obj)) {
    type_error(fn, name, " must be a list or tuple of numpy arrays, got ", type_name(obj));
  }
  std::vector<py::handle> out;
  for (py::handle h : py::reinterpret_borrow<py::sequence>(obj)) out.push_back(h);
  return out;
}

std::vector<py::handle> items_like(py::handle obj, const char* fn, const char* name, bool multi,
                                   size_t count) {
  std::vector<py::handle> out = items_of(obj, fn, name, multi);
  if (out.size() != count) {
    value_error(fn, name, " has ", out.size(), " arrays, expected ", count, " (one per array of p)");
  }
  return out;
}

// An integer >= 1 (bools and floats are refused: a step count is a whole number). `index` >= 0
// names the entry of a per-tensor list of steps in errors.
index_t step_value(py::handle obj, const char* fn, long index = -1) {
  // Python ints in range: the common case, no name needed.
  if (PyLong_CheckExact(obj.ptr())) {
    int overflow = 0;
    const long long s = PyLong_AsLongLongAndOverflow(obj.ptr(), &overflow);
    if (overflow == 0 && s >= 1) return static_cast<index_t>(s);
  }
  const std::string name = index < 0 ? std::string("step") : "step[" + std::to_string(index) + "]";
  if (PyBool_Check(obj.ptr()) || !PyIndex_Check(obj.ptr())) {
    type_error(fn, name, " must be an integer >= 1 (the 1-based number of this step), got ",
               py::repr(obj).cast<std::string>());
  }
  py::int_ v = py::reinterpret_steal<py::int_>(PyNumber_Index(obj.ptr()));
  if (!v) throw py::error_already_set();
  int overflow = 0;
  const long long s = PyLong_AsLongLongAndOverflow(v.ptr(), &overflow);
  if (overflow > 0) value_error(fn, name, " is too large, got ", py::repr(obj).cast<std::string>());
  if (overflow < 0 || s < 1) {
    value_error(fn, name, " must be an integer >= 1 (the 1-based number of this step), got ",
                py::repr(obj).cast<std::string>());
  }
  return static_cast<index_t>(s);
}

// `step` of a call: one integer, or (multi-tensor calls) a list/tuple with one per tensor.
std::vector<index_t> steps_of(py::handle obj, const char* fn, bool multi, size_t count) {
  if (multi && (py::isinstance<py::list>(obj) || py::isinstance<py::tuple>(obj))) {
    auto seq = py::reinterpret_borrow<py::sequence>(obj);
    if (seq.size() != count) {
      value_error(fn, "step has ", seq.size(), " entries, expected ", count, " (one per array of p) or one integer");
    }
    std::vector<index_t> out(count);
    for (size_t i = 0; i < count; ++i) out[i] = step_value(seq[i], fn, static_cast<long>(i));
    return out;
  }
  return std::vector<index_t>(count, step_value(obj, fn));
}

void check_beta(double v, const char* fn, const char* name) {
  if (!(v >= 0.0 && v < 1.0)) value_error(fn, name, " must be in [0, 1), got ", v);
}

// max_norm / clip_value: >= 0; inf is allowed and means "no clipping".
void check_nonneg_or_inf(double v, const char* fn, const char* name) {
  if (!(v >= 0.0)) value_error(fn, name, " must be >= 0 (inf disables clipping), got ", v);
}

void check_flag_buffer(bool used, py::handle buf, const char* fn, const char* name, const char* when) {
  if (used && buf.is_none()) value_error(fn, when, " needs ", name);
  if (!used && !buf.is_none()) value_error(fn, name, " is given but only used with ", when);
}

// ---------------------------------------------------------------------------------------------
// Collects the arrays of one call: validates each, keeps it (and any input copy) alive, and
// checks at the end that nothing written shares memory with anything else.
//
// Every array is first tested on a fast path (exact dtype object, flags, shape); only an array
// that fails it goes through the arrays.h validators, with its name ("m", or "m[3]" in *_multi
// calls), which then raise the documented error. Names are built only then: formatting them for
// every array (std::ostringstream) cost more than the kernel for small tensors.
template <class T>
class Arrays {
 public:
  // `lead` names the argument whose first array fixes the dtype of the call ("p", "grads").
  // `count` arrays are expected (reserves the bookkeeping once).
  Arrays(const char* fn, bool multi, size_t count, const char* lead = "p") : fn_(fn), multi_(multi), lead_(lead) {
    keep_.reserve(count);
    regions_.reserve(count);
  }

  std::string name(const char* slot, size_t i) const {
    return multi_ ? std::string(slot) + "[" + std::to_string(i) + "]" : std::string(slot);
  }

  // A buffer written in place. With `like` (the parameter), it must have its shape.
  T* inplace(py::handle obj, const char* slot, size_t i, const py::array* like = nullptr) {
    // (no default-constructed py::array: that allocates an empty numpy array)
    py::array a = fast_array(obj, true)
                            ? py::reinterpret_borrow<py::array>(obj)
                            : py::array(bind::inplace<T>(obj, fn_, name(slot, i).c_str(), dtype_from().c_str()));
    if (like != nullptr && !same_shape(*like, a)) {
      check_same_shape(*like, a, fn_, name("p", i).c_str(), name(slot, i).c_str());
    }
    add(a, slot, i, true);
    return static_cast<T*>(a.mutable_data());
  }

  // A read-only input of the call's dtype and the parameter's shape (copied once if strided).
  const T* input(py::handle obj, const char* slot, size_t i, const py::array& like) {
    const py::array a = fast_array(obj, false)
                            ? py::reinterpret_borrow<py::array>(obj)
                            : py::array(bind::input<T>(obj, fn_, name(slot, i).c_str(), dtype_from().c_str()));
    if (!same_shape(like, a)) check_same_shape(like, a, fn_, name("p", i).c_str(), name(slot, i).c_str());
    add(a, slot, i, false);
    return static_cast<const T*>(a.data());
  }

  const py::array& last() const { return keep_.back(); }

  // Every written buffer must be disjoint from every other argument; read-only inputs may
  // overlap each other. Sorting by start address makes this O(k log k) for k buffers.
  void check_overlaps() const {
    std::vector<size_t> order(regions_.size());
    for (size_t k = 0; k < order.size(); ++k) order[k] = k;
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
      return regions_[a].begin < regions_[b].begin || (regions_[a].begin == regions_[b].begin && a < b);
    });
    // Among the regions seen so far: the one reaching furthest, and the written one reaching furthest.
    std::uintptr_t any_end = 0, written_end = 0;
    size_t any_k = 0, written_k = 0;
    bool have_any = false, have_written = false;
    for (size_t k : order) {
      const Region& r = regions_[k];
      if (r.begin == r.end) continue;  // empty arrays share no memory
      if (have_written && r.begin < written_end) fail(written_k, k);
      if (r.written && have_any && r.begin < any_end) fail(k, any_k);
      if (!have_any || r.end > any_end) {
        any_end = r.end;
        any_k = k;
        have_any = true;
      }
      if (r.written && (!have_written || r.end > written_end)) {
        written_end = r.end;
        written_k = k;
        have_written = true;
      }
    }
  }

 private:
  struct Region {
    std::uintptr_t begin, end;
    bool written;
    const char* slot;
    size_t index;
  };

  std::string dtype_from() const { return multi_ ? std::string(lead_) + "[0]" : std::string(lead_); }

  // True if `obj` is an ndarray of exactly dtype T, aligned and C-contiguous (and writeable if
  // it is written): everything the validators would accept without a copy.
  static bool fast_array(py::handle obj, bool written) {
    if (!py::isinstance<py::array>(obj)) return false;
    const auto a = py::reinterpret_borrow<py::array>(obj);
    const auto flags = a.flags();
    const int need = py::array::c_style | py::detail::npy_api::NPY_ARRAY_ALIGNED_ |
                     (written ? py::detail::npy_api::NPY_ARRAY_WRITEABLE_ : 0);
    return (flags & need) == need && a.dtype().is(dtype_object());
  }

  // numpy's singleton descriptor for T; deliberately leaked, so no reference is released after
  // the interpreter has shut down.
  static const py::dtype& dtype_object() {
    static const py::dtype* dt = new py::dtype(py::dtype::of<T>());
    return *dt;
  }

  static bool same_shape(const py::array& a, const py::array& b) {
    if (a.ndim() != b.ndim()) return false;
    for (py::ssize_t d = 0; d < a.ndim(); ++d) {
      if (a.shape(d) != b.shape(d)) return false;
    }
    return true;
  }

  void add(const py::array& a, const char* slot, size_t i, bool written) {
    keep_.push_back(a);
    const auto b = reinterpret_cast<std::uintptr_t>(a.data());
    regions_.push_back({b, b + static_cast<std::uintptr_t>(a.nbytes()), written, slot, i});
  }

  std::string region_name(size_t k) const { return name(regions_[k].slot, regions_[k].index); }

  // Names the buffers in argument order (the earlier registered one first) when both are
  // written, else the written one first.
  [[noreturn]] void fail(size_t written, size_t other) const {
    size_t a = written, b = other;
    if (regions_[written].written && regions_[other].written && other < written) std::swap(a, b);
    value_error(fn_, region_name(a), " shares memory with ", region_name(b),
                " (in-place buffers must not overlap other arguments)");
  }

  const char* fn_;
  bool multi_;
  const char* lead_;
  std::vector<py::array> keep_;
  std::vector<Region> regions_;
};

// The dtype a call computes in: that of its first parameter (float32 or float64).
template <class F>
void dispatch_on_first(const std::vector<py::handle>& ps, const char* fn, bool multi, F&& f) {
  dispatch_float(ps[0], fn, multi ? "p[0]" : "p", [&](auto t) {
    f(t);
    return 0;
  });
}

// ---------------------------------------------------------------------------------------------
// Optimizer steps

void adam_call(const char* fn, bool multi, py::handle p, py::handle g, py::handle m, py::handle v,
               py::handle step, double lr, double beta1, double beta2, double eps, double weight_decay,
               bool decoupled, bool amsgrad, py::handle v_max, bool maximize) {
  check_nonneg(lr, fn, "lr");
  check_beta(beta1, fn, "betas[0]");
  check_beta(beta2, fn, "betas[1]");
  check_nonneg(eps, fn, "eps");
  check_nonneg(weight_decay, fn, "weight_decay");
  check_flag_buffer(amsgrad, v_max, fn, "v_max", "amsgrad=True");
  const auto ps = items_of(p, fn, "p", multi);
  const size_t k = ps.size();
  const auto gs = items_like(g, fn, "g", multi, k);
  const auto ms = items_like(m, fn, "m", multi, k);
  const auto vs = items_like(v, fn, "v", multi, k);
  const auto vmaxs = amsgrad ? items_like(v_max, fn, "v_max", multi, k) : std::vector<py::handle>();
  const auto steps = steps_of(step, fn, multi, k);
  if (k == 0) return;
  AdamConfig cfg;
  cfg.lr = lr;
  cfg.beta1 = beta1;
  cfg.beta2 = beta2;
  cfg.eps = eps;
  cfg.weight_decay = weight_decay;
  cfg.decoupled = decoupled;
  cfg.amsgrad = amsgrad;
  cfg.maximize = maximize;
  dispatch_on_first(ps, fn, multi, [&](auto tag) {
    using T = decltype(tag);
    Arrays<T> arr(fn, multi, 5 * k);
    std::vector<AdamTensor<T>> ts(k);
    for (size_t i = 0; i < k; ++i) {
      AdamTensor<T>& t = ts[i];
      t.p = arr.inplace(ps[i], "p", i);
      const py::array pa = arr.last();
      t.n = pa.size();
      t.g = arr.input(gs[i], "g", i, pa);
      t.m = arr.inplace(ms[i], "m", i, &pa);
      t.v = arr.inplace(vs[i], "v", i, &pa);
      t.v_max = amsgrad ? arr.inplace(vmaxs[i], "v_max", i, &pa) : nullptr;
      t.step = steps[i];
    }
    arr.check_overlaps();
    py::gil_scoped_release nogil;
    adam_step<T>(ts.data(), static_cast<index_t>(k), cfg);
  });
}

void sgd_call(const char* fn, bool multi, py::handle p, py::handle g, py::handle buf, py::handle step,
              double lr, double momentum, double dampening, double weight_decay, bool nesterov,
              bool maximize) {
  check_nonneg(lr, fn, "lr");
  check_nonneg(momentum, fn, "momentum");
  check_finite(dampening, fn, "dampening");
  check_nonneg(weight_decay, fn, "weight_decay");
  if (nesterov && (momentum <= 0.0 || dampening != 0.0)) {
    value_error(fn, "nesterov=True requires momentum > 0 and dampening == 0, got momentum=", momentum,
                " and dampening=", dampening);
  }
  const bool has_momentum = momentum != 0.0;
  check_flag_buffer(has_momentum, buf, fn, "momentum_buffer", "momentum != 0");
  if (has_momentum && step.is_none()) {
    value_error(fn, "momentum != 0 needs step (the 1-based step number; step 1 sets momentum_buffer "
                "to the gradient)");
  }
  const auto ps = items_of(p, fn, "p", multi);
  const size_t k = ps.size();
  const auto gs = items_like(g, fn, "g", multi, k);
  const auto bufs = has_momentum ? items_like(buf, fn, "momentum_buffer", multi, k) : std::vector<py::handle>();
  const auto steps = step.is_none() ? std::vector<index_t>(k, 1) : steps_of(step, fn, multi, k);
  if (k == 0) return;
  SgdConfig cfg;
  cfg.lr = lr;
  cfg.momentum = momentum;
  cfg.dampening = dampening;
  cfg.weight_decay = weight_decay;
  cfg.nesterov = nesterov;
  cfg.maximize = maximize;
  dispatch_on_first(ps, fn, multi, [&](auto tag) {
    using T = decltype(tag);
    Arrays<T> arr(fn, multi, 3 * k);
    std::vector<SgdTensor<T>> ts(k);
    for (size_t i = 0; i < k; ++i) {
      SgdTensor<T>& t = ts[i];
      t.p = arr.inplace(ps[i], "p", i);
      const py::array pa = arr.last();
      t.n = pa.size();
      t.g = arr.input(gs[i], "g", i, pa);
      t.buf = has_momentum ? arr.inplace(bufs[i], "momentum_buffer", i, &pa) : nullptr;
      t.first_step = steps[i] == 1;
    }
    arr.check_overlaps();
    py::gil_scoped_release nogil;
    sgd_step<T>(ts.data(), static_cast<index_t>(k), cfg);
  });
}

void adagrad_call(const char* fn, bool multi, py::handle p, py::handle g, py::handle sum, py::handle step,
                  double lr, double lr_decay, double weight_decay, double eps, bool maximize) {
  check_nonneg(lr, fn, "lr");
  check_nonneg(lr_decay, fn, "lr_decay");
  check_nonneg(weight_decay, fn, "weight_decay");
  check_nonneg(eps, fn, "eps");
  const auto ps = items_of(p, fn, "p", multi);
  const size_t k = ps.size();
  const auto gs = items_like(g, fn, "g", multi, k);
  const auto sums = items_like(sum, fn, "state_sum", multi, k);
  const auto steps = steps_of(step, fn, multi, k);
  if (k == 0) return;
  AdagradConfig cfg;
  cfg.lr = lr;
  cfg.lr_decay = lr_decay;
  cfg.weight_decay = weight_decay;
  cfg.eps = eps;
  cfg.maximize = maximize;
  dispatch_on_first(ps, fn, multi, [&](auto tag) {
    using T = decltype(tag);
    Arrays<T> arr(fn, multi, 3 * k);
    std::vector<AdagradTensor<T>> ts(k);
    for (size_t i = 0; i < k; ++i) {
      AdagradTensor<T>& t = ts[i];
      t.p = arr.inplace(ps[i], "p", i);
      const py::array pa = arr.last();
      t.n = pa.size();
      t.g = arr.input(gs[i], "g", i, pa);
      t.sum = arr.inplace(sums[i], "state_sum", i, &pa);
      t.step = steps[i];
    }
    arr.check_overlaps();
    py::gil_scoped_release nogil;
    adagrad_step<T>(ts.data(), static_cast<index_t>(k), cfg);
  });
}

void rmsprop_call(const char* fn, bool multi, py::handle p, py::handle g, py::handle square_avg,
                  py::handle momentum_buffer, py::handle grad_avg, double lr, double alpha, double eps,
                  double weight_decay, double momentum, bool centered, bool maximize) {
  check_nonneg(lr, fn, "lr");
  check_nonneg(alpha, fn, "alpha");
  check_nonneg(eps, fn, "eps");
  check_nonneg(weight_decay, fn, "weight_decay");
  check_nonneg(momentum, fn, "momentum");
  const bool has_momentum = momentum > 0.0;
  check_flag_buffer(has_momentum, momentum_buffer, fn, "momentum_buffer", "momentum > 0");
  check_flag_buffer(centered, grad_avg, fn, "grad_avg", "centered=True");
  const auto ps = items_of(p, fn, "p", multi);
  const size_t k = ps.size();
  const auto gs = items_like(g, fn, "g", multi, k);
  const auto sqs = items_like(square_avg, fn, "square_avg", multi, k);
  const auto bufs =
      has_momentum ? items_like(momentum_buffer, fn, "momentum_buffer", multi, k) : std::vector<py::handle>();
  const auto gas = centered ? items_like(grad_avg, fn, "grad_avg", multi, k) : std::vector<py::handle>();
  if (k == 0) return;
  RmspropConfig cfg;
  cfg.lr = lr;
  cfg.alpha = alpha;
  cfg.eps = eps;
  cfg.weight_decay = weight_decay;
  cfg.momentum = momentum;
  cfg.centered = centered;
  cfg.maximize = maximize;
  dispatch_on_first(ps, fn, multi, [&](auto tag) {
    using T = decltype(tag);
    Arrays<T> arr(fn, multi, 5 * k);
    std::vector<RmspropTensor<T>> ts(k);
    for (size_t i = 0; i < k; ++i) {
      RmspropTensor<T>& t = ts[i];
      t.p = arr.inplace(ps[i], "p", i);
      const py::array pa = arr.last();
      t.n = pa.size();
      t.g = arr.input(gs[i], "g", i, pa);
      t.square_avg = arr.inplace(sqs[i], "square_avg", i, &pa);
      t.momentum_buffer = has_momentum ? arr.inplace(bufs[i], "momentum_buffer", i, &pa) : nullptr;
      t.grad_avg = centered ? arr.inplace(gas[i], "grad_avg", i, &pa) : nullptr;
    }
    arr.check_overlaps();
    py::gil_scoped_release nogil;
    rmsprop_step<T>(ts.data(), static_cast<index_t>(k), cfg);
  });
}

void adadelta_call(const char* fn, bool multi, py::handle p, py::handle g, py::handle square_avg,
                   py::handle acc_delta, double lr, double rho, double eps, double weight_decay,
                   bool maximize) {
  check_nonneg(lr, fn, "lr");
  if (!(rho >= 0.0 && rho <= 1.0)) value_error(fn, "rho must be in [0, 1], got ", rho);
  check_nonneg(eps, fn, "eps");
  check_nonneg(weight_decay, fn, "weight_decay");
  const auto ps = items_of(p, fn, "p", multi);
  const size_t k = ps.size();
  const auto gs = items_like(g, fn, "g", multi, k);
  const auto sqs = items_like(square_avg, fn, "square_avg", multi, k);
  const auto accs = items_like(acc_delta, fn, "acc_delta", multi, k);
  if (k == 0) return;
  AdadeltaConfig cfg;
  cfg.lr = lr;
  cfg.rho = rho;
  cfg.eps = eps;
  cfg.weight_decay = weight_decay;
  cfg.maximize = maximize;
  dispatch_on_first(ps, fn, multi, [&](auto tag) {
    using T = decltype(tag);
    Arrays<T> arr(fn, multi, 4 * k);
    std::vector<AdadeltaTensor<T>> ts(k);
    for (size_t i = 0; i < k; ++i) {
      AdadeltaTensor<T>& t = ts[i];
      t.p = arr.inplace(ps[i], "p", i);
      const py::array pa = arr.last();
      t.n = pa.size();
      t.g = arr.input(gs[i], "g", i, pa);
      t.square_avg = arr.inplace(sqs[i], "square_avg", i, &pa);
      t.acc_delta = arr.inplace(accs[i], "acc_delta", i, &pa);
    }
    arr.check_overlaps();
    py::gil_scoped_release nogil;
    adadelta_step<T>(ts.data(), static_cast<index_t>(k), cfg);
  });
}

// ---------------------------------------------------------------------------------------------
// Clipping. `grads` is a list/tuple of arrays of one dtype (that of grads[0]).

void check_norm_type(double norm_type, const char* fn) {
  if (std::isnan(norm_type)) value_error(fn, "norm_type must be a number or inf, got ", norm_type);
}

double grad_norm_call(py::handle grads, double norm_type) {
  const char* fn = "grad_norm";
  check_norm_type(norm_type, fn);
  const auto gs = items_of(grads, fn, "grads", true);
  if (gs.empty()) return 0.0;
  double total = 0.0;
  dispatch_float(gs[0], fn, "grads[0]", [&](auto tag) {
    using T = decltype(tag);
    std::vector<py::array_t<T>> keep;
    std::vector<Span<const T>> spans;
    for (size_t i = 0; i < gs.size(); ++i) {
      const std::string nm = "grads[" + std::to_string(i) + "]";
      keep.push_back(input<T>(gs[i], fn, nm.c_str(), "grads[0]"));
      spans.push_back({keep.back().data(), static_cast<index_t>(keep.back().size())});
    }
    py::gil_scoped_release nogil;
    total = grad_norm<T>(spans.data(), static_cast<index_t>(spans.size()), norm_type);
    return 0;
  });
  return total;
}

template <class T>
std::vector<Span<T>> inplace_grads(const char* fn, const std::vector<py::handle>& gs, Arrays<T>& arr) {
  std::vector<Span<T>> spans;
  for (size_t i = 0; i < gs.size(); ++i) {
    T* d = arr.inplace(gs[i], "grads", i);
    spans.push_back({d, static_cast<index_t>(arr.last().size())});
  }
  arr.check_overlaps();
  return spans;
}

double clip_grad_norm_call(py::handle grads, double max_norm, double norm_type, bool error_if_nonfinite) {
  const char* fn = "clip_grad_norm";
  check_nonneg_or_inf(max_norm, fn, "max_norm");
  check_norm_type(norm_type, fn);
  const auto gs = items_of(grads, fn, "grads", true);
  if (gs.empty()) return 0.0;
  double total = 0.0;
  dispatch_float(gs[0], fn, "grads[0]", [&](auto tag) {
    using T = decltype(tag);
    Arrays<T> arr(fn, true, gs.size(), "grads");
    std::vector<Span<T>> spans = inplace_grads<T>(fn, gs, arr);
    std::vector<Span<const T>> cspans(spans.size());
    for (size_t i = 0; i < spans.size(); ++i) cspans[i] = {spans[i].data, spans[i].n};
    {
      py::gil_scoped_release nogil;
      total = grad_norm<T>(cspans.data(), static_cast<index_t>(cspans.size()), norm_type);
    }
    if (error_if_nonfinite && !std::isfinite(total)) {
      throw std::runtime_error(cat(fn, ": the total norm of order ", norm_type, " of the gradients is ", total,
                                   " (non-finite), so they cannot be clipped; pass error_if_nonfinite=False "
                                   "to scale them by it anyway"));
    }
    const T coef = clip_coefficient<T>(max_norm, total);
    if (!(coef == T(1))) {  // scaling by 1 changes nothing; NaN scales (every gradient becomes NaN)
      py::gil_scoped_release nogil;
      scale_inplace<T>(spans.data(), static_cast<index_t>(spans.size()), coef);
    }
    return 0;
  });
  return total;
}

void clip_grad_value_call(py::handle grads, double clip_value) {
  const char* fn = "clip_grad_value";
  check_nonneg_or_inf(clip_value, fn, "clip_value");
  const auto gs = items_of(grads, fn, "grads", true);
  if (gs.empty()) return;
  dispatch_float(gs[0], fn, "grads[0]", [&](auto tag) {
    using T = decltype(tag);
    Arrays<T> arr(fn, true, gs.size(), "grads");
    std::vector<Span<T>> spans = inplace_grads<T>(fn, gs, arr);
    const T hi = static_cast<T>(clip_value);
    py::gil_scoped_release nogil;
    clamp_inplace<T>(spans.data(), static_cast<index_t>(spans.size()), -hi, hi);
    return 0;
  });
}

}  // namespace

void bind_optim(py::module_& m) {
  // Positional, no defaults: the public signatures, defaults and docs live in nnkern/ops/optim.py.
  for (bool multi : {false, true}) {
    const char* sfx = multi ? "_multi" : "";
    const char* adam_fn = multi ? "adam_step_multi" : "adam_step";
    const char* adamw_fn = multi ? "adamw_step_multi" : "adamw_step";
    m.def(cat("_adam_step", sfx).c_str(),
          [adam_fn, multi](py::handle p, py::handle g, py::handle m_, py::handle v, py::handle step, double lr,
                           double beta1, double beta2, double eps, double wd, bool decoupled, bool amsgrad,
                           py::handle v_max, bool maximize) {
            adam_call(adam_fn, multi, p, g, m_, v, step, lr, beta1, beta2, eps, wd, decoupled, amsgrad, v_max,
                      maximize);
          });
    m.def(cat("_adamw_step", sfx).c_str(),
          [adamw_fn, multi](py::handle p, py::handle g, py::handle m_, py::handle v, py::handle step, double lr,
                            double beta1, double beta2, double eps, double wd, bool amsgrad, py::handle v_max,
                            bool maximize) {
            adam_call(adamw_fn, multi, p, g, m_, v, step, lr, beta1, beta2, eps, wd, true, amsgrad, v_max,
                      maximize);
          });
    const char* sgd_fn = multi ? "sgd_step_multi" : "sgd_step";
    m.def(cat("_sgd_step", sfx).c_str(),
          [sgd_fn, multi](py::handle p, py::handle g, py::handle buf, py::handle step, double lr, double momentum,
                          double dampening, double wd, bool nesterov, bool maximize) {
            sgd_call(sgd_fn, multi, p, g, buf, step, lr, momentum, dampening, wd, nesterov, maximize);
          });
    const char* adagrad_fn = multi ? "adagrad_step_multi" : "adagrad_step";
    m.def(cat("_adagrad_step", sfx).c_str(),
          [adagrad_fn, multi](py::handle p, py::handle g, py::handle sum, py::handle step, double lr,
                              double lr_decay, double wd, double eps, bool maximize) {
            adagrad_call(adagrad_fn, multi, p, g, sum, step, lr, lr_decay, wd, eps, maximize);
          });
    const char* rmsprop_fn = multi ? "rmsprop_step_multi" : "rmsprop_step";
    m.def(cat("_rmsprop_step", sfx).c_str(),
          [rmsprop_fn, multi](py::handle p, py::handle g, py::handle sq, py::handle buf, py::handle ga, double lr,
                              double alpha, double eps, double wd, double momentum, bool centered, bool maximize) {
            rmsprop_call(rmsprop_fn, multi, p, g, sq, buf, ga, lr, alpha, eps, wd, momentum, centered, maximize);
          });
    const char* adadelta_fn = multi ? "adadelta_step_multi" : "adadelta_step";
    m.def(cat("_adadelta_step", sfx).c_str(),
          [adadelta_fn, multi](py::handle p, py::handle g, py::handle sq, py::handle acc, double lr, double rho,
                               double eps, double wd, bool maximize) {
            adadelta_call(adadelta_fn, multi, p, g, sq, acc, lr, rho, eps, wd, maximize);
          });
  }
  m.def("_grad_norm", &grad_norm_call);
  m.def("_clip_grad_norm", &clip_grad_norm_call);
  m.def("_clip_grad_value", &clip_grad_value_call);
}

}  // namespace bind
}  // namespace nnkern
