"""SlimCAE: a slimmable factorized-prior autoencoder.

Yang, Bamler and Mandt, "Slimmable Compressive Autoencoders for Practical
Neural Image Compression", CVPR 2021, https://arxiv.org/abs/2103.15726.
The base network is Ballé et al. 2017 (factorized prior); every convolution
is a width-sliced kernel, and each width has its own GDN layers and its own
entropy bottleneck, as in the paper's code::

    x ──conv9↓4─GDN─conv5↓2─GDN─conv5↓2─GDN──► y ──Q──► ŷ ──(range coder)
    x̂ ◄─IGDN─deconv9↑4─IGDN─deconv5↑2─IGDN─deconv5↑2─── ŷ

At width ``w`` all hidden layers and the latent ``y`` have ``w`` channels.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from compressai.entropy_models import EntropyBottleneck
from compressai.layers import GDN
from torch import Tensor, nn

from slimcodec.geometry import STRIDE
from slimcodec.models.layers import SlimConv2d, SlimConvTranspose2d

PAPER_WIDTHS: tuple[int, ...] = (192, 144, 96, 72, 48)
# λ of the paper's code (2048 … 128 on MSE of [0, 1] pixels) in CompressAI's λ·255²·MSE convention
PAPER_LAMBDAS = {w: lam / 255**2 for w, lam in zip(PAPER_WIDTHS, (2048, 1024, 512, 256, 128))}
# CompressAI's EntropyBottleneck keeps its CDFs in these buffers; they are
# rebuilt by update() and never saved (the weights file holds our own tables).
_CDF_BUFFERS = ("._offset", "._quantized_cdf", "._cdf_length")
DOWNSAMPLING = STRIDE  # total stride of the analysis transform (slimcodec.geometry)
# a differentiable stand-in for rounding (straight-through, or an encoder's soft rounding)
Rounding = Callable[[Tensor], Tensor]


def ste_round(x: Tensor) -> Tensor:
    """Round with a straight-through (identity) gradient."""
    return x + (torch.round(x) - x).detach()


def check_rounding(rounding: Rounding, noisy_rate: bool) -> None:
    """Raise ``ValueError`` for a rounding stand-in other than :func:`ste_round` with a noisy rate:
    an encoder's relaxed search rates what it rounds."""
    if noisy_rate and rounding is not ste_round:
        raise ValueError("a rounding stand-in is for rounded rates (noisy_rate=False)")


def _per_width(widths: Iterable[int], make) -> nn.ModuleDict:
    return nn.ModuleDict({str(w): make(w) for w in widths})


def factorized_bits(bottleneck: EntropyBottleneck, values: Tensor, half: float = 0.5) -> Tensor:
    """−log2 of a factorized density's mass on ``[v − half, v + half]``, per value (N×C×H×W)."""
    n, c, h, w = values.shape
    v = values.permute(1, 0, 2, 3).reshape(c, 1, -1)
    lower = bottleneck._logits_cumulative(v - half, stop_gradient=False)
    upper = bottleneck._logits_cumulative(v + half, stop_gradient=False)
    sign = -torch.sign(lower + upper).detach()  # the tail-side form keeps precision
    mass = torch.abs(torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower)).clamp_min(1e-9)
    return (-torch.log2(mass)).reshape(c, n, h, w).permute(1, 0, 2, 3)


def _array(t: Tensor | None):
    return None if t is None else t.detach().float().cpu().numpy().copy()


def _conv_layer(conv: nn.Conv2d, out_width: int, in_width: int):
    from slimcodec.runtime.stage_layers import Conv

    bias = None if conv.bias is None else conv.bias[:out_width]
    return Conv(_array(conv.weight[:out_width, :in_width]), _array(bias), conv.stride[0], conv.padding[0])


def _deconv_layer(deconv: nn.ConvTranspose2d, in_width: int, out_width: int):
    from slimcodec.runtime.stage_layers import ConvTranspose

    bias = None if deconv.bias is None else deconv.bias[:out_width]
    return ConvTranspose(_array(deconv.weight[:in_width, :out_width]), _array(bias), deconv.stride[0],
                         deconv.padding[0], deconv.output_padding[0])


def _gdn_layer(gdn: GDN):
    from slimcodec.runtime.stage_layers import GDN as GDNLayer

    return GDNLayer(_array(gdn.beta_reparam(gdn.beta)), _array(gdn.gamma_reparam(gdn.gamma)), gdn.inverse)


