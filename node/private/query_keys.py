"""This node's CKKS key pair for private queries, one per key epoch.

The secret key is the only thing that can decrypt our queries and the scores peers return; it
stays in the node's key directory (0600) and in this process. Peers get the Galois keys, once
per epoch each; a new epoch (or new group parameters) makes a new pair.
"""

from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta
from pathlib import Path

from node.files import write_atomic
from protocol.fields import format_time, parse_time
from protocol.he import HEContext, QueryKeys
from protocol.he_params import HEParameters
from protocol.private_query import EvaluationKeys

__all__ = ["QueryKeyring"]


class QueryKeyring:
    def __init__(self, directory: Path, owner: str, epoch: timedelta) -> None:
        self._dir = directory
        self._owner = owner
        self._epoch = epoch
        self._lock = threading.Lock()
        self._current: tuple[QueryKeys, datetime] | None = None
        self.sent: dict[str, str] = {}
        """Peer -> the key id it acknowledged (in memory; a peer that lost it says so)."""

    def current(self, params: HEParameters, now: datetime) -> tuple[QueryKeys, datetime]:
        """The keys of this epoch, made (and saved) when there are none or they expired."""
        with self._lock:
            if self._current is None:
                self._current = self._read(params)
            if self._current is None or self._current[1] <= now or self._current[0].context.params != params:
                keys = QueryKeys.generate(HEContext(params))
                not_after = (now + self._epoch).replace(microsecond=0)
                self._write(keys, not_after)
                self._current = (keys, not_after)
                self.sent.clear()
            return self._current

    def bundle(self, params: HEParameters, now: datetime) -> EvaluationKeys:
        keys, not_after = self.current(params, now)
        return EvaluationKeys(
            owner=self._owner,
            key_id=keys.key_id,
            params=params,
            not_after=not_after,
            galois_keys=keys.galois_keys,
            relin_keys=keys.relin_keys,
        )

    def _paths(self) -> tuple[Path, Path, Path, Path]:
        d = self._dir
        return d / "he-query.secret", d / "he-query.galois", d / "he-query.relin", d / "he-query.json"

    def _read(self, params: HEParameters) -> tuple[QueryKeys, datetime] | None:
        secret, galois, relin, meta = self._paths()
        if not (secret.exists() and galois.exists() and relin.exists() and meta.exists()):
            return None
        info = json.loads(meta.read_text())
        if info.get("params") != params.to_dict():
            return None
        keys = QueryKeys.load(HEContext(params), secret.read_bytes(), galois.read_bytes(), relin.read_bytes())
        return keys, parse_time(info["not_after"])

    def _write(self, keys: QueryKeys, not_after: datetime) -> None:
        secret, galois, relin, meta = self._paths()
        self._dir.mkdir(parents=True, exist_ok=True)
        write_atomic(secret, keys.secret_bytes(), mode=0o600)
        write_atomic(galois, keys.galois_keys)
        write_atomic(relin, keys.relin_keys)
        info = {
            "key_id": keys.key_id,
            "not_after": format_time(not_after),
            "params": keys.context.params.to_dict(),
        }
        write_atomic(meta, json.dumps(info).encode())
