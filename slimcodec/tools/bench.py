"""Speed and memory of slimcodec per width, next to CompressAI and the peers.

Two test images are made from one source photo (Kodak's kodim23 by default):
``kodak``, the photo at 768×512, and ``12mp``, the photo mirrored and tiled to
4000×3000 (12 megapixels) so it keeps natural-image statistics.

Per image size and width it times encoding and decoding split into stages,
each the median of several runs after a warm-up:

- transform: the analysis (encode) or synthesis (decode) network;
- entropy: quantization and range coding (encode), range decoding and
  dequantization (decode), i.e. :mod:`slimcodec.entropy.rangecoder`;
- container: image conversion and the .slim container (``prepare`` +
  ``write_slim`` on encode; ``read_slim`` + ``finish`` on decode), CRC included:
  the rest of the call, so the three add up to the total.

The stages are timed inside the codec itself (:func:`slimcodec.codec.encode` and
:func:`slimcodec.codec.decode` with ``timings``, :mod:`slimcodec.timings`); once per
setting the timed runs are checked to give the very bytes and pixels of untimed ones.

Peak memory is the peak resident set size (``VmHWM`` on Linux, else
``ru_maxrss``) of a fresh subprocess that loads the weights, makes the image
and runs one encode or one decode; the growth is the peak minus the
process's size just before the run (Linux resets the peak there; elsewhere it
is the peak so far).

CompressAI's ``bmshj2018_factorized(quality=8, pretrained=False)`` (random
weights, which is fine for timing; nothing is downloaded) is timed on the
same Kodak-size image: ``g_a`` + ``entropy_bottleneck.compress`` and
``entropy_bottleneck.decompress`` + ``g_s``. It runs on the 12 MP image only
with ``--compressai-large``: it has no tiling and needs several GB there.
The peers' encoders and decoders run at one setting near 1 bpp.

torch runs with its default thread count (one per core) unless ``--threads``
says otherwise; the output states which.

:func:`run_bench` measures and returns the result; :func:`bench` is the command
(``slim bench`` and ``python -m slimcodec.tools.bench``): it prints the tables, writes
the files and returns the exit code. Usage::

    slim bench                                           # both sizes, all widths
    python -m slimcodec.tools.bench --sizes kodak --repeats 3 --no-memory --json bench.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image

from slimcodec.geometry import STRIDE
from slimcodec.tools.evaluate import argparse_type, parse_widths

DEFAULT_SOURCE = Path(__file__).resolve().parents[3] / "shared" / "data" / "kodak" / "kodim23.png"
SIZES = {"kodak": (768, 512), "12mp": (4000, 3000)}
COMPRESSAI_QUALITY = 8
# Complexity per 768x512 image from the SlimCAE paper (DESIGN.md section 1), GMAC.
PAPER_GMAC = {192: 9.41, 144: 5.51, 96: 2.64, 72: 1.59, 48: 0.80}


# --- test images ------------------------------------------------------------------


def make_image(source: str | os.PathLike | None, size: tuple[int, int]) -> np.ndarray:
    """An ``H×W×3`` uint8 test image of ``size = (width, height)`` from a source photo.

    The source is first brought to 768×512 (cropped to 3:2 around its centre,
    resized with Lanczos if needed); larger sizes mirror-tile it, so every seam
    is continuous. Without a source file, a smooth synthetic picture is used.
    """
    base_w, base_h = SIZES["kodak"]
    if source is not None and Path(source).exists():
        with Image.open(source) as im:
            im = im.convert("RGB")
            if im.height > im.width:
                im = im.transpose(Image.Transpose.ROTATE_90)
            w, h = im.size
            crop_w, crop_h = min(w, h * 3 // 2), min(h, w * 2 // 3)
            left, top = (w - crop_w) // 2, (h - crop_h) // 2
            im = im.crop((left, top, left + crop_w, top + crop_h))
            if im.size != (base_w, base_h):
                im = im.resize((base_w, base_h), Image.Resampling.LANCZOS)
            base = np.asarray(im)
    else:
        yy, xx = np.mgrid[0:base_h, 0:base_w]
        base = np.stack([(xx * 255 // (base_w - 1)), (yy * 255 // (base_h - 1)),
                         ((xx * 7 + yy * 13) % 256)], axis=2).astype(np.uint8)
    width, height = size
    if (width, height) == (base_w, base_h):
        return np.ascontiguousarray(base)
    block = np.concatenate([np.concatenate([base, base[:, ::-1]], axis=1),
                            np.concatenate([base[::-1], base[::-1, ::-1]], axis=1)], axis=0)
    reps = (-(-height // block.shape[0]), -(-width // block.shape[1]), 1)
    return np.ascontiguousarray(np.tile(block, reps)[:height, :width])


def parse_size(text: str) -> tuple[str, tuple[int, int]]:
    """A test image size by name: ``kodak``, ``12mp`` or ``WxH``; returns ``(text, (width, height))``.

    Raises:
        ValueError: none of these, or a side below 1.
    """
    if text in SIZES:
        return text, SIZES[text]
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"size must be kodak, 12mp or WxH, got {text!r}") from None
    if w < 1 or h < 1:
        raise ValueError(f"size must be positive, got {text!r}")
    return text, (w, h)


def parse_sizes(text: str) -> list[str]:
    """``"kodak,12mp,640x480"`` as a list of sizes, each checked with :func:`parse_size`."""
    sizes = [s.strip() for s in text.split(",") if s.strip()]
    for size in sizes:
        parse_size(size)
    return sizes


# --- timing -----------------------------------------------------------------------


def _median(values: list[float]) -> float:
    return float(statistics.median(values))


def _stage_medians(runs: list[dict]) -> dict:
    keys = runs[0].keys()
    return {k: _median([r[k] for r in runs]) for k in keys}


def _columns(timings: dict, transform: str, total: float) -> dict:
    """The codec's stage seconds (:mod:`slimcodec.timings`) as the bench's columns.

    The hyperprior's networks count as transform. Container is the rest of the call: the
    codec's ``"container"`` stages plus its bookkeeping between stages (microseconds), so
    the columns add up to the total even when the process is preempted between stages.
    """
    networks = timings.get(transform, 0.0) + timings.get("hyper", 0.0)
    entropy = timings.get("entropy", 0.0)
    return {"transform": networks, "entropy": entropy, "container": max(total - networks - entropy, 0.0),
            "total": total}


def slim_encode_staged(wts, rgb: np.ndarray, width: int) -> tuple[bytes, dict]:
    """Encode an ``H×W×3`` image with :func:`slimcodec.codec.encode` (no metadata), timing each stage."""
    from slimcodec.codec import encode

    image = Image.fromarray(rgb, "RGB")
    timings: dict = {}
    start = time.perf_counter()
    data = encode(image, width, weights=wts, metadata=False, timings=timings)
    return data, _columns(timings, "analysis", time.perf_counter() - start)


def slim_decode_staged(wts, data: bytes) -> tuple[np.ndarray, dict]:
    """Decode with :func:`slimcodec.codec.decode`, timing each stage."""
    from slimcodec.codec import decode

    timings: dict = {}
    start = time.perf_counter()
    image = decode(data, weights=wts, timings=timings)
    return np.asarray(image), _columns(timings, "synthesis", time.perf_counter() - start)


def bench_slim(wts, rgb: np.ndarray, width: int, repeats: int) -> dict:
    """Median stage times of encoding and decoding ``rgb`` at ``width``.

    The warm-up runs the API untimed (:func:`slimcodec.codec.encode_pixels`,
    :func:`slimcodec.codec.decode`); the timed runs must reproduce its bytes and pixels.
    """
    from slimcodec.codec import decode, encode_pixels
    from slimcodec.formats.slimfile import read_header
    from slimcodec.imageio import PixelData

    reference = encode_pixels(PixelData(rgb), width, weights=wts, metadata=False)
    reference_px = np.asarray(decode(reference, weights=wts))
    enc_runs, dec_runs = [], []
    for _ in range(repeats):
        data, enc = slim_encode_staged(wts, rgb, width)
        decoded, dec = slim_decode_staged(wts, data)
        enc_runs.append(enc)
        dec_runs.append(dec)
    h, w = rgb.shape[:2]
    header = read_header(data)
    return {
        "codec": "slimcodec", "setting": width, "num_bytes": len(data), "bpp": 8 * len(data) / (w * h),
        "symbols": int(header.slim_width * header.latent_height * header.latent_width),  # y's
        "matches_api": data == reference and np.array_equal(decoded, reference_px),
        "enc_s": _stage_medians(enc_runs), "dec_s": _stage_medians(dec_runs),
    }


def _compressai_model():
    import torch
    from compressai.zoo import bmshj2018_factorized

    net = bmshj2018_factorized(quality=COMPRESSAI_QUALITY, pretrained=False).eval()
    with torch.no_grad():
        net.update(force=True)
    return net


def _to_tensor(rgb: np.ndarray, multiple: int = STRIDE):  # CompressAI's factorized model downsamples by 16 too
    import torch

    h, w = rgb.shape[:2]
    padded = np.pad(rgb, ((0, -h % multiple), (0, -w % multiple), (0, 0)), mode="edge")
    return torch.from_numpy(padded.transpose(2, 0, 1).astype(np.float32) / 255.0)[None]


def compressai_encode(net, x) -> tuple[list, tuple, dict]:
    import torch

    with torch.no_grad():
        t0 = time.perf_counter()
        y = net.g_a(x)
        t1 = time.perf_counter()
        strings = net.entropy_bottleneck.compress(y)
        t2 = time.perf_counter()
    return strings, tuple(y.shape[-2:]), {"transform": t1 - t0, "entropy": t2 - t1, "container": 0.0,
                                          "total": t2 - t0}


def compressai_decode(net, strings, shape) -> tuple[object, dict]:
    import torch

    with torch.no_grad():
        t0 = time.perf_counter()
        y_hat = net.entropy_bottleneck.decompress(strings, shape)
        t1 = time.perf_counter()
        x_hat = net.g_s(y_hat).clamp_(0, 1)
        t2 = time.perf_counter()
    return x_hat, {"transform": t2 - t1, "entropy": t1 - t0, "container": 0.0, "total": t2 - t0}


def bench_compressai(rgb: np.ndarray, repeats: int) -> dict:
    """Median stage times of CompressAI's factorized model (random weights) on ``rgb``."""
    net = _compressai_model()
    x = _to_tensor(rgb)
    strings, shape, _ = compressai_encode(net, x)  # warm-up
    compressai_decode(net, strings, shape)
    enc_runs, dec_runs = [], []
    for _ in range(repeats):
        strings, shape, enc = compressai_encode(net, x)
        _, dec = compressai_decode(net, strings, shape)
        enc_runs.append(enc)
        dec_runs.append(dec)
    h, w = rgb.shape[:2]
    num_bytes = sum(len(s) for s in strings)
    return {"codec": "compressai", "setting": f"bmshj2018_factorized q{COMPRESSAI_QUALITY} (random weights)",
            "num_bytes": num_bytes, "bpp": 8 * num_bytes / (w * h),
            "symbols": int(net.entropy_bottleneck.channels * shape[0] * shape[1]),
            "enc_s": _stage_medians(enc_runs), "dec_s": _stage_medians(dec_runs)}


