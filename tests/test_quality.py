"""Quality 0..100: the table, its monotonic rate with the shipped weights, and -q/quality= everywhere."""

from __future__ import annotations

import io

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import SHARED_DATA, gradient_image
from PIL import Image

import slimcodec
from slimcodec import codec
from slimcodec.cli.main import cli
from slimcodec.entropy import scale_units
from slimcodec.imageio import prepare
from slimcodec.weights import load_weights


def _quality():
    """slimcodec.quality, imported in the tests (so that each fails on its own without it)."""
    import slimcodec.quality

    return slimcodec.quality


def quality_setting(weights, quality):
    return _quality().quality_setting(weights, quality)


def _tables() -> dict:
    try:
        return _quality().TABLES
    except ImportError:
        return {"df9f17e387a8f20d": ()}


KODAK_CROPS = {"kodim01": (200, 150, 392, 278), "kodim13": (300, 200, 492, 328), "kodim23": (300, 200, 492, 328)}


def slim(args, exit_code: int = 0):
    result = CliRunner().invoke(cli, [str(a) for a in args], env={"SLIM_WORKERS": "1"}, prog_name="slim")
    assert result.exit_code == exit_code, (result.exit_code, result.stderr, result.exc_info)
    return result


@pytest.fixture(scope="module")
def shipped():
    return load_weights()


@pytest.fixture(scope="module")
def kodak_crops():
    """Three 192×128 Kodak crops, prepared (skips when ../shared/data is absent)."""
    crops = []
    for name, box in KODAK_CROPS.items():
        path = SHARED_DATA / "kodak" / f"{name}.png"
        if not path.exists():
            pytest.skip("../shared/data/kodak not available")
        with Image.open(path) as im:
            crops.append(prepare(im.convert("RGB").crop(box)))
    return crops


@pytest.mark.parametrize("weights_id", sorted(_tables()))
def test_a_table_covers_every_quality_with_widths_rising_and_scales_rising_within_a_width(weights_id):
    anchors = _quality().TABLES[weights_id]
    assert anchors[0][0] == 0 and anchors[-1][0] == 100
    for (q0, w0, s0), (q1, w1, s1) in zip(anchors, anchors[1:]):
        assert q1 > q0 and w1 >= w0
        assert (s1 > s0) if w1 == w0 else (q1 == q0 + 1)  # a new width starts the next quality


def test_quality_75_is_the_default_width_144_at_scale_1_and_90_and_100_are_width_192(shipped):
    assert quality_setting(shipped, 75) == (144, 1.0)
    assert quality_setting(shipped, 90) == (192, pytest.approx(0.9454, abs=0.5 / 4096))  # its anchor, in 1/4096 units
    assert quality_setting(shipped, 100) == (192, 1.5)
    image = gradient_image(48, 32)
    assert slimcodec.encode(image, quality=75, weights=shipped) == slimcodec.encode(image, weights=shipped)


def test_width_and_scale_never_fall_as_the_quality_rises(shipped):
    settings = [quality_setting(shipped, q) for q in range(101)]
    for (w0, s0), (w1, s1) in zip(settings, settings[1:]):
        assert w1 > w0 or (w1 == w0 and s1 >= s0)


def test_mean_file_size_never_falls_as_the_quality_rises_on_kodak_crops(shipped, kodak_crops):
    latents = [{w: codec.analyze(shipped, crop.rgb, w) for w in shipped.widths} for crop in kodak_crops]
    sizes = np.zeros((101, len(kodak_crops)))
    for q in range(101):  # quality outer: the scaled tables are made once per quality
        width, scale = quality_setting(shipped, q)
        for i, (crop, y) in enumerate(zip(kodak_crops, latents)):
            sizes[q, i] = len(codec.encode_latents(crop, y[width], width, scale_units(scale), shipped))
    mean = sizes.mean(axis=1)
    assert all(np.diff(mean) >= 0), [q for q in range(1, 101) if mean[q] < mean[q - 1]]
    assert mean[100] > 10 * mean[0]
    for q in range(1, 101):  # for each image, within one width: a larger scale never gives a smaller file
        if quality_setting(shipped, q)[0] == quality_setting(shipped, q - 1)[0]:
            assert all(sizes[q] >= sizes[q - 1]), q
    image = Image.fromarray(kodak_crops[0].rgb)
    for q in (30, 90):  # those are the files encode(quality=q) writes
        assert len(slimcodec.encode(image, quality=q, weights=shipped)) == sizes[q, 0]


