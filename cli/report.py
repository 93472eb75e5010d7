"""Counting and reporting what a batch command did (after black's ``Report``).

Every file ends in exactly one of three states, each printed as one line on
stderr as it happens:

- done: ``encoded a.png -> a.slim (40x24, 1.2 kB, 10.07 bpp)``
- skipped: ``skipped b.png: b.slim exists (use --force to overwrite)``
- failed: ``error: cannot decode c.slim: checksum mismatch``

``str(report)`` is the summary line and ``report.return_code`` the exit code.
"""

from __future__ import annotations

import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import click

from slimcodec.errors import SlimError

#: Exit codes of every ``slim`` command (2, usage errors, comes from click).
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143  # 128 + SIGTERM


def describe_error(exc: BaseException, path: Path | str | None = None) -> str:
    """A one-line, user-facing description of ``exc``.

    Args:
        exc (BaseException): any exception raised while handling one file.
        path (Path | str | None): the file the message is about; an
            ``OSError`` about that same file does not repeat its name.

    Returns:
        str: ``SlimError`` and ``ValueError`` messages as they are, ``OSError``
        as "reason: filename", anything else prefixed with its type name.
    """
    if isinstance(exc, (SlimError, ValueError)):
        text = str(exc)
    elif isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror[:1].lower() + exc.strerror[1:]
        if exc.filename is not None and str(exc.filename) != str(path):
            text += f": {exc.filename}"
    elif isinstance(exc, MemoryError):
        text = "out of memory"
    else:
        text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return " ".join(text.split()) or type(exc).__name__


def shown_path(path: Path | str) -> str:
    """A path as one line of output: control characters (a newline in a name) escaped as in ``repr``.

    Example:
        >>> print(shown_path("a\\nb.png"), shown_path("photo.png"))
        'a\\nb.png' photo.png
    """
    text = str(path)
    return text if text.isprintable() else repr(text)


def format_bytes(num_bytes: int) -> str:
    """``1234567`` -> ``"1.2 MB"`` (SI units, as file managers show them)."""
    if num_bytes < 1000:
        return f"{num_bytes} B"
    value = float(num_bytes)
    for unit in ("kB", "MB", "GB", "TB"):
        value /= 1000
        if value < 1000 or unit == "TB":
            return f"{value:.1f} {unit}"
    raise AssertionError("unreachable")


def _plural(count: int, noun: str = "file") -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


