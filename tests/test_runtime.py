"""The runtimes: onnx graphs exported from the torch model compute the same transforms,
files cross between runtimes, and the light install runs without torch."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import gradient_image

from slimcodec import codec, runtime
from slimcodec.errors import SlimError
from slimcodec.runtime.bundle import is_bundle, leading_block_views, read_bundle
from slimcodec.weights import (
    DEFAULT_WEIGHTS_ID,
    load_weights,
    load_weights_bytes,
    shipped_weights_path,
)

REPO = Path(__file__).resolve().parents[1]
VECTORS = REPO / "formats" / "vectors"
TINY_HYPERPRIOR = VECTORS / "v2.0" / "tiny-hyperprior-weights.pt"


def export(weights_path: Path, tmp_path: Path) -> Path:
    from slimcodec.tools.export_runtime import main

    out = tmp_path / (weights_path.stem + ".onnx.zip")
    assert main([str(weights_path), "-o", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def tiny_pair(tiny_weights_path, tmp_path_factory):
    """The tiny factorized weights loaded as torch and as its exported bundle."""
    bundle = export(tiny_weights_path, tmp_path_factory.mktemp("bundle"))
    return load_weights(tiny_weights_path), load_weights(bundle)


@pytest.fixture(scope="module")
def hyper_pair(tmp_path_factory):
    bundle = export(TINY_HYPERPRIOR, tmp_path_factory.mktemp("bundle"))
    return load_weights(TINY_HYPERPRIOR), load_weights(bundle)


def test_export_is_deterministic_and_keeps_the_weights_id(tiny_weights_path, tmp_path):
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    a, b = (export(tiny_weights_path, tmp_path / d).read_bytes() for d in "ab")
    assert a == b and is_bundle(a)
    assert read_bundle(a).weights_id == load_weights(tiny_weights_path).weights_id


@pytest.mark.parametrize("pair", ["tiny_pair", "hyper_pair"])
def test_every_onnx_stage_matches_the_torch_model(pair, request):
    torch_wts, onnx_wts = request.getfixturevalue(pair)
    assert (torch_wts.transforms.name, onnx_wts.transforms.name) == ("torch", "onnx")
    rng = np.random.default_rng(0)
    inputs = {"analysis": lambda w: rng.random((3, 64, 64), dtype=np.float32),
              "synthesis": lambda w: rng.normal(0, 3, (w, 4, 4)).astype(np.float32),
              "hyper_analysis": lambda w: rng.normal(0, 3, (w, 8, 8)).astype(np.float32),
              "hyper_mean": lambda w: rng.random((w * 3 // 2, 8, 8), dtype=np.float32)}
    for stage in torch_wts.model.STAGES:
        for w in torch_wts.widths:
            x = inputs[stage](w)
            ours, theirs = onnx_wts.run(stage, w, x), torch_wts.run(stage, w, x)
            assert ours.shape == theirs.shape
            assert np.abs(ours - theirs).max() <= 1e-4 * max(1.0, np.abs(theirs).max()), (stage, w)


@pytest.mark.parametrize("pair", ["tiny_pair", "hyper_pair"])
def test_a_file_encoded_with_either_runtime_decodes_with_the_other(pair, request):
    torch_wts, onnx_wts = request.getfixturevalue(pair)
    image = gradient_image(72, 40)
    for w in torch_wts.widths:
        for enc, dec in ((torch_wts, onnx_wts), (onnx_wts, torch_wts)):
            data = codec.encode(image, w, weights=enc)
            _, ours, _ = codec.decode_latents(data, weights=dec)
            _, theirs, _ = codec.decode_latents(data, weights=enc)
            for key in ("y", "z", "indexes"):  # symbols and table choice: bit-exact
                if key in theirs:
                    np.testing.assert_array_equal(ours[key], theirs[key])
            a = np.asarray(codec.decode(data, weights=dec), np.int16)
            b = np.asarray(codec.decode(data, weights=enc), np.int16)
            assert np.abs(a - b).max() <= 1  # pixel tolerance between runtimes


def test_a_stage_run_in_several_tiles_frees_its_runtime_buffers_and_runs_again(tiny_pair):
    """After a large image the stage's onnxruntime session (and its arena) is dropped; a one-tile
    image keeps it for the next call."""
    _, onnx_wts = tiny_pair
    sessions = onnx_wts.transforms._sessions
    small = codec.encode(gradient_image(40, 24), 8, weights=onnx_wts)
    codec.decode(small, weights=onnx_wts)
    assert any(key[:2] == ("synthesis", 8) for key in sessions)
    pixels = codec.synthesize(onnx_wts, np.zeros((8, 3, 5), np.float32), 8, 40, 72, tile=2)  # 2×3 tiles
    assert pixels.shape == (40, 72, 3) and not any(key[:2] == ("synthesis", 8) for key in sessions)
    assert codec.decode(small, weights=onnx_wts).size == (40, 24)


def test_the_shipped_bundle_runs_the_shipped_weights(kodim_crop):
    onnx_path = shipped_weights_path(DEFAULT_WEIGHTS_ID, "onnx")
    torch_path = shipped_weights_path(DEFAULT_WEIGHTS_ID, "torch")
    assert onnx_path is not None and torch_path is not None
    ours, theirs = load_weights(onnx_path), load_weights(torch_path)
    assert ours.weights_id == theirs.weights_id == bytes.fromhex(DEFAULT_WEIGHTS_ID)
    for w in (192, 48):
        a = codec.analyze(ours, np.asarray(kodim_crop), w)
        b = codec.analyze(theirs, np.asarray(kodim_crop), w)
        assert np.abs(a - b).max() < 0.02  # float32 kernels summing in another order
        data = codec.encode(kodim_crop, w, weights=theirs)
        pa = np.asarray(codec.decode(data, weights=ours), np.int16)
        pb = np.asarray(codec.decode(data, weights=theirs), np.int16)
        assert np.abs(pa - pb).max() <= 1


def test_the_shipped_bundle_is_the_export_of_the_shipped_weights():
    from slimcodec.tools.export_runtime import export_bundle

    shipped = shipped_weights_path(DEFAULT_WEIGHTS_ID, "onnx").read_bytes()
    assert export_bundle(shipped_weights_path(DEFAULT_WEIGHTS_ID, "torch")) == shipped


def test_a_narrower_widths_kernels_are_stored_as_views_of_the_widest(tmp_path):
    data = export(TINY_HYPERPRIOR, tmp_path).read_bytes()
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        manifest = json.loads(zf.read("manifest.json"))
        stored = set(np.load(io.BytesIO(zf.read("arrays.npz"))).files)
    bundle = read_bundle(data)
    widest, *narrower = bundle.widths
    for w in narrower:
        kernels = [k for k in bundle.arrays if k.startswith(f"graph_synthesis.{w}.w")]
        assert kernels and all(manifest["views"][k][0].startswith(f"graph_synthesis.{widest}.") for k in kernels)
    assert not stored & set(manifest["views"])
    ours = load_weights_bytes(data)
    x = np.random.default_rng(1).normal(0, 3, (narrower[-1], 4, 4)).astype(np.float32)
    theirs = load_weights(TINY_HYPERPRIOR)
    assert np.abs(ours.run("synthesis", narrower[-1], x) - theirs.run("synthesis", narrower[-1], x)).max() < 1e-4


def test_leading_block_views_keep_arrays_that_are_not_blocks():
    a = np.arange(24, dtype=np.float16).reshape(4, 6)
    arrays = {"k.8.w": a, "k.4.w": a[:2, :3].copy(), "k.2.w": a[1:3, :2].copy(), "other": a, "k.3.n": np.array(5)}
    stored, views = leading_block_views(arrays)
    assert views == {"k.4.w": ("k.8.w", (2, 3))}
    assert set(stored) == {"k.8.w", "k.2.w", "other", "k.3.n"}


def _with_manifest(data: bytes, change) -> bytes:
    """The bundle ``data`` with its manifest passed through ``change``."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            body = src.read(info)
            if info.filename == "manifest.json":
                manifest = json.loads(body)
                change(manifest)
                body = json.dumps(manifest).encode()
            dst.writestr(info, body)
    return out.getvalue()


