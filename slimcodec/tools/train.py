"""Train a SlimCAE (factorized, hyperprior or channel): all widths every step, EMA, exact resume.

The loss of one step is ``Σ_w λ_w · 255² · MSE_w + bpp_w`` over all widths on the same
batch (pixels in [0, 1]; bpp counts y and, with the hyperprior, z), with mixed
quantization (noisy latents for the rate, straight-through rounding into the
synthesis), then one step of the z (or y) bottlenecks' auxiliary quantile loss. An
exponential moving average (EMA) of the weights is validated and exported. The
learning rate is one long schedule: constant, then a cosine decay between
``--decay-start`` and ``--decay-end`` to a tenth, a pure function of the step, so a
resumed run continues exactly (model, EMA, both Adam states, RNGs, step).

Usage (one core, beside other work)::

    taskset -c 0 python -m slimcodec.tools.train --arch hyperprior \\
        --checkpoint ~/ckpt/hyperprior.pt --threads 1 --time-limit-min 150

Without a checkpoint it warm-starts from the shipped factorized weights (the
hyperprior keeps their transforms and GDNs and starts its hyper networks afresh).
The channel-conditional model starts from a hyperprior's training state or weights
(``--arch channel --init training/hyperprior-state.pt``) with every slice context zero
(:meth:`SlimCAEChannel.from_hyperprior`), so it starts exactly as that hyperprior and
continues its step count and λ.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np
import torch

from slimcodec import latents
from slimcodec.models import ARCHITECTURES, architecture_of
from slimcodec.models.channel import SlimCAEChannel
from slimcodec.models.factorized import PAPER_LAMBDAS, PAPER_WIDTHS, SlimCAE
from slimcodec.models.hyperprior import SlimCAEHyperprior

# imported now, not at export: a long run must not pick up source files edited meanwhile
from slimcodec.weights import load_weights, save_weights

# --arch's choices: each registered architecture's short name -> its name
ARCH_NAMES = {arch.short_name: arch.name for arch in latents.ARCHITECTURES.values()}
CHECKPOINT_FORMAT = "slimcodec-training-state"
STATE_FORMAT = "slimcodec-ema-state"
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


def is_aux(name: str) -> bool:
    """Whether a parameter belongs to the auxiliary (quantile) loss."""
    return name.endswith(".quantiles")


def param_groups(model: SlimCAE, eb_lr_mult: float, transform_eps: float = 1e-8) -> list[dict]:
    """Adam groups: transforms (incl. hyper networks), then the bottlenecks' densities.

    ``transform_eps`` is the transforms' Adam ε. Their gradients are heavy-tailed (median
    element ~1/250 of the 99th percentile); at the default 1e-8 Adam moves every element,
    the many near-zero ones included, by about the learning rate, and the update ends up
    nearly orthogonal to the gradient (docs/training.md, "Why distortion never improved").
    An ε near the typical √v keeps small-gradient elements proportional to their gradient.
    """
    named = [(n, p) for n, p in model.named_parameters() if not is_aux(n)]
    transforms = [p for n, p in named if not n.startswith("entropy_bottleneck.")]
    densities = [p for n, p in named if n.startswith("entropy_bottleneck.")]
    return [{"params": transforms, "lr_mult": 1.0, "eps": transform_eps},
            {"params": densities, "lr_mult": eb_lr_mult, "eps": 1e-8}]


def lr_at(step: int, lr: float, decay_start: int, decay_end: int, warmup: int = 0, adam_start: int = 0) -> float:
    """The learning rate of ``step``: constant, then cosine down to ``lr / 10``, scaled by a linear warm-up.

    The warm-up (``warmup`` steps from ``adam_start``, where the optimizer's moments
    began) keeps fresh Adam moments from shaking warm-started weights; it ramps up to
    the scheduled rate, so a resume past the decay never climbs back above the floor.
    """
    ramp = min(1.0, (step - adam_start + 1) / warmup) if warmup else 1.0
    if not decay_end or step < decay_start:
        return lr * ramp
    t = min(1.0, (step - decay_start) / max(1, decay_end - decay_start))
    return lr * ramp * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))


def _row(results: dict[int, tuple[float, float]]) -> str:
    return " | ".join(f"w{w}: {b:.4f}bpp {p:.2f}dB" for w, (b, p) in results.items())


def _points(results: dict[int, tuple[float, float]]) -> dict:
    return {str(w): {"bpp": b, "psnr": p} for w, (b, p) in results.items()}


class EMA:
    """Exponential moving average of a model's floating-point state (parameters and buffers)."""

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = decay
        self.state = {k: v.detach().clone().float() for k, v in model.state_dict().items() if v.is_floating_point()}

    @torch.no_grad()
    def update(self, model: torch.nn.Module, step: int) -> None:
        # warm-up: early averages do not drag in the warm-start's weights forever
        d = min(self.decay, (1 + step) / (10 + step))
        for k, v in model.state_dict().items():
            if k in self.state:
                self.state[k].lerp_(v.detach().float(), 1 - d)  # exact where v equals the average (frozen)

    def copy_to(self, model: torch.nn.Module) -> None:
        model.load_state_dict({**model.state_dict(), **self.state})


