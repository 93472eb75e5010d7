"""Writing output files safely: atomically, and never over an existing file unless asked.

Used by the ``slim`` command and by :mod:`slimcodec.files`.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

from slimcodec.errors import SlimError

__all__ = ["OutputError", "OutputExistsError", "output_exists", "write_atomic"]


class OutputError(SlimError):
    """An output file cannot be written (or exists and may not be replaced)."""


class OutputExistsError(OutputError):
    """The output exists and replacing it was not allowed (``--force`` / ``overwrite=True``)."""


def output_exists(path: Path) -> bool:
    return path.exists() or path.is_symlink()


# ---------------------------------------------------------------- atomic output


@lru_cache(maxsize=1)
def _file_mode() -> int:
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


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
        raise OutputExistsError(f"{dst} already exists (use --force to overwrite)") from None
    except OSError:  # a file system without hard links
        if output_exists(dst):
            raise OutputExistsError(f"{dst} already exists (use --force to overwrite)") from None
        os.replace(tmp, dst)


def write_atomic(dst: Path, write: Callable[[Path], None], *, overwrite: bool) -> int:
    """Write ``dst`` through a temporary file in its folder; return its size.

    Args:
        dst (Path): the output file; missing parent folders are created.
        write (Callable[[Path], None]): writes the content to the path it is given
            (a hidden temporary file with ``dst``'s suffix).
        overwrite (bool): replace an existing ``dst``; otherwise refuse.

    Returns:
        int: the number of bytes written.

    Raises:
        OutputExistsError: ``dst`` exists and ``overwrite`` is false.
        OutputError: the folder cannot be created or the file cannot be written.
    """
    parent = dst.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create folder {parent}: {_reason(exc)}") from exc
    if not overwrite and output_exists(dst):
        raise OutputExistsError(f"{dst} already exists (use --force to overwrite)")
    tmp = parent / f".{dst.stem}.{secrets.token_hex(4)}.tmp{dst.suffix}"
    try:
        try:
            write(tmp)
            num_bytes = tmp.stat().st_size
            os.chmod(tmp, _file_mode())
            _publish(tmp, dst, overwrite)
        except OSError as exc:
            raise OutputError(f"cannot write {dst}: {_reason(exc)}") from exc
    finally:
        tmp.unlink(missing_ok=True)
    return num_bytes
