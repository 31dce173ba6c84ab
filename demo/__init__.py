"""The hccr drawing demo (Gradio); `demo.app.build_demo(recognizer)` builds it, `hccr demo` serves it."""

import os

# Read when gradio is imported: the demo never phones home (no usage analytics, no version check).
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
