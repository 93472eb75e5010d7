"""A Pillow plugin for ``.slim`` files: ``Image.open`` reads them, ``save`` writes them.

``import slimcodec`` registers it (format ``"SLIM"``, extension ``.slim``,
MIME type ``image/x-slim``), so afterwards::

    from PIL import Image
    import slimcodec

    image = Image.open("photo.slim")         # size, mode and metadata, no decoding yet
    image.load()                             # decodes (any pixel access does)
    image.save("copy.slim", width=96)        # encodes; the format follows the extension
    image.save("q.slim", quality=80)         # or a quality 0..100, as for JPEG and WebP
    image.save("small.slim", target_bpp=0.5) # or pick the width for a target
    image.save("best.slim", width=96, effort=6)  # a slower encoder, same decoder (needs torch)

In memory, with the shipped weights:

    >>> import io
    >>> from PIL import Image
    >>> import slimcodec
    >>> buffer = io.BytesIO()
    >>> Image.new("RGB", (40, 24), (200, 120, 40)).save(buffer, format="SLIM", width=48)
    >>> image = Image.open(io.BytesIO(buffer.getvalue()))
    >>> image.format, image.mode, image.size, image.info["slim_width"]
    ('SLIM', 'RGB', (40, 24), 48)
    >>> image.convert("L").size  # any use of the pixels decodes them
    (40, 24)

Opening reads and checks the whole container (size, checksum, header fields,
chunks) without torch; the size, the mode (``RGB``, ``L``, ``RGBA`` or ``LA``)
and ``info["icc_profile"]``/``info["exif"]``/``info["xmp"]`` come from it. The pixels are
decoded on the first ``load()``. A corrupt or unsupported file fails in
``Image.open`` with a :class:`SlimImageError` naming the reason (it is both an
``OSError``, as Pillow's errors are, and a :class:`~slimcodec.errors.SlimFormatError`);
files that are not ``.slim`` files (no ``SLIM`` magic) are left to the other
plugins.

Weights. A ``.slim`` file records the id of the weights that made it, and only
those weights decode it. The plugin uses the shipped weights unless told
otherwise, explicitly:

- ``set_weights(path_or_weights)`` sets the weights for every later open
  and save in this process (``set_weights(None)`` goes back to the shipped ones);
- ``image.save(path, weights=path_or_weights)`` overrides them for one save.

There is no environment variable: which weights decode a file is part of the
program, not of the environment.

Save options (keyword arguments of ``Image.save``): ``width`` (default 144)
and ``scale`` (latent scale, default 1), or ``quality`` (0..100, see
:mod:`slimcodec.quality`), or one of ``target_bpp``, ``target_bytes``,
``target_psnr`` (see :func:`slimcodec.ratecontrol.choose_setting`);
``weights``; ``metadata`` (default ``True``: keep ``info["icc_profile"]``, the EXIF
and ``info["xmp"]``; ``False``, or some of ``"icc,exif,xmp"``).

This module imports Pillow and the pure-Python container reader only; the
codec (and torch) is imported when an image is decoded or saved.
"""

from __future__ import annotations

import os

from PIL import Image, ImageFile

from slimcodec.errors import SlimFormatError, WeightsMismatchError
from slimcodec.formats.slimfile import MAGIC, ColorType, read_slim, read_slim_stream
from slimcodec.suffixes import SLIM_SUFFIX

__all__ = ["FORMAT", "EXTENSION", "MIME_TYPE", "SlimImageError", "SlimImageFile", "set_weights", "get_weights"]

FORMAT = "SLIM"
EXTENSION = SLIM_SUFFIX
MIME_TYPE = "image/x-slim"
DECODER = "slim"

_weights = None  # Weights | str | os.PathLike | None (None: the shipped weights)


class SlimImageError(SlimFormatError, OSError):
    """A ``.slim`` file Pillow was asked to open or decode is invalid (or needs other weights)."""


