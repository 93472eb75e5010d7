"""Runtimes: what runs a model's transform stages (analysis, synthesis, ...) on numpy arrays.

Two backends implement :class:`Transforms`:

- ``onnx`` (:mod:`slimcodec.runtime.onnx_backend`): onnxruntime on graphs exported per
  (stage, width) into a runtime bundle (:mod:`slimcodec.runtime.bundle`). The light one:
  ``pip install slimcodec`` installs it without torch.
- ``torch`` (:mod:`slimcodec.runtime.torch_backend`): the PyTorch model itself, from a
  ``.pt`` weights file (``pip install "slimcodec[train]"``).

``SLIM_BACKEND=onnx|torch`` picks the one the shipped weights load with; by default the
light one when onnxruntime is installed. ``SLIM_THREADS=N`` (or :func:`set_threads`, or
``slim ... --threads N``) sets the threads of either; by default one per core. Entropy coding
never depends on the backend: the symbols a file holds decode identically with either.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Protocol

import numpy as np

from slimcodec.errors import SlimError

BACKEND_ENV = "SLIM_BACKEND"
THREADS_ENV = "SLIM_THREADS"
BACKENDS = ("onnx", "torch")

_threads: int | None = None


class Transforms(Protocol):
    """A model's transform stages at every width."""

    name: str

    def run(self, stage: str, width: int, x: np.ndarray) -> np.ndarray:
        """Run ``stage`` at ``width`` on one float32 ``[C, H, W]`` array; return float32 ``[C', H', W']``."""
        ...

    def release(self, stage: str, width: int) -> None:
        """Free the memory running ``stage`` at ``width`` keeps for the next run (after a large image)."""
        ...


def installed(backend: str) -> bool:
    """Whether the backend's library can be imported (without importing it)."""
    from importlib.util import find_spec

    return find_spec("onnxruntime" if backend == "onnx" else "torch") is not None


def chosen_backend() -> str:
    """The backend named by ``SLIM_BACKEND``, else ``onnx`` when onnxruntime is installed, else ``torch``.

    Raises:
        SlimError: ``SLIM_BACKEND`` names no backend.
    """
    name = os.environ.get(BACKEND_ENV, "").strip().lower()
    if name:
        if name not in BACKENDS:
            raise SlimError(f"{BACKEND_ENV}={name!r} is not a backend; choose one of: {', '.join(BACKENDS)}")
        return name
    return "onnx" if installed("onnx") else "torch"


MALLOC_ARENAS = 2  # glibc malloc arenas a slim process keeps (see limit_malloc_arenas)


def limit_malloc_arenas(arenas: int = MALLOC_ARENAS) -> bool:
    """Linux/glibc: let the process use at most ``arenas`` malloc arenas (``mallopt(M_ARENA_MAX)``).

    glibc gives each thread that allocates its own arena, reserving 64 MB of address space
    each; with the runtime's and BLAS's threads that reserved a gigabyte or more, so a 36 MP
    encode at width 192 failed under a 2 GiB address-space limit (``ulimit -v``) with 1.3 GB
    resident. Call it before threads start; ``MALLOC_ARENA_MAX`` in the environment wins.
    Whether the setting was made.
    """
    import sys

    if not sys.platform.startswith("linux") or os.environ.get("MALLOC_ARENA_MAX"):
        return False
    try:
        import ctypes

        return ctypes.CDLL(None).mallopt(-8, int(arenas)) == 1  # -8: M_ARENA_MAX (malloc.h)
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False


def set_threads(threads: int | None) -> None:
    """Threads each backend's kernels use from now on (``None``: ``SLIM_THREADS``, else one per core)."""
    global _threads
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    _threads = threads


def blas_threads(count: int | None):
    """A context in which numpy's BLAS uses at most ``count`` threads (``None``: as it would).

    Work that runs on several Python threads at once (tiles) gives each one BLAS thread: with
    its own threads as well, a 24 MP width-192 decode's tiles ran no faster on two threads than
    on one (11.4 s and 10.9 s), with one BLAS thread each in 7.8 s.
    """
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=count, user_api="blas")


def parallel_map(function: Callable, items: list) -> list:
    """``[function(item) for item in items]``, on the runtime's threads when there are several
    (each item's result does not depend on which thread computes it), each with one BLAS thread.

    At most one item per thread is in hand at a time, and the first exception stops the work
    after the items in hand: a file refused at its first tile costs one tile per thread.
    """
    workers = min(len(items), threads() or os.cpu_count() or 1)
    if workers <= 1:
        with blas_threads(threads()):
            return [function(item) for item in items]
    import itertools
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

    results: list = [None] * len(items)
    queue = iter(enumerate(items))
    with blas_threads(1), ThreadPoolExecutor(workers) as pool:
        running = {pool.submit(function, item): i for i, item in itertools.islice(queue, workers)}
        while running:
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                results[running.pop(future)] = future.result()  # raises: nothing more is started
            for i, item in itertools.islice(queue, len(done)):
                running[pool.submit(function, item)] = i
    return results


def threads() -> int | None:
    """The thread count set by :func:`set_threads`, else ``SLIM_THREADS``, else ``None`` (the default)."""
    if _threads is not None:
        return _threads
    value = os.environ.get(THREADS_ENV, "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else None


def release_free_memory() -> None:
    """Linux/glibc: return the heap's free pages to the system (``malloc_trim(0)``); elsewhere nothing.

    Between the stages of a large conversion the heap keeps the pages of the last stage's freed
    temporaries: after a 24 MP width-192 file's latents are decoded, 85 MiB of them.
    """
    import sys

    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass
