"""Peak memory and time of encoding and decoding large images.

For each size, a photo-like test image (a Kodak picture resized to that many
megapixels) is written as PNG; then one fresh Python process encodes it to
.slim and another decodes that back to PNG, each exactly as ``slim encode`` /
``slim decode`` would (open, convert, code, write). Each process reports its
peak resident memory (``ru_maxrss``), its memory after importing the runtime and
loading the weights (``base``), and the time of the work itself.

    nice -n 19 .venv/bin/python benchmarks/memory.py                 # 1, 4, 12, 24 MP at width 192
    nice -n 19 .venv/bin/python benchmarks/memory.py --sizes 1 4 --width 96

The target: under 4 GiB peak at 24 MP with the shipped weights at width 192.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KODAK = ROOT.parent / "shared" / "data" / "kodak"
TARGET_GIB = 4.0


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def child(action: str, src: str, dst: str, width: int, weights: str | None, threads: int | None) -> None:
    """Run one encode or decode in this (fresh) process and print a JSON line."""
    from slimcodec import codec, runtime

    runtime.set_threads(threads)
    from slimcodec.imageio import open_image, prepare, save_image
    from slimcodec.weights import load_weights

    wts = load_weights(weights)
    base = _rss_mib()
    start = time.perf_counter()
    if action == "encode":
        with open_image(src) as image:
            pixels = prepare(image)
        data = codec.encode_pixels(pixels, width, weights=wts)
        del pixels
        Path(dst).write_bytes(data)
    else:
        image = codec.decode(Path(src).read_bytes(), weights=wts)
        save_image(image, dst)
    seconds = time.perf_counter() - start
    print(json.dumps({"base_mib": base, "peak_mib": _peak_mib(), "seconds": seconds}))


def make_image(megapixels: float, path: Path) -> tuple[int, int]:
    """A 3:2 photo-like PNG of about ``megapixels`` (Kodak 23, resized), seeded grain added."""
    import numpy as np
    from PIL import Image

    height = int(round(math.sqrt(megapixels * 1e6 / 1.5)))
    width = int(round(height * 1.5))
    source = KODAK / "kodim23.png"
    if source.exists():
        with Image.open(source) as im:
            image = im.convert("RGB").resize((width, height), Image.BICUBIC)
    else:  # no data folder: a smooth synthetic picture
        yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
        image = Image.fromarray(np.stack([xx * 255 / width, yy * 255 / height,
                                          (xx + yy) % 256], axis=2).astype(np.uint8), "RGB")
    rows = []  # a little grain so that the upscaled picture is not unnaturally smooth
    rng = np.random.default_rng(0)
    arr = np.asarray(image)
    for top in range(0, height, 1024):
        block = arr[top:top + 1024].astype(np.int16) + rng.integers(-2, 3, arr[top:top + 1024].shape, dtype=np.int16)
        rows.append(np.clip(block, 0, 255).astype(np.uint8))
    Image.fromarray(np.concatenate(rows), "RGB").save(path, compress_level=1)
    return width, height


def run_child(action: str, src: Path, dst: Path, args) -> dict:
    cmd = [sys.executable, __file__, "--child", action, str(src), str(dst), "--width", str(args.width)]
    if args.weights:
        cmd += ["--weights", args.weights]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{action} of {src.name} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=float, nargs="+", default=[1, 4, 12, 24], help="megapixels")
    parser.add_argument("--width", type=int, default=192, help="network width [192]")
    parser.add_argument("--weights", help="weights file [shipped]")
    parser.add_argument("--threads", type=int, help="runtime threads [one per core]")
    parser.add_argument("--child", nargs=3, metavar=("ACTION", "SRC", "DST"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(*args.child, args.width, args.weights, args.threads)
        return

    rows = []
    with tempfile.TemporaryDirectory(prefix="slim-memory-") as tmp:
        for mp in args.sizes:
            png, slim, out = (Path(tmp) / f"{mp:g}mp{ext}" for ext in (".png", ".slim", ".out.png"))
            w, h = make_image(mp, png)
            enc = run_child("encode", png, slim, args)
            dec = run_child("decode", slim, out, args)
            rows.append((mp, w, h, enc, dec, slim.stat().st_size))
            for p in (png, slim, out):
                p.unlink()
            print(f"  {w}x{h}: encode {enc['peak_mib']:.0f} MiB {enc['seconds']:.1f} s, "
                  f"decode {dec['peak_mib']:.0f} MiB {dec['seconds']:.1f} s", file=sys.stderr, flush=True)

    first = rows[0]
    print(f"width {args.width}, weights {args.weights or 'shipped'}; peak RSS of a fresh process "
          f"(base = after importing the runtime and loading the weights); ratio vs the {first[0]:g} MP case")
    head = (f"{'MP':>5} {'size':>11} {'bpp':>6} | {'enc peak':>9} {'base':>5} {'ratio':>5} {'time':>7} | "
            f"{'dec peak':>9} {'base':>5} {'ratio':>5} {'time':>7}")
    print(head)
    print("-" * len(head))
    for _mp, w, h, enc, dec, size in rows:
        print(f"{w * h / 1e6:5.1f} {f'{w}x{h}':>11} {8 * size / (w * h):6.3f} | "
              f"{enc['peak_mib']:6.0f} MiB {enc['base_mib']:5.0f} {enc['peak_mib'] / first[3]['peak_mib']:5.2f} "
              f"{enc['seconds']:6.1f}s | "
              f"{dec['peak_mib']:6.0f} MiB {dec['base_mib']:5.0f} {dec['peak_mib'] / first[4]['peak_mib']:5.2f} "
              f"{dec['seconds']:6.1f}s")
    worst = max(max(r[3]["peak_mib"], r[4]["peak_mib"]) for r in rows) / 1024
    verdict = "within" if worst < TARGET_GIB else "OVER"
    print(f"largest peak {worst:.2f} GiB: {verdict} the {TARGET_GIB:g} GiB target")


if __name__ == "__main__":
    main()
