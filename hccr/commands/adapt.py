"""Adapt a model to one writer: fit a style transfer mapping profile from their samples.

The profile (a small .npz: a feat_dim x feat_dim affine map of the feature layer's
pre-activation, the SHA-256 of the model's weights, its charset's hash and the sample count) is
applied with `hccr recognize --profile PROFILE` or `Recognizer.from_bundle(..., profile=...)`.
A profile made for other weights or another charset is refused. Method: Zhang & Liu, "Writer
adaptation with style transfer mapping", IEEE TPAMI 2013 (`hccr/adapt.py`).

--data takes one writer's labelled samples: `.gnt` files, `.lmdb` folders, or folders of
images, each in a sub-folder named by its character (`me/永/1.png`); an online bundle
(`gb1-online`) takes trajectory LMDBs (`hccr-data pack my.pot --input strokes -o my.lmdb`).
--unsupervised needs no labels: the model's own answers are used, each weighted by its
probability.

  hccr adapt gb1-student --data my-hand/ -o me.profile
  hccr adapt gb1-student --data scans.gnt -o me.profile --unsupervised
  hccr recognize new-scans/ --profile me.profile
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from hccr.adapt import Adapter, StmConfig

IMAGE_EXTENSIONS = (
    ".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm", ".pbm",
    ".pnm",
)  # fmt: skip
BATCH = 256


class AdaptDataError(ValueError):
    """Adaptation data that cannot be used; one line naming the file."""


def _is_lmdb(path: Path) -> bool:
    return path.is_dir() and (path.suffix == ".lmdb" or (path / "data.mdb").is_file())


def iter_samples(
    path: Path, norm, labelled: bool, trajectory=None
) -> Iterator[tuple[np.ndarray, str | None, str]]:
    """(normalised uint8 (S, S) ink map, its character or None, where) for each sample; for an
    online model (`trajectory`, its TrajectoryConfig) the (C, S, S) maps of a trajectory LMDB.

    Raises:
        AdaptDataError: a missing, unreadable or unlabelled input, or one the model cannot
            read (pictures for an online model, pen points for an image model), naming the file.
    """
    if _is_lmdb(path):
        yield from _iter_lmdb(path, norm, trajectory)
        return
    if not path.exists():
        raise AdaptDataError(f"{path}: no such file or folder")
    if trajectory is not None:
        raise AdaptDataError(
            f"{path}: the online model reads pen strokes: give a trajectory LMDB "
            f"(hccr-data pack FILE.pot --input strokes -o MINE.lmdb)"
        )
    if path.is_dir():
        yield from _iter_folder(path, norm, labelled)
    elif path.suffix.lower() == ".gnt":
        yield from _iter_gnt(path, norm)
    elif path.suffix.lower() == ".pot":
        raise AdaptDataError(
            f"{path}: .pot strokes must be rendered first: hccr-data pack {path} -o MINE.lmdb"
        )
    elif path.suffix.lower() in IMAGE_EXTENSIONS:
        label = path.parent.name if len(path.parent.name) == 1 else None
        yield _load_image(path, norm), label, str(path)
    else:
        raise AdaptDataError(f"{path}: not an .lmdb folder, a .gnt file or a folder of images")


def _iter_lmdb(path: Path, norm, trajectory=None) -> Iterator[tuple[np.ndarray, str | None, str]]:
    import lmdb

    from hccr.lmdb_format import (
        decode_points_sample,
        decode_sample,
        open_lmdb,
        read_meta,
        sample_key,
    )
    from hccr.preprocess import EmptyImageError, NormConfig, normalize
    from hccr.trajectory import draw

    try:
        env = open_lmdb(path)
        meta = read_meta(path)
        count, size = int(meta["num_samples"]), int(meta["image_size"])
        renormalize = NormConfig.from_dict(meta["norm"]) != norm
        chars = list(meta["charset"])
        points = meta.get("input") == "strokes"
    except (ValueError, OSError, KeyError, TypeError, lmdb.Error) as e:
        raise AdaptDataError(f"{path}: cannot open LMDB: {e}") from None
    if points != (trajectory is not None):
        held, reads = ("pen points", "images") if points else ("images", "pen strokes")
        raise AdaptDataError(f"{path}: holds {held}; this model reads {reads}")

    def decode(value: bytes) -> tuple[np.ndarray, int]:
        if points:  # the online model's maps, drawn with its TrajectoryConfig
            strokes, label, _ = decode_points_sample(value)
            return draw(strokes, trajectory), label
        image, label, _ = decode_sample(value, size)
        if renormalize:  # packed with another NormConfig than the model's
            image = normalize(image, norm)
        return image, label

    empty = "empty drawing" if points else "empty image"
    with env.begin(buffers=True) as txn:
        for i in range(count):
            where = f"{path}: sample {i}"
            value = txn.get(sample_key(i))
            if value is None:
                raise AdaptDataError(f"{where}: missing")
            try:
                image, label = decode(bytes(value))
            except EmptyImageError:  # EmptyDrawingError included
                raise AdaptDataError(f"{where}: {empty}") from None
            except (ValueError, OSError) as e:
                raise AdaptDataError(f"{where}: {e}") from None
            yield image, chars[label] if 0 <= label < len(chars) else None, where


def _iter_gnt(path: Path, norm) -> Iterator[tuple[np.ndarray, str | None, str]]:
    from hccr.casia import iter_gnt
    from hccr.preprocess import EmptyImageError, ink_from_white_background, normalize

    try:
        for i, record in enumerate(iter_gnt(path)):
            where = f"{path}: record {i} at byte {record.offset}"
            try:
                image = normalize(ink_from_white_background(record.bitmap), norm)
            except EmptyImageError:
                raise AdaptDataError(f"{where}: empty bitmap (no ink)") from None
            yield image, record.char, where
    except AdaptDataError:
        raise
    except (ValueError, OSError) as e:  # CasiaFormatError names the path and byte offset
        raise AdaptDataError(str(e) if str(path) in str(e) else f"{path}: {e}") from None


def _iter_folder(path: Path, norm, labelled: bool) -> Iterator[tuple[np.ndarray, str | None, str]]:
    files = []
    for root, dirs, names in os.walk(path):
        dirs.sort()
        files += [Path(root) / n for n in sorted(names) if n.lower().endswith(IMAGE_EXTENSIONS)]
    if not files:
        raise AdaptDataError(f"{path}: no images in this folder")
    for file in files:
        label = file.parent.name if file.parent != path and len(file.parent.name) == 1 else None
        if labelled and label is None:
            raise AdaptDataError(
                f"{file}: no label (put each image in a folder named by its character, "
                f"e.g. {path}/永/{file.name}, or use --unsupervised)"
            )
        yield _load_image(file, norm), label, str(file)


def _load_image(path: Path, norm) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    from hccr.preprocess import EmptyImageError, preprocess

    try:
        with Image.open(path) as im:
            im.load()
            return preprocess(im, norm)
    except UnidentifiedImageError:
        raise AdaptDataError(f"{path}: not an image file") from None
    except EmptyImageError:
        raise AdaptDataError(f"{path}: empty image (no ink)") from None
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise AdaptDataError(f"{path}: cannot read image: {e}") from None


def prototypes_from_lmdbs(recognizer, paths: list[Path], progress: bool) -> np.ndarray:
    """Class means of the model's `pre_features` over LMDBs (synthetic data like its training
    set); classes they lack keep their classifier-row prototype."""
    from tqdm import tqdm

    from hccr.adapt import class_means, weight_prototypes

    charset = recognizer.charset
    feats, labels = [], []
    batch: list[np.ndarray] = []
    batch_labels: list[int] = []

    def flush() -> None:
        if batch:
            feats.append(recognizer.pre_features(np.stack(batch)).numpy())
            labels.extend(batch_labels)
            batch.clear()
            batch_labels.clear()

    bar = tqdm(desc="prototypes", unit="char", disable=not progress, file=sys.stderr)
    try:
        for path in paths:
            for image, char, _ in _iter_lmdb(path, recognizer.norm, recognizer.trajectory):
                bar.update()
                if char is None or char not in charset:
                    continue
                batch.append(image)
                batch_labels.append(charset.index(char))
                if len(batch) == BATCH:
                    flush()
        flush()
    finally:
        bar.close()
    where = ", ".join(str(p) for p in paths)
    if not labels:
        raise AdaptDataError(f"{where}: no samples of the model's characters to take means of")
    Z, y = np.concatenate(feats), np.asarray(labels)
    W, _ = recognizer.classifier_affine()
    fallback = weight_prototypes(W.numpy(), float(np.linalg.norm(np.maximum(Z, 0), axis=1).mean()))
    return class_means(Z, y, len(charset), fallback)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL", help="bundle folder, run folder, or models/ name")
    parser.add_argument("--data", required=True, nargs="+", metavar="SRC",
                        help="one writer's samples: .lmdb folders, .gnt files, folders of images in per-character sub-folders (an online bundle: trajectory LMDBs)")  # fmt: skip
    parser.add_argument("-o", "--output", required=True, type=Path, metavar="PROFILE",
                        help="writer profile to write (written whole or not at all)")  # fmt: skip
    parser.add_argument("--unsupervised", action="store_true",
                        help="ignore labels: use the model's own answers, weighted by their probability")  # fmt: skip
    cfg = StmConfig()
    parser.add_argument("--prior", type=float, default=None,
                        help=f"pull of the map towards the identity, in samples (default: {cfg.prior:g}, {cfg.prior_unsupervised:g} with --unsupervised)")  # fmt: skip
    parser.add_argument("--min-confidence", type=float, default=cfg.min_confidence,
                        help=f"--unsupervised: leave out answers below this probability (default: {cfg.min_confidence:g})")  # fmt: skip
    parser.add_argument("--prototypes", type=Path, nargs="+", default=None, metavar="DB.lmdb",
                        help="targets are the class means of the model's features on these LMDBs (e.g. `hccr-data synth` output); default: the classifier's weight rows")  # fmt: skip
    parser.add_argument("--skip-unknown", action="store_true",
                        help="leave out samples labelled with characters outside the model's charset (default: an error)")  # fmt: skip
    parser.add_argument("--backend", default="auto", choices=("auto", "onnx", "torch"),
                        help="where features are computed; use the one you will recognise with (default: auto)")  # fmt: skip
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="progress bar on stderr (default: when stderr is a terminal)")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from hccr.recognizer import Recognizer

    cfg = StmConfig(min_confidence=args.min_confidence)
    if args.prior is not None:
        if args.prior <= 0:
            raise ValueError(f"--prior must be positive, got {args.prior}")
        cfg.prior = cfg.prior_unsupervised = args.prior
    rec = Recognizer.from_bundle(args.model, backend=args.backend)
    show = sys.stderr.isatty() if args.progress is None else args.progress
    prototypes, proto_name = None, "classifier rows"
    if args.prototypes is not None:
        prototypes = prototypes_from_lmdbs(rec, args.prototypes, show)
        proto_name = f"class means on {', '.join(p.name for p in args.prototypes)}"
    adapter = Adapter(rec, cfg, prototypes, proto_name)
    labelled = not args.unsupervised
    charset = rec.charset
    seen = unknown = 0
    images: list[np.ndarray] = []
    labels: list[str] = []

    def flush() -> None:
        if images:
            if labelled:
                adapter.add(np.stack(images), labels)
            else:
                adapter.add_unlabelled(np.stack(images))
            images.clear()
            labels.clear()

    bar = tqdm(unit="char", disable=not show, file=sys.stderr, desc="adapt")
    try:
        for src in args.data:
            for image, char, where in iter_samples(Path(src), rec.norm, labelled, rec.trajectory):
                bar.update()
                seen += 1
                if labelled and (char is None or char not in charset):
                    if not args.skip_unknown:
                        raise AdaptDataError(
                            f"{where}: label {char!r} is not one of the model's "
                            f"{len(charset)} characters (--skip-unknown leaves such samples out)"
                        )
                    unknown += 1
                    continue
                images.append(image)
                labels.append(char or "")
                if len(images) == BATCH:
                    flush()
        flush()
    finally:
        bar.close()
    where = ", ".join(str(s) for s in args.data)
    profile = adapter.fit(where)
    profile.save(args.output)
    notes = []
    if unknown:
        notes.append(f"{unknown} outside the charset left out")
    if not labelled and seen - unknown > profile.num_samples:
        notes.append(
            f"{seen - profile.num_samples} below {cfg.min_confidence:g} confidence left out"
        )
    print(
        f"hccr adapt: wrote {args.output}: {profile.mode} map from {profile.num_samples} of "
        f"{seen} sample(s){' (' + '; '.join(notes) + ')' if notes else ''}, for {rec.name} "
        f"(weights sha256 {profile.weights_sha256[:12]}...), targets: {adapter.prototypes_name}",
        file=sys.stderr,
    )
    return 0
