"""Tests of the .slim container (formats/slimfile.py): pure Python, no torch."""

from __future__ import annotations

import dataclasses
import doctest
import random
import re
import struct
import zlib
from pathlib import Path

import pytest

from slimcodec.errors import SlimFormatError
from slimcodec.formats import slimfile
from slimcodec.formats.slimfile import (
    FLAG_TILED,
    HEADER_SIZE,
    KNOWN_CHUNKS,
    MAGIC,
    MAX_PIXELS,
    Chunk,
    ColorType,
    SlimFile,
    SlimHeader,
    make_alpha_chunk,
    read_alpha,
    read_header,
    read_slim,
    write_slim,
)

SPEC = Path(__file__).resolve().parents[1] / "formats" / "SPEC.md"
WEIGHTS_ID = bytes.fromhex("0123456789abcdef")

# Byte offset and struct format of each fixed-header field (SPEC.md, "Header").
FIELDS = {
    "version_major": (4, "<B"),
    "version_minor": (5, "<B"),
    "header_size": (6, "<H"),
    "image_width": (8, "<I"),
    "image_height": (12, "<I"),
    "color_type": (16, "<B"),
    "bit_depth": (17, "<B"),
    "slim_width": (18, "<H"),
    "latent_height": (28, "<H"),
    "latent_width": (30, "<H"),
    "pad_mode": (32, "<B"),
    "latent_scale": (34, "<H"),
    "flags": (36, "<I"),
    "chunks_size": (40, "<I"),
    "payload_size": (44, "<I"),
}


def make_header(**changes) -> SlimHeader:
    header = SlimHeader.for_image(37, 20, ColorType.RGB, 192, WEIGHTS_ID)
    return dataclasses.replace(header, **changes)


def make_file(chunks=(), payload=bytes(range(16)), **header_changes) -> SlimFile:
    return SlimFile(make_header(**header_changes), tuple(chunks), payload)


def sample_bytes() -> bytes:
    chunks = (Chunk(b"iccp", b"fake icc profile"), Chunk(b"exif", b"Exif\x00\x00MM"))
    return write_slim(make_file(chunks))


def recrc(data: bytes) -> bytes:
    """Replace the last four bytes by the CRC-32 of everything before them."""
    body = data[:-4]
    return body + struct.pack("<I", zlib.crc32(body))


def patch(data: bytes, name: str, value: int, *, fix_crc: bool = True) -> bytes:
    offset, fmt = FIELDS[name]
    out = bytearray(data)
    struct.pack_into(fmt, out, offset, value)
    return recrc(bytes(out)) if fix_crc else bytes(out)


def get(data: bytes, name: str) -> int:
    offset, fmt = FIELDS[name]
    return struct.unpack_from(fmt, data, offset)[0]


def build(header: bytes, chunks: bytes, payload: bytes) -> bytes:
    """Assemble a file from raw sections, fixing the size fields and the CRC."""
    head = bytearray(header)
    struct.pack_into("<I", head, 40, len(chunks))
    struct.pack_into("<I", head, 44, len(payload))
    body = bytes(head) + chunks + payload
    return body + struct.pack("<I", zlib.crc32(body))


def raw_chunk(tag: bytes, data: bytes) -> bytes:
    return tag + struct.pack("<I", len(data)) + data


def with_chunks(chunk_bytes: bytes, payload: bytes = bytes(8)) -> bytes:
    return build(write_slim(make_file())[:HEADER_SIZE], chunk_bytes, payload)


def reason(data: bytes, **kwargs) -> str:
    with pytest.raises(SlimFormatError) as info:
        read_slim(data, **kwargs)
    return str(info.value)


# ---------------------------------------------------------------- round trip