class SlimCAE(nn.Module):
    """Slimmable compressive autoencoder running at any of ``widths``.

    Args:
        widths (Iterable[int]): channel counts the network can run at; the
            largest is the width of the shared kernels.
    """

    def __init__(self, widths: Iterable[int] = PAPER_WIDTHS):
        super().__init__()
        self.widths: tuple[int, ...] = tuple(sorted({int(w) for w in widths}, reverse=True))
        if not self.widths or min(self.widths) < 1:
            raise ValueError(f"widths must be positive integers, got {widths!r}")
        n = self.widths[0]
        self.g_a = nn.ModuleList(
            [
                SlimConv2d(3, n, 9, stride=4, padding=4),
                SlimConv2d(n, n, 5, stride=2, padding=2),
                SlimConv2d(n, n, 5, stride=2, padding=2, bias=False),
            ]
        )
        self.g_s = nn.ModuleList(
            [
                SlimConvTranspose2d(n, n, 5, stride=2, padding=2, output_padding=1),
                SlimConvTranspose2d(n, n, 5, stride=2, padding=2, output_padding=1),
                SlimConvTranspose2d(n, 3, 9, stride=4, padding=4, output_padding=3),
            ]
        )
        self.gdn = nn.ModuleList([_per_width(self.widths, GDN) for _ in self.g_a])
        self.igdn = nn.ModuleList(
            [_per_width(self.widths, lambda w: GDN(w, inverse=True)) for _ in self.g_s]
        )
        self.entropy_bottleneck = _per_width(self.widths, EntropyBottleneck)

    def check_width(self, width: int) -> None:
        """Raise ``ValueError`` naming the valid widths if ``width`` is not one."""
        if width not in self.widths:
            valid = ", ".join(str(w) for w in self.widths)
            raise ValueError(f"width {width} is not available; valid widths: {valid}")

    def analysis(self, x: Tensor, width: int) -> Tensor:
        """Map images ``x`` (N×3×H×W in [0, 1], H and W multiples of 16) to latents ``y``."""
        self.check_width(width)
        key = str(width)
        for conv, gdn in zip(self.g_a, self.gdn):
            x = gdn[key](conv(x, width))
        return x

    def synthesis(self, y_hat: Tensor, width: int) -> Tensor:
        """Map quantized latents back to images (not clamped)."""
        self.check_width(width)
        key = str(width)
        for i, (deconv, igdn) in enumerate(zip(self.g_s, self.igdn)):
            out = 3 if i == len(self.g_s) - 1 else width
            y_hat = deconv(igdn[key](y_hat), out)
        return y_hat

    def forward(self, x: Tensor, width: int) -> dict:
        """Training pass: likelihoods of noisy latents, and the synthesis of rounded ones.

        Returns:
            dict: ``{"x_hat": Tensor, "likelihoods": {"y": Tensor}}`` as in CompressAI.
        """
        y = self.analysis(x, width)
        bottleneck = self.entropy_bottleneck[str(width)]
        # The density model runs in fp32 even under bf16 autocast: its
        # likelihoods need more than bf16's 8 bits of mantissa.
        with torch.autocast(device_type=y.device.type, enabled=False):
            y = y.float()
            _, likelihoods = bottleneck(y)
            # Mixed quantization: the rate sees noise (in training), the synthesis
            # always sees the grid the decoder will see, with a straight-through gradient.
            medians = bottleneck._get_medians().detach()
            y_hat = y + (torch.round(y - medians) + medians - y).detach()
        x_hat = self.synthesis(y_hat, width)
        return {"x_hat": x_hat, "likelihoods": {"y": likelihoods}}

    STAGES: tuple[str, ...] = ("analysis", "synthesis")

    def latent_rd(self, y: Tensor, width: int, scale: float = 1.0, noisy_rate: bool = True,
                  rounding: Rounding = ste_round, z: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """The decoder's view of free latents ``y``, for refining them at encode time.

        Mixed quantization as in training (:meth:`code_latents`), then the synthesis.

        Returns:
            (x_hat, bits): the reconstruction and the estimated bits of each latent.
        """
        y_hat, bits = self.code_latents(y, width, scale, noisy_rate, rounding, z)
        return self.synthesis(y_hat, width), bits

    def code_latents(self, y: Tensor, width: int, scale: float = 1.0, noisy_rate: bool = True,
                     rounding: Rounding = ste_round, z: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """ŷ and the estimated bits of each latent: the entropy model's whole part of a pass.

        The synthesis sees ``y`` on the file's grid (``round(s·(y − median))/s + median``,
        straight-through); the rate sees ``y`` plus uniform noise of one bin (``1/s``), or the
        rounded values with ``noisy_rate=False``. Rate-only training (``train --entropy-only``)
        uses the bits alone.

        Args:
            rounding: replaces the straight-through rounding, for both the synthesis and the
                rate (an encoder's relaxed search, :mod:`slimcodec.effort`); needs ``noisy_rate=False``.
            z: hyper-latents to use instead of ``h_a(y)`` (models with a hyperprior only).
        """
        if z is not None:
            raise ValueError("the factorized model has no hyper-latents")
        check_rounding(rounding, noisy_rate)
        bottleneck = self.entropy_bottleneck[str(width)]
        medians = bottleneck._get_medians().detach()
        y_hat = rounding((y - medians) * scale) / scale + medians
        rated = y + torch.empty_like(y).uniform_(-0.5 / scale, 0.5 / scale) if noisy_rate else y_hat
        return y_hat, factorized_bits(bottleneck, rated, 0.5 / scale)

    @torch.no_grad()
    def stage_layers(self, stage: str, width: int) -> list:
        """The layers of one transform stage at ``width``, as numpy (for runtimes other than torch).

        Args:
            stage (str): one of :attr:`STAGES`.

        Returns:
            list[slimcodec.runtime.stage_layers.Layer]: run in order, they compute what the
            method of the same name computes.
        """
        self.check_width(width)
        key = str(width)
        if stage == "analysis":
            out, cin = [], 3
            for conv, gdn in zip(self.g_a, self.gdn):
                out += [_conv_layer(conv, width, cin), _gdn_layer(gdn[key])]
                cin = width
            return out
        if stage == "synthesis":
            out = []
            for i, (deconv, igdn) in enumerate(zip(self.g_s, self.igdn)):
                out += [_gdn_layer(igdn[key]), _deconv_layer(deconv, width, 3 if i == len(self.g_s) - 1 else width)]
            return out
        raise ValueError(f"unknown stage {stage!r}; stages: {', '.join(self.STAGES)}")

    def aux_loss(self) -> Tensor:
        """Sum of the entropy bottlenecks' quantile losses (CompressAI's ``aux_loss``)."""
        return sum(eb.loss() for eb in self.entropy_bottleneck.values())

    @classmethod
    def from_state_dict(cls, state_dict: dict) -> SlimCAE:
        """Build a model whose widths are read off the state dict's keys, and load it."""
        prefix = "entropy_bottleneck."
        widths = {int(k[len(prefix):].split(".")[0]) for k in state_dict if k.startswith(prefix)}
        model = cls(widths)
        model.load_state_dict(state_dict)
        return model

    def restore_constants(self) -> None:
        """Reset the float buffers to the values the architecture gives them.

        They are constants (GDN pedestals and bounds, the bottlenecks' quantile
        targets and likelihood bound), but weights files before 2026-11-30 stored
        them in float16, which turns the likelihood bound 1e-9 into 0: a training
        step then sees an infinite rate. Inference is unaffected.
        """
        fresh = type(self)(self.widths, **self.config()).state_dict()
        constants = self.constant_names()
        with torch.no_grad():
            for name, buffer in self.state_dict(keep_vars=True).items():
                if name in constants:
                    buffer.copy_(fresh[name])

    def config(self) -> dict:
        """The constructor's arguments beyond the widths: ``type(model)(model.widths, **model.config())``
        builds a model of the same shapes (none here; the channel model has its slice size)."""
        return {}

    def constant_names(self) -> set[str]:
        """State-dict names of the float buffers: constants of the architecture, never trained."""
        params = {name for name, _ in self.named_parameters()}
        return {k for k, v in self.state_dict().items() if k not in params and v.is_floating_point()}

    def state_dict_for_saving(self) -> dict:
        """State dict without CompressAI's CDF buffers (our tables live in entropy.py)."""
        return {k: v for k, v in self.state_dict().items() if not k.endswith(_CDF_BUFFERS)}

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):  # type: ignore[override]
        """Load a state dict saved by :meth:`state_dict_for_saving` (CDF buffers optional)."""
        own_buffers = {k: v for k, v in self.state_dict().items() if k.endswith(_CDF_BUFFERS)}
        return super().load_state_dict({**own_buffers, **state_dict}, strict=strict, assign=assign)
