"""7. Secrets. A session trades on "paper" (the simulator's endpoints and keys, passed explicitly) in
a separate process whose kernel logs at DEBUG and whose children log at DEBUG
(BLOCKPACA_LOG_LEVEL); it prints the repr of every public object, its errors, the dashboard's
synced widget state, then runs sessions with a wrong, recognisable secret (auth failures: the REST
check, and the trade_updates stream refusing it). Neither secret — nor any 12-character piece of
it — appears in stdout, stderr (kernel and children), the exceptions, or the trade log.
"""

from __future__ import annotations

import io
import json
import logging
import os
import pickle
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from reliability_helpers import figure
from waiting import wait_for

from blockpaca_nb import AuthenticationError, Simulator

FAKE = "FAKE-SECRET-do-not-leak-7f3a9c2e51"

OWNER = textwrap.dedent(
    """
    import json, logging, os, sys, time
    logging.basicConfig(level=logging.DEBUG, format="%(name)s %(levelname)s %(message)s")
    from blockpaca_nb import Session

    urls, key, secret = json.loads(os.environ["SIM_URLS"]), os.environ["SIM_KEY"], os.environ["SIM_SECRET"]
    fake, path = os.environ["FAKE_SECRET"], sys.argv[1]

    def show(label, value):
        print(f"== {label}: {value!r}", flush=True)

    s = Session(tickers=["AAPL", "MSFT"], mode="paper", urls=urls, api_key=key, secret_key=secret,
                warm_up_period=0, frequency=0.2, trade_log_path=path, trade_log_name="secrets", num_workers=2)
    s.strategy(lambda ctx: None)
    s.start()
    while s.status not in ("running", "failed"):
        time.sleep(0.05)
    cids = s.submit([{"ticker": "AAPL", "quantity": 1, "side": "buy", "order_type": "market"},
                     {"ticker": "AAPL", "quantity": -1, "side": "buy", "order_type": "market"},
                     {"ticker": "MSFT", "quantity": 10**9, "side": "buy", "order_type": "market"}])
    while any((s.orders.get(c) or {}).get("status") not in ("filled", "rejected") for c in cids):
        time.sleep(0.05)
    for label, value in [("session", s), ("context", s.context), ("portfolio", s.portfolio), ("pool", s._pool),
                         ("limiter", s._limiter), ("target", s._target), ("connection", s._connection),
                         ("credentials", s._connection.credentials), ("calls", s._calls), ("recorder", s._recorder),
                         ("book", s._book), ("errors", list(s.errors)), ("orders", s.orders),
                         ("trade_updates", list(s.trade_updates)), ("account", s.account_info),
                         ("health", s.worker_health()), ("positions", s.positions), ("quotes", s.quotes),
                         ("vars", vars(s))]:
        show(label, value)
        print(f"== str {label}: {value}", flush=True)
    try:
        from blockpaca_nb.ui import Dashboard
        from ipywidgets.widgets.widget import _instances

        board = Dashboard(s, autostart=False)
        board.refresh()
        print("== widgets: " + json.dumps([w.get_state() for w in list(_instances.values())], default=str))
    except ImportError as err:
        print(f"== no dashboard: {err}")
    s.stop(wait=True)
    bad = Session(tickers=["AAPL"], mode="paper", urls=urls, api_key=key, secret_key=fake, warm_up_period=0,
                  trade_log_path=path, trade_log_name="bad")
    bad.start()
    bad.wait(30)
    show("bad errors", list(bad.errors))
    print("== done", flush=True)
    """
)