@dataclass
class Report:
    """Counters and one-line messages for one ``slim encode``/``decode`` run.

    Attributes:
        action (str): ``"encode"`` or ``"decode"``; used in the messages, and to
            know which side is the .slim file when computing bpp.
        quiet (bool): print errors only (no done/skipped lines, no summary).
        verbose (bool): add per-file timing to the done lines.
        debug (bool): print the traceback after each error line.
        stream (TextIO | None): where lines go; ``sys.stderr`` when ``None``.
        total (int): files in this run; above 1, done and skipped lines end
            with a progress counter such as ``[3/10]``.
        progress (Bar | None): a progress bar (:mod:`slimcodec.cli.progress`) moved on by
            each file; lines are printed above it.
    """

    action: str = "encode"
    quiet: bool = False
    verbose: bool = False
    debug: bool = False
    stream: TextIO | None = None
    total: int = 0
    done_count: int = 0
    skipped_count: int = 0
    failure_count: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    pixels: int = 0
    interrupted: bool = False
    terminated: bool = False
    start_s: float = field(default_factory=time.perf_counter)
    progress: Any = None

    @property
    def past_tense(self) -> str:
        return {"encode": "encoded", "decode": "decoded"}.get(self.action, self.action + "ed")

    def _echo(self, line: str) -> None:
        if self.progress is not None:
            self.progress.echo(line)
        else:
            click.echo(line, file=self.stream or sys.stderr)

    def _advance(self) -> None:
        if self.progress is not None:
            self.progress.advance()

    def _progress(self) -> str:
        """`` [n/total]`` once a file is counted, when the run has several files."""
        if self.total <= 1:
            return ""
        return f" [{self.done_count + self.skipped_count + self.failure_count}/{self.total}]"

    def done(
        self,
        src: Path | str,
        dst: Path | str,
        *,
        bytes_in: int = 0,
        bytes_out: int = 0,
        pixels: int = 0,
        seconds: float | None = None,
        note: str | None = None,
    ) -> None:
        """Count one converted file and print its line (and ``note``'s, indented).

        Args:
            src (Path | str): the input file.
            dst (Path | str): the file written.
            bytes_in (int): size of ``src``.
            bytes_out (int): size of ``dst``.
            pixels (int): image width times height.
            seconds (float | None): time spent on this file (shown with ``verbose``).
            note (str | None): one more line about this file (e.g. why its width
                was chosen), printed indented under the done line.
        """
        self.done_count += 1
        self.bytes_in += bytes_in
        self.bytes_out += bytes_out
        self.pixels += pixels
        self._advance()
        if self.quiet:
            return
        slim_bytes = bytes_out if self.action == "encode" else bytes_in
        details = [format_bytes(slim_bytes)]
        if pixels:
            details.append(f"{8 * slim_bytes / pixels:.3f} bpp")
        if self.verbose and seconds is not None:
            details.append(f"{seconds:.2f} s")
        self._echo(f"{self.past_tense} {shown_path(src)} -> {shown_path(dst)} ({', '.join(details)}){self._progress()}")
        if note:
            self._echo(f"  {note}")

    def warn(self, text: str) -> None:
        """Print ``warning: text`` (unless quiet)."""
        if not self.quiet:
            self._echo(f"warning: {text}")

    def skipped(self, src: Path | str, reason: str) -> None:
        """Count a file left alone on purpose (its output exists) and print why."""
        self.skipped_count += 1
        self._advance()
        if not self.quiet:
            self._echo(f"skipped {shown_path(src)}: {reason}{self._progress()}")

    def failed(self, src: Path | str, exc: BaseException | str) -> None:
        """Count a failed file and print ``error: cannot <action> <src>: <reason>``.

        Args:
            src (Path | str): the input file.
            exc (BaseException | str): what went wrong; with ``debug`` its
                traceback follows the error line.
        """
        self.failure_count += 1
        self._advance()
        reason = exc if isinstance(exc, str) else describe_error(exc, src)
        self._echo(f"error: cannot {self.action} {shown_path(src)}: {reason}")
        if self.debug and isinstance(exc, BaseException):
            self._echo("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)).rstrip())

    @property
    def elapsed_s(self) -> float:
        return time.perf_counter() - self.start_s

    @property
    def bpp(self) -> float | None:
        """Bits per pixel of all .slim files together (total bits / total pixels)."""
        if not self.pixels:
            return None
        slim_bytes = self.bytes_out if self.action == "encode" else self.bytes_in
        return 8 * slim_bytes / self.pixels

    @property
    def return_code(self) -> int:
        """0 if every file was converted or skipped, 1 if any failed, 130 if interrupted
        (Ctrl-C), 143 if terminated (SIGTERM)."""
        if self.terminated:
            return EXIT_TERMINATED
        if self.interrupted:
            return EXIT_INTERRUPTED
        return EXIT_FAILED if self.failure_count else EXIT_OK

    def __str__(self) -> str:
        """The summary line, e.g.

        ``2 files encoded, 1 file skipped, 1 file failed; 2.1 kB in, 310 B out, 0.812 bpp; 0.9 s``
        """
        counts = [f"{_plural(self.done_count)} {self.past_tense}"]
        if self.skipped_count:
            counts.append(f"{_plural(self.skipped_count)} skipped")
        if self.failure_count:
            counts.append(f"{_plural(self.failure_count)} failed")
        sizes = [f"{format_bytes(self.bytes_in)} in", f"{format_bytes(self.bytes_out)} out"]
        if self.bpp is not None:
            sizes.append(f"{self.bpp:.3f} bpp")
        elapsed_s = self.elapsed_s
        line = f"{', '.join(counts)}; {', '.join(sizes)}; {elapsed_s:.{1 if elapsed_s >= 1 else 2}f} s"
        if self.interrupted:
            line = ("terminated: " if self.terminated else "interrupted: ") + line
        return line
