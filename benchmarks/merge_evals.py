"""Merge evaluation reports of disjoint image sets into one report (curves, BD-rates, plots).

    python benchmarks/merge_evals.py OUT evalA evalB [--slim-from LABEL=DIR] [--dataset NAME]

Long evaluations (effort 9 takes minutes per image) run as halves side by side, one core each,
on disjoint folders (``slim eval half1 -o evalA --effort 9 ...``); this joins their points — every
image keeps the peers measured in its own run — and recomputes the summary, BD-rates and plots.
``--slim-from LABEL=DIR`` adds slimcodec's points of another report on the same images as a codec
named LABEL (e.g. the effort-1 release evaluation), so BD-rates against it appear in the table.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from slimcodec.tools import evaluate as E


def merge(dirs: list[Path], extra: dict[str, Path], dataset: str | None = None) -> dict:
    parts = [json.loads((d / "results.json").read_text()) for d in dirs]
    meta = dict(parts[0]["meta"])
    images = [name for part in parts for name in part["meta"]["images"]]
    if len(set(images)) != len(images):
        raise SystemExit("the reports share images: merge disjoint sets only")
    meta.update(images=images, num_images=len(images), folder=[str(d) for d in dirs],
                image_sizes={k: v for part in parts for k, v in part["meta"]["image_sizes"].items()},
                elapsed_s=sum(part["meta"]["elapsed_s"] or 0 for part in parts))
    if dataset:
        meta["dataset"] = dataset
    points = [p for part in parts for p in part["points"]]
    for label, folder in extra.items():
        other = json.loads((folder / "results.json").read_text())
        mine = [p for p in other["points"] if p["codec"] == E.SLIM and p["image"] in images]
        if {p["image"] for p in mine} != set(images):
            raise SystemExit(f"{folder} does not hold slimcodec points for every image")
        points += [{**p, "codec": label} for p in mine]
        meta["codec_labels"][label] = f"{label} (slimcodec points of {folder}, weights {other['meta']['weights_id']})"
    summary = E.summarize(points)
    published = parts[0]["published"] or None
    return {"meta": meta, "points": points, "summary": summary, "bd": E.bd_rows(summary, E.SLIM, published),
            "failures": [f for part in parts for f in part["failures"]],
            "skipped_peers": parts[0]["skipped_peers"], "published": published or {}, "files": {}}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", type=Path)
    p.add_argument("reports", type=Path, nargs="+")
    p.add_argument("--slim-from", action="append", default=[], metavar="LABEL=DIR")
    p.add_argument("--dataset", help="the data set's name in the report [default: the first report's]")
    a = p.parse_args(argv)
    extra = {}
    for item in a.slim_from:
        label, _, folder = item.partition("=")
        extra[label] = Path(folder)
    result = merge(a.reports, extra, a.dataset)
    E.write_report(result, a.out)
    for row in result["bd"]:
        print(f"BD-rate vs {row['anchor']}: {E._pct(row['bd_rate_psnr'])} (PSNR), "
              f"{E._pct(row['bd_rate_msssim'])} (MS-SSIM)")


if __name__ == "__main__":
    main()
