"""The codec API: round trips, sizes, modes, tiling, refusal of foreign files."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import gradient_image
from PIL import Image

import slimcodec
from slimcodec import codec
from slimcodec.errors import ConversionWarning, WeightsMismatchError
from slimcodec.formats.slimfile import ColorType, read_slim
from slimcodec.metrics import psnr


@pytest.mark.parametrize("size", [(1, 1), (17, 33), (1000, 3), (3, 1000), (40, 24)])
@pytest.mark.parametrize("width", [8, 4])
def test_any_image_size_round_trips_to_the_same_size(tiny_weights, size, width):
    data = codec.encode(gradient_image(*size), width, weights=tiny_weights)
    header = read_slim(data).header
    assert (header.image_width, header.image_height, header.slim_width) == (*size, width)
    assert (header.latent_width, header.latent_height) == (-(-size[0] // 16), -(-size[1] // 16))
    out = codec.decode(data, weights=tiny_weights)
    assert out.size == size and out.mode == "RGB"


def test_encoding_is_deterministic(tiny_weights):
    image = gradient_image(48, 32)
    assert codec.encode(image, 8, weights=tiny_weights) == codec.encode(image, 8, weights=tiny_weights)


def test_timings_time_each_stage_without_changing_the_file_or_the_pixels(tiny_weights):
    image = gradient_image(48, 32, "RGBA")
    image.putalpha(Image.fromarray((np.arange(48 * 32) % 256).astype(np.uint8).reshape(32, 48), "L"))
    enc, dec = {}, {}
    data = codec.encode(image, 8, weights=tiny_weights, timings=enc)
    assert data == codec.encode(image, 8, weights=tiny_weights)
    decoded = codec.decode(data, weights=tiny_weights, timings=dec)
    assert np.array_equal(np.asarray(decoded), np.asarray(codec.decode(data, weights=tiny_weights)))
    assert set(enc) == {"container", "analysis", "entropy"} and set(dec) == {"container", "entropy", "synthesis"}
    assert min(enc.values()) > 0 and min(dec.values()) > 0


def test_decode_is_decode_latents_then_decode_image(tiny_weights):
    data = codec.encode(gradient_image(40, 24), 8, weights=tiny_weights)
    slim, latents, wts = codec.decode_latents(data, weights=tiny_weights)
    steps = []
    image = codec.decode_image(slim, latents, wts, progress=lambda done, total: steps.append((done, total)))
    assert np.array_equal(np.asarray(image), np.asarray(codec.decode(data, weights=tiny_weights)))
    assert steps == [(1, 2), (2, 2)]  # the entropy decoding (already done), then the one synthesis tile


def test_header_records_the_weights_id(tiny_weights):
    data = codec.encode(gradient_image(16, 16), 4, weights=tiny_weights)
    assert read_slim(data).header.weights_id == tiny_weights.weights_id


def test_invalid_width_is_refused_listing_the_valid_widths(tiny_weights):
    with pytest.raises(ValueError, match="valid widths: 8, 4"):
        codec.encode(gradient_image(16, 16), 96, weights=tiny_weights)


def test_file_from_other_weights_is_refused(tiny_weights, tmp_path):
    import torch

    from slimcodec.models.factorized import SlimCAE
    from slimcodec.weights import load_weights, save_weights

    torch.manual_seed(1)
    save_weights(SlimCAE((8, 4)), tmp_path / "other.pt")
    data = codec.encode(gradient_image(16, 16), 8, weights=load_weights(tmp_path / "other.pt"))
    with pytest.raises(WeightsMismatchError, match="made with other weights") as caught:
        codec.decode(data, weights=tiny_weights)
    assert (caught.value.file_id, caught.value.weights_id) == (load_weights(tmp_path / "other.pt").weights_id,
                                                                tiny_weights.weights_id)


def test_a_file_of_weights_not_shipped_decoded_with_the_shipped_ones_says_they_do_not_ship(tiny_weights):
    data = codec.encode(gradient_image(16, 16), 8, weights=tiny_weights)
    with pytest.raises(WeightsMismatchError, match="do not ship with this slimcodec") as caught:
        codec.decode(data)
    assert caught.value.not_shipped and caught.value.file_id == tiny_weights.weights_id


def test_tiled_transforms_match_whole_image_transforms(tiny_weights):
    rgb = np.asarray(gradient_image(160, 112))
    whole = codec.analyze(tiny_weights, rgb, 8, tile=64)
    tiled = codec.analyze(tiny_weights, rgb, 8, tile=3)
    assert np.allclose(whole, tiled, atol=1e-5)
    y_hat = np.rint(whole)
    assert np.array_equal(
        codec.synthesize(tiny_weights, y_hat, 8, 112, 160, tile=64),
        codec.synthesize(tiny_weights, y_hat, 8, 112, 160, tile=2),
    )


@pytest.mark.parametrize("size", [(161, 113), (17, 90)])
def test_tiles_meet_without_seams_where_they_reach_the_padding(tiny_weights, size):
    """Tiled transforms (each tile padded and converted alone) against one untiled pass of the model."""
    import torch

    w, h = size
    rgb = np.asarray(gradient_image(w, h))
    gh, gw = -(-h // 16), -(-w // 16)
    padded = np.pad(rgb, ((0, gh * 16 - h), (0, gw * 16 - w), (0, 0)), mode="edge")
    with torch.no_grad():
        x = torch.from_numpy(padded.transpose(2, 0, 1).astype(np.float32) / 255.0)[None]
        y_ref = tiny_weights.model.analysis(x, 8)[0].numpy()
    y = codec.analyze(tiny_weights, rgb, 8, tile=2)
    assert np.allclose(y, y_ref, atol=1e-5)
    y_hat = np.rint(y_ref)
    with torch.no_grad():
        x_ref = tiny_weights.model.synthesis(torch.from_numpy(y_hat.astype(np.float32))[None], 8)[0].numpy()
    expected = np.clip(np.rint(x_ref[:, :h, :w] * 255.0), 0, 255).astype(np.uint8).transpose(1, 2, 0)
    tiled = codec.synthesize(tiny_weights, y_hat.astype(np.float32), 8, h, w, tile=2)
    assert np.abs(tiled.astype(int) - expected).max() <= 1  # float summation order may differ by tile
    assert (tiled != expected).mean() < 0.001


def test_grayscale_decodes_to_grayscale(tiny_weights):
    data = codec.encode(gradient_image(24, 20, "L"), 8, weights=tiny_weights)
    assert read_slim(data).header.color_type == ColorType.GRAY
    assert codec.decode(data, weights=tiny_weights).mode == "L"


def test_alpha_is_kept_losslessly(tiny_weights):
    image = gradient_image(24, 20, "RGBA")
    alpha = np.arange(24 * 20, dtype=np.uint8).reshape(20, 24)
    image.putalpha(Image.fromarray(alpha, "L"))
    out = codec.decode(codec.encode(image, 4, weights=tiny_weights), weights=tiny_weights)
    assert out.mode == "RGBA"
    assert np.array_equal(np.asarray(out)[:, :, 3], alpha)


def test_icc_profile_and_exif_are_carried_through(tiny_weights):
    image = gradient_image(16, 16)
    image.info["icc_profile"] = b"fake icc profile bytes"
    exif = Image.Exif()
    exif[0x010F] = "slimcodec camera"
    image.info["exif"] = exif.tobytes()
    out = codec.decode(codec.encode(image, 4, weights=tiny_weights), weights=tiny_weights)
    assert out.info["icc_profile"] == b"fake icc profile bytes"
    assert out.getexif()[0x010F] == "slimcodec camera"
    plain = codec.decode(codec.encode(image, 4, weights=tiny_weights, metadata=False), weights=tiny_weights)
    assert "icc_profile" not in plain.info


def test_exif_orientation_is_applied_to_the_pixels(tiny_weights):
    image = gradient_image(32, 16)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    image.info["exif"] = exif.tobytes()
    reloaded = Image.open(_png_bytes(image, exif))
    with pytest.warns(ConversionWarning, match="EXIF orientation 6 applied"):
        data = codec.encode(reloaded, 4, weights=tiny_weights)
    out = codec.decode(data, weights=tiny_weights)
    assert out.size == (16, 32)
    assert out.getexif().get(0x0112, 1) == 1


def _png_bytes(image, exif):
    import io

    buf = io.BytesIO()
    image.save(buf, format="PNG", exif=exif.tobytes())
    buf.seek(0)
    return buf


def test_package_level_api_round_trips_with_the_shipped_weights(kodim_crop):
    data = slimcodec.encode(kodim_crop, width=192)
    assert slimcodec.decode(data).size == kodim_crop.size


def test_shipped_weights_trade_rate_for_quality_across_widths(kodim_crop):
    """Narrower widths give strictly fewer bits and strictly lower quality."""
    weights = slimcodec.load_weights()
    sizes, qualities = [], []
    for width in weights.widths:  # widest first
        data = codec.encode(kodim_crop, width, weights=weights)
        sizes.append(len(data))
        qualities.append(psnr(np.asarray(kodim_crop), np.asarray(codec.decode(data, weights=weights))))
    assert all(a > b for a, b in zip(sizes, sizes[1:])), sizes
    assert all(a > b for a, b in zip(qualities, qualities[1:])), qualities
    assert qualities[-1] > 24.0, qualities
