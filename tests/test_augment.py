"""nk.affine_warp (against the twin and torch's grid_sample) and the nnkern.augment transforms."""

import numpy as np
import pytest

import nnkern as nk
from nnkern import augment
from nnkern import reference as ref
from conftest import assert_bitwise_equal, assert_close, nan_filled, num_threads, requires_torch, torch


def same(a, b):
    assert_bitwise_equal(np.ascontiguousarray(a), np.ascontiguousarray(b))


def random_theta(rng, n, spread=0.6):
    return np.eye(3)[:2] + spread * rng.standard_normal((n, 2, 3))


def random_pixel_matrices(rng, n, hw):
    return ref.theta_to_pixel(random_theta(rng, n), hw, hw)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape,out_shape", [((1, 1, 1, 1), None), ((2, 3, 7, 9), None), ((3, 1, 16, 17), (5, 33)),
                                             ((2, 2, 28, 28), (28, 28)), ((1, 4, 5, 64), (9, 65)),
                                             ((2, 1, 8, 8), (0, 3)),
                                             ((2, 3, 0, 5), (3, 4)), ((1, 2, 4, 0), (2, 2))])  # empty images
@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
@pytest.mark.parametrize("fill,padding_mode", [(0.0, "fill"), (-1.5, "fill"), (-1.5, "border")])
def test_matches_twin(rng, shape, out_shape, dtype, mode, fill, padding_mode):
    x = rng.standard_normal(shape).astype(dtype)
    theta = random_theta(rng, shape[0])
    for normalized in (True, False):
        kw = dict(mode=mode, normalized=normalized, padding_mode=padding_mode)
        y = nk.affine_warp(x, theta, out_shape, fill, **kw)
        ye = ref.affine_warp(x, theta, out_shape, fill, **kw)
        assert y.shape == ye.shape and y.dtype == dtype
        assert_close(y, ye, dtype, 10)


@requires_torch
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
@pytest.mark.parametrize("padding_mode", ["zeros", "border"])
@pytest.mark.parametrize("shape,out_hw", [((4, 3, 11, 13), (11, 13)), ((2, 2, 8, 8), (5, 12)),
                                          ((3, 1, 28, 28), (32, 20))])
def test_matches_torch_grid_sample(rng, shape, out_hw, dtype, mode, padding_mode):
    import torch.nn.functional as F

    x = rng.standard_normal(shape).astype(dtype)
    theta = random_theta(rng, shape[0]).astype(dtype)
    grid = F.affine_grid(torch.from_numpy(theta), (shape[0], shape[1]) + out_hw, align_corners=False)
    expected = F.grid_sample(torch.from_numpy(x), grid, mode=mode, padding_mode=padding_mode,
                             align_corners=False).numpy()
    y = nk.affine_warp(x, theta, out_hw, normalized=True, mode=mode,
                       padding_mode="fill" if padding_mode == "zeros" else "border")
    if mode == "bilinear":
        tol = 1e-12 if dtype == np.float64 else 2e-5
        np.testing.assert_allclose(y, expected, rtol=tol, atol=tol)
    else:
        # nearest: a coordinate within rounding of a pixel edge may round either way
        agree = np.mean(y == expected)
        assert agree > (0.999999 if dtype == np.float64 else 0.999), agree


@requires_torch
def test_identity_and_resize_match_torch(rng):
    import torch.nn.functional as F

    x = rng.standard_normal((2, 3, 10, 14))
    assert_bitwise_equal(nk.affine_warp(x, np.eye(3)[:2]), x)
    assert_bitwise_equal(nk.affine_warp(x, np.eye(3)[:2], normalized=True), x)
    small = augment.Resize((7, 5))(x)
    expected = F.interpolate(torch.from_numpy(x), size=(7, 5), mode="bilinear", align_corners=False,
                             antialias=False).numpy()
    np.testing.assert_allclose(small, expected, rtol=1e-12, atol=1e-12)
    big = augment.Resize((23, 31))(x)
    expected = F.interpolate(torch.from_numpy(x), size=(23, 31), mode="bilinear", align_corners=False).numpy()
    np.testing.assert_allclose(big, expected, rtol=1e-12, atol=1e-12)


