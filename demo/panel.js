// The handwriting panel (run by gr.HTML's js_on_load: `element` is the panel, `server` calls
// the Python functions given as server_functions). The sheet keeps the strokes as point lists
// in a fixed 400 x 400 coordinate system and draws them; each pen-up sends the strokes of the
// character (one small JSON request), and a reply for an older drawing than the one on the
// sheet is dropped. Every pick is also sent, with its strokes, as a labelled sample of this
// page's writer (demo/writer.py), under a random id made here: the server adapts the model to
// this page once it has enough, and forgets it when the page is closed. Timings of every request go to window.hccrTimings (bench/demo_latency.py).
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
const adaptStatus = $("hccr-adapt-status");
const downloadBtn = $("hccr-profile-download");
const profileFile = $("hccr-profile-file");
// this page's writer: random, and made with getRandomValues, which (unlike randomUUID) plain
// http on a LAN address allows
const SESSION = Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) =>
  b.toString(16).padStart(2, "0"),
).join("");

let strokes = []; // finished strokes of the character on the sheet: [x0, y0, x1, y1, ...]
let current = null; // the stroke being drawn
let pointer = null; // the pointer drawing it (a second finger is ignored)
let seq = 0; // bumped by every change of the drawing; replies carry it back
let learned = -1; // the drawing (seq) last sent as a sample: picking twice teaches it once

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
  const request = { seq: mine, strokes, model: model(), session: SESSION };
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

function model() {
  return modelSelect ? modelSelect.value : null;
}

function pick(ch) {
  text.value += ch;
  if (strokes.length && learned !== seq) {
    learned = seq;
    const request = { session: SESSION, model: model(), strokes: strokes.slice(), char: ch };
    server.pick(request).then(showAdapt);
  }
  if (pickClears.checked) clearSheet();
}

// ----- adaptation to this writer ------------------------------------------------------------

function showAdapt(r) {
  if (!r || r.error) {
    adaptStatus.textContent = r ? r.error : "The server did not answer.";
    adaptStatus.classList.add("hccr-error");
    return;
  }
  adaptStatus.classList.remove("hccr-error");
  adaptStatus.textContent = r.adapt.text;
  downloadBtn.disabled = !r.adapt.adapted;
  root.dataset.adapted = String(r.adapt.characters);
  root.dataset.picks = String(r.adapt.picks);
}

function refreshAdapt() {
  server.adapt_status({ session: SESSION, model: model() }).then(showAdapt);
}

async function downloadProfile() {
  const r = await server.profile_download({ session: SESSION, model: model() });
  if (!r || r.error) return showAdapt(r);
  const bytes = Uint8Array.from(atob(r.data), (c) => c.charCodeAt(0));
  const url = URL.createObjectURL(new Blob([bytes], { type: "application/octet-stream" }));
  const a = document.createElement("a");
  a.href = url;
  a.download = r.name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

async function uploadProfile() {
  const file = profileFile.files[0];
  profileFile.value = ""; // the same file again is a new choice
  if (!file) return;
  const bytes = new Uint8Array(await file.arrayBuffer());
  let bin = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    bin += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  const request = { session: SESSION, model: model(), name: file.name, data: btoa(bin) };
  showAdapt(await server.profile_upload(request));
  if (strokes.length) changed(); // the drawing on the sheet, recognised with the profile
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
$("hccr-adapt-reset").addEventListener("click", () => {
  server.adapt_reset({ session: SESSION, model: model() }).then((r) => {
    showAdapt(r);
    if (strokes.length) changed();
  });
});
downloadBtn.addEventListener("click", downloadProfile);
$("hccr-profile-upload").addEventListener("click", () => profileFile.click());
profileFile.addEventListener("change", uploadProfile);
// the page is going: the server forgets its writer now rather than after an idle hour
window.addEventListener("pagehide", () => server.end_session({ session: SESSION, model: model() }));
// back from the browser's page cache: the server has forgotten it, and the panel says so
window.addEventListener("pageshow", (e) => {
  if (e.persisted) refreshAdapt();
});
if (modelSelect) {
  modelSelect.addEventListener("change", () => {
    changed();
    refreshAdapt();
  });
}

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
refreshAdapt();
root.dataset.ready = "1";
