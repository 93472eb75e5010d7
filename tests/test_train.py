"""Training mechanics on a tiny model: exact resume, export, λ-scheduling (no real training)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import gradient_image
from PIL import Image

from slimcodec import codec
from slimcodec.train import main
from slimcodec.weights import load_weights


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> tuple[Path, Path]:
    """A training folder of six 40×32 pictures and a validation folder of two."""
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    for name, count in (("train", 6), ("val", 2)):
        (root / name).mkdir()
        for i in range(count):
            base = np.asarray(gradient_image(40, 32)).astype(int)
            noisy = np.clip(base + rng.integers(-30, 31, base.shape), 0, 255).astype(np.uint8)
            Image.fromarray(noisy).save(root / name / f"{i}.png")
    return root / "train", root / "val"


def run(folders, checkpoint: Path, *extra) -> None:
    train, val = folders
    args = ["--data", str(train), "--val", str(val), "--checkpoint", str(checkpoint), "--init", "none",
            "--widths", "8", "4", "--batch-size", "2", "--patch-size", "16", "--threads", "1",
            "--no-bf16", "--lr", "1e-3", "--log-every", "1", "--checkpoint-every", "1", "--val-every", "3",
            *map(str, extra)]
    assert main(args) == 0


def model_state(checkpoint: Path) -> dict:
    return torch.load(checkpoint, weights_only=False)


def test_resume_continues_exactly_where_an_uninterrupted_run_would_be(folders, tmp_path):
    run(folders, tmp_path / "straight.pt", "--steps", 6)
    run(folders, tmp_path / "resumed.pt", "--steps", 2)
    run(folders, tmp_path / "resumed.pt", "--steps", 6)
    a, b = model_state(tmp_path / "straight.pt"), model_state(tmp_path / "resumed.pt")
    assert a["step"] == b["step"] == 6
    assert a["model"].keys() == b["model"].keys()
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert torch.equal(a["sampler_rng"], b["sampler_rng"])


def test_export_writes_weights_that_code_images(folders, tmp_path, capsys):
    run(folders, tmp_path / "ck.pt", "--steps", 2, "--export", tmp_path / "out.pt")
    out = capsys.readouterr().out
    weights = load_weights(tmp_path / "out.pt")
    assert f"weights id {weights.weights_id.hex()}" in out
    assert weights.widths == (8, 4) and weights.meta["steps"] == 2
    assert set(weights.meta["lambdas"]) == {"8", "4"}
    image = gradient_image(24, 20)
    assert codec.decode(codec.encode(image, 4, weights=weights), weights=weights).size == (24, 20)


def test_warm_start_continues_the_weights_step_count_and_lambdas(folders, tmp_path, capsys):
    run(folders, tmp_path / "first.pt", "--steps", 2, "--lambdas", 0.02, 0.005, "--export", tmp_path / "w.pt")
    run(folders, tmp_path / "second.pt", "--init", tmp_path / "w.pt", "--steps", 4)
    assert "(step 2)" in capsys.readouterr().out
    state = model_state(tmp_path / "second.pt")
    assert state["step"] == 4  # two more steps, not four from zero
    assert {int(k): v for k, v in state["lambdas"].items()} == {8: 0.02, 4: 0.005}


def test_training_logs_loss_rate_and_quality_per_width_and_validates(folders, tmp_path, capsys):
    run(folders, tmp_path / "ck.pt", "--steps", 3)
    out = capsys.readouterr().out
    assert "step 3 " in out and "| w8: " in out and "bpp" in out and "dB" in out
    assert "val step 3 " in out


def test_paper_schedule_reduces_narrow_lambdas_or_undoes_the_trial(folders, tmp_path, capsys):
    run(folders, tmp_path / "ck.pt", "--schedule", "paper", "--stage1-steps", 2, "--trial-steps", 1,
        "--max-reductions", 2, "--steps", 8)
    state = model_state(tmp_path / "ck.pt")
    lambdas = {int(k): v for k, v in state["lambdas"].items()}
    assert lambdas[8] == pytest.approx(4000 / 255**2)  # the widest keeps stage 1's λ
    assert lambdas[4] <= lambdas[8]  # a narrower width's λ is only ever reduced
    assert state["schedule"]["pair"] >= 1  # the slope search went through the pair


def test_time_limit_stops_without_a_step_limit(folders, tmp_path, capsys):
    run(folders, tmp_path / "ck.pt", "--time-limit-min", 0.002)  # about 0.1 s, no --steps
    out = capsys.readouterr().out
    assert "stopped (time limit, SIGTERM or Ctrl-C)" in out
    assert (tmp_path / "ck.pt").exists()
