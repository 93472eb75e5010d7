"""The Pillow plugin: ``Image.open`` of .slim files and ``Image.save`` to them (tiny model)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import gradient_image
from PIL import Image, UnidentifiedImageError

import slimcodec
from slimcodec import codec, pillow_plugin
from slimcodec.errors import SlimError, SlimFormatError
from slimcodec.pillow_plugin import SlimImageError, SlimImageFile

VECTORS = Path(__file__).resolve().parents[1] / "formats" / "vectors"


@pytest.fixture
def tiny(tiny_weights_path):
    """The tiny weights are the plugin's weights during the test."""
    previous = pillow_plugin.set_weights(tiny_weights_path)
    yield tiny_weights_path
    pillow_plugin.set_weights(previous)


def with_alpha(mode: str) -> Image.Image:
    image = gradient_image(40, 24, mode)
    image.putalpha(gradient_image(40, 24, "L").transpose(Image.Transpose.FLIP_LEFT_RIGHT))
    return image


def test_registered_with_pillow():
    assert Image.registered_extensions()[".slim"] == "SLIM"
    assert Image.MIME["SLIM"] == "image/x-slim"
    assert "SLIM" in Image.OPEN and "SLIM" in Image.SAVE


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA", "LA"])
def test_save_and_open_round_trip(tmp_path, tiny, tiny_weights, mode):
    image = with_alpha(mode) if "A" in mode else gradient_image(40, 24, mode)
    path = tmp_path / "x.slim"
    image.save(path, width=8)
    data = path.read_bytes()
    assert data == codec.encode(image, 8, weights=tiny_weights)
    with Image.open(path) as opened:
        assert isinstance(opened, SlimImageFile)
        assert (opened.format, opened.mode, opened.size) == ("SLIM", mode, (40, 24))
        assert opened.get_format_mimetype() == "image/x-slim"
        assert opened.info["slim_width"] == 8
        assert opened.info["weights_id"] == tiny_weights.weights_id.hex()
        opened.load()
        expected = codec.decode(data, weights=tiny_weights)
        assert np.array_equal(np.asarray(opened), np.asarray(expected))
    if "A" in mode:  # alpha is lossless
        assert np.array_equal(np.asarray(Image.open(path).getchannel("A")), np.asarray(image.getchannel("A")))


def test_file_objects_and_explicit_format(tiny):
    buffer = io.BytesIO()
    gradient_image(33, 17).save(buffer, format="SLIM", width=4)
    buffer.seek(0)
    opened = Image.open(buffer)
    assert (opened.format, opened.size, opened.info["slim_width"]) == ("SLIM", (33, 17), 4)
    assert opened.convert("L").size == (33, 17)  # any pixel access decodes


def test_save_with_weights_argument(tmp_path, tiny_weights_path, tiny_weights):
    assert pillow_plugin.get_weights() is None
    path = tmp_path / "x.slim"
    gradient_image(40, 24).save(path, width=4, weights=tiny_weights_path)
    assert path.read_bytes() == codec.encode(gradient_image(40, 24), 4, weights=tiny_weights)
    gradient_image(40, 24).save(path, width=4, weights=tiny_weights)  # loaded weights work too


def test_set_weights_accepts_loaded_weights(tmp_path, tiny_weights):
    previous = pillow_plugin.set_weights(tiny_weights)
    try:
        gradient_image(40, 24).save(tmp_path / "x.slim", width=8)
        assert Image.open(tmp_path / "x.slim").load() is not None
    finally:
        assert pillow_plugin.set_weights(previous) is tiny_weights
    with pytest.raises(TypeError, match="weights must be"):
        pillow_plugin.set_weights(42)


