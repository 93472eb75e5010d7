"""Writing output files safely: atomically, and never over an existing file unless asked.

Every output is written to one hidden temporary file in its folder, named
``.NAME.PID.RANDOM.slimtmp`` (``NAME`` the output's name, at most 40
characters of it; ``PID`` the writing process), flushed to disk and then
renamed into place, so an output is either complete or absent. Only a process
killed outright (SIGKILL, a power cut) leaves such a temporary file behind;
:func:`remove_stale_temps` removes those of processes that are gone.

Replacing an existing file (``overwrite=True``):

- a symbolic link is followed: the file it points to is replaced, atomically,
  in that file's folder, and the link stays a link (a link to nothing is refused);
- the replaced file's permission bits are kept (and its owner and group, where
  this process may set them);
- a file with several hard links gets a new inode: its other names keep the old
  content (as an editor's atomic save does).

A character device or FIFO (``/dev/null``, ``/dev/stdout``, a named pipe), or a
link to one, is not a file to replace: the output is written through it, whole,
and no ``overwrite`` is needed. Standard output is written with :func:`write_stream`.

Used by the ``slim`` command and by :mod:`slimcodec.files`.
"""

from __future__ import annotations

import io
import os
import re
import secrets
import stat
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from slimcodec.errors import SlimError

__all__ = [
    "OutputError",
    "OutputExistsError",
    "TEMP_SUFFIX",
    "is_stream",
    "is_temp_name",
    "needs_overwrite",
    "output_exists",
    "remove_live_temps",
    "remove_stale_temps",
    "write_atomic",
    "write_stream",
]

TEMP_SUFFIX = ".slimtmp"
_NAME_CHARS = 40  # of the output's name in its temporary file's name (far below NAME_MAX in bytes)
_TEMP_NAME = re.compile(r"\.(?P<name>.*)\.(?P<pid>[0-9]{1,10})\.[0-9a-f]{8}\.slimtmp", re.DOTALL)
_live_temps: set[str] = set()  # this process's temporary files being written (see remove_live_temps)


class OutputError(SlimError):
    """An output file cannot be written (or exists and may not be replaced).

    Attributes:
        path (Path | None): the output file.
    """

    def __init__(self, message: str, path: Path | None = None):
        super().__init__(message)
        self.path = path

    def __reduce__(self):  # keeps ``path`` when sent back from a worker process
        return type(self), (str(self), self.path)


class OutputExistsError(OutputError):
    """The output exists and replacing it was not allowed (``--force`` / ``overwrite=True``)."""


def output_exists(path: Path) -> bool:
    """Whether ``path`` exists (a dangling symbolic link counts)."""
    return path.exists() or path.is_symlink()


def is_stream(path: Path) -> bool:
    """Whether ``path`` is, or links to, a character device or FIFO: written through, never replaced."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return False
    return stat.S_ISCHR(mode) or stat.S_ISFIFO(mode)


def needs_overwrite(path: Path) -> bool:
    """Whether writing ``path`` would replace an existing file (so it needs ``overwrite``)."""
    return output_exists(path) and not is_stream(path)


def _exists_error(dst: Path) -> OutputExistsError:
    return OutputExistsError(f"{dst} already exists (use --force to overwrite)", dst)


# ---------------------------------------------------------------- temporary files


def temp_path(dst: Path) -> Path:
    """A fresh name for ``dst``'s temporary file: ``.NAME.PID.RANDOM.slimtmp`` beside it."""
    return dst.parent / f".{dst.name[:_NAME_CHARS]}.{os.getpid()}.{secrets.token_hex(4)}{TEMP_SUFFIX}"


def is_temp_name(name: str) -> bool:
    """Whether ``name`` is the name of one of our temporary files."""
    return _TEMP_NAME.fullmatch(name) is not None


