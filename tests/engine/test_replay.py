"""Replay: the live strategy function over history, through the simulator's own broker rules.

Each test judges by what the replay's broker holds and what its trade log says, the way the live
tests judge by the simulator's orders and positions.
"""

from __future__ import annotations

import datetime as dt
import functools
import gc
import io
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from blockpaca_nb import BlockpacaError, ConfigurationError, replay, sweep
from blockpaca_nb.examples import momentum
from blockpaca_nb.performance import round_trips
from blockpaca_nb.tradelog import load_trade_log

pytestmark = pytest.mark.newest_python  # CI: on 3.13 beside the 3.11 suite (replay is version-agnostic)

AS_OF = "2026-12-01"  # the simulator's history as it was that day: the same prices whenever the suite runs
WEEK = {"start": "2026-11-02", "end": "2026-11-06", "as_of": AS_OF}
DAY = {"start": "2026-11-03", "end": "2026-11-03", "as_of": AS_OF}
NEW_YORK = "America/New_York"


def at(ctx: Any) -> dt.datetime:
    return dt.datetime.fromtimestamp(ctx.now, dt.UTC).astimezone(pd.Timestamp(0, tz=NEW_YORK).tz)


def buy_once(quantity: float = 10, ticker: str = "AAPL") -> Any:
    def strategy(ctx: Any) -> list[dict[str, Any]]:
        if ctx.state.get("bought"):
            return []
        ctx.state["bought"] = True
        return [{"ticker": ticker, "quantity": quantity, "side": "buy", "order_type": "market"}]

    return strategy


def test_same_data_seed_and_strategy_give_a_byte_identical_trade_log() -> None:
    first = replay(momentum, ["AAPL", "MSFT"], **WEEK, progress=False)
    second = replay(momentum, ["AAPL", "MSFT"], **WEEK, progress=False)
    other_seed = replay(momentum, ["AAPL", "MSFT"], **WEEK, seed=3, progress=False)
    assert first.trade_log_csv == second.trade_log_csv
    assert len(first.trade_log) > 100 and (first.trade_log["event"] == "fill").any()
    assert first.trade_log_csv != other_seed.trade_log_csv


def test_the_trade_log_has_the_live_schema_and_meanings() -> None:
    r = replay(momentum, ["AAPL", "MSFT"], **DAY, progress=False)
    log = r.trade_log
    assert list(log.columns[:10]) == [
        "type", "client_order_id", "ticker", "executed_price", "executed_qty", "status", "side", "action",
        "timestamp", "raw_status",
    ]  # fmt: skip
    fills = log[log["fill_qty"] > 0]
    bought = fills[fills["side"] == "buy"]["fill_qty"].sum() - fills[fills["side"] == "sell"]["fill_qty"].sum()
    held = sum(float(p["quantity"]) for _, p in r.positions.iterrows())
    assert bought == pytest.approx(held)  # what the log says was filled is what the broker holds
    assert set(log["strategy"][log["type"] == "submission"]) <= {"momentum", "session"}  # session: the EOS


def test_bars_stop_at_the_replayed_moment_no_look_ahead() -> None:
    seen: list[tuple[float, float, float, float]] = []

    def peek(ctx: Any) -> list[Any]:
        bars = ctx.bars("AAPL", "1Min", limit=3)
        quotes, _ = ctx.get_current_data()
        if len(bars):
            last = bars.index.get_level_values("timestamp")[-1].timestamp()
            mid = (quotes["AAPL"]["bid"] + quotes["AAPL"]["ask"]) / 2
            seen.append((ctx.now, last, float(bars["close"].iloc[-1]), mid))
        return []

    replay(peek, ["AAPL"], **DAY, progress=False)
    assert len(seen) > 300
    for now, bar_start, close, mid in seen:
        assert bar_start + 60 <= now  # only bars complete at the tick
        if bar_start + 60 == now:  # (at the open, the last complete bar is the day before's)
            assert abs(mid - close) <= close * 0.002 + 0.01  # the tick's quote is that bar's close
    assert sum(bar_start + 60 == now for now, bar_start, _, _ in seen) == len(seen) - 1  # all but the open


def test_bars_take_the_live_feed_argument() -> None:
    """A strategy written live names a feed; replay reads its own history whichever it names, and
    refuses one Alpaca has not, as live does."""

    def reads(ctx: Any) -> None:
        ctx.state["rows"] = len(ctx.bars("AAPL", "1Min", 5, feed="sip")) + len(ctx.bars("AAPL", "1Min", 5, "iex"))
        ctx.bars("AAPL", "1Min", 5, feed="bogus")

    r = replay(reads, ["AAPL"], **DAY, frequency="1h", progress=False)
    assert r.state["rows"] == 10
    assert "feed='bogus' is not valid; allowed: 'iex' (any data plan), 'sip' (a paid plan)" in r.errors[0].message


def test_daily_bars_include_only_today_so_far() -> None:
    highs: list[tuple[float, float]] = []

    def peek(ctx: Any) -> list[Any]:
        day = ctx.bars("AAPL", "1Day", limit=2)
        minutes = ctx.bars("AAPL", "1Min", limit=400)
        today = minutes[minutes.index.get_level_values("timestamp") >= pd.Timestamp(at(ctx).date(), tz=NEW_YORK)]
        if len(today):
            highs.append((float(day["high"].iloc[-1]), float(today["high"].max())))
        return []

    replay(peek, ["AAPL"], **DAY, frequency="30m", progress=False)
    assert highs and all(day == pytest.approx(minute) for day, minute in highs)


@pytest.mark.parametrize("timeframe", ["1Hour", "1Day"])
def test_hour_and_day_bars_are_the_minutes_complete_at_the_moment_resampled(timeframe: str) -> None:
    """Hour and day bars are rolled up once for the whole tape (resampling at each call cost 8 ms,
    13 minutes over a year of minutes); at any moment they must be what resampling the minute bars
    complete then gives — today's so far, no later minute."""
    from blockpaca_nb.history import sim_tape
    from blockpaca_nb.replay_bars import ReplayBars

    tape = sim_tape(["AAPL", "MSFT"], dt.date(2026, 11, 2), dt.date(2026, 11, 6), 0, as_of=dt.date(2026, 12, 1))
    bars, rule = ReplayBars(tape), {"1Hour": "1h", "1Day": "1D"}[timeframe]
    moments = tape.bar_end[[0, 5, 59, 60, 61, 389, 390, 391, 800, 1500, -1]] + np.array([0, 1, 0, 30] * 2 + [0, 0, 59])
    for now in moments:
        got = bars.frame(["AAPL", "MSFT"], timeframe, 3, float(now))
        complete = tape.bar_end <= now
        for j, symbol in enumerate(tape.symbols):
            minutes = pd.DataFrame({f: v[complete, j] for f, v in tape.bars.items()},
                                   index=pd.to_datetime(tape.bar_end[complete] - 60, unit="s", utc=True))  # fmt: skip
            agg = {"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"}
            expected = minutes.tz_convert(NEW_YORK).resample(rule).agg(agg).dropna(subset=["close"]).tail(3)
            mine = got.xs(symbol, level="symbol")
            assert list(mine.index) == list(expected.index.tz_convert("UTC")), (symbol, now)
            np.testing.assert_allclose(mine.to_numpy(), expected.to_numpy(), rtol=1e-12)


def test_validation_errors_are_the_live_ones() -> None:
    from blockpaca_nb.orders import parse_block

    bad = [{"ticker": "AAPL", "quantity": -3, "side": "buy", "order_type": "market"}]
    r = replay(lambda ctx: bad, ["AAPL"], **DAY, frequency="1h", progress=False)
    _, live = parse_block(bad, ["AAPL"])  # what Session.submit reports (see test_live_and_replay_refuse_alike)
    assert [str(e) for e in r.errors[:1]] == [str(live[0])]
    rows = r.trade_log[r.trade_log["type"] == "validation"]
    assert len(rows) >= 6 and rows["reason"].iloc[0] == str(live[0])
    assert (rows["ticker"] == "AAPL").all() and (rows["side"] == "buy").all()  # which order, as live
    assert (rows["strategy"] == "lambda").all() and r.errors[0].strategy == "lambda"  # and whose
    assert r.orders.empty  # nothing invalid reached the broker
    assert r.error_count == len(rows) == len(r.errors)  # each counted, as each is a row


