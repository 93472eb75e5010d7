"""Runtime bundles: one set of weights in a form the light runtime loads without torch.

A bundle is a zip archive (stored, not compressed: the graphs' weights barely
compress) holding:

- ``manifest.json``: ``{"format": "slimcodec-runtime", "format_version": 2,
  "weights_id": hex, "architecture", "widths", "stages", "meta", "views"}``;
- ``arrays.npz``: the entropy tables, the other data the codec needs and (version 2)
  the graphs' weights, loaded with ``allow_pickle=False``;
- ``graphs/<stage>-<width>.onnx``: one ONNX graph per transform stage and width,
  input ``x`` and output ``y``, both float32 ``[1, C, H, W]``. In version 2 a graph
  holds no weights: its initializers are external, named after the arrays
  ``graph_<stage>.<width>.<name>`` that the runtime hands onnxruntime when it creates the
  session (their data location is a path that cannot exist, so a missing array fails the
  session instead of reading some file).

A slimmable network's width ``w`` uses the leading block of each wider kernel, so an
array named ``<family>.<width>.<rest>`` that equals the leading block of its family's
array at a wider width is stored once (version 2): the manifest's ``views`` maps its
name to ``[source, shape]`` and the reader slices it back. This halves the bundle.

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
BUNDLE_FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)  # version 1: each graph embeds its weights; no views
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
    arrays: Mapping[str, np.ndarray]  # read_bundle's are read when first asked for
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


def graph_prefix(stage: str, width: int) -> str:
    """The array-name prefix of a graph's external initializers in a bundle (version 2)."""
    return f"graph_{stage}.{width}"


def _family(name: str) -> str | None:
    parts = name.split(".")
    if len(parts) < 2 or not parts[1].isdigit():
        return None
    return ".".join(parts[:1] + ["*"] + parts[2:])


def _leading_block(a: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    return a[tuple(slice(0, n) for n in shape)]


def leading_block_views(arrays: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, tuple[str, tuple]]]:
    """Split ``arrays`` into those to store and views ``{name: (source, shape)}`` of stored ones.

    An array is a view when it equals (same dtype, same rank) the leading block of a larger
    array of its family (its name with the width segment ``<family>.<width>.<rest>`` ignored).
    """
    by_family: dict[str, list[str]] = {}
    stored: dict[str, np.ndarray] = {}
    views: dict[str, tuple[str, tuple]] = {}
    for name, a in arrays.items():
        family = _family(name)
        if family is None or np.ndim(a) == 0:
            stored[name] = a
        else:
            by_family.setdefault(family, []).append(name)
    for names in by_family.values():
        names.sort(key=lambda n: (-arrays[n].size, n))
        sources: list[str] = []
        for name in names:
            a = np.asarray(arrays[name])
            source = next((s for s in sources if arrays[s].dtype == a.dtype and arrays[s].ndim == a.ndim
                           and all(n <= m for n, m in zip(a.shape, arrays[s].shape))
                           and _leading_block(arrays[s], a.shape).tobytes() == a.tobytes()), None)
            if source is None:
                stored[name] = a
                sources.append(name)
            else:
                views[name] = (source, a.shape)
    return stored, views


def _npy_shape(npz: zipfile.ZipFile, name: str) -> tuple[int, ...]:
    """The shape of array ``name`` of an ``.npz`` archive, from its ``.npy`` header alone."""
    with npz.open(name + ".npy") as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, _, _ = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, _, _ = np.lib.format.read_array_header_2_0(f)
        else:
            raise ValueError(f"{name}: unsupported .npy version {version}")
    return tuple(shape)


class _Arrays(Mapping):
    """A bundle's arrays, each read (and its CRC checked) when first asked for, views sliced
    from their stored source: a decode needs one width's few of the bundle's hundreds.

    Raises:
        ValueError: (on creation) an array that is not ours, or a view that is not a leading
            block of a stored array.
    """

    def __init__(self, data: bytes, views: object) -> None:
        self._npz = zipfile.ZipFile(io.BytesIO(data))
        self._stored = set()
        for info in self._npz.infolist():
            if not info.filename.endswith(".npy") or info.file_size > MAX_MEMBER_BYTES:
                raise ValueError(f"{info.filename} is not an array of ours")
            self._stored.add(info.filename.removesuffix(".npy"))
        self._views = self._checked(views)
        self._names = sorted(self._stored | set(self._views))
        self._loaded: dict[str, np.ndarray] = {}

    def _checked(self, views: object) -> dict[str, tuple[str, tuple[int, ...]]]:
        if not isinstance(views, dict):
            raise ValueError("views is not a mapping")
        out, shapes = {}, {}
        for name, view in views.items():
            if name in self._stored or not isinstance(view, list) or len(view) != 2:
                raise ValueError(f"bad view {name!r}")
            source, shape = view
            if source not in self._stored or not isinstance(shape, list):
                raise ValueError(f"view {name!r} has no stored source")
            if source not in shapes:
                shapes[source] = _npy_shape(self._npz, source)
            full = shapes[source]
            if len(shape) != len(full) or not all(type(n) is int and 0 <= n <= m for n, m in zip(shape, full)):
                raise ValueError(f"view {name!r} is not a block of {source}")
            out[name] = (source, tuple(shape))
        return out

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self._loaded:
            if name in self._views:
                source, shape = self._views[name]
                self._loaded[name] = _leading_block(self[source], shape)
            elif name in self._stored:
                try:
                    with self._npz.open(name + ".npy") as f:
                        self._loaded[name] = np.lib.format.read_array(f, allow_pickle=False)
                except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
                    raise SlimError(f"runtime bundle is damaged ({type(exc).__name__}: {exc})") from exc
            else:
                raise KeyError(name)
        return self._loaded[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def __contains__(self, name: object) -> bool:
        return name in self._stored or name in self._views


def write_bundle(bundle: Bundle) -> bytes:
    """The bytes of a bundle file (deterministic: same contents, same bytes)."""
    stored, views = leading_block_views(bundle.arrays)
    manifest = {
        "format": BUNDLE_FORMAT,
        "format_version": BUNDLE_FORMAT_VERSION,
        "weights_id": bundle.weights_id.hex(),
        "architecture": bundle.architecture,
        "widths": list(bundle.widths),
        "stages": list(bundle.stages),
        "meta": bundle.meta,
        "views": {name: [source, list(shape)] for name, (source, shape) in sorted(views.items())},
    }
    arrays = io.BytesIO()
    np.savez(arrays, **{k: np.ascontiguousarray(v) for k, v in sorted(stored.items())})
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
            if manifest.get("format_version") not in READABLE_VERSIONS:
                raise SlimError(f"unsupported runtime bundle version {manifest.get('format_version')}")
            arrays = _Arrays(member(ARRAYS), manifest.get("views") or {})
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
