"""Demo under load: C concurrent Gradio clients x R requests each against `hccr demo` on 127.0.0.1.

Starts the demo as a subprocess (`python -m demo.app`, i.e. `hccr demo`), waits until it answers,
then C threads each open a `gradio_client.Client` and send R canvas drawings (RGBA PNGs of
pen-rendered characters, transparent background, like the Sketchpad's) to the `/recognize`
endpoint, the same handler the canvas' change event calls. Prints client-side latency
(p50/p95/max, including queueing), the server-side recognition time each reply reports
(preprocess + model, p50/p95), throughput and the error count.

  python bench/demo_load.py                          # 20 clients x 50 requests, default model
  python bench/demo_load.py --clients 5 --requests 20 --model gb1-teacher
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np

CHARS = "永一十人口日月山水火大中国我你好学生天"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _drawings(folder: Path, count: int) -> list[Path]:
    from PIL import Image

    from data_tools.render import render_strokes
    from data_tools.strokes import load_medians

    medians = load_medians()
    paths = []
    for i, ch in enumerate(CHARS[:count]):
        ink = render_strokes(medians.get(ch), pen_width=0.035, canvas=400)
        rgba = np.zeros((400, 400, 4), np.uint8)
        rgba[..., 3] = ink  # black ink, transparent background
        path = folder / f"{i:02d}.png"
        Image.fromarray(rgba, "RGBA").save(path)
        paths.append(path)
    return paths


def _wait_ready(url: str, proc: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"demo exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"demo did not answer on {url} within {timeout:.0f} s")


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="bundle (default: the demo's default)")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--requests", type=int, default=50, help="requests per client")
    args = parser.parse_args(argv)

    from gradio_client import Client, handle_file

    port = _free_port()
    url = f"http://127.0.0.1:{port}/"
    cmd = [sys.executable, "-m", "demo.app", "--port", str(port)]
    if args.model:
        cmd += ["--model", args.model]
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"}
    with tempfile.TemporaryDirectory(prefix="hccr-demo-load-") as tmp:
        drawings = _drawings(Path(tmp), 20)
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True)  # fmt: skip
        try:
            _wait_ready(url, proc)
            latencies: list[float] = []
            server_ms: list[float] = []
            errors: list[str] = []
            lock = threading.Lock()
            model_name = ""

            def client_loop(k: int) -> None:
                nonlocal model_name
                try:
                    client = Client(url, verbose=False)
                except Exception as e:  # connection problems count as errors, like failed calls
                    with lock:
                        errors.extend([f"client {k}: {e}"] * args.requests)
                    return
                for r in range(args.requests):
                    path = drawings[(k + r) % len(drawings)]
                    value = {"background": None, "layers": [], "composite": handle_file(str(path))}
                    start = time.perf_counter()
                    try:
                        label, _, status = client.predict(value, api_name="/recognize")
                    except Exception as e:
                        with lock:
                            errors.append(f"client {k} request {r}: {type(e).__name__}: {e}")
                        continue
                    elapsed = (time.perf_counter() - start) * 1000
                    m = re.search(r"in ([\d.]+) ms by (.+) \((\w+)\)\.$", status or "")
                    with lock:
                        latencies.append(elapsed)
                        if m:
                            server_ms.append(float(m.group(1)))
                            model_name = f"{m.group(2)} ({m.group(3)})"
                        if not label or not label.get("confidences"):
                            errors.append(f"client {k} request {r}: empty result")

            threads = [threading.Thread(target=client_loop, args=(k,)) for k in range(args.clients)]
            start = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            wall = time.perf_counter() - start
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()

    total = args.clients * args.requests
    print(f"model: {model_name or args.model or 'default'}; {os.cpu_count()} CPUs; "
          f"{args.clients} clients x {args.requests} requests = {total}")  # fmt: skip
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