def test_a_broker_refusal_is_in_errors_as_live() -> None:
    """An order the broker refuses is a rejected row in the trade log and an entry of ``r.errors``
    (live: ``s.errors``), with the same reason and advice; all are counted, the first kept."""
    too_big = [{"ticker": "AAPL", "quantity": 1_000_000, "side": "buy", "order_type": "market"}]
    r = replay(lambda ctx: too_big, ["AAPL"], **DAY, frequency="1h", progress=False)
    rejected = r.trade_log[r.trade_log["status"] == "rejected"]
    assert len(rejected) >= 6 and r.error_count == len(rejected) == len(r.errors)
    first = r.errors[0]
    assert first["kind"] == "rejected" and first["ticker"] == "AAPL" and first["qty"] == 1_000_000
    assert first["reason"] == rejected["reason"].iloc[0]
    assert "insufficient buying power" in first["reason"] and "send a smaller quantity" in first["reason"]


SIMPLE_ORDERS = [
    {"ticker": "AAPL", "quantity": 3, "side": "buy", "order_type": "market"},
    {"ticker": "AAPL", "quantity": 0.5, "side": "sell", "order_type": "market"},
    {"ticker": "AAPL", "quantity": 2, "side": "sell", "order_type": "market", "action": "short_sell"},
    {"ticker": "MSFT", "notional": 250.5, "side": "buy", "order_type": "market"},
    {"ticker": "MSFT", "quantity": 2, "side": "buy", "order_type": "limit", "limit_price": 101.25,
     "time_in_force": "gtc"},
    {"ticker": "AAPL", "quantity": 7, "side": "sell", "order_type": "stop", "stop_price": 99.5, "time_in_force": "ioc"},
    {"ticker": "MSFT", "quantity": 1, "side": "buy", "order_type": "stop_limit", "stop_price": 100.5,
     "limit_price": 101, "time_in_force": "fok"},
    {"ticker": "AAPL", "quantity": 1, "side": "sell", "order_type": "limit", "limit_price": 0.1234,
     "time_in_force": "opg"},
]  # fmt: skip


@pytest.mark.parametrize("raw", SIMPLE_ORDERS, ids=lambda raw: f"{raw['order_type']}-{raw['side']}")
def test_replay_hands_the_broker_what_the_orders_json_body_parses_to(raw: dict[str, Any]) -> None:
    """Replay gives a simple order to the simulator's broker as typed fields, not as JSON: the
    broker's order must be the one the live path's body (`Order.to_alpaca`) parses to."""
    import dataclasses

    from blockpaca_nb.orders import validate_order
    from blockpaca_nb.replayer import typed_order
    from blockpaca_nb.sim.broker import Broker
    from blockpaca_nb.sim.market import Market

    broker = Broker(Market(("AAPL", "MSFT"), 0, 1.0), 100_000.0, lambda *event: None, strict=True)
    order = validate_order(raw, {"AAPL", "MSFT"})
    from_json = broker._parse(order.to_alpaca("cid-1"))
    typed = typed_order(broker, order, "cid-1", from_json.created_at)

    def field(order: Any, name: str) -> tuple[type, Any]:
        return type(getattr(order, name)), getattr(order, name)  # an int where JSON gives a float differs

    differing = [f.name for f in dataclasses.fields(from_json) if f.name != "id"
                 and field(from_json, f.name) != field(typed, f.name)]  # fmt: skip
    assert differing == []
    assert typed.id != from_json.id  # each got its own


def test_a_wash_trade_is_refused_as_on_paper() -> None:
    def wash(ctx: Any) -> list[dict[str, Any]]:
        step = ctx.state["step"] = ctx.state.get("step", 0) + 1
        quotes, _ = ctx.get_current_data()
        if step == 1:
            return [{"ticker": "AAPL", "quantity": 10, "side": "buy", "order_type": "market"}]
        if step == 3:
            price = round(quotes["AAPL"]["ask"] * 1.5, 2)
            return [{"ticker": "AAPL", "quantity": 10, "side": "sell", "order_type": "limit", "limit_price": price}]
        if step == 5:
            return [{"ticker": "AAPL", "quantity": 1, "side": "buy", "order_type": "market"}]
        return []

    r = replay(wash, ["AAPL"], **DAY, eos_behavior="hold", progress=False)
    refused = r.trade_log[(r.trade_log["event"] == "rejected")]
    assert len(refused) == 1
    assert "potential wash trade detected" in refused["reason"].iloc[0]
    statuses = r.orders.set_index("side")["status"]
    assert statuses["sell"] == "new"  # the resting sell is still there, the buy never reached it


def test_an_order_after_the_close_waits_for_the_next_open() -> None:
    def after_close(ctx: Any) -> list[dict[str, Any]]:
        if at(ctx).time() >= dt.time(16, 0) and not ctx.state.get("sent"):
            ctx.state["sent"] = True
            return [{"ticker": "AAPL", "quantity": 5, "side": "buy", "order_type": "market"}]
        return []

    r = replay(after_close, ["AAPL"], start="2026-11-03", end="2026-11-04", eos_behavior="hold", progress=False)
    order = r.orders.iloc[0]
    assert order["created_at"].time() == dt.time(16, 0)
    assert order["filled_at"] == pd.Timestamp("2026-11-04 09:30", tz=NEW_YORK)  # at the next open
    events = list(r.trade_log[r.trade_log["order_id"] == order["id"]]["event"])
    assert events[:2] == ["accepted", "accepted"] and events[-1] == "fill"  # answered, streamed accepted


def test_eod_sessions_end_flat_every_day() -> None:
    r = replay(buy_once_a_day(), ["AAPL"], **WEEK, run_seconds="EOD", progress=False)
    fills = r.fills.assign(when=pd.to_datetime(r.fills["time"], unit="s", utc=True).dt.tz_convert(NEW_YORK))
    sells = fills[fills["qty"] < 0]
    assert len(sells) == 5  # one liquidation per day
    assert all(t.time() == dt.time(15, 59, 30) or t.time() > dt.time(15, 59, 30) for t in sells["when"])
    assert r.positions.empty
    held = r.equity.groupby(r.equity.index.date).size()
    assert len(held) == 5


def buy_once_a_day() -> Any:
    def strategy(ctx: Any) -> list[dict[str, Any]]:
        day = at(ctx).date()
        if ctx.state.get("day") == day:
            return []
        ctx.state["day"] = day
        return [{"ticker": "AAPL", "quantity": 3, "side": "buy", "order_type": "market"}]

    return strategy


def test_hold_keeps_what_the_strategy_bought_and_stats_add_up() -> None:
    r = replay(buy_once(10), ["AAPL"], **DAY, eos_behavior="hold", progress=False)
    assert r.positions.set_index("ticker")["quantity"].to_dict() == {"AAPL": 10}
    row = r.positions.iloc[0]  # a live session's s.positions columns first, so analysis code carries over
    assert list(r.positions.columns[:4]) == ["ticker", "quantity", "bought_at", "cost_basis"]
    assert row["cost_basis"] == pytest.approx(10 * row["bought_at"]) and row["bought_at"] == row["avg_price"]
    price = r.fills["price"].iloc[0]
    last_mid = float(r.tape.mid[r.ticks - 1, 0])
    assert r.stats["final_equity"] == pytest.approx(100_000 - 10 * price + 10 * last_mid)
    assert r.stats["total_return"] == pytest.approx(r.stats["final_equity"] / 100_000 - 1)
    assert r.stats["trades"] == 0 and r.stats["fills"] == 1
    assert r.stats["exposure"] > 0.99