def test_exact_copies_even_next_to_nan(rng):
    # corners with weight 0 are not read: flips and integer shifts copy exactly, NaN stays put
    x = rng.standard_normal((2, 2, 6, 7))
    x[0, 1, 2, 3] = np.nan
    flip = np.array([[-1.0, 0.0, 6.0], [0.0, 1.0, 0.0]])
    y = nk.affine_warp(x, flip)
    same(y, x[..., ::-1])
    shift = np.array([[1.0, 0.0, 2.0], [0.0, 1.0, -1.0]])  # output (i, j) <- input (i - 1, j + 2)
    y = nk.affine_warp(x, shift, fill=7.0)
    expected = np.full_like(x, 7.0)
    expected[:, :, 1:, :5] = x[:, :, :5, 2:]
    assert_bitwise_equal(y, expected)


def test_fill_and_outside(rng):
    x = rng.standard_normal((1, 2, 4, 4))
    far = np.array([[1.0, 0.0, 1e6], [0.0, 1.0, 0.0]])
    assert np.all(nk.affine_warp(x, far, fill=2.5) == 2.5)
    # half a pixel beyond the left edge: half the border pixel, half the fill (continuous)
    half = np.array([[1.0, 0.0, -0.5], [0.0, 1.0, 0.0]])
    y = nk.affine_warp(x, half, fill=4.0)
    np.testing.assert_allclose(y[..., 0], 0.5 * x[..., 0] + 0.5 * 4.0, rtol=1e-14)
    np.testing.assert_allclose(y[..., 1], 0.5 * x[..., 0] + 0.5 * x[..., 1], rtol=1e-14)
    assert nk.affine_warp(np.zeros((2, 3, 0, 5)), np.eye(3)[:2], (2, 2), fill=1.0).tolist() == \
        np.ones((2, 3, 2, 2)).tolist()


def test_nan_filled_out_and_threads(rng):
    x = rng.standard_normal((64, 3, 32, 32)).astype(np.float32)
    mats = random_pixel_matrices(rng, 64, (32, 32))
    results = []
    for t in (1, 2, 3):
        with num_threads(t):
            for mode in ("bilinear", "nearest"):
                out = nan_filled((64, 3, 30, 34), np.float32)
                assert nk.affine_warp(x, mats, (30, 34), 0.5, out=out, mode=mode) is out
                results.append(out)
    assert not np.isnan(results[0]).any()
    for k in range(2, len(results)):
        assert_bitwise_equal(results[k], results[k % 2])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_simd_levels(rng, simd_level, dtype):
    x = rng.standard_normal((3, 2, 13, 19)).astype(dtype)
    mats = random_pixel_matrices(rng, 3, (13, 19))
    for mode in ("bilinear", "nearest"):
        assert_close(nk.affine_warp(x, mats, (11, 21), 0.25, mode=mode),
                     ref.affine_warp(x, mats, (11, 21), 0.25, mode=mode), dtype, 10)


def test_errors():
    x = np.ones((2, 1, 4, 4), np.float32)
    m = np.eye(3)[:2]
    with pytest.raises(ValueError, match=r"affine_warp: x has 3 dims, expected 4 \(N, C, H, W\)"):
        nk.affine_warp(np.ones((1, 4, 4), np.float32), m)
    with pytest.raises(TypeError, match=r"affine_warp: x has dtype uint8, expected float32 or float64"):
        nk.affine_warp(np.ones((1, 1, 4, 4), np.uint8), m)
    with pytest.raises(ValueError, match=r"affine_warp: matrices has shape \(3, 2, 3\), expected \(2, 2, 3\)"):
        nk.affine_warp(x, np.zeros((3, 2, 3)))
    with pytest.raises(TypeError, match=r"affine_warp: matrices has dtype int64, expected float32 or float64"):
        nk.affine_warp(x, np.zeros((2, 3), np.int64))
    bad = np.zeros((2, 2, 3))
    bad[1, 0, 2] = np.inf
    with pytest.raises(ValueError, match=r"affine_warp: matrices must be finite, got inf in the matrix of image 1"):
        nk.affine_warp(x, bad)
    with pytest.raises(ValueError, match=r"affine_warp: mode must be 'bilinear' or 'nearest', got 'cubic'"):
        nk.affine_warp(x, m, mode="cubic")
    with pytest.raises(ValueError, match=r"affine_warp: fill must be finite, got nan"):
        nk.affine_warp(x, m, fill=float("nan"))
    with pytest.raises(TypeError, match=r"affine_warp: out_shape must be None or a pair \(height, width\), got 5"):
        nk.affine_warp(x, m, 5)
    with pytest.raises(ValueError, match=r"affine_warp: out_shape must be >= 0, got \(-1, 2\)"):
        nk.affine_warp(x, m, (-1, 2))
    with pytest.raises(ValueError, match=r"affine_warp: out has shape \(2, 1, 4, 4\), expected \(2, 1, 3, 3\)"):
        nk.affine_warp(x, m, (3, 3), out=np.empty((2, 1, 4, 4), np.float32))
    ro = np.empty((2, 1, 4, 4), np.float32)
    ro.setflags(write=False)
    with pytest.raises(ValueError, match=r"affine_warp: out is read-only"):
        nk.affine_warp(x, m, out=ro)
    with pytest.raises(TypeError, match=r"affine_warp: out has dtype float64, expected float32"):
        nk.affine_warp(x, m, out=np.empty((2, 1, 4, 4)))
    with pytest.raises(ValueError, match=r"affine_warp: out shares memory with x"):
        nk.affine_warp(x, m, out=x)