def test_the_secret_appears_nowhere(tmp_path: Path) -> None:
    with Simulator(symbols=["AAPL", "MSFT"], seed=17, quotes_per_second=5) as sim:
        secret = sim.secret_key
        script = tmp_path / "owner.py"
        script.write_text(OWNER)
        env = {**os.environ, "SIM_URLS": json.dumps(sim.urls), "SIM_KEY": sim.api_key, "SIM_SECRET": secret,
               "FAKE_SECRET": FAKE, "BLOCKPACA_LOG_LEVEL": "DEBUG"}
        done = subprocess.run([sys.executable, str(script), str(tmp_path)], env=env, capture_output=True,
                              text=True, timeout=120)
        stream_refused = stream_auth_failure(sim, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "== done" in done.stdout and "== widgets" in done.stdout, done.stdout[-2000:]
    assert "refused the API keys" in done.stdout  # the auth failure was reported ...
    logs = {"stdout": done.stdout, "stderr": done.stderr, "stream refusal": stream_refused}
    logs |= {p.name: p.read_text() for p in tmp_path.glob("*.csv")}
    kernel_debug, children_debug = done.stderr.count(" DEBUG "), done.stderr.count("DEBUG:")
    figure("secrets", outputs_checked=len(logs), bytes_checked=sum(map(len, logs.values())),
           kernel_debug_lines=kernel_debug, children_debug_lines=children_debug, leaks=0)
    assert kernel_debug >= 5 and children_debug >= 3, "the kernel and the children must log at DEBUG"
    for where, text in logs.items():
        for needle in (secret, FAKE):
            assert not _pieces(needle, text), f"a piece of the secret is in {where}"


def stream_auth_failure(sim: Simulator, tmp_path: Path) -> str:
    """The trade_updates stream refusing a secret (spoken to directly, in this process): the
    exception, its traceback and the recorder's log line do not carry the secret."""
    import asyncio
    import logging
    import queue
    import traceback

    from blockpaca_nb.broker import Connection, Credentials, Endpoints
    from blockpaca_nb.recorder import Recorder, TradeUpdates

    connection = Connection("paper", Endpoints.from_mapping(sim.urls), Credentials(sim.api_key, FAKE))
    stream = TradeUpdates(connection, Recorder(tmp_path / "stream.csv", queue.Queue()))
    try:
        asyncio.run(stream._session())
    except PermissionError as err:
        refused = "".join(traceback.format_exception(err)) + repr(err) + repr(connection) + repr(stream.calls)
    else:
        raise AssertionError("the stream accepted a wrong secret")
    failed = AuthenticationError("the broker refused the API keys", 401, 40110000)
    logging.getLogger("blockpaca_nb.recorder").warning("%r %s", connection, refused)
    return "\n".join([refused, repr(failed), str(pickle.dumps(failed))])


def _pieces(secret: str, text: str, size: int = 12) -> list[str]:
    return [secret[i : i + size] for i in range(len(secret) - size + 1) if secret[i : i + size] in text]


# -- the one scrubber (blockpaca_nb.scrub) ---------------------------------------------------------

NEWLINE_SECRET = "FILE-SECRET-ends-with-newline-9c41d7\n"  # as read from a file


@pytest.fixture
def registry() -> Iterator[None]:
    from blockpaca_nb.scrub import forget_secrets

    forget_secrets()
    yield
    forget_secrets()


def test_scrub_blanks_every_form_and_piece_of_a_secret(registry: None) -> None:
    import json
    from urllib.parse import quote

    from blockpaca_nb.scrub import remember_secret, scrub_text

    core = NEWLINE_SECRET.strip()
    assert scrub_text(f"x {core} y") == f"x {core} y", "nothing is registered yet"
    remember_secret(NEWLINE_SECRET)
    remember_secret("short")  # too short to scrub without wrecking ordinary words
    texts = [
        f"Invalid header value {NEWLINE_SECRET.encode()!r}",
        f"header {NEWLINE_SECRET!r} refused",
        json.dumps({"secret": NEWLINE_SECRET}),
        "https://x/?secret=" + quote(NEWLINE_SECRET, safe=""),
        f"cut short: {core[:15]}…",
        f"twice {core}{core} and {core[-13:]}",
    ]
    for text in texts:
        clean = scrub_text(text)
        assert "***" in clean and not _pieces(core, clean), (text, clean)
    assert scrub_text("a short word and an order for AAPL") == "a short word and an order for AAPL"


def test_a_requests_error_quoting_the_secret_is_replaced(registry: None) -> None:
    """The issue's case: a secret with a trailing newline makes requests raise InvalidHeader quoting it."""
    import logging
    import traceback

    import requests

    from blockpaca_nb.errors import ScrubbedError
    from blockpaca_nb.scrub import ScrubFilter, remember_secret, scrub_error

    with Simulator(symbols=["AAPL"], seed=5) as sim:
        secret = sim.secret_key + "\n"
        remember_secret(secret)
        headers = {"APCA-API-KEY-ID": sim.api_key, "APCA-API-SECRET-KEY": secret}
        try:
            requests.get(sim.urls["trading"] + "/v2/account", headers=headers, timeout=10)
        except requests.exceptions.InvalidHeader as err:
            raised: BaseException = err
        else:
            raise AssertionError("requests accepted a header ending in a newline")
    assert _pieces(sim.secret_key, str(raised)), "the premise: requests quotes the secret"
    wrapped = RuntimeError("the session failed")
    wrapped.__cause__ = raised
    for error in (raised, wrapped):
        clean = scrub_error(error)
        assert isinstance(clean, ScrubbedError) and clean.kind == type(error).__name__
        shown = "".join(traceback.format_exception(clean)) + repr(clean) + str(pickle.loads(pickle.dumps(clean)))
        assert not _pieces(sim.secret_key, shown), shown
    assert "InvalidHeader" in str(scrub_error(raised))
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "session failed: %s", (raised,), None)
    ScrubFilter().filter(record)
    assert "session failed: " in record.getMessage() and not _pieces(sim.secret_key, record.getMessage())
    harmless = ValueError("nothing secret here")
    assert scrub_error(harmless) is harmless