def test_interrupting_returns_what_was_done_so_far() -> None:
    def stops(ctx: Any) -> list[dict[str, Any]]:
        calls = ctx.state["calls"] = ctx.state.get("calls", 0) + 1
        if calls == 50:
            raise KeyboardInterrupt
        return [{"ticker": "AAPL", "quantity": 1, "side": "buy", "order_type": "market"}] if calls == 1 else []

    r = replay(stops, ["AAPL"], **WEEK, progress=False)
    assert r.interrupted and r.ticks < 60
    assert len(r.equity) == r.ticks and r.state["calls"] == 50
    assert (r.trade_log["event"] == "fill").sum() == 1
    assert gc.get_freeze_count() == 0  # what the run set aside from the garbage collector is back

    class Abandoned(BaseException):  # not an Exception: a strategy's error that ends the run itself
        pass

    def abandons(ctx: Any) -> None:
        if ctx.state.setdefault("calls", 0) == 3:
            raise Abandoned
        ctx.state["calls"] += 1

    with pytest.raises(Abandoned):
        replay(abandons, ["AAPL"], **DAY, progress=False)
    assert gc.get_freeze_count() == 0


@pytest.mark.parametrize("held", [False, True], ids=["before the broker held it", "after"])
def test_an_interrupt_inside_the_broker_leaves_a_readable_log_of_what_it_holds(
    monkeypatch: pytest.MonkeyPatch, held: bool
) -> None:
    """Ctrl-C lands inside the broker most often (most of an order's time is spent there): the place
    reserved for that submission's row once made both trade logs unreadable (TypeError)."""
    from blockpaca_nb.sim.broker import Broker

    take, calls = Broker.take, [0]

    def interrupted(self: Broker, order: Any, legs: Any, now: float) -> Any:
        calls[0] += 1
        if calls[0] == 3 and not held:
            raise KeyboardInterrupt
        taken = take(self, order, legs, now)
        if calls[0] == 3:
            raise KeyboardInterrupt
        return taken

    monkeypatch.setattr(Broker, "take", interrupted)
    r = replay(lambda ctx: [{"ticker": "AAPL", "quantity": 1, "side": "buy", "order_type": "market"}], ["AAPL"],
               **DAY, eos_behavior="hold", progress=False)  # fmt: skip
    assert r.interrupted
    log = r.trade_log
    assert (log["event"] == "accepted").sum() == len(r.orders) == (3 if held else 2)  # a row per order it holds
    pd.testing.assert_frame_equal(log, load_trade_log(io.StringIO(r.trade_log_csv)), check_exact=True)


def test_an_exits_rows_say_the_quantity_it_had_then() -> None:
    """A take profit filled in part shrinks its stop loss: the stop's rows before that say what it
    was ordered for then (as a live session's stream said), not what it was left at the end."""
    minutes = pd.date_range("2026-09-01 13:30", periods=6, freq="1min", tz="UTC")
    bid = [99.9, 99.9, 101.0, 100.0, 100.0, 100.0]  # the take profit (100.5) touched at 13:32, for 40 shares
    quotes = pd.DataFrame({"symbol": "XYZ", "timestamp": minutes, "bid": bid, "ask": [b + 0.1 for b in bid],
                           "bid_size": [1000, 1000, 40, 1000, 1000, 1000], "ask_size": 1000})  # fmt: skip

    def entry(ctx: Any) -> Any:
        if not ctx.state.get("sent"):
            ctx.state["sent"] = True
            return [{"ticker": "XYZ", "quantity": 100, "side": "buy", "order_type": "market",
                     "take_profit": 100.5, "stop_loss": 95}]  # fmt: skip
        return None

    r = replay(entry, ["XYZ"], data=quotes, progress=False, eos_behavior="hold")
    log = r.trade_log
    stop = log[log["reason"].str.startswith("stop-loss exit")]
    assert len(stop) and (stop["qty"] == 100).all()  # its events all came before the shrink (it once said 60)
    assert r.orders.set_index("type").loc["stop", "qty"] == 60  # 40 of the 100 sold by the take profit
    terms = r.orders.set_index("type").loc["stop", ["stop_price", "time_in_force", "order_class"]]
    assert tuple(terms) == (95.0, "day", "bracket")  # its terms, as Alpaca's order shows them
    pd.testing.assert_frame_equal(log, load_trade_log(io.StringIO(r.trade_log_csv)), check_exact=True)


def test_a_notional_orders_rows_show_no_quantity_as_alpacas_stream_does() -> None:
    buys = lambda ctx: [{"ticker": "AAPL", "notional": 100.5, "side": "buy", "order_type": "market"}]  # noqa: E731
    r = replay(buys, ["AAPL"], **DAY, frequency="1h", eos_behavior="hold", progress=False)
    rows = r.trade_log[r.trade_log["type"] != "validation"]
    assert rows["qty"].isna().all() and (rows["fill_qty"] > 0).any()


def test_a_replay_sets_aside_what_it_keeps_from_the_garbage_collector_only_while_it_runs() -> None:
    frozen: list[int] = []

    def looks(ctx: Any) -> None:
        frozen.append(gc.get_freeze_count())

    replay(looks, ["AAPL"], **DAY, progress=False)
    assert len(frozen) > 1 and all(count > 0 for count in frozen[1:])  # frozen after the first tick
    assert gc.get_freeze_count() == 0
    gc.freeze()  # a caller that froze objects itself: left as it was
    try:
        kept = gc.get_freeze_count()
        frozen.clear()
        replay(looks, ["AAPL"], **DAY, progress=False)
        assert all(0 < count <= kept for count in frozen) and 0 < gc.get_freeze_count() <= kept  # none added
    finally:
        gc.unfreeze()


def test_commission_and_slippage_cost_what_they_say() -> None:
    plain = replay(buy_once(10), ["AAPL"], **DAY, eos_behavior="hold", progress=False)
    costly = replay(
        buy_once(10), ["AAPL"], **DAY, eos_behavior="hold", slippage_bps=10, commission_per_share=0.01,
        commission_per_order=1.0, progress=False,
    )  # fmt: skip
    assert costly.fills["price"].iloc[0] == pytest.approx(plain.fills["price"].iloc[0] * 1.001)
    assert costly.stats["fees"] == pytest.approx(10 * 0.01 + 1.0)
    extra = 10 * plain.fills["price"].iloc[0] * 0.001 + 1.1
    assert plain.stats["final_equity"] - costly.stats["final_equity"] == pytest.approx(extra)


def test_a_dataframe_of_bars_replays_like_the_simulator_history() -> None:
    r = replay(momentum, ["AAPL"], **DAY, warm_up_days=0, eos_behavior="hold", progress=False)
    ends = pd.to_datetime(r.tape.bar_end - 60, unit="s", utc=True)
    frame = pd.DataFrame({f: v[:, 0] for f, v in r.tape.bars.items()}, index=ends).assign(symbol="AAPL")
    frame = frame.rename_axis("timestamp").reset_index()
    again = replay(momentum, ["AAPL"], data=frame, spread_bps=_spread("AAPL"), eos_behavior="hold", progress=False)
    assert again.trade_log_csv == r.trade_log_csv


def _week_of_bars(symbols: list[str]) -> pd.DataFrame:
    """The simulator's minute bars of WEEK for ``symbols`` as a long frame (symbol, timestamp in UTC)."""
    r = replay(momentum, symbols, **WEEK, warm_up_days=0, eos_behavior="hold", progress=False)
    ends = pd.to_datetime(r.tape.bar_end - 60, unit="s", utc=True)
    frames = [pd.DataFrame({f: v[:, j] for f, v in r.tape.bars.items()}, index=ends).assign(symbol=s)
              for j, s in enumerate(symbols)]  # fmt: skip
    return pd.concat(frames).rename_axis("timestamp").reset_index()


