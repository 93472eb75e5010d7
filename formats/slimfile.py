"""Reader and writer of the ``.slim`` container, formats 1.1, 2.0 and 3.0 (reads 1.0 too; see ``SPEC.md``).

A ``.slim`` file is a fixed little-endian header, a section of tagged chunks,
the range-coder payload and a CRC-32 of everything before it::

    [header: header_size] [chunks: chunks_size] [payload: payload_size] [crc32: 4]

This module only handles the container: it never decodes the payload and
imports neither torch nor numpy. :func:`read_slim` checks every field (and the
checksum) before it copies anything out of the input, and reports each problem
as a :class:`~slimcodec.errors.SlimFormatError` with a one-line reason.
Checks that need the weights (``slim_width`` is a width of the weights,
``weights_id`` matches, the payload decodes to exactly the expected symbols)
belong to the codec.
"""

from __future__ import annotations

import enum
import struct
import zlib
from dataclasses import dataclass, fields
from typing import BinaryIO

from slimcodec.errors import SlimFormatError
from slimcodec.geometry import HYPER_STRIDE, STRIDE, latent_side
from slimcodec.latents import ARCHITECTURES

__all__ = [
    "MAGIC",
    "VERSION_MAJOR",
    "VERSION_MINOR",
    "HEADER_SIZE",
    "FLAG_TILED",
    "MAX_PIXELS",
    "MAX_SIDE",
    "MAX_SLIM_WIDTH",
    "LATENT_STRIDE",
    "HYPER_STRIDE",
    "ARCHITECTURE_OF_MAJOR",
    "KNOWN_CHUNKS",
    "ColorType",
    "SlimHeader",
    "Chunk",
    "SlimFile",
    "write_slim",
    "read_slim",
    "read_header",
    "read_slim_stream",
    "make_alpha_chunk",
    "read_alpha",
]

MAGIC = b"SLIM"
# the minor version written for each major version read and written, from the architectures'
# registry (slimcodec.latents): 1.x is the factorized prior (latents at 1/16), 2.x the
# hyperprior (y at 1/16 of an image padded to a multiple of 64), 3.x the channel-conditional model (as 2.x)
WRITTEN_MINOR = dict(sorted(a.format_version for a in ARCHITECTURES.values()))
ARCHITECTURE_OF_MAJOR = {a.major: a.name for a in ARCHITECTURES.values()}  # what makes each major's files
_PADDING_OF_MAJOR = {a.major: a.padding_multiple for a in ARCHITECTURES.values()}
# flags bit 0: the payload is tiled (one range-coder stream per tile). 3.1 files set it, so that a
# 3.0 reader, which refuses any flag, refuses them rather than read a tiled payload as 3.0's
FLAG_TILED = 0x1
TILED_FROM_MINOR = {3: 1}  # majors whose payload is tiled from this minor on
VERSION_MAJOR = max(WRITTEN_MINOR)  # the newest format this module reads and writes
VERSION_MINOR = WRITTEN_MINOR[VERSION_MAJOR]
HEADER_SIZE = 48  # fixed header size written by this version; readers accept larger
MAX_PIXELS = 100_000_000
MAX_SIDE = 65535
MAX_SLIM_WIDTH = 4096
LATENT_STRIDE = STRIDE  # the analysis transform downsamples by 16 (slimcodec.geometry); 2.x pads to HYPER_STRIDE
KNOWN_CHUNKS = frozenset({b"ALPH", b"iccp", b"exif", b"xmpd"})
SCALE_ONE = 4096  # latent_scale units: the scale is latent_scale / SCALE_ONE; 0 means no scaling
MIN_LATENT_SCALE = 256  # 1/16

# magic, version_major, version_minor, header_size, image_width, image_height,
# color_type, bit_depth, slim_width, weights_id, latent_height, latent_width,
# pad_mode, reserved, latent_scale (1.1; reserved in 1.0), flags, chunks_size, payload_size
_HEADER = struct.Struct("<4sBBHIIBBH8sHHBBHIII")
_CHUNK_HEAD = struct.Struct("<4sI")
_CRC = struct.Struct("<I")
_U32_MAX = 0xFFFFFFFF
assert _HEADER.size == HEADER_SIZE