def test_broker_paths_never_show_a_secret_read_with_a_newline(registry: None) -> None:
    """A secret read from a file works against the simulator (stripped), and no broker.py text shows it."""
    import logging

    from blockpaca_nb.broker import Credentials, resolve
    from blockpaca_nb.errors import BrokerError, ConfigurationError, OrderValidationError, show_value
    from blockpaca_nb.scrub import ScrubFilter

    with Simulator(symbols=["AAPL"], seed=6) as sim:
        secret = sim.secret_key
        target = resolve("paper", sim.api_key + "\n", secret + "\n", None, sim.urls, ["AAPL"])
        assert target.connection is not None
        account = target.connection.trading_client().get_account()  # the stripped secret is accepted
        assert str(account.status).endswith("ACTIVE")
        with pytest.raises(ConfigurationError) as refused:
            resolve("paper", sim.api_key, secret[:10] + "\x00" + secret[10:], None, sim.urls, ["AAPL"])
    texts = [repr(target), str(target), repr(target.connection), repr(Credentials(sim.api_key, secret + "\n"))]
    texts += [str(refused.value), repr(refused.value)]
    texts += [str(BrokerError(f"request echoed: {secret}", 400)), show_value({"secret": secret + "\n"})]
    texts.append(str(OrderValidationError("ticker", secret)))
    record = logging.LogRecord("x", logging.WARNING, __file__, 1, "connected with %r and %s", (target, secret), None)
    ScrubFilter().filter(record)
    texts.append(record.getMessage())
    for text in texts:
        assert not _pieces(secret, text), text


UNPICKLE_AND_SCRUB = """
import pickle, sys
from blockpaca_nb.scrub import scrub_text
credentials = pickle.loads(sys.stdin.buffer.read())
print(scrub_text("the worker saw " + credentials.secret_key))
"""


def test_credentials_register_their_secret_in_every_process_they_reach() -> None:
    """Workers, the feed and the recorder get Credentials by pickle: their scrubber must know the secret."""
    from blockpaca_nb.broker import Credentials

    credentials = Credentials("AK123", NEWLINE_SECRET)
    child = subprocess.run(
        [sys.executable, "-c", UNPICKLE_AND_SCRUB], input=pickle.dumps(credentials), capture_output=True, timeout=60
    )
    assert child.returncode == 0, child.stderr.decode()
    assert child.stdout.decode().strip() == "the worker saw ***"


# -- a whole session given a secret read from a file (issue 9, item 9) -----------------------------


def _widget_state() -> str:
    """Every ipywidget's synced state in this process, as the notebook would save it."""
    from ipywidgets.widgets.widget import _instances

    states = []
    for widget in list(_instances.values()):
        if widget.comm is None:  # a widget an earlier test closed syncs nothing any more
            continue
        try:
            states.append(widget.get_state())
        except AttributeError:  # it holds a closed child: read its traits one by one, children as text
            states.append({key: getattr(widget, key) for key in widget.keys})
    return json.dumps(states, default=str)


def _shown(session: Any) -> dict[str, str]:
    """Everything a user can see of ``session``: its errors, its failure, its dashboard, its trade log."""
    import traceback

    from blockpaca_nb.ui import Dashboard

    board = Dashboard(session, autostart=False)
    board.refresh()
    errors = [f"{item!r} {item}" for item in session.errors]
    errors += ["".join(traceback.format_exception(i)) for i in session.errors if isinstance(i, BaseException)]
    failure = session.failure
    shown = {"s.errors": "\n".join(errors), "widget state": _widget_state(), "repr": repr(session)}
    if failure is not None:
        shown["s.failure"] = "".join(traceback.format_exception(failure)) + repr(failure)
    if session.trade_log_file.exists():
        shown["trade log"] = session.trade_log_file.read_text()
    return shown


