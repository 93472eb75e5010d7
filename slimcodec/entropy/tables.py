"""Discrete entropy tables: from a trained density to integer probabilities.

The encoder and the decoder both read these integer tables from the weights
file, so the symbols a decoder recovers never depend on floating point.

Quantization follows CompressAI: the symbol of a latent value ``y`` in channel
``c`` is ``q = round(y - median[c])`` and it decodes to ``q + median[c]``.
Within a channel, ``q`` is coded as the table index ``q - offset[c]``; values
outside ``[offset, offset + length - 2]`` are coded as the escape index
``length - 1`` followed by the value itself (see :mod:`slimcodec.entropy.rangecoder`).

A file may carry a latent scale ``s = n / SCALE_ONE`` (``n`` an integer):
then ``q = round(s * (y - median[c]))`` and ``y = q / s + median[c]``, a finer
(``s > 1``) or coarser (``s < 1``) quantizer than the one the network was
trained with. :func:`scaled_table` derives its table from the trained one
with integer arithmetic only, so it too is identical on every platform.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from slimcodec.formats.slimfile import MIN_LATENT_SCALE, SCALE_ONE

PRECISION_BITS = 16  # the tables' counts sum to 2**PRECISION_BITS per channel
MAX_LATENT_SCALE = 0xFFFF  # just under 16: the header field is a u16


def check_rows(offsets: np.ndarray, counts: np.ndarray, lengths: np.ndarray, what: str) -> None:
    """Raise ``ValueError`` unless ``counts[r, :lengths[r]]`` are positive, sum to the precision,
    and are followed by zeros, for every row ``r``."""
    n = counts.shape[0]
    if offsets.shape != (n,) or lengths.shape != (n,):
        raise ValueError(f"{what} arrays disagree on the row count")
    if (lengths < 2).any() or (lengths > counts.shape[1]).any():
        raise ValueError(f"{what} lengths out of range")
    for row, used in zip(counts, lengths):
        if (row[:used] <= 0).any() or (row[used:] != 0).any() or row.sum() != 1 << PRECISION_BITS:
            raise ValueError(f"{what} counts are not a valid distribution")


def row_min_bits(counts: np.ndarray) -> np.ndarray:
    """The fewest bits any symbol of each row costs: ``−log2`` of the row's largest probability."""
    return -np.log2(counts.max(axis=1).astype(np.float64) / (1 << PRECISION_BITS))


def check_payload_holds(payload_bits: int, least_bits: float, what: str) -> None:
    """Refuse symbols that carry more information than the payload can hold.

    Every symbol costs at least its row's :func:`row_min_bits`, so a payload shorter than
    their sum (less a margin for the coder's rounding) cannot be a real file's: an empty
    payload otherwise decodes, at every size a header may claim, to the table's first entry.

    Raises:
        SlimFormatError: the payload is too short for ``least_bits``.
    """
    from slimcodec.errors import SlimFormatError

    if least_bits > 1.01 * payload_bits + 64:
        raise SlimFormatError(f"payload too short for its {what} ({payload_bits} bits; "
                              f"its symbols need at least {least_bits:.0f})")


class PayloadBudget:
    """The fewest bits a payload must hold, grown as its symbols' rows become known.

    A decoder that learns the rows of its symbols piece by piece (a hyper-synthesis tile, a
    slice) adds each piece with :meth:`add` before it decodes or computes more, so a payload
    too short for what it declares is refused after at most one piece of work.
    """

    def __init__(self, payload_bits: int, least_bits: float, counts: np.ndarray, what: str):
        """``least_bits``: what the payload must hold already; ``counts``: the rows' counts."""
        self.payload_bits, self.least_bits, self.what = payload_bits, least_bits, what
        self.row_bits = row_min_bits(counts)

    def add(self, indexes: np.ndarray) -> None:
        """Count symbols coded with rows ``indexes``.

        Raises:
            SlimFormatError: the payload is too short for every symbol counted so far.
        """
        per_row = np.bincount(np.asarray(indexes).reshape(-1), minlength=len(self.row_bits))
        self.least_bits += float(per_row @ self.row_bits)
        check_payload_holds(self.payload_bits, self.least_bits, self.what)


