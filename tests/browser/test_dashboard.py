"""The dashboard in a real JupyterLab, driven by headless Chromium (Playwright).

One notebook, run once with "Run All": a simulator session (three tickers, warm_up_period=0,
frequency=1) whose strategy buys once then holds, a second strategy registered, ``s.start()`` as
the last line of the first cell (so the cell shows the dashboard), a cell that sleeps 5 s, and
``s.plot()``. The tests then read the page as a person would and press its buttons, in order.
Needs what scripts/browser-deps installs; skipped, with the reason, only when Chromium or
JupyterLab is missing. Screenshots of failures go to a temporary folder (printed); set
BLOCKPACA_SCREENSHOTS=/some/dir to keep one of every step.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from jupyterlab_harness import JupyterLab, missing_requirements, notebook, open_page, save_screenshot
from waiting import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]

_missing = missing_requirements()
if _missing:
    pytest.skip(f"browser test needs Chromium and JupyterLab: {_missing}", allow_module_level=True)

TICKERS = ["AAPL", "MSFT", "TSLA"]
SETUP = f"""
import time
from blockpaca_nb import Session

s = Session(
    tickers={TICKERS!r},
    warm_up_period=0,
    frequency=1,
    trade_log_path=".",
    trade_log_name="browser_test",
    simulator={{"seed": 5, "quotes_per_second": 4}},
)

def hold_only(ctx):
    return None

def buy_then_hold(ctx):
    if ctx.state.get("bought"):
        if not ctx.state.get("raised"):
            ctx.state["raised"] = True
            raise RuntimeError("boom from the strategy")  # shown with its traceback; the loop goes on
        return None
    quotes, _positions = ctx.get_current_data()
    if len(quotes) < {len(TICKERS)}:
        return None
    ctx.state["bought"] = True
    return [
        {{"ticker": "AAPL", "quantity": 3, "side": "buy", "order_type": "market"}},
        {{"ticker": "MSFT", "quantity": 2, "side": "buy", "order_type": "market"}},
        {{"ticker": "TSLA", "quantity": 1, "side": "hold", "order_type": "market"}},  # invalid: not sent
        {{"ticker": "TSLA", "quantity": 1000000, "side": "buy", "order_type": "market"}},  # rejected by the broker
    ]

s.strategy(hold_only)
s.strategy(buy_then_hold)   # registered last: the active one
s.start()
"""
BUSY = """
deadline = time.time() + 90
while (s.status != "running" or s.quotes["bid"].isna().any()) and time.time() < deadline:
    time.sleep(0.1)
