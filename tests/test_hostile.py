"""Broken and hostile inputs: every one is refused with one line, never a traceback or a partial file.

.slim files are made with the tiny seeded model, so decoding is fast enough
for a fuzz loop of a couple of thousand mutations.
"""

from __future__ import annotations

import os
import random
import re
import struct
import sys
import time
import tracemalloc
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import gradient_image
from PIL import Image, UnidentifiedImageError

from slimcodec import codec
from slimcodec.cli.main import cli
from slimcodec.errors import SlimFormatError, UnsupportedImageError
from slimcodec.formats.slimfile import HEADER_SIZE, read_slim
from slimcodec.imageio import open_image, prepare

# offsets of header fields (formats/SPEC.md)
VERSION, SIZE, COLOR, WIDTH, WEIGHTS_ID, LATENT, CHUNKS_SIZE, PAYLOAD_SIZE = 4, 8, 16, 18, 20, 28, 40, 44


def slim(args, exit_code: int = 0):
    result = CliRunner().invoke(cli, [str(a) for a in args], env={"SLIM_WORKERS": "1"}, prog_name="slim")
    assert result.exit_code == exit_code, (result.exit_code, result.stdout, result.stderr, result.exc_info)
    return result


def one_error_line(result, action: str) -> str:
    """The single ``error:`` line of a failed command (and check there is no traceback)."""
    assert "Traceback" not in result.stderr + result.stdout
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert errors[0].startswith(f"error: cannot {action} ")
    return errors[0]


def with_crc(data: bytes | bytearray) -> bytes:
    """``data`` with its last four bytes replaced by the right CRC-32."""
    body = bytes(data[:-4])
    return body + struct.pack("<I", zlib.crc32(body))


def patched(data: bytes, offset: int, fmt: str, *values, crc: bool = True) -> bytes:
    out = bytearray(data)
    struct.pack_into("<" + fmt, out, offset, *values)
    return with_crc(out) if crc else bytes(out)


def sections(data: bytes) -> tuple[int, int]:
    return struct.unpack_from("<II", data, CHUNKS_SIZE)


@pytest.fixture(scope="module")
def good(tiny_weights) -> bytes:
    """A real .slim file with an alpha, an ICC and an EXIF chunk (24x20, width 8)."""
    image = gradient_image(24, 20, "RGBA")
    image.putalpha(Image.fromarray((np.arange(480) % 251).astype(np.uint8).reshape(20, 24), "L"))
    image.info["icc_profile"] = b"not really a profile"
    exif = Image.Exif()
    exif[0x010F] = "cam"
    image.info["exif"] = exif.tobytes()
    return codec.encode(image, 8, weights=tiny_weights)


