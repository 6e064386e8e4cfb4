"""Stop strings over a text stream: emit text as early as possible, never a stop string.

Text arrives in chunks whose boundaries have nothing to do with the stop strings ("###" may come as
"#", "##"). The matcher holds back the longest tail of the text that could still grow into a stop
string and emits everything before it.

Generation ends at the first position ``E`` where some stop string is complete. The text is cut at the
earliest start of any stop string that is "alive" at ``E``: complete there, or begun and not yet
finished (with stops ``"\n### Human:"`` and ``"###"``, the text ``"Hi\n###"`` is cut before the
``"\n"``, since that is where the longer stop began). Both ``E`` and the cut depend only on the text,
never on how it was chunked (:func:`cut_point` states the rule on a whole text), and the emitted text
never contains a stop string.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Fed:
    """What one :meth:`StopStringMatcher.feed` call releases."""

    text: str  # safe to show now (may be empty)
    stop: str | None = None  # the stop string found; the stream has ended when set


class StopStringMatcher:
    """Streaming matcher for a set of stop strings (empty strings are ignored)."""

    def __init__(self, stops: Iterable[str]) -> None:
        self.stops: tuple[str, ...] = tuple(dict.fromkeys(s for s in stops if s))
        self._held = ""
        self.stopped: str | None = None

    @property
    def held(self) -> str:
        """Text received but not yet released (a possible start of a stop string)."""
        return self._held

    def _holdback(self, text: str) -> int:
        # Length of the longest suffix of ``text`` that is a proper prefix of some stop string.
        best = 0
        for stop in self.stops:
            for k in range(min(len(stop) - 1, len(text)), best, -1):
                if text.endswith(stop[:k]):
                    best = k
                    break
        return best

    def feed(self, chunk: str) -> Fed:
        """Add ``chunk``; returns the text now safe to emit and the stop string if one completed."""
        if self.stopped is not None:
            return Fed("", self.stopped)
        text = self._held + chunk
        found = cut_point(text, self.stops)
        if found is not None:
            self._held = ""
            self.stopped = found[1]
            return Fed(text[: found[0]], found[1])
        keep = self._holdback(text)
        self._held = text[len(text) - keep :] if keep else ""
        return Fed(text[: len(text) - keep])

    def flush(self) -> str:
        """End of stream without a stop string: release whatever was held back."""
        if self.stopped is not None:
            return ""
        text, self._held = self._held, ""
        return text


def cut_point(text: str, stops: tuple[str, ...]) -> tuple[int, str] | None:
    """Where ``text`` is cut and which stop string ended it, or None when none completes.

    The stop that ends the text is the one completed first (smallest end; among those ending there,
    the longest). The cut is the earliest start of any stop alive at that end: complete there, or a
    proper prefix of a stop running up to it.
    """
    ends = [(at + len(s), -len(s), s) for s in stops if (at := text.find(s)) >= 0]
    if not ends:
        return None
    end, neg_len, stop = min(ends)
    cut = end + neg_len
    for s in stops:
        for start in range(max(0, end - len(s) + 1), cut):
            if s.startswith(text[start:end]):
                cut = start
                break
    return cut, stop