def test_a_bundle_whose_views_do_not_fit_their_source_is_refused(tmp_path):
    data = export(TINY_HYPERPRIOR, tmp_path).read_bytes()
    name = next(iter(json.loads(zipfile.ZipFile(io.BytesIO(data)).read("manifest.json"))["views"]))

    def missing(m):
        m["views"][name][0] = "graph_synthesis.9999.w1"

    def too_large(m):
        m["views"][name][1] = [10**6 for _ in m["views"][name][1]]

    for change in (missing, too_large):
        with pytest.raises(SlimError, match="runtime bundle is damaged"):
            load_weights_bytes(_with_manifest(data, change))


def test_a_graph_whose_weights_are_missing_fails_and_reads_no_stray_file(tmp_path, monkeypatch):
    data = export(TINY_HYPERPRIOR, tmp_path).read_bytes()
    narrowest = read_bundle(data).widths[-1]

    def drop_one(m):  # a narrower width's kernels are views: forget one
        del m["views"][next(k for k in sorted(m["views"]) if k.startswith(f"graph_synthesis.{narrowest}.w"))]

    damaged = load_weights_bytes(_with_manifest(data, drop_one))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "arrays.npz").write_bytes(b"\x01" * (1 << 20))
    with pytest.raises(SlimError, match=f"graph synthesis-{narrowest} does not load"):
        damaged.run("synthesis", narrowest, np.zeros((narrowest, 4, 4), np.float32))


