"""Train SlimCAE: all widths jointly, each with its own rate-distortion λ.

The loss of one step is ``Σ_w λ_w · 255² · MSE_w + bpp_w`` (pixels in [0, 1]),
plus each entropy bottleneck's auxiliary quantile loss on its own optimizer,
as in the paper's code and CompressAI. Runs on CPU (channels_last, optional
bf16 autocast for the transforms) and CUDA from the same code; checkpoints
hold everything needed to resume exactly; ``--init`` warm-starts from a
weights file (the shipped one by default when no checkpoint exists).

Usage::

    python -m slimcodec.train --data ../shared/data/train --checkpoint runs/ckpt.pt \
        --time-limit-min 150 --export runs/new.pt

Without ``--steps`` it trains until the time limit (or SIGTERM, or Ctrl-C), then
checkpoints and exports.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import signal
import sys
import time
from pathlib import Path

import numpy as np
import torch

from slimcodec.model import PAPER_WIDTHS, SlimCAE
# imported now, not at export: a long run must not pick up source files edited meanwhile
from slimcodec.weights import load_weights, save_weights

# λ of the paper's code (2048 … 128 on MSE of [0, 1] pixels) in CompressAI's
# λ·255²·MSE convention.
PAPER_LAMBDAS: dict[int, float] = {
    w: lam / 255**2 for w, lam in zip(PAPER_WIDTHS, (2048, 1024, 512, 256, 128))
}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}


def find_images(folders: list[str]) -> list[Path]:
    """All image files under ``folders``, sorted for reproducibility."""
    paths: list[Path] = []
    for folder in folders:
        paths += [p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES]
    return sorted(paths)


def load_images(paths: list[Path], min_side: int) -> list[torch.Tensor]:
    """Decode every image once into uint8 ``3×H×W`` tensors (skipping small ones)."""
    from PIL import Image

    images = []
    for p in paths:
        with Image.open(p) as im:
            arr = np.asarray(im.convert("RGB"))
        if min(arr.shape[:2]) >= min_side:
            images.append(torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous())
    return images


class CropSampler:
    """Random ``patch×patch`` crops with random flips from in-memory images."""

    def __init__(self, images: list[torch.Tensor], patch: int, generator: torch.Generator):
        if not images:
            raise ValueError("no training images at least as large as the patch size")
        self.images, self.patch, self.gen = images, patch, generator

    def batch(self, size: int) -> torch.Tensor:
        idx = torch.randint(len(self.images), (size,), generator=self.gen).tolist()
        crops = []
        for i in idx:
            img = self.images[i]
            _, h, w = img.shape
            top = int(torch.randint(h - self.patch + 1, (1,), generator=self.gen))
            left = int(torch.randint(w - self.patch + 1, (1,), generator=self.gen))
            crop = img[:, top : top + self.patch, left : left + self.patch]
            if torch.rand(1, generator=self.gen) < 0.5:
                crop = crop.flip(2)
            crops.append(crop)
        return torch.stack(crops).float().div_(255.0)


def split_parameters(model: SlimCAE):
    """Main parameters and the bottlenecks' quantiles (trained by the auxiliary loss)."""
    main = [p for n, p in model.named_parameters() if not n.endswith(".quantiles")]
    aux = [p for n, p in model.named_parameters() if n.endswith(".quantiles")]
    return main, aux


def main_param_groups(model: SlimCAE, eb_lr_mult: float) -> list[dict]:
    """Optimizer groups: the transforms, then the bottlenecks' densities at ``eb_lr_mult``× the lr.

    The densities learning faster lowers the rate markedly early in training
    (docs/training.md). The groups keep ``split_parameters``' order (the
    bottlenecks come last), so a one-group optimizer state maps onto them.
    """
    named = [(n, p) for n, p in model.named_parameters() if not n.endswith(".quantiles")]
    transforms = [p for n, p in named if not n.startswith("entropy_bottleneck.")]
    densities = [p for n, p in named if n.startswith("entropy_bottleneck.")]
    if transforms + densities != split_parameters(model)[0]:
        raise RuntimeError("parameter order changed: optimizer states would not map")
    return [{"params": transforms, "lr_mult": 1.0}, {"params": densities, "lr_mult": eb_lr_mult}]


