"""Effort levels: search for better latents at encode time, the decoder unchanged.

At effort 1 the encoder sends the analysis transform's latents. Above, it refines them
against the real objective of the width, ``λ·255²·MSE + bits/pixel`` (the training loss,
with the weights' own λ), by gradient steps through the frozen synthesis and entropy
model, and keeps the result only if its objective with true rounding is lower than the
start's. With a hyperprior, z is refined beside y (the file carries z's symbols, so the
encoder may send any z, not only ``h_a(y)``). Any decoder reads the file: it is the same
format with other symbols.

The search rounds softly (Yang, Marino and Mandt 2020, "Improving inference for neural image
compression": SGA, here its expectation, without the Gumbel noise): a latent ``v`` counts as
``⌊v⌋ + p`` with ``p = σ((atanh(r) − atanh(1 − r))/τ²)``, ``r = v − ⌊v⌋``, for the synthesis and
the rate alike; τ is annealed from :data:`TAU_START` to :data:`TAU_END`, so the relaxed objective
becomes the true one as the search ends. The straight-through search it replaced (what training
uses) found far less for the channel model (docs/results.md, "Encoder effort").

Refinement needs torch (``pip install "slimcodec[train]"``). Large images are refined
tile by tile (the core of each tile, with the synthesis margin around it as context), so
memory stays bounded as in :func:`slimcodec.codec.synthesize`.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import numpy as np

from slimcodec.errors import SlimError
from slimcodec.geometry import HYPER_STRIDE, STRIDE, tiles

MIN_EFFORT, MAX_EFFORT = 1, 9
# Adam steps per effort level (per refinement tile)
STEPS = {1: 0, 2: 6, 3: 10, 4: 16, 5: 24, 6: 32, 7: 48, 8: 64, 9: 96}
LEARNING_RATE = 0.02  # in latent units (one quantization bin at scale 1), decayed linearly to a tenth
TAU_START, TAU_END = 0.5, 0.05  # soft rounding's temperature, annealed geometrically
CHECKS = 8  # the true objective is checked this many times over the second half of the search
# refinement tile core, smaller than the transforms' (slimcodec.geometry.TILE_LATENTS, 64): the
# gradient steps hold the graph of a whole tile; a Kodak image (48×32 latents) is one tile
REFINE_TILE_LATENTS = 48
MARGIN = 4  # latents of context around a tile (the synthesis reaches about 2; 4 keeps z aligned)
Z_STEP = HYPER_STRIDE // STRIDE  # y positions per z position along a side (the hyperprior's)


def learning_rate(step: int, steps: int) -> float:
    """Adam's step size at ``step`` of ``steps``: :data:`LEARNING_RATE`, decayed linearly to a tenth."""
    return LEARNING_RATE * (1 - 0.9 * step / max(1, steps - 1))


def temperature(step: int, steps: int) -> float:
    """Soft rounding's τ at ``step`` of ``steps``: :data:`TAU_START` down to :data:`TAU_END`, geometrically."""
    return TAU_START * (TAU_END / TAU_START) ** (step / max(1, steps - 1))


def soft_round(x, tau: float):
    """SGA's expected rounding of ``x`` at temperature ``tau`` (differentiable; → round(x) as τ → 0)."""
    import torch

    floor = torch.floor(x).detach()
    r = (x - floor).clamp(1e-5, 1 - 1e-5)
    return floor + torch.sigmoid((torch.atanh(r) - torch.atanh(1 - r)) / tau**2)


