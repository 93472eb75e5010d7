"""Files that released slimcodecs wrote with their default weights still decode: the same
symbols bit for bit, and the same pixels up to the runtimes' float rounding."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from slimcodec import codec
from slimcodec.weights import DEFAULT_WEIGHTS_ID

RELEASED = Path(__file__).resolve().parent / "released"
EXPECTED = json.loads((RELEASED / "expected.json").read_text())
NAMES = sorted(k for k in EXPECTED if k != "about")


def _digest(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()[:16]


@pytest.mark.parametrize("name", NAMES)
def test_a_released_file_decodes_to_its_releases_symbols_and_pixels(name):
    data = (RELEASED / f"{name}.slim").read_bytes()
    slim, latents, weights = codec.decode_latents(data)
    assert weights.weights_id.hex() == EXPECTED[name]["weights"]
    for key in ("y", "z", "indexes"):
        if key in EXPECTED[name]:
            assert _digest(latents[key]) == EXPECTED[name][key], key
    ours = np.asarray(codec.decode(data).convert("RGB"), np.int16)
    theirs = np.asarray(Image.open(RELEASED / f"{name}.png").convert("RGB"), np.int16)
    assert ours.shape == theirs.shape and np.abs(ours - theirs).max() <= 1


def test_slim_decode_without_weights_decodes_every_released_file_with_its_own_weights(tmp_path):
    from click.testing import CliRunner

    from slimcodec.cli.main import cli

    sources = [str(RELEASED / f"{name}.slim") for name in NAMES]
    result = CliRunner().invoke(cli, ["decode", *sources, "-o", str(tmp_path), "--quiet"], prog_name="slim")
    assert result.exit_code == 0, result.output
    for name in NAMES:
        ours = np.asarray(Image.open(tmp_path / f"{name}.png").convert("RGB"), np.int16)
        theirs = np.asarray(Image.open(RELEASED / f"{name}.png").convert("RGB"), np.int16)
        assert ours.shape == theirs.shape and np.abs(ours - theirs).max() <= 1, name


def test_slim_decode_of_standard_input_decodes_an_earlier_releases_file_with_its_own_weights(tmp_path):
    from click.testing import CliRunner

    from slimcodec.cli.main import cli

    name = NAMES[0]
    assert EXPECTED[name]["weights"] != DEFAULT_WEIGHTS_ID  # an earlier release's weights
    data = (RELEASED / f"{name}.slim").read_bytes()
    result = CliRunner().invoke(cli, ["decode", "-", "-o", str(tmp_path / "out.png"), "--quiet"], input=data,
                                prog_name="slim")
    assert result.exit_code == 0, result.output
    ours = np.asarray(Image.open(tmp_path / "out.png").convert("RGB"), np.int16)
    theirs = np.asarray(Image.open(RELEASED / f"{name}.png").convert("RGB"), np.int16)
    assert ours.shape == theirs.shape and np.abs(ours - theirs).max() <= 1
