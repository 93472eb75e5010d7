"""The factorized prior's latents (format 1.x): y alone, coded with one factorized table per channel.

Encoding quantizes the latents ``y`` (``[C, ⌈H/16⌉, ⌈W/16⌉]``, see
:func:`slimcodec.codec.analyze`) around the table's medians, at the file's latent scale,
and range-codes each channel with its row of the width's table; decoding reverses it.
See the package docstring (:mod:`slimcodec.latents`) for what every codec module provides.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from slimcodec.entropy import SCALE_ONE, dequantize, quantize
from slimcodec.entropy.rangecoder import decode_symbols, encode_symbols
from slimcodec.entropy.tables import check_payload_holds, information_bits, row_min_bits
from slimcodec.latents import Latents
from slimcodec.timings import Timings, timed

# the stages this architecture's transforms have, all run as graphs by the onnx runtime
GRAPH_STAGES = ("analysis", "synthesis")


@dataclass(frozen=True)
class FactorizedLatents(Latents):
    """y's symbols and ``y_hat`` (see :class:`slimcodec.latents.Latents`)."""


def encode_payload(wts, y: np.ndarray, width: int, units: int = SCALE_ONE, timings: Timings | None = None,
                   z: None = None) -> bytes:
    """The payload bytes of latents ``y`` at a latent scale; ``timings`` receives ``"entropy"``.
    There are no hyper-latents (``z`` must be None)."""
    if z is not None:
        raise ValueError("the factorized model has no hyper-latents")
    with timed(timings, "entropy"):
        table = wts.table(width, units)
        return encode_symbols(quantize(y, table, units), table).tobytes()


def decode_payload(wts, words: np.ndarray, width: int, grid: tuple[int, int], units: int = SCALE_ONE,
                   timings: Timings | None = None) -> FactorizedLatents:
    """Read a payload of y's ``grid`` (``(h, w)``); ``timings`` receives ``"entropy"``.

    Raises:
        SlimFormatError: the words are not exactly such a payload.
    """
    with timed(timings, "entropy"):
        table = wts.table(width, units)
        positions = grid[0] * grid[1]
        check_payload_holds(32 * words.size, positions * float(row_min_bits(table.counts).sum()), "image size")
        q = decode_symbols(words, table, grid[0], grid[1])
        return FactorizedLatents(y=q, y_hat=dequantize(q, table, units))


def payload_bits(latents: FactorizedLatents, wts, width: int) -> float:
    """The ideal size of the payload in bits: y's symbols under the width's table."""
    return information_bits(latents.y, wts.tables[width])


def hyper_latents(model, y, width: int):
    """The hyper-latents an encoder starts from for latents ``y`` (torch): none here."""
    return None


def torch_stages(model) -> dict:
    """The torch model's function of each stage."""
    return {"analysis": model.analysis, "synthesis": model.synthesis}


def model_class() -> type:
    """The torch model (:class:`slimcodec.models.factorized.SlimCAE`)."""
    from slimcodec.models.factorized import SlimCAE

    return SlimCAE


def file_extras(model) -> dict:
    """What a weights file holds beyond the transforms and tables: nothing."""
    return {}


def load_extras(blob: dict) -> dict:
    """The :class:`~slimcodec.weights.Weights` fields of :func:`file_extras`: none."""
    return {}


def bundle_arrays(wts) -> dict:
    """A runtime bundle's arrays beyond the tables and graphs: none."""
    return {}


def bundle_extras(arrays: dict, widths) -> dict:
    """The :class:`~slimcodec.weights.Weights` fields of :func:`bundle_arrays`: none."""
    return {}
