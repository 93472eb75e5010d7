"""Image quality and rate metrics: PSNR, MS-SSIM, bpp and Bjøntegaard deltas.

Conventions (also in benchmarks/README.md):

- Images are ``H×W×3`` uint8 RGB arrays; metrics are computed on all three
  channels at 8 bits, never on luma alone.
- :func:`psnr` is per image; a data set reports the mean of per-image PSNRs
  (not the PSNR of the mean MSE), as CompressAI and the published curves do.
- :func:`ms_ssim` is Wang, Simoncelli and Bovik's 5-scale MS-SSIM (2003) with
  the usual constants (11-tap Gaussian window, σ = 1.5, K1 = 0.01, K2 = 0.03,
  scale weights 0.0448, 0.2856, 0.3001, 0.2363, 0.1333), computed per RGB
  channel and averaged over channels. It matches ``pytorch_msssim.ms_ssim``
  with ``data_range=255`` (tested when that package happens to be installed).
- :func:`bpp` counts real bytes: ``8 * num_bytes / (width * height)``.
- :func:`bd_rate` and :func:`bd_psnr` are Bjøntegaard's deltas (VCEG-M33):
  fit each curve, integrate the difference over the interval where both
  curves have data, and average. ``method="cubic"`` is the original
  least-squares cubic polynomial; ``method="pchip"`` interpolates with
  piecewise cubic Hermite (monotone) polynomials, as in later VCEG/JVET
  spreadsheets. Rates go through ``log10``.

Example::

    >>> import numpy as np
    >>> a = np.full((4, 4, 3), 100, np.uint8)
    >>> round(psnr(a, a + 5), 2)
    34.15
    >>> rates, psnrs = [0.1, 0.2, 0.4, 0.8], [28.0, 30.0, 32.0, 34.0]
    >>> round(bd_rate(rates, psnrs, [0.9 * r for r in rates], psnrs), 6)
    -10.0
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from contextlib import contextmanager

import numpy as np

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03
# pytorch_msssim's (and the reference code's) condition for 5 scales with an 11-tap window.
MS_SSIM_MIN_SIDE = (SSIM_WINDOW - 1) * 2 ** (len(MS_SSIM_WEIGHTS) - 1) + 1  # 161
BD_METHODS = ("cubic", "pchip")


def _pair(a, b) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    if a.ndim not in (2, 3) or a.size == 0:
        raise ValueError(f"expected an H×W or H×W×C image, got shape {a.shape}")
    return a, b


def mse(a, b) -> float:
    """Mean squared error over all pixels and channels (in 8-bit units)."""
    a, b = _pair(a, b)
    d = a.astype(np.float64) - b.astype(np.float64)
    return float(np.mean(d * d))


def psnr(a, b, max_value: float = 255.0) -> float:
    """PSNR in dB of one image pair (``inf`` when they are identical).

    Args:
        a (np.ndarray): reference image, ``H×W×3`` uint8.
        b (np.ndarray): distorted image of the same shape.
        max_value (float): peak value (255 for 8 bits).

    Returns:
        float: ``10 log10(max_value² / MSE)``.
    """
    err = mse(a, b)
    return math.inf if err == 0 else 10.0 * math.log10(max_value * max_value / err)


def bpp(num_bytes: int, width: int, height: int) -> float:
    """Bits per pixel of a file of ``num_bytes`` bytes for a ``width×height`` image."""
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    return 8.0 * num_bytes / (width * height)


def quality_at_rate(points, bpp: float) -> float | None:
    """Quality of a rate-quality curve at ``bpp``, linear in log-rate; ``None`` outside it.

    Args:
        points: ``(bpp, quality)`` pairs, in any order.
        bpp (float): the rate to read the curve at.

    Example:
        >>> round(quality_at_rate([(0.25, 30.0), (1.0, 36.0)], 0.5), 6)
        33.0
        >>> quality_at_rate([(0.25, 30.0), (1.0, 36.0)], 2.0) is None
        True
    """
    points = sorted(points)
    for (b0, q0), (b1, q1) in zip(points, points[1:]):
        if b0 <= bpp <= b1:
            if b1 == b0:
                return max(q0, q1)
            t = (math.log(bpp) - math.log(b0)) / (math.log(b1) - math.log(b0))
            return q0 + t * (q1 - q0)
    return None


def _gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA):
    import torch

    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x * x) / (2 * sigma * sigma))
    return g / g.sum()


def _ssim_terms(x, y, window, data_range: float):
    """Mean SSIM and mean contrast-structure term per (batch, channel), 'valid' filtering.

    Runs in float32 for speed (several times faster than float64 on CPU).
    The moments are taken about each channel's mean, which removes most of
    the cancellation in ``E[x²] - E[x]²`` that would otherwise cost float32
    its accuracy; MS-SSIM agrees with a float64 computation to about 1e-5.
    """
    import torch
    import torch.nn.functional as F

    c = x.shape[1]
    shift = x.mean(dim=(2, 3), keepdim=True)
    xs, ys = x - shift, y - shift
    stack = torch.cat([xs, ys, xs * xs, ys * ys, xs * ys], dim=1)
    w = window.float()
    wh = w.view(1, 1, 1, -1).repeat(5 * c, 1, 1, 1)
    wv = w.view(1, 1, -1, 1).repeat(5 * c, 1, 1, 1)
    blurred = F.conv2d(F.conv2d(stack, wh, groups=5 * c), wv, groups=5 * c)
    mu_xs, mu_ys, exx, eyy, exy = blurred.split(c, dim=1)
    sxx = exx - mu_xs * mu_xs
    syy = eyy - mu_ys * mu_ys
    sxy = exy - mu_xs * mu_ys
    mu_x, mu_y = mu_xs + shift, mu_ys + shift
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    cs_map = (2 * sxy + c2) / (sxx + syy + c2)
    ssim_map = (2 * mu_x * mu_y + c1) / (mu_x * mu_x + mu_y * mu_y + c1) * cs_map
    return ssim_map.mean(dim=(2, 3)), cs_map.mean(dim=(2, 3))


@contextmanager
def _one_torch_thread():
    """Run torch on one thread, then restore the previous count.

    The blurs here are small; torch's thread pool gains little on them and,
    on a machine whose cores are busy (a training run), its spinning threads
    made MS-SSIM 10x slower in CPU time (1.15 s vs 0.08 s per Kodak image).
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def ms_ssim(a, b, data_range: float = 255.0) -> float:
    """Multi-scale SSIM (Wang et al. 2003, 5 scales) of one RGB image pair.

    Between scales the images are averaged over 2×2 blocks (odd sides are
    zero-padded by one, as in ``pytorch_msssim``). Negative per-scale terms
    are clipped to 0 before the weighted product.

    Args:
        a (np.ndarray): reference image, ``H×W×3`` (or ``H×W``) uint8.
        b (np.ndarray): distorted image of the same shape.
        data_range (float): value range of the pixels (255 for 8 bits).

    Returns:
        float: MS-SSIM in [0, 1]; ``nan`` when a side is shorter than
        ``MS_SSIM_MIN_SIDE`` (161 px), too small for five scales.
    """
    import torch
    import torch.nn.functional as F

    a, b = _pair(a, b)
    if min(a.shape[:2]) < MS_SSIM_MIN_SIDE:
        return math.nan
    if a.ndim == 2:
        a, b = a[:, :, None], b[:, :, None]
    x = torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1), dtype=np.float32))[None]
    y = torch.from_numpy(np.ascontiguousarray(b.transpose(2, 0, 1), dtype=np.float32))[None]
    window = _gaussian_window()
    weights = torch.tensor(MS_SSIM_WEIGHTS, dtype=torch.float64)
    levels = len(MS_SSIM_WEIGHTS)
    terms = []
    with torch.no_grad(), _one_torch_thread():
        for level in range(levels):
            ssim_val, cs = _ssim_terms(x, y, window, data_range)
            if level < levels - 1:
                terms.append(torch.relu(cs))
                pad = [s % 2 for s in x.shape[2:]]
                x = F.avg_pool2d(x, kernel_size=2, padding=pad)
                y = F.avg_pool2d(y, kernel_size=2, padding=pad)
        terms.append(torch.relu(ssim_val))
        stacked = torch.stack(terms, dim=0)  # [levels, 1, C]
        per_channel = torch.prod(stacked.double() ** weights.view(-1, 1, 1), dim=0)
    return float(per_channel.mean())