def test_weights_without_a_table_spread_their_widths_evenly_at_scale_1(tiny_weights):
    even_widths = _quality().even_widths
    assert _quality().table_for(tiny_weights) == even_widths((8, 4))
    assert [quality_setting(tiny_weights, q) for q in (0, 49, 50, 100)] == [(4, 1.0), (4, 1.0), (8, 1.0), (8, 1.0)]
    assert [a[1] for a in even_widths((192, 144, 96, 72, 48)) if a[0] in (0, 12, 13, 37, 38, 62, 63, 87, 88)] \
        == [48, 48, 72, 72, 96, 96, 144, 144, 192]


@pytest.mark.parametrize("bad", [-1, 101, 50.5, "75", True, None])
def test_a_quality_that_is_not_a_whole_number_from_0_to_100_is_refused(bad, tiny_weights):
    with pytest.raises(ValueError, match="quality must be a whole number from 0 to 100"):
        quality_setting(tiny_weights, bad)


def test_quality_with_a_width_or_scale_is_refused_by_the_api(tiny_weights):
    for extra in ({"width": 8}, {"scale": 0.5}):
        with pytest.raises(ValueError, match="give a quality or a width and scale, not both"):
            slimcodec.encode(gradient_image(16, 16), quality=50, weights=tiny_weights, **extra)


def test_encode_file_and_the_pillow_plugin_take_a_quality(tmp_path, tiny_weights):
    from slimcodec.formats.slimfile import read_header

    gradient_image(40, 24).save(tmp_path / "a.png")
    slimcodec.encode_file(tmp_path / "a.png", quality=10, weights=tiny_weights)
    assert read_header((tmp_path / "a.slim").read_bytes()).slim_width == 4
    buffer = io.BytesIO()
    gradient_image(40, 24).save(buffer, format="SLIM", quality=90, weights=tiny_weights)
    assert read_header(buffer.getvalue()).slim_width == 8  # quality=90 was not ignored


def test_cli_q_is_the_quality_as_for_cwebp(tmp_path, tiny_weights_path):
    from slimcodec.formats.slimfile import read_header

    gradient_image(40, 24).save(tmp_path / "photo.png")
    low, high = tmp_path / "low.slim", tmp_path / "high.slim"
    slim(["encode", tmp_path / "photo.png", "-q", 20, "-o", low, "--weights", tiny_weights_path])
    slim(["encode", tmp_path / "photo.png", "--quality", 80, "-o", high, "--weights", tiny_weights_path])
    assert read_header(low.read_bytes()).slim_width == 4 and read_header(high.read_bytes()).slim_width == 8
    assert sorted(p.name for p in tmp_path.iterdir()) == ["high.slim", "low.slim", "photo.png"]


@pytest.mark.parametrize("args, message", [
    (["-q", 75, "-w", 8], "error: --quality and --width cannot be combined: give a quality, a width and scale, "
                          "or one target"),
    (["-q", 75, "--target-bpp", 1], "error: --quality and --target-bpp cannot be combined: give a quality, a "
                                    "width and scale, or one target"),
    (["-q", 101], "Error: Invalid value for '-q' / '--quality': 101 is not in the range 0<=x<=100."),
])
def test_a_quality_that_cannot_be_used_is_a_usage_error(args, message, tmp_path, tiny_weights_path):
    gradient_image(16, 16).save(tmp_path / "a.png")
    result = slim(["encode", tmp_path / "a.png", *args, "--weights", tiny_weights_path], exit_code=2)
    assert result.stderr.splitlines()[-1] == message
    assert not (tmp_path / "a.slim").exists()


def test_quiet_is_the_long_option_only(tmp_path, tiny_weights_path):
    gradient_image(16, 16).save(tmp_path / "a.png")
    assert slim(["encode", tmp_path / "a.png", "--quiet", "-w", 8, "--weights", tiny_weights_path]).stderr == ""
    result = slim(["encode", tmp_path / "a.png", "-w", 8, "--weights", tiny_weights_path, "-q"], exit_code=2)
    assert result.stderr.splitlines()[-1] == "Error: Option '-q' requires an argument."
