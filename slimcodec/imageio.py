"""Image input and output: which pixels get coded, and how they come back.

The network codes 8-bit RGB. Every other kind of input is converted
explicitly, with a note saying what happened, or refused:

- grayscale (``L``, ``1``, ``I;16``, ``I``, ``F``): coded as RGB, decoded back to ``L``;
- alpha (``RGBA``, ``LA``, ``PA``, palette or grayscale with transparency):
  kept losslessly; a fully opaque alpha plane is dropped (noted);
- 16-bit and float: reduced to 8 bits (noted);
- palette, CMYK (through its ICC profile when it has one), YCbCr, LAB, HSV:
  converted to RGB (noted);
- EXIF orientation 2..8: applied to the pixels, and the stored EXIF says 1
  ("upright"), so viewers do not rotate the decoded image a second time;
- ICC profile, EXIF and XMP: kept (each can be left out, :func:`metadata_kinds`),
  except a profile whose colour space does not match the coded pixels (a CMYK
  profile on converted pixels), which is dropped (noted). EXIF read from a
  TIFF's own tags keeps only the descriptive ones (camera, dates, resolution,
  the Exif and GPS folders), not the strip layout of the input file. When the
  EXIF orientation is applied, the XMP's ``tiff:Orientation`` is reset to 1 too.
- HEIC/HEIF inputs open when pillow-heif is installed (the ``peers`` extra);
  AVIF and GIF through Pillow itself.

:func:`prepare` returns the notes in ``PixelData.notes``;
:func:`slimcodec.codec.encode` turns each into a :class:`ConversionWarning`
and ``slim encode`` prints them as ``note:`` lines.
"""

from __future__ import annotations

import os
import re
import struct
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache, lru_cache
from io import BytesIO
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, UnidentifiedImageError

from slimcodec.errors import UnsupportedImageError
from slimcodec.formats.slimfile import MAX_PIXELS, MAX_SIDE  # an image is read only if a .slim file can hold it

_ORIENTATION_TAG = 0x0112
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
# Tags of a TIFF's first directory that are EXIF metadata rather than the file's layout.
_TIFF_EXIF_TAGS = (270, 271, 272, 274, 282, 283, 296, 305, 306, 315, 316, 33432, 34665, 34853)
_SUB_IFDS = (34665, 34853)  # Exif, GPS
_SOURCE_BITS = "slimcodec.source_bits"  # set by open_image when Pillow reduced 16-bit samples
_SOURCE_NOTES = "slimcodec.source_notes"  # set by open_image: what the image libraries warned about
_GRAY_MODES = ("L", "LA", "La", "1", "I", "I;16", "I;16B", "I;16L", "I;16N", "F")
_ALPHA_MODES = ("RGBA", "LA", "PA", "La", "RGBa")
METADATA_KINDS = ("icc", "exif", "xmp")
_XMP_ORIENTATION = (re.compile(rb'(tiff:Orientation=")[0-9]+(")'),
                    re.compile(rb"(<tiff:Orientation>)[0-9]+(</tiff:Orientation>)"))


@dataclass
class PixelData:
    """What the codec stores for one image.

    Attributes:
        rgb (np.ndarray): ``H×W×3`` uint8.
        gray (bool): decode back to one channel.
        alpha (np.ndarray | None): ``H×W`` uint8, stored losslessly.
        icc (bytes | None): ICC profile.
        exif (bytes | None): EXIF block (orientation already applied).
        notes (list[str]): conversions that changed the input, one line each.
        xmp (bytes | None): XMP packet (UTF-8; its orientation reset with the EXIF's).
    """

    rgb: np.ndarray
    gray: bool = False
    alpha: np.ndarray | None = None
    icc: bytes | None = None
    exif: bytes | None = None
    notes: list[str] = field(default_factory=list)
    xmp: bytes | None = None


def metadata_kinds(metadata: bool | str | Iterable[str]) -> frozenset[str]:
    """The metadata kinds to keep: ``True``/``"all"`` (ICC, EXIF and XMP), ``False``/``"none"``,
    or some of ``"icc"``, ``"exif"``, ``"xmp"`` (a comma-separated string or an iterable).

    Raises:
        ValueError: an unknown kind.

    Example:
        >>> sorted(metadata_kinds("icc,xmp")), sorted(metadata_kinds(True)), metadata_kinds("none")
        (['icc', 'xmp'], ['exif', 'icc', 'xmp'], frozenset())
    """
    if metadata is True or metadata is False:
        return frozenset(METADATA_KINDS if metadata else ())
    words = metadata.split(",") if isinstance(metadata, str) else list(metadata)
    kinds = {str(word).strip().lower() for word in words} - {""}
    if kinds in ({"all"}, {"none"}):
        return frozenset(METADATA_KINDS if kinds == {"all"} else ())
    unknown = sorted(kinds - set(METADATA_KINDS))
    if unknown or (not kinds and isinstance(metadata, str)):
        raise ValueError(f"unknown metadata {', '.join(unknown) or repr(metadata)} "
                         f"(choose all, none, or some of {', '.join(METADATA_KINDS)})")
    return frozenset(kinds)


