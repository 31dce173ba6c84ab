"""Writer adaptation in the demo: each browser session's picks teach the model that hand.

Every pick of a candidate (top-1 or a correction) is a labelled sample of the writer at that
browser session (`hccr.adapt.Adapter`). From `Adapter`'s minimum on (10 samples) the session
recognises with a style transfer mapping profile refitted after every pick (closed form, a few
ms). A profile can be downloaded and uploaded again later; one made for other weights or
another charset is refused with the library's one-line message.

All of it lives in memory, per model, keyed by a random id the page makes when it loads (the
panel's server functions are not told Gradio's session): dropped when the page is closed (the
panel says so as it goes), after `PAGE_IDLE_S` without a request, or when it is the least
recently used of more than `MAX_PAGES`. Nothing is written to disk. Without a profile,
recognition takes exactly the path it takes without this module. With one, it is passed per
call (the export cut at the feature layer's pre-activation, then the map, the ReLU and the
classifier), not set as a mapped export session: that would cost each pick 4-7 ms and each page
~8 MB.
"""

from __future__ import annotations

import base64
import binascii
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from demo.recognition import DrawingError, parse_strokes, prepare_drawing
from hccr.adapt import Adapter, ProfileError, StmConfig, WriterProfile
from hccr.charset import CharsetError
from hccr.recognizer import Recognizer

# A page holds its picks' features (0.5 kB a pick at d = 128) and a (d, d) map (64 kB); pages
# past this many are dropped, oldest first.
MAX_PAGES = 128
PAGE_IDLE_S = 3600.0  # an open page that sends nothing for an hour starts again
SESSION_ID = re.compile(r"[A-Za-z0-9-]{8,64}")
# A profile is a d x d float32 map plus metadata: 66 kB at d = 128; 1 MB allows d = 512. A model
# with a wider feature layer (the teacher's 1024-d FC: 4 MB) accepts twice its own map's bytes.
MAX_PROFILE_BYTES = 1024 * 1024


@dataclass
class WriterState:
    """One session's adaptation to one model."""

    adapter: Adapter
    fitted: WriterProfile | None = None  # from this session's picks
    uploaded: WriterProfile | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def picks(self) -> int:
        return self.adapter.num_samples

    @property
    def profile(self) -> WriterProfile | None:
        """The profile in use: whichever of the fitted and the uploaded one saw more characters."""
        candidates = [p for p in (self.fitted, self.uploaded) if p is not None]
        return max(candidates, key=lambda p: p.num_samples) if candidates else None


class PageWriters:
    """Per-session, per-model writer adaptation state, in memory only."""

    def __init__(self, max_pages: int = MAX_PAGES, idle_s: float = PAGE_IDLE_S) -> None:
        self.max_pages = max_pages
        self.idle_s = idle_s
        # session -> (last use, model name -> state), least recently used first
        self._pages: OrderedDict[str, tuple[float, dict[str, WriterState]]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._pages)

    def get(self, session: str, rec: Recognizer, create: bool = True) -> WriterState | None:
        """The state of `session` for `rec` (made on first use when `create`)."""
        now = time.monotonic()
        with self._lock:
            while self._pages:  # the idle ones go first (they are at the front)
                oldest, (used, _) = next(iter(self._pages.items()))
                if now - used <= self.idle_s:
                    break
                del self._pages[oldest]
            _, models = self._pages.pop(session, (now, {}))
            if not models and not create:
                return None
            self._pages[session] = (now, models)
            while len(self._pages) > self.max_pages:
                self._pages.popitem(last=False)
            state = models.get(rec.name)
            if state is None and create:
                state = models[rec.name] = WriterState(Adapter(rec))
            return state

    def profile(self, session: str, rec: Recognizer) -> WriterProfile | None:
        """The profile `session` recognises with on `rec`, if any (None makes no state)."""
        state = self.get(session, rec, create=False)
        return state.profile if state is not None else None

    def pick(self, session: str, rec: Recognizer, prepared: np.ndarray, char: str) -> WriterState:
        """Adds one labelled sample (the model's input as `prepare_drawing` makes it: an (S, S)
        ink map, or an online model's (C, S, S) trajectory maps; and the picked character) and
        refits once there are enough.

        Raises:
            DrawingError: `char` is not one of the model's characters.
        """
        state = self.get(session, rec)
        assert state is not None
        with state.lock:
            try:
                state.adapter.add(prepared, char)
            except (CharsetError, KeyError, ValueError) as e:
                raise DrawingError(f"cannot learn from {char!r}: {e}") from None
            if state.picks >= state.adapter.cfg.min_samples:
                state.fitted = state.adapter.fit("this session's picks")
        if state.profile is not None:
            # checks the profile and makes its tensors now, not on the next pen-up
            rec.recognize_prepared(prepared[None], 1, profile=state.profile)
        return state

    def reset(self, session: str, rec: Recognizer) -> None:
        """Forgets the session's picks and profiles for `rec`."""
        state = self.get(session, rec, create=False)
        if state is not None:
            with state.lock:
                state.adapter.reset()
                state.fitted = state.uploaded = None

    def drop(self, session: str) -> None:
        """Forgets everything of a session (its page was closed)."""
        with self._lock:
            self._pages.pop(session, None)

    def download(self, session: str, rec: Recognizer) -> bytes:
        """The profile in use, as a file's bytes.

        Raises:
            DrawingError: the session has no profile yet.
        """
        profile = self.profile(session, rec)
        if profile is None:
            need = StmConfig().min_samples
            raise DrawingError(f"no profile yet: pick at least {need} characters first")
        return profile.to_bytes()

    def upload(self, session: str, rec: Recognizer, data: bytes, name: str) -> WriterState:
        """Uses an uploaded profile from now on (over this session's picks while it saw more).

        Raises:
            DrawingError: too large, not a profile, or made for other weights or charset.
        """
        limit = max_profile_bytes(rec)
        if len(data) > limit:
            raise DrawingError(
                f"{name}: {len(data):,} bytes; profiles up to {limit:,} bytes are accepted"
            )
        try:
            profile = rec.load_profile(WriterProfile.from_bytes(data, name))
        except ProfileError as e:
            raise DrawingError(str(e).replace("writer profile:", f"{name}:", 1)) from None
        state = self.get(session, rec)
        assert state is not None
        with state.lock:
            state.uploaded = profile
        side = rec.norm.size
        rec.recognize_prepared(np.zeros((1, rec.channels, side, side), np.uint8), 1,
                               profile=profile)  # fmt: skip
        return state


