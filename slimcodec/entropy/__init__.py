"""Entropy models as integer tables shared by encoder and decoder.

:mod:`~slimcodec.entropy.tables` holds the factorized prior's per-channel tables;
:mod:`~slimcodec.entropy.gaussian` the hyperprior's zero-mean Gaussian tables and the
integer-exact choice of a table for each symbol.
"""

from slimcodec.entropy.tables import (
    MAX_LATENT_SCALE,
    PRECISION_BITS,
    SCALE_ONE,
    EntropyTable,
    dequantize,
    quantize,
    scale_units,
    scaled_table,
)

__all__ = [
    "MAX_LATENT_SCALE", "PRECISION_BITS", "SCALE_ONE", "EntropyTable",
    "dequantize", "quantize", "scale_units", "scaled_table",
]
