"""slimcodec: a learned image codec built on SlimCAE.

The package imports nothing heavy at import time; ``encode``, ``decode`` and
``load_weights`` load torch and the model on first use.
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__", "encode", "decode", "load_weights"]


def encode(image, width=None, **kwargs) -> bytes:
    """Encode a Pillow image to .slim bytes (see :func:`slimcodec.codec.encode`)."""
    from slimcodec import codec

    return codec.encode(image, codec.DEFAULT_WIDTH if width is None else width, **kwargs)


def decode(data: bytes, **kwargs):
    """Decode .slim bytes to a Pillow image (see :func:`slimcodec.codec.decode`)."""
    from slimcodec import codec

    return codec.decode(data, **kwargs)


def load_weights(path=None, device: str = "cpu"):
    """Load a weights file, the shipped one by default (see :mod:`slimcodec.weights`)."""
    from slimcodec import weights

    return weights.load_weights(path, device)
