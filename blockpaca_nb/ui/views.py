"""What the panels show, computed from the session: plain rows and dicts, no widgets.

Everything here runs on the dashboard's pump thread and only reads the session: the QuoteBook
(one consistent copy per refresh), the portfolio's snapshot, and the ``trade_updates`` and
``errors`` deques (copied whole, which CPython does without letting another thread in).
Nothing that could hold a secret is read: the account gives only its numbers.
"""

from __future__ import annotations

import math
import traceback
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..scrub import scrub_text
from ..snapshots import snapshot
from ..statuses import PROBLEM_STATUSES
from .tables import Row, clean

QUOTE_FIELDS = ("bid", "ask", "base", "t")
QUOTE_COLUMNS: tuple[dict[str, Any], ...] = (
    {"key": "key", "label": "Ticker", "kind": "text", "width": 70},
    {"key": "bid", "label": "Bid", "kind": "price", "flash": True},
    {"key": "ask", "label": "Ask", "kind": "price", "flash": True},
    {"key": "mid", "label": "Mid", "kind": "price", "flash": True},
    {"key": "spread_bps", "label": "Spread", "kind": "bps", "title": "bid/ask spread in basis points of the mid"},
    {"key": "change_pct", "label": "Chg", "kind": "pct", "color": "sign", "title": "mid's change since the start"},
    {"key": "age", "label": "Age", "kind": "age", "width": 62, "title": "time since the last quote arrived"},
)

POSITION_FIELDS = ("qty", "avg", "cost", "last", "value", "upnl", "pct")
POSITION_COLUMNS: tuple[dict[str, Any], ...] = (
    {"key": "key", "label": "Ticker", "kind": "text", "width": 70},
    {"key": "qty", "label": "Qty", "kind": "qty", "width": 54},
    {"key": "avg", "label": "Entry", "kind": "price", "title": "average entry price (bought_at)"},
    {"key": "cost", "label": "Cost", "kind": "money", "title": "cost basis"},
    {"key": "last", "label": "Last", "kind": "price", "flash": True, "title": "latest mid"},
    {"key": "value", "label": "Value", "kind": "money", "title": "market value at the mid"},
    {"key": "upnl", "label": "P&L", "kind": "money", "color": "sign", "title": "unrealized P&L"},
    {"key": "pct", "label": "%", "kind": "pct", "color": "sign", "width": 62, "title": "change since entry"},
)

TRADE_FIELDS = ("time", "order", "ticker", "side", "action", "event", "status", "qty", "price", "reason", "bad")
TRADE_COLUMNS: tuple[dict[str, Any], ...] = (
    {"key": "time", "label": "Time", "kind": "time", "width": 100},
    {"key": "order", "label": "Client order id", "kind": "text", "width": 190},
    {"key": "ticker", "label": "Ticker", "kind": "text", "width": 58},
    {"key": "side", "label": "Side", "kind": "text", "width": 46},
    {"key": "action", "label": "Action", "kind": "text", "width": 84},
    {"key": "event", "label": "Event", "kind": "text", "width": 96},
    {"key": "status", "label": "Status", "kind": "text", "width": 96},
    {"key": "qty", "label": "Qty", "kind": "qty", "width": 72},
    {"key": "price", "label": "Price", "kind": "price", "width": 76},
    {"key": "reason", "label": "Reason", "kind": "text"},
)

ERROR_FIELDS = ("time", "source", "message", "detail")
ERROR_COLUMNS: tuple[dict[str, Any], ...] = (
    {"key": "time", "label": "Time", "kind": "time", "width": 100},
    {"key": "source", "label": "Source", "kind": "text", "width": 190},
    {"key": "message", "label": "Message", "kind": "text"},
)


# --------------------------------------------------------------------------- quotes