def set_weights(weights=None):
    """Use ``weights`` to decode and encode ``.slim`` images through Pillow from now on.

    Args:
        weights (Weights | str | os.PathLike | None): loaded weights
            (:func:`slimcodec.load_weights`) or a weights file; ``None`` means the
            shipped weights.

    Returns:
        The previous setting, so that it can be restored.
    """
    global _weights
    if weights is not None and not isinstance(weights, (str, os.PathLike)):
        from slimcodec.weights import Weights

        if not isinstance(weights, Weights):
            raise TypeError(f"weights must be a path, a Weights object or None, not {type(weights).__name__}")
    previous, _weights = _weights, weights
    return previous


def get_weights():
    """The weights set with :func:`set_weights` (``None``: the shipped ones)."""
    return _weights


def _accept(prefix: bytes) -> bool:
    return prefix[:4] == MAGIC


def _set_mode_and_size(image: ImageFile.ImageFile, mode: str, size: tuple[int, int]) -> None:
    image._size = size
    image._mode = mode  # Pillow >= 10.1; older versions have a plain ``mode`` attribute
    if image.mode != mode:
        image.mode = mode


class SlimImageFile(ImageFile.ImageFile):
    """An opened ``.slim`` file; its pixels are decoded on the first ``load()``."""

    format = FORMAT
    format_description = "slimcodec learned image"

    def _open(self) -> None:
        try:
            slim = read_slim(read_slim_stream(self.fp))
        except SlimFormatError as exc:
            raise SlimImageError(f"cannot open .slim file: {exc}") from None
        header = slim.header
        gray = header.color_type == ColorType.GRAY
        alpha = slim.chunk(b"ALPH") is not None
        mode = ("LA" if alpha else "L") if gray else ("RGBA" if alpha else "RGB")
        _set_mode_and_size(self, mode, (header.image_width, header.image_height))
        for tag, key in ((b"iccp", "icc_profile"), (b"exif", "exif"), (b"xmpd", "xmp")):
            if (value := slim.chunk(tag)) is not None:
                self.info[key] = value
        self.info["slim_width"] = header.slim_width
        self.info["weights_id"] = header.weights_id.hex()
        extents = (0, 0, header.image_width, header.image_height)
        tile_type = getattr(ImageFile, "_Tile", None)
        self.tile = [tile_type(DECODER, extents, 0, ()) if tile_type else (DECODER, extents, 0, ())]


class SlimDecoder(ImageFile.PyDecoder):
    """Decodes a whole ``.slim`` file (it reads the file itself, from the start)."""

    _pulls_fd = True

    def decode(self, buffer):
        from slimcodec import codec

        assert self.fd is not None
        try:
            image = codec.decode(read_slim_stream(self.fd), weights=_weights)
        except SlimFormatError as exc:
            mismatch = isinstance(exc, WeightsMismatchError)
            hint = "; set them with slimcodec.pillow_plugin.set_weights(path)" if mismatch else ""
            raise SlimImageError(f"cannot decode .slim file: {exc}{hint}") from None
        if image.mode != self.mode:
            image = image.convert(self.mode)
        self.set_as_raw(image.tobytes())
        return -1, 0


def _save(im: Image.Image, fp, filename) -> None:
    from slimcodec import codec

    params = im.encoderinfo
    weights = params.get("weights", _weights)
    metadata = params.get("metadata", True)
    targets = {k: params[k] for k in ("target_bpp", "target_bytes", "target_psnr") if params.get(k) is not None}
    width, scale, quality = params.get("width"), params.get("scale"), params.get("quality")
    effort = params.get("effort", 1)
    if targets:
        if width is not None or scale is not None or quality is not None:
            raise ValueError("give width/scale, quality or one of target_bpp, target_bytes, target_psnr, "
                             "not several")
        from slimcodec.ratecontrol import choose_setting

        data = choose_setting(im, weights=weights, metadata=metadata, effort=effort, **targets).data
    else:
        data = codec.encode(im, width, scale=scale, quality=quality, weights=weights, metadata=metadata,
                            effort=effort)
    fp.write(data)


def register() -> None:
    """Register the plugin with Pillow (done on ``import slimcodec``; repeating it is harmless)."""
    Image.register_open(FORMAT, SlimImageFile, _accept)
    Image.register_save(FORMAT, _save)
    Image.register_extension(FORMAT, EXTENSION)
    Image.register_mime(FORMAT, MIME_TYPE)
    Image.register_decoder(DECODER, SlimDecoder)


register()