def ms_ssim_db(value: float) -> float:
    """MS-SSIM on a dB scale, ``-10 log10(1 - value)`` (how RD plots show it)."""
    if math.isnan(value):
        return math.nan
    return math.inf if value >= 1.0 else -10.0 * math.log10(1.0 - value)


# --- Bjøntegaard deltas --------------------------------------------------------------


def _curve(x: Sequence[float], y: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Sort a curve by ``x``, dropping non-finite points and averaging duplicate ``x``."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError("a curve needs two 1-D sequences of the same length")
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    ux = np.unique(x)
    uy = np.array([y[x == v].mean() for v in ux])
    if ux.size < 2:
        raise ValueError("a curve needs at least two points with distinct values")
    return ux, uy


def _pchip_slopes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Fritsch–Carlson derivatives of the monotone piecewise cubic interpolant (as SciPy)."""
    h = np.diff(x)
    delta = np.diff(y) / h
    n = x.size
    d = np.zeros(n)
    if n == 2:
        d[:] = delta[0]
        return d
    for k in range(1, n - 1):
        if delta[k - 1] * delta[k] > 0:
            w1 = 2 * h[k] + h[k - 1]
            w2 = h[k] + 2 * h[k - 1]
            d[k] = (w1 + w2) / (w1 / delta[k - 1] + w2 / delta[k])

    def edge(h0, h1, m0, m1):
        s = ((2 * h0 + h1) * m0 - h0 * m1) / (h0 + h1)
        if np.sign(s) != np.sign(m0):
            return 0.0
        if np.sign(m0) != np.sign(m1) and abs(s) > abs(3 * m0):
            return 3 * m0
        return s

    d[0] = edge(h[0], h[1], delta[0], delta[1])
    d[-1] = edge(h[-1], h[-2], delta[-1], delta[-2])
    return d


def _pchip_integral(x: np.ndarray, y: np.ndarray, lo: float, hi: float) -> float:
    """Exact integral over ``[lo, hi]`` (inside ``[x0, xn]``) of the PCHIP interpolant."""
    d = _pchip_slopes(x, y)
    total = 0.0
    for k in range(x.size - 1):
        a, b = max(lo, x[k]), min(hi, x[k + 1])
        if b <= a:
            continue
        h = x[k + 1] - x[k]
        # Cubic in t = (s - x_k): y_k + d_k t + c2 t² + c3 t³.
        m = (y[k + 1] - y[k]) / h
        c2 = (3 * m - 2 * d[k] - d[k + 1]) / h
        c3 = (d[k] + d[k + 1] - 2 * m) / (h * h)
        poly = np.array([c3 / 4, c2 / 3, d[k] / 2, y[k], 0.0])  # antiderivative in t
        total += np.polyval(poly, b - x[k]) - np.polyval(poly, a - x[k])
    return float(total)


def _mean_over(x: np.ndarray, y: np.ndarray, lo: float, hi: float, method: str) -> float:
    """Average over ``[lo, hi]`` of the curve ``y(x)`` fitted with ``method``."""
    if method == "cubic":
        deg = min(3, x.size - 1)  # with fewer than four points, the highest degree they fix
        p = np.polyint(np.polyfit(x, y, deg))
        return float((np.polyval(p, hi) - np.polyval(p, lo)) / (hi - lo))
    if method == "pchip":
        return _pchip_integral(x, y, lo, hi) / (hi - lo)
    raise ValueError(f"unknown BD method {method!r}; use one of {', '.join(BD_METHODS)}")


def bd_rate(rate_anchor, psnr_anchor, rate_test, psnr_test, method: str = "cubic") -> float:
    """Bjøntegaard delta rate of a test curve against an anchor, in percent.

    Negative means the test codec needs fewer bits for the same quality.
    Quality may be any dB-like measure (PSNR, MS-SSIM in dB).

    Args:
        rate_anchor (Sequence[float]): anchor rates (bpp), any order.
        psnr_anchor (Sequence[float]): anchor qualities (dB).
        rate_test (Sequence[float]): test rates.
        psnr_test (Sequence[float]): test qualities.
        method (str): ``"cubic"`` (polynomial fit, VCEG-M33) or ``"pchip"``.

    Returns:
        float: average rate difference in %, or ``nan`` when the curves'
        quality ranges do not overlap.

    Raises:
        ValueError: a curve has fewer than two distinct points, or a rate is not positive.
    """
    for r in (rate_anchor, rate_test):
        if np.any(np.asarray(r, dtype=np.float64) <= 0):
            raise ValueError("rates must be positive")
    qa, la = _curve(psnr_anchor, np.log10(np.asarray(rate_anchor, dtype=np.float64)))
    qt, lt = _curve(psnr_test, np.log10(np.asarray(rate_test, dtype=np.float64)))
    lo, hi = max(qa[0], qt[0]), min(qa[-1], qt[-1])
    if not hi > lo:
        return math.nan
    diff = _mean_over(qt, lt, lo, hi, method) - _mean_over(qa, la, lo, hi, method)
    return float((10.0**diff - 1.0) * 100.0)


def bd_psnr(rate_anchor, psnr_anchor, rate_test, psnr_test, method: str = "cubic") -> float:
    """Bjøntegaard delta PSNR (dB) of a test curve against an anchor.

    Positive means the test codec gives higher quality at the same rate.
    Arguments as :func:`bd_rate`; ``nan`` when the rate ranges do not overlap.
    """
    for r in (rate_anchor, rate_test):
        if np.any(np.asarray(r, dtype=np.float64) <= 0):
            raise ValueError("rates must be positive")
    la, qa = _curve(np.log10(np.asarray(rate_anchor, dtype=np.float64)), psnr_anchor)
    lt, qt = _curve(np.log10(np.asarray(rate_test, dtype=np.float64)), psnr_test)
    lo, hi = max(la[0], lt[0]), min(la[-1], lt[-1])
    if not hi > lo:
        return math.nan
    return float(_mean_over(lt, qt, lo, hi, method) - _mean_over(la, qa, lo, hi, method))
