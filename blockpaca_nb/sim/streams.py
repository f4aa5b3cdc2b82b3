"""The two websockets: trade_updates (JSON, /stream) and market data (msgpack or JSON, /v2/{feed}).

Both follow Alpaca's handshakes exactly as alpaca-py drives them. Market-data messages are encoded
once per tick and shared by every subscriber: a frame is an array header plus pre-encoded items.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgpack
from aiohttp import WSMsgType, web

log = logging.getLogger(__name__)

AUTH_TIMEOUT_S = 10.0
CHANNELS = (
    "trades",
    "quotes",
    "bars",
    "updatedBars",
    "dailyBars",
    "statuses",
    "lulds",
    "corrections",
    "cancelErrors",
)
_SUBSCRIBABLE = frozenset(CHANNELS[:7])
MAX_SYMBOLS = 10_000
LIMITED_CHANNELS = ("trades", "quotes")  # what a free plan's symbol limit counts (bars are unlimited)

Credentials = Callable[[str | None, str | None], bool]


def _msgpack_array(items: list[bytes]) -> bytes:
    """A msgpack array frame from items that are already msgpack-encoded."""
    n = len(items)
    if n < 16:
        header = bytes([0x90 | n])
    elif n < 65536:
        header = b"\xdc" + n.to_bytes(2, "big")
    else:
        header = b"\xdd" + n.to_bytes(4, "big")
    return header + b"".join(items)


class TradeUpdatesHub:
    """The trade_updates stream: every listening connection gets every order event."""

    def __init__(self, credentials: Credentials) -> None:
        self.credentials = credentials
        self.listeners: set[web.WebSocketResponse] = set()
        self.connections: set[web.WebSocketResponse] = set()
        self.silent = False  # the trade_stream_silent fault: messages are lost, connections stay open

    def publish(self, data: dict[str, Any]) -> None:
        if not self.listeners or self.silent:
            return
        frame = json.dumps({"stream": "trade_updates", "data": data})
        for ws in list(self.listeners):
            if not ws.closed:
                _spawn(_send(ws, frame))

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=None, max_msg_size=1 << 20)
        await ws.prepare(request)
        self.connections.add(ws)
        authorized = False
        try:
            async for msg in ws:
                if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                    continue
                reply, authorized = self._answer(msg.data, authorized, ws)
                await ws.send_str(json.dumps(reply))
        finally:
            self.listeners.discard(ws)
            self.connections.discard(ws)
        return ws

    def _answer(self, raw: str | bytes, authorized: bool, ws: web.WebSocketResponse) -> tuple[dict, bool]:
        syntax_error = {"stream": "error", "data": {"error_message": "invalid syntax"}}
        try:
            msg = json.loads(raw)
        except (ValueError, RecursionError):
            return syntax_error, authorized
        data = (msg.get("data") or {}) if isinstance(msg, dict) else None
        if not isinstance(data, dict) or not isinstance(data.get("streams") or [], list):
            return syntax_error, authorized
        action = msg.get("action")
        if action in ("authenticate", "auth"):
            key = data.get("key_id", msg.get("key"))
            secret = data.get("secret_key", msg.get("secret"))
            authorized = self.credentials(key, secret)
            status = "authorized" if authorized else "unauthorized"
            return {
                "stream": "authorization",
                "data": {"action": "authenticate", "status": status},
            }, authorized
        if action == "listen":
            if not authorized:
                return {
                    "stream": "authorization",
                    "data": {"status": "unauthorized", "action": "listen"},
                }, False
            streams = [s for s in data.get("streams") or [] if s == "trade_updates"]
            if streams:
                self.listeners.add(ws)
            else:
                self.listeners.discard(ws)
            return {"stream": "listening", "data": {"streams": streams}}, authorized
        return {
            "stream": "error",
            "data": {"error_message": f"unknown action {str(action)[:40]!r}"},
        }, authorized

    async def drop_all(self) -> None:
        for ws in list(self.connections):
            await ws.close(code=1001, message=b"simulated drop")


_pending: set[asyncio.Task[None]] = set()


def _spawn(coro: Coroutine[Any, Any, None]) -> None:
    """Run a send in the background, keeping a reference so the task is not collected mid-flight."""
    task = asyncio.ensure_future(coro)
    _pending.add(task)
    task.add_done_callback(_pending.discard)


async def _send(ws: web.WebSocketResponse, frame: str | bytes) -> None:
    with contextlib.suppress(ConnectionError, RuntimeError):
        if isinstance(frame, bytes):
            await ws.send_bytes(frame)
        else:
            await ws.send_str(frame)


@dataclass(eq=False)
class Subscriber:
    """One market-data connection: its encoding and the symbols it asked for, per channel."""

    ws: web.WebSocketResponse
    msgpack: bool
    key: str | None = None
    channels: dict[str, set[str]] = field(default_factory=lambda: {c: set() for c in _SUBSCRIBABLE})

    def wants(self, channel: str, symbol: str) -> bool:
        chosen = self.channels.get(channel)
        return bool(chosen) and (symbol in chosen or "*" in chosen)

    def encode(self, message: dict[str, Any]) -> bytes | str:
        if self.msgpack:
            return msgpack.packb(message, datetime=False)
        return json.dumps(message)

    async def send_control(self, message: dict[str, Any]) -> None:
        if self.msgpack:
            await self.ws.send_bytes(msgpack.packb([message]))
        else:
            await self.ws.send_str(json.dumps([message]))

    def subscription(self) -> dict[str, Any]:
        lists = {c: sorted(self.channels.get(c, ())) for c in CHANNELS}
        lists["corrections"] = lists["trades"]
        lists["cancelErrors"] = lists["trades"]
        return {"T": "subscription", **lists}


class Encoded:
    """One market-data message, encoded at most once per wire format, and only when a subscriber
    of that format wants it."""

    def __init__(self, channel: str, message: dict[str, Any], time: float) -> None:
        self.channel, self.symbol, self.message, self.time = channel, message["S"], message, time

    @functools.cached_property
    def packed(self) -> bytes:
        """msgpack, `t` as a Timestamp extension (what alpaca-py requires)."""
        return msgpack.packb({**self.message, "t": msgpack.Timestamp.from_unix(self.time)})

    @functools.cached_property
    def text(self) -> str:
        """JSON, `t` as RFC-3339."""
        iso = datetime.fromtimestamp(self.time, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        return json.dumps({**self.message, "t": iso})


class MarketDataHub:
    """The market-data stream: handshake, subscriptions, and fan-out of encoded messages."""

    def __init__(self, credentials: Credentials, plan_symbols: int | None = None) -> None:
        self.credentials = credentials
        self.plan_symbols = plan_symbols  # a free plan's trades+quotes symbols per connection; None: any
        self.subscribers: set[Subscriber] = set()
        self.active_keys: dict[tuple[str, str], Subscriber] = {}
        self.connections: set[web.WebSocketResponse] = set()

    def wanted(self, channel: str) -> set[str] | None:
        """Symbols some subscriber wants on a channel (None means every symbol)."""
        out: set[str] = set()
        for sub in self.subscribers:
            chosen = sub.channels[channel]
            if "*" in chosen:
                return None
            out |= chosen
        return out

    def publish(self, messages: Iterable[Encoded]) -> None:
        batch = list(messages)
        if not batch:
            return
        for sub in list(self.subscribers):
            mine = [m for m in batch if sub.wants(m.channel, m.symbol)]
            if not mine:
                continue
            if sub.msgpack:
                frame: bytes | str = _msgpack_array([m.packed for m in mine])
            else:
                frame = "[" + ",".join(m.text for m in mine) + "]"
            _spawn(_send(sub.ws, frame))

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=None, max_msg_size=1 << 22)
        await ws.prepare(request)
        self.connections.add(ws)
        use_msgpack = "msgpack" in request.headers.get("Content-Type", "")
        sub = Subscriber(ws, use_msgpack)
        endpoint = request.path
        try:
            await sub.send_control({"T": "success", "msg": "connected"})
            if await self._authenticate(sub, endpoint):
                self.subscribers.add(sub)
                async for msg in ws:
                    if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                        await self._on_message(sub, msg.data)
        finally:
            self.subscribers.discard(sub)
            if sub.key is not None and self.active_keys.get((sub.key, endpoint)) is sub:
                del self.active_keys[(sub.key, endpoint)]
            self.connections.discard(ws)
        return ws

    def _decode(self, sub: Subscriber, raw: str | bytes) -> dict[str, Any] | None:
        try:
            msg = msgpack.unpackb(raw) if isinstance(raw, bytes) and sub.msgpack else json.loads(raw)
        except Exception:  # any undecodable frame is a syntax error for the client, never a crash
            return None
        return msg if isinstance(msg, dict) else None

    async def _authenticate(self, sub: Subscriber, endpoint: str) -> bool:
        """Wait for the auth message; answer it; enforce one connection per key and endpoint."""
        while True:
            try:
                msg = await sub.ws.receive(timeout=AUTH_TIMEOUT_S)
            except TimeoutError:
                await self._fail(sub, 404, "auth timeout")
                return False
            if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                return False
            request = self._decode(sub, msg.data)
            if request is None:
                await sub.send_control({"T": "error", "code": 400, "msg": "invalid syntax"})
                continue
            if request.get("action") != "auth":
                await sub.send_control({"T": "error", "code": 401, "msg": "not authenticated"})
                continue
            key = request.get("key")
            if not self.credentials(key, request.get("secret")):
                await self._fail(sub, 402, "auth failed")
                return False
            if (key, endpoint) in self.active_keys:
                await self._fail(sub, 406, "connection limit exceeded")
                return False
            if self.plan_symbols is not None and endpoint.endswith("/sip"):
                await self._fail(sub, 409, "insufficient subscription")
                return False
            sub.key = key
            self.active_keys[(key, endpoint)] = sub
            await sub.send_control({"T": "success", "msg": "authenticated"})
            return True

    async def _fail(self, sub: Subscriber, code: int, text: str) -> None:
        await sub.send_control({"T": "error", "code": code, "msg": text})
        await sub.ws.close()

    async def _on_message(self, sub: Subscriber, raw: str | bytes) -> None:
        request = self._decode(sub, raw)
        action = request.get("action") if request else None
        if action == "auth":
            await sub.send_control({"T": "error", "code": 403, "msg": "already authenticated"})
            return
        if request is None or action not in ("subscribe", "unsubscribe"):
            await sub.send_control({"T": "error", "code": 400, "msg": "invalid syntax"})
            return
        wanted = {channel: set(chosen) for channel, chosen in sub.channels.items()}
        for channel, symbols in request.items():
            if channel not in _SUBSCRIBABLE:
                continue
            if not isinstance(symbols, list) or not all(isinstance(s, str) for s in symbols):
                await sub.send_control({"T": "error", "code": 400, "msg": "invalid syntax"})
                return
            chosen = {s.upper() if s != "*" else s for s in symbols}
            if action == "subscribe":
                wanted[channel] |= chosen
            else:
                wanted[channel] -= chosen
        if self._over_limit(wanted):  # refused whole: the subscription stays as it was
            await sub.send_control({"T": "error", "code": 405, "msg": "symbol limit exceeded"})
            return
        sub.channels = wanted
        await sub.send_control(sub.subscription())

    def _over_limit(self, wanted: dict[str, set[str]]) -> bool:
        """More symbols than any plan allows, or more trades+quotes symbols than the free plan's 30
        (the wildcard counts as every symbol)."""
        if sum(len(s) for s in wanted.values()) > MAX_SYMBOLS:
            return True
        if self.plan_symbols is None:
            return False
        limited = set().union(*(wanted[c] for c in LIMITED_CHANNELS))
        return "*" in limited or len(limited) > self.plan_symbols

    async def drop_all(self) -> None:
        for ws in list(self.connections):
            await ws.close(code=1001, message=b"simulated drop")
