"""The one scrubber: every text or exception that may quote a secret passes through here.

Why one place: a secret reaches text by routes nobody plans for — `requests` quotes a header
it refuses (a secret read from a file ends with a newline), a server echoes a request back,
a traceback shows a message. Each process keeps a registry of the secrets it has seen
(:func:`remember_secret`, called wherever keys enter: ``broker.resolve``, ``Credentials``,
``Target.connect``), and :func:`scrub_text` / :func:`scrub_error` / :class:`ScrubFilter`
blank them before a text reaches ``s.errors``, a log, the dashboard or a raise.

Where texts leave, and so where this is applied: ``s.errors`` is a :class:`ScrubbedDeque`;
``s.failure`` (also raised by ``run_trading`` and printed as "session failed: …") is scrubbed;
a :class:`~blockpaca_nb.strategy.StrategyError` scrubs its message and traceback; the
workers' results and the recorder's rows (the trade log) scrub their ``reason``; a REST call
that fails other than by the broker's answer raises through :func:`scrub_error`; every package
logger is a :func:`scrubbed_logger` and a child's root handlers carry the filter; the
dashboard scrubs its errors panel, its trade reasons and its own notices.

What counts as the secret: the value as given and stripped, and the forms it takes inside
other texts (``repr``/JSON escaping, URL encoding, bytes repr); and any piece of one of those
at least :data:`PIECE` characters long, so a secret cut short ("…") by a message still goes.
Secrets shorter than :data:`SHORTEST` characters are not registered: blanking them would
wreck ordinary words, and no broker issues keys that short.

This module imports nothing from the package, so every module can use it.
"""

from __future__ import annotations

import json
import logging
import threading
import traceback
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, TypeVar
from urllib.parse import quote, quote_plus

from .snapshots import snapshot

T = TypeVar("T")

MASK = "***"
SHORTEST = 8  # secrets shorter than this are not scrubbed (they would match ordinary text)
PIECE = 12  # any run of this many characters of a secret is blanked, not only the whole secret

_lock = threading.Lock()
_pieces: frozenset[str] = frozenset()  # every PIECE-long run (or whole short form) of every form


def remember_secret(secret: str | None) -> None:
    """Register ``secret`` (and its forms) for blanking in this process; None, "" and short ones are ignored."""
    if not isinstance(secret, str) or len(secret.strip()) < SHORTEST:
        return
    global _pieces
    found = {piece for form in _forms(secret) for piece in _runs(form)}
    with _lock:
        _pieces = _pieces | found


def scrub_text(text: str) -> str:
    """``text`` with every registered secret, and every long enough piece of one, replaced by ``***``."""
    pieces = _pieces
    if not pieces or not isinstance(text, str) or len(text) < SHORTEST:
        return text
    covered = _covered(text, pieces)
    return _blank(text, covered) if covered else text


def scrub_error(error: BaseException) -> BaseException:
    """``error`` itself when nothing it shows quotes a secret; otherwise a clean :class:`ScrubbedError`.

    "Shows" means its message, its repr and the messages of its causes (what a traceback
    prints). The replacement keeps the class name and the scrubbed message and drops the
    chain and every attribute (a `requests` error carries the request, headers included).
    """
    if not _pieces or _is_clean(error):
        return error
    from .errors import ScrubbedError

    text = scrub_text("".join(traceback.format_exception_only(error)).strip())
    return ScrubbedError(type(error).__name__, text)


def scrub_value(value: T) -> T:
    """A string or an exception scrubbed, a mapping's values scrubbed (a new dict only when one
    changed), anything else unchanged: for the items of ``s.errors`` and rows with a ``reason``."""
    if not _pieces:
        return value
    if isinstance(value, str):
        return scrub_text(value)  # type: ignore[return-value]
    if isinstance(value, BaseException):
        return scrub_error(value)  # type: ignore[return-value]
    if isinstance(value, Mapping):
        clean = {key: scrub_value(item) for key, item in value.items()}
        changed = any(clean[key] is not item for key, item in value.items())
        return clean if changed else value  # type: ignore[return-value]
    return value


