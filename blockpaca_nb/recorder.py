"""The recorder: one process, the only writer of the CSV trade log.

It takes two inputs — the broker's trade_updates stream and the inbox (execution results from the
workers, validation errors from the kernel) — turns each into a trade-log row, appends it, and
forwards the same row to the kernel's event queue. Rows are plain dicts with the trade-log columns
plus `kind`, so the kernel, the dashboard and the CSV all see one shape.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .broker import Connection
from .orders import action_from_client_order_id, worker_from_client_order_id
from .processes import SpawnProcess, start_child
from .tradelog import TradeLogRow, TradeLogWriter

log = logging.getLogger(__name__)
STOP = None  # put on the inbox to stop the recorder after what is already queued


def start_recorder(connection: Connection, path: Path, inbox: Any, events: Any) -> SpawnProcess:
    return start_child(run_recorder, connection, path, inbox, events, name="blockpaca-recorder")


def _number(value: Any) -> float | None:
    if value in (None, ""):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _epoch(value: Any) -> float:
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            pass
    return time.time()


def trade_update_row(data: Mapping[str, Any]) -> dict[str, Any]:
    """A trade_updates message (the `data` part) as a trade-log row."""
    order = data.get("order") or {}
    cid = order.get("client_order_id") or ""
    status = order.get("status") or ""
    filled = data.get("event") in ("fill", "partial_fill")
    row = TradeLogRow(
        type="execution",
        client_order_id=cid,
        ticker=order.get("symbol") or "",
        executed_price=(_number(data.get("price")) or 0.0) if filled else 0.0,
        executed_qty=(_number(data.get("qty")) or 0.0) if filled else 0.0,
        status=status,
        side=order.get("side") or "",
        action=action_from_client_order_id(cid) or "",
        timestamp=_epoch(data.get("timestamp")),
        raw_status=f"OrderStatus.{status.upper()}",
        event=str(data.get("event") or ""),
        order_id=order.get("id") or "",
        order_type=order.get("type") or order.get("order_type") or "",
        qty=_number(order.get("qty")),
        limit_price=_number(order.get("limit_price")),
        filled_qty=_number(order.get("filled_qty")),
        filled_avg_price=_number(order.get("filled_avg_price")),
        reason=str(data.get("reason") or ""),
        worker=worker_from_client_order_id(cid),
    )
    return {"kind": "trade_update", "position_qty": _number(data.get("position_qty")), **vars(row)}


_SUBMISSION_STATUS = {"accepted": "accepted", "rejected": "rejected", "failed": "failed", "submitting": "submitting"}


def submission_row(result: Mapping[str, Any]) -> dict[str, Any]:
    """An execution worker's result, or a validation error from the kernel, as a trade-log row."""
    kind = str(result.get("kind"))
    order = result.get("order") or {}
    status = _SUBMISSION_STATUS.get(kind, kind)
    row = TradeLogRow(
        type="validation" if kind == "validation_error" else "submission",
        client_order_id=str(result.get("client_order_id") or ""),
        ticker=str(result.get("ticker") or ""),
        status="rejected" if kind == "validation_error" else status,
        side=str(result.get("side") or ""),
        action=str(result.get("action") or ""),
        timestamp=float(result.get("time") or time.time()),
        raw_status=f"OrderStatus.{status.upper()}" if kind in ("accepted", "rejected") else "",
        event=kind,
        order_id=str(order.get("id") or ""),
        order_type=str(result.get("order_type") or ""),
        qty=_number(result.get("qty")),
        limit_price=_number(result.get("limit_price")),
        reason=str(result.get("reason") or ""),
        worker=result.get("worker"),
        latency_ms=_number(result.get("latency_ms")),
    )
    return {"kind": kind, **vars(row)}


class Recorder:
    """Writes rows and forwards them; shared by the stream thread and the inbox loop."""

    def __init__(self, path: Path, events: Any) -> None:
        self.writer = TradeLogWriter(path)
        self.events = events
        self.lock = threading.Lock()

    def record(self, row: dict[str, Any]) -> None:
        with self.lock:
            self.writer.write({k: v for k, v in row.items() if k not in ("kind", "position_qty")})
            self.events.put(row)


