"""Choosing a network width for a target file size or quality.

One set of weights runs at a few widths (192, 144, 96, 72 and 48 for the
shipped ones); :func:`choose_width` picks one for an image so that the file
meets a target, measuring real ``.slim`` files (header, chunks and checksum
included), never estimates:

- a rate target (``target_bpp`` or ``target_bytes``) picks the **widest**
  width whose file is no larger than the target. The target is strict: the
  file never exceeds it (like tfci's ``--bpp_strict``). When even the
  narrowest width is too large, the narrowest is used and ``met`` is false.
- a quality target (``target_psnr``, dB on 8-bit RGB) picks the **narrowest**
  width whose decoded image reaches it. When no width does, the widest is
  used and ``met`` is false.

Cost and search order. Each candidate width costs one analysis transform
(plus, for a PSNR target, one synthesis); at width ``w`` every hidden layer
has ``w`` channels, so the cost grows about as ``w²`` and the widths cannot
share their analysis. The image is prepared once, every width is encoded at
most once, and the chosen width's bytes are returned as they are. Widths are
tried from the narrowest up, so the expensive wide widths are only run when
the target needs them:

- PSNR: the first width reaching the target is, by construction, the
  narrowest one reaching it (no assumption needed).
- rate: the search stops at the first width whose file is too large. That
  relies on file size growing with width, which holds in practice, so it is
  checked on the sizes measured: the search only stops once at least two
  widths were measured and their sizes grow with width (when the narrowest
  is already too large, the next one is tried to see the trend); when they
  do not grow, every width is tried. ``exhaustive=True`` always tries every
  width. Either way the returned file never exceeds the target.

Example (the shipped weights, whose widths are 192, 144, 96, 72 and 48):

    >>> from PIL import Image
    >>> from slimcodec.ratecontrol import choose_width
    >>> image = Image.new("RGB", (64, 48), (90, 140, 200))
    >>> choice = choose_width(image, target_bytes=100_000)  # every width fits
    >>> choice.met, choice.width, len(choice.data) <= 100_000, choice.data[:4]
    (True, 192, True, b'SLIM')
    >>> choice = choose_width(image, target_bytes=1)  # no width fits: the narrowest
    >>> choice.met, choice.width, choice.reason.startswith("no width fits in 1 byte;")
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

__all__ = ["Choice", "Target", "Trial", "choose_width", "make_target", "parse_size"]

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


@dataclass(frozen=True)
class Trial:
    """One width tried: its real file size and, for a PSNR target, its quality.

    Attributes:
        width (int): network width.
        num_bytes (int): size of the ``.slim`` file.
        bpp (float): ``8 * num_bytes / pixels``.
        psnr (float | None): dB on 8-bit RGB; measured only for a PSNR target.
    """

    width: int
    num_bytes: int
    bpp: float
    psnr: float | None = None


@dataclass(frozen=True)
class Choice:
    """The outcome of :func:`choose_width`.

    Attributes:
        width (int): the chosen width.
        data (bytes): the ``.slim`` file at that width.
        bpp (float): its bits per pixel (real file size).
        psnr (float | None): its PSNR in dB on 8-bit RGB; measured only for a
            PSNR target (``None`` for rate targets: no decoding is done).
        met (bool): whether it meets the target.
        reason (str): one line explaining the choice.
        target (Target): the target.
        trials (tuple[Trial, ...]): every width tried, in the order tried.
    """

    width: int
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


def _grows_with_width(trials: dict[int, Trial]) -> bool:
    """Whether the measured file sizes never shrink as the width grows."""
    sizes = [trials[w].num_bytes for w in sorted(trials)]
    return all(a <= b for a, b in zip(sizes, sizes[1:]))


def choose_width(image, *, target_bpp: float | None = None, target_bytes: int | None = None,
                 target_psnr: float | None = None, weights=None, metadata: bool = True,
                 exhaustive: bool = False) -> Choice:
    """Encode ``image`` at the width that meets a target (see the module docstring).

    Give exactly one target.

    Args:
        image (PIL.Image.Image): any image :func:`slimcodec.encode` accepts.
        target_bpp (float | None): largest bits per pixel of the file.
        target_bytes (int | None): largest file size in bytes.
        target_psnr (float | None): smallest PSNR in dB (8-bit RGB, alpha not included).
        weights (Weights | str | PathLike | None): loaded weights or a path;
            the shipped ones by default.
        metadata (bool): keep the ICC profile and EXIF (they count towards the size).
        exhaustive (bool): for a rate target, try every width instead of stopping
            at the first one that is too large.

    Returns:
        Choice: width, the ``.slim`` bytes, bpp, PSNR, whether the target is
        met and a one-line reason.

    Raises:
        ValueError: no target, several targets, or a target that is not positive.
        UnsupportedImageError: the image cannot be coded.
    """
    target = make_target(target_bpp=target_bpp, target_bytes=target_bytes, target_psnr=target_psnr)

    import numpy as np

    from slimcodec import codec, errors
    from slimcodec.imageio import PixelData, prepare
    from slimcodec.metrics import psnr
    from slimcodec.weights import Weights, load_weights

    wts = weights if isinstance(weights, Weights) else load_weights(weights)
    pixels = prepare(image)
    category = getattr(errors, "ConversionWarning", UserWarning)
    for note in pixels.notes:  # as slimcodec.encode does
        warnings.warn(note, category, stacklevel=2)
    if not metadata:
        pixels = PixelData(pixels.rgb, pixels.gray, pixels.alpha)
    height, width_px = pixels.rgb.shape[:2]
    num_pixels = height * width_px

    data_of: dict[int, bytes] = {}
    trials: dict[int, Trial] = {}

    def run(width: int) -> Trial:
        data = codec.encode_pixels(pixels, width, weights=wts)
        quality = None
        if target.kind == "psnr":
            decoded = codec.decode(data, weights=wts)
            quality = psnr(pixels.rgb, np.asarray(decoded.convert("RGB")))
        data_of[width] = data
        trials[width] = Trial(width, len(data), 8 * len(data) / num_pixels, quality)
        return trials[width]

    def fits(trial: Trial) -> bool:
        if target.kind == "bytes":
            return trial.num_bytes <= target.value
        if target.kind == "bpp":
            return 8 * trial.num_bytes <= target.value * num_pixels
        return trial.psnr >= target.value

    ascending = sorted(wts.widths)
    for width in ascending:
        ok = fits(run(width))
        if target.kind == "psnr" and ok:
            break  # the narrowest width reaching the target
        if target.is_rate and not ok and not exhaustive and len(trials) >= 2 and _grows_with_width(trials):
            break  # wider widths are larger still (checked on the sizes so far)

    if target.is_rate:
        fitting = [w for w in trials if fits(trials[w])]
        chosen = max(fitting) if fitting else ascending[0]
        met = bool(fitting)
        what = "the widest width" if len(ascending) > 1 else "the only width"
        fallback = f"using the narrowest (width {chosen}, {_describe(target, trials[chosen])})"
        reason = (f"width {chosen}: {_describe(target, trials[chosen])}, {what} within {target.describe()}"
                  if met else f"no width fits in {target.describe()}; {fallback}")
    else:
        reaching = [w for w in trials if fits(trials[w])]
        chosen = min(reaching) if reaching else ascending[-1]
        met = bool(reaching)
        what = "the narrowest width" if len(ascending) > 1 else "the only width"
        fallback = f"using the widest (width {chosen}, {_describe(target, trials[chosen])})"
        reason = (f"width {chosen}: {_describe(target, trials[chosen])}, {what} reaching {target.describe()}"
                  if met else f"no width reaches {target.describe()}; {fallback}")
    best = trials[chosen]
    return Choice(width=chosen, data=data_of[chosen], bpp=best.bpp, psnr=best.psnr, met=met,
                  reason=reason, target=target, trials=tuple(trials.values()))
