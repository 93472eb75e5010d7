"""Encode images to .slim bytes and decode them back.

    >>> from PIL import Image
    >>> import slimcodec
    >>> image = Image.new("RGB", (40, 24), (200, 120, 40))
    >>> data = slimcodec.encode(image, width=96)
    >>> data[:4]
    b'SLIM'
    >>> slimcodec.decode(data).size
    (40, 24)

``scale`` (a latent scale, recorded in the file) moves each width continuously
along its rate-distortion curve: ``encode(image, width=144, scale=0.7)`` lands
between widths 96 and 144. ``quality`` (0..100, :mod:`slimcodec.quality`) picks
both from the weights' measured curve: ``encode(image, quality=75)``.

Images of any size are padded to a multiple of 16 by edge replication and
cropped back after decoding. Large images run through the transforms in
overlapping tiles whose margins cover the network's receptive field, so
memory stays bounded and tiles meet without seams.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from typing import NamedTuple

import numpy as np
from PIL import Image

from slimcodec import geometry, runtime
from slimcodec.effort import check_effort, refine, refine_steps  # torch only once refine runs
from slimcodec.entropy import SCALE_ONE, scale_units
from slimcodec.errors import ConversionWarning, SlimFormatError, WeightsMismatchError
from slimcodec.formats.slimfile import (
    Chunk,
    ColorType,
    SlimFile,
    SlimHeader,
    make_alpha_chunk,
    read_alpha,
    read_slim,
    write_slim,
)
from slimcodec.geometry import ANALYSIS_MARGIN, STRIDE, SYNTHESIS_MARGIN, TILE_LATENTS
from slimcodec.imageio import PixelData, finish, keep_metadata, prepare
from slimcodec.latents import Latents, architecture
from slimcodec.timings import Timings, timed
from slimcodec.weights import Weights, resolve_weights, shipped_weights_path

Metadata = bool | str | Iterable[str]  # see slimcodec.imageio.metadata_kinds
Progress = Callable[[int, int], None]  # progress(done, total)

DEFAULT_WIDTH = 144


class _Steps:
    """Counts steps of work for a ``progress(done, total)`` callback (which may be ``None``)."""

    def __init__(self, progress: Progress | None, total: int):
        self.progress, self.total, self.done = progress, total, 0

    def advance(self) -> None:
        self.done = min(self.done + 1, self.total)
        if self.progress is not None:
            self.progress(self.done, self.total)


def tile_count(height_px: int, width_px: int, weights: Weights, tile: int = TILE_LATENTS) -> int:
    """How many tiles the transforms of an image of this size run in."""
    return geometry.tile_count(*geometry.latent_grid(height_px, width_px, padding_multiple(weights)), tile)


def _run_tiled(wts: Weights, stage: str, width: int, load: Callable, store: Callable, grid: tuple[int, int],
               margin: int, tile: int, progress: Callable[[], None] | None = None) -> None:
    """Run a transform ``stage`` tile by tile over a latent ``grid``.

    ``load(outer)`` gives the float32 ``[C, h, w]`` input of a tile's outer box (core
    plus margins); ``store(core, outer, y)`` keeps the core's part of the stage's output
    (a ``[C, h, w]`` float32 array). Only one tile's input and output exist at a time,
    in float: the full-size arrays are uint8 pixels and latents. After more than one tile the
    runtime's buffers for the stage are freed (the next image's first tile pays for them again).
    """
    count = 0
    for core, outer in geometry.tiles(*grid, tile, margin):
        store(core, outer, wts.run(stage, width, load(outer)))
        count += 1
        if progress is not None:
            progress()
    if count > 1:
        wts.release(stage, width)


def padding_multiple(weights: Weights) -> int:
    """Images are padded to a multiple of this: 16, or 64 with a hyperprior (z is at 1/64)."""
    return architecture(weights.architecture).padding_multiple


def analyze(weights: Weights, rgb: np.ndarray, width: int, tile: int = TILE_LATENTS,
            progress: Callable[[], None] | None = None) -> np.ndarray:
    """Latents ``y`` of an ``H×W×3`` uint8 image, at 1/16 of the image padded to
    :func:`padding_multiple` (``[C, ceil(H/16), ceil(W/16)]`` for the factorized model).

    The image is padded by edge replication; each tile is padded and converted to
    float on its own, so no full-size float or padded copy of the image is made.
    """
    h, w = rgb.shape[:2]
    grid = geometry.latent_grid(h, w, padding_multiple(weights))
    y = np.empty((width, *grid), dtype=np.float32)

    def load(outer):
        ot, ob, ol, orr = (v * STRIDE for v in outer)
        piece = rgb[ot:min(ob, h), ol:min(orr, w)]
        if ob > h or orr > w:  # the tile reaches the padding: replicate the last row/column
            piece = np.pad(piece, ((0, ob - min(ob, h)), (0, orr - min(orr, w)), (0, 0)), mode="edge")
        return (piece.astype(np.float32) / 255.0).transpose(2, 0, 1)  # a view: H×W×3 is channels-last already

    def store(core, outer, out):
        (t, b, l, r), (ot, _, ol, _) = core, outer
        y[:, t:b, l:r] = out[:, t - ot : b - ot, l - ol : r - ol]

    _run_tiled(weights, "analysis", width, load, store, grid, ANALYSIS_MARGIN, tile, progress)
    return y


def synthesize(weights: Weights, y_hat: np.ndarray, width: int, height_px: int, width_px: int,
               tile: int = TILE_LATENTS, progress: Callable[[], None] | None = None) -> np.ndarray:
    """``H×W×3`` uint8 image from dequantized latents (cropped, clamped and rounded).

    Each tile is rounded to uint8 as soon as it is synthesized, so no
    full-size float image is made.
    """
    grid = y_hat.shape[1:]
    rgb = np.empty((height_px, width_px, 3), dtype=np.uint8)

    def load(outer):
        ot, ob, ol, orr = outer
        return np.ascontiguousarray(y_hat[:, ot:ob, ol:orr], dtype=np.float32)

    def store(core, outer, out):
        (t, b, l, r), (ot, _, ol, _) = core, outer
        top, bottom = t * STRIDE, min(b * STRIDE, height_px)
        left, right = l * STRIDE, min(r * STRIDE, width_px)
        if top >= bottom or left >= right:
            return
        top_in, left_in = (t - ot) * STRIDE, (l - ol) * STRIDE
        part = out[:, top_in : top_in + bottom - top, left_in : left_in + right - left]
        with np.errstate(over="ignore", invalid="ignore"):
            # fmax/fmin rather than clip: a corrupt file's latents can make NaN or inf,
            # which then map to 0 / 255 on every platform instead of an undefined cast
            value = np.fmin(np.fmax(np.rint(part * 255.0), 0.0), 255.0)
        rgb[top:bottom, left:right] = value.astype(np.uint8).transpose(1, 2, 0)

    _run_tiled(weights, "synthesis", width, load, store, grid, SYNTHESIS_MARGIN, tile, progress)
    return rgb


def _chunks(pixels: PixelData) -> tuple[Chunk, ...]:
    """Chunks in their fixed order: ALPH, iccp, exif, xmpd."""
    chunks = []
    if pixels.alpha is not None:
        h, w = pixels.alpha.shape
        chunks.append(make_alpha_chunk(pixels.alpha.tobytes(), w, h))
    if pixels.icc:
        chunks.append(Chunk(b"iccp", pixels.icc))
    if pixels.exif:
        chunks.append(Chunk(b"exif", pixels.exif))
    if pixels.xmp:
        chunks.append(Chunk(b"xmpd", pixels.xmp))
    return tuple(chunks)


def make_header(wts: Weights, width_px: int, height_px: int, color: ColorType, width: int, units: int) -> SlimHeader:
    """The header of a file these weights write: its architecture's format (1.1, 2.0 or 3.0)."""
    return SlimHeader.for_image(width_px, height_px, color, width, wts.weights_id, 0 if units == SCALE_ONE else units,
                                version_major=architecture(wts.architecture).major)


