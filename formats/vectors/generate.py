"""Regenerate the golden vectors in formats/vectors/ (run only when the format changes).

    SLIM_REGENERATE_VECTORS=1 python formats/vectors/generate.py

``vX.Y/`` holds, for a tiny seeded network (``tiny-weights.pt``, widths 8 and 4):
source PNGs, the .slim files they encode to, and in ``expected.json`` the SHA-256 of
each file, of its decoded integer symbols (bit-exact everywhere) and of its decoded
pixels (float transforms: exact on the machine class CI runs on). ``v1.1/`` adds files
with a latent scale (``-s<units>`` in their names) and the SHA-256 of the scaled
entropy tables. Older version folders are kept as they are: decoders must still read them.
``v2.0/`` (``python formats/vectors/generate.py v2.0``) holds format 2 files of a tiny
seeded hyperprior network, with the SHA-256 of their z symbols, y symbols and y's table
indexes as well.
``v3.0/`` (``python formats/vectors/generate.py v3.0``) holds format 3 files of a tiny seeded
channel-conditional network (widths 8 and 4, slices of 4 channels, its slice contexts set
to random values so that they move the tables), with the same hashes as ``v2.0/``.
``v3.1/`` (``python formats/vectors/generate.py v3.1``) holds format 3.1 (tiled) files of the same
network, and of a 1100×1030 picture of 2×2 tiles.
``python formats/vectors/generate.py invalid-future`` rewrites only ``invalid/future-major-version.slim``
(major 4: major 3 became the channel-conditional format).
``python formats/vectors/generate.py v1.1-xmp`` adds to ``v1.1/`` (and writes nothing else)
``xmp-40x24.png``, a source with EXIF and XMP, and ``xmp-40x24-w8.slim``, its file with an
``exif`` and an ``xmpd`` chunk (the XMP chunk changed no version: earlier readers skip it).
``invalid/`` holds broken files and the reason a decoder must give for each.
Existing vectors are never overwritten unless SLIM_REGENERATE_VECTORS=1.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
VERSION_DIR = HERE / "v1.1"
FIRST_DIR = HERE / "v1.0"  # frozen; its weights are the vectors' weights ever since
INVALID_DIR = HERE / "invalid"
HYPERPRIOR_DIR = HERE / "v2.0"
# the tiny hyperprior's latents are small too: scales above 1 give symbols other than zero
HYPERPRIOR_SCALED = (("noise-40x24", 8, 16384), ("noise-40x24", 8, 65535), ("gradient-40x24", 4, 65535))
CHANNEL_DIR = HERE / "v3.0"
TILED_DIR = HERE / "v3.1"  # format 3.1: the same tiny channel-conditional weights, tiled payloads
# (source, width, units) of 3.1's multi-tile files: 2×2 tiles of 64×64 y positions (1024 px)
TILED_LARGE = (("tiles-1100x1030", 8, 4096), ("tiles-1100x1030", 8, 65535), ("tiles-1100x1030", 4, 65535))
CHANNEL_SCALED = (("noise-40x24", 8, 2048), ("noise-40x24", 8, 16384), ("noise-40x24", 8, 65535),
                  ("gradient-40x24", 4, 65535), ("alpha-40x24", 8, 6000))
WEIGHTS = VERSION_DIR / "tiny-weights.pt"
# (source, width, latent scale units): the tiny network's latents are small, so large
# scales are what give its files symbols other than zero
SCALED = (("noise-40x24", 8, 16384), ("noise-40x24", 8, 65535), ("noise-40x24", 4, 65535),
          ("gradient-40x24", 8, 1024), ("alpha-40x24", 8, 6000))
TABLE_SCALES = (256, 1024, 3000, 4095, 4097, 5000, 16384, 65535)
XMP_SOURCE = "xmp-40x24"
XMP_PACKET = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
              b'<rdf:Description xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:creator>slimcodec vectors'
              b'</dc:creator></rdf:Description></rdf:RDF></x:xmpmeta>')


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


def table_digest(table) -> str:
    """SHA-256 of an entropy table's integers (offsets, lengths, counts; little-endian int32)."""
    parts = (table.offsets, table.lengths, table.counts)
    return sha256(b"".join(np.ascontiguousarray(a, dtype="<i4").tobytes() for a in parts))