class TestRoundTrip:
    def test_round_trip_preserves_header_chunks_and_payload(self):
        alpha = bytes(i % 256 for i in range(37 * 20))
        chunks = (
            make_alpha_chunk(alpha, 37, 20),
            Chunk(b"iccp", b"icc"),
            Chunk(b"exif", b"Exif\x00\x00II*\x00"),
        )
        f = make_file(chunks, payload=bytes(range(40)))
        g = read_slim(write_slim(f))
        assert g == f
        assert g.chunk(b"iccp") == b"icc"
        assert read_alpha(g) == alpha

    def test_round_trip_of_grayscale_without_chunks_or_payload(self):
        f = make_file((), b"", color_type=ColorType.GRAY)
        g = read_slim(write_slim(f))
        assert g == f
        assert g.header.color_type is ColorType.GRAY

    def test_round_trip_at_the_size_limits(self):
        header = SlimHeader.for_image(65535, 1525, ColorType.RGB, 4096, WEIGHTS_ID)
        assert 65535 * 1525 <= MAX_PIXELS
        f = SlimFile(header, (), bytes(4))
        assert read_slim(write_slim(f)) == f

    def test_write_is_deterministic(self):
        a = write_slim(make_file((Chunk(b"iccp", b"x"),)))
        b = write_slim(make_file((Chunk(b"iccp", b"x"),)))
        assert a == b
        assert write_slim(read_slim(a)) == a

    def test_write_keeps_chunk_order(self):
        chunks = (Chunk(b"exif", b"e"), Chunk(b"iccp", b"i"))
        assert read_slim(write_slim(make_file(chunks))).chunks == chunks

    def test_header_fields_sit_at_their_spec_offsets(self):
        data = write_slim(make_file((Chunk(b"iccp", b"abc"),), payload=bytes(8)))
        assert data[:4] == b"SLIM"
        assert get(data, "version_major") == 1 and get(data, "version_minor") == 1
        assert get(data, "header_size") == 48
        assert get(data, "image_width") == 37 and get(data, "image_height") == 20
        assert get(data, "color_type") == 0 and get(data, "bit_depth") == 8
        assert get(data, "slim_width") == 192
        assert data[20:28] == WEIGHTS_ID
        assert get(data, "latent_height") == 2 and get(data, "latent_width") == 3
        assert data[32:36] == bytes(4) and get(data, "flags") == 0
        assert get(data, "chunks_size") == 8 + 3 and get(data, "payload_size") == 8
        scaled = write_slim(make_file(latent_scale=3072))
        assert get(scaled, "latent_scale") == 3072 and read_slim(scaled).header.latent_scale == 3072
        assert data[48:59] == b"iccp\x03\x00\x00\x00abc"
        assert len(data) == 48 + 11 + 8 + 4
        assert data[-4:] == struct.pack("<I", zlib.crc32(data[:-4]))

    def test_for_image_rounds_latent_size_up(self):
        for side, latent in [(1, 1), (16, 1), (17, 2), (32, 2), (65535, 4096)]:
            h = SlimHeader.for_image(side, side, ColorType.RGB, 8, WEIGHTS_ID)
            assert (h.latent_width, h.latent_height) == (latent, latent)

    def test_chunk_is_critical_when_its_tag_starts_uppercase(self):
        assert Chunk(b"ALPH", b"").critical
        assert Chunk(b"Zzzz", b"").critical
        assert not Chunk(b"iccp", b"").critical
        assert not Chunk(b"aLPH", b"").critical

    def test_chunk_lookup_returns_none_when_absent(self):
        assert make_file().chunk(b"iccp") is None

    def test_docstring_examples_pass(self):
        result = doctest.testmod(slimfile)
        assert result.attempted > 0 and result.failed == 0


# ---------------------------------------------------------------- rejection


