"""Per-width table for the README: slimcodec against peers at the same bpp.

    python benchmarks/equal_rate.py docs/results/kodak/summary.csv [--peers jpeg420,webp]

Reads a ``slim eval`` summary (mean bpp and PSNR per setting, real file sizes)
and, for each width, interpolates each peer's PSNR at slimcodec's bpp
(linear in log-rate between the two bracketing quality settings of the peer).
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from collections import defaultdict


def peer_psnr_at(points: list[tuple[float, float]], bpp: float) -> float | None:
    """PSNR of a peer's (bpp, PSNR) curve at ``bpp``; None outside the measured range."""
    points = sorted(points)
    for (b0, p0), (b1, p1) in zip(points, points[1:]):
        if b0 <= bpp <= b1:
            t = (math.log(bpp) - math.log(b0)) / (math.log(b1) - math.log(b0))
            return p0 + t * (p1 - p0)
    return None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("summary")
    p.add_argument("--peers", default="jpeg420,webp")
    args = p.parse_args(argv)
    rows = defaultdict(list)
    with open(args.summary, newline="") as f:
        for r in csv.DictReader(f):
            rows[r["codec"]].append(r)
    peers = [x for x in args.peers.split(",") if x in rows]
    head = "| width | bpp | PSNR (dB) | MS-SSIM | " + " | ".join(f"{x} PSNR at same bpp" for x in peers) + " |"
    print(head)
    print("|" + "---|" * (4 + len(peers)))
    for r in sorted(rows["slimcodec"], key=lambda r: -int(r["setting"])):
        bpp, psnr = float(r["bpp"]), float(r["psnr"])
        cells = [r["setting"], f"{bpp:.3f}", f"{psnr:.2f}", f"{float(r['ms_ssim']):.4f}"]
        for peer in peers:
            at = peer_psnr_at([(float(x["bpp"]), float(x["psnr"])) for x in rows[peer]], bpp)
            cells.append("n/o" if at is None else f"{at:.2f} ({psnr - at:+.2f})")
        print("| " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