class ColorType(enum.IntEnum):
    """How the decoded image is returned; the payload is always coded as RGB."""

    RGB = 0
    GRAY = 1


def _tiled(major: int, minor: int) -> bool:
    return minor >= TILED_FROM_MINOR.get(major, 256)


def _latent_side(side: int, major: int = 1) -> int:
    """Latent (y) positions along an image side: ``ceil(side / 16)``, in format 2
    ``4 · ceil(side / 64)``."""
    return latent_side(side, _PADDING_OF_MAJOR[major])


@dataclass(frozen=True)
class SlimHeader:
    """The fixed header of a ``.slim`` file (everything but the container sizes).

    Attributes:
        image_width (int): image width in pixels, 1..65535.
        image_height (int): image height in pixels, 1..65535.
        color_type (ColorType): ``RGB`` or ``GRAY``.
        slim_width (int): number of latent channels (the network width), 1..4096.
        weights_id (bytes): first 8 bytes of the SHA-256 of the weights file.
        latent_height (int): ``ceil(image_height / 16)``.
        latent_width (int): ``ceil(image_width / 16)``.
        bit_depth (int): bits per sample; 8 in format 1.0.
        pad_mode (int): 0 = edge replication to a multiple of 16.
        latent_scale (int): 0 = none; otherwise the latents were scaled by
            ``latent_scale / 4096`` before rounding (format 1.1).
        version_major (int): format major version.
        version_minor (int): format minor version (as read; the writer writes 1.1).
    """

    image_width: int
    image_height: int
    color_type: ColorType
    slim_width: int
    weights_id: bytes
    latent_height: int
    latent_width: int
    bit_depth: int = 8
    pad_mode: int = 0
    latent_scale: int = 0
    version_major: int = 1
    version_minor: int = 1

    @property
    def tiled(self) -> bool:
        """Whether the payload is tiled (format 3.1 and later 3.x; the header sets :data:`FLAG_TILED`)."""
        return _tiled(self.version_major, self.version_minor)

    @classmethod
    def for_image(
        cls,
        image_width: int,
        image_height: int,
        color_type: ColorType,
        slim_width: int,
        weights_id: bytes,
        latent_scale: int = 0,
        version_major: int = 1,
    ) -> SlimHeader:
        """Build the header of an image, deriving the latent size from the image size.

        Args:
            image_width (int): image width in pixels.
            image_height (int): image height in pixels.
            color_type (ColorType): ``ColorType.RGB`` or ``ColorType.GRAY``.
            slim_width (int): number of latent channels.
            weights_id (bytes): 8-byte weights identifier.
            latent_scale (int): 0 (no scaling) or the scale in 1/4096 units, 256..65535.
            version_major (int): 1 (factorized, written as 1.1), 2 (hyperprior, 2.0) or 3
                (channel-conditional, 3.1, tiled).

        Returns:
            SlimHeader: with ``latent_height = ceil(image_height / 16)`` and
            ``latent_width = ceil(image_width / 16)`` (format 2: ``4 · ceil(side / 64)``).

        Example:
            >>> h = SlimHeader.for_image(100, 33, ColorType.RGB, 192, bytes(8))
            >>> assert (h.latent_height, h.latent_width) == (3, 7)
            >>> h = SlimHeader.for_image(100, 33, ColorType.RGB, 192, bytes(8), version_major=2)
            >>> assert (h.latent_height, h.latent_width, h.version_minor) == (4, 8, 0)
        """
        return cls(
            image_width=image_width,
            image_height=image_height,
            color_type=ColorType(color_type),
            slim_width=slim_width,
            weights_id=bytes(weights_id),
            latent_height=_latent_side(image_height, version_major),
            latent_width=_latent_side(image_width, version_major),
            latent_scale=latent_scale,
            version_major=version_major,
            version_minor=WRITTEN_MINOR[version_major],
        )