def rd_terms(model: SlimCAE, x: torch.Tensor, width: int, bf16: bool):
    """MSE (on [0, 1] pixels) and estimated bpp of one width on batch ``x``."""
    with torch.autocast(device_type=x.device.type, dtype=torch.bfloat16, enabled=bf16):
        out = model(x, width)
    n, _, h, w = x.shape
    mse = torch.mean((out["x_hat"].float() - x) ** 2)
    bpp = torch.log(out["likelihoods"]["y"]).sum() / (-math.log(2) * n * h * w)
    return mse, bpp


@torch.no_grad()
def validate(model: SlimCAE, images: list[torch.Tensor], device: torch.device) -> dict[int, tuple[float, float]]:
    """Estimated bpp and mean PSNR per width on whole images (cropped to multiples of 16)."""
    model.eval()
    results = {}
    for width in model.widths:
        bpps, psnrs = [], []
        for img in images:
            h, w = img.shape[1] // 16 * 16, img.shape[2] // 16 * 16
            x = img[None, :, :h, :w].float().div(255).to(device)
            x = x.contiguous(memory_format=torch.channels_last)
            mse, bpp = rd_terms(model, x, width, bf16=False)
            bpps.append(float(bpp))
            psnrs.append(10 * math.log10(1 / max(float(mse), 1e-10)))
        results[width] = (float(np.mean(bpps)), float(np.mean(psnrs)))
    model.train()
    return results


def settle_quantiles(model: SlimCAE, max_steps: int = 6000, lr: float = 0.1, tol: float = 1e-2) -> float:
    """Fit the bottlenecks' quantiles (the auxiliary loss alone) before building tables.

    The auxiliary loss needs no images, so this is cheap; it makes the
    medians (quantization offsets) and table supports match the trained
    densities even after a short training run.

    Returns:
        float: the final auxiliary loss.
    """
    quantiles = split_parameters(model)[1]
    opt = torch.optim.Adam(quantiles, lr=lr)
    for step in range(max_steps):
        opt.zero_grad(set_to_none=True)
        loss = model.aux_loss()
        if float(loss.detach()) < tol * len(quantiles):
            break
        loss.backward()
        opt.step()
        if step and step % (max_steps // 3) == 0:  # 0.1, 0.01, 0.001
            for g in opt.param_groups:
                g["lr"] /= 10
    return float(model.aux_loss().detach())


def save_checkpoint(path: Path, state: dict) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m slimcodec.train", description=__doc__.split("\n")[0])
    p.add_argument("--data", nargs="+", default=["../shared/data/train"], help="training image folders")
    p.add_argument("--val", default="../shared/data/eval2", help="validation folder ('' to skip); never Kodak")
    p.add_argument("--checkpoint", type=Path, default=Path("runs/checkpoint.pt"))
    p.add_argument("--init", default="shipped", help="weights file to warm-start from when no checkpoint exists: a path, 'shipped' or 'none'")
    p.add_argument("--export", type=Path, help="write a weights file here when training ends")
    p.add_argument("--widths", type=int, nargs="+", default=list(PAPER_WIDTHS))
    p.add_argument("--lambdas", type=float, nargs="+", help="λ per width (CompressAI scale); default: the paper's")
    p.add_argument("--schedule", choices=["fixed", "paper"], default="fixed",
                   help="fixed: the given λ throughout; paper: λ-scheduling (stage 1 one λ, stage 2 per-pair slope search)")
    p.add_argument("--stage1-lambda", type=float, default=4000 / 255**2, help="the one λ of stage 1 (paper: 4000 on [0,1] MSE)")
    p.add_argument("--stage1-steps", type=int, default=5000, help="stage-1 steps before the slope search")
    p.add_argument("--trial-steps", type=int, default=500, help="steps trained after each λ reduction")
    p.add_argument("--max-reductions", type=int, default=7)
    p.add_argument("--steps", type=int, default=0,
                   help="train until this global step (0: until --time-limit-min or SIGTERM)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--patch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--lr-drop-step", type=int, default=0, help="multiply lr by 0.25 from this step (0: never)")
    p.add_argument("--eb-lr-mult", type=float, default=10.0, help="lr multiplier of the entropy bottlenecks' densities")
    p.add_argument("--aux-lr", type=float, default=1e-3)
    p.add_argument("--clip", type=float, default=1.0, help="gradient norm clip (0: off)")
    p.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None, help="bf16 autocast for the transforms (default: on for CPU)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--log-every", type=int, default=50)
    p.add_argument("--checkpoint-every", type=int, default=250)
    p.add_argument("--val-every", type=int, default=1000)
    p.add_argument("--time-limit-min", type=float, default=0, help="stop (checkpoint, export) after this many minutes")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