def _embed_weights(data: bytes) -> bytes:
    """A version-1 bundle (each graph holding its weights) with the contents of a version-2 one."""
    import onnx
    from onnx import numpy_helper

    bundle = read_bundle(data)
    graphs = {}
    for (stage, w), graph in bundle.graphs.items():
        model = onnx.load_from_string(graph)
        del model.graph.initializer[:]
        prefix = f"graph_{stage}.{w}."
        model.graph.initializer.extend(numpy_helper.from_array(np.ascontiguousarray(a), k)
                                       for k, a in bundle.arrays.items() if k.startswith(prefix))
        graphs[stage, w] = model.SerializeToString()
    arrays = {k: v for k, v in bundle.arrays.items() if not k.startswith("graph_")}
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        manifest = {"format": "slimcodec-runtime", "format_version": 1, "weights_id": bundle.weights_id.hex(),
                    "architecture": bundle.architecture, "widths": list(bundle.widths),
                    "stages": list(bundle.stages), "meta": bundle.meta}
        zf.writestr("manifest.json", json.dumps(manifest))
        npz = io.BytesIO()
        np.savez(npz, **arrays)
        zf.writestr("arrays.npz", npz.getvalue())
        for (stage, w), graph in graphs.items():
            zf.writestr(f"graphs/{stage}-{w}.onnx", graph)
    return out.getvalue()


def test_a_version_1_bundle_with_weights_inside_its_graphs_still_runs(tmp_path):
    v2 = load_weights_bytes(export(TINY_HYPERPRIOR, tmp_path).read_bytes())
    v1 = load_weights_bytes(_embed_weights(export(TINY_HYPERPRIOR, tmp_path).read_bytes()))
    image = gradient_image(72, 40)
    for w in v2.widths:
        data = codec.encode(image, w, weights=v2)
        assert codec.encode(image, w, weights=v1) == data
        assert np.array_equal(np.asarray(codec.decode(data, weights=v1)), np.asarray(codec.decode(data, weights=v2)))


def test_a_damaged_bundle_is_refused_with_a_slim_error(tiny_weights_path, tmp_path):
    data = export(tiny_weights_path, tmp_path).read_bytes()
    for broken in (data[: len(data) // 2], data[:-22]):
        with pytest.raises(SlimError):
            load_weights_bytes(broken)
    other = tmp_path / "other.zip"
    with zipfile.ZipFile(other, "w") as zf:
        zf.writestr("manifest.json", b'{"format": "something else"}')
    with pytest.raises(SlimError, match="not a slimcodec runtime bundle"):
        load_weights_bytes(other.read_bytes())


def test_slim_backend_picks_the_shipped_form(monkeypatch):
    monkeypatch.setenv("SLIM_BACKEND", "torch")
    assert shipped_weights_path(DEFAULT_WEIGHTS_ID).suffix == ".pt"
    monkeypatch.setenv("SLIM_BACKEND", "onnx")
    assert shipped_weights_path(DEFAULT_WEIGHTS_ID).name.endswith(".onnx.zip")
    monkeypatch.setenv("SLIM_BACKEND", "tensorflow")
    with pytest.raises(SlimError, match="SLIM_BACKEND"):
        runtime.chosen_backend()


def test_threads_come_from_slim_threads_unless_set(monkeypatch):
    monkeypatch.setattr(runtime, "_threads", None)
    monkeypatch.setenv("SLIM_THREADS", "3")
    assert runtime.threads() == 3
    runtime.set_threads(1)
    assert runtime.threads() == 1
    with pytest.raises(ValueError):
        runtime.set_threads(0)


BLOCK_TORCH = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "torchvision", "compressai", "onnx"):
            raise ImportError(f"{name} is blocked: the light install has no torch")
sys.meta_path.insert(0, Block())
import importlib.util
_find = importlib.util.find_spec
importlib.util.find_spec = lambda name, *a: None if name.split(".")[0] in ("torch", "onnx") else _find(name, *a)
from slimcodec.cli.main import main
sys.argv = ["slim"] + sys.argv[1:]
try:
    main()
finally:
    assert not any(m.split(".")[0] in ("torch", "compressai") for m in sys.modules), "torch was imported"
"""


def test_encode_and_decode_run_without_torch(tmp_path):
    src = tmp_path / "in.png"
    gradient_image(96, 64).save(src)
    for args in (["encode", str(src), "-o", str(tmp_path / "a.slim"), "-w", "48"],
                 ["decode", str(tmp_path / "a.slim"), "-o", str(tmp_path / "a.png")],
                 ["info", str(tmp_path / "a.slim")]):
        done = subprocess.run([sys.executable, "-c", BLOCK_TORCH, *args], capture_output=True, text=True,
                              env={"PATH": "/usr/bin:/bin", "SLIM_WORKERS": "1"}, timeout=120)
        assert done.returncode == 0, done.stderr
    assert (tmp_path / "a.png").stat().st_size > 0


def test_limit_malloc_arenas_is_harmless_and_leaves_an_explicit_setting_alone(monkeypatch):
    """Issue 30: glibc's per-thread malloc arenas reserved over a gigabyte of address space."""
    import sys

    from slimcodec import runtime

    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert runtime.limit_malloc_arenas() is False
    monkeypatch.delenv("MALLOC_ARENA_MAX")
    assert runtime.limit_malloc_arenas() in (True, False)  # True on Linux with glibc
    if not sys.platform.startswith("linux"):
        assert runtime.limit_malloc_arenas() is False
