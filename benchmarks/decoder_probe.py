"""Is the decoder what caps quality? Train the synthesis alone on fixed latents, with or without more capacity.

    python benchmarks/decoder_probe.py training/channel-state.pt --arm synthesis --steps 2000 --out a.jsonl
    python benchmarks/decoder_probe.py training/channel-state.pt --arm block --steps 2000 --out b.jsonl

Starts from a training state's EMA weights and freezes the encoder and the entropy model, so
every width's latents ŷ (and so its rate) stay exactly what the codec sends. Then it trains the
decoder on the mean squared error of 4×256² training crops at every width (Adam, a 50-step
warm-up):

- ``synthesis``: g_s and its IGDNs only (the control);
- ``block``: the same plus a residual block on ŷ before g_s (3×3 conv, ReLU, 3×3 conv started at
  zero; width-sliced like every kernel), i.e. more decoder capacity at 1/16 resolution, about
  11 % more decoder arithmetic at width 192.

Every 100 steps it prints the PSNR of each width on six eval2 crops of 256×384 and the training
PSNR. If the block arm climbs clearly above the control, a bigger decoder lifts the ceiling
without touching the bitstream's symbols (docs/training.md, "Eleventh session").
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("state", type=Path, help="a committed training state (training/*-state.pt)")
    p.add_argument("--arm", choices=("synthesis", "block"), required=True)
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--lr", type=float, default=1e-5, help="the synthesis's learning rate")
    p.add_argument("--block-lr", type=float, default=1e-4, help="the residual block's learning rate")
    p.add_argument("--out", type=Path, help="append each evaluation here (JSON lines)")
    a = p.parse_args(argv)

    import torch
    import torch.nn.functional as F
    from capacity_probe import ema_model, eval_crops, report
    from torch import nn

    from slimcodec.models.layers import SlimConv2d
    from slimcodec.tools.train import CropSampler, find_images, load_images

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = ema_model(a.state)
    model.eval()
    widths = model.widths
    n = widths[0]

    class ResidualBlock(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = SlimConv2d(n, n, 3, padding=1)
            self.outer = SlimConv2d(n, n, 3, padding=1)
            nn.init.zeros_(self.outer.weight)
            nn.init.zeros_(self.outer.bias)

        def forward(self, y: torch.Tensor) -> torch.Tensor:
            w = y.shape[1]
            return y + self.outer(F.relu(self.inner(y, w)), w)

    block = ResidualBlock() if a.arm == "block" else None

    def decode(y_hat: torch.Tensor, width: int) -> torch.Tensor:
        return model.synthesis(block(y_hat) if block is not None else y_hat, width)

    @torch.no_grad()
    def latents(x: torch.Tensor, width: int) -> torch.Tensor:
        return model.code_latents(model.analysis(x, width), width, noisy_rate=False)[0]

    x_val = eval_crops(DATA / "eval2")
    y_val = {w: latents(x_val, w) for w in widths}
    for p_ in model.parameters():
        p_.requires_grad_(False)
    synthesis = [p_ for name, p_ in model.named_parameters() if name.split(".")[0] in ("g_s", "igdn")]
    for p_ in synthesis:
        p_.requires_grad_(True)
    groups = [{"params": synthesis, "lr": a.lr, "base": a.lr}]
    if block is not None:
        groups.append({"params": list(block.parameters()), "lr": a.block_lr, "base": a.block_lr})
    optimizer = torch.optim.Adam(groups)
    sampler = CropSampler(load_images(find_images([str(DATA / "train")]), 256), 256,
                          torch.Generator().manual_seed(0))
    log = a.out.open("a") if a.out else None
    start, window = time.time(), []
    for step in range(a.steps + 1):
        if step % 100 == 0:
            with torch.no_grad():
                psnr = {str(w): float(10 * torch.log10(1 / ((decode(y_val[w], w).clamp(0, 1) - x_val) ** 2).mean()))
                        for w in widths}
            row = {"arm": a.arm, "step": step, "psnr": psnr,
                   "train_db": float(np.mean(window)) if window else None, "seconds": round(time.time() - start, 1)}
            report(row, log)
            window = []
        if step == a.steps:
            break
        x = sampler.batch(4)
        for group in optimizer.param_groups:
            group["lr"] = group["base"] * min(1.0, (step + 1) / 50)
        loss = torch.zeros(())
        for w in widths:
            loss = loss + ((decode(latents(x, w), w) - x) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        window.append(float(10 * torch.log10(len(widths) / loss.detach())))


if __name__ == "__main__":
    main()
