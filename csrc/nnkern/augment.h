// Batched affine warp of NCHW images (data augmentation: flips, rotations, zoom, translations,
// crops and resizes as one resampling per image).
#pragma once

#include "nnkern/common.h"

namespace nnkern {

// For every output pixel (row i, column j) of image n, the input position sampled is
//   ix = A[n][0][0] * j + A[n][0][1] * i + A[n][0][2]     (column coordinate)
//   iy = A[n][1][0] * j + A[n][1][1] * i + A[n][1][2]     (row coordinate)
// in pixel-index units: (ix, iy) = (c, r) is the centre of input pixel (r, c), as in torch's
// grid_sample(align_corners=False) after un-normalisation. Bilinear mode blends the 4 pixels
// around (ix, iy); nearest mode takes the pixel at (round-half-even(ix), round-half-even(iy)).
// Pixels outside the input read as `fill` (torch padding_mode='zeros' when fill == 0), so the
// result is continuous in A; with `border`, positions are first clamped into [0, W-1] x [0, H-1]
// (torch padding_mode='border', and what torch's bilinear resize does at the edges). The same
// positions serve every channel.
//   x [N,C,H,W]  A [N,2,3] (double)  y [N,C,Ho,Wo];  H*W < 2^31.
template <class T>
void affine_warp_forward(T* y, const T* x, const double* A, index_t N, index_t C, index_t H, index_t W,
                         index_t Ho, index_t Wo, T fill, bool nearest, bool border);

}  // namespace nnkern
