"""slimcodec: a learned image codec built on SlimCAE.

The package imports nothing heavy at import time (Pillow, not torch);
``encode``, ``decode``, ``choose_setting`` and ``load_weights`` load torch and
the model on first use. Importing it registers the ``.slim`` format with
Pillow (:mod:`slimcodec.pillow_plugin`), so ``Image.open("photo.slim")`` and
``image.save("photo.slim", width=96)`` work.

In a source checkout, ``slimcodec.formats`` and ``slimcodec.cli`` are the repository's
``formats/`` and ``cli/`` folders, as in an install (:class:`_CheckoutFinder`).
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import os
import sys

__version__ = "0.4.0"
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


class _CheckoutFinder(importlib.abc.MetaPathFinder):
    """Finds ``slimcodec.formats`` and ``slimcodec.cli`` in a source checkout.

    The repository keeps the container and the CLI in top-level folders (``formats/``,
    ``cli/``) that an install places inside the package (``package-dir`` in
    ``pyproject.toml``). When ``slimcodec`` is imported from a checkout rather than from
    an install (a script, a notebook or the tests run from the repository root, where the
    folder ``slimcodec/`` shadows any installed copy), this finder gives those two names,
    and only those, the checkout's folders, so the checkout imports as the installed
    package does. It is installed only when the package has no ``formats/`` of its own
    and the checkout's ``formats/slimfile.py`` and ``cli/main.py`` are beside it.
    """

    FOLDERS = {"slimcodec.formats": "formats", "slimcodec.cli": "cli"}

    def __init__(self, root: str) -> None:
        self.root = root

    def find_spec(self, fullname, path=None, target=None):
        folder = self.FOLDERS.get(fullname)
        if folder is None:
            return None
        location = os.path.join(self.root, folder)
        return importlib.util.spec_from_file_location(fullname, os.path.join(location, "__init__.py"),
                                                      submodule_search_locations=[location])


def _install_checkout_finder() -> None:
    package = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(package)
    if (os.path.isdir(os.path.join(package, "formats"))
            or not os.path.isfile(os.path.join(root, "formats", "slimfile.py"))
            or not os.path.isfile(os.path.join(root, "cli", "main.py"))):
        return  # an installed package (or an unexpected layout): the ordinary import system serves it
    if not any(isinstance(f, _CheckoutFinder) and f.root == root for f in sys.meta_path):
        sys.meta_path.insert(0, _CheckoutFinder(root))  # ahead of an editable install's finder of another tree


_install_checkout_finder()

# Light modules (no torch at import time): the rate/quality search and the Pillow plugin.
from slimcodec import pillow_plugin as _pillow_plugin  # noqa: E402,F401  (registers .slim with Pillow)
from slimcodec.ratecontrol import choose_setting  # noqa: E402
