"""Runtime bundles: one set of weights in a form the light runtime loads without torch.

A bundle is a zip archive (stored, not compressed: the graphs' weights barely
compress) holding:

- ``manifest.json``: ``{"format": "slimcodec-runtime", "format_version": 1,
  "weights_id": hex, "architecture", "widths", "stages", "meta"}``;
- ``arrays.npz``: the entropy tables and other integer data the codec needs, loaded
  with ``allow_pickle=False``;
- ``graphs/<stage>-<width>.onnx``: one ONNX graph per transform stage and width,
  input ``x`` and output ``y``, both float32 ``[1, C, H, W]``.

Its ``weights_id`` is the id of the ``.pt`` weights file it was exported from
(``python -m slimcodec.tools.export_runtime``), so files either runtime writes name the same
weights. Shipped bundles are named ``slimcae-<id>.onnx.zip``.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np

from slimcodec.errors import SlimError

BUNDLE_FORMAT = "slimcodec-runtime"
BUNDLE_FORMAT_VERSION = 1
BUNDLE_SUFFIX = ".onnx.zip"
MANIFEST = "manifest.json"
ARRAYS = "arrays.npz"
MAX_MEMBER_BYTES = 256 << 20  # a bundle member larger than this is not ours


@dataclass
class Bundle:
    """The contents of a runtime bundle."""

    weights_id: bytes
    architecture: str
    widths: tuple[int, ...]
    stages: tuple[str, ...]
    arrays: dict[str, np.ndarray]
    graphs: Mapping[tuple[str, int], bytes]
    meta: dict = field(default_factory=dict)


class _Graphs(Mapping):
    """A bundle's graphs by (stage, width), each read (and its CRC checked) when first asked for:
    a decode needs one of the bundle's twenty."""

    def __init__(self, data: bytes, stages: tuple[str, ...], widths: tuple[int, ...]) -> None:
        self._data = data
        self._keys = [(s, w) for s in stages for w in widths]

    def __getitem__(self, key: tuple[str, int]) -> bytes:
        if key not in self._keys:
            raise KeyError(key)
        try:
            with zipfile.ZipFile(io.BytesIO(self._data)) as zf:
                return zf.read(_graph_name(*key))
        except (zipfile.BadZipFile, KeyError, OSError, EOFError) as exc:
            raise SlimError(f"runtime bundle is damaged ({type(exc).__name__}: {exc})") from exc

    def __iter__(self) -> Iterator[tuple[str, int]]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)


def is_bundle(data: bytes) -> bool:
    """Whether ``data`` looks like a runtime bundle (a zip whose first member is the manifest).

    torch's ``.pt`` files are zip archives too; theirs start with ``<name>/data.pkl``.
    """
    if not data.startswith(b"PK\x03\x04") or len(data) < 30:
        return False
    name_length = int.from_bytes(data[26:28], "little")
    return data[30 : 30 + name_length] == MANIFEST.encode()


def _graph_name(stage: str, width: int) -> str:
    return f"graphs/{stage}-{width}.onnx"


def write_bundle(bundle: Bundle) -> bytes:
    """The bytes of a bundle file (deterministic: same contents, same bytes)."""
    manifest = {
        "format": BUNDLE_FORMAT,
        "format_version": BUNDLE_FORMAT_VERSION,
        "weights_id": bundle.weights_id.hex(),
        "architecture": bundle.architecture,
        "widths": list(bundle.widths),
        "stages": list(bundle.stages),
        "meta": bundle.meta,
    }
    arrays = io.BytesIO()
    np.savez(arrays, **{k: np.ascontiguousarray(v) for k, v in sorted(bundle.arrays.items())})
    members = [(MANIFEST, json.dumps(manifest, indent=1, sort_keys=True).encode()), (ARRAYS, arrays.getvalue())]
    members += [(_graph_name(s, w), g) for (s, w), g in sorted(bundle.graphs.items())]
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zf:
        for name, data in members:
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            zf.writestr(info, data)
    return out.getvalue()


def read_bundle(data: bytes) -> Bundle:
    """Parse a bundle file's bytes.

    Raises:
        SlimError: not a runtime bundle, an unsupported version, or damaged.
    """
    if not is_bundle(data):
        raise SlimError("not a slimcodec runtime bundle")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            def member(name: str) -> bytes:
                if zf.getinfo(name).file_size > MAX_MEMBER_BYTES:
                    raise ValueError(f"{name} is too large")
                return zf.read(name)

            manifest = json.loads(member(MANIFEST))
            if manifest.get("format") != BUNDLE_FORMAT:
                raise SlimError("not a slimcodec runtime bundle")
            if manifest.get("format_version") != BUNDLE_FORMAT_VERSION:
                raise SlimError(f"unsupported runtime bundle version {manifest.get('format_version')}")
            with np.load(io.BytesIO(member(ARRAYS)), allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
            widths = tuple(int(w) for w in manifest["widths"])
            stages = tuple(str(s) for s in manifest["stages"])
            for s in stages:
                for w in widths:
                    if zf.getinfo(_graph_name(s, w)).file_size > MAX_MEMBER_BYTES:
                        raise ValueError(f"graph {s}-{w} is too large")
        graphs = _Graphs(data, stages, widths)
        return Bundle(bytes.fromhex(manifest["weights_id"]), str(manifest["architecture"]), widths, stages,
                      arrays, graphs, dict(manifest.get("meta") or {}))
    except SlimError:
        raise
    except (zipfile.BadZipFile, KeyError, ValueError, TypeError, OSError, EOFError) as exc:
        raise SlimError(f"runtime bundle is damaged ({type(exc).__name__}: {exc})") from exc