def test_data_it_cannot_read_as_given_is_refused_or_said() -> None:
    """Bars without a time zone (read as UTC they traded five hours early), two bars of one minute
    (which one counted hung on their order), data all after the session's end (nothing replayed, then
    a result that could not be shown): refused, naming what to do. A symbol missing a day (its last
    price carried through it, orders filling there) or starting late (the replay starts with it): said."""
    from blockpaca_nb.errors import DataWarning

    bars = _week_of_bars(["AAPL", "MSFT"])
    naive = bars.assign(timestamp=bars["timestamp"].dt.tz_convert("America/New_York").dt.tz_localize(None))
    with pytest.raises(ConfigurationError, match=r"no time zone .*tz_localize\('America/New_York'\)"):
        replay(momentum, ["AAPL", "MSFT"], data=naive, progress=False)
    text = bars.assign(timestamp=bars["timestamp"].dt.strftime("%Y-%m-%d %H:%M:%S+00"))  # PostgreSQL's text: zoned
    mixed = text.assign(timestamp=text["timestamp"].where(text.index != 100, "2026-11-02 09:30:00"))  # one without
    with pytest.raises(ConfigurationError, match=r"no time zone \(the first: '2026-11-02 09:30:00'\)"):
        replay(momentum, ["AAPL", "MSFT"], data=mixed, progress=False)  # (it was read as UTC, as the rest)
    assert replay(momentum, ["AAPL", "MSFT"], data=text, progress=False).ticks > 0
    with pytest.raises(ConfigurationError, match=r"2 rows that share a symbol and a time .*drop_duplicates"):
        replay(momentum, ["AAPL", "MSFT"], data=pd.concat([bars, bars.iloc[[7]]]), progress=False)
    day = bars["timestamp"].dt.tz_convert("America/New_York").dt.date
    gap = bars[~((bars["symbol"] == "MSFT") & (day == dt.date(2026, 11, 4)))]
    with pytest.warns(DataWarning, match="no MSFT rows on 2026-11-04: its last price is carried through that day"):
        replay(momentum, ["AAPL", "MSFT"], data=gap, progress=False)
    with pytest.warns(DataWarning, match="no MSFT rows on 2026-11-04: its last price is carried"):
        replay(momentum, ["AAPL", "MSFT"], data=gap, start="2026-11-04", progress=False)  # carried in from before start
    late = bars[~((bars["symbol"] == "MSFT") & (day < dt.date(2026, 11, 4)))]
    with pytest.warns(DataWarning, match="no MSFT rows before 2026-11-04: the replay starts there"):
        r = replay(momentum, ["AAPL", "MSFT"], data=late, progress=False)
    first = pd.Timestamp(r.tape.times[0], unit="s", tz="UTC").tz_convert("America/New_York")
    assert first.date() == dt.date(2026, 11, 4)
    evening = bars[bars["timestamp"] >= pd.Timestamp("2026-11-06 20:00", tz="UTC")]  # 15:00 New York on: no session
    after = evening.assign(timestamp=evening["timestamp"] + pd.Timedelta(hours=1, minutes=1))  # 16:01 on
    with pytest.raises(ConfigurationError, match=r"no tick in NYSE regular hours .* market_hours='always'"):
        replay(momentum, ["AAPL", "MSFT"], data=after, progress=False)
    before = evening.assign(timestamp=evening["timestamp"] - pd.Timedelta(hours=7))  # 08:00 on: before the open
    with pytest.raises(ConfigurationError, match=r"no tick in NYSE regular hours .* from 2026-11-06 08:00:00"):
        replay(momentum, ["AAPL", "MSFT"], data=before, progress=False)
    assert "ticks" in repr(replay(momentum, ["AAPL", "MSFT"], data=after, market_hours="always", progress=False))
    times = pd.date_range("2026-11-03 14:30", periods=60, freq="1s", tz="UTC")
    quotes = pd.DataFrame({"symbol": "AAPL", "timestamp": times, "bid": 100.0, "ask": 100.02})
    quotes.loc[30, ["bid", "ask"]] = [101.0, 99.0]
    others = quotes.assign(symbol="MSFT", bid=50.0, ask=50.01, timestamp=times + pd.Timedelta(milliseconds=500))
    with pytest.warns(DataWarning, match=r"1 crossed quotes \(bid above ask; the first: AAPL at 2026-11-03 14:30:30"):
        replay(momentum, ["AAPL", "MSFT"], data=pd.concat([quotes, others]), progress=False)  # one, however many follow
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)  # what is missing before start is not what is replayed
        replay(momentum, ["AAPL", "MSFT"], data=gap, start="2026-11-05", end="2026-11-06", progress=False)


def _spread(symbol: str) -> float:
    from blockpaca_nb.sim.universe import profile

    return profile(symbol, 0).spread_bps


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"start": "2019-01-02", "end": "2019-01-05", "as_of": AS_OF}, "start="),
        ({"start": "2026-11-02", "end": "2026-12-01", "as_of": AS_OF}, "end="),
        ({**DAY, "seed": "x"}, "seed="),
        ({**DAY, "frequncy": "5m"}, "unknown arguments"),
        ({**DAY, "eos_behavior": "custom"}, "custom_shutdown_action"),
        ({**DAY, "spread_bps": 0}, "spread_bps="),
        ({**DAY, "warm_up_days": -1}, "warm_up_days="),
        ({**DAY, "frequency": "soon"}, "frequency="),
        ({**DAY, "eos_behavior": "sell"}, "eos_behavior="),
        ({**DAY, "data": 42}, "data="),
        ({"start": DAY["start"], "end": DAY["end"], "data": None}, "data=None"),
        ({"start": "2026-11-06", "end": "2026-11-02", "as_of": AS_OF}, "start=2026-11-06 is after end"),
        ({**DAY, "slippage_bps": -1}, "slippage_bps="),
        ({**DAY, "start": pd.Timestamp("2026-11-03 12:00")}, r"start=Timestamp\('2026-11-03 12:00:00'\) is not valid"),
        ({**DAY, "market_hours": "lse"}, "market_hours="),
        ({**DAY, "starting_cash": 0}, r"starting_cash=0 is not valid; allowed: a number > 0"),
        ({**DAY, "commission_per_share": float("inf")}, "commission_per_share="),
        ({**DAY, "eos_behavior": "custom", "custom_shutdown_action": lambda ctx, extra: []},
         r"custom_shutdown_action <lambda>\(ctx, extra\) is not valid; allowed: a function of one argument"),
    ],
)
def test_bad_arguments_name_the_field_and_what_is_allowed(arguments: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigurationError, match=field) as caught:
        replay(momentum, ["AAPL"], progress=False, **arguments)
    assert "allowed" in str(caught.value)


def test_a_strategy_that_cannot_take_the_context_is_refused_before_it_runs() -> None:
    """It once failed at every tick (1 172 errors for a week)."""

    def needs_two(ctx: Any, lookback: int) -> None:
        return None

    def takes_defaults(ctx: Any, lookback: int = 5) -> None:
        return None

    allowed = r"allowed: a function of one argument, the context"
    with pytest.raises(ConfigurationError, match=rf"fn needs_two\(ctx, lookback\) is not valid; {allowed}"):
        replay(needs_two, ["AAPL"], **DAY, progress=False)
    with pytest.raises(ConfigurationError, match=allowed):
        replay({"a": takes_defaults, "b": lambda: None}, ["AAPL"], **DAY, progress=False)
    assert replay(takes_defaults, ["AAPL"], **DAY, frequency="1h", progress=False).error_count == 0

    @functools.wraps(needs_two)  # a decorator that supplies the rest: what is called takes the context
    def decorated(ctx: Any) -> None:
        return needs_two(ctx, 5)

    assert replay(decorated, ["AAPL"], **DAY, frequency="1h", progress=False).error_count == 0
    with pytest.raises(ConfigurationError, match=r"grid \['lookbak'\] does not fit make_strategy"):
        sweep(lambda lookback: takes_defaults, {"lookbak": [1, 2]}, tickers=["AAPL"], **DAY, progress=False)


def test_a_ticker_the_simulator_does_not_list_is_refused_with_the_close_ones() -> None:
    with pytest.raises(ConfigurationError, match=r"\['APPL'\] are not in the simulator's universe") as caught:
        replay(momentum, ["APPL"], **DAY, progress=False)
    assert "AAPL" in str(caught.value) and "data=a DataFrame" in str(caught.value)


def test_round_trips_count_flat_to_flat_and_flips() -> None:
    fills = pd.DataFrame(
        [(1, "A", 5, 10.0), (2, "A", -2, 12.0), (3, "A", -3, 11.0), (4, "A", -4, 11.0), (5, "A", 6, 9.0)],
        columns=["time", "symbol", "qty", "price"],
    )
    trips = round_trips(fills)
    assert [(t.opened, t.closed) for t in trips] == [(1, 3), (4, 5)]
    assert trips[0].pnl == pytest.approx(2 * 2 + 3 * 1)
    assert trips[1].pnl == pytest.approx(4 * (11 - 9))


