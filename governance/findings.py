"""A sentence for people that also keeps its code and values.

Rule violations, face-quality failures and audit checks are read by people in Japanese and in
English, by the CLI and by the JSON API. A ``Finding`` is the English sentence (so every place that
already prints or serialises it keeps working) and carries a stable ``code`` and the ``values``
it was built from, so a console can say the same thing in another language without parsing text.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["Finding", "Value"]

Value = str | int | float | tuple[str, ...]


class Finding(str):
    """``str(finding)`` is the English sentence; ``code`` and ``values`` say it in any language."""

    code: str
    values: Mapping[str, Value]

    def __new__(cls, code: str, english: str, **values: Value) -> Finding:
        shown = {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}
        self = super().__new__(cls, english.format(**shown))
        self.code = code
        self.values = dict(values)
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (self.code, str(self), dict(self.values)))


def _rebuild(code: str, text: str, values: dict[str, Value]) -> Finding:
    finding = Finding(code, "{text}", text=text)
    finding.values = values
    return finding
