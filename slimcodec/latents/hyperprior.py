"""The hyperprior's payload (format 2): z, then y, in one range-coder stream.

Encoding, from the latents ``y`` (``[C, 4·⌈H/64⌉, 4·⌈W/64⌉]``, see :func:`slimcodec.codec.analyze`)::

    z   = h_a(y)                        float, [C, ⌈H/64⌉, ⌈W/64⌉]
    q_z = round(z − median_z)           coded with z's factorized tables (row = channel)
    trunk, σ_acc = h_s(q_z)             integer-exact fixed point (slimcodec.entropy.gaussian)
    μ   = mean_head(trunk)              float
    i   = index(σ_acc · s)              one Gaussian table per y symbol, exact
    q_y = round(s · (y − μ))            coded with table i

Decoding reads q_z, recomputes trunk, σ_acc, μ and i from it exactly as above, reads
q_y, and returns ``ŷ = q_y / s + μ``. Only μ is float: it moves the values, never the
choice of a table, so a decoder on any machine reads the same symbols.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from slimcodec.entropy import SCALE_ONE, quantize
from slimcodec.entropy.gaussian import ACT_BITS, FixedPointHyperSynthesis, GaussianTables
from slimcodec.entropy.rangecoder import Decoder, Encoder, channel_indexes
from slimcodec.entropy.tables import check_payload_holds, information_bits, row_min_bits
from slimcodec.geometry import HYPER_STRIDE, STRIDE
from slimcodec.latents import Latents
from slimcodec.runtime.stage_layers import layers_from_arrays, layers_to_arrays
from slimcodec.timings import Timings, timed
from slimcodec.weights import Weights

Z_STEP = HYPER_STRIDE // STRIDE  # y positions per z position along a side (4)
# stages run as graphs by the onnx runtime; h_s's scale head ("hyper_scale") runs in fixed point instead
GRAPH_STAGES = ("analysis", "synthesis", "hyper_analysis", "hyper_mean")


@dataclass(frozen=True)
class HyperpriorLatents(Latents):
    """y's symbols and ``y_hat`` (see :class:`slimcodec.latents.Latents`), z's symbols and y's table indexes.

    Attributes:
        z (np.ndarray): z's integer symbols (int32 ``[C, h/4, w/4]``).
        indexes (np.ndarray): the Gaussian table of each of y's symbols (``[C, h, w]``).
    """

    z: np.ndarray
    indexes: np.ndarray


def hyper_analysis(wts: Weights, y: np.ndarray, width: int) -> np.ndarray:
    """z (float32 ``[C, h/4, w/4]``) of the latents ``y``."""
    return wts.run("hyper_analysis", width, y)


def side_information(wts: Weights, q_z: np.ndarray, width: int, units: int) -> tuple[np.ndarray, np.ndarray]:
    """y's table indexes (exact) and means (float32), both ``[C, 4h, 4w]``, from z's symbols."""
    trunk, scale_acc = hyper_synthesis(wts, width).run(q_z)
    indexes = wts.gaussian.indexes(scale_acc, units)
    means = wts.run("hyper_mean", width, (trunk / (1 << ACT_BITS)).astype(np.float32))
    return indexes, means


def encode_payload(wts: Weights, y: np.ndarray, width: int, units: int = SCALE_ONE,
                   timings: Timings | None = None) -> bytes:
    """The payload words (little-endian bytes) of latents ``y`` at a latent scale.

    ``timings``, when given, receives the seconds spent in ``"hyper"`` (the hyper networks)
    and ``"entropy"`` (quantization and range coding); see :mod:`slimcodec.timings`.
    """
    z_table = wts.tables[width]
    with timed(timings, "hyper"):
        z = hyper_analysis(wts, y, width)
    with timed(timings, "entropy"):
        q_z = quantize(z, z_table)
    with timed(timings, "hyper"):
        indexes, means = side_information(wts, q_z, width, units)
    with timed(timings, "entropy"):
        centred = y - means
        if units != SCALE_ONE:
            centred = centred * np.float32(units / SCALE_ONE)
        q_y = np.rint(centred).astype(np.int32)
        encoder = Encoder()
        encoder.encode(q_z, channel_indexes(q_z.shape), z_table)
        encoder.encode(q_y, indexes, wts.gaussian)
        return encoder.words().tobytes()


def decode_payload(wts: Weights, words: np.ndarray, width: int, grid: tuple[int, int],
                   units: int = SCALE_ONE, timings: Timings | None = None) -> HyperpriorLatents:
    """Read a payload: the ``z``, ``y`` and ``indexes`` symbols and the latents ``y_hat``.

    Args:
        grid: y's size ``(h, w)``; z's is a quarter of it (:data:`Z_STEP`).
        timings: receives the seconds of ``"hyper"`` and ``"entropy"``, as in :func:`encode_payload`.

    Raises:
        SlimFormatError: the words are not exactly such a payload.
    """
    z_table = wts.tables[width]
    payload_bits = 32 * words.size
    z_grid = (grid[0] // Z_STEP, grid[1] // Z_STEP)
    with timed(timings, "entropy"):
        check_payload_holds(payload_bits, z_grid[0] * z_grid[1] * float(row_min_bits(z_table.counts).sum()),
                            "image size")
        decoder = Decoder(words)
        q_z = decoder.decode(channel_indexes((width, *z_grid)), z_table)
    with timed(timings, "hyper"):
        indexes, means = side_information(wts, q_z, width, units)
    with timed(timings, "entropy"):
        least = float(np.bincount(indexes.reshape(-1), minlength=wts.gaussian.levels)
                      @ row_min_bits(wts.gaussian.counts))
        check_payload_holds(payload_bits, least, "hyperprior's scales")
        q_y = decoder.decode(indexes, wts.gaussian)
        decoder.finish()
        values = q_y.astype(np.float32)
        if units != SCALE_ONE:
            values = values / np.float32(units / SCALE_ONE)
    return HyperpriorLatents(z=q_z, y=q_y, indexes=indexes, y_hat=values + means)


def hyper_synthesis(wts: Weights, width: int) -> FixedPointHyperSynthesis:
    """The integer-exact hyper-synthesis of ``width`` (built once from the weights' h_s layers)."""
    key = ("hyper_synthesis", width)
    if key not in wts.cache:
        wts.cache[key] = FixedPointHyperSynthesis.from_layers(*_hyper_scale(wts, width))
    return wts.cache[key]


def _hyper_scale(wts: Weights, width: int) -> tuple[list, np.ndarray]:
    """h_s's trunk and scale head at ``width`` as float layers, and z's medians."""
    hyper_layers = wts.extras.get("hyper_layers", {})
    if width in hyper_layers:
        return hyper_layers[width]
    medians = wts.model.z_medians(width).reshape(-1).float().cpu().numpy()
    return wts.model.stage_layers("hyper_scale", width), medians


def payload_bits(latents: HyperpriorLatents, wts: Weights, width: int) -> float:
    """The ideal size of the payload in bits: z under its factorized rows, y under its Gaussian rows."""
    bits = information_bits(latents.z, wts.tables[width])
    return bits + information_bits(latents.y, wts.gaussian, latents.indexes)


def exact_rd(model, y, width: int, scale: float):
    """Reconstruction and bits of latents ``y`` (a torch tensor) with true rounding (no noise):
    what the file would cost (:mod:`slimcodec.effort`); z's bits are spread over y's positions."""
    import torch

    from slimcodec.models.factorized import factorized_bits
    from slimcodec.models.hyperprior import gaussian_likelihood

    with torch.no_grad():
        bottleneck = model.entropy_bottleneck[str(width)]
        z = model.hyper_analysis(y, width)
        medians = model.z_medians(width)
        z_hat = torch.round(z - medians) + medians
        mean, scale_raw = model.hyper_synthesis(z_hat, width)
        q = torch.round((y - mean) * scale)
        bits = -torch.log2(gaussian_likelihood(q, scale_raw * scale))
        bits = bits + factorized_bits(bottleneck, z_hat).sum() / bits.numel()
        return model.synthesis(q / scale + mean, width), bits


def torch_stages(model) -> dict:
    """The torch model's function of each stage."""
    return {"analysis": model.analysis, "synthesis": model.synthesis,
            "hyper_analysis": model.hyper_analysis, "hyper_mean": model.h_s_mean}


def model_class() -> type:
    """The torch model (:class:`slimcodec.models.hyperprior.SlimCAEHyperprior`)."""
    from slimcodec.models.hyperprior import SlimCAEHyperprior

    return SlimCAEHyperprior


def file_extras(model) -> dict:
    """What a weights file holds beyond the transforms and tables: y's Gaussian tables (``"gaussian"``)."""
    import torch

    tables = GaussianTables.build().to_arrays()
    return {"gaussian": {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in tables.items()}}


def load_extras(blob: dict) -> dict:
    """The :class:`~slimcodec.weights.Weights` fields of :func:`file_extras`."""
    return {"gaussian": GaussianTables.from_arrays({k: v.numpy() for k, v in blob["gaussian"].items()})}


def bundle_arrays(wts: Weights) -> dict:
    """A runtime bundle's arrays beyond the tables and graphs: the Gaussian tables, and per
    width the float h_s layers its fixed point is built from and z's medians."""
    arrays = {f"gaussian.{k}": v for k, v in wts.gaussian.to_arrays().items()}
    for w in wts.widths:
        layers, medians = _hyper_scale(wts, w)
        arrays.update(layers_to_arrays(f"hyper_scale.{w}", layers))
        arrays[f"zmedians.{w}"] = medians.astype(np.float32)
    return arrays


def bundle_extras(arrays: dict, widths) -> dict:
    """The :class:`~slimcodec.weights.Weights` fields of :func:`bundle_arrays`."""
    gaussian = GaussianTables.from_arrays({k.removeprefix("gaussian."): v for k, v in arrays.items()
                                           if k.startswith("gaussian.")})
    hyper = {w: (layers_from_arrays(f"hyper_scale.{w}", arrays), arrays[f"zmedians.{w}"]) for w in widths}
    return {"gaussian": gaussian, "extras": {"hyper_layers": hyper}}