def make_momentum(lookback: int, size: int) -> Any:
    def strategy(ctx: Any) -> list[dict[str, Any]]:
        quotes, positions = ctx.get_current_data()
        held = {p["ticker"]: p["quantity"] for p in positions}
        history = ctx.state.setdefault("mids", [])
        mid = (quotes["AAPL"]["bid"] + quotes["AAPL"]["ask"]) / 2
        history.append(mid)
        if len(history) <= lookback:
            return []
        rising = mid > history[-1 - lookback]
        if rising and not held.get("AAPL"):
            return [{"ticker": "AAPL", "quantity": size, "side": "buy", "order_type": "market"}]
        if not rising and held.get("AAPL", 0) > 0:
            return [{"ticker": "AAPL", "quantity": held["AAPL"], "side": "sell", "order_type": "market"}]
        return []

    return strategy


def test_sweep_runs_every_combination_sorted_best_first() -> None:
    grid = sweep(make_momentum, {"lookback": [2, 10], "size": [1, 3]}, tickers=["AAPL"], **DAY, progress=False)
    assert len(grid) == 4 and set(grid.parameters) == {"lookback", "size"}
    assert all(type(value) is int for value in grid.best.values())  # as given: make_strategy(**best) works
    assert grid.best == {"lookback": int(grid["lookback"].iloc[0]), "size": int(grid["size"].iloc[0])}
    assert list(grid["sharpe"].dropna()) == sorted(grid["sharpe"].dropna(), reverse=True)
    one = replay(make_momentum(**grid.best), ["AAPL"], **DAY, progress=False)
    assert one.stats["sharpe"] == pytest.approx(grid["sharpe"].iloc[0], nan_ok=True)
    figure = grid.plot()
    assert figure.data[0].type == "heatmap"


def test_the_tape_a_sweep_hands_its_workers_is_the_one_replay_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    """The local pool's workers are handed the simulator's tape under the key replay() looks up: a
    replay after `sim_tape_for` with the same arguments makes no tape of its own."""
    from blockpaca_nb import replayer

    arguments = {"tickers": ["AAPL", "MSFT"], **DAY, "frequency": "5m", "seed": 3, "starting_cash": 50_000}
    handed = replayer.sim_tape_for(**arguments)
    assert handed is not None and handed[0].symbols == ("AAPL", "MSFT") and handed[0].seed == 3

    def made_again(*_: Any) -> None:
        raise AssertionError("replay made a tape it was handed")

    monkeypatch.setattr(replayer, "sim_tape", made_again)
    assert replay(momentum, progress=False, **arguments).tape is handed[1]
    assert replayer.sim_tape_for(**arguments, data=pd.DataFrame()) is None  # other data: workers load it


def tape_already_kept(lookback: int, size: int) -> Any:
    """A sweep's strategy factory that fails in a pool's worker which was not handed the tape."""
    from blockpaca_nb.replayer import sim_tapes

    assert sim_tapes._tapes, "this worker was not handed the sweep's tape"
    return make_momentum(lookback, size)


TRIO = ["AAPL", "MSFT", "SPY"]


def test_a_local_sweeps_workers_are_handed_the_tape_before_their_first_replay() -> None:
    grid = sweep(tape_already_kept, {"lookback": [2, 3, 4, 5], "size": [1]}, tickers=["AAPL"], **DAY, progress=False)
    assert len(grid) == 4


def test_replays_kept_market_values_are_the_fresh_sum_after_every_fill(monkeypatch: pytest.MonkeyPatch) -> None:
    """Replay keeps the account's long and short market values between fills of one tick (see
    Broker._revalue); what a strategy reads in ctx.account() must be what summing its positions
    afresh gives, and a flat account's exactly 0."""
    from blockpaca_nb import replayer

    seen: list[tuple[tuple[float, float], tuple[float, float], bool]] = []
    original = replayer.Replayer.run

    def run(self: Any, progress: bool = False) -> None:
        self.states[self.strategies[0][0]]["fresh"] = self.broker._market_values  # the positions summed afresh
        original(self, progress)

    def looks(ctx: Any) -> None:
        account = ctx.account()
        flat = not ctx.get_current_data()[1]
        seen.append(((account["long_market_value"], account["short_market_value"]), ctx.state["fresh"](), flat))

    def churns(ctx: Any) -> None:  # buys and sells inside one tick, reading the account after each
        ctx.submit_order([{"ticker": t, "quantity": 3, "side": "buy", "order_type": "market"} for t in TRIO])
        looks(ctx)
        _, positions = ctx.get_current_data()
        ctx.submit_order([{"ticker": p["ticker"], "quantity": p["quantity"], "side": "sell", "order_type": "market"}
                          for p in positions[:2]])  # fmt: skip
        looks(ctx)
        ctx.submit_order([{"ticker": p["ticker"], "quantity": p["quantity"], "side": "sell", "order_type": "market"}
                          for p in ctx.get_current_data()[1]])  # fmt: skip
        looks(ctx)

    monkeypatch.setattr(replayer.Replayer, "run", run)
    replay(churns, TRIO, **DAY, frequency="5m", eos_behavior="hold", progress=False)
    assert len(seen) > 60
    assert [(kept, fresh) for kept, fresh, _ in seen if kept != pytest.approx(fresh, rel=1e-12, abs=1e-9)] == []
    flat = [kept for kept, _, is_flat in seen if is_flat]
    assert flat and set(flat) == {(0.0, 0.0)}  # exactly: no float dust left behind by the sells


def test_sweep_on_a_dask_cluster_gives_the_same_grid() -> None:
    distributed = pytest.importorskip("distributed")
    local = sweep(make_momentum, {"lookback": [2, 5], "size": [1, 2]}, tickers=["AAPL"], **DAY, progress=False)
    with (
        distributed.LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster,
        distributed.Client(cluster) as client,
    ):
        remote = sweep(
            make_momentum, {"lookback": [2, 5], "size": [1, 2]}, tickers=["AAPL"], **DAY,
            executor=client.get_executor(), progress=False,
        )  # fmt: skip
    pd.testing.assert_frame_equal(pd.DataFrame(local), pd.DataFrame(remote))


def test_alpaca_bars_come_from_the_historical_endpoint_then_from_the_cache(tmp_path: Path) -> None:
    from blockpaca_nb import Simulator

    day = {"start": DAY["start"], "end": DAY["end"], "warm_up_days": 0}
    with Simulator(symbols=["AAPL"], seed=0) as sim:
        keys = {"api_key": sim.api_key, "secret_key": sim.secret_key, "urls": sim.urls, "cache_dir": tmp_path}
        fetched = replay(momentum, ["AAPL"], **day, data="alpaca", progress=False, **keys)
    cached = list((tmp_path / "bars").glob("alpaca-iex-1Min-2026-11-03-2026-11-03-AAPL.parquet"))
    assert len(cached) == 1
    again = replay(momentum, ["AAPL"], **day, data="alpaca", progress=False, **keys)  # the simulator is gone
    assert again.trade_log_csv == fetched.trade_log_csv
    simulated = replay(momentum, ["AAPL"], **day, progress=False)  # the simulator's history as of today
    assert fetched.tape.bars["close"].tolist() == simulated.tape.bars["close"].tolist()  # the same history