def hostile_files(good: bytes) -> dict[str, tuple[bytes, str]]:
    """name: (file bytes, the start of the reason it is refused with)."""
    chunks, payload = sections(good)
    payload_at = HEADER_SIZE + chunks
    flipped_payload = bytearray(good)
    flipped_payload[payload_at + 3] ^= 0x10
    flipped_header = bytearray(good)
    flipped_header[SIZE] ^= 0x01
    bad_alpha = bytearray(good)
    bad_alpha[HEADER_SIZE + 8 + 2] ^= 0xFF  # inside the ALPH chunk's zlib data (first chunk)
    renamed = bytearray(good)
    renamed[HEADER_SIZE : HEADER_SIZE + 4] = b"ALPX"  # an unknown critical chunk
    return {
        "empty": (b"", "empty file"),
        "magic only": (good[:4], "truncated file"),
        "truncated in the header": (good[:30], "truncated file"),
        "header only": (good[:HEADER_SIZE], "truncated file"),
        "truncated in the chunks": (good[: HEADER_SIZE + chunks // 2], "truncated file"),
        "truncated in the payload": (good[: payload_at + payload // 2], "truncated file"),
        "truncated in the crc": (good[:-2], "truncated file"),
        "trailing data": (good + b"\0", "trailing data ("),
        "bit flip in the header": (bytes(flipped_header), "checksum mismatch"),
        "bit flip in the payload": (bytes(flipped_payload), "checksum mismatch"),
        "wrong magic": (b"SLIN" + good[4:], "not a .slim file (bad magic)"),
        "a png file": (b"\x89PNG\r\n\x1a\n" + bytes(40), "not a .slim file (bad magic)"),
        "future version": (patched(good, VERSION, "BB", 4, 0), "unsupported format version 4.0"),
        "foreign weights id": (patched(good, WEIGHTS_ID, "8s", b"\x01" * 8), "made with other weights"),
        "width not in the weights": (patched(good, WIDTH, "H", 96), "width 96 is not in these weights"),
        "65535x65535 image": (patched(patched(good, SIZE, "II", 65535, 65535), LATENT, "HH", 4096, 4096),
                              "image too large"),
        "zero width": (patched(good, SIZE, "II", 0, 20), "bad image size 0x20"),
        "70000 pixels wide": (patched(good, SIZE, "II", 70000, 1), "bad image size 70000x1"),
        "latent size mismatch": (patched(good, LATENT, "HH", 3, 2), "latent size 2x3 does not match"),
        "chunks size past the end": (patched(good, CHUNKS_SIZE, "I", 0xFFFFFFF0), "truncated file"),
        "payload not words": (patched(good[:-4] + bytes(2 + 4), PAYLOAD_SIZE, "I", payload + 2),
                              f"payload size {payload + 2} is not a multiple of 4"),
        "corrupt alpha": (with_crc(bad_alpha), "corrupt alpha chunk"),
        "unknown critical chunk": (with_crc(renamed), "unknown critical chunk 'ALPX'"),
        "garbage payload": (with_crc(good[:payload_at] + b"\xff" * payload + good[-4:]), "corrupt payload"),
        "payload one word short": (
            patched(with_crc(good[: payload_at + payload - 4] + good[-4:]), PAYLOAD_SIZE, "I", payload - 4),
            "corrupt payload"),
    }


# names only (the files are made from the `good` fixture): any layout with chunks and payload will do
HOSTILE_NAMES = list(hostile_files(b"SLIM" + bytes(36) + struct.pack("<II", 20, 8) + bytes(20 + 8 + 4)))


def test_the_good_file_decodes(good, tiny_weights):
    assert codec.decode(good, weights=tiny_weights).size == (24, 20)


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_file_is_refused_by_the_codec(name, good, tiny_weights):
    data, reason = hostile_files(good)[name]
    with pytest.raises(SlimFormatError) as info:
        codec.decode(data, weights=tiny_weights)
    assert str(info.value).startswith(reason)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_file_fails_slim_decode_and_info_with_one_line_and_no_output(name, good, tiny_weights_path,
                                                                               tmp_path):
    data, reason = hostile_files(good)[name]
    bad = tmp_path / "bad.slim"
    bad.write_bytes(data)
    result = slim(["decode", bad, "-o", tmp_path / "out.png", "--weights", tiny_weights_path], exit_code=1)
    assert one_error_line(result, "decode").startswith(f"error: cannot decode {bad}: {reason}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.slim"]  # no output, no temporary file
    if name in ("foreign weights id", "width not in the weights", "garbage payload", "payload one word short",
                "corrupt alpha"):
        return  # only a decoder with the weights can tell: the container is fine
    result = slim(["info", bad], exit_code=1)
    assert one_error_line(result, "read").startswith(f"error: cannot read {bad}: {reason}")


def test_a_higher_minor_version_is_accepted(good, tiny_weights):
    assert codec.decode(patched(good, VERSION, "BB", 1, 7), weights=tiny_weights).size == (24, 20)


def test_a_decompression_bomb_header_is_refused_before_anything_is_allocated(good, tiny_weights, monkeypatch):
    bomb = patched(patched(good, SIZE, "II", 65535, 65535), LATENT, "HH", 4096, 4096)

    def must_not_run(*args, **kwargs):
        raise AssertionError("decoding went past the header checks")

    from slimcodec.latents import factorized

    monkeypatch.setattr(factorized, "decode_symbols", must_not_run)  # the factorized payload's range decoder
    monkeypatch.setattr(codec, "synthesize", must_not_run)
    tracemalloc.start()
    try:
        with pytest.raises(SlimFormatError, match=r"image too large \(65535x65535 = 4294836225 pixels"):
            codec.decode(bomb, weights=tiny_weights)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000


# ---------------------------------------------------------------- hostile inputs to encode


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares a size but holds no pixel data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def truncated(path: Path, fmt: str) -> bytes:
    gradient_image(64, 48).save(path, format=fmt)
    return path.read_bytes()[: path.stat().st_size * 2 // 3]


def corrupt_png(path: Path | None = None) -> bytes:
    """A PNG whose IDAT data is broken behind a valid chunk CRC (getexif() once hid the error)."""
    import io

    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    tag = data.index(b"IDAT")
    length = struct.unpack(">I", data[tag - 4 : tag])[0]
    for k in range(tag + 4 + length // 2, tag + 4 + length // 2 + 40):
        data[k] ^= 0xFF
    data[tag + 4 + length : tag + 8 + length] = struct.pack(">I", zlib.crc32(bytes(data[tag : tag + 4 + length])))
    return bytes(data)


def two_page_tiff(break_second_page: str | None = None) -> bytes:
    """A little-endian TIFF of two 40x24 pages, the second one broken as asked.

    Args:
        break_second_page: None, "pointer past the end" (the first page's next-page
            offset), "garbage directory" or "empty directory" (no tags) or "cut" (file
            truncated inside the second directory).
    """
    import io

    buf = io.BytesIO()
    gradient_image(40, 24).save(buf, format="TIFF", save_all=True, append_images=[gradient_image(40, 24, "L")])
    data = bytearray(buf.getvalue())
    first = struct.unpack_from("<I", data, 4)[0]
    next_at = first + 2 + 12 * struct.unpack_from("<H", data, first)[0]
    second = struct.unpack_from("<I", data, next_at)[0]
    if break_second_page == "pointer past the end":
        struct.pack_into("<I", data, next_at, len(data) + 1000)
    elif break_second_page == "garbage directory":
        data[second : second + 40] = b"\xff" * 40
    elif break_second_page == "empty directory":
        struct.pack_into("<H", data, second, 0)
    elif break_second_page == "cut":
        del data[second + 20 :]
    return bytes(data)


ENCODE_INPUTS = {
    # name: (file name, bytes maker, the start of the reason)
    "text named .png": ("a.png", lambda p: b"this is not a picture", "not an image Pillow can read"),
    "empty .png": ("a.png", lambda p: b"", "not an image Pillow can read"),
    # Pillow may read .slim files (slimcodec.pillow_plugin): a broken one is still one line
    "a broken .slim file": ("a.slim", lambda p: b"SLIM\x01\x00" + bytes(60), ""),
    "truncated png": ("a.png", lambda p: truncated(p, "PNG"), "cannot read image"),
    "truncated jpeg": ("a.jpg", lambda p: truncated(p, "JPEG"), "cannot read image"),
    "70000 pixel wide png": ("a.png", lambda p: png_header_only(70000, 1), "image of 70000x1 exceeds the limits"),
    "108 MP png": ("a.png", lambda p: png_header_only(12000, 9000), "image of 12000x9000 exceeds the limits"),
    "Pillow's decompression bomb": ("a.png", lambda p: png_header_only(30000, 30000), "image too large"),
    "corrupt png data": ("a.png", corrupt_png, "cannot read image"),
    **{f"tiff with a broken second page: {how}": (
        "a.tif", lambda p, how=how: two_page_tiff(how), "cannot read image (a later page is broken: ")
       for how in ("pointer past the end", "garbage directory", "empty directory", "cut")},
}


@pytest.mark.parametrize("name", list(ENCODE_INPUTS))
def test_unusable_input_fails_slim_encode_with_one_line(name, tiny_weights_path, tmp_path):
    filename, make, reason = ENCODE_INPUTS[name]
    src = tmp_path / filename
    src.write_bytes(make(src))
    start = time.perf_counter()
    result = slim(["encode", src, "-o", tmp_path / "out.slim", "--weights", tiny_weights_path, "-w", 8],
                  exit_code=1)
    assert time.perf_counter() - start < 10  # refused from the header, not after decoding pixels
    assert one_error_line(result, "encode").startswith(f"error: cannot encode {src}: {reason}")
    assert "Warning" not in result.stderr  # Pillow's DecompressionBombWarning is not shown
    assert sorted(p.name for p in tmp_path.iterdir()) == [filename]  # no output, no temporary file
    with pytest.raises(UnsupportedImageError):
        open_image(src)


def test_a_tiff_with_a_broken_second_page_is_refused_by_the_library_too(tiny_weights, tmp_path):
    (tmp_path / "a.tif").write_bytes(two_page_tiff("pointer past the end"))
    with Image.open(tmp_path / "a.tif") as image:  # not through open_image: prepare() counts the pages
        with pytest.raises(UnsupportedImageError, match=r"^cannot read image \(a later page is broken: "):
            codec.encode(image, 8, weights=tiny_weights)
    (tmp_path / "b.tif").write_bytes(two_page_tiff())
    with open_image(tmp_path / "b.tif") as image:
        assert image.mode == "RGB"  # the first page
        assert prepare(image).notes == ["only the first of 2 frames coded"]


@pytest.mark.parametrize("made_with", ["the shipped weights", "the --weights"])
def test_a_slim_file_named_png_is_refused_by_slim_encode_not_reencoded(made_with, tiny_weights, tiny_weights_path,
                                                                       tmp_path):
    weights = None if made_with == "the shipped weights" else tiny_weights
    src = tmp_path / "photo.png"
    src.write_bytes(codec.encode(gradient_image(40, 24), 48 if weights is None else 8, weights=weights))
    result = slim(["encode", src, "-o", tmp_path / "out.slim", "--weights", tiny_weights_path, "-w", 8],
                  exit_code=1)
    assert one_error_line(result, "encode") == (f"error: cannot encode {src}: is a .slim file, not an image to "
                                                "encode (slim decode turns it into one)")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photo.png"]


# ---------------------------------------------------------------- bad --weights files


def _bad_weights(kind: str, tmp_path: Path, tiny_weights_path: Path) -> Path:
    """A --weights argument that is no weights file."""
    import zipfile

    import torch

    path = tmp_path / "w.pt"
    if kind == "garbage":
        path.write_bytes(b"garbage" * 100)
    elif kind == "missing":
        pass
    elif kind == "truncated":
        data = tiny_weights_path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "a zip that is not weights":
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("hello.txt", "hi")
    elif kind == "a torch file that looks like weights":
        torch.save({"format": "slimcodec-weights", "format_version": 1, "widths": [8]}, path)
    elif kind == "a folder":
        path.mkdir()
    elif kind == "/dev/zero":
        if not Path("/dev/zero").exists():
            pytest.skip("no /dev/zero")
        return Path("/dev/zero")
    return path


BAD_WEIGHTS = ["garbage", "missing", "truncated", "a zip that is not weights", "a torch file that looks like weights",
               "a folder", "/dev/zero"]


@pytest.mark.parametrize("command", ["encode", "decode"])
@pytest.mark.parametrize("kind", BAD_WEIGHTS)
def test_a_bad_weights_file_is_a_usage_error_in_one_line(kind, command, tmp_path, tiny_weights_path, good):
    weights = _bad_weights(kind, tmp_path, tiny_weights_path)
    src = tmp_path / ("in.png" if command == "encode" else "in.slim")
    if command == "encode":
        gradient_image(20, 12).save(src)
    else:
        src.write_bytes(good)
    before = sorted(p.name for p in tmp_path.iterdir())
    out, width = (tmp_path / "out.slim", ["-w", 8]) if command == "encode" else (tmp_path / "out.png", [])
    result = slim([command, src, "-o", out, "--weights", weights, *width], exit_code=2)
    assert "Traceback" not in result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --weights"), result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_unwritable_output_fails_with_one_line(tiny_weights_path, tmp_path, good):
    src = tmp_path / "a.png"
    gradient_image(20, 12).save(src)
    blocker = tmp_path / "somefile.txt"
    blocker.write_text("a file, so nothing can be created under it")
    result = slim(["encode", src, "-o", blocker / "out.slim", "--weights", tiny_weights_path, "-w", 8], exit_code=1)
    assert "cannot create folder" in one_error_line(result, "encode")
    (tmp_path / "g.slim").write_bytes(good)
    result = slim(["decode", tmp_path / "g.slim", "-o", blocker / "out.png", "--weights", tiny_weights_path],
                  exit_code=1)
    assert "cannot create folder" in one_error_line(result, "decode")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "g.slim", "somefile.txt"]


def test_malformed_exif_in_a_slim_file_is_kept_for_png_and_refused_in_one_line_for_tiff(tiny_weights,
                                                                                      tiny_weights_path, tmp_path):
    from slimcodec.imageio import PixelData

    pixels = PixelData(np.asarray(gradient_image(20, 12)), exif=b"Exif\x00\x00garbage")
    (tmp_path / "x.slim").write_bytes(codec.encode_pixels(pixels, 8, weights=tiny_weights))
    slim(["decode", tmp_path / "x.slim", "-o", tmp_path / "x.png", "--weights", tiny_weights_path])
    with Image.open(tmp_path / "x.png") as out:
        assert out.info["exif"] == b"Exif\x00\x00garbage"  # ancillary: kept byte for byte
    result = slim(["decode", tmp_path / "x.slim", "-o", tmp_path / "x.tif", "--weights", tiny_weights_path],
                  exit_code=1)
    assert one_error_line(result, "decode").endswith("x.slim: the EXIF is malformed and TIFF cannot store it "
                                                     "as it is; use .png")
    assert not (tmp_path / "x.tif").exists()


# ---------------------------------------------------------------- fuzzing

VECTORS = Path(__file__).resolve().parents[1] / "formats" / "vectors"
FUZZ_MUTANTS = 20_000
FUZZ_SEED = 20261202
# (offset, struct format) of every header field after the magic (formats/SPEC.md, "Header")
HEADER_FIELDS = ((4, "B"), (5, "B"), (6, "H"), (8, "I"), (12, "I"), (16, "B"), (17, "B"), (18, "H"), (20, "Q"),
                 (28, "H"), (30, "H"), (32, "B"), (33, "B"), (34, "H"), (36, "I"), (40, "I"), (44, "I"))


@dataclass(frozen=True)
class Seed:
    """A real .slim file and the weights that decode it."""

    name: str
    data: bytes
    weights: object


def _flip_bits(rng: random.Random, out: bytearray, start: int, size: int, count: int) -> None:
    for _ in range(count):
        out[start + rng.randrange(size)] ^= 1 << rng.randrange(8)


def mutate_bit_flips(rng: random.Random, data: bytes) -> bytes:
    """1-4 bits flipped anywhere, CRC left as it is."""
    out = bytearray(data)
    _flip_bits(rng, out, 0, len(out), rng.randint(1, 4))
    return bytes(out)


def mutate_truncation(rng: random.Random, data: bytes) -> bytes:
    return data[: rng.randrange(len(data))]


def mutate_insertion(rng: random.Random, data: bytes) -> bytes:
    """1-8 random bytes inserted anywhere; CRC recomputed half of the time."""
    at = rng.randrange(len(data) + 1)
    out = data[:at] + rng.randbytes(rng.randint(1, 8)) + data[at:]
    return with_crc(out) if rng.random() < 0.5 else out


def mutate_insertion_with_sizes(rng: random.Random, data: bytes) -> bytes:
    """Bytes inserted in the header extension, the chunks or the payload, with the sizes and CRC fixed.

    The header extension is skipped by readers (SPEC: unknown bytes up to header_size): those decode.
    """
    header_size = struct.unpack_from("<H", data, 6)[0]
    chunks, payload = sections(data)
    body = bytearray(data[:-4])
    where = rng.randrange(3)
    if where == 0:  # header extension
        n = rng.randint(1, 16)
        body[header_size:header_size] = rng.randbytes(n)
        struct.pack_into("<H", body, 6, header_size + n)
    elif where == 1:  # chunks section: random bytes, or a whole ancillary / critical chunk
        n_bytes = rng.choice([rng.randbytes(rng.randint(1, 12)),
                              struct.pack("<4sI", rng.choice([b"zzzz", b"ZZZZ", b"ALPH", b"ICCP"]), 3) + b"abc"])
        at = header_size + (rng.randrange(chunks + 1) if rng.random() < 0.3 else rng.choice([0, chunks]))
        body[at:at] = n_bytes
        struct.pack_into("<I", body, CHUNKS_SIZE, chunks + len(n_bytes))
    else:  # payload words
        n = 4 * rng.randint(1, 3)
        at = header_size + chunks + 4 * rng.randrange(payload // 4 + 1)
        body[at:at] = rng.randbytes(n)
        struct.pack_into("<I", body, PAYLOAD_SIZE, payload + n)
    return with_crc(bytes(body) + bytes(4))


def mutate_header_byte(rng: random.Random, data: bytes) -> bytes:
    """A header byte set or flipped, CRC fixed."""
    out = bytearray(data)
    i = rng.randrange(HEADER_SIZE)
    out[i] = rng.randrange(256) if rng.random() < 0.5 else out[i] ^ (1 << rng.randrange(8))
    return with_crc(out)


def mutate_header_field_extreme(rng: random.Random, data: bytes) -> bytes:
    """A header field set to 0, 1, its maximum, half of it or its value ±1, CRC fixed."""
    offset, fmt = rng.choice(HEADER_FIELDS)
    top = 256 ** struct.calcsize(fmt) - 1
    value = struct.unpack_from("<" + fmt, data, offset)[0]
    new = rng.choice([0, 1, top, top - 1, (top + 1) // 2, (value + 1) & top, (value - 1) & top])
    return patched(data, offset, fmt, new)


def mutate_chunks(rng: random.Random, data: bytes) -> bytes:
    """A chunk byte flipped, or a chunk length set to an extreme, CRC fixed."""
    chunks, _ = sections(data)
    out = bytearray(data)
    if not chunks:
        return mutate_header_byte(rng, data)
    if rng.random() < 0.5:
        _flip_bits(rng, out, HEADER_SIZE, chunks, 1)
    else:
        pos = HEADER_SIZE  # walk to a random chunk's length field
        starts = []
        while pos + 8 <= HEADER_SIZE + chunks:
            starts.append(pos)
            pos += 8 + struct.unpack_from("<I", out, pos + 4)[0]
        length = struct.unpack_from("<I", out, rng.choice(starts) + 4)[0]
        struct.pack_into("<I", out, rng.choice(starts) + 4,
                         rng.choice([0, 1, length - 1, length + 1, 0xFFFFFFFF, chunks]) & 0xFFFFFFFF)
    return with_crc(out)


def mutate_payload_bits(rng: random.Random, data: bytes) -> bytes:
    """1-3 payload bits flipped, CRC fixed: the range decoder sees them."""
    chunks, payload = sections(data)
    out = bytearray(data)
    _flip_bits(rng, out, HEADER_SIZE + chunks, payload, rng.randint(1, 3))
    return with_crc(out)


def mutate_payload_word(rng: random.Random, data: bytes) -> bytes:
    """One payload word replaced by 0, all ones or a random word, CRC fixed."""
    chunks, payload = sections(data)
    out = bytearray(data)
    word = rng.choice([0, 0xFFFFFFFF, rng.getrandbits(32)])
    struct.pack_into("<I", out, HEADER_SIZE + chunks + 4 * rng.randrange(payload // 4), word)
    return with_crc(out)


def mutate_payload_length(rng: random.Random, data: bytes) -> bytes:
    """Trailing payload words dropped or random ones appended, sizes and CRC fixed."""
    chunks, payload = sections(data)
    body = bytearray(data[:-4])
    n = rng.choice([-3, -2, -1, 1, 2, 3])
    if n < 0 and payload >= -4 * n:
        del body[4 * n :]
    else:
        body += rng.randbytes(4 * abs(n))
    struct.pack_into("<I", body, PAYLOAD_SIZE, len(body) - HEADER_SIZE - chunks)
    return with_crc(bytes(body) + bytes(4))


def mutate_image_size(rng: random.Random, data: bytes) -> bytes:
    """Another image size with the same latent size, maybe another color type, CRC fixed."""
    out = bytearray(data)
    major = out[4]
    step = 16 if major == 1 else 64
    w, h = struct.unpack_from("<II", out, SIZE)
    new_w = (w - 1) // step * step + rng.randint(1, step)
    new_h = (h - 1) // step * step + rng.randint(1, step)
    struct.pack_into("<II", out, SIZE, new_w, new_h)
    out[COLOR] = rng.choice([0, 1])
    return with_crc(out)


def mutate_splice(rng: random.Random, data: bytes, donor: bytes) -> bytes:
    """This file's header and chunks with another file's payload (same weights), sizes and CRC fixed."""
    chunks, _ = sections(data)
    d_chunks, d_payload = sections(donor)
    body = bytearray(data[: HEADER_SIZE + chunks] + donor[HEADER_SIZE + d_chunks : HEADER_SIZE + d_chunks + d_payload])
    struct.pack_into("<I", body, PAYLOAD_SIZE, d_payload)
    return with_crc(bytes(body) + bytes(4))


# name: (weight, mutator); about a quarter of the mutants reach the entropy decoder
MUTATORS = {
    "bit flips": (3, mutate_bit_flips),
    "truncation": (2, mutate_truncation),
    "insertion": (1, mutate_insertion),
    "insertion, sizes fixed": (1, mutate_insertion_with_sizes),
    "header byte": (2, mutate_header_byte),
    "header field extreme": (4, mutate_header_field_extreme),
    "chunks": (1, mutate_chunks),
    "payload bits": (2, mutate_payload_bits),
    "payload word": (1, mutate_payload_word),
    "payload length": (1, mutate_payload_length),
    "image size": (1, mutate_image_size),
    "splice": (1, None),  # needs a donor: see _mutant
}


def _mutant(rng: random.Random, seeds: list[Seed], index: int) -> tuple[str, Seed, bytes]:
    seed = seeds[index % len(seeds)]
    names = list(MUTATORS)
    name = rng.choices(names, weights=[MUTATORS[n][0] for n in names])[0]
    if name == "splice":
        donors = [s for s in seeds if s.weights is seed.weights and s is not seed]
        return name, seed, mutate_splice(rng, seed.data, rng.choice(donors).data)
    return name, seed, MUTATORS[name][1](rng, seed.data)


@pytest.fixture(scope="module")
def fuzz_seeds(tiny_weights) -> list[Seed]:
    """Real files of every format: the golden vectors and a few with alpha, ICC and EXIF chunks."""
    from slimcodec.weights import load_weights

    factorized = load_weights(VECTORS / "v1.1" / "tiny-weights.pt")
    hyperprior = load_weights(VECTORS / "v2.0" / "tiny-hyperprior-weights.pt")
    seeds = [Seed(f"{p.parent.name}/{p.name}", p.read_bytes(), factorized)
             for version in ("v1.0", "v1.1") for p in sorted((VECTORS / version).glob("*.slim"))]
    seeds += [Seed(f"v2.0/{p.name}", p.read_bytes(), hyperprior) for p in sorted((VECTORS / "v2.0").glob("*.slim"))]
    channel = load_weights(VECTORS / "v3.0" / "tiny-channel-weights.pt")
    seeds += [Seed(f"v3.0/{p.name}", p.read_bytes(), channel) for p in sorted((VECTORS / "v3.0").glob("*.slim"))]
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 256, (24, 40, 3), dtype=np.uint8))
    rgba = gradient_image(24, 20, "RGBA")
    rgba.putalpha(Image.fromarray((np.arange(480) % 251).astype(np.uint8).reshape(20, 24), "L"))
    rgba.info["icc_profile"] = b"icc"
    exif = Image.Exif()
    exif[0x010F] = "cam"
    rgba.info["exif"] = exif.tobytes()
    for weights in (tiny_weights, hyperprior):
        for name, image, scale in (("gradient", gradient_image(40, 24), 1.0),
                                   ("gray", gradient_image(17, 33, "L"), 0.5),
                                   ("noise", noise, 2.0), ("rgba+icc+exif", rgba, 1.0)):
            seeds.append(Seed(f"fresh/{name}", codec.encode(image, 8, scale=scale, weights=weights), weights))
    return seeds


def _decode_mutant(data: bytes, weights) -> str:
    """``"decoded"`` or the refusal's reason, first words; anything but SlimFormatError propagates."""
    try:
        image = codec.decode(data, weights=weights)
    except SlimFormatError as exc:
        text = str(exc)
        assert text and "\n" not in text, repr(text)
        return re.sub(r"0x[0-9a-f]+|[0-9]+(x[0-9]+)?", "N", " ".join(text.split("(")[0].split()[:4]))
    header = read_slim(data).header
    assert image.size == (header.image_width, header.image_height)
    return "decoded"


def test_fuzzed_real_files_decode_to_the_header_size_or_raise_slim_format_error(fuzz_seeds, capsys):
    """20,000 mutants of real 1.x and 2.0 files (a fixed seed, so a failure reproduces)."""
    import collections
    import faulthandler

    rng = random.Random(FUZZ_SEED)
    outcomes: collections.Counter = collections.Counter()
    slowest = (0.0, "")
    start = time.perf_counter()
    faulthandler.dump_traceback_later(600, exit=True, file=sys.__stderr__)  # a hang: a traceback, not never
    try:
        for index in range(FUZZ_MUTANTS):
            kind, seed, data = _mutant(rng, fuzz_seeds, index)
            began = time.perf_counter()
            try:
                outcome = _decode_mutant(data, seed.weights)
            except Exception as exc:
                pytest.fail(f"mutant {index} ({kind} of {seed.name}, {data.hex()}): {type(exc).__name__}: {exc}")
            took = time.perf_counter() - began
            slowest = max(slowest, (took, f"mutant {index} ({kind} of {seed.name})"))
            outcomes[outcome] += 1
    finally:
        faulthandler.cancel_dump_traceback_later()
    wall = time.perf_counter() - start
    entropy = outcomes["decoded"] + outcomes["corrupt payload"]
    with capsys.disabled():
        print(f"\nfuzz: {FUZZ_MUTANTS} mutants in {wall:.1f} s, {entropy} reached the entropy decoder, "
              f"slowest {slowest[0] * 1000:.0f} ms ({slowest[1]}); {dict(outcomes.most_common())}")
    assert sum(outcomes.values()) == FUZZ_MUTANTS
    assert slowest[0] < 2.0, slowest
    assert entropy >= 3000, outcomes  # a few thousand go all the way to the range decoder
    assert outcomes["decoded"] >= 500 and outcomes["corrupt payload"] >= 1000, outcomes
    assert outcomes["checksum mismatch"] >= 1000 and outcomes["truncated file"] >= 1000, outcomes


@pytest.mark.parametrize("major", [1, 2, 3])
def test_an_empty_payload_claiming_a_huge_image_is_refused_before_synthesis(major, tiny_weights):
    """A 52-byte file with a valid CRC once decoded, with exit 0, to a 100 MP image."""
    import time

    from slimcodec.formats.slimfile import ColorType, SlimFile, SlimHeader, write_slim
    from slimcodec.weights import load_weights

    vectors = Path(__file__).resolve().parents[1] / "formats" / "vectors"
    weights = {1: tiny_weights, 2: load_weights(vectors / "v2.0" / "tiny-hyperprior-weights.pt"),
               3: load_weights(vectors / "v3.0" / "tiny-channel-weights.pt")}[major]
    header = SlimHeader.for_image(10000, 10000, ColorType.RGB, 8, weights.weights_id, version_major=major)
    data = write_slim(SlimFile(header, (), b""))
    assert len(data) == 52
    start = time.perf_counter()
    # 3.1: its tile table (a word per tile) is what it is too short for
    with pytest.raises(SlimFormatError, match="payload too short for its (image size|tile table)"):
        codec.decode(data, weights=weights)
    assert time.perf_counter() - start < 5  # refused from the header, not after decoding 100 MP


def test_a_broken_alpha_chunk_is_refused_before_the_image_is_synthesized(tiny_weights, monkeypatch):
    from slimcodec.formats.slimfile import Chunk, SlimFile, read_slim, write_slim

    rgba = gradient_image(40, 24, "RGBA")
    rgba.putalpha(gradient_image(40, 24, "L"))
    slim = read_slim(codec.encode(rgba, 8, weights=tiny_weights))
    broken = SlimFile(slim.header, tuple(Chunk(c.tag, c.data[:-3]) if c.tag == b"ALPH" else c for c in slim.chunks),
                      slim.payload)
    monkeypatch.setattr(codec, "synthesize", lambda *a, **k: pytest.fail("synthesized before the alpha check"))
    with pytest.raises(SlimFormatError):
        codec.decode(write_slim(broken), weights=tiny_weights)


class _EndlessStream:
    """A file-like object that serves ``head`` then zeros for ever, counting what is read."""

    def __init__(self, head: bytes):
        self.head, self.read_bytes = head, 0

    def read(self, n: int = -1) -> bytes:
        if n < 0:
            raise AssertionError("read everything from an endless stream")
        start = self.read_bytes
        self.read_bytes += n
        return (self.head[start : start + n]).ljust(n, b"\0")


def test_reading_a_file_is_bounded_by_what_its_header_gives(tiny_weights):
    from slimcodec.formats.slimfile import read_slim_stream

    good = codec.encode(gradient_image(24, 16), 8, weights=tiny_weights)
    stream = _EndlessStream(good)
    with pytest.raises(SlimFormatError, match="trailing data"):
        read_slim_stream(stream)
    assert stream.read_bytes == len(good) + 1
    with pytest.raises(SlimFormatError, match="bad magic"):
        with open("/dev/zero", "rb") as zero:
            read_slim_stream(zero)


def test_slim_info_does_not_read_past_the_sizes_its_header_gives(tiny_weights, tmp_path):
    good = codec.encode(gradient_image(24, 16), 8, weights=tiny_weights)
    sparse = tmp_path / "huge.slim"
    with open(sparse, "wb") as f:
        f.write(good)
        f.truncate(8 << 30)  # 8 GB, sparse
    result = CliRunner().invoke(__import__("slimcodec.cli.main", fromlist=["cli"]).cli, ["info", str(sparse)])
    assert result.exit_code == 1 and "trailing data" in result.output


def test_a_png_with_corrupt_image_data_is_refused_not_encoded_as_black(tmp_path):
    """Its IDAT data is broken (with a valid chunk CRC); getexif() once hid the error."""
    (tmp_path / "corrupt.png").write_bytes(corrupt_png())
    with pytest.raises(UnsupportedImageError, match="corrupt.png: cannot read image"):
        open_image(tmp_path / "corrupt.png")


# ---------------------------------------------------------------- issue 30: hostile input, round two

# the 52-byte file: chunks_size 0xFFFFFFFF and payload_size 0xFFFFFFFC (8.4 GB declared)
DECLARES_8_GB = bytes.fromhex("534c494d020030004000000030000000000830000582bc6c9c4e7286040004000000000000000000"
                              "fffffffffcffffffb7aac3ef")

_UNDER_2_GIB = """
import resource, sys, time
resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))
sys.argv = ["slim"] + sys.argv[1:]
from slimcodec.cli.main import cli
start = time.perf_counter()
try:
    cli.main(prog_name="slim")
finally:
    print(f"seconds {time.perf_counter() - start:.3f}", file=sys.stderr)
"""


@pytest.mark.parametrize("command", ["decode", "info"])
def test_a_52_byte_file_declaring_8_gb_is_refused_in_one_line_under_a_2_gib_address_space_limit(command,
                                                                                                 tmp_path):
    """Issue 30 (1): read_slim_stream reserved the 8.4 GB the header declares ("out of memory")."""
    import subprocess

    bad = tmp_path / "bad.slim"
    bad.write_bytes(DECLARES_8_GB)
    args = [command, str(bad)] + (["-o", str(tmp_path / "out.png")] if command == "decode" else [])
    proc = subprocess.run([sys.executable, "-c", _UNDER_2_GIB, *args], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    lines = proc.stderr.splitlines()
    action = "decode" if command == "decode" else "read"
    assert proc.returncode == 1, proc.stderr
    assert lines[0] == f"error: cannot {action} {bad}: truncated file", proc.stderr
    assert "Traceback" not in proc.stderr and "memory" not in proc.stderr
    assert float(lines[-1].split()[1]) < 2.0  # the command itself, after the imports
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.slim"]


def test_a_52_byte_file_declaring_8_gb_is_refused_by_the_api_and_pillow_without_allocating_it(tmp_path):
    import io

    from slimcodec.formats.slimfile import read_slim_stream
    from slimcodec.pillow_plugin import SlimImageError

    (tmp_path / "bad.slim").write_bytes(DECLARES_8_GB)
    tracemalloc.start()
    try:
        with pytest.raises(SlimFormatError, match="^truncated file$"):
            codec.decode(DECLARES_8_GB)
        with pytest.raises(SlimImageError, match="truncated file"):
            Image.open(tmp_path / "bad.slim").load()
        for stream in (io.BytesIO(DECLARES_8_GB), _Unseekable(DECLARES_8_GB)):  # sized, and a pipe
            with pytest.raises(SlimFormatError, match="^truncated file$"):
                read_slim_stream(stream)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20_000_000


class _Unseekable:
    """A pipe: bytes, then end of file; no size, no seek."""

    def __init__(self, data: bytes):
        self.data, self.asked = data, []

    def seekable(self) -> bool:
        return False

    def read(self, n: int = -1) -> bytes:
        self.asked.append(n)
        out, self.data = self.data[:n], self.data[n:]
        return out


def test_a_stream_without_a_size_is_read_in_bounded_pieces(good):
    from slimcodec.formats.slimfile import READ_PIECE, read_slim_stream

    stream = _Unseekable(good)
    assert read_slim_stream(stream) == good
    assert max(stream.asked) <= READ_PIECE
    huge = bytearray(good)
    struct.pack_into("<I", huge, PAYLOAD_SIZE, 0xFFFFFFF0)  # 4 GB declared, the rest missing
    stream = _Unseekable(bytes(huge))
    with pytest.raises(SlimFormatError, match="^truncated file$"):
        read_slim_stream(stream)
    assert max(stream.asked) <= READ_PIECE


# offsets of every header field after header_size: a flip there is a checksum mismatch for every reader
FIELD_OFFSETS = [8, 12, 16, 17, 18, 20, 28, 30, 32, 33, 34, 36]


@pytest.mark.parametrize("offset", FIELD_OFFSETS)
def test_a_flipped_header_field_gets_the_same_verdict_from_every_reader(offset, good, tiny_weights,
                                                                         tiny_weights_path, tmp_path):
    """Issue 30 (4): byte 17 flipped gave "unsupported bit depth 24" from the CLI and Pillow,
    "checksum mismatch" from slimcodec.decode (SPEC: the checksum first)."""
    from slimcodec import pillow_plugin

    data = bytearray(good)
    data[offset] ^= 0x10
    bad = tmp_path / "bad.slim"
    bad.write_bytes(bytes(data))
    with pytest.raises(SlimFormatError, match="^checksum mismatch$"):
        codec.decode(bytes(data), weights=tiny_weights)
    previous = pillow_plugin.set_weights(tiny_weights)
    try:
        with pytest.raises(pillow_plugin.SlimImageError, match=": checksum mismatch$"):
            Image.open(bad).load()
    finally:
        pillow_plugin.set_weights(previous)
    result = slim(["decode", bad, "-o", tmp_path / "out.png", "--weights", tiny_weights_path], exit_code=1)
    assert one_error_line(result, "decode") == f"error: cannot decode {bad}: checksum mismatch"
    result = slim(["info", bad], exit_code=1)
    assert one_error_line(result, "read") == f"error: cannot read {bad}: checksum mismatch"


def _hyperprior_bomb(width: int) -> bytes:
    """Issue 30 (2): 10000x10000 at ``width`` with 0.2.0's hyperprior weights, a real image's z
    (tiled) and no y data at all."""
    from slimcodec.entropy import quantize
    from slimcodec.entropy.rangecoder import Encoder, channel_indexes
    from slimcodec.formats.slimfile import ColorType, SlimFile, SlimHeader, write_slim
    from slimcodec.latents import hyperprior as hyperprior_codec
    from slimcodec.weights import load_weights, shipped_weights_path

    wts = load_weights(shipped_weights_path("0582bc6c9c4e7286"))
    y = codec.analyze(wts, np.asarray(gradient_image(128, 128)), width)
    q_z = quantize(hyperprior_codec.hyper_analysis(wts, y, width), wts.tables[width])
    side = (10000 + 63) // 64
    q_z = np.tile(q_z, (1, side // q_z.shape[1] + 1, side // q_z.shape[2] + 1))[:, :side, :side]
    encoder = Encoder()
    encoder.encode(q_z, channel_indexes(q_z.shape), wts.tables[width])
    header = SlimHeader.for_image(10000, 10000, ColorType.RGB, width, wts.weights_id, version_major=2)
    return write_slim(SlimFile(header, (), encoder.words().tobytes()))


def test_a_hyperprior_bomb_is_refused_before_the_hyper_synthesis_runs_over_the_whole_image(monkeypatch):
    """A 10000x10000 file with a valid z and no y ran the hyper-synthesis over all of it (6 s and
    1.2 GB at width 48) before the y size check; now it stops after the first tile it cannot pay for."""
    bomb = _hyperprior_bomb(48)
    assert len(bomb) < 50_000
    from slimcodec.entropy.gaussian import FixedPointHyperSynthesis

    ran = []
    real = FixedPointHyperSynthesis.run

    def counting(self, z_symbols, conv=None, **kwargs):
        ran.append(z_symbols.shape[1] * z_symbols.shape[2])
        return real(self, z_symbols, conv, **kwargs)

    monkeypatch.setattr(FixedPointHyperSynthesis, "run", counting)
    monkeypatch.setattr(codec, "synthesize", lambda *a, **k: pytest.fail("synthesized a refused file"))
    start = time.perf_counter()
    tracemalloc.start()
    try:
        with pytest.raises(SlimFormatError, match="payload too short for its hyperprior's scales"):
            codec.decode(bomb)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    took = time.perf_counter() - start
    assert sum(ran) < 0.05 * 157 * 157  # a tile or two of the 157x157 z positions, not all of them
    assert peak < 300_000_000, peak
    assert took < 10, took  # about 1 s on an idle core (most of it decoding z); generous for a busy CI


def test_tiled_hyper_networks_equal_one_run_over_the_whole_image(tiny_weights):
    """The indexes are exact integers whatever the tiling; the means agree to float rounding."""
    from slimcodec.latents import hyperprior as hyperprior_codec
    from slimcodec.weights import load_weights

    wts = load_weights(VECTORS / "v2.0" / "tiny-hyperprior-weights.pt")
    rng = np.random.default_rng(3)
    q_z = rng.integers(-3, 4, size=(8, 5, 7)).astype(np.int32)
    whole = hyperprior_codec.side_information(wts, q_z, 8, 4096, tile=64)
    for tile in (1, 2, 3):
        indexes, means = hyperprior_codec.side_information(wts, q_z, 8, 4096, tile=tile)
        assert np.array_equal(indexes, whole[0])
        np.testing.assert_allclose(means, whole[1], rtol=1e-5, atol=1e-5)
    y = rng.normal(0, 3, size=(8, 20, 28)).astype(np.float32)  # h_a, tiled the same way
    z = hyperprior_codec.hyper_analysis(wts, y, 8)
    assert z.shape == (8, 5, 7)
    for tile in (1, 2, 3):
        np.testing.assert_allclose(hyperprior_codec.hyper_analysis(wts, y, 8, tile=tile), z, rtol=1e-5, atol=1e-4)


def png_with_rows(width: int, height: int, rows: int, interlaced: bool = False) -> bytes:
    """An RGB PNG whose complete zlib stream holds only ``rows`` of its ``height`` rows."""
    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 1 if interlaced else 0)
    raw = b"".join(b"\0" + bytes([200, 120, 40]) * width for _ in range(rows))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def test_a_png_whose_image_data_ends_early_is_refused_not_encoded_with_black_rows(tiny_weights_path, tmp_path):
    """Issue 30 (5): a PNG whose IDAT held 10 of its 64 rows encoded with exit 0, the rest black."""
    _refused_though_pillow_loads_it(tmp_path / "short.png", png_with_rows(64, 64, 10),
                                    "image data ends early: 1930 of its 12352 bytes", tiny_weights_path)


def _refused_though_pillow_loads_it(src, data: bytes, reason: str, weights_path) -> None:
    """``slim encode`` of ``data`` (which Pillow loads without a word) fails with one line giving
    ``reason``, exit 1, and leaves no output."""
    src.write_bytes(data)
    with Image.open(src) as image:
        image.load()  # Pillow itself says nothing
    result = slim(["encode", src, "-o", src.parent / "out.slim", "--weights", weights_path, "-w", 8], exit_code=1)
    assert one_error_line(result, "encode") == f"error: cannot encode {src}: cannot read image ({reason})"
    assert sorted(p.name for p in src.parent.iterdir()) == [src.name]


def test_complete_pngs_pass_the_image_data_check(tmp_path):
    import io

    from slimcodec.imageio import png_data_problem

    for mode in ("RGB", "RGBA", "L", "P", "1", "I;16", "LA"):
        for size in ((1, 1), (13, 7), (64, 3)):
            buf = io.BytesIO()
            gradient_image(*size).convert(mode).save(buf, format="PNG")
            assert png_data_problem(buf.getvalue()) is None, (mode, size)
    # Pillow writes no interlaced PNG: Adam7 passes of a 13x9 image hold 18 rows of 1 to 7 pixels
    assert png_data_problem(png_with_rows(13, 9, 9, interlaced=True)) is not None


def _jpeg(progressive: bool = False, mode: str = "RGB") -> bytes:
    import io

    buf = io.BytesIO()
    image = Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 48, 3), dtype=np.uint8)).convert(mode)
    image.save(buf, format="JPEG", quality=90, progressive=progressive)
    return buf.getvalue()


@pytest.mark.parametrize("progressive", [False, True], ids=["baseline", "progressive"])
def test_a_jpeg_cut_mid_scan_with_an_end_marker_appended_is_refused(progressive, tiny_weights_path, tmp_path):
    """Issue 30 (5): libjpeg only warns about a scan that ends early, and Pillow loaded it grey with exit 0."""
    data = _jpeg(progressive)
    _refused_though_pillow_loads_it(tmp_path / "cut.jpg", data[: len(data) // 2] + b"\xff\xd9",
                                    "Corrupt JPEG data: premature end of data segment", tiny_weights_path)


def test_a_jpeg_with_corrupt_scan_bytes_is_refused():
    from slimcodec.imageio import UnsupportedImageError, open_image

    data = bytearray(_jpeg())
    for i in range(len(data) // 2, len(data) // 2 + 120, 7):
        data[i] ^= 0x5A
    with pytest.raises(UnsupportedImageError, match="^<stdin>: cannot read image \\(Corrupt JPEG data"):
        open_image(bytes(data))


def test_whole_jpegs_pass_the_scan_check():
    from slimcodec.imageio import jpeg_data_problem

    for progressive in (False, True):
        for mode in ("RGB", "L", "CMYK"):
            assert jpeg_data_problem(_jpeg(progressive, mode)) is None, (progressive, mode)


def _truncated_in(fmt: str) -> bytes:
    import io

    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 48, 3), dtype=np.uint8)).save(buf, format=fmt)
    return buf.getvalue()[: len(buf.getvalue()) * 9 // 10]


@pytest.mark.parametrize("fmt, suffix", [("PNG", "png"), ("JPEG", "jpg"), ("WEBP", "webp"), ("TIFF", "tif"),
                                         ("GIF", "gif"), ("AVIF", "avif"), ("HEIF", "heic")])
def test_a_truncated_image_in_any_format_is_refused_with_one_line_and_no_output(fmt, suffix, tiny_weights_path,
                                                                                tmp_path):
    from slimcodec.imageio import register_plugins

    register_plugins()
    try:
        data = _truncated_in(fmt)
    except (KeyError, OSError, ValueError):
        pytest.skip(f"Pillow cannot write {fmt} here")
    src = tmp_path / f"cut.{suffix}"
    src.write_bytes(data)
    result = slim(["encode", src, "-o", tmp_path / "out.slim", "--weights", tiny_weights_path, "-w", 8],
                  exit_code=1)
    assert one_error_line(result, "encode").startswith(f"error: cannot encode {src}: ")
    assert "Warning" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [src.name]


def test_library_warnings_become_one_note_line_not_raw_warnings(tiny_weights_path, tmp_path):
    """Issue 30 (6): Pillow's "Corrupt EXIF data" UserWarning reached stderr as two raw lines."""
    import io

    buf = io.BytesIO()
    gradient_image(40, 24).save(buf, format="JPEG", exif=b"Exif\x00\x00II*\x00\x08\x00\x00\x00\xff\xff garbage")
    src = tmp_path / "badexif.jpg"
    src.write_bytes(buf.getvalue())
    result = slim(["encode", src, "-o", tmp_path / "out.slim", "--weights", tiny_weights_path, "-w", 8])
    assert "Warning" not in result.stderr and "warnings.warn" not in result.stderr, result.stderr
    lines = result.stderr.splitlines()
    assert lines[-1].startswith("1 file encoded") and lines[0].startswith("encoded "), result.stderr
    assert [line.strip() for line in lines[1:-1]] == ["note: unreadable EXIF dropped (no readable tag)"], lines


def test_a_tiff_with_a_bad_directory_entry_warns_in_a_note(tiny_weights_path, tmp_path):
    import io

    from slimcodec.imageio import library_notes

    buf = io.BytesIO()
    gradient_image(40, 24).save(buf, format="TIFF", description="x" * 20)
    data = bytearray(buf.getvalue())
    first = struct.unpack_from("<I", data, 4)[0]
    for k in range(struct.unpack_from("<H", data, first)[0]):  # ImageDescription: an absurd count
        entry = first + 2 + 12 * k
        if struct.unpack_from("<H", data, entry)[0] == 270:
            struct.pack_into("<I", data, entry + 4, 0x7FFFFFFF)
    src = tmp_path / "bad-ifd.tif"
    src.write_bytes(bytes(data))
    result = CliRunner().invoke(cli, ["encode", str(src), "-o", str(tmp_path / "out.slim"), "--weights",
                                      str(tiny_weights_path), "-w", "8"], env={"SLIM_WORKERS": "1"})
    assert "Traceback" not in result.stderr and "Warning" not in result.stderr, result.stderr
    assert result.exit_code in (0, 1)
    assert all(line.strip().startswith(("encoded ", "note: ", "error: ", "0 files", "1 file"))
               for line in result.stderr.splitlines()), result.stderr
    assert library_notes([]) == []


def test_mode_i_samples_above_65535_are_refused_not_clipped_to_white(tiny_weights_path, tmp_path):
    """Issue 30 (7): 32-bit input above 65535 was clipped with only the note "I input reduced to 8 bits"."""
    wide = np.full((24, 40), 70000, dtype=np.int32)
    wide[:, :20] = 1000
    Image.fromarray(wide, "I").save(tmp_path / "wide.tif")
    result = slim(["encode", tmp_path / "wide.tif", "-o", tmp_path / "out.slim", "--weights", tiny_weights_path,
                   "-w", 8], exit_code=1)
    assert one_error_line(result, "encode").endswith("32-bit integer (mode I) samples outside 0..65535 "
                                                     "(min 1000, max 70000); convert the image to 16 or 8 bits first")
    negative = np.full((24, 40), -5, dtype=np.int32)
    with pytest.raises(UnsupportedImageError, match="outside 0..65535"):
        prepare(Image.fromarray(negative, "I"))
    within = np.full((24, 40), 65535, dtype=np.int32)
    within[:, :20] = 0
    pixels = prepare(Image.fromarray(within, "I"))  # a 16-bit range held in 32 bits: scaled, not clipped
    assert pixels.rgb[0, 0, 0] == 0 and pixels.rgb[0, 39, 0] == 255
    assert pixels.notes == ["I input reduced to 8 bits"]


@pytest.mark.parametrize("command", ["encode", "decode", "info"])
def test_a_fifo_named_like_an_input_is_refused_not_waited_on(command, tiny_weights_path, tmp_path):
    """Issue 30 (7): ``slim encode x.png`` with x.png a FIFO nobody writes to blocked for ever."""
    import os

    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs here")
    src = tmp_path / ("x.slim" if command in ("decode", "info") else "x.png")
    os.mkfifo(src)
    out = ["-o", tmp_path / ("out.slim" if command == "encode" else "out.png")] if command != "info" else []
    weights = ["--weights", tiny_weights_path] if command != "info" else []
    weights += ["-w", 8] if command == "encode" else []
    start = time.perf_counter()
    result = slim([command, src, *out, *weights], exit_code=1)
    assert time.perf_counter() - start < 10
    action = "read" if command == "info" else command
    assert one_error_line(result, action) == (f"error: cannot {action} {src}: not a regular file (a FIFO); to read "
                                              "a stream, give - and redirect it to standard input")


def test_a_read_only_file_system_error_names_the_output_not_its_temporary_file(tmp_path, monkeypatch):
    """Issue 30 (7): on a read-only mount unlink() fails (EROFS) even for the temporary file that was
    never created, and that error, naming ``.x.slim.<pid>.<tag>.slimtmp``, replaced the real one."""
    import errno
    import os

    from slimcodec import outputs

    def read_only(path, *args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))

    monkeypatch.setattr(outputs, "_write_temp", read_only)
    monkeypatch.setattr(Path, "unlink", lambda self, missing_ok=False: read_only(self))
    with pytest.raises(outputs.OutputError) as info:
        outputs.write_atomic(tmp_path / "x.slim", lambda f: f.write(b"x"), overwrite=False)
    assert str(info.value) == f"cannot write {tmp_path / 'x.slim'}: read-only file system"


# ---------------------------------------------------------------- one verdict per file, whichever reader

# The suite runs a small seeded subset; the campaign runs the same test with more mutants:
#
#     SLIM_FUZZ_READERS=10000 SLIM_FUZZ_READERS_SEED=1 \
#         python -m pytest -q tests/test_hostile.py -k test_every_reader_gives -s
#
# (about 0.02-0.05 s per mutant on one core: it reads each mutant four ways. Run for issue 30:
# 10,000 mutants, seed 1, 210 s on a shared core, no finding.) The API-only campaign above
# (test_fuzzed_real_files_...) runs FUZZ_MUTANTS = 20,000 in the suite.
READER_MUTANTS = int(os.environ.get("SLIM_FUZZ_READERS", "200"))
READER_SEED = int(os.environ.get("SLIM_FUZZ_READERS_SEED", "30"))


def _normalized(reason: str) -> str:
    return reason.split("; set them with")[0].strip()


def _api_verdict(data: bytes, weights) -> str:
    try:
        codec.decode(data, weights=weights)
    except SlimFormatError as exc:
        assert "\n" not in str(exc)
        return _normalized(str(exc))
    return "decoded"


def _pillow_verdict(path: Path, weights) -> str:
    from slimcodec import pillow_plugin

    previous = pillow_plugin.set_weights(weights)
    try:
        with Image.open(path) as image:
            image.load()
    except pillow_plugin.SlimImageError as exc:
        text = str(exc)
        assert "\n" not in text
        return _normalized(text.split(".slim file: ", 1)[1])
    except UnidentifiedImageError:  # not ours: Pillow's plugins identify files by their first bytes
        data = path.read_bytes()
        assert not data.startswith(b"SLIM")
        if len(data) < 4 and b"SLIM".startswith(data):
            return "truncated file" if data else "empty file"
        return "not a .slim file (bad magic)"
    finally:
        pillow_plugin.set_weights(previous)
    return "decoded"


def _cli_verdict(path: Path, weights_path: Path, out: Path) -> str:
    result = CliRunner().invoke(cli, ["decode", str(path), "-o", str(out), "--weights", str(weights_path)],
                                env={"SLIM_WORKERS": "1"})
    assert "Traceback" not in result.output + result.stderr and result.exception is None or \
        isinstance(result.exception, SystemExit), result.stderr
    if result.exit_code == 0:
        assert out.is_file()
        out.unlink()
        return "decoded"
    assert result.exit_code == 1, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    return _normalized(errors[0].split(f"{path}: ", 1)[1])


def _info_verdict(path: Path) -> str:
    result = CliRunner().invoke(cli, ["info", str(path)])
    assert "Traceback" not in result.output + result.stderr
    if result.exit_code == 0:
        return "read"
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert result.exit_code == 1 and len(errors) == 1, result.stderr
    return errors[0].split(f"{path}: ", 1)[1]


def test_every_reader_gives_a_mutant_the_same_verdict(fuzz_seeds, tiny_weights, tiny_weights_path, tmp_path,
                                                       capsys):
    """Mutants of real files (header fields, chunks, payload; most with the CRC recomputed) through
    slimcodec.decode, the Pillow plugin, ``slim decode`` and ``slim info``: the same verdict from
    each (``slim info`` reads the container only: its refusals are the decoders'), one line, no
    traceback, no MemoryError, no hang, no file left but a decoded output."""
    import collections
    import faulthandler

    from slimcodec.weights import load_weights

    # the weights file of each seed's weights, by weights id (the CLI reads files)
    paths = {load_weights(p).weights_id: p for p in (
        tiny_weights_path, VECTORS / "v1.1" / "tiny-weights.pt", VECTORS / "v2.0" / "tiny-hyperprior-weights.pt",
        VECTORS / "v3.0" / "tiny-channel-weights.pt")}
    rng = random.Random(READER_SEED)
    outcomes: collections.Counter = collections.Counter()
    work = tmp_path / "work"
    work.mkdir()
    faulthandler.dump_traceback_later(max(600, READER_MUTANTS), exit=True, file=sys.__stderr__)
    start = time.perf_counter()
    try:
        for index in range(READER_MUTANTS):
            kind, seed, data = _mutant(rng, fuzz_seeds, index)
            path = work / "m.slim"
            path.write_bytes(data)
            began = time.perf_counter()
            try:
                verdicts = {"api": _api_verdict(data, seed.weights), "pillow": _pillow_verdict(path, seed.weights),
                            "cli": _cli_verdict(path, paths[seed.weights.weights_id], work / "m.png")}
                info = _info_verdict(path)
            except Exception as exc:  # MemoryError included: anything but a verdict is a finding
                pytest.fail(f"mutant {index} ({kind} of {seed.name}, {data.hex()}): {type(exc).__name__}: {exc}")
            assert len(set(verdicts.values())) == 1, (index, kind, seed.name, verdicts, data.hex())
            assert info == "read" or info == verdicts["api"], (index, kind, seed.name, info, verdicts)
            assert time.perf_counter() - began < 10, (index, kind, seed.name)
            assert sorted(p.name for p in work.iterdir()) == ["m.slim"], (index, list(work.iterdir()))
            outcomes[verdicts["api"].split(" (")[0]] += 1
    finally:
        faulthandler.cancel_dump_traceback_later()
    with capsys.disabled():
        print(f"\nreaders fuzz: {READER_MUTANTS} mutants (seed {READER_SEED}) in {time.perf_counter() - start:.1f} s,"
              f" 4 readers each; {dict(outcomes.most_common(8))}")


def test_decoding_an_older_releases_file_loads_only_the_weights_it_names(tmp_path, monkeypatch):
    """Issue 30: `slim decode` loaded the default weights before every file, beside the ones the file
    names (340 MB for the width-192 hyperprior bomb, most of it the second bundle)."""
    import shutil

    from slimcodec import weights as weights_module

    loaded = []
    real = weights_module.load_weights_bytes
    def recording(data, *args, **kwargs):
        wts = real(data, *args, **kwargs)
        loaded.append(wts.weights_id.hex())
        return wts

    monkeypatch.setattr(weights_module, "load_weights_bytes", recording)
    weights_module._load_cached.cache_clear()
    src = tmp_path / "old.slim"
    shutil.copy(Path(__file__).parent / "released" / "0.2.0-0582bc6c9c4e7286-w96.slim", src)
    slim(["decode", src, "-o", tmp_path / "old.png"])
    weights_module._load_cached.cache_clear()
    assert set(loaded) == {"0582bc6c9c4e7286"}, loaded
