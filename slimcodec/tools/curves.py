"""Print validation curves (``--curve`` JSON lines of the trainer) as a Markdown table.

Usage::

    python -m slimcodec.tools.curves ~/ckpt/hyperprior-curve.jsonl ~/ckpt/factorized-curve.jsonl
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def read_curve(path: Path) -> list[dict]:
    """The validation records of one curve file, in step order."""
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return sorted(records, key=lambda r: r["step"])


def markdown_table(records: list[dict]) -> str:
    """One row per validation: the run, the step, then bpp and PSNR per width (widest first)."""
    widths = sorted({int(w) for r in records for w in r["points"]}, reverse=True)
    lines = ["| run | step | " + " | ".join(f"w{w}" for w in widths) + " |",
             "|---|---|" + "---|" * len(widths)]
    for r in records:
        cells = [f"{r['points'][str(w)]['bpp']:.3f} bpp {r['points'][str(w)]['psnr']:.2f} dB"
                 if str(w) in r["points"] else "" for w in widths]
        lines.append(f"| {r['arch']} | {r['step']:,} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    paths = [Path(p) for p in (sys.argv[1:] if argv is None else argv)]
    if not paths:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    print(markdown_table([r for p in paths for r in read_curve(p)]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
