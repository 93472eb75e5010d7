"""Format 3: the channel-conditional model's .slim files, coded through z, then y slice by slice
(3.1: tile by tile; 3.0, one stream over the image, still decodes)."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import gradient_image
from PIL import Image

from slimcodec import codec, runtime
from slimcodec.entropy import quantize
from slimcodec.entropy.gaussian import ACC_LIMIT, ACT_BITS, SCALE_ONE, WEIGHT_BITS, FixedPointSliceContext
from slimcodec.errors import SlimFormatError
from slimcodec.imageio import prepare
from slimcodec.latents import channel as channel_codec
from slimcodec.latents import hyperprior as hyperprior_codec
from slimcodec.models.channel import SlimCAEChannel
from slimcodec.runtime.stage_layers import Conv, ReLU
from slimcodec.weights import load_weights, save_weights

WIDTHS = (8, 4)  # slices of 4: two at width 8, one at width 4


def make_model(seed: int = 0, context_std: float = 0.3) -> SlimCAEChannel:
    """A tiny channel model whose context terms are not zero (a fresh model's are)."""
    torch.manual_seed(seed)
    model = SlimCAEChannel(WIDTHS)
    with torch.no_grad():
        for net in [*model.scale_context, *model.mean_context]:
            net.outer.weight.normal_(0.0, context_std)
    return model.eval()


@pytest.fixture(scope="module")
def channel_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("weights") / "tiny-channel.pt"
    save_weights(make_model(), path)
    return path


@pytest.fixture(scope="module")
def channel_weights(channel_path):
    return load_weights(channel_path)


@pytest.fixture(scope="module")
def channel_bundle(channel_path, tmp_path_factory):
    from slimcodec.tools.export_runtime import main

    out = tmp_path_factory.mktemp("bundle") / "tiny-channel.onnx.zip"
    assert main([str(channel_path), "-o", str(out)]) == 0
    return load_weights(out)


def noise_image(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def encode_3_0(image: Image.Image, width: int, weights, scale: float = 1.0) -> bytes:
    """The file 0.3.x wrote (format 3.0, one slice-major stream) for ``image``: made by hand, since
    the writer writes only 3.1; its decoding is what must last."""
    from slimcodec.entropy import scale_units

    units = scale_units(scale)
    rgb = prepare(image).rgb
    payload = channel_codec.encode_payload_3_0(weights, codec.analyze(weights, rgb, width), width, units)
    header = codec.make_header(weights, rgb.shape[1], rgb.shape[0], 0, width, units)
    from slimcodec.formats.slimfile import SlimFile, write_slim

    body = bytearray(write_slim(SlimFile(header, (), payload))[:-4])
    body[5] = 0  # version 3.0
    body[36:40] = bytes(4)  # no flags
    return bytes(body) + struct.pack("<I", zlib.crc32(bytes(body)))


def with_streams(data: bytes, streams: list) -> bytes:
    """``data`` (a 3.1 file) with its payload made of ``streams`` (a new tile table, CRC redone)."""
    from slimcodec.formats.slimfile import SlimFile, read_slim, write_slim

    slim = read_slim(data)
    return write_slim(SlimFile(slim.header, slim.chunks, channel_codec.join_streams(streams)))


def streams_of(data: bytes) -> list:
    from slimcodec.formats.slimfile import read_slim

    slim = read_slim(data)
    tiles = len(channel_codec.payload_tiles((slim.header.latent_height // 4, slim.header.latent_width // 4)))
    return channel_codec.split_streams(np.frombuffer(slim.payload, "<u4"), 1 + tiles)


def test_weights_keep_the_architecture_and_the_slice_size(channel_weights):
    assert channel_weights.architecture == "slimcae-channel"
    model = channel_weights.model
    assert isinstance(model, SlimCAEChannel) and (model.slice_channels, model.slices(8), model.slices(4)) == (4, 2, 1)
    assert model.context_channels == 64


@pytest.mark.parametrize("size", [(1, 1), (17, 33), (100, 70)])
def test_files_are_format_3_1_with_y_at_a_sixteenth_of_the_image_padded_to_64(channel_weights, size):
    data = codec.encode(noise_image(*size), 8, weights=channel_weights)
    slim, latents, _ = codec.decode_latents(data, weights=channel_weights)
    h = slim.header
    assert (h.version_major, h.version_minor, h.tiled) == (3, 1, True)
    grid = (-(-size[1] // 64) * 4, -(-size[0] // 64) * 4)
    assert (h.latent_height, h.latent_width) == grid
    assert latents.y.shape == (8, *grid) and latents.z.shape == (8, grid[0] // 4, grid[1] // 4)
    assert latents.indexes.shape == latents.y.shape
    assert codec.decode(data, weights=channel_weights).size == size


def _float_slices(model: SlimCAEChannel, y: np.ndarray, q_z: np.ndarray, symbols: np.ndarray, width: int,
                  scale: float):
    """σ and ŷ of every slice from the float torch model, given z's and y's symbols."""
    with torch.no_grad():
        medians = model.z_medians(width)
        z_hat = torch.from_numpy(q_z.astype(np.float32))[None] + medians
        trunk = model.hyper_trunk(z_hat, width)
        mean_all, scale_all = model.h_s_mean(trunk, width), model.h_s_scale(trunk, width)
        c = model.slice_channels
        q = torch.from_numpy(symbols.astype(np.float32))[None]
        sigmas, decoded = [], []
        for k in range(width // c):
            qs = [q[:, j * c:(j + 1) * c] for j in range(k)]
            mean, sigma = model.slice_parameters(k, mean_all, scale_all, qs, decoded, scale)
            sigmas.append(sigma)
            decoded.append(q[:, k * c:(k + 1) * c] / scale + mean)
        return torch.cat(sigmas, 1)[0].numpy(), torch.cat(decoded, 1)[0].numpy()


@pytest.mark.parametrize("scale", [1.0, 0.5, 3.7])
def test_the_fixed_point_scales_follow_the_float_model_and_the_values_its_slices(channel_weights, scale):
    """σ from the integer path (trunk head + slice context accumulators) is the float model's
    σ to within the fixed point's rounding; ŷ is the float model's slice-by-slice ŷ."""
    image = noise_image(96, 80, seed=1)
    units = round(scale * SCALE_ONE)
    data = codec.encode(image, 8, weights=channel_weights, scale=units / SCALE_ONE)
    _, latents, _ = codec.decode_latents(data, weights=channel_weights)
    net = channel_codec.hyper_synthesis(channel_weights, 8)
    _, acc = net.run(latents.z)
    c = channel_weights.model.slice_channels
    acc[c:] += net.contexts[0].run(latents.y[:c], units)
    fixed_sigma = acc / float(1 << (WEIGHT_BITS + ACT_BITS))
    y = codec.analyze(channel_weights, prepare(image).rgb, 8)
    sigma, y_hat = _float_slices(channel_weights.model, y, latents.z, latents.y, 8, units / SCALE_ONE)
    context = sigma[c:] - channel_weights.model.h_s_scale(
        channel_weights.model.hyper_trunk(torch.from_numpy(latents.z.astype(np.float32))[None]
                                          + channel_weights.model.z_medians(8), 8), 8)[0, c:].detach().numpy()
    assert np.abs(context).max() > 0.05  # the context moves σ: the comparison covers it
    assert np.abs(fixed_sigma - sigma).max() < 2e-3 * max(1.0, np.abs(sigma).max())
    # the codec's means read the fixed-point trunk, the float model's its float trunk
    assert np.abs(latents.y_hat - y_hat).max() < 2e-3


@pytest.mark.parametrize("scale", [1.0, 0.5, 4.0])
def test_decoded_symbols_are_the_encoded_ones(channel_weights, scale):
    image = noise_image(96, 80, seed=1)
    y = codec.analyze(channel_weights, prepare(image).rgb, 8)
    q_z = quantize(hyperprior_codec.hyper_analysis(channel_weights, y, 8), channel_weights.tables[8])
    data = codec.encode(image, 8, weights=channel_weights, scale=scale)
    _, latents, _ = codec.decode_latents(data, weights=channel_weights)
    assert np.array_equal(latents.z, q_z)
    # every slice's symbols are round(s·(y − μ_k)): the decoded values lie within half a bin of y
    assert np.abs(latents.y_hat - y).max() <= 0.5 / scale + 1e-5
    assert len(np.unique(latents.indexes[4:])) >= 3


def test_contexts_run_in_bands_give_the_whole_images_indexes_and_means(channel_weights, monkeypatch):
    """A slice's scale context runs in bands of rows (memory); bands of one row and of the whole
    image must give the same indexes, and conv_float padding each band the same means."""
    image = noise_image(96, 208, seed=3)  # y is 16 rows: bands of 1, 5 (a short last one) and 32
    data = codec.encode(image, 8, weights=channel_weights)
    decoded = {}
    for band in (1, 5, 32):
        monkeypatch.setattr(channel_codec, "CONTEXT_BAND", band)
        _, latents, _ = codec.decode_latents(data, weights=channel_weights)
        decoded[band] = latents
        assert codec.encode(image, 8, weights=channel_weights) == data
    for band in (1, 5):
        for field in ("y", "indexes", "y_hat"):
            assert np.array_equal(decoded[band][field], decoded[32][field]), (band, field)


def test_a_scale_context_in_bands_of_rows_gives_the_whole_images_accumulators():
    rng = np.random.default_rng(2)
    layers = [Conv(rng.normal(0, 0.5, (6, 8, 3, 3)).astype(np.float32), rng.normal(0, 0.5, 6).astype(np.float32),
                   1, 1), ReLU(), Conv(rng.normal(0, 0.5, (4, 6, 3, 3)).astype(np.float32), None, 1, 1)]
    context = FixedPointSliceContext.from_layers(layers)
    symbols = rng.integers(-6, 7, (8, 13, 9))
    whole = context.run(symbols)
    for band in (1, 2, 5, 13):
        rows = [channel_codec.context_rows(context, symbols, SCALE_ONE, r0, min(13, r0 + band))
                for r0 in range(0, 13, band)]
        assert np.array_equal(np.concatenate(rows, 1), whole), band


def test_conv_float_pads_each_band_as_the_whole_input():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 11, 7)).astype(np.float32)
    layer = Conv(rng.normal(size=(4, 5, 3, 3)).astype(np.float32), rng.normal(size=4).astype(np.float32), 1, 1)
    whole = torch.nn.functional.conv2d(torch.from_numpy(x)[None], torch.from_numpy(layer.weight),
                                       torch.from_numpy(layer.bias), padding=1)[0].numpy()
    for block_bytes in (1, 4 * 45 * 7 * 3, 32 << 20):  # bands of one row, three rows, everything
        assert np.allclose(channel_codec.conv_float(x, layer, block_bytes), whole, atol=1e-5)


def test_the_scale_context_reads_q_over_s_in_exact_integers():
    a = np.array([[[3, -3, 1, 0]]], np.int32)
    from slimcodec.entropy.gaussian import context_input_activations

    assert context_input_activations(a).tolist() == [[[3 << ACT_BITS, -3 << ACT_BITS, 1 << ACT_BITS, 0]]]
    # at scale 3 (12288 units): floor(q · 2**12 / 3), rounded towards −∞ for negative symbols
    assert context_input_activations(a, 12288).tolist() == [[[4096, -4096, 1365, 0]]]
    assert context_input_activations(np.array([[[-1]]]), 12288).tolist() == [[[-1366]]]


def test_a_context_that_could_leave_float64s_exact_range_is_refused(channel_weights):
    c, scale, _ = channel_codec.contexts(channel_weights)
    inner, relu, outer = scale[0]
    huge = type(outer)(outer.weight * np.float32(2.0 ** 20), None, outer.stride, outer.padding)
    context = FixedPointSliceContext.from_layers([inner, relu, huge])
    assert np.abs(context.outer.weight).sum() * (2**24) > ACC_LIMIT / 8
    from slimcodec.entropy.gaussian import FixedPointHyperSynthesis

    layers, medians = hyperprior_codec._hyper_scale(channel_weights, 8)
    with pytest.raises(ValueError, match="slice context could overflow"):
        FixedPointHyperSynthesis.from_layers(layers, medians, contexts=(context,))
    with pytest.raises(ValueError, match="convolution, ReLU, then a convolution without bias"):
        FixedPointSliceContext.from_layers([inner, relu, inner])


def test_symbols_do_not_depend_on_the_thread_count(channel_weights, channel_bundle):
    image = noise_image(130, 70, seed=2)
    torch_threads = torch.get_num_threads()
    files = []
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            runtime.set_threads(n)
            files.append([codec.encode(image, 8, weights=w, scale=2.0) for w in (channel_weights, channel_bundle)])
        decoded = [codec.decode_latents(f, weights=w)[1] for pair in files
                   for f, w in zip(pair, (channel_weights, channel_bundle))]
    finally:
        torch.set_num_threads(torch_threads)
        runtime.set_threads(None)
    assert files[0][0] == files[1][0]  # the torch runtime writes the same bytes with 1 and 2 threads
    for other in decoded[1:]:
        for key in ("z", "y", "indexes"):
            assert np.array_equal(decoded[0][key], other[key]), key


def test_a_file_encoded_with_either_runtime_decodes_with_the_other(channel_weights, channel_bundle):
    assert channel_bundle.architecture == "slimcae-channel"
    assert channel_bundle.weights_id == channel_weights.weights_id
    image = noise_image(96, 64, seed=3)
    for scale in (1.0, 2.5):
        ours = codec.encode(image, 8, weights=channel_bundle, scale=scale)
        theirs = codec.encode(image, 8, weights=channel_weights, scale=scale)
        for data in (ours, theirs):
            a = codec.decode_latents(data, weights=channel_bundle)[1]
            b = codec.decode_latents(data, weights=channel_weights)[1]
            assert all(np.array_equal(a[k], b[k]) for k in ("z", "y", "indexes"))
            assert np.abs(a.y_hat - b.y_hat).max() < 1e-4  # only the float means may differ
            pixels = [np.asarray(codec.decode(data, weights=w), np.int16) for w in (channel_bundle, channel_weights)]
            assert np.abs(pixels[0] - pixels[1]).max() <= 1


def test_a_model_made_from_a_hyperprior_writes_the_hyperpriors_symbols(tmp_path):
    from slimcodec.models.hyperprior import SlimCAEHyperprior

    torch.manual_seed(0)
    hyperprior = SlimCAEHyperprior(WIDTHS)
    save_weights(hyperprior, tmp_path / "h.pt")
    save_weights(SlimCAEChannel.from_hyperprior(hyperprior), tmp_path / "c.pt")
    h, c = load_weights(tmp_path / "h.pt"), load_weights(tmp_path / "c.pt")
    image = noise_image(96, 64, seed=4)
    for scale in (1.0, 3.0):
        a = codec.decode_latents(codec.encode(image, 8, weights=h, scale=scale), weights=h)[1]
        b = codec.decode_latents(codec.encode(image, 8, weights=c, scale=scale), weights=c)[1]
        assert all(np.array_equal(a[k], b[k]) for k in ("z", "y", "indexes"))


def test_alpha_and_gray_survive(channel_weights):
    la = gradient_image(40, 24, "LA")
    la.putalpha(gradient_image(40, 24, "L"))
    out = codec.decode(codec.encode(la, 4, weights=channel_weights), weights=channel_weights)
    assert out.mode == "LA" and np.array_equal(np.asarray(out)[..., 1], np.asarray(la)[..., 1])


def test_a_file_and_weights_of_different_architectures_are_refused(channel_weights):
    from slimcodec.models.hyperprior import SlimCAEHyperprior

    vectors = Path(__file__).resolve().parents[1] / "formats" / "vectors"
    hyper_weights = load_weights(vectors / "v2.0" / "tiny-hyperprior-weights.pt")
    assert isinstance(hyper_weights.model, SlimCAEHyperprior)
    image = gradient_image(40, 24)
    hyper_file = codec.encode(image, 8, weights=hyper_weights)
    forged = bytearray(hyper_file[:-4])
    forged[20:28] = channel_weights.weights_id
    forged = bytes(forged) + struct.pack("<I", zlib.crc32(bytes(forged)))
    with pytest.raises(SlimFormatError, match="format 2.x does not go with slimcae-channel weights"):
        codec.decode(forged, weights=channel_weights)
    with pytest.raises(SlimFormatError, match="made with other weights"):
        codec.decode(codec.encode(image, 8, weights=channel_weights), weights=hyper_weights)


def assert_refused_before_the_slices(short: bytes, what: str, weights, monkeypatch) -> None:
    """``short`` is refused as too short for ``what`` having decoded z and at most the slices
    before the one refused (the tiny model has two), never the whole of y."""
    from slimcodec.entropy.rangecoder import Decoder

    calls = []
    decode = Decoder.decode
    monkeypatch.setattr(Decoder, "decode", lambda self, *a: calls.append(a) or decode(self, *a))
    with pytest.raises(SlimFormatError, match=f"payload too short for its {what}"):
        codec.decode(short, weights=weights)
    assert 1 <= len(calls) < 1 + 2


def test_a_3_0_payload_too_short_for_its_slices_is_refused_before_they_are_decoded(channel_weights, monkeypatch):
    data = encode_3_0(noise_image(64, 64, seed=5), 8, channel_weights, scale=8.0)
    slim, _, _ = codec.decode_latents(data, weights=channel_weights)
    body = bytearray(data[:-4])
    words = len(slim.payload) // 4
    short = None
    for keep in range(1, words):  # the shortest payload that still holds z's symbols
        cut = body[: len(body) - 4 * (words - keep)]
        struct.pack_into("<I", cut, 44, 4 * keep)  # payload_size
        candidate = bytes(cut) + struct.pack("<I", zlib.crc32(bytes(cut)))
        try:
            codec.decode(candidate, weights=channel_weights)
        except SlimFormatError as exc:
            if "slices' scales" in str(exc):
                short = candidate
                break
    assert_refused_before_the_slices(short, "slices' scales", channel_weights, monkeypatch)


def test_a_tile_stream_too_short_for_its_slices_is_refused_before_they_are_decoded(channel_weights, monkeypatch):
    data = codec.encode(noise_image(64, 64, seed=5), 8, weights=channel_weights, scale=8.0)
    z_words, tile_words = streams_of(data)
    short = None
    for keep in range(0, tile_words.size):  # the longest cut the budget refuses
        candidate = with_streams(data, [z_words, tile_words[:keep]])
        try:
            codec.decode(candidate, weights=channel_weights)
        except SlimFormatError as exc:
            if "tile's scales" in str(exc):
                short = candidate
    assert_refused_before_the_slices(short, "tile's scales", channel_weights, monkeypatch)


@pytest.mark.parametrize("change, reason", [
    (lambda words: np.concatenate([words, [0]]), "tile table does not match its size"),
    (lambda words: words[:-1], "tile table does not match its size"),
    (lambda words: np.concatenate([[words[0] + 1], words[1:]]), "tile table does not match its size"),
    (lambda words: words[:1], "payload too short for its tile table"),
])
def test_a_payload_whose_tile_table_does_not_match_it_is_refused(channel_weights, change, reason):
    from slimcodec.formats.slimfile import SlimFile, read_slim, write_slim

    slim = read_slim(codec.encode(noise_image(1100, 70, seed=2), 8, weights=channel_weights))
    words = np.frombuffer(slim.payload, "<u4")
    bad = write_slim(SlimFile(slim.header, slim.chunks, np.asarray(change(words), "<u4").tobytes()))
    with pytest.raises(SlimFormatError, match=reason):
        codec.decode(bad, weights=channel_weights)


def test_swapped_tile_streams_are_refused_or_decode_differently(channel_weights):
    data = codec.encode(noise_image(1100, 70, seed=2), 8, weights=channel_weights, scale=4.0)
    z_words, first, second = streams_of(data)
    try:
        swapped = codec.decode_latents(with_streams(data, [z_words, second, first]), weights=channel_weights)[1]
    except SlimFormatError:
        return
    assert not np.array_equal(swapped.y, codec.decode_latents(data, weights=channel_weights)[1].y)


def test_a_multi_tile_image_keeps_side_information_one_tile_at_a_time(channel_weights, monkeypatch):
    """Format 3.1: each tile's slices are coded from that tile's arrays (64×64 y positions), so
    neither coder allocates side information for the whole image."""
    image = noise_image(1100, 1030, seed=7)  # 2×2 tiles
    shapes = []
    real = channel_codec._Slices.__init__
    monkeypatch.setattr(channel_codec._Slices, "__init__",
                        lambda self, *a, **k: shapes.append(a[-1].shape) or real(self, *a, **k))
    data = codec.encode(image, 8, weights=channel_weights)
    assert codec.decode(data, weights=channel_weights).size == (1100, 1030)
    assert len(shapes) == 8 and all(shape[1] <= 64 and shape[2] <= 64 for shape in shapes)
    assert sorted({shape[1:] for shape in shapes}) == [(4, 8), (4, 64), (64, 8), (64, 64)]  # y: 68 × 72


def test_tiles_decoded_on_two_threads_give_the_bytes_of_one(channel_weights):
    image = noise_image(1100, 1030, seed=8)
    data = codec.encode(image, 8, weights=channel_weights, scale=2.0)
    decoded = {}
    try:
        for threads in (1, 2):
            runtime.set_threads(threads)
            assert codec.encode(image, 8, weights=channel_weights, scale=2.0) == data
            decoded[threads] = np.asarray(codec.decode(data, weights=channel_weights))
    finally:
        runtime.set_threads(None)
    assert np.array_equal(decoded[1], decoded[2])


def test_tiling_costs_little_rate_where_contexts_meet_a_tile_border(channel_weights):
    """The contexts see zeros beyond a tile (as beyond the image): the rate moves a little, and
    only in images of more than one tile."""
    image = noise_image(1100, 200, seed=9)
    tiled = len(codec.encode(image, 8, weights=channel_weights, scale=4.0))
    whole = len(encode_3_0(image, 8, channel_weights, scale=4.0))
    assert tiled != whole and abs(tiled - whole) < 0.05 * whole
    small = noise_image(300, 200, seed=9)  # one tile: the same y stream, plus the table and z's own end
    assert 0 < len(codec.encode(small, 8, weights=channel_weights, scale=4.0)) - len(
        encode_3_0(small, 8, channel_weights, scale=4.0)) <= 16


def test_corrupt_payloads_with_a_valid_crc_are_refused_or_decode_without_crashing(channel_weights):
    data = codec.encode(noise_image(64, 64, seed=3), 8, weights=channel_weights)
    rng = np.random.default_rng(0)
    for _ in range(100):
        body = bytearray(data[:-4])
        i = int(rng.integers(48, len(body)))
        body[i] ^= 1 << int(rng.integers(8))
        mutant = bytes(body) + struct.pack("<I", zlib.crc32(bytes(body)))
        try:
            codec.decode(mutant, weights=channel_weights)
        except SlimFormatError:
            pass


def test_rate_control_and_eval_work_on_a_channel_file(channel_weights):
    import slimcodec
    from slimcodec.tools.evaluate import measure_slim

    image = noise_image(96, 64, seed=4)
    largest = len(codec.encode(image, 8, weights=channel_weights, scale=15.9))
    target_bpp = 0.5 * 8 * largest / (96 * 64)
    choice = slimcodec.choose_setting(image, target_bpp=target_bpp, weights=channel_weights)
    assert choice.bpp <= target_bpp and codec.decode(choice.data, weights=channel_weights).size == (96, 64)
    result = measure_slim(channel_weights, prepare(noise_image(64, 64, seed=5)), 8)
    assert result["num_bytes"] > 0 and 0 < result["est_bpp"] <= result["bpp"]


def test_effort_refines_what_the_channel_model_codes_y_and_z(channel_weights):
    from slimcodec import effort

    image = noise_image(64, 64, seed=6)
    rgb = prepare(image).rgb
    y = codec.analyze(channel_weights, rgb, 8)
    refined, z = effort.refine(channel_weights, rgb, y, 8, 1.0, 5)
    assert refined.shape == y.shape and not np.array_equal(refined, y)
    start_z = channel_weights.model.hyper_analysis(torch.from_numpy(y)[None], 8)[0].detach().numpy()
    assert z.shape == start_z.shape and not np.array_equal(z, start_z)

    def objective(latents, hyper=None):
        lam = effort._lambda(channel_weights, 8) * 255**2
        x_hat, bits = effort._exact_rd(channel_weights.model, torch.from_numpy(latents)[None], 8, 1.0,
                                       None if hyper is None else torch.from_numpy(hyper)[None])
        x = torch.from_numpy(rgb.astype(np.float32) / 255).permute(2, 0, 1)[None]
        return float(lam * torch.mean((x_hat - x) ** 2) + bits.sum() / (64 * 64))

    assert objective(refined, z) < objective(y)
    data = codec.encode(image, 8, weights=channel_weights, effort=5)
    plain = codec.encode(image, 8, weights=channel_weights)
    assert codec.decode(data, weights=channel_weights).size == (64, 64)
    # the file carries the refined z: its size is the refined objective's, not h_a(refined y)'s
    assert data != plain


def test_slim_encode_decode_and_info_with_channel_weights(channel_path, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from slimcodec.cli.main import cli
    from slimcodec.cli.parallel import WORKERS_ENV

    monkeypatch.chdir(tmp_path)
    gradient_image(40, 24).save("a.png")
    runner = CliRunner()

    def slim(*args):
        result = runner.invoke(cli, [str(a) for a in args], env={WORKERS_ENV: "1"}, prog_name="slim")
        assert result.exit_code == 0, result.output
        return result

    slim("encode", "a.png", "-o", "a.slim", "--weights", channel_path, "-w", 8)
    slim("decode", "a.slim", "-o", "b.png", "--weights", channel_path)
    with Image.open("b.png") as im:
        assert (im.size, im.mode) == ((40, 24), "RGB")
    out = slim("info", "a.slim").stdout
    assert "format version  3.1" in out and "architecture    slimcae-channel" in out
    assert "latent shape    8 x 4 x 4" in out and "tiles           1 (coded apart, 1024 x 1024 pixels each)" in out



def _only_z(channel_weights) -> bytes:
    """Issue 30's hyperprior bomb in format 3.0: a file whose payload holds z and nothing of y."""
    data = encode_3_0(noise_image(256, 256, seed=5), 8, channel_weights, scale=8.0)
    slim, latents, _ = codec.decode_latents(data, weights=channel_weights)
    assert latents.z.shape[1:] == (4, 4)
    body, words = bytearray(data[:-4]), len(slim.payload) // 4
    for keep in range(1, words):  # the shortest payload that holds z's symbols
        cut = body[: len(body) - 4 * (words - keep)]
        struct.pack_into("<I", cut, 44, 4 * keep)
        candidate = bytes(cut) + struct.pack("<I", zlib.crc32(bytes(cut)))
        try:
            codec.decode(candidate, weights=channel_weights)
        except SlimFormatError as exc:
            if "image size" not in str(exc):
                return candidate
    raise AssertionError("no payload holds z alone")


def test_a_3_0_payload_holding_only_z_is_refused_after_one_tile_of_the_hyper_synthesis(channel_weights, monkeypatch):
    """Slice 0's scales are checked tile by tile as the hyper-synthesis runs, before the contexts
    or the rest of the image's hyper-synthesis."""
    from slimcodec.entropy.gaussian import FixedPointHyperSynthesis

    only_z = _only_z(channel_weights)
    ran = []
    real = FixedPointHyperSynthesis.run
    monkeypatch.setattr(FixedPointHyperSynthesis, "run",
                        lambda self, z, conv=None, **kw: ran.append(z.shape[1:]) or real(self, z, conv, **kw))
    monkeypatch.setattr(channel_codec, "HYPER_TILE", 1)  # 16 tiles of one z position
    with pytest.raises(SlimFormatError, match="payload too short for its slices' scales"):
        codec.decode(only_z, weights=channel_weights)
    assert len(ran) == 1 and ran[0][0] * ran[0][1] < 16  # one tile (with its margin), not all of z


def test_a_3_1_payload_holding_only_z_is_refused_after_one_tile_of_the_hyper_synthesis(channel_weights, monkeypatch):
    """Each tile's stream is checked against its slice 0 right after that tile's hyper-synthesis;
    on two threads no tile is started after the first refusal."""
    from slimcodec.entropy.gaussian import FixedPointHyperSynthesis

    monkeypatch.setattr(channel_codec, "HYPER_TILE", 2)  # 16 tiles of 2×2 z positions
    data = codec.encode(noise_image(512, 512, seed=5), 8, weights=channel_weights, scale=8.0)
    z_words, *tiles = streams_of(data)
    assert len(tiles) == 16
    only_z = with_streams(data, [z_words] + [np.empty(0, "<u4")] * 16)
    ran = []
    real = FixedPointHyperSynthesis.run
    monkeypatch.setattr(FixedPointHyperSynthesis, "run",
                        lambda self, z, conv=None, **kw: ran.append(z.shape[1:]) or real(self, z, conv, **kw))
    for threads in (1, 2):
        ran.clear()
        runtime.set_threads(threads)
        try:
            with pytest.raises(SlimFormatError, match="payload too short for its tile's scales"):
                codec.decode(only_z, weights=channel_weights)
        finally:
            runtime.set_threads(None)
        # one tile per thread (with its margin), not all of z's 16
        assert 1 <= len(ran) <= threads and all(h * w < 64 for h, w in ran)


def test_a_large_3_0_image_is_checked_for_slice_zero_before_its_side_information_is_allocated(channel_weights,
                                                                                             monkeypatch):
    """The 10000x10000 format-3 bomb filled 1.04 GiB of side information tile by tile before the
    tiled budget refused it; above PRECHECK_ELEMENTS a first pass checks slice 0 keeping nothing."""
    only_z = _only_z(channel_weights)
    monkeypatch.setattr(channel_codec, "PRECHECK_ELEMENTS", 0)  # this small file counts as large
    monkeypatch.setattr(channel_codec._Slices, "__init__", lambda *a, **k: pytest.fail("allocated the side info"))
    with pytest.raises(SlimFormatError, match="payload too short for its slices' scales"):
        codec.decode(only_z, weights=channel_weights)


def test_the_slice_zero_check_passes_every_valid_3_0_file(channel_weights, monkeypatch):
    image = noise_image(96, 80, seed=4)
    data = encode_3_0(image, 8, channel_weights)
    expected = codec.decode_latents(data, weights=channel_weights)[1]
    monkeypatch.setattr(channel_codec, "PRECHECK_ELEMENTS", 0)
    got = codec.decode_latents(data, weights=channel_weights)[1]
    assert np.array_equal(got.y, expected.y) and np.array_equal(got.y_hat, expected.y_hat)
