"""Width-sliced ("slimmable") convolutions.

One set of full-width kernels is kept; running at width ``w`` uses the first
``w`` output (and input) channels of every kernel, as in SlimCAE.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _sliced(weight: Tensor, dim0: int, dim1: int, channels_last: bool) -> Tensor:
    """Return ``weight[:dim0, :dim1]`` in a layout convolution kernels run fast on.

    A sliced view is non-contiguous; handing it to the convolution as is costs
    about 7x on CPU (see docs/training.md), so it is copied once per call.
    """
    w = weight[:dim0, :dim1]
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return w.contiguous(memory_format=fmt)


class SlimConv2d(nn.Conv2d):
    """``nn.Conv2d`` whose first ``in_width`` inputs and ``out_width`` outputs are used."""

    def forward(self, x: Tensor, out_width: int) -> Tensor:  # type: ignore[override]
        in_width = x.shape[1]
        weight = _sliced(self.weight, out_width, in_width, x.is_contiguous(memory_format=torch.channels_last))
        bias = None if self.bias is None else self.bias[:out_width]
        return F.conv2d(x, weight, bias, self.stride, self.padding)


class SlimConvTranspose2d(nn.ConvTranspose2d):
    """``nn.ConvTranspose2d`` sliced like :class:`SlimConv2d` (weights are ``in x out``)."""

    def forward(self, x: Tensor, out_width: int) -> Tensor:  # type: ignore[override]
        in_width = x.shape[1]
        weight = _sliced(self.weight, in_width, out_width, x.is_contiguous(memory_format=torch.channels_last))
        bias = None if self.bias is None else self.bias[:out_width]
        return F.conv_transpose2d(
            x, weight, bias, self.stride, self.padding, self.output_padding
        )
