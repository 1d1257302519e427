// Losses: nk.mse_loss, nk.cross_entropy, nk.binary_cross_entropy_with_logits, their *_backward and
// fused *_forward_backward forms. Validation lives here; the maths in csrc/nnkern/loss.cc.
#include <cmath>
#include <cstring>
#include <limits>
#include <string>

#include "arrays.h"
#include "nnkern/loss.h"

namespace nnkern {
namespace bind {
namespace {

enum class Reduction { kMean, kSum, kNone };

Reduction parse_reduction(const std::string& r, const char* fn) {
  if (r == "mean") return Reduction::kMean;
  if (r == "sum") return Reduction::kSum;
  if (r == "none") return Reduction::kNone;
  value_error(fn, "reduction must be 'mean', 'sum' or 'none', got '", r, "'");
}

// What a Python call asks for.
enum class Pass { kForward, kBackward, kBoth };

// grad_output: a scalar for 'mean'/'sum'; a scalar or an array shaped like the loss for 'none'.
template <class T>
struct GradOutput {
  double scalar = 1.0;
  py::array_t<T> vec;
  bool has_vec = false;
};

template <class T>
GradOutput<T> grad_output_arg(py::handle g, Reduction red, const std::vector<index_t>& loss_shape, const char* fn,
                              const char* dtype_from) {
  GradOutput<T> go;
  const bool is_array = py::isinstance<py::array>(g) && py::reinterpret_borrow<py::array>(g).ndim() > 0;
  if (is_array) {
    if (red != Reduction::kNone) {
      value_error(fn, "grad_output must be a scalar for reduction='", red == Reduction::kMean ? "mean" : "sum",
                  "' (the loss is a scalar), got an array of shape ", shape_str(py::reinterpret_borrow<py::array>(g)));
    }
    go.vec = input<T>(g, fn, "grad_output", dtype_from);
    if (shape_of(go.vec) != loss_shape) {
      value_error(fn, "grad_output has shape ", shape_str(go.vec), ", expected ", shape_str(loss_shape),
                  " (the shape of the loss for reduction='none') or a scalar");
    }
    go.has_vec = true;
    return go;
  }
  try {
    go.scalar = py::float_(py::reinterpret_borrow<py::object>(g)).cast<double>();
  } catch (const py::error_already_set&) {
    type_error(fn, "grad_output must be a number or a numpy array, got ", type_name(g));
  }
  return go;
}

py::object loss_scalar(double v, bool f32) {
  return py::float_(f32 ? static_cast<double>(static_cast<float>(v)) : v);
}

// The gradient buffer: out= checked like an in-place buffer, or a fresh array. It may be the exact
// same array as `like` (e.g. dlogits written over logits); `also_alias` may be aliased exactly
// too (elementwise losses); it must not share memory with anything else.
template <class T>
py::array_t<T> grad_out(py::handle out, const py::array& like, const char* fn, const char* like_name,
                        std::initializer_list<std::pair<const py::array*, const char*>> also_alias,
                        std::initializer_list<std::pair<const py::array*, const char*>> others) {
  py::array_t<T> g = output<T>(out, shape_of(like), fn);
  check_no_overlap(g, like, fn, "out", like_name, /*allow_alias=*/true);
  for (const auto& o : also_alias) {
    if (o.first != nullptr) check_no_overlap(g, *o.first, fn, "out", o.second, /*allow_alias=*/true);
  }
  for (const auto& o : others) {
    if (o.first != nullptr) check_no_overlap(g, *o.first, fn, "out", o.second);
  }
  return g;
}

// Builds the Python result: loss (float or array), gradient, or (loss, gradient).
py::object result(Pass pass, py::object loss, py::object grad) {
  if (pass == Pass::kForward) return loss;
  if (pass == Pass::kBackward) return grad;
  return py::make_tuple(loss, grad);
}

// --- MSE -----------------------------------------------------------------------------------------

template <class T>
py::object mse_impl(Pass pass, const char* fn, py::handle pred_obj, py::handle target_obj, const std::string& red_s,
                    py::handle g_obj, py::handle out_obj) {
  const Reduction red = parse_reduction(red_s, fn);
  py::array_t<T> pred = input<T>(pred_obj, fn, "pred");
  py::array_t<T> target = input<T>(target_obj, fn, "target", "pred");
  check_same_shape(pred, target, fn, "pred", "target");
  const index_t n = pred.size();
  GradOutput<T> go;
  py::array_t<T> grad;
  if (pass != Pass::kForward) {
    go = grad_output_arg<T>(g_obj, red, shape_of(pred), fn, "pred");
    const py::array* gv = go.has_vec ? &go.vec : nullptr;
    grad = grad_out<T>(out_obj, pred, fn, "pred", {{&target, "target"}, {gv, "grad_output"}}, {});
  }
  py::array_t<T> loss_none;
  LossOutputs o;
  o.grad = pass != Pass::kForward;
  if (pass != Pass::kBackward) {
    if (red == Reduction::kNone) {
      o.none = true;
      loss_none = py::array_t<T>(shape_of(pred));
    } else {
      o.sum = true;
    }
  }
  const double norm = red == Reduction::kMean ? 1.0 / static_cast<double>(n) : 1.0;
  const T gscale = static_cast<T>(go.scalar * norm);
  T* pl = o.none ? loss_none.mutable_data() : nullptr;
  T* pg = o.grad ? grad.mutable_data() : nullptr;
  const T* pp = pred.data();
  const T* pt = target.data();
  const T* pgv = go.has_vec ? go.vec.data() : nullptr;
  double total;
  {
    py::gil_scoped_release nogil;
    total = mse_loss<T>(o, pl, pg, pp, pt, pgv, n, gscale);
  }
  py::object loss = py::none();
  if (pass != Pass::kBackward) {
    if (red == Reduction::kNone) {
      loss = loss_none;
    } else {
      loss = loss_scalar(red == Reduction::kMean ? total / static_cast<double>(n) : total, sizeof(T) == 4);
    }
  }
  return result(pass, loss, o.grad ? py::object(grad) : py::none());
}

// --- cross-entropy -------------------------------------------------------------------------------

std::string index_str(index_t flat, const std::vector<index_t>& shape) {
  if (shape.empty()) return "target";
  std::vector<index_t> idx(shape.size());
  for (size_t k = shape.size(); k-- > 0;) {
    idx[k] = shape[k] > 0 ? flat % shape[k] : 0;
    flat = shape[k] > 0 ? flat / shape[k] : 0;
  }
  std::string s = "target[";
  for (size_t k = 0; k < idx.size(); ++k) s += (k ? ", " : "") + std::to_string(idx[k]);
  return s + "]";
}

template <class T>
py::object cross_entropy_impl(Pass pass, const char* fn, py::handle logits_obj, py::handle target_obj,
                              py::handle weight_obj, long long ignore_index, const std::string& red_s,
                              double label_smoothing, py::handle g_obj, py::handle out_obj) {
  const Reduction red = parse_reduction(red_s, fn);
  py::array_t<T> logits = input<T>(logits_obj, fn, "logits");
  py::array_t<std::int64_t> target = index_input(target_obj, fn, "target");
  if (logits.ndim() < 1) value_error(fn, "logits has 0 dims, expected (C,), (N, C) or (N, C, d1, ...)");
  // Shapes: logits (N, C, d1, ...) with target (N, d1, ...), or logits (C,) with a 0-d target.
  const bool single = logits.ndim() == 1;
  const index_t C = single ? logits.shape(0) : logits.shape(1);
  const index_t N = single ? 1 : logits.shape(0);
  index_t inner = 1;
  std::vector<index_t> tshape;
  if (!single) {
    tshape.push_back(N);
    for (py::ssize_t d = 2; d < logits.ndim(); ++d) {
      inner *= logits.shape(d);
      tshape.push_back(logits.shape(d));
    }
  }
  if (shape_of(target) != tshape) {
    value_error(fn, "target has shape ", shape_str(target), ", expected ", shape_str(tshape),
                single ? " (a 0-d class index for logits of shape (C,))"
                       : " (logits shape without the class dim 1)");
  }
  if (C < 1) value_error(fn, "logits has ", C, " classes (dim ", single ? 0 : 1, " is empty), expected at least 1");
  if (!(label_smoothing >= 0.0 && label_smoothing <= 1.0)) {
    value_error(fn, "label_smoothing must be in [0.0, 1.0], got ", label_smoothing);
  }
  py::array_t<T> weight;
  const bool has_weight = !weight_obj.is_none();
  if (has_weight) {
    weight = input<T>(weight_obj, fn, "weight", "logits");
    if (weight.ndim() != 1 || weight.shape(0) != C) {
      value_error(fn, "weight has shape ", shape_str(weight), ", expected (", C, ",) (one weight per class)");
    }
  }
  const index_t M = N * inner;
  const std::int64_t* pt = target.data();
  const index_t bad = cross_entropy_first_bad_target(pt, M, C, ignore_index);
  if (bad >= 0) {
    value_error(fn, index_str(bad, tshape), " = ", pt[bad], " is out of range for ", C,
                " classes (expected 0 <= target < ", C, " or ignore_index=", ignore_index, ")");
  }
  GradOutput<T> go;
  py::array_t<T> grad;
  if (pass != Pass::kForward) {
    go = grad_output_arg<T>(g_obj, red, tshape, fn, "logits");
    const py::array* gv = go.has_vec ? &go.vec : nullptr;
    const py::array* pw = has_weight ? &weight : nullptr;
    grad = grad_out<T>(out_obj, logits, fn, "logits", {}, {{pw, "weight"}, {gv, "grad_output"}, {&target, "target"}});
  }
  LossOutputs o;
  o.grad = pass != Pass::kForward;
  py::array_t<T> loss_none;
  if (pass != Pass::kBackward) {
    if (red == Reduction::kNone) {
      o.none = true;
      loss_none = py::array_t<T>(tshape);
    } else {
      o.sum = true;
    }
  }
  const T* pw = has_weight ? weight.data() : nullptr;
  double wtotal = 0.0;
  if (red == Reduction::kMean) {
    py::gil_scoped_release nogil;
    wtotal = cross_entropy_weight_total<T>(pt, M, pw, ignore_index);
  }
  // 'mean' divides by the total target weight (0 -> NaN loss, zero gradient, as torch).
  const double gs = red == Reduction::kMean ? go.scalar / wtotal : go.scalar;
  const T gscale = static_cast<T>(gs);
  const T* pz = logits.data();
  T* pl = o.none ? loss_none.mutable_data() : nullptr;
  T* pg = o.grad ? grad.mutable_data() : nullptr;
  const T* pgv = go.has_vec ? go.vec.data() : nullptr;
  double total;
  {
    py::gil_scoped_release nogil;
    total = cross_entropy<T>(o, pl, pg, pz, pt, pw, pgv, N, C, inner, ignore_index, static_cast<T>(label_smoothing),
                             gscale);
  }
  py::object loss = py::none();
  if (pass != Pass::kBackward) {
    if (red == Reduction::kNone) {
      loss = loss_none;
    } else {
      loss = loss_scalar(red == Reduction::kMean ? total / wtotal : total, sizeof(T) == 4);
    }
  }
  return result(pass, loss, o.grad ? py::object(grad) : py::none());
}

// --- BCE with logits -----------------------------------------------------------------------------

// weight / pos_weight broadcast from the trailing dims of x: after dropping leading 1s, their
// shape must equal the last dims of x (or they hold one element). Returns the period (size).
index_t trailing_period(const py::array& w, const py::array& x, const char* fn, const char* name) {
  if (w.size() == 1) return 1;
  py::ssize_t lead = 0;
  while (lead < w.ndim() && w.shape(lead) == 1) ++lead;
  const py::ssize_t k = w.ndim() - lead;
  bool ok = k <= x.ndim();
  for (py::ssize_t i = 0; ok && i < k; ++i) ok = w.shape(lead + i) == x.shape(x.ndim() - k + i);
  if (!ok) {
    value_error(fn, name, " has shape ", shape_str(w), ", which does not match the trailing dims of x ", shape_str(x),
                " (nk.binary_cross_entropy_with_logits broadcasts other shapes first)");
  }
  return w.size();
}

template <class T>
py::object bce_impl(Pass pass, const char* fn, py::handle x_obj, py::handle target_obj, py::handle weight_obj,
                    py::handle pos_obj, const std::string& red_s, py::handle g_obj, py::handle out_obj) {
  const Reduction red = parse_reduction(red_s, fn);
  py::array_t<T> x = input<T>(x_obj, fn, "x");
  py::array_t<T> target = input<T>(target_obj, fn, "target", "x");
  check_same_shape(x, target, fn, "x", "target");
  const index_t n = x.size();
  py::array_t<T> weight, pos;
  index_t wper = 0, pper = 0;
  if (!weight_obj.is_none()) {
    weight = input<T>(weight_obj, fn, "weight", "x");
    wper = trailing_period(weight, x, fn, "weight");
  }
  if (!pos_obj.is_none()) {
    pos = input<T>(pos_obj, fn, "pos_weight", "x");
    pper = trailing_period(pos, x, fn, "pos_weight");
  }
  GradOutput<T> go;
  py::array_t<T> grad;
  if (pass != Pass::kForward) {
    go = grad_output_arg<T>(g_obj, red, shape_of(x), fn, "x");
    const py::array* gv = go.has_vec ? &go.vec : nullptr;
    const py::array* pw = wper ? &weight : nullptr;
    const py::array* pp = pper ? &pos : nullptr;
    grad = grad_out<T>(out_obj, x, fn, "x", {{&target, "target"}, {gv, "grad_output"}},
                       {{pw, "weight"}, {pp, "pos_weight"}});
  }
  LossOutputs o;
  o.grad = pass != Pass::kForward;
  py::array_t<T> loss_none;
  if (pass != Pass::kBackward) {
    if (red == Reduction::kNone) {
      o.none = true;
      loss_none = py::array_t<T>(shape_of(x));
    } else {
      o.sum = true;
    }
  }
  const double norm = red == Reduction::kMean ? 1.0 / static_cast<double>(n) : 1.0;
  const T gscale = static_cast<T>(go.scalar * norm);
  const T* px = x.data();
  const T* ptg = target.data();
  const T* pw = wper ? weight.data() : nullptr;
  const T* pp = pper ? pos.data() : nullptr;
  T* pl = o.none ? loss_none.mutable_data() : nullptr;
  T* pg = o.grad ? grad.mutable_data() : nullptr;
  const T* pgv = go.has_vec ? go.vec.data() : nullptr;
  double total;
  {
    py::gil_scoped_release nogil;
    total = bce_with_logits<T>(o, pl, pg, px, ptg, pw, wper, pp, pper, pgv, n, gscale);
  }
  py::object loss = py::none();
  if (pass != Pass::kBackward) {
    if (red == Reduction::kNone) {
      loss = loss_none;
    } else {
      loss = loss_scalar(red == Reduction::kMean ? total / static_cast<double>(n) : total, sizeof(T) == 4);
    }
  }
  return result(pass, loss, o.grad ? py::object(grad) : py::none());
}

template <class F>
py::object on_float(py::handle first, const char* fn, const char* name, F&& f) {
  return dispatch_float(first, fn, name, [&](auto t) -> py::object { return f(t); });
}

}  // namespace

void bind_loss(py::module_& m) {
  // --- MSE
  m.def(
      "mse_loss",
      [](py::object pred, py::object target, const std::string& reduction) {
        const char* fn = "mse_loss";
        return on_float(pred, fn, "pred", [&](auto t) {
          return mse_impl<decltype(t)>(Pass::kForward, fn, pred, target, reduction, py::none(), py::none());
        });
      },
      py::arg("pred"), py::arg("target"), py::arg("reduction") = "mean",
      "mse_loss(pred, target, reduction='mean'): mean (or sum, or elementwise for 'none') of\n"
      "(pred - target)^2. Returns a Python float for 'mean'/'sum', an array for 'none'.");
  m.def(
      "mse_loss_backward",
      [](py::object pred, py::object target, const std::string& reduction, py::object grad_output, py::object out) {
        const char* fn = "mse_loss_backward";
        return on_float(pred, fn, "pred", [&](auto t) {
          return mse_impl<decltype(t)>(Pass::kBackward, fn, pred, target, reduction, grad_output, out);
        });
      },
      py::arg("pred"), py::arg("target"), py::arg("reduction") = "mean", py::arg("grad_output") = 1.0,
      py::arg("out") = py::none(),
      "mse_loss_backward(pred, target, reduction='mean', grad_output=1.0, out=None): gradient of the\n"
      "loss with respect to pred, 2 (pred - target) * grad_output (/ n for 'mean'). grad_output is a\n"
      "number, or for 'none' also an array shaped like pred. out= may be pred or target itself.");
  m.def(
      "mse_loss_forward_backward",
      [](py::object pred, py::object target, const std::string& reduction, py::object grad_output, py::object out) {
        const char* fn = "mse_loss_forward_backward";
        return on_float(pred, fn, "pred", [&](auto t) {
          return mse_impl<decltype(t)>(Pass::kBoth, fn, pred, target, reduction, grad_output, out);
        });
      },
      py::arg("pred"), py::arg("target"), py::arg("reduction") = "mean", py::arg("grad_output") = 1.0,
      py::arg("out") = py::none(),
      "mse_loss_forward_backward(...) -> (loss, dpred): mse_loss and mse_loss_backward in one pass.");

  // --- cross-entropy
  m.def(
      "cross_entropy",
      [](py::object logits, py::object target, py::object weight, long long ignore_index, const std::string& reduction,
         double label_smoothing) {
        const char* fn = "cross_entropy";
        return on_float(logits, fn, "logits", [&](auto t) {
          return cross_entropy_impl<decltype(t)>(Pass::kForward, fn, logits, target, weight, ignore_index, reduction,
                                                 label_smoothing, py::none(), py::none());
        });
      },
      py::arg("logits"), py::arg("target"), py::arg("weight") = py::none(), py::arg("ignore_index") = -100,
      py::arg("reduction") = "mean", py::arg("label_smoothing") = 0.0,
      R"doc(cross_entropy(logits, target, weight=None, ignore_index=-100, reduction='mean', label_smoothing=0.0)

Softmax cross-entropy on logits with integer class targets, as torch.nn.functional.cross_entropy:
logits (N, C) with target (N,), or (N, C, d1, ...) with target (N, d1, ...), or (C,) with a 0-d
target. Fused and stable (log-sum-exp). weight: (C,) class weights; rows whose target equals
ignore_index count for nothing; label_smoothing mixes in the uniform distribution as torch does.
'mean' divides by the summed weight of the non-ignored targets. Returns a Python float for
'mean'/'sum', an array shaped like target for 'none'. Targets out of range raise ValueError.)doc");
  m.def(
      "cross_entropy_backward",
      [](py::object logits, py::object target, py::object weight, long long ignore_index, const std::string& reduction,
         double label_smoothing, py::object grad_output, py::object out) {
        const char* fn = "cross_entropy_backward";
        return on_float(logits, fn, "logits", [&](auto t) {
          return cross_entropy_impl<decltype(t)>(Pass::kBackward, fn, logits, target, weight, ignore_index, reduction,
                                                 label_smoothing, grad_output, out);
        });
      },
      py::arg("logits"), py::arg("target"), py::arg("weight") = py::none(), py::arg("ignore_index") = -100,
      py::arg("reduction") = "mean", py::arg("label_smoothing") = 0.0, py::arg("grad_output") = 1.0,
      py::arg("out") = py::none(),
      "cross_entropy_backward(logits, target, ..., grad_output=1.0, out=None): gradient of\n"
      "cross_entropy with respect to the logits. grad_output is a number, or for 'none' also an\n"
      "array shaped like target. out= may be logits itself.");
  m.def(
      "cross_entropy_forward_backward",
      [](py::object logits, py::object target, py::object weight, long long ignore_index, const std::string& reduction,
         double label_smoothing, py::object grad_output, py::object out) {
        const char* fn = "cross_entropy_forward_backward";
        return on_float(logits, fn, "logits", [&](auto t) {
          return cross_entropy_impl<decltype(t)>(Pass::kBoth, fn, logits, target, weight, ignore_index, reduction,
                                                 label_smoothing, grad_output, out);
        });
      },
      py::arg("logits"), py::arg("target"), py::arg("weight") = py::none(), py::arg("ignore_index") = -100,
      py::arg("reduction") = "mean", py::arg("label_smoothing") = 0.0, py::arg("grad_output") = 1.0,
      py::arg("out") = py::none(),
      "cross_entropy_forward_backward(...) -> (loss, dlogits): the loss and its gradient in one pass\n"
      "over the logits (what a training step wants). out= (for dlogits) may be logits itself.");

  // --- BCE with logits
  m.def(
      "binary_cross_entropy_with_logits",
      [](py::object x, py::object target, py::object weight, py::object pos_weight, const std::string& reduction) {
        const char* fn = "binary_cross_entropy_with_logits";
        return on_float(x, fn, "x", [&](auto t) {
          return bce_impl<decltype(t)>(Pass::kForward, fn, x, target, weight, pos_weight, reduction, py::none(),
                                       py::none());
        });
      },
      py::arg("x"), py::arg("target"), py::arg("weight") = py::none(), py::arg("pos_weight") = py::none(),
      py::arg("reduction") = "mean",
      R"doc(binary_cross_entropy_with_logits(x, target, weight=None, pos_weight=None, reduction='mean')

torch's formula on logits x and targets in [0, 1] of the same shape, evaluated stably:
loss = weight * ((1 - t) x + (1 + (pos_weight - 1) t) * log(1 + exp(-x))). weight and pos_weight
broadcast against x from its trailing dims (e.g. pos_weight of shape (C,) for x of shape (N, C)).
Returns a Python float for 'mean'/'sum', an array shaped like x for 'none'.)doc");
  m.def(
      "binary_cross_entropy_with_logits_backward",
      [](py::object x, py::object target, py::object weight, py::object pos_weight, const std::string& reduction,
         py::object grad_output, py::object out) {
        const char* fn = "binary_cross_entropy_with_logits_backward";
        return on_float(x, fn, "x", [&](auto t) {
          return bce_impl<decltype(t)>(Pass::kBackward, fn, x, target, weight, pos_weight, reduction, grad_output, out);
        });
      },
      py::arg("x"), py::arg("target"), py::arg("weight") = py::none(), py::arg("pos_weight") = py::none(),
      py::arg("reduction") = "mean", py::arg("grad_output") = 1.0, py::arg("out") = py::none(),
      "binary_cross_entropy_with_logits_backward(x, target, ..., grad_output=1.0, out=None): gradient\n"
      "with respect to x, weight * ((1 + (pos_weight - 1) t) sigmoid(x) - pos_weight t) * grad_output\n"
      "(/ n for 'mean'). out= may be x or target itself.");
  m.def(
      "binary_cross_entropy_with_logits_forward_backward",
      [](py::object x, py::object target, py::object weight, py::object pos_weight, const std::string& reduction,
         py::object grad_output, py::object out) {
        const char* fn = "binary_cross_entropy_with_logits_forward_backward";
        return on_float(x, fn, "x", [&](auto t) {
          return bce_impl<decltype(t)>(Pass::kBoth, fn, x, target, weight, pos_weight, reduction, grad_output, out);
        });
      },
      py::arg("x"), py::arg("target"), py::arg("weight") = py::none(), py::arg("pos_weight") = py::none(),
      py::arg("reduction") = "mean", py::arg("grad_output") = 1.0, py::arg("out") = py::none(),
      "binary_cross_entropy_with_logits_forward_backward(...) -> (loss, dx) in one pass.");
}

}  // namespace bind
}  // namespace nnkern
