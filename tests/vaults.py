"""A vault for tests that build a Registry by hand: one key store per database, kept for the session.

Opening the same database again (a restart, a second worker) must find the same record keys, as a
node finds them in its own ``keys/records`` directory.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from node.records.record_keys import RecordKeys
from node.records.vault import Vault
from protocol.keys import DataKey

TEST_DATA_KEY = DataKey(b"\x42" * 32)
_STORES: dict[str, Path] = {}


def vault_for(database: str | Path, key: DataKey = TEST_DATA_KEY, *, directory: Path | None = None) -> Vault:
    """The vault of ``database``; ``directory`` places its key store (e.g. a copy of another's)."""
    if directory is not None:
        _STORES[str(database)] = directory
    held = _STORES.setdefault(str(database), Path(tempfile.mkdtemp(prefix="watchnet-record-keys-")))
    return Vault(key, RecordKeys(held, key))
