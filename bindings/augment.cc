// Binding for the batched affine warp used by nnkern.augment (registered from bind_norm).
#include <cmath>
#include <string>
#include <vector>

#include "arrays.h"
#include "norm_helpers.h"
#include "nnkern/augment.h"

namespace nnkern {
namespace bind {
namespace {

// (Ho, Wo) from None (= the input's) or a pair of non-negative ints.
std::pair<index_t, index_t> out_shape_arg(py::handle obj, index_t H, index_t W, const char* fn) {
  if (obj.is_none()) return {H, W};
  if (!py::isinstance<py::sequence>(obj) || py::isinstance<py::str>(obj) || py::len(obj) != 2) {
    type_error(fn, "out_shape must be None or a pair (height, width), got ", py::repr(obj).cast<std::string>());
  }
  py::sequence s = py::reinterpret_borrow<py::sequence>(obj);
  index_t hw[2];
  for (int k = 0; k < 2; ++k) {
    py::object v = s[k];
    if (py::isinstance<py::bool_>(v) || !py::hasattr(v, "__index__")) {
      type_error(fn, "out_shape must hold ints, got ", py::repr(obj).cast<std::string>());
    }
    hw[k] = v.cast<long long>();
    if (hw[k] < 0) value_error(fn, "out_shape must be >= 0, got ", py::repr(obj).cast<std::string>());
  }
  return {hw[0], hw[1]};
}

// Matrices (N, 2, 3) or one (2, 3) for all images, float32 or float64, as C-ordered doubles.
py::array_t<double> matrices_arg(py::handle obj, index_t N, const char* fn) {
  py::array a = require_ndarray(obj, fn, "matrices");
  if (!(has_float_type<float>(a) || has_float_type<double>(a))) {  // any byte order: converted below
    type_error(fn, "matrices has dtype ", dtype_str(a), ", expected float32 or float64");
  }
  const bool shared = a.ndim() == 2 && a.shape(0) == 2 && a.shape(1) == 3;
  const bool per_image = a.ndim() == 3 && a.shape(0) == N && a.shape(1) == 2 && a.shape(2) == 3;
  if (!shared && !per_image) {
    value_error(fn, "matrices has shape ", shape_str(a), ", expected (", N,
                ", 2, 3) (one 2x3 matrix per image) or (2, 3)");
  }
  auto m = py::array_t<double, py::array::c_style | py::array::forcecast>::ensure(a);
  if (!m) throw py::error_already_set();
  const double* p = m.data();
  for (index_t k = 0; k < m.size(); ++k) {
    if (!std::isfinite(p[k])) {
      if (shared) value_error(fn, "matrices must be finite, got ", p[k]);
      value_error(fn, "matrices must be finite, got ", p[k], " in the matrix of image ", k / 6);
    }
  }
  // A private (N, 2, 3) copy: the normalised form is converted in place.
  py::array_t<double> full({static_cast<py::ssize_t>(N), py::ssize_t{2}, py::ssize_t{3}});
  double* f = full.mutable_data();
  for (index_t n = 0; n < N; ++n) {
    for (int k = 0; k < 6; ++k) f[n * 6 + k] = shared ? p[k] : p[n * 6 + k];
  }
  return full;
}

// torch's affine_grid theta (normalised coordinates, align_corners=False) -> pixel-index matrices:
// x_n = (2j + 1)/Wo - 1 (output), ix = ((x_in_n + 1) * W - 1) / 2 (input), likewise for rows.
void normalised_to_pixel(double* A, index_t N, index_t H, index_t W, index_t Ho, index_t Wo) {
  const double h = static_cast<double>(H), w = static_cast<double>(W);
  const double ho = static_cast<double>(Ho > 0 ? Ho : 1), wo = static_cast<double>(Wo > 0 ? Wo : 1);
  for (index_t n = 0; n < N; ++n) {
    double* a = A + n * 6;
    const double sizes[2] = {w, h};
    for (int r = 0; r < 2; ++r) {
      double* t = a + r * 3;
      const double s = sizes[r];
      const double t0 = t[0], t1 = t[1], t2 = t[2];
      t[0] = s * t0 / wo;
      t[1] = s * t1 / ho;
      t[2] = 0.5 * s * (t0 * (1.0 / wo - 1.0) + t1 * (1.0 / ho - 1.0) + t2) + 0.5 * (s - 1.0);
    }
  }
}

template <class T>
py::array_t<T> affine_warp_impl(py::handle x_obj, py::handle mat_obj, py::handle shape_obj, double fill,
                                py::handle out_obj, const std::string& mode, bool normalized,
                                const std::string& padding_mode) {
  const char* fn = "affine_warp";
  py::array_t<T> x = input<T>(x_obj, fn, "x");
  check_ndim(x, 4, fn, "x", "(N, C, H, W)");
  const index_t N = x.shape(0), C = x.shape(1), H = x.shape(2), W = x.shape(3);
  if (H * W >= (index_t{1} << 31)) {
    value_error(fn, "x has images of ", H, " x ", W, " pixels, more than the supported 2**31 - 1 per image");
  }
  if (mode != "bilinear" && mode != "nearest") {
    value_error(fn, "mode must be 'bilinear' or 'nearest', got '", mode, "'");
  }
  if (padding_mode != "fill" && padding_mode != "border") {
    value_error(fn, "padding_mode must be 'fill' or 'border', got '", padding_mode, "'");
  }
  check_finite(fill, fn, "fill");
  const auto [Ho, Wo] = out_shape_arg(shape_obj, H, W, fn);
  if (Ho >= (index_t{1} << 31) || Wo >= (index_t{1} << 31)) {
    value_error(fn, "out_shape (", Ho, ", ", Wo, ") is too large (each side must be < 2**31)");
  }
  py::array_t<double> A = matrices_arg(mat_obj, N, fn);
  if (normalized) normalised_to_pixel(A.mutable_data(), N, H, W, Ho, Wo);
  Buffers bufs(fn);
  bufs.input(x, "x");
  py::array_t<T> y = output<T>(out_obj, {N, C, Ho, Wo}, fn);
  bufs.written(y, "out");
  bufs.check();
  const T* px = x.data();
  const double* pa = A.data();
  T* py_ = y.mutable_data();
  const bool nearest = mode == "nearest";
  const bool border = padding_mode == "border";
  {
    py::gil_scoped_release nogil;
    affine_warp_forward<T>(py_, px, pa, N, C, H, W, Ho, Wo, static_cast<T>(fill), nearest, border);
  }
  return y;
}

}  // namespace

void bind_augment(py::module_& m) {
  m.def(
      "affine_warp",
      [](py::object x, py::object matrices, py::object out_shape, double fill, py::object out, std::string mode,
         bool normalized, std::string padding_mode) -> py::object {
        return dispatch_float(x, "affine_warp", "x", [&](auto t) -> py::object {
          using T = decltype(t);
          return affine_warp_impl<T>(x, matrices, out_shape, fill, out, mode, normalized, padding_mode);
        });
      },
      py::arg("x"), py::arg("matrices"), py::arg("out_shape") = py::none(), py::arg("fill") = 0.0,
      py::kw_only(), py::arg("out") = py::none(), py::arg("mode") = "bilinear", py::arg("normalized") = false,
      py::arg("padding_mode") = "fill",
      R"doc(Resamples each image of x (N, C, H, W) through an affine map: y (N, C, Ho, Wo).

matrices (N, 2, 3), or (2, 3) for every image, float32 or float64, map OUTPUT pixel positions to
INPUT positions (the inverse of the motion of the content). By default in pixel-index units:
output pixel (row i, column j) samples the input at column ix = A[0] @ (j, i, 1) and row
iy = A[1] @ (j, i, 1), where (c, r) is the centre of input pixel (r, c); so the identity matrix
copies, and [[1, 0, dx], [0, 1, dy]] shifts the content by (-dx, -dy). normalized=True takes
torch's affine_grid theta instead (coordinates in [-1, 1] over the image extents,
align_corners=False), so affine_warp(x, theta, normalized=True) equals
grid_sample(x, affine_grid(theta, size), align_corners=False) with padding_mode='zeros'.

mode='bilinear' (default) blends the four nearest pixels; 'nearest' takes the nearest one (ties
to even, as torch). padding_mode='fill' (default): pixels outside the input read as `fill`
(0: torch's padding_mode='zeros'); 'border': sample positions are clamped into the image first
(torch's 'border', and the edge rule of torch's bilinear resize).
out_shape=(Ho, Wo) defaults to (H, W). Corners with weight exactly 0 are not read, so flips,
crops and integer shifts copy pixels exactly.)doc");
}

}  // namespace bind
}  // namespace nnkern