class TestReadRejects:
    def test_read_rejects_empty_file(self):
        assert reason(b"") == "empty file"

    def test_read_rejects_too_short_file(self):
        assert reason(b"SL") == "truncated file"
        assert reason(b"SLIM\x01") == "truncated file"
        assert reason(sample_bytes()[:47]) == "truncated file"

    def test_read_rejects_bad_magic(self):
        assert reason(b"\x89PNG\r\n\x1a\n" + bytes(60)) == "not a .slim file (bad magic)"
        assert reason(b"slim" + sample_bytes()[4:]) == "not a .slim file (bad magic)"
        assert reason(b"X") == "not a .slim file (bad magic)"

    def test_read_rejects_unknown_major_version(self):
        data = patch(sample_bytes(), "version_major", 4)
        msg = reason(data)
        assert msg.startswith("unsupported format version 4.1 (this slimcodec reads 1.x, 2.x, 3.x")
        assert "newer slimcodec" in msg

    def test_read_rejects_major_version_before_checking_anything_else(self):
        # a 4.0 file may have a different layout: no other field may be judged
        data = b"SLIM\x04\x05" + bytes(3)
        assert reason(data).startswith("unsupported format version 4.5")

    def test_a_format_2_header_has_its_latents_at_a_quarter_of_an_image_padded_to_64(self):
        h = SlimHeader.for_image(100, 33, ColorType.RGB, 8, b"weights!", version_major=2)
        f = read_slim(write_slim(SlimFile(h, (), b"")))
        assert f.header == h and (h.version_major, h.version_minor) == (2, 0)
        assert (h.latent_width, h.latent_height) == (8, 4)
        with pytest.raises(SlimFormatError, match="latent size 7x3 does not match the image"):
            write_slim(SlimFile(dataclasses.replace(h, latent_width=7, latent_height=3), (), b""))

    def test_a_format_3_1_header_sets_the_tiled_flag_and_no_other_version_may(self):
        h = SlimHeader.for_image(100, 33, ColorType.RGB, 8, b"weights!", version_major=3)
        data = write_slim(SlimFile(h, (), b""))
        assert (h.version_major, h.version_minor, h.tiled) == (3, 1, True) and get(data, "flags") == FLAG_TILED
        assert read_slim(data).header == h
        # a 3.0 reader refuses any flag: it cannot misread a tiled payload as one stream
        assert reason(patch(data, "version_minor", 0)) == "non-zero flags 0x00000001"
        assert reason(patch(data, "flags", 0)).startswith("bad flags 0x00000000 (format 3.1 sets exactly 0x00000001")
        assert reason(patch(data, "flags", 3)).startswith("bad flags 0x00000003")
        assert read_slim(patch(patch(data, "version_minor", 0), "flags", 0)).header.tiled is False
        two = write_slim(SlimFile(SlimHeader.for_image(100, 33, ColorType.RGB, 8, b"weights!", version_major=2), (),
                                  b""))
        assert reason(patch(two, "flags", FLAG_TILED)) == "non-zero flags 0x00000001"

    def test_read_rejects_major_version_zero(self):
        assert reason(patch(sample_bytes(), "version_major", 0)).startswith(
            "unsupported format version 0.1"
        )

    def test_read_rejects_header_size_below_48(self):
        data = patch(sample_bytes(), "header_size", 40)
        assert reason(data) == "bad header size 40 (must be at least 48)"

    def test_read_rejects_header_size_beyond_file(self):
        assert reason(patch(sample_bytes(), "header_size", 0xFFFF)) == "truncated file"

    @pytest.mark.parametrize(
        "name, value, expected",
        [
            ("image_width", 0, "bad image size 0x20 (each side must be 1..65535)"),
            ("image_height", 0, "bad image size 37x0 (each side must be 1..65535)"),
            ("image_width", 65536, "bad image size 65536x20 (each side must be 1..65535)"),
            ("image_height", 2**32 - 1, "bad image size 37x4294967295"),
            ("color_type", 2, "unsupported color type 2"),
            ("bit_depth", 16, "unsupported bit depth 16 (only 8)"),
            ("slim_width", 0, "bad slim width 0 (must be 1..4096)"),
            ("slim_width", 4097, "bad slim width 4097 (must be 1..4096)"),
            ("latent_height", 1, "latent size 3x1 does not match the image (expected 3x2)"),
            ("latent_width", 4, "latent size 4x2 does not match the image (expected 3x2)"),
            ("pad_mode", 1, "unsupported pad mode 1"),
            ("flags", 1, "non-zero flags 0x00000001"),
        ],
    )
    def test_read_rejects_invalid_header_field(self, name, value, expected):
        assert reason(patch(sample_bytes(), name, value)).startswith(expected)

    def test_read_rejects_too_many_pixels(self):
        data = sample_bytes()
        for name, value in [("image_width", 65535), ("image_height", 65535)]:
            data = patch(data, name, value)
        data = patch(patch(data, "latent_width", 4096), "latent_height", 4096)
        assert reason(data) == (
            "image too large (65535x65535 = 4294836225 pixels, limit 100000000)"
        )

    def test_read_honours_max_pixels_argument(self):
        data = sample_bytes()  # 37x20 = 740 pixels
        assert read_slim(data, max_pixels=740).header.image_width == 37
        assert reason(data, max_pixels=739).startswith("image too large")

    def test_read_rejects_non_zero_reserved_byte(self):
        data = bytearray(sample_bytes())
        data[33] = 1
        assert reason(recrc(bytes(data))) == "non-zero reserved bytes"

    def test_read_rejects_a_latent_scale_in_a_1_0_file(self):
        data = patch(patch(sample_bytes(), "version_minor", 0), "latent_scale", 2048)
        assert reason(data) == "non-zero reserved bytes"
        assert read_slim(patch(sample_bytes(), "version_minor", 0)).header.latent_scale == 0

    @pytest.mark.parametrize("value", [1, 255, 4096])
    def test_read_rejects_a_bad_latent_scale(self, value):
        assert reason(patch(sample_bytes(), "latent_scale", value)) == (
            f"bad latent scale {value} (0 or 256..65535 other than 4096)"
        )

    @pytest.mark.parametrize("value", [256, 4095, 4097, 65535])
    def test_read_accepts_latent_scales_in_range(self, value):
        assert read_slim(patch(sample_bytes(), "latent_scale", value)).header.latent_scale == value

    def test_read_rejects_payload_size_not_multiple_of_4(self):
        data = build(sample_bytes()[:HEADER_SIZE], b"", bytes(6))
        assert reason(data) == "payload size 6 is not a multiple of 4"

    def test_read_reports_truncated_file_when_shorter(self):
        data = sample_bytes()
        for cut in (1, 4, 5, len(data) - HEADER_SIZE):
            assert reason(data[:-cut]) == "truncated file"

    def test_read_reports_trailing_data_when_longer(self):
        assert reason(sample_bytes() + b"\x00") == "trailing data (1 extra bytes)"
        assert reason(recrc(sample_bytes() + bytes(4))).startswith("trailing data")

    def test_read_reports_checksum_mismatch_for_a_flipped_bit(self):
        data = sample_bytes()
        for index in (len(data) - 5, len(data) - 1, HEADER_SIZE + 2, 20):
            flipped = bytearray(data)
            flipped[index] ^= 0x10
            assert reason(bytes(flipped)) == "checksum mismatch"

    def test_read_checks_crc_before_header_fields(self):
        # a corrupt width is reported as corruption, not as a bad size
        data = patch(sample_bytes(), "image_width", 0, fix_crc=False)
        assert reason(data) == "checksum mismatch"

    def test_read_rejects_chunk_overrunning_its_section(self):
        data = with_chunks(b"iccp" + struct.pack("<I", 100) + b"short")
        assert reason(data) == "malformed chunk 'iccp' (length overruns the chunks section)"

    def test_read_rejects_chunk_header_overrunning_its_section(self):
        data = with_chunks(raw_chunk(b"iccp", b"ok") + b"exif\x00")
        assert reason(data) == "malformed chunk (header overruns the chunks section)"

    @pytest.mark.parametrize("tag", [b"icc1", b"ic p", b"\x00\x00\x00\x00", b"\xe9xif"])
    def test_read_rejects_chunk_tag_that_is_not_four_letters(self, tag):
        assert reason(with_chunks(raw_chunk(tag, b"x"))).startswith("malformed chunk (bad tag")

    def test_read_rejects_duplicate_chunk(self):
        data = with_chunks(raw_chunk(b"iccp", b"a") + raw_chunk(b"iccp", b"b"))
        assert reason(data) == "duplicate chunk 'iccp'"

    def test_read_rejects_duplicate_unknown_ancillary_chunk(self):
        data = with_chunks(raw_chunk(b"zzzz", b"a") + raw_chunk(b"zzzz", b"b"))
        assert reason(data) == "duplicate chunk 'zzzz'"

    def test_read_rejects_unknown_critical_chunk(self):
        data = with_chunks(raw_chunk(b"iccp", b"a") + raw_chunk(b"ZZZZ", b"b"))
        msg = reason(data)
        assert msg.startswith("unknown critical chunk 'ZZZZ'")
        assert "newer slimcodec" in msg

    def test_read_rejects_alpha_chunk_when_caller_does_not_know_it(self):
        data = with_chunks(raw_chunk(b"ALPH", zlib.compress(bytes(740))))
        assert read_slim(data).chunk(b"ALPH") is not None
        assert reason(data, known_chunks=frozenset({b"iccp"})).startswith(
            "unknown critical chunk 'ALPH'"
        )

    def test_every_reason_is_one_short_line(self):
        data = patch(sample_bytes(), "version_major", 9)
        for bad in (b"", b"junk", data, sample_bytes() + b"x"):
            msg = reason(bad)
            assert "\n" not in msg and len(msg) < 100 and msg == msg.lower()


