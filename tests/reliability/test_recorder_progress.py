"""The recorder's bookkeeping behind "each order change logged once" (no processes, no network):
an order's progress only moves forward; a change recovered through REST carries what was executed
since the last logged one; a recorder that replaces a dead one reads the log back and logs nothing
twice, skipping a torn last line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from reliability_helpers import raw_rows

from blockpaca_nb.recorder import Recorder, submission_row
from blockpaca_nb.tradelog import load_trade_log


class Sink(list[Any]):
    """The recorder's events, one by one (it sends a burst's as one list)."""

    def put(self, item: Any) -> None:
        self.extend(item if isinstance(item, list) else [item])


def update(event: str, status: str, filled: float, avg: float | None = None, qty: float | None = None,
           price: float | None = None, order_id: str = "o-1") -> dict[str, Any]:
    order = {"id": order_id, "client_order_id": "buy_long-0-0123abcd", "symbol": "AAPL", "side": "buy",
             "type": "market", "qty": "10", "status": status, "filled_qty": str(filled),
             "filled_avg_price": None if avg is None else str(avg)}
    return {"event": event, "order": order, "timestamp": "2024-01-02T15:00:00Z", "qty": qty, "price": price}


def test_stale_stream_events_after_a_recovered_fill_are_dropped(tmp_path: Path) -> None:
    recorder = Recorder(tmp_path / "log.csv", Sink())
    recorder.report(update("recovered", "filled", 10, 100.0))  # catch-up saw the fill first ...
    for stale in (update("pending_new", "pending_new", 0), update("new", "new", 0),
                  update("fill", "filled", 10, 100.0, qty=10, price=100.0)):
        recorder.report(stale)  # ... then the events queued meanwhile arrive
    rows = raw_rows(tmp_path / "log.csv")
    assert [(r["event"], r["status"], r["executed_qty"]) for r in rows] == [("recovered", "filled", "10.0")]


def test_recovered_changes_carry_what_was_executed_since(tmp_path: Path) -> None:
    events = Sink()
    recorder = Recorder(tmp_path / "log.csv", events)
    recorder.report(update("new", "new", 0))
    recorder.report(update("partial_fill", "partially_filled", 4, 100.0, qty=4, price=100.0))
    recorder.report(update("recovered", "filled", 10, 101.2))  # 6 more at 102.0 while the stream was down
    recorder.report(update("fill", "filled", 10, 101.2, qty=6, price=102.0))  # said again by the stream
    fills = [(e["event"], e["fill_qty"], e["fill_price"]) for e in events]
    assert fills == [("new", None, None), ("partial_fill", 4.0, 100.0), ("recovered", 6.0, pytest.approx(102.0))]
    totals = [(e["executed_qty"], e["executed_price"]) for e in events]  # blockpaca's: the order's running total
    assert totals == [(0.0, 0.0), (4.0, 100.0), (10.0, 101.2)]


def test_a_new_recorder_reads_back_the_log_and_logs_nothing_twice(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    accepted = {"kind": "accepted", "client_order_id": "buy_long-0-0123abcd", "ticker": "AAPL", "side": "buy",
                "action": "buy_long", "order_type": "market", "qty": 10, "time": 1700000000.123456, "worker": 0}
    first = Recorder(path, Sink())
    first.take(accepted, ack=1)
    first.report(update("new", "new", 0))
    first.report(update("partial_fill", "partially_filled", 4, 100.0, qty=4, price=100.0))
    first.writer.close()
    with open(path, "a", encoding="utf-8") as log:  # the dead recorder's last line, cut off
        log.write("execution,buy_long-0-0123abcd,AAPL,100.0")
    events = Sink()
    second = Recorder(path, events, resume=1699999990.0)
    second.take(accepted, ack=1)  # re-sent by the kernel: acknowledged, not logged again
    second.report(update("partial_fill", "partially_filled", 4, 100.0, qty=4, price=100.0))  # old news
    second.report(update("recovered", "filled", 10, 101.2))
    assert [e.get("ack") for e in events][:1] == [1]
    log = load_trade_log(path)
    assert list(log["event"]) == ["accepted", "new", "partial_fill", "recovered"]  # the torn line is gone
    raw_rows(path)  # every row whole
    assert (log.iloc[-1]["fill_qty"], log.iloc[-1]["executed_qty"]) == (6.0, 10.0)
    assert submission_row(accepted)["timestamp"] == 1700000000.123456


def test_an_answer_after_the_fill_says_what_the_order_executed(tmp_path: Path) -> None:
    """The stream often tells of a fill before the worker's answer arrives (two pipes against one
    socket): the answer's row, then the order's last, gives its status and cumulative fill as known,
    so a blockpaca script reading each order's last row sees it executed."""
    path = tmp_path / "log.csv"
    recorder = Recorder(path, Sink())
    recorder.report(update("new", "new", 0))
    recorder.report(update("fill", "filled", 10, 100.5, qty=10, price=100.5))
    recorder.take(accepted_answer("o-1", "2024-01-02T15:00:00Z", 1704207600.5), ack=1)
    recorder.take(accepted_answer("o-2", "2024-01-02T15:00:01Z", 1704207601.5), ack=2)  # nothing heard yet
    recorder.report(update("new", "new", 0, order_id=""))  # a change naming no order ...
    recorder.take({**accepted_answer("", "", 1704207602.5), "kind": "rejected", "reason": "no"}, ack=3)
    log = load_trade_log(path)
    assert log.iloc[-1]["status"] == "rejected" and log.iloc[-1]["executed_qty"] == 0.0  # ... lends it nothing
    log = log[log["order_id"] != ""]
    last = log.groupby("order_id").last()
    assert list(log["type"]) == ["execution", "execution", "submission", "submission"]
    assert (last.loc["o-1", "status"], last.loc["o-1", "executed_qty"], last.loc["o-1", "executed_price"]) == (
        "filled", 10.0, 100.5)  # fmt: skip
    assert last.loc["o-1", "raw_status"] == "OrderStatus.FILLED" and last.loc["o-1", "event"] == "accepted"
    assert (last.loc["o-2", "status"], last.loc["o-2", "executed_qty"]) == ("accepted", 0.0)


