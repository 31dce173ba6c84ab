"""Handwriting panel demo: write characters one by one, pick each from its top-10 candidates.

A thin wrapper over `hccr.Recognizer`: no preprocessing here. The page is one HTML panel
(`demo/panel.py`): a canvas that keeps strokes as point lists, sends the strokes of the character
on each pen-up, shows the candidates as buttons, appends a picked one to the text and clears the
sheet for the next. `build_demo(recognizer)` builds the Gradio Blocks app without launching it
(tests drive it in a browser); `launch` / `serve` run it on 127.0.0.1 by default, never reaching
the internet (no share link, no analytics). An image API (`/recognize`, for `gradio_client`)
takes an image file, capped in bytes and pixels before it is decoded, and deletes each upload
once read; `serve` keeps Gradio's files in its own temporary folder and removes it on exit.

The panel starts on the online bundle (`hccr.bundle.default_model("strokes")`: models/gb1-online
when it ships), which reads the points themselves; an image sent to the API while an online bundle
is picked is read by the first image bundle of the picker (models/gb1-student when it ships),
and the reply names it.

  hccr demo                       # models/gb1-online, else gb1-student, else an untrained placeholder
  hccr demo --model gb1-teacher --port 7861
"""

from __future__ import annotations

import html
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import gradio as gr

from demo.panel import build_panel
from demo.recognition import (
    BRUSH_RADIUS,
    CANVAS_SIDE,
    MAX_UPLOAD_BYTES,
    DrawingError,
    recognize_strokes,
    recognize_upload,
    reply,
    upload_folder,
)
from demo.writer import PageWriters, writer_functions
from hccr.bundle import (
    BundleError,
    bundle_input_kind,
    default_model,
    resolve_model,
    shipped_bundles,
)
from hccr.recognizer import Recognizer

__all__ = ["BRUSH_RADIUS", "CANVAS_SIDE", "build_demo", "launch", "serve"]

PLACEHOLDER_ARCH_PREFERENCE = ("student_lw", "student_lw_050")
# Page-wide CSS (the panel's own is scoped to it), given as raw <head> markup because Gradio
# scopes launch(css=...) inside its content box: little padding around the page on a phone, so
# the sheet gets the screen's width; nothing wider than the screen.
PAGE_HEAD = """<style>
@media (max-width: 640px) {
  .gradio-container .main.app { padding: 6px 8px !important; }
}
#hccr-panel .html-container { padding: 0 !important; }
html, body { overflow-x: hidden; }
</style>"""


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
                    raise DrawingError(f"unknown model {name!r}; known: {', '.join(self.names)}")
                self._loaded[name] = Recognizer.from_bundle(self._paths[name], num_threads=1)
            return self._loaded[name]

    def for_image(self, name: str | None) -> Recognizer:
        """The model that reads an image when `name` is picked: that one if it reads images,
        else (an online model) the first image model in the pool; the online one if none."""
        rec = self.get(name)
        if rec.input_kind == "image":
            return rec
        for other in self.names:
            if self._input_kind(other) == "image":
                return self.get(other)
        return rec  # recognize_upload answers it with a one-line error

    def _input_kind(self, name: str) -> str | None:
        rec = self._loaded.get(name)
        if rec is not None:
            return rec.input_kind
        try:
            return bundle_input_kind(self._paths[name])
        except BundleError:
            return None  # not loadable: never a fallback


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
    """The demo's Blocks app (not launched; `launch` adds the page CSS and the upload cap).

    Args:
        recognizer: the model shown first.
        bundles: other models to offer in a picker (name -> bundle folder), loaded on first use.
        warning: shown in a banner above the panel (e.g. "untrained placeholder model").
    """
    pool = RecognizerPool(recognizer, bundles)
    writers = PageWriters()

    def recognize_strokes_request(request: Any) -> dict[str, Any]:
        """One pen-up: {"seq", "strokes": [[x0, y0, ...], ...], "model", "session"} ->
        candidates as JSON, with the session's writer profile if it has one."""
        start = time.perf_counter()
        seq = request.get("seq") if isinstance(request, dict) else None
        try:
            if not isinstance(request, dict):
                raise DrawingError("expected {seq, strokes, model}")
            rec = pool.get(request.get("model"))
            sid = request.get("session")
            profile = writers.profile(sid, rec) if isinstance(sid, str) else None
            result = recognize_strokes(rec, request.get("strokes"), profile)
            out = reply(result, rec, seq=seq, adapted=profile is not None)
        except DrawingError as e:
            return {"seq": seq, "error": str(e)}
        out["timing"]["server_ms"] = round((time.perf_counter() - start) * 1000, 3)
        return out

    # the JS calls it by this name
    recognize_strokes_request.__name__ = "recognize_strokes"

    def recognize_image_api(path: str | None, model_name: str | None) -> dict[str, Any]:
        if not path:
            raise gr.Error("no image given")
        try:
            picked = pool.get(model_name)
            rec = pool.for_image(model_name)
            out = reply(recognize_upload(rec, path), rec)
        except DrawingError as e:
            raise gr.Error(str(e)) from None
        if rec is not picked:
            out["note"] = f"{picked.name} reads pen strokes, not images: {rec.name} read this image"
        return out

    with gr.Blocks(
        title="hccr: handwritten Chinese character recognition",
        delete_cache=(300, 300),  # uploads never passed to a handler are dropped after 5 min
    ) as demo:
        gr.Markdown(
            "### Handwritten Chinese character recognition\n"
            "Write one character on the sheet; pick it from the candidates to add it to the "
            "text and write the next.",
            elem_id="hccr-intro",
        )
        if warning:
            gr.HTML(
                '<div id="hccr-warning" role="alert" style="background:#fff3cd;color:#664d03;'
                'border:1px solid #ffda6a;border-radius:6px;padding:10px 14px;font-weight:600">'
                f"&#9888; {html.escape(warning)}</div>"
            )
        build_panel(pool.names, [recognize_strokes_request, *writer_functions(writers, pool.get)])
        # The image API (gradio_client): hidden from the page.
        with gr.Row(visible=False):
            image = gr.Image(type="filepath", image_mode=None, label="Image", elem_id="hccr-image")
            model = gr.Dropdown(choices=pool.names, value=pool.names[0], label="Model")
            result = gr.JSON(label="Candidates")
        gr.Button(visible=False).click(
            recognize_image_api,
            inputs=[image, model],
            outputs=[result],
            api_name="recognize",
            show_progress="hidden",
        )
    return demo


