"""The handwriting panel: a small HTML canvas and a few buttons, as one `gr.HTML` component.

Not Gradio's Sketchpad, whose value is the whole editor state as image files, uploaded and
queued as the drawing changes (see BENCHMARKS.md): this panel keeps the strokes as point lists
in the page, draws them on a plain canvas and sends only the points, with one direct request
per pen-up to a server function (`panel.js`). Candidates are plain buttons named by their
character; picking one appends it to the text and clears the sheet for the next character.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from pathlib import Path

import gradio as gr

from demo.recognition import BRUSH_RADIUS, CANVAS_SIDE, EMPTY_STATUS

_HERE = Path(__file__).parent
PANEL_ID = "hccr-panel"


def panel_html(model_names: Sequence[str]) -> str:
    """The panel's markup (static: panel.js fills it in). A model picker if several models."""
    picker = ""
    if len(model_names) > 1:
        options = "".join(
            f'<option value="{html.escape(n)}">{html.escape(n)}</option>' for n in model_names
        )
        picker = (
            '<label class="hccr-label" for="hccr-model">Model</label>'
            f'<select id="hccr-model" class="hccr-model">{options}</select>'
        )
    return f"""
<div class="hccr-root" data-sheet="{CANVAS_SIDE}" data-brush="{BRUSH_RADIUS}"
     data-empty-status="{html.escape(EMPTY_STATUS)}" data-seq="0" data-shown="0">
  <div class="hccr-write">
    <div id="hccr-candidates" class="hccr-cands hccr-empty" role="group"
         aria-label="Candidates: pick one to add it to the text"></div>
    <canvas id="hccr-sheet" class="hccr-sheet" width="{CANVAS_SIDE}" height="{CANVAS_SIDE}"
            role="img" aria-label="Writing sheet: write one character"></canvas>
    <div class="hccr-tools">
      <button type="button" id="hccr-undo" title="Undo the last stroke (Ctrl+Z)">Undo stroke</button>
      <button type="button" id="hccr-clear" title="Clear the sheet (Esc)">Clear</button>
      <label class="hccr-option"><input type="checkbox" id="hccr-pick-clears" checked>
        Picking a candidate clears the sheet</label>
    </div>
  </div>
  <div class="hccr-side">
    <label class="hccr-label" for="hccr-text">Text</label>
    <textarea id="hccr-text" class="hccr-text" rows="2" spellcheck="false"></textarea>
    <div class="hccr-textbar">
      <button type="button" id="hccr-copy">Copy text</button>
      <button type="button" id="hccr-backspace">Delete last</button>
      <button type="button" id="hccr-clear-text">Clear text</button>
    </div>
    <div id="hccr-status" class="hccr-status" role="status" aria-live="polite"></div>
    <figure class="hccr-preview">
      <img id="hccr-preview-img" alt="what the model sees" hidden>
      <figcaption>what the model sees</figcaption>
    </figure>
    {picker}
    <div class="hccr-adapt" role="group" aria-label="Adaptation to your hand">
      <div id="hccr-adapt-status" class="hccr-status" role="status" aria-live="polite"></div>
      <div class="hccr-textbar">
        <button type="button" id="hccr-adapt-reset"
                title="Forget the picks and the profile of this page">Reset adaptation</button>
        <button type="button" id="hccr-profile-download" disabled>Download profile</button>
        <button type="button" id="hccr-profile-upload">Upload profile</button>
        <input type="file" id="hccr-profile-file" accept=".profile,.npz" hidden>
      </div>
    </div>
  </div>
</div>"""


def build_panel(model_names: Sequence[str], server_functions: Sequence[Callable]) -> gr.HTML:
    """The panel component; `server_functions` (request dict -> dict) are called by name from
    panel.js: `recognize_strokes` answers each pen-up, the rest are `demo.writer`'s."""
    return gr.HTML(
        panel_html(model_names),
        css_template=(_HERE / "panel.css").read_text(encoding="utf-8"),
        js_on_load=(_HERE / "panel.js").read_text(encoding="utf-8"),
        server_functions=list(server_functions),
        apply_default_css=False,
        elem_id=PANEL_ID,
    )
