"""CASIA readers and writers on files written here: round trips and every kind of bad record."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from hccr.casia import CasiaFormatError, decode_tag, iter_gnt, iter_pot, write_gnt, write_pot


def _bitmap(seed: int, h: int = 40, w: int = 30) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(h, w), dtype=np.uint8)


def test_gnt_round_trip(tmp_path):
    samples = [("永", _bitmap(0)), ("啊", _bitmap(1, 17, 55)), ("!", _bitmap(2, 5, 5))]
    path = tmp_path / "1001-c.gnt"
    assert write_gnt(path, samples) == 3
    records = list(iter_gnt(path))
    assert [r.char for r in records] == ["永", "啊", "!"]
    for r, (_, bitmap) in zip(records, samples, strict=True):
        np.testing.assert_array_equal(r.bitmap, bitmap)
    assert records[0].offset == 0 and records[1].offset == 10 + 40 * 30


def test_gnt_tag_is_gb_bytes_in_file_order(tmp_path):
    path = tmp_path / "a.gnt"
    write_gnt(path, [("永", _bitmap(0, 2, 2))])
    assert path.read_bytes()[4:6] == "永".encode("gbk")


def test_pot_round_trip(tmp_path):
    strokes = [np.array([[10, 20], [30, 40], [50, 45]]), np.array([[5, 5]])]
    path = tmp_path / "001.pot"
    write_pot(path, [("墨", strokes), ("!", strokes[:1])])
    records = list(iter_pot(path))
    assert [r.char for r in records] == ["墨", "!"]
    for got, want in zip(records[0].strokes, strokes, strict=True):
        np.testing.assert_array_equal(got, want)


def test_pot_tag_layout_matches_casia(tmp_path):
    # verified on real OLHWDB files: bytes ab c4 00 00 are 0xC4AB = 墨; symbols are 21 00 00 00
    path = tmp_path / "x.pot"
    write_pot(path, [("墨", [np.array([[1, 2]])]), ("!", [np.array([[1, 2]])])])
    data = path.read_bytes()
    assert data[2:6] == bytes.fromhex("abc40000")
    second = struct.unpack_from("<H", data)[0]
    assert data[second + 2 : second + 6] == bytes.fromhex("21000000")


def test_decode_tag_unknown_code_is_none():
    assert decode_tag(b"\xff\xff") is None
    assert decode_tag(b"\x00\x00") is None
    assert decode_tag(bytes.fromhex("d3c0")) == "永"


def _gnt_bytes(size: int, w: int, h: int, pixels: bytes) -> bytes:
    return struct.pack("<I2sHH", size, "永".encode("gbk"), w, h) + pixels


@pytest.mark.parametrize(
    "data, offset, reason",
    [
        (
            _gnt_bytes(10 + 12, 4, 3, bytes(12))[:-5],
            0,
            "size field 22 but 17 bytes left (truncated",
        ),
        (_gnt_bytes(10 + 12, 4, 3, bytes(12))[:7], 0, "truncated record header"),
        (_gnt_bytes(10 + 13, 4, 3, bytes(13)), 0, "size field 23 != 10 + 4*3"),
        (_gnt_bytes(10, 0, 3, b""), 0, "empty bitmap 0x3"),
        (_gnt_bytes(10 + 2000 * 3, 2000, 3, bytes(6000)), 0, "exceeds 1024x1024"),
        (b"%PDF-1.4 not a gnt file at all, just text" * 3, 0, "not a CASIA file"),
    ],
)
def test_bad_gnt_error_names_file_and_offset(tmp_path, data, offset, reason):
    path = tmp_path / "bad.gnt"
    path.write_bytes(data)
    with pytest.raises(CasiaFormatError) as e:
        list(iter_gnt(path))
    assert str(e.value).startswith(f"{path}: byte {offset}: ")
    assert reason in str(e.value)


def test_bad_record_after_good_ones_reports_its_offset(tmp_path):
    path = tmp_path / "bad.gnt"
    write_gnt(path, [("永", _bitmap(0, 3, 4))] * 2)
    with open(path, "ab") as f:
        f.write(_gnt_bytes(10 + 12, 4, 3, bytes(4)))  # truncated third record
    with pytest.raises(CasiaFormatError, match=rf"byte {2 * 22}: size field 22 but 14 bytes left"):
        list(iter_gnt(path))


def test_pot_missing_end_mark_is_an_error(tmp_path):
    path = tmp_path / "bad.pot"
    body = np.array([[1, 2], [-1, 0]], dtype="<i2").tobytes()  # no (-1, -1)
    path.write_bytes(struct.pack("<H4sH", 8 + len(body), b"\xab\xc4\x00\x00", 1) + body)
    with pytest.raises(CasiaFormatError, match=r"byte 0: .*end-of-character"):
        list(iter_pot(path))


def test_pot_stroke_count_mismatch_is_an_error(tmp_path):
    path = tmp_path / "bad.pot"
    body = np.array([[1, 2], [-1, 0], [-1, -1]], dtype="<i2").tobytes()
    path.write_bytes(struct.pack("<H4sH", 8 + len(body), b"\xab\xc4\x00\x00", 3) + body)
    with pytest.raises(CasiaFormatError, match="stroke count 3 but 1"):
        list(iter_pot(path))
