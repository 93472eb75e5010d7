"""Print training curves as Markdown tables: validations, A/B differences, update ratios.

Usage::

    python -m slimcodec.tools.curves training/hyperprior-curve.jsonl [more-curve.jsonl ...]
    python -m slimcodec.tools.curves --diff control-curve.jsonl arm-curve.jsonl
    python -m slimcodec.tools.curves --diag arm-diag.jsonl [--every 500]

With several files each row is labelled by its file (``arm-curve.jsonl`` → ``arm``); ``--diff``
prints, at every step both curves validated, the second's rate change (%) and PSNR change (dB)
per width against the first; ``--diag`` averages the trainer's ``--diag`` records (per-module
gradient norm before clipping and update-to-weight ratio of one step) over windows of steps.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def read_curve(path: Path) -> list[dict]:
    """The records of one JSON-lines file, in step order."""
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return sorted(records, key=lambda r: r["step"])


def run_label(path: Path) -> str:
    """A run's name from its file: ``ab/fp32-curve.jsonl`` → ``fp32``."""
    return path.name.removesuffix(".jsonl").removesuffix("-curve")


def _widths(records: list[dict]) -> list[int]:
    return sorted({int(w) for r in records for w in r["points"]}, reverse=True)


def markdown_table(records: list[dict]) -> str:
    """One row per validation: the run, the step, then bpp and PSNR per width (widest first)."""
    widths = _widths(records)
    lines = ["| run | step | " + " | ".join(f"w{w}" for w in widths) + " |",
             "|---|---|" + "---|" * len(widths)]
    for r in records:
        cells = [f"{r['points'][str(w)]['bpp']:.3f} bpp {r['points'][str(w)]['psnr']:.2f} dB"
                 if str(w) in r["points"] else "" for w in widths]
        lines.append(f"| {r.get('run', r['arch'])} | {r['step']:,} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def diff_table(control: list[dict], arm: list[dict]) -> str:
    """At each step validated in both runs: the arm's bpp change (%) and PSNR change (dB) per width."""
    by_step = {r["step"]: r for r in control}
    widths = _widths(control + arm)
    lines = ["| step | " + " | ".join(f"w{w}" for w in widths) + " |", "|---|" + "---|" * len(widths)]
    for r in arm:
        c = by_step.get(r["step"])
        if c is None:
            continue
        cells = []
        for w in map(str, widths):
            a, b = c["points"].get(w), r["points"].get(w)
            cells.append(f"{100 * (b['bpp'] / a['bpp'] - 1):+.1f} % {b['psnr'] - a['psnr']:+.2f} dB" if a and b else "")
        lines.append(f"| {r['step']:,} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def diag_table(records: list[dict], every: int) -> str:
    """Per-module means of gradient norm and update ratio over windows of ``every`` steps."""
    windows: dict[int, list[dict]] = {}
    for r in records:
        windows.setdefault((r["step"] - 1) // every * every, []).append(r)
    modules = [m for m in records[0]["modules"] if not m.startswith("entropy_bottleneck")] if records else []
    lines = ["| steps | loss | grad norm | " + " | ".join(modules) + " |", "|---|---|---|" + "---|" * len(modules)]
    for start, rs in sorted(windows.items()):
        n = len(rs)
        cells = [f"{sum(r['modules'][m]['grad'] for r in rs) / n:.2f} / "
                 f"{sum(r['modules'][m]['update_ratio'] for r in rs) / n:.1e}" for m in modules]
        lines.append(f"| {start + 1:,}–{rs[-1]['step']:,} | {sum(r['loss'] for r in rs) / n:.3f} | "
                     f"{sum(r['grad_norm'] for r in rs) / n:.1f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m slimcodec.tools.curves", description=__doc__.split("\n\n")[0])
    p.add_argument("files", nargs="+", type=Path)
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--diff", action="store_true", help="two curves: the second against the first")
    mode.add_argument("--diag", action="store_true", help="trainer --diag records: per-module means")
    p.add_argument("--every", type=int, default=500, help="steps per --diag window")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    if args.diff:
        if len(args.files) != 2:
            p.error("--diff compares exactly two curves")
        print(diff_table(read_curve(args.files[0]), read_curve(args.files[1])))
    elif args.diag:
        print(diag_table([r for f in args.files for r in read_curve(f)], args.every))
    else:
        records = []
        for f in args.files:
            records += [{**r, "run": run_label(f)} if len(args.files) > 1 else r for r in read_curve(f)]
        print(markdown_table(records))
    return 0


if __name__ == "__main__":
    sys.exit(main())