def invalid_files(valid: bytes, other_weights: bytes) -> dict[str, tuple[bytes, str]]:
    """Broken files and a fragment of the reason each must be refused with."""
    body = valid[:-4]
    newer = bytearray(body)
    newer[4] = 4  # 2.x is the hyperprior format, 3.x the channel-conditional one; 4 is still in the future
    scaled_1_0 = bytearray(body)
    scaled_1_0[5] = 0
    scaled_1_0[34:36] = struct.pack("<H", 2048)
    scale_one = bytearray(body)
    scale_one[34:36] = struct.pack("<H", 4096)
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
        "future-major-version": (with_crc(bytes(newer)), "unsupported format version 4.1"),
        "latent-scale-in-1.0-file": (with_crc(bytes(scaled_1_0)), "non-zero reserved bytes"),
        "latent-scale-4096": (with_crc(bytes(scale_one)), "bad latent scale 4096"),
        "unknown-width": (with_crc(bytes(bad_width)), "width 12 is not in these weights"),
        "other-weights": (other_weights, "made with other weights"),
    }


def write_vectors(folder: Path, weights, settings, sources: dict | None = None) -> dict:
    """Save the sources (by default :func:`sources`) as PNG into ``folder``, encode each
    (source, width, units) there; the expected entries by file name."""
    from slimcodec import codec

    for name, image in (globals()["sources"]() if sources is None else sources).items():
        image.save(folder / f"{name}.png")
    vectors = {}
    for name, width, units in settings:
        file_name = f"{name}-w{width}" + (f"-s{units}" if units != 4096 else "") + ".slim"
        with Image.open(folder / f"{name}.png") as image:
            data = codec.encode(image, width, scale=units / 4096, weights=weights)
        (folder / file_name).write_bytes(data)
        _, latents, _ = codec.decode_latents(data, weights=weights)
        pixels = np.asarray(codec.decode(data, weights=weights))
        vectors[file_name] = {
            "source": f"{name}.png",
            "width": width,
            "scale": units / 4096,
            "file_sha256": sha256(data),
            "symbols_sha256": sha256(latents.y.astype("<i4").tobytes()),
            "pixels_sha256": sha256(pixels.tobytes()),
        }
        for key, symbols in latents.symbols().items():  # the hyperprior's z and y's table indexes
            if key != "y":
                vectors[file_name][f"{key}_sha256"] = sha256(symbols.astype("<i4").tobytes())
    return vectors


def main_xmp() -> int:
    """Add ``xmp-40x24.png`` and its file with an ``xmpd`` chunk to ``v1.1/`` (nothing else is rewritten)."""
    from PIL.PngImagePlugin import PngInfo

    from slimcodec.weights import load_weights

    info = PngInfo()
    info.add_itxt("XML:com.adobe.xmp", XMP_PACKET.decode())
    exif = Image.Exif()
    exif[0x010F] = "slimcodec"  # Make
    sources()["gradient-40x24"].save(VERSION_DIR / f"{XMP_SOURCE}.png", pnginfo=info, exif=exif.tobytes())
    weights = load_weights(WEIGHTS)
    path = VERSION_DIR / "expected.json"
    expected = json.loads(path.read_text())
    new = write_vectors(VERSION_DIR, weights, [(XMP_SOURCE, 8, 4096)], sources={})
    expected["vectors"].update(new)
    path.write_text(json.dumps(expected, indent=2) + "\n")
    print(f"added {', '.join(new)}")
    return 0


def main_hyperprior() -> int:
    """Write ``v2.0/``: format 2 files of a tiny seeded hyperprior network."""
    import torch

    from slimcodec.models.hyperprior import SlimCAEHyperprior
    from slimcodec.weights import save_weights

    HYPERPRIOR_DIR.mkdir(parents=True, exist_ok=True)
    path = HYPERPRIOR_DIR / "tiny-hyperprior-weights.pt"
    if not path.exists():
        torch.manual_seed(0)
        save_weights(SlimCAEHyperprior((8, 4)), path, meta={"purpose": "golden vectors"})
    return write_vector_set(HYPERPRIOR_DIR, path, HYPERPRIOR_SCALED, "format 2")


def write_vector_set(directory: Path, path: Path, scaled, label: str) -> int:
    """Write the vectors of the weights at ``path`` (every source at every width, then ``scaled``)
    into ``directory`` with their ``expected.json``."""
    from slimcodec.weights import load_weights

    weights = load_weights(path)
    settings = [(name, width, 4096) for name in sources() for width in weights.widths] + list(scaled)
    expected = {"weights": path.name, "weights_id": weights.weights_id.hex(),
                "vectors": write_vectors(directory, weights, settings)}
    (directory / "expected.json").write_text(json.dumps(expected, indent=2) + "\n")
    print(f"wrote {len(expected['vectors'])} {label} vectors")
    return 0


