"""The dashboard's controls (ipywidgets): Start / Pause / Resume / Stop, the strategy selector,
the end-of-session buttons with the kill switch, one strategy's Pause / Resume / Liquidate, and the
chart's ticker.

Handlers run wherever the kernel handles the click (the shell thread, after any busy cell; a
subshell thread in front-ends that use them). They only call the session's non-blocking
methods, note what happened, wake the pump and return; they never touch a widget: the pump
alone sets the buttons' states, the selector's value and the confirmation bar (:meth:`sync`).
Liquidate acts on the session's own orders and positions at once (on a live account after a
confirmation); "Flatten account" closes everything the account holds and always asks first; Kill
halts every strategy and liquidates the session (on a live account after a confirmation).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import ipywidgets as widgets

from ..scrub import scrub_text
from .session_view import SessionView

ACTIVE = frozenset({"starting", "warming_up", "running", "paused", "liquidating"})
NO_STRATEGY = "(no strategy registered)"


class DashboardError(Exception):
    """A button press that failed, or a part of a refresh; shown in the errors panel (never silent)."""

    dashboard = True


class Controls:
    """The control widgets and their thread-safe handlers."""

    def __init__(self, session: SessionView, wake: Callable[[], None]) -> None:
        self.session = session
        self.notices: deque[DashboardError] = deque(maxlen=50)
        self.confirming = False
        self.last_action = ""
        self._wake = wake
        self._confirmed_action: Callable[[], Any] = lambda: None
        self._asked = ""  # what the open question's "Yes" does
        self._pump_thread: int | None = None
        self._build()

    # ------------------------------------------------------------------ widgets
    def _build(self) -> None:
        def button(label: str, icon: str, tip: str, style: str = "", name: str = "") -> widgets.Button:
            b = widgets.Button(description=label, icon=icon, tooltip=tip, button_style=style)
            b.layout = widgets.Layout(width="auto")
            b.add_class(f"bp-btn-{name or label.lower()}")
            return b

        self.start = button("Start", "play", "Start the session")
        self.pause = button("Pause", "pause", "Stop sending the strategy's orders (quotes keep coming)")
        self.resume = button("Resume", "play-circle", "Run the strategy again")
        self.stop = button("Stop", "stop", "Run the end-of-session action and stop everything", "warning")
        self.liquidate = button(
            "Liquidate", "times-circle", "Cancel this session's open orders and close its positions", "danger"
        )
        self.flatten = button(
            "Flatten account", "ban", "Cancel EVERY open order and close EVERY position of the account", "danger",
            "flatten",
        )
        self.hold = button("Hold", "hand-paper-o", "Keep every position as it is (halts a running liquidation)")
        self.custom = button("Custom", "cog", "Run the session's custom_shutdown_action")
        self.kill = button(
            "Kill", "power-off", "Halt EVERY strategy, cancel the session's orders and close its positions", "danger"
        )
        self.target = widgets.Dropdown(description="Strategy", options=[NO_STRATEGY], value=NO_STRATEGY)
        self.target.layout = widgets.Layout(width="240px")
        self.target.style = {"description_width": "60px"}
        self.target.add_class("bp-strategy-target")
        self.pause_one = button("Pause it", "pause", "Stop calling this strategy", name="pause-one")
        self.resume_one = button("Resume it", "play-circle", "Call this strategy again", name="resume-one")
        self.liquidate_one = button(
            "Liquidate it", "times-circle", "Pause this strategy and close its positions", "danger", "liquidate-one"
        )
        self.strategy = widgets.Dropdown(description="Strategy", options=[NO_STRATEGY], value=NO_STRATEGY)
        self.strategy.layout = widgets.Layout(width="260px")
        self.strategy.style = {"description_width": "60px"}
        self.strategy.add_class("bp-strategy-select")
        self.action = widgets.HTML()
        self.action.add_class("bp-last-action")
        self.yes = button("Yes, liquidate", "check", "Go ahead", "danger", "confirm")
        self.no = button("Cancel", "times", "Do not liquidate", name="cancel")
        self.question = widgets.HTML()
        self.confirm_bar = widgets.HBox([self.question, self.yes, self.no], layout=widgets.Layout(display="none"))
        self.confirm_bar.add_class("bp-confirm")
        self._connect()

    def _connect(self) -> None:
        self.start.on_click(lambda _b: self._call("start", self.session.start))
        self.pause.on_click(lambda _b: self._call("pause", self.session.pause))
        self.resume.on_click(lambda _b: self._call("resume", self.session.resume))
        self.stop.on_click(lambda _b: self._call("stop", self.session.stop))
        self.liquidate.on_click(lambda _b: self.request_liquidate())
        self.flatten.on_click(lambda _b: self.request_flatten())
        self.yes.on_click(lambda _b: self._confirmed(True))
        self.no.on_click(lambda _b: self._confirmed(False))
        self.hold.on_click(lambda _b: self._call("hold", self.session.hold))
        self.custom.on_click(lambda _b: self._call("custom EOS", self.session.run_custom_eos))
        self.kill.on_click(lambda _b: self.request_kill())
        self.pause_one.on_click(lambda _b: self._on_target("pause", lambda n: self.session.pause(n)))
        self.resume_one.on_click(lambda _b: self._on_target("resume", lambda n: self.session.resume(n)))
        self.liquidate_one.on_click(
            lambda _b: self._on_target("liquidate", lambda n: self.session.liquidate(strategy=n))
        )
        self.strategy.observe(self._on_strategy, names="value")

    def all_widgets(self) -> list[widgets.Widget]:
        """Every control (for closing them)."""
        buttons = [self.start, self.pause, self.resume, self.stop, self.liquidate, self.flatten, self.hold, self.custom]
        buttons += [self.kill, self.pause_one, self.resume_one, self.liquidate_one]
        return [*buttons, self.strategy, self.target, self.action, self.question, self.yes, self.no, self.confirm_bar]

    def rows(self) -> list[widgets.Widget]:
        """The control rows, top to bottom."""
        lifecycle = widgets.HBox([self.start, self.pause, self.resume, self.stop])
        eos = widgets.HBox(
            [
                widgets.HTML("<span class='bp-label'>End of session</span>"),
                self.liquidate,
                self.hold,
                self.custom,
                self.flatten,
                self.kill,
            ]
        )
        bar = widgets.HBox([lifecycle, self.strategy, eos, self.action])
        bar.add_class("bp-controls")
        one = widgets.HBox([self.target, self.pause_one, self.resume_one, self.liquidate_one])
        one.add_class("bp-controls")
        return [bar, self.confirm_bar, one]

    # ------------------------------------------------------------------ handlers (any thread)
    def _call(self, what: str, method: Callable[[], Any]) -> None:
        """Call a non-blocking session method; a failure becomes a notice, never an exception. A
        question still open is withdrawn: its "Yes" must not act after another action was taken."""
        self.confirming = False
        try:
            method()
        except Exception as err:
            self.note_failure(what, err)
        else:
            self.last_action = f"{what} requested at {time.strftime('%H:%M:%S')}"
        self._wake()

    def note_failure(self, what: str, err: BaseException) -> None:
        self.notices.append(DashboardError(scrub_text(f"{what}: {type(err).__name__}: {err}")))
        self.last_action = f"{what} failed"

    def request_liquidate(self) -> None:
        """Liquidate the session at once, or, on a live account, ask first."""
        if self.session.mode == "live":
            question = "<b>LIVE account:</b> close this session's positions with market orders?"
            self._ask(question, "liquidate", "Yes, liquidate", self.session.liquidate)
            return
        self._call("liquidate", self.session.liquidate)

    def request_kill(self) -> None:
        """The kill switch at once, or, on a live account, ask first."""
        if self.session.mode == "live":
            question = "<b>LIVE account:</b> halt every strategy and close this session's positions?"
            self._ask(question, "kill", "Yes, kill", self.session.kill)
            return
        self._call("kill", self.session.kill)

    def _on_target(self, what: str, action: Callable[[str], Any]) -> None:
        """Pause, resume or liquidate the strategy picked in the second selector."""
        name = self.target.value
        if name in (None, NO_STRATEGY):
            self.note_failure(what, ValueError("pick a strategy first"))
            self._wake()
            return
        self._call(f"{what} {name}", lambda: action(str(name)))

    def request_flatten(self) -> None:
        """Flatten the whole account: always asked first (it touches what the session does not own)."""
        question = (
            "<b>Flatten the whole account?</b> Cancels every open order and closes every position,"
            " including ones this session did not open."
        )
        flatten = lambda: self.session.liquidate(scope="account")  # noqa: E731
        self._ask(question, "flatten account", "Yes, flatten the account", flatten)

    def _ask(self, question: str, what: str, yes: str, action: Callable[[], Any]) -> None:
        """Ask before ``action`` (named ``what``; ``yes``: the button that does it)."""
        self.question.value, self.yes.description, self.no.tooltip = question, yes, f"Do not {what}"
        self._confirmed_action, self._asked = action, what
        self.confirming = True
        self._wake()

    def _confirmed(self, yes: bool) -> None:
        if not self.confirming:  # withdrawn meanwhile (another action was taken)
            self.last_action = "that question was withdrawn: another action was taken"
            self._wake()
            return
        self.confirming = False
        if yes:
            self._call(self._asked, self._confirmed_action)
        else:
            self.last_action = f"{self._asked} cancelled"
            self._wake()

    def _on_strategy(self, change: dict[str, Any]) -> None:
        """The user picked a strategy: hot-swap to it (the pump's own writes are ignored)."""
        if threading.get_ident() == self._pump_thread:
            return
        name = change.get("new")
        if name in (None, NO_STRATEGY) or name == self.session.active_strategy:
            return
        self._call(f"select {name}", lambda: self.session.select(name))

    # ------------------------------------------------------------------ pump side
    def sync(self) -> None:
        """Bring every control in line with the session (pump thread only)."""
        self._pump_thread = threading.get_ident()
        session, status = self.session, self.session.status
        _set(self.start, "disabled", status != "created")
        _set(self.pause, "disabled", status not in ("starting", "warming_up", "running"))
        _set(self.resume, "disabled", status != "paused")
        _set(self.stop, "disabled", status in ("stopping", "stopped", "failed"))
        for button in (self.liquidate, self.flatten, self.hold, self.kill):
            _set(button, "disabled", status not in ACTIVE)
        _set(self.custom, "disabled", status not in ACTIVE or not callable(session.custom_shutdown_action))
        self._sync_strategies(session)
        _set(self.confirm_bar.layout, "display", "flex" if self.confirming else "none")
        text = f"<span class='bp-note'>{_escape(self.last_action)}</span>" if self.last_action else ""
        _set(self.action, "value", text)

    def _sync_strategies(self, session: Any) -> None:
        names = list(session.strategies) or [NO_STRATEGY]
        active = session.active_strategy or NO_STRATEGY
        if tuple(names) != tuple(self.strategy.options):
            self.strategy.options = names
        if active in names and self.strategy.value != active:
            self.strategy.value = active
        _set(self.strategy, "disabled", names == [NO_STRATEGY])
        if tuple(names) != tuple(self.target.options):
            picked = self.target.value
            self.target.options = names  # (a Dropdown resets to the first option here)
            if picked in names:
                self.target.value = picked  # the user's pick stays: "Liquidate it" acts on it, on no other
        for button in (self.pause_one, self.resume_one, self.liquidate_one):
            _set(button, "disabled", names == [NO_STRATEGY] or session.status not in ACTIVE)


def _set(widget: Any, name: str, value: Any) -> None:
    """Set a trait only when it changes (each change is a comm message)."""
    if getattr(widget, name) != value:
        setattr(widget, name, value)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
