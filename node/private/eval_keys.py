"""Members' evaluation keys, held by the node that answers their private queries.

Keys are public material (they let us compute on a member's ciphertexts, never decrypt them),
but each is bound to the member that sent it and to the group's current CKKS parameters, and
is kept only until its epoch ends. Held in memory: after a restart the querier is told
``unknown_eval_key`` and sends its keys again.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime, timedelta

from protocol.errors import FreshnessError, PolicyError
from protocol.fields import format_time
from protocol.he import HEContext
from protocol.he_params import HEParameters
from protocol.private_query import EvaluationKeys

__all__ = ["EvaluationKeyStore", "HeldKey", "StaleEvalKey", "UnknownEvalKey"]

MAX_EPOCH = timedelta(days=8)
KEYS_PER_MEMBER = 2


class UnknownEvalKey(PolicyError):
    """No evaluation keys by this id from this member: send them (``/v1/peer/private/keys``) first."""

    code = "unknown_eval_key"


class StaleEvalKey(FreshnessError):
    """The keys' epoch ended, or they were made for parameters the group no longer uses."""

    code = "stale_eval_key"


@dataclass(frozen=True)
class HeldKey:
    owner: str
    key_id: str
    params: HEParameters
    not_after: datetime
    data: bytes
    relin: bytes = b""


class EvaluationKeyStore:
    def __init__(self) -> None:
        self._keys: dict[str, HeldKey] = {}
        self._lock = threading.Lock()

    def accept(
        self, sender: str, keys: EvaluationKeys, params: HEParameters | None, now: datetime
    ) -> HeldKey:
        """Check and hold ``keys``; the oldest of a member's earlier keys is dropped beyond two."""
        if keys.owner != sender:
            raise PolicyError(f"evaluation keys owned by {keys.owner!r} were sent by {sender!r}")
        if params is None or keys.params != params:
            raise StaleEvalKey(
                "evaluation keys made for other CKKS parameters than the manifest's; make new ones"
            )
        if keys.not_after <= now:
            raise StaleEvalKey(f"evaluation keys expired at {format_time(keys.not_after)}")
        if keys.not_after > now + MAX_EPOCH:
            raise PolicyError(
                f"evaluation keys valid until {format_time(keys.not_after)}: epochs last at most {MAX_EPOCH.days} days"
            )
        context = HEContext(params)
        context.galois_keys(keys.galois_keys)
        context.relin_keys(keys.relin_keys)
        held = HeldKey(sender, keys.key_id, params, keys.not_after, keys.galois_keys, keys.relin_keys)
        with self._lock:
            self._keys[keys.key_id] = held
            mine = sorted((k for k in self._keys.values() if k.owner == sender), key=lambda k: k.not_after)
            for old in mine[:-KEYS_PER_MEMBER]:
                del self._keys[old.key_id]
        return held

    def lookup(self, sender: str, key_id: str, params: HEParameters | None, now: datetime) -> HeldKey:
        with self._lock:
            held = self._keys.get(key_id)
        if held is None or held.owner != sender:
            raise UnknownEvalKey(f"no evaluation keys {key_id[:16]} from {sender}; send them first")
        if held.not_after <= now or held.params != params:
            with self._lock:
                self._keys.pop(key_id, None)
            raise StaleEvalKey(
                f"evaluation keys {key_id[:16]} from {sender} are stale; send the current epoch's"
            )
        return held

    def __len__(self) -> int:
        return len(self._keys)
