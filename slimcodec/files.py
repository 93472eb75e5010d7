"""File helpers: encode an image file to a .slim file and back, as ``slim`` does.

    >>> import pathlib, tempfile
    >>> from PIL import Image
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> Image.new("RGB", (40, 24), (10, 200, 30)).save(folder / "a.png")
    >>> encode_file(folder / "a.png", width=48).name
    'a.slim'
    >>> decode_file(folder / "a.slim", folder / "b.png").name
    'b.png'
    >>> Image.open(folder / "b.png").size
    (40, 24)

Outputs are written atomically (one temporary file, flushed to disk and renamed
into place; see :mod:`slimcodec.outputs`), so an output is either complete or
absent, and an existing output is refused unless ``overwrite=True``.
"""

from __future__ import annotations

import os
from pathlib import Path

from slimcodec.outputs import OutputExistsError, write_atomic

__all__ = ["encode_file", "decode_file"]

PathLike = str | os.PathLike


def _write(dst: Path, write, overwrite: bool) -> None:
    try:
        write_atomic(dst, write, overwrite=overwrite)
    except OutputExistsError:
        raise OutputExistsError(f"{dst} already exists (pass overwrite=True to replace it)", dst) from None


def encode_file(src: PathLike, dst: PathLike | None = None, *, width: int | None = None, scale: float = 1.0,
                overwrite: bool = False, weights=None, metadata: bool = True) -> Path:
    """Encode an image file (any format Pillow reads) to a .slim file.

    Args:
        src (str | PathLike): the image.
        dst (str | PathLike | None): the .slim file; beside ``src`` with suffix ``.slim`` by default.
        width (int | None): network width; :data:`slimcodec.codec.DEFAULT_WIDTH` by default.
        scale (float): latent scale (see :func:`slimcodec.codec.encode`).
        overwrite (bool): replace an existing ``dst``.
        weights (Weights | str | None): loaded weights or a path; the shipped ones by default.
        metadata (bool): keep the ICC profile and EXIF.

    Returns:
        Path: the file written.

    Raises:
        SlimError: ``src`` is not a readable image, or ``dst`` exists / cannot be written.
        ValueError: bad ``width`` or ``scale``.
    """
    from slimcodec import codec
    from slimcodec.imageio import open_image

    src = Path(src)
    dst = src.with_suffix(".slim") if dst is None else Path(dst)
    with open_image(src) as image:
        data = codec.encode(image, codec.DEFAULT_WIDTH if width is None else width, scale=scale,
                            weights=weights, metadata=metadata)
    _write(dst, lambda f: f.write(data), overwrite)
    return dst


def decode_file(src: PathLike, dst: PathLike | None = None, *, overwrite: bool = False, weights=None) -> Path:
    """Decode a .slim file to an image file in the format of ``dst``'s suffix.

    Args:
        src (str | PathLike): the .slim file.
        dst (str | PathLike | None): the image; beside ``src`` with suffix ``.png`` by default.
        overwrite (bool): replace an existing ``dst``.
        weights (Weights | str | None): loaded weights or a path; the shipped ones by default.

    Returns:
        Path: the file written.

    Raises:
        SlimFormatError: ``src`` is not a valid .slim file for these weights.
        SlimError: ``dst`` exists, has a suffix Pillow cannot write, or cannot be written.
    """
    from slimcodec import codec
    from slimcodec.formats.slimfile import read_slim_stream
    from slimcodec.imageio import image_writer

    src = Path(src)
    dst = src.with_suffix(".png") if dst is None else Path(dst)
    with open(src, "rb") as f:
        image = codec.decode(read_slim_stream(f), weights=weights)
    _write(dst, image_writer(image, dst), overwrite)
    return dst
