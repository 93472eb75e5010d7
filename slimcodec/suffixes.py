"""File-name suffixes: which files are images to encode, which are .slim files, what decoding writes.

One home for the suffix sets that ``slim``, :mod:`slimcodec.files`, the Pillow plugin
and the tools use. Pure Python (no numpy, no Pillow), so ``slim info`` stays light.

    >>> SLIM_SUFFIX, DECODED_SUFFIX, ".heic" in IMAGE_SUFFIXES
    ('.slim', '.png', True)
"""

from __future__ import annotations

__all__ = ["SLIM_SUFFIX", "DECODED_SUFFIX", "IMAGE_SUFFIXES"]

SLIM_SUFFIX = ".slim"
DECODED_SUFFIX = ".png"  # what a .slim file decodes to unless told otherwise
# Images searched for in folders, in the order ``slim encode --help`` lists them.
# HEIC/HEIF open with pillow-heif; AVIF and GIF through Pillow itself.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp", ".gif", ".avif", ".heic", ".heif")
