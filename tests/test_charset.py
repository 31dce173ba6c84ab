from __future__ import annotations

import pytest

from hccr.charset import GB2312_LEVEL1_SIZE, Charset, CharsetError


def test_gb1_is_the_3755_level1_hanzi_in_gb_order():
    cs = Charset.gb1()
    assert len(cs) == GB2312_LEVEL1_SIZE
    assert cs.char(0) == "啊" and cs.char(len(cs) - 1) == "座"
    codes = [ch.encode("gb2312") for ch in cs]
    assert codes == sorted(codes)


def test_file_charset_round_trip(tmp_path):
    cs = Charset("一二三", name="x")
    cs.save(tmp_path / "c.txt")
    assert Charset.load(tmp_path / "c.txt") == cs
    assert Charset.from_spec(str(tmp_path / "c.txt")).index("三") == 2


def test_seen_charset_sorted_and_deduplicated():
    assert Charset.from_spec("seen", "三一二一").chars == ("一", "三", "二")


def test_bad_charsets_have_clear_errors(tmp_path):
    with pytest.raises(CharsetError, match="repeats"):
        Charset("一一")
    with pytest.raises(CharsetError, match="unknown charset 'nope'"):
        Charset.from_spec("nope")
    (tmp_path / "e.txt").write_text("\n")
    with pytest.raises(CharsetError, match="empty"):
        Charset.load(tmp_path / "e.txt")
    with pytest.raises(CharsetError, match="not in charset"):
        Charset("一").index("二")
