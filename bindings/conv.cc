// Bindings for the conv family: conv2d/conv1d forward and backward, im2col, col2im.
//
// Python (python/nnkern/ops/conv.py) normalises stride/padding/dilation (ints, tuples, 'same',
// 'valid') into tuples: stride and dilation one entry per spatial dim, padding two per dim
// (before, after), so asymmetric 'same' padding reaches the kernel exactly. Everything is checked
// again here, since _core can be called directly.
#include <string>
#include <vector>

#include <pybind11/stl.h>

#include "arrays.h"
#include "nnkern/conv.h"
#include "nnkern/gemm.h"

namespace nnkern {
namespace bind {
namespace {

using Ints = std::vector<index_t>;

// Largest spatial option accepted (stride, padding, dilation): keeps every size sum in 64 bits.
constexpr index_t kMaxOption = kGemmMaxDim;
// Largest element count of any array we create.
constexpr double kMaxElements = 4.0e18;

const char* x_dims(int nd) { return nd == 2 ? "(N, C, H, W)" : "(N, C, L)"; }
const char* w_dims(int nd) {
  return nd == 2 ? "(out_channels, in_channels/groups, kH, kW)" : "(out_channels, in_channels/groups, kL)";
}

struct Options {
  Ints stride, padding, dilation;  // padding: (before, after) per spatial dim
};

// Spatial options of an nd-dimensional convolution, checked.
void check_options(const char* fn, int nd, const Options& o) {
  if (static_cast<int>(o.stride.size()) != nd) {
    value_error(fn, "stride must have ", nd, " entries, got ", shape_str(o.stride));
  }
  if (static_cast<int>(o.dilation.size()) != nd) {
    value_error(fn, "dilation must have ", nd, " entries, got ", shape_str(o.dilation));
  }
  if (static_cast<int>(o.padding.size()) != 2 * nd) {
    value_error(fn, "padding must have ", 2 * nd, " entries (before, after per spatial dim), got ",
                shape_str(o.padding));
  }
  for (index_t v : o.stride) {
    if (v < 1 || v > kMaxOption) value_error(fn, "stride must be in [1, ", kMaxOption, "], got ", shape_str(o.stride));
  }
  for (index_t v : o.dilation) {
    if (v < 1 || v > kMaxOption) {
      value_error(fn, "dilation must be in [1, ", kMaxOption, "], got ", shape_str(o.dilation));
    }
  }
  for (index_t v : o.padding) {
    if (v < 0 || v > kMaxOption) {
      value_error(fn, "padding must be in [0, ", kMaxOption, "], got ", shape_str(o.padding));
    }
  }
}

// Output size of one spatial dim; raises if the dilated kernel does not fit the padded input.
index_t out_size(const char* fn, const char* dim, index_t in, index_t k, index_t s, index_t pb, index_t pa,
                 index_t d) {
  const index_t span = d * (k - 1) + 1;  // k, d < 2^31: no overflow
  const index_t padded = in + pb + pa;
  if (span > padded) {
    value_error(fn, "kernel size ", k, " with dilation ", d, " spans ", span, " ", dim,
                " elements, more than the padded input (", in, " + padding ", pb, " + ", pa, " = ", padded,
                "): the kernel must fit inside the padded input");
  }
  const index_t o = (padded - span) / s + 1;
  if (o > kGemmMaxDim) value_error(fn, "output ", dim, " size ", o, " exceeds ", kGemmMaxDim);
  return o;
}

void check_elements(const char* fn, const char* what, std::initializer_list<index_t> dims) {
  double n = 1.0;
  for (index_t d : dims) n *= static_cast<double>(d);
  if (n > kMaxElements) value_error(fn, what, " would have ", n, " elements: too large");
}

// Geometry from shapes (x [N, C, (H,) W], w [OC, C/G, (KH,) KW]), everything checked.
ConvGeom make_geom(const char* fn, int nd, const Ints& xs, const Ints& ws, index_t groups, const Options& o) {
  check_options(fn, nd, o);
  if (groups < 1) value_error(fn, "groups must be >= 1, got ", groups);
  ConvGeom g;
  g.N = xs[0];
  g.C = xs[1];
  g.H = nd == 2 ? xs[2] : 1;
  g.W = xs[nd + 1];
  g.OC = ws[0];
  g.KH = nd == 2 ? ws[2] : 1;
  g.KW = ws[nd + 1];
  g.G = groups;
  if (g.C % groups != 0) value_error(fn, "x has ", g.C, " channels (dim 1), not divisible by groups=", groups);
  if (g.OC % groups != 0) {
    value_error(fn, "w has ", g.OC, " output channels (dim 0), not divisible by groups=", groups);
  }
  if (ws[1] != g.C / groups) {
    value_error(fn, "w has shape ", shape_str(ws), ": dim 1 must be in_channels/groups = ", g.C, "/", groups, " = ",
                g.C / groups, " (x has ", g.C, " channels)");
  }
  if (g.KH < 1 || g.KW < 1) value_error(fn, "w has shape ", shape_str(ws), ": the kernel must be >= 1 in every dim");
  g.OH = 1;  // conv1d: one row (H = KH = 1, stride/dilation 1, no padding)
  if (nd == 2) {
    g.SH = o.stride[0];
    g.DH = o.dilation[0];
    g.PH = o.padding[0];
    g.OH = out_size(fn, "rows", g.H, g.KH, g.SH, o.padding[0], o.padding[1], g.DH);
  }
  const int iw = nd == 2 ? 1 : 0;
  g.SW = o.stride[iw];
  g.DW = o.dilation[iw];
  g.PW = o.padding[2 * iw];
  g.OW = out_size(fn, nd == 2 ? "columns" : "elements", g.W, g.KW, g.SW, o.padding[2 * iw], o.padding[2 * iw + 1],
                  g.DW);
  if (g.P() > kGemmMaxDim) value_error(fn, "output has ", g.P(), " pixels per image, more than ", kGemmMaxDim);
  if (g.K() > kGemmMaxDim) value_error(fn, "in_channels*kernel size ", g.K(), " exceeds ", kGemmMaxDim);
  check_elements(fn, "the output", {g.N, g.OC, g.P()});
  return g;
}

Ints out_shape(int nd, const ConvGeom& g) {
  return nd == 2 ? Ints{g.N, g.OC, g.OH, g.OW} : Ints{g.N, g.OC, g.OW};
}

template <class T>
py::array_t<T> checked_input(py::handle obj, const char* fn, const char* name, int ndim, const char* dims,
                             const char* dtype_from) {
  py::array_t<T> a = input<T>(obj, fn, name, dtype_from);
  check_ndim(a, ndim, fn, name, dims);
  return a;
}

template <class T>
py::object forward_impl(const char* fn, int nd, py::handle x_obj, py::handle w_obj, py::handle b_obj,
                        const Options& o, index_t groups, py::handle out_obj) {
  auto x = checked_input<T>(x_obj, fn, "x", nd + 2, x_dims(nd), nullptr);
  auto w = checked_input<T>(w_obj, fn, "w", nd + 2, w_dims(nd), "x");
  const ConvGeom g = make_geom(fn, nd, shape_of(x), shape_of(w), groups, o);
  py::array_t<T> b;
  const bool has_b = !b_obj.is_none();
  if (has_b) {
    b = input<T>(b_obj, fn, "b", "x");
    check_shape(b, {g.OC}, fn, "b", "(out_channels,)");
  }
  py::array_t<T> y = output<T>(out_obj, out_shape(nd, g), fn);
  check_no_overlap(y, x, fn, "out", "x");
  check_no_overlap(y, w, fn, "out", "w");
  if (has_b) check_no_overlap(y, b, fn, "out", "b");
  T* py_ = y.mutable_data();
  const T* px = x.data();
  const T* pw = w.data();
  const T* pb = has_b ? b.data() : nullptr;
  {
    py::gil_scoped_release nogil;
    conv2d_forward<T>(py_, px, pw, pb, g);
  }
  return std::move(y);
}

template <class T>
py::tuple backward_impl(const char* fn, int nd, py::handle dy_obj, py::handle x_obj, py::handle w_obj,
                        const Options& o, index_t groups, bool need_dx, bool need_dw, bool need_db,
                        py::handle dx_obj, py::handle dw_obj, py::handle db_obj, bool accumulate) {
  auto dy = checked_input<T>(dy_obj, fn, "dy", nd + 2, "(N, out_channels, output size...)", nullptr);
  auto x = checked_input<T>(x_obj, fn, "x", nd + 2, x_dims(nd), "dy");
  auto w = checked_input<T>(w_obj, fn, "w", nd + 2, w_dims(nd), "dy");
  const ConvGeom g = make_geom(fn, nd, shape_of(x), shape_of(w), groups, o);
  check_shape(dy, out_shape(nd, g), fn, "dy", "(the output shape of the convolution)");
  struct Out {
    const char* name;
    bool need;
    py::handle obj;
    Ints shape;
    py::array_t<T> arr;
  } outs[3] = {{"dx_out", need_dx, dx_obj, shape_of(x), {}},
               {"dw_out", need_dw, dw_obj, shape_of(w), {}},
               {"db_out", need_db, db_obj, Ints{g.OC}, {}}};
  const char* need_names[3] = {"need_dx", "need_dw", "need_db"};
  for (int i = 0; i < 3; ++i) {
    Out& e = outs[i];
    if (!e.need) {
      if (!e.obj.is_none()) value_error(fn, e.name, " was given but ", need_names[i], "=False");
      continue;
    }
    if (accumulate && i > 0 && e.obj.is_none()) {
      value_error(fn, "accumulate=True needs ", e.name, "= (the gradient buffer to add into)");
    }
    e.arr = output<T>(e.obj, e.shape, fn, e.name);
    check_no_overlap(e.arr, dy, fn, e.name, "dy");
    check_no_overlap(e.arr, x, fn, e.name, "x");
    check_no_overlap(e.arr, w, fn, e.name, "w");
    for (int j = 0; j < i; ++j) {
      if (outs[j].need) check_no_overlap(e.arr, outs[j].arr, fn, e.name, outs[j].name);
    }
  }
  T* pdx = need_dx ? outs[0].arr.mutable_data() : nullptr;
  T* pdw = need_dw ? outs[1].arr.mutable_data() : nullptr;
  T* pdb = need_db ? outs[2].arr.mutable_data() : nullptr;
  const T* pdy = dy.data();
  const T* px = x.data();
  const T* pw = w.data();
  {
    py::gil_scoped_release nogil;
    conv2d_backward<T>(pdx, pdw, pdb, pdy, px, pw, g, accumulate);
  }
  auto res = [](Out& e) -> py::object { return e.need ? py::object(e.arr) : py::object(py::none()); };
  return py::make_tuple(res(outs[0]), res(outs[1]), res(outs[2]));
}

// Geometry of im2col/col2im: x [N, C, H, W] and a kernel (KH, KW) (no weight, one group).
ConvGeom unfold_geom(const char* fn, const Ints& xs, const Ints& kernel, const Options& o) {
  if (kernel.size() != 2) value_error(fn, "kernel_size must have 2 entries, got ", shape_str(kernel));
  for (index_t k : kernel) {
    if (k < 1 || k > kGemmMaxDim) value_error(fn, "kernel_size must be in [1, ", kGemmMaxDim, "], got ", shape_str(kernel));
  }
  ConvGeom g = make_geom(fn, 2, xs, Ints{0, xs[1], kernel[0], kernel[1]}, 1, o);
  check_elements(fn, "the column array", {g.N, g.K(), g.P()});
  return g;
}

template <class T>
py::object im2col_impl(py::handle x_obj, const Ints& kernel, const Options& o, py::handle out_obj) {
  const char* fn = "im2col";
  auto x = checked_input<T>(x_obj, fn, "x", 4, "(N, C, H, W)", nullptr);
  const ConvGeom g = unfold_geom(fn, shape_of(x), kernel, o);
  py::array_t<T> col = output<T>(out_obj, Ints{g.N, g.K(), g.P()}, fn);
  check_no_overlap(col, x, fn, "out", "x");
  T* pc = col.mutable_data();
  const T* px = x.data();
  {
    py::gil_scoped_release nogil;
    im2col<T>(pc, px, g);
  }
  return std::move(col);
}

template <class T>
py::object col2im_impl(py::handle col_obj, const Ints& size, const Ints& kernel, const Options& o,
                       py::handle out_obj) {
  const char* fn = "col2im";
  auto col = checked_input<T>(col_obj, fn, "cols", 3, "(N, C*kH*kW, L)", nullptr);
  if (size.size() != 2) value_error(fn, "output_size must have 2 entries (H, W), got ", shape_str(size));
  for (index_t s : size) {
    if (s < 1 || s > kGemmMaxDim) value_error(fn, "output_size must be in [1, ", kGemmMaxDim, "], got ", shape_str(size));
  }
  if (kernel.size() != 2) value_error(fn, "kernel_size must have 2 entries, got ", shape_str(kernel));
  for (index_t k : kernel) {
    if (k < 1 || k > kGemmMaxDim) value_error(fn, "kernel_size must be in [1, ", kGemmMaxDim, "], got ", shape_str(kernel));
  }
  const index_t kk = kernel[0] * kernel[1];
  if (col.shape(1) % kk != 0) {
    value_error(fn, "cols has ", col.shape(1), " rows (dim 1), not a multiple of kH*kW for kernel_size ",
                shape_str(kernel));
  }
  const index_t C = col.shape(1) / kk;
  const ConvGeom g = unfold_geom(fn, Ints{col.shape(0), C, size[0], size[1]}, kernel, o);
  check_shape(col, Ints{g.N, g.K(), g.P()}, fn, "cols", "(N, C*kH*kW, L) with L the number of kernel positions");
  py::array_t<T> x = output<T>(out_obj, Ints{g.N, g.C, g.H, g.W}, fn);
  check_no_overlap(x, col, fn, "out", "cols");
  T* px = x.mutable_data();
  const T* pc = col.data();
  {
    py::gil_scoped_release nogil;
    col2im<T>(px, pc, g);
  }
  return std::move(x);
}

Options options(const Ints& stride, const Ints& padding, const Ints& dilation) {
  return Options{stride, padding, dilation};
}

}  // namespace

void bind_conv(py::module_& m) {
  for (int nd : {1, 2}) {
    const char* fwd = nd == 2 ? "conv2d" : "conv1d";
    const char* bwd = nd == 2 ? "conv2d_backward" : "conv1d_backward";
    m.def(
        nd == 2 ? "_conv2d" : "_conv1d",
        [fwd, nd](py::object x, py::object w, py::object b, const Ints& stride, const Ints& padding,
                  const Ints& dilation, index_t groups, py::object out) -> py::object {
          const Options o = options(stride, padding, dilation);
          return dispatch_float(x, fwd, "x", [&](auto t) -> py::object {
            return forward_impl<decltype(t)>(fwd, nd, x, w, b, o, groups, out);
          });
        },
        py::arg("x"), py::arg("w"), py::arg("b"), py::arg("stride"), py::arg("padding"), py::arg("dilation"),
        py::arg("groups"), py::arg("out") = py::none(),
        "Normalised convolution forward (use nnkern.conv2d / conv1d): padding is (before, after) per dim.");
    m.def(
        nd == 2 ? "_conv2d_backward" : "_conv1d_backward",
        [bwd, nd](py::object dy, py::object x, py::object w, const Ints& stride, const Ints& padding,
                  const Ints& dilation, index_t groups, bool need_dx, bool need_dw, bool need_db,
                  py::object dx_out, py::object dw_out, py::object db_out, bool accumulate) -> py::tuple {
          const Options o = options(stride, padding, dilation);
          return dispatch_float(dy, bwd, "dy", [&](auto t) -> py::tuple {
            return backward_impl<decltype(t)>(bwd, nd, dy, x, w, o, groups, need_dx, need_dw, need_db, dx_out,
                                              dw_out, db_out, accumulate);
          });
        },
        py::arg("dy"), py::arg("x"), py::arg("w"), py::arg("stride"), py::arg("padding"), py::arg("dilation"),
        py::arg("groups"), py::arg("need_dx") = true, py::arg("need_dw") = true, py::arg("need_db") = true,
        py::arg("dx_out") = py::none(), py::arg("dw_out") = py::none(), py::arg("db_out") = py::none(),
        py::arg("accumulate") = false,
        "Normalised convolution backward (use nnkern.conv2d_backward / conv1d_backward).");
  }
  m.def(
      "_im2col",
      [](py::object x, const Ints& kernel, const Ints& stride, const Ints& padding, const Ints& dilation,
         py::object out) -> py::object {
        const Options o = options(stride, padding, dilation);
        return dispatch_float(x, "im2col", "x", [&](auto t) -> py::object {
          return im2col_impl<decltype(t)>(x, kernel, o, out);
        });
      },
      py::arg("x"), py::arg("kernel_size"), py::arg("stride"), py::arg("padding"), py::arg("dilation"),
      py::arg("out") = py::none());
  m.def(
      "_col2im",
      [](py::object cols, const Ints& size, const Ints& kernel, const Ints& stride, const Ints& padding,
         const Ints& dilation, py::object out) -> py::object {
        const Options o = options(stride, padding, dilation);
        return dispatch_float(cols, "col2im", "cols", [&](auto t) -> py::object {
          return col2im_impl<decltype(t)>(cols, size, kernel, o, out);
        });
      },
      py::arg("cols"), py::arg("output_size"), py::arg("kernel_size"), py::arg("stride"), py::arg("padding"),
      py::arg("dilation"), py::arg("out") = py::none());
  m.def(
      "_conv_gemm",
      [](py::object a, py::object b, py::object c, bool trans_a, bool trans_b, bool beta) {
        // Test hook: C = (beta ? C : 0) + op(a) @ op(b) through the per-image GEMM of the conv kernels.
        const char* fn = "_conv_gemm";
        dispatch_float(a, fn, "a", [&](auto t) {
          using T = decltype(t);
          auto A = input<T>(a, fn, "a");
          auto B = input<T>(b, fn, "b", "a");
          auto C = inplace<T>(c, fn, "c", "a");
          check_ndim(A, 2, fn, "a");
          check_ndim(B, 2, fn, "b");
          check_ndim(C, 2, fn, "c");
          const index_t M = trans_a ? A.shape(1) : A.shape(0), K = trans_a ? A.shape(0) : A.shape(1);
          const index_t N = trans_b ? B.shape(0) : B.shape(1);
          if ((trans_b ? B.shape(1) : B.shape(0)) != K) value_error(fn, "inner dimensions differ");
          check_shape(C, Ints{M, N}, fn, "c");
          const T* pa = A.data();
          const T* pb = B.data();
          T* pc = C.mutable_data();
          const index_t lda = std::max<index_t>(1, A.shape(1)), ldb = std::max<index_t>(1, B.shape(1));
          py::gil_scoped_release nogil;
          conv_serial_gemm<T>(trans_a, trans_b, M, N, K, pa, lda, pb, ldb, beta, pc, std::max<index_t>(1, N));
        });
      },
      py::arg("a"), py::arg("b"), py::arg("c"), py::arg("trans_a") = false, py::arg("trans_b") = false,
      py::arg("beta") = false);
  m.def(
      "_conv2d_plan",
      [](const Ints& x_shape, const Ints& w_shape, const Ints& stride, const Ints& padding, const Ints& dilation,
         index_t groups, int itemsize, bool backward, bool need_dw, bool need_dx) {
        const char* fn = "_conv2d_plan";
        if (x_shape.size() != 4 || w_shape.size() != 4) value_error(fn, "shapes must have 4 entries");
        const ConvGeom g = make_geom(fn, 2, x_shape, w_shape, groups, options(stride, padding, dilation));
        const ConvPlan pl = conv_plan(g, static_cast<std::size_t>(itemsize), backward, need_dw, need_dx);
        py::dict d;
        d["layout"] = pl.layout == ConvPlan::kNhwc ? "nhwc" : pl.layout == ConvPlan::kNchw ? "nchw" : "pointwise";
        d["fused"] = pl.fused;
        d["direct_fwd"] = pl.direct_fwd;
        d["direct_dx"] = pl.direct_dx;
        d["direct_dw"] = pl.direct_dw;
        d["direct_elems"] = pl.direct_elems;
        d["per_image"] = pl.per_image;
        d["image_elems"] = pl.image_elems;
        d["block_pixels"] = pl.block_pixels;
        d["col_elems"] = pl.col_elems;
        d["max_threads"] = pl.max_threads;
        d["red_chunks"] = pl.red_chunks;
        d["red_chunk_images"] = pl.red_chunk_images;
        d["pixels"] = g.P();
        return d;
      },
      py::arg("x_shape"), py::arg("w_shape"), py::arg("stride"), py::arg("padding"), py::arg("dilation"),
      py::arg("groups"), py::arg("itemsize") = 4, py::arg("backward") = false, py::arg("need_dw") = true,
      py::arg("need_dx") = true, "How conv2d cuts a problem under the current workspace limit (tests and benchmarks).");
}

}  // namespace bind
}  // namespace nnkern