class TradeUpdates:
    """The trade_updates websocket, spoken directly: we need to know when it listens, and to catch
    up through REST after every reconnect — alpaca-py's TradingStream tells neither."""

    def __init__(self, connection: Connection, recorder: Recorder) -> None:
        self.connection = connection
        self.recorder = recorder
        self.seen: dict[str, tuple[str, float]] = {}  # order id -> (status, filled qty) last recorded
        self.listening = threading.Event()

    def record(self, data: Mapping[str, Any]) -> None:
        order = data.get("order") or {}
        state = (str(order.get("status")), _number(order.get("filled_qty")) or 0.0)
        if order.get("id") and self.seen.get(order["id"]) == state and data.get("event") != "pending_new":
            return  # already recorded (recovered through REST before the stream said it)
        self.seen[str(order.get("id"))] = state
        self.recorder.record(trade_update_row(data))

    def run(self) -> None:
        asyncio.run(self._run_forever())

    async def _run_forever(self) -> None:
        delay, since = 0.25, time.time()
        while True:
            try:
                await self._session(since)
                delay = 0.25
            except Exception as err:  # a dropped or refused connection: log, wait, reconnect
                log.warning("trade_updates stream: %s; reconnecting in %.1f s", type(err).__name__, delay)
            self.listening.clear()
            since = time.time() - 5
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)

    async def _session(self, since: float) -> None:
        import websockets

        async with websockets.connect(self.connection.endpoints.trading_stream, open_timeout=10) as ws:
            creds = self.connection.credentials
            await ws.send(
                json.dumps(
                    {"action": "authenticate", "data": {"key_id": creds.api_key, "secret_key": creds.secret_key}}
                )
            )
            reply = json.loads(await ws.recv())
            if (reply.get("data") or {}).get("status") != "authorized":
                raise PermissionError("trade_updates stream: not authorized")
            await ws.send(json.dumps({"action": "listen", "data": {"streams": ["trade_updates"]}}))
            async for raw in ws:
                message = json.loads(raw)
                if message.get("stream") == "listening":
                    self.listening.set()
                    await asyncio.to_thread(self.catch_up, since)
                elif message.get("stream") == "trade_updates":
                    self.record(message.get("data") or {})

    def catch_up(self, since: float) -> None:
        """Record what happened to orders while the stream was down (each change once)."""
        if not self.seen and since > time.time() - 10:
            return  # first connection of a new session: nothing can have been missed yet
        from alpaca.trading.enums import QueryOrderStatus
        from alpaca.trading.requests import GetOrdersRequest

        client = self.connection.trading_client()
        after = datetime.fromtimestamp(since, UTC)
        orders = client.get_orders(GetOrdersRequest(status=QueryOrderStatus.ALL, after=after, limit=500))
        for order in orders:
            raw = order.model_dump(mode="json")
            state = (str(raw.get("status")), _number(raw.get("filled_qty")) or 0.0)
            if self.seen.get(str(raw["id"])) != state:
                self.record({"event": "recovered", "order": raw, "timestamp": raw.get("updated_at")})


def run_recorder(connection: Connection, path: Path, inbox: Any, events: Any) -> None:
    """Child entry point: stream trade updates in a thread; record the inbox until STOP."""
    logging.basicConfig(level=logging.WARNING)
    recorder = Recorder(path, events)
    stream = TradeUpdates(connection, recorder)
    threading.Thread(target=stream.run, daemon=True, name="trade-updates").start()
    listening = stream.listening.wait(30)
    events.put({"kind": "recorder_ready", "listening": listening, "time": time.time()})
    while (item := inbox.get()) is not STOP:
        if item.get("kind") == "submitting":
            events.put(item)  # the kernel tracks it; the stream's pending_new row records it
            continue
        recorder.record(submission_row(item))
    recorder.writer.close()
