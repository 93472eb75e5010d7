"""The ``slim`` command: encode images to .slim files, decode them, inspect them.

    slim encode photo.png                  # -> photo.slim (quality 75: width 144)
    slim encode photo.png -q 60 -o p.slim  # quality 0..100, as cwebp -q
    slim encode photos/ -o slim/ -w 96     # a folder tree, mirrored under slim/
    slim decode photo.slim -o back.webp    # any format Pillow writes, by extension
    slim decode photo.slim -o back.jpg -q 90   # lossy outputs: quality 95 unless -q
    slim info photo.slim                   # header fields, sizes and bpp
    slim encode photo.png --target-bpp 0.5 # width and scale: the most within 0.5 bpp
    slim encode photo.png -w 144 -s 0.7    # between widths 96 and 144
    slim eval ../shared/data/kodak         # rate/quality report against peer codecs
    slim bench --sizes kodak               # speed and memory per width

Each command prints one line per file on stderr (``error: ...`` for a failed
one, with the traceback only under ``--debug``) and a summary line, and exits
with 0 (all done), 1 (some file failed) or 2 (usage error); 130 after Ctrl-C
and 143 after SIGTERM. ``-`` reads the input from stdin and ``-o -`` writes
the output to stdout, which then gets nothing else. torch and the codec are imported inside the commands
that need them, so ``slim --help`` and ``slim info`` start instantly.
"""

from __future__ import annotations

import json
import sys
import traceback
from dataclasses import dataclass, replace
from pathlib import Path

import click

from slimcodec import __version__
from slimcodec.cli.parallel import silence_library_warnings
from slimcodec.cli.report import EXIT_FAILED, EXIT_INTERRUPTED, Report, describe_error
from slimcodec.errors import SlimError, WeightsFileError
from slimcodec.suffixes import DECODED_SUFFIX, IMAGE_SUFFIXES, SLIM_SUFFIX

EPILOG = """\b
Existing outputs: an output that exists is an error for that file (exit 1),
for one file and in a batch alike; --force replaces it, --skip-existing
skips it (exit 0). Devices and FIFOs are written through without --force.

\b
Exit codes:
  0    every file was converted (or skipped with --skip-existing)
  1    at least one file failed; each failure is one "error:" line
  2    usage error (bad option, argument or weights file)
  130  interrupted (Ctrl-C); finished outputs are kept, none is partial
  143  terminated (SIGTERM); finished outputs are kept, none is partial
"""

INFO_EPILOG = """\b
Exit codes:
  0    every file was read
  1    at least one file is not a valid .slim file or cannot be read
  2    usage error
"""

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@dataclass
class Options:
    """Options every command accepts, before or after the subcommand name."""

    debug: bool = False
    quiet: bool = False
    verbose: bool = False


class OneLineUsageError(click.UsageError):
    """A usage error (exit 2) shown as one ``error: ...`` line, without the usage text."""

    def show(self, file=None) -> None:
        click.echo(f"error: {self.format_message()}", file=file, err=file is None)


