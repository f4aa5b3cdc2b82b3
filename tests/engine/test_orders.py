"""Orders: validation messages, blockpaca's side/action table, parse_orders, Alpaca bodies, client ids."""

from __future__ import annotations

import math
import pickle
import re
from collections import OrderedDict
from decimal import Decimal

import numpy as np
import pytest

from blockpaca_nb.errors import (
    AuthenticationError,
    BlockpacaError,
    BrokerError,
    ConfigurationError,
    OrderValidationError,
)
from blockpaca_nb.orders import (
    ACTIONS_BY_SIDE,
    ORDER_KEYS,
    ORDER_TYPES,
    SIDES,
    TIME_IN_FORCE,
    Order,
    action_from_client_order_id,
    client_order_id_parts,
    liquidation_orders,
    new_client_order_id,
    parse_block,
    parse_orders,
    strategy_from_client_order_id,
    validate_order,
)

TICKERS = ("AAPL", "TSLA", "NVDA")
_DROP = object()  # marks a key to leave out of the order


def market(**changes: object) -> dict[str, object]:
    order: dict[str, object] = {"ticker": "AAPL", "quantity": 10, "side": "buy", "order_type": "market"}
    order.update(changes)
    return {key: value for key, value in order.items() if value is not _DROP}



def rejection(raw: object, tickers: tuple[str, ...] | None = None, index: int | None = None) -> str:
    """Validate ``raw``, expect an OrderValidationError, return its message (and check its type)."""
    with pytest.raises(OrderValidationError) as caught:
        validate_order(raw, tickers, index)
    assert isinstance(caught.value, ValueError)
    assert isinstance(caught.value, BlockpacaError)
    return str(caught.value)


# -- the side/action table -------------------------------------------------------------

TABLE = [
    ("buy", None, "buy_long"),
    ("buy", "buy_long", "buy_long"),
    ("buy", "buy_to_cover", "buy_to_cover"),
    ("buy", "cover_short", "cover_short"),
    ("sell", None, "sell_long"),
    ("sell", "sell_long", "sell_long"),
    ("sell", "short_sell", "short_sell"),
    ("sell", "liquidate", "liquidate"),
]


@pytest.mark.parametrize(("side", "action", "logged"), TABLE)
def test_side_action_table_accepts_blockpaca_combinations(side: str, action: str | None, logged: str) -> None:
    raw = market(side=side) if action is None else market(side=side, action=action)
    order = validate_order(raw)
    assert (order.side, order.action) == (side, logged)


WRONG_SIDE = [
    ("buy", "short_sell"),
    ("buy", "sell_long"),
    ("buy", "liquidate"),
    ("sell", "buy_to_cover"),
    ("sell", "cover_short"),
    ("sell", "buy_long"),
    ("buy", "hold"),
    ("sell", "none"),
    ("buy", 3),
]


@pytest.mark.parametrize(("side", "action"), WRONG_SIDE)
def test_action_that_does_not_fit_the_side_is_rejected(side: str, action: object) -> None:
    with pytest.raises(OrderValidationError) as caught:
        validate_order(market(side=side, action=action), index=4)
    error = caught.value
    assert error.field == "action"
    assert error.value == action
    message = str(error)
    assert message.startswith("order #4 field 'action': ")
    for allowed in ACTIONS_BY_SIDE[side]:
        assert repr(allowed) in message
    other_side = "sell" if side == "buy" else "buy"
    for not_allowed in ACTIONS_BY_SIDE[other_side]:
        assert repr(not_allowed) not in error.allowed


def test_empty_action_means_none_and_actions_are_case_insensitive() -> None:
    assert validate_order(market(side="sell", action="")).action == "sell_long"
    assert validate_order(market(side="SELL", action="Short_Sell")).action == "short_sell"


def test_tables_are_blockpacas() -> None:
    assert SIDES == ("buy", "sell")
    assert ORDER_TYPES == ("market", "limit", "stop", "stop_limit")
    assert TIME_IN_FORCE == ("day", "gtc", "ioc", "fok", "opg", "cls")
    assert dict(ACTIONS_BY_SIDE) == {
        "buy": ("buy_long", "buy_to_cover", "cover_short"),
        "sell": ("sell_long", "short_sell", "liquidate"),
    }