def refine_steps(grid: tuple[int, int], effort: int) -> int:
    """How many refinement steps an encode of a latent ``grid`` makes at ``effort`` (progress totals)."""
    return STEPS[effort] * sum(1 for _ in tiles(*grid, REFINE_TILE_LATENTS, MARGIN))


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
           progress: Callable[[], None] | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Latents for ``rgb`` (``H×W×3`` uint8) at least as good as ``y`` (from :func:`slimcodec.codec.analyze`).

    Args:
        scale (float): the file's latent scale (the rounding grid is ``1/scale``).
        effort (int): 1 (``y`` unchanged) to 9.
        progress: called once per step.

    Returns:
        (y, z): float32 latents of ``y``'s shape and, for models with a hyperprior, the
        hyper-latents to send with them (None otherwise, and at effort 1). Deterministic.
    """
    check_effort(effort)
    steps = STEPS[effort]
    if steps == 0:
        return y, None
    model = torch_model(wts)
    lam = _lambda(wts, width) * 255**2
    out, out_z = y.copy(), None
    for (top, bottom, left, right), (ot, ob, ol, orr) in tiles(*y.shape[1:], REFINE_TILE_LATENTS, MARGIN):
        core = (top - ot, bottom - ot, left - ol, right - ol)
        box = rgb[ot * STRIDE:ob * STRIDE, ol * STRIDE:orr * STRIDE]
        if box.size == 0:  # all padding: nothing to fit, z from y
            box = None
        refined, z = _refine_box(model, box, y[:, ot:ob, ol:orr], core, width, scale, lam, steps, progress)
        out[:, top:bottom, left:right] = refined[:, core[0]:core[1], core[2]:core[3]]
        if z is not None:
            if out_z is None:
                out_z = np.empty((y.shape[0], y.shape[1] // Z_STEP, y.shape[2] // Z_STEP), np.float32)
            out_z[:, top // Z_STEP:bottom // Z_STEP, left // Z_STEP:right // Z_STEP] = \
                z[:, core[0] // Z_STEP:core[1] // Z_STEP, core[2] // Z_STEP:core[3] // Z_STEP]
    return out, out_z


def _refine_box(model, box: np.ndarray | None, y: np.ndarray, core: tuple[int, int, int, int], width: int,
                scale: float, lam: float, steps: int,
                progress: Callable[[], None] | None) -> tuple[np.ndarray, np.ndarray | None]:
    """Refine the latents of one tile (and its z): the loss counts the core's pixels and bits only."""
    import torch

    start = torch.from_numpy(np.ascontiguousarray(y))[None]
    params = list(model.parameters())
    was = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        start_z = _latent_codec(model).hyper_latents(model, start, width)
        if box is None:
            for _ in range(steps):
                if progress is not None:
                    progress()
            return y, None if start_z is None else start_z[0].numpy()
        objective = _objective(model, box, core, width, scale, lam)
        variables = [start.clone().requires_grad_(True)]
        if start_z is not None:
            variables.append(start_z.clone().requires_grad_(True))
        optimizer = torch.optim.Adam(variables, lr=LEARNING_RATE)
        with torch.no_grad():
            best, best_value = [v.detach().clone() for v in variables], float(objective(*variables))
        checks = {steps - 1 - round(i * (steps // 2) / CHECKS) for i in range(CHECKS)}
        for i in range(steps):
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(i, steps)
            optimizer.zero_grad(set_to_none=True)
            objective(*variables, rounding=partial(soft_round, tau=temperature(i, steps))).backward()
            optimizer.step()
            if i in checks:
                with torch.no_grad():
                    value = float(objective(*variables))
                if value < best_value:
                    best, best_value = [v.detach().clone() for v in variables], value
            if progress is not None:
                progress()
    finally:
        for p, r in zip(params, was):
            p.requires_grad_(r)
    refined_y, *refined_z = (v[0].numpy().astype(np.float32) for v in best)
    return refined_y, (refined_z[0] if refined_z else None)


def _objective(model, box: np.ndarray, core: tuple[int, int, int, int], width: int, scale: float, lam: float):
    """The tile's objective ``λ·MSE + bits/pixel`` over its core, as a function of (y, z):
    with true rounding unless given a soft ``rounding``."""
    import torch

    ct, cb, cl, cr = core
    x = torch.from_numpy(box.astype(np.float32) / 255.0).permute(2, 0, 1)[None]
    ph, pw = x.shape[2], x.shape[3]  # the image part of the box (the rest is padding)
    rows, cols = slice(ct * STRIDE, min(cb * STRIDE, ph)), slice(cl * STRIDE, min(cr * STRIDE, pw))
    pixels = max(1, (rows.stop - rows.start) * (cols.stop - cols.start))
    target = x[..., rows, cols]

    def objective(y, z=None, rounding=None):
        if rounding is None:
            x_hat, bits = _exact_rd(model, y, width, scale, z)
        else:
            x_hat, bits = model.latent_rd(y, width, scale, noisy_rate=False, rounding=rounding, z=z)
        mse = torch.mean((x_hat[..., :ph, :pw][..., rows, cols] - target) ** 2)
        return lam * mse + bits[..., ct:cb, cl:cr].sum() / pixels

    return objective


def _exact_rd(model, y, width: int, scale: float, z=None):
    """Reconstruction and bits with true rounding (no noise, no graph): what the file would cost;
    z (``h_a(y)`` unless given) has its bits spread over y's positions."""
    import torch

    with torch.no_grad():
        return model.latent_rd(y, width, scale, noisy_rate=False, z=z)


def _latent_codec(model):
    """The latent-codec module of a torch model's architecture (:mod:`slimcodec.latents`)."""
    from slimcodec.latents import codec_of
    from slimcodec.models import architecture_of

    return codec_of(architecture_of(model))
