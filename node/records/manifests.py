"""The manifest this node trusts now, how a newer one replaces it, and which versions peers may name.

A node starts from ``manifest.json`` (trusted at ``watchnet init`` against the pinned root key
ids and the pinned root threshold: a first manifest is never judged by the threshold it declares
itself, or one stolen pinned key could declare threshold 1) and after that accepts only successors under TUF's rotation rules (``verify_update``): a
newer version, signed by a threshold of the trusted version's keys and of its own, not expired.
The switch is atomic: the file is replaced by rename, the history row commits, and only then
does ``current`` change, so a request sees either the old manifest or the new one, never a mix.
A suspended member is refused from that moment; a peer that names the previous version is still
heard for ``grace`` after the switch, so a change does not break queries in flight.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from governance.manifest import Manifest
from governance.trust import verify_initial, verify_update
from node.files import PRIVATE_FILE, write_atomic
from node.storage.models import ManifestRow
from protocol.errors import FreshnessError, RollbackError, ThresholdError
from protocol.fields import format_time
from protocol.signed import SignedDocument

__all__ = ["DEFAULT_GRACE", "ManifestStore", "ManifestVersionError", "Offer", "verify_first_manifest"]

DEFAULT_GRACE = timedelta(minutes=5)


class ManifestVersionError(FreshnessError):
    """A peer named a manifest version we do not trust (too old, or newer than ours)."""

    code = "manifest_version"


@dataclass(frozen=True)
class Offer:
    """What happened to an offered manifest: ``accepted``, ``already`` trusted, or refused (raised)."""

    version: int
    outcome: str


class ManifestStore:
    """Holds the trusted signed manifest; thread-safe, swapped whole."""

    def __init__(
        self,
        path: Path,
        engine: Engine,
        document: SignedDocument[Manifest],
        *,
        accepted_at: datetime,
        grace: timedelta = DEFAULT_GRACE,
    ) -> None:
        self._path = path
        self._engine = engine
        self._document = document
        self._accepted_at = accepted_at
        self._previous: tuple[int, datetime] | None = None
        self.grace = grace
        self._lock = threading.Lock()
        self._listeners: list[Callable[[Manifest], None]] = []
        self._remember(document, accepted_at, "manifest.json")

    @classmethod
    def load(
        cls,
        path: Path,
        engine: Engine,
        document: SignedDocument[Manifest],
        now: datetime,
        **kwargs: timedelta,
    ) -> ManifestStore:
        """Start from the installed file; when it was accepted comes from the history table."""
        with Session(engine) as session:
            row = session.get(ManifestRow, document.payload.version)
            accepted_at = row.accepted_at if row is not None else now
            previous = session.exec(
                select(ManifestRow)
                .where(col(ManifestRow.version) < document.payload.version)
                .order_by(col(ManifestRow.version).desc())
                .limit(1)
            ).first()
        store = cls(path, engine, document, accepted_at=accepted_at, **kwargs)
        if previous is not None:
            store._previous = (previous.version, accepted_at)
        return store

    def _remember(self, document: SignedDocument[Manifest], now: datetime, source: str) -> None:
        with Session(self._engine) as session:
            if session.get(ManifestRow, document.payload.version) is None:
                session.add(
                    ManifestRow(
                        version=document.payload.version,
                        signed=document.to_bytes().decode("utf-8"),
                        accepted_at=now,
                        source=source[:256],
                    )
                )
                session.commit()

    @property
    def current(self) -> Manifest:
        return self._document.payload

    @property
    def document(self) -> SignedDocument[Manifest]:
        return self._document

    def on_change(self, listener: Callable[[Manifest], None]) -> None:
        """Call ``listener(new)`` after every switch (e.g. to drop cached peer keys)."""
        self._listeners.append(listener)

    def offer(self, document: SignedDocument[Manifest], now: datetime, source: str) -> Offer:
        """Trust ``document`` if it is a valid successor; raise ``RollbackError`` etc. if not.

        The same version with the same bytes is ``already`` trusted; an older version, or the same
        version with other content, is a rollback (a peer serving stale or forked governance).
        """
        with self._lock:
            trusted = self._document
            new = document.payload
            if new.version == trusted.payload.version:
                if document.payload.canonical() == trusted.payload.canonical():
                    return Offer(new.version, "already")
                raise RollbackError(
                    f"manifest version {new.version} from {source} differs from the trusted version "
                    f"{trusted.payload.version} of the same number"
                )
            verify_update(trusted.payload, document, now)
            write_atomic(self._path, document.to_bytes() + b"\n", mode=PRIVATE_FILE)
            self._remember(document, now, source)
            self._previous = (trusted.payload.version, now)
            self._document = document
            self._accepted_at = now
            listeners = list(self._listeners)
        for listener in listeners:
            listener(new)
        return Offer(new.version, "accepted")

    def check_named_version(self, version: int, now: datetime) -> None:
        """A peer's message names ``version``: the current one, or the previous within the grace period."""
        current = self.current.version
        if version == current:
            return
        if version > current:
            raise ManifestVersionError(
                f"the message names manifest version {version}, this node trusts {current}; "
                "it is fetching the newer version, retry shortly"
            )
        previous = self._previous
        if previous is not None and version == previous[0] and now <= previous[1] + self.grace:
            return
        raise ManifestVersionError(
            f"the message names manifest version {version}, superseded by version {current} "
            f"(accepted {format_time(self._accepted_at)}); fetch the current manifest and retry"
        )


def verify_first_manifest(
    document: SignedDocument[Manifest], root_keyids: tuple[str, ...], root_threshold: int, now: datetime
) -> Manifest:
    """Trust a first manifest only if it meets both its own threshold and the pinned one.

    ``verify_initial`` counts signatures by pinned keys against the threshold the manifest
    declares; here they must also reach ``root_threshold`` (the node's config), so a manifest
    signed by one stolen pinned key and declaring threshold 1 is refused (``ThresholdError``).
    """
    manifest = verify_initial(document, root_keyids, now)
    declared = manifest.manifest_role.threshold
    needed = max(root_threshold, declared)
    pinned = set(root_keyids)
    keys = {k: v for k, v in manifest.role_keys().items() if k in pinned}
    result = document.verification_result(keys, needed)
    if not result.verified:
        raise ThresholdError(
            f"first manifest version {manifest.version}: signed by {len(result.signed)} of the "
            f"{len(keys)} pinned root keys it lists, {needed} needed (the node pins root threshold "
            f"{root_threshold}, the manifest declares {declared})"
        )
    return manifest


def install_manifest(
    directory: Path,
    engine: Engine,
    root_keyids: tuple[str, ...],
    document: SignedDocument[Manifest],
    now: datetime,
    source: str,
    *,
    root_threshold: int,
) -> Offer:
    """Install ``document`` into a node directory (first manifest or successor), as ``watchnet manifest`` does.

    The first manifest must be signed by ``max(root_threshold, its declared threshold)`` of the
    pinned root keys (``verify_first_manifest``); later ones follow the same rules as a running
    node's (``ManifestStore.offer``).
    """
    path = directory / "manifest.json"
    if not path.exists():
        verify_first_manifest(document, root_keyids, root_threshold, now)
        write_atomic(path, document.to_bytes() + b"\n", mode=PRIVATE_FILE)
        ManifestStore(path, engine, document, accepted_at=now)
        return Offer(document.payload.version, "accepted")
    trusted = SignedDocument.from_bytes(path.read_bytes(), Manifest)
    return ManifestStore.load(path, engine, trusted, now).offer(document, now, source)