# -- validation: one case per rule, the field named in the message -------------------------

INVALID = [
    # (order, field, fragment of the message)
    (market(ticker=_DROP), "ticker", "missing"),
    (market(ticker=""), "ticker", "got ''"),
    (market(ticker="   "), "ticker", "got '   '"),
    (market(ticker=7), "ticker", "got 7"),
    (market(quantity=_DROP), "quantity", "missing"),
    (market(quantity=0), "quantity", "got 0; allowed: a finite number > 0"),
    (market(quantity=-1.5), "quantity", "got -1.5"),
    (market(quantity=math.nan), "quantity", "got nan"),
    (market(quantity=math.inf), "quantity", "got inf"),
    (market(quantity=-math.inf), "quantity", "got -inf"),
    (market(quantity=True), "quantity", "got bool True, not a number"),
    (market(quantity="10"), "quantity", "got str '10', not a number"),
    (market(quantity=[1]), "quantity", "not a number"),
    (market(quantity=10**400), "quantity", "not a number"),
    (market(side=_DROP), "side", "missing; allowed: 'buy', 'sell'"),
    (market(side="hold"), "side", "got 'hold'; allowed: 'buy', 'sell'"),
    (market(side=1), "side", "got 1"),
    (market(order_type=_DROP), "order_type", "missing; allowed: 'market', 'limit', 'stop', 'stop_limit'"),
    (market(order_type="moc"), "order_type", "got 'moc'"),
    (market(order_type="limit"), "limit_price", "missing; a limit order needs it"),
    (market(order_type="limit", limit_price=0), "limit_price", "finite number > 0"),
    (market(order_type="limit", limit_price=math.nan), "limit_price", "got nan"),
    (market(order_type="limit", limit_price="150"), "limit_price", "not a number"),
    (market(limit_price=150.0), "limit_price", "a market order takes no limit_price"),
    (market(order_type="stop"), "stop_price", "missing; a stop order needs it"),
    (market(order_type="stop", stop_price=-1), "stop_price", "got -1"),
    (market(order_type="stop", stop_price=10, limit_price=9), "limit_price", "a stop order takes no"),
    (market(order_type="stop_limit", stop_price=10), "limit_price", "a stop_limit order needs it"),
    (market(order_type="stop_limit", limit_price=10), "stop_price", "a stop_limit order needs it"),
    (market(order_type="limit", limit_price=10, stop_price=9), "stop_price", "a limit order takes no"),
    (market(stop_price=9), "stop_price", "a market order takes no stop_price"),
    (market(quantity=_DROP, notional=0), "notional", "got 0"),
    (market(quantity=_DROP, notional=0.5), "notional", "at least 1 (dollars: Alpaca takes no order worth less)"),
    (market(notional=500), "notional", "exactly one of 'quantity' or 'notional'"),
    (market(quantity=_DROP, notional=500, order_type="limit", limit_price=1), "notional", "only with"),
    (market(time_in_force="week"), "time_in_force", "'day', 'gtc', 'ioc', 'fok', 'opg', 'cls'"),
    (market(colour="red"), "colour", "unknown key 'colour'; allowed: 'ticker', 'quantity'"),
    (market(client_order_id="mine-1"), "client_order_id", "assigned by the engine"),
]


@pytest.mark.parametrize(("raw", "field", "fragment"), INVALID)
def test_invalid_order_names_the_field_and_allowed_values(raw: object, field: str, fragment: str) -> None:
    with pytest.raises(OrderValidationError) as caught:
        validate_order(raw, index=2)
    error = caught.value
    assert error.field == field
    assert error.index == 2
    assert str(error).startswith(f"order #2 field {field!r}: ")
    assert fragment in str(error)
    assert "; allowed: " in str(error)


def test_message_reads_like_the_documented_example() -> None:
    message = rejection(market(side="hold"), index=2)
    assert message == "order #2 field 'side': got 'hold'; allowed: 'buy', 'sell'"
    assert rejection(market(side="hold")) == "order field 'side': got 'hold'; allowed: 'buy', 'sell'"


