"""Real-time drawing demo: draw a character, see the top-10 candidates update on every stroke.

A thin wrapper over `hccr.Recognizer`: no preprocessing here (the canvas' RGBA drawing goes to
`Recognizer.prepare`, i.e. `hccr.preprocess`, as it is). `build_demo(recognizer)` builds the
Gradio Blocks app without launching it (tests drive it in a browser); `main` / `serve` launch it
on 127.0.0.1 by default and never reach the internet (no share link, no analytics).

  hccr demo                       # models/gb1-student, or an untrained placeholder if none ships
  hccr demo --model gb1-teacher --port 7861
"""

from __future__ import annotations

import argparse
import base64
import html
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import gradio as gr
import numpy as np

from hccr.preprocess import EmptyImageError
from hccr.recognizer import Recognizer

TOPK = 10
CANVAS_SIDE = 400  # canvas pixels; the drawing is normalised to the model's 64x64 anyway
BRUSH_RADIUS = 7  # px on the 400 px canvas: a pen-like stroke, ~1/25 of a character's height
PLACEHOLDER_ARCH_PREFERENCE = ("student_lw", "student_lw_050")
EMPTY_STATUS = "Draw a character on the canvas."
# The Sketchpad starts, and restarts after every clear, with no tool selected ("select the draw
# tool to start"). Select the brush for the user: poll for ~3 s, because the editor resets its
# tool asynchronously after a clear; the selected tool button carries the "highlight" class.
_SELECT_BRUSH_JS = """
() => {
  let ticks = 0;
  const tick = () => {
    const tool = (name) => document.querySelector(`#hccr-canvas button[aria-label="${name}"]`);
    const brush = tool('Brush'), eraser = tool('Erase');
    if (eraser && eraser.classList.contains('highlight')) return;  // the user chose the eraser
    if (brush && !brush.classList.contains('highlight')) brush.click();
    if (++ticks < 30) setTimeout(tick, 100);
  };
  tick();
}
"""


def canvas_image(value: Any) -> np.ndarray | None:
    """The Sketchpad's value -> its RGBA composite (transparent background), or None if blank.

    Gradio's ImageEditor value is {"background", "layers", "composite"}; with image_mode="RGBA"
    the composite keeps the transparent background, which `hccr.preprocess.to_ink` reads as
    background (ink = alpha), so no compositing is needed here.
    """
    if value is None:
        return None
    if isinstance(value, dict):
        image = value.get("composite")
        if image is None:
            layers = [layer for layer in value.get("layers") or [] if layer is not None]
            image = layers[0] if len(layers) == 1 else None
    else:
        image = value
    if image is None:
        return None
    arr = np.asarray(image)
    return arr if arr.size else None


def preview_html(prepared: np.ndarray | None, size: int = 96) -> str:
    """The model's input image as an inline PNG, upscaled without smoothing."""
    if prepared is None:
        inner = f'<div style="width:{size}px;height:{size}px;background:#000;opacity:.15"></div>'
    else:
        ok, png = cv2.imencode(".png", prepared)
        src = "data:image/png;base64," + base64.b64encode(png.tobytes()).decode() if ok else ""
        inner = (
            f'<img id="hccr-preview-img" src="{src}" width="{size}" height="{size}" '
            f'alt="model input" style="image-rendering:pixelated;border:1px solid #888">'
        )
    side = prepared.shape[0] if prepared is not None else 64
    return (
        f'<div id="hccr-preview">{inner}<div style="font-size:12px;opacity:.7">'
        f"what the model sees ({side}x{side})</div></div>"
    )


def recognize_drawing(
    recognizer: Recognizer, value: Any, topk: int = TOPK
) -> tuple[dict[str, float] | None, str, str]:
    """One canvas value -> (candidates for gr.Label, preview HTML, status line).

    An empty canvas is not an error: it gives no candidates and a hint.
    """
    image = canvas_image(value)
    if image is None:
        return None, preview_html(None), EMPTY_STATUS
    start = time.perf_counter()
    try:
        prepared = recognizer.prepare(image)
    except EmptyImageError:
        return None, preview_html(None), EMPTY_STATUS
    top = recognizer.recognize_prepared(prepared[None], topk)[0]
    ms = (time.perf_counter() - start) * 1000
    status = f"Recognised in {ms:.1f} ms by {recognizer.name} ({recognizer.backend})."
    return {c.char: c.prob for c in top}, preview_html(prepared), status


