"""The channel-conditional entropy model's payload (format 3): z, then y slice by slice, in one stream.

y (``[C, 4·⌈H/64⌉, 4·⌈W/64⌉]``, see :func:`slimcodec.codec.analyze`) is cut into slices of
``c`` channels (24: 2/3/4/6/8 slices at widths 48/72/96/144/192;
:class:`slimcodec.models.channel.SlimCAEChannel`). Encoding::

    z   = h_a(y)                              float, [C, ⌈H/64⌉, ⌈W/64⌉]
    q_z = round(z − median_z)                 coded with z's factorized tables (row = channel)
    trunk, σ_acc = h_s(q_z)                   integer-exact fixed point (slimcodec.entropy.gaussian)
    μ_all = mean_head(trunk)                  float
    for k = 0, 1, ...:
        acc_k = σ_acc[slice k] + scale_context_k(q_<k / s)    integer-exact fixed point (k > 0)
        i_k   = index(acc_k · s)                               one Gaussian table per symbol, exact
        μ_k   = μ_all[slice k] + mean_context_k(ŷ_<k)          float (k > 0)
        q_k   = round(s · (y_k − μ_k))                         coded with table i_k
        ŷ_k   = q_k / s + μ_k

Decoding reads q_z, recomputes the trunk and σ_acc, then for each slice its indexes from
the earlier slices' *symbols* (exact) and reads its symbols. Only the means are float: they
move the values, never the choice of a table, so a decoder on any machine reads the same
symbols. The mean contexts run in numpy float32 on both runtimes (:func:`conv_float`), the
same code whichever runtime runs the transforms. At width 192 on a 768×512 image (one thread)
the seven scale contexts took 0.15 s and the seven mean contexts 0.14 s of a 1.15 s decode
(the hyperprior's: 1.06 s). The scale contexts run in bands of rows (:func:`context_rows`), and
only slices 1, 2, ...'s scale accumulators and uint8 indexes are kept, so a decode holds about
5 float32 copies of y at its peak plus bounded bands (tracemalloc, width 192, 4 MP: 6.1 → 5.1
copies kept, 15.5 → 9 at the peak).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from slimcodec.entropy import SCALE_ONE, quantize
from slimcodec.entropy.gaussian import FixedPointHyperSynthesis, FixedPointSliceContext
from slimcodec.entropy.rangecoder import Encoder, channel_indexes
from slimcodec.entropy.tables import PayloadBudget
from slimcodec.latents import hyperprior as _hyperprior
from slimcodec.latents.hyperprior import HYPER_TILE, Z_STEP, check_z, hyper_analysis, hyper_tiles, read_z
from slimcodec.runtime.stage_layers import Conv, layers_from_arrays, layers_to_arrays
from slimcodec.timings import Timings, timed
from slimcodec.weights import Weights

# stages run as graphs by the onnx runtime (the hyperprior's); the scale path runs in fixed
# point and the mean contexts in numpy float32
GRAPH_STAGES = _hyperprior.GRAPH_STAGES


@dataclass(frozen=True)
class ChannelLatents(_hyperprior.HyperpriorLatents):
    """The hyperprior's fields (z's symbols, y's symbols, table indexes and ``y_hat``), coded slice by slice."""


def contexts(wts: Weights) -> tuple[int, list, list]:
    """The slice size and the context networks as stage layers: ``(c, scale, mean)``, where
    ``scale[k - 1]`` and ``mean[k - 1]`` are slice ``k``'s (``[Conv, ReLU, Conv]``, every width the same)."""
    if "contexts" in wts.extras:
        return wts.extras["contexts"]
    if "contexts" not in wts.cache:
        model = wts.model
        n = model.widths[0] // model.slice_channels
        wts.cache["contexts"] = (model.slice_channels, [model.context_layers("scale", k) for k in range(1, n)],
                                 [model.context_layers("mean", k) for k in range(1, n)])
    return wts.cache["contexts"]


