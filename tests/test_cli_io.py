"""The ``slim`` command as cwebp, cjxl and avifenc users expect it: pipes, lossy outputs, alpha,
inputs by format, progress, and the smaller rough edges of 0.1.0 (issue #18)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from conftest import gradient_image
from PIL import Image

from slimcodec.cli.main import cli
from slimcodec.formats.slimfile import read_header


def slim(args, exit_code: int = 0, input: bytes | None = None, env: dict | None = None) -> Result:
    result = CliRunner().invoke(cli, [str(a) for a in args], input=input, prog_name="slim",
                                env={"SLIM_WORKERS": "1", **(env or {})})
    assert result.exit_code == exit_code, (result.exit_code, result.stderr, result.exc_info)
    assert "Traceback" not in result.stderr
    return result


@pytest.fixture
def png(workdir) -> Path:
    gradient_image(40, 24).save("photo.png")
    return Path("photo.png")


@pytest.fixture
def slim_file(png, tiny_weights_path) -> Path:
    slim(["encode", png, "-o", "photo.slim", "--weights", tiny_weights_path, "-w", 8])
    return Path("photo.slim")


@pytest.fixture
def rgba_slim(workdir, tiny_weights_path) -> Path:
    Image.new("RGBA", (20, 12), (200, 40, 10, 0)).save("t.png")
    slim(["encode", "t.png", "--weights", tiny_weights_path, "-w", 8])
    return Path("t.slim")


def files(folder: Path = Path(".")) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# ---------------------------------------------------------------- pipes


def test_encode_reads_stdin_and_writes_stdout_with_messages_on_stderr_only(png, tiny_weights_path):
    result = slim(["encode", "-", "-o", "-", "-w", 8, "--weights", tiny_weights_path], input=png.read_bytes())
    slim(["encode", png, "-o", "file.slim", "-w", 8, "--weights", tiny_weights_path])
    assert result.stdout_bytes == Path("file.slim").read_bytes()  # the data and nothing else
    assert result.stderr.splitlines()[0].startswith("encoded <stdin> -> <stdout> (")
    assert files() == ["file.slim", "photo.png"]  # no file named "-"


@pytest.mark.parametrize("closed", ["stdin", "stdout"])
def test_a_closed_standard_stream_given_as_dash_is_a_one_line_usage_error(closed, slim_file, monkeypatch):
    import click

    real = click.get_binary_stream

    def get_binary_stream(name):
        if name == closed:  # what click raises when the process was started without the stream
            raise RuntimeError(f"Was not able to determine binary stream for sys.{name}.")
        return real(name)

    monkeypatch.setattr(click, "get_binary_stream", get_binary_stream)
    args = ["decode", "-", "-o", "x.png"] if closed == "stdin" else ["decode", slim_file, "-o", "-"]
    result = slim(args, exit_code=2, input=slim_file.read_bytes())
    assert result.stderr.strip().splitlines()[-1].endswith("which is closed")
    assert "RuntimeError" not in result.stderr and not Path("x.png").exists()


def test_decode_reads_stdin_and_writes_png_to_stdout_unless_a_format_is_given(slim_file, tiny_weights_path):
    data = slim_file.read_bytes()
    result = slim(["decode", "-", "-o", "-", "--weights", tiny_weights_path], input=data)
    assert Image.open(io.BytesIO(result.stdout_bytes)).format == "PNG"
    result = slim(["decode", slim_file, "-o", "-", "--format", "jpg", "--weights", tiny_weights_path])
    assert Image.open(io.BytesIO(result.stdout_bytes)).format == "JPEG"
    assert "decoded photo.slim -> <stdout>" in result.stderr
    slim(["decode", "-", "-o", "back.webp", "--weights", tiny_weights_path], input=data)
    assert Image.open("back.webp").format == "WEBP"


@pytest.mark.parametrize("args, message", [
    (["encode", "-"], "error: reading standard input (-) needs -o FILE, or -o - for standard output"),
    (["encode", "-", "photo.png", "-o", "out/"], "error: - (standard input) must be the only input"),
    (["encode", "photo.png", "photo.png", "-o", "-"], "error: -o - (standard output) takes one input file"),
    (["encode", ".", "-o", "-"], "error: -o - (standard output) takes one input file"),
])
def test_pipes_take_one_file_each_and_misuse_is_a_usage_error(args, message, png, tiny_weights_path):
    result = slim([*args, "-w", 8, "--weights", tiny_weights_path], exit_code=2, input=b"")
    assert result.stderr.splitlines() == [message]


def test_standard_output_that_is_a_terminal_is_refused(png, tiny_weights_path, monkeypatch):
    import click

    real = click.get_binary_stream

    def terminal_stdout(name):
        stream = real(name)
        if name == "stdout":
            stream.isatty = lambda: True
        return stream

    monkeypatch.setattr(click, "get_binary_stream", terminal_stdout)
    result = slim(["encode", png, "-o", "-", "-w", 8, "--weights", tiny_weights_path], exit_code=2)
    assert result.stderr.startswith("error: -o - writes binary data to standard output, which is a terminal")


def test_an_empty_or_foreign_stdin_fails_with_one_line(workdir, tiny_weights_path):
    result = slim(["encode", "-", "-o", "x.slim", "-w", 8, "--weights", tiny_weights_path], exit_code=1, input=b"")
    assert result.stderr.splitlines()[0] == "error: cannot encode <stdin>: not an image Pillow can read"
    result = slim(["decode", "-", "-o", "x.png", "--weights", tiny_weights_path], exit_code=1, input=b"GIF89a")
    assert result.stderr.splitlines()[0] == "error: cannot decode <stdin>: not a .slim file (bad magic)"
    assert files() == []


# ---------------------------------------------------------------- lossy outputs, alpha


def test_decoding_to_jpeg_uses_quality_95_by_default_and_q_otherwise(slim_file, tiny_weights_path):
    slim(["decode", slim_file, "-o", "default.jpg", "--weights", tiny_weights_path])
    slim(["decode", slim_file, "-o", "q60.jpg", "-q", 60, "--weights", tiny_weights_path])
    slim(["decode", slim_file, "-o", "back.png", "--weights", tiny_weights_path])
    for name, quality in (("default.jpg", 95), ("q60.jpg", 60)):
        reference = io.BytesIO()
        Image.open("back.png").save(reference, format="JPEG", quality=quality)
        with Image.open(name) as ours, Image.open(reference) as theirs:
            assert ours.quantization == theirs.quantization, name  # Pillow alone would write 75
    with Image.open("default.jpg") as im:
        assert im.layer[0][1:3] == im.layer[1][1:3]  # 4:4:4: full-resolution colour at 95


def test_decoding_to_webp_and_avif_takes_a_quality_and_webp_can_be_lossless(slim_file, tiny_weights_path):
    slim(["decode", slim_file, "-o", "lossless.webp", "--lossless", "--weights", tiny_weights_path])
    slim(["decode", slim_file, "-o", "ref.png", "--weights", tiny_weights_path])
    with Image.open("lossless.webp") as a, Image.open("ref.png") as b:
        assert a.tobytes() == b.convert(a.mode).tobytes()
    sizes = {}
    for q in (20, 95):
        for ext in ("webp", "avif"):
            slim(["decode", slim_file, "-o", f"q{q}.{ext}", "-q", q, "--weights", tiny_weights_path])
            sizes[ext, q] = Path(f"q{q}.{ext}").stat().st_size
    assert sizes["webp", 20] < sizes["webp", 95] and sizes["avif", 20] < sizes["avif", 95]


@pytest.mark.parametrize("args, message", [
    (["-o", "x.png", "-q", 80], "error: --quality: a quality applies to JPEG, WebP, AVIF and HEIF outputs, not PNG"),
    (["-o", "x.jpg", "--lossless"], "error: --lossless: lossless applies to WebP outputs, not JPEG"),
    (["-o", "x.jpg", "--background", "nocolour"],
     "error: invalid --background: unknown colour 'nocolour' (a name such as white, or #rrggbb)"),
])
def test_decode_options_the_format_would_ignore_are_usage_errors(args, message, slim_file, tiny_weights_path):
    result = slim(["decode", slim_file, *args, "--weights", tiny_weights_path], exit_code=2)
    assert result.stderr.splitlines() == [message]


def test_background_flattens_alpha_into_a_format_without_alpha(rgba_slim, tiny_weights_path):
    slim(["decode", rgba_slim, "-o", "t.jpg", "--background", "white", "--weights", tiny_weights_path])
    with Image.open("t.jpg") as im:
        assert im.mode == "RGB" and min(im.getpixel((5, 5))) > 240  # alpha 0 everywhere: all background
    slim(["decode", rgba_slim, "-o", "t.webp", "--background", "white", "--weights", tiny_weights_path])
    with Image.open("t.webp") as im:
        assert im.mode == "RGBA"  # WebP keeps alpha: no flattening


# ---------------------------------------------------------------- inputs


def test_heic_avif_and_gif_inputs_are_encoded_and_found_in_folders(workdir, tiny_weights_path):
    pytest.importorskip("pillow_heif")
    from slimcodec.imageio import register_plugins

    register_plugins()
    Path("only").mkdir()
    for ext in ("heic", "avif", "gif"):
        gradient_image(32, 16).save(f"only/a-{ext}.{ext}")
    result = slim(["encode", "only", "-w", 8, "--weights", tiny_weights_path])
    assert result.stderr.splitlines()[-1].startswith("3 files encoded;")
    for ext in ("heic", "avif", "gif"):
        assert read_header(Path(f"only/a-{ext}.slim").read_bytes()).image_width == 32
    slim(["decode", "only/a-heic.slim", "-o", "back.heic", "--weights", tiny_weights_path])
    assert Image.open("back.heic").size == (32, 16)


def test_a_heic_file_without_pillow_heif_names_what_to_install(workdir, tiny_weights_path, monkeypatch):
    from slimcodec import imageio

    Path("a.heic").write_bytes(b"\0\0\0\x18ftypheic" + bytes(100))
    monkeypatch.setattr(imageio, "register_plugins", lambda: False)
    result = slim(["encode", "a.heic", "-w", 8, "--weights", tiny_weights_path], exit_code=1)
    assert result.stderr.splitlines()[0] == ("error: cannot encode a.heic: not an image Pillow can read "
                                             "(HEIC needs pillow-heif: pip install pillow-heif)")


# ---------------------------------------------------------------- progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_large_single_image_shows_a_progress_bar_on_a_terminal_only(png, tiny_weights_path, monkeypatch):
    from slimcodec.cli import progress

    screen = Terminal()
    monkeypatch.setattr(progress, "PROGRESS_MIN_PIXELS", 100)
    monkeypatch.setattr(progress, "terminal", lambda: screen)
    slim(["encode", png, "-w", 8, "--weights", tiny_weights_path])
    drawn = screen.getvalue()
    assert "encoding photo.png" in drawn and "2/2" in drawn and drawn.endswith("\r\033[K")  # erased at the end
    screen.seek(0), screen.truncate()
    slim(["decode", "photo.slim", "-o", "back.png", "--weights", tiny_weights_path, "--quiet"])
    assert screen.getvalue() == ""  # --quiet: no bar
    monkeypatch.setattr(progress, "terminal", lambda: None)  # stderr is not a terminal
    result = slim(["decode", "photo.slim", "-o", "back2.png", "--weights", tiny_weights_path])
    assert "\r" not in result.stderr


def test_an_encode_above_effort_one_shows_its_refinement_steps_on_a_terminal(png, tiny_weights_path, monkeypatch):
    from slimcodec import effort
    from slimcodec.cli import progress

    screen = Terminal()
    monkeypatch.setattr(progress, "terminal", lambda: screen)  # a small image: no bar at effort 1
    slim(["encode", png, "-w", 8, "--weights", tiny_weights_path, "-o", "plain.slim"])
    assert screen.getvalue() == ""
    slim(["encode", png, "-w", 8, "--weights", tiny_weights_path, "--effort", "3", "-o", "refined.slim"])
    total = 1 + effort.STEPS[3] + 1  # one analysis tile, the steps, the entropy coding
    assert "encoding photo.png" in screen.getvalue() and f"{total}/{total}" in screen.getvalue()


def test_a_batch_shows_a_progress_bar_with_each_file_line_above_it(workdir, tiny_weights_path, monkeypatch):
    from slimcodec.cli import progress

    screen = Terminal()
    monkeypatch.setattr(progress, "terminal", lambda: screen)
    for name in "abc":
        gradient_image(20, 12).save(f"{name}.png")
    result = slim(["encode", "a.png", "b.png", "c.png", "-w", 8, "--weights", tiny_weights_path])
    drawn = screen.getvalue()
    lines = [line.rsplit("\033[K", 1)[-1] for line in drawn.split("\n")]
    assert [line.split(" (")[0] for line in lines[:3]] == [f"encoded {n}.png -> {n}.slim" for n in "abc"]
    last_bar = drawn.split("\n")[-1].split("\r\033[K")[-2]
    assert last_bar.startswith("Encoding") and last_bar.endswith("3/3") and drawn.endswith("\r\033[K")
    assert result.stderr.startswith("3 files encoded;")  # the summary after the bar


# ---------------------------------------------------------------- smaller items


def test_encode_refuses_an_output_named_like_another_image_format(png, tiny_weights_path):
    result = slim(["encode", png, "-o", "wrong.webp", "-w", 8, "--weights", tiny_weights_path], exit_code=2)
    assert result.stderr.splitlines() == [
        "error: -o wrong.webp: slim encode writes .slim files, not WEBP; name it wrong.slim "
        "(slim decode makes .webp files)"]
    slim(["encode", png, "-o", "photo.bin", "-w", 8, "--weights", tiny_weights_path])  # not an image format
    assert files() == ["photo.bin", "photo.png"]


def test_scale_16_is_refused_by_a_message_that_states_the_real_range(png, tiny_weights_path):
    result = slim(["encode", png, "-s", 16, "-w", 8, "--weights", tiny_weights_path], exit_code=2)
    assert result.stderr.splitlines() == [
        "error: invalid --scale 16: latent scale must be a number from 0.0625 to 15.9998 (65535/4096)"]
    slim(["encode", png, "-s", 15.9998, "-w", 8, "--weights", tiny_weights_path])


def test_info_help_states_its_own_exit_codes():
    text = slim(["info", "--help"]).stdout
    assert "every file was read" in text and "converted" not in text and "skip" not in text


def test_the_readme_encode_then_decode_examples_run_in_order_without_an_existing_output(workdir):
    """README "Using it": each encode and decode line, in order, on one photo.png (shipped weights)."""
    from test_docs_examples import README, fenced_blocks, slim_lines

    gradient_image(40, 24).save("photo.png")
    Path("pictures").mkdir()
    gradient_image(24, 16).save("pictures/a.png")
    section = README.read_text().split("## Using it", 1)[1]
    commands = [w for w in slim_lines(fenced_blocks(section, "sh")[0]) if w[0] in ("encode", "decode")
                and "-" not in w]  # the pipes need a shell
    assert len(commands) >= 4
    for words in commands:
        slim(words)


def test_info_reads_standard_input_and_warns_of_a_folder_without_slim_files(slim_file):
    Path("empty").mkdir()
    result = slim(["info", "-", "empty"], input=slim_file.read_bytes())
    assert result.stdout.splitlines()[0] == "<stdin>"
    assert "warning: no .slim files found in empty" in result.stderr


@pytest.mark.parametrize("args, message", [
    (["-o", "again.slim"], "-o again.slim: decode writes images, not .slim files"),
    (["-o", "x.png", "--format", "slim"], "--format slim: decode writes images, not .slim files"),
    (["-o", "-", "--format", ""], "--format needs an image extension"),
])
def test_decode_to_a_slim_or_an_empty_format_says_what_is_wrong(slim_file, args, message):
    result = slim(["decode", slim_file, *args], exit_code=2)
    assert message in result.stderr and not Path("again.slim").exists()