@dataclass(frozen=True)
class Chunk:
    """One tagged chunk of the chunks section.

    Attributes:
        tag (bytes): four ASCII letters; an uppercase first letter marks it critical.
        data (bytes): the chunk's content.
    """

    tag: bytes
    data: bytes

    @property
    def critical(self) -> bool:
        """bool: whether a reader that does not know this tag must reject the file."""
        return len(self.tag) > 0 and 0x41 <= self.tag[0] <= 0x5A


@dataclass(frozen=True)
class SlimFile:
    """A whole ``.slim`` file: header, chunks (in file order) and payload.

    Attributes:
        header (SlimHeader): the fixed header.
        chunks (tuple[Chunk, ...]): the chunks; :func:`read_slim` leaves out unknown
            ancillary ones.
        payload (bytes): the range-coder words, little-endian ``u32``; length a multiple of 4.
    """

    header: SlimHeader
    chunks: tuple[Chunk, ...] = ()
    payload: bytes = b""

    def chunk(self, tag: bytes) -> bytes | None:
        """Return the data of the chunk tagged ``tag``, or ``None`` if there is none.

        Args:
            tag (bytes): a four-letter tag such as ``b"iccp"``.

        Returns:
            bytes | None: the chunk data.
        """
        for c in self.chunks:
            if c.tag == tag:
                return c.data
        return None


# ---------------------------------------------------------------- validation


def _fail(reason: str) -> SlimFormatError:
    return SlimFormatError(reason)


def _field_problem(
    *,
    image_width: int,
    image_height: int,
    color_type: int,
    bit_depth: int,
    slim_width: int,
    latent_height: int,
    latent_width: int,
    pad_mode: int,
    latent_scale: int,
    max_pixels: int,
    major: int,
) -> str | None:
    """The reason the header fields are invalid, or ``None``. Shared by reader and writer."""
    if not (1 <= image_width <= MAX_SIDE and 1 <= image_height <= MAX_SIDE):
        return f"bad image size {image_width}x{image_height} (each side must be 1..{MAX_SIDE})"
    if image_width * image_height > max_pixels:
        return (
            f"image too large ({image_width}x{image_height} = "
            f"{image_width * image_height} pixels, limit {max_pixels})"
        )
    if color_type not in (ColorType.RGB, ColorType.GRAY):
        return f"unsupported color type {color_type}"
    if bit_depth != 8:
        return f"unsupported bit depth {bit_depth} (only 8)"
    if not 1 <= slim_width <= MAX_SLIM_WIDTH:
        return f"bad slim width {slim_width} (must be 1..{MAX_SLIM_WIDTH})"
    expected = (_latent_side(image_width, major), _latent_side(image_height, major))
    if (latent_width, latent_height) != expected:
        return (
            f"latent size {latent_width}x{latent_height} does not match the image "
            f"(expected {expected[0]}x{expected[1]})"
        )
    if pad_mode != 0:
        return f"unsupported pad mode {pad_mode}"
    if (latent_scale and not MIN_LATENT_SCALE <= latent_scale <= 0xFFFF) or latent_scale == SCALE_ONE:
        return f"bad latent scale {latent_scale} (0 or {MIN_LATENT_SCALE}..65535 other than {SCALE_ONE})"
    return None


def _is_valid_tag(tag: bytes) -> bool:
    return len(tag) == 4 and tag.isascii() and tag.isalpha()


def _check_version(data) -> None:
    """Magic and version: what must be checked before anything else is read."""
    if len(data) < 4:
        if MAGIC.startswith(bytes(data)):
            raise _fail("empty file" if len(data) == 0 else "truncated file")
        raise _fail("not a .slim file (bad magic)")
    if bytes(data[:4]) != MAGIC:
        raise _fail("not a .slim file (bad magic)")
    if len(data) < 6:
        raise _fail("truncated file")
    major, minor = data[4], data[5]
    if major not in WRITTEN_MINOR:
        newer = "; it needs a newer slimcodec" if major > VERSION_MAJOR else ""
        raise _fail(
            f"unsupported format version {major}.{minor} "
            f"(this slimcodec reads {', '.join(f'{m}.x' for m in WRITTEN_MINOR)}{newer})"
        )


