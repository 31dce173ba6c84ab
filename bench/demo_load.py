"""Demo under load: C concurrent clients x R requests each against `hccr demo` on 127.0.0.1.

Starts the demo as a subprocess (`python -m hccr.cli demo`), waits until it answers, then C
threads each send R characters:
  --via strokes (default): the handwriting panel's own request, the strokes of a character as
    JSON posted to Gradio's component server (what the page sends on every pen-up);
  --via image: a PNG of the drawing (RGBA, transparent background) through `gradio_client` and
    the `/recognize` image API (upload, then the queue).
Prints client-side latency (p50/p95/max, including queueing), the server-side recognition time
each reply reports (preprocess + model, p50/p95), throughput and the error count.

  python bench/demo_load.py                          # 20 clients x 50 requests, the demo's default model
  python bench/demo_load.py --clients 5 --requests 20 --via image --model gb1-teacher
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
from demo_latency import (  # bench/ is on sys.path as the script's folder
    free_port,
    stop_demo,
    wait_ready,
)

CHARS = "永一十人口日月山水火大中国我你好学生天"


def _strokes(ch: str) -> list[list[int]]:
    """`ch` as the panel sends it: integer points on the 400 x 400 sheet, 60 px margins."""
    from data_tools.strokes import load_medians

    return [np.rint(60 + s * 280).astype(int).ravel().tolist() for s in load_medians().get(ch)]


def _drawings(folder: Path, count: int) -> list[Path]:
    from PIL import Image

    from demo.recognition import parse_strokes, strokes_image

    paths = []
    for i, ch in enumerate(CHARS[:count]):
        path = folder / f"{i:02d}.png"
        Image.fromarray(strokes_image(parse_strokes(_strokes(ch))), "RGBA").save(path)
        paths.append(path)
    return paths


class StrokesClient:
    """The panel's request: POST the strokes to Gradio's component server, JSON back."""

    def __init__(self, url: str) -> None:
        with urllib.request.urlopen(url + "config", timeout=30) as r:
            config = json.load(r)
        self.component = next(c["id"] for c in config["components"]
                              if c.get("props", {}).get("elem_id") == "hccr-panel")  # fmt: skip
        self.endpoint = url + "gradio_api/component_server/"
        self.session = os.urandom(8).hex()

    def predict(self, strokes: list[list[int]]) -> dict:
        body = json.dumps({"data": {"seq": 1, "strokes": strokes, "model": None},
                           "component_id": self.component, "fn_name": "recognize_strokes",
                           "session_hash": self.session}).encode()  # fmt: skip
        request = urllib.request.Request(self.endpoint, data=body,
                                         headers={"Content-Type": "application/json"})  # fmt: skip
        with urllib.request.urlopen(request, timeout=60) as r:
            return json.load(r)


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="bundle (default: the demo's default)")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--requests", type=int, default=50, help="requests per client")
    parser.add_argument("--via", choices=("strokes", "image"), default="strokes",
                        help="the panel's strokes request, or the image API (default: strokes)")  # fmt: skip
    args = parser.parse_args(argv)

    from gradio_client import Client, handle_file

    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    cmd = [sys.executable, "-m", "hccr.cli", "demo", "--port", str(port)]
    if args.model:
        cmd += ["--model", args.model]
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"}
    with tempfile.TemporaryDirectory(prefix="hccr-demo-load-") as tmp:
        drawings = _drawings(Path(tmp), 20)
        strokes = [_strokes(ch) for ch in CHARS[:20]]
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True)  # fmt: skip
        try:
            wait_ready(url, proc)
            latencies: list[float] = []
            server_ms: list[float] = []
            errors: list[str] = []
            lock = threading.Lock()
            model_name = ""

            def client_loop(k: int) -> None:
                nonlocal model_name
                try:
                    client = Client(url, verbose=False) if args.via == "image" else None
                    panel = StrokesClient(url) if args.via == "strokes" else None
                except Exception as e:  # connection problems count as errors, like failed calls
                    with lock:
                        errors.extend([f"client {k}: {e}"] * args.requests)
                    return
                for r in range(args.requests):
                    i = (k + r) % len(drawings)
                    start = time.perf_counter()
                    try:
                        if panel is not None:
                            out = panel.predict(strokes[i])
                            if out.get("error"):
                                raise RuntimeError(out["error"])
                        else:
                            out = client.predict(
                                handle_file(str(drawings[i])), api_name="/recognize"
                            )
                    except Exception as e:
                        with lock:
                            errors.append(f"client {k} request {r}: {type(e).__name__}: {e}")
                        continue
                    elapsed = (time.perf_counter() - start) * 1000
                    with lock:
                        latencies.append(elapsed)
                        server_ms.append(out["timing"]["recognition_ms"])
                        model_name = out["model"]
                        if not out["candidates"]:
                            errors.append(f"client {k} request {r}: empty result")

            threads = [threading.Thread(target=client_loop, args=(k,)) for k in range(args.clients)]
            start = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            wall = time.perf_counter() - start
        finally:
            stop_demo(proc)

    total = args.clients * args.requests
    print(f"model: {model_name or args.model or 'default'}; {os.cpu_count()} CPUs; "
          f"{args.clients} clients x {args.requests} requests = {total}, via {args.via}")  # fmt: skip
    print(f"errors: {len(errors)}")
    for line in errors[:5]:
        print(f"  {line}")
    print(f"throughput: {len(latencies) / wall:.1f} requests/s over {wall:.1f} s")
    print(f"client latency ms: p50 {_pct(latencies, 50):.0f}  p95 {_pct(latencies, 95):.0f}  "
          f"max {max(latencies, default=float('nan')):.0f}")  # fmt: skip
    print(f"server-side recognition ms (preprocess + model): p50 {_pct(server_ms, 50):.1f}  "
          f"p95 {_pct(server_ms, 95):.1f}")  # fmt: skip
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
