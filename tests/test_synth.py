"""`hccr-data synth`: deterministic, complete, never empty, clear about missing fonts."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from data_tools import styles
from data_tools.cli import main
from data_tools.fonts import (
    FontFace,
    GlyphFont,
    MissingFontsError,
    discover_fonts,
    fonts_for_split,
)
from data_tools.strokes import load_medians
from data_tools.synth import (
    SampleMaker,
    SynthConfig,
    SynthError,
    parse_styles,
    sample_rng,
    write_synth,
)
from hccr.casia import iter_gnt
from hccr.charset import Charset
from hccr.lmdb_format import decode_sample, open_lmdb, read_meta, sample_key
from hccr.preprocess import NormConfig

CHARS = Charset("永字一", name="tiny")  # a many-stroke, a medium and a one-stroke character


def _faces() -> list[FontFace]:
    try:
        return discover_fonts()
    except MissingFontsError:
        return []


def _read(path: Path) -> tuple[list[np.ndarray], list[int], list[int]]:
    meta = read_meta(path)
    images, labels, writers = [], [], []
    with open_lmdb(path).begin() as txn:
        for i in range(meta["num_samples"]):
            image, label, writer = decode_sample(txn.get(sample_key(i)), meta["image_size"])
            images.append(image)
            labels.append(label)
            writers.append(writer)
    return images, labels, writers


def test_same_seed_same_samples_whatever_the_worker_count(tmp_path: Path) -> None:
    cfg = SynthConfig(per_char=40, seed=7)  # 40 > CHUNK: classes span several work items
    faces = _faces()
    write_synth(tmp_path / "a.lmdb", CHARS, faces, cfg, workers=1, progress=False)
    write_synth(tmp_path / "b.lmdb", CHARS, faces, cfg, workers=2, progress=False)
    write_synth(tmp_path / "c.lmdb", CHARS, faces, SynthConfig(per_char=40, seed=8), progress=False)
    a, b, c = (_read(tmp_path / f"{n}.lmdb") for n in "abc")
    assert all(np.array_equal(x, y) for x, y in zip(a[0], b[0], strict=True)) and a[1:] == b[1:]
    assert not all(np.array_equal(x, y) for x, y in zip(a[0], c[0], strict=True))


def test_counts_per_class_exact_and_meta_complete(tmp_path: Path) -> None:
    out = tmp_path / "s.lmdb"
    write_synth(out, CHARS, _faces(), SynthConfig(per_char=5, seed=1), progress=False)
    images, labels, _ = _read(out)
    assert Counter(labels) == {0: 5, 1: 5, 2: 5}
    meta = read_meta(out)
    assert (
        meta["num_samples"] == 15 and meta["num_classes"] == 3 and meta["charset"] == list("永字一")
    )
    assert meta["image_size"] == 64 and NormConfig.from_dict(meta["norm"]) == NormConfig()
    assert sum(s["written"] for s in meta["sources"].values()) == 15
    assert sum(meta["synth"]["style_counts"].values()) == 15


@pytest.mark.parametrize("style", styles.STYLES)
def test_every_sample_non_empty_and_inside_the_box(style: str) -> None:
    faces = _faces()
    if style != "strokes" and not faces:
        pytest.skip("no CJK font installed")
    norm = NormConfig(size=32, method="linear")  # linear: ink stays inside the margin
    maker = SampleMaker(faces, SynthConfig(styles={style: 1.0}, norm=norm))
    for i, ch in enumerate(CHARS):
        for s in range(20):
            image = maker.make_normalized(ch, sample_rng(0, "train", i, s))[0]
            assert image.shape == (32, 32) and image.dtype == np.uint8
            assert image.max() >= 128 and (image > 96).sum() >= 8
            frame = np.ones_like(image, bool)
            frame[1:-1, 1:-1] = False
            assert image[frame].max() < 24, "ink reaches the edge of the image box"


def test_gnt_output_reads_back(tmp_path: Path) -> None:
    gnt = tmp_path / "s.gnt"
    write_synth(None, CHARS, _faces(), SynthConfig(per_char=3), gnt_path=gnt, progress=False)
    records = list(iter_gnt(gnt))
    assert [r.char for r in records] == [c for c in "永字一" for _ in range(3)]
    # dark ink on white paper; a pen's ink, like a raw scan's, need not reach black
    assert all(r.bitmap.min() < 160 and r.bitmap.max() == 255 for r in records)
    assert np.median([r.bitmap.min() for r in records]) < 100


def test_missing_fonts_message_says_what_to_install(tmp_path: Path, capsys) -> None:
    empty = tmp_path / "fonts"
    empty.mkdir()
    with pytest.raises(MissingFontsError, match="apt-get install fonts-arphic-ukai"):
        discover_fonts([empty])
    rc = main(["synth", "--preview", str(tmp_path / "p.png"), "--font-dir", str(empty)])
    err = capsys.readouterr().err
    assert (
        rc == 1 and "apt-get install fonts-arphic-ukai fonts-arphic-uming fonts-lxgw-wenkai" in err
    )
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "p.png").exists()


def test_stroke_style_alone_needs_no_font(tmp_path: Path) -> None:
    empty = tmp_path / "fonts"
    empty.mkdir()
    (tmp_path / "chars.txt").write_text("永\n字\n", encoding="utf-8")
    rc = main(
        [
            "synth",
            "-o",
            str(tmp_path / "s.lmdb"),
            "--chars",
            str(tmp_path / "chars.txt"),
            "--per-char",
            "2",
            "--styles",
            "strokes",
            "--font-dir",
            str(empty),
            "--workers",
            "1",
            "--no-progress",
            "--preview",
            str(tmp_path / "p.png"),
            "--preview-count",
            "4",
        ]
    )
    assert rc == 0 and read_meta(tmp_path / "s.lmdb")["num_samples"] == 4
    assert (tmp_path / "p.png").stat().st_size > 0


def test_character_without_strokes_or_font_is_refused() -> None:
    odd = Charset(["永", "\U000f0001"])  # a private-use code point: no stroke data, no glyph
    with pytest.raises(SynthError, match="no stroke data"):
        write_synth(None, odd, _faces(), SynthConfig(per_char=1), progress=False)


def test_tofu_and_empty_glyphs_are_detected() -> None:
    faces = _faces()
    if not faces:
        pytest.skip("no CJK font installed")
    font = GlyphFont(faces[0], size=48)
    assert font.render("永") is not None
    assert font.render("\U000f0001") is None  # .notdef box (tofu)
    assert font.render(" ") is None  # empty


def test_val_split_uses_only_held_out_fonts() -> None:
    faces = [
        FontFace("a.ttf", 0, "AR PL UKai CN", "Book"),
        FontFace("b.ttf", 0, "LXGW WenKai", "Regular"),
        FontFace("c.ttf", 0, "WenQuanYi Micro Hei", "Regular"),
    ]
    assert [f.path for f in fonts_for_split(faces, "train")] == ["b.ttf"]
    assert [f.path for f in fonts_for_split(faces, "val")] == ["a.ttf", "c.ttf"]
    assert fonts_for_split(faces[1:2], "val") == faces[1:2]  # one family: shared, not empty
    assert not np.array_equal(
        sample_rng(0, "train", 0, 0).random(4), sample_rng(0, "val", 0, 0).random(4)
    )


def test_style_spec_parsing() -> None:
    assert parse_styles("strokes=3,font=1") == {"strokes": 0.75, "font": 0.25}
    with pytest.raises(SynthError, match="known: strokes, font, skeleton"):
        parse_styles("crayon=1")


def test_vendored_stroke_medians_cover_gb1() -> None:
    medians = load_medians()
    assert all(ch in medians for ch in Charset.gb1())
    strokes = medians.get("永")
    assert len(strokes) == 5 and all(s.min() >= 0 and s.max() <= 1 for s in strokes)
