"""Training mechanics on tiny models: exact resume, EMA, lr schedule, export, training state."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import gradient_image
from PIL import Image

from slimcodec import codec
from slimcodec.tools.train import lr_at, main
from slimcodec.weights import load_weights


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> tuple[Path, Path]:
    """A training folder of six 72×64 pictures and a validation folder of two."""
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    for name, count in (("train", 6), ("val", 2)):
        (root / name).mkdir()
        for i in range(count):
            base = np.asarray(gradient_image(72, 64)).astype(int)
            noisy = np.clip(base + rng.integers(-30, 31, base.shape), 0, 255).astype(np.uint8)
            Image.fromarray(noisy).save(root / name / f"{i}.png")
    return root / "train", root / "val"


def tiny_args(folders, checkpoint: Path, *extra, arch: str = "factorized") -> list[str]:
    """Trainer arguments for the tiny two-width model on ``folders`` (``extra`` last, so it overrides)."""
    train, val = folders
    return ["--arch", arch, "--data", str(train), "--val", str(val), "--checkpoint", str(checkpoint),
            "--init", "none", "--widths", "8", "4", "--lambdas", "0.02", "0.005", "--batch-size", "2",
            "--patch-size", "64", "--threads", "1", "--no-bf16", "--lr", "1e-3", "--warmup-steps", "2",
            "--log-every", "1", "--checkpoint-every", "1", "--val-every", "3", *map(str, extra)]


def run(folders, checkpoint: Path, *extra, arch: str = "factorized") -> None:
    assert main(tiny_args(folders, checkpoint, *extra, arch=arch)) == 0


def state(checkpoint: Path) -> dict:
    return torch.load(checkpoint, weights_only=True)


@pytest.mark.parametrize("arch", ["factorized", "hyperprior", "channel"])
def test_resume_continues_exactly_where_an_uninterrupted_run_would_be(folders, tmp_path, arch):
    run(folders, tmp_path / "straight.pt", "--steps", 4, arch=arch)
    run(folders, tmp_path / "resumed.pt", "--steps", 2, arch=arch)
    run(folders, tmp_path / "resumed.pt", "--steps", 4, arch=arch)
    a, b = state(tmp_path / "straight.pt"), state(tmp_path / "resumed.pt")
    assert a["step"] == b["step"] == 4 and a["architecture"] == f"slimcae-{arch}"
    for part in ("model", "ema"):
        assert a[part].keys() == b[part].keys()
        for key in a[part]:
            assert torch.equal(a[part][key], b[part][key]), (part, key)
    assert torch.equal(a["sampler_rng"], b["sampler_rng"])


def test_the_ema_lags_the_trained_weights(folders, tmp_path):
    run(folders, tmp_path / "ck.pt", "--steps", 3, "--ema-decay", 0.9)
    s = state(tmp_path / "ck.pt")
    key = "g_a.0.weight"
    assert not torch.equal(s["ema"][key], s["model"][key])


def test_a_checkpoint_of_another_architecture_is_refused(folders, tmp_path):
    run(folders, tmp_path / "ck.pt", "--steps", 1)
    with pytest.raises(SystemExit, match="not a hyperprior training state"):
        run(folders, tmp_path / "ck.pt", "--steps", 2, arch="hyperprior")


def test_lr_warms_up_stays_constant_then_decays_to_a_tenth():
    assert lr_at(0, 1.0, 0, 0, warmup=4) == 0.25 and lr_at(3, 1.0, 0, 0, warmup=4) == 1.0
    assert lr_at(12, 1.0, 0, 0, warmup=4, adam_start=10) == 0.75  # warm-up restarts with Adam
    assert lr_at(500, 1.0, 1000, 2000) == 1.0
    assert lr_at(1500, 1.0, 1000, 2000) == pytest.approx(0.55)
    assert lr_at(2000, 1.0, 1000, 2000) == pytest.approx(0.1) == lr_at(9000, 1.0, 1000, 2000)


def test_warm_up_after_the_decay_ramps_to_the_floor_not_the_base_rate():
    rates = [lr_at(s, 1.0, 1000, 2000, warmup=100, adam_start=5000) for s in range(5000, 5200)]
    assert rates[0] == pytest.approx(0.001) and max(rates) == pytest.approx(0.1) == rates[-1]


@pytest.mark.parametrize("arch", ["factorized", "hyperprior", "channel"])
def test_export_writes_weights_that_code_images(folders, tmp_path, capsys, arch):
    run(folders, tmp_path / "ck.pt", "--steps", 2, "--export", tmp_path / "out.pt", arch=arch)
    weights = load_weights(tmp_path / "out.pt")
    assert weights.architecture == f"slimcae-{arch}"
    assert f"weights id {weights.weights_id.hex()}" in capsys.readouterr().out
    assert weights.widths == (8, 4) and weights.meta["steps"] == 2
    image = gradient_image(24, 20)
    assert codec.decode(codec.encode(image, 4, weights=weights), weights=weights).size == (24, 20)


def test_a_training_state_continues_its_step_count_lambdas_and_weights(folders, tmp_path, capsys):
    run(folders, tmp_path / "first.pt", "--steps", 2, "--save-state", tmp_path / "state.pt", arch="hyperprior")
    saved = state(tmp_path / "state.pt")
    assert saved["format"] == "slimcodec-ema-state" and saved["ema"]["g_a.0.weight"].dtype == torch.float16
    run(folders, tmp_path / "second.pt", "--init", tmp_path / "state.pt", "--steps", 3, arch="hyperprior")
    assert "(step 2)" in capsys.readouterr().out
    assert state(tmp_path / "second.pt")["step"] == 3  # one more step, not three from zero


def test_a_channel_model_starts_from_a_hyperprior_state_as_that_hyperprior(folders, tmp_path, capsys):
    run(folders, tmp_path / "h.pt", "--steps", 2, "--save-state", tmp_path / "state.pt", arch="hyperprior")
    saved = state(tmp_path / "state.pt")
    # no step beyond the state's: the checkpoint holds the model the channel run starts from
    run(folders, tmp_path / "c.pt", "--init", tmp_path / "state.pt", "--steps", 2, "--export", tmp_path / "c-w.pt",
        arch="channel")
    assert "every slice context zero" in capsys.readouterr().out
    started = state(tmp_path / "c.pt")
    assert started["architecture"] == "slimcae-channel" and started["step"] == 2
    assert started["config"] == {"slice_channels": 4, "context_channels": 64}
    for key, value in saved["ema"].items():
        assert torch.equal(started["model"][key], value.float()), key
    outer = [k for k in started["model"] if k.endswith("outer.weight")]
    assert outer and all(not started["model"][k].any() for k in outer)
    # it codes as the hyperprior of that state does: the same symbols and table indexes
    from slimcodec.models.hyperprior import SlimCAEHyperprior
    from slimcodec.weights import save_weights

    hyperprior = SlimCAEHyperprior(saved["widths"])
    hyperprior.load_state_dict({**hyperprior.state_dict(), **{k: v.float() for k, v in saved["ema"].items()}})
    save_weights(hyperprior, tmp_path / "h-w.pt")
    image = gradient_image(40, 24)
    ours, theirs = (codec.decode_latents(codec.encode(image, 8, weights=load_weights(tmp_path / p)),
                                         weights=load_weights(tmp_path / p))[1] for p in ("c-w.pt", "h-w.pt"))
    assert np.array_equal(ours.y, theirs.y) and np.array_equal(ours.indexes, theirs.indexes)
    # and then trains its slice contexts, resuming its own checkpoints
    run(folders, tmp_path / "c.pt", "--steps", 3, arch="channel")
    assert state(tmp_path / "c.pt")["step"] == 3 and any(state(tmp_path / "c.pt")["model"][k].any() for k in outer)


def test_a_factorized_state_does_not_start_a_channel_model(folders, tmp_path):
    run(folders, tmp_path / "f.pt", "--steps", 1, "--save-state", tmp_path / "state.pt")
    with pytest.raises(SystemExit, match="holds a slimcae-factorized model, not slimcae-channel"):
        run(folders, tmp_path / "c.pt", "--init", tmp_path / "state.pt", "--steps", 2, arch="channel")


def test_training_logs_rate_and_quality_per_width_and_validates_the_ema(folders, tmp_path, capsys):
    run(folders, tmp_path / "ck.pt", "--steps", 3, "--curve", tmp_path / "curve.jsonl", arch="hyperprior")
    out = capsys.readouterr().out
    assert "step 3 " in out and "| w8: " in out and "bpp" in out and "dB" in out
    assert "val step 3 (EMA" in out
    assert len((tmp_path / "curve.jsonl").read_text().splitlines()) == 2  # step 0 and step 3


def test_time_limit_stops_without_a_step_limit(folders, tmp_path, capsys):
    run(folders, tmp_path / "ck.pt", "--time-limit-min", 0.002)  # about 0.1 s, no --steps
    assert "stopped (time limit, SIGTERM or Ctrl-C)" in capsys.readouterr().out
    assert (tmp_path / "ck.pt").exists()


@pytest.mark.parametrize("extra", [(), ("--entropy-only",)])
def test_gpu_script_trains_and_returns_the_state_in_pieces(folders, tmp_path, extra):
    """scripts/gpu-train.sh on the CPU with a tiny channel model (the install step needs the device)."""
    import os
    import subprocess
    import sys

    out = tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "OUT": str(out), "DEVICE": "cpu", "PYTHON": sys.executable, "SKIP_INSTALL": "1",
           "DATA": str(folders[0]), "INIT": "none", "BATCH": "2", "CHECKPOINT": str(tmp_path / "ck.pt")}
    script = Path(__file__).resolve().parents[1] / "scripts" / "gpu-train.sh"
    done = subprocess.run(["bash", str(script), "--widths", "8", "4", "--patch-size", "64", "--steps", "2",
                    "--threads", "1", *extra], env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    pieces = sorted(out.glob("state.pt.part-*"))
    assert pieces and (out / "train.log").exists()
    joined = tmp_path / "state.pt"
    joined.write_bytes(b"".join(p.read_bytes() for p in pieces))
    assert state(joined)["step"] == 2 and state(joined)["architecture"] == "slimcae-channel"


def test_native_bf16_is_detected_from_the_cpu_flags(monkeypatch, tmp_path):
    from slimcodec.tools import train

    fake = tmp_path / "cpuinfo"
    fake.write_text("flags : fpu avx2 fma\n")
    real_path = train.Path
    monkeypatch.setattr(train, "Path", lambda p: fake if p == "/proc/cpuinfo" else real_path(p))
    assert train.cpu_has_fast_bf16() is False
    fake.write_text("flags : fpu avx2 avx512f avx512_bf16\n")
    assert train.cpu_has_fast_bf16() is True


def test_curves_print_as_one_markdown_row_per_validation(folders, tmp_path, capsys):
    from slimcodec.tools.curves import main as curves

    run(folders, tmp_path / "ck.pt", "--steps", 3, "--curve", tmp_path / "curve.jsonl")
    capsys.readouterr()
    assert curves([str(tmp_path / "curve.jsonl")]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0] == "| run | step | w8 | w4 |" and len(table) == 4  # header, rule, steps 0 and 3
    assert table[3].startswith("| factorized | 3 | ") and "bpp" in table[3] and "dB" in table[3]


def test_the_variable_rate_term_trains_encoder_hyperprior_and_synthesis(folders, tmp_path):
    from slimcodec.tools.train import Trainer, parse_args

    trainer = Trainer(parse_args(tiny_args(folders, tmp_path / "c.pt", "--val", "", "--vr-max", 16, arch="hyperprior")))
    x = trainer.sampler.batch(2)
    term = trainer.variable_rate_term(x)
    term.backward()
    trained = {n.split(".")[0] for n, p in trainer.model.named_parameters()
               if p.grad is not None and p.grad.abs().sum() > 0}
    assert {"g_a", "g_s", "h_a", "h_s", "h_s_scale", "entropy_bottleneck"} <= trained
    assert torch.isfinite(term) and float(term.detach()) > 0


def test_variable_rate_training_validates_at_the_latent_scale_too(folders, tmp_path, capsys):
    curve = tmp_path / "curve.jsonl"
    run(folders, tmp_path / "ck.pt", "--steps", 3, "--vr-weight", 1, "--val-scale", 8, "--curve", curve,
        arch="hyperprior")
    assert "at latent scale 8 | w8: " in capsys.readouterr().out
    import json

    record = json.loads(curve.read_text().splitlines()[-1])
    assert record["at_scale"]["scale"] == 8 and set(record["at_scale"]["points"]) == {"8", "4"}


def test_curves_diff_gives_the_second_runs_rate_and_psnr_change_per_width(tmp_path, capsys):
    from slimcodec.tools.curves import main as curves

    def record(step, bpp, psnr):
        return json.dumps({"arch": "hyperprior", "step": step, "points": {"8": {"bpp": bpp, "psnr": psnr}}})

    (tmp_path / "control-curve.jsonl").write_text(record(0, 1.0, 30.0) + "\n" + record(10, 1.0, 30.0) + "\n")
    (tmp_path / "arm-curve.jsonl").write_text(record(10, 0.9, 30.5) + "\n" + record(20, 0.8, 31.0) + "\n")
    assert curves(["--diff", str(tmp_path / "control-curve.jsonl"), str(tmp_path / "arm-curve.jsonl")]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert rows[2:] == ["| 10 | -10.0 % +0.50 dB |"]  # step 20 has no control point
    assert curves([str(tmp_path / "control-curve.jsonl"), str(tmp_path / "arm-curve.jsonl")]) == 0
    assert "| arm | 20 |" in capsys.readouterr().out


def test_diag_records_per_module_gradient_norms_and_update_ratios(folders, tmp_path, capsys):
    from slimcodec.tools.curves import main as curves

    run(folders, tmp_path / "ck.pt", "--steps", 4, "--diag", tmp_path / "diag.jsonl", "--diag-every", 2,
        "--clip-mode", "group")
    records = [json.loads(line) for line in (tmp_path / "diag.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [2, 4]
    modules = records[0]["modules"]
    assert {"g_a.0", "g_s.2", "gdn.0"} <= set(modules)
    assert all(m["grad"] > 0 and m["update_ratio"] > 0 for name, m in modules.items() if name.startswith("g_"))
    capsys.readouterr()
    assert curves(["--diag", str(tmp_path / "diag.jsonl"), "--every", "2"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert len(table) == 4 and table[2].startswith("| 1–2 |")


def test_transform_eps_sets_adams_epsilon_of_the_transforms_only(folders, tmp_path):
    from slimcodec.tools.train import Trainer, parse_args

    trainer = Trainer(parse_args(tiny_args(folders, tmp_path / "c.pt", "--val", "", "--transform-eps", "1e-5")))
    trainer.train_step()
    transforms, densities = trainer.opt.param_groups
    assert transforms["eps"] == 1e-5 and densities["eps"] == 1e-8
    assert not any(n.startswith("entropy_bottleneck.") for n, p in trainer.model.named_parameters()
                   if any(p is q for q in transforms["params"]))


@pytest.mark.parametrize("arch", ["hyperprior", "channel"])
def test_entropy_only_trains_the_entropy_model_and_freezes_the_transforms_at_their_average(folders, tmp_path, arch):
    from slimcodec.tools.train import is_transform

    ckpt = tmp_path / "c.pt"
    run(folders, ckpt, "--steps", 3, "--val", "", arch=arch)
    before = state(ckpt)
    run(folders, ckpt, "--steps", 6, "--val", "", "--entropy-only", arch=arch)
    after = state(ckpt)
    moved = {k for k, v in after["model"].items() if v.is_floating_point() and not torch.equal(v, before["model"][k])}
    assert moved and not any(is_transform(k) for k in moved - set(before["ema"]))
    for k, v in after["model"].items():
        if is_transform(k) and k in before["ema"]:  # frozen at the EMA's values, which then stay put
            assert torch.equal(v.float(), before["ema"][k]) and torch.equal(after["ema"][k], before["ema"][k]), k
    assert any(k.startswith(("h_s", "h_a")) for k in moved)
    run(folders, ckpt, "--steps", 7, "--val", "", arch=arch)  # joint training resumes from it
    assert state(ckpt)["step"] == 7