def encode_payload(wts: Weights, y: np.ndarray, width: int, units: int = SCALE_ONE,
                   timings: Timings | None = None, z: np.ndarray | None = None) -> bytes:
    """The payload bytes of latents ``y`` (from :func:`analyze`) at a latent scale.

    ``timings`` (for benchmarks, :mod:`slimcodec.timings`) receives the seconds of
    ``"entropy"`` (and, with the hyperprior, of its networks: ``"hyper"``). ``z``: hyper-latents
    to send instead of ``h_a(y)`` (:class:`CodedLatents`).
    """
    return architecture(wts.architecture).codec.encode_payload(wts, y, width, units, timings, z)


def decode_payload(slim: SlimFile, wts: Weights, timings: Timings | None = None, symbols: bool = True) -> Latents:
    """Symbols and latents of a parsed file these weights can decode (see :func:`decode_latents`).

    ``timings`` receives the seconds of ``"entropy"`` (and ``"hyper"``), as in :func:`encode_payload`.
    ``symbols=False``: only ``y_hat`` is wanted; the symbol arrays may come back empty (a tiled
    payload's decoder then keeps none of them for the whole image).
    """
    header = slim.header
    words = np.frombuffer(slim.payload, dtype="<u4")
    units = latent_units(header)
    grid = (header.latent_height, header.latent_width)
    latent_codec = architecture(wts.architecture).codec
    if header.tiled:  # 3.1 and later (the container allows the flag nowhere else)
        return latent_codec.decode_payload(wts, words, header.slim_width, grid, units, timings, tiled=True,
                                           symbols=symbols)
    return latent_codec.decode_payload(wts, words, header.slim_width, grid, units, timings)


