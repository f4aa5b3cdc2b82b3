"""Count what widgets send, without a kernel or a browser: the dashboard's rate budget, measured.

``with CommMeter() as meter:`` makes every widget created inside it talk to a counting comm
instead of a kernel's: each message is serialised to JSON as a kernel would (so its size and
the serialising CPU are real) and counted by kind and by widget class. Used by the dashboard's
benchmark and tests; handy to check a new panel keeps within the budget (40 messages a second).
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from typing import Any

import comm
from comm.base_comm import BaseComm


class CommMeter:
    """Replaces ``comm.create_comm`` while active; counts messages and bytes per widget class."""

    def __init__(self, keep: bool = False) -> None:
        self.keep = keep
        self.payloads: list[str] = []  # every message's JSON, when keep=True
        self.messages = 0
        self.bytes = 0
        self.by_class: Counter[str] = Counter()
        self.bytes_by_class: Counter[str] = Counter()
        self.by_kind: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._original: Any = None
        self._classes: dict[str, str] = {}  # comm id -> widget class name

    def __enter__(self) -> CommMeter:
        self._original = comm.create_comm
        comm.create_comm = self._create
        return self

    def __exit__(self, *exc_info: object) -> None:
        comm.create_comm = self._original

    def reset(self) -> None:
        """Start counting from zero (the comms stay metered)."""
        with self._lock:
            self.messages = self.bytes = 0
            self.by_class.clear()
            self.bytes_by_class.clear()
            self.by_kind.clear()

    def _create(self, *args: Any, **kwargs: Any) -> BaseComm:
        return _MeteredComm(self, *args, **kwargs)

    def record(self, comm_id: str, msg_type: str, data: Any, buffers: Any) -> None:
        """Count one message (called by the metered comms, from any thread)."""
        text = json.dumps(data, separators=(",", ":"), default=str)
        size = len(text.encode()) + sum(len(b) for b in buffers or ())
        state = data.get("state", {}) if isinstance(data, dict) else {}
        if msg_type == "comm_open":
            self._classes[comm_id] = _widget_name(state)
        name = self._classes.get(comm_id, "?")
        kind = msg_type if msg_type != "comm_msg" else str(data.get("method", "?") if isinstance(data, dict) else "?")
        with self._lock:
            self.messages += 1
            self.bytes += size
            self.by_class[name] += 1
            self.bytes_by_class[name] += size
            self.by_kind[kind] += 1
            if self.keep:
                self.payloads.append(text)


def _widget_name(state: dict[str, Any]) -> str:
    """ "Button", or for an anywidget its class and title: "TablePanel Quotes"."""
    name = str(state.get("_anywidget_id") or state.get("_model_name") or "?").rsplit(".", 1)[-1]
    return f"{name} {state['title']}" if state.get("title") else name


class _MeteredComm(BaseComm):
    """A comm with no kernel behind it: what it would publish is measured, then dropped."""

    def __init__(self, meter: CommMeter, *args: Any, **kwargs: Any) -> None:
        self._meter = meter
        super().__init__(*args, **kwargs)

    def publish_msg(
        self, msg_type: str, data: Any = None, metadata: Any = None, buffers: Any = None, **keys: Any
    ) -> None:
        self._meter.record(self.comm_id, msg_type, data or {}, buffers)