def test_save_options(tmp_path, tiny, tiny_weights):
    path = tmp_path / "x.slim"
    with pytest.raises(ValueError, match="width 144 is not available"):  # the default width
        gradient_image(40, 24).save(path)
    assert not path.exists()  # Pillow removes what it created
    with pytest.raises(ValueError, match="give width/scale, quality or one of target_bpp"):
        gradient_image(40, 24).save(path, width=8, target_bpp=1.0)
    gradient_image(40, 24).save(path, target_bytes=10**6)  # everything fits: the widest
    assert Image.open(path).info["slim_width"] == 8
    gradient_image(40, 24).save(path, target_bytes=10)  # nothing fits: the narrowest
    assert Image.open(path).info["slim_width"] == 4
    image = gradient_image(40, 24)
    image.info["icc_profile"] = b"not really a profile"
    image.save(path, width=4)
    assert Image.open(path).info["icc_profile"] == b"not really a profile"
    image.save(path, width=4, metadata=False)
    assert "icc_profile" not in Image.open(path).info
    image.save(path, width=8, scale=3.0)
    assert path.read_bytes()[34:36] == (3 * 4096).to_bytes(2, "little")  # latent_scale
    assert Image.open(path).size == (40, 24)


def test_other_files_are_not_hijacked(tmp_path, tiny):
    png = tmp_path / "photo.png"
    gradient_image(20, 10).save(png)
    assert Image.open(png).format == "PNG"
    renamed = tmp_path / "photo.slim"  # the magic decides, not the extension
    renamed.write_bytes(png.read_bytes())
    assert Image.open(renamed).format == "PNG"
    for data in (b"", b"SLI", b"SLIX" + bytes(100), b"GIF89a not a slim file at all"):
        (tmp_path / "junk.slim").write_bytes(data)
        with pytest.raises(UnidentifiedImageError):
            Image.open(tmp_path / "junk.slim")


@pytest.mark.parametrize("name", ["truncated-header.slim", "truncated-payload.slim", "trailing-data.slim",
                                  "bit-flip-payload.slim", "future-major-version.slim"])
def test_bad_slim_file_fails_in_open_with_its_reason(name):
    reason = json.loads((VECTORS / "invalid" / "expected.json").read_text())[name]
    with pytest.raises(SlimImageError, match=f"^cannot open .slim file: .*{reason}") as info:
        Image.open(VECTORS / "invalid" / name)
    assert isinstance(info.value, OSError) and isinstance(info.value, SlimFormatError)


def test_wrong_weights_fail_on_load_with_a_hint(tmp_path, tiny):
    path = tmp_path / "x.slim"
    gradient_image(40, 24).save(path, width=8)
    pillow_plugin.set_weights(None)  # the shipped weights cannot decode it
    opened = Image.open(path)  # the header is fine
    assert opened.size == (40, 24)
    with pytest.raises(SlimImageError, match="made with other weights .*set_weights"):
        opened.load()
    with pytest.raises(SlimError, match="width 12 is not in these weights"):
        pillow_plugin.set_weights(VECTORS / "v1.0" / "tiny-weights.pt")
        Image.open(VECTORS / "invalid" / "unknown-width.slim").load()


def test_golden_vectors_open_like_the_codec_decodes_them():
    weights = VECTORS / "v1.0" / "tiny-weights.pt"
    previous = pillow_plugin.set_weights(weights)
    try:
        for path in sorted((VECTORS / "v1.0").glob("*-w4.slim")):
            with Image.open(path) as opened:
                expected = codec.decode(path.read_bytes(), weights=weights)
                assert (opened.mode, opened.size) == (expected.mode, expected.size)
                assert np.array_equal(np.asarray(opened), np.asarray(expected)), path.name
    finally:
        pillow_plugin.set_weights(previous)


def test_open_reads_the_header_without_torch(tmp_path, tiny):
    path = tmp_path / "x.slim"
    with_alpha("LA").save(path, width=4)
    code = ("import sys, slimcodec; from PIL import Image; im = Image.open(sys.argv[1]); "
            "print(im.format, im.mode, im.size, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[0] == "SLIM LA (40, 24) False"


def test_package_registers_on_import():
    code = ("import sys, slimcodec; from PIL import Image; "
            "print(Image.registered_extensions()['.slim'], 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "SLIM False"
    assert slimcodec.choose_setting is not None