def test_a_recorded_session_replays_at_tick_resolution(tmp_path: Path) -> None:
    from engine_helpers import TICKERS, make_session, started
    from waiting import wait_for

    from blockpaca_nb import Simulator

    with Simulator(symbols=TICKERS, seed=2, quotes_per_second=20) as sim:
        s = started(make_session(sim, tmp_path, "recorded", record_quotes=True))
        assert s.quote_file is not None
        wait_for(lambda: s.quote_file.is_file() and s.quote_file.stat().st_size > 4000, 60, "quotes recorded")
        s.stop(wait=True)
    assert s.quote_file.name == "recorded_quotes.parquet" and s.quote_file.is_file()
    recorded = pd.read_parquet(s.quote_file)
    assert set(recorded["symbol"]) == set(TICKERS)
    seen: list[dict[str, dict[str, float]]] = []

    def watch(ctx: Any) -> list[Any]:
        seen.append(ctx.get_current_data()[0])
        return []

    r = replay(watch, TICKERS, data=s.quote_file, frequency=0.001, market_hours="always", progress=False)
    assert len(seen) == r.ticks == len(r.tape) > 20  # one tick per recorded quote time
    last = recorded.sort_values("timestamp", kind="stable").groupby("symbol").last()
    for ticker in TICKERS:
        assert seen[-1][ticker]["bid"] == last.loc[ticker, "bid"] and seen[-1][ticker]["ask"] == last.loc[ticker, "ask"]


def test_the_replayed_function_trades_live_unchanged(tmp_path: Path) -> None:
    from engine_helpers import make_session, started
    from waiting import wait_for

    from blockpaca_nb import Simulator

    fn = make_momentum(lookback=1, size=1)
    assert replay(fn, ["AAPL"], **DAY, progress=False).stats["fills"] > 0
    with Simulator(symbols=["AAPL", "MSFT"], seed=4, quotes_per_second=20) as sim:
        s = started(make_session(sim, tmp_path, "swapped"))
        try:
            s.swap(fn)
            wait_for(lambda: any(o["client_order_id"].endswith("-strategy") for o in sim.orders()), 60, "an order")
        finally:
            s.stop(wait=True)
        assert all(o["symbol"] == "AAPL" for o in sim.orders())  # what the function trades, live as in replay


def test_several_strategies_share_the_account_each_with_its_own_book() -> None:
    def buys_aapl(ctx: Any) -> list[dict[str, Any]]:
        _, mine = ctx.get_current_data()
        if not mine:
            return [{"ticker": "AAPL", "quantity": 4, "side": "buy", "order_type": "market"}]
        return []

    def buys_msft(ctx: Any) -> list[dict[str, Any]]:
        _, mine = ctx.get_current_data()
        ctx.state["net_seen"] = len(ctx.account_positions())
        if not mine:
            return [{"ticker": "MSFT", "quantity": 2, "side": "buy", "order_type": "market"}]
        return []

    r = replay([buys_aapl, buys_msft], ["AAPL", "MSFT"], **DAY, eos_behavior="hold", progress=False)
    books = r.positions_by_strategy.set_index(["strategy", "ticker"])["quantity"].to_dict()
    assert books == {("buys_aapl", "AAPL"): 4, ("buys_msft", "MSFT"): 2}  # each saw only its own positions
    assert r.positions.set_index("ticker")["quantity"].to_dict() == {"AAPL": 4, "MSFT": 2}  # the broker: the sum
    assert r.state["buys_msft"]["net_seen"] == 2  # ctx.account_positions() is the account's
    assert set(r.trade_log["strategy"][r.trade_log["fill_qty"] > 0]) == {"buys_aapl", "buys_msft"}
    pnl = r.pnl_by_strategy
    assert list(pnl.columns) == ["buys_aapl", "buys_msft"] and len(pnl) > 300
    assert pnl.iloc[-1].sum() == pytest.approx(r.stats["final_equity"] - 100_000)  # books add up to the account

    closed = replay({"a": buys_aapl, "b": buys_msft}, ["AAPL", "MSFT"], **DAY, progress=False)
    assert closed.positions.empty and closed.positions_by_strategy["quantity"].abs().sum() == 0
    assert closed.pnl_by_strategy.columns.tolist() == ["a", "b"]


def test_daily_bars_are_refused_they_would_show_the_close_all_day() -> None:
    r = replay(momentum, ["AAPL"], **DAY, warm_up_days=0, progress=False)
    days = pd.DataFrame(
        {"symbol": "AAPL", "timestamp": pd.date_range("2026-11-02", periods=5, freq="D", tz="UTC"), "open": 1.0,
         "high": 1.0, "low": 1.0, "close": 1.0, "volume": 10.0}
    )  # fmt: skip
    with pytest.raises(ConfigurationError, match="1-minute bars"):
        replay(momentum, ["AAPL"], data=days, progress=False)
    assert r.ticks == 390  # the open, then each bar's close up to 15:59 (the session ends at 15:59:30)


def test_a_side_quoted_at_zero_is_no_price_to_fill_at() -> None:
    times = pd.date_range("2026-11-03 14:30", periods=6, freq="1s", tz="UTC")
    asks = [100.1, 0.0, 0.0, 100.2, 100.2, 0]
    quotes = pd.DataFrame({"symbol": "AAPL", "timestamp": times, "bid": 100.0, "ask": asks})
    r = replay(buy_once(5), ["AAPL"], data=quotes, frequency=0.001, eos_behavior="hold", progress=False)
    assert set(r.fills["price"]) == {100.1} and r.tape.ask.min() > 0  # a 0 carries the last real ask forward


def test_a_liquidation_larger_than_the_quote_still_ends_flat() -> None:
    r = replay(buy_once(5_000), ["AAPL"], **DAY, starting_cash=10_000_000, progress=False)
    assert r.positions.empty
    sells = r.fills[r.fills["qty"] < 0]
    assert sells["qty"].sum() == pytest.approx(-5_000) and len(sells) > 1  # filled in parts, at the last quotes


def quitting_at_eleven(calls: list[dt.date], asks: int = 1) -> Any:
    """A strategy that notes the day of each call and, from 11:00, asks (`asks` times) for its end."""

    def strategy(ctx: Any) -> list[Any]:
        calls.append(at(ctx).date())
        if at(ctx).time() >= dt.time(11, 0):
            for _ in range(asks):
                ctx["command_queue"].put("hold")
        return []

    return strategy


def test_a_strategy_that_ends_its_daily_session_waits_for_the_next_day() -> None:
    calls: list[dt.date] = []
    replay(quitting_at_eleven(calls), ["AAPL"], **WEEK, run_seconds="EOD", progress=False)
    per_day = pd.Series(calls).value_counts()
    assert len(per_day) == 5 and (per_day == 91).all()  # 09:30 to 11:00, then nothing until the next open


def test_data_that_ends_inside_a_session_is_replayed_to_its_last_tick() -> None:
    whole = replay(momentum, ["AAPL"], **DAY, warm_up_days=0, eos_behavior="hold", progress=False)
    ends = pd.to_datetime(whole.tape.bar_end - 60, unit="s", utc=True)
    bars = pd.DataFrame({f: v[:, 0] for f, v in whole.tape.bars.items()}, index=ends).assign(symbol="AAPL")
    morning = bars[bars.index < pd.Timestamp("2026-11-03 17:00", tz="UTC")].rename_axis("timestamp").reset_index()
    r = replay(buy_once(3), ["AAPL"], data=morning, progress=False)
    assert r.ticks == len(r.tape) == len(morning) + 1  # the open and every bar's close, none dropped
    assert r.positions.empty  # the session ended at the data's last tick, liquidating


def test_short_replays_have_statistics_not_errors() -> None:
    times = pd.date_range("2026-11-03 14:30", periods=600, freq="1s", tz="UTC")
    quotes = pd.DataFrame({"symbol": "AAPL", "timestamp": times, "bid": np.linspace(100, 102, 600)})
    quotes["ask"] = quotes["bid"] + 0.01
    r = replay(buy_once(100), ["AAPL"], data=quotes, frequency=1, eos_behavior="hold", progress=False)
    assert r.stats["total_return"] > 0 and np.isnan(r.stats["cagr"])  # under a month: no yearly rate


def test_bars_before_start_are_there_for_a_warm_up() -> None:
    seen: list[int] = []

    def counts(ctx: Any) -> list[Any]:
        seen.append(len(ctx.bars("AAPL", "1Day", limit=20)))
        return []

    replay(counts, ["AAPL"], **DAY, frequency="1h", progress=False)
    assert seen[0] >= 15  # thirty calendar days of sessions before the first tick
    assert replay(counts, ["AAPL"], **DAY, warm_up_days=0, frequency="1h", progress=False) and seen[-1] == 1


