"""Books and limits on their own (no broker): attribution of fills, hand-over, the liquidation's
closing rule, and the limits' worst-case accounting of open orders. The session-level behaviour is
judged against the simulator in test_strategies.py."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from blockpaca_nb.books import CONTROL_TAG, SESSION_BOOK, Books
from blockpaca_nb.control import to_close
from blockpaca_nb.orders import Order
from blockpaca_nb.risk import Limits, RiskDesk

QUOTES = {"AAA": {"bid": 99.95, "ask": 100.05}, "BBB": {"bid": 49.95, "ask": 50.05}}


def fill(ticker: str, side: str, qty: float, price: float, strategy: str, **extra: Any) -> dict[str, Any]:
    return {"ticker": ticker, "side": side, "fill_qty": qty, "fill_price": price, "strategy": strategy, **extra}


def buy(ticker: str, qty: float, **extra: Any) -> Order:
    return Order(ticker, "buy", extra.pop("order_type", "market"), "buy_long", quantity=qty, **extra)


def sell(ticker: str, qty: float, **extra: Any) -> Order:
    return Order(ticker, "sell", extra.pop("order_type", "market"), "sell_long", quantity=qty, **extra)


# ----------------------------------------------------------------------------- books


def test_fills_land_in_the_book_of_the_strategy_that_sent_the_order() -> None:
    books = Books()
    books.apply(fill("AAA", "buy", 10, 100.0, "alpha"), ended=True)
    books.apply(fill("AAA", "sell", 4, 101.0, "beta"), ended=True)
    books.apply(fill("AAA", "buy", 2, 99.0, "", action="cover_short"), ended=True)  # from a cell
    assert books.positions_of("alpha") == {"AAA": 10.0}
    assert books.positions_of("beta") == {"AAA": -4.0}
    assert books.positions_of(SESSION_BOOK) == {"AAA": 2.0}  # a cell's cover_short is no liquidation
    assert books.net() == {"AAA": 8.0}


def test_a_liquidations_fills_close_the_books_and_settling_closes_opposite_ones() -> None:
    books = Books()
    books.apply(fill("AAA", "buy", 10, 100.0, "alpha"), ended=True)
    books.apply(fill("AAA", "sell", 4, 102.0, "beta"), ended=True)
    books.apply(fill("AAA", "sell", 6, 103.0, CONTROL_TAG, action="liquidate"), ended=True)
    assert books.positions_of("alpha") == {"AAA": 4.0} and books.positions_of("beta") == {"AAA": -4.0}
    settled = books.settle_flat({"AAA": 101.0})
    assert sorted((name, qty) for name, _t, qty, _p in settled) == [("alpha", 4.0), ("beta", -4.0)]
    assert books.net() == {} and books.held_tickers() == set()
    pnl = books.pnl({})
    # the account's cash moved −1000 + 408 + 618 = +26: the books' P&L adds up to it
    assert pnl["alpha"] + pnl["beta"] == pytest.approx(26.0)


def test_a_liquidations_regulatory_fees_go_to_the_books_it_closes_by_their_shares() -> None:
    """A live account pays fees on every fill; a liquidation's sell that closes two books (and 5
    shares the account held outside the session) charges each book its share of the shares."""
    from blockpaca_nb.fees import REGULATORY

    books = Books(REGULATORY)
    books.apply(fill("AAA", "buy", 10, 100.0, "alpha"), ended=True)
    books.apply(fill("AAA", "buy", 30, 100.0, "beta"), ended=True)
    bought = [REGULATORY.on_fill("buy", qty, 100.0) for qty in (10, 30)]
    books.apply(fill("AAA", "sell", 45, 102.0, CONTROL_TAG, action="liquidate"), ended=True)
    sold = REGULATORY.on_fill("sell", 45, 102.0)
    alpha, beta = books.book("alpha"), books.book("beta")
    assert alpha is not None and beta is not None
    assert alpha.fees == pytest.approx(bought[0] + sold * 10 / 45)
    assert beta.fees == pytest.approx(bought[1] + sold * 30 / 45)  # the outside 5 shares' part is no book's
    pnl = books.pnl({})
    assert pnl["alpha"] == pytest.approx(20.0 - alpha.fees) and pnl["beta"] == pytest.approx(60.0 - beta.fees)


def test_a_liquidations_commission_goes_to_the_books_it_closes_like_its_fees() -> None:
    """Replay's commission on a liquidation's fill is paid by the books whose shares it closed, each by
    its shares, with the regulatory fees (it was the session book's, and the fees the strategies')."""
    from blockpaca_nb.fees import REGULATORY

    books = Books(REGULATORY)
    books.apply(fill("AAA", "buy", 10, 100.0, "alpha"), ended=True, commission=1.0)
    books.apply(fill("AAA", "buy", 30, 100.0, "beta"), ended=True, commission=1.0)
    books.apply(fill("AAA", "sell", 40, 102.0, CONTROL_TAG, action="liquidate"), ended=True, commission=8.0)
    sold = REGULATORY.on_fill("sell", 40, 102.0)
    paid = {name: book.fees for name, book in books._books.items()}
    assert paid.get(SESSION_BOOK, 0.0) == 0.0  # the liquidation paid through the strategies' books
    assert paid["alpha"] == pytest.approx(1.0 + REGULATORY.on_fill("buy", 10, 100.0) + (8.0 + sold) / 4)
    assert paid["beta"] == pytest.approx(1.0 + REGULATORY.on_fill("buy", 30, 100.0) + (8.0 + sold) * 3 / 4)


def test_a_fee_schedule_charges_cat_on_whole_shares_and_caps_taf_per_fill() -> None:
    from blockpaca_nb.fees import FeeSchedule

    schedule = FeeSchedule(sec_per_dollar_sold=0.0, taf_per_share_sold=0.001, taf_max_per_trade=5.0, cat_per_share=0.01)
    assert schedule.on_fill("buy", 0.5, 100.0) == pytest.approx(0.01)  # CAT on 1 share (rounded up)
    assert schedule.on_fill("buy", 3.0, 100.0) == pytest.approx(0.03)
    assert schedule.on_fill("sell", 10_000, 1.0) == pytest.approx(5.0 + 100.0)  # TAF capped, CAT not
    with pytest.raises(ValueError, match=r"side='short' is not valid; allowed: 'buy', 'sell'"):
        schedule.on_fill("short", 1, 1.0)


def test_after_a_swap_the_old_mains_orders_fill_into_the_new_mains_book() -> None:
    books = Books()
    books.apply(fill("AAA", "buy", 5, 100.0, "first"), ended=True)
    books.hand_over("first", "second", {"AAA": 101.0})
    assert books.positions_of("second") == {"AAA": 5.0} and books.positions_of("first") == {}
    books.apply(fill("AAA", "buy", 3, 102.0, "first"), ended=True)  # an order `first` sent before the swap
    assert books.positions_of("second") == {"AAA": 8.0}
    assert books.pnl({"AAA": 101.0})["first"] == pytest.approx(5.0)  # its P&L up to the swap stays
    books.hand_over("second", "first", {"AAA": 101.0})  # selected back: `first` answers for itself again
    books.apply(fill("AAA", "buy", 1, 101.0, "first"), ended=True)
    assert books.positions_of("first") == {"AAA": 9.0} and books.positions_of("second") == {}


def test_reading_books_while_fills_arrive_never_tears() -> None:
    books = Books()
    desk = RiskDesk(books, Limits(max_gross_exposure=1e12))
    desk.set("alpha", Limits(max_position=1e9), None)
    stop = threading.Event()
    failures: list[BaseException] = []

    def fills() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            books.apply(fill(f"T{n % 300}", "buy" if n % 2 else "sell", 1, 10.0, "alpha"), ended=True)

    writer = threading.Thread(target=fills)
    writer.start()
    try:
        for _ in range(300):
            desk.screen([buy("AAA", 1)], "alpha", QUOTES, reduce_only=False)
            desk.usage("alpha", {"AAA": 100.0})
            books.blockpaca_positions("alpha")
    except BaseException as err:
        failures.append(err)
    finally:
        stop.set()
        writer.join()
    assert not failures


# ----------------------------------------------------------------------------- closing rule


@pytest.mark.parametrize(
    ("wanted", "account", "keep", "expected"),
    [
        ({"AAA": 10.0}, {"AAA": 10.0}, {}, {"AAA": 10.0}),  # the session's own long: sold
        ({"AAA": -4.0}, {"AAA": 3.0}, {"AAA": 7.0}, {"AAA": -4.0}),  # a short against an outside long: bought back
        ({"AAA": 10.0}, {"AAA": 0.0}, {}, {}),  # sold by hand meanwhile: nothing opened
        ({"AAA": 10.0}, {"AAA": 6.0}, {"AAA": -4.0}, {"AAA": 6.0}),  # never past zero in one order…
        ({"AAA": 4.0}, {"AAA": 0.0}, {"AAA": -4.0}, {"AAA": 4.0}),  # …the rest in the next round
        ({"AAA": 10.0}, {"AAA": -10.0}, {}, {}),  # the account went the other way: nothing
        ({"AAA": 3e-5}, {"AAA": 3e-5}, {}, {"AAA": 3e-5}),  # a tiny fraction is closed too (a product of
        ({"AAA": 1e-10}, {"AAA": 1e-10}, {}, {}),  # two quantities once hid it); below a billionth, nothing
    ],
)
def test_a_liquidation_brings_the_account_to_what_it_must_keep_never_further(
    wanted: dict[str, float], account: dict[str, float], keep: dict[str, float], expected: dict[str, float]
) -> None:
    assert to_close(wanted, account, {}, keep) == expected


def test_a_closing_order_refused_as_too_small_leaves_its_sliver_open_and_others_pause_the_next_round() -> None:
    """The position's price (a mid, or the last trade) may value a sliver at $1.0001 while the sell
    meets the bid at $0.9998: the broker's refusal ("minimal amount of order") marks the ticker, the
    next rounds leave it open (it was refused every round and the liquidation never ended) and it
    is no reason to pause; a round whose every order was refused for another reason pauses the next."""
    from blockpaca_nb.control import Liquidation

    answers: dict[str, tuple[str, str]] = {}
    liquidation = Liquidation(
        scope="session", ledger=None, rest=lambda call: None, send=lambda orders: [], say=print,  # type: ignore[arg-type]
        status_of=lambda cid: answers[cid][0], reason_of=lambda cid: answers[cid][1], halted=lambda: False,
        report=print, rate_wait=lambda: 0.0,
    )  # fmt: skip
    liquidation.prices = {"AAA": 100.01, "BBB": 50.0}
    liquidation.closing_orders = {"a": sell("AAA", 0.010_001), "b": sell("BBB", 10)}
    answers.update(a=("rejected", "cost basis must be >= minimal amount of order 1"), b=("filled", ""))
    assert liquidation._worth_an_order({"AAA": 0.010_001, "BBB": 10.0}) == {"AAA": 0.010_001, "BBB": 10.0}
    liquidation._note_refusals(["a", "b"])
    assert liquidation.below_minimum == {"AAA"} and liquidation.refused == []
    assert liquidation._worth_an_order({"AAA": 0.010_001}) == {} and liquidation.too_small == {"AAA": 0.010_001}
    liquidation.closing_orders["c"] = sell("BBB", 10)
    answers["c"] = ("rejected", "potential wash trade detected. use complex orders")
    liquidation._note_refusals(["c"])
    assert liquidation.refused == ["c"]  # every order of the round refused: the next one waits


# ----------------------------------------------------------------------------- limits


def desk_with(limits: dict[str, Any], *positions: tuple[str, float], budget: float | None = None) -> RiskDesk:
    books = Books()
    for ticker, qty in positions:
        books.apply(fill(ticker, "buy" if qty > 0 else "sell", abs(qty), 100.0, "alpha"), ended=True)
    desk = RiskDesk(books)
    desk.set("alpha", Limits.from_mapping(limits), budget)
    return desk


def passed(desk: RiskDesk, *orders: Order, reduce_only: bool = False) -> list[Order]:
    return desk.screen(list(orders), "alpha", QUOTES, reduce_only=reduce_only).passed


def test_open_orders_count_on_their_own_side_only() -> None:
    desk = desk_with({"max_position": 100}, ("AAA", 100))
    desk.books.sent("c1", "alpha", "AAA", -100.0)  # a resting take-profit for the whole position
    assert passed(desk, buy("AAA", 100)) == []  # would be 200 if the exit never fills
    desk = desk_with({"max_position": 1000}, ("AAA", 100))
    desk.books.sent("c2", "alpha", "AAA", 100.0)  # a buy still open
    assert passed(desk, sell("AAA", 200), reduce_only=True) == []  # flips the account if the buy never fills
    assert len(passed(desk, sell("AAA", 100), reduce_only=True)) == 1


def test_a_marketable_limit_is_valued_at_the_touch_not_its_own_price() -> None:
    desk = desk_with({"max_order_notional": 5_000})
    far = Order("AAA", "sell", "limit", "short_sell", quantity=1000, limit_price=1.0)
    refused = desk.screen([far], "alpha", QUOTES, reduce_only=False).refused
    assert refused and "max_order_notional: 99,950.00 > 5,000.00" in refused[0][1]


def test_an_exit_is_never_refused_by_a_size_limit() -> None:
    desk = desk_with({"max_order_notional": 5_000, "max_position": 10, "max_gross_exposure": 1}, ("AAA", 200))
    assert len(passed(desk, sell("AAA", 200))) == 1  # $19,990 of exit, over every size limit


def test_a_crossed_loss_limit_holds_whatever_the_state() -> None:
    desk = desk_with({"max_daily_loss": 1, "on_breach": "halt"}, ("AAA", 10))
    assert desk.loss_breaches({"AAA": 99.0})  # 10 × −1
    assert passed(desk, buy("AAA", 1)) == []  # the strategy's state says running: the gate still refuses
    assert len(passed(desk, sell("AAA", 10))) == 1
    desk.forgive("alpha")
    assert desk.loss_breaches({"AAA": 99.0})  # still past it: breached again at once


def test_a_daily_loss_limit_set_later_in_the_day_counts_from_the_days_start(monkeypatch: pytest.MonkeyPatch) -> None:
    """With no daily-loss limit to watch, a fill works out no P&L; but a new day's starting point is
    still taken at its first look, so a limit set later that day counts the whole day's loss."""
    from blockpaca_nb import books as books_module
    from blockpaca_nb import risk

    day = ["2026-12-03"]
    monkeypatch.setattr(books_module, "trading_day", lambda: day[0])
    monkeypatch.setattr(risk, "trading_day", lambda: day[0])
    books = Books()
    books.apply(fill("AAA", "buy", 10, 100.0, "alpha"), ended=True)
    desk = RiskDesk(books)
    assert desk.loss_breaches({"AAA": 99.0}) == []  # the first day ends 10 down
    day[0] = "2026-12-04"
    assert desk.loss_breaches({"AAA": 99.0}) == []  # the next day starts here: −10 overall
    assert desk.loss_breaches({"AAA": 98.5}) == []  # −5 today, nothing to watch yet
    desk.set("alpha", Limits(max_daily_loss=8, on_breach="halt"), None)
    assert desk.loss_breaches({"AAA": 98.5}) == []  # −5 today: within 8
    assert desk.loss_breaches({"AAA": 98.1})  # −9 since the day's start (not −4 since the limit was set)


