"""Effort levels: search for better latents at encode time, the decoder unchanged.

At effort 1 the encoder sends the analysis transform's latents. Above, it refines them
against the real objective of the width, ``λ·255²·MSE + bits/pixel`` (the training loss,
with the weights' own λ), by gradient steps through the frozen synthesis and entropy
model (:meth:`slimcodec.models.factorized.SlimCAE.latent_rd`: the synthesis sees the file's rounding
grid straight-through, the rate a noisy relaxation), and keeps the result only if its
objective with true rounding is lower than the start's. Any decoder reads the file: it
is the same format with other symbols.

Refinement needs torch (``pip install "slimcodec[train]"``). Large images are refined
tile by tile (the core of each tile, with the synthesis margin around it as context), so
memory stays bounded as in :func:`slimcodec.codec.synthesize`.
"""

from __future__ import annotations

import numpy as np

from slimcodec.errors import SlimError
from slimcodec.geometry import STRIDE, tiles

MIN_EFFORT, MAX_EFFORT = 1, 9
# Adam steps per effort level. The step size depends on the step's number only, so a
# higher level continues the path of a lower one, and the best point met is kept: more
# effort never gives a worse objective.
STEPS = {1: 0, 2: 6, 3: 10, 4: 16, 5: 24, 6: 32, 7: 48, 8: 64, 9: 96}
NOISY_RATE = False
LEARNING_RATE = 0.06  # in latent units (one quantization bin at scale 1)
HALF_LIFE = 4
# refinement tile core, smaller than the transforms' (slimcodec.geometry.TILE_LATENTS, 64): the
# gradient steps hold the graph of a whole tile; a Kodak image (48×32 latents) is one tile
REFINE_TILE_LATENTS = 48
MARGIN = 4  # latents of context around a tile (the synthesis reaches about 2; 4 keeps z aligned)


def learning_rate(step: int) -> float:
    """Adam's step size at a step: :data:`LEARNING_RATE` halved every :data:`HALF_LIFE` steps
    (big moves first, then ever finer ones; measured on kodim01 at width 96, a slower decay
    or restarts found worse latents)."""
    return LEARNING_RATE * 0.5 ** (step / HALF_LIFE)


def check_effort(effort: int) -> None:
    """Raise ``ValueError`` unless ``effort`` is an integer from 1 to 9."""
    if not isinstance(effort, (int, np.integer)) or isinstance(effort, bool) or not MIN_EFFORT <= effort <= MAX_EFFORT:
        raise ValueError(f"effort must be an integer from {MIN_EFFORT} to {MAX_EFFORT}, got {effort!r}")


def torch_model(wts):
    """The torch model of ``wts`` (loading the shipped ``.pt`` of its id when ``wts`` runs on onnx).

    Raises:
        SlimError: torch is not installed, or no ``.pt`` form of these weights is at hand.
    """
    if wts.model is not None:
        return wts.model
    from slimcodec import runtime
    from slimcodec.weights import load_weights, shipped_weights_path

    if not runtime.installed("torch"):
        raise SlimError("effort above 1 needs torch: pip install 'slimcodec[train]'")
    path = shipped_weights_path(wts.weights_id, "torch")
    if path is None:
        raise SlimError(f"effort above 1 needs the .pt form of weights {wts.weights_id.hex()}")
    return load_weights(path).model


def _lambda(wts, width: int) -> float:
    lambdas = wts.meta.get("lambdas") or {}
    if str(width) in lambdas:
        return float(lambdas[str(width)])
    from slimcodec.models.factorized import PAPER_LAMBDAS

    # the paper's λ for weights that do not record theirs (its middle one for other widths)
    return PAPER_LAMBDAS.get(width, 512 / 255**2)