def remove_live_temps() -> None:
    """Delete the temporary files this process is writing (for a signal handler about to exit)."""
    for name in list(_live_temps):
        try:
            os.unlink(name)
        except OSError:
            pass


def _process_running(pid: int) -> bool:
    """Whether a process ``pid`` runs on this machine (when in doubt: yes)."""
    if os.name != "posix" or pid <= 0:
        return True  # elsewhere os.kill(pid, 0) would not just ask
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OverflowError:
        return False  # no process has such an id
    except OSError:
        return True  # e.g. another user's process
    return True


def _is_stale(entry: os.DirEntry, started: float) -> bool:
    match = _TEMP_NAME.fullmatch(entry.name)
    if match is None:
        return False
    try:
        info = entry.stat(follow_symlinks=False)
    except OSError:
        return False
    return (stat.S_ISREG(info.st_mode) and info.st_mtime < started
            and not _process_running(int(match["pid"])))


def remove_stale_temps(folder: Path, started: float) -> list[Path]:
    """Delete the temporary files a killed run left in ``folder``; return them.

    A file is deleted only if all of these hold: its name is ours
    (``.NAME.PID.RANDOM.slimtmp``), it is a regular file (not a link), it was
    last modified before ``started``, and no process ``PID`` is running on this
    machine (on POSIX; elsewhere nothing is deleted). Subfolders are not searched.

    Args:
        folder (Path): an output folder (a missing one has nothing to delete).
        started (float): the ``time.time()`` at which the current run started.

    Returns:
        list[Path]: the files deleted.
    """
    removed = []
    try:
        entries = os.scandir(folder)
    except OSError:
        return removed
    with entries:
        for entry in entries:
            if _is_stale(entry, started):
                try:
                    os.unlink(entry.path)
                except OSError:
                    continue
                removed.append(Path(entry.path))
    return sorted(removed)


# ---------------------------------------------------------------- atomic output


def _reason(exc: OSError) -> str:
    text = exc.strerror or str(exc) or type(exc).__name__
    return text[:1].lower() + text[1:]


def _publish(tmp: Path, dst: Path, overwrite: bool) -> None:
    if overwrite:
        os.replace(tmp, dst)
        return
    try:
        os.link(tmp, dst)  # atomic, and fails if dst exists
    except FileExistsError:
        raise _exists_error(dst) from None
    except OSError:  # a file system without hard links
        if output_exists(dst):
            raise _exists_error(dst) from None
        os.replace(tmp, dst)


def _keep_owner_and_mode(fd: int, old: os.stat_result | None) -> None:
    """Give the new file ``fd`` the replaced file's permission bits (and owner, where allowed)."""
    if old is None:
        return
    if hasattr(os, "fchown") and (old.st_uid, old.st_gid) != (os.geteuid(), os.getegid()):
        try:
            os.fchown(fd, old.st_uid, old.st_gid)
        except OSError:
            pass  # only root may give a file away
    if hasattr(os, "fchmod"):
        os.fchmod(fd, stat.S_IMODE(old.st_mode))  # after fchown, which clears set-id bits