# --- nnkern.augment ----------------------------------------------------------------------------


def batch(rng, n=6, c=2, h=10, w=12, dtype=np.float32):
    return rng.standard_normal((n, c, h, w)).astype(dtype)


def test_flips_are_exact(rng):
    x = batch(rng)
    same(augment.RandomHorizontalFlip(1.0)(x, rng), x[..., ::-1])
    same(augment.RandomVerticalFlip(1.0)(x, rng), x[..., ::-1, :])
    assert_bitwise_equal(augment.RandomHorizontalFlip(0.0)(x, rng), x)
    y = augment.RandomHorizontalFlip(0.5)(x, np.random.default_rng(3))
    flipped = np.random.default_rng(3).random(len(x)) < 0.5
    assert 0 < flipped.sum() < len(x)
    for i in range(len(x)):
        same(y[i], x[i, :, :, ::-1] if flipped[i] else x[i])


def test_random_crop_equals_pad_and_slice(rng):
    x = batch(rng, n=20, h=9, w=11)
    crop = augment.RandomCrop((8, 10), padding=(2, 1, 3, 0), fill=-3.0)  # left, top, right, bottom
    y = crop(x, np.random.default_rng(5))
    r = np.random.default_rng(5)
    tops, lefts = r.integers(0, 9 + 1 - 8 + 1, 20), r.integers(0, 11 + 5 - 10 + 1, 20)
    padded = np.pad(x, ((0, 0), (0, 0), (1, 0), (2, 3)), constant_values=-3.0)
    for i in range(20):
        same(y[i], padded[i, :, tops[i]:tops[i] + 8, lefts[i]:lefts[i] + 10])


def test_center_crop_and_compose_of_exact_steps(rng):
    x = batch(rng, h=10, w=12)
    same(augment.CenterCrop((6, 7))(x), x[:, :, 2:8, 2:9])  # torchvision's rounding
    # flip then crop: composed into one warp, still exact
    aug = augment.Compose([augment.RandomHorizontalFlip(1.0), augment.CenterCrop(4)])
    same(aug(x), x[..., ::-1][:, :, 3:7, 4:8])


def test_rotation_conventions(rng):
    x = rng.standard_normal((2, 1, 5, 5))
    # +90 degrees turns the content counter-clockwise on screen, like np.rot90
    np.testing.assert_allclose(augment.RandomRotation((90, 90))(x), np.rot90(x, 1, axes=(2, 3)), atol=1e-12)
    np.testing.assert_allclose(augment.RandomRotation((-90, -90))(x), np.rot90(x, -1, axes=(2, 3)), atol=1e-12)
    # translation: +1 pixel right and down moves the content right and down
    y = augment.RandomAffine(translate=(0.2, 0.2))  # up to 1 pixel
    m, hw = augment.Compose([y]).matrices(2, (5, 5), np.random.default_rng(0))
    r = np.random.default_rng(0)
    r.uniform(0, 0, 2)
    tx, ty = r.uniform(-1, 1, 2), r.uniform(-1, 1, 2)
    np.testing.assert_allclose(m[:, 0, 2], -tx, atol=1e-12)
    np.testing.assert_allclose(m[:, 1, 2], -ty, atol=1e-12)


