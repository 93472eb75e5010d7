"""Weights files: save, load (safely) and identify them.

Weights come in two forms that carry one id: the ``.pt`` file training writes, which
the torch backend runs, and the runtime bundle exported from it
(:mod:`slimcodec.runtime.bundle`, ``slimcae-<id>.onnx.zip``; its side of :class:`Weights` is
:mod:`slimcodec.runtime.weights_bundle`), which the light onnx backend runs without torch.
``SLIM_BACKEND`` chooses between shipped ones (:func:`slimcodec.runtime.chosen_backend`); a
file given by path runs on the backend its form needs.

A ``.pt`` weights file is a ``torch.save`` dict of tensors and plain values, loaded
with ``weights_only=True``. It names its architecture (``"architecture"``, a key of
:data:`slimcodec.latents.ARCHITECTURES`; files without it are 0.1.0's factorized
SlimCAE). ``tables`` holds, per width, the factorized tables of the latent that is coded
with one: y for the factorized model, z for the hyperprior. What else a file holds is the
architecture's (its latent codec's ``file_extras``: the hyperprior's Gaussian tables of y,
``"gaussian"``). Its id is the first 8 bytes of a SHA-256 over its
content (:func:`content_id`; files of 0.1.0, which have no ``"id_scheme"``, over the
file's bytes, so ``df9f17e387a8f20d`` stays what it was); every .slim file records it,
and decoding refuses a file made with other weights. Shipped files are named ``slimcae-<id hex>.pt``.
"""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from slimcodec import runtime
from slimcodec.entropy import SCALE_ONE, EntropyTable, scaled_table
from slimcodec.entropy.gaussian import GaussianTables
from slimcodec.errors import SlimError, WeightsFileError
from slimcodec.latents import ARCHITECTURES, UNNAMED, codec_of
from slimcodec.outputs import write_atomic
from slimcodec.runtime.bundle import BUNDLE_SUFFIX, is_bundle, read_bundle

WEIGHTS_FORMAT = "slimcodec-weights"
WEIGHTS_FORMAT_VERSION = 1
WEIGHTS_ID_BYTES = 8
SHIPPED_DIR = Path(__file__).with_name("weights")
_SCALED_TABLES_KEPT = 64


@dataclass
class Weights:
    """Loaded weights: the transforms, the entropy tables and the id.

    ``model`` is the torch model when the weights came from a ``.pt`` file (training,
    the torch backend), ``None`` from a runtime bundle; ``transforms`` runs the stages
    either way.
    """

    model: object  # slimcodec.models.factorized.SlimCAE or None; typed loosely to keep torch out of imports
    tables: dict[int, EntropyTable]
    weights_id: bytes
    meta: dict = field(default_factory=dict)
    architecture: str = UNNAMED
    gaussian: GaussianTables | None = None  # the Gaussian tables of an architecture that codes with them (y's)
    transforms: runtime.Transforms | None = None
    # what the architecture's latent codec keeps beside the transforms (the hyperprior's, from a
    # bundle: width -> (h_s layers, z medians)), and what it builds from the weights once
    extras: dict = field(default_factory=dict, repr=False)
    cache: dict = field(default_factory=dict, repr=False, compare=False)

    _scaled: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.transforms is None and self.model is not None:
            from slimcodec.runtime.torch_backend import TorchTransforms

            self.transforms = TorchTransforms(self.model, codec_of(self.architecture).torch_stages(self.model))

    @property
    def widths(self) -> tuple[int, ...]:
        return tuple(sorted(self.tables, reverse=True))

    def check_width(self, width: int) -> None:
        """Raise ``ValueError`` naming the valid widths if ``width`` is not one."""
        if width not in self.tables:
            valid = ", ".join(str(w) for w in self.widths)
            raise ValueError(f"width {width} is not available; valid widths: {valid}")

    def run(self, stage: str, width: int, x: np.ndarray) -> np.ndarray:
        """Run a transform stage on one ``[C, H, W]`` float32 array (see :class:`slimcodec.runtime.Transforms`)."""
        return self.transforms.run(stage, width, x)

    def release(self, stage: str, width: int) -> None:
        """Free what running a stage keeps for its next run (:meth:`slimcodec.runtime.Transforms.release`)."""
        self.transforms.release(stage, width)

    def table(self, width: int, latent_scale: int = SCALE_ONE) -> EntropyTable:
        """The entropy table of ``width`` for a latent scale in 1/4096 units (cached)."""
        if latent_scale == SCALE_ONE:
            return self.tables[width]
        key = (width, latent_scale)
        if key not in self._scaled:
            if len(self._scaled) >= _SCALED_TABLES_KEPT:  # rate searches try many scales
                self._scaled.clear()
            self._scaled[key] = scaled_table(self.tables[width], latent_scale)
        return self._scaled[key]


def weights_id_of(data: bytes) -> bytes:
    """The id of a 0.1.0 weights file (no ``id_scheme``): the first 8 bytes of its bytes' SHA-256."""
    return hashlib.sha256(data).digest()[:WEIGHTS_ID_BYTES]


