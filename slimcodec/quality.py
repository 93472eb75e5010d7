"""Quality 0..100: one number for the network width and the latent scale, as ``cwebp -q``.

A quality names a point on the weights' measured rate curve: with the shipped weights,
quality ``q`` aims at ``0.618 · 2^((q − 75) / 24.12)`` bits per pixel on average over Kodak,
so the rate doubles about every 24 qualities, ``75`` is width 144 at scale 1 (the default of
``slim encode`` and :func:`slimcodec.encode`), 90 is width 192 at scale 0.95 and 100 width 192
at scale 1.5. Each quality is coded by the narrowest width whose scale-1 rate reaches it,
scaled down to it (a wider width scaled down is on average as good as or better than the
narrower one at that rate, docs/continuous-rd.md). The mapping is monotonic: a higher
quality never gives a smaller file on average (measured, docs/quality.md).

    >>> from slimcodec.quality import quality_setting
    >>> from slimcodec.weights import load_weights
    >>> weights = load_weights()
    >>> quality_setting(weights, 75), quality_setting(weights, 90)[0], quality_setting(weights, 100)
    ((144, 1.0), 192, (192, 1.5))

The mapping is a table of anchors ``(quality, width, scale)`` per weights id
(:data:`TABLES`), made by ``benchmarks/quality_table.py`` from the weights' measured mean
bpp at every width on a grid of scales; between two anchors of one width the scale is
interpolated geometrically, and consecutive anchors of different widths are one quality
apart. Weights without a table spread their widths evenly over 0..100 at scale 1
(:func:`even_widths`).
"""

from __future__ import annotations

import math
import numbers

from slimcodec.entropy import SCALE_ONE

__all__ = ["DEFAULT_QUALITY", "TABLES", "check_quality", "even_widths", "quality_setting"]

MIN_QUALITY, MAX_QUALITY = 0, 100
DEFAULT_QUALITY = 75  # width 144 at scale 1 with the shipped weights: the encoder's default

Anchor = tuple[int, int, float]  # (quality, width, scale)

#: Anchors per weights id (hex), from ``benchmarks/quality_table.py fit`` on Kodak (mean bpp per
#: width and scale, real file sizes; 0.3.x's on the first 12 images, the others' on all 24): docs/quality.md.
TABLES: dict[str, tuple[Anchor, ...]] = {
    "e51e6f1e1ba987b4": (
        (0, 48, 0.4402), (5, 48, 0.5226), (10, 48, 0.6289), (15, 48, 0.7685), (20, 48, 0.9537),
        (21, 48, 0.9977),
        (22, 72, 0.5291), (25, 72, 0.5842), (30, 72, 0.6966), (35, 72, 0.8419), (39, 72, 0.9926),
        (40, 96, 0.5542), (45, 96, 0.6544), (50, 96, 0.7829), (55, 96, 0.9514), (56, 96, 0.9906),
        (57, 144, 0.5455), (60, 144, 0.5968), (65, 144, 0.6992), (70, 144, 0.8298), (75, 144, 1.0),
        (76, 192, 0.5536), (80, 192, 0.6369), (85, 192, 0.7702), (90, 192, 0.9453), (95, 192, 1.1796),
        (100, 192, 1.5),
    ),
    "ff679a0b61397849": (
        (0, 48, 0.4045), (5, 48, 0.4827), (10, 48, 0.5849), (15, 48, 0.718), (20, 48, 0.8952),
        (22, 48, 0.9843),
        (23, 72, 0.5439), (25, 72, 0.5818), (30, 72, 0.6929), (35, 72, 0.8379), (39, 72, 0.9893),
        (40, 96, 0.5594), (45, 96, 0.6598), (50, 96, 0.7877), (55, 96, 0.9558), (56, 96, 0.9958),
        (57, 144, 0.548), (60, 144, 0.599), (65, 144, 0.7006), (70, 144, 0.8303), (75, 144, 1.0),
        (76, 192, 0.5562), (80, 192, 0.6392), (85, 192, 0.7713), (90, 192, 0.9454), (95, 192, 1.1794),
        (100, 192, 1.5),
    ),
    "0582bc6c9c4e7286": (
        (0, 48, 0.4487), (5, 48, 0.535), (10, 48, 0.6472), (15, 48, 0.7941), (20, 48, 0.991),
        (21, 72, 0.5147), (25, 72, 0.587), (30, 72, 0.6998), (35, 72, 0.8465), (39, 72, 0.9976),
        (40, 96, 0.5615), (45, 96, 0.6615), (50, 96, 0.7914), (55, 96, 0.9619),
        (56, 144, 0.5311), (60, 144, 0.5968), (65, 144, 0.6986), (70, 144, 0.8294), (75, 144, 1.0),
        (76, 192, 0.5484), (80, 192, 0.6315), (85, 192, 0.764), (90, 192, 0.9399), (95, 192, 1.1764),
        (100, 192, 1.5),
    ),
    "df9f17e387a8f20d": (
        (0, 48, 0.3466), (5, 48, 0.4083), (10, 48, 0.4927), (15, 48, 0.6141), (20, 48, 0.7857),
        (24, 48, 0.9827),
        (25, 72, 0.476), (30, 72, 0.576), (35, 72, 0.7143), (40, 72, 0.9115), (41, 72, 0.9606),
        (42, 96, 0.5144), (45, 96, 0.5746), (50, 96, 0.7033), (55, 96, 0.8842), (57, 96, 0.9766),
        (58, 144, 0.5108), (60, 144, 0.5452), (65, 144, 0.6522), (70, 144, 0.7971), (75, 144, 1.0),
        (76, 192, 0.5231), (80, 192, 0.6158), (85, 192, 0.7728), (90, 192, 1.0), (95, 192, 1.2057),
        (100, 192, 1.5),
    ),
}


