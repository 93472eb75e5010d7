"""Image modes, orientation and metadata: through prepare(), the codec API and the CLI (tiny model)."""

from __future__ import annotations

import io
import struct
import warnings
import zlib

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import gradient_image, xmp_png_info
from PIL import Image, ImageCms, ImageOps

from slimcodec import codec
from slimcodec.cli.main import cli
from slimcodec.errors import ConversionWarning, UnsupportedImageError
from slimcodec.formats.slimfile import read_slim
from slimcodec.imageio import open_image, prepare

ORIENTATION, MAKE = 0x0112, 0x010F
SRGB_ICC = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


# ---------------------------------------------------------------- helpers


def slim(args, exit_code: int = 0):
    result = CliRunner().invoke(cli, [str(a) for a in args], env={"SLIM_WORKERS": "1"}, prog_name="slim")
    assert result.exit_code == exit_code, (result.exit_code, result.stdout, result.stderr, result.exc_info)
    return result


def reopen(image: Image.Image, fmt: str, **params) -> Image.Image:
    """``image`` saved as ``fmt`` in memory and opened again, as a file would be."""
    buf = io.BytesIO()
    image.save(buf, format=fmt, **params)
    buf.seek(0)
    return Image.open(buf)


def png_rgb16(rgb16: np.ndarray) -> bytes:
    """A 48-bit RGB PNG (Pillow cannot write one)."""
    h, w = rgb16.shape[:2]

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    raw = b"".join(b"\0" + rgb16[y].astype(">u2").tobytes() for y in range(h))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def exif_with(**tags) -> Image.Exif:
    exif = Image.Exif()
    for tag, value in tags.items():
        exif[{"orientation": ORIENTATION, "make": MAKE}[tag]] = value
    return exif