class TestReadAccepts:
    def test_read_skips_unknown_ancillary_chunk(self):
        data = with_chunks(
            raw_chunk(b"iccp", b"a") + raw_chunk(b"zzzz", b"future") + raw_chunk(b"exif", b"e")
        )
        f = read_slim(data)
        assert f.chunks == (Chunk(b"iccp", b"a"), Chunk(b"exif", b"e"))
        assert f.payload == bytes(8)

    def test_read_accepts_critical_chunk_the_caller_knows(self):
        data = with_chunks(raw_chunk(b"ZZZZ", b"new"))
        f = read_slim(data, known_chunks=KNOWN_CHUNKS | {b"ZZZZ"})
        assert f.chunk(b"ZZZZ") == b"new"

    def test_read_accepts_empty_chunk(self):
        assert read_slim(with_chunks(raw_chunk(b"iccp", b""))).chunk(b"iccp") == b""

    def test_read_accepts_higher_minor_version_skipping_extra_header_bytes(self):
        original = read_slim(sample_bytes())
        head = bytearray(sample_bytes()[:HEADER_SIZE])
        struct.pack_into("<BBH", head, 4, 1, 3, HEADER_SIZE + 12)
        chunks = raw_chunk(b"iccp", b"fake icc profile") + raw_chunk(b"exif", b"Exif\x00\x00MM")
        data = build(bytes(head) + b"future-field", chunks, original.payload)
        f = read_slim(data)
        assert f.header == dataclasses.replace(original.header, version_minor=3)
        assert f.chunks == original.chunks and f.payload == original.payload
        assert read_header(data) == f.header

    def test_read_accepts_larger_header_with_same_minor(self):
        head = bytearray(sample_bytes()[:HEADER_SIZE])
        struct.pack_into("<H", head, 6, HEADER_SIZE + 4)
        assert read_slim(build(bytes(head) + b"\xff" * 4, b"", b"")).payload == b""

    def test_read_accepts_bytearray_and_memoryview(self):
        data = sample_bytes()
        assert read_slim(bytearray(data)) == read_slim(memoryview(data)) == read_slim(data)


