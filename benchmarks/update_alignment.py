"""Did a run's steps follow its gradient? Per module, between two raw checkpoints of one run.

    python benchmarks/update_alignment.py ~/ckpt/run-31000.pt ~/ckpt/run-31250.pt [--batches 3]

For checkpoints A and B (the trainer's ``--checkpoint`` files; their raw weights, not the
EMA), the fp32 gradient is computed on the same batches at both, and per module the script
prints ``cos(g_A, g_B)`` (negative: the run bounces across a ravine) and ``cos(B − A, −g_A)``,
how much of the distance travelled went downhill. Plain gradient descent gives the second
a clearly positive value; near zero, the steps were a random walk as far as the loss can
tell, whatever the learning rate.
"""

from __future__ import annotations

import argparse

import torch


def load(path: str):
    from slimcodec.models import ARCHITECTURES

    ck = torch.load(path, map_location="cpu", weights_only=True)
    model = ARCHITECTURES[ck["architecture"]](ck["widths"])
    model.load_state_dict(ck["model"])
    lambdas = {int(w): float(v) for w, v in ck["lambdas"].items()}
    return model.to(memory_format=torch.channels_last).train(), lambdas, ck["step"]


def by_module(model) -> dict[str, torch.Tensor]:
    from slimcodec.tools.train import is_aux, module_of

    parts: dict[str, list[torch.Tensor]] = {}
    for name, p in model.named_parameters():
        if not is_aux(name):
            parts.setdefault(module_of(name), []).append(p.detach().flatten())
    return {m: torch.cat(v) for m, v in parts.items()}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--batches", type=int, default=3)
    p.add_argument("--data", default="../shared/data/train")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)

    from grad_precision import gradients

    from slimcodec.tools.train import CropSampler, find_images, load_images

    torch.set_num_threads(args.threads)
    (model_a, lambdas, step_a), (model_b, _, step_b) = load(args.a), load(args.b)
    images = load_images(find_images([args.data])[::5], 256)
    sampler = CropSampler(images, 256, torch.Generator().manual_seed(3))
    batches = [sampler.batch(4).contiguous(memory_format=torch.channels_last) for _ in range(args.batches)]

    def mean_gradient(model) -> dict[str, torch.Tensor]:
        total: dict[str, torch.Tensor] = {}
        for i, x in enumerate(batches):
            for m, g in gradients(model, x, lambdas, bf16=False, seed=i).items():
                total[m] = total[m] + g if m in total else g
        return total

    grad_a, grad_b = mean_gradient(model_a), mean_gradient(model_b)
    weights_a, weights_b = by_module(model_a), by_module(model_b)
    print(f"steps {step_a:,} → {step_b:,}, {args.batches} batches of 4×256², fp32")
    print("| module | cos(g_A, g_B) | cos(B − A, −g_A) |")
    print("|---|---|---|")
    for m, ga in grad_a.items():
        if m.startswith("entropy_bottleneck"):
            continue
        gb, moved = grad_b[m], weights_b[m] - weights_a[m]
        print(f"| {m} | {float(ga @ gb / (ga.norm() * gb.norm() + 1e-30)):+.3f} | "
              f"{float(-ga @ moved / (ga.norm() * moved.norm() + 1e-30)):+.3f} |")


if __name__ == "__main__":
    main()
