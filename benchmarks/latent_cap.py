"""The widest width's quality cap on Kodak: what the transforms give with unquantized latents.

    python benchmarks/latent_cap.py WEIGHTS.pt [--limit N]

For each image: PSNR (8-bit RGB) of ``synthesize(analyze(image))`` with no rounding in between,
and of real .slim files at latent scales 1 and 4. No latent scale can pass the first figure.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

KODAK = Path(__file__).resolve().parents[2] / "shared" / "data" / "kodak"
SCALES = (1.0, 4.0)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("weights")
    p.add_argument("--folder", type=Path, default=KODAK)
    p.add_argument("--limit", type=int, default=0, help="first N images only (0: all)")
    args = p.parse_args(argv)

    from slimcodec import codec
    from slimcodec.metrics import psnr
    from slimcodec.weights import load_weights

    weights = load_weights(args.weights)
    width = max(weights.widths)
    paths = sorted(args.folder.glob("*.png"))[: args.limit or None]
    cap, files = [], {s: [] for s in SCALES}
    for path in paths:
        image = Image.open(path).convert("RGB")
        rgb = np.asarray(image)
        h, w = rgb.shape[:2]
        cap.append(psnr(rgb, codec.synthesize(weights, codec.analyze(weights, rgb, width), width, h, w)))
        for scale in SCALES:
            data = codec.encode(image, width, scale=scale, weights=weights)
            decoded = np.asarray(codec.decode(data, weights=weights).convert("RGB"))
            files[scale].append((8 * len(data) / (h * w), psnr(rgb, decoded)))
    line = f"{args.weights}: {len(paths)} images, width {width}; unquantized {np.mean(cap):.2f} dB"
    for scale, rows in files.items():
        line += f"; scale {scale:g}: {np.mean([b for b, _ in rows]):.3f} bpp {np.mean([q for _, q in rows]):.2f} dB"
    print(line)


if __name__ == "__main__":
    main()