# ---------------------------------------------------------------- read_header


class TestReadHeader:
    def test_read_header_needs_only_the_fixed_header(self):
        data = sample_bytes()
        assert read_header(data[:HEADER_SIZE]) == read_slim(data).header

    def test_read_header_skips_size_and_checksum_checks(self):
        assert read_header(sample_bytes()[:-1]) == make_header()

    def test_read_header_rejects_what_it_cannot_parse(self):
        with pytest.raises(SlimFormatError, match=r"^truncated file$"):
            read_header(sample_bytes()[:40])
        with pytest.raises(SlimFormatError, match="bad magic"):
            read_header(b"GIF89a" + bytes(50))
        with pytest.raises(SlimFormatError, match="unsupported format version 4.1"):
            read_header(patch(sample_bytes(), "version_minor", 1)[:4] + b"\x04\x01")
        with pytest.raises(SlimFormatError, match="unsupported color type 7"):
            read_header(patch(sample_bytes(), "color_type", 7))
        with pytest.raises(SlimFormatError, match="bad header size 0"):
            read_header(patch(sample_bytes(), "header_size", 0))


# ---------------------------------------------------------------- writer


class TestWriteRejects:
    @pytest.mark.parametrize(
        "changes, expected",
        [
            ({"image_width": 0}, "bad image size 0x20"),
            ({"image_width": 70000}, "bad image size 70000x20"),
            ({"image_width": 20000, "image_height": 20000}, "image too large"),
            ({"latent_width": 4}, "latent size 4x2 does not match the image"),
            ({"color_type": 3}, "unsupported color type 3"),
            ({"bit_depth": 16}, "unsupported bit depth 16"),
            ({"pad_mode": 2}, "unsupported pad mode 2"),
            ({"slim_width": 0}, "bad slim width 0"),
            ({"weights_id": b"short"}, "weights id must be 8 bytes"),
            ({"version_minor": 0}, "cannot write format version 1.0 (this slimcodec writes 1.1, 2.0, 3.1)"),
            ({"version_major": 2}, "cannot write format version 2.1"),
            ({"latent_scale": 4096}, "bad latent scale 4096"),
            ({"latent_scale": 100}, "bad latent scale 100"),
            ({"image_width": 37.0}, "header field image_width must be an integer"),
        ],
    )
    def test_write_rejects_invalid_header(self, changes, expected):
        with pytest.raises(SlimFormatError, match="^" + re.escape(expected)):
            write_slim(make_file(**changes))

    def test_write_rejects_payload_size_not_multiple_of_4(self):
        with pytest.raises(SlimFormatError, match="payload size 5 is not a multiple of 4"):
            write_slim(make_file(payload=bytes(5)))

    def test_write_rejects_duplicate_chunk(self):
        with pytest.raises(SlimFormatError, match="duplicate chunk 'exif'"):
            write_slim(make_file((Chunk(b"exif", b"a"), Chunk(b"exif", b"b"))))

    @pytest.mark.parametrize("tag", [b"icc", b"iccpp", b"icc1", "iccp"])
    def test_write_rejects_bad_chunk_tag(self, tag):
        with pytest.raises(SlimFormatError, match="bad tag"):
            write_slim(make_file((Chunk(tag, b"a"),)))

    def test_write_rejects_unknown_critical_chunk_unless_allowed(self):
        f = make_file((Chunk(b"ZZZZ", b"a"),))
        with pytest.raises(SlimFormatError, match="unknown critical chunk 'ZZZZ'"):
            write_slim(f)
        data = write_slim(f, known_chunks=frozenset({b"ZZZZ"}))
        with pytest.raises(SlimFormatError, match="unknown critical chunk 'ZZZZ'"):
            read_slim(data)

    def test_write_accepts_unknown_ancillary_chunk_that_readers_skip(self):
        data = write_slim(make_file((Chunk(b"zzzz", b"a"), Chunk(b"iccp", b"b"))))
        assert read_slim(data).chunks == (Chunk(b"iccp", b"b"),)


