"""The hyperprior's entropy model: zero-mean Gaussian tables and an exact table choice.

A y symbol is ``q = round(s · (y − μ))`` (``s`` the latent scale, 1 by default), coded
with one of ``L`` integer tables: the discretized zero-mean Gaussian of a scale from a
log-spaced scale table. Which table is chosen from the hyper-synthesis' scale output σ:
the index of the first table scale at or above ``σ · s``. A one-ulp difference there
would change the table and desynchronize the range decoder, so σ is computed by an
integer-exact network (Ballé, Johnston and Minnen, ICLR 2019): weights and activations in
fixed point, sums of integer products that are exact in float64 (every partial sum stays
below 2**53, checked when the weights are built), so any BLAS, thread count or summation
order gives the same integers. μ stays float: it moves values, not tables.

Fixed point (``FixedPointHyperSynthesis``): a weight ``w`` is ``round(w · 2**WEIGHT_BITS)``,
an activation ``a`` is ``round(a · 2**ACT_BITS)`` clamped to ``[0, ACT_MAX]``. A layer's
accumulator ``Σ w·a + b`` is in units of ``2**-(WEIGHT_BITS + ACT_BITS)``; ReLU and
rescaling give the next activation ``clamp(floor((acc + 2**(WEIGHT_BITS-1)) / 2**WEIGHT_BITS),
0, ACT_MAX)``. The scale head's accumulator is compared, as an integer, with the table's
thresholds in the same units.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np

from slimcodec.entropy.tables import PRECISION_BITS, SCALE_ONE, check_rows

SCALE_MIN = 0.11  # the model's lower bound on σ
SCALE_MAX = 256.0
SCALE_LEVELS = 64
TAIL_MASS = 1e-9  # mass left outside a table's support, coded through the escape
WEIGHT_BITS = 16
ACT_BITS = 12
ACT_MAX = (1 << 24) - 1  # activations (and inputs) are clamped to this magnitude
ACC_LIMIT = 1 << 53  # exact-integer range of float64
SCALE_ACC_MAX = 1 << 40  # the scale accumulator is clamped here before the latent scale multiplies it


def scale_table(levels: int = SCALE_LEVELS, low: float = SCALE_MIN, high: float = SCALE_MAX) -> np.ndarray:
    """Log-spaced table scales from ``low`` to ``high`` (CompressAI's ``get_scale_table``)."""
    return np.exp(np.linspace(math.log(low), math.log(high), levels))


def _normal_cdf(x: np.ndarray) -> np.ndarray:
    return 0.5 * np.vectorize(math.erfc)(-x / math.sqrt(2))


@dataclass(frozen=True)
class GaussianTables:
    """Integer tables of zero-mean discretized Gaussians, one per table scale.

    Attributes:
        scales (np.ndarray): float64 ``[L]``, the table scales (informative; never used to decode).
        thresholds (np.ndarray): int64 ``[L]``, ``ceil(scale · 2**(WEIGHT_BITS + ACT_BITS))``:
            a symbol whose scale accumulator times the latent scale is at most
            ``thresholds[i] · SCALE_ONE`` uses table ``i`` or a smaller one.
        offsets (np.ndarray): int32 ``[L]``, symbol value of table entry 0 (``−K``).
        counts (np.ndarray): int32 ``[L, N]``: ``lengths[i]`` positive counts (the last is the
            escape) summing to ``2**PRECISION_BITS``, then zeros.
        lengths (np.ndarray): int32 ``[L]``.
    """

    scales: np.ndarray
    thresholds: np.ndarray
    offsets: np.ndarray
    counts: np.ndarray
    lengths: np.ndarray

    @property
    def levels(self) -> int:
        return int(self.thresholds.shape[0])

    @classmethod
    def build(cls, scales: np.ndarray | None = None) -> GaussianTables:
        """Discretize each Gaussian over ``[−K, K]`` with ``K = ceil(tail · σ)`` (floats; built once)."""
        scales = scale_table() if scales is None else np.asarray(scales, np.float64)
        tail = -_normal_cdf_inverse(TAIL_MASS / 2)
        total = 1 << PRECISION_BITS
        rows, offsets = [], []
        for s in scales:
            k = max(1, int(math.ceil(tail * s)))
            q = np.arange(-k, k + 1, dtype=np.float64)
            pmf = _normal_cdf((q + 0.5) / s) - _normal_cdf((q - 0.5) / s)
            escape = 1
            counts = 1 + np.floor(pmf * (total - escape - len(q))).astype(np.int64)
            counts[k] += total - escape - int(counts.sum())  # the remainder goes to the mode
            rows.append(np.append(counts, escape))
            offsets.append(-k)
        width = max(len(r) for r in rows)
        table = np.zeros((len(rows), width), np.int32)
        for i, r in enumerate(rows):
            table[i, : len(r)] = r
        thresholds = np.ceil(scales * (1 << (WEIGHT_BITS + ACT_BITS))).astype(np.int64)
        built = cls(scales, thresholds, np.asarray(offsets, np.int32), table,
                    np.asarray([len(r) for r in rows], np.int32))
        built.validate()
        return built

    def validate(self) -> None:
        """Raise ``ValueError`` unless the arrays are consistent and every count is usable."""
        if self.thresholds.shape != self.offsets.shape:
            raise ValueError("Gaussian table arrays disagree on the level count")
        if (np.diff(self.thresholds) <= 0).any() or self.thresholds[0] <= 0:
            raise ValueError("Gaussian table thresholds are not increasing")
        check_rows(self.offsets, self.counts, self.lengths, "Gaussian table")

    def indexes(self, scale_acc: np.ndarray, latent_scale: int = SCALE_ONE) -> np.ndarray:
        """Table index per symbol from the scale head's integer accumulator (exact).

        Args:
            scale_acc: the accumulators (integers, as int64 or exact float64).
            latent_scale: the latent scale in 1/SCALE_ONE units (σ grows with it).
        """
        acc = np.clip(np.asarray(scale_acc, np.float64), 0, SCALE_ACC_MAX).astype(np.int64)
        scaled = acc * np.int64(latent_scale)
        index = np.searchsorted(self.thresholds * np.int64(SCALE_ONE), scaled, side="left")
        return np.minimum(index, self.levels - 1).astype(np.int32)

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {"scales": self.scales, "thresholds": self.thresholds, "offsets": self.offsets,
                "counts": self.counts, "lengths": self.lengths}

    @classmethod
    def from_arrays(cls, arrays: dict) -> GaussianTables:
        table = cls(
            scales=np.asarray(arrays["scales"], np.float64),
            thresholds=np.asarray(arrays["thresholds"], np.int64),
            offsets=np.asarray(arrays["offsets"], np.int32),
            counts=np.asarray(arrays["counts"], np.int32),
            lengths=np.asarray(arrays["lengths"], np.int32),
        )
        table.validate()
        return table


def _normal_cdf_inverse(p: float) -> float:
    """Φ⁻¹(p) by bisection on ``math.erfc`` (only used to size the tables)."""
    lo, hi = -40.0, 40.0
    for _ in range(200):
        mid = (lo + hi) / 2
        if 0.5 * math.erfc(-mid / math.sqrt(2)) < p:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


@dataclass(frozen=True)
class FixedPointLayer:
    """One convolution in fixed point: integer weights ``[out, in, k, k]`` (correlation form)."""

    weight: np.ndarray  # float64 holding integers, [out, in, k, k]
    bias: np.ndarray  # float64 holding integers, [out], in accumulator units
    stride: int  # 1 for a convolution, 2 for a transposed convolution (upsampling)
    padding: int
    output_padding: int = 0

    @property
    def transposed(self) -> bool:
        return self.stride > 1

    @cached_property
    def scatter_kernel(self) -> np.ndarray:
        """The kernel in scatter form, ``[out · k · k, in]`` contiguous (made once per layer)."""
        out_c, in_c, k, _ = self.weight.shape
        return np.ascontiguousarray(self.weight[:, :, ::-1, ::-1].transpose(0, 2, 3, 1)).reshape(out_c * k * k, in_c)


@dataclass(frozen=True)
class FixedPointHyperSynthesis:
    """The trunk and scale head of h_s at one width, integer-exact.

    ``layers`` are the trunk's transposed convolutions followed by the scale head.
    """

    layers: tuple[FixedPointLayer, ...]
    z_offsets: np.ndarray  # int64 [C]: round(median · 2**ACT_BITS) of each z channel
    # format 3: the scale contexts of slices 1, 2, ... (FixedPointSliceContext), whose
    # accumulators are added to the scale head's
    contexts: tuple = ()

    def check_exact(self) -> None:
        """Raise ``ValueError`` if some accumulator could leave float64's exact-integer range:
        each layer's, each slice context's, and the scale head's plus a context's outer one."""
        for layer in self.layers:
            bound = np.abs(layer.weight).reshape(layer.weight.shape[0], -1).sum(1) * ACT_MAX + np.abs(layer.bias)
            if bound.max() >= ACC_LIMIT:
                raise ValueError("fixed-point hyper-synthesis could overflow float64's exact range")
        head = _bound(self.layers[-1])
        for context in self.contexts:
            if _bound(context.inner) >= ACC_LIMIT or head + _bound(context.outer) >= ACC_LIMIT:
                raise ValueError("fixed-point slice context could overflow float64's exact range")

    @classmethod
    def from_layers(cls, layers: list, z_medians: np.ndarray, contexts: tuple = ()) -> FixedPointHyperSynthesis:
        """Quantize float layers to fixed point (every runtime builds the same integers from them).

        Args:
            layers: the trunk's ``ConvTranspose``/``ReLU`` pairs then the scale head's
                ``Conv`` (:mod:`slimcodec.runtime.stage_layers`; the ReLUs are the clip to
                ``[0, ACT_MAX]`` between layers).
            z_medians: z's quantization offsets ``[C]``.
            contexts: format 3's slice contexts (:class:`FixedPointSliceContext`), checked with the head.

        Raises:
            ValueError: the layers are not of that shape, or could overflow float64's exact range.
        """
        from slimcodec.runtime.stage_layers import Conv, ConvTranspose, ReLU

        convs = [layer for layer in layers if not isinstance(layer, ReLU)]
        *trunk, head = convs
        if not trunk or not all(isinstance(c, ConvTranspose) for c in trunk) or not isinstance(head, Conv):
            raise ValueError("the hyper-synthesis is transposed convolutions then one convolution")
        fixed_layers = [
            # ConvTranspose weights are [in, out, k, k]; the correlation form flips the kernel
            _fixed(c.weight.transpose(1, 0, 2, 3)[:, :, ::-1, ::-1], c.bias, stride=c.stride, padding=c.padding,
                  output_padding=c.output_padding)
            for c in trunk
        ]
        fixed_layers.append(_fixed(head.weight, head.bias, stride=1, padding=head.padding))
        offsets = np.round(np.asarray(z_medians, np.float64).reshape(-1) * (1 << ACT_BITS)).astype(np.int64)
        net = cls(tuple(fixed_layers), offsets, tuple(contexts))
        net.check_exact()
        return net

    def input_activations(self, z_symbols: np.ndarray) -> np.ndarray:
        """Fixed-point ẑ from z's integer symbols ``[C, h, w]``: ``q · 2**ACT_BITS + offset``."""
        a = z_symbols.astype(np.int64) * (1 << ACT_BITS) + self.z_offsets[:, None, None]
        return np.clip(a, -ACT_MAX, ACT_MAX).astype(np.float64)

    def run(self, z_symbols: np.ndarray, conv=None, head_channels: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Trunk activations (fixed point, float64 integers) and the scale accumulators.

        Args:
            z_symbols: int ``[C, h, w]``.
            conv: the exact convolution to use (default :func:`conv_exact_numpy`); any
                function computing exact integer sums gives identical results.
            head_channels: compute only the first this many channels' accumulators (all by default).

        Returns:
            (trunk ``[C', 4h, 4w]``, scale accumulators ``[C, 4h, 4w]``), both float64 integers.
        """
        conv = conv or conv_exact_numpy
        a = self.input_activations(z_symbols)
        *trunk, head = self.layers
        for layer in trunk:
            acc = conv(a, layer)
            a = np.clip(np.floor((acc + (1 << (WEIGHT_BITS - 1))) / (1 << WEIGHT_BITS)), 0, ACT_MAX)
        if head_channels is not None:
            head = replace(head, weight=head.weight[:head_channels], bias=head.bias[:head_channels])
        return a, conv(a, head)


def context_input_activations(symbols: np.ndarray, latent_scale: int = SCALE_ONE) -> np.ndarray:
    """Fixed-point ``q / s`` of integer symbols at a latent scale (in 1/SCALE_ONE units):
    ``clamp(floor(q · 2**ACT_BITS · SCALE_ONE / latent_scale), −ACT_MAX, ACT_MAX)``, an exact
    integer division (at scale 1 it is ``q · 2**ACT_BITS``), as float64 integers."""
    q = np.asarray(symbols).astype(np.int64)
    a = (q * np.int64((1 << ACT_BITS) * SCALE_ONE)) // np.int64(latent_scale)
    return np.clip(a, -ACT_MAX, ACT_MAX).astype(np.float64)


def relu_rescale(acc: np.ndarray) -> np.ndarray:
    """The next activation from an accumulator: ``clamp(floor((acc + 2**15) / 2**16), 0, ACT_MAX)``."""
    return np.clip(np.floor((acc + (1 << (WEIGHT_BITS - 1))) / (1 << WEIGHT_BITS)), 0, ACT_MAX)


def _fixed_weight(weight: np.ndarray) -> np.ndarray:
    """``round(w · 2**WEIGHT_BITS)`` as a contiguous float64 array, made in place (one copy of the kernel)."""
    fixed = np.array(weight, dtype=np.float64, order="C")
    fixed *= 1 << WEIGHT_BITS
    return np.round(fixed, out=fixed)


def _fixed(weight: np.ndarray, bias: np.ndarray | None, **geometry) -> FixedPointLayer:
    """A float layer in fixed point: weights ``round(w · 2**WEIGHT_BITS)``,
    bias ``round(b · 2**(WEIGHT_BITS + ACT_BITS))``."""
    b = np.zeros(weight.shape[0]) if bias is None else np.asarray(bias, np.float64)
    return FixedPointLayer(weight=_fixed_weight(weight), bias=np.round(b * float(1 << (WEIGHT_BITS + ACT_BITS))),
                           **geometry)


def _bound(layer: FixedPointLayer) -> float:
    """The largest accumulator magnitude a layer can reach from inputs within ``ACT_MAX``
    (every partial sum is below it)."""
    return float((np.abs(layer.weight).reshape(layer.weight.shape[0], -1).sum(1) * ACT_MAX + np.abs(layer.bias)).max())


@dataclass(frozen=True)
class FixedPointSliceContext:
    """One slice's scale context in fixed point (format 3, :mod:`slimcodec.latents.channel`).

    ``inner`` (3×3, earlier slices → hidden, with bias) reads the earlier slices' symbols as
    :func:`context_input_activations`; ReLU and rescaling as in the trunk
    (:func:`relu_rescale`); ``outer`` (3×3, hidden → slice, no bias) gives an accumulator in
    the scale head's units, added to the head's accumulator of the slice as an integer.
    """

    inner: FixedPointLayer
    outer: FixedPointLayer

    @classmethod
    def from_layers(cls, layers: list) -> FixedPointSliceContext:
        """Quantize ``[Conv, ReLU, Conv (no bias)]`` (3×3, stride 1) to fixed point.

        Its range is checked with the scale head it adds to (:meth:`FixedPointHyperSynthesis.check_exact`).

        Raises:
            ValueError: the layers are not of that shape.
        """
        from slimcodec.runtime.stage_layers import Conv, ReLU

        if (len(layers) != 3 or not isinstance(layers[0], Conv) or not isinstance(layers[1], ReLU)
                or not isinstance(layers[2], Conv) or layers[2].bias is not None
                or any(c.stride != 1 for c in (layers[0], layers[2]))):
            raise ValueError("a slice context is a convolution, ReLU, then a convolution without bias")
        inner, _, outer = layers
        return cls(_fixed(inner.weight, inner.bias, stride=1, padding=inner.padding),
                   _fixed(outer.weight, None, stride=1, padding=outer.padding))

    def run(self, symbols: np.ndarray, latent_scale: int = SCALE_ONE, conv=None) -> np.ndarray:
        """The context accumulators ``[slice, h, w]`` (float64 integers) of the earlier slices'
        symbols ``[k·slice, h, w]``."""
        conv = conv or conv_exact_numpy
        hidden = relu_rescale(conv(context_input_activations(symbols, latent_scale), self.inner))
        return conv(hidden, self.outer)


def conv_exact_numpy(a: np.ndarray, layer: FixedPointLayer, block_bytes: int = 16 << 20) -> np.ndarray:
    """``layer`` applied to ``a`` ``[C, H, W]`` by float64 matrix products (exact on integers).

    Each input position is multiplied by the whole kernel in one matrix product and the
    products are scatter-added into the output (col2im), so neither windows are copied nor
    the zeros of an upsampled input multiplied. The scatter form of a kernel is its
    correlation form flipped; a stride-1 correlation scatters with padding ``k − 1 − p``. Output channels go in
    blocks of about ``block_bytes`` of products. Every sum is of integers below 2**53, so
    any order gives the same result.
    """
    out_c, in_c, k, _ = layer.weight.shape
    if layer.transposed:
        s, p, extra = layer.stride, layer.padding, layer.output_padding
    else:
        s, p, extra = 1, k - 1 - layer.padding, 0
    kernel = layer.scatter_kernel  # [o·kh·kw, i]
    _, h, w = a.shape
    flat = a.reshape(in_c, h * w)
    full = np.zeros((out_c, (h - 1) * s + k + extra, (w - 1) * s + k + extra))
    block = max(1, block_bytes // (8 * k * k * h * w))
    for o0 in range(0, out_c, block):
        o1 = min(out_c, o0 + block)
        products = (kernel[o0 * k * k : o1 * k * k] @ flat).reshape(o1 - o0, k, k, h, w)
        for kh in range(k):
            for kw in range(k):
                full[o0:o1, kh : kh + (h - 1) * s + 1 : s, kw : kw + (w - 1) * s + 1 : s] += products[:, kh, kw]
    oh, ow = (h - 1) * s - 2 * p + k + extra, (w - 1) * s - 2 * p + k + extra
    return full[:, p : p + oh, p : p + ow] + layer.bias[:, None, None]