def keep_metadata(pixels: PixelData, metadata: bool | str | Iterable[str] = True) -> PixelData:
    """``pixels`` with only the metadata kinds :func:`metadata_kinds` keeps (pixels and alpha as they are)."""
    kinds = metadata_kinds(metadata)
    return PixelData(pixels.rgb, pixels.gray, pixels.alpha,
                     pixels.icc if "icc" in kinds else None, pixels.exif if "exif" in kinds else None,
                     pixels.notes, pixels.xmp if "xmp" in kinds else None)


# ---------------------------------------------------------------- reading


def _high_bit_depth(image: Image.Image) -> bool:
    """Whether Pillow will silently reduce 16-bit samples to 8 (e.g. a 48-bit RGB PNG).

    Only visible before the pixels are loaded, in the raw mode of the tiles.
    """
    if image.info.get(_SOURCE_BITS, 8) > 8:
        return True
    if image.mode.startswith(("I", "F")):
        return False  # kept at full depth; _to_8bit reduces and notes it
    for tile in getattr(image, "tile", None) or ():
        args = tile[3] if len(tile) > 3 else None
        rawmode = args if isinstance(args, str) else args[0] if isinstance(args, tuple) and args else None
        if isinstance(rawmode, str) and ";16" in rawmode:
            return True
    return False


@lru_cache(maxsize=1)
def register_plugins() -> bool:
    """Let Pillow open (and save) HEIC/HEIF through pillow-heif when it is installed; whether it is."""
    try:
        import pillow_heif
    except ImportError:
        return False
    pillow_heif.register_heif_opener()
    return True


def _unreadable(source: str | os.PathLike | bytes) -> str:
    """Why Pillow cannot read ``source``: with a hint when a HEIC file needs pillow-heif."""
    if not isinstance(source, bytes) and Path(source).suffix.lower() in (".heic", ".heif") \
            and not register_plugins():
        return "not an image Pillow can read (HEIC needs pillow-heif: pip install pillow-heif)"
    return "not an image Pillow can read"


def open_image(source: str | os.PathLike | bytes, name: str | None = None) -> Image.Image:
    """Open and load an image file (or the bytes of one, e.g. read from stdin).

    Refuses non-images, unreadable or truncated files and images over the
    limits (``MAX_SIDE`` per side, ``MAX_PIXELS``) before decoding their pixels.
    HEIC/HEIF opens when pillow-heif is installed (:func:`register_plugins`).

    Args:
        source (str | PathLike | bytes): the file, or its bytes.
        name (str | None): how messages name it [default: the path; ``<stdin>`` for bytes].

    Raises:
        UnsupportedImageError: with a one-line reason that starts with the name.
    """
    register_plugins()
    path = name or ("<stdin>" if isinstance(source, bytes) else source)

    def reopen() -> Image.Image:
        return Image.open(BytesIO(source) if isinstance(source, bytes) else source)

    with warnings.catch_warnings(record=True) as caught:  # library warnings become notes, not stderr
        warnings.simplefilter("always")
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the size limit replaces it
        image = _open_and_load(source, path, reopen)
    notes = library_notes(caught)
    if notes:
        image.info[_SOURCE_NOTES] = notes
    return image


def library_notes(caught: Iterable[warnings.WarningMessage]) -> list[str]:
    """One line per distinct warning an image library raised (Pillow, pillow-heif), in order."""
    notes: list[str] = []
    for w in caught:
        text = " ".join(str(w.message).split()) or w.category.__name__
        line = f"the image library warned: {text}"
        if line not in notes:
            notes.append(line)
    return notes


