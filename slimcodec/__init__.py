"""slimcodec: a learned image codec built on SlimCAE.

The package imports nothing heavy at import time (Pillow, not torch);
``encode``, ``decode``, ``choose_setting`` and ``load_weights`` load torch and
the model on first use. Importing it registers the ``.slim`` format with
Pillow (:mod:`slimcodec.pillow_plugin`), so ``Image.open("photo.slim")`` and
``image.save("photo.slim", width=96)`` work.
"""

from __future__ import annotations

__version__ = "0.2.0"
__all__ = ["__version__", "encode", "decode", "encode_file", "decode_file", "choose_setting", "load_weights"]


def encode(image, width=None, **kwargs) -> bytes:
    """Encode a Pillow image to .slim bytes (see :func:`slimcodec.codec.encode`): ``width`` and
    ``scale``, or ``quality=0..100``."""
    from slimcodec import codec

    return codec.encode(image, width, **kwargs)


def decode(data: bytes, **kwargs):
    """Decode .slim bytes to a Pillow image (see :func:`slimcodec.codec.decode`)."""
    from slimcodec import codec

    return codec.decode(data, **kwargs)


def encode_file(src, dst=None, **kwargs):
    """Encode an image file to a .slim file; return its path (see :func:`slimcodec.files.encode_file`)."""
    from slimcodec import files

    return files.encode_file(src, dst, **kwargs)


def decode_file(src, dst=None, **kwargs):
    """Decode a .slim file to an image file; return its path (see :func:`slimcodec.files.decode_file`)."""
    from slimcodec import files

    return files.decode_file(src, dst, **kwargs)


def load_weights(path=None, device: str = "cpu"):
    """Load a weights file, the shipped one by default (see :mod:`slimcodec.weights`)."""
    from slimcodec import weights

    return weights.load_weights(path, device)


# Light modules (no torch at import time): the rate/quality search and the Pillow plugin.
from slimcodec.ratecontrol import choose_setting  # noqa: E402
from slimcodec import pillow_plugin as _pillow_plugin  # noqa: E402,F401  (registers .slim with Pillow)
