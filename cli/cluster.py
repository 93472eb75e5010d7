"""Batch conversion on a Dask cluster (``slim encode DIR -o OUT --scheduler ADDRESS``).

Needs the ``dask`` extra (``pip install "slimcodec[dask]"``: dask.distributed);
without it :func:`require_distributed` raises a one-line :class:`ClusterError`.

The same jobs as ``-j N`` (``slimcodec.cli.jobs.Job``: one file each) go to the
cluster's workers, one task per file (``pure=False``), and each outcome lands in the
same :class:`~slimcodec.cli.report.Report` as it completes (``as_completed``), so
counts and exit codes are those of a local run. Inputs, outputs and the weights are
paths: every worker must see them on a shared filesystem.

Each worker loads the weights once, through a :class:`WeightsPlugin` that also
applies to workers that join (or are restarted) during the run, and runs the
transforms on the thread count of the client (1 unless ``--threads``/``SLIM_THREADS``
says), so outputs are byte-identical to ``slim encode -j 1 --threads 1``.

A worker that dies mid-file loses nothing: the scheduler reruns its tasks on another
worker (up to ``distributed.scheduler.allowed-failures`` deaths per file, 3 by
default); outputs are written through one temporary file and renamed, so no partial
output is ever visible, and the next run deletes a dead worker's temporary file. A
task whose error may be passing (an ``OSError`` on the shared filesystem) is retried
``retries`` times; a file's own error (not an image, corrupt, output exists) is not.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slimcodec.errors import SlimError

INSTALL_HINT = 'pip install "slimcodec[dask]"'
RETRIES = 2  # reruns of a task that raised an error that may pass (not a file's own error)
CONNECT_TIMEOUT_S = 30
WORKER_WAIT_S = 60  # how long a run waits for the first worker to join the scheduler

try:  # the base class of the worker plugin; only there with the dask extra
    from distributed import WorkerPlugin as _WorkerPlugin
except ImportError:  # pragma: no cover - exercised where the extra is missing
    _WorkerPlugin = object


class ClusterError(SlimError):
    """The cluster cannot be used: extra missing, scheduler unreachable, workers not set up."""


def distributed_installed() -> bool:
    """Whether dask.distributed can be imported (without importing it)."""
    from importlib.util import find_spec

    return find_spec("distributed") is not None


def require_distributed() -> None:
    """Raise a one-line :class:`ClusterError` saying what to install when the extra is missing."""
    if not distributed_installed():
        raise ClusterError(f"--scheduler needs dask.distributed: {INSTALL_HINT}")


# ---------------------------------------------------------------- on the workers


@dataclass
class Failure:
    """A file's own error, returned (not raised) by a task so that the engine does not retry it."""

    error: BaseException


class WeightsPlugin(_WorkerPlugin):
    """Sets up each worker for slimcodec tasks: warnings off, runtime threads, weights loaded once.

    Attributes:
        weights_path (str | None): the weights file (a path every worker sees); ``None``
            = the shipped weights of the worker's own installation.
        threads (int): runtime threads per task (the client's, for identical outputs).
        weights_id (str): hex id of the client's weights; a worker that loads other
            weights (another slimcodec release, another file) is refused.
        backend (str | None): the client's ``SLIM_BACKEND``, if set.
        debug (bool): keep library warnings.
    """

    def __init__(self, weights_path: str | None, threads: int, weights_id: str,
                 backend: str | None = None, debug: bool = False):
        self.weights_path = weights_path
        self.threads = threads
        self.weights_id = weights_id
        self.backend = backend
        self.debug = debug

    def setup(self, worker: Any = None) -> None:
        """Prepare this worker process; raises ``SlimError`` when its weights differ or are unreadable."""
        prepare_worker(self.threads, self.backend, self.debug)
        from slimcodec.weights import load_weights

        loaded = load_weights(self.weights_path).weights_id.hex()
        if loaded != self.weights_id:
            raise SlimError(f"worker loads weights {loaded}, the client {self.weights_id} "
                            "(install the same slimcodec on every worker)")


def prepare_worker(threads: int, backend: str | None = None, debug: bool = False) -> None:
    """Runtime threads (and backend) of this process; library warnings off unless ``debug``."""
    from slimcodec import runtime

    if backend:
        os.environ[runtime.BACKEND_ENV] = backend
    if not debug:
        from slimcodec.cli.parallel import silence_library_warnings

        silence_library_warnings()
    runtime.set_threads(threads)


def run_task(worker_fn: Callable[[Any], Any], job: Any, threads: int) -> Any:
    """One file on a worker: ``worker_fn(job)``, a file's own error returned as :class:`Failure`.

    Errors that may pass (``OSError``, ``MemoryError``, ...) are raised, so the engine retries them.
    """
    from slimcodec import runtime

    if runtime.threads() != threads:  # a worker the plugin has not reached
        runtime.set_threads(threads)
    try:
        return worker_fn(job)
    except (SlimError, ValueError) as exc:
        return Failure(exc)


# ---------------------------------------------------------------- on the client


def absolute_job(job: Any) -> Any:
    """``job`` (a dataclass such as ``Job``) with absolute ``src``, ``dst`` and ``weights_path``:
    a worker's current folder is not the client's."""
    changes = {name: os.path.abspath(value) if isinstance(value, str) else Path(value).absolute()
               for name in ("src", "dst", "weights_path")
               if (value := getattr(job, name, None)) is not None}
    return dataclasses.replace(job, **changes)


