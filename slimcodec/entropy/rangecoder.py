"""Range coding of integer symbols with constriction (the only module importing it).

Symbols are coded against *rows*: integer distributions (``offsets[r]``, ``counts[r]``,
``lengths[r]``, the last used entry of a row is the escape), and an index array says
which row each symbol uses — for the factorized prior a symbol's channel, for the
hyperprior the Gaussian table chosen from the scale. :class:`Encoder` and
:class:`Decoder` live across calls, so a decoder can read z, let the hyper-synthesis
choose y's rows, then read y from the same stream.

Layout of one ``encode`` call's words (also in formats/SPEC.md, "Payload"): the
symbols grouped by row, rows in increasing order, each group in the symbols' order
(so with one row per channel: channel by channel in raster order), each as its row
entry or the row's escape; then, for each escaped symbol in the same order, its side
of the row, the bit length of its distance from the row, and those bits. Escapes make
every integer codable exactly: nothing is ever clamped.
"""

from __future__ import annotations

from typing import Protocol

import constriction
import numpy as np

from slimcodec.errors import SlimFormatError

_queue = constriction.stream.queue
_model = constriction.stream.model

MAX_ESCAPE_BITS = 30  # an escaped magnitude m satisfies m + 1 < 2**31
_PIECE_BITS = 16
_SIDE = _model.Uniform(2)
_NUM_BITS = _model.Uniform(32)


class Rows(Protocol):
    """Integer distributions indexed by row (``EntropyTable``, ``GaussianTables``)."""

    offsets: np.ndarray
    counts: np.ndarray
    lengths: np.ndarray


