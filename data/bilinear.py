"""Bilinear sampling of a batch of images at per-sample coordinates, as PIL samples.

The geometric augmentations (random resized crop, RandAugment's rotate / shear / translate)
all read each output pixel from a point of the input image; this is that read, in float64 so
that a point on a pixel centre returns the pixel's value exactly (PIL truncates the result
to uint8, so a value a rounding error below an integer would lose a whole grey level).
"""

from __future__ import annotations

from torch import Tensor


def bilinear(x: Tensor, cx: Tensor, cy: Tensor) -> Tensor:
    """x (B, C, H, W), cx and cy (B, H', W') float64 -> (B, C, H', W') float64.

    Output pixel (b, i, j) is x[b] read at column cx[b, i, j], row cy[b, i, j], in index
    coordinates (pixel k's centre at k): the weighted mean of the four pixels around the point,
    weights linear in the distance. Points beyond the border read the border pixels (PIL's
    clamp; callers that fill outside the image do so themselves).
    """
    b, c, h, w = x.shape
    x0, y0 = cx.floor(), cy.floor()
    dx, dy = (cx - x0)[:, None], (cy - y0)[:, None]  # (B, 1, H', W')
    x0, y0 = x0.long(), y0.long()
    cols = (x0.clamp(0, w - 1), (x0 + 1).clamp(0, w - 1))
    rows = (y0.clamp(0, h - 1), (y0 + 1).clamp(0, h - 1))
    flat = x.reshape(b, c, h * w)

    def at(row: Tensor, col: Tensor) -> Tensor:
        index = (row * w + col).reshape(b, 1, -1).expand(b, c, -1)
        return flat.gather(2, index).reshape(b, c, *cx.shape[1:]).double()

    top_left, top_right = at(rows[0], cols[0]), at(rows[0], cols[1])
    bottom_left, bottom_right = at(rows[1], cols[0]), at(rows[1], cols[1])
    top = top_left + (top_right - top_left) * dx
    bottom = bottom_left + (bottom_right - bottom_left) * dx
    return top + (bottom - top) * dy