def check_quality(quality: object) -> int:
    """``quality`` as an int, if it is a whole number from 0 to 100.

    Raises:
        ValueError: it is not (a bool, a fraction, out of range, not a number).
    """
    if isinstance(quality, bool) or not isinstance(quality, numbers.Real) or quality != int(quality) \
            or not MIN_QUALITY <= quality <= MAX_QUALITY:
        raise ValueError(f"quality must be a whole number from {MIN_QUALITY} to {MAX_QUALITY}, got {quality!r}")
    return int(quality)


def even_widths(widths: tuple[int, ...]) -> tuple[Anchor, ...]:
    """The fallback table: the widths, narrowest first, spread evenly over 0..100 at scale 1.

    With ``n`` widths quality ``q`` gets the ``round(q · (n − 1) / 100)``-th narrowest.

    Example:
        >>> even_widths((8, 4))
        ((0, 4, 1.0), (49, 4, 1.0), (50, 8, 1.0), (100, 8, 1.0))
    """
    ordered = sorted(widths)
    steps = max(len(ordered) - 1, 1)
    index = [min(len(ordered) - 1, math.floor(q * steps / 100 + 0.5)) for q in range(101)]
    anchors = []
    for q in range(101):
        if q in (0, 100) or index[q - 1] != index[q] or index[q + 1] != index[q]:
            anchors.append((q, ordered[index[q]], 1.0))
    return tuple(anchors)


def table_for(weights) -> tuple[Anchor, ...]:
    """The anchors of these weights: their measured table, else :func:`even_widths`."""
    return TABLES.get(weights.weights_id.hex()) or even_widths(weights.widths)


def _interpolate(low: Anchor, high: Anchor, quality: int) -> tuple[int, float]:
    (q0, width, s0), (q1, width1, s1) = low, high
    if width1 != width or q1 == q0:
        return width, s0
    t = (quality - q0) / (q1 - q0)
    return width, s0 * (s1 / s0) ** t


def quality_setting(weights, quality: int) -> tuple[int, float]:
    """The (width, latent scale) of ``quality`` for these weights.

    The scale is rounded to the 1/4096 steps a file stores, so encoding at it gives
    exactly the file this quality gives.

    Raises:
        ValueError: ``quality`` is not a whole number from 0 to 100.
    """
    quality = check_quality(quality)
    anchors = table_for(weights)
    for low, high in zip(anchors, anchors[1:]):
        if low[0] <= quality <= high[0]:
            width, scale = _interpolate(low, high, quality) if quality < high[0] else high[1:]
            return width, round(scale * SCALE_ONE) / SCALE_ONE
    raise AssertionError("a table covers 0..100")  # checked by the tests
