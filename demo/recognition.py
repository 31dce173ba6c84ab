"""What the demo's server does with a request: strokes or an uploaded image in, candidates out.

The drawing panel sends the strokes of the character on its sheet (integer points on a fixed
400 x 400 sheet, whatever the screen size), a few kB per request. For an image model they are
inked here exactly as the panel inks them (`data_tools.render.render_canvas`: the round brush of
`BRUSH_RADIUS`, black on a transparent sheet, the input `bench/drawn_input.py` scores) and
handed to `Recognizer`, which does all the normalisation (`hccr.preprocess`); nothing else
happens to the pixels here. An online model (a bundle whose input is "strokes") gets the points
themselves (`Recognizer.prepare_strokes`, `hccr.trajectory`): nothing is inked.

Uploaded images (the `/recognize` API) are capped before they are decoded: a file over
`MAX_UPLOAD_BYTES` or an image over `MAX_UPLOAD_PIXELS` is refused from its header alone, and
anything with a side over `MAX_UPLOAD_SIDE` is shrunk first (JPEGs while decoding).
"""

from __future__ import annotations

import base64
import os
import shutil
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from data_tools.render import render_canvas
from hccr.adapt import WriterProfile
from hccr.preprocess import EmptyImageError
from hccr.recognizer import Candidate, Recognizer

TOPK = 10
CANVAS_SIDE = 400  # the sheet's coordinate system; the drawing is normalised to 64x64 anyway
BRUSH_RADIUS = 7  # sheet px: a pen-like stroke, ~1/25 of a character's height
MAX_STROKES = 64  # no character has more than ~36 strokes
MAX_POINTS = 8192  # in all strokes together: ~25 events per stroke at mouse speed is typical
MAX_UPLOAD_BYTES = 4 * 1024 * 1024  # a character image needs tens of kB; also the /upload cap
MAX_UPLOAD_PIXELS = 4096 * 4096  # decoded at most 64 MB (RGBA); refused above, from the header
MAX_UPLOAD_SIDE = 1024  # larger images are shrunk first: the model sees 64x64
# Recognitions run at once; the rest wait (the "queue" of the latency bench). One per core:
# each runs on one thread (`serve` sets torch and onnxruntime to one).
RECOGNITION_SLOTS = max(1, min(4, os.cpu_count() or 1))
EMPTY_STATUS = "Draw a character on the sheet."


class DrawingError(ValueError):
    """A request the demo refuses: malformed strokes, or an image too large or unreadable."""


@dataclass
class Result:
    """One recognition: ranked candidates, the model's input image and where the time went."""

    candidates: list[Candidate]
    # what the model saw, uint8: the (S, S) ink map, or an online model's (C, S, S) maps;
    # None for an empty sheet
    prepared: np.ndarray | None
    queue_ms: float = 0.0  # waiting for a free recognition slot
    recognition_ms: float = 0.0  # Recognizer.prepare + model

    def status(self, recognizer: Recognizer) -> str:
        if self.prepared is None:
            return EMPTY_STATUS
        return (
            f"Recognised in {self.recognition_ms:.1f} ms by {recognizer.name} "
            f"({recognizer.backend})."
        )


_slots = threading.BoundedSemaphore(RECOGNITION_SLOTS)


def recognize_image(
    recognizer: Recognizer, image: Image.Image | np.ndarray, profile: WriterProfile | None = None
) -> Result:
    """Candidates for one image (an empty one gives none), waiting for a free slot first;
    `profile`: a writer profile for this call (`demo/writer.py`)."""
    return _recognize(recognizer, lambda: recognizer.prepare(image), profile)


def _recognize(recognizer: Recognizer, prepare: Any, profile: WriterProfile | None) -> Result:
    start = time.perf_counter()
    with _slots:
        began = time.perf_counter()
        try:
            prepared = prepare()
        except EmptyImageError:
            prepared = None
        top = (
            []
            if prepared is None
            else recognizer.recognize_prepared(prepared[None], TOPK, profile)[0]
        )
        done = time.perf_counter()
    return Result(top, prepared, (began - start) * 1000, (done - began) * 1000)


def prepare_drawing(recognizer: Recognizer, strokes: Sequence[np.ndarray]) -> np.ndarray:
    """Parsed strokes -> the model's input: an online model's maps of the points themselves,
    or an image model's normalised picture of the sheet as the panel shows it.

    Raises:
        EmptyImageError: nothing drawn.
    """
    if recognizer.input_kind == "strokes":
        return recognizer.prepare_strokes(strokes)
    return recognizer.prepare(strokes_image(strokes))


def recognize_drawing(
    recognizer: Recognizer, strokes: Sequence[np.ndarray], profile: WriterProfile | None = None
) -> Result:
    """Candidates for parsed strokes (none for an empty sheet), waiting for a free slot first."""
    return _recognize(recognizer, lambda: prepare_drawing(recognizer, strokes), profile)


def parse_strokes(strokes: Any) -> list[np.ndarray]:
    """The panel's strokes, [[x0, y0, x1, y1, ...], ...] in sheet pixels -> (N, 2) arrays.

    Raises:
        DrawingError: not a list of flat number lists of even length, or over the caps.
    """
    if not isinstance(strokes, list):
        raise DrawingError("strokes must be a list of [x0, y0, x1, y1, ...] lists")
    if len(strokes) > MAX_STROKES:
        raise DrawingError(f"{len(strokes)} strokes; at most {MAX_STROKES} are accepted")
    total = sum(len(s) // 2 for s in strokes if isinstance(s, list))
    if total > MAX_POINTS:
        raise DrawingError(f"{total} points; at most {MAX_POINTS} are accepted")
    out = []
    for s in strokes:
        if not isinstance(s, list) or not s or len(s) % 2:
            raise DrawingError("each stroke must be a non-empty [x0, y0, x1, y1, ...] list")
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in s):
            raise DrawingError("stroke coordinates must be numbers")
        xy = np.asarray(s, np.float64).reshape(-1, 2)
        if not np.isfinite(xy).all():
            raise DrawingError("stroke coordinates must be finite")
        out.append(np.clip(xy, 0, CANVAS_SIDE - 1))
    return out


