"""Members' evaluation keys, held by the node that answers their private queries.

Keys are public material (they let us compute on a member's ciphertexts, never decrypt them),
but each is bound to the member that sent it and to the group's current CKKS parameters, and
is kept only until its epoch ends. They are held in the database (``he_eval_key``), so a round 1
sent to any worker of the node finds the keys the member sent to another; the bounds are the
same for every worker: at most ``KEYS_PER_MEMBER`` per member, ``MAX_KEY_BYTES`` each, none past
its epoch. Keys are megabytes: each worker keeps the ones it used in memory by (member, key id,
row version) and reads only the row's small columns per message, the bytes only when the row
changed. After a crash of the database server (the table is UNLOGGED on PostgreSQL) the querier
is told ``unknown_eval_key`` and sends its keys again.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from node.storage.models import EvalKeyRow
from protocol.errors import FreshnessError, OversizedError, PolicyError
from protocol.fields import format_time
from protocol.he import HEContext
from protocol.he_params import HEParameters
from protocol.message import MAX_BULK_SEALED_BYTES
from protocol.private_query import EvaluationKeys

__all__ = ["EvaluationKeyStore", "HeldKey", "StaleEvalKey", "UnknownEvalKey"]

MAX_EPOCH = timedelta(days=8)
KEYS_PER_MEMBER = 2
MAX_KEY_BYTES = MAX_BULK_SEALED_BYTES
"""Galois plus relinearisation keys of one row: no more than one bulk peer message carries."""
CACHED_KEYS = 16
"""Keys a worker keeps in memory (the HE workers keep their own loaded copies)."""

_TABLE = EvalKeyRow.__table__  # type: ignore[attr-defined]


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
    """Members' evaluation keys in ``he_eval_key``, with a per-process cache of their bytes."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._cache: OrderedDict[tuple[str, str], tuple[int, HeldKey]] = OrderedDict()
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
        size = len(keys.galois_keys) + len(keys.relin_keys)
        if size > MAX_KEY_BYTES:
            raise OversizedError(f"evaluation keys of {size} bytes, at most {MAX_KEY_BYTES}")
        context = HEContext(params)
        context.galois_keys(keys.galois_keys)
        context.relin_keys(keys.relin_keys)
        held = HeldKey(sender, keys.key_id, params, keys.not_after, keys.galois_keys, keys.relin_keys)
        c = _TABLE.c
        with self._engine.begin() as conn:
            conn.execute(delete(_TABLE).where(c.not_after <= now))
            row = {
                "params": json.dumps(params.to_dict(), sort_keys=True),
                "not_after": keys.not_after,
                "received_at": now,
                "galois_keys": keys.galois_keys,
                "relin_keys": keys.relin_keys,
            }
            insert = (postgresql if conn.dialect.name == "postgresql" else sqlite).insert(_TABLE)
            version = conn.execute(
                insert.values(owner=sender, key_id=keys.key_id, version=1, **row)
                .on_conflict_do_update(
                    index_elements=[c.owner, c.key_id],
                    set_={"version": c.version + 1, **{name: insert.excluded[name] for name in row}},
                )
                .returning(c.version)
            ).scalar_one()
            mine = conn.execute(
                select(c.key_id).where(c.owner == sender).order_by(c.not_after.desc(), c.received_at.desc())
            ).scalars()
            surplus = list(mine)[KEYS_PER_MEMBER:]
            if surplus:
                conn.execute(delete(_TABLE).where(c.owner == sender, c.key_id.in_(surplus)))
        self._remember(held, version)
        return held

    def lookup(self, sender: str, key_id: str, params: HEParameters | None, now: datetime) -> HeldKey:
        """The member's keys by id: the row's small columns are read every time (the database is the
        truth), the bytes only when this process has not cached this version of the row."""
        c = _TABLE.c
        where = (c.owner == sender, c.key_id == key_id)
        with self._engine.connect() as conn:
            row = conn.execute(select(c.version, c.params, c.not_after).where(*where)).first()
        if row is None:
            raise UnknownEvalKey(f"no evaluation keys {key_id[:16]} from {sender}; send them first")
        version, params_json, not_after = row
        held_params = HEParameters.from_dict(json.loads(params_json))
        if not_after <= now or held_params != params:
            with self._engine.begin() as conn:
                conn.execute(delete(_TABLE).where(*where, c.version == version))
            with self._lock:
                self._cache.pop((sender, key_id), None)
            raise StaleEvalKey(
                f"evaluation keys {key_id[:16]} from {sender} are stale; send the current epoch's"
            )
        with self._lock:
            cached = self._cache.get((sender, key_id))
            if cached is not None and cached[0] == version:
                self._cache.move_to_end((sender, key_id))
                return cached[1]
        with self._engine.connect() as conn:
            data = conn.execute(
                select(c.galois_keys, c.relin_keys).where(*where, c.version == version)
            ).first()
        if data is None:  # replaced or dropped between the two reads
            return self.lookup(sender, key_id, params, now)
        held = HeldKey(sender, key_id, held_params, not_after, bytes(data[0]), bytes(data[1]))
        self._remember(held, version)
        return held

    def _remember(self, held: HeldKey, version: int) -> None:
        with self._lock:
            self._cache[(held.owner, held.key_id)] = (version, held)
            self._cache.move_to_end((held.owner, held.key_id))
            while len(self._cache) > CACHED_KEYS:
                self._cache.popitem(last=False)

    def __len__(self) -> int:
        with self._engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(_TABLE)).scalar_one())