def _pieces(num_bits: int) -> list[int]:
    """Bit widths of the pieces an ``num_bits``-bit value is sent in, most significant first."""
    head = num_bits % _PIECE_BITS
    return ([head] if head else []) + [_PIECE_BITS] * (num_bits // _PIECE_BITS)


class _Models:
    """constriction models of a table's rows, built on first use."""

    def __init__(self, rows: Rows):
        self.rows = rows
        self._models: dict[int, object] = {}

    def __getitem__(self, r: int):
        if r not in self._models:
            n = int(self.rows.lengths[r])
            self._models[r] = _model.Categorical(self.rows.counts[r, :n].astype(np.float64), perfect=False)
        return self._models[r]


GROUP_PIECE = 1 << 22  # positions per piece of a row: bounds the coder's temporaries (~100 MB)


def _row_groups(indexes: np.ndarray):
    """Yield ``(row, positions)`` in coding order: rows ascending, each row's positions ascending,
    in pieces of at most :data:`GROUP_PIECE` positions (consecutive pieces of a row code as one).

    ``positions`` is a slice when the indexes are already in order (a factorized latent's
    channels), else an index array. No full-size sort order is made (a 100 MP image has 19 to
    76 million symbols), only one piece's positions at a time.
    """
    if indexes.size == 0:
        return
    if not (indexes[1:] < indexes[:-1]).any():
        bounds = np.concatenate(([0], np.flatnonzero(indexes[1:] != indexes[:-1]) + 1, [indexes.size]))
        for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
            for start in range(a, b, GROUP_PIECE):
                yield int(indexes[a]), slice(start, min(start + GROUP_PIECE, b))
        return
    for r in np.flatnonzero(np.bincount(indexes)).tolist():
        for start in range(0, indexes.size, GROUP_PIECE):
            hits = np.flatnonzero(indexes[start : start + GROUP_PIECE] == r)
            if hits.size:
                yield r, hits + start


def _flat_indexes(indexes: np.ndarray, rows: Rows) -> np.ndarray:
    """The row indexes as one flat array of their own integer type, checked against ``rows``."""
    idx = np.asarray(indexes).reshape(-1)
    if idx.dtype.kind not in "iu":
        idx = idx.astype(np.int64)
    if idx.size and (idx.min() < 0 or idx.max() >= len(rows.lengths)):
        raise ValueError("row index out of range")
    return idx


class Encoder:
    """A range encoder whose ``encode`` calls append to one stream."""

    def __init__(self) -> None:
        self._encoder = _queue.RangeEncoder()

    def encode(self, symbols: np.ndarray, indexes: np.ndarray, rows: Rows) -> None:
        """Code integer ``symbols``, each with the row ``indexes`` names (same shape).

        The symbols go row by row (rows ascending, positions in order within a row), then
        the escapes in that same order; memory beyond the inputs is one row's worth.
        """
        q = np.asarray(symbols).reshape(-1)
        if q.size != np.size(indexes):
            raise ValueError(f"{q.size} symbols but {np.size(indexes)} indexes")
        idx = _flat_indexes(indexes, rows)
        models = _Models(rows)
        escaped = []
        for r, positions in _row_groups(idx):
            values = q[positions].astype(np.int64)
            entry = values - int(rows.offsets[r])
            escape = int(rows.lengths[r]) - 1
            outside = (entry < 0) | (entry >= escape)
            if outside.any():
                escaped.append((r, values[outside]))
                entry[outside] = escape
            self._encoder.encode(entry.astype(np.int32), models[r])
        for r, values in escaped:
            offset, length = int(rows.offsets[r]), int(rows.lengths[r])
            for value in values.tolist():
                self._encode_escape(value, offset, length)

    def _encode_escape(self, value: int, offset: int, length: int) -> None:
        below = value < offset
        m = offset - 1 - value if below else value - (offset + length - 1)
        num_bits = (m + 1).bit_length() - 1
        if num_bits > MAX_ESCAPE_BITS:
            raise ValueError(f"latent value {value} is too large to code")
        self._encoder.encode(int(below), _SIDE)
        self._encoder.encode(num_bits, _NUM_BITS)
        rest, shift = m + 1 - (1 << num_bits), num_bits
        for bits in _pieces(num_bits):
            shift -= bits
            self._encoder.encode((rest >> shift) & ((1 << bits) - 1), _model.Uniform(1 << bits))

    def words(self) -> np.ndarray:
        """The compressed words so far, as little-endian ``uint32`` (``"<u4"``)."""
        return self._encoder.get_compressed().astype("<u4")


class Decoder:
    """A range decoder over a payload's words; ``decode`` calls read in encoding order.

    Errors of the underlying coder (corrupt data) become :class:`SlimFormatError`.
    """

    def __init__(self, words: np.ndarray):
        self._words = np.asarray(words, dtype="<u4")
        self._calls: list[tuple[np.ndarray, np.ndarray, Rows]] = []
        try:
            self._decoder = _queue.RangeDecoder(self._words.astype(np.uint32))
        except Exception as exc:
            raise SlimFormatError(f"corrupt payload ({exc})") from exc

    def decode(self, indexes: np.ndarray, rows: Rows) -> np.ndarray:
        """Integer symbols (int32, shaped like ``indexes``), one per row index."""
        try:
            q = self._decode(indexes, rows)
        except SlimFormatError:
            raise
        except Exception as exc:  # constriction reports invalid data with various types
            raise SlimFormatError(f"corrupt payload ({exc})") from exc
        self._calls.append((q, np.asarray(indexes), rows))
        return q

    def _decode(self, indexes: np.ndarray, rows: Rows) -> np.ndarray:
        shape = np.shape(indexes)
        idx = _flat_indexes(indexes, rows)
        models = _Models(rows)
        out = np.empty(idx.size, np.int32)
        escaped = []  # (row, positions of its escapes), in coding order
        for r, positions in _row_groups(idx):
            n = positions.stop - positions.start if isinstance(positions, slice) else positions.size
            entry = np.asarray(self._decoder.decode(models[r], n))
            escape = int(rows.lengths[r]) - 1
            out[positions] = entry + int(rows.offsets[r])
            if (hits := np.flatnonzero(entry == escape)).size:
                where = (np.arange(positions.start, positions.stop)[hits] if isinstance(positions, slice)
                         else positions[hits])
                escaped.append((r, where))
        for r, where in escaped:
            offset, length = int(rows.offsets[r]), int(rows.lengths[r])
            for i in where.tolist():
                out[i] = self._decode_escape(offset, length)
        return out.reshape(shape)

    def _decode_escape(self, offset: int, length: int) -> int:
        below = int(self._decoder.decode(_SIDE))
        num_bits = int(self._decoder.decode(_NUM_BITS))
        if num_bits > MAX_ESCAPE_BITS:
            raise SlimFormatError("corrupt payload (escape value out of range)")
        m = 1
        for bits in _pieces(num_bits):
            m = (m << bits) | int(self._decoder.decode(_model.Uniform(1 << bits)))
        m -= 1
        value = offset - 1 - m if below else offset + length - 1 + m
        if not -(2**31) <= value < 2**31:
            raise SlimFormatError("corrupt payload (escape value out of range)")
        return value

    def finish(self) -> None:
        """Raise :class:`SlimFormatError` unless the words are exactly the coding of what was read.

        The coder may leave a last word's worth of slack (an extra word of any value, or a
        dropped trailing zero word, decode the same symbols), so the symbols are coded again
        and the words compared: each payload has exactly one valid form.
        """
        try:
            exhausted = self._decoder.maybe_exhausted()
        except Exception as exc:
            raise SlimFormatError(f"corrupt payload ({exc})") from exc
        if not exhausted:
            raise SlimFormatError("corrupt payload (data left after the last symbol)")
        encoder = Encoder()
        for q, indexes, rows in self._calls:
            encoder.encode(q, indexes, rows)
        if not np.array_equal(encoder.words(), self._words):
            raise SlimFormatError("corrupt payload (not the exact coding of its symbols)")


def channel_indexes(shape: tuple[int, ...]) -> np.ndarray:
    """Row indexes of a factorized latent ``[C, H, W]``: each symbol's channel."""
    c = shape[0]
    return np.broadcast_to(np.arange(c, dtype=np.int32).reshape(c, *([1] * (len(shape) - 1))), shape)


def encode_symbols(q: np.ndarray, table) -> np.ndarray:
    """Range-code a factorized latent's symbols ``q`` (``[C, H, W]``) with its ``EntropyTable``.

    Returns:
        np.ndarray: the compressed words as little-endian ``uint32`` (``"<u4"``).
    """
    if q.ndim != 3 or q.shape[0] != table.channels:
        raise ValueError(f"symbols of shape {q.shape} do not match a {table.channels}-channel table")
    encoder = Encoder()
    encoder.encode(q, channel_indexes(q.shape), table)
    return encoder.words()


def decode_symbols(words: np.ndarray, table, height: int, width: int) -> np.ndarray:
    """Inverse of :func:`encode_symbols`: integer symbols shaped ``[C, height, width]``.

    Raises:
        SlimFormatError: the words do not decode to exactly this many symbols.
    """
    decoder = Decoder(words)
    q = decoder.decode(channel_indexes((table.channels, height, width)), table)
    decoder.finish()
    return q