def bench_peer(peer, rgb: np.ndarray, repeats: int) -> dict:
    """Median encode and decode times of a peer at its ``bench_setting``."""
    data = peer.encode(rgb, peer.bench_setting)
    peer.decode(data)
    enc, dec = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        data = peer.encode(rgb, peer.bench_setting)
        t1 = time.perf_counter()
        peer.decode(data)
        t2 = time.perf_counter()
        enc.append(t1 - t0)
        dec.append(t2 - t1)
    h, w = rgb.shape[:2]
    return {"codec": peer.name, "setting": f"{peer.knob} {peer.bench_setting}", "num_bytes": len(data),
            "bpp": 8 * len(data) / (w * h), "enc_s": {"total": _median(enc)}, "dec_s": {"total": _median(dec)}}


# --- memory (fresh subprocess per configuration) ------------------------------------


def _status_bytes(field: str) -> int | None:
    """A ``kB`` field of ``/proc/self/status`` (Linux) in bytes, or ``None``."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _peak_rss_bytes() -> int | None:
    """This process's peak resident set size in bytes.

    Linux: ``VmHWM``. Not ``ru_maxrss``: Linux carries the parent's peak over
    fork and exec, so a child of a big parent reports at least the parent's
    size. Elsewhere ``ru_maxrss``.
    """
    peak = _status_bytes("VmHWM")
    if peak is not None:
        return peak
    try:
        import resource
    except ImportError:  # not on Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024


def _start_peak() -> int | None:
    """Reset the peak to the current size where Linux allows it; return the size to compare with."""
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM (Linux 4.0+)
    except OSError:
        return _peak_rss_bytes()
    return _status_bytes("VmRSS")


def _child(config: dict) -> dict:
    """Run one configuration in this (fresh) process and report its memory."""
    import torch

    if config.get("threads"):
        torch.set_num_threads(config["threads"])
    rgb = make_image(config["source"], tuple(config["size"]))
    op = config["op"]
    if op.startswith("compressai"):
        net = _compressai_model()
        x = _to_tensor(rgb)
        if op == "compressai-decode":
            strings, shape, _ = compressai_encode(net, x)
            del x
            before = _start_peak()
            compressai_decode(net, strings, shape)
        else:
            before = _start_peak()
            compressai_encode(net, x)
    else:
        from slimcodec.codec import decode, encode_pixels
        from slimcodec.imageio import PixelData
        from slimcodec.weights import load_weights

        wts = load_weights(config["weights"])
        if op == "decode":
            data = Path(config["input"]).read_bytes()
            del rgb
            before = _start_peak()
            decode(data, weights=wts)
        else:
            before = _start_peak()
            encode_pixels(PixelData(rgb), config["width"], weights=wts, metadata=False)
    return {"before_bytes": before, "peak_bytes": _peak_rss_bytes()}


def measure_memory(config: dict) -> dict:
    """Peak RSS of one configuration, run in a fresh ``python -m slimcodec.tools.bench`` subprocess."""
    proc = subprocess.run([sys.executable, "-m", "slimcodec.tools.bench", "--child", json.dumps(config)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"exit {proc.returncode}: {tail}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --- running ----------------------------------------------------------------------


def run_bench(weights=None, widths=None, sizes=("kodak", "12mp"), source=DEFAULT_SOURCE, repeats: int = 5,
              large_repeats: int = 3, peers="all", compressai: bool = True, compressai_large: bool = False,
              memory: bool = True, threads: int | None = None, progress=sys.stderr) -> dict:
    """Time (and measure the memory of) slimcodec, CompressAI and the peers.

    Args:
        weights (Weights | path | None): the shipped weights by default.
        widths (Iterable[int] | None): all of the weights' widths by default.
        sizes (Iterable[str]): ``"kodak"`` (768×512), ``"12mp"`` (4000×3000) or ``"WxH"``.
        source (path | None): source photo; a synthetic picture if missing.
        repeats (int): timed runs per setting after one warm-up (images up to 2 MP).
        large_repeats (int): timed runs for larger images.
        peers (str | Iterable[str]): peers to time (see :func:`slimcodec.tools.peers.resolve`).
        compressai (bool): time CompressAI's factorized model.
        compressai_large (bool): also on images over 2 MP (needs several GB).
        memory (bool): measure peak memory in subprocesses.
        threads (int | None): torch threads; torch's default (one per core) if ``None``.
        progress (TextIO | None): where progress lines go.

    Returns:
        dict: ``meta`` and ``sizes`` (per size: ``rows`` and ``ratios``).

    Raises:
        ValueError: an unknown width, size or peer, or fewer than one repeat.
    """
    import torch

    from slimcodec import runtime
    from slimcodec.tools import peers as P
    from slimcodec.tools.machine import busy_cores, library_versions, machine_description
    from slimcodec.weights import Weights, default_weights_path, resolve_weights

    if repeats < 1 or large_repeats < 1:
        raise ValueError("repeats and large_repeats must be at least 1")
    sizes = [parse_size(s) for s in sizes]
    default_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
        runtime.set_threads(threads)
    wts = resolve_weights(weights)
    weights_path = None if isinstance(weights, Weights) else str(weights or default_weights_path())
    widths = list(wts.widths if widths is None else widths)
    for w in widths:
        wts.check_width(w)
    runnable, skipped = P.available_peers(peers)
    say = (lambda text: print(text, file=progress, flush=True)) if progress else (lambda text: None)
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    meta = {
        "source": str(source) if source is not None and Path(source).exists() else "synthetic gradient",
        "torch_threads": torch.get_num_threads(),
        "threads_note": ("machine default" if not threads
                         else f"set by --threads; torch's default here: {default_threads}"),
        "repeats": repeats, "large_repeats": large_repeats,
        "weights_id": wts.weights_id.hex(), "widths": widths, "skipped_peers": skipped,
        "machine": machine_description(), "versions": library_versions(), "load_average": load,
        "busy_cores": busy_cores(),
    }
    say(f"torch threads: {meta['torch_threads']} ({meta['threads_note']}); load average: {load}; "
        f"cores busy with other work: {meta['busy_cores']}")
    out = {"meta": meta, "sizes": {}}
    tmp = tempfile.TemporaryDirectory(prefix="slimbench-")
    for name, size in sizes:
        rgb = make_image(source, size)
        pixels = size[0] * size[1]
        reps = repeats if pixels <= 2_000_000 else large_repeats
        rows = []
        for width in widths:
            say(f"{name}: slimcodec w{width} ...")
            rows.append(bench_slim(wts, rgb, width, reps))
        if compressai and (pixels <= 2_000_000 or compressai_large):
            say(f"{name}: compressai ...")
            rows.append(bench_compressai(rgb, reps))
        for peer in runnable:
            say(f"{name}: {peer.name} ...")
            rows.append(bench_peer(peer, rgb, reps))
        if memory:
            for row in rows:
                if row["codec"] not in ("slimcodec", "compressai"):
                    continue
                for op in ("encode", "decode"):
                    config = {"source": str(source) if source else None, "size": list(size), "threads": threads,
                              "weights": weights_path, "width": row["setting"], "op": op}
                    if row["codec"] == "compressai":
                        config["op"] = f"compressai-{op}"
                    elif op == "decode":
                        if weights_path is None:
                            continue  # a subprocess needs the weights as a file
                        path = Path(tmp.name) / f"{name}-w{row['setting']}.slim"
                        if not path.exists():
                            from slimcodec.codec import encode_pixels
                            from slimcodec.imageio import PixelData

                            path.write_bytes(encode_pixels(PixelData(rgb), row["setting"], weights=wts,
                                                           metadata=False))
                        config["input"] = str(path)
                    if weights_path is None and row["codec"] == "slimcodec":
                        continue
                    say(f"{name}: memory {row['codec']} {row['setting']} {op} ...")
                    row.setdefault("memory", {})[op] = measure_memory(config)
        out["sizes"][name] = {"size": list(size), "rows": rows, "ratios": ratios(rows)}
    tmp.cleanup()
    meta["busy_cores_end"] = busy_cores()
    return out


def _row(rows, codec, setting=None):
    for r in rows:
        if r["codec"] == codec and (setting is None or r["setting"] == setting):
            return r
    return None


def ratios(rows: list[dict]) -> dict:
    """The comparisons worth a sentence: narrow vs wide, entropy share, slimcodec vs CompressAI."""
    out = {}
    slim = [r for r in rows if r["codec"] == "slimcodec"]
    if len(slim) >= 2:
        wide, narrow = max(slim, key=lambda r: r["setting"]), min(slim, key=lambda r: r["setting"])
        tag = f"w{narrow['setting']}/w{wide['setting']}"
        out[f"encode time {tag}"] = narrow["enc_s"]["total"] / wide["enc_s"]["total"]
        out[f"decode time {tag}"] = narrow["dec_s"]["total"] / wide["dec_s"]["total"]
        out[f"transform time {tag} (enc+dec)"] = (
            (narrow["enc_s"]["transform"] + narrow["dec_s"]["transform"])
            / (wide["enc_s"]["transform"] + wide["dec_s"]["transform"]))
        if narrow["setting"] in PAPER_GMAC and wide["setting"] in PAPER_GMAC:
            out[f"paper GMAC {tag}"] = PAPER_GMAC[narrow["setting"]] / PAPER_GMAC[wide["setting"]]
    for r in slim:
        total = r["enc_s"]["total"] + r["dec_s"]["total"]
        out[f"entropy share of enc+dec w{r['setting']}"] = (r["enc_s"]["entropy"] + r["dec_s"]["entropy"]) / total
    ca = _row(rows, "compressai")
    if ca and slim:
        wide = max(slim, key=lambda r: r["setting"])
        w = wide["setting"]
        out[f"encode time slimcodec w{w} / compressai"] = wide["enc_s"]["total"] / ca["enc_s"]["total"]
        out[f"decode time slimcodec w{w} / compressai"] = wide["dec_s"]["total"] / ca["dec_s"]["total"]
        out[f"entropy ns/symbol enc+dec slimcodec w{w}"] = (
            (wide["enc_s"]["entropy"] + wide["dec_s"]["entropy"]) / wide["symbols"] * 1e9)
        out["entropy ns/symbol enc+dec compressai"] = (
            (ca["enc_s"]["entropy"] + ca["dec_s"]["entropy"]) / ca["symbols"] * 1e9)
    return out


def _ms(seconds) -> str:
    return "–" if seconds is None else f"{seconds * 1000:.0f}" if seconds >= 0.1 else f"{seconds * 1000:.1f}"


def _mib(mem: dict | None, op: str) -> str:
    if not mem or op not in mem:
        return "–"
    m = mem[op]
    if "error" in m:
        return "failed"
    if m.get("peak_bytes") is None:
        return "–"
    return f"{m['peak_bytes'] / 2**20:.0f} (+{(m['peak_bytes'] - m['before_bytes']) / 2**20:.0f})"


def _load(load) -> str:
    return "n/a" if not load else " / ".join(f"{v:.2f}" for v in load)


def format_markdown(result: dict, heading: str = "###") -> str:
    """The bench result as Markdown tables (one per image size) plus the ratios."""
    meta = result["meta"]
    lines = []
    load, cores = meta.get("load_average"), (meta.get("machine") or {}).get("cores")
    busy = [b for b in (meta.get("busy_cores"), meta.get("busy_cores_end")) if b is not None]
    if busy:  # measured over a moment at the start and the end; older results have the load average only
        was_busy, why = cores and max(busy) > 0.5 * cores, f"{max(busy):.1f} of {cores} cores busy with other work"
    elif load:
        was_busy, why = cores and load[0] > 0.5 * cores, f"load average {load[0]:.1f} on {cores} cores"
    else:
        was_busy = False
    if was_busy:
        lines += [f"> **The machine was busy** ({why} at the start or the end of the bench): times are upper "
                  "bounds, and where torch threads compete with other work for the cores, ratios between "
                  "widths are unreliable too. Rerun on an idle machine.", ""]
    lines += [f"torch threads: {meta['torch_threads']} ({meta['threads_note']}); medians of "
             f"{meta['repeats']} runs ({meta['large_repeats']} over 2 MP) after one warm-up; "
             f"load average at start: {_load(meta['load_average'])}. Times in ms. "
             "Peak memory: peak RSS of a fresh process in MiB (+ growth during the one encode or decode).", ""]
    for name, block in result["sizes"].items():
        w, h = block["size"]
        lines += [f"{heading} {name}: {w}×{h} ({w * h / 1e6:.1f} MP)", "",
                  "| codec | setting | bpp | enc transform | enc entropy | enc container | **enc total** "
                  "| dec entropy | dec transform | dec container | **dec total** | peak MiB enc | peak MiB dec |",
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in block["rows"]:
            e, d = r["enc_s"], r["dec_s"]
            setting = f"w{r['setting']}" if r["codec"] == "slimcodec" else r["setting"]
            lines.append(
                f"| {r['codec']} | {setting} | {r['bpp']:.3f} | {_ms(e.get('transform'))} | {_ms(e.get('entropy'))} "
                f"| {_ms(e.get('container'))} | **{_ms(e['total'])}** | {_ms(d.get('entropy'))} "
                f"| {_ms(d.get('transform'))} | {_ms(d.get('container'))} | **{_ms(d['total'])}** "
                f"| {_mib(r.get('memory'), 'encode')} | {_mib(r.get('memory'), 'decode')} |")
        mismatched = [r["setting"] for r in block["rows"] if r.get("matches_api") is False]
        if mismatched:
            lines.append(f"\nWarning: the timed runs differ from untimed ones at widths {mismatched}.")
        lines += ["", "| ratio | value |", "|---|---:|"]
        for k, v in block["ratios"].items():
            lines.append(f"| {k} | {v:.2f} |" if "ns/symbol" in k or v >= 0.1 else f"| {k} | {v:.3f} |")
        lines.append("")
    return "\n".join(lines)


def bench(image: str | os.PathLike | None = DEFAULT_SOURCE, sizes: Iterable[str] = ("kodak", "12mp"),
          widths: Iterable[int] | None = None, weights=None, repeats: int = 5, large_repeats: int = 3,
          peers: str | Iterable[str] = "all", compressai: bool = True, compressai_large: bool = False,
          memory: bool = True, threads: int | None = None, json_path: str | os.PathLike | None = None,
          markdown: str | os.PathLike | None = None, quiet: bool = False) -> int:
    """Benchmark as ``slim bench`` does: print the tables, write the files; return the exit code.

    Args:
        image (path | None): the source photo of :func:`run_bench`.
        sizes, widths, weights, repeats, large_repeats, peers, compressai, compressai_large,
            memory, threads: as for :func:`run_bench`.
        json_path (path | None): also write the full result as JSON here.
        markdown (path | None): also write the tables as Markdown here.
        quiet (bool): no progress on stderr.

    Returns:
        int: 0, or 2 for a usage error (one ``error:`` line on stderr).
    """
    try:
        result = run_bench(weights, widths, sizes, image, repeats, large_repeats, peers, compressai,
                           compressai_large, memory, threads, None if quiet else sys.stderr)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    text = format_markdown(result)
    print(text)
    if json_path:
        Path(json_path).write_text(json.dumps(result, indent=1) + "\n")
    if markdown:
        Path(markdown).write_text(text + "\n")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The options of ``python -m slimcodec.tools.bench`` (``slim bench`` has the same)."""
    parser = argparse.ArgumentParser(prog="python -m slimcodec.tools.bench",
                                     description="Time slimcodec per width next to CompressAI and peer codecs.",
                                     argument_default=argparse.SUPPRESS)  # not given: bench()'s default
    parser.add_argument("--image", help="source photo (default: Kodak kodim23)")
    parser.add_argument("--sizes", type=argparse_type(parse_sizes), help="comma-separated: kodak, 12mp, WxH")
    parser.add_argument("--widths", type=argparse_type(parse_widths), help="widths, e.g. 192,48 (default: all)")
    parser.add_argument("--weights", help="weights file (default: the shipped one)")
    parser.add_argument("--repeats", type=int, help="timed runs per setting (default 5)")
    parser.add_argument("--large-repeats", type=int, help="timed runs over 2 MP (default 3)")
    parser.add_argument("--peers", help="peers to time (default all; 'none' for none)")
    parser.add_argument("--no-compressai", dest="compressai", action="store_false", help="skip CompressAI")
    parser.add_argument("--compressai-large", action="store_true",
                        help="also run CompressAI on images over 2 MP (several GB of memory)")
    parser.add_argument("--no-memory", dest="memory", action="store_false", help="skip the peak-memory subprocesses")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's default)")
    parser.add_argument("--json", dest="json_path", metavar="JSON", help="write the full result as JSON here")
    parser.add_argument("--markdown", help="write the tables as Markdown here")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point of ``python -m slimcodec.tools.bench``; prints the tables, returns the exit code."""
    options = vars(build_parser().parse_args(argv))
    if "child" in options:  # one memory measurement, in the fresh process measure_memory started
        print(json.dumps(_child(json.loads(options["child"]))))
        return 0
    return bench(**options)


if __name__ == "__main__":
    sys.exit(main())
