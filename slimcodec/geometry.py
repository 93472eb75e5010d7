"""Where pixels and latents meet: the stride, the padding and the tiles, in one place.

The analysis transform downsamples by :data:`STRIDE` (16) in each direction, so a
latent position covers a 16×16 block of pixels. Images are padded by edge replication
to a multiple of the model's padding: :data:`STRIDE` for the factorized prior,
:data:`HYPER_STRIDE` (64) for the hyperprior, whose z is at 1/64 of the image side::

    side 40 px  → factorized: ⌈40/16⌉ = 3 latents;  hyperprior: 4·⌈40/64⌉ = 4 latents

The transforms run over the latent grid in tiles of :data:`TILE_LATENTS` latents, each
with a margin around it that covers the network's receptive field, so memory stays
bounded and tiles meet without seams. Pure Python: the container (``slimfile``) uses it.

    >>> latent_side(40, STRIDE), latent_side(40, HYPER_STRIDE)
    (3, 4)
    >>> [core for core, _ in tiles(3, 130, 64, 2)]
    [(0, 3, 0, 64), (0, 3, 64, 128), (0, 3, 128, 130)]
"""

from __future__ import annotations

from collections.abc import Iterator

__all__ = [
    "STRIDE", "HYPER_STRIDE", "TILE_LATENTS", "ANALYSIS_MARGIN", "SYNTHESIS_MARGIN",
    "Box", "latent_side", "latent_grid", "tiles", "tile_count",
]

STRIDE = 16  # pixels per latent position: the analysis transform's total downsampling
HYPER_STRIDE = 64  # the hyperprior's z is at 1/64 of the image side: images pad to a multiple of 64
TILE_LATENTS = 64  # tile core: 64 latents = 1024 pixels per side
ANALYSIS_MARGIN = 2  # latents; the analysis receptive field reaches 28 px = 1.75 latents
SYNTHESIS_MARGIN = 3  # latents; the synthesis reaches about 2 latents

Box = tuple[int, int, int, int]  # (top, bottom, left, right), bottom and right exclusive


def latent_side(side: int, multiple: int = STRIDE) -> int:
    """Latent positions along an image side of ``side`` pixels padded to ``multiple``.

    Args:
        side (int): pixels.
        multiple (int): the padding, a multiple of :data:`STRIDE` (:data:`STRIDE` or
            :data:`HYPER_STRIDE`).
    """
    return -(-side // multiple) * (multiple // STRIDE)


def latent_grid(height_px: int, width_px: int, multiple: int = STRIDE) -> tuple[int, int]:
    """The latent grid ``(rows, columns)`` of an image padded to ``multiple``."""
    return latent_side(height_px, multiple), latent_side(width_px, multiple)


def tiles(height: int, width: int, tile: int, margin: int) -> Iterator[tuple[Box, Box]]:
    """Yield ``(core, outer)`` latent boxes covering a ``height × width`` grid, row by row.

    The cores (``tile × tile``, smaller at the bottom and right edges) partition the grid;
    each outer box is its core grown by ``margin`` on every side, clipped to the grid.
    """
    for top in range(0, height, tile):
        for left in range(0, width, tile):
            bottom, right = min(top + tile, height), min(left + tile, width)
            outer = (max(top - margin, 0), min(bottom + margin, height),
                     max(left - margin, 0), min(right + margin, width))
            yield (top, bottom, left, right), outer


def tile_count(height: int, width: int, tile: int = TILE_LATENTS) -> int:
    """How many tiles :func:`tiles` yields for a ``height × width`` latent grid."""
    return -(-height // tile) * -(-width // tile)