class RecognizerPool:
    """One Recognizer per bundle, loaded on first use and then reused by every request."""

    def __init__(self, first: Recognizer, bundles: Mapping[str, Path] | None = None) -> None:
        self._loaded: dict[str, Recognizer] = {first.name: first}
        self._paths = dict(bundles or {})
        self.names = [first.name] + [n for n in self._paths if n != first.name]
        self._lock = threading.Lock()

    def get(self, name: str | None) -> Recognizer:
        if not name:
            return self._loaded[self.names[0]]
        rec = self._loaded.get(name)
        if rec is not None:
            return rec
        with self._lock:  # two first requests for the same model load it once
            if name not in self._loaded:
                if name not in self._paths:
                    raise gr.Error(f"unknown model {name!r}; known: {', '.join(self.names)}")
                self._loaded[name] = Recognizer.from_bundle(self._paths[name], num_threads=1)
            return self._loaded[name]


def shipped_bundles() -> dict[str, Path]:
    """Name -> folder for every bundle in models/."""
    from hccr.bundle import MODELS_DIR, is_bundle

    if not MODELS_DIR.is_dir():
        return {}
    return {p.name: p for p in sorted(MODELS_DIR.iterdir()) if is_bundle(p)}


def placeholder_recognizer() -> Recognizer:
    """An untrained student over GB2312 level 1, so the demo runs before any bundle ships."""
    import torch

    from hccr.charset import Charset
    from hccr.nets import create_model, list_models
    from hccr.preprocess import NormConfig

    names = list_models()
    arch = next((a for a in PLACEHOLDER_ARCH_PREFERENCE if a in names), None)
    arch = arch or next((a for a in names if a.startswith("student")), names[0])
    charset = Charset.gb1()
    torch.manual_seed(0)
    model = create_model(arch, num_classes=len(charset))
    return Recognizer(model, charset, NormConfig(), name=f"untrained {arch} (placeholder)")


