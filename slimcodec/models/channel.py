"""SlimCAE with a slimmable channel-conditional entropy model (Minnen & Singh 2020, light form).

The transforms and the hyperprior are :class:`~slimcodec.models.hyperprior.SlimCAEHyperprior`'s.
y is coded in slices of ``slice_channels`` (24: 2/3/4/6/8 slices at widths 48/72/96/144/192).
Slice k's scale and mean are the hyperprior's heads' channels of that slice plus a context term
computed from the slices before it::

    σ_k = scale_head(trunk)[slice k] + scale_out_k(ReLU(scale_in_k(q_<k)))
    μ_k = mean_head(trunk)[slice k]  + mean_out_k(ReLU(mean_in_k(ŷ_<k)))

where ``q = round(s·(y − μ))`` are the integer symbols (``s`` the latent scale) and
``ŷ = q/s + μ``. The scale path sees only exact inputs (the symbols, as ``q/s``), so a
decoder can compute it in fixed point and choose every table index bit-exactly, as it
does for the trunk; the mean path may use floats (a mean moves values, not tables).

The context networks do not depend on the width: slice k's networks read the first ``k``
slices, which every width with more than ``k`` slices has, so one set of weights serves all
widths, as the sliced kernels do. The output convolutions start at zero, so a model made
from a hyperprior (:meth:`SlimCAEChannel.from_hyperprior`) starts as exactly that model.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from slimcodec.models.factorized import PAPER_WIDTHS, Rounding, ste_round
from slimcodec.models.hyperprior import SlimCAEHyperprior, gaussian_likelihood, hidden_width

SLICE_CHANNELS = 24
CONTEXT_CHANNELS = 64


def default_slice_channels(widths: Iterable[int]) -> int:
    """:data:`SLICE_CHANNELS` when every width is a multiple of it, else the widths' greatest
    common divisor (tiny test and vector models: widths 8 and 4 give slices of 4)."""
    widths = [int(w) for w in widths]
    if all(w % SLICE_CHANNELS == 0 for w in widths):
        return SLICE_CHANNELS
    return math.gcd(*widths)


class SliceContext(nn.Module):
    """One slice's context term: conv3 (earlier slices → hidden), ReLU, conv3 (hidden → slice), no bias out."""

    def __init__(self, in_channels: int, hidden: int, out_channels: int):
        super().__init__()
        self.inner = nn.Conv2d(in_channels, hidden, 3, padding=1)
        self.outer = nn.Conv2d(hidden, out_channels, 3, padding=1, bias=False)
        nn.init.zeros_(self.outer.weight)

    def forward(self, earlier: Tensor) -> Tensor:
        return self.outer(F.relu(self.inner(earlier)))


