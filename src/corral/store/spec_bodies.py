"""Stored spec bodies decoded once per distinct text (the change feed's and a full read's
specs; `corral.store.workloads` reads them as text for this)."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["SpecBodies"]


class SpecBodies:
    """Stored spec bodies by their text: each distinct body decoded once and shared by every
    record that has it (read-only by convention, as every record's spec is). Memory and decode
    time then grow with the distinct bodies, not with the rows."""

    MAX = 50_000  # distinct bodies remembered; beyond, the memo starts again

    def __init__(self) -> None:
        self._by_text: dict[str, dict[str, Any]] = {}

    def __call__(self, text: str | dict[str, Any]) -> dict[str, Any]:
        if not isinstance(text, str):  # a driver that decoded it already
            return text
        body = self._by_text.get(text)
        if body is None:
            if len(self._by_text) >= self.MAX:
                self._by_text.clear()
            body = self._by_text[text] = json.loads(text)
        return body