def refine(wts, rgb: np.ndarray, y: np.ndarray, width: int, scale: float, effort: int,
           seed: int = 0) -> np.ndarray:
    """Latents for ``rgb`` (``H×W×3`` uint8) at least as good as ``y`` (from :func:`slimcodec.codec.analyze`).

    Args:
        scale (float): the file's latent scale (the rounding grid is ``1/scale``).
        effort (int): 1 (``y`` unchanged) to 9.
        seed (int): the noise of the rate relaxation (the result is deterministic).

    Returns:
        np.ndarray: float32 latents of ``y``'s shape.
    """
    check_effort(effort)
    steps = STEPS[effort]
    if steps == 0:
        return y
    import torch

    model = torch_model(wts)
    lam = _lambda(wts, width) * 255**2
    out = y.copy()
    generator = torch.Generator().manual_seed(seed)
    for (top, bottom, left, right), (ot, ob, ol, orr) in tiles(*y.shape[1:], REFINE_TILE_LATENTS, MARGIN):
        core = (top - ot, bottom - ot, left - ol, right - ol)
        box = rgb[ot * STRIDE:ob * STRIDE, ol * STRIDE:orr * STRIDE]
        if box.size == 0:
            continue
        refined = _refine_box(model, box, y[:, ot:ob, ol:orr], core, width, scale, lam, steps, generator)
        out[:, top:bottom, left:right] = refined[:, core[0]:core[1], core[2]:core[3]]
    return out


def _refine_box(model, box: np.ndarray, y: np.ndarray, core: tuple[int, int, int, int], width: int, scale: float,
                lam: float, steps: int, generator) -> np.ndarray:
    """Refine the latents of one tile: the loss counts the core's pixels and bits only."""
    import torch

    ct, cb, cl, cr = core
    x = torch.from_numpy(box.astype(np.float32) / 255.0).permute(2, 0, 1)[None]
    ph, pw = x.shape[2], x.shape[3]  # the image part of the box (the rest is padding)
    start = torch.from_numpy(np.ascontiguousarray(y))[None]
    var = start.clone().requires_grad_(True)
    pixel_core = (slice(ct * STRIDE, min(cb * STRIDE, ph)), slice(cl * STRIDE, min(cr * STRIDE, pw)))
    pixels = max(1, (pixel_core[0].stop - pixel_core[0].start) * (pixel_core[1].stop - pixel_core[1].start))

    def objective(latents, exact: bool):
        x_hat, bits = (model.latent_rd(latents, width, scale, noisy_rate=NOISY_RATE) if not exact
                       else _exact_rd(model, latents, width, scale))
        x_hat = x_hat[..., :ph, :pw]
        mse = torch.mean((x_hat[..., pixel_core[0], pixel_core[1]] - x[..., pixel_core[0], pixel_core[1]]) ** 2)
        return lam * mse + bits[..., ct:cb, cl:cr].sum() / pixels

    params = list(model.parameters())
    was = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        optimizer = torch.optim.Adam([var], lr=LEARNING_RATE)
        best, best_value = start.clone(), float(objective(start, exact=True))
        state = torch.random.get_rng_state()
        torch.random.set_rng_state(generator.get_state())
        try:
            for i in range(steps):
                for group in optimizer.param_groups:
                    group["lr"] = learning_rate(i)
                optimizer.zero_grad(set_to_none=True)
                loss = objective(var, exact=False)
                if not NOISY_RATE and float(loss.detach()) < best_value:  # straight-through: the value is exact
                    best, best_value = var.detach().clone(), float(loss.detach())
                loss.backward()
                optimizer.step()
            generator.set_state(torch.random.get_rng_state())
        finally:
            torch.random.set_rng_state(state)
        with torch.no_grad():
            final = float(objective(var, exact=True))
            if final < best_value:
                best = var.detach()
    finally:
        for p, r in zip(params, was):
            p.requires_grad_(r)
    return best[0].numpy().astype(np.float32)


def _exact_rd(model, y, width: int, scale: float):
    """Reconstruction and bits with true rounding (no noise): what the file would cost
    (the architecture's latent codec's ``exact_rd``)."""
    from slimcodec.latents import codec_of
    from slimcodec.models import architecture_of

    return codec_of(architecture_of(model)).exact_rd(model, y, width, scale)