# ---------------------------------------------------------------- ALPH


class TestAlpha:
    def test_alpha_round_trips(self):
        alpha = bytes(range(256)) * 3
        f = read_slim(write_slim(make_file((make_alpha_chunk(alpha[:740], 37, 20),))))
        assert read_alpha(f) == alpha[:740]

    def test_make_alpha_chunk_rejects_wrong_size(self):
        with pytest.raises(ValueError):
            make_alpha_chunk(bytes(10), 37, 20)

    @pytest.mark.parametrize(
        "data, expected",
        [
            (zlib.compress(bytes(739)), "corrupt alpha chunk (wrong size)"),
            (zlib.compress(bytes(10**7)), "corrupt alpha chunk (wrong size)"),  # a zip bomb
            (zlib.compress(bytes(740)) + b"x", "corrupt alpha chunk (trailing data)"),
            (zlib.compress(bytes(740))[:-6], "corrupt alpha chunk (wrong size)"),
            (b"not zlib at all", "corrupt alpha chunk"),
        ],
    )
    def test_read_alpha_rejects_bad_plane(self, data, expected):
        f = make_file((Chunk(b"ALPH", data),))
        with pytest.raises(SlimFormatError, match="^" + re.escape(expected)):
            read_alpha(f)


# ---------------------------------------------------------------- spec


def test_spec_example_hex_dump_is_what_the_writer_produces():
    text = SPEC.read_text(encoding="utf-8")
    dump = re.search(r"```text\n(00000000 .*?)```", text, re.S).group(1)
    data = b"".join(
        bytes.fromhex(line[10:58]) for line in dump.splitlines() if line.strip()
    )
    f = read_slim(data)
    assert write_slim(f) == data
    assert f.header.image_width == 20 and f.header.image_height == 12
    assert f.chunk(b"iccp") == b"icc!"


# ---------------------------------------------------------------- fuzz


