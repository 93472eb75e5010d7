"""Weights and runtime bundles: the bundle of torch-loaded weights, and the weights that run a bundle.

A runtime bundle (:mod:`slimcodec.runtime.bundle`) holds the transforms as graphs for the
onnx backend, and beside them what the codec needs: the entropy tables and what the
architecture's latent codec adds (its ``bundle_arrays``). :mod:`slimcodec.weights` loads a
bundle through :func:`from_bundle`; ``python -m slimcodec.tools.export_runtime`` writes one
through :func:`to_bundle`.
"""

from __future__ import annotations

import numpy as np

from slimcodec.entropy import EntropyTable
from slimcodec.errors import SlimError
from slimcodec.latents import ARCHITECTURES, codec_of
from slimcodec.runtime.bundle import Bundle
from slimcodec.weights import Weights


def to_bundle(wts: Weights, graphs: dict[tuple[str, int], bytes]) -> Bundle:
    """The runtime bundle of torch-loaded weights, with graphs exported from its model.

    Holds what the codec needs besides the graphs: the tables, and what the architecture's
    latent codec adds (``bundle_arrays``: for the hyperprior its Gaussian tables and the
    float h_s layers its fixed point is built from).
    """
    arrays: dict[str, np.ndarray] = {}
    for w, t in wts.tables.items():
        arrays.update({f"table.{w}.{k}": v for k, v in vars(t).items()})
    arrays.update(codec_of(wts.architecture).bundle_arrays(wts))
    stages = tuple(sorted({s for s, _ in graphs}))
    return Bundle(wts.weights_id, wts.architecture, wts.widths, stages, arrays, graphs, dict(wts.meta))


def from_bundle(bundle: Bundle) -> Weights:
    """Weights that run a runtime bundle on the onnx backend.

    Raises:
        SlimError: the bundle's arrays are damaged.
    """
    from slimcodec.runtime.onnx_backend import OnnxTransforms

    a = bundle.arrays
    try:
        tables = {}
        for w in bundle.widths:
            table = EntropyTable(**{k: a[f"table.{w}.{k}"] for k in ("medians", "offsets", "counts", "lengths")})
            table.validate()
            tables[w] = table
        if bundle.architecture not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {bundle.architecture!r}")
        extras = codec_of(bundle.architecture).bundle_extras(a, bundle.widths)
    except (KeyError, ValueError, TypeError) as exc:
        raise SlimError(f"runtime bundle is damaged ({type(exc).__name__}: {exc})") from exc
    return Weights(None, tables, bundle.weights_id, bundle.meta, bundle.architecture,
                   transforms=OnnxTransforms(bundle.graphs, a), **extras)