print("sleeping", s.status, flush=True)
time.sleep(5)
print("slept")
"""
PLOT = "s.plot()"
CELL_SETUP, CELL_BUSY, CELL_PLOT = range(3)

KERNEL_READY = """() => {
  const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
  return Boolean(k && k.status === "idle" && document.querySelector(".jp-Notebook .jp-Cell"));
}"""
ROWS = """(panel) => Array.from(document.querySelectorAll(`.bp-panel-${panel} tr.bp-row`))
  .filter((tr) => tr.style.display !== "none")
  .map((tr) => [tr.dataset.key, ...Array.from(tr.children).map((td) => td.textContent)])"""
COLUMNS = """(panel) => Array.from(document.querySelectorAll(`.bp-panel-${panel} th`)).map((th) => th.textContent)"""
PROMPTS = """() => Array.from(document.querySelectorAll(".jp-Notebook .jp-Cell .jp-InputPrompt"))
  .map((p) => p.textContent.trim())"""


def wait_until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    """The shared wait, polling a quarter-second apart: each check reads the page through the browser."""
    return wait_for(check, timeout, what, every=0.25)


class Page:
    """The notebook page with helpers that read the dashboard like a person would."""

    def __init__(self, page: Any) -> None:
        self.page = page

    def rows(self, panel: str) -> dict[str, dict[str, str]]:
        """Visible rows of a panel: key -> {column label: text}."""
        labels = [label.rstrip(" ▲▼") for label in self.page.evaluate(COLUMNS, panel)]
        return {row[0]: dict(zip(labels, row[1:], strict=False)) for row in self.page.evaluate(ROWS, panel)}

    def header(self, role: str) -> str:
        return self.page.inner_text(f".bp-header [data-role={role}] .bp-value").strip()

    def mode(self) -> str:
        return self.page.inner_text(".bp-header [data-role=mode]").strip()

    def prompts(self) -> list[str]:
        return list(self.page.evaluate(PROMPTS))

    def output_text(self, cell: int) -> str:
        return str(
            self.page.evaluate(f"""() => {{
            const cell = document.querySelectorAll(".jp-Notebook .jp-Cell")[{cell}];
            const out = cell && cell.querySelector(".jp-OutputArea");
            return out ? out.innerText : "";
        }}""")
        )


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="blockpaca-browser-") as folder:
        yield Path(folder)


@pytest.fixture(scope="module")
def screenshots() -> Path:
    keep = os.environ.get("BLOCKPACA_SCREENSHOTS")
    return Path(keep) if keep else Path(tempfile.mkdtemp(prefix="blockpaca-screenshots-"))


@pytest.fixture(scope="module")
def lab(workdir: Path) -> Iterator[JupyterLab]:
    root = workdir / "root"
    root.mkdir()
    (root / "dashboard.ipynb").write_text(json.dumps(notebook([SETUP, BUSY, PLOT])))
    server = JupyterLab(root, workdir).start()
    try:
        yield server
    finally:
        children = server.descendants()
        server.stop()
        _assert_all_gone(children)


def _assert_all_gone(processes: list[Any], timeout: float = 20.0) -> None:
    """Every process the server had started (kernel, simulator, feed, workers …) has exited."""
    import psutil

    _gone, alive = psutil.wait_procs(processes, timeout=timeout)
    for process in alive:
        process.kill()
    assert not alive, f"left running after JupyterLab stopped: {[p.pid for p in alive]}"


@pytest.fixture(scope="module")
def page(lab: JupyterLab, workdir: Path) -> Iterator[Page]:
    """The notebook opened in Chromium, all cells started with Run All (without waiting for them)."""
    with open_page(f"{lab.url}/lab/tree/dashboard.ipynb?token={lab.token}", workdir) as browser_page:
        browser_page.wait_for_function(KERNEL_READY, timeout=90_000)
        browser_page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); return true; }")
        browser_page.wait_for_selector(".bp-panel-quotes .bp-table", timeout=60_000)
        yield Page(browser_page)


@pytest.fixture(autouse=True)
def screenshot_on_failure(request: pytest.FixtureRequest, screenshots: Path) -> Iterator[None]:
    yield
    report = getattr(request.node, "report_call", None)
    failed = report is not None and report.failed
    if (failed or os.environ.get("BLOCKPACA_SCREENSHOTS")) and "page" in request.fixturenames:
        path = save_screenshot(request.getfixturevalue("page").page, screenshots, request.node.name, ".bp-dashboard")
        if failed:
            print(f"screenshot of the failure: {path}")


# --------------------------------------------------------------------------- the tests, in order


def test_header_shows_mode_and_running_status(page: Page) -> None:
    assert page.mode() == "SIM"
    wait_until(lambda: "running" in page.header("status"), 90, "the status to say running")
    assert page.header("strategy").startswith("buy_then_hold")
    assert "per min" in page.header("rate")


def test_panels_keep_updating_while_a_cell_is_busy(page: Page) -> None:
    """While `time.sleep(5)` holds the kernel, new prices and ticks still arrive from the pump thread.
    (The browser ages quotes on its own clock, so fresh ages alone would not prove it: a frozen pump
    would show ages growing past a second; the tick count only the kernel knows.)"""
    wait_until(lambda: "sleeping" in page.output_text(CELL_BUSY), 90, "the busy cell to start sleeping")
    prices, ticks, ages = [], [], []
    while True:
        rows = page.rows("quotes")
        tick = page.header("ticks")
        if page.prompts()[CELL_BUSY] != "[*]:":
            break  # only what was read while the cell was still running counts
        prices.append(tuple(rows[t][c] for t in TICKERS for c in ("Bid", "Ask", "Mid")))
        # "—" until a ticker's first quote (a loaded machine may start the busy cell before that)
        ages.extend(float(rows[t]["Age"].split()[0]) for t in TICKERS if rows[t]["Age"] != "—")
        ticks.append(tick)
        time.sleep(0.25)
    assert len(prices) >= 8, f"watched the busy cell for only {len(prices)} samples"
    assert len(set(prices)) >= 2, f"prices did not change while the cell was busy: {prices}"
    assert len(set(ticks)) >= 3, f"the header did not update while the cell was busy: {ticks}"
    assert ages, "no quote arrived while the cell was busy"
    assert max(ages) < 2.0, f"quotes went stale while the cell was busy (ages up to {max(ages)} s)"


def test_quotes_panel_shows_every_ticker_and_prices_change(page: Page) -> None:
    rows = wait_until(
        lambda: (r := page.rows("quotes")) and all(r.get(t, {}).get("Bid", "—") != "—" for t in TICKERS) and r,
        60,
        "a bid for every ticker",
    )
    assert set(rows) == set(TICKERS)
    first = {t: rows[t]["Mid"] for t in TICKERS}
    wait_until(lambda: any(page.rows("quotes")[t]["Mid"] != first[t] for t in TICKERS), 20, "a mid price to change")
    assert "connected" in page.header("feed")


def test_positions_appear_after_the_strategy_trades(page: Page) -> None:
    rows = wait_until(
        lambda: (r := page.rows("positions")) and {"AAPL", "MSFT"} <= set(r) and r, 60, "AAPL and MSFT positions"
    )
    assert float(rows["AAPL"]["Qty"]) == 3
    assert float(rows["MSFT"]["Qty"]) == 2
    assert rows["AAPL"]["Last"] != "—"
    total = page.page.inner_text(".bp-panel-positions tfoot").strip()
    assert total.startswith("Total (2)")
    wait_until(
        lambda: [r for r in page.rows("trades").values() if r["Event"] == "fill" and r["Action"] == "buy_long"],
        10,
        "the buy fills in the trade updates panel",
    )


def test_trade_log_figure_renders(page: Page) -> None:
    wait_until(lambda: page.prompts()[CELL_PLOT] not in ("[*]:", "[ ]:"), 90, "the plot cell to finish")
    figure = page.page.wait_for_selector(".jp-Notebook .jp-Cell:nth-child(3) .js-plotly-plot .main-svg", timeout=30_000)
    assert "Error" not in page.output_text(CELL_PLOT)
    if os.environ.get("BLOCKPACA_SCREENSHOTS"):
        figure.screenshot(path=str(Path(os.environ["BLOCKPACA_SCREENSHOTS"]) / "trade-log-figure.png"))


def test_errors_panel_shows_exceptions_validation_errors_and_rejections(page: Page) -> None:
    errors = wait_until(
        lambda: (r := page.rows("errors")) and len(r) >= 3 and r, 30, "three errors (strategy, validation, broker)"
    )
    by_source = {row["Source"]: row for row in errors.values()}
    assert "RuntimeError: boom from the strategy" in by_source["strategy buy_then_hold"]["Message"]
    assert "side" in by_source["order validation"]["Message"]
    assert "TSLA" in by_source["broker rejected"]["Message"]
    key = next(k for k, row in errors.items() if row["Source"] == "strategy buy_then_hold")
    page.page.click(f".bp-panel-errors tr.bp-row[data-key='{key}']")
    detail = page.page.inner_text(".bp-panel-errors .bp-detail")
    assert "Traceback" in detail and "boom from the strategy" in detail
    rejected = page.page.query_selector_all(".bp-panel-trades tr.bp-row.bp-bad")
    assert rejected, "a rejected order is highlighted in the trade updates panel"
    reasons = " ".join(row["Reason"] for row in page.rows("trades").values() if row["Status"] == "rejected")
    assert reasons.strip(), "a rejection shows its reason"
    assert int(page.header("errors")) >= 3


def test_liquidate_empties_positions_and_shows_the_fills(page: Page) -> None:
    page.page.click(".bp-btn-liquidate")
    wait_until(lambda: not page.rows("positions"), 30, "the positions panel to empty")
    trades = wait_until(
        lambda: [r for r in page.rows("trades").values() if r["Action"] == "liquidate" and r["Event"] == "fill"],
        30,
        "liquidation fills in the trade updates panel",
    )
    assert {r["Ticker"] for r in trades} == {"AAPL", "MSFT"}
    assert all(r["Side"] == "sell" and r["Status"] == "filled" for r in trades)
    assert page.page.inner_text(".bp-panel-positions .bp-empty").strip() == "no positions"


def test_switching_the_strategy_changes_the_active_one(page: Page) -> None:
    page.page.select_option(".bp-strategy-select select", "hold_only")
    wait_until(lambda: page.header("strategy").startswith("hold_only"), 15, "the header to show hold_only")
    assert "2 registered" in page.header("strategy")


def test_the_strategies_panel_lists_each_strategy_with_its_role_and_state(page: Page) -> None:
    """Both registered strategies: the main one on the session's 1 s clock — shown paused, as the
    session is since the Liquidate above (it said running) — the other off (a row "session" follows
    once the session sent orders of its own, e.g. a liquidation's)."""
    names = {"buy_then_hold", "hold_only"}
    rows = wait_until(lambda: names <= set(page.rows("strategies")) and page.rows("strategies"), 30, "both rows")
    main = page.header("strategy").split()[0]
    other = ({"buy_then_hold", "hold_only"} - {main}).pop()
    assert (rows[main]["Role"], rows[main]["Every"], rows[main]["State"]) == ("main", "1 s", "paused")
    assert (rows[other]["Role"], rows[other]["State"]) == ("off", "inactive")
    assert page.page.query_selector(".bp-btn-kill") and page.page.query_selector(".bp-strategy-target select")


def test_chart_draws_pnl_and_fills(page: Page) -> None:
    page.page.select_option(".bp-chart-select select", "AAPL")
    wait_until(lambda: page.page.query_selector(".bp-chart .bp-line-pnl"), 15, "the P&L line")
    wait_until(lambda: len(page.page.query_selector_all(".bp-chart .bp-fill-buy")) >= 1, 15, "the AAPL buy marker")
    wait_until(lambda: len(page.page.query_selector_all(".bp-chart .bp-fill-sell")) >= 1, 15, "the AAPL sell marker")


def test_a_reloaded_page_gets_the_whole_state_back(page: Page) -> None:
    """After a reload the browser's stores are empty: they ask the kernel for a full copy."""
    page.page.evaluate("() => window.jupyterapp.commands.execute('docmanager:save')")
    page.page.reload()
    page.page.wait_for_function(KERNEL_READY, timeout=90_000)
    page.page.wait_for_selector(".bp-panel-quotes .bp-table", timeout=60_000)
    rows = wait_until(
        lambda: (r := page.rows("quotes")) and all(r.get(t, {}).get("Bid", "—") != "—" for t in TICKERS) and r,
        30,
        "every ticker's quote after the reload",
    )
    assert set(rows) == set(TICKERS)
    wait_until(lambda: page.rows("trades"), 30, "the trade updates after the reload")
    wait_until(lambda: page.header("strategy").startswith("hold_only"), 30, "the header after the reload")


def test_stop_button_stops_the_session(page: Page) -> None:
    page.page.click(".bp-btn-stop")
    wait_until(lambda: page.header("status") == "stopped", 60, "the status to say stopped")
    assert page.header("feed") == "closed"
    assert page.page.is_disabled(".bp-btn-liquidate")
    assert page.page.is_disabled(".bp-btn-start")
