"""Regenerate docs/results.md: rate/quality on Kodak and eval2, BD-rates, plots, speed.

Run from the repository root (the data sets live in ../shared/data)::

    nice -n 19 .venv/bin/python benchmarks/make_results.py

That evaluates all 24 Kodak images and all 15 eval2 images at every width
against every peer, runs the speed/memory bench on a Kodak-size and a
12-megapixel image, and writes

- ``docs/results.md``: the tables, BD-rates, plot links, speed table and machine;
- ``docs/results/<dataset>/``: each data set's full report (points.csv,
  summary.csv, bd.csv, results.json, rd_psnr.png, rd_msssim.png, report.md);
- ``docs/results/bench.json``: the full bench result.

A quick preliminary version on a subset: ``--limit 4 --bench-sizes kodak``.
The subset is stated in the generated file.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
SCRIPT = ".venv/bin/python benchmarks/make_results.py"
COMMAND = f"nice -n 19 {SCRIPT}"  # the recommended way to run it


def _rel(path: Path, start: Path) -> str:
    try:
        return str(path.resolve().relative_to(start.resolve()))
    except ValueError:
        return str(path)


def headline(results: dict) -> list[str]:
    """One table: BD-rate (PSNR, cubic) of slimcodec against each peer, per data set."""
    anchors: dict[str, str] = {}
    for result in results.values():
        for row in result["bd"]:
            if not row["published"]:
                anchors.setdefault(row["anchor"], result["meta"]["codec_labels"].get(row["anchor"], row["anchor"]))
    if not anchors:
        return []
    names = list(results)
    lines = ["| BD-rate of slimcodec vs | " + " | ".join(f"{n} (PSNR) | {n} (MS-SSIM)" for n in names) + " |",
             "|---|" + "---:|---:|" * len(names)]
    for anchor, label in anchors.items():
        cells = []
        for n in names:
            row = next((r for r in results[n]["bd"] if r["anchor"] == anchor), None)
            for key in ("bd_rate_psnr", "bd_rate_msssim"):
                value = None if row is None else row[key]
                cells.append("n/o" if value is None else f"{value:+.1f} %")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines + ["", "Negative: slimcodec needs fewer bits for the same quality. n/o: the curves do not "
                        "overlap in quality, so no BD value exists without extrapolation.", ""]


def inline_links(markdown: str) -> str:
    """``markdown`` from docs/results/ with its relative links made to resolve from docs/."""
    return re.sub(r"\]\((?![a-z]+:|/|#)([^)]+)\)", r"](results/\1)", markdown)


EXTRA_SECTIONS = (
    ("Whole-process speed against peers", "cli-speed.md",
     "python benchmarks/cli_speed.py --sizes kodak,24mp --runs 3 --threads 1 --pin 1, then --threads 2, "
     "as below"),
    ("Encoder effort", "effort.md",
     "slim eval --effort 9 in two halves, benchmarks/merge_evals.py and benchmarks/effort_rd.py, as below"),
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kodak", default=str(DATA / "kodak"), help="Kodak folder (default ../shared/data/kodak)")
    parser.add_argument("--eval2", default=str(DATA / "eval2"), help="eval2 folder (default ../shared/data/eval2)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N images of each data set")
    parser.add_argument("--widths", default=None, help="widths, e.g. 192,96,48 (default: all)")
    parser.add_argument("--peers", default="all", help="peers (default: all)")
    parser.add_argument("--weights", default=None, help="weights file (default: the shipped one)")
    parser.add_argument("--eval-threads", type=int, default=1,
                        help="torch threads during evaluation (default 1: robust on a busy machine)")
    parser.add_argument("--bench-sizes", default="kodak,12mp", help="bench sizes (default kodak,12mp; 'none' skips)")
    parser.add_argument("--repeats", type=int, default=5, help="bench runs per setting (default 5)")
    parser.add_argument("--large-repeats", type=int, default=3, help="bench runs over 2 MP (default 3)")
    parser.add_argument("--bench-threads", type=int, default=None, help="torch threads in the bench (default: torch's)")
    parser.add_argument("--no-memory", action="store_true", help="bench without the peak-memory subprocesses")
    parser.add_argument("--docs", default=str(ROOT / "docs"), help="docs folder (default: docs/)")
    parser.add_argument("--reuse-eval", action="store_true",
                        help="reuse docs/results/<dataset>/results.json from an earlier run instead of evaluating")
    parser.add_argument("--reuse-bench", action="store_true",
                        help="reuse docs/results/bench.json instead of benchmarking (speed and memory depend on "
                             "the architecture, not on the weights' values)")
    args = parser.parse_args(argv)

    import json

    import torch

    from slimcodec.tools import bench, evaluate
    from slimcodec.tools.machine import machine_description

    docs = Path(args.docs)
    out_root = docs / "results"
    widths = None if args.widths is None else [int(w) for w in args.widths.replace(",", " ").split()]
    default_threads = torch.get_num_threads()
    started = time.perf_counter()

    torch.set_num_threads(args.eval_threads)
    results = {}
    for name, folder, published in (("kodak", args.kodak, evaluate.PUBLISHED_KODAK), ("eval2", args.eval2, None)):
        if not Path(folder).is_dir():
            print(f"note: {folder} not found; {name} skipped", file=sys.stderr)
            continue
        print(f"== {name} ({folder})", file=sys.stderr)
        saved = out_root / name / "results.json"
        if args.reuse_eval and saved.exists():
            results[name] = json.loads(saved.read_text())
            continue
        results[name] = evaluate.run_eval(folder, widths, args.peers, out_root / name, args.weights,
                                          limit=args.limit, published=published)
    torch.set_num_threads(default_threads)

    bench_result = None
    saved_bench = out_root / "bench.json"
    sizes = [s for s in args.bench_sizes.split(",") if s.strip() and s.strip() != "none"]
    if args.reuse_bench and saved_bench.exists():
        bench_result = json.loads(saved_bench.read_text())
    elif sizes:
        print("== bench", file=sys.stderr)
        bench_result = bench.run_bench(args.weights, widths, sizes, bench.DEFAULT_SOURCE, args.repeats,
                                       args.large_repeats, args.peers, memory=not args.no_memory,
                                       threads=args.bench_threads)
        out_root.mkdir(parents=True, exist_ok=True)
        saved_bench.write_text(json.dumps(bench_result, indent=1) + "\n")

    any_result = next(iter(results.values()), None)
    meta = any_result["meta"] if any_result else (bench_result or {}).get("meta", {})
    machine = meta.get("machine", machine_description())
    versions = meta.get("versions", {})
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    subset = []
    for name, r in results.items():
        n_all = len(evaluate.list_images(r["meta"]["folder"]))
        subset.append(f"{name}: {r['meta']['num_images']} of {n_all} images"
                      + (f" ({', '.join(r['meta']['images'])})" if r["meta"]["num_images"] < n_all else ""))
    cmd = SCRIPT + "".join(f" {a}" for a in (sys.argv[1:] if argv is None else argv))
    lines = [
        "# slimcodec results",
        "",
        f"Generated {now} by `{cmd}` (see benchmarks/README.md). "
        f"Weights `{meta.get('weights_id', '?')}`, slimcodec {versions.get('slimcodec', '?')}. "
        f"Total run time {time.perf_counter() - started:.0f} s.",
        "",
    ]
    if any(r["meta"]["num_images"] < len(evaluate.list_images(r["meta"]["folder"])) for r in results.values()):
        lines += ["> **Preliminary: a subset only** — " + "; ".join(subset) + ". "
                  f"Regenerate with `{COMMAND}` for the full data sets.", ""]
    else:
        lines += ["Data: " + "; ".join(subset) + ".", ""]
    lines += [
        "## Method",
        "",
        "- Every image is coded for real and decoded back. bpp = 8 × file bytes / pixels; the .slim size "
        "includes its header and checksum (metadata off), peers' sizes are their whole files "
        "(JPEG 2000 as a raw .j2k codestream, HEVC inside HEIF).",
        "- PSNR and MS-SSIM (Wang et al. 2003, 5 scales) on 8-bit RGB; a data set's point is the mean bpp "
        "and the mean of the per-image values at one setting (width, quality, target).",
        "- BD-rate / BD-PSNR (Bjøntegaard, cubic fit in log-rate over the overlapping interval; PCHIP variant "
        "alongside) of slimcodec's mean curve against each peer's, using the peer points that bracket "
        "slimcodec's quality range. MS-SSIM BD-rates use MS-SSIM in dB.",
        "- Peers (Pillow in memory): " + "; ".join(
            f"{p['label']} ({p['knob']} {', '.join(str(s) for s in p['settings'])})"
            for p in (any_result["meta"]["peers"].values() if any_result else [])) + ".",
        "",
        "## Machine",
        "",
        f"- CPU: {machine.get('cpu')} ({machine.get('cores')} cores visible; SIMD: "
        f"{', '.join(machine.get('simd', [])) or 'n/a'}), {machine.get('memory_gib')} GiB RAM, "
        f"{machine.get('system')}.",
        "- Libraries: " + ", ".join(f"{k} {v}" for k, v in versions.items() if k not in ("torch_threads",)) + ".",
        f"- Evaluation ran with {args.eval_threads} torch thread(s); the bench with "
        f"{bench_result['meta']['torch_threads'] if bench_result else '–'} "
        f"({bench_result['meta']['threads_note'] if bench_result else 'not run'}).",
        "",
    ]
    if results:
        lines += ["## BD-rates at a glance", ""] + headline(results)
    for name, result in results.items():
        prefix = _rel(out_root / name, docs) + "/"
        lines += [evaluate.format_markdown(result, plot_prefix=prefix, heading="##"), ""]
        lines += [f"Full data: [{prefix}points.csv]({prefix}points.csv), "
                  f"[{prefix}results.json]({prefix}results.json).", ""]
    if "kodak" in results:
        lines += ["### Published Kodak curves (for orientation, not measured here)", "",
                  "PSNR (dB) at 0.25 / 0.5 / 1.0 bpp from CompressAI's published results (DESIGN.md §5).", "",
                  "| codec | 0.25 | 0.5 | 1.0 |", "|---|---:|---:|---:|"]
        for label, values in evaluate.PUBLISHED_KODAK.items():
            lines.append(f"| {label.replace(' (published)', '')} | " + " | ".join(f"{v:.2f}" for v in values) + " |")
        lines.append("")
    if bench_result:
        lines += ["## Speed and memory", ""]
        if bench_result["meta"].get("weights_id") != meta.get("weights_id"):
            lines += [f"Measured with weights `{bench_result['meta'].get('weights_id', '?')}` (reused with "
                      "`--reuse-bench`: the architecture, not the weights' values, sets speed and memory).", ""]
        lines += [bench.format_markdown(bench_result), ""]
        lines += ["Full data: [results/bench.json](results/bench.json).", ""]
    for title, name, command in EXTRA_SECTIONS:  # measured by their own scripts; kept as they are
        if (docs / "results" / name).exists():
            text = inline_links((docs / "results" / name).read_text().strip())
            lines += [f"## {title}", "", f"Made by `{command}`.", "", text, ""]
    docs.mkdir(parents=True, exist_ok=True)
    (docs / "results.md").write_text("\n".join(lines).rstrip() + "\n")
    print(f"wrote {docs / 'results.md'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