def test_zoom_scales_about_the_centre(rng):
    x = np.zeros((1, 1, 9, 9))
    x[0, 0, 4, 6] = 1.0  # two pixels right of the centre
    y = augment.RandomZoom((2.0, 2.0))(x)
    # zoom x2: that point moves to 4 pixels right of the centre
    assert y[0, 0].argmax() == 4 * 9 + 8 and y.max() == 1.0
    m, _ = augment.Compose([augment.RandomZoom((2.0, 2.0))]).matrices(1, (9, 9))
    np.testing.assert_allclose(m[0], [[0.5, 0.0, 2.0], [0.0, 0.5, 2.0]], atol=1e-12)


def test_affine_compose_matches_matrix_product_and_is_reproducible(rng):
    x = batch(rng, n=5, h=28, w=28)
    aug = augment.Compose([augment.RandomHorizontalFlip(),
                           augment.RandomAffine(degrees=10, translate=(0.1, 0.1), scale=(0.9, 1.1)),
                           augment.RandomCrop(28, padding=2)])
    y1 = aug(x, np.random.default_rng(42))
    y2 = aug(x, np.random.default_rng(42))
    assert_bitwise_equal(y1, y2)
    mats, hw = aug.matrices(5, (28, 28), np.random.default_rng(42))
    assert hw == (28, 28)
    assert_bitwise_equal(y1, nk.affine_warp(x, mats, hw))
    assert_close(y1, ref.affine_warp(x, mats, hw), np.float32, 10)
    assert not np.allclose(y1, aug(x, np.random.default_rng(43)))
    nk.manual_seed(1)
    y3 = aug(x)
    nk.manual_seed(1)
    assert_bitwise_equal(aug(x), y3)  # default generator, seeded by nk.manual_seed
    assert_bitwise_equal(aug(x, 7), aug(x, np.random.default_rng(7)))  # int seeds


@requires_torch
def test_random_resized_crop_is_crop_then_resize(rng):
    import torch.nn.functional as F

    x = batch(rng, n=8, h=20, w=24, dtype=np.float64)
    rrc = augment.RandomResizedCrop((10, 12), scale=(0.2, 0.9))
    y = rrc(x, np.random.default_rng(9))
    top, left, h, w = rrc.boxes(8, (20, 24), np.random.default_rng(9))
    assert np.all((top >= 0) & (left >= 0) & (top + h <= 20) & (left + w <= 24))
    areas = h * w / (20 * 24)
    assert np.all((areas > 0.15) & (areas < 0.95))
    for i in range(8):
        box = torch.from_numpy(np.ascontiguousarray(x[i:i + 1, :, top[i]:top[i] + h[i], left[i]:left[i] + w[i]]))
        expected = F.interpolate(box, size=(10, 12), mode="bilinear", align_corners=False, antialias=False)
        np.testing.assert_allclose(y[i:i + 1], expected.numpy(), rtol=1e-10, atol=1e-10)


def test_non_geometric_steps_and_fill_rules(rng):
    x = batch(rng)
    seen = []

    def negate(xb, r):
        seen.append(xb.shape)
        return -xb

    aug = augment.Compose([augment.CenterCrop(4), negate, augment.RandomHorizontalFlip(1.0)])
    same(aug(x), -x[:, :, 3:7, 4:8][..., ::-1])
    assert seen == [(6, 2, 4, 4)]
    with pytest.raises(ValueError, match=r"Compose: the transforms ask for different fill values"):
        augment.Compose([augment.RandomCrop(4, fill=1.0), augment.RandomRotation(3, fill=2.0)])
    assert augment.Compose([augment.RandomCrop(4, fill=1.0)]).fill == 1.0
    y = augment.Compose([augment.RandomCrop(12, padding=1)], fill=9.0)(x, rng)
    assert y.shape == (6, 2, 12, 12) and (y == 9.0).any()
    near = augment.Compose([augment.RandomRotation(30)], mode="nearest")(x, rng)
    assert set(np.unique(near)) <= set(np.unique(x)) | {0.0}