def encode_latents(pixels: PixelData, y: np.ndarray, width: int, units: int, wts: Weights,
                   metadata: Metadata = True, timings: Timings | None = None, z: np.ndarray | None = None) -> bytes:
    """Quantize the latents ``y`` of ``pixels`` (from :func:`analyze`) at a latent scale and
    write the .slim file. Rate control calls this for many scales on one analysis.

    Args:
        units (int): latent scale in 1/4096 units (:func:`slimcodec.entropy.scale_units`).
        metadata: the metadata kept (:func:`slimcodec.imageio.metadata_kinds`).
        timings: receives the seconds of ``"container"`` and of the payload's stages
            (:func:`encode_payload`).
        z: hyper-latents to send instead of ``h_a(y)`` (:class:`CodedLatents`).
    """
    with timed(timings, "container"):
        h, w = pixels.rgb.shape[:2]
        color = ColorType.GRAY if pixels.gray else ColorType.RGB
        header = make_header(wts, w, h, color, width, units)
        chunks = _chunks(keep_metadata(pixels, metadata))
    payload = encode_payload(wts, y, width, units, timings, z)
    with timed(timings, "container"):
        return write_slim(SlimFile(header, chunks, payload))


class CodedLatents(NamedTuple):
    """What an encode sends: the latents ``y`` and, where an encoder refined them, the
    hyper-latents ``z`` (None: ``h_a(y)``, computed when the payload is written)."""

    y: np.ndarray
    z: np.ndarray | None = None


def latents_for(wts: Weights, rgb: np.ndarray, width: int, scale: float = 1.0, effort: int = 1,
                progress: Progress | None = None, timings: Timings | None = None) -> CodedLatents:
    """The latents an encode at ``effort`` sends: the analysis, refined above effort 1 (:mod:`slimcodec.effort`).

    ``progress`` is called once per analysis tile, then once per refinement step.
    ``timings`` receives the seconds of ``"analysis"`` (and ``"refine"`` above effort 1).
    """
    with timed(timings, "analysis"):
        y = analyze(wts, rgb, width, progress=progress)
    if effort == 1:
        return CodedLatents(y)
    with timed(timings, "refine"):
        return CodedLatents(*refine(wts, rgb, y, width, scale, effort, progress=progress))


def resolve_setting(wts: Weights, width: int | None = None, scale: float | None = None,
                    quality: int | None = None) -> tuple[int, float]:
    """The (width, scale) to encode at: from ``quality``, else ``width`` and ``scale``
    (defaults :data:`DEFAULT_WIDTH` and 1).

    Raises:
        ValueError: ``quality`` together with ``width`` or ``scale``, or out of 0..100.
    """
    if quality is None:
        return DEFAULT_WIDTH if width is None else width, 1.0 if scale is None else scale
    if width is not None or scale is not None:
        raise ValueError("give a quality or a width and scale, not both")
    from slimcodec.quality import quality_setting

    return quality_setting(wts, quality)


def encode_pixels(pixels: PixelData, width: int | None = None, *, scale: float | None = None,
                  quality: int | None = None, weights: Weights | str | None = None, metadata: Metadata = True,
                  effort: int = 1, progress: Progress | None = None, timings: Timings | None = None) -> bytes:
    """Encode prepared pixels (see :func:`slimcodec.imageio.prepare`) to .slim bytes.

    ``progress(done, total)`` (optional) is called as the work advances: once per analysis
    tile, once per refinement step (effort above 1), then once for the entropy coding.
    ``timings`` (optional) receives the seconds of each stage (:mod:`slimcodec.timings`).
    """
    wts = resolve_weights(weights)
    width, scale = resolve_setting(wts, width, scale, quality)
    wts.check_width(width)
    check_effort(effort)
    units = scale_units(scale)
    height, width_px = pixels.rgb.shape[:2]
    grid = geometry.latent_grid(height, width_px, padding_multiple(wts))
    steps = _Steps(progress, tile_count(height, width_px, wts) + refine_steps(grid, effort) + 1)
    coded = latents_for(wts, pixels.rgb, width, units / SCALE_ONE, effort, progress=steps.advance, timings=timings)
    data = encode_latents(pixels, coded.y, width, units, wts, metadata, timings, coded.z)
    steps.advance()
    return data


