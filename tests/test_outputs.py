"""Where outputs go and how they get there: one temporary file each, stale ones cleaned,
concurrent runs skip each other's files, and no write through a linked folder."""

from __future__ import annotations

import os
import pickle
import re
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import gradient_image

from slimcodec import outputs
from slimcodec.cli.main import cli
from slimcodec.outputs import OutputExistsError, is_temp_name, remove_stale_temps, temp_path

TEMP = re.compile(r"\.[^/]*\.[0-9]+\.[0-9a-f]{8}\.slimtmp")


def slim(args, exit_code: int = 0):
    result = CliRunner().invoke(cli, [str(a) for a in args], env={"SLIM_WORKERS": "1"}, prog_name="slim")
    assert result.exit_code == exit_code, (result.exit_code, result.stderr, result.exc_info)
    assert "Traceback" not in result.stderr
    return result


def all_files(folder: Path) -> list[str]:
    """Every file and link under ``folder``, hidden ones included, relative and sorted."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if not p.is_dir() or p.is_symlink())


@pytest.fixture
def photos(tmp_path) -> Path:
    """photos/a.png, photos/b.png, photos/c.png."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in "abc":
        gradient_image(40, 24).save(folder / f"{name}.png")
    return folder


def dead_pid() -> int:
    """A process id that no process has (above the kernel's limit on Linux)."""
    try:
        return int(Path("/proc/sys/kernel/pid_max").read_text()) + 1
    except OSError:
        return 2**31 - 1


# ---------------------------------------------------------------- one temporary file per output


class FileSystemLog:
    """Records the files created with ``os.open`` and every rename or link, in order."""

    def __init__(self, monkeypatch):
        self.events: list[tuple] = []
        real_open, real_replace, real_link = os.open, os.replace, os.link

        def logged_open(path, flags, *args, **kwargs):
            if flags & os.O_CREAT:
                self.events.append(("create", Path(path).name))
            return real_open(path, flags, *args, **kwargs)

        def logged_replace(src, dst, *args, **kwargs):
            self.events.append(("move", Path(src).name, Path(dst).name))
            return real_replace(src, dst, *args, **kwargs)

        def logged_link(src, dst, *args, **kwargs):
            self.events.append(("move", Path(src).name, Path(dst).name))
            return real_link(src, dst, *args, **kwargs)

        monkeypatch.setattr(os, "open", logged_open)
        monkeypatch.setattr(os, "replace", logged_replace)
        monkeypatch.setattr(os, "rename", logged_replace)
        monkeypatch.setattr(os, "link", logged_link)


@pytest.mark.parametrize("output", ["a.slim", "a.png", "a.tif", "a.webp"])
def test_writing_an_output_creates_exactly_one_temporary_file_and_moves_it_into_place_once(
        output, photos, tiny_weights_path, tmp_path, monkeypatch):
    src = photos / "a.png"
    if output != "a.slim":
        slim(["encode", src, "-o", tmp_path / "a.slim", "--weights", tiny_weights_path, "-w", 8])
        src = tmp_path / "a.slim"
    out = tmp_path / "out"
    log = FileSystemLog(monkeypatch)
    slim(["encode" if output == "a.slim" else "decode", src, "-o", out / output, "--weights", tiny_weights_path]
         + (["-w", 8] if output == "a.slim" else []))
    in_out = [e for e in log.events if e[-1] == output or (e[0] == "create" and output in e[1])]
    assert len(in_out) == 2, log.events
    (_, created), (_, moved, target) = in_out
    assert TEMP.fullmatch(created) and created.startswith(f".{output}.{os.getpid()}."), created
    assert (moved, target) == (created, output)
    assert all_files(out) == [output]


def test_a_temporary_file_is_named_after_its_output_and_its_process():
    tmp = temp_path(Path("out") / "photo.slim")
    assert tmp.parent == Path("out")
    assert re.fullmatch(rf"\.photo\.slim\.{os.getpid()}\.[0-9a-f]{{8}}\.slimtmp", tmp.name)
    assert is_temp_name(tmp.name)
    long = temp_path(Path("x" * 250 + ".slim"))
    assert len(long.name) < 80 and is_temp_name(long.name)
    assert not is_temp_name(".photo.slim.tmp") and not is_temp_name("photo.slimtmp")


# ---------------------------------------------------------------- stale temporary files


