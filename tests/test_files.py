"""File helpers: slimcodec.encode_file / decode_file."""

from __future__ import annotations

import pytest
from conftest import gradient_image
from PIL import Image

import slimcodec
from slimcodec.errors import SlimError, SlimFormatError


def test_encode_and_decode_files_beside_the_input(tmp_path, tiny_weights_path):
    gradient_image(40, 24).save(tmp_path / "a.png")
    slim = slimcodec.encode_file(tmp_path / "a.png", width=8, scale=0.5, weights=tiny_weights_path)
    assert slim == tmp_path / "a.slim" and slim.read_bytes()[:4] == b"SLIM"
    (tmp_path / "a.png").unlink()
    out = slimcodec.decode_file(slim, weights=tiny_weights_path)
    assert out == tmp_path / "a.png"
    with Image.open(out) as image:
        assert image.size == (40, 24)


def test_decode_file_writes_the_format_of_the_suffix(tmp_path, tiny_weights_path):
    gradient_image(40, 24).save(tmp_path / "a.png")
    slim = slimcodec.encode_file(tmp_path / "a.png", tmp_path / "x" / "b.slim", width=4, weights=tiny_weights_path)
    out = slimcodec.decode_file(slim, tmp_path / "b.webp", weights=tiny_weights_path)
    with Image.open(out) as image:
        assert image.format == "WEBP"


def test_existing_outputs_are_refused_unless_overwrite(tmp_path, tiny_weights_path):
    gradient_image(40, 24).save(tmp_path / "a.png")
    (tmp_path / "a.slim").write_bytes(b"keep")
    with pytest.raises(SlimError, match="already exists \\(pass overwrite=True"):
        slimcodec.encode_file(tmp_path / "a.png", width=8, weights=tiny_weights_path)
    assert (tmp_path / "a.slim").read_bytes() == b"keep"
    slimcodec.encode_file(tmp_path / "a.png", width=8, weights=tiny_weights_path, overwrite=True)
    assert (tmp_path / "a.slim").read_bytes()[:4] == b"SLIM"


def test_bad_inputs_leave_no_output(tmp_path, tiny_weights_path):
    (tmp_path / "bad.slim").write_bytes(b"SLIM\x01\x01" + bytes(10))
    with pytest.raises(SlimFormatError):
        slimcodec.decode_file(tmp_path / "bad.slim", weights=tiny_weights_path)
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(SlimError):
        slimcodec.encode_file(tmp_path / "bad.png", width=8, weights=tiny_weights_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.png", "bad.slim"]
