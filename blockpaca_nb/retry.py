"""Retries: the one rule of what is worth another attempt, and how long to wait before it.

Every REST call the toolkit makes follows this rule — a worker's order submission and its look-up by
client order id, and the kernel's and the recorder's alpaca-py calls alike:

- no answer at all (refused, reset, timed out) or a status in :data:`TRANSIENT_STATUSES` may be a
  passing fault: try again after :func:`backoff`, up to ``max_retries`` times. An order keeps its
  client order id across attempts, so a retry can never double it;
- 429 is the broker saying "wait", not "failed": wait for its ``X-RateLimit-Reset`` (the shared
  limiter holds everyone back) and try again without using up a retry, at most ``MAX_THROTTLED``
  times;
- anything else is the broker's final word.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

BACKOFF_BASE_S = 0.1
BACKOFF_CAP_S = 2.0
MAX_THROTTLED = 50
"""How many 429 answers one call may meet before it is given up (they use up no retry)."""

TRANSIENT_STATUSES = frozenset({408, 500, 502, 503, 504})
"""HTTP statuses that may be a passing fault of the broker or the path to it: retried."""
THROTTLED_STATUS = 429


def verdict(status: int | None) -> str:
    """What an answer means for retrying: ``unanswered``, ``transient``, ``throttled`` or ``final``."""
    if status is None:
        return "unanswered"
    if status == THROTTLED_STATUS:
        return "throttled"
    return "transient" if status in TRANSIENT_STATUSES else "final"


def backoff(retry: int) -> float:
    """Seconds to wait before retry number ``retry`` (1, 2, ...): 0.1 s × 2ⁿ⁻¹, jittered, capped at 2 s."""
    return min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** (max(retry, 1) - 1)) * random.uniform(0.5, 1.0)


def reset_time(header: str | None) -> float:
    """A 429's ``X-RateLimit-Reset`` (epoch seconds); a missing or unreadable one means "shortly"."""
    try:
        return float(header) if header else time.time() + BACKOFF_CAP_S
    except ValueError:
        return time.time() + BACKOFF_CAP_S


@dataclass
class Attempts:
    """The retry budget of one call: count each failed attempt with :meth:`failed`, which says
    whether another attempt is allowed. ``max_unanswered`` caps attempts that got no answer at all
    (a start-up check should not spend a minute on an unreachable endpoint)."""

    max_retries: int
    max_unanswered: int | None = None
    failures: int = 0
    throttled: int = 0
    unanswered: int = 0

    def failed(self, kind: str) -> bool:
        """Count an attempt of verdict ``kind``; True while another attempt is allowed."""
        self.throttled += kind == "throttled"
        self.failures += kind != "throttled"
        self.unanswered += kind == "unanswered"
        cap = self.max_retries if self.max_unanswered is None else self.max_unanswered
        return self.failures <= self.max_retries and self.throttled <= MAX_THROTTLED and self.unanswered <= cap

    def pause(self) -> float:
        """Seconds to wait before the next attempt after a failure (a 429 waits in the limiter)."""
        return backoff(self.failures)