class QuoteView:
    """The quotes table (one row per ticker) from one consistent QuoteBook snapshot.

    Rows carry bid, ask, the first mid seen (``base``, for the change since start) and the
    receive time; the browser derives mid, spread, change and a live age from them, so a row
    is sent again only when a new quote arrived, not every time its age grows.
    """

    def __init__(self) -> None:
        self.base: dict[str, float] = {}
        self.mids: dict[str, float] = {}
        self.last_receive = 0.0
        self.quoted = 0

    def rows(self, snapshot: Any) -> dict[str, Row]:
        """Rows by ticker from ``QuoteBook.snapshot()``; also updates :attr:`mids` and feed facts."""
        if snapshot is None or len(snapshot) == 0:
            return {}
        tickers = [str(t) for t in snapshot.index]
        bids = snapshot["bid"].to_numpy(dtype=float)
        asks = snapshot["ask"].to_numpy(dtype=float)
        received = snapshot["receive_time"].to_numpy(dtype=float)
        with np.errstate(invalid="ignore"):
            mids = (bids + asks) / 2.0
        mid_list = mids.tolist()
        self.mids = {t: m for t, m in zip(tickers, mid_list, strict=True) if math.isfinite(m)}
        for ticker, mid in self.mids.items():
            self.base.setdefault(ticker, mid)
        quoted = received > 0
        self.quoted = int(quoted.sum())
        self.last_receive = float(received[quoted].max()) if self.quoted else 0.0
        base = self.base
        return {
            t: (clean(b), clean(a), clean(base.get(t, math.nan)), clean(r, 3) if r > 0 else None)
            for t, b, a, r in zip(tickers, bids.tolist(), asks.tolist(), received.tolist(), strict=True)
        }


# --------------------------------------------------------------------------- strategies

STRATEGY_FIELDS = ("role", "clock", "state", "orders", "positions", "pnl", "usage", "limit", "bad")
STRATEGY_COLUMNS: tuple[dict[str, Any], ...] = (
    {"key": "key", "label": "Strategy", "kind": "text", "width": 120},
    {"key": "role", "label": "Role", "kind": "text", "width": 76, "title": "main, alongside, off; session: its own"},
    {"key": "clock", "label": "Every", "kind": "text", "width": 56},
    {"key": "state", "label": "State", "kind": "text", "width": 96},
    {"key": "orders", "label": "Orders", "kind": "qty", "width": 56, "title": "orders sent"},
    {"key": "positions", "label": "Pos.", "kind": "qty", "width": 44, "title": "symbols held"},
    {"key": "pnl", "label": "P&L", "kind": "money", "color": "sign", "title": "realised + unrealised, at the mid"},
    {"key": "usage", "label": "Limit use", "kind": "usage", "title": "how close to its nearest limit"},
    {"key": "limit", "label": "Nearest limit", "kind": "text"},
)
TROUBLE_STATES = frozenset({"reduce_only", "halted"})  # a limit or the kill switch stopped the strategy


def strategy_table(rows: Iterable[Mapping[str, Any]]) -> dict[str, Row]:
    """The strategies panel's rows by name, from ``Session.strategy_rows()``."""
    table: dict[str, Row] = {}
    for row in rows:
        every = row.get("every")
        clock = "" if every is None else f"{every:g} s" if every < 60 else f"{every / 60:g} min"
        state = str(row.get("state") or "").replace("_", "-")
        usage = row.get("usage")
        table[str(row["name"])] = (
            row.get("role") or "",
            clock,
            state,
            int(row.get("orders") or 0),
            int(row.get("positions") or 0),
            clean(float(row.get("pnl") or 0.0), 2),
            None if usage is None else clean(float(usage), 3),
            str(row.get("limit") or ""),
            row.get("state") in TROUBLE_STATES,
        )
    return table


# --------------------------------------------------------------------------- positions


def position_rows(
    positions: Iterable[Mapping[str, Any]], mids: Mapping[str, float]
) -> tuple[dict[str, Row], dict[str, Any]]:
    """Rows by ticker (marked to the mid) and the totals row."""
    rows: dict[str, Row] = {}
    totals = {"cost": 0.0, "value": 0.0, "upnl": 0.0}
    gross = 0.0
    for position in positions:
        ticker = str(position["ticker"])
        qty, avg, cost = float(position["quantity"]), float(position["bought_at"]), float(position["cost_basis"])
        last = mids.get(ticker, math.nan)
        value, upnl = qty * last, (last - avg) * qty
        pct = (last / avg - 1.0) * 100.0 * (1 if qty > 0 else -1) if avg else math.nan
        rows[ticker] = tuple(clean(v) for v in (qty, avg, cost, last, value, upnl, pct))
        totals["cost"] += cost
        gross += abs(cost)
        if math.isfinite(last):
            totals["value"] += value
            totals["upnl"] += upnl
    footer = {"key": f"Total ({len(rows)})", **{k: clean(v, 2) for k, v in totals.items()}}
    footer["pct"] = clean(totals["upnl"] / gross * 100.0) if gross else None
    return rows, footer