def test_not_a_mapping_is_rejected_with_its_type() -> None:
    for raw in ("AAPL", 5, None, ["ticker", "AAPL"]):
        with pytest.raises(OrderValidationError) as caught:
            validate_order(raw, index=1)
        assert caught.value.field == "order"
        assert str(caught.value).startswith(f"order #1: got {type(raw).__name__} ")
        assert "'ticker'" in str(caught.value)


def test_unknown_key_lists_every_allowed_key() -> None:
    message = rejection(market(Ticker="AAPL"))
    assert message.startswith("order field 'Ticker': unknown key 'Ticker'; allowed: ")
    assert message.endswith(", ".join(repr(key) for key in ORDER_KEYS))


def test_unknown_ticker_lists_the_sessions_tickers() -> None:
    message = rejection(market(ticker="MSFT"), TICKERS)
    assert "field 'ticker': got 'MSFT', which is not one of the session's tickers" in message
    assert message.endswith("allowed: 'AAPL', 'NVDA', 'TSLA'")


def test_long_ticker_list_is_truncated_in_the_message() -> None:
    many = tuple(f"T{i:03d}" for i in range(40))
    message = rejection(market(ticker="AAPL"), many)
    assert "'T009'" in message
    assert "'T010'" not in message
    assert message.endswith("… and 30 more")


def test_valid_orders_are_normalised() -> None:
    order = validate_order(
        {"ticker": "TSLA", "quantity": 5, "side": "Sell", "order_type": "LIMIT", "limit_price": 250,
         "time_in_force": "GTC", "action": "short_sell"},
        TICKERS,
    )
    assert order == Order("TSLA", "sell", "limit", "short_sell", quantity=5.0, limit_price=250.0,
                          time_in_force="gtc")
    assert isinstance(order.limit_price, float)


def test_numbers_from_numpy_and_decimal_are_accepted_as_floats() -> None:
    order = validate_order(market(quantity=np.int64(3), order_type="limit", limit_price=Decimal("1.25")))
    assert order.quantity == 3.0 and type(order.quantity) is float
    assert order.limit_price == 1.25 and type(order.limit_price) is float


def test_none_means_absent_for_optional_fields() -> None:
    order = validate_order(market(limit_price=None, stop_price=None, action=None, time_in_force=None,
                                  notional=None))
    assert order == Order("AAPL", "buy", "market", "buy_long", quantity=10.0)


def test_notional_market_order_and_stop_orders() -> None:
    assert validate_order(market(quantity=_DROP, notional=250)).notional == 250.0
    stop = validate_order(market(side="sell", order_type="stop", stop_price=99.5))
    assert (stop.stop_price, stop.limit_price) == (99.5, None)
    both = validate_order(market(order_type="stop_limit", stop_price=101, limit_price=101.5))
    assert (both.stop_price, both.limit_price) == (101.0, 101.5)


def test_order_is_immutable() -> None:
    order = validate_order(market())
    with pytest.raises(AttributeError):
        order.quantity = 5  # type: ignore[misc]


# -- parse_orders ------------------------------------------------------------------------


def test_parse_orders_accepts_none_one_dict_and_blocks() -> None:
    assert parse_orders(None) == ([], [])
    assert parse_orders([]) == ([], [])
    one, errors = parse_orders(market())
    assert errors == [] and [order.ticker for order in one] == ["AAPL"]
    block, errors = parse_orders((market(), market(ticker="TSLA")), TICKERS)
    assert errors == [] and [order.ticker for order in block] == ["AAPL", "TSLA"]
    subclass, errors = parse_orders(OrderedDict(market()))
    assert errors == [] and len(subclass) == 1


def test_parse_orders_keeps_valid_orders_next_to_invalid_ones() -> None:
    block = [market(), market(side="hold"), "junk", market(ticker="TSLA", side="sell"), market(ticker="MSFT")]
    orders, errors = parse_orders(block, TICKERS)
    assert [(order.ticker, order.side) for order in orders] == [("AAPL", "buy"), ("TSLA", "sell")]
    assert [(error.index, error.field) for error in errors] == [(1, "side"), (2, "order"), (4, "ticker")]
    assert str(errors[0]).startswith("order #1 field 'side'")


def test_single_invalid_dict_has_no_index() -> None:
    orders, errors = parse_orders(market(quantity=-1))
    assert orders == []
    assert len(errors) == 1 and errors[0].index is None
    assert str(errors[0]).startswith("order field 'quantity'")


