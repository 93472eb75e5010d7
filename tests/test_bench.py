"""slimcodec.tools.bench on tiny sizes with the tiny model (mechanics only; no timing claims)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from slimcodec.tools import bench


def test_large_test_images_are_mirror_tiled_without_seams():
    base = bench.make_image(None, bench.SIZES["kodak"])
    big = bench.make_image(None, (2000, 1100))
    assert base.shape == (512, 768, 3) and big.shape == (1100, 2000, 3)
    assert np.array_equal(big[:512, :768], base)
    assert np.array_equal(big[:512, 768:1536], base[:, ::-1])  # mirrored: the seam is continuous
    assert np.array_equal(big[512:1024, :768], base[::-1])


def test_a_source_photo_is_brought_to_kodak_size(tmp_path):
    from conftest import gradient_image

    gradient_image(300, 400).save(tmp_path / "portrait.png")
    assert bench.make_image(tmp_path / "portrait.png", (768, 512)).shape == (512, 768, 3)


def test_timed_runs_reproduce_the_untimed_api(tiny_weights):
    rgb = bench.make_image(None, (80, 48))
    row = bench.bench_slim(tiny_weights, rgb, 8, repeats=1)
    assert row["matches_api"] is True
    assert row["bpp"] == pytest.approx(8 * row["num_bytes"] / (80 * 48))
    assert set(row["enc_s"]) == set(row["dec_s"]) == {"transform", "entropy", "container", "total"}
    for stages in (row["enc_s"], row["dec_s"]):
        assert stages["total"] >= max(stages["transform"], stages["entropy"], stages["container"]) > 0


def test_main_prints_the_table_and_writes_json(tiny_weights_path, tmp_path, capsys):
    out = tmp_path / "bench.json"
    code = bench.main(["--sizes", "64x48", "--weights", str(tiny_weights_path), "--repeats", "1",
                       "--peers", "jpeg420", "--no-compressai", "--no-memory", "--threads", "1",
                       "--json", str(out), "--quiet"])
    assert code == 0
    text = capsys.readouterr().out
    assert "torch threads: 1 (set by --threads" in text
    assert "| slimcodec | w8 |" in text and "| jpeg420 | quality 75 |" in text
    assert "encode time w4/w8" in text
    result = json.loads(out.read_text())
    assert [r["setting"] for r in result["sizes"]["64x48"]["rows"]][:2] == [8, 4]


def test_memory_is_measured_in_a_fresh_process(tiny_weights_path):
    config = {"source": None, "size": [64, 48], "threads": 1, "weights": str(tiny_weights_path),
              "width": 8, "op": "encode"}
    m = bench.measure_memory(config)
    assert "error" not in m, m
    assert m["peak_bytes"] >= m["before_bytes"] > 0


def test_invalid_size_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        bench.main(["--sizes", "huge"])
    assert exc.value.code == 2


def test_the_hyperpriors_networks_count_as_transform_not_entropy(tmp_path):
    import torch

    from slimcodec import codec
    from slimcodec.models.hyperprior import SlimCAEHyperprior
    from slimcodec.weights import load_weights, save_weights

    torch.manual_seed(0)
    save_weights(SlimCAEHyperprior((8,)), tmp_path / "h.pt")
    wts = load_weights(tmp_path / "h.pt")
    rgb = bench.make_image(None, (80, 48))
    data, enc = bench.slim_encode_staged(wts, rgb, 8)
    pixels, dec = bench.slim_decode_staged(wts, data)
    assert np.array_equal(pixels, np.asarray(codec.decode(data, weights=wts)))
    for stages in (enc, dec):
        assert min(stages.values()) >= 0
        assert stages["transform"] + stages["entropy"] + stages["container"] == pytest.approx(stages["total"], rel=0.05)


def _meta(**extra) -> dict:
    return {"meta": {"torch_threads": 2, "threads_note": "machine default", "repeats": 5, "large_repeats": 3,
                     "machine": {"cores": 2}, **extra}, "sizes": {}}


def test_the_busy_banner_follows_the_cores_measured_busy_not_the_lagging_load_average():
    trainer_just_paused = _meta(load_average=[1.9, 1.5, 1.2], busy_cores=0.02, busy_cores_end=0.05)
    trainer_running = _meta(load_average=[0.1, 0.1, 0.1], busy_cores=0.1, busy_cores_end=1.9)
    assert "machine was busy" not in bench.format_markdown(trainer_just_paused)
    assert "1.9 of 2 cores busy with other work" in bench.format_markdown(trainer_running)
    assert "load average 1.9 on 2 cores" in bench.format_markdown(_meta(load_average=[1.9, 1.5, 1.2]))


def test_busy_cores_is_a_share_of_this_machines_cores():
    from slimcodec.tools.machine import busy_cores

    busy = busy_cores(0.05)
    assert busy is None or 0 <= busy <= os.cpu_count()


def test_the_whole_process_benchmark_runs_as_a_smoke_test():
    """benchmarks/cli_speed.py (issue 32's table) on the repository's sample, slim alone: one
    counted encode and decode as fresh processes, and a table row for slim."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, str(root / "benchmarks" / "cli_speed.py"), "--sizes", "sample",
                           "--runs", "1", "--peers", "none", "--width", "48"],
                          capture_output=True, text=True, cwd=root, timeout=300)
    assert proc.returncode == 0, proc.stderr
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| sample (")]
    assert len(rows) == 1 and "| slim w48 |" in rows[0], proc.stdout
    cells = [c.strip() for c in rows[0].split("|")[1:-1]]
    assert float(cells[3].removesuffix(" s")) > 0 and float(cells[5].removesuffix(" s")) > 0