def _parse_layout(data) -> tuple:
    """Check magic, version and header size; return the raw header fields.

    This is all that must hold before the file size and the CRC can be checked.
    """
    _check_version(data)
    if len(data) < HEADER_SIZE:
        raise _fail("truncated file")
    raw = _HEADER.unpack_from(data, 0)
    header_size = raw[3]
    if header_size < HEADER_SIZE:
        raise _fail(f"bad header size {header_size} (must be at least {HEADER_SIZE})")
    return raw


def _check_fields(raw: tuple, max_pixels: int) -> SlimHeader:
    """Check the header fields that :func:`_parse_layout` left; build the header."""
    (
        _magic,
        major,
        minor,
        _header_size,
        image_width,
        image_height,
        color_type,
        bit_depth,
        slim_width,
        weights_id,
        latent_height,
        latent_width,
        pad_mode,
        reserved,
        latent_scale,
        flags,
        _chunks_size,
        payload_size,
    ) = raw
    if reserved != 0 or ((major, minor) == (1, 0) and latent_scale != 0):
        raise _fail("non-zero reserved bytes")
    problem = _field_problem(
        image_width=image_width,
        image_height=image_height,
        color_type=color_type,
        bit_depth=bit_depth,
        slim_width=slim_width,
        latent_height=latent_height,
        latent_width=latent_width,
        pad_mode=pad_mode,
        latent_scale=latent_scale,
        max_pixels=max_pixels,
        major=major,
    )
    if problem:
        raise _fail(problem)
    tiled = _tiled(major, minor)
    if flags != (FLAG_TILED if tiled else 0):
        raise _fail(f"bad flags 0x{flags:08x} (format {major}.{minor} sets exactly 0x{FLAG_TILED:08x})" if tiled
                    else f"non-zero flags 0x{flags:08x}")
    if payload_size % 4:
        raise _fail(f"payload size {payload_size} is not a multiple of 4")
    return SlimHeader(
        image_width=image_width,
        image_height=image_height,
        color_type=ColorType(color_type),
        slim_width=slim_width,
        weights_id=bytes(weights_id),
        latent_height=latent_height,
        latent_width=latent_width,
        bit_depth=bit_depth,
        pad_mode=pad_mode,
        latent_scale=latent_scale,
        version_major=major,
        version_minor=minor,
    )


def _parse_chunks(section, known_chunks: frozenset) -> tuple[Chunk, ...]:
    """Split the chunks section; it must be consumed exactly."""
    chunks = []
    seen = set()
    pos, end = 0, len(section)
    while pos < end:
        if end - pos < _CHUNK_HEAD.size:
            raise _fail("malformed chunk (header overruns the chunks section)")
        tag, length = _CHUNK_HEAD.unpack_from(section, pos)
        if not _is_valid_tag(tag):
            raise _fail(f"malformed chunk (bad tag {tag!r})")
        name = tag.decode("ascii")
        pos += _CHUNK_HEAD.size
        if length > end - pos:
            raise _fail(f"malformed chunk '{name}' (length overruns the chunks section)")
        if tag in seen:
            raise _fail(f"duplicate chunk '{name}'")
        seen.add(tag)
        if tag in known_chunks:
            chunks.append(Chunk(tag, bytes(section[pos : pos + length])))
        elif Chunk(tag, b"").critical:
            raise _fail(f"unknown critical chunk '{name}' (it needs a newer slimcodec)")
        pos += length
    return tuple(chunks)


# ---------------------------------------------------------------- public API


