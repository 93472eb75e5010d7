"""SlimCAE with a slimmable mean-scale hyperprior.

The analysis and synthesis transforms are 0.1.0's SlimCAE (Yang et al., CVPR 2021);
the hyperprior is Minnen, Ballé and Toderici 2018 without the autoregressive context,
as in CompressAI's ``MeanScaleHyperprior``. Every hyper convolution is sliced from one
set of full-width kernels like the main ones, so width ``w`` uses ``w`` channels of
``y`` and of ``z``::

    x ─g_a─► y ─h_a─► z ─Q─► ẑ ──(factorized, per width)
                              │
                      h_s trunk: deconv5↑2 ReLU deconv5↑2 ReLU
                              ├─ scale head conv3 ─► σ  (index of an integer table)
                              └─ mean head  conv3 ─► μ
    ŷ = round(y − μ) + μ  ──(Gaussian(0, σ) ⊛ U(−½, ½) on round(y − μ))
    x̂ ◄─g_s─ ŷ

The scale and the mean have separate output heads so that slicing keeps each output
channel's meaning at every width (one ``2w``-channel conv sliced at ``w`` would mix
them). Training uses mixed quantization (Minnen & Singh 2020): noisy latents for the
rate terms, straight-through rounding into ``h_s`` and ``g_s``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from slimcodec.geometry import HYPER_STRIDE
from slimcodec.models.factorized import PAPER_WIDTHS, Rounding, SlimCAE, check_rounding, ste_round
from slimcodec.models.layers import SlimConv2d, SlimConvTranspose2d

SCALE_BOUND = 0.11  # smallest σ (CompressAI's GaussianConditional default)
LIKELIHOOD_BOUND = 1e-9
DOWNSAMPLING = HYPER_STRIDE  # z is at 1/64 of the image side (slimcodec.geometry)


def hidden_width(width: int) -> int:
    """Channels between h_s's second deconvolution and its heads (CompressAI: 3/2 of M)."""
    return width * 3 // 2


def gaussian_likelihood(values: Tensor, scales: Tensor) -> Tensor:
    """P(v) of a zero-mean Gaussian with scale σ convolved with U(−½, ½), lower-bounded.

    Args:
        values: ``y − μ`` (noisy in training, integers when coding).
        scales: σ, bounded below by :data:`SCALE_BOUND`.
    """
    scales = scales.clamp_min(SCALE_BOUND)
    v = values.abs()
    # the upper tail form keeps precision far from the mean
    upper = 0.5 * torch.erfc((v - 0.5) / (scales * math.sqrt(2)))
    lower = 0.5 * torch.erfc((v + 0.5) / (scales * math.sqrt(2)))
    return (upper - lower).clamp_min(LIKELIHOOD_BOUND)


