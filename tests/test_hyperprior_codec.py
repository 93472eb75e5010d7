"""Format 2: the hyperprior's .slim files, coded through z, then y, on a tiny model."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
import torch
from conftest import gradient_image
from PIL import Image

from slimcodec import codec
from slimcodec.entropy import quantize
from slimcodec.errors import SlimFormatError
from slimcodec.imageio import prepare
from slimcodec.latents import hyperprior as hyperprior_codec
from slimcodec.models.hyperprior import SlimCAEHyperprior
from slimcodec.weights import load_weights, save_weights


@pytest.fixture(scope="module")
def hyper_weights(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "tiny-hyperprior.pt"
    save_weights(SlimCAEHyperprior((8, 4)), path)
    return load_weights(path)


def noise_image(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


@pytest.mark.parametrize("size", [(1, 1), (17, 33), (100, 70)])
def test_files_are_format_2_with_y_at_a_sixteenth_of_the_image_padded_to_64(hyper_weights, size):
    data = codec.encode(noise_image(*size), 8, weights=hyper_weights)
    slim, latents, _ = codec.decode_latents(data, weights=hyper_weights)
    h = slim.header
    assert (h.version_major, h.version_minor) == (2, 0) and hyper_weights.architecture == "slimcae-hyperprior"
    grid = (-(-size[1] // 64) * 4, -(-size[0] // 64) * 4)
    assert (h.latent_height, h.latent_width) == grid
    assert latents["y"].shape == (8, *grid) and latents["z"].shape == (8, grid[0] // 4, grid[1] // 4)
    assert codec.decode(data, weights=hyper_weights).size == size


@pytest.mark.parametrize("scale", [1.0, 0.5, 4.0])
def test_decoded_symbols_are_the_encoded_ones(hyper_weights, scale):
    image = noise_image(96, 80, seed=1)
    units = round(scale * 4096)
    y = codec.analyze(hyper_weights, prepare(image).rgb, 8)
    q_z = quantize(hyperprior_codec.hyper_analysis(hyper_weights, y, 8), hyper_weights.tables[8])
    indexes, means = hyperprior_codec.side_information(hyper_weights, q_z, 8, units)
    q_y = np.rint((y - means) * np.float32(scale)).astype(np.int32)
    data = codec.encode(image, 8, weights=hyper_weights, scale=scale)
    _, latents, _ = codec.decode_latents(data, weights=hyper_weights)
    assert np.array_equal(latents["z"], q_z) and np.array_equal(latents["y"], q_y)
    assert np.array_equal(latents["indexes"], indexes)


def test_a_larger_latent_scale_spends_more_bits_for_closer_latents(hyper_weights):
    image = gradient_image(128, 96)
    y = codec.analyze(hyper_weights, prepare(image).rgb, 8)
    sizes = []
    for scale in (1.0, 4.0, 15.9):
        data = codec.encode(image, 8, weights=hyper_weights, scale=scale)
        sizes.append(len(data))
        y_hat = codec.decode_latents(data, weights=hyper_weights)[1]["y_hat"]
        assert np.abs(y_hat - y).max() <= 0.5 / scale + 1e-5  # round(s·(y − μ)) / s + μ
    assert sizes[0] <= sizes[1] < sizes[2]


def test_symbols_do_not_depend_on_the_thread_count(hyper_weights):
    image = noise_image(130, 70, seed=2)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = codec.encode(image, 8, weights=hyper_weights)
        torch.set_num_threads(2)
        two = codec.encode(image, 8, weights=hyper_weights)
        _, latents, _ = codec.decode_latents(one, weights=hyper_weights)
    finally:
        torch.set_num_threads(threads)
    _, again, _ = codec.decode_latents(two, weights=hyper_weights)
    for key in ("z", "y", "indexes"):
        assert np.array_equal(latents[key], again[key]), key


def test_alpha_and_gray_survive(hyper_weights):
    la = gradient_image(40, 24, "LA")
    la.putalpha(gradient_image(40, 24, "L"))
    out = codec.decode(codec.encode(la, 4, weights=hyper_weights), weights=hyper_weights)
    assert out.mode == "LA" and np.array_equal(np.asarray(out)[..., 1], np.asarray(la)[..., 1])


def test_a_file_and_weights_of_different_architectures_are_refused(hyper_weights, tiny_weights):
    image = gradient_image(40, 24)
    hyper_file = codec.encode(image, 8, weights=hyper_weights)
    factorized_file = codec.encode(image, 8, weights=tiny_weights)
    with pytest.raises(SlimFormatError, match="made with other weights"):
        codec.decode(hyper_file, weights=tiny_weights)
    # a forged id: the version still has to go with the architecture
    forged = bytearray(factorized_file[:-4])
    forged[20:28] = hyper_weights.weights_id
    forged = bytes(forged) + struct.pack("<I", zlib.crc32(bytes(forged)))
    with pytest.raises(SlimFormatError, match="format 1.x does not go with slimcae-hyperprior weights"):
        codec.decode(forged, weights=hyper_weights)


def test_corrupt_payloads_with_a_valid_crc_are_refused_or_decode_without_crashing(hyper_weights):
    data = codec.encode(noise_image(64, 64, seed=3), 8, weights=hyper_weights)
    rng = np.random.default_rng(0)
    header_end = 48
    for _ in range(200):
        body = bytearray(data[:-4])
        i = int(rng.integers(header_end, len(body)))
        body[i] ^= 1 << int(rng.integers(8))
        mutant = bytes(body) + struct.pack("<I", zlib.crc32(bytes(body)))
        try:
            codec.decode(mutant, weights=hyper_weights)
        except SlimFormatError:
            pass


def test_rate_control_chooses_a_hyperprior_file_within_its_target(hyper_weights):
    import slimcodec

    image = noise_image(96, 64, seed=4)
    largest = len(codec.encode(image, 8, weights=hyper_weights, scale=15.9))
    target_bpp = 0.5 * 8 * largest / (96 * 64)
    choice = slimcodec.choose_setting(image, target_bpp=target_bpp, weights=hyper_weights)
    assert choice.bpp <= target_bpp and codec.decode(choice.data, weights=hyper_weights).size == (96, 64)


def test_eval_measures_a_hyperprior_file_and_estimates_its_rate_from_z_and_y(hyper_weights):
    from slimcodec.tools.evaluate import measure_slim

    result = measure_slim(hyper_weights, prepare(noise_image(64, 64, seed=5)), 8)
    assert result["num_bytes"] > 0 and 0 < result["est_bpp"] <= result["bpp"]
