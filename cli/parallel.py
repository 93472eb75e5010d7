"""Running one job per file, in worker processes when there are several.

Imported only by commands that have files to convert. Jobs run in input
order (sorted by source path) and are reported in that order, so logs are
reproducible. With one worker or one job everything runs in this process.

Each worker process ignores Ctrl-C, limits torch to one thread and loads the
weights once (the ``initializer``); Ctrl-C in the parent cancels the jobs not
yet started and lets the running ones finish, so no half-written file remains.
"""

from __future__ import annotations

import os
import signal
import warnings
from collections.abc import Callable, Sequence
from typing import Any

from slimcodec.cli.report import Report
from slimcodec.outputs import OutputExistsError

WORKERS_ENV = "SLIM_WORKERS"


def default_workers() -> int:
    """The number of CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def resolve_workers(option: int | None) -> int:
    """Workers from ``-j/--workers``, else ``$SLIM_WORKERS``, else the CPU count.

    Raises:
        ValueError: ``$SLIM_WORKERS`` is not a positive integer.
    """
    if option is not None:
        return option
    env = os.environ.get(WORKERS_ENV, "").strip()
    if env:
        try:
            workers = int(env)
        except ValueError:
            workers = 0
        if workers < 1:
            raise ValueError(f"{WORKERS_ENV} must be a positive integer, not {env!r}")
        return workers
    return default_workers()


def silence_library_warnings() -> None:
    """Hide torch's and compressai's deprecation notices (shown again with --debug)."""
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)


def init_worker(weights_path: str | None, debug: bool = False) -> None:
    """Process-pool initializer: ignore SIGINT, one torch thread, load the weights once.

    ``load_weights`` caches per process, so the jobs find them loaded.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if not debug:
        silence_library_warnings()
    import torch

    from slimcodec.weights import load_weights

    torch.set_num_threads(1)
    load_weights(weights_path)


def _record(report: Report, job: Any, result: Any) -> None:
    report.done(
        job.src,
        result.dst,
        bytes_in=result.bytes_in,
        bytes_out=result.bytes_out,
        pixels=result.pixels,
        seconds=result.seconds,
        note=getattr(result, "note", None),
    )


def _record_failure(report: Report, job: Any, exc: BaseException | str, skip_existing: bool) -> None:
    """A failed job; an output that another run wrote meanwhile counts as skipped in a batch."""
    if skip_existing and isinstance(exc, OutputExistsError):
        report.skipped(job.src, f"{job.dst} exists (use --force to overwrite)")
    else:
        report.failed(job.src, exc)


def run_serial(jobs: Sequence[Any], worker_fn: Callable[[Any], Any], report: Report,
               skip_existing: bool = False) -> None:
    """Run the jobs one after another in this process."""
    try:
        for job in jobs:
            try:
                result = worker_fn(job)
            except Exception as exc:  # one bad file never stops the batch
                _record_failure(report, job, exc, skip_existing)
            else:
                _record(report, job, result)
    except KeyboardInterrupt:
        report.interrupted = True


def run_many(
    jobs: Sequence[Any],
    worker_fn: Callable[[Any], Any],
    report: Report,
    workers: int,
    *,
    weights_path: str | None = None,
    skip_existing: bool = False,
) -> None:
    """Run ``worker_fn`` on every job and record each outcome in ``report``.

    Args:
        jobs (Sequence): objects with ``src`` and ``dst`` attributes (sorted by
            ``src`` here); picklable when ``workers > 1``.
        worker_fn (Callable): a module-level function ``job -> result`` where
            ``result`` has ``dst``, ``bytes_in``, ``bytes_out``, ``pixels`` and
            ``seconds``; any exception it raises marks that job failed.
        report (Report): receives ``done``/``skipped``/``failed`` in job order; its
            ``interrupted`` is set on Ctrl-C.
        workers (int): process count; 1 (or a single job) runs serially here.
        weights_path (str | None): the weights each worker process loads once.
        skip_existing (bool): an ``OutputExistsError`` (the output appeared
            since the plan) counts as skipped rather than failed.
    """
    jobs = sorted(jobs, key=lambda job: str(job.src))
    workers = max(1, min(workers, len(jobs)))
    if workers == 1:
        run_serial(jobs, worker_fn, report, skip_existing)
        return

    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    try:
        # "spawn": the parent has loaded torch, and forking a process whose
        # OpenMP threads have started can hang the child.
        executor = ProcessPoolExecutor(
            max_workers=workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=init_worker,
            initargs=(weights_path, report.debug),
        )
    except (OSError, ImportError, NotImplementedError):  # no process pools here (e.g. no /dev/shm)
        run_serial(jobs, worker_fn, report, skip_existing)
        return

    futures = []
    recorded = 0
    try:
        futures = [executor.submit(worker_fn, job) for job in jobs]
        for job, future in zip(jobs, futures):
            _collect(report, job, future, BrokenProcessPool, skip_existing)
            recorded += 1
    except KeyboardInterrupt:
        report.interrupted = True
        for future in futures:
            future.cancel()
        executor.shutdown(wait=True, cancel_futures=True)  # running jobs finish their file
        for job, future in list(zip(jobs, futures))[recorded:]:
            if future.done() and not future.cancelled():
                _collect(report, job, future, BrokenProcessPool, skip_existing)
    finally:
        executor.shutdown(wait=True)


def _collect(report: Report, job: Any, future: Any, broken: type, skip_existing: bool) -> None:
    try:
        result = future.result()
    except broken:
        report.failed(job.src, "a worker process died (out of memory?)")
    except Exception as exc:
        _record_failure(report, job, exc, skip_existing)
    else:
        _record(report, job, result)
