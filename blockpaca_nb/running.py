"""One live session per kernel and account: re-running the cell that makes a Session replaces it.

In a notebook the usual way to "restart" is to run the cell again, which makes a second Session
while the first still trades — unseen, since its dashboard output was replaced (and on Alpaca its
data connection then gets 406: one stream per account). So starting a session first stops the one
already running in this kernel on the same account, with ``eos="hold"`` unless told otherwise, and
says so; ``replace_running=False`` refuses instead.

The account is named by a key that carries no secret: the simulator object (or "the embedded
simulator" for sessions that start their own: each re-run starts a new one, but to the user it is
the same practice account), or a hash of the API key id.
"""

from __future__ import annotations

import hashlib
import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .errors import BlockpacaError
from .statuses import ENDED_SESSION_STATES

if TYPE_CHECKING:
    from .broker import Target

REPLACE_CHOICES = (True, False, "hold", "liquidate")
_running: dict[str, weakref.ref[Any]] = {}
_lock = threading.Lock()


def account_key(target: Target) -> str:
    """A name for the account a session trades on (no secret in it): every session's own simulator is
    one account (re-running the cell replaces the last session), a Simulator passed in is its own."""
    if target.mode == "sim":
        return "sim:embedded" if target.own_simulator else f"sim:{id(target.simulator)}"
    assert target.connection is not None
    key_id = target.connection.credentials.api_key.encode()
    return f"{target.mode}:{hashlib.sha256(key_id).hexdigest()[:12]}"


def take_over(key: str, session: Any, replace: bool | str, hand_over: Callable[[Any], None] | None = None) -> Any:
    """Register `session` as the account's live one; return the session it replaces (handed to
    `hand_over`, then told to stop), or None. Raises BlockpacaError when `replace` is False and
    another one runs."""
    with _lock:
        previous = _running.get(key)
        old = previous() if previous is not None else None
        if old is not None and (old is session or old.status in ENDED_SESSION_STATES):
            old = None
        if old is not None and replace is False:
            raise BlockpacaError(
                f"another session ({old.name!r}, {old.status}) is running in this kernel on this account;"
                " stop it first, or pass replace_running=True to stop it (with eos='hold')"
            )
        _running[key] = weakref.ref(session)
    if old is not None:
        if hand_over is not None:
            hand_over(old)
        old.stop(eos="hold" if replace is True else str(replace))
    return old


def release(key: str, session: Any) -> None:
    with _lock:
        current = _running.get(key)
        if current is not None and current() is session:
            del _running[key]
