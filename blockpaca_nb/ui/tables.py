"""Data tables that send only what changed: the Python half of the quotes, positions, trade and
error panels (the browser half is ``table.js``).

A panel's rows live in two places: here, as the rows last sent (:class:`RowDiff`), and in the
browser, in one store per widget model that every view of it reads. Each refresh sends one
*patch* — the rows added or changed and the keys removed since the previous patch — by setting
the ``patch`` trait once (one comm message). A patch names the patch it follows (``base``); a
browser store that missed one (a page reloaded, a model created late) asks for a full copy, and
a full copy (``reset``) is also sent every ``keyframe_s`` seconds, so a view recovers even while
the kernel is busy with a cell and cannot answer its request.
"""

from __future__ import annotations

import math
import pathlib
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import anywidget
import traitlets

HERE = pathlib.Path(__file__).parent


def front_end(module: str) -> str:
    """A panel's browser module with common.js (what the panels share) in front of it: an anywidget
    module cannot import a file beside it."""
    return (HERE / "common.js").read_text() + "\n" + (HERE / module).read_text()

KEYFRAME_S = 20.0

Row = tuple[Any, ...]


def clean(value: Any, digits: int = 6) -> Any:
    """A JSON-safe cell: NaN and infinities become None, floats are rounded (shorter messages)."""
    if isinstance(value, float):
        return round(value, digits) if math.isfinite(value) else None
    return value


class RowDiff:
    """The rows a panel last sent, by key; :meth:`patch` says what changed since.

    Not thread-safe on purpose: only the dashboard's pump calls :meth:`patch`. :meth:`request_full`
    may be called from any thread (it only raises a flag).
    """

    def __init__(self, keyframe_s: float = KEYFRAME_S) -> None:
        self.seq = 0
        self._sent: dict[str, Row] = {}
        self._footer: Mapping[str, Any] | None = None
        self._full_due = True
        self._keyframe_s = keyframe_s
        self._last_full = 0.0

    def request_full(self) -> None:
        """Make the next patch a full copy (a browser store asked for one)."""
        self._full_due = True

    def patch(
        self, rows: Mapping[str, Row], footer: Mapping[str, Any] | None = None, now: float | None = None
    ) -> dict[str, Any] | None:
        """The patch from the rows last sent to ``rows`` (None when nothing changed)."""
        now = time.time() if now is None else now
        full = self._full_due or now - self._last_full >= self._keyframe_s
        if full:
            upsert = [[key, list(row)] for key, row in rows.items()]
            removed: list[str] = []
        else:
            sent = self._sent
            upsert = [[key, list(row)] for key, row in rows.items() if sent.get(key) != row]
            removed = [key for key in sent if key not in rows]
            if not upsert and not removed and footer == self._footer:
                return None
        self._sent = dict(rows)
        self._footer = footer
        self.seq += 1
        if full:
            self._full_due, self._last_full = False, now
        return {
            "seq": self.seq,
            "base": self.seq - 1,
            "reset": full,
            "upsert": upsert,
            "remove": removed,
            "footer": dict(footer) if footer is not None else None,
            "now": round(now, 3),
        }


class TablePanel(anywidget.AnyWidget):
    """A titled, sortable table of keyed rows, fed by diffs (see the module docstring).

    ``columns`` describe what the browser shows: ``key`` (a value of ``fields``, ``"key"`` for
    the row key, or a derived value: ``mid``, ``spread_bps``, ``change_pct``, ``age``), ``label``,
    ``kind`` (how to format: text, price, qty, money, pct, bps, time, age), optional ``color``
    (``"sign"``), ``flash`` (flash the cell when it changes) and ``title`` (tooltip). ``fields``
    name the values of each row, in order.
    """

    _esm = front_end("table.js")
    _css = HERE / "dashboard.css"

    uid = traitlets.Unicode().tag(sync=True)
    title = traitlets.Unicode().tag(sync=True)
    note = traitlets.Unicode().tag(sync=True)
    columns = traitlets.List(traitlets.Dict()).tag(sync=True)
    fields = traitlets.List(traitlets.Unicode()).tag(sync=True)
    sort = traitlets.Dict().tag(sync=True)
    height = traitlets.Int(300).tag(sync=True)
    empty_text = traitlets.Unicode("nothing yet").tag(sync=True)
    patch = traitlets.Dict().tag(sync=True)

    def __init__(self, *, columns: Sequence[Mapping[str, Any]], fields: Sequence[str], **kwargs: Any) -> None:
        super().__init__(columns=[dict(c) for c in columns], fields=list(fields), uid=uuid.uuid4().hex, **kwargs)
        self._diff = RowDiff()
        self._lock = threading.Lock()
        self.messages = 0
        self.on_msg(self._on_front_end_message)

    def publish(
        self, rows: Mapping[str, Row], footer: Mapping[str, Any] | None = None, now: float | None = None
    ) -> bool:
        """Send what changed since the last call (one message at most); True if something was sent."""
        with self._lock:
            patch = self._diff.patch(rows, footer, now)
            if patch is None:
                return False
            self.patch = patch
            self.messages += 1
            return True

    def _on_front_end_message(self, _widget: Any, content: Any, _buffers: Any) -> None:
        """A browser store lost track (reload, late start): send it everything next refresh."""
        if isinstance(content, dict) and content.get("type") == "resync":
            self._diff.request_full()
