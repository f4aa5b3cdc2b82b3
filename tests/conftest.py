"""The whole suite's shared helpers: importing this puts ``tests/`` on ``sys.path``, so any test folder
can ``from waiting import wait_for`` (the one polling helper; see tests/waiting.py for why there is
no fixed sleep anywhere in the suite)."""

from __future__ import annotations

from waiting import wait_for

__all__ = ["wait_for"]