def hyper_synthesis(wts: Weights, width: int) -> FixedPointHyperSynthesis:
    """The integer-exact hyper-synthesis of ``width`` with the scale contexts of its slices (built once)."""
    key = ("channel_synthesis", width)
    if key not in wts.cache:
        c, scale, _ = contexts(wts)
        fixed = tuple(FixedPointSliceContext.from_layers(layers) for layers in scale[: width // c - 1])
        wts.cache[key] = FixedPointHyperSynthesis.from_layers(*_hyperprior._hyper_scale(wts, width), contexts=fixed)
    return wts.cache[key]


def conv_float(x: np.ndarray, layer: Conv, block_bytes: int = 32 << 20) -> np.ndarray:
    """A stride-1 convolution of ``x`` ``[C, H, W]`` in float32: one matrix product of the kernel
    with the input's windows (im2col), a band of output rows at a time (about ``block_bytes`` of
    windows). Only a band's rows of the input are padded, never the whole input."""
    weight = np.asarray(layer.weight, np.float32)
    out_c, in_c, k, _ = weight.shape
    p = layer.padding
    _, h, w = x.shape
    oh, ow = h + 2 * p - k + 1, w + 2 * p - k + 1
    kernel = weight.reshape(out_c, in_c * k * k)
    out = np.empty((out_c, oh, ow), np.float32)
    rows = max(1, block_bytes // (4 * in_c * k * k * ow))
    for r0 in range(0, oh, rows):
        r1 = min(oh, r0 + rows)
        # input rows r0 - p .. r1 - 1 + k - 1 - p, zero outside the image
        top, bottom = r0 - p, r1 + k - 1 - p
        padded = np.zeros((in_c, bottom - top, w + 2 * p), np.float32)
        padded[:, max(0, -top) : bottom - top - max(0, bottom - h), p : p + w] = x[:, max(0, top) : min(h, bottom)]
        windows = np.empty((in_c, k, k, r1 - r0, ow), np.float32)
        for kh in range(k):
            for kw in range(k):
                windows[:, kh, kw] = padded[:, kh : kh + r1 - r0, kw : kw + ow]
        out[:, r0:r1] = (kernel @ windows.reshape(in_c * k * k, -1)).reshape(out_c, r1 - r0, ow)
    if layer.bias is not None:
        out += np.asarray(layer.bias, np.float32)[:, None, None]
    return out


def mean_context(layers: list, decoded: np.ndarray) -> np.ndarray:
    """A slice's mean context term (float32 ``[c, h, w]``) from the earlier slices' ``ŷ``."""
    inner, _, outer = layers
    return conv_float(np.maximum(conv_float(decoded, inner), 0), outer)


CONTEXT_BAND = 32  # rows of y per band of a slice's scale context (each band reads 2 more on either side)
CONTEXT_HALO = 2  # the context's two 3×3 convolutions reach 2 rows


def context_rows(context: FixedPointSliceContext, symbols: np.ndarray, units: int, r0: int, r1: int) -> np.ndarray:
    """Rows ``r0:r1`` of a slice's scale-context accumulators (:meth:`FixedPointSliceContext.run`
    over all of ``symbols``), from those rows and :data:`CONTEXT_HALO` more on either side: rows
    beyond them are zero as beyond the image, which changes only the halo's own results."""
    h0, h1 = max(0, r0 - CONTEXT_HALO), min(symbols.shape[1], r1 + CONTEXT_HALO)
    return context.run(symbols[:, h0:h1], units)[:, r0 - h0 : r1 - h0]


class _Slices:
    """The side information both coders compute slice after slice from z's symbols.

    What is kept for the whole image: the scale accumulators of slices 1, 2, ... (float64
    integers), the means (float32), the table indexes (uint8), the symbols (int32) and
    ``y_hat`` (float32); each slice's context runs in bands of :data:`CONTEXT_BAND` rows, so
    its temporaries do not grow with the image.
    """

    def __init__(self, wts: Weights, q_z: np.ndarray, width: int, units: int,
                 budget: PayloadBudget | None = None, tile: int | None = None):
        """Run the hyper-synthesis tile by tile (:func:`~slimcodec.latents.hyperprior.hyper_tiles`),
        which also gives slice 0's indexes (it has no context).

        Args:
            budget: given each tile's slice-0 indexes (the only ones known before any y
                symbol is read) before its means are computed, as the hyperprior's decoder
                checks each tile's: a file whose payload cannot hold slice 0 is refused after
                one tile of work.
            tile: z positions per tile side (default :data:`HYPER_TILE`).
        """
        self.wts, self.units = wts, units
        self.c, _, self.mean_layers = contexts(wts)
        self.count = width // self.c
        self.net = hyper_synthesis(wts, width)
        if wts.gaussian.levels > 256:
            raise ValueError("more Gaussian tables than uint8 indexes hold")
        shape = (width, Z_STEP * q_z.shape[1], Z_STEP * q_z.shape[2])
        self.scale_acc = np.empty((width - self.c, *shape[1:]), np.float64)  # slice 0 needs none later
        self.means = np.empty(shape, np.float32)
        self.indexes = np.zeros(shape, np.uint8)
        for (rows, cols), scale_acc, means in hyper_tiles(wts, self.net, q_z, width, tile or HYPER_TILE):
            first = wts.gaussian.indexes(scale_acc[: self.c], units)
            if budget is not None:
                budget.add(first)
            self.indexes[: self.c, rows, cols] = first
            self.scale_acc[:, rows, cols] = scale_acc[self.c :]
            self.means[:, rows, cols] = means()
        self.q = np.zeros(shape, np.int32)
        self.y_hat = np.zeros(shape, np.float32)

    def parameters(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Slice ``k``'s table indexes (exact, int32) and means (float32), from the slices before
        it (slice 0's indexes are the tiled pass's)."""
        c, part = self.c, slice(k * self.c, (k + 1) * self.c)
        mean = self.means[part]
        if k:
            earlier = self.q[: k * c]
            for r0 in range(0, earlier.shape[1], CONTEXT_BAND):
                r1 = min(earlier.shape[1], r0 + CONTEXT_BAND)
                acc = self.scale_acc[(k - 1) * c : k * c, r0:r1]
                acc = acc + context_rows(self.net.contexts[k - 1], earlier, self.units, r0, r1)
                self.indexes[part, r0:r1] = self.wts.gaussian.indexes(acc, self.units)
            mean = mean + mean_context(self.mean_layers[k - 1], self.y_hat[: k * c])
        return self.indexes[part].astype(np.int32), mean

    def keep(self, k: int, q: np.ndarray, mean: np.ndarray) -> None:
        """Record slice ``k``'s symbols and values ``ŷ = q / s + μ``."""
        part = slice(k * self.c, (k + 1) * self.c)
        values = q.astype(np.float32)
        if self.units != SCALE_ONE:
            values = values / np.float32(self.units / SCALE_ONE)
        self.q[part], self.y_hat[part] = q, values + mean


def encode_payload(wts: Weights, y: np.ndarray, width: int, units: int = SCALE_ONE,
                   timings: Timings | None = None, z: np.ndarray | None = None) -> bytes:
    """The payload words (little-endian bytes) of latents ``y`` at a latent scale.

    ``timings``, when given, receives the seconds spent in ``"hyper"`` (the hyper networks and
    the slices' contexts) and ``"entropy"`` (quantization and range coding). ``z`` replaces
    ``h_a(y)`` (an encoder's refined hyper-latents, :mod:`slimcodec.effort`).
    """
    z_table = wts.tables[width]
    with timed(timings, "hyper"):
        z = hyper_analysis(wts, y, width) if z is None else check_z(z, y)
    with timed(timings, "entropy"):
        q_z = quantize(z, z_table)
        encoder = Encoder()
        encoder.encode(q_z, channel_indexes(q_z.shape), z_table)
    with timed(timings, "hyper"):
        slices = _Slices(wts, q_z, width, units)
    for k in range(slices.count):
        with timed(timings, "hyper"):
            indexes, mean = slices.parameters(k)
        with timed(timings, "entropy"):
            centred = y[k * slices.c : (k + 1) * slices.c] - mean
            if units != SCALE_ONE:
                centred = centred * np.float32(units / SCALE_ONE)
            q = np.rint(centred).astype(np.int32)
            encoder.encode(q, indexes, wts.gaussian)
            slices.keep(k, q, mean)
    return encoder.words().tobytes()


def decode_payload(wts: Weights, words: np.ndarray, width: int, grid: tuple[int, int],
                   units: int = SCALE_ONE, timings: Timings | None = None) -> ChannelLatents:
    """Read a payload: the ``z``, ``y`` and ``indexes`` symbols and the latents ``y_hat``.

    Args:
        grid: y's size ``(h, w)``; z's is a quarter of it.
        timings: receives the seconds of ``"hyper"`` and ``"entropy"``, as in :func:`encode_payload`.

    Raises:
        SlimFormatError: the words are not exactly such a payload (or too short for its
            symbols: checked for z before z is decoded, and for each slice before it is).
    """
    with timed(timings, "entropy"):
        decoder, q_z, z_bits = read_z(wts, words, width, grid)

    def new_budget() -> PayloadBudget:
        return PayloadBudget(32 * words.size, z_bits, wts.gaussian.counts, "slices' scales")

    with timed(timings, "hyper"):
        if width * grid[0] * grid[1] > PRECHECK_ELEMENTS:
            check_slice_zero(wts, q_z, width, units, new_budget())
        # slice 0 is counted tile by tile as the hyper-synthesis runs, every later slice before it is read
        budget = new_budget()
        slices = _Slices(wts, q_z, width, units, budget)
    for k in range(slices.count):
        with timed(timings, "hyper"):
            indexes, mean = slices.parameters(k)
        with timed(timings, "entropy"):
            if k:
                budget.add(indexes)
            slices.keep(k, decoder.decode(indexes, wts.gaussian), mean)
    with timed(timings, "entropy"):
        decoder.finish()
    symbols, y_hat, indexes = slices.q, slices.y_hat, slices.indexes
    del slices  # its accumulators and means go before the indexes are widened
    return ChannelLatents(z=q_z, y=symbols, indexes=indexes.astype(np.int32), y_hat=y_hat)


# y elements (16 MiB of float32) above which a decoder checks slice 0's scales over the whole
# image before it allocates the whole image's side information
PRECHECK_ELEMENTS = 1 << 22


def check_slice_zero(wts: Weights, q_z: np.ndarray, width: int, units: int, budget: PayloadBudget) -> None:
    """Refuse a payload too short for slice 0 before anything image-sized is kept.

    A first pass of the hyper-synthesis computes only slice 0's scale accumulators (the trunk
    and an eighth of the head at width 192), tile by tile, keeping nothing: a 64 KB file that
    declared 10000×10000 at width 192 with a valid z and no y held 1.04 GiB, its side information
    filled tile by tile, before the tiled budget of :class:`_Slices` refused it. Large images pay
    for this pass (about half the hyper-synthesis again); small ones skip it.

    Raises:
        SlimFormatError: the payload cannot hold slice 0's symbols.
    """
    c = contexts(wts)[0]
    for _, scale_acc, _ in hyper_tiles(wts, hyper_synthesis(wts, width), q_z, width, HYPER_TILE, head_channels=c):
        budget.add(wts.gaussian.indexes(scale_acc, units))


def payload_bits(latents: ChannelLatents, wts: Weights, width: int) -> float:
    """The ideal size of the payload in bits: z under its factorized rows, y under its Gaussian rows."""
    return _hyperprior.payload_bits(latents, wts, width)


def hyper_latents(model, y, width: int):
    """As the hyperprior's (:func:`slimcodec.latents.hyperprior.hyper_latents`)."""
    return _hyperprior.hyper_latents(model, y, width)


def torch_stages(model) -> dict:
    """The torch model's function of each stage (the hyperprior's)."""
    return _hyperprior.torch_stages(model)


def model_class() -> type:
    """The torch model (:class:`slimcodec.models.channel.SlimCAEChannel`)."""
    from slimcodec.models.channel import SlimCAEChannel

    return SlimCAEChannel


def file_extras(model) -> dict:
    """What a weights file holds beyond the transforms and tables: y's Gaussian tables (``"gaussian"``);
    the slice size is read off the context networks' shapes."""
    return _hyperprior.file_extras(model)


def load_extras(blob: dict) -> dict:
    """The :class:`~slimcodec.weights.Weights` fields of :func:`file_extras`."""
    return _hyperprior.load_extras(blob)


def bundle_arrays(wts: Weights) -> dict:
    """A runtime bundle's arrays beyond the tables and graphs: the hyperprior's (Gaussian tables,
    per width the float h_s layers and z's medians), the slice size, and each slice's float
    scale and mean context layers (``scale_context.<k>``, ``mean_context.<k>``, k ≥ 1)."""
    arrays = _hyperprior.bundle_arrays(wts)
    c, scale, mean = contexts(wts)
    arrays["slice_channels"] = np.array([c], np.int32)
    for k, (s, m) in enumerate(zip(scale, mean), start=1):
        arrays.update(layers_to_arrays(f"scale_context.{k}", s))
        arrays.update(layers_to_arrays(f"mean_context.{k}", m))
    return arrays


def bundle_extras(arrays: dict, widths) -> dict:
    """The :class:`~slimcodec.weights.Weights` fields of :func:`bundle_arrays`.

    Raises:
        ValueError: the slice size does not divide the widths, or a slice's context is missing.
    """
    out = _hyperprior.bundle_extras(arrays, widths)
    c = int(np.asarray(arrays["slice_channels"]).reshape(-1)[0])
    if c < 1 or any(w % c for w in widths):
        raise ValueError(f"slice size {c} does not divide the widths {tuple(widths)}")
    n = max(widths) // c
    scale = [layers_from_arrays(f"scale_context.{k}", arrays) for k in range(1, n)]
    mean = [layers_from_arrays(f"mean_context.{k}", arrays) for k in range(1, n)]
    out["extras"]["contexts"] = (c, scale, mean)
    return out