@dataclass(frozen=True)
class EntropyTable:
    """Per-channel discrete distributions of one width's latents.

    Attributes:
        medians (np.ndarray): float32 ``[C]``, the quantization offsets.
        offsets (np.ndarray): int32 ``[C]``, symbol value of table index 0.
        counts (np.ndarray): int32 ``[C, L]``; row ``c`` holds ``lengths[c]``
            positive counts (the last one is the escape) then zeros.
        lengths (np.ndarray): int32 ``[C]``, used entries per row, escape included.
    """

    medians: np.ndarray
    offsets: np.ndarray
    counts: np.ndarray
    lengths: np.ndarray

    @property
    def channels(self) -> int:
        return int(self.medians.shape[0])

    def validate(self) -> None:
        """Raise ``ValueError`` unless the arrays are consistent and every count is usable."""
        check_rows(self.offsets, self.counts, self.lengths, "entropy table")

    def to_tensors(self) -> dict:
        """The table as a dict of tensors, for the weights file."""
        import torch

        return {
            "medians": torch.from_numpy(self.medians.astype(np.float32)),
            "offsets": torch.from_numpy(self.offsets.astype(np.int32)),
            "counts": torch.from_numpy(self.counts.astype(np.int32)),
            "lengths": torch.from_numpy(self.lengths.astype(np.int32)),
        }

    @classmethod
    def from_tensors(cls, tensors: dict) -> EntropyTable:
        table = cls(
            medians=tensors["medians"].numpy().astype(np.float32),
            offsets=tensors["offsets"].numpy().astype(np.int32),
            counts=tensors["counts"].numpy().astype(np.int32),
            lengths=tensors["lengths"].numpy().astype(np.int32),
        )
        table.validate()
        return table

    @classmethod
    def from_bottleneck(cls, bottleneck) -> EntropyTable:
        """Build the table from a trained CompressAI ``EntropyBottleneck``.

        Uses CompressAI's own ``update()`` (16-bit quantized CDFs with a tail
        mass entry), then stores the CDFs as counts.
        """
        import torch

        with torch.no_grad():
            bottleneck.update(force=True)
            cdf = bottleneck._quantized_cdf.cpu().numpy().astype(np.int64)
            cdf_lengths = bottleneck._cdf_length.cpu().numpy().astype(np.int64)
            offsets = bottleneck._offset.cpu().numpy().astype(np.int32)
            medians = bottleneck._get_medians().reshape(-1).float().cpu().numpy()
        lengths = cdf_lengths - 1  # a CDF of n+1 entries holds n probabilities
        counts = np.zeros((cdf.shape[0], int(lengths.max())), dtype=np.int32)
        for c, n in enumerate(lengths):
            counts[c, :n] = np.diff(cdf[c, : n + 1])
        table = cls(medians.astype(np.float32), offsets, counts, lengths.astype(np.int32))
        table.validate()
        return table


def scale_units(scale: float) -> int:
    """The integer a latent scale is stored as: ``round(scale * 4096)``.

    Raises:
        ValueError: the scale is not a number from 1/16 to 65535/4096 (just under 16).

    Example:
        >>> scale_units(1.0), scale_units(0.5), scale_units(1.25)
        (4096, 2048, 5120)
    """
    try:
        n = round(float(scale) * SCALE_ONE)
    except (TypeError, ValueError, OverflowError):
        n = -1
    if not MIN_LATENT_SCALE <= n <= MAX_LATENT_SCALE:
        raise ValueError(f"latent scale must be a number from {MIN_LATENT_SCALE / SCALE_ONE:g} to "
                         f"{MAX_LATENT_SCALE / SCALE_ONE:.4f} ({MAX_LATENT_SCALE}/{SCALE_ONE}), got {scale!r}")
    return n