class SlimGroup(click.Group):
    """Turns uncaught exceptions into one ``error:`` line (a traceback with --debug)."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except KeyboardInterrupt:
            click.echo("error: interrupted", err=True)
            ctx.exit(EXIT_INTERRUPTED)
        except Exception as exc:
            opts = ctx.find_object(Options) or Options()
            if opts.debug:
                traceback.print_exc(file=sys.stderr)
            hint = "" if isinstance(exc, SlimError) or opts.debug else " (run with --debug for details)"
            click.echo(f"error: {describe_error(exc)}{hint}", err=True)
            ctx.exit(EXIT_FAILED)


def _set_option(name: str):
    def callback(ctx: click.Context, param: click.Parameter, value: bool) -> None:
        if value:
            setattr(ctx.ensure_object(Options), name, True)

    return callback


def common_options(f):
    """``--debug``, ``--quiet`` and ``-v/--verbose``, accepted on the group and every command.

    ``-q`` is not quiet: on encode and decode it is the quality, as for cwebp, cjxl and avifenc.
    """
    options = [
        click.option("--debug", is_flag=True, expose_value=False, callback=_set_option("debug"),
                     help="Show the traceback of each error."),
        click.option("--quiet", is_flag=True, expose_value=False, callback=_set_option("quiet"),
                     help="Print errors only (no progress bar)."),
        click.option("-v", "--verbose", is_flag=True, expose_value=False, callback=_set_option("verbose"),
                     help="Print settings and per-file timings."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _options(ctx: click.Context) -> Options:
    return ctx.ensure_object(Options)


@click.group(cls=SlimGroup, context_settings=CONTEXT_SETTINGS, epilog=EPILOG)
@click.version_option(__version__, "-V", "--version", prog_name="slim", message="%(prog)s %(version)s")
@common_options
def cli() -> None:
    """Encode images to .slim files (the SlimCAE learned codec) and decode them back."""


# ---------------------------------------------------------------- shared steps


def _workers(option: int | None) -> int | None:
    """``-j``, else ``$SLIM_WORKERS`` (checked now), else ``None``: chosen once the batch is known."""
    from slimcodec.cli.parallel import configured_workers

    try:
        return configured_workers(option)
    except ValueError as exc:
        raise OneLineUsageError(str(exc)) from None


def _check_weights_file(path: Path) -> None:
    """Refuse a ``--weights`` path that is not a regular file (a folder, a FIFO, /dev/zero)."""
    import stat

    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise OneLineUsageError(f"--weights: cannot read weights file {path}: {exc.strerror}") from None
    if stat.S_ISDIR(mode):
        raise OneLineUsageError(f"--weights {path}: is a folder, not a weights file")
    if not stat.S_ISREG(mode):
        raise OneLineUsageError(f"--weights {path}: not a regular file")


def _load_weights(ctx: click.Context, path: Path | None):
    """Load the weights once in this process (so bad weights fail before any file).

    Any problem with a ``--weights`` file is a usage error (exit 2) in one line.
    """
    if not _options(ctx).debug:
        silence_library_warnings()
    from slimcodec.weights import load_weights

    if path is None:
        return load_weights(None)  # a failure means a broken installation: not a usage error
    _check_weights_file(path)
    try:
        return load_weights(path)
    except WeightsFileError as exc:
        raise OneLineUsageError(f"--weights {exc.path}: {' '.join(exc.reason.split())}") from None
    except Exception as exc:  # a file torch loads but whose contents are not weights
        if _options(ctx).debug:
            traceback.print_exc(file=sys.stderr)
        raise OneLineUsageError(f"--weights {path}: not a slimcodec weights file "
                                f"({describe_error(exc)})") from None


def _plan(sources: tuple[str, ...], out: str | None, suffixes, out_suffix: str):
    """The (input, output) pairs of the command line; ``-`` is stdin, ``-o -`` stdout (one file each)."""
    from slimcodec.cli.jobs import STDIN, STDOUT, Plan, names_folder, plan

    stdin, stdout = "-" in sources, out == "-"
    if stdin and len(sources) > 1:
        raise OneLineUsageError("- (standard input) must be the only input")
    if stdin and (out is None or (not stdout and names_folder(out))):
        raise OneLineUsageError("reading standard input (-) needs -o FILE, or -o - for standard output")
    paths = tuple(Path(src) for src in sources)
    if stdout and (len(sources) > 1 or (not stdin and paths[0].is_dir())):
        raise OneLineUsageError("-o - (standard output) takes one input file")
    _refuse_terminal(stdin, stdout)
    if stdin:
        return Plan(pairs=[(STDIN, STDOUT if stdout else Path(out))], stdin=True, stdout=stdout)
    try:
        planned = plan(paths, None if stdout else out, suffixes, out_suffix)
    except NotADirectoryError as exc:
        raise OneLineUsageError(str(exc)) from None
    if stdout:
        planned.pairs = [(src, STDOUT) for src, _ in planned.pairs]
        planned.stdout = True
    return planned


def _std_stream(name: str, usage: str):
    """``click``'s binary standard stream ``name``; a usage error when the process has none (closed)."""
    try:
        return click.get_binary_stream(name)
    except RuntimeError:  # click's "was not able to determine binary stream"
        raise OneLineUsageError(f"{usage}, which is closed") from None


def _refuse_terminal(stdin: bool, stdout: bool) -> None:
    """Standard input or output given as ``-`` must be open and not a terminal: images are binary."""
    if stdin and _std_stream("stdin", "- reads the input from standard input").isatty():
        raise OneLineUsageError("- reads the input from standard input, which is a terminal; pipe a file in")
    if stdout and _std_stream("stdout", "-o - writes to standard output").isatty():
        raise OneLineUsageError("-o - writes binary data to standard output, which is a terminal; "
                                "redirect it to a file or a pipe")


def _remove_stale_temps(pairs, started: float, quiet: bool) -> None:
    """Delete the temporary files killed runs left in the output folders (see ``remove_stale_temps``)."""
    from slimcodec.cli.report import shown_path
    from slimcodec.outputs import is_stream, remove_stale_temps

    for folder in sorted({dst.parent for _, dst in pairs if not is_stream(dst)}):
        for path in remove_stale_temps(folder, started):
            if not quiet:
                click.echo(f"removed {shown_path(path)} (a temporary file left by a killed run)", err=True)


@dataclass(frozen=True)
class Existing:
    """What to do with outputs that exist: replace them (``--force``), skip them
    (``--skip-existing``), or neither: the file fails (exit 1), in a batch too."""

    force: bool = False
    skip: bool = False

    def __post_init__(self) -> None:
        if self.force and self.skip:
            raise OneLineUsageError("--force and --skip-existing cannot be combined")


def _jobs(planned, make_job, existing: Existing, report: Report) -> list:
    """The jobs to run; existing outputs are reported as failed or skipped (see ``Existing``)."""
    from slimcodec.outputs import needs_overwrite

    jobs = []
    for src, dst in planned.pairs:
        job = make_job(src, dst)
        job = replace(job, stdin=planned.stdin, stdout=planned.stdout)
        if not planned.stdout and not existing.force and needs_overwrite(dst):
            if existing.skip:
                report.skipped(src, f"{dst} exists (--skip-existing)")
            else:
                report.failed(src, f"{dst} already exists (use --force to overwrite, or --skip-existing)")
            continue
        jobs.append(job)
    return jobs


