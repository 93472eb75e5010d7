"""Which files a command converts, and converting one of them.

``plan`` turns the command line's sources into (input, output) pairs;
``encode_one``/``decode_one`` convert one pair and run in worker processes,
so they are module-level and import the codec lazily. Every output is written
to one hidden temporary file in the destination folder and then renamed into
place (:func:`slimcodec.outputs.write_atomic`), so an output is complete or
absent. A batch never writes through a symbolic link to a folder inside its
output folder: such files are refused in the plan. ``-`` reads the one input
from standard input, ``-o -`` writes the one output to standard output (a job's
``stdin``/``stdout``); such jobs run in the ``slim`` process itself.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from slimcodec.errors import SlimError, UnsupportedImageError
from slimcodec.outputs import (  # noqa: F401
    OutputError,
    OutputExistsError,
    needs_overwrite,
    output_exists,
    write_atomic,
    write_stream,
)
from slimcodec.suffixes import IMAGE_SUFFIXES, SLIM_SUFFIX  # noqa: F401  (the commands plan with them)

if TYPE_CHECKING:  # imageio imports numpy: not for slim info, which uses this module too
    from slimcodec.imageio import WriteOptions

STDIN = Path("<stdin>")  # how reports name standard input and output
STDOUT = Path("<stdout>")
MAX_STDIN_BYTES = 1 << 30  # an image read from standard input is held in memory


@dataclass(frozen=True)
class DecodeOutput:
    """How ``decode_one`` saves: the Pillow format (``None``: by the output's extension) and options."""

    format: str | None = None
    options: WriteOptions | None = None


@dataclass(frozen=True)
class Job:
    """One file to convert.

    Attributes:
        src (Path): the input file.
        dst (Path): the output file.
        weights_path (str | None): weights file; ``None`` = the shipped weights (to decode: the
            shipped ones the file names).
        force (bool): replace ``dst`` if it exists.
        width (int | None): network width (encode only).
        scale (float): latent scale (encode only).
        metadata (bool | frozenset[str]): metadata kept: ICC profile, EXIF, XMP (encode only;
            see :func:`slimcodec.imageio.metadata_kinds`).
        target (tuple[str, float] | None): encode only: ``("bpp", 0.5)``,
            ``("bytes", 40000)`` or ``("psnr", 32.0)`` picks the width per file
            (see :mod:`slimcodec.ratecontrol`); ``width`` and ``scale`` are then ignored.
        effort (int): encoder effort 1–9 (encode only; see :mod:`slimcodec.effort`).
        write (WriteOptions | None): how decoded images are saved (decode only).
        stdin (bool): read the input from standard input (``src`` is :data:`STDIN`).
        stdout (bool): write the output to standard output (``dst`` is :data:`STDOUT`).
        progress (bool): show a progress bar on stderr if the image is large.
    """

    src: Path
    dst: Path
    weights_path: str | None = None
    force: bool = False
    width: int | None = None
    metadata: bool | frozenset = True
    target: tuple[str, float] | None = None
    scale: float = 1.0
    effort: int = 1
    write: DecodeOutput | None = None
    stdin: bool = False
    stdout: bool = False
    progress: bool = False


@dataclass(frozen=True)
class Result:
    """What converting one file produced (see ``Report.done``).

    ``note`` is an extra line about the file, e.g. why a width was chosen.
    """

    dst: Path
    bytes_in: int
    bytes_out: int
    pixels: int
    seconds: float
    note: str | None = None


@dataclass
class Plan:
    """The outcome of :func:`plan`.

    Attributes:
        pairs (list[tuple[Path, Path]]): (input, output), inputs in command-line
            order, folders expanded in sorted order, duplicates removed.
        problems (list[tuple[Path, str]]): inputs that cannot be converted
            (missing, whose output clashes, or whose output would go through a
            symbolic link to a folder inside ``out``), with the reason.
        empty_folders (list[Path]): folders in which no input was found.
        batch (bool): several inputs or a folder were given.
        stdin (bool): the one input is standard input.
        stdout (bool): the one output is standard output.
    """

    pairs: list[tuple[Path, Path]] = field(default_factory=list)
    problems: list[tuple[Path, str]] = field(default_factory=list)
    empty_folders: list[Path] = field(default_factory=list)
    batch: bool = False
    stdin: bool = False
    stdout: bool = False


def scan_folder(folder: Path, suffixes: Iterable[str]) -> list[Path]:
    """Files under ``folder`` (recursively, sorted) whose suffix is one of ``suffixes``.

    Hidden files and folders (name starting with ".") are left out, and so are
    symbolic links to folders (no loops).
    """
    wanted = {s.lower() for s in suffixes}
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in wanted:
                found.append(Path(root, name))
    return found


def names_folder(out: str | os.PathLike) -> bool:
    """Whether ``-o out`` means a folder for a single input: an existing folder or a trailing "/"."""
    text = os.fspath(out)
    return os.path.isdir(text) or text.endswith(("/", os.sep))


def plan(
    sources: Sequence[Path], out: str | os.PathLike | None, suffixes: Iterable[str], out_suffix: str
) -> Plan:
    """Map the command's sources to output files.

    Without ``out`` every output goes beside its input, with the suffix
    replaced. With one input file, ``out`` is the output file (or, if it is an
    existing folder, the folder to put it in). Otherwise ``out`` is a folder:
    files given by name go straight into it, and each source folder's
    structure is mirrored under it; a mirrored folder that exists in ``out`` as
    a symbolic link is not written through (its files become problems).

    Args:
        sources (Sequence[Path]): files and folders from the command line.
        out (str | PathLike | None): the ``-o`` value (a trailing "/" marks a folder).
        suffixes (Iterable[str]): input suffixes searched for in folders.
        out_suffix (str): the outputs' suffix, e.g. ``".slim"``.

    Returns:
        Plan: pairs, per-file problems and whether this is a batch.

    Raises:
        NotADirectoryError: a batch's ``out`` exists and is not a folder.
    """
    result = Plan(batch=len(sources) > 1 or any(src.is_dir() for src in sources))
    out_is_folder = out is not None and (result.batch or names_folder(out))
    out = Path(out) if out is not None else None
    if result.batch and out is not None and out.exists() and not out.is_dir():
        raise NotADirectoryError(f"-o {out}: must be a folder when converting several files")

    candidates: list[tuple[Path, Path]] = []
    for src in sources:
        if src.is_dir():
            files = scan_folder(src, suffixes)
            if not files:
                result.empty_folders.append(src)
            for file in files:
                base = out / file.relative_to(src) if out is not None else file
                dst = base.with_name(base.stem + out_suffix)
                link = linked_folder(out, dst.parent) if out is not None else None
                if link is not None:
                    result.problems.append((file, f"not written through {link}: a symbolic link "
                                                  "to a folder inside the output folder"))
                    continue
                candidates.append((file, dst))
        elif src.exists():
            if out is None:
                dst = src.with_name(src.stem + out_suffix)
            elif out_is_folder:
                dst = out / (src.stem + out_suffix)
            else:
                dst = out
            candidates.append((src, dst))
        else:
            result.problems.append((src, "no such file or folder"))

    seen_src: set[Path] = set()
    owner_of_dst: dict[Path, Path] = {}
    for src, dst in candidates:
        key_src, key_dst = _identity(src), _identity(dst)
        if key_src in seen_src:
            continue  # the same file named twice (or a file and its folder): do it once
        seen_src.add(key_src)
        if key_dst == key_src:
            result.problems.append((src, f"the output {dst} would replace the input"))
        elif key_dst in owner_of_dst:
            result.problems.append((src, f"{owner_of_dst[key_dst]} is also written to {dst}"))
        else:
            owner_of_dst[key_dst] = src
            result.pairs.append((src, dst))
    return result


def linked_folder(root: Path, folder: Path) -> Path | None:
    """The first symbolic link on the way from ``root`` down to ``folder`` (``root`` itself is
    not checked: the user named it), or ``None``.

    Args:
        root (Path): the output folder of a batch.
        folder (Path): a folder under ``root`` that outputs go to.
    """
    path = root
    for part in folder.relative_to(root).parts:
        path = path / part
        if path.is_symlink():
            return path
    return None


def _identity(path: Path) -> Path:
    try:
        return path.resolve()
    except OSError:
        return path.absolute()


# ---------------------------------------------------------------- workers


def _without_path_prefix(exc: SlimError, path: Path) -> SlimError:
    """``"a.png: not an image"`` -> ``"not an image"`` (the report names the file)."""
    text, prefix = str(exc), f"{path}: "
    return type(exc)(text[len(prefix):]) if text.startswith(prefix) else exc


def _check_not_written_meanwhile(job: Job) -> None:
    """Refuse a job whose output appeared since the plan (another run wrote it)."""
    if not job.force and not job.stdout and needs_overwrite(job.dst):
        raise OutputExistsError(f"{job.dst} already exists (use --force to overwrite)", job.dst)


def _stdin_bytes() -> bytes:
    """All of standard input (at most :data:`MAX_STDIN_BYTES`)."""
    import click

    data = click.get_binary_stream("stdin").read(MAX_STDIN_BYTES + 1)
    if len(data) > MAX_STDIN_BYTES:
        raise UnsupportedImageError(f"standard input holds more than {MAX_STDIN_BYTES >> 20} MiB; "
                                    "give the file by name")
    return data


def _refuse_slim_input(head: bytes) -> None:
    """A .slim file (whatever its name) is not an image to encode: re-encoding it would lose quality."""
    if head[:4] == b"SLIM":
        raise UnsupportedImageError("is a .slim file, not an image to encode (slim decode turns it into one)")


def refuse_special_file(path: Path) -> None:
    """Refuse an input that is not a regular file (a FIFO, a device, a socket): reading it
    could wait for ever or never end. Standard input is read as ``-`` instead.

    Raises:
        SlimError: ``path`` exists and is not a regular file (a missing file is left to the reader).
    """
    import stat

    try:
        mode = os.stat(path).st_mode
    except OSError:
        return
    if stat.S_ISDIR(mode) or stat.S_ISREG(mode):
        return  # a folder is refused by the reader with its own reason
    kind = ("a FIFO" if stat.S_ISFIFO(mode) else "a character device" if stat.S_ISCHR(mode)
            else "a block device" if stat.S_ISBLK(mode) else "a socket" if stat.S_ISSOCK(mode) else "special")
    raise SlimError(f"not a regular file ({kind}); to read a stream, give - and redirect it to standard input")


def _file_head(path: Path) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(4)
    except OSError:
        return b""  # open_image says why


def _write_output(job: Job, write) -> int:
    """Write the output of ``job`` (atomically, or to standard output); its size in bytes."""
    if job.stdout:
        import click

        return write_stream(click.get_binary_stream("stdout"), write)
    return write_atomic(job.dst, write, overwrite=job.force)


def _encode_image(job: Job, prepared, weights, bar) -> tuple[bytes, list[str]]:
    """The .slim bytes of a prepared image, and the lines to print under its file line."""
    from slimcodec.codec import encode_pixels

    if job.target is None:
        data = encode_pixels(prepared, job.width, scale=job.scale, weights=weights, metadata=job.metadata,
                             effort=job.effort, progress=bar.set if bar else None)
        return data, []
    from slimcodec.ratecontrol import choose_setting

    kind, value = job.target
    choice = choose_setting(prepared, weights=weights, metadata=job.metadata, effort=job.effort,
                            **{f"target_{kind}": value})
    return choice.data, [choice.reason if choice.met else f"warning: {choice.reason}"]


def encode_one(job: Job) -> Result:
    """Encode ``job.src`` to ``job.dst`` (a worker function)."""
    from slimcodec.cli.progress import image_bar
    from slimcodec.imageio import open_image, prepare
    from slimcodec.weights import load_weights

    start = time.perf_counter()
    _check_not_written_meanwhile(job)
    weights = load_weights(job.weights_path)
    if not job.stdin:
        refuse_special_file(job.src)
    source = _stdin_bytes() if job.stdin else job.src
    _refuse_slim_input(source[:4] if job.stdin else _file_head(job.src))
    try:
        image = open_image(source, name=str(job.src))
    except SlimError as exc:
        raise _without_path_prefix(exc, job.src) from exc
    with image:  # closed once prepared: the decoded image is not kept beside its pixel array
        bytes_in = len(source) if job.stdin else job.src.stat().st_size
        pixels = image.width * image.height
        prepared = prepare(image)
    del image, source
    with image_bar(pixels if job.progress else 0, f"encoding {job.src.name}", slow=job.effort > 1) as bar:
        data, lines = _encode_image(job, prepared, weights, bar)
    # what the conversion changed (16-bit reduced, CMYK converted, ...): one line each
    lines = [f"note: {text}" for text in prepared.notes] + lines
    del prepared
    bytes_out = _write_output(job, lambda f: f.write(data))
    return Result(job.dst, bytes_in, bytes_out, pixels, time.perf_counter() - start, "\n  ".join(lines) or None)


def _read_slim(job: Job) -> bytes:
    """The .slim file of ``job``, never reading more than its header gives."""
    import click

    from slimcodec.formats.slimfile import read_slim_stream

    if job.stdin:
        return read_slim_stream(click.get_binary_stream("stdin"))
    refuse_special_file(job.src)
    with open(job.src, "rb") as f:
        return read_slim_stream(f)  # a foreign file is refused from its header; no more is read than it gives


def decode_one(job: Job) -> Result:
    """Decode ``job.src`` to ``job.dst``, in the format of its suffix (a worker function)."""
    from slimcodec.cli.progress import image_bar
    from slimcodec.codec import decode
    from slimcodec.formats.slimfile import read_header
    from slimcodec.imageio import image_writer
    from slimcodec.weights import load_weights

    start = time.perf_counter()
    _check_not_written_meanwhile(job)
    # without --weights, decode() takes the shipped weights the file names (an earlier release's too)
    weights = load_weights(job.weights_path) if job.weights_path is not None else None
    data = _read_slim(job)
    header = read_header(data)
    pixels = header.image_width * header.image_height
    with image_bar(pixels if job.progress else 0, f"decoding {job.src.name}") as bar:
        image = decode(data, weights=weights, progress=bar.set if bar else None)
    try:
        write = image_writer(image, job.dst, job.write.format if job.write else None,
                             job.write.options if job.write else None)
    except SlimError as exc:  # "x.tif: the EXIF is malformed ...": the report names the file
        raise _without_path_prefix(exc, Path(job.dst.name)) from exc
    bytes_out = _write_output(job, write)
    note = "\n  ".join(f"note: {text}" for text in write.notes) or None
    return Result(job.dst, len(data), bytes_out, pixels, time.perf_counter() - start, note)
