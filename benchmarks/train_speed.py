"""Training speed on this machine: one optimizer step under each choice, side by side.

    python benchmarks/train_speed.py [--steps 4] [--batch-size 16] [--patch-size 128] [--threads 1,2]

Each configuration runs in this process after a warm-up step; the median step
time is printed with its ratio to the baseline (fp32, contiguous layout, all
widths, the first thread count). Random data: the cost of a step does not depend
on the pixels. Run it on an idle machine: any other load distorts the ratios.

The last lines time the data pipeline (random crops with flips from images held
in memory, as the trainer does) against one step, to show it is off the
critical path.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from slimcodec.models.factorized import PAPER_WIDTHS, SlimCAE
from slimcodec.tools.train import CropSampler, is_aux, rd_terms

# name, channels_last, bf16, widths, (batch, patch) or None for the command line's
CONFIGS = [
    ("fp32, contiguous, all 5 widths (baseline)", False, False, PAPER_WIDTHS, None),
    ("fp32, channels_last, all 5 widths", True, False, PAPER_WIDTHS, None),
    ("bf16 autocast, channels_last, all 5 widths", True, True, PAPER_WIDTHS, None),
    ("bf16 autocast, channels_last, 3 widths (192, 96, 48)", True, True, (192, 96, 48), None),
    ("fp32, channels_last, width 192 only", True, False, (192,), None),
    ("bf16 autocast, channels_last, all 5, 4 x 256² crops", True, True, PAPER_WIDTHS, (4, 256)),
    ("bf16 autocast, channels_last, all 5, 64 x 64² crops", True, True, PAPER_WIDTHS, (64, 64)),
]


def time_steps(channels_last: bool, bf16: bool, widths, steps: int, batch: int, patch: int) -> float:
    torch.manual_seed(0)
    model = SlimCAE(PAPER_WIDTHS)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    opt = torch.optim.Adam([p for n, p in model.named_parameters() if not is_aux(n)], lr=1e-4)
    x = torch.rand(batch, 3, patch, patch).contiguous(memory_format=fmt)
    times = []
    for i in range(steps + 1):
        t = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = sum(0.01 * 255**2 * m + b for m, b in (rd_terms(model, x, w, bf16) for w in widths))
        loss.backward()
        opt.step()
        if i:  # the first step is a warm-up
            times.append(time.perf_counter() - t)
    return statistics.median(times)


def time_crops(batch: int, patch: int, repeats: int = 50) -> float:
    """Median seconds to draw one batch of crops from 200 in-memory 256×256 images."""
    gen = torch.Generator().manual_seed(0)
    images = [torch.randint(0, 256, (3, 256, 256), dtype=torch.uint8, generator=gen) for _ in range(200)]
    sampler = CropSampler(images, patch, gen)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        sampler.batch(batch)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--patch-size", type=int, default=128)
    p.add_argument("--threads", default="0", help="comma-separated thread counts (0: torch's default)")
    args = p.parse_args(argv)
    base = None
    step = None
    for threads in [int(t) for t in args.threads.split(",")]:
        if threads:
            torch.set_num_threads(threads)
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch_size} x "
              f"{args.patch_size}² unless named, median of {args.steps} steps after a warm-up")
        for name, cl, bf16, widths, shape in CONFIGS:
            batch, patch = shape or (args.batch_size, args.patch_size)
            s = time_steps(cl, bf16, widths, args.steps, batch, patch)
            base = base or s
            if cl and bf16 and widths == PAPER_WIDTHS and shape is None:
                step = s
            print(f"  {name:55s} {s:6.2f} s/step  {1 / s:5.2f} steps/s  {base / s:5.2f}x baseline", flush=True)
    crops = time_crops(args.batch_size, args.patch_size)
    print(f"data: one batch of {args.batch_size} random {args.patch_size}² crops with flips takes "
          f"{1000 * crops:.2f} ms = {100 * crops / step:.2f} % of a bf16 all-width step")
    return 0


if __name__ == "__main__":
    sys.exit(main())
