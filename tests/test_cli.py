"""The ``slim`` command line, driven through click's CliRunner with a tiny random-init model."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from conftest import gradient_image

from slimcodec import __version__, outputs
from slimcodec.cli import jobs
from slimcodec.cli.main import cli
from slimcodec.cli.parallel import WORKERS_ENV, resolve_workers
from slimcodec.cli.report import Report, format_bytes


def invoke_slim(args, exit_code: int = 0, env: dict | None = None) -> Result:
    """Run ``slim ARGS`` in-process; on an unexpected exit code, show both streams."""
    runner = CliRunner()
    env = {WORKERS_ENV: "1", **(env or {})}  # serial unless a test asks for workers
    result = runner.invoke(cli, [str(a) for a in args], env=env, prog_name="slim")
    if result.exit_code != exit_code:
        import traceback

        tb = ""
        if result.exc_info and not isinstance(result.exception, SystemExit):
            tb = "".join(traceback.format_exception(*result.exc_info))
        pytest.fail(
            f"slim {' '.join(map(str, args))} exited {result.exit_code}, expected {exit_code}\n"
            f"--- stdout ---\n{result.stdout}--- stderr ---\n{result.stderr}{tb}"
        )
    return result


def stderr_lines(result: Result) -> list[str]:
    return result.stderr.splitlines()


@pytest.fixture
def png(workdir) -> Path:
    path = Path("a.png")
    gradient_image(40, 24).save(path)
    return path


@pytest.fixture
def encoded(png, tiny_weights_path) -> Path:
    invoke_slim(["encode", png, "--weights", tiny_weights_path, "-w", 8])
    return png.with_suffix(".slim")


@pytest.fixture
def photo_tree(workdir) -> Path:
    """photos/b.png, photos/sub/c.jpg, photos/sub/deeper/d.bmp and a non-image photos/sub/bad.png."""
    root = Path("photos")
    (root / "sub" / "deeper").mkdir(parents=True)
    gradient_image(20, 20).save(root / "b.png")
    gradient_image(33, 17).save(root / "sub" / "c.jpg")
    gradient_image(16, 16).save(root / "sub" / "deeper" / "d.bmp")
    (root / "sub" / "bad.png").write_text("this is not a picture")
    (root / "notes.txt").write_text("not an input")
    return root


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


# ---------------------------------------------------------------- group


def test_version_option_prints_the_package_version():
    result = invoke_slim(["--version"])
    assert result.stdout.strip() == f"slim {__version__}"


def test_group_help_documents_the_exit_codes():
    text = invoke_slim(["--help"]).stdout
    assert "Exit codes" in text
    for code in ("0", "1", "2"):
        assert re.search(rf"^\s+{code}\s+\w", text, re.MULTILINE), code


@pytest.mark.parametrize("command", ["encode", "decode", "info"])
def test_every_command_has_help(command):
    result = invoke_slim([command, "--help"])
    assert result.stdout.startswith(f"Usage: slim {command} [OPTIONS]")


def test_encode_help_states_the_codec_default_width():
    from slimcodec.codec import DEFAULT_WIDTH

    assert f"default: {DEFAULT_WIDTH}" in invoke_slim(["encode", "--help"]).stdout


def test_no_command_prints_usage_and_exits_2():
    result = CliRunner().invoke(cli, [])
    assert result.exit_code == 2
    assert "Usage:" in result.output


def test_help_and_info_do_not_import_torch(encoded):
    script = (
        "import sys\n"
        "from slimcodec.cli.main import cli\n"
        "for args in (['--help'], ['info', sys.argv[1]]):\n"
        "    try:\n"
        "        cli.main(args, prog_name='slim')\n"
        "    except SystemExit as exc:\n"
        "        assert exc.code == 0, (args, exc.code)\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'compressai', 'constriction'))\n"
        "assert not heavy, heavy\n"
    )
    proc = subprocess.run([sys.executable, "-c", script, str(encoded)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "image size" in proc.stdout


# ---------------------------------------------------------------- encode / decode


def test_encode_then_decode_round_trips_a_small_png(png, tiny_weights_path):
    from PIL import Image

    invoke_slim(["encode", png, "-o", "x.slim", "--weights", tiny_weights_path, "-w", 8])
    assert Path("x.slim").read_bytes()[:4] == b"SLIM"
    invoke_slim(["decode", "x.slim", "-o", "y.png", "--weights", tiny_weights_path])
    with Image.open("y.png") as im:
        assert im.format == "PNG"
        assert (im.size, im.mode) == ((40, 24), "RGB")


def test_outputs_default_to_the_input_name_with_the_suffix_replaced(png, tiny_weights_path):
    result = invoke_slim(["encode", png, "--weights", tiny_weights_path, "-w", 4])
    assert Path("a.slim").is_file()
    assert "encoded a.png -> a.slim" in result.stderr
    png.unlink()
    result = invoke_slim(["decode", "a.slim", "--weights", tiny_weights_path])
    assert Path("a.png").is_file()
    assert "decoded a.slim -> a.png" in result.stderr


def test_decode_format_follows_the_output_extension(encoded, tiny_weights_path):
    from PIL import Image

    invoke_slim(["decode", encoded, "-o", "out.webp", "--weights", tiny_weights_path])
    with Image.open("out.webp") as im:
        assert im.format == "WEBP"


def test_decode_refuses_an_output_extension_pillow_cannot_write(encoded, tiny_weights_path):
    result = invoke_slim(["decode", encoded, "-o", "out.xyz", "--weights", tiny_weights_path], exit_code=2)
    assert stderr_lines(result) == [
        "error: -o out.xyz: cannot tell the image format from its extension; use e.g. .png, or --format"]
    assert not Path("out.xyz").exists()


def test_output_into_an_existing_folder_keeps_the_input_name(png, tiny_weights_path):
    Path("out").mkdir()
    invoke_slim(["encode", png, "-o", "out", "--weights", tiny_weights_path, "-w", 8])
    assert files_under(Path("out")) == ["a.slim"]


def test_existing_output_is_not_overwritten_without_force(encoded, tiny_weights_path):
    encoded.write_bytes(b"precious")
    result = invoke_slim(["encode", "a.png", "--weights", tiny_weights_path, "-w", 8], exit_code=1)
    assert stderr_lines(result)[0] == ("error: cannot encode a.png: a.slim already exists "
                                       "(use --force to overwrite, or --skip-existing)")
    assert encoded.read_bytes() == b"precious"

    invoke_slim(["encode", "a.png", "--weights", tiny_weights_path, "-w", 8, "--force"])
    assert encoded.read_bytes()[:4] == b"SLIM"


def test_an_existing_output_fails_its_file_in_a_batch_as_for_a_single_file(photo_tree, tiny_weights_path):
    (photo_tree / "sub" / "bad.png").unlink()
    (photo_tree / "b.slim").write_bytes(b"keep me")
    result = invoke_slim(["encode", photo_tree, "--weights", tiny_weights_path, "-w", 4], exit_code=1)
    assert stderr_lines(result)[0] == ("error: cannot encode photos/b.png: photos/b.slim already exists "
                                       "(use --force to overwrite, or --skip-existing)")
    assert stderr_lines(result)[-1].startswith("2 files encoded, 1 file failed;")
    assert (photo_tree / "b.slim").read_bytes() == b"keep me"


@pytest.mark.parametrize("batch", [False, True])
def test_skip_existing_skips_existing_outputs_with_exit_0_for_one_file_and_batches(batch, photo_tree,
                                                                                  tiny_weights_path):
    (photo_tree / "sub" / "bad.png").unlink()
    (photo_tree / "b.slim").write_bytes(b"keep me")
    source = photo_tree if batch else photo_tree / "b.png"
    result = invoke_slim(["encode", source, "--weights", tiny_weights_path, "-w", 4, "--skip-existing"])
    assert f"skipped photos/b.png: photos/b.slim exists (--skip-existing){' [1/3]' if batch else ''}" \
        in stderr_lines(result)
    assert stderr_lines(result)[-1].startswith(f"{2 if batch else 0} files encoded, 1 file skipped;")
    assert (photo_tree / "b.slim").read_bytes() == b"keep me"


def test_force_and_skip_existing_are_a_usage_error(png, tiny_weights_path):
    result = invoke_slim(["encode", png, "--weights", tiny_weights_path, "-w", 4, "--force", "--skip-existing"],
                         exit_code=2)
    assert stderr_lines(result) == ["error: --force and --skip-existing cannot be combined"]


def test_invalid_width_is_a_one_line_usage_error_listing_valid_widths(png, tiny_weights_path):
    result = invoke_slim(["encode", png, "--weights", tiny_weights_path, "--width", 100], exit_code=2)
    assert stderr_lines(result) == ["error: invalid --width 100: valid widths are 8, 4"]
    assert not Path("a.slim").exists()


def test_width_is_checked_before_any_file_is_processed(tiny_weights_path, workdir):
    result = invoke_slim(["encode", "missing.png", "--weights", tiny_weights_path, "-w", 5], exit_code=2)
    assert stderr_lines(result) == ["error: invalid --width 5: valid widths are 8, 4"]


def test_weights_without_the_default_width_ask_for_a_width(png, tiny_weights_path):
    result = invoke_slim(["encode", png, "--weights", tiny_weights_path], exit_code=2)
    (line,) = stderr_lines(result)
    assert "no width 144" in line and "8, 4" in line


def test_foreign_weights_file_is_a_one_line_usage_error(png):
    result = invoke_slim(["encode", png, "--weights", png, "-w", 8], exit_code=2)
    (line,) = stderr_lines(result)
    assert line.startswith("error: --weights a.png: not a slimcodec weights file")


def test_missing_input_fails_with_one_line(tiny_weights_path, workdir):
    result = invoke_slim(["encode", "nothere.png", "--weights", tiny_weights_path, "-w", 8], exit_code=1)
    assert stderr_lines(result)[0] == "error: cannot encode nothere.png: no such file or folder"
    assert stderr_lines(result)[1].startswith("0 files encoded, 1 file failed;")


def test_non_image_input_fails_with_one_line_and_no_traceback(workdir, tiny_weights_path):
    Path("notes.png").write_text("hello")
    result = invoke_slim(["encode", "notes.png", "--weights", tiny_weights_path, "-w", 8], exit_code=1)
    assert stderr_lines(result)[0] == "error: cannot encode notes.png: not an image Pillow can read"
    assert len(stderr_lines(result)) == 2  # the error and the summary
    assert "Traceback" not in result.stderr
    assert not Path("notes.slim").exists()


def test_debug_shows_the_traceback(workdir, tiny_weights_path):
    Path("notes.png").write_text("hello")
    result = invoke_slim(["--debug", "encode", "notes.png", "--weights", tiny_weights_path, "-w", 8], exit_code=1)
    assert "Traceback" in result.stderr


def test_common_options_are_accepted_after_the_command(png, tiny_weights_path):
    result = invoke_slim(["encode", png, "--quiet", "--weights", tiny_weights_path, "-w", 8])
    assert result.stderr == ""


def test_quiet_prints_only_errors(workdir, png, tiny_weights_path):
    Path("notes.png").write_text("hello")
    result = invoke_slim(["--quiet", "encode", png, "notes.png", "--weights", tiny_weights_path, "-w", 8],
                         exit_code=1)
    assert stderr_lines(result) == ["error: cannot encode notes.png: not an image Pillow can read"]


def test_verbose_names_the_weights_and_width(png, tiny_weights_path):
    result = invoke_slim(["-v", "encode", png, "--weights", tiny_weights_path, "-w", 8])
    assert "width 8" in result.stderr and "widths 8, 4" in result.stderr


def test_corrupt_slim_file_fails_with_the_reason_and_leaves_no_output(encoded, tiny_weights_path):
    data = bytearray(encoded.read_bytes())
    data[-8] ^= 0xFF
    encoded.write_bytes(bytes(data))
    Path("a.png").unlink()
    result = invoke_slim(["decode", encoded, "--weights", tiny_weights_path], exit_code=1)
    assert stderr_lines(result)[0] == "error: cannot decode a.slim: checksum mismatch"
    assert files_under(Path(".")) == ["a.slim"]


def test_decoding_with_other_weights_is_refused(encoded, tmp_path_factory):
    import torch

    from slimcodec.models.factorized import SlimCAE
    from slimcodec.weights import save_weights

    other = tmp_path_factory.mktemp("other") / "other.pt"
    torch.manual_seed(1)
    save_weights(SlimCAE((8, 4)), other)
    result = invoke_slim(["decode", encoded, "-o", "x.png", "--weights", other], exit_code=1)
    assert stderr_lines(result)[0].startswith("error: cannot decode a.slim: made with other weights")
    assert not Path("x.png").exists()


def test_workers_report_a_file_of_unshipped_weights_as_such(photo_tree, tiny_weights_path):
    invoke_slim(["encode", photo_tree, "-o", "slim", "--weights", tiny_weights_path, "-w", 8], exit_code=1)
    result = invoke_slim(["decode", "slim", "-o", "back", "-j", 2], exit_code=1)
    errors = [line for line in stderr_lines(result) if line.startswith("error:")]
    assert len(errors) == 3 and all("do not ship with this slimcodec" in line for line in errors), errors


def test_failure_while_writing_leaves_no_partial_or_temporary_file(png, tiny_weights_path, monkeypatch):
    def failing_publish(tmp, dst, overwrite):
        assert tmp.read_bytes()[:4] == b"SLIM"  # the temporary file was complete
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(outputs, "_publish", failing_publish)
    result = invoke_slim(["encode", png, "-o", "out/a.slim", "--weights", tiny_weights_path, "-w", 8], exit_code=1)
    assert stderr_lines(result)[0] == "error: cannot encode a.png: cannot write out/a.slim: no space left on device"
    assert files_under(Path("out")) == []


def test_output_folder_that_cannot_be_created_fails_with_one_line(png, tiny_weights_path):
    Path("blocker").write_text("a file where a folder should be")
    result = invoke_slim(["encode", png, "-o", "blocker/a.slim", "--weights", tiny_weights_path, "-w", 8],
                         exit_code=1)
    assert stderr_lines(result)[0].startswith("error: cannot encode a.png: cannot create folder blocker: ")
    assert "Traceback" not in result.stderr


def test_output_that_would_replace_the_input_is_refused(png, tiny_weights_path):
    png.rename("photo")  # no image extension: -o photo is a name slim encode may write
    result = invoke_slim(["encode", "photo", "-o", "photo", "--weights", tiny_weights_path, "-w", 8, "--force"],
                         exit_code=1)
    assert "would replace the input" in stderr_lines(result)[0]
    assert Path("photo").read_bytes()[:4] == b"\x89PNG"


# ---------------------------------------------------------------- batches


def test_folder_batch_converts_good_files_despite_a_bad_one(photo_tree, tiny_weights_path):
    result = invoke_slim(["encode", photo_tree, "--weights", tiny_weights_path, "-w", 8], exit_code=1)
    lines = stderr_lines(result)
    assert "error: cannot encode photos/sub/bad.png: not an image Pillow can read" in lines
    assert lines[-1].startswith("3 files encoded, 1 file failed;")
    assert "bpp;" in lines[-1]
    assert {"b.slim", "sub/c.slim", "sub/deeper/d.slim"} <= set(files_under(photo_tree))
    assert "sub/bad.slim" not in files_under(photo_tree)


def test_folder_structure_is_mirrored_under_the_output_folder(photo_tree, tiny_weights_path):
    (photo_tree / "sub" / "bad.png").unlink()
    invoke_slim(["encode", photo_tree, "-o", "out", "--weights", tiny_weights_path, "-w", 4])
    assert files_under(Path("out")) == ["b.slim", "sub/c.slim", "sub/deeper/d.slim"]
    invoke_slim(["decode", "out", "-o", "back", "--format", "bmp", "--weights", tiny_weights_path])
    assert files_under(Path("back")) == ["b.bmp", "sub/c.bmp", "sub/deeper/d.bmp"]


def test_batch_output_must_be_a_folder(png, tiny_weights_path):
    Path("file.txt").write_text("x")
    result = invoke_slim(["encode", png, png, "-o", "file.txt", "--weights", tiny_weights_path, "-w", 8],
                         exit_code=2)
    assert stderr_lines(result) == ["error: -o file.txt: must be a folder when converting several files"]


def test_two_inputs_with_the_same_output_do_not_overwrite_each_other(png, tiny_weights_path):
    gradient_image(24, 16).save("a.jpg")
    result = invoke_slim(["encode", "a.jpg", png, "--weights", tiny_weights_path, "-w", 8], exit_code=1)
    assert "error: cannot encode a.png: a.jpg is also written to a.slim" in stderr_lines(result)
    assert stderr_lines(result)[-1].startswith("1 file encoded, 1 file failed;")


def test_empty_folder_is_a_warning_not_a_failure(workdir, tiny_weights_path):
    Path("empty").mkdir()
    result = invoke_slim(["encode", "empty", "--weights", tiny_weights_path, "-w", 8])
    assert stderr_lines(result)[0] == "warning: no images found in empty"


def test_worker_processes_write_the_same_bytes_as_serial(photo_tree, tiny_weights_path):
    (photo_tree / "sub" / "bad.png").unlink()
    invoke_slim(["encode", photo_tree, "-o", "serial", "-j", 1, "--weights", tiny_weights_path, "-w", 8])
    result = invoke_slim(["encode", photo_tree, "-o", "pool", "-j", 2, "--weights", tiny_weights_path, "-w", 8])
    names = files_under(Path("serial"))
    assert names == files_under(Path("pool")) and len(names) == 3
    for name in names:
        assert (Path("pool") / name).read_bytes() == (Path("serial") / name).read_bytes()
    lines = stderr_lines(result)
    assert [line.split(" -> ")[0] for line in lines[:3]] == [  # reported in sorted input order
        "encoded photos/b.png", "encoded photos/sub/c.jpg", "encoded photos/sub/deeper/d.bmp"]


def test_a_worker_that_cannot_start_fails_its_files_with_the_reason(photo_tree, tiny_weights_path, monkeypatch,
                                                                   tmp_path):
    """The weights vanish after slim loaded them: the workers cannot load them (not "out of memory")."""
    from slimcodec.cli import main

    (photo_tree / "sub" / "bad.png").unlink()
    weights = tmp_path / "vanishing.pt"
    weights.write_bytes(tiny_weights_path.read_bytes())
    real = main._load_weights

    def load_then_remove(ctx, path):
        loaded = real(ctx, path)
        path.unlink()
        return loaded

    monkeypatch.setattr(main, "_load_weights", load_then_remove)
    result = invoke_slim(["encode", photo_tree, "-j", 2, "--weights", weights, "-w", 8], exit_code=1)
    errors = [line for line in stderr_lines(result) if line.startswith("error:")]
    assert len(errors) == 3 and "Traceback" not in result.stderr
    assert all(": a worker process could not start: " in line and "vanishing.pt" in line for line in errors), errors


def test_invalid_slim_workers_is_a_usage_error(png, tiny_weights_path):
    result = invoke_slim(["encode", png, "--weights", tiny_weights_path, "-w", 8], exit_code=2,
                         env={WORKERS_ENV: "many"})
    assert stderr_lines(result) == ["error: SLIM_WORKERS must be a positive integer, not 'many'"]


def test_workers_come_from_the_option_then_the_environment_then_the_batch_size(monkeypatch):
    from slimcodec.cli import parallel

    monkeypatch.setenv(WORKERS_ENV, "3")
    assert resolve_workers(5, jobs=100) == 5
    assert resolve_workers(None, jobs=100) == 3
    monkeypatch.delenv(WORKERS_ENV)
    monkeypatch.setattr(parallel, "default_workers", lambda: 2)
    # a worker needs FILES_PER_WORKER files to pay for its start: small batches stay in one process
    assert [resolve_workers(None, jobs=n) for n in (1, 4, 7, 8, 100)] == [1, 1, 1, 2, 2]


# ---------------------------------------------------------------- info


def test_info_shows_the_header_fields(encoded):
    result = invoke_slim(["info", encoded])
    size = encoded.stat().st_size
    out = result.stdout
    assert out.splitlines()[0] == "a.slim"
    for expected in ("format version  1.1", "architecture    slimcae-factorized", "image size      40 x 24",
                     "color type      RGB", "latent scale    1\n",
                     "width           8", "latent shape    8 x 2 x 3", "chunks          none",
                     f"file bytes      {size}", f"bpp             {8 * size / (40 * 24):.4f}"):
        assert expected in out
    assert "weights id" in out and "payload bytes" in out


def test_info_names_the_hyperprior_architecture_of_a_format_2_file(tmp_path):
    vectors = Path(__file__).resolve().parents[1] / "formats" / "vectors" / "v2.0"
    out = invoke_slim(["info", vectors / "noise-40x24-w8.slim"]).stdout
    assert "format version  2.0" in out and "architecture    slimcae-hyperprior" in out
    assert "latent shape    8 x 4 x 4" in out


def test_info_json_lists_every_file(encoded, tiny_weights):
    fields = json.loads(invoke_slim(["info", "--json", encoded, encoded]).stdout)
    assert len(fields) == 2
    assert fields[0]["weights_id"] == tiny_weights.weights_id.hex()
    assert fields[0]["latent_shape"] == [8, 2, 3] and fields[0]["tiles"] is None
    assert fields[0]["bpp"] == pytest.approx(8 * encoded.stat().st_size / (40 * 24))


def test_info_reports_bad_files_and_shows_the_good_ones(encoded):
    Path("fake.slim").write_bytes(b"GIF89a not a slim file at all..." * 2)
    result = invoke_slim(["info", "fake.slim", encoded, "nothere.slim"], exit_code=1)
    assert stderr_lines(result) == [
        "error: cannot read fake.slim: not a .slim file (bad magic)",
        "error: cannot read nothere.slim: no such file or directory",
    ]
    assert "image size      40 x 24" in result.stdout


# ---------------------------------------------------------------- report


def test_report_summary_counts_sizes_and_bpp():
    report = Report("encode", quiet=True)
    report.done("a.png", "a.slim", bytes_in=3000, bytes_out=100, pixels=400)
    report.done("b.png", "b.slim", bytes_in=2000, bytes_out=300, pixels=400)
    report.skipped("c.png", "exists")
    report.failed("d.png", ValueError("bad"))
    text = str(report)
    assert text.startswith("2 files encoded, 1 file skipped, 1 file failed; 5.0 kB in, 400 B out, 4.000 bpp; ")
    assert text.endswith(" s")


def test_report_return_code_is_1_only_when_a_file_failed():
    report = Report("decode", quiet=True)
    report.done("a.slim", "a.png", bytes_in=10, bytes_out=20, pixels=4)
    report.skipped("b.slim", "exists")
    assert report.return_code == 0
    report.failed("c.slim", "checksum mismatch")
    assert report.return_code == 1


def test_report_prints_one_line_per_event(capsys):
    from slimcodec.errors import SlimFormatError

    report = Report("decode")
    report.done("a.slim", "a.png", bytes_in=120, bytes_out=999, pixels=960)
    report.skipped("b.slim", "b.png exists (use --force to overwrite)")
    report.failed("c.slim", SlimFormatError("checksum mismatch"))
    report.failed("d.slim", FileNotFoundError(2, "No such file or directory", "d.slim"))
    assert capsys.readouterr().err.splitlines() == [
        "decoded a.slim -> a.png (120 B, 1.000 bpp)",
        "skipped b.slim: b.png exists (use --force to overwrite)",
        "error: cannot decode c.slim: checksum mismatch",
        "error: cannot decode d.slim: no such file or directory",
    ]


def test_report_counts_progress_when_a_run_has_several_files(capsys):
    report = Report("encode", total=3)
    report.done("a.png", "a.slim", bytes_in=999, bytes_out=120, pixels=960)
    report.failed("b.png", "not an image")
    report.skipped("c.png", "c.slim exists (use --force to overwrite)")
    assert capsys.readouterr().err.splitlines() == [
        "encoded a.png -> a.slim (120 B, 1.000 bpp) [1/3]",
        "error: cannot encode b.png: not an image",
        "skipped c.png: c.slim exists (use --force to overwrite) [3/3]",
    ]


@pytest.mark.parametrize("num_bytes, text", [(0, "0 B"), (999, "999 B"), (1000, "1.0 kB"),
                                             (1_234_567, "1.2 MB"), (5 * 10**12, "5.0 TB")])
def test_byte_counts_are_shown_in_si_units(num_bytes, text):
    assert format_bytes(num_bytes) == text


def test_scan_folder_skips_hidden_files_and_other_suffixes(tmp_path):
    (tmp_path / ".hidden").mkdir()
    for name in ("x.PNG", "y.jpeg", ".z.png", ".hidden/w.png", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in jobs.scan_folder(tmp_path, jobs.IMAGE_SUFFIXES)] == ["x.PNG", "y.jpeg"]


def test_output_with_a_trailing_slash_is_a_folder(png, tiny_weights_path):
    invoke_slim(["encode", png, "-o", "new/", "--weights", tiny_weights_path, "-w", 8])
    assert files_under(Path("new")) == ["a.slim"]


def test_alpha_survives_the_round_trip_and_info_shows_it(workdir, tiny_weights_path):
    from PIL import Image

    Image.new("RGBA", (20, 12), (10, 20, 30, 77)).save("t.png")
    invoke_slim(["encode", "t.png", "--weights", tiny_weights_path, "-w", 8])
    assert "color type      RGB + alpha" in invoke_slim(["info", "t.slim"]).stdout
    invoke_slim(["decode", "t.slim", "-o", "back.png", "--weights", tiny_weights_path])
    with Image.open("back.png") as im:
        assert im.mode == "RGBA" and im.getpixel((3, 3))[3] == 77


def test_decoding_alpha_to_jpeg_fails_with_a_clear_message(workdir, tiny_weights_path):
    from PIL import Image

    Image.new("RGBA", (20, 12), (10, 20, 30, 77)).save("t.png")
    invoke_slim(["encode", "t.png", "--weights", tiny_weights_path, "-w", 8])
    result = invoke_slim(["decode", "t.slim", "-o", "t.jpg", "--weights", tiny_weights_path], exit_code=1)
    assert stderr_lines(result)[0] == (
        "error: cannot decode t.slim: JPEG cannot store the alpha channel; use .png or a background colour "
        "(--background COLOR)"
    )
    assert sorted(os.listdir(".")) == ["t.png", "t.slim"]


def test_a_newline_in_a_file_name_stays_on_the_files_one_line(tmp_path, tiny_weights_path):
    source = tmp_path / "two\nlines.png"
    gradient_image(24, 16).save(source, format="PNG")
    result = invoke_slim(["encode", source, "-o", tmp_path / "out.slim", "--width", "8",
                          "--weights", tiny_weights_path])
    lines = [line for line in result.stderr.splitlines() if line.startswith("encoded")]
    assert len(lines) == 1 and "'" in lines[0] and "two\\nlines.png" in lines[0]