def build_demo(
    recognizer: Recognizer,
    *,
    bundles: Mapping[str, Path] | None = None,
    warning: str | None = None,
) -> gr.Blocks:
    """The demo's Blocks app (not launched).

    Args:
        recognizer: the model shown first.
        bundles: other models to offer in a picker (name -> bundle folder), loaded on first use.
        warning: shown in a banner above the canvas (e.g. "untrained placeholder model").
    """
    pool = RecognizerPool(recognizer, bundles)

    def on_draw(value: Any, model_name: str | None):
        return recognize_drawing(pool.get(model_name), value)

    def on_pick(text: str | None, evt: gr.SelectData) -> str:
        return (text or "") + str(evt.value)

    with gr.Blocks(title="hccr: handwritten Chinese character recognition") as demo:
        gr.Markdown(
            "## Handwritten Chinese character recognition\n"
            "Draw one character. Candidates update on every stroke; click one to add it to "
            "the text."
        )
        if warning:
            gr.HTML(
                '<div id="hccr-warning" role="alert" style="background:#fff3cd;color:#664d03;'
                'border:1px solid #ffda6a;border-radius:6px;padding:10px 14px;font-weight:600">'
                f"&#9888; {html.escape(warning)}</div>"
            )
        with gr.Row():
            with gr.Column(scale=3, min_width=300):
                canvas = gr.Sketchpad(
                    type="numpy",
                    image_mode="RGBA",
                    canvas_size=(CANVAS_SIDE, CANVAS_SIDE),
                    fixed_canvas=True,
                    brush=gr.Brush(
                        default_size=BRUSH_RADIUS, colors=["#000000"], color_mode="fixed"
                    ),
                    layers=False,
                    transforms=(),
                    label="Draw one character",
                    height=CANVAS_SIDE + 110,  # toolbar + canvas at 100% zoom
                    elem_id="hccr-canvas",
                )
                with gr.Row():
                    clear = gr.Button("Clear canvas", elem_id="hccr-clear")
                    model = gr.Dropdown(
                        choices=pool.names,
                        value=pool.names[0],
                        label="Model",
                        visible=len(pool.names) > 1,
                        elem_id="hccr-model",
                    )
            with gr.Column(scale=2, min_width=260):
                candidates = gr.Label(
                    num_top_classes=TOPK, label="Top-10 (click to add)", elem_id="hccr-candidates"
                )
                status = gr.Markdown(EMPTY_STATUS, elem_id="hccr-status")
                preview = gr.HTML(preview_html(None), elem_id="hccr-preview-box")
                text = gr.Textbox(label="Text", elem_id="hccr-text", interactive=True)
                with gr.Row():
                    backspace = gr.Button("Delete last", size="sm", elem_id="hccr-backspace")
                    clear_text = gr.Button("Clear text", size="sm", elem_id="hccr-clear-text")

        outputs = [candidates, preview, status]
        canvas.change(
            on_draw,
            inputs=[canvas, model],
            outputs=outputs,
            trigger_mode="always_last",
            show_progress="hidden",
            concurrency_limit=4,
            api_name="recognize",
        )
        model.change(on_draw, inputs=[canvas, model], outputs=outputs, show_progress="hidden")
        clear.click(
            lambda: (None, None, preview_html(None), EMPTY_STATUS),
            outputs=[canvas, *outputs],
            show_progress="hidden",
            api_name=False,
        ).then(None, js=_SELECT_BRUSH_JS)
        canvas.clear(None, js=_SELECT_BRUSH_JS)  # the editor's own clear button
        demo.load(None, js=_SELECT_BRUSH_JS)
        candidates.select(on_pick, inputs=[text], outputs=[text], show_progress="hidden")
        backspace.click(lambda t: (t or "")[:-1], inputs=[text], outputs=[text], api_name=False)
        clear_text.click(lambda: "", outputs=[text], api_name=False)
    return demo


def load_for_demo(model: str | None) -> tuple[Recognizer, dict[str, Path], str | None]:
    """The recogniser to start with, the other shipped bundles, and a warning if any.

    Without `model`: the default shipped bundle, or an untrained placeholder if none ships.

    Raises:
        BundleError: `model` was given and is not a usable bundle.
    """
    from hccr.bundle import BundleError, resolve_model

    bundles = shipped_bundles()
    if model is None:
        try:
            path = resolve_model(None)
        except BundleError:
            rec = placeholder_recognizer()
            warning = (
                "No trained model found in models/: this is an UNTRAINED placeholder model "
                f"over GB2312 level 1 ({len(rec.charset)} classes); its candidates are random. "
                "Train one (see README) or pass --model."
            )
            return rec, {}, warning
    else:
        path = resolve_model(model)
    rec = Recognizer.from_bundle(path, num_threads=1)
    others = {name: p for name, p in bundles.items() if p.resolve() != path.resolve()}
    return rec, others, None


def serve(
    model: str | None = None,
    host: str = "127.0.0.1",
    port: int | None = 7860,
    *,
    block: bool = True,
) -> gr.Blocks:
    """Loads the model(s), builds the app and launches it (blocking unless block=False)."""
    import torch

    # One character per request: a second intra-op thread saves nothing on a 64x64 input and,
    # on a busy 2-core machine, waiting for it costs ~100 ms a call (measured: 1 ms vs 120 ms).
    torch.set_num_threads(1)
    rec, others, warning = load_for_demo(model)
    demo = build_demo(rec, bundles=others, warning=warning)
    demo.queue(default_concurrency_limit=4)
    demo.launch(
        server_name=host,
        server_port=port,
        share=False,
        inbrowser=False,
        prevent_thread_lock=not block,
        quiet=not block,
    )
    return demo


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m demo.app [--model M] [--host H] [--port P]`."""
    from hccr.commands.demo import (
        add_arguments,
    )  # one definition of the flags, shared with `hccr demo`

    parser = argparse.ArgumentParser(prog="demo.app", description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    serve(args.model, args.host, args.port)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