def _run(ctx: click.Context, action: str, planned, make_job, worker_fn, workers: int | None,
         weights_path: str | None, existing: Existing, nothing_found: str, scheduler: str | None = None) -> None:
    """Report planning problems, clean stale temporary files, handle existing outputs, run the jobs, exit."""
    import time

    from slimcodec.cli.parallel import Terminated, auto_workers, run_many
    from slimcodec.cli.progress import batch_bar, terminal

    started = time.time()
    opts = _options(ctx)
    report = Report(action, quiet=opts.quiet, verbose=opts.verbose, debug=opts.debug,
                    total=len(planned.pairs) + len(planned.problems))
    _remove_stale_temps(planned.pairs, started, opts.quiet)
    for folder in planned.empty_folders:
        if not opts.quiet:
            click.echo(f"warning: {nothing_found} in {folder}", err=True)
    report.progress = batch_bar(report.total, action, opts.quiet)
    for src, reason in planned.problems:
        report.failed(src, reason)
    jobs = _jobs(planned, make_job, existing, report)
    if len(jobs) == 1 and report.total == 1 and not opts.quiet and terminal() is not None:
        jobs = [replace(jobs[0], progress=True)]  # a large single image shows its own bar
    if workers is None:
        workers = auto_workers(len(jobs))
    if opts.verbose and jobs:
        where = f"on {scheduler}" if scheduler else f"{min(workers, len(jobs))} worker(s)"
        click.echo(f"{len(jobs)} file{'s' if len(jobs) != 1 else ''} to {action}, {where}", err=True)
    try:
        if scheduler is not None:
            _run_on_cluster(jobs, worker_fn, report, scheduler, weights_path, existing.skip)
        else:
            run_many(jobs, worker_fn, report, 1 if planned.stdin or planned.stdout else workers,
                     weights_path=weights_path, skip_existing=existing.skip)
    except KeyboardInterrupt as exc:  # Ctrl-C yet again while the batch stopped: the summary still comes
        report.interrupted = True
        report.terminated = report.terminated or isinstance(exc, Terminated)
    finally:
        if report.progress is not None:
            report.progress.close()
            report.progress = None
    if not opts.quiet:
        click.echo(str(report), err=True)
    ctx.exit(report.return_code)


def _check_scheduler(scheduler: str | None, workers: int | None) -> None:
    """Refuse ``--scheduler`` with ``-j``, or without the dask extra (one line, exit 2)."""
    if scheduler is None:
        return
    if workers is not None:
        raise OneLineUsageError("--scheduler and -j/--workers cannot be combined: the cluster has its workers")
    from slimcodec.cli.cluster import ClusterError, require_distributed

    try:
        require_distributed()
    except ClusterError as exc:
        raise OneLineUsageError(str(exc)) from None


def _run_on_cluster(jobs, worker_fn, report: Report, scheduler: str, weights_path: str | None,
                    skip_existing: bool) -> None:
    """``run_on_cluster`` (slimcodec.cli.cluster); a cluster that cannot be used is a usage error."""
    from slimcodec.cli.cluster import ClusterError, run_on_cluster

    try:
        run_on_cluster(jobs, worker_fn, report, scheduler, weights_path=weights_path,
                       skip_existing=skip_existing)
    except ClusterError as exc:
        raise OneLineUsageError(str(exc)) from None


_SOURCES = click.argument("sources", metavar="SRC...", nargs=-1, required=True)  # "-": standard input
_WEIGHTS = click.option("--weights", type=click.Path(path_type=Path),  # checked by _load_weights
                        help="Weights file [default: the shipped weights].")
_DECODE_WEIGHTS = click.option("--weights", type=click.Path(path_type=Path),
                               help="Weights file [default: the shipped weights each file names].")
_FORCE = click.option("-f", "--force", is_flag=True,
                      help="Replace existing outputs (through a symbolic link: the file it points to, "
                           "keeping its permissions).")
_SKIP = click.option("--skip-existing", is_flag=True,
                     help="Skip inputs whose output exists (exit 0), e.g. to resume a batch.")
_THREADS = click.option("--threads", type=click.IntRange(min=1), metavar="N",
                        help="Runtime threads per process [default: $SLIM_THREADS, else one per core; "
                             "one per worker in a batch].")


def _use_threads(threads: int | None) -> None:
    """Set the runtime's threads here and, through ``SLIM_THREADS``, in the batch workers."""
    import os

    from slimcodec import runtime

    if threads is not None:
        os.environ[runtime.THREADS_ENV] = str(threads)
        runtime.set_threads(threads)


_WORKERS = click.option("-j", "--workers", type=click.IntRange(min=1), metavar="N",
                        help="Worker processes [default: $SLIM_WORKERS, else one per CPU with at least "
                             "4 files each; a single process uses every core].")
_SCHEDULER = click.option("--scheduler", metavar="ADDRESS",
                          help="Convert on a Dask cluster, e.g. tcp://host:8786 (needs slimcodec[dask]; "
                               "inputs and outputs on a filesystem every worker sees).")


def batch_options(f):
    """The options encode and decode share after their own: --force, --skip-existing, -j, --scheduler,
    --threads, and the common ones; the command gets the context."""
    for option in (click.pass_context, common_options, _THREADS, _SCHEDULER, _WORKERS, _SKIP, _FORCE):
        f = option(f)
    return f