@pytest.fixture
def cell_output() -> Iterator[io.StringIO]:
    """What a notebook cell prints from logging (the "session failed: …" line): a stream handler on root."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logging.getLogger().addHandler(handler)
    yield stream
    logging.getLogger().removeHandler(handler)


def test_a_session_given_a_secret_read_from_a_file_never_shows_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, cell_output: io.StringIO
) -> None:
    """The secret ends with a newline: the session strips it and trades (judged at the broker); the
    strategy's own request with the secret as read raises requests' InvalidHeader quoting it, and an
    order carries it by mistake. Neither the strategy's error, the validation error, the broker's
    rejection, the logs, the dashboard nor the trade log show it."""
    import requests

    from blockpaca_nb import Session

    caplog.set_level(logging.DEBUG)
    with Simulator(symbols=["AAPL"], seed=23, quotes_per_second=5) as sim:
        (tmp_path / "secret.txt").write_text(sim.secret_key + "\n")
        read = (tmp_path / "secret.txt").read_text()
        headers = {"APCA-API-KEY-ID": sim.api_key, "APCA-API-SECRET-KEY": read}

        def own_request(ctx: Any) -> None:  # a strategy asking the broker itself, with the key as read
            requests.get(sim.urls["trading"] + "/v2/account", headers=headers, timeout=10)

        s = Session(tickers=["AAPL"], mode="paper", urls=sim.urls, api_key=sim.api_key, secret_key=read,
                    warm_up_period=0, frequency=0.2, trade_log_path=tmp_path, trade_log_name="newline",
                    num_workers=1)
        s.strategy(own_request)
        s.start()
        wait_for(lambda: s.status == "running", 60, "the session to run")
        cids = s.submit([{"ticker": "AAPL", "quantity": 1, "side": "buy", "order_type": "market"},
                         {"ticker": "AAPL", "quantity": 10**9, "side": "buy", "order_type": "market"},
                         {"ticker": "AAPL", "quantity": 1, "side": read, "order_type": "market"}])  # pasted there
        wait_for(lambda: all((s.orders.get(c) or {}).get("status") in ("filled", "rejected") for c in cids), 60,
                 "both orders to be final")
        wait_for(lambda: any("InvalidHeader" in str(getattr(e, "message", "")) for e in s.errors), 30,
                 "the strategy's InvalidHeader")
        at_broker = {o["client_order_id"]: o["status"] for o in sim.orders()}
        shown = _shown(s)
        s.stop()
    assert at_broker.get(cids[0]) == "filled", "the stripped secret must work at the broker"
    assert s.orders[cids[1]]["status"] == "rejected" and s.failure is None
    shown |= {"log records": "\n".join(r.getMessage() + (r.exc_text or "") for r in caplog.records),
              "cell output": cell_output.getvalue(), "trade log after stop": s.trade_log_file.read_text()}
    assert "***" in shown["s.errors"], "the premise: the strategy's error quoted the secret, blanked"
    assert "field 'side': got '***'" in shown["trade log after stop"], "the validation row is logged, blanked"
    for where, text in shown.items():
        assert not _pieces(sim.secret_key, text), f"a piece of the secret is in {where}"


def test_a_session_that_fails_on_a_newline_secret_never_shows_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, cell_output: io.StringIO
) -> None:
    """The issue's measurement, with the stripping of keys taken away (defence in depth): alpaca-py's
    own request raises InvalidHeader with the secret in it inside the session thread. s.failure,
    s.errors, the "session failed: …" line, the log records and the dashboard show it blanked."""
    from blockpaca_nb import Session, broker
    from blockpaca_nb.errors import ScrubbedError

    monkeypatch.setattr(broker, "_checked_key", lambda name, value: value)  # keys reach requests as given
    caplog.set_level(logging.DEBUG)
    with Simulator(symbols=["AAPL"], seed=24) as sim:
        s = Session(tickers=["AAPL"], mode="paper", urls=sim.urls, api_key=sim.api_key,
                    secret_key=sim.secret_key + "\n", warm_up_period=0, trade_log_path=tmp_path, num_workers=1)
        s.start()
        assert s.wait(60), "the session hung"
        shown = _shown(s)
    assert s.status == "failed" and isinstance(s.failure, ScrubbedError), (s.status, s.failure)
    assert s.failure.kind == "InvalidHeader" and "***" in str(s.failure), "the premise: requests quoted the secret"
    assert any("session failed: " in r.getMessage() for r in caplog.records)
    assert "session failed: " in cell_output.getvalue()
    shown |= {"log records": "\n".join(r.getMessage() + (r.exc_text or "") for r in caplog.records),
              "cell output": cell_output.getvalue()}
    for where, text in shown.items():
        assert not _pieces(sim.secret_key, text), f"a piece of the secret is in {where}"


def test_errors_can_be_read_while_threads_append_to_them() -> None:
    """`s.errors` is read from a notebook while the session's threads append: iterating never raises
    "deque mutated during iteration" (it walks a snapshot), and what was read is scrubbed."""
    import threading

    from blockpaca_nb.scrub import ScrubbedDeque

    errors: ScrubbedDeque[str] = ScrubbedDeque(maxlen=200)
    stop = threading.Event()

    def append() -> None:
        while not stop.is_set():
            errors.append("strategy failed")

    writer = threading.Thread(target=append)
    writer.start()
    try:
        for _ in range(2000):
            assert all(item == "strategy failed" for item in errors)
    finally:
        stop.set()
        writer.join()
    assert len(errors) == 200
