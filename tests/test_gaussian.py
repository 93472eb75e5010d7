"""The hyperprior's entropy model: Gaussian tables, integer-exact table choice, indexed coding."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from slimcodec.entropy import PRECISION_BITS, SCALE_ONE
from slimcodec.entropy.gaussian import (
    ACT_BITS,
    WEIGHT_BITS,
    FixedPointLayer,
    GaussianTables,
    conv_exact_numpy,
)
from slimcodec.entropy.rangecoder import Decoder, Encoder, channel_indexes
from slimcodec.errors import SlimFormatError
from slimcodec.models.hyperprior import SlimCAEHyperprior, fixed_point_hyper_synthesis


@pytest.fixture(scope="module")
def tables() -> GaussianTables:
    return GaussianTables.build()


@pytest.fixture(scope="module")
def model() -> SlimCAEHyperprior:
    torch.manual_seed(0)
    return SlimCAEHyperprior((16, 8)).eval()


def z_symbols(width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(-4, 5, (width, 6, 5))


def conv_exact_torch(a: np.ndarray, layer: FixedPointLayer) -> np.ndarray:
    """A second arithmetic path: torch's float64 convolutions (transposed ones as such)."""
    x = torch.from_numpy(a)[None]
    w = torch.from_numpy(layer.weight)
    b = torch.from_numpy(layer.bias)
    if layer.transposed:  # back from correlation form to ConvTranspose2d's [in, out, k, k]
        out = F.conv_transpose2d(x, w.flip(2, 3).transpose(0, 1), b, layer.stride, layer.padding, layer.output_padding)
    else:
        out = F.conv2d(x, w, b, layer.stride, layer.padding)
    return out[0].numpy()


def test_every_table_is_a_valid_distribution_summing_to_the_precision(tables):
    tables.validate()
    assert (tables.counts.sum(1) == 1 << PRECISION_BITS).all()
    assert tables.levels == 64 and (np.diff(tables.scales) > 0).all()


def test_wider_gaussians_get_wider_tables_centred_on_zero(tables):
    assert (np.diff(tables.lengths) >= 0).all()
    assert (tables.offsets == -(tables.lengths - 2) // 2).all()  # support [-K, K] plus the escape
    mode = tables.counts[5, -tables.offsets[5]]
    assert mode == tables.counts[5, : tables.lengths[5] - 1].max()


def test_index_is_the_first_table_scale_at_or_above_sigma(tables):
    units = 1 << (WEIGHT_BITS + ACT_BITS)
    sigma = np.array([0.0, 0.11, 0.2, 1.0, 5.0, 255.9, 300.0, 1e9])
    index = tables.indexes(np.round(sigma * units))
    for s, i in zip(sigma, index):
        if s <= tables.scales[0]:
            assert i == 0
        elif s > tables.scales[-1]:
            assert i == tables.levels - 1
        else:
            assert tables.scales[i - 1] < s <= tables.scales[i] * (1 + 1e-9)


def test_a_larger_latent_scale_picks_the_table_of_the_scaled_sigma(tables):
    units = 1 << (WEIGHT_BITS + ACT_BITS)
    acc = np.round(np.array([0.5, 2.0, 10.0]) * units)
    assert (tables.indexes(acc, 2 * SCALE_ONE) == tables.indexes(acc * 2)).all()
    assert (tables.indexes(acc, SCALE_ONE // 2) <= tables.indexes(acc)).all()


@pytest.mark.parametrize("width", [16, 8])
def test_scale_accumulators_are_identical_through_numpy_and_torch_arithmetic(model, width):
    net = fixed_point_hyper_synthesis(model, width)
    q = z_symbols(width)
    trunk_np, acc_np = net.run(q)
    trunk_t, acc_t = net.run(q, conv=conv_exact_torch)
    assert np.array_equal(trunk_np, trunk_t) and np.array_equal(acc_np, acc_t)
    assert np.array_equal(acc_np, np.round(acc_np))  # integers, exactly


def test_scale_accumulators_do_not_depend_on_thread_count_or_chunking(model):
    net = fixed_point_hyper_synthesis(model, 16)
    q = z_symbols(16, seed=1)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = net.run(q, conv=conv_exact_torch)[1]
        torch.set_num_threads(2)
        two = net.run(q, conv=conv_exact_torch)[1]
    finally:
        torch.set_num_threads(threads)
    chunked = net.run(q, conv=lambda a, layer: conv_exact_numpy(a, layer, block_bytes=4096))[1]
    assert np.array_equal(one, two) and np.array_equal(one, chunked)


def test_fixed_point_scale_follows_the_float_network(model):
    q = z_symbols(16, seed=2)
    acc = fixed_point_hyper_synthesis(model, 16).run(q)[1]
    z_hat = torch.from_numpy(q).double() + model.z_medians(16).double()[0]
    with torch.no_grad():
        _, scale = model.double().hyper_synthesis(z_hat[None], 16)
    model.float()
    err = np.abs(acc / (1 << (WEIGHT_BITS + ACT_BITS)) - scale[0].numpy())
    assert err.max() < 1e-3 * max(1.0, float(scale.abs().max()))


def test_z_then_y_in_one_stream_round_trip_with_escapes(model, tables):
    net = fixed_point_hyper_synthesis(model, 8)
    z = z_symbols(8, seed=3)
    y_index = tables.indexes(net.run(z)[1])
    rng = np.random.default_rng(4)
    y = rng.integers(-3, 4, y_index.shape)
    y[0, 0, :3] = [5000, -70000, 2**30]  # far outside every table: escapes
    z_rows = model.entropy_bottleneck["8"]
    from slimcodec.entropy import EntropyTable

    z_table = EntropyTable.from_bottleneck(z_rows)
    encoder = Encoder()
    encoder.encode(z, channel_indexes(z.shape), z_table)
    encoder.encode(y, y_index, tables)
    decoder = Decoder(encoder.words())
    z_back = decoder.decode(channel_indexes(z.shape), z_table)
    y_back = decoder.decode(tables.indexes(net.run(z_back)[1]), tables)
    decoder.finish()
    assert np.array_equal(z_back, z) and np.array_equal(y_back, y)


def test_a_decoder_with_words_left_over_is_refused(tables):
    index = np.zeros((2, 3, 3), np.int32)
    encoder = Encoder()
    encoder.encode(np.ones((2, 3, 3), np.int32), index, tables)
    encoder.encode(np.ones((2, 3, 3), np.int32), index + 40, tables)
    decoder = Decoder(encoder.words())
    decoder.decode(index, tables)
    with pytest.raises(SlimFormatError, match="data left"):
        decoder.finish()