def _open_and_load(source, path, reopen) -> Image.Image:
    try:
        image = reopen()
    except FileNotFoundError:
        raise UnsupportedImageError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise UnsupportedImageError(f"{path}: is a directory") from None
    except UnidentifiedImageError:
        raise UnsupportedImageError(f"{path}: {_unreadable(source)}") from None
    except Image.DecompressionBombError as exc:
        raise UnsupportedImageError(f"{path}: image too large ({exc})") from None
    except OSError as exc:
        raise UnsupportedImageError(f"{path}: cannot read image ({exc.strerror or exc})") from None
    except Exception as exc:  # Pillow's plugins raise assorted errors on malformed headers
        raise UnsupportedImageError(f"{path}: not an image Pillow can read ({exc})") from None
    try:
        _check_size(*image.size)
        if _high_bit_depth(image):
            image.info[_SOURCE_BITS] = 16
        try:
            _getexif(image)  # read now: a TIFF's tags are read from the open file
        except Exception:  # prepare() notes unreadable EXIF, but a PNG's getexif() loads the
            # pixels first, and a second load() then "succeeds" on the part it got: load afresh
            image.close()
            image = reopen()
            if _high_bit_depth(image):
                image.info[_SOURCE_BITS] = 16
        frame_count(image)  # every page's header: a broken later page is refused here, not in prepare()
        image.load()
        if image.format == "PNG" and (problem := png_data_problem(source)):
            raise UnsupportedImageError(f"cannot read image ({problem})")
        if image.format in ("JPEG", "MPO") and (problem := jpeg_data_problem(source)):
            raise UnsupportedImageError(f"cannot read image ({problem})")
    except UnsupportedImageError as exc:
        image.close()
        raise UnsupportedImageError(f"{path}: {exc}") from None
    except MemoryError:
        image.close()
        raise
    except Exception as exc:
        image.close()
        text = " ".join(str(exc).split()) or type(exc).__name__
        raise UnsupportedImageError(f"{path}: cannot read image ({text})") from None
    return image


_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # by colour type