# --------------------------------------------------------------------------- deques of events


class DequeFollower:
    """Follows a bounded deque another thread appends to: which items are new since last time.

    Items are told apart by identity; the items of the previous look are kept referenced, so an
    identity cannot be reused while it is being compared. Each item gets a growing key.
    """

    def __init__(self) -> None:
        self._keys: dict[int, str] = {}
        self._items: list[Any] = []
        self._next = 0
        self.missed = True  # after a look: some items may have come and gone unseen (true at first)

    def look(self, source: Iterable[Any]) -> tuple[list[tuple[str, Any]], list[tuple[str, Any]]]:
        """(all current items with their keys, the new ones), oldest first."""
        items = _copy(source)
        maxlen = getattr(source, "maxlen", None)
        first = not self._next
        keys: dict[int, str] = {}
        current: list[tuple[str, Any]] = []
        new: list[tuple[str, Any]] = []
        for item in items:
            key = self._keys.get(id(item))
            if key is None:
                self._next += 1
                key = f"{self._next:09d}"
                new.append((key, item))
            keys[id(item)] = key
            current.append((key, item))
        full = maxlen is not None and len(items) >= maxlen
        self.missed = first or (full and len(new) == len(items))
        self._keys, self._items = keys, items
        return current, new


def _copy(source: Iterable[Any]) -> list[Any]:
    """A list copy of a deque (or a dict's items) that another thread may be changing."""
    return snapshot(lambda: list(source))


# An order's stages, in the order they happen: the trade panel shows an order's events in this order
# even when they arrive out of it (the worker's answer often lands after the stream's fill).
REFUSED_RANK = 0  # refused before sending (a validation row)
ANSWERED_RANK = 1  # the worker's answer: the broker took it, refused it, or never answered
STREAM_RANKS = {"pending_new": 2, "accepted": 2, "new": 3, "partial_fill": 4, "pending_cancel": 5, "pending_replace": 5}
"""The broker's events before the end (``accepted`` here is Alpaca's stream event, not the worker's)."""
STATUS_RANKS = {"pending_new": 2, "accepted": 2, "new": 3, "partially_filled": 4, "pending_cancel": 5}
"""For a change recovered through REST: the stage its status says."""
ENDED_RANK = 6  # filled, canceled, expired, rejected, replaced, done_for_day …: the last word
ANSWER_STATUSES = frozenset({"", "accepted", "rejected", "failed", "submitting"})
"""A worker's answer's own statuses (else it carries the order's, learnt from the stream first)."""


def lifecycle_rank(row: Mapping[str, Any]) -> int:
    """Where a trade-update row stands in its order's lifecycle (see the ranks above)."""
    kind, status = row.get("type"), str(row.get("status") or "")
    if kind == "validation":
        return REFUSED_RANK
    if kind == "submission":  # an answer logged after the stream's rows carries the state they reached
        return ANSWERED_RANK if status in ANSWER_STATUSES else STATUS_RANKS.get(status) or ENDED_RANK
    event = str(row.get("event") or "")
    return STREAM_RANKS.get(event) or STATUS_RANKS.get(status) or ENDED_RANK


class LifecycleKeys:
    """The trade panel's row keys: arrival order (the panel sorts by key), except that an event which
    arrives after a later stage of the same order is keyed just before the earliest such stage.

    Keys are dot-separated numbers that sort the same way as text and as the browser's numeric
    collation: ``000000012.5`` for a row in arrival order, ``000000012.4.2`` for one slipped in before
    it (stage 1: the worker's answer), and so on. A row keeps its key while it is shown.
    """

    def __init__(self) -> None:
        self._keys: dict[str, tuple[int, ...]] = {}  # the follower's arrival key -> display key

    def keyed(self, current: Sequence[tuple[str, Mapping[str, Any]]]) -> list[tuple[str, Mapping[str, Any]]]:
        """(display key, row) for the follower's ``current`` rows (arrival order)."""
        placed: dict[str, tuple[int, ...]] = {}
        stages: dict[str, list[tuple[tuple[int, ...], int]]] = {}  # order -> (display key, rank) so far
        taken = set(self._keys.values())
        out = []
        for arrival, row in current:
            order, rank = str(row.get("client_order_id") or ""), lifecycle_rank(row)
            earlier = stages.setdefault(order, []) if order else []
            key = self._keys.get(arrival)
            if key is None:
                key = _place(int(arrival), rank, earlier)
                while key in taken:  # a second row at the same stage: just after the first
                    key = (*key, 5)
                taken.add(key)
            earlier.append((key, rank))
            placed[arrival] = key
            out.append((f"{key[0]:09d}." + ".".join(map(str, key[1:])), row))
        self._keys = placed
        return out


