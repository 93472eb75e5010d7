"""Effort levels: the encoder refines latents for a lower objective; the decoder is unchanged."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import gradient_image
from PIL import Image

from slimcodec import codec, effort
from slimcodec.errors import SlimError

VECTORS = Path(__file__).resolve().parents[1] / "formats" / "vectors"


def objective(wts, image, data: bytes, width: int) -> float:
    """λ·255²·MSE + bpp of a real file (the quantity effort lowers)."""
    rgb = np.asarray(image.convert("RGB"), np.float64)
    out = np.asarray(codec.decode(data, weights=wts).convert("RGB"), np.float64)
    lam = effort._lambda(wts, width) * 255**2
    return lam * np.mean((rgb - out) ** 2) / 255**2 + 8 * len(data) / (rgb.shape[0] * rgb.shape[1])


def test_effort_one_is_the_plain_encoder(tiny_weights):
    image = gradient_image(40, 24)
    assert codec.encode(image, 8, weights=tiny_weights, effort=1) == codec.encode(image, 8, weights=tiny_weights)


@pytest.mark.parametrize("value", [0, 10, 2.5, True, "3"])
def test_an_effort_outside_one_to_nine_is_refused(tiny_weights, value):
    with pytest.raises(ValueError, match="effort must be an integer from 1 to 9"):
        codec.encode(gradient_image(16, 16), 8, weights=tiny_weights, effort=value)


def test_refined_latents_never_have_a_higher_model_objective(tiny_weights):
    import torch

    rgb = np.asarray(gradient_image(48, 32))
    y = codec.analyze(tiny_weights, rgb, 8)
    refined, z = effort.refine(tiny_weights, rgb, y, 8, 1.0, 5)
    assert refined.shape == y.shape and refined.dtype == np.float32 and z is None  # factorized: no z
    x = torch.from_numpy(rgb.astype(np.float32) / 255).permute(2, 0, 1)[None]

    def j(latents):
        x_hat, bits = effort._exact_rd(tiny_weights.model, torch.from_numpy(latents)[None], 8, 1.0)
        lam = effort._lambda(tiny_weights, 8) * 255**2
        return float(lam * torch.mean((x_hat[..., :32, :48] - x) ** 2) + bits.sum() / (32 * 48))

    assert j(refined) <= j(y)  # the search never keeps worse latents


def test_effort_lowers_the_shipped_models_objective_on_a_photo(kodim_crop):
    """On real weights and a real photo the search finds better latents and a better z."""
    import torch

    from slimcodec.weights import load_weights

    wts = load_weights()  # the default (channel-conditional) weights, torch form
    rgb = np.asarray(kodim_crop)[:64, :64]
    y = codec.analyze(wts, rgb, 48)
    refined, z = effort.refine(wts, rgb, y, 48, 1.0, 4)
    model = effort.torch_model(wts)
    x = torch.from_numpy(rgb.astype(np.float32) / 255).permute(2, 0, 1)[None]
    lam = effort._lambda(wts, 48) * 255**2

    def j(latents, hyper=None):
        x_hat, bits = effort._exact_rd(model, torch.from_numpy(latents)[None], 48, 1.0,
                                       None if hyper is None else torch.from_numpy(hyper)[None])
        return float(lam * torch.mean((x_hat - x) ** 2) + bits.sum() / (64 * 64))

    assert j(refined, z) < 0.99 * j(y)


@pytest.mark.parametrize("weights_kind", ["factorized", "hyperprior", "channel"])
def test_a_higher_effort_file_decodes_with_the_same_decoder(tiny_weights, weights_kind):
    from slimcodec.weights import load_weights

    paths = {"hyperprior": VECTORS / "v2.0" / "tiny-hyperprior-weights.pt",
             "channel": VECTORS / "v3.0" / "tiny-channel-weights.pt"}
    wts = tiny_weights if weights_kind == "factorized" else load_weights(paths[weights_kind])
    image = gradient_image(72, 40)
    for scale in (1.0, 0.7):
        data = codec.encode(image, 8, weights=wts, effort=4, scale=scale)
        decoded = codec.decode(data, weights=wts)
        assert decoded.size == image.size
        plain = codec.encode(image, 8, weights=wts, scale=scale)
        assert objective(wts, image, data, 8) <= objective(wts, image, plain, 8) * 1.02


def test_large_images_are_refined_tile_by_tile(tiny_weights, monkeypatch):
    monkeypatch.setattr(effort, "REFINE_TILE_LATENTS", 4)
    rgb = np.asarray(gradient_image(150, 90))
    y = codec.analyze(tiny_weights, rgb, 8)
    refined, _ = effort.refine(tiny_weights, rgb, y, 8, 1.0, 3)
    assert refined.shape == y.shape and np.isfinite(refined).all()


def test_a_rate_target_still_holds_at_high_effort(tiny_weights):
    from slimcodec.ratecontrol import choose_setting

    image = gradient_image(64, 48)
    choice = choose_setting(image, target_bpp=2.0, weights=tiny_weights, effort=3)
    assert 8 * len(choice.data) / (64 * 48) <= 2.0


def test_effort_without_torch_says_what_to_install(tiny_weights, monkeypatch):
    from dataclasses import replace

    from slimcodec import runtime

    light = replace(tiny_weights, model=None)
    monkeypatch.setattr(runtime, "installed", lambda backend: backend != "torch")
    with pytest.raises(SlimError, match=r"pip install 'slimcodec\[train\]'"):
        effort.torch_model(light)


def test_cli_and_plugin_take_an_effort(tiny_weights_path, tmp_path):
    from slimcodec.cli.main import cli

    src = tmp_path / "in.png"
    gradient_image(40, 24).save(src)
    result = CliRunner().invoke(cli, ["encode", str(src), "-o", str(tmp_path / "a.slim"), "-w", "8",
                                      "--weights", str(tiny_weights_path), "--effort", "3"], env={"SLIM_WORKERS": "1"})
    assert result.exit_code == 0, result.output
    bad = CliRunner().invoke(cli, ["encode", str(src), "--effort", "12"], env={"SLIM_WORKERS": "1"})
    assert bad.exit_code == 2
    buffer = io.BytesIO()
    gradient_image(40, 24).save(buffer, format="SLIM", width=8, weights=str(tiny_weights_path), effort=2)
    assert Image.open(io.BytesIO(buffer.getvalue())).size == (40, 24)
