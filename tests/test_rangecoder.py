"""Range coding of integer symbols: exactness, escapes, golden words, corrupt input."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from slimcodec.entropy import PRECISION_BITS, EntropyTable
from slimcodec.entropy.rangecoder import MAX_ESCAPE_BITS, decode_symbols, encode_symbols
from slimcodec.errors import SlimFormatError


def small_table() -> EntropyTable:
    """Two channels: symbols -2..2 (peaked) and 0..1, each with an escape entry."""
    total = 1 << PRECISION_BITS
    row0 = [4000, 16000, 24000, 16000, 0]
    row0[4] = total - sum(row0[:4]) - 1000
    row0.append(1000)  # escape
    counts = np.zeros((2, 6), dtype=np.int32)
    counts[0] = row0
    counts[1, :3] = [40000, total - 40000 - 536, 536]
    return EntropyTable(
        medians=np.array([0.25, -0.5], dtype=np.float32),
        offsets=np.array([-2, 0], dtype=np.int32),
        counts=counts,
        lengths=np.array([6, 3], dtype=np.int32),
    )


def test_round_trip_is_exact_inside_the_table():
    rng = np.random.default_rng(1)
    q = np.stack([rng.integers(-2, 3, (5, 7)), rng.integers(0, 2, (5, 7))]).astype(np.int32)
    assert (decode_symbols(encode_symbols(q, small_table()), small_table(), 5, 7) == q).all()


@pytest.mark.parametrize("value", [3, -3, 2, 1000, -70000, 2**30, -(2**30), 2**31 - 4, -(2**31) + 1])
def test_values_outside_the_table_are_escaped_not_clamped(value):
    q = np.zeros((2, 2, 3), dtype=np.int32)
    q[0, 1, 2] = value
    q[1, 0, 0] = -value
    assert (decode_symbols(encode_symbols(q, small_table()), small_table(), 2, 3) == q).all()


def test_encode_rejects_values_beyond_the_escape_range():
    q = np.zeros((2, 1, 1), dtype=np.int64)
    q[0, 0, 0] = 2**33
    with pytest.raises(ValueError, match="too large"):
        encode_symbols(q, small_table())
    assert MAX_ESCAPE_BITS == 30


def test_words_are_little_endian_uint32():
    words = encode_symbols(np.zeros((2, 3, 3), dtype=np.int32), small_table())
    assert words.dtype == np.dtype("<u4")


def test_golden_words_pin_the_entropy_coding():
    """Changing these words changes the bitstream: bump the format version."""
    q = np.arange(-3, 3, dtype=np.int32).reshape(1, 2, 3).repeat(2, axis=0)
    q[1] = np.abs(q[1])
    words = encode_symbols(q, small_table())
    assert hashlib.sha256(words.tobytes()).hexdigest()[:16] == GOLDEN_WORDS_SHA256_16
    assert (decode_symbols(words, small_table(), 2, 3) == q).all()


GOLDEN_WORDS_SHA256_16 = "51a5b4a525a87934"


def test_decode_rejects_truncated_words():
    rng = np.random.default_rng(2)
    q = np.stack([rng.integers(-4, 5, (16, 16)), rng.integers(-1, 3, (16, 16))]).astype(np.int32)
    words = encode_symbols(q, small_table())
    with pytest.raises(SlimFormatError):
        decode_symbols(words[: len(words) // 2], small_table(), 16, 16)


def test_decode_rejects_leftover_words():
    q = np.zeros((2, 4, 4), dtype=np.int32)
    words = encode_symbols(q, small_table())
    extra = np.concatenate([words, np.array([0xDEADBEEF, 0x12345678], dtype="<u4")])
    with pytest.raises(SlimFormatError):
        decode_symbols(extra, small_table(), 4, 4)


def test_decode_of_random_words_raises_only_format_errors():
    rng = np.random.default_rng(3)
    for _ in range(300):
        words = rng.integers(0, 2**32, rng.integers(0, 12), dtype=np.uint64).astype("<u4")
        try:
            q = decode_symbols(words, small_table(), 3, 3)
        except SlimFormatError:
            continue
        assert q.shape == (2, 3, 3)


@pytest.mark.parametrize("change", ["extra word", "extra zero word", "dropped last word"])
def test_only_the_exact_coding_of_the_symbols_is_accepted(change):
    """constriction's decoder reads the same symbols from a payload with a word more (of any
    value) or with a trailing zero word dropped; the format has one valid payload per file."""
    from slimcodec.entropy.rangecoder import Decoder, Encoder

    rows = EntropyTable(np.zeros(1, np.float32), np.array([-1], np.int32),
                        np.array([[16384, 32768, 16383, 1]], np.int32), np.array([4], np.int32))
    q = np.array([[[-1, 0, 1, 0, 0, 1, -1, 0]]], np.int32)
    encoder = Encoder()
    encoder.encode(q, np.zeros_like(q), rows)
    words = encoder.words()
    mutated = {"extra word": np.append(words, np.uint32(0xDEADBEEF)),
               "extra zero word": np.append(words, np.uint32(0)),
               "dropped last word": words[:-1]}[change].astype("<u4")
    decoder = Decoder(words)
    assert np.array_equal(decoder.decode(np.zeros_like(q), rows), q)
    decoder.finish()
    with pytest.raises(SlimFormatError, match="corrupt payload"):
        decoder = Decoder(mutated)
        decoder.decode(np.zeros_like(q), rows)
        decoder.finish()


def test_rows_coded_in_pieces_give_the_words_of_one_piece(monkeypatch):
    """Issue 30: the coder walks each row in pieces of GROUP_PIECE positions (memory); a piece
    boundary anywhere, escapes included, changes no word and no decoded symbol."""
    from pathlib import Path

    from slimcodec.entropy import rangecoder
    from slimcodec.weights import load_weights

    weights = load_weights(Path(__file__).resolve().parents[1] / "formats" / "vectors" / "v2.0" /
                           "tiny-hyperprior-weights.pt")
    rng = np.random.default_rng(0)
    indexes = rng.integers(0, weights.gaussian.levels, 5000).astype(np.int32)
    symbols = rng.integers(-40, 40, 5000).astype(np.int32)
    symbols[::97] = 100_000  # escapes
    encoder = rangecoder.Encoder()
    encoder.encode(symbols, indexes, weights.gaussian)
    whole = encoder.words()
    for piece in (1, 7, 4096):
        monkeypatch.setattr(rangecoder, "GROUP_PIECE", piece)
        encoder = rangecoder.Encoder()
        encoder.encode(symbols, indexes, weights.gaussian)
        assert np.array_equal(encoder.words(), whole)
        decoder = rangecoder.Decoder(whole)
        assert np.array_equal(decoder.decode(indexes, weights.gaussian), symbols)
        decoder.finish()
