"""Killing a ``slim encode -j 2`` batch: its worker processes go with it, and no temporary file stays.

The batch runs as a real subprocess. Its last output is a FIFO nobody reads
(outputs that are devices or FIFOs are written through), so one worker blocks
on it for ever and the batch cannot end by itself: the signal always finds
both workers alive, one busy, one idle. (An input FIFO is refused since issue 30.)
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import gradient_image

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc; Linux only")

REPO = Path(__file__).resolve().parents[1]
IMAGES = 4  # regular inputs, before the FIFO


def _stat_fields(pid: int) -> list[str] | None:
    """``/proc/PID/stat`` after the command name: state, ppid, ... (None if gone)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not)."""
    fields = _stat_fields(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def children(pid: int) -> set[int]:
    """The live processes whose parent is ``pid``."""
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields is not None and int(fields[1]) == pid and fields[0] not in ("Z", "X"):
                found.add(int(entry))
    return found


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def wait_until(condition: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "SLIM_WORKERS"} | extra
    env["OMP_NUM_THREADS"] = "1"
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


@dataclass
class Batch:
    """A running batch: its process, output folder, stderr file and every process it started."""

    proc: subprocess.Popen
    out: Path
    stderr: Path
    family: set[int] = field(default_factory=set)

    def workers(self) -> set[int]:
        return {pid for pid in children(self.proc.pid) if "spawn_main" in cmdline(pid)}


@contextmanager
def blocked_batch(tmp_path: Path, weights: Path, workers: int = 2, blocked: tuple[str, ...] = ("z",),
                  after: tuple[str, ...] = ()) -> Iterator[Batch]:
    """``slim encode src -o out -j WORKERS`` with IMAGES images, then images whose outputs are
    FIFOs (``blocked``), then ``after`` images, once the first IMAGES are encoded and reported.

    Whatever the test leaves running is killed on the way out.
    """
    src = tmp_path / "src"
    src.mkdir()
    out, stderr = tmp_path / "out", tmp_path / "stderr.txt"
    out.mkdir()
    for name in [str(i) for i in range(IMAGES)] + list(blocked) + list(after):  # sorted in this order
        gradient_image(40, 24).save(src / f"{name}.png")
    for name in blocked:
        os.mkfifo(out / f"{name}.slim")  # a worker blocks writing it
    (tmp_path / "tmp").mkdir()
    with open(stderr, "wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "slimcodec.cli", "encode", str(src), "-o", str(out),
                                 "-j", str(workers), "--weights", str(weights), "-w", "8"],
                                stdout=subprocess.DEVNULL, stderr=err, env=_env(TMPDIR=str(tmp_path / "tmp")),
                                cwd=tmp_path, preexec_fn=_default_sigint)
    batch = Batch(proc, out, stderr)
    try:
        ready = wait_until(lambda: proc.poll() is not None
                           or (len(finished(out)) == IMAGES and _reported(stderr) == IMAGES
                               and len(batch.workers()) == (workers if workers > 1 else 0)), 180)
        assert ready and proc.poll() is None, (proc.poll(), stderr.read_text())
        batch.family = children(proc.pid)  # the two workers and multiprocessing's resource tracker
        yield batch
    finally:
        for pid in batch.family | {proc.pid}:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        proc.wait(10)


def _default_sigint() -> None:
    """In the child before exec: Ctrl-C as a shell gives it. An ignored SIGINT is inherited
    across exec, and Python then installs no KeyboardInterrupt handler: in the full suite
    the pytest process had SIGINT ignored, so the batch never saw either Ctrl-C."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _reported(stderr: Path) -> int:
    """How many files the batch has reported encoded (its parent has their results)."""
    return sum(line.startswith("encoded ") for line in stderr.read_text().splitlines())


def finished(out: Path) -> list[str]:
    """The regular files in ``out`` (the outputs written; not the FIFO)."""
    return sorted(p.name for p in out.iterdir() if p.is_file())


def _left_in(batch: Batch) -> str:
    return "; ".join(f"{pid}: {cmdline(pid)}" for pid in sorted(batch.family) if alive(pid))


