"""Latent scales: the scaled entropy tables and (de)quantization (slimcodec.entropy)."""

from __future__ import annotations

import numpy as np
import pytest

from slimcodec.entropy import (
    PRECISION_BITS,
    SCALE_ONE,
    EntropyTable,
    dequantize,
    quantize,
    scale_units,
    scaled_table,
)
from slimcodec.entropy.rangecoder import decode_symbols, encode_symbols

UNITS = (256, 1000, 2048, 3000, 4095, 4097, 6000, 8192, 16384, 65535)


def laplace_table(offset: int = -6, bins: int = 13, escape: int = 40) -> EntropyTable:
    """One peaked and one flat channel, the way trained tables look."""
    x = np.arange(offset, offset + bins)
    rows = []
    for spread in (0.6, 4.0):
        p = np.exp(-np.abs(x) / spread)
        counts = np.maximum(1, np.floor(p / p.sum() * ((1 << PRECISION_BITS) - escape))).astype(np.int64)
        counts[np.argmax(counts)] += (1 << PRECISION_BITS) - escape - counts.sum()
        rows.append(np.append(counts, escape))
    return EntropyTable(np.array([0.25, -0.1], np.float32), np.array([offset, offset], np.int32),
                        np.array(rows, np.int32), np.array([bins + 1, bins + 1], np.int32))


def test_scale_one_is_the_trained_table():
    table = laplace_table()
    assert scaled_table(table, SCALE_ONE) is table


@pytest.mark.parametrize("units", UNITS)
def test_scaled_tables_are_valid_and_keep_the_escape(units):
    table = laplace_table()
    scaled = scaled_table(table, units)
    scaled.validate()
    for c in range(2):
        assert scaled.counts[c, scaled.lengths[c] - 1] == table.counts[c, table.lengths[c] - 1]


@pytest.mark.parametrize("units", UNITS)
def test_scaled_support_covers_the_scaled_table_range(units):
    table = laplace_table()
    s = units / SCALE_ONE
    scaled = scaled_table(table, units)
    low, high = table.offsets[0] - 0.5, table.offsets[0] + table.lengths[0] - 1.5  # edges in y - median
    first, last = scaled.offsets[0], scaled.offsets[0] + scaled.lengths[0] - 2
    assert (first - 0.5) / s <= low < (first + 0.5) / s
    assert (last - 0.5) / s < high <= (last + 0.5) / s


def test_scaled_mass_follows_the_trained_density():
    table = laplace_table()
    total = (1 << PRECISION_BITS) - 40
    halved = scaled_table(table, SCALE_ONE // 2)  # bins twice as wide
    centre = -halved.offsets[1]  # index of symbol 0
    expected = table.counts[1, 6] + (table.counts[1, 5] + table.counts[1, 7]) / 2  # [-1, 1) in y
    assert halved.counts[1, centre] == pytest.approx(expected, rel=0.01)
    doubled = scaled_table(table, 2 * SCALE_ONE)  # bins half as wide: mass spread evenly
    centre = -doubled.offsets[1]
    assert doubled.counts[1, centre] == pytest.approx(table.counts[1, 6] / 2, rel=0.01)
    assert doubled.counts[1].sum() == halved.counts[1].sum() == total + 40


@pytest.mark.parametrize("units", (1000, 4097, 16384))
def test_scaled_symbols_round_trip_including_escapes(units):
    table = laplace_table()
    scaled = scaled_table(table, units)
    rng = np.random.default_rng(units)
    q = rng.integers(-40, 41, size=(2, 5, 7)).astype(np.int32)
    q[0, 0, 0], q[1, 4, 6] = -100_000, 2**20  # far outside: escaped
    assert np.array_equal(decode_symbols(encode_symbols(q, scaled), scaled, 5, 7), q)


def test_quantize_scales_before_rounding_and_dequantize_undoes_it():
    table = laplace_table()
    y = np.array([[[0.25 + 1.3]], [[-0.1 - 2.2]]], np.float32)
    assert quantize(y, table).ravel().tolist() == [1, -2]
    assert quantize(y, table, 2 * SCALE_ONE).ravel().tolist() == [3, -4]  # round(2.6), round(-4.4)
    back = dequantize(quantize(y, table, 2 * SCALE_ONE), table, 2 * SCALE_ONE)
    assert np.allclose(back.ravel(), [0.25 + 1.5, -0.1 - 2.0])


@pytest.mark.parametrize("scale, units", [(1, 4096), (0.0625, 256), (0.5, 2048), (15.99, 65495)])
def test_scale_units(scale, units):
    assert scale_units(scale) == units


@pytest.mark.parametrize("scale", [0, 0.06, 16, -1, float("nan"), float("inf"), "x", None])
def test_scale_units_refuses_out_of_range(scale):
    with pytest.raises(ValueError, match="latent scale must be a number from 0.0625 to 15.9998"):
        scale_units(scale)