class Trainer:
    """Model, optimizers, λ and counters, with exact checkpoint/resume."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.device = torch.device(args.device)
        self.bf16 = (self.device.type == "cpu") if args.bf16 is None else args.bf16
        self.gen = torch.Generator().manual_seed(args.seed)
        ckpt = None
        init_meta: dict = {}  # a warm start continues the weights' step count and λ
        if args.checkpoint.exists():
            ckpt = torch.load(args.checkpoint, map_location=self.device, weights_only=True)
            model = SlimCAE.from_state_dict(ckpt["model"])
            print(f"resuming from {args.checkpoint} at step {ckpt['step']}", flush=True)
        elif args.init == "none":
            torch.manual_seed(args.seed)
            model = SlimCAE(args.widths)
        else:
            init = load_weights(None if args.init == "shipped" else args.init)
            model, init_meta = init.model, init.meta
            model.restore_constants()
            print(f"warm start from {args.init} weights {init.weights_id.hex()} "
                  f"(step {init_meta.get('steps', 0)})", flush=True)
        self.model = model.to(self.device).to(memory_format=torch.channels_last).train()
        self.main_params, aux = split_parameters(self.model)
        self.opt = torch.optim.Adam(main_param_groups(self.model, args.eb_lr_mult), lr=args.lr)
        self.aux_opt = torch.optim.Adam(aux, lr=args.aux_lr)
        if args.lambdas:
            self.lambdas = dict(zip(self.model.widths, args.lambdas))
        elif args.schedule == "paper":
            self.lambdas = {w: args.stage1_lambda for w in self.model.widths}
        elif "lambdas" in init_meta:
            self.lambdas = {int(w): float(v) for w, v in init_meta["lambdas"].items()}
        else:
            self.lambdas = {w: PAPER_LAMBDAS.get(w, 0.01) for w in self.model.widths}
        self.step = int(init_meta.get("steps", 0))
        self.schedule: dict = {"pair": 0, "reductions": 0, "best_slope": None}
        if ckpt is not None:
            self._load_optimizer(ckpt["optimizer"])
            self.aux_opt.load_state_dict(ckpt["aux_optimizer"])
            self.step = int(ckpt["step"])
            self.lambdas = {int(k): float(v) for k, v in ckpt["lambdas"].items()}
            self.schedule = dict(ckpt.get("schedule", self.schedule))
            self.gen.set_state(ckpt["sampler_rng"])
            torch.set_rng_state(ckpt["torch_rng"])
        self.sampler = CropSampler(load_images(find_images(args.data), args.patch_size), args.patch_size, self.gen)
        self.val_images = load_images(find_images([args.val]), 16) if args.val else []
        self.stop = False
        self.t0 = time.time()
        self._window = {w: [0.0, 0.0] for w in self.model.widths}
        self._window_t, self._window_n = time.time(), 0

    def _load_optimizer(self, saved: dict) -> None:
        """Load a saved optimizer state, also one saved with a single parameter group."""
        if len(saved["param_groups"]) != len(self.opt.param_groups):
            current = self.opt.state_dict()
            saved = {"state": saved["state"], "param_groups": current["param_groups"]}
        self.opt.load_state_dict(saved)
        for g in self.opt.param_groups:
            g.setdefault("lr_mult", 1.0)

    def state(self) -> dict:
        """Everything a resume needs, as plain tensors and values."""
        return {
            "model": self.model.state_dict_for_saving(), "optimizer": self.opt.state_dict(),
            "aux_optimizer": self.aux_opt.state_dict(), "step": self.step,
            "lambdas": {str(w): l for w, l in self.lambdas.items()}, "schedule": dict(self.schedule),
            "sampler_rng": self.gen.get_state(), "torch_rng": torch.get_rng_state(),
        }

    def load_state(self, state: dict) -> None:
        """Restore the model, optimizers and λ (used to undo a λ trial)."""
        self.model.load_state_dict(state["model"])
        self._load_optimizer(state["optimizer"])
        self.aux_opt.load_state_dict(state["aux_optimizer"])
        self.lambdas = {int(k): float(v) for k, v in state["lambdas"].items()}

    def checkpoint(self) -> None:
        self.args.checkpoint.parent.mkdir(parents=True, exist_ok=True)
        save_checkpoint(self.args.checkpoint, self.state())

    def out_of_time(self) -> bool:
        limit = self.args.time_limit_min
        return self.stop or bool(limit and time.time() - self.t0 > limit * 60)

    def train_step(self) -> None:
        """One joint step over all widths, then one auxiliary-loss step."""
        args = self.args
        lr = args.lr * (0.25 if args.lr_drop_step and self.step >= args.lr_drop_step else 1.0)
        for g in self.opt.param_groups:
            g["lr"] = lr * g["lr_mult"]
        x = self.sampler.batch(args.batch_size).to(self.device).contiguous(memory_format=torch.channels_last)
        self.opt.zero_grad(set_to_none=True)
        self.aux_opt.zero_grad(set_to_none=True)
        loss = 0.0
        terms = {}
        for width in self.model.widths:
            mse, bpp = rd_terms(self.model, x, width, self.bf16)
            loss = loss + self.lambdas[width] * 255**2 * mse + bpp
            terms[width] = (mse.item(), bpp.item())
        if not torch.isfinite(loss):
            print(f"step {self.step}: non-finite loss, batch skipped", flush=True)
            return
        loss.backward()
        if args.clip:
            torch.nn.utils.clip_grad_norm_(self.main_params, args.clip)
        self.opt.step()
        aux_loss = self.model.aux_loss()
        aux_loss.backward()
        self.aux_opt.step()
        self.step += 1
        self._log(float(loss.detach()), float(aux_loss.detach()), terms)

    def _log(self, loss: float, aux_loss: float, terms: dict) -> None:
        for w, (mse, bpp) in terms.items():
            self._window[w][0] += mse
            self._window[w][1] += bpp
        self._window_n += 1
        if self.step % self.args.log_every:
            return
        n = self._window_n
        rate = n / (time.time() - self._window_t)
        parts = [f"w{w}: {b / n:.3f}bpp {10 * math.log10(1 / max(m / n, 1e-10)):.2f}dB"
                 for w, (m, b) in self._window.items()]
        print(f"step {self.step} {rate:.2f} it/s loss {loss:.3f} aux {aux_loss:.1f} | " + " | ".join(parts), flush=True)
        self._window = {w: [0.0, 0.0] for w in self.model.widths}
        self._window_t, self._window_n = time.time(), 0

    def validate(self) -> dict[int, tuple[float, float]]:
        res = validate(self.model, self.val_images, self.device)
        print(f"val step {self.step} λ {({w: round(l, 5) for w, l in self.lambdas.items()})} | "
              + " | ".join(f"w{w}: {b:.3f}bpp {p:.2f}dB" for w, (b, p) in res.items()), flush=True)
        return res

    def train_until(self, step: int) -> None:
        """Train up to global ``step`` (or until time runs out), checkpointing on the way."""
        while (not step or self.step < step) and not self.out_of_time():
            self.train_step()
            if self.step % self.args.checkpoint_every == 0:
                self.checkpoint()
            if self.val_images and self.step % self.args.val_every == 0:
                self.validate()


def rd_slope(results: dict[int, tuple[float, float]], wide: int, narrow: int) -> float:
    """dB per bpp between two widths' validation points (higher is a better trade-off)."""
    (bpp_w, psnr_w), (bpp_n, psnr_n) = results[wide], results[narrow]
    return (psnr_w - psnr_n) / max(bpp_w - bpp_n, 1e-6)