def test_sigkill_of_a_batch_parent_ends_its_worker_processes_within_seconds(tmp_path, tiny_weights_path):
    with blocked_batch(tmp_path, tiny_weights_path) as batch:
        assert len(batch.family) >= 2
        os.kill(batch.proc.pid, signal.SIGKILL)
        batch.proc.wait(10)
        assert wait_until(lambda: not any(alive(pid) for pid in batch.family), 5), _left_in(batch)
        assert finished(batch.out) == [f"{i}.slim" for i in range(IMAGES)]


def test_sigterm_of_a_batch_parent_stops_its_workers_keeps_finished_outputs_and_exits_143(tmp_path,
                                                                                          tiny_weights_path):
    from slimcodec import codec
    from slimcodec.weights import load_weights

    with batch_and_signal(tmp_path, tiny_weights_path, signal.SIGTERM) as batch:
        assert batch.proc.returncode == 143, batch.stderr.read_text()
        assert wait_until(lambda: not any(alive(pid) for pid in batch.family), 5), _left_in(batch)
        text = batch.stderr.read_text()
        assert "Traceback" not in text and text.splitlines()[-1].startswith("terminated: 4 files encoded")
        assert all(line.startswith(("encoded ", "terminated: ")) for line in text.splitlines()), text
        assert finished(batch.out) == [f"{i}.slim" for i in range(IMAGES)]
        weights = load_weights(tiny_weights_path)
        for path in batch.out.glob("[0-9].slim"):
            assert codec.decode(path.read_bytes(), weights=weights).size == (40, 24)


def test_sigterm_of_a_serial_batch_exits_143_and_keeps_finished_outputs(tmp_path, tiny_weights_path):
    with batch_and_signal(tmp_path, tiny_weights_path, signal.SIGTERM, workers=1) as batch:
        assert batch.proc.returncode == 143, batch.stderr.read_text()
        text = batch.stderr.read_text()
        assert "Traceback" not in text and text.splitlines()[-1].startswith("terminated: 4 files encoded")
        assert finished(batch.out) == [f"{i}.slim" for i in range(IMAGES)]


def test_a_second_ctrl_c_stops_the_running_jobs_and_still_prints_the_summary(tmp_path, tiny_weights_path):
    """The first Ctrl-C waits for the worker blocked on the FIFO (for ever); the second stops it."""
    with blocked_batch(tmp_path, tiny_weights_path) as batch:
        os.kill(batch.proc.pid, signal.SIGINT)
        time.sleep(1.0)
        assert batch.proc.poll() is None  # still waiting for the running job
        os.kill(batch.proc.pid, signal.SIGINT)
        try:
            batch.proc.wait(60)  # the workers get 5 s to stop; a shared, loaded core needs more
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running 60 s after the second Ctrl-C; its stderr: {batch.stderr.read_text()!r}; "
                        f"its processes: {_left_in(batch)}")
        text = batch.stderr.read_text()
        assert batch.proc.returncode == 130, text
        assert "Traceback" not in text and text.splitlines()[-1].startswith("interrupted: 4 files encoded"), text
        assert wait_until(lambda: not any(alive(pid) for pid in batch.family), 5), _left_in(batch)
        assert finished(batch.out) == [f"{i}.slim" for i in range(IMAGES)]


