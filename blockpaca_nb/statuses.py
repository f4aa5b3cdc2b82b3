"""Order statuses and session states, each group defined once, with what it means.

Alpaca's order statuses are strings (``new``, ``partially_filled``, ``filled`` …); the toolkit adds
three of its own for orders that never got a broker's status: ``submitting`` (a worker is sending
it), ``failed`` (no answer after the retries, or never sent) and ``validation_error`` (refused
before it left the kernel). Code asks "is this order done?" through these groups, never by listing
statuses inline.
"""

from __future__ import annotations

# ------------------------------------------------------------------ orders

FINAL_ORDER_STATUSES = frozenset({"filled", "canceled", "expired", "rejected", "replaced"})
"""Alpaca's last word on an order: nothing changes it any more (``replaced``: a new order took over)."""

ENDED_ORDER_STATUSES = FINAL_ORDER_STATUSES | {"failed"}
"""Orders nobody needs to wait for: the broker's final statuses, and orders the toolkit gave up on."""

SHOWN_AS_ENDED_STATUSES = ENDED_ORDER_STATUSES | {"done_for_day", "stopped", "invalid"}
"""Statuses the trade-log statistics count as an order's outcome: the ended ones and those that end
the order's day (``done_for_day``) or that older logs used (``stopped``, ``invalid``)."""

WAITING_STATUSES = frozenset({"accepted", "held"})
"""The broker holds the order but it does not work yet: ``accepted`` outside market hours (it waits
for the open), ``held`` for a bracket's exit until its entry fills. Neither is lost nor failed."""

IN_FLIGHT_STATUSES = frozenset({"submitting", "accepted"})
"""Only the toolkit has spoken: a worker is sending the order, or the broker has just taken it."""

PROBLEM_STATUSES = frozenset({"rejected", "failed", "validation_error"})
"""Orders the user must hear about: refused by the broker, given up, or refused before sending
(a risk limit's refusal is a ``rejected`` row of type ``risk``)."""

# ------------------------------------------------------------------ strategies

STRATEGY_STATES = ("running", "paused", "reduce_only", "halted", "liquidating")
"""A strategy's states: ticking; stopped by the user; ticking, but a limit was crossed, so only orders
that shrink a position pass; stopped by a limit or the kill switch (``resume(name)`` restarts it);
its book being closed (``liquidate(strategy=)``; paused once it is flat)."""

TICKING_STATES = frozenset({"running", "reduce_only"})
"""The strategy is called on its clock."""

SENDING_STATES = frozenset({"running", "reduce_only", "paused"})
"""The strategy's orders may leave (checked by the limits); a paused one's last call may still send."""

# ------------------------------------------------------------------ sessions

SESSION_STATES = (
    "created",  # made, not started
    "starting",  # the simulator, the processes and the broker checks are coming up
    "warming_up",  # up; quotes arrive; strategies wait for warm_up_period
    "running",  # strategies tick
    "paused",  # strategies do not tick; everything else runs
    "liquidating",  # a liquidation runs until flat (see Session.activity); strategy orders are refused
    "stopping",  # the end-of-session action runs, then everything stops
    "stopped",  # ended normally
    "failed",  # ended by an error (see Session.failure)
)
"""A session's lifecycle, in order."""

ENDED_SESSION_STATES = frozenset({"stopped", "failed"})
"""Nothing runs any more: create a new Session to trade again."""

EOS_ACTIONS = ("liquidate", "hold", "custom")
"""End-of-session actions: close the session's positions, keep them, or run custom_shutdown_action."""
