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
- ICC profile and EXIF: kept, except a profile whose colour space does not
  match the coded pixels (a CMYK profile on converted pixels), which is
  dropped (noted). EXIF read from a TIFF's own tags keeps only the
  descriptive ones (camera, dates, resolution, the Exif and GPS folders),
  not the strip layout of the input file.

:func:`prepare` returns the notes in ``PixelData.notes``;
:func:`slimcodec.codec.encode` turns each into a :class:`ConversionWarning`
and ``slim encode`` prints them as ``note:`` lines.
"""

from __future__ import annotations

import os
import struct
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, UnidentifiedImageError

from slimcodec.errors import UnsupportedImageError

MAX_PIXELS = 100_000_000  # same limit as the .slim format
MAX_SIDE = 65535
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
_GRAY_MODES = ("L", "LA", "La", "1", "I", "I;16", "I;16B", "I;16L", "I;16N", "F")
_ALPHA_MODES = ("RGBA", "LA", "PA", "La", "RGBa")


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
    """

    rgb: np.ndarray
    gray: bool = False
    alpha: np.ndarray | None = None
    icc: bytes | None = None
    exif: bytes | None = None
    notes: list[str] = field(default_factory=list)


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


def open_image(path: str | os.PathLike) -> Image.Image:
    """Open and load an image file.

    Refuses non-images, unreadable or truncated files and images over the
    limits (``MAX_SIDE`` per side, ``MAX_PIXELS``) before decoding their pixels.

    Raises:
        UnsupportedImageError: with a one-line reason that starts with the path.
    """
    try:
        with warnings.catch_warnings():  # the size limit below replaces Pillow's warning
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path)
    except FileNotFoundError:
        raise UnsupportedImageError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise UnsupportedImageError(f"{path}: is a directory") from None
    except UnidentifiedImageError:
        raise UnsupportedImageError(f"{path}: not an image Pillow can read") from None
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
            image = Image.open(path)
            if _high_bit_depth(image):
                image.info[_SOURCE_BITS] = 16
        frame_count(image)  # every page's header: a broken later page is refused here, not in prepare()
        image.load()
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
    notes: list[str] = []
    _check_size(*image.size)  # before any pixel is touched (the limits are symmetric)
    frames = frame_count(image)
    if frames > 1:
        notes.append(f"only the first of {frames} frames coded")
    reduced_16 = _high_bit_depth(image)
    exif, orientation = _read_exif(image, notes)
    icc = image.info.get("icc_profile") or None
    if orientation in _TRANSPOSE:
        image = image.transpose(_TRANSPOSE[orientation])
        notes.append(f"EXIF orientation {orientation} applied to the pixels")
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
    return PixelData(np.ascontiguousarray(rgb), gray, alpha, icc, exif, notes)


def finish(rgb: np.ndarray, gray: bool, alpha: np.ndarray | None = None,
           icc: bytes | None = None, exif: bytes | None = None) -> Image.Image:
    """Build the decoded Pillow image (inverse of :func:`prepare`)."""
    image = Image.fromarray(rgb, "RGB")
    if gray:
        image = image.convert("L")
    if alpha is not None:
        image.putalpha(Image.fromarray(alpha, "L"))
    if icc:
        image.info["icc_profile"] = icc
    if exif:
        image.info["exif"] = exif
    return image


# ---------------------------------------------------------------- writing


def format_of_suffix(suffix: str) -> str | None:
    """The Pillow format registered for a file suffix (``".png"`` → ``"PNG"``), if any.

    Looks among Pillow's common plugins first: loading all of them (what
    ``Image.registered_extensions`` does) costs about 70 ms at every ``slim`` call.
    """
    Image.preinit()
    fmt = Image.EXTENSION.get(suffix.lower())
    return fmt if fmt is not None else Image.registered_extensions().get(suffix.lower())


# zlib level of PNG outputs. Pillow's default (6) is slower and, on decoded photos, not
# smaller: kodim01 decoded at width 192 gives 728 kB in 0.32 s at 6, 699 kB in 0.12 s at 3.
PNG_COMPRESS_LEVEL = 3


def _save_options(image: Image.Image, path: Path, format: str | None) -> tuple[str, dict]:
    """The Pillow format and save options for ``path``; refuses what the format cannot store.

    Raises:
        UnsupportedImageError: with a one-line reason that starts with ``path``'s name.
    """
    fmt = format or format_of_suffix(path.suffix) or "PNG"
    params = {"compress_level": PNG_COMPRESS_LEVEL} if fmt == "PNG" else {}
    if image.info.get("icc_profile") and fmt in ("PNG", "JPEG", "WEBP", "TIFF", "JPEG2000", "AVIF"):
        params["icc_profile"] = image.info["icc_profile"]
    if image.info.get("exif") and fmt in ("PNG", "JPEG", "WEBP", "TIFF"):
        params["exif"] = image.info["exif"]
        if fmt == "JPEG" and len(params["exif"]) > 65533:  # one APP1 segment
            raise UnsupportedImageError(f"{path.name}: EXIF too large for JPEG; use .png")
        if fmt == "TIFF":  # Pillow parses EXIF into TIFF tags, and fails on a malformed block
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    Image.Exif().load(params["exif"])
            except Exception:
                raise UnsupportedImageError(f"{path.name}: the EXIF is malformed and TIFF cannot store it "
                                            "as it is; use .png") from None
    if fmt == "JPEG" and image.mode in ("RGBA", "LA"):
        raise UnsupportedImageError(f"{path.name}: JPEG cannot store the alpha channel; use .png")
    return fmt, params


def image_writer(image: Image.Image, path: str | os.PathLike,
                 format: str | None = None) -> Callable[[BinaryIO], None]:
    """A function that writes ``image`` to an open binary file, as :func:`save_image` saves it to ``path``.

    For :func:`slimcodec.outputs.write_atomic`. What the format cannot store
    (alpha in JPEG, ...) is refused now, before any file is created.

    Raises:
        UnsupportedImageError: with a one-line reason that starts with ``path``'s name.
    """
    fmt, params = _save_options(image, Path(path), format)

    def write(f: BinaryIO) -> None:
        image.save(f, format=fmt, **params)

    return write


def save_image(image: Image.Image, path: str | os.PathLike, format: str | None = None) -> None:
    """Save atomically (one temporary file, then a rename), keeping ICC and EXIF where the format can.

    The format follows the extension (PNG if it has none Pillow knows). An
    existing file is replaced; missing folders are created.

    Raises:
        UnsupportedImageError: the format cannot store the image (alpha in JPEG, ...).
        OutputError: the file cannot be written.
    """
    from slimcodec.outputs import write_atomic

    write_atomic(Path(path), image_writer(image, path, format), overwrite=True)
