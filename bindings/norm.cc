// Bindings for the norm family: batch norm and dropout (this file), embedding
// (bindings/embedding.cc) and the augmentation warp (bindings/augment.cc), all registered from
// bind_norm so bindings/module.cc needs no change.
#include <cstdint>
#include <utility>
#include <vector>

#include "arrays.h"
#include "norm_helpers.h"
#include "nnkern/norm.h"

namespace nnkern {
namespace bind {

void bind_embedding(py::module_& m);
void bind_augment(py::module_& m);

namespace {

// x of shape (N, C, *): N, C and S = prod(*).
struct NCS {
  index_t N, C, S;
};

NCS ncs_of(const py::array& x, const char* fn, const char* name) {
  if (x.ndim() < 2) {
    value_error(fn, name, " has ", x.ndim(), " dims, expected at least 2 (N, C, ...)");
  }
  NCS d{x.shape(0), x.shape(1), 1};
  for (py::ssize_t i = 2; i < x.ndim(); ++i) d.S *= x.shape(i);
  return d;
}

template <class T>
py::tuple batch_norm_impl(py::handle x_obj, py::handle rm_obj, py::handle rv_obj, py::handle w_obj,
                          py::handle b_obj, bool training, py::handle momentum_obj, double eps,
                          py::handle out_obj, py::handle sm_obj, py::handle si_obj) {
  const char* fn = "batch_norm";
  py::array_t<T> x = input<T>(x_obj, fn, "x");
  const NCS d = ncs_of(x, fn, "x");
  const std::vector<index_t> cshape{d.C};
  const char* per_channel = "(one value per channel: x.shape[1])";

  if (rm_obj.is_none() != rv_obj.is_none()) {
    value_error(fn, "running_mean and running_var must both be arrays or both be None, got ",
                rm_obj.is_none() ? "running_mean=None" : "running_var=None");
  }
  const bool has_running = !rm_obj.is_none();
  if (!training && !has_running) {
    value_error(fn, "running_mean and running_var are required when training=False (eval mode normalises "
                    "with them)");
  }
  if (momentum_obj.is_none()) {
    value_error(fn, "momentum=None (cumulative moving average) is handled by the BatchNorm layers; pass "
                    "momentum=1/num_batches_tracked to the functional form");
  }
  const double momentum = number_arg(momentum_obj, fn, "momentum");
  check_range(momentum, 0.0, 1.0, fn, "momentum", /*hi_inclusive=*/true);
  check_nonneg(eps, fn, "eps");
  const index_t M = d.N * d.S;
  if (training && M == 1) {
    value_error(fn, "expected more than 1 value per channel when training, got x of shape ", shape_str(x),
                " (N * prod(x.shape[2:]) = 1)");
  }

  Buffers bufs(fn);
  bufs.input(x, "x");
  py::array_t<T> rm, rv;
  if (has_running) {
    rm = training ? inplace<T>(rm_obj, fn, "running_mean", "x") : input<T>(rm_obj, fn, "running_mean", "x");
    rv = training ? inplace<T>(rv_obj, fn, "running_var", "x") : input<T>(rv_obj, fn, "running_var", "x");
    check_shape(rm, cshape, fn, "running_mean", per_channel);
    check_shape(rv, cshape, fn, "running_var", per_channel);
    if (training) {
      bufs.written(rm, "running_mean");
      bufs.written(rv, "running_var");
    } else {
      bufs.input(rm, "running_mean");
      bufs.input(rv, "running_var");
    }
  }
  py::array_t<T> w = optional_input<T>(w_obj, cshape, fn, "weight", "x", per_channel);
  py::array_t<T> b = optional_input<T>(b_obj, cshape, fn, "bias", "x", per_channel);
  if (w) bufs.input(w, "weight");
  if (b) bufs.input(b, "bias");
  py::array_t<T> y = output<T>(out_obj, shape_of(x), fn);
  py::array_t<T> sm = output<T>(sm_obj, cshape, fn, "save_mean_out");
  py::array_t<T> si = output<T>(si_obj, cshape, fn, "save_invstd_out");
  bufs.written(y, "out", /*may_alias=*/"x");
  bufs.written(sm, "save_mean_out");
  bufs.written(si, "save_invstd_out");
  bufs.check();

  const T* px = x.data();
  const T* pw = w ? w.data() : nullptr;
  const T* pb = b ? b.data() : nullptr;
  T* py_ = y.mutable_data();
  T* psm = sm.mutable_data();
  T* psi = si.mutable_data();
  if (training) {
    T* prm = has_running ? rm.mutable_data() : nullptr;
    T* prv = has_running ? rv.mutable_data() : nullptr;
    py::gil_scoped_release nogil;
    batch_norm_train_forward<T>(py_, psm, psi, prm, prv, px, pw, pb, d.N, d.C, d.S, momentum, eps);
  } else {
    const T* prm = rm.data();
    const T* prv = rv.data();
    py::gil_scoped_release nogil;
    batch_norm_eval_forward<T>(py_, psm, psi, px, prm, prv, pw, pb, d.N, d.C, d.S, eps);
  }
  return py::make_tuple(y, sm, si);
}

template <class T>
py::tuple batch_norm_backward_impl(py::handle dy_obj, py::handle x_obj, py::handle w_obj,
                                   py::handle sm_obj, py::handle si_obj, bool training,
                                   py::handle out_obj, py::handle dw_obj, py::handle db_obj) {
  const char* fn = "batch_norm_backward";
  py::array_t<T> dy = input<T>(dy_obj, fn, "dy");
  const NCS d = ncs_of(dy, fn, "dy");
  py::array_t<T> x = input<T>(x_obj, fn, "x", "dy");
  check_same_shape(dy, x, fn, "dy", "x");
  const std::vector<index_t> cshape{d.C};
  const char* per_channel = "(one value per channel: dy.shape[1])";
  py::array_t<T> w = optional_input<T>(w_obj, cshape, fn, "weight", "dy", per_channel);
  py::array_t<T> sm = input<T>(sm_obj, fn, "save_mean", "dy");
  py::array_t<T> si = input<T>(si_obj, fn, "save_invstd", "dy");
  check_shape(sm, cshape, fn, "save_mean", per_channel);
  check_shape(si, cshape, fn, "save_invstd", per_channel);

  Buffers bufs(fn);
  bufs.input(dy, "dy");
  bufs.input(x, "x");
  if (w) bufs.input(w, "weight");
  bufs.input(sm, "save_mean");
  bufs.input(si, "save_invstd");
  py::array_t<T> dx = output<T>(out_obj, shape_of(dy), fn);
  py::array_t<T> dw = output<T>(dw_obj, cshape, fn, "dweight_out");
  py::array_t<T> db = output<T>(db_obj, cshape, fn, "dbias_out");
  bufs.written(dx, "out", /*may_alias=*/"dy", "x");
  bufs.written(dw, "dweight_out");
  bufs.written(db, "dbias_out");
  bufs.check();

  const T* pdy = dy.data();
  const T* px = x.data();
  const T* pw = w ? w.data() : nullptr;
  const T* psm = sm.data();
  const T* psi = si.data();
  T* pdx = dx.mutable_data();
  T* pdw = dw.mutable_data();
  T* pdb = db.mutable_data();
  {
    py::gil_scoped_release nogil;
    batch_norm_backward<T>(pdx, pdw, pdb, pdy, px, pw, psm, psi, d.N, d.C, d.S, training);
  }
  return py::make_tuple(dx, dw, db);
}

template <class T>
py::tuple dropout_impl(py::handle x_obj, double p, py::handle seed_obj, py::handle out_obj,
                       py::handle mask_obj) {
  const char* fn = "dropout";
  py::array_t<T> x = input<T>(x_obj, fn, "x");
  check_range(p, 0.0, 1.0, fn, "p", /*hi_inclusive=*/true);
  const std::uint64_t seed = seed_arg(seed_obj, fn, "seed");
  Buffers bufs(fn);
  bufs.input(x, "x");
  py::array_t<T> y = output<T>(out_obj, shape_of(x), fn);
  py::array mask = mask_output(mask_obj, shape_of(x), fn, "mask_out");
  bufs.written(y, "out", /*may_alias=*/"x");
  bufs.written(mask, "mask_out");
  bufs.check();
  const T* px = x.data();
  T* py_ = y.mutable_data();
  auto* pm = static_cast<std::uint8_t*>(mask.mutable_data());
  const index_t n = x.size();
  {
    py::gil_scoped_release nogil;
    dropout_forward<T>(py_, pm, px, n, p, seed);
  }
  return py::make_tuple(y, mask);
}

template <class T>
py::array_t<T> dropout_backward_impl(py::handle dy_obj, py::handle mask_obj, double p, py::handle out_obj) {
  const char* fn = "dropout_backward";
  py::array_t<T> dy = input<T>(dy_obj, fn, "dy");
  check_range(p, 0.0, 1.0, fn, "p", /*hi_inclusive=*/true);
  py::array mask = mask_input(mask_obj, fn, "mask");
  if (shape_of(mask) != shape_of(dy)) {
    value_error(fn, "mask has shape ", shape_str(mask), ", expected ", shape_str(dy), " (the shape of dy)");
  }
  Buffers bufs(fn);
  bufs.input(dy, "dy");
  bufs.input(mask, "mask");
  py::array_t<T> dx = output<T>(out_obj, shape_of(dy), fn);
  bufs.written(dx, "out", /*may_alias=*/"dy");
  bufs.check();
  const T* pdy = dy.data();
  const auto* pm = static_cast<const std::uint8_t*>(mask.data());
  T* pdx = dx.mutable_data();
  const index_t n = dy.size();
  {
    py::gil_scoped_release nogil;
    dropout_backward<T>(pdx, pdy, pm, n, p);
  }
  return dx;
}

}  // namespace

void bind_norm(py::module_& m) {
  m.def(
      "batch_norm",
      [](py::object x, py::object running_mean, py::object running_var, py::object weight, py::object bias,
         bool training, py::object momentum, double eps, py::object out, py::object save_mean_out,
         py::object save_invstd_out) -> py::object {
        return dispatch_float(x, "batch_norm", "x", [&](auto t) -> py::object {
          using T = decltype(t);
          return batch_norm_impl<T>(x, running_mean, running_var, weight, bias, training, momentum, eps, out,
                                    save_mean_out, save_invstd_out);
        });
      },
      py::arg("x"), py::arg("running_mean"), py::arg("running_var"), py::arg("weight") = py::none(),
      py::arg("bias") = py::none(), py::arg("training") = false, py::arg("momentum") = 0.1,
      py::arg("eps") = 1e-5, py::kw_only(), py::arg("out") = py::none(), py::arg("save_mean_out") = py::none(),
      py::arg("save_invstd_out") = py::none(),
      R"doc(Batch normalisation of x (N, C, *) per channel, as torch.nn.functional.batch_norm.

Returns (y, save_mean, save_invstd); pass the last two to batch_norm_backward.

training=True: y = (x - mean) / sqrt(var + eps) * weight + bias with the batch mean and biased
batch variance over (N, *); save_mean = mean, save_invstd = 1/sqrt(var + eps). When running_mean
and running_var are given (both, or neither) they are updated in place:
running = (1 - momentum) * running + momentum * batch_stat, with the unbiased variance for
running_var. Needs more than one value per channel (an empty batch leaves them unchanged).
training=False: normalises with running_mean/running_var (required); save_mean = running_mean,
save_invstd = 1/sqrt(running_var + eps).

weight and bias are optional (C,) arrays (absent: 1 and 0). momentum is a number in [0, 1]
(the layers turn torch's momentum=None into 1/num_batches_tracked). out= may be x itself;
save_mean_out=/save_invstd_out= receive the saved statistics. Statistics are reduced in a fixed
order (double accumulation for float32): results are bitwise identical for any thread count.)doc");

  m.def(
      "batch_norm_backward",
      [](py::object dy, py::object x, py::object weight, py::object save_mean, py::object save_invstd,
         bool training, py::object out, py::object dweight_out, py::object dbias_out) -> py::object {
        return dispatch_float(dy, "batch_norm_backward", "dy", [&](auto t) -> py::object {
          using T = decltype(t);
          return batch_norm_backward_impl<T>(dy, x, weight, save_mean, save_invstd, training, out, dweight_out,
                                             dbias_out);
        });
      },
      py::arg("dy"), py::arg("x"), py::arg("weight"), py::arg("save_mean"), py::arg("save_invstd"),
      py::arg("training") = true, py::kw_only(), py::arg("out") = py::none(),
      py::arg("dweight_out") = py::none(), py::arg("dbias_out") = py::none(),
      R"doc(Gradients of batch_norm: returns (dx, dweight, dbias).

save_mean and save_invstd are the values batch_norm returned for the same x (and mode).
dbias = sum(dy), dweight = sum(dy * (x - save_mean) * save_invstd) over (N, *);
training=True: dx = w*invstd*(dy - mean(dy) - (x - mean)*invstd^2*mean(dy*(x - mean))) (torch's
formula, the batch statistics depend on x); training=False: dx = w*invstd*dy. weight may be None
(treated as 1; dweight is still returned). out= may be dy or x itself.)doc");

  m.def(
      "dropout",
      [](py::object x, double p, py::object seed, py::object out, py::object mask_out) -> py::object {
        return dispatch_float(x, "dropout", "x", [&](auto t) -> py::object {
          using T = decltype(t);
          return dropout_impl<T>(x, p, seed, out, mask_out);
        });
      },
      py::arg("x"), py::arg("p"), py::arg("seed"), py::kw_only(), py::arg("out") = py::none(),
      py::arg("mask_out") = py::none(),
      R"doc(Inverted dropout: returns (y, mask) with y = x * mask / (1 - p).

Each element is dropped with probability p (0 <= p <= 1; p=1 drops everything and y = x * 0).
mask (bool, shaped like x) marks the kept elements; pass it to dropout_backward. The mask is a
pure function of (seed, element index), 0 <= seed < 2**64: with the flat index
i = block * 2**32 + c and (k0, k1) the low/high halves of SplitMix64 output number block+1 for
state seed, element i is dropped when mix32(mix32(c + k0) ^ k1) < round(p * 2**32), mix32 being
the 'lowbias32' 32-bit mixer. So the mask is identical for any thread count and SIMD level, and
nnkern.reference.dropout reproduces it. out= may be x itself; mask_out= may be a bool or uint8 array.)doc");

  m.def(
      "dropout_backward",
      [](py::object dy, py::object mask, double p, py::object out) -> py::object {
        return dispatch_float(dy, "dropout_backward", "dy", [&](auto t) -> py::object {
          using T = decltype(t);
          return dropout_backward_impl<T>(dy, mask, p, out);
        });
      },
      py::arg("dy"), py::arg("mask"), py::arg("p"), py::kw_only(), py::arg("out") = py::none(),
      R"doc(Gradient of dropout: dx = dy * mask / (1 - p) (0 where the mask is False, and 0
everywhere when p == 1). mask is the bool (or uint8) array dropout returned; out= may be dy.)doc");

  bind_embedding(m);
  bind_augment(m);
}

}  // namespace bind
}  // namespace nnkern