def test_augment_errors():
    x = np.ones((2, 1, 6, 6), np.float32)
    with pytest.raises(ValueError, match=r"RandomCrop: crop size \(8, 8\) is larger than the padded input \(7, 7\)"):
        augment.RandomCrop(8, padding=(1, 1, 0, 0))(x)
    with pytest.raises(ValueError, match=r"RandomHorizontalFlip: p must be in \[0, 1\], got 2"):
        augment.RandomHorizontalFlip(2)
    with pytest.raises(ValueError, match=r"RandomAffine: scale must be > 0.0, got \(0, 1\)"):
        augment.RandomAffine(scale=(0, 1))
    with pytest.raises(ValueError, match=r"RandomAffine: translate values must be in \[0, 1\]"):
        augment.RandomAffine(translate=(2, 0))
    with pytest.raises(ValueError, match=r"RandomRotation: degrees as a single number must be >= 0, got -5"):
        augment.RandomRotation(-5)
    with pytest.raises(TypeError, match=r"RandomCrop: size must be an int or a pair \(height, width\), got 'a'"):
        augment.RandomCrop("a")
    with pytest.raises(ValueError, match=r"Compose: expected an \(N, C, H, W\) numpy array, got shape \(6, 6\)"):
        augment.Compose([augment.RandomHorizontalFlip()])(np.ones((6, 6)))
    with pytest.raises(TypeError, match=r"Compose: rng must be a numpy.random.Generator, an int seed or None, got str"):
        augment.RandomHorizontalFlip()(x, "seed")
    with pytest.raises(ValueError, match=r"Compose: mode must be 'bilinear' or 'nearest'"):
        augment.Compose([], mode="area")


def test_resize_edges_clamp_unless_asked(rng):
    ones = np.ones((2, 1, 6, 8))
    # border clamping: no dark edges (the 4 weights sum to 1 up to rounding)
    np.testing.assert_allclose(augment.Resize((15, 20))(ones), 1.0, rtol=1e-15)
    np.testing.assert_allclose(augment.RandomResizedCrop((15, 20))(ones, rng), 1.0, rtol=1e-15)
    darker = augment.Compose([augment.Resize((15, 20))], padding_mode="fill")(ones)
    assert darker[0, 0, 0, 0] < 0.9 and abs(darker[0, 0, 7, 10] - 1.0) < 1e-15
    # a rotation in the same warp asks for fill: corners come from outside
    rot = augment.Compose([augment.Resize((15, 20)), augment.RandomRotation((45, 45))])(ones)
    assert rot[0, 0, 0, 0] == 0.0


from hypothesis import given, settings, strategies as st  # noqa: E402


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 3), c=st.integers(1, 3), h=st.integers(1, 12), w=st.integers(1, 12), ho=st.integers(1, 12),
       wo=st.integers(1, 12), mode=st.sampled_from(["bilinear", "nearest"]),
       padding_mode=st.sampled_from(["fill", "border"]), fill=st.floats(-2, 2), spread=st.floats(0, 3),
       seed=st.integers(0, 2**32 - 1))
def test_hypothesis_against_twin(n, c, h, w, ho, wo, mode, padding_mode, fill, spread, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w))
    mats = np.eye(3)[:2] * rng.uniform(0.5, 2.0) + spread * rng.standard_normal((n, 2, 3))
    kw = dict(mode=mode, padding_mode=padding_mode)
    y = nk.affine_warp(x, mats, (ho, wo), fill, **kw)
    ye = ref.affine_warp(x, mats, (ho, wo), fill, **kw)
    if mode == "nearest":  # a position within rounding of a .5 may round either way
        assert np.mean(np.isclose(y, ye, rtol=1e-12, atol=1e-12)) > 0.99
    else:
        np.testing.assert_allclose(y, ye, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
def test_wide_rows_are_cut_into_segments(rng, mode):
    # rows wider than the 2048-pixel work unit are processed in segments
    x = rng.standard_normal((2, 2, 3, 3000)).astype(np.float32)
    mats = np.array([[0.7, 0.01, 5.5], [0.0001, 1.0, 0.25]])
    expected = ref.affine_warp(x, mats, (4, 4500), 1.5, mode=mode)
    for t in (1, 2, 3):
        with num_threads(t):
            y = nk.affine_warp(x, mats, (4, 4500), 1.5, mode=mode, out=nan_filled((2, 2, 4, 4500), np.float32))
            if mode == "bilinear":
                assert_close(y, expected, np.float32, 10)
            else:
                assert np.mean(y == expected) > 0.999
