"""The manifest this node trusts now, how a newer one replaces it, and which versions peers may name.

A node starts from ``manifest.json`` (trusted at ``watchnet init`` against the pinned root key
ids and the pinned root threshold: a first manifest is never judged by the threshold it declares
itself, or one stolen pinned key could declare threshold 1) and after that accepts only successors under TUF's rotation rules (``verify_update``): a
newer version, signed by a threshold of the trusted version's keys and of its own, not expired.
The switch is atomic: the file is replaced by rename, the history row commits, and only then
does ``current`` change, so a request sees either the old manifest or the new one, never a mix.
A suspended member is refused from that moment; a peer that names the previous version is still
heard for ``grace`` after the switch, so a change does not break queries in flight.

On PostgreSQL several workers of one node share the history table, and the newest row in it is
the node's trusted manifest: a worker that accepts a version commits its row with a
``watchnet_manifest`` notification, every other worker adopts it on the notification or at its
next reconcile (``sync``, each row checked as a successor of the one before it), and a peer's
query is answered only after ``require_active`` has read the table's newest version (one
primary-key read), so a member suspended by any worker is refused by all from the commit on.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from governance.manifest import Manifest, Member
from governance.policy import require_member
from governance.trust import verify_initial, verify_update
from node.files import PRIVATE_FILE, write_atomic
from node.storage.models import ManifestRow
from node.storage.notify import MANIFEST, Feed, notify, shared
from protocol.errors import FreshnessError, RollbackError, ThresholdError, WatchnetError
from protocol.fields import format_time
from protocol.signed import SignedDocument

__all__ = ["DEFAULT_GRACE", "ManifestStore", "ManifestVersionError", "Offer", "verify_first_manifest"]

DEFAULT_GRACE = timedelta(minutes=5)
LOG = logging.getLogger("watchnet.manifests")


def _utc(t: datetime) -> datetime:
    """A stored time as aware UTC (the database may hand back naive UTC)."""
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


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
        self._shared = shared(engine)
        self._refused = 0
        """The newest database version ``sync`` refused to trust (not read again until a newer one)."""
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
        store.sync()  # another worker (or machine) may have accepted a newer version than the file
        return store

    def _remember(self, document: SignedDocument[Manifest], now: datetime, source: str) -> None:
        version = document.payload.version
        try:
            with Session(self._engine) as session:
                if session.get(ManifestRow, version) is None:
                    session.add(
                        ManifestRow(
                            version=version,
                            signed=document.to_bytes().decode("utf-8"),
                            accepted_at=now,
                            source=source[:256],
                        )
                    )
                    notify(session, MANIFEST, str(version))
                    session.commit()
        except IntegrityError:  # another worker stored this version at the same moment
            with Session(self._engine) as session:
                row = session.get(ManifestRow, version)
            stored = None if row is None else SignedDocument.from_bytes(row.signed.encode("utf-8"), Manifest)
            if stored is None or stored.payload.canonical() != document.payload.canonical():
                raise RollbackError(
                    f"manifest version {version} from {source} differs from the version {version} "
                    "another worker of this node stored at the same moment"
                ) from None

    def sync(self) -> bool:
        """Adopt the newer versions another worker of this node committed; True when it switched.

        One primary-key read when nothing changed (nothing at all on SQLite, one process). Each
        newer row must be a valid successor of the one before it (``verify_update`` at the time
        it was accepted); the first that is not stops the walk and is logged, never trusted.
        """
        if not self._shared:
            return False
        with Session(self._engine) as session:
            newest = session.exec(select(func.max(ManifestRow.version))).one()
        if newest is None or newest <= max(self._document.payload.version, self._refused):
            return False
        with self._lock:
            switched = self._adopt_locked()
            listeners = list(self._listeners)
        if switched:
            for listener in listeners:
                listener(self._document.payload)
        return switched

    def _adopt_locked(self) -> bool:
        trusted = self._document
        with Session(self._engine) as session:
            rows = session.exec(
                select(ManifestRow)
                .where(col(ManifestRow.version) > trusted.payload.version)
                .order_by(col(ManifestRow.version))
            ).all()
        previous, accepted_at = self._previous, self._accepted_at
        for row in rows:
            accepted = _utc(row.accepted_at)
            try:
                document = SignedDocument.from_bytes(row.signed.encode("utf-8"), Manifest)
                verify_update(trusted.payload, document, accepted)
            except WatchnetError as e:
                LOG.error(
                    "manifest version %d in the database is not a valid successor of version %d (%s); "
                    "this worker keeps version %d",
                    row.version,
                    trusted.payload.version,
                    e,
                    trusted.payload.version,
                )
                self._refused = max(self._refused, rows[-1].version)
                break
            previous, accepted_at, trusted = (trusted.payload.version, accepted), accepted, document
        if trusted is self._document:
            return False
        LOG.info(
            "manifest version %d adopted from the database (was %d)",
            trusted.payload.version,
            self._document.payload.version,
        )
        self._previous, self._accepted_at, self._document = previous, accepted_at, trusted
        return True

    def fresh(self) -> Manifest:
        """The trusted manifest, no older than the newest version the database holds now."""
        self.sync()
        return self.current

    def require_active(self, node_id: str) -> Member:
        """``node_id`` as an active member of the manifest the database holds at this moment.

        The peer gate admits under the version this worker had cached; an answer (a match, a
        signed entry, scores) is given only after this check, so a suspension committed by another
        worker is enforced here whether or not its notification has arrived.
        """
        return require_member(self.fresh(), node_id)

    def feed(self) -> Feed:
        """What a worker does on ``watchnet_manifest``, and at every reconcile: ``sync``."""
        return Feed(MANIFEST, lambda _versions: self.sync(), self.sync)

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
            if self._shared:
                self._adopt_locked()  # judge the offer against the newest version any worker accepted
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
        if version > current and self.sync():  # another worker accepted it a moment ago
            self.check_named_version(version, now)
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
