"""Measure the shipped weights' rate curve per width and latent scale, and derive ``-q``'s table.

    python benchmarks/quality_table.py measure ../shared/data/kodak -o curve.json
    python benchmarks/quality_table.py fit curve.json          # the anchors for slimcodec/quality.py
    python benchmarks/quality_table.py check ../shared/data/kodak > docs/quality.md

``measure`` codes every image at every width on a grid of latent scales (one analysis per
width and image, then the range coder at each scale; real file sizes, no metadata) and
writes the mean bpp of each (width, scale) over the images.

``fit`` turns that curve into the anchors of :data:`slimcodec.quality.TABLES`: quality ``q``
aims at ``bpp(q) = bpp(144, 1) · 2^((q − 75) / DOUBLING)`` (so ``-q 75`` is width 144 at scale
1, the default, and ``q = 100`` the widest width at ``TOP_SCALE``), coded by the narrowest
width whose scale-1 rate reaches it, scaled down to it (a wider width scaled down is on
average as good as or better than the narrower one at the same rate:
docs/continuous-rd.md); above the widest width's scale-1 rate, the widest scaled up.
Anchors every 5 qualities and at each width's first and last quality; between anchors the
scale is interpolated geometrically (:func:`slimcodec.quality.quality_setting`).

``check`` encodes every image at every quality 0..100 through ``slimcodec.encode(quality=q)``
and reports mean bpp (and, every 5 qualities, mean PSNR) against the target: the table in
docs/quality.md.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

TOP_SCALE = 1.5  # the widest width's scale at quality 100
GRID = {w: [round(0.2 + 0.025 * i, 4) for i in range(33)] for w in (48, 72, 96, 144)}  # 0.2 .. 1.0
GRID[192] = [round(0.2 + 0.025 * i, 4) for i in range(53)]  # 0.2 .. 1.5
ANCHOR_STEP = 5


def _images(folder: Path, limit: int) -> list[Path]:
    return sorted(folder.glob("*.png"))[: limit or None]


def measure(folder: Path, out: Path, limit: int) -> int:
    """Mean bpp over the images of every (width, scale) of the grid, written to ``out`` as JSON."""
    from slimcodec import codec
    from slimcodec.entropy import scale_units
    from slimcodec.imageio import PixelData
    from slimcodec.weights import load_weights

    wts = load_weights()
    sums: dict[str, list[float]] = {}
    paths = _images(folder, limit)
    t0 = time.time()
    for path in paths:
        with Image.open(path) as im:
            rgb = np.asarray(im.convert("RGB"))
        pixels, npx = PixelData(rgb), rgb.shape[0] * rgb.shape[1]
        for width in wts.widths:
            y = codec.analyze(wts, rgb, width)
            for scale in GRID[width]:
                data = codec.encode_latents(pixels, y, width, scale_units(scale), wts, metadata=False)
                sums.setdefault(f"{width}/{scale}", []).append(8 * len(data) / npx)
        print(f"  {path.name} ({time.time() - t0:.0f} s)", file=sys.stderr, flush=True)
    curve = {"weights_id": wts.weights_id.hex(), "images": len(paths),
             "bpp": {key: statistics.mean(values) for key, values in sums.items()}}
    out.write_text(json.dumps(curve, indent=1) + "\n")
    return 0


def _curve_of(curve: dict) -> dict[int, list[tuple[float, float]]]:
    """{width: [(scale, mean bpp), ...] by scale}."""
    out: dict[int, list[tuple[float, float]]] = {}
    for key, bpp in curve["bpp"].items():
        width, scale = key.split("/")
        out.setdefault(int(width), []).append((float(scale), bpp))
    return {w: sorted(points) for w, points in sorted(out.items())}


def _bpp_at(points: list[tuple[float, float]], scale: float) -> float:
    """Mean bpp at ``scale``, linear in log-log between grid points."""
    for (s0, b0), (s1, b1) in zip(points, points[1:]):
        if s0 <= scale <= s1:
            t = math.log(scale / s0) / math.log(s1 / s0)
            return math.exp(math.log(b0) + t * math.log(b1 / b0))
    raise ValueError(f"scale {scale} outside the grid")


def _scale_for(points: list[tuple[float, float]], bpp: float) -> float:
    """The scale whose mean bpp is ``bpp`` (inverse of :func:`_bpp_at`)."""
    bpp = min(max(bpp, points[0][1]), points[-1][1]) if math.isclose(bpp, points[-1][1]) else bpp
    for (s0, b0), (s1, b1) in zip(points, points[1:]):
        if b0 <= bpp <= b1:
            t = math.log(bpp / b0) / math.log(b1 / b0)
            return math.exp(math.log(s0) + t * math.log(s1 / s0))
    raise ValueError(f"bpp {bpp:.4f} outside the grid ({points[0][1]:.4f} .. {points[-1][1]:.4f})")


def fit(curve_path: Path) -> int:
    """Print the anchors (quality, width, scale) of the quality table for this curve."""
    curve = _curve_of(json.loads(curve_path.read_text()))
    widths = sorted(curve)
    at_one = {w: _bpp_at(curve[w], 1.0) for w in widths}
    top = _bpp_at(curve[widths[-1]], TOP_SCALE)
    doubling = 25 * math.log(2) / math.log(top / at_one[144])

    def target(q: int) -> float:
        return at_one[144] * 2 ** ((q - 75) / doubling)

    def setting(q: int) -> tuple[int, float]:
        b = target(q)
        width = next((w for w in widths if b <= at_one[w] * (1 + 1e-9)), widths[-1])
        return width, _scale_for(curve[width], b)

    chosen = {q: setting(q) for q in range(101)}
    anchors = []
    for q in range(101):
        width = chosen[q][0]
        first = q == 0 or chosen[q - 1][0] != width
        last = q == 100 or chosen[q + 1][0] != width
        if first or last or q % ANCHOR_STEP == 0:
            anchors.append((q, width, round(chosen[q][1], 4)))
    print(f"# DOUBLING = {doubling:.3f} (bpp doubles every {doubling:.1f} quality points)")
    for w in widths:
        print(f"#   width {w}: {at_one[w]:.4f} bpp at scale 1")
    print("(")
    for q, width, scale in anchors:
        print(f"    ({q}, {width}, {scale}),  # target {target(q):.4f} bpp")
    print(")")
    return 0


def check(folder: Path, limit: int) -> int:
    """Encode every image at every quality; print mean bpp and PSNR per quality (markdown)."""
    import slimcodec
    from slimcodec.metrics import psnr
    from slimcodec.quality import quality_setting
    from slimcodec.weights import load_weights

    wts = load_weights()
    paths = _images(folder, limit)
    rows: dict[int, list[tuple[float, float]]] = {q: [] for q in range(101)}
    t0 = time.time()
    for path in paths:
        with Image.open(path) as im:
            image = im.convert("RGB")
        rgb, npx = np.asarray(image), image.width * image.height
        for q in range(101):
            data = slimcodec.encode(image, quality=q, weights=wts, metadata=False)
            quality = psnr(rgb, np.asarray(slimcodec.decode(data, weights=wts)))
            rows[q].append((8 * len(data) / npx, quality))
        print(f"  {path.name} ({time.time() - t0:.0f} s)", file=sys.stderr, flush=True)
    print(f"Generated by `python benchmarks/quality_table.py check {folder}` with weights "
          f"`{wts.weights_id.hex()}` on {len(paths)} images: each image encoded at every quality with "
          "`slimcodec.encode(image, quality=q)`, real file sizes, PSNR on 8-bit RGB.\n")
    print("| quality | width | scale | mean bpp | mean PSNR (dB) | images smaller than at quality − 1 |")
    print("|---|---|---|---|---|---|")
    previous: list[tuple[float, float]] | None = None
    falls = {"bpp": [], "psnr": []}
    for q in range(101):
        width, scale = quality_setting(wts, q)
        bpp, mean_psnr = (statistics.mean(v[i] for v in rows[q]) for i in (0, 1))
        smaller = 0 if previous is None else sum(b < pb for (b, _), (pb, _) in zip(rows[q], previous))
        if previous is not None:
            for i, kind in enumerate(("bpp", "psnr")):
                if statistics.mean(v[i] for v in rows[q]) < statistics.mean(v[i] for v in previous):
                    falls[kind].append(q)
        switch = previous is not None and quality_setting(wts, q - 1)[0] != width
        if q % 5 == 0 or switch:
            print(f"| {q}{' (new width)' if switch else ''} | {width} | {scale:.4g} | {bpp:.3f} | "
                  f"{mean_psnr:.2f} | {smaller} |")
        previous = rows[q]
    print(f"\nQualities where the mean bpp falls: {falls['bpp'] or 'none'}; where the mean PSNR falls: "
          f"{falls['psnr'] or 'none'}. {time.time() - t0:.0f} s on this machine.")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("step", choices=("measure", "fit", "check"))
    p.add_argument("path", type=Path, help="image folder (measure, check) or curve JSON (fit)")
    p.add_argument("-o", "--output", type=Path, default=Path("curve.json"))
    p.add_argument("--limit", type=int, default=0, help="first N images only (0: all)")
    args = p.parse_args(argv)
    if args.step == "measure":
        return measure(args.path, args.output, args.limit)
    if args.step == "fit":
        return fit(args.path)
    return check(args.path, args.limit)


if __name__ == "__main__":
    sys.exit(main())
