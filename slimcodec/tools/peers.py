"""Peer codecs, run in memory with Pillow (and pillow-heif) on the same pixels.

Each peer turns an ``H×W×3`` uint8 RGB array into the bytes of a real file
and decodes those bytes back to RGB; nothing touches the disk. Settings sweep
roughly 0.1–2 bpp on Kodak-like photos.

| name | codec | knob | notes |
|---|---|---|---|
| ``jpeg420`` | JPEG (libjpeg via Pillow) | quality | 4:2:0, optimized Huffman tables |
| ``jpeg444`` | JPEG | quality | 4:4:4, optimized Huffman tables |
| ``webp`` | WebP (libwebp) | quality | lossy, method 6 (slowest, best); WebP is always 4:2:0 |
| ``jpeg2000`` | JPEG 2000 (OpenJPEG) | target bpp | 9/7 wavelet, colour transform, rate-driven layers; raw .j2k |
| ``avif`` | AV1 in AVIF (libavif) | quality | 4:4:4, speed 6; needs Pillow's AVIF plugin |
| ``hevc`` | HEVC in HEIF (x265) | quality | 4:4:4, pillow-heif (the ``peers`` extra); BPG stand-in |

Example::

    >>> import numpy as np
    >>> from slimcodec.tools.peers import PEERS
    >>> rgb = np.zeros((32, 48, 3), np.uint8)
    >>> data, decoded = PEERS["jpeg420"].run(rgb, 75)
    >>> assert data[:2] == b"\\xff\\xd8" and decoded.shape == rgb.shape
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class Peer:
    """One peer codec and its sweep.

    Attributes:
        name (str): short id used on the command line and in reports.
        label (str): human-readable description for tables and plots.
        knob (str): what a setting means (``"quality"``, ``"target_bpp"``).
        settings (tuple): the sweep, from low to high rate.
        bench_setting (int | float): one setting near 1 bpp, used for timing.
        encode (Callable): ``encode(rgb, setting) -> bytes``.
        decode (Callable): ``decode(data) -> rgb``.
        available (Callable): ``available() -> str | None``, the reason it is not.
    """

    name: str
    label: str
    knob: str
    settings: tuple
    bench_setting: int | float
    encode: Callable[[np.ndarray, int | float], bytes]
    decode: Callable[[bytes], np.ndarray]
    available: Callable[[], str | None]

    def run(self, rgb: np.ndarray, setting) -> tuple[bytes, np.ndarray]:
        """Encode ``rgb`` at ``setting`` and decode it back.

        Returns:
            tuple[bytes, np.ndarray]: the file's bytes and the decoded ``H×W×3`` uint8 array.

        Raises:
            RuntimeError: the decoded image does not have the input's size.
        """
        data = self.encode(rgb, setting)
        decoded = self.decode(data)
        if decoded.shape != rgb.shape:
            raise RuntimeError(f"{self.name} decoded {decoded.shape}, expected {rgb.shape}")
        return data, decoded


def _check_rgb(rgb: np.ndarray) -> Image.Image:
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"peers take H×W×3 uint8 arrays, got {rgb.dtype} {rgb.shape}")
    return Image.fromarray(np.ascontiguousarray(rgb), "RGB")


def _save(rgb: np.ndarray, fmt: str, **params) -> bytes:
    buf = io.BytesIO()
    _check_rgb(rgb).save(buf, format=fmt, **params)
    return buf.getvalue()


def _pillow_decode(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


def _always() -> str | None:
    return None


def _pillow_feature(feature: str, what: str) -> Callable[[], str | None]:
    def check() -> str | None:
        from PIL import features

        try:
            ok = features.check(feature)
        except ValueError:  # a Pillow too old to know the feature
            ok = False
        return None if ok else f"this Pillow has no {what} support"

    return check


def _jpeg(subsampling: int) -> Callable[[np.ndarray, int], bytes]:
    def encode(rgb: np.ndarray, quality: int) -> bytes:
        return _save(rgb, "JPEG", quality=int(quality), subsampling=subsampling, optimize=True)

    return encode


def _webp(rgb: np.ndarray, quality: int) -> bytes:
    return _save(rgb, "WEBP", quality=int(quality), method=6, lossless=False)


def _jpeg2000(rgb: np.ndarray, target_bpp: float) -> bytes:
    # quality_layers in "rates" mode are compression ratios against the raw 24-bit image.
    return _save(rgb, "JPEG2000", no_jp2=True, irreversible=True, mct=1,
                 quality_mode="rates", quality_layers=[24.0 / float(target_bpp)])


def _avif(rgb: np.ndarray, quality: int) -> bytes:
    return _save(rgb, "AVIF", quality=int(quality), subsampling="4:4:4", speed=6)


def _heif_available() -> str | None:
    try:
        import pillow_heif
    except ImportError:
        return "pillow-heif is not installed (pip install 'slimcodec[peers]')"
    if not pillow_heif.libheif_info().get("HEIF"):
        return "pillow-heif has no HEVC encoder"
    return None


def _hevc_encode(rgb: np.ndarray, quality: int) -> bytes:
    import pillow_heif

    buf = io.BytesIO()
    heif = pillow_heif.from_pillow(_check_rgb(rgb))
    heif.save(buf, quality=int(quality), chroma=444, save_nclx_profile=True)
    return buf.getvalue()


def _hevc_decode(data: bytes) -> np.ndarray:
    import pillow_heif

    heif = pillow_heif.open_heif(io.BytesIO(data), convert_hdr_to_8bit=True)
    return np.asarray(heif.to_pillow().convert("RGB"))


PEERS: dict[str, Peer] = {
    p.name: p
    for p in (
        Peer("jpeg420", "JPEG 4:2:0 (Pillow/libjpeg)", "quality",
             (5, 10, 15, 20, 30, 40, 50, 60, 70, 80, 90), 75, _jpeg(2), _pillow_decode, _always),
        Peer("jpeg444", "JPEG 4:4:4 (Pillow/libjpeg)", "quality",
             (5, 10, 15, 20, 30, 40, 50, 60, 70, 80, 90), 75, _jpeg(0), _pillow_decode, _always),
        Peer("webp", "WebP method 6 (libwebp)", "quality",
             (5, 10, 20, 30, 40, 50, 60, 70, 80, 90), 75, _webp, _pillow_decode,
             _pillow_feature("webp", "WebP")),
        Peer("jpeg2000", "JPEG 2000 (OpenJPEG, 9/7)", "target_bpp",
             (0.1, 0.15, 0.25, 0.35, 0.5, 0.75, 1.0, 1.5, 2.0), 1.0, _jpeg2000, _pillow_decode,
             _pillow_feature("jpg_2000", "JPEG 2000")),
        Peer("avif", "AVIF 4:4:4 speed 6 (libavif)", "quality",
             (10, 20, 30, 40, 50, 60, 70, 80, 90), 60, _avif, _pillow_decode,
             _pillow_feature("avif", "AVIF")),
        Peer("hevc", "HEVC 4:4:4 in HEIF (x265, pillow-heif)", "quality",
             (10, 20, 25, 30, 35, 40, 45, 50, 55, 60), 45, _hevc_encode, _hevc_decode, _heif_available),
    )
}
ALIASES = {"jpeg": ("jpeg420", "jpeg444"), "jpg": ("jpeg420", "jpeg444"), "jp2": ("jpeg2000",),
           "j2k": ("jpeg2000",), "heif": ("hevc",), "heic": ("hevc",), "bpg": ("hevc",), "av1": ("avif",)}


def resolve(names) -> list[str]:
    """Expand a comma-separated string or list of peer names (aliases allowed) to peer names.

    ``"all"`` means every peer, ``"none"`` or an empty string none.

    Raises:
        ValueError: an unknown name (the message lists the valid ones).
    """
    if names is None:
        return list(PEERS)
    if isinstance(names, str):
        names = [n for n in names.split(",")]
    out: list[str] = []
    for raw in names:
        name = raw.strip().lower()
        if not name or name == "none":
            continue
        expanded = list(PEERS) if name == "all" else ALIASES.get(name, (name,))
        for n in expanded:
            if n not in PEERS:
                valid = ", ".join([*PEERS, *ALIASES, "all", "none"])
                raise ValueError(f"unknown peer {raw.strip()!r}; valid: {valid}")
            if n not in out:
                out.append(n)
    return out


def available_peers(names=None) -> tuple[list[Peer], dict[str, str]]:
    """The requested peers that can run here, and ``{name: reason}`` for those that cannot."""
    runnable, skipped = [], {}
    for name in resolve(names):
        reason = PEERS[name].available()
        if reason:
            skipped[name] = reason
        else:
            runnable.append(PEERS[name])
    return runnable, skipped
