"""Demo latency in a real browser: pen-up to candidates on screen, and where the time goes.

Starts `hccr demo` as a subprocess on 127.0.0.1 (one server, one user), opens it in headless
Chromium (1280 x 900) and writes `--chars` characters stroke by stroke with the mouse, as a hand
draws them (`bench/drawn_input.py`'s mouse strokes: random size, slant, wobble, mouse-event
spacing), pausing `--pause-ms` after each stroke's candidates appear, as a writer does. Per
stroke it reports, timed in the page (performance.now) and by the server:

  before request   pen-up event -> the request is sent (the page's own work)
  request          round trip minus the server's queue and recognition: HTTP and Gradio's
                   routing, and in the handler inking the strokes, the preview PNG, the reply
  queue            waiting for a free recognition slot on the server
  recognition      Recognizer.prepare + the model
  project share    request + queue + recognition + response (the round trip)
  rendering        reply received -> candidates in the page and the next frame painted
  pen-up -> shown  the whole, as a writer sees it

and counts the HTTP requests per stroke and their bytes (request and response bodies, from the
browser's network events). `--app-rev REV` instead measures the demo as it was at git revision
REV (its `demo/` package run beside this checkout's `hccr`), timing pen-up to the last change of
the candidates (`#hccr-candidates`), for a before/after comparison; the breakdown needs the
panel's own timings and is shown for this checkout only.

  python bench/demo_latency.py                       # 30 characters, the demo's default model
  python bench/demo_latency.py --app-rev 06ecc67     # the Sketchpad demo, same strokes
  python bench/demo_latency.py --chars 4 --screenshots docs/   # also the README's screenshots
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CHARS = "永字我你他的是不了在人有这中大来上国和到说们为子年生学天地下"  # 30
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update"]  # fmt: skip
# Works on any version of the demo: pen-ups and changes to the candidates, timed in the page.
PROBE_JS = """
window.hccrProbe = {ups: [], changes: []};
document.addEventListener('pointerup', (e) => window.hccrProbe.ups.push(e.timeStamp), true);
const watch = setInterval(() => {
  const box = document.querySelector('#hccr-candidates');
  if (!box) return;
  clearInterval(watch);
  new MutationObserver(() => window.hccrProbe.changes.push(performance.now()))
    .observe(box, {childList: true, subtree: true, characterData: true, attributes: true});
}, 50);
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_demo(proc: subprocess.Popen) -> None:
    """SIGTERM (the demo removes its temporary folder), then SIGKILL after 20 s."""
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 180) -> None:
    """Waits until the demo answers on `url` (bench/demo_load.py uses it too)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            output = proc.stdout.read() if proc.stdout else ""
            raise SystemExit(f"demo exited with {proc.returncode}: {output}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.3)
    raise SystemExit(f"demo did not answer on {url} within {timeout:.0f} s")


def start_demo(port: int, model: str | None, app_rev: str | None, tmp: Path) -> subprocess.Popen:
    """`hccr demo` (this checkout), or REV's `demo/` package beside this checkout's hccr."""
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"}
    cwd = REPO
    if app_rev:
        old = tmp / "old"
        old.mkdir()
        archive = subprocess.run(["git", "-C", str(REPO), "archive", app_rev, "demo"],
                                 check=True, capture_output=True).stdout  # fmt: skip
        subprocess.run(["tar", "-x", "-C", str(old)], input=archive, check=True)
        env["PYTHONPATH"] = os.pathsep.join([str(old), str(REPO)])
        cmd = [sys.executable, "-m", "demo.app", "--port", str(port)]
        cwd = old  # `-m` puts the working folder first on sys.path
    else:
        env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
        cmd = [sys.executable, "-m", "hccr.cli", "demo", "--port", str(port)]
    if model:
        cmd += ["--model", model]
    return subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)  # fmt: skip


def sheet_selector(page) -> str:
    for sel in ("#hccr-sheet", "#hccr-canvas canvas"):
        if page.locator(sel).count():
            return sel
    raise SystemExit("no drawing sheet on the page")


def drawing_box(page, sel: str, panel: bool) -> dict:
    """Where to write: the whole sheet, or a centred square well inside the Sketchpad's canvas
    (its element is larger than the drawable 400 x 400 area)."""
    box = page.locator(sel).first.bounding_box()
    if panel:
        return box
    side = 0.7 * min(box["width"], box["height"])
    return {"x": box["x"] + (box["width"] - side) / 2, "y": box["y"] + (box["height"] - side) / 2,
            "width": side, "height": side}  # fmt: skip


def draw_stroke(page, points: np.ndarray, box: dict, side: int, touch=None) -> None:
    xy = [(box["x"] + float(x) * box["width"] / side, box["y"] + float(y) * box["height"] / side)
          for x, y in points]  # fmt: skip
    if touch is not None:  # a finger, through CDP touch events
        for kind, pts in [("touchStart", xy[:1]), *[("touchMove", [p]) for p in xy[1:]]]:
            touch.send("Input.dispatchTouchEvent",
                       {"type": kind, "touchPoints": [{"x": x, "y": y} for x, y in pts]})  # fmt: skip
        touch.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
        return
    page.mouse.move(*xy[0])
    page.mouse.down()
    for p in xy[1:]:
        page.mouse.move(*p)
    page.mouse.up()


def wait_for_candidates(page, panel: bool, quiet_ms: int = 600, timeout_ms: int = 8000) -> None:
    if panel:  # the panel says when the reply for the drawing on the sheet is shown
        page.wait_for_function(
            """() => { const r = document.querySelector('.hccr-root');
                       const t = window.hccrTimings || [];
                       return r.dataset.shown === r.dataset.seq
                              && t.some(x => String(x.seq) === r.dataset.seq); }""",
            timeout=timeout_ms,
        )
        return
    # any other page: until the candidates have not changed for quiet_ms
    page.wait_for_function(
        f"""() => {{ const c = window.hccrProbe.changes, u = window.hccrProbe.ups;
                     const last = c.length ? c[c.length - 1] : 0;
                     return last > u[u.length - 1] && performance.now() - last > {quiet_ms}; }}""",
        timeout=timeout_ms,
    )


def top1(page, panel: bool) -> str:
    if panel:
        names = page.locator("#hccr-candidates button").all_inner_texts()
    else:
        names = page.locator("#hccr-candidates .output-class").all_inner_texts()
    return names[0].strip() if names else ""


def clear(page, panel: bool) -> None:
    page.locator("#hccr-clear").click()
    page.wait_for_timeout(300 if panel else 1500)  # the Sketchpad resets asynchronously


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def _row(name: str, values: list[float]) -> str:
    return (f"| {name} | {_pct(values, 50):.1f} | {_pct(values, 95):.1f} | "
            f"{max(values, default=float('nan')):.1f} |")  # fmt: skip


def write_characters(page, args, panel: bool, requests: list) -> dict:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    from data_tools.strokes import load_medians

    sys.path.insert(0, str(REPO / "bench"))
    from drawn_input import mouse_strokes

    from demo.recognition import BRUSH_RADIUS, CANVAS_SIDE

    medians = load_medians()
    sel = sheet_selector(page)
    per_stroke: list[dict] = []
    right, misses = 0, []
    for i, ch in enumerate(args.chars_text[: args.chars]):
        box = drawing_box(page, sel, panel)
        side = round(box["width"])
        rng = np.random.default_rng([args.seed, i])
        strokes = mouse_strokes(medians.get(ch), rng, side, BRUSH_RADIUS * side / CANVAS_SIDE)
        for s in strokes:
            n_req = len(requests)
            ups = page.evaluate("window.hccrProbe.ups.length")
            draw_stroke(page, s, box, side)
            page.wait_for_function(f"window.hccrProbe.ups.length > {ups}")
            try:
                wait_for_candidates(page, panel)
                up = page.evaluate("window.hccrProbe.ups[window.hccrProbe.ups.length - 1]")
                shown = page.evaluate("Math.max(...window.hccrProbe.changes)") - up
            except PlaywrightTimeout:
                shown = None  # the candidates never changed after this stroke
            sent = requests[n_req:]
            per_stroke.append({
                "shown_ms": shown,
                "requests": len(sent),
                "uploads": sum("/upload" in r["url"] for r in sent),
                "up_bytes": sum(r["request"] for r in sent),
                "down_bytes": sum(r["response"] for r in sent),
            })  # fmt: skip
            page.wait_for_timeout(args.pause_ms)
        got = top1(page, panel)
        if got == ch:
            right += 1
        else:
            misses.append(f"{ch}->{got or '?'}")
        clear(page, panel)
    return {"strokes": per_stroke, "right": right, "misses": misses, "chars": i + 1}


def screenshots(browser, url: str, folder: Path) -> None:
    """The README's two layouts: desktop after a few characters, phone while writing one."""
    from data_tools.strokes import load_medians

    sys.path.insert(0, str(REPO / "bench"))
    from drawn_input import mouse_strokes

    from demo.recognition import BRUSH_RADIUS, CANVAS_SIDE

    medians = load_medians()
    folder.mkdir(parents=True, exist_ok=True)
    layouts = [
        ("demo-desktop.png", {"viewport": {"width": 1100, "height": 760}}, "你好中国", 0.55),
        ("demo-phone.png", {"viewport": {"width": 390, "height": 844}, "is_mobile": True,
                            "has_touch": True}, "字", 0.8),
    ]  # fmt: skip
    for name, options, text, scale in layouts:
        context = browser.new_context(**options)
        page = context.new_page()
        page.add_init_script(PROBE_JS)
        page.goto(url)
        page.wait_for_selector(".hccr-root[data-ready='1']", timeout=60_000)
        touch = context.new_cdp_session(page) if options.get("has_touch") else None
        for k, ch in enumerate(text):
            box = page.locator("#hccr-sheet").bounding_box()
            side = round(box["width"])
            rng = np.random.default_rng([7, k])
            for s in mouse_strokes(medians.get(ch), rng, side, BRUSH_RADIUS * side / CANVAS_SIDE):
                draw_stroke(page, s, box, side, touch)
                wait_for_candidates(page, True)
            if k < len(text) - 1:
                page.get_by_role("button", name=ch, exact=True).click()
                page.wait_for_timeout(200)
        path = folder / name
        page.screenshot(path=str(path))
        context.close()
        from PIL import Image

        with Image.open(path) as im:  # a small palette PNG for the repository
            small = im.convert("RGB").resize((round(im.width * scale), round(im.height * scale)),
                                             Image.LANCZOS)  # fmt: skip
            small.quantize(colors=64).save(path, optimize=True)
        print(f"wrote {path} ({path.stat().st_size // 1024} kB)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default=None, help="bundle (default: the demo's default)")
    parser.add_argument("--chars", type=int, default=30, help="characters to write")
    parser.add_argument("--chars-text", default=CHARS, help="the characters, in order")
    parser.add_argument("--seed", type=int, default=1, help="seed of the hand-drawn strokes")
    parser.add_argument("--pause-ms", type=int, default=150,
                        help="pause after each stroke's candidates, as a writer looks at them")  # fmt: skip
    parser.add_argument("--app-rev", default=None,
                        help="measure the demo of this git revision instead (before/after)")  # fmt: skip
    parser.add_argument("--screenshots", type=Path, default=None,
                        help="also write demo-desktop.png and demo-phone.png into this folder")  # fmt: skip
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    args = parser.parse_args(argv)

    from playwright.sync_api import sync_playwright

    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    with tempfile.TemporaryDirectory(prefix="hccr-demo-latency-") as tmp:
        proc = start_demo(port, args.model, args.app_rev, Path(tmp))
        try:
            wait_ready(url, proc)
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                page.add_init_script(PROBE_JS)
                requests: list[dict] = []

                def finished(request) -> None:
                    if request.url.startswith(url) and request.method == "POST":
                        sizes = request.sizes()
                        # a file upload's body is not in the network events; its length is
                        length = int(request.all_headers().get("content-length") or 0)
                        requests.append({"url": request.url,
                                         "request": max(sizes["requestBodySize"], length),
                                         "response": sizes["responseBodySize"]})  # fmt: skip

                page.on("requestfinished", finished)
                page.goto(url)
                page.wait_for_selector("#hccr-candidates", timeout=60_000)
                panel = page.locator(".hccr-root").count() > 0
                if panel:
                    page.wait_for_selector(".hccr-root[data-ready='1']")
                else:
                    page.wait_for_timeout(3000)  # the Sketchpad selects its brush
                run = write_characters(page, args, panel, requests)
                timings = page.evaluate("window.hccrTimings || []") if panel else []
                if args.screenshots:
                    screenshots(browser, url, args.screenshots)
                browser.close()
        finally:
            stop_demo(proc)

    strokes = run["strokes"]
    what = f"git revision {args.app_rev}" if args.app_rev else "this checkout"
    print(f"demo: {what}; model: {args.model or 'default'}; {os.cpu_count()} CPUs "
          f"({platform.processor() or platform.machine()}); Chromium headless 1280x900")  # fmt: skip
    print(f"{run['chars']} characters, {len(strokes)} strokes, top-1 of the final drawing "
          f"{run['right']}/{run['chars']} (missed: {' '.join(run['misses']) or 'none'})")  # fmt: skip
    req = [s["requests"] for s in strokes]
    uploads = [s["uploads"] for s in strokes]
    print(f"requests per stroke: mean {np.mean(req):.2f}, max {max(req)} (file uploads: mean "
          f"{np.mean(uploads):.2f}); bytes per stroke: "
          f"up p50 {_pct([s['up_bytes'] for s in strokes], 50):,.0f} / max "
          f"{max(s['up_bytes'] for s in strokes):,}, down p50 "
          f"{_pct([s['down_bytes'] for s in strokes], 50):,.0f}")  # fmt: skip
    print("\n| ms | p50 | p95 | max |\n| --- | ---: | ---: | ---: |")
    if panel:
        shown = [t for t in timings if "painted" in t]
        dropped = sum(1 for t in timings if t.get("dropped"))
        trip = [t["recv"] - t["send"] for t in shown]
        rows = [
            ("before request (page)", [t["send"] - t["up"] for t in shown]),
            ("request (HTTP, routing, inking, JSON)",
             [r - t["queue_ms"] - t["recognition_ms"] for r, t in zip(trip, shown, strict=True)]),
            ("  of which HTTP + Gradio routing",
             [r - t["server_ms"] for r, t in zip(trip, shown, strict=True)]),
            ("  of which inking + preview PNG + reply",
             [t["server_ms"] - t["queue_ms"] - t["recognition_ms"] for t in shown]),
            ("queue", [t["queue_ms"] for t in shown]),
            ("recognition", [t["recognition_ms"] for t in shown]),
            ("**project share** (round trip)", trip),
            ("rendering (to painted)", [t["painted"] - t["recv"] for t in shown]),
            ("**pen-up -> candidates painted**", [t["painted"] - t["up"] for t in shown]),
        ]  # fmt: skip
        for name, values in rows:
            print(_row(name, values))
        print(f"(replies dropped as stale: {dropped})")
    changed = [s["shown_ms"] for s in strokes if s["shown_ms"] is not None]
    print(_row("pen-up -> last change of the candidates", changed))
    if len(changed) < len(strokes):
        print(f"(strokes after which the candidates did not change: {len(strokes) - len(changed)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