def test_sweep_sorts_volatility_lowest_first_and_refuses_a_statistic_as_parameter() -> None:
    grid = sweep(make_momentum, {"lookback": [2, 10], "size": [1, 5]}, tickers=["AAPL"], **WEEK,
                 sort_by="volatility", progress=False)  # fmt: skip
    assert list(grid["volatility"]) == sorted(grid["volatility"])
    with pytest.raises(ConfigurationError, match="statistic"):
        sweep(lambda trades: momentum, {"trades": [1]}, tickers=["AAPL"], **DAY, progress=False)


def test_a_sweeps_set_whose_strategy_raised_is_flagged_and_never_best() -> None:
    """A strategy raising on every tick trades nothing: zero volatility and drawdown, the "best" by
    either, yet a failure. It is counted in ``errors`` and sorted after every set that ran."""

    def make(lookback: int, size: int) -> Any:
        if size == 5:
            return lambda ctx: 1 / 0
        return make_momentum(lookback, size)

    with ThreadPoolExecutor(2) as pool:  # size 10**7: the broker refuses every order (buying power)
        grid = sweep(make, {"lookback": [2], "size": [1, 5, 10**7]}, tickers=["AAPL"], **WEEK,
                     sort_by="max_drawdown", executor=pool, progress=False)  # fmt: skip
        failing = sweep(make, {"lookback": [2], "size": [5, 10**7]}, tickers=["AAPL"], **WEEK,
                        executor=pool, progress=False)  # fmt: skip
    assert grid.best == {"lookback": 2, "size": 1}
    assert list(grid["size"]) == [1, 5, 10**7] or list(grid["size"]) == [1, 10**7, 5]
    raised, refused = grid.set_index("size").loc[5], grid.set_index("size").loc[10**7]
    assert raised["errors"] > 0 and raised["refused"] == 0
    assert refused["orders"] == 0 and refused["refused"] > 0 and refused["errors"] == 0
    assert raised["max_drawdown"] == refused["max_drawdown"] == 0.0 > grid["max_drawdown"].iloc[0]  # "better"
    with pytest.raises(BlockpacaError, match="every parameter set failed"):
        _ = failing.best


def test_a_side_offered_for_zero_shares_never_fills_and_the_liquidation_ends_cleanly() -> None:
    times = pd.date_range("2026-11-03 14:30", periods=8, freq="1s", tz="UTC")
    bids = [100.0] * 6 + [0.0, 0.0]
    sizes = [300.0] * 6 + [0.0, 0.0]
    quotes = pd.DataFrame({"symbol": "AAPL", "timestamp": times, "bid": bids, "bid_size": sizes,
                           "ask": 100.1, "ask_size": 300.0})  # fmt: skip
    r = replay(buy_once(5), ["AAPL"], data=quotes, frequency=0.001, progress=False)
    assert (r.fills["qty"] != 0).all()  # no fill of 0 shares is logged
    assert r.positions.empty  # the last real bid (and its size) stands: the liquidation fills at it
    assert r.fills["price"].iloc[-1] == 100.0


def test_every_end_asked_for_ends_with_the_session() -> None:
    calls: list[dt.date] = []  # asked twice a call: the next day is not ended by the second
    replay(quitting_at_eleven(calls, asks=2), ["AAPL"], **WEEK, run_seconds="EOD", progress=False)
    assert (pd.Series(calls).value_counts() == 91).all()


def test_a_daily_session_ended_early_is_not_the_end_of_the_data() -> None:
    week = replay(momentum, ["AAPL"], **WEEK, warm_up_days=0, eos_behavior="hold", progress=False)
    ends = pd.to_datetime(week.tape.bar_end - 60, unit="s", utc=True)
    bars = pd.DataFrame({f: v[:, 0] for f, v in week.tape.bars.items()}, index=ends).assign(symbol="AAPL")
    partial = bars[bars.index < pd.Timestamp("2026-11-04 17:00", tz="UTC")].rename_axis("timestamp").reset_index()
    calls: list[dt.date] = []
    replay(quitting_at_eleven(calls), ["AAPL"], data=partial, run_seconds="EOD", progress=False)
    assert len(set(calls)) == 3  # 11-02, 11-03 and the morning of 11-04


def test_commissions_land_in_the_books_that_paid_them() -> None:
    def buys(ticker: str) -> Any:
        def strategy(ctx: Any) -> list[dict[str, Any]]:
            return [] if ctx.get_current_data()[1] else [{"ticker": ticker, "quantity": 3, "side": "buy",
                                                         "order_type": "market"}]  # fmt: skip

        return strategy

    for eos in ("hold", "liquidate"):
        r = replay({"a": buys("AAPL"), "b": buys("MSFT")}, ["AAPL", "MSFT"], **DAY, eos_behavior=eos,
                   commission_per_order=5.0, progress=False)  # fmt: skip
        assert r.pnl_by_strategy.iloc[-1].sum() == pytest.approx(r.stats["final_equity"] - 100_000)
        assert r.stats["fees"] == pytest.approx(10.0 if eos == "hold" else 20.0)
        books = r.positions_by_strategy  # its rows add up to the same P&L: each row's fees beside it
        assert (books["realized_pl"] + books["unrealized_pl"] - books["fees"]).sum() == pytest.approx(
            r.stats["final_equity"] - 100_000)  # fmt: skip
        paid = 5.0 if eos == "hold" else 10.0  # the liquidation's commission: the books it closed, as its fees
        assert books.groupby("strategy")["fees"].sum().to_dict() == {"a": paid, "b": paid}


def test_a_custom_end_sees_every_strategys_positions_as_live() -> None:
    """With several strategies the custom action's context is the session's (it was the first
    strategy's: its book's 140 shares against the account's 26 were refused, the rest left open)."""
    def buys(ticker: str, qty: int) -> Any:
        return lambda ctx: [] if ctx.get_current_data()[1] else [
            {"ticker": ticker, "quantity": qty, "side": "buy", "order_type": "market"}]  # fmt: skip

    def close_all(ctx: Any) -> list[dict[str, Any]]:
        return [{"ticker": p["ticker"], "quantity": p["quantity"], "side": "sell", "order_type": "market"}
                for p in ctx.get_current_data()[1]]  # fmt: skip

    r = replay({"a": buys("AAPL", 3), "b": buys("MSFT", 2)}, ["AAPL", "MSFT"], **DAY, eos_behavior="custom",
               custom_shutdown_action=close_all, progress=False)  # fmt: skip
    assert r.positions.empty and not r.errors
    sells = r.orders[r.orders["side"] == "sell"]
    assert sorted(zip(sells["symbol"], sells["qty"], strict=True)) == [("AAPL", 3.0), ("MSFT", 2.0)]


def test_the_end_of_session_liquidation_leaves_a_sliver_under_a_dollar_open_and_says_so_as_live() -> None:
    def sliver(ctx: Any) -> Any:
        ask = ctx.get_current_data()[0]["AAPL"]["ask"]
        step = ctx.state["step"] = ctx.state.get("step", 0) + 1
        bought = ctx.state.setdefault("bought", round(3 / ask, 6))  # about $3, then all but about $0.40
        orders = {1: ("buy", bought), 2: ("sell", round(bought - 0.4 / ask, 6))}
        return [{"ticker": "AAPL", "side": orders[step][0], "order_type": "market", "quantity": orders[step][1]}] \
            if step in orders else []  # fmt: skip

    r = replay(sliver, ["AAPL"], **DAY, progress=False)
    assert len(r.orders) == 2 and list(r.positions["ticker"]) == ["AAPL"]  # nothing sent for it, nothing refused
    assert 0 < r.positions["market_value"].iloc[0] < 1
    said = [e["reason"] for e in r.errors if isinstance(e, dict) and e.get("where") == "liquidate"]
    assert len(said) == 1 and "left open: Alpaca takes no order worth less than $1" in said[0]


