"""Per-stage seconds of an encode or a decode, for benchmarks.

The codec's entry points take ``timings: dict | None``; given a dict, they add the
wall-clock seconds of each stage they run to it under these names:

- ``"container"``: image conversion (``prepare``), metadata, the header and the .slim
  container with its CRC (``write_slim``); on decode ``read_slim``, the alpha plane and
  ``finish``;
- ``"analysis"`` / ``"synthesis"``: the main transforms (``"refine"``: the effort search);
- ``"hyper"``: the hyperprior's networks;
- ``"entropy"``: quantization and range coding, or range decoding and dequantization.

    >>> import time
    >>> timings = {}
    >>> with timed(timings, "entropy"):
    ...     time.sleep(0.001)
    >>> timings["entropy"] > 0
    True
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["Timings", "timed"]

Timings = dict  # stage name -> seconds


@contextmanager
def timed(timings: Timings | None, stage: str) -> Iterator[None]:
    """Add the seconds the block takes to ``timings[stage]`` (nothing when ``timings`` is ``None``)."""
    if timings is None:
        yield
        return
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[stage] = timings.get(stage, 0.0) + time.perf_counter() - start