def read_slim_stream(f: BinaryIO, *, max_pixels: int = MAX_PIXELS) -> bytes:
    """Read one ``.slim`` file's bytes from a stream and check its container.

    Only the 48 bytes of the fixed header are read before the sizes it declares are
    compared with the bytes really there: a seekable stream's remaining size is
    measured first, any other stream (a pipe, ``/dev/zero``) is read in pieces of at
    most :data:`READ_PIECE` bytes, so nothing the header declares is allocated before
    it has arrived, and no more than the declared size (plus one byte, to see trailing
    data) is ever read. The checks and their reasons are those of :func:`read_slim`, in
    its order (size, then checksum, then header fields), so a file gets one verdict
    whichever reader meets it. The bytes still go to :func:`read_slim` for the chunks.

    Raises:
        SlimFormatError: the file is invalid, or the stream holds more than it gives.

    Example:
        >>> import io
        >>> data = write_slim(SlimFile(SlimHeader.for_image(8, 8, ColorType.RGB, 4, bytes(8)), (), b""))
        >>> assert read_slim_stream(io.BytesIO(data)) == data
    """
    head = _read_bounded(f, HEADER_SIZE)
    raw = _parse_layout(memoryview(head).cast("B"))
    total = raw[3] + raw[16] + raw[17] + _CRC.size
    remaining = _remaining_size(f)
    if remaining is not None:  # a file: its size settles it before anything is read
        size = len(head) + remaining
        if size < total:
            raise _fail("truncated file")
        if size > total:
            raise _fail(f"trailing data ({size - total} extra bytes)")
    data = head + _read_bounded(f, total - len(head) + 1)
    if len(data) < total:
        raise _fail("truncated file")
    if len(data) > total:
        raise _fail(f"trailing data (more than the {total} bytes its header gives)")
    view = memoryview(data).cast("B")
    _check_checksum(view, total)
    _check_fields(raw, max_pixels)
    return data


READ_PIECE = 1 << 20  # bytes read at a time from a stream whose size is unknown


def _read_bounded(f: BinaryIO, num_bytes: int) -> bytes:
    """Up to ``num_bytes`` from ``f``, read in pieces of at most :data:`READ_PIECE`.

    Memory then follows the bytes that arrive, not the number asked for (a buffered
    ``read(n)`` reserves ``n`` bytes first).
    """
    parts = []
    while num_bytes > 0:
        piece = f.read(min(num_bytes, READ_PIECE))
        if not piece:
            break
        parts.append(piece)
        num_bytes -= len(piece)
    return parts[0] if len(parts) == 1 else b"".join(parts)


def _remaining_size(f: BinaryIO) -> int | None:
    """Bytes left in ``f`` from its position, or ``None`` when it has no size (a pipe)."""
    try:
        if not f.seekable():
            return None
        pos = f.tell()
        end = f.seek(0, 2)
        f.seek(pos)
    except (AttributeError, OSError, ValueError):
        return None
    return max(end - pos, 0)


def _check_checksum(view, total: int) -> None:
    """Compare the stored CRC-32 of a file of ``total`` bytes (its size already checked)."""
    (stored_crc,) = _CRC.unpack_from(view, total - _CRC.size)
    if zlib.crc32(view[: total - _CRC.size]) != stored_crc:
        raise _fail("checksum mismatch")


def read_header(data: bytes, *, max_pixels: int = MAX_PIXELS) -> SlimHeader:
    """Parse and check only the fixed header (for ``slim info``).

    Unlike :func:`read_slim`, this needs only the first ``HEADER_SIZE`` bytes and
    checks neither the file size, the chunks nor the checksum. Every header field
    is still checked, so whatever it returns is a header :func:`read_slim` accepts.

    Args:
        data (bytes): the file, or at least its first ``HEADER_SIZE`` bytes.
        max_pixels (int): largest accepted ``image_width * image_height``.

    Returns:
        SlimHeader: the header.

    Raises:
        SlimFormatError: the header is not a valid ``.slim`` 1.x header.

    Example:
        >>> h = SlimHeader.for_image(640, 480, ColorType.GRAY, 96, b"\\x01" * 8)
        >>> data = write_slim(SlimFile(h, (), bytes(8)))
        >>> assert read_header(data[:HEADER_SIZE]) == h
    """
    view = memoryview(data).cast("B")
    return _check_fields(_parse_layout(view), max_pixels)


