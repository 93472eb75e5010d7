"""Killing a ``slim encode -j 2`` batch: its worker processes go with it, and no temporary file stays.

The batch runs as a real subprocess. Its last input is a FIFO nobody writes
to, so one worker blocks on it for ever and the batch cannot end by itself:
the signal always finds both workers alive, one busy, one idle.
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


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "SLIM_WORKERS"}
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
def blocked_batch(tmp_path: Path, weights: Path, workers: int = 2) -> Iterator[Batch]:
    """``slim encode src -o out -j WORKERS`` with IMAGES images and a FIFO, once the images are encoded.

    Whatever the test leaves running is killed on the way out.
    """
    src = tmp_path / "src"
    src.mkdir()
    for i in range(IMAGES):
        gradient_image(40, 24).save(src / f"{i}.png")
    os.mkfifo(src / "z.png")  # sorted last: one worker blocks opening it
    out, stderr = tmp_path / "out", tmp_path / "stderr.txt"
    with open(stderr, "wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "slimcodec.cli", "encode", str(src), "-o", str(out),
                                 "-j", str(workers), "--weights", str(weights), "-w", "8"],
                                stdout=subprocess.DEVNULL, stderr=err, env=_env(), cwd=tmp_path)
    batch = Batch(proc, out, stderr)
    try:
        ready = wait_until(lambda: proc.poll() is not None
                           or (len(list(out.glob("*.slim"))) == IMAGES
                               and len(batch.workers()) == (workers if workers > 1 else 0)), 180)
        assert ready and proc.poll() is None, (proc.poll(), stderr.read_text())
        batch.family = children(proc.pid)  # the two workers and multiprocessing's resource tracker
        yield batch
    finally:
        for pid in batch.family | {proc.pid}:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        proc.wait(10)


def _left_in(batch: Batch) -> str:
    return "; ".join(f"{pid}: {cmdline(pid)}" for pid in sorted(batch.family) if alive(pid))


def test_sigkill_of_a_batch_parent_ends_its_worker_processes_within_seconds(tmp_path, tiny_weights_path):
    with blocked_batch(tmp_path, tiny_weights_path) as batch:
        assert len(batch.family) >= 2
        os.kill(batch.proc.pid, signal.SIGKILL)
        batch.proc.wait(10)
        assert wait_until(lambda: not any(alive(pid) for pid in batch.family), 5), _left_in(batch)
        assert sorted(p.name for p in batch.out.iterdir()) == [f"{i}.slim" for i in range(IMAGES)]


def test_sigterm_of_a_batch_parent_stops_its_workers_keeps_finished_outputs_and_exits_143(tmp_path,
                                                                                          tiny_weights_path):
    from slimcodec import codec
    from slimcodec.weights import load_weights

    with batch_and_signal(tmp_path, tiny_weights_path, signal.SIGTERM) as batch:
        assert batch.proc.returncode == 143, batch.stderr.read_text()
        assert wait_until(lambda: not any(alive(pid) for pid in batch.family), 5), _left_in(batch)
        text = batch.stderr.read_text()
        assert "Traceback" not in text and text.splitlines()[-1].startswith("terminated: 4 files encoded")
        assert sorted(p.name for p in batch.out.iterdir()) == [f"{i}.slim" for i in range(IMAGES)]
        weights = load_weights(tiny_weights_path)
        for path in batch.out.iterdir():
            assert codec.decode(path.read_bytes(), weights=weights).size == (40, 24)


def test_sigterm_of_a_serial_batch_exits_143_and_keeps_finished_outputs(tmp_path, tiny_weights_path):
    with batch_and_signal(tmp_path, tiny_weights_path, signal.SIGTERM, workers=1) as batch:
        assert batch.proc.returncode == 143, batch.stderr.read_text()
        text = batch.stderr.read_text()
        assert "Traceback" not in text and text.splitlines()[-1].startswith("terminated: 4 files encoded")
        assert sorted(p.name for p in batch.out.iterdir()) == [f"{i}.slim" for i in range(IMAGES)]


def test_a_second_ctrl_c_stops_the_running_jobs_and_still_prints_the_summary(tmp_path, tiny_weights_path):
    """The first Ctrl-C waits for the worker blocked on the FIFO (for ever); the second stops it."""
    with blocked_batch(tmp_path, tiny_weights_path) as batch:
        os.kill(batch.proc.pid, signal.SIGINT)
        time.sleep(1.0)
        assert batch.proc.poll() is None  # still waiting for the running job
        os.kill(batch.proc.pid, signal.SIGINT)
        batch.proc.wait(20)
        text = batch.stderr.read_text()
        assert batch.proc.returncode == 130, text
        assert "Traceback" not in text and text.splitlines()[-1].startswith("interrupted: 4 files encoded"), text
        assert wait_until(lambda: not any(alive(pid) for pid in batch.family), 5), _left_in(batch)
        assert sorted(p.name for p in batch.out.iterdir()) == [f"{i}.slim" for i in range(IMAGES)]


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
