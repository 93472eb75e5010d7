"""slimcodec.tools.evaluate and slimcodec.tools.peers on tiny generated images with the tiny model."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from conftest import gradient_image

from slimcodec.metrics import psnr
from slimcodec.tools import evaluate as E
from slimcodec.tools import peers as P

SIZES = {"a.png": (176, 168), "b.png": (200, 170)}  # both at least 161 px: MS-SSIM is defined


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("images")
    for name, (w, h) in SIZES.items():
        gradient_image(w, h).save(folder / name)
    (folder / "SOURCE.md").write_text("not an image; ignored\n")
    return folder


@pytest.fixture(scope="module")
def report(image_dir, tiny_weights_path, tmp_path_factory):
    """One evaluation run through main(): (exit code, report folder)."""
    out = tmp_path_factory.mktemp("report")
    code = E.main([str(image_dir), "--weights", str(tiny_weights_path), "--widths", "8,4",
                   "--peers", "jpeg", "-o", str(out), "--quiet", "--threads", "1"])
    return code, out


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


class TestMain:
    def test_main_succeeds_and_writes_every_report_file(self, report):
        code, out = report
        assert code == 0
        expected = {"points.csv", "summary.csv", "bd.csv", "results.json", "report.md"}
        try:
            import matplotlib  # noqa: F401

            expected |= {"rd_psnr.png", "rd_msssim.png"}
        except ImportError:
            pass
        assert expected <= {p.name for p in out.iterdir()}

    def test_points_cover_every_image_width_and_peer_setting(self, report):
        rows = _rows(report[1] / "points.csv")
        per_image = 2 + len(P.PEERS["jpeg420"].settings) + len(P.PEERS["jpeg444"].settings)
        assert len(rows) == len(SIZES) * per_image
        assert {r["image"] for r in rows} == set(SIZES)  # SOURCE.md is not an image
        assert {r["codec"] for r in rows} == {"slimcodec", "jpeg420", "jpeg444"}

    def test_slim_bpp_comes_from_the_real_file_size(self, report, image_dir, tiny_weights):
        from slimcodec.codec import encode

        for row in _rows(report[1] / "points.csv"):
            w, h = SIZES[row["image"]]
            assert (int(row["width_px"]), int(row["height_px"])) == (w, h)
            assert float(row["bpp"]) == pytest.approx(8 * int(row["num_bytes"]) / (w * h), rel=1e-12)
            if row["codec"] == "slimcodec":
                data = encode(gradient_image(w, h), int(row["setting"]), weights=tiny_weights, metadata=False)
                assert int(row["num_bytes"]) == len(data)

    def test_peer_bytes_and_psnr_are_reproducible(self, report):
        row = next(r for r in _rows(report[1] / "points.csv") if r["codec"] == "jpeg420" and r["setting"] == "50")
        rgb = np.asarray(gradient_image(*SIZES[row["image"]]))
        data, decoded = P.PEERS["jpeg420"].run(rgb, 50)
        assert int(row["num_bytes"]) == len(data)
        assert float(row["psnr"]) == pytest.approx(psnr(rgb, decoded), abs=1e-9)

    def test_slim_psnr_is_that_of_the_decoded_file(self, report, tiny_weights):
        from slimcodec.codec import decode, encode

        row = next(r for r in _rows(report[1] / "points.csv") if r["codec"] == "slimcodec")
        image = gradient_image(*SIZES[row["image"]])
        decoded = decode(encode(image, int(row["setting"]), weights=tiny_weights, metadata=False),
                         weights=tiny_weights)
        assert float(row["psnr"]) == pytest.approx(psnr(np.asarray(image), np.asarray(decoded)), abs=1e-9)

    def test_estimated_bpp_does_not_exceed_the_real_one(self, report):
        for row in _rows(report[1] / "points.csv"):
            if row["codec"] == "slimcodec":
                assert 0 < float(row["est_bpp"]) <= float(row["bpp"])
            else:
                assert row["est_bpp"] == ""

    def test_summary_holds_the_means_over_images(self, report):
        points = _rows(report[1] / "points.csv")
        for s in _rows(report[1] / "summary.csv"):
            group = [p for p in points if p["codec"] == s["codec"] and p["setting"] == s["setting"]]
            assert int(s["num_images"]) == len(group) == len(SIZES)
            for key in ("bpp", "psnr", "ms_ssim"):
                assert float(s[key]) == pytest.approx(np.mean([float(p[key]) for p in group]), rel=1e-9)

    def test_json_holds_points_summary_and_a_bd_row_per_peer(self, report):
        result = json.loads((report[1] / "results.json").read_text())
        assert len(result["points"]) == len(_rows(report[1] / "points.csv"))
        assert [r["anchor"] for r in result["bd"]] == ["jpeg420", "jpeg444"]
        assert result["meta"]["widths"] == [8, 4]
        assert result["meta"]["images"] == sorted(SIZES)
        assert result["failures"] == []
        assert all(math.isfinite(p["ms_ssim"]) for p in result["points"])

    def test_report_markdown_names_the_dataset(self, report, image_dir):
        text = (report[1] / "report.md").read_text()
        assert text.startswith(f"## {image_dir.name} (2 images)")
        assert "| slimcodec | w8 |" in text

    def test_unknown_peer_is_a_usage_error(self, image_dir, tiny_weights_path, tmp_path, capsys):
        code = E.main([str(image_dir), "--weights", str(tiny_weights_path), "--peers", "gif",
                       "-o", str(tmp_path), "--quiet"])
        assert code == 2
        assert "unknown peer 'gif'" in capsys.readouterr().err

    def test_unknown_width_is_a_usage_error(self, image_dir, tiny_weights_path, tmp_path, capsys):
        code = E.main([str(image_dir), "--weights", str(tiny_weights_path), "--widths", "192",
                       "--peers", "none", "-o", str(tmp_path), "--quiet"])
        assert code == 2
        assert "valid widths: 8, 4" in capsys.readouterr().err

    def test_a_broken_image_is_reported_and_the_others_evaluated(self, tiny_weights_path, tmp_path):
        folder = tmp_path / "imgs"
        folder.mkdir()
        gradient_image(48, 40).save(folder / "good.png")
        (folder / "broken.png").write_bytes(b"\x89PNG not really")
        out = tmp_path / "out"
        code = E.main([str(folder), "--weights", str(tiny_weights_path), "--peers", "none",
                       "-o", str(out), "--quiet", "--no-plots"])
        assert code == 1
        result = json.loads((out / "results.json").read_text())
        assert [f["image"] for f in result["failures"]] == ["broken.png"]
        assert {p["image"] for p in result["points"]} == {"good.png"}
        assert all(p["ms_ssim"] is None for p in result["points"])  # 48x40 is too small: NaN -> null

    def test_run_eval_without_output_writes_nothing(self, image_dir, tiny_weights, tmp_path, monkeypatch):
        monkeypatch.chdir(tmp_path)
        result = E.run_eval(image_dir, [4], [], None, tiny_weights, limit=1, progress=None)
        assert [p["image"] for p in result["points"]] == ["a.png"]
        assert result["bd"] == [] and result["files"] == {}
        assert list(tmp_path.iterdir()) == []

    def test_an_effort_is_used_for_every_slim_point_and_recorded(self, image_dir, tiny_weights, monkeypatch):
        from slimcodec import codec

        seen = []
        encode = codec.encode_pixels
        monkeypatch.setattr(codec, "encode_pixels", lambda *a, **k: seen.append(k["effort"]) or encode(*a, **k))
        result = E.run_eval(image_dir, [4], [], None, tiny_weights, limit=1, progress=None, effort=2)
        assert seen == [2] and result["meta"]["effort"] == 2
        assert "effort 2" in result["meta"]["codec_labels"]["slimcodec"]
        with pytest.raises(ValueError, match="effort must be an integer"):
            E.run_eval(image_dir, [4], [], None, tiny_weights, limit=1, progress=None, effort=10)


class TestInformationBits:
    def test_counts_table_bits_and_escapes(self):
        from slimcodec.entropy import EntropyTable
        from slimcodec.entropy.tables import information_bits

        # One channel, symbols 0 and 1 (p = 1/2, 1/4), escape p = 1/4.
        table = EntropyTable(np.zeros(1, np.float32), np.zeros(1, np.int32),
                             np.array([[32768, 16384, 16384]], np.int32), np.array([3], np.int32))
        q = np.array([0, 1, 5], np.int32).reshape(1, 1, 3)
        # 1 + 2 bits, then the escape: 2 bits + side 1 + length 5 + value bits (5 - 2 = 3; 3 + 1 = 4 -> 2 bits).
        assert information_bits(q, table) == pytest.approx(1 + 2 + (2 + 1 + 5 + 2))


class TestPeers:
    @pytest.mark.parametrize("name", list(P.PEERS))
    def test_every_available_peer_round_trips_in_memory(self, name):
        peer = P.PEERS[name]
        if peer.available():
            pytest.skip(peer.available())
        rgb = np.asarray(gradient_image(64, 48))
        data, decoded = peer.run(rgb, peer.bench_setting)
        assert isinstance(data, bytes) and len(data) > 0
        assert decoded.shape == rgb.shape and decoded.dtype == np.uint8
        assert psnr(rgb, decoded) > 20

    def test_higher_settings_give_bigger_files(self):
        rgb = np.asarray(gradient_image(96, 64))
        sizes = [len(P.PEERS["jpeg444"].encode(rgb, q)) for q in (10, 50, 90)]
        assert sizes == sorted(sizes) and sizes[0] < sizes[-1]

    def test_aliases_expand_and_duplicates_collapse(self):
        assert P.resolve("jpeg,webp,jpeg420") == ["jpeg420", "jpeg444", "webp"]
        assert P.resolve("none") == [] and P.resolve("") == []
        assert P.resolve("all") == list(P.PEERS)

    def test_unknown_peer_names_the_valid_ones(self):
        with pytest.raises(ValueError, match="valid: jpeg420"):
            P.resolve("jpeg,gif")

    def test_missing_pillow_heif_skips_hevc_cleanly(self, monkeypatch):
        import builtins

        real_import = builtins.__import__

        def fake_import(name, *args, **kwargs):
            if name == "pillow_heif":
                raise ImportError(name)
            return real_import(name, *args, **kwargs)

        monkeypatch.setattr(builtins, "__import__", fake_import)
        runnable, skipped = P.available_peers("hevc,jpeg420")
        assert [p.name for p in runnable] == ["jpeg420"]
        assert "pillow-heif is not installed" in skipped["hevc"]

    def test_non_rgb_input_is_rejected(self):
        with pytest.raises(ValueError, match="uint8"):
            P.PEERS["webp"].encode(np.zeros((8, 8), np.uint8), 50)


def _make_results_module():
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "make_results.py"
    spec = importlib.util.spec_from_file_location("make_results", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class TestMakeResults:
    def test_inlined_sections_links_resolve_from_docs(self):
        inline = _make_results_module().inline_links
        text = "[old](cli-speed-0.1.0.md), [web](https://example.org/x), [here](#effort), [abs](/tmp/x)"
        assert inline(text) == ("[old](results/cli-speed-0.1.0.md), [web](https://example.org/x), "
                                "[here](#effort), [abs](/tmp/x)")

    def test_preliminary_results_page_names_its_subset(self, image_dir, tiny_weights_path, tmp_path):
        docs = tmp_path / "docs"
        code = _make_results_module().main(
            ["--kodak", str(image_dir), "--eval2", str(tmp_path / "missing"), "--limit", "1",
             "--weights", str(tiny_weights_path), "--peers", "jpeg420", "--bench-sizes", "none",
             "--docs", str(docs)])
        assert code == 0
        text = (docs / "results.md").read_text()
        assert "Preliminary: a subset only" in text and "kodak: 1 of 2 images (a.png)" in text
        assert "(results/kodak/points.csv)" in text
        assert (docs / "results" / "kodak" / "points.csv").exists()

    def test_reused_bench_is_kept_and_attributed_to_its_weights(self, image_dir, tiny_weights_path, tmp_path):
        docs = tmp_path / "docs"
        (docs / "results").mkdir(parents=True)
        row = {"codec": "slimcodec", "setting": 8, "bpp": 0.5, "enc_s": {"total": 0.0123}, "dec_s": {"total": 0.0456}}
        bench = {"meta": {"weights_id": "00aa00aa00aa00aa", "torch_threads": 2, "threads_note": "machine default",
                          "repeats": 5, "large_repeats": 3, "load_average": [0.1, 0.1, 0.1]},
                 "sizes": {"kodak": {"size": [768, 512], "rows": [row], "ratios": {"w8 decode / encode": 3.7}}}}
        (docs / "results" / "bench.json").write_text(json.dumps(bench))
        code = _make_results_module().main(
            ["--kodak", str(image_dir), "--eval2", str(tmp_path / "missing"), "--limit", "1",
             "--weights", str(tiny_weights_path), "--peers", "jpeg420", "--reuse-bench", "--docs", str(docs)])
        assert code == 0
        text = (docs / "results.md").read_text()
        assert "Measured with weights `00aa00aa00aa00aa` (reused with `--reuse-bench`" in text
        assert "| slimcodec | w8 | 0.500 |" in text and "**12.3**" in text
        assert json.loads((docs / "results" / "bench.json").read_text()) == bench