@pytest.mark.parametrize("returned", ["AAPL", 42, 1.5, {market()["ticker"]}, iter([market()]), b"x"])
def test_parse_orders_rejects_other_shapes_with_one_error(returned: object) -> None:
    orders, errors = parse_orders(returned)
    assert orders == []
    assert len(errors) == 1
    error = errors[0]
    assert error.field == "orders"
    message = str(error)
    assert message.startswith(f"orders: got {type(returned).__name__} ")
    assert "allowed: None, one order dict, or a list/tuple of order dicts" in message


def test_a_block_of_100_orders_validates_in_one_call() -> None:
    """A strategy's block, parsed whole (its speed is bench_quotebook.py's job, not a timed test)."""
    block = [market(ticker=TICKERS[i % 3], side=SIDES[i % 2]) for i in range(100)]
    orders, errors = parse_orders(block, TICKERS)
    assert errors == []
    assert [(o.ticker, o.side) for o in orders] == [(b["ticker"], b["side"]) for b in block]


# -- Alpaca bodies ---------------------------------------------------------------------------


def test_to_alpaca_market_quantity() -> None:
    body = validate_order(market(quantity=2)).to_alpaca("buy_long-3-0123abcd")
    assert body == {
        "symbol": "AAPL",
        "qty": 2.0,
        "side": "buy",
        "type": "market",
        "time_in_force": "day",
        "client_order_id": "buy_long-3-0123abcd",
    }
    assert isinstance(body["qty"], float)


def test_to_alpaca_notional_limit_and_stop_limit() -> None:
    notional = validate_order(market(quantity=_DROP, notional=99.5)).to_alpaca("x")
    assert notional["notional"] == 99.5 and "qty" not in notional
    limit = validate_order(market(side="sell", action="short_sell", order_type="limit", limit_price=10.25,
                                  time_in_force="gtc")).to_alpaca("short_sell-1-deadbeef")
    assert limit == {
        "symbol": "AAPL",
        "qty": 10.0,
        "side": "sell",
        "type": "limit",
        "time_in_force": "gtc",
        "limit_price": 10.25,
        "client_order_id": "short_sell-1-deadbeef",
    }
    raw = market(order_type="stop_limit", stop_price=11, limit_price=11.5)
    stop_limit = validate_order(raw).to_alpaca("y")
    assert stop_limit["type"] == "stop_limit"
    assert (stop_limit["stop_price"], stop_limit["limit_price"]) == (11.0, 11.5)
    assert "action" not in stop_limit


def test_to_alpaca_bracket_oto_and_oco() -> None:
    bracket = validate_order(market(quantity=10, take_profit=230, stop_loss={"stop_price": 190, "limit_price": 189}))
    assert bracket.to_alpaca("x") == {
        "symbol": "AAPL",
        "qty": 10.0,
        "side": "buy",
        "type": "market",
        "time_in_force": "day",
        "order_class": "bracket",
        "take_profit": {"limit_price": 230.0},
        "stop_loss": {"stop_price": 190.0, "limit_price": 189.0},
        "client_order_id": "x",
    }
    oto = validate_order(market(order_type="limit", limit_price=200, stop_loss=190, time_in_force="gtc"))
    assert oto.order_class == "oto" and "take_profit" not in oto.to_alpaca("y")
    oco = validate_order(market(side="sell", order_type="limit", order_class="OCO", take_profit={"limit_price": 230},
                                stop_loss=190))  # fmt: skip
    body = oco.to_alpaca("z")
    assert (body["order_class"], body["type"], body["limit_price"]) == ("oco", "limit", 230.0)


