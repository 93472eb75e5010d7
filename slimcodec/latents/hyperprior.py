"""The hyperprior's payload (format 2): z, then y, in one range-coder stream.

Encoding, from the latents ``y`` (``[C, 4·⌈H/64⌉, 4·⌈W/64⌉]``, see :func:`slimcodec.codec.analyze`)::

    z   = h_a(y)                        float, [C, ⌈H/64⌉, ⌈W/64⌉]
    q_z = round(z − median_z)           coded with z's factorized tables (row = channel)
    trunk, σ_acc = h_s(q_z)             integer-exact fixed point (slimcodec.entropy.gaussian)
    μ   = mean_head(trunk)              float
    i   = index(σ_acc · s)              one Gaussian table per y symbol, exact
    q_y = round(s · (y − μ))            coded with table i

Decoding reads q_z, recomputes trunk, σ_acc, μ and i from it exactly as above, reads
q_y, and returns ``ŷ = q_y / s + μ``. Only μ is float: it moves the values, never the
choice of a table, so a decoder on any machine reads the same symbols.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import numpy as np

from slimcodec import geometry
from slimcodec.entropy import SCALE_ONE, quantize
from slimcodec.entropy.gaussian import ACT_BITS, FixedPointHyperSynthesis, GaussianTables
from slimcodec.entropy.rangecoder import Decoder, Encoder, channel_indexes
from slimcodec.entropy.tables import PayloadBudget, check_payload_holds, information_bits, row_min_bits
from slimcodec.errors import SlimError
from slimcodec.geometry import HYPER_STRIDE, STRIDE, TILE_LATENTS
from slimcodec.latents import Latents
from slimcodec.runtime.stage_layers import layers_from_arrays, layers_to_arrays
from slimcodec.timings import Timings, timed
from slimcodec.weights import Weights

Z_STEP = HYPER_STRIDE // STRIDE  # y positions per z position along a side (4)
HYPER_TILE = TILE_LATENTS // Z_STEP  # z positions per side of a hyper-network tile (64 y positions)
HYPER_MARGIN = 2  # z positions; h_s and its heads reach 1.75 (two stride-2 5×5: ±1.5, then 3×3: ±0.25),
# and h_a 7 y positions (3×3, then two stride-2 5×5)
# stages run as graphs by the onnx runtime; h_s's scale head ("hyper_scale") runs in fixed point instead
GRAPH_STAGES = ("analysis", "synthesis", "hyper_analysis", "hyper_mean")


@dataclass(frozen=True)
class HyperpriorLatents(Latents):
    """y's symbols and ``y_hat`` (see :class:`slimcodec.latents.Latents`), z's symbols and y's table indexes.

    Attributes:
        z (np.ndarray): z's integer symbols (int32 ``[C, h/4, w/4]``).
        indexes (np.ndarray): the Gaussian table of each of y's symbols (``[C, h, w]``).
    """

    z: np.ndarray
    indexes: np.ndarray


def hyper_analysis(wts: Weights, y: np.ndarray, width: int, tile: int | None = None) -> np.ndarray:
    """z (float32 ``[C, h/4, w/4]``) of the latents ``y``.

    Above one tile (:data:`HYPER_TILE` z positions a side) h_a runs tile by tile with a
    :data:`HYPER_MARGIN` margin (its reach is 7 y positions, 1.75 z: a 3×3 then two stride-2
    5×5 convolutions), so the runtime never holds h_a's activations of a whole large image
    (at width 192 a 100 MP image's would not fit in 2 GiB). An image of one tile runs as before.
    """
    tile = HYPER_TILE if tile is None else tile
    channels, h, w = y.shape
    zh, zw = h // Z_STEP, w // Z_STEP
    if zh <= tile and zw <= tile:
        return wts.run("hyper_analysis", width, y)
    z = np.empty((channels, zh, zw), dtype=np.float32)
    for (t, b, l, r), (ot, ob, ol, orr) in geometry.tiles(zh, zw, tile, HYPER_MARGIN):
        part = wts.run("hyper_analysis", width,
                       np.ascontiguousarray(y[:, Z_STEP * ot : Z_STEP * ob, Z_STEP * ol : Z_STEP * orr]))
        z[:, t:b, l:r] = part[:, t - ot : b - ot, l - ol : r - ol]
    return z


def hyper_tiles(wts: Weights, hyper: FixedPointHyperSynthesis, q_z: np.ndarray, width: int, tile: int = HYPER_TILE,
                head_channels: int | None = None
                ) -> Iterator[tuple[tuple[slice, slice], np.ndarray, Callable[[], np.ndarray]]]:
    """The hyper-synthesis of z's symbols, tile by tile: ``(box, scale accumulators, means)``.

    Each tile is a core of ``tile`` z positions grown by :data:`HYPER_MARGIN` (clipped to the
    grid); ``box`` is the core's rows and columns in y's grid, the accumulators (float64
    integers, :meth:`FixedPointHyperSynthesis.run`) are the core's, and ``means()`` runs the
    mean head and gives the core's means (float32), so a decoder can check what the
    accumulators imply before that work. Only one tile's activations exist at a time, and the
    accumulators are exact integers, identical to a run over the whole of z.
    ``head_channels`` limits the accumulators to the first channels (a cheaper pass).
    """
    _, zh, zw = q_z.shape
    for core, outer in geometry.tiles(zh, zw, tile, HYPER_MARGIN):
        yield hyper_tile(wts, hyper, q_z, width, core, outer, head_channels)


def hyper_tile(wts: Weights, hyper: FixedPointHyperSynthesis, q_z: np.ndarray, width: int, core: geometry.Box,
               outer: geometry.Box, head_channels: int | None = None
               ) -> tuple[tuple[slice, slice], np.ndarray, Callable[[], np.ndarray]]:
    """One tile of :func:`hyper_tiles`: the z ``core`` computed from its ``outer`` box (z positions)."""
    (t, b, l, r), (ot, ob, ol, orr) = core, outer
    trunk, scale_acc = hyper.run(q_z[:, ot:ob, ol:orr], head_channels=head_channels)
    rows = slice(Z_STEP * (t - ot), Z_STEP * (b - ot))
    cols = slice(Z_STEP * (l - ol), Z_STEP * (r - ol))

    def means() -> np.ndarray:
        return wts.run("hyper_mean", width, (trunk / (1 << ACT_BITS)).astype(np.float32))[:, rows, cols]

    box = (slice(Z_STEP * t, Z_STEP * b), slice(Z_STEP * l, Z_STEP * r))
    return box, scale_acc[:, rows, cols], means


def side_information(wts: Weights, q_z: np.ndarray, width: int, units: int,
                     budget: PayloadBudget | None = None,
                     tile: int = HYPER_TILE) -> tuple[np.ndarray, np.ndarray]:
    """y's table indexes (exact, int32) and means (float32), both ``[C, 4h, 4w]``, from z's symbols
    (the hyper-synthesis runs tile by tile: :func:`hyper_tiles`).

    Args:
        budget: given each tile's indexes as soon as they are known, before its means are
            computed; a decoder's refuses there a payload that cannot hold the symbols they
            imply, so a file that declares more than its bytes can describe is refused after
            at most one tile of work beyond what those bytes pay for.
        tile: z positions per tile side (tests use small tiles).
    """
    channels, zh, zw = q_z.shape
    indexes = np.empty((channels, Z_STEP * zh, Z_STEP * zw), dtype=np.int32)
    means = np.empty(indexes.shape, dtype=np.float32)
    for (rows, cols), scale_acc, tile_means in hyper_tiles(wts, hyper_synthesis(wts, width), q_z, width, tile):
        tile_indexes = wts.gaussian.indexes(scale_acc, units)
        if budget is not None:
            budget.add(tile_indexes)
        indexes[:, rows, cols] = tile_indexes
        means[:, rows, cols] = tile_means()
    return indexes, means


def encode_payload(wts: Weights, y: np.ndarray, width: int, units: int = SCALE_ONE,
                   timings: Timings | None = None, z: np.ndarray | None = None) -> bytes:
    """The payload words (little-endian bytes) of latents ``y`` at a latent scale.

    ``timings``, when given, receives the seconds spent in ``"hyper"`` (the hyper networks)
    and ``"entropy"`` (quantization and range coding); see :mod:`slimcodec.timings`.
    ``z`` (float32 ``[C, h/4, w/4]``) replaces ``h_a(y)``: an encoder's refined hyper-latents.
    """
    z_table = wts.tables[width]
    with timed(timings, "hyper"):
        z = hyper_analysis(wts, y, width) if z is None else check_z(z, y)
    with timed(timings, "entropy"):
        q_z = quantize(z, z_table)
    with timed(timings, "hyper"):
        indexes, means = side_information(wts, q_z, width, units)
    with timed(timings, "entropy"):
        q_y = np.empty(y.shape, dtype=np.int32)
        for c in range(y.shape[0]):  # a channel at a time: no full-size float temporaries (memory)
            centred = y[c] - means[c]
            if units != SCALE_ONE:
                centred *= np.float32(units / SCALE_ONE)
            q_y[c] = np.rint(centred).astype(np.int32)
        del means
        encoder = Encoder()
        encoder.encode(q_z, channel_indexes(q_z.shape), z_table)
        encoder.encode(q_y, indexes, wts.gaussian)
        return encoder.words().tobytes()


def check_z(z: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``z`` if it has the shape ``h_a(y)`` has, else ``ValueError``."""
    want = (y.shape[0], y.shape[1] // Z_STEP, y.shape[2] // Z_STEP)
    if z.shape != want:
        raise ValueError(f"z must be shaped {want} for these latents, got {z.shape}")
    return z


def read_z(wts: Weights, words: np.ndarray, width: int, grid: tuple[int, int]) -> tuple[Decoder, np.ndarray, float]:
    """Start reading a payload (formats 2 and 3): z's symbols, after checking the payload can hold them.

    Returns:
        (the decoder, positioned after z; z's symbols; the fewest bits z's symbols take).

    Raises:
        SlimFormatError: the payload is too short for z, or corrupt.
    """
    z_table = wts.tables[width]
    z_grid = (grid[0] // Z_STEP, grid[1] // Z_STEP)
    z_bits = z_grid[0] * z_grid[1] * float(row_min_bits(z_table.counts).sum())
    check_payload_holds(32 * words.size, z_bits, "image size")
    decoder = Decoder(words)
    return decoder, decoder.decode(channel_indexes((width, *z_grid)), z_table), z_bits


def decode_payload(wts: Weights, words: np.ndarray, width: int, grid: tuple[int, int],
                   units: int = SCALE_ONE, timings: Timings | None = None) -> HyperpriorLatents:
    """Read a payload: the ``z``, ``y`` and ``indexes`` symbols and the latents ``y_hat``.

    Args:
        grid: y's size ``(h, w)``; z's is a quarter of it (:data:`Z_STEP`).
        timings: receives the seconds of ``"hyper"`` and ``"entropy"``, as in :func:`encode_payload`.

    Raises:
        SlimFormatError: the words are not exactly such a payload.
    """
    with timed(timings, "entropy"):
        decoder, q_z, z_bits = read_z(wts, words, width, grid)
    # z and y share the stream: what the payload must hold grows with every tile's indexes
    budget = PayloadBudget(32 * words.size, z_bits, wts.gaussian.counts, "hyperprior's scales")
    with timed(timings, "hyper"):
        indexes, means = side_information(wts, q_z, width, units, budget)
    with timed(timings, "entropy"):
        q_y = decoder.decode(indexes, wts.gaussian)
        decoder.finish()
        values = q_y.astype(np.float32)  # in place from here: no more full-size float copies
        if units != SCALE_ONE:
            values /= np.float32(units / SCALE_ONE)
        values += means
        del means
    return HyperpriorLatents(z=q_z, y=q_y, indexes=indexes, y_hat=values)


def hyper_synthesis(wts: Weights, width: int) -> FixedPointHyperSynthesis:
    """The integer-exact hyper-synthesis of ``width`` (built once from the weights' h_s layers)."""
    key = ("hyper_synthesis", width)
    if key not in wts.cache:
        wts.cache[key] = FixedPointHyperSynthesis.from_layers(*_hyper_scale(wts, width))
    return wts.cache[key]


def _hyper_scale(wts: Weights, width: int) -> tuple[list, np.ndarray]:
    """h_s's trunk and scale head at ``width`` as float layers, and z's medians."""
    hyper_layers = wts.extras.get("hyper_layers", {})
    if width in hyper_layers:
        return hyper_layers[width]
    medians = wts.model.z_medians(width).reshape(-1).float().cpu().numpy()
    return wts.model.stage_layers("hyper_scale", width), medians


def payload_bits(latents: HyperpriorLatents, wts: Weights, width: int) -> float:
    """The ideal size of the payload in bits: z under its factorized rows, y under its Gaussian rows."""
    bits = information_bits(latents.z, wts.tables[width])
    return bits + information_bits(latents.y, wts.gaussian, latents.indexes)


def hyper_latents(model, y, width: int):
    """The hyper-latents an encoder starts from for latents ``y`` (torch, no graph): ``h_a(y)``."""
    import torch

    with torch.no_grad():
        return model.hyper_analysis(y, width)


def torch_stages(model) -> dict:
    """The torch model's function of each stage."""
    return {"analysis": model.analysis, "synthesis": model.synthesis,
            "hyper_analysis": model.hyper_analysis, "hyper_mean": model.h_s_mean}


def model_class() -> type:
    """The torch model (:class:`slimcodec.models.hyperprior.SlimCAEHyperprior`)."""
    from slimcodec.models.hyperprior import SlimCAEHyperprior

    return SlimCAEHyperprior


def file_extras(model) -> dict:
    """What a weights file holds beyond the transforms and tables: y's Gaussian tables (``"gaussian"``)."""
    import torch

    tables = GaussianTables.build().to_arrays()
    return {"gaussian": {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in tables.items()}}


def load_extras(blob: dict) -> dict:
    """The :class:`~slimcodec.weights.Weights` fields of :func:`file_extras`."""
    return {"gaussian": GaussianTables.from_arrays({k: v.numpy() for k, v in blob["gaussian"].items()})}


def bundle_arrays(wts: Weights) -> dict:
    """A runtime bundle's arrays beyond the tables and graphs: the Gaussian tables, and per
    width the float h_s layers its fixed point is built from and z's medians."""
    arrays = {f"gaussian.{k}": v for k, v in wts.gaussian.to_arrays().items()}
    for w in wts.widths:
        layers, medians = _hyper_scale(wts, w)
        arrays.update(layers_to_arrays(f"hyper_scale.{w}", layers))
        arrays[f"zmedians.{w}"] = medians.astype(np.float32)
    return arrays


def bundle_extras(arrays: dict, widths) -> dict:
    """The :class:`~slimcodec.weights.Weights` fields of :func:`bundle_arrays`."""
    gaussian = GaussianTables.from_arrays({k.removeprefix("gaussian."): arrays[k] for k in arrays
                                           if k.startswith("gaussian.")})
    for w in widths:
        if f"hyper_scale.{w}.0.kind" not in arrays or f"zmedians.{w}" not in arrays:
            raise KeyError(f"hyper_scale.{w}")
    return {"gaussian": gaussian, "extras": {"hyper_layers": _HyperLayers(arrays, tuple(widths))}}


class _HyperLayers(Mapping):
    """Per width, h_s's float layers and z's medians from a bundle's arrays, read when first
    asked for (a decode needs one width's)."""

    def __init__(self, arrays: Mapping, widths: tuple[int, ...]) -> None:
        self._arrays, self._widths, self._built = arrays, widths, {}

    def __getitem__(self, width: int) -> tuple[list, np.ndarray]:
        if width not in self._widths:
            raise KeyError(width)
        if width not in self._built:
            try:
                self._built[width] = (layers_from_arrays(f"hyper_scale.{width}", self._arrays),
                                      np.asarray(self._arrays[f"zmedians.{width}"]))
            except (KeyError, ValueError, TypeError) as exc:
                raise SlimError(f"runtime bundle is damaged ({type(exc).__name__}: {exc})") from exc
        return self._built[width]

    def __iter__(self) -> Iterator[int]:
        return iter(self._widths)

    def __len__(self) -> int:
        return len(self._widths)