def test_regulatory_fees_are_charged_like_a_live_accounts_and_land_in_the_books() -> None:
    """``regulatory_fees=True``: each fill pays Alpaca's schedule (sells: REG and TAF; all: CAT), out
    of cash, in ``fills["fee"]`` and in the book of the strategy whose order filled."""
    from blockpaca_nb.fees import REGULATORY

    def round_trip(ticker: str) -> Any:
        def strategy(ctx: Any) -> list[dict[str, Any]]:
            return [] if ctx.get_current_data()[1] else [{"ticker": ticker, "quantity": 100, "side": "buy",
                                                         "order_type": "market"}]  # fmt: skip

        return strategy

    plain = replay({"a": round_trip("AAPL"), "b": round_trip("MSFT")}, ["AAPL", "MSFT"], **DAY, progress=False)
    r = replay({"a": round_trip("AAPL"), "b": round_trip("MSFT")}, ["AAPL", "MSFT"], **DAY, regulatory_fees=True,
               progress=False)  # fmt: skip
    due = sum(REGULATORY.on_fill("buy" if f.qty > 0 else "sell", abs(f.qty), f.price) for f in r.fills.itertuples())
    assert set(r.fills["symbol"]) == {"AAPL", "MSFT"} and len(r.fills) == 4  # both bought, both liquidated
    assert due > 0.5 and r.stats["fees"] == pytest.approx(due) and plain.stats["fees"] == 0
    assert plain.stats["final_equity"] - r.stats["final_equity"] == pytest.approx(due)
    assert r.pnl_by_strategy.iloc[-1].sum() == pytest.approx(r.stats["final_equity"] - 100_000)
    books = r.positions_by_strategy
    assert books["fees"].sum() == pytest.approx(due) and (books["fees"] > 0).all()
    with pytest.raises(ConfigurationError, match=r"regulatory_fees='yes' is not valid; allowed: True or False, or a"):
        replay(momentum, ["AAPL"], **DAY, regulatory_fees="yes", progress=False)


def test_a_symbol_that_never_trades_has_a_flat_line_in_the_result() -> None:
    """A buy the broker refuses (more than the buying power) leaves its symbol untraded: the result
    still has its positions, equity and stats (they crashed on a symbol with no fill)."""
    def too_big(ctx: Any) -> list[dict[str, Any]]:
        held = ctx.get_current_data()[1]
        return [] if held or ctx.state.get("sent") else [
            {"ticker": "AAPL", "quantity": 1, "side": "buy", "order_type": "market"},
            {"ticker": "MSFT", "quantity": 1_000_000, "side": "buy", "order_type": "market"},
        ]  # fmt: skip

    r = replay(too_big, ["AAPL", "MSFT"], **DAY, eos_behavior="hold", progress=False)
    assert set(r.fills["symbol"]) == {"AAPL"}
    assert list(r.positions["ticker"]) == ["AAPL"] and list(r.positions["quantity"]) == [1]
    assert r.stats["exposure"] > 0 and len(r.equity) == r.ticks  # the stats read each symbol's holding per tick


def test_best_follows_the_rows_after_a_new_sort() -> None:
    grid = sweep(make_momentum, {"lookback": [2, 10], "size": [1, 5]}, tickers=["AAPL"], **WEEK, progress=False)
    again = grid.sort_values("volatility")
    assert again.best == {"lookback": int(again["lookback"].iloc[0]), "size": int(again["size"].iloc[0])}


def test_a_bracket_exit_partly_filled_shrinks_its_sibling_so_no_pair_sells_more_than_its_entry() -> None:
    """The paper profile fills some marketable orders in part first: a take profit that sold 8 of 10
    leaves its stop loss only 2 to sell (it once sold all 10, turning the position short)."""
    r = replay(bracket_when_flat, ["XYZ"], data=bracket_bars(), progress=False, eos_behavior="hold")
    log = r.trade_log
    fills = log[log["fill_qty"] > 0]
    exits = fills[fills["reason"].str.contains("exit of", na=False)]
    partly = exits[(exits["event"] == "partial_fill") & exits["reason"].str.startswith("take-profit")]
    assert len(partly), "no take profit filled in part: the case is not exercised"
    signed = np.where(fills["side"] == "buy", 1.0, -1.0) * fills["fill_qty"]
    assert signed.cumsum().min() >= 0  # never short
    entry_of = exits["reason"].str.extract(r"exit of (\S+)")[0].str.rstrip(";")
    sold = exits.groupby(entry_of)["fill_qty"].sum()
    bought = fills[fills["side"] == "buy"].groupby("client_order_id")["fill_qty"].sum()
    assert (sold <= bought.reindex(sold.index)).all(), (sold - bought.reindex(sold.index)).max()
    slipped = replay(bracket_when_flat, ["XYZ"], data=bracket_bars(), progress=False, slippage_bps=100)
    assert slipped.stats["orders"] > 0 and slipped.stats["refused"] == 0  # Alpaca's base price: the quote, unslipped


def bracket_bars() -> pd.DataFrame:
    """A day of XYZ minutes cycling through a bracket's life: entry, entry, take profit touched,
    through the stop, back."""
    minutes = pd.date_range("2026-11-02 09:30", "2026-11-02 15:59", freq="1min", tz="America/New_York")
    cycle = [100.0, 100.0, 101.0, 90.0, 100.0]
    prices = [cycle[k % len(cycle)] for k in range(len(minutes))]
    return pd.DataFrame({"symbol": "XYZ", "timestamp": minutes, "open": prices, "high": prices, "low": prices,
                         "close": prices, "volume": 1e6})  # fmt: skip


def bracket_when_flat(ctx: Any) -> Any:
    quotes, positions = ctx.get_current_data()
    if not positions and 99.9 < quotes["XYZ"]["bid"] < 100.1:
        return [{"ticker": "XYZ", "quantity": 10, "side": "buy", "order_type": "market",
                 "take_profit": 100.5, "stop_loss": 95.0}]  # fmt: skip
    return None


def mixed_orders(ctx: Any) -> list[dict[str, Any]]:
    """Every few ticks something else: an invalid order, one too big, a notional buy, one after the close."""
    step = ctx.state["step"] = ctx.state.get("step", 0) + 1
    after_close = at(ctx).time() >= dt.time(16, 0)
    orders = {
        1: {"ticker": "AAPL", "quantity": -3, "side": "buy", "order_type": "market"},
        2: {"ticker": "MSFT", "quantity": 1_000_000, "side": "buy", "order_type": "market"},
        3: {"ticker": "MSFT", "notional": 100.5, "side": "buy", "order_type": "market"},
        4: {"ticker": "AAPL", "quantity": 1, "side": "buy", "order_type": "limit", "limit_price": 1.0},
    }
    order = orders.get(step % 7) or (orders[3] if after_close and step % 5 == 0 else None)
    return [order] if order else []


REPLAYS_WITH_EVERY_KIND_OF_ROW = {  # each: the replay, and what its log must hold for the case to be exercised
    "several strategies, refusals, notional, after the close, EOD": (lambda: replay(
        {"momentum": momentum, "mixed": mixed_orders}, ["AAPL", "MSFT"], start="2026-11-03", end="2026-11-04",
        as_of=AS_OF, run_seconds="EOD", progress=False),
        {"validation_error", "rejected", "accepted", "new", "fill", "canceled", "pending_new"}),
    "bracket exits filled in part": (lambda: replay(
        bracket_when_flat, ["XYZ"], data=bracket_bars(), progress=False, eos_behavior="liquidate"),
        {"partial_fill", "fill", "canceled"}),
    "nothing sent": (lambda: replay(lambda ctx: None, ["AAPL"], **DAY, frequency="1h", progress=False), set()),
}  # fmt: skip


@pytest.mark.parametrize(("make", "events"), REPLAYS_WITH_EVERY_KIND_OF_ROW.values(),
                         ids=REPLAYS_WITH_EVERY_KIND_OF_ROW)  # fmt: skip
def test_the_trade_log_frame_is_what_reading_the_logs_csv_gives(make: Any, events: set[str]) -> None:
    """`r.trade_log` is made column by column (a busy year's took 45 s as CSV written and read back);
    the CSV (`trade_log_csv`, by the live recorder's row functions) stays the reference it must equal."""
    r = make()
    from_csv = load_trade_log(io.StringIO(r.trade_log_csv))
    assert events <= set(from_csv["event"]), events - set(from_csv["event"])
    pd.testing.assert_frame_equal(r.trade_log, from_csv, check_exact=True)