def lambda_schedule(trainer: Trainer) -> None:
    """Stage 2 of the paper's λ-scheduling, resumable from the checkpoint.

    For each adjacent pair of widths, wide to narrow: multiply the λ of every
    narrower width by 0.8, train ``--trial-steps``, and keep the reduction
    while the pair's RD slope on the validation set improves (at most
    ``--max-reductions`` times); a reduction that does not improve is undone.
    """
    args, widths, sched = trainer.args, trainer.model.widths, trainer.schedule
    if not trainer.val_images:
        raise SystemExit("λ-scheduling needs validation images (--val)")
    while sched["pair"] < len(widths) - 1 and not trainer.out_of_time():
        wide, narrow = widths[sched["pair"]], widths[sched["pair"] + 1]
        if sched["best_slope"] is None:
            sched["best_slope"] = rd_slope(trainer.validate(), wide, narrow)
        if sched["reductions"] >= args.max_reductions:
            sched.update(pair=sched["pair"] + 1, reductions=0, best_slope=None)
            continue
        saved = trainer.state()
        for w in widths[sched["pair"] + 1 :]:
            trainer.lambdas[w] *= 0.8
        trainer.train_until(trainer.step + args.trial_steps)
        if trainer.out_of_time():
            trainer.load_state(saved)  # an unfinished trial is redone on resume
            trainer.step = saved["step"]
            break
        slope = rd_slope(trainer.validate(), wide, narrow)
        print(f"λ schedule: pair {wide}/{narrow} reduction {sched['reductions'] + 1}: "
              f"slope {slope:.3f} dB/bpp (best {sched['best_slope']:.3f})", flush=True)
        if slope > sched["best_slope"]:
            sched.update(reductions=sched["reductions"] + 1, best_slope=slope)
        else:
            trainer.load_state(saved)
            sched.update(pair=sched["pair"] + 1, reductions=0, best_slope=None)
        trainer.checkpoint()