class SlimCAEHyperprior(SlimCAE):
    """SlimCAE whose latents are coded with a slimmable mean-scale hyperprior.

    ``entropy_bottleneck[str(w)]`` is z's factorized density at width ``w``.

    Args:
        widths (Iterable[int]): channel counts the network can run at.
    """

    def __init__(self, widths: Iterable[int] = PAPER_WIDTHS):
        super().__init__(widths)
        n = self.widths[0]
        m = hidden_width(n)
        self.h_a = nn.ModuleList(
            [
                SlimConv2d(n, n, 3, stride=1, padding=1),
                SlimConv2d(n, n, 5, stride=2, padding=2),
                SlimConv2d(n, n, 5, stride=2, padding=2),
            ]
        )
        self.h_s = nn.ModuleList(
            [
                SlimConvTranspose2d(n, n, 5, stride=2, padding=2, output_padding=1),
                SlimConvTranspose2d(n, m, 5, stride=2, padding=2, output_padding=1),
            ]
        )
        self.h_s_scale = SlimConv2d(m, n, 3, stride=1, padding=1)
        self.h_s_mean = SlimConv2d(m, n, 3, stride=1, padding=1)

    def hyper_analysis(self, y: Tensor, width: int) -> Tensor:
        """Map latents ``y`` (N×w×h×w') to hyper-latents ``z`` at a quarter of their side."""
        for i, conv in enumerate(self.h_a):
            y = conv(y, width)
            if i < len(self.h_a) - 1:
                y = F.relu(y)
        return y

    def hyper_synthesis(self, z_hat: Tensor, width: int) -> tuple[Tensor, Tensor]:
        """Map quantized hyper-latents to ``(μ, σ_raw)`` of y (σ is bounded by the caller)."""
        h = F.relu(self.h_s[0](z_hat, width))
        h = F.relu(self.h_s[1](h, hidden_width(width)))
        return self.h_s_mean(h, width), self.h_s_scale(h, width)

    STAGES = SlimCAE.STAGES + ("hyper_analysis", "hyper_mean")

    def hyper_prior(self, y: Tensor, width: int, z: Tensor | None = None,
                    rounding: Rounding = ste_round) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """z = h_a(y) (or the given ``z``), its quantized ẑ (``rounding``, offset by the medians),
        and h_s(ẑ)'s μ and σ."""
        if z is None:
            z = self.hyper_analysis(y, width)
        medians = self.z_medians(width)
        z_hat = rounding(z - medians) + medians
        mean, scale = self.hyper_synthesis(z_hat, width)
        return z, z_hat, mean, scale

    def code_latents(self, y: Tensor, width: int, scale: float = 1.0, noisy_rate: bool = True,
                     rounding: Rounding = ste_round, z: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """As :meth:`SlimCAE.code_latents`; z is ``h_a(y)`` (as the encoder computes it) unless
        given, and its bits are spread over y's positions, so ``bits.sum()`` is the whole
        payload's estimate. ``rounding`` quantizes z and y alike."""
        from slimcodec.models.factorized import factorized_bits

        check_rounding(rounding, noisy_rate)
        # fp32 under bf16 autocast too, as in forward()
        with torch.autocast(device_type=y.device.type, enabled=False):
            y = y.float()
            z, z_hat, mean, scale_raw = self.hyper_prior(y, width, z, rounding)
            z_rated = z + torch.empty_like(z).uniform_(-0.5, 0.5) if noisy_rate else z_hat
            z_bits = factorized_bits(self.entropy_bottleneck[str(width)], z_rated)
            y_hat, y_bits = self.code_y_at_scale(y, mean, scale_raw, scale, noisy_rate, rounding)
            spread = z_bits.sum() / y_bits.numel()
        return y_hat, y_bits + spread

    def code_y_at_scale(self, y: Tensor, mean: Tensor, scale_raw: Tensor, scale: float,
                        noisy_rate: bool, rounding: Rounding = ste_round) -> tuple[Tensor, Tensor]:
        """ŷ on a grid ``scale`` times finer than the unit one, and the bits of each y element."""
        centred = y - mean
        q = rounding(centred * scale)
        y_hat = q / scale + mean
        rated = (centred + torch.empty_like(y).uniform_(-0.5 / scale, 0.5 / scale)) * scale if noisy_rate else q
        return y_hat, -torch.log2(gaussian_likelihood(rated, scale_raw * scale))

    @torch.no_grad()
    def stage_layers(self, stage: str, width: int) -> list:
        """As :meth:`SlimCAE.stage_layers`, plus ``hyper_analysis`` (y → z) and ``hyper_mean``
        (h_s's trunk activations → μ; the trunk itself runs in fixed point)."""
        from slimcodec.models.factorized import _conv_layer, _deconv_layer
        from slimcodec.runtime.stage_layers import ReLU

        if stage == "hyper_analysis":
            self.check_width(width)
            out = []
            for i, conv in enumerate(self.h_a):
                out.append(_conv_layer(conv, width, width))
                if i < len(self.h_a) - 1:
                    out.append(ReLU())
            return out
        if stage == "hyper_scale":  # run in fixed point (FixedPointHyperSynthesis), never as a graph
            self.check_width(width)
            m = hidden_width(width)
            return [_deconv_layer(self.h_s[0], width, width), ReLU(), _deconv_layer(self.h_s[1], width, m), ReLU(),
                    _conv_layer(self.h_s_scale, width, m)]
        if stage == "hyper_mean":
            self.check_width(width)
            return [_conv_layer(self.h_s_mean, width, hidden_width(width))]
        return super().stage_layers(stage, width)

    def z_medians(self, width: int) -> Tensor:
        """z's quantization offsets (1×w×1×1): the medians of its factorized densities."""
        return self.entropy_bottleneck[str(width)]._get_medians().detach()

    def forward(self, x: Tensor, width: int) -> dict:
        """Training pass with mixed quantization.

        Returns:
            dict: ``{"x_hat", "likelihoods": {"y", "z"}}``; likelihoods from noisy latents.
        """
        self.check_width(width)
        y = self.analysis(x, width)
        bottleneck = self.entropy_bottleneck[str(width)]
        # The hyperprior runs in fp32 even under bf16 autocast: its likelihoods
        # need more than bf16's 8 bits of mantissa, and it is cheap (1/16, 1/64).
        with torch.autocast(device_type=y.device.type, enabled=False):
            y = y.float()
            z, _, mean, scale = self.hyper_prior(y, width)
            _, z_likelihoods = bottleneck(z, training=self.training)
            y_hat, y_likelihoods = self.code_y(y, mean, scale)
        x_hat = self.synthesis(y_hat, width)
        return {"x_hat": x_hat, "likelihoods": {"y": y_likelihoods, "z": z_likelihoods}}

    def code_y(self, y: Tensor, mean: Tensor, scale: Tensor) -> tuple[Tensor, Tensor]:
        """ŷ (rounded, straight-through) and y's likelihoods given the heads' μ and σ.

        In training the likelihoods are of noisy latents, otherwise of the rounded symbols.
        """
        if self.training:
            y_noisy = y + torch.empty_like(y).uniform_(-0.5, 0.5)
            y_likelihoods = gaussian_likelihood(y_noisy - mean, scale)
        else:
            y_likelihoods = gaussian_likelihood(torch.round(y - mean), scale)
        return ste_round(y - mean) + mean, y_likelihoods

    @torch.no_grad()
    def start_heads_at(self, y: Tensor, width: int, weight_gain: float = 0.1) -> None:
        """Start the heads near a per-channel Gaussian fit of latents ``y`` (N×w×h×w').

        A fresh h_s predicts σ near zero and a warm-started y then costs several bits a
        symbol; with the biases at each channel's mean and spread, and the heads' weights
        shrunk by ``weight_gain``, training starts near the factorized prior's rate and
        the hyperprior only has to learn what depends on z.
        """
        y = y.float()
        self.h_s_mean.bias[:width] = y.mean((0, 2, 3))
        self.h_s_scale.bias[:width] = y.std((0, 2, 3)).clamp_min(SCALE_BOUND)
        self.h_s_mean.weight.mul_(weight_gain)
        self.h_s_scale.weight.mul_(weight_gain)

    @classmethod
    def from_factorized(cls, factorized: SlimCAE) -> SlimCAEHyperprior:
        """A hyperprior model whose transforms (and GDNs) are ``factorized``'s; the rest is new."""
        model = cls(factorized.widths)
        transforms = {
            k: v for k, v in factorized.state_dict_for_saving().items()
            if not k.startswith("entropy_bottleneck.")
        }
        missing, unexpected = nn.Module.load_state_dict(model, transforms, strict=False)
        new = ("h_a.", "h_s.", "h_s_scale.", "h_s_mean.", "entropy_bottleneck.")
        if unexpected or any(not k.startswith(new) for k in missing):
            raise ValueError(f"not a SlimCAE state dict: missing {missing}, unexpected {unexpected}")
        return model


def fixed_point_hyper_synthesis(model: SlimCAEHyperprior, width: int):
    """The integer-exact trunk and scale head of ``model``'s h_s at ``width``.

    Returns:
        slimcodec.entropy.gaussian.FixedPointHyperSynthesis
    """
    from slimcodec.entropy.gaussian import FixedPointHyperSynthesis

    medians = model.z_medians(width).reshape(-1).float().cpu().numpy()
    return FixedPointHyperSynthesis.from_layers(model.stage_layers("hyper_scale", width), medians)
