"""Choosing a width for a rate or quality target (slimcodec.ratecontrol) and ``slim encode --target-*``."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import TINY_WIDTHS, gradient_image

import slimcodec
from slimcodec import codec
from slimcodec.cli.main import cli
from slimcodec.cli.parallel import WORKERS_ENV
from slimcodec.metrics import psnr
from slimcodec.ratecontrol import MAX_AUTO_SCALE, Target, choose_setting, make_target, parse_size
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


def real_file(image, choice, weights) -> bytes:
    return codec.encode(image, choice.width, scale=choice.scale, weights=weights)


@pytest.mark.parametrize("exhaustive", [False, True])
@pytest.mark.parametrize("scales", [False, True])
def test_byte_target_is_never_exceeded(image, tiny_weights, sizes, exhaustive, scales):
    for target in rate_targets(sizes):
        choice = choose_setting(image, target_bytes=target, weights=tiny_weights, exhaustive=exhaustive,
                                scales=scales)
        tried = [t for t in choice.trials if t.num_bytes <= target]
        assert choice.met == bool(tried)
        if choice.met:
            assert len(choice.data) <= target
            assert len(choice.data) == max(t.num_bytes for t in tried)  # the largest file that fits
            assert choice.reason == (f"{choice_setting_text(choice)}: {len(choice.data)} bytes, "
                                     f"the largest file within {target} bytes")
        if not scales:
            assert choice.scale == 1.0
            assert choice.met == any(n <= target for n in sizes.values())
        assert choice.data == real_file(image, choice, tiny_weights)
        assert choice.bpp == 8 * len(choice.data) / (40 * 24)
        assert choice.psnr is None  # rate targets do not decode
        assert choice.target == Target("bytes", target)


def choice_setting_text(choice) -> str:
    return f"width {choice.width}" + (f" at scale {choice.scale:.3f}" if choice.scale != 1.0 else "")


def test_bpp_target_is_never_exceeded(image, tiny_weights, sizes):
    pixels = image.width * image.height
    for num_bytes in rate_targets(sizes):
        target = 8 * num_bytes / pixels
        choice = choose_setting(image, target_bpp=target, weights=tiny_weights)
        if choice.met:
            assert choice.bpp <= target
            assert 8 * len(choice.data) <= target * pixels
            assert choice.reason.endswith(f"bpp, the largest file within {target:g} bpp")
        else:
            assert num_bytes < min(sizes.values())


def test_unreachable_rate_target_returns_the_smallest_file(image, tiny_weights, sizes):
    choice = choose_setting(image, target_bytes=10, weights=tiny_weights)
    assert (choice.met, choice.width) == (False, min(TINY_WIDTHS))
    assert len(choice.data) == min(t.num_bytes for t in choice.trials) > 10
    assert choice.reason.startswith("nothing fits in 10 bytes; using the smallest file tried (width 4")
    choice = choose_setting(image, target_bpp=0.01, weights=tiny_weights, scales=False)
    assert (choice.met, choice.width, choice.scale) == (False, 4, 1.0)
    assert choice.reason == f"nothing fits in 0.01 bpp; using the smallest file tried (width 4, {choice.bpp:.3f} bpp)"


def test_psnr_target_is_reached_with_the_smallest_file_tried(image, tiny_weights, qualities):
    for target in sorted(qualities.values()):
        choice = choose_setting(image, target_psnr=target, weights=tiny_weights)
        assert choice.met and choice.psnr >= target
        reaching = [t for t in choice.trials if t.psnr >= target]
        assert len(choice.data) == min(t.num_bytes for t in reaching)
        decoded = codec.decode(choice.data, weights=tiny_weights)
        assert choice.psnr == pytest.approx(psnr(np.asarray(image), np.asarray(decoded)))
        # Narrowest first, stopping at the first width that reaches the target at scale 1.
        first = min(w for w, q in qualities.items() if q >= target)
        at_one = [t.width for t in choice.trials if t.scale == 1.0]
        assert at_one == [w for w in sorted(TINY_WIDTHS) if w <= first]


def test_unreachable_psnr_target_returns_the_best_tried(image, tiny_weights, qualities):
    choice = choose_setting(image, target_psnr=99, weights=tiny_weights, scales=False)
    widest = max(TINY_WIDTHS)
    assert choice.met is False and choice.psnr == pytest.approx(max(qualities.values()))
    assert [t.width for t in choice.trials] == sorted(TINY_WIDTHS)
    assert choice.reason.startswith("nothing reaches 99 dB; using the best tried (width ")
    choice = choose_setting(image, target_psnr=99, weights=tiny_weights)
    assert choice.met is False and any(t.scale == 4.0 and t.width == widest for t in choice.trials)


def test_psnr_of_gray_and_alpha_images_is_measured_on_their_rgb(tiny_weights):
    for mode in ("L", "RGBA", "LA"):
        img = gradient_image(20, 18, mode)
        if "A" in mode:  # a real alpha plane (an opaque one is dropped)
            img.putalpha(gradient_image(20, 18, "L").transpose(0))
        choice = choose_setting(img, target_psnr=1, weights=tiny_weights)
        decoded = codec.decode(choice.data, weights=tiny_weights)
        assert decoded.mode == mode
        assert choice.psnr == pytest.approx(psnr(np.asarray(img.convert("RGB")), np.asarray(decoded.convert("RGB"))))


def test_metadata_counts_towards_the_size(tiny_weights):
    img = gradient_image(40, 24)
    img.info["icc_profile"] = b"\x01" * 500
    with_icc = choose_setting(img, target_bytes=10**6, weights=tiny_weights, scales=False)
    without = choose_setting(img, target_bytes=10**6, weights=tiny_weights, metadata=False, scales=False)
    assert len(with_icc.data) == len(without.data) + 500 + 8  # chunk header: tag and length


def test_choose_setting_checks_its_target(image, tiny_weights):
    with pytest.raises(ValueError, match="exactly one"):
        choose_setting(image, weights=tiny_weights)
    with pytest.raises(ValueError, match="exactly one"):
        choose_setting(image, target_bpp=1, target_bytes=100, weights=tiny_weights)


# ---------------------------------------------------------------- the search (scripted sizes)


FIVE_WIDTHS = (192, 144, 96, 72, 48)
BASE_BYTES = {48: 1000, 72: 1600, 96: 2400, 144: 4000, 192: 5000}
BASE_DB = {48: 24.0, 72: 25.5, 96: 27.0, 144: 29.0, 192: 30.0}


class FakeImage:
    def __init__(self, quality: float):
        self.quality = quality

    def convert(self, mode):
        return self

    def __array__(self, dtype=None, copy=None):
        return np.array(self.quality)


@pytest.fixture
def scripted(monkeypatch):
    """Five fake widths whose file size and PSNR follow smooth functions of the scale.

    Records every (width, units) encoded and every width analysed.
    """
    from slimcodec import metrics

    weights = Weights(model=None, tables={w: None for w in FIVE_WIDTHS}, weights_id=bytes(8))
    encoded: list[tuple[int, int]] = []
    analysed: list[int] = []
    sizes = dict(BASE_BYTES)
    quality_of: dict[bytes, float] = {}

    def fake_encode_latents(pixels, y, width, units, wts, metadata=True, timings=None, z=None):
        encoded.append((width, units))
        scale = units / 4096
        quality = BASE_DB[width] + (4 if scale < 1 else 1) * np.log2(scale)
        data = (f"{len(encoded):06d}".encode() * 10**4)[:round(sizes[width] * scale ** 0.9)]
        quality_of[data] = quality
        return data

    monkeypatch.setattr(codec, "analyze", lambda wts, rgb, width, **_: analysed.append(width))
    monkeypatch.setattr(codec, "encode_latents", fake_encode_latents)
    monkeypatch.setattr(codec, "decode", lambda data, weights=None: FakeImage(quality_of[data]))
    monkeypatch.setattr(metrics, "psnr", lambda ref, decoded: float(decoded))

    def run(size_overrides=None, **kwargs):
        encoded.clear()
        analysed.clear()
        sizes.clear()
        sizes.update({**BASE_BYTES, **(size_overrides or {})})
        choice = choose_setting(gradient_image(16, 16), weights=weights, **kwargs)
        return choice, list(encoded), list(analysed)

    return run


def test_rate_target_between_widths_scales_the_first_width_too_large_down(scripted, monkeypatch):
    choice, encoded, analysed = scripted(target_bytes=2000)
    assert analysed == [48, 72, 96]  # each width is analysed once, and only up to 96
    assert choice.width == 96 and choice.scale < 1 and choice.met
    assert 0.99 * 2000 <= len(choice.data) <= 2000


def test_rate_target_above_every_width_scales_the_widest_up(scripted):
    choice, encoded, analysed = scripted(target_bytes=7000)
    assert analysed == [48, 72, 96, 144, 192]
    assert choice.width == 192 and 1 < choice.scale <= MAX_AUTO_SCALE
    assert 0.99 * 7000 <= len(choice.data) <= 7000
    choice, _, _ = scripted(target_bytes=10**6)  # more than scale 4 needs: scale 4
    assert (choice.width, choice.scale) == (192, MAX_AUTO_SCALE)


def test_rate_target_below_every_width_scales_the_narrowest_down(scripted):
    choice, encoded, analysed = scripted(target_bytes=400)
    assert analysed == [48] and choice.width == 48 and choice.met
    assert 0.99 * 400 <= len(choice.data) <= 400
    choice, _, _ = scripted(target_bytes=50)  # below scale 1/16: not met, the smallest file
    assert (choice.met, choice.width, choice.scale) == (False, 48, 1 / 16)


def test_rate_target_without_scales_is_the_widest_width_that_fits(scripted):
    choice, encoded, _ = scripted(target_bytes=2000, scales=False)
    assert (choice.width, choice.scale, encoded) == (72, 1.0, [(48, 4096), (72, 4096), (96, 4096)])
    choice, encoded, _ = scripted(target_bytes=2000, scales=False, exhaustive=True)
    assert (choice.width, [w for w, _ in encoded]) == (72, [48, 72, 96, 144, 192])


def test_exhaustive_rate_search_finds_a_wider_width_that_fits(scripted):
    # 144 is smaller than 96 here: only the exhaustive search sees it.
    choice, _, _ = scripted({144: 1900}, target_bytes=2000, scales=False, exhaustive=True)
    assert (choice.width, len(choice.data)) == (144, 1900)


def test_psnr_target_scales_the_narrowest_width_reaching_it_down(scripted):
    choice, encoded, analysed = scripted(target_psnr=28.0)
    assert analysed == [48, 72, 96, 144] and choice.width == 144 and choice.scale < 1
    assert 28.0 <= choice.psnr <= 28.05
    assert len(encoded) <= 4 + 8  # four widths at scale 1, then the bisection


def test_psnr_target_above_every_width_scales_the_widest_up(scripted):
    choice, _, _ = scripted(target_psnr=31.0)
    assert choice.width == 192 and choice.scale > 1 and 31.0 <= choice.psnr <= 31.05
    choice, _, _ = scripted(target_psnr=40.0)
    assert (choice.met, choice.width, choice.scale) == (False, 192, MAX_AUTO_SCALE)


# ---------------------------------------------------------------- the shipped weights


@pytest.fixture(scope="module")
def sample():
    from PIL import Image

    with Image.open(Path(__file__).resolve().parents[1] / "samples" / "kodim23-crop.png") as im:
        return im.convert("RGB")


def test_latent_scale_trades_rate_for_quality_monotonically(sample):
    weights = slimcodec.load_weights()
    ref = np.asarray(sample)
    for width in (144, 48):
        sizes, qualities = [], []
        for scale in (0.4, 0.55, 0.7, 0.85, 1.0, 1.3):
            data = codec.encode(sample, width, scale=scale, weights=weights)
            sizes.append(len(data))
            qualities.append(psnr(ref, np.asarray(codec.decode(data, weights=weights))))
        assert all(a < b for a, b in zip(sizes, sizes[1:])), (width, sizes)
        assert all(a < b for a, b in zip(qualities, qualities[1:])), (width, qualities)


@pytest.mark.parametrize("target", [0.12, 0.3, 0.5, 0.8])
def test_bpp_target_is_met_within_ten_percent(sample, target):
    choice = choose_setting(sample, target_bpp=target)
    assert choice.met and 0.9 * target <= choice.bpp <= target, (choice.width, choice.scale, choice.bpp)


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


def test_encode_target_size_1k(png, tiny_weights_path):
    result = slim(["encode", png, "--weights", tiny_weights_path, "--target-size", "1k"])
    data = Path("a.slim").read_bytes()
    assert len(data) <= 1000
    lines = result.stderr.splitlines()
    assert lines[0].startswith("encoded a.png -> a.slim (")
    assert re.fullmatch(rf"  width 8 at scale [0-9.]+: {len(data)} bytes, the largest file within 1000 bytes",
                        lines[1]), lines[1]


def test_encode_target_size_kib_and_bpp(png, tiny_weights_path, sizes):
    target = sizes[min(TINY_WIDTHS)]
    slim(["encode", png, "--weights", tiny_weights_path, "--target-bpp", 8 * target / (40 * 24)])
    assert len(Path("a.slim").read_bytes()) <= target
    result = slim(["encode", png, "--weights", tiny_weights_path, "--target-size", "1KiB", "-f", "-v"])
    assert "target 1024 bytes (width and scale chosen per file)" in result.stderr
    assert "the largest file within 1024 bytes" in result.stderr


def test_encode_unmet_target_warns_and_succeeds(png, tiny_weights_path):
    result = slim(["encode", png, "--weights", tiny_weights_path, "--target-size", "10"])
    assert Path("a.slim").exists()
    assert "  warning: nothing fits in 10 bytes; using the smallest file tried (width 4 at scale 0.062, " \
        in result.stderr
    Path("a.slim").unlink()
    result = slim(["encode", png, "--weights", tiny_weights_path, "--target-size", "10", "--quiet"])
    assert Path("a.slim").exists() and result.stderr == ""


def test_encode_target_psnr_batch(png, tiny_weights_path, qualities):
    Path("pics").mkdir()
    gradient_image(40, 24).save("pics/b.png")
    gradient_image(40, 24).save("pics/c.png")
    target = min(qualities.values())
    result = slim(["encode", "pics", "--weights", tiny_weights_path, "--target-psnr", target])
    lines = result.stderr.splitlines()
    assert len(lines) == 5  # done line and reason per file, summary
    for name, (done, reason) in zip("bc", (lines[0:2], lines[2:4])):
        assert done.startswith(f"encoded pics/{name}.png -> pics/{name}.slim")
        assert reason.startswith("  width ") and reason.endswith(f"reaching {target:g} dB")
        data = Path(f"pics/{name}.slim").read_bytes()
        assert data[18] == int(reason.split()[1].rstrip(":"))  # slim_width (u16 at offset 18)


def test_encode_scale_is_recorded_and_decoded(png, tiny_weights_path):
    slim(["encode", png, "--weights", tiny_weights_path, "-w", 8, "--scale", 2.5])
    result = slim(["info", "a.slim", "--json"])
    assert '"scale": 2.5' in result.stdout
    slim(["decode", "a.slim", "--weights", tiny_weights_path, "-o", "back.png"])
    assert Path("back.png").exists()


@pytest.mark.parametrize("options, message", [
    (["--scale", 0], "invalid --scale 0: latent scale must be a number from 0.0625 to 15.9998 (65535/4096)"),
    (["--scale", 16], "invalid --scale 16:"),
    (["--scale", 1, "--target-bpp", 1], "--scale and --target-bpp cannot be combined"),
])
def test_encode_scale_usage_errors(png, tiny_weights_path, options, message):
    result = slim(["encode", png, "--weights", tiny_weights_path, *options], exit_code=2)
    assert message in result.stderr
    assert not Path("a.slim").exists()