def _place(arrival: int, rank: int, earlier: Sequence[tuple[tuple[int, ...], int]]) -> tuple[int, ...]:
    """A new row's display key: its arrival, or just before the earliest later stage of its order."""
    later = [key for key, other in earlier if other > rank]
    if not later:
        return (arrival, 5)
    first = min(later)
    return (*first[:-1], first[-1] - 1, rank + 1)


def trade_row(row: Mapping[str, Any]) -> Row:
    """A trade-update row (the recorder's dict) as the trade panel's values."""
    fill = bool(row.get("fill_qty"))  # what this event executed (executed_qty is the order's total)
    qty = row.get("fill_qty") if fill else row.get("qty")
    price = row.get("fill_price") if fill else (row.get("limit_price") or row.get("filled_avg_price"))
    status = str(row.get("status") or row.get("kind") or "")
    bad = status in PROBLEM_STATUSES or row.get("kind") in PROBLEM_STATUSES
    return (
        clean(_number(row.get("timestamp")), 3),
        str(row.get("client_order_id") or ""),
        str(row.get("ticker") or ""),
        str(row.get("side") or ""),
        str(row.get("action") or ""),
        str(row.get("event") or row.get("kind") or ""),
        status,
        clean(_number(qty)),
        clean(_number(price)),
        scrub_text(str(row.get("reason") or "")),
        bool(bad),
    )


def fill_of(row: Mapping[str, Any]) -> tuple[str, float, float, float, int] | None:
    """(ticker, time, price, qty, +1 buy / -1 sell) of a row that executed something (a fill, or
    a fill recovered through REST), else None."""
    price, qty = _number(row.get("fill_price")), _number(row.get("fill_qty"))
    if not (math.isfinite(price) and math.isfinite(qty)) or qty <= 0:
        return None
    side = 1 if row.get("side") == "buy" else -1
    return str(row.get("ticker") or ""), _number(row.get("timestamp")), price, qty, side


@dataclass
class ErrorView:
    """Rows of the errors panel: the session's errors plus the dashboard's own (button failures).

    Each error is described once (formatting a traceback is not free) and its row kept while the
    error is in sight; an error without a time of its own gets the time it was first seen.
    """

    rows: dict[int, Row] = field(default_factory=dict)

    def row(self, item: Any, now: float) -> Row:
        """(time, source, message, detail) of one error, whatever its kind."""
        row = self.rows.get(id(item))
        if row is None:
            source, message, detail, at = describe_error(item)
            message, detail = scrub_text(message), scrub_text(detail)  # the panel is saved in the notebook
            row = self.rows[id(item)] = (clean(at if at is not None else now, 3), source, message, detail)
        return row

    def forget_missing(self, alive: Iterable[Any]) -> None:
        """Drop the rows of errors no longer shown (their ids may be reused)."""
        ids = {id(item) for item in alive}
        self.rows = {k: v for k, v in self.rows.items() if k in ids}


def describe_error(item: Any) -> tuple[str, str, str, float | None]:
    """(source, message, detail, time or None) of a StrategyError, exception or error-row dict."""
    if isinstance(item, Mapping):
        return _describe_row(item)
    if isinstance(item, BaseException):
        detail = "".join(traceback.format_exception(item)) if item.__traceback__ else ""
        return _exception_source(item), f"{type(item).__name__}: {item}", detail, None
    strategy = getattr(item, "strategy", None)
    if strategy is not None:  # StrategyError
        return (
            f"strategy {strategy}",
            str(getattr(item, "message", "")),
            str(getattr(item, "traceback", "")),
            _number(getattr(item, "time", None)),
        )
    return "error", str(item), "", None


