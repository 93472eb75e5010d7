"""Whole-process speed of `slim encode` / `slim decode` against avifenc, cwebp and cjxl.

Every command runs as a fresh process, as a user runs it (interpreter start, imports,
weights, reading and writing files included), on the same images in the same run,
interleaved round by round so that a drifting machine moves all of them alike. Prints
median wall and CPU seconds and peak memory per command, and each ratio slim / peer.

    .venv/bin/python benchmarks/cli_speed.py                       # kodim01 and a 24 MP image
    .venv/bin/python benchmarks/cli_speed.py --sizes kodak --runs 9 --threads 1
    .venv/bin/python benchmarks/cli_speed.py --markdown docs/results/cli-speed.md
    .venv/bin/python benchmarks/cli_speed.py --sizes sample --runs 1 --peers none   # CI's smoke test

Peers are Debian's `webp`, `libavif-bin` and `libjxl-tools` (cwebp -q 75 / dwebp,
avifenc / avifdec at their default speed and quality, cjxl -d 1 / djxl); a missing one
is skipped. slim runs from the same installation as this Python (`bin/slim` beside it).
Peak memory comes from GNU time (`/usr/bin/time`, Debian's `time`).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KODAK = ROOT.parent / "shared" / "data" / "kodak"
SAMPLE = ROOT / "samples" / "kodim23-crop.png"  # in the repository: the smoke test's image
GNU_TIME = "/usr/bin/time"
sys.path.insert(0, str(ROOT / "benchmarks"))


def measure(cmd: list[str]) -> tuple[float, float, float]:
    """(wall s, CPU s, peak MiB) of one run of ``cmd`` as its own process.

    The peak comes from GNU time (``/usr/bin/time -f %M``): a child's own ``ru_maxrss``
    would start at this (large) process's size, which it shares until ``exec``.
    """
    gnu_time = Path(GNU_TIME).exists()
    start = time.perf_counter()
    proc = subprocess.Popen([GNU_TIME, "-f", "%M", *cmd] if gnu_time else cmd, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)  # CPU of time and its child
    wall = time.perf_counter() - start
    err = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{err}")
    # without GNU time, the child's own maximum (an upper bound: it starts at this process's size)
    peak_kib = int(err.strip().splitlines()[-1]) if gnu_time else usage.ru_maxrss
    return wall, usage.ru_utime + usage.ru_stime, peak_kib / 1024


def codecs(slim: str, width: int, threads: int | None, peers: set[str] | None = None) -> dict[str, tuple]:
    """Per codec: (extension, encode argv(src, dst), decode argv(src, dst)); only those installed
    (and among ``peers`` when given)."""
    t = [] if threads is None else ["--threads", str(threads)]
    table = {
        f"slim w{width}": (".slim", lambda s, d: [slim, "encode", s, "-o", d, "-w", str(width), "--force", *t],
                           lambda s, d: [slim, "decode", s, "-o", d, "--force", *t]),
        "avif": (".avif", lambda s, d: ["avifenc", *(["-j", str(threads)] if threads else []), s, d],
                 lambda s, d: ["avifdec", *(["-j", str(threads)] if threads else []), s, d]),
        "webp": (".webp", lambda s, d: ["cwebp", "-quiet", "-q", "75", s, "-o", d],
                 lambda s, d: ["dwebp", "-quiet", s, "-o", d]),
        "jxl": (".jxl", lambda s, d: ["cjxl", "--quiet", *([f"--num_threads={threads}"] if threads else []), s, d],
                lambda s, d: ["djxl", "--quiet", *([f"--num_threads={threads}"] if threads else []), s, d]),
    }
    tools = {"avif": "avifenc", "webp": "cwebp", "jxl": "cjxl"}
    return {k: v for k, v in table.items()
            if k not in tools or (shutil.which(tools[k]) and (peers is None or k in peers))}


def images(sizes: list[str], tmp: Path) -> list[tuple[str, Path]]:
    out = []
    for size in sizes:
        if size == "kodak":
            out.append(("kodim01 (768×512)", KODAK / "kodim01.png"))
        elif size == "sample":
            from PIL import Image

            with Image.open(SAMPLE) as im:
                out.append((f"sample ({im.width}×{im.height})", SAMPLE))
        else:
            from memory import make_image

            path = tmp / f"{size}.png"
            w, h = make_image(float(size.removesuffix("mp")), path)
            out.append((f"{size.upper()} ({w}×{h})", path))
    return out


def run(sizes: list[str], runs: int, width: int, threads: int | None, pin: str | None,
        peers: set[str] | None = None) -> list[dict]:
    slim = str(Path(sys.executable).with_name("slim"))
    prefix = ["taskset", "-c", pin] if pin else []
    rows = []
    with tempfile.TemporaryDirectory(prefix="slim-cli-speed-") as tmp_name:
        tmp = Path(tmp_name)
        for label, src in images(sizes, tmp):
            table = codecs(slim, width, threads, peers)
            times = {name: {"encode": [], "decode": []} for name in table}
            n = runs if "kodim" in label or "sample" in label else max(1, runs // 3)
            for round_ in range(n + 1):  # round 0 warms the caches and is not counted
                for name, (ext, enc, dec) in table.items():
                    coded, decoded = tmp / f"out{ext}", tmp / f"out{ext}.png"
                    commands = (("encode", enc(str(src), str(coded))), ("decode", dec(str(coded), str(decoded))))
                    for action, argv in commands:
                        result = measure(prefix + argv)
                        if round_:
                            times[name][action].append(result)
                    times[name]["bytes"] = coded.stat().st_size
                print(f"{label}: round {round_}/{n}", file=sys.stderr, flush=True)
            for name, t in times.items():
                row = {"image": label, "codec": name, "bytes": t["bytes"]}
                for action in ("encode", "decode"):
                    row[f"{action}_wall"] = statistics.median(r[0] for r in t[action])
                    row[f"{action}_cpu"] = statistics.median(r[1] for r in t[action])
                    row[f"{action}_mib"] = max(r[2] for r in t[action])
                rows.append(row)
    return rows


def markdown(rows: list[dict], header: str) -> str:
    lines = [header, "",
             "| image | codec | file | encode wall | encode CPU | decode wall | decode CPU | peak MiB enc / dec | "
             "slim / it: encode wall | decode wall |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for image in dict.fromkeys(r["image"] for r in rows):
        group = [r for r in rows if r["image"] == image]
        slim = next(r for r in group if r["codec"].startswith("slim"))
        for r in group:
            ratio = ("" if r is slim else
                     f"{slim['encode_wall'] / r['encode_wall']:.2f}× | {slim['decode_wall'] / r['decode_wall']:.2f}×")
            lines.append(f"| {image} | {r['codec']} | {r['bytes'] / 1000:.1f} kB | {r['encode_wall']:.3f} s | "
                         f"{r['encode_cpu']:.3f} s | {r['decode_wall']:.3f} s | {r['decode_cpu']:.3f} s | "
                         f"{r['encode_mib']:.0f} / {r['decode_mib']:.0f} | {ratio or '— | —'} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="kodak,24mp",
                        help="comma-separated: kodak, sample (the repository's crop), or NNmp [kodak,24mp]")
    parser.add_argument("--runs", type=int, default=7,
                        help="counted runs per command at Kodak size (a third over it) [7]")
    parser.add_argument("--width", type=int, default=192, help="slim's width [192]")
    parser.add_argument("--threads", type=int, help="threads for every codec [each one's default]")
    parser.add_argument("--pin", metavar="CPUS", help="run every command under taskset -c CPUS")
    parser.add_argument("--peers", default="all", help="comma-separated of avif, webp, jxl, or all, or none [all]")
    parser.add_argument("--markdown", type=Path, help="also write the table here")
    args = parser.parse_args(argv)
    peers = None if args.peers == "all" else set(args.peers.split(",")) - {"none"}
    rows = run(args.sizes.split(","), args.runs, args.width, args.threads, args.pin, peers)
    cpus = f"pinned to CPU {args.pin}" if args.pin else f"{len(os.sched_getaffinity(0))} CPUs"
    header = (f"Whole-process medians, {args.runs} runs at Kodak size ({max(1, args.runs // 3)} over it) after a "
              f"warm-up, {cpus}, threads: {args.threads or 'each codec default'}; load average at the end "
              f"{os.getloadavg()[0]:.2f}.")
    text = markdown(rows, header)
    print(text)
    if args.markdown:
        args.markdown.write_text(text)


if __name__ == "__main__":
    main()