class SlimCAEChannel(SlimCAEHyperprior):
    """SlimCAE whose latents are coded slice by slice, each conditioned on the ones before.

    The slice size and the context width are read back off a state dict's shapes
    (:meth:`from_state_dict`), so weights files and training states need not record them.

    Args:
        widths: channel counts the network can run at (multiples of ``slice_channels``).
        slice_channels: channels per slice (default :func:`default_slice_channels`).
        context_channels: hidden channels of each slice's context networks.
    """

    def __init__(self, widths: Iterable[int] = PAPER_WIDTHS, slice_channels: int | None = None,
                 context_channels: int = CONTEXT_CHANNELS):
        super().__init__(widths)
        if slice_channels is None:
            slice_channels = default_slice_channels(self.widths)
        if any(w % slice_channels for w in self.widths):
            raise ValueError(f"widths {self.widths} are not all multiples of the slice size {slice_channels}")
        self.slice_channels = slice_channels
        self.context_channels = context_channels
        slices = self.widths[0] // slice_channels
        # index k - 1 holds slice k's networks (slice 0 has no earlier slices)
        self.scale_context = nn.ModuleList(
            [SliceContext(k * slice_channels, context_channels, slice_channels) for k in range(1, slices)])
        self.mean_context = nn.ModuleList(
            [SliceContext(k * slice_channels, context_channels, slice_channels) for k in range(1, slices)])

    def config(self) -> dict:
        """The constructor's arguments beyond the widths (see :meth:`SlimCAE.config`)."""
        return {"slice_channels": self.slice_channels, "context_channels": self.context_channels}

    @classmethod
    def from_state_dict(cls, state_dict: dict) -> SlimCAEChannel:
        """Build a model whose widths, slice size and context width are read off the state dict, and load it.

        Slice 1's context networks read one slice (``inner``: ``[hidden, slice, 3, 3]``); a model
        with one slice at its widest width has none, and its slice is that width.
        """
        prefix = "entropy_bottleneck."
        widths = {int(k[len(prefix):].split(".")[0]) for k in state_dict if k.startswith(prefix)}
        inner = state_dict.get("scale_context.0.inner.weight")
        config = ({"slice_channels": max(widths)} if inner is None
                  else {"slice_channels": int(inner.shape[1]), "context_channels": int(inner.shape[0])})
        model = cls(widths, **config)
        model.load_state_dict(state_dict)
        return model

    @torch.no_grad()
    def context_layers(self, kind: str, k: int) -> list:
        """Slice ``k``'s (k ≥ 1) ``"scale"`` or ``"mean"`` context network as stage layers
        (:mod:`slimcodec.runtime.stage_layers`: Conv, ReLU, Conv without bias); the same at every width."""
        from slimcodec.models.factorized import _conv_layer
        from slimcodec.runtime.stage_layers import ReLU

        net = (self.scale_context if kind == "scale" else self.mean_context)[k - 1]
        c = self.slice_channels
        return [_conv_layer(net.inner, net.inner.out_channels, k * c), ReLU(),
                _conv_layer(net.outer, c, net.inner.out_channels)]

    def slices(self, width: int) -> int:
        """How many slices y has at ``width``."""
        self.check_width(width)
        return width // self.slice_channels

    def hyper_trunk(self, z_hat: Tensor, width: int) -> Tensor:
        """h_s's trunk: the features both heads (and nothing else of the hyperprior) read."""
        h = F.relu(self.h_s[0](z_hat, width))
        return F.relu(self.h_s[1](h, hidden_width(width)))

    def slice_parameters(self, k: int, mean_all: Tensor, scale_all: Tensor, symbols: list[Tensor],
                         decoded: list[Tensor], latent_scale: float = 1.0) -> tuple[Tensor, Tensor]:
        """(μ_k, σ_k) of slice ``k`` from the heads' outputs and the earlier slices.

        Args:
            symbols: the integer symbols ``q`` of slices ``< k`` (straight-through in training).
            decoded: their values ``ŷ = q/s + μ``.
            latent_scale: ``s``; the scale path reads ``q/s``, which does not grow with it.
        """
        c = self.slice_channels
        mean, scale = mean_all[:, k * c:(k + 1) * c], scale_all[:, k * c:(k + 1) * c]
        if k:
            mean = mean + self.mean_context[k - 1](torch.cat(decoded, 1))
            scale = scale + self.scale_context[k - 1](torch.cat(symbols, 1) / latent_scale)
        return mean, scale

    def code_slices(self, y: Tensor, mean_all: Tensor, scale_all: Tensor, latent_scale: float = 1.0,
                    noisy_rate: bool = True, rounding: Rounding = ste_round) -> tuple[Tensor, Tensor]:
        """ŷ (straight-through) and the bits of each y element, slice after slice.

        The rate of slice k sees ``y − μ_k`` plus uniform noise of one bin (or rounded, with
        ``noisy_rate=False``); the context of later slices sees the rounded symbols, as the
        decoder will. ``rounding`` is straight-through unless an encoder's search relaxes it.
        """
        c = self.slice_channels
        symbols: list[Tensor] = []
        decoded: list[Tensor] = []
        bits: list[Tensor] = []
        for k in range(y.shape[1] // c):
            mean, scale = self.slice_parameters(k, mean_all, scale_all, symbols, decoded, latent_scale)
            centred = (y[:, k * c:(k + 1) * c] - mean) * latent_scale
            q = rounding(centred)
            rated = centred + torch.empty_like(centred).uniform_(-0.5, 0.5) if noisy_rate else q
            bits.append(-torch.log2(gaussian_likelihood(rated, scale * latent_scale)))
            symbols.append(q)
            decoded.append(q / latent_scale + mean)
        return torch.cat(decoded, 1), torch.cat(bits, 1)

    def code_y(self, y: Tensor, mean: Tensor, scale: Tensor) -> tuple[Tensor, Tensor]:
        """As :meth:`SlimCAEHyperprior.code_y`, slice by slice (the heads' μ and σ of every slice)."""
        y_hat, y_bits = self.code_slices(y, mean, scale, noisy_rate=self.training)
        return y_hat, torch.exp2(-y_bits)

    def code_y_at_scale(self, y: Tensor, mean: Tensor, scale_raw: Tensor, scale: float,
                        noisy_rate: bool, rounding: Rounding = ste_round) -> tuple[Tensor, Tensor]:
        """As :meth:`SlimCAEHyperprior.code_y_at_scale`, slice by slice."""
        return self.code_slices(y, mean, scale_raw, scale, noisy_rate, rounding)

    @classmethod
    def from_hyperprior(cls, hyperprior: SlimCAEHyperprior, **kwargs) -> SlimCAEChannel:
        """A channel-conditional model that starts as ``hyperprior`` (every context term zero)."""
        model = cls(hyperprior.widths, **kwargs)
        missing, unexpected = model.load_state_dict(hyperprior.state_dict_for_saving(), strict=False)
        if unexpected or any(not k.startswith(("scale_context.", "mean_context.")) for k in missing):
            raise ValueError(f"not a hyperprior state dict: missing {missing}, unexpected {unexpected}")
        return model