def _describe_row(row: Mapping[str, Any]) -> tuple[str, str, str, float | None]:
    kind = str(row.get("kind") or "error")
    at = _number(row.get("timestamp", row.get("time")))
    at_or_none = at if math.isfinite(at) else None
    if kind in ("rejected", "failed", "validation_error", "limit_refused"):
        order = " ".join(str(row.get(k) or "") for k in ("side", "qty", "ticker")).split()
        what = f"order {' '.join(order)}" if order else "order"
        source = {
            "rejected": "broker rejected",
            "failed": "order failed",
            "validation_error": "order validation",
            "limit_refused": "risk limit",
        }
        detail = f"client order id: {row.get('client_order_id')}" if row.get("client_order_id") else ""
        return source[kind], f"{what}: {row.get('reason') or kind}", detail, at_or_none
    where = row.get("where")
    return (f"{kind} ({where})" if where else kind), str(row.get("reason") or row.get("message") or ""), "", at_or_none


def _exception_source(error: BaseException) -> str:
    names = {cls.__name__ for cls in type(error).__mro__}
    if "OrderValidationError" in names:
        return "order validation"
    if "BrokerError" in names:
        return "broker"
    return "dashboard" if getattr(error, "dashboard", False) else "session"


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


# --------------------------------------------------------------------------- account


class AccountEstimate:
    """Live equity and cash between the broker's account refreshes (the engine refreshes every 30 s).

    cash = the broker's cash at its last refresh − the net cost of the fills since;
    equity = cash + every session position marked to its mid + what the account held outside the
    session, as the broker valued it at its last refresh (its equity − its cash − the session's
    positions then: left out, a position kept from before showed as a loss). The fills come from the session's orders
    (cumulative filled quantity and average price per client order id), so none is missed between
    two looks; only the orders named as changed are read again, except on a full look (the first,
    after events may have been missed, and at every broker refresh), so a long session with many
    orders costs no more per refresh than a short one. A broker refresh restarts the estimate.
    """

    def __init__(self) -> None:
        self._account: Mapping[str, Any] | None = None
        self._base_cash = math.nan
        self._base_flow = 0.0
        self._costs: dict[str, float] = {}
        self.flow = 0.0
        self.start_equity = math.nan
        self._outside = 0.0  # the value of what the account holds outside the session (see the class)
        self._outside_due = False  # a refresh came: value it at the next equity()

    def update(
        self,
        account: Mapping[str, Any],
        orders: Mapping[str, Mapping[str, Any]],
        changed: Iterable[str] | None = None,
    ) -> None:
        """Take in the fills of the ``changed`` orders (None: of every order); restart from a new ``account``."""
        refreshed = bool(account) and account is not self._account
        if changed is None or refreshed:
            self._costs = {cid: _fill_cost(row) for cid, row in _copy(orders.items())}
            self.flow = sum(self._costs.values())
        else:
            for cid in set(changed):
                row = orders.get(cid)
                if row is not None:
                    cost = _fill_cost(row)
                    self.flow += cost - self._costs.get(cid, 0.0)
                    self._costs[cid] = cost
        if refreshed:
            self._account = account
            self._base_cash = _number(account.get("cash"))
            self._base_flow = self.flow
            self._outside_due = True

    def cash(self) -> float:
        return self._base_cash - (self.flow - self._base_flow)

    def equity(self, positions: Sequence[Mapping[str, Any]], mids: Mapping[str, float]) -> float:
        value = sum(float(p["quantity"]) * mids.get(str(p["ticker"]), float(p["bought_at"])) for p in positions)
        if self._outside_due and self._account is not None:
            broker = _number(self._account.get("equity"))
            self._outside = broker - self.cash() - value if math.isfinite(broker) else 0.0
            self._outside_due = False
        equity = self.cash() + value + self._outside
        if math.isnan(self.start_equity) and math.isfinite(equity):
            self.start_equity = equity
        return equity


def _fill_cost(row: Mapping[str, Any]) -> float:
    """Signed (buy +, sell −) filled quantity × average fill price of one order's latest row."""
    qty, price = row.get("filled_qty"), row.get("filled_avg_price")
    if not qty or not price:
        return 0.0
    return float(qty) * float(price) * (1.0 if row.get("side") == "buy" else -1.0)
