// The handwriting panel (run by gr.HTML's js_on_load: `element` is the panel, `server` calls
// the Python functions given as server_functions). The sheet keeps the strokes as point lists
// in a fixed 400 x 400 coordinate system and draws them; each pen-up sends the strokes of the
// character (one small JSON request), and a reply for an older drawing than the one on the
// sheet is dropped. Timings of every request go to window.hccrTimings (bench/demo_latency.py).
const root = element.querySelector(".hccr-root");
const SHEET = Number(root.dataset.sheet);
const BRUSH = Number(root.dataset.brush);
const EMPTY_STATUS = root.dataset.emptyStatus;
const $ = (id) => element.querySelector("#" + id);
const canvas = $("hccr-sheet");
const ctx = canvas.getContext("2d");
const cands = $("hccr-candidates");
const text = $("hccr-text");
const status = $("hccr-status");
const previewImg = $("hccr-preview-img");
const pickClears = $("hccr-pick-clears");
const modelSelect = $("hccr-model");
const timings = (window.hccrTimings = window.hccrTimings || []);

let strokes = []; // finished strokes of the character on the sheet: [x0, y0, x1, y1, ...]
let current = null; // the stroke being drawn
let pointer = null; // the pointer drawing it (a second finger is ignored)
let seq = 0; // bumped by every change of the drawing; replies carry it back

function setStatus(msg) {
  status.textContent = msg;
}

// ----- drawing -----------------------------------------------------------------------------

function fitCanvas() {
  // the bitmap follows the element's CSS size (1 sheet unit = size / SHEET CSS px) and the
  // device pixel ratio, so the ink is sharp at 100% zoom on any screen
  const side = Math.round(canvas.getBoundingClientRect().width * (window.devicePixelRatio || 1));
  if (side > 0 && canvas.width !== side) {
    canvas.width = side;
    canvas.height = side;
  }
  redraw();
}

function pen() {
  const k = canvas.width / SHEET;
  ctx.setTransform(k, 0, 0, k, 0, 0);
  ctx.lineCap = "round";
  ctx.lineJoin = "round";
  ctx.lineWidth = 2 * BRUSH;
  ctx.strokeStyle = "#000";
  ctx.fillStyle = "#000";
}

function drawPart(s, from) {
  // points from index `from` (in points) of stroke s; a lone point is a dab of the brush
  if (s.length === 2) {
    ctx.beginPath();
    ctx.arc(s[0], s[1], BRUSH, 0, 2 * Math.PI);
    ctx.fill();
    return;
  }
  const i = Math.max(0, from - 1) * 2;
  ctx.beginPath();
  ctx.moveTo(s[i], s[i + 1]);
  for (let j = i + 2; j < s.length; j += 2) ctx.lineTo(s[j], s[j + 1]);
  ctx.stroke();
}

function redraw() {
  ctx.setTransform(1, 0, 0, 1, 0, 0);
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  pen();
  for (const s of strokes) drawPart(s, 0);
  if (current) drawPart(current, 0);
}

function sheetPoint(e) {
  const r = canvas.getBoundingClientRect();
  const clamp = (v) => Math.min(SHEET - 1, Math.max(0, Math.round(v)));
  return [clamp(((e.clientX - r.left) * SHEET) / r.width), clamp(((e.clientY - r.top) * SHEET) / r.height)];
}

canvas.addEventListener("pointerdown", (e) => {
  if (current || (e.pointerType === "mouse" && e.button !== 0)) return;
  e.preventDefault();
  canvas.setPointerCapture(e.pointerId);
  pointer = e.pointerId;
  current = sheetPoint(e);
  drawPart(current, 0);
});

canvas.addEventListener("pointermove", (e) => {
  if (!current || e.pointerId !== pointer) return;
  e.preventDefault();
  const n = current.length;
  const [x, y] = sheetPoint(e);
  if (x === current[n - 2] && y === current[n - 1]) return;
  current.push(x, y);
  drawPart(current, n / 2);
});

