"""Running one job per file, in worker processes when there are several.

Imported only by commands that have files to convert. Jobs run in input
order (sorted by source path) and are reported in that order, so logs are
reproducible. With one worker or one job everything runs in this process.

Each worker process ignores Ctrl-C, limits torch to one thread and loads the
weights once (the ``initializer``); a worker that cannot start (its weights
fail to load, ...) fails each of its jobs with the reason. Ctrl-C in the parent
cancels the jobs not yet started and lets the running ones finish; a second
Ctrl-C stops them too, and the summary is still printed. SIGTERM in the parent
cancels the jobs not yet started and stops the workers at once. A worker exits as soon
as its parent is gone, however the parent died (SIGKILL included): on Linux
the kernel sends it SIGTERM (``PR_SET_PDEATHSIG``), and everywhere a thread
sees its parent process id change. A worker that exits on a signal first
deletes the temporary file it was writing, so no half-written file remains.
"""

from __future__ import annotations

import os
import pickle
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from slimcodec.cli.report import Report, describe_error
from slimcodec.errors import SlimError, WorkerStartError
from slimcodec.outputs import OutputExistsError, remove_live_temps

WORKERS_ENV = "SLIM_WORKERS"
PARENT_POLL_S = 0.2  # how often a worker checks that its parent is still there
_PR_SET_PDEATHSIG = 1  # linux/prctl.h
_STOP_WAIT_S = 5.0  # how long a worker gets to exit on SIGTERM before it is killed


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived while jobs ran (a ``KeyboardInterrupt``, so it stops the same code)."""


_start_error: str | None = None  # set in a worker process whose init_worker failed
_running_dir: str | None = None  # set in a worker process: where it notes the job it runs (see run_job)


def default_workers() -> int:
    """The number of CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


# A worker process costs a start (imports and weights, about half a second) and runs its
# transforms on one thread, while a single process runs them on every core: with fewer
# files than this per worker, one process finishes first (benchmarks/cli_speed.py).
FILES_PER_WORKER = 4


