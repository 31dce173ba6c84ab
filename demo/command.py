"""Serve the handwriting panel demo (Gradio) on 127.0.0.1.

Write a character on the sheet; the top-10 candidates update after every stroke; pick one to
add it to the text and write the next. Without --model the panel starts on the shipped online
bundle (gb1-online: it reads the pen strokes themselves), else the shipped image bundle
(gb1-student), or, until one ships, an untrained placeholder (the page says so). The model picker
offers every bundle in models/; an image sent to the API while an online bundle is picked is read
by the image bundle.

  hccr demo
  hccr demo --model gb1-teacher --port 7861
"""

from __future__ import annotations

import argparse
import os


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None,
                        help="bundle name in models/, bundle folder or run folder (default: gb1-online, else gb1-student)")  # fmt: skip
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default: 127.0.0.1, this machine only)")  # fmt: skip
    parser.add_argument("--port", type=int, default=7860, help="port (default: 7860)")


def run(args: argparse.Namespace) -> int:
    # One thread for numpy's BLAS, read when numpy loads (not yet: imported below): the demo
    # answers each request on one thread, and a page's profile refit (a 128 x 128 solve) took
    # ~200 ms with OpenBLAS's threads on a busy 2-core machine, 0.4 ms on one.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from demo.recognition import upload_folder

    # Gradio's files (uploads, its cache) go to the demo's own temporary folder, removed when
    # the demo stops; set before gradio is imported, which reads it at import.
    with upload_folder():
        from demo.app import serve  # gradio is imported only by this command

        serve(args.model, args.host, args.port)
    return 0