# ---------------------------------------------------------------- encode


class SizeParam(click.ParamType):
    """A file size: bytes, or with a unit (k/kB = 1000, KiB = 1024; see ``parse_size``)."""

    name = "size"

    def convert(self, value, param, ctx):
        if isinstance(value, int):
            return value
        from slimcodec.ratecontrol import parse_size

        try:
            return parse_size(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


def _encode_target(width: int | None, scale: float | None, quality: int | None, target_bpp: float | None,
                   target_size: int | None, target_psnr: float | None):
    """The ``Target`` of the --target-* options (``None`` without one); usage errors exit 2."""
    from slimcodec.ratecontrol import make_target

    setting = [name for name, value in (("--quality", quality), ("--width", width), ("--scale", scale))
               if value is not None]
    targets = [name for name, value in (("--target-bpp", target_bpp), ("--target-size", target_size),
                                        ("--target-psnr", target_psnr)) if value is not None]
    if len(targets) > 1 or (targets and setting) or ("--quality" in setting and len(setting) > 1):
        given = setting + targets
        raise OneLineUsageError(f"{' and '.join(given)} cannot be combined: give a quality, a width and "
                                "scale, or one target")
    if not targets:
        return None
    given = targets
    try:
        return make_target(target_bpp=target_bpp, target_bytes=target_size, target_psnr=target_psnr)
    except ValueError:
        value = target_bpp if target_bpp is not None else target_psnr if target_psnr is not None else target_size
        raise OneLineUsageError(f"invalid {given[0]} {value}: must be a positive number") from None


def _check_scale(scale: float | None) -> None:
    if scale is None:
        return
    from slimcodec.entropy import scale_units

    try:
        scale_units(scale)
    except ValueError as exc:
        raise OneLineUsageError(f"invalid --scale {scale:g}: {str(exc).split(', got')[0]}") from None


def _metadata_choice(metadata: str | None, no_metadata: bool) -> frozenset:
    """The metadata kinds ``--metadata`` / ``--no-metadata`` keep (ICC, EXIF and XMP by default)."""
    from slimcodec.imageio import metadata_kinds

    if metadata is not None and no_metadata:
        raise OneLineUsageError("--metadata and --no-metadata cannot be combined")
    try:
        return metadata_kinds("icc" if no_metadata else metadata or "all")
    except ValueError as exc:
        raise OneLineUsageError(f"invalid --metadata {metadata}: {exc}") from None


def _check_slim_name(out: str | None, planned) -> None:
    """Refuse ``-o photo.webp`` for one file: a .slim file under another image format's extension."""
    from PIL import Image

    from slimcodec.cli.jobs import names_folder
    from slimcodec.imageio import register_plugins

    if out is None or planned.batch or planned.stdout or names_folder(out):
        return
    register_plugins()  # .heic is an image format's extension too
    suffix = Path(out).suffix.lower()
    fmt = Image.registered_extensions().get(suffix)
    if suffix != SLIM_SUFFIX and fmt is not None:
        raise OneLineUsageError(f"-o {out}: slim encode writes .slim files, not {fmt}; name it "
                                f"{Path(out).with_suffix(SLIM_SUFFIX).name} (slim decode makes {suffix} files)")


def _setting(wts, width: int | None, scale: float | None, quality: int | None) -> tuple[int, float]:
    """Width and scale from -q, or -w and -s (default: width 144, scale 1); usage errors exit 2."""
    from slimcodec.codec import DEFAULT_WIDTH, resolve_setting

    valid = ", ".join(str(w) for w in wts.widths)
    if quality is None and width is None and DEFAULT_WIDTH not in wts.widths:
        raise OneLineUsageError(
            f"these weights have no width {DEFAULT_WIDTH} (the default); choose --quality, or --width from: {valid}"
        )
    if width is not None and width not in wts.widths:
        raise OneLineUsageError(f"invalid --width {width}: valid widths are {valid}")
    return resolve_setting(wts, width, scale, quality)


@cli.command(context_settings=CONTEXT_SETTINGS, epilog=EPILOG)
@_SOURCES
@click.option("-o", "--output", "out", metavar="PATH",
              help="Output file (- for standard output), or folder when several inputs or a folder are "
                   "given [default: beside each input, suffix .slim].")
@click.option("-q", "--quality", type=click.IntRange(0, 100), metavar="0..100",
              help="Quality, as for cwebp/cjxl/avifenc: picks width and scale from the weights' measured "
                   "rate curve, the rate doubling every 22 steps [default: 75, which is width 144 at "
                   "scale 1]. Not with --width/--scale.")
@click.option("-w", "--width", type=int, metavar="W",
              help="Network width (latent channels): wider is better and larger. "
                   "One of the weights' widths, e.g. 192, 144, 96, 72, 48 [default: 144].")
@click.option("-s", "--scale", type=float, metavar="S",
              help="Latent scale, a continuous quality control from 0.0625 to 15.9998 (65535/4096): below 1 "
                   "smaller and coarser, above 1 larger and finer [default: 1]. Between two widths, the "
                   "wider one scaled below 1 is on average as good as the widths' own curve.")
@click.option("--target-bpp", type=float, metavar="BPP",
              help="Pick width and scale per file: the largest file with at most BPP bits per pixel "
                   "(never more). Not with --quality/--width/--scale.")
@click.option("--target-size", type=SizeParam(), metavar="SIZE",
              help="Pick width and scale per file: the largest file of at most SIZE bytes; "
                   "k and kB mean 1000 bytes, KiB 1024, M/MB 10^6, MiB 2^20 (e.g. 40k, 64KiB). "
                   "Not with --quality/--width/--scale.")
@click.option("--target-psnr", type=float, metavar="DB",
              help="Pick width and scale per file: the smallest file whose decoded image reaches "
                   "DB dB PSNR on 8-bit RGB. Not with --quality/--width/--scale.")
@_WEIGHTS
@click.option("--metadata", metavar="LIST",
              help="Metadata to keep: all, none, or some of icc,exif,xmp [default: all].")
@click.option("--no-metadata", is_flag=True, help="Drop EXIF and XMP, keep the ICC profile (= --metadata icc).")
@click.option("-e", "--effort", type=click.IntRange(1, 9), default=1, show_default=True, metavar="1..9",
              help="Encoder effort: above 1 the latents are refined against the rate-distortion "
                   "objective (slower; needs the train extra). The decoder is the same.")
@batch_options
def encode(ctx: click.Context, sources: tuple[str, ...], out: str | None, quality: int | None, width: int | None,
           scale: float | None, target_bpp: float | None, target_size: int | None, target_psnr: float | None,
           weights: Path | None, metadata: str | None, no_metadata: bool, effort: int, force: bool,
           skip_existing: bool, workers: int | None, threads: int | None, scheduler: str | None = None) -> None:
    """Encode images (PNG, JPEG, WebP, TIFF, BMP, GIF, AVIF, HEIC) to .slim files.

    SRC may be files or folders (- reads one image from standard input);
    folders are searched recursively for .png .jpg .jpeg .webp .tif .tiff
    .bmp .gif .avif .heic .heif files. HEIC needs pillow-heif.

    With --target-bpp, --target-size or --target-psnr the width and scale are
    chosen for each file by encoding it at several settings (narrow widths
    first, then a search on the scale), and a line under each file says which
    setting was chosen and why.
    """
    from slimcodec.cli.jobs import Job, encode_one

    target = _encode_target(width, scale, quality, target_bpp, target_size, target_psnr)
    _check_scale(scale)
    kinds = _metadata_choice(metadata, no_metadata)
    existing = Existing(force, skip_existing)
    num_workers = _workers(workers)
    _check_scheduler(scheduler, workers)
    planned = _plan(sources, out, IMAGE_SUFFIXES, SLIM_SUFFIX)
    _check_slim_name(out, planned)
    _use_threads(threads)
    wts = _load_weights(ctx, weights)
    if effort > 1:
        from slimcodec.effort import torch_model

        try:
            torch_model(wts)  # fail once, before any file, when refinement cannot run here
        except SlimError as exc:
            raise OneLineUsageError(f"--effort {effort}: {exc}") from None
    if target is None:
        width, scale = _setting(wts, width, scale, quality)
    if _options(ctx).verbose:
        valid = ", ".join(str(w) for w in wts.widths)
        chosen = ((f"quality {quality}: " if quality is not None else "") + f"width {width}, scale {scale:g}"
                  if target is None else f"target {target.describe()} (width and scale chosen per file)")
        click.echo(f"weights {weights or 'shipped'} (id {wts.weights_id.hex()}, widths {valid}, "
                   f"{wts.transforms.name} backend), {chosen}", err=True)
    weights_path = str(weights.resolve()) if weights is not None else None
    job_target = None if target is None else (target.kind, target.value)
    _run(ctx, "encode", planned,
         lambda src, dst: Job(src, dst, weights_path, force, width, kinds, job_target,
                              1.0 if scale is None else scale, effort),
         encode_one, num_workers, weights_path, existing, "no images found", scheduler)


# ---------------------------------------------------------------- decode


def _saveable_format(suffix: str) -> str | None:
    """The Pillow format that writes files with ``suffix`` (e.g. ".png" -> "PNG"), if any."""
    from PIL import Image

    from slimcodec.imageio import format_of_suffix

    fmt = format_of_suffix(suffix)  # HEIC too, with pillow-heif
    # SLIM is registered by slimcodec's own Pillow plugin: decoding to .slim would re-encode.
    return fmt if fmt in Image.SAVE and fmt != "SLIM" else None


def _decode_format(out: str | None, fmt: str | None, planned) -> tuple[str, str]:
    """The outputs' suffix and Pillow format: from ``--format``, else ``-o``'s extension, else PNG."""
    from slimcodec.cli.jobs import names_folder

    out_suffix = DECODED_SUFFIX
    if fmt is not None:
        out_suffix = "." + fmt.lower().lstrip(".")
        if out_suffix == ".":
            raise OneLineUsageError("--format needs an image extension, e.g. png")
        if out_suffix == SLIM_SUFFIX:
            raise OneLineUsageError(f"--format {fmt}: decode writes images, not .slim files")
        if _saveable_format(out_suffix) is None:
            raise OneLineUsageError(f"invalid --format {fmt!r}: Pillow cannot write {out_suffix} files")
    if out is not None and not planned.batch and not planned.stdout and not names_folder(out):
        out_format = _saveable_format(Path(out).suffix)
        if Path(out).suffix.lower() == SLIM_SUFFIX:
            raise OneLineUsageError(f"-o {out}: decode writes images, not .slim files; use e.g. .png")
        if out_format is None and fmt is None:
            raise OneLineUsageError(
                f"-o {out}: cannot tell the image format from its extension; use e.g. .png, or --format"
            )
        if fmt is not None and out_format not in (None, _saveable_format(out_suffix)):
            raise OneLineUsageError(f"-o {out} does not match --format {fmt}")
        if out_format is not None:
            return Path(out).suffix, out_format
    return out_suffix, _saveable_format(out_suffix)


def _write_options(pillow_format: str, quality: int | None, lossless: bool, background: str | None):
    """The ``WriteOptions`` of --quality, --lossless and --background; usage errors exit 2."""
    from slimcodec.imageio import WriteOptions, check_write_options, parse_color

    try:
        color = None if background is None else parse_color(background)
    except ValueError as exc:
        raise OneLineUsageError(f"invalid --background: {exc}") from None
    options = WriteOptions(quality, lossless, color)
    try:
        check_write_options(pillow_format, options)
    except ValueError as exc:
        flag = "--lossless" if lossless and "lossless" in str(exc) else "--quality"
        raise OneLineUsageError(f"{flag}: {exc}") from None
    return options


@cli.command(context_settings=CONTEXT_SETTINGS, epilog=EPILOG)
@_SOURCES
@click.option("-o", "--output", "out", metavar="PATH",
              help="Output file (its extension picks the format; - for standard output, PNG unless "
                   "--format), or folder when several inputs or a folder are given [default: beside "
                   "each input].")
@click.option("--format", "fmt", metavar="EXT",
              help="Output format by extension: png, webp, tif, bmp, jpg, avif, ... [default: png, "
                   "or the extension of -o].")
@click.option("-q", "--quality", type=click.IntRange(0, 100), metavar="0..100",
              help="Quality of JPEG, WebP, AVIF and HEIC outputs [default: 95; from 90 on JPEG and AVIF "
                   "keep full-resolution colour].")
@click.option("--lossless", is_flag=True, help="Lossless WebP output.")
@click.option("--background", metavar="COLOR",
              help="Flatten the alpha channel onto COLOR (white, black, #rrggbb) for formats "
                   "without alpha, such as JPEG [default: refuse such a file].")
@_DECODE_WEIGHTS
@batch_options
def decode(ctx: click.Context, sources: tuple[str, ...], out: str | None, fmt: str | None, quality: int | None,
           lossless: bool, background: str | None, weights: Path | None, force: bool, skip_existing: bool,
           workers: int | None, threads: int | None, scheduler: str | None = None) -> None:
    """Decode .slim files to images (PNG by default).

    SRC may be files or folders (- reads one .slim file from standard input);
    folders are searched recursively for .slim files. The ICC profile, EXIF
    and XMP go into every format that stores them.
    """
    from slimcodec.cli.jobs import DecodeOutput, Job, decode_one

    existing = Existing(force, skip_existing)
    num_workers = _workers(workers)
    _check_scheduler(scheduler, workers)
    suffix = DECODED_SUFFIX if fmt is None else "." + fmt.lower().lstrip(".")
    planned = _plan(sources, out, (SLIM_SUFFIX,), suffix)
    _, pillow_format = _decode_format(out, fmt, planned)
    output = DecodeOutput(pillow_format if fmt is not None or planned.stdout else None,
                          _write_options(pillow_format, quality, lossless, background))
    _use_threads(threads)
    # without --weights each file loads the shipped weights it names: the default ones are not
    # loaded for files that name others (a 0.2.0 file costs 0.2.0's weights only)
    if weights is not None:
        wts = _load_weights(ctx, weights)
    if _options(ctx).verbose:
        from slimcodec.runtime import chosen_backend
        from slimcodec.weights import DEFAULT_WEIGHTS_ID

        which = (f"weights {weights} (id {wts.weights_id.hex()}" if weights is not None
                 else f"weights: the shipped ones each file names (default {DEFAULT_WEIGHTS_ID}")
        click.echo(f"{which}, {chosen_backend()} backend)", err=True)
    weights_path = str(weights.resolve()) if weights is not None else None
    _run(ctx, "decode", planned, lambda src, dst: Job(src, dst, weights_path, force, write=output),
         decode_one, num_workers, weights_path, existing, "no .slim files found", scheduler)


# ---------------------------------------------------------------- info


def describe_slim(path: Path, data: bytes) -> dict:
    """The fields ``slim info`` shows for one file (pure Python: no torch)."""
    from slimcodec.formats.slimfile import ARCHITECTURE_OF_MAJOR, SCALE_ONE, read_slim
    from slimcodec.geometry import TILE_LATENTS, tile_count

    slim = read_slim(data)
    h = slim.header
    return {
        "file": str(path),
        "format_version": f"{h.version_major}.{h.version_minor}",
        "architecture": ARCHITECTURE_OF_MAJOR[h.version_major],
        "image_width": h.image_width,
        "image_height": h.image_height,
        "color_type": h.color_type.name,
        "alpha": slim.chunk(b"ALPH") is not None,
        "bit_depth": h.bit_depth,
        "width": h.slim_width,
        "scale": (h.latent_scale or SCALE_ONE) / SCALE_ONE,
        "latent_shape": [h.slim_width, h.latent_height, h.latent_width],
        # payload streams of TILE_LATENTS² latents (format 3.1); None: one stream over the image
        "tiles": tile_count(h.latent_height, h.latent_width, TILE_LATENTS) if h.tiled else None,
        "weights_id": h.weights_id.hex(),
        "chunks": {c.tag.decode("ascii"): len(c.data) for c in slim.chunks},
        "payload_bytes": len(slim.payload),
        "file_bytes": len(data),
        "bpp": 8 * len(data) / (h.image_width * h.image_height),
    }


def format_info(fields: dict) -> str:
    """``describe_slim``'s fields as aligned text lines."""
    from slimcodec.geometry import STRIDE, TILE_LATENTS

    chunks = ", ".join(f"{tag} ({size} bytes)" for tag, size in fields["chunks"].items()) or "none"
    c, lh, lw = fields["latent_shape"]
    rows = [
        ("format version", fields["format_version"]),
        ("architecture", fields["architecture"]),
        ("image size", f"{fields['image_width']} x {fields['image_height']}"),
        ("color type", f"{fields['color_type']}{' + alpha' if fields['alpha'] else ''}, "
                       f"{fields['bit_depth']} bits"),
        ("width", fields["width"]),
        ("latent scale", f"{fields['scale']:.6g}"),
        ("latent shape", f"{c} x {lh} x {lw} (channels x height x width)"),
        ("tiles", "one stream" if fields["tiles"] is None else f"{fields['tiles']} (coded apart, "
                  f"{TILE_LATENTS * STRIDE} x {TILE_LATENTS * STRIDE} pixels each)"),
        ("weights id", fields["weights_id"]),
        ("chunks", chunks),
        ("payload bytes", fields["payload_bytes"]),
        ("file bytes", fields["file_bytes"]),
        ("bpp", f"{fields['bpp']:.4f}"),
    ]
    return "\n".join([fields["file"]] + [f"  {name:<15} {value}" for name, value in rows])


@cli.command(context_settings=CONTEXT_SETTINGS, epilog=INFO_EPILOG)
@click.argument("files", metavar="FILE...", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list instead of text.")
@common_options
@click.pass_context
def info(ctx: click.Context, files: tuple[Path, ...], as_json: bool) -> None:
    """Show the header of .slim files: sizes, width, weights id, bpp.

    Checks each file's structure and checksum; does not decode the image.
    Folders are searched recursively for .slim files; - reads one from standard input.
    """
    from slimcodec.cli.jobs import refuse_special_file, scan_folder
    from slimcodec.formats.slimfile import read_slim_stream

    opts = _options(ctx)
    report = Report("read", quiet=opts.quiet, verbose=opts.verbose, debug=opts.debug)
    paths: list[Path] = []
    for path in files:
        found = scan_folder(path, (SLIM_SUFFIX,)) if path.is_dir() else [path]
        if not found:
            report.warn(f"no .slim files found in {path}")
        paths.extend(found)
    stdin = None
    if Path("-") in paths:
        _refuse_terminal(stdin=True, stdout=False)
        stdin = click.get_binary_stream("stdin")
    described = []
    for path in paths:
        try:
            if str(path) == "-":
                fields = describe_slim(Path("<stdin>"), read_slim_stream(stdin))
            else:
                refuse_special_file(path)
                with open(path, "rb") as f:
                    fields = describe_slim(path, read_slim_stream(f))
        except Exception as exc:
            report.failed(path, exc)
            continue
        described.append(fields)
        if not as_json:
            click.echo(("\n" if len(described) > 1 else "") + format_info(fields))
    if as_json:
        click.echo(json.dumps(described, indent=2))
    ctx.exit(report.return_code)


# ---------------------------------------------------------------- eval and bench


class CommaList(click.ParamType):
    """A comma-separated list (``192,96,48``; spaces work too), each item converted by ``item``."""

    name = "list"

    def __init__(self, item: type = str):
        self.item = item

    def convert(self, value, param, ctx):
        if isinstance(value, list):
            return value
        try:
            return [self.item(v) for v in value.replace(",", " ").split()]
        except ValueError:
            self.fail(f"expected a comma-separated list of {self.item.__name__}s, got {value!r}", param, ctx)


def _tool_setup(ctx: click.Context) -> bool:
    """Quiet the library's warnings unless --debug; whether --quiet was given."""
    if not _options(ctx).debug:
        silence_library_warnings()
    return _options(ctx).quiet


_EVAL_EPILOG = """\b
Outputs in the report folder: points.csv (one row per image and setting),
summary.csv, bd.csv, results.json, rd_psnr.png and rd_msssim.png (with
matplotlib) and report.md. Same as: python -m slimcodec.tools.evaluate.

\b
Exit codes:
  0    every point was measured
  1    some images or points failed
  2    usage error
"""


@cli.command("eval", context_settings=CONTEXT_SETTINGS, epilog=_EVAL_EPILOG)
@click.argument("folder", type=click.Path(path_type=Path))
@click.option("-o", "--output", metavar="DIR",
              help="Report folder [default: eval-<folder name> in the current folder].")
@click.option("--widths", type=CommaList(int), metavar="LIST",
              help="Widths to measure, e.g. 192,96,48 [default: all].")
@click.option("--peers", metavar="LIST",
              help="Comma-separated peers: jpeg (=jpeg420,jpeg444), jpeg420, jpeg444, webp, jpeg2000, "
                   "avif, hevc, all, none [default: all].")
@click.option("--weights", type=click.Path(dir_okay=False, path_type=Path),
              help="Weights file [default: the shipped weights].")
@click.option("--limit", type=click.IntRange(min=1), metavar="N", help="Only the first N images (by name).")
@click.option("--published", type=click.Choice(["kodak", "none"]),
              help="Add published Kodak curves (CompressAI) to the plots and BD table [default: none].")
@click.option("--threads", type=click.IntRange(min=1), metavar="N",
              help="torch threads [default: torch's default, one per core]; 1 is faster on a busy machine.")
@click.option("-e", "--effort", type=click.IntRange(1, 9), metavar="1..9",
              help="slimcodec's encoder effort (see slim encode --help) [default: 1].")
@click.option("--no-plots", is_flag=True, help="Skip the PNG plots.")
@common_options
@click.pass_context
def eval_command(ctx: click.Context, folder: Path, output: str | None, widths: list[int] | None, peers: str | None,
                 weights: Path | None, limit: int | None, published: str | None, threads: int | None,
                 effort: int | None, no_plots: bool) -> None:
    """Measure rate and quality on a folder of images, against peer codecs.

    Every image is coded for real at every width (and by every peer at each
    of its settings): bpp from the file sizes, PSNR and MS-SSIM on 8-bit RGB,
    RD curves and BD-rates. With --quiet no progress is shown.
    """
    quiet = _tool_setup(ctx)
    from slimcodec.tools import evaluate

    ctx.exit(evaluate.evaluate(folder, output, widths=widths, peers=peers, weights=weights, limit=limit,
                               published=published, threads=threads, plots=not no_plots, quiet=quiet,
                               effort=effort))


_BENCH_EPILOG = """\b
Prints Markdown tables on stdout (--json and --markdown also write them to
files). Same as: python -m slimcodec.tools.bench.
"""


@cli.command("bench", context_settings=CONTEXT_SETTINGS, epilog=_BENCH_EPILOG)
@click.option("--image", type=click.Path(dir_okay=False, path_type=Path),
              help="Source photo [default: Kodak kodim23 from ../shared/data].")
@click.option("--sizes", type=CommaList(), default="kodak,12mp", metavar="LIST",
              help="Comma-separated image sizes: kodak (768x512), 12mp (4000x3000) or WxH "
                   "[default: kodak,12mp].")
@click.option("--widths", type=CommaList(int), metavar="LIST", help="Widths to time, e.g. 192,48 [default: all].")
@click.option("--weights", type=click.Path(dir_okay=False, path_type=Path),
              help="Weights file [default: the shipped weights].")
@click.option("--repeats", type=click.IntRange(min=1), default=5, metavar="N",
              help="Timed runs per setting [default: 5].")
@click.option("--large-repeats", type=click.IntRange(min=1), default=3, metavar="N",
              help="Timed runs for images over 2 MP [default: 3].")
@click.option("--peers", default="all", metavar="LIST", help="Peers to time ('none' for none) [default: all].")
@click.option("--no-compressai", is_flag=True, help="Skip CompressAI.")
@click.option("--compressai-large", is_flag=True,
              help="Also run CompressAI on images over 2 MP (several GB of memory).")
@click.option("--no-memory", is_flag=True, help="Skip the peak-memory subprocesses.")
@click.option("--threads", type=click.IntRange(min=1), metavar="N",
              help="torch threads [default: torch's default, one per core].")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the full result as JSON to this file.")
@click.option("--markdown", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the tables as Markdown to this file.")
@common_options
@click.pass_context
def bench_command(ctx: click.Context, image: Path | None, sizes: list[str], widths: list[int] | None,
                  weights: Path | None, repeats: int, large_repeats: int, peers: str, no_compressai: bool,
                  compressai_large: bool, no_memory: bool, threads: int | None, json_path: Path | None,
                  markdown: Path | None) -> None:
    """Time encoding and decoding per width, next to CompressAI and peer codecs.

    Times each stage (transform, entropy coding, container) as the median of
    several runs after a warm-up, and measures peak memory in fresh
    subprocesses. With --quiet no progress is shown.
    """
    quiet = _tool_setup(ctx)
    from slimcodec.tools import bench

    ctx.exit(bench.bench(bench.DEFAULT_SOURCE if image is None else image, sizes, widths=widths, weights=weights,
                         repeats=repeats, large_repeats=large_repeats, peers=peers, compressai=not no_compressai,
                         compressai_large=compressai_large, memory=not no_memory, threads=threads,
                         json_path=json_path, markdown=markdown, quiet=quiet))


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``slim`` console script."""
    from slimcodec.runtime import limit_malloc_arenas

    limit_malloc_arenas()  # before any thread starts: address space, not speed (see its docstring)
    cli.main(args=argv, prog_name="slim")


if __name__ == "__main__":
    main()
