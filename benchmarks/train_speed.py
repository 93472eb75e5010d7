"""Training speed on this machine: one optimizer step under each choice, side by side.

    python benchmarks/train_speed.py [--steps 4] [--batch-size 16] [--patch-size 128]

Each configuration runs in this process after a warm-up step; the median step
time is printed with its ratio to the baseline (fp32, contiguous layout, all
widths). Random data: the cost of a step does not depend on the pixels.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from slimcodec.model import PAPER_WIDTHS, SlimCAE
from slimcodec.train import split_parameters, rd_terms

CONFIGS = [
    # name, channels_last, bf16, widths
    ("fp32, contiguous, all 5 widths (baseline)", False, False, PAPER_WIDTHS),
    ("fp32, channels_last, all 5 widths", True, False, PAPER_WIDTHS),
    ("bf16 autocast, channels_last, all 5 widths", True, True, PAPER_WIDTHS),
    ("bf16 autocast, channels_last, 3 widths (192, 96, 48)", True, True, (192, 96, 48)),
    ("fp32, channels_last, width 192 only", True, False, (192,)),
]


def time_steps(channels_last: bool, bf16: bool, widths, steps: int, batch: int, patch: int) -> float:
    torch.manual_seed(0)
    model = SlimCAE(PAPER_WIDTHS)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    opt = torch.optim.Adam(split_parameters(model)[0], lr=1e-4)
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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--patch-size", type=int, default=128)
    p.add_argument("--threads", type=int, default=0)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch_size} x "
          f"{args.patch_size}², median of {args.steps} steps after a warm-up")
    base = None
    for name, cl, bf16, widths in CONFIGS:
        s = time_steps(cl, bf16, widths, args.steps, args.batch_size, args.patch_size)
        base = base or s
        print(f"{name:55s} {s:6.2f} s/step  {1 / s:5.2f} steps/s  {base / s:5.2f}x baseline")
    return 0


if __name__ == "__main__":
    sys.exit(main())
