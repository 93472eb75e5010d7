"""Shared fixtures: a tiny seeded model for mechanics, the shipped weights for quality."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
TINY_WIDTHS = (8, 4)


def make_tiny_weights(path: Path) -> Path:
    """Save a seeded random-init SlimCAE with widths 8 and 4 (fast; quality is meaningless)."""
    import torch

    from slimcodec.models.factorized import SlimCAE
    from slimcodec.weights import save_weights

    torch.manual_seed(0)
    save_weights(SlimCAE(TINY_WIDTHS), path, meta={"purpose": "tests"})
    return path


@pytest.fixture(scope="session")
def tiny_weights_path(tmp_path_factory) -> Path:
    """Path of a tiny weights file (widths 8 and 4)."""
    return make_tiny_weights(tmp_path_factory.mktemp("weights") / "tiny.pt")


@pytest.fixture(scope="session")
def tiny_weights(tiny_weights_path):
    """The tiny weights, loaded."""
    from slimcodec.weights import load_weights

    return load_weights(tiny_weights_path)


def gradient_image(width: int, height: int, mode: str = "RGB"):
    """A smooth, deterministic test picture of the given size and mode."""
    from PIL import Image

    yy, xx = np.mgrid[0:height, 0:width]
    r = (255 * xx / max(width - 1, 1)).astype(np.uint8)
    g = (255 * yy / max(height - 1, 1)).astype(np.uint8)
    b = ((xx * 7 + yy * 13) % 256).astype(np.uint8)
    return Image.fromarray(np.stack([r, g, b], axis=2), "RGB").convert(mode)


@pytest.fixture
def kodim_crop():
    """A 128×96 crop of Kodak image 23 (skips when ../shared/data is absent)."""
    from PIL import Image

    path = SHARED_DATA / "kodak" / "kodim23.png"
    if not path.exists():
        pytest.skip("../shared/data/kodak not available")
    with Image.open(path) as im:
        return im.convert("RGB").crop((300, 200, 428, 296))


XMP = (b'<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?><x:xmpmeta xmlns:x="adobe:ns:meta/">'
       b'<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description '
       b'xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:tiff="http://ns.adobe.com/tiff/1.0/" '
       b'tiff:Orientation="1"><dc:creator>slim test</dc:creator></rdf:Description></rdf:RDF>'
       b'</x:xmpmeta><?xpacket end="w"?>')


def xmp_png_info(xmp: bytes = XMP):
    """PNG save options' ``pnginfo`` holding an XMP packet (an iTXt chunk, as Pillow reads it)."""
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_itxt("XML:com.adobe.xmp", xmp.decode())
    return info


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    """An empty current folder, so messages show short relative paths."""
    monkeypatch.chdir(tmp_path)
    return tmp_path