def test_session_limits_refuse_every_strategy_once_the_session_is_halted() -> None:
    books = Books()
    books.apply(fill("AAA", "buy", 10, 100.0, "alpha"), ended=True)
    desk = RiskDesk(books, Limits(max_daily_loss=1, on_breach="halt"))
    desk.loss_breaches({"AAA": 99.0})
    for strategy in ("alpha", "newcomer"):
        refused = desk.screen([buy("BBB", 1)], strategy, QUOTES, reduce_only=False).refused
        assert refused and "session is halted" in refused[0][1]


def test_a_former_main_strategy_run_alongside_again_has_its_own_fills_and_state() -> None:
    from blockpaca_nb.lineup import Lineup, Slot

    books = Books()
    books.apply(fill("AAA", "buy", 5, 100.0, "first"), ended=True)
    books.hand_over("first", "second", {})
    books.unforward("first")  # `first` activated alongside
    books.apply(fill("AAA", "buy", 2, 100.0, "first"), ended=True)
    assert books.positions_of("first") == {"AAA": 2.0} and books.positions_of("second") == {"AAA": 5.0}
    lineup = Lineup()
    lineup.register(Slot("first", print), alongside=False)
    lineup.register(Slot("second", print), alongside=False)
    assert lineup.slots["first"].context_state is lineup.slots["second"].context_state  # a swap carries it on
    lineup.activate("first")
    assert lineup.slots["first"].context_state is not lineup.slots["second"].context_state


def test_an_open_order_in_a_symbol_not_held_is_valued_by_its_quote() -> None:
    desk = desk_with({"max_gross_exposure": 1e6})
    desk.books.sent("c1", "alpha", "BBB", 10.0)  # a resting buy, nothing held in BBB
    assert len(passed(desk, buy("AAA", 1))) == 1