# Files that carry this scheme are identified by what they hold, not how it was pickled: a
# copy saved again, or by another torch, keeps its id (and so its files keep decoding).
CONTENT_ID_SCHEME = "content-sha256-v1"


def content_id(blob: dict) -> bytes:
    """The id of a weights file's content: SHA-256 over the architecture, the widths, then every
    array (state dict, tables, Gaussian tables) in sorted key order as name, dtype, shape and
    little-endian bytes; the first 8 bytes. ``meta`` (training notes) is not part of it."""
    h = hashlib.sha256(CONTENT_ID_SCHEME.encode() + b"\0")
    h.update(str(blob.get("architecture", UNNAMED)).encode() + b"\0")
    h.update(",".join(str(int(w)) for w in blob["widths"]).encode() + b"\0")
    arrays = {f"state_dict/{k}": v for k, v in blob["state_dict"].items()}
    arrays.update({f"tables/{w}/{k}": v for w, t in blob["tables"].items() for k, v in t.items()})
    arrays.update({f"gaussian/{k}": v for k, v in (blob.get("gaussian") or {}).items()})
    for name in sorted(arrays):
        a = arrays[name]
        a = a.detach().cpu().contiguous().numpy() if hasattr(a, "detach") else np.asarray(a)
        a = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<"))
        h.update(f"{name}\0{a.dtype.str}\0{a.shape}\0".encode())
        h.update(a.tobytes())
    return h.digest()[:WEIGHTS_ID_BYTES]


def save_weights(model, path: str | os.PathLike, meta: dict | None = None, half: bool = True) -> bytes:
    """Write ``model`` with freshly built entropy tables; return the new weights id.

    Args:
        model (SlimCAE): a trained model (its bottlenecks' CDFs are rebuilt).
        path (path-like): destination; written atomically.
        meta (dict): plain values stored alongside (λ, steps, ...).
        half (bool): store the parameters as float16 (half the size; the
            buffers, all constants, and the tables stay exact either way).

    Returns:
        bytes: the 8-byte weights id.
    """
    import torch

    from slimcodec.models import architecture_of

    architecture = architecture_of(model)
    tables = {w: EntropyTable.from_bottleneck(model.entropy_bottleneck[str(w)]) for w in model.widths}
    constants = model.constant_names()  # small: kept exact
    state = {
        k: (v.half() if half and k not in constants and v.is_floating_point() else v).detach().cpu().contiguous()
        for k, v in model.state_dict_for_saving().items()
    }
    blob = {
        "format": WEIGHTS_FORMAT,
        "format_version": WEIGHTS_FORMAT_VERSION,
        "widths": list(model.widths),
        "state_dict": state,
        "tables": {str(w): t.to_tensors() for w, t in tables.items()},
        "meta": dict(meta or {}),
        "architecture": architecture,  # 0.1.0's files have none: they are factorized
        "id_scheme": CONTENT_ID_SCHEME,  # 0.1.0's have none: their id is the file's hash
    }
    blob.update(codec_of(architecture).file_extras(model))
    buf = io.BytesIO()
    torch.save(blob, buf)
    data = buf.getvalue()
    write_atomic(Path(path), lambda f: f.write(data), overwrite=True)
    return content_id(blob)


def is_torch_file(data: bytes) -> bool:
    """Whether ``data`` looks like a file ``torch.save`` wrote (a zip archive with a ``data.pkl``),
    so that a missing torch, not the file, is what stops it loading."""
    if not data.startswith(b"PK\x03\x04"):
        return False
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            return any(name.endswith("/data.pkl") for name in zf.namelist())
    except (zipfile.BadZipFile, ValueError):
        return False


def load_weights_bytes(data: bytes, device: str = "cpu") -> Weights:
    """Load a weights file from its bytes: a runtime bundle, or a ``.pt`` file (``weights_only=True``: no code runs).

    Raises:
        SlimError: not a weights file, damaged, or its runtime is not installed.
    """
    if is_bundle(data):
        if not runtime.installed("onnx"):
            raise SlimError("a runtime bundle needs onnxruntime: pip install onnxruntime")
        from slimcodec.runtime.weights_bundle import from_bundle

        return from_bundle(read_bundle(data))
    if not runtime.installed("torch"):
        if not is_torch_file(data):
            raise SlimError("not a slimcodec weights file")
        raise SlimError("a .pt weights file needs torch: pip install 'slimcodec[train]' (or use its runtime bundle)")
    import torch

    try:
        blob = torch.load(io.BytesIO(data), map_location=device, weights_only=True)
    except Exception as exc:  # torch raises many types for a foreign file
        raise SlimError(f"not a slimcodec weights file ({type(exc).__name__})") from exc
    if not isinstance(blob, dict) or blob.get("format") != WEIGHTS_FORMAT:
        raise SlimError("not a slimcodec weights file")
    if blob.get("format_version") != WEIGHTS_FORMAT_VERSION:
        raise SlimError(f"unsupported weights format version {blob.get('format_version')}")
    architecture = blob.get("architecture", UNNAMED)
    if architecture not in ARCHITECTURES:
        raise SlimError(f"weights file of an unknown architecture {architecture!r}")
    codec = codec_of(architecture)
    state = {k: v.float() if v.is_floating_point() else v for k, v in blob["state_dict"].items()}
    try:
        model = codec.model_class().from_state_dict(state).to(device).eval()
        tables = {int(w): EntropyTable.from_tensors(t) for w, t in blob["tables"].items()}
        extras = codec.load_extras(blob)
    except (KeyError, ValueError, RuntimeError, AttributeError, TypeError) as exc:
        raise SlimError(f"weights file is damaged ({type(exc).__name__}: {exc})") from exc
    if set(tables) != set(model.widths):
        raise SlimError("weights file: tables and network disagree on the widths")
    scheme = blob.get("id_scheme")
    if scheme not in (None, CONTENT_ID_SCHEME):
        raise SlimError(f"weights file with an unknown id scheme {scheme!r}")
    try:
        weights_id = weights_id_of(data) if scheme is None else content_id(blob)
    except (KeyError, ValueError, TypeError, AttributeError) as exc:
        raise SlimError(f"weights file is damaged ({type(exc).__name__}: {exc})") from exc
    return Weights(model, tables, weights_id, dict(blob.get("meta", {})), architecture, **extras)