def read_slim(
    data: bytes,
    *,
    known_chunks: frozenset = KNOWN_CHUNKS,
    max_pixels: int = MAX_PIXELS,
) -> SlimFile:
    """Parse and check a whole ``.slim`` file.

    Checks run in this order, before anything is copied out of ``data``: magic,
    major version, header size, total file size, CRC-32, header fields, chunks.
    Unknown ancillary chunks are skipped (left out of the result); an unknown
    critical chunk is an error. The payload itself is not decoded.

    Args:
        data (bytes): the whole file.
        known_chunks (frozenset[bytes]): chunk tags the caller understands.
        max_pixels (int): largest accepted ``image_width * image_height``.

    Returns:
        SlimFile: header, known chunks in file order, payload.

    Raises:
        SlimFormatError: with a one-line reason, for any malformed, corrupt or
            unsupported file.

    Example:
        >>> h = SlimHeader.for_image(20, 12, ColorType.RGB, 192, bytes(range(8)))
        >>> f = SlimFile(h, (Chunk(b"iccp", b"profile"),), bytes(range(8)))
        >>> assert read_slim(write_slim(f)) == f
    """
    view = memoryview(data).cast("B")
    raw = _parse_layout(view)
    header_size, chunks_size, payload_size = raw[3], raw[-2], raw[-1]
    expected_size = header_size + chunks_size + payload_size + _CRC.size
    if len(view) < expected_size:
        raise _fail("truncated file")
    if len(view) > expected_size:
        raise _fail(f"trailing data ({len(view) - expected_size} extra bytes)")
    _check_checksum(view, expected_size)
    header = _check_fields(raw, max_pixels)
    chunks_end = header_size + chunks_size
    chunks = _parse_chunks(view[header_size:chunks_end], known_chunks)
    payload = bytes(view[chunks_end : chunks_end + payload_size])
    return SlimFile(header, chunks, payload)


def write_slim(f: SlimFile, *, known_chunks: frozenset = KNOWN_CHUNKS) -> bytes:
    """Serialize a ``.slim`` 1.1 file.

    The output depends only on ``f`` (no timestamps): chunks are written in the
    order given. The writer refuses anything :func:`read_slim` would reject.

    Args:
        f (SlimFile): what to write; ``f.header`` must be version 1.1.
        known_chunks (frozenset[bytes]): critical chunk tags allowed in the output
            (ancillary ones are always allowed).

    Returns:
        bytes: the file.

    Raises:
        SlimFormatError: ``f`` does not describe a valid file.

    Example:
        >>> h = SlimHeader.for_image(33, 17, ColorType.RGB, 192, b"weights!")
        >>> f = SlimFile(h, (), b"\\x00\\x01\\x02\\x03")
        >>> data = write_slim(f)
        >>> assert len(data) == HEADER_SIZE + 4 + 4 and write_slim(read_slim(data)) == data
    """
    h = f.header
    for field in fields(SlimHeader):
        value = getattr(h, field.name)
        if field.name != "weights_id" and (not isinstance(value, int) or isinstance(value, bool)):
            raise _fail(f"header field {field.name} must be an integer")
    if WRITTEN_MINOR.get(h.version_major) != h.version_minor:
        raise _fail(
            f"cannot write format version {h.version_major}.{h.version_minor} "
            f"(this slimcodec writes {', '.join(f'{a}.{b}' for a, b in WRITTEN_MINOR.items())})"
        )
    if not isinstance(h.weights_id, (bytes, bytearray)) or len(h.weights_id) != 8:
        raise _fail("weights id must be 8 bytes")
    problem = _field_problem(
        image_width=h.image_width,
        image_height=h.image_height,
        color_type=h.color_type,
        bit_depth=h.bit_depth,
        slim_width=h.slim_width,
        latent_height=h.latent_height,
        latent_width=h.latent_width,
        pad_mode=h.pad_mode,
        latent_scale=h.latent_scale,
        max_pixels=MAX_PIXELS,
        major=h.version_major,
    )
    if problem:
        raise _fail(problem)

    parts = []
    seen = set()
    for c in f.chunks:
        tag = bytes(c.tag) if isinstance(c.tag, (bytes, bytearray)) else b""
        if not _is_valid_tag(tag):
            raise _fail(f"malformed chunk (bad tag {c.tag!r})")
        if tag in seen:
            raise _fail(f"duplicate chunk '{tag.decode('ascii')}'")
        seen.add(tag)
        if c.critical and tag not in known_chunks:
            raise _fail(f"unknown critical chunk '{tag.decode('ascii')}'")
        data = bytes(c.data)
        if len(data) > _U32_MAX:
            raise _fail(f"chunk '{tag.decode('ascii')}' too large")
        parts.append(_CHUNK_HEAD.pack(tag, len(data)) + data)
    chunks = b"".join(parts)
    payload = bytes(f.payload)
    if len(chunks) > _U32_MAX:
        raise _fail("chunks section too large")
    if len(payload) > _U32_MAX - 3:
        raise _fail("payload too large")
    if len(payload) % 4:
        raise _fail(f"payload size {len(payload)} is not a multiple of 4")

    head = _HEADER.pack(
        MAGIC,
        h.version_major,
        h.version_minor,
        HEADER_SIZE,
        h.image_width,
        h.image_height,
        int(h.color_type),
        h.bit_depth,
        h.slim_width,
        bytes(h.weights_id),
        h.latent_height,
        h.latent_width,
        h.pad_mode,
        0,
        h.latent_scale,
        FLAG_TILED if h.tiled else 0,
        len(chunks),
        len(payload),
    )
    body = head + chunks + payload
    return body + _CRC.pack(zlib.crc32(body))


