"""The channel-conditional entropy model's payload (format 3): z, then y slice by slice.

Format 3.1 (written since 0.4.0) codes z in one stream and y in tiles of 64×64 positions, one
stream per tile (:func:`payload_tiles`, :func:`join_streams`): each tile's slices and contexts
see only that tile, so a coder keeps one tile's side information at a time and tiles run on
the runtime's threads (:func:`slimcodec.runtime.parallel_map`). Format 3.0 (0.3.x's files, still read) is one
stream over the whole image, as below.

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

from slimcodec import geometry, runtime
from slimcodec.entropy import SCALE_ONE, quantize
from slimcodec.entropy.gaussian import FixedPointHyperSynthesis, FixedPointSliceContext
from slimcodec.entropy.rangecoder import Decoder, Encoder, channel_indexes
from slimcodec.entropy.tables import PayloadBudget
from slimcodec.errors import SlimFormatError
from slimcodec.latents import hyperprior as _hyperprior
from slimcodec.latents.hyperprior import (
    HYPER_MARGIN,
    HYPER_TILE,
    Z_STEP,
    check_z,
    hyper_analysis,
    hyper_tile,
    hyper_tiles,
    read_z,
)
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
    """The side information both coders compute slice after slice, over the whole image
    (format 3.0) or one tile (3.1).

    It holds the scale accumulators of slices 1, 2, ... (float64 integers), the means
    (float32), the table indexes (uint8, slice 0's given), the symbols (int32) and ``y_hat``
    (float32); each slice's context runs in bands of :data:`CONTEXT_BAND` rows, so its
    temporaries do not grow with the image. The contexts see only these arrays: zero beyond
    them, at a tile's border as at the image's.
    """

    def __init__(self, wts: Weights, width: int, units: int, indexes: np.ndarray, scale_acc: np.ndarray,
                 means: np.ndarray):
        """``indexes``: uint8 ``[width, h, w]`` with slice 0's filled in; ``scale_acc``: slices
        1, 2, ...'s accumulators from the hyper-synthesis; ``means``: its means (all slices)."""
        self.wts, self.units = wts, units
        self.c, _, self.mean_layers = contexts(wts)
        self.count = width // self.c
        self.net = hyper_synthesis(wts, width)
        self.indexes, self.scale_acc, self.means = indexes, scale_acc, means
        self.q = np.zeros(means.shape, np.int32)
        self.y_hat = np.zeros(means.shape, np.float32)

    @classmethod
    def whole_image(cls, wts: Weights, q_z: np.ndarray, width: int, units: int,
                    budget: PayloadBudget | None = None, tile: int | None = None) -> _Slices:
        """Run the hyper-synthesis tile by tile (:func:`~slimcodec.latents.hyperprior.hyper_tiles`),
        which also gives slice 0's indexes (it has no context), into whole-image arrays.

        Args:
            budget: given each tile's slice-0 indexes (the only ones known before any y
                symbol is read) before its means are computed, as the hyperprior's decoder
                checks each tile's: a file whose payload cannot hold slice 0 is refused after
                one tile of work.
            tile: z positions per tile side (default :data:`HYPER_TILE`).
        """
        c = contexts(wts)[0]
        shape = (width, Z_STEP * q_z.shape[1], Z_STEP * q_z.shape[2])
        scale_acc = np.empty((width - c, *shape[1:]), np.float64)  # slice 0 needs none later
        means = np.empty(shape, np.float32)
        indexes = np.zeros(shape, np.uint8)
        for (rows, cols), tile_acc, tile_means in hyper_tiles(wts, hyper_synthesis(wts, width), q_z, width,
                                                              tile or HYPER_TILE):
            first = _first_indexes(wts, tile_acc[:c], units)
            if budget is not None:
                budget.add(first)
            indexes[:c, rows, cols] = first
            scale_acc[:, rows, cols] = tile_acc[c:]
            means[:, rows, cols] = tile_means()
        return cls(wts, width, units, indexes, scale_acc, means)

    def parameters(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Slice ``k``'s table indexes (exact, int32) and means (float32), from the slices before
        it (slice 0's indexes are the hyper-synthesis')."""
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


def _first_indexes(wts: Weights, scale_acc: np.ndarray, units: int) -> np.ndarray:
    """Slice 0's table indexes (uint8) from its scale accumulators."""
    if wts.gaussian.levels > 256:
        raise ValueError("more Gaussian tables than uint8 indexes hold")
    return wts.gaussian.indexes(scale_acc, units).astype(np.uint8)


def _code_slices(slices: _Slices, y: np.ndarray, encoder: Encoder) -> None:
    """Quantize and code ``y``'s slices in order (``y``: the arrays ``slices`` covers)."""
    units, c = slices.units, slices.c
    for k in range(slices.count):
        indexes, mean = slices.parameters(k)
        centred = y[k * c : (k + 1) * c] - mean
        if units != SCALE_ONE:
            centred = centred * np.float32(units / SCALE_ONE)
        q = np.rint(centred).astype(np.int32)
        encoder.encode(q, indexes, slices.wts.gaussian)
        slices.keep(k, q, mean)


def _read_slices(slices: _Slices, decoder: Decoder, budget: PayloadBudget) -> None:
    """Read the slices in order, each counted in ``budget`` before it is read (slice 0's already is)."""
    for k in range(slices.count):
        indexes, mean = slices.parameters(k)
        if k:
            budget.add(indexes)
        slices.keep(k, decoder.decode(indexes, slices.wts.gaussian), mean)


def encode_payload(wts: Weights, y: np.ndarray, width: int, units: int = SCALE_ONE,
                   timings: Timings | None = None, z: np.ndarray | None = None) -> bytes:
    """The payload bytes (format 3.1, tiled) of latents ``y`` at a latent scale.

    ``timings``, when given, receives the seconds spent in ``"hyper"`` (the hyper networks, the
    slices' contexts and, tile by tile, the slices' coding) and ``"entropy"`` (z's coding and
    the words' assembly). ``z`` replaces ``h_a(y)`` (an encoder's refined hyper-latents,
    :mod:`slimcodec.effort`).
    """
    z_table = wts.tables[width]
    with timed(timings, "hyper"):
        z = hyper_analysis(wts, y, width) if z is None else check_z(z, y)
    with timed(timings, "entropy"):
        q_z = quantize(z, z_table)
        encoder = Encoder()
        encoder.encode(q_z, channel_indexes(q_z.shape), z_table)
        z_words = encoder.words()
    net, c = hyper_synthesis(wts, width), contexts(wts)[0]

    def code_tile(boxes: tuple[geometry.Box, geometry.Box]) -> np.ndarray:
        (rows, cols), scale_acc, means = hyper_tile(wts, net, q_z, width, *boxes)
        slices = _Slices(wts, width, units, _tile_indexes(wts, scale_acc, units, c), scale_acc[c:], means())
        tile_encoder = Encoder()
        _code_slices(slices, y[:, rows, cols], tile_encoder)
        return tile_encoder.words()

    with timed(timings, "hyper"):
        streams = runtime.parallel_map(code_tile, payload_tiles(q_z.shape[1:]))
    with timed(timings, "entropy"):
        return join_streams([z_words, *streams])


def encode_payload_3_0(wts: Weights, y: np.ndarray, width: int, units: int = SCALE_ONE,
                       z: np.ndarray | None = None) -> bytes:
    """The payload of format 3.0 (one slice-major stream over the whole image), which 0.3.x wrote.

    Kept to make 3.0 files for tests (their decoding is what must last); the writer writes 3.1.
    """
    z = hyper_analysis(wts, y, width) if z is None else check_z(z, y)
    q_z = quantize(z, wts.tables[width])
    encoder = Encoder()
    encoder.encode(q_z, channel_indexes(q_z.shape), wts.tables[width])
    _code_slices(_Slices.whole_image(wts, q_z, width, units), y, encoder)
    return encoder.words().tobytes()


def _tile_indexes(wts: Weights, scale_acc: np.ndarray, units: int, c: int) -> np.ndarray:
    """A tile's uint8 index array with slice 0's filled in from its accumulators."""
    indexes = np.zeros(scale_acc.shape, np.uint8)
    indexes[:c] = _first_indexes(wts, scale_acc[:c], units)
    return indexes


def payload_tiles(z_grid: tuple[int, int]) -> list[tuple[geometry.Box, geometry.Box]]:
    """The tiles of a 3.1 payload, in stream order: ``(core, outer)`` boxes in z positions, cores of
    :data:`HYPER_TILE` (64 y positions, 1024 pixels a side) in raster order, outer boxes grown by
    the hyper-synthesis' margin."""
    return list(geometry.tiles(*z_grid, HYPER_TILE, HYPER_MARGIN))


def join_streams(streams: list[np.ndarray]) -> bytes:
    """A 3.1 payload: the word count of each stream (``u32``), then the streams' words."""
    counts = np.array([s.size for s in streams], "<u4")
    return np.concatenate([counts, *[np.asarray(s, "<u4") for s in streams]]).astype("<u4").tobytes()


def split_streams(words: np.ndarray, count: int) -> list[np.ndarray]:
    """The ``count`` streams of a 3.1 payload (see :func:`join_streams`).

    Raises:
        SlimFormatError: the table does not describe exactly the words that follow it.
    """
    if words.size < count:
        raise SlimFormatError(f"payload too short for its tile table ({words.size} words, {count} streams)")
    sizes = words[:count].astype(np.int64)
    if int(sizes.sum()) != words.size - count:
        raise SlimFormatError(f"payload tile table does not match its size ({int(sizes.sum())} words listed, "
                              f"{words.size - count} present)")
    bounds = count + np.concatenate([[0], np.cumsum(sizes)])
    return [words[bounds[i] : bounds[i + 1]] for i in range(count)]


def decode_payload(wts: Weights, words: np.ndarray, width: int, grid: tuple[int, int],
                   units: int = SCALE_ONE, timings: Timings | None = None, tiled: bool = False,
                   symbols: bool = True) -> ChannelLatents:
    """Read a payload: the ``z``, ``y`` and ``indexes`` symbols and the latents ``y_hat``.

    Args:
        grid: y's size ``(h, w)``; z's is a quarter of it.
        timings: receives the seconds of ``"hyper"`` and ``"entropy"``, as in :func:`encode_payload`.
        tiled: a 3.1 payload (z's stream, then one stream per tile); else 3.0's single stream.
        symbols: keep y's symbols and indexes; without, a tiled payload's come back empty and
            only ``y_hat`` is kept for the whole image.

    Raises:
        SlimFormatError: the words are not exactly such a payload (or too short for its
            symbols: checked for z before z is decoded, and for each slice before it is).
    """
    if not tiled:
        return _decode_3_0(wts, words, width, grid, units, timings)
    z_grid = (grid[0] // Z_STEP, grid[1] // Z_STEP)
    tiles = payload_tiles(z_grid)
    with timed(timings, "entropy"):
        z_words, *tile_words = split_streams(words, 1 + len(tiles))
        decoder, q_z, _ = read_z(wts, z_words, width, grid)
        decoder.finish()
    net, c = hyper_synthesis(wts, width), contexts(wts)[0]
    kept = (width, *grid) if symbols else (0, 0, 0)
    y, indexes = np.empty(kept, np.int32), np.empty(kept, np.uint8)
    y_hat = np.empty((width, *grid), np.float32)

    def read_tile(job: tuple[tuple[geometry.Box, geometry.Box], np.ndarray]) -> None:
        boxes, stream = job
        (rows, cols), scale_acc, means = hyper_tile(wts, net, q_z, width, *boxes)
        budget = PayloadBudget(32 * stream.size, 0.0, wts.gaussian.counts, "tile's scales")
        tile_indexes = _tile_indexes(wts, scale_acc, units, c)
        budget.add(tile_indexes[:c])  # before the means and any symbol: a short tile costs one hyper tile
        slices = _Slices(wts, width, units, tile_indexes, scale_acc[c:], means())
        tile_decoder = Decoder(stream)
        _read_slices(slices, tile_decoder, budget)
        tile_decoder.finish()
        y_hat[:, rows, cols] = slices.y_hat
        if symbols:
            y[:, rows, cols], indexes[:, rows, cols] = slices.q, slices.indexes

    with timed(timings, "hyper"):
        runtime.parallel_map(read_tile, list(zip(tiles, tile_words)))
    return ChannelLatents(z=q_z, y=y, indexes=indexes.astype(np.int32), y_hat=y_hat)  # int32 as 3.0's


def _decode_3_0(wts: Weights, words: np.ndarray, width: int, grid: tuple[int, int],
                units: int, timings: Timings | None) -> ChannelLatents:
    """Read a 3.0 payload (one slice-major stream: z, then each slice over the whole image)."""
    with timed(timings, "entropy"):
        decoder, q_z, z_bits = read_z(wts, words, width, grid)

    def new_budget() -> PayloadBudget:
        return PayloadBudget(32 * words.size, z_bits, wts.gaussian.counts, "slices' scales")

    with timed(timings, "hyper"):
        if width * grid[0] * grid[1] > PRECHECK_ELEMENTS:
            check_slice_zero(wts, q_z, width, units, new_budget())
        # slice 0 is counted tile by tile as the hyper-synthesis runs, every later slice before it is read
        budget = new_budget()
        slices = _Slices.whole_image(wts, q_z, width, units, budget)
        _read_slices(slices, decoder, budget)
    with timed(timings, "entropy"):
        decoder.finish()
    symbols, y_hat, indexes = slices.q, slices.y_hat, slices.indexes
    del slices  # its accumulators and means go before the indexes are widened
    return ChannelLatents(z=q_z, y=symbols, indexes=indexes.astype(np.int32), y_hat=y_hat)


# y elements (16 MiB of float32) above which a 3.0 decoder checks slice 0's scales over the whole
# image before it allocates the whole image's side information
PRECHECK_ELEMENTS = 1 << 22


def check_slice_zero(wts: Weights, q_z: np.ndarray, width: int, units: int, budget: PayloadBudget) -> None:
    """Refuse a 3.0 payload too short for slice 0 before anything image-sized is kept.

    A first pass of the hyper-synthesis computes only slice 0's scale accumulators (the trunk
    and an eighth of the head at width 192), tile by tile, keeping nothing: a 64 KB file that
    declared 10000×10000 at width 192 with a valid z and no y held 1.04 GiB, its side information
    filled tile by tile, before the tiled budget of :class:`_Slices` refused it. Large images pay
    for this pass (about half the hyper-synthesis again); small ones skip it. (3.1 payloads
    need none: each tile's stream is checked after that tile's hyper-synthesis.)

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
