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
from slimcodec.suffixes import DECODED_SUFFIX, SLIM_SUFFIX

__all__ = ["encode_file", "decode_file"]

PathLike = str | os.PathLike


def _write(dst: Path, write, overwrite: bool) -> None:
    try:
        write_atomic(dst, write, overwrite=overwrite)
    except OutputExistsError:
        raise OutputExistsError(f"{dst} already exists (pass overwrite=True to replace it)", dst) from None


def encode_file(src: PathLike, dst: PathLike | None = None, *, width: int | None = None,
                scale: float | None = None, quality: int | None = None, overwrite: bool = False, weights=None,
                metadata=True) -> Path:
    """Encode an image file (any format Pillow reads) to a .slim file.

    Args:
        src (str | PathLike): the image.
        dst (str | PathLike | None): the .slim file; beside ``src`` with suffix ``.slim`` by default.
        width (int | None): network width; :data:`slimcodec.codec.DEFAULT_WIDTH` by default.
        scale (float | None): latent scale (see :func:`slimcodec.codec.encode`) [default: 1].
        quality (int | None): 0..100 instead of ``width`` and ``scale`` (:mod:`slimcodec.quality`).
        overwrite (bool): replace an existing ``dst``.
        weights (Weights | str | None): loaded weights or a path; the shipped ones by default.
        metadata (bool | str | Iterable[str]): the metadata kept (ICC, EXIF, XMP; see
            :func:`slimcodec.codec.encode`).

    Returns:
        Path: the file written.

    Raises:
        SlimError: ``src`` is not a readable image, or ``dst`` exists / cannot be written.
        ValueError: bad ``width``, ``scale`` or ``quality``.
    """
    from slimcodec import codec
    from slimcodec.imageio import open_image

    src = Path(src)
    dst = src.with_suffix(SLIM_SUFFIX) if dst is None else Path(dst)
    with open_image(src) as image:
        data = codec.encode(image, width, scale=scale, quality=quality, weights=weights, metadata=metadata)
    _write(dst, lambda f: f.write(data), overwrite)
    return dst


def decode_file(src: PathLike, dst: PathLike | None = None, *, overwrite: bool = False, weights=None,
                quality: int | None = None, lossless: bool = False,
                background: str | tuple[int, int, int] | None = None) -> Path:
    """Decode a .slim file to an image file in the format of ``dst``'s suffix.

    Args:
        src (str | PathLike): the .slim file.
        dst (str | PathLike | None): the image; beside ``src`` with suffix ``.png`` by default.
        overwrite (bool): replace an existing ``dst``.
        weights (Weights | str | None): loaded weights or a path; the shipped ones by default.
        quality (int | None): JPEG, WebP, AVIF and HEIF outputs: 0..100
            [default: :data:`slimcodec.imageio.DEFAULT_OUTPUT_QUALITY`].
        lossless (bool): lossless WebP.
        background (str | tuple | None): a colour (``"white"``, ``"#ffffff"``, ``(255, 255, 255)``)
            to flatten alpha onto where the format cannot store alpha (JPEG).

    Returns:
        Path: the file written.

    Raises:
        SlimFormatError: ``src`` is not a valid .slim file for these weights.
        SlimError: ``dst`` exists, has a suffix Pillow cannot write, cannot store the
            image (alpha in JPEG without ``background``), or cannot be written.
        ValueError: options the output format would ignore (a quality for PNG, ...).
    """
    from slimcodec import codec
    from slimcodec.formats.slimfile import read_slim_stream
    from slimcodec.imageio import WriteOptions, check_write_options, image_writer, output_format, parse_color

    src = Path(src)
    dst = src.with_suffix(DECODED_SUFFIX) if dst is None else Path(dst)
    if isinstance(background, str):
        background = parse_color(background)
    options = WriteOptions(quality, lossless, None if background is None else tuple(background))
    check_write_options(output_format(dst), options)  # before the work, not after
    with open(src, "rb") as f:
        image = codec.decode(read_slim_stream(f), weights=weights)
    _write(dst, image_writer(image, dst, options=options), overwrite)
    return dst
