"""The simulator's aiohttp application: Alpaca's REST routes, both websockets, faults, and the
market clock that drives quotes, matching and bars.

Why one module over 500 lines: it is the route table of Alpaca's API, one short handler per route;
the rules behind them live in broker.py, market.py, hours.py and streams.py."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import random
import secrets
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from ..fees import REGULATORY
from . import calendar, data, simclock, wire
from .broker import ApiError, Broker, SimOrder, invalid, parse_number
from .hours import MarketHours
from .market import Market
from .streams import Encoded, MarketDataHub, TradeUpdatesHub

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
INTERNAL = "/_sim/"
MIN_TICK_S, MAX_TICK_S = 0.002, 0.05


@dataclass(frozen=True)
class SimConfig:
    """Everything the simulator process needs to start (picklable)."""

    symbols: tuple[str, ...]
    seed: int
    host: str
    port: int
    quotes_per_second: float
    latency_ms: float
    market_hours: str
    starting_cash: float
    error_rate: float
    timeout_after_accept_rate: float
    rate_limit_per_min: int | None
    ws_drop_every_s: float | None
    api_key: str
    secret_key: str = field(repr=False)
    rate_limit_window_s: float = 60.0
    trade_stream_silent: bool = False  # a fault set while serving (see FAULT_FIELDS)
    profile: str = "paper"
    cancel_latency_ms: float = 0.0
    partial_fill_rate: float = 0.0
    clock_start: str | None = None  # an ISO time with its zone; None: the wall clock
    data_plan: str = "basic"
    regulatory_fees: bool = False  # charge a live account's fees at each fill (Alpaca paper charges none)


FAULT_FIELDS = (
    "latency_ms",
    "error_rate",
    "timeout_after_accept_rate",
    "rate_limit_per_min",
    "ws_drop_every_s",
    "trade_stream_silent",
    "cancel_latency_ms",
    "partial_fill_rate",
)
"""Faults `Simulator.set_faults` can change while serving. ``trade_stream_silent``: the trade_updates
connections stay open but lose every message, like a half-open socket; setting it back to False
closes them, as a keepalive would at last notice."""


class RateWindow:
    """Alpaca's per-minute request budget as a sliding window (60 s, like Alpaca, unless the
    simulator was given another `rate_limit_window_s` — for tests that must see several windows)."""

    def __init__(self, limit: int | None, window_s: float = 60.0) -> None:
        self.limit, self.window_s = limit, window_s
        self.times: deque[float] = deque()

    def admit(self, now: float) -> bool:
        while self.times and self.times[0] <= now - self.window_s:
            self.times.popleft()
        if self.limit is not None and len(self.times) >= self.limit:
            return False
        self.times.append(now)
        return True

    def headers(self, now: float) -> dict[str, str]:
        if self.limit is None:
            return {}
        reset = self.times[0] + self.window_s if self.times else now
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(max(0, self.limit - len(self.times))),
            "X-RateLimit-Reset": str(math.ceil(reset)),
        }


class SimServer:
    """State shared by every route: the market, the broker, the streams and the fault settings."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.faults = {name: getattr(config, name) for name in FAULT_FIELDS}
        self.random = random.Random(config.seed)
        if config.clock_start:
            simclock.set_to(simclock.parse_instant(config.clock_start))
        self.market = Market(config.symbols, config.seed, config.quotes_per_second)
        self.hours = MarketHours(config.market_hours)
        self.broker = Broker(
            self.market,
            config.starting_cash,
            self._on_order_event,
            self.hours,
            rules=self.faults,
            strict=config.profile == "paper",
            seed=config.seed,
            fee_schedule=REGULATORY if config.regulatory_fees else None,
        )
        self.trade_updates = TradeUpdatesHub(self.credentials_ok)
        self.market_data = MarketDataHub(self.credentials_ok, data.plan_limits(config.data_plan))
        self.trading_window = RateWindow(config.rate_limit_per_min, config.rate_limit_window_s)
        self.data_window = RateWindow(config.rate_limit_per_min, config.rate_limit_window_s)
        self._tasks: list[asyncio.Task[None]] = []
        self._clock_cache: tuple[float, calendar.Clock] | None = None
        self._close_at = self._close_due(simclock.time())

    # ----------------------------------------------------------------- helpers
    def credentials_ok(self, key: str | None, secret: str | None) -> bool:
        return bool(
            isinstance(key, str)
            and isinstance(secret, str)
            and secrets.compare_digest(key, self.config.api_key)
            and secrets.compare_digest(secret, self.config.secret_key)
        )

    def clock(self, now: float | None = None) -> calendar.Clock:
        now = simclock.time() if now is None else now
        cached = self._clock_cache
        if cached and abs(cached[0] - now) < 0.5:
            return cached[1]
        result = calendar.clock(datetime.fromtimestamp(now, UTC), self.config.market_hours)
        self._clock_cache = (now, result)
        return result

    def _close_due(self, now: float) -> float | None:
        """When the next close falls (day orders expire then); None when the market never closes."""
        if self.config.market_hours == "always":
            return None
        # not the cached clock: from just before the close it would name the close just passed
        return calendar.clock(datetime.fromtimestamp(now, UTC), self.config.market_hours).next_close.timestamp()

    def _on_order_event(self, event: str, order: SimOrder, extra: dict[str, Any]) -> None:
        if not self.trade_updates.listeners:
            return  # nobody listens: skip building the message (the hot path of order bursts)
        payload: dict[str, Any] = {"event": event, "timestamp": wire.ts(order.updated_at or simclock.time())}
        for key, value in extra.items():
            payload[key] = wire.num(value) if isinstance(value, float) else value
        payload["order"] = wire.order_json(order)
        self.trade_updates.publish(payload)

    # ----------------------------------------------------------------- background work
    async def on_startup(self, _app: web.Application) -> None:
        self._tasks.append(asyncio.create_task(self._run_market()))
        self._tasks.append(asyncio.create_task(self._drop_websockets()))

    async def on_shutdown(self, _app: web.Application) -> None:
        for task in self._tasks:
            task.cancel()
        await self.trade_updates.drop_all()
        await self.market_data.drop_all()

    async def _run_market(self) -> None:
        """Step the market on time, close minute bars, expire day orders at the close — forever.

        A failing step is logged with its traceback and the market goes on: a silent death here
        would freeze prices, matching and bars at once.
        """
        qps = self.config.quotes_per_second
        tick = min(MAX_TICK_S, max(MIN_TICK_S, 1.0 / qps))
        started = time.monotonic()
        minute = simclock.time() // 60
        while True:
            await asyncio.sleep(tick)
            try:
                minute = self._market_tick(started, qps, minute)
            except Exception:
                log.exception("simulated market step failed; the market goes on")

    def _market_tick(self, started: float, qps: float, minute: float) -> float:
        due = int((time.monotonic() - started) * qps) - self.market.steps
        now = simclock.time()
        # Close the finished minute before any trade of the new one: a trade stamped in the new
        # minute would otherwise freeze the old bar silently and it would never be streamed.
        if now // 60 != minute:
            minute = now // 60
            self._publish_bars(now)
            self.broker.record_equity(now)
        if due > 0:
            self._step_market(due, now)
        self.broker.run_due(now)
        self.check_close(now)
        return minute

    def check_close(self, now: float) -> None:
        """Expire day orders once a close has passed — also when the clock jumped over it."""
        if self._close_at is not None and now >= self._close_at:
            self.broker.expire_day_orders(now)
        self._close_at = self._close_due(now)

    def _step_market(self, due: int, now: float) -> None:
        tick = self.market.step(due, now)
        self.broker.on_market(now)
        if not self.market_data.subscribers:
            return
        quotes_for = self.market_data.wanted("quotes")
        trades_for = self.market_data.wanted("trades")
        messages: list[Encoded] = []
        for j, symbol in enumerate(self.market.symbols):
            want_quote = quotes_for is None or symbol in quotes_for
            want_trade = trades_for is None or symbol in trades_for
            if not (want_quote or want_trade):
                continue
            for k in range(due):
                if want_quote:
                    messages.append(Encoded("quotes", self._quote_message(tick, k, j, symbol), now))
                if want_trade and tick.trade_mask[k, j]:
                    messages.append(Encoded("trades", self._trade_message(tick, k, j, symbol), now))
        self.market_data.publish(messages)

    def _quote_message(self, tick: Any, k: int, j: int, symbol: str) -> dict[str, Any]:
        return {
            "T": "q",
            "S": symbol,
            "bx": "V",
            "bp": float(tick.bid[k, j]),
            "bs": float(tick.bid_size[k, j]),
            "ax": "V",
            "ap": float(tick.ask[k, j]),
            "as": float(tick.ask_size[k, j]),
            "c": ["R"],
            "z": "C",
        }

    def _trade_message(self, tick: Any, k: int, j: int, symbol: str) -> dict[str, Any]:
        return {
            "T": "t",
            "S": symbol,
            "i": self.market.steps - tick.bid.shape[0] + k,
            "x": "V",
            "p": float(tick.trade_price[k, j]),
            "s": float(tick.trade_size[k, j]),
            "c": ["@"],
            "z": "C",
        }

    def _publish_bars(self, now: float) -> None:
        messages = []
        for symbol, bar in self.market.close_minute(now):
            message = {"T": "b", "S": symbol, **{k: v for k, v in wire.bar_json(bar).items() if k != "t"}}
            messages.append(Encoded("bars", message, bar.t))
        self.market_data.publish(messages)

    async def _drop_websockets(self) -> None:
        while True:
            interval = self.faults["ws_drop_every_s"]
            await asyncio.sleep(interval or 0.5)
            if interval and self.faults["ws_drop_every_s"]:
                log.info("simulated fault: dropping every websocket")
                await self.trade_updates.drop_all()
                await self.market_data.drop_all()

    # ----------------------------------------------------------------- middleware: auth and faults
    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await handler(request)
        if not self.credentials_ok(
            request.headers.get("APCA-API-KEY-ID"), request.headers.get("APCA-API-SECRET-KEY")
        ):
            return web.json_response({"code": 40110000, "message": "request is not authorized"}, status=401)
        if request.path.startswith(INTERNAL):
            return await self._answer(handler, request)
        now = time.time()  # rate limits count wall seconds, whatever the simulated clock says
        window = self.data_window if request.path.startswith("/v2/stocks") else self.trading_window
        window.limit = self.faults["rate_limit_per_min"]
        if not window.admit(now):
            return web.json_response(
                {"code": 42910000, "message": "rate limit exceeded"}, status=429, headers=window.headers(now)
            )
        if self.faults["latency_ms"]:
            await asyncio.sleep(self.faults["latency_ms"] / 1000)
        if self.faults["error_rate"] and self.random.random() < self.faults["error_rate"]:
            response: web.StreamResponse = web.json_response(
                {"code": 50010000, "message": "internal server error (simulated fault)"}, status=500
            )
        else:
            response = await self._answer(handler, request)
        response.headers.update(window.headers(now))
        return response

    async def _answer(self, handler: Handler, request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except ApiError as err:
            return web.json_response(err.body(), status=err.status)
        except web.HTTPException as exc:
            if exc.status >= 400:
                return web.json_response(
                    {"code": exc.status * 100000, "message": exc.reason}, status=exc.status
                )
            raise
        except Exception:  # a bug: still answer in Alpaca's shape, so alpaca-py's APIError can read it
            log.exception("unexpected error answering %s %s", request.method, request.path)
            return web.json_response({"code": 50000000, "message": "internal server error"}, status=500)

    # ----------------------------------------------------------------- helpers for routes
    @staticmethod
    async def body(request: web.Request) -> dict[str, Any]:
        try:  # the bytes straight to json (UTF-8, as Alpaca reads it): no charset look-up per request
            body = json.loads(await request.read()) if request.can_read_body else {}
        except (ValueError, RecursionError):  # RecursionError: absurdly deep nesting
            raise invalid("request body is not valid JSON") from None
        if not isinstance(body, dict):
            raise invalid("request body must be a JSON object")
        return body

    def maybe_drop_after_accept(self, request: web.Request) -> bool:
        """The fault where the order is accepted but the answer never arrives."""
        rate = self.faults["timeout_after_accept_rate"]
        if rate and self.random.random() < rate and request.transport is not None:
            request.transport.abort()
            return True
        return False


_ENCODE = json.JSONEncoder(check_circular=False, separators=(",", ":")).encode  # compact, as Alpaca's


def json_answer(payload: Any, status: int = 200) -> web.Response:
    """A JSON answer, encoded here in one step (aiohttp's json_response encodes text, then bytes)."""
    return web.Response(body=_ENCODE(payload).encode(), status=status, content_type="application/json")


def _flag(query: Any, name: str) -> bool | None:
    """A boolean query parameter, accepting alpaca-py's `True`/`False` spelling."""
    value = query.get(name)
    if value is None:
        return None
    if value.lower() in ("true", "1"):
        return True
    if value.lower() in ("false", "0"):
        return False
    raise invalid(f"{name} must be true or false")


def _order_id(request: web.Request) -> str:
    order_id = request.match_info["order_id"]
    try:
        return str(uuid.UUID(order_id))
    except ValueError:
        raise invalid("order_id is missing or not a valid UUID") from None


def build_app(config: SimConfig) -> web.Application:
    sim = SimServer(config)
    app = web.Application(middlewares=[sim.middleware], client_max_size=1 << 20)
    app["sim"] = sim
    app.on_startup.append(sim.on_startup)
    app.on_shutdown.append(sim.on_shutdown)
    broker, market = sim.broker, sim.market
    routes = web.RouteTableDef()

    def ok(payload: Any, status: int = 200) -> web.Response:
        return json_answer(payload, status)

    # --- account, clock, calendar, assets
    @routes.get("/v2/account")
    async def account(_r: web.Request) -> web.Response:
        return ok(wire.account_json(broker))

    @routes.get("/v2/account/configurations")
    async def configurations(_r: web.Request) -> web.Response:
        return ok(broker.configuration)

    @routes.patch("/v2/account/configurations")
    async def configure(request: web.Request) -> web.Response:
        return ok(wire.configure(broker, await sim.body(request)))

    @routes.get("/v2/clock")
    async def clock(_r: web.Request) -> web.Response:
        return ok(wire.clock_json(sim.clock()))

    @routes.get("/v2/calendar")
    async def calendar_(request: web.Request) -> web.Response:
        start, end = data.calendar_range(request.query)
        return ok([wire.calendar_json(s) for s in calendar.sessions(start, end)])

    @routes.get("/v2/assets")
    async def assets(request: web.Request) -> web.Response:
        status = request.query.get("status", "active")
        listed = [wire.asset_json(p) for p in market.profiles.values()] if status == "active" else []
        return ok(listed)

    @routes.get("/v2/assets/{symbol_or_id}")
    async def asset(request: web.Request) -> web.Response:
        wanted = request.match_info["symbol_or_id"]
        for profile in market.profiles.values():
            if wanted.upper() == profile.symbol or wanted == wire.asset_id(profile.symbol):
                return ok(wire.asset_json(profile))
        raise ApiError(404, 40410000, "asset not found")

    @routes.get("/v2/account/portfolio/history")
    async def portfolio_history(request: web.Request) -> web.Response:
        points = [*broker.equity_history, (simclock.time(), broker.equity())]
        base = broker.starting_cash
        return ok(
            {
                "timestamp": [int(t) for t, _ in points],
                "equity": [round(e, 2) for _, e in points],
                "profit_loss": [round(e - base, 2) for _, e in points],
                "profit_loss_pct": [round((e - base) / base, 6) for _, e in points],
                "base_value": base,
                "timeframe": request.query.get("timeframe", "1Min"),
            }
        )

    # --- positions
    @routes.get("/v2/positions")
    async def positions(_r: web.Request) -> web.Response:
        return ok([wire.position_json(broker, p) for p in broker.positions.values()])

    @routes.get("/v2/positions/{symbol_or_id}")
    async def position(request: web.Request) -> web.Response:
        return ok(wire.position_json(broker, broker.position(request.match_info["symbol_or_id"])))

    @routes.delete("/v2/positions")
    async def close_all(request: web.Request) -> web.Response:
        results = broker.close_all(bool(_flag(request.query, "cancel_orders")))
        return ok(
            [
                {
                    "symbol": symbol,
                    "status": status,
                    "order_id": body.id if isinstance(body, SimOrder) else None,
                    "body": wire.accepted_order_json(body) if isinstance(body, SimOrder) else body,
                }
                for symbol, status, body in results
            ],
            status=207,
        )

    @routes.delete("/v2/positions/{symbol_or_id}")
    async def close_position(request: web.Request) -> web.Response:
        q = request.query
        qty, percentage = parse_number(q, "qty"), parse_number(q, "percentage")
        if qty is not None and percentage is not None:
            raise invalid("only one of qty or percentage")
        order = broker.close_position(request.match_info["symbol_or_id"], qty, percentage)
        return ok(wire.accepted_order_json(order))

    # --- orders
    @routes.post("/v2/orders")
    async def submit(request: web.Request) -> web.StreamResponse:
        order = broker.submit(await sim.body(request))
        snapshot = wire.accepted_order_json(order)  # acceptance; fills follow on the stream
        if sim.maybe_drop_after_accept(request):
            return web.Response(status=504)
        return ok(snapshot)

    @routes.get("/v2/orders")
    async def list_orders(request: web.Request) -> web.Response:
        q = request.query
        status = q.get("status", "open")
        if status not in ("open", "closed", "all"):
            raise invalid("status must be open, closed or all")
        direction = q.get("direction", "desc")
        if direction not in ("asc", "desc"):
            raise invalid("direction must be asc or desc")
        limit = data.parse_limit(q.get("limit") or "50")
        if limit > 500:
            raise invalid("limit must be between 1 and 500")
        chosen = broker.list_orders(
            status=status,
            limit=limit,
            after=data.parse_time(q.get("after"), "after"),
            until=data.parse_time(q.get("until"), "until"),
            direction=direction,
            side=q.get("side"),
            symbols=[s for s in q.get("symbols", "").split(",") if s] or None,
            nested=bool(_flag(q, "nested")),
        )
        return ok([wire.order_json(o) for o in chosen])

    @routes.get("/v2/orders:by_client_order_id")
    async def by_client_id(request: web.Request) -> web.Response:
        cid = request.query.get("client_order_id")
        if not cid:
            raise invalid("client_order_id is required")
        return ok(wire.order_json(broker.get_by_client_id(cid)))

    @routes.get("/v2/orders/{order_id}")
    async def get_order(request: web.Request) -> web.Response:
        return ok(wire.order_json(broker.get(_order_id(request))))

    @routes.patch("/v2/orders/{order_id}")
    async def replace(request: web.Request) -> web.Response:
        return ok(wire.accepted_order_json(broker.replace(_order_id(request), await sim.body(request))))

    @routes.delete("/v2/orders/{order_id}")
    async def cancel(request: web.Request) -> web.Response:
        broker.cancel(_order_id(request))
        return web.Response(status=204)

    @routes.delete("/v2/orders")
    async def cancel_all(_r: web.Request) -> web.Response:
        canceled = broker.cancel_all()
        return ok([{"id": o.id, "status": 200, "body": wire.order_json(o)} for o in canceled], status=207)

    # --- market data
    @routes.get("/v2/stocks/{kind:quotes|trades|bars}/latest")
    async def latest(request: web.Request) -> web.Response:
        data.check_feed(request.query, config.data_plan, simclock.time())
        return ok(data.latest(market, request.match_info["kind"], request.query))

    @routes.get("/v2/stocks/{kind:bars|trades|quotes}")
    async def history(request: web.Request) -> web.Response:
        data.check_feed(request.query, config.data_plan, simclock.time())
        return ok(data.history_page(market, request.match_info["kind"], request.query))

    @routes.get("/v2/stocks/snapshots")
    async def snapshots(request: web.Request) -> web.Response:
        data.check_feed(request.query, config.data_plan, simclock.time())
        return ok(data.snapshots(market, request.query))

    # --- streams
    @routes.get("/stream")
    async def trade_stream(request: web.Request) -> web.StreamResponse:
        return await sim.trade_updates.handle(request)

    @routes.get("/v2/{feed:iex|sip|test|delayed_sip}")
    async def data_stream(request: web.Request) -> web.StreamResponse:
        return await sim.market_data.handle(request)

    # --- the simulator's own ground truth (no faults, no rate limit)
    @routes.get(INTERNAL + "orders")
    async def all_orders(_r: web.Request) -> web.Response:
        return ok([wire.order_json(o) for o in broker.orders.values()])

    @routes.get(INTERNAL + "positions")
    async def all_positions(_r: web.Request) -> web.Response:
        return ok([wire.position_json(broker, p) for p in broker.positions.values()])

    @routes.post(INTERNAL + "orders/{order_id}/event")
    async def trigger_event(request: web.Request) -> web.Response:
        event = (await sim.body(request)).get("event")
        return ok(wire.order_json(broker.trigger_event(_order_id(request), str(event))))

    @routes.post(INTERNAL + "clock")
    async def set_clock(request: web.Request) -> web.Response:
        wanted = (await sim.body(request)).get("time")
        try:
            target = simclock.parse_instant(str(wanted))
        except ValueError as err:
            raise invalid(str(err)) from None
        if target < simclock.time() - 1:  # bars, trades and order times must never run backwards
            now = wire.ts(simclock.time())
            raise invalid(f"the simulator's clock only moves forward; it is {now}, asked for {wanted}")
        simclock.set_to(target)
        sim.check_close(simclock.time())  # before any order placed at the new time can be expired
        broker.on_market(simclock.time())  # orders released by the jump trade on the current quotes
        return ok(wire.clock_json(sim.clock()))

    @routes.post(INTERNAL + "faults")
    async def set_faults(request: web.Request) -> web.Response:
        changes = await sim.body(request)
        unknown = set(changes) - set(FAULT_FIELDS)
        if unknown:
            raise invalid(f"unknown fault setting(s) {sorted(unknown)}; allowed: {', '.join(FAULT_FIELDS)}")
        was_silent = bool(sim.faults["trade_stream_silent"])
        sim.faults.update(changes)
        sim.trade_updates.silent = bool(sim.faults["trade_stream_silent"])
        if was_silent and not sim.trade_updates.silent:
            await sim.trade_updates.drop_all()
        return ok(sim.faults)

    app.add_routes(routes)
    app.router.add_route("*", "/{tail:.*}", _not_found)
    return app


async def _not_found(request: web.Request) -> web.Response:
    return web.json_response({"code": 40410000, "message": f"endpoint not found: {request.path}"}, status=404)
