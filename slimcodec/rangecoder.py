"""Range coding of integer latent symbols with constriction (the only module importing it).

Layout of the coded words (also in formats/SPEC.md, "Payload"): first every
symbol, channel by channel in raster order, each as its table index or the
escape index; then, for each escaped symbol in the same order, its side of
the table, the bit length of its distance from the table, and those bits.
Escapes make every integer codable exactly: nothing is ever clamped.
"""

from __future__ import annotations

import constriction
import numpy as np

from slimcodec.entropy import EntropyTable
from slimcodec.errors import SlimFormatError

_queue = constriction.stream.queue
_model = constriction.stream.model

MAX_ESCAPE_BITS = 30  # an escaped magnitude m satisfies m + 1 < 2**31
_PIECE_BITS = 16
_SIDE = _model.Uniform(2)
_NUM_BITS = _model.Uniform(32)


def _channel_models(table: EntropyTable) -> list:
    return [
        _model.Categorical(table.counts[c, :n].astype(np.float64), perfect=False)
        for c, n in enumerate(table.lengths)
    ]


def _pieces(num_bits: int) -> list[int]:
    """Bit widths of the pieces an ``num_bits``-bit value is sent in, most significant first."""
    head = num_bits % _PIECE_BITS
    return ([head] if head else []) + [_PIECE_BITS] * (num_bits // _PIECE_BITS)


def encode_symbols(q: np.ndarray, table: EntropyTable) -> np.ndarray:
    """Range-code integer symbols ``q`` (``[C, H, W]``) with ``table``.

    Returns:
        np.ndarray: the compressed words as little-endian ``uint32`` (``"<u4"``).
    """
    if q.ndim != 3 or q.shape[0] != table.channels:
        raise ValueError(f"symbols of shape {q.shape} do not match a {table.channels}-channel table")
    encoder = _queue.RangeEncoder()
    escapes: list[tuple[int, int]] = []  # (channel, symbol value), in coding order
    models = _channel_models(table)
    for c in range(q.shape[0]):
        index = q[c].reshape(-1).astype(np.int64) - int(table.offsets[c])
        escape = int(table.lengths[c]) - 1
        outside = (index < 0) | (index >= escape)
        if outside.any():
            escapes += [(c, int(v)) for v in q[c].reshape(-1)[outside]]
            index = np.where(outside, escape, index)
        encoder.encode(index.astype(np.int32), models[c])
    for c, value in escapes:
        below = value < int(table.offsets[c])
        m = int(table.offsets[c]) - 1 - value if below else value - (int(table.offsets[c]) + int(table.lengths[c]) - 1)
        num_bits = (m + 1).bit_length() - 1
        if num_bits > MAX_ESCAPE_BITS:
            raise ValueError(f"latent value {value} is too large to code")
        encoder.encode(int(below), _SIDE)
        encoder.encode(num_bits, _NUM_BITS)
        rest, shift = m + 1 - (1 << num_bits), num_bits
        for bits in _pieces(num_bits):
            shift -= bits
            encoder.encode((rest >> shift) & ((1 << bits) - 1), _model.Uniform(1 << bits))
    return encoder.get_compressed().astype("<u4")


def decode_symbols(words: np.ndarray, table: EntropyTable, height: int, width: int) -> np.ndarray:
    """Inverse of :func:`encode_symbols`: integer symbols shaped ``[C, height, width]``.

    Raises:
        SlimFormatError: the words do not decode to exactly this many symbols.
    """
    try:
        decoder = _queue.RangeDecoder(np.asarray(words, dtype="<u4").astype(np.uint32))
        models = _channel_models(table)
        count = height * width
        q = np.empty((table.channels, count), dtype=np.int32)
        escaped: list[tuple[int, np.ndarray]] = []  # (channel, positions): arrays, not one object each
        for c in range(table.channels):
            index = decoder.decode(models[c], count).astype(np.int64)
            escape = int(table.lengths[c]) - 1
            q[c] = index + int(table.offsets[c])
            positions = np.flatnonzero(index == escape)
            if positions.size:
                escaped.append((c, positions))
        for c, positions in escaped:
            offset, length = int(table.offsets[c]), int(table.lengths[c])
            for i in positions.tolist():
                below = int(decoder.decode(_SIDE))
                num_bits = int(decoder.decode(_NUM_BITS))
                if num_bits > MAX_ESCAPE_BITS:
                    raise SlimFormatError("corrupt payload (escape value out of range)")
                m = 1
                for bits in _pieces(num_bits):
                    m = (m << bits) | int(decoder.decode(_model.Uniform(1 << bits)))
                m -= 1
                value = offset - 1 - m if below else offset + length - 1 + m
                if not -(2**31) <= value < 2**31:
                    raise SlimFormatError("corrupt payload (escape value out of range)")
                q[c, i] = value
        exhausted = decoder.maybe_exhausted()
    except SlimFormatError:
        raise
    except Exception as exc:  # constriction reports invalid data with various types
        raise SlimFormatError(f"corrupt payload ({exc})") from exc
    if not exhausted:
        raise SlimFormatError("corrupt payload (data left after the last symbol)")
    return q.reshape(table.channels, height, width)
