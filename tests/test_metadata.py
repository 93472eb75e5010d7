"""Metadata by kind: ICC profile, EXIF and XMP from the input into the .slim file (its own chunk
for XMP) and out into every format that stores them."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import XMP, gradient_image, xmp_png_info
from PIL import Image, ImageCms

import slimcodec
from slimcodec import codec
from slimcodec.cli.main import cli
from slimcodec.formats.slimfile import KNOWN_CHUNKS, read_slim
from slimcodec.imageio import prepare

SRGB_ICC = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
MAKE, ORIENTATION = 0x010F, 0x0112


def slim(args, exit_code: int = 0):
    result = CliRunner().invoke(cli, [str(a) for a in args], env={"SLIM_WORKERS": "1"}, prog_name="slim")
    assert result.exit_code == exit_code, (result.exit_code, result.stderr, result.exc_info)
    return result


def exif(**tags) -> bytes:
    data = Image.Exif()
    for name, value in tags.items():
        data[{"make": MAKE, "orientation": ORIENTATION}[name]] = value
    return data.tobytes()


@pytest.fixture
def tagged(tmp_path) -> Path:
    """A PNG with an ICC profile, EXIF and XMP."""
    path = tmp_path / "tagged.png"
    gradient_image(32, 16).save(path, icc_profile=SRGB_ICC, exif=exif(make="cam"), pnginfo=xmp_png_info())
    return path


def chunk_tags(path: Path) -> list[bytes]:
    return [c.tag for c in read_slim(path.read_bytes()).chunks]


def test_xmp_is_carried_in_its_own_chunk_and_reaches_every_format_that_stores_it(tagged, tmp_path,
                                                                                 tiny_weights_path):
    slim(["encode", tagged, "-o", tmp_path / "t.slim", "--weights", tiny_weights_path, "-w", 8])
    assert chunk_tags(tmp_path / "t.slim") == [b"iccp", b"exif", b"xmpd"]
    assert read_slim((tmp_path / "t.slim").read_bytes()).chunk(b"xmpd") == XMP
    for name in ("back.png", "back.jpg", "back.webp", "back.tif", "back.avif"):
        result = slim(["decode", tmp_path / "t.slim", "-o", tmp_path / name, "--weights", tiny_weights_path])
        assert "note:" not in result.stderr, name
        with Image.open(tmp_path / name) as out:
            xmp = out.info.get("xmp")
            assert (xmp.encode() if isinstance(xmp, str) else xmp) == XMP, name
            assert out.info.get("icc_profile") == SRGB_ICC and out.getexif().get(MAKE) == "cam", name


def test_a_format_that_cannot_store_metadata_says_what_it_drops(tagged, tmp_path, tiny_weights_path):
    slim(["encode", tagged, "-o", tmp_path / "t.slim", "--weights", tiny_weights_path, "-w", 8])
    result = slim(["decode", tmp_path / "t.slim", "-o", tmp_path / "back.bmp", "--weights", tiny_weights_path])
    assert result.stderr.splitlines()[1] == "  note: BMP cannot store the ICC profile and EXIF and XMP: dropped"


@pytest.mark.parametrize("option, kept", [
    (["--metadata", "all"], [b"iccp", b"exif", b"xmpd"]),
    (["--metadata", "none"], []),
    (["--metadata", "exif"], [b"exif"]),
    (["--metadata", "xmp,icc"], [b"iccp", b"xmpd"]),
    (["--no-metadata"], [b"iccp"]),  # EXIF and XMP dropped; the colour profile is how the image looks
])
def test_metadata_keeps_the_kinds_it_names(option, kept, tagged, tmp_path, tiny_weights_path):
    slim(["encode", tagged, "-o", tmp_path / "t.slim", *option, "--weights", tiny_weights_path, "-w", 8])
    assert chunk_tags(tmp_path / "t.slim") == kept


@pytest.mark.parametrize("option, message", [
    (["--metadata", "gps"], "error: invalid --metadata gps: unknown metadata gps (choose all, none, or some of "
                            "icc, exif, xmp)"),
    (["--metadata", "icc", "--no-metadata"], "error: --metadata and --no-metadata cannot be combined"),
])
def test_unknown_metadata_is_a_usage_error(option, message, tagged, tiny_weights_path):
    result = slim(["encode", tagged, *option, "--weights", tiny_weights_path, "-w", 8], exit_code=2)
    assert result.stderr.splitlines() == [message]


def test_the_api_and_the_pillow_plugin_take_metadata_kinds(tagged, tmp_path, tiny_weights):
    from slimcodec.imageio import metadata_kinds

    with Image.open(tagged) as image:
        data = slimcodec.encode(image, 8, weights=tiny_weights, metadata="icc,xmp")
        assert [c.tag for c in read_slim(data).chunks] == [b"iccp", b"xmpd"]
        assert slimcodec.decode(data, weights=tiny_weights).info["xmp"] == XMP
        image.save(tmp_path / "p.slim", width=8, weights=tiny_weights, metadata={"exif"})
    assert chunk_tags(tmp_path / "p.slim") == [b"exif"]
    with Image.open(tmp_path / "p.slim") as opened:
        assert "xmp" not in opened.info and opened.getexif().get(MAKE) == "cam"
    assert metadata_kinds(False) == frozenset() and metadata_kinds("ALL") == {"icc", "exif", "xmp"}


def test_applying_the_exif_orientation_resets_the_xmp_orientation_too(tmp_path):
    from slimcodec.imageio import reset_xmp_orientation

    rotated = XMP.replace(b'tiff:Orientation="1"', b'tiff:Orientation="6"')
    gradient_image(32, 16).save(tmp_path / "r.png", exif=exif(orientation=6), pnginfo=xmp_png_info(rotated))
    with Image.open(tmp_path / "r.png") as image:
        pixels = prepare(image)
    assert pixels.rgb.shape[:2] == (32, 16) and pixels.xmp == XMP
    assert reset_xmp_orientation(b"<tiff:Orientation>8</tiff:Orientation>") == b"<tiff:Orientation>1</tiff:Orientation>"


def test_a_file_with_xmp_decodes_the_same_for_a_reader_that_does_not_know_the_chunk(tagged, tiny_weights):
    """Older readers skip unknown ancillary chunks: the XMP chunk needs no new format version."""
    with Image.open(tagged) as image:
        data = codec.encode(image, 8, weights=tiny_weights)
    old = read_slim(data, known_chunks=KNOWN_CHUNKS - {b"xmpd"})
    new = read_slim(data)
    assert [c.tag for c in old.chunks] == [b"iccp", b"exif"] and new.chunk(b"xmpd") == XMP
    assert (old.header, old.payload) == (new.header, new.payload)
    assert (old.header.version_major, old.header.version_minor) == (1, 1)
    without = codec.encode(Image.open(tagged), 8, weights=tiny_weights, metadata="icc,exif")
    assert data[:5] == without[:5] and read_slim(without).payload == new.payload