def _write_temp(tmp: Path, write: Callable[[BinaryIO], None], old: os.stat_result | None = None) -> int:
    """Create ``tmp`` (never an existing file or link), fill it with ``write``, flush it to disk.

    ``old`` is the file it will replace, whose permission bits it takes.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
    fd = os.open(tmp, flags, 0o666)  # the umask applies, as for any new file
    with os.fdopen(fd, "wb") as f:
        write(f)
        f.flush()
        _keep_owner_and_mode(f.fileno(), old)
        os.fsync(f.fileno())  # the data is on disk before the name is
        return os.fstat(f.fileno()).st_size


def _rendered(write: Callable[[BinaryIO], None]) -> bytes:
    """What ``write`` writes, in memory: a stream gets the whole output or none of it."""
    buffer = io.BytesIO()
    write(buffer)
    return buffer.getvalue()


def write_stream(stream: BinaryIO, write: Callable[[BinaryIO], None], name: str = "<stdout>") -> int:
    """Write an output to an open stream (standard output), whole: made in memory first.

    Returns:
        int: the number of bytes written.

    Raises:
        OutputError: the stream cannot be written (a closed pipe, ...).
    """
    data = _rendered(write)
    try:
        stream.write(data)
        stream.flush()
    except OSError as exc:
        raise OutputError(f"cannot write {name}: {_reason(exc)}") from exc
    return len(data)


def _write_through(dst: Path, write: Callable[[BinaryIO], None]) -> int:
    """Write a device or FIFO (or what a link to one names) in place: opened for writing, never created."""
    data = _rendered(write)
    try:
        fd = os.open(dst, os.O_WRONLY | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_BINARY", 0))
        with os.fdopen(fd, "wb") as f:
            f.write(data)
    except OSError as exc:
        raise OutputError(f"cannot write {dst}: {_reason(exc)}", dst) from exc
    return len(data)


def _replaced_file(dst: Path) -> Path:
    """Where replacing ``dst`` writes: ``dst``, or the file a symbolic link ``dst`` points to.

    Raises:
        OutputError: ``dst`` is a link to nothing, or to a folder.
    """
    if not dst.is_symlink():
        return dst
    target = Path(os.path.realpath(dst))
    if not target.exists():
        raise OutputError(f"cannot write {dst}: a symbolic link to a missing file ({target})", dst)
    if target.is_dir():
        raise OutputError(f"cannot write {dst}: a symbolic link to a folder", dst)
    return target


def _old_file(path: Path) -> os.stat_result | None:
    try:
        return os.stat(path, follow_symlinks=False)
    except OSError:
        return None


def write_atomic(dst: Path, write: Callable[[BinaryIO], None], *, overwrite: bool) -> int:
    """Write ``dst`` through one temporary file in its folder; return its size.

    A device or FIFO is written through instead (see the module docstring), and
    replacing a symbolic link replaces the file it points to.

    Args:
        dst (Path): the output file; missing parent folders are created.
        write (Callable[[BinaryIO], None]): writes the content to the binary
            file it is given (the temporary file, opened for writing).
        overwrite (bool): replace an existing ``dst``; otherwise refuse.

    Returns:
        int: the number of bytes written.

    Raises:
        OutputExistsError: ``dst`` exists (or appears while writing) and ``overwrite`` is false.
        OutputError: the folder cannot be created, the file cannot be written, or
            ``dst`` is a link to nothing.
    """
    if is_stream(dst):
        return _write_through(dst, write)
    parent = dst.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create folder {parent}: {_reason(exc)}", dst) from exc
    if not overwrite and output_exists(dst):
        raise _exists_error(dst)
    target = _replaced_file(dst) if overwrite else dst
    tmp = temp_path(target)
    _live_temps.add(str(tmp))
    try:
        try:
            num_bytes = _write_temp(tmp, write, _old_file(target) if overwrite else None)
            _publish(tmp, target, overwrite)
        except OSError as exc:
            raise OutputError(f"cannot write {dst}: {_reason(exc)}", dst) from exc
    finally:
        try:
            _remove_temp(tmp, dst)
        finally:
            _live_temps.discard(str(tmp))
    return num_bytes


def _remove_temp(tmp: Path, dst: Path) -> None:
    """Delete the temporary file of ``dst`` if it is there.

    On a read-only file system ``unlink`` fails with ``EROFS`` even for a file that was
    never created: that error would hide the one that names the output.

    Raises:
        OutputError: the temporary file exists and cannot be deleted.
    """
    try:
        tmp.unlink(missing_ok=True)
    except OSError as exc:
        if os.path.lexists(tmp):
            raise OutputError(f"cannot write {dst}: cannot delete its temporary file {tmp.name} "
                              f"({_reason(exc)})", dst) from exc
