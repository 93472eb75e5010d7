"""Choosing a width for a rate or quality target (slimcodec.ratecontrol) and ``slim encode --target-*``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import TINY_WIDTHS, gradient_image

from slimcodec import codec
from slimcodec.cli.main import cli
from slimcodec.cli.parallel import WORKERS_ENV
from slimcodec.metrics import psnr
from slimcodec.ratecontrol import Target, choose_width, make_target, parse_size
from slimcodec.weights import Weights

# ---------------------------------------------------------------- sizes and targets


@pytest.mark.parametrize("text, expected", [
    ("1k", 1000), ("1K", 1000), ("1kB", 1000), ("1KB", 1000), ("40k", 40_000),
    ("1KiB", 1024), ("1kib", 1024), ("1Ki", 1024), ("2MiB", 2 * 1024**2), ("1.5MB", 1_500_000),
    ("1M", 1_000_000), ("1G", 10**9), ("512", 512), ("512B", 512), (" 10 kB ", 10_000),
    ("1.0009k", 1000), (".5k", 500),  # rounded down: never above the limit
])
def test_parse_size(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "k", "abc", "1.2.3", "-1k", "1 kbit", "5 bits", "0", "0.0001k", "1e3"])
def test_parse_size_refuses(text):
    with pytest.raises(ValueError, match="invalid size"):
        parse_size(text)


def test_make_target():
    assert make_target(target_bpp=0.5) == Target("bpp", 0.5)
    assert make_target(target_bytes=40_000).describe() == "40000 bytes"
    assert make_target(target_psnr=32).describe() == "32 dB"
    for kwargs in ({}, {"target_bpp": 1, "target_psnr": 30}, {"target_bpp": 0}, {"target_bpp": -1},
                   {"target_bpp": float("nan")}, {"target_psnr": float("inf")}, {"target_bytes": 0},
                   {"target_bytes": 1.5}, {"target_bytes": True}, {"target_psnr": "x"}):
        with pytest.raises(ValueError):
            make_target(**kwargs)


# ---------------------------------------------------------------- with the tiny model


@pytest.fixture(scope="module")
def image():
    return gradient_image(40, 24)


@pytest.fixture(scope="module")
def sizes(image, tiny_weights) -> dict[int, int]:
    """File size of ``image`` at each tiny width."""
    return {w: len(codec.encode(image, w, weights=tiny_weights)) for w in TINY_WIDTHS}


@pytest.fixture(scope="module")
def qualities(image, tiny_weights) -> dict[int, float]:
    """PSNR of ``image`` at each tiny width (the random model is far from monotone)."""
    ref = np.asarray(image)
    return {w: psnr(ref, np.asarray(codec.decode(codec.encode(image, w, weights=tiny_weights),
                                                  weights=tiny_weights)))
            for w in TINY_WIDTHS}


def rate_targets(sizes: dict[int, int]) -> list[int]:
    values = sorted(sizes.values())
    return sorted({v + d for v in values for d in (-1, 0, 1)} | {(values[0] + values[-1]) // 2, 10**6})


@pytest.mark.parametrize("exhaustive", [False, True])
def test_byte_target_is_never_exceeded(image, tiny_weights, sizes, exhaustive):
    for target in rate_targets(sizes):
        choice = choose_width(image, target_bytes=target, weights=tiny_weights, exhaustive=exhaustive)
        fitting = [w for w, n in sizes.items() if n <= target]
        assert choice.met == bool(fitting)
        if fitting:
            assert len(choice.data) <= target
            assert choice.width == max(fitting), (target, sizes)
            assert choice.reason == (f"width {choice.width}: {len(choice.data)} bytes, "
                                     f"the widest width within {target} bytes")
        assert choice.data == codec.encode(image, choice.width, weights=tiny_weights)  # the real file
        assert choice.bpp == 8 * len(choice.data) / (40 * 24)
        assert choice.psnr is None  # rate targets do not decode
        assert choice.target == Target("bytes", target)


def test_bpp_target_is_never_exceeded(image, tiny_weights, sizes):
    pixels = image.width * image.height
    for num_bytes in rate_targets(sizes):
        target = 8 * num_bytes / pixels
        choice = choose_width(image, target_bpp=target, weights=tiny_weights)
        fitting = [w for w, n in sizes.items() if n <= num_bytes]
        assert choice.met == bool(fitting)
        if fitting:
            assert choice.bpp <= target
            assert 8 * len(choice.data) <= target * pixels
            assert choice.width == max(fitting)
            assert choice.reason.startswith(f"width {choice.width}: {choice.bpp:.3f} bpp, the widest width within")


def test_unreachable_rate_target_uses_the_narrowest(image, tiny_weights, sizes):
    narrowest = min(TINY_WIDTHS)
    choice = choose_width(image, target_bytes=10, weights=tiny_weights)
    assert (choice.met, choice.width) == (False, narrowest)
    assert len(choice.data) == sizes[narrowest] > 10
    assert choice.reason == f"no width fits in 10 bytes; using the narrowest (width {narrowest}, {sizes[narrowest]} bytes)"
    choice = choose_width(image, target_bpp=0.01, weights=tiny_weights)
    assert (choice.met, choice.width) == (False, narrowest)
    assert choice.reason.startswith("no width fits in 0.01 bpp; using the narrowest (width 4, ")


def test_psnr_target_picks_the_narrowest_width_reaching_it(image, tiny_weights, qualities):
    for target in sorted(qualities.values()):
        choice = choose_width(image, target_psnr=target, weights=tiny_weights)
        expected = min(w for w, q in qualities.items() if q >= target)
        assert (choice.met, choice.width) == (True, expected), (target, qualities)
        assert choice.psnr == pytest.approx(qualities[expected])
        assert choice.psnr >= target
        assert choice.reason == (f"width {expected}: {choice.psnr:.2f} dB, the narrowest width "
                                 f"reaching {target:g} dB")
        # Narrowest first, stopping at the first width that reaches the target.
        assert [t.width for t in choice.trials] == [w for w in sorted(TINY_WIDTHS) if w <= expected]


def test_unreachable_psnr_target_uses_the_widest(image, tiny_weights, qualities):
    widest = max(TINY_WIDTHS)
    choice = choose_width(image, target_psnr=99, weights=tiny_weights)
    assert (choice.met, choice.width) == (False, widest)
    assert choice.psnr == pytest.approx(qualities[widest])
    assert choice.reason == f"no width reaches 99 dB; using the widest (width {widest}, {qualities[widest]:.2f} dB)"
    assert [t.width for t in choice.trials] == sorted(TINY_WIDTHS)


def test_psnr_of_gray_and_alpha_images_is_measured_on_their_rgb(tiny_weights):
    for mode in ("L", "RGBA", "LA"):
        img = gradient_image(20, 18, mode)
        if "A" in mode:  # a real alpha plane (an opaque one is dropped)
            img.putalpha(gradient_image(20, 18, "L").transpose(0))
        choice = choose_width(img, target_psnr=1, weights=tiny_weights)
        decoded = codec.decode(choice.data, weights=tiny_weights)
        assert decoded.mode == mode
        assert choice.psnr == pytest.approx(psnr(np.asarray(img.convert("RGB")), np.asarray(decoded.convert("RGB"))))


def test_metadata_counts_towards_the_size(tiny_weights):
    img = gradient_image(40, 24)
    img.info["icc_profile"] = b"\x01" * 500
    with_icc = choose_width(img, target_bytes=10**6, weights=tiny_weights)
    without = choose_width(img, target_bytes=10**6, weights=tiny_weights, metadata=False)
    assert len(with_icc.data) == len(without.data) + 500 + 8  # chunk header: tag and length


def test_choose_width_checks_its_target(image, tiny_weights):
    with pytest.raises(ValueError, match="exactly one"):
        choose_width(image, weights=tiny_weights)
    with pytest.raises(ValueError, match="exactly one"):
        choose_width(image, target_bpp=1, target_bytes=100, weights=tiny_weights)


# ---------------------------------------------------------------- search order (scripted sizes)


FIVE_WIDTHS = (192, 144, 96, 72, 48)


@pytest.fixture
def scripted(monkeypatch):
    """Five fake widths whose 'files' have the sizes a test scripts; records the widths encoded."""
    weights = Weights(model=None, tables={w: None for w in FIVE_WIDTHS}, weights_id=bytes(8))
    encoded: list[int] = []
    script: dict[int, int] = {}

    def fake_encode_pixels(pixels, width, *, weights=None, metadata=True):
        encoded.append(width)
        return b"S" * script[width]

    monkeypatch.setattr(codec, "encode_pixels", fake_encode_pixels)

    def run(sizes: dict[int, int], **kwargs):
        encoded.clear()
        script.clear()
        script.update(sizes)
        choice = choose_width(gradient_image(16, 16), weights=weights, **kwargs)
        return choice, list(encoded)

    return run


def test_rate_search_stops_at_the_first_width_too_large(scripted):
    sizes = {48: 100, 72: 150, 96: 200, 144: 300, 192: 400}
    choice, encoded = scripted(sizes, target_bytes=180)
    assert (choice.width, choice.met, encoded) == (72, True, [48, 72, 96])
    choice, encoded = scripted(sizes, target_bytes=1000)
    assert (choice.width, choice.met, encoded) == (192, True, [48, 72, 96, 144, 192])
    # The narrowest is too large: the next one shows the trend, then the search stops.
    choice, encoded = scripted(sizes, target_bytes=50)
    assert (choice.width, choice.met, encoded) == (48, False, [48, 72])
    choice, encoded = scripted(sizes, target_bytes=180, exhaustive=True)
    assert (choice.width, encoded) == (72, [48, 72, 96, 144, 192])


def test_rate_search_tries_every_width_when_sizes_do_not_grow(scripted):
    # 72 is smaller than 48: the measured sizes contradict the usual order, so nothing is skipped.
    choice, encoded = scripted({48: 100, 72: 90, 96: 200, 144: 150, 192: 400}, target_bytes=160)
    assert (choice.width, choice.met, encoded) == (144, True, [48, 72, 96, 144, 192])
    # The narrowest is too large but the next one fits.
    choice, encoded = scripted({48: 100, 72: 80, 96: 120, 144: 200, 192: 300}, target_bytes=90)
    assert (choice.width, choice.met, encoded) == (72, True, [48, 72, 96, 144, 192])
    assert len(choice.data) == 80


# ---------------------------------------------------------------- slim encode --target-*


def slim(args, exit_code: int = 0):
    result = CliRunner().invoke(cli, [str(a) for a in args], env={WORKERS_ENV: "1"}, prog_name="slim")
    assert result.exit_code == exit_code, (result.stdout, result.stderr, result.exception)
    return result


@pytest.fixture
def png(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    gradient_image(40, 24).save("a.png")
    return Path("a.png")


@pytest.mark.parametrize("options, message", [
    (["-w", 8, "--target-bpp", 1], "--width and --target-bpp cannot be combined"),
    (["--width", 8, "--target-psnr", 30], "--width and --target-psnr cannot be combined"),
    (["--target-bpp", 1, "--target-size", "1k"], "--target-bpp and --target-size cannot be combined"),
    (["--target-size", "1k", "--target-psnr", 30, "--target-bpp", 2],
     "--target-bpp and --target-size and --target-psnr cannot be combined"),
    (["--target-bpp", 0], "invalid --target-bpp 0.0: must be a positive number"),
    (["--target-psnr", "-3"], "invalid --target-psnr -3.0: must be a positive number"),
    (["--target-size", "lots"], "invalid size 'lots'"),
    (["--target-size", "0k"], "must be at least 1 byte"),
    (["--target-bpp", "fast"], "'fast' is not a valid float"),
])
def test_encode_target_options_usage_errors(png, tiny_weights_path, options, message):
    result = slim(["encode", png, "--weights", tiny_weights_path, *options], exit_code=2)
    assert message in result.stderr
    assert not Path("a.slim").exists()


def test_encode_target_size_1k(png, tiny_weights_path, sizes):
    result = slim(["encode", png, "--weights", tiny_weights_path, "--target-size", "1k"])
    data = Path("a.slim").read_bytes()
    assert len(data) <= 1000
    widest = max(TINY_WIDTHS)
    assert len(data) == sizes[widest]  # the tiny files are far below 1 kB: the widest width
    lines = result.stderr.splitlines()
    assert lines[0].startswith("encoded a.png -> a.slim (")
    assert lines[1] == f"  width {widest}: {sizes[widest]} bytes, the widest width within 1000 bytes"


def test_encode_target_size_kib_and_bpp(png, tiny_weights_path, sizes):
    narrowest = min(TINY_WIDTHS)
    target = sizes[narrowest]  # exactly the narrowest file: it fits, the wider one does not
    assert sizes[max(TINY_WIDTHS)] > target
    slim(["encode", png, "--weights", tiny_weights_path, "--target-bpp", 8 * target / (40 * 24)])
    assert len(Path("a.slim").read_bytes()) == target
    result = slim(["encode", png, "--weights", tiny_weights_path, "--target-size", "1KiB", "-f", "-v"])
    assert "target 1024 bytes (width chosen per file)" in result.stderr
    assert "the widest width within 1024 bytes" in result.stderr


def test_encode_unmet_target_warns_and_succeeds(png, tiny_weights_path):
    result = slim(["encode", png, "--weights", tiny_weights_path, "--target-size", "10"])
    assert Path("a.slim").exists()
    assert "  warning: no width fits in 10 bytes; using the narrowest (width 4, " in result.stderr
    Path("a.slim").unlink()
    result = slim(["encode", png, "--weights", tiny_weights_path, "--target-size", "10", "-q"])
    assert Path("a.slim").exists() and result.stderr == ""


def test_encode_target_psnr_batch(png, tiny_weights_path, qualities):
    Path("pics").mkdir()
    gradient_image(40, 24).save("pics/b.png")
    gradient_image(40, 24).save("pics/c.png")
    target = min(qualities.values())
    expected = min(w for w, q in qualities.items() if q >= target)
    result = slim(["encode", "pics", "--weights", tiny_weights_path, "--target-psnr", target])
    lines = result.stderr.splitlines()
    assert len(lines) == 5  # done line and reason per file, summary
    for name, (done, reason) in zip("bc", (lines[0:2], lines[2:4])):
        assert done.startswith(f"encoded pics/{name}.png -> pics/{name}.slim")
        assert reason.startswith(f"  width {expected}: ") and reason.endswith(f"reaching {target:g} dB")
        assert Path(f"pics/{name}.slim").read_bytes()[18] == expected  # slim_width (u16 at offset 18)
