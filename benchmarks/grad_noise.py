"""How much of one training step's gradient is signal, per module: the gradient noise scale.

    python benchmarks/grad_noise.py training/hyperprior-state.pt [--batches 8] [--batch-size 4]

The fp32 gradient of the training loss (all widths, the state's λ) is computed on ``--batches``
independent batches. Per module it prints the mean cosine between one batch's gradient and
the mean of the others, and the simple noise scale ``B_noise = B · tr(Σ) / |G|²`` (McCandlish
et al. 2018: the batch size above which a larger batch stops buying a proportionally larger
step), with ``G`` the mean gradient and ``Σ`` the per-batch covariance. A step at batch
``B ≪ B_noise`` is mostly noise: Adam then moves every weight by about the learning rate
in a direction the next batch does not agree with.
"""

from __future__ import annotations

import torch


def main(argv: list[str] | None = None) -> None:
    from grad_precision import gradients, model_of_state, state_arguments

    p = state_arguments(__doc__.split("\n\n")[0], batches=8)
    args = p.parse_args(argv)

    from slimcodec.tools.train import CropSampler, find_images, load_images

    torch.set_num_threads(args.threads)
    model, lambdas, step = model_of_state(args.state)
    images = load_images(find_images([args.data]), args.patch_size)
    sampler = CropSampler(images, args.patch_size, torch.Generator().manual_seed(2))

    per_batch = []
    for b in range(args.batches):
        x = sampler.batch(args.batch_size).contiguous(memory_format=torch.channels_last)
        per_batch.append(gradients(model, x, lambdas, bf16=False, seed=b))
    print(f"state step {step}, {args.batches} batches of {args.batch_size}×{args.patch_size}², fp32")
    print("| module | cosine to the other batches' mean | B_noise (crops) |")
    print("|---|---|---|")
    n = args.batches
    for m in per_batch[0]:
        if m.startswith("entropy_bottleneck"):
            continue
        g = torch.stack([pb[m] for pb in per_batch]).double()
        total = g.sum(0)
        cos = [float(g[i] @ (total - g[i]) / (g[i].norm() * (total - g[i]).norm() + 1e-30)) for i in range(n)]
        mean = total / n
        noise = float(((g - mean) ** 2).sum() / (n - 1))  # tr Σ of one batch's gradient
        signal = max(float(mean @ mean) - noise / n, 1e-30)  # unbiased |G|²
        print(f"| {m} | {sum(cos) / n:+.3f} | {args.batch_size * noise / signal:,.0f} |")


if __name__ == "__main__":
    main()
