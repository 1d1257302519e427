"""Geometric data augmentation for NCHW image batches, on nnkern's batched affine-warp kernel.

::

    from nnkern import augment
    aug = augment.Compose([
        augment.RandomHorizontalFlip(),
        augment.RandomAffine(degrees=10, translate=(0.1, 0.1), scale=(0.9, 1.1)),
        augment.RandomCrop(28, padding=2),
    ])
    xb = aug(xb, rng)            # xb: (N, C, H, W) float32/float64; rng: np.random.Generator

Every transform draws its parameters per image from ``rng`` (default: nnkern's generator, seeded
by ``nk.manual_seed``; an int seeds a fresh generator), all images at once, in the order the
transforms are listed. A transform applied alone is a callable too: ``RandomRotation(15)(xb)``.

**One warp per batch.** Each geometric transform contributes an affine map per image; Compose
multiplies them and resamples each image once (``nk.affine_warp``, bilinear by default). This is
faster and sharper than resampling after every step, and one difference follows from it:
intermediate images are not clipped to their canvas, so content that one step moves out of the
frame and a later step moves back in is kept (sequential application would show ``fill``).
Pixels that come from outside the input image read as ``fill`` (default 0).

Conventions (torchvision's, so parameters carry over): positive rotation angles turn the content
counter-clockwise on screen (rows grow downwards); translations are fractions of the image size
with positive values moving the content right/down; ``scale`` > 1 zooms in; rotation and scale
are about the image centre. Sampling follows ``align_corners=False`` (pixel centres at integer
coordinates, image edges at -0.5 and size - 0.5). Flips, crops with integer offsets and padding
copy pixels exactly. Resizing is plain bilinear sampling (no antialiasing when shrinking).

Edges: a warp either reads outside pixels as ``fill`` (rotations, shifts, zooms, padded crops:
torchvision's fill) or clamps sample positions into the image (``padding_mode='border'``: what
torch's bilinear resize does, so Resize and RandomResizedCrop match ``F.interpolate`` and do not
darken the edges when they enlarge). A composed warp uses 'fill' if any of its transforms asks for
it, else 'border' if one asks for that; ``Compose(padding_mode=...)`` overrides.

Non-geometric steps may be put in a Compose as any callable ``f(x, rng) -> x``: pending
geometric transforms are warped first, then ``f`` runs.
"""

import math
import numbers

import numpy as np

from ._core import affine_warp
from .random import default_generator

__all__ = [
    "Compose", "GeometricTransform", "RandomHorizontalFlip", "RandomVerticalFlip", "RandomRotation",
    "RandomAffine", "RandomZoom", "RandomTranslate", "RandomCrop", "CenterCrop", "RandomResizedCrop", "Resize",
    "pixel_matrices",
]


def _generator(rng, owner):
    if rng is None:
        return default_generator()
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (numbers.Integral, np.integer)) and not isinstance(rng, bool):
        return np.random.default_rng(int(rng))
    raise TypeError(f"{owner}: rng must be a numpy.random.Generator, an int seed or None, got {type(rng).__name__}")


def _size_pair(size, owner, name="size"):
    """An int or a pair of ints -> (height, width), each >= 1."""
    if isinstance(size, numbers.Integral) and not isinstance(size, bool):
        hw = (int(size), int(size))
    else:
        try:
            h, w = size
        except (TypeError, ValueError):
            raise TypeError(f"{owner}: {name} must be an int or a pair (height, width), got {size!r}") from None
        if not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in (h, w)):
            raise TypeError(f"{owner}: {name} must hold ints, got {size!r}")
        hw = (int(h), int(w))
    if min(hw) < 1:
        raise ValueError(f"{owner}: {name} must be >= 1, got {size!r}")
    return hw


