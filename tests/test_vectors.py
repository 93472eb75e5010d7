"""Golden vectors pin the .slim bitstream both ways; invalid files give their reasons."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from slimcodec import codec
from slimcodec.errors import SlimFormatError
from slimcodec.weights import load_weights

VECTORS = Path(__file__).resolve().parents[1] / "formats" / "vectors"
EXPECTED = json.loads((VECTORS / "v1.0" / "expected.json").read_text())
INVALID = json.loads((VECTORS / "invalid" / "expected.json").read_text())


@pytest.fixture(scope="module")
def vector_weights():
    return load_weights(VECTORS / "v1.0" / EXPECTED["weights"])


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_vector_weights_have_the_recorded_id(vector_weights):
    assert vector_weights.weights_id.hex() == EXPECTED["weights_id"]


@pytest.mark.parametrize("name", sorted(EXPECTED["vectors"]))
def test_vector_decodes_to_the_recorded_symbols_and_pixels(vector_weights, name):
    entry = EXPECTED["vectors"][name]
    data = (VECTORS / "v1.0" / name).read_bytes()
    assert sha256(data) == entry["file_sha256"]
    _, q, _ = codec.decode_symbols_of(data, weights=vector_weights)
    assert sha256(q.astype("<i4").tobytes()) == entry["symbols_sha256"]
    pixels = np.asarray(codec.decode(data, weights=vector_weights))
    assert sha256(pixels.tobytes()) == entry["pixels_sha256"]


@pytest.mark.parametrize("name", sorted(EXPECTED["vectors"]))
def test_encoding_the_source_gives_the_vector_bytes(vector_weights, name):
    entry = EXPECTED["vectors"][name]
    with Image.open(VECTORS / "v1.0" / entry["source"]) as image:
        data = codec.encode(image, entry["width"], weights=vector_weights)
    assert data == (VECTORS / "v1.0" / name).read_bytes()


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_file_is_refused_with_its_reason(vector_weights, name):
    data = (VECTORS / "invalid" / name).read_bytes()
    with pytest.raises(SlimFormatError, match=INVALID[name]):
        codec.decode(data, weights=vector_weights)