def test_temporary_files_of_a_killed_run_are_removed_by_the_next_run_into_their_folder(
        photos, tiny_weights_path, tmp_path):
    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    (photos / "sub").mkdir()
    gradient_image(20, 20).save(photos / "sub" / "d.png")
    hour_ago = time.time() - 3600
    stale = [out / f".a.slim.{dead_pid()}.0badc0de.slimtmp", out / "sub" / f".d.slim.{dead_pid()}.12345678.slimtmp"]
    kept = {
        "its process still runs": out / f".b.slim.{os.getpid()}.0badc0de.slimtmp",
        "newer than the run": out / f".c.slim.{dead_pid()}.0badc0de.slimtmp",
        "not our name": out / ".a.slim.0badc0de.tmp",
        "not our name either": out / f".a.slim.{dead_pid()}.0badc0de.slimtmp.bak",
    }
    for path in [*stale, *kept.values()]:
        path.write_bytes(b"half a file")
        os.utime(path, (hour_ago, hour_ago))
    os.utime(kept["newer than the run"], (time.time() + 3600, time.time() + 3600))
    target = tmp_path / "elsewhere.txt"
    target.write_text("not ours")
    link = out / f".e.slim.{dead_pid()}.0badc0de.slimtmp"
    link.symlink_to(target)
    folder = out / f".f.slim.{dead_pid()}.0badc0de.slimtmp"
    folder.mkdir()
    result = slim(["encode", photos, "-o", out, "--weights", tiny_weights_path, "-w", 8])
    removed = [line for line in result.stderr.splitlines() if line.startswith("removed ")]
    assert removed == [f"removed {path} (a temporary file left by a killed run)" for path in stale]
    assert not any(path.exists() for path in stale)
    assert all(path.exists() for path in kept.values())
    assert link.is_symlink() and target.read_text() == "not ours" and folder.is_dir()
    assert sorted(p.name for p in out.glob("*.slim")) == ["a.slim", "b.slim", "c.slim"]


def test_remove_stale_temps_leaves_a_missing_folder_alone(tmp_path):
    assert remove_stale_temps(tmp_path / "missing", time.time()) == []


# ---------------------------------------------------------------- two runs into one folder


@pytest.mark.parametrize("action", ["encode", "decode"])
def test_with_skip_existing_outputs_another_run_writes_meanwhile_count_as_skipped_not_failed(
        action, photos, tiny_weights_path, tmp_path, monkeypatch):
    """While this run works on a, the other run writes a's output (too late for this run's last
    check) and c's (before this run starts c)."""
    from slimcodec import codec

    src = photos
    if action == "decode":
        src = tmp_path / "slims"
        slim(["encode", photos, "-o", src, "--weights", tiny_weights_path, "-w", 8])
    out, suffix = tmp_path / "out", ".slim" if action == "encode" else ".png"
    name = "encode_pixels" if action == "encode" else "decode"
    real, calls = getattr(codec, name), []

    def other_run_writes(*args, **kwargs):
        if not calls:
            out.mkdir(exist_ok=True)
            for stem in "ac":
                (out / f"{stem}{suffix}").write_bytes(b"written by the other run")
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(codec, name, other_run_writes)
    result = slim([action, src, "-o", out, "--weights", tiny_weights_path, "--skip-existing"]
                  + (["-w", 8] if action == "encode" else []))
    lines = result.stderr.splitlines()
    past = "encoded" if action == "encode" else "decoded"
    assert lines[0] == f"skipped {src / 'a'}{'.png' if action == 'encode' else '.slim'}: {out / ('a' + suffix)} " \
                       "exists (--skip-existing) [1/3]"
    assert lines[1].startswith(f"{past} {src / 'b'}")
    assert lines[2].startswith(f"skipped {src / 'c'}")
    assert lines[-1].startswith(f"1 file {past}, 2 files skipped;")
    assert len(calls) == 2  # a and b: c was skipped before any work
    assert (out / f"a{suffix}").read_bytes() == b"written by the other run"
    assert all_files(out) == [f"{stem}{suffix}" for stem in "abc"]


def test_an_output_exists_error_crosses_process_boundaries_with_its_path():
    exc = pickle.loads(pickle.dumps(OutputExistsError("out/a.slim already exists", Path("out/a.slim"))))
    assert type(exc) is OutputExistsError and str(exc) == "out/a.slim already exists"
    assert exc.path == Path("out/a.slim")


def test_a_single_file_whose_output_appears_meanwhile_still_fails(photos, tiny_weights_path, tmp_path, monkeypatch):
    from slimcodec import codec

    real = codec.encode_pixels

    def other_run_writes(*args, **kwargs):
        (tmp_path / "a.slim").write_bytes(b"written by the other run")
        return real(*args, **kwargs)

    monkeypatch.setattr(codec, "encode_pixels", other_run_writes)
    result = slim(["encode", photos / "a.png", "-o", tmp_path / "a.slim", "--weights", tiny_weights_path, "-w", 8],
                  exit_code=1)
    assert result.stderr.splitlines()[0].endswith("a.slim already exists (use --force to overwrite)")


# ---------------------------------------------------------------- symbolic links in the output folder


@pytest.mark.skipif(sys.platform == "win32", reason="symbolic links need privileges on Windows")
def test_a_batch_does_not_write_through_a_symlinked_folder_inside_the_output_folder(photos, tiny_weights_path,
                                                                                    tmp_path):
    (photos / "sub").mkdir()
    gradient_image(20, 20).save(photos / "sub" / "d.png")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    (out / "sub").symlink_to(elsewhere, target_is_directory=True)
    result = slim(["encode", photos, "-o", out, "--weights", tiny_weights_path, "-w", 8], exit_code=1)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: cannot encode {photos / 'sub' / 'd.png'}: not written through {out / 'sub'}: "
                      "a symbolic link to a folder inside the output folder"]
    assert list(elsewhere.iterdir()) == []
    assert sorted(p.name for p in out.glob("*.slim")) == ["a.slim", "b.slim", "c.slim"]


