"""Latent codecs: one module per architecture, and the registry that names them.

An architecture's latent-codec module owns everything that differs between architectures,
so that the pipeline (:mod:`slimcodec.codec`), the weights files, the runtimes, effort,
evaluation, export and training ask it instead of comparing names
(:mod:`slimcodec.latents.factorized`, format 1.x; :mod:`slimcodec.latents.hyperprior`, 2.x;
:mod:`slimcodec.latents.channel`, 3.x):

- ``encode_payload(wts, y, width, units, timings, z=None) -> bytes`` (``z``: hyper-latents to
  send instead of ``h_a(y)``, for architectures that have them) and
  ``decode_payload(wts, words, width, grid, units, timings) -> Latents``: its payload (the
  channel model's also takes ``tiled=True`` for a tiled payload, format 3.1, which the header says);
- ``payload_bits(latents, wts, width)``: the payload's ideal size in bits (evaluation);
- ``hyper_latents(model, y, width)``: the hyper-latents an encoder starts from (``h_a(y)``, or
  None without a hyperprior; in torch, :mod:`slimcodec.effort`);
- its weights file beyond the transforms and the per-width factorized tables:
  ``file_extras(model)`` (saved), ``load_extras(blob)`` (loaded), ``bundle_arrays(wts)`` and
  ``bundle_extras(arrays, widths)`` (its runtime bundle);
- its stages: ``GRAPH_STAGES`` (exported to graphs, run by either runtime) and
  ``torch_stages(model)`` (the torch backend's);
- ``model_class()``: its torch model (:mod:`slimcodec.models`).

The registry keeps, per architecture, one :class:`Architecture` line: its name (recorded in
weights files and bundles), the format version its files are written in and the multiple
images are padded to. Those are what the container (:mod:`slimcodec.formats.slimfile`)
needs, and it imports neither numpy nor constriction, so the codec module itself is
imported only when it is asked for (:attr:`Architecture.codec`).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from importlib import import_module
from types import ModuleType
from typing import TYPE_CHECKING

from slimcodec.geometry import HYPER_STRIDE, STRIDE

if TYPE_CHECKING:  # numpy is not imported at run time: the container reads this module
    import numpy as np

__all__ = ["Architecture", "ARCHITECTURES", "UNNAMED", "Latents", "architecture", "of_major", "codec_of"]


@dataclass(frozen=True)
class Architecture:
    """One registered architecture.

    Attributes:
        name (str): the name weights files and runtime bundles record.
        format_version (tuple[int, int]): the ``.slim`` format (major, minor) its files are
            written in; a major belongs to one architecture.
        padding_multiple (int): images are padded to a multiple of this many pixels.
        module (str): its latent-codec module.
    """

    name: str
    format_version: tuple[int, int]
    padding_multiple: int
    module: str

    @property
    def major(self) -> int:
        return self.format_version[0]

    @property
    def short_name(self) -> str:
        """The name without the model family (``slim train --arch``)."""
        return self.name.split("-", 1)[-1]

    @property
    def codec(self) -> ModuleType:
        """Its latent-codec module (imported on first use)."""
        return import_module(self.module)


# One line per architecture.
ARCHITECTURES: dict[str, Architecture] = {a.name: a for a in (
    Architecture("slimcae-factorized", (1, 1), STRIDE, "slimcodec.latents.factorized"),
    Architecture("slimcae-hyperprior", (2, 0), HYPER_STRIDE, "slimcodec.latents.hyperprior"),
    Architecture("slimcae-channel", (3, 1), HYPER_STRIDE, "slimcodec.latents.channel"),
)}
# the architecture of weights files and bundles that name none (0.1.0's): the first one
UNNAMED = next(iter(ARCHITECTURES))


def architecture(name: str) -> Architecture:
    """The registered architecture of a name.

    Raises:
        KeyError: no architecture has that name.
    """
    return ARCHITECTURES[name]


def of_major(major: int) -> Architecture:
    """The architecture whose files are written in format ``major``.x.

    Raises:
        KeyError: no architecture writes that major.
    """
    for arch in ARCHITECTURES.values():
        if arch.major == major:
            return arch
    raise KeyError(major)


def codec_of(name: str) -> ModuleType:
    """The latent-codec module of an architecture's name (see the module docstring)."""
    return ARCHITECTURES[name].codec


@dataclass(frozen=True)
class Latents:
    """A payload's decoded latents: y's integer symbols and the dequantized latents.

    Each architecture's codec returns its own subclass with its other symbols. Fields can
    also be read by name (``latents["y"]``, ``"z" in latents``), as the golden vectors
    and released files record them.

    Attributes:
        y (np.ndarray): y's integer symbols (int32 ``[C, h, w]``), bit-exact everywhere.
        y_hat (np.ndarray): the dequantized latents (float32 ``[C, h, w]``), the synthesis' input.
    """

    y: np.ndarray
    y_hat: np.ndarray

    def symbols(self) -> dict:
        """The integer arrays the payload pins, by name (every field but ``y_hat``)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "y_hat"}

    def __getitem__(self, name: str):
        if name not in self:
            raise KeyError(name)
        return getattr(self, name)

    def __contains__(self, name: object) -> bool:
        return any(f.name == name for f in fields(self))
