"""Which files a command converts, and converting one of them.

``plan`` turns the command line's sources into (input, output) pairs;
``encode_one``/``decode_one`` convert one pair and run in worker processes,
so they are module-level and import the codec lazily. Every output is written
to one hidden temporary file in the destination folder and then renamed into
place (:func:`slimcodec.outputs.write_atomic`), so an output is complete or
absent. A batch never writes through a symbolic link to a folder inside its
output folder: such files are refused in the plan.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from slimcodec.errors import SlimError, UnsupportedImageError
from slimcodec.outputs import OutputError, OutputExistsError, output_exists, write_atomic  # noqa: F401

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp")
SLIM_SUFFIX = ".slim"


@dataclass(frozen=True)
class Job:
    """One file to convert.

    Attributes:
        src (Path): the input file.
        dst (Path): the output file.
        weights_path (str | None): weights file; ``None`` = the shipped weights.
        force (bool): replace ``dst`` if it exists.
        width (int | None): network width (encode only).
        scale (float): latent scale (encode only).
        metadata (bool): keep ICC profile and EXIF (encode only).
        target (tuple[str, float] | None): encode only: ``("bpp", 0.5)``,
            ``("bytes", 40000)`` or ``("psnr", 32.0)`` picks the width per file
            (see :mod:`slimcodec.ratecontrol`); ``width`` and ``scale`` are then ignored.
        effort (int): encoder effort 1–9 (encode only; see :mod:`slimcodec.effort`).
    """

    src: Path
    dst: Path
    weights_path: str | None = None
    force: bool = False
    width: int | None = None
    metadata: bool = True
    target: tuple[str, float] | None = None
    scale: float = 1.0
    effort: int = 1


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
    """

    pairs: list[tuple[Path, Path]] = field(default_factory=list)
    problems: list[tuple[Path, str]] = field(default_factory=list)
    empty_folders: list[Path] = field(default_factory=list)
    batch: bool = False


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
    if not job.force and output_exists(job.dst):
        raise OutputExistsError(f"{job.dst} already exists (use --force to overwrite)", job.dst)


def _refuse_slim_input(path: Path) -> None:
    """A .slim file (whatever its name) is not an image to encode: re-encoding it would lose quality."""
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError:
        return  # open_image says why
    if magic == b"SLIM":
        raise UnsupportedImageError("is a .slim file, not an image to encode (slim decode turns it into one)")


def encode_one(job: Job) -> Result:
    """Encode ``job.src`` to ``job.dst`` (a worker function)."""
    from slimcodec.codec import encode_pixels
    from slimcodec.imageio import open_image, prepare
    from slimcodec.weights import load_weights

    start = time.perf_counter()
    _check_not_written_meanwhile(job)
    weights = load_weights(job.weights_path)
    _refuse_slim_input(job.src)
    try:
        image = open_image(job.src)
    except SlimError as exc:
        raise _without_path_prefix(exc, job.src) from exc
    note = None
    with image:
        bytes_in = job.src.stat().st_size
        pixels = image.width * image.height
        prepared = prepare(image)
        # what the conversion changed (16-bit reduced, CMYK converted, ...): one line each
        lines = [f"note: {text}" for text in prepared.notes]
        if job.target is None:
            data = encode_pixels(prepared, job.width, scale=job.scale, weights=weights, metadata=job.metadata,
                                 effort=job.effort)
        else:
            from slimcodec.ratecontrol import choose_setting

            kind, value = job.target
            choice = choose_setting(prepared, weights=weights, metadata=job.metadata, effort=job.effort,
                                    **{f"target_{kind}": value})
            data = choice.data
            lines.append(choice.reason if choice.met else f"warning: {choice.reason}")
        note = "\n  ".join(lines) or None  # Report.done indents the first line
    bytes_out = write_atomic(job.dst, lambda f: f.write(data), overwrite=job.force)
    return Result(job.dst, bytes_in, bytes_out, pixels, time.perf_counter() - start, note)


def decode_one(job: Job) -> Result:
    """Decode ``job.src`` to ``job.dst``, in the format of its suffix (a worker function)."""
    from slimcodec.codec import decode
    from slimcodec.formats.slimfile import read_slim_stream
    from slimcodec.imageio import image_writer
    from slimcodec.weights import load_weights

    start = time.perf_counter()
    _check_not_written_meanwhile(job)
    weights = load_weights(job.weights_path)
    with open(job.src, "rb") as f:
        data = read_slim_stream(f)  # a foreign file is refused from its header; no more is read than it gives
    image = decode(data, weights=weights)
    pixels = image.width * image.height
    try:
        write = image_writer(image, job.dst)
    except SlimError as exc:  # "x.tif: the EXIF is malformed ...": the report names the file
        raise _without_path_prefix(exc, Path(job.dst.name)) from exc
    bytes_out = write_atomic(job.dst, write, overwrite=job.force)
    return Result(job.dst, len(data), bytes_out, pixels, time.perf_counter() - start)