# ---------------------------------------------------------------- ALPH chunk


def make_alpha_chunk(alpha: bytes, image_width: int, image_height: int) -> Chunk:
    """Build the ``ALPH`` chunk: the alpha plane (row-major ``u8``), zlib-compressed.

    Args:
        alpha (bytes): ``image_width * image_height`` alpha values, row by row.
        image_width (int): image width in pixels.
        image_height (int): image height in pixels.

    Returns:
        Chunk: tagged ``b"ALPH"``.

    Raises:
        ValueError: ``alpha`` does not hold one byte per pixel.

    Example:
        >>> h = SlimHeader.for_image(3, 2, ColorType.RGB, 8, bytes(8))
        >>> alpha = bytes([0, 64, 128, 192, 255, 255])
        >>> f = read_slim(write_slim(SlimFile(h, (make_alpha_chunk(alpha, 3, 2),), b"")))
        >>> assert read_alpha(f) == alpha
    """
    alpha = bytes(alpha)
    if len(alpha) != image_width * image_height:
        raise ValueError(
            f"alpha plane has {len(alpha)} bytes, expected {image_width * image_height}"
        )
    return Chunk(b"ALPH", zlib.compress(alpha, 9))


def read_alpha(f: SlimFile) -> bytes | None:
    """Decompress the ``ALPH`` chunk of ``f``, never inflating past the image size.

    Args:
        f (SlimFile): a file returned by :func:`read_slim`.

    Returns:
        bytes | None: ``image_width * image_height`` alpha values, row by row, or
        ``None`` when the file has no alpha plane.

    Raises:
        SlimFormatError: the chunk is not a zlib stream of exactly one byte per pixel.

    Example:
        >>> h = SlimHeader.for_image(2, 1, ColorType.GRAY, 8, bytes(8))
        >>> assert read_alpha(SlimFile(h, (), b"")) is None
    """
    data = f.chunk(b"ALPH")
    if data is None:
        return None
    expected = f.header.image_width * f.header.image_height
    inflater = zlib.decompressobj()
    try:
        alpha = inflater.decompress(data, expected + 1)
    except zlib.error:
        raise _fail("corrupt alpha chunk") from None
    if len(alpha) != expected or not inflater.eof:
        raise _fail("corrupt alpha chunk (wrong size)")
    if inflater.unused_data or inflater.unconsumed_tail:
        raise _fail("corrupt alpha chunk (trailing data)")
    return alpha