@pytest.mark.parametrize(
    ("extra", "field", "fragment"),
    [
        ({"take_profit": "x"}, "take_profit", "{'limit_price': price}"),
        ({"take_profit": 180, "stop_loss": 190}, "take_profit", "above the stop loss 190"),
        ({"order_class": "bracket", "take_profit": 230}, "order_class", "needs both take_profit and stop_loss"),
        ({"order_class": "oto", "take_profit": 230, "stop_loss": 190}, "order_class", "exactly one of"),
        ({"order_class": "simple", "stop_loss": 190}, "order_class", "neither take_profit nor stop_loss"),
        ({"order_class": "weird"}, "order_class", "'simple', 'bracket', 'oco', 'oto'"),
        ({"take_profit": 230, "time_in_force": "ioc"}, "time_in_force", "'day', 'gtc'"),
        ({"take_profit": 230, "quantity": 1.5}, "quantity", "whole shares"),
        ({"stop_loss": {"stop": 190}}, "stop_loss", "{'stop_price': price, 'limit_price': price}"),
        ({"order_class": "oco", "take_profit": 230, "stop_loss": 190}, "order_type", "an oco order is a limit order"),
        (
            {"order_class": "oco", "order_type": "limit", "limit_price": 231, "take_profit": 230, "stop_loss": 190},
            "limit_price",
            "its take profit",
        ),
    ],
)
def test_exits_name_the_field_and_allowed_values(extra: dict[str, object], field: str, fragment: str) -> None:
    with pytest.raises(OrderValidationError) as info:
        validate_order(market(**extra))
    assert info.value.field == field and fragment in str(info.value), str(info.value)


# -- client order ids ------------------------------------------------------------------------


def test_client_order_id_format_is_blockpacas() -> None:
    cid = new_client_order_id("buy_long", 7)
    assert re.fullmatch(r"buy_long-7-[0-9a-f]{8}", cid)
    assert len({new_client_order_id("liquidate", 0) for _ in range(1000)}) == 1000


@pytest.mark.parametrize("action", [action for actions in ACTIONS_BY_SIDE.values() for action in actions])
def test_action_and_worker_round_trip_through_the_client_order_id(action: str) -> None:
    cid = new_client_order_id(action, 12)
    assert action_from_client_order_id(cid) == action
    assert client_order_id_parts(cid) == (action, 12, "")


def test_a_strategys_orders_carry_its_name_last_where_blockpacas_readers_do_not_look() -> None:
    cid = new_client_order_id("short_sell", 3, "mean_reversion_2")
    assert re.fullmatch(r"short_sell-3-[0-9a-f]{8}-mean_reversion_2", cid)
    assert cid.split("-")[:2] == ["short_sell", "3"]  # how a blockpaca log reader takes action and worker
    assert action_from_client_order_id(cid) == "short_sell"
    assert client_order_id_parts(cid) == ("short_sell", 3, "mean_reversion_2")
    assert strategy_from_client_order_id(cid) == "mean_reversion_2"
    assert strategy_from_client_order_id(new_client_order_id("liquidate", 0)) == ""  # the session's own
    assert len(cid) <= 128  # Alpaca's limit, with the longest name a strategy may have
    assert len(new_client_order_id("buy_to_cover", 99, "x" * 48)) <= 128


@pytest.mark.parametrize(
    "cid", ["buy_long-7-2304b6b1-", "buy_long-7-2304b6b1-a-b", "buy_long-7-2304b6b1-ü", "x-1-2304b6b1-a"]
)
def test_ids_that_are_not_ours_name_no_strategy(cid: str) -> None:
    assert strategy_from_client_order_id(cid) == ""
    assert action_from_client_order_id(cid) is None


def test_blockpaca_logged_id_is_understood() -> None:
    assert action_from_client_order_id("buy_long-7-2304b6b1") == "buy_long"
    assert client_order_id_parts("buy_long-7-2304b6b1") == ("buy_long", 7, "")


@pytest.mark.parametrize(
    "cid",
    [
        "",
        "my-order",
        "a9b4c1d2-1c7e-4cf6-9a43-0c5a8f3f1d2e",
        "hold-1-abcdef12",
        "buy_long-x-abcdef12",
        "buy_long-1-abcdef1",
        "buy_long-1-ABCDEF12",
        "buy_long-1-abcdefg2",
        "buy_long--1-abcdef12",
        "buy_long-١-abcdef12",
        None,
        42,
    ],
)
def test_foreign_client_order_ids_are_not_ours(cid: object) -> None:
    assert action_from_client_order_id(cid) is None
    assert client_order_id_parts(cid) is None


# -- liquidation ----------------------------------------------------------------------------


