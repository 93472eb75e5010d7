"""Per-image comparison of two slimcodec evaluations: does the new model beat the old on every image?

    python -m slimcodec.tools.evaluate ../shared/data/kodak --weights OLD.pt -o /tmp/old --peers none
    python -m slimcodec.tools.evaluate ../shared/data/kodak --weights NEW.pt -o /tmp/new
    python benchmarks/per_image.py /tmp/old/results.json /tmp/new/results.json [--markdown FILE]

For each image: the new weights' BD-rate against the old (PSNR on 8-bit RGB, real file sizes,
all widths; negative is fewer bits at equal quality), and the change in bpp and PSNR at each
width. A release must beat the shipped weights on every image (BD-rate < 0); the last line
says on how many it does. Exit status 0 either way: this reports, it does not judge.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

from slimcodec import metrics

SLIM = "slimcodec"


def points_by_image(results: dict) -> dict[str, dict[int, dict]]:
    """slimcodec's points of an evaluation: image → width → point."""
    out: dict[str, dict[int, dict]] = defaultdict(dict)
    for p in results["points"]:
        if p["codec"] == SLIM:
            out[p["image"]][int(p["setting"])] = p
    return out


def bd_rate_of(old: dict[int, dict], new: dict[int, dict]) -> float | None:
    """BD-rate (%) of ``new`` against ``old`` over their common PSNR range (pchip), or None."""
    def curve(points):
        pts = sorted(points.values(), key=lambda p: p["bpp"])
        return [p["bpp"] for p in pts], [p["psnr"] for p in pts]

    try:
        return float(metrics.bd_rate(*curve(old), *curve(new), method="pchip"))
    except (ValueError, ZeroDivisionError):
        return None


def compare(old: dict, new: dict) -> tuple[list[dict], dict]:
    """Rows per image, and the whole set's row (mean bpp and PSNR per width, as the summaries)."""
    a, b = points_by_image(old), points_by_image(new)
    rows = []
    for image in sorted(set(a) & set(b)):
        widths = sorted(set(a[image]) & set(b[image]), reverse=True)
        rows.append({"image": image, "bd_rate": bd_rate_of(a[image], b[image]),
                     "delta": {w: (b[image][w]["bpp"] / a[image][w]["bpp"] - 1,
                                   b[image][w]["psnr"] - a[image][w]["psnr"]) for w in widths}})

    def summary(results):
        return {int(s["setting"]): {"bpp": s["bpp"], "psnr": s["psnr"]}
                for s in results["summary"] if s["codec"] == SLIM}

    whole = {"image": "all (mean bpp, mean PSNR)", "bd_rate": bd_rate_of(summary(old), summary(new)), "delta": {}}
    return rows, whole


def markdown(rows: list[dict], whole: dict) -> str:
    widths = sorted({w for r in rows for w in r["delta"]}, reverse=True)
    head = "| image | BD-rate | " + " | ".join(f"w{w} Δbpp / ΔdB" for w in widths) + " |"
    lines = [head, "|" + " --- |" * (2 + len(widths))]
    for r in [*rows, whole]:
        bd = "–" if r["bd_rate"] is None else f"{r['bd_rate']:+.1f} %"
        cells = [f"{r['delta'][w][0] * 100:+.1f} % / {r['delta'][w][1]:+.2f}" if w in r["delta"] else ""
                 for w in widths]
        lines.append(f"| {r['image']} | {bd} | " + " | ".join(cells) + " |")
    better = sum(1 for r in rows if r["bd_rate"] is not None and r["bd_rate"] < 0)
    lines.append("")
    lines.append(f"The new weights need fewer bits at equal PSNR (BD-rate < 0) on {better} of {len(rows)} images.")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", type=Path, help="results.json of the anchor (e.g. the shipped weights)")
    parser.add_argument("new", type=Path, help="results.json of the weights under test")
    parser.add_argument("--markdown", type=Path, help="also write the table here")
    args = parser.parse_args(argv)
    text = markdown(*compare(json.loads(args.old.read_text()), json.loads(args.new.read_text())))
    sys.stdout.write(text)
    if args.markdown:
        args.markdown.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
