"""Progress bars on stderr, drawn with click's progress bar: one for a batch (files done), one
for a single large image (tiles done) or an encode above effort 1 (refinement steps done).

A bar is shown only when stderr is a terminal and ``--quiet`` is not given; lines
printed while it is shown (one per file) appear above it, and it is erased at the
end, so the log a terminal keeps is the same as without it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

import click

#: Single images from this many pixels on get a progress bar (24 MP take about half a minute).
PROGRESS_MIN_PIXELS = 4_000_000
_CLEAR_LINE = "\r\033[K"


def terminal() -> TextIO | None:
    """stderr if it is a terminal (where a bar may be drawn), else ``None``."""
    stream = click.get_text_stream("stderr")
    return stream if stream.isatty() else None


class Bar:
    """A progress bar on a terminal stream that other lines can be printed above.

    click's ``ProgressBar`` formats the line (bar, percentage, position, ETA); this
    class draws it, so that a line can be printed above it and the bar redrawn.
    """

    def __init__(self, stream: TextIO, total: int, label: str):
        self._stream = stream
        self._bar = click.progressbar(length=max(total, 1), label=label, file=stream, show_pos=True)
        self._draw()

    def _draw(self) -> None:
        self._stream.write(_CLEAR_LINE + self._bar.format_progress_line())
        self._stream.flush()

    def advance(self, steps: int = 1) -> None:
        """Move the bar ``steps`` steps on."""
        self._bar.make_step(steps)
        self._draw()

    def set(self, done: int, total: int | None = None) -> None:
        """Set the bar to ``done`` steps (of ``total``, when it changes): a ``progress(done, total)`` callback."""
        if total is not None:
            self._bar.length = max(total, 1)
        self.advance(done - self._bar.pos)

    def echo(self, line: str) -> None:
        """Print ``line`` above the bar."""
        self._stream.write(_CLEAR_LINE)
        click.echo(line, file=self._stream)
        self._draw()

    def close(self) -> None:
        """Erase the bar."""
        self._stream.write(_CLEAR_LINE)
        self._stream.flush()


def batch_bar(files: int, action: str, quiet: bool) -> Bar | None:
    """The bar of a batch of ``files`` files, if one is shown."""
    stream = None if quiet or files < 2 else terminal()
    return Bar(stream, files, f"{action.capitalize()[:-1]}ing") if stream else None


@contextmanager
def image_bar(pixels: int, label: str, slow: bool = False) -> Iterator[Bar | None]:
    """The bar of one image while it is converted, if one is shown (a terminal, and a large
    image or ``slow`` work: an encode above effort 1 takes seconds to minutes at any size)."""
    stream = terminal() if pixels and (pixels >= PROGRESS_MIN_PIXELS or slow) else None
    bar = Bar(stream, 1, label) if stream else None
    try:
        yield bar
    finally:
        if bar is not None:
            bar.close()
