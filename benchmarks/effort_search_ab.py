"""The effort search against the straight-through search it replaced, on Kodak crops.

    python benchmarks/effort_search_ab.py [--weights ID] [--images kodim04,kodim21] [--widths 192,96,48]

For each image (a 256² crop at (256, 128)) and width: the true objective ``λ·255²·MSE + bpp`` of
the analysis' latents, of :func:`slimcodec.effort.refine` at effort 9 (soft rounding, y and z),
and of the search before it (96 Adam steps on y only, straight-through rounding, step size 0.06
halved every 4 steps, z = h_a(y), the best point met kept). Prints the changes in percent.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

KODAK = Path(__file__).resolve().parents[2] / "shared" / "data" / "kodak"


def straight_through(model, x, y, width: int, lam: float, steps: int = 96) -> float:
    """The best true objective the straight-through search meets (its loss is exact)."""
    import torch

    var = torch.from_numpy(y.copy())[None].requires_grad_(True)
    optimizer = torch.optim.Adam([var], lr=0.06)
    best = float("inf")
    for i in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = 0.06 * 0.5 ** (i / 4)
        optimizer.zero_grad()
        x_hat, bits = model.latent_rd(var, width, 1.0, noisy_rate=False)
        loss = lam * torch.mean((x_hat - x) ** 2) + bits.sum() / (x.shape[2] * x.shape[3])
        best = min(best, float(loss.detach()))
        loss.backward()
        optimizer.step()
    return best


def objective(model, x, y, z, width: int, lam: float) -> float:
    """The true objective of latents ``y`` (and hyper-latents ``z``, or h_a(y) when None) on crop ``x``."""
    import torch

    from slimcodec import effort

    x_hat, bits = effort._exact_rd(model, torch.from_numpy(y)[None], width, 1.0,
                                   None if z is None else torch.from_numpy(z)[None])
    return float(lam * torch.mean((x_hat - x) ** 2) + bits.sum() / (x.shape[2] * x.shape[3]))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", help="shipped weights id [default: the default weights]")
    p.add_argument("--images", default="kodim04,kodim21")
    p.add_argument("--widths", default="192,96,48")
    a = p.parse_args(argv)

    import torch
    from PIL import Image

    from slimcodec import codec, effort
    from slimcodec.weights import load_weights, shipped_weights_path

    torch.set_num_threads(1)
    wts = load_weights(shipped_weights_path(bytes.fromhex(a.weights), "torch") if a.weights else None)
    model = effort.torch_model(wts)
    for param in model.parameters():
        param.requires_grad_(False)
    for name in a.images.split(","):
        with Image.open(KODAK / f"{name}.png") as im:
            rgb = np.asarray(im.convert("RGB"))[128:384, 256:512]
        x = torch.from_numpy(rgb.astype(np.float32) / 255).permute(2, 0, 1)[None]
        for width in (int(w) for w in a.widths.split(",")):
            lam = effort._lambda(wts, width) * 255**2
            y = codec.analyze(wts, rgb, width)

            start = objective(model, x, y, None, width, lam)
            new = objective(model, x, *effort.refine(wts, rgb, y, width, 1.0, 9), width, lam)
            old = min(start, straight_through(model, x, y, width, lam))
            print(f"{wts.weights_id.hex()} {name} w{width}: objective {start:.4f}; straight-through "
                  f"{100 * (old / start - 1):+.2f} %, soft rounding with z {100 * (new / start - 1):+.2f} %",
                  flush=True)


if __name__ == "__main__":
    main()