def export(model: SlimCAE, path: Path, meta: dict) -> bytes:
    """Settle the quantiles and write a weights file with fresh tables; return its id."""
    model = model.float().to("cpu").to(memory_format=torch.contiguous_format)
    print(f"auxiliary loss after settling the quantiles: {settle_quantiles(model):.3f}", flush=True)
    wid = save_weights(model, path, meta=meta)
    print(f"exported {path} (weights id {wid.hex()})", flush=True)
    return wid


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    trainer = Trainer(args)
    print(f"{len(trainer.sampler.images)} training images, {len(trainer.val_images)} validation images, "
          f"widths {trainer.model.widths}, λ {({w: round(l, 5) for w, l in trainer.lambdas.items()})}, "
          f"schedule={args.schedule}, bf16={trainer.bf16}, threads={torch.get_num_threads()}", flush=True)
    for sig in (signal.SIGTERM, signal.SIGINT):  # finish the step, checkpoint, export
        signal.signal(sig, lambda *_: setattr(trainer, "stop", True))
    if args.schedule == "paper":
        trainer.train_until(min(args.stage1_steps, args.steps) if args.steps else args.stage1_steps)
        if trainer.step >= args.stage1_steps:
            lambda_schedule(trainer)
    trainer.train_until(args.steps)
    if trainer.out_of_time():
        print("stopped (time limit, SIGTERM or Ctrl-C)", flush=True)
    trainer.checkpoint()
    if args.export:
        export(trainer.model, args.export, {
            "steps": trainer.step, "lambdas": {str(w): l for w, l in trainer.lambdas.items()},
        })
    return 0


if __name__ == "__main__":
    sys.exit(main())