def load_for_demo(model: str | None) -> tuple[Recognizer, dict[str, Path], str | None]:
    """The recogniser to start with, the other shipped bundles, and a warning if any.

    Without `model`: the default bundle for pen strokes (`default_model("strokes")`: the online
    one, else the image one), or an untrained placeholder if none ships. The other shipped
    bundles come by name, the default image bundle first: it reads the images sent while an
    online model is picked (`RecognizerPool.for_image`).

    Raises:
        BundleError: `model` was given and is not a usable bundle.
    """
    if model is None:
        try:
            path = default_model("strokes")
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
    bundles = shipped_bundles()
    image = default_model("image") if bundles else None
    ordered = sorted(bundles.items(), key=lambda item: item[1] != image)  # stable: then by name
    others = {name: p for name, p in ordered if p.resolve() != path.resolve()}
    return rec, others, None


def launch(
    demo: gr.Blocks, host: str = "127.0.0.1", port: int | None = 7860, *, block: bool = True
) -> None:
    """Launches a built demo with the page CSS and the upload size cap."""
    demo.queue(default_concurrency_limit=4)
    demo.launch(
        server_name=host,
        server_port=port,
        share=False,
        inbrowser=False,
        prevent_thread_lock=not block,
        quiet=not block,
        head=PAGE_HEAD,
        max_file_size=MAX_UPLOAD_BYTES,  # refused by /upload before it is written to disk
        footer_links=["api"],
    )


def serve(model: str | None = None, host: str = "127.0.0.1", port: int | None = 7860) -> None:
    """Loads the model(s), builds the app and serves it until Ctrl-C or SIGTERM.

    Gradio's files go to `upload_folder()`, removed on exit; `hccr demo` sets it up before
    gradio is imported, since gradio makes a folder under the system temp folder at import.
    """
    import torch

    # One character per request: a second intra-op thread saves nothing on a 64x64 input and,
    # on a busy 2-core machine, waiting for it costs ~100 ms a call (measured: 1 ms vs 120 ms).
    torch.set_num_threads(1)
    rec, others, warning = load_for_demo(model)
    with upload_folder():
        demo = build_demo(rec, bundles=others, warning=warning)
        launch(demo, host, port, block=False)
        print(f"hccr demo: serving {rec.name} on http://{host}:{port}/ (Ctrl-C to stop)")
        try:
            while True:  # Ctrl-C or SIGTERM (`hccr` raises it as an interrupt) ends it
                time.sleep(1)
        finally:
            demo.close()


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m demo.app [--model M] [--host H] [--port P]`: the same as `hccr demo`."""
    from hccr.cli import run_cli

    argv = sys.argv[1:] if argv is None else argv
    return run_cli("demo.app", {"demo": "demo.command"}, ["demo", *argv])


if __name__ == "__main__":
    raise SystemExit(main())