def fine_grid_scale(max_scale: float) -> float:
    """A latent scale drawn log-uniformly from ``[1, max_scale]`` (torch's checkpointed RNG)."""
    return math.exp(float(torch.rand(())) * math.log(max_scale))


def rd_terms(model: SlimCAE, x: torch.Tensor, width: int, bf16: bool,
             scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """MSE (on [0, 1] pixels) and estimated bpp (all latents) of one width on batch ``x``.

    ``scale``: the latent scale (hyperprior; 1 is the forward pass, above it the latents are
    coded on a grid ``scale`` times finer, as ``--scale`` codes them).
    """
    n, _, h, w = x.shape
    with torch.autocast(device_type=x.device.type, dtype=torch.bfloat16, enabled=bf16):
        if scale == 1.0:
            out = model(x, width)
            x_hat = out["x_hat"]
            bits = sum(torch.log(lik).sum() for lik in out["likelihoods"].values()) / -math.log(2)
        else:
            x_hat, latent_bits = model.latent_rd(model.analysis(x, width), width, scale)
            bits = latent_bits.sum()
    mse = torch.mean((x_hat.float() - x) ** 2)
    return mse, bits / (n * h * w)


@torch.no_grad()
def validate(model: SlimCAE, images: list[torch.Tensor], device: torch.device, multiple: int,
             scale: float = 1.0) -> dict[int, tuple[float, float]]:
    """Estimated bpp (rounded latents) and mean PSNR per width on whole images.

    ``scale``: the latent scale (hyperprior; 1 is the forward pass the model trains with).
    """
    was_training = model.training
    model.eval()
    results = {}
    for width in model.widths:
        bpps, psnrs = [], []
        for img in images:
            h, w = img.shape[1] // multiple * multiple, img.shape[2] // multiple * multiple
            x = img[None, :, :h, :w].float().div(255).to(device).contiguous(memory_format=torch.channels_last)
            if scale == 1.0:
                out = model(x, width)
                x_hat = out["x_hat"]
                bits = -sum(float(torch.log2(lik).sum()) for lik in out["likelihoods"].values())
            else:
                x_hat, latent_bits = model.latent_rd(model.analysis(x, width), width, scale, noisy_rate=False)
                bits = float(latent_bits.sum())
            x_hat = x_hat.clamp(0, 1).mul(255).round().div(255)
            mse = float(torch.mean((x_hat - x) ** 2))
            bpps.append(bits / (h * w))
            psnrs.append(10 * math.log10(1 / max(mse, 1e-10)))
        results[width] = (float(np.mean(bpps)), float(np.mean(psnrs)))
    model.train(was_training)
    return results


def settle_quantiles(model: SlimCAE, max_steps: int = 6000, lr: float = 0.1, tol: float = 1e-2) -> float:
    """Fit the bottlenecks' quantiles (the auxiliary loss alone) before building tables.

    The auxiliary loss needs no images, so this is cheap; it makes the
    medians (quantization offsets) and table supports match the trained
    densities even after a short training run.

    Returns:
        float: the final auxiliary loss.
    """
    quantiles = [p for n, p in model.named_parameters() if is_aux(n)]
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


def build_model(args: argparse.Namespace) -> tuple[SlimCAE, dict]:
    """The model to start from when there is no checkpoint, and the meta it continues.

    ``--init`` names shipped-style weights (the transforms a hyperprior starts from, the
    hyperprior a channel model starts from, or the model to continue) or a committed
    training state (see :func:`save_state`), which continues its own step count and λ; a
    hyperprior's state starts a channel model (:meth:`SlimCAEChannel.from_hyperprior`).
    ``--init none`` builds a fresh model (a channel model's slice size divides the widths:
    :func:`slimcodec.models.channel.default_slice_channels`).
    """
    cls = ARCHITECTURES[ARCH_NAMES[args.arch]]
    if args.init == "none":
        torch.manual_seed(args.seed)
        return cls(args.widths), {}
    if args.init != "shipped":
        state = torch.load(args.init, map_location="cpu", weights_only=True)
        if state.get("format") == STATE_FORMAT:
            source = ARCHITECTURES.get(state["architecture"])
            if source is not cls and not (cls is SlimCAEChannel and source is SlimCAEHyperprior):
                raise SystemExit(f"{args.init} holds a {state['architecture']} model, not {ARCH_NAMES[args.arch]}")
            model = source(state["widths"], **state.get("config", {}))
            model.load_state_dict({**model.state_dict(), **{k: v.float() for k, v in state["ema"].items()}})
            print(f"continuing the training state {args.init} (step {state['step']})", flush=True)
            if source is not cls:
                model = SlimCAEChannel.from_hyperprior(model)
                print(f"as a {ARCH_NAMES[args.arch]} model with slices of {model.slice_channels} channels, "
                      "every slice context zero", flush=True)
            return model, {"steps": state["step"], "lambdas": state["lambdas"]}
    init = load_weights(None if args.init == "shipped" else args.init)
    factorized = init.model
    factorized.restore_constants()
    print(f"warm start from weights {init.weights_id.hex()} (step {init.meta.get('steps', 0)})", flush=True)
    if cls is SlimCAEChannel and type(factorized) is SlimCAEHyperprior:
        return (SlimCAEChannel.from_hyperprior(factorized),
                {"lambdas": init.meta.get("lambdas", {}), "init": init.weights_id.hex()})
    if cls is SlimCAEHyperprior:
        torch.manual_seed(args.seed)
        model = SlimCAEHyperprior.from_factorized(factorized)
        paths = find_images(args.data)
        images = load_images(paths[:: max(1, len(paths) // 32)], args.patch_size)
        sampler = CropSampler(images, args.patch_size, torch.Generator().manual_seed(args.seed))
        sample = sampler.batch(min(32, len(images)))
        with torch.no_grad():
            model.start_heads_at(model.analysis(sample, model.widths[0]), model.widths[0])
        return model, {"lambdas": init.meta.get("lambdas", {})}
    return factorized, {"lambdas": init.meta.get("lambdas", {}), "init": init.weights_id.hex()}


def save_state(model: SlimCAE, ema: EMA, step: int, lambdas: dict[int, float], path: Path) -> None:
    """Write the EMA weights as a small training state to commit (float16, constants exact).

    It carries no optimizer moments: a run continued from it (``--init PATH``) keeps
    the weights, step and λ and warms Adam up afresh.
    """
    constants = model.constant_names()
    state = {
        "format": STATE_FORMAT, "architecture": architecture_of(model),
        "widths": list(model.widths), "config": model.config(), "step": step,
        "lambdas": {str(w): l for w, l in lambdas.items()},
        "ema": {k: (v if k in constants else v.half()).cpu().contiguous() for k, v in ema.state.items()},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


TRANSFORMS = ("g_a", "g_s", "gdn", "igdn")


def is_transform(name: str) -> bool:
    """Whether a parameter belongs to the image transforms (g_a, g_s and their GDNs), which
    ``--entropy-only`` freezes."""
    return name.split(".")[0] in TRANSFORMS


def rate_terms(model: SlimCAE, x: torch.Tensor, width: int) -> torch.Tensor:
    """Estimated bpp of one width on batch ``x`` with the transforms frozen: y is computed
    without a graph, so a step costs the analysis' forward pass and the entropy model."""
    n, _, h, w = x.shape
    with torch.no_grad():
        y = model.analysis(x, width)
    _, bits = model.code_latents(y, width)
    return bits.sum() / (n * h * w)


def module_of(name: str) -> str:
    """The module a parameter is reported under in diagnostics (``g_s.0``, ``igdn.1``, ``h_s_mean``)."""
    parts = name.split(".")
    return parts[0] if parts[0] in ("h_s_scale", "h_s_mean") else ".".join(parts[:2])


def clip_grads(groups: list[dict], max_norm: float, mode: str) -> None:
    """Clip gradients: ``global`` (one norm over all), ``group`` (each Adam group's own), ``off``."""
    if not max_norm or mode == "off":
        return
    if mode == "global":
        torch.nn.utils.clip_grad_norm_([p for g in groups for p in g["params"]], max_norm)
    else:
        for g in groups:
            torch.nn.utils.clip_grad_norm_(g["params"], max_norm)


class Diagnostics:
    """Per-module gradient norms (before clipping) and update-to-weight ratios of one step, as JSON lines."""

    def __init__(self, path: Path):
        self.path = path

    def before_step(self, model: torch.nn.Module) -> dict:
        grads: dict[str, float] = {}
        weights = {}
        for n, p in model.named_parameters():
            if p.grad is None or is_aux(n):
                continue
            m = module_of(n)
            grads[m] = grads.get(m, 0.0) + float(p.grad.detach().float().pow(2).sum())
            weights[n] = p.detach().clone()
        return {"grads": grads, "weights": weights}

    def after_step(self, model: torch.nn.Module, step: int, before: dict, loss: float, terms: dict) -> None:
        upd: dict[str, float] = {}
        norm: dict[str, float] = {}
        for n, p in model.named_parameters():
            if n not in before["weights"]:
                continue
            m = module_of(n)
            upd[m] = upd.get(m, 0.0) + float((p.detach() - before["weights"][n]).pow(2).sum())
            norm[m] = norm.get(m, 0.0) + float(before["weights"][n].pow(2).sum())
        total = math.sqrt(sum(before["grads"].values()))
        record = {
            "step": step, "loss": loss, "grad_norm": total,
            "terms": {str(w): {"mse": None if math.isnan(t[0]) else t[0], "bpp": t[1]} for w, t in terms.items()},
            "modules": {m: {"grad": math.sqrt(g), "update_ratio": math.sqrt(upd[m] / max(norm[m], 1e-30))}
                        for m, g in before["grads"].items()},
        }
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX-512 BF16 or AMX); without it autocast is ~8× slower."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


class Trainer:
    """Model, EMA, optimizers, λ and counters, with exact checkpoint/resume."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.device = torch.device(args.device)
        self.bf16 = bool(args.bf16)
        if self.bf16 and self.device.type == "cpu" and not cpu_has_fast_bf16():
            print("note: this CPU computes bf16 without native support: --bf16 runs about 8x slower", flush=True)
        if self.device.type == "cuda":
            # TF32 rounds conv inputs to 10 bits of mantissa: bf16's failure (docs/training.md,
            # "Why distortion never improved") in a milder form; the transforms train in fp32.
            torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
        self.gen = torch.Generator().manual_seed(args.seed)
        ckpt = None
        if args.checkpoint.exists():
            ckpt = torch.load(args.checkpoint, map_location="cpu", weights_only=True)
            if ckpt.get("format") != CHECKPOINT_FORMAT or ckpt["architecture"] != ARCH_NAMES[args.arch]:
                raise SystemExit(f"{args.checkpoint} is not a {args.arch} training state")
            model = ARCHITECTURES[ckpt["architecture"]](ckpt["widths"], **ckpt.get("config", {}))
            model.load_state_dict(ckpt["model"])
            meta = {}
            print(f"resuming from {args.checkpoint} at step {ckpt['step']}", flush=True)
        else:
            model, meta = build_model(args)
        self.model = model.to(self.device).to(memory_format=torch.channels_last).train()
        self.ema = EMA(self.model, args.ema_decay)
        self.opt = torch.optim.Adam(param_groups(self.model, args.eb_lr_mult, args.transform_eps), lr=args.lr)
        aux = [p for n, p in self.model.named_parameters() if is_aux(n)]
        self.aux_opt = torch.optim.Adam(aux, lr=args.aux_lr)
        if args.lambdas:
            self.lambdas = dict(zip(self.model.widths, args.lambdas))
        elif meta.get("lambdas"):
            self.lambdas = {int(w): float(v) for w, v in meta["lambdas"].items()}
        else:
            self.lambdas = {w: PAPER_LAMBDAS.get(w, 0.01) for w in self.model.widths}
        self.step = int(meta.get("steps", 0))
        self.meta = meta
        self.adam_start = self.step  # the warm-up counts from the optimizer's first step
        if ckpt is not None:
            self.meta = dict(ckpt.get("meta", {}))
            self.adam_start = int(ckpt.get("adam_start", 0))
            self.ema.state = {k: v.to(self.device) for k, v in ckpt["ema"].items()}
            self.opt.load_state_dict(ckpt["optimizer"])
            self.aux_opt.load_state_dict(ckpt["aux_optimizer"])
            self.step = int(ckpt["step"])
            if not args.lambdas:
                self.lambdas = {int(k): float(v) for k, v in ckpt["lambdas"].items()}
            self.gen.set_state(ckpt["sampler_rng"])
            torch.set_rng_state(ckpt["torch_rng"])
        if args.entropy_only:
            self.freeze_transforms_at_their_average()
        self.sampler = CropSampler(load_images(find_images(args.data), args.patch_size), args.patch_size, self.gen)
        self.val_images = load_images(find_images([args.val]), 64) if args.val else []
        self.multiple = latents.architecture(architecture_of(self.model)).padding_multiple
        self.diagnostics = Diagnostics(args.diag) if args.diag else None
        self.stop = False
        self.t0 = time.time()
        self._window: dict[int, list[float]] = {w: [0.0, 0.0] for w in self.model.widths}
        self._window_t, self._window_n = time.time(), 0

    def freeze_transforms_at_their_average(self) -> None:
        """``--entropy-only``: the transforms take their EMA values (what validation and export
        use; the raw ones would pull the average towards themselves while frozen) and get no
        gradient, so Adam skips them and its state stays loadable by (and from) joint training."""
        transforms = {k: v for k, v in self.ema.state.items() if is_transform(k)}
        current = self.model.state_dict()
        self.model.load_state_dict({**current, **{k: v.to(current[k].dtype) for k, v in transforms.items()}})
        for name, param in self.model.named_parameters():
            param.requires_grad_(not is_transform(name))

    def state(self) -> dict:
        """Everything a resume needs, as plain tensors and values (loadable with weights_only)."""
        return {
            "format": CHECKPOINT_FORMAT, "architecture": ARCH_NAMES[self.args.arch],
            "widths": list(self.model.widths), "config": self.model.config(),
            "model": self.model.state_dict_for_saving(),
            "ema": self.ema.state, "optimizer": self.opt.state_dict(),
            "aux_optimizer": self.aux_opt.state_dict(), "step": self.step,
            "lambdas": {str(w): l for w, l in self.lambdas.items()},
            "sampler_rng": self.gen.get_state(), "torch_rng": torch.get_rng_state(),
            "meta": dict(self.meta), "adam_start": self.adam_start,
        }

    def checkpoint(self) -> None:
        path = self.args.checkpoint
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        torch.save(self.state(), tmp)
        os.replace(tmp, path)

    def ema_model(self) -> SlimCAE:
        """A copy of the model carrying the EMA weights (for validation and export)."""
        model = type(self.model)(self.model.widths, **self.model.config())
        model = model.to(self.device).to(memory_format=torch.channels_last)
        model.load_state_dict(self.model.state_dict())
        self.ema.copy_to(model)
        return model

    def out_of_time(self) -> bool:
        limit = self.args.time_limit_min
        return self.stop or bool(limit and time.time() - self.t0 > limit * 60)

    def train_step(self) -> None:
        """One joint step over all widths, then one auxiliary-loss step and the EMA update."""
        args = self.args
        lr = lr_at(self.step, args.lr, args.decay_start, args.decay_end, args.warmup_steps, self.adam_start)
        for g in self.opt.param_groups:
            g["lr"] = lr * g["lr_mult"]
        self.opt.param_groups[0]["eps"] = args.transform_eps  # an argument, not the checkpoint's
        x = self.sampler.batch(args.batch_size).to(self.device).contiguous(memory_format=torch.channels_last)
        self.opt.zero_grad(set_to_none=True)
        self.aux_opt.zero_grad(set_to_none=True)
        loss = 0.0
        terms = {}
        for width in self.model.widths:
            if args.entropy_only:  # the distortion does not depend on the entropy model
                bpp = rate_terms(self.model, x, width)
                loss = loss + bpp
                terms[width] = (math.nan, bpp.item())
                continue
            mse, bpp = rd_terms(self.model, x, width, self.bf16)
            loss = loss + self.lambdas[width] * 255**2 * mse + bpp
            terms[width] = (mse.item(), bpp.item())
        if args.vr_weight and isinstance(self.model, SlimCAEHyperprior):
            loss = loss + args.vr_weight * self.variable_rate_term(x)
        if not torch.isfinite(loss):
            print(f"step {self.step}: non-finite loss, batch skipped", flush=True)
            return
        loss.backward()
        probe = self.diagnostics is not None and (self.step + 1) % args.diag_every == 0
        before = self.diagnostics.before_step(self.model) if probe else None
        clip_grads(self.opt.param_groups, args.clip, args.clip_mode)
        self.opt.step()
        if probe:
            self.diagnostics.after_step(self.model, self.step + 1, before, float(loss.detach()), terms)
        aux_loss = self.model.aux_loss()
        aux_loss.backward()
        self.aux_opt.step()
        self.step += 1
        self.ema.update(self.model, self.step)
        self._log(float(loss.detach()), float(aux_loss.detach()), lr, terms)

    def variable_rate_term(self, x: torch.Tensor) -> torch.Tensor:
        """The widest width's RD loss at a latent scale s drawn log-uniformly from [1, --vr-max],
        with λ·s^α: it trains the encoder and decoder for the finer grids that ``--scale`` uses
        to buy quality above the scale-1 point."""
        width = self.model.widths[0]
        scale = fine_grid_scale(self.args.vr_max)
        mse, bpp = rd_terms(self.model, x, width, self.bf16, scale)
        return self.lambdas[width] * scale**self.args.vr_alpha * 255**2 * mse + bpp

    def _log(self, loss: float, aux_loss: float, lr: float, terms: dict) -> None:
        for w, (mse, bpp) in terms.items():
            self._window[w][0] += mse
            self._window[w][1] += bpp
        self._window_n += 1
        if self.step % self.args.log_every:
            return
        n = self._window_n
        rate = n / (time.time() - self._window_t)
        parts = [f"w{w}: {b / n:.3f}bpp" + ("" if math.isnan(m) else f" {10 * math.log10(1 / max(m / n, 1e-10)):.2f}dB")
                 for w, (m, b) in self._window.items()]
        print(f"step {self.step} {rate:.2f} it/s lr {lr:.2e} loss {loss:.3f} aux {aux_loss:.1f} | "
              + " | ".join(parts), flush=True)
        self._window = {w: [0.0, 0.0] for w in self.model.widths}
        self._window_t, self._window_n = time.time(), 0

    def validate(self) -> dict[int, tuple[float, float]]:
        """Validate the EMA weights; print the curve and append it to ``--curve`` (JSON lines)."""
        t = time.time()
        ema = self.ema_model()
        res = validate(ema, self.val_images, self.device, self.multiple)
        print(f"val step {self.step} (EMA, {time.time() - t:.0f} s) | {_row(res)}", flush=True)
        fine = {}
        if self.args.val_scale > 1 and isinstance(ema, SlimCAEHyperprior):
            fine = validate(ema, self.val_images, self.device, self.multiple, self.args.val_scale)
            print(f"val step {self.step} at latent scale {self.args.val_scale:g} | {_row(fine)}", flush=True)
        if self.args.curve:
            record = {"arch": self.args.arch, "step": self.step, "time": time.time(), "points": _points(res)}
            if fine:
                record["at_scale"] = {"scale": self.args.val_scale, "points": _points(fine)}
            with open(self.args.curve, "a") as f:
                f.write(json.dumps(record) + "\n")
        return res

    def train_until(self, step: int) -> None:
        """Train up to global ``step`` (0: no limit) or until time runs out."""
        while (not step or self.step < step) and not self.out_of_time():
            self.train_step()
            if self.step % self.args.checkpoint_every == 0:
                self.checkpoint()
            if self.val_images and self.args.val_every and self.step % self.args.val_every == 0:
                self.validate()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m slimcodec.tools.train", description=__doc__.split("\n")[0])
    p.add_argument("--arch", choices=sorted(ARCH_NAMES), default="hyperprior")
    p.add_argument("--data", nargs="+", default=["../shared/data/train"], help="training image folders")
    p.add_argument("--val", default="../shared/data/eval2", help="validation folder ('' to skip); never Kodak")
    p.add_argument("--checkpoint", type=Path, default=Path.home() / "ckpt" / "train.pt",
                   help="training state, resumed exactly when present (keep it outside the work tree)")
    p.add_argument("--init", default="shipped",
                   help="weights to warm-start from without a checkpoint: a path, 'shipped' or 'none'")
    p.add_argument("--widths", type=int, nargs="+", default=list(PAPER_WIDTHS), help="widths (with --init none)")
    p.add_argument("--lambdas", type=float, nargs="+", help="λ per width, widest first (default: the init weights')")
    p.add_argument("--steps", type=int, default=0, help="train until this global step (0: until the time limit)")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--patch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--warmup-steps", type=int, default=100, help="linear lr warm-up from step 0")
    p.add_argument("--decay-start", type=int, default=0, help="step where the cosine lr decay begins")
    p.add_argument("--decay-end", type=int, default=0, help="step where it reaches lr/10 (0: no decay)")
    p.add_argument("--eb-lr-mult", type=float, default=10.0, help="lr multiplier of the bottlenecks' densities")
    p.add_argument("--aux-lr", type=float, default=1e-3)
    p.add_argument("--transform-eps", type=float, default=1e-8,
                   help="Adam's ε for the transforms and hyper networks (the densities keep 1e-8)")
    p.add_argument("--vr-weight", type=float, default=0.0,
                   help="weight of a variable-rate term: the widest width at a drawn latent scale s, "
                        "λ·s^α (hyperprior)")
    p.add_argument("--vr-max", type=float, default=16.0, help="largest latent scale of --vr-weight")
    p.add_argument("--vr-alpha", type=float, default=1.0, help="exponent α of the variable-rate term's λ·s^α")
    p.add_argument("--val-scale", type=float, default=0.0, help="also validate at this latent scale (hyperprior)")
    p.add_argument("--ema-decay", type=float, default=0.999)
    p.add_argument("--clip", type=float, default=1.0, help="gradient norm clip (0: off)")
    p.add_argument("--clip-mode", choices=("global", "group", "off"), default="global",
                   help="clip one norm over all parameters, each Adam group's own, or nothing")
    p.add_argument("--diag", type=Path, help="append per-module gradient norms and update ratios here (JSON lines)")
    p.add_argument("--diag-every", type=int, default=50, help="steps between --diag records")
    p.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=False,
                   help="bf16 autocast for the transforms: 1.7x faster on CPUs with native bf16, but their "
                        "gradients are noise near convergence (benchmarks/grad_precision.py); off by default")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--log-every", type=int, default=50)
    p.add_argument("--checkpoint-every", type=int, default=250)
    p.add_argument("--val-every", type=int, default=500)
    p.add_argument("--export", type=Path, help="write a weights file (EMA, fresh tables) here at the end")
    p.add_argument("--save-state", type=Path, help="write the EMA training state (to commit) here at the end")
    p.add_argument("--curve", type=Path, help="append each validation (JSON lines) here")
    p.add_argument("--time-limit-min", type=float, default=0, help="stop (and checkpoint) after this many minutes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--entropy-only", action="store_true",
                   help="train only the entropy model (hyper networks, slice contexts, densities) on the rate, "
                        "with g_a and g_s frozen: several times the steps per second of a joint step")
    args = p.parse_args(argv)
    if args.entropy_only and args.vr_weight:
        p.error("--entropy-only trains the rate alone; --vr-weight adds a distortion term")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    trainer = Trainer(args)
    print(f"{args.arch}: {len(trainer.sampler.images)} training images, {len(trainer.val_images)} validation images, "
          f"widths {trainer.model.widths}, λ {({w: round(l, 5) for w, l in trainer.lambdas.items()})}, "
          f"batch {args.batch_size}×{args.patch_size}², bf16={trainer.bf16}, threads={torch.get_num_threads()}",
          flush=True)
    for sig in (signal.SIGTERM, signal.SIGINT):  # finish the step, then checkpoint
        signal.signal(sig, lambda *_: setattr(trainer, "stop", True))
    if trainer.step == 0 and trainer.val_images and args.val_every:
        trainer.validate()
    trainer.train_until(args.steps)
    if trainer.out_of_time():
        print("stopped (time limit, SIGTERM or Ctrl-C)", flush=True)
    trainer.checkpoint()
    if args.save_state:
        save_state(trainer.model, trainer.ema, trainer.step, trainer.lambdas, args.save_state)
        print(f"saved the training state {args.save_state} (step {trainer.step})", flush=True)
    if args.export:
        export(trainer.ema_model(), args.export, {
            "steps": trainer.step, "lambdas": {str(w): l for w, l in trainer.lambdas.items()},
            **({"init": trainer.meta["init"]} if "init" in trainer.meta else {}),
        })
    return 0


def export(model: SlimCAE, path: Path, meta: dict) -> bytes:
    """Settle the bottlenecks' quantiles and write a weights file with fresh tables; return its id."""
    model = model.float().to("cpu").to(memory_format=torch.contiguous_format)
    print(f"auxiliary loss after settling the quantiles: {settle_quantiles(model):.3f}", flush=True)
    wid = save_weights(model, path, meta=meta)
    print(f"exported {path} (weights id {wid.hex()})", flush=True)
    return wid


if __name__ == "__main__":
    sys.exit(main())