def _mutate(rng: random.Random, data: bytes) -> bytes:
    """One random corruption of ``data``; about half are re-CRC'd to get past the checksum."""
    kind = rng.randrange(10)
    if len(data) < HEADER_SIZE + 4:  # too short for the structured mutations
        kind = rng.choice([0, 2, 3]) if data else 3
    out = bytearray(data)
    if kind == 0:  # bit flips, CRC left stale
        for _ in range(rng.randint(1, 4)):
            out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
        return bytes(out)
    if kind == 1:  # truncation
        return bytes(out[: rng.randrange(len(out))])
    if kind == 2:  # overwrite a slice with random bytes
        i = rng.randrange(len(out))
        n = rng.randint(1, 16)
        out[i : i + n] = rng.randbytes(n)
        return bytes(out)
    if kind == 3:  # wholly random input, sometimes with the right magic and version
        prefix = rng.choice([b"", MAGIC, MAGIC + b"\x01\x00", MAGIC + b"\x01\x00\x30\x00"])
        return prefix + rng.randbytes(rng.randrange(120))
    if kind == 4:  # bit flips in header and chunks, re-CRC'd
        limit = max(HEADER_SIZE, len(out) - 4)
        for _ in range(rng.randint(1, 3)):
            out[rng.randrange(limit)] ^= 1 << rng.randrange(8)
        return recrc(bytes(out))
    if kind == 5:  # one header field set to an interesting value, re-CRC'd
        name = rng.choice(list(FIELDS))
        bits = {"<B": 8, "<H": 16, "<I": 32}[FIELDS[name][1]]
        value = rng.choice([0, 1, 2, 3, 4, 7, 8, 15, 16, 17, 47, 48, 49, 2 ** (bits - 1),
                            2**bits - 1, rng.randrange(2**bits), get(data, name) + 1,
                            max(0, get(data, name) - 1)])
        return patch(data, name, value % 2**bits)
    if kind == 6:  # move the chunks/payload boundary, keeping the total size; re-CRC'd
        shift = rng.randint(-12, 12)
        c, p = get(data, "chunks_size") + shift, get(data, "payload_size") - shift
        if c < 0 or p < 0:
            return data
        return patch(patch(data, "chunks_size", c), "payload_size", p)
    if kind == 7:  # random bytes inside the chunks section, re-CRC'd
        start, end = HEADER_SIZE, HEADER_SIZE + get(data, "chunks_size")
        if end > start:
            i = rng.randrange(start, end)
            out[i : i + 4] = rng.randbytes(4)[: max(0, min(4, end - i))]
        return recrc(bytes(out))
    if kind == 8:  # cut or insert bytes in the body, re-CRC'd
        i = rng.randrange(len(out) - 4)
        if rng.random() < 0.5:
            del out[i : i + rng.randint(1, 8)]
        else:
            out[i:i] = rng.randbytes(rng.randint(1, 8))
        return recrc(bytes(out)) if len(out) >= 4 else bytes(out)
    # kind == 9: a stack of several corruptions
    for _ in range(rng.randint(2, 4)):
        out = bytearray(_mutate(rng, bytes(out)) or b"SLIM")
    return bytes(out)


def test_fuzzed_files_raise_only_slim_format_error():
    rng = random.Random(20261125)
    seeds = [
        sample_bytes(),
        write_slim(make_file((make_alpha_chunk(bytes(740), 37, 20),), payload=bytes(4))),
        write_slim(make_file((), b"", color_type=ColorType.GRAY)),
        with_chunks(raw_chunk(b"zzzz", b"skip me") + raw_chunk(b"iccp", b"p")),
    ]
    reasons: dict[str, int] = {}
    accepted = 0
    for _ in range(3000):
        data = _mutate(rng, rng.choice(seeds))
        try:
            f = read_slim(data)
        except SlimFormatError as exc:
            key = re.sub(r"[\d'].*", "", str(exc)).strip()
            reasons[key] = reasons.get(key, 0) + 1
        else:
            accepted += 1
            try:  # what was read either writes back identically or is refused cleanly
                assert read_slim(write_slim(f)) == f
            except SlimFormatError:
                pass
            _alpha_or_error(f)
        try:
            read_header(data)
        except SlimFormatError:
            pass
    # the re-CRC'd mutations must reach the checks behind the checksum
    past_crc = {k for k in reasons if k not in ("checksum mismatch", "truncated file")}
    assert len(past_crc) >= 10, sorted(reasons)
    assert accepted > 0


def _alpha_or_error(f: SlimFile) -> None:
    try:
        read_alpha(f)
    except SlimFormatError:
        pass