def round_trip(image: Image.Image, tiny_weights, width: int = 8, **kwargs) -> tuple[Image.Image, list[str]]:
    """Encode and decode with the tiny model; also return the conversion warnings' messages."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = codec.encode(image, width, weights=tiny_weights, **kwargs)
    notes = [str(w.message) for w in caught if issubclass(w.category, ConversionWarning)]
    return codec.decode(data, weights=tiny_weights), notes


def cmyk_profile_header() -> bytes:
    """Bytes that look like a CMYK ICC profile (header only: no colour engine can use it)."""
    header = bytearray(128)
    struct.pack_into(">I", header, 0, 128)
    header[12:16], header[16:20], header[20:24], header[36:40] = b"prtr", b"CMYK", b"Lab ", b"acsp"
    return bytes(header)


# ---------------------------------------------------------------- modes through the codec API


def palette_with_transparency() -> Image.Image:
    image = gradient_image(24, 20).convert("P")
    image.info["transparency"] = int(np.asarray(image)[0, 0])
    return image


def alpha_plane(w: int, h: int) -> np.ndarray:
    return (np.arange(w * h, dtype=np.uint32) * 37 % 256).astype(np.uint8).reshape(h, w)


def rgba_image() -> Image.Image:
    image = gradient_image(24, 20, "RGBA")
    image.putalpha(Image.fromarray(alpha_plane(24, 20), "L"))
    return image


def la_image() -> Image.Image:
    image = gradient_image(24, 20, "LA")
    image.putalpha(Image.fromarray(alpha_plane(24, 20), "L"))
    return image


MODES = {
    # name: (image factory, decoded mode, expected note or None for "no note")
    "RGB": (lambda: gradient_image(24, 20), "RGB", None),
    "L": (lambda: gradient_image(24, 20, "L"), "L", None),
    "RGBA": (rgba_image, "RGBA", None),
    "LA": (la_image, "LA", None),
    "1": (lambda: gradient_image(24, 20, "1"), "L", "1-bit input coded as 8-bit grayscale"),
    "P": (lambda: gradient_image(24, 20).convert("P"), "RGB", "P input converted to RGB"),
    "P+transparency": (palette_with_transparency, "RGBA", "P input converted to RGBA"),
    "PA": (lambda: rgba_image().convert("PA"), "RGBA", "PA input converted to RGBA"),
    "I;16": (lambda: Image.fromarray((np.arange(480, dtype=np.uint16) * 131).reshape(20, 24)), "L",
             "I;16 input reduced to 8 bits"),
    "I": (lambda: Image.fromarray((np.arange(480, dtype=np.int32) * 131).reshape(20, 24)), "L",
          "I input reduced to 8 bits"),
    "F": (lambda: Image.fromarray(np.linspace(0, 1, 480, dtype=np.float32).reshape(20, 24)), "L",
          "floating-point input with values 0..1 reduced to 8 bits"),
    "CMYK": (lambda: gradient_image(24, 20, "CMYK"), "RGB",
             "CMYK input converted to RGB without a colour profile (colours approximate)"),
    "YCbCr": (lambda: gradient_image(24, 20, "YCbCr"), "RGB", "YCbCr input converted to RGB"),
    "HSV": (lambda: gradient_image(24, 20, "HSV"), "RGB", "HSV input converted to RGB"),
}


@pytest.mark.parametrize("name", list(MODES))
def test_every_mode_is_converted_with_a_note_or_kept(name, tiny_weights):
    make, decoded_mode, note = MODES[name]
    out, notes = round_trip(make(), tiny_weights)
    assert (out.mode, out.size) == (decoded_mode, (24, 20))
    assert notes == ([note] if note else [])


@pytest.mark.parametrize("make", [rgba_image, la_image], ids=["RGBA", "LA"])
def test_alpha_is_kept_exactly(make, tiny_weights):
    out, _ = round_trip(make(), tiny_weights, width=4)
    assert np.array_equal(np.asarray(out.getchannel("A")), alpha_plane(24, 20))


def test_palette_transparency_becomes_an_exact_alpha_plane(tiny_weights):
    image = palette_with_transparency()
    expected = np.asarray(image.convert("RGBA"))[:, :, 3]
    assert 0 < (expected == 0).sum() < expected.size
    out, _ = round_trip(image, tiny_weights)
    assert np.array_equal(np.asarray(out)[:, :, 3], expected)


def test_grayscale_with_a_transparent_value_keeps_it_as_alpha(tiny_weights):
    image = reopen(gradient_image(24, 20, "L"), "PNG", transparency=int(np.asarray(gradient_image(24, 20, "L"))[5, 5]))
    out, notes = round_trip(image, tiny_weights)
    assert out.mode == "LA" and notes == []
    assert np.array_equal(np.asarray(out)[:, :, 1], np.asarray(image.convert("LA"))[:, :, 1])


def test_fully_opaque_alpha_is_dropped_with_a_note(tiny_weights):
    out, notes = round_trip(gradient_image(24, 20, "RGBA"), tiny_weights)
    assert out.mode == "RGB" and notes == ["fully opaque alpha channel dropped"]


def test_16_bit_grayscale_png_is_scaled_not_clipped_to_8_bits():
    values = np.array([[0, 257, 32896, 65535]], dtype=np.uint16)
    pixels = prepare(reopen(Image.fromarray(values), "PNG"))
    assert pixels.gray and pixels.notes == ["I;16 input reduced to 8 bits"]
    assert pixels.rgb[0, :, 0].tolist() == [0, 1, 128, 255]


def test_48_bit_rgb_png_is_reduced_with_a_note(tmp_path):
    rgb16 = np.random.default_rng(0).integers(0, 65536, (6, 5, 3)).astype(np.uint16)
    path = tmp_path / "deep.png"
    path.write_bytes(png_rgb16(rgb16))
    with open_image(path) as image:
        pixels = prepare(image)
    assert pixels.notes == ["16-bit input reduced to 8 bits"]
    assert np.array_equal(pixels.rgb, (rgb16 >> 8).astype(np.uint8))  # Pillow keeps the high byte
    lazily = prepare(Image.open(path))  # not loaded yet: prepare sees the raw mode itself
    assert lazily.notes == ["16-bit input reduced to 8 bits"]


def test_cmyk_jpeg_is_converted_to_rgb(tmp_path, tiny_weights):
    path = tmp_path / "print.jpg"
    gradient_image(32, 16, "CMYK").save(path, quality=95)
    with open_image(path) as image:
        assert image.mode == "CMYK"
        out, notes = round_trip(image, tiny_weights)
    assert (out.mode, out.size) == ("RGB", (32, 16))
    assert notes == ["CMYK input converted to RGB without a colour profile (colours approximate)"]


def test_a_cmyk_colour_profile_is_not_attached_to_rgb_pixels(tmp_path):
    path = tmp_path / "print.jpg"
    gradient_image(32, 16, "CMYK").save(path, icc_profile=cmyk_profile_header())
    with open_image(path) as image:
        pixels = prepare(image)
    assert pixels.icc is None
    assert "CMYK colour profile dropped (it does not describe the RGB pixels)" in pixels.notes


def test_lab_input_is_converted_through_the_colour_engine():
    pixels = prepare(gradient_image(16, 8, "LAB"))
    assert pixels.notes == ["LAB input converted to sRGB (colour-managed)"]
    reference = np.asarray(gradient_image(16, 8)).astype(int)
    assert np.abs(pixels.rgb.astype(int) - reference).mean() < 2


def test_only_the_first_frame_of_an_animation_is_coded_with_a_note():
    frames = [gradient_image(16, 8), gradient_image(16, 8).rotate(180)]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
    buf.seek(0)
    assert "only the first of 2 frames coded" in prepare(Image.open(buf)).notes


# ---------------------------------------------------------------- EXIF orientation


def asymmetric_image() -> Image.Image:
    """6x4 pixels, all different, so that every transposition gives other pixels."""
    values = np.arange(6 * 4 * 3, dtype=np.uint8).reshape(4, 6, 3) * 3
    return Image.fromarray(values, "RGB")


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_is_applied_to_the_pixels(orientation):
    image = reopen(asymmetric_image(), "PNG", exif=exif_with(orientation=orientation, make="cam").tobytes())
    expected = np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
    pixels = prepare(image)
    assert np.array_equal(pixels.rgb, expected)
    stored = Image.Exif()
    stored.load(pixels.exif)
    assert stored[ORIENTATION] == 1 and stored[MAKE] == "cam"
    applied = [f"EXIF orientation {orientation} applied to the pixels"] if orientation != 1 else []
    assert pixels.notes == applied


@pytest.mark.parametrize("orientation, size", [(1, (32, 16)), (3, (32, 16)), (6, (16, 32)), (8, (16, 32))])
def test_orientation_survives_the_codec_from_a_jpeg(orientation, size, tiny_weights):
    image = reopen(gradient_image(32, 16), "JPEG", exif=exif_with(orientation=orientation, make="cam").tobytes())
    out, _ = round_trip(image, tiny_weights, width=4)
    assert out.size == size
    assert out.getexif()[ORIENTATION] == 1 and out.getexif()[MAKE] == "cam"


def test_orientation_is_reset_in_place_keeping_the_rest_of_the_exif_bytes():
    raw = exif_with(orientation=6, make="cam").tobytes()
    pixels = prepare(reopen(gradient_image(8, 4), "JPEG", exif=raw))
    assert len(pixels.exif) == len(raw)
    assert sum(a != b for a, b in zip(pixels.exif, raw)) == 1  # only the orientation value changed


@pytest.mark.parametrize("raw", [b"Exif\x00\x00MM\x00*\x00\x00\xff\xff", b"Exif\x00\x00garbage", b"\x01"],
                         ids=["offset past the end", "not TIFF", "one byte"])
def test_unreadable_exif_is_dropped_with_a_note(raw):
    image = gradient_image(8, 4)
    image.info["exif"] = raw
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Pillow's own "Corrupt EXIF" warning stays inside
        pixels = prepare(image)
    assert pixels.exif is None and pixels.rgb.shape == (4, 8, 3)
    assert [n.split(" (")[0] for n in pixels.notes] == ["unreadable EXIF dropped"]


def test_tiff_tags_describing_the_file_layout_are_not_stored_as_exif():
    image = reopen(gradient_image(8, 4), "TIFF", exif=exif_with(make="cam").tobytes())
    stored = Image.Exif()
    stored.load(prepare(image).exif)
    assert stored[MAKE] == "cam"
    assert not {256, 257, 258, 259, 273, 278, 279} & set(stored)  # size, strips, compression


# ---------------------------------------------------------------- metadata


def test_icc_and_exif_reach_png_and_jpeg_outputs_through_the_cli(tmp_path, tiny_weights_path):
    src = tmp_path / "tagged.png"
    gradient_image(32, 16).save(src, icc_profile=SRGB_ICC, exif=exif_with(make="slim camera").tobytes())
    slim(["encode", src, "-o", tmp_path / "t.slim", "--weights", tiny_weights_path, "-w", 8])
    assert read_slim((tmp_path / "t.slim").read_bytes()).chunk(b"iccp") == SRGB_ICC
    for name in ("back.png", "back.jpg", "back.webp", "back.tif"):
        slim(["decode", tmp_path / "t.slim", "-o", tmp_path / name, "--weights", tiny_weights_path])
        with Image.open(tmp_path / name) as out:
            assert out.info.get("icc_profile") == SRGB_ICC, name
            assert out.getexif().get(MAKE) == "slim camera", name


def test_metadata_none_drops_icc_exif_and_xmp_but_keeps_alpha(tmp_path, tiny_weights_path):
    src = tmp_path / "tagged.png"
    rgba_image().save(src, icc_profile=SRGB_ICC, exif=exif_with(make="cam").tobytes(), pnginfo=xmp_png_info())
    slim(["encode", src, "-o", tmp_path / "t.slim", "--metadata", "none", "--weights", tiny_weights_path, "-w", 8])
    chunks = read_slim((tmp_path / "t.slim").read_bytes()).chunks
    assert [c.tag for c in chunks] == [b"ALPH"]
    slim(["decode", tmp_path / "t.slim", "-o", tmp_path / "back.png", "--weights", tiny_weights_path])
    with Image.open(tmp_path / "back.png") as out:
        assert "icc_profile" not in out.info and MAKE not in out.getexif() and "xmp" not in out.info


# ---------------------------------------------------------------- notes reach the user


def test_encode_api_warns_once_per_conversion(tiny_weights):
    image = reopen(Image.fromarray(np.full((8, 16), 40000, np.uint16)), "PNG",
                   exif=exif_with(orientation=6).tobytes())
    with pytest.warns(ConversionWarning) as record:
        codec.encode(image, 4, weights=tiny_weights)
    assert [str(w.message) for w in record] == [
        "EXIF orientation 6 applied to the pixels", "I;16 input reduced to 8 bits"]


def test_cli_prints_conversion_notes_under_the_file_line_unless_quiet(tmp_path, tiny_weights_path):
    src = tmp_path / "deep.png"
    Image.fromarray(np.full((8, 16), 40000, np.uint16)).save(src)
    result = slim(["encode", src, "--weights", tiny_weights_path, "-w", 8])
    lines = result.stderr.splitlines()
    assert lines[0].startswith(f"encoded {src} -> ")
    assert lines[1] == "  note: I;16 input reduced to 8 bits"
    assert "warning" not in result.stderr.lower()
    quiet = slim(["encode", src, "--weights", tiny_weights_path, "-w", 8, "--force", "--quiet"])
    assert quiet.stderr == ""


def test_batch_encodes_every_input_format(tmp_path, tiny_weights_path):
    folder = tmp_path / "in"
    folder.mkdir()
    gradient_image(20, 12).save(folder / "a.png")
    gradient_image(20, 12).save(folder / "b.jpg")
    gradient_image(20, 12).save(folder / "c.webp")
    gradient_image(20, 12).save(folder / "d.tif")
    gradient_image(20, 12).save(folder / "e.bmp")
    gradient_image(20, 12, "L").save(folder / "f.png")
    Image.fromarray(np.full((12, 20), 999, np.uint16)).save(folder / "g.tiff")
    gradient_image(20, 12, "CMYK").save(folder / "h.jpeg")
    palette_with_transparency().save(folder / "i.png")
    result = slim(["encode", folder, "-o", tmp_path / "out", "--weights", tiny_weights_path, "-w", 4, "-j", 2])
    assert result.stderr.count("\nencoded ") + result.stderr.startswith("encoded ") == 9
    slim(["decode", tmp_path / "out", "-o", tmp_path / "back", "--weights", tiny_weights_path])
    modes = {p.stem: Image.open(p).mode for p in sorted((tmp_path / "back").iterdir())}
    assert modes == {"a": "RGB", "b": "RGB", "c": "RGB", "d": "RGB", "e": "RGB", "f": "L", "g": "L",
                     "h": "RGB", "i": "RGBA"}


def test_prepare_refuses_what_it_cannot_convert():
    class Odd:
        size, mode, info = (4, 4), "XYZ", {}

        def getexif(self):
            return Image.Exif()

        def convert(self, mode):
            raise ValueError("conversion not supported")

    with pytest.raises(UnsupportedImageError, match="cannot convert XYZ images"):
        prepare(Odd())