class ScrubbedDeque(deque[T]):
    """A deque whose items are scrubbed as they come in (``s.errors``): whoever appends, and from
    whatever thread, no item in it ever quotes a secret. Iterating it walks a copy (made again if a
    writer got in: see snapshots.py), so a notebook
    reading ``s.errors`` while the session's threads append never meets "deque mutated during
    iteration"."""

    def __iter__(self) -> Iterator[T]:
        return iter(snapshot(lambda: list(deque.__iter__(self))))

    def append(self, item: T) -> None:
        super().append(scrub_value(item))

    def appendleft(self, item: T) -> None:
        super().appendleft(scrub_value(item))

    def extend(self, items: Iterable[T]) -> None:
        super().extend(scrub_value(item) for item in items)

    def extendleft(self, items: Iterable[T]) -> None:
        super().extendleft(scrub_value(item) for item in items)

    def insert(self, index: int, item: T) -> None:
        super().insert(index, scrub_value(item))

    def __setitem__(self, index: Any, item: T) -> None:
        super().__setitem__(index, scrub_value(item))


class ScrubFilter(logging.Filter):
    """A logging filter that blanks registered secrets in a record's message and traceback text."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not _pieces:
            return True
        text = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        clean, clean_exc = scrub_text(text), scrub_text(record.exc_text or "")
        if (clean, clean_exc) != (text, record.exc_text or ""):
            record.msg, record.args = clean, None
            record.exc_text = clean_exc or None
        return True


_FILTER = ScrubFilter()


def scrubbed_logger(name: str) -> logging.Logger:
    """``logging.getLogger(name)`` with the scrub filter on it: the record itself is cleaned before
    any handler sees it (the user's, pytest's caplog, IPython's stderr in the cell)."""
    logger = logging.getLogger(name)
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
    return logger


def scrub_handlers(logger: logging.Logger) -> None:
    """Put the scrub filter on every handler of ``logger`` (a child process's root: third-party
    loggers such as websockets' reach it without passing a filtered logger)."""
    for handler in logger.handlers:
        if _FILTER not in handler.filters:
            handler.addFilter(_FILTER)


def forget_secrets() -> None:
    """Empty the registry (for tests)."""
    global _pieces
    with _lock:
        _pieces = frozenset()


def _forms(secret: str) -> set[str]:
    """The secret as given and stripped, and as it appears escaped or encoded inside other texts."""
    forms = set()
    for value in {secret, secret.strip()}:
        forms |= {value, repr(value)[1:-1], json.dumps(value)[1:-1], quote(value, safe=""), quote_plus(value)}
        forms.add(repr(value.encode("utf-8", "backslashreplace"))[2:-1])
    return {form for form in forms if len(form) >= SHORTEST}


def _runs(form: str) -> set[str]:
    """Every PIECE-long run of ``form`` (the whole form when it is shorter)."""
    if len(form) <= PIECE:
        return {form}
    return {form[start : start + PIECE] for start in range(len(form) - PIECE + 1)}


def _covered(text: str, pieces: frozenset[str]) -> list[tuple[int, int]]:
    """The (start, end) spans of ``text`` where a piece occurs."""
    spans = []
    for piece in pieces:
        start = text.find(piece)
        while start >= 0:
            spans.append((start, start + len(piece)))
            start = text.find(piece, start + 1)
    return spans


def _blank(text: str, spans: list[tuple[int, int]]) -> str:
    """Replace each maximal run of overlapping spans by one mask."""
    out, position = [], 0
    for start, end in _merged(spans):
        out += [text[position:start], MASK]
        position = end
    out.append(text[position:])
    return "".join(out)


def _merged(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _is_clean(error: BaseException) -> bool:
    """True when neither ``error`` nor any exception in its chain shows a secret."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        for text in (str(current), repr(current)):
            if scrub_text(text) != text:
                return False
        current = current.__cause__ or current.__context__
    return True
