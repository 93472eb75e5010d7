"""How far the transforms can go without quantization: train g_a and g_s of one width on MSE alone.

    python benchmarks/capacity_probe.py training/channel-state.pt --width 192 --steps 1000 --lr 1e-5 \
        --out probe.jsonl

Starts from a training state's EMA weights, drops the rate and the quantization, and trains the
analysis and synthesis (and their GDNs) of one width on the mean squared error of 4×256² training
crops (Adam, a 50-step warm-up). Every 100 steps it prints, on six eval2 crops of 256×384, the PSNR
of ``g_s(g_a(x))`` (unquantized) and of ``g_s(round(g_a(x)))``. If the transforms had room, the
unquantized PSNR would climb quickly once the rate no longer holds it back (docs/training.md,
"Tenth session").
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def eval_crops(folder: Path, count: int = 6):
    import torch
    from PIL import Image

    crops = []
    for path in sorted(folder.glob("*.png"))[:count]:
        with Image.open(path) as im:
            rgb = np.asarray(im.convert("RGB"))[:256, :384]
        crops.append(torch.from_numpy(rgb.copy()).permute(2, 0, 1).float() / 255)
    return torch.stack(crops)


def report(row: dict, log) -> None:
    """Print an evaluation row as JSON, and append it to ``log`` (an open file) if given."""
    print(json.dumps(row), flush=True)
    if log:
        log.write(json.dumps(row) + "\n")
        log.flush()


def ema_model(state: Path):
    """The model of a committed training state, with its EMA weights (float32)."""
    import torch

    from slimcodec.models import ARCHITECTURES

    st = torch.load(state, map_location="cpu", weights_only=True)
    model = ARCHITECTURES[st["architecture"]](st["widths"], **st.get("config", {}))
    model.load_state_dict({**model.state_dict(), **{k: v.float() for k, v in st["ema"].items()}})
    return model


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("state", type=Path, help="a committed training state (training/*-state.pt)")
    p.add_argument("--width", type=int, default=192)
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--lr", type=float, default=1e-5)
    p.add_argument("--out", type=Path, help="append each evaluation here (JSON lines)")
    a = p.parse_args(argv)

    import torch

    from slimcodec.tools.train import TRANSFORMS, CropSampler, find_images, load_images

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = ema_model(a.state)
    x_val = eval_crops(DATA / "eval2")

    def psnr(x_hat) -> float:
        return float(10 * torch.log10(1 / ((x_hat.clamp(0, 1) - x_val) ** 2).mean()))

    params = [p for n, p in model.named_parameters() if n.split(".")[0] in TRANSFORMS]
    optimizer = torch.optim.Adam(params, lr=a.lr)
    sampler = CropSampler(load_images(find_images([str(DATA / "train")]), 256), 256,
                          torch.Generator().manual_seed(0))
    log = a.out.open("a") if a.out else None
    start, window = time.time(), []
    for step in range(a.steps + 1):
        if step % 100 == 0:
            with torch.no_grad():
                y = model.analysis(x_val, a.width)
                row = {"step": step, "unquantized_db": psnr(model.synthesis(y, a.width)),
                       "rounded_db": psnr(model.synthesis(torch.round(y), a.width)),
                       "train_db": float(np.mean(window)) if window else None, "seconds": time.time() - start}
            report(row, log)
            window = []
        if step == a.steps:
            break
        x = sampler.batch(4)
        for group in optimizer.param_groups:
            group["lr"] = a.lr * min(1.0, (step + 1) / 50)
        mse = ((model.synthesis(model.analysis(x, a.width), a.width) - x) ** 2).mean()
        optimizer.zero_grad()
        mse.backward()
        optimizer.step()
        window.append(float(10 * torch.log10(1 / mse.detach())))


if __name__ == "__main__":
    main()
