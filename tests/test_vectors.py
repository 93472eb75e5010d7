"""Golden vectors pin the .slim bitstream both ways; invalid files give their reasons."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from slimcodec import codec
from slimcodec.errors import SlimFormatError
from slimcodec.formats.slimfile import WRITTEN_MINOR
from slimcodec.weights import load_weights

VECTORS = Path(__file__).resolve().parents[1] / "formats" / "vectors"
CURRENT = f"v1.{WRITTEN_MINOR[1]}"  # the factorized files this version writes
HYPERPRIOR = f"v2.{WRITTEN_MINOR[2]}"  # the hyperprior files it writes
CHANNEL = f"v3.{WRITTEN_MINOR[3]}"  # the channel-conditional files it writes
VERSIONS = sorted(p.name for p in VECTORS.glob("v*.*") if p.is_dir())
EXPECTED = {v: json.loads((VECTORS / v / "expected.json").read_text()) for v in VERSIONS}
INVALID = json.loads((VECTORS / "invalid" / "expected.json").read_text())
ALL_VECTORS = [(v, name) for v in VERSIONS for name in sorted(EXPECTED[v]["vectors"])]


def _generator():
    """formats/vectors/generate.py as a module (it defines how tables are hashed)."""
    spec = importlib.util.spec_from_file_location("slim_vectors_generate", VECTORS / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def vector_weights():
    weights = {v: load_weights(VECTORS / v / EXPECTED[v]["weights"]) for v in VERSIONS}
    return weights


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_every_format_version_so_far_has_vectors():
    assert VERSIONS == ["v1.0", "v1.1", "v2.0", "v3.0", "v3.1"] and CURRENT in VERSIONS and CHANNEL in VERSIONS


@pytest.mark.parametrize("version", VERSIONS)
def test_vector_weights_have_the_recorded_id(vector_weights, version):
    assert vector_weights[version].weights_id.hex() == EXPECTED[version]["weights_id"]


@pytest.mark.parametrize("version, name", ALL_VECTORS)
def test_vector_decodes_to_the_recorded_symbols_and_pixels(vector_weights, version, name):
    entry = EXPECTED[version]["vectors"][name]
    data = (VECTORS / version / name).read_bytes()
    assert sha256(data) == entry["file_sha256"]
    _, latents, _ = codec.decode_latents(data, weights=vector_weights[version])
    assert sha256(latents["y"].astype("<i4").tobytes()) == entry["symbols_sha256"]
    for key in ("z", "indexes"):  # the hyperprior's z symbols and y's table indexes
        if f"{key}_sha256" in entry:
            assert sha256(latents[key].astype("<i4").tobytes()) == entry[f"{key}_sha256"]
    pixels = np.asarray(codec.decode(data, weights=vector_weights[version]))
    assert sha256(pixels.tobytes()) == entry["pixels_sha256"]


@pytest.fixture(scope="module")
def vector_bundles(tmp_path_factory):
    """The vector weights exported to runtime bundles (the onnx backend)."""
    from slimcodec.tools.export_runtime import export_bundle
    from slimcodec.weights import load_weights_bytes

    return {v: load_weights_bytes(export_bundle(VECTORS / v / EXPECTED[v]["weights"])) for v in VERSIONS}


@pytest.mark.parametrize("version, name", ALL_VECTORS)
def test_vector_decodes_to_the_recorded_symbols_on_the_onnx_runtime(vector_weights, vector_bundles, version, name):
    entry = EXPECTED[version]["vectors"][name]
    data = (VECTORS / version / name).read_bytes()
    _, latents, _ = codec.decode_latents(data, weights=vector_bundles[version])
    for key in ("y", "z", "indexes"):
        if f"{key}_sha256" in entry or key == "y":
            recorded = entry["symbols_sha256" if key == "y" else f"{key}_sha256"]
            assert sha256(latents[key].astype("<i4").tobytes()) == recorded
    ours = np.asarray(codec.decode(data, weights=vector_bundles[version]), np.int16)
    exact = np.asarray(codec.decode(data, weights=vector_weights[version]), np.int16)
    assert np.abs(ours - exact).max() <= 1  # the pixel hash is the torch runtime's


@pytest.mark.parametrize("version, name", [(v, n) for v in (CURRENT, HYPERPRIOR, CHANNEL)
                                           for n in sorted(EXPECTED[v]["vectors"])])
def test_encoding_the_source_gives_the_vector_bytes(vector_weights, version, name):
    entry = EXPECTED[version]["vectors"][name]
    with Image.open(VECTORS / version / entry["source"]) as image:
        data = codec.encode(image, entry["width"], scale=entry["scale"], weights=vector_weights[version])
    assert data == (VECTORS / version / name).read_bytes()


def test_hyperprior_vectors_use_more_than_one_gaussian_table(vector_weights):
    used = set()
    for name in EXPECTED[HYPERPRIOR]["vectors"]:
        data = (VECTORS / HYPERPRIOR / name).read_bytes()
        used |= set(np.unique(codec.decode_latents(data, weights=vector_weights[HYPERPRIOR])[1]["indexes"]).tolist())
    assert len(used) >= 3


def test_channel_vectors_have_tables_chosen_by_the_earlier_slices(vector_weights):
    """The format 3 vectors pin the slice contexts: without them, slice 1's tables would differ."""
    from slimcodec.latents import channel

    weights = vector_weights[CHANNEL]
    moved, scaled = 0, 0
    for name, entry in EXPECTED[CHANNEL]["vectors"].items():
        data = (VECTORS / CHANNEL / name).read_bytes()
        slim, latents, _ = codec.decode_latents(data, weights=weights)
        width, units = entry["width"], codec.latent_units(slim.header)
        c = channel.contexts(weights)[0]
        if width // c < 2:
            continue
        _, head = channel.hyper_synthesis(weights, width).run(latents.z)
        alone = weights.gaussian.indexes(head[c:2 * c], units)
        moved += not np.array_equal(alone, latents.indexes[c:2 * c])
        scaled += units != 4096
    assert moved >= 5 and scaled >= 3


def test_scaled_vectors_code_symbols_other_than_zero(vector_weights):
    scaled = [n for n, e in EXPECTED[CURRENT]["vectors"].items() if e["scale"] != 1.0]
    assert len(scaled) >= 4
    varied = 0
    for name in scaled:
        _, q, _ = codec.decode_symbols_of((VECTORS / CURRENT / name).read_bytes(), weights=vector_weights[CURRENT])
        varied += len(np.unique(q)) > 2
    assert varied >= 3


@pytest.mark.parametrize("key", sorted(EXPECTED[CURRENT]["scaled_tables"]))
def test_scaled_table_is_the_recorded_one(vector_weights, key):
    width, units = map(int, key.split("/"))
    assert _generator().table_digest(vector_weights[CURRENT].table(width, units)) == EXPECTED[CURRENT]["scaled_tables"][key]


@pytest.mark.parametrize("name", sorted(EXPECTED["v1.0"]["vectors"]))
def test_unscaled_1_1_files_differ_from_1_0_only_in_the_minor_version(name):
    old = (VECTORS / "v1.0" / name).read_bytes()
    new = (VECTORS / "v1.1" / name).read_bytes()
    assert new[5] == 1 and old[5] == 0
    body = old[:5] + b"\x01" + old[6:-4]
    assert new == body + struct.pack("<I", zlib.crc32(body))


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_file_is_refused_with_its_reason(vector_weights, name):
    data = (VECTORS / "invalid" / name).read_bytes()
    with pytest.raises(SlimFormatError, match=INVALID[name]):
        codec.decode(data, weights=vector_weights[CURRENT])