def adaptation_status(state: WriterState | None, rec: Recognizer) -> dict[str, Any]:
    """What the panel shows about the session's adaptation."""
    need = state.adapter.cfg.min_samples if state is not None else StmConfig().min_samples
    picks = state.picks if state is not None else 0
    profile = state.profile if state is not None else None
    if profile is not None:
        where = " (uploaded profile)" if profile is state.uploaded else ""  # type: ignore[union-attr]
        text = f"Adapted to your hand: {profile.num_samples} characters{where}."
    elif picks:
        text = f"Learning your hand: {picks} of {need} picks before it adapts."
    else:
        text = f"Each pick teaches the model your hand; it adapts after {need} picks."
    return {"adapted": profile is not None, "characters": profile.num_samples if profile else 0,
            "picks": picks, "text": text}  # fmt: skip


def max_profile_bytes(rec: Recognizer) -> int:
    """The largest profile file `rec` accepts: MAX_PROFILE_BYTES, or twice its own d x d map."""
    d = rec.feat_dim
    return max(MAX_PROFILE_BYTES, 2 * 4 * (d * d + d))


def decode_upload(data: Any, limit: int = MAX_PROFILE_BYTES) -> bytes:
    """A profile sent by the panel as base64 text, of at most `limit` bytes once decoded.

    Raises:
        DrawingError: not base64 text, or too long.
    """
    if not isinstance(data, str):
        raise DrawingError("expected the profile as base64 text")
    if len(data) > limit * 4 // 3 + 4:
        raise DrawingError(f"profiles up to {limit:,} bytes are accepted")
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise DrawingError("the profile is not valid base64") from None


def session_id(request: dict[str, Any]) -> str:
    """The page's session id from a panel request.

    Raises:
        DrawingError: missing or malformed.
    """
    sid = request.get("session")
    if not isinstance(sid, str) or not SESSION_ID.fullmatch(sid):
        raise DrawingError("no valid session id; reload the page")
    return sid


def writer_functions(
    writers: PageWriters, recognizer: Callable[[str | None], Recognizer]
) -> list[Callable[[Any], dict[str, Any]]]:
    """The panel's server functions for adaptation; each takes {"session", "model", ...} and
    answers {"adapt": adaptation_status(...)} or {"error": message}.

    Args:
        recognizer: model name (None: the first) -> its Recognizer.
    """

    def handler(fn: Callable[[str, Recognizer, dict[str, Any]], dict[str, Any]]) -> Callable:
        def run(request: Any) -> dict[str, Any]:
            try:
                if not isinstance(request, dict):
                    raise DrawingError("expected {session, model, ...}")
                rec = recognizer(request.get("model"))
                return fn(session_id(request), rec, request)
            except DrawingError as e:
                return {"error": str(e)}

        run.__name__ = fn.__name__  # the JS calls it by this name
        return run

    def pick(sid: str, rec: Recognizer, request: dict[str, Any]) -> dict[str, Any]:
        char = request.get("char")
        if not isinstance(char, str) or len(char) != 1:
            raise DrawingError("a pick is one character")
        parsed = parse_strokes(request.get("strokes"))
        if not parsed:
            raise DrawingError("nothing on the sheet to learn from")
        prepared = prepare_drawing(rec, parsed)
        return {"adapt": adaptation_status(writers.pick(sid, rec, prepared, char), rec)}

    def adapt_status(sid: str, rec: Recognizer, request: dict[str, Any]) -> dict[str, Any]:
        return {"adapt": adaptation_status(writers.get(sid, rec, create=False), rec)}

    def adapt_reset(sid: str, rec: Recognizer, request: dict[str, Any]) -> dict[str, Any]:
        writers.reset(sid, rec)
        return {"adapt": adaptation_status(None, rec)}

    def profile_download(sid: str, rec: Recognizer, request: dict[str, Any]) -> dict[str, Any]:
        data = writers.download(sid, rec)
        name = re.sub(r"[^A-Za-z0-9._-]+", "-", rec.name).strip("-") or "model"
        return {"name": f"{name}-my-hand.profile", "data": base64.b64encode(data).decode(),
                "adapt": adaptation_status(writers.get(sid, rec, create=False), rec)}  # fmt: skip

    def profile_upload(sid: str, rec: Recognizer, request: dict[str, Any]) -> dict[str, Any]:
        name = request.get("name")
        name = name if isinstance(name, str) and name else "uploaded profile"
        data = decode_upload(request.get("data"), max_profile_bytes(rec))
        state = writers.upload(sid, rec, data, name[:200])
        return {"adapt": adaptation_status(state, rec)}

    def end_session(sid: str, rec: Recognizer, request: dict[str, Any]) -> dict[str, Any]:
        writers.drop(sid)
        return {}

    return [handler(f) for f in (pick, adapt_status, adapt_reset, profile_download,
                                 profile_upload, end_session)]  # fmt: skip