@pytest.mark.skipif(sys.platform == "win32", reason="symbolic links need privileges on Windows")
def test_an_output_folder_given_as_a_symbolic_link_is_followed(photos, tiny_weights_path, tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real, target_is_directory=True)
    slim(["encode", photos, "-o", tmp_path / "link", "--weights", tiny_weights_path, "-w", 8])
    assert sorted(p.name for p in real.iterdir()) == ["a.slim", "b.slim", "c.slim"]


def test_an_interrupted_write_deletes_its_temporary_file(tmp_path):
    def interrupted(f):
        f.write(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        outputs.write_atomic(tmp_path / "a.slim", interrupted, overwrite=False)
    assert all_files(tmp_path) == []
    assert outputs._live_temps == set()


# ---------------------------------------------------------------- links, devices, FIFOs, permissions


posix_only = pytest.mark.skipif(os.name != "posix", reason="symbolic links, FIFOs and modes are POSIX")


@posix_only
def test_force_onto_a_symbolic_link_replaces_the_file_it_points_to_and_keeps_the_link(photos, tiny_weights_path,
                                                                                    tmp_path):
    target = tmp_path / "real" / "a.slim"
    target.parent.mkdir()
    target.write_bytes(b"old")
    link = tmp_path / "link.slim"
    link.symlink_to(target)
    slim(["encode", photos / "a.png", "-o", link, "--force", "--weights", tiny_weights_path, "-w", 8])
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_bytes()[:4] == b"SLIM"
    assert all_files(tmp_path / "real") == ["a.slim"]  # its temporary file was in the target's folder


@posix_only
def test_force_keeps_the_permissions_of_the_file_it_replaces(photos, tiny_weights_path, tmp_path):
    out = tmp_path / "a.slim"
    out.write_bytes(b"old")
    out.chmod(0o640)
    slim(["encode", photos / "a.png", "-o", out, "--force", "--weights", tiny_weights_path, "-w", 8])
    assert out.read_bytes()[:4] == b"SLIM" and (out.stat().st_mode & 0o777) == 0o640


@posix_only
def test_force_on_a_file_with_another_hard_link_leaves_the_other_name_its_old_content(photos, tiny_weights_path,
                                                                                     tmp_path):
    out, other = tmp_path / "a.slim", tmp_path / "other-name.slim"
    out.write_bytes(b"old")
    os.link(out, other)
    slim(["encode", photos / "a.png", "-o", out, "--force", "--weights", tiny_weights_path, "-w", 8])
    assert out.read_bytes()[:4] == b"SLIM" and other.read_bytes() == b"old"  # as documented


@posix_only
def test_force_onto_a_link_to_nothing_fails_with_one_line(photos, tiny_weights_path, tmp_path):
    link = tmp_path / "link.slim"
    link.symlink_to(tmp_path / "missing.slim")
    result = slim(["encode", photos / "a.png", "-o", link, "--force", "--weights", tiny_weights_path, "-w", 8],
                  exit_code=1)
    assert result.stderr.splitlines()[0] == (f"error: cannot encode {photos / 'a.png'}: cannot write {link}: "
                                             f"a symbolic link to a missing file ({tmp_path / 'missing.slim'})")
    assert link.is_symlink() and not (tmp_path / "missing.slim").exists()


@posix_only
def test_a_device_is_written_through_without_force_and_stays_a_device(photos, tiny_weights_path, tmp_path):
    link = tmp_path / "null.slim"
    link.symlink_to("/dev/null")
    for out in ("/dev/null", link):
        result = slim(["encode", photos / "a.png", "-o", out, "--weights", tiny_weights_path, "-w", 8])
        assert result.stderr.startswith(f"encoded {photos / 'a.png'} -> {out} (")
    assert Path("/dev/null").is_char_device() and link.is_symlink()
    assert not any(is_temp_name(p.name) for p in Path("/dev").iterdir())


@posix_only
def test_a_fifo_is_written_through_and_not_replaced(photos, tiny_weights_path, tmp_path):
    import threading

    fifo = tmp_path / "pipe.slim"
    os.mkfifo(fifo)
    received = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()), daemon=True)
    reader.start()
    try:
        slim(["encode", photos / "a.png", "-o", fifo, "--weights", tiny_weights_path, "-w", 8])
        reader.join(10)
    finally:
        if reader.is_alive():  # nothing was written: let the reader see the end of the pipe
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            reader.join(10)
    assert received and received[0][:4] == b"SLIM"
    assert fifo.is_fifo()
    assert outputs.needs_overwrite(fifo) is False and outputs.needs_overwrite(photos / "a.png") is True
