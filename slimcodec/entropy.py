"""Discrete entropy tables: from a trained density to integer probabilities.

The encoder and the decoder both read these integer tables from the weights
file, so the symbols a decoder recovers never depend on floating point.

Quantization follows CompressAI: the symbol of a latent value ``y`` in channel
``c`` is ``q = round(y - median[c])`` and it decodes to ``q + median[c]``.
Within a channel, ``q`` is coded as the table index ``q - offset[c]``; values
outside ``[offset, offset + length - 2]`` are coded as the escape index
``length - 1`` followed by the value itself (see :mod:`slimcodec.rangecoder`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PRECISION_BITS = 16  # the tables' counts sum to 2**PRECISION_BITS per channel


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
        c = self.channels
        if self.offsets.shape != (c,) or self.lengths.shape != (c,) or self.counts.shape[0] != c:
            raise ValueError("entropy table arrays disagree on the channel count")
        if (self.lengths < 2).any() or (self.lengths > self.counts.shape[1]).any():
            raise ValueError("entropy table lengths out of range")
        for row, n in zip(self.counts, self.lengths):
            if (row[:n] <= 0).any() or (row[n:] != 0).any() or row.sum() != 1 << PRECISION_BITS:
                raise ValueError("entropy table counts are not a valid distribution")

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
    def from_tensors(cls, tensors: dict) -> "EntropyTable":
        table = cls(
            medians=tensors["medians"].numpy().astype(np.float32),
            offsets=tensors["offsets"].numpy().astype(np.int32),
            counts=tensors["counts"].numpy().astype(np.int32),
            lengths=tensors["lengths"].numpy().astype(np.int32),
        )
        table.validate()
        return table

    @classmethod
    def from_bottleneck(cls, bottleneck) -> "EntropyTable":
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


def quantize(y: np.ndarray, table: EntropyTable) -> np.ndarray:
    """Integer symbols ``round(y - median)`` of latents ``y`` shaped ``[C, H, W]``."""
    return np.rint(y - table.medians[:, None, None]).astype(np.int32)


def dequantize(q: np.ndarray, table: EntropyTable) -> np.ndarray:
    """Latent values ``q + median`` for integer symbols ``q`` shaped ``[C, H, W]``."""
    return q.astype(np.float32) + table.medians[:, None, None]