def main_channel() -> int:
    """Write ``v3.0/``: format 3 files of a tiny seeded channel-conditional network."""
    import torch

    from slimcodec.models.channel import SlimCAEChannel
    from slimcodec.weights import save_weights

    CHANNEL_DIR.mkdir(parents=True, exist_ok=True)
    path = CHANNEL_DIR / "tiny-channel-weights.pt"
    if not path.exists():
        torch.manual_seed(0)
        model = SlimCAEChannel((8, 4))
        with torch.no_grad():  # a fresh model's context terms are zero: give them weight
            for net in [*model.scale_context, *model.mean_context]:
                net.outer.weight.normal_(0.0, 0.3)
        save_weights(model, path, meta={"purpose": "golden vectors"})
    return write_vector_set(CHANNEL_DIR, path, CHANNEL_SCALED, "format 3")


def tiled_sources() -> dict[str, Image.Image]:
    """:func:`sources` and a picture of 2×2 payload tiles (gradients and 64-px squares: small as PNG)."""
    yy, xx = np.mgrid[0:1030, 0:1100]
    squares = ((yy // 64 + xx // 64) % 2) * 60
    rgb = np.stack([xx * 255 // 1099, yy * 255 // 1029, 90 + squares], axis=2).astype(np.uint8)
    return {**sources(), "tiles-1100x1030": Image.fromarray(rgb, "RGB")}


def main_tiled() -> int:
    """Write ``v3.1/``: format 3.1 (tiled) files of ``v3.0/``'s tiny channel-conditional network,
    the sources of every version and a picture of 2×2 tiles."""
    from slimcodec.weights import load_weights

    TILED_DIR.mkdir(parents=True, exist_ok=True)
    path = CHANNEL_DIR / "tiny-channel-weights.pt"  # read from v3.0/, not copied
    weights = load_weights(path)
    settings = ([(name, width, 4096) for name in sources() for width in weights.widths] + list(CHANNEL_SCALED)
                + list(TILED_LARGE))
    expected = {"weights": f"../{CHANNEL_DIR.name}/{path.name}", "weights_id": weights.weights_id.hex(),
                "vectors": write_vectors(TILED_DIR, weights, settings, tiled_sources())}
    (TILED_DIR / "expected.json").write_text(json.dumps(expected, indent=2) + "\n")
    print(f"wrote {len(expected['vectors'])} format 3.1 vectors")
    return 0


def main_invalid_future() -> int:
    """Rewrite ``invalid/future-major-version.slim`` alone (and its reason)."""
    valid = (VERSION_DIR / "gradient-40x24-w8.slim").read_bytes()
    data, reason = invalid_files(valid, b"")["future-major-version"]
    (INVALID_DIR / "future-major-version.slim").write_bytes(data)
    path = INVALID_DIR / "expected.json"
    reasons = json.loads(path.read_text())
    reasons["future-major-version.slim"] = reason
    path.write_text(json.dumps(reasons, indent=2) + "\n")
    return 0


def main() -> int:
    if os.environ.get("SLIM_REGENERATE_VECTORS") != "1":
        print("refusing to regenerate: set SLIM_REGENERATE_VECTORS=1", file=sys.stderr)
        return 2
    if sys.argv[1:] == ["v2.0"]:
        return main_hyperprior()
    if sys.argv[1:] == ["v3.0"]:
        return main_channel()
    if sys.argv[1:] == ["v3.1"]:
        return main_tiled()
    if sys.argv[1:] == ["invalid-future"]:
        return main_invalid_future()
    if sys.argv[1:] == ["v1.1-xmp"]:
        return main_xmp()
    import torch

    from slimcodec import codec
    from slimcodec.models.factorized import SlimCAE
    from slimcodec.weights import load_weights, save_weights

    VERSION_DIR.mkdir(parents=True, exist_ok=True)
    INVALID_DIR.mkdir(parents=True, exist_ok=True)
    if not WEIGHTS.exists():
        if (FIRST_DIR / WEIGHTS.name).exists():
            shutil.copyfile(FIRST_DIR / WEIGHTS.name, WEIGHTS)
        else:
            torch.manual_seed(0)
            save_weights(SlimCAE((8, 4)), WEIGHTS, meta={"purpose": "golden vectors"})
    weights = load_weights(WEIGHTS)
    expected = {"weights": WEIGHTS.name, "weights_id": weights.weights_id.hex(), "vectors": {},
                "scaled_tables": {f"{w}/{u}": table_digest(weights.table(w, u))
                                  for w in weights.widths for u in TABLE_SCALES}}
    settings = [(name, width, 4096) for name in sources() for width in weights.widths] + list(SCALED)
    expected["vectors"] = write_vectors(VERSION_DIR, weights, settings)
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
