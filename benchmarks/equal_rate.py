"""Per-width table for the README: slimcodec against peers at the same bpp.

    python benchmarks/equal_rate.py docs/results/kodak/summary.csv [--peers jpeg420,webp]

Reads a ``slim eval`` summary (mean bpp and PSNR per setting, real file sizes)
and the λ of each width from the weights' metadata, and, for each width, interpolates each peer's PSNR at
slimcodec's bpp
(linear in log-rate between the two bracketing quality settings of the peer).
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections import defaultdict

from slimcodec.metrics import quality_at_rate


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("summary")
    p.add_argument("--peers", default="jpeg420,webp")
    p.add_argument("--weights", default=None, help="weights file whose λ to show [default: shipped]")
    args = p.parse_args(argv)
    from slimcodec.weights import load_weights

    lambdas = load_weights(args.weights).meta.get("lambdas", {})
    rows = defaultdict(list)
    with open(args.summary, newline="") as f:
        for r in csv.DictReader(f):
            rows[r["codec"]].append(r)
    peers = [x for x in args.peers.split(",") if x in rows]
    head = "| width | λ | bpp | PSNR (dB) | MS-SSIM | " + " | ".join(f"{x} PSNR at same bpp" for x in peers) + " |"
    print(head)
    print("|" + "---|" * (5 + len(peers)))
    for r in sorted(rows["slimcodec"], key=lambda r: -int(r["setting"])):
        bpp, psnr = float(r["bpp"]), float(r["psnr"])
        lam = lambdas.get(r["setting"])
        cells = [r["setting"], "?" if lam is None else f"{float(lam):.4g}", f"{bpp:.3f}", f"{psnr:.2f}",
                 f"{float(r['ms_ssim']):.4f}"]
        for peer in peers:
            at = quality_at_rate([(float(x["bpp"]), float(x["psnr"])) for x in rows[peer]], bpp)
            cells.append("n/o" if at is None else f"{at:.2f} ({psnr - at:+.2f})")
        print("| " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
