"""Choosing a width and a latent scale for a target file size or quality.

One set of weights runs at a few widths (192, 144, 96, 72 and 48 for the
shipped ones), and a latent scale (:func:`slimcodec.encode`'s ``scale``) moves
each width continuously along its rate-distortion curve: below 1 the latents
are quantized more coarsely (smaller file), above 1 more finely.
:func:`choose_setting` picks both for an image so that the file meets a target,
measuring real ``.slim`` files (header, chunks and checksum included), never
estimates:

- a rate target (``target_bpp`` or ``target_bytes``) is strict: the file never
  exceeds it (like tfci's ``--bpp_strict``). The widths are tried at scale 1
  from the narrowest up until one is too large; that width is then scaled down
  (bisection on the scale) to the largest file that fits. Measured on Kodak
  (docs/results.md), a wider width scaled down to a narrower one's rate is as
  good as or better than the narrower width, so this fills the gaps between the
  five rate points. When every width fits at scale 1, the widest is scaled up
  (at most to ``MAX_AUTO_SCALE``) to use the budget. When nothing fits, the
  smallest file tried is returned and ``met`` is false.
- a quality target (``target_psnr``, dB on 8-bit RGB) finds the narrowest width
  reaching it at scale 1, then scales that width down to the smallest file
  that still reaches it. When no width does, the widest is scaled up (at most
  to ``MAX_AUTO_SCALE``); if that is not enough, ``met`` is false.

Cost. Each width tried costs one analysis transform, whose latents are then
quantized at every scale tried (range coding only, milliseconds); a quality
target also costs one synthesis per setting tried (about 7 for the scale
search). The narrow widths are tried first, so the expensive wide ones only
run when the target needs them. That relies on file size growing with width,
which holds in practice; ``exhaustive=True`` tries every width at scale 1.
``scales=False`` keeps to the five widths at scale 1.

Example (the shipped weights, whose widths are 192, 144, 96, 72 and 48):

    >>> from PIL import Image
    >>> from slimcodec.ratecontrol import choose_setting
    >>> image = Image.new("RGB", (64, 48), (90, 140, 200))
    >>> choice = choose_setting(image, target_bytes=100_000, scales=False)  # every width fits
    >>> choice.met, choice.width, choice.scale, len(choice.data) <= 100_000, choice.data[:4]
    (True, 192, 1.0, True, b'SLIM')
    >>> choice = choose_setting(image, target_bytes=1)  # nothing fits: the smallest file
    >>> choice.met, choice.width, choice.reason.startswith("nothing fits in 1 byte;")
    (False, 48, True)

Sizes on the command line (``slim encode --target-size``) are parsed by
:func:`parse_size`: ``k``/``kB`` are 1000 bytes, ``KiB`` is 1024 bytes.
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass, field
from fractions import Fraction

__all__ = ["MAX_AUTO_SCALE", "Choice", "Target", "Trial", "choose_setting", "make_target", "parse_size"]

# Units of parse_size, matched case-insensitively: SI prefixes are powers of
# 1000 (as file managers and `slim`'s own output count), IEC ones powers of 1024.
SIZE_UNITS = {
    "": 1, "b": 1,
    "k": 1000, "kb": 1000, "ki": 1024, "kib": 1024,
    "m": 1000**2, "mb": 1000**2, "mi": 1024**2, "mib": 1024**2,
    "g": 1000**3, "gb": 1000**3, "gi": 1024**3, "gib": 1024**3,
}
_SIZE = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([A-Za-z]*)\s*")


def parse_size(text: str) -> int:
    """Parse a file size such as ``"40000"``, ``"40k"``, ``"1.5MB"`` or ``"64KiB"`` to bytes.

    ``k``, ``kB`` (any case) = 1000 bytes, ``M``/``MB`` = 1000², ``G``/``GB`` = 1000³;
    ``KiB`` = 1024, ``MiB`` = 1024², ``GiB`` = 1024³ (``Ki``, ``Mi``, ``Gi`` too);
    a bare number or ``B`` means bytes. Fractions are rounded down, so the
    limit is never exceeded.

    Raises:
        ValueError: the text is not a size, or it is less than one byte.

    Example:
        >>> parse_size("1k"), parse_size("1KiB"), parse_size("1.5 MB"), parse_size("512")
        (1000, 1024, 1500000, 512)
    """
    match = _SIZE.fullmatch(str(text))
    unit = match.group(2).lower() if match else None
    if match is None or unit not in SIZE_UNITS:
        raise ValueError(f"invalid size {text!r}: use bytes or a unit, e.g. 40000, 40k, 1.5MB, 64KiB")
    num_bytes = math.floor(Fraction(match.group(1)) * SIZE_UNITS[unit])
    if num_bytes < 1:
        raise ValueError(f"invalid size {text!r}: must be at least 1 byte")
    return num_bytes


@dataclass(frozen=True)
class Target:
    """What :func:`choose_width` aims for.

    Attributes:
        kind (str): ``"bpp"``, ``"bytes"`` or ``"psnr"``.
        value (float): the target in those units (an ``int`` for bytes).
    """

    kind: str
    value: float

    @property
    def is_rate(self) -> bool:
        return self.kind in ("bpp", "bytes")

    def describe(self) -> str:
        """``"0.5 bpp"``, ``"40000 bytes"`` or ``"32 dB"``."""
        unit = {"bpp": "bpp", "bytes": "bytes", "psnr": "dB"}[self.kind]
        return f"{self.value:g} {unit}" if self.kind != "bytes" else _plural_bytes(self.value)


def make_target(*, target_bpp: float | None = None, target_bytes: int | None = None,
                target_psnr: float | None = None) -> Target:
    """Check that exactly one target is given and that it makes sense.

    Raises:
        ValueError: none or several targets, or a value that is not positive
            and finite (``target_bytes`` must be an integer).
    """
    given = {k: v for k, v in (("bpp", target_bpp), ("bytes", target_bytes), ("psnr", target_psnr))
             if v is not None}
    if len(given) != 1:
        names = ", ".join(f"target_{k}" for k in given) or "none"
        raise ValueError(f"give exactly one of target_bpp, target_bytes, target_psnr (got {names})")
    (kind, value), = given.items()
    if kind == "bytes":
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"target_bytes must be a positive integer, got {value!r}")
    else:
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"target_{kind} must be a number, got {value!r}") from None
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"target_{kind} must be positive and finite, got {value!r}")
    return Target(kind, value)


MAX_AUTO_SCALE = 4.0  # rate control scales the widest width up at most this much
_SCALE_STEPS = 8  # bisection steps on the scale: the last interval is under 1 %


@dataclass(frozen=True)
class Trial:
    """One setting tried: its real file size and, for a PSNR target, its quality.

    Attributes:
        width (int): network width.
        scale (float): latent scale (``units / 4096``).
        num_bytes (int): size of the ``.slim`` file.
        bpp (float): ``8 * num_bytes / pixels``.
        psnr (float | None): dB on 8-bit RGB; measured only for a PSNR target.
    """

    width: int
    scale: float
    num_bytes: int
    bpp: float
    psnr: float | None = None


@dataclass(frozen=True)
class Choice:
    """The outcome of :func:`choose_setting`.

    Attributes:
        width (int): the chosen width.
        scale (float): the chosen latent scale.
        data (bytes): the ``.slim`` file.
        bpp (float): its bits per pixel (real file size).
        psnr (float | None): its PSNR in dB on 8-bit RGB; measured only for a
            PSNR target (``None`` for rate targets: no decoding is done).
        met (bool): whether it meets the target.
        reason (str): one line explaining the choice.
        target (Target): the target.
        trials (tuple[Trial, ...]): every setting tried, in the order tried.
    """

    width: int
    scale: float
    data: bytes = field(repr=False)
    bpp: float
    psnr: float | None
    met: bool
    reason: str
    target: Target
    trials: tuple[Trial, ...] = ()


def _plural_bytes(num_bytes: int) -> str:
    return f"{num_bytes} byte{'' if num_bytes == 1 else 's'}"


def _fmt_db(value: float) -> str:
    return f"{value:.2f} dB" if math.isfinite(value) else "lossless (inf dB)"


def _describe(target: Target, trial: Trial) -> str:
    if target.kind == "bytes":
        return _plural_bytes(trial.num_bytes)
    if target.kind == "psnr":
        return _fmt_db(trial.psnr)
    return f"{trial.bpp:.3f} bpp"


def _setting(trial: Trial) -> str:
    return f"width {trial.width}" + (f" at scale {trial.scale:.3f}" if trial.scale != 1.0 else "")


def _bisect(ok, good: int, bad: int) -> int:
    """The last integer between ``good`` (``ok``) and ``bad`` (not ``ok``) found ``ok``."""
    for _ in range(_SCALE_STEPS):
        if abs(bad - good) <= 1:
            break
        mid = (good + bad) // 2
        if ok(mid):
            good = mid
        else:
            bad = mid
    return good


def choose_setting(image, *, target_bpp: float | None = None, target_bytes: int | None = None,
                   target_psnr: float | None = None, weights=None, metadata=True,
                   scales: bool = True, exhaustive: bool = False, effort: int = 1) -> Choice:
    """Encode ``image`` at the width and latent scale that meet a target (see the module docstring).

    Give exactly one target.

    Args:
        image (PIL.Image.Image | PixelData): any image :func:`slimcodec.encode`
            accepts, or one already prepared (:func:`slimcodec.imageio.prepare`;
            its conversion notes are then not repeated as warnings).
        target_bpp (float | None): largest bits per pixel of the file.
        target_bytes (int | None): largest file size in bytes.
        target_psnr (float | None): smallest PSNR in dB (8-bit RGB, alpha not included).
        weights (Weights | str | PathLike | None): loaded weights or a path;
            the shipped ones by default.
        metadata (bool | str | Iterable[str]): the metadata kept, as in :func:`slimcodec.encode`
            (it counts towards the size).
        scales (bool): search the latent scale too; ``False`` keeps to the widths at scale 1.
        exhaustive (bool): for a rate target, try every width at scale 1 instead of
            stopping at the first one that is too large.
        effort (int): 1 to 9, as in :func:`slimcodec.encode`: each width's latents are
            refined once (at scale 1) and every trial codes them; files are measured as
            always, so a rate target still holds.

    Returns:
        Choice: width, scale, the ``.slim`` bytes, bpp, PSNR, whether the target
        is met and a one-line reason.

    Raises:
        ValueError: no target, several targets, or a target that is not positive.
        UnsupportedImageError: the image cannot be coded.
    """
    target = make_target(target_bpp=target_bpp, target_bytes=target_bytes, target_psnr=target_psnr)
    from slimcodec.effort import check_effort

    check_effort(effort)

    import numpy as np

    from slimcodec import codec, errors
    from slimcodec.entropy import SCALE_ONE, scale_units
    from slimcodec.formats.slimfile import MIN_LATENT_SCALE
    from slimcodec.imageio import PixelData, keep_metadata, prepare
    from slimcodec.metrics import psnr
    from slimcodec.weights import resolve_weights

    wts = resolve_weights(weights)
    if isinstance(image, PixelData):
        pixels = image
    else:
        pixels = prepare(image)
        for note in pixels.notes:  # as slimcodec.encode does
            warnings.warn(note, errors.ConversionWarning, stacklevel=2)
    pixels = keep_metadata(pixels, metadata)
    height, width_px = pixels.rgb.shape[:2]
    num_pixels = height * width_px
    top_units = scale_units(MAX_AUTO_SCALE) if scales else SCALE_ONE
    low_units = MIN_LATENT_SCALE if scales else SCALE_ONE

    latents: dict[int, codec.CodedLatents] = {}
    data_of: dict[Trial, bytes] = {}
    trials: dict[tuple[int, int], Trial] = {}

    def run(width: int, units: int) -> Trial:
        if (width, units) not in trials:
            if width not in latents:
                latents[width] = codec.latents_for(wts, pixels.rgb, width, effort=effort)
            data = codec.encode_latents(pixels, latents[width].y, width, units, wts, z=latents[width].z)
            quality = None
            if target.kind == "psnr":
                decoded = codec.decode(data, weights=wts)
                quality = psnr(pixels.rgb, np.asarray(decoded.convert("RGB")))
            trial = Trial(width, units / SCALE_ONE, len(data), 8 * len(data) / num_pixels, quality)
            trials[width, units], data_of[trial] = trial, data
        return trials[width, units]

    def fits(trial: Trial) -> bool:
        if target.kind == "bytes":
            return trial.num_bytes <= target.value
        if target.kind == "bpp":
            return 8 * trial.num_bytes <= target.value * num_pixels
        return trial.psnr >= target.value

    ascending = sorted(wts.widths)
    first_past = None  # the first width past the target: too large (rate) or reaching it (psnr)
    for width in ascending:
        meets = fits(run(width, SCALE_ONE))
        if target.is_rate and not meets and first_past is None:
            first_past = width
            if not exhaustive:
                break
        if target.kind == "psnr" and meets:
            first_past = width
            break

    ok = lambda units: fits(run(edge, units))  # noqa: E731
    if target.is_rate:
        if first_past is None:  # every width fits: scale the widest up to use the budget
            edge = ascending[-1]
            if top_units != SCALE_ONE and not ok(top_units):
                _bisect(ok, SCALE_ONE, top_units)
        else:  # scale the first width that is too large down until it fits
            edge = first_past
            if low_units != SCALE_ONE and ok(low_units):
                _bisect(ok, low_units, SCALE_ONE)
        fitting = [t for t in trials.values() if fits(t)]
        met = bool(fitting)
        best = (max(fitting, key=lambda t: (t.num_bytes, t.width)) if met
                else min(trials.values(), key=lambda t: t.num_bytes))
        reason = (f"{_setting(best)}: {_describe(target, best)}, the largest file within {target.describe()}"
                  if met else f"nothing fits in {target.describe()}; using the smallest file tried "
                              f"({_setting(best)}, {_describe(target, best)})")
    else:
        if first_past is not None:  # scale the narrowest width reaching the target down
            edge = first_past
            if low_units != SCALE_ONE:
                _bisect(ok, SCALE_ONE, low_units)
        else:  # no width reaches it: scale the widest up
            edge = ascending[-1]
            if top_units != SCALE_ONE and ok(top_units):
                _bisect(ok, top_units, SCALE_ONE)
        reaching = [t for t in trials.values() if fits(t)]
        met = bool(reaching)
        best = (min(reaching, key=lambda t: (t.num_bytes, t.width)) if met
                else max(trials.values(), key=lambda t: (t.psnr, -t.num_bytes)))
        reason = (f"{_setting(best)}: {_describe(target, best)}, the smallest file reaching {target.describe()}"
                  if met else f"nothing reaches {target.describe()}; using the best tried "
                              f"({_setting(best)}, {_describe(target, best)})")
    return Choice(width=best.width, scale=best.scale, data=data_of[best], bpp=best.bpp,
                  psnr=best.psnr, met=met, reason=reason, target=target, trials=tuple(trials.values()))