def _range(value, owner, name, symmetric_about=None, lo_min=None):
    """A number d -> (about - d, about + d) (d >= 0), or a pair (lo, hi) with lo <= hi."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        if symmetric_about is None:
            raise TypeError(f"{owner}: {name} must be a pair (min, max), got {value!r}")
        if not value >= 0:
            raise ValueError(f"{owner}: {name} as a single number must be >= 0, got {value!r}")
        lo, hi = symmetric_about - float(value), symmetric_about + float(value)
    else:
        try:
            lo, hi = value
            lo, hi = float(lo), float(hi)
        except (TypeError, ValueError):
            raise TypeError(f"{owner}: {name} must be a number or a pair (min, max), got {value!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
        raise ValueError(f"{owner}: {name} must be finite with min <= max, got {value!r}")
    if lo_min is not None and not lo > lo_min:
        raise ValueError(f"{owner}: {name} must be > {lo_min}, got {value!r}")
    return lo, hi


def _eye(n):
    return np.broadcast_to(np.eye(3), (n, 3, 3)).copy()


def _shift(n, dx, dy):
    """Translation matrices (n, 3, 3): u -> u + (dx, dy)."""
    m = _eye(n)
    m[:, 0, 2] = dx
    m[:, 1, 2] = dy
    return m


def _centre(hw):
    """Centred coordinates -> pixel indices: px = u + (W - 1) / 2, py = v + (H - 1) / 2."""
    h, w = hw
    return np.array([[1.0, 0.0, (w - 1) / 2.0], [0.0, 1.0, (h - 1) / 2.0], [0.0, 0.0, 1.0]])


def pixel_matrices(inverse, in_hw, out_hw):
    """Converts inverse maps in centred coordinates (n, 3, 3) (origin at the image centre, unit one
    pixel, y down) into the (n, 2, 3) pixel-index matrices ``nk.affine_warp`` takes."""
    out_inv = _centre(out_hw)
    out_inv[:2, 2] *= -1.0
    return (_centre(in_hw) @ inverse @ out_inv)[:, :2, :]


class GeometricTransform:
    """Base class of the geometric transforms.

    Subclasses implement ``inverse(n, in_hw, rng) -> (m, out_hw)``: for each of the n images an
    (n, 3, 3) matrix mapping OUTPUT positions to INPUT positions in centred pixel coordinates
    (origin at the image centre, unit one pixel, x right, y down), and the output size.
    """

    fill = None
    # How the warp treats positions outside the input: "fill", "border" or None (no preference:
    # the transform never samples outside, e.g. flips).
    padding_mode = None

    def inverse(self, n, in_hw, rng):
        raise NotImplementedError

    def __call__(self, x, rng=None, *, out=None):
        return Compose([self])(x, rng, out=out)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({args})"


class RandomHorizontalFlip(GeometricTransform):
    """Mirrors each image left-right with probability p."""

    def __init__(self, p=0.5):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"RandomHorizontalFlip: p must be in [0, 1], got {p!r}")
        self.p = float(p)

    def inverse(self, n, in_hw, rng):
        m = _eye(n)
        m[:, 0, 0] = np.where(rng.random(n) < self.p, -1.0, 1.0)
        return m, in_hw


class RandomVerticalFlip(GeometricTransform):
    """Mirrors each image top-bottom with probability p."""

    def __init__(self, p=0.5):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"RandomVerticalFlip: p must be in [0, 1], got {p!r}")
        self.p = float(p)

    def inverse(self, n, in_hw, rng):
        m = _eye(n)
        m[:, 1, 1] = np.where(rng.random(n) < self.p, -1.0, 1.0)
        return m, in_hw


class RandomAffine(GeometricTransform):
    """Rotation, translation and scaling about the image centre (torchvision.transforms.RandomAffine).

    degrees: d (angles uniform in [-d, d]) or (min, max), counter-clockwise positive.
    translate: None or (a, b): shifts uniform in [-a*W, a*W] and [-b*H, b*H] pixels (a, b in [0, 1]).
    scale: None or (min, max) (> 0): zoom factor uniform in the range (> 1 enlarges the content).
    fill: value of pixels from outside the image (None: Compose's, default 0).
    The content moves as u_out = s * R(angle) * u_in + t.
    """

    padding_mode = "fill"

    def __init__(self, degrees=0.0, translate=None, scale=None, fill=None):
        owner = type(self).__name__
        self.degrees = _range(degrees, owner, "degrees", symmetric_about=0.0)
        if translate is not None:
            try:
                a, b = translate
                a, b = float(a), float(b)
            except (TypeError, ValueError):
                raise TypeError(f"{owner}: translate must be None or a pair (a, b), got {translate!r}") from None
            if not (0.0 <= a <= 1.0 and 0.0 <= b <= 1.0):
                raise ValueError(f"{owner}: translate values must be in [0, 1], got {translate!r}")
            translate = (a, b)
        self.translate = translate
        self.scale = None if scale is None else _range(scale, owner, "scale", lo_min=0.0)
        self.fill = fill

    def inverse(self, n, in_hw, rng):
        h, w = in_hw
        angle = np.deg2rad(rng.uniform(self.degrees[0], self.degrees[1], n))
        if self.translate is not None:
            tx = rng.uniform(-self.translate[0] * w, self.translate[0] * w, n)
            ty = rng.uniform(-self.translate[1] * h, self.translate[1] * h, n)
        else:
            tx = ty = np.zeros(n)
        s = np.ones(n) if self.scale is None else rng.uniform(self.scale[0], self.scale[1], n)
        c, si = np.cos(angle), np.sin(angle)
        # forward: u_out = s * R u_in + t with R = [[c, s], [-s, c]] (counter-clockwise on screen);
        # inverse: u_in = R^T (u_out - t) / s.
        m = _eye(n)
        m[:, 0, 0], m[:, 0, 1] = c / s, -si / s
        m[:, 1, 0], m[:, 1, 1] = si / s, c / s
        m[:, 0, 2] = -(m[:, 0, 0] * tx + m[:, 0, 1] * ty)
        m[:, 1, 2] = -(m[:, 1, 0] * tx + m[:, 1, 1] * ty)
        return m, in_hw


class RandomRotation(RandomAffine):
    """Rotates each image about its centre by an angle uniform in [-d, d] (or (min, max)) degrees."""

    def __init__(self, degrees, fill=None):
        super().__init__(degrees=degrees, fill=fill)


class RandomZoom(RandomAffine):
    """Zooms each image about its centre by a factor uniform in ``scale`` = (min, max)."""

    def __init__(self, scale, fill=None):
        super().__init__(scale=scale, fill=fill)


class RandomTranslate(RandomAffine):
    """Shifts each image by up to ``translate`` = (a, b) of its width and height."""

    def __init__(self, translate, fill=None):
        super().__init__(translate=translate, fill=fill)


class RandomCrop(GeometricTransform):
    """Pads the image (``padding``) and crops a random ``size`` window, as torchvision's RandomCrop.

    padding: int (all sides), (left/right, top/bottom) or (left, top, right, bottom). Padded pixels
    read as ``fill``. Crop offsets are whole pixels, so pixels are copied exactly.
    """

    def __init__(self, size, padding=0, fill=None):
        owner = type(self).__name__
        self.size = _size_pair(size, owner)
        if isinstance(padding, numbers.Integral) and not isinstance(padding, bool):
            pad = (int(padding),) * 4
        else:
            try:
                vals = tuple(int(v) for v in padding)
            except (TypeError, ValueError):
                raise TypeError(f"{owner}: padding must be an int or a tuple of 2 or 4 ints, got {padding!r}") from None
            if len(vals) == 2:
                pad = (vals[0], vals[1], vals[0], vals[1])
            elif len(vals) == 4:
                pad = vals
            else:
                raise ValueError(f"{owner}: padding must have 1, 2 or 4 values, got {padding!r}")
        if min(pad) < 0:
            raise ValueError(f"{owner}: padding must be >= 0, got {padding!r}")
        self.padding = pad  # left, top, right, bottom
        self.fill = fill
        self.padding_mode = "fill" if max(pad) > 0 else None

    def inverse(self, n, in_hw, rng):
        (h, w), (ch, cw) = in_hw, self.size
        left_pad, top_pad, right_pad, bottom_pad = self.padding
        hp, wp = h + top_pad + bottom_pad, w + left_pad + right_pad
        if ch > hp or cw > wp:
            raise ValueError(f"RandomCrop: crop size {self.size} is larger than the padded input ({hp}, {wp})")
        top = rng.integers(0, hp - ch + 1, n)
        left = rng.integers(0, wp - cw + 1, n)
        # output pixel (i, j) is padded pixel (top + i, left + j) = input pixel (top - top_pad + i, ...)
        return _shift(n, left - left_pad + (cw - w) / 2.0, top - top_pad + (ch - h) / 2.0), (ch, cw)


class CenterCrop(GeometricTransform):
    """Crops the central ``size`` window (torchvision's rounding; larger sizes pad with fill)."""

    def __init__(self, size, fill=None):
        self.size = _size_pair(size, type(self).__name__)
        self.fill = fill

    def inverse(self, n, in_hw, rng):
        (h, w), (ch, cw) = in_hw, self.size
        top, left = int(round((h - ch) / 2.0)), int(round((w - cw) / 2.0))
        return _shift(n, np.full(n, left + (cw - w) / 2.0), np.full(n, top + (ch - h) / 2.0)), (ch, cw)


class Resize(GeometricTransform):
    """Resizes to ``size`` (bilinear sampling, align_corners=False, no antialiasing, edges clamped:
    torch's ``F.interpolate(mode='bilinear', antialias=False)``)."""

    padding_mode = "border"

    def __init__(self, size):
        self.size = _size_pair(size, type(self).__name__)

    def inverse(self, n, in_hw, rng):
        (h, w), (oh, ow) = in_hw, self.size
        m = _eye(n)
        m[:, 0, 0], m[:, 1, 1] = w / ow, h / oh
        return m, (oh, ow)


class RandomResizedCrop(GeometricTransform):
    """Crops a random box and resizes it to ``size`` (torchvision's RandomResizedCrop sampling).

    The box covers a fraction of the image area uniform in ``scale`` with an aspect ratio
    log-uniform in ``ratio``; up to 10 draws per image, then a central crop as fallback.
    Resizing is bilinear without antialiasing, edges clamped (as F.interpolate).
    """

    padding_mode = "border"

    def __init__(self, size, scale=(0.08, 1.0), ratio=(3.0 / 4.0, 4.0 / 3.0)):
        owner = type(self).__name__
        self.size = _size_pair(size, owner)
        self.scale = _range(scale, owner, "scale", lo_min=0.0)
        self.ratio = _range(ratio, owner, "ratio", lo_min=0.0)

    def boxes(self, n, in_hw, rng, attempts=10):
        """(top, left, height, width) of the crop box of each image, as int arrays."""
        h, w = in_hw
        area = float(h * w)
        target = area * rng.uniform(self.scale[0], self.scale[1], (n, attempts))
        aspect = np.exp(rng.uniform(math.log(self.ratio[0]), math.log(self.ratio[1]), (n, attempts)))
        bw = np.rint(np.sqrt(target * aspect)).astype(np.int64)
        bh = np.rint(np.sqrt(target / aspect)).astype(np.int64)
        ok = (bw > 0) & (bw <= w) & (bh > 0) & (bh <= h)
        first = np.argmax(ok, axis=1)
        found = ok[np.arange(n), first]
        bw, bh = bw[np.arange(n), first], bh[np.arange(n), first]
        # fallback: the central crop with the ratio clamped into range
        in_ratio = w / h
        if in_ratio < self.ratio[0]:
            fw, fh = w, int(round(w / self.ratio[0]))
        elif in_ratio > self.ratio[1]:
            fw, fh = int(round(h * self.ratio[1])), h
        else:
            fw, fh = w, h
        bw, bh = np.where(found, bw, fw), np.where(found, bh, fh)
        top = np.where(found, rng.integers(0, h - bh + 1), (h - bh) // 2)
        left = np.where(found, rng.integers(0, w - bw + 1), (w - bw) // 2)
        return top, left, bh, bw

    def inverse(self, n, in_hw, rng):
        (h, w), (oh, ow) = in_hw, self.size
        top, left, bh, bw = self.boxes(n, in_hw, rng)
        m = _eye(n)
        m[:, 0, 0], m[:, 1, 1] = bw / ow, bh / oh
        m[:, 0, 2] = left + (bw - w) / 2.0
        m[:, 1, 2] = top + (bh - h) / 2.0
        return m, (oh, ow)


class Compose:
    """Applies transforms in order; consecutive geometric ones become one warp per image.

    fill: value for pixels from outside the image (None: the transforms' own ``fill``, which must
    agree, else 0). mode: 'bilinear' (default) or 'nearest'. padding_mode: None (from the
    transforms, see the module docs), 'fill' or 'border'.
    """

    def __init__(self, transforms, fill=None, mode="bilinear", padding_mode=None):
        self.transforms = list(transforms)
        for t in self.transforms:
            if not (isinstance(t, GeometricTransform) or callable(t)):
                raise TypeError(f"Compose: {t!r} is neither a GeometricTransform nor callable")
        if mode not in ("bilinear", "nearest"):
            raise ValueError(f"Compose: mode must be 'bilinear' or 'nearest', got {mode!r}")
        self.mode = mode
        if padding_mode not in (None, "fill", "border"):
            raise ValueError(f"Compose: padding_mode must be None, 'fill' or 'border', got {padding_mode!r}")
        self.padding_mode = padding_mode
        if fill is None:
            fills = {float(t.fill) for t in self.transforms if isinstance(t, GeometricTransform) and t.fill is not None}
            if len(fills) > 1:
                raise ValueError(f"Compose: the transforms ask for different fill values {sorted(fills)}; pass fill= "
                                 f"to Compose")
            fill = fills.pop() if fills else 0.0
        self.fill = float(fill)

    def _padding_mode(self, chain):
        if self.padding_mode is not None:
            return self.padding_mode
        wanted = {t.padding_mode for t in chain}
        return "border" if "border" in wanted and "fill" not in wanted else "fill"

    def _warp(self, x, pending, chain, start_hw, hw, out=None):
        return affine_warp(x, pixel_matrices(pending, start_hw, hw), hw, self.fill, mode=self.mode,
                           padding_mode=self._padding_mode(chain), out=out)

    def matrices(self, n, in_hw, rng=None):
        """The composed pixel-index matrices (n, 2, 3) and output size of the geometric transforms
        (the random draws are the ones __call__ would make with the same rng state)."""
        rng = _generator(rng, "Compose")
        m, hw = _eye(n), tuple(in_hw)
        for t in self.transforms:
            if not isinstance(t, GeometricTransform):
                raise TypeError("Compose.matrices: only geometric transforms can be composed into matrices")
            step, hw = t.inverse(n, hw, rng)
            m = m @ step
        return pixel_matrices(m, in_hw, hw), hw

    def __call__(self, x, rng=None, *, out=None):
        if not isinstance(x, np.ndarray) or x.ndim != 4:
            shape = getattr(x, "shape", None)
            raise ValueError(f"Compose: expected an (N, C, H, W) numpy array, got "
                             f"{type(x).__name__ if shape is None else f'shape {shape}'}")
        rng = _generator(rng, "Compose")
        n = x.shape[0]
        pending, chain, start_hw, hw = None, [], tuple(x.shape[2:]), tuple(x.shape[2:])
        for t in self.transforms:
            if isinstance(t, GeometricTransform):
                step, hw = t.inverse(n, hw, rng)
                pending = step if pending is None else pending @ step
                chain.append(t)
                continue
            if pending is not None:
                x = self._warp(x, pending, chain, start_hw, hw)
                pending, chain = None, []
            x = t(x, rng)
            hw = start_hw = tuple(x.shape[2:])
        if pending is not None:
            return self._warp(x, pending, chain, start_hw, hw, out=out)
        if out is not None:
            out[...] = x
            return out
        return x

    def __repr__(self):
        inner = "".join(f"\n    {t!r}," for t in self.transforms)
        return f"Compose([{inner}\n], fill={self.fill}, mode={self.mode!r}, padding_mode={self.padding_mode!r})"