def auto_workers(jobs: int) -> int:
    """The default worker count for ``jobs`` files: one per CPU, with at least
    :data:`FILES_PER_WORKER` files each (so a small batch is never slower than one process)."""
    return max(1, min(default_workers(), jobs // FILES_PER_WORKER))


def configured_workers(option: int | None) -> int | None:
    """Workers from ``-j/--workers``, else ``$SLIM_WORKERS``, else ``None`` (choose per batch).

    Raises:
        ValueError: ``$SLIM_WORKERS`` is not a positive integer.
    """
    if option is not None:
        return option
    env = os.environ.get(WORKERS_ENV, "").strip()
    if not env:
        return None
    try:
        workers = int(env)
    except ValueError:
        workers = 0
    if workers < 1:
        raise ValueError(f"{WORKERS_ENV} must be a positive integer, not {env!r}")
    return workers


def resolve_workers(option: int | None, jobs: int) -> int:
    """Workers from ``-j/--workers``, else ``$SLIM_WORKERS``, else :func:`auto_workers` of ``jobs``.

    Raises:
        ValueError: ``$SLIM_WORKERS`` is not a positive integer.
    """
    configured = configured_workers(option)
    return auto_workers(jobs) if configured is None else configured


def silence_library_warnings() -> None:
    """Hide torch's and compressai's deprecation notices (shown again with --debug)."""
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)


# ---------------------------------------------------------------- worker processes


def _exit_now(code: int) -> None:
    """Delete the temporary file being written, then exit without any clean-up that could block."""
    remove_live_temps()
    os._exit(code)


def _exit_on_signal(signum: int, frame: Any) -> None:
    _exit_now(128 + signum)


def _set_parent_death_signal(signum: int) -> bool:
    """Linux: have the kernel send ``signum`` to this process when its parent dies."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _watch_parent(parent_pid: int, poll_s: float) -> None:
    while os.getppid() == parent_pid:
        time.sleep(poll_s)
    _exit_now(1)


def exit_with_parent(parent_pid: int, poll_s: float = PARENT_POLL_S) -> None:
    """End this process when ``parent_pid`` (its parent) dies, by whatever signal.

    On Linux the kernel sends SIGTERM (``PR_SET_PDEATHSIG``); everywhere a
    daemon thread polls ``os.getppid()``, which changes when the parent is gone
    (it also covers a main thread busy in native code, where a Python signal
    handler would wait). A parent that died before this call ends it at once.
    """
    _set_parent_death_signal(signal.SIGTERM)
    if os.getppid() != parent_pid:
        _exit_now(1)
    threading.Thread(target=_watch_parent, args=(parent_pid, poll_s), name="slim-parent-watch",
                     daemon=True).start()


def init_worker(weights_path: str | None, debug: bool = False, parent_pid: int | None = None,
                running_dir: str | None = None) -> None:
    """Process-pool initializer: exit with the parent, ignore SIGINT, one runtime thread (unless
    ``SLIM_THREADS`` says), load the weights once.

    SIGTERM (from the parent, from the kernel when the parent died, or from
    anyone) deletes the temporary file being written and exits. ``load_weights``
    caches per process, so the jobs find them loaded. A failure is kept, not
    raised (the pool would break with a traceback): :func:`run_job` reports it.
    """
    global _start_error, _running_dir
    _running_dir = running_dir
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _exit_on_signal)
    if parent_pid is not None:
        exit_with_parent(parent_pid)
    if not debug:
        silence_library_warnings()
    try:
        from slimcodec import runtime
        from slimcodec.weights import load_weights

        runtime.limit_malloc_arenas()
        runtime.set_threads(runtime.threads() or 1)
        load_weights(weights_path)
    except Exception as exc:
        from slimcodec.cli.report import describe_error

        _start_error = describe_error(exc)


def _note_running(index: int | None) -> None:
    """Note in ``_running_dir/<pid>`` which job this worker runs, so that the parent can tell
    which file a worker that died (SIGKILL, out of memory) was converting. Lock-free: one
    file per process, replaced atomically."""
    if _running_dir is None or index is None:
        return
    note = os.path.join(_running_dir, str(os.getpid()))
    try:
        with open(note + ".tmp", "w") as f:
            f.write(str(index))
        os.replace(note + ".tmp", note)
    except OSError:
        pass  # then a death fails every job it interrupted, as before


def run_job(worker_fn: Callable[[Any], Any], job: Any, index: int | None = None) -> Any:
    """Run one job in a worker process, unless the process could not start.

    Raises:
        WorkerStartError: ``init_worker`` failed in this process.
    """
    if _start_error is not None:
        raise WorkerStartError(_start_error)
    _note_running(index)
    try:
        return worker_fn(job)
    except Exception as exc:
        if _survives_pickling(exc):
            raise
        # the pool could not send it back and would report the worker as ended abruptly
        raise SlimError(describe_error(exc)) from None


def _survives_pickling(exc: BaseException) -> bool:
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        return False
    return True


# ---------------------------------------------------------------- the parent


@contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """While inside, SIGTERM raises :class:`Terminated` in the main thread (once: a second
    SIGTERM kills as usual). Does nothing outside the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, handler)
    if previous is None:  # set outside Python: nothing to put back but the default
        previous = signal.SIG_DFL
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# How a runner records each outcome in its Report: run_serial and run_many here, and
# run_on_cluster (slimcodec.cli.cluster), so that a file counts the same on every runner.


def record_result(report: Report, job: Any, result: Any) -> None:
    """A converted job: one ``report.done`` line with its sizes and time."""
    report.done(
        job.src,
        result.dst,
        bytes_in=result.bytes_in,
        bytes_out=result.bytes_out,
        pixels=result.pixels,
        seconds=result.seconds,
        note=getattr(result, "note", None),
    )


def record_failure(report: Report, job: Any, exc: BaseException | str, skip_existing: bool) -> None:
    """A failed job; an output that another run wrote meanwhile counts as skipped in a batch."""
    if skip_existing and isinstance(exc, OutputExistsError):
        report.skipped(job.src, f"{job.dst} exists (--skip-existing)")
    else:
        report.failed(job.src, exc)


def record_interrupt(report: Report, exc: KeyboardInterrupt) -> None:
    """Ctrl-C (or SIGTERM, :class:`Terminated`) stopped the batch: the report says which."""
    report.interrupted = True
    report.terminated = isinstance(exc, Terminated)