def strokes_image(strokes: Sequence[np.ndarray]) -> np.ndarray:
    """The sheet as the panel shows it: RGBA, black ink, transparent background."""
    rgba = np.zeros((CANVAS_SIDE, CANVAS_SIDE, 4), np.uint8)
    rgba[..., 3] = render_canvas(strokes, CANVAS_SIDE, BRUSH_RADIUS)
    return rgba


def recognize_strokes(
    recognizer: Recognizer, strokes: Any, profile: WriterProfile | None = None
) -> Result:
    """The panel's strokes -> candidates (none for an empty sheet), with `profile` if given.

    Raises:
        DrawingError: malformed or oversized strokes.
    """
    parsed = parse_strokes(strokes)
    if not parsed:
        return Result([], None)
    return recognize_drawing(recognizer, parsed, profile)


def load_upload(path: str | Path) -> Image.Image:
    """An uploaded image, refused or shrunk before it is decoded in full.

    Raises:
        DrawingError: over `MAX_UPLOAD_BYTES` or `MAX_UPLOAD_PIXELS`, or not an image.
    """
    path = Path(path)
    size = path.stat().st_size
    if size > MAX_UPLOAD_BYTES:
        raise DrawingError(
            f"{path.name}: {size:,} bytes; images up to {MAX_UPLOAD_BYTES:,} bytes are accepted"
        )
    try:
        with warnings.catch_warnings():  # the pixel cap below is ours, and far lower
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path)  # reads the header only
    except (OSError, Image.DecompressionBombError) as e:
        raise DrawingError(f"{path.name}: not a readable image ({e})") from None
    with image:
        w, h = image.size
        if w * h > MAX_UPLOAD_PIXELS:
            raise DrawingError(
                f"{path.name}: {w}x{h} pixels; images up to {MAX_UPLOAD_PIXELS:,} pixels "
                f"(e.g. 4096x4096) are accepted"
            )
        try:
            if image.mode == "P":  # palette images resize with nearest neighbour only
                image = image.convert("RGBA")
            # draft-decodes JPEGs at a reduced scale; other formats decode, then shrink
            image.thumbnail((MAX_UPLOAD_SIDE, MAX_UPLOAD_SIDE))
            image.load()
        except OSError as e:
            raise DrawingError(f"{path.name}: not a readable image ({e})") from None
        return image.copy()  # closing the file below frees the decoded pixels


def recognize_upload(recognizer: Recognizer, path: str | Path) -> Result:
    """An uploaded image file -> candidates; the file is removed once read, whatever happens.

    Raises:
        DrawingError: the image is refused (see `load_upload`).
    """
    try:
        if recognizer.input_kind == "strokes":
            raise DrawingError(
                f"{recognizer.name} is an online model: it reads pen strokes, not images; "
                "draw on the sheet or pick an image model"
            )
        image = load_upload(path)
    finally:
        remove_upload(Path(path))
    return recognize_image(recognizer, image)


def remove_upload(path: Path) -> None:
    """Deletes an uploaded file and its folder if that is now empty (Gradio makes one per file)."""
    path.unlink(missing_ok=True)
    try:
        path.parent.rmdir()
    except OSError:
        pass  # not empty: another upload lives there


def preview_data_url(prepared: np.ndarray | None) -> str | None:
    """The model's input image (an online model's ink channel) as a PNG data URL (~1-2 kB), or
    None for an empty sheet."""
    if prepared is None:
        return None
    if prepared.ndim == 3:
        prepared = prepared[0]
    ok, png = cv2.imencode(".png", prepared)
    return "data:image/png;base64," + base64.b64encode(png.tobytes()).decode() if ok else None


def reply(result: Result, recognizer: Recognizer, **extra: Any) -> dict[str, Any]:
    """A Result as the JSON the panel and the API return."""
    return {
        **extra,
        "candidates": [{"char": c.char, "prob": round(c.prob, 5)} for c in result.candidates],
        "preview": preview_data_url(result.prepared),
        "status": result.status(recognizer),
        "model": recognizer.name,
        "timing": {
            "queue_ms": round(result.queue_ms, 3),
            "recognition_ms": round(result.recognition_ms, 3),
        },
    }


@contextmanager
def upload_folder() -> Iterator[Path]:
    """Gradio's uploads and cache go to a folder of this process, removed when it ends.

    Gradio reads GRADIO_TEMP_DIR when it is imported and when the app is built and launched
    (enter this first). A folder the user chose with GRADIO_TEMP_DIR is used as it is and not
    removed.
    """
    chosen = os.environ.get("GRADIO_TEMP_DIR")
    if chosen:
        yield Path(chosen)
        return
    folder = Path(tempfile.mkdtemp(prefix="hccr-demo-"))
    os.environ["GRADIO_TEMP_DIR"] = str(folder)
    try:
        yield folder
    finally:
        os.environ.pop("GRADIO_TEMP_DIR", None)
        shutil.rmtree(folder, ignore_errors=True)