function penUp(e) {
  if (!current || e.pointerId !== pointer) return;
  strokes.push(current);
  current = null;
  pointer = null;
  changed(e.timeStamp);
}
canvas.addEventListener("pointerup", penUp);
canvas.addEventListener("pointercancel", penUp);
// touch: no scrolling, zooming or long-press menu while a finger writes on the sheet
canvas.addEventListener("touchstart", (e) => e.preventDefault(), { passive: false });
canvas.addEventListener("contextmenu", (e) => e.preventDefault());
new ResizeObserver(fitCanvas).observe(canvas);

// ----- recognition -------------------------------------------------------------------------

function changed(upTime) {
  const mine = ++seq;
  root.dataset.seq = String(mine);
  if (!strokes.length) {
    show(mine, { candidates: [], preview: null, status: EMPTY_STATUS });
    return;
  }
  const t = { seq: mine, strokes: strokes.length, up: upTime ?? performance.now() };
  const request = { seq: mine, strokes, model: modelSelect ? modelSelect.value : null };
  t.send = performance.now();
  server.recognize_strokes(request).then((r) => {
    t.recv = performance.now();
    if (!r || r.error) {
      if (mine === seq) setStatus(r ? r.error : "The server did not answer; draw again.");
      return;
    }
    Object.assign(t, r.timing);
    if (mine !== seq) {
      t.dropped = true; // a newer drawing is on the sheet: never show this one
      timings.push(t);
      return;
    }
    show(mine, r);
    t.dom = performance.now();
    // after the next frame is painted: requestAnimationFrame runs just before the paint
    requestAnimationFrame(() =>
      setTimeout(() => {
        t.painted = performance.now();
        timings.push(t);
      }, 0),
    );
  });
}

function show(mine, r) {
  const buttons = r.candidates.map((c, i) => {
    const b = document.createElement("button");
    b.type = "button";
    b.className = i === 0 ? "hccr-cand hccr-top" : "hccr-cand";
    b.textContent = c.char; // the accessible name is the character itself
    b.title = `${c.char}  ${(100 * c.prob).toFixed(1)}%`;
    b.dataset.prob = String(c.prob);
    b.style.setProperty("--p", String(c.prob));
    b.addEventListener("click", () => pick(c.char));
    return b;
  });
  cands.replaceChildren(...buttons);
  cands.classList.toggle("hccr-empty", !buttons.length);
  if (r.preview) {
    previewImg.src = r.preview;
    previewImg.hidden = false;
  } else {
    previewImg.hidden = true;
    previewImg.removeAttribute("src");
  }
  setStatus(r.status);
  root.dataset.shown = String(mine);
}

// ----- actions -----------------------------------------------------------------------------

function clearSheet() {
  strokes = [];
  current = null;
  pointer = null;
  redraw();
  changed();
}

function undoStroke() {
  if (!strokes.length) return;
  strokes.pop();
  redraw();
  changed();
}

function pick(ch) {
  text.value += ch;
  if (pickClears.checked) clearSheet();
}

async function copyText() {
  try {
    await navigator.clipboard.writeText(text.value);
  } catch {
    text.select(); // outside a secure context: the old way
    document.execCommand("copy");
  }
  setStatus(text.value ? `Copied "${text.value}".` : "Nothing to copy yet.");
}

$("hccr-clear").addEventListener("click", clearSheet);
$("hccr-undo").addEventListener("click", undoStroke);
$("hccr-copy").addEventListener("click", copyText);
$("hccr-backspace").addEventListener("click", () => {
  text.value = Array.from(text.value).slice(0, -1).join("");
});
$("hccr-clear-text").addEventListener("click", () => {
  text.value = "";
});
if (modelSelect) modelSelect.addEventListener("change", () => changed());

document.addEventListener("keydown", (e) => {
  const typing = e.target instanceof HTMLElement && e.target.closest("textarea, input, select");
  if (typing || e.altKey) return;
  if ((e.ctrlKey || e.metaKey) && !e.shiftKey && e.key.toLowerCase() === "z") {
    e.preventDefault();
    undoStroke();
  } else if (e.key === "Escape") {
    clearSheet();
  } else if (!e.ctrlKey && !e.metaKey && /^[0-9]$/.test(e.key)) {
    const b = cands.querySelectorAll("button")[(Number(e.key) + 9) % 10]; // 1..9, 0 = 10th
    if (b) b.click();
  }
});

fitCanvas();
setStatus(EMPTY_STATUS);
root.dataset.ready = "1";
