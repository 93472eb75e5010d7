"""Regenerate the golden vectors in formats/vectors/ (run only when the format changes).

    SLIM_REGENERATE_VECTORS=1 python formats/vectors/generate.py

``v1.0/`` holds, for a tiny seeded network (``tiny-weights.pt``, widths 8 and 4):
source PNGs, the .slim files they encode to, and in ``expected.json`` the SHA-256 of
each file, of its decoded integer symbols (bit-exact everywhere) and of its decoded
pixels (float transforms: exact on the machine class CI runs on).
``invalid/`` holds broken files and the reason a decoder must give for each.
Existing vectors are never overwritten unless SLIM_REGENERATE_VECTORS=1.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
VERSION_DIR = HERE / "v1.0"
INVALID_DIR = HERE / "invalid"
WEIGHTS = VERSION_DIR / "tiny-weights.pt"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sources() -> dict[str, Image.Image]:
    """Small deterministic inputs covering the header's cases."""
    rng = np.random.default_rng(2026)
    yy, xx = np.mgrid[0:24, 0:40]
    rgb = np.stack([xx * 6, yy * 10, (xx * 7 + yy * 13) % 256], axis=2).astype(np.uint8)
    noisy = np.clip(rgb.astype(int) + rng.integers(-40, 41, rgb.shape), 0, 255).astype(np.uint8)
    rgba = Image.fromarray(rgb, "RGB")
    rgba.putalpha(Image.fromarray((xx * 6).astype(np.uint8), "L"))
    return {
        "gradient-40x24": Image.fromarray(rgb, "RGB"),
        "noise-40x24": Image.fromarray(noisy, "RGB"),
        "pixel-1x1": Image.fromarray(rgb[:1, :1], "RGB"),
        "gray-17x33": Image.fromarray(rng.integers(0, 256, (33, 17), dtype=np.uint8), "L"),
        "alpha-40x24": rgba,
    }


def with_crc(body: bytes) -> bytes:
    return body + struct.pack("<I", zlib.crc32(body))


def invalid_files(valid: bytes, other_weights: bytes) -> dict[str, tuple[bytes, str]]:
    """Broken files and a fragment of the reason each must be refused with."""
    body = valid[:-4]
    newer = bytearray(body)
    newer[4] = 2
    bad_width = bytearray(body)
    bad_width[18:20] = struct.pack("<H", 12)
    flipped = bytearray(valid)
    flipped[-6] ^= 0x10  # inside the payload
    return {
        "empty": (b"", "empty file"),
        "bad-magic": (b"SLIN" + valid[4:], "bad magic"),
        "truncated-header": (valid[:30], "truncated"),
        "truncated-payload": (valid[:-9], "truncated"),
        "trailing-data": (valid + b"\0\0\0\0", "trailing data"),
        "bit-flip-payload": (bytes(flipped), "checksum mismatch"),
        "future-major-version": (with_crc(bytes(newer)), "unsupported format version 2.0"),
        "unknown-width": (with_crc(bytes(bad_width)), "width 12 is not in these weights"),
        "other-weights": (other_weights, "made with other weights"),
    }


def main() -> int:
    if os.environ.get("SLIM_REGENERATE_VECTORS") != "1":
        print("refusing to regenerate: set SLIM_REGENERATE_VECTORS=1", file=sys.stderr)
        return 2
    import torch

    from slimcodec import codec
    from slimcodec.model import SlimCAE
    from slimcodec.weights import load_weights, save_weights

    VERSION_DIR.mkdir(parents=True, exist_ok=True)
    INVALID_DIR.mkdir(parents=True, exist_ok=True)
    if not WEIGHTS.exists():
        torch.manual_seed(0)
        save_weights(SlimCAE((8, 4)), WEIGHTS, meta={"purpose": "golden vectors"})
    weights = load_weights(WEIGHTS)
    expected = {"weights": WEIGHTS.name, "weights_id": weights.weights_id.hex(), "vectors": {}}
    for name, image in sources().items():
        image.save(VERSION_DIR / f"{name}.png")
        for width in weights.widths:
            data = codec.encode(Image.open(VERSION_DIR / f"{name}.png"), width, weights=weights)
            (VERSION_DIR / f"{name}-w{width}.slim").write_bytes(data)
            _, q, _ = codec.decode_symbols_of(data, weights=weights)
            pixels = np.asarray(codec.decode(data, weights=weights))
            expected["vectors"][f"{name}-w{width}.slim"] = {
                "source": f"{name}.png",
                "width": width,
                "file_sha256": sha256(data),
                "symbols_sha256": sha256(q.astype("<i4").tobytes()),
                "pixels_sha256": sha256(pixels.tobytes()),
            }
    (VERSION_DIR / "expected.json").write_text(json.dumps(expected, indent=2) + "\n")

    torch.manual_seed(1)
    save_weights(SlimCAE((8, 4)), INVALID_DIR / "other-weights.pt")
    other = codec.encode(sources()["gradient-40x24"], 8, weights=load_weights(INVALID_DIR / "other-weights.pt"))
    (INVALID_DIR / "other-weights.pt").unlink()
    valid = (VERSION_DIR / "gradient-40x24-w8.slim").read_bytes()
    reasons = {}
    for name, (data, reason) in invalid_files(valid, other).items():
        (INVALID_DIR / f"{name}.slim").write_bytes(data)
        reasons[f"{name}.slim"] = reason
    (INVALID_DIR / "expected.json").write_text(json.dumps(reasons, indent=2) + "\n")
    print(f"wrote {len(expected['vectors'])} vectors and {len(reasons)} invalid files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