def run_serial(jobs: Sequence[Any], worker_fn: Callable[[Any], Any], report: Report,
               skip_existing: bool = False) -> None:
    """Run the jobs one after another in this process."""
    try:
        for job in jobs:
            try:
                result = worker_fn(job)
            except Exception as exc:  # one bad file never stops the batch
                record_failure(report, job, exc, skip_existing)
            else:
                record_result(report, job, result)
    except KeyboardInterrupt as exc:  # the job's temporary file went with its stack
        record_interrupt(report, exc)


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
            ``interrupted`` is set on Ctrl-C, and ``terminated`` too on SIGTERM.
        workers (int): process count; 1 (or a single job) runs serially here.
        weights_path (str | None): the weights each worker process loads once.
        skip_existing (bool): an ``OutputExistsError`` (the output appeared
            since the plan) counts as skipped rather than failed.
    """
    jobs = sorted(jobs, key=lambda job: str(job.src))
    workers = max(1, min(workers, len(jobs)))
    with sigterm_interrupts():
        if workers == 1:
            run_serial(jobs, worker_fn, report, skip_existing)
        else:
            _run_pool(jobs, worker_fn, report, workers, weights_path, skip_existing)


def _run_pool(jobs: Sequence[Any], worker_fn: Callable[[Any], Any], report: Report, workers: int,
              weights_path: str | None, skip_existing: bool) -> None:
    """Run the jobs in a process pool; after a worker death, the jobs it did not hold run in a new pool.

    A worker that dies (SIGKILL, the out-of-memory killer) breaks the whole pool: every job
    not finished then fails with it. Each worker notes the job it runs (:func:`run_job`), so
    only the job of the dead worker is failed; the others (pending, or running in the workers
    the broken pool stopped) run again in a new pool, reported after the ones already done.
    """
    import tempfile

    remaining = list(jobs)
    with tempfile.TemporaryDirectory(prefix="slim-workers-") as running_dir, _quiet_broken_pool():
        while remaining:
            retry = _run_pool_once(remaining, worker_fn, report, workers, weights_path, skip_existing, running_dir)
            if len(retry) >= len(remaining):  # no progress: the dead worker's job is unknown
                for job in retry:
                    report.failed(job.src, WORKER_DIED)
                return
            remaining = retry


WORKER_DIED = "a worker process ended abruptly (killed by a signal, or out of memory)"


@contextmanager
def _quiet_broken_pool() -> Iterator[None]:
    """Keep the pool's manager thread from printing a traceback for a future it cannot fail.

    When workers are stopped after the pending futures were cancelled (SIGTERM, Ctrl-C),
    CPython's manager thread marks those futures failed and raises
    ``InvalidStateError: CANCELLED`` (cpython gh-94777's neighbourhood): the futures are
    already accounted for, so the error is dropped; any other thread error is reported as usual.
    """
    from concurrent.futures import InvalidStateError

    previous = threading.excepthook

    def hook(args: Any) -> None:
        if args.exc_type is not None and issubclass(args.exc_type, InvalidStateError):
            return
        previous(args)

    threading.excepthook = hook
    try:
        yield
    finally:
        threading.excepthook = previous


def _run_pool_once(jobs: Sequence[Any], worker_fn: Callable[[Any], Any], report: Report, workers: int,
                   weights_path: str | None, skip_existing: bool, running_dir: str) -> list[Any]:
    """One process pool over ``jobs``; the jobs to run again because a worker died (else ``[]``)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    try:
        # "spawn": the parent has loaded torch, and forking a process whose
        # OpenMP threads have started can hang the child.
        executor = ProcessPoolExecutor(
            max_workers=min(workers, len(jobs)),
            mp_context=multiprocessing.get_context("spawn"),
            initializer=init_worker,
            initargs=(weights_path, report.debug, os.getpid(), running_dir),
        )
    except (OSError, ImportError, NotImplementedError):  # no process pools here (e.g. no /dev/shm)
        run_serial(jobs, worker_fn, report, skip_existing)
        return []

    futures = []
    recorded = 0
    broken: list[tuple[int, Any]] = []  # (index, job) whose future the broken pool failed
    try:
        try:
            futures = [executor.submit(run_job, worker_fn, job, index) for index, job in enumerate(jobs)]
        except OSError as exc:  # the processes start on the first submit: e.g. no more processes allowed
            report.warn(f"cannot start worker processes ({describe_error(exc)}); converting in this process")
            executor.shutdown(wait=False, cancel_futures=True)
            run_serial(jobs, worker_fn, report, skip_existing)
            return []
        processes = list((getattr(executor, "_processes", None) or {}).values())  # no public API before 3.14
        for index, (job, future) in enumerate(zip(jobs, futures)):
            if broken or _is_broken(future, BrokenProcessPool):
                broken.append((index, job))
            else:
                _collect(report, job, future, skip_existing)
            recorded += 1
    except KeyboardInterrupt as exc:
        record_interrupt(report, exc)
        for future in futures:
            future.cancel()
        stopped = _finish_or_stop(executor, report)
        for job, future in list(zip(jobs, futures))[recorded:]:
            if future.done() and not future.cancelled():
                _collect(report, job, future, skip_existing, finished_only=stopped)
        return []
    finally:
        executor.shutdown(wait=True)
    if not broken:
        return []
    dead = _jobs_of_dead_workers(processes, running_dir)
    retry = []
    for index, job in broken:
        future = futures[index]
        if not _is_broken(future, BrokenProcessPool):
            _collect(report, job, future, skip_existing)  # it finished before the pool broke
        elif index in dead:
            report.failed(job.src, WORKER_DIED)
        else:
            retry.append(job)
    return retry  # with no dead job known, a round that finishes nothing fails them all (_run_pool)


def _is_broken(future: Any, broken_type: type) -> bool:
    """Whether ``future`` failed because its pool broke (waiting for it if need be)."""
    try:
        return isinstance(future.exception(), broken_type)
    except Exception:  # cancelled
        return False


def _jobs_of_dead_workers(processes: Sequence[Any], running_dir: str) -> set[int]:
    """The job indexes the workers that died on their own were running when they died.

    The broken pool stops the other workers with SIGTERM, on which they exit with
    ``128 + SIGTERM`` (or ``-SIGTERM`` before their handler is set); any other exit
    (``-SIGKILL`` ...) is a death.
    """
    stopped = {0, 128 + signal.SIGTERM, -signal.SIGTERM}
    dead = set()
    for process in processes:
        if process.exitcode is None or process.exitcode in stopped:
            continue
        try:
            with open(os.path.join(running_dir, str(process.pid))) as f:
                dead.add(int(f.read()))
        except (OSError, ValueError):
            pass
    return dead


def _finish_or_stop(executor: Any, report: Report) -> bool:
    """After Ctrl-C wait for the running jobs (a further Ctrl-C or SIGTERM stops them); after
    SIGTERM stop them at once. Whether the workers were stopped."""
    if report.terminated:
        _stop_workers(executor)  # their temporary files go with them
        executor.shutdown(wait=True, cancel_futures=True)
        return True
    try:
        executor.shutdown(wait=True, cancel_futures=True)  # running jobs finish their file
        return False
    except KeyboardInterrupt as again:
        report.terminated = isinstance(again, Terminated)
        _stop_workers(executor)
        return True


def _stop_workers(executor: Any) -> None:
    """SIGTERM every worker, wait for them, SIGKILL the ones still there."""
    processes = list((getattr(executor, "_processes", None) or {}).values())  # no public API before 3.14
    for process in processes:
        if process.is_alive():
            process.terminate()
    deadline = time.monotonic() + _STOP_WAIT_S
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            process.kill()
            process.join(1.0)


def _collect(report: Report, job: Any, future: Any, skip_existing: bool, finished_only: bool = False) -> None:
    """Record a finished future; with ``finished_only``, one whose worker was stopped is left out."""
    from concurrent.futures.process import BrokenProcessPool

    try:
        result = future.result()
    except BrokenProcessPool:
        if not finished_only:
            report.failed(job.src, "a worker process ended abruptly (killed by a signal, or out of memory)")
    except Exception as exc:
        record_failure(report, job, exc, skip_existing)
    else:
        record_result(report, job, result)