def accepted_answer(order_id: str, submitted_at: str, at: float) -> dict[str, Any]:
    order = {"id": order_id, "client_order_id": "buy_long-1-0badcafe", "status": "accepted",
             "submitted_at": submitted_at, "filled_qty": "0"}
    return {"kind": "accepted", "client_order_id": "buy_long-1-0badcafe", "ticker": "AAPL", "side": "buy",
            "action": "buy_long", "order_type": "market", "qty": 1, "time": at, "worker": 1, "order": order}


def test_orders_named_by_workers_are_looked_for_until_final(tmp_path: Path) -> None:
    """A worker's answer makes an order known to catch-up even if the stream never mentions it; a
    restarted recorder knows it from the log; the stream's first word about it is still news."""
    path = tmp_path / "log.csv"
    recorder = Recorder(path, Sink())
    recorder.take(accepted_answer("o-9", "2024-01-02T15:00:00Z", 1704207600.5), ack=1)
    assert list(recorder.ledger.open_orders()) == ["o-9"]
    recorder.writer.close()
    again = Recorder(path, Sink(), resume=1704207000.0)
    assert list(again.ledger.open_orders()) == ["o-9"]
    again.report(update("pending_new", "pending_new", 0, order_id="o-9"))
    again.report(update("fill", "filled", 10, 100.0, qty=10, price=100.0, order_id="o-9"))
    assert again.ledger.open_orders() == {}
    assert [r["event"] for r in raw_rows(path)] == ["accepted", "pending_new", "fill"]


