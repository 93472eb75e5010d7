"""What a measurement ran on: the machine and the versions of the libraries (for reports)."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

from slimcodec import __version__


def machine_description() -> dict:
    """CPU model, core count and memory of this machine (best effort, Linux)."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_gib = round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    flags = []
    try:
        text = Path("/proc/cpuinfo").read_text()
        for flag in ("avx2", "avx512f", "avx512_bf16", "amx_bf16"):
            if f" {flag}" in text:
                flags.append(flag)
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": mem_gib, "simd": flags,
            "system": f"{platform.system()} {platform.release()}"}


def _cpu_jiffies() -> tuple[int, int] | None:
    """(busy, total) jiffies of all cores since boot, from /proc/stat (Linux), or None."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields[:8]) - idle, sum(fields[:8])


def busy_cores(window_s: float = 0.5) -> float | None:
    """How many cores other work keeps busy, measured over ``window_s`` seconds while this
    process sleeps (unlike the load average, which lags a minute behind), or None off Linux."""
    before = _cpu_jiffies()
    time.sleep(window_s)
    after = _cpu_jiffies()
    if before is None or after is None or after[1] <= before[1]:
        return None
    return round((after[0] - before[0]) / (after[1] - before[1]) * (os.cpu_count() or 1), 2)


def library_versions() -> dict:
    """Versions of slimcodec, Python, Pillow and its codecs, pillow-heif, torch and onnxruntime (those installed)."""
    import PIL
    from PIL import features

    versions = {"slimcodec": __version__, "python": platform.python_version(), "pillow": PIL.__version__}
    for key, feature in (("libjpeg", "jpg"), ("libwebp", "webp"), ("openjpeg", "jpg_2000"), ("libavif", "avif")):
        try:
            versions[key] = features.version(feature)
        except ValueError:
            versions[key] = None
    try:
        import pillow_heif

        versions["pillow_heif"] = pillow_heif.__version__
        versions["libheif"] = pillow_heif.libheif_version()
        versions["hevc_encoder"] = pillow_heif.libheif_info().get("HEIF")
    except ImportError:
        pass
    try:
        import torch

        versions["torch"] = torch.__version__
        versions["torch_threads"] = torch.get_num_threads()
    except ImportError:
        pass
    try:
        import onnxruntime

        from slimcodec import runtime

        versions["onnxruntime"] = onnxruntime.__version__
        versions["backend"] = runtime.chosen_backend()
    except ImportError:
        pass
    return versions