def encode(image: Image.Image, width: int | None = None, *, scale: float | None = None, quality: int | None = None,
           weights: Weights | str | None = None, metadata: Metadata = True, effort: int = 1,
           timings: Timings | None = None) -> bytes:
    """Encode a Pillow image to .slim bytes.

    Args:
        image (PIL.Image.Image): any mode Pillow reads (see :mod:`slimcodec.imageio`).
        width (int | None): network width, one of the weights' widths (192, 144, 96, 72, 48)
            [default: :data:`DEFAULT_WIDTH`].
        scale (float | None): latent scale [default: 1], a continuous quality control from 1/16
            to 65535/4096 (just under 16):
            the latents are multiplied by it before rounding (and divided after
            decoding), so below 1 the file is smaller and the image coarser, above 1
            larger and finer. Between two widths, the wider one with a scale below 1
            stays on the widths' rate-distortion curve; above 1 each extra bit buys
            less (the tables are interpolated), so prefer a wider width when there is one.
        quality (int | None): 0..100 instead of ``width`` and ``scale``: a point on the
            weights' measured rate curve (:mod:`slimcodec.quality`); 75 is width 144 at
            scale 1 with the shipped weights.
        weights (Weights | str | None): loaded weights or a path; the shipped ones by default.
        metadata (bool | str | Iterable[str]): the metadata kept: ``True`` (ICC profile,
            EXIF and XMP), ``False``, or some of ``"icc"``, ``"exif"``, ``"xmp"``
            (:func:`slimcodec.imageio.metadata_kinds`).
        effort (int): 1 (fastest, the default) to 9: above 1 the encoder refines the
            latents against the rate-distortion objective (needs torch; see
            :mod:`slimcodec.effort`). The decoder and the format are the same.
        timings (dict | None): for benchmarks: receives the seconds of each stage
            (``"container"``, ``"analysis"``, ``"entropy"``, ...; :mod:`slimcodec.timings`).

    Returns:
        bytes: the .slim file.

    Raises:
        ValueError: ``width`` is not one of the weights' widths (the message lists them),
            ``scale``, ``quality`` or ``effort`` is out of range, or ``quality`` comes with
            ``width`` or ``scale``.
        UnsupportedImageError: the image cannot be coded.

    Warns:
        ConversionWarning: one per conversion that changed the input (16-bit
            reduced to 8, CMYK converted to RGB, EXIF orientation applied, ...).
            To get them as a list instead, call :func:`slimcodec.imageio.prepare`
            and :func:`encode_pixels`: ``prepare(image).notes``.
    """
    with timed(timings, "container"):
        pixels = prepare(image)
    for note in pixels.notes:
        warnings.warn(note, ConversionWarning, stacklevel=2)
    return encode_pixels(pixels, width, scale=scale, quality=quality, weights=weights, metadata=metadata,
                         effort=effort, timings=timings)


def check_decodable(slim: SlimFile, wts: Weights, not_shipped: bool = False) -> None:
    """Raise ``SlimFormatError`` unless these weights can decode ``slim``.

    ``not_shipped``: the file's own weights were looked for among the shipped ones and are not there.
    """
    header = slim.header
    if header.weights_id != wts.weights_id:
        raise WeightsMismatchError(header.weights_id, wts.weights_id, not_shipped)
    if header.slim_width not in wts.tables:
        raise SlimFormatError(f"width {header.slim_width} is not in these weights")
    if architecture(wts.architecture).major != header.version_major:  # each major is one architecture's
        raise SlimFormatError(f"format {header.version_major}.x does not go with {wts.architecture} weights")


