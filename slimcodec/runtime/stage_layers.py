"""The layers a transform stage is made of, as plain numpy arrays.

An architecture describes each (stage, width) of its network as a list of these
(``stage_layers``); the ONNX exporter turns the list into a graph, so adding an
architecture never touches the runtime. Kernels are already sliced to the width
and parametrizations (GDN's non-negativity) already applied: what is here is what
the runtime computes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Conv:
    """A convolution: ``weight`` ``[out, in, k, k]``, ``bias`` ``[out]`` or ``None``."""

    weight: np.ndarray
    bias: np.ndarray | None
    stride: int
    padding: int


@dataclass(frozen=True)
class ConvTranspose:
    """A transposed convolution: ``weight`` ``[in, out, k, k]`` as in torch."""

    weight: np.ndarray
    bias: np.ndarray | None
    stride: int
    padding: int
    output_padding: int


@dataclass(frozen=True)
class GDN:
    """Generalized divisive normalization: ``x / sqrt(beta + gamma · x²)`` (``x · sqrt(...)`` inverse)."""

    beta: np.ndarray  # [C]
    gamma: np.ndarray  # [C, C]
    inverse: bool


@dataclass(frozen=True)
class ReLU:
    """``max(x, 0)``."""


Layer = Conv | ConvTranspose | GDN | ReLU

_KINDS = {Conv: 0, ConvTranspose: 1, GDN: 2, ReLU: 3}


def _stored(a: np.ndarray) -> np.ndarray:
    """float16 when that holds ``a`` exactly (trained weights are saved so), else float32."""
    a = np.asarray(a, np.float32)
    half = a.astype(np.float16)
    return half if np.array_equal(half.astype(np.float32), a) else a


def layers_to_arrays(prefix: str, layers: list[Layer]) -> dict[str, np.ndarray]:
    """Flat arrays (``prefix.i.kind``, ``prefix.i.weight``, ...) that :func:`layers_from_arrays` reads back exactly."""
    out: dict[str, np.ndarray] = {}
    for i, layer in enumerate(layers):
        key = f"{prefix}.{i}"
        out[f"{key}.kind"] = np.array(_KINDS[type(layer)], np.int32)
        if isinstance(layer, (Conv, ConvTranspose)):
            geometry = [layer.stride, layer.padding, getattr(layer, "output_padding", 0)]
            out[f"{key}.geometry"] = np.array(geometry, np.int32)
            out[f"{key}.weight"] = _stored(layer.weight)
            if layer.bias is not None:
                out[f"{key}.bias"] = _stored(layer.bias)
        elif isinstance(layer, GDN):
            out[f"{key}.beta"] = np.asarray(layer.beta, np.float32)
            out[f"{key}.gamma"] = np.asarray(layer.gamma, np.float32)
            out[f"{key}.inverse"] = np.array(layer.inverse, np.bool_)
    return out


def _scalar(a: np.ndarray, name: str) -> np.generic:
    """The one value of ``a``: 0-d as written, or 1-d as bundles store it (``np.ascontiguousarray``
    makes 0-d arrays 1-d; NumPy 2.4 no longer converts those to Python scalars itself)."""
    a = np.asarray(a)
    if a.size != 1 or a.ndim > 1:
        raise ValueError(f"{name}: a single value expected, got shape {a.shape}")
    return a.reshape(())[()]


def layers_from_arrays(prefix: str, arrays: dict[str, np.ndarray]) -> list[Layer]:
    """The layers :func:`layers_to_arrays` stored under ``prefix`` (float32 again).

    Raises:
        KeyError, ValueError: the arrays are not such layers.
    """
    layers: list[Layer] = []
    while f"{prefix}.{len(layers)}.kind" in arrays:
        key = f"{prefix}.{len(layers)}"
        kind = int(_scalar(arrays[f"{key}.kind"], f"{key}.kind"))
        if kind in (0, 1):
            stride, padding, output_padding = (int(v) for v in arrays[f"{key}.geometry"])
            weight = np.asarray(arrays[f"{key}.weight"], np.float32)
            bias = np.asarray(arrays[f"{key}.bias"], np.float32) if f"{key}.bias" in arrays else None
            if weight.ndim != 4:
                raise ValueError(f"{key}: a kernel must have 4 dimensions")
            layer = (Conv(weight, bias, stride, padding) if kind == 0
                     else ConvTranspose(weight, bias, stride, padding, output_padding))
        elif kind == 2:
            layer = GDN(np.asarray(arrays[f"{key}.beta"], np.float32), np.asarray(arrays[f"{key}.gamma"], np.float32),
                        bool(_scalar(arrays[f"{key}.inverse"], f"{key}.inverse")))
        elif kind == 3:
            layer = ReLU()
        else:
            raise ValueError(f"{key}: unknown layer kind {kind}")
        layers.append(layer)
    if not layers:
        raise KeyError(prefix)
    return layers
