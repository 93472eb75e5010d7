"""How faithful a training step's gradient is under reduced precision, per module.

    python benchmarks/grad_precision.py training/hyperprior-state.pt [--batches 3] [--variant bf16]

For the same batches and the same quantization noise, the gradient of the training loss
(all widths, the state's λ) is computed in fp32 and under a variant, and for each module
the cosine between the two and the ratio of their norms is printed. A cosine near 1 means
the variant trains the module the way fp32 would; near 0, its updates are noise.

Variants: ``bf16`` (autocast on the transforms, as ``train --bf16``), ``bf16-gdn32``
(autocast, but every GDN/IGDN in fp32), ``fp32-seed`` (fp32 with other noise: how much
of a gradient the quantization noise alone moves; the floor to compare against).
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator

import torch

VARIANTS = ("bf16", "bf16-gdn32", "fp32-seed")


@contextlib.contextmanager
def gdn_in_fp32() -> Iterator[None]:
    """Run every compressai GDN/IGDN in fp32 even under autocast, for the duration."""
    from compressai.layers import GDN

    original = GDN.forward

    def forward(self, x):
        with torch.autocast(device_type=x.device.type, enabled=False):
            return original(self, x.float())

    GDN.forward = forward
    try:
        yield
    finally:
        GDN.forward = original


def gradients(model, x, lambdas, bf16: bool, seed: int) -> dict[str, torch.Tensor]:
    """The loss's gradient per module (flattened), with the noise drawn from ``seed``."""
    from slimcodec.tools.train import is_aux, module_of, rd_terms

    torch.manual_seed(seed)
    model.zero_grad(set_to_none=True)
    loss = 0.0
    for width in model.widths:
        mse, bpp = rd_terms(model, x, width, bf16)
        loss = loss + lambdas[width] * 255**2 * mse + bpp
    loss.backward()
    parts: dict[str, list[torch.Tensor]] = {}
    for name, p in model.named_parameters():
        if p.grad is not None and not is_aux(name):
            parts.setdefault(module_of(name), []).append(p.grad.detach().flatten().clone())
    return {m: torch.cat(g) for m, g in parts.items()}


def state_arguments(description: str, batches: int) -> argparse.ArgumentParser:
    """The arguments of the gradient benchmarks: a training state, the batches, data and threads."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("state", help="a training state (train --save-state)")
    p.add_argument("--batches", type=int, default=batches)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--patch-size", type=int, default=256)
    p.add_argument("--data", default="../shared/data/train")
    p.add_argument("--threads", type=int, default=1)
    return p


def model_of_state(path: str):
    """The training model of a committed training state (its EMA weights), its λ and its step."""
    from slimcodec.models import ARCHITECTURES

    state = torch.load(path, map_location="cpu", weights_only=True)
    model = ARCHITECTURES[state["architecture"]](state["widths"], **state.get("config", {}))
    model.load_state_dict({**model.state_dict(), **{k: v.float() for k, v in state["ema"].items()}})
    lambdas = {int(w): float(v) for w, v in state["lambdas"].items()}
    return model.to(memory_format=torch.channels_last).train(), lambdas, state["step"]


def main(argv: list[str] | None = None) -> None:
    p = state_arguments(__doc__.split("\n\n")[0], batches=3)
    p.add_argument("--variant", choices=VARIANTS, default="bf16")
    args = p.parse_args(argv)

    from slimcodec.tools.train import CropSampler, find_images, load_images

    torch.set_num_threads(args.threads)
    model, lambdas, step = model_of_state(args.state)
    images = load_images(find_images([args.data])[::7], args.patch_size)
    sampler = CropSampler(images, args.patch_size, torch.Generator().manual_seed(1))

    cosines: dict[str, list[float]] = {}
    ratios: dict[str, list[float]] = {}
    for b in range(args.batches):
        x = sampler.batch(args.batch_size).contiguous(memory_format=torch.channels_last)
        ref = gradients(model, x, lambdas, bf16=False, seed=b)
        if args.variant == "fp32-seed":
            other = gradients(model, x, lambdas, bf16=False, seed=b + 1000)
        else:
            with gdn_in_fp32() if args.variant == "bf16-gdn32" else contextlib.nullcontext():
                other = gradients(model, x, lambdas, bf16=True, seed=b)
        for m, g in ref.items():
            o = other[m]
            cosines.setdefault(m, []).append(float(g @ o / (g.norm() * o.norm() + 1e-30)))
            ratios.setdefault(m, []).append(float(o.norm() / (g.norm() + 1e-30)))
    print(f"state step {step}, {args.batches} batches of {args.batch_size}×{args.patch_size}², "
          f"variant {args.variant} against fp32")
    print("| module | cosine | norm ratio |")
    print("|---|---|---|")
    for m in cosines:
        if m.startswith("entropy_bottleneck"):
            continue
        c, r = cosines[m], ratios[m]
        print(f"| {m} | {sum(c) / len(c):+.3f} | {sum(r) / len(r):.2f} |")


if __name__ == "__main__":
    main()