def test_a_late_answer_about_an_order_older_than_the_last_catch_up_is_looked_up(tmp_path: Path) -> None:
    """An answer that arrives after a catch-up, for an order submitted before that catch-up began,
    may describe changes the stream reported to nobody: the order is looked up at once."""
    recorder = Recorder(tmp_path / "log.csv", Sink())
    looked: list[str] = []
    recorder.look_up = looked.append
    recorder.caught_up_from = 1704207610.0  # 2024-01-02T15:00:10Z
    recorder.take(accepted_answer("o-new", "2024-01-02T15:00:11Z", 1704207611.2), ack=1)  # after: the stream tells
    recorder.take(accepted_answer("o-old", "2024-01-02T15:00:05Z", 1704207611.3), ack=2)  # before: look it up
    recorder.report(update("new", "new", 0, order_id="o-heard"))
    recorder.take(accepted_answer("o-heard", "2024-01-02T15:00:05Z", 1704207611.4), ack=3)  # heard already
    assert looked == ["o-old"]


def test_a_burst_of_changes_leaves_in_one_write_and_one_message(tmp_path: Path) -> None:
    """Inside a batch nothing leaves; at its end the rows are written, then their events go to the
    kernel as one message — an acknowledgement never before its row is in the log."""
    path = tmp_path / "log.csv"
    messages: list[Any] = []
    recorder = Recorder(path, type("Raw", (), {"put": staticmethod(messages.append)})())
    with recorder.batch():
        recorder.report(update("new", "new", 0))
        recorder.report(update("partial_fill", "partially_filled", 4, 100.0, qty=4, price=100.0))
        recorder.report(update("fill", "filled", 10, 101.2, qty=6, price=102.0))
        assert messages == [] and raw_rows(path) == []
    assert [[event["event"] for event in message] for message in messages] == [["new", "partial_fill", "fill"]]
    assert [row["event"] for row in raw_rows(path)] == ["new", "partial_fill", "fill"]
    recorder.report(update("new", "new", 0, order_id="o-2"))  # outside a batch: at once
    assert [[event["order_id"] for event in message] for message in messages[1:]] == [["o-2"]]
    assert len(raw_rows(path)) == 4


def test_a_bad_row_fails_its_caller_and_a_failed_flush_acknowledges_nothing(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    messages: list[Any] = []
    recorder = Recorder(path, type("Raw", (), {"put": staticmethod(messages.append)})())
    with recorder.batch():
        recorder.report(update("new", "new", 0))
        with pytest.raises((ValueError, TypeError)):
            recorder.record({"event": "new", "no_such_column": 1}, ack=5)  # refused before it waits
    assert [[event["event"] for event in message] for message in messages] == [["new"]]
    failures: list[BaseException] = []
    recorder.broken = failures.append  # the recorder process exits here; its successor catches up

    def refuse(_message: Any) -> None:
        raise BrokenPipeError("the kernel is gone")

    recorder.send = refuse
    recorder.take(accepted_answer("o-2", "2024-01-02T15:00:00Z", 1704207600.5), ack=6)
    assert [type(error) for error in failures] == [BrokenPipeError] and len(messages) == 1


def test_the_link_acknowledges_a_message_as_it_arrives_and_reads_a_dead_recorders_pipe_to_its_end() -> None:
    from blockpaca_nb.processes import SPAWN
    from blockpaca_nb.recorder_link import RecorderLink

    link = RecorderLink(None, Path("unused.csv"))  # type: ignore[arg-type]  # no process: its pipes by hand
    dead_end, dead = SPAWN.Pipe(duplex=False)
    link._events = dead_end
    link._unacked = {1: {}, 2: {}, 3: {}}
    dead.send([{"kind": "a", "ack": 1}, {"kind": "b", "ack": 2}])
    dead.send([{"kind": "c", "ack": 3}])
    dead.close()  # the recorder died after sending both messages
    assert link.get() == {"kind": "a"}
    assert link.unacknowledged == 1  # "b" arrived with "a": a successor must not get it again
    successor_end, successor = SPAWN.Pipe(duplex=False)
    with link._lock:  # what _spawn does: a successor on fresh pipes
        link._events = successor_end
        link._changed.notify_all()
    successor.send([{"kind": "d"}])
    assert [link.get() for _ in range(3)] == [{"kind": "b"}, {"kind": "c"}, {"kind": "d"}]
    assert link.unacknowledged == 0