def connect(scheduler: Any):
    """A ``distributed.Client`` for a scheduler address (``tcp://host:8786``), or ``scheduler``
    itself when it is already a client.

    Raises:
        ClusterError: the extra is missing or the scheduler cannot be reached.
    """
    require_distributed()
    from distributed import Client

    if isinstance(scheduler, Client):
        return scheduler
    try:
        return Client(scheduler, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise ClusterError(f"--scheduler {scheduler}: cannot connect ({reason})") from None


def set_up_workers(client: Any, plugin: WeightsPlugin, scheduler: Any) -> str:
    """Wait for a worker, register ``plugin`` on every worker (and on those that join); return its name.

    Raises:
        ClusterError: no worker joined in time, or a worker cannot load the weights.
    """
    try:
        client.wait_for_workers(1, timeout=WORKER_WAIT_S)
    except TimeoutError:
        raise ClusterError(f"--scheduler {scheduler}: no worker joined in {WORKER_WAIT_S} s") from None
    name = f"slimcodec-weights-{plugin.weights_id}-{plugin.threads}"
    try:
        client.register_plugin(plugin, name=name)
    except Exception as exc:
        from slimcodec.cli.report import describe_error

        raise ClusterError(f"a worker cannot be set up: {describe_error(exc)} (inputs, outputs and "
                           "weights must be on a filesystem every worker sees)") from None
    return name


def _record_outcome(report: Any, job: Any, future: Any, skip_existing: bool) -> None:
    """Record one finished future in ``report`` (as ``run_many`` records a pool's)."""
    from distributed import KilledWorker

    from slimcodec.cli.parallel import record_failure, record_result

    try:
        outcome = future.result()
    except KilledWorker:
        report.failed(job.src, "the workers running it died (out of memory?)")
    except Exception as exc:
        record_failure(report, job, exc, skip_existing)
    else:
        if isinstance(outcome, Failure):
            record_failure(report, job, outcome.error, skip_existing)
        else:  # the output named as the user gave it, not as the worker saw it
            record_result(report, job, dataclasses.replace(outcome, dst=job.dst))


def _unregister(client: Any, name: str) -> None:
    try:
        client.unregister_worker_plugin(name)
    except Exception:  # an old scheduler, or one already gone: nothing left to tidy
        pass


def run_on_cluster(
    jobs: Sequence[Any],
    worker_fn: Callable[[Any], Any],
    report: Any,
    scheduler: Any,
    *,
    weights_path: str | None = None,
    skip_existing: bool = False,
    retries: int = RETRIES,
) -> None:
    """Run ``worker_fn`` on every job on a Dask cluster and record each outcome in ``report``.

    Args:
        jobs (Sequence): ``Job``-like objects with ``src`` and ``dst`` (paths every worker sees).
        worker_fn (Callable): a module-level ``job -> Result`` (``encode_one``, ``decode_one``).
        report (Report): receives ``done``/``skipped``/``failed`` as files complete; its
            ``interrupted`` (and ``terminated``) is set on Ctrl-C (SIGTERM).
        scheduler (str | Client): a scheduler address such as ``tcp://host:8786``, or a client.
        weights_path (str | None): the weights every worker loads once (``None``: shipped).
        skip_existing (bool): an output that appeared since the plan counts as skipped.
        retries (int): reruns of a task whose error may pass (a dead worker's tasks are
            rerun by the scheduler regardless).

    Raises:
        ClusterError: the extra is missing, the scheduler unreachable or a worker not set up
            (raised before any file is converted).
    """
    from slimcodec import runtime
    from slimcodec.weights import load_weights

    if not jobs:
        return  # nothing to convert: no cluster needed
    threads = runtime.threads() or 1
    weights_path = None if weights_path is None else os.path.abspath(weights_path)
    plugin = WeightsPlugin(weights_path, threads, load_weights(weights_path).weights_id.hex(),
                           os.environ.get(runtime.BACKEND_ENV), getattr(report, "debug", False))
    client = connect(scheduler)
    try:
        name = set_up_workers(client, plugin, scheduler)
        try:
            _submit_and_collect(client, sorted(jobs, key=lambda job: str(job.src)), worker_fn, report,
                                threads, skip_existing, retries)
        finally:
            _unregister(client, name)
    finally:
        if client is not scheduler:
            client.close()


def _submit_and_collect(client: Any, jobs: list, worker_fn: Callable[[Any], Any], report: Any, threads: int,
                        skip_existing: bool, retries: int) -> None:
    """Submit one task per job, record outcomes as they complete; Ctrl-C/SIGTERM cancel the rest."""
    from distributed import as_completed

    from slimcodec.cli.parallel import record_interrupt, sigterm_interrupts

    futures: dict[Any, Any] = {}
    with sigterm_interrupts():
        try:
            for job in jobs:
                future = client.submit(run_task, worker_fn, absolute_job(job), threads, pure=False,
                                       retries=retries)
                futures[future] = job
            for future in as_completed(futures, loop=client.loop):
                _record_outcome(report, futures[future], future, skip_existing)
        except KeyboardInterrupt as exc:  # running tasks finish their file; none is partial
            record_interrupt(report, exc)
            client.cancel(list(futures))
