"""Image input and output: which pixels get coded, and how they come back.

The network codes 8-bit RGB. Every other kind of input is converted
explicitly, with a note saying what happened, or refused:

- grayscale (``L``, ``I;16`` ...): coded as RGB, decoded back to grayscale;
- alpha (``RGBA``, ``LA``, palette with transparency): alpha is kept losslessly;
- 16-bit and float: reduced to 8 bits (noted);
- palette, CMYK, YCbCr ...: converted to RGB (noted);
- EXIF orientation: applied to the pixels, and the stored EXIF says "upright".
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from slimcodec.errors import UnsupportedImageError

MAX_PIXELS = 100_000_000  # same limit as the .slim format
MAX_SIDE = 65535
_ORIENTATION_TAG = 0x0112


@dataclass
class PixelData:
    """What the codec stores for one image.

    Attributes:
        rgb (np.ndarray): ``H×W×3`` uint8.
        gray (bool): decode back to one channel.
        alpha (np.ndarray | None): ``H×W`` uint8, stored losslessly.
        icc (bytes | None): ICC profile.
        exif (bytes | None): EXIF block (orientation already applied).
        notes (list[str]): conversions that changed the input.
    """

    rgb: np.ndarray
    gray: bool = False
    alpha: np.ndarray | None = None
    icc: bytes | None = None
    exif: bytes | None = None
    notes: list[str] = field(default_factory=list)


def open_image(path: str | os.PathLike) -> Image.Image:
    """Open an image file, refusing non-images and images over ``MAX_PIXELS``."""
    try:
        image = Image.open(path)
        image.load()
    except FileNotFoundError:
        raise UnsupportedImageError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise UnsupportedImageError(f"{path}: is a directory") from None
    except UnidentifiedImageError:
        raise UnsupportedImageError(f"{path}: not an image Pillow can read") from None
    except Image.DecompressionBombError as exc:
        raise UnsupportedImageError(f"{path}: image too large ({exc})") from None
    except OSError as exc:
        raise UnsupportedImageError(f"{path}: cannot read image ({exc})") from None
    return image


def _check_size(width: int, height: int) -> None:
    if width < 1 or height < 1:
        raise UnsupportedImageError("image has no pixels")
    if width > MAX_SIDE or height > MAX_SIDE or width * height > MAX_PIXELS:
        raise UnsupportedImageError(
            f"image of {width}x{height} exceeds the limits ({MAX_SIDE} per side, {MAX_PIXELS} pixels)"
        )


def _to_8bit(image: Image.Image, notes: list[str]) -> Image.Image:
    """Reduce 16-bit / 32-bit single-channel modes to ``L`` by scaling, not clipping."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(image).astype(np.float64)
        scale = 257.0 if image.mode.startswith("I;16") or arr.max(initial=0) > 255 else 1.0
        notes.append(f"{image.mode} input reduced to 8 bits")
        return Image.fromarray(np.clip(np.rint(arr / scale), 0, 255).astype(np.uint8), "L")
    if image.mode == "F":
        arr = np.asarray(image).astype(np.float64)
        notes.append("floating-point input reduced to 8 bits (values clipped to 0..255)")
        return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), "L")
    return image


def prepare(image: Image.Image) -> PixelData:
    """Turn any Pillow image into the pixels and metadata the codec stores."""
    notes: list[str] = []
    orientation = image.getexif().get(_ORIENTATION_TAG, 1) if hasattr(image, "getexif") else 1
    if orientation not in (None, 1):
        image = ImageOps.exif_transpose(image)
        notes.append(f"EXIF orientation {orientation} applied to the pixels")
    _check_size(*image.size)
    icc = image.info.get("icc_profile") or None
    exif_obj = image.getexif()
    exif = exif_obj.tobytes() if len(exif_obj) else None
    image = _to_8bit(image, notes)
    has_alpha = image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (
        image.mode == "P" and "transparency" in image.info
    ) or (image.mode in ("L", "RGB") and "transparency" in image.info)
    gray = image.mode in ("L", "LA", "La", "1")
    if image.mode not in ("RGB", "L", "RGBA", "LA"):
        if image.mode != "1":
            notes.append(f"{image.mode} input converted to {'RGBA' if has_alpha else 'RGB'}")
    alpha = None
    if has_alpha:
        rgba = image.convert("RGBA")
        alpha = np.asarray(rgba)[:, :, 3].copy()
        if (alpha == 255).all():
            alpha = None
            notes.append("fully opaque alpha channel dropped")
        rgb = np.asarray(rgba.convert("RGB"))
    else:
        rgb = np.asarray(image.convert("RGB"))
    if gray:
        rgb = np.asarray(image.convert("L").convert("RGB"))
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


def save_image(image: Image.Image, path: str | os.PathLike, format: str | None = None) -> None:
    """Save atomically (temp file + rename), keeping ICC and EXIF where the format can.

    The format follows the extension (PNG if it has none Pillow knows).
    """
    path = Path(path)
    ext = path.suffix.lower()
    fmt = format or Image.registered_extensions().get(ext, "PNG")
    params = {}
    if image.info.get("icc_profile"):
        params["icc_profile"] = image.info["icc_profile"]
    if image.info.get("exif") and fmt in ("PNG", "JPEG", "WEBP", "TIFF"):
        params["exif"] = image.info["exif"]
    if fmt == "JPEG" and image.mode in ("RGBA", "LA"):
        raise UnsupportedImageError(f"{path.name}: JPEG cannot store the alpha channel; use .png")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            image.save(f, format=fmt, **params)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
