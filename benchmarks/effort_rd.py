"""Rate-distortion gain and encode time of the effort levels, against effort 1.

For each image, width and latent scale, encodes at each effort, decodes with the
ordinary decoder, and records the real file's bpp, PSNR (8-bit RGB) and the encode's
wall time. Per width, the scales trace a small RD curve; BD-rate is taken against the
effort-1 curve of the same image and width, then averaged over images.

    .venv/bin/python benchmarks/effort_rd.py --images kodim01,kodim08,kodim19 --threads 1
    .venv/bin/python benchmarks/effort_rd.py --json effort.json --markdown effort.md
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
KODAK = ROOT.parent / "shared" / "data" / "kodak"


def measure(images: list[str], widths: list[int], efforts: list[int], scales: list[float], threads: int | None,
            anchor_scales: list[float], done: list[dict]) -> list[dict]:
    import torch

    from slimcodec import codec, runtime
    from slimcodec.metrics import psnr
    from slimcodec.weights import load_weights

    if threads:
        runtime.set_threads(threads)
        torch.set_num_threads(threads)
    wts = load_weights()
    rows = list(done)
    have = {(r["image"], r["width"], r["scale"], r["effort"]) for r in rows}
    for name in images:
        with Image.open(KODAK / f"{name}.png") as im:
            image = im.convert("RGB")
        rgb = np.asarray(image)
        for width in widths:
            for scale in sorted(set(scales) | set(anchor_scales)):
                for effort in efforts:
                    wanted = scale in (anchor_scales if effort == 1 else scales) or (effort == 1 and scale in scales)
                    if not wanted or (name, width, scale, effort) in have:
                        continue
                    start = time.perf_counter()
                    data = codec.encode(image, width, scale=scale, weights=wts, effort=effort)
                    seconds = time.perf_counter() - start
                    decoded = np.asarray(codec.decode(data, weights=wts))
                    row = {"image": name, "width": width, "scale": scale, "effort": effort, "seconds": seconds,
                           "bpp": 8 * len(data) / (rgb.shape[0] * rgb.shape[1]), "psnr": psnr(rgb, decoded)}
                    rows.append(row)
                    print(json.dumps(row), file=sys.stderr, flush=True)
    return rows


def summary(rows: list[dict]) -> list[dict]:
    from slimcodec.metrics import bd_rate

    out = []
    for width in sorted({r["width"] for r in rows}, reverse=True):
        for effort in sorted({r["effort"] for r in rows}):
            bds, times = [], []
            for image in sorted({r["image"] for r in rows}):
                curve = {e: [r for r in rows if r["image"] == image and r["width"] == width and r["effort"] == e]
                         for e in (1, effort)}
                times += [r["seconds"] for r in curve[effort]]
                if min(len(curve[1]), len(curve[effort])) < 3:  # measured at scale 1 only: no scale curve
                    continue
                bds.append(bd_rate([r["bpp"] for r in curve[1]], [r["psnr"] for r in curve[1]],
                                   [r["bpp"] for r in curve[effort]], [r["psnr"] for r in curve[effort]]))
            if bds:
                out.append({"width": width, "effort": effort, "bd_rate": statistics.mean(bds), "images": len(bds),
                            "seconds": statistics.median(times)})
    return out


def across_widths(rows: list[dict]) -> dict[int, tuple[float, float]]:
    """Per effort: BD-rate of the curve through the widths at scale 1 against effort 1's, the
    mean over images and the worst (highest) image.

    The fair whole-codec measure: the per-width curves above run along the latent scale,
    whose effort-1 curve is steep (above 1 each extra bit buys little), which flatters effort.
    """
    out = {}
    for effort in sorted({r["effort"] for r in rows}):
        bds = list(per_image_across_widths(rows, effort).values())
        out[effort] = (statistics.mean(bds), max(bds))
    return out


def per_image_across_widths(rows: list[dict], effort: int) -> dict[str, float]:
    """Per image: BD-rate of ``effort``'s curve through the widths at scale 1 against effort 1's."""
    from slimcodec.metrics import bd_rate

    out = {}
    for image in sorted({r["image"] for r in rows}):
        curve = {e: sorted((r for r in rows if r["image"] == image and r["effort"] == e and r["scale"] == 1.0),
                           key=lambda r: r["width"]) for e in (1, effort)}
        out[image] = bd_rate([r["bpp"] for r in curve[1]], [r["psnr"] for r in curve[1]],
                             [r["bpp"] for r in curve[effort]], [r["psnr"] for r in curve[effort]])
    return out


def at_scale_one(rows: list[dict], lambdas: dict[int, float]) -> list[dict]:
    """Per width and effort: the scale-1 file against effort 1's, mean over images.

    ``d_bpp`` and ``d_psnr`` are the mean changes; ``d_objective`` (mean and worst image) is the
    change of the width's training objective λ·255²·MSE + bpp, MSE taken from each file's PSNR.
    """
    def objective(r: dict) -> float:
        return lambdas[r["width"]] * 255**2 * 10 ** (-r["psnr"] / 10) + r["bpp"]

    out = []
    for width in sorted({r["width"] for r in rows}, reverse=True):
        for effort in sorted({r["effort"] for r in rows} - {1}):
            d_bpp, d_psnr, d_j = [], [], []
            for image in sorted({r["image"] for r in rows}):
                pick = {e: [r for r in rows if r["image"] == image and r["width"] == width and r["effort"] == e
                            and r["scale"] == 1.0] for e in (1, effort)}
                if not (pick[1] and pick[effort]):
                    continue
                a, b = pick[1][0], pick[effort][0]
                d_bpp.append(100 * (b["bpp"] / a["bpp"] - 1))
                d_psnr.append(b["psnr"] - a["psnr"])
                d_j.append(100 * (objective(b) / objective(a) - 1))
            if d_j:
                out.append({"width": width, "effort": effort, "images": len(d_j), "d_bpp": statistics.mean(d_bpp),
                            "d_psnr": statistics.mean(d_psnr), "d_objective": statistics.mean(d_j),
                            "d_objective_worst": max(d_j)})
    return out


def markdown(table: list[dict], meta: str, rows: list[dict], lambdas: dict[int, float] | None = None) -> str:
    lines = [meta]
    if any(r["effort"] > 1 for r in table):
        lines += ["", "Per width, along the latent scale (BD-rate against the same width's effort-1 scale curve):", "",
                  "| width | effort | BD-rate vs effort 1 | images | encode s (median) |",
                  "| ---: | ---: | ---: | ---: | ---: |"]
        lines += [f"| {r['width']} | {r['effort']} | {r['bd_rate']:+.2f} % | {r['images']} | {r['seconds']:.1f} |"
                  for r in table]
    widths = ", ".join(str(w) for w in sorted({r["width"] for r in rows}))
    lines += ["", f"Across widths {widths} at scale 1 (the codec's own RD curve; the fair measure):", "",
              "| effort | BD-rate vs effort 1 (mean) | worst image |", "| ---: | ---: | ---: |"]
    lines += [f"| {e} | {bd:+.2f} % | {worst:+.2f} % |" for e, (bd, worst) in across_widths(rows).items()]
    top = max(r["effort"] for r in rows)
    if top > 1:
        lines += ["", f"Per image, effort {top} across widths at scale 1:", "", "| image | BD-rate vs effort 1 |",
                  "| --- | ---: |"]
        lines += [f"| {image} | {bd:+.2f} % |" for image, bd in per_image_across_widths(rows, top).items()]
    if lambdas:
        lines += ["", "Per width at scale 1: the effort-e file against the effort-1 file (mean over images; "
                  "objective = the width's λ·255²·MSE + bpp):", "",
                  "| width | effort | images | Δ bpp | Δ PSNR | Δ objective | worst image |",
                  "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        lines += [f"| {r['width']} | {r['effort']} | {r['images']} | {r['d_bpp']:+.2f} % | {r['d_psnr']:+.3f} dB | "
                  f"{r['d_objective']:+.2f} % | {r['d_objective_worst']:+.2f} % |" for r in at_scale_one(rows, lambdas)]
    lines += ["", "Encode time at scale 1 (wall time of the encode call, the weights already loaded):", "",
              "| width | effort | images | median s | max s |", "| ---: | ---: | ---: | ---: | ---: |"]
    for width in sorted({r["width"] for r in rows}, reverse=True):
        for effort in sorted({r["effort"] for r in rows}):
            seconds = [r["seconds"] for r in rows
                       if r["width"] == width and r["effort"] == effort and r["scale"] == 1.0]
            if seconds:
                lines.append(f"| {width} | {effort} | {len(seconds)} | {statistics.median(seconds):.1f} | "
                             f"{max(seconds):.1f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", default="kodim01,kodim08,kodim19", help="Kodak names [kodim01,kodim08,kodim19]")
    p.add_argument("--widths", default="192,96,48")
    p.add_argument("--efforts", default="1,5,9")
    p.add_argument("--scales", default="0.8,1,1.25", help="latent scales per width (the RD curve's points)")
    p.add_argument("--anchor-scales", default="0.5,0.6,0.7,0.8,1,1.25,1.4,1.6,2",
                   help="scales of the effort-1 curve (wider, so that the refined curves fall inside it)")
    p.add_argument("--reuse", type=Path,
                   help="a --json file of an earlier run: its rows are kept, only missing ones run")
    p.add_argument("--threads", type=int, help="threads for torch and the runtime [default: one per core]")
    p.add_argument("--json", type=Path, help="write the rows and the summary here")
    p.add_argument("--markdown", type=Path)
    a = p.parse_args(argv)
    images = a.images.split(",")
    done = json.loads(a.reuse.read_text())["rows"] if a.reuse else []
    rows = measure(images, [int(w) for w in a.widths.split(",")], [int(e) for e in a.efforts.split(",")],
                   [float(s) for s in a.scales.split(",")], a.threads, [float(s) for s in a.anchor_scales.split(",")],
                   done)
    from slimcodec.weights import load_weights

    weights = load_weights()
    lambdas = {int(w): float(v) for w, v in weights.meta["lambdas"].items()}
    table = summary(rows)
    measured = sorted({r["image"] for r in rows})
    meta = (f"Weights `{weights.weights_id.hex()}`. Kodak, {len(measured)} images ({', '.join(measured)}); "
            f"latent scales {a.scales} per width (effort 1: "
            f"{a.anchor_scales}){'; with the rows of ' + str(a.reuse) if a.reuse else ''}; BD-rate on real files "
            f"(PSNR, 8-bit RGB), averaged over the images; threads {a.threads or 'default'}.")
    text = markdown(table, meta, rows, lambdas)
    print(text)
    if a.json:
        a.json.write_text(json.dumps({"meta": meta, "rows": rows, "summary": table}, indent=1))
    if a.markdown:
        a.markdown.write_text(text)


if __name__ == "__main__":
    main()