def _png_rows_bytes(width: int, height: int, bits: int, interlaced: bool) -> int:
    """The inflated size of a PNG's image data: one filter byte and the packed samples per row."""
    if not interlaced:
        return height * (1 + (width * bits + 7) // 8)
    total = 0
    for x0, y0, dx, dy in ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
                           (0, 1, 1, 2)):  # Adam7 passes
        w, h = (width - x0 + dx - 1) // dx, (height - y0 + dy - 1) // dy
        if w > 0 and h > 0:
            total += h * (1 + (w * bits + 7) // 8)
    return total


def png_data_problem(source: str | os.PathLike | bytes) -> str | None:
    """Why a PNG's image data (its IDAT chunks) is incomplete, or ``None`` when it is whole.

    Pillow loads a PNG whose zlib stream ends early without a word (the missing rows
    black), so the stream is inflated here, in pieces and without keeping the pixels,
    and its length compared with what the header's size, depth and interlacing need.
    """
    import zlib

    f = BytesIO(source) if isinstance(source, bytes) else open(source, "rb")
    with f:
        if f.read(8) != b"\x89PNG\r\n\x1a\n":
            return None
        inflater, got, expected = zlib.decompressobj(), 0, None
        while len(head := f.read(8)) == 8:
            length, tag = struct.unpack(">I4s", head)
            if tag == b"IHDR" and length >= 13:
                width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", f.read(13))
                expected = _png_rows_bytes(width, height, depth * _PNG_CHANNELS.get(color, 4), interlace == 1)
                f.seek(length - 13 + 4, 1)
            elif tag == b"IDAT":
                left = length
                while left > 0 and (data := f.read(min(left, 1 << 20))):  # never the declared length at once
                    left -= len(data)
                    try:
                        while data and not inflater.eof:
                            got += len(inflater.decompress(data, 1 << 20))
                            data = inflater.unconsumed_tail
                    except zlib.error as exc:
                        return f"corrupt image data: {exc}"
                f.seek(left + 4, 1)
            elif tag == b"IEND":
                break
            else:
                f.seek(length + 4, 1)
    if expected is None or got >= expected:
        return None
    return f"image data ends early: {got} of its {expected} bytes"


# libjpeg's warnings that mean the scan's data is damaged or missing (the others, such as an
# unknown JFIF revision, do not change the pixels)
_JPEG_DAMAGE = ("corrupt jpeg data", "premature end")


def jpeg_data_problem(source: str | os.PathLike | bytes) -> str | None:
    """Why a JPEG's scan data is damaged or cut short, or ``None`` when libjpeg reads it cleanly.

    libjpeg only warns about a scan that ends early (a cut file with an end marker appended)
    or holds corrupt bytes, and Pillow loads such a file without a word, the missing blocks
    grey. libjpeg-turbo (simplejpeg) decodes the scan again here at 1/8 scale, in strict mode,
    which raises on those warnings. A file it cannot decode even leniently (a CMYK or 12-bit
    JPEG) is left to Pillow's verdict.
    """
    import simplejpeg

    if isinstance(source, bytes):
        data = source
    else:
        with open(source, "rb") as f:
            data = f.read()

    def decode(strict: bool) -> None:
        simplejpeg.decode_jpeg(data, colorspace="GRAY", strict=strict, min_height=1, min_width=1)

    try:
        decode(strict=True)
        return None
    except ValueError as exc:
        message = " ".join(str(exc).split())
    if not any(key in message.lower() for key in _JPEG_DAMAGE):
        return None
    try:
        decode(strict=False)
    except ValueError:
        return None  # not a JPEG libjpeg-turbo decodes: Pillow, which did, has the last word
    return message


def frame_count(image: Image.Image) -> int:
    """The number of frames (pages) of ``image``, reading each one's header (Pillow counts them so).

    Raises:
        UnsupportedImageError: a later frame is unreadable (Pillow raises assorted
            errors there, e.g. ``TypeError`` for a TIFF page without dimensions).
    """
    try:
        with warnings.catch_warnings():  # "Corrupt EXIF data" of a broken page: it is refused anyway
            warnings.simplefilter("ignore")
            frames = getattr(image, "n_frames", 1)
    except MemoryError:
        raise
    except Exception as exc:
        text = " ".join(str(exc).split()) or type(exc).__name__
        raise UnsupportedImageError(f"cannot read image (a later page is broken: {text})") from None
    return frames if isinstance(frames, int) and frames > 0 else 1


def _check_size(width: int, height: int) -> None:
    if width < 1 or height < 1:
        raise UnsupportedImageError("image has no pixels")
    if width > MAX_SIDE or height > MAX_SIDE or width * height > MAX_PIXELS:
        raise UnsupportedImageError(
            f"image of {width}x{height} exceeds the limits ({MAX_SIDE} per side, {MAX_PIXELS} pixels)"
        )


# ---------------------------------------------------------------- metadata


def _getexif(image: Image.Image) -> Image.Exif:
    """``image.getexif()`` without Pillow's "Corrupt EXIF data" warnings (prepare notes it)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return image.getexif()


def _raw_exif(image: Image.Image) -> bytes | None:
    """The EXIF block as the file stored it (JPEG, PNG, WebP), if any."""
    raw = image.info.get("exif")
    if raw is None and "Raw profile type exif" in image.info:
        try:
            raw = bytes.fromhex("".join(str(image.info["Raw profile type exif"]).split("\n")[3:]))
        except ValueError:
            return None
    return bytes(raw) if raw else None


def _set_orientation_in_place(raw: bytes) -> bytes | None:
    """``raw`` with IFD0's orientation set to 1, everything else byte for byte; None if not found.

    Editing in place keeps what re-serializing would lose (thumbnail, maker notes).
    """
    start = 6 if raw.startswith(b"Exif\x00\x00") else 0
    tiff = raw[start:]
    if tiff[:4] not in (b"II*\x00", b"MM\x00*"):
        return None
    end = "<" if tiff[:2] == b"II" else ">"
    try:
        (ifd,) = struct.unpack_from(end + "I", tiff, 4)
        (count,) = struct.unpack_from(end + "H", tiff, ifd)
        for i in range(count):
            pos = ifd + 2 + 12 * i
            tag, kind, num = struct.unpack_from(end + "HHI", tiff, pos)
            if tag == _ORIENTATION_TAG:
                if kind != 3 or num != 1:  # SHORT, one value
                    return None
                out = bytearray(raw)
                struct.pack_into(end + "H", out, start + pos + 8, 1)
                return bytes(out)
    except struct.error:
        return None
    return None


def _read_exif(image: Image.Image, notes: list[str]) -> tuple[bytes | None, int]:
    """The EXIF to store (orientation reset to 1) and the orientation to apply."""
    try:
        exif = _getexif(image)
        orientation = exif.get(_ORIENTATION_TAG, 1)
        raw = _raw_exif(image)
        if raw is not None and not len(exif):
            raise ValueError("no readable tag")
        if raw is None and hasattr(image, "tag_v2") and len(exif):
            kept = Image.Exif()  # a TIFF: its own tags, minus the file layout
            for tag in _TIFF_EXIF_TAGS:
                if tag in exif:
                    kept[tag] = exif.get_ifd(tag) if tag in _SUB_IFDS else exif[tag]
            exif, raw = kept, None
        if _ORIENTATION_TAG in exif and orientation != 1:
            patched = _set_orientation_in_place(raw) if raw is not None else None
            if patched is None:
                exif[_ORIENTATION_TAG] = 1
                raw = exif.tobytes()
            else:
                raw = patched
        elif raw is None and len(exif):
            raw = exif.tobytes()
    except Exception as exc:  # malformed EXIF must not stop the encoding
        notes.append(f"unreadable EXIF dropped ({' '.join(str(exc).split())[:60] or type(exc).__name__})")
        return None, 1
    if not isinstance(orientation, int):
        orientation = 1
    return raw, orientation


def _read_xmp(image: Image.Image) -> bytes | None:
    """The XMP packet Pillow found (JPEG, PNG, WebP, TIFF, AVIF, HEIF), as bytes."""
    raw = image.info.get("xmp")
    if isinstance(raw, str):
        raw = raw.encode("utf-8")
    return bytes(raw) if isinstance(raw, (bytes, bytearray)) and raw else None


def reset_xmp_orientation(xmp: bytes) -> bytes:
    """``xmp`` with ``tiff:Orientation`` set to 1 (as Pillow's ``exif_transpose`` does).

    Example:
        >>> reset_xmp_orientation(b'<x tiff:Orientation="6"/>')
        b'<x tiff:Orientation="1"/>'
    """
    for pattern in _XMP_ORIENTATION:
        xmp = pattern.sub(rb"\g<1>1\g<2>", xmp)
    return xmp


def _icc_space(icc: bytes | None) -> str | None:
    """The colour space of an ICC profile ("RGB", "GRAY", "CMYK", ...) or None if not a profile."""
    if icc and len(icc) >= 128 and icc[36:40] == b"acsp":
        return icc[16:20].decode("latin-1").strip()
    return None


def _via_profile(image: Image.Image, icc: bytes | None, notes: list[str]) -> Image.Image | None:
    """Convert CMYK or LAB to sRGB through the image's profile (or the LAB one); None if not possible."""
    try:
        from PIL import ImageCms

        if image.mode == "LAB":
            source = ImageCms.createProfile("LAB")
        elif icc and _icc_space(icc) == "CMYK":
            source = ImageCms.ImageCmsProfile(BytesIO(icc))
        else:
            return None
        out = ImageCms.profileToProfile(image, source, ImageCms.createProfile("sRGB"), outputMode="RGB")
    except Exception:
        return None
    notes.append(f"{image.mode} input converted to sRGB (colour-managed)")
    return out


def _to_8bit(image: Image.Image, notes: list[str]) -> Image.Image:
    """Reduce 16-bit / 32-bit single-channel modes to ``L`` by scaling, not clipping."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(image).astype(np.float64)
        if image.mode == "I" and arr.size and (arr.min() < 0 or arr.max() > 65535):
            # 32-bit samples have no agreed white: refused rather than clipped or guessed
            raise UnsupportedImageError(
                f"32-bit integer (mode I) samples outside 0..65535 (min {arr.min():.0f}, max {arr.max():.0f}); "
                "convert the image to 16 or 8 bits first")
        scale = 257.0 if image.mode.startswith("I;16") or arr.max(initial=0) > 255 else 1.0
        if scale == 1.0 and arr.min(initial=0) >= 0:
            notes.append(f"{image.mode} input with values 0..255 stored as 8 bits")
        else:
            notes.append(f"{image.mode} input reduced to 8 bits")
        return Image.fromarray(np.clip(np.rint(arr / scale), 0, 255).astype(np.uint8), "L")
    if image.mode == "F":
        arr = np.nan_to_num(np.asarray(image).astype(np.float64), nan=0.0, posinf=255.0, neginf=0.0)
        if arr.size and arr.min() >= 0 and arr.max() <= 1:
            arr = arr * 255
            notes.append("floating-point input with values 0..1 reduced to 8 bits")
        else:
            notes.append("floating-point input reduced to 8 bits (values clipped to 0..255)")
        return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), "L")
    return image


# ---------------------------------------------------------------- prepare / finish


def prepare(image: Image.Image) -> PixelData:
    """Turn any Pillow image into the pixels and metadata the codec stores.

    Raises:
        UnsupportedImageError: the image is over the size limits, or Pillow
            cannot convert its mode to RGB.
    """
    with warnings.catch_warnings(record=True) as caught:  # library warnings become notes, not stderr
        warnings.simplefilter("always")
        pixels = _prepare(image)
    library = image.info.get(_SOURCE_NOTES, []) + library_notes(caught)
    if any("EXIF" in note for note in pixels.notes):  # "unreadable EXIF dropped" says it already
        library = [note for note in library if "EXIF" not in note]
    pixels.notes[:0] = [n for n in dict.fromkeys(library) if n not in pixels.notes]
    return pixels


def _prepare(image: Image.Image) -> PixelData:
    notes: list[str] = []
    _check_size(*image.size)  # before any pixel is touched (the limits are symmetric)
    frames = frame_count(image)
    if frames > 1:
        notes.append(f"only the first of {frames} frames coded")
    reduced_16 = _high_bit_depth(image)
    exif, orientation = _read_exif(image, notes)
    icc = image.info.get("icc_profile") or None
    xmp = _read_xmp(image)
    if orientation in _TRANSPOSE:
        image = image.transpose(_TRANSPOSE[orientation])
        notes.append(f"EXIF orientation {orientation} applied to the pixels")
        xmp = reset_xmp_orientation(xmp) if xmp else None
    source_mode = image.mode
    if reduced_16:
        notes.append("16-bit input reduced to 8 bits")
    image = _to_8bit(image, notes)
    mode = image.mode
    gray = source_mode in _GRAY_MODES
    has_alpha = mode in _ALPHA_MODES or (
        mode in ("P", "L", "RGB", "1") and "transparency" in image.info
    )
    try:
        if mode in ("CMYK", "LAB"):
            converted = _via_profile(image, icc, notes)
            if converted is None:
                notes.append(f"{mode} input converted to RGB without a colour profile (colours approximate)")
                converted = image.convert("RGB")
            else:
                icc = None  # the pixels are sRGB now, which needs no profile
            image = converted
        elif mode == "1":
            notes.append("1-bit input coded as 8-bit grayscale")
        elif mode not in ("RGB", "L", "RGBA", "LA"):
            notes.append(f"{mode} input converted to {'RGBA' if has_alpha else 'RGB'}")
        alpha = None
        if has_alpha:
            rgba = image.convert("LA" if gray else "RGBA")
            alpha = np.array(rgba.getchannel("A"))
            if (alpha == 255).all():
                alpha = None
                notes.append("fully opaque alpha channel dropped")
            image = rgba.convert("L" if gray else "RGB")
        if gray:
            rgb = np.asarray(image.convert("L"))
            rgb = np.repeat(rgb[:, :, None], 3, axis=2)
        else:
            rgb = np.asarray(image if image.mode == "RGB" else image.convert("RGB"))
    except (ValueError, OSError) as exc:
        raise UnsupportedImageError(f"cannot convert {mode} images to RGB ({exc})") from None
    space = _icc_space(icc)
    wanted = "GRAY" if gray else "RGB"
    if space is not None and space != wanted:
        notes.append(f"{space} colour profile dropped (it does not describe the {wanted} pixels)")
        icc = None
    return PixelData(np.ascontiguousarray(rgb), gray, alpha, icc, exif, notes, xmp)


def finish(rgb: np.ndarray, gray: bool, alpha: np.ndarray | None = None,
           icc: bytes | None = None, exif: bytes | None = None, xmp: bytes | None = None) -> Image.Image:
    """Build the decoded Pillow image (inverse of :func:`prepare`); metadata goes into ``info``."""
    image = Image.fromarray(rgb, "RGB")
    if gray:
        image = image.convert("L")
    if alpha is not None:
        image.putalpha(Image.fromarray(alpha, "L"))
    if icc:
        image.info["icc_profile"] = icc
    if exif:
        image.info["exif"] = exif
    if xmp:
        image.info["xmp"] = xmp
    return image


# ---------------------------------------------------------------- writing


def format_of_suffix(suffix: str) -> str | None:
    """The Pillow format registered for a file suffix (``".png"`` → ``"PNG"``), if any.

    Looks among Pillow's common plugins first: loading all of them (what
    ``Image.registered_extensions`` does) costs about 70 ms at every ``slim`` call.
    """
    Image.preinit()
    fmt = Image.EXTENSION.get(suffix.lower())
    if fmt is None:
        register_plugins()  # HEIC with pillow-heif
        fmt = Image.registered_extensions().get(suffix.lower())
    return fmt


# zlib level of PNG outputs. Pillow's default (6) is slower and, on decoded photos, not
# smaller: kodim01 decoded at width 192 gives 728 kB in 0.32 s at 6, 699 kB in 0.12 s at 3.
PNG_COMPRESS_LEVEL = 3
# Lossy outputs are a second lossy generation: written at a high quality unless asked
# (Pillow's own defaults are JPEG 75 and WebP 80), with full-resolution chroma from
# FULL_CHROMA_QUALITY on (as ImageMagick does).
DEFAULT_OUTPUT_QUALITY = 95
FULL_CHROMA_QUALITY = 90
LOSSY_FORMATS = ("JPEG", "WEBP", "AVIF", "HEIF")
LOSSLESS_FORMATS = ("WEBP",)  # formats whose lossy and lossless modes ``lossless`` chooses between
_STORED = {  # the metadata each output format keeps (through Pillow, pillow-heif for HEIF)
    "icc": ("PNG", "JPEG", "WEBP", "TIFF", "JPEG2000", "AVIF", "HEIF"),
    "exif": ("PNG", "JPEG", "WEBP", "TIFF", "AVIF", "HEIF"),
    "xmp": ("PNG", "JPEG", "WEBP", "TIFF", "AVIF", "HEIF"),
}
_INFO_KEY = {"icc": "icc_profile", "exif": "exif", "xmp": "xmp"}
_KIND_NAME = {"icc": "ICC profile", "exif": "EXIF", "xmp": "XMP"}
_JPEG_SEGMENT = 65533  # bytes of data in one JPEG marker segment
_XMP_TAG = 700  # TIFF


@dataclass(frozen=True)
class WriteOptions:
    """How a decoded image is saved.

    Attributes:
        quality (int | None): 0..100 for the lossy formats (JPEG, WebP, AVIF, HEIF);
            ``None`` means :data:`DEFAULT_OUTPUT_QUALITY`.
        lossless (bool): lossless WebP.
        background (tuple[int, int, int] | None): flatten the alpha channel onto this
            colour where the format cannot store alpha (JPEG, ...); ``None`` refuses such a write.
    """

    quality: int | None = None
    lossless: bool = False
    background: tuple[int, int, int] | None = None


def output_format(path: str | os.PathLike, format: str | None = None) -> str:
    """The Pillow format of an output: ``format``, else by ``path``'s extension, else PNG."""
    return format or format_of_suffix(Path(path).suffix) or "PNG"


def check_write_options(fmt: str, options: WriteOptions) -> None:
    """Refuse options the format would ignore.

    Raises:
        ValueError: a quality for a format that is not lossy, ``lossless`` for one
            without a lossless mode, or a quality out of 0..100.
    """
    if options.quality is not None:
        if fmt not in LOSSY_FORMATS:
            raise ValueError(f"a quality applies to JPEG, WebP, AVIF and HEIF outputs, not {fmt}")
        if not 0 <= options.quality <= 100:
            raise ValueError(f"quality must be from 0 to 100, got {options.quality}")
    if options.lossless and fmt not in LOSSLESS_FORMATS:
        raise ValueError(f"lossless applies to WebP outputs, not {fmt}")
    if options.lossless and options.quality is not None:
        raise ValueError("lossless WebP has no quality")


def parse_color(text: str) -> tuple[int, int, int]:
    """An RGB colour from a name or code Pillow knows: ``white``, ``#f0f0f0``, ``rgb(0,0,0)``.

    Raises:
        ValueError: not a colour.

    Example:
        >>> parse_color("white"), parse_color("#102030")
        ((255, 255, 255), (16, 32, 48))
    """
    from PIL import ImageColor

    try:
        return ImageColor.getrgb(text.strip())[:3]
    except (ValueError, AttributeError):
        raise ValueError(f"unknown colour {text!r} (a name such as white, or #rrggbb)") from None


@cache
def _saves_mode(fmt: str, mode: str) -> bool:
    """Whether Pillow writes ``mode`` images in ``fmt`` (tried on one pixel)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            Image.new(mode, (1, 1)).save(BytesIO(), format=fmt)
    except Exception:
        return False
    return True


def _flatten(image: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    """``image`` composited onto ``background`` (grayscale stays grayscale on a gray background)."""
    flat = Image.new("RGB", image.size, background)
    flat.paste(image.convert("RGBA"), mask=image.getchannel("A"))
    if image.mode == "LA" and len(set(background)) == 1:
        flat = flat.convert("L")
    flat.info = dict(image.info)
    return flat


def _with_alpha_handled(image: Image.Image, fmt: str, name: str, background) -> Image.Image:
    """The image to save: as it is, gray+alpha widened to RGBA, or flattened onto ``background``.

    Raises:
        UnsupportedImageError: the format cannot store alpha and no background was given.
    """
    if image.mode not in ("RGBA", "LA") or _saves_mode(fmt, image.mode):
        return image
    if image.mode == "LA" and _saves_mode(fmt, "RGBA"):
        widened = image.convert("RGBA")
        widened.info = dict(image.info)
        return widened
    if background is None:
        raise UnsupportedImageError(f"{name}: {fmt} cannot store the alpha channel; "
                                    "use .png or a background colour (--background COLOR)")
    return _flatten(image, background)


def _quality_params(fmt: str, mode: str, options: WriteOptions) -> dict:
    """Quality (and chroma subsampling) options of a lossy format; PNG's compression level."""
    if fmt == "PNG":
        return {"compress_level": PNG_COMPRESS_LEVEL}
    if fmt == "WEBP" and options.lossless:
        return {"lossless": True}
    if fmt not in LOSSY_FORMATS:
        return {}
    quality = DEFAULT_OUTPUT_QUALITY if options.quality is None else options.quality
    params: dict = {"quality": quality}
    full_chroma = quality >= FULL_CHROMA_QUALITY
    if fmt == "JPEG":
        params["subsampling"] = 0 if full_chroma else 2
    elif fmt == "AVIF" and mode not in ("L", "LA"):
        params["subsampling"] = "4:4:4" if full_chroma else "4:2:0"
    return params


def _check_exif(fmt: str, exif: bytes, name: str) -> None:
    if fmt == "JPEG" and len(exif) > _JPEG_SEGMENT:  # one APP1 segment
        raise UnsupportedImageError(f"{name}: EXIF too large for JPEG; use .png")
    if fmt == "TIFF":  # Pillow parses EXIF into TIFF tags, and fails on a malformed block
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                Image.Exif().load(exif)
        except Exception:
            raise UnsupportedImageError(f"{name}: the EXIF is malformed and TIFF cannot store it "
                                        "as it is; use .png") from None


def _metadata_params(image: Image.Image, fmt: str, name: str) -> tuple[dict, list[str]]:
    """Save options that keep the image's ICC profile, EXIF and XMP, and a note on what ``fmt`` drops."""
    found = {kind: image.info.get(key) for kind, key in _INFO_KEY.items() if image.info.get(key)}
    kept = {kind: value for kind, value in found.items() if fmt in _STORED[kind]}
    params: dict = {}
    if "icc" in kept:
        params["icc_profile"] = kept["icc"]
    if "exif" in kept:
        _check_exif(fmt, kept["exif"], name)
        params["exif"] = kept["exif"]
    if "xmp" in kept:
        xmp = bytes(kept["xmp"])
        if fmt == "JPEG" and len(xmp) + 29 > _JPEG_SEGMENT:  # after the 29-byte XMP namespace
            raise UnsupportedImageError(f"{name}: XMP too large for JPEG; use .png")
        params.update(_xmp_params(fmt, xmp, params.get("exif")))
    dropped = [_KIND_NAME[kind] for kind in found if kind not in kept]
    notes = [f"{fmt} cannot store the {' and '.join(dropped)}: dropped"] if dropped else []
    return params, notes


def _xmp_params(fmt: str, xmp: bytes, exif: bytes | None) -> dict:
    """How Pillow is given an XMP packet: a PNG iTXt chunk, a TIFF tag, or ``xmp=``."""
    if fmt == "PNG":
        from PIL.PngImagePlugin import PngInfo

        info = PngInfo()
        info.add_itxt("XML:com.adobe.xmp", xmp.decode("utf-8", "replace"))
        return {"pnginfo": info}
    if fmt == "TIFF":
        tags = Image.Exif()
        if exif:
            tags.load(exif)
        tags[_XMP_TAG] = xmp
        return {"exif": tags}
    return {"xmp": xmp}


@dataclass
class ImageWrite:
    """A decoded image ready to be written: format, Pillow options and notes.

    Calling it writes the image to an open binary file (for
    :func:`slimcodec.outputs.write_atomic`).

    Attributes:
        image (PIL.Image.Image): what is saved (flattened when the format has no alpha).
        format (str): the Pillow format.
        params (dict): the options given to ``Image.save``.
        notes (list[str]): what the format could not keep, one line each.
    """

    image: Image.Image
    format: str
    params: dict
    notes: list[str]

    def __call__(self, f: BinaryIO) -> None:
        self.image.save(f, format=self.format, **self.params)


def image_writer(image: Image.Image, path: str | os.PathLike, format: str | None = None,
                 options: WriteOptions | None = None) -> ImageWrite:
    """What writes ``image`` to an open binary file, as :func:`save_image` saves it to ``path``.

    The format is ``format``, else ``path``'s extension, else PNG. ICC profile, EXIF
    and XMP are kept where the format can store them (``notes`` says what it cannot).
    Lossy formats get ``options.quality`` (default :data:`DEFAULT_OUTPUT_QUALITY`).
    What the format cannot store (alpha in JPEG without a background, a too large
    EXIF, ...) is refused now, before any file is created.

    Raises:
        UnsupportedImageError: with a one-line reason that starts with ``path``'s name.
        ValueError: options the format would ignore (:func:`check_write_options`).
    """
    options = options or WriteOptions()
    fmt = output_format(path, format)
    check_write_options(fmt, options)
    name = Path(path).name
    image = _with_alpha_handled(image, fmt, name, options.background)
    params, notes = _metadata_params(image, fmt, name)
    return ImageWrite(image, fmt, {**_quality_params(fmt, image.mode, options), **params}, notes)


def save_image(image: Image.Image, path: str | os.PathLike, format: str | None = None,
               options: WriteOptions | None = None) -> None:
    """Save atomically (one temporary file, then a rename), keeping ICC, EXIF and XMP where the format can.

    The format follows the extension (PNG if it has none Pillow knows). An
    existing file is replaced; missing folders are created.

    Raises:
        UnsupportedImageError: the format cannot store the image (alpha in JPEG, ...).
        OutputError: the file cannot be written.
    """
    from slimcodec.outputs import write_atomic

    write_atomic(Path(path), image_writer(image, path, format, options), overwrite=True)