def test_liquidation_orders_flatten_longs_and_shorts() -> None:
    positions = [
        {"ticker": "AAPL", "quantity": 10, "bought_at": 145.0, "cost_basis": 1450.0},
        {"ticker": "MSFT", "quantity": -5, "bought_at": 300.0, "cost_basis": -1500.0},
        {"ticker": "GOOG", "quantity": 0, "bought_at": 2750.0, "cost_basis": 0.0},
        {"ticker": "NVDA", "quantity": "0.5", "bought_at": 100.0, "cost_basis": 50.0},
    ]
    orders = liquidation_orders(positions)
    assert orders == [
        Order("AAPL", "sell", "market", "liquidate", quantity=10.0),
        Order("MSFT", "buy", "market", "cover_short", quantity=5.0),
        Order("NVDA", "sell", "market", "liquidate", quantity=0.5),
    ]
    assert orders[1].to_alpaca("c")["qty"] == 5.0
    assert liquidation_orders([]) == []


# -- the exception hierarchy ------------------------------------------------------------------


def test_exception_hierarchy() -> None:
    assert issubclass(ConfigurationError, BlockpacaError) and issubclass(ConfigurationError, ValueError)
    assert issubclass(OrderValidationError, BlockpacaError) and issubclass(OrderValidationError, ValueError)
    assert issubclass(AuthenticationError, BrokerError) and issubclass(BrokerError, BlockpacaError)
    assert not issubclass(BrokerError, ValueError)


def test_exceptions_survive_pickling_between_processes() -> None:
    error = OrderValidationError("side", "hold", "'buy', 'sell'", 3)
    copy = pickle.loads(pickle.dumps(error))
    assert (type(copy), str(copy), copy.field, copy.value, copy.index) == (
        OrderValidationError, str(error), "side", "hold", 3)
    broker = AuthenticationError("forbidden.", status=403, code=40310000)
    copy_broker = pickle.loads(pickle.dumps(broker))
    assert type(copy_broker) is AuthenticationError
    assert (copy_broker.status, copy_broker.code, copy_broker.message) == (403, 40310000, "forbidden.")
    assert str(copy_broker) == str(broker) == "HTTP 403 (code 40310000): forbidden."


def test_broker_error_text_without_status() -> None:
    assert str(BrokerError("connection reset")) == "connection reset"
    assert str(BrokerError("rate limited", status=429)) == "HTTP 429: rate limited"


def test_long_values_are_shortened_in_messages() -> None:
    message = rejection(market(ticker="X" * 500), TICKERS)
    assert len(message) < 250
    assert "…" in message


def test_a_refused_order_names_its_ticker_when_it_looks_like_one_and_nothing_else_it_wrote() -> None:
    """A typo (APPL) is worth seeing in the row; a secret pasted into the field (longer than any
    symbol) or a value a field does not allow never reaches it."""
    _, problems = parse_block([
        {"ticker": "APPL", "quantity": 1, "side": "buy", "order_type": "market"},
        {"ticker": "PKABCDEFGHIJ12345678", "quantity": 1, "side": "buy", "order_type": "market"},
        {"ticker": "AAPL", "quantity": -1, "side": "hodl", "order_type": "market"},
    ], ["AAPL"])  # fmt: skip
    assert [p.given for p in problems] == [
        {"ticker": "APPL", "side": "buy", "order_type": "market"},
        {"side": "buy", "order_type": "market"},
        {"ticker": "AAPL", "order_type": "market"},
    ]


def test_a_fraction_of_a_share_is_a_day_order_never_sold_short() -> None:
    """Alpaca's rules, checked before anything is sent (the broker refused them after the round trip)."""
    assert validate_order(market(quantity=0.5)).quantity == 0.5
    with pytest.raises(OrderValidationError, match=r"'time_in_force': got 'gtc'; allowed: 'day' for a fractional"):
        validate_order(market(quantity=0.5, time_in_force="gtc"))
    with pytest.raises(OrderValidationError, match=r"'quantity': got 0.5; allowed: whole shares for a short sale"):
        validate_order(market(quantity=0.5, side="sell", action="short_sell"))
    assert validate_order(market(quantity=0.5, side="sell")).action == "sell_long"  # selling a fraction held
    with pytest.raises(OrderValidationError, match=r"'time_in_force': got 'gtc'; allowed: 'day' for a fractional or"):
        validate_order(market(quantity=_DROP, notional=100, time_in_force="gtc"))  # a notional order too