# The weights new files are encoded with. Every shipped file stays in the package: a file
# decodes with the shipped weights its header names (CHANGELOG lists which ids each release decodes).
DEFAULT_WEIGHTS_ID = "e51e6f1e1ba987b4"


def shipped_weights_path(weights_id: bytes | str, backend: str | None = None) -> Path | None:
    """The shipped weights file of an id for a backend, or ``None`` when this slimcodec does not ship it.

    Args:
        backend (str): ``"onnx"`` (the runtime bundle) or ``"torch"`` (the ``.pt`` file);
            by default :func:`slimcodec.runtime.chosen_backend`, falling back to the other
            form when only that one is installed.
    """
    hex_id = weights_id.hex() if isinstance(weights_id, (bytes, bytearray)) else str(weights_id)
    forms = {"onnx": SHIPPED_DIR / f"slimcae-{hex_id}{BUNDLE_SUFFIX}", "torch": SHIPPED_DIR / f"slimcae-{hex_id}.pt"}
    chosen = backend or runtime.chosen_backend()
    order = [chosen] if backend else [chosen] + [b for b in forms if b != chosen and runtime.installed(b)]
    for name in order:
        if forms[name].is_file():
            return forms[name]
    return None


def shipped_weights_ids() -> list[str]:
    """The ids of every weights file shipped in the package (in either form)."""
    names = [p.name for p in SHIPPED_DIR.glob("slimcae-*")]
    return sorted({n.removeprefix("slimcae-").removesuffix(BUNDLE_SUFFIX).removesuffix(".pt") for n in names
                   if n.endswith((BUNDLE_SUFFIX, ".pt"))})


def default_weights_path() -> Path:
    """The shipped weights file new files are encoded with."""
    path = shipped_weights_path(DEFAULT_WEIGHTS_ID)
    if path is None:
        raise SlimError(f"the default weights slimcae-{DEFAULT_WEIGHTS_ID} for the {runtime.chosen_backend()} "
                        f"backend are missing from {SHIPPED_DIR}")
    return path


@lru_cache(maxsize=4)
def _load_cached(path: str, mtime_ns: int, device: str) -> Weights:
    return load_weights_bytes(Path(path).read_bytes(), device)


def load_weights(path: str | os.PathLike | None = None, device: str = "cpu") -> Weights:
    """Load (once per process) a weights file; the shipped one by default.

    Raises:
        WeightsFileError: the file cannot be read or is not usable weights (``path`` and ``reason``).
    """
    p = Path(path) if path is not None else default_weights_path()
    try:
        mtime = p.stat().st_mtime_ns
    except OSError as exc:
        raise WeightsFileError(p, f"cannot read weights file: {exc.strerror}") from exc
    try:
        return _load_cached(str(p.resolve()), mtime, device)
    except WeightsFileError:
        raise
    except SlimError as exc:
        raise WeightsFileError(p, str(exc)) from exc


def resolve_weights(weights: Weights | str | os.PathLike | None) -> Weights:
    """``weights`` if they are loaded already, else :func:`load_weights` of the path (``None``: the shipped ones)."""
    return weights if isinstance(weights, Weights) else load_weights(weights)


def install_shipped(path: str | os.PathLike) -> Path:
    """Ship a weights file as ``slimcae-<id>.pt`` beside the others (older ones stay: their files
    must still decode); make it the default by setting :data:`DEFAULT_WEIGHTS_ID`."""
    data = Path(path).read_bytes()
    wts = load_weights_bytes(data)  # refuse to ship a file that does not load
    target = SHIPPED_DIR / f"slimcae-{wts.weights_id.hex()}.pt"
    write_atomic(target, lambda f: f.write(data), overwrite=True)
    return target
