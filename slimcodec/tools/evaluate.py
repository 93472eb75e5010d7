"""Evaluate slimcodec and its peers on a folder of images.

For every image, every network width and every peer setting, this codes the
image for real, measures the file's size and decodes it back:

- slimcodec: the bytes of the ``.slim`` file (header, chunks and checksum
  included, metadata left out like the peers') give ``bpp``; ``est_bpp`` is
  the ideal code length of the same symbols under the same integer tables
  (what a perfect entropy coder would spend, escapes included), so
  ``bpp - est_bpp`` is the range coder's plus the container's overhead;
- peers: see :mod:`slimcodec.tools.peers`.

Quality is PSNR and MS-SSIM on 8-bit RGB (see :mod:`slimcodec.metrics`).
Images are read as :func:`slimcodec.imageio.prepare` reads them; meant for
RGB photos (an alpha channel would be coded losslessly in the .slim file and
counted in its size, while the peers get RGB only).
A data set reports, per codec and setting, the mean bpp and the mean of the
per-image PSNRs; the RD curve of a codec joins those means. BD-rates of
slimcodec against each peer use those curves, restricted to the peer's points
that bracket slimcodec's quality range (one point beyond it on each side):
a sweep of a dozen points spanning 0.1–3 bpp is otherwise fitted by one cubic
over a range far wider than the overlap.

Outputs in the report folder: ``points.csv`` (one row per image and
setting), ``summary.csv``, ``bd.csv``, ``results.json`` (all of these plus
run details), ``rd_psnr.png`` and ``rd_msssim.png`` (with matplotlib), and
``report.md``.

:func:`run_eval` measures and returns the result; :func:`evaluate` is the command
(``slim eval`` and ``python -m slimcodec.tools.evaluate``): it writes the report and
returns the exit code. Usage::

    slim eval ../shared/data/kodak -o eval-kodak
    python -m slimcodec.tools.evaluate DIR --widths 192,96,48 --peers jpeg,webp --limit 4

Exit codes: 0 all points measured, 1 some images or points failed, 2 usage error.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
import time
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import TextIO

import numpy as np

from slimcodec import __version__
from slimcodec import metrics as M
from slimcodec.suffixes import IMAGE_SUFFIXES
from slimcodec.tools.machine import library_versions, machine_description

SLIM = "slimcodec"
POINT_FIELDS = ("image", "codec", "setting", "width_px", "height_px", "num_bytes", "bpp", "est_bpp",
                "psnr", "ms_ssim", "ms_ssim_db", "enc_time_s", "dec_time_s")
SUMMARY_FIELDS = ("codec", "setting", "num_images", "bpp", "est_bpp", "psnr", "ms_ssim", "ms_ssim_db")
BD_FIELDS = ("anchor", "bd_rate_psnr", "bd_rate_psnr_pchip", "bd_psnr", "bd_rate_msssim",
             "anchor_points", "published")

# Published PSNR (dB) at 0.25 / 0.5 / 1.0 bpp on Kodak (CompressAI's curves, via
# /work/shared/DESIGN.md section 5). Shown for orientation only: not measured here.
PUBLISHED_KODAK = {
    "JPEG (published)": (24.66, 28.95, 32.59),
    "JPEG 2000 (published)": (28.57, 31.27, 34.71),
    "WebP (published)": (28.55, 31.32, 35.11),
    "Ballé 2018 factorized (published)": (29.15, 31.83, 35.58),
    "Ballé 2018 hyperprior (published)": (29.95, 33.06, 37.14),
    "BPG 4:4:4 (published)": (30.32, 33.32, 37.16),
    "AV1 (published)": (30.52, 33.66, 37.59),
    "VTM (published)": (31.27, 34.37, 38.24),
}
PUBLISHED_RATES = (0.25, 0.5, 1.0)


# --- measuring ---------------------------------------------------------------------


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files directly in ``folder`` (by suffix), sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise NotADirectoryError(f"{folder}: not a folder")
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def measure_slim(wts, pixels, width: int, effort: int = 1) -> dict:
    """Code prepared pixels at ``width`` (and encoder ``effort``) and measure the result.

    Returns:
        dict: ``num_bytes, bpp, est_bpp, psnr, ms_ssim, enc_time_s, dec_time_s``.
    """
    from slimcodec.codec import decode_image, decode_latents, encode_pixels
    from slimcodec.latents import codec_of

    h, w = pixels.rgb.shape[:2]
    t0 = time.perf_counter()
    data = encode_pixels(pixels, width, weights=wts, metadata=False, effort=effort)
    t1 = time.perf_counter()
    slim, latents, _ = decode_latents(data, weights=wts)  # what decode() does, keeping the symbols
    decoded = np.asarray(decode_image(slim, latents, wts).convert("RGB"))
    t2 = time.perf_counter()
    bits = codec_of(wts.architecture).payload_bits(latents, wts, width)
    return {
        "num_bytes": len(data),
        "bpp": M.bpp(len(data), w, h),
        "est_bpp": bits / (w * h),
        **_quality(pixels.rgb, decoded),
        "enc_time_s": t1 - t0,
        "dec_time_s": t2 - t1,
    }


def measure_peer(peer, rgb: np.ndarray, setting) -> dict:
    """Code ``rgb`` with a peer at ``setting`` and measure the result (keys as :func:`measure_slim`)."""
    h, w = rgb.shape[:2]
    t0 = time.perf_counter()
    data = peer.encode(rgb, setting)
    t1 = time.perf_counter()
    decoded = peer.decode(data)
    t2 = time.perf_counter()
    if decoded.shape != rgb.shape:
        raise RuntimeError(f"{peer.name} decoded {decoded.shape}, expected {rgb.shape}")
    return {"num_bytes": len(data), "bpp": M.bpp(len(data), w, h), "est_bpp": None,
            **_quality(rgb, decoded), "enc_time_s": t1 - t0, "dec_time_s": t2 - t1}


def _quality(ref: np.ndarray, out: np.ndarray) -> dict:
    msssim = M.ms_ssim(ref, out)
    return {"psnr": M.psnr(ref, out), "ms_ssim": msssim, "ms_ssim_db": M.ms_ssim_db(msssim)}


# --- summarising -------------------------------------------------------------------


def _mean(values: Iterable) -> float | None:
    vals = [v for v in values if v is not None]
    if not vals:
        return None
    return float(np.mean(vals))  # inf and nan propagate on purpose: they must show


def summarize(points: list[dict]) -> list[dict]:
    """Mean bpp and mean per-image quality per codec and setting, in first-seen order."""
    groups: dict[tuple, list[dict]] = {}
    for p in points:
        groups.setdefault((p["codec"], p["setting"]), []).append(p)
    rows = []
    for (codec, setting), pts in groups.items():
        row = {"codec": codec, "setting": setting, "num_images": len(pts)}
        for key in ("bpp", "est_bpp", "psnr", "ms_ssim"):
            row[key] = _mean(p[key] for p in pts)
        row["ms_ssim_db"] = None if row["ms_ssim"] is None else M.ms_ssim_db(row["ms_ssim"])
        rows.append(row)
    return rows


def curve(summary: list[dict], codec: str, quality: str = "psnr") -> tuple[list[float], list[float]]:
    """The RD curve ``(bpps, qualities)`` of one codec, sorted by rate, finite points only."""
    pts = sorted((r["bpp"], r[quality]) for r in summary
                 if r["codec"] == codec and r[quality] is not None and math.isfinite(r[quality])
                 and r["bpp"] is not None and r["bpp"] > 0)
    return [p[0] for p in pts], [p[1] for p in pts]


def _bracket(rates: list[float], quals: list[float], lo: float, hi: float) -> tuple[list, list]:
    """Points with quality inside ``[lo, hi]`` plus the nearest one beyond each end."""
    order = np.argsort(quals)
    r, q = np.asarray(rates)[order], np.asarray(quals)[order]
    inside = np.flatnonzero((q >= lo) & (q <= hi))
    if inside.size == 0:
        below, above = np.flatnonzero(q < lo), np.flatnonzero(q > hi)
        keep = ([below[-1]] if below.size else []) + ([above[0]] if above.size else [])
    else:
        keep = list(range(max(inside[0] - 1, 0), min(inside[-1] + 2, q.size)))
    return [float(r[i]) for i in keep], [float(q[i]) for i in keep]


def _safe(fn, *args, **kwargs) -> float | None:
    try:
        value = fn(*args, **kwargs)
    except ValueError:
        return None
    return None if value is None or math.isnan(value) else value


def bd_rows(summary: list[dict], test: str = SLIM, published: dict | None = None) -> list[dict]:
    """BD-rate/BD-PSNR of ``test`` against every other codec in ``summary`` (and published curves).

    Negative BD-rate and positive BD-PSNR mean ``test`` is better.
    """
    tr, tq = curve(summary, test, "psnr")
    tr_ms, tq_ms = curve(summary, test, "ms_ssim_db")
    rows = []
    if len(tr) < 2:
        return rows
    anchors = [c for c in dict.fromkeys(r["codec"] for r in summary) if c != test]
    for anchor in anchors:
        ar, aq = _bracket(*curve(summary, anchor, "psnr"), min(tq), max(tq))
        row = {"anchor": anchor, "anchor_points": len(ar), "published": False,
               "bd_rate_psnr": None, "bd_rate_psnr_pchip": None, "bd_psnr": None, "bd_rate_msssim": None}
        # None where the curves' ranges do not overlap: BD values are never extrapolated.
        if len(ar) >= 2:
            row["bd_rate_psnr"] = _safe(M.bd_rate, ar, aq, tr, tq)
            row["bd_rate_psnr_pchip"] = _safe(M.bd_rate, ar, aq, tr, tq, method="pchip")
            row["bd_psnr"] = _safe(M.bd_psnr, ar, aq, tr, tq)
        if len(tr_ms) >= 2:
            mr, mq = _bracket(*curve(summary, anchor, "ms_ssim_db"), min(tq_ms), max(tq_ms))
            if len(mr) >= 2:
                row["bd_rate_msssim"] = _safe(M.bd_rate, mr, mq, tr_ms, tq_ms)
        rows.append(row)
    for name, quals in (published or {}).items():
        rows.append({
            "anchor": name, "anchor_points": len(quals), "published": True,
            "bd_rate_psnr": _safe(M.bd_rate, PUBLISHED_RATES, quals, tr, tq),
            "bd_rate_psnr_pchip": _safe(M.bd_rate, PUBLISHED_RATES, quals, tr, tq, method="pchip"),
            "bd_psnr": _safe(M.bd_psnr, PUBLISHED_RATES, quals, tr, tq),
            "bd_rate_msssim": None,
        })
    return rows


# --- writing -----------------------------------------------------------------------


def _jsonable(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.floating, np.integer)):
        return _jsonable(value.item())
    return value


def _write_csv(path: Path, rows: list[dict], fields: tuple) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in fields})


def plot_rd(result: dict, path: str | os.PathLike, quality: str = "psnr") -> bool:
    """Draw the RD curves of every codec as a PNG; ``False`` when matplotlib is missing."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return False
    summary = result["summary"]
    labels = result["meta"]["codec_labels"]
    fig = Figure(figsize=(10, 5.8), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    xmax = 2.0
    for codec in dict.fromkeys(r["codec"] for r in summary):
        rates, quals = curve(summary, codec, quality)
        if not rates:
            continue
        slim = codec == SLIM
        ax.plot(rates, quals, marker="o" if slim else ".", lw=2.2 if slim else 1.2,
                color="black" if slim else None, label=labels.get(codec, codec), zorder=3 if slim else 2)
        if slim:
            xmax = max(xmax, max(rates) * 1.1)
            for r in summary:
                if r["codec"] == SLIM and r[quality] is not None and math.isfinite(r[quality]):
                    ax.annotate(f"w{r['setting']}", (r["bpp"], r[quality]), textcoords="offset points",
                                xytext=(4, -10), fontsize=7)
    if quality == "psnr":
        for i, (name, quals) in enumerate((result.get("published") or {}).items()):
            ax.plot(PUBLISHED_RATES, quals, ls="--", lw=0.8, marker="x", ms=4, color="0.55",
                    label="published curves (CompressAI), for orientation" if i == 0 else None)
            ax.annotate(name.replace(" (published)", ""), (PUBLISHED_RATES[-1], quals[-1]),
                        textcoords="offset points", xytext=(3, -2), fontsize=6, color="0.4")
    ax.set_xlim(0, xmax)
    ax.set_xlabel("bits per pixel (real file sizes)")
    ax.set_ylabel("PSNR (dB, RGB)" if quality == "psnr" else "MS-SSIM (dB, -10 log10(1 - MS-SSIM))")
    n = result["meta"]["num_images"]
    ax.set_title(f"{result['meta']['dataset']}: {n} image{'' if n == 1 else 's'} (means over images)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    fig.tight_layout()
    fig.savefig(path)
    return True


def _pct(value) -> str:
    return "n/o" if value is None else f"{value:+.1f} %"


def _fmt(value, digits: int = 2, signed: bool = False, none: str = "–") -> str:
    if value is None:
        return none
    if isinstance(value, str):
        return value
    if isinstance(value, float) and math.isinf(value):
        return "∞"
    if isinstance(value, float) and math.isnan(value):
        return "n/a"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def format_markdown(result: dict, plot_prefix: str = "", heading: str = "##") -> str:
    """The result as Markdown: per-codec tables, the BD table and links to the plots."""
    meta = result["meta"]
    labels = meta["codec_labels"]
    n = meta["num_images"]
    lines = [f"{heading} {meta['dataset']} ({n} image{'' if n == 1 else 's'})", ""]
    lines += [f"Images: {', '.join(meta['images'])}.", ""]
    effort = f"; encoder effort {meta['effort']}" if meta.get("effort", 1) > 1 else ""
    lines += [f"Weights `{meta['weights_id']}`; widths {', '.join(map(str, meta['widths']))}{effort}. "
              "bpp from real file sizes; PSNR and MS-SSIM on 8-bit RGB, mean over images.", ""]
    if result["bd"]:
        lines += [f"{heading}# BD-rate of slimcodec against each codec", "",
                  "Negative BD-rate / positive BD-PSNR: slimcodec is better. "
                  "Cubic fit in log-rate (Bjøntegaard) unless marked PCHIP; "
                  "n/o: the two curves do not overlap in quality (BD-rate) or rate (BD-PSNR), "
                  "so there is nothing to compare without extrapolating.", "",
                  "| anchor | BD-rate (PSNR) | BD-rate PCHIP | BD-PSNR (dB) | BD-rate (MS-SSIM) |",
                  "|---|---:|---:|---:|---:|"]
        for row in result["bd"]:
            lines.append(f"| {labels.get(row['anchor'], row['anchor'])} | {_pct(row['bd_rate_psnr'])} "
                         f"| {_pct(row['bd_rate_psnr_pchip'])} | {_fmt(row['bd_psnr'], 2, True, 'n/o')} "
                         f"| {_pct(row['bd_rate_msssim'])} |")
        lines.append("")
    lines += [f"{heading}# Mean rate and quality per setting", "",
              "| codec | setting | bpp | PSNR (dB) | MS-SSIM | MS-SSIM (dB) |", "|---|---:|---:|---:|---:|---:|"]
    for r in result["summary"]:
        setting = f"w{r['setting']}" if r["codec"] == SLIM else r["setting"]
        extra = f" (ideal {_fmt(r['est_bpp'], 3)})" if r["est_bpp"] is not None else ""
        lines.append(f"| {r['codec']} | {setting} | {_fmt(r['bpp'], 3)}{extra} | {_fmt(r['psnr'])} "
                     f"| {_fmt(r['ms_ssim'], 4)} | {_fmt(r['ms_ssim_db'])} |")
    lines.append("")
    for name, title in (("rd_psnr.png", "PSNR"), ("rd_msssim.png", "MS-SSIM")):
        if name in result.get("files", {}):
            lines += [f"![{meta['dataset']}: rate vs {title}]({plot_prefix}{name})", ""]
    if result["failures"]:
        lines += [f"{heading}# Failures", ""] + [f"- {f['image']} {f.get('codec', '')}: {f['error']}"
                                                for f in result["failures"]] + [""]
    if result["skipped_peers"]:
        lines += ["Peers not run: " + "; ".join(f"{k} ({v})" for k, v in result["skipped_peers"].items()), ""]
    return "\n".join(lines)


def write_report(result: dict, out_dir: str | os.PathLike, plots: bool = True) -> dict[str, str]:
    """Write CSVs, JSON, plots and Markdown into ``out_dir``; return ``{name: path}``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {}
    _write_csv(out / "points.csv", result["points"], POINT_FIELDS)
    _write_csv(out / "summary.csv", result["summary"], SUMMARY_FIELDS)
    _write_csv(out / "bd.csv", result["bd"], BD_FIELDS)
    files.update({n: str(out / n) for n in ("points.csv", "summary.csv", "bd.csv")})
    if plots:
        for name, quality in (("rd_psnr.png", "psnr"), ("rd_msssim.png", "ms_ssim_db")):
            if plot_rd(result, out / name, quality):
                files[name] = str(out / name)
    files["results.json"] = str(out / "results.json")
    files["report.md"] = str(out / "report.md")
    result["files"] = dict(files)
    (out / "report.md").write_text(format_markdown(result) + "\n")
    (out / "results.json").write_text(json.dumps(_jsonable(result), indent=1) + "\n")
    return files


# --- running -----------------------------------------------------------------------


class _Progress:
    def __init__(self, total: int, stream: TextIO | None):
        self.total, self.stream, self.done = total, stream, 0

    def line(self, text: str) -> None:
        if self.stream is not None:
            print(text, file=self.stream, flush=True)

    def step(self, text: str) -> None:
        self.done += 1
        self.line(f"[{self.done}/{self.total}] {text}")


def run_eval(folder: str | os.PathLike, widths: Iterable[int] | None = None, peers=None,
             out_dir: str | os.PathLike | None = None, weights=None, *, limit: int | None = None,
             plots: bool = True, published: dict | None = None, progress: TextIO | None = sys.stderr,
             effort: int = 1) -> dict:
    """Evaluate slimcodec (and peers) on the images of ``folder``.

    Args:
        folder (path-like): folder of images (non-images are ignored).
        widths (Iterable[int] | None): network widths; all of the weights' by default.
        peers (str | Iterable[str] | None): peer names or aliases (see
            :func:`slimcodec.tools.peers.resolve`); ``None`` for all, ``[]`` for none.
            Peers that cannot run here are skipped and listed in ``skipped_peers``.
        out_dir (path-like | None): where to write the report; nothing is written if ``None``.
        weights (Weights | path | None): the shipped weights by default.
        limit (int | None): evaluate only the first ``limit`` images (sorted by name).
        plots (bool): draw RD plots (needs matplotlib).
        published (dict | None): published curves to compare with, e.g. :data:`PUBLISHED_KODAK`.
        progress (TextIO | None): where progress lines go (``None``: silent).
        effort (int): slimcodec's encoder effort (1 to 9, :mod:`slimcodec.effort`).

    Returns:
        dict: ``meta``, ``points``, ``summary``, ``bd``, ``failures``, ``skipped_peers``,
        ``published`` and ``files`` (paths written).

    Raises:
        ValueError: an unknown width or peer name, or a folder without images.
    """
    from slimcodec.effort import check_effort
    from slimcodec.imageio import open_image, prepare
    from slimcodec.tools import peers as P
    from slimcodec.weights import resolve_weights

    check_effort(effort)
    wts = resolve_weights(weights)
    widths = list(wts.widths if widths is None else widths)
    for w in widths:
        wts.check_width(int(w))
    runnable, skipped = P.available_peers(peers)
    images = list_images(folder)
    if limit is not None:
        images = images[: max(int(limit), 0)]
    if not images:
        raise ValueError(f"{folder}: no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    report = _Progress(len(images), progress)
    for name, reason in skipped.items():
        report.line(f"note: peer {name} skipped: {reason}")
    points: list[dict] = []
    failures: list[dict] = []
    sizes = {}
    start = time.perf_counter()
    for path in images:
        t0 = time.perf_counter()
        try:
            pixels = prepare(open_image(path))
        except Exception as exc:  # one bad image never stops the run
            failures.append({"image": path.name, "codec": None, "setting": None, "error": str(exc)})
            report.step(f"{path.name}: error: {exc}")
            continue
        h, w = pixels.rgb.shape[:2]
        sizes[path.name] = [w, h]
        base = {"image": path.name, "width_px": w, "height_px": h}
        jobs = [(SLIM, width, None) for width in widths]
        jobs += [(peer.name, s, peer) for peer in runnable for s in peer.settings]
        num_failed = 0
        for codec, setting, peer in jobs:
            try:
                m = (measure_slim(wts, pixels, int(setting), effort) if peer is None
                     else measure_peer(peer, pixels.rgb, setting))
            except Exception as exc:
                num_failed += 1
                failures.append({"image": path.name, "codec": codec, "setting": setting,
                                 "error": f"{type(exc).__name__}: {exc}"})
                continue
            points.append({**base, "codec": codec, "setting": setting, **m})
        note = f", {num_failed} failed" if num_failed else ""
        notes = f" ({'; '.join(pixels.notes)})" if pixels.notes else ""
        report.step(f"{path.name} {w}x{h}: {len(jobs) - num_failed} points{note}{notes} "
                    f"in {time.perf_counter() - t0:.1f} s")
    summary = summarize(points)
    effort_note = f", effort {effort}" if effort > 1 else ""
    labels = {SLIM: f"slimcodec {__version__} (SlimCAE{effort_note})", **{p.name: p.label for p in runnable}}
    meta = {
        "dataset": Path(folder).resolve().name,
        "folder": str(folder),
        "images": [p.name for p in images],
        "image_sizes": sizes,
        "num_images": len(images),
        "widths": widths,
        "effort": effort,
        "weights_id": wts.weights_id.hex(),
        "weights_meta": {k: v for k, v in wts.meta.items() if isinstance(v, (int, float, str, bool))},
        "peers": {p.name: {"label": p.label, "knob": p.knob, "settings": list(p.settings)} for p in runnable},
        "codec_labels": labels,
        "versions": library_versions(),
        "machine": machine_description(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "elapsed_s": None,
    }
    result = {"meta": meta, "points": points, "summary": summary, "bd": bd_rows(summary, SLIM, published),
              "failures": failures, "skipped_peers": skipped, "published": published or {}, "files": {}}
    meta["elapsed_s"] = round(time.perf_counter() - start, 1)
    if out_dir is not None:
        write_report(result, out_dir, plots=plots)
        report.line(f"report written to {out_dir}")
    return result


PUBLISHED = {"kodak": PUBLISHED_KODAK, "none": None}  # --published


def use_threads(threads: int) -> None:
    """Run torch and the runtime's kernels on ``threads`` threads from now on.

    Raises:
        ValueError: ``threads`` is below 1.
    """
    if threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    import torch

    from slimcodec import runtime

    torch.set_num_threads(threads)
    runtime.set_threads(threads)


def evaluate(folder: str | os.PathLike, output: str | os.PathLike | None = None, *,
             widths: Iterable[int] | None = None, peers: str | Iterable[str] | None = None, weights=None,
             limit: int | None = None, published: str | None = None, threads: int | None = None,
             plots: bool = True, quiet: bool = False, effort: int | None = None) -> int:
    """Evaluate a folder into a report folder, as ``slim eval`` does; return the exit code.

    Args:
        folder (path-like): folder of images.
        output (path-like | None): the report folder [default: ``eval-<folder name>`` here].
        widths, peers, weights, limit, plots: as for :func:`run_eval`.
        effort (int | None): as for :func:`run_eval` [default: 1].
        published (str | None): ``"kodak"`` adds the published Kodak curves; ``"none"`` or
            ``None`` none.
        threads (int | None): torch and runtime threads [default: one per core].
        quiet (bool): no progress and no BD-rate lines on stderr.

    Returns:
        int: 0 every point was measured, 1 some failed (or the run could not start, e.g.
        unreadable weights), 2 a usage error (unknown width or peer, no images, ...).
        Errors are one ``error:`` line on stderr.
    """
    out = output if output is not None else f"eval-{Path(folder).resolve().name}"
    try:
        if published not in (None, *PUBLISHED):
            raise ValueError(f"published must be one of {', '.join(PUBLISHED)}, got {published!r}")
        if threads is not None:
            use_threads(threads)
        result = run_eval(folder, widths, peers, out, weights, limit=limit, plots=plots,
                          published=PUBLISHED.get(published), progress=None if quiet else sys.stderr,
                          effort=1 if effort is None else effort)
    except (ValueError, NotADirectoryError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # e.g. unreadable weights: one line, no traceback
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if not quiet:
        for row in result["bd"]:
            if not row["published"]:
                print(f"BD-rate vs {row['anchor']}: {_pct(row['bd_rate_psnr'])} (PSNR), "
                      f"{_pct(row['bd_rate_msssim'])} (MS-SSIM)", file=sys.stderr)
    return 1 if result["failures"] else 0


def parse_widths(text: str) -> list[int]:
    """``"192,96,48"`` (commas or spaces) as ``[192, 96, 48]``.

    Raises:
        ValueError: a part is not an integer.
    """
    try:
        return [int(t) for t in text.replace(",", " ").split()]
    except ValueError:
        raise ValueError(f"expected widths like 192,96,48, got {text!r}") from None


def argparse_type(parse):
    """An argparse ``type=`` of a parser that raises ``ValueError`` (its message becomes the usage error)."""
    def convert(text: str):
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return convert


def build_parser() -> argparse.ArgumentParser:
    """The options of ``python -m slimcodec.tools.evaluate`` (``slim eval`` has the same)."""
    parser = argparse.ArgumentParser(
        prog="python -m slimcodec.tools.evaluate",
        description="Evaluate slimcodec and peer codecs on a folder of images (real file sizes).",
        argument_default=argparse.SUPPRESS,  # an option not given takes evaluate()'s default
    )
    parser.add_argument("folder", help="folder of images (PNG etc.; other files are ignored)")
    parser.add_argument("-o", "--output", help="report folder (default: eval-<folder name> in the current folder)")
    parser.add_argument("--widths", type=argparse_type(parse_widths), help="widths, e.g. 192,96,48 (default: all)")
    parser.add_argument("--peers",
                        help="comma-separated peers: jpeg (=jpeg420,jpeg444), jpeg420, jpeg444, webp, "
                             "jpeg2000, avif, hevc, all, none (default: all)")
    parser.add_argument("--weights", help="weights file (default: the shipped one)")
    parser.add_argument("--limit", type=int, help="only the first N images (by name)")
    parser.add_argument("--published", choices=tuple(PUBLISHED),
                        help="add published Kodak curves (CompressAI) to plots and BD table")
    parser.add_argument("--threads", type=int,
                        help="torch threads (default: torch's, one per core); 1 is faster on a busy machine")
    parser.add_argument("--effort", type=int, help="slimcodec's encoder effort, 1 to 9 (default: 1)")
    parser.add_argument("--no-plots", dest="plots", action="store_false", help="skip the PNG plots")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point of ``python -m slimcodec.tools.evaluate``; returns the exit code."""
    return evaluate(**vars(build_parser().parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
