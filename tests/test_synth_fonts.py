"""Handwriting fonts in `hccr-data synth`: installed from npm tarballs, read per code point from
split subsets, every skipped glyph counted by reason, families and licences recorded."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import numpy as np
import pytest
from fake_fonts import build_font, npm_tarball, split_font_folder

from data_tools import font_install
from data_tools.cli import main
from data_tools.fonts import FontFace, GlyphFont, discover_fonts, fonts_for_split
from data_tools.synth import SynthConfig, write_synth
from hccr.charset import Charset
from hccr.lmdb_format import decode_sample, open_lmdb, read_meta, sample_key

CHARS = Charset("永字一", name="tiny")


def _split_face(tmp_path: Path) -> FontFace:
    # 永 in a good subset, 字 in a subset that is not a font file, 一 in no subset at all
    good = build_font(tmp_path / "src" / "good.ttf", {"永": True})
    folder = split_font_folder(
        tmp_path / "cache" / "test-hand",
        [good, b"not a font"],
        [[ord("永"), ord("永"), 0], [ord("字"), ord("字"), 1]],
    )
    (face,) = discover_fonts([tmp_path / "cache"])
    assert face.path == str(folder) and face.handwriting and face.licence == "OFL-1.1"
    return face


def _images(path: Path) -> tuple[list[np.ndarray], list[int], list[int]]:
    meta = read_meta(path)
    out: tuple[list, list, list] = ([], [], [])
    with open_lmdb(path).begin() as txn:
        for i in range(meta["num_samples"]):
            for dst, v in zip(out, decode_sample(txn.get(sample_key(i)), 64), strict=True):
                dst.append(v)
    return out


def test_glyphs_a_font_lacks_are_skipped_and_counted_by_reason(tmp_path: Path) -> None:
    face = _split_face(tmp_path)
    flat = FontFace(
        str(build_font(tmp_path / "flat" / "f.ttf", {"永": True, "字": False})), 0, "Flat", ""
    )
    fonts = GlyphFont(face, 48), GlyphFont(flat, 48)
    assert [fonts[0].check(c)[1] for c in "永字一"] == [None, "load_error", "not_in_cmap"]
    assert [fonts[1].check(c)[1] for c in "永字一"] == [None, "empty_outline", "notdef"]

    out = tmp_path / "s.lmdb"
    cfg = SynthConfig(per_char=6, seed=3, styles={"strokes": 0.5, "font": 0.5})
    write_synth(out, CHARS, [face, flat], cfg, progress=False)
    synth = read_meta(out)["synth"]
    assert synth["font_skipped"] == {
        face.name: {"load_error": 1, "not_in_cmap": 1},
        flat.name: {"empty_outline": 1, "notdef": 1},
    }
    assert [d["family"] for d in synth["fonts_detail"]] == ["Test Hand", "Flat"]
    assert synth["fonts_detail"][0]["licence"] == "OFL-1.1"
    _, labels, writers = _images(out)
    # font samples (writer 1000 + face) only where a face has the glyph: class 0 (永)
    font_classes = {lab for lab, w in zip(labels, writers, strict=True) if 1000 <= w < 2000}
    assert font_classes == {0}


def test_split_fonts_are_deterministic_whatever_the_worker_count(tmp_path: Path) -> None:
    face = _split_face(tmp_path)
    cfg = SynthConfig(per_char=40, seed=5, styles={"strokes": 0.5, "font": 0.3, "skeleton": 0.2})
    write_synth(tmp_path / "a.lmdb", CHARS, [face], cfg, workers=1, progress=False)
    write_synth(tmp_path / "b.lmdb", CHARS, [face], cfg, workers=2, progress=False)
    a, b = _images(tmp_path / "a.lmdb"), _images(tmp_path / "b.lmdb")
    assert all(np.array_equal(x, y) for x, y in zip(a[0], b[0], strict=True))
    assert a[1:] == b[1:] and any(1000 <= w < 3000 for w in a[2])  # font styles were drawn


def test_handwriting_families_are_held_out_for_val() -> None:
    faces = [FontFace(f"{n}.ttf", 0, fam, "Regular", "OFL-1.1", True) for n, fam in
             enumerate(["Long Cang", "Ma Shan Zheng", "Xiaolai SC", "Zhi Mang Xing"])]  # fmt: skip
    val = {f.family for f in fonts_for_split(faces, "val")}
    train = {f.family for f in fonts_for_split(faces, "train")}
    assert val == {"Ma Shan Zheng", "Zhi Mang Xing"} and not val & train


def _fake_npm(tmp_path: Path, tarballs: dict[str, Path]) -> Path:
    # an `npm` on PATH that "packs" prepared tarballs: `npm pack SPEC --pack-destination DIR`
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "npm"
    script.write_text(
        f"#!{sys.executable}\n"
        "import json, shutil, sys\n"
        f"tarballs = {json.dumps({k: str(v) for k, v in tarballs.items()})}\n"
        "spec, dest = sys.argv[2], sys.argv[sys.argv.index('--pack-destination') + 1]\n"
        "src = tarballs[spec]\n"
        "shutil.copy(src, dest)\n"
        "print(json.dumps([{'filename': src.rsplit('/', 1)[1]}]))\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return bin_dir


def test_fonts_install_from_npm_tarballs(tmp_path: Path, monkeypatch, capsys) -> None:
    font = build_font(tmp_path / "f.ttf", {"永": True, "字": True}).read_bytes()
    tgz = npm_tarball(
        tmp_path / "test-hand-1.0.0.tgz",
        {
            "package/files/test-hand-1-400-normal.woff2": font,
            "package/files/test-hand-1-400-normal.woff": font,  # not kept: woff2 only
            "package/LICENSE": b"SIL Open Font License 1.1",
            "package/index.css": b"",
        },
    )
    src = font_install.FontSource(
        "Test Hand",
        "test-hand@1.0.0",
        "package/files/test-hand-*-400-normal.woff2",
        "OFL-1.1",
        "package/LICENSE",
        "test",
    )
    monkeypatch.setattr(font_install, "SOURCES", (src,))
    monkeypatch.setenv("PATH", f"{_fake_npm(tmp_path, {src.package: tgz})}{os.pathsep}/usr/bin")
    cache = tmp_path / "cache"
    assert main(["fonts", "install", "--dir", str(cache)]) == 0
    folder = cache / "test-hand"
    assert sorted(p.name for p in folder.iterdir()) == [
        "LICENSE", "index.json", "test-hand-1-400-normal.ttf"]  # fmt: skip
    (face,) = discover_fonts([cache])
    assert face.family == "Test Hand" and GlyphFont(face, 40).render("字") is not None
    assert GlyphFont(face, 40).check("一") == (None, "not_in_cmap")
    tgz.unlink()  # installed: a second install fetches nothing
    assert main(["fonts", "install", "--dir", str(cache)]) == 0
    assert main(["fonts", "list", "--dir", str(cache)]) == 0
    assert "Test Hand: OFL-1.1" in capsys.readouterr().out


def test_install_without_npm_says_so(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no npm there
    assert main(["fonts", "install", "--dir", str(tmp_path / "c")]) == 1
    err = capsys.readouterr().err.strip()
    assert "npm not found" in err and len(err.splitlines()) == 1


def test_synth_without_handwriting_fonts_names_the_install_command(tmp_path: Path, capsys) -> None:
    build_font(tmp_path / "fonts" / "f.ttf", {"永": True})
    (tmp_path / "chars.txt").write_text("永\n", encoding="utf-8")
    rc = main(["synth", "--preview", str(tmp_path / "p.png"), "--preview-count", "2",
               "--chars", str(tmp_path / "chars.txt"), "--font-dir", str(tmp_path / "fonts")])  # fmt: skip
    assert rc == 0 and "hccr-data fonts install" in capsys.readouterr().err


@pytest.mark.skipif(
    not list(font_install.FONT_CACHE.glob("*/index.json")),
    reason="handwriting fonts not installed; run: hccr-data fonts install",
)
def test_installed_handwriting_fonts_cover_gb1_samples() -> None:
    faces = [f for f in discover_fonts() if f.handwriting]
    gb1 = Charset.gb1().chars
    for face in faces:
        font = GlyphFont(face, 32)
        sample = gb1[::250]  # 16 characters across GB1
        assert all(font.render(ch) is not None for ch in sample), face.name


def test_ablation_features_switch_parts_off(tmp_path: Path) -> None:
    from data_tools.sampler import DEFAULT_FEATURES, FEATURES, SynthError, parse_features

    assert parse_features("default") == ("fonts", "cursive", "ink")
    assert parse_features("all") == ("fonts", "cursive", "ink", "layout")
    assert parse_features("none") == () and parse_features("ink,fonts") == ("fonts", "ink")
    with pytest.raises(SynthError, match="known: fonts, cursive, ink, layout"):
        parse_features("glitter")
    hand = _split_face(tmp_path)
    flat = FontFace(str(build_font(tmp_path / "flat" / "f.ttf", {"永": True})), 0, "Flat", "")
    images = {}
    runs = (("all", FEATURES), ("default", DEFAULT_FEATURES), ("none", ()))
    for name, features in runs:
        out = tmp_path / f"{name}.lmdb"
        cfg = SynthConfig(per_char=8, seed=2, features=features)
        write_synth(out, Charset("永"), [hand, flat], cfg, progress=False)
        synth = read_meta(out)["synth"]
        assert synth["features"] == list(features)
        images[name] = _images(out)[0]
        fonts = synth["fonts"]
        assert fonts == ([hand.name, flat.name] if features else [flat.name])
    for a, b in (("all", "default"), ("default", "none")):  # layout, then the rest, make a change
        assert not all(np.array_equal(x, y) for x, y in zip(images[a], images[b], strict=True))