def test_sigkill_of_one_worker_fails_only_its_file_and_the_pending_files_run_in_a_new_worker(tmp_path,
                                                                                          tiny_weights_path):
    """Issue 30: a dead worker broke the pool and every file not yet converted failed with it."""
    with blocked_batch(tmp_path, tiny_weights_path, blocked=("y", "z"), after=("zz1", "zz2")) as batch:
        notes = tmp_path / "tmp"
        running = {}  # job index -> worker pid, from the notes the workers keep (cli/parallel.py)
        assert wait_until(lambda: running.update({int(p.read_text()): int(p.name) for p in notes.glob("*/*")
                                                  if p.name.isdigit()}) or {4, 5} <= set(running), 60), running
        os.kill(running[4], signal.SIGKILL)  # the worker writing y.slim
        # the new pool's other worker converts the files that were pending (z.slim blocks the first)
        assert wait_until(lambda: {"zz1.slim", "zz2.slim"} <= set(finished(batch.out)), 120), batch.stderr.read_text()
        os.kill(batch.proc.pid, signal.SIGTERM)  # z.slim still blocks its (new) worker
        batch.proc.wait(20)
        text = batch.stderr.read_text()
        errors = [line for line in text.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and errors[0].startswith("error: cannot encode ") and "y.png: a worker process " \
            "ended abruptly" in errors[0], text
        assert "Traceback" not in text and text.splitlines()[-1].startswith("terminated: 6 files encoded, 1 file "
                                                                            "failed"), text
        assert finished(batch.out) == [f"{i}.slim" for i in range(IMAGES)] + ["zz1.slim", "zz2.slim"]


@contextmanager
def batch_and_signal(tmp_path: Path, weights: Path, signum: int, workers: int = 2) -> Iterator[Batch]:
    """A blocked batch after ``signum`` was sent to its parent and the parent ended (20 s at most)."""
    with blocked_batch(tmp_path, weights, workers) as batch:
        os.kill(batch.proc.pid, signum)
        batch.proc.wait(20)
        yield batch


# ---------------------------------------------------------------- exit_with_parent on its own (no torch)

_CHILD = textwrap.dedent("""
    import sys, time
    from slimcodec.cli import parallel
    if sys.argv[2] == "watcher only":
        parallel._set_parent_death_signal = lambda signum: False
    else:  # the parent death signal only
        parallel._watch_parent = lambda parent_pid, poll_s: None
    parallel.exit_with_parent(int(sys.argv[1]), poll_s=0.05)
    print("ready", flush=True)
    time.sleep(600)
""")
_PARENT = textwrap.dedent("""
    import os, subprocess, sys, time
    child = subprocess.Popen([sys.executable, "-c", sys.argv[1], str(os.getpid()), sys.argv[2]],
                             stdout=subprocess.PIPE)
    assert child.stdout.readline() == b"ready\\n"
    print(child.pid, flush=True)
    time.sleep(600)
""")


@pytest.mark.parametrize("mechanism", ["parent death signal only", "watcher only"])
def test_a_process_that_called_exit_with_parent_ends_when_its_parent_is_killed(mechanism):
    parent = subprocess.Popen([sys.executable, "-c", _PARENT, _CHILD, mechanism], stdout=subprocess.PIPE,
                              env=_env())
    child = None
    try:
        child = int(parent.stdout.readline())
        assert alive(child)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(10)
        assert wait_until(lambda: not alive(child), 3)
    finally:
        if child is not None and alive(child):
            os.kill(child, signal.SIGKILL)
        if parent.poll() is None:
            parent.kill()
            parent.wait(10)


_WRITER = textwrap.dedent("""
    import signal, sys, time
    from pathlib import Path
    from slimcodec.cli import parallel
    from slimcodec.outputs import write_atomic
    signal.signal(signal.SIGTERM, parallel._exit_on_signal)  # as init_worker does
    parallel.exit_with_parent(int(sys.argv[1]), poll_s=0.05)

    def write(f):
        f.write(b"half a file")
        f.flush()
        print("writing", flush=True)
        time.sleep(600)

    write_atomic(Path(sys.argv[2]) / "a.slim", write, overwrite=False)
""")


@pytest.mark.parametrize("how", ["SIGTERM to the worker", "SIGKILL to its parent"])
def test_a_worker_ended_while_writing_deletes_its_temporary_file(how, tmp_path):
    parent = subprocess.Popen([sys.executable, "-c", _PARENT.replace('b"ready\\n"', 'b"writing\\n"'), _WRITER,
                               str(tmp_path)], stdout=subprocess.PIPE, env=_env())
    worker = None
    try:
        worker = int(parent.stdout.readline())
        assert [p.name.endswith(".slimtmp") for p in tmp_path.iterdir()] == [True]
        os.kill(worker if how == "SIGTERM to the worker" else parent.pid,
                signal.SIGTERM if how == "SIGTERM to the worker" else signal.SIGKILL)
        assert wait_until(lambda: not alive(worker), 3)
        assert list(tmp_path.iterdir()) == []
    finally:
        for pid in (worker, parent.pid):
            if pid is not None and alive(pid):
                os.kill(pid, signal.SIGKILL)
        parent.wait(10)
