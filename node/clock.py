"""The node's wall clock: the system clock in UTC, plus, for clock tests only, an offset.

``WATCHNET_CLOCK_OFFSET_FILE`` names a file holding a number of seconds added to the system
clock, read again at most once a second, so a test can skew one node's clock, jump it and set
it right while it runs (Debian's libfaketime, the usual tool, makes Python's ``time.sleep``
fail with EINVAL on this platform). Unset, as in production, it costs one ``datetime.now``.
"""

from __future__ import annotations

import os
import threading
import time
from datetime import UTC, datetime, timedelta

__all__ = ["OFFSET_FILE_ENV", "now_utc"]

OFFSET_FILE_ENV = "WATCHNET_CLOCK_OFFSET_FILE"
_PATH = os.environ.get(OFFSET_FILE_ENV) or None
_lock = threading.Lock()
_offset = timedelta(0)
_read_at = float("-inf")


def _current_offset() -> timedelta:
    global _offset, _read_at
    with _lock:
        if time.monotonic() - _read_at >= 1.0 and _PATH is not None:
            _read_at = time.monotonic()
            try:
                with open(_PATH, encoding="ascii") as f:
                    _offset = timedelta(seconds=float(f.read().strip() or 0))
            except (OSError, ValueError):
                _offset = timedelta(0)
        return _offset


def now_utc() -> datetime:
    if _PATH is None:
        return datetime.now(UTC)
    return datetime.now(UTC) + _current_offset()
