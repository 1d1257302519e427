"""Batched affine warp of NCHW images (the kernel under ``nnkern.augment``)::

    y = nk.affine_warp(x, matrices, out_shape=None, fill=0.0, mode="bilinear", normalized=False)

``matrices`` (N, 2, 3) map output pixel positions to input positions: output pixel (row i,
column j) samples the input at column ``A[0] @ (j, i, 1)`` and row ``A[1] @ (j, i, 1)``, with
integer coordinates at pixel centres (torch's ``align_corners=False`` convention). With
``normalized=True`` they are torch ``affine_grid`` thetas instead. Outside the image the input
reads as ``fill``. See ``nnkern.augment`` for flips, rotations, zooms, shifts and crops built on it.
"""

from .._core import affine_warp

__all__ = ["affine_warp"]