def _cdf_at(cum: np.ndarray, counts: np.ndarray, num: np.ndarray, den: int) -> np.ndarray:
    """Piecewise-linear CDF at ``num / den`` bins above the table's lower edge, in counts.

    ``cum[i]`` is the mass below bin ``i``; within a bin the mass is spread evenly.
    Integer arithmetic throughout (floor division), so every platform agrees.
    """
    n = counts.shape[0]
    index = np.clip(num // den, 0, n)
    frac = np.where(num < 0, 0, np.where(num // den >= n, 0, num % den))
    inside = np.where(index < n, counts[np.minimum(index, n - 1)], 0)
    return cum[index] + inside * frac // den


def scaled_table(table: EntropyTable, units: int) -> EntropyTable:
    """The table of ``s * (y - median)`` for the latent scale ``s = units / SCALE_ONE``.

    The trained table gives the mass of each unit bin of ``y - median``; the
    mass of a scaled bin ``[(k - 1/2) / s, (k + 1/2) / s)`` is read off the
    piecewise-linear CDF through those bins. Every symbol keeps at least one
    count (the others are shrunk in proportion), the escape keeps its count, and
    ``SCALE_ONE`` gives back the trained table exactly.
    """
    if units == SCALE_ONE:
        return table
    rows, offsets, lengths = [], [], []
    for c in range(table.channels):
        n = int(table.lengths[c]) - 1  # bins, escape excluded
        counts = table.counts[c, :n].astype(np.int64)
        escape = int(table.counts[c, n])
        cum = np.concatenate([[0], np.cumsum(counts)])
        o = int(table.offsets[c])
        # a scaled bin k spans [(2k-1), (2k+1)] * SCALE_ONE / (2 units) in y - median; relative
        # to the table's lower edge o - 1/2 that is num / den bins with den = 2 units
        den = 2 * units
        base = units * (2 * o - 1)
        # first k whose upper edge is above the lower edge, last k whose lower edge is below the upper
        top = base + n * den
        k_lo = (base - SCALE_ONE) // (2 * SCALE_ONE) + 1
        k_hi = -(-(top + SCALE_ONE) // (2 * SCALE_ONE)) - 1
        k = np.arange(k_lo, k_hi + 1, dtype=np.int64)
        edges = np.concatenate([(2 * k - 1) * SCALE_ONE - base, [(2 * k_hi + 1) * SCALE_ONE - base]])
        mass = np.diff(_cdf_at(cum, counts, edges, den))
        total = int(cum[-1])
        # one count for every symbol, the rest in proportion; the rounding remainder goes to the mode
        mass = 1 + mass * (total - len(mass)) // total
        mass[int(np.argmax(mass))] += total - int(mass.sum())
        rows.append(np.append(mass, escape))
        offsets.append(k_lo)
        lengths.append(len(mass) + 1)
    out = np.zeros((table.channels, max(lengths)), dtype=np.int32)
    for c, row in enumerate(rows):
        out[c, : len(row)] = row
    scaled = EntropyTable(table.medians, np.asarray(offsets, np.int32), out, np.asarray(lengths, np.int32))
    scaled.validate()
    return scaled


def quantize(y: np.ndarray, table: EntropyTable, units: int = SCALE_ONE) -> np.ndarray:
    """Integer symbols ``round(s * (y - median))`` of latents ``y`` shaped ``[C, H, W]``."""
    centred = y - table.medians[:, None, None]
    if units != SCALE_ONE:
        centred = centred * np.float32(units / SCALE_ONE)
    return np.rint(centred).astype(np.int32)


def dequantize(q: np.ndarray, table: EntropyTable, units: int = SCALE_ONE) -> np.ndarray:
    """Latent values ``q / s + median`` for integer symbols ``q`` shaped ``[C, H, W]``."""
    values = q.astype(np.float32)
    if units != SCALE_ONE:
        values = values / np.float32(units / SCALE_ONE)
    return values + table.medians[:, None, None]


def information_bits(q: np.ndarray, rows, indexes: np.ndarray | None = None) -> float:
    """Ideal code length in bits of integer symbols ``q`` under rows of integer distributions.

    ``indexes`` names each symbol's row (by default its channel: ``q`` is ``[C, H, W]`` and
    ``rows`` a factorized table). Counts ``-log2 p`` of each row entry with the rows' own
    integer probabilities; an escaped symbol costs its escape entry plus the bits the range
    coder spends on it (1 for the side, 5 for the length, then the value).
    """
    from slimcodec.entropy.rangecoder import channel_indexes

    idx = (channel_indexes(q.shape) if indexes is None else indexes).reshape(-1).astype(np.int64)
    values = q.reshape(-1).astype(np.int64)
    offset = rows.offsets[idx].astype(np.int64)
    length = rows.lengths[idx].astype(np.int64)
    entry = values - offset
    outside = (entry < 0) | (entry >= length - 1)
    entry = np.where(outside, length - 1, entry)
    total = float(-np.log2(rows.counts[idx, entry].astype(np.float64) / (1 << PRECISION_BITS)).sum())
    if outside.any():
        v, o, n = values[outside], offset[outside], length[outside]
        m = np.where(v < o, o - 1 - v, v - (o + n - 1))
        total += float((1 + 5 + np.floor(np.log2(m + 1.0))).sum())
    return total