def decode_latents(data: bytes, *, weights: Weights | str | None = None, timings: Timings | None = None,
                   symbols: bool = True) -> tuple[SlimFile, Latents, Weights]:
    """Parse and entropy-decode a .slim file: its container, symbols and latents.

    ``timings`` (optional) receives the seconds of ``"container"`` and of the payload's
    stages (:func:`decode_payload`); ``symbols=False``: only ``y_hat`` is wanted (as there).

    Returns:
        (SlimFile, Latents, Weights): the latents (the architecture's subclass of
        :class:`slimcodec.latents.Latents`) hold the integer symbols ``y`` (and, with the
        hyperprior, ``z`` and y's table ``indexes``), bit-exact on every platform (the
        golden vectors pin them), and the dequantized latents ``y_hat``.
    """
    with timed(timings, "container"):
        slim = read_slim(data)
    not_shipped = False
    if weights is None:
        shipped = shipped_weights_path(slim.header.weights_id)
        if shipped is None:
            not_shipped = True
        else:
            weights = str(shipped)  # an earlier release's file decodes with its own weights
    wts = resolve_weights(weights)
    check_decodable(slim, wts, not_shipped)
    return slim, decode_payload(slim, wts, timings, symbols), wts


def decode_symbols_of(data: bytes, *, weights: Weights | str | None = None) -> tuple[SlimFile, np.ndarray, Weights]:
    """Parse and entropy-decode a .slim file: its container, y's integer symbols and weights."""
    slim, latents, wts = decode_latents(data, weights=weights)
    return slim, latents.y, wts


def latent_units(header: SlimHeader) -> int:
    """The file's latent scale in 1/4096 units (``SCALE_ONE`` when it has none)."""
    return header.latent_scale or SCALE_ONE


def decode(data: bytes, *, weights: Weights | str | None = None, progress: Progress | None = None,
           timings: Timings | None = None) -> Image.Image:
    """Decode .slim bytes to a Pillow image (RGB, L, RGBA or LA); ICC profile, EXIF and XMP in ``info``.

    ``progress(done, total)`` (optional) is called as the work advances: once for the
    entropy decoding, then once per synthesis tile. ``timings`` (optional) receives the
    seconds of each stage (:mod:`slimcodec.timings`).

    Raises:
        SlimFormatError: the data is not a valid .slim file for these weights.
    """
    slim, latents, wts = decode_latents(data, weights=weights, timings=timings, symbols=False)
    y_hat = latents.y_hat
    del latents  # the symbols and indexes go before the synthesis (memory)
    runtime.release_free_memory()
    rgb, alpha = render(slim, y_hat, wts, progress=progress, timings=timings)
    del y_hat  # before the Pillow image is made (memory)
    return finish_image(slim, rgb, alpha, timings)


def decode_image(slim: SlimFile, latents: Latents, wts: Weights, *, progress: Progress | None = None,
                 timings: Timings | None = None) -> Image.Image:
    """The image of a file :func:`decode_latents` has read: synthesis, alpha plane and metadata.

    ``progress`` counts as in :func:`decode` (the entropy decoding, already done, is the
    first step); ``timings`` receives the seconds of ``"synthesis"`` and ``"container"``.

    Raises:
        SlimFormatError: the alpha chunk is broken.
    """
    return finish_image(slim, *render(slim, latents.y_hat, wts, progress=progress, timings=timings), timings)


def render(slim: SlimFile, y_hat: np.ndarray, wts: Weights, *, progress: Progress | None = None,
           timings: Timings | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """The pixels of a file's latents: ``(H×W×3 uint8 RGB, H×W uint8 alpha or None)``.

    ``progress`` and ``timings`` as in :func:`decode_image`.

    Raises:
        SlimFormatError: the alpha chunk is broken (checked before the synthesis).
    """
    header = slim.header
    steps = _Steps(progress, tile_count(header.image_height, header.image_width, wts) + 1)
    steps.advance()
    alpha = None
    with timed(timings, "container"):
        if (raw := read_alpha(slim)) is not None:  # a broken chunk is refused before the synthesis
            alpha = np.frombuffer(raw, dtype=np.uint8).reshape(header.image_height, header.image_width)
    with timed(timings, "synthesis"):
        rgb = synthesize(wts, y_hat, header.slim_width, header.image_height, header.image_width,
                         progress=steps.advance)
    return rgb, alpha


def finish_image(slim: SlimFile, rgb: np.ndarray, alpha: np.ndarray | None,
                 timings: Timings | None = None) -> Image.Image:
    """The Pillow image of :func:`render`'s pixels, with the file's colour type and metadata."""
    with timed(timings, "container"):
        return finish(rgb, slim.header.color_type == ColorType.GRAY, alpha, slim.chunk(b"iccp"), slim.chunk(b"exif"),
                      slim.chunk(b"xmpd"))
